//! One WebSocket session: a thin shell over `ferry_protocol::ServerSession`. It redeems the
//! ticket, then moves frames, broker answers, live events and time in and out; every protocol
//! decision is the session's.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use ferry_protocol::server::{Action, ServerSession, Transmit, error_info};
use ferry_protocol::tables::close_code;
use ferry_protocol::{ErrorCode, Frame};
use tokio::sync::broadcast;
use tracing::{debug, info, warn};

use crate::Server;
use crate::broker::Broker;
use crate::metrics::Direction;
use crate::namespaces::PayloadError;

/// Runs one upgraded connection until it closes.
pub(crate) async fn run<B: Broker>(
    server: Arc<Server<B>>,
    mut socket: WebSocket,
    ticket: Option<String>,
) {
    // Live events feed the session from before any subscribe is answered (the server session's
    // contract for FERRY-SUBSCRIBE-2).
    let mut events = server.broker.events();
    let mut shutdown = server.shutdown.subscribe();
    let mut cut = server.cut.subscribe();
    let grant = match ticket {
        Some(ticket) => server
            .broker
            .redeem_ticket(&ticket, server.now())
            .await
            .ok()
            .flatten(),
        None => None,
    };
    let Some(grant) = grant else {
        // FERRY-TICKET-3: close with 4401 before any other frame; the ticket is not logged.
        debug!("a connection presented a missing, unknown, expired or used ticket");
        close(
            &server,
            &mut socket,
            close_code::TICKET_REJECTED,
            "ticket rejected",
        )
        .await;
        return;
    };
    let Some(_slot) = server.connection_slot(&grant.user) else {
        info!(user = %grant.user.as_str(), "too many connections for this user");
        close(
            &server,
            &mut socket,
            close_code::TOO_MANY_CONNECTIONS,
            "too many connections for this user",
        )
        .await;
        return;
    };
    let id = server.next_session_id();
    let mut session = ServerSession::new(server.session_config(), grant, id.clone(), server.now());
    debug!(session = %id.as_str(), user = %session.user().as_str(), "session opened");
    server.metrics.sessions_opened.inc();
    let mut subscriptions = SubscriptionGauge {
        server: &server,
        held: 0,
    };
    loop {
        // The subscriptions gauge follows this session's count.
        subscriptions.set(session.subscriptions().count());
        if !flush(&server, &mut session, &mut socket).await {
            debug!(session = %id.as_str(), "session closed");
            return;
        }
        let deadline = session.poll_timeout().map(|t| server.instant(t));
        tokio::select! {
            message = socket.recv() => {
                let now = server.now();
                match message {
                    Some(Ok(Message::Text(text))) => {
                        server.metrics.messages.get_or_create(&IN).inc();
                        session.handle_frame(Frame::Text(text.as_bytes()), now);
                    }
                    Some(Ok(Message::Binary(bytes))) => {
                        server.metrics.messages.get_or_create(&IN).inc();
                        session.handle_frame(Frame::Binary(&bytes), now);
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => return,
                    Some(Err(error)) => match refused_frame(error) {
                        Some((code, reason)) => session.close(code, reason),
                        None => return,
                    },
                }
            }
            event = events.recv() => match event {
                Ok(event) => session.deliver(&event),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    warn!(session = %id.as_str(), missed, "the session fell behind the broker");
                    session.close(close_code::INTERNAL_ERROR, "fell behind the broker");
                }
                Err(broadcast::error::RecvError::Closed) => session.close(close_code::INTERNAL_ERROR, "the broker stopped"),
            },
            _ = cut.recv() => return,
            drain = shutdown.recv() => {
                // FERRY-SHUTDOWN-1/2: goodbye with a retry hint drawn uniformly over the drain
                // period, so the clients' reconnects are spread across it.
                let drain = u64::try_from(drain.unwrap_or(Duration::ZERO).as_millis()).unwrap_or(u64::MAX);
                session.shutdown(Duration::from_millis(rand::random_range(0..=drain)), server.now());
            }
            () = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                session.handle_timeout(server.now());
            }
        }
    }
}

