//! The runner's own scheduling lag: a thread sleeps a short tick again and again and records
//! by how much each wake-up came late. A delay measured while the runner itself woke late says
//! as much about the machine as about the implementation: a timing check that fails during
//! such a lag is reported as disturbed (see [`crate::Finding::Inconclusive`]), not failed.

use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long the probe sleeps each time.
const TICK: Duration = Duration::from_millis(5);

/// Lateness below this is not recorded (the timer's own granularity).
const NOISE: Duration = Duration::from_millis(2);

/// How long a record is kept.
const KEPT: Duration = Duration::from_secs(300);

/// One late wake-up: the sleep began at `from` and ended `late` after it was due.
#[derive(Clone, Copy)]
struct Late {
    from: Instant,
    woke: Instant,
    late: Duration,
}

static RECORDS: OnceLock<Mutex<VecDeque<Late>>> = OnceLock::new();

fn records() -> &'static Mutex<VecDeque<Late>> {
    RECORDS.get_or_init(|| {
        std::thread::Builder::new()
            .name("ferry-conformance-lag".into())
            .spawn(probe)
            .expect("the lag probe's thread starts");
        Mutex::new(VecDeque::new())
    })
}

fn probe() {
    loop {
        let from = Instant::now();
        std::thread::sleep(TICK);
        let woke = Instant::now();
        let late = woke.saturating_duration_since(from).saturating_sub(TICK);
        if late >= NOISE {
            let mut kept = records().lock().unwrap_or_else(|p| p.into_inner());
            kept.push_back(Late { from, woke, late });
            while kept
                .front()
                .is_some_and(|l| woke.saturating_duration_since(l.woke) > KEPT)
            {
                kept.pop_front();
            }
        }
    }
}

/// Starts the probe (once per process); measurements taken before it started see no lag.
pub fn start() {
    records();
}

/// The worst lateness of the runner's own timer during `[from, to]`.
pub fn worst_between(from: Instant, to: Instant) -> Duration {
    records()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|l| l.woke >= from && l.from <= to)
        .map(|l| l.late)
        .max()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_interval_is_seen_and_a_quiet_one_is_not() {
        start();
        let before = Instant::now() - Duration::from_secs(3600);
        assert_eq!(
            worst_between(before, before + Duration::from_secs(1)),
            Duration::ZERO,
            "nothing recorded an hour ago"
        );
        // Record a lateness by hand and find it again.
        let now = Instant::now();
        records().lock().expect("not poisoned").push_back(Late {
            from: now,
            woke: now + Duration::from_millis(40),
            late: Duration::from_millis(35),
        });
        assert!(worst_between(now, now + Duration::from_millis(10)) >= Duration::from_millis(35));
    }
}
