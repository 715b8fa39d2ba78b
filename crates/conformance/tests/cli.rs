//! The `ferry-conformance` binary as users run it: its exit codes, its lists and its report
//! files, with the Rust client's adapter and with an adapter that does nothing.

use std::path::Path;
use std::process::{Command, Output};

const RUNNER: &str = env!("CARGO_BIN_EXE_ferry-conformance");
const ADAPTER: &str = env!("CARGO_BIN_EXE_ferry-client-adapter");

/// An adapter that says it is ready and then does nothing at all: it never connects.
const IDLE_ADAPTER: &str =
    r#"echo '{"type":"ready","adapter":"idle 0","unsupported":[]}'; cat >/dev/null"#;

fn run(args: &[&str]) -> Output {
    Command::new(RUNNER)
        .args(args)
        .env_remove("FERRY_CONFORMANCE_TOKEN")
        .output()
        .expect("the runner starts")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write_list(dir: &Path, name: &str, pattern: &str) -> String {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("[[case]]\npattern = \"{pattern}\"\nreason = \"under test\"\n"),
    )
    .expect("write the list");
    path.display().to_string()
}

#[test]
fn list_prints_every_case_with_its_level_and_rules() {
    let out = run(&["list"]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    for case in ferry_conformance::catalogue::all() {
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(case.id.as_str()))
            .unwrap_or_else(|| panic!("{} is not listed", case.id));
        assert!(line.starts_with(&case.level.to_string()), "{line}");
        assert!(line.contains(&case.rules[0]), "{line}");
    }
}

#[test]
fn a_run_that_cannot_start_exits_2_and_says_why() {
    let out = run(&["server", "--url", "http://127.0.0.1:1", "--token", "t"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot reach http://127.0.0.1:1/v1/tickets"));

    let out = run(&["client", "--", "sh", "-c", "echo hello"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not an AdapterReport"));

    let out = run(&["client", "--case", "server.*", "--", ADAPTER]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("matches no client case"));
}

#[test]
fn a_must_failure_exits_1_with_its_report_files_and_a_known_failure_does_not() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let case = "client.heartbeat.pong_echoes_nonce";
    let json = dir.path().join("run.json");
    let junit = dir.path().join("run.xml");
    let out = run(&[
        "client",
        "--quiet",
        "--case",
        case,
        "--json",
        &json.display().to_string(),
        "--junit",
        &junit.display().to_string(),
        "--",
        "sh",
        "-c",
        IDLE_ADAPTER,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("FAIL   MUST   {case}")),
        "{stdout}"
    );
    assert!(stdout.contains("expected:"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON report"))
            .expect("valid JSON");
    assert_eq!(report["cases"][0]["id"], case);
    assert_eq!(report["cases"][0]["status"], "fail");
    let xml = std::fs::read_to_string(&junit).expect("the JUnit report");
    assert!(xml.contains("<failure"), "{xml}");

    let known = write_list(dir.path(), "known-failing.toml", "client.heartbeat.*");
    let out = run(&[
        "client",
        "--quiet",
        "--case",
        case,
        "--known-failing",
        &known,
        "--",
        "sh",
        "-c",
        IDLE_ADAPTER,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains(&format!("XFAIL  MUST   {case}")));
}

#[test]
fn a_listed_case_that_passes_fails_the_run() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let case = "client.heartbeat.pong_echoes_nonce";
    let known = write_list(dir.path(), "known-failing.toml", case);
    let out = run(&[
        "client",
        "--quiet",
        "--case",
        case,
        "--known-failing",
        &known,
        "--",
        ADAPTER,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("XPASS  MUST   {case}")),
        "{stdout}"
    );
    assert!(stdout.contains("remove it from the list"), "{stdout}");
}

/// An adapter that lacks `unsubscribe`: the MUST cases that need it are skipped.
const NO_UNSUBSCRIBE: &str = "ferry-client 0.1.0 without unsubscribe";

#[test]
fn a_skipped_must_case_makes_the_run_incomplete_unless_declared_unsupported() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let case = "client.subscribe.unsubscribe_sends_request";
    let adapter = format!(
        r#"echo '{{"type":"ready","adapter":"{NO_UNSUBSCRIBE}","unsupported":["unsubscribe"]}}'; cat >/dev/null"#
    );
    let json = dir.path().join("run.json");
    let out = run(&[
        "client",
        "--quiet",
        "--case",
        case,
        "--json",
        &json.display().to_string(),
        "--",
        "sh",
        "-c",
        &adapter,
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("SKIP   MUST   {case}")),
        "{stdout}"
    );
    assert!(stdout.contains("INCOMPLETE"), "{stdout}");
    assert!(stdout.contains("--known-unsupported"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON report"))
            .expect("valid JSON");
    assert_eq!(report["verdict"], "incomplete");

    let declared = write_list(
        dir.path(),
        "known-unsupported.toml",
        "client.subscribe.unsubscribe_*",
    );
    let out = run(&[
        "client",
        "--quiet",
        "--case",
        case,
        "--known-unsupported",
        &declared,
        "--",
        "sh",
        "-c",
        &adapter,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("declared unsupported"), "{stdout}");
    assert!(stdout.contains("PASSED"), "{stdout}");
}

/// Whether `text` holds a run of at least 32 hex digits: a ticket of the scripted server.
fn holds_ticket(text: &str) -> bool {
    text.as_bytes()
        .split(|b| !b.is_ascii_hexdigit())
        .any(|run| run.len() >= 32)
}

#[test]
fn reports_mask_credentials_unless_asked_to_reveal_them() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let case = "client.handshake.ticket_then_connect";
    for reveal in [false, true] {
        let json = dir.path().join(format!("run-{reveal}.json"));
        let json_arg = json.display().to_string();
        let mut args = vec!["client", "--quiet", "--case", case, "--json", &json_arg];
        if reveal {
            args.push("--reveal-credentials");
        }
        args.extend(["--", ADAPTER]);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
        let report = std::fs::read_to_string(&json).expect("the JSON report");
        assert_eq!(holds_ticket(&report), reveal, "{report}");
        assert_eq!(report.contains("conformance-credential"), reveal);
        assert!(
            report.contains("\"ticket\\\":\\\""),
            "the ticket answer is recorded"
        );
    }
}
