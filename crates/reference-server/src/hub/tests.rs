//! Unit tests of the hub, its feeds and the session mailboxes, against the in-memory broker.

use std::collections::VecDeque;

use ferry_protocol::{Event, IdempotencyKey, Payload};
use serde_json::json;

use super::*;
use crate::broker::MemoryBroker;

fn at(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn channel(name: &str) -> ChannelName {
    name.parse().expect("a valid channel name")
}

fn event(name: &str, seq: u64, bytes: usize) -> EncodedEvent {
    let event: Event = serde_json::from_value(json!({
        "channel": name,
        "message_id": format!("m-{seq}"),
        "position": { "epoch": "e1", "seq": seq },
        "published_at_ms": 0,
        "payload": { "text": "x".repeat(bytes) },
    }))
    .expect("a valid event");
    EncodedEvent::new(event)
}

fn taken(mailbox: &Mailbox) -> (Vec<u64>, bool) {
    let mut events = VecDeque::new();
    let fell_behind = mailbox.take(&mut events).fell_behind;
    let seqs = events
        .iter()
        .map(|delivery| match delivery {
            Delivery::Event(event) => event.event().position.seq.get(),
            Delivery::Presence(presence) => panic!("no presence here: {presence:?}"),
        })
        .collect();
    (seqs, fell_behind)
}

async fn publish(broker: &MemoryBroker, name: &str, key: &str) {
    let key: IdempotencyKey = key.parse().expect("a valid key");
    broker
        .publish(&channel(name), key, Payload::from(json!(1)), at(0), 0)
        .await
        .expect("published");
}

#[tokio::test]
async fn a_channels_events_reach_exactly_the_sessions_that_joined_it() {
    let broker = MemoryBroker::new(Default::default());
    let hub = Hub::default();
    let (a, b, other) = (
        Arc::new(Mailbox::new(QueueLimits::default())),
        Arc::new(Mailbox::new(QueueLimits::default())),
        Arc::new(Mailbox::new(QueueLimits::default())),
    );
    for mailbox in [&a, &b] {
        hub.join(&broker, &channel("project:a"), mailbox, at(0))
            .await
            .expect("joined");
    }
    hub.join(&broker, &channel("project:b"), &other, at(0))
        .await
        .expect("joined");
    assert_eq!(hub.channels(), 2);
    publish(&broker, "project:a", "k1").await;
    publish(&broker, "project:a", "k2").await;
    assert_eq!(taken(&a), (vec![1, 2], false));
    assert_eq!(taken(&b), (vec![1, 2], false));
    assert_eq!(taken(&other), (vec![], false));
    // A session that left gets nothing more; the channel stays followed for the other.
    hub.leave(&broker, &channel("project:a"), &a, at(0));
    publish(&broker, "project:a", "k3").await;
    assert_eq!(taken(&a), (vec![], false));
    assert_eq!(taken(&b), (vec![3], false));
    // The last one to leave lets the channel go; joining again follows it anew.
    hub.leave(&broker, &channel("project:a"), &b, at(0));
    assert_eq!(hub.channels(), 1);
    publish(&broker, "project:a", "k4").await;
    hub.join(&broker, &channel("project:a"), &a, at(0))
        .await
        .expect("joined");
    publish(&broker, "project:a", "k5").await;
    assert_eq!(taken(&a), (vec![5], false));
}

#[tokio::test]
async fn leaving_a_channel_never_joined_changes_nothing() {
    let broker = MemoryBroker::new(Default::default());
    let hub = Hub::default();
    let mailbox = Arc::new(Mailbox::new(QueueLimits::default()));
    let stranger = Arc::new(Mailbox::new(QueueLimits::default()));
    hub.join(&broker, &channel("project:a"), &mailbox, at(0))
        .await
        .expect("joined");
    hub.leave(&broker, &channel("project:a"), &stranger, at(0));
    hub.leave(&broker, &channel("project:z"), &stranger, at(0));
    publish(&broker, "project:a", "k1").await;
    assert_eq!(taken(&mailbox), (vec![1], false));
}

#[test]
fn a_mailbox_past_its_frame_limit_falls_behind_and_drops_what_it_held() {
    let mailbox = Mailbox::new(QueueLimits {
        frames: 3,
        bytes: usize::MAX,
    });
    for seq in 1..=3 {
        mailbox.push(&event("project:a", seq, 10));
    }
    assert!(!mailbox.fell_behind());
    mailbox.push(&event("project:a", 4, 10));
    assert!(mailbox.fell_behind());
    assert_eq!(taken(&mailbox), (vec![], true));
    // Once behind, always behind: the session is closed and the client resumes.
    mailbox.push(&event("project:a", 5, 10));
    assert_eq!(taken(&mailbox), (vec![], true));
}

#[test]
fn a_mailbox_past_its_byte_limit_falls_behind_but_one_large_event_alone_fits() {
    let one = event("project:a", 1, 1000).len();
    let mailbox = Mailbox::new(QueueLimits {
        frames: 100,
        bytes: one + one / 2,
    });
    mailbox.push(&event("project:a", 1, 1000));
    assert_eq!(taken(&mailbox), (vec![1], false));
    // Taking empties the byte count: the session keeps up.
    mailbox.push(&event("project:a", 2, 1000));
    assert!(!mailbox.fell_behind());
    mailbox.push(&event("project:a", 3, 1000));
    assert!(mailbox.fell_behind());
    // A single event above the byte limit goes through an empty queue.
    let small = Mailbox::new(QueueLimits {
        frames: 100,
        bytes: 10,
    });
    small.push(&event("project:a", 1, 1000));
    assert_eq!(taken(&small), (vec![1], false));
}

#[tokio::test]
async fn a_push_wakes_a_waiting_session() {
    let mailbox = Arc::new(Mailbox::new(QueueLimits::default()));
    let waiter = {
        let mailbox = Arc::clone(&mailbox);
        tokio::spawn(async move {
            mailbox.ready().await;
            taken(&mailbox)
        })
    };
    tokio::task::yield_now().await;
    mailbox.push(&event("project:a", 1, 10));
    assert_eq!(waiter.await.expect("the waiter ran"), (vec![1], false));
}

#[test]
fn frames_are_shared_not_copied_between_mailboxes() {
    let (a, b) = (
        Mailbox::new(QueueLimits::default()),
        Mailbox::new(QueueLimits::default()),
    );
    let shared = event("project:a", 1, 100);
    a.push(&shared);
    b.push(&shared);
    let (mut from_a, mut from_b) = (VecDeque::new(), VecDeque::new());
    a.take(&mut from_a);
    b.take(&mut from_b);
    let text = |delivery: &Delivery| match delivery {
        Delivery::Event(event) => event.text().as_str().as_ptr(),
        Delivery::Presence(presence) => presence.text().as_str().as_ptr(),
    };
    assert_eq!(text(&from_a[0]), text(&from_b[0]));
}
