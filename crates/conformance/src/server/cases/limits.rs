//! Heartbeat, size and rate limits (FERRY-HEARTBEAT-1, -3, FERRY-SIZE-1, -3, -4,
//! FERRY-RATE-1 to -3).

use std::collections::BTreeMap;
use std::time::Duration;

use ferry_protocol::{ErrorCode, ServerMessage};
use reqwest::Method;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::{cite, verdict};
use crate::case::{CaseResult, Finding};
use crate::server::checks::{a, close_name, error_info_problems, http_error_problems, summary};
use crate::server::ctx::{Ctx, REPLY_WAIT, Who, expect_welcome, ms_between};
use crate::server::driver::{Got, Session, reply_id};
use crate::server::http::Cred;

/// Rate-limit cases are skipped above this burst.
const MOST_BURST: u64 = 10_000;

/// Waits for the next ping until `deadline`; other messages are ignored.
async fn next_ping(session: &mut Session, deadline: Instant) -> Result<Instant, Got> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match session.recv_raw(left).await {
            Got::Message(ServerMessage::Ping(_), at) => return Ok(at),
            Got::Message(..) => {}
            other => return Err(other),
        }
    }
}

/// Waits for the next ping until `deadline`, as [`next_ping`], with its nonce.
async fn next_ping_nonce(
    session: &mut Session,
    deadline: Instant,
) -> Result<(Instant, String), Got> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match session.recv_raw(left).await {
            Got::Message(ServerMessage::Ping(ping), at) => {
                return Ok((at, ping.nonce.as_str().to_owned()));
            }
            Got::Message(..) => {}
            other => return Err(other),
        }
    }
}

/// Pings arrive within heartbeat.interval_ms (plus the tolerance) of the welcome and of each
/// other (FERRY-HEARTBEAT-1).
pub(super) async fn ping_every_interval(ctx: Ctx) -> CaseResult {
    let mut session = ctx.session(Who::Main).await?;
    let interval = Duration::from_millis(session.welcome().heartbeat.interval_ms.get());
    let tolerance = ctx.tolerance();
    ctx.within_budget(
        2 * interval + tolerance,
        &format!(
            "two heartbeat.interval_ms of {} ms plus the tolerance",
            interval.as_millis()
        ),
    )?;
    let mut last = session.welcomed_at();
    for (n, since) in [(1, "the welcome"), (2, "the first ping")] {
        match next_ping(&mut session, last + interval + tolerance).await {
            Ok(at) => last = at,
            Err(got) => {
                return Err(Finding::fail(
                    format!(
                        "ping {n} within heartbeat.interval_ms ({} ms) + tolerance ({} ms) of {since} ({})",
                        interval.as_millis(),
                        tolerance.as_millis(),
                        cite(&ctx)
                    ),
                    got.describe(),
                ));
            }
        }
    }
    Ok(())
}

/// A session that answers no ping is closed with 4408 heartbeat.timeout_ms after the ping,
/// not before (FERRY-HEARTBEAT-3).
pub(super) async fn unanswered_closes(ctx: Ctx) -> CaseResult {
    closes_4408(ctx, false).await
}

/// A session that answers every ping with a pong carrying another nonce has answered none:
/// it is closed with 4408 heartbeat.timeout_ms after the first ping, as if silent
/// (FERRY-HEARTBEAT-3; a pong answers a ping by echoing its nonce, FERRY-HEARTBEAT-2).
pub(super) async fn wrong_nonce_closes(ctx: Ctx) -> CaseResult {
    closes_4408(ctx, true).await
}

/// A pong whose nonce is not `nonce`'s, within the schema's 64 characters.
fn other_nonce(nonce: &str) -> String {
    let other = format!("not-{nonce}");
    let other: String = other.chars().take(64).collect();
    if other == nonce {
        "not-the-ping's-nonce".to_owned()
    } else {
        other
    }
}

/// Answers each ping with a pong of another nonce until the session ends or `wait` passes.
async fn answer_wrongly(session: &mut Session, wait: Duration) -> Got {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match session.recv_raw(left).await {
            Got::Message(ServerMessage::Ping(ping), _) => {
                let pong = json!({ "type": "pong", "nonce": other_nonce(ping.nonce.as_str()) });
                session.send(&pong).await;
            }
            Got::Message(..) => {}
            other => return other,
        }
    }
}

