//! The checks that hold for every error (FERRY-ERROR-1, FERRY-ERROR-3), and the words failures
//! use: close codes with their names, positions, one-line summaries of messages.

use ferry_protocol::tables::{CLOSE_CODES, ERROR_CODES};
use ferry_protocol::{
    ErrorCode, ErrorInfo, HistoryResponse, MessageId, ServerMessage, StreamPosition,
};

use super::http::Reply;

/// A close code with its name from the close-code table: `4401 (ticket_rejected)`.
pub(crate) fn close_name(code: u16) -> String {
    match CLOSE_CODES.iter().find(|row| row.code == code) {
        Some(row) => format!("{code} ({})", row.name),
        None => format!("{code} (not in the close-code table)"),
    }
}

/// A position as failures show it: `epoch E seq N`.
pub(crate) fn pos(position: &StreamPosition) -> String {
    format!(
        "epoch {} seq {}",
        position.epoch.as_str(),
        position.seq.get()
    )
}

/// Whether `page` holds the acknowledged event `message_id` at `position`.
pub(crate) fn holds(
    page: &HistoryResponse,
    message_id: &MessageId,
    position: &StreamPosition,
) -> bool {
    page.events
        .iter()
        .any(|e| e.message_id == *message_id && e.position == *position)
}

/// The events a history page lists, for a finding.
pub(crate) fn listed(page: &HistoryResponse) -> String {
    if page.events.is_empty() {
        return "no event there".to_owned();
    }
    page.events
        .iter()
        .map(|e| format!("{} ({})", e.message_id.as_str(), pos(&e.position)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A one-line summary of a server message, for failures.
pub(crate) fn summary(message: &ServerMessage) -> String {
    match message {
        ServerMessage::Welcome(w) => format!("welcome (session {})", w.session_id.as_str()),
        ServerMessage::Subscribed(m) => format!(
            "subscribed (id {}, channel {}, {}{})",
            m.id.as_str(),
            m.channel.as_str(),
            pos(&m.position),
            m.recovery.as_ref().map_or_else(String::new, |r| format!(
                ", recovery complete {} replayed {} reason {}",
                r.complete,
                r.replayed.get(),
                r.reason.map_or_else(|| "null".into(), |g| g.to_string())
            ))
        ),
        ServerMessage::Unsubscribed(m) => format!(
            "unsubscribed (id {}, channel {})",
            m.id.as_str(),
            m.channel.as_str()
        ),
        ServerMessage::Published(m) => format!(
            "published (id {}, {}, duplicate {})",
            m.id.as_str(),
            pos(&m.position),
            m.duplicate
        ),
        ServerMessage::RpcResult(m) => format!(
            "rpc_result (id {}, method {}, duplicate {})",
            m.id.as_str(),
            m.method.as_str(),
            m.duplicate
        ),
        ServerMessage::MemberPage(m) => format!(
            "member_page (id {}, channel {}, {} members, next {})",
            m.id.as_str(),
            m.channel.as_str(),
            m.members.len(),
            m.next.as_ref().map_or("null", |next| next.as_str())
        ),
        ServerMessage::Presence(p) => format!(
            "presence (channel {}, {} {}, {})",
            p.channel.as_str(),
            p.change,
            p.user.as_str(),
            pos(&p.position)
        ),
        ServerMessage::Event(e) => format!(
            "event (channel {}, {}, message id {})",
            e.channel.as_str(),
            pos(&e.position),
            e.message_id.as_str()
        ),
        ServerMessage::Ping(p) => format!("ping (nonce {})", p.nonce.as_str()),
        ServerMessage::Error(e) => format!(
            "error (id {}, code {}, message {:?})",
            e.id.as_deref().map_or("null", String::as_str),
            e.error.code,
            e.error.message.as_str()
        ),
        ServerMessage::Goodbye(g) => format!(
            "goodbye (reason {}, retry_after_ms {})",
            g.reason,
            g.retry_after_ms
                .map_or_else(|| "null".into(), |ms| ms.get().to_string())
        ),
    }
}

/// The summary of `message` with its article, for "observed": `an error (...)`.
pub(crate) fn a(message: &ServerMessage) -> String {
    let text = summary(message);
    let article = if text.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {text}")
}

/// What FERRY-ERROR-1 asks of an error beyond its schema (which decoding already checked):
/// the error table's retryable flag, and retry_after_ms on rate_limited. Empty when it holds.
pub(crate) fn error_info_problems(info: &ErrorInfo) -> Vec<String> {
    let mut problems = Vec::new();
    let row = ERROR_CODES
        .iter()
        .find(|row| row.code == info.code)
        .expect("every decodable error code is in the table");
    if info.retryable != row.retryable {
        problems.push(format!(
            "code {} carries retryable {} but the error table says {} (FERRY-ERROR-1)",
            info.code, info.retryable, row.retryable
        ));
    }
    if info.code == ErrorCode::RateLimited && info.retry_after_ms.is_none() {
        problems.push("rate_limited without retry_after_ms (FERRY-ERROR-1)".into());
    }
    problems
}

/// The HTTP status the error table gives `code`.
pub(crate) fn http_status(code: ErrorCode) -> u16 {
    ERROR_CODES
        .iter()
        .find(|row| row.code == code)
        .map_or(500, |row| row.http_status)
}

/// What FERRY-ERROR-3 (and FERRY-ERROR-1) ask of an HTTP error answer expected to carry
/// `code`: the table's status, an ErrorBody with that code, the table's retryable flag.
/// Empty when it holds.
pub(crate) fn http_error_problems(reply: &Reply, code: ErrorCode) -> Vec<String> {
    let status = http_status(code);
    let mut problems = Vec::new();
    if reply.status != status {
        problems.push(format!(
            "HTTP status {} where the error table gives {status} for {code}",
            reply.status
        ));
    }
    match reply.error_body() {
        Ok(body) => {
            if body.error.code != code {
                problems.push(format!(
                    "the ErrorBody carries code {} instead of {code}",
                    body.error.code
                ));
            }
            problems.extend(error_info_problems(&body.error));
        }
        Err(why) => problems.push(format!(
            "the body is not an ErrorBody ({why}): {}",
            reply.shown()
        )),
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_are_named_from_the_table() {
        assert_eq!(close_name(4401), "4401 (ticket_rejected)");
        assert_eq!(close_name(1009), "1009 (message_too_big)");
        assert_eq!(close_name(4999), "4999 (not in the close-code table)");
    }

    #[test]
    fn an_error_with_the_wrong_retryable_flag_is_named() {
        let info: ErrorInfo = serde_json::from_value(serde_json::json!({
            "code": "rate_limited", "message": "slow down", "retryable": false
        }))
        .expect("a schema-valid error");
        let problems = error_info_problems(&info);
        assert_eq!(problems.len(), 2, "{problems:?}");
        let fine: ErrorInfo = serde_json::from_value(serde_json::json!({
            "code": "forbidden", "message": "no", "retryable": false
        }))
        .expect("a schema-valid error");
        assert!(error_info_problems(&fine).is_empty());
    }
}
