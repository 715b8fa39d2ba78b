//! A small Ferry server for the client's tests: an axum shell over `ServerSession`, with an
//! in-memory broker (one `ReplayBuffer` per channel and a `DedupWindow` of idempotency keys),
//! single-use tickets, and controls to cut every connection off mid-stream or publish from a
//! "backend".

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ferry_protocol::replay::{ReplayBuffer, Retention};
use ferry_protocol::server::{Action, Grant, ServerConfig, ServerSession, Transmit};
use ferry_protocol::tables::close_code;
use ferry_protocol::{
    ChannelName, DedupWindow, Epoch, Event, Frame, IdempotencyKey, Payload, PublishResponse,
    Recovery, StreamPosition, Timestamp,
};
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::broadcast;
use tokio::time::Instant;

pub const TOKEN: &str = "test-token";

/// The server's broker: channels, history and dedup, all in memory.
struct Broker {
    epoch: Epoch,
    retention: Retention,
    channels: HashMap<ChannelName, ReplayBuffer<Event>>,
    dedup: DedupWindow<(ChannelName, IdempotencyKey), PublishResponse>,
    next_message: u64,
}

impl Broker {
    fn channel(&mut self, channel: &ChannelName) -> &mut ReplayBuffer<Event> {
        let (epoch, retention) = (self.epoch.clone(), self.retention);
        self.channels
            .entry(channel.clone())
            .or_insert_with(|| ReplayBuffer::new(epoch, retention))
    }
}

struct Shared {
    origin: Instant,
    config: ServerConfig,
    broker: Mutex<Broker>,
    events: broadcast::Sender<Event>,
    kill: broadcast::Sender<()>,
    tickets: Mutex<HashMap<String, Grant>>,
    issued: AtomicU64,
    sessions: AtomicU64,
}

impl Shared {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.origin.elapsed().as_millis() as u64)
    }

    /// Stores and broadcasts an event (or answers a repeated key with the original position).
    /// The broker's lock is held while broadcasting, so events go out in seq order.
    fn publish(
        &self,
        channel: &ChannelName,
        key: IdempotencyKey,
        payload: Payload,
    ) -> PublishResponse {
        let now = self.now();
        let mut broker = self.broker.lock();
        let dedup_key = (channel.clone(), key);
        if let Some(original) = broker.dedup.check(&dedup_key, now) {
            let mut ack = original.clone();
            ack.duplicate = true;
            return ack;
        }
        broker.next_message += 1;
        let message_id = format!("m-{}", broker.next_message);
        let buffer = broker.channel(channel);
        let head = buffer.head();
        let position: StreamPosition =
            serde_json::from_value(json!({ "epoch": head.epoch, "seq": head.seq.get() + 1 }))
                .expect("a valid position");
        let event: Event = serde_json::from_value(json!({
            "channel": channel, "message_id": message_id, "position": position, "published_at_ms": 1_763_856_000_000u64 + now.as_millis(), "payload": payload,
        }))
        .expect("a valid event");
        buffer
            .append(event.clone(), now)
            .expect("seq is the next one");
        let ack = PublishResponse {
            channel: channel.clone(),
            message_id: event.message_id.clone(),
            position,
            duplicate: false,
        };
        broker.dedup.insert(dedup_key, ack.clone(), now);
        let _ = self.events.send(event);
        ack
    }

    fn subscribe(
        &self,
        channel: &ChannelName,
        from: Option<&StreamPosition>,
    ) -> (StreamPosition, Option<Recovery>, Vec<Event>) {
        let now = self.now();
        let mut broker = self.broker.lock();
        let buffer = broker.channel(channel);
        let head = buffer.head();
        let Some(from) = from else {
            return (head, None, Vec::new());
        };
        match buffer.after(from, now) {
            Ok(replay) => {
                let replay: Vec<Event> = replay.cloned().collect();
                let recovery = serde_json::from_value(
                    json!({ "complete": true, "replayed": replay.len(), "reason": null }),
                )
                .expect("valid");
                (head, Some(recovery), replay)
            }
            Err(gap) => {
                let recovery = serde_json::from_value(
                    json!({ "complete": false, "replayed": 0, "reason": gap }),
                )
                .expect("valid");
                (head, Some(recovery), Vec::new())
            }
        }
    }
}

/// A running test server on a random loopback port.
pub struct TestServer {
    pub url: String,
    shared: Arc<Shared>,
}

