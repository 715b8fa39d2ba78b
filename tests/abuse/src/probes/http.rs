//! Probes of the HTTP layer: stalled bodies, slowloris, mutated requests, mutated payloads.

use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Tally, answer, concurrently, judged, keep, publish};
use crate::{Cx, Outcome, mutate, tables, wire};

/// The four ways of stalling a publish body, each answered before the body could pin memory:
/// a `Content-Length` past `max_message_bytes` (413 at once), no credential (401 at once), a
/// chunked body that passes the limit (413 as it passes), a body within the limit that stops
/// arriving (400 within the server's 10 s body timeout). 25 x scale of each, 400 at a time.
/// A spawned server's publish rate is raised, so that every body reaches the limit or the
/// timeout it tests rather than a 429 (against `--url`, 429 `rate_limited` is accepted).
pub(crate) async fn stalled_bodies(cx: Cx) -> Outcome {
    #[derive(Clone, Copy)]
    enum Kind {
        Oversized,
        Anonymous,
        Chunked,
        Stalled,
    }
    let kinds = [
        Kind::Oversized,
        Kind::Anonymous,
        Kind::Chunked,
        Kind::Stalled,
    ];
    let count = 25 * u64::from(cx.scale);
    let results = concurrently(count * 4, 400, |i| {
        let cx = cx.clone();
        let kind = kinds[(i % 4) as usize];
        async move {
            let mut stream = wire::connect(&cx.address, None).await?;
            let auth = format!("Authorization: Bearer {}\r\n", cx.token);
            let (head, body, expected, within): (String, Vec<u8>, &[&str], u64) = match kind {
                Kind::Oversized => (
                    format!("POST /v1/publish HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\nContent-Length: 2000000\r\n\r\n", cx.address),
                    b"{\"channel\":".to_vec(),
                    &["413 message_too_large"],
                    5,
                ),
                Kind::Anonymous => (
                    format!("POST /v1/publish HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n", cx.address),
                    b"{\"channel\":".to_vec(),
                    &["401 unauthorized"],
                    5,
                ),
                Kind::Chunked => {
                    let mut body = Vec::new();
                    for _ in 0..50 {
                        body.extend_from_slice(b"1000\r\n");
                        body.extend(std::iter::repeat_n(b' ', 4096));
                        body.extend_from_slice(b"\r\n");
                    }
                    (
                        format!("POST /v1/publish HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n", cx.address),
                        body,
                        &["413 message_too_large"],
                        5,
                    )
                }
                Kind::Stalled => (
                    format!("POST /v1/publish HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n", cx.address),
                    [&br#"{"channel":"project:alpha:tasks","idempotency_key":"k","payload":{"task_id":""#[..], &[b'x'; 1000][..]].concat(),
                    &["400 bad_request"],
                    // The server's body timeout is 10 s; a loaded machine gets 10 s more.
                    20,
                ),
            };
            stream
                .write_all(head.as_bytes())
                .await
                .map_err(|e| format!("write: {e}"))?;
            let _ = stream.write_all(&body).await;
            let sent = Instant::now();
            let response = wire::read_response(&mut stream, Duration::from_secs(within)).await?;
            let content_type = response
                .head
                .lines()
                .find_map(|l| l.strip_prefix("content-type:"))
                .unwrap_or("")
                .trim()
                .to_owned();
            let code = tables::check_error_body(response.status, &content_type, &response.body)?;
            let got = format!("{} {code}", response.status);
            let limited = got == "429 rate_limited" && !cx.spawned && !matches!(kind, Kind::Anonymous);
            if !expected.contains(&got.as_str()) && !limited {
                return Err(format!("answered {got}, expected one of {expected:?}"));
            }
            Ok::<_, String>((got, response.at - sent))
        }
    })
    .await;
    let mut outcome = Outcome {
        attacks: count * 4,
        ..Outcome::default()
    };
    let mut tally = Tally::default();
    let mut slowest = Duration::ZERO;
    for result in results {
        match result {
            Ok((got, waited)) => {
                tally.add(got);
                slowest = slowest.max(waited);
            }
            Err(error) => keep(&mut outcome, error),
        }
    }
    outcome.note(tally.note());
    outcome.note(format!("slowest answer {} ms", slowest.as_millis()));
    outcome
}

/// 100 x scale connections (at most 500 open at once, which keeps this process within a
/// 1024-descriptor limit and the server far from its connection cap, so the health check
/// measures the timeout and not the cap), each sending a request head one byte every 200 ms: each must be
/// closed by the server without a byte of answer once its header-read timeout is up (1 s on a
/// spawned server, `--header-read-timeout-ms 1000`, so the probe is short; 10 s by default),
/// within that timeout plus 10 s, while `/v1/health` keeps answering.
pub(crate) async fn slowloris(cx: Cx) -> Outcome {
    let count = 100 * u64::from(cx.scale);
    let timeout = if cx.spawned { 1 } else { 10 };
    let attack = concurrently(count, 500, |_| {
        let cx = cx.clone();
        async move {
            let mut stream = wire::connect(&cx.address, None).await?;
            let opened = Instant::now();
            let head = format!(
                "GET /v1/health HTTP/1.1\r\nHost: {}\r\nX-Slow: ",
                cx.address
            );
            let mut bytes = head.bytes().cycle();
            let mut buffer = [0u8; 256];
            let until = opened + Duration::from_secs(timeout + 10);
            loop {
                if Instant::now() > until {
                    return Err(format!("still open after {} s", timeout + 10));
                }
                tokio::select! {
                    read = stream.read(&mut buffer) => {
                        return match read {
                            Ok(0) | Err(_) => Ok(opened.elapsed()),
                            Ok(n) => Err(format!("answered {:?} instead of closing", String::from_utf8_lossy(&buffer[..n]))),
                        };
                    }
                    () = tokio::time::sleep(Duration::from_millis(200)) => {
                        let byte = [bytes.next().unwrap_or(b'a')];
                        if stream.write_all(&byte).await.is_err() {
                            return Ok(opened.elapsed());
                        }
                    }
                }
            }
        }
    });
    let health = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        crate::target::health(&cx.http, &cx.base).await
    };
    let (results, health) = tokio::join!(attack, health);
    let mut outcome = Outcome {
        attacks: count,
        ..Outcome::default()
    };
    if let Err(error) = health {
        outcome.fail(format!("/v1/health during the attack: {error}"));
    }
    let mut longest = Duration::ZERO;
    for result in results {
        match result {
            Ok(held) => longest = longest.max(held),
            Err(error) => keep(&mut outcome, error),
        }
    }
    outcome.note(format!(
        "longest held {} ms (timeout {timeout} s)",
        longest.as_millis()
    ));
    outcome
}

