//! The raw WebSocket driver: opens `GET /v1/ws` with any subprotocol offer, sends anything
//! (text, binary, text that is not UTF-8, batches), and receives with timeouts.
//!
//! Each connection is a task that owns the socket. It records every frame both ways in the
//! case's transcript with the time it crossed the wire, answers pings with a pong (unless the
//! case turns that off), and hands everything else to the case. Dropping the [`Session`] ends
//! the task with a closing handshake, and only then gives back the session's share of the
//! case's reservation, so the server has let go of the connection by the time another case
//! may open one.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ferry_protocol::{Codec, Event, Frame as FerryFrame, ServerMessage, Welcome};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{self, Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::Reservation;
use super::checks::{a, close_name, summary};
use crate::case::Finding;
use crate::transcript::Transcript;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The largest frame the runner accepts or builds: the schema's largest `max_message_bytes`
/// and some, so that it can send oversized frames and read whatever a server sends.
const RUNNER_MAX_BYTES: usize = 80 << 20;

/// The largest frame a server may send before its welcome says otherwise (the schema's
/// largest `max_message_bytes`).
const SCHEMA_MAX_BYTES: usize = 67_108_864;

/// How long the closing handshake of a session the case is done with may take.
const CLOSING: Duration = Duration::from_secs(1);

/// Why an upgrade did not give a WebSocket session.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// The server answered the upgrade with another HTTP status.
    Refused {
        /// The status.
        status: u16,
        /// The body, as text.
        body: String,
    },
    /// The server switched protocols, but its subprotocol does not fit the offer.
    Subprotocol(String),
    /// No HTTP answer at all.
    Unreachable(String),
}

impl ConnectError {
    /// What happened, in the words of a failure.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Refused { status, body } => {
                format!("the upgrade was answered with HTTP {status} {body}")
            }
            Self::Subprotocol(detail) => {
                format!(
                    "the server switched protocols (101) with a mismatched subprotocol: {detail}"
                )
            }
            Self::Unreachable(detail) => format!("no HTTP answer to the upgrade: {detail}"),
        }
    }
}

/// Something the connection's task saw.
enum Incoming {
    Text(String, Instant),
    Binary(usize),
    Closed {
        code: Option<u16>,
        reason: String,
        at: Instant,
    },
    Dropped(String),
}

/// What a receive found.
#[derive(Debug, Clone)]
pub(crate) enum Got {
    /// A frame that decodes as a ferry.v1 server message, and when it arrived.
    Message(ServerMessage, Instant),
    /// A close frame: its code (none when the frame carried none) and reason.
    Closed {
        /// The close code.
        code: Option<u16>,
        /// The close reason.
        reason: String,
        /// When it arrived.
        at: Instant,
    },
    /// The connection ended without a close frame.
    Dropped(String),
    /// Nothing within the wait; the session is still open.
    Silent(Duration),
    /// A text frame that is not a ferry.v1 server message.
    Invalid {
        /// The frame.
        text: String,
        /// Why it does not decode.
        error: String,
    },
    /// A binary frame (ferry.v1 has no binary encoding).
    Binary(usize),
}

impl Got {
    /// What was received, in the words of a failure.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Message(message, _) => a(message),
            Self::Closed {
                code: Some(code),
                reason,
                ..
            } => {
                format!(
                    "the session closed with {} reason {reason:?}",
                    close_name(*code)
                )
            }
            Self::Closed { code: None, .. } => {
                "the session closed with a close frame carrying no code (1005 no_status)".into()
            }
            Self::Dropped(error) => {
                format!("the TCP connection dropped without a close frame ({error})")
            }
            Self::Silent(waited) => format!(
                "nothing within {} ms (the session is still open)",
                waited.as_millis()
            ),
            Self::Invalid { text, error } => format!(
                "a frame that is not a ferry.v1 server message (FERRY-TRANSPORT-2: {error}): {}",
                shorten(text)
            ),
            Self::Binary(len) => format!(
                "a binary frame of {len} bytes (ferry.v1 has no binary encoding, FERRY-TRANSPORT-2)"
            ),
        }
    }

    /// Whether the session is over.
    pub(crate) fn is_end(&self) -> bool {
        matches!(self, Self::Closed { .. } | Self::Dropped(_))
    }

    /// The close code, when this is a close frame with one.
    pub(crate) fn close_code(&self) -> Option<u16> {
        match self {
            Self::Closed { code, .. } => *code,
            _ => None,
        }
    }
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= 200 {
        return text.to_owned();
    }
    let head: String = text.chars().take(200).collect();
    format!("{head}... ({} bytes)", text.len())
}

