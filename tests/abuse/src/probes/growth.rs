//! Probes of what an authorised caller can make a node hold: channels, tickets, idempotency
//! keys, history bytes.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{Tally, answer, concurrently, judged, keep, publish};
use crate::{Cx, Outcome};

/// A small event for `n` on `channel`.
fn small_event(channel: &str, key: &str, n: u64) -> Vec<u8> {
    json!({ "channel": channel, "idempotency_key": key, "payload": { "task_id": format!("T-{n}"), "status": "running", "progress": 0.5, "assignee": null } })
        .to_string()
        .into_bytes()
}

/// One small publish to each of 1000 x scale invented channels (`project:g<seed>-<n>:tasks`),
/// 8 at a time: each 200, or `503 unavailable` once the node holds `--max-channels`. The
/// channels keep their event (FERRY-RESUME-3), so memory may stay up by what they cost:
/// the bound is 32 MiB plus 4 KiB per channel created (2.7 KB measured with one small event).
/// The publish rate is raised on a spawned server: the attack is the channel count.
pub(crate) async fn channel_growth(cx: Cx) -> Outcome {
    let count = 1000 * u64::from(cx.scale);
    let salt = cx.seed % 100_000;
    let results = concurrently(count, 8, |n| {
        let cx = cx.clone();
        async move {
            let channel = format!("project:g{salt}-{n}:tasks");
            let got = judged(&publish(&cx, small_event(&channel, "k", n)).await?)?;
            match got.as_str() {
                "200" | "503 unavailable" => Ok(got),
                "429 rate_limited" if !cx.spawned => Ok(got),
                _ => Err(format!("a publish to {channel} was answered {got}")),
            }
        }
    })
    .await;
    let mut outcome = Outcome {
        attacks: count,
        ..Outcome::default()
    };
    let mut tally = Tally::default();
    for result in results {
        match result {
            Ok(got) => tally.add(got),
            Err(error) => keep(&mut outcome, error),
        }
    }
    outcome.stored_mib = (tally.get("200") * 4096).div_ceil(1024 * 1024);
    outcome.note(tally.note());
    outcome
}

/// Checks a rate-limited flood's answers: each one of `ok` or `429 rate_limited` (with
/// `retry_after_ms` and `Retry-After`, checked by `judged`), at least one 429, and no more
/// successes than `burst + rate x elapsed` (plus one second's worth for the clock's edges)
/// when the server runs the defaults.
fn rate_limited(
    outcome: &mut Outcome,
    results: Vec<Result<String, String>>,
    ok: &str,
    (rate, burst): (u64, u64),
    elapsed: Duration,
    defaults: bool,
) {
    let mut tally = Tally::default();
    for result in results {
        match result {
            Ok(got) if got == ok || got == "429 rate_limited" => tally.add(got),
            Ok(got) => keep(outcome, format!("answered {got}")),
            Err(error) => keep(outcome, error),
        }
    }
    let granted = tally.get(ok);
    if tally.get("429 rate_limited") == 0 {
        outcome.fail(format!(
            "no 429 in {} requests: the flood was not limited",
            outcome.attacks
        ));
    }
    let most = burst + rate * (elapsed.as_secs() + 2);
    if defaults && granted > most {
        outcome.fail(format!(
            "{granted} granted in {:.1} s, more than a bucket of {burst} at {rate}/s allows ({most})",
            elapsed.as_secs_f64()
        ));
    }
    outcome.note(format!(
        "{} in {:.1} s",
        tally.note(),
        elapsed.as_secs_f64()
    ));
}

/// 500 x scale `POST /v1/tickets` by one caller, 4 at a time, at the server's default rate
/// (5/s, bursts of 20): at most burst + rate x time are issued, every other answer is
/// `429 rate_limited` with `retry_after_ms` and `Retry-After`.
pub(crate) async fn ticket_growth(cx: Cx) -> Outcome {
    let count = 500 * u64::from(cx.scale);
    let started = Instant::now();
    let results = concurrently(count, 4, |_| {
        let cx = cx.clone();
        async move {
            judged(
                &answer(
                    cx.http
                        .post(format!("{}/v1/tickets", cx.base))
                        .bearer_auth(&cx.token),
                )
                .await?,
            )
        }
    })
    .await;
    let mut outcome = Outcome {
        attacks: count,
        ..Outcome::default()
    };
    let elapsed = started.elapsed();
    rate_limited(&mut outcome, results, "201", (5, 20), elapsed, cx.spawned);
    outcome
}

