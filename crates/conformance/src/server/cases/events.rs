//! Events, publish acknowledgements and de-duplication (FERRY-EVENT-1, FERRY-EVENT-2,
//! FERRY-PUBLISH-1, FERRY-DEDUP-1), and a session that stops reading (FERRY-EVENT-6).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ferry_protocol::{MessageId, PublishResponse, RecoveryGap, ServerMessage, StreamPosition};
use reqwest::Method;
use serde_json::{Value, json};

use super::{cite, param, param_u64, verdict};
use crate::case::{CaseResult, Finding};
use crate::server::checks::{a, holds, listed, pos};
use crate::server::ctx::{Ctx, REPLY_WAIT, Who, setup, subscribe};
use crate::server::driver::{Got, Session, seqs};
use crate::server::http::Cred;

/// An acknowledgement, over either transport.
#[derive(Debug, Clone)]
struct Ack {
    message_id: MessageId,
    position: StreamPosition,
    duplicate: bool,
}

impl Ack {
    fn shown(&self) -> String {
        format!(
            "message id {}, {}, duplicate {}",
            self.message_id.as_str(),
            pos(&self.position),
            self.duplicate
        )
    }
}

/// Publishes over `via` (`ws` through `session`, or `http`) and returns the acknowledgement;
/// a publish on WebSocket must be acknowledged with its id (FERRY-PUBLISH-1).
async fn publish_via(
    ctx: &Ctx,
    via: &str,
    session: Option<&mut Session>,
    channel: &str,
    key: &str,
) -> Result<Ack, Finding> {
    match (via, session) {
        ("ws", Some(session)) => {
            let id = session.id("pub");
            let expected = format!(
                "publish {id} to {channel} acknowledged with published carrying id {id} and channel {channel} (FERRY-PUBLISH-1)"
            );
            match session
                .request(
                    &json!({ "type": "publish", "id": id, "channel": channel, "idempotency_key": key, "payload": ctx.payload() }),
                    REPLY_WAIT,
                    &expected,
                )
                .await?
            {
                ServerMessage::Published(p) if p.channel.as_str() == channel => Ok(Ack {
                    message_id: p.message_id,
                    position: p.position,
                    duplicate: p.duplicate,
                }),
                other => Err(Finding::fail(expected, a(&other))),
            }
        }
        ("http", _) => {
            let ack = ctx.http.publish(channel, key, ctx.payload()).await?;
            Ok(Ack {
                message_id: ack.message_id,
                position: ack.position,
                duplicate: ack.duplicate,
            })
        }
        (other, _) => Err(Finding::error(format!(
            "unknown transport {other:?} (ws or http)"
        ))),
    }
}

