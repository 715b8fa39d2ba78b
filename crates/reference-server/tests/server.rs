//! ferry-server over real loopback sockets: tickets, the walkthrough, bad input, limits and
//! graceful shutdown. Raw WebSocket frames are used so that anything, valid or not, can be sent.

mod common;

use common::{next_json, send};

use std::sync::Arc;
use std::time::Duration;

use ferry_server::Server;
use ferry_server::auth::Auth;
use ferry_server::broker::{Broker, MemoryBroker};
use ferry_server::config::Flags;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const MAX_BYTES: u64 = 4_096;

/// A server on a random loopback port with development auth, and the means to stop it.
struct Running {
    base: String,
    token: String,
    server: Arc<Server<MemoryBroker>>,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
    http: reqwest::Client,
}

impl Running {
    async fn start() -> Self {
        Self::start_with(Flags::default()).await
    }

    async fn start_with(flags: Flags) -> Self {
        let (auth, token) = Auth::development();
        Self::start_with_auth(flags, auth, token).await
    }

    async fn start_with_auth(flags: Flags, auth: Auth, token: String) -> Self {
        // The tests issue tickets and publish as fast as they can, far past the default
        // per-caller rates (FERRY-RATE-4), which tests/limits.rs checks.
        let unmetered = Some(100_000);
        let flags = Flags {
            max_message_bytes: Some(MAX_BYTES),
            drain_period_ms: Some(2_000),
            ticket_rate_limit_per_second: flags.ticket_rate_limit_per_second.or(unmetered),
            ticket_rate_limit_burst: flags.ticket_rate_limit_burst.or(unmetered),
            publish_rate_limit_per_second: flags.publish_rate_limit_per_second.or(unmetered),
            publish_rate_limit_burst: flags.publish_rate_limit_burst.or(unmetered),
            ..flags
        };
        let common::InProcess {
            server,
            address,
            stop,
            done,
        } = common::in_process(flags, auth, None).await;
        let base = format!("http://{address}");
        Self {
            base,
            token,
            server,
            stop: Some(stop),
            done,
            http: reqwest::Client::new(),
        }
    }

    async fn ticket(&self) -> String {
        let response = self
            .http
            .post(format!("{}/v1/tickets", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("the ticket endpoint answers");
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.expect("JSON");
        body["ticket"].as_str().expect("a ticket").to_owned()
    }

    async fn open(&self, ticket: &str) -> Socket {
        let url = format!(
            "{}/v1/ws?ticket={ticket}",
            self.base.replace("http://", "ws://")
        );
        let mut request = url.into_client_request().expect("a URL");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("ferry.v1"),
        );
        tokio_tungstenite::connect_async(request)
            .await
            .expect("the upgrade succeeds")
            .0
    }

    /// A welcomed session.
    async fn session(&self) -> Socket {
        let ticket = self.ticket().await;
        let mut socket = self.open(&ticket).await;
        let welcome = next_json(&mut socket).await;
        assert_eq!(welcome["type"], "welcome");
        socket
    }

    async fn publish(&self, body: Value) -> (u16, Value) {
        self.publish_text(body.to_string()).await
    }

    async fn publish_text(&self, body: String) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/v1/publish", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("answers");
        (
            response.status().as_u16(),
            response.json().await.expect("JSON"),
        )
    }
}

/// The close code the server ends the connection with, within five seconds.
async fn close_code(socket: &mut Socket) -> Option<u16> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("closed within 5 s")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

fn task(n: u64) -> Value {
    json!({ "task_id": format!("T-{n}"), "status": "running", "progress": 0.5, "assignee": null })
}

/// Another session subscribed before the bad input still works afterwards.
async fn still_works(running: &Running, witness: &mut Socket, n: u64) {
    let (status, _) = running.publish(json!({ "channel": "project:alpha:tasks", "idempotency_key": format!("witness-{n}"), "payload": task(n) })).await;
    assert_eq!(status, 200);
    let event = next_json(witness).await;
    assert_eq!(
        event["type"], "event",
        "the other connection still receives events"
    );
}

