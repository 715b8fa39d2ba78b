//! WebSocket protocol violations over a raw TCP client on loopback: each is answered with a
//! close frame carrying its code (1002, 1007, 1009) that the client can read, the connection
//! then ends with a FIN rather than a reset (the server drains what the client still sent),
//! and a neighbour session keeps receiving.

mod common;

use std::sync::Arc;
use std::time::Duration;

use ferry_server::Server;
use ferry_server::auth::Auth;
use ferry_server::broker::MemoryBroker;
use ferry_server::config::Flags;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const MAX_BYTES: u64 = 4_096;

struct Running {
    base: String,
    token: String,
    _server: Arc<Server<MemoryBroker>>,
    _stop: tokio::sync::oneshot::Sender<()>,
    http: reqwest::Client,
}

impl Running {
    async fn start() -> Self {
        let (auth, token) = Auth::development();
        let flags = Flags {
            max_message_bytes: Some(MAX_BYTES),
            ..Flags::default()
        };
        let common::InProcess {
            server,
            address,
            stop,
            ..
        } = common::in_process(flags, auth, None).await;
        Self {
            base: format!("http://{address}"),
            token,
            _server: server,
            _stop: stop,
            http: reqwest::Client::new(),
        }
    }

    async fn ticket(&self) -> String {
        let body: Value = self
            .http
            .post(format!("{}/v1/tickets", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("the ticket endpoint answers")
            .json()
            .await
            .expect("JSON");
        body["ticket"].as_str().expect("a ticket").to_owned()
    }

    /// A raw TCP connection, upgraded and welcomed.
    async fn raw(&self) -> TcpStream {
        self.raw_sending(&[]).await
    }

    /// A raw TCP connection, upgraded and welcomed, that wrote `early` (frames) in the same
    /// write as its upgrade request, before the server answered it.
    async fn raw_sending(&self, early: &[u8]) -> TcpStream {
        let ticket = self.ticket().await;
        let address = self.base.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).await.expect("connects");
        let request = format!(
            "GET /v1/ws?ticket={ticket} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ferry.v1\r\n\r\n"
        );
        stream
            .write_all(&[request.as_bytes(), early].concat())
            .await
            .expect("write the upgrade");
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            let n = within(stream.read(&mut byte)).await.expect("read");
            assert_eq!(n, 1, "the server answers the upgrade");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "RFC 6455's sample key and accept: {head}"
        );
        let (opcode, payload) = read_frame(&mut stream).await.expect("the welcome");
        assert_eq!(opcode, 1);
        let welcome: Value = serde_json::from_slice(&payload).expect("JSON");
        assert_eq!(welcome["type"], "welcome");
        stream
    }

    async fn publish(&self, n: u64) {
        let body = json!({ "channel": "project:alpha:tasks", "idempotency_key": format!("k-{n}"), "payload": { "task_id": format!("T-{n}"), "status": "running", "progress": 0.5, "assignee": null } });
        let response = self
            .http
            .post(format!("{}/v1/publish", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("the publish endpoint answers");
        assert_eq!(response.status(), 200);
    }
}

type Neighbour = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// The neighbour's next frame other than a ping, as JSON.
async fn next(socket: &mut Neighbour) -> Value {
    loop {
        match within(socket.next()).await {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(&text).expect("JSON");
                if value["type"] != "ping" {
                    return value;
                }
            }
            other => panic!("the neighbour got {other:?}"),
        }
    }
}

async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("within 10 s")
}