/// The 4408 cases: no pong at all, or (`wrong_nonce`) a pong of another nonce to each ping.
async fn closes_4408(ctx: Ctx, wrong_nonce: bool) -> CaseResult {
    let (mut session, _) = ctx.open(Who::Main).await?;
    session.set_auto_pong(false);
    expect_welcome(&mut session)
        .await
        .map_err(|observed| Finding::error(format!("set-up: {observed}")))?;
    let heartbeat = &session.welcome().heartbeat;
    let interval = Duration::from_millis(heartbeat.interval_ms.get());
    let timeout = Duration::from_millis(heartbeat.timeout_ms.get());
    let tolerance = ctx.tolerance();
    ctx.within_budget(
        interval + timeout + tolerance,
        &format!(
            "heartbeat.interval_ms {} + heartbeat.timeout_ms {} + tolerance",
            interval.as_millis(),
            timeout.as_millis()
        ),
    )?;
    ctx.t.note(
        "runner",
        if wrong_nonce {
            "each ping is answered with a pong carrying another nonce in this case"
        } else {
            "pings are not answered in this case"
        },
    );
    let first_by = session.welcomed_at() + interval + tolerance;
    let ping = next_ping_nonce(&mut session, first_by)
        .await
        .map_err(|got| {
            Finding::error(format!(
                "no ping arrived within heartbeat.interval_ms + tolerance, so there is nothing to leave unanswered (see server.heartbeat.ping_every_interval): {}",
                got.describe()
            ))
        })?;
    let (ping, nonce) = ping;
    let expected = format!(
        "the session, which answers no ping{}, closed with 4408 (heartbeat_timeout) heartbeat.timeout_ms ({} ms) after the first ping, within the tolerance of {} ms ({})",
        if wrong_nonce {
            " (each pong carries a nonce other than its ping's, and so answers none)"
        } else {
            ""
        },
        timeout.as_millis(),
        tolerance.as_millis(),
        cite(&ctx)
    );
    let wait = timeout + tolerance + tolerance;
    let end = if wrong_nonce {
        let pong = json!({ "type": "pong", "nonce": other_nonce(&nonce) });
        session.send(&pong).await;
        answer_wrongly(&mut session, wait).await
    } else {
        session.until_end(wait).await.1
    };
    match end {
        Got::Closed {
            code: Some(4408),
            at,
            ..
        } => {
            let after = at.saturating_duration_since(ping);
            if after + tolerance < timeout {
                return Err(Finding::fail(
                    expected,
                    format!(
                        "closed with 4408 only {} ms after the ping, before heartbeat.timeout_ms",
                        after.as_millis()
                    ),
                ));
            }
            if after > timeout + tolerance {
                return Err(Finding::fail(
                    expected,
                    format!("closed with 4408 {} ms after the ping", after.as_millis()),
                ));
            }
            Ok(())
        }
        Got::Silent(_) => Err(Finding::fail(
            expected,
            format!(
                "the session is still open {} ms after the unanswered ping",
                ms_between(ping, Instant::now())
            ),
        )),
        other => Err(Finding::fail(
            expected,
            format!(
                "{} after {} ms",
                other.describe(),
                ms_between(ping, Instant::now())
            ),
        )),
    }
}

/// A session that answers every ping stays open for two heartbeat intervals (and at least
/// interval + timeout), and still answers requests (FERRY-HEARTBEAT-3).
pub(super) async fn answered_stays_open(ctx: Ctx) -> CaseResult {
    let mut session = ctx.session(Who::Main).await?;
    let heartbeat = &session.welcome().heartbeat;
    let interval = Duration::from_millis(heartbeat.interval_ms.get());
    let timeout = Duration::from_millis(heartbeat.timeout_ms.get());
    let wait = (2 * interval).max(interval + timeout) + ctx.tolerance();
    ctx.within_budget(
        wait,
        &format!(
            "two heartbeat.interval_ms of {} ms (and at least interval + heartbeat.timeout_ms {} ms) plus the tolerance",
            interval.as_millis(),
            timeout.as_millis()
        ),
    )?;
    let deadline = session.welcomed_at() + wait;
    let mut pings = 0;
    loop {
        match next_ping(&mut session, deadline).await {
            Ok(_) => pings += 1,
            Err(Got::Silent(_)) => break,
            Err(other) => {
                return Err(Finding::fail(
                    format!(
                        "a session that answers every ping with a pong echoing its nonce stays open ({})",
                        cite(&ctx)
                    ),
                    format!("after {pings} answered pings, {}", other.describe()),
                ));
            }
        }
    }
    if pings == 0 {
        return Err(Finding::error(
            "no ping arrived to answer, so this case has nothing to check (see server.heartbeat.ping_every_interval)",
        ));
    }
    ctx.still_open(
        &mut session,
        &format!(
            "after {} ms with every ping answered, the session still answers requests ({})",
            wait.as_millis(),
            cite(&ctx)
        ),
    )
    .await
}

