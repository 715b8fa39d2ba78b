//! Reconnect backoff: how long a client waits before each retry, and when it stops
//! (FERRY-RECONNECT-2, FERRY-RECONNECT-3, FERRY-RECONNECT-4, FERRY-RECONNECT-5).
//!
//! [`BackoffPolicy`] is the formula, written once. Before retry `n` (n = 1, 2, … counted since
//! the last reset) a client waits a delay drawn uniformly from
//! `[nominal(n) × (1 − jitter), nominal(n)]` milliseconds, where
//! `nominal(n) = min(cap_ms, base_ms × factor^(n−1))`, and rounds the drawn delay down to a
//! whole millisecond. So, for every retry, with `floor` the rounding down:
//!
//! ```text
//! floor(nominal(n) × (1 − jitter))  <=  delay(n)  <=  floor(nominal(n))  <=  cap_ms
//! ```
//!
//! which is what [`BackoffPolicy::bounds`] returns and what a test checks an observed delay
//! against. The randomness is injected: [`BackoffPolicy::delay`] takes `unit`, a uniform sample
//! in `[0, 1)` drawn by the caller, so the formula is a pure function.
//!
//! [`Backoff`] is the retry counter on top: it hands out the delay of each retry, stops after
//! `max_attempts` retries in a row (FERRY-RECONNECT-4), and resets the count to 0 only when a
//! session stayed welcomed for `reset_after_ms` (FERRY-RECONNECT-5).

use std::time::Duration;

use crate::tables::defaults;
use crate::time::Timestamp;
use crate::types::ReconnectPolicy;

/// The reconnect policy a client follows: the backoff formula of FERRY-RECONNECT-2 with the
/// values advertised in the welcome (or the defaults before any welcome).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    base_ms: u64,
    cap_ms: u64,
    factor: f64,
    jitter: f64,
    max_attempts: u32,
    reset_after: Duration,
}

impl Default for BackoffPolicy {
    /// The protocol's defaults (`tables::defaults`): base 1 s, factor 2, cap 30 s, jitter 0.5,
    /// 20 attempts, reset after 5 s.
    fn default() -> Self {
        Self {
            base_ms: defaults::RECONNECT_BASE_MS,
            cap_ms: defaults::RECONNECT_CAP_MS,
            factor: defaults::RECONNECT_FACTOR,
            jitter: defaults::RECONNECT_JITTER,
            max_attempts: u32::try_from(defaults::RECONNECT_MAX_ATTEMPTS).unwrap_or(u32::MAX),
            reset_after: Duration::from_millis(defaults::RECONNECT_RESET_AFTER_MS),
        }
    }
}

impl From<&ReconnectPolicy> for BackoffPolicy {
    /// The policy a welcome advertises. Its bounded fields already satisfy the schema
    /// (base and cap at least 1 ms, factor in [1, 10], jitter in [0, 1]).
    fn from(policy: &ReconnectPolicy) -> Self {
        Self {
            base_ms: policy.base_ms.get(),
            cap_ms: policy.cap_ms.get(),
            factor: policy.factor.get(),
            jitter: policy.jitter.get(),
            max_attempts: u32::try_from(policy.max_attempts.get()).unwrap_or(u32::MAX),
            reset_after: Duration::from_millis(policy.reset_after_ms.get()),
        }
    }
}

impl From<ReconnectPolicy> for BackoffPolicy {
    /// The policy a welcome advertises.
    fn from(policy: ReconnectPolicy) -> Self {
        Self::from(&policy)
    }
}

impl BackoffPolicy {
    /// The largest delay the policy ever gives (FERRY-RECONNECT-3).
    pub fn cap(&self) -> Duration {
        Duration::from_millis(self.cap_ms)
    }

    /// How many retries in a row may fail before the client stops; 0 means never retry
    /// (FERRY-RECONNECT-4).
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// How long a session must stay welcomed before the retry count resets to 0
    /// (FERRY-RECONNECT-5).
    pub fn reset_after(&self) -> Duration {
        self.reset_after
    }

