//! The token bucket that meters a session's inbound frames (FERRY-RATE-1), and the buckets per
//! caller that meter a server's HTTP endpoints (FERRY-RATE-4).
//!
//! The bucket holds at most `burst` tokens and refills at `messages_per_second`; each frame
//! takes one token, and a frame that finds less than one token is refused with a
//! `rate_limited` error whose `retry_after_ms` is the time until the next token.
//!
//! The arithmetic is exact: tokens are counted in thousandths, so a refill rate of
//! `messages_per_second` tokens per second is exactly `messages_per_second` thousandths per
//! millisecond, and time is whole milliseconds ([`Timestamp`]). No floating point, no drift.
//! A full bucket holds `burst × 1000` thousandths; a bucket starts full.
//!
//! [`CallerBuckets`] holds one such bucket per caller (a key: the user a credential names), so
//! that one caller's requests never take another's tokens. It remembers only the buckets that
//! are not full: a full bucket answers exactly as a new one would, so forgetting it changes no
//! answer, and what is held is bounded by the callers active within the last `burst / rate`
//! seconds, not by every caller ever seen.

use std::collections::HashMap;
use std::hash::Hash;
use std::num::NonZeroU64;
use std::time::Duration;

use crate::time::Timestamp;
use crate::types::RateLimit;

/// Thousandths of a token in one token.
const MILLI: u64 = 1000;

/// A token bucket on one session's inbound frames (FERRY-RATE-1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    /// Tokens per second, which is thousandths of a token per millisecond.
    per_second: u64,
    burst: u64,
    /// Thousandths of a token held at `updated`.
    tokens: u64,
    updated: Timestamp,
}

impl TokenBucket {
    /// A full bucket at `now` that holds `burst` tokens and refills at `messages_per_second`.
    pub fn new(messages_per_second: NonZeroU64, burst: NonZeroU64, now: Timestamp) -> Self {
        let burst = burst.get();
        Self {
            per_second: messages_per_second.get(),
            burst,
            tokens: burst.saturating_mul(MILLI),
            updated: now,
        }
    }

    /// A full bucket at `now` for the rate limit a welcome advertises.
    pub fn from_limit(limit: &RateLimit, now: Timestamp) -> Self {
        // The schema bounds both values to at least 1.
        let at_least_one = |value: u64| NonZeroU64::new(value).unwrap_or(NonZeroU64::MIN);
        Self::new(
            at_least_one(limit.messages_per_second.get()),
            at_least_one(limit.burst.get()),
            now,
        )
    }

    /// The refill rate, in tokens per second.
    pub fn messages_per_second(&self) -> u64 {
        self.per_second
    }

    /// The bucket's capacity, in tokens.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// How many whole tokens the bucket holds at `now`.
    pub fn available(&self, now: Timestamp) -> u64 {
        self.tokens_at(now) / MILLI
    }

    /// Takes one token for a frame arriving at `now`. When the bucket holds less than one,
    /// nothing is taken and the error is how long until it holds one: the frame's
    /// `retry_after_ms` (at least 1 ms). A time earlier than one seen before refills nothing.
    pub fn try_take(&mut self, now: Timestamp) -> Result<(), Duration> {
        self.tokens = self.tokens_at(now);
        self.updated = self.updated.max(now);
        if self.tokens >= MILLI {
            self.tokens -= MILLI;
            return Ok(());
        }
        let missing = MILLI - self.tokens;
        Err(Duration::from_millis(missing.div_ceil(self.per_second)))
    }

    /// Thousandths of a token held at `now`: the stored amount plus the refill since, capped
    /// at the capacity.
    fn tokens_at(&self, now: Timestamp) -> u64 {
        let elapsed = now.as_millis().saturating_sub(self.updated.as_millis());
        let capacity = self.burst.saturating_mul(MILLI);
        self.tokens
            .saturating_add(elapsed.saturating_mul(self.per_second))
            .min(capacity)
    }
}

/// The fewest buckets a [`CallerBuckets`] holds before it first forgets the full ones.
const SWEEP_FLOOR: usize = 64;