/// The routes and some paths beside them.
const PATHS: [&str; 20] = [
    "/v1/tickets",
    "/v1/ws",
    "/v1/publish",
    "/v1/history",
    "/v1/health",
    "/v1/ready",
    "/metrics",
    "/",
    "/v1",
    "/v1/",
    "/v1/tickets/",
    "/V1/TICKETS",
    "/v1/history/x",
    "/v1/%2e%2e/metrics",
    "/v1/ws/../tickets",
    "//v1/health",
    "/v2/tickets",
    "/metrics.json",
    "/v1/publish%00",
    "/v1/health?",
];

const QUERIES: [&str; 14] = [
    "",
    "?channel=project:alpha:tasks",
    "?channel=",
    "?channel=%ff%fe",
    "?channel=project:alpha:tasks&limit=0",
    "?channel=project:alpha:tasks&limit=1001",
    "?channel=project:alpha:tasks&limit=-1",
    "?channel=project:alpha:tasks&after_seq=18446744073709551616",
    "?channel=project:alpha:tasks&epoch=ep-x&after_seq=1",
    "?channel=project:alpha:tasks&limit=1e3",
    "?channel=nope:x:y",
    "?ticket=0000",
    "?ticket=",
    "?channel=project:alpha:tasks&channel=agent:a:activity",
];

