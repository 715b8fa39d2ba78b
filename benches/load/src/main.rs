//! `ferry-load`: Ferry's load generator. Each measurement runs against ferry-server and, in the
//! same run with the same client code, against peers: `ferry-load-peer` (a bare
//! tokio-tungstenite broadcast server), a Node `ws` 8 broadcast server and a Socket.IO 4.8
//! server (`benches/peers`), each with a minimal notion of rooms.
//!
//! - `memory`: the server's resident set before and after opening N idle sessions (welcomed
//!   and subscribed on Ferry; upgraded and subscribed on the peers), read from
//!   `/proc/<pid>/status`; each server runs as a child process, so the figure is its own.
//! - `fanout`: one event published to 1, 1000 and 5000 subscribers, one event after the other:
//!   the time from the publish until the last subscriber has it, median and p99 over the
//!   events, events delivered per second and server CPU per delivery.
//! - `many-channels` (Ferry only): N idle sessions each on a channel of its own, then
//!   publishes, one after the other, to one more channel with one subscriber: server CPU per
//!   publish, as a ratio to the row without idle sessions, and publish-to-delivery times.
//! - `sustained`: an open-loop stream of publishes at a fixed rate spread over many channels
//!   of many subscribers: server CPU per delivery and publish-to-delivery percentiles.
//! - `slow-subscriber`: a stream to many subscribers, once without and once with one more
//!   session that stops reading (a raw TCP client): the others' percentiles side by side, and
//!   what became of the slow one.
//!
//! Server CPU is user plus system time of `/proc/<pid>/stat` (10 ms clock ticks), read before
//! and after, beside the scheduler's on-CPU time of the server's threads (nanoseconds).
//! Loopback only; every run is bounded in time and count and stops by itself. Progress goes to
//! stderr, the result tables (Markdown) to stdout. The client itself holds one file descriptor
//! per session: raise `ulimit -n` above the number of sessions.
//!
//! ```sh
//! cargo build --release -p ferry-server -p ferry-load
//! benches/peers/install
//! target/release/ferry-load all
//! ```

mod client;
mod servers;
mod slow;
mod streams;
mod wire;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::client::{CHANNEL, Delivery, Dialect, Target, hold};
use crate::servers::{Binaries, CpuTime, Kind, Running};