/// `count` publishes (param `via`: ws or http) to a fresh channel reach a subscriber as
/// events with seq 1, 2, 3, ... in one epoch, in order, with the acknowledged message ids
/// and positions (FERRY-EVENT-1, FERRY-EVENT-2; on WebSocket also FERRY-PUBLISH-1).
pub(super) async fn sequence(ctx: Ctx) -> CaseResult {
    let via = param(&ctx, "via")?;
    let count = param_u64(&ctx, "count")?;
    let channel = ctx.channel(0);
    let mut subscriber = ctx.session(Who::Main).await?;
    let subscribed = subscribe(&mut subscriber, &channel).await?;
    let mut publisher = if via == "ws" {
        Some(ctx.session(Who::Main).await?)
    } else {
        None
    };
    let mut acks = Vec::new();
    for n in 1..=count {
        acks.push(
            publish_via(
                &ctx,
                via,
                publisher.as_mut(),
                &channel,
                &ctx.key(&format!("seq-{n}")),
            )
            .await?,
        );
    }
    let n = usize::try_from(count).unwrap_or(usize::MAX);
    let expected = format!(
        "{count} events of the fresh channel {channel}, at seq 1 to {count} of the subscribed epoch {} in order, with the message ids and positions of the {count} acknowledgements ({})",
        subscribed.position.epoch.as_str(),
        cite(&ctx)
    );
    let events = subscriber
        .events(&channel, n, REPLY_WAIT, &expected)
        .await?;
    let mut problems = Vec::new();
    if subscribed.position.seq.get() != 0 {
        problems.push(format!(
            "subscribed to the fresh channel at {} (a channel without events has seq 0)",
            pos(&subscribed.position)
        ));
    }
    for (i, event) in events.iter().enumerate() {
        let want = i as u64 + 1;
        if event.position.seq.get() != want || event.position.epoch != subscribed.position.epoch {
            problems.push(format!(
                "event {} is at {}, not epoch {} seq {want}",
                i + 1,
                pos(&event.position),
                subscribed.position.epoch.as_str()
            ));
        }
        match acks.iter().find(|a| a.message_id == event.message_id) {
            Some(ack) if ack.position == event.position => {}
            Some(ack) => problems.push(format!(
                "event {} ({}) was acknowledged at {}",
                event.message_id.as_str(),
                pos(&event.position),
                pos(&ack.position)
            )),
            None => problems.push(format!(
                "event {} at {} matches no acknowledgement",
                event.message_id.as_str(),
                pos(&event.position)
            )),
        }
        if event.payload.to_value().ok().as_ref() != Some(ctx.payload()) {
            problems.push(format!(
                "event at {} carries the payload {} instead of the published {}",
                pos(&event.position),
                event.payload,
                ctx.payload()
            ));
        }
    }
    let ids: BTreeSet<&str> = acks.iter().map(|a| a.message_id.as_str()).collect();
    if ids.len() != acks.len() {
        problems.push("two acknowledgements share a message id".into());
    }
    if let Some(dup) = acks.iter().find(|a| a.duplicate) {
        problems.push(format!(
            "a publish with a fresh idempotency key was acknowledged as a duplicate: {}",
            dup.shown()
        ));
    }
    if !problems.is_empty() {
        problems.push(format!("events arrived at seq {}", seqs(&events)));
    }
    verdict(expected, problems)
}

/// A publish on WebSocket is acknowledged with published carrying its id once the event is
/// in the history; the same holds for the HTTP acknowledgement (FERRY-PUBLISH-1).
pub(super) async fn ack_after_store(ctx: Ctx) -> CaseResult {
    let channel = ctx.channel(0);
    let mut session = ctx.session(Who::Main).await?;
    let mut acks =
        vec![publish_via(&ctx, "ws", Some(&mut session), &channel, &ctx.key("ws")).await?];
    acks.push(publish_via(&ctx, "http", None, &channel, &ctx.key("http")).await?);
    let mut problems = Vec::new();
    for (via, ack) in ["WebSocket", "HTTP"].iter().zip(&acks) {
        let page = ctx
            .http
            .history_page(&format!(
                "channel={channel}&epoch={}&after_seq={}",
                ack.position.epoch.as_str(),
                ack.position.seq.get().saturating_sub(1)
            ))
            .await?;
        if !holds(&page, &ack.message_id, &ack.position) {
            problems.push(format!(
                "right after the {via} acknowledgement ({}), the history holds {}",
                ack.shown(),
                listed(&page)
            ));
        }
    }
    verdict(
        format!(
            "a publish is acknowledged only once its event is stored: the history read right after each acknowledgement holds the event at the acknowledged position ({})",
            cite(&ctx)
        ),
        problems,
    )
}

