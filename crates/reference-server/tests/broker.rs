//! The broker contract under concurrency, through the public `Broker` trait: each test is
//! generic over the broker so that another implementation (Redis) can run the same checks.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ferry_protocol::server::Grant;
use ferry_protocol::{ChannelName, EncodedEvent, Payload, Timestamp};
use ferry_server::broker::{Broker, MemoryBroker, MemoryBrokerConfig};
use ferry_server::hub::{Hub, Mailbox, QueueLimits};
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

    /// Everything pushed since the last call.
    fn received(&self) -> Vec<EncodedEvent> {
        let mut events = VecDeque::new();
        assert!(!self.mailbox.take(&mut events), "never fell behind");
        events.into()
    }
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

/// FERRY-TICKET-4: of `racers` tasks redeeming one ticket at the same instant, exactly one
/// gets the grant.
async fn exactly_one_racer_wins<B: Broker>(broker: Arc<B>, racers: usize) {
    let now = Timestamp::from_millis(0);
    let ticket = broker
        .issue_ticket(grant(), Duration::from_secs(30), now)
        .await
        .expect("issued");
    let barrier = Arc::new(Barrier::new(racers));
    let mut tasks = Vec::new();
    for _ in 0..racers {
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
        exactly_one_racer_wins(memory_broker(), 16).await;
    }
}

/// FERRY-EVENT-1, FERRY-EVENT-2: with `publishers` tasks publishing `each` events on each of
/// `channels` channels at once, a follower sees every channel's seqs as 1, 2, 3, ... in order.
async fn fan_out_follows_seq_order<B: Broker>(
    broker: Arc<B>,
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
    let received = follower.received();
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
    fan_out_follows_seq_order(memory_broker(), 1, 8, 500).await;
    fan_out_follows_seq_order(memory_broker(), 4, 8, 200).await;
}

/// FERRY-DEDUP-1: of `racers` tasks publishing with one key at once, one stores the event and
/// every other gets its position back with duplicate true; one event is fanned out.
async fn racing_repeats_store_once<B: Broker>(broker: Arc<B>, racers: usize) {
    let channel: ChannelName = "project:dedup".parse().expect("a valid channel");
    let follower = Follower::of(&*broker, std::slice::from_ref(&channel)).await;
    let barrier = Arc::new(Barrier::new(racers));
    let mut tasks = Vec::new();
    for r in 0..racers {
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
    let received = follower.received();
    assert_eq!(received.len(), 1, "one event fanned out");
    assert_eq!(received[0].event().message_id, original.message_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ferry_dedup_1_racing_publishes_with_one_key_store_one_event() {
    racing_repeats_store_once(memory_broker(), 16).await;
}

/// FERRY-SUBSCRIBE-2 when a subscribe races publishes: a session that joins the channel and
/// then reads its head finds every event after that head in its mailbox, each once and in
/// order, however the publishes interleave with the join.
async fn a_subscribe_racing_publishes_misses_nothing_after_its_head<B: Broker>(broker: Arc<B>) {
    let channel: ChannelName = "project:race".parse().expect("a valid channel");
    let publisher = {
        let (broker, channel) = (broker.clone(), channel.clone());
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
        let mut events = VecDeque::new();
        assert!(!mailbox.take(&mut events));
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
    a_subscribe_racing_publishes_misses_nothing_after_its_head(memory_broker()).await;
}
