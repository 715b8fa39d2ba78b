//! Workspace-level tests of Ferry that span crates; the tests live in `tests/tests/`.
//!
//! `vectors.rs` checks every test vector of `schema/`, `schema/example-app/` and
//! `schema/conformance/` two of the three ways the spec requires: with the `jsonschema` crate
//! and with the generated Rust types (the third, the generated TypeScript under `tsc --strict`
//! and node, runs through npm).
//!
//! `walkthrough.rs` runs the root README's "Try it" steps as written: `ferry-server`, the `tail`
//! example, the `curl` commands, a Ctrl-C drain and a restart. It runs the binaries that
//! `cargo test --workspace` builds beside it (`target/debug/ferry-server`,
//! `target/debug/examples/tail`).
