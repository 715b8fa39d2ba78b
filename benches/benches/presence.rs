//! Presence through each broker, side by side in one process: a join's and a leave's way to a
//! subscriber's feed (in memory; on Redis on one node and across two), a full read of 10 000
//! members in pages of 1000 beside a bare `ZRANGE` of the same count (the floor), and the
//! storm of 5000 members whose connections drop and come back within `leave_after`, which must
//! send no join and no leave.
//!
//! Needs a Redis at `FERRY_BENCH_REDIS_URL` (default `redis://127.0.0.1:6379`); every key is
//! under a fresh prefix, deleted at the end. Prints Markdown tables.
//!
//! ```sh
//! cargo bench -p ferry-benches --bench presence
//! ```

#![allow(missing_docs, clippy::print_stdout, clippy::unwrap_used)]

use ferry_benches::row;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_protocol::replay::Retention;
use ferry_protocol::{ChannelName, SessionId, Timestamp, UserId};
use ferry_server::broker::{
    Broker, MemoryBroker, MemoryBrokerConfig, PresentSession, RedisBroker, RedisBrokerConfig,
};
use ferry_server::hub::{Delivery, Hub, Mailbox, QueueLimits};

const T0: Timestamp = Timestamp::from_millis(0);
const SAMPLES: usize = 1000;
const MEMBERS: usize = 10_000;
const PAGE: usize = 1000;
const STORM: usize = 5000;

fn session(n: usize) -> SessionId {
    format!("s-{n}").parse().unwrap()
}

fn user(n: usize) -> UserId {
    format!("user-{n:06}").parse().unwrap()
}

fn present(n: usize, u: usize) -> PresentSession {
    PresentSession {
        session: session(n),
        user: user(u),
        info: None,
    }
}

/// How many presence events `mailbox` holds now.
fn presence_events(mailbox: &Mailbox) -> usize {
    let mut taken = VecDeque::new();
    assert!(!mailbox.take(&mut taken).fell_behind);
    taken
        .iter()
        .filter(|d| matches!(d, Delivery::Presence(_)))
        .count()
}

/// Waits until `mailbox` holds a presence event.
async fn next_presence(mailbox: &Mailbox) {
    loop {
        if presence_events(mailbox) > 0 {
            return;
        }
        mailbox.ready().await;
    }
}

/// A join of a new user through `joiner`, then its leave, each timed from the call until its
/// presence event reaches a feed of `follower`'s node.
async fn join_and_leave<J: Broker, F: Broker>(
    joiner: &J,
    follower: &F,
    channel: &str,
) -> (Vec<Duration>, Vec<Duration>) {
    let channel: ChannelName = channel.parse().unwrap();
    let hub = Hub::default();
    let mailbox = Arc::new(Mailbox::new(QueueLimits::default()));
    hub.join(follower, &channel, &mailbox, T0).await.unwrap();
    // A channel with 1000 members already.
    for n in 0..1000 {
        joiner
            .join_presence(&channel, present(n, n), T0)
            .await
            .unwrap();
    }
    while tokio::time::timeout(Duration::from_millis(200), next_presence(&mailbox))
        .await
        .is_ok()
    {}
    let (mut joins, mut leaves) = (Vec::new(), Vec::new());
    for n in 1000..1000 + SAMPLES + 50 {
        let start = Instant::now();
        joiner
            .join_presence(&channel, present(n, n), T0)
            .await
            .unwrap();
        next_presence(&mailbox).await;
        let joined = start.elapsed();
        let start = Instant::now();
        let recorded = joiner.leave_presence(&channel, &session(n), T0);
        next_presence(&mailbox).await;
        let left = start.elapsed();
        recorded.await;
        // The first 50 warm the connections and scripts up.
        if n >= 1050 {
            joins.push(joined);
            leaves.push(left);
        }
    }
    hub.leave(follower, &channel, &mailbox, T0);
    (joins, leaves)
}

