//! The broker contract under concurrency, through the public `Broker` trait: each check is
//! generic over the broker and runs against the in-memory broker and against two Redis
//! brokers (two nodes) on one real Redis, each test under its own key prefix.

mod common;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ferry_protocol::server::Grant;
use ferry_protocol::{ChannelName, EncodedEvent, Payload, Timestamp};
use ferry_server::broker::{Broker, MemoryBroker, MemoryBrokerConfig, RedisBroker};
use ferry_server::hub::{Delivery, Hub, Mailbox, QueueLimits};
use serde_json::json;
use tokio::sync::Barrier;

/// A session's view of a broker: one mailbox, with room for everything a test publishes,
/// joined to channels through a hub as the server's connections join them.
struct Follower {
    hub: Hub,
    mailbox: Arc<Mailbox>,
}

impl Follower {
    async fn of<B: Broker>(broker: &B, channels: &[ChannelName]) -> Self {
        let follower = Self {
            hub: Hub::default(),
            mailbox: Arc::new(Mailbox::new(QueueLimits {
                frames: 1 << 20,
                bytes: usize::MAX,
            })),
        };
        for channel in channels {
            follower
                .hub
                .join(
                    broker,
                    channel,
                    &follower.mailbox,
                    Timestamp::from_millis(0),
                )
                .await
                .expect("followed");
        }
        follower
    }

    /// Everything pushed since the last call, once there are at least `count` events (a
    /// broker shared by several nodes delivers them after the publish returned); at most 30 s.
    async fn received(&self, count: usize) -> Vec<EncodedEvent> {
        drain(&self.mailbox, count).await
    }
}

/// What `mailbox` holds once it holds at least `count` events (or after 30 s), checking that
/// it never fell behind.
async fn drain(mailbox: &Mailbox, count: usize) -> Vec<EncodedEvent> {
    drain_until(mailbox, |all| all.len() >= count).await
}

