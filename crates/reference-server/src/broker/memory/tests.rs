//! Unit tests of the in-memory broker, each named after the rule it checks.

use std::collections::VecDeque;

use serde_json::json;

use super::*;
use crate::hub::{Delivery, Hub, Mailbox, QueueLimits};

/// A session's view of the broker: a mailbox that joined `name` through a hub.
struct Follower {
    hub: Hub,
    mailbox: Arc<Mailbox>,
}

impl Follower {
    async fn of(broker: &MemoryBroker, name: &str) -> Self {
        let follower = Self {
            hub: Hub::default(),
            mailbox: Arc::new(Mailbox::new(QueueLimits::default())),
        };
        follower
            .hub
            .join(broker, &channel(name), &follower.mailbox, at(0))
            .await
            .expect("followed");
        follower
    }

    /// The events pushed since the last call (no presence event may be among them).
    fn received(&self) -> Vec<EncodedEvent> {
        self.deliveries()
            .into_iter()
            .map(|delivery| match delivery {
                Delivery::Event(event) => event,
                Delivery::Presence(presence) => panic!("a presence event: {presence:?}"),
            })
            .collect()
    }

    /// Everything pushed since the last call.
    fn deliveries(&self) -> Vec<Delivery> {
        let mut deliveries = VecDeque::new();
        let taken = self.mailbox.take(&mut deliveries);
        assert!(!taken.fell_behind, "never fell behind");
        deliveries.into()
    }
}

