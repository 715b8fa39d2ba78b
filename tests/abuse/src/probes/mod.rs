//! The probes, one function each, and what they share.

mod growth;
mod http;
mod sessions;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::StreamExt;

use crate::{Cx, Outcome, Probe};

/// Ticket issue raised far past the default 5/s (bursts of 20) for probes that open many
/// sessions one after the other: a flood of tickets is the ticket-growth probe's attack, not
/// theirs.
macro_rules! tickets {
    () => {
        [
            "--ticket-rate-limit-per-second",
            "100000",
            "--ticket-rate-limit-burst",
            "100000",
        ]
    };
}

/// Backend publishes raised far past the default 200/s (bursts of 400) for probes whose
/// attack is many publishes of another kind (channels, history bytes, payloads, a slow reader).
macro_rules! publishes {
    () => {
        [
            "--publish-rate-limit-per-second",
            "100000",
            "--publish-rate-limit-burst",
            "100000",
        ]
    };
}

macro_rules! probe {
    ($name:literal, $summary:literal, $flags:expr, $settle:expr, $peak:expr, $run:path) => {
        Probe {
            name: $name,
            summary: $summary,
            flags: &$flags,
            settle_bound_mib: $settle,
            peak_bound_mib: $peak,
            run: |cx| Box::pin($run(cx)) as Pin<Box<dyn Future<Output = Outcome> + Send>>,
        }
    };
}

/// Every probe, in the order a run takes them.
pub static PROBES: [Probe; 17] = [
    probe!(
        "stalled-bodies",
        "publish bodies announced and never finished: 413 for a Content-Length past the limit, 401 without a credential (before any body), 413 for a chunked body past it, 400 for a body that stalls (within 10 s)",
        publishes!(),
        32,
        None,
        http::stalled_bodies
    ),
    probe!(
        "slowloris",
        "request heads sent one byte every 200 ms: each connection closed without an answer once the header-read timeout is up, /v1/health answering meanwhile",
        ["--header-read-timeout-ms", "1000"],
        32,
        None,
        http::slowloris
    ),
    probe!(
        "channel-growth",
        "one publish to each of many invented channels: each 200 (or 503 unavailable at --max-channels); memory within 32 MiB plus 4 KiB per channel kept",
        publishes!(),
        32,
        None,
        growth::channel_growth
    ),
    probe!(
        "ticket-growth",
        "a flood of POST /v1/tickets by one caller at the default rate: at most burst + rate x time issued, the rest 429 rate_limited with retry_after_ms and Retry-After",
        [],
        32,
        None,
        growth::ticket_growth
    ),
    probe!(
        "idempotency-growth",
        "a flood of publishes with unique idempotency keys by one caller at the default rate: at most burst + rate x time stored, the rest 429 rate_limited",
        [],
        32,
        None,
        growth::idempotency_growth
    ),
    probe!(
        "history-bytes",
        "60 KB events until the history byte cap refuses with 503 unavailable, then more, all refused; memory within the cap plus 32 MiB",
        [
            "--max-history-bytes",
            "8388608",
            "--publish-rate-limit-per-second",
            "100000",
            "--publish-rate-limit-burst",
            "100000"
        ],
        32,
        None,
        growth::history_bytes
    ),
    probe!(
        "slow-reader",
        "subscribers with a 4 KiB receive window that stop reading while 60 KB events are published: each closed with 4410 fell_behind, its slot freed",
        [
            "--outbound-queue-bytes",
            "262144",
            "--publish-rate-limit-per-second",
            "100000",
            "--publish-rate-limit-burst",
            "100000"
        ],
        32,
        None,
        sessions::slow_reader
    ),
    probe!(
        "ws-violations",
        "frames that break RFC 6455 (unmasked, RSV bits, fragmented or oversized control frames, bad continuations, reserved opcodes, malformed close frames): 1002 and a FIN after it",
        tickets!(),
        32,
        None,
        sessions::ws_violations
    ),
    probe!(
        "invalid-utf8",
        "text frames that are not UTF-8, whole or across fragments: 1007 and a FIN after it",
        tickets!(),
        32,
        None,
        sessions::invalid_utf8
    ),
    probe!(
        "announced-oversize",
        "a frame header announcing 1 GiB: 1009 within 5 s, the payload never buffered (RSS peak within 64 MiB)",
        tickets!(),
        32,
        Some(64),
        sessions::announced_oversize
    ),
    probe!(
        "mutated-vectors",
        "seeded byte mutations of schema/vectors client messages as text frames: every answer a documented server message or error code, every close a documented code",
        [
            "--ticket-rate-limit-per-second",
            "100000",
            "--ticket-rate-limit-burst",
            "100000",
            "--rate-limit-per-second",
            "100000",
            "--rate-limit-burst",
            "100000"
        ],
        32,
        None,
        sessions::mutated_vectors
    ),
    probe!(
        "deep-json",
        "deeply nested arrays and objects and huge numbers, as frames and as publish payloads: bad_request or payload_invalid (400, 413, 422), documented closes, never a crash",
        [
            "--ticket-rate-limit-per-second",
            "100000",
            "--ticket-rate-limit-burst",
            "100000",
            "--publish-rate-limit-per-second",
            "100000",
            "--publish-rate-limit-burst",
            "100000"
        ],
        32,
        None,
        sessions::deep_json
    ),
    probe!(
        "http-fuzz",
        "mutated requests to every route (methods, paths, queries, credentials, content types, bodies): no 5xx, every error a JSON ErrorBody with the table's status, 405 with Allow",
        [],
        32,
        None,
        http::http_fuzz
    ),
    probe!(
        "payload-fuzz",
        "the example application's payload vectors as publishes (valid: 200, invalid: 422), then seeded mutations of them: 200, 400, 413 or 422, never 5xx",
        publishes!(),
        32,
        None,
        http::payload_fuzz
    ),
    probe!(
        "ping-flood",
        "WebSocket pings by the thousand (the session still answers a subscribe), then a flood of frames past the session rate: rate_limited errors and 4429",
        tickets!(),
        32,
        None,
        sessions::ping_flood
    ),
    probe!(
        "connection-limit",
        "sessions of one user up to --max-connections-per-user, then more: each closed with 4409 before any frame; a slot given back is usable again",
        tickets!(),
        32,
        None,
        sessions::connection_limit
    ),
    probe!(
        "ticket-race",
        "one ticket presented by 8 connections at once, many times: exactly one welcomed, the others closed with 4401",
        tickets!(),
        32,
        None,
        sessions::ticket_race
    ),
];

