//! `ferry-torture`: runs the abuse probes against `ferry-server` and prints one line per probe
//! with its verdict and figures; exits with 1 when any probe fails.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ferry_abuse::{Options, PROBES, TargetSpec, latency_bound, run_probe};

/// Abuse probes against ferry-server: each attack checks that the server stays up, that a
/// neighbour session keeps receiving in order within max(20 x its baseline median, 1 s), that
/// memory returns to within the probe's bound, and that every attacker got its documented
/// answer.
#[derive(Parser)]
#[command(name = "ferry-torture", version, after_help = probe_list())]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: Run,
}

#[derive(Subcommand)]
enum Command {
    /// Lists the probes with what each does and expects.
    List,
}

#[derive(clap::Args)]
struct Run {
    /// The ferry-server binary to spawn, one fresh process per probe on a random loopback
    /// port (default: the ferry-server beside this binary).
    #[arg(long, conflicts_with = "url")]
    server: Option<PathBuf>,
    /// The base URL of a server that is already running (its flags are then its own).
    #[arg(long, requires = "token")]
    url: Option<String>,
    /// A bearer token with every right, a backend's included (with --url).
    #[arg(long)]
    token: Option<String>,
    /// The process id of the --url server, for the memory checks (skipped without it).
    #[arg(long)]
    pid: Option<u32>,
    /// The --url server's --max-connections-per-user.
    #[arg(long, default_value_t = 16)]
    max_connections_per_user: u64,
    /// The --url server's --max-history-bytes.
    #[arg(long, default_value_t = 256 * 1024 * 1024)]
    max_history_bytes: u64,
    /// How many times each probe's small inputs (1: a few hundred to a few thousand).
    #[arg(long, default_value_t = 1)]
    scale: u32,
    /// The seed of every random choice (default: random, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Runs only these probes (repeatable; default all).
    #[arg(long = "probe", value_name = "NAME")]
    probes: Vec<String>,
    /// The neighbour's time between two publishes, in ms (its session's rate limit is 10/s).
    #[arg(long, default_value_t = 120)]
    interval_ms: u64,
    /// How long the RSS may take to return within a probe's bound, in seconds.
    #[arg(long, default_value_t = 20)]
    settle_s: u64,
    /// Prints one JSON object (seed, scale and every probe's report) instead of lines.
    #[arg(long)]
    json: bool,
}

fn probe_list() -> String {
    let mut text = String::from("Probes (--probe NAME):\n");
    for probe in &PROBES {
        text += &format!("  {:<20} {}\n", probe.name, probe.summary);
    }
    text
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    if let Some(Command::List) = cli.command {
        let _ = write!(out, "{}", probe_list());
        return std::process::ExitCode::SUCCESS;
    }
    let run = cli.run;
    let target = match (run.url, run.server) {
        (Some(url), _) => TargetSpec::External {
            url,
            token: run.token.unwrap_or_default(),
            pid: run.pid,
            max_connections_per_user: run.max_connections_per_user,
            max_history_bytes: run.max_history_bytes,
        },
        (None, Some(server)) => TargetSpec::Spawn { server },
        (None, None) => {
            let beside = std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(|dir| dir.join("ferry-server")));
            match beside {
                Some(server) if server.exists() => TargetSpec::Spawn { server },
                _ => {
                    eprintln!(
                        "ferry-torture: no ferry-server beside this binary: give --server or --url"
                    );
                    return std::process::ExitCode::from(2);
                }
            }
        }
    };
    let selected: Vec<_> = if run.probes.is_empty() {
        PROBES.iter().collect()
    } else {
        let mut selected = Vec::new();
        for name in &run.probes {
            match ferry_abuse::probe(name) {
                Some(probe) => selected.push(probe),
                None => {
                    eprintln!("ferry-torture: no probe {name:?}\n{}", probe_list());
                    return std::process::ExitCode::from(2);
                }
            }
        }
        selected
    };
    let seed = run.seed.unwrap_or_else(rand::random);
    let options = Options {
        target,
        scale: run.scale,
        seed,
        interval: Duration::from_millis(run.interval_ms.max(1)),
        settle: Duration::from_secs(run.settle_s),
    };
    if !run.json {
        let _ = writeln!(
            out,
            "ferry-torture: seed {seed}, scale {}, {} probes; neighbour bound max(20 x baseline p50, {} ms)",
            options.scale,
            selected.len(),
            latency_bound(Duration::ZERO).as_millis()
        );
    }
    let mut reports = Vec::new();
    for probe in selected {
        let report = run_probe(probe, &options).await;
        if !run.json {
            let _ = writeln!(out, "{}", report.line());
            let _ = out.flush();
        }
        reports.push(report);
    }
    let failed = reports.iter().filter(|r| !r.pass).count();
    if run.json {
        let value = serde_json::json!({ "seed": seed, "scale": options.scale, "reports": reports });
        let _ = writeln!(out, "{value:#}");
    } else {
        let _ = writeln!(
            out,
            "ferry-torture: {} of {} probes passed (seed {seed})",
            reports.len() - failed,
            reports.len()
        );
    }
    if failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
