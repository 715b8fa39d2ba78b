//! Subscribe and unsubscribe, permissions, namespaces and payload schemas
//! (FERRY-SUBSCRIBE-1 to -4, FERRY-CHANNEL-1, -2, -4, -5, FERRY-SECURITY-2, FERRY-RESUME-6).

use std::time::Duration;

use ferry_protocol::{Access, ChannelName, ErrorCode, ServerMessage, permits};
use reqwest::Method;
use serde_json::{Value, json};

use super::{cite, param, param_bool, verdict};
use crate::case::{CaseResult, Finding};
use crate::server::checks::{a, http_error_problems, pos, summary};
use crate::server::ctx::{Ctx, REPLY_WAIT, Who, subscribe};
use crate::server::driver::{Session, is_event_of, seqs};
use crate::server::http::Cred;

/// How long a case listens for events that must not come.
const QUIET: Duration = Duration::from_millis(300);

/// Fails unless `reply` is an error with request id `id` and code `code`.
fn expect_error(reply: &ServerMessage, id: &str, code: ErrorCode, expected: &str) -> CaseResult {
    match reply {
        ServerMessage::Error(e)
            if e.id.as_deref().map(String::as_str) == Some(id) && e.error.code == code =>
        {
            Ok(())
        }
        other => Err(Finding::fail(expected, a(other))),
    }
}

/// A subscribe is answered with subscribed carrying its id and channel, and no recovery
/// since it carried no from (FERRY-SUBSCRIBE-1).
pub(super) async fn subscribe_reply(ctx: Ctx) -> CaseResult {
    let channel = ctx.channel(0);
    let mut session = ctx.session(Who::Main).await?;
    let id = session.id("sub-reply");
    let expected = format!(
        "subscribe {id} on {channel} (the token grants read) answered with subscribed carrying id {id} and channel {channel}, without recovery since it carried no from ({})",
        cite(&ctx)
    );
    let reply = session
        .request(
            &json!({ "type": "subscribe", "id": id, "channel": channel }),
            REPLY_WAIT,
            &expected,
        )
        .await?;
    match &reply {
        ServerMessage::Subscribed(s) if s.channel.as_str() == channel && s.recovery.is_none() => {
            Ok(())
        }
        other => Err(Finding::fail(expected, a(other))),
    }
}

/// After three publishes, subscribed carries the channel's head (the third publish's
/// position), and the next event is delivered with nothing replayed (FERRY-SUBSCRIBE-2).
pub(super) async fn position_is_head(ctx: Ctx) -> CaseResult {
    let channel = ctx.channel(0);
    let mut acks = Vec::new();
    for n in 1..=3 {
        acks.push(
            ctx.http
                .publish(&channel, &ctx.key(&format!("head-{n}")), ctx.payload())
                .await?,
        );
    }
    let head = acks[2].position.clone();
    let mut session = ctx.session(Who::Main).await?;
    let subscribed = subscribe(&mut session, &channel).await?;
    if subscribed.position != head {
        return Err(Finding::fail(
            format!(
                "subscribed carries the channel's head, the position of the last acknowledged publish: {} ({})",
                pos(&head),
                cite(&ctx)
            ),
            format!("subscribed carries {}", pos(&subscribed.position)),
        ));
    }
    let next = ctx
        .http
        .publish(&channel, &ctx.key("head-4"), ctx.payload())
        .await?;
    let expected = format!(
        "the first event after subscribed is the next publish, at {} (events up to the subscribed position are not replayed without from; every later one is delivered) ({})",
        pos(&next.position),
        cite(&ctx)
    );
    let events = session.events(&channel, 1, REPLY_WAIT, &expected).await?;
    if events[0].position != next.position || events[0].message_id != next.message_id {
        return Err(Finding::fail(
            expected,
            format!(
                "the first event is at {} with message id {}",
                pos(&events[0].position),
                events[0].message_id.as_str()
            ),
        ));
    }
    Ok(())
}

/// A second subscribe to a channel the session holds gets already_subscribed with its id,
/// and the session stays open (FERRY-SUBSCRIBE-4).
pub(super) async fn already_subscribed(ctx: Ctx) -> CaseResult {
    let channel = ctx.channel(0);
    let mut session = ctx.subscribed(Who::Main, &channel).await?;
    let id = session.id("again");
    let expected = format!(
        "the second subscribe {id} to {channel}, which the session already holds, answered with an error with id {id} and code already_subscribed ({})",
        cite(&ctx)
    );
    let reply = session
        .request(
            &json!({ "type": "subscribe", "id": id, "channel": channel }),
            REPLY_WAIT,
            &expected,
        )
        .await?;
    expect_error(&reply, &id, ErrorCode::AlreadySubscribed, &expected)?;
    ctx.still_open(
        &mut session,
        "the session stays open after already_subscribed: a following unsubscribe gets its unsubscribed",
    )
    .await
}

