//! `ferry-load`: Ferry's load generator. Two measurements, each run against ferry-server and,
//! in the same run with the same client code, against `ferry-load-peer`, a bare
//! tokio-tungstenite broadcast server at default settings:
//!
//! - `memory`: the server's resident set before and after opening N idle sessions (welcomed
//!   and subscribed on Ferry; upgraded and one frame echoed on the peer), read from
//!   `/proc/<pid>/status`; each server runs as a child process, so the figure is its own.
//! - `fanout`: one event published to 1, 1000 and 5000 subscribers, one event after the other:
//!   the time from the publish until the last subscriber has it, median and p99 over the
//!   events, and events delivered per second.
//!
//! Loopback only; every run is bounded in time and count and stops by itself. Progress goes to
//! stderr, the result tables (Markdown) to stdout. The client itself holds one file descriptor
//! per session: raise `ulimit -n` above the number of sessions.
//!
//! ```sh
//! cargo build --release -p ferry-server -p ferry-load
//! target/release/ferry-load all
//! ```

mod client;
mod servers;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::client::{Delivery, Target, hold, peer_event_frame};
use crate::servers::{Binaries, Kind, Running};

/// Measures ferry-server's idle memory per connection and its fan-out, each beside a bare
/// tokio-tungstenite broadcast server, on loopback.
#[derive(Debug, Parser)]
#[command(name = "ferry-load")]
struct Cli {
    /// What to measure.
    #[arg(value_enum, default_value = "all")]
    what: What,
    /// The servers to measure, in this order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "ferry,peer")]
    servers: Vec<Kind>,
    /// The ferry-server executable [default: ferry-server beside this executable].
    #[arg(long)]
    ferry_server: Option<PathBuf>,
    /// The peer executable [default: ferry-load-peer beside this executable].
    #[arg(long)]
    peer: Option<PathBuf>,
    /// An extra argument for ferry-server (repeatable).
    #[arg(long = "ferry-arg", allow_hyphen_values = true)]
    ferry_args: Vec<String>,
    /// A label for ferry-server's rows (e.g. a build variant).
    #[arg(long, default_value = "ferry-server")]
    ferry_label: String,
    /// An extra argument for the peer (repeatable), e.g. `--peer-arg=--read-buffer-size=4096`.
    #[arg(long = "peer-arg", allow_hyphen_values = true)]
    peer_args: Vec<String>,
    /// A label for the peer's rows.
    #[arg(long, default_value = "bare tokio-tungstenite")]
    peer_label: String,
    /// Idle sessions for the memory measurement.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Sessions being opened at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Wait after the last session is open before reading the resident set, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    settle_ms: u64,
    /// Subscriber counts for the fan-out measurement.
    #[arg(long, value_delimiter = ',', default_value = "1,1000,5000")]
    subscribers: Vec<usize>,
    /// Events measured per subscriber count.
    #[arg(long, default_value_t = 200)]
    events: usize,
    /// Events published and not measured before them.
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// The size of one event frame as subscribers receive it, in bytes. Ferry's smallest
    /// `project:*:tasks` event frame is about 272 bytes; its title is padded up to this size.
    #[arg(long, default_value_t = 300)]
    event_bytes: usize,
    /// The longest one event's delivery may take before the run fails, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    event_timeout_ms: u64,
}

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum What {
    /// Idle memory per connection.
    Memory,
    /// Fan-out latency and throughput.
    Fanout,
    /// Both.
    All,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let here = std::env::current_exe()?
        .parent()
        .context("the executable has no folder")?
        .to_owned();
    let binaries = Binaries {
        ferry: cli
            .ferry_server
            .clone()
            .unwrap_or_else(|| here.join("ferry-server")),
        peer: cli
            .peer
            .clone()
            .unwrap_or_else(|| here.join("ferry-load-peer")),
        ferry_args: cli.ferry_args.clone(),
        peer_args: cli.peer_args.clone(),
    };
    let most = match cli.what {
        What::Memory => cli.connections,
        What::Fanout => cli.subscribers.iter().copied().max().unwrap_or(0),
        What::All => cli
            .subscribers
            .iter()
            .copied()
            .max()
            .unwrap_or(0)
            .max(cli.connections),
    };
    check_file_limit(most)?;
    let started = Instant::now();
    if matches!(cli.what, What::Memory | What::All) {
        let mut rows = Vec::new();
        for &kind in &cli.servers {
            rows.push(memory(&cli, &binaries, kind).await?);
        }
        report_memory(&cli, &rows);
    }
    if matches!(cli.what, What::Fanout | What::All) {
        let mut rows = Vec::new();
        for &kind in &cli.servers {
            rows.extend(fanout(&cli, &binaries, kind).await?);
        }
        report_fanout(&cli, &rows);
    }
    eprintln!("done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Fails early when this process may not hold `sessions` sockets.
fn check_file_limit(sessions: usize) -> Result<()> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|n| n.parse::<usize>().ok());
    if let Some(soft) = soft
        && soft < sessions + 256
    {
        bail!(
            "this process may open {soft} files and needs about {}: run `ulimit -n {}` first",
            sessions + 256,
            (sessions + 256).next_power_of_two()
        );
    }
    Ok(())
}