/// One WebSocket connection, welcomed or not.
pub(crate) struct Session {
    /// The transcript link: `ws#1`, `ws#2`, ...
    pub(crate) link: String,
    /// The subprotocol the server selected in its 101 answer.
    pub(crate) protocol: Option<String>,
    t: Transcript,
    commands: mpsc::UnboundedSender<Vec<(Message, String)>>,
    incoming: mpsc::UnboundedReceiver<Incoming>,
    stash: VecDeque<(ServerMessage, Instant)>,
    ended: Option<Got>,
    auto_pong: Arc<AtomicBool>,
    reading: watch::Sender<bool>,
    codec: Codec,
    pace: Option<Pace>,
    welcome: Option<(Welcome, Instant)>,
    next_id: u32,
    cut: Option<oneshot::Sender<()>>,
}

/// Opens a WebSocket at `url` offering `protocol` (none: no `Sec-WebSocket-Protocol`), over
/// TLS with `tls` for a `wss://` URL.
pub(crate) async fn connect(
    url: &str,
    shown: &str,
    tls: &Arc<rustls::ClientConfig>,
    protocol: Option<&str>,
    link: String,
    t: &Transcript,
    reservation: Arc<Reservation>,
) -> Result<Session, ConnectError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| ConnectError::Unreachable(format!("{url} is not a WebSocket URL: {e}")))?;
    if let Some(protocol) = protocol {
        let value = HeaderValue::from_str(protocol)
            .map_err(|e| ConnectError::Unreachable(format!("bad subprotocol offer: {e}")))?;
        request
            .headers_mut()
            .insert("sec-websocket-protocol", value);
    }
    t.sent(
        &link,
        format!(
            "GET {shown} (upgrade; {})",
            protocol.map_or_else(
                || "no Sec-WebSocket-Protocol".to_owned(),
                |p| format!("Sec-WebSocket-Protocol: {p}")
            )
        ),
    );
    let config = WebSocketConfig::default()
        .max_message_size(Some(RUNNER_MAX_BYTES))
        .max_frame_size(Some(RUNNER_MAX_BYTES));
    let (socket, response) = match tokio_tungstenite::connect_async_tls_with_config(
        request,
        Some(config),
        true,
        Some(tokio_tungstenite::Connector::Rustls(tls.clone())),
    )
    .await
    {
        Ok(opened) => opened,
        Err(error) => {
            let error = match error {
                tungstenite::Error::Http(response) => ConnectError::Refused {
                    status: response.status().as_u16(),
                    body: response
                        .body()
                        .as_deref()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .unwrap_or_default(),
                },
                tungstenite::Error::Protocol(ProtocolError::SecWebSocketSubProtocolError(e)) => {
                    ConnectError::Subprotocol(e.to_string())
                }
                other => ConnectError::Unreachable(other.to_string()),
            };
            t.received(&link, error.describe());
            return Err(error);
        }
    };
    let selected = response
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    t.received(
        &link,
        format!(
            "101 Switching Protocols ({})",
            selected.as_deref().map_or_else(
                || "no Sec-WebSocket-Protocol".to_owned(),
                |p| format!("Sec-WebSocket-Protocol: {p}")
            )
        ),
    );
    let (commands, outgoing) = mpsc::unbounded_channel();
    let (incoming_tx, incoming) = mpsc::unbounded_channel();
    let auto_pong = Arc::new(AtomicBool::new(true));
    let (reading, reading_rx) = watch::channel(true);
    let (cut, cut_rx) = oneshot::channel();
    tokio::spawn(drive(
        socket,
        Channels {
            outgoing,
            incoming: incoming_tx,
            reading: reading_rx,
            cut: cut_rx,
        },
        t.clone(),
        link.clone(),
        auto_pong.clone(),
        reservation,
    ));
    Ok(Session {
        link,
        protocol: selected,
        t: t.clone(),
        commands,
        incoming,
        stash: VecDeque::new(),
        ended: None,
        auto_pong,
        reading,
        codec: Codec::new(SCHEMA_MAX_BYTES),
        pace: None,
        welcome: None,
        next_id: 0,
        cut: Some(cut),
    })
}

