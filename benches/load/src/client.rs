//! The client side, the same code against every server: open a session subscribed to a channel
//! (ticket, upgrade, welcome, subscribe, subscribed with Ferry; upgrade and the subscribe frame
//! echoed with the plain peers; Engine.IO open, Socket.IO connect, `subscribe` and `subscribed`
//! with Socket.IO), hold it (answering pings, counting and timing events), and publish.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};

use crate::wire::{
    ENGINE_PONG, EnginePacket, SOCKETIO_CONNECT, engine_packet, publish_index, socketio_event,
    task_id,
};

/// A client WebSocket.
pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The channel every session of the fan-out subscribes to and its events are published on.
pub(crate) const CHANNEL: &str = "project:alpha:tasks";

/// The channel `project:<name>:tasks`, of the example application's task namespace.
pub(crate) fn channel(name: &str) -> String {
    format!("project:{name}:tasks")
}

/// The subscribe request for `channel`; the `ws` and tokio-tungstenite peers echo it back.
pub(crate) fn subscribe_frame(channel: &str) -> String {
    json!({ "type": "subscribe", "id": "r1", "channel": channel }).to_string()
}

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
    /// A peer that speaks plain JSON frames: the tokio-tungstenite peer or the Node `ws` one.
    Peer {
        /// `ws://host:port`.
        base: String,
    },
    /// The Socket.IO peer, spoken to as Engine.IO v4 over a plain WebSocket.
    SocketIo {
        /// `ws://host:port`.
        base: String,
    },
}

/// How a held session's frames are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// Ferry's or the plain peers' JSON frames.
    Json,
    /// Engine.IO / Socket.IO packets.
    SocketIo,
}

impl Target {
    /// How this server's frames are read.
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Target::SocketIo { .. } => Dialect::SocketIo,
            _ => Dialect::Json,
        }
    }

    /// The WebSocket URL of a new session, and the subprotocol it offers (Ferry's ticket is
    /// fetched here).
    pub(crate) async fn session_url(&self, i: usize) -> Result<(String, Option<&'static str>)> {
        Ok(match self {
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
                let url = format!(
                    "ws{}/v1/ws?ticket={ticket}",
                    base.strip_prefix("http").unwrap_or(base)
                );
                (url, Some("ferry.v1"))
            }
            Target::Peer { base } => (format!("{base}/ws"), Some("ferry.v1")),
            Target::SocketIo { base } => (socketio_url(base), None),
        })
    }

    /// Opens session `i`, subscribed to `channel`, and returns it once the server confirmed
    /// (Ferry's `subscribed`, the peers' echo, Socket.IO's `subscribed` event).
    pub(crate) async fn open(&self, i: usize, channel: &str) -> Result<Ws> {
        let (url, protocol) = self.session_url(i).await?;
        let mut ws = connect(&url, protocol).await?;
        match self {
            Target::Ferry { .. } => {
                let welcome = next_text(&mut ws).await?;
                if !welcome.starts_with(r#"{"type":"welcome""#) {
                    bail!("the first frame is not a welcome: {welcome}");
                }
                ws.send(Message::text(subscribe_frame(channel))).await?;
                loop {
                    let text = next_text(&mut ws).await?;
                    if text.starts_with(r#"{"type":"subscribed""#) {
                        break;
                    }
                    if text.starts_with(r#"{"type":"error""#) {
                        bail!("subscribe refused: {text}");
                    }
                }
            }
            Target::Peer { .. } => {
                let subscribe = subscribe_frame(channel);
                ws.send(Message::text(subscribe.as_str())).await?;
                while next_text(&mut ws).await? != subscribe {}
            }
            Target::SocketIo { .. } => {
                socketio_connect(&mut ws).await?;
                let name = serde_json::to_string(channel)?;
                ws.send(Message::text(socketio_event("subscribe", &name)))
                    .await?;
                loop {
                    let text = next_text(&mut ws).await?;
                    match engine_packet(&text) {
                        EnginePacket::Event {
                            name: "subscribed", ..
                        } => break,
                        EnginePacket::Ping => ws.send(Message::text(ENGINE_PONG)).await?,
                        EnginePacket::Close => bail!("the Socket.IO server closed the session"),
                        _ => {}
                    }
                }
            }
        }
        Ok(ws)
    }

    /// A publisher for this server: Ferry's backend endpoint, a `/publish` WebSocket on the
    /// plain peers, or a Socket.IO connection that emits `publish`. Event frames have about
    /// `event_bytes` bytes.
    pub(crate) async fn publisher(&self, event_bytes: usize) -> Result<Publisher> {
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
            Target::Peer { base } => Publisher::Socket {
                out: publishing_socket(connect(&format!("{base}/publish"), None).await?),
                dialect: Dialect::Json,
                event_bytes,
            },
            Target::SocketIo { base } => {
                let mut ws = connect(&socketio_url(base), None).await?;
                socketio_connect(&mut ws).await?;
                Publisher::Socket {
                    out: publishing_socket(ws),
                    dialect: Dialect::SocketIo,
                    event_bytes,
                }
            }
        })
    }
}

