//! Server mode against the real `ferry-server`, in-process on a random loopback port, with
//! short timings so that every case runs fast: every MUST case must pass.

mod support;

use std::sync::Arc;
use std::time::Duration;

use ferry_conformance::catalogue::{Mode, of_mode};
use ferry_conformance::runner::{CaseReport, RunReport};
use ferry_conformance::server::ServerSuite;
use ferry_conformance::{Level, RunOptions, Status, run};
use support::ReferenceServer;

fn report(case: &CaseReport) -> String {
    let mut text = format!(
        "\n== {} [{}] {:?} ({} ms)\n",
        case.id,
        case.rules.join(", "),
        case.status,
        case.duration_ms
    );
    if let Some(expected) = &case.expected {
        text.push_str(&format!("   expected: {expected}\n"));
    }
    if let Some(observed) = &case.observed {
        text.push_str(&format!("   observed: {observed}\n"));
    }
    if let Some(message) = &case.message {
        text.push_str(&format!("   message:  {message}\n"));
    }
    for entry in &case.transcript {
        text.push_str(&format!("   {entry}\n"));
    }
    text
}

/// The reports of the cases of `run_report` that did not pass, one after the other.
fn not_passed(run_report: &RunReport) -> String {
    run_report
        .cases
        .iter()
        .filter(|c| c.status != Status::Pass)
        .map(report)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_must_case_passes_against_the_reference_server() {
    let server = ReferenceServer::start().await;
    let suite = ServerSuite::connect(server.options(&server.url))
        .await
        .expect("the server is reachable and the tokens get tickets");

    let cases: Vec<_> = of_mode(Mode::Server).collect();
    let total = cases.len();
    let started = std::time::Instant::now();
    let run_report = run(Arc::new(suite), Mode::Server, cases, &RunOptions::default()).await;
    let took = started.elapsed();
    for case in &run_report.cases {
        eprintln!(
            "{:<5} {:>5} ms  {} [{}]{}",
            case.status.label(),
            case.duration_ms,
            case.id,
            case.rules.join(", "),
            case.message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
    }
    eprintln!("{total} cases in {} ms", took.as_millis());

    let failing: Vec<String> = run_report
        .cases
        .iter()
        .filter(|c| c.level == Level::Must && c.status != Status::Pass)
        .map(report)
        .collect();
    let should: Vec<String> = run_report
        .cases
        .iter()
        .filter(|c| c.level == Level::Should && c.status != Status::Pass)
        .map(report)
        .collect();
    assert_eq!(run_report.cases.len(), total, "every case ran");
    assert!(
        failing.is_empty(),
        "{} of {total} MUST cases did not pass (in {} ms):{}",
        failing.len(),
        took.as_millis(),
        failing.join("")
    );
    assert!(
        should.is_empty(),
        "SHOULD cases that did not pass:{}",
        should.join("")
    );
    let done = tokio::time::timeout(Duration::from_secs(10), server.served)
        .await
        .expect("the server stops after the shutdown cases");
    assert!(done.expect("the server task ran").is_ok());
}

/// A server that grants the restricted credential every right (here: the full token given as
/// the restricted one) fails every permission case, though its welcome states those rights
/// honestly: the cases judge what the server does, not what it says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restricted_credential_with_every_right_fails_the_permission_cases() {
    let server = ReferenceServer::start().await;
    let mut options = server.options(&server.url);
    options.restricted_token = Some(support::TOKEN.into());
    let suite = ServerSuite::connect(options)
        .await
        .expect("the server is reachable and the tokens get tickets");
    let cases = ferry_conformance::catalogue::select(Mode::Server, &["server.permission.*".into()])
        .expect("the permission cases");
    assert!(cases.len() >= 5, "the permission cases are there");
    let run_report = run(Arc::new(suite), Mode::Server, cases, &RunOptions::default()).await;
    let not_failed: Vec<String> = run_report
        .cases
        .iter()
        .filter(|c| c.status != Status::Fail)
        .map(report)
        .collect();
    assert!(not_failed.is_empty(), "{}", not_failed.join(""));
    assert_eq!(run_report.verdict(), ferry_conformance::Verdict::Failed);
}

/// The runner reaches a server over `https://` and `wss://` when it trusts the server's
/// private CA (`--ca-file`), and says why it cannot when it does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_runs_over_https_and_wss_with_the_servers_private_ca() {
    let server = ReferenceServer::start_tls().await;
    assert!(server.url.starts_with("https://"), "{}", server.url);

    let untrusting = ServerSuite::connect(server.options(&server.url))
        .await
        .err()
        .expect("the test CA is not a system CA");
    assert!(
        untrusting.to_string().contains("TLS handshake"),
        "{untrusting:#}"
    );

    let mut options = server.options(&server.url);
    options.ca_file = Some(server.ca_file());
    let suite = ServerSuite::connect(options)
        .await
        .expect("the server is reachable over TLS and the tokens get tickets");
    let cases = ferry_conformance::catalogue::select(
        Mode::Server,
        &[
            "server.ticket.*".into(),
            "server.welcome.*".into(),
            "server.subscribe.*".into(),
        ],
    )
    .expect("the cases");
    assert!(cases.len() >= 8, "{} cases", cases.len());
    let run_report = run(Arc::new(suite), Mode::Server, cases, &RunOptions::default()).await;
    let not_passed = not_passed(&run_report);
    assert!(not_passed.is_empty(), "{not_passed}");
}

/// Across two nodes of one deployment on Redis, stopped a moment apart (the stop reaches the
/// WebSocket node first, `--url`'s node 500 ms later), the shutdown cases still pass: each node
/// is asked for new work only after a session of its own got a goodbye, never judged by the
/// other node's draining.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shutdown_cases_pass_across_two_nodes_stopped_a_moment_apart() {
    let redis_url = std::env::var("FERRY_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("ferry-conformance-test-{:016x}:", rand::random::<u64>());
    let http_node = ReferenceServer::start_on_redis(&redis_url, &prefix).await;
    let ws_node = ReferenceServer::start_on_redis(&redis_url, &prefix).await;
    let mut options = http_node.options(&http_node.url);
    options.ws_url = Some(ws_node.url.clone());
    let (stop_ws, stop_http) = (ws_node.stop_hook(), http_node.stop_hook());
    options.stop = Some(Arc::new(move || {
        stop_ws();
        let stop_http = stop_http.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            stop_http();
        });
    }));
    let suite = ServerSuite::connect(options)
        .await
        .expect("both nodes answer and the tokens get tickets");
    let cases = ferry_conformance::catalogue::select(Mode::Server, &["server.shutdown.*".into()])
        .expect("the shutdown cases");
    assert!(cases.len() >= 4, "{} cases", cases.len());
    let run_report = run(Arc::new(suite), Mode::Server, cases, &RunOptions::default()).await;
    let not_passed = not_passed(&run_report);
    assert!(not_passed.is_empty(), "{not_passed}");
    for node in [http_node, ws_node] {
        let done = tokio::time::timeout(Duration::from_secs(10), node.served)
            .await
            .expect("each node stops after the shutdown cases");
        assert!(done.expect("the node's task ran").is_ok());
    }
}
