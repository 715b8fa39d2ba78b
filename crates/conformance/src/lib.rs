//! `ferry-conformance`: the conformance runner that drives any Ferry client or server through the
//! protocol's rules.
//!
//! Empty so far: see the repository README for what is built.
