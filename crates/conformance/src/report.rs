//! The results of a run as a human table, JSON, JUnit XML and Markdown.

use std::fmt::Write;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::catalogue::Level;
use crate::runner::{CaseReport, RunReport, Status, Verdict};

/// The one-line summary: counts per status and the verdict.
pub fn summary(report: &RunReport) -> String {
    let failing = report.failing().count();
    let musts_failed = report
        .cases
        .iter()
        .filter(|c| matches!(c.status, Status::Fail | Status::Error) && c.level == Level::Must)
        .count();
    let verdict = match report.verdict() {
        Verdict::Passed => "PASSED".to_owned(),
        Verdict::Failed => {
            format!("FAILED ({failing} case(s) fail the run, {musts_failed} at MUST level)")
        }
        Verdict::Incomplete => {
            let open: Vec<&str> = report.unverified().map(|c| c.id.as_str()).collect();
            format!(
                "INCOMPLETE ({} case(s) that {} were not checked: {}; each skip says what would run it, and a skip the implementation cannot lift belongs in --known-unsupported with a reason)",
                open.len(),
                if report.strict { "count" } else { "are MUST" },
                open.join(", ")
            )
        }
    };
    format!(
        "{verdict}: {} passed, {} failed, {} errors, {} skipped, {} inconclusive, {} known failing, {} unexpectedly passing, of {} {} cases in {:.1} s{}",
        report.count(Status::Pass),
        report.count(Status::Fail),
        report.count(Status::Error),
        report.count(Status::Skip),
        report.count(Status::Inconclusive),
        report.count(Status::Xfail),
        report.count(Status::Xpass),
        report.cases.len(),
        report.mode,
        report.duration_ms as f64 / 1000.0,
        if report.strict {
            " (strict: SHOULD failures count)"
        } else {
            ""
        }
    )
}

/// The human report: one row per case, then the details of every case that did not pass,
/// then the summary.
pub fn table(report: &RunReport) -> String {
    let mut out = String::new();
    let id_width = report
        .cases
        .iter()
        .map(|c| c.id.len())
        .max()
        .unwrap_or(2)
        .max(2);
    let _ = writeln!(
        out,
        "ferry-conformance {} mode against {}",
        report.mode, report.target
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<6} {:<6} {:<id_width$} {:>7}  RULES",
        "STATUS", "LEVEL", "ID", "TIME"
    );
    for case in &report.cases {
        let _ = writeln!(
            out,
            "{:<6} {:<6} {:<id_width$} {:>5}ms  {}",
            case.status.label(),
            case.level.to_string(),
            case.id,
            case.duration_ms,
            case.rules.join(", ")
        );
    }
    for case in report.cases.iter().filter(|c| c.status != Status::Pass) {
        let _ = writeln!(out);
        let _ = write!(
            out,
            "{}",
            details(
                case,
                matches!(
                    case.status,
                    Status::Fail | Status::Error | Status::Xpass | Status::Inconclusive
                )
            )
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", summary(report));
    out
}

/// What a case checks and, when it did not pass, why; with the transcript when asked.
fn details(case: &CaseReport, with_transcript: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} [{}] {}",
        case.status.label(),
        case.id,
        case.level,
        case.title
    );
    for (rule, text) in case.rules.iter().zip(&case.rule_texts) {
        let _ = writeln!(out, "  rule {rule}: {text}");
    }
    if let Some(expected) = &case.expected {
        let _ = writeln!(out, "  expected: {expected}");
    }
    if let Some(observed) = &case.observed {
        let _ = writeln!(out, "  observed: {observed}");
    }
    if let Some(message) = &case.message {
        let _ = writeln!(out, "  note:     {message}");
    }
    if matches!(case.status, Status::Skip | Status::Inconclusive)
        && !case.declared_unsupported
        && case.level == Level::Must
    {
        let _ = writeln!(
            out,
            "  verdict:  not checked, so the run is INCOMPLETE (a MUST case)"
        );
    }
    if case.attempts > 1 {
        let _ = writeln!(
            out,
            "  attempts: {} (listed as known to be flaky)",
            case.attempts
        );
    }
    if with_transcript && !case.transcript.is_empty() {
        let _ = writeln!(out, "  transcript:");
        for entry in &case.transcript {
            let _ = writeln!(out, "    {entry}");
        }
    }
    out
}

/// The report as pretty-printed JSON (the verdict, and every case with its transcript).
pub fn json(report: &RunReport) -> String {
    let mut value = serde_json::to_value(report).expect("a run report serializes");
    value["verdict"] = serde_json::to_value(report.verdict()).expect("a verdict serializes");
    value["unverified"] = report.unverified().map(|c| c.id.clone()).collect();
    serde_json::to_string_pretty(&value).expect("a run report serializes")
}