/// Carries out the session's actions and transmits; false once the connection is closed.
async fn flush<B: Broker>(
    server: &Server<B>,
    session: &mut ServerSession,
    socket: &mut WebSocket,
) -> bool {
    loop {
        let mut progressed = false;
        while let Some(action) = session.poll_action() {
            progressed = true;
            act(server, session, action).await;
        }
        while let Some(transmit) = session.poll_transmit() {
            progressed = true;
            match transmit {
                Transmit::Send { text } => {
                    server.metrics.messages.get_or_create(&OUT).inc();
                    if let Some(code) = error_code(&text) {
                        server.metrics.reject(&code);
                    }
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return false;
                    }
                }
                Transmit::Close { code, reason } => {
                    close(server, socket, code, &reason).await;
                    return false;
                }
            }
        }
        if !progressed {
            return true;
        }
    }
}

/// Does the broker's part of an action and answers the session.
async fn act<B: Broker>(server: &Server<B>, session: &mut ServerSession, action: Action) {
    let now = server.now();
    match action {
        Action::Subscribe { id, channel, from } => {
            match server.broker.subscribe(&channel, from.as_ref(), now).await {
                Ok((head, recovery, replay)) => {
                    server.metrics.replayed.inc_by(replay.len() as u64);
                    session.subscribed(&id, head, recovery, replay);
                }
                Err(e) => session.request_failed(&id, error_info(e.code(), &e.to_string())),
            }
        }
        Action::Unsubscribe { .. } => {}
        Action::Publish {
            id,
            channel,
            idempotency_key,
            payload,
        } => {
            if let Err(refusal) = server.namespaces.check(&channel, &payload) {
                let (code, message) = match &refusal {
                    PayloadError::UnknownChannel => {
                        (ErrorCode::UnknownChannel, refusal.to_string())
                    }
                    PayloadError::Invalid { .. } => {
                        (ErrorCode::PayloadInvalid, refusal.to_string())
                    }
                };
                session.request_failed(&id, error_info(code, &message));
                return;
            }
            match server
                .broker
                .publish(
                    &channel,
                    idempotency_key,
                    payload,
                    now,
                    crate::wall_clock_ms(),
                )
                .await
            {
                Ok(ack) => session.published(&id, ack),
                Err(e) => session.request_failed(&id, error_info(e.code(), &e.to_string())),
            }
        }
    }
}

/// This session's share of the subscriptions gauge, given back when the session ends.
struct SubscriptionGauge<'a, B> {
    server: &'a Server<B>,
    held: i64,
}

impl<B> SubscriptionGauge<'_, B> {
    fn set(&mut self, count: usize) {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        self.server.metrics.subscriptions.inc_by(count - self.held);
        self.held = count;
    }
}

impl<B> Drop for SubscriptionGauge<'_, B> {
    fn drop(&mut self) {
        self.server.metrics.subscriptions.dec_by(self.held);
    }
}

const IN: Direction = Direction { direction: "in" };
const OUT: Direction = Direction { direction: "out" };

/// The error code of an outbound error message, for the rejections metric. Errors are rare,
/// so parsing the frame again costs nothing on the hot path (events are not errors).
fn error_code(text: &str) -> Option<String> {
    if !text.starts_with(r#"{"type":"error""#) {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    value["error"]["code"].as_str().map(str::to_owned)
}

/// The close code for a frame the WebSocket layer refused: the size gate runs there, before a
/// frame is buffered whole (1009, FERRY-SIZE-3), and so does UTF-8 validation of text frames
/// (1007, FERRY-TRANSPORT-4). `None` for a broken connection.
fn refused_frame(error: axum::Error) -> Option<(u16, &'static str)> {
    use tokio_tungstenite::tungstenite::Error;
    match error.into_inner().downcast::<Error>().map(|e| *e) {
        Ok(Error::Capacity(_)) => Some((close_code::MESSAGE_TOO_BIG, "message too big")),
        Ok(Error::Utf8(_)) => Some((close_code::INVALID_PAYLOAD, "text frame is not UTF-8")),
        _ => None,
    }
}

/// How long the closing handshake may take before the connection is dropped.
const CLOSING_HANDSHAKE: Duration = Duration::from_secs(2);

/// Sends a close frame and completes the closing handshake (RFC 6455 §5.5.1): frames still
/// arriving are read and dropped until the peer's close. Dropping the TCP connection with
/// unread data would reset it, and a reset can destroy the close frame before the peer reads
/// its code.
async fn close<B: Broker>(server: &Server<B>, socket: &mut WebSocket, code: u16, reason: &str) {
    server.metrics.close(code);
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    if socket.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSING_HANDSHAKE, async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}