/// With max_subscriptions channels held, one more subscribe gets too_many_subscriptions with
/// its id, and one to a channel already held gets already_subscribed (that check comes first,
/// FERRY-SUBSCRIBE-6); after an unsubscribe a new one succeeds (FERRY-SUBSCRIBE-4).
pub(super) async fn too_many(ctx: Ctx) -> CaseResult {
    const MOST: u64 = 200;
    let mut session = ctx.session(Who::Main).await?;
    let limits = &session.welcome().limits;
    let max = limits.max_subscriptions.get();
    if max > MOST {
        return Err(Finding::skip(format!(
            "the welcome advertises max_subscriptions {max}; this case subscribes to at most {MOST} + 1 channels"
        )));
    }
    let burst = limits.rate_limit.burst.get();
    let rate = limits.rate_limit.messages_per_second.get();
    let frames = max + 4;
    let pacing = Duration::from_secs_f64(frames.saturating_sub(burst) as f64 / (rate as f64 * 0.8));
    ctx.within_budget(
        pacing,
        &format!("{frames} frames under the advertised rate limit of {rate}/s, burst {burst}"),
    )?;
    let max = usize::try_from(max).map_err(|_| Finding::error("max_subscriptions too large"))?;
    let mut ids = Vec::with_capacity(max);
    for n in 0..max {
        let id = session.id("fill");
        session
            .send(&json!({ "type": "subscribe", "id": id, "channel": ctx.channel(n) }))
            .await;
        ids.push(id);
    }
    for (n, id) in ids.iter().enumerate() {
        let expected = format!(
            "subscribe {id} to {}, within the advertised max_subscriptions {max}, answered with subscribed",
            ctx.channel(n)
        );
        match session.reply(id, REPLY_WAIT, &expected).await? {
            ServerMessage::Subscribed(_) => {}
            other => return Err(Finding::fail(expected, a(&other))),
        }
    }
    let extra = ctx.channel(max);
    let id = session.id("over");
    let expected = format!(
        "with {max} channels held (the advertised max_subscriptions), subscribe {id} to one more is answered with an error with id {id} and code too_many_subscriptions ({})",
        cite(&ctx)
    );
    let reply = session
        .request(
            &json!({ "type": "subscribe", "id": id, "channel": extra }),
            REPLY_WAIT,
            &expected,
        )
        .await?;
    expect_error(&reply, &id, ErrorCode::TooManySubscriptions, &expected)?;

    let id = session.id("again");
    let expected = format!(
        "with {max} channels held (the advertised max_subscriptions), subscribe {id} to {}, one of them, is answered with an error with id {id} and code already_subscribed: that check comes before max_subscriptions (FERRY-SUBSCRIBE-6)",
        ctx.channel(0)
    );
    let reply = session
        .request(
            &json!({ "type": "subscribe", "id": id, "channel": ctx.channel(0) }),
            REPLY_WAIT,
            &expected,
        )
        .await?;
    expect_error(&reply, &id, ErrorCode::AlreadySubscribed, &expected)?;

    let id = session.id("unsub");
    session
        .request(
            &json!({ "type": "unsubscribe", "id": id, "channel": ctx.channel(0) }),
            REPLY_WAIT,
            &format!(
                "unsubscribe {id} answered with unsubscribed ({})",
                cite(&ctx)
            ),
        )
        .await?;
    let id = session.id("room");
    let expected = format!(
        "after an unsubscribe leaves room, subscribe {id} to {extra} is answered with subscribed (the limit counts the channels held) ({})",
        cite(&ctx)
    );
    match session
        .request(
            &json!({ "type": "subscribe", "id": id, "channel": extra }),
            REPLY_WAIT,
            &expected,
        )
        .await?
    {
        ServerMessage::Subscribed(_) => Ok(()),
        other => Err(Finding::fail(expected, a(&other))),
    }
}

