//! The measurements of many channels at once: publishes to one channel beside many idle ones
//! (`many-channels`), an open-loop stream over many channels (`sustained`), and a stream to
//! many subscribers beside one that stops reading (`slow-subscriber`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::task::JoinHandle;

use crate::client::{CHANNEL, Delivery, Publisher, channel};
use crate::servers::{Binaries, CpuTime, Kind, Running};
use crate::slow::{End, Resumed, SlowSubscriber, tcp_ends};
use crate::wire::{TcpEntry, tcp_state_name};
use crate::{Cli, Sessions, closed_loop, human, label, per, percentile};

/// One row of `many-channels`: publishes to one channel with one subscriber, with `idle`
/// sessions on channels of their own.
pub(crate) struct ManyRow {
    idle: usize,
    frame_bytes: usize,
    samples: Vec<Duration>,
    cpu: CpuTime,
}

/// Ferry alone: one subscriber on [`CHANNEL`], then for each count of idle sessions (each on a
/// channel of its own, added to those before) publishes one after the other to [`CHANNEL`].
pub(crate) async fn many_channels(cli: &Cli, binaries: &Binaries) -> Result<Vec<ManyRow>> {
    let mut counts = cli.idle_sessions.clone();
    counts.sort_unstable();
    counts.dedup();
    let most = counts.last().copied().unwrap_or(0);
    eprintln!(
        "many-channels: {}, {counts:?} idle sessions",
        cli.ferry_label
    );
    let server = Running::start(Kind::Ferry, binaries, most + 1).await?;
    let publisher = server.target.publisher(cli.event_bytes).await?;
    let mut watcher = Sessions::new();
    watcher
        .grow_to(&server.target, 1, 1, |_| CHANNEL.to_owned())
        .await?;
    let mut idle = Sessions::new();
    let mut rows = Vec::new();
    let (mut next, mut title) = (0, 0);
    for &count in &counts {
        idle.grow_to(&server.target, count, cli.concurrency, |i| {
            channel(&format!("idle-{i}"))
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (samples, frame_bytes, cpu) = closed_loop(
            &server,
            &publisher,
            &watcher,
            1,
            CHANNEL,
            cli,
            cli.publishes,
            &mut next,
            &mut title,
        )
        .await?;
        if idle.delivery.events() > 0 {
            bail!(
                "sessions on other channels received {} events",
                idle.delivery.events()
            );
        }
        if idle.delivery.closed() > 0 {
            bail!("the server closed {} idle sessions", idle.delivery.closed());
        }
        eprintln!(
            "  {count} idle: server CPU {:?} ({:?} scheduled) for {} publishes",
            cpu.ticks, cpu.scheduled, cli.publishes
        );
        rows.push(ManyRow {
            idle: count,
            frame_bytes,
            samples,
            cpu,
        });
    }
    server.stop().await?;
    watcher.end().await;
    idle.end().await;
    Ok(rows)
}

#[allow(clippy::print_stdout)]
pub(crate) fn report_many_channels(cli: &Cli, rows: &[ManyRow]) {
    println!(
        "\nMany channels ({}): {} publishes over HTTP one after the other ({} more before them unmeasured) to one channel with one subscriber, beside N idle sessions each on a channel of its own\n",
        cli.ferry_label, cli.publishes, cli.warmup
    );
    println!(
        "| sessions on other channels | frame | server CPU per publish (utime+stime, 10 ms ticks) | ratio to the first row | (schedstat) | ratio to the first row | publish to delivery: median | p99 |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let first = rows.first().map(|r| r.cpu).unwrap_or_default();
    for row in rows {
        let n = row.samples.len() as f64;
        let ratio = |now: Duration, then: Duration| {
            if then.is_zero() {
                "–".to_owned()
            } else {
                format!("{:.2}", now.as_secs_f64() / then.as_secs_f64())
            }
        };
        println!(
            "| {} | {} B | {} | {} | {} | {} | {} | {} |",
            row.idle,
            row.frame_bytes,
            per(row.cpu.ticks, n),
            ratio(row.cpu.ticks, first.ticks),
            per(row.cpu.scheduled, n),
            ratio(row.cpu.scheduled, first.scheduled),
            human(percentile(&row.samples, 0.5)),
            human(percentile(&row.samples, 0.99)),
        );
    }
}

/// What one open-loop stream measured.
pub(crate) struct StreamStats {
    /// Timed publishes.
    publishes: usize,
    /// How long publishing them took.
    publishing: Duration,
    /// Deliveries the stream should make.
    expected: usize,
    /// Publish-to-arrival time of each delivery that arrived, in µs, sorted.
    latencies: Vec<u32>,
    /// Server CPU from the first timed publish to the last delivery (or the drain timeout).
    cpu: CpuTime,
    /// Sessions the server closed or broke by the end of the stream.
    closed: usize,
}

impl StreamStats {
    fn latency(&self, p: f64) -> Duration {
        Duration::from_micros(u64::from(percentile(&self.latencies, p)))
    }
}

/// An open-loop stream's fixed settings: where it publishes, at what rate, and how many
/// sessions receive each event.
struct Stream<'a> {
    server: &'a Running,
    publisher: &'a Publisher,
    delivery: &'a Delivery,
    cli: &'a Cli,
    /// Publishes per second.
    rate: u32,
    /// Sessions that receive each event.
    per_event: usize,
    /// Ferry's title padding.
    title: usize,
}

impl Stream<'_> {
    /// Publishes `count` events at the stream's rate without waiting for deliveries, event `k`
    /// on `channel_of(k)`, each timed if `timed`; waits until every delivery has arrived (or
    /// the drain timeout) and reads the server CPU over it all.
    async fn run(
        &self,
        count: usize,
        next: &mut usize,
        channel_of: impl Fn(usize) -> String,
        timed: bool,
    ) -> Result<StreamStats> {
        let delivery = self.delivery;
        delivery.expect(usize::MAX);
        let expected = delivery.events() + self.per_event * count;
        let period = Duration::from_secs_f64(1.0 / f64::from(self.rate.max(1)));
        let mut ticks = tokio::time::interval(period);
        let mut requests: Vec<JoinHandle<Result<()>>> = Vec::new();
        let cpu_before = self.server.cpu()?;
        let started = Instant::now();
        for k in 0..count {
            ticks.tick().await;
            let n = *next;
            *next += 1;
            if timed {
                delivery.sent_now(n)?;
            }
            requests.extend(self.publisher.start(n, self.title, &channel_of(k))?);
        }
        let publishing = started.elapsed();
        for request in requests {
            request.await.context("a publish task failed")??;
        }
        let deadline = Instant::now() + Duration::from_millis(self.cli.drain_timeout_ms);
        while delivery.events() < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let cpu = self.server.cpu()?.since(cpu_before);
        let latencies = delivery.take_latencies();
        Ok(StreamStats {
            publishes: count,
            publishing,
            expected: self.per_event * count,
            latencies,
            cpu,
            closed: delivery.closed(),
        })
    }
}

/// Publishes on `channel` until the frame that `count` sessions receive has about
/// `event_bytes` bytes: Ferry's title padding.
async fn calibrate(
    publisher: &Publisher,
    sessions: &Sessions,
    count: usize,
    channel: &str,
    cli: &Cli,
    next: &mut usize,
) -> Result<usize> {
    let timeout = Duration::from_millis(cli.event_timeout_ms);
    let mut title = 0;
    for _ in 0..3 {
        sessions.delivery.expect(count);
        publisher.publish(*next, title, channel).await?;
        *next += 1;
        let (_, len) = sessions.delivery.delivered(timeout).await?;
        title = (title + cli.event_bytes).saturating_sub(len);
    }
    Ok(title)
}

/// One server's sustained mix.
pub(crate) struct SustainedRow {
    label: String,
    stats: StreamStats,
}

/// `mix_channels × mix_subscribers` sessions, then publishes at `mix_rate` a second, each to
/// the next channel in turn: a warm-up, then the measured stream.
pub(crate) async fn sustained(cli: &Cli, binaries: &Binaries, kind: Kind) -> Result<SustainedRow> {
    let label = label(cli, kind);
    let (channels, each) = (cli.mix_channels.max(1), cli.mix_subscribers);
    eprintln!(
        "sustained: {label}, {} publishes/s into {channels} channels × {each} subscribers",
        cli.mix_rate
    );
    let server = Running::start(kind, binaries, channels * each).await?;
    let publisher = server.target.publisher(cli.event_bytes).await?;
    let mix = |i: usize| channel(&format!("mix-{}", i % channels));
    let mut sessions = Sessions::new();
    sessions
        .grow_to(&server.target, channels * each, cli.concurrency, mix)
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut next = 0;
    let title = calibrate(&publisher, &sessions, each, &mix(0), cli, &mut next).await?;
    let stream = Stream {
        server: &server,
        publisher: &publisher,
        delivery: &sessions.delivery,
        cli,
        rate: cli.mix_rate,
        per_event: each,
        title,
    };
    let warm = (cli.mix_rate * cli.mix_warmup_seconds) as usize;
    stream.run(warm, &mut next, mix, false).await?;
    let measured = (cli.mix_rate * cli.mix_seconds) as usize;
    let stats = stream.run(measured, &mut next, mix, true).await?;
    eprintln!(
        "  {} of {} deliveries, p50 {:?}, p99 {:?}, server CPU {:?}",
        stats.latencies.len(),
        stats.expected,
        stats.latency(0.5),
        stats.latency(0.99),
        stats.cpu.ticks
    );
    server.stop().await?;
    sessions.end().await;
    Ok(SustainedRow { label, stats })
}

#[allow(clippy::print_stdout)]
pub(crate) fn report_sustained(cli: &Cli, rows: &[SustainedRow]) {
    println!(
        "\nSustained mix: {} publishes/s for {} s ({} s more before, unmeasured), each to the next of {} channels × {} subscribers, open loop; latency from the publish to each delivery\n",
        cli.mix_rate,
        cli.mix_seconds,
        cli.mix_warmup_seconds,
        cli.mix_channels,
        cli.mix_subscribers
    );
    println!(
        "| server | publishes per second reached | deliveries | p50 | p99 | max | server CPU per delivery (utime+stime, 10 ms ticks) | (schedstat) | sessions closed |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for row in rows {
        let s = &row.stats;
        let got = s.latencies.len();
        println!(
            "| {} | {:.1} | {got} of {} | {} | {} | {} | {} | {} | {} |",
            row.label,
            s.publishes as f64 / s.publishing.as_secs_f64().max(1e-9),
            s.expected,
            human(s.latency(0.5)),
            human(s.latency(0.99)),
            human(s.latency(1.0)),
            per(s.cpu.ticks, got as f64),
            per(s.cpu.scheduled, got as f64),
            s.closed,
        );
    }
}

/// What became of the slow subscriber.
pub(crate) struct Fate {
    /// The first change of the server's end of the connection, if any: when (seconds after the
    /// stream started), and the state it went to (or "gone").
    first_change: Option<(f64, String)>,
    /// The server's end when the stream and its deliveries were over.
    server_end: String,
    /// The most bytes seen queued on the server's end, and on the client's.
    most_queued: (u64, u64),
    /// What the slow one found when it read again.
    resumed: Resumed,
}

/// One server's slow-subscriber runs.
pub(crate) struct SlowRow {
    label: String,
    without: StreamStats,
    with: StreamStats,
    fate: Fate,
}

/// `slow_others` sessions on [`CHANNEL`]: a stream to them, then a raw session that stops
/// reading joins the channel and the same stream runs again.
pub(crate) async fn slow_subscriber(cli: &Cli, binaries: &Binaries, kind: Kind) -> Result<SlowRow> {
    let label = label(cli, kind);
    let others = cli.slow_others;
    eprintln!(
        "slow-subscriber: {label}, {} events at {}/s to {others} subscribers, without then with one that stops reading",
        cli.slow_events, cli.slow_rate
    );
    let server = Running::start(kind, binaries, others + 1).await?;
    let publisher = server.target.publisher(cli.event_bytes).await?;
    let mut sessions = Sessions::new();
    sessions
        .grow_to(&server.target, others, cli.concurrency, |_| {
            CHANNEL.to_owned()
        })
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut next = 0;
    let title = calibrate(&publisher, &sessions, others, CHANNEL, cli, &mut next).await?;
    let on_channel = |_| CHANNEL.to_owned();
    let stream = Stream {
        server: &server,
        publisher: &publisher,
        delivery: &sessions.delivery,
        cli,
        rate: cli.slow_rate,
        per_event: others,
        title,
    };
    stream.run(cli.warmup, &mut next, on_channel, false).await?;
    let without = stream
        .run(cli.slow_events, &mut next, on_channel, true)
        .await?;
    eprintln!(
        "  without: p50 {:?}, p99 {:?}",
        without.latency(0.5),
        without.latency(0.99)
    );
    let slow =
        SlowSubscriber::open(&server.target, others, CHANNEL, cli.slow_receive_buffer).await?;
    let (client_port, server_port) = (slow.local_port(), server.port());
    let watching = Arc::new(AtomicBool::new(true));
    let watch = tokio::spawn(watch_tcp(client_port, server_port, watching.clone()));
    let with = stream
        .run(cli.slow_events, &mut next, on_channel, true)
        .await?;
    watching.store(false, Ordering::SeqCst);
    let (first_change, most_queued) = watch.await?;
    let (_, server_end) = tcp_ends(client_port, server_port);
    let server_end = describe(server_end);
    eprintln!(
        "  with: p50 {:?}, p99 {:?}; the slow one's server end: {server_end}",
        with.latency(0.5),
        with.latency(0.99)
    );
    let resumed = slow
        .resume(
            Duration::from_millis(cli.slow_quiet_ms),
            Duration::from_secs(60),
        )
        .await;
    server.stop().await?;
    sessions.end().await;
    Ok(SlowRow {
        label,
        without,
        with,
        fate: Fate {
            first_change,
            server_end,
            most_queued,
            resumed,
        },
    })
}

/// Samples both ends of the slow subscriber's connection every 100 ms while `watching`: the
/// first change of the server's end, and the most bytes queued on each end.
async fn watch_tcp(
    client_port: u16,
    server_port: u16,
    watching: Arc<AtomicBool>,
) -> (Option<(f64, String)>, (u64, u64)) {
    let started = Instant::now();
    let mut first_change = None;
    let mut most = (0, 0);
    while watching.load(Ordering::SeqCst) {
        let (client, server) = tcp_ends(client_port, server_port);
        most.0 = most.0.max(server.map_or(0, |e| e.tx_queue));
        most.1 = most.1.max(client.map_or(0, |e| e.rx_queue));
        if first_change.is_none() && server.is_none_or(|e| e.state != 1) {
            first_change = Some((started.elapsed().as_secs_f64(), describe(server)));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (first_change, most)
}

/// A TCP end as a table cell.
fn describe(end: Option<TcpEntry>) -> String {
    match end {
        Some(e) => format!("{} (send queue {} B)", tcp_state_name(e.state), e.tx_queue),
        None => "gone".to_owned(),
    }
}

#[allow(clippy::print_stdout)]
pub(crate) fn report_slow(cli: &Cli, rows: &[SlowRow]) {
    println!(
        "\nSlow subscriber: {} events at {}/s to {} subscribers, open loop, without and then (same server) with one more session that stops reading after it subscribed (a raw client, receive buffer {} B); latency from the publish to each delivery to the others\n",
        cli.slow_events, cli.slow_rate, cli.slow_others, cli.slow_receive_buffer
    );
    println!(
        "| server | slow one | deliveries | p50 | p99 | p99 ratio to without | max | server CPU per delivery (utime+stime) | (schedstat) | others closed |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for row in rows {
        for (present, s) in [("no", &row.without), ("yes", &row.with)] {
            let got = s.latencies.len();
            let ratio = s.latency(0.99).as_secs_f64() / row.without.latency(0.99).as_secs_f64();
            println!(
                "| {} | {present} | {got} of {} | {} | {} | {ratio:.2} | {} | {} | {} | {} |",
                row.label,
                s.expected,
                human(s.latency(0.5)),
                human(s.latency(0.99)),
                human(s.latency(1.0)),
                per(s.cpu.ticks, got as f64),
                per(s.cpu.scheduled, got as f64),
                s.closed,
            );
        }
    }
    println!(
        "\nWhat became of the slow one (its server-side TCP end sampled every 100 ms during the stream; then it read again until {} ms without a byte)\n",
        cli.slow_quiet_ms
    );
    println!(
        "| server | first change of the server's end | server's end after the stream | most queued: server send / client receive | events it read on resuming | how its reading ended |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for row in rows {
        let fate = &row.fate;
        let change = match &fate.first_change {
            Some((secs, state)) => format!("{state} at {secs:.1} s"),
            None => "none (ESTABLISHED throughout)".to_owned(),
        };
        let end = match &fate.resumed.end {
            End::CloseFrame(Some((code, reason))) => format!("close frame {code} \"{reason}\""),
            End::CloseFrame(None) => "close frame without a code".to_owned(),
            End::Eof => "the server ended the connection (no close frame)".to_owned(),
            End::Error(e) => format!("connection error: {e}"),
            End::Quiet => "still open, nothing more came".to_owned(),
        };
        println!(
            "| {} | {change} | {} | {} B / {} B | {} of {} (last index {}) | {end} |",
            row.label,
            fate.server_end,
            fate.most_queued.0,
            fate.most_queued.1,
            fate.resumed.events,
            cli.slow_events,
            fate.resumed
                .last_index
                .map_or("–".to_owned(), |n| n.to_string()),
        );
    }
}
