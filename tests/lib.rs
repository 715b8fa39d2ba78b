//! Workspace-level tests of Ferry that span crates; the tests live in `tests/tests/`.
//!
//! `vectors.rs` checks every test vector of `schema/`, `schema/example-app/` and
//! `schema/conformance/` two of the three ways the spec requires: with the `jsonschema` crate
//! and with the generated Rust types (the third, the generated TypeScript under `tsc --strict`
//! and node, runs through npm).