/// The floor of a presence event on Redis: a bare `PUBLISH` of a frame of the same size, timed
/// until a subscribed connection receives it.
async fn bare_publish(url: &str, topic: &str) -> Vec<Duration> {
    use futures_util::StreamExt;
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(topic).await.unwrap();
    let mut messages = pubsub.on_message();
    let frame = r#"{"type":"presence","channel":"room:bench-floor","change":"join","user":"user-001000","position":{"epoch":"e-00000000000000000000000000000000","seq":0}}"#;
    let mut samples = Vec::new();
    for n in 0..SAMPLES + 50 {
        let start = Instant::now();
        let _: i64 = redis::cmd("PUBLISH")
            .arg(topic)
            .arg(frame)
            .query_async(&mut conn)
            .await
            .unwrap();
        messages.next().await.unwrap();
        if n >= 50 {
            samples.push(start.elapsed());
        }
    }
    samples
}

/// `MEMBERS` members, then timed full reads of them in pages of `PAGE`.
async fn read_members<B: Broker>(broker: &B, channel: &str) -> Vec<Duration> {
    let channel: ChannelName = channel.parse().unwrap();
    for n in 0..MEMBERS {
        broker
            .join_presence(&channel, present(n, n), T0)
            .await
            .unwrap();
    }
    let mut samples = Vec::new();
    for _ in 0..30 {
        let start = Instant::now();
        let mut after = None;
        let mut read = 0;
        loop {
            let (members, next, _) = broker
                .members(&channel, after.as_ref(), PAGE, T0)
                .await
                .unwrap();
            read += members.len();
            if next.is_none() {
                break;
            }
            after = next;
        }
        samples.push(start.elapsed());
        assert_eq!(read, MEMBERS);
    }
    samples
}

/// The floor of a paged read on Redis: `ZRANGE … BYLEX … LIMIT` over a sorted set of the same
/// users, page by page.
async fn bare_zrange(url: &str, key: &str) -> Vec<Duration> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut pipe = redis::pipe();
    for n in 0..MEMBERS {
        pipe.cmd("ZADD")
            .arg(key)
            .arg(0)
            .arg(user(n).as_str())
            .ignore();
    }
    let () = pipe.query_async(&mut conn).await.unwrap();
    let mut samples = Vec::new();
    for _ in 0..30 {
        let start = Instant::now();
        let mut from = "-".to_owned();
        let mut read = 0;
        loop {
            let page: Vec<String> = redis::cmd("ZRANGE")
                .arg(key)
                .arg(&from)
                .arg("+")
                .arg("BYLEX")
                .arg("LIMIT")
                .arg(0)
                .arg(PAGE)
                .query_async(&mut conn)
                .await
                .unwrap();
            read += page.len();
            match page.last() {
                Some(last) if page.len() == PAGE => from = format!("({last}"),
                _ => break,
            }
        }
        samples.push(start.elapsed());
        assert_eq!(read, MEMBERS);
    }
    let () = redis::cmd("DEL")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    samples
}

