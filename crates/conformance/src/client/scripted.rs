//! The scripted server: a ferry.v1 server that does only what the case script says and records
//! everything the client does.
//!
//! It listens on a random loopback port and serves the two endpoints a client uses:
//! - `POST /v1/tickets`: answered per the script's [`TicketReply`] queue (a fresh random ticket
//!   by default), each request recorded with its time and `Authorization` header;
//! - `GET /v1/ws?ticket=`: answered per the script's [`UpgradeReply`] queue (accepted with the
//!   `ferry.v1` subprotocol by default), each attempt recorded with its ticket and offered
//!   subprotocols. An accepted attempt hands the script a [`Conn`].
//!
//! Nothing is answered implicitly on a connection: no welcome, no pong, no subscribed. The
//! script sends what it wants and reads what the client sends; each client frame is checked on
//! arrival against the rules every frame must keep (see [`FrameKind::Violation`]).
//!
//! The closing handshake is RFC 6455's (§7.1.1): once close frames went both ways, whichever
//! side began, the scripted server closes the TCP connection; after a close frame of its own
//! that the client leaves unanswered for [`CLOSE_GRACE`], it closes the TCP connection anyway.
//! A client may so see the end of a session at its close frame or at the end of TCP.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ferry_protocol::tables::{ERROR_CODES, defaults, endpoint};
use ferry_protocol::{ClientMessage, Codec, ErrorCode, Frame, SUBPROTOCOL, ServerMessage};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::case::{CaseResult, Finding};
use crate::transcript::Transcript;

/// The identity every issued ticket is bound to.
pub(crate) const USER: &str = "conformance-user";

/// How long the scripted server waits for the client's answer to its close frame before it
/// closes the TCP connection without one.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The sending half of a connection, shared with its reader, which drops it to close the TCP
/// connection once the closing handshake is over; `None` from then on.
type SharedSink = Arc<tokio::sync::Mutex<Option<SplitSink<WebSocket, Message>>>>;

/// How the ticket endpoint answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TicketReply {
    /// 201 with a fresh random ticket.
    Issue,
    /// The error's HTTP status (from the error table) with an ErrorBody.
    Refuse(ErrorCode),
}

/// How the WebSocket endpoint answers one upgrade request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpgradeReply {
    /// 101 with the `ferry.v1` subprotocol (when offered); the script gets a [`Conn`].
    Accept,
    /// The error's HTTP status (from the error table) with an ErrorBody, no upgrade.
    Refuse(ErrorCode),
}

/// One request to the ticket endpoint.
#[derive(Debug, Clone)]
pub(crate) struct TicketRequest {
    /// When it arrived (for a refusal, also when it was refused).
    pub(crate) at: Instant,
    /// Its `Authorization` header.
    pub(crate) authorization: Option<String>,
    /// The ticket issued, or `None` when refused.
    pub(crate) issued: Option<String>,
    /// The HTTP status answered.
    pub(crate) status: u16,
}

/// One request to the WebSocket endpoint.
pub(crate) struct Attempt {
    /// When it arrived (for a refusal, also when it was refused).
    pub(crate) at: Instant,
    /// The transcript link of the connection (`ws#N`).
    pub(crate) link: String,
    /// The `ticket` query parameter.
    pub(crate) ticket: Option<String>,
    /// The subprotocols the client offered.
    pub(crate) protocols: Vec<String>,
    /// The open connection when accepted; `None` when refused.
    pub(crate) conn: Option<Conn>,
}

#[derive(Default)]
struct Plan {
    tickets: VecDeque<TicketReply>,
    upgrades: VecDeque<UpgradeReply>,
}

struct Shared {
    transcript: Transcript,
    plan: Mutex<Plan>,
    links: AtomicU64,
    tickets: mpsc::UnboundedSender<TicketRequest>,
    attempts: mpsc::UnboundedSender<Attempt>,
    unexpected: Mutex<Vec<String>>,
    issued: Mutex<Vec<String>>,
}

