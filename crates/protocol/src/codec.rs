//! Frames to messages and back, with the size gate first.
//!
//! Decoding a frame goes through three gates, in this order, and stops at the first that
//! refuses it:
//! 1. **size**: a frame larger than the advertised `max_message_bytes` is refused before any
//!    parsing (FERRY-SIZE-1, FERRY-SIZE-3);
//! 2. **framing**: a binary frame, or a text frame that is not UTF-8, is refused
//!    (FERRY-TRANSPORT-3, FERRY-TRANSPORT-4);
//! 3. **schema**: the text is parsed into the generated types, whose tagged unions, bounded
//!    numbers and constrained strings enforce the schema (FERRY-TRANSPORT-2, FERRY-TRANSPORT-5).
//!
//! Every [`DecodeError`] says what the spec prescribes for it ([`DecodeError::outcome`]): a
//! close code, or an error message with an error code that keeps the session open.
//! Encoding applies the same size gate on the way out (FERRY-SIZE-2).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::tables::{close_code, defaults};
use crate::types::{ClientMessage, ErrorCode, ServerMessage};

/// A WebSocket data frame as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A text frame's payload (expected to be UTF-8 JSON).
    Text(&'a [u8]),
    /// A binary frame's payload (never valid in ferry.v1).
    Binary(&'a [u8]),
}

impl Frame<'_> {
    /// The payload's length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Frame::Text(bytes) | Frame::Binary(bytes) => bytes.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A message family that travels in one direction: [`ClientMessage`] or [`ServerMessage`].
pub trait Message: Serialize + DeserializeOwned {
    /// Every value of the `type` tag this family knows.
    const TYPES: &'static [&'static str];
}

impl Message for ClientMessage {
    const TYPES: &'static [&'static str] = ClientMessage::TYPES;
}

impl Message for ServerMessage {
    const TYPES: &'static [&'static str] = ServerMessage::TYPES;
}

/// What the spec prescribes for a frame that could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Close the session with this code.
    Close(u16),
    /// Answer with an error message carrying this code (and `id: null`); the session stays open.
    Reply(ErrorCode),
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame is larger than the maximum message size.
    #[error("the frame is {size} bytes, above the maximum of {max}")]
    TooLarge {
        /// The frame's size in bytes.
        size: usize,
        /// The maximum message size in bytes.
        max: usize,
    },
    /// The frame is binary; ferry.v1 has no binary encoding.
    #[error("binary frames are not supported")]
    Binary,
    /// The text frame is not valid UTF-8.
    #[error("the text frame is not valid UTF-8")]
    InvalidUtf8,
    /// The text is not a JSON object.
    #[error("the frame is not a JSON object: {0}")]
    NotAnObject(String),
    /// The object has no string `type` member.
    #[error("the message has no string \"type\" member")]
    MissingType,
    /// The `type` names no message of this direction.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// The message of this type breaks its schema (a missing, unknown or invalid member).
    #[error("invalid {type_name} message: {detail}")]
    Invalid {
        /// The message's `type`.
        type_name: String,
        /// What serde reported, naming the member.
        detail: String,
    },
}

impl DecodeError {
    /// What the spec prescribes for this error: a close code or an error reply.
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::TooLarge { .. } => Outcome::Close(close_code::MESSAGE_TOO_BIG),
            Self::Binary => Outcome::Close(close_code::UNSUPPORTED_DATA),
            Self::InvalidUtf8 => Outcome::Close(close_code::INVALID_PAYLOAD),
            Self::UnknownType(_) => Outcome::Reply(ErrorCode::UnknownType),
            Self::NotAnObject(_) | Self::MissingType | Self::Invalid { .. } => {
                Outcome::Reply(ErrorCode::BadRequest)
            }
        }
    }
}

/// A message that could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The encoded message is larger than the maximum message size (FERRY-SIZE-2).
    #[error("the message is {size} bytes, above the maximum of {max}")]
    TooLarge {
        /// The encoded size in bytes.
        size: usize,
        /// The maximum message size in bytes.
        max: usize,
    },
}

impl EncodeError {
    /// The error code a client reports to its application for this error.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::TooLarge { .. } => ErrorCode::MessageTooLarge,
        }
    }
}

/// Decodes and encodes messages under one maximum message size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    max_message_bytes: usize,
}

