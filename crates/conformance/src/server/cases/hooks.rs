//! Hooks: a namespace whose publishes and subscribes the server asks the application's backend
//! about before they take effect (`--hooked-channel`; the runner plays the backend). An
//! accepted publish is stored with the payload the backend chose, a refused one reaches the
//! client as the backend's error and is not stored, a backend that fails is never taken for an
//! acceptance, and a refused subscribe delivers nothing (FERRY-HOOK-1 to FERRY-HOOK-4).

use ferry_protocol::{ErrorCode, ServerMessage};
use serde_json::{Value, json};

use super::cite;
use crate::case::{CaseResult, Finding};
use crate::server::backend::{REFUSAL_MESSAGE, Script, ScriptedBackend, subscribe_key};
use crate::server::checks::a;
use crate::server::ctx::{Ctx, REPLY_WAIT, Who, subscribe};
use crate::server::driver::Session;

/// The runner's backend, the case's hooked channel, and a session subscribed to it (whose
/// subscribe the backend is scripted to accept) with the channel's head seq.
async fn hooked(ctx: &Ctx) -> Result<(&ScriptedBackend, String, Session, u64), Finding> {
    let backend = ctx.backend()?;
    let channel = ctx.hooked_channel(0)?;
    backend.script(&subscribe_key(&channel), Script::Accept { payload: None });
    let mut reader = ctx.session(Who::Main).await?;
    let subscribed = subscribe(&mut reader, &channel).await?;
    Ok((backend, channel, reader, subscribed.position.seq.0.get()))
}

/// Publishes `payload` to `channel` on `session` under `key` and returns the reply.
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

/// Fails unless `reply` is the error of request `id` with `code`, the backend's message when
/// `from_backend`, and retryable as `retryable` says.
fn expect_error(
    reply: &ServerMessage,
    id: &str,
    code: ErrorCode,
    from_backend: bool,
    retryable: bool,
    expected: &str,
) -> CaseResult {
    match reply {
        ServerMessage::Error(e)
            if e.id.as_deref().map(String::as_str) == Some(id)
                && e.error.code == code
                && (!from_backend || e.error.message.as_str() == REFUSAL_MESSAGE)
                && e.error.retryable == retryable =>
        {
            Ok(())
        }
        other => Err(Finding::fail(expected, a(other))),
    }
}

/// Publishes the hooked payload on `writer` under a key the backend accepts as it is, and
/// checks that the next event `reader` gets on `channel` is that publish at `seq`: whatever
/// was refused before it was not stored.
async fn next_event_is_accepted(
    ctx: &Ctx,
    backend: &ScriptedBackend,
    channel: &str,
    (reader, writer): (&mut Session, &mut Session),
    seq: u64,
    refused: &str,
) -> CaseResult {
    let key = ctx.key("accepted");
    backend.script(&key, Script::Accept { payload: None });
    let payload = ctx.options().hooked_payload.clone();
    let expected = format!("a publish the backend accepts, published ({})", cite(ctx));
    match publish(writer, channel, &key, &payload, &expected).await? {
        (_, ServerMessage::Published(_)) => {}
        (_, other) => return Err(Finding::fail(expected, a(&other))),
    }
    let expected = format!(
        "the next event of {channel} is the accepted publish at seq {seq}: {refused} was not stored ({})",
        cite(ctx)
    );
    let event = reader
        .events(channel, 1, REPLY_WAIT, &expected)
        .await?
        .remove(0);
    if event.position.seq.0.get() == seq && event.payload.to_value().ok() == Some(payload) {
        Ok(())
    } else {
        Err(Finding::fail(
            expected,
            format!(
                "an event at seq {} with payload {}",
                event.position.seq.0.get(),
                event.payload.to_value().unwrap_or_default()
            ),
        ))
    }
}

/// A publish the backend accepts with a replacing payload is published, its subscribers get
/// the backend's payload, and the backend was asked once with the channel, the client's payload
/// and the session's user, session id and request id (FERRY-HOOK-1, FERRY-HOOK-4).
pub(super) async fn publish_accepted(ctx: Ctx) -> CaseResult {
    let (backend, channel, mut reader, head) = hooked(&ctx).await?;
    let key = ctx.key("replaced");
    let replacement = ctx.options().hooked_replacement.clone();
    backend.script(
        &key,
        Script::Accept {
            payload: Some(replacement.clone()),
        },
    );
    let payload = ctx.options().hooked_payload.clone();
    let mut writer = ctx.session(Who::Main).await?;
    let expected = format!(
        "a publish the backend accepts with a payload of its own answered published ({})",
        cite(&ctx)
    );
    let (id, reply) = publish(&mut writer, &channel, &key, &payload, &expected).await?;
    if !matches!(&reply, ServerMessage::Published(p) if p.id.as_str() == id) {
        return Err(Finding::fail(expected, a(&reply)));
    }
    let expected = format!(
        "the subscriber of {channel} gets the event at seq {} with the backend's payload {replacement} ({})",
        head + 1,
        cite(&ctx)
    );
    let event = reader
        .events(&channel, 1, REPLY_WAIT, &expected)
        .await?
        .remove(0);
    if event.payload.to_value().ok().as_ref() != Some(&replacement) {
        return Err(Finding::fail(
            expected,
            format!(
                "an event with payload {}",
                event.payload.to_value().unwrap_or_default()
            ),
        ));
    }
    let calls = backend.calls(&key);
    let asked = format!(
        "the backend asked about the publish once, with type publish, the channel {channel}, the client's payload {payload}, the session's user and session id, and the publish's request id {id} (FERRY-HOOK-4)"
    );
    let [call] = calls.as_slice() else {
        return Err(Finding::fail(
            asked,
            format!("{} calls with its key", calls.len()),
        ));
    };
    let welcome = writer.welcome();
    if call["type"] == "publish"
        && call["channel"] == channel.as_str()
        && call["payload"] == payload
        && call["user"] == welcome.user.as_str()
        && call["session_id"] == welcome.session_id.as_str()
        && call["request_id"] == id.as_str()
    {
        Ok(())
    } else {
        Err(Finding::fail(asked, format!("the call {call}")))
    }
}

