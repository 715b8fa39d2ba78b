//! A tampering proxy: forwards Ferry's HTTP endpoints and WebSocket sessions between an
//! implementation and the runner, breaking exactly one rule on the way. Placed in front of a
//! correct implementation, the pair is an implementation with one defect: a mutant.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{self, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, protocol::WebSocketConfig};

use crate::mutations::{FORGED_TICKET, Mutation};
use crate::support::{RESTRICTED, TOKEN};

const BIG: usize = 64 << 20;

/// A running proxy.
pub struct Proxy {
    /// The proxy's base URL.
    pub url: String,
    /// Where a mutant client that counts characters records what it measured.
    pub originals: Originals,
}

struct Shared {
    upstream: String,
    mutation: Mutation,
    http: reqwest::Client,
    /// The last bearer credential seen on the ticket endpoint.
    credential: Mutex<Option<String>>,
    /// Tickets already presented on /v1/ws.
    used_tickets: Mutex<HashSet<String>>,
    /// The first ticket response, for a client-side ticket reuse.
    first_ticket: Mutex<Option<(StatusCode, Bytes)>>,
    /// WebSocket sessions opened so far.
    sessions: AtomicU64,
    /// Whether a goodbye has passed through: the upstream server drains.
    draining: AtomicBool,
    /// Events already seen per channel and seq, across sessions (client side).
    seen_events: Mutex<HashSet<(String, String, u64)>>,
    /// Idempotency keys rewritten so far.
    rewrites: AtomicU64,
    /// The idempotency keys of the RPC calls seen so far (server side).
    call_keys: Mutex<HashSet<String>>,
    /// When each idempotency key of a backend publish was first seen.
    first_seen: Mutex<HashMap<String, std::time::Instant>>,
    /// Where repeated events go, for a mutant client that delivers them again.
    repeats: Option<tokio::sync::mpsc::UnboundedSender<Value>>,
    /// Tickets of the restricted credential issued with another credential's rights.
    posing_tickets: Mutex<HashSet<String>>,
    /// Payloads as a mutant client measured them, with the payloads it sends in their place.
    originals: Originals,
}

/// Payloads as a mutant client measured them (each character that is not ASCII made one
/// ASCII character), beside the payloads the application gave.
pub type Originals = Arc<Mutex<Vec<(Value, Value)>>>;

impl Proxy {
    /// Starts a proxy in front of `upstream` (a base URL) that applies `mutation`; events the
    /// server sends a second time go to `repeats`.
    pub async fn start(
        upstream: &str,
        mutation: Mutation,
        repeats: Option<tokio::sync::mpsc::UnboundedSender<Value>>,
    ) -> Self {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            mutation,
            http: reqwest::Client::new(),
            credential: Mutex::new(None),
            used_tickets: Mutex::default(),
            first_ticket: Mutex::new(None),
            sessions: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            seen_events: Mutex::default(),
            rewrites: AtomicU64::new(0),
            call_keys: Mutex::default(),
            first_seen: Mutex::default(),
            repeats,
            posing_tickets: Mutex::default(),
            originals: Originals::default(),
        });
        let originals = shared.originals.clone();
        let app = Router::new()
            .route("/v1/ws", get(websocket))
            .fallback(any(http))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for the proxy");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, originals }
    }
}

