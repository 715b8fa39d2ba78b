//! ferry-server's accept loop over real loopback sockets: the header-read timeout, the cap on
//! open connections, and that neither harms an established session.

mod common;

use common::{next_json, send};

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_server::Server;
use ferry_server::auth::Auth;
use ferry_server::broker::MemoryBroker;
use ferry_server::config::Flags;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A server on a random loopback port with development auth.
struct Node {
    address: std::net::SocketAddr,
    token: String,
    server: Arc<Server<MemoryBroker>>,
    _stop: oneshot::Sender<()>,
    /// A client that opens a connection per request and keeps none, so that the connections
    /// a test counts are the ones it opened itself.
    http: reqwest::Client,
}

impl Node {
    async fn start(flags: Flags) -> Self {
        let (auth, token) = Auth::development();
        let common::InProcess {
            server,
            address,
            stop,
            ..
        } = common::in_process(flags, auth, None).await;
        Self {
            address,
            token,
            server,
            _stop: stop,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("a client"),
        }
    }

    async fn health(&self) -> u16 {
        self.http
            .get(format!("http://{}/v1/health", self.address))
            .send()
            .await
            .expect("health answers")
            .status()
            .as_u16()
    }

    /// A welcomed session subscribed to `project:alpha:tasks`.
    async fn session(&self) -> Socket {
        let response = self
            .http
            .post(format!("http://{}/v1/tickets", self.address))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("the ticket endpoint answers");
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.expect("JSON");
        let ticket = body["ticket"].as_str().expect("a ticket");
        let mut request = format!("ws://{}/v1/ws?ticket={ticket}", self.address)
            .into_client_request()
            .expect("a URL");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("ferry.v1"),
        );
        let mut socket = tokio_tungstenite::connect_async(request)
            .await
            .expect("the upgrade succeeds")
            .0;
        assert_eq!(next_json(&mut socket).await["type"], "welcome");
        send(
            &mut socket,
            json!({ "type": "subscribe", "id": "s", "channel": "project:alpha:tasks" }),
        )
        .await;
        assert_eq!(next_json(&mut socket).await["type"], "subscribed");
        socket
    }

    /// Waits (up to 20 s) until the server counts `n` open connections.
    async fn wait_for_connections(&self, n: i64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let open = self.server.metrics.connections.get();
            if open == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server counts {open} open connections, not {n}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The session publishes over its own socket and hears its event: it works without any new
/// connection.
async fn publishes_and_hears_itself(socket: &mut Socket, n: u64) {
    let id = format!("p-{n}");
    send(socket, json!({ "type": "publish", "id": id, "channel": "project:alpha:tasks", "idempotency_key": id, "payload": { "task_id": format!("T-{n}"), "status": "running", "progress": 0.5, "assignee": null } })).await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let frame = next_json(socket).await;
        seen.push(frame["type"].as_str().unwrap_or_default().to_owned());
    }
    seen.sort();
    assert_eq!(seen, ["event", "published"], "the session still works");
}

