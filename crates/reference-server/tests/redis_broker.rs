//! What only a broker shared through Redis must hold, over a real Redis: resume and history on
//! any node, retention, data loss, holes in the live feed filled from the stream, a lost
//! pub/sub connection, Redis going away and coming back, and presence and holds shared by
//! several nodes.

mod common;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use ferry_protocol::bounded::UInt;
use ferry_protocol::presence::{Claimed, Holder};
use ferry_protocol::replay::Retention;
use ferry_protocol::{
    ChannelName, EncodedEvent, EncodedPresence, Epoch, ErrorCode, Event, Exclusive, Payload,
    PresenceChange, PresenceInfo, RecoveryGap, Seq, SessionId, StreamPosition, Timestamp,
    UnixMillis, UserId,
};
use ferry_server::broker::{Broker, BrokerError, PresentSession, RedisBroker, RedisBrokerConfig};
use ferry_server::hub::{Delivery, Hub, Mailbox, QueueLimits};
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

/// Everything a session's mailbox was handed, in order of kind.
#[derive(Debug, Default)]
struct Received {
    events: Vec<EncodedEvent>,
    presence: Vec<EncodedPresence>,
    taken_over: Vec<(ChannelName, u64)>,
    interrupted: bool,
    /// Events and presence events in the order they arrived: `event <seq>`, `join <user>`,
    /// `leave <user>`.
    arrivals: Vec<String>,
}

impl Received {
    /// Takes what `mailbox` holds now.
    fn take(&mut self, mailbox: &Mailbox) {
        let mut deliveries = VecDeque::new();
        let taken = mailbox.take(&mut deliveries);
        self.interrupted |= taken.fell_behind;
        self.taken_over.extend(taken.taken_over);
        for delivery in deliveries {
            match delivery {
                Delivery::Event(event) => {
                    let seq = event.event().position.seq.get();
                    self.arrivals.push(format!("event {seq}"));
                    self.events.push(event);
                }
                Delivery::Presence(presence) => {
                    let event = presence.presence();
                    self.arrivals
                        .push(format!("{} {}", event.change, event.user.as_str()));
                    self.presence.push(presence);
                }
            }
        }
    }

    /// The presence events, as (change, user).
    fn changes(&self) -> Vec<(PresenceChange, String)> {
        self.presence
            .iter()
            .map(|p| (p.presence().change, p.presence().user.as_str().to_owned()))
            .collect()
    }
}

