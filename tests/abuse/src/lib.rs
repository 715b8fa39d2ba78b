//! `ferry-abuse`: the probes of `ferry-torture`, each an attack on a real `ferry-server`
//! process and the checks that it did no harm.
//!
//! Every probe runs inside the same frame ([`run_probe`]):
//!
//! 1. a fresh server (spawned from `--server` with the probe's own [`Probe::flags`]) or the one
//!    at `--url`; a **neighbour** ([`neighbour::Neighbour`]): one session subscribed to a channel
//!    of its own and one publishing to it every `interval`, whose latency (publish sent to event
//!    received, from observed instants) is recorded before the attack as the baseline;
//! 2. the server's RSS (`VmRSS` of `/proc/<pid>/status`) before the attack, sampled during it
//!    for the peak;
//! 3. the attack, at `--scale`, which checks that every attacker connection got its
//!    documented answer (close code, or HTTP status with the JSON error body's code);
//! 4. the checks after it: `GET /v1/health` answers 200, the neighbour received every event it
//!    published, in order, each within [`latency_bound`] of publishing, and the RSS returns to
//!    within the probe's bound of where it started (polled while it settles).
//!
//! The probes are listed in [`PROBES`]; the protocol's close codes and error codes come from
//! `schema/` ([`tables`]), so the answers checked are the ones the specification documents.

pub mod mutate;
pub mod neighbour;
mod probes;
pub mod tables;
pub mod target;
pub mod wire;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

pub use probes::PROBES;

/// What a run attacks and how hard.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the server is.
    pub target: TargetSpec,
    /// How many times the small inputs of each probe (1: a few hundred to a few thousand).
    pub scale: u32,
    /// The seed of every random choice; a probe derives its own from it and its name.
    pub seed: u64,
    /// How often the neighbour publishes.
    pub interval: Duration,
    /// How long the RSS may take to settle after an attack.
    pub settle: Duration,
}

/// The server a run attacks.
#[derive(Debug, Clone)]
pub enum TargetSpec {
    /// A `ferry-server` binary, spawned per probe on a random loopback port with development
    /// auth and the probe's flags.
    Spawn {
        /// The binary.
        server: PathBuf,
    },
    /// A server that is already running; probes cannot set its flags.
    External {
        /// Its base URL (`http://127.0.0.1:7400`).
        url: String,
        /// A bearer token with every right, a backend's (`POST /v1/publish`) included.
        token: String,
        /// Its process id, for the memory checks; without it they are skipped.
        pid: Option<u32>,
        /// Its `--max-connections-per-user`.
        max_connections_per_user: u64,
        /// Its `--max-history-bytes`.
        max_history_bytes: u64,
    },
}

/// A probe: one attack, its server flags and its memory bound.
#[derive(Clone, Copy)]
pub struct Probe {
    /// Its name, as `--probe` selects it.
    pub name: &'static str,
    /// What it does and what it expects, in one line.
    pub summary: &'static str,
    /// The flags a spawned server gets for it, and why (in the probe's documentation).
    pub flags: &'static [&'static str],
    /// How far above its baseline the RSS may stay once the attack is over, in MiB.
    pub settle_bound_mib: u64,
    /// How far above its baseline the RSS may peak during the attack, in MiB, when the probe
    /// bounds its peak (a frame announcing 1 GiB must not allocate it).
    pub peak_bound_mib: Option<u64>,
    run: fn(Cx) -> Pin<Box<dyn Future<Output = Outcome> + Send>>,
}

impl Probe {
    /// The same probe against a server spawned with `flags` instead of its own: with a bound
    /// lifted (a rate raised, a cap removed), the probe must fail, which shows it checks it.
    pub fn with_flags(&self, flags: &'static [&'static str]) -> Probe {
        Probe { flags, ..*self }
    }
}

/// What a probe's attack gets: the server, the scale and its random seed.
#[derive(Clone)]
pub struct Cx {
    /// The server's base URL (`http://127.0.0.1:PORT`).
    pub base: String,
    /// Its `host:port`.
    pub address: String,
    /// A token with every right.
    pub token: String,
    /// The run's scale.
    pub scale: u32,
    /// This probe's seed.
    pub seed: u64,
    /// Whether the server was spawned with the probe's flags (else its limits are unknown
    /// beyond what the options say).
    pub spawned: bool,
    /// The server's per-user connection limit.
    pub max_connections_per_user: u64,
    /// The server's history byte cap.
    pub max_history_bytes: u64,
    /// An HTTP client.
    pub http: reqwest::Client,
    /// Sessions the neighbour holds (two).
    pub neighbour_sessions: u64,
}

/// What an attack reports: how many inputs it sent, what it noticed, and what was wrong.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Inputs sent (connections, requests or frames, as the probe counts them).
    pub attacks: u64,
    /// Extra MiB the probe allows above its settle bound for what it legitimately stored (a
    /// channel per invented name, history up to its cap).
    pub stored_mib: u64,
    /// Figures worth printing (`429=480`).
    pub notes: Vec<String>,
    /// Every answer that was not the documented one, and every check that failed.
    pub failures: Vec<String>,
}

