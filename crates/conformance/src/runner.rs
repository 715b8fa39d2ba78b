//! Runs cases: in parallel up to a limit, each under its deadline, with the known-failing and
//! known-flaky lists applied, and collects their results.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::case::{Finding, Suite};
use crate::catalogue::{CaseInfo, Level, Mode};
use crate::expectations::{DISTURBED_RETRIES, ExpectationList, FLAKY_RETRIES};
use crate::transcript::{Entry, Transcript};

/// A case's final status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The implementation holds the rule.
    Pass,
    /// The implementation breaks the rule.
    Fail,
    /// The case does not apply to this implementation.
    Skip,
    /// No verdict: crash, hang or set-up failure.
    Error,
    /// Listed as known to fail, and failed (or erred).
    Xfail,
    /// Listed as known to fail, but passed: the list is out of date.
    Xpass,
    /// Every run's timing was disturbed by the machine's load (see [`crate::lag`]).
    Inconclusive,
}

impl Status {
    /// The status as the table prints it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Skip => "SKIP",
            Self::Error => "ERROR",
            Self::Xfail => "XFAIL",
            Self::Xpass => "XPASS",
            Self::Inconclusive => "INCONC",
        }
    }
}

/// The result of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    /// The case's id.
    pub id: String,
    /// Its level.
    pub level: Level,
    /// The rules it checks.
    pub rules: Vec<String>,
    /// What it checks.
    pub title: String,
    /// The rules' sentences.
    pub rule_texts: Vec<&'static str>,
    /// The final status.
    pub status: Status,
    /// What the rule asks for, on a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// What happened instead, on a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<String>,
    /// Why it was skipped, why it erred, or the list entry that marks it known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// How many times it ran (more than once for a known-flaky case that failed).
    pub attempts: u32,
    /// How long its last run took, in milliseconds.
    pub duration_ms: u64,
    /// Whether a skip is declared in the known-unsupported list, so that it leaves the run
    /// complete.
    pub declared_unsupported: bool,
    /// What the last run saw and did.
    pub transcript: Vec<Entry>,
}

/// The verdict of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every MUST case passed (every case, in a strict run), or is listed as known to fail.
    Passed,
    /// A case fails the run: see [`RunReport::failing`].
    Failed,
    /// Nothing failed, but a MUST case (any case, in a strict run) reached no pass or fail:
    /// it was skipped without being declared unsupported, or its timing stayed disturbed.
    Incomplete,
}

impl Verdict {
    /// The verdict as reports print it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Passed => "PASSED",
            Self::Failed => "FAILED",
            Self::Incomplete => "INCOMPLETE",
        }
    }
}

/// The results of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Server or client.
    pub mode: Mode,
    /// What was under test.
    pub target: String,
    /// Whether SHOULD failures fail the run.
    pub strict: bool,
    /// How long the run took, in milliseconds.
    pub duration_ms: u64,
    /// Every case that ran, in catalogue order.
    pub cases: Vec<CaseReport>,
}

impl RunReport {
    /// How many cases ended with `status`.
    pub fn count(&self, status: Status) -> usize {
        self.cases.iter().filter(|c| c.status == status).count()
    }

    /// The cases that make the run fail: a failure or error at MUST level (at any level with
    /// `strict`), and every xpass.
    pub fn failing(&self) -> impl Iterator<Item = &CaseReport> {
        self.cases.iter().filter(|c| match c.status {
            Status::Fail | Status::Error => self.strict || c.level == Level::Must,
            Status::Xpass => true,
            Status::Pass | Status::Skip | Status::Xfail | Status::Inconclusive => false,
        })
    }

    /// The cases that leave the run incomplete: a skip that the known-unsupported list does
    /// not declare, and an inconclusive case, at MUST level (at any level with `strict`).
    pub fn unverified(&self) -> impl Iterator<Item = &CaseReport> {
        self.cases.iter().filter(|c| {
            let open = match c.status {
                Status::Skip => !c.declared_unsupported,
                Status::Inconclusive => true,
                _ => false,
            };
            open && (self.strict || c.level == Level::Must)
        })
    }