    /// `min(cap_ms, base_ms × factor^(retry−1))` in (fractional) milliseconds. Retries count
    /// from 1; retry 0 is treated as retry 1. A power too large for `f64` is infinite, so the
    /// minimum saturates at the cap instead of overflowing.
    fn nominal_ms(&self, retry: u32) -> f64 {
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let grown = self.base_ms as f64 * self.factor.powi(exponent);
        // `f64::min` returns the cap if `grown` were ever NaN.
        grown.min(self.cap_ms as f64)
    }

    /// `nominal(retry)`, the longest delay before this retry, rounded down to a whole
    /// millisecond (FERRY-RECONNECT-2). Retries count from 1; retry 0 is treated as retry 1.
    pub fn nominal(&self, retry: u32) -> Duration {
        Duration::from_millis(self.nominal_ms(retry).floor() as u64)
    }

    /// The shortest and longest delay allowed before this retry, both in whole milliseconds:
    /// `(floor(nominal × (1 − jitter)), floor(nominal))`. The longest never exceeds the cap.
    pub fn bounds(&self, retry: u32) -> (Duration, Duration) {
        let nominal = self.nominal_ms(retry);
        let shortest = nominal * (1.0 - self.jitter);
        (
            Duration::from_millis(shortest.floor() as u64),
            Duration::from_millis(nominal.floor() as u64),
        )
    }

    /// The delay before this retry for the uniform sample `unit` in `[0, 1)`: the point at
    /// fraction `unit` of `[nominal × (1 − jitter), nominal]`, rounded down to a whole
    /// millisecond. It grows with `unit`, is the shortest bound at 0 and the longest at 1
    /// (`unit` is clamped to `[0, 1]`; NaN counts as 0), and always lies within
    /// [`bounds`](Self::bounds).
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let unit = if unit.is_nan() {
            0.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        let nominal = self.nominal_ms(retry);
        let shortest = nominal * (1.0 - self.jitter);
        let drawn = if unit >= 1.0 {
            nominal
        } else {
            shortest + unit * (nominal - shortest)
        };
        // Rounding may put `drawn` an ulp outside the range; the clamp keeps it within bounds.
        let ms = drawn.floor().clamp(shortest.floor(), nominal.floor());
        Duration::from_millis(ms as u64)
    }
}

/// A client's retry counter under a [`BackoffPolicy`]: the delay of each retry, the stop after
/// `max_attempts` retries in a row, and the reset once a session stayed welcomed long enough.
///
/// The caller reports what happens ([`on_welcome`](Self::on_welcome),
/// [`on_session_end`](Self::on_session_end)) with the time it read, and asks for the next
/// delay with a random sample; the counter reads no clock and draws no random number.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    policy: BackoffPolicy,
    retries: u32,
    welcomed_at: Option<Timestamp>,
}

impl Default for Backoff {
    /// A counter under the default policy, with no retry made.
    fn default() -> Self {
        Self::new(BackoffPolicy::default())
    }
}

