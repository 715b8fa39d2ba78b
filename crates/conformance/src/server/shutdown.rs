//! Graceful shutdown (FERRY-SHUTDOWN-1, -2, -4, -5). A server stops once, so the first shutdown
//! case to run stops it and records what every session saw; each shutdown case then judges
//! its own rule on that one observation, whose transcript it copies.
//!
//! FERRY-SHUTDOWN-3 (no acknowledged publish is lost) cannot be seen from outside once the
//! server is gone, so no case claims it.

use std::sync::Arc;
use std::time::Duration;

use ferry_protocol::{
    ErrorCode, Goodbye, GoodbyeReason, HealthResponse, HealthResponseStatus, SUBPROTOCOL,
    ServerMessage,
};
use reqwest::Method;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::cases::{cite, verdict};
use super::checks::{close_name, http_error_problems, summary};
use super::ctx::{Ctx, Who};
use super::driver::{ConnectError, Got, Session};
use super::http::{Cred, Reply};
use crate::case::{CaseResult, Finding};
use crate::transcript::{Direction, Entry, Transcript};

/// Sessions open when the server is stopped.
const SESSIONS: usize = 3;

/// How long after the stop a goodbye may take (the stop command may take a moment).
const GOODBYE_WAIT: Duration = Duration::from_secs(10);

/// How long after its goodbye a session may take to close.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// What the one stop of the run showed.
pub(crate) struct Observation {
    entries: Vec<Entry>,
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
}

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
    Observation {
        entries: t.entries(),
        outcome,
    }
}

async fn stop_and_watch(ctx: &Ctx) -> Result<Stopped, Finding> {
    let mut sessions = Vec::with_capacity(SESSIONS);
    for n in 0..SESSIONS {
        sessions.push(ctx.subscribed(Who::Main, &ctx.channel(n)).await?);
    }
    let spare = ctx.http.ticket(&Cred::Main).await?;
    let first_goodbye = Arc::new(Notify::new());
    ctx.stop_server()?;
    let stopped = Instant::now();
    let watchers: Vec<_> = sessions
        .into_iter()
        .map(|session| {
            let first_goodbye = first_goodbye.clone();
            tokio::spawn(watch(session, first_goodbye, stopped))
        })
        .collect();
    // Ask for new work while the server drains: after the first goodbye.
    let drained = tokio::time::timeout(GOODBYE_WAIT, first_goodbye.notified()).await;
    let (ticket, upgrade, probes) = if drained.is_ok() {
        // All at once: a server may stop listening soon after its sessions have closed.
        let query = format!("ticket={}", spare.ticket.as_str());
        let upgrade = async {
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
        let (ticket, upgrade, ready, health) = tokio::join!(
            answer(ctx, Method::POST, "/v1/tickets", &Cred::Main),
            upgrade,
            answer(ctx, Method::GET, READY, &Cred::Nothing),
            answer(ctx, Method::GET, HEALTH, &Cred::Nothing),
        );
        let probes = [(READY, ready), (HEALTH, health)];
        let upgrade = upgrade?;
        (ticket, upgrade, probes)
    } else {
        let unseen = || Err("no goodbye came, so the server was not seen draining".into());
        (
            unseen(),
            Upgrade::NoAnswer("no goodbye came".into()),
            [(READY, unseen()), (HEALTH, unseen())],
        )
    };
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
    })
}

const READY: &str = "/v1/ready";
const HEALTH: &str = "/v1/health";

/// One HTTP request while the server drains; `Err` says why no answer came.
async fn answer(ctx: &Ctx, method: Method, path: &str, cred: &Cred) -> Result<Reply, String> {
    ctx.http
        .call(method, path, cred, None)
        .await
        .map_err(|f| match f {
            Finding::Error(why) => why,
            other => format!("{other:?}"),
        })
}

/// Reads one session after the stop: its goodbye, and how it ends.
async fn watch(mut session: Session, first_goodbye: Arc<Notify>, stopped: Instant) -> Ended {
    let mut goodbye = None;
    let mut other = Vec::new();
    let mut deadline = stopped + GOODBYE_WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match session.recv(left).await {
            Got::Message(ServerMessage::Goodbye(g), _) if goodbye.is_none() => {
                goodbye = Some(g);
                first_goodbye.notify_one();
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
    for entry in &observed.entries {
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
/// (FERRY-SHUTDOWN-4). Asked right after the first goodbye; a server that stopped
/// answering HTTP by then leaves nothing to judge.
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
            "the server answered no HTTP request after its first goodbye (it stopped listening at once), so its draining could not be seen: {}",
            unanswered.join("; ")
        )));
    }
    verdict(
        format!(
            "after its first goodbye, while it drains, the server refuses a new ticket and a new session (with a ticket obtained before the stop) with HTTP 503 and an ErrorBody whose code is unavailable ({})",
            cite(&ctx)
        ),
        problems,
    )
}

/// While draining, `GET /v1/ready` answers 503 unavailable and `GET /v1/health` still 200
/// with status draining (FERRY-SHUTDOWN-5, SHOULD). Asked right after the first goodbye.
pub(super) async fn ready_and_health(ctx: Ctx) -> CaseResult {
    let observed = observation(&ctx).await;
    let stopped = stopped(&observed)?;
    let [(_, ready), (_, health)] = &stopped.probes;
    let (ready, health) = match (ready, health) {
        (Ok(ready), Ok(health)) => (ready, health),
        (Err(why), _) | (_, Err(why)) => {
            return Err(Finding::skip(format!(
                "the server answered no probe after its first goodbye, so its draining could not be seen: {why}"
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
            "after its first goodbye, while it drains, the server answers GET {READY} with 503 unavailable (so load balancers stop sending work) and GET {HEALTH} with 200 and status draining (so an orchestrator lets it finish) ({})",
            cite(&ctx)
        ),
        problems,
    )
}