/// Forwards any HTTP request, applying the mutation to tickets and publishes.
async fn http(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, BIG).await.unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if let Some(auth) = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        && path.starts_with("/v1/tickets")
    {
        *shared.credential.lock() = Some(auth.to_owned());
    }
    if path.starts_with("/v1/tickets")
        && shared.mutation == Mutation::ClientReusesTicket
        && let Some((status, body)) = shared.first_ticket.lock().clone()
    {
        return (status, [("content-type", "application/json")], body).into_response();
    }
    let mut body = body;
    if path.starts_with("/v1/publish")
        && shared.mutation == Mutation::ServerForgetsIdempotencyKeys
        && let Ok(mut value) = serde_json::from_slice::<Value>(&body)
    {
        rewrite_key(&shared, &mut value);
        body = Bytes::from(value.to_string());
    }
    if path.starts_with("/v1/publish")
        && shared.mutation == Mutation::ServerForgetsKeysEarly
        && let Ok(mut value) = serde_json::from_slice::<Value>(&body)
        && let Some(key) = value.get("idempotency_key").and_then(Value::as_str)
    {
        let now = std::time::Instant::now();
        let first = *shared
            .first_seen
            .lock()
            .entry(key.to_owned())
            .or_insert(now);
        if now.duration_since(first) >= FORGETS_KEYS_AFTER {
            rewrite_key(&shared, &mut value);
            body = Bytes::from(value.to_string());
        }
    }
    let mut upstream = shared
        .http
        .request(parts.method.clone(), format!("{}{path}", shared.upstream))
        .body(body);
    // The restricted credential's ticket, issued as if a credential with more rights had
    // asked.
    let posing_as = shared.mutation.restricted_poses_as().filter(|_| {
        path.starts_with("/v1/tickets")
            && parts
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                == Some(format!("Bearer {RESTRICTED}").as_str())
    });
    let posing = posing_as.is_some();
    for (name, value) in &parts.headers {
        if name == "authorization"
            && let Some(token) = posing_as
        {
            upstream = upstream.header(name, format!("Bearer {token}"));
        } else if name != "host" && name != "content-length" {
            upstream = upstream.header(name, value);
        }
    }
    let Ok(answer) = upstream.send().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = answer.status();
    let content_type = answer
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let mut bytes = answer.bytes().await.unwrap_or_default();
    if path.starts_with("/v1/history")
        && shared.mutation == Mutation::ServerHistoryClaimsComplete
        && let Ok(mut page) = serde_json::from_slice::<Value>(&bytes)
        && page["complete"] == false
    {
        page["complete"] = json!(true);
        page["reason"] = Value::Null;
        bytes = Bytes::from(page.to_string());
    }
    if path.starts_with("/v1/history")
        && shared.mutation == Mutation::ServerLosesNewestEventWhileDraining
        && shared.draining.load(Ordering::SeqCst)
        && let Ok(mut page) = serde_json::from_slice::<Value>(&bytes)
        && let Some(events) = page["events"].as_array_mut()
    {
        events.pop();
        bytes = Bytes::from(page.to_string());
    }
    if posing
        && let Ok(body) = serde_json::from_slice::<Value>(&bytes)
        && let Some(ticket) = body["ticket"].as_str()
    {
        shared.posing_tickets.lock().insert(ticket.to_owned());
    }
    if status == StatusCode::UNAUTHORIZED
        && shared.mutation == Mutation::ServerEchoesCredential
        && let Some(auth) = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
        && let Ok(mut refusal) = serde_json::from_slice::<Value>(&bytes)
    {
        let message = refusal["error"]["message"].as_str().unwrap_or_default();
        refusal["error"]["message"] = json!(format!("{message} (presented: {auth})"));
        bytes = Bytes::from(refusal.to_string());
    }
    if path.starts_with("/v1/tickets")
        && status.is_success()
        && shared.mutation == Mutation::ServerAdvertisesLongerTicketLifetime
        && let Ok(mut ticket) = serde_json::from_slice::<Value>(&bytes)
        && let Some(lifetime) = ticket["expires_in_ms"].as_u64()
    {
        ticket["expires_in_ms"] = json!(2 * lifetime);
        bytes = Bytes::from(ticket.to_string());
    }
    if path.starts_with("/v1/tickets")
        && status == StatusCode::SERVICE_UNAVAILABLE
        && shared.mutation == Mutation::ServerIssuesTicketsWhileDraining
    {
        let forged =
            json!({ "ticket": FORGED_TICKET, "expires_in_ms": 1000, "user": "conformance" });
        return (
            StatusCode::CREATED,
            [("content-type", "application/json")],
            forged.to_string(),
        )
            .into_response();
    }
    if path.starts_with("/v1/tickets") && status.is_success() {
        let mut first = shared.first_ticket.lock();
        if first.is_none() {
            *first = Some((status, bytes.clone()));
        }
    }
    (status, [("content-type", content_type)], bytes).into_response()
}

/// How old a backend publish's idempotency key may be before the early-forgetting mutant
/// treats it as new: half the resume window the mutants' server advertises (1000 ms).
const FORGETS_KEYS_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

