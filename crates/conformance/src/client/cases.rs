//! The bodies of the client cases, registered by case id; data the bodies read sits in
//! `cases/client.toml` (`params`), so a family of similar cases is one body and several
//! entries (the close codes, the backoff runs, the event streams).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use ferry_protocol::close::{action_for, lookup};
use ferry_protocol::tables::ClientAction;
use ferry_protocol::{Codec, DecodeError, ErrorCode, Frame, SUBPROTOCOL};
use serde::Deserialize;
use serde_json::{Value, json};

use super::harness::{
    CREDENTIAL, DISTURBANCE, EPOCH, Harness, LOWER_SLACK, Policy, QUIET, REACT, SETUP, WelcomeSpec,
    error_reply, event, goodbye, member_page, message_id, ms, ping, position, presence, published,
    recovery, rpc_result, subscribed, subscribed_holding, unsubscribed,
};
use super::scripted::{ClientFrame, Conn, FrameKind, TicketReply, UpgradeReply};
use crate::case::{CaseResult, Finding, ensure};

/// A case body: runs the case's script on its harness.
pub(crate) type Body =
    for<'a> fn(&'a mut Harness) -> Pin<Box<dyn Future<Output = CaseResult> + Send + 'a>>;

macro_rules! registry {
    ($($id:literal => $body:ident),* $(,)?) => {
        /// Every body, by case id; an id ending in `.*` serves every case of that family.
        pub(crate) const BODIES: &[(&str, Body)] = &[$(($id, {
            fn run(h: &mut Harness) -> Pin<Box<dyn Future<Output = CaseResult> + Send + '_>> {
                Box::pin($body(h))
            }
            run
        })),*];
    };
}

registry! {
    "client.handshake.ticket_then_connect" => ticket_then_connect,
    "client.handshake.nothing_before_welcome" => nothing_before_welcome,
    "client.handshake.fresh_ticket_each_attempt" => fresh_ticket_each_attempt,
    "client.handshake.unauthorized_stops" => unauthorized_stops,
    "client.handshake.ticket_unavailable_backs_off" => retry_run,
    "client.handshake.ticket_rejected_renews_at_once" => ticket_rejected_renews,
    "client.welcome.size_limit_obeyed" => size_limit_obeyed,
    "client.welcome.timeout_reconnects" => welcome_timeout,
    "client.subscribe.resubscribe_every_channel" => resubscribe_every_channel,
    "client.subscribe.refused_keeps_session" => refused_keeps_session,
    "client.subscribe.unsubscribe_sends_request" => unsubscribe_sends_request,
    "client.subscribe.unsubscribe_one_of_two_handlers" => unsubscribe_one_of_two_handlers,
    "client.subscribe.no_resubscribe_after_unsubscribe" => no_resubscribe_after_unsubscribe,
    "client.event.delivered_in_order" => event_stream,
    "client.event.duplicates_dropped" => event_stream,
    "client.event.handler_registered_twice" => handler_registered_twice,
    "client.event.gap_reported" => stream_hole,
    "client.event.epoch_change_reported" => stream_hole,
    "client.resume.replay_delivered_once" => replay_delivered_once,
    "client.resume.*" => incomplete_recovery,
    "client.publish.acknowledged" => publish_acknowledged,
    "client.publish.timeout" => publish_timeout,
    "client.publish.rate_limited_not_resent" => rate_limited_not_resent,
    "client.publish.retry_reuses_key" => publish_retry,
    "client.publish.retry_reuses_application_key" => publish_retry,
    "client.rpc.answers_matched" => rpc_answers_matched,
    "client.rpc.retry_reuses_key" => rpc_retry,
    "client.rpc.retry_reuses_application_key" => rpc_retry,
    "client.rpc.refusal_ends_call.*" => rpc_refusal_ends_call,
    "client.rpc.timeout" => rpc_timeout,
    "client.heartbeat.pong_echoes_nonce" => pong_echoes_nonce,
    "client.heartbeat.silent_server_detected" => silent_server_detected,
    "client.size.oversized_inbound_frame" => oversized_inbound_frame,
    "client.size.exact_limit" => size_gate,
    "client.size.utf8_bytes" => size_gate,
    "client.transport.malformed_inbound.*" => malformed_inbound,
    "client.reconnect.*" => retry_run,
    "client.reconnect.attempts_exhausted" => attempts_exhausted,
    "client.reconnect.count_resets_after_reset_after" => reset_rule,
    "client.reconnect.count_kept_before_reset_after" => reset_rule,
    "client.close.*" => close_code,
    "client.shutdown.goodbye_then_resume" => goodbye_then_resume,
    "client.shutdown.application_close" => application_close,
    "client.hold.fence_resent_after_reconnect" => hold_fence_resent,
    "client.hold.never_granted_sends_no_fence" => hold_never_granted,
    "client.hold.unsubscribe_forgets_fence" => hold_forgotten_after_unsubscribe,
    "client.hold.taken_over_stops" => hold_taken_over,
    "client.presence.pages_and_events_cross" => presence_pages_and_events_cross,
    "client.presence.read_again_after_reconnect" => presence_read_again,
}

/// The body of the case `id`: its own entry, or its family's (`prefix.*`).
pub(crate) fn body_for(id: &str) -> Option<Body> {
    if let Some((_, body)) = BODIES.iter().find(|(key, _)| *key == id) {
        return Some(*body);
    }
    BODIES
        .iter()
        .filter_map(|(key, body)| Some((key.strip_suffix('*')?, *body)))
        .filter(|(prefix, _)| id.starts_with(prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, body)| body)
}

const CHANNEL: &str = "conformance:a";
const OTHER_CHANNEL: &str = "conformance:b";
const HANDLER: &str = "h";

/// The window of retry `n` under `policy`, from ferry-protocol's formula.
fn window(policy: &Policy, retry: u32) -> Result<(Duration, Duration), Finding> {
    Ok(policy.backoff()?.bounds(retry))
}

/// Exactly now, for a reference the scripted server did not record.
fn at_once() -> (Duration, Duration) {
    (Duration::ZERO, Duration::ZERO)
}

// ---------------------------------------------------------------------------------------------
// Handshake

/// FERRY-TICKET-5, FERRY-TRANSPORT-1: a ticket with the bearer credential first, then the
/// WebSocket with that ticket and the ferry.v1 subprotocol.
async fn ticket_then_connect(h: &mut Harness) -> CaseResult {
    h.connect().await?;
    let request = h
        .ticket(
            SETUP,
            "a ticket request to POST /v1/tickets after the connect command (FERRY-TICKET-5)",
        )
        .await?;
    let bearer = request
        .authorization
        .as_deref()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, credential)| credential.trim());
    ensure(
        bearer == Some(CREDENTIAL),
        format!(
            "the ticket request to carry `Authorization: Bearer {CREDENTIAL}` (FERRY-TICKET-5)"
        ),
        || {
            format!(
                "Authorization: {}",
                request.authorization.as_deref().unwrap_or("<absent>")
            )
        },
    )?;
    let unexpected = h.server.unexpected();
    ensure(
        unexpected.is_empty(),
        "requests only to POST /v1/tickets and GET /v1/ws",
        || format!("the client also sent: {}", unexpected.join(", ")),
    )?;
    let attempt = h
        .attempt(
            "a WebSocket connection to GET /v1/ws?ticket=<the ticket just issued> (FERRY-TICKET-5)",
        )
        .await?;
    ensure(
        attempt.protocols.iter().any(|p| p == SUBPROTOCOL),
        format!("the WebSocket upgrade to offer the subprotocol {SUBPROTOCOL} (FERRY-TRANSPORT-1)"),
        || {
            format!(
                "{} offered {}",
                attempt.link,
                if attempt.protocols.is_empty() {
                    "no subprotocol".to_owned()
                } else {
                    attempt.protocols.join(", ")
                }
            )
        },
    )?;
    let issued = request.issued.as_deref();
    ensure(
        attempt.ticket.as_deref() == issued,
        "the connection to present the ticket of the ticket request just made (FERRY-TICKET-5)",
        || format!("{} presented {:?}", attempt.link, attempt.ticket),
    )?;
    let mut conn = attempt
        .conn
        .ok_or_else(|| Finding::error("the plan accepts this attempt"))?;
    h.welcome(&mut conn, &WelcomeSpec::new(Policy::SHORT))
        .await?;
    // The session goes on: nothing may end it.
    match conn.recv(Duration::from_millis(200)).await? {
        Some(ClientFrame {
            kind: kind @ (FrameKind::Close { .. } | FrameKind::Ended),
            ..
        }) => Err(Finding::fail(
            "the welcomed session to stay open",
            format!("{} carried {}", conn.link(), kind.describe()),
        )),
        _ => Ok(()),
    }
}

/// FERRY-WELCOME-2: a subscribe asked for before the welcome is held back until it.
async fn nothing_before_welcome(h: &mut Harness) -> CaseResult {
    h.connect().await?;
    h.ticket(
        SETUP,
        "a ticket request after the connect command (FERRY-TICKET-5)",
    )
    .await?;
    let mut conn = h
        .accepted("a WebSocket connection with the ticket just issued")
        .await?;
    h.subscribe(CHANNEL, HANDLER).await?;
    let hold = Duration::from_millis(300);
    h.transcript.note(
        "runner",
        format!("holding the welcome back for {} ms", ms(hold)),
    );
    if let Some(frame) = conn.recv(hold).await? {
        return Err(Finding::fail(
            "no frame from the client before the welcome (FERRY-WELCOME-2)",
            format!(
                "{} carried {} before the welcome",
                conn.link(),
                frame.kind.describe()
            ),
        ));
    }
    h.welcome(&mut conn, &WelcomeSpec::new(Policy::SHORT))
        .await?;
    h.expect_subscribe(
        &mut conn,
        CHANNEL,
        &format!("once the welcome arrived, the subscribe to {CHANNEL} the application asked for before it (FERRY-WELCOME-2 holds it back, it does not drop it)"),
    )
    .await?;
    Ok(())
}

/// When the client ended `conn`, with a close frame or by ending TCP, skipping any other
/// frame; `None` when it was still open at `deadline`.
async fn client_end(conn: &mut Conn, deadline: Instant) -> Result<Option<Instant>, Finding> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match conn.recv(left).await? {
            None => return Ok(None),
            Some(ClientFrame {
                kind: FrameKind::Close { .. } | FrameKind::Ended,
                at,
            }) => return Ok(Some(at)),
            Some(_) => {}
        }
    }
}

/// How much earlier than the welcome timeout after the WebSocket opened a client may close:
/// it may count from its connect request, which comes before the opening.
const WELCOME_TIMEOUT_EARLY: Duration = Duration::from_millis(1000);

/// FERRY-WELCOME-4 (SHOULD): a session whose welcome never comes is closed about 10 s after
/// the WebSocket opened, and the client tries again with a new ticket.
async fn welcome_timeout(h: &mut Harness) -> CaseResult {
    h.connect().await?;
    h.ticket(
        SETUP,
        "a ticket request after the connect command (FERRY-TICKET-5)",
    )
    .await?;
    let mut conn = h
        .accepted("a WebSocket connection with the ticket just issued")
        .await?;
    let opened = conn.last_sent();
    h.transcript.note("runner", "never sending the welcome");
    let timeout = Duration::from_millis(ferry_protocol::tables::defaults::WELCOME_TIMEOUT_MS);
    let expected = format!(
        "the client to close a session whose welcome has not come {} ms after the WebSocket opened (FERRY-WELCOME-4): in [{}, {}] ms",
        ms(timeout),
        ms(timeout.saturating_sub(WELCOME_TIMEOUT_EARLY)),
        ms(timeout + h.tolerance)
    );
    let deadline = opened + timeout + h.tolerance + REACT;
    let Some(closed_at) = client_end(&mut conn, deadline).await? else {
        return Err(Finding::fail(
            expected,
            format!(
                "{} was still open {} ms after it opened, without a welcome",
                conn.link(),
                ms(deadline.saturating_duration_since(opened))
            ),
        ));
    };
    let measured = closed_at.saturating_duration_since(opened);
    ensure(
        timeout.saturating_sub(WELCOME_TIMEOUT_EARLY) <= measured
            && measured <= timeout + h.tolerance,
        expected,
        || format!("the client ended {} after {} ms", conn.link(), ms(measured)),
    )?;
    let cap = Duration::from_millis(ferry_protocol::tables::defaults::RECONNECT_CAP_MS);
    h.ticket(
        cap + h.tolerance + REACT,
        "a new ticket request after the missing welcome: the attempt failed, and the client retries under its backoff (FERRY-WELCOME-4)",
    )
    .await?;
    Ok(())
}

/// FERRY-TICKET-5: every reconnect fetches a new ticket, and no ticket is presented twice.
async fn fresh_ticket_each_attempt(h: &mut Harness) -> CaseResult {
    let policy = Policy::SHORT;
    let spec = WelcomeSpec::new(policy);
    let mut conn = h.establish(&spec).await?;
    for attempt in 2..=4 {
        conn.drop_tcp().await;
        let request = h
            .ticket(
                window(&policy, 8)?.1 + h.tolerance + REACT,
                &format!(
                    "a fresh ticket request before connection attempt {attempt} (FERRY-TICKET-5)"
                ),
            )
            .await?;
        conn = h
            .accepted(&format!(
                "connection attempt {attempt}, after its ticket request"
            ))
            .await?;
        ensure(
            conn.ticket() == request.issued.as_deref(),
            format!(
                "connection attempt {attempt} to present the ticket of the request just before it (FERRY-TICKET-5)"
            ),
            || format!("{} presented {:?}", conn.link(), conn.ticket()),
        )?;
        h.welcome(&mut conn, &spec).await?;
    }
    Ok(())
}

/// FERRY-RECONNECT-8, FERRY-RECONNECT-9: a 401 from the ticket endpoint stops the client, which
/// says why.
async fn unauthorized_stops(h: &mut Harness) -> CaseResult {
    let policy = Policy::SHORT;
    let conn = h.establish(&WelcomeSpec::new(policy)).await?;
    h.server
        .plan_tickets([TicketReply::Refuse(ErrorCode::Unauthorized)]);
    let dropped = conn.drop_tcp().await;
    let refused = h
        .retry_ticket(
            dropped,
            window(&policy, 1)?,
            &format!(
                "retry 1 after the session dropped ({}; FERRY-RECONNECT-2)",
                policy.describe()
            ),
            "the drop of the welcomed session",
        )
        .await?;
    h.no_ticket(
        QUIET,
        refused.at,
        "no further ticket request after the ticket endpoint answered 401: a 401 is stop (FERRY-RECONNECT-8)",
    )
    .await?;
    h.expect_stopped(
        "unauthorized",
        None,
        "a stopped report with reason unauthorized after the 401 (FERRY-RECONNECT-8, FERRY-RECONNECT-9: say why)",
    )
    .await
}

