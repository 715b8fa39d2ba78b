//! What generated code needs at run time: the bounded number types and the deserializer that
//! keeps optional members from taking `null`. Application crates that generate types for
//! their own payload schemas (`ferry-codegen --schema DIR --out DIR`) use it as
//! `::ferry_protocol::runtime`.

use serde::{Deserialize, Deserializer};

pub use crate::bounded::{Float, Int, UInt};

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