/// The Engine.IO v4 WebSocket endpoint of a Socket.IO server.
fn socketio_url(base: &str) -> String {
    format!("{base}/socket.io/?EIO=4&transport=websocket")
}

/// Waits for the Engine.IO open packet, then connects to Socket.IO's main namespace.
async fn socketio_connect(ws: &mut Ws) -> Result<()> {
    let open = next_text(ws).await?;
    if !matches!(engine_packet(&open), EnginePacket::Open(_)) {
        bail!("the first Engine.IO packet is not an open packet: {open}");
    }
    ws.send(Message::text(SOCKETIO_CONNECT)).await?;
    loop {
        let text = next_text(ws).await?;
        match engine_packet(&text) {
            EnginePacket::Connected => return Ok(()),
            EnginePacket::ConnectError(why) => bail!("Socket.IO refused the connect: {why}"),
            EnginePacket::Ping => ws.send(Message::text(ENGINE_PONG)).await?,
            _ => {}
        }
    }
}

/// Opens a WebSocket, offering `protocol` if any, with a small read buffer: the client holds
/// thousands.
async fn connect(url: &str, protocol: Option<&'static str>) -> Result<Ws> {
    let mut request = url.into_client_request()?;
    if let Some(protocol) = protocol {
        request
            .headers_mut()
            .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol));
    }
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

/// Runs a publishing WebSocket in a task of its own, which also reads what the server sends
/// (answering Engine.IO pings, so that a long run keeps the connection); frames to send go
/// through the returned channel.
fn publishing_socket(mut ws: Ws) -> mpsc::UnboundedSender<String> {
    let (out, mut frames) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                frame = frames.recv() => match frame {
                    Some(frame) => {
                        if ws.send(Message::text(frame)).await.is_err() {
                            return;
                        }
                    }
                    None => return,
                },
                message = ws.next() => match message {
                    Some(Ok(Message::Text(text))) if text.as_str() == "2" => {
                        if ws.send(Message::text(ENGINE_PONG)).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return,
                },
            }
        }
    });
    out
}

/// Publishes events.
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
    /// A peer's publishing WebSocket, run by [`publishing_socket`].
    Socket {
        /// Frames to send.
        out: mpsc::UnboundedSender<String>,
        /// Plain JSON frames or Socket.IO `publish` events.
        dialect: Dialect,
        /// The size of the event frame the peer broadcasts.
        event_bytes: usize,
    },
}

impl Publisher {
    /// Publishes event `n` on `channel`, with a title of `title` bytes (Ferry; the peers' frame
    /// is padded to its size once), and returns once the server has taken it (Ferry's answer)
    /// or the frame is queued on the peer's socket.
    pub(crate) async fn publish(&self, n: usize, title: usize, channel: &str) -> Result<()> {
        match self.start(n, title, channel)? {
            Some(request) => request.await?,
            None => Ok(()),
        }
    }

    /// Starts publishing event `n` without waiting for Ferry's answer (an open-loop stream):
    /// the task that finishes the request, if there is one.
    pub(crate) fn start(
        &self,
        n: usize,
        title: usize,
        channel: &str,
    ) -> Result<Option<JoinHandle<Result<()>>>> {
        match self {
            Publisher::Ferry { url, backend, http } => {
                let body = json!({
                    "channel": channel,
                    "idempotency_key": format!("load-{n}"),
                    "payload": {
                        "task_id": task_id(n),
                        "status": "running",
                        "progress": 0.5,
                        "assignee": null,
                        "title": "x".repeat(title),
                    },
                });
                let request = http
                    .post(url.as_str())
                    .bearer_auth(backend.as_str())
                    .json(&body);
                Ok(Some(tokio::spawn(async move {
                    request
                        .send()
                        .await
                        .context("POST /v1/publish")?
                        .error_for_status()
                        .context("POST /v1/publish")?;
                    Ok(())
                })))
            }
            Publisher::Socket {
                out,
                dialect,
                event_bytes,
            } => {
                let event = peer_event_frame(*event_bytes, channel, n);
                let frame = match dialect {
                    Dialect::Json => event,
                    Dialect::SocketIo => socketio_event("publish", &event),
                };
                out.send(frame)
                    .ok()
                    .context("the publishing connection is closed")?;
                Ok(None)
            }
        }
    }
}