/// What links a connection's task to its [`Session`].
struct Channels {
    /// Batches of frames to send.
    outgoing: mpsc::UnboundedReceiver<Vec<(Message, String)>>,
    /// Everything received.
    incoming: mpsc::UnboundedSender<Incoming>,
    /// Whether the task reads from the socket.
    reading: watch::Receiver<bool>,
    /// Drops the connection without a close frame when it fires.
    cut: oneshot::Receiver<()>,
}

/// The connection's task: moves frames both ways until the connection ends, then closes.
async fn drive(
    mut socket: Socket,
    channels: Channels,
    t: Transcript,
    link: String,
    auto_pong: Arc<AtomicBool>,
    _reservation: Arc<Reservation>,
) {
    let Channels {
        mut outgoing,
        incoming,
        mut reading,
        mut cut,
    } = channels;
    let mut closed = false;
    let mut reads = true;
    let mut cuttable = true;
    loop {
        tokio::select! {
            fired = &mut cut, if cuttable => {
                cuttable = false;
                if fired.is_ok() {
                    // The socket is dropped without a closing handshake: the server sees its
                    // TCP connection end, with no close frame before it.
                    t.note(&link, "the runner drops the TCP connection, without a close frame");
                    let _ = incoming.send(Incoming::Dropped("dropped by the runner".into()));
                    return;
                }
            }
            changed = reading.changed(), if !closed => {
                if changed.is_err() {
                    // The session is gone; `outgoing` ends the task next.
                    reads = true;
                    continue;
                }
                reads = *reading.borrow_and_update();
                t.note(&link, if reads { "reading again" } else { "stops reading" });
            }
            batch = outgoing.recv() => {
                let Some(batch) = batch else {
                    // The case is done with the session: close it, and wait (briefly) until
                    // the server has let go of it.
                    if !closed {
                        let _ = tokio::time::timeout(CLOSING, async {
                            let _ = socket.close(None).await;
                            while let Some(Ok(_)) = socket.next().await {}
                        })
                        .await;
                    }
                    return;
                };
                let mut failed = None;
                for (message, shown) in batch {
                    t.sent(&link, shown);
                    if let Err(error) = socket.feed(message).await {
                        failed = Some(error);
                        break;
                    }
                }
                if failed.is_none()
                    && let Err(error) = socket.flush().await
                {
                    failed = Some(error);
                }
                if let Some(error) = failed {
                    if matches!(error, tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) {
                        continue;
                    }
                    t.note(&link, format!("sending failed: {error}"));
                }
            }
            frame = socket.next(), if !closed && reads => match frame {
                Some(Ok(Message::Text(text))) => {
                    let at = Instant::now();
                    t.received(&link, text.as_str());
                    if auto_pong.load(Ordering::SeqCst)
                        && let Some(nonce) = ping_nonce(text.as_str())
                    {
                        let pong = json!({ "type": "pong", "nonce": nonce }).to_string();
                        t.sent(&link, format!("{pong} (answers the ping)"));
                        let _ = socket.send(Message::text(pong)).await;
                    }
                    let _ = incoming.send(Incoming::Text(text.as_str().to_owned(), at));
                }
                Some(Ok(Message::Binary(bytes))) => {
                    t.received(&link, format!("binary frame of {} bytes", bytes.len()));
                    let _ = incoming.send(Incoming::Binary(bytes.len()));
                }
                Some(Ok(Message::Close(frame))) => {
                    let at = Instant::now();
                    let (code, reason) = frame
                        .map(|f| (Some(u16::from(f.code)), f.reason.as_str().to_owned()))
                        .unwrap_or((None, String::new()));
                    t.received(
                        &link,
                        match code {
                            Some(code) => format!("close {} reason {reason:?}", close_name(code)),
                            None => "close frame without a code".to_owned(),
                        },
                    );
                    let _ = incoming.send(Incoming::Closed { code, reason, at });
                    // Let tungstenite answer the close, then stop reading.
                    let _ = tokio::time::timeout(CLOSING, async {
                        while let Some(Ok(_)) = socket.next().await {}
                    })
                    .await;
                    closed = true;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(error)) => {
                    t.note(&link, format!("connection ended without a close frame: {error}"));
                    let _ = incoming.send(Incoming::Dropped(error.to_string()));
                    closed = true;
                }
                None => {
                    t.note(&link, "connection ended without a close frame");
                    let _ = incoming.send(Incoming::Dropped("end of stream".into()));
                    closed = true;
                }
            },
        }
    }
}

