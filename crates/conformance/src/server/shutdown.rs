//! Graceful shutdown (FERRY-SHUTDOWN-1, -2, -4, -5). A server stops once, so the first shutdown
//! case to run stops it and records what every session saw; each shutdown case then judges
//! its own rule on that one observation, whose transcript it copies. Across two nodes
//! (`--ws-url`), one of the sessions opens at `--url`'s node: each node is asked for new work
//! only once it has sent a goodbye of its own, since the stop command reaches them a moment
//! apart.
//!
//! FERRY-SHUTDOWN-3 (no acknowledged publish is lost) is judged where it can be seen from
//! outside: the publishes acknowledged before the stop and while the server drains are in the
//! channel's history read while it drains. Whether they survive the process is the server's
//! own affair once it is gone.

use std::sync::Arc;
use std::time::Duration;

use ferry_protocol::{
    ErrorCode, Goodbye, GoodbyeReason, HealthResponse, HealthResponseStatus, HistoryResponse,
    PublishResponse, ResumePolicy, SUBPROTOCOL, ServerMessage,
};
use reqwest::Method;
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use super::cases::{cite, verdict};
use super::checks::{close_name, holds, http_error_problems, listed, summary};
use super::ctx::{Ctx, Node, Who};
use super::driver::{ConnectError, Got, Session};
use super::http::{Cred, Reply};
use crate::case::{CaseResult, Finding};
use crate::transcript::{Direction, Transcript};

/// Sessions open when the server is stopped.
const SESSIONS: usize = 3;

/// How long after the stop a goodbye may take (the stop command may take a moment).
const GOODBYE_WAIT: Duration = Duration::from_secs(10);

/// How long after its goodbye a session may take to close.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// What the one stop of the run showed.
pub(crate) struct Observation {
    /// The run's transcript, whose entries and credentials each case copies.
    t: Transcript,
    outcome: Result<Stopped, Finding>,
}

