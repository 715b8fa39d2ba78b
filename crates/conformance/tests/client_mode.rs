//! Runs every client-mode case against the Rust client, through its adapter
//! (`ferry-client-adapter`, a binary of this package), and requires every MUST case to pass.

use std::sync::Arc;
use std::time::Instant;

use ferry_conformance::client::{ClientOptions, ClientSuite};
use ferry_conformance::{Level, Mode, RunOptions, Status, catalogue, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_rust_client_passes_every_must_case() {
    let adapter = env!("CARGO_BIN_EXE_ferry-client-adapter").to_owned();
    let suite = ClientSuite::prepare(ClientOptions::new(vec![adapter]))
        .await
        .expect("the Rust client's adapter starts and prints its ready line");
    let cases: Vec<_> = catalogue::of_mode(Mode::Client).collect();
    assert!(cases.len() >= 40, "the client catalogue lost cases");
    // At the default --jobs, one case per core, as users run it.
    let options = RunOptions {
        progress: true,
        ..RunOptions::default()
    };
    let started = Instant::now();
    let report = run(Arc::new(suite), Mode::Client, cases, &options).await;
    eprintln!(
        "client suite: {} cases in {} ms: {} passed, {} failed, {} skipped, {} errors",
        report.cases.len(),
        started.elapsed().as_millis(),
        report.count(Status::Pass),
        report.count(Status::Fail),
        report.count(Status::Skip),
        report.count(Status::Error),
    );
    let not_passing: Vec<_> = report
        .cases
        .iter()
        .filter(|c| c.level == Level::Must && c.status != Status::Pass)
        // Disturbed three times by the machine's load: not a verdict on the client.
        .filter(|c| c.status != Status::Inconclusive)
        .collect();
    for case in &not_passing {
        eprintln!(
            "\n{} {} ({})",
            case.status.label(),
            case.id,
            case.rules.join(", ")
        );
        if let Some(expected) = &case.expected {
            eprintln!("  expected: {expected}");
        }
        if let Some(observed) = &case.observed {
            eprintln!("  observed: {observed}");
        }
        if let Some(message) = &case.message {
            eprintln!("  message:  {message}");
        }
        for entry in &case.transcript {
            eprintln!("    {entry}");
        }
    }
    let ids: Vec<&str> = not_passing.iter().map(|c| c.id.as_str()).collect();
    assert!(
        ids.is_empty(),
        "MUST cases that did not pass against the Rust client: {ids:?}"
    );
}
