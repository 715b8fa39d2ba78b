//! The brokers side by side, in one process: publish-to-delivery latency through the in-memory
//! broker and through Redis (on the publishing node and across two nodes), publishes per second
//! one node sustains into Redis, and the replay of 100 missed events from each broker beside a
//! bare `XRANGE` of the same entries (the floor).
//!
//! Needs a Redis at `FERRY_BENCH_REDIS_URL` (default `redis://127.0.0.1:6379`); every key is
//! under a fresh prefix, deleted at the end. Prints Markdown tables.
//!
//! ```sh
//! cargo bench -p ferry-benches --bench broker
//! ```

#![allow(missing_docs, clippy::print_stdout, clippy::unwrap_used)]

use ferry_benches::row;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_protocol::replay::Retention;
use ferry_protocol::{ChannelName, Payload, StreamPosition, Timestamp};
use ferry_server::broker::{
    Broker, MemoryBroker, MemoryBrokerConfig, RedisBroker, RedisBrokerConfig,
};
use ferry_server::hub::{Hub, Mailbox, QueueLimits};
use serde_json::json;

const T0: Timestamp = Timestamp::from_millis(0);
const LATENCY_SAMPLES: usize = 2000;
const REPLAY_SAMPLES: usize = 300;

fn payload(n: usize) -> Payload {
    Payload::from(
        json!({ "task_id": format!("T-{n}"), "status": "running", "progress": 0.5, "assignee": null }),
    )
}

/// Publishes one event at a time through `publisher` and waits for it in a mailbox that
/// follows the channel on `follower`'s node: the latency of each, publish call to delivery.
async fn latency<P: Broker, F: Broker>(
    publisher: &P,
    follower: &F,
    channel: &str,
) -> Vec<Duration> {
    let channel: ChannelName = channel.parse().unwrap();
    let hub = Hub::default();
    let mailbox = Arc::new(Mailbox::new(QueueLimits::default()));
    hub.join(follower, &channel, &mailbox, T0).await.unwrap();
    let mut taken = VecDeque::new();
    let mut samples = Vec::with_capacity(LATENCY_SAMPLES);
    for n in 0..LATENCY_SAMPLES + 100 {
        let start = Instant::now();
        publisher
            .publish(
                &channel,
                format!("k{n}").parse().unwrap(),
                payload(n),
                T0,
                1,
            )
            .await
            .unwrap();
        loop {
            assert!(!mailbox.take(&mut taken).fell_behind);
            if taken.drain(..).count() > 0 {
                break;
            }
            mailbox.ready().await;
        }
        // The first 100 warm the connections and scripts up.
        if n >= 100 {
            samples.push(start.elapsed());
        }
    }
    hub.leave(follower, &channel, &mailbox, T0);
    samples
}

