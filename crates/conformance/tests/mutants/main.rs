//! Proof of the suite's strength: deliberately broken implementations (mutants), each breaking
//! one rule, must each be caught by at least one case.
//!
//! A server mutant is the reference server behind a tampering proxy; a client mutant is the
//! Rust client's adapter behind a tampering proxy and a report filter (this test binary,
//! re-executed with `--mutant-adapter NAME -- ADAPTER...`). A control run of each suite through
//! the proxy without a defect must pass every MUST case, so that a catch is the defect's doing.
//!
//! The mutants are compiled only into this test: no release build can reach them.
//!
//! Each mutant runs only the cases of the groups it names (the id prefixes of the cases that
//! judge the rule it breaks, [`Mutation::groups`]): a catch within a group is a catch by the
//! suite, and the control still runs every case.
//!
//! `cargo test -p ferry-conformance --test mutants` runs them all and prints which case caught
//! each mutant and why; `-- NAME...` runs only the named mutants.

#![allow(
    missing_docs,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::print_stdout
)]

mod mutations;
mod proxy;
mod wrapper;

#[path = "../support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Instant;

use ferry_conformance::client::{ClientOptions, ClientSuite};
use ferry_conformance::server::ServerSuite;
use ferry_conformance::{Level, Mode, RunOptions, RunReport, Status, catalogue};
use mutations::{Mutation, Side};
use proxy::Proxy;

/// How many mutants run at once.
const MUTANTS_AT_ONCE: usize = 4;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--mutant-adapter") {
        std::process::exit(wrapper::main(&args[2..]));
    }
    // libtest's own flags (--nocapture, --test-threads, ...) are accepted and ignored; any
    // other argument names a mutant to run, and a name that is no mutant's runs none.
    let filters: Vec<&String> = args[1..].iter().filter(|a| !a.starts_with('-')).collect();
    let chosen: Vec<Mutation> = filters
        .iter()
        .filter_map(|a| Mutation::from_name(a))
        .collect();
    if !filters.is_empty() && chosen.is_empty() {
        // A test-name filter meant for other tests, as `cargo test NAME` passes to every binary.
        println!("no mutant is named {filters:?}; none ran");
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let failures = runtime.block_on(matrix(chosen));
    if failures > 0 {
        eprintln!("{failures} problem(s): see above");
        std::process::exit(1);
    }
}

/// What one mutant run showed.
struct Verdict {
    mutation: Mutation,
    side: Side,
    report: RunReport,
}

impl Verdict {
    fn catches(&self) -> Vec<&ferry_conformance::runner::CaseReport> {
        self.report
            .cases
            .iter()
            .filter(|c| c.status == Status::Fail)
            .collect()
    }
}

