//! Probes of WebSocket sessions: slow readers, frames that break RFC 6455, invalid UTF-8,
//! oversized frame headers, mutated and hostile JSON, ping floods, the per-user connection
//! limit and ticket races.

use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{Tally, concurrently, judged, keep, publish};
use crate::wire::{self, PING, TEXT, frame};
use crate::{Cx, Outcome, mutate, tables, target};

/// `scale` subscribers (at most the user's connection limit less the neighbour's two and one)
/// on `daemon:slow:output` with a 4 KiB receive buffer that stop reading
/// after their `subscribed`, while a backend publishes 60 KB chunks to the channel until
/// `ferry_sessions_fell_behind_total` counts them all (at most 3000 events). Each must then
/// find, once it reads again, a close with 4410 `fell_behind` after the events queued before
/// it, and `ferry_sessions` must return to its count before the readers opened (their slots
/// freed) within 10 s. A spawned server's outbound queue is 256 KiB
/// (`--outbound-queue-bytes 262144`) and its publish rate raised.
pub(crate) async fn slow_reader(cx: Cx) -> Outcome {
    // As many readers as the scale, within the user's connection limit.
    let readers = u64::from(cx.scale)
        .min(
            cx.max_connections_per_user
                .saturating_sub(cx.neighbour_sessions + 1),
        )
        .max(1);
    let mut outcome = Outcome::default();
    let metric = |name: &'static str| {
        let cx = cx.clone();
        async move { target::metric(&cx.http, &cx.base, name).await }
    };
    let fell_before = metric("ferry_sessions_fell_behind_total")
        .await
        .unwrap_or(0.0);
    let sessions_before = match metric("ferry_sessions").await {
        Ok(n) => n,
        Err(error) => {
            outcome.fail(error);
            return outcome;
        }
    };
    let mut streams = Vec::new();
    for r in 0..readers {
        match subscribed(&cx, "daemon:slow:output", Some(4096), &format!("slow-{r}")).await {
            Ok(stream) => streams.push(stream),
            Err(error) => {
                outcome.fail(format!("a slow reader could not subscribe: {error}"));
                return outcome;
            }
        }
    }
    let data = "s".repeat(60_000);
    let salt = cx.seed;
    let mut fell = fell_before;
    let mut n = 0u64;
    while n < 3000 && fell < fell_before + readers as f64 {
        let body = json!({ "channel": "daemon:slow:output", "idempotency_key": format!("slow-{salt:x}-{n}"),
            "payload": { "type": "chunk", "run_id": "r", "stream": "stdout", "data": data } });
        n += 1;
        match publish(&cx, body.to_string().into_bytes())
            .await
            .and_then(|a| judged(&a))
        {
            Ok(got) if got == "200" => {}
            Ok(got) if got.starts_with("429") && !cx.spawned => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(got) => keep(&mut outcome, format!("a publish was answered {got}")),
            Err(error) => keep(&mut outcome, error),
        }
        if n.is_multiple_of(10) {
            fell = metric("ferry_sessions_fell_behind_total")
                .await
                .unwrap_or(fell);
        }
    }
    outcome.attacks = n;
    outcome.note(format!("{n} events of 60 KB published"));
    if fell < fell_before + readers as f64 {
        outcome.fail(format!(
            "after {n} events of 60 KB, {} of {readers} readers had fallen behind",
            fell - fell_before
        ));
    }
    for (r, mut stream) in streams.into_iter().enumerate() {
        let ending = wire::until_close(&mut stream, Duration::from_secs(30)).await;
        match ending.code {
            Some(4410) => {}
            other => outcome.fail(format!(
                "slow reader {r} saw close {other:?} after {} frames, not 4410",
                ending.texts.len()
            )),
        }
    }
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let now = metric("ferry_sessions").await.unwrap_or(f64::MAX);
        if now <= sessions_before {
            break;
        }
        if Instant::now() > until {
            outcome.fail(format!(
                "ferry_sessions stayed at {now} after the slow readers were closed (before: {sessions_before})"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    outcome
}

/// A raw session subscribed to `channel` (the `subscribed` read).
async fn subscribed(
    cx: &Cx,
    channel: &str,
    receive_buffer: Option<u32>,
    id: &str,
) -> Result<TcpStream, String> {
    let mut stream = wire::session(cx, receive_buffer).await?;
    let subscribe = json!({ "type": "subscribe", "id": id, "channel": channel }).to_string();
    stream
        .write_all(&frame(TEXT, subscribe.as_bytes(), true))
        .await
        .map_err(|e| format!("write: {e}"))?;
    loop {
        match wire::read_frame(&mut stream, Duration::from_secs(10)).await? {
            Some((1, payload)) if payload.windows(12).any(|w| w == b"\"subscribed\"") => {
                return Ok(stream);
            }
            Some((1, payload)) if payload.windows(6).any(|w| w == b"\"ping\"") => {}
            other => return Err(format!("the subscribe got {}", wire::describe(&other))),
        }
    }
}

/// The frames that break RFC 6455, each with its name.
fn violations() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("an unmasked frame", frame(0x81, b"{}", false)),
        ("RSV1 without an extension", frame(0xc1, b"{}", true)),
        ("RSV2 and RSV3", frame(0xb1, b"{}", true)),
        ("a fragmented ping", frame(0x09, b"", true)),
        ("a ping of 126 bytes", frame(0x89, &[0; 126], true)),
        ("a close frame of one byte", frame(0x88, &[3], true)),
        (
            "a close frame with code 999",
            frame(0x88, &[0x03, 0xe7], true),
        ),
        (
            "a text frame inside a fragmented message",
            [frame(0x01, b"{", true), frame(0x81, b"}", true)].concat(),
        ),
        ("a reserved data opcode", frame(0x83, b"{}", true)),
        ("a reserved control opcode", frame(0x8b, b"", true)),
        (
            "a continuation with nothing to continue",
            frame(0x80, b"{}", true),
        ),
    ]
}