fn at(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn channel(name: &str) -> ChannelName {
    name.parse().expect("a valid channel name")
}

fn key(text: &str) -> IdempotencyKey {
    text.parse().expect("a valid idempotency key")
}

fn epoch(name: &str) -> Epoch {
    name.parse().expect("a valid epoch")
}

fn pos(epoch_name: &str, seq: u64) -> StreamPosition {
    position(&epoch(epoch_name), seq).expect("a valid seq")
}

fn grant(user: &str) -> Grant {
    Grant {
        user: user.parse().expect("a valid user id"),
        permissions: vec![
            serde_json::from_value(json!({ "pattern": "**", "read": true, "write": true }))
                .expect("a valid permission"),
        ],
    }
}

/// A broker with epoch `e1` keeping `max_events` events or `max_age_ms`.
fn broker(max_events: u64, max_age_ms: u64) -> MemoryBroker {
    MemoryBroker::new(MemoryBrokerConfig {
        retention: Retention {
            max_events,
            max_age: Duration::from_millis(max_age_ms),
        },
        dedup_window: Duration::from_millis(max_age_ms),
        max_channels: DEFAULT_MAX_CHANNELS,
        max_history_bytes: DEFAULT_MAX_HISTORY_BYTES,
        epoch: epoch("e1"),
        presence_leave_after: Duration::from_millis(LEAVE_AFTER_MS),
    })
}

/// Publishes `count` events to `name` at times 0, 10, 20, ... with keys `k1`, `k2`, ...
async fn publish_many(broker: &MemoryBroker, name: &str, count: u64) {
    for n in 1..=count {
        broker
            .publish(
                &channel(name),
                key(&format!("k{n}")),
                Payload::from(json!({ "n": n })),
                at((n - 1) * 10),
                1_700_000_000_000 + n,
            )
            .await
            .expect("published");
    }
}

fn seqs(events: &[EncodedEvent]) -> Vec<u64> {
    events
        .iter()
        .map(|event| event.event().position.seq.get())
        .collect()
}

fn stored_seqs(events: &[StoredEvent]) -> Vec<u64> {
    events
        .iter()
        .map(|event| event.position.seq.get())
        .collect()
}

#[tokio::test]
async fn ferry_ticket_2_a_ticket_carries_256_random_bits_and_matches_the_schema() {
    let broker = broker(10, 1000);
    let first = broker
        .issue_ticket(grant("ada"), Duration::from_secs(30), at(0))
        .await
        .expect("issued");
    let second = broker
        .issue_ticket(grant("ada"), Duration::from_secs(30), at(0))
        .await
        .expect("issued");
    assert_eq!(first.len(), 64);
    assert!(first.chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(first, second);
    // The wire type accepts it.
    let ticket: Ticket = serde_json::from_value(json!(first.as_str())).expect("a valid Ticket");
    assert_eq!(ticket, first);
}

#[tokio::test]
async fn ferry_ticket_4_a_ticket_works_once() {
    let broker = broker(10, 1000);
    let ticket = broker
        .issue_ticket(grant("ada"), Duration::from_secs(30), at(0))
        .await
        .expect("issued");
    let granted = broker
        .redeem_ticket(&ticket, at(10))
        .await
        .expect("answered");
    assert_eq!(granted, Some(grant("ada")));
    let again = broker
        .redeem_ticket(&ticket, at(20))
        .await
        .expect("answered");
    assert_eq!(again, None, "a second redemption fails");
}

#[tokio::test]
async fn ferry_ticket_3_an_unknown_ticket_fails() {
    let broker = broker(10, 1000);
    let answer = broker
        .redeem_ticket("never-issued-never-issued-never-issued", at(0))
        .await
        .expect("answered");
    assert_eq!(answer, None);
}

#[tokio::test]
async fn ferry_ticket_2_an_expired_ticket_fails() {
    let broker = broker(10, 1000);
    let ttl = Duration::from_millis(30_000);
    let just_in_time = broker
        .issue_ticket(grant("ada"), ttl, at(1000))
        .await
        .expect("issued");
    let too_late = broker
        .issue_ticket(grant("bob"), ttl, at(1000))
        .await
        .expect("issued");
    assert_eq!(
        broker
            .redeem_ticket(&just_in_time, at(30_999))
            .await
            .expect("answered"),
        Some(grant("ada"))
    );
    assert_eq!(
        broker
            .redeem_ticket(&too_late, at(31_000))
            .await
            .expect("answered"),
        None,
        "a ticket is expired once its lifetime has passed"
    );
}

#[tokio::test]
async fn ferry_ticket_2_expired_tickets_are_purged() {
    let broker = broker(10, 1000);
    for _ in 0..100 {
        broker
            .issue_ticket(grant("ada"), Duration::from_millis(100), at(0))
            .await
            .expect("issued");
    }
    assert_eq!(broker.tickets_held(), 100);
    // Issuing later drops the expired ones.
    broker
        .issue_ticket(grant("ada"), Duration::from_millis(100), at(100))
        .await
        .expect("issued");
    assert_eq!(broker.tickets_held(), 1);
    // And so does housekeeping while idle.
    broker.purge_expired(at(200)).await;
    assert_eq!(broker.tickets_held(), 0);
}

#[tokio::test]
async fn ferry_event_1_publish_assigns_seq_1_2_3_per_channel() {
    let broker = broker(10, 1000);
    let (a, b) = (channel("project:a"), channel("project:b"));
    let mut assigned: Vec<(ChannelName, u64)> = Vec::new();
    for (n, name) in [&a, &b, &a, &a, &b].into_iter().enumerate() {
        let ack = broker
            .publish(
                name,
                key(&format!("k{n}")),
                Payload::from(json!(n)),
                at(0),
                1_700_000_000_000,
            )
            .await
            .expect("published");
        assert!(!ack.duplicate);
        assert_eq!(&ack.channel, name);
        assert_eq!(ack.position.epoch, epoch("e1"));
        assigned.push((ack.channel, ack.position.seq.get()));
    }
    let seqs_of = |name: &ChannelName| -> Vec<u64> {
        assigned
            .iter()
            .filter(|(c, _)| c == name)
            .map(|(_, s)| *s)
            .collect()
    };
    assert_eq!(seqs_of(&a), vec![1, 2, 3]);
    assert_eq!(seqs_of(&b), vec![1, 2]);
}

#[tokio::test]
async fn ferry_event_1_every_event_carries_a_unique_message_id_and_its_publish_time() {
    let broker = broker(10, 1000);
    let (a, b) = (
        Follower::of(&broker, "project:a").await,
        Follower::of(&broker, "project:b").await,
    );
    publish_many(&broker, "project:a", 3).await;
    publish_many(&broker, "project:b", 3).await;
    let mut ids = std::collections::HashSet::new();
    let received = [a.received(), b.received()].concat();
    assert_eq!(received.len(), 6);
    for encoded in &received {
        let event = encoded.event();
        assert!(
            ids.insert(event.message_id.to_string()),
            "message ids are unique"
        );
        assert_eq!(
            event.published_at_ms.get(),
            1_700_000_000_000 + event.position.seq.get()
        );
    }
}

#[tokio::test]
async fn ferry_dedup_1_a_repeated_key_returns_the_original_position_and_is_not_fanned_out_again() {
    let broker = broker(10, 120_000);
    let follower = Follower::of(&broker, "project:a").await;
    let ch = channel("project:a");
    let original = broker
        .publish(&ch, key("k"), Payload::from(json!(1)), at(0), 1)
        .await
        .expect("published");
    let repeat = broker
        .publish(&ch, key("k"), Payload::from(json!("other")), at(60_000), 2)
        .await
        .expect("acknowledged");
    assert!(repeat.duplicate);
    assert_eq!(repeat.message_id, original.message_id);
    assert_eq!(repeat.position, original.position);
    assert_eq!(repeat.channel, ch);
    // Stored once, fanned out once.
    let (head, _, _) = broker.subscribe(&ch, None, at(60_000)).await.expect("read");
    assert_eq!(head.seq.get(), 1);
    let events = follower.received();
    assert_eq!(events.len(), 1, "fanned out once");
    assert_eq!(events[0].event().message_id, original.message_id);
    // The same key on another channel is a different publish.
    let other = broker
        .publish(
            &channel("project:b"),
            key("k"),
            Payload::from(json!(1)),
            at(60_000),
            3,
        )
        .await
        .expect("published");
    assert!(!other.duplicate);
}

#[tokio::test]
async fn ferry_dedup_2_a_key_is_remembered_for_the_whole_window_whatever_the_count() {
    let broker = broker(10, 120_000);
    let ch = channel("project:a");
    let first = broker
        .publish(&ch, key("first"), Payload::from(json!(0)), at(0), 0)
        .await
        .expect("published");
    // Many younger keys do not push the first one out.
    for n in 0..20_000 {
        broker
            .publish(
                &ch,
                key(&format!("k{n}")),
                Payload::from(json!(n)),
                at(1),
                1,
            )
            .await
            .expect("published");
    }
    let repeat = broker
        .publish(&ch, key("first"), Payload::from(json!(0)), at(120_000), 2)
        .await
        .expect("acknowledged");
    assert!(repeat.duplicate);
    assert_eq!(repeat.position, first.position);
    // Past the window, the key is new again.
    let later = broker
        .publish(&ch, key("first"), Payload::from(json!(0)), at(120_001), 3)
        .await
        .expect("published");
    assert!(!later.duplicate);
    assert_eq!(later.position.seq.get(), 20_002);
}

#[test]
fn ferry_dedup_2_the_dedup_window_is_never_shorter_than_the_resume_window() {
    let broker = MemoryBroker::new(MemoryBrokerConfig {
        dedup_window: Duration::from_secs(1),
        ..MemoryBrokerConfig::default()
    });
    assert_eq!(broker.dedup_window(), Duration::from_secs(120));
}

#[tokio::test]
async fn ferry_subscribe_2_a_subscribe_reports_the_head_and_later_events_reach_an_earlier_receiver()
{
    let broker = broker(10, 1000);
    let ch = channel("project:a");
    // A channel nobody published to: seq 0 of the broker's epoch.
    let (head, recovery, replay) = broker.subscribe(&ch, None, at(0)).await.expect("read");
    assert_eq!(head, pos("e1", 0));
    assert_eq!(recovery, None);
    assert!(replay.is_empty());
    let follower = Follower::of(&broker, "project:a").await;
    publish_many(&broker, "project:a", 2).await;
    let (head, _, _) = broker.subscribe(&ch, None, at(20)).await.expect("read");
    assert_eq!(head, pos("e1", 2));
    publish_many_from(&broker, "project:a", 3, 3).await;
    assert_eq!(seqs(&follower.received()), vec![1, 2, 3]);
}

async fn publish_many_from(broker: &MemoryBroker, name: &str, first: u64, last: u64) {
    for n in first..=last {
        broker
            .publish(
                &channel(name),
                key(&format!("k{n}")),
                Payload::from(json!({ "n": n })),
                at((n - 1) * 10),
                1_700_000_000_000 + n,
            )
            .await
            .expect("published");
    }
}

#[tokio::test]
async fn ferry_resume_1_subscribe_from_inside_history_replays_exactly_the_missed_events() {
    let broker = broker(100, 1000);
    publish_many(&broker, "project:a", 5).await;
    let (head, recovery, replay) = broker
        .subscribe(&channel("project:a"), Some(&pos("e1", 2)), at(50))
        .await
        .expect("read");
    assert_eq!(head, pos("e1", 5));
    let recovery = recovery.expect("a recovery for a subscribe with from");
    assert!(recovery.complete);
    assert_eq!(recovery.reason, None);
    assert_eq!(recovery.replayed.get(), 3);
    assert_eq!(seqs(&replay), vec![3, 4, 5]);
    assert!(
        replay
            .iter()
            .all(|event| event.event().channel == channel("project:a"))
    );
    // From the head: complete, nothing to replay.
    let (_, recovery, replay) = broker
        .subscribe(&channel("project:a"), Some(&pos("e1", 5)), at(50))
        .await
        .expect("read");
    assert_eq!(
        recovery.map(|r| (r.complete, r.replayed.get())),
        Some((true, 0))
    );
    assert!(replay.is_empty());
    // From seq 0 of a channel nobody published to: complete, nothing to replay.
    let (_, recovery, _) = broker
        .subscribe(&channel("project:empty"), Some(&pos("e1", 0)), at(50))
        .await
        .expect("read");
    assert_eq!(recovery.map(|r| r.complete), Some(true));
}

#[tokio::test]
async fn ferry_resume_2_beyond_retention_is_history_exceeded_with_no_events() {
    // Keep 2 events or 100 ms: long after, only seqs 4 and 5 remain.
    let broker = broker(2, 100);
    publish_many(&broker, "project:a", 5).await;
    let (head, recovery, replay) = broker
        .subscribe(&channel("project:a"), Some(&pos("e1", 2)), at(10_000))
        .await
        .expect("read");
    assert_eq!(head, pos("e1", 5));
    let recovery = recovery.expect("a recovery");
    assert!(!recovery.complete);
    assert_eq!(recovery.reason, Some(RecoveryGap::HistoryExceeded));
    assert_eq!(recovery.replayed.get(), 0);
    assert!(replay.is_empty(), "never a partial range");
    // From seq 3, every missed event is still held.
    let (_, recovery, replay) = broker
        .subscribe(&channel("project:a"), Some(&pos("e1", 3)), at(10_000))
        .await
        .expect("read");
    assert_eq!(recovery.map(|r| r.complete), Some(true));
    assert_eq!(seqs(&replay), vec![4, 5]);
}

#[tokio::test]
async fn ferry_resume_2_another_epoch_is_epoch_changed() {
    let broker = broker(100, 1000);
    publish_many(&broker, "project:a", 3).await;
    let (_, recovery, replay) = broker
        .subscribe(&channel("project:a"), Some(&pos("e0", 1)), at(30))
        .await
        .expect("read");
    let recovery = recovery.expect("a recovery");
    assert!(!recovery.complete);
    assert_eq!(recovery.reason, Some(RecoveryGap::EpochChanged));
    assert!(replay.is_empty());
}

#[tokio::test]
async fn ferry_resume_2_a_restarted_memory_broker_answers_epoch_changed() {
    let before = MemoryBroker::new(MemoryBrokerConfig::default());
    let ack = before
        .publish(
            &channel("project:a"),
            key("k"),
            Payload::from(json!(1)),
            at(0),
            0,
        )
        .await
        .expect("published");
    let after = MemoryBroker::new(MemoryBrokerConfig::default());
    assert_ne!(before.epoch(), after.epoch());
    let (head, recovery, _) = after
        .subscribe(&channel("project:a"), Some(&ack.position), at(0))
        .await
        .expect("read");
    assert_eq!(&head.epoch, after.epoch());
    assert_eq!(
        recovery.and_then(|r| r.reason),
        Some(RecoveryGap::EpochChanged)
    );
}

#[tokio::test]
async fn ferry_resume_2_ahead_of_the_head_is_position_ahead() {
    let broker = broker(100, 1000);
    publish_many(&broker, "project:a", 3).await;
    let (head, recovery, replay) = broker
        .subscribe(&channel("project:a"), Some(&pos("e1", 4)), at(30))
        .await
        .expect("read");
    assert_eq!(head, pos("e1", 3));
    let recovery = recovery.expect("a recovery");
    assert!(!recovery.complete);
    assert_eq!(recovery.reason, Some(RecoveryGap::PositionAhead));
    assert!(replay.is_empty());
}

#[tokio::test]
async fn ferry_resume_5_history_without_a_position_starts_at_the_oldest_retained_event() {
    let broker = broker(3, 100);
    publish_many(&broker, "project:a", 5).await;
    let page = broker
        .history(&channel("project:a"), None, None, 100, at(10_000))
        .await
        .expect("read");
    assert_eq!(page.channel, channel("project:a"));
    assert!(page.complete);
    assert_eq!(page.reason, None);
    assert_eq!(page.head, pos("e1", 5));
    assert_eq!(stored_seqs(&page.events), vec![3, 4, 5]);
    assert_eq!(page.events[0].payload, Payload::from(json!({ "n": 3 })));
    // The current epoch named without after_seq reads the same.
    let named = broker
        .history(
            &channel("project:a"),
            Some(&epoch("e1")),
            None,
            100,
            at(10_000),
        )
        .await
        .expect("read");
    assert_eq!(named, page);
    // A channel nobody published to: an empty, complete page at seq 0.
    let empty = broker
        .history(&channel("project:none"), None, None, 100, at(0))
        .await
        .expect("read");
    assert!(empty.complete);
    assert!(empty.events.is_empty());
    assert_eq!(empty.head, pos("e1", 0));
}

#[tokio::test]
async fn ferry_resume_5_history_continues_exactly_after_the_position_in_pages() {
    let broker = broker(100, 1000);
    publish_many(&broker, "project:a", 7).await;
    let ch = channel("project:a");
    let first = broker
        .history(&ch, Some(&epoch("e1")), Some(1), 3, at(70))
        .await
        .expect("read");
    assert!(first.complete);
    assert_eq!(stored_seqs(&first.events), vec![2, 3, 4]);
    let last = first.events.last().expect("a full page").position.seq.get();
    // Without the epoch, after_seq is in the current epoch.
    let second = broker
        .history(&ch, None, Some(last), 3, at(70))
        .await
        .expect("read");
    assert!(second.complete);
    assert_eq!(stored_seqs(&second.events), vec![5, 6, 7]);
    let end = broker
        .history(&ch, None, Some(7), 3, at(70))
        .await
        .expect("read");
    assert!(end.complete);
    assert!(
        end.events.is_empty(),
        "fewer than limit once the head is reached"
    );
    // A limit above the schema's maximum is capped.
    let roomy = self::broker(5000, 1000);
    publish_many_from(&roomy, "project:b", 1, 1500).await;
    let big = roomy
        .history(&channel("project:b"), None, Some(0), 5000, at(15_000))
        .await
        .expect("read");
    assert!(big.complete);
    assert_eq!(big.events.len(), MAX_HISTORY_LIMIT);
}

#[tokio::test]
async fn ferry_resume_5_history_that_cannot_continue_says_why_and_starts_at_the_oldest() {
    let broker = broker(2, 100);
    publish_many(&broker, "project:a", 5).await;
    let ch = channel("project:a");
    let exceeded = broker
        .history(&ch, Some(&epoch("e1")), Some(1), 100, at(10_000))
        .await
        .expect("read");
    assert!(!exceeded.complete);
    assert_eq!(exceeded.reason, Some(RecoveryGap::HistoryExceeded));
    assert_eq!(stored_seqs(&exceeded.events), vec![4, 5]);
    let other_epoch = broker
        .history(&ch, Some(&epoch("e0")), Some(4), 100, at(10_000))
        .await
        .expect("read");
    assert!(!other_epoch.complete);
    assert_eq!(other_epoch.reason, Some(RecoveryGap::EpochChanged));
    assert_eq!(stored_seqs(&other_epoch.events), vec![4, 5]);
    let epoch_only = broker
        .history(&ch, Some(&epoch("e0")), None, 100, at(10_000))
        .await
        .expect("read");
    assert_eq!(epoch_only.reason, Some(RecoveryGap::EpochChanged));
    for ahead in [6, u64::MAX] {
        let page = broker
            .history(&ch, None, Some(ahead), 1, at(10_000))
            .await
            .expect("read");
        assert!(!page.complete);
        assert_eq!(page.reason, Some(RecoveryGap::PositionAhead));
        assert_eq!(stored_seqs(&page.events), vec![4], "limited to 1");
        assert_eq!(page.head, pos("e1", 5));
    }
}

#[tokio::test]
async fn ferry_resume_3_housekeeping_releases_only_what_retention_no_longer_asks_for() {
    let broker = broker(2, 100);
    publish_many(&broker, "project:a", 5).await;
    broker.purge_expired(at(10_000)).await;
    let (_, recovery, replay) = broker
        .subscribe(&channel("project:a"), Some(&pos("e1", 3)), at(10_000))
        .await
        .expect("read");
    assert_eq!(recovery.map(|r| r.complete), Some(true));
    assert_eq!(seqs(&replay), vec![4, 5]);
}

#[test]
fn ferry_ticket_6_debug_output_holds_no_ticket() {
    let broker = broker(10, 1000);
    let ticket = broker
        .issue_ticket_now(grant("ada"), Duration::from_secs(30), at(0))
        .expect("issued");
    let debug = format!("{broker:?}");
    assert!(!debug.contains(ticket.as_str()));
    assert!(debug.contains("tickets: 1"));
}

#[test]
fn broker_errors_map_to_the_error_table() {
    use ferry_protocol::ErrorCode;
    assert_eq!(
        BrokerError::Unavailable("redis down".into()).code(),
        ErrorCode::Unavailable
    );
    assert_eq!(
        BrokerError::SeqExhausted {
            channel: channel("project:a")
        }
        .code(),
        ErrorCode::Internal
    );
}

// Memory that follows use: forgetting quiet channels, and the channel cap.

#[tokio::test]
async fn a_channel_nobody_holds_is_forgotten_once_it_holds_nothing_and_comes_back_in_a_new_epoch() {
    let broker = broker(10, 1000);
    let ch = channel("project:a");
    // Held by a session that never saw an event, then let go at 0.
    let follower = Follower::of(&broker, "project:a").await;
    let (seen, _, _) = broker.subscribe(&ch, None, at(0)).await.expect("read");
    assert_eq!(seen, pos("e1", 0));
    follower.hub.leave(&broker, &ch, &follower.mailbox, at(0));
    broker.purge_expired(at(999)).await;
    assert_eq!(broker.channels_held(), 1, "let go less than the window ago");
    broker.purge_expired(at(1000)).await;
    assert_eq!(broker.channels_held(), 0);
    // Back in a new epoch: a resume across the loss says so, never a restarted seq.
    let again = broker
        .publish(&ch, key("k"), Payload::from(json!(2)), at(1001), 0)
        .await
        .expect("published");
    assert_eq!(again.position, pos("e1-1", 1));
    let (_, recovery, replay) = broker
        .subscribe(&ch, Some(&seen), at(1002))
        .await
        .expect("read");
    assert_eq!(
        recovery.and_then(|r| r.reason),
        Some(RecoveryGap::EpochChanged)
    );
    assert!(replay.is_empty());
}

#[tokio::test]
async fn a_channel_with_history_is_kept_however_old_since_its_last_events_stay_replayable() {
    let broker = broker(10, 1000);
    publish_many(&broker, "project:a", 1).await;
    broker.purge_expired(at(3_600_000)).await;
    assert_eq!(
        broker.channels_held(),
        1,
        "FERRY-RESUME-3 keeps the last max_events"
    );
}

#[tokio::test]
async fn a_followed_channel_is_never_forgotten_and_one_let_go_waits_the_retention_age() {
    let broker = broker(10, 1000);
    let follower = Follower::of(&broker, "project:a").await;
    broker.purge_expired(at(10_000)).await;
    assert_eq!(broker.channels_held(), 1, "followed: kept");
    follower.hub.leave(
        &broker,
        &channel("project:a"),
        &follower.mailbox,
        at(10_000),
    );
    broker.purge_expired(at(10_999)).await;
    assert_eq!(broker.channels_held(), 1, "let go less than 1 s ago: kept");
    broker.purge_expired(at(11_000)).await;
    assert_eq!(broker.channels_held(), 0);
}

#[tokio::test]
async fn a_channel_holding_a_live_idempotency_key_is_kept_so_the_key_still_deduplicates() {
    let ch = channel("project:a");
    let broker = MemoryBroker::new(MemoryBrokerConfig {
        retention: Retention {
            max_events: 10,
            max_age: Duration::from_millis(1000),
        },
        dedup_window: Duration::from_millis(5000),
        max_channels: DEFAULT_MAX_CHANNELS,
        max_history_bytes: DEFAULT_MAX_HISTORY_BYTES,
        epoch: epoch("e1"),
        presence_leave_after: Duration::from_millis(LEAVE_AFTER_MS),
    });
    let original = broker
        .publish(&ch, key("k"), Payload::from(json!(1)), at(0), 0)
        .await
        .expect("published");
    broker.purge_expired(at(4000)).await;
    assert_eq!(broker.channels_held(), 1);
    let repeat = broker
        .publish(&ch, key("k"), Payload::from(json!(1)), at(4000), 0)
        .await
        .expect("acknowledged");
    assert!(repeat.duplicate);
    assert_eq!(repeat.position, original.position);
}

#[tokio::test]
async fn past_max_channels_a_new_channel_is_refused_as_unavailable_and_held_ones_go_on() {
    let broker = MemoryBroker::new(MemoryBrokerConfig {
        max_channels: 2,
        ..MemoryBrokerConfig::default()
    });
    for name in ["project:a", "project:b"] {
        broker
            .publish(&channel(name), key("k"), Payload::from(json!(1)), at(0), 0)
            .await
            .expect("published");
    }
    let refused = broker
        .publish(
            &channel("project:c"),
            key("k"),
            Payload::from(json!(1)),
            at(0),
            0,
        )
        .await
        .expect_err("a third channel is over the cap");
    assert_eq!(refused, BrokerError::ChannelLimit { max: 2 });
    assert_eq!(refused.code(), ferry_protocol::ErrorCode::Unavailable);
    let feed = Arc::new(Feed::new(channel("project:c")));
    assert_eq!(
        broker.follow(&channel("project:c"), feed, at(0)).await,
        Err(BrokerError::ChannelLimit { max: 2 })
    );
    broker
        .publish(
            &channel("project:a"),
            key("k2"),
            Payload::from(json!(2)),
            at(0),
            0,
        )
        .await
        .expect("a held channel takes publishes");
    // Reads of a channel without state create nothing.
    let page = broker
        .history(&channel("project:d"), None, None, 10, at(0))
        .await
        .expect("read");
    assert!(page.events.is_empty());
    assert_eq!(broker.channels_held(), 2);
}

#[tokio::test]
async fn unfollow_with_a_stale_feed_leaves_the_current_feed_in_place() {
    let broker = broker(10, 1000);
    let ch = channel("project:a");
    let old = Arc::new(Feed::new(ch.clone()));
    let current = Follower::of(&broker, "project:a").await;
    broker.unfollow(&ch, &old, at(0));
    publish_many(&broker, "project:a", 1).await;
    assert_eq!(seqs(&current.received()), vec![1]);
}

/// The lapse time of the test brokers (FERRY-PRESENCE-4).
const LEAVE_AFTER_MS: u64 = 30_000;

fn present(session: &str, user: &str) -> PresentSession {
    PresentSession {
        session: session.parse().expect("a session id"),
        user: user.parse().expect("a user"),
        info: None,
    }
}

/// The presence events among `deliveries`, as (change, user, seq of the head they carry).
fn changes(deliveries: &[Delivery]) -> Vec<(String, String, u64)> {
    deliveries
        .iter()
        .filter_map(|delivery| match delivery {
            Delivery::Presence(p) => Some((
                p.presence().change.to_string(),
                p.presence().user.to_string(),
                p.presence().position.seq.get(),
            )),
            Delivery::Event(_) => None,
        })
        .collect()
}

#[tokio::test]
async fn joins_and_leaves_reach_the_feed_with_the_head_and_lapses_leave_later() {
    let broker = broker(10, 120_000);
    let room = channel("project:a:approvals");
    let follower = Follower::of(&broker, "project:a:approvals").await;
    broker
        .publish(&room, key("k1"), Payload::from(json!(1)), at(0), 0)
        .await
        .expect("published");
    follower.received();
    broker
        .join_presence(&room, present("s1", "ada"), at(1))
        .await
        .expect("joined");
    broker
        .join_presence(&room, present("s2", "ada"), at(2))
        .await
        .expect("joined");
    broker
        .join_presence(&room, present("s3", "bob"), at(3))
        .await
        .expect("joined");
    assert_eq!(
        changes(&follower.deliveries()),
        vec![
            ("join".into(), "ada".into(), 1),
            ("join".into(), "bob".into(), 1)
        ],
        "one join per user, each with the head"
    );
    let (members, next, head) = broker.members(&room, None, 1, at(4)).await.expect("read");
    assert_eq!((members.len(), members[0].sessions.get()), (1, 2));
    assert_eq!(
        (next.as_ref().map(|u| u.as_str()), head.seq.get()),
        (Some("ada"), 1)
    );

    broker
        .leave_presence(&room, &"s1".parse().expect("an id"), at(5))
        .await;
    broker.lapse_presence(&room, &"s2".parse().expect("an id"), at(5));
    broker.expire_presence(at(5 + LEAVE_AFTER_MS - 1)).await;
    assert_eq!(
        changes(&follower.deliveries()),
        vec![],
        "ada's second tab has not lapsed yet"
    );
    broker.expire_presence(at(5 + LEAVE_AFTER_MS)).await;
    assert_eq!(
        changes(&follower.deliveries()),
        vec![("leave".into(), "ada".into(), 1)]
    );
    let (members, next, _) = broker.members(&room, None, 10, at(6)).await.expect("read");
    assert_eq!(
        (
            members.iter().map(|m| m.user.as_str()).collect::<Vec<_>>(),
            next
        ),
        (vec!["bob"], None)
    );
}

#[tokio::test]
async fn a_channel_with_members_is_not_forgotten() {
    let broker = broker(10, 1_000);
    let room = channel("project:a:approvals");
    broker
        .join_presence(&room, present("s1", "ada"), at(0))
        .await
        .expect("joined");
    broker.purge_expired(at(10_000)).await;
    assert_eq!(broker.channels_held(), 1);
    broker
        .leave_presence(&room, &"s1".parse().expect("an id"), at(10_001))
        .await;
    broker.purge_expired(at(20_000)).await;
    assert_eq!(broker.channels_held(), 0);
}

#[tokio::test]
async fn a_taken_over_hold_is_told_to_the_feed_and_its_fence_publishes_nothing() {
    let broker = broker(10, 120_000);
    let out = channel("daemon:a:output");
    let follower = Follower::of(&broker, "daemon:a:output").await;
    let (first, second) = ("d1".parse().expect("id"), "d2".parse().expect("id"));
    let user: UserId = "daemon".parse().expect("a user");
    let Claimed::Granted { fence: old, .. } = broker
        .claim_hold(&out, &first, &user, None, Exclusive::TakeOver, at(0))
        .await
        .expect("claimed")
    else {
        panic!("a free channel is granted");
    };
    broker
        .publish_fenced(&out, key("k1"), Payload::from(json!(1)), old, at(1), 0)
        .await
        .expect("the holder publishes");
    let Claimed::Granted {
        fence: new,
        displaced,
    } = broker
        .claim_hold(&out, &second, &user, None, Exclusive::TakeOver, at(2))
        .await
        .expect("claimed")
    else {
        panic!("take_over grants");
    };
    assert_eq!(displaced.map(|h| h.session), Some(first.clone()));
    let mut deliveries = VecDeque::new();
    let taken = follower.mailbox.take(&mut deliveries);
    assert_eq!(taken.taken_over, vec![(out.clone(), old)]);
    let refused = broker
        .publish_fenced(&out, key("k2"), Payload::from(json!(2)), old, at(3), 0)
        .await;
    assert_eq!(refused, Err(BrokerError::NotHolder));
    let repeated = broker
        .publish_fenced(&out, key("k1"), Payload::from(json!(1)), old, at(3), 0)
        .await;
    assert_eq!(
        repeated,
        Err(BrokerError::NotHolder),
        "no duplicate answer either"
    );
    let (head, _, _) = broker.subscribe(&out, None, at(4)).await.expect("read");
    assert_eq!(head.seq.get(), 1, "nothing stored under the old fence");
    broker.release_hold(&out, &first, at(5));
    broker
        .publish_fenced(&out, key("k3"), Payload::from(json!(3)), new, at(6), 0)
        .await
        .expect("a displaced session's release leaves the new hold");
    let Claimed::Held = broker
        .claim_hold(&out, &first, &user, Some(old), Exclusive::Refuse, at(7))
        .await
        .expect("claimed")
    else {
        panic!("an old fence does not take a hold back");
    };
}