/// Runs `each(i)` for `0..count`, at most `width` at a time, and returns the results in the
/// order they finished.
pub(crate) async fn concurrently<T, F>(count: u64, width: usize, each: impl Fn(u64) -> F) -> Vec<T>
where
    F: Future<Output = T>,
{
    futures_util::stream::iter(0..count)
        .map(each)
        .buffer_unordered(width)
        .collect()
        .await
}

/// Counts of answers by kind (`"429 rate_limited"`), as a note.
#[derive(Default)]
pub(crate) struct Tally(pub(crate) BTreeMap<String, u64>);

impl Tally {
    pub(crate) fn add(&mut self, what: impl Into<String>) {
        *self.0.entry(what.into()).or_default() += 1;
    }

    pub(crate) fn get(&self, what: &str) -> u64 {
        self.0.get(what).copied().unwrap_or(0)
    }

    pub(crate) fn note(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// An HTTP answer: status, content type, `Allow`, `Retry-After` and body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) allow: Option<String>,
    pub(crate) retry_after: Option<String>,
    pub(crate) body: Vec<u8>,
}

/// Sends `request` and reads the whole answer.
pub(crate) async fn answer(request: reqwest::RequestBuilder) -> Result<Answer, String> {
    let response = request
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| {
            let mut text = format!("no answer: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text += &format!(": {cause}");
                source = cause.source();
            }
            text
        })?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let status = response.status().as_u16();
    let content_type = header("content-type").unwrap_or_default();
    let allow = header("allow");
    let retry_after = header("retry-after");
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("{status}: the body: {e}"))?
        .to_vec();
    Ok(Answer {
        status,
        content_type,
        allow,
        retry_after,
        body,
    })
}

/// `POST /v1/publish` of `body` with the probe's credential.
pub(crate) async fn publish(cx: &Cx, body: Vec<u8>) -> Result<Answer, String> {
    answer(
        cx.http
            .post(format!("{}/v1/publish", cx.base))
            .bearer_auth(&cx.token)
            .header("content-type", "application/json")
            .body(body),
    )
    .await
}

/// The error code of an error answer, checked against the table; `"200"` for a success.
pub(crate) fn judged(answer: &Answer) -> Result<String, String> {
    if answer.status < 400 {
        return Ok(answer.status.to_string());
    }
    let code = crate::tables::check_error_body(answer.status, &answer.content_type, &answer.body)?;
    if answer.status == 429 && answer.retry_after.is_none() {
        return Err("429 without Retry-After".to_owned());
    }
    Ok(format!("{} {code}", answer.status))
}

/// Keeps the first few failures of a kind (the count of the rest is what matters).
pub(crate) fn keep(outcome: &mut Outcome, failure: String) {
    if outcome.failures.len() < 20 {
        outcome.fail(failure);
    } else if outcome.failures.len() == 20 {
        outcome.fail("(further failures not listed)");
    }
}
