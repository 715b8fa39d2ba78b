//! Exclusive channels: one publisher at a time (`--exclusive-channel` for a namespace that
//! refuses a second hold, `--takeover-channel` for one where a second hold takes over, with
//! `--second-token` for a second user). A granted hold carries a fence larger than every
//! earlier one; a second hold is refused with held or takes over and closes the holder with
//! 4412; the holder's own user takes its hold back with its fence; only the holder's publishes
//! are stored, and none of a holder that lost its hold; a hold ends with its session's
//! unsubscribe or end (FERRY-HOLD-1 to FERRY-HOLD-4, FERRY-PUBLISH-4).

use std::time::Duration;

use ferry_protocol::{ErrorCode, ServerMessage};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::presence::{subscribe_with, subscribed_with, unsubscribe};
use super::{cite, param, verdict};
use crate::case::{CaseResult, Finding};
use crate::server::checks::{a, close_name, error_info_problems, pos};
use crate::server::ctx::{Ctx, REPLY_WAIT, Who, ms_between, setup, subscribe};
use crate::server::driver::{Got, Session};

/// The fence of a granted hold, or a failure when the reply is not one.
fn fence_of(reply: &ServerMessage, id: &str, expected: &str) -> Result<u64, Finding> {
    match reply {
        ServerMessage::Subscribed(s) if s.id.as_str() == id => match &s.hold {
            Some(hold) => Ok(hold.fence.get()),
            None => Err(Finding::fail(
                expected,
                format!("{}, without hold", a(reply)),
            )),
        },
        other => Err(Finding::fail(expected, a(other))),
    }
}

/// Subscribes `session` to `channel` asking to hold it (with `fence` if given); returns the
/// subscribe's id and reply.
async fn ask_hold(
    session: &mut Session,
    channel: &str,
    fence: Option<u64>,
    expected: &str,
) -> Result<(String, ServerMessage), Finding> {
    let hold = match fence {
        Some(fence) => json!({ "fence": fence }),
        None => json!({}),
    };
    subscribe_with(session, channel, json!({ "hold": hold }), expected).await
}

/// A hold granted as a set-up step: its fence.
async fn held_by(session: &mut Session, channel: &str) -> Result<u64, Finding> {
    let subscribed = subscribed_with(session, channel, json!({ "hold": {} })).await?;
    match subscribed.hold {
        Some(hold) => Ok(hold.fence.get()),
        None => Err(Finding::fail(
            format!(
                "a subscribe with hold to the exclusive channel {channel} answered subscribed with hold.fence (FERRY-HOLD-1)"
            ),
            "a subscribed reply without hold".to_owned(),
        )),
    }
}

/// Fails unless `reply` is the error of `id` with `code` and the table's retryable flag.
fn expect_error(reply: &ServerMessage, id: &str, code: ErrorCode, expected: &str) -> CaseResult {
    match reply {
        ServerMessage::Error(e)
            if e.id.as_deref().map(String::as_str) == Some(id) && e.error.code == code =>
        {
            verdict(expected, error_info_problems(&e.error))
        }
        other => Err(Finding::fail(expected, a(other))),
    }
}

/// Publishes `payload` to `channel` on `session` under `key`; returns the id and the reply.
async fn publish(
    session: &mut Session,
    channel: &str,
    key: &str,
    payload: &Value,
    expected: &str,
) -> Result<(String, ServerMessage), Finding> {
    let id = session.id("pub");
    let request = json!({ "type": "publish", "id": id, "channel": channel, "idempotency_key": key, "payload": payload });
    let reply = session.request(&request, REPLY_WAIT, expected).await?;
    Ok((id, reply))
}

/// Publishes on `session`, which must be acknowledged: the message id.
async fn published(
    ctx: &Ctx,
    session: &mut Session,
    channel: &str,
    key: &str,
    expected: &str,
) -> Result<ferry_protocol::Published, Finding> {
    let payload = ctx.options().presence_payload.clone();
    match publish(session, channel, key, &payload, expected).await? {
        (_, ServerMessage::Published(ack)) => Ok(ack),
        (_, other) => Err(Finding::fail(expected, a(&other))),
    }
}