/// 400 x scale requests, each a seeded mix of method, path, query, credential, content type,
/// Origin and body (none, a vector of an HTTP body, a byte mutation of one, random bytes, or
/// 200 KB): no answer is a 5xx; every error is a JSON `ErrorBody` whose code the table answers
/// with that status, 429 with `retry_after_ms` and `Retry-After`, 405 with `Allow`.
pub(crate) async fn http_fuzz(cx: Cx) -> Outcome {
    let count = 400 * u64::from(cx.scale);
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    for text in tables::HTTP_VECTORS {
        let (valid, invalid) = tables::vectors(text);
        bodies.extend(
            valid
                .iter()
                .chain(&invalid)
                .map(|v| v.to_string().into_bytes()),
        );
    }
    // A connection of its own for each request: a server closes a connection whose request
    // body it did not read, and a pooled client would race that close with its next request.
    let http = match reqwest::Client::builder().pool_max_idle_per_host(0).build() {
        Ok(http) => http,
        Err(error) => {
            let mut outcome = Outcome::default();
            outcome.fail(format!("an HTTP client: {error}"));
            return outcome;
        }
    };
    let methods = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "FERRY",
    ];
    let results = concurrently(count, 4, |i| {
        let cx = cx.clone();
        let mut rng = mutate::rng(cx.seed.wrapping_add(i));
        let method = methods[rng.random_range(0..methods.len())];
        let path = PATHS[rng.random_range(0..PATHS.len())];
        let query = QUERIES[rng.random_range(0..QUERIES.len())];
        let auth = match rng.random_range(0..6) {
            0 => None,
            1 => Some("Bearer not-a-token".to_owned()),
            2 => Some(format!("bearer {}", cx.token)),
            3 => Some("Basic Zm9vOmJhcg==".to_owned()),
            4 => Some(format!("Bearer {}", "x".repeat(8192))),
            _ => Some(format!("Bearer {}", cx.token)),
        };
        let content_type = [
            None,
            Some("application/json"),
            Some("text/plain"),
            Some("application/json; charset=utf-16"),
            Some("multipart/form-data; boundary=x"),
        ][rng.random_range(0..5)];
        let body: Option<Vec<u8>> = match rng.random_range(0..5) {
            0 => None,
            1 => Some(bodies[rng.random_range(0..bodies.len())].clone()),
            2 => {
                let base = &bodies[rng.random_range(0..bodies.len())];
                Some(mutate::bytes(&mut rng, base))
            }
            3 => Some(
                (0..rng.random_range(0..2048))
                    .map(|_| rng.random())
                    .collect(),
            ),
            _ => Some(vec![b'['; 200_000]),
        };
        let origin = rng.random_bool(0.2).then_some("https://evil.example");
        let http = http.clone();
        async move {
            let method =
                reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
            let mut request = http.request(method.clone(), format!("{}{path}{query}", cx.base));
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            if let Some(origin) = origin {
                request = request.header("origin", origin);
            }
            let large = body.as_ref().is_some_and(|b| b.len() > 64 * 1024);
            if let Some(body) = body {
                request = request.body(body);
            }
            let what = format!("{method} {path}{query}");
            let answer = match answer(request).await {
                Ok(answer) => answer,
                // A server may answer a request it refuses before reading its body, and close
                // the connection then; a client still writing a large body sees its pipe
                // break instead of the answer. That is HTTP/1.1, not a failure.
                Err(error)
                    if large && (error.contains("Broken pipe") || error.contains("reset")) =>
                {
                    return Ok("closed before a large body was sent".to_owned());
                }
                Err(error) => return Err(format!("{what}: {error}")),
            };
            if answer.status >= 500 {
                return Err(format!(
                    "{what}: {} {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body[..answer.body.len().min(200)])
                ));
            }
            if answer.status == 405 && answer.allow.is_none() {
                return Err(format!("{what}: 405 without Allow"));
            }
            if method == reqwest::Method::HEAD || answer.status < 400 {
                return Ok(answer.status.to_string());
            }
            judged(&answer).map_err(|e| format!("{what}: {e}"))
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
            Ok(got) if got.starts_with("closed") => tally.add(got),
            Ok(got) => tally.add(got.split(' ').next().unwrap_or("").to_owned()),
            Err(error) => keep(&mut outcome, error),
        }
    }
    outcome.note(tally.note());
    outcome
}