    /// Whether no case fails the run (it may still be incomplete).
    pub fn passed(&self) -> bool {
        self.failing().next().is_none()
    }

    /// The run's verdict: failed, else incomplete, else passed.
    pub fn verdict(&self) -> Verdict {
        if !self.passed() {
            Verdict::Failed
        } else if self.unverified().next().is_some() {
            Verdict::Incomplete
        } else {
            Verdict::Passed
        }
    }
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// How many cases run at once.
    pub jobs: usize,
    /// Whether SHOULD failures fail the run.
    pub strict: bool,
    /// Cases known to fail.
    pub known_failing: ExpectationList,
    /// Cases known to be flaky.
    pub known_flaky: ExpectationList,
    /// Cases the implementation declares unsupported: their skips leave the run complete.
    pub known_unsupported: ExpectationList,
    /// Print a line per finished case on stderr.
    pub progress: bool,
}

/// How many cases run at once by default: one per core the runner may use, so that the
/// cases' timing does not compete with itself for the processor.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            jobs: default_jobs(),
            strict: false,
            known_failing: ExpectationList::default(),
            known_flaky: ExpectationList::default(),
            known_unsupported: ExpectationList::default(),
            progress: false,
        }
    }
}

/// Runs `cases` against `suite`. Cases marked `last` run after every other case, one at a time.
pub async fn run(
    suite: Arc<dyn Suite>,
    mode: Mode,
    cases: Vec<&'static CaseInfo>,
    options: &RunOptions,
) -> RunReport {
    crate::lag::start();
    let started = Instant::now();
    let total = cases.len();
    let (last, first): (Vec<_>, Vec<_>) = cases.iter().copied().partition(|c| c.last);
    let mut reports = Vec::with_capacity(total);
    let mut done = 0;
    for (batch, jobs) in [(first, options.jobs.max(1)), (last, 1)] {
        let limit = Arc::new(Semaphore::new(jobs));
        let mut running = JoinSet::new();
        for case in batch {
            let suite = suite.clone();
            let limit = limit.clone();
            let flaky = options.known_flaky.matching(&case.id).is_some();
            running.spawn(async move {
                let _permit = limit.acquire_owned().await;
                run_case(suite, case, flaky).await
            });
        }
        while let Some(joined) = running.join_next().await {
            let (case, finding, attempts, duration, transcript) =
                joined.expect("run_case never panics: bodies run in their own task");
            let report = conclude(case, finding, attempts, duration, transcript, options);
            done += 1;
            if options.progress {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(
                    err,
                    "[{done:>3}/{total}] {:<5} {} ({} ms){}",
                    report.status.label(),
                    report.id,
                    report.duration_ms,
                    report
                        .message
                        .as_deref()
                        .filter(|_| report.status != Status::Pass)
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                );
            }
            reports.push(report);
        }
    }
    let order: Vec<&str> = cases.iter().map(|c| c.id.as_str()).collect();
    reports.sort_by_key(|r| order.iter().position(|id| *id == r.id));
    RunReport {
        mode,
        target: suite.target(),
        strict: options.strict,
        duration_ms: millis(started.elapsed()),
        cases: reports,
    }
}

type Ran = (
    &'static CaseInfo,
    Result<(), Finding>,
    u32,
    Duration,
    Transcript,
);