/// The nonce of a ping, if `text` is one.
fn ping_nonce(text: &str) -> Option<String> {
    if !text.contains("\"ping\"") {
        return None;
    }
    let value: Value = serde_json::from_str(text).ok()?;
    if value.get("type")?.as_str()? != "ping" {
        return None;
    }
    value.get("nonce")?.as_str().map(str::to_owned)
}

/// The runner's copy of the server's token bucket, so that ordinary cases never send faster
/// than the welcome allows. It keeps a margin: one token less, and 80 % of the refill rate.
struct Pace {
    tokens: f64,
    capacity: f64,
    per_second: f64,
    last: Instant,
}

impl Pace {
    fn new(burst: u64, per_second: u64) -> Self {
        let capacity = (burst as f64 - 1.0).max(1.0);
        Self {
            tokens: capacity,
            capacity,
            per_second: (per_second as f64 * 0.8).max(0.1),
            last: Instant::now(),
        }
    }

    /// How long to wait before the next frame; takes its token.
    fn delay(&mut self) -> Duration {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Duration::ZERO;
        }
        let wait = Duration::from_secs_f64((1.0 - self.tokens) / self.per_second);
        self.tokens = 0.0;
        self.last = now + wait;
        wait
    }
}

impl Session {
    /// The welcome, for a session opened through `Ctx::session`.
    pub(crate) fn welcome(&self) -> &Welcome {
        &self
            .welcome
            .as_ref()
            .expect("only welcomed sessions are asked for their welcome")
            .0
    }

    /// When the welcome arrived.
    pub(crate) fn welcomed_at(&self) -> Instant {
        self.welcome
            .as_ref()
            .expect("only welcomed sessions are asked for their welcome")
            .1
    }

    /// Marks the session as welcomed: from now on frames are decoded under the advertised
    /// `max_message_bytes` (FERRY-SIZE-1), and what the case sends is paced under the
    /// advertised token bucket.
    pub(crate) fn welcomed(&mut self, welcome: Welcome, at: Instant) {
        self.codec = Codec::new(
            usize::try_from(welcome.limits.max_message_bytes.get()).unwrap_or(usize::MAX),
        );
        self.pace = Some(Pace::new(
            welcome.limits.rate_limit.burst.get(),
            welcome.limits.rate_limit.messages_per_second.get(),
        ));
        self.welcome = Some((welcome, at));
    }

    /// Whether pings are answered (the default).
    pub(crate) fn set_auto_pong(&self, on: bool) {
        self.auto_pong.store(on, Ordering::SeqCst);
    }

    /// Stops reading from the socket (`false`) or reads again (`true`). While it does not read,
    /// nothing is received, pings are not answered, and what the server sends waits in the
    /// kernel's buffers and then in the server.
    pub(crate) fn set_reading(&self, on: bool) {
        self.reading.send_replace(on);
    }

    /// Drops the TCP connection at once, without a close frame (a client whose network went
    /// away); from then on the session reads as dropped.
    pub(crate) fn cut(&mut self) {
        if let Some(cut) = self.cut.take() {
            let _ = cut.send(());
        }
    }

