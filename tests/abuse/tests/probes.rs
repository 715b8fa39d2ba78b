//! Every probe of `ferry-torture` at scale 1 against the `ferry-server` binary of this build,
//! one fresh server per probe: each must pass (the server up, the neighbour unharmed, memory
//! back within the probe's bound, every attacker answered as documented). The seed is random
//! unless `FERRY_TORTURE_SEED` gives one, and printed, so a failure can be run again with
//! `ferry-torture --seed N --probe NAME`.
//!
//! `cargo test --workspace` builds `ferry-server` beside this test; `cargo test -p
//! ferry-abuse` alone does not, so the test refuses a binary older than the server's or the
//! protocol core's sources rather than attack a stale build.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use ferry_abuse::{Options, PROBES, TargetSpec, probe, run_probe};

/// `target/<profile>/ferry-server`, beside this test's own `deps/`.
fn built_server() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let path = dir.join("ferry-server");
    assert!(
        path.exists(),
        "{} is missing: `cargo test --workspace` builds it (or `cargo build -p ferry-server`)",
        path.display()
    );
    path
}

/// The newest modification time of the files under `dir`.
fn newest(dir: &Path) -> SystemTime {
    let mut latest = SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).expect("a source folder").flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest(&path)
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH)
        };
        latest = latest.max(time);
    }
    latest
}

/// The built server, refused when older than its sources.
fn fresh_server() -> PathBuf {
    let server = built_server();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let built = std::fs::metadata(&server)
        .and_then(|m| m.modified())
        .expect("the binary's time");
    for sources in ["crates/reference-server/src", "crates/protocol/src"] {
        assert!(
            newest(&root.join(sources)) <= built,
            "{} is older than {sources}: run `cargo build -p ferry-server` (or `cargo test --workspace`)",
            server.display()
        );
    }
    server
}

/// Scale 1 against the fresh built server, with the seed of `FERRY_TORTURE_SEED` or a random
/// one (printed).
fn options() -> Options {
    let seed = std::env::var("FERRY_TORTURE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("ferry-torture seed {seed}");
    Options {
        target: TargetSpec::Spawn {
            server: fresh_server(),
        },
        scale: 1,
        seed,
        interval: Duration::from_millis(120),
        settle: Duration::from_secs(20),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_probe_passes_at_scale_one_against_the_built_server() {
    let options = options();
    let seed = options.seed;
    let started = Instant::now();
    let mut failed = Vec::new();
    for probe in &PROBES {
        let report = run_probe(probe, &options).await;
        eprintln!("{}", report.line());
        assert!(report.attacks > 0, "{}: the probe sent nothing", probe.name);
        assert!(
            report.neighbour.as_ref().is_some_and(|n| n.events > 0),
            "{}: the neighbour received nothing",
            probe.name
        );
        if !report.pass {
            failed.push(probe.name);
        }
    }
    eprintln!(
        "{} probes in {:.1} s",
        PROBES.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failed.is_empty(),
        "failed (seed {seed}): {failed:?}; the lines above say why"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flood_probes_fail_against_a_server_whose_rates_are_lifted() {
    let options = options();
    let lifted: [(&str, &[&str]); 2] = [
        (
            "ticket-growth",
            &[
                "--ticket-rate-limit-per-second",
                "100000",
                "--ticket-rate-limit-burst",
                "100000",
            ],
        ),
        (
            "idempotency-growth",
            &[
                "--publish-rate-limit-per-second",
                "100000",
                "--publish-rate-limit-burst",
                "100000",
            ],
        ),
    ];
    for (name, flags) in lifted {
        let probe = probe(name).expect("a probe").with_flags(flags);
        let report = run_probe(&probe, &options).await;
        eprintln!("{}", report.line());
        assert!(
            !report.pass,
            "{name} passed against a server without its rate limit"
        );
        assert!(
            report.failures.iter().any(|f| f.contains("no 429")),
            "{name} failed for the flood not being limited: {:?}",
            report.failures
        );
    }
}