/// A publish the backend does not accept, and what the client must get for it.
struct NotAccepted {
    /// Names the publish's key.
    label: &'static str,
    /// What the backend answers.
    script: Script,
    /// The error the client gets, with the backend's message when `from_backend`, retryable
    /// as `retryable` says.
    code: ErrorCode,
    from_backend: bool,
    retryable: bool,
    /// The expected answer in words.
    expected: String,
    /// The publish in words, for the check that it was not stored.
    what: &'static str,
}

/// Publishes under a key the backend answers with `refusal.script`, expects the error, checks
/// the session goes on, and that the publish was not stored.
async fn not_stored(ctx: &Ctx, refusal: NotAccepted) -> CaseResult {
    let (backend, channel, mut reader, head) = hooked(ctx).await?;
    let key = ctx.key(refusal.label);
    backend.script(&key, refusal.script);
    let mut writer = ctx.session(Who::Main).await?;
    let payload = ctx.options().hooked_payload.clone();
    let (id, reply) = publish(&mut writer, &channel, &key, &payload, &refusal.expected).await?;
    expect_error(
        &reply,
        &id,
        refusal.code,
        refusal.from_backend,
        refusal.retryable,
        &refusal.expected,
    )?;
    ctx.still_open(
        &mut writer,
        "a publish that was not accepted does not end the session",
    )
    .await?;
    next_event_is_accepted(
        ctx,
        backend,
        &channel,
        (&mut reader, &mut writer),
        head + 1,
        refusal.what,
    )
    .await
}

/// A publish the backend refuses gets the backend's error and message with its id, is not
/// stored, and the session goes on (FERRY-HOOK-1).
pub(super) async fn publish_refused(ctx: Ctx) -> CaseResult {
    let expected = format!(
        "a publish the backend refuses with forbidden answered with an error with its id, code forbidden and the backend's message {REFUSAL_MESSAGE:?}, not retryable ({})",
        cite(&ctx)
    );
    let refusal = NotAccepted {
        label: "refused",
        script: Script::Refuse { code: "forbidden" },
        code: ErrorCode::Forbidden,
        from_backend: true,
        retryable: false,
        expected,
        what: "the refused publish",
    };
    not_stored(&ctx, refusal).await
}

/// A publish whose backend answers 503 gets unavailable (retryable) and is not stored: a
/// failing backend is never an acceptance (FERRY-HOOK-3).
pub(super) async fn backend_down(ctx: Ctx) -> CaseResult {
    let expected = format!(
        "a publish whose backend answers 503 answered with an error with its id and code unavailable, retryable ({})",
        cite(&ctx)
    );
    let refusal = NotAccepted {
        label: "down",
        script: Script::Status(503),
        code: ErrorCode::Unavailable,
        from_backend: false,
        retryable: true,
        expected,
        what: "the publish its backend failed on",
    };
    not_stored(&ctx, refusal).await
}

/// A subscribe the backend refuses gets the backend's error with its id and delivers nothing
/// of the channel, while a subscribe it accepts on the same session takes effect
/// (FERRY-HOOK-2).
pub(super) async fn subscribe_refused(ctx: Ctx) -> CaseResult {
    let backend = ctx.backend()?;
    let refused = ctx.hooked_channel(0)?;
    let accepted = ctx.hooked_channel(1)?;
    backend.script(
        &subscribe_key(&refused),
        Script::Refuse { code: "rejected" },
    );
    backend.script(&subscribe_key(&accepted), Script::Accept { payload: None });
    let mut session = ctx.session(Who::Main).await?;
    let id = session.id("sub");
    let expected = format!(
        "a subscribe to {refused} that the backend refuses with rejected answered with an error with its id, code rejected and the backend's message, not retryable ({})",
        cite(&ctx)
    );
    let request = json!({ "type": "subscribe", "id": id, "channel": refused });
    let reply = session.request(&request, REPLY_WAIT, &expected).await?;
    expect_error(&reply, &id, ErrorCode::Rejected, true, false, &expected)?;
    subscribe(&mut session, &accepted).await?;
    // One publish to each channel, the refused one's first: the session must get the
    // accepted channel's event and nothing of the refused one before it.
    let mut writer = ctx.session(Who::Main).await?;
    let payload = ctx.options().hooked_payload.clone();
    for channel in [&refused, &accepted] {
        let key = ctx.key(&format!("to-{channel}"));
        backend.script(&key, Script::Accept { payload: None });
        let expected = format!("a publish to {channel} that the backend accepts, published");
        match publish(&mut writer, channel, &key, &payload, &expected).await? {
            (_, ServerMessage::Published(_)) => {}
            (_, other) => {
                return Err(Finding::error(format!(
                    "set-up: {expected}; got {}",
                    a(&other)
                )));
            }
        }
    }
    let expected = format!(
        "the event of {accepted}, and no event of {refused}, whose subscribe was refused ({})",
        cite(&ctx)
    );
    let got = session
        .take(
            |m| matches!(m, ServerMessage::Event(e) if e.channel.as_str() == refused || e.channel.as_str() == accepted),
            REPLY_WAIT,
            &expected,
        )
        .await?;
    match &got {
        ServerMessage::Event(e) if e.channel.as_str() == accepted => Ok(()),
        other => Err(Finding::fail(expected, a(other))),
    }
}
