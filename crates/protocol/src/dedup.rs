//! The dedup window: idempotency keys remembered with their original acknowledgement
//! (FERRY-DEDUP-1, FERRY-DEDUP-2).
//!
//! A server keeps one [`DedupWindow`] per channel (or one keyed by channel and key). When a
//! publish arrives, [`DedupWindow::check`] says whether its key was accepted within the window;
//! if so the server answers again with the acknowledgement it stored (the original message id
//! and position, `duplicate: true`) and stores and delivers nothing. Otherwise it stores the
//! event and [`DedupWindow::insert`]s the key with the new acknowledgement.
//!
//! The window is bounded both by age and by count: an entry is forgotten once it is older than
//! the window, or when more than `capacity` entries are held, oldest first. FERRY-DEDUP-2 asks
//! for an age of at least the resume window; the count bound is the server's own memory limit.
//! Every operation is O(1) amortised.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use crate::time::Timestamp;

/// Idempotency keys and their original acknowledgements, remembered for at most `window` and
/// at most `capacity` entries.
///
/// An entry inserted at `t` is remembered at time `now` while `now − t <= window`. Time is
/// handed in by the caller and must not go backwards; a time earlier than one seen before is
/// treated as that earlier-seen time standing still.
#[derive(Debug, Clone)]
pub struct DedupWindow<K, V> {
    capacity: usize,
    window: Duration,
    entries: HashMap<K, Entry<V>>,
    /// Keys in insertion order, with the stamp of the insertion they record. A key inserted
    /// again leaves a stale slot behind (its stamp no longer matches the entry); stale slots
    /// are skipped when they reach the front and swept when they outnumber the live ones.
    order: VecDeque<Slot<K>>,
    next_stamp: u64,
    latest: Timestamp,
}

#[derive(Debug, Clone)]
struct Entry<V> {
    value: V,
    stamp: u64,
}

#[derive(Debug, Clone)]
struct Slot<K> {
    at: Timestamp,
    stamp: u64,
    key: K,
}

impl<K: Eq + Hash + Clone, V> DedupWindow<K, V> {
    /// An empty window remembering at most `capacity` keys, each for at most `window`.
    pub fn new(capacity: usize, window: Duration) -> Self {
        Self {
            capacity,
            window,
            entries: HashMap::new(),
            order: VecDeque::new(),
            next_stamp: 0,
            latest: Timestamp::ZERO,
        }
    }