/// A running scripted server; dropping it stops accepting.
pub(crate) struct ScriptedServer {
    url: String,
    shared: Arc<Shared>,
    tickets: mpsc::UnboundedReceiver<TicketRequest>,
    attempts: mpsc::UnboundedReceiver<Attempt>,
    serve: JoinHandle<()>,
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.serve.abort();
    }
}

impl ScriptedServer {
    /// Starts a server on a random loopback port.
    pub(crate) async fn start(transcript: Transcript) -> Result<Self, Finding> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| Finding::error(format!("cannot bind the scripted server: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Finding::error(format!("the scripted server has no address: {e}")))?;
        let (tickets_tx, tickets) = mpsc::unbounded_channel();
        let (attempts_tx, attempts) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            transcript: transcript.clone(),
            plan: Mutex::default(),
            links: AtomicU64::new(0),
            tickets: tickets_tx,
            attempts: attempts_tx,
            unexpected: Mutex::default(),
            issued: Mutex::default(),
        });
        let app = Router::new()
            .route(endpoint::ISSUE_TICKET.path, post(issue_ticket))
            .route(endpoint::CONNECT.path, get(connect))
            .fallback(unexpected)
            .with_state(shared.clone());
        let serve = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let url = format!("http://{addr}");
        transcript.note("http", format!("scripted server listening on {url}"));
        Ok(Self {
            url,
            shared,
            tickets,
            attempts,
            serve,
        })
    }

    /// The base URL the client is given.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Queues answers for the next ticket requests (then 201 again).
    pub(crate) fn plan_tickets(&self, replies: impl IntoIterator<Item = TicketReply>) {
        self.plan().tickets.extend(replies);
    }

    /// Queues answers for the next upgrade requests (then accept again).
    pub(crate) fn plan_upgrades(&self, replies: impl IntoIterator<Item = UpgradeReply>) {
        self.plan().upgrades.extend(replies);
    }

    fn plan(&self) -> std::sync::MutexGuard<'_, Plan> {
        self.shared.plan.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next ticket request not yet taken, waiting up to `timeout`.
    pub(crate) async fn next_ticket(&mut self, timeout: Duration) -> Option<TicketRequest> {
        tokio::time::timeout(timeout, self.tickets.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next WebSocket attempt not yet taken, waiting up to `timeout`.
    pub(crate) async fn next_attempt(&mut self, timeout: Duration) -> Option<Attempt> {
        tokio::time::timeout(timeout, self.attempts.recv())
            .await
            .ok()
            .flatten()
    }

    /// Whether the ticket endpoint issued `ticket`.
    pub(crate) fn has_issued(&self, ticket: &str) -> bool {
        self.shared
            .issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|t| t == ticket)
    }

    /// Requests to anything but the two endpoints, as `METHOD path`.
    pub(crate) fn unexpected(&self) -> Vec<String> {
        self.shared
            .unexpected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// 128 bits and more from the OS's random source, as the ticket alphabet allows.
fn fresh_ticket() -> String {
    let bytes: [u8; 24] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn error_response(code: ErrorCode, message: &str) -> (StatusCode, Value) {
    let row = ERROR_CODES.iter().find(|row| row.code == code);
    let status = row
        .and_then(|row| StatusCode::from_u16(row.http_status).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({
        "error": {
            "code": code,
            "message": message,
            "retryable": row.is_some_and(|row| row.retryable),
        }
    });
    (status, body)
}

async fn issue_ticket(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let at = Instant::now();
    let authorization = headers
        .get(AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    shared.transcript.received(
        "http",
        format!(
            "POST {} (Authorization: {})",
            endpoint::ISSUE_TICKET.path,
            authorization.as_deref().unwrap_or("absent")
        ),
    );
    let reply = shared
        .plan
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .tickets
        .pop_front()
        .unwrap_or(TicketReply::Issue);
    let (status, body, issued) = match reply {
        TicketReply::Issue => {
            let ticket = fresh_ticket();
            shared.transcript.secret(&ticket);
            shared
                .issued
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(ticket.clone());
            let body = json!({
                "ticket": ticket,
                "expires_in_ms": defaults::TICKET_TTL_MS,
                "user": USER,
            });
            (StatusCode::CREATED, body, Some(ticket))
        }
        TicketReply::Refuse(code) => {
            let (status, body) = error_response(code, "refused by the case script");
            (status, body, None)
        }
    };
    shared
        .transcript
        .sent("http", format!("{} {body}", status.as_u16()));
    let _ = shared.tickets.send(TicketRequest {
        at,
        authorization,
        issued,
        status: status.as_u16(),
    });
    (status, axum::Json(body)).into_response()
}

async fn connect(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let at = Instant::now();
    let link = format!("ws#{}", shared.links.fetch_add(1, Ordering::Relaxed) + 1);
    let ticket = query.get("ticket").cloned();
    let protocols: Vec<String> = headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .flat_map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
        })
        .collect();
    shared.transcript.received(
        &link,
        format!(
            "GET {}?ticket={} (Sec-WebSocket-Protocol: {})",
            endpoint::CONNECT.path,
            ticket.as_deref().unwrap_or("<absent>"),
            if protocols.is_empty() {
                "<none>".to_owned()
            } else {
                protocols.join(", ")
            }
        ),
    );
    let reply = shared
        .plan
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .upgrades
        .pop_front()
        .unwrap_or(UpgradeReply::Accept);
    let upgrade = match (reply, upgrade) {
        (UpgradeReply::Refuse(code), _) => {
            let (status, body) = error_response(code, "refused by the case script");
            shared
                .transcript
                .sent(&link, format!("{} {body} (no upgrade)", status.as_u16()));
            let _ = shared.attempts.send(Attempt {
                at,
                link,
                ticket,
                protocols,
                conn: None,
            });
            return (status, axum::Json(body)).into_response();
        }
        (UpgradeReply::Accept, Err(rejection)) => {
            shared.transcript.note(
                &link,
                format!("not a valid WebSocket upgrade request: {rejection}"),
            );
            return rejection.into_response();
        }
        (UpgradeReply::Accept, Ok(upgrade)) => upgrade,
    };
    let upgrade = upgrade.protocols([SUBPROTOCOL]);
    let selected = upgrade
        .selected_protocol()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    shared.transcript.sent(
        &link,
        format!(
            "101 Switching Protocols (Sec-WebSocket-Protocol: {})",
            selected.as_deref().unwrap_or("<none>")
        ),
    );
    upgrade.on_upgrade(move |socket| async move {
        let conn = Conn::new(
            socket,
            link.clone(),
            ticket.clone(),
            shared.transcript.clone(),
        );
        let _ = shared.attempts.send(Attempt {
            at,
            link,
            ticket,
            protocols,
            conn: Some(conn),
        });
    })
}

async fn unexpected(State(shared): State<Arc<Shared>>, method: Method, uri: Uri) -> Response {
    let request = format!("{method} {uri}");
    shared
        .transcript
        .received("http", format!("{request} (no such endpoint)"));
    shared
        .unexpected
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(request);
    let (status, body) = error_response(ErrorCode::NotFound, "no such endpoint");
    (status, axum::Json(body)).into_response()
}

/// One frame (or the end) the client sent on a connection, as checked on arrival.
#[derive(Debug, Clone)]
pub(crate) struct ClientFrame {
    /// When it arrived.
    pub(crate) at: Instant,
    /// What it was.
    pub(crate) kind: FrameKind,
}

/// What a client frame was.
#[derive(Debug, Clone)]
pub(crate) enum FrameKind {
    /// A client message (it decoded as one), with its JSON and its size in bytes.
    Message {
        /// The message as JSON, for the case scripts' checks.
        json: Value,
        /// The frame's size in bytes.
        bytes: usize,
    },
    /// A close frame.
    Close {
        /// Its code, `None` when it carried none.
        code: Option<u16>,
        /// Its reason.
        reason: String,
    },
    /// The connection ended without (further) close frame.
    Ended,
    /// A frame that breaks a rule every frame must keep: a frame before the welcome
    /// (FERRY-WELCOME-2), a binary frame (FERRY-TRANSPORT-3), a frame above the advertised
    /// maximum (FERRY-SIZE-1), or one that is not a client message (FERRY-TRANSPORT-2).
    Violation {
        /// What the rule asks.
        expected: String,
        /// What arrived.
        observed: String,
    },
}

impl FrameKind {
    /// A short description, for failure messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Message { json, .. } => format!("the frame {json}"),
            Self::Close { code, reason } => match code {
                Some(code) => format!("a close frame with code {code} ({reason:?})"),
                None => "a close frame without a code".to_owned(),
            },
            Self::Ended => "the end of the connection (no close frame)".to_owned(),
            Self::Violation { observed, .. } => observed.clone(),
        }
    }
}

/// What the reader checks each frame against; updated when the script sends a welcome.
struct Limits {
    welcomed: AtomicBool,
    max_message_bytes: AtomicUsize,
}

/// An accepted WebSocket connection, driven by the case script. Dropping it drops the TCP
/// connection without a close frame.
pub(crate) struct Conn {
    link: String,
    ticket: Option<String>,
    sink: SharedSink,
    /// When the TCP connection is closed if the client has not answered the server's close
    /// frame; `None` until the server sends one.
    close_deadline: watch::Sender<Option<tokio::time::Instant>>,
    frames: mpsc::UnboundedReceiver<ClientFrame>,
    reader: JoinHandle<()>,
    limits: Arc<Limits>,
    transcript: Transcript,
    last_sent: Instant,
    ended: Option<Instant>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Conn {
    fn new(
        socket: WebSocket,
        link: String,
        ticket: Option<String>,
        transcript: Transcript,
    ) -> Self {
        let (sink, stream) = socket.split();
        let sink: SharedSink = Arc::new(tokio::sync::Mutex::new(Some(sink)));
        let (close_deadline, deadline) = watch::channel(None);
        let limits = Arc::new(Limits {
            welcomed: AtomicBool::new(false),
            max_message_bytes: AtomicUsize::new(
                usize::try_from(defaults::MAX_MESSAGE_BYTES).unwrap_or(usize::MAX),
            ),
        });
        let (tx, frames) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_frames(
            Reader {
                stream,
                sink: sink.clone(),
                deadline,
                link: link.clone(),
                limits: limits.clone(),
                transcript: transcript.clone(),
            },
            tx,
        ));
        transcript.note(&link, "WebSocket open");
        Self {
            link,
            ticket,
            sink,
            close_deadline,
            frames,
            reader,
            limits,
            transcript,
            last_sent: Instant::now(),
            ended: None,
        }
    }

    /// The connection's transcript link (`ws#N`).
    pub(crate) fn link(&self) -> &str {
        &self.link
    }

    /// The ticket the connection presented.
    pub(crate) fn ticket(&self) -> Option<&str> {
        self.ticket.as_deref()
    }

    /// When the script last sent a frame on it (the welcome, at first).
    pub(crate) fn last_sent(&self) -> Instant {
        self.last_sent
    }

    /// Sends a server message given as JSON; the script's own message is checked against the
    /// schema first. A welcome sets the limits the client's frames are checked against.
    pub(crate) async fn send(&mut self, message: Value) -> CaseResult {
        let typed: ServerMessage = serde_json::from_value(message.clone()).map_err(|e| {
            Finding::error(format!(
                "the case script built a server message the schema refuses ({e}): {message}"
            ))
        })?;
        if let ServerMessage::Welcome(welcome) = &typed {
            let max = usize::try_from(welcome.limits.max_message_bytes.get()).unwrap_or(usize::MAX);
            self.limits.max_message_bytes.store(max, Ordering::SeqCst);
            // Before the welcome leaves, so that a quick answer is not taken for an early frame.
            self.limits.welcomed.store(true, Ordering::SeqCst);
        }
        self.send_raw(message.to_string()).await
    }

    /// Sends any text frame, valid or not.
    pub(crate) async fn send_raw(&mut self, text: String) -> CaseResult {
        self.transcript.sent(&self.link, &text);
        self.last_sent = Instant::now();
        let what = format!("{} bytes", text.len());
        self.send_message(Message::Text(text.into()), &what).await
    }

    /// Hands `message` to the socket; a connection already closed is the client's doing.
    async fn send_message(&mut self, message: Message, what: &str) -> CaseResult {
        let mut sink = self.sink.lock().await;
        let Some(sink) = sink.as_mut() else {
            return Err(self.send_failed(what, "the closing handshake had ended the connection"));
        };
        sink.send(message)
            .await
            .map_err(|e| self.send_failed(what, &e.to_string()))
    }

    /// Closes the connection with `code` and `reason`; returns when the close frame was
    /// handed to the socket, the reference point for the client's next delay.
    pub(crate) async fn close(&mut self, code: u16, reason: &str) -> Result<Instant, Finding> {
        self.transcript
            .sent(&self.link, format!("close {code} ({reason:?})"));
        let at = Instant::now();
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        self.send_message(Message::Close(Some(frame)), &format!("close {code}"))
            .await?;
        self.await_close_answer();
        Ok(at)
    }

    /// Starts the wait for the client's close frame, after which the TCP connection closes.
    fn await_close_answer(&self) {
        let deadline = tokio::time::Instant::now() + CLOSE_GRACE;
        self.close_deadline.send_replace(Some(deadline));
    }

    /// Closes the connection with a close frame that carries no code (seen as 1005).
    pub(crate) async fn close_without_code(&mut self) -> Result<Instant, Finding> {
        self.transcript
            .sent(&self.link, "close frame without a code");
        let at = Instant::now();
        self.send_message(Message::Close(None), "a close frame")
            .await?;
        self.await_close_answer();
        Ok(at)
    }

    /// Drops the TCP connection without a close frame (seen as 1006); returns when it was
    /// closed. That is once the reader's task has let go of its half of the socket too, not
    /// when the drop was asked for: on a busy runtime the cancelled task may run late, and a
    /// delay counted from the request would include that wait, which the client never saw.
    pub(crate) async fn drop_tcp(mut self) -> Instant {
        self.transcript.note(
            &self.link,
            "dropping the TCP connection without a close frame",
        );
        self.reader.abort();
        let _ = (&mut self.reader).await;
        self.sink.lock().await.take();
        Instant::now()
    }

    fn send_failed(&self, what: &str, error: &str) -> Finding {
        Finding::fail(
            format!(
                "{} to stay open while the scripted server sends {what}",
                self.link
            ),
            format!("sending failed ({error}): the client had closed the connection"),
        )
    }

    /// The next frame the client sent, waiting up to `timeout`; `None` when none came. A
    /// frame that breaks a rule every frame must keep is a failure.
    pub(crate) async fn recv(&mut self, timeout: Duration) -> Result<Option<ClientFrame>, Finding> {
        if let Some(at) = self.ended {
            return Ok(Some(ClientFrame {
                at,
                kind: FrameKind::Ended,
            }));
        }
        let frame = match tokio::time::timeout(timeout, self.frames.recv()).await {
            Err(_) => return Ok(None),
            Ok(Some(frame)) => frame,
            Ok(None) => ClientFrame {
                at: Instant::now(),
                kind: FrameKind::Ended,
            },
        };
        match frame.kind {
            FrameKind::Violation { expected, observed } => Err(Finding::fail(
                expected,
                format!("{}: {observed}", self.link),
            )),
            FrameKind::Ended => {
                self.ended = Some(frame.at);
                Ok(Some(frame))
            }
            _ => Ok(Some(frame)),
        }
    }

    /// The next frame, which must be a client message (of `kind`, when given), within
    /// `timeout`; `expected` says what the rule asks, for the failure.
    pub(crate) async fn expect_message(
        &mut self,
        kind: Option<&str>,
        timeout: Duration,
        expected: &str,
    ) -> Result<(Value, usize), Finding> {
        let waited = timeout.as_millis();
        match self.recv(timeout).await? {
            None => Err(Finding::fail(
                expected,
                format!("nothing arrived on {} within {waited} ms", self.link),
            )),
            Some(ClientFrame {
                kind: FrameKind::Message { json, bytes, .. },
                ..
            }) if kind.is_none_or(|k| json["type"] == k) => Ok((json, bytes)),
            Some(frame) => Err(Finding::fail(
                expected,
                format!("{} carried {} instead", self.link, frame.kind.describe()),
            )),
        }
    }
}

/// What a connection's reader holds: the receiving half, and the sending half's share, which
/// it drops to close the TCP connection at the end of the closing handshake.
struct Reader {
    stream: SplitStream<WebSocket>,
    sink: SharedSink,
    deadline: watch::Receiver<Option<tokio::time::Instant>>,
    link: String,
    limits: Arc<Limits>,
    transcript: Transcript,
}

impl Reader {
    /// Sends what the socket still owes (the answer to a client's close frame), then gives up
    /// the sending half; the TCP connection closes when the reader returns with the other.
    async fn close_tcp(&mut self, why: &str) {
        if let Some(mut sink) = self.sink.lock().await.take() {
            if let Err(error) = sink.flush().await {
                self.transcript.note(
                    &self.link,
                    format!("the last frames could not be sent: {error}"),
                );
            }
            self.transcript.note(&self.link, why);
        }
    }
}

/// Resolves once the server's close frame has waited [`CLOSE_GRACE`] for its answer.
async fn close_unanswered(deadline: &mut watch::Receiver<Option<tokio::time::Instant>>) {
    loop {
        let set = *deadline.borrow_and_update();
        if let Some(at) = set {
            tokio::time::sleep_until(at).await;
            return;
        }
        if deadline.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

async fn read_frames(mut r: Reader, tx: mpsc::UnboundedSender<ClientFrame>) {
    // The size rule is checked apart, against the advertised limit; the codec checks the rest.
    let codec = Codec::new(usize::MAX);
    loop {
        let next = tokio::select! {
            next = r.stream.next() => next,
            () = close_unanswered(&mut r.deadline) => {
                r.close_tcp(&format!(
                    "no close frame answered the server's within {} ms: the scripted server closes the TCP connection",
                    CLOSE_GRACE.as_millis()
                ))
                .await;
                // The send fails only when the script stopped listening.
                let _ = tx.send(ClientFrame { at: Instant::now(), kind: FrameKind::Ended });
                return;
            }
        };
        let at = Instant::now();
        let kind = match next {
            Some(Ok(Message::Text(text))) => {
                r.transcript.received(&r.link, text.as_str());
                check_text(text.as_str(), &r.limits, &codec)
            }
            Some(Ok(Message::Binary(bytes))) => {
                r.transcript
                    .received(&r.link, format!("binary frame of {} bytes", bytes.len()));
                FrameKind::Violation {
                    expected:
                        "text frames only: a client MUST NOT send binary frames (FERRY-TRANSPORT-3)"
                            .into(),
                    observed: format!("a binary frame of {} bytes", bytes.len()),
                }
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                r.transcript.note(&r.link, "WebSocket-level ping or pong");
                continue;
            }
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = match frame {
                    Some(frame) => (Some(frame.code), frame.reason.as_str().to_owned()),
                    None => (None, String::new()),
                };
                r.transcript.received(
                    &r.link,
                    match code {
                        Some(code) => format!("close {code} ({reason:?})"),
                        None => "close frame without a code".to_owned(),
                    },
                );
                FrameKind::Close { code, reason }
            }
            Some(Err(error)) => {
                r.transcript.note(
                    &r.link,
                    format!("the client's side of the connection failed: {error}"),
                );
                FrameKind::Ended
            }
            None => {
                r.transcript
                    .note(&r.link, "the client closed the TCP connection");
                FrameKind::Ended
            }
        };
        let end = matches!(kind, FrameKind::Ended);
        let closing = matches!(kind, FrameKind::Close { .. });
        if tx.send(ClientFrame { at, kind }).is_err() || end {
            return;
        }
        if closing {
            // Close frames went both ways (the socket answers a client's own close frame):
            // the server closes the TCP connection (RFC 6455, section 7.1.1).
            r.close_tcp(
                "close frames went both ways: the scripted server closes the TCP connection (RFC 6455, section 7.1.1)",
            )
            .await;
            // The send fails only when the script stopped listening.
            let _ = tx.send(ClientFrame {
                at: Instant::now(),
                kind: FrameKind::Ended,
            });
            return;
        }
    }
}

fn check_text(text: &str, limits: &Limits, codec: &Codec) -> FrameKind {
    let bytes = text.len();
    if !limits.welcomed.load(Ordering::SeqCst) {
        return FrameKind::Violation {
            expected: "no frame from the client before the welcome (FERRY-WELCOME-2)".into(),
            observed: format!(
                "the frame {text} arrived before the scripted server sent its welcome"
            ),
        };
    }
    let max = limits.max_message_bytes.load(Ordering::SeqCst);
    if bytes > max {
        return FrameKind::Violation {
            expected: format!(
                "no frame larger than the advertised max_message_bytes of {max} bytes (FERRY-SIZE-1)"
            ),
            observed: format!("a frame of {bytes} bytes"),
        };
    }
    match codec.decode::<ClientMessage>(Frame::Text(text.as_bytes())) {
        Ok(_) => match serde_json::from_str::<Value>(text) {
            Ok(json) => FrameKind::Message { json, bytes },
            Err(error) => FrameKind::Violation {
                expected: "one JSON object per text frame (FERRY-TRANSPORT-2)".into(),
                observed: format!("{error}: {text}"),
            },
        },
        Err(error) => FrameKind::Violation {
            expected: "one client message of ferry.v1 per text frame, as its schema says (FERRY-TRANSPORT-2)".into(),
            observed: format!("{error}: {text}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    #[tokio::test]
    async fn tickets_and_upgrades_follow_the_plan_and_are_recorded() {
        let transcript = Transcript::new();
        let mut server = ScriptedServer::start(transcript.clone())
            .await
            .expect("the server starts");
        server.plan_tickets([TicketReply::Refuse(ErrorCode::Unavailable)]);
        server.plan_upgrades([UpgradeReply::Refuse(ErrorCode::Unavailable)]);
        let http = reqwest::Client::new();
        let url = format!("{}{}", server.url(), endpoint::ISSUE_TICKET.path);
        let first = http
            .post(&url)
            .bearer_auth("t")
            .send()
            .await
            .expect("the endpoint answers");
        assert_eq!(first.status().as_u16(), 503);
        let second = http.post(&url).send().await.expect("the endpoint answers");
        assert_eq!(second.status().as_u16(), 201);
        let refused = server
            .next_ticket(Duration::from_secs(1))
            .await
            .expect("recorded");
        assert_eq!(refused.authorization.as_deref(), Some("Bearer t"));
        assert_eq!(refused.issued, None);
        let issued = server
            .next_ticket(Duration::from_secs(1))
            .await
            .expect("recorded");
        let ticket = issued.issued.expect("a ticket");
        assert!(ticket.len() >= 22);

        let ws = format!(
            "{}{}?ticket={ticket}",
            server.url().replace("http://", "ws://"),
            endpoint::CONNECT.path
        );
        let request = || {
            let mut request = ws.as_str().into_client_request().expect("a valid URL");
            request.headers_mut().insert(
                SEC_WEBSOCKET_PROTOCOL,
                axum::http::HeaderValue::from_static(SUBPROTOCOL),
            );
            request
        };
        let refused = tokio_tungstenite::connect_async(request()).await;
        assert!(refused.is_err(), "the first upgrade is refused");
        let (mut client, _) = tokio_tungstenite::connect_async(request())
            .await
            .expect("the second upgrade is accepted");
        let attempt = server
            .next_attempt(Duration::from_secs(1))
            .await
            .expect("recorded");
        assert!(attempt.conn.is_none());
        let attempt = server
            .next_attempt(Duration::from_secs(1))
            .await
            .expect("recorded");
        assert_eq!(attempt.ticket.as_deref(), Some(ticket.as_str()));
        assert_eq!(attempt.protocols, vec![SUBPROTOCOL.to_owned()]);
        let mut conn = attempt.conn.expect("accepted");

        // A frame before the welcome is a violation.
        client
            .send(tungstenite::Message::text(r#"{"type":"pong","nonce":"n"}"#))
            .await
            .expect("sent");
        let early = conn.recv(Duration::from_secs(1)).await;
        assert!(matches!(early, Err(Finding::Fail { .. })), "{early:?}");

        let close = conn.close(4999, "bye").await;
        assert!(close.is_ok());
        let frame = client.next().await.expect("a frame").expect("no error");
        assert!(matches!(frame, tungstenite::Message::Close(Some(f)) if u16::from(f.code) == 4999));
        // The client's answer completes the handshake; the server then closes TCP, which is
        // all a client that reports the end only on the end of TCP waits for.
        let end = tokio::time::timeout(Duration::from_secs(10), client.next()).await;
        assert!(
            matches!(end, Ok(None | Some(Err(_)))),
            "TCP closes after the close exchange: {end:?}"
        );
        let answer = conn
            .recv(Duration::from_secs(1))
            .await
            .expect("no violation");
        assert!(
            matches!(
                answer,
                Some(ClientFrame {
                    kind: FrameKind::Close {
                        code: Some(4999),
                        ..
                    },
                    ..
                })
            ),
            "{answer:?}"
        );
        let ended = conn
            .recv(Duration::from_secs(1))
            .await
            .expect("no violation");
        assert!(matches!(
            ended,
            Some(ClientFrame {
                kind: FrameKind::Ended,
                ..
            })
        ));
        assert!(server.unexpected().is_empty());
    }

    /// Connects a raw client to a scripted server that accepts it; returns both ends.
    async fn accepted_pair() -> (
        ScriptedServer,
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        Conn,
    ) {
        let mut server = ScriptedServer::start(Transcript::new())
            .await
            .expect("the server starts");
        let ws = format!(
            "{}{}?ticket=t",
            server.url().replace("http://", "ws://"),
            endpoint::CONNECT.path
        );
        let (client, _) = tokio_tungstenite::connect_async(ws)
            .await
            .expect("the upgrade is accepted");
        let attempt = server
            .next_attempt(Duration::from_secs(5))
            .await
            .expect("recorded");
        let conn = attempt.conn.expect("accepted");
        (server, client, conn)
    }

    #[tokio::test]
    async fn a_close_begun_by_the_client_is_answered_then_tcp_closes() {
        let (_server, mut client, mut conn) = accepted_pair().await;
        client
            .close(Some(tungstenite::protocol::CloseFrame {
                code: 1000.into(),
                reason: "done".into(),
            }))
            .await
            .expect("sent");
        let answer = tokio::time::timeout(Duration::from_secs(10), client.next())
            .await
            .expect("the server answers");
        assert!(
            matches!(&answer, Some(Ok(tungstenite::Message::Close(Some(f)))) if u16::from(f.code) == 1000),
            "{answer:?}"
        );
        let end = tokio::time::timeout(Duration::from_secs(10), client.next()).await;
        assert!(
            matches!(end, Ok(None | Some(Err(_)))),
            "TCP closes: {end:?}"
        );
        let seen = conn
            .recv(Duration::from_secs(1))
            .await
            .expect("no violation");
        assert!(
            matches!(
                seen,
                Some(ClientFrame {
                    kind: FrameKind::Close {
                        code: Some(1000),
                        ..
                    },
                    ..
                })
            ),
            "{seen:?}"
        );
        let sent = conn.send_raw("{}".into()).await;
        assert!(sent.is_err(), "nothing can be sent after the handshake");
    }

    #[tokio::test]
    async fn an_unanswered_close_frame_ends_tcp_after_the_grace() {
        // A raw TCP reader that never answers: it reads the upgrade answer and the close
        // frame, then waits for the end of the stream.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut server = ScriptedServer::start(Transcript::new())
            .await
            .expect("the server starts");
        let addr = server.url().trim_start_matches("http://").to_owned();
        let mut tcp = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connects");
        let request = format!(
            "GET {}?ticket=t HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            endpoint::CONNECT.path
        );
        tcp.write_all(request.as_bytes()).await.expect("sent");
        let attempt = server
            .next_attempt(Duration::from_secs(5))
            .await
            .expect("recorded");
        let mut conn = attempt.conn.expect("accepted");
        let sent = Instant::now();
        conn.close(4000, "unanswered").await.expect("sent");
        let mut buf = [0_u8; 4096];
        let end = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(end.is_ok(), "the server closes TCP");
        assert!(sent.elapsed() >= CLOSE_GRACE, "not before the grace");
    }
}