impl Outcome {
    /// Records a failed check.
    pub fn fail(&mut self, what: impl Into<String>) {
        self.failures.push(what.into());
    }

    /// Records a figure.
    pub fn note(&mut self, what: impl Into<String>) {
        self.notes.push(what.into());
    }
}

/// Memory figures of one probe, in bytes.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    /// Before the attack.
    pub before: u64,
    /// The highest sample during it.
    pub peak: u64,
    /// When it settled (or when the settle time ran out).
    pub after: u64,
    /// The bound on `after - before`.
    pub bound: u64,
    /// The bound on `peak - before`, if the probe has one.
    pub peak_bound: Option<u64>,
}

/// The neighbour's figures over one probe.
#[derive(Debug, Clone, Serialize)]
pub struct NeighbourFigures {
    /// Events published and received.
    pub events: u64,
    /// The median latency before the attack, in ms.
    pub baseline_p50_ms: f64,
    /// The median latency over the whole probe, in ms.
    pub p50_ms: f64,
    /// The largest latency, in ms.
    pub max_ms: f64,
    /// The bound on every latency, in ms.
    pub bound_ms: f64,
}

/// One probe's verdict and figures.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The probe.
    pub probe: String,
    /// Whether every check held.
    pub pass: bool,
    /// Inputs sent.
    pub attacks: u64,
    /// Seconds the probe took, server start included.
    pub seconds: f64,
    /// The neighbour's figures, when it ran.
    pub neighbour: Option<NeighbourFigures>,
    /// Memory, when the server's pid is known.
    pub memory: Option<Memory>,
    /// Figures the probe noted.
    pub notes: Vec<String>,
    /// What failed.
    pub failures: Vec<String>,
}

/// The latency bound for a neighbour whose median before the attack was `baseline_p50`:
/// twenty times it, and never less than one second (a loaded two-core machine shares its
/// cores between the attacker, the server and the neighbour).
pub fn latency_bound(baseline_p50: Duration) -> Duration {
    (baseline_p50 * 20).max(Duration::from_secs(1))
}

/// The probe named `name`.
pub fn probe(name: &str) -> Option<&'static Probe> {
    PROBES.iter().find(|p| p.name == name)
}