/// A frame shaped like a Ferry event on `channel` carrying publish index `n`, of `bytes` bytes
/// where the shape allows (the title is padded), for the peers to broadcast.
pub(crate) fn peer_event_frame(bytes: usize, channel: &str, n: usize) -> String {
    let frame = |title: &str| {
        json!({
            "type": "event",
            "channel": channel,
            "message_id": "msg_000000000001",
            "position": { "epoch": "ep-0000000001", "seq": n + 1 },
            "published_at_ms": 1_732_325_400_000_u64,
            "payload": {
                "task_id": task_id(n),
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

/// The most publishes one set of sessions can time (the size of its table of publish times).
pub(crate) const MAX_TIMED_PUBLISHES: usize = 1 << 16;

/// What every held session reports to the measurement: events received against the number
/// that completes the current event's delivery, when the last one arrived, and, for each event,
/// the time from its publish to its arrival.
#[derive(Debug)]
pub(crate) struct Delivery {
    received: AtomicUsize,
    target: AtomicUsize,
    last: Mutex<Option<(Instant, usize)>>,
    done: Notify,
    closed: AtomicUsize,
    /// Event frames received in all, by every session.
    events: AtomicUsize,
    /// When the times below count from.
    base: Instant,
    /// When each publish started, in nanoseconds after `base` (0: not timed).
    sent: Vec<AtomicU64>,
    /// Publish-to-arrival times of timed publishes, one per delivery, in microseconds.
    latencies: Mutex<Vec<u32>>,
}

impl Default for Delivery {
    fn default() -> Self {
        Self {
            received: AtomicUsize::new(0),
            target: AtomicUsize::new(usize::MAX),
            last: Mutex::new(None),
            done: Notify::new(),
            closed: AtomicUsize::new(0),
            events: AtomicUsize::new(0),
            base: Instant::now(),
            sent: (0..MAX_TIMED_PUBLISHES)
                .map(|_| AtomicU64::new(0))
                .collect(),
            latencies: Mutex::new(Vec::new()),
        }
    }
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

    /// Event frames received so far by every session together.
    pub(crate) fn events(&self) -> usize {
        self.events.load(Ordering::SeqCst)
    }

    /// Marks publish `n` as starting now, so that its deliveries are timed.
    pub(crate) fn sent_now(&self, n: usize) -> Result<()> {
        let slot = self.sent.get(n).with_context(|| {
            format!("more than {MAX_TIMED_PUBLISHES} timed publishes in one run")
        })?;
        let nanos = self.base.elapsed().as_nanos().max(1);
        slot.store(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::SeqCst);
        Ok(())
    }

    /// The publish-to-arrival times recorded since the last call, in microseconds, sorted.
    pub(crate) fn take_latencies(&self) -> Vec<u32> {
        let mut taken =
            std::mem::take(&mut *self.latencies.lock().unwrap_or_else(|e| e.into_inner()));
        taken.sort_unstable();
        taken
    }

    fn hit(&self, at: Instant, frame: &str) {
        self.events.fetch_add(1, Ordering::SeqCst);
        let sent = publish_index(frame)
            .and_then(|n| self.sent.get(n))
            .map(|slot| slot.load(Ordering::SeqCst))
            .filter(|&nanos| nanos > 0);
        if let Some(sent) = sent {
            let now = at.saturating_duration_since(self.base).as_nanos();
            let micros = now.saturating_sub(u128::from(sent)) / 1000;
            self.latencies
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(u32::try_from(micros).unwrap_or(u32::MAX));
        }
        let n = self.received.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.target.load(Ordering::SeqCst) {
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((at, frame.len()));
            self.done.notify_one();
        }
    }
}

/// Holds an open session until `stop` changes: answers pings and reports each event.
pub(crate) fn hold(
    mut ws: Ws,
    dialect: Dialect,
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
            let answer = match dialect {
                Dialect::Json if text.contains(EVENT_MARK) => {
                    delivery.hit(Instant::now(), &text);
                    None
                }
                Dialect::Json if text.contains(PING_MARK) => serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v.get("nonce").cloned())
                    .map(|nonce| json!({ "type": "pong", "nonce": nonce }).to_string()),
                Dialect::Json => None,
                Dialect::SocketIo => match engine_packet(&text) {
                    EnginePacket::Event { name: "event", .. } => {
                        delivery.hit(Instant::now(), &text);
                        None
                    }
                    EnginePacket::Ping => Some(ENGINE_PONG.to_owned()),
                    _ => None,
                },
            };
            if let Some(answer) = answer
                && ws.send(Message::text(answer)).await.is_err()
            {
                delivery.closed.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
    })
}