/// Waits for `session` to be closed with 4412 (taken_over).
async fn closed_4412(session: &mut Session, expected: &str) -> CaseResult {
    let (_, end) = session.until_end(REPLY_WAIT).await;
    match end {
        Got::Closed {
            code: Some(4412), ..
        } => Ok(()),
        Got::Silent(_) => Err(Finding::fail(
            expected,
            format!(
                "the session is still open {} ms later",
                REPLY_WAIT.as_millis()
            ),
        )),
        other => Err(Finding::fail(expected, other.describe())),
    }
}

/// The channel a hold case uses: of `--exclusive-channel` (refuse) or `--takeover-channel`.
fn channel_of(ctx: &Ctx, namespace: &str) -> Result<String, Finding> {
    match namespace {
        "takeover" => ctx.takeover_channel(0),
        _ => ctx.exclusive_channel(0),
    }
}

/// A subscribe with hold to an exclusive channel is answered subscribed with hold.fence; a
/// subscribe without hold gets no hold and no fence, and the channel stays the holder's: the
/// holder publishes (FERRY-HOLD-1).
pub(super) async fn granted_with_fence(ctx: Ctx) -> CaseResult {
    let channel = ctx.exclusive_channel(0)?;
    let mut holder = ctx.session(Who::Main).await?;
    let expected = format!(
        "a subscribe with hold to the exclusive channel {channel} answered subscribed with hold.fence ({})",
        cite(&ctx)
    );
    let (id, reply) = ask_hold(&mut holder, &channel, None, &expected).await?;
    fence_of(&reply, &id, &expected)?;
    let mut reader = ctx.session(Who::Second).await?;
    let plain = subscribe(&mut reader, &channel).await?;
    if plain.hold.is_some() {
        return Err(Finding::fail(
            format!(
                "a subscribe without hold answered subscribed without hold: hold is present exactly when the subscribe asked to hold ({})",
                cite(&ctx)
            ),
            a(&ServerMessage::Subscribed(plain)),
        ));
    }
    let expected = format!(
        "the holder's publish to {channel} acknowledged ({})",
        cite(&ctx)
    );
    published(&ctx, &mut holder, &channel, &ctx.key("holder"), &expected).await?;
    Ok(())
}

/// A hold ends with its session's unsubscribe, close frame or dropped connection (the `end`
/// param): another user's hold of the refusing namespace is then granted, with a larger fence
/// (FERRY-HOLD-4, FERRY-HOLD-1). The second hold is asked again while it is refused with held,
/// for at most half of presence.leave_after_ms (at least the tolerance, at most 5 s; 5 s when
/// the welcome advertises no presence), so that a hold kept until it lapses is not taken for
/// one that ended.
pub(super) async fn ends_with_session(ctx: Ctx) -> CaseResult {
    let end = param(&ctx, "end")?;
    let channel = ctx.exclusive_channel(0)?;
    let mut first = ctx.session(Who::Main).await?;
    // An application with exclusive namespaces and no presence one advertises no
    // leave_after_ms: the second hold is then asked again for 5 s at most.
    let lapse = first
        .welcome()
        .presence
        .as_ref()
        .map_or(2 * REPLY_WAIT, |p| {
            Duration::from_millis(p.leave_after_ms.get())
        });
    let fence = held_by(&mut first, &channel).await?;
    let ended = Instant::now();
    match end {
        "unsubscribe" => unsubscribe(&mut first, &channel).await.map_err(setup)?,
        "close_frame" => drop(first),
        _ => first.cut(),
    }
    let within = (lapse / 2).min(REPLY_WAIT).max(ctx.tolerance());
    let mut second = ctx.session(Who::Second).await?;
    let expected = format!(
        "once the holder's session ended its hold ({}), another user's hold granted within {} ms with a fence larger than the first hold's {fence} ({})",
        end.replace('_', " "),
        within.as_millis(),
        cite(&ctx)
    );
    let deadline = ended + within;
    loop {
        let (id, reply) = ask_hold(&mut second, &channel, None, &expected).await?;
        match &reply {
            ServerMessage::Error(e)
                if e.error.code == ErrorCode::Held && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ => {
                let next = fence_of(&reply, &id, &expected).map_err(|finding| match finding {
                    Finding::Fail { expected, observed } => Finding::fail(
                        expected,
                        format!(
                            "{observed}, {} ms after the first hold's session ended",
                            ms_between(ended, Instant::now())
                        ),
                    ),
                    other => other,
                })?;
                if next <= fence {
                    return Err(Finding::fail(
                        expected,
                        format!("the second hold's fence is {next}, the first's {fence}"),
                    ));
                }
                return Ok(());
            }
        }
    }
}