/// Measures ferry-server's idle memory per connection, fan-out, many-channel publishes,
/// sustained mix and slow-subscriber isolation, each beside peer servers, on loopback.
#[derive(Debug, Parser)]
#[command(name = "ferry-load")]
struct Cli {
    /// What to measure.
    #[arg(value_enum, default_value = "all")]
    what: What,
    /// The servers to measure, in this order (`many-channels` measures Ferry alone).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "ferry,peer,node-ws,socketio"
    )]
    servers: Vec<Kind>,
    /// The ferry-server executable [default: ferry-server beside this executable].
    #[arg(long)]
    ferry_server: Option<PathBuf>,
    /// The peer executable [default: ferry-load-peer beside this executable].
    #[arg(long)]
    peer: Option<PathBuf>,
    /// The Node executable that runs the `node-ws` and `socketio` peers.
    #[arg(long, default_value = "node")]
    node: PathBuf,
    /// The folder of the Node peers, installed by its `install` script.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../peers"))]
    peers_dir: PathBuf,
    /// An extra argument for ferry-server (repeatable).
    #[arg(long = "ferry-arg", allow_hyphen_values = true)]
    ferry_args: Vec<String>,
    /// A label for ferry-server's rows (e.g. a build variant).
    #[arg(long, default_value = "ferry-server")]
    ferry_label: String,
    /// An extra argument for the tokio-tungstenite peer (repeatable), e.g.
    /// `--peer-arg=--read-buffer-size=4096`.
    #[arg(long = "peer-arg", allow_hyphen_values = true)]
    peer_args: Vec<String>,
    /// A label for the tokio-tungstenite peer's rows.
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
    /// Stop each server with SIGTERM and wait for it to exit (up to 60 s) instead of killing
    /// it, so that a profiler wrapping it writes its report: for example `--ferry-server` a
    /// script that runs `valgrind --tool=dhat` on ferry-server, which reports the heap at its
    /// peak when the server exits.
    #[arg(long)]
    graceful_stop: bool,
    /// Subscriber counts for the fan-out measurement.
    #[arg(long, value_delimiter = ',', default_value = "1,1000,5000")]
    subscribers: Vec<usize>,
    /// Events measured per subscriber count (fan-out) or per row (many-channels publishes).
    #[arg(long, default_value_t = 200)]
    events: usize,
    /// Events published and not measured before them (fan-out, many-channels, slow-subscriber).
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// The size of one event frame as subscribers receive it, in bytes. Ferry's smallest
    /// `project:*:tasks` event frame is about 272 bytes; its title is padded up to this size.
    #[arg(long, default_value_t = 300)]
    event_bytes: usize,
    /// The longest one event's delivery may take before the run fails, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    event_timeout_ms: u64,
    /// many-channels: idle sessions on channels of their own, one row each.
    #[arg(long, value_delimiter = ',', default_value = "0,1000,10000")]
    idle_sessions: Vec<usize>,
    /// many-channels: publishes measured per row.
    #[arg(long, default_value_t = 300)]
    publishes: usize,
    /// sustained: channels.
    #[arg(long, default_value_t = 50)]
    mix_channels: usize,
    /// sustained: subscribers per channel.
    #[arg(long, default_value_t = 100)]
    mix_subscribers: usize,
    /// sustained: publishes per second, each to the next channel in turn.
    #[arg(long, default_value_t = 100)]
    mix_rate: u32,
    /// sustained: how long the measured stream lasts, in seconds.
    #[arg(long, default_value_t = 20)]
    mix_seconds: u32,
    /// sustained: how long the unmeasured stream before it lasts, in seconds.
    #[arg(long, default_value_t = 2)]
    mix_warmup_seconds: u32,
    /// slow-subscriber: the subscribers that keep reading.
    #[arg(long, default_value_t = 5000)]
    slow_others: usize,
    /// slow-subscriber: events in each stream (without and with the slow one).
    #[arg(long, default_value_t = 200)]
    slow_events: usize,
    /// slow-subscriber: events per second.
    #[arg(long, default_value_t = 10)]
    slow_rate: u32,
    /// slow-subscriber: the slow one's socket receive buffer (SO_RCVBUF), in bytes.
    #[arg(long, default_value_t = 4096)]
    slow_receive_buffer: u32,
    /// slow-subscriber: when the slow one reads again at the end, it stops after this long
    /// without a byte, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    slow_quiet_ms: u64,
    /// How long a stream's last deliveries may take after its last publish, in milliseconds.
    #[arg(long, default_value_t = 20_000)]
    drain_timeout_ms: u64,
}

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum What {
    /// Idle memory per connection.
    Memory,
    /// Fan-out latency, throughput and server CPU per delivery.
    Fanout,
    /// Server CPU per publish with many idle sessions on other channels (Ferry only).
    ManyChannels,
    /// A steady mix of publishes over many channels.
    Sustained,
    /// One session that stops reading beside many that keep up.
    SlowSubscriber,
    /// Everything above, in this order.
    All,
}

