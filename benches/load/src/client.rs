//! The client side, the same code against both servers: open a session (ticket, upgrade,
//! welcome, subscribe, subscribed with Ferry; upgrade and one echoed frame with the peer), hold
//! it (answering pings, counting events), and publish.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};

/// A client WebSocket.
pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The channel every session subscribes to and every event is published on.
pub(crate) const CHANNEL: &str = "project:alpha:tasks";

/// The subscribe request; the peer echoes it back.
const SUBSCRIBE: &str = r#"{"type":"subscribe","id":"r1","channel":"project:alpha:tasks"}"#;

/// What marks a frame as an event (Ferry encodes compactly; the peer's frame is built alike).
const EVENT_MARK: &str = r#""type":"event""#;

/// What marks a frame as a ping to answer.
const PING_MARK: &str = r#""type":"ping""#;

/// How long one step of opening a session may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// How a client reaches a server.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// ferry-server: tickets and backend publishes over HTTP, sessions over WebSocket.
    Ferry {
        /// `http://host:port`.
        base: String,
        /// One bearer token per generated user; session `i` uses token `i % len`.
        tokens: Arc<Vec<String>>,
        /// The backend's bearer token.
        backend: String,
        /// A pooled HTTP client.
        http: reqwest::Client,
    },
    /// The bare tokio-tungstenite peer.
    Peer {
        /// `ws://host:port`.
        base: String,
    },
}

