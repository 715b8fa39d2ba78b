//! What the probes judge answers by: the protocol core's tables (which error codes an error
//! frame or an HTTP error body may carry, with the HTTP status of each, and which close codes a
//! server may send), and the vectors the mutation probes start from, read from `schema/` at
//! build time.

use ferry_protocol::ServerMessage;
use ferry_protocol::tables::{CLOSE_CODES, ERROR_CODES, close_code};
use serde_json::Value;

/// The client-message vectors (`schema/vectors`), each file as its JSON text.
pub const CLIENT_VECTORS: [&str; 4] = [
    include_str!("../../../schema/vectors/Subscribe.json"),
    include_str!("../../../schema/vectors/Unsubscribe.json"),
    include_str!("../../../schema/vectors/Publish.json"),
    include_str!("../../../schema/vectors/Pong.json"),
];

/// The HTTP body vectors a client sends (`schema/vectors`).
pub const HTTP_VECTORS: [&str; 2] = [
    include_str!("../../../schema/vectors/PublishRequest.json"),
    include_str!("../../../schema/vectors/HistoryQuery.json"),
];

/// The example application's payload vectors, each with a channel of the namespace that
/// carries it (`schema/example-app/channels.json`).
pub const PAYLOAD_VECTORS: [(&str, &str); 6] = [
    (
        "project:fuzz:tasks",
        include_str!("../../../schema/example-app/vectors/TaskProgress.json"),
    ),
    (
        "project:fuzz:approvals",
        include_str!("../../../schema/example-app/vectors/ApprovalRequested.json"),
    ),
    (
        "project:fuzz:approvals",
        include_str!("../../../schema/example-app/vectors/ApprovalResolved.json"),
    ),
    (
        "agent:fuzz:activity",
        include_str!("../../../schema/example-app/vectors/AgentActivity.json"),
    ),
    (
        "daemon:fuzz:output",
        include_str!("../../../schema/example-app/vectors/OutputChunk.json"),
    ),
    (
        "daemon:fuzz:output",
        include_str!("../../../schema/example-app/vectors/CommandExited.json"),
    ),
];

/// The valid and the invalid values of one vector file.
pub fn vectors(text: &str) -> (Vec<Value>, Vec<Value>) {
    let file: Value = serde_json::from_str(text).expect("the vector files are JSON");
    let values = |key: &str| {
        file[key]
            .as_array()
            .map(|cases| cases.iter().map(|c| c["value"].clone()).collect())
            .unwrap_or_default()
    };
    (values("valid"), values("invalid"))
}

/// The HTTP status that error code `code` is answered with, if the table has the code.
pub fn http_status(code: &str) -> Option<u16> {
    ERROR_CODES
        .iter()
        .find(|info| info.code.to_string() == code)
        .map(|info| info.http_status)
}

/// Whether `code` is a close code the server may send (the table's, less the two it says are
/// never sent: 1005 and 1006).
pub fn close_code_sent(code: u16) -> bool {
    code != close_code::NO_STATUS
        && code != close_code::ABNORMAL_CLOSURE
        && CLOSE_CODES.iter().any(|info| info.code == code)
}

/// Checks an HTTP error answer: a JSON `ErrorBody` whose code is in the table with this
/// status (429 also carries `retry_after_ms`).
pub fn check_error_body(status: u16, content_type: &str, body: &[u8]) -> Result<String, String> {
    if !content_type.starts_with("application/json") {
        return Err(format!("{status} with content-type {content_type:?}"));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "{status} with a body that is not JSON ({e}): {}",
            String::from_utf8_lossy(&body[..body.len().min(120)])
        )
    })?;
    let code = value["error"]["code"]
        .as_str()
        .ok_or_else(|| format!("{status} with a body that is no ErrorBody: {value}"))?;
    if value["error"]["message"].as_str().is_none() || !value["error"]["retryable"].is_boolean() {
        return Err(format!("{status} with an incomplete ErrorBody: {value}"));
    }
    match http_status(code) {
        Some(s) if s == status => {}
        Some(s) => return Err(format!("{status} {code}, which the table answers with {s}")),
        None => return Err(format!("{status} with an unknown error code {code}")),
    }
    if status == 429 && value["error"]["retry_after_ms"].as_u64().is_none() {
        return Err(format!("429 without retry_after_ms: {value}"));
    }
    Ok(code.to_owned())
}

/// Checks a server text frame: JSON, a server message type, and for an error a code of the
/// table; returns the type (and the error code).
pub fn check_server_frame(payload: &[u8]) -> Result<(String, Option<String>), String> {
    let value: Value = serde_json::from_slice(payload)
        .map_err(|e| format!("a server frame that is not JSON ({e})"))?;
    let kind = value["type"].as_str().unwrap_or("").to_owned();
    if !ServerMessage::TYPES.contains(&kind.as_str()) {
        return Err(format!("a server frame of no known type: {value}"));
    }
    if kind == "error" {
        let code = value["error"]["code"].as_str().unwrap_or("");
        if http_status(code).is_none() {
            return Err(format!("an error frame with an unknown code: {value}"));
        }
        return Ok((kind, Some(code.to_owned())));
    }
    Ok((kind, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_body_is_checked_against_the_table() {
        let body = br#"{"error":{"code":"rate_limited","message":"m","retryable":true,"retry_after_ms":5}}"#;
        assert_eq!(
            check_error_body(429, "application/json", body),
            Ok("rate_limited".to_owned())
        );
        assert!(
            check_error_body(400, "application/json", body).is_err(),
            "wrong status"
        );
        assert!(
            check_error_body(429, "text/plain", body).is_err(),
            "not JSON"
        );
        let no_retry = br#"{"error":{"code":"rate_limited","message":"m","retryable":true}}"#;
        assert!(check_error_body(429, "application/json", no_retry).is_err());
        let unknown = br#"{"error":{"code":"oops","message":"m","retryable":false}}"#;
        assert!(check_error_body(400, "application/json", unknown).is_err());
    }

    #[test]
    fn the_close_codes_never_sent_are_not_answers() {
        assert!(close_code_sent(1002) && close_code_sent(4410) && close_code_sent(4429));
        assert!(!close_code_sent(1006) && !close_code_sent(1005) && !close_code_sent(4000));
    }

    #[test]
    fn every_vector_file_has_valid_and_invalid_values() {
        for text in CLIENT_VECTORS.iter().chain(&HTTP_VECTORS) {
            let (valid, invalid) = vectors(text);
            assert!(!valid.is_empty() && !invalid.is_empty());
        }
        for (_, text) in PAYLOAD_VECTORS {
            let (valid, invalid) = vectors(text);
            assert!(!valid.is_empty() && !invalid.is_empty());
        }
    }
}
