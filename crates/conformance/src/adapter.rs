//! The adapter contract: the messages a runner and a client adapter exchange as JSON lines,
//! generated from `schema/conformance/adapter.schema.json` (see
//! `generated/conformance/docs/REFERENCE.md`).
//!
//! [`AdapterCommand`] goes to the adapter's stdin, one per line: what the application does.
//! [`AdapterReport`] comes from its stdout, one per line: what the application saw.

#![allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used
)]

include!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../generated/conformance/rust/types.rs"
));