/// In a namespace that refuses a second hold, a hold asked while another session holds the
/// channel is refused with held: without a fence, with the holder's fence but another user,
/// and from the holder's user with a fence that is not the holder's; the holder keeps its hold
/// and its session (FERRY-HOLD-2).
pub(super) async fn refused_while_held(ctx: Ctx) -> CaseResult {
    let channel = ctx.exclusive_channel(0)?;
    let mut holder = ctx.session(Who::Main).await?;
    let fence = held_by(&mut holder, &channel).await?;
    let mut other = ctx.session(Who::Second).await?;
    let mut same = ctx.session(Who::Main).await?;
    for (who, ask, what) in [
        (Who::Second, None, "another user, without a fence"),
        (
            Who::Second,
            Some(fence),
            "another user, with the holder's fence",
        ),
        (
            Who::Main,
            Some(fence + 1),
            "the holder's user, with a fence that is not the holder's",
        ),
    ] {
        let session = if who == Who::Second {
            &mut other
        } else {
            &mut same
        };
        let expected = format!(
            "a hold of {channel} asked by {what} while another session holds it, in a namespace declaring exclusive refuse, answered with an error with its id and code held ({})",
            cite(&ctx)
        );
        let (id, reply) = ask_hold(session, &channel, ask, &expected).await?;
        expect_error(&reply, &id, ErrorCode::Held, &expected)?;
    }
    let expected = format!(
        "the holder still holds {channel} after the refused holds: its publish acknowledged ({})",
        cite(&ctx)
    );
    published(&ctx, &mut holder, &channel, &ctx.key("kept"), &expected).await?;
    Ok(())
}

/// The holder's user takes its hold back with the holder's fence (a client reconnecting while
/// the server still holds its old session): the hold is granted with a larger fence, the old
/// session is closed with 4412, and the new one publishes; in both kinds of exclusive namespace
/// (the `namespace` param) (FERRY-HOLD-2, FERRY-HOLD-1).
pub(super) async fn reclaim_with_fence(ctx: Ctx) -> CaseResult {
    let channel = channel_of(&ctx, param(&ctx, "namespace")?)?;
    let mut old = ctx.session(Who::Main).await?;
    let fence = held_by(&mut old, &channel).await?;
    let mut new = ctx.session(Who::Main).await?;
    let expected = format!(
        "a hold of {channel} asked by the holder's user with the holder's fence {fence} granted, with a larger fence ({})",
        cite(&ctx)
    );
    let (id, reply) = ask_hold(&mut new, &channel, Some(fence), &expected).await?;
    let next = fence_of(&reply, &id, &expected)?;
    if next <= fence {
        return Err(Finding::fail(
            expected,
            format!("the fence {next}, not larger than {fence}"),
        ));
    }
    let expected = format!(
        "the session whose hold passed to another closed with 4412 (taken_over) ({})",
        cite(&ctx)
    );
    closed_4412(&mut old, &expected).await?;
    let expected = format!(
        "the publish of the session that took its hold back acknowledged ({})",
        cite(&ctx)
    );
    published(&ctx, &mut new, &channel, &ctx.key("reclaimed"), &expected).await?;
    Ok(())
}

