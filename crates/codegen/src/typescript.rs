//! TypeScript output.
use crate::{Error, SchemaSet};
/// TypeScript files.
pub fn generate(_set: &SchemaSet) -> Result<Vec<(String, String)>, Error> {
    Ok(vec![])
}