/// One [`TokenBucket`] per caller, all with the same rate and burst (FERRY-RATE-4).
///
/// Holds about twice the number of callers whose bucket is not full, and at least 64 before
/// it first sweeps: when a new caller would pass the mark, the full buckets are forgotten
/// first (in time linear in what is held, once per doubling, so amortised constant).
#[derive(Debug, Clone)]
pub struct CallerBuckets<K> {
    per_second: NonZeroU64,
    burst: NonZeroU64,
    buckets: HashMap<K, TokenBucket>,
    /// The size at which the full buckets are forgotten before a new caller is added.
    sweep_at: usize,
}

impl<K: Eq + Hash + Clone> CallerBuckets<K> {
    /// No caller yet; each caller's bucket starts full, holds `burst` tokens and refills at
    /// `per_second`.
    pub fn new(per_second: NonZeroU64, burst: NonZeroU64) -> Self {
        Self {
            per_second,
            burst,
            buckets: HashMap::new(),
            sweep_at: SWEEP_FLOOR,
        }
    }

    /// The refill rate of each caller's bucket, in tokens per second.
    pub fn per_second(&self) -> u64 {
        self.per_second.get()
    }

    /// The capacity of each caller's bucket, in tokens.
    pub fn burst(&self) -> u64 {
        self.burst.get()
    }

    /// Takes one of `caller`'s tokens for a request at `now`, as [`TokenBucket::try_take`]
    /// does: the error is how long until the caller's bucket holds a token again.
    pub fn try_take(&mut self, caller: &K, now: Timestamp) -> Result<(), Duration> {
        if let Some(bucket) = self.buckets.get_mut(caller) {
            return bucket.try_take(now);
        }
        if self.buckets.len() >= self.sweep_at {
            self.forget_full(now);
            self.sweep_at = (self.buckets.len() * 2).max(SWEEP_FLOOR);
        }
        let mut bucket = TokenBucket::new(self.per_second, self.burst, now);
        let taken = bucket.try_take(now);
        self.buckets.insert(caller.clone(), bucket);
        taken
    }

    /// Forgets every bucket that is full at `now`; a caller seen again starts with a full
    /// bucket, which is what it held.
    pub fn forget_full(&mut self, now: Timestamp) {
        let burst = self.burst.get();
        self.buckets
            .retain(|_, bucket| bucket.available(now) < burst);
    }

    /// How many callers' buckets are held.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no caller's bucket is held.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::bounded::UInt;
    use crate::tables::defaults;

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn bucket(per_second: u64, burst: u64, now: u64) -> TokenBucket {
        TokenBucket::new(
            NonZeroU64::new(per_second).expect("a positive rate"),
            NonZeroU64::new(burst).expect("a positive burst"),
            at(now),
        )
    }

    fn default_bucket(now: u64) -> TokenBucket {
        let limit = RateLimit {
            messages_per_second: UInt::new(defaults::RATE_LIMIT_MESSAGES_PER_SECOND)
                .expect("the default is within bounds"),
            burst: UInt::new(defaults::RATE_LIMIT_BURST).expect("the default is within bounds"),
        };
        TokenBucket::from_limit(&limit, at(now))
    }

    #[test]
    fn a_full_burst_is_accepted_at_once_and_the_next_frame_waits_for_a_token() {
        // The defaults: 10 frames per second, bursts of 20.
        let mut bucket = default_bucket(0);
        assert_eq!(bucket.available(at(0)), 20);
        for frame in 0..20 {
            assert_eq!(bucket.try_take(at(0)), Ok(()), "frame {frame}");
        }
        assert_eq!(bucket.try_take(at(0)), Err(Duration::from_millis(100)));
        assert_eq!(bucket.try_take(at(60)), Err(Duration::from_millis(40)));
        assert_eq!(bucket.try_take(at(100)), Ok(()));
        assert_eq!(bucket.try_take(at(100)), Err(Duration::from_millis(100)));
    }

    #[test]
    fn the_bucket_refills_to_its_burst_and_no_further() {
        let mut bucket = default_bucket(0);
        for _ in 0..20 {
            bucket.try_take(at(0)).expect("within the burst");
        }
        assert_eq!(bucket.available(at(1000)), 10);
        assert_eq!(bucket.available(at(2000)), 20);
        assert_eq!(bucket.available(at(1_000_000)), 20);
    }