/// Takes from `mailbox` into `received` until `enough` holds, the session is interrupted or
/// `within` passed; whether `enough` held.
async fn receive_until(
    mailbox: &Mailbox,
    received: &mut Received,
    enough: impl Fn(&Received) -> bool,
    within: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        received.take(mailbox);
        if enough(received) {
            return true;
        }
        if received.interrupted || tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::select! {
            () = mailbox.ready() => {}
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// Events taken from `mailbox` until `enough` holds of them or the session was interrupted
/// (then `None`); at most 30 s.
async fn take_until(
    mailbox: &Mailbox,
    enough: impl Fn(&[EncodedEvent]) -> bool,
) -> Option<Vec<EncodedEvent>> {
    let mut received = Received::default();
    receive_until(
        mailbox,
        &mut received,
        |r| enough(&r.events),
        Duration::from_secs(30),
    )
    .await;
    (!received.interrupted).then_some(received.events)
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

/// A node of its own on the test Redis under `prefix`, with `leave_after` as its
/// `presence_leave_after`.
async fn node(prefix: &str, leave_after: Duration) -> Arc<RedisBroker> {
    let broker = RedisBroker::new(RedisBrokerConfig {
        prefix: prefix.to_owned(),
        presence_leave_after: leave_after,
        ..RedisBrokerConfig::new(common::redis_url(), Retention::default())
    })
    .expect("a Redis URL");
    broker.ping().await.expect("the test Redis answers");
    Arc::new(broker)
}

fn session(id: &str) -> SessionId {
    id.parse().expect("a session id")
}

fn user(name: &str) -> UserId {
    name.parse().expect("a user id")
}

fn info(value: serde_json::Value) -> PresenceInfo {
    serde_json::from_value(value).expect("an info object")
}

fn present(id: &str, name: &str, with: Option<PresenceInfo>) -> PresentSession {
    PresentSession {
        session: session(id),
        user: user(name),
        info: with,
    }
}

/// The users of one members page read on `broker`, with their counts, and its `next`.
async fn page(
    broker: &RedisBroker,
    channel: &ChannelName,
    after: Option<&str>,
    limit: usize,
) -> (Vec<(String, u64)>, Option<String>) {
    let after = after.map(user);
    let (members, next, _) = broker
        .members(channel, after.as_ref(), limit, T0)
        .await
        .expect("members");
    (
        members
            .iter()
            .map(|m| (m.user.as_str().to_owned(), m.sessions.get()))
            .collect(),
        next.map(|next| next.as_str().to_owned()),
    )
}

/// Polls until `broker`'s members of `channel` are `users` (sweeping `broker` each time), for at
/// most 10 s; whether they were.
async fn members_become(
    broker: &RedisBroker,
    channel: &ChannelName,
    users: &[(&str, u64)],
) -> bool {
    let want: Vec<(String, u64)> = users.iter().map(|(u, n)| ((*u).to_owned(), *n)).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        broker.expire_presence(T0).await;
        if page(broker, channel, None, 1000).await.0 == want {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A presence frame is the server's own encoding of the event it carries, byte for byte.
fn assert_encoded_as_the_server_does(presence: &EncodedPresence) {
    assert_eq!(
        EncodedPresence::new(presence.presence().clone())
            .text()
            .as_str(),
        presence.text().as_str()
    );
}

/// A join recorded by one node is a member on every node and a presence event in every node's
/// feed, with the channel's head; presence frames do not disturb the feed's events.
#[tokio::test]
async fn ferry_presence_1_2_a_join_on_one_node_is_seen_on_another() {
    let prefix = common::test_prefix();
    let leave_after = Duration::from_secs(30);
    let (a, b) = (
        node(&prefix, leave_after).await,
        node(&prefix, leave_after).await,
    );
    let viewers = channel("project:alpha:viewers");
    let hub = Hub::default();
    let mailbox = follower(&b, &hub, &viewers).await;
    let head = publish(&a, &viewers, "k1").await;
    // A user id may hold anything: the frame escapes it as the server's encoder does.
    let odd = "ada \"the first\" \\ / \u{7}\u{1f} é";
    let ada_info = info(json!({ "name": "Ada", "device": "laptop", "n": 12345678901234567u64 }));
    a.join_presence(&viewers, present("s1", odd, Some(ada_info.clone())), T0)
        .await
        .expect("joined");

    let (members, next, position) = b.members(&viewers, None, 100, T0).await.expect("members");
    assert_eq!(next, None);
    assert_eq!(position, head, "the head when the page was read");
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].user, user(odd));
    assert_eq!(members[0].sessions.get(), 1);
    assert_eq!(members[0].info.as_ref(), Some(&ada_info));

    let mut received = Received::default();
    assert!(
        receive_until(
            &mailbox,
            &mut received,
            |r| !r.presence.is_empty(),
            Duration::from_secs(10)
        )
        .await,
        "the join reaches the other node's feed: {received:?}"
    );
    let join = received.presence[0].presence();
    assert_eq!(join.change, PresenceChange::Join);
    assert_eq!(join.user, user(odd));
    assert_eq!(join.channel, viewers);
    assert_eq!(join.info.as_ref(), Some(&ada_info));
    assert_eq!(join.position, head, "the head when the join was recorded");
    assert_encoded_as_the_server_does(&received.presence[0]);

    // Presence frames take no seq: the next event follows in the feed, nothing interrupted.
    publish(&a, &viewers, "k2").await;
    assert!(
        receive_until(
            &mailbox,
            &mut received,
            |r| r.events.len() == 2,
            Duration::from_secs(10)
        )
        .await,
        "the event after the join: {received:?}"
    );
    assert!(!received.interrupted);
    assert_eq!(seqs(&received.events), vec![1, 2]);

    // A user joining without info is a member without info.
    b.join_presence(&viewers, present("s2", "grace", None), T0)
        .await
        .expect("joined");
    assert!(
        receive_until(
            &mailbox,
            &mut received,
            |r| r.presence.len() == 2,
            Duration::from_secs(10)
        )
        .await,
        "{received:?}"
    );
    let grace = received.presence[1].presence();
    assert_eq!((grace.user.as_str(), grace.info.as_ref()), ("grace", None));
    assert_eq!(grace.position.seq.get(), 2);
    assert_encoded_as_the_server_does(&received.presence[1]);
    let (members, _, _) = a.members(&viewers, None, 100, T0).await.expect("members");
    assert_eq!(
        members
            .iter()
            .map(|m| (m.user.as_str(), m.info.is_some()))
            .collect::<Vec<_>>(),
        vec![(odd, true), ("grace", false)]
    );
    common::forget(&prefix).await;
}

/// Two tabs of one user, on two nodes: one join, a member with two sessions, and a leave only
/// when the second tab leaves too.
#[tokio::test]
async fn ferry_presence_2_a_second_tab_joins_nothing_and_only_the_last_leave_leaves() {
    let prefix = common::test_prefix();
    let leave_after = Duration::from_secs(30);
    let (a, b) = (
        node(&prefix, leave_after).await,
        node(&prefix, leave_after).await,
    );
    let viewers = channel("project:alpha:viewers");
    let hub = Hub::default();
    let mailbox = follower(&b, &hub, &viewers).await;
    a.join_presence(
        &viewers,
        present("tab1", "ada", Some(info(json!({ "tab": 1 })))),
        T0,
    )
    .await
    .expect("joined");
    b.join_presence(
        &viewers,
        present("tab2", "ada", Some(info(json!({ "tab": 2 })))),
        T0,
    )
    .await
    .expect("joined");
    let (members, _, _) = b.members(&viewers, None, 100, T0).await.expect("members");
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].sessions.get(), 2);
    assert_eq!(
        members[0].info,
        Some(info(json!({ "tab": 1 }))),
        "the info of the session that made the user a member"
    );

    a.leave_presence(&viewers, &session("tab1"), T0).await;
    assert_eq!(
        page(&b, &viewers, None, 100).await,
        (vec![("ada".to_owned(), 1)], None),
        "tab1's leave is read at the other node once it is recorded"
    );
    // Anything the leave published reached the topic before this event.
    publish(&b, &viewers, "after-tab1").await;
    let mut received = Received::default();
    assert!(
        receive_until(
            &mailbox,
            &mut received,
            |r| !r.events.is_empty(),
            Duration::from_secs(10)
        )
        .await,
        "{received:?}"
    );
    assert_eq!(
        received.changes(),
        vec![(PresenceChange::Join, "ada".to_owned())],
        "one join for two tabs, no leave while one is present"
    );
    let (members, _, _) = a.members(&viewers, None, 100, T0).await.expect("members");
    assert_eq!(
        members[0].info,
        Some(info(json!({ "tab": 1 }))),
        "kept until the user leaves"
    );

    b.leave_presence(&viewers, &session("tab2"), T0).await;
    assert!(
        receive_until(
            &mailbox,
            &mut received,
            |r| r.presence.len() == 2,
            Duration::from_secs(10)
        )
        .await,
        "{received:?}"
    );
    assert_eq!(
        received.changes()[1],
        (PresenceChange::Leave, "ada".to_owned())
    );
    let leave = received.presence[1].presence();
    assert_eq!(
        leave.position.seq.get(),
        1,
        "the head when the leave was recorded"
    );
    assert_eq!(leave.info, None);
    assert_encoded_as_the_server_does(&received.presence[1]);
    assert_eq!(page(&a, &viewers, None, 100).await, (Vec::new(), None));
    common::forget(&prefix).await;
}

/// A leave is in the next members read of its own node, even before it is recorded, and of
/// every other node once it is: a session whose unsubscribe was answered (after its leave was
/// recorded) is never read as present anywhere (FERRY-PRESENCE-1).
#[tokio::test]
async fn ferry_presence_1_a_leave_is_read_at_once_on_every_node() {
    let prefix = common::test_prefix();
    let (a, b) = (
        node(&prefix, Duration::from_secs(30)).await,
        node(&prefix, Duration::from_secs(30)).await,
    );
    let viewers = channel("project:alpha:viewers");
    for round in 0..5 {
        a.join_presence(&viewers, present("tab1", "ada", None), T0)
            .await
            .expect("joined");
        assert_eq!(
            page(&a, &viewers, None, 100).await,
            (vec![("ada".to_owned(), 1)], None)
        );
        // Odd rounds also read the own node before the leave is recorded: it reads its own
        // leaves at once.
        let recorded = a.leave_presence(&viewers, &session("tab1"), T0);
        if round % 2 == 1 {
            assert_eq!(
                page(&a, &viewers, None, 100).await,
                (Vec::new(), None),
                "round {round}: at its own node, before the leave is recorded"
            );
        }
        recorded.await;
        assert_eq!(
            page(&b, &viewers, None, 100).await,
            (Vec::new(), None),
            "round {round}: at the other node"
        );
        assert_eq!(
            page(&a, &viewers, None, 100).await,
            (Vec::new(), None),
            "round {round}: at its own node"
        );
    }
    common::forget(&prefix).await;
}

/// A session whose connection ended without leaving stays a member for leave_after, then
/// leaves, as every node sees it.
#[tokio::test]
async fn ferry_presence_4_a_lapsed_session_leaves_after_leave_after() {
    let prefix = common::test_prefix();
    let leave_after = Duration::from_millis(300);
    let (a, b) = (
        node(&prefix, leave_after).await,
        node(&prefix, leave_after).await,
    );
    let viewers = channel("project:alpha:viewers");
    let hub = Hub::default();
    let mailbox = follower(&b, &hub, &viewers).await;
    a.join_presence(&viewers, present("s1", "ada", None), T0)
        .await
        .expect("joined");
    let mut received = Received::default();
    assert!(
        receive_until(
            &mailbox,
            &mut received,
            |r| r.presence.len() == 1,
            Duration::from_secs(10)
        )
        .await,
        "{received:?}"
    );

    let lapsed = tokio::time::Instant::now();
    a.lapse_presence(&viewers, &session("s1"), T0);
    b.expire_presence(T0).await;
    a.expire_presence(T0).await;
    let still = page(&b, &viewers, None, 100).await.0;
    if lapsed.elapsed() < leave_after {
        assert_eq!(
            still,
            vec![("ada".to_owned(), 1)],
            "a lapse does not leave at once"
        );
        received.take(&mailbox);
        assert_eq!(received.presence.len(), 1, "no leave yet: {received:?}");
    }

    // The node that lapsed it sweeps the channel until the leave is due, and so does any read.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while received.presence.len() < 2 && tokio::time::Instant::now() < deadline {
        a.expire_presence(T0).await;
        receive_until(
            &mailbox,
            &mut received,
            |r| r.presence.len() == 2,
            Duration::from_millis(100),
        )
        .await;
    }
    let left_after = lapsed.elapsed();
    assert_eq!(
        received.changes(),
        vec![
            (PresenceChange::Join, "ada".to_owned()),
            (PresenceChange::Leave, "ada".to_owned())
        ],
        "the lapse became a leave"
    );
    assert!(
        left_after >= leave_after.mul_f64(0.9),
        "not before leave_after: {left_after:?}"
    );
    assert_eq!(page(&b, &viewers, None, 100).await, (Vec::new(), None));
    common::forget(&prefix).await;
}