/// Each frame of [`violations`], 3 x scale times over, 4 connections at a time: a close
/// frame with 1002 within 10 s, then a FIN (the server drains what the client still sends).
/// A close frame whose reason is not UTF-8 is also one: RFC 6455 fails the connection on
/// invalid UTF-8 in a close reason as in a text frame, so 1002 or 1007 are both its answer.
pub(crate) async fn ws_violations(cx: Cx) -> Outcome {
    let mut cases = violations();
    cases.push((
        "a close frame whose reason is not UTF-8",
        frame(0x88, &[0x03, 0xe8, 0xff, 0xfe], true),
    ));
    let count = cases.len() as u64 * 3 * u64::from(cx.scale);
    let cases = &cases;
    let results = concurrently(count, 4, |i| {
        let cx = cx.clone();
        let (name, bytes) = cases[(i % cases.len() as u64) as usize].clone();
        async move {
            let expected: &[u16] = if name.contains("reason is not UTF-8") {
                &[1002, 1007]
            } else {
                &[1002]
            };
            let result =
                wire::violation_answered(&cx, bytes, expected, Duration::from_secs(10)).await;
            (name, result)
        }
    })
    .await;
    let mut outcome = Outcome {
        attacks: count,
        ..Outcome::default()
    };
    for (name, result) in results {
        if let Err(error) = result {
            keep(&mut outcome, format!("{name}: {error}"));
        }
    }
    outcome
}

/// 20 x scale text messages that are not UTF-8 (seeded bad sequences at random places), half
/// in one frame and half split over a fragment and a continuation: a close with 1007 and a
/// FIN after it.
pub(crate) async fn invalid_utf8(cx: Cx) -> Outcome {
    let count = 20 * u64::from(cx.scale);
    let results = concurrently(count, 4, |i| {
        let cx = cx.clone();
        let mut rng = mutate::rng(cx.seed.wrapping_add(i));
        let text = mutate::invalid_utf8(&mut rng);
        let bytes = if i % 2 == 0 {
            frame(TEXT, &text, true)
        } else {
            let at = rng.random_range(1..text.len());
            [
                frame(0x01, &text[..at], true),
                frame(0x80, &text[at..], true),
            ]
            .concat()
        };
        async move {
            wire::violation_answered(&cx, bytes, &[1007], Duration::from_secs(10))
                .await
                .map_err(|e| format!("message {i}: {e}"))
        }
    })
    .await;
    let mut outcome = Outcome {
        attacks: count,
        ..Outcome::default()
    };
    for result in results {
        if let Err(error) = result {
            keep(&mut outcome, error);
        }
    }
    outcome
}

