//! A client's position in one channel's stream: which incoming events to hand to the
//! application, which to drop, and when to say that its view is incomplete
//! (FERRY-EVENT-1, FERRY-EVENT-3, FERRY-EVENT-4, FERRY-SUBSCRIBE-2, FERRY-SUBSCRIBE-5,
//! FERRY-RESUME-4).
//!
//! A [`PositionTracker`] holds the position of the last event the client delivered on a
//! channel (or of the last `subscribed` reply when no event arrived), which is also the `from`
//! of the next re-subscribe (FERRY-SUBSCRIBE-5). Each incoming event is classified against it
//! ([`classify`]):
//!
//! | incoming event | [`Arrival`] | the client |
//! | --- | --- | --- |
//! | same epoch, seq = last + 1 | `Deliver` | hands it over |
//! | same epoch, seq <= last | `Duplicate` | drops it (FERRY-EVENT-3) |
//! | same epoch, seq > last + 1 | `Gap` | tells the application its view is incomplete, then hands it over (FERRY-EVENT-4) |
//! | another epoch | `EpochChanged` | the same (FERRY-EVENT-4) |

use crate::types::{RecoveryGap, StreamPosition, Subscribed};

/// How an incoming event relates to the last one delivered on its channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next event: same epoch, seq exactly one more. Hand it to the application.
    Deliver,
    /// Same epoch, seq at or below the last delivered: already handed over (or skipped over
    /// after a gap). Drop it (FERRY-EVENT-3).
    Duplicate,
    /// Same epoch, but events between the last delivered and this one are missing. Tell the
    /// application that its view is incomplete; the event itself is new (FERRY-EVENT-4).
    Gap {
        /// The seq that should have come next.
        expected: u64,
        /// The seq that came.
        got: u64,
    },
    /// The event belongs to another epoch: the channel's history was reset and no recovery
    /// reply announced it. Tell the application that its view is incomplete (FERRY-EVENT-4).
    EpochChanged,
}

impl Arrival {
    /// Whether the event is new and goes to the application (every arrival but `Duplicate`).
    pub fn is_new(&self) -> bool {
        !matches!(self, Arrival::Duplicate)
    }

    /// Whether the application must be told that its view of the channel is incomplete
    /// (`Gap` or `EpochChanged`).
    pub fn is_incomplete(&self) -> bool {
        matches!(self, Arrival::Gap { .. } | Arrival::EpochChanged)
    }
}

/// Classifies an event at `incoming` against `last`, the position of the last event delivered
/// on its channel (see the [module](self) table).
pub fn classify(last: &StreamPosition, incoming: &StreamPosition) -> Arrival {
    if incoming.epoch != last.epoch {
        return Arrival::EpochChanged;
    }
    let last = last.seq.get();
    let got = incoming.seq.get();
    if got <= last {
        Arrival::Duplicate
    } else if got == last + 1 {
        Arrival::Deliver
    } else {
        Arrival::Gap {
            expected: last + 1,
            got,
        }
    }
}

/// What a `subscribed` reply says about the events missed before it (FERRY-RESUME-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resumption {
    /// A first subscribe (no `from`): live events follow the reply's position.
    Fresh,
    /// Every missed event is replayed, `replayed` of them, before any live event.
    Complete {
        /// How many events the server replays.
        replayed: u64,
    },
    /// Nothing is replayed: the application must refetch its state (for example through the
    /// history endpoint) before trusting the stream.
    Incomplete(RecoveryGap),
    /// The subscribe carried `from` but the reply says nothing about recovery, which a server
    /// must not do. The tracker keeps `from`, so any event the server does not replay shows up
    /// as a [`Arrival::Gap`] or [`Arrival::EpochChanged`] rather than being skipped silently.
    Unreported,
}

impl Resumption {
    /// Whether the application must be told that it missed events for good (FERRY-RESUME-4).
    pub fn is_incomplete(&self) -> bool {
        matches!(self, Resumption::Incomplete(_))
    }
}

/// The position of the last event a client delivered on one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct PositionTracker {
    last: StreamPosition,
}

impl PositionTracker {
    /// A tracker whose last delivered position is `last`.
    pub fn new(last: StreamPosition) -> Self {
        Self { last }
    }

    /// The tracker right after a `subscribed` reply to a subscribe that carried `from`
    /// (`None` on a first subscribe), and what the reply says about missed events.
    ///
    /// The reply's `position` is the channel's head (FERRY-SUBSCRIBE-2): replayed events lead
    /// up to it and live events follow it. So the tracker starts at `from` when the recovery is
    /// complete (the replayed events are then delivered one by one) and at the head otherwise.
    pub fn after_subscribed(
        from: Option<&StreamPosition>,
        reply: &Subscribed,
    ) -> (Self, Resumption) {
        let head = || Self::new(reply.position.clone());
        let Some(from) = from else {
            return (head(), Resumption::Fresh);
        };
        match &reply.recovery {
            Some(recovery) if recovery.complete => (
                Self::new(from.clone()),
                Resumption::Complete {
                    replayed: recovery.replayed.get(),
                },
            ),
            // `reason` is required when the recovery is incomplete; a reply that omits it still
            // replays nothing, and history_exceeded is what the application must assume.
            Some(recovery) => (
                head(),
                Resumption::Incomplete(recovery.reason.unwrap_or(RecoveryGap::HistoryExceeded)),
            ),
            None => (Self::new(from.clone()), Resumption::Unreported),
        }
    }