    /// The most keys remembered at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How long a key is remembered.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// How many keys are held, as of the latest time handed in.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is held, as of the latest time handed in.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The acknowledgement stored for `key` if it was inserted within the window at `now`:
    /// the publish is a duplicate and must be answered with it (FERRY-DEDUP-1).
    pub fn check<Q>(&mut self, key: &Q, now: Timestamp) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.expire(now);
        self.entries.get(key).map(|entry| &entry.value)
    }

    /// Remembers `key` with its acknowledgement `value`, inserted at `now`. A key already held
    /// is replaced and counts as inserted at `now`; its previous value is returned. If the
    /// window then holds more than `capacity` keys, the oldest are forgotten.
    pub fn insert(&mut self, key: K, value: V, now: Timestamp) -> Option<V> {
        self.expire(now);
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        let previous = self
            .entries
            .insert(key.clone(), Entry { value, stamp })
            .map(|entry| entry.value);
        self.order.push_back(Slot {
            at: self.latest,
            stamp,
            key,
        });
        while self.entries.len() > self.capacity {
            if self.pop_front().is_none() {
                break;
            }
        }
        self.sweep_stale_slots();
        previous
    }

    /// Forgets every key older than the window at `now`. [`check`](Self::check) and
    /// [`insert`](Self::insert) do this themselves; call it to release memory while idle.
    pub fn expire(&mut self, now: Timestamp) {
        self.latest = self.latest.max(now);
        while let Some(front) = self.order.front() {
            if self.is_live(front) && self.latest.saturating_since(front.at) <= self.window {
                break;
            }
            self.pop_front();
        }
        self.sweep_stale_slots();
    }

    fn is_live(&self, slot: &Slot<K>) -> bool {
        self.entries
            .get(&slot.key)
            .is_some_and(|entry| entry.stamp == slot.stamp)
    }

    /// Removes the front slot and, if it was live, its entry. Returns the slot.
    fn pop_front(&mut self) -> Option<Slot<K>> {
        let slot = self.order.pop_front()?;
        if self.is_live(&slot) {
            self.entries.remove(&slot.key);
        }
        Some(slot)
    }

    /// Drops stale slots once they outnumber the live ones, so memory stays proportional to
    /// the keys held even when one key is inserted again and again. Each sweep is paid for by
    /// the insertions that made the slots stale.
    fn sweep_stale_slots(&mut self) {
        if self.order.len() > 2 * self.entries.len() + 16 {
            let entries = &self.entries;
            self.order.retain(|slot| {
                entries
                    .get(&slot.key)
                    .is_some_and(|entry| entry.stamp == slot.stamp)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn a_repeated_key_within_the_window_gets_the_original_acknowledgement() {
        let mut window = DedupWindow::new(100, Duration::from_secs(120));
        assert_eq!(window.check("k1", at(0)), None);
        window.insert("k1".to_string(), 7u64, at(0));
        assert_eq!(window.check("k1", at(60_000)), Some(&7));
        assert_eq!(window.check("k1", at(120_000)), Some(&7));
        assert_eq!(window.check("k2", at(120_000)), None);
    }

    #[test]
    fn a_key_older_than_the_window_is_forgotten() {
        let mut window = DedupWindow::new(100, Duration::from_secs(120));
        window.insert("k1", 1, at(1000));
        assert_eq!(window.check("k1", at(121_000)), Some(&1));
        assert_eq!(window.check("k1", at(121_001)), None);
        assert!(window.is_empty());
    }

    #[test]
    fn beyond_the_capacity_the_oldest_key_is_forgotten() {
        let mut window = DedupWindow::new(2, Duration::from_secs(120));
        window.insert("a", 1, at(0));
        window.insert("b", 2, at(1));
        window.insert("c", 3, at(2));
        assert_eq!(window.len(), 2);
        assert_eq!(window.check("a", at(2)), None);
        assert_eq!(window.check("b", at(2)), Some(&2));
        assert_eq!(window.check("c", at(2)), Some(&3));
    }

    #[test]
    fn reinserting_a_key_replaces_it_and_makes_it_the_newest() {
        let mut window = DedupWindow::new(2, Duration::from_millis(100));
        window.insert("a", 1, at(0));
        window.insert("b", 2, at(10));
        assert_eq!(window.insert("a", 3, at(50)), Some(1));
        // "b" is now the oldest: a third key evicts it, not "a".
        window.insert("c", 4, at(60));
        assert_eq!(window.check("b", at(60)), None);
        assert_eq!(window.check("a", at(60)), Some(&3));
        // "a" ages from its second insertion.
        assert_eq!(window.check("a", at(150)), Some(&3));
        assert_eq!(window.check("a", at(151)), None);
    }

    #[test]
    fn reinserting_one_key_keeps_memory_bounded() {
        let mut window = DedupWindow::new(1000, Duration::from_secs(120));
        for value in 0..10_000u32 {
            window.insert("same", value, at(u64::from(value)));
        }
        assert_eq!(window.len(), 1);
        assert!(window.order.len() <= 2 * window.len() + 17);
        assert_eq!(window.check("same", at(10_000)), Some(&9_999));
    }

    #[test]
    fn stale_slots_behind_a_live_key_are_swept_and_the_live_key_still_expires() {
        let mut window = DedupWindow::new(1000, Duration::from_secs(120));
        assert_eq!(window.capacity(), 1000);
        assert_eq!(window.window(), Duration::from_secs(120));
        // The oldest key stays live at the front, so the slots that reinsertion leaves
        // behind it cannot be popped; only a sweep bounds them.
        window.insert("anchor", 0, at(0));
        for value in 1..=10_000u32 {
            window.insert("churn", value, at(1));
        }
        assert_eq!(window.len(), 2);
        assert!(!window.is_empty());
        assert!(
            window.order.len() <= 2 * window.len() + 17,
            "{} slots for 2 keys",
            window.order.len()
        );
        // The sweep kept each key's live slot, so both still age out on time.
        assert_eq!(window.check("anchor", at(120_000)), Some(&0));
        assert_eq!(window.check("anchor", at(120_001)), None);
        assert_eq!(window.check("churn", at(120_001)), Some(&10_000));
        assert_eq!(window.check("churn", at(120_002)), None);
        assert!(window.is_empty());
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let mut window = DedupWindow::new(0, Duration::from_secs(120));
        window.insert("a", 1, at(0));
        assert_eq!(window.check("a", at(0)), None);
        assert!(window.is_empty());
    }

    #[test]
    fn time_going_backwards_neither_expires_nor_panics() {
        let mut window = DedupWindow::new(10, Duration::from_millis(100));
        window.insert("a", 1, at(1000));
        assert_eq!(window.check("a", at(0)), Some(&1));
        window.insert("b", 2, at(500));
        // "b" counts as inserted at 1000, the latest time seen.
        assert_eq!(window.check("b", at(1100)), Some(&2));
        assert_eq!(window.check("b", at(1101)), None);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u32),
        Check(u8),
        Expire,
    }

    fn op() -> impl Strategy<Value = (u64, Op)> {
        (
            prop_oneof![3 => Just(0u64), 5 => 0u64..40, 1 => 0u64..400],
            prop_oneof![
                4 => (0u8..12, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
                4 => (0u8..12).prop_map(Op::Check),
                1 => Just(Op::Expire),
            ],
        )
    }

    /// The reference model: every entry in a list, in insertion order.
    #[derive(Default)]
    struct Model {
        entries: Vec<(u8, u32, u64)>,
    }

    impl Model {
        fn expire(&mut self, now: u64, window: u64) {
            self.entries.retain(|&(_, _, at)| now - at <= window);
        }
    }

    proptest! {
        #[test]
        fn window_behaves_like_a_list_bounded_by_age_and_count(
            capacity in 0usize..8,
            window_ms in 0u64..200,
            ops in proptest::collection::vec(op(), 0..200),
        ) {
            let mut window = DedupWindow::new(capacity, Duration::from_millis(window_ms));
            let mut model = Model::default();
            let mut now = 0u64;
            for (advance, op) in ops {
                now += advance;
                model.expire(now, window_ms);
                match op {
                    Op::Insert(key, value) => {
                        let previous = model.entries.iter().position(|e| e.0 == key)
                            .map(|i| model.entries.remove(i).1);
                        model.entries.push((key, value, now));
                        while model.entries.len() > capacity {
                            model.entries.remove(0);
                        }
                        prop_assert_eq!(window.insert(key, value, at(now)), previous);
                    }
                    Op::Check(key) => {
                        let expected = model.entries.iter().find(|e| e.0 == key).map(|e| e.1);
                        prop_assert_eq!(window.check(&key, at(now)).copied(), expected);
                    }
                    Op::Expire => window.expire(at(now)),
                }
                prop_assert_eq!(window.len(), model.entries.len());
                prop_assert!(window.order.len() <= 2 * window.len() + 17);
            }
        }
    }
}