/// 10 x scale frame headers announcing 1 GiB followed by 8 KiB of it, 2 connections at a
/// time: a close with 1009 within 5 s of the write (the server refuses from the header,
/// never buffering the payload; the probe's RSS peak bound checks that), then a FIN.
pub(crate) async fn announced_oversize(cx: Cx) -> Outcome {
    let count = 10 * u64::from(cx.scale);
    let results = concurrently(count, 2, |_| {
        let cx = cx.clone();
        async move {
            let bytes = wire::announcing(TEXT, 1 << 30, &[b' '; 8192]);
            wire::violation_answered(&cx, bytes, &[1009], Duration::from_secs(5)).await
        }
    })
    .await;
    let mut outcome = Outcome {
        attacks: count,
        ..Outcome::default()
    };
    let mut slowest = Duration::ZERO;
    for result in results {
        match result {
            Ok(took) => slowest = slowest.max(took),
            Err(error) => keep(&mut outcome, error),
        }
    }
    outcome.note(format!("slowest 1009 after {} ms", slowest.as_millis()));
    outcome
}

/// What one session answered to a batch of frames followed by a sentinel subscribe.
struct Exchange {
    /// The error codes of the error frames.
    errors: Vec<String>,
    /// The close code, if the session was closed before the sentinel was answered.
    closed: Option<u16>,
}

/// The close codes a session may end with after hostile text frames: 1007 (not UTF-8), 1008
/// (the 10th malformed frame), 1009 (over the size limit), 4429 (past the rate).
const HOSTILE_CLOSES: [u16; 4] = [1007, 1008, 1009, 4429];

/// Sends `frames` as masked text frames on a fresh session, then a subscribe with a sentinel
/// id, and reads until the sentinel is answered or the session closes. Every server frame
/// must be a documented message (errors with a code of the table), every close one of
/// [`HOSTILE_CLOSES`] followed by a FIN.
async fn exchange(cx: &Cx, frames: &[Vec<u8>], sentinel: &str) -> Result<Exchange, String> {
    let mut stream = wire::session(cx, None).await?;
    let mut bytes = Vec::new();
    for payload in frames {
        bytes.extend(frame(TEXT, payload, true));
    }
    let subscribe =
        json!({ "type": "subscribe", "id": sentinel, "channel": "project:sentinel:tasks" })
            .to_string();
    bytes.extend(frame(TEXT, subscribe.as_bytes(), true));
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.write_all(&bytes)).await;
    let mut exchange = Exchange {
        errors: Vec::new(),
        closed: None,
    };
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match wire::read_frame(&mut stream, left).await? {
            Some((1, payload)) => {
                let (kind, code) = tables::check_server_frame(&payload)?;
                if let Some(code) = code {
                    exchange.errors.push(code);
                }
                if payload
                    .windows(sentinel.len())
                    .any(|w| w == sentinel.as_bytes())
                    && (kind == "subscribed" || kind == "error")
                {
                    return Ok(exchange);
                }
            }
            Some((8, payload)) => {
                let code = wire::close_code(&payload).unwrap_or(0);
                if !HOSTILE_CLOSES.contains(&code) || !tables::close_code_sent(code) {
                    return Err(format!("closed with {code}, not a documented answer"));
                }
                exchange.closed = Some(code);
                return Ok(exchange);
            }
            Some((opcode, _)) if opcode == 9 || opcode == 10 => {}
            other => return Err(format!("got {}", wire::describe(&other))),
        }
    }
}

