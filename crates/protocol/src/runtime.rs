//! What generated code needs at run time: the bounded number types, the deserializer that
//! keeps optional members from taking `null`, the tagged-union deserializer, the regular
//! expression engine for `pattern`s, and the [`Method`] trait an application's RPC method
//! types implement. Application crates that generate types for
//! their own payload schemas (`ferry-codegen --schema DIR --out DIR`) use it as
//! `::ferry_protocol::runtime`.

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

pub use crate::bounded::{Float, Int, UInt};
pub use crate::rpc::Method;

/// The engine that checks the schema's `pattern`s: the `regex` crate, linear in the input.
/// `ferry-codegen lint` refuses patterns it cannot compile (look-around, back-references), so
/// every generated pattern compiles.
pub use regex::Regex;

/// Deserializes a member that is present: `Some(value)`, refusing `null`.
///
/// Generated code puts it on optional members together with `#[serde(default)]`, so an absent
/// member is `None` and a present one must be a valid value. JSON Schema keeps "optional" (may
/// be absent) apart from "nullable" (may be null); serde's plain `Option` would accept both.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// A union of messages told apart by a `type` tag, as generated code emits it.
///
/// Generated unions deserialize through [`deserialize_tagged`]: when `type` is the object's
/// first member (as every Ferry encoder writes it), the rest of the object streams straight
/// into the variant's struct with no intermediate tree; otherwise the object is buffered once
/// member by member as JSON text, and the tag looked up. Either way, a tag selects exactly one variant, whose struct refuses
/// members that are not its own, so a body of one message cannot pass under another's tag.
pub trait Tagged: Sized {
    /// Every value the tag may take.
    const TYPES: &'static [&'static str];

    /// Deserializes the variant named `tag` from `body` (the object without its tag).
    fn from_tag<'de, D: Deserializer<'de>>(tag: &str, body: D) -> Result<Self, D::Error>;
}

/// Deserializes a tagged union (see [`Tagged`]).
pub fn deserialize_tagged<'de, T: Tagged, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<T, D::Error> {
    deserializer.deserialize_map(TaggedVisitor(std::marker::PhantomData))
}

struct TaggedVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: Tagged> serde::de::Visitor<'de> for TaggedVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "an object whose \"type\" is one of {:?}", T::TYPES)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        use serde::de::Error;
        let Some(first) = map.next_key::<Text<'de>>()? else {
            return Err(A::Error::missing_field("type"));
        };
        if first.0 == "type" {
            let tag: Text<'de> = map.next_value()?;
            return T::from_tag(&tag.0, serde::de::value::MapAccessDeserializer::new(map));
        }
        // Each member is kept as its JSON text, so a body read this way is read exactly as a
        // streamed one would be (a payload keeps its bytes).
        let mut members = std::collections::BTreeMap::new();
        members.insert(first.0.into_owned(), map.next_value::<Box<RawValue>>()?);
        while let Some((key, value)) = map.next_entry::<String, Box<RawValue>>()? {
            if members.insert(key, value).is_some() {
                return Err(A::Error::custom("duplicate member in a message"));
            }
        }
        let tag = members
            .remove("type")
            .ok_or_else(|| A::Error::missing_field("type"))?;
        let tag: String = serde_json::from_str(tag.get()).map_err(|_| {
            A::Error::invalid_type(
                serde::de::Unexpected::Other("a non-string type"),
                &"a string",
            )
        })?;
        let body = serde::de::value::MapDeserializer::<_, serde_json::Error>::new(
            members.iter().map(|(key, value)| (key.as_str(), &**value)),
        );
        T::from_tag(&tag, body).map_err(A::Error::custom)
    }
}

