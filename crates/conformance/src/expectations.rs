//! Checked-in lists of cases known to fail or known to be flaky, with glob patterns.
//!
//! ```toml
//! [[case]]
//! pattern = "client.reconnect.*"   # a glob over case ids
//! reason = "backoff lands in 0.4 (issue #12)"
//! ```
//!
//! A known-failing case that fails is reported as `xfail` and does not fail the run; one that
//! passes is reported as `xpass` and fails the run, so the list is trimmed when a fix lands. A
//! known-flaky case that fails is run again (twice at most); it passes if any run passes.

use std::path::Path;

use globset::{Glob, GlobMatcher};
use serde::Deserialize;

/// How many more times a failing known-flaky case runs.
pub const FLAKY_RETRIES: u32 = 2;

/// How many more times a case whose timing was disturbed runs, listed or not.
pub const DISTURBED_RETRIES: u32 = 2;

/// One entry of a list.
#[derive(Debug, Clone)]
pub struct Expectation {
    /// The glob, as written.
    pub pattern: String,
    /// Why the case is listed.
    pub reason: String,
    matcher: GlobMatcher,
}

/// A list of expectations, read from a TOML file.
#[derive(Debug, Clone, Default)]
pub struct ExpectationList {
    entries: Vec<Expectation>,
}

/// A list that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid list.
    #[error("{path} is not a valid list: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListFile {
    #[serde(default)]
    case: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    pattern: String,
    reason: String,
}

impl ExpectationList {
    /// Reads a list file.
    pub fn load(path: &Path) -> Result<Self, ListError> {
        let text = std::fs::read_to_string(path).map_err(|source| ListError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ListError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses a list from TOML text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: ListFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let entries = file
            .case
            .into_iter()
            .map(|e| {
                let matcher = Glob::new(&e.pattern)
                    .map_err(|err| format!("pattern {:?}: {err}", e.pattern))?
                    .compile_matcher();
                Ok(Expectation {
                    pattern: e.pattern,
                    reason: e.reason,
                    matcher,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { entries })
    }

    /// The first entry that matches the case id.
    pub fn matching(&self, case_id: &str) -> Option<&Expectation> {
        self.entries.iter().find(|e| e.matcher.is_match(case_id))
    }

    /// Every entry.
    pub fn entries(&self) -> &[Expectation] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_case_ids() {
        let list = ExpectationList::parse(
            "[[case]]\npattern = \"client.reconnect.*\"\nreason = \"r\"\n[[case]]\npattern = \"server.size.one-byte-over\"\nreason = \"s\"\n",
        )
        .expect("a valid list");
        assert_eq!(
            list.matching("client.reconnect.cap")
                .map(|e| e.reason.as_str()),
            Some("r")
        );
        assert!(list.matching("server.size.one-byte-over").is_some());
        assert!(list.matching("server.size.at-limit").is_none());
        assert!(list.matching("client.heartbeat.pong").is_none());
    }

    #[test]
    fn a_bad_list_is_refused_with_the_reason() {
        let error = ExpectationList::parse("[[case]]\npattern = \"[\"\nreason = \"r\"\n")
            .expect_err("an unclosed class");
        assert!(error.contains("pattern \"[\""), "{error}");
        assert!(ExpectationList::parse("[[case]]\npattern = \"x\"\n").is_err());
    }
}