/// 1000 x scale byte mutations (seeded) of the client-message vectors of `schema/vectors`
/// (valid and invalid), 20 to a session, 3 sessions at a time, each batch followed by a
/// sentinel subscribe: every server frame a documented message, every error code in the
/// table, every close one of 1007, 1008, 1009 or 4429. A spawned server's ticket and session
/// rates are raised (the mutations, not their rate, are the attack).
pub(crate) async fn mutated_vectors(cx: Cx) -> Outcome {
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for text in tables::CLIENT_VECTORS {
        let (valid, invalid) = tables::vectors(text);
        seeds.extend(
            valid
                .iter()
                .chain(&invalid)
                .map(|v| v.to_string().into_bytes()),
        );
    }
    let per_session = 20u64;
    let sessions = 50 * u64::from(cx.scale);
    let seeds = &seeds;
    let results = concurrently(sessions, 3, |s| {
        let cx = cx.clone();
        let mut rng = mutate::rng(cx.seed.wrapping_add(s));
        let frames: Vec<Vec<u8>> = (0..per_session)
            .map(|_| {
                let seed = &seeds[rng.random_range(0..seeds.len())];
                mutate::bytes(&mut rng, seed)
            })
            .collect();
        async move {
            exchange(&cx, &frames, &format!("sentinel-{s}"))
                .await
                .map_err(|e| format!("session {s}: {e}"))
        }
    })
    .await;
    let mut outcome = Outcome {
        attacks: sessions * per_session,
        ..Outcome::default()
    };
    let mut tally = Tally::default();
    for result in results {
        match result {
            Ok(exchange) => {
                for code in exchange.errors {
                    tally.add(code);
                }
                if let Some(code) = exchange.closed {
                    tally.add(format!("close {code}"));
                }
            }
            Err(error) => keep(&mut outcome, error),
        }
    }
    outcome.note(tally.note());
    outcome
}

/// `depth` nested arrays.
fn arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// `depth` nested objects.
fn objects(depth: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
}

/// Hostile JSON, scale times over: nesting 100 to 60 000 deep as whole frames and as publish
/// payloads, numbers past a double (1e400, 2^64, a 100 000-digit integer) as a subscribe's
/// `from.seq`, a payload's `progress` and a whole frame. Over the WebSocket each case goes on
/// a session of its own and must be answered with a documented error or close (see
/// [`exchange`]); over `POST /v1/publish` with 400, 413 or 422 and a JSON error body.
pub(crate) async fn deep_json(cx: Cx) -> Outcome {
    let huge = format!("1{}", "0".repeat(100_000));
    let numbers = [
        "1e400",
        "-1e400",
        "18446744073709551616",
        "9007199254740993",
        "1.5",
        "-1",
    ];
    let mut texts: Vec<String> = Vec::new();
    for depth in [100, 1000, 10_000, 60_000] {
        texts.push(arrays(depth));
    }
    for depth in [100, 1000, 10_000, 20_000] {
        texts.push(objects(depth));
    }
    texts.push(huge[..60_000].to_owned());
    let mut payloads: Vec<String> = vec![arrays(10_000), objects(5000)];
    for number in numbers {
        texts.push(format!(
            r#"{{"type":"subscribe","id":"n","channel":"project:alpha:tasks","from":{{"epoch":"ep-1","seq":{number}}}}}"#
        ));
        payloads.push(format!(
            r#"{{"task_id":"T-1","status":"running","progress":{number},"assignee":null}}"#
        ));
    }
    payloads.push(format!(
        r#"{{"task_id":"T-1","status":"running","progress":{},"assignee":null}}"#,
        &huge[..50_000]
    ));
    for payload in &payloads {
        texts.push(format!(
            r#"{{"type":"publish","id":"p","channel":"project:alpha:tasks","idempotency_key":"deep","payload":{payload}}}"#
        ));
    }
    let mut outcome = Outcome::default();
    let mut tally = Tally::default();
    for round in 0..u64::from(cx.scale) {
        for (n, text) in texts.iter().enumerate() {
            outcome.attacks += 1;
            let sentinel = format!("deep-{round}-{n}");
            match exchange(&cx, &[text.clone().into_bytes()], &sentinel).await {
                Ok(exchange) => {
                    for code in exchange.errors {
                        tally.add(format!("ws {code}"));
                    }
                    if let Some(code) = exchange.closed {
                        tally.add(format!("ws close {code}"));
                    }
                }
                Err(error) => keep(
                    &mut outcome,
                    format!("frame {n} ({} bytes): {error}", text.len()),
                ),
            }
        }
        for (n, payload) in payloads.iter().enumerate() {
            outcome.attacks += 1;
            let body = format!(
                r#"{{"channel":"project:alpha:tasks","idempotency_key":"deep-{round}-{n}","payload":{payload}}}"#
            );
            match publish(&cx, body.into_bytes())
                .await
                .and_then(|a| judged(&a))
            {
                Ok(got)
                    if [
                        "400 bad_request",
                        "413 message_too_large",
                        "422 payload_invalid",
                    ]
                    .contains(&got.as_str()) =>
                {
                    tally.add(format!("http {got}"));
                }
                Ok(got) => keep(&mut outcome, format!("payload {n} was answered {got}")),
                Err(error) => keep(&mut outcome, format!("payload {n}: {error}")),
            }
        }
    }
    outcome.note(tally.note());
    outcome
}