/// A string that borrows from the input when it can.
struct Text<'de>(std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> serde::de::Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(Text(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(std::borrow::Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(std::borrow::Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// A JSON value kept as its text: what generated code uses for a definition that admits every
/// JSON value (the protocol's `Payload`).
///
/// Decoding checks the text against JSON's grammar but builds no tree, and encoding writes the
/// text back byte for byte, so a frame that only carries the value (a server fanning out an
/// event, a client handing it to its application) never pays for parsing it. Whoever needs the
/// value parses it: [`to_value`](Self::to_value) for a `serde_json::Value`, or
/// [`deserialize`](Self::deserialize) straight into an application's own type. Parsing can
/// refuse what the grammar allows: a lone surrogate escape in a string, a number beyond the
/// range of a double.
///
/// Two values are equal when they parse to the same JSON value, whatever their whitespace
/// (`{"a": 1}` equals `{"a":1}`), or when their texts are the same.
#[derive(Clone, Debug, serde::Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// The JSON text of `value`, written compactly.
    pub fn from_value(value: &serde_json::Value) -> Self {
        Self(serde_json::value::to_raw_value(value).expect("a serde_json::Value always encodes"))
    }

    /// `text` if it is one JSON value (surrounding whitespace is kept).
    pub fn from_text(text: impl Into<String>) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text.into()).map(Self)
    }

    /// The JSON text, exactly as decoded or encoded.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// The value as a `serde_json::Value` (parses the text).
    pub fn to_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }

    /// The value as a `T` (parses the text straight into it, with no intermediate tree).
    pub fn deserialize<'a, T: Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        if self.as_str() == other.as_str() {
            return true;
        }
        match (self.to_value(), other.to_value()) {
            (Ok(one), Ok(other)) => one == other,
            _ => false,
        }
    }
}

impl From<serde_json::Value> for RawJson {
    fn from(value: serde_json::Value) -> Self {
        Self::from_value(&value)
    }
}

impl std::fmt::Display for RawJson {
    /// Writes the JSON text.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::{Codec, Frame, ServerMessage};

    use super::RawJson;

    fn event(payload: &str, type_first: bool) -> String {
        let body = format!(
            r#""channel":"project:alpha:tasks","message_id":"m-1","position":{{"epoch":"e1","seq":3}},"published_at_ms":5,"payload":{payload}"#
        );
        if type_first {
            format!(r#"{{"type":"event",{body}}}"#)
        } else {
            format!(r#"{{{body},"type":"event"}}"#)
        }
    }

    fn payload_of(frame: &str) -> RawJson {
        match Codec::default().decode_server(Frame::Text(frame.as_bytes())) {
            Ok(ServerMessage::Event(event)) => event.payload,
            other => panic!("{frame}: {other:?}"),
        }
    }

    #[test]
    fn a_payload_is_kept_byte_for_byte_whichever_member_comes_first() {
        let text = r#"{ "task_id": "T-1",  "progress": 0.50, "tags": ["é", "\u00e9"] }"#;
        for type_first in [true, false] {
            let payload = payload_of(&event(text, type_first));
            assert_eq!(payload.as_str(), text);
            assert_eq!(
                serde_json::to_string(&payload).expect("encodes"),
                text,
                "encoding writes the text back"
            );
        }
    }

    #[test]
    fn equality_is_by_value_and_parsing_is_on_demand() {
        let spaced = RawJson::from_text(r#"{ "a": [1, 2] }"#).expect("JSON");
        let compact = RawJson::from_value(&json!({ "a": [1, 2] }));
        assert_eq!(spaced, compact);
        assert_ne!(spaced, RawJson::from_value(&json!({ "a": [2, 1] })));
        assert_eq!(compact.as_str(), r#"{"a":[1,2]}"#);

        #[derive(serde::Deserialize, PartialEq, Debug)]
        struct Shape {
            a: Vec<u8>,
        }
        assert_eq!(
            spaced.deserialize::<Shape>().expect("fits"),
            Shape { a: vec![1, 2] }
        );
        assert!(spaced.deserialize::<u8>().is_err());
        assert!(RawJson::from_text("{").is_err(), "the grammar is checked");
    }

    #[test]
    fn text_the_grammar_allows_but_a_parser_refuses_is_carried_and_refused_only_when_parsed() {
        for text in [r#""\ud800""#, "1e400"] {
            for type_first in [true, false] {
                let payload = payload_of(&event(text, type_first));
                assert_eq!(payload.as_str(), text);
                assert!(payload.to_value().is_err(), "{text}");
                assert_ne!(payload, RawJson::from_value(&json!(null)));
            }
        }
    }
}