/// First each payload vector of the example application as it is (every valid one 200, every
/// invalid one 422 `payload_invalid`), then 1000 x scale seeded mutations: of the payload's
/// structure (fields removed, added, retyped, strings grown) or of the request's bytes. Each
/// answer 200, 400, 404 (a mutated channel name), 413 or 422 (429 too against a server whose publish rate was not raised),
/// every error a JSON `ErrorBody`, never a 5xx.
pub(crate) async fn payload_fuzz(cx: Cx) -> Outcome {
    let mut cases: Vec<(&str, Value, bool)> = Vec::new();
    for (channel, text) in tables::PAYLOAD_VECTORS {
        let (valid, invalid) = tables::vectors(text);
        cases.extend(valid.into_iter().map(|v| (channel, v, true)));
        cases.extend(invalid.into_iter().map(|v| (channel, v, false)));
    }
    let mut outcome = Outcome::default();
    let salt = cx.seed;
    for (n, (channel, payload, valid)) in cases.iter().enumerate() {
        let body = json!({ "channel": channel, "idempotency_key": format!("fz-{salt}-v{n}"), "payload": payload });
        outcome.attacks += 1;
        match publish(&cx, body.to_string().into_bytes())
            .await
            .and_then(|a| judged(&a))
        {
            Ok(got) if *valid && got == "200" => {}
            Ok(got) if !valid && got == "422 payload_invalid" => {}
            Ok(got) if got.starts_with("429") && !cx.spawned => {}
            Ok(got) => keep(
                &mut outcome,
                format!(
                    "the {} vector {payload} on {channel} was answered {got}",
                    if *valid { "valid" } else { "invalid" }
                ),
            ),
            Err(error) => keep(&mut outcome, format!("vector {payload}: {error}")),
        }
    }
    let count = 1000 * u64::from(cx.scale);
    let cases = &cases;
    let results = concurrently(count, 4, |i| {
        let cx = cx.clone();
        let mut rng = mutate::rng(cx.seed.wrapping_add(i));
        let (channel, payload, _) = &cases[rng.random_range(0..cases.len())];
        let key = format!("fz-{salt}-m{i}");
        let body = if rng.random_bool(0.7) {
            let payload = mutate::value(&mut rng, payload);
            json!({ "channel": channel, "idempotency_key": key, "payload": payload })
                .to_string()
                .into_bytes()
        } else {
            let body = json!({ "channel": channel, "idempotency_key": key, "payload": payload });
            mutate::bytes(&mut rng, body.to_string().as_bytes())
        };
        async move {
            let answer = publish(&cx, body).await?;
            let got = judged(&answer)?;
            let allowed = [
                "200",
                "400 bad_request",
                "404 unknown_channel",
                "413 message_too_large",
                "422 payload_invalid",
            ];
            if allowed.contains(&got.as_str()) || (got == "429 rate_limited" && !cx.spawned) {
                Ok(got)
            } else {
                Err(format!("a mutated payload was answered {got}"))
            }
        }
    })
    .await;
    outcome.attacks += count;
    let mut tally = Tally::default();
    for result in results {
        match result {
            Ok(got) => tally.add(got),
            Err(error) => keep(&mut outcome, error),
        }
    }
    outcome.note(tally.note());
    outcome
}