/// Two floods on sessions of their own. WebSocket pings: 2000 x scale ping frames of 125
/// bytes in one write without reading, then a subscribe, which must be answered (pings are
/// the WebSocket layer's to answer, not metered as frames) with at least one pong before it.
/// Then frames past the session's rate (default 10/s, bursts of 20): 5 x scale sessions each
/// sending 30 pongs at once, each answered with `rate_limited` errors and a close with 4429
/// (at the 5th refusal within a second), then a FIN.
pub(crate) async fn ping_flood(cx: Cx) -> Outcome {
    let mut outcome = Outcome::default();
    let pings = 2000 * u64::from(cx.scale);
    match ping_burst(&cx, pings).await {
        Ok(pongs) => outcome.note(format!("{pings} pings, {pongs} pongs, session answered")),
        Err(error) => outcome.fail(format!("after {pings} pings: {error}")),
    }
    outcome.attacks += pings;
    let mut tally = Tally::default();
    for s in 0..5 * u64::from(cx.scale) {
        outcome.attacks += 30;
        let frames: Vec<Vec<u8>> = (0..30)
            .map(|k| {
                json!({ "type": "pong", "nonce": format!("flood-{s}-{k}") })
                    .to_string()
                    .into_bytes()
            })
            .collect();
        match exchange(&cx, &frames, &format!("flood-{s}")).await {
            Ok(exchange)
                if exchange.closed == Some(4429)
                    && exchange.errors.iter().any(|c| c == "rate_limited") =>
            {
                tally.add("4429 after rate_limited");
            }
            Ok(exchange) => keep(
                &mut outcome,
                format!(
                    "30 pongs at once: errors {:?}, close {:?} (expected rate_limited and 4429)",
                    exchange.errors, exchange.closed
                ),
            ),
            Err(error) => keep(&mut outcome, format!("30 pongs at once: {error}")),
        }
    }
    outcome.note(tally.note());
    outcome
}

async fn ping_burst(cx: &Cx, pings: u64) -> Result<u64, String> {
    let mut stream = wire::session(cx, None).await?;
    let one = frame(PING, &[b'p'; 125], true);
    let mut bytes = Vec::with_capacity(one.len() * pings as usize);
    for _ in 0..pings {
        bytes.extend_from_slice(&one);
    }
    let subscribe =
        json!({ "type": "subscribe", "id": "after-pings", "channel": "project:pings:tasks" })
            .to_string();
    bytes.extend(frame(TEXT, subscribe.as_bytes(), true));
    let write = stream.write_all(&bytes);
    tokio::time::timeout(Duration::from_secs(30), write)
        .await
        .map_err(|_| "the pings were not read within 30 s".to_owned())?
        .map_err(|e| format!("write: {e}"))?;
    let mut pongs = 0;
    loop {
        match wire::read_frame(&mut stream, Duration::from_secs(20)).await? {
            Some((10, _)) => pongs += 1,
            Some((1, payload)) if payload.windows(11).any(|w| w == b"after-pings") => {
                tables::check_server_frame(&payload)?;
                if pongs == 0 {
                    return Err("no pong came back".to_owned());
                }
                return Ok(pongs);
            }
            Some((1, _)) => {}
            other => return Err(format!("got {}", wire::describe(&other))),
        }
    }
}

