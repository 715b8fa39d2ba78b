//! Frames encoded once and shared by reference: an event is serialized to its frame once, when
//! it is published, and the same bytes go to every session subscribed to its channel and to
//! every replay of it. Cloning a [`FrameText`] or an [`EncodedEvent`] costs a reference count,
//! never a copy or an encode.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use bytes::Bytes;

use crate::types::{Event, ServerMessage};

/// The JSON text of one outbound frame, shared by reference count. Always valid UTF-8.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FrameText(Bytes);

impl FrameText {
    /// The text.
    pub fn as_str(&self) -> &str {
        // Every constructor takes a `String` or another `FrameText`.
        std::str::from_utf8(&self.0).unwrap_or_else(|_| unreachable!("FrameText holds UTF-8"))
    }

    /// The UTF-8 bytes, without the UTF-8 check that [`as_str`](Self::as_str) makes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The UTF-8 bytes, shared with every clone of this text.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// The size in bytes, as the size gate counts it (FERRY-SIZE-1), without the UTF-8 check
    /// that `len` through [`as_str`](Self::as_str) would make.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for FrameText {
    /// Takes the string's buffer as it is, without copying it.
    fn from(text: String) -> Self {
        Self(Bytes::from(text))
    }
}

impl From<&str> for FrameText {
    fn from(text: &str) -> Self {
        Self(Bytes::copy_from_slice(text.as_bytes()))
    }
}

impl Deref for FrameText {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for FrameText {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for FrameText {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for FrameText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for FrameText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event together with its event frame, encoded once.
///
/// The frame is the event as a `ServerMessage` (`{"type":"event",...}`), exactly what
/// [`Codec::encode`](crate::Codec::encode) writes for it, but without a size check: a session
/// compares [`len`](Self::len) with its own `max_message_bytes` before it sends the frame.
#[derive(Clone, PartialEq)]
pub struct EncodedEvent {
    event: Arc<Event>,
    text: FrameText,
}

impl EncodedEvent {
    /// Encodes `event` into its frame.
    pub fn new(event: Event) -> Self {
        let message = ServerMessage::Event(event);
        let text = serde_json::to_string(&message).expect("generated messages always serialize");
        let ServerMessage::Event(event) = message else {
            unreachable!("the message was built as an event")
        };
        Self {
            event: Arc::new(event),
            text: FrameText::from(text),
        }
    }

    /// Parses an event frame's JSON text once and keeps the text as it is, for frames that
    /// come back from a broker shared by several nodes exactly as [`new`](Self::new) wrote
    /// them. Fails on text that is not a `ServerMessage` of type `event`.
    pub fn from_text(text: String) -> Result<Self, serde_json::Error> {
        match serde_json::from_str::<ServerMessage>(&text)? {
            ServerMessage::Event(event) => Ok(Self {
                event: Arc::new(event),
                text: FrameText::from(text),
            }),
            _ => Err(<serde_json::Error as serde::de::Error>::custom(
                "not an event frame",
            )),
        }
    }

    /// The event.
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// The event frame's JSON text.
    pub fn text(&self) -> &FrameText {
        &self.text
    }

    /// The event frame's size in bytes, as the size gate counts it (FERRY-SIZE-1).
    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// Whether the frame is empty; never, since a frame is a JSON object.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }
}

impl From<Event> for EncodedEvent {
    fn from(event: Event) -> Self {
        Self::new(event)
    }
}

impl fmt::Debug for EncodedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncodedEvent")
            .field("channel", &self.event.channel)
            .field("position", &self.event.position)
            .field("bytes", &self.text.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Codec;

    fn event() -> Event {
        serde_json::from_str(
            r#"{"type":"event","channel":"project:alpha:tasks","message_id":"m-1",
                "position":{"epoch":"e-1","seq":7},"published_at_ms":1700000000000,
                "payload":{"task_id":"T-1","progress":0.5}}"#,
        )
        .map(|message: ServerMessage| match message {
            ServerMessage::Event(event) => event,
            other => panic!("not an event: {other:?}"),
        })
        .expect("the event decodes")
    }

    #[test]
    fn the_frame_is_what_the_codec_encodes() {
        let event = event();
        let expected = Codec::default()
            .encode(&ServerMessage::Event(event.clone()))
            .expect("fits");
        let encoded = EncodedEvent::new(event.clone());
        assert_eq!(encoded.text(), expected.as_str());
        assert_eq!(encoded.len(), expected.len());
        assert_eq!(encoded.event(), &event);
    }

    #[test]
    fn from_text_keeps_the_frame_and_refuses_other_messages() {
        let encoded = EncodedEvent::new(event());
        let parsed = EncodedEvent::from_text(encoded.text().as_str().to_owned()).expect("an event");
        assert_eq!(parsed, encoded);
        assert!(EncodedEvent::from_text(r#"{"type":"ping","nonce":"n"}"#.to_owned()).is_err());
        assert!(EncodedEvent::from_text("{".to_owned()).is_err());
    }

    #[test]
    fn a_frame_text_counts_its_utf8_bytes() {
        let text = FrameText::from("{\"x\":\"é…\"}");
        assert_eq!(text.len(), 13, "é is 2 bytes and … is 3");
        assert_eq!(text.len(), text.as_str().len());
        assert!(!text.is_empty());
        assert!(FrameText::from("").is_empty());
    }

    #[test]
    fn a_frame_text_compares_prints_and_gives_up_its_bytes_as_its_text() {
        let json = r#"{"a":1}"#;
        let text = FrameText::from(json.to_owned());
        assert!(text == *json && text != *r#"{"a":2}"#, "against a str");
        assert!(text == json && text != r#"{"a":2}"#, "against a &str");
        assert_eq!(text.to_string(), json);
        assert_eq!(format!("{text:?}"), format!("{json:?}"));
        assert_eq!(&text.clone().into_bytes()[..], json.as_bytes());
    }

    #[test]
    fn an_event_frame_is_never_empty_and_debugs_without_its_payload() {
        let encoded = EncodedEvent::new(event());
        assert!(!encoded.is_empty());
        let debug = format!("{encoded:?}");
        assert!(
            debug.starts_with("EncodedEvent") && debug.contains("bytes"),
            "{debug}"
        );
        assert!(!debug.contains("T-1"), "no payload in logs: {debug}");
    }

    #[test]
    fn clones_share_the_bytes() {
        let encoded = EncodedEvent::new(event());
        let copy = encoded.clone();
        assert_eq!(
            encoded.text().as_str().as_ptr(),
            copy.text().as_str().as_ptr()
        );
    }
}
