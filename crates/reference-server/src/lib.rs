//! `ferry-server`: Ferry's reference server.
//!
//! Empty so far: see the repository README for what is built.