/// Opens sessions for the one user up to its limit (the neighbour holds two of its slots),
/// then 20 x scale more, each of which must be closed with 4409 as its first frame and then
/// end with a FIN; then one session is closed and a new one must be welcomed within 10 s.
pub(crate) async fn connection_limit(cx: Cx) -> Outcome {
    let mut outcome = Outcome::default();
    let free = cx
        .max_connections_per_user
        .saturating_sub(cx.neighbour_sessions);
    let mut held = Vec::new();
    for _ in 0..free {
        match wire::session(&cx, None).await {
            Ok(stream) => held.push(stream),
            Err(error) => {
                outcome.fail(format!(
                    "session {} of {free} below the limit: {error}",
                    held.len() + 1
                ));
                return outcome;
            }
        }
    }
    let over = 20 * u64::from(cx.scale);
    let mut tally = Tally::default();
    for _ in 0..over {
        outcome.attacks += 1;
        match over_limit(&cx).await {
            Ok(()) => tally.add("4409"),
            Err(error) => keep(&mut outcome, error),
        }
    }
    drop(held.pop());
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        match wire::session(&cx, None).await {
            Ok(stream) => {
                held.push(stream);
                break;
            }
            Err(error) if Instant::now() > until => {
                outcome.fail(format!(
                    "a slot given back was not usable within 10 s: {error}"
                ));
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    outcome.note(format!("{free} held, {}", tally.note()));
    outcome
}

/// One session past the limit: 4409 as the first frame, then a FIN.
async fn over_limit(cx: &Cx) -> Result<(), String> {
    let ticket = target::ticket(&cx.http, &cx.base, &cx.token).await?;
    let mut stream = wire::connect(&cx.address, None).await?;
    wire::upgrade(&mut stream, &cx.address, &ticket).await?;
    let ending = wire::until_close(&mut stream, Duration::from_secs(10)).await;
    match (ending.code, ending.texts.len(), ending.clean) {
        (Some(4409), 0, true) => Ok(()),
        (code, texts, clean) => Err(format!(
            "past the limit: close {code:?} after {texts} text frames, FIN {clean} (expected 4409 first)"
        )),
    }
}

/// 20 x scale tickets, each presented by 8 connections whose upgrades are written at once:
/// exactly one is welcomed, the other seven are closed with 4401 before any other frame.
pub(crate) async fn ticket_race(cx: Cx) -> Outcome {
    let rounds = 20 * u64::from(cx.scale);
    let racers = 8;
    let mut outcome = Outcome::default();
    let mut tally = Tally::default();
    for round in 0..rounds {
        outcome.attacks += racers;
        match race(&cx, racers).await {
            Ok((1, rejected)) if rejected == racers - 1 => tally.add("one welcome"),
            Ok((welcomed, rejected)) => keep(
                &mut outcome,
                format!(
                    "round {round}: {welcomed} welcomed, {rejected} closed with 4401 of {racers}"
                ),
            ),
            Err(error) => keep(&mut outcome, format!("round {round}: {error}")),
        }
    }
    outcome.note(tally.note());
    outcome
}

async fn race(cx: &Cx, racers: u64) -> Result<(u64, u64), String> {
    let ticket = target::ticket(&cx.http, &cx.base, &cx.token).await?;
    let mut streams = Vec::new();
    for _ in 0..racers {
        streams.push(wire::connect(&cx.address, None).await?);
    }
    let request = wire::upgrade_request(&cx.address, &ticket);
    let writes = streams.iter_mut().map(|s| {
        let request = request.clone();
        async move { s.write_all(request.as_bytes()).await }
    });
    for result in futures_util::future::join_all(writes).await {
        result.map_err(|e| format!("write: {e}"))?;
    }
    let reads = streams.iter_mut().map(|s| async move {
        let head = wire::read_head(s, Duration::from_secs(10)).await?;
        if !head.starts_with("HTTP/1.1 101") {
            return Err(format!("answered {}", head.lines().next().unwrap_or("")));
        }
        wire::read_frame(s, Duration::from_secs(10)).await
    });
    let mut welcomed = 0;
    let mut rejected = 0;
    for first in futures_util::future::join_all(reads).await {
        match first? {
            Some((1, payload)) if payload.windows(9).any(|w| w == b"\"welcome\"") => welcomed += 1,
            Some((8, payload)) if wire::close_code(&payload) == Some(4401) => rejected += 1,
            other => return Err(format!("a racer got {}", wire::describe(&other))),
        }
    }
    Ok((welcomed, rejected))
}