/// In a namespace where a second hold takes over, another user's hold is granted with a larger
/// fence and the previous holder's session is closed with 4412; the new holder publishes
/// (FERRY-HOLD-2, FERRY-HOLD-1).
pub(super) async fn take_over(ctx: Ctx) -> CaseResult {
    let channel = ctx.takeover_channel(0)?;
    let mut first = ctx.session(Who::Main).await?;
    let fence = held_by(&mut first, &channel).await?;
    let mut second = ctx.session(Who::Second).await?;
    let expected = format!(
        "a hold of {channel} asked by another user, in a namespace declaring exclusive take_over, granted with a fence larger than the holder's {fence} ({})",
        cite(&ctx)
    );
    let (id, reply) = ask_hold(&mut second, &channel, None, &expected).await?;
    let next = fence_of(&reply, &id, &expected)?;
    if next <= fence {
        return Err(Finding::fail(
            expected,
            format!("the fence {next}, not larger than {fence}"),
        ));
    }
    let expected = format!(
        "the previous holder's session closed with 4412 (taken_over) ({})",
        cite(&ctx)
    );
    closed_4412(&mut first, &expected).await?;
    let expected = format!("the new holder's publish acknowledged ({})", cite(&ctx));
    published(&ctx, &mut second, &channel, &ctx.key("taker"), &expected).await?;
    Ok(())
}

/// Only the session holding an exclusive channel may publish to it over WebSocket: another
/// session's publish gets held, before its payload is checked and before its key is looked up
/// (FERRY-PUBLISH-4), as does a publish to a channel nobody holds; a backend publish over HTTP
/// is not held back; the history holds exactly the holder's and the backend's events
/// (FERRY-HOLD-3).
pub(super) async fn publish_needs_hold(ctx: Ctx) -> CaseResult {
    let channel = ctx.exclusive_channel(0)?;
    let unheld = ctx.exclusive_channel(1)?;
    let mut holder = ctx.session(Who::Main).await?;
    let head = subscribed_with(&mut holder, &channel, json!({ "hold": {} })).await?;
    if head.hold.is_none() {
        return Err(Finding::fail(
            format!(
                "a subscribe with hold answered with hold.fence ({})",
                cite(&ctx)
            ),
            a(&ServerMessage::Subscribed(head)),
        ));
    }
    let mut other = ctx.session(Who::Second).await?;
    subscribe(&mut other, &channel).await?;
    let payload = ctx.options().presence_payload.clone();
    let stored_key = ctx.key("holder");
    let expected = format!(
        "the holder's publish to {channel} acknowledged ({})",
        cite(&ctx)
    );
    let ack = published(&ctx, &mut holder, &channel, &stored_key, &expected).await?;
    let mut tries: Vec<(&str, String, Value, String)> = vec![
        (
            "a publish from a session subscribed without holding the channel",
            channel.clone(),
            payload.clone(),
            ctx.key("other"),
        ),
        (
            "a publish repeating the key of the holder's stored publish",
            channel.clone(),
            payload.clone(),
            stored_key.clone(),
        ),
        (
            "a publish to a channel nobody holds",
            unheld.clone(),
            payload.clone(),
            ctx.key("unheld"),
        ),
    ];
    if let Some(invalid) = ctx.options().presence_invalid_payload.clone() {
        tries.push((
            "a publish whose payload breaks the namespace's schema",
            channel.clone(),
            invalid,
            ctx.key("invalid"),
        ));
    }
    for (what, to, body, key) in &tries {
        let expected = format!(
            "{what}, on a session that does not hold {to}, answered with an error with its id and code held: the hold is checked before the payload and the key ({})",
            cite(&ctx)
        );
        let (id, reply) = publish(&mut other, to, key, body, &expected).await?;
        expect_error(&reply, &id, ErrorCode::Held, &expected)?;
    }
    let backend = ctx
        .http
        .publish(&channel, &ctx.key("backend"), &payload)
        .await?;
    let page = ctx
        .http
        .history_page(&format!(
            "channel={channel}&epoch={}&after_seq={}",
            head.position.epoch.as_str(),
            head.position.seq.get()
        ))
        .await?;
    let got: Vec<String> = page
        .events
        .iter()
        .map(|e| e.message_id.as_str().to_owned())
        .collect();
    let want = vec![
        ack.message_id.as_str().to_owned(),
        backend.message_id.as_str().to_owned(),
    ];
    if got != want {
        return Err(Finding::fail(
            format!(
                "the history of {channel} after {} holds the holder's event {} and the backend's {}, and nothing of the refused publishes ({})",
                pos(&head.position),
                want[0],
                want[1],
                cite(&ctx)
            ),
            format!("the events {}", got.join(", ")),
        ));
    }
    Ok(())
}