    #[test]
    fn fractional_rates_accumulate_without_drift() {
        // 3 frames per second: a token every 333⅓ ms, so 3 tokens in exactly 1000 ms. (A
        // burst of 2 keeps the capacity from clipping the fractions in between.)
        let mut bucket = bucket(3, 2, 0);
        bucket.try_take(at(0)).expect("a full bucket");
        bucket.try_take(at(0)).expect("a full bucket");
        assert_eq!(bucket.try_take(at(0)), Err(Duration::from_millis(334)));
        assert_eq!(bucket.try_take(at(333)), Err(Duration::from_millis(1)));
        assert_eq!(bucket.try_take(at(334)), Ok(()));
        assert_eq!(bucket.try_take(at(666)), Err(Duration::from_millis(1)));
        assert_eq!(bucket.try_take(at(667)), Ok(()));
        assert_eq!(bucket.try_take(at(1000)), Ok(()));
        assert_eq!(bucket.try_take(at(1000)), Err(Duration::from_millis(334)));
    }

    #[test]
    fn a_full_bucket_does_not_bank_fractions_beyond_its_capacity() {
        let mut bucket = bucket(3, 1, 0);
        bucket.try_take(at(0)).expect("a full bucket");
        // At 334 the bucket would hold 1.002 tokens but holds at most 1: after the take, 0.
        assert_eq!(bucket.try_take(at(334)), Ok(()));
        assert_eq!(bucket.try_take(at(666)), Err(Duration::from_millis(2)));
    }

    #[test]
    fn a_fast_rate_waits_at_least_a_millisecond() {
        let mut bucket = bucket(1_000_000, 1, 0);
        bucket.try_take(at(0)).expect("a full bucket");
        assert_eq!(bucket.try_take(at(0)), Err(Duration::from_millis(1)));
        assert_eq!(bucket.try_take(at(1)), Ok(()));
    }

    #[test]
    fn time_going_backwards_refills_nothing() {
        let mut bucket = bucket(10, 1, 1000);
        bucket.try_take(at(1000)).expect("a full bucket");
        assert_eq!(bucket.try_take(at(0)), Err(Duration::from_millis(100)));
        assert_eq!(bucket.try_take(at(1099)), Err(Duration::from_millis(1)));
        assert_eq!(bucket.try_take(at(1100)), Ok(()));
    }

    #[test]
    fn huge_limits_do_not_overflow() {
        let mut bucket = bucket(u64::MAX, u64::MAX, 0);
        assert_eq!(bucket.try_take(at(u64::MAX)), Ok(()));
        assert!(bucket.available(at(u64::MAX)) > 0);
    }

    fn callers(per_second: u64, burst: u64) -> CallerBuckets<u32> {
        CallerBuckets::new(
            NonZeroU64::new(per_second).expect("a positive rate"),
            NonZeroU64::new(burst).expect("a positive burst"),
        )
    }

    #[test]
    fn one_caller_emptying_its_bucket_leaves_another_callers_untouched() {
        let mut buckets = callers(5, 3);
        for request in 0..3 {
            assert_eq!(buckets.try_take(&1, at(0)), Ok(()), "request {request}");
        }
        assert_eq!(buckets.try_take(&1, at(0)), Err(Duration::from_millis(200)));
        for request in 0..3 {
            assert_eq!(buckets.try_take(&2, at(0)), Ok(()), "request {request}");
        }
        assert_eq!(buckets.try_take(&1, at(200)), Ok(()));
    }

    #[test]
    fn full_buckets_are_forgotten_and_busy_ones_kept() {
        let mut buckets = callers(10, 2);
        // Caller 0 empties its bucket; a thousand others take one token each.
        buckets.try_take(&0, at(0)).expect("a full bucket");
        buckets.try_take(&0, at(0)).expect("a full bucket");
        for caller in 1..1000 {
            buckets.try_take(&caller, at(0)).expect("a full bucket");
        }
        // One second later every bucket is full again but caller 0's answer is unchanged
        // whether it was forgotten or not; a sweep keeps the map near the busy callers.
        for caller in 1000..1100 {
            buckets.try_take(&caller, at(1000)).expect("a full bucket");
        }
        assert!(buckets.len() < 300, "{} buckets held", buckets.len());
        assert_eq!(buckets.try_take(&0, at(1000)), Ok(()));
        assert_eq!(buckets.try_take(&0, at(1000)), Ok(()));
        assert_eq!(
            buckets.try_take(&0, at(1000)),
            Err(Duration::from_millis(100))
        );
    }