impl Target {
    /// Opens session `i` and returns it once it is subscribed (Ferry) or has echoed a frame
    /// (the peer).
    pub(crate) async fn open(&self, i: usize) -> Result<Ws> {
        let url = match self {
            Target::Ferry {
                base, tokens, http, ..
            } => {
                let token = &tokens[i % tokens.len()];
                let body: Value = http
                    .post(format!("{base}/v1/tickets"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .context("POST /v1/tickets")?
                    .error_for_status()
                    .context("POST /v1/tickets")?
                    .json()
                    .await?;
                let ticket = body["ticket"]
                    .as_str()
                    .context("a ticket response without a ticket")?;
                format!(
                    "ws{}/v1/ws?ticket={ticket}",
                    base.strip_prefix("http").unwrap_or(base)
                )
            }
            Target::Peer { base } => format!("{base}/ws"),
        };
        let mut ws = connect(&url).await?;
        if let Target::Ferry { .. } = self {
            let welcome = next_text(&mut ws).await?;
            if !welcome.starts_with(r#"{"type":"welcome""#) {
                bail!("the first frame is not a welcome: {welcome}");
            }
        }
        ws.send(Message::text(SUBSCRIBE)).await?;
        loop {
            let text = next_text(&mut ws).await?;
            match self {
                Target::Ferry { .. } if text.starts_with(r#"{"type":"subscribed""#) => break,
                Target::Ferry { .. } if text.starts_with(r#"{"type":"error""#) => {
                    bail!("subscribe refused: {text}")
                }
                Target::Peer { .. } if text == SUBSCRIBE => break,
                _ => {}
            }
        }
        Ok(ws)
    }

    /// A publisher for this server: Ferry's backend endpoint, or a `/publish` WebSocket on the
    /// peer that sends `frame` each time.
    pub(crate) async fn publisher(&self, frame: String) -> Result<Publisher> {
        Ok(match self {
            Target::Ferry {
                base,
                backend,
                http,
                ..
            } => Publisher::Ferry {
                url: format!("{base}/v1/publish"),
                backend: backend.clone(),
                http: http.clone(),
            },
            Target::Peer { base } => Publisher::Peer {
                ws: Box::new(connect(&format!("{base}/publish")).await?),
                frame,
            },
        })
    }
}

/// Opens a WebSocket offering `ferry.v1`, with a small read buffer: the client holds thousands.
async fn connect(url: &str) -> Result<Ws> {
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("ferry.v1"));
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let (ws, _) = tokio::time::timeout(
        STEP_TIMEOUT,
        connect_async_with_config(request, Some(config), true),
    )
    .await
    .context("the WebSocket upgrade timed out")?
    .context("the WebSocket upgrade failed")?;
    Ok(ws)
}

/// The next text frame.
async fn next_text(ws: &mut Ws) -> Result<String> {
    loop {
        let message = tokio::time::timeout(STEP_TIMEOUT, ws.next())
            .await
            .context("no frame from the server in time")?
            .context("the server closed the connection")??;
        match message {
            Message::Text(text) => return Ok(text.as_str().to_owned()),
            Message::Close(frame) => bail!("the server closed the connection: {frame:?}"),
            _ => {}
        }
    }
}

/// Publishes one event.
pub(crate) enum Publisher {
    /// `POST /v1/publish` with the backend token.
    Ferry {
        /// The endpoint.
        url: String,
        /// The backend's bearer token.
        backend: String,
        /// A pooled HTTP client.
        http: reqwest::Client,
    },
    /// A text frame on the peer's `/publish` WebSocket.
    Peer {
        /// The connection.
        ws: Box<Ws>,
        /// The pre-encoded event frame.
        frame: String,
    },
}

impl Publisher {
    /// Publishes event `n` with a title of `title` bytes (Ferry; the peer's frame is fixed), and
    /// returns once the server has taken it (Ferry's answer, or the frame written).
    pub(crate) async fn publish(&mut self, n: usize, title: usize) -> Result<()> {
        match self {
            Publisher::Ferry { url, backend, http } => {
                let body = json!({
                    "channel": CHANNEL,
                    "idempotency_key": format!("load-{n}"),
                    "payload": {
                        "task_id": "T-1",
                        "status": "running",
                        "progress": 0.5,
                        "assignee": null,
                        "title": "x".repeat(title),
                    },
                });
                http.post(url.as_str())
                    .bearer_auth(backend.as_str())
                    .json(&body)
                    .send()
                    .await
                    .context("POST /v1/publish")?
                    .error_for_status()
                    .context("POST /v1/publish")?;
            }
            Publisher::Peer { ws, frame } => ws.send(Message::text(frame.as_str())).await?,
        }
        Ok(())
    }
}

/// A frame shaped like a Ferry event, of exactly `bytes` bytes where the shape allows (the
/// title is padded), for the peer to broadcast.
pub(crate) fn peer_event_frame(bytes: usize) -> String {
    let frame = |title: &str| {
        json!({
            "type": "event",
            "channel": CHANNEL,
            "message_id": "msg_000000000001",
            "position": { "epoch": "ep-0000000001", "seq": 1 },
            "published_at_ms": 1_732_325_400_000_u64,
            "payload": {
                "task_id": "T-1",
                "status": "running",
                "progress": 0.5,
                "assignee": null,
                "title": title,
            },
        })
        .to_string()
    };
    let bare = frame("").len();
    frame(&"x".repeat(bytes.saturating_sub(bare)))
}

/// What every held session reports to the measurement: events received against the number
/// that completes the current event's delivery, and when the last one arrived.
#[derive(Debug, Default)]
pub(crate) struct Delivery {
    received: AtomicUsize,
    target: AtomicUsize,
    last: Mutex<Option<(Instant, usize)>>,
    done: Notify,
    closed: AtomicUsize,
}

impl Delivery {
    /// Starts counting one event's delivery to `target` sessions; the previous one must be
    /// complete.
    pub(crate) fn expect(&self, target: usize) {
        self.received.store(0, Ordering::SeqCst);
        self.target.store(target, Ordering::SeqCst);
    }

    /// Waits until every session has the event; returns when the last one received it and that
    /// frame's length.
    pub(crate) async fn delivered(&self, timeout: Duration) -> Result<(Instant, usize)> {
        tokio::time::timeout(timeout, self.done.notified())
            .await
            .with_context(|| {
                format!(
                    "only {} of {} sessions received the event within {timeout:?}",
                    self.received.load(Ordering::SeqCst),
                    self.target.load(Ordering::SeqCst)
                )
            })?;
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .context("delivery completed without a time")
    }

    /// Sessions the server closed or broke.
    pub(crate) fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }

    fn hit(&self, at: Instant, len: usize) {
        let n = self.received.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.target.load(Ordering::SeqCst) {
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((at, len));
            self.done.notify_one();
        }
    }
}

/// Holds an open session until `stop` changes: answers pings and reports each event.
pub(crate) fn hold(
    mut ws: Ws,
    delivery: Arc<Delivery>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                message = ws.next() => message,
                _ = stop.changed() => return,
            };
            let text = match message {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    delivery.closed.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                Some(Ok(_)) => continue,
            };
            if text.contains(EVENT_MARK) {
                delivery.hit(Instant::now(), text.len());
            } else if text.contains(PING_MARK) {
                let nonce = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v.get("nonce").cloned());
                if let Some(nonce) = nonce {
                    let pong = json!({ "type": "pong", "nonce": nonce }).to_string();
                    if ws.send(Message::text(pong)).await.is_err() {
                        delivery.closed.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                }
            }
        }
    })
}
