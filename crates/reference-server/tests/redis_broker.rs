//! What only a broker shared through Redis must hold, over a real Redis: resume and history on
//! any node, retention, data loss, holes in the live feed filled from the stream, a lost
//! pub/sub connection, and Redis going away and coming back.

mod common;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use ferry_protocol::bounded::UInt;
use ferry_protocol::replay::Retention;
use ferry_protocol::{
    ChannelName, EncodedEvent, Epoch, ErrorCode, Event, Payload, RecoveryGap, Seq, StreamPosition,
    Timestamp, UnixMillis,
};
use ferry_server::broker::{Broker, BrokerError, RedisBroker, RedisBrokerConfig};
use ferry_server::hub::{Hub, Mailbox, QueueLimits};
use serde_json::json;

const T0: Timestamp = Timestamp::from_millis(0);

fn channel(name: &str) -> ChannelName {
    name.parse().expect("a valid channel")
}

async fn publish(broker: &RedisBroker, channel: &ChannelName, key: &str) -> StreamPosition {
    broker
        .publish(
            channel,
            key.parse().expect("a valid key"),
            Payload::from(json!({ "key": key })),
            T0,
            1,
        )
        .await
        .expect("published")
        .position
}

fn at(position: &StreamPosition, seq: u64) -> StreamPosition {
    StreamPosition {
        epoch: position.epoch.clone(),
        seq: Seq(UInt::new(seq).expect("a seq")),
    }
}

fn seqs(events: &[EncodedEvent]) -> Vec<u64> {
    events
        .iter()
        .map(|event| event.event().position.seq.get())
        .collect()
}

/// A session's mailbox joined to `channel` on `broker`'s node.
async fn follower(broker: &RedisBroker, hub: &Hub, channel: &ChannelName) -> Arc<Mailbox> {
    let mailbox = Arc::new(Mailbox::new(QueueLimits {
        frames: 1 << 20,
        bytes: usize::MAX,
    }));
    hub.join(broker, channel, &mailbox, T0)
        .await
        .expect("followed");
    mailbox
}