/// A publish repeated with the same idempotency key (params `first` and `second`: ws or
/// http) is acknowledged with the original message id and position and duplicate true, and
/// a subscriber gets the event once (FERRY-DEDUP-1).
pub(super) async fn dedup(ctx: Ctx) -> CaseResult {
    let first = param(&ctx, "first")?;
    let second = param(&ctx, "second")?;
    let channel = ctx.channel(0);
    let mut subscriber = ctx.subscribed(Who::Main, &channel).await?;
    let mut publisher = if first == "ws" || second == "ws" {
        Some(ctx.session(Who::Main).await?)
    } else {
        None
    };
    let key = ctx.key("once");
    let original = publish_via(&ctx, first, publisher.as_mut(), &channel, &key).await?;
    let repeat = publish_via(&ctx, second, publisher.as_mut(), &channel, &key).await?;
    let marker = publish_via(&ctx, "http", None, &channel, &ctx.key("marker")).await?;
    let expected = format!(
        "the publish repeated over {second} with the idempotency key {key}, first published over {first}, acknowledged with the original message id and position and duplicate true, and not stored or delivered again ({})",
        cite(&ctx)
    );
    let mut problems = Vec::new();
    if original.duplicate {
        problems.push(format!(
            "the first publish was acknowledged as a duplicate: {}",
            original.shown()
        ));
    }
    if !repeat.duplicate
        || repeat.message_id != original.message_id
        || repeat.position != original.position
    {
        problems.push(format!(
            "the first acknowledgement was ({}), the repeat's ({})",
            original.shown(),
            repeat.shown()
        ));
    }
    if marker.position.seq.get() != original.position.seq.get() + 1 {
        problems.push(format!(
            "the next publish with a new key was stored at {}, not right after the original at {} (the repeat was stored again)",
            pos(&marker.position),
            pos(&original.position)
        ));
    }
    let events = subscriber
        .events(&channel, 2, REPLY_WAIT, &expected)
        .await
        .map_err(setup)?;
    let ids: Vec<&MessageId> = events.iter().map(|e| &e.message_id).collect();
    if ids != [&original.message_id, &marker.message_id] {
        problems.push(format!(
            "the subscriber got events at seq {} with message ids {} (expected {} then {})",
            seqs(&events),
            ids.iter()
                .map(|id| id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            original.message_id.as_str(),
            marker.message_id.as_str()
        ));
    }
    verdict(expected, problems)
}

/// The sizes the events of `server.event.fell_behind` are padded to, largest first: the
/// first one the namespace's schema accepts is used.
const FELL_BEHIND_EVENT_BYTES: [usize; 5] = [64 << 10, 16 << 10, 4 << 10, 1 << 10, 512];

/// What the kernel's buffers may hold of a session that does not read, at most: the margin
/// above the server's own queue. The server's send buffer grows with the connection's window
/// (on loopback, whose segments are 64 KiB, to hundreds of KiB at once), up to 4 MiB by Linux's
/// defaults (`net.ipv4.tcp_wmem`); the runner's receive buffer does not grow while it does not
/// read, and starts at 128 KiB (`net.ipv4.tcp_rmem`).
const KERNEL_BUFFERS: u64 = (4 << 20) + (256 << 10);

/// A session that stops reading while its channel carries twice what the server may queue for
/// it (`--max-queued-bytes`) and the kernel's buffers besides is closed,
/// while a neighbour on the same channel gets every event in order; the stopped one, reading
/// again, gets a gapless run of the events and then its close, and a resume from the last event
/// it delivered misses nothing (FERRY-EVENT-6, FERRY-SUBSCRIBE-5).
pub(super) async fn fell_behind(ctx: Ctx) -> CaseResult {
    let budget = 2 * ctx.options().max_queued_bytes + KERNEL_BUFFERS;
    let channel = ctx.channel(0);
    let mut neighbour = ctx.subscribed(Who::Main, &channel).await?;
    let mut slow = ctx.session(Who::Main).await?;
    let head = subscribe(&mut slow, &channel).await?.position;
    let max = super::limits::max_bytes(&slow)?;
    let (heartbeat, patience) = {
        let heartbeat = &slow.welcome().heartbeat;
        (
            Duration::from_millis(heartbeat.interval_ms.get()),
            Duration::from_millis(heartbeat.timeout_ms.get()),
        )
    };
    let (base, fields) = super::limits::pad_fields(&ctx)?;
    slow.set_reading(false);

    // The first publish finds the largest padding a string field takes.
    let mut first = None;
    let mut tried = Vec::new();
    let mut candidates = Vec::new();
    for size in FELL_BEHIND_EVENT_BYTES
        .into_iter()
        .filter(|size| *size <= max / 2)
    {
        candidates.extend(fields.iter().map(|field| (size, field.clone())));
    }
    for (event_bytes, field) in candidates {
        let mut payload = base.clone();
        payload.insert(field.clone(), Value::String(String::new()));
        let Some(pad) = event_bytes.checked_sub(Value::Object(payload.clone()).to_string().len())
        else {
            continue;
        };
        payload.insert(field.clone(), Value::String("x".repeat(pad)));
        let payload = Value::Object(payload);
        let body =
            json!({ "channel": channel, "idempotency_key": ctx.key("0"), "payload": payload });
        let reply = ctx
            .http
            .call(
                Method::POST,
                "/v1/publish",
                &Cred::Main,
                Some(body.to_string()),
            )
            .await?;
        if reply.status == 422 {
            tried.push(format!("{field} at {event_bytes} bytes"));
            continue;
        }
        let ack: PublishResponse = reply.json().map_err(|e| {
            Finding::error(format!(
                "set-up: a publish of a {event_bytes}-byte payload answered {} ({e})",
                reply.shown()
            ))
        })?;
        first = Some((payload, ack, event_bytes));
        break;
    }
    let Some((payload, first, event_bytes)) = first else {
        return Err(Finding::skip(format!(
            "no padded payload passes the namespace's schema (tried: {}); pass --pad-field NAME, naming a string field of the payload's schema that takes at least 512 characters",
            if tried.is_empty() {
                "none".into()
            } else {
                tried.join(", ")
            }
        )));
    };
    let count = budget.div_ceil(event_bytes as u64).max(2);
    let mut acks = vec![first];
    acks.extend(
        ctx.http
            .publish_many(&channel, &ctx.key("more"), count - 1, &payload)
            .await?,
    );
    let last = acks
        .last()
        .map(|ack| ack.position.clone())
        .unwrap_or(head.clone());
    let expected = format!(
        "while one session of {channel} stops reading and {count} events of about {event_bytes} bytes ({budget} bytes: twice --max-queued-bytes and 4.25 MiB more) are published, a neighbour on the channel gets every one in order; the stopped session, reading again, gets a gapless run of them and then a close with 4410 (fell_behind; or 4408 when its heartbeat lapsed first), not all of them and an open session; and a resume from the last event it delivered misses nothing ({})",
        cite(&ctx)
    );
    let mut problems = Vec::new();
    let wait = REPLY_WAIT + heartbeat + patience;
    let delivered = neighbour
        .events(&channel, acks.len(), wait + REPLY_WAIT, &expected)
        .await?;
    let want: Vec<u64> = acks.iter().map(|ack| ack.position.seq.get()).collect();
    let got: Vec<u64> = delivered.iter().map(|e| e.position.seq.get()).collect();
    if got != want {
        problems.push(format!(
            "the neighbour got seq {} where the acknowledgements were seq {} to {}",
            seqs(&delivered),
            want.first().copied().unwrap_or_default(),
            want.last().copied().unwrap_or_default()
        ));
    }

    slow.set_reading(true);
    let (before, end) = slow.until_end(wait).await;
    let run: Vec<u64> = before
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Event(e) if e.channel.as_str() == channel => Some(e.position.seq.get()),
            _ => None,
        })
        .collect();
    let from_seq = head.seq.get();
    if run
        .iter()
        .enumerate()
        .any(|(i, seq)| *seq != from_seq + 1 + i as u64)
    {
        problems.push(format!(
            "the stopped session's events, once it read again, were not a gapless run from seq {}: {}",
            from_seq + 1,
            run.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
        ));
    }
    let shown_end = end.describe();
    match end.close_code() {
        Some(4410) => {}
        Some(4408) => ctx.t.note(
            "runner",
            "the stopped session was closed for its heartbeat (4408) before any queue bound showed",
        ),
        _ if matches!(end, Got::Dropped(_)) => ctx.t.note(
            "runner",
            "the stopped session's connection ended without a close frame: the server gave up writing to it",
        ),
        _ => problems.push(format!(
            "after {} of the {count} events, the stopped session: {shown_end}",
            run.len()
        )),
    }
    if !problems.is_empty() {
        return verdict(expected, problems);
    }
    drop(slow);

    let resume_at = match run.last() {
        Some(seq) => json!({ "epoch": head.epoch, "seq": seq }),
        None => json!(head),
    };
    let mut session = ctx.session(Who::Main).await?;
    let subscribed =
        super::resume::resume_from(&mut session, &channel, &resume_at, &expected).await?;
    let recovery = subscribed.recovery.clone().expect("checked by resume_from");
    let resumed = resume_at["seq"].as_u64().unwrap_or_default();
    if recovery.complete {
        let missed = usize::try_from(last.seq.get().saturating_sub(resumed)).unwrap_or(0);
        let replayed = session
            .events(&channel, missed, REPLY_WAIT + REPLY_WAIT, &expected)
            .await?;
        let replayed_seqs: Vec<u64> = replayed.iter().map(|e| e.position.seq.get()).collect();
        if replayed_seqs != (resumed + 1..=last.seq.get()).collect::<Vec<_>>() {
            problems.push(format!(
                "the resume from seq {resumed} replayed seq {} instead of {} to {}",
                seqs(&replayed),
                resumed + 1,
                last.seq.get()
            ));
        }
    } else if recovery.reason != Some(RecoveryGap::HistoryExceeded) {
        problems.push(format!(
            "the resume from seq {resumed} of an unchanged channel answered {}: an incomplete recovery here can only be history_exceeded",
            a(&ServerMessage::Subscribed(subscribed.clone()))
        ));
    }
    verdict(expected, problems)
}

