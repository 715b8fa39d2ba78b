//! The client's task: carries out what the session asks and feeds it what happens.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ferry_protocol::client::{ConnectionId, TicketError, Transmit};
use ferry_protocol::tables::endpoint;
use ferry_protocol::{
    ChannelName, ClientConfig, ClientEvent, ClientSession, ClientState, Frame, IdempotencyKey,
    MethodName, Payload, Published, RpcResult, SUBPROTOCOL, SubscribeOptions, Ticket, Timestamp,
};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{debug, info, warn};

use crate::{CallError, ChannelEvent, Handler, PublishError};

/// The largest message any welcome may advertise (the schema's bound on `max_message_bytes`).
/// The socket refuses anything larger; the session's codec enforces the advertised limit.
const SOCKET_MAX_MESSAGE_BYTES: usize = 67_108_864;

/// A command from a [`Client`](crate::Client) handle.
pub(crate) enum Command {
    Subscribe(ChannelName, Handler, SubscribeOptions),
    Unsubscribe(ChannelName, u64),
    Publish {
        channel: ChannelName,
        payload: Payload,
        key: Option<IdempotencyKey>,
        reply: oneshot::Sender<Result<Published, PublishError>>,
    },
    Call {
        method: MethodName,
        params: Payload,
        key: Option<IdempotencyKey>,
        reply: oneshot::Sender<Result<RpcResult, CallError>>,
    },
    Close,
}

/// The callers waiting for each publish or call, by idempotency key; several may share a key
/// (an application retrying), and their outcomes arrive in the order they were sent.
type Waiting<T> = HashMap<IdempotencyKey, VecDeque<oneshot::Sender<T>>>;