/// 1000 x scale publishes with unique idempotency keys by one backend, 8 at a time, at the
/// default rate (200/s, bursts of 400): at most burst + rate x time stored, the rest
/// `429 rate_limited`, refused before the body is read.
pub(crate) async fn idempotency_growth(cx: Cx) -> Outcome {
    let count = 1000 * u64::from(cx.scale);
    let salt = cx.seed;
    let started = Instant::now();
    let results = concurrently(count, 8, |n| {
        let cx = cx.clone();
        async move {
            let key = format!("flood-{salt:x}-{n}");
            judged(&publish(&cx, small_event("project:flood:tasks", &key, n)).await?)
        }
    })
    .await;
    let mut outcome = Outcome {
        attacks: count,
        ..Outcome::default()
    };
    let elapsed = started.elapsed();
    rate_limited(
        &mut outcome,
        results,
        "200",
        (200, 400),
        elapsed,
        cx.spawned,
    );
    outcome
}

/// Events of 60 000 characters of output (`daemon:h<n>:output`, four channels) until the
/// history byte cap refuses one with `503 unavailable` (retryable), then 20 x scale more,
/// which must all be refused: every event is younger than the resume window, so nothing can
/// be shed. A spawned server's cap is 8 MiB (`--max-history-bytes 8388608`) and its publish
/// rate raised; memory may stay up by the cap (the history is kept), plus 32 MiB. Fails if
/// no refusal comes within the cap's worth of events and a half.
pub(crate) async fn history_bytes(cx: Cx) -> Outcome {
    let event_bytes = 2 * 60_000 + 200;
    let most = (cx.max_history_bytes / event_bytes) * 3 / 2 + 10;
    let data = "o".repeat(60_000);
    let mut outcome = Outcome {
        stored_mib: cx.max_history_bytes.div_ceil(1024 * 1024),
        ..Outcome::default()
    };
    let mut tally = Tally::default();
    let mut refused_at = None;
    let mut after_refusal = 0;
    let extra = 20 * u64::from(cx.scale);
    let salt = cx.seed;
    let mut n = 0u64;
    while n < most + extra && after_refusal < extra {
        let body = json!({ "channel": format!("daemon:h{}:output", n % 4), "idempotency_key": format!("h-{salt:x}-{n}"),
            "payload": { "type": "chunk", "run_id": "r", "stream": "stdout", "data": data } });
        outcome.attacks += 1;
        n += 1;
        let got = match publish(&cx, body.to_string().into_bytes())
            .await
            .and_then(|a| judged(&a))
        {
            Ok(got) => got,
            Err(error) => {
                keep(&mut outcome, error);
                continue;
            }
        };
        tally.add(got.clone());
        match (got.as_str(), refused_at) {
            ("503 unavailable", None) => refused_at = Some(n),
            ("503 unavailable", Some(_)) => after_refusal += 1,
            ("200", None) => {}
            ("429 rate_limited", _) if !cx.spawned => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (_, Some(_)) => keep(
                &mut outcome,
                format!("after the cap refused a publish, one was answered {got}"),
            ),
            (_, None) => keep(&mut outcome, format!("a publish was answered {got}")),
        }
    }
    match refused_at {
        Some(at) => outcome.note(format!("refused from event {at}")),
        None => outcome.fail(format!(
            "no 503 unavailable in {n} events of 60 KB under a cap of {} bytes",
            cx.max_history_bytes
        )),
    }
    if let Ok(full) = crate::target::metric(&cx.http, &cx.base, "ferry_history_full_total").await {
        outcome.note(format!("ferry_history_full_total {full}"));
        if refused_at.is_some() && full < 1.0 {
            outcome.fail("ferry_history_full_total did not count the refusals");
        }
    }
    outcome.note(tally.note());
    outcome
}