/// A key repeated just before the advertised resume.window_ms ends is still a duplicate: the
/// dedup window is at least the resume window (FERRY-DEDUP-2). The wait counts from the
/// runner's instant before it sent the first publish (the server stored the key after it),
/// less the tolerance, which covers the second request's way to the server. A timer that woke
/// late, or an answer that came after the window ended, leaves a non-duplicate inconclusive:
/// the repeat may have reached the server once the window was over.
pub(super) async fn dedup_window(ctx: Ctx) -> CaseResult {
    let channel = ctx.channel(0);
    let session = ctx.session(Who::Main).await?;
    let window = Duration::from_millis(session.welcome().resume.window_ms.get());
    drop(session);
    let margin = ctx.tolerance();
    let wait = window.saturating_sub(margin);
    ctx.within_budget(
        wait,
        &format!(
            "resume.window_ms of {} ms less the tolerance: the key is repeated just before the window ends",
            window.as_millis()
        ),
    )?;
    let key = ctx.key("window");
    let sent = Instant::now();
    let original = ctx.http.publish(&channel, &key, ctx.payload()).await?;
    let planned = sent + wait;
    ctx.t.note(
        "runner",
        format!(
            "waiting until {} ms after the first publish was sent (resume.window_ms {} ms less the tolerance {} ms) to repeat its key",
            wait.as_millis(),
            window.as_millis(),
            margin.as_millis()
        ),
    );
    tokio::time::sleep_until(planned.into()).await;
    let late = Instant::now().saturating_duration_since(planned);
    let repeat = ctx.http.publish(&channel, &key, ctx.payload()).await?;
    let answered = sent.elapsed();
    let expected = format!(
        "the key {key} repeated {} ms after its first publish was sent, within the advertised resume.window_ms of {} ms, acknowledged with duplicate true and the original message id and position: the dedup window is at least the resume window ({})",
        (wait + late).as_millis(),
        window.as_millis(),
        cite(&ctx)
    );
    if repeat.duplicate
        && repeat.message_id == original.message_id
        && repeat.position == original.position
    {
        return Ok(());
    }
    let observed = format!(
        "the first publish was acknowledged with message id {}, {}; the repeat with message id {}, {}, duplicate {}",
        original.message_id.as_str(),
        pos(&original.position),
        repeat.message_id.as_str(),
        pos(&repeat.position),
        repeat.duplicate
    );
    if late > margin / 2 || answered >= window {
        return Err(Finding::inconclusive(format!(
            "{observed}; but the runner's timer woke {} ms late and the repeat was answered {} ms after the first publish was sent, so it may have reached the server after the window of {} ms ended",
            late.as_millis(),
            answered.as_millis(),
            window.as_millis()
        )));
    }
    Err(Finding::fail(expected, observed))
}