async fn witness(running: &Running) -> Socket {
    let mut socket = running.session().await;
    send(
        &mut socket,
        json!({ "type": "subscribe", "id": "w", "channel": "project:alpha:tasks" }),
    )
    .await;
    assert_eq!(next_json(&mut socket).await["type"], "subscribed");
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_walkthrough_works_ticket_connect_subscribe_publish_event_history() {
    let running = Running::start().await;
    let mut socket = running.session().await;
    send(
        &mut socket,
        json!({ "type": "subscribe", "id": "r1", "channel": "project:alpha:tasks" }),
    )
    .await;
    let subscribed = next_json(&mut socket).await;
    assert_eq!(subscribed["type"], "subscribed");
    assert_eq!(subscribed["position"]["seq"], 0);
    let (status, ack) = running.publish(json!({ "channel": "project:alpha:tasks", "idempotency_key": "k-1", "payload": task(1) })).await;
    assert_eq!(status, 200, "{ack}");
    let event = next_json(&mut socket).await;
    assert_eq!(event["type"], "event");
    assert_eq!(event["position"], ack["position"]);
    assert_eq!(event["payload"], task(1));
    // The same key again is acknowledged with the original position and not delivered again.
    let (_, again) = running.publish(json!({ "channel": "project:alpha:tasks", "idempotency_key": "k-1", "payload": task(1) })).await;
    assert_eq!(again["position"], ack["position"]);
    assert_eq!(again["duplicate"], true, "FERRY-DEDUP-1");
    let history: Value = running
        .http
        .get(format!(
            "{}/v1/history?channel=project:alpha:tasks",
            running.base
        ))
        .bearer_auth(&running.token)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        history["events"].as_array().map(Vec::len),
        Some(1),
        "{history}"
    );
    assert_eq!(history["complete"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_works_once_and_a_forged_one_never() {
    let running = Running::start().await;
    let ticket = running.ticket().await;
    let mut first = running.open(&ticket).await;
    assert_eq!(next_json(&mut first).await["type"], "welcome");
    let mut reused = running.open(&ticket).await;
    assert_eq!(
        close_code(&mut reused).await,
        Some(4401),
        "FERRY-TICKET-4: a used ticket"
    );
    let mut forged = running.open("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await;
    assert_eq!(
        close_code(&mut forged).await,
        Some(4401),
        "FERRY-TICKET-3: an unknown ticket"
    );
    let url = format!("{}/v1/ws", running.base.replace("http://", "ws://"));
    let mut request = url.into_client_request().expect("a URL");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("ferry.v1"),
    );
    let mut missing = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade")
        .0;
    assert_eq!(
        close_code(&mut missing).await,
        Some(4401),
        "a missing ticket"
    );
    let unauthorized = running
        .http
        .post(format!("{}/v1/tickets", running.base))
        .bearer_auth("not-a-token")
        .send()
        .await
        .expect("answers");
    assert_eq!(unauthorized.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_connections_racing_on_one_ticket_get_exactly_one_welcome() {
    let running = Arc::new(Running::start().await);
    for _ in 0..5 {
        let ticket = running.ticket().await;
        let racers: Vec<_> = (0..4)
            .map(|_| {
                let (running, ticket) = (running.clone(), ticket.clone());
                tokio::spawn(async move {
                    let mut socket = running.open(&ticket).await;
                    match tokio::time::timeout(Duration::from_secs(5), socket.next()).await {
                        Ok(Some(Ok(Message::Text(text)))) => text.contains("\"welcome\""),
                        _ => false,
                    }
                })
            })
            .collect();
        let mut welcomed = 0;
        for racer in racers {
            welcomed += usize::from(racer.await.expect("the racer ran"));
        }
        assert_eq!(welcomed, 1, "FERRY-TICKET-4");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_documented_answer_and_other_connections_carry_on() {
    let running = Running::start().await;
    let mut other = witness(&running).await;

    let mut socket = running.session().await;
    socket
        .send(Message::text("{ not json"))
        .await
        .expect("send");
    let error = next_json(&mut socket).await;
    assert_eq!(
        (
            error["type"].as_str(),
            error["id"].is_null(),
            error["error"]["code"].as_str()
        ),
        (Some("error"), true, Some("bad_request"))
    );
    send(&mut socket, json!({ "type": "subscribe_all" })).await;
    assert_eq!(
        next_json(&mut socket).await["error"]["code"],
        "unknown_type"
    );
    send(
        &mut socket,
        json!({ "type": "subscribe", "id": 7, "channel": "project:alpha:tasks" }),
    )
    .await;
    assert_eq!(
        next_json(&mut socket).await["error"]["code"],
        "bad_request",
        "a wrong field type"
    );
    send(&mut socket, json!({ "type": "publish", "id": "p1", "channel": "project:alpha:tasks", "idempotency_key": "k", "payload": { "task_id": "T" } })).await;
    let refused = next_json(&mut socket).await;
    assert_eq!(
        (refused["id"].as_str(), refused["error"]["code"].as_str()),
        (Some("p1"), Some("payload_invalid")),
        "FERRY-CHANNEL-4"
    );
    // JSON by the grammar, but not a value every decoder reads: a lone surrogate, and a number
    // beyond a double. Events are relayed unparsed, so the publish is where they are refused.
    // The output channel is exclusive: the session holds it first (FERRY-HOLD-3).
    send(
        &mut socket,
        json!({ "type": "subscribe", "id": "h1", "channel": "daemon:ws-1:output", "hold": {} }),
    )
    .await;
    assert_eq!(next_json(&mut socket).await["type"], "subscribed");
    for payload in [
        r#"{"type":"chunk","run_id":"r","stream":"stdout","data":"\ud800"}"#,
        r#"{"type":"exited","run_id":"r","exit_code":1e400}"#,
    ] {
        let frame = format!(
            r#"{{"type":"publish","id":"p2","channel":"daemon:ws-1:output","idempotency_key":"k2","payload":{payload}}}"#
        );
        socket.send(Message::text(frame)).await.expect("send");
        let refused = next_json(&mut socket).await;
        assert_eq!(
            (refused["id"].as_str(), refused["error"]["code"].as_str()),
            (Some("p2"), Some("payload_invalid")),
            "{payload}"
        );
        let message = refused["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("not portable JSON"), "{message}");
        let body = format!(
            r#"{{"channel":"daemon:ws-1:output","idempotency_key":"k3","payload":{payload}}}"#
        );
        let (status, answer) = running.publish_text(body).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (422, Some("payload_invalid")),
            "{payload} over HTTP"
        );
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("not portable JSON"), "{message}");
    }
    send(
        &mut socket,
        json!({ "type": "subscribe", "id": "s9", "channel": "billing:invoices" }),
    )
    .await;
    assert_eq!(
        next_json(&mut socket).await["error"]["code"],
        "unknown_channel",
        "FERRY-CHANNEL-5"
    );
    still_works(&running, &mut other, 1).await;

    let mut binary = running.session().await;
    binary
        .send(Message::Binary(Bytes::from_static(b"{}")))
        .await
        .expect("send");
    assert_eq!(
        close_code(&mut binary).await,
        Some(1003),
        "FERRY-TRANSPORT-3"
    );
    still_works(&running, &mut other, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_one_byte_over_the_limit_closes_with_1009_and_one_at_the_limit_does_not() {
    let running = Running::start().await;
    let mut other = witness(&running).await;
    let frame = |size: usize| {
        let head = r#"{"type":"pong","nonce":""#;
        let tail = r#""}"#;
        format!("{head}{}{tail}", "n".repeat(size - head.len() - tail.len()))
    };
    let mut at_limit = running.session().await;
    at_limit
        .send(Message::text(frame(MAX_BYTES as usize)))
        .await
        .expect("send");
    // A nonce above 64 characters is a bad pong: an error, not a close.
    assert_eq!(
        next_json(&mut at_limit).await["error"]["code"],
        "bad_request"
    );
    let mut over = running.session().await;
    over.send(Message::text(frame(MAX_BYTES as usize + 1)))
        .await
        .expect("send");
    assert_eq!(close_code(&mut over).await, Some(1009), "FERRY-SIZE-3");
    still_works(&running, &mut other, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_rate_limited_then_closed_with_4429() {
    let running = Running::start().await;
    let mut other = witness(&running).await;
    let mut socket = running.session().await;
    for i in 0..60 {
        send(&mut socket, json!({ "type": "unsubscribe", "id": format!("u{i}"), "channel": "project:alpha:tasks" })).await;
    }
    let mut limited = 0;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("answers")
        {
            Some(Ok(Message::Text(text))) => limited += usize::from(text.contains("rate_limited")),
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            other => panic!("{other:?}"),
        }
    };
    assert!(limited >= 1, "FERRY-RATE-1: rate_limited before the close");
    assert_eq!(code, Some(4429), "FERRY-RATE-2");
    still_works(&running, &mut other, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_says_goodbye_closes_with_1012_and_keeps_acknowledged_publishes() {
    let mut running = Running::start().await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(running.session().await);
    }
    // A backend publishes without pause while the server stops.
    let publisher = {
        let (http, base, token) = (
            running.http.clone(),
            running.base.clone(),
            running.token.clone(),
        );
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for n in 0..100_000u64 {
                let body = json!({ "channel": "project:alpha:tasks", "idempotency_key": format!("k-{n}"), "payload": task(n) });
                let Ok(response) = http
                    .post(format!("{base}/v1/publish"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                else {
                    break;
                };
                if response.status() != 200 {
                    break;
                }
                let ack: Value = response.json().await.expect("JSON");
                acknowledged.push(ack["position"]["seq"].as_u64().expect("a seq"));
            }
            acknowledged
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    running
        .stop
        .take()
        .expect("running")
        .send(())
        .expect("the server listens for stop");
    for socket in &mut sessions {
        let goodbye = next_json(socket).await;
        assert_eq!(goodbye["type"], "goodbye", "FERRY-SHUTDOWN-1");
        let hint = goodbye["retry_after_ms"].as_u64().expect("a retry hint");
        assert!(hint <= 2_000, "within the drain period (FERRY-SHUTDOWN-2)");
        assert_eq!(
            close_code(socket).await,
            Some(u16::from(CloseCode::Restart)),
            "1012"
        );
    }
    let acknowledged = publisher.await.expect("the publisher ran");
    assert!(
        acknowledged.len() > 10,
        "publishes were acknowledged under traffic"
    );
    // Every acknowledged publish is in the history (FERRY-SHUTDOWN-3).
    let channel = "project:alpha:tasks".parse().expect("valid");
    let mut stored = Vec::new();
    let mut after = None;
    loop {
        let page = running
            .server
            .broker()
            .history(&channel, None, after, 1_000, running.server.now())
            .await
            .expect("the broker answers");
        let seqs: Vec<u64> = page.events.iter().map(|e| e.position.seq.get()).collect();
        let Some(&last) = seqs.last() else { break };
        stored.extend(seqs);
        after = Some(last);
    }
    for seq in &acknowledged {
        assert!(
            stored.contains(seq),
            "acknowledged seq {seq} is missing from the history"
        );
    }
    let done = tokio::time::timeout(Duration::from_secs(10), &mut running.done)
        .await
        .expect("stops within the drain period");
    assert!(done.expect("the task ran").is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_sessions_messages_rejections_and_closes() {
    let running = Running::start().await;
    let mut socket = running.session().await;
    socket
        .send(Message::text("{ not json"))
        .await
        .expect("send");
    assert_eq!(next_json(&mut socket).await["error"]["code"], "bad_request");
    let mut forged = running.open("BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB").await;
    assert_eq!(close_code(&mut forged).await, Some(4401));
    let refused = running
        .http
        .post(format!("{}/v1/tickets", running.base))
        .bearer_auth("wrong")
        .send()
        .await
        .expect("answers");
    assert_eq!(refused.status(), 401);

    let response = running
        .http
        .get(format!("{}/metrics", running.base))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    assert_eq!(
        content_type.as_deref(),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = response.text().await.expect("text");
    for line in [
        "ferry_sessions 1",
        "ferry_sessions_opened_total 1",
        "ferry_messages_total{direction=\"in\"} 1",
        "ferry_rejections_total{code=\"bad_request\"} 1",
        "ferry_rejections_total{code=\"unauthorized\"} 1",
        "ferry_closes_total{code=\"4401\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }

    // Without OpenMetrics in Accept, the classic text format, which promtool accepts as is.
    let classic = running
        .http
        .get(format!("{}/metrics", running.base))
        .send()
        .await
        .expect("answers");
    assert_eq!(
        classic.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let classic = classic.text().await.expect("text");
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian package prometheus; .ci/run installs it)");
    std::io::Write::write_all(
        &mut promtool.stdin.take().expect("stdin"),
        classic.as_bytes(),
    )
    .expect("write");
    let checked = promtool.wait_with_output().expect("promtool ends");
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool check metrics: {}{}\n{classic}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_origin_outside_the_allowlist_is_refused() {
    let running = Running::start_with(Flags {
        allowed_origins: Some(vec!["https://console.example".into()]),
        ..Flags::default()
    })
    .await;
    let attempt = |origin: &'static str| {
        let url = format!(
            "{}/v1/ws?ticket=unused",
            running.base.replace("http://", "ws://")
        );
        let mut request = url.into_client_request().expect("a URL");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("ferry.v1"),
        );
        request
            .headers_mut()
            .insert("origin", HeaderValue::from_static(origin));
        tokio_tungstenite::connect_async(request)
    };
    match attempt("https://evil.example").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403, "FERRY-SECURITY-1")
        }
        other => panic!("expected a 403, got {other:?}"),
    }
    let mut allowed = attempt("https://console.example")
        .await
        .expect("an allowed origin upgrades")
        .0;
    assert_eq!(
        close_code(&mut allowed).await,
        Some(4401),
        "then the (unused) ticket decides"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints_answer_cors_for_allowed_origins_only_and_401_carries_a_bearer_challenge() {
    let running = Running::start_with(Flags {
        allowed_origins: Some(vec!["https://console.example".into()]),
        ..Flags::default()
    })
    .await;
    let preflight = |origin: &'static str| {
        running
            .http
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/v1/tickets", running.base),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let allowed = preflight("https://console.example").await.expect("answers");
    assert!(allowed.status().is_success(), "{}", allowed.status());
    let headers = allowed.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://console.example"
    );
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .expect("ASCII")
            .contains("POST")
    );
    assert!(
        headers["access-control-allow-headers"]
            .to_str()
            .expect("ASCII")
            .contains("authorization")
    );
    let refused = preflight("https://evil.example").await.expect("answers");
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none(),
        "no CORS grant for an origin outside the allowlist"
    );
    // The actual request from an allowed page carries the grant too.
    let ticket = running
        .http
        .post(format!("{}/v1/tickets", running.base))
        .bearer_auth(&running.token)
        .header("origin", "https://console.example")
        .send()
        .await
        .expect("answers");
    assert_eq!(ticket.status(), 201);
    assert_eq!(
        ticket.headers()["access-control-allow-origin"],
        "https://console.example"
    );
    // 401: the bare scheme without a credential, invalid_token with a wrong one.
    let bare = running
        .http
        .post(format!("{}/v1/tickets", running.base))
        .send()
        .await
        .expect("answers");
    assert_eq!(bare.status(), 401);
    assert_eq!(bare.headers()["www-authenticate"], "Bearer");
    let wrong = running
        .http
        .post(format!("{}/v1/publish", running.base))
        .bearer_auth("not-the-token")
        .json(&task(1))
        .send()
        .await
        .expect("answers");
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        wrong.headers()["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_and_publish_outside_ones_permissions_are_refused_and_the_session_stays() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        "[[tokens]]\ntoken = \"t-viewer\"\nuser = \"viewer\"\npermissions = [{ pattern = \"project:alpha:*\", read = true, write = false }]\n",
    )
    .expect("write");
    let auth = Auth::from_file(&tokens).expect("a valid tokens file");
    let running = Running::start_with_auth(Flags::default(), auth, "t-viewer".into()).await;
    let mut socket = running.session().await;
    send(
        &mut socket,
        json!({ "type": "subscribe", "id": "s1", "channel": "project:beta:tasks" }),
    )
    .await;
    let refused = next_json(&mut socket).await;
    assert_eq!(
        (refused["id"].as_str(), refused["error"]["code"].as_str()),
        (Some("s1"), Some("forbidden")),
        "FERRY-CHANNEL-2"
    );
    send(&mut socket, json!({ "type": "publish", "id": "p1", "channel": "project:alpha:tasks", "idempotency_key": "k", "payload": task(1) })).await;
    assert_eq!(
        next_json(&mut socket).await["error"]["code"],
        "forbidden",
        "no write right"
    );
    send(
        &mut socket,
        json!({ "type": "subscribe", "id": "s2", "channel": "project:alpha:tasks" }),
    )
    .await;
    assert_eq!(
        next_json(&mut socket).await["type"],
        "subscribed",
        "the session stays open"
    );
    let (status, body) = running
        .publish(
            json!({ "channel": "project:alpha:tasks", "idempotency_key": "k", "payload": task(1) }),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "not a backend token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_ticket_is_rejected_with_4401() {
    let running = Running::start_with(Flags {
        ticket_ttl_ms: Some(50),
        ..Flags::default()
    })
    .await;
    let ticket = running.ticket().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut late = running.open(&ticket).await;
    assert_eq!(close_code(&mut late).await, Some(4401), "FERRY-TICKET-2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_beyond_the_connection_limit_is_closed_with_4409_and_the_others_stay() {
    // The limit is configurable (its default, 16, is the schema's).
    let limit = 3;
    let running = Running::start_with(Flags {
        max_connections_per_user: Some(limit),
        ..Flags::default()
    })
    .await;
    let mut open = Vec::new();
    for _ in 0..limit {
        open.push(running.session().await);
    }
    let ticket = running.ticket().await;
    let mut one_more = running.open(&ticket).await;
    assert_eq!(close_code(&mut one_more).await, Some(4409), "FERRY-RATE-3");
    let first = open.first_mut().expect("sessions");
    send(
        first,
        json!({ "type": "subscribe", "id": "s", "channel": "project:alpha:tasks" }),
    )
    .await;
    assert_eq!(
        next_json(first).await["type"],
        "subscribed",
        "the user's existing sessions are untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_frame_that_is_not_utf8_closes_with_1007() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let running = Running::start().await;
    let mut other = witness(&running).await;
    let mut socket = running.session().await;
    let frame = Frame::message(
        Bytes::from_static(b"{\"type\":\"pong\",\"nonce\":\"\xff\"}"),
        OpCode::Data(Data::Text),
        true,
    );
    socket.send(Message::Frame(frame)).await.expect("send");
    assert_eq!(
        close_code(&mut socket).await,
        Some(1007),
        "FERRY-TRANSPORT-4"
    );
    still_works(&running, &mut other, 5).await;
}

const OUTPUT: &str = "daemon:ws-42:output";

/// A valid `CommandOutput` chunk for [`OUTPUT`] with `n` characters of data.
fn chunk(n: usize) -> Value {
    json!({ "type": "chunk", "run_id": "r-1", "stream": "stdout", "data": "x".repeat(n) })
}

/// A chunk whose event could take exactly `bound` bytes in an event frame, as the server
/// measures it (FERRY-SIZE-4): each character of data adds one byte.
fn chunk_with_bound(bound: usize) -> Value {
    let channel = OUTPUT.parse().expect("a valid channel");
    let bound_of = |n: usize| {
        ferry_protocol::server::max_event_bytes(&channel, &ferry_protocol::Payload::from(chunk(n)))
    };
    let n = bound - bound_of(0);
    assert_eq!(bound_of(n), bound);
    chunk(n)
}

/// A socket subscribed to [`OUTPUT`]; with `hold`, holding it, so that it may publish there
/// (the namespace is exclusive, FERRY-HOLD-3).
async fn output_subscriber(running: &Running, hold: bool) -> Socket {
    let mut socket = running.session().await;
    let mut subscribe = json!({ "type": "subscribe", "id": "s1", "channel": OUTPUT });
    if hold {
        subscribe["hold"] = json!({});
    }
    send(&mut socket, subscribe).await;
    assert_eq!(next_json(&mut socket).await["type"], "subscribed");
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_publish_whose_event_could_exceed_the_limit_gets_413_and_is_not_stored() {
    let running = Running::start().await;
    let max = MAX_BYTES as usize;
    let mut subscriber = output_subscriber(&running, false).await;
    let body = |key: &str, payload: Value| json!({ "channel": OUTPUT, "idempotency_key": key, "payload": payload });
    // The largest body the limit allows: its event, which adds a message id, a position and a
    // time, would exceed the limit whatever they are.
    let largest = body(
        "over-2",
        chunk(max - body("over-2", chunk(0)).to_string().len()),
    );
    assert_eq!(largest.to_string().len(), max);
    // And the smallest publish refused: its event could take one byte more than the limit.
    let smallest = body("over-1", chunk_with_bound(max + 1));
    assert!(smallest.to_string().len() < max);
    for body in [largest, smallest] {
        let (status, answer) = running.publish(body).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (413, Some("message_too_large")),
            "FERRY-SIZE-4: {answer}"
        );
    }
    let (status, ack) = running.publish(body("fits", chunk_with_bound(max))).await;
    assert_eq!(status, 200, "{ack}");
    assert_eq!(
        ack["position"]["seq"], 1,
        "the refused publishes stored nothing"
    );
    let event = next_json(&mut subscriber).await;
    assert_eq!(
        (event["type"].as_str(), event["message_id"].as_str()),
        (Some("event"), ack["message_id"].as_str())
    );
    assert!(event.to_string().len() <= max);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_publish_whose_event_could_exceed_the_limit_gets_message_too_large() {
    let running = Running::start().await;
    let max = MAX_BYTES as usize;
    let mut socket = output_subscriber(&running, true).await;
    let publish = |id: &str, payload: Value| json!({ "type": "publish", "id": id, "channel": OUTPUT, "idempotency_key": id, "payload": payload });
    let over = publish("p1", chunk_with_bound(max + 1));
    assert!(over.to_string().len() < max, "the frame itself fits");
    send(&mut socket, over).await;
    let refused = next_json(&mut socket).await;
    assert_eq!(
        (
            refused["type"].as_str(),
            refused["id"].as_str(),
            refused["error"]["code"].as_str()
        ),
        (Some("error"), Some("p1"), Some("message_too_large")),
        "FERRY-SIZE-4"
    );
    // The session stays open, and a publish whose event fits goes through.
    send(&mut socket, publish("p2", chunk_with_bound(max))).await;
    let mut replies = [next_json(&mut socket).await, next_json(&mut socket).await];
    replies.sort_by_key(|reply| reply["type"].as_str().map(str::to_owned));
    let [event, published] = replies;
    assert_eq!(
        (published["type"].as_str(), published["id"].as_str()),
        (Some("published"), Some("p2"))
    );
    assert_eq!(published["position"]["seq"], 1, "p1 stored nothing");
    assert_eq!(event["type"], "event");
    assert_eq!(event["message_id"], published["message_id"]);
    assert!(event.to_string().len() <= max);
}

// FERRY-EVENT-6: a subscriber that stops reading harms only itself.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_pauses_reading_is_bound_by_its_own_deadlines_not_the_http_write_timeout() {
    let running = Running::start_with(Flags {
        write_timeout_ms: Some(100),
        outbound_queue_bytes: Some(64 << 20),
        outbound_queue_frames: Some(100_000),
        ..Flags::default()
    })
    .await;
    // A subscriber with a small receive window, so that its server's writes wait at once.
    let ticket = running.ticket().await;
    let tcp = tokio::net::TcpSocket::new_v4().expect("a socket");
    tcp.set_recv_buffer_size(4096).expect("a small buffer");
    let address = running
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("an address");
    let tcp = tcp.connect(address).await.expect("connects");
    let mut request = format!("ws://{address}/v1/ws?ticket={ticket}")
        .into_client_request()
        .expect("a URL");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("ferry.v1"),
    );
    let (mut paused, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(tcp))
        .await
        .expect("the upgrade succeeds");
    assert_eq!(next_json(&mut paused).await["type"], "welcome");
    send(
        &mut paused,
        json!({ "type": "subscribe", "id": "s1", "channel": OUTPUT }),
    )
    .await;
    assert_eq!(next_json(&mut paused).await["type"], "subscribed");
    // 8 MB of events, twice what the server's send buffer may hold: its writes wait, far
    // longer than the 100 ms an HTTP answer may.
    let events = 2_700;
    for n in 1..=events {
        let (status, _) = running
            .publish(json!({ "channel": OUTPUT, "idempotency_key": format!("k-{n}"), "payload": chunk(3000) }))
            .await;
        assert_eq!(status, 200);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Reading again, it gets every event in order: the transport did not cut it.
    for seq in 1..=events {
        let event = next_json(&mut paused).await;
        assert_eq!(event["type"], "event");
        assert_eq!(event["position"]["seq"], seq);
    }
    assert_eq!(running.server.metrics.write_timeouts.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_is_closed_with_4410_and_loses_nothing_on_resume() {
    let running = Running::start_with(Flags {
        outbound_queue_frames: Some(16),
        ..Flags::default()
    })
    .await;
    let fast = output_subscriber(&running, false).await;
    let mut slow = output_subscriber(&running, false).await;
    // The fast subscriber reads everything as it comes; the slow one reads nothing from now on.
    // The reader learns how many events to expect once the publisher knows.
    let (published_tx, mut published_rx) = tokio::sync::watch::channel(u64::MAX);
    let reader = tokio::spawn(async move {
        let mut fast = fast;
        let mut seqs = Vec::new();
        while (seqs.len() as u64) < *published_rx.borrow_and_update() {
            tokio::select! {
                biased;
                _ = published_rx.changed() => {}
                event = next_json(&mut fast) => {
                    assert_eq!(event["type"], "event");
                    seqs.push(event["position"]["seq"].as_u64().expect("a seq"));
                }
            }
        }
        seqs
    });
    // Publish until the server reports the slow session fell behind (bounded: the kernel's
    // socket buffers hold a few megabytes at most, far less than 20 000 events of 3 KB).
    let mut published = 0;
    while running.server.metrics.fell_behind.get() == 0 {
        assert!(published < 20_000, "the slow session never fell behind");
        published += 1;
        let (status, _) = running
            .publish(json!({ "channel": OUTPUT, "idempotency_key": format!("k-{published}"), "payload": chunk(3000) }))
            .await;
        assert_eq!(status, 200);
    }
    published_tx.send_replace(published);
    // The other subscriber got every event, in order.
    let seqs = reader.await.expect("the reader ran");
    assert_eq!(seqs, (1..=published).collect::<Vec<_>>());
    // The slow one reads what reached it, then the close with 4410.
    let mut last = 0;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), slow.next())
            .await
            .expect("a frame within 10 s")
        {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(&text).expect("JSON");
                if value["type"] == "event" {
                    let seq = value["position"]["seq"].as_u64().expect("a seq");
                    assert_eq!(seq, last + 1, "in order, no gap before the close");
                    last = seq;
                }
            }
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            other => panic!("expected frames then a close, got {other:?}"),
        }
    };
    assert_eq!(code, Some(4410));
    assert!(last < published, "it fell behind, so something was left");
    // Resuming from the last event it saw replays exactly the rest.
    let mut resumed = running.session().await;
    let epoch = running
        .server
        .broker()
        .history(
            &OUTPUT.parse().expect("a channel"),
            None,
            None,
            1,
            running.server.now(),
        )
        .await
        .expect("history")
        .head
        .epoch;
    send(
        &mut resumed,
        json!({ "type": "subscribe", "id": "r", "channel": OUTPUT, "from": { "epoch": epoch, "seq": last } }),
    )
    .await;
    let subscribed = next_json(&mut resumed).await;
    assert_eq!(subscribed["recovery"]["complete"], true, "{subscribed}");
    assert_eq!(subscribed["recovery"]["replayed"], published - last);
    for seq in last + 1..=published {
        assert_eq!(next_json(&mut resumed).await["position"]["seq"], seq);
    }
}

/// Sends `head` (request line and headers) over a raw connection, never a body, and reads the
/// response's status and JSON body.
async fn raw_request(running: &Running, head: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = running.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.expect("connects");
    stream.write_all(head.as_bytes()).await.expect("writes");
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    // The server answers before any body byte; it may keep the connection open meanwhile.
    let read = async {
        loop {
            let n = stream.read(&mut buffer).await.expect("reads");
            response.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&response);
            if n == 0 || text.contains("\r\n\r\n") && text.trim_end().ends_with('}') {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the server answers without waiting for the body");
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a full response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let json_start = body.find('{').expect("a JSON body");
    let json_end = body.rfind('}').expect("a JSON body");
    (
        status,
        serde_json::from_str(&body[json_start..=json_end]).expect("a JSON error body"),
    )
}

#[tokio::test]
async fn a_publish_body_is_refused_from_its_headers_before_it_is_read() {
    let running = Running::start().await;
    let host = running.base.trim_start_matches("http://").to_owned();
    // No credential: 401 at once, though the announced body never comes.
    let (status, body) = raw_request(
        &running,
        &format!("POST /v1/publish HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: 2000000\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    // A credential, but a body announced above the maximum: 413 with the error body.
    let (status, body) = raw_request(
        &running,
        &format!("POST /v1/publish HTTP/1.1\r\nhost: {host}\r\nauthorization: bearer {}\r\ncontent-type: application/json\r\ncontent-length: 1073741824\r\n\r\n", running.token),
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "message_too_large");
    // A chunked body, which announces no length, is cut off once it grows past the maximum.
    let chunk = " ".repeat(MAX_BYTES as usize + 1);
    let (status, body) = raw_request(
        &running,
        &format!("POST /v1/publish HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n", running.token, chunk.len()),
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "message_too_large");
    // The server still takes a publish that fits.
    let (status, _) = running
        .publish(json!({ "channel": "project:alpha:tasks", "idempotency_key": "after-abuse", "payload": task(1) }))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_plain_get_of_the_socket_gets_a_json_error_body() {
    let running = Running::start().await;
    let response = running
        .http
        .get(format!("{}/v1/ws", running.base))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "bad_request");
}

#[tokio::test]
async fn a_draining_server_is_not_ready_but_still_alive() {
    let running = Running::start().await;
    let get = |path: &'static str| {
        let request = running.http.get(format!("{}{path}", running.base));
        async move {
            let response = request.send().await.expect("answers");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("JSON"))
        }
    };
    let (status, body) = get("/v1/ready").await;
    assert_eq!((status, &body["status"]), (200, &json!("ok")));
    // A drain with no session open: the lifecycle turns to draining while the listener, which
    // only `stop` ends, keeps answering.
    running.server.drain().await;
    let (status, body) = get("/v1/ready").await;
    assert_eq!(status, 503, "FERRY-SHUTDOWN-5: {body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert_eq!(body["error"]["retryable"], true);
    let (status, body) = get("/v1/health").await;
    assert_eq!(status, 200, "FERRY-SHUTDOWN-5: alive while draining");
    assert_eq!(body["status"], "draining");
}

#[tokio::test]
async fn a_method_an_endpoint_does_not_take_gets_405_with_a_json_body_and_allow() {
    let running = Running::start().await;
    for (method, path, allowed) in [
        (reqwest::Method::DELETE, "/v1/tickets", "POST"),
        (reqwest::Method::POST, "/v1/health", "GET"),
        (reqwest::Method::PUT, "/v1/publish", "POST"),
    ] {
        let response = running
            .http
            .request(method.clone(), format!("{}{path}", running.base))
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status().as_u16(), 405, "{method} {path}");
        let allow = response.headers()[reqwest::header::ALLOW]
            .to_str()
            .expect("ASCII")
            .to_owned();
        assert!(allow.contains(allowed), "{method} {path}: Allow {allow}");
        let body: Value = response.json().await.expect("a JSON body");
        assert_eq!(
            body["error"]["code"], "method_not_allowed",
            "{method} {path}"
        );
    }
    let response = running
        .http
        .get(format!("{}/v1/nowhere", running.base))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_without_subscriptions_is_closed_with_4411_after_the_idle_timeout() {
    let running = Running::start_with(Flags {
        idle_timeout_ms: Some(300),
        ..Flags::default()
    })
    .await;
    let mut subscribed = witness(&running).await;
    // The server's timer starts when it opens the session, which is after this instant but may
    // be well before the welcome reaches a busy test: measure from here.
    let opening = std::time::Instant::now();
    let mut idle = running.session().await;
    assert_eq!(close_code(&mut idle).await, Some(4411), "FERRY-HEARTBEAT-5");
    assert!(
        opening.elapsed() >= Duration::from_millis(300),
        "not before the timeout"
    );
    // The subscribed session, idle just as long, stays and still receives.
    still_works(&running, &mut subscribed, 1).await;
}
