//! A channel's recent history on the server, and what to replay to a client that resumes
//! (FERRY-RESUME-1, FERRY-RESUME-2, FERRY-RESUME-3, FERRY-EVENT-1).
//!
//! A [`ReplayBuffer`] holds the events of one channel's current epoch, in seq order, with the
//! time each was appended. It keeps **at least** the last `max_events` events **and** every
//! event younger than `max_age` (FERRY-RESUME-3): an event is forgotten only once it is both
//! beyond the last `max_events` and older than `max_age`. So a burst keeps every event of the
//! last `max_age`, however many, and a quiet channel keeps its last `max_events`, however old.
//!
//! [`ReplayBuffer::after`] answers a re-subscribe's `from`: exactly the events after it, in
//! order, when `from` is in the current epoch and every event after it is retained; otherwise
//! the [`RecoveryGap`] that says why not, and never a partial range (FERRY-RESUME-2).
//! The answer depends only on the events appended and on `now`, not on when the buffer last
//! dropped old events.
//!
//! The one exception is asked for explicitly: [`ReplayBuffer::shed_aged`] drops every event
//! older than `max_age`, the last `max_events` included, for a server whose history bytes
//! reached their cap (FERRY-RESUME-7). Events younger than `max_age` are never shed, and a
//! resume from before a shed event is answered `history_exceeded`, never with a gap. The
//! buffer counts the bytes it holds ([`ReplayBuffer::bytes`], by [`Sequenced::bytes`]) so that
//! such a cap can be kept.

use std::collections::VecDeque;
use std::collections::vec_deque;
use std::fmt;
use std::iter::FusedIterator;
use std::time::Duration;

use crate::bounded::UInt;
use crate::tables::defaults;
use crate::time::Timestamp;
use crate::types::{Epoch, Event, RecoveryGap, ResumePolicy, Seq, StoredEvent, StreamPosition};

/// Something with a sequence number in its channel's stream.
pub trait Sequenced {
    /// The sequence number (the first event of an epoch has 1).
    fn seq(&self) -> u64;

    /// The bytes the event costs to hold, for a bound on retained history (FERRY-RESUME-7);
    /// 0 unless an implementation counts them.
    fn bytes(&self) -> usize {
        0
    }
}

impl Sequenced for Event {
    fn seq(&self) -> u64 {
        self.position.seq.get()
    }
}

impl Sequenced for StoredEvent {
    fn seq(&self) -> u64 {
        self.position.seq.get()
    }
}

/// How much history a [`ReplayBuffer`] keeps: at least the last `max_events` events and every
/// event younger than `max_age` (FERRY-RESUME-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The number of most recent events kept whatever their age.
    pub max_events: u64,
    /// The age up to which every event is kept whatever their number.
    pub max_age: Duration,
}

impl Default for Retention {
    /// The defaults: 1000 events and 2 minutes.
    fn default() -> Self {
        Self {
            max_events: defaults::RESUME_MAX_EVENTS,
            max_age: Duration::from_millis(defaults::RESUME_WINDOW_MS),
        }
    }
}

impl From<&ResumePolicy> for Retention {
    /// The resume policy a welcome advertises.
    fn from(policy: &ResumePolicy) -> Self {
        Self {
            max_events: policy.max_events.get(),
            max_age: Duration::from_millis(policy.window_ms.get()),
        }
    }
}

/// Why an event could not be appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The event's seq is not exactly one more than the head's (FERRY-EVENT-1).
    #[error("expected an event with seq {expected}, got seq {got}")]
    OutOfOrder {
        /// The seq the next event must carry.
        expected: u64,
        /// The seq it carried.
        got: u64,
    },
    /// The head is at the largest seq a JSON number carries exactly (2^53 − 1); the channel
    /// needs a new epoch.
    #[error("the epoch has used every sequence number")]
    SeqExhausted,
}

/// The seq before the first event of an epoch.
const SEQ_ZERO: Seq = Seq(match UInt::new(0) {
    Some(zero) => zero,
    None => panic!("0 is a valid seq"),
});

#[derive(Debug, Clone)]
struct Held<T> {
    at: Timestamp,
    event: T,
}

/// The recent history of one channel's current epoch, for replay on resume.
#[derive(Debug, Clone)]
pub struct ReplayBuffer<T> {
    epoch: Epoch,
    head: Seq,
    retention: Retention,
    /// The events `head − len + 1 ..= head`, oldest first, with non-decreasing times.
    events: VecDeque<Held<T>>,
    /// The sum of the held events' [`Sequenced::bytes`].
    bytes: usize,
}