/// Gives a publish a key of its own, so that a retry is stored again.
fn rewrite_key(shared: &Shared, value: &mut Value) {
    if let Some(key) = value.get("idempotency_key").and_then(Value::as_str) {
        let n = shared.rewrites.fetch_add(1, Ordering::Relaxed);
        value["idempotency_key"] = json!(format!("{key}.{n}"));
    }
}

/// Opens the upstream session first, so that a refusal (a status, a missing subprotocol)
/// reaches the downstream peer unchanged; then relays frames both ways.
async fn websocket(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    request: axum::http::Uri,
    upgrade: WebSocketUpgrade,
) -> Response {
    let mut query = request.query().unwrap_or_default().to_owned();
    if shared.mutation == Mutation::ServerAcceptsTicketTwice
        && let Some(ticket) = ticket_of(&query)
    {
        let reused = !shared.used_tickets.lock().insert(ticket.clone());
        if reused && let Some(fresh) = fresh_ticket(&shared).await {
            query = query.replace(&ticket, &fresh);
        }
    }
    let ws_url = format!(
        "{}/v1/ws{}{query}",
        shared.upstream.replacen("http", "ws", 1),
        if query.is_empty() { "" } else { "?" }
    );
    let mut up_request = ws_url.into_client_request().expect("a valid upstream URL");
    for name in ["sec-websocket-protocol", "origin"] {
        if let Some(value) = headers.get(name) {
            up_request.headers_mut().insert(name, value.clone());
        }
    }
    // An upgrade without ferry.v1 passes as if it had offered it.
    let offers_ferry = headers
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|offer| offer.split(',').any(|p| p.trim() == "ferry.v1"));
    let lax = shared.mutation == Mutation::ServerAcceptsUpgradeWithoutSubprotocol && !offers_ferry;
    if lax {
        up_request.headers_mut().insert(
            "sec-websocket-protocol",
            axum::http::HeaderValue::from_static("ferry.v1"),
        );
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(BIG))
        .max_frame_size(Some(BIG));
    let (upstream, response) =
        match tokio_tungstenite::connect_async_with_config(up_request, Some(config), false).await {
            Ok(pair) => pair,
            Err(tungstenite::Error::Http(refusal)) => {
                let status = refusal.status();
                let body = refusal.body().clone().unwrap_or_default();
                return (status, body).into_response();
            }
            Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
        };
    let protocol = response
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut upgrade = upgrade.max_message_size(BIG).max_frame_size(BIG);
    if let Some(protocol) = protocol.filter(|_| !lax) {
        upgrade = upgrade.protocols([protocol]);
    }
    let session = shared.sessions.fetch_add(1, Ordering::Relaxed) + 1;
    let posing = ticket_of(&query).is_some_and(|t| shared.posing_tickets.lock().contains(&t));
    upgrade.on_upgrade(move |downstream| relay(shared, session, posing, downstream, upstream))
}

fn ticket_of(query: &str) -> Option<String> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("ticket="))
        .map(str::to_owned)
}

async fn fresh_ticket(shared: &Shared) -> Option<String> {
    let credential = shared.credential.lock().clone()?;
    let answer = shared
        .http
        .post(format!("{}/v1/tickets", shared.upstream))
        .header("authorization", credential)
        .send()
        .await
        .ok()?;
    let body: Value = answer.json().await.ok()?;
    body["ticket"].as_str().map(str::to_owned)
}

/// What one session has shown so far.
#[derive(Default)]
struct Session {
    max_message_bytes: Option<usize>,
    /// Replayed events still to come after a subscribed reply with a recovery.
    replay_left: HashMap<String, u64>,
    /// Live events seen per channel.
    events: HashMap<String, u64>,
    /// The id of the client's last frame that carried one.
    last_request_id: Option<String>,
    /// The session's ticket was issued with the full credential's rights in place of the
    /// restricted one's.
    posing: bool,
    /// The nonce of the server's last ping.
    last_ping: Option<Value>,
    /// The client's frames that carried an id, by id.
    requests: HashMap<String, Value>,
    /// Unsubscribes the proxy answered itself: the server's own answers are dropped.
    answered: HashSet<String>,
}

/// How long after answering an unsubscribe itself the late-unsubscribing mutant passes it on.
const UNSUBSCRIBE_LAG: std::time::Duration = std::time::Duration::from_millis(250);