/// A client that reconnects within leave_after (a new session of the same user) causes
/// neither a leave nor a join, even once its old session's lapse comes.
#[tokio::test]
async fn ferry_presence_4_a_reconnect_within_leave_after_causes_no_leave_and_no_join() {
    let prefix = common::test_prefix();
    let leave_after = Duration::from_secs(2);
    let (a, b) = (
        node(&prefix, leave_after).await,
        node(&prefix, leave_after).await,
    );
    let viewers = channel("project:alpha:viewers");
    let hub = Hub::default();
    let mailbox = follower(&b, &hub, &viewers).await;
    a.join_presence(&viewers, present("before", "ada", None), T0)
        .await
        .expect("joined");
    a.lapse_presence(&viewers, &session("before"), T0);
    b.join_presence(&viewers, present("after", "ada", None), T0)
        .await
        .expect("joined again on another node");
    assert!(
        members_become(&b, &viewers, &[("ada", 1)]).await,
        "the old session's lapse came"
    );
    publish(&a, &viewers, "marker").await;
    let mut received = Received::default();
    assert!(
        receive_until(
            &mailbox,
            &mut received,
            |r| !r.events.is_empty(),
            Duration::from_secs(10)
        )
        .await,
        "{received:?}"
    );
    assert_eq!(
        received.changes(),
        vec![(PresenceChange::Join, "ada".to_owned())],
        "only the first join"
    );
    common::forget(&prefix).await;
}