/// Runs one case under its deadline, again (up to [`FLAKY_RETRIES`] times) when it is
/// known to be flaky and did not pass, and again (up to [`DISTURBED_RETRIES`] times) when its
/// timing was disturbed.
async fn run_case(suite: Arc<dyn Suite>, case: &'static CaseInfo, flaky: bool) -> Ran {
    let mut attempts = 0;
    let mut disturbed = 0;
    let mut lags = Vec::new();
    loop {
        attempts += 1;
        let transcript = Transcript::new();
        let started = Instant::now();
        let body = tokio::spawn(suite.start(case, transcript.clone()));
        let abort = body.abort_handle();
        let finding = match tokio::time::timeout(case.deadline(), body).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(Finding::error(format!("the case's body panicked: {join}"))),
            Err(_) => {
                abort.abort();
                transcript.note("runner", "deadline passed: case stopped");
                Err(Finding::error(format!(
                    "no verdict within the case's deadline of {} ms (the implementation or its adapter hung)",
                    case.deadline().as_millis()
                )))
            }
        };
        if let Err(Finding::Inconclusive(why)) = &finding {
            disturbed += 1;
            lags.push(why.clone());
            if disturbed <= DISTURBED_RETRIES {
                continue;
            }
            let finding = Err(Finding::inconclusive(format!(
                "{} runs, each disturbed: {}",
                lags.len(),
                lags.join(" | ")
            )));
            return (case, finding, attempts, started.elapsed(), transcript);
        }
        let retry = flaky
            && attempts <= FLAKY_RETRIES + disturbed
            && matches!(finding, Err(Finding::Fail { .. } | Finding::Error(_)));
        if !retry {
            return (case, finding, attempts, started.elapsed(), transcript);
        }
    }
}