impl Default for Codec {
    /// A codec with the protocol's default maximum of 131072 bytes.
    fn default() -> Self {
        Self::new(defaults::MAX_MESSAGE_BYTES as usize)
    }
}

impl Codec {
    /// A codec that refuses messages larger than `max_message_bytes`.
    pub const fn new(max_message_bytes: usize) -> Self {
        Self { max_message_bytes }
    }

    /// The maximum message size in bytes; a message of exactly this size is allowed.
    pub const fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// Decodes a frame a server received from a client.
    pub fn decode_client(&self, frame: Frame<'_>) -> Result<ClientMessage, DecodeError> {
        self.decode(frame)
    }

    /// Decodes a frame a client received from a server.
    pub fn decode_server(&self, frame: Frame<'_>) -> Result<ServerMessage, DecodeError> {
        self.decode(frame)
    }

    /// Decodes a frame into a message of family `M`: size gate, framing, then schema.
    pub fn decode<M: Message>(&self, frame: Frame<'_>) -> Result<M, DecodeError> {
        if frame.len() > self.max_message_bytes {
            return Err(DecodeError::TooLarge {
                size: frame.len(),
                max: self.max_message_bytes,
            });
        }
        let bytes = match frame {
            Frame::Text(bytes) => bytes,
            Frame::Binary(_) => return Err(DecodeError::Binary),
        };
        let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)?;
        serde_json::from_str(text).map_err(|error| classify::<M>(text, &error))
    }

    /// Encodes a message, refusing it if it would exceed the maximum message size.
    pub fn encode<M: Serialize>(&self, message: &M) -> Result<String, EncodeError> {
        let text = serde_json::to_string(message).expect("generated messages always serialize");
        if text.len() > self.max_message_bytes {
            return Err(EncodeError::TooLarge {
                size: text.len(),
                max: self.max_message_bytes,
            });
        }
        Ok(text)
    }
}