/// What `mailbox` holds once `enough` says so (or after 30 s), checking that it never fell
/// behind.
async fn drain_until(
    mailbox: &Mailbox,
    enough: impl Fn(&[EncodedEvent]) -> bool,
) -> Vec<EncodedEvent> {
    let mut all = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut deliveries = VecDeque::new();
        assert!(
            !mailbox.take(&mut deliveries).fell_behind,
            "never fell behind"
        );
        all.extend(
            deliveries
                .into_iter()
                .filter_map(|delivery| match delivery {
                    Delivery::Event(event) => Some(event),
                    Delivery::Presence(_) => None,
                }),
        );
        if enough(&all) || tokio::time::Instant::now() >= deadline {
            return all;
        }
        tokio::select! {
            () = mailbox.ready() => {}
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// Two Redis brokers on one Redis under one fresh prefix, as two nodes of one deployment.
async fn redis_nodes() -> (String, Arc<RedisBroker>, Arc<RedisBroker>) {
    let prefix = common::test_prefix();
    let a = common::redis_broker(&prefix).await;
    let b = common::redis_broker(&prefix).await;
    (prefix, a, b)
}

fn grant() -> Grant {
    Grant {
        user: "ada".parse().expect("a valid user id"),
        permissions: vec![
            serde_json::from_value(json!({ "pattern": "**", "read": true, "write": true }))
                .expect("a valid permission"),
        ],
    }
}

fn memory_broker() -> Arc<MemoryBroker> {
    Arc::new(MemoryBroker::new(MemoryBrokerConfig::default()))
}

/// FERRY-TICKET-4: of `racers` tasks redeeming one ticket at the same instant, half of them
/// on `other` (another node, or the same broker), exactly one gets the grant.
async fn exactly_one_racer_wins<B: Broker>(broker: Arc<B>, other: Arc<B>, racers: usize) {
    let now = Timestamp::from_millis(0);
    let ticket = broker
        .issue_ticket(grant(), Duration::from_secs(30), now)
        .await
        .expect("issued");
    let barrier = Arc::new(Barrier::new(racers));
    let mut tasks = Vec::new();
    for r in 0..racers {
        let broker = if r % 2 == 0 { &broker } else { &other };
        let (broker, barrier, ticket) = (broker.clone(), barrier.clone(), ticket.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            broker.redeem_ticket(&ticket, now).await.expect("answered")
        }));
    }
    let mut winners = 0;
    for task in tasks {
        if let Some(won) = task.await.expect("the task ran") {
            assert_eq!(won, grant());
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one redemption succeeds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ferry_ticket_4_sixteen_racing_redemptions_exactly_one_wins() {
    for _ in 0..20 {
        let broker = memory_broker();
        exactly_one_racer_wins(broker.clone(), broker, 16).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ferry_ticket_4_racing_redemptions_on_two_redis_nodes_exactly_one_wins() {
    let (prefix, a, b) = redis_nodes().await;
    for _ in 0..20 {
        exactly_one_racer_wins(a.clone(), b.clone(), 16).await;
    }
    common::forget(&prefix).await;
}

/// FERRY-EVENT-1, FERRY-EVENT-2: with `publishers` tasks publishing `each` events on each of
/// `channels` channels at once, half of them through `other`, a follower on `broker` sees
/// every channel's seqs as 1, 2, 3, ... in order.
async fn fan_out_follows_seq_order<B: Broker>(
    broker: Arc<B>,
    other: Arc<B>,
    channels: usize,
    publishers: usize,
    each: usize,
) {
    let names: Vec<ChannelName> = (0..channels)
        .map(|c| format!("project:c{c}").parse().expect("a valid channel"))
        .collect();
    let follower = Follower::of(&*broker, &names).await;
    let barrier = Arc::new(Barrier::new(publishers));
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let broker = if p % 2 == 0 { &broker } else { &other };
        let (broker, barrier, names) = (broker.clone(), barrier.clone(), names.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            for n in 0..each {
                for name in &names {
                    let key = format!("p{p}-n{n}").parse().expect("a valid key");
                    let ack = broker
                        .publish(
                            name,
                            key,
                            Payload::from(json!({ "p": p, "n": n })),
                            Timestamp::from_millis(0),
                            0,
                        )
                        .await
                        .expect("published");
                    assert!(!ack.duplicate);
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("the publisher ran");
    }
    let mut last: HashMap<ChannelName, u64> = HashMap::new();
    let received = follower.received(channels * publishers * each).await;
    assert_eq!(
        received.len(),
        channels * publishers * each,
        "every event fanned out once"
    );
    for encoded in &received {
        let event = encoded.event();
        let previous = last.entry(event.channel.clone()).or_insert(0);
        assert_eq!(
            event.position.seq.get(),
            *previous + 1,
            "channel {} out of order",
            event.channel.as_str()
        );
        *previous += 1;
    }
    for name in &names {
        assert_eq!(last.get(name), Some(&((publishers * each) as u64)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ferry_event_2_fan_out_order_equals_seq_order_under_concurrent_publishers() {
    let broker = memory_broker();
    fan_out_follows_seq_order(broker.clone(), broker, 1, 8, 500).await;
    let broker = memory_broker();
    fan_out_follows_seq_order(broker.clone(), broker, 4, 8, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ferry_event_2_fan_out_order_equals_seq_order_across_two_redis_nodes() {
    let (prefix, a, b) = redis_nodes().await;
    fan_out_follows_seq_order(a.clone(), b.clone(), 1, 8, 100).await;
    common::forget(&prefix).await;
    let (prefix, a, b) = redis_nodes().await;
    fan_out_follows_seq_order(a, b, 4, 4, 50).await;
    common::forget(&prefix).await;
}

/// FERRY-DEDUP-1: of `racers` tasks publishing with one key at once, half of them through
/// `other`, one stores the event and every other gets its position back with duplicate true;
/// one event is fanned out.
async fn racing_repeats_store_once<B: Broker>(broker: Arc<B>, other: Arc<B>, racers: usize) {
    let channel: ChannelName = "project:dedup".parse().expect("a valid channel");
    let follower = Follower::of(&*broker, std::slice::from_ref(&channel)).await;
    let barrier = Arc::new(Barrier::new(racers));
    let mut tasks = Vec::new();
    for r in 0..racers {
        let broker = if r % 2 == 0 { &broker } else { &other };
        let (broker, barrier, channel) = (broker.clone(), barrier.clone(), channel.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            broker
                .publish(
                    &channel,
                    "same-key".parse().expect("a valid key"),
                    Payload::from(json!(r)),
                    Timestamp::from_millis(0),
                    0,
                )
                .await
                .expect("acknowledged")
        }));
    }
    let mut acks = Vec::new();
    for task in tasks {
        acks.push(task.await.expect("the publisher ran"));
    }
    let originals: Vec<_> = acks.iter().filter(|ack| !ack.duplicate).collect();
    assert_eq!(originals.len(), 1, "exactly one publish is stored");
    let original = originals[0];
    assert!(
        acks.iter()
            .all(|ack| ack.message_id == original.message_id && ack.position == original.position)
    );
    let received = follower.received(1).await;
    // A second event would have come by now if there were one: this one was published after.
    let marker = broker
        .publish(
            &channel,
            "after".parse().expect("a valid key"),
            Payload::from(json!("after")),
            Timestamp::from_millis(0),
            0,
        )
        .await
        .expect("published");
    let mut received = received;
    received.extend(follower.received(1).await);
    assert_eq!(
        received.last().map(|e| e.event().message_id.clone()),
        Some(marker.message_id)
    );
    received.pop();
    assert_eq!(received.len(), 1, "one event fanned out");
    assert_eq!(received[0].event().message_id, original.message_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ferry_dedup_1_racing_publishes_with_one_key_store_one_event() {
    let broker = memory_broker();
    racing_repeats_store_once(broker.clone(), broker, 16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ferry_dedup_1_racing_publishes_with_one_key_on_two_redis_nodes_store_one_event() {
    let (prefix, a, b) = redis_nodes().await;
    racing_repeats_store_once(a, b, 16).await;
    common::forget(&prefix).await;
}

/// FERRY-SUBSCRIBE-2 when a subscribe races publishes: a session that joins the channel and
/// then reads its head finds every event after that head in its mailbox, each once and in
/// order, however the publishes (through `other`) interleave with the join.
async fn a_subscribe_racing_publishes_misses_nothing_after_its_head<B: Broker>(
    broker: Arc<B>,
    other: Arc<B>,
) {
    let channel: ChannelName = "project:race".parse().expect("a valid channel");
    let publisher = {
        let (broker, channel) = (other.clone(), channel.clone());
        tokio::spawn(async move {
            for n in 0..2000 {
                broker
                    .publish(
                        &channel,
                        format!("k{n}").parse().expect("a valid key"),
                        Payload::from(json!(n)),
                        Timestamp::from_millis(0),
                        0,
                    )
                    .await
                    .expect("published");
                if n % 100 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    // One hub, as on a node: every session's mailbox joins the same feed.
    let hub = Hub::default();
    let mut sessions = Vec::new();
    for _ in 0..20 {
        let mailbox = Arc::new(Mailbox::new(QueueLimits {
            frames: 1 << 20,
            bytes: usize::MAX,
        }));
        hub.join(&*broker, &channel, &mailbox, Timestamp::from_millis(0))
            .await
            .expect("followed");
        let (head, _, _) = broker
            .subscribe(&channel, None, Timestamp::from_millis(0))
            .await
            .expect("read");
        sessions.push((mailbox, head.seq.get()));
        tokio::task::yield_now().await;
    }
    publisher.await.expect("the publisher ran");
    for (mailbox, head) in sessions {
        let events = drain_until(&mailbox, |all| {
            head == 2000
                || all
                    .last()
                    .is_some_and(|event| event.event().position.seq.get() == 2000)
        })
        .await;
        let after: Vec<u64> = events
            .iter()
            .map(|event| event.event().position.seq.get())
            .filter(|seq| *seq > head)
            .collect();
        assert!(
            after.iter().copied().eq(head + 1..=2000),
            "after head {head}: {} events, first {:?}",
            after.len(),
            after.first()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ferry_subscribe_2_a_subscribe_racing_publishes_misses_nothing_after_its_head() {
    let broker = memory_broker();
    a_subscribe_racing_publishes_misses_nothing_after_its_head(broker.clone(), broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ferry_subscribe_2_a_subscribe_on_one_redis_node_racing_publishes_on_another() {
    let (prefix, a, b) = redis_nodes().await;
    a_subscribe_racing_publishes_misses_nothing_after_its_head(a, b).await;
    common::forget(&prefix).await;
}