async fn matrix(chosen: Vec<Mutation>) -> usize {
    let started = Instant::now();
    let mutants: Vec<Mutation> = if chosen.is_empty() {
        Mutation::ALL.to_vec()
    } else {
        chosen
    };
    let mut problems = 0;
    // The controls (one per side a chosen mutant breaks) and the mutants all run a few at a
    // time, the controls first, as they take longest: each suite mostly waits on its own timers.
    let sides: Vec<Side> = [Side::Client, Side::Server]
        .into_iter()
        .filter(|side| mutants.iter().any(|m| m.side() == Some(*side)))
        .collect();
    let runs: Vec<(Mutation, Side)> = sides
        .iter()
        .map(|side| (Mutation::Control, *side))
        .chain(
            mutants
                .iter()
                .filter_map(|m| m.side().map(|side| (*m, side))),
        )
        .collect();
    let limit = Arc::new(tokio::sync::Semaphore::new(MUTANTS_AT_ONCE));
    let mut running = tokio::task::JoinSet::new();
    for (index, (mutation, side)) in runs.into_iter().enumerate() {
        let limit = limit.clone();
        running.spawn(async move {
            let _permit = limit.acquire_owned().await;
            (index, run_mutant(mutation, side).await)
        });
    }
    let mut finished: Vec<(usize, Verdict)> = running.join_all().await;
    finished.sort_by_key(|(index, _)| *index);
    let (controls, verdicts): (Vec<Verdict>, Vec<Verdict>) = finished
        .into_iter()
        .map(|(_, verdict)| verdict)
        .partition(|verdict| verdict.mutation == Mutation::Control);
    // The control: the proxy alone must not fail a MUST case.
    for control in &controls {
        let side = control.side;
        let broken: Vec<_> = control
            .report
            .cases
            .iter()
            .filter(|c| {
                c.level == Level::Must
                    && !matches!(c.status, Status::Pass | Status::Skip | Status::Inconclusive)
            })
            .collect();
        if !broken.is_empty() {
            problems += 1;
            println!(
                "CONTROL ({side:?}): the proxy alone fails MUST cases, so catches would mean nothing:"
            );
            for case in broken {
                println!(
                    "  {} {}: {} / {} / {}",
                    case.status.label(),
                    case.id,
                    case.expected.as_deref().unwrap_or(""),
                    case.observed.as_deref().unwrap_or(""),
                    case.message.as_deref().unwrap_or("")
                );
            }
        }
    }

    println!();
    println!("{:<42} {:<18} CAUGHT BY", "MUTANT", "BREAKS");
    let mut caught = 0;
    for verdict in &verdicts {
        let catches = verdict.catches();
        let ids: Vec<&str> = catches.iter().map(|c| c.id.as_str()).collect();
        println!(
            "{:<42} {:<18} {}",
            verdict.mutation.name(),
            verdict.mutation.rule(),
            if ids.is_empty() {
                "NOTHING: the mutant survives".to_owned()
            } else {
                ids.join(", ")
            }
        );
        if let Some(first) = catches.first() {
            caught += 1;
            println!(
                "{:<61} why: expected {}; observed {}",
                "",
                first.expected.as_deref().unwrap_or("?"),
                first.observed.as_deref().unwrap_or("?")
            );
        } else {
            problems += 1;
            // What its cases said instead, to tell a blind spot from a case that did not run.
            for case in &verdict.report.cases {
                println!(
                    "{:<61} {} {}: {}",
                    "",
                    case.status.label(),
                    case.id,
                    case.message.as_deref().unwrap_or("")
                );
            }
        }
        let report = serde_json::to_string(&verdict.report).expect("a report serializes");
        if report.contains(mutations::FORGED_TICKET) {
            problems += 1;
            println!(
                "{:<61} a report shows the ticket it was issued whole: credentials are masked in every report",
                ""
            );
        }
    }
    println!();
    println!(
        "kill rate: {caught}/{} mutants caught ({} server, {} client) in {:.1} s",
        verdicts.len(),
        verdicts.iter().filter(|v| v.side == Side::Server).count(),
        verdicts.iter().filter(|v| v.side == Side::Client).count(),
        started.elapsed().as_secs_f64()
    );
    problems
}

async fn run_mutant(mutation: Mutation, side: Side) -> Verdict {
    let options = RunOptions::default();
    let report = match side {
        Side::Server => {
            let server = support::ReferenceServer::start().await;
            let proxy = Proxy::start(&server.url, mutation, None).await;
            let suite = ServerSuite::connect(server.options(&proxy.url))
                .await
                .expect("the server suite reaches the proxy");
            let cases = catalogue::of_mode(Mode::Server)
                .filter(|c| mutation.runs(&c.id))
                .collect();
            ferry_conformance::run(Arc::new(suite), Mode::Server, cases, &options).await
        }
        Side::Client => {
            let me = std::env::current_exe().expect("the test binary's path");
            let command = vec![
                me.display().to_string(),
                "--mutant-adapter".to_owned(),
                mutation.name(),
                "--".to_owned(),
                env!("CARGO_BIN_EXE_ferry-client-adapter").to_owned(),
            ];
            let suite = ClientSuite::prepare(ClientOptions::new(command))
                .await
                .expect("the mutant adapter starts");
            let cases = catalogue::of_mode(Mode::Client)
                .filter(|c| mutation.runs(&c.id))
                .collect();
            ferry_conformance::run(Arc::new(suite), Mode::Client, cases, &options).await
        }
    };
    eprintln!(
        "{} ({side:?}): {} failed of {} in {:.1} s",
        mutation.name(),
        report.count(Status::Fail),
        report.cases.len(),
        report.duration_ms as f64 / 1000.0
    );
    Verdict {
        mutation,
        side,
        report,
    }
}