/// A node that stops without leaving (dropped: nothing refreshes its sessions any more) loses
/// its sessions, as the other nodes see it, once their entries expire; while it runs, its
/// refreshes keep them present past their first expiry.
#[tokio::test]
async fn ferry_presence_4_the_sessions_of_a_node_that_stops_leave_on_the_others() {
    let prefix = common::test_prefix();
    // Live entries last at least 1 s however short leave_after is.
    let leave_after = Duration::from_millis(300);
    let (a, b) = (
        node(&prefix, leave_after).await,
        node(&prefix, leave_after).await,
    );
    let viewers = channel("project:alpha:viewers");
    let hub = Hub::default();
    let mailbox = follower(&b, &hub, &viewers).await;
    a.join_presence(&viewers, present("on-a", "ada", None), T0)
        .await
        .expect("joined");
    b.join_presence(&viewers, present("on-b", "grace", None), T0)
        .await
        .expect("joined");

    // Well past the first expiry, with the other node sweeping: refreshed, still present.
    for _ in 0..25 {
        b.expire_presence(T0).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        page(&b, &viewers, None, 100).await.0,
        vec![("ada".to_owned(), 1), ("grace".to_owned(), 1)]
    );

    drop(a);
    assert!(
        members_become(&b, &viewers, &[("grace", 1)]).await,
        "the stopped node's session left"
    );
    let mut received = Received::default();
    assert!(
        receive_until(
            &mailbox,
            &mut received,
            |r| r.presence.len() == 3,
            Duration::from_secs(10)
        )
        .await,
        "{received:?}"
    );
    assert_eq!(
        received.changes()[2],
        (PresenceChange::Leave, "ada".to_owned()),
        "the leave reaches the other node's feed"
    );
    common::forget(&prefix).await;
}