    #[test]
    fn a_sweep_forgets_the_full_buckets_and_only_those() {
        let mut buckets = callers(10, 2);
        assert!(buckets.is_empty());
        assert_eq!((buckets.per_second(), buckets.burst()), (10, 2));
        // Caller 0 empties its bucket, then 200 more callers in the same millisecond take one
        // token each: the map passes its sweep marks (64 and 128) with no bucket full.
        buckets.try_take(&0, at(0)).expect("a full bucket");
        buckets.try_take(&0, at(0)).expect("a full bucket");
        for caller in 1..=200 {
            buckets.try_take(&caller, at(0)).expect("a full bucket");
        }
        assert_eq!(
            buckets.len(),
            201,
            "no bucket was full, so none was forgotten"
        );
        assert!(!buckets.is_empty());
        assert_eq!(
            buckets.try_take(&0, at(0)),
            Err(Duration::from_millis(100)),
            "caller 0's empty bucket was kept"
        );
        // A second later those 201 buckets are full again, and 55 new callers take a token
        // each; the caller that reaches the next mark (256) sweeps away the 201 full ones and
        // keeps the 55 that are not.
        for caller in 201..=255 {
            buckets.try_take(&caller, at(1000)).expect("a full bucket");
        }
        assert_eq!(buckets.len(), 256);
        buckets.try_take(&256, at(1000)).expect("a full bucket");
        assert_eq!(buckets.len(), 56);
        assert_eq!(
            buckets.try_take(&0, at(1000)),
            Ok(()),
            "caller 0 starts full again"
        );
    }

    #[test]
    fn a_bucket_reports_its_rate_and_burst() {
        let bucket = bucket(7, 3, 0);
        assert_eq!((bucket.messages_per_second(), bucket.burst()), (7, 3));
    }

    /// Frame arrival times: non-decreasing, often several in the same millisecond.
    fn arrivals() -> impl Strategy<Value = Vec<u64>> {
        proptest::collection::vec(
            prop_oneof![3 => Just(0u64), 3 => 0u64..50, 1 => 0u64..2000],
            0..150,
        )
        .prop_map(|gaps| {
            gaps.iter()
                .scan(0u64, |now, gap| {
                    *now += gap;
                    Some(*now)
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn accepted_frames_never_exceed_burst_plus_rate_times_elapsed(
            per_second in 1u64..100,
            burst in 1u64..40,
            times in arrivals(),
        ) {
            let mut bucket = bucket(per_second, burst, 0);
            let accepted: Vec<u64> = times
                .iter()
                .copied()
                .filter(|&now| bucket.try_take(at(now)).is_ok())
                .collect();
            // Over every window [accepted[i], accepted[j]]: j − i + 1 frames.
            for i in 0..accepted.len() {
                for j in i..accepted.len() {
                    let frames = (j - i + 1) as u64;
                    let elapsed_ms = accepted[j] - accepted[i];
                    prop_assert!(
                        frames * 1000 <= burst * 1000 + per_second * elapsed_ms,
                        "{} frames in {} ms", frames, elapsed_ms
                    );
                }
            }
        }

        #[test]
        fn after_a_quiet_period_of_burst_over_rate_a_full_burst_is_accepted(
            per_second in 1u64..100,
            burst in 1u64..40,
            times in arrivals(),
        ) {
            let mut bucket = bucket(per_second, burst, 0);
            for &now in &times {
                let _ = bucket.try_take(at(now));
            }
            let last = times.last().copied().unwrap_or(0);
            let quiet_ms = (burst * 1000).div_ceil(per_second);
            let after = at(last + quiet_ms);
            for frame in 0..burst {
                prop_assert_eq!(bucket.try_take(after), Ok(()), "frame {}", frame);
            }
            prop_assert!(bucket.try_take(after).is_err());
        }

        #[test]
        fn retry_after_is_exactly_when_the_next_token_arrives(
            per_second in 1u64..5000,
            burst in 1u64..40,
            times in arrivals(),
        ) {
            let mut bucket = bucket(per_second, burst, 0);
            for &now in &times {
                if let Err(wait) = bucket.try_take(at(now)) {
                    let wait = u64::try_from(wait.as_millis()).expect("small");
                    prop_assert!(wait >= 1);
                    prop_assert_eq!(bucket.available(at(now)), 0);
                    prop_assert!(bucket.clone().try_take(at(now + wait - 1)).is_err());
                    prop_assert!(bucket.clone().try_take(at(now + wait)).is_ok());
                }
            }
        }
    }
}