/// The longest-waiting caller of the request with `key`.
fn take_waiting<T>(waiting: &mut Waiting<T>, key: &IdempotencyKey) -> Option<oneshot::Sender<T>> {
    let queue = waiting.get_mut(key)?;
    let reply = queue.pop_front();
    if queue.is_empty() {
        waiting.remove(key);
    }
    reply
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Pending<T> = Pin<Box<dyn Future<Output = T> + Send>>;

pub(crate) struct Driver {
    tls: Arc<rustls::ClientConfig>,
    request_timeout: Duration,
    base_url: String,
    credential: String,
    session: ClientSession,
    origin: Instant,
    inbox: mpsc::UnboundedReceiver<Command>,
    state: watch::Sender<ClientState>,
    changes: broadcast::Sender<ClientState>,
    handlers: BTreeMap<(ChannelName, u64), Handler>,
    publishes: Waiting<Result<Published, PublishError>>,
    calls: Waiting<Result<RpcResult, CallError>>,
    ticket: Option<Pending<Result<Ticket, TicketError>>>,
    connecting: Option<(ConnectionId, Pending<Result<Socket, String>>)>,
    socket: Option<(ConnectionId, Socket)>,
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        base_url: String,
        credential: String,
        tls: Arc<rustls::ClientConfig>,
        config: ClientConfig,
        seed: u64,
        inbox: mpsc::UnboundedReceiver<Command>,
        state: watch::Sender<ClientState>,
        changes: broadcast::Sender<ClientState>,
    ) -> Self {
        Self {
            tls,
            request_timeout: config.request_timeout,
            base_url: base_url.trim_end_matches('/').to_owned(),
            credential,
            session: ClientSession::new(config, seed),
            origin: Instant::now(),
            inbox,
            state,
            changes,
            handlers: BTreeMap::new(),
            publishes: HashMap::new(),
            calls: HashMap::new(),
            ticket: None,
            connecting: None,
            socket: None,
        }
    }

    fn now(&self) -> Timestamp {
        Timestamp::from_millis(u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    pub(crate) async fn run(mut self) {
        let now = self.now();
        self.session.connect(now);
        loop {
            self.flush().await;
            let deadline = self
                .session
                .poll_timeout()
                .map(|t| self.origin + Duration::from_millis(t.as_millis()));
            tokio::select! {
                command = self.inbox.recv() => match command {
                    Some(command) => self.command(command),
                    None => {
                        // Every handle is gone: close for good.
                        self.session.close();
                        self.flush().await;
                        return;
                    }
                },
                result = async { self.ticket.as_mut().expect("guarded").await }, if self.ticket.is_some() => {
                    self.ticket = None;
                    let now = self.now();
                    self.session.handle_ticket(result, now);
                }
                result = async { self.connecting.as_mut().expect("guarded").1.as_mut().await }, if self.connecting.is_some() => {
                    let (connection, _) = self.connecting.take().expect("guarded");
                    let now = self.now();
                    match result {
                        Ok(socket) => {
                            self.socket = Some((connection, socket));
                            self.session.handle_connected(connection, now);
                        }
                        Err(why) => {
                            warn!(%why, "connecting failed");
                            self.session.handle_closed(connection, None, &why, now);
                        }
                    }
                }
                message = async { self.socket.as_mut().expect("guarded").1.next().await }, if self.socket.is_some() => {
                    self.receive(message);
                }
                () = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                    let now = self.now();
                    self.session.handle_timeout(now);
                }
            }
        }
    }

    fn command(&mut self, command: Command) {
        let now = self.now();
        match command {
            Command::Subscribe(channel, handler, options) => {
                self.session
                    .subscribe_with(channel.clone(), handler.id, options);
                self.handlers.insert((channel, handler.id), handler);
            }
            Command::Unsubscribe(channel, id) => {
                self.session.unsubscribe(&channel, id);
                self.handlers.remove(&(channel, id));
            }
            Command::Publish {
                channel,
                payload,
                key,
                reply,
            } => match self.session.publish(channel, payload, key, now) {
                Ok(key) => {
                    self.publishes.entry(key).or_default().push_back(reply);
                }
                Err(failure) => {
                    let _ = reply.send(Err(failure.into()));
                }
            },
            Command::Call {
                method,
                params,
                key,
                reply,
            } => match self.session.call(method, params, key, now) {
                Ok(key) => self.calls.entry(key).or_default().push_back(reply),
                Err(failure) => {
                    let _ = reply.send(Err(failure.into()));
                }
            },
            Command::Close => self.session.close(),
        }
    }

    fn receive(&mut self, message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) {
        let Some((connection, _)) = &self.socket else {
            return;
        };
        let connection = *connection;
        let now = self.now();
        match message {
            Some(Ok(Message::Text(text))) => {
                self.session
                    .handle_frame(connection, Frame::Text(text.as_bytes()), now)
            }
            Some(Ok(Message::Binary(bytes))) => {
                self.session
                    .handle_frame(connection, Frame::Binary(&bytes), now)
            }
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = frame
                    .map(|f| (Some(u16::from(f.code)), f.reason.to_string()))
                    .unwrap_or((None, String::new()));
                debug!(?code, %reason, "the server closed the connection");
                self.socket = None;
                self.session.handle_closed(connection, code, &reason, now);
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Err(error)) => {
                debug!(%error, "the connection failed");
                self.socket = None;
                self.session
                    .handle_closed(connection, None, &error.to_string(), now);
            }
            None => {
                self.socket = None;
                self.session
                    .handle_closed(connection, None, "the connection ended", now);
            }
        }
    }

    /// Carries out every transmit and hands every event to the application.
    async fn flush(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(transmit) = self.session.poll_transmit() {
                progressed = true;
                self.transmit(transmit).await;
            }
            while let Some(event) = self.session.poll_event() {
                progressed = true;
                self.dispatch(event);
            }
            if !progressed {
                return;
            }
        }
    }

    async fn transmit(&mut self, transmit: Transmit) {
        match transmit {
            Transmit::FetchTicket => {
                self.ticket = Some(Box::pin(crate::ticket::fetch(
                    self.base_url.clone(),
                    self.credential.clone(),
                    self.tls.clone(),
                    self.request_timeout,
                )))
            }
            Transmit::Connect { connection, ticket } => {
                let opening = open(self.base_url.clone(), ticket, self.tls.clone());
                self.connecting = Some((connection, Box::pin(opening)));
            }
            Transmit::Send { connection, text } => {
                if let Some((current, socket)) = &mut self.socket
                    && *current == connection
                    && let Err(error) = socket.send(Message::text(text)).await
                {
                    // The read side sees the failure and reports the close.
                    debug!(%error, "sending failed");
                }
            }
            Transmit::Close {
                connection,
                code,
                reason,
            } => {
                if self
                    .connecting
                    .as_ref()
                    .is_some_and(|(c, _)| *c == connection)
                {
                    self.connecting = None;
                }
                if let Some((current, socket)) = self.socket.take() {
                    if current == connection {
                        let frame = CloseFrame {
                            code: CloseCode::from(code),
                            reason: reason.into(),
                        };
                        tokio::spawn(close_handshake(socket, frame));
                    } else {
                        self.socket = Some((current, socket));
                    }
                }
            }
        }
    }

    fn dispatch(&mut self, event: ClientEvent) {
        let (channel, delivery) = match event {
            ClientEvent::StateChanged(state) => {
                match &state {
                    ClientState::Stopped(reason) => warn!(%reason, "the client stopped"),
                    ClientState::BackingOff { until, retry } => info!(
                        retry,
                        wait_ms = until.as_millis().saturating_sub(self.now().as_millis()),
                        "reconnecting"
                    ),
                    other => debug!(state = ?other, "state"),
                }
                self.state.send_replace(state.clone());
                let _ = self.changes.send(state);
                return;
            }
            ClientEvent::Published { key, ack } => {
                if let Some(reply) = take_waiting(&mut self.publishes, &key) {
                    let _ = reply.send(Ok(ack));
                }
                return;
            }
            ClientEvent::PublishFailed { key, failure } => {
                if let Some(reply) = take_waiting(&mut self.publishes, &key) {
                    let _ = reply.send(Err(failure.into()));
                }
                return;
            }
            ClientEvent::Answered { key, answer } => {
                if let Some(reply) = take_waiting(&mut self.calls, &key) {
                    let _ = reply.send(Ok(answer));
                }
                return;
            }
            ClientEvent::CallFailed { key, failure } => {
                if let Some(reply) = take_waiting(&mut self.calls, &key) {
                    let _ = reply.send(Err(failure.into()));
                }
                return;
            }
            ClientEvent::ServerError(error) => {
                warn!(code = ?error.code, message = %error.message.as_str(), "the server reported an error");
                return;
            }
            ClientEvent::ProtocolViolation(error) => {
                warn!(%error, "the server sent a frame the protocol refuses");
                return;
            }
            ClientEvent::Goodbye(goodbye) => {
                info!(reason = ?goodbye.reason, message = %goodbye.message.as_str(), retry_after_ms = ?goodbye.retry_after_ms.map(|ms| ms.get()), "the server said goodbye");
                return;
            }
            ClientEvent::Subscribed {
                channel,
                resumption,
                ..
            } => (channel, ChannelEvent::Subscribed(resumption)),
            ClientEvent::Event(event) => (event.channel.clone(), ChannelEvent::Event(event)),
            ClientEvent::Members { channel, members } => (channel, ChannelEvent::Members(members)),
            ClientEvent::Presence(presence) => {
                (presence.channel.clone(), ChannelEvent::Presence(presence))
            }
            ClientEvent::MembersFailed { channel, error } => {
                warn!(channel = %channel.as_str(), code = ?error.code, "the channel's members could not be read");
                (channel, ChannelEvent::MembersFailed(error))
            }
            ClientEvent::Incomplete { channel, cause } => {
                warn!(channel = %channel.as_str(), ?cause, "the channel's events are incomplete");
                (channel, ChannelEvent::Incomplete(cause))
            }
            ClientEvent::SubscribeFailed { channel, error } => {
                let handlers: Vec<Handler> = self
                    .handlers
                    .range((channel.clone(), 0)..=(channel.clone(), u64::MAX))
                    .map(|(_, h)| h.clone())
                    .collect();
                self.handlers.retain(|(c, _), _| *c != channel);
                for handler in handlers {
                    handler.call(&ChannelEvent::Refused(error.clone()));
                }
                return;
            }
        };
        for id in self.session.listeners(&channel) {
            if let Some(handler) = self.handlers.get(&(channel.clone(), id)) {
                handler.call(&delivery);
            }
        }
    }
}