type Upstream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn relay(
    shared: Arc<Shared>,
    session_no: u64,
    posing: bool,
    downstream: WebSocket,
    upstream: Upstream,
) {
    let (mut down_tx, mut down_rx) = downstream.split();
    let (mut up_tx, mut up_rx) = upstream.split();
    let state = Mutex::new(Session {
        posing,
        ..Session::default()
    });
    let mutation = shared.mutation;
    // Frames to pass on to the server a moment later.
    let (later_tx, mut later_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    if mutation == Mutation::ClientSpeaksBeforeWelcome {
        let early = json!({ "type": "subscribe", "id": "early", "channel": "conformance:early" });
        if up_tx
            .send(tungstenite::Message::text(early.to_string()))
            .await
            .is_err()
        {
            return;
        }
    }
    loop {
        tokio::select! {
            from_client = down_rx.next() => match from_client {
                Some(Ok(ws::Message::Text(text))) => {
                    if mutation == Mutation::ServerUnsubscribesLate
                        && let Some(reply) = answer_unsubscribe(&state, text.as_str())
                    {
                        if down_tx.send(ws::Message::Text(reply.into())).await.is_err() { return; }
                        let later = later_tx.clone();
                        let text = text.as_str().to_owned();
                        tokio::spawn(async move {
                            tokio::time::sleep(UNSUBSCRIBE_LAG).await;
                            let _ = later.send(text);
                        });
                        continue;
                    }
                    for frame in client_to_server(&shared, mutation, session_no, &state, text.as_str()) {
                        if up_tx.send(tungstenite::Message::text(frame)).await.is_err() { return; }
                    }
                }
                Some(Ok(ws::Message::Binary(data))) => {
                    if up_tx.send(tungstenite::Message::binary(data)).await.is_err() { return; }
                }
                Some(Ok(ws::Message::Close(frame))) => {
                    let frame = frame.map(|f| tungstenite::protocol::CloseFrame {
                        code: f.code.into(),
                        reason: f.reason.as_str().into(),
                    });
                    let _ = up_tx.send(tungstenite::Message::Close(frame)).await;
                    let _ = up_tx.flush().await;
                    // Wait for the server's answer, then end.
                    while let Some(Ok(message)) = up_rx.next().await {
                        if matches!(message, tungstenite::Message::Close(_)) { break; }
                    }
                    return;
                }
                Some(Ok(_)) => {}
                // A text frame that is not UTF-8, or one larger than the proxy reads, never
                // reaches the proxy's side: close as the protocol says (FERRY-TRANSPORT-4,
                // FERRY-SIZE-3), as the server behind would have. Otherwise the client vanished
                // without a close frame: so does the proxy.
                Some(Err(error)) => {
                    if let Some((code, reason)) = refusal(error) {
                        let frame = ws::CloseFrame { code: mutation.close_code(code), reason: reason.into() };
                        let _ = down_tx.send(ws::Message::Close(Some(frame))).await;
                        let _ = up_tx.send(tungstenite::Message::Close(None)).await;
                    } else if mutation == Mutation::ServerTakesDropsForCloses {
                        close_for_the_dropped_client(&mut up_tx, &mut up_rx).await;
                    }
                    return;
                }
                None => {
                    if mutation == Mutation::ServerTakesDropsForCloses {
                        close_for_the_dropped_client(&mut up_tx, &mut up_rx).await;
                    }
                    return;
                }
            },
            Some(later) = later_rx.recv() => {
                if up_tx.send(tungstenite::Message::text(later)).await.is_err() { return; }
            }
            from_server = up_rx.next() => match from_server {
                Some(Ok(tungstenite::Message::Text(text))) => {
                    for frame in server_to_client(&shared, mutation, &state, text.as_str(), &mut up_tx).await {
                        if down_tx.send(ws::Message::Text(frame.into())).await.is_err() { return; }
                    }
                }
                Some(Ok(tungstenite::Message::Close(frame))) => {
                    let frame = frame.map(|f| ws::CloseFrame {
                        code: mutation.close_code(u16::from(f.code)),
                        reason: f.reason.as_str().into(),
                    });
                    let _ = down_tx.send(ws::Message::Close(frame)).await;
                    let _ = down_tx.flush().await;
                    while let Some(Ok(message)) = down_rx.next().await {
                        if matches!(message, ws::Message::Close(_)) { break; }
                    }
                    return;
                }
                Some(Ok(_)) => {}
                // The server vanished without a close frame: so does the proxy.
                Some(Err(_)) | None => return,
            },
        }
    }
}

/// Sends the server a close frame for a client whose connection dropped without one, and
/// waits for the server's answer.
async fn close_for_the_dropped_client(
    up_tx: &mut futures_util::stream::SplitSink<Upstream, tungstenite::Message>,
    up_rx: &mut futures_util::stream::SplitStream<Upstream>,
) {
    let _ = up_tx.send(tungstenite::Message::Close(None)).await;
    let _ = up_tx.flush().await;
    while let Some(Ok(message)) = up_rx.next().await {
        if matches!(message, tungstenite::Message::Close(_)) {
            break;
        }
    }
}

/// The close a conforming server answers the client's refused frame with, if it is one.
fn refusal(error: axum::Error) -> Option<(u16, &'static str)> {
    match error
        .into_inner()
        .downcast::<tungstenite::Error>()
        .map(|e| *e)
    {
        Ok(tungstenite::Error::Utf8(_)) => Some((1007, "text frame is not UTF-8")),
        Ok(tungstenite::Error::Capacity(_)) => Some((1009, "frame too large")),
        _ => None,
    }
}

/// A frame from the client, as the mutant passes it on.
fn client_to_server(
    shared: &Shared,
    mutation: Mutation,
    session_no: u64,
    state: &Mutex<Session>,
    text: &str,
) -> Vec<String> {
    let value: Option<Value> = serde_json::from_str(text).ok();
    let kind = value
        .as_ref()
        .and_then(|v| v["type"].as_str())
        .unwrap_or_default();
    if let Some(id) = value.as_ref().and_then(|v| v["id"].as_str()) {
        let mut session = state.lock();
        session.last_request_id = Some(id.to_owned());
        if let Some(value) = &value {
            session.requests.insert(id.to_owned(), value.clone());
        }
    }
    match mutation {
        Mutation::ServerAcceptsAnyPong if kind == "pong" => {
            // Whatever the pong says, it answers the last ping.
            if let (Some(mut value), Some(nonce)) = (value, state.lock().last_ping.clone()) {
                value["nonce"] = nonce;
                return vec![value.to_string()];
            }
        }
        Mutation::ClientCountsCharacters if kind == "publish" => {
            let original = value.as_ref().and_then(|v| {
                shared
                    .originals
                    .lock()
                    .iter()
                    .find(|(measured, _)| *measured == v["payload"])
                    .map(|(_, original)| original.clone())
            });
            if let (Some(mut value), Some(original)) = (value, original) {
                value["payload"] = original;
                return vec![value.to_string()];
            }
        }
        Mutation::ServerHasNoSizeGate => {
            let limit = state.lock().max_message_bytes;
            if limit.is_some_and(|max| text.len() > max) {
                return Vec::new();
            }
        }
        Mutation::ServerForgetsIdempotencyKeys if kind == "publish" => {
            if let Some(mut value) = value {
                rewrite_key(shared, &mut value);
                return vec![value.to_string()];
            }
        }
        Mutation::ServerRunsCallsTwice if kind == "rpc" => {
            // The first call with a key passes; each repeat reaches the server as a new call.
            let key = value.as_ref().and_then(|v| v["idempotency_key"].as_str());
            let repeat = key.is_some_and(|key| !shared.call_keys.lock().insert(key.to_owned()));
            if repeat && let Some(mut value) = value {
                rewrite_key(shared, &mut value);
                return vec![value.to_string()];
            }
        }
        Mutation::ClientIgnoresPings if kind == "pong" => return Vec::new(),
        Mutation::ClientForgetsSubscriptions if kind == "subscribe" && session_no > 1 => {
            return Vec::new();
        }
        Mutation::ClientResubscribesFromScratch if kind == "subscribe" => {
            if let Some(mut value) = value {
                if let Some(object) = value.as_object_mut() {
                    object.remove("from");
                }
                return vec![value.to_string()];
            }
        }
        Mutation::ClientForgetsFences
            if kind == "subscribe"
                && session_no > 1
                && value.as_ref().is_some_and(|v| v.get("hold").is_some()) =>
        {
            if let Some(mut value) = value {
                value["hold"] = json!({});
                return vec![value.to_string()];
            }
        }
        Mutation::ClientForgetsCallKey if kind == "rpc" && session_no > 1 => {
            if let Some(mut value) = value {
                rewrite_key(shared, &mut value);
                return vec![value.to_string()];
            }
        }
        Mutation::ClientForgetsPublishKey if kind == "publish" && session_no > 1 => {
            if let Some(mut value) = value {
                rewrite_key(shared, &mut value);
                return vec![value.to_string()];
            }
        }
        _ => {}
    }
    vec![text.to_owned()]
}

/// The late-unsubscribing mutant's own answer to an unsubscribe, if `text` is one.
fn answer_unsubscribe(state: &Mutex<Session>, text: &str) -> Option<String> {
    let value: Value = serde_json::from_str(text).ok()?;
    if value["type"] != "unsubscribe" {
        return None;
    }
    let id = value["id"].as_str()?;
    state.lock().answered.insert(id.to_owned());
    Some(json!({ "type": "unsubscribed", "id": id, "channel": value["channel"] }).to_string())
}

/// The events of `channel` after `from` in its history, read with the full credential, as
/// event frames.
async fn replay_of(shared: &Shared, channel: &str, from: &Value) -> Vec<String> {
    // Channel names, epochs and seqs need no escaping in a query string.
    let mut query = format!("channel={channel}");
    if let Some(epoch) = from["epoch"].as_str() {
        query.push_str(&format!("&epoch={epoch}"));
    }
    if let Some(seq) = from["seq"].as_u64().filter(|&seq| seq > 0) {
        query.push_str(&format!("&after_seq={seq}"));
    }
    let Ok(answer) = shared
        .http
        .get(format!("{}/v1/history?{query}", shared.upstream))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
    else {
        return Vec::new();
    };
    let page: Value = answer.json().await.unwrap_or_default();
    page["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|stored| {
            let mut event = stored.clone();
            event["type"] = json!("event");
            event["channel"] = json!(channel);
            event.to_string()
        })
        .collect()
}