/// The report as JUnit XML: one test suite for the mode, one test case per case (class name
/// the case's family), failures and errors with expected, observed and the transcript.
pub fn junit(report: &RunReport) -> String {
    let mut suite = TestSuite::new(format!("ferry-conformance {}", report.mode));
    suite.set_time(Duration::from_millis(report.duration_ms));
    for case in &report.cases {
        let mut status = match case.status {
            Status::Pass => TestCaseStatus::success(),
            Status::Fail | Status::Xpass => TestCaseStatus::non_success(NonSuccessKind::Failure),
            Status::Error => TestCaseStatus::non_success(NonSuccessKind::Error),
            Status::Skip | Status::Xfail | Status::Inconclusive => TestCaseStatus::skipped(),
        };
        if case.status != Status::Pass {
            let message = match (&case.expected, &case.observed, &case.message) {
                (Some(expected), Some(observed), _) => {
                    format!("[{}] expected {expected}; observed {observed}", case.level)
                }
                (_, _, Some(message)) => format!("[{}] {message}", case.level),
                _ => case.status.label().to_owned(),
            };
            let unverified = matches!(case.status, Status::Skip | Status::Inconclusive)
                && !case.declared_unsupported
                && (report.strict || case.level == Level::Must);
            let message = if unverified {
                format!(
                    "{} (not checked: the run is INCOMPLETE) {message}",
                    case.status.label()
                )
            } else {
                message
            };
            status.set_message(message);
            status.set_description(details(case, true));
        }
        let mut test = TestCase::new(case.id.clone(), status);
        let family = case
            .id
            .rsplit_once('.')
            .map_or(case.id.as_str(), |(f, _)| f);
        test.set_classname(family.to_owned());
        test.set_time(Duration::from_millis(case.duration_ms));
        suite.add_test_case(test);
    }
    suite.add_property(quick_junit::Property::new(
        "verdict",
        report.verdict().label(),
    ));
    let mut junit = Report::new("ferry-conformance");
    junit.add_test_suite(suite);
    junit.to_string().expect("a JUnit report serializes")
}

