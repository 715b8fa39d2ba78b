//! What a case body returns, and the interface each mode offers the runner.

use std::future::Future;
use std::pin::Pin;

use crate::catalogue::CaseInfo;
use crate::transcript::Transcript;

/// Why a case did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The implementation broke the rule: what the rule asks, and what happened instead.
    Fail {
        /// What the rule asks for.
        expected: String,
        /// What the implementation did.
        observed: String,
    },
    /// The case does not apply: the implementation declares the feature unsupported, or the
    /// run lacks an option the case needs.
    Skip(String),
    /// The case could not reach a verdict: the adapter crashed or hung, the server could not
    /// be reached, or the runner's own set-up failed.
    Error(String),
    /// A timing check failed while the runner's own timer woke later than the check's
    /// tolerance allows (see [`crate::lag`]): the machine, not the implementation, may be the
    /// cause. The runner runs such a case again.
    Inconclusive(String),
}

impl Finding {
    /// A failure: `expected` is what the rule asks, `observed` what happened.
    pub fn fail(expected: impl Into<String>, observed: impl Into<String>) -> Self {
        Self::Fail {
            expected: expected.into(),
            observed: observed.into(),
        }
    }

    /// A skip with its reason.
    pub fn skip(reason: impl Into<String>) -> Self {
        Self::Skip(reason.into())
    }

    /// A disturbed measurement, with what was measured and the lag observed.
    pub fn inconclusive(reason: impl Into<String>) -> Self {
        Self::Inconclusive(reason.into())
    }

    /// An error with what went wrong.
    pub fn error(reason: impl Into<String>) -> Self {
        Self::Error(reason.into())
    }
}

/// The verdict of a case body: `Ok(())` is a pass.
pub type CaseResult = Result<(), Finding>;

/// A running case body.
pub type CaseFuture = Pin<Box<dyn Future<Output = CaseResult> + Send>>;

/// One mode of the runner: starts a case's body, given its catalogue entry and its transcript.
pub trait Suite: Send + Sync + 'static {
    /// A short description of what is under test, for reports (a URL, a command line).
    fn target(&self) -> String;

    /// Starts the body of `case`; the runner applies the case's deadline around it.
    fn start(&self, case: &'static CaseInfo, transcript: Transcript) -> CaseFuture;
}

/// Fails unless `condition` holds.
pub fn ensure(
    condition: bool,
    expected: impl Into<String>,
    observed: impl FnOnce() -> String,
) -> CaseResult {
    if condition {
        Ok(())
    } else {
        Err(Finding::fail(expected, observed()))
    }
}