/// Member pages in order of user as UTF-8 bytes, each continuing after the last's `next`.
#[tokio::test]
async fn ferry_presence_3_members_are_paged_in_order_of_user_bytes() {
    let prefix = common::test_prefix();
    let leave_after = Duration::from_secs(30);
    let (a, b) = (
        node(&prefix, leave_after).await,
        node(&prefix, leave_after).await,
    );
    let viewers = channel("project:alpha:viewers");
    for (n, name) in ["bob", "éva", "ada", "Zed", "ada2", "a"].iter().enumerate() {
        let broker = if n % 2 == 0 { &a } else { &b };
        broker
            .join_presence(&viewers, present(&format!("s{n}"), name, None), T0)
            .await
            .expect("joined");
    }
    a.join_presence(&viewers, present("s-bob-2", "bob", None), T0)
        .await
        .expect("joined");
    let one = |users: &[&str]| {
        users
            .iter()
            .map(|u| ((*u).to_owned(), 1))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        page(&b, &viewers, None, 2).await,
        (one(&["Zed", "a"]), Some("a".to_owned()))
    );
    assert_eq!(
        page(&a, &viewers, Some("a"), 2).await,
        (one(&["ada", "ada2"]), Some("ada2".to_owned()))
    );
    assert_eq!(
        page(&b, &viewers, Some("ada2"), 2).await,
        (vec![("bob".to_owned(), 2), ("éva".to_owned(), 1)], None),
        "the last page: no next"
    );
    assert_eq!(page(&b, &viewers, Some("éva"), 2).await, (Vec::new(), None));
    assert_eq!(
        page(&a, &viewers, Some("b"), 1).await,
        (vec![("bob".to_owned(), 2)], Some("bob".to_owned())),
        "after a user that is not a member"
    );
    assert_eq!(page(&a, &viewers, None, 1000).await.0.len(), 6);
    assert_eq!(
        page(&a, &channel("project:alpha:empty"), None, 10).await,
        (Vec::new(), None)
    );
    common::forget(&prefix).await;
}