impl What {
    fn includes(self, part: What) -> bool {
        self == part || self == What::All
    }
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
        node: cli.node.clone(),
        peers_dir: cli.peers_dir.clone(),
        graceful_stop: cli.graceful_stop,
    };
    let mut most = 0;
    if cli.what.includes(What::Memory) {
        most = most.max(cli.connections);
    }
    if cli.what.includes(What::Fanout) {
        most = most.max(cli.subscribers.iter().copied().max().unwrap_or(0));
    }
    if cli.what.includes(What::ManyChannels) {
        most = most.max(cli.idle_sessions.iter().copied().max().unwrap_or(0) + 1);
    }
    if cli.what.includes(What::Sustained) {
        most = most.max(cli.mix_channels * cli.mix_subscribers);
    }
    if cli.what.includes(What::SlowSubscriber) {
        most = most.max(cli.slow_others + 1);
    }
    check_file_limit(most)?;
    let started = Instant::now();
    if cli.what.includes(What::Memory) {
        let mut rows = Vec::new();
        for &kind in &cli.servers {
            rows.push(memory(&cli, &binaries, kind).await?);
        }
        report_memory(&cli, &rows);
    }
    if cli.what.includes(What::Fanout) {
        let mut rows = Vec::new();
        for &kind in &cli.servers {
            rows.extend(fanout(&cli, &binaries, kind).await?);
        }
        report_fanout(&cli, &rows);
    }
    if cli.what.includes(What::ManyChannels) {
        if cli.servers.iter().any(|k| k.is_ferry()) {
            let rows = streams::many_channels(&cli, &binaries).await?;
            streams::report_many_channels(&cli, &rows);
        } else {
            eprintln!("many-channels: skipped, it measures ferry-server alone");
        }
    }
    if cli.what.includes(What::Sustained) {
        let mut rows = Vec::new();
        for &kind in &cli.servers {
            rows.push(streams::sustained(&cli, &binaries, kind).await?);
        }
        streams::report_sustained(&cli, &rows);
    }
    if cli.what.includes(What::SlowSubscriber) {
        let mut rows = Vec::new();
        for &kind in &cli.servers {
            rows.push(streams::slow_subscriber(&cli, &binaries, kind).await?);
        }
        streams::report_slow(&cli, &rows);
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

    /// Opens sessions until `count` are held, `concurrency` at a time, session `i` subscribed
    /// to `channel_of(i)`.
    async fn grow_to(
        &mut self,
        target: &Target,
        count: usize,
        concurrency: usize,
        channel_of: impl Fn(usize) -> String,
    ) -> Result<()> {
        let from = self.tasks.len();
        let started = Instant::now();
        let dialect: Dialect = target.dialect();
        let mut opening = futures_util::stream::iter(from..count)
            .map(|i| {
                let target = target.clone();
                let channel = channel_of(i);
                async move {
                    target
                        .open(i, &channel)
                        .await
                        .with_context(|| format!("session {i}"))
                }
            })
            .buffer_unordered(concurrency.max(1));
        while let Some(ws) = opening.next().await {
            self.tasks.push(hold(
                ws?,
                dialect,
                self.delivery.clone(),
                self.stop.subscribe(),
            ));
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
    let on_channel = |_| CHANNEL.to_owned();
    sessions
        .grow_to(&server.target, n / 2, cli.concurrency, on_channel)
        .await?;
    tokio::time::sleep(settle).await;
    let half = server.rss()?;
    sessions
        .grow_to(&server.target, n, cli.concurrency, on_channel)
        .await?;
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
    cpu: CpuTime,
}

/// Publishes `warmup + events` events on `channel` one after the other, each once the previous
/// one has reached all `count` sessions, padding Ferry's title during the warm-up so that the
/// frame has `event_bytes` bytes: the measured events' publish-to-last-delivery times, the
/// frame size, and the server CPU they took.
#[allow(clippy::too_many_arguments)]
async fn closed_loop(
    server: &Running,
    publisher: &client::Publisher,
    sessions: &Sessions,
    count: usize,
    channel: &str,
    cli: &Cli,
    events: usize,
    next: &mut usize,
    title: &mut usize,
) -> Result<(Vec<Duration>, usize, CpuTime)> {
    let timeout = Duration::from_millis(cli.event_timeout_ms);
    let mut samples = Vec::with_capacity(events);
    let mut frame_bytes = 0;
    let mut cpu_before = server.cpu()?;
    for i in 0..cli.warmup + events {
        if i == cli.warmup {
            cpu_before = server.cpu()?;
        }
        sessions.delivery.expect(count);
        let start = Instant::now();
        publisher.publish(*next, *title, channel).await?;
        let (end, len) = sessions.delivery.delivered(timeout).await?;
        *next += 1;
        if i < cli.warmup {
            // Pad the title so that the frame has the asked size (Ferry's frame grows with
            // the seq's digits; the peers' frame is padded already and ignores the title).
            *title = (*title + cli.event_bytes).saturating_sub(len);
        } else {
            samples.push(end.saturating_duration_since(start));
            frame_bytes = len;
        }
    }
    let cpu = server.cpu()?.since(cpu_before);
    samples.sort_unstable();
    Ok((samples, frame_bytes, cpu))
}

async fn fanout(cli: &Cli, binaries: &Binaries, kind: Kind) -> Result<Vec<FanoutRow>> {
    let label = label(cli, kind);
    let mut counts = cli.subscribers.clone();
    counts.sort_unstable();
    counts.dedup();
    let most = counts.last().copied().unwrap_or(0);
    eprintln!("fan-out: {label}, {counts:?} subscribers");
    let server = Running::start(kind, binaries, most).await?;
    let publisher = server.target.publisher(cli.event_bytes).await?;
    let mut sessions = Sessions::new();
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
            .grow_to(&server.target, count, cli.concurrency, |_| {
                CHANNEL.to_owned()
            })
            .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (samples, frame_bytes, cpu) = closed_loop(
            &server,
            &publisher,
            &sessions,
            count,
            CHANNEL,
            cli,
            cli.events,
            &mut published,
            &mut title,
        )
        .await?;
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
            row.cpu.ticks,
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
fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn label(cli: &Cli, kind: Kind) -> String {
    match kind {
        Kind::Ferry => cli.ferry_label.clone(),
        Kind::Peer => cli.peer_label.clone(),
        Kind::NodeWs => "Node ws 8".to_owned(),
        Kind::Socketio => "Socket.IO 4.8".to_owned(),
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
        "| server | subscribers | frame | median | p99 | max | deliveries per second | server CPU per delivery (utime+stime, 10 ms ticks) | (schedstat) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for row in rows {
        let deliveries = (row.subscribers * row.samples.len()).max(1) as f64;
        println!(
            "| {} | {} | {} B | {} | {} | {} | {:.0} | {} | {} |",
            row.label,
            row.subscribers,
            row.frame_bytes,
            human(row.percentile(0.5)),
            human(row.percentile(0.99)),
            human(row.percentile(1.0)),
            row.deliveries_per_second(),
            per(row.cpu.ticks, deliveries),
            per(row.cpu.scheduled, deliveries),
        );
    }
}

/// A CPU time divided among `count` operations, in µs (ms above 10 ms).
fn per(total: Duration, count: f64) -> String {
    human_precise(total.div_f64(count.max(1.0)))
}

/// A duration with three significant figures, in µs below 1 ms, in ms above.
fn human_precise(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros >= 10_000.0 {
        format!("{:.1} ms", micros / 1000.0)
    } else if micros >= 1000.0 {
        format!("{:.2} ms", micros / 1000.0)
    } else if micros >= 100.0 {
        format!("{micros:.0} µs")
    } else {
        format!("{micros:.1} µs")
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
        assert_eq!(percentile::<Duration>(&[], 0.5), Duration::ZERO);
        assert_eq!(percentile(&[3_u32, 5, 9], 0.5), 5);
    }

    #[test]
    fn the_peer_frame_has_the_asked_size() {
        assert_eq!(client::peer_event_frame(300, CHANNEL, 7).len(), 300);
    }

    #[test]
    fn cpu_figures_keep_three_figures() {
        assert_eq!(human_precise(Duration::from_nanos(10_740)), "10.7 µs");
        assert_eq!(human_precise(Duration::from_micros(2_700)), "2.70 ms");
        assert_eq!(human_precise(Duration::from_micros(167)), "167 µs");
        assert_eq!(human_precise(Duration::from_micros(25_800)), "25.8 ms");
    }
}