/// An unsubscribe is answered with unsubscribed carrying its id and channel, also when the
/// session does not hold the channel (FERRY-SUBSCRIBE-3).
pub(super) async fn unsubscribe_reply(ctx: Ctx) -> CaseResult {
    let channel = ctx.channel(0);
    let mut session = ctx.subscribed(Who::Main, &channel).await?;
    for held in [true, false] {
        let id = session.id("unsub");
        let expected = format!(
            "unsubscribe {id} on {channel} ({}) answered with unsubscribed carrying id {id} and channel {channel} ({})",
            if held {
                "held by the session"
            } else {
                "no longer held: unsubscribed is sent also when the session was not subscribed"
            },
            cite(&ctx)
        );
        match session
            .request(
                &json!({ "type": "unsubscribe", "id": id, "channel": channel }),
                REPLY_WAIT,
                &expected,
            )
            .await?
        {
            ServerMessage::Unsubscribed(u) if u.channel.as_str() == channel => {}
            other => return Err(Finding::fail(expected, a(&other))),
        }
    }
    Ok(())
}

/// While events are being published, an unsubscribe is sent; after its unsubscribed reply
/// no event of the channel arrives (FERRY-SUBSCRIBE-3).
pub(super) async fn no_event_after_unsubscribed(ctx: Ctx) -> CaseResult {
    const PUBLISHES: u64 = 10;
    let channel = ctx.channel(0);
    let mut session = ctx.subscribed(Who::Main, &channel).await?;
    let publisher = {
        let (http, channel, payload, prefix) = (
            ctx.http.clone(),
            channel.clone(),
            ctx.payload().clone(),
            ctx.key("flow"),
        );
        tokio::spawn(async move {
            for n in 1..=PUBLISHES {
                http.publish(&channel, &format!("{prefix}-{n}"), &payload)
                    .await?;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok::<_, Finding>(())
        })
    };
    session
        .events(
            &channel,
            1,
            REPLY_WAIT,
            "the first published event, while subscribed",
        )
        .await
        .map_err(crate::server::ctx::setup)?;
    let id = session.id("unsub");
    let expected = format!("unsubscribed carrying id {id}");
    session
        .request(
            &json!({ "type": "unsubscribe", "id": id, "channel": channel }),
            REPLY_WAIT,
            &expected,
        )
        .await?;
    // Whatever arrived before the reply is fine.
    session.drain_stash();
    publisher
        .await
        .map_err(|e| Finding::error(format!("the publisher task failed: {e}")))??;
    ctx.http
        .publish(&channel, &ctx.key("after"), ctx.payload())
        .await?;
    let (after, end) = session.until_end(QUIET).await;
    let late: Vec<String> = after
        .iter()
        .filter(|m| is_event_of(m, &channel))
        .map(summary)
        .collect();
    if !late.is_empty() {
        return Err(Finding::fail(
            format!(
                "no event of {channel} after the unsubscribed reply {id} ({})",
                cite(&ctx)
            ),
            format!("after unsubscribed came: {}", late.join(", ")),
        ));
    }
    if end.is_end() {
        return Err(Finding::fail(
            "the session stays open after an unsubscribe",
            end.describe(),
        ));
    }
    Ok(())
}

/// A subscribe (param `from`: resuming from a position) by a session whose permissions grant
/// no read on the channel is refused with forbidden and its id, replays nothing, and the
/// session stays open (FERRY-CHANNEL-1, FERRY-CHANNEL-2, FERRY-RESUME-6, FERRY-SECURITY-2).
pub(super) async fn subscribe_forbidden(ctx: Ctx) -> CaseResult {
    let resume = param_bool(&ctx, "from")?;
    let mut session = ctx.session(Who::Restricted).await?;
    let channel = ctx.forbidden_channel(session.welcome(), Access::Read)?;
    let id = session.id("sub");
    let mut request = json!({ "type": "subscribe", "id": id, "channel": channel });
    if resume {
        let acks = ctx
            .http
            .publish_many(&channel, &ctx.key("secret"), 2, ctx.payload())
            .await?;
        request["from"] = json!({ "epoch": acks[0].position.epoch, "seq": 0 });
    }
    let expected = format!(
        "subscribe {id}{} to {channel}, on which the restricted session's permissions grant no read, answered with an error with id {id} and code forbidden ({})",
        if resume { " with from (a resume)" } else { "" },
        cite(&ctx)
    );
    let reply = session.request(&request, REPLY_WAIT, &expected).await?;
    expect_error(&reply, &id, ErrorCode::Forbidden, &expected)?;
    let (after, _) = session.until_end(QUIET).await;
    let leaked: Vec<String> = after
        .iter()
        .filter(|m| is_event_of(m, &channel))
        .map(summary)
        .collect();
    if !leaked.is_empty() {
        return Err(Finding::fail(
            format!(
                "no event of {channel}, which the session may not read ({})",
                cite(&ctx)
            ),
            format!("received {}", leaked.join(", ")),
        ));
    }
    ctx.still_open(
        &mut session,
        "a forbidden subscribe does not end the session: a following unsubscribe gets its unsubscribed (FERRY-CHANNEL-2)",
    )
    .await
}

/// A publish (param `via`: ws or http) on a channel the restricted credential may not write
/// is refused (forbidden with the request's id, or HTTP 403) and not stored
/// (FERRY-CHANNEL-1, FERRY-CHANNEL-2, FERRY-SECURITY-2).
pub(super) async fn publish_forbidden(ctx: Ctx) -> CaseResult {
    let via = param(&ctx, "via")?;
    let mut session = ctx.session(Who::Restricted).await?;
    let channel = ctx.forbidden_channel(session.welcome(), Access::Write)?;
    let key = ctx.key("forbidden");
    match via {
        "ws" => {
            let id = session.id("pub");
            let expected = format!(
                "publish {id} to {channel}, on which the restricted session's permissions grant no write, answered with an error with id {id} and code forbidden ({})",
                cite(&ctx)
            );
            let reply = session
                .request(
                    &json!({ "type": "publish", "id": id, "channel": channel, "idempotency_key": key, "payload": ctx.payload() }),
                    REPLY_WAIT,
                    &expected,
                )
                .await?;
            expect_error(&reply, &id, ErrorCode::Forbidden, &expected)?;
            ctx.still_open(
                &mut session,
                "a forbidden publish does not end the session: a following unsubscribe gets its unsubscribed (FERRY-CHANNEL-2)",
            )
            .await?;
        }
        "http" => {
            drop(session);
            let body =
                json!({ "channel": channel, "idempotency_key": key, "payload": ctx.payload() });
            let reply = ctx
                .http
                .call(
                    Method::POST,
                    "/v1/publish",
                    &Cred::Restricted,
                    Some(body.to_string()),
                )
                .await?;
            verdict(
                format!(
                    "POST /v1/publish to {channel} with the restricted credential, which grants no write there, answered 403 with an ErrorBody whose code is forbidden ({})",
                    cite(&ctx)
                ),
                http_error_problems(&reply, ErrorCode::Forbidden),
            )?;
        }
        other => return Err(Finding::error(format!("unknown param via {other:?}"))),
    }
    let page = ctx.http.history_page(&format!("channel={channel}")).await?;
    if !page.events.is_empty() {
        return Err(Finding::fail(
            format!(
                "the refused publish is not stored: {channel} has no events ({})",
                cite(&ctx)
            ),
            format!(
                "the history of {channel} holds events at seq {}",
                page.events
                    .iter()
                    .map(|e| e.position.seq.get().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(())
}

/// The history endpoint refuses, with 403 forbidden, a channel the credential may not read
/// (FERRY-SECURITY-2, FERRY-RESUME-6, FERRY-ERROR-3).
pub(super) async fn history_forbidden(ctx: Ctx) -> CaseResult {
    let session = ctx.session(Who::Restricted).await?;
    let channel = ctx.forbidden_channel(session.welcome(), Access::Read)?;
    drop(session);
    ctx.http
        .publish(&channel, &ctx.key("secret"), ctx.payload())
        .await?;
    let reply = ctx
        .http
        .history(&format!("channel={channel}"), &Cred::Restricted)
        .await?;
    verdict(
        format!(
            "GET /v1/history of {channel} with the restricted credential, which grants no read there, answered 403 with an ErrorBody whose code is forbidden ({})",
            cite(&ctx)
        ),
        http_error_problems(&reply, ErrorCode::Forbidden),
    )
}

/// Whether the main session's permissions grant `access` on `channel`; a skip otherwise.
fn granted(session: &Session, channel: &str, access: Access) -> CaseResult {
    let name = ChannelName::try_from(channel)
        .map_err(|e| Finding::error(format!("{channel} is not a channel name: {e}")))?;
    if permits(&session.welcome().permissions, &name, access) {
        return Ok(());
    }
    Err(Finding::skip(format!(
        "--token's welcome grants no {} on --outside-channel {channel}, so a server may answer forbidden before it looks at namespaces; pass an --outside-channel the token's permissions cover",
        match access {
            Access::Read => "read",
            Access::Write => "write",
        }
    )))
}

/// A subscribe, publish or HTTP publish (param `via`) on a channel outside every namespace
/// is refused with unknown_channel (FERRY-CHANNEL-5).
pub(super) async fn unknown_channel(ctx: Ctx) -> CaseResult {
    let via = param(&ctx, "via")?;
    let outside = ctx
        .options()
        .outside_channel
        .clone()
        .ok_or_else(|| Finding::skip("no --outside-channel"))?;
    let mut session = ctx.session(Who::Main).await?;
    match via {
        "subscribe" | "publish" => {
            let access = if via == "subscribe" {
                Access::Read
            } else {
                Access::Write
            };
            granted(&session, &outside, access)?;
            let id = session.id(via);
            let request = if via == "subscribe" {
                json!({ "type": "subscribe", "id": id, "channel": outside })
            } else {
                json!({ "type": "publish", "id": id, "channel": outside, "idempotency_key": ctx.key("outside"), "payload": ctx.payload() })
            };
            let expected = format!(
                "{via} {id} on {outside}, outside every namespace the server declares, answered with an error with id {id} and code unknown_channel ({})",
                cite(&ctx)
            );
            let reply = session.request(&request, REPLY_WAIT, &expected).await?;
            expect_error(&reply, &id, ErrorCode::UnknownChannel, &expected)
        }
        "http_publish" => {
            granted(&session, &outside, Access::Write)?;
            drop(session);
            let body = json!({ "channel": outside, "idempotency_key": ctx.key("outside"), "payload": ctx.payload() });
            let reply = ctx
                .http
                .call(
                    Method::POST,
                    "/v1/publish",
                    &Cred::Main,
                    Some(body.to_string()),
                )
                .await?;
            verdict(
                format!(
                    "POST /v1/publish to {outside}, outside every namespace the server declares, answered 404 with an ErrorBody whose code is unknown_channel ({})",
                    cite(&ctx)
                ),
                http_error_problems(&reply, ErrorCode::UnknownChannel),
            )
        }
        other => Err(Finding::error(format!("unknown param via {other:?}"))),
    }
}

/// The payload a payload_invalid case publishes (param `shape`): the configured
/// `--invalid-payload`, or a long JSON string where the namespace expects an object (a
/// refusal message that quotes the value must still fit an error: FERRY-ERROR-2).
fn invalid_payload(ctx: &Ctx, shape: &str, max: usize) -> Result<Value, Finding> {
    match shape {
        "configured" => ctx
            .options()
            .invalid_payload
            .clone()
            .ok_or_else(|| Finding::skip("needs --invalid-payload")),
        "long_string" => {
            if !ctx.payload().is_object() {
                return Err(Finding::skip(
                    "the --payload is not an object, so a string payload may be valid",
                ));
            }
            Ok(Value::String("x".repeat((max / 2).min(2_000))))
        }
        other => Err(Finding::error(format!(
            "unknown param shape {other:?} (configured or long_string)"
        ))),
    }
}

fn shown_payload(payload: &Value) -> String {
    match payload {
        Value::String(s) if s.len() > 40 => format!("a JSON string of {} characters", s.len()),
        other => other.to_string(),
    }
}

/// A publish (param `via`: ws or http) whose payload (param `shape`) breaks the namespace's
/// schema is refused with payload_invalid, and neither stored nor delivered: the next valid
/// publish is the channel's first event, and the only one a subscriber gets
/// (FERRY-CHANNEL-4; a refusal does not break the session or the server, FERRY-ERROR-2).
pub(super) async fn payload_invalid(ctx: Ctx) -> CaseResult {
    let via = param(&ctx, "via")?;
    let channel = ctx.channel(0);
    let mut subscriber = ctx.subscribed(Who::Main, &channel).await?;
    let max =
        usize::try_from(subscriber.welcome().limits.max_message_bytes.get()).unwrap_or(usize::MAX);
    let invalid = invalid_payload(&ctx, param(&ctx, "shape")?, max)?;
    let what = shown_payload(&invalid);
    let key = ctx.key("invalid");
    match via {
        "ws" => {
            let mut publisher = ctx.session(Who::Main).await?;
            let id = publisher.id("pub");
            let expected = format!(
                "publish {id} with the payload {what}, which the namespace of {channel} refuses, answered with an error with id {id} and code payload_invalid ({})",
                cite(&ctx)
            );
            let reply = publisher
                .request(
                    &json!({ "type": "publish", "id": id, "channel": channel, "idempotency_key": key, "payload": invalid }),
                    REPLY_WAIT,
                    &expected,
                )
                .await?;
            expect_error(&reply, &id, ErrorCode::PayloadInvalid, &expected)?;
        }
        "http" => {
            let body = json!({ "channel": channel, "idempotency_key": key, "payload": invalid });
            let expected = format!(
                "POST /v1/publish with the payload {what}, which the namespace of {channel} refuses, answered 422 with an ErrorBody whose code is payload_invalid ({})",
                cite(&ctx)
            );
            match ctx
                .http
                .try_call(
                    Method::POST,
                    "/v1/publish",
                    &Cred::Main,
                    Some(body.to_string()),
                )
                .await?
            {
                Ok(reply) if reply.status == 200 && param(&ctx, "shape")? == "long_string" => {
                    return Err(Finding::skip(format!(
                        "the namespace of {channel} accepts a string payload, so this case has no invalid payload to send"
                    )));
                }
                Ok(reply) => verdict(
                    expected,
                    http_error_problems(&reply, ErrorCode::PayloadInvalid),
                )?,
                Err(why) => return Err(Finding::fail(expected, why)),
            }
        }
        other => return Err(Finding::error(format!("unknown param via {other:?}"))),
    }
    let ack = ctx
        .http
        .publish(&channel, &ctx.key("valid"), ctx.payload())
        .await?;
    let expected = format!(
        "the refused payload is neither stored nor delivered: the valid publish that follows is the channel's first event (seq 1) and the first event the subscriber gets ({})",
        cite(&ctx)
    );
    if ack.position.seq.get() != 1 {
        return Err(Finding::fail(
            expected,
            format!(
                "the valid publish was stored at {} (something was stored before it)",
                pos(&ack.position)
            ),
        ));
    }
    let events = subscriber
        .events(&channel, 1, REPLY_WAIT, &expected)
        .await?;
    if events[0].message_id != ack.message_id {
        return Err(Finding::fail(
            expected,
            format!("the subscriber first got events at seq {}", seqs(&events)),
        ));
    }
    Ok(())
}

/// A publish repeating an accepted idempotency key with the configured invalid payload is
/// answered payload_invalid with its id, not as a duplicate: the payload is checked before the
/// key (FERRY-PUBLISH-4). The repeat stores nothing: the next publish with a new key follows
/// the original, and the subscriber gets exactly those two events (FERRY-CHANNEL-4).
pub(super) async fn payload_checked_before_dedup(ctx: Ctx) -> CaseResult {
    let channel = ctx.channel(0);
    let mut subscriber = ctx.subscribed(Who::Main, &channel).await?;
    let max =
        usize::try_from(subscriber.welcome().limits.max_message_bytes.get()).unwrap_or(usize::MAX);
    let invalid = invalid_payload(&ctx, "configured", max)?;
    let key = ctx.key("once");
    let original = ctx.http.publish(&channel, &key, ctx.payload()).await?;
    let mut publisher = ctx.session(Who::Main).await?;
    let id = publisher.id("pub");
    let expected = format!(
        "publish {id} repeating the accepted idempotency key {key} with the payload {}, which the namespace of {channel} refuses, answered with an error with id {id} and code payload_invalid, not published with duplicate true: the payload is checked before the key ({})",
        shown_payload(&invalid),
        cite(&ctx)
    );
    let reply = publisher
        .request(
            &json!({ "type": "publish", "id": id, "channel": channel, "idempotency_key": key, "payload": invalid }),
            REPLY_WAIT,
            &expected,
        )
        .await?;
    expect_error(&reply, &id, ErrorCode::PayloadInvalid, &expected)?;
    let marker = ctx
        .http
        .publish(&channel, &ctx.key("marker"), ctx.payload())
        .await?;
    let expected = format!(
        "the refused repeat neither stored nor delivered: the next publish with a new key stored right after the original at {}, and the subscriber gets those two events only ({})",
        pos(&original.position),
        cite(&ctx)
    );
    let mut problems = Vec::new();
    if marker.position.seq.get() != original.position.seq.get() + 1 {
        problems.push(format!(
            "the next publish was stored at {}",
            pos(&marker.position)
        ));
    }
    let events = subscriber
        .events(&channel, 2, REPLY_WAIT, &expected)
        .await?;
    if events[0].message_id != original.message_id || events[1].message_id != marker.message_id {
        problems.push(format!(
            "the subscriber got events at seq {}",
            seqs(&events)
        ));
    }
    verdict(expected, problems)
}