/// One server frame: its opcode and payload; `None` at the end of the stream.
async fn read_frame(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    if within(stream.read_exact(&mut head)).await.is_err() {
        return None;
    }
    assert_eq!(head[1] & 0x80, 0, "a server frame is not masked");
    let length = match head[1] & 0x7f {
        126 => {
            let mut n = [0u8; 2];
            within(stream.read_exact(&mut n)).await.expect("length");
            u64::from(u16::from_be_bytes(n))
        }
        127 => {
            let mut n = [0u8; 8];
            within(stream.read_exact(&mut n)).await.expect("length");
            u64::from_be_bytes(n)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; usize::try_from(length).expect("small")];
    within(stream.read_exact(&mut payload))
        .await
        .expect("payload");
    Some((head[0] & 0x0f, payload))
}

/// A client frame: `first` is the FIN/RSV/opcode byte; masked unless `masked` is false.
fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut out = vec![first];
    let bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(bit | n as u8),
        n if n <= 0xffff => {
            out.push(bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// Sends `bytes` followed by 64 KiB of valid frames the server never reads, then returns the
/// close code of the server's close frame and checks that the stream then ends with a FIN:
/// a reset there means the server dropped the connection with input unread.
async fn violation_closes_with(running: &Running, bytes: Vec<u8>, name: &str) -> u16 {
    let mut stream = running.raw().await;
    let mut all = bytes;
    for _ in 0..64 {
        all.extend(frame(0x81, &[b' '; 1020], true));
    }
    within(stream.write_all(&all)).await.expect("write");
    let code = loop {
        match read_frame(&mut stream).await {
            Some((8, payload)) => {
                assert!(payload.len() >= 2, "{name}: a close frame with a code");
                break u16::from_be_bytes([payload[0], payload[1]]);
            }
            Some(_) => continue,
            None => panic!("{name}: the connection ended without a close frame"),
        }
    };
    let mut rest = [0u8; 1024];
    match within(stream.read(&mut rest)).await {
        Ok(0) => {}
        Ok(n) => panic!("{name}: {n} bytes after the close frame"),
        Err(error) => panic!("{name}: the connection ended with {error} instead of a FIN"),
    }
    code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_that_break_rfc_6455_close_with_1002_read_from_the_socket_and_the_neighbour_is_unharmed()
 {
    let running = Running::start().await;
    // The neighbour: an ordinary session subscribed to the channel.
    let url = format!(
        "{}/v1/ws?ticket={}",
        running.base.replace("http://", "ws://"),
        running.ticket().await
    );
    let mut request = url.into_client_request().expect("a URL");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("ferry.v1"),
    );
    let (mut neighbour, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the neighbour connects");
    assert_eq!(next(&mut neighbour).await["type"], "welcome");
    neighbour
        .send(Message::text(
            json!({ "type": "subscribe", "id": "w", "channel": "project:alpha:tasks" }).to_string(),
        ))
        .await
        .expect("send");
    assert_eq!(next(&mut neighbour).await["type"], "subscribed");

    let cases: [(&str, Vec<u8>); 9] = [
        ("an unmasked frame", frame(0x81, b"{}", false)),
        ("RSV1 without an extension", frame(0xc1, b"{}", true)),
        ("a fragmented ping", frame(0x09, b"", true)),
        ("a ping of 126 bytes", frame(0x89, &[0; 126], true)),
        ("a close frame of one byte", frame(0x88, &[3], true)),
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
    ];
    for (n, (name, bytes)) in cases.into_iter().enumerate() {
        assert_eq!(
            violation_closes_with(&running, bytes, name).await,
            1002,
            "{name}"
        );
        running.publish(n as u64).await;
        let event = next(&mut neighbour).await;
        assert_eq!(event["type"], "event", "the neighbour after {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_1009_and_1007_the_unread_input_is_drained_so_the_close_frame_arrives() {
    let running = Running::start().await;
    // A frame announcing more than the limit: refused from its header, its payload unread.
    let mut oversized = frame(0x81, &vec![b' '; 64 * 1024], true);
    oversized.truncate(14 + 8 * 1024);
    assert_eq!(
        violation_closes_with(&running, oversized, "an oversized frame").await,
        1009
    );
    assert_eq!(
        violation_closes_with(&running, frame(0x81, &[0xff, 0xfe], true), "invalid UTF-8").await,
        1007
    );
}

/// Sends a close frame with `payload` and returns the code of the server's answering close
/// frame, checking that the connection then ends with a FIN.
async fn answer_to_close(running: &Running, payload: &[u8]) -> u16 {
    let mut stream = running.raw().await;
    within(stream.write_all(&frame(0x88, payload, true)))
        .await
        .expect("write");
    let code = loop {
        match read_frame(&mut stream).await {
            Some((8, answer)) => break u16::from_be_bytes([answer[0], answer[1]]),
            Some(_) => continue,
            None => panic!("the connection ended without a close frame answering the client's"),
        }
    };
    let mut rest = [0u8; 16];
    assert_eq!(within(stream.read(&mut rest)).await.expect("a FIN"), 0);
    code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_close_frame_is_answered_before_the_connection_closes() {
    let running = Running::start().await;
    // RFC 6455 §5.5.1: the answer echoes the code; a code no peer may send is a violation.
    assert_eq!(
        answer_to_close(&running, &1000u16.to_be_bytes()).await,
        1000
    );
    assert_eq!(
        answer_to_close(&running, &[&4000u16.to_be_bytes()[..], b"bye"].concat()).await,
        4000
    );
    assert_eq!(answer_to_close(&running, &999u16.to_be_bytes()).await, 1002);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_sent_with_the_upgrade_request_are_read_after_the_welcome() {
    let running = Running::start().await;
    let subscribe = json!({ "type": "subscribe", "id": "early", "channel": "project:alpha:tasks" });
    let mut stream = running
        .raw_sending(&frame(0x81, subscribe.to_string().as_bytes(), true))
        .await;
    let reply = loop {
        let (opcode, payload) = read_frame(&mut stream)
            .await
            .expect("the server answers the early subscribe");
        assert_eq!(opcode, 1, "a text frame");
        let reply: Value = serde_json::from_slice(&payload).expect("JSON");
        if reply["type"] != "ping" {
            break reply;
        }
    };
    assert_eq!(reply["type"], "subscribed", "{reply}");
    assert_eq!(reply["id"], "early", "{reply}");
    running.publish(1).await;
    let (_, payload) = read_frame(&mut stream).await.expect("the event");
    let event: Value = serde_json::from_slice(&payload).expect("JSON");
    assert_eq!(event["type"], "event", "{event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_closed_by_its_own_rule_drains_what_follows_a_refused_frame() {
    let running = Running::start().await;
    let mut stream = running.raw().await;
    // Ten malformed frames close the session with 1008 (FERRY-TRANSPORT-5); the client has
    // already sent a frame the WebSocket layer refuses (invalid UTF-8) and 64 KiB behind it.
    let mut all = Vec::new();
    for _ in 0..10 {
        all.extend(frame(0x81, b"{", true));
    }
    all.extend(frame(0x81, &[0xff, 0xfe], true));
    for _ in 0..64 {
        all.extend(frame(0x81, &[b' '; 1020], true));
    }
    within(stream.write_all(&all)).await.expect("write");
    // Read only once the server is done: a reset sent meanwhile would destroy its close frame.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let code = loop {
        match read_frame(&mut stream).await {
            Some((8, payload)) => break u16::from_be_bytes([payload[0], payload[1]]),
            Some(_) => continue,
            None => panic!("the connection ended without a close frame"),
        }
    };
    assert_eq!(code, 1008);
    let mut rest = [0u8; 1024];
    match within(stream.read(&mut rest)).await {
        Ok(0) => {}
        Ok(n) => panic!("{n} bytes after the close frame"),
        Err(error) => panic!("the connection ended with {error} instead of a FIN"),
    }
}
