//! Docs output.
use crate::{Error, SchemaSet};
/// File name.
pub fn file_name(_set: &SchemaSet) -> &'static str {
    "PROTOCOL.md"
}
/// Docs.
pub fn generate(_set: &SchemaSet) -> Result<String, Error> {
    Ok(String::new())
}