/// Reads until the peer closes; `true` when it did (end of stream or reset) within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// Connects and asks for health: the kernel completes the TCP handshake, then the server
/// closes the connection without a byte of answer.
async fn assert_refused_on_accept(address: std::net::SocketAddr) {
    let mut refused = TcpStream::connect(address).await.expect("connects");
    refused
        .write_all(b"GET /v1/health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .ok();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), refused.read_to_end(&mut answer))
        .await
        .expect("closed within 20 s");
    assert!(
        read.is_err() || answer.is_empty(),
        "a refused connection gets no answer: {:?}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_that_stalls_after_one_byte_is_closed_after_the_header_read_timeout() {
    let node = Node::start(Flags {
        header_read_timeout_ms: Some(600),
        ..Flags::default()
    })
    .await;
    let mut neighbour = node.session().await;

    // The server's timer starts at its accept, which comes after this instant.
    let sent = Instant::now();
    let mut stalled = TcpStream::connect(node.address).await.expect("connects");
    stalled.write_all(b"G").await.expect("one byte");
    assert!(
        closed_within(&mut stalled, Duration::from_secs(30)).await,
        "a request head that stops arriving is closed"
    );
    let waited = sent.elapsed();
    assert!(
        waited >= Duration::from_millis(500),
        "closed after {waited:?}, before the 600 ms timeout"
    );
    assert!(node.server.metrics.header_timeouts.get() >= 1);

    // A connection that sends nothing at all is closed the same way.
    let mut silent = TcpStream::connect(node.address).await.expect("connects");
    assert!(closed_within(&mut silent, Duration::from_secs(30)).await);

    // The WebSocket session, long past its request head, is not timed out, and still works.
    tokio::time::sleep(Duration::from_millis(900)).await;
    publishes_and_hears_itself(&mut neighbour, 1).await;
    assert_eq!(node.health().await, 200);
    let metrics = node
        .http
        .get(format!("http://{}/metrics", node.address))
        .send()
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("# TYPE ferry_header_timeouts_total counter"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_beyond_the_cap_is_closed_at_once_and_established_sessions_keep_working() {
    let node = Node::start(Flags {
        max_connections: Some(4),
        // Long enough that the idle connections below stay open for the whole test.
        header_read_timeout_ms: Some(120_000),
        ..Flags::default()
    })
    .await;
    let mut session = node.session().await;
    node.wait_for_connections(1).await;

    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(node.address).await.expect("connects"));
    }
    node.wait_for_connections(4).await;

    // The kernel completes the TCP handshake; the server closes the connection without a byte.
    assert_refused_on_accept(node.address).await;
    assert!(node.server.metrics.connections_refused.get() >= 1);
    assert_eq!(node.server.metrics.connections.get(), 4);

    // The session holds one of the four places and is unharmed.
    publishes_and_hears_itself(&mut session, 1).await;

    // Freed places are taken again.
    drop(idle);
    node.wait_for_connections(1).await;
    assert_eq!(node.health().await, 200);
    let mut second = node.session().await;
    publishes_and_hears_itself(&mut second, 2).await;
    assert_eq!(
        next_json(&mut session).await["type"],
        "event",
        "the first session hears the second's publish"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_timeout_and_a_pooling_client_carries_on()
{
    let node = Node::start(Flags {
        header_read_timeout_ms: Some(300),
        ..Flags::default()
    })
    .await;
    // A client that keeps connections alive between requests, as browsers and reqwest do.
    let pooled = reqwest::Client::new();
    let url = format!("http://{}/v1/health", node.address);
    let status = pooled.get(&url).send().await.expect("answers").status();
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    while node.server.metrics.header_timeouts.get() == 0 {
        assert!(
            Instant::now() < deadline,
            "the idle keep-alive connection is closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.wait_for_connections(0).await;
    // The pool notices the close and opens a new connection for the next request.
    let status = pooled.get(&url).send().await.expect("answers").status();
    assert_eq!(status, 200);
}

/// Sends one HTTP/1.1 request on a kept-alive connection and reads its answer; the status.
async fn request_on(stream: &mut TcpStream, head: &str) -> u16 {
    stream
        .write_all(format!("{head}host: x\r\ncontent-length: 0\r\n\r\n").as_bytes())
        .await
        .expect("the request is sent");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // The endpoints answer with a Content-Length, so the answer ends where it says.
    loop {
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf))
            .await
            .expect("an answer within 20 s")
            .expect("the connection stays open");
        assert!(n > 0, "the connection was closed instead of answered");
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |n| n.trim().parse().expect("a length"));
            if answer.len() >= end + 4 + length {
                return text[9..12].parse().expect("a status");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_authenticate_have_a_cap_of_their_own_and_leave_sessions_their_places()
 {
    let node = Node::start(Flags {
        max_connections: Some(10),
        max_unauthenticated_connections: Some(3),
        header_read_timeout_ms: Some(120_000),
        ..Flags::default()
    })
    .await;
    let unauthenticated = || node.server.metrics.unauthenticated_connections.get();
    // A session counts as unauthenticated only until its ticket is redeemed.
    let mut session = node.session().await;
    node.wait_for_connections(1).await;
    assert_eq!(unauthenticated(), 0);

    // An HTTP connection whose request carried a valid credential no longer counts either.
    let mut backend = TcpStream::connect(node.address).await.expect("connects");
    let ticket = format!(
        "POST /v1/tickets HTTP/1.1\r\nauthorization: Bearer {}\r\n",
        node.token
    );
    assert_eq!(request_on(&mut backend, &ticket).await, 201);
    assert_eq!(unauthenticated(), 0);

    // Three peers that present nothing fill the unauthenticated places (one asks for health,
    // which needs no credential, and stays unauthenticated).
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(node.address).await.expect("connects"));
    }
    assert_eq!(
        request_on(&mut idle[0], "GET /v1/health HTTP/1.1\r\n").await,
        200
    );
    node.wait_for_connections(5).await;
    assert_eq!(unauthenticated(), 3);

    // A fourth is closed on accept without a byte, though the total is far below its cap.
    assert_refused_on_accept(node.address).await;
    assert_eq!(node.server.metrics.unauthenticated_refused.get(), 1);
    assert_eq!(node.server.metrics.connections_refused.get(), 0);

    // The authenticated connection and the session are served as before.
    assert_eq!(
        request_on(&mut backend, "GET /v1/health HTTP/1.1\r\n").await,
        200
    );
    publishes_and_hears_itself(&mut session, 1).await;

    // Freed places are taken again.
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(20);
    while unauthenticated() != 0 {
        assert!(Instant::now() < deadline, "the places are freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(node.health().await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_peer_that_stops_reading_its_answers_is_closed_after_the_write_timeout() {
    let node = Node::start(Flags {
        write_timeout_ms: Some(300),
        header_read_timeout_ms: Some(120_000),
        ..Flags::default()
    })
    .await;
    let mut neighbour = node.session().await;
    // A peer with a small receive window pipelines requests and never reads an answer: the
    // answers fill its window and the server's send buffer, and then a write waits.
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("a small buffer");
    let stalled = socket.connect(node.address).await.expect("connects");
    let (mut reader, mut writer) = stalled.into_split();
    let pipeline = tokio::spawn(async move {
        let request = b"GET /v1/health HTTP/1.1\r\nhost: x\r\n\r\n".repeat(1000);
        // About 36 MB of requests for some 100 MB of answers, far past every buffer; the
        // writes fail once the server has closed the connection.
        for _ in 0..1000 {
            if writer.write_all(&request).await.is_err() {
                return true;
            }
        }
        false
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while node.server.metrics.write_timeouts.get() == 0 {
        assert!(
            Instant::now() < deadline,
            "the server keeps waiting for a peer that does not read"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The connection is closed: what reached the peer ends, and so does its pipeline.
    let mut drained = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), reader.read_to_end(&mut drained))
        .await
        .expect("the connection ends within 30 s");
    assert!(read.is_err() || !drained.is_empty());
    assert!(
        tokio::time::timeout(Duration::from_secs(30), pipeline)
            .await
            .expect("the pipeline ends")
            .expect("it ran"),
        "the closed connection takes no more requests"
    );
    // Nobody else noticed.
    publishes_and_hears_itself(&mut neighbour, 1).await;
    assert_eq!(node.health().await, 200);
}