struct Stopped {
    sessions: Vec<Ended>,
    /// `POST /v1/tickets` while draining; `Err` when no HTTP answer came.
    ticket: Result<Reply, String>,
    /// An upgrade, with a ticket obtained before the stop, while draining.
    upgrade: Upgrade,
    /// `GET /v1/ready` and `GET /v1/health` while draining; `Err` when no HTTP answer came.
    probes: [(&'static str, Result<Reply, String>); 2],
    /// Publishes acknowledged before the stop and while draining, and the history read after.
    kept: Kept,
}

/// Backend publishes to a channel of the run's own, and its history read while draining.
struct Kept {
    channel: String,
    /// What the sessions' welcome advertises the server keeps.
    resume: ResumePolicy,
    /// The acknowledgements, before the stop and while draining.
    acked: Vec<Acked>,
    /// Why publishing while draining stopped before [`DRAINING_PUBLISHES`], if it did.
    refused: Option<String>,
    /// `GET /v1/history` of the channel while draining, when it was read; `Err` when no HTTP
    /// answer came.
    history: Result<(Reply, Instant), String>,
}

/// One acknowledged publish.
struct Acked {
    ack: PublishResponse,
    /// When its acknowledgement came.
    at: Instant,
    while_draining: bool,
}

/// How many backend publishes are made while the server drains.
const DRAINING_PUBLISHES: usize = 3;

enum Upgrade {
    Refused(Reply),
    Accepted(String),
    NoAnswer(String),
}

struct Ended {
    link: String,
    goodbye: Option<Goodbye>,
    end: Got,
    other: Vec<String>,
}

/// Stops the server with `SESSIONS` sessions open and records what they see.
async fn observe(ctx: &Ctx) -> Observation {
    let t = Transcript::new();
    let run = ctx.with_transcript(t.clone());
    let outcome = stop_and_watch(&run).await;
    Observation { t, outcome }
}

async fn stop_and_watch(ctx: &Ctx) -> Result<Stopped, Finding> {
    let mut sessions = Vec::with_capacity(SESSIONS);
    for n in 0..SESSIONS {
        // Across two nodes the last session opens at --url's, so that the requests sent there
        // wait for that node's own goodbye: the two may start draining a moment apart.
        let node = if ctx.two_nodes() && n + 1 == SESSIONS {
            Node::Http
        } else {
            Node::Ws
        };
        let session = ctx.subscribed_at(node, Who::Main, &ctx.channel(n)).await?;
        sessions.push((node, session));
    }
    let spare = ctx.http.ticket(&Cred::Main).await?;
    let kept_channel = ctx.channel(SESSIONS);
    let before = ctx
        .http
        .publish(&kept_channel, &ctx.key("before-stop"), ctx.payload())
        .await?;
    let kept = Kept {
        channel: kept_channel,
        resume: sessions[0].1.welcome().resume.clone(),
        acked: vec![Acked {
            ack: before,
            at: Instant::now(),
            while_draining: false,
        }],
        refused: None,
        history: Err(unseen(ctx, Node::Http)),
    };
    let goodbye_at_ws = Arc::new(watch::channel(false).0);
    let goodbye_at_http = if ctx.two_nodes() {
        Arc::new(watch::channel(false).0)
    } else {
        goodbye_at_ws.clone()
    };
    ctx.stop_server()?;
    let stopped = Instant::now();
    let watchers: Vec<_> = sessions
        .into_iter()
        .map(|(node, session)| {
            let goodbye = match node {
                Node::Ws => goodbye_at_ws.clone(),
                Node::Http => goodbye_at_http.clone(),
            };
            tokio::spawn(watch_session(session, goodbye, stopped))
        })
        .collect();
    // Ask each node for new work while it drains: after a session of its own got a goodbye,
    // and all at once, as a server may stop listening soon after its sessions have closed.
    let deadline = stopped + GOODBYE_WAIT;
    let at_http = async {
        let mut kept = kept;
        if !draining(&goodbye_at_http, deadline).await {
            let no_reply = || Err(unseen(ctx, Node::Http));
            return (
                no_reply(),
                [(READY, no_reply()), (HEALTH, no_reply())],
                kept,
            );
        }
        let (ticket, ready, health, ()) = tokio::join!(
            answer(ctx, Method::POST, "/v1/tickets", &Cred::Main, None),
            answer(ctx, Method::GET, READY, &Cred::Nothing, None),
            answer(ctx, Method::GET, HEALTH, &Cred::Nothing, None),
            publish_while_draining(ctx, &mut kept),
        );
        (ticket, [(READY, ready), (HEALTH, health)], kept)
    };
    let at_ws = async {
        if !draining(&goodbye_at_ws, deadline).await {
            return Ok(Upgrade::NoAnswer(unseen(ctx, Node::Ws)));
        }
        let query = format!("ticket={}", spare.ticket.as_str());
        Ok::<_, Finding>(match ctx.connect(Some(&query), Some(SUBPROTOCOL)).await? {
            Err(ConnectError::Refused { status, body }) => {
                Upgrade::Refused(Reply { status, text: body })
            }
            Err(e) => Upgrade::NoAnswer(e.describe()),
            Ok(mut session) => {
                let first = session.recv_raw(Duration::from_secs(1)).await;
                Upgrade::Accepted(first.describe())
            }
        })
    };
    let ((ticket, probes, kept), upgrade) = tokio::join!(at_http, at_ws);
    let upgrade = upgrade?;
    let mut ended = Vec::with_capacity(SESSIONS);
    for watcher in watchers {
        ended.push(
            watcher
                .await
                .map_err(|e| Finding::error(format!("a watcher failed: {e}")))?,
        );
    }
    Ok(Stopped {
        sessions: ended,
        ticket,
        upgrade,
        probes,
        kept,
    })
}

/// Publishes to the kept channel over HTTP while the server drains, until it refuses one,
/// then reads the channel's history.
async fn publish_while_draining(ctx: &Ctx, kept: &mut Kept) {
    for n in 1..=DRAINING_PUBLISHES {
        let body = json!({
            "channel": kept.channel,
            "idempotency_key": ctx.key(&format!("draining-{n}")),
            "payload": ctx.payload(),
        });
        let refused = match answer(ctx, Method::POST, "/v1/publish", &Cred::Main, Some(body)).await
        {
            Ok(reply) if reply.status == 200 => match reply.json::<PublishResponse>() {
                Ok(ack) => {
                    kept.acked.push(Acked {
                        ack,
                        at: Instant::now(),
                        while_draining: true,
                    });
                    continue;
                }
                Err(e) => format!("a 200 that is not a PublishResponse ({e})"),
            },
            Ok(reply) => reply.shown(),
            Err(why) => why,
        };
        kept.refused = Some(refused);
        break;
    }
    let path = format!("/v1/history?channel={}&limit=100", kept.channel);
    kept.history = answer(ctx, Method::GET, &path, &Cred::Main, None)
        .await
        .map(|reply| (reply, Instant::now()));
}

/// Waits until a session at a node got its goodbye; `false` when none came by `deadline`.
async fn draining(goodbye: &watch::Sender<bool>, deadline: Instant) -> bool {
    let mut seen = goodbye.subscribe();
    matches!(
        tokio::time::timeout_at(deadline, seen.wait_for(|&seen| seen)).await,
        Ok(Ok(_))
    )
}

/// Why nothing was asked of `node` while it drained.
fn unseen(ctx: &Ctx, node: Node) -> String {
    let at = match (ctx.two_nodes(), node) {
        (false, _) => "",
        (true, Node::Ws) => " at --ws-url's node",
        (true, Node::Http) => " at --url's node",
    };
    format!("no goodbye came{at}, so the server was not seen draining there")
}

const READY: &str = "/v1/ready";
const HEALTH: &str = "/v1/health";

/// One HTTP request while the server drains; `Err` says why no answer came.
async fn answer(
    ctx: &Ctx,
    method: Method,
    path: &str,
    cred: &Cred,
    body: Option<serde_json::Value>,
) -> Result<Reply, String> {
    ctx.http
        .call(method, path, cred, body.map(|b| b.to_string()))
        .await
        .map_err(|f| match f {
            Finding::Error(why) => why,
            other => format!("{other:?}"),
        })
}

/// Reads one session after the stop: its goodbye, and how it ends.
async fn watch_session(
    mut session: Session,
    goodbye_seen: Arc<watch::Sender<bool>>,
    stopped: Instant,
) -> Ended {
    let mut goodbye = None;
    let mut other = Vec::new();
    let mut deadline = stopped + GOODBYE_WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match session.recv(left).await {
            Got::Message(ServerMessage::Goodbye(g), _) if goodbye.is_none() => {
                goodbye = Some(g);
                goodbye_seen.send_replace(true);
                deadline = Instant::now() + CLOSE_WAIT;
            }
            Got::Message(message, _) => other.push(summary(&message)),
            end => {
                return Ended {
                    link: session.link.clone(),
                    goodbye,
                    end,
                    other,
                };
            }
        }
    }
}

/// The one observation of the run, made by whichever shutdown case comes first.
async fn observation(ctx: &Ctx) -> Arc<Observation> {
    let shared = ctx.shared.clone();
    let observed = shared
        .shutdown
        .get_or_init(|| async { Arc::new(observe(ctx).await) })
        .await
        .clone();
    ctx.t.adopt_secrets(&observed.t);
    for entry in &observed.t.entries() {
        let text = format!("[shutdown run, {} ms] {}", entry.at_ms, entry.text);
        match entry.direction {
            Direction::Sent => ctx.t.sent(&entry.link, text),
            Direction::Received => ctx.t.received(&entry.link, text),
            Direction::Note => ctx.t.note(&entry.link, text),
        }
    }
    observed
}

fn stopped(observed: &Observation) -> Result<&Stopped, Finding> {
    observed.outcome.as_ref().map_err(Clone::clone)
}

/// Each open session gets a goodbye with a numeric retry_after_ms, then close 1012
/// (FERRY-SHUTDOWN-1).
pub(super) async fn goodbye_then_1012(ctx: Ctx) -> CaseResult {
    let observed = observation(&ctx).await;
    let stopped = stopped(&observed)?;
    let mut problems = Vec::new();
    for session in &stopped.sessions {
        let link = &session.link;
        match &session.goodbye {
            None => problems.push(format!(
                "{link}: no goodbye; {} (received: {})",
                session.end.describe(),
                if session.other.is_empty() {
                    "nothing else".into()
                } else {
                    session.other.join(", ")
                }
            )),
            Some(g) => {
                if g.retry_after_ms.is_none() {
                    problems.push(format!("{link}: the goodbye's retry_after_ms is null"));
                }
                if !matches!(g.reason, GoodbyeReason::Shutdown | GoodbyeReason::Restart) {
                    problems.push(format!(
                        "{link}: the goodbye's reason is {} (a stopping server says shutdown or restart)",
                        g.reason
                    ));
                }
                if session.end.close_code() != Some(1012) {
                    problems.push(format!(
                        "{link}: after the goodbye, {}",
                        session.end.describe()
                    ));
                }
            }
        }
    }
    verdict(
        format!(
            "when the server stops, each of the {SESSIONS} open sessions gets a goodbye (reason shutdown or restart) with a numeric retry_after_ms, then the close {} ({})",
            close_name(1012),
            cite(&ctx)
        ),
        problems,
    )
}

/// The retry hints handed to the sessions are not all the same (FERRY-SHUTDOWN-2, SHOULD).
pub(super) async fn retry_hints_spread(ctx: Ctx) -> CaseResult {
    let observed = observation(&ctx).await;
    let stopped = stopped(&observed)?;
    let hints: Vec<u64> = stopped
        .sessions
        .iter()
        .filter_map(|s| s.goodbye.as_ref()?.retry_after_ms.map(|ms| ms.get()))
        .collect();
    if hints.len() < 2 {
        return Err(Finding::error(
            "fewer than two goodbyes carried a retry_after_ms, so there is nothing to compare (see server.shutdown.goodbye_then_1012)",
        ));
    }
    if hints.iter().all(|&h| h == hints[0]) {
        return Err(Finding::fail(
            format!(
                "retry_after_ms values spread over the drain period, so that the sessions' reconnects do not arrive at once: not all equal ({})",
                cite(&ctx)
            ),
            format!(
                "the {} goodbyes all carry retry_after_ms {}",
                hints.len(),
                hints[0]
            ),
        ));
    }
    Ok(())
}

/// While draining, the server refuses new tickets and new sessions with 503 unavailable
/// (FERRY-SHUTDOWN-4). Each node is asked right after a session of its own got a goodbye; a
/// server that stopped answering HTTP by then leaves nothing to judge.
pub(super) async fn draining_refuses(ctx: Ctx) -> CaseResult {
    let observed = observation(&ctx).await;
    let stopped = stopped(&observed)?;
    let mut problems = Vec::new();
    let mut judged = false;
    if let Ok(reply) = &stopped.ticket {
        judged = true;
        problems.extend(
            http_error_problems(reply, ErrorCode::Unavailable)
                .into_iter()
                .map(|p| format!("POST /v1/tickets: {p}")),
        );
    }
    let mut unanswered = Vec::new();
    if let Err(why) = &stopped.ticket {
        unanswered.push(format!("POST /v1/tickets: {why}"));
    }
    match &stopped.upgrade {
        Upgrade::Refused(reply) => {
            judged = true;
            problems.extend(
                http_error_problems(reply, ErrorCode::Unavailable)
                    .into_iter()
                    .map(|p| format!("GET /v1/ws: {p}")),
            );
        }
        Upgrade::Accepted(then) => {
            judged = true;
            problems.push(format!(
                "GET /v1/ws with a ticket obtained before the stop switched protocols (101); then {then}"
            ));
        }
        Upgrade::NoAnswer(why) => unanswered.push(format!("GET /v1/ws: {why}")),
    }
    if !judged {
        return Err(Finding::skip(format!(
            "the server answered no HTTP request once it had sent a goodbye (it stopped listening at once), so its draining could not be seen: {}",
            unanswered.join("; ")
        )));
    }
    verdict(
        format!(
            "once the node asked has sent a goodbye, while it drains, it refuses a new ticket and a new session (with a ticket obtained before the stop) with HTTP 503 and an ErrorBody whose code is unavailable ({})",
            cite(&ctx)
        ),
        problems,
    )
}

/// While draining, `GET /v1/ready` answers 503 unavailable and `GET /v1/health` still 200
/// with status draining (FERRY-SHUTDOWN-5, SHOULD). Asked right after a goodbye at `--url`'s
/// node.
pub(super) async fn ready_and_health(ctx: Ctx) -> CaseResult {
    let observed = observation(&ctx).await;
    let stopped = stopped(&observed)?;
    let [(_, ready), (_, health)] = &stopped.probes;
    let (ready, health) = match (ready, health) {
        (Ok(ready), Ok(health)) => (ready, health),
        (Err(why), _) | (_, Err(why)) => {
            return Err(Finding::skip(format!(
                "the server answered no probe once it had sent a goodbye, so its draining could not be seen: {why}"
            )));
        }
    };
    let mut problems: Vec<String> = http_error_problems(ready, ErrorCode::Unavailable)
        .into_iter()
        .map(|p| format!("GET {READY}: {p}"))
        .collect();
    match health.json::<HealthResponse>() {
        Ok(body) if health.status == 200 && body.status == HealthResponseStatus::Draining => {}
        _ => problems.push(format!(
            "GET {HEALTH}: {} where a draining server answers 200 with status draining",
            health.shown()
        )),
    }
    verdict(
        format!(
            "once it has sent a goodbye, while it drains, the server answers GET {READY} with 503 unavailable (so load balancers stop sending work) and GET {HEALTH} with 200 and status draining (so an orchestrator lets it finish) ({})",
            cite(&ctx)
        ),
        problems,
    )
}

/// Every publish acknowledged before the stop and while the server drains is in the channel's
/// history read while it drains (FERRY-SHUTDOWN-3), as far as the advertised resume policy
/// keeps it (FERRY-RESUME-3). A server that answers no history read while draining leaves
/// nothing to judge.
pub(super) async fn acknowledged_publishes_kept(ctx: Ctx) -> CaseResult {
    let observed = observation(&ctx).await;
    let stopped = stopped(&observed)?;
    let kept = &stopped.kept;
    let (reply, read_at) = match &kept.history {
        Ok((reply, at)) if reply.status == 200 => (reply, *at),
        Ok((reply, _)) => {
            return Err(Finding::skip(format!(
                "the server answered the history read while draining with {}, so what it kept could not be seen (a server that answers GET /v1/history while it drains runs this case)",
                reply.shown()
            )));
        }
        Err(why) => {
            return Err(Finding::skip(format!(
                "the history could not be read while the server drained: {why}"
            )));
        }
    };
    let page: HistoryResponse = reply.json().map_err(|e| {
        Finding::fail(
            format!(
                "GET /v1/history answers 200 with a HistoryResponse ({})",
                cite(&ctx)
            ),
            format!("{e}: {}", reply.shown()),
        )
    })?;
    let max_events = usize::try_from(kept.resume.max_events.get()).unwrap_or(usize::MAX);
    let window = Duration::from_millis(kept.resume.window_ms.get());
    let mut newest_first: Vec<&Acked> = kept.acked.iter().collect();
    newest_first.sort_by_key(|acked| std::cmp::Reverse(acked.ack.position.seq.get()));
    let mut problems = Vec::new();
    let mut judged = 0;
    for (rank, acked) in newest_first.into_iter().enumerate() {
        let Acked {
            ack,
            at,
            while_draining,
        } = acked;
        // FERRY-RESUME-3: the last max_events events, and every one younger than window_ms.
        if rank >= max_events && read_at.saturating_duration_since(*at) >= window {
            continue;
        }
        judged += 1;
        if !holds(&page, &ack.message_id, &ack.position) {
            problems.push(format!(
                "the publish acknowledged {} as {} at seq {} of epoch {} is not in the history read while draining (which lists {})",
                if *while_draining {
                    "while the server drained"
                } else {
                    "before the stop"
                },
                ack.message_id.as_str(),
                ack.position.seq.get(),
                ack.position.epoch.as_str(),
                listed(&page)
            ));
        }
    }
    if judged == 0 {
        return Err(Finding::skip(format!(
            "the server advertises resume max_events {} and window_ms {}, so it need keep none of the acknowledged publishes to judge",
            kept.resume.max_events.get(),
            kept.resume.window_ms.get()
        )));
    }
    let refused = kept.refused.as_deref().map_or_else(String::new, |why| {
        format!("; publishing while draining stopped at {why}")
    });
    verdict(
        format!(
            "every publish to {} acknowledged before the stop and while the server drains ({} of them{refused}) is in the channel's history read while it drains ({})",
            kept.channel,
            kept.acked.len(),
            cite(&ctx)
        ),
        problems,
    )
}