impl Backoff {
    /// A counter under `policy`, with no retry made.
    pub fn new(policy: BackoffPolicy) -> Self {
        Self {
            policy,
            retries: 0,
            welcomed_at: None,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &BackoffPolicy {
        &self.policy
    }

    /// Adopts the policy a welcome advertises (FERRY-WELCOME-3), keeping the retry count.
    pub fn set_policy(&mut self, policy: BackoffPolicy) {
        self.policy = policy;
    }

    /// How many retries were made since the last reset.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Whether `max_attempts` retries were made since the last reset, so the client must stop
    /// and say so (FERRY-RECONNECT-4, FERRY-RECONNECT-9).
    pub fn is_exhausted(&self) -> bool {
        self.retries >= self.policy.max_attempts
    }

    /// Counts one more retry and returns its number (1 for the first since the last reset), or
    /// `None`, counting nothing, when `max_attempts` retries were already made. For a retry
    /// whose wait is decided elsewhere (a server's retry hint, FERRY-RECONNECT-7);
    /// [`next_delay`](Self::next_delay) uses it for retries under the formula.
    pub fn count_retry(&mut self) -> Option<u32> {
        if self.is_exhausted() {
            return None;
        }
        self.retries += 1;
        Some(self.retries)
    }

    /// Counts one more retry and returns how long to wait before it, given `unit`, a uniform
    /// sample in `[0, 1)` (see [`BackoffPolicy::delay`]); `None` when `max_attempts` retries
    /// were already made and the client must stop.
    ///
    /// Call [`on_session_end`](Self::on_session_end) first when the attempt that failed had
    /// been welcomed, so the reset rule is applied.
    pub fn next_delay(&mut self, unit: f64) -> Option<Duration> {
        let retry = self.count_retry()?;
        Some(self.policy.delay(retry, unit))
    }

    /// The session was welcomed at `now`.
    pub fn on_welcome(&mut self, now: Timestamp) {
        self.welcomed_at = Some(now);
    }

    /// The session ended at `now`. If it had been welcomed at least `reset_after` earlier, the
    /// retry count resets to 0; otherwise it is kept (FERRY-RECONNECT-5). A session that was
    /// never welcomed changes nothing.
    pub fn on_session_end(&mut self, now: Timestamp) {
        if let Some(welcomed_at) = self.welcomed_at.take()
            && now.saturating_since(welcomed_at) >= self.policy.reset_after
        {
            self.retries = 0;
        }
    }

    /// When the retry count will reset if the current session is still welcomed then; `None`
    /// when no session is welcomed.
    pub fn reset_at(&self) -> Option<Timestamp> {
        self.welcomed_at.map(|at| at + self.policy.reset_after)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::bounded::{Float, UInt};

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    fn at(value: u64) -> Timestamp {
        Timestamp::from_millis(value)
    }

    fn reconnect_policy(
        base_ms: u64,
        cap_ms: u64,
        factor: f64,
        jitter: f64,
        max_attempts: u64,
        reset_after_ms: u64,
    ) -> ReconnectPolicy {
        ReconnectPolicy {
            base_ms: UInt::new(base_ms).expect("base_ms within the schema's bounds"),
            cap_ms: UInt::new(cap_ms).expect("cap_ms within the schema's bounds"),
            factor: Float::new(factor).expect("factor within the schema's bounds"),
            jitter: Float::new(jitter).expect("jitter within the schema's bounds"),
            max_attempts: UInt::new(max_attempts).expect("max_attempts within the schema's bounds"),
            reset_after_ms: UInt::new(reset_after_ms)
                .expect("reset_after_ms within the schema's bounds"),
        }
    }

    fn policy(base_ms: u64, cap_ms: u64, factor: f64, jitter: f64) -> BackoffPolicy {
        BackoffPolicy::from(reconnect_policy(base_ms, cap_ms, factor, jitter, 20, 5000))
    }

    #[test]
    fn default_policy_gives_the_documented_delay_ranges() {
        let policy = BackoffPolicy::default();
        // The table of PROTOCOL.md, "Reconnect and backoff".
        let table = [
            (1, 500, 1000),
            (2, 1000, 2000),
            (3, 2000, 4000),
            (4, 4000, 8000),
            (5, 8000, 16000),
            (6, 15000, 30000),
            (7, 15000, 30000),
            (20, 15000, 30000),
            (u32::MAX, 15000, 30000),
        ];
        for (retry, shortest, longest) in table {
            assert_eq!(policy.nominal(retry), ms(longest), "nominal({retry})");
            assert_eq!(
                policy.bounds(retry),
                (ms(shortest), ms(longest)),
                "retry {retry}"
            );
        }
    }

    #[test]
    fn default_policy_is_the_defaults_table() {
        let policy = BackoffPolicy::default();
        let advertised = BackoffPolicy::from(reconnect_policy(1000, 30000, 2.0, 0.5, 20, 5000));
        assert_eq!(policy, advertised);
        assert_eq!(policy.cap(), ms(30000));
        assert_eq!(policy.max_attempts(), 20);
        assert_eq!(policy.reset_after(), ms(5000));
    }

    #[test]
    fn delay_spans_the_jitter_range_from_shortest_to_longest() {
        let policy = BackoffPolicy::default();
        assert_eq!(policy.delay(1, 0.0), ms(500));
        assert_eq!(policy.delay(1, 0.5), ms(750));
        assert_eq!(policy.delay(1, 0.999), ms(999));
        assert_eq!(policy.delay(1, 1.0), ms(1000));
        assert_eq!(policy.delay(3, 0.25), ms(2500));
    }

    #[test]
    fn out_of_range_samples_are_clamped() {
        let policy = BackoffPolicy::default();
        assert_eq!(policy.delay(1, -3.0), ms(500));
        assert_eq!(policy.delay(1, f64::NAN), ms(500));
        assert_eq!(policy.delay(1, 7.0), ms(1000));
        assert_eq!(policy.delay(1, f64::INFINITY), ms(1000));
    }

    #[test]
    fn zero_jitter_waits_exactly_the_nominal_delay() {
        let policy = policy(250, 10_000, 3.0, 0.0);
        for (retry, nominal) in [(1, 250), (2, 750), (3, 2250), (4, 6750), (5, 10_000)] {
            assert_eq!(policy.bounds(retry), (ms(nominal), ms(nominal)));
            assert_eq!(policy.delay(retry, 0.0), ms(nominal));
            assert_eq!(policy.delay(retry, 0.7), ms(nominal));
        }
    }

    #[test]
    fn full_jitter_may_wait_nothing() {
        let policy = policy(1000, 30_000, 2.0, 1.0);
        assert_eq!(policy.bounds(2), (ms(0), ms(2000)));
        assert_eq!(policy.delay(2, 0.0), ms(0));
    }

    #[test]
    fn fractional_delays_round_down_to_a_whole_millisecond() {
        // nominal: 3, 4.5, 6.75, 10.125; shortest at jitter 0.5: 1.5, 2.25, 3.375, 5.0625.
        let policy = policy(3, 1000, 1.5, 0.5);
        assert_eq!(policy.nominal(2), ms(4));
        assert_eq!(policy.nominal(3), ms(6));
        assert_eq!(policy.bounds(1), (ms(1), ms(3)));
        assert_eq!(policy.bounds(2), (ms(2), ms(4)));
        assert_eq!(policy.bounds(3), (ms(3), ms(6)));
        assert_eq!(policy.bounds(4), (ms(5), ms(10)));
        assert_eq!(policy.delay(4, 0.0), ms(5));
        assert_eq!(policy.delay(4, 1.0), ms(10));
    }

    #[test]
    fn huge_retry_numbers_saturate_at_the_cap() {
        let steep = policy(3_600_000, 3_600_000, 10.0, 0.25);
        for retry in [1, 2, 400, 1 << 20, u32::MAX] {
            assert_eq!(steep.nominal(retry), ms(3_600_000), "retry {retry}");
            assert_eq!(steep.delay(retry, 1.0), ms(3_600_000), "retry {retry}");
        }
        let slow = policy(1, 3_600_000, 1.0, 0.0);
        assert_eq!(slow.nominal(u32::MAX), ms(1));
    }

    #[test]
    fn a_cap_below_the_base_caps_the_first_retry() {
        let policy = policy(5000, 1200, 2.0, 0.5);
        assert_eq!(policy.bounds(1), (ms(600), ms(1200)));
    }

    #[test]
    fn retry_zero_counts_as_the_first_retry() {
        let policy = BackoffPolicy::default();
        assert_eq!(policy.bounds(0), policy.bounds(1));
    }

    #[test]
    fn client_stops_after_max_attempts_failed_retries_in_a_row() {
        let mut backoff = Backoff::default();
        for retry in 1..=20 {
            let delay = backoff
                .next_delay(0.5)
                .expect("retries 1 to 20 are allowed");
            let (shortest, longest) = backoff.policy().bounds(retry);
            assert!(
                shortest <= delay && delay <= longest,
                "retry {retry}: {delay:?}"
            );
            assert_eq!(backoff.retries(), retry);
        }
        assert!(backoff.is_exhausted());
        assert_eq!(backoff.next_delay(0.5), None);
        assert_eq!(backoff.count_retry(), None);
        assert_eq!(backoff.retries(), 20);
    }

    #[test]
    fn max_attempts_zero_never_retries() {
        let mut backoff = Backoff::new(BackoffPolicy::from(reconnect_policy(
            1000, 30000, 2.0, 0.5, 0, 5000,
        )));
        assert!(backoff.is_exhausted());
        assert_eq!(backoff.next_delay(0.0), None);
        assert_eq!(backoff.retries(), 0);
    }

    #[test]
    fn count_resets_once_a_session_stayed_welcomed_for_reset_after() {
        let mut backoff = Backoff::default();
        for _ in 0..3 {
            backoff.next_delay(0.0).expect("within max_attempts");
        }
        backoff.on_welcome(at(10_000));
        assert_eq!(backoff.reset_at(), Some(at(15_000)));
        backoff.on_session_end(at(15_000));
        assert_eq!(backoff.retries(), 0);
        assert_eq!(backoff.reset_at(), None);
        // The next retry is retry 1 again: the shortest bound of the first retry.
        assert_eq!(backoff.next_delay(0.0), Some(ms(500)));
    }

    #[test]
    fn count_is_kept_when_a_session_ends_before_reset_after() {
        let mut backoff = Backoff::default();
        for _ in 0..3 {
            backoff.next_delay(0.0).expect("within max_attempts");
        }
        backoff.on_welcome(at(10_000));
        backoff.on_session_end(at(14_999));
        assert_eq!(backoff.retries(), 3);
        assert_eq!(backoff.next_delay(0.0), Some(ms(4000)));
    }

    #[test]
    fn a_session_that_was_never_welcomed_does_not_reset_the_count() {
        let mut backoff = Backoff::default();
        backoff.next_delay(0.0).expect("within max_attempts");
        backoff.on_session_end(at(1_000_000));
        assert_eq!(backoff.retries(), 1);
        // A welcome belongs to one session only: the next end without a welcome keeps the count.
        backoff.on_welcome(at(0));
        backoff.on_session_end(at(1));
        backoff.on_session_end(at(1_000_000));
        assert_eq!(backoff.retries(), 1);
    }

    #[test]
    fn an_advertised_policy_keeps_the_retry_count() {
        let mut backoff = Backoff::default();
        backoff.next_delay(0.0).expect("within max_attempts");
        backoff.next_delay(0.0).expect("within max_attempts");
        backoff.set_policy(BackoffPolicy::from(reconnect_policy(
            100, 1000, 2.0, 0.0, 2, 5000,
        )));
        assert_eq!(backoff.retries(), 2);
        assert_eq!(backoff.next_delay(0.0), None);
    }

    /// Any policy the schema allows.
    fn any_policy() -> impl Strategy<Value = ReconnectPolicy> {
        (
            1u64..=3_600_000,
            1u64..=3_600_000,
            1.0f64..=10.0,
            0.0f64..=1.0,
            0u64..=50,
            0u64..=3_600_000,
        )
            .prop_map(|(base, cap, factor, jitter, attempts, reset)| {
                reconnect_policy(base, cap, factor, jitter, attempts, reset)
            })
    }

    proptest! {
        #[test]
        fn delay_lies_within_the_formula_bounds_and_never_exceeds_the_cap(
            policy in any_policy(),
            retry in prop_oneof![3 => 1u32..=8, 1 => 1u32..=64, 1 => any::<u32>()],
            unit in 0.0f64..1.0,
        ) {
            let cap = Duration::from_millis(policy.cap_ms.get());
            let policy = BackoffPolicy::from(&policy);
            let (shortest, longest) = policy.bounds(retry);
            let delay = policy.delay(retry, unit);
            prop_assert!(shortest <= delay, "{delay:?} below {shortest:?}");
            prop_assert!(delay <= longest, "{delay:?} above {longest:?}");
            prop_assert!(longest <= cap, "{longest:?} above the cap {cap:?}");
            prop_assert_eq!(longest, policy.nominal(retry));
        }

        #[test]
        fn bounds_are_the_exact_formula_for_integral_factors(
            base in 1u64..=3_600_000,
            cap in 1u64..=3_600_000,
            factor in 1u64..=4,
            quarters in 0u64..=4,
            retry in 1u32..=80,
        ) {
            // With an integral factor and a jitter in quarters, the formula is exact in integers.
            let jitter = quarters as f64 / 4.0;
            let policy = policy(base, cap, factor as f64, jitter);
            let power = u128::from(factor).checked_pow(retry - 1).unwrap_or(u128::MAX);
            let nominal = (u128::from(base).saturating_mul(power)).min(u128::from(cap));
            let shortest = nominal * u128::from(4 - quarters) / 4;
            let as_ms = |v: u128| Duration::from_millis(u64::try_from(v).expect("at most the cap"));
            prop_assert_eq!(policy.bounds(retry), (as_ms(shortest), as_ms(nominal)));
            prop_assert_eq!(policy.delay(retry, 0.0), as_ms(shortest));
            prop_assert_eq!(policy.delay(retry, 1.0), as_ms(nominal));
        }

        #[test]
        fn delay_grows_with_the_sample(
            policy in any_policy(),
            retry in 1u32..=64,
            a in 0.0f64..1.0,
            b in 0.0f64..1.0,
        ) {
            let policy = BackoffPolicy::from(&policy);
            let (low, high) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(policy.delay(retry, low) <= policy.delay(retry, high));
        }

        #[test]
        fn retries_stop_exactly_at_max_attempts(
            policy in any_policy(),
            calls in 0usize..80,
            units in proptest::collection::vec(0.0f64..1.0, 80),
        ) {
            let max_attempts = policy.max_attempts.get();
            let mut backoff = Backoff::new(BackoffPolicy::from(&policy));
            let delays: Vec<_> = units[..calls].iter().map(|&u| backoff.next_delay(u)).collect();
            let given = delays.iter().take_while(|d| d.is_some()).count();
            prop_assert_eq!(given as u64, (calls as u64).min(max_attempts));
            prop_assert!(delays[given..].iter().all(Option::is_none));
            for (index, delay) in delays.iter().flatten().enumerate() {
                let retry = u32::try_from(index + 1).expect("fewer than 80 retries");
                let (shortest, longest) = backoff.policy().bounds(retry);
                prop_assert!(shortest <= *delay && *delay <= longest);
            }
            prop_assert_eq!(u64::from(backoff.retries()), (calls as u64).min(max_attempts));
        }

        #[test]
        fn count_resets_only_after_a_session_stayed_welcomed_for_reset_after(
            policy in any_policy(),
            sessions in proptest::collection::vec((0u32..5, any::<bool>(), 0u64..8_000_000), 1..20),
        ) {
            let reset_after = policy.reset_after_ms.get();
            let mut backoff = Backoff::new(BackoffPolicy::from(&policy));
            let mut expected: u32 = 0;
            let mut now = 0u64;
            for (failures, welcomed, lasted) in sessions {
                for _ in 0..failures {
                    let _ = backoff.next_delay(0.5);
                    expected = (expected + 1).min(backoff.policy().max_attempts());
                }
                prop_assert_eq!(backoff.retries(), expected);
                if welcomed {
                    backoff.on_welcome(at(now));
                }
                now += lasted;
                backoff.on_session_end(at(now));
                if welcomed && lasted >= reset_after {
                    expected = 0;
                }
                prop_assert_eq!(backoff.retries(), expected);
            }
        }
    }
}
