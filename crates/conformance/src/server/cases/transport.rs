//! Transport and framing: the subprotocol, binary and non-UTF-8 frames, malformed frames
//! (FERRY-TRANSPORT-1 to -5, FERRY-ERROR-2).

use std::time::Duration;

use ferry_protocol::{ErrorCode, SUBPROTOCOL, ServerMessage};
use serde_json::json;

use super::{cite, param, param_code, param_u64, verdict};
use crate::case::{CaseResult, Finding};
use crate::server::checks::{a, close_name, http_error_problems, summary};
use crate::server::ctx::{Ctx, REPLY_WAIT, Who, setup};
use crate::server::driver::ConnectError;
use crate::server::http::{Cred, Reply};

/// An upgrade offering `offer` (param; empty: no subprotocol at all), with a valid ticket, is
/// refused with HTTP 400 bad_request rather than switched to WebSocket (FERRY-TRANSPORT-1).
pub(super) async fn upgrade_refused(ctx: Ctx) -> CaseResult {
    let offer = param(&ctx, "offer")?;
    let offer = (!offer.is_empty()).then_some(offer);
    let ticket = ctx.http.ticket(&Cred::Main).await?;
    let offered = offer.map_or_else(
        || "no subprotocol".to_owned(),
        |p| format!("only the subprotocol {p}"),
    );
    let expected = format!(
        "the upgrade refused with HTTP 400 and an ErrorBody whose code is bad_request (not 101 Switching Protocols): it offers {offered}, not {SUBPROTOCOL} (a valid ticket was given, so only the subprotocol is wrong) ({})",
        cite(&ctx)
    );
    let query = format!("ticket={}", ticket.ticket.as_str());
    match ctx.connect(Some(&query), offer).await? {
        Err(ConnectError::Refused { status, body }) => verdict(
            expected,
            http_error_problems(&Reply { status, text: body }, ErrorCode::BadRequest),
        ),
        Err(ConnectError::Subprotocol(detail)) => Err(Finding::fail(
            expected,
            format!("the server switched protocols (101) anyway: {detail}"),
        )),
        Err(e @ ConnectError::Unreachable(_)) => Err(Finding::error(e.describe())),
        Ok(mut session) => {
            let then = session.recv_raw(Duration::from_secs(1)).await;
            Err(Finding::fail(
                expected,
                format!(
                    "101 Switching Protocols (selected subprotocol: {}); then {}",
                    session.protocol.as_deref().unwrap_or("none"),
                    then.describe()
                ),
            ))
        }
    }
}

/// A binary frame closes with 1003, a text frame that is not UTF-8 with 1007 (param `kind`,
/// expected code `close`; FERRY-TRANSPORT-3, FERRY-TRANSPORT-4).
pub(super) async fn bad_frame_closes(ctx: Ctx) -> CaseResult {
    let kind = param(&ctx, "kind")?;
    let code = u16::try_from(param_u64(&ctx, "close")?)
        .map_err(|_| Finding::error("the param close is not a close code"))?;
    let mut session = ctx.session(Who::Main).await?;
    let what = match kind {
        "binary" => {
            session.send_binary(br#"{"type":"pong","nonce":"n-1"}"#.to_vec());
            "a binary frame"
        }
        "invalid_utf8" => {
            session.send_raw_text(b"{\"type\":\"pong\",\"nonce\":\"n-\xff\xfe\"}".to_vec());
            "a text frame that is not valid UTF-8 (bytes 0xff 0xfe inside a string)"
        }
        other => {
            return Err(Finding::error(format!(
                "unknown param kind {other:?} (binary or invalid_utf8)"
            )));
        }
    };
    let (before, end) = session.until_end(REPLY_WAIT).await;
    if end.close_code() == Some(code) {
        return Ok(());
    }
    let before = if before.is_empty() {
        String::new()
    } else {
        format!(
            " (after {})",
            before.iter().map(summary).collect::<Vec<_>>().join(", ")
        )
    };
    Err(Finding::fail(
        format!(
            "after {what}, the session closed with {} ({})",
            close_name(code),
            cite(&ctx)
        ),
        format!("{}{before}", end.describe()),
    ))
}

/// A malformed frame (param `frame`, where `{channel}` is a valid channel) gets an error with
/// id null and the code of param `code`; the session stays open, and another session of the
/// same server is unharmed (FERRY-TRANSPORT-5, FERRY-ERROR-2).
pub(super) async fn malformed_frame(ctx: Ctx) -> CaseResult {
    let channel = ctx.channel(2);
    let frame = param(&ctx, "frame")?.replace("{channel}", &channel);
    let code = param_code(&ctx, "code")?;
    let witness_channel = ctx.channel(1);
    let mut witness = ctx.subscribed(Who::Main, &witness_channel).await?;
    let mut session = ctx.session(Who::Main).await?;
    session.send_text(frame.clone()).await;

    let expected = format!(
        "an error with id null and code {code} answering the malformed frame {frame} (FERRY-TRANSPORT-5)"
    );
    let answer = session
        .take(
            |m| matches!(m, ServerMessage::Error(_)),
            REPLY_WAIT,
            &expected,
        )
        .await?;
    if let ServerMessage::Error(error) = &answer
        && (error.id.is_some() || error.error.code != code)
    {
        return Err(Finding::fail(expected, a(&answer)));
    }

    let id = session.id("after");
    let subscribe = json!({ "type": "subscribe", "id": id, "channel": channel });
    let expected = format!(
        "the session stays open after the error: the subscribe {id} that follows gets its subscribed reply (FERRY-TRANSPORT-5)"
    );
    match session.request(&subscribe, REPLY_WAIT, &expected).await? {
        ServerMessage::Subscribed(_) => {}
        other => return Err(Finding::fail(expected, a(&other))),
    }

    let ack = ctx
        .http
        .publish(&witness_channel, &ctx.key("witness"), ctx.payload())
        .await?;
    let events = witness
        .events(
            &witness_channel,
            1,
            REPLY_WAIT,
            "another session of the server, subscribed before the malformed frame, still receives its channel's events (FERRY-ERROR-2)",
        )
        .await?;
    if events[0].message_id != ack.message_id {
        return Err(setup(Finding::fail(
            format!("the witness session gets event {}", ack.message_id.as_str()),
            format!("event {}", events[0].message_id.as_str()),
        )));
    }
    Ok(())
}
