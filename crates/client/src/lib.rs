//! `ferry-client`: the async Rust client of Ferry, for daemons and backend services.
//!
//! Empty so far: the client will be a thin tokio shell over the client session of
//! `ferry-protocol`. See the repository README for what is built.
