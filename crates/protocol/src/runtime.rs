//! What generated code needs at run time: the bounded number types, the deserializer that
//! keeps optional members from taking `null`, the tagged-union deserializer, and the regular
//! expression engine for `pattern`s. Application crates that generate types for
//! their own payload schemas (`ferry-codegen --schema DIR --out DIR`) use it as
//! `::ferry_protocol::runtime`.

use serde::{Deserialize, Deserializer};

pub use crate::bounded::{Float, Int, UInt};

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
/// and the tag looked up. Either way, a tag selects exactly one variant, whose struct refuses
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
        let mut object = serde_json::Map::new();
        object.insert(first.0.into_owned(), map.next_value()?);
        while let Some((key, value)) = map.next_entry::<String, serde_json::Value>()? {
            if object.insert(key, value).is_some() {
                return Err(A::Error::custom("duplicate member in a message"));
            }
        }
        let tag = match object.remove("type") {
            Some(serde_json::Value::String(tag)) => tag,
            Some(_) => {
                return Err(A::Error::invalid_type(
                    serde::de::Unexpected::Other("a non-string type"),
                    &"a string",
                ));
            }
            None => return Err(A::Error::missing_field("type")),
        };
        T::from_tag(&tag, serde_json::Value::Object(object)).map_err(A::Error::custom)
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