/// Opens the WebSocket for `ticket` with the `ferry.v1` subprotocol (over TLS, with `tls`, for
/// an `https://` server).
async fn open(
    base_url: String,
    ticket: Ticket,
    tls: Arc<rustls::ClientConfig>,
) -> Result<Socket, String> {
    let ws_base = if let Some(rest) = base_url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base_url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base_url
    };
    // The URL carries the ticket: it is never logged.
    let url = format!(
        "{ws_base}{}?ticket={}",
        endpoint::CONNECT.path,
        ticket.as_str()
    );
    let mut request = url
        .into_client_request()
        .map_err(|e| format!("not a WebSocket URL: {e}"))?;
    request.headers_mut().insert(
        SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(SUBPROTOCOL),
    );
    let config = WebSocketConfig::default()
        .max_message_size(Some(SOCKET_MAX_MESSAGE_BYTES))
        .max_frame_size(Some(SOCKET_MAX_MESSAGE_BYTES));
    let (socket, response) = tokio_tungstenite::connect_async_tls_with_config(
        request,
        Some(config),
        false,
        Some(tokio_tungstenite::Connector::Rustls(tls)),
    )
    .await
    .map_err(|e| format!("the WebSocket handshake failed: {}", redact(&e.to_string())))?;
    let protocol = response
        .headers()
        .get(SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok());
    if protocol != Some(SUBPROTOCOL) {
        return Err(format!(
            "the server did not accept the {SUBPROTOCOL} subprotocol (FERRY-TRANSPORT-1)"
        ));
    }
    Ok(socket)
}

/// Removes a ticket from a message that might quote the URL.
fn redact(message: &str) -> String {
    match message.find("ticket=") {
        Some(at) => {
            let end = message[at..]
                .find(|c: char| c.is_whitespace() || c == '"' || c == '&')
                .map_or(message.len(), |e| at + e);
            format!("{}ticket=[redacted]{}", &message[..at], &message[end..])
        }
        None => message.to_owned(),
    }
}

/// Completes the closing handshake on a socket the session is done with: sends the close frame,
/// then reads until the server's close arrives (or a second passes). Dropping the socket with
/// frames still unread would make the kernel answer with a TCP reset, which can destroy the
/// close frame before the server reads it.
async fn close_handshake(mut socket: Socket, frame: CloseFrame) {
    let handshake = async {
        socket.close(Some(frame)).await?;
        while let Some(message) = socket.next().await {
            if matches!(message?, Message::Close(_)) {
                break;
            }
        }
        Ok::<(), tokio_tungstenite::tungstenite::Error>(())
    };
    if let Ok(Err(error)) = tokio::time::timeout(Duration::from_secs(1), handshake).await {
        debug!(%error, "the closing handshake ended early");
    }
}