impl TestServer {
    /// Starts a server whose channels keep `history` events each (and, with `window_ms` above
    /// 0, every event younger than that).
    pub async fn start(history: u64, window_ms: u64) -> Self {
        let config = ServerConfig {
            heartbeat: serde_json::from_value(json!({ "interval_ms": 1_000, "timeout_ms": 1_000 })).expect("valid"),
            reconnect: serde_json::from_value(json!({ "base_ms": 20, "factor": 2, "cap_ms": 200, "jitter": 0.5, "max_attempts": 20, "reset_after_ms": 1_000 })).expect("valid"),
            limits: serde_json::from_value(json!({ "max_message_bytes": 8_192, "max_subscriptions": 100, "rate_limit": { "messages_per_second": 1_000, "burst": 1_000 } })).expect("valid"),
            resume: serde_json::from_value(json!({ "window_ms": window_ms, "max_events": history })).expect("valid"),
            ..ServerConfig::default()
        };
        let retention = Retention::from(&config.resume);
        let shared = Arc::new(Shared {
            origin: Instant::now(),
            config,
            broker: Mutex::new(Broker {
                epoch: "e-test".parse().expect("valid"),
                retention,
                channels: HashMap::new(),
                dedup: DedupWindow::new(1_000_000, Duration::from_secs(120)),
                next_message: 0,
            }),
            events: broadcast::channel(65_536).0,
            kill: broadcast::channel(4).0,
            tickets: Mutex::new(HashMap::new()),
            issued: AtomicU64::new(0),
            sessions: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/v1/tickets", post(issue_ticket))
            .route("/v1/ws", get(connect))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, shared }
    }

    /// Publishes from a backend, as the HTTP publish endpoint would.
    pub fn publish(&self, channel: &str, key: &str, payload: serde_json::Value) -> PublishResponse {
        self.shared.publish(
            &channel.parse().expect("valid channel"),
            key.parse().expect("valid key"),
            Payload(payload),
        )
    }

    /// Drops every open connection without a close frame, as a crashed proxy or a cut cable would.
    pub fn cut_off_everyone(&self) {
        let _ = self.shared.kill.send(());
    }

    /// How many tickets were issued.
    pub fn tickets_issued(&self) -> u64 {
        self.shared.issued.load(Ordering::SeqCst)
    }

    /// How many events a channel holds.
    pub fn head(&self, channel: &str) -> u64 {
        self.shared
            .broker
            .lock()
            .channel(&channel.parse().expect("valid"))
            .head()
            .seq
            .get()
    }
}

async fn issue_ticket(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    if !authorized {
        let body = json!({ "error": { "code": "unauthorized", "message": "the credential is not valid", "retryable": false } });
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    let ticket = format!("{:032x}", rand::random::<u128>());
    let grant: Grant = Grant {
        user: "ada".parse().expect("valid"),
        permissions: vec![
            serde_json::from_value(json!({ "pattern": "**", "read": true, "write": true }))
                .expect("valid"),
        ],
    };
    shared.tickets.lock().insert(ticket.clone(), grant);
    shared.issued.fetch_add(1, Ordering::SeqCst);
    (
        StatusCode::CREATED,
        axum::Json(json!({ "ticket": ticket, "expires_in_ms": 30_000, "user": "ada" })),
    )
        .into_response()
}

async fn connect(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let ticket = query.get("ticket").cloned();
    upgrade
        .protocols(["ferry.v1"])
        .on_upgrade(move |socket| session(socket, ticket, shared))
}

async fn session(mut socket: WebSocket, ticket: Option<String>, shared: Arc<Shared>) {
    let Some(grant) = ticket.and_then(|t| shared.tickets.lock().remove(&t)) else {
        let frame = CloseFrame {
            code: close_code::TICKET_REJECTED,
            reason: "ticket rejected".into(),
        };
        let _ = socket.send(Message::Close(Some(frame))).await;
        return;
    };
    // Live events feed the session from before any subscribe is answered.
    let mut events = shared.events.subscribe();
    let mut kill = shared.kill.subscribe();
    let id = shared.sessions.fetch_add(1, Ordering::SeqCst) + 1;
    let mut session = ServerSession::new(
        shared.config.clone(),
        grant,
        format!("s-{id}").parse().expect("valid"),
        shared.now(),
    );
    loop {
        loop {
            let mut progressed = false;
            while let Some(action) = session.poll_action() {
                progressed = true;
                match action {
                    Action::Subscribe { id, channel, from } => {
                        let (head, recovery, replay) = shared.subscribe(&channel, from.as_ref());
                        session.subscribed(&id, head, recovery, replay);
                    }
                    Action::Unsubscribe { .. } => {}
                    Action::Publish {
                        id,
                        channel,
                        idempotency_key,
                        payload,
                    } => {
                        let ack = shared.publish(&channel, idempotency_key, payload);
                        session.published(&id, ack);
                    }
                }
            }
            while let Some(transmit) = session.poll_transmit() {
                progressed = true;
                match transmit {
                    Transmit::Send { text } => {
                        if socket.send(Message::Text(text.into())).await.is_err() {
                            return;
                        }
                    }
                    Transmit::Close { code, reason } => {
                        let _ = socket
                            .send(Message::Close(Some(CloseFrame {
                                code,
                                reason: reason.into(),
                            })))
                            .await;
                        return;
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        let deadline = session
            .poll_timeout()
            .map(|t| shared.origin + Duration::from_millis(t.as_millis()));
        tokio::select! {
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => session.handle_frame(Frame::Text(text.as_bytes()), shared.now()),
                Some(Ok(Message::Binary(bytes))) => session.handle_frame(Frame::Binary(&bytes), shared.now()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
            },
            event = events.recv() => match event {
                Ok(event) => session.deliver(&event),
                Err(broadcast::error::RecvError::Lagged(_)) => session.close(close_code::INTERNAL_ERROR, "fell behind the broker"),
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = kill.recv() => return,
            () = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => session.handle_timeout(shared.now()),
        }
    }
}