/// The report as Markdown: the verdict, a table of every case, and the details of each case
/// that did not pass.
pub fn markdown(report: &RunReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# ferry-conformance: {} mode", report.mode);
    let _ = writeln!(out);
    let _ = writeln!(out, "Target: {}", report.target);
    let _ = writeln!(out);
    let _ = writeln!(out, "**{}**", summary(report));
    let _ = writeln!(out);
    let _ = writeln!(out, "| Status | Level | Case | Rules | What it checks |");
    let _ = writeln!(out, "| --- | --- | --- | --- | --- |");
    for case in &report.cases {
        let _ = writeln!(
            out,
            "| {} | {} | `{}` | {} | {} |",
            case.status.label(),
            case.level,
            case.id,
            case.rules.join(", "),
            case.title.replace('|', "\\|")
        );
    }
    let shown: Vec<&CaseReport> = report
        .cases
        .iter()
        .filter(|c| c.status != Status::Pass)
        .collect();
    if !shown.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "## Cases that did not pass");
        for case in shown {
            let _ = writeln!(out);
            let _ = writeln!(out, "### `{}` ({})", case.id, case.status.label());
            let _ = writeln!(out);
            let _ = writeln!(out, "```text");
            let _ = write!(out, "{}", details(case, true));
            let _ = writeln!(out, "```");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Mode;
    use crate::transcript::{Direction, Entry};

    fn case(id: &str, level: Level, status: Status) -> CaseReport {
        CaseReport {
            id: id.to_owned(),
            level,
            rules: vec!["FERRY-TICKET-4".to_owned()],
            title: "A ticket is redeemed at most once".to_owned(),
            rule_texts: vec!["A ticket MUST be redeemed at most once"],
            status,
            expected: (status == Status::Fail).then(|| "close 4401 <ticket_rejected>".to_owned()),
            observed: (status == Status::Fail).then(|| "a welcome & <more>".to_owned()),
            message: (status == Status::Skip).then(|| "no --restricted-token".to_owned()),
            attempts: 1,
            duration_ms: 12,
            declared_unsupported: false,
            transcript: vec![Entry {
                at_ms: 3,
                direction: Direction::Received,
                link: "ws#2".to_owned(),
                text: "{\"type\":\"welcome\"}".to_owned(),
            }],
        }
    }

    fn report(cases: Vec<CaseReport>) -> RunReport {
        RunReport {
            mode: Mode::Server,
            target: "http://127.0.0.1:7400".to_owned(),
            strict: false,
            duration_ms: 1500,
            cases,
        }
    }

    #[test]
    fn every_format_carries_the_failure_and_its_transcript() {
        let run = report(vec![
            case("server.ticket.reused", Level::Must, Status::Fail),
            case("server.permission.forbidden", Level::Must, Status::Skip),
            case("server.ticket.missing", Level::Must, Status::Pass),
        ]);
        assert!(!run.passed());
        let table = table(&run);
        assert!(
            table.contains("FAIL   MUST   server.ticket.reused"),
            "{table}"
        );
        assert!(
            table.contains("expected: close 4401 <ticket_rejected>"),
            "{table}"
        );
        assert!(table.contains("<- ws#2"), "{table}");
        assert!(
            table.contains("FAILED (1 case(s) fail the run, 1 at MUST level): 1 passed, 1 failed"),
            "{table}"
        );

        let json: serde_json::Value = serde_json::from_str(&json(&run)).expect("valid JSON");
        assert_eq!(json["cases"][0]["status"], "fail");
        assert_eq!(json["cases"][1]["message"], "no --restricted-token");
        assert_eq!(json["cases"][0]["transcript"][0]["link"], "ws#2");

        let xml = junit(&run);
        assert!(
            xml.contains("<testcase name=\"server.ticket.reused\" classname=\"server.ticket\""),
            "{xml}"
        );
        assert!(xml.contains("<failure message=\"[MUST] expected close 4401 &lt;ticket_rejected&gt;; observed a welcome &amp; &lt;more&gt;\""), "{xml}");
        assert!(xml.contains("<skipped"), "{xml}");
        assert!(xml.contains("tests=\"3\""), "{xml}");

        let md = markdown(&run);
        assert!(
            md.contains("| FAIL | MUST | `server.ticket.reused` | FERRY-TICKET-4 |"),
            "{md}"
        );
        assert!(md.contains("### `server.ticket.reused` (FAIL)"), "{md}");
    }

    #[test]
    fn an_undeclared_must_skip_makes_the_run_incomplete_in_every_format() {
        let mut run = report(vec![
            case("server.permission.forbidden", Level::Must, Status::Skip),
            case("server.ticket.missing", Level::Must, Status::Pass),
            case("server.shutdown.spread", Level::Should, Status::Skip),
        ]);
        assert!(run.passed(), "nothing failed");
        assert_eq!(run.verdict(), Verdict::Incomplete);
        let table = table(&run);
        assert!(
            table.contains(
                "INCOMPLETE (1 case(s) that are MUST were not checked: server.permission.forbidden;"
            ),
            "{table}"
        );
        assert!(
            table.contains("not checked, so the run is INCOMPLETE"),
            "{table}"
        );
        let json: serde_json::Value = serde_json::from_str(&json(&run)).expect("valid JSON");
        assert_eq!(json["verdict"], "incomplete");
        assert_eq!(json["unverified"][0], "server.permission.forbidden");
        let xml = junit(&run);
        assert!(
            xml.contains("name=\"verdict\" value=\"INCOMPLETE\""),
            "{xml}"
        );
        assert!(
            xml.contains("SKIP (not checked: the run is INCOMPLETE)"),
            "{xml}"
        );
        assert!(markdown(&run).contains("**INCOMPLETE"));

        // Declared unsupported, the skip leaves the run complete; a strict run also counts the
        // SHOULD skip.
        run.cases[0].declared_unsupported = true;
        assert_eq!(run.verdict(), Verdict::Passed);
        assert!(summary(&run).starts_with("PASSED"));
        run.strict = true;
        assert_eq!(run.verdict(), Verdict::Incomplete);
        // A failure wins over an incomplete run.
        run.cases[1].status = Status::Fail;
        assert_eq!(run.verdict(), Verdict::Failed);
    }

    #[test]
    fn an_inconclusive_must_case_makes_the_run_incomplete_not_failed() {
        let run = report(vec![case(
            "client.reconnect.cap",
            Level::Must,
            Status::Inconclusive,
        )]);
        assert!(run.passed());
        assert_eq!(run.verdict(), Verdict::Incomplete);
        assert!(table(&run).contains("INCONC MUST   client.reconnect.cap"));
    }

    #[test]
    fn should_failures_fail_only_a_strict_run() {
        let mut run = report(vec![
            case("server.shutdown.spread", Level::Should, Status::Fail),
            case("server.ticket.missing", Level::Must, Status::Pass),
        ]);
        assert!(run.passed());
        assert!(summary(&run).starts_with("PASSED: 1 passed, 1 failed"));
        run.strict = true;
        assert!(!run.passed());
    }

    #[test]
    fn an_unexpected_pass_fails_the_run_and_a_known_failure_does_not() {
        assert!(report(vec![case("a.b.c", Level::Must, Status::Xfail)]).passed());
        assert!(!report(vec![case("a.b.c", Level::Should, Status::Xpass)]).passed());
    }
}