/// One holder across nodes: a second hold is refused or takes over, as the namespace says; a
/// take-over tells the displaced holder's node with its fence; a client carrying its own
/// fence and user takes its hold back; every grant has a larger fence.
#[tokio::test]
async fn ferry_hold_1_2_one_holder_across_nodes_refuse_take_over_and_reclaim() {
    let prefix = common::test_prefix();
    let leave_after = Duration::from_secs(30);
    let (a, b) = (
        node(&prefix, leave_after).await,
        node(&prefix, leave_after).await,
    );
    let doc = channel("project:alpha:doc");
    let (hub_a, hub_b) = (Hub::default(), Hub::default());
    let on_a = follower(&a, &hub_a, &doc).await;
    let on_b = follower(&b, &hub_b, &doc).await;
    let claim = |broker: &Arc<RedisBroker>, id: &str, name: &str, asked: Option<u64>, mode| {
        let (broker, id, name, doc) = (broker.clone(), session(id), user(name), doc.clone());
        async move {
            broker
                .claim_hold(&doc, &id, &name, asked, mode, T0)
                .await
                .expect("claimed")
        }
    };

    let Claimed::Granted {
        fence: first,
        displaced: None,
    } = claim(&a, "s1", "ada", None, Exclusive::Refuse).await
    else {
        panic!("nobody held the channel");
    };
    assert_eq!(
        claim(&b, "s2", "bob", None, Exclusive::Refuse).await,
        Claimed::Held
    );
    assert_eq!(
        claim(&b, "s2", "bob", Some(first), Exclusive::Refuse).await,
        Claimed::Held,
        "the holder's fence with another user is refused"
    );

    let Claimed::Granted {
        fence: second,
        displaced,
    } = claim(&b, "s2", "bob", None, Exclusive::TakeOver).await
    else {
        panic!("a take-over is granted");
    };
    assert!(second > first);
    assert_eq!(
        displaced,
        Some(Holder {
            session: session("s1"),
            user: user("ada"),
            fence: first
        })
    );
    let mut received_a = Received::default();
    assert!(
        receive_until(
            &on_a,
            &mut received_a,
            |r| !r.taken_over.is_empty(),
            Duration::from_secs(10)
        )
        .await,
        "the displaced holder's node is told: {received_a:?}"
    );
    assert_eq!(received_a.taken_over, vec![(doc.clone(), first)]);
    let mut received_b = Received::default();
    assert!(
        receive_until(
            &on_b,
            &mut received_b,
            |r| !r.taken_over.is_empty(),
            Duration::from_secs(10)
        )
        .await,
        "every node following the channel is told: {received_b:?}"
    );

    // The client of s2 reconnects as s3 on the other node, carrying its fence and user.
    let Claimed::Granted {
        fence: third,
        displaced,
    } = claim(&a, "s3", "bob", Some(second), Exclusive::Refuse).await
    else {
        panic!("a client takes its own hold back");
    };
    assert!(third > second);
    assert_eq!(
        displaced.map(|d| (d.session, d.fence)),
        Some((session("s2"), second))
    );
    assert!(
        receive_until(
            &on_a,
            &mut received_a,
            |r| r.taken_over.len() == 2,
            Duration::from_secs(10)
        )
        .await,
        "{received_a:?}"
    );
    assert_eq!(received_a.taken_over[1], (doc.clone(), second));
    assert_eq!(
        claim(&b, "s4", "bob", Some(second), Exclusive::Refuse).await,
        Claimed::Held,
        "a fence that is no longer the holder's is refused"
    );
    assert_eq!(
        claim(&b, "s5", "carol", Some(third), Exclusive::Refuse).await,
        Claimed::Held,
        "the holder's fence with another user is refused"
    );

    // A release ends the hold: the next claim is granted, with a fence never given before.
    a.release_hold(&doc, &session("s1"), T0);
    a.release_hold(&doc, &session("s3"), T0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let fourth = loop {
        match claim(&b, "s6", "carol", None, Exclusive::Refuse).await {
            Claimed::Granted { fence, displaced } => {
                assert_eq!(displaced, None, "released: nobody held it");
                break fence;
            }
            Claimed::Held => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the release took effect"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(fourth, third + 1);
    common::forget(&prefix).await;
}

/// A publish under a fence is stored only while the fence is the holder's; a stale one stores
/// nothing (the head stays), not even a duplicate answer.
#[tokio::test]
async fn ferry_hold_3_only_the_current_fence_publishes() {
    let prefix = common::test_prefix();
    let leave_after = Duration::from_secs(30);
    let (a, b) = (
        node(&prefix, leave_after).await,
        node(&prefix, leave_after).await,
    );
    let doc = channel("project:alpha:doc");
    let fenced = |broker: &Arc<RedisBroker>, key: &str, fence: u64| {
        let (broker, key, doc) = (broker.clone(), key.to_owned(), doc.clone());
        async move {
            broker
                .publish_fenced(
                    &doc,
                    key.parse().expect("a key"),
                    Payload::from(json!({ "key": key })),
                    fence,
                    T0,
                    1,
                )
                .await
        }
    };
    assert_eq!(
        fenced(&a, "k0", 1)
            .await
            .expect_err("nobody holds the channel"),
        BrokerError::NotHolder
    );
    let Claimed::Granted { fence: first, .. } = a
        .claim_hold(
            &doc,
            &session("s1"),
            &user("ada"),
            None,
            Exclusive::Refuse,
            T0,
        )
        .await
        .expect("claimed")
    else {
        panic!("granted");
    };
    let stored = fenced(&a, "k1", first).await.expect("the holder publishes");
    assert!(!stored.duplicate);
    assert_eq!(stored.position.seq.get(), 1);

    let Claimed::Granted { fence: second, .. } = b
        .claim_hold(
            &doc,
            &session("s2"),
            &user("bob"),
            None,
            Exclusive::TakeOver,
            T0,
        )
        .await
        .expect("claimed")
    else {
        panic!("granted");
    };
    let refused = fenced(&a, "k2", first).await.expect_err("a stale fence");
    assert_eq!(refused, BrokerError::NotHolder);
    assert_eq!(refused.code(), ErrorCode::Held);
    assert_eq!(
        fenced(&a, "k1", first)
            .await
            .expect_err("a stale fence, with a key already used"),
        BrokerError::NotHolder,
        "no duplicate answer under a stale fence"
    );
    let (head, _, _) = b.subscribe(&doc, None, T0).await.expect("read");
    assert_eq!(head.seq.get(), 1, "nothing was stored");
    let page = a.history(&doc, None, None, 100, T0).await.expect("a page");
    assert_eq!(page.events.len(), 1);

    let stored = fenced(&b, "k3", second)
        .await
        .expect("the new holder publishes");
    assert_eq!(stored.position.seq.get(), 2);
    let again = fenced(&b, "k3", second).await.expect("a retry");
    assert!(again.duplicate && again.position == stored.position);
    // Unfenced publishes (the backend's) are not held back.
    assert_eq!(publish(&a, &doc, "backend").await.seq.get(), 3);
    common::forget(&prefix).await;
}

/// A node that stops without releasing: its hold lapses once nothing refreshes it, and a hold
/// asked on another node is then granted as if nobody held the channel. While the node runs,
/// its refreshes keep the hold past its first expiry.
#[tokio::test]
async fn ferry_hold_4_the_holds_of_a_node_that_stops_lapse() {
    let prefix = common::test_prefix();
    let leave_after = Duration::from_millis(300);
    let (a, b) = (
        node(&prefix, leave_after).await,
        node(&prefix, leave_after).await,
    );
    let doc = channel("project:alpha:doc");
    let Claimed::Granted { fence: first, .. } = a
        .claim_hold(
            &doc,
            &session("s1"),
            &user("ada"),
            None,
            Exclusive::Refuse,
            T0,
        )
        .await
        .expect("claimed")
    else {
        panic!("granted");
    };
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        b.claim_hold(
            &doc,
            &session("s2"),
            &user("bob"),
            None,
            Exclusive::Refuse,
            T0
        )
        .await
        .expect("claimed"),
        Claimed::Held,
        "refreshed while its node runs"
    );
    a.publish_fenced(
        &doc,
        "k1".parse().expect("a key"),
        Payload::from(json!(1)),
        first,
        T0,
        1,
    )
    .await
    .expect("still the holder");

    drop(a);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match b
            .claim_hold(
                &doc,
                &session("s2"),
                &user("bob"),
                None,
                Exclusive::Refuse,
                T0,
            )
            .await
            .expect("claimed")
        {
            Claimed::Granted { fence, displaced } => {
                assert!(fence > first);
                assert_eq!(displaced, None, "a lapsed hold counts as none");
                break;
            }
            Claimed::Held => {
                assert!(tokio::time::Instant::now() < deadline, "the hold lapsed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    common::forget(&prefix).await;
}

/// A presence event whose head is past the last event the feed had (that event's message lost
/// on the topic) comes after that event, filled in from the stream, and nothing is interrupted.
#[tokio::test]
async fn ferry_presence_2_a_presence_event_comes_after_the_events_before_its_head() {
    let prefix = common::test_prefix();
    let leave_after = Duration::from_secs(30);
    let (a, b) = (
        node(&prefix, leave_after).await,
        node(&prefix, leave_after).await,
    );
    let viewers = channel("project:alpha:viewers");
    let hub = Hub::default();
    let mailbox = follower(&a, &hub, &viewers).await;
    let first = publish(&b, &viewers, "k1").await;

    // Seq 2 written as the publish script writes it, but never published on the topic.
    let mut redis = common::redis().await;
    let seq: u64 = redis::cmd("HINCRBY")
        .arg(format!("{prefix}{{project:alpha:viewers}}:state"))
        .arg("seq")
        .arg(1)
        .query_async(&mut redis)
        .await
        .expect("HINCRBY");
    assert_eq!(seq, 2);
    let lost = EncodedEvent::new(Event {
        channel: viewers.clone(),
        message_id: "m-lost".parse().expect("a message id"),
        payload: Payload::from(json!("lost on the topic")),
        position: at(&first, 2),
        published_at_ms: UnixMillis(UInt::new(1).expect("a time")),
    });
    let _: String = redis::cmd("XADD")
        .arg(format!("{prefix}{{project:alpha:viewers}}:events"))
        .arg("2-0")
        .arg("t")
        .arg(1)
        .arg("f")
        .arg(lost.text().as_str())
        .query_async(&mut redis)
        .await
        .expect("XADD");

    b.join_presence(&viewers, present("s1", "ada", None), T0)
        .await
        .expect("joined");
    publish(&b, &viewers, "k3").await;
    let mut received = Received::default();
    assert!(
        receive_until(
            &mailbox,
            &mut received,
            |r| r.events.len() == 3,
            Duration::from_secs(10)
        )
        .await,
        "{received:?}"
    );
    assert!(!received.interrupted);
    assert_eq!(
        received.arrivals,
        vec!["event 1", "event 2", "join ada", "event 3"],
        "in the order they were recorded"
    );
    assert_eq!(received.presence[0].presence().position, at(&first, 2));
    common::forget(&prefix).await;
}

/// A hold that passed to another session without its notice reaching this node (as a lost
/// pub/sub message would lose it) is told to the channel's feed by the node's next refresh.
#[tokio::test]
async fn ferry_hold_2_a_hold_lost_without_its_notice_is_told_at_the_next_refresh() {
    let prefix = common::test_prefix();
    let a = node(&prefix, Duration::from_millis(300)).await;
    let doc = channel("project:alpha:doc");
    let hub = Hub::default();
    let mailbox = follower(&a, &hub, &doc).await;
    let Claimed::Granted { fence, .. } = a
        .claim_hold(
            &doc,
            &session("s1"),
            &user("ada"),
            None,
            Exclusive::Refuse,
            T0,
        )
        .await
        .expect("claimed")
    else {
        panic!("granted");
    };

    // Another holder, written without the notice the hold script publishes.
    let mut redis = common::redis().await;
    let next: u64 = redis::cmd("INCR")
        .arg(format!("{prefix}{{project:alpha:doc}}:fence"))
        .query_async(&mut redis)
        .await
        .expect("INCR");
    let _: () = redis::cmd("HSET")
        .arg(format!("{prefix}{{project:alpha:doc}}:hold"))
        .arg("session")
        .arg("elsewhere/s9")
        .arg("user")
        .arg("zed")
        .arg("fence")
        .arg(next)
        .arg("expires")
        .arg(u64::MAX / 2)
        .query_async(&mut redis)
        .await
        .expect("HSET");

    let mut received = Received::default();
    assert!(
        receive_until(
            &mailbox,
            &mut received,
            |r| !r.taken_over.is_empty(),
            Duration::from_secs(10)
        )
        .await,
        "{received:?}"
    );
    assert_eq!(received.taken_over, vec![(doc.clone(), fence)]);
    common::forget(&prefix).await;
}

/// Presence events published while a node's pub/sub connection was down are lost, and no
/// stream holds them: after the reconnect, the sessions of the channels where the node has
/// presence resume, so that their clients read the members again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferry_presence_6_presence_channels_resume_after_a_lost_pub_sub_connection() {
    let redis = common::PrivateRedis::start().await;
    let a = RedisBroker::new(RedisBrokerConfig::new(redis.url(), Retention::default()))
        .expect("a broker");
    a.ping().await.expect("the private Redis answers");
    let viewers = channel("project:alpha:viewers");
    let hub = Hub::default();
    let mailbox = follower(&a, &hub, &viewers).await;
    a.join_presence(&viewers, present("s1", "ada", None), T0)
        .await
        .expect("joined");
    let mut received = Received::default();
    assert!(
        receive_until(
            &mailbox,
            &mut received,
            |r| r.presence.len() == 1,
            Duration::from_secs(10)
        )
        .await,
        "{received:?}"
    );
    assert!(redis.kill_pubsub_connections().await >= 1);
    receive_until(&mailbox, &mut received, |_| false, Duration::from_secs(10)).await;
    assert!(received.interrupted, "the session resumes: {received:?}");
}

/// A Redis that lost its data (here, every key of the deployment deleted) still gives each new
/// hold a fence above every earlier one, so a holder from before the loss cannot pass for the
/// new one (FERRY-HOLD-1, FERRY-HOLD-3).
#[tokio::test]
async fn ferry_hold_1_fences_keep_growing_after_redis_loses_its_data() {
    let prefix = common::test_prefix();
    let a = node(&prefix, Duration::from_secs(30)).await;
    let doc = channel("project:alpha:doc");
    let claim = |who: &'static str| {
        let a = a.clone();
        let doc = doc.clone();
        async move {
            match a
                .claim_hold(
                    &doc,
                    &session(who),
                    &user("ada"),
                    None,
                    Exclusive::TakeOver,
                    T0,
                )
                .await
                .expect("claimed")
            {
                Claimed::Granted { fence, .. } => fence,
                Claimed::Held => panic!("take_over grants"),
            }
        }
    };
    let before = claim("s1").await;
    common::forget(&prefix).await;
    let after = claim("s2").await;
    assert!(after > before, "{after} after {before}");
    assert!(after <= ferry_protocol::bounded::MAX_SAFE_INTEGER);
    let stale = a
        .publish_fenced(
            &doc,
            "k-stale".parse().expect("a key"),
            Payload::from(json!(1)),
            before,
            T0,
            1,
        )
        .await;
    assert_eq!(stale, Err(BrokerError::NotHolder));
    a.publish_fenced(
        &doc,
        "k-new".parse().expect("a key"),
        Payload::from(json!(2)),
        after,
        T0,
        1,
    )
    .await
    .expect("the new fence publishes");
    common::forget(&prefix).await;
}