/// A subscribe padded with JSON whitespace to exactly `size` bytes.
fn padded_subscribe(id: &str, channel: &str, size: usize) -> Result<String, Finding> {
    let head = format!(r#"{{"type":"subscribe","id":"{id}","channel":"{channel}""#);
    let pad = size.checked_sub(head.len() + 1).ok_or_else(|| {
        Finding::error(format!(
            "a subscribe needs {} bytes, more than {size}",
            head.len() + 1
        ))
    })?;
    Ok(format!("{head}{}}}", " ".repeat(pad)))
}

pub(super) fn max_bytes(session: &Session) -> Result<usize, Finding> {
    usize::try_from(session.welcome().limits.max_message_bytes.get())
        .map_err(|_| Finding::error("max_message_bytes does not fit in memory"))
}

/// A frame of exactly limits.max_message_bytes is accepted: a subscribe padded to that size
/// gets its subscribed reply (FERRY-SIZE-1).
pub(super) async fn exact_size_accepted(ctx: Ctx) -> CaseResult {
    let mut session = ctx.session(Who::Main).await?;
    let max = max_bytes(&session)?;
    let id = session.id("exact");
    let frame = padded_subscribe(&id, &ctx.channel(0), max)?;
    session.send_text(frame).await;
    let expected = format!(
        "a subscribe of exactly limits.max_message_bytes = {max} bytes (padded with JSON whitespace) is accepted: it gets its subscribed reply ({})",
        cite(&ctx)
    );
    match session.reply(&id, REPLY_WAIT, &expected).await? {
        ServerMessage::Subscribed(_) => Ok(()),
        other => Err(Finding::fail(expected, a(&other))),
    }
}

/// A frame one byte over limits.max_message_bytes closes the session with 1009, unanswered
/// (FERRY-SIZE-3, FERRY-SIZE-1).
pub(super) async fn one_byte_over(ctx: Ctx) -> CaseResult {
    let mut session = ctx.session(Who::Main).await?;
    let max = max_bytes(&session)?;
    let id = session.id("over");
    let frame = padded_subscribe(&id, &ctx.channel(0), max + 1)?;
    session.send_text(frame).await;
    let expected = format!(
        "a subscribe of limits.max_message_bytes + 1 = {} bytes is refused: the session closed with {} and the subscribe not answered ({})",
        max + 1,
        close_name(1009),
        cite(&ctx)
    );
    let (before, end) = session.until_end(REPLY_WAIT).await;
    if let Some(answer) = before.iter().find(|m| reply_id(m) == Some(id.as_str())) {
        return Err(Finding::fail(
            expected,
            format!("the oversized subscribe was answered: {}", summary(answer)),
        ));
    }
    if end.close_code() == Some(1009) {
        Ok(())
    } else {
        Err(Finding::fail(expected, end.describe()))
    }
}

/// An HTTP publish whose body fits limits.max_message_bytes but whose event frame (with the
/// fields the event adds) would not is refused with 413 message_too_large (FERRY-SIZE-4).
///
/// The payload is padded inside a string field: each of the payload's own string fields,
/// then each field of param `pad_fields` added to it, until the namespace's schema accepts
/// the padded payload (a 422 payload_invalid moves on to the next field).
pub(super) async fn http_event_too_large(ctx: Ctx) -> CaseResult {
    const KEY: &str = "k";
    /// Body bytes below the limit: the event frame adds at least 60 bytes more than the
    /// body's idempotency key takes, so it ends up above the limit.
    const BELOW: usize = 40;
    let session = ctx.session(Who::Main).await?;
    let max = max_bytes(&session)?;
    drop(session);
    let channel = ctx.channel(0);
    let (base, fields) = pad_fields(&ctx)?;
    let target = max - BELOW;
    // The least an event frame adds to the body: its type, message id, position and time
    // (each at their shortest), less the body's idempotency key.
    let event_extra =
        r#""type":"event","message_id":"m","position":{"epoch":"e","seq":1},"published_at_ms":0,"#
            .len()
            - format!(r#""idempotency_key":"{KEY}","#).len();
    debug_assert!(event_extra > BELOW);
    let mut tried = Vec::new();
    for field in &fields {
        let mut payload = base.clone();
        payload.insert(field.clone(), Value::String(String::new()));
        let empty = json!({ "channel": channel, "idempotency_key": KEY, "payload": payload })
            .to_string()
            .len();
        let Some(pad) = target.checked_sub(empty) else {
            tried.push(format!("{field} (the payload alone is too large)"));
            continue;
        };
        payload.insert(field.clone(), Value::String("x".repeat(pad)));
        let body =
            json!({ "channel": channel, "idempotency_key": KEY, "payload": payload }).to_string();
        debug_assert_eq!(body.len(), target);
        let reply = ctx
            .http
            .call(Method::POST, "/v1/publish", &Cred::Main, Some(body))
            .await?;
        if reply.status == 422 && reply.error_code() == Some(ErrorCode::PayloadInvalid) {
            tried.push(format!("{field} (payload_invalid)"));
            continue;
        }
        return verdict(
            format!(
                "a publish whose body is {target} bytes (within limits.max_message_bytes {max}) but whose event frame would be at least {} bytes (above it) is refused with HTTP 413 and an ErrorBody whose code is message_too_large, so that every stored event can reach every subscriber ({})",
                target + event_extra,
                cite(&ctx)
            ),
            http_error_problems(&reply, ErrorCode::MessageTooLarge),
        );
    }
    Err(Finding::skip(format!(
        "no padded payload of {target} bytes of body passes the namespace's schema (padded fields tried: {}); pass --pad-field NAME, naming a string field of the payload's schema that takes about {} characters (the case sets it in a copy of --payload), or, when the schema has none, declare this case in --known-unsupported",
        if tried.is_empty() {
            "none".to_owned()
        } else {
            tried.join(", ")
        },
        target
    )))
}

/// The payload to pad (a copy of `--payload`) and the string fields that may take the
/// padding: the payload's own, then the case's `pad_fields` param and `--pad-field`.
pub(super) fn pad_fields(ctx: &Ctx) -> Result<(Map<String, Value>, Vec<String>), Finding> {
    let Value::Object(base) = ctx.payload().clone() else {
        return Err(Finding::skip(
            "the --payload is not a JSON object, so there is no string field to pad",
        ));
    };
    let mut fields: Vec<String> = base
        .iter()
        .filter(|(_, v)| v.is_string())
        .map(|(k, _)| k.clone())
        .collect();
    for extra in ctx
        .case
        .params
        .get("pad_fields")
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(toml::Value::as_str)
        .chain(ctx.options().pad_fields.iter().map(String::as_str))
    {
        if !fields.iter().any(|f| f == extra) {
            fields.push(extra.to_owned());
        }
    }
    Ok((base, fields))
}

/// What each request id of a burst got.
#[derive(Default)]
pub(super) struct Answers {
    pub(super) by_id: BTreeMap<String, Vec<ServerMessage>>,
    pub(super) unmatched_rate_limited: Vec<ServerMessage>,
    last_at: Option<Instant>,
    end: Option<Got>,
}

/// Sends `n` unsubscribes (ids `<prefix>-1` to `-n`) back to back and collects the answers
/// until each id has one, the session ends or `REPLY_WAIT` passes.
pub(super) async fn flood(
    ctx: &Ctx,
    session: &mut Session,
    prefix: &str,
    n: u64,
) -> (Vec<String>, Answers, Instant) {
    let ids: Vec<String> = (1..=n).map(|i| format!("{prefix}-{i}")).collect();
    let channel = ctx.channel(0);
    let frames = ids
        .iter()
        .map(|id| json!({ "type": "unsubscribe", "id": id, "channel": channel }).to_string())
        .collect();
    ctx.t.note(
        "runner",
        format!("sending {n} unsubscribe frames back to back, unpaced"),
    );
    let sent = Instant::now();
    session.send_burst(frames);
    let mut answers = Answers::default();
    let deadline = sent + REPLY_WAIT;
    while answers.by_id.len() < ids.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match session.recv(left).await {
            Got::Message(message, at) => {
                if let Some(id) = reply_id(&message).filter(|id| ids.iter().any(|i| i == id)) {
                    answers.last_at = Some(at);
                    answers
                        .by_id
                        .entry(id.to_owned())
                        .or_default()
                        .push(message);
                } else if matches!(&message, ServerMessage::Error(e) if e.error.code == ErrorCode::RateLimited)
                {
                    answers.last_at = Some(at);
                    answers.unmatched_rate_limited.push(message);
                }
            }
            Got::Silent(_) => break,
            other => {
                answers.end = Some(other);
                break;
            }
        }
    }
    (ids, answers, sent)
}

fn is_rate_limited(message: &ServerMessage) -> bool {
    matches!(message, ServerMessage::Error(e) if e.error.code == ErrorCode::RateLimited)
}

/// The welcome's token bucket, or a skip when the burst is too large to exceed.
pub(super) fn bucket(session: &Session) -> Result<(u64, u64), Finding> {
    let rate = &session.welcome().limits.rate_limit;
    let burst = rate.burst.get();
    if burst > MOST_BURST {
        return Err(Finding::skip(format!(
            "the welcome advertises rate_limit.burst {burst}; this case sends at most {MOST_BURST} frames at once"
        )));
    }
    Ok((burst, rate.messages_per_second.get()))
}

/// Frames sent at once beyond the advertised burst find the bucket empty: they are answered
/// with rate_limited carrying their id and retry_after_ms, and not acted on; the first
/// `burst` are served (FERRY-RATE-1, FERRY-ERROR-1).
pub(super) async fn rate_limited(ctx: Ctx) -> CaseResult {
    let mut session = ctx.session(Who::Main).await?;
    let (burst, rate) = bucket(&session)?;
    // Beyond the burst by more than the bucket can refill while the frames arrive (100 ms).
    let extra = 3 + (rate as f64 * 0.1).ceil() as u64;
    let (ids, answers, sent) = flood(&ctx, &mut session, "rl", burst + extra).await;
    let expected = format!(
        "of {} unsubscribes sent at once, with the advertised rate_limit burst {burst} and {rate}/s: the first {burst} answered with unsubscribed, those that find the bucket empty with an error rate_limited carrying the frame's id, retryable true and retry_after_ms, no frame answered twice, and no more served than the bucket allows ({})",
        ids.len(),
        cite(&ctx)
    );
    let mut problems = Vec::new();
    let mut served = 0u64;
    let mut limited = 0u64;
    for (i, id) in ids.iter().enumerate() {
        let got = answers.by_id.get(id).map(Vec::as_slice).unwrap_or_default();
        let unsubscribed = got
            .iter()
            .filter(|m| matches!(m, ServerMessage::Unsubscribed(_)))
            .count();
        let refused = got.iter().filter(|m| is_rate_limited(m)).count();
        served += unsubscribed as u64;
        limited += refused as u64;
        if got.len() > 1 {
            problems.push(format!(
                "{id} was answered {} times: {}",
                got.len(),
                got.iter().map(summary).collect::<Vec<_>>().join(", ")
            ));
        }
        // A frame within the burst finds a token: refusing it meters with a smaller bucket
        // than the one advertised, even when the session is closed for it afterwards.
        if (i as u64) < burst && unsubscribed == 0 && (answers.end.is_none() || refused > 0) {
            problems.push(format!(
                "{id}, within the burst of {burst}, got {}",
                if got.is_empty() {
                    "no answer".to_owned()
                } else {
                    got.iter().map(summary).collect::<Vec<_>>().join(", ")
                }
            ));
        }
        for message in got {
            if let ServerMessage::Error(e) = message {
                problems.extend(error_info_problems(&e.error));
            }
        }
    }
    for message in &answers.unmatched_rate_limited {
        problems.push(format!(
            "a rate_limited error without the refused frame's id: {}",
            summary(message)
        ));
    }
    if limited == 0 && answers.unmatched_rate_limited.is_empty() {
        problems.push(format!(
            "none of the {} frames was answered with rate_limited ({served} unsubscribed)",
            ids.len()
        ));
    }
    let span = answers
        .last_at
        .map_or(Duration::ZERO, |at| at.saturating_duration_since(sent));
    let most = burst + (rate as f64 * span.as_secs_f64()).ceil() as u64 + 1;
    if served > most {
        problems.push(format!(
            "{served} frames were served within {} ms, more than the bucket allows ({burst} + {rate}/s)",
            span.as_millis()
        ));
    }
    if let Some(end) = &answers.end
        && end.close_code() != Some(4429)
    {
        problems.push(format!("then {}", end.describe()));
    }
    verdict(expected, problems)
}

/// A session that keeps sending after being rate limited is closed with 4429
/// (FERRY-RATE-2).
pub(super) async fn keeps_sending(ctx: Ctx) -> CaseResult {
    let mut session = ctx.session(Who::Main).await?;
    let (burst, rate) = bucket(&session)?;
    let n = burst + 30 + (rate as f64 * 0.2).ceil() as u64;
    let (_, answers, _) = flood(&ctx, &mut session, "flood", n).await;
    let end = match answers.end {
        Some(end) => end,
        None => session.until_end(REPLY_WAIT).await.1,
    };
    let limited = answers
        .by_id
        .values()
        .flatten()
        .chain(&answers.unmatched_rate_limited)
        .filter(|m| is_rate_limited(m))
        .count();
    let expected = format!(
        "{n} frames sent at once (the advertised burst is {burst}, {rate}/s): rate_limited errors, then the session closed with {} ({})",
        close_name(4429),
        cite(&ctx)
    );
    let mut problems = Vec::new();
    if end.close_code() != Some(4429) {
        problems.push(end.describe());
    }
    if limited == 0 {
        problems.push("no rate_limited error before the close".into());
    }
    verdict(expected, problems)
}

/// The user's sessions up to the connection limit are welcomed; one more is closed with 4409
/// and the others stay open (FERRY-RATE-3).
pub(super) async fn connection_limit(ctx: Ctx) -> CaseResult {
    let limit = ctx.options().max_connections_per_user;
    let mut open = Vec::new();
    for n in 1..=limit {
        let (mut session, _) = ctx.open(Who::Main).await?;
        if let Err(observed) = expect_welcome(&mut session).await {
            if session.ended().and_then(Got::close_code) == Some(4409) {
                return Err(Finding::fail(
                    format!(
                        "the user's first {limit} sessions (--max-connections-per-user) welcomed ({})",
                        cite(&ctx)
                    ),
                    format!("session {n} was closed with 4409: {observed}"),
                ));
            }
            return Err(Finding::error(format!("set-up: session {n}: {observed}")));
        }
        open.push(session);
    }
    let expected = format!(
        "with {limit} sessions of the user open (--max-connections-per-user), one more closed with {} and the {limit} others untouched ({})",
        close_name(4409),
        cite(&ctx)
    );
    let (mut extra, _) = ctx.open(Who::Main).await?;
    let first = extra.recv_raw(REPLY_WAIT).await;
    let refused = match &first {
        Got::Closed {
            code: Some(4409), ..
        } => true,
        Got::Message(ServerMessage::Welcome(_), _) => {
            let then = extra.recv(Duration::from_secs(1)).await;
            if then.close_code() == Some(4409) {
                ctx.t.note(
                    "runner",
                    "the extra session was welcomed, then closed with 4409",
                );
                true
            } else {
                return Err(Finding::fail(
                    expected,
                    format!(
                        "session {} was welcomed; then {}",
                        limit + 1,
                        then.describe()
                    ),
                ));
            }
        }
        _ => false,
    };
    if !refused {
        return Err(Finding::fail(
            expected,
            format!("session {}: {}", limit + 1, first.describe()),
        ));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    for (n, session) in open.iter_mut().enumerate() {
        if let Some(end) = session.poll_end().await {
            return Err(Finding::fail(
                expected,
                format!("the earlier session {}: {}", n + 1, end.describe()),
            ));
        }
        ctx.still_open(session, &expected).await?;
    }
    Ok(())
}

/// How many bytes the oversized frame announces: 1 GiB, above the schema's largest
/// `max_message_bytes` (64 MiB), so every server must refuse it from its header alone.
const ANNOUNCED_BYTES: u64 = 1 << 30;

/// A frame whose header announces 1 GiB, followed by 16 bytes and then nothing: the server
/// closes with 1009 from the header, without waiting for (or buffering) the rest
/// (FERRY-SIZE-3). The header is written raw on the TCP connection after a normal upgrade.
pub(super) async fn announced_oversize(ctx: Ctx) -> CaseResult {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let ws_base = ctx.shared.ws_base.clone();
    let Some(authority) = ws_base
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
    else {
        return Err(Finding::skip(
            "needs a plain ws:// server URL: the oversized frame header is written raw on the TCP connection, which the runner does not do under TLS",
        ));
    };
    let ticket = ctx.http.ticket(&Cred::Main).await?;
    let link = ctx.next_link();
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| Finding::error(format!("cannot connect to {authority}: {e}")))?;
    let mut request = format!("{ws_base}/v1/ws?ticket={}", ticket.ticket.as_str())
        .into_client_request()
        .map_err(|e| Finding::error(format!("not a WebSocket URL: {e}")))?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        ferry_protocol::SUBPROTOCOL.parse().expect("a header value"),
    );
    ctx.t.sent(
        &link,
        "GET /v1/ws?ticket=… (upgrade; Sec-WebSocket-Protocol: ferry.v1)",
    );
    let (mut socket, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .map_err(|e| Finding::error(format!("the upgrade failed: {e}")))?;
    match tokio::time::timeout(REPLY_WAIT, socket.next()).await {
        Ok(Some(Ok(Message::Text(text)))) if text.contains("\"welcome\"") => {
            ctx.t.received(&link, "welcome");
        }
        other => return Err(Finding::error(format!("no welcome came first: {other:?}"))),
    }
    // FIN + text; MASK + a 64-bit length; the masking key; 16 masked bytes of the payload.
    let mut frame = vec![0x81, 0x80 | 127];
    frame.extend_from_slice(&ANNOUNCED_BYTES.to_be_bytes());
    let key = [0x37, 0xfa, 0x21, 0x3d];
    frame.extend_from_slice(&key);
    frame.extend((0..16).map(|i| b'{' ^ key[i % 4]));
    socket
        .get_mut()
        .write_all(&frame)
        .await
        .map_err(|e| Finding::error(format!("cannot write the frame header: {e}")))?;
    let sent = Instant::now();
    ctx.t.sent(
        &link,
        format!(
            "text frame header announcing {ANNOUNCED_BYTES} bytes, then 16 of them, then nothing"
        ),
    );
    let expected = format!(
        "a frame whose header announces {ANNOUNCED_BYTES} bytes, far above limits.max_message_bytes, closes the session with {} within {} s of the header, without the rest being sent ({})",
        close_name(1009),
        REPLY_WAIT.as_secs(),
        cite(&ctx)
    );
    let deadline = sent + REPLY_WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let end = match tokio::time::timeout(left, socket.next()).await {
            Err(_) => format!(
                "nothing within {} s: the server waits for the rest of the frame",
                REPLY_WAIT.as_secs()
            ),
            Ok(Some(Ok(Message::Close(frame)))) => {
                let code = frame.as_ref().map(|f| u16::from(f.code));
                ctx.t.received(
                    &link,
                    format!(
                        "close {} after {} ms",
                        code.map_or_else(|| "without a code".into(), close_name),
                        ms_between(sent, Instant::now())
                    ),
                );
                if code == Some(1009) {
                    return Ok(());
                }
                format!(
                    "the session closed with {}",
                    code.map_or_else(|| "no code".into(), close_name)
                )
            }
            Ok(Some(Ok(other))) => {
                ctx.t.received(&link, format!("{other:?}"));
                continue;
            }
            Ok(Some(Err(e))) => format!("the connection ended without a close frame: {e}"),
            Ok(None) => "the connection ended without a close frame".to_owned(),
        };
        return Err(Finding::fail(expected, end));
    }
}