/// FERRY-RECONNECT-6, FERRY-RECONNECT-4: 4401 renews the ticket at once; a second 4401 in a
/// row waits under the backoff, the immediate retry having counted as a retry.
async fn ticket_rejected_renews(h: &mut Harness) -> CaseResult {
    let policy = h.policy()?;
    let spec = WelcomeSpec::new(policy);
    let conn = h.establish(&spec).await?;
    let dropped = conn.drop_tcp().await;
    h.retry_ticket(
        dropped,
        window(&policy, 1)?,
        &format!(
            "retry 1 after the session dropped ({}; FERRY-RECONNECT-2)",
            policy.describe()
        ),
        "the drop of the welcomed session",
    )
    .await?;
    let mut second = h.accepted("connection attempt 2").await?;
    let closed = second.close(4401, "ticket_rejected").await?;
    h.retry_ticket(
        closed,
        at_once(),
        "retry 2 after close 4401 ticket_rejected: a new ticket and a retry at once (FERRY-RECONNECT-6)",
        "close 4401",
    )
    .await?;
    let mut third = h
        .accepted("connection attempt 3, with the renewed ticket")
        .await?;
    let closed = third.close(4401, "ticket_rejected").await?;
    h.retry_ticket(
        closed,
        window(&policy, 3)?,
        &format!(
            "retry 3 after a second 4401 in a row: under the backoff (FERRY-RECONNECT-6), the immediate retry counting as retry 2 (FERRY-RECONNECT-4; {})",
            policy.describe()
        ),
        "the second close 4401",
    )
    .await?;
    let mut fourth = h.accepted("connection attempt 4").await?;
    h.welcome(&mut fourth, &spec).await
}

// ---------------------------------------------------------------------------------------------
// Welcome and size

/// FERRY-WELCOME-3, FERRY-SIZE-2, FERRY-SIZE-1: the advertised max_message_bytes, not the
/// default, bounds what the client sends; an oversized publish fails locally and the session
/// stays open.
async fn size_limit_obeyed(h: &mut Harness) -> CaseResult {
    let limit = 1024;
    let spec = WelcomeSpec {
        max_message_bytes: limit,
        ..WelcomeSpec::new(Policy::SHORT)
    };
    let mut conn = h.establish(&spec).await?;
    let big = 2000;
    h.publish("p-big", CHANNEL, json!("x".repeat(big)), None)
        .await?;
    let outcome = h
        .report(
            |r| r.str("ref") == Some("p-big"),
            REACT,
            &format!("publish_failed for p-big with code message_too_large: its {big}-byte payload cannot fit the advertised max_message_bytes of {limit} (FERRY-SIZE-2, FERRY-WELCOME-3)"),
        )
        .await;
    // A frame that went out instead says more than the missing report.
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(missing) => {
            conn.recv(Duration::ZERO).await?;
            return Err(missing);
        }
    };
    ensure(
        outcome.kind() == "publish_failed" && outcome.str("code") == Some("message_too_large"),
        format!(
            "publish_failed for p-big with code message_too_large, reported locally (FERRY-SIZE-2; the welcome advertised max_message_bytes {limit}, FERRY-WELCOME-3)"
        ),
        || outcome.line(),
    )?;
    // Any frame above the limit fails on arrival (FERRY-SIZE-1); the session must go on.
    if let Some(frame) = conn.recv(Duration::from_millis(300)).await? {
        return Err(Finding::fail(
            "nothing on the wire for a publish refused locally, and the session kept open (FERRY-SIZE-2)",
            format!("{} carried {}", conn.link(), frame.kind.describe()),
        ));
    }
    let small = 600;
    h.publish("p-small", CHANNEL, json!("y".repeat(small)), None)
        .await?;
    let (publish, bytes) = conn
        .expect_message(
            Some("publish"),
            REACT,
            &format!("the publish of a {small}-byte payload, well under the limit of {limit}, on the same session (FERRY-SIZE-2 keeps it open)"),
        )
        .await?;
    h.transcript.note(
        "runner",
        format!("the publish frame is {bytes} bytes, within {limit}"),
    );
    conn.send(published(&publish, EPOCH, 1, false)).await?;
    h.report(
        |r| r.kind() == "published" && r.str("ref") == Some("p-small"),
        REACT,
        "a published report for p-small",
    )
    .await?;
    if let Some(request) = h.server.next_ticket(Duration::ZERO).await {
        return Err(Finding::fail(
            "the session to stay open after a local size refusal (FERRY-SIZE-2)",
            format!(
                "the client reconnected (a ticket request with status {})",
                request.status
            ),
        ));
    }
    Ok(())
}

/// FERRY-SIZE-1, FERRY-SIZE-2: the size gate lies exactly at the advertised
/// max_message_bytes, counted in bytes of the frame's UTF-8 encoding. Under a limit of 1024,
/// a first publish of 100 ASCII characters tells the runner how many bytes the client's frame
/// spends besides the payload's characters (its request id, the given idempotency key, the
/// channel); every later publish uses a key of the same length, so its frame costs the same
/// besides the payload, provided the client's request ids keep their length. Then, with
/// param `unit`:
/// - `bytes`: a payload that makes the frame exactly 1024 bytes is sent, and one byte more is
///   refused locally with message_too_large and never reaches the wire;
/// - `utf8`: a payload of 'é' (two bytes in UTF-8) that makes the frame 1024 characters long,
///   and so well over 1024 bytes, is refused locally, as is one that passes by one byte only.
///
/// The session stays open throughout.
async fn size_gate(h: &mut Harness) -> CaseResult {
    let limit: usize = 1024;
    let calibration = 100;
    let unit: String = h
        .param("unit")?
        .ok_or_else(|| Finding::error("the catalogue entry lacks the param unit"))?;
    let spec = WelcomeSpec {
        max_message_bytes: limit as u64,
        ..WelcomeSpec::new(Policy::SHORT)
    };
    let mut conn = h.establish(&spec).await?;
    h.publish(
        "p-calibrate",
        CHANNEL,
        json!("c".repeat(calibration)),
        Some("k-size-calibrate"),
    )
    .await?;
    let (publish, bytes) = conn
        .expect_message(
            Some("publish"),
            REACT,
            &format!("the publish of a {calibration}-character payload, well under the advertised max_message_bytes of {limit}"),
        )
        .await?;
    let overhead = bytes.checked_sub(calibration).ok_or_else(|| {
        Finding::fail(
            "the publish frame carrying its payload",
            format!("a publish frame of {bytes} bytes, shorter than its payload"),
        )
    })?;
    if overhead >= limit / 2 {
        return Err(Finding::error(format!(
            "the client's publish frame spends {overhead} bytes besides its payload, too many to probe a limit of {limit}"
        )));
    }
    h.transcript.note(
        "runner",
        format!(
            "the publish frame is {bytes} bytes: {overhead} besides the {calibration} payload characters; later publishes use keys of the same length"
        ),
    );
    conn.send(published(&publish, EPOCH, 1, false)).await?;
    h.report(
        |r| r.kind() == "published" && r.str("ref") == Some("p-calibrate"),
        REACT,
        "a published report for p-calibrate",
    )
    .await?;
    let room = limit - overhead;
    let (refused, kept) = match unit.as_str() {
        "bytes" => {
            h.publish(
                "p-exact",
                CHANNEL,
                json!("e".repeat(room)),
                Some("k-size-exact-lim"),
            )
            .await?;
            let expected = format!(
                "the publish of a {room}-character payload, whose frame is exactly the advertised max_message_bytes of {limit}: a message of exactly that size is allowed (FERRY-SIZE-1)"
            );
            let (publish, bytes) =
                match conn.expect_message(Some("publish"), REACT, &expected).await {
                    Ok(sent) => sent,
                    Err(missing) => {
                        // A local refusal says more than the missing frame.
                        return match h
                            .report(
                                |r| r.str("ref") == Some("p-exact"),
                                Duration::ZERO,
                                &expected,
                            )
                            .await
                        {
                            Ok(outcome) => Err(Finding::fail(
                                expected,
                                format!("the client refused it: {}", outcome.line()),
                            )),
                            Err(_) => Err(missing),
                        };
                    }
                };
            h.transcript.note(
                "runner",
                format!("the publish frame is {bytes} bytes, against a limit of {limit}"),
            );
            ensure(
                bytes <= limit,
                format!("a publish frame of at most {limit} bytes (FERRY-SIZE-1)"),
                || format!("a publish frame of {bytes} bytes"),
            )?;
            conn.send(published(&publish, EPOCH, 2, false)).await?;
            h.report(
                |r| r.kind() == "published" && r.str("ref") == Some("p-exact"),
                REACT,
                "a published report for p-exact",
            )
            .await?;
            (
                vec![(
                    "p-over",
                    json!("o".repeat(room + 1)),
                    "k-size-one-above",
                    format!("{} bytes, one above", limit + 1),
                )],
                "after the exact-limit publish went out",
            )
        }
        "utf8" => {
            // 'é' is one character and two bytes: a frame of `limit` characters is
            // `limit + room` bytes; one of `room / 2 + 1` of them passes by one or two bytes.
            let half = room / 2 + 1;
            (
                vec![
                    (
                        "p-chars",
                        json!("é".repeat(room)),
                        "k-size-utf8chars",
                        format!("{limit} characters but {} bytes", limit + room),
                    ),
                    (
                        "p-bytes",
                        json!("é".repeat(half)),
                        "k-size-utf8bytes",
                        format!(
                            "{} characters but {} bytes",
                            overhead + half,
                            overhead + 2 * half
                        ),
                    ),
                ],
                "after the publishes that fit by characters but not by bytes",
            )
        }
        other => {
            return Err(Finding::error(format!(
                "unknown param unit {other:?} (bytes or utf8)"
            )));
        }
    };
    for (reference, payload, key, size) in refused {
        h.publish(reference, CHANNEL, payload, Some(key)).await?;
        let expected = format!(
            "publish_failed for {reference} with code message_too_large, reported locally: its frame would be {size}, above the advertised max_message_bytes of {limit}, counted in bytes of its UTF-8 encoding (FERRY-SIZE-1, FERRY-SIZE-2)"
        );
        let outcome = match h
            .report(|r| r.str("ref") == Some(reference), REACT, &expected)
            .await
        {
            Ok(outcome) => outcome,
            Err(missing) => {
                conn.recv(Duration::ZERO).await?;
                return Err(missing);
            }
        };
        ensure(
            outcome.kind() == "publish_failed" && outcome.str("code") == Some("message_too_large"),
            expected,
            || outcome.line(),
        )?;
        if let Some(frame) = conn.recv(Duration::from_millis(300)).await? {
            return Err(Finding::fail(
                format!("nothing on the wire for {reference}, refused locally (FERRY-SIZE-2)"),
                format!("{} carried {}", conn.link(), frame.kind.describe()),
            ));
        }
    }
    if let Some(request) = h.server.next_ticket(Duration::ZERO).await {
        return Err(Finding::fail(
            format!("the session to stay open {kept} (FERRY-SIZE-2)"),
            format!(
                "the client reconnected (a ticket request with status {})",
                request.status
            ),
        ));
    }
    Ok(())
}

/// FERRY-SIZE-1, FERRY-TRANSPORT-5: a frame from the server above the advertised
/// max_message_bytes is no ferry.v1 message. The protocol does not say whether a client drops
/// it or closes the session (the codec's outcome is close 1009, which a client may send); it
/// must not hand it to the application as an event, and must not stall or crash: it keeps the
/// session (answering the next ping) or ends it and reconnects.
async fn oversized_inbound_frame(h: &mut Harness) -> CaseResult {
    let limit: u64 = 1024;
    let policy = Policy::SHORT;
    let spec = WelcomeSpec {
        max_message_bytes: limit,
        ..WelcomeSpec::new(policy)
    };
    let mut conn = h.subscribed_session(&spec, CHANNEL, HANDLER).await?;
    conn.send(event(CHANNEL, EPOCH, 1, json!({"n": 1}))).await?;
    h.report(
        |r| r.kind() == "delivered" && r.u64("seq") == Some(1),
        REACT,
        "event 1 delivered",
    )
    .await?;
    let oversized = event(CHANNEL, EPOCH, 2, json!("z".repeat(2000)));
    let size = oversized.to_string().len();
    conn.send(oversized).await?;
    h.transcript.note(
        "runner",
        format!("sent an event frame of {size} bytes, above the advertised {limit}"),
    );
    // The client may already have closed; a failed send is not a finding here.
    let _ = conn.send(ping("after-oversize")).await;
    let mut verdict = None;
    let deadline = Instant::now() + REACT;
    while verdict.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        match conn.recv(left).await? {
            None => break,
            Some(ClientFrame { kind, at }) => match &kind {
                FrameKind::Message { json, .. }
                    if json["type"] == "pong" && json["nonce"] == "after-oversize" =>
                {
                    verdict = Some(("kept the session", at));
                }
                FrameKind::Close { .. } | FrameKind::Ended => {
                    verdict = Some(("ended the session", at));
                }
                _ => {}
            },
        }
    }
    let Some((what, at)) = verdict else {
        return Err(Finding::fail(
            format!(
                "after an event frame of {size} bytes (above max_message_bytes {limit}, FERRY-SIZE-1), the client either keeps the session (and answers the next ping) or ends it and reconnects"
            ),
            format!(
                "within {} ms {} neither carried the pong to ping \"after-oversize\" nor ended",
                ms(REACT),
                conn.link()
            ),
        ));
    };
    h.transcript.note(
        "runner",
        format!("the client {what} after the oversized frame"),
    );
    if what == "ended the session" {
        h.retry_ticket(
            at,
            (Duration::ZERO, window(&policy, 8)?.1),
            "a reconnect under the backoff after the client ended the session over the oversized frame",
            "the end of the session",
        )
        .await?;
    }
    h.adapter.settle(Duration::from_millis(200)).await?;
    let delivered: Vec<u64> = h
        .deliveries(CHANNEL)
        .into_iter()
        .map(|(_, _, seq)| seq)
        .collect();
    ensure(
        !delivered.contains(&2),
        format!(
            "the {size}-byte frame, above max_message_bytes {limit}, is no ferry.v1 message (FERRY-SIZE-1): it must not reach the application as event 2 (FERRY-TRANSPORT-5: a refused frame gets the codec's close code or is refused, never used)"
        ),
        || format!("the adapter reported deliveries of seqs {delivered:?}"),
    )
}

// ---------------------------------------------------------------------------------------------
// Transport

/// Why ferry-protocol's codec refuses `frame` as a server message; `None` when it accepts it.
fn refusal(frame: &str) -> Option<DecodeError> {
    Codec::new(usize::MAX)
        .decode_server(Frame::Text(frame.as_bytes()))
        .err()
}