/// Explains a failed decode. Runs only on the error path, so it may parse the text again.
fn classify<M: Message>(text: &str, error: &serde_json::Error) -> DecodeError {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(syntax) => return DecodeError::NotAnObject(syntax.to_string()),
    };
    let Some(object) = value.as_object() else {
        return DecodeError::NotAnObject(format!("found {}", json_kind(&value)));
    };
    match object.get("type").and_then(serde_json::Value::as_str) {
        None => DecodeError::MissingType,
        Some(name) if !M::TYPES.contains(&name) => DecodeError::UnknownType(name.to_owned()),
        Some(name) => DecodeError::Invalid {
            type_name: name.to_owned(),
            detail: error.to_string(),
        },
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::close_code;

    fn text(s: &str) -> Frame<'_> {
        Frame::Text(s.as_bytes())
    }

    #[test]
    fn a_frame_tagged_as_one_message_with_the_body_of_another_is_refused() {
        let codec = Codec::default();
        // A pong's body under the subscribe tag, and a subscribe's body under the pong tag.
        for frame in [
            r#"{"type":"subscribe","nonce":"n-1"}"#,
            r#"{"type":"pong","id":"r1","channel":"project:alpha:tasks"}"#,
        ] {
            let error = codec.decode_client(text(frame)).expect_err(frame);
            assert!(
                matches!(error, DecodeError::Invalid { .. }),
                "{frame}: {error:?}"
            );
            assert_eq!(error.outcome(), Outcome::Reply(ErrorCode::BadRequest));
        }
        // The same bodies under their own tags decode.
        assert!(
            codec
                .decode_client(text(r#"{"type":"pong","nonce":"n-1"}"#))
                .is_ok()
        );
        assert!(
            codec
                .decode_client(text(
                    r#"{"type":"subscribe","id":"r1","channel":"project:alpha:tasks"}"#
                ))
                .is_ok()
        );
    }

    #[test]
    fn the_tag_may_stand_anywhere_in_the_object() {
        let codec = Codec::default();
        let first = codec.decode_client(text(
            r#"{"type":"subscribe","id":"r1","channel":"project:alpha:tasks"}"#,
        ));
        let last = codec.decode_client(text(
            r#"{"id":"r1","channel":"project:alpha:tasks","type":"subscribe"}"#,
        ));
        assert_eq!(first.expect("tag first"), last.expect("tag last"));
        let misplaced = codec.decode_client(text(r#"{"nonce":"n-1","type":"subscribe"}"#));
        assert!(
            matches!(misplaced, Err(DecodeError::Invalid { .. })),
            "{misplaced:?}"
        );
    }

    #[test]
    fn a_repeated_or_non_string_tag_is_refused() {
        let codec = Codec::default();
        for frame in [
            r#"{"type":"pong","type":"subscribe","nonce":"n-1"}"#,
            r#"{"nonce":"n-1","type":"pong","type":"pong"}"#,
            r#"{"nonce":"n-1","type":1}"#,
            r#"{"type":null,"nonce":"n-1"}"#,
        ] {
            let error = codec.decode_client(text(frame)).expect_err(frame);
            assert_eq!(
                error.outcome(),
                Outcome::Reply(ErrorCode::BadRequest),
                "{frame}: {error}"
            );
        }
    }

    #[test]
    fn a_server_message_is_an_unknown_type_for_the_server() {
        let error = Codec::default()
            .decode_client(text(r#"{"type":"ping","nonce":"n"}"#))
            .expect_err("ping is server-to-client");
        assert_eq!(error, DecodeError::UnknownType("ping".into()));
        assert_eq!(error.outcome(), Outcome::Reply(ErrorCode::UnknownType));
    }

    #[test]
    fn the_size_gate_comes_before_parsing() {
        let codec = Codec::new(16);
        // Not JSON at all, but too large: the size gate answers, not the parser.
        let error = codec
            .decode_client(text("x".repeat(17).as_str()))
            .expect_err("17 > 16");
        assert_eq!(error, DecodeError::TooLarge { size: 17, max: 16 });
        assert_eq!(error.outcome(), Outcome::Close(close_code::MESSAGE_TOO_BIG));
    }

    #[test]
    fn a_frame_of_exactly_the_maximum_size_is_allowed() {
        let frame = r#"{"type":"pong","nonce":"n-1"}"#;
        let codec = Codec::new(frame.len());
        assert!(codec.decode_client(text(frame)).is_ok());
        assert!(
            Codec::new(frame.len() - 1)
                .decode_client(text(frame))
                .is_err()
        );
    }

    #[test]
    fn binary_frames_and_invalid_utf8_close_the_session() {
        let codec = Codec::default();
        let binary = codec
            .decode_client(Frame::Binary(b"{}"))
            .expect_err("binary");
        assert_eq!(
            binary.outcome(),
            Outcome::Close(close_code::UNSUPPORTED_DATA)
        );
        let utf8 = codec
            .decode_client(Frame::Text(b"{\"type\":\"pong\",\"nonce\":\"\xff\"}"))
            .expect_err("utf-8");
        assert_eq!(utf8.outcome(), Outcome::Close(close_code::INVALID_PAYLOAD));
    }

    #[test]
    fn malformed_text_gets_a_typed_error_reply() {
        let codec = Codec::default();
        let cases = [
            ("{", ErrorCode::BadRequest),
            ("[]", ErrorCode::BadRequest),
            (r#"{"id":"r1"}"#, ErrorCode::BadRequest),
            (r#"{"type":7}"#, ErrorCode::BadRequest),
            (r#"{"type":"subscribe_all"}"#, ErrorCode::UnknownType),
            (
                r#"{"type":"subscribe","id":"r1","channel":"Not A Channel"}"#,
                ErrorCode::BadRequest,
            ),
        ];
        for (frame, code) in cases {
            let error = codec.decode_client(text(frame)).expect_err(frame);
            assert_eq!(error.outcome(), Outcome::Reply(code), "{frame}: {error}");
        }
    }

    #[test]
    fn encoding_refuses_a_message_above_the_maximum() {
        let message: ClientMessage =
            serde_json::from_str(r#"{"type":"pong","nonce":"n-1"}"#).expect("valid pong");
        let size = Codec::default().encode(&message).expect("small").len();
        assert!(Codec::new(size).encode(&message).is_ok());
        let error = Codec::new(size - 1)
            .encode(&message)
            .expect_err("one byte over");
        assert_eq!(
            error,
            EncodeError::TooLarge {
                size,
                max: size - 1
            }
        );
        assert_eq!(error.error_code(), ErrorCode::MessageTooLarge);
    }
}