/// A seed for `name` out of the run's seed: the same run seed gives each probe the same
/// inputs whichever probes run.
fn probe_seed(seed: u64, name: &str) -> u64 {
    name.bytes().fold(seed ^ 0x9e37_79b9_7f4a_7c15, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

const MIB: u64 = 1024 * 1024;

/// Runs one probe: the server, the neighbour, the baseline, the attack and every check.
pub async fn run_probe(probe: &Probe, options: &Options) -> Report {
    let started = Instant::now();
    let mut report = Report {
        probe: probe.name.to_owned(),
        pass: false,
        attacks: 0,
        seconds: 0.0,
        neighbour: None,
        memory: None,
        notes: Vec::new(),
        failures: Vec::new(),
    };
    let server = match target::Server::start(&options.target, probe.flags).await {
        Ok(server) => server,
        Err(error) => {
            report
                .failures
                .push(format!("the server did not start: {error}"));
            report.seconds = started.elapsed().as_secs_f64();
            return report;
        }
    };
    let (max_connections_per_user, max_history_bytes) = match &options.target {
        TargetSpec::External {
            max_connections_per_user,
            max_history_bytes,
            ..
        } => (*max_connections_per_user, *max_history_bytes),
        TargetSpec::Spawn { .. } => (
            flag_value(probe.flags, "--max-connections-per-user").unwrap_or(16),
            flag_value(probe.flags, "--max-history-bytes").unwrap_or(256 * MIB),
        ),
    };
    let cx = Cx {
        base: server.base.clone(),
        address: server.base.trim_start_matches("http://").to_owned(),
        token: server.token.clone(),
        scale: options.scale.max(1),
        seed: probe_seed(options.seed, probe.name),
        spawned: server.spawned(),
        max_connections_per_user,
        max_history_bytes,
        http: reqwest::Client::new(),
        neighbour_sessions: 2,
    };
    if let Err(error) = target::health(&cx.http, &cx.base).await {
        report
            .failures
            .push(format!("before the attack, /v1/health: {error}"));
    }
    let neighbour =
        match neighbour::Neighbour::start(&cx, options.interval, &format!("n{}", cx.seed % 1000))
            .await
        {
            Ok(neighbour) => neighbour,
            Err(error) => {
                report
                    .failures
                    .push(format!("the neighbour did not start: {error}"));
                report.seconds = started.elapsed().as_secs_f64();
                return report;
            }
        };
    let baseline = neighbour.baseline(8, Duration::from_secs(20)).await;
    if baseline.is_none() {
        report
            .failures
            .push("the neighbour received no events before the attack".to_owned());
    }
    let baseline = baseline.unwrap_or(Duration::from_millis(50));

    let rss_before = server.rss();
    let peak = Arc::new(AtomicU64::new(rss_before.unwrap_or(0)));
    let sampler = server.pid().map(|pid| {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Some(rss) = target::rss(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    });

    let limit = Duration::from_secs(120 * u64::from(cx.scale));
    let outcome = match tokio::time::timeout(limit, (probe.run)(cx.clone())).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome {
            failures: vec![format!(
                "the attack did not end within {} s",
                limit.as_secs()
            )],
            ..Outcome::default()
        },
    };
    report.attacks = outcome.attacks;
    report.notes = outcome.notes;
    report.failures.extend(outcome.failures);

    if let Err(error) = target::health(&cx.http, &cx.base).await {
        report
            .failures
            .push(format!("after the attack, /v1/health: {error}"));
    }
    // The neighbour runs on a moment after the attack, then every event it published must
    // have arrived in order.
    tokio::time::sleep(options.interval * 3).await;
    let figures = neighbour.finish(Duration::from_secs(15)).await;
    let bound = latency_bound(baseline);
    match figures {
        Ok(seen) => {
            let max = seen.latencies.iter().max().copied().unwrap_or_default();
            if max > bound {
                report.failures.push(format!(
                    "the neighbour waited {} ms for an event, above the bound of {} ms",
                    max.as_millis(),
                    bound.as_millis()
                ));
            }
            report.neighbour = Some(NeighbourFigures {
                events: seen.latencies.len() as u64,
                baseline_p50_ms: millis(baseline),
                p50_ms: millis(neighbour::median(&seen.latencies)),
                max_ms: millis(max),
                bound_ms: millis(bound),
            });
        }
        Err(error) => report.failures.push(format!("the neighbour: {error}")),
    }

    if let Some(sampler) = sampler {
        sampler.abort();
    }
    if let Some(before) = rss_before {
        let bound = (probe.settle_bound_mib + outcome.stored_mib) * MIB;
        let settle_until = Instant::now() + options.settle;
        // An RSS that cannot be read (the process is gone) is reported by the stop below.
        let mut after = server.rss().unwrap_or(0);
        while after > before + bound && Instant::now() < settle_until {
            tokio::time::sleep(Duration::from_millis(250)).await;
            after = server.rss().unwrap_or(0);
        }
        let peak = peak.load(Ordering::Relaxed).max(after);
        if after > before + bound {
            report.failures.push(format!(
                "RSS stayed at {:.1} MiB, more than {} MiB above the {:.1} MiB before the attack",
                mib(after),
                bound / MIB,
                mib(before)
            ));
        }
        let peak_bound = probe.peak_bound_mib.map(|m| m * MIB);
        if let Some(peak_bound) = peak_bound
            && peak > before + peak_bound
        {
            report.failures.push(format!(
                "RSS peaked at {:.1} MiB, more than {} MiB above the {:.1} MiB before the attack",
                mib(peak),
                peak_bound / MIB,
                mib(before)
            ));
        }
        report.memory = Some(Memory {
            before,
            peak,
            after,
            bound,
            peak_bound,
        });
    } else {
        report
            .notes
            .push("memory not checked: the server's pid is unknown (--pid)".to_owned());
    }
    if let Err(error) = server.stop().await {
        report.failures.push(error);
    }
    report.pass = report.failures.is_empty();
    report.seconds = started.elapsed().as_secs_f64();
    report
}

/// The numeric value following `name` in `flags`.
fn flag_value(flags: &[&str], name: &str) -> Option<u64> {
    flags
        .iter()
        .position(|f| *f == name)
        .and_then(|i| flags.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

impl Report {
    /// The one line `ferry-torture` prints for it, followed by a line per failure.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{} {:<20} attacks={:<6} {:>5.1}s",
            if self.pass { "PASS" } else { "FAIL" },
            self.probe,
            self.attacks,
            self.seconds
        );
        if let Some(n) = &self.neighbour {
            line += &format!(
                "  neighbour events={} p50={:.1}ms max={:.1}ms (baseline p50 {:.1}ms, bound {:.0}ms)",
                n.events, n.p50_ms, n.max_ms, n.baseline_p50_ms, n.bound_ms
            );
        }
        if let Some(m) = &self.memory {
            line += &format!(
                "  rss {:.1}/{:.1}/{:.1} MiB before/peak/after (bound +{} MiB",
                mib(m.before),
                mib(m.peak),
                mib(m.after),
                m.bound / MIB
            );
            if let Some(peak) = m.peak_bound {
                line += &format!(", peak +{} MiB", peak / MIB);
            }
            line += ")";
        }
        if !self.notes.is_empty() {
            line += &format!("  [{}]", self.notes.join(", "));
        }
        let shown = 8;
        for failure in self.failures.iter().take(shown) {
            line += &format!("\n    - {failure}");
        }
        if self.failures.len() > shown {
            line += &format!("\n    - … and {} more", self.failures.len() - shown);
        }
        line
    }
}