    /// The position of the last event delivered: the `from` of the next re-subscribe
    /// (FERRY-SUBSCRIBE-5).
    pub fn last(&self) -> &StreamPosition {
        &self.last
    }

    /// Classifies an event at `incoming` without moving the tracker.
    pub fn classify(&self, incoming: &StreamPosition) -> Arrival {
        classify(&self.last, incoming)
    }

    /// Classifies an event at `incoming` and, unless it is a duplicate, records it as the last
    /// delivered: the caller hands every event whose arrival [`is_new`](Arrival::is_new) to the
    /// application, after saying that the view is incomplete when it
    /// [`is_incomplete`](Arrival::is_incomplete). So no event is handed over twice.
    pub fn observe(&mut self, incoming: &StreamPosition) -> Arrival {
        let arrival = self.classify(incoming);
        if arrival.is_new() {
            self.last = incoming.clone();
        }
        arrival
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::bounded::UInt;
    use crate::types::{ChannelName, Epoch, Recovery, RequestId, Seq};

    fn pos(epoch: &str, seq: u64) -> StreamPosition {
        StreamPosition {
            epoch: Epoch::try_from(epoch).expect("a valid epoch"),
            seq: Seq(UInt::new(seq).expect("a valid seq")),
        }
    }

    fn subscribed(head: StreamPosition, recovery: Option<Recovery>) -> Subscribed {
        Subscribed {
            hold: None,
            channel: ChannelName::try_from("project:alpha:tasks").expect("a valid channel"),
            id: RequestId::try_from("r1").expect("a valid request id"),
            position: head,
            recovery,
        }
    }

    fn recovery(complete: bool, replayed: u64, reason: Option<RecoveryGap>) -> Recovery {
        Recovery {
            complete,
            replayed: UInt::new(replayed).expect("a valid count"),
            reason,
        }
    }

    #[test]
    fn the_next_seq_in_the_same_epoch_is_delivered() {
        assert_eq!(classify(&pos("e1", 4), &pos("e1", 5)), Arrival::Deliver);
        assert_eq!(classify(&pos("e1", 0), &pos("e1", 1)), Arrival::Deliver);
    }

    #[test]
    fn a_seq_at_or_below_the_last_delivered_is_a_duplicate() {
        assert_eq!(classify(&pos("e1", 4), &pos("e1", 4)), Arrival::Duplicate);
        assert_eq!(classify(&pos("e1", 4), &pos("e1", 1)), Arrival::Duplicate);
        assert_eq!(classify(&pos("e1", 0), &pos("e1", 0)), Arrival::Duplicate);
    }

    #[test]
    fn a_seq_beyond_the_next_is_a_gap_naming_what_was_expected() {
        assert_eq!(
            classify(&pos("e1", 4), &pos("e1", 9)),
            Arrival::Gap {
                expected: 5,
                got: 9
            }
        );
    }

    #[test]
    fn only_a_gap_or_an_epoch_change_leaves_the_view_incomplete() {
        let gap = classify(&pos("e1", 4), &pos("e1", 9));
        let epoch = classify(&pos("e1", 4), &pos("e2", 5));
        let next = classify(&pos("e1", 4), &pos("e1", 5));
        let again = classify(&pos("e1", 4), &pos("e1", 4));
        assert!(gap.is_incomplete() && epoch.is_incomplete());
        assert!(!next.is_incomplete() && !again.is_incomplete());
        assert!(gap.is_new() && epoch.is_new() && next.is_new() && !again.is_new());
    }

    #[test]
    fn another_epoch_is_an_epoch_change_whatever_its_seq() {
        for seq in [0, 1, 4, 5, 100] {
            assert_eq!(
                classify(&pos("e1", 4), &pos("e2", seq)),
                Arrival::EpochChanged
            );
        }
    }

    #[test]
    fn observe_moves_on_every_new_event_but_not_on_duplicates() {
        let mut tracker = PositionTracker::new(pos("e1", 4));
        assert_eq!(tracker.observe(&pos("e1", 5)), Arrival::Deliver);
        assert_eq!(tracker.observe(&pos("e1", 5)), Arrival::Duplicate);
        assert_eq!(
            tracker.observe(&pos("e1", 8)),
            Arrival::Gap {
                expected: 6,
                got: 8
            }
        );
        assert_eq!(tracker.last(), &pos("e1", 8));
        // An event of the gap arriving late is not after the last delivered: dropped.
        assert_eq!(tracker.observe(&pos("e1", 7)), Arrival::Duplicate);
        assert_eq!(tracker.observe(&pos("e2", 1)), Arrival::EpochChanged);
        assert_eq!(tracker.observe(&pos("e2", 2)), Arrival::Deliver);
        assert_eq!(tracker.last(), &pos("e2", 2));
    }

    #[test]
    fn a_first_subscribe_starts_at_the_head() {
        let reply = subscribed(pos("e1", 42), None);
        let (mut tracker, resumption) = PositionTracker::after_subscribed(None, &reply);
        assert_eq!(resumption, Resumption::Fresh);
        assert_eq!(tracker.last(), &pos("e1", 42));
        assert_eq!(tracker.observe(&pos("e1", 42)), Arrival::Duplicate);
        assert_eq!(tracker.observe(&pos("e1", 43)), Arrival::Deliver);
    }

    #[test]
    fn a_complete_recovery_delivers_the_replay_then_live_events() {
        let reply = subscribed(pos("e1", 10), Some(recovery(true, 3, None)));
        let from = pos("e1", 7);
        let (mut tracker, resumption) = PositionTracker::after_subscribed(Some(&from), &reply);
        assert_eq!(resumption, Resumption::Complete { replayed: 3 });
        assert!(!resumption.is_incomplete());
        for seq in 8..=12 {
            assert_eq!(
                tracker.observe(&pos("e1", seq)),
                Arrival::Deliver,
                "seq {seq}"
            );
        }
    }

    #[test]
    fn an_incomplete_recovery_says_why_and_starts_at_the_head() {
        for reason in [
            RecoveryGap::HistoryExceeded,
            RecoveryGap::EpochChanged,
            RecoveryGap::PositionAhead,
        ] {
            let reply = subscribed(pos("e2", 10), Some(recovery(false, 0, Some(reason))));
            let from = pos("e1", 7);
            let (mut tracker, resumption) = PositionTracker::after_subscribed(Some(&from), &reply);
            assert_eq!(resumption, Resumption::Incomplete(reason));
            assert!(resumption.is_incomplete());
            assert_eq!(tracker.last(), &pos("e2", 10));
            assert_eq!(tracker.observe(&pos("e2", 11)), Arrival::Deliver);
        }
    }

    #[test]
    fn a_recovery_the_reply_does_not_report_cannot_hide_a_gap() {
        let reply = subscribed(pos("e1", 10), None);
        let from = pos("e1", 7);
        let (mut tracker, resumption) = PositionTracker::after_subscribed(Some(&from), &reply);
        assert_eq!(resumption, Resumption::Unreported);
        // The server replays nothing and goes on live: the missing 8..=10 show up as a gap.
        assert_eq!(
            tracker.observe(&pos("e1", 11)),
            Arrival::Gap {
                expected: 8,
                got: 11
            }
        );
    }

    proptest! {
        #[test]
        fn no_seq_is_handed_over_twice_and_no_gap_is_silent(
            start in 0u64..5,
            seqs in proptest::collection::vec(0u64..40, 0..120),
        ) {
            let mut tracker = PositionTracker::new(pos("e1", start));
            let mut handed_over = vec![start];
            for seq in seqs {
                let before = tracker.last().seq.get();
                let arrival = tracker.observe(&pos("e1", seq));
                match arrival {
                    Arrival::Deliver => prop_assert_eq!(seq, before + 1),
                    Arrival::Duplicate => prop_assert!(seq <= before),
                    Arrival::Gap { expected, got } => {
                        prop_assert_eq!(expected, before + 1);
                        prop_assert_eq!(got, seq);
                        prop_assert!(seq > before + 1);
                    }
                    Arrival::EpochChanged => prop_assert!(false, "one epoch only"),
                }
                if arrival.is_new() {
                    handed_over.push(seq);
                }
            }
            // Strictly increasing: nothing handed over twice, and every step that skipped
            // seqs was reported as a gap above.
            prop_assert!(handed_over.windows(2).all(|pair| pair[0] < pair[1]));
        }

        #[test]
        fn an_in_order_stream_with_repeats_delivers_every_event_once(
            count in 0u64..60,
            repeats in proptest::collection::vec(0usize..3, 60),
        ) {
            let mut tracker = PositionTracker::new(pos("e1", 0));
            let mut delivered = Vec::new();
            for seq in 1..=count {
                // Each event may come again, together with any earlier one (a replay overlap).
                let copies = 1 + repeats[usize::try_from(seq).expect("small")];
                for copy in 0..copies {
                    let again = seq.saturating_sub(u64::try_from(copy).expect("small"));
                    match tracker.observe(&pos("e1", again)) {
                        Arrival::Deliver => delivered.push(again),
                        Arrival::Duplicate => {}
                        other => prop_assert!(false, "{other:?} for seq {again}"),
                    }
                }
            }
            prop_assert_eq!(delivered, (1..=count).collect::<Vec<_>>());
        }
    }
}