fn conclude(
    case: &'static CaseInfo,
    finding: Result<(), Finding>,
    attempts: u32,
    duration: Duration,
    transcript: Transcript,
    options: &RunOptions,
) -> CaseReport {
    let known = options.known_failing.matching(&case.id);
    let finding = finding.map_err(|f| match f {
        Finding::Fail { expected, observed } => {
            Finding::fail(transcript.masked(&expected), transcript.masked(&observed))
        }
        Finding::Skip(m) => Finding::skip(transcript.masked(&m)),
        Finding::Error(m) => Finding::error(transcript.masked(&m)),
        Finding::Inconclusive(m) => Finding::inconclusive(transcript.masked(&m)),
    });
    let (mut status, expected, observed, mut message) = match finding {
        Ok(()) => (Status::Pass, None, None, None),
        Err(Finding::Fail { expected, observed }) => {
            (Status::Fail, Some(expected), Some(observed), None)
        }
        Err(Finding::Skip(reason)) => (Status::Skip, None, None, Some(reason)),
        Err(Finding::Error(reason)) => (Status::Error, None, None, Some(reason)),
        Err(Finding::Inconclusive(reason)) => (Status::Inconclusive, None, None, Some(reason)),
    };
    if let Some(known) = known {
        let note = format!(
            "listed as known to fail ({}): {}",
            known.pattern, known.reason
        );
        match status {
            Status::Pass => {
                status = Status::Xpass;
                message = Some(format!("{note}; it passes now: remove it from the list"));
            }
            Status::Fail | Status::Error => {
                status = Status::Xfail;
                message = Some(match message {
                    Some(m) => format!("{note}; {m}"),
                    None => note,
                });
            }
            Status::Skip | Status::Xfail | Status::Xpass | Status::Inconclusive => {}
        }
    }
    let declared = (status == Status::Skip)
        .then(|| options.known_unsupported.matching(&case.id))
        .flatten();
    if let Some(declared) = declared {
        message = Some(format!(
            "declared unsupported ({}): {}; {}",
            declared.pattern,
            declared.reason,
            message.unwrap_or_default()
        ));
    }
    CaseReport {
        id: case.id.clone(),
        level: case.level,
        rules: case.rules.clone(),
        title: case.title.clone(),
        rule_texts: case.rule_texts(),
        status,
        expected,
        observed,
        message,
        attempts,
        duration_ms: millis(duration),
        declared_unsupported: declared.is_some(),
        transcript: transcript.entries(),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::case::CaseFuture;

    /// A suite whose case bodies behave as their id says.
    struct Scripted {
        calls: Arc<AtomicU32>,
    }

    impl Suite for Scripted {
        fn target(&self) -> String {
            "scripted".to_owned()
        }

        fn start(&self, case: &'static CaseInfo, transcript: Transcript) -> CaseFuture {
            let calls = self.calls.fetch_add(1, Ordering::SeqCst);
            let id = case.id.clone();
            Box::pin(async move {
                transcript.note("body", &id);
                match id.as_str() {
                    "server.t.pass" => Ok(()),
                    "server.t.fail" => Err(Finding::fail("4401", "a welcome")),
                    "server.t.hang" => std::future::pending().await,
                    "server.t.panic" => panic!("the body broke"),
                    // Fails on its first run only.
                    "server.t.flaky" if calls == 0 => Err(Finding::fail("a pong", "nothing")),
                    "server.t.flaky" => Ok(()),
                    other => Err(Finding::skip(format!("{other} not scripted"))),
                }
            })
        }
    }

    fn case(id: &str, deadline_ms: u64) -> &'static CaseInfo {
        Box::leak(Box::new(CaseInfo {
            id: id.to_owned(),
            mode: Mode::Server,
            rules: vec!["FERRY-TICKET-4".to_owned()],
            level: Level::Must,
            title: id.to_owned(),
            deadline_ms: Some(Duration::from_millis(deadline_ms)),
            last: false,
            requires: Vec::new(),
            params: toml::Table::new(),
        }))
    }

    async fn run_one(id: &str, options: &RunOptions) -> (CaseReport, u32) {
        let calls = Arc::new(AtomicU32::new(0));
        let suite = Arc::new(Scripted {
            calls: calls.clone(),
        });
        let report = run(suite, Mode::Server, vec![case(id, 200)], options).await;
        let case = report.cases.into_iter().next().expect("one case ran");
        (case, calls.load(Ordering::SeqCst))
    }

    fn listed(pattern: &str) -> ExpectationList {
        ExpectationList::parse(&format!(
            "[[case]]\npattern = \"{pattern}\"\nreason = \"listed\"\n"
        ))
        .expect("a valid list")
    }

    #[tokio::test]
    async fn statuses_follow_the_bodies_and_the_lists() {
        let plain = RunOptions::default();
        assert_eq!(
            run_one("server.t.pass", &plain).await.0.status,
            Status::Pass
        );
        let (failed, _) = run_one("server.t.fail", &plain).await;
        assert_eq!(failed.status, Status::Fail);
        assert_eq!(failed.expected.as_deref(), Some("4401"));
        assert_eq!(failed.transcript[0].text, "server.t.fail");

        let known = RunOptions {
            known_failing: listed("server.t.*"),
            ..RunOptions::default()
        };
        assert_eq!(
            run_one("server.t.fail", &known).await.0.status,
            Status::Xfail
        );
        let (xpass, _) = run_one("server.t.pass", &known).await;
        assert_eq!(xpass.status, Status::Xpass);
        assert!(
            xpass
                .message
                .as_deref()
                .is_some_and(|m| m.contains("remove it"))
        );
    }

    #[tokio::test]
    async fn a_hung_or_panicking_body_is_an_error_and_the_run_goes_on() {
        let options = RunOptions::default();
        let suite = Arc::new(Scripted {
            calls: Arc::default(),
        });
        let cases = vec![
            case("server.t.hang", 100),
            case("server.t.panic", 100),
            case("server.t.pass", 100),
        ];
        let report = run(suite, Mode::Server, cases, &options).await;
        let statuses: Vec<Status> = report.cases.iter().map(|c| c.status).collect();
        assert_eq!(statuses, [Status::Error, Status::Error, Status::Pass]);
        assert!(
            report.cases[0]
                .message
                .as_deref()
                .is_some_and(|m| m.contains("deadline of 100 ms"))
        );
        assert!(
            report.cases[1]
                .message
                .as_deref()
                .is_some_and(|m| m.contains("panicked"))
        );
        assert!(!report.passed());
    }

    #[tokio::test]
    async fn a_known_flaky_case_runs_again_and_an_unlisted_one_does_not() {
        let (once, calls) = run_one("server.t.flaky", &RunOptions::default()).await;
        assert_eq!((once.status, once.attempts, calls), (Status::Fail, 1, 1));
        let flaky = RunOptions {
            known_flaky: listed("server.t.flaky"),
            ..RunOptions::default()
        };
        let (again, calls) = run_one("server.t.flaky", &flaky).await;
        assert_eq!((again.status, again.attempts, calls), (Status::Pass, 2, 2));
    }
}