impl<T: Sequenced> ReplayBuffer<T> {
    /// An empty history of a new epoch: the head is seq 0.
    pub fn new(epoch: Epoch, retention: Retention) -> Self {
        Self {
            epoch,
            head: SEQ_ZERO,
            retention,
            events: VecDeque::new(),
            bytes: 0,
        }
    }

    /// The current epoch.
    pub fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    /// The seq of the latest event (0 before the first event of the epoch).
    pub fn head_seq(&self) -> u64 {
        self.head.get()
    }

    /// The channel's head: the position a `subscribed` reply carries (FERRY-SUBSCRIBE-2).
    pub fn head(&self) -> StreamPosition {
        StreamPosition {
            epoch: self.epoch.clone(),
            seq: self.head.clone(),
        }
    }

    /// The seq the next appended event must carry.
    pub fn next_seq(&self) -> u64 {
        self.head.get() + 1
    }

    /// How much history is kept.
    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// How many events are held (possibly more than the retention asks for at a later time,
    /// until [`expire`](Self::expire) or [`append`](Self::append) is called with it).
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no event is held.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The sum of the held events' [`Sequenced::bytes`].
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends the next event of the channel, stored at `now`. Its seq must be exactly
    /// [`next_seq`](Self::next_seq). A time earlier than the previous event's counts as that
    /// time. Events the retention no longer asks for are then dropped.
    pub fn append(&mut self, event: T, now: Timestamp) -> Result<(), AppendError> {
        let expected = self.next_seq();
        let got = event.seq();
        if got != expected {
            return Err(AppendError::OutOfOrder { expected, got });
        }
        let head = UInt::new(expected).ok_or(AppendError::SeqExhausted)?;
        let at = self.events.back().map_or(now, |last| last.at.max(now));
        self.bytes = self.bytes.saturating_add(event.bytes());
        self.events.push_back(Held { at, event });
        self.head = Seq(head);
        self.expire(at);
        Ok(())
    }

    /// Drops the events that the retention no longer asks for at `now`.
    pub fn expire(&mut self, now: Timestamp) {
        let first = self.first_retained(now);
        self.drop_front(first);
    }

    /// Drops every event older than `max_age` at `now`, even among the last `max_events`, and
    /// returns the bytes freed: for a server whose retained history reached its byte cap
    /// (FERRY-RESUME-7). No event younger than `max_age` is dropped, and a resume from before
    /// a dropped event gets `history_exceeded` (FERRY-RESUME-2).
    pub fn shed_aged(&mut self, now: Timestamp) -> usize {
        let before = self.bytes;
        let aged = self.aged(now);
        self.drop_front(aged);
        before - self.bytes
    }

    /// Drops the `count` oldest events.
    fn drop_front(&mut self, count: usize) {
        for held in self.events.drain(..count) {
            self.bytes -= held.event.bytes();
        }
    }

    /// How many of the oldest held events are older than `max_age` at `now`.
    fn aged(&self, now: Timestamp) -> usize {
        self.events
            .partition_point(|held| now.saturating_since(held.at) > self.retention.max_age)
    }

    /// Starts a new epoch: forgets every event and puts the head at seq 0. `epoch` must differ
    /// from every earlier epoch of the channel, so that positions of the old history are
    /// answered with epoch_changed.
    pub fn reset_epoch(&mut self, epoch: Epoch) {
        self.epoch = epoch;
        self.head = SEQ_ZERO;
        self.events.clear();
        self.bytes = 0;
    }

    /// The events after `from`, in order, if every one of them is retained at `now`
    /// (FERRY-RESUME-1); otherwise why not (FERRY-RESUME-2): `from` names another epoch
    /// (`EpochChanged`), lies beyond the head (`PositionAhead`), or some event after it is no
    /// longer retained (`HistoryExceeded`). `from` at the head gives no events.
    pub fn after(
        &self,
        from: &StreamPosition,
        now: Timestamp,
    ) -> Result<Replay<'_, T>, RecoveryGap> {
        if from.epoch != self.epoch {
            return Err(RecoveryGap::EpochChanged);
        }
        let from = from.seq.get();
        let head = self.head.get();
        if from > head {
            return Err(RecoveryGap::PositionAhead);
        }
        let first = self.first_retained(now);
        // Held events are consecutive and end at the head, so the first retained one has
        // seq `oldest`.
        let retained = (self.events.len() - first) as u64;
        let oldest = head + 1 - retained;
        if from + 1 < oldest {
            return Err(RecoveryGap::HistoryExceeded);
        }
        let start = first + usize::try_from(from + 1 - oldest).unwrap_or(usize::MAX);
        Ok(Replay {
            events: self.events.range(start.min(self.events.len())..),
        })
    }

    /// The index of the first held event the retention keeps at `now`: the last `max_events`
    /// are kept, and so is every event no older than `max_age`.
    fn first_retained(&self, now: Timestamp) -> usize {
        let max_events = usize::try_from(self.retention.max_events).unwrap_or(usize::MAX);
        let by_count = self.events.len().saturating_sub(max_events);
        by_count.min(self.aged(now))
    }
}