    /// A fresh request id: `<prefix>-<n>`.
    pub(crate) fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{}", self.next_id)
    }

    /// Sends one JSON value as a text frame, paced.
    pub(crate) async fn send(&mut self, value: &Value) {
        self.send_text(value.to_string()).await;
    }

    /// Sends one text frame, paced.
    pub(crate) async fn send_text(&mut self, text: String) {
        if let Some(pace) = &mut self.pace {
            let wait = pace.delay();
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        let shown = text.clone();
        self.push(vec![(Message::text(text), shown)]);
    }

    /// Sends text frames back to back, unpaced, flushed once: they reach the server together.
    pub(crate) fn send_burst(&mut self, texts: Vec<String>) {
        let batch = texts
            .into_iter()
            .map(|text| {
                let shown = text.clone();
                (Message::text(text), shown)
            })
            .collect();
        self.push(batch);
    }

    /// Sends a binary frame.
    pub(crate) fn send_binary(&mut self, bytes: Vec<u8>) {
        let shown = format!("binary frame of {} bytes: {:02x?}", bytes.len(), &bytes);
        self.push(vec![(Message::Binary(Bytes::from(bytes)), shown)]);
    }

    /// Sends a text frame whose payload is `bytes`, UTF-8 or not.
    pub(crate) fn send_raw_text(&mut self, bytes: Vec<u8>) {
        let shown = format!(
            "text frame of {} bytes (not UTF-8): {}",
            bytes.len(),
            String::from_utf8_lossy(&bytes)
        );
        let frame = Frame::message(Bytes::from(bytes), OpCode::Data(Data::Text), true);
        self.push(vec![(Message::Frame(frame), shown)]);
    }

    fn push(&mut self, batch: Vec<(Message, String)>) {
        if self.commands.send(batch).is_err() {
            self.t
                .note(&self.link, "not sent: the connection's task has ended");
        }
    }

    /// The next thing received, pings included, within `wait`.
    pub(crate) async fn recv_raw(&mut self, wait: Duration) -> Got {
        if let Some(ended) = &self.ended {
            return ended.clone();
        }
        let got = match tokio::time::timeout(wait, self.incoming.recv()).await {
            Err(_) => Got::Silent(wait),
            Ok(None) => Got::Dropped("the connection's task ended".into()),
            Ok(Some(Incoming::Text(text, at))) => {
                match self
                    .codec
                    .decode::<ServerMessage>(FerryFrame::Text(text.as_bytes()))
                {
                    Ok(message) => Got::Message(message, at),
                    Err(error) => Got::Invalid {
                        text,
                        error: error.to_string(),
                    },
                }
            }
            Ok(Some(Incoming::Binary(len))) => Got::Binary(len),
            Ok(Some(Incoming::Closed { code, reason, at })) => Got::Closed { code, reason, at },
            Ok(Some(Incoming::Dropped(error))) => Got::Dropped(error),
        };
        if got.is_end() {
            self.ended = Some(got.clone());
        }
        got
    }

    /// The next thing received other than a ping, within `wait`.
    pub(crate) async fn recv(&mut self, wait: Duration) -> Got {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_raw(left).await {
                Got::Message(ServerMessage::Ping(_), _) => {}
                Got::Silent(_) => return Got::Silent(wait),
                other => return other,
            }
        }
    }

    /// The first message, stashed or new, that `wanted` accepts, within `wait`. Other
    /// messages are kept, in order, for later calls. Fails with `expected` when the session
    /// ends, stays silent or sends something that is not a ferry.v1 message.
    pub(crate) async fn take(
        &mut self,
        wanted: impl Fn(&ServerMessage) -> bool,
        wait: Duration,
        expected: &str,
    ) -> Result<ServerMessage, Finding> {
        if let Some(index) = self.stash.iter().position(|(m, _)| wanted(m))
            && let Some((message, _)) = self.stash.remove(index)
        {
            return Ok(message);
        }
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left).await {
                Got::Message(message, _) if wanted(&message) => return Ok(message),
                Got::Message(message, at) => self.stash.push_back((message, at)),
                Got::Silent(_) => {
                    return Err(Finding::fail(
                        expected,
                        format!("{}{}", Got::Silent(wait).describe(), self.stash_summary()),
                    ));
                }
                other => {
                    return Err(Finding::fail(
                        expected,
                        format!("{}{}", other.describe(), self.stash_summary()),
                    ));
                }
            }
        }
    }

    /// The reply (subscribed, unsubscribed, published, rpc_result, member_page or error)
    /// carrying request id `id`.
    pub(crate) async fn reply(
        &mut self,
        id: &str,
        wait: Duration,
        expected: &str,
    ) -> Result<ServerMessage, Finding> {
        self.take(|m| reply_id(m) == Some(id), wait, expected).await
    }

    /// Sends `request` (which carries `"id"`) and waits for its reply.
    pub(crate) async fn request(
        &mut self,
        request: &Value,
        wait: Duration,
        expected: &str,
    ) -> Result<ServerMessage, Finding> {
        let id = request
            .get("id")
            .and_then(Value::as_str)
            .expect("requests built by the runner carry a string id")
            .to_owned();
        self.send(request).await;
        self.reply(&id, wait, expected).await
    }

    /// The next `n` events of `channel`, in arrival order.
    pub(crate) async fn events(
        &mut self,
        channel: &str,
        n: usize,
        wait: Duration,
        expected: &str,
    ) -> Result<Vec<Event>, Finding> {
        let deadline = Instant::now() + wait;
        let mut events = Vec::with_capacity(n);
        while events.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let got = self
                .take(|m| is_event_of(m, channel), left, expected)
                .await
                .map_err(|finding| match finding {
                    Finding::Fail { expected, observed } => Finding::fail(
                        expected,
                        format!(
                            "{} of {n} events of {channel} arrived ({}); then {observed}",
                            events.len(),
                            seqs(&events)
                        ),
                    ),
                    other => other,
                })?;
            if let ServerMessage::Event(event) = got {
                events.push(event);
            }
        }
        Ok(events)
    }

    /// Every message already received and kept, removed from the stash.
    pub(crate) fn drain_stash(&mut self) -> Vec<ServerMessage> {
        self.stash.drain(..).map(|(m, _)| m).collect()
    }

    /// Reads (pings aside) until the session ends or `wait` passes; returns what came before
    /// the end (stashed messages first) and the end, or `Got::Silent`.
    pub(crate) async fn until_end(&mut self, wait: Duration) -> (Vec<ServerMessage>, Got) {
        let mut before = self.drain_stash();
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left).await {
                Got::Message(message, _) => before.push(message),
                Got::Silent(_) => return (before, Got::Silent(wait)),
                other => return (before, other),
            }
        }
    }

    /// How the session ended, if it has.
    pub(crate) fn ended(&self) -> Option<&Got> {
        self.ended.as_ref()
    }

    /// Takes in whatever has arrived by now, without waiting; returns how the session ended,
    /// if it has. Messages go to the stash.
    pub(crate) async fn poll_end(&mut self) -> Option<Got> {
        while self.ended.is_none() {
            match self.recv(Duration::ZERO).await {
                Got::Message(message, at) => self.stash.push_back((message, at)),
                Got::Silent(_) => break,
                _ => {}
            }
        }
        self.ended.clone()
    }

    fn stash_summary(&self) -> String {
        if self.stash.is_empty() {
            return String::new();
        }
        let shown: Vec<String> = self.stash.iter().take(8).map(|(m, _)| summary(m)).collect();
        let more = self.stash.len().saturating_sub(shown.len());
        format!(
            "; received meanwhile: {}{}",
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        )
    }
}

