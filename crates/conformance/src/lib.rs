//! `ferry-conformance`: drives any Ferry server or client, in any language, through the
//! protocol's rules, and reports which hold.
//!
//! Two modes, each a [`Suite`]:
//! - [`server`]: drives a server under test through its ticket, publish and history endpoints
//!   and raw WebSocket frames, valid or not.
//! - [`client`]: starts a client adapter (see [`adapter`] and
//!   `generated/conformance/docs/REFERENCE.md`) and drives it against a scripted server the
//!   runner hosts itself, with fault injection.
//!
//! Each case has a stable id, cites rule ids from `schema/rules.json` and has a level
//! ([`catalogue`]). [`runner`] runs them in parallel under per-case deadlines with the
//! known-failing and known-flaky lists ([`expectations`]) applied, and [`report`] writes the
//! results as a table, JSON, JUnit XML and Markdown.

pub mod adapter;
pub mod case;
pub mod catalogue;
pub mod client;
pub mod expectations;
pub mod lag;
pub mod report;
pub mod runner;
pub mod server;
pub mod transcript;

pub use case::{CaseResult, Finding, Suite};
pub use catalogue::{CaseInfo, Level, Mode};
pub use runner::{RunOptions, RunReport, Status, Verdict, default_jobs, run};
pub use transcript::Transcript;