/// The events a [`ReplayBuffer`] replays, oldest first.
pub struct Replay<'a, T> {
    events: vec_deque::Iter<'a, Held<T>>,
}

impl<'a, T> Iterator for Replay<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        self.events.next().map(|held| &held.event)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.events.size_hint()
    }
}

impl<T> DoubleEndedIterator for Replay<'_, T> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.events.next_back().map(|held| &held.event)
    }
}

impl<T> ExactSizeIterator for Replay<'_, T> {}

impl<T> FusedIterator for Replay<'_, T> {}

impl<T> Clone for Replay<'_, T> {
    fn clone(&self) -> Self {
        Self {
            events: self.events.clone(),
        }
    }
}

impl<T> fmt::Debug for Replay<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replay")
            .field("remaining", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A test event: its seq only.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Ev(u64);

    impl Sequenced for Ev {
        fn seq(&self) -> u64 {
            self.0
        }

        fn bytes(&self) -> usize {
            10
        }
    }

    #[test]
    fn shedding_drops_every_aged_event_and_no_young_one_and_counts_the_bytes() {
        // The last 3 events are kept however old; events of the last 100 ms whatever their
        // number.
        let mut buffer = buffer_with(retention(3, 100), &[0, 0, 10, 450]);
        buffer.expire(at(500));
        assert_eq!((buffer.len(), buffer.bytes()), (3, 30));
        assert_eq!(
            buffer.shed_aged(at(500)),
            20,
            "the two events of 0 and 10 ms"
        );
        assert_eq!((buffer.len(), buffer.bytes()), (1, 10));
        assert_eq!(
            buffer.after(&pos("e1", 1), at(500)).err(),
            Some(RecoveryGap::HistoryExceeded),
            "a resume from before a shed event is told so"
        );
        let replay: Vec<u64> = buffer
            .after(&pos("e1", 3), at(500))
            .expect("the young event is kept")
            .map(|ev| ev.0)
            .collect();
        assert_eq!(replay, [4]);
        assert_eq!(buffer.shed_aged(at(550)), 0, "450 is 100 ms old, not older");
        assert_eq!(buffer.shed_aged(at(551)), 10);
        assert_eq!((buffer.len(), buffer.bytes(), buffer.head_seq()), (0, 0, 4));
    }

    fn epoch(name: &str) -> Epoch {
        Epoch::try_from(name).expect("a valid epoch")
    }

    fn pos(epoch_name: &str, seq: u64) -> StreamPosition {
        StreamPosition {
            epoch: epoch(epoch_name),
            seq: Seq(UInt::new(seq).expect("a valid seq")),
        }
    }

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn retention(max_events: u64, max_age_ms: u64) -> Retention {
        Retention {
            max_events,
            max_age: Duration::from_millis(max_age_ms),
        }
    }

    fn buffer_with(retention: Retention, times: &[u64]) -> ReplayBuffer<Ev> {
        let mut buffer = ReplayBuffer::new(epoch("e1"), retention);
        for (index, &time) in times.iter().enumerate() {
            buffer
                .append(Ev(index as u64 + 1), at(time))
                .expect("appended in order");
        }
        buffer
    }

    fn seqs(replay: Result<Replay<'_, Ev>, RecoveryGap>) -> Result<Vec<u64>, RecoveryGap> {
        replay.map(|events| events.map(|event| event.0).collect())
    }

    #[test]
    fn wire_events_are_sequenced_by_their_position_and_replayed_from_either_end() {
        let event = |seq: u64| -> Event {
            serde_json::from_value(serde_json::json!({
                "channel": "a:b", "message_id": format!("m-{seq}"),
                "position": { "epoch": "e1", "seq": seq }, "published_at_ms": 0, "payload": {}
            }))
            .expect("a valid event")
        };
        assert_eq!((event(46).seq(), event(46).bytes()), (46, 0));
        let mut buffer = ReplayBuffer::new(epoch("e1"), retention(10, 1000));
        assert!(buffer.is_empty());
        assert_eq!(buffer.retention(), retention(10, 1000));
        for seq in 1..=3 {
            buffer.append(event(seq), at(0)).expect("appended in order");
        }
        assert!(!buffer.is_empty());
        let replay = buffer.after(&pos("e1", 0), at(0)).expect("retained");
        assert_eq!(format!("{replay:?}"), "Replay { remaining: 3 }");
        let backwards: Vec<u64> = replay.rev().map(Sequenced::seq).collect();
        assert_eq!(backwards, [3, 2, 1]);
    }

    #[test]
    fn replay_after_a_retained_position_is_exactly_the_missed_events_in_order() {
        let buffer = buffer_with(Retention::default(), &[0, 10, 20, 30, 40]);
        assert_eq!(seqs(buffer.after(&pos("e1", 2), at(50))), Ok(vec![3, 4, 5]));
        assert_eq!(
            seqs(buffer.after(&pos("e1", 0), at(50))),
            Ok(vec![1, 2, 3, 4, 5])
        );
        let replay = buffer.after(&pos("e1", 1), at(50)).expect("retained");
        assert_eq!(replay.len(), 4);
    }

    #[test]
    fn replay_from_the_head_is_empty() {
        let buffer = buffer_with(Retention::default(), &[0, 10]);
        assert_eq!(seqs(buffer.after(&pos("e1", 2), at(10))), Ok(vec![]));
        let empty: ReplayBuffer<Ev> = ReplayBuffer::new(epoch("e1"), Retention::default());
        assert_eq!(seqs(empty.after(&pos("e1", 0), at(0))), Ok(vec![]));
        // Even when every event has aged out, nothing was missed.
        let aged = buffer_with(retention(0, 100), &[0, 10]);
        assert_eq!(seqs(aged.after(&pos("e1", 2), at(1_000_000))), Ok(vec![]));
    }

    #[test]
    fn a_position_beyond_the_head_is_position_ahead() {
        let buffer = buffer_with(Retention::default(), &[0, 10]);
        assert_eq!(
            seqs(buffer.after(&pos("e1", 3), at(10))),
            Err(RecoveryGap::PositionAhead)
        );
    }

    #[test]
    fn a_position_of_another_epoch_is_epoch_changed() {
        let buffer = buffer_with(Retention::default(), &[0, 10]);
        assert_eq!(
            seqs(buffer.after(&pos("e0", 1), at(10))),
            Err(RecoveryGap::EpochChanged)
        );
        assert_eq!(
            seqs(buffer.after(&pos("e0", 9), at(10))),
            Err(RecoveryGap::EpochChanged)
        );
    }

    #[test]
    fn a_position_older_than_the_retention_is_history_exceeded_not_a_partial_replay() {
        // Keep 2 events or 100 ms: at 1000 only seqs 4 and 5 remain.
        let buffer = buffer_with(retention(2, 100), &[0, 10, 20, 30, 40]);
        assert_eq!(seqs(buffer.after(&pos("e1", 3), at(1000))), Ok(vec![4, 5]));
        assert_eq!(
            seqs(buffer.after(&pos("e1", 2), at(1000))),
            Err(RecoveryGap::HistoryExceeded)
        );
        assert_eq!(
            seqs(buffer.after(&pos("e1", 0), at(1000))),
            Err(RecoveryGap::HistoryExceeded)
        );
    }

    #[test]
    fn every_event_younger_than_the_window_is_kept_beyond_max_events() {
        // The defaults: 1000 events or 2 minutes. 5000 events within one minute all stay.
        let times: Vec<u64> = (0..5000).map(|i| i * 12).collect();
        let mut buffer = buffer_with(Retention::default(), &times);
        assert_eq!(buffer.len(), 5000);
        assert_eq!(
            buffer.after(&pos("e1", 0), at(60_000)).map(|r| r.len()),
            Ok(5000)
        );
        // Two minutes after the first event, the oldest ones start to go, down to 1000.
        buffer.expire(at(120_000 + 12 * 1000));
        assert_eq!(buffer.len(), 4000);
        buffer.expire(at(10_000_000));
        assert_eq!(buffer.len(), 1000);
    }

    #[test]
    fn the_last_max_events_are_kept_however_old() {
        let times: Vec<u64> = (0..1500).map(|i| i * 1000).collect();
        let buffer = buffer_with(Retention::default(), &times);
        let much_later = at(100_000_000);
        assert_eq!(
            seqs(buffer.after(&pos("e1", 500), much_later)).map(|s| s.len()),
            Ok(1000)
        );
        assert_eq!(
            seqs(buffer.after(&pos("e1", 499), much_later)),
            Err(RecoveryGap::HistoryExceeded)
        );
    }

    #[test]
    fn an_event_exactly_at_the_window_age_is_kept() {
        let buffer = buffer_with(retention(0, 100), &[0, 50]);
        assert_eq!(seqs(buffer.after(&pos("e1", 0), at(100))), Ok(vec![1, 2]));
        assert_eq!(
            seqs(buffer.after(&pos("e1", 0), at(101))),
            Err(RecoveryGap::HistoryExceeded)
        );
    }

    #[test]
    fn events_must_be_appended_with_the_next_seq() {
        let mut buffer = buffer_with(Retention::default(), &[0, 10]);
        assert_eq!(
            buffer.append(Ev(4), at(20)),
            Err(AppendError::OutOfOrder {
                expected: 3,
                got: 4
            })
        );
        assert_eq!(
            buffer.append(Ev(2), at(20)),
            Err(AppendError::OutOfOrder {
                expected: 3,
                got: 2
            })
        );
        assert_eq!(buffer.head_seq(), 2);
        assert_eq!(buffer.append(Ev(3), at(20)), Ok(()));
        assert_eq!(buffer.head(), pos("e1", 3));
    }

    #[test]
    fn a_new_epoch_forgets_the_history() {
        let mut buffer = buffer_with(Retention::default(), &[0, 10, 20]);
        buffer.reset_epoch(epoch("e2"));
        assert!(buffer.is_empty());
        assert_eq!(buffer.head(), pos("e2", 0));
        assert_eq!(
            seqs(buffer.after(&pos("e1", 3), at(30))),
            Err(RecoveryGap::EpochChanged)
        );
        assert_eq!(seqs(buffer.after(&pos("e2", 0), at(30))), Ok(vec![]));
        buffer
            .append(Ev(1), at(40))
            .expect("the first event of the epoch has seq 1");
        assert_eq!(seqs(buffer.after(&pos("e2", 0), at(40))), Ok(vec![1]));
    }

    #[test]
    fn retention_comes_from_the_defaults_or_the_advertised_policy() {
        assert_eq!(Retention::default(), retention(1000, 120_000));
        let policy = ResumePolicy {
            max_events: UInt::new(50).expect("valid"),
            window_ms: UInt::new(3000).expect("valid"),
        };
        assert_eq!(Retention::from(&policy), retention(50, 3000));
    }

    #[derive(Debug, Clone)]
    enum Step {
        /// Time passes, then one event is appended.
        Append(u64),
        /// Time passes, then the buffer drops what the retention no longer asks for.
        Expire(u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => prop_oneof![Just(0u64), 0u64..30, 0u64..500].prop_map(Step::Append),
            1 => (0u64..300).prop_map(Step::Expire),
        ]
    }

    proptest! {
        #[test]
        fn replay_is_exactly_what_the_union_retention_keeps(
            max_events in 0u64..12,
            max_age in 0u64..400,
            steps in proptest::collection::vec(step(), 0..60),
            later in 0u64..600,
        ) {
            let mut buffer = ReplayBuffer::new(epoch("e1"), retention(max_events, max_age));
            // The reference model: every event ever appended, with its time.
            let mut appended: Vec<(u64, u64)> = Vec::new();
            let mut now = 0u64;
            for step in steps {
                match step {
                    Step::Append(advance) => {
                        now += advance;
                        let seq = appended.len() as u64 + 1;
                        prop_assert_eq!(buffer.append(Ev(seq), at(now)), Ok(()));
                        appended.push((seq, now));
                    }
                    Step::Expire(advance) => {
                        now += advance;
                        buffer.expire(at(now));
                    }
                }
            }
            let query = now + later;
            let head = appended.len() as u64;
            let count = appended.len();
            // Kept: among the last max_events, or no older than max_age (the union).
            let kept = |index: usize, time: u64| {
                (count - index) as u64 <= max_events || query - time <= max_age
            };
            for from in 0..=head + 2 {
                let answer = seqs(buffer.after(&pos("e1", from), at(query)));
                let expected = if from > head {
                    Err(RecoveryGap::PositionAhead)
                } else if appended
                    .iter()
                    .enumerate()
                    .filter(|(_, (seq, _))| *seq > from)
                    .all(|(index, (_, time))| kept(index, *time))
                {
                    Ok((from + 1..=head).collect::<Vec<_>>())
                } else {
                    Err(RecoveryGap::HistoryExceeded)
                };
                prop_assert_eq!(answer, expected, "from {}", from);
            }
            prop_assert_eq!(
                seqs(buffer.after(&pos("e9", 0), at(query))),
                Err(RecoveryGap::EpochChanged)
            );
        }
    }
}