/// The request id a reply carries.
pub(crate) fn reply_id(message: &ServerMessage) -> Option<&str> {
    match message {
        ServerMessage::Subscribed(m) => Some(m.id.as_str()),
        ServerMessage::Unsubscribed(m) => Some(m.id.as_str()),
        ServerMessage::Published(m) => Some(m.id.as_str()),
        ServerMessage::RpcResult(m) => Some(m.id.as_str()),
        ServerMessage::MemberPage(m) => Some(m.id.as_str()),
        ServerMessage::Error(m) => m.id.as_deref().map(String::as_str),
        _ => None,
    }
}

/// Whether `message` is an event of `channel`.
pub(crate) fn is_event_of(message: &ServerMessage, channel: &str) -> bool {
    matches!(message, ServerMessage::Event(e) if e.channel.as_str() == channel)
}

/// The seqs of `events`, for failure messages: `1, 2, 3`.
pub(crate) fn seqs(events: &[Event]) -> String {
    if events.is_empty() {
        return "none".into();
    }
    events
        .iter()
        .map(|e| e.position.seq.get().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pace_allows_the_burst_then_the_rate() {
        let mut pace = Pace::new(5, 10);
        for _ in 0..4 {
            assert_eq!(pace.delay(), Duration::ZERO);
        }
        let wait = pace.delay();
        assert!(
            wait > Duration::from_millis(100) && wait <= Duration::from_millis(126),
            "{wait:?}"
        );
    }

    #[test]
    fn pings_are_recognised() {
        assert_eq!(
            ping_nonce(r#"{"type":"ping","nonce":"hb-1"}"#),
            Some("hb-1".into())
        );
        assert_eq!(ping_nonce(r#"{"type":"event","payload":"ping"}"#), None);
        assert_eq!(ping_nonce("not json \"ping\""), None);
    }
}