/// Events taken from `mailbox` until `enough` holds of them or the session was interrupted
/// (then `None`); at most 30 s.
async fn take_until(
    mailbox: &Mailbox,
    enough: impl Fn(&[EncodedEvent]) -> bool,
) -> Option<Vec<EncodedEvent>> {
    let mut all = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut events = VecDeque::new();
        if mailbox.take(&mut events) {
            return None;
        }
        all.extend(events);
        if enough(&all) || tokio::time::Instant::now() >= deadline {
            return Some(all);
        }
        tokio::select! {
            () = mailbox.ready() => {}
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

fn reaches(seq: u64) -> impl Fn(&[EncodedEvent]) -> bool {
    move |all| {
        all.last()
            .is_some_and(|event| event.event().position.seq.get() >= seq)
    }
}

#[tokio::test]
async fn ferry_resume_1_a_resume_on_another_node_replays_exactly_the_missed_events() {
    let prefix = common::test_prefix();
    let (a, b) = (
        common::redis_broker(&prefix).await,
        common::redis_broker(&prefix).await,
    );
    let tasks = channel("project:alpha:tasks");
    let mut last = None;
    for n in 1..=5 {
        last = Some(publish(&a, &tasks, &format!("k{n}")).await);
    }
    let head = last.expect("published");
    assert_eq!(head.seq.get(), 5);
    let (at_b, recovery, replay) = b
        .subscribe(&tasks, Some(&at(&head, 2)), T0)
        .await
        .expect("read");
    assert_eq!(at_b, head, "both nodes see one head");
    let recovery = recovery.expect("a recovery");
    assert!(recovery.complete && recovery.reason.is_none());
    assert_eq!(recovery.replayed.get(), 3);
    assert_eq!(seqs(&replay), vec![3, 4, 5]);
    assert_eq!(
        replay[0].event().payload,
        Payload::from(json!({ "key": "k3" }))
    );

    let (_, recovery, replay) = b.subscribe(&tasks, Some(&head), T0).await.expect("read");
    assert!(recovery.expect("a recovery").complete && replay.is_empty());
    let (_, recovery, replay) = b
        .subscribe(&tasks, Some(&at(&head, 9)), T0)
        .await
        .expect("read");
    assert_eq!(
        recovery.expect("a recovery").reason,
        Some(RecoveryGap::PositionAhead)
    );
    assert!(replay.is_empty());
    let other = StreamPosition {
        epoch: Epoch::try_from("e-elsewhere").expect("an epoch"),
        seq: head.seq.clone(),
    };
    let (_, recovery, _) = b.subscribe(&tasks, Some(&other), T0).await.expect("read");
    assert_eq!(
        recovery.expect("a recovery").reason,
        Some(RecoveryGap::EpochChanged)
    );

    // The history endpoint's pages, from either node.
    let page = b
        .history(&tasks, None, Some(1), 2, T0)
        .await
        .expect("a page");
    assert!(page.complete);
    assert_eq!(
        page.events
            .iter()
            .map(|e| e.position.seq.get())
            .collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_eq!(page.head, head);
    let all = a
        .history(&tasks, Some(&head.epoch), None, 1000, T0)
        .await
        .expect("a page");
    assert_eq!(all.events.len(), 5);
    common::forget(&prefix).await;
}

#[tokio::test]
async fn ferry_resume_3_history_is_kept_by_count_and_by_age() {
    let prefix = common::test_prefix();
    let count_only = Retention {
        max_events: 3,
        max_age: Duration::ZERO,
    };
    let broker = common::redis_broker_with(&prefix, count_only).await;
    let tasks = channel("project:alpha:tasks");
    let mut head = None;
    for n in 1..=10 {
        head = Some(publish(&broker, &tasks, &format!("k{n}")).await);
    }
    let head = head.expect("published");
    // An event goes once it is beyond the last 3 and older than 0 ms by Redis's clock: events
    // published within the read's millisecond are not older yet. Any wait past it will do.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (_, recovery, replay) = broker
        .subscribe(&tasks, Some(&at(&head, 6)), T0)
        .await
        .expect("read");
    assert_eq!(
        recovery.expect("a recovery").reason,
        Some(RecoveryGap::HistoryExceeded),
        "seq 7 is beyond the last 3 and older than 0 ms"
    );
    assert!(replay.is_empty());
    let (_, recovery, replay) = broker
        .subscribe(&tasks, Some(&at(&head, 7)), T0)
        .await
        .expect("read");
    assert!(recovery.expect("a recovery").complete);
    assert_eq!(seqs(&replay), vec![8, 9, 10]);
    let page = broker
        .history(&tasks, None, Some(2), 100, T0)
        .await
        .expect("a page");
    assert!(!page.complete);
    assert_eq!(page.reason, Some(RecoveryGap::HistoryExceeded));
    assert_eq!(
        page.events
            .iter()
            .map(|e| e.position.seq.get())
            .collect::<Vec<_>>(),
        vec![8, 9, 10],
        "an incomplete page starts at the oldest retained event"
    );
    let mut redis = common::redis().await;
    let held: u64 = redis::cmd("XLEN")
        .arg(format!("{prefix}{{project:alpha:tasks}}:events"))
        .query_async(&mut redis)
        .await
        .expect("XLEN");
    assert_eq!(held, 3, "the stream itself is trimmed");

    // With a long window, a burst keeps every event of the window however many.
    let prefix_aged = common::test_prefix();
    let windowed = common::redis_broker_with(
        &prefix_aged,
        Retention {
            max_events: 3,
            max_age: Duration::from_secs(600),
        },
    )
    .await;
    let mut head = None;
    for n in 1..=10 {
        head = Some(publish(&windowed, &tasks, &format!("k{n}")).await);
    }
    let head = head.expect("published");
    let (_, recovery, replay) = windowed
        .subscribe(&tasks, Some(&at(&head, 0)), T0)
        .await
        .expect("read");
    assert!(recovery.expect("a recovery").complete);
    assert_eq!(seqs(&replay), (1..=10).collect::<Vec<_>>());
    common::forget(&prefix).await;
    common::forget(&prefix_aged).await;
}

#[tokio::test]
async fn ferry_dedup_1_a_retry_on_another_node_is_answered_with_the_original() {
    let prefix = common::test_prefix();
    let (a, b) = (
        common::redis_broker(&prefix).await,
        common::redis_broker(&prefix).await,
    );
    let tasks = channel("project:alpha:tasks");
    let first = a
        .publish(
            &tasks,
            "order-17".parse().expect("a key"),
            Payload::from(json!(1)),
            T0,
            1,
        )
        .await
        .expect("published");
    let retry = b
        .publish(
            &tasks,
            "order-17".parse().expect("a key"),
            Payload::from(json!(2)),
            T0,
            1,
        )
        .await
        .expect("published");
    assert!(!first.duplicate && retry.duplicate);
    assert_eq!(retry.message_id, first.message_id);
    assert_eq!(retry.position, first.position);
    let page = b
        .history(&tasks, None, None, 100, T0)
        .await
        .expect("a page");
    assert_eq!(page.events.len(), 1, "stored once");
    common::forget(&prefix).await;
}

/// The channel's state is lost (as a FLUSHALL or a Redis restarted without persistence would
/// lose it, here for this test's keys only): the next publish starts a new epoch, a resume
/// across the loss says epoch_changed, and the sessions following the channel are interrupted
/// so that their clients resume.
#[tokio::test]
async fn a_channel_whose_state_is_lost_starts_a_new_epoch_and_resumes_say_epoch_changed() {
    let prefix = common::test_prefix();
    let (a, b) = (
        common::redis_broker(&prefix).await,
        common::redis_broker(&prefix).await,
    );
    let tasks = channel("project:alpha:tasks");
    let hub = Hub::default();
    let mailbox = follower(&a, &hub, &tasks).await;
    let before = publish(&b, &tasks, "k1").await;
    publish(&b, &tasks, "k2").await;
    assert!(
        take_until(&mailbox, reaches(2)).await.is_some(),
        "delivered live"
    );
    common::forget(&prefix).await;
    let after = publish(&b, &tasks, "k1").await;
    assert_ne!(after.epoch, before.epoch, "a new epoch");
    assert_eq!(after.seq.get(), 1);
    let again = b
        .publish(
            &tasks,
            "k2".parse().expect("a key"),
            Payload::from(json!(2)),
            T0,
            1,
        )
        .await
        .expect("published");
    assert!(
        !again.duplicate && again.position.seq.get() == 2,
        "an idempotency key of the lost state is forgotten with it"
    );
    assert!(
        take_until(&mailbox, |_| false).await.is_none(),
        "the follower's session is interrupted"
    );
    let (head, recovery, replay) = a
        .subscribe(&tasks, Some(&at(&before, 2)), T0)
        .await
        .expect("read");
    assert_eq!(head.epoch, after.epoch);
    assert_eq!(
        recovery.expect("a recovery").reason,
        Some(RecoveryGap::EpochChanged)
    );
    assert!(replay.is_empty());
    common::forget(&prefix).await;
}

/// A live event whose pub/sub message was lost: the stream holds it, the topic never carried
/// it. The next event shows a seq jump, and the follower gets the missing one from the stream
/// first, in order, without being interrupted.
#[tokio::test]
async fn ferry_event_2_a_seq_jump_in_the_live_feed_is_filled_from_the_stream() {
    let prefix = common::test_prefix();
    let (a, b) = (
        common::redis_broker(&prefix).await,
        common::redis_broker(&prefix).await,
    );
    let tasks = channel("project:alpha:tasks");
    let hub = Hub::default();
    let mailbox = follower(&a, &hub, &tasks).await;
    let first = publish(&b, &tasks, "k1").await;

    // Seq 2 written as the publish script writes it, but never published on the topic.
    let mut redis = common::redis().await;
    let state = format!("{prefix}{{project:alpha:tasks}}:state");
    let seq: u64 = redis::cmd("HINCRBY")
        .arg(&state)
        .arg("seq")
        .arg(1)
        .query_async(&mut redis)
        .await
        .expect("HINCRBY");
    assert_eq!(seq, 2);
    let lost = EncodedEvent::new(Event {
        channel: tasks.clone(),
        message_id: "m-lost".parse().expect("a message id"),
        payload: Payload::from(json!("lost on the topic")),
        position: at(&first, 2),
        published_at_ms: UnixMillis(UInt::new(1).expect("a time")),
    });
    let _: String = redis::cmd("XADD")
        .arg(format!("{prefix}{{project:alpha:tasks}}:events"))
        .arg("2-0")
        .arg("t")
        .arg(1)
        .arg("f")
        .arg(lost.text().as_str())
        .query_async(&mut redis)
        .await
        .expect("XADD");

    publish(&b, &tasks, "k3").await;
    let events = take_until(&mailbox, reaches(3))
        .await
        .expect("never interrupted: the stream filled the hole");
    assert_eq!(seqs(&events), vec![1, 2, 3]);
    assert_eq!(events[1], lost, "the stream's frame, as stored");
    common::forget(&prefix).await;
}

/// The node's pub/sub connection is closed while a publisher on another node goes on: the
/// node reconnects, subscribes again, and fills in from the stream what it missed, so the
/// follower sees every event once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_pub_sub_connection_is_reconnected_and_filled_in_from_the_stream() {
    let redis = common::PrivateRedis::start().await;
    let config = RedisBrokerConfig::new(redis.url(), Retention::default());
    let a = RedisBroker::new(config.clone()).expect("a broker");
    let b = Arc::new(RedisBroker::new(config).expect("a broker"));
    a.ping().await.expect("the private Redis answers");
    let tasks = channel("project:alpha:tasks");
    let hub = Hub::default();
    let mailbox = follower(&a, &hub, &tasks).await;
    let publisher = {
        let (b, tasks) = (b.clone(), tasks.clone());
        tokio::spawn(async move {
            for n in 1..=300 {
                publish(&b, &tasks, &format!("k{n}")).await;
                if n % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
    };
    let mut killed = 0;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        killed += redis.kill_pubsub_connections().await;
    }
    publisher.await.expect("the publisher ran");
    assert!(killed >= 1, "a pub/sub connection was closed");
    let events = take_until(&mailbox, reaches(300))
        .await
        .expect("never interrupted: the stream holds every event");
    assert_eq!(seqs(&events), (1..=300).collect::<Vec<_>>());
}

/// Redis goes away under traffic: calls fail with the retryable `unavailable` (no panic, no
/// hang), and once it is back (empty, without persistence) publishes work again in a new
/// epoch, the follower is interrupted so its client resumes, and a resume says epoch_changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_gives_unavailable_then_a_new_epoch() {
    let mut redis = common::PrivateRedis::start().await;
    let a = RedisBroker::new(RedisBrokerConfig::new(redis.url(), Retention::default()))
        .expect("a broker");
    a.ping().await.expect("the private Redis answers");
    let tasks = channel("project:alpha:tasks");
    let hub = Hub::default();
    let mailbox = follower(&a, &hub, &tasks).await;
    let before = publish(&a, &tasks, "k1").await;
    assert!(take_until(&mailbox, reaches(1)).await.is_some());

    redis.kill();
    let refused = a
        .publish(
            &tasks,
            "k2".parse().expect("a key"),
            Payload::from(json!(2)),
            T0,
            1,
        )
        .await
        .expect_err("Redis is down");
    assert!(matches!(refused, BrokerError::Unavailable(_)), "{refused}");
    assert_eq!(refused.code(), ErrorCode::Unavailable);
    let ticket = a
        .issue_ticket(
            ferry_protocol::server::Grant {
                user: "ada".parse().expect("a user"),
                permissions: Vec::new(),
            },
            Duration::from_secs(30),
            T0,
        )
        .await;
    assert!(matches!(ticket, Err(BrokerError::Unavailable(_))));
    let other = channel("project:beta:tasks");
    let joined = hub
        .join(
            &a,
            &other,
            &Arc::new(Mailbox::new(QueueLimits::default())),
            T0,
        )
        .await;
    assert!(matches!(joined, Err(BrokerError::Unavailable(_))));

    redis.restart().await;
    // The connection manager reconnects on its own; a call may fail while it does.
    let mut after = None;
    for n in 0..100 {
        match a
            .publish(
                &tasks,
                format!("again-{n}").parse().expect("a key"),
                Payload::from(json!(n)),
                T0,
                1,
            )
            .await
        {
            Ok(ack) => {
                after = Some(ack.position);
                break;
            }
            Err(error) => {
                assert_eq!(error.code(), ErrorCode::Unavailable);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let after = after.expect("publishes work again once Redis is back");
    assert_ne!(after.epoch, before.epoch);
    assert!(
        take_until(&mailbox, |_| false).await.is_none(),
        "the follower's session is interrupted, so its client resumes"
    );
    let (_, recovery, _) = a.subscribe(&tasks, Some(&before), T0).await.expect("read");
    assert_eq!(
        recovery.expect("a recovery").reason,
        Some(RecoveryGap::EpochChanged)
    );
}