/// FERRY-TRANSPORT-5, FERRY-TRANSPORT-2, FERRY-HEARTBEAT-2: a frame from the server that is not
/// a JSON object, names an unknown type or breaks its message's schema (the case's `frame`)
/// carries no ferry.v1 message (FERRY-TRANSPORT-2). A client has no error message to answer it
/// with and the close-code table gives no code for it, so either way of not using it passes:
/// the client keeps the session, answering the next ping within the advertised timeout and
/// delivering the next valid event (at the position the malformed frame named, so a client that
/// took that position as delivered drops it), or ends the session and reconnects with a fresh
/// ticket. Nothing of the frame reaches the application, and the client does not stall or
/// crash (a crash is reported as the adapter's exit).
async fn malformed_inbound(h: &mut Harness) -> CaseResult {
    let frame: String = h
        .param("frame")?
        .ok_or_else(|| Finding::error("the case names no frame"))?;
    let refused = refusal(&frame).ok_or_else(|| {
        Finding::error(format!(
            "the case's frame is a valid server message, not a malformed one: {frame}"
        ))
    })?;
    let what = format!("the malformed frame ({refused})");
    let timeout_ms = 1000;
    let policy = Policy::SHORT;
    let spec = WelcomeSpec {
        heartbeat_timeout_ms: timeout_ms,
        ..WelcomeSpec::new(policy)
    };
    let mut conn = h.subscribed_session(&spec, CHANNEL, HANDLER).await?;
    conn.send(event(CHANNEL, EPOCH, 1, json!({"n": 1}))).await?;
    h.report(
        |r| r.kind() == "delivered" && r.u64("seq") == Some(1),
        REACT,
        "event 1 delivered",
    )
    .await?;
    conn.send_raw(frame).await?;
    h.transcript.note(
        "runner",
        format!("sent a frame the codec refuses: {refused}"),
    );
    let nonce = "after-malformed";
    let pinged = Instant::now();
    // The client may already have closed; a failed send is not a finding here.
    let _ = conn.send(ping(nonce)).await;
    let deadline = pinged + Duration::from_millis(timeout_ms) + h.tolerance;
    let mut verdict = None;
    while verdict.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        match conn.recv(left).await? {
            None => break,
            Some(ClientFrame { kind, at }) => match &kind {
                FrameKind::Message { json, .. }
                    if json["type"] == "pong" && json["nonce"] == nonce =>
                {
                    verdict = Some((true, at));
                }
                FrameKind::Close { .. } | FrameKind::Ended => verdict = Some((false, at)),
                _ => {}
            },
        }
    }
    let Some((kept, at)) = verdict else {
        return Err(Finding::fail(
            format!(
                "after {what}, the client either keeps the session, answering the next ping with a pong echoing its nonce within heartbeat.timeout_ms = {timeout_ms} ms (+{} ms tolerance) (FERRY-HEARTBEAT-2), or ends it and reconnects; it must not stall on the frame",
                ms(h.tolerance)
            ),
            format!(
                "within {} ms of the ping {nonce:?}, {} neither carried its pong nor ended",
                ms(deadline.saturating_duration_since(pinged)),
                conn.link()
            ),
        ));
    };
    let valid: &[u64] = if kept {
        h.transcript.note(
            "runner",
            "the client kept the session after the malformed frame",
        );
        conn.send(event(CHANNEL, EPOCH, 2, json!({"n": 2}))).await?;
        let id = message_id(EPOCH, 2);
        h.adapter
            .expect(
                |r| r.kind() == "delivered" && r.str("message_id") == Some(id.as_str()),
                REACT,
            )
            .await?;
        &[1, 2]
    } else {
        h.transcript.note(
            "runner",
            "the client ended the session after the malformed frame",
        );
        h.retry_ticket(
            at,
            (Duration::ZERO, window(&policy, 8)?.1),
            "a reconnect under the backoff after the client ended the session over the malformed frame",
            "the end of the session",
        )
        .await?;
        conn = h
            .accepted("the reconnect's WebSocket connection, presenting the ticket just issued (FERRY-TICKET-5)")
            .await?;
        h.welcome(&mut conn, &spec).await?;
        &[1]
    };
    h.adapter.settle(Duration::from_millis(200)).await?;
    if let Some(gone) = h.adapter.exited().await {
        return Err(gone);
    }
    let delivered: Vec<&super::adapter::Report> = h
        .adapter
        .history()
        .iter()
        .filter(|r| r.kind() == "delivered")
        .collect();
    let is_sent = |report: &super::adapter::Report, seq: u64| {
        report.u64("seq") == Some(seq)
            && report.str("message_id") == Some(message_id(EPOCH, seq).as_str())
            && report.json["payload"] == json!({"n": seq})
    };
    let stray: Vec<String> = delivered
        .iter()
        .filter(|r| !valid.iter().any(|&seq| is_sent(r, seq)))
        .map(|r| r.line())
        .collect();
    ensure(
        stray.is_empty(),
        format!(
            "nothing of {what} handed to the application: a frame that breaks FERRY-TRANSPORT-2 carries no event; it is refused, never used (FERRY-TRANSPORT-5)"
        ),
        || format!("the adapter reported {}", stray.join(", ")),
    )?;
    if !kept {
        return Ok(());
    }
    ensure(
        delivered.iter().any(|r| is_sent(r, 2)),
        format!(
            "on the session kept after {what}, the next valid event, seq 2, handed to the application: the malformed frame named that position, but it is never used (FERRY-TRANSPORT-5), so nothing was delivered at seq 2 yet"
        ),
        || {
            format!(
                "no delivery of event 2 ({}) within {} ms; the adapter reported: {}",
                message_id(EPOCH, 2),
                ms(REACT),
                h.reports_text()
            )
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Subscribe

/// FERRY-SUBSCRIBE-5: after a reconnect, every channel held is subscribed again from the last
/// delivered position, or from the last subscribed reply when no event came.
async fn resubscribe_every_channel(h: &mut Harness) -> CaseResult {
    let policy = Policy::SHORT;
    let spec = WelcomeSpec::new(policy);
    let mut conn = h.subscribed_session(&spec, CHANNEL, HANDLER).await?;
    h.subscribe(OTHER_CHANNEL, HANDLER).await?;
    let other = h
        .expect_subscribe(
            &mut conn,
            OTHER_CHANNEL,
            &format!("a subscribe to {OTHER_CHANNEL}, which the application asked for"),
        )
        .await?;
    conn.send(subscribed(&other, EPOCH, 7, None)).await?;
    h.report(
        |r| r.kind() == "subscribed" && r.str("channel") == Some(OTHER_CHANNEL),
        REACT,
        &format!("a subscribed report for {OTHER_CHANNEL}"),
    )
    .await?;
    for seq in 1..=3 {
        conn.send(event(CHANNEL, EPOCH, seq, json!({"n": seq})))
            .await?;
    }
    h.report(
        |r| r.kind() == "delivered" && r.u64("seq") == Some(3),
        REACT,
        &format!("events 1 to 3 of {CHANNEL} delivered"),
    )
    .await?;
    conn.drop_tcp().await;
    let mut conn = h
        .reconnected(
            &spec,
            window(&policy, 1)?.1 + h.tolerance + REACT,
            "after the session dropped",
        )
        .await?;
    let expectations = [
        (CHANNEL, 3, "the last event delivered"),
        (
            OTHER_CHANNEL,
            7,
            "the subscribed reply, no event having come",
        ),
    ];
    for (channel, seq, whence) in expectations {
        let expected = format!(
            "after the reconnect, a subscribe to {channel} with from = {{epoch {EPOCH}, seq {seq}}}, the position of {whence} (FERRY-SUBSCRIBE-5)"
        );
        let subscribe = h.expect_subscribe(&mut conn, channel, &expected).await?;
        ensure(subscribe["from"] == position(EPOCH, seq), expected, || {
            format!("{}: {subscribe}", conn.link())
        })?;
        let reply = subscribed(&subscribe, EPOCH, seq, Some(recovery(true, 0, None)));
        conn.send(reply).await?;
    }
    Ok(())
}

/// FERRY-CHANNEL-2: a forbidden subscribe is reported refused and the session goes on;
/// FERRY-SUBSCRIBE-7: after a reconnect, the client subscribes again only to the channel it
/// held, not to the refused one.
async fn refused_keeps_session(h: &mut Harness) -> CaseResult {
    let forbidden = "conformance:forbidden";
    let policy = Policy::SHORT;
    let spec = WelcomeSpec::new(policy);
    let mut conn = h.establish(&spec).await?;
    h.subscribe(forbidden, HANDLER).await?;
    let subscribe = h
        .expect_subscribe(
            &mut conn,
            forbidden,
            &format!("a subscribe to {forbidden}, which the application asked for"),
        )
        .await?;
    conn.send(error_reply(&subscribe["id"], "forbidden"))
        .await?;
    let refused = h
        .report(
            |r| r.kind() == "refused" && r.str("channel") == Some(forbidden),
            REACT,
            &format!("a refused report for {forbidden} after the server answered its subscribe with error forbidden"),
        )
        .await?;
    ensure(
        refused.str("code") == Some("forbidden"),
        "the refusal reported with the error's code, forbidden",
        || refused.line(),
    )?;
    h.subscribe(CHANNEL, HANDLER).await?;
    let subscribe = h
        .expect_subscribe(
            &mut conn,
            CHANNEL,
            &format!("the session to stay open after a refused subscribe (FERRY-CHANNEL-2), carrying the next subscribe, to {CHANNEL}"),
        )
        .await?;
    conn.send(subscribed(&subscribe, EPOCH, 0, None)).await?;
    h.report(
        |r| r.kind() == "subscribed" && r.str("channel") == Some(CHANNEL),
        REACT,
        &format!("a subscribed report for {CHANNEL}"),
    )
    .await?;
    if h.server.next_ticket(Duration::ZERO).await.is_some() {
        return Err(Finding::fail(
            "the session to stay open after a refused subscribe (FERRY-CHANNEL-2)",
            "the client reconnected (a new ticket request)",
        ));
    }
    // FERRY-SUBSCRIBE-7: the refused channel is not held, so a reconnect does not ask for it.
    conn.drop_tcp().await;
    let mut conn = h
        .reconnected(
            &spec,
            window(&policy, 1)?.1 + h.tolerance + REACT,
            "after the session dropped",
        )
        .await?;
    let not_held = format!(
        "no subscribe to {forbidden} after the reconnect: its subscribe was refused, so the client does not hold it and does not subscribe to it again by itself (FERRY-SUBSCRIBE-7)"
    );
    let held =
        format!("after the reconnect, a subscribe to {CHANNEL}, still held (FERRY-SUBSCRIBE-5)");
    let mut resubscribed = false;
    let mut until = conn.last_sent() + REACT;
    while let Some(frame) = conn
        .recv(until.saturating_duration_since(Instant::now()))
        .await?
    {
        let FrameKind::Message { json, .. } = &frame.kind else {
            if resubscribed {
                break;
            }
            return Err(Finding::fail(
                held,
                format!("{} carried {} instead", conn.link(), frame.kind.describe()),
            ));
        };
        if json["type"] != "subscribe" {
            continue;
        }
        if json["channel"] == forbidden {
            return Err(Finding::fail(
                not_held,
                format!("{} carried the frame {json}", conn.link()),
            ));
        }
        if json["channel"] == CHANNEL && !resubscribed {
            conn.send(subscribed(json, EPOCH, 0, Some(recovery(true, 0, None))))
                .await?;
            resubscribed = true;
            // A subscribe to the refused channel would come in the same pass.
            until = Instant::now() + Duration::from_millis(300);
        }
    }
    ensure(resubscribed, held, || {
        format!(
            "no subscribe to {CHANNEL} within {} ms of the welcome on {}",
            ms(REACT),
            conn.link()
        )
    })
}

/// FERRY-SUBSCRIBE-3: when the application removes the only handler of a channel, the client
/// unsubscribes: an unsubscribe of the channel with a request id, which a server answers with
/// unsubscribed carrying that id. After its reply the rule binds the server (no event of the
/// channel follows); no rule says what a client does with one that comes anyway, so the case
/// sends none and checks no delivery.
async fn unsubscribe_sends_request(h: &mut Harness) -> CaseResult {
    let mut conn = h
        .subscribed_session(&WelcomeSpec::new(Policy::SHORT), CHANNEL, HANDLER)
        .await?;
    conn.send(event(CHANNEL, EPOCH, 1, json!({"n": 1}))).await?;
    h.report(
        |r| r.kind() == "delivered" && r.u64("seq") == Some(1),
        REACT,
        "event 1 delivered",
    )
    .await?;
    h.unsubscribe(CHANNEL, HANDLER).await?;
    let unsubscribe = h
        .expect_unsubscribe(
            &mut conn,
            CHANNEL,
            &format!("an unsubscribe from {CHANNEL}, with a request id, once the application removed the channel's only handler: the request a server answers with unsubscribed carrying that id (FERRY-SUBSCRIBE-3)"),
        )
        .await?;
    conn.send(unsubscribed(&unsubscribe)).await?;
    h.adapter.settle(Duration::from_millis(200)).await?;
    match h.adapter.exited().await {
        Some(gone) => Err(gone),
        None => Ok(()),
    }
}

/// FERRY-SUBSCRIBE-3, FERRY-EVENT-5: with two handlers on a channel, removing one does not
/// unsubscribe the channel: after an unsubscribed reply a server sends no event of it
/// (FERRY-SUBSCRIBE-3), and the handler left must still be called once per event
/// (FERRY-EVENT-5). Whether the removed handler is still called is not checked: no rule speaks
/// of a removed handler.
async fn unsubscribe_one_of_two_handlers(h: &mut Harness) -> CaseResult {
    let mut conn = h.establish(&WelcomeSpec::new(Policy::SHORT)).await?;
    h.subscribe(CHANNEL, "h1").await?;
    h.subscribe(CHANNEL, "h2").await?;
    let subscribe = h
        .expect_subscribe(
            &mut conn,
            CHANNEL,
            &format!("a subscribe to {CHANNEL}, which the application asked for"),
        )
        .await?;
    conn.send(subscribed(&subscribe, EPOCH, 0, None)).await?;
    refuse_repeated_subscribes(&mut conn, Duration::from_millis(200)).await?;
    conn.send(event(CHANNEL, EPOCH, 1, json!({"n": 1}))).await?;
    for handler in ["h1", "h2"] {
        h.report(
            |r| {
                r.kind() == "delivered"
                    && r.str("handler") == Some(handler)
                    && r.u64("seq") == Some(1)
            },
            REACT,
            &format!("event 1 delivered to handler {handler}"),
        )
        .await?;
    }
    h.unsubscribe(CHANNEL, "h1").await?;
    let removed = Instant::now();
    let watch = removed + Duration::from_millis(300);
    while let Some(frame) = conn
        .recv(watch.saturating_duration_since(Instant::now()))
        .await?
    {
        match &frame.kind {
            FrameKind::Message { json, .. }
                if json["type"] == "unsubscribe" && json["channel"] == CHANNEL =>
            {
                return Err(Finding::fail(
                    format!(
                        "no unsubscribe from {CHANNEL} when handler h1 is removed while handler h2 still holds the channel: after an unsubscribed reply a server sends no event of it (FERRY-SUBSCRIBE-3), and h2 must still be called once per event (FERRY-EVENT-5)"
                    ),
                    format!(
                        "{} carried the frame {json} {} ms after the application removed h1",
                        conn.link(),
                        ms(frame.at.saturating_duration_since(removed))
                    ),
                ));
            }
            // Sending the next events shows the end of the session.
            FrameKind::Close { .. } | FrameKind::Ended => break,
            _ => {}
        }
    }
    for seq in 2..=3 {
        conn.send(event(CHANNEL, EPOCH, seq, json!({"n": seq})))
            .await?;
    }
    h.report(
        |r| r.kind() == "delivered" && r.str("handler") == Some("h2") && r.u64("seq") == Some(3),
        REACT,
        "event 3 delivered to handler h2, which still holds the channel (FERRY-EVENT-5)",
    )
    .await?;
    h.adapter.settle(Duration::from_millis(200)).await?;
    let calls: Vec<u64> = h
        .deliveries(CHANNEL)
        .into_iter()
        .filter(|(handler, _, _)| handler == "h2")
        .map(|(_, _, seq)| seq)
        .collect();
    ensure(
        calls == [1, 2, 3],
        "handler h2 called once per event of the channel it still holds, before and after h1 was removed: events 1 to 3, once each (FERRY-EVENT-5)",
        || format!("h2 was called with seqs {calls:?}"),
    )
}

/// FERRY-SUBSCRIBE-5: after a reconnect the client re-subscribes every channel it held, and a
/// channel the application gave up (its unsubscribe answered with unsubscribed) is no longer
/// held: it is not subscribed again, while the channel still held is, from its subscribed
/// reply's position.
async fn no_resubscribe_after_unsubscribe(h: &mut Harness) -> CaseResult {
    let policy = Policy::SHORT;
    let spec = WelcomeSpec::new(policy);
    let mut conn = h.subscribed_session(&spec, CHANNEL, HANDLER).await?;
    h.subscribe(OTHER_CHANNEL, HANDLER).await?;
    let other = h
        .expect_subscribe(
            &mut conn,
            OTHER_CHANNEL,
            &format!("a subscribe to {OTHER_CHANNEL}, which the application asked for"),
        )
        .await?;
    conn.send(subscribed(&other, EPOCH, 7, None)).await?;
    h.report(
        |r| r.kind() == "subscribed" && r.str("channel") == Some(OTHER_CHANNEL),
        REACT,
        &format!("a subscribed report for {OTHER_CHANNEL}"),
    )
    .await?;
    conn.send(event(CHANNEL, EPOCH, 1, json!({"n": 1}))).await?;
    h.report(
        |r| r.kind() == "delivered" && r.u64("seq") == Some(1),
        REACT,
        &format!("event 1 of {CHANNEL} delivered"),
    )
    .await?;
    h.unsubscribe(CHANNEL, HANDLER).await?;
    let unsubscribe = h
        .expect_unsubscribe(
            &mut conn,
            CHANNEL,
            &format!(
                "an unsubscribe from {CHANNEL}, once the application removed its only handler"
            ),
        )
        .await?;
    conn.send(unsubscribed(&unsubscribe)).await?;
    // Let the reply land before the session drops.
    h.adapter.settle(Duration::from_millis(200)).await?;
    conn.drop_tcp().await;
    let mut conn = h
        .reconnected(
            &spec,
            window(&policy, 1)?.1 + h.tolerance + REACT,
            "after the session dropped",
        )
        .await?;
    let gave_up = format!(
        "no subscribe to {CHANNEL} after the reconnect: the application gave it up (its unsubscribe answered with unsubscribed), so the session no longer held it, and a client re-subscribes the channels it held (FERRY-SUBSCRIBE-5)"
    );
    let held = format!(
        "after the reconnect, a subscribe to {OTHER_CHANNEL}, still held, with from = {{epoch {EPOCH}, seq 7}}, the position of its subscribed reply, no event having come (FERRY-SUBSCRIBE-5)"
    );
    let mut resubscribed = false;
    let mut until = conn.last_sent() + REACT;
    while let Some(frame) = conn
        .recv(until.saturating_duration_since(Instant::now()))
        .await?
    {
        let FrameKind::Message { json, .. } = &frame.kind else {
            if resubscribed {
                break;
            }
            return Err(Finding::fail(
                held,
                format!("{} carried {} instead", conn.link(), frame.kind.describe()),
            ));
        };
        if json["type"] != "subscribe" {
            continue;
        }
        if json["channel"] == CHANNEL {
            return Err(Finding::fail(
                gave_up,
                format!("{} carried the frame {json}", conn.link()),
            ));
        }
        if json["channel"] == OTHER_CHANNEL && !resubscribed {
            ensure(json["from"] == position(EPOCH, 7), held.clone(), || {
                format!("{}: {json}", conn.link())
            })?;
            conn.send(subscribed(json, EPOCH, 7, Some(recovery(true, 0, None))))
                .await?;
            resubscribed = true;
            // A re-subscribe of the channel given up would come in the same pass.
            until = Instant::now() + Duration::from_millis(300);
        }
    }
    ensure(resubscribed, held, || {
        format!(
            "no subscribe to {OTHER_CHANNEL} within {} ms of the welcome on {}",
            ms(REACT),
            conn.link()
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Events

/// FERRY-EVENT-3: the events of `seqs` (of EPOCH) go out in that order; exactly those of
/// `deliver` reach the handler, once each, in order.
async fn event_stream(h: &mut Harness) -> CaseResult {
    let send: Vec<u64> = h.param("seqs")?.unwrap_or_default();
    let deliver: Vec<u64> = h.param("deliver")?.unwrap_or_default();
    let last = *deliver
        .last()
        .ok_or_else(|| Finding::error("the case delivers nothing"))?;
    let mut conn = h
        .subscribed_session(&WelcomeSpec::new(Policy::SHORT), CHANNEL, HANDLER)
        .await?;
    for seq in &send {
        conn.send(event(CHANNEL, EPOCH, *seq, json!({"n": seq})))
            .await?;
    }
    h.report(
        |r| r.kind() == "delivered" && r.u64("seq") == Some(last),
        REACT,
        &format!("event {last} delivered"),
    )
    .await?;
    h.adapter.settle(Duration::from_millis(200)).await?;
    let expected = format!(
        "of the events sent with seqs {send:?}, exactly seqs {deliver:?} handed to the handler, once each and in order, with their message ids and payloads (FERRY-EVENT-3)"
    );
    let delivered: Vec<&super::adapter::Report> = h
        .adapter
        .history()
        .iter()
        .filter(|r| r.kind() == "delivered")
        .collect();
    let seqs: Vec<u64> = delivered.iter().filter_map(|r| r.u64("seq")).collect();
    ensure(seqs == deliver, expected.clone(), || {
        format!("the handler was called with seqs {seqs:?}")
    })?;
    for report in delivered {
        let seq = report.u64("seq").unwrap_or_default();
        let intact = report.str("message_id") == Some(message_id(EPOCH, seq).as_str())
            && report.str("epoch") == Some(EPOCH)
            && report.str("channel") == Some(CHANNEL)
            && report.str("handler") == Some(HANDLER)
            && report.json["payload"] == json!({"n": seq});
        ensure(intact, expected.clone(), || {
            format!("a delivery differs from event {seq}: {}", report.line())
        })?;
    }
    Ok(())
}

/// Lets every registration of a channel land for `period`: a further subscribe of the channel
/// is refused as a server would (FERRY-SUBSCRIBE-4). Returns early when the session ends.
async fn refuse_repeated_subscribes(conn: &mut Conn, period: Duration) -> CaseResult {
    let settle = Instant::now() + period;
    while let Some(frame) = conn
        .recv(settle.saturating_duration_since(Instant::now()))
        .await?
    {
        match &frame.kind {
            FrameKind::Message { json, .. } if json["type"] == "subscribe" => {
                conn.send(error_reply(&json["id"], "already_subscribed"))
                    .await?;
            }
            FrameKind::Close { .. } | FrameKind::Ended => break,
            _ => {}
        }
    }
    Ok(())
}

/// FERRY-EVENT-5: a handler registered twice is called once per event; another handler of the
/// channel is called too.
async fn handler_registered_twice(h: &mut Harness) -> CaseResult {
    let mut conn = h.establish(&WelcomeSpec::new(Policy::SHORT)).await?;
    h.subscribe(CHANNEL, "h1").await?;
    h.subscribe(CHANNEL, "h1").await?;
    h.subscribe(CHANNEL, "h2").await?;
    let subscribe = h
        .expect_subscribe(
            &mut conn,
            CHANNEL,
            &format!("a subscribe to {CHANNEL}, which the application asked for"),
        )
        .await?;
    conn.send(subscribed(&subscribe, EPOCH, 0, None)).await?;
    refuse_repeated_subscribes(&mut conn, Duration::from_millis(200)).await?;
    for seq in 1..=3 {
        conn.send(event(CHANNEL, EPOCH, seq, json!({"n": seq})))
            .await?;
    }
    for handler in ["h1", "h2"] {
        h.report(
            |r| {
                r.kind() == "delivered"
                    && r.str("handler") == Some(handler)
                    && r.u64("seq") == Some(3)
            },
            REACT,
            &format!("event 3 delivered to handler {handler}"),
        )
        .await?;
    }
    h.adapter.settle(Duration::from_millis(200)).await?;
    let mut calls: BTreeMap<(String, u64), usize> = BTreeMap::new();
    for (handler, _, seq) in h.deliveries(CHANNEL) {
        *calls.entry((handler, seq)).or_default() += 1;
    }
    let expected: BTreeMap<(String, u64), usize> = ["h1", "h2"]
        .iter()
        .flat_map(|handler| (1..=3).map(move |seq| ((handler.to_string(), seq), 1)))
        .collect();
    ensure(
        calls == expected,
        "handler h1, registered twice, called once per event, and h2 once per event (FERRY-EVENT-5): events 1 to 3, once each for each handler",
        || {
            calls
                .iter()
                .map(|((handler, seq), n)| format!("{handler} got event {seq} {n} time(s)"))
                .collect::<Vec<_>>()
                .join(", ")
        },
    )
}

/// FERRY-EVENT-4: a seq gap or an unannounced epoch change is reported incomplete with its
/// cause. `events` lists [epoch, seq] pairs; `cause` the report expected.
async fn stream_hole(h: &mut Harness) -> CaseResult {
    let events: Vec<(String, u64)> = h.param("events")?.unwrap_or_default();
    let cause: String = h
        .param("cause")?
        .ok_or_else(|| Finding::error("the case names no cause"))?;
    let mut conn = h
        .subscribed_session(&WelcomeSpec::new(Policy::SHORT), CHANNEL, HANDLER)
        .await?;
    for (epoch, seq) in &events {
        conn.send(event(CHANNEL, epoch, *seq, json!({"n": seq})))
            .await?;
    }
    let sent: Vec<String> = events.iter().map(|(e, s)| format!("{e}/{s}")).collect();
    let expected = format!(
        "an incomplete report for {CHANNEL} with cause {cause} after events {} (FERRY-EVENT-4: never skip a hole silently)",
        sent.join(", ")
    );
    let report = h
        .report(
            |r| r.kind() == "incomplete" && r.str("channel") == Some(CHANNEL),
            REACT,
            &expected,
        )
        .await?;
    ensure(
        report.str("cause") == Some(cause.as_str()),
        expected,
        || report.line(),
    )
}

// ---------------------------------------------------------------------------------------------
// Resume

/// A welcomed session holding CHANNEL with events 1 to `last` delivered, dropped, and the
/// reconnect's subscribe, which must resume from `last` (FERRY-SUBSCRIBE-5).
async fn resume_after_drop(
    h: &mut Harness,
    spec: &WelcomeSpec,
    last: u64,
) -> Result<(super::scripted::Conn, Value), Finding> {
    let mut conn = h.subscribed_session(spec, CHANNEL, HANDLER).await?;
    for seq in 1..=last {
        conn.send(event(CHANNEL, EPOCH, seq, json!({"n": seq})))
            .await?;
    }
    h.report(
        |r| r.kind() == "delivered" && r.u64("seq") == Some(last),
        REACT,
        &format!("events 1 to {last} delivered"),
    )
    .await?;
    conn.drop_tcp().await;
    let mut conn = h
        .reconnected(
            spec,
            window(&spec.reconnect, 1)?.1 + h.tolerance + REACT,
            "after the session dropped",
        )
        .await?;
    let expected = format!(
        "after the reconnect, a subscribe to {CHANNEL} with from = {{epoch {EPOCH}, seq {last}}}, the last event delivered (FERRY-SUBSCRIBE-5)"
    );
    let subscribe = h.expect_subscribe(&mut conn, CHANNEL, &expected).await?;
    ensure(subscribe["from"] == position(EPOCH, last), expected, || {
        format!("{}: {subscribe}", conn.link())
    })?;
    Ok((conn, subscribe))
}

/// FERRY-EVENT-3, FERRY-SUBSCRIBE-5: events replayed after a complete recovery reach the
/// handler once each; a repeat of an event already delivered does not.
async fn replay_delivered_once(h: &mut Harness) -> CaseResult {
    let spec = WelcomeSpec::new(Policy::SHORT);
    let (mut conn, subscribe) = resume_after_drop(h, &spec, 3).await?;
    conn.send(subscribed(
        &subscribe,
        EPOCH,
        6,
        Some(recovery(true, 3, None)),
    ))
    .await?;
    for seq in [4, 5, 6, 5, 7] {
        conn.send(event(CHANNEL, EPOCH, seq, json!({"n": seq})))
            .await?;
    }
    h.report(
        |r| r.kind() == "delivered" && r.u64("seq") == Some(7),
        REACT,
        "live event 7 delivered after the replay of 4 to 6",
    )
    .await?;
    h.adapter.settle(Duration::from_millis(200)).await?;
    let seqs: Vec<u64> = h
        .deliveries(CHANNEL)
        .into_iter()
        .map(|(_, _, s)| s)
        .collect();
    ensure(
        seqs == (1..=7).collect::<Vec<_>>(),
        "events 1 to 3 before the drop, replayed events 4 to 6 and live event 7 each delivered exactly once, in order; the repeated event 5 dropped (FERRY-EVENT-3)",
        || format!("the handler was called with seqs {seqs:?}"),
    )
}

#[derive(Deserialize)]
struct Head {
    epoch: String,
    seq: u64,
}

/// FERRY-RESUME-4: a re-subscribe answered with recovery complete false is reported
/// incomplete, with the recovery's reason as the cause.
async fn incomplete_recovery(h: &mut Harness) -> CaseResult {
    let reason: String = h
        .param("reason")?
        .ok_or_else(|| Finding::error("the case names no reason"))?;
    let head: Head = h
        .param("head")?
        .ok_or_else(|| Finding::error("the case names no head"))?;
    let spec = WelcomeSpec::new(Policy::SHORT);
    let (mut conn, subscribe) = resume_after_drop(h, &spec, 2).await?;
    conn.send(subscribed(
        &subscribe,
        &head.epoch,
        head.seq,
        Some(recovery(false, 0, Some(&reason))),
    ))
    .await?;
    let expected = format!(
        "an incomplete report for {CHANNEL} with cause {reason}, the reason of the recovery (complete false) answering the re-subscribe (FERRY-RESUME-4)"
    );
    let report = h
        .report(
            |r| r.kind() == "incomplete" && r.str("channel") == Some(CHANNEL),
            REACT,
            &expected,
        )
        .await?;
    ensure(
        report.str("cause") == Some(reason.as_str()),
        expected,
        || report.line(),
    )
}

// ---------------------------------------------------------------------------------------------
// Publish

/// How much earlier or later than its timeout a client may fail a request locally: generous,
/// as the rules are SHOULDs about "about 10 s" (a client may choose its own request timeout).
const REQUEST_TIMEOUT_EARLY: Duration = Duration::from_millis(1000);

/// FERRY-PUBLISH-2 (SHOULD): a publish that gets neither acknowledgement nor error fails
/// locally with timeout about 10 s after the application asked for it. The scripted server
/// takes the publish frame and never answers it; the session stays up (no ping is due within
/// the default heartbeat). The delay counts from the runner's instant before it sent the
/// publish command, which the client's own count can only follow; a delay too long while the
/// runner's timer woke late is inconclusive.
async fn publish_timeout(h: &mut Harness) -> CaseResult {
    let timeout = Duration::from_millis(ferry_protocol::tables::defaults::REQUEST_TIMEOUT_MS);
    let mut conn = h.establish(&WelcomeSpec::new(Policy::SHORT)).await?;
    let asked = Instant::now();
    h.publish("p-unanswered", CHANNEL, json!({"n": 1}), None)
        .await?;
    conn.expect_message(
        Some("publish"),
        REACT,
        "a publish frame for the publish the application asked for",
    )
    .await?;
    h.transcript.note("runner", "never answering the publish");
    local_timeout(
        h,
        "p-unanswered",
        "publish_failed",
        asked,
        timeout,
        "which neither an acknowledgement nor an error answered (FERRY-PUBLISH-2)",
    )
    .await
}

/// Waits for the outcome of `reference`, which the client must fail locally with the code
/// timeout about `timeout` after the instant `asked` (`failed` is the failure's report type):
/// within [timeout - 1 s, timeout + 1 s + tolerance]. `why` says which request went unanswered
/// and the rule. A delay too long while the runner's own timer woke late is inconclusive.
async fn local_timeout(
    h: &mut Harness,
    reference: &str,
    failed: &str,
    asked: Instant,
    timeout: Duration,
    why: &str,
) -> CaseResult {
    let low = timeout.saturating_sub(REQUEST_TIMEOUT_EARLY);
    let high = timeout + REQUEST_TIMEOUT_EARLY + h.tolerance;
    let expected = format!(
        "{failed} for {reference} with code timeout about {} ms after the application asked for it, {why}: in [{}, {}] ms",
        ms(timeout),
        ms(low),
        ms(high)
    );
    let outcome = h
        .report(
            |r| r.str("ref") == Some(reference),
            (asked + high + REACT).saturating_duration_since(Instant::now()),
            &expected,
        )
        .await?;
    let measured = asked.elapsed();
    ensure(
        outcome.kind() == failed && outcome.str("code") == Some("timeout"),
        expected.clone(),
        || outcome.line(),
    )?;
    if low <= measured && measured <= high {
        return Ok(());
    }
    let observed = format!(
        "{failed} came {} ms after the command was sent",
        ms(measured)
    );
    let lag = crate::lag::worst_between(asked, asked + measured);
    if measured > high && lag > h.tolerance / DISTURBANCE {
        return Err(Finding::inconclusive(format!(
            "{observed}, beyond {} ms, while the runner's own timer woke up to {} ms late (more than 1/{DISTURBANCE} of the tolerance): the machine was too busy to tell",
            ms(high),
            ms(lag)
        )));
    }
    Err(Finding::fail(expected, observed))
}

/// FERRY-PUBLISH-2: each acknowledgement and error reaches the publish whose id it carries,
/// whatever the order.
async fn publish_acknowledged(h: &mut Harness) -> CaseResult {
    let mut conn = h.establish(&WelcomeSpec::new(Policy::SHORT)).await?;
    let refs = ["p-1", "p-2", "p-3"];
    for (n, reference) in refs.iter().enumerate() {
        h.publish(reference, CHANNEL, json!({"n": n + 1}), None)
            .await?;
    }
    let mut frames: BTreeMap<u64, Value> = BTreeMap::new();
    for _ in refs {
        let (publish, _) = conn
            .expect_message(
                Some("publish"),
                REACT,
                "a publish frame for each publish the application asked for",
            )
            .await?;
        let n = publish["payload"]["n"].as_u64().unwrap_or_default();
        frames.insert(n, publish);
    }
    let ids: std::collections::HashSet<&Value> = frames.values().map(|f| &f["id"]).collect();
    ensure(
        frames.len() == 3 && ids.len() == 3,
        "three publish frames with payloads n = 1, 2, 3 and distinct request ids (a RequestId is unique among the connection's outstanding requests)",
        || {
            frames
                .values()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        },
    )?;
    let frame = |n: u64| frames.get(&n).cloned().unwrap_or_default();
    // Answered in reverse order: the client must go by the id, not the order.
    conn.send(error_reply(&frame(3)["id"], "forbidden")).await?;
    conn.send(published(&frame(2), EPOCH, 11, false)).await?;
    conn.send(published(&frame(1), EPOCH, 10, true)).await?;
    let checks = [
        ("p-1", "published", Some(10), Some(true)),
        ("p-2", "published", Some(11), Some(false)),
        ("p-3", "publish_failed", None, None),
    ];
    for (reference, kind, seq, duplicate) in checks {
        let expected = match seq {
            Some(seq) => format!(
                "published for {reference} with message_id {}, epoch {EPOCH}, seq {seq}, duplicate {}: the acknowledgement carrying its request id (FERRY-PUBLISH-2)",
                message_id(EPOCH, seq),
                duplicate.unwrap_or_default()
            ),
            None => format!(
                "publish_failed for {reference} with code forbidden: the error carrying its request id (FERRY-PUBLISH-2)"
            ),
        };
        let report = h
            .report(|r| r.str("ref") == Some(reference), REACT, &expected)
            .await?;
        let right = report.kind() == kind
            && match seq {
                Some(seq) => {
                    report.u64("seq") == Some(seq)
                        && report.str("epoch") == Some(EPOCH)
                        && report.str("message_id") == Some(message_id(EPOCH, seq).as_str())
                        && report.json["duplicate"].as_bool() == duplicate
                }
                None => report.str("code") == Some("forbidden"),
            };
        ensure(right, expected, || report.line())?;
    }
    Ok(())
}

/// How long the runner watches a session that refused a publish with rate_limited for the
/// publish coming again: past the error's retry_after_ms, several times over.
const RATE_LIMITED_WATCH: Duration = Duration::from_millis(1000);

/// FERRY-RATE-5, FERRY-PUBLISH-3: a publish refused with rate_limited (retry_after_ms 100) is
/// not sent again on that session, though its hint passes many times while the runner watches;
/// after the session drops, the next welcomed session carries it with the same idempotency
/// key, and its acknowledgement is reported.
async fn rate_limited_not_resent(h: &mut Harness) -> CaseResult {
    let policy = Policy::SHORT;
    let spec = WelcomeSpec::new(policy);
    let mut conn = h.establish(&spec).await?;
    h.publish("p-limited", CHANNEL, json!({"n": 1}), None)
        .await?;
    let (first, _) = conn
        .expect_message(
            Some("publish"),
            REACT,
            "a publish frame for the publish the application asked for",
        )
        .await?;
    let mut refusal = error_reply(&first["id"], "rate_limited");
    refusal["error"]["retryable"] = json!(true);
    refusal["error"]["retry_after_ms"] = json!(100);
    conn.send(refusal).await?;
    h.transcript.note(
        "runner",
        "answered the publish with rate_limited, retry_after_ms 100",
    );
    let expected = format!(
        "no publish on {} after it refused the publish with rate_limited: the request is not sent again on the session that refused it (FERRY-RATE-5)",
        conn.link()
    );
    none_sent(&mut conn, "publish", RATE_LIMITED_WATCH, &expected).await?;
    conn.drop_tcp().await;
    let mut conn = h
        .reconnected(
            &spec,
            window(&policy, 1)?.1 + h.tolerance + REACT,
            "after the session dropped",
        )
        .await?;
    let expected = format!(
        "after the reconnect, the publish refused with rate_limited, never acknowledged, sent again with the same idempotency key {} (FERRY-PUBLISH-3, FERRY-RATE-5)",
        first["idempotency_key"]
    );
    let retry = loop {
        let (message, _) = conn.expect_message(None, REACT, &expected).await?;
        if message["type"] == "publish" {
            break message;
        }
        if message["type"] == "subscribe" {
            return Err(Finding::error(format!(
                "the client subscribed to {} though the case subscribed to nothing",
                message["channel"]
            )));
        }
    };
    ensure(
        retry["idempotency_key"] == first["idempotency_key"]
            && retry["channel"] == first["channel"]
            && retry["payload"] == first["payload"],
        expected,
        || format!("{}: {retry}", conn.link()),
    )?;
    conn.send(published(&retry, EPOCH, 1, false)).await?;
    h.report(
        |r| r.kind() == "published" && r.str("ref") == Some("p-limited"),
        REACT,
        "a published report for p-limited once the publish sent again is acknowledged",
    )
    .await?;
    Ok(())
}

/// FERRY-PUBLISH-3: a publish not acknowledged when the session dropped is sent again on the
/// next session with the same idempotency key (the application's own, when it gave one).
async fn publish_retry(h: &mut Harness) -> CaseResult {
    let key: Option<String> = h.param("idempotency_key")?;
    let policy = Policy::SHORT;
    let spec = WelcomeSpec::new(policy);
    let mut conn = h.establish(&spec).await?;
    h.publish("p-1", CHANNEL, json!({"n": 1}), key.as_deref())
        .await?;
    let (first, _) = conn
        .expect_message(
            Some("publish"),
            REACT,
            "a publish frame for the publish the application asked for",
        )
        .await?;
    if let Some(key) = &key {
        ensure(
            first["idempotency_key"] == key.as_str(),
            format!("the publish to carry the application's idempotency key {key:?}"),
            || first.to_string(),
        )?;
    }
    conn.drop_tcp().await;
    h.transcript.note(
        "runner",
        "dropped the session without acknowledging the publish",
    );
    let mut conn = h
        .reconnected(
            &spec,
            window(&policy, 1)?.1 + h.tolerance + REACT,
            "after the session dropped",
        )
        .await?;
    let expected = format!(
        "after the reconnect, the unacknowledged publish sent again with the same idempotency key {} (FERRY-PUBLISH-3), channel and payload",
        first["idempotency_key"]
    );
    let (retry, _) = conn
        .expect_message(Some("publish"), REACT, &expected)
        .await?;
    ensure(
        retry["idempotency_key"] == first["idempotency_key"]
            && retry["channel"] == first["channel"]
            && retry["payload"] == first["payload"],
        expected,
        || format!("{}: {retry}", conn.link()),
    )?;
    conn.send(published(&retry, EPOCH, 1, false)).await?;
    h.report(
        |r| r.kind() == "published" && r.str("ref") == Some("p-1"),
        REACT,
        "a published report for p-1 once the retry was acknowledged",
    )
    .await?;
    one_outcome(
        h,
        "p-1",
        "one outcome for p-1: the publish and its retry are one publish",
    )
    .await
}

/// Fails unless, once the adapter has been quiet a moment, exactly one outcome report names
/// `reference`; `expected` says why there must be one.
async fn one_outcome(h: &mut Harness, reference: &str, expected: &str) -> CaseResult {
    h.adapter.settle(Duration::from_millis(200)).await?;
    let outcomes = h
        .adapter
        .history()
        .iter()
        .filter(|r| r.str("ref") == Some(reference))
        .count();
    ensure(outcomes == 1, expected, || {
        format!(
            "{outcomes} outcome reports for {reference}: {}",
            h.reports_text()
        )
    })
}

/// Watches `conn` for `within` and fails, with `expected`, at the first message of type
/// `kind` it carries.
async fn none_sent(conn: &mut Conn, kind: &str, within: Duration, expected: &str) -> CaseResult {
    let until = Instant::now() + within;
    while let Some(frame) = conn
        .recv(until.saturating_duration_since(Instant::now()))
        .await?
    {
        if let FrameKind::Message { json, .. } = &frame.kind
            && json["type"] == kind
        {
            return Err(Finding::fail(
                expected,
                format!("{} carried the frame {json}", conn.link()),
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// RPC

/// The method the RPC cases call; the scripted server answers whatever the client sends.
const METHOD: &str = "conformance:echo";

/// A welcome that advertises `rpc.timeout_ms` and grants calls, under the short policy.
fn rpc_spec(timeout_ms: u64) -> WelcomeSpec {
    WelcomeSpec {
        rpc_timeout_ms: Some(timeout_ms),
        ..WelcomeSpec::new(Policy::SHORT)
    }
}

/// The next rpc frame on `conn`, checked to carry `method`, `params` and an idempotency key
/// (the application's `key` when it gave one).
async fn expect_rpc(
    conn: &mut Conn,
    params: &Value,
    key: Option<&str>,
    expected: &str,
) -> Result<Value, Finding> {
    let (rpc, _) = conn.expect_message(Some("rpc"), REACT, expected).await?;
    let key_right = match key {
        Some(key) => rpc["idempotency_key"] == key,
        None => rpc["idempotency_key"]
            .as_str()
            .is_some_and(|k| !k.is_empty()),
    };
    ensure(
        rpc["method"] == METHOD && rpc["params"] == *params && key_right,
        format!(
            "{expected}: method {METHOD}, params {params}, and {}",
            key.map_or("an idempotency key".to_owned(), |k| format!(
                "the application's idempotency key {k:?}"
            ))
        ),
        || format!("{}: {rpc}", conn.link()),
    )?;
    Ok(rpc)
}

/// FERRY-RPC-6: each rpc_result and error reaches the call whose id it carries, whatever the
/// order, with the result and its duplicate flag untouched.
async fn rpc_answers_matched(h: &mut Harness) -> CaseResult {
    let mut conn = h.establish(&rpc_spec(10_000)).await?;
    let refs = ["c-1", "c-2", "c-3"];
    let mut frames = Vec::new();
    for (n, reference) in refs.iter().enumerate() {
        let params = json!({"n": n + 1});
        h.call(reference, METHOD, params.clone(), None).await?;
        frames.push(
            expect_rpc(
                &mut conn,
                &params,
                None,
                &format!("an rpc frame for the call {reference} the application asked for"),
            )
            .await?,
        );
    }
    let ids: std::collections::HashSet<&Value> = frames.iter().map(|f| &f["id"]).collect();
    let keys: std::collections::HashSet<&Value> =
        frames.iter().map(|f| &f["idempotency_key"]).collect();
    ensure(
        ids.len() == 3 && keys.len() == 3,
        "three rpc frames with distinct request ids and distinct idempotency keys: three calls, none a retry of another",
        || {
            frames
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        },
    )?;
    // Answered in reverse order: the client must go by the id, not the order.
    conn.send(error_reply(&frames[2]["id"], "rejected")).await?;
    conn.send(rpc_result(&frames[1], json!({"echo": 2}), false))
        .await?;
    conn.send(rpc_result(&frames[0], json!([1, "one", null]), true))
        .await?;
    let checks = [
        ("c-1", Some((json!([1, "one", null]), true))),
        ("c-2", Some((json!({"echo": 2}), false))),
        ("c-3", None),
    ];
    for (reference, answer) in checks {
        let expected = match &answer {
            Some((result, duplicate)) => format!(
                "answered for {reference} with result {result} and duplicate {duplicate}: the rpc_result carrying its request id (FERRY-RPC-6)"
            ),
            None => format!(
                "call_failed for {reference} with code rejected: the error carrying its request id (FERRY-RPC-6)"
            ),
        };
        let report = h
            .report(|r| r.str("ref") == Some(reference), REACT, &expected)
            .await?;
        let right = match &answer {
            Some((result, duplicate)) => {
                report.kind() == "answered"
                    && report.json["result"] == *result
                    && report.json["duplicate"].as_bool() == Some(*duplicate)
            }
            None => report.kind() == "call_failed" && report.str("code") == Some("rejected"),
        };
        ensure(right, expected, || report.line())?;
    }
    Ok(())
}

/// FERRY-RPC-3, FERRY-RPC-6: a call with no answer when its session drops is sent again on
/// the next welcomed session with the same idempotency key (the application's own, when it
/// gave one), and its answer is reported once.
async fn rpc_retry(h: &mut Harness) -> CaseResult {
    let key: Option<String> = h.param("idempotency_key")?;
    let spec = rpc_spec(10_000);
    let mut conn = h.establish(&spec).await?;
    let params = json!({"project": "alpha", "title": "resumable"});
    h.call("c-1", METHOD, params.clone(), key.as_deref())
        .await?;
    let first = expect_rpc(
        &mut conn,
        &params,
        key.as_deref(),
        "an rpc frame for the call the application asked for",
    )
    .await?;
    conn.drop_tcp().await;
    h.transcript
        .note("runner", "dropped the session without answering the call");
    let mut conn = h
        .reconnected(
            &spec,
            window(&spec.reconnect, 1)?.1 + h.tolerance + REACT,
            "after the session dropped",
        )
        .await?;
    let retry = expect_rpc(
        &mut conn,
        &params,
        first["idempotency_key"].as_str(),
        &format!(
            "after the reconnect, the unanswered call sent again with the same idempotency key {} (FERRY-RPC-3)",
            first["idempotency_key"]
        ),
    )
    .await?;
    let result = json!({"task_id": "t-1"});
    // The first call ran: its answer comes back as a duplicate.
    conn.send(rpc_result(&retry, result.clone(), true)).await?;
    let report = h
        .report(
            |r| r.str("ref") == Some("c-1"),
            REACT,
            "an answered report for c-1 once the call sent again was answered",
        )
        .await?;
    ensure(
        report.kind() == "answered" && report.json["result"] == result,
        format!("answered for c-1 with result {result} (FERRY-RPC-6)"),
        || report.line(),
    )?;
    one_outcome(
        h,
        "c-1",
        "one outcome for c-1: the call and its retry are one call (FERRY-RPC-6)",
    )
    .await
}

/// FERRY-RPC-6, FERRY-RPC-3: a call the server refused is over: the refusal is reported, and
/// the call is not sent again, neither on its session nor on the next one (only a call with
/// no answer is).
async fn rpc_refusal_ends_call(h: &mut Harness) -> CaseResult {
    let code: String = h
        .param("code")?
        .ok_or_else(|| Finding::error("the case needs the param code"))?;
    let spec = rpc_spec(10_000);
    let mut conn = h.establish(&spec).await?;
    let params = json!({"n": 1});
    h.call("c-refused", METHOD, params.clone(), None).await?;
    let rpc = expect_rpc(
        &mut conn,
        &params,
        None,
        "an rpc frame for the call the application asked for",
    )
    .await?;
    let mut refusal = error_reply(&rpc["id"], &code);
    refusal["error"]["retryable"] = json!(code == "timeout" || code == "unavailable");
    conn.send(refusal).await?;
    let expected =
        format!("call_failed for c-refused with code {code}, the server's error (FERRY-RPC-6)");
    let report = h
        .report(|r| r.str("ref") == Some("c-refused"), REACT, &expected)
        .await?;
    ensure(
        report.kind() == "call_failed" && report.str("code") == Some(code.as_str()),
        expected,
        || report.line(),
    )?;
    let no_rpc = |conn: &Conn| {
        format!(
            "no rpc on {} once the call was refused with {code}: an error ends a call, and only an unanswered call is sent again (FERRY-RPC-6, FERRY-RPC-3)",
            conn.link()
        )
    };
    let expected = no_rpc(&conn);
    none_sent(&mut conn, "rpc", QUIET, &expected).await?;
    conn.drop_tcp().await;
    let mut conn = h
        .reconnected(
            &spec,
            window(&spec.reconnect, 1)?.1 + h.tolerance + REACT,
            "after the session dropped",
        )
        .await?;
    let expected = no_rpc(&conn);
    none_sent(&mut conn, "rpc", QUIET, &expected).await
}

/// FERRY-RPC-2 (its client part): a call with no answer fails locally with timeout about the
/// advertised rpc.timeout_ms (300 ms) plus the request timeout (10 s by default) after the
/// application asked for it. A client that kept the protocol's default rpc.timeout_ms instead
/// of the advertised one would fail it about 10 s later.
async fn rpc_timeout(h: &mut Harness) -> CaseResult {
    let advertised = 300;
    let mut conn = h.establish(&rpc_spec(advertised)).await?;
    let asked = Instant::now();
    let params = json!({"n": 1});
    h.call("c-unanswered", METHOD, params.clone(), None).await?;
    expect_rpc(
        &mut conn,
        &params,
        None,
        "an rpc frame for the call the application asked for",
    )
    .await?;
    h.transcript.note("runner", "never answering the call");
    let timeout =
        Duration::from_millis(advertised + ferry_protocol::tables::defaults::REQUEST_TIMEOUT_MS);
    local_timeout(
        h,
        "c-unanswered",
        "call_failed",
        asked,
        timeout,
        "which neither an rpc_result nor an error answered: the advertised rpc.timeout_ms of 300 ms plus the request timeout (FERRY-RPC-2)",
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Heartbeat

/// FERRY-HEARTBEAT-2, FERRY-WELCOME-3: each ping answered with a pong echoing its nonce within
/// the advertised timeout; pings every interval keep the session alive.
async fn pong_echoes_nonce(h: &mut Harness) -> CaseResult {
    let (interval, timeout) = (300, 300);
    let spec = WelcomeSpec {
        heartbeat_interval_ms: interval,
        heartbeat_timeout_ms: timeout,
        ..WelcomeSpec::new(Policy::SHORT)
    };
    let mut conn = h.establish(&spec).await?;
    let nonces = [
        "hb-1",
        "n!~#Zq7$Zq7$Zq7$Zq7$Zq7$Zq7$Zq7$Zq7$Zq7$Zq7$Zq7$Zq7$Zq7$Zq7$Zq7$",
        r#"q"b\s"#,
    ];
    for nonce in nonces {
        let sent = Instant::now();
        conn.send(ping(nonce)).await?;
        let expected = format!(
            "a pong echoing the nonce {nonce:?} within heartbeat.timeout_ms = {timeout} ms (+{} ms tolerance) (FERRY-HEARTBEAT-2, FERRY-WELCOME-3)",
            ms(h.tolerance)
        );
        let limit = Duration::from_millis(timeout) + h.tolerance;
        let (pong, _) = conn.expect_message(None, limit, &expected).await?;
        let took = sent.elapsed();
        ensure(
            pong["type"] == "pong" && pong["nonce"] == nonce,
            expected.clone(),
            || format!("{}: {pong}", conn.link()),
        )?;
        h.transcript
            .note("runner", format!("pong after {} ms", ms(took)));
        tokio::time::sleep_until((sent + Duration::from_millis(interval)).into()).await;
    }
    Ok(())
}

/// FERRY-HEARTBEAT-4, FERRY-WELCOME-3: a server silent for interval + timeout is dead; the
/// client closes the session and reconnects under its backoff.
async fn silent_server_detected(h: &mut Harness) -> CaseResult {
    let (interval, timeout) = (300, 300);
    let policy = Policy {
        jitter: 0.0,
        ..Policy::SHORT
    };
    let spec = WelcomeSpec {
        heartbeat_interval_ms: interval,
        heartbeat_timeout_ms: timeout,
        ..WelcomeSpec::new(policy)
    };
    let mut conn = h.establish(&spec).await?;
    let silent_since = conn.last_sent();
    let silence = Duration::from_millis(interval + timeout);
    h.transcript.note("runner", "silent from now on");
    let expected = format!(
        "the client to treat the session as dead after heartbeat.interval_ms + heartbeat.timeout_ms = {} ms without a frame, and close it (FERRY-HEARTBEAT-4, FERRY-WELCOME-3): in [{}, {}] ms (tolerance -{} ms / +{} ms)",
        ms(silence),
        ms(silence),
        ms(silence),
        ms(LOWER_SLACK),
        ms(h.tolerance)
    );
    let deadline = silent_since + silence + h.tolerance + REACT;
    let Some(closed_at) = client_end(&mut conn, deadline).await? else {
        return Err(Finding::fail(
            expected,
            format!(
                "{} was still open {} ms after the server's last frame",
                conn.link(),
                ms(deadline.saturating_duration_since(silent_since))
            ),
        ));
    };
    let measured = closed_at.saturating_duration_since(silent_since);
    ensure(
        silence.saturating_sub(LOWER_SLACK) <= measured && measured <= silence + h.tolerance,
        expected,
        || {
            format!(
                "the client ended {} after {} ms of silence",
                conn.link(),
                ms(measured)
            )
        },
    )?;
    // From the runner's own last send, not from the arrival of the client's close, which
    // may come late and so shorten the measured delay.
    h.retry_ticket(
        silent_since + silence,
        window(&policy, 1)?,
        &format!(
            "retry 1 after the dead session (FERRY-HEARTBEAT-4: reconnect under the backoff; {})",
            policy.describe()
        ),
        "heartbeat.interval_ms + heartbeat.timeout_ms after the server's last frame",
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reconnect

/// How a run's attempts are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
enum Refusal {
    /// The ticket endpoint answers 503 unavailable.
    #[serde(rename = "ticket_503")]
    Ticket503,
    /// The upgrade is answered 503 unavailable.
    #[serde(rename = "upgrade_503")]
    Upgrade503,
    /// The upgrade is accepted, then closed with 1011 before any welcome.
    #[serde(rename = "close_1011")]
    Close1011,
}

impl Refusal {
    fn describe(self) -> &'static str {
        match self {
            Self::Ticket503 => "the ticket endpoint answered 503",
            Self::Upgrade503 => "the upgrade was refused with 503",
            Self::Close1011 => "the server closed the unwelcomed connection with 1011",
        }
    }
}

/// FERRY-RECONNECT-2, -3, -8: after a welcomed session drops, `retries` attempts, each but
/// the last refused as `refuse` says; each delay must lie in its retry's window under the
/// advertised `reconnect` policy. With `spread`, the delays must not all sit at one end of
/// their windows (the draw is uniform).
async fn retry_run(h: &mut Harness) -> CaseResult {
    let policy = h.policy()?;
    let retries: u32 = h.param("retries")?.unwrap_or(4);
    let refuse: Refusal = h.param("refuse")?.unwrap_or(Refusal::Upgrade503);
    let spread: bool = h.param("spread")?.unwrap_or(false);
    let backoff = policy.backoff()?;
    let spec = WelcomeSpec::new(policy);
    let refusals = retries.saturating_sub(1) as usize;
    match refuse {
        Refusal::Ticket503 => {
            // The first ticket request (the initial connect) is issued.
            let mut plan = vec![TicketReply::Issue];
            plan.extend(std::iter::repeat_n(
                TicketReply::Refuse(ErrorCode::Unavailable),
                refusals,
            ));
            h.server.plan_tickets(plan);
        }
        Refusal::Upgrade503 => {
            let mut plan = vec![UpgradeReply::Accept];
            plan.extend(std::iter::repeat_n(
                UpgradeReply::Refuse(ErrorCode::Unavailable),
                refusals,
            ));
            h.server.plan_upgrades(plan);
        }
        Refusal::Close1011 => {}
    }
    let conn = h.establish(&spec).await?;
    let mut reference = conn.drop_tcp().await;
    let mut since = "the drop of the welcomed session".to_owned();
    let mut measured = Vec::new();
    for retry in 1..=retries {
        let bounds = backoff.bounds(retry);
        let what = format!(
            "retry {retry} (counted since the session ended) under the advertised policy ({}), whose window is [nominal({retry})·(1−jitter), nominal({retry})] (FERRY-RECONNECT-2, FERRY-RECONNECT-3)",
            policy.describe()
        );
        let request = h.retry_ticket(reference, bounds, &what, &since).await?;
        measured.push((
            retry,
            request.at.saturating_duration_since(reference),
            bounds,
        ));
        let last = retry == retries;
        match (refuse, last) {
            (Refusal::Ticket503, false) => reference = request.at,
            (Refusal::Upgrade503, false) => {
                reference = h
                    .attempt(&format!("connection attempt {}", retry + 1))
                    .await?
                    .at;
            }
            (Refusal::Close1011, false) => {
                let mut conn = h
                    .accepted(&format!("connection attempt {}", retry + 1))
                    .await?;
                reference = conn.close(1011, "internal_error").await?;
            }
            (_, true) => {
                let mut conn = h.accepted("the last connection attempt, accepted").await?;
                h.welcome(&mut conn, &spec).await?;
            }
        }
        since = format!("the end of attempt {} ({})", retry + 1, refuse.describe());
    }
    if spread {
        let tenth = |(low, high): (Duration, Duration)| (high.saturating_sub(low)) / 10;
        let top = measured
            .iter()
            .all(|(_, d, bounds)| *d >= bounds.1.saturating_sub(tenth(*bounds)));
        let bottom = measured
            .iter()
            .all(|(_, d, bounds)| *d <= bounds.0 + tenth(*bounds));
        let delays: Vec<String> = measured
            .iter()
            .map(|(retry, d, (low, high))| {
                format!(
                    "retry {retry}: {} ms in [{}, {}]",
                    ms(*d),
                    ms(*low),
                    ms(*high)
                )
            })
            .collect();
        ensure(
            !top && !bottom,
            format!(
                "delays drawn uniformly from [nominal(n)·(1−jitter), nominal(n)] (FERRY-RECONNECT-2): with jitter {}, {} uniform draws all fall in the same tenth (top or bottom) of their windows with probability 1e-{} — so a client that randomises is not caught here by chance",
                policy.jitter,
                measured.len(),
                measured.len()
            ),
            || {
                format!(
                    "every delay fell in the {} 10% of its window, so the client does not draw it at random: {}",
                    if top { "top" } else { "bottom" },
                    delays.join("; ")
                )
            },
        )?;
    }
    Ok(())
}

/// FERRY-RECONNECT-4, FERRY-RECONNECT-9: after max_attempts failed retries in a row the client
/// stops, says so, and makes no further attempt.
async fn attempts_exhausted(h: &mut Harness) -> CaseResult {
    let policy = h.policy()?;
    let attempts = u32::try_from(policy.max_attempts).unwrap_or(u32::MAX);
    let backoff = policy.backoff()?;
    let spec = WelcomeSpec::new(policy);
    let mut plan = vec![UpgradeReply::Accept];
    plan.extend(std::iter::repeat_n(
        UpgradeReply::Refuse(ErrorCode::Unavailable),
        attempts as usize,
    ));
    h.server.plan_upgrades(plan);
    let conn = h.establish(&spec).await?;
    let mut reference = conn.drop_tcp().await;
    let mut since = "the drop of the welcomed session".to_owned();
    for retry in 1..=attempts {
        let what = format!(
            "retry {retry} of max_attempts {attempts} (FERRY-RECONNECT-4; {})",
            policy.describe()
        );
        h.retry_ticket(reference, backoff.bounds(retry), &what, &since)
            .await?;
        reference = h
            .attempt(&format!("connection attempt {}", retry + 1))
            .await?
            .at;
        since = format!("the refusal of retry {retry}");
    }
    h.no_ticket(
        QUIET.max(backoff.cap() * 3),
        reference,
        &format!("no attempt after max_attempts = {attempts} retries failed in a row: the client stops (FERRY-RECONNECT-4)"),
    )
    .await?;
    h.expect_stopped(
        "attempts_exhausted",
        None,
        "a stopped report with reason attempts_exhausted (FERRY-RECONNECT-4, FERRY-RECONNECT-9: say why)",
    )
    .await
}

/// FERRY-RECONNECT-5: the retry count resets once a session stayed welcomed for
/// reset_after_ms, and only then. Two failed retries, then a session held `hold_ms`: the next
/// delay is retry 1's when the hold reached reset_after_ms, retry 3's otherwise.
async fn reset_rule(h: &mut Harness) -> CaseResult {
    let policy = h.policy()?;
    let hold: u64 = h
        .param("hold_ms")?
        .ok_or_else(|| Finding::error("the case names no hold_ms"))?;
    let margin = 100;
    let resets = if hold >= policy.reset_after_ms + margin {
        true
    } else if hold + margin <= policy.reset_after_ms {
        false
    } else {
        return Err(Finding::error(format!(
            "hold_ms {hold} is too close to reset_after_ms {} to tell",
            policy.reset_after_ms
        )));
    };
    let backoff = policy.backoff()?;
    let spec = WelcomeSpec::new(policy);
    h.server.plan_upgrades([
        UpgradeReply::Accept,
        UpgradeReply::Refuse(ErrorCode::Unavailable),
    ]);
    let mut first = h.establish(&spec).await?;
    let closed = first.close(1011, "internal_error").await?;
    let words = policy.describe();
    h.retry_ticket(
        closed,
        backoff.bounds(1),
        &format!(
            "retry 1 after a session shorter than reset_after_ms ({words}; FERRY-RECONNECT-2)"
        ),
        "close 1011",
    )
    .await?;
    let refused = h.attempt("connection attempt 2").await?.at;
    h.retry_ticket(
        refused,
        backoff.bounds(2),
        &format!("retry 2 after the refused attempt ({words}; FERRY-RECONNECT-2)"),
        "the refusal of attempt 2",
    )
    .await?;
    let mut held = h.accepted("connection attempt 3").await?;
    h.welcome(&mut held, &spec).await?;
    let welcomed = held.last_sent();
    tokio::time::sleep_until((welcomed + Duration::from_millis(hold)).into()).await;
    let closed = held.close(1011, "internal_error").await?;
    let (retry, why) = if resets {
        (
            1,
            format!(
                "the session stayed welcomed {hold} ms, at least reset_after_ms {}: the count resets and the next retry is retry 1 (FERRY-RECONNECT-5)",
                policy.reset_after_ms
            ),
        )
    } else {
        (
            3,
            format!(
                "the session stayed welcomed only {hold} ms, less than reset_after_ms {}: the count is kept and the next retry is retry 3 (FERRY-RECONNECT-5)",
                policy.reset_after_ms
            ),
        )
    };
    h.retry_ticket(
        closed,
        backoff.bounds(retry),
        &format!("{why}; {words}"),
        "close 1011 of the held session",
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Close codes and shutdown

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GoodbyeParam {
    reason: String,
    #[serde(default)]
    retry_after_ms: Option<u64>,
}

/// How the close is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum CloseSend {
    /// A close frame with the code.
    Close,
    /// A close frame without a code (1005 on the client's side).
    NoCode,
    /// No close frame: the TCP connection drops (1006 on the client's side).
    Drop,
}

/// A close-code action in the protocol's words.
fn action_name(action: ClientAction) -> &'static str {
    match action {
        ClientAction::Stop => "stop",
        ClientAction::RenewTicket => "renew_ticket",
        ClientAction::Backoff => "backoff",
        ClientAction::RetryAfterHint => "retry_after_hint",
    }
}

/// FERRY-RECONNECT-1, -6, -7, -9: the client takes the close-code table's action for `code`
/// (ferry-protocol's `close::action_for`; backoff for a code the table lacks), after the
/// `goodbye` when the case sends one.
async fn close_code(h: &mut Harness) -> CaseResult {
    let code: u16 = h
        .param("code")?
        .ok_or_else(|| Finding::error("the case names no close code"))?;
    let send: CloseSend = h.param("send")?.unwrap_or(CloseSend::Close);
    let farewell: Option<GoodbyeParam> = h.param("goodbye")?;
    let policy = h.policy()?;
    let backoff = policy.backoff()?;
    let spec = WelcomeSpec::new(policy);
    let mut conn = h.establish(&spec).await?;
    if let Some(farewell) = &farewell {
        conn.send(goodbye(&farewell.reason, farewell.retry_after_ms))
            .await?;
    }
    let row = lookup(code);
    let name = row.map_or("absent from the close-code table", |row| row.name);
    let reference = match send {
        CloseSend::Close => conn.close(code, name).await?,
        CloseSend::NoCode => conn.close_without_code().await?,
        CloseSend::Drop => conn.drop_tcp().await,
    };
    let action = action_for(code);
    let closed = match send {
        CloseSend::Close => format!("close {code} ({name})"),
        CloseSend::NoCode => format!("a close frame without a code ({code} {name})"),
        CloseSend::Drop => format!("the TCP drop without a close frame ({code} {name})"),
    };
    let table = format!(
        "{closed}, whose action in the close-code table is {}",
        action_name(action)
    );
    match action {
        ClientAction::Stop => {
            h.no_ticket(
                QUIET,
                reference,
                &format!("no reconnect after {table} (FERRY-RECONNECT-1)"),
            )
            .await?;
            let expected = format!(
                "a stopped report with reason closed and close_code {code} after {closed}, whose action is stop (FERRY-RECONNECT-9: say why)"
            );
            h.expect_stopped("closed", Some(Some(code)), &expected)
                .await
        }
        ClientAction::RenewTicket => {
            h.retry_ticket(
                reference,
                at_once(),
                &format!(
                    "retry 1 after {table}: a new ticket and a retry at once (FERRY-RECONNECT-6)"
                ),
                &closed,
            )
            .await?;
            h.accepted("the retry, with the new ticket").await?;
            Ok(())
        }
        ClientAction::RetryAfterHint
            if farewell
                .as_ref()
                .is_some_and(|f| f.retry_after_ms.is_some()) =>
        {
            let hint = farewell.and_then(|f| f.retry_after_ms).unwrap_or_default();
            let exact = Duration::from_millis(hint);
            let above_cap = if exact > backoff.cap() {
                format!(
                    ", although above cap_ms {} (FERRY-RECONNECT-3 yields to the hint)",
                    policy.cap_ms
                )
            } else {
                String::new()
            };
            h.retry_ticket(
                reference,
                (exact, exact),
                &format!("retry 1 after a goodbye with retry_after_ms {hint} and {table}: wait the hint, not the backoff (FERRY-RECONNECT-7){above_cap}"),
                &closed,
            )
            .await?;
            Ok(())
        }
        ClientAction::Backoff | ClientAction::RetryAfterHint => {
            let why = if action == ClientAction::Backoff {
                if row.is_some() {
                    format!("{table} (FERRY-RECONNECT-1)")
                } else {
                    format!(
                        "{closed}: a code missing from the table is treated as backoff (FERRY-RECONNECT-1)"
                    )
                }
            } else {
                format!(
                    "{table}, without a numeric retry_after_ms to wait: follow the backoff (FERRY-RECONNECT-7)"
                )
            };
            h.retry_ticket(
                reference,
                backoff.bounds(1),
                &format!(
                    "retry 1 under the backoff after {why}; {}",
                    policy.describe()
                ),
                &closed,
            )
            .await?;
            Ok(())
        }
    }
}

/// FERRY-RECONNECT-7, FERRY-SUBSCRIBE-5: a goodbye with a retry hint and close 1012; the
/// client comes back after the hint and resumes its channel from the last delivered event.
async fn goodbye_then_resume(h: &mut Harness) -> CaseResult {
    let hint = 300;
    let policy = Policy::SHORT;
    let spec = WelcomeSpec::new(policy);
    let mut conn = h.subscribed_session(&spec, CHANNEL, HANDLER).await?;
    for seq in 1..=2 {
        conn.send(event(CHANNEL, EPOCH, seq, json!({"n": seq})))
            .await?;
    }
    h.report(
        |r| r.kind() == "delivered" && r.u64("seq") == Some(2),
        REACT,
        "events 1 and 2 delivered",
    )
    .await?;
    conn.send(goodbye("shutdown", Some(hint))).await?;
    let closed = conn.close(1012, "service_restart").await?;
    let exact = Duration::from_millis(hint);
    h.retry_ticket(
        closed,
        (exact, exact),
        &format!("the reconnect after a goodbye with retry_after_ms {hint} and close 1012: wait the hint (FERRY-RECONNECT-7)"),
        "close 1012",
    )
    .await?;
    let mut conn = h.accepted("the reconnect's connection").await?;
    h.welcome(&mut conn, &spec).await?;
    let expected = format!(
        "after the restart, a subscribe to {CHANNEL} with from = {{epoch {EPOCH}, seq 2}}, the last event delivered (FERRY-SUBSCRIBE-5)"
    );
    let subscribe = h.expect_subscribe(&mut conn, CHANNEL, &expected).await?;
    ensure(subscribe["from"] == position(EPOCH, 2), expected, || {
        format!("{}: {subscribe}", conn.link())
    })
}

/// FERRY-RECONNECT-9, FERRY-RECONNECT-1: the application's close ends the session with 1000,
/// stops the client for good, and the client says it was requested. The close comes on a
/// settled session (a subscribe answered and reported), so that nothing the server sent is
/// still unread when the client closes its socket.
async fn application_close(h: &mut Harness) -> CaseResult {
    let mut conn = h
        .subscribed_session(&WelcomeSpec::new(Policy::SHORT), CHANNEL, HANDLER)
        .await?;
    h.command(json!({"type": "close"})).await?;
    let asked = Instant::now();
    let expected = "a close frame with code 1000 normal_closure: the session ends at the client's request (FERRY-RECONNECT-1)";
    let closing = loop {
        match conn.recv(REACT).await? {
            None => {
                return Err(Finding::fail(
                    expected,
                    format!(
                        "{} carried no close frame within {} ms of the close command",
                        conn.link(),
                        ms(REACT)
                    ),
                ));
            }
            Some(ClientFrame {
                kind: FrameKind::Message { .. },
                ..
            }) => {}
            Some(frame) => break frame.kind,
        }
    };
    ensure(
        matches!(
            closing,
            FrameKind::Close {
                code: Some(1000),
                ..
            }
        ),
        expected,
        || format!("{} carried {}", conn.link(), closing.describe()),
    )?;
    let report =
        "a stopped report with reason requested and close_code null (FERRY-RECONNECT-9: say why)";
    h.expect_stopped("requested", Some(None), report).await?;
    h.no_ticket(
        QUIET,
        asked,
        "no reconnect after the application closed the client",
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Holds and presence

/// How long the presence and hold cases' welcomes say a dropped session stays present.
const LEAVE_AFTER_MS: u64 = 5_000;

/// A welcome of a server with presence and exclusive namespaces, under the short policy.
fn presence_spec() -> WelcomeSpec {
    WelcomeSpec {
        presence_leave_after_ms: Some(LEAVE_AFTER_MS),
        ..WelcomeSpec::new(Policy::SHORT)
    }
}

/// Checks the `hold` of a subscribe: `{}` without a fence, or `{"fence": n}`.
fn check_hold(conn: &Conn, subscribe: &Value, fence: Option<u64>, expected: &str) -> CaseResult {
    let wanted = match fence {
        Some(fence) => json!({"fence": fence}),
        None => json!({}),
    };
    ensure(subscribe["hold"] == wanted, expected, || {
        format!("{}: {subscribe}", conn.link())
    })
}

/// The subscribed report of `CHANNEL` after a hold of `fence` was granted; a fence it carries
/// must be that one.
async fn expect_held(h: &mut Harness, fence: u64) -> CaseResult {
    let report = h
        .report(
            |r| r.kind() == "subscribed" && r.str("channel") == Some(CHANNEL),
            REACT,
            &format!("a subscribed report for {CHANNEL} once the server granted the hold"),
        )
        .await?;
    ensure(
        report.json.get("fence").is_none_or(|f| *f == json!(fence)),
        format!(
            "a subscribed report whose fence, when it carries one, is the fence {fence} the server granted"
        ),
        || report.line(),
    )
}

/// Drops the session and waits for the reconnect's subscribe of `CHANNEL`.
async fn resubscribe_after_drop(
    h: &mut Harness,
    spec: &WelcomeSpec,
    conn: Conn,
    expected: &str,
) -> Result<(Conn, Value), Finding> {
    conn.drop_tcp().await;
    let mut conn = h
        .reconnected(
            spec,
            window(&spec.reconnect, 1)?.1 + h.tolerance + REACT,
            "after the session dropped",
        )
        .await?;
    let subscribe = h.expect_subscribe(&mut conn, CHANNEL, expected).await?;
    Ok((conn, subscribe))
}

/// FERRY-HOLD-5: the first subscribe asks for the hold without a fence; every re-subscribe
/// after a reconnect carries the fence of the last hold granted, the newest one once a
/// re-subscribe was granted again.
async fn hold_fence_resent(h: &mut Harness) -> CaseResult {
    let spec = presence_spec();
    let mut conn = h.establish(&spec).await?;
    h.subscribe_with(CHANNEL, HANDLER, json!({"hold": true}))
        .await?;
    let first = format!(
        "a subscribe to {CHANNEL} with hold: {{}} and no fence, which the application asked for holding the channel: the client held it never before (FERRY-HOLD-1, FERRY-HOLD-5)"
    );
    let subscribe = h.expect_subscribe(&mut conn, CHANNEL, &first).await?;
    check_hold(&conn, &subscribe, None, &first)?;
    conn.send(subscribed_holding(&subscribe, EPOCH, 0, None, 7))
        .await?;
    expect_held(h, 7).await?;
    for (kept, granted) in [(7, 12), (12, 13)] {
        let expected = format!(
            "after the reconnect, a subscribe to {CHANNEL} with hold: {{\"fence\": {kept}}}, the fence of the last hold the server granted (FERRY-HOLD-5)"
        );
        let (next, subscribe) = resubscribe_after_drop(h, &spec, conn, &expected).await?;
        conn = next;
        check_hold(&conn, &subscribe, Some(kept), &expected)?;
        conn.send(subscribed_holding(
            &subscribe,
            EPOCH,
            0,
            Some(recovery(true, 0, None)),
            granted,
        ))
        .await?;
        expect_held(h, granted).await?;
    }
    Ok(())
}

/// FERRY-HOLD-5: a hold asked for but never granted (the session dropped before the reply)
/// gives no fence to send: the re-subscribe asks with hold: {} again.
async fn hold_never_granted(h: &mut Harness) -> CaseResult {
    let spec = presence_spec();
    let mut conn = h.establish(&spec).await?;
    h.subscribe_with(CHANNEL, HANDLER, json!({"hold": true}))
        .await?;
    let first = format!(
        "a subscribe to {CHANNEL} with hold: {{}} and no fence, which the application asked for holding the channel (FERRY-HOLD-1)"
    );
    let subscribe = h.expect_subscribe(&mut conn, CHANNEL, &first).await?;
    check_hold(&conn, &subscribe, None, &first)?;
    // No reply: the session drops with the subscribe unanswered.
    let expected = format!(
        "after the reconnect, a subscribe to {CHANNEL} with hold: {{}} and still no fence: the server granted no hold, so the client has no fence to send (FERRY-HOLD-5)"
    );
    let (conn, subscribe) = resubscribe_after_drop(h, &spec, conn, &expected).await?;
    check_hold(&conn, &subscribe, None, &expected)?;
    let mut conn = conn;
    conn.send(subscribed_holding(&subscribe, EPOCH, 0, None, 4))
        .await?;
    expect_held(h, 4).await
}

/// FERRY-HOLD-5, FERRY-HOLD-4: a hold ends with its unsubscribe, so a later subscribe with
/// hold sends no fence, and the re-subscribe after a reconnect carries the new hold's fence,
/// not the old one's.
async fn hold_forgotten_after_unsubscribe(h: &mut Harness) -> CaseResult {
    let spec = presence_spec();
    let mut conn = h.establish(&spec).await?;
    h.subscribe_with(CHANNEL, HANDLER, json!({"hold": true}))
        .await?;
    let first = format!(
        "a subscribe to {CHANNEL} with hold: {{}}, which the application asked for holding the channel (FERRY-HOLD-1)"
    );
    let subscribe = h.expect_subscribe(&mut conn, CHANNEL, &first).await?;
    check_hold(&conn, &subscribe, None, &first)?;
    conn.send(subscribed_holding(&subscribe, EPOCH, 0, None, 5))
        .await?;
    expect_held(h, 5).await?;
    h.unsubscribe(CHANNEL, HANDLER).await?;
    let unsubscribe = h
        .expect_unsubscribe(
            &mut conn,
            CHANNEL,
            &format!(
                "an unsubscribe from {CHANNEL}, once the application removed its only handler"
            ),
        )
        .await?;
    conn.send(unsubscribed(&unsubscribe)).await?;
    h.adapter.settle(Duration::from_millis(200)).await?;
    h.subscribe_with(CHANNEL, HANDLER, json!({"hold": true}))
        .await?;
    let again = format!(
        "a new subscribe to {CHANNEL} with hold: {{}} and no fence: the hold of fence 5 ended with the unsubscribe (FERRY-HOLD-4), so this is a new hold, not one taken back (FERRY-HOLD-5)"
    );
    let subscribe = h.expect_subscribe(&mut conn, CHANNEL, &again).await?;
    check_hold(&conn, &subscribe, None, &again)?;
    conn.send(subscribed_holding(&subscribe, EPOCH, 0, None, 6))
        .await?;
    expect_held(h, 6).await?;
    let expected = format!(
        "after the reconnect, a subscribe to {CHANNEL} with hold: {{\"fence\": 6}}, the fence of the hold granted after the new subscribe, not 5, that of the hold given up (FERRY-HOLD-5)"
    );
    let (conn, subscribe) = resubscribe_after_drop(h, &spec, conn, &expected).await?;
    check_hold(&conn, &subscribe, Some(6), &expected)
}

/// FERRY-HOLD-5, FERRY-RECONNECT-9: a client holding a channel that is closed with 4412 does
/// not reconnect by itself and tells its application.
async fn hold_taken_over(h: &mut Harness) -> CaseResult {
    let spec = presence_spec();
    let mut conn = h.establish(&spec).await?;
    h.subscribe_with(CHANNEL, HANDLER, json!({"hold": true}))
        .await?;
    let first = format!(
        "a subscribe to {CHANNEL} with hold, which the application asked for holding the channel (FERRY-HOLD-1)"
    );
    let subscribe = h.expect_subscribe(&mut conn, CHANNEL, &first).await?;
    conn.send(subscribed_holding(&subscribe, EPOCH, 0, None, 3))
        .await?;
    expect_held(h, 3).await?;
    let reference = conn.close(4412, "taken_over").await?;
    h.no_ticket(
        QUIET,
        reference,
        "no reconnect after close 4412 taken_over of a session holding a channel: another session took the hold over (FERRY-HOLD-5)",
    )
    .await?;
    h.expect_stopped(
        "closed",
        Some(Some(4412)),
        "a stopped report with reason closed and close_code 4412: the application is told that the hold was taken over (FERRY-HOLD-5, FERRY-RECONNECT-9)",
    )
    .await
}

/// A member as a member_page or a members report carries it.
fn member(user: &str, sessions: u64, info: Option<Value>) -> Value {
    let mut member = json!({"user": user, "sessions": sessions});
    if let Some(info) = info {
        member["info"] = info;
    }
    member
}

/// Members as a comparable list: ordered by user, each with user, sessions and info (when
/// present) only.
fn member_list(members: &Value) -> Vec<Value> {
    let mut list: Vec<Value> = members
        .as_array()
        .map(|m| {
            m.iter()
                .map(|m| {
                    let info = m.get("info").filter(|i| !i.is_null()).cloned();
                    member(
                        m["user"].as_str().unwrap_or_default(),
                        m["sessions"].as_u64().unwrap_or_default(),
                        info,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    list.sort_by(|a, b| a["user"].as_str().cmp(&b["user"].as_str()));
    list
}

/// The members report of `CHANNEL` equal to `members`, within [`REACT`]; `why` says how the
/// rule gives those members.
async fn expect_members_report(h: &mut Harness, members: &[Value], why: &str) -> CaseResult {
    let wanted = member_list(&Value::Array(members.to_vec()));
    let expected = format!(
        "a members report of {CHANNEL} listing {} ({why}; FERRY-PRESENCE-6)",
        Value::Array(wanted.clone())
    );
    h.report(
        |r| {
            r.kind() == "members"
                && r.str("channel") == Some(CHANNEL)
                && member_list(&r.json["members"]) == wanted
        },
        REACT,
        &expected,
    )
    .await
    .map(|_| ())
}

/// The next members request of `CHANNEL`, which must carry `after` (absent for a first page).
async fn expect_page_request(
    h: &mut Harness,
    conn: &mut Conn,
    after: Option<&str>,
    expected: &str,
) -> Result<Value, Finding> {
    let request = h.expect_members(conn, CHANNEL, expected).await?;
    let holds = match after {
        Some(after) => request["after"] == after,
        None => request.get("after").is_none(),
    };
    ensure(holds, expected, || format!("{}: {request}", conn.link()))?;
    Ok(request)
}

/// FERRY-PRESENCE-6: a client tracking members reads every page after the subscribed reply,
/// following next with after, applies on top the presence events that crossed the pages (a
/// join the first page already lists, a leave of a member the first page lists, a join
/// between the pages that only the event tells and one the second page lists too), then each
/// live event.
async fn presence_pages_and_events_cross(h: &mut Harness) -> CaseResult {
    let spec = presence_spec();
    let mut conn = h.establish(&spec).await?;
    let info = json!({"name": "conformance"});
    h.subscribe_with(CHANNEL, HANDLER, json!({"members": true, "info": info}))
        .await?;
    let asked = format!(
        "a subscribe to {CHANNEL} carrying the presence info {info} the application gave (FERRY-PRESENCE-5)"
    );
    let subscribe = h.expect_subscribe(&mut conn, CHANNEL, &asked).await?;
    ensure(subscribe["info"] == info, asked, || {
        format!("{}: {subscribe}", conn.link())
    })?;
    conn.send(subscribed(&subscribe, EPOCH, 4, None)).await?;
    let first = expect_page_request(
        h,
        &mut conn,
        None,
        &format!(
            "after the subscribed reply, a members request of {CHANNEL} for the first page, without after (FERRY-PRESENCE-6)"
        ),
    )
    .await?;
    let bob = json!({"name": "Bob"});
    conn.send(presence(
        CHANNEL,
        "join",
        "bob",
        Some(bob.clone()),
        EPOCH,
        4,
    ))
    .await?;
    conn.send(member_page(
        &first,
        json!([
            member("alice", 2, Some(json!({"name": "Alice"}))),
            member("bob", 1, Some(bob.clone())),
        ]),
        Some("bob"),
        EPOCH,
        4,
    ))
    .await?;
    let second = expect_page_request(
        h,
        &mut conn,
        Some("bob"),
        &format!(
            "a members request of {CHANNEL} with after = \"bob\", the first page's next: the client reads every page (FERRY-PRESENCE-6)"
        ),
    )
    .await?;
    let abe = json!({"name": "Abe"});
    conn.send(presence(CHANNEL, "leave", "alice", None, EPOCH, 4))
        .await?;
    conn.send(presence(
        CHANNEL,
        "join",
        "abe",
        Some(abe.clone()),
        EPOCH,
        4,
    ))
    .await?;
    conn.send(presence(CHANNEL, "join", "carol", None, EPOCH, 4))
        .await?;
    let dave = json!({"name": "Dave"});
    conn.send(member_page(
        &second,
        json!([
            member("carol", 1, None),
            member("dave", 3, Some(dave.clone()))
        ]),
        None,
        EPOCH,
        4,
    ))
    .await?;
    let mut members = vec![
        member("abe", 1, Some(abe)),
        member("bob", 1, Some(bob)),
        member("carol", 1, None),
        member("dave", 3, Some(dave)),
    ];
    expect_members_report(
        h,
        &members,
        "the two pages, with the events since the subscribed reply applied on top in order: join bob (listed already), leave alice (listed on the first page), join abe (between the pages, before the second page's first user, so on no page), join carol (between the pages, listed on the second)",
    )
    .await?;
    conn.send(presence(CHANNEL, "leave", "dave", None, EPOCH, 4))
        .await?;
    members.retain(|m| m["user"] != "dave");
    expect_members_report(
        h,
        &members,
        "the members read, after the live leave of dave",
    )
    .await?;
    let erin = json!({"name": "Erin"});
    conn.send(presence(
        CHANNEL,
        "join",
        "erin",
        Some(erin.clone()),
        EPOCH,
        4,
    ))
    .await?;
    members.push(member("erin", 1, Some(erin)));
    expect_members_report(h, &members, "the members read, after the live join of erin").await
}

/// FERRY-PRESENCE-6: after a reconnect, the resumed subscription's subscribed reply starts a
/// new read of every page; the members reported are the new pages' with the events since
/// that reply on top, nothing kept from before the reconnect.
async fn presence_read_again(h: &mut Harness) -> CaseResult {
    let spec = presence_spec();
    let mut conn = h.establish(&spec).await?;
    h.subscribe_with(CHANNEL, HANDLER, json!({"members": true}))
        .await?;
    let subscribe = h
        .expect_subscribe(
            &mut conn,
            CHANNEL,
            &format!("a subscribe to {CHANNEL}, which the application asked for"),
        )
        .await?;
    conn.send(subscribed(&subscribe, EPOCH, 0, None)).await?;
    let first = expect_page_request(
        h,
        &mut conn,
        None,
        &format!(
            "after the subscribed reply, a members request of {CHANNEL} for the first page, without after (FERRY-PRESENCE-6)"
        ),
    )
    .await?;
    conn.send(member_page(
        &first,
        json!([member("alice", 1, None)]),
        None,
        EPOCH,
        0,
    ))
    .await?;
    expect_members_report(h, &[member("alice", 1, None)], "the one page read").await?;
    conn.send(presence(CHANNEL, "join", "bob", None, EPOCH, 0))
        .await?;
    expect_members_report(
        h,
        &[member("alice", 1, None), member("bob", 1, None)],
        "the page read, after the live join of bob",
    )
    .await?;
    let (mut conn, subscribe) = resubscribe_after_drop(
        h,
        &spec,
        conn,
        &format!("after the reconnect, a subscribe to {CHANNEL} (FERRY-SUBSCRIBE-5)"),
    )
    .await?;
    conn.send(subscribed(
        &subscribe,
        EPOCH,
        0,
        Some(recovery(true, 0, None)),
    ))
    .await?;
    let first = expect_page_request(
        h,
        &mut conn,
        None,
        &format!(
            "after the resumed subscription's subscribed reply, a members request of {CHANNEL} for the first page again, without after: a client reads every page after each subscribed reply, a resume's included (FERRY-PRESENCE-6)"
        ),
    )
    .await?;
    // The leave crosses the page read before it was recorded.
    conn.send(presence(CHANNEL, "leave", "alice", None, EPOCH, 0))
        .await?;
    conn.send(member_page(
        &first,
        json!([member("alice", 1, None), member("bob", 1, None)]),
        Some("bob"),
        EPOCH,
        0,
    ))
    .await?;
    let second = expect_page_request(
        h,
        &mut conn,
        Some("bob"),
        &format!(
            "a members request of {CHANNEL} with after = \"bob\", the first page's next (FERRY-PRESENCE-6)"
        ),
    )
    .await?;
    conn.send(member_page(
        &second,
        json!([member("carol", 2, Some(json!({"name": "Carol"})))]),
        None,
        EPOCH,
        0,
    ))
    .await?;
    expect_members_report(
        h,
        &[
            member("bob", 1, None),
            member("carol", 2, Some(json!({"name": "Carol"}))),
        ],
        "the pages read after the resume, with the leave of alice that came after the resume's subscribed reply applied on top",
    )
    .await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use ferry_protocol::tables::CLOSE_CODES;

    use super::*;
    use crate::catalogue::{Mode, of_mode};

    #[test]
    fn every_client_case_has_a_body_and_every_body_a_case() {
        let ids: Vec<&str> = of_mode(Mode::Client).map(|c| c.id.as_str()).collect();
        let missing: Vec<&str> = ids
            .iter()
            .copied()
            .filter(|id| body_for(id).is_none())
            .collect();
        assert_eq!(missing, Vec::<&str>::new(), "cases without a body");
        let unused: Vec<&str> = BODIES
            .iter()
            .map(|(key, _)| *key)
            .filter(|key| match key.strip_suffix('*') {
                Some(prefix) => !ids.iter().any(|id| id.starts_with(prefix)),
                None => !ids.contains(key),
            })
            .collect();
        assert_eq!(unused, Vec::<&str>::new(), "bodies without a case");
        let keys: BTreeSet<&str> = BODIES.iter().map(|(key, _)| *key).collect();
        assert_eq!(keys.len(), BODIES.len(), "a body is registered twice");
    }

    #[test]
    fn an_exact_entry_wins_over_its_family() {
        let exact = body_for("client.reconnect.attempts_exhausted").expect("registered");
        let family = body_for("client.reconnect.backoff_delays").expect("registered");
        assert!(!std::ptr::fn_addr_eq(exact, family));
    }

    #[test]
    fn every_required_feature_is_a_feature_of_the_contract() {
        for case in of_mode(Mode::Client) {
            for name in &case.requires {
                assert!(
                    super::super::harness::feature(name).is_ok(),
                    "{}: unknown feature {name}",
                    case.id
                );
            }
        }
    }

    #[test]
    fn every_row_of_the_close_code_table_has_a_case() {
        let covered: BTreeSet<u64> = of_mode(Mode::Client)
            .filter(|c| c.id.starts_with("client.close."))
            .filter_map(|c| c.param_u64("code"))
            .collect();
        for row in CLOSE_CODES {
            assert!(
                covered.contains(&u64::from(row.code)),
                "close code {} ({}) has no client.close.* case",
                row.code,
                row.name
            );
        }
        assert!(
            covered.iter().any(|code| lookup(*code as u16).is_none()),
            "no case covers a code missing from the table"
        );
    }

    #[test]
    fn every_case_parameter_reads() {
        // The bodies read their parameters with serde; check each entry's shapes here so a
        // typo in client.toml fails a unit test, not a run.
        for case in of_mode(Mode::Client) {
            let value = serde_json::to_value(&case.params).expect("TOML is JSON");
            if let Some(policy) = value.get("reconnect") {
                let policy: Policy = serde_json::from_value(policy.clone())
                    .unwrap_or_else(|e| panic!("{}: reconnect: {e}", case.id));
                policy
                    .backoff()
                    .unwrap_or_else(|e| panic!("{}: reconnect: {e:?}", case.id));
            }
            if let Some(refuse) = value.get("refuse") {
                serde_json::from_value::<Refusal>(refuse.clone())
                    .unwrap_or_else(|e| panic!("{}: refuse: {e}", case.id));
            }
            if let Some(send) = value.get("send").filter(|s| s.is_string()) {
                serde_json::from_value::<CloseSend>(send.clone())
                    .unwrap_or_else(|e| panic!("{}: send: {e}", case.id));
            }
            if let Some(goodbye) = value.get("goodbye") {
                serde_json::from_value::<GoodbyeParam>(goodbye.clone())
                    .unwrap_or_else(|e| panic!("{}: goodbye: {e}", case.id));
            }
            if let Some(frame) = value.get("frame") {
                let text = frame
                    .as_str()
                    .unwrap_or_else(|| panic!("{}: frame: not a string", case.id));
                assert!(
                    refusal(text).is_some(),
                    "{}: frame: ferry-protocol's codec accepts it as a server message",
                    case.id
                );
            }
            if let Some(head) = value.get("head") {
                serde_json::from_value::<Head>(head.clone())
                    .unwrap_or_else(|e| panic!("{}: head: {e}", case.id));
            }
        }
    }
}