/// Sessions held open by the client, and the signal that ends them.
struct Sessions {
    delivery: Arc<Delivery>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Sessions {
    fn new() -> Self {
        Self {
            delivery: Arc::new(Delivery::default()),
            stop: watch::channel(false).0,
            tasks: Vec::new(),
        }
    }

    /// Opens sessions until `count` are held, `concurrency` at a time.
    async fn grow_to(&mut self, target: &Target, count: usize, concurrency: usize) -> Result<()> {
        let from = self.tasks.len();
        let started = Instant::now();
        let mut opening = futures_util::stream::iter(from..count)
            .map(|i| {
                let target = target.clone();
                async move { target.open(i).await.with_context(|| format!("session {i}")) }
            })
            .buffer_unordered(concurrency.max(1));
        while let Some(ws) = opening.next().await {
            self.tasks
                .push(hold(ws?, self.delivery.clone(), self.stop.subscribe()));
            let n = self.tasks.len();
            if n.is_multiple_of(1000) || n == count {
                eprintln!(
                    "  {n} sessions open ({:.1} s)",
                    started.elapsed().as_secs_f64()
                );
            }
        }
        if self.delivery.closed() > 0 {
            bail!("the server closed {} sessions", self.delivery.closed());
        }
        Ok(())
    }

    /// Ends every session (after the server is gone).
    async fn end(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// The resident set of one server with N idle sessions.
struct MemoryRow {
    label: String,
    sessions: usize,
    before: u64,
    half: u64,
    after: u64,
    open_secs: f64,
}

async fn memory(cli: &Cli, binaries: &Binaries, kind: Kind) -> Result<MemoryRow> {
    let label = label(cli, kind);
    let n = cli.connections;
    eprintln!("memory: {label}, {n} idle sessions");
    let server = Running::start(kind, binaries, n).await?;
    let settle = Duration::from_millis(cli.settle_ms);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss()?;
    let mut sessions = Sessions::new();
    let started = Instant::now();
    sessions
        .grow_to(&server.target, n / 2, cli.concurrency)
        .await?;
    tokio::time::sleep(settle).await;
    let half = server.rss()?;
    sessions.grow_to(&server.target, n, cli.concurrency).await?;
    let open_secs = started.elapsed().as_secs_f64() - settle.as_secs_f64();
    tokio::time::sleep(settle).await;
    let after = server.rss()?;
    if sessions.delivery.closed() > 0 {
        bail!(
            "the server closed {} sessions while idle",
            sessions.delivery.closed()
        );
    }
    eprintln!(
        "  RSS {:.1} MiB before, {:.1} MiB at {}, {:.1} MiB at {n}",
        mib(before),
        mib(half),
        n / 2,
        mib(after)
    );
    server.stop().await?;
    sessions.end().await;
    Ok(MemoryRow {
        label,
        sessions: n,
        before,
        half,
        after,
        open_secs,
    })
}

/// One server's fan-out to one number of subscribers.
struct FanoutRow {
    label: String,
    subscribers: usize,
    frame_bytes: usize,
    /// Publish to last delivery, per event, sorted.
    samples: Vec<Duration>,
    /// CPU time the server used over the measured events.
    cpu: Duration,
}

async fn fanout(cli: &Cli, binaries: &Binaries, kind: Kind) -> Result<Vec<FanoutRow>> {
    let label = label(cli, kind);
    let mut counts = cli.subscribers.clone();
    counts.sort_unstable();
    counts.dedup();
    let most = counts.last().copied().unwrap_or(0);
    eprintln!("fan-out: {label}, {counts:?} subscribers");
    let server = Running::start(kind, binaries, most).await?;
    let mut publisher = server
        .target
        .publisher(peer_event_frame(cli.event_bytes))
        .await?;
    let mut sessions = Sessions::new();
    let timeout = Duration::from_millis(cli.event_timeout_ms);
    let mut rows = Vec::new();
    let mut published = 0;
    // Ferry's frame carries a title padded to reach the frame size; the first event measures
    // the frame without padding.
    let mut title = 0;
    for &count in &counts {
        if count == 0 {
            continue;
        }
        sessions
            .grow_to(&server.target, count, cli.concurrency)
            .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut samples = Vec::with_capacity(cli.events);
        let mut frame_bytes = 0;
        let mut cpu_before = server.cpu()?;
        for i in 0..cli.warmup + cli.events {
            if i == cli.warmup {
                cpu_before = server.cpu()?;
            }
            sessions.delivery.expect(count);
            let start = Instant::now();
            publisher.publish(published, title).await?;
            let (end, len) = sessions.delivery.delivered(timeout).await?;
            published += 1;
            if i < cli.warmup {
                // Pad the title so that the frame has the asked size (Ferry's frame grows with
                // the seq's digits; the peer's frame is fixed and ignores the title).
                title = (title + cli.event_bytes).saturating_sub(len);
            } else {
                samples.push(end.saturating_duration_since(start));
                frame_bytes = len;
            }
        }
        let cpu = server.cpu()?.saturating_sub(cpu_before);
        samples.sort_unstable();
        let row = FanoutRow {
            label: label.clone(),
            subscribers: count,
            frame_bytes,
            samples,
            cpu,
        };
        eprintln!(
            "  {count} subscribers: median {:?}, p99 {:?}, server CPU {:?}",
            row.percentile(0.5),
            row.percentile(0.99),
            row.cpu,
        );
        rows.push(row);
    }
    server.stop().await?;
    sessions.end().await;
    Ok(rows)
}

impl FanoutRow {
    fn percentile(&self, p: f64) -> Duration {
        percentile(&self.samples, p)
    }

    /// Events delivered per second over the measured events.
    fn deliveries_per_second(&self) -> f64 {
        let total: Duration = self.samples.iter().sum();
        (self.subscribers * self.samples.len()) as f64 / total.as_secs_f64()
    }
}

/// The nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn label(cli: &Cli, kind: Kind) -> String {
    match kind {
        Kind::Ferry => cli.ferry_label.clone(),
        Kind::Peer => cli.peer_label.clone(),
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[allow(clippy::print_stdout)]
fn report_memory(cli: &Cli, rows: &[MemoryRow]) {
    println!(
        "\nIdle memory, {} sessions (opened {} at a time)\n",
        cli.connections, cli.concurrency
    );
    println!(
        "| server | RSS before | RSS at N/2 | RSS at N | per session: (N − before) / N | per session: (N − N/2) / (N/2) | opening N took |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for row in rows {
        let half = (row.sessions / 2).max(1) as f64;
        println!(
            "| {} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} KiB | {:.1} KiB | {:.1} s |",
            row.label,
            mib(row.before),
            mib(row.half),
            mib(row.after),
            row.after.saturating_sub(row.before) as f64 / row.sessions as f64 / 1024.0,
            row.after.saturating_sub(row.half) as f64 / (row.sessions as f64 - half) / 1024.0,
            row.open_secs,
        );
    }
}

#[allow(clippy::print_stdout)]
fn report_fanout(cli: &Cli, rows: &[FanoutRow]) {
    println!(
        "\nFan-out: {} events one after the other ({} more before them unmeasured), each from its publish until the last subscriber has it\n",
        cli.events, cli.warmup
    );
    println!(
        "| server | subscribers | frame | median | p99 | max | deliveries per second | server CPU per delivery |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for row in rows {
        let deliveries = (row.subscribers * row.samples.len()).max(1) as f64;
        println!(
            "| {} | {} | {} B | {} | {} | {} | {:.0} | {:.1} µs |",
            row.label,
            row.subscribers,
            row.frame_bytes,
            human(row.percentile(0.5)),
            human(row.percentile(0.99)),
            human(row.percentile(1.0)),
            row.deliveries_per_second(),
            row.cpu.as_secs_f64() * 1e6 / deliveries,
        );
    }
}

/// A duration in µs below a millisecond, in ms above.
fn human(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.0} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=200).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 0.5), Duration::from_millis(100));
        assert_eq!(percentile(&samples, 0.99), Duration::from_millis(198));
        assert_eq!(percentile(&samples, 1.0), Duration::from_millis(200));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn the_peer_frame_has_the_asked_size() {
        assert_eq!(peer_event_frame(300).len(), 300);
    }
}