/// `STORM` members whose sessions all lapse (their connections dropped) and whose clients
/// come back with new sessions before `leave_after`, then the lapse passes: the presence
/// events a subscriber got (none is right) and how long the rejoins took.
async fn storm<B: Broker>(broker: &B, channel: &str, lapse: Duration) -> (usize, Duration) {
    let channel: ChannelName = channel.parse().unwrap();
    let hub = Hub::default();
    let mailbox = Arc::new(Mailbox::new(QueueLimits {
        frames: 100_000,
        bytes: 1 << 30,
    }));
    hub.join(broker, &channel, &mailbox, T0).await.unwrap();
    for n in 0..STORM {
        broker
            .join_presence(&channel, present(n, n), T0)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    presence_events(&mailbox);
    let start = Instant::now();
    for n in 0..STORM {
        broker.lapse_presence(&channel, &session(n), T0);
    }
    for n in 0..STORM {
        broker
            .join_presence(&channel, present(STORM + n, n), T0)
            .await
            .unwrap();
    }
    let rejoined = start.elapsed();
    // Past the lapse of the old sessions, swept.
    tokio::time::sleep(lapse + Duration::from_millis(500)).await;
    let later = T0 + lapse + Duration::from_secs(1);
    broker.expire_presence(later).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = presence_events(&mailbox);
    let (members, _, _) = broker.members(&channel, None, PAGE, later).await.unwrap();
    assert!(
        members.iter().all(|m| m.sessions.get() == 1),
        "the lapsed sessions left"
    );
    hub.leave(broker, &channel, &mailbox, T0);
    (events, rejoined)
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
    let lapse = Duration::from_secs(2);
    let redis_config = RedisBrokerConfig {
        prefix: prefix.clone(),
        presence_leave_after: lapse,
        ..RedisBrokerConfig::new(url.clone(), Retention::default())
    };
    let memory = Arc::new(MemoryBroker::new(MemoryBrokerConfig {
        presence_leave_after: lapse,
        ..MemoryBrokerConfig::default()
    }));
    let a = Arc::new(RedisBroker::new(redis_config.clone()).unwrap());
    let b = Arc::new(RedisBroker::new(redis_config).unwrap());
    a.ping().await.expect("a Redis at FERRY_BENCH_REDIS_URL");

    println!(
        "### A join and a leave, call to presence event at a subscriber's feed ({SAMPLES} samples each, 1000 members present, µs)\n"
    );
    println!("| broker | change | p50 | p99 |\n| --- | --- | --- | --- |");
    for (what, (mut joins, mut leaves)) in [
        (
            "in memory, one node",
            join_and_leave(&*memory, &*memory, "room:bench-memory").await,
        ),
        (
            "Redis, one node",
            join_and_leave(&*a, &*a, "room:bench-same").await,
        ),
        (
            "Redis, joined on node B, seen on node A",
            join_and_leave(&*b, &*a, "room:bench-across").await,
        ),
    ] {
        let join = row(what, &mut joins).replacen(" | ", " | join | ", 1);
        let leave = row(what, &mut leaves).replacen(" | ", " | leave | ", 1);
        println!("{join}\n{leave}");
    }
    let mut floor = bare_publish(&url, &format!("{prefix}bare-publish")).await;
    println!(
        "{}",
        row(
            "bare PUBLISH of a frame that size to a subscribed connection (the floor)",
            &mut floor
        )
        .replacen(" | ", " | - | ", 1)
    );

    println!(
        "\n### Reading {MEMBERS} members in pages of {PAGE} (30 full reads, µs per full read)\n"
    );
    println!("| what | p50 | p99 |\n| --- | --- | --- |");
    let mut read = read_members(&*memory, "room:read-memory").await;
    println!("{}", row("in memory", &mut read));
    let mut read = read_members(&*a, "room:read-redis").await;
    println!("{}", row("Redis broker", &mut read));
    let mut floor = bare_zrange(&url, &format!("{prefix}bare-zrange")).await;
    println!(
        "{}",
        row(
            "bare ZRANGE BYLEX of the same users, page by page (the floor)",
            &mut floor
        )
    );

    println!(
        "\n### {STORM} members drop and come back within leave_after ({} s)\n",
        lapse.as_secs()
    );
    println!("| broker | presence events sent | rejoins took (ms) |\n| --- | --- | --- |");
    for (what, (events, took)) in [
        (
            "in memory",
            storm(&*memory, "room:storm-memory", lapse).await,
        ),
        ("Redis", storm(&*a, "room:storm-redis", lapse).await),
    ] {
        println!("| {what} | {events} | {} |", took.as_millis());
    }

    ferry_benches::forget_prefix(&url, &prefix).await;
}