/// A frame from the server, as the mutant passes it on.
async fn server_to_client(
    shared: &Shared,
    mutation: Mutation,
    state: &Mutex<Session>,
    text: &str,
    upstream: &mut futures_util::stream::SplitSink<Upstream, tungstenite::Message>,
) -> Vec<String> {
    let Ok(mut value) = serde_json::from_str::<Value>(text) else {
        return vec![text.to_owned()];
    };
    let kind = value["type"].as_str().unwrap_or_default().to_owned();
    let channel = value["channel"].as_str().unwrap_or_default().to_owned();
    if kind == "welcome" {
        state.lock().max_message_bytes = value["limits"]["max_message_bytes"]
            .as_u64()
            .and_then(|n| usize::try_from(n).ok());
        if state.lock().posing {
            // The welcome names the restricted user and its rights; the session has others.
            value["user"] = json!(crate::support::RESTRICTED_USER);
            value["permissions"] = crate::support::restricted_permissions();
            return vec![value.to_string()];
        }
        if mutation == Mutation::ServerPingsBeforeWelcome {
            let ping = json!({ "type": "ping", "nonce": "before-welcome" });
            return vec![ping.to_string(), text.to_owned()];
        }
        if let Some(rewritten) = mutation.rewrite_welcome(&mut value) {
            return vec![rewritten];
        }
    }
    if kind == "ping" {
        state.lock().last_ping = Some(value["nonce"].clone());
    }
    if kind == "unsubscribed"
        && mutation == Mutation::ServerUnsubscribesLate
        && let Some(id) = value["id"].as_str()
        && state.lock().answered.remove(id)
    {
        return Vec::new();
    }
    if kind == "subscribed"
        && mutation == Mutation::ServerReportsStaleHead
        && let Some(seq) = value["position"]["seq"].as_u64()
        && seq > 0
    {
        value["position"]["seq"] = json!(seq - 1);
        return vec![value.to_string()];
    }
    if kind == "goodbye" {
        shared.draining.store(true, Ordering::SeqCst);
    }
    if kind == "goodbye" && mutation == Mutation::ServerSkipsGoodbye {
        return Vec::new();
    }
    if kind == "error"
        && mutation == Mutation::ServerReplaysWithoutRead
        && value["error"]["code"] == "forbidden"
        && let Some(request) = value["id"]
            .as_str()
            .and_then(|id| state.lock().requests.get(id).cloned())
        && request["type"] == "subscribe"
        && request.get("from").is_some()
    {
        let channel = request["channel"].as_str().unwrap_or_default();
        let mut frames = vec![text.to_owned()];
        frames.extend(replay_of(shared, channel, &request["from"]).await);
        return frames;
    }
    if kind == "error"
        && mutation == Mutation::ClientResendsAfterRateLimit
        && value["error"]["code"] == "rate_limited"
        && let Some(request) = value["id"]
            .as_str()
            .and_then(|id| state.lock().requests.get(id).cloned())
    {
        // The client waits retry_after_ms, then sends the request again on this session.
        let wait = value["error"]["retry_after_ms"].as_u64().unwrap_or(0);
        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        let _ = upstream
            .send(tungstenite::Message::text(request.to_string()))
            .await;
    }
    if kind == "subscribed"
        && mutation == Mutation::ServerWithholdsFences
        && let Some(object) = value.as_object_mut()
        && object.remove("hold").is_some()
    {
        return vec![value.to_string()];
    }
    if kind == "subscribed"
        && mutation == Mutation::ServerRecoveryClaimsComplete
        && value["recovery"]["complete"] == false
    {
        value["recovery"]["complete"] = json!(true);
        value["recovery"]["reason"] = Value::Null;
        return vec![value.to_string()];
    }
    if kind == "subscribed" {
        let replayed = value["recovery"]["replayed"].as_u64().unwrap_or(0);
        if replayed > 0 {
            state.lock().replay_left.insert(channel.clone(), replayed);
        }
    }
    match (mutation, kind.as_str()) {
        (Mutation::ServerDuplicatesReplay | Mutation::ServerSkipsReplay, "event") => {
            let mut session = state.lock();
            if let Some(left) = session.replay_left.get_mut(&channel) {
                *left -= 1;
                if *left == 0 {
                    session.replay_left.remove(&channel);
                }
                // The first replayed event of each recovery is the one broken.
                return match mutation {
                    Mutation::ServerDuplicatesReplay => vec![text.to_owned(), text.to_owned()],
                    _ => Vec::new(),
                };
            }
        }
        (Mutation::ServerSkipsLiveEvent, "event") => {
            let mut session = state.lock();
            let seen = session.events.entry(channel).or_default();
            *seen += 1;
            if *seen == 2 {
                return Vec::new();
            }
        }
        (Mutation::ServerNeverPings, "ping") => return Vec::new(),
        (Mutation::ServerNeverRateLimits, "error") if value["error"]["code"] == "rate_limited" => {
            return Vec::new();
        }
        (Mutation::ServerNumbersMalformedErrors, "error") if value["id"].is_null() => {
            value["id"] = json!(state.lock().last_request_id.clone());
            return vec![value.to_string()];
        }
        (Mutation::ServerIgnoresSilentPeer, "ping") => {
            // Answer for the peer, so the server never sees it fall silent.
            let pong = json!({ "type": "pong", "nonce": value["nonce"] }).to_string();
            let _ = upstream.send(tungstenite::Message::text(pong)).await;
        }
        (Mutation::ServerClosesOnForbidden, "error") if value["error"]["code"] == "forbidden" => {
            let _ = upstream
                .send(tungstenite::Message::Close(Some(
                    tungstenite::protocol::CloseFrame {
                        code: 1008.into(),
                        reason: "forbidden".into(),
                    },
                )))
                .await;
        }
        (Mutation::ClientDeliversRepeatedEvents, "event") => {
            let key = (
                channel,
                value["position"]["epoch"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                value["position"]["seq"].as_u64().unwrap_or(0),
            );
            if !shared.seen_events.lock().insert(key) {
                // A client without dedup hands a repeated event to the application again.
                if let Some(repeats) = &shared.repeats {
                    let _ = repeats.send(value.clone());
                }
            }
        }
        _ => {}
    }
    vec![text.to_owned()]
}