/// After a take-over, a publish the displaced session sends once the new holder's grant has
/// been answered is not stored: it gets held, or the session is closed with 4412 before any
/// acknowledgement; the new holder's publish is the channel's next event (FERRY-HOLD-3).
pub(super) async fn displaced_publish_not_stored(ctx: Ctx) -> CaseResult {
    let channel = ctx.takeover_channel(0)?;
    let mut first = ctx.session(Who::Main).await?;
    let granted = subscribed_with(&mut first, &channel, json!({ "hold": {} })).await?;
    let mut second = ctx.session(Who::Second).await?;
    let expected = format!("a take-over hold of {channel} granted ({})", cite(&ctx));
    let (id, reply) = ask_hold(&mut second, &channel, None, &expected).await?;
    fence_of(&reply, &id, &expected)?;
    let key = ctx.key("displaced");
    let payload = ctx.options().presence_payload.clone();
    let pub_id = first.id("pub");
    first
        .send(&json!({ "type": "publish", "id": pub_id, "channel": channel, "idempotency_key": key, "payload": payload }))
        .await;
    let expected = format!(
        "the displaced holder's publish, sent after the take-over was granted, answered held or not at all, its session closed with 4412 (FERRY-HOLD-2) ({})",
        cite(&ctx)
    );
    let (before, end) = first.until_end(REPLY_WAIT).await;
    let mut problems = Vec::new();
    for message in &before {
        match message {
            ServerMessage::Published(p) if p.id.as_str() == pub_id => problems.push(format!(
                "the displaced holder's publish was acknowledged at {}",
                pos(&p.position)
            )),
            ServerMessage::Error(e)
                if e.id.as_deref().map(String::as_str) == Some(pub_id.as_str())
                    && e.error.code != ErrorCode::Held =>
            {
                problems.push(format!(
                    "the displaced holder's publish got {} instead of held",
                    e.error.code
                ));
            }
            _ => {}
        }
    }
    match &end {
        Got::Closed {
            code: Some(4412), ..
        } => {}
        other => problems.push(format!(
            "the displaced session {}",
            match other {
                Got::Silent(_) => "stayed open".to_owned(),
                Got::Closed {
                    code: Some(code), ..
                } => format!("closed with {}", close_name(*code)),
                other => other.describe(),
            }
        )),
    }
    verdict(&expected, problems)?;
    let expected = format!("the new holder's publish acknowledged ({})", cite(&ctx));
    let ack = published(&ctx, &mut second, &channel, &ctx.key("taker"), &expected).await?;
    let page = ctx
        .http
        .history_page(&format!(
            "channel={channel}&epoch={}&after_seq={}",
            granted.position.epoch.as_str(),
            granted.position.seq.get()
        ))
        .await?;
    let got: Vec<String> = page
        .events
        .iter()
        .map(|e| e.message_id.as_str().to_owned())
        .collect();
    if got != [ack.message_id.as_str().to_owned()] {
        return Err(Finding::fail(
            format!(
                "the history of {channel} after the first hold's {} holds only the new holder's event {}: nothing the displaced holder sent after the take-over ({})",
                pos(&granted.position),
                ack.message_id.as_str(),
                cite(&ctx)
            ),
            format!("the events {}", got.join(", ")),
        ));
    }
    Ok(())
}