/// `tasks` tasks publishing `each` events at once to `channels` channels: events per second.
async fn throughput<B: Broker>(broker: Arc<B>, tasks: usize, each: usize, channels: usize) -> f64 {
    let start = Instant::now();
    let mut running = Vec::new();
    for t in 0..tasks {
        let broker = broker.clone();
        running.push(tokio::spawn(async move {
            let channel: ChannelName = format!("project:rate-{}:tasks", t % channels)
                .parse()
                .unwrap();
            for n in 0..each {
                broker
                    .publish(
                        &channel,
                        format!("t{t}-{n}").parse().unwrap(),
                        payload(n),
                        T0,
                        1,
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for task in running {
        task.await.unwrap();
    }
    (tasks * each) as f64 / start.elapsed().as_secs_f64()
}

/// Publishes 1100 events, then times `REPLAY_SAMPLES` resumes from 100 events before the head.
async fn replay<B: Broker>(broker: &B, channel: &str) -> (Vec<Duration>, StreamPosition) {
    let channel: ChannelName = channel.parse().unwrap();
    let mut head = None;
    for n in 0..1100 {
        head = Some(
            broker
                .publish(
                    &channel,
                    format!("r{n}").parse().unwrap(),
                    payload(n),
                    T0,
                    1,
                )
                .await
                .unwrap()
                .position,
        );
    }
    let head = head.unwrap();
    let from = StreamPosition {
        epoch: head.epoch.clone(),
        seq: ferry_protocol::Seq(ferry_protocol::bounded::UInt::new(head.seq.get() - 100).unwrap()),
    };
    let mut samples = Vec::with_capacity(REPLAY_SAMPLES);
    for _ in 0..REPLAY_SAMPLES {
        let start = Instant::now();
        let (_, recovery, events) = broker.subscribe(&channel, Some(&from), T0).await.unwrap();
        samples.push(start.elapsed());
        assert!(recovery.unwrap().complete);
        assert_eq!(events.len(), 100);
    }
    (samples, from)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let url = ferry_benches::redis_url();
    let prefix = ferry_benches::fresh_prefix();
    let redis_config = RedisBrokerConfig {
        prefix: prefix.clone(),
        ..RedisBrokerConfig::new(url.clone(), Retention::default())
    };
    let memory = Arc::new(MemoryBroker::new(MemoryBrokerConfig::default()));
    let a = Arc::new(RedisBroker::new(redis_config.clone()).unwrap());
    let b = Arc::new(RedisBroker::new(redis_config).unwrap());
    a.ping().await.expect("a Redis at FERRY_BENCH_REDIS_URL");
    b.ping().await.unwrap();

    println!("### Publish to delivery, one event at a time ({LATENCY_SAMPLES} samples, µs)\n");
    println!("| broker | p50 | p99 |\n| --- | --- | --- |");
    let mut memory_latency = latency(&*memory, &*memory, "project:lat-memory:tasks").await;
    println!("{}", row("in memory, one node", &mut memory_latency));
    let mut same = latency(&*a, &*a, "project:lat-same:tasks").await;
    println!(
        "{}",
        row("Redis, published and delivered on one node", &mut same)
    );
    let mut across = latency(&*b, &*a, "project:lat-across:tasks").await;
    println!(
        "{}",
        row(
            "Redis, published on node B, delivered on node A",
            &mut across
        )
    );

    println!("\n### Publishes per second into the broker (one node, 8 concurrent publishers)\n");
    println!("| broker | 1 channel | 8 channels |\n| --- | --- | --- |");
    let m1 = throughput(memory.clone(), 8, 2500, 1).await;
    let m8 = throughput(memory.clone(), 8, 2500, 8).await;
    println!("| in memory | {m1:.0} | {m8:.0} |");
    let r1 = throughput(a.clone(), 8, 1000, 1).await;
    let r8 = throughput(a.clone(), 8, 1000, 8).await;
    println!("| Redis | {r1:.0} | {r8:.0} |");

    println!("\n### Replay of 100 missed events ({REPLAY_SAMPLES} resumes, µs)\n");
    println!("| what | p50 | p99 |\n| --- | --- | --- |");
    let (mut memory_replay, _) = replay(&*memory, "project:replay-memory:tasks").await;
    println!(
        "{}",
        row("in memory: subscribe with from", &mut memory_replay)
    );
    let (mut redis_replay, from) = replay(&*a, "project:replay-redis:tasks").await;
    println!(
        "{}",
        row(
            "Redis: subscribe with from (read script)",
            &mut redis_replay
        )
    );
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let stream = format!("{prefix}{{project:replay-redis:tasks}}:events");
    let mut bare = Vec::with_capacity(REPLAY_SAMPLES);
    for _ in 0..REPLAY_SAMPLES {
        let start = Instant::now();
        let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(&stream)
            .arg(format!("{}-0", from.seq.get() + 1))
            .arg("+")
            .query_async(&mut conn)
            .await
            .unwrap();
        bare.push(start.elapsed());
        assert_eq!(entries.len(), 100);
    }
    println!(
        "{}",
        row(
            "Redis: bare XRANGE of the same 100 entries (the floor)",
            &mut bare
        )
    );

    ferry_benches::forget_prefix(&url, &prefix).await;
}
