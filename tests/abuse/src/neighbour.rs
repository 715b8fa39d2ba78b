//! The neighbour: an ordinary client beside the attack. One session subscribes to a channel of
//! its own; a second publishes to it over the WebSocket every `interval` (over the socket
//! rather than `POST /v1/publish`, so that a probe that drains the caller's HTTP publish
//! bucket does not starve it). Each event's latency is the time from the publish frame being
//! sent to the event arriving, both observed instants in this process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::Cx;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the neighbour saw.
#[derive(Default)]
struct Seen {
    /// When each publish `n` was sent.
    sent: HashMap<u64, Instant>,
    /// Publishes acknowledged.
    acknowledged: u64,
    /// The latency of each event received, in the order received.
    latencies: Vec<Duration>,
    /// The `n` of the last event received, and its seq.
    last: Option<(u64, u64)>,
    /// What went wrong (an event out of order, a gap, an error, a close).
    problems: Vec<String>,
}

/// The figures once the neighbour has stopped.
pub struct Finished {
    /// Every event's latency, in the order received.
    pub latencies: Vec<Duration>,
}

/// A running neighbour.
pub struct Neighbour {
    seen: Arc<Mutex<Seen>>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// A session opened with a fresh ticket and welcomed.
pub async fn session(cx: &Cx) -> Result<Socket, String> {
    let ticket = crate::target::ticket(&cx.http, &cx.base, &cx.token).await?;
    let url = format!("ws://{}/v1/ws?ticket={ticket}", cx.address);
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("ferry.v1"),
    );
    let (mut socket, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .map_err(|_| "the upgrade took over 10 s".to_owned())?
    .map_err(|e| format!("the upgrade: {e}"))?;
    let welcome = next_json(&mut socket, Duration::from_secs(10)).await?;
    if welcome["type"] != "welcome" {
        return Err(format!("expected a welcome, got {welcome}"));
    }
    Ok(socket)
}

/// The next text frame as JSON, answering the server's pings on the way.
async fn next_json(socket: &mut Socket, within: Duration) -> Result<Value, String> {
    loop {
        let message = tokio::time::timeout(within, socket.next())
            .await
            .map_err(|_| format!("no frame within {} s", within.as_secs()))?;
        match message {
            Some(Ok(Message::Text(text))) => {
                let value: Value =
                    serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
                if value["type"] == "ping" {
                    let pong = json!({ "type": "pong", "nonce": value["nonce"] }).to_string();
                    socket
                        .send(Message::text(pong))
                        .await
                        .map_err(|e| format!("pong: {e}"))?;
                    continue;
                }
                return Ok(value);
            }
            Some(Ok(Message::Close(frame))) => return Err(format!("closed: {frame:?}")),
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(format!("read: {error}")),
            None => return Err("the connection ended".to_owned()),
        }
    }
}

impl Neighbour {
    /// Opens both sessions, subscribes, and starts publishing to `project:<name>:tasks`.
    pub async fn start(cx: &Cx, interval: Duration, name: &str) -> Result<Self, String> {
        let channel = format!("project:{name}:tasks");
        let mut subscriber = session(cx).await?;
        subscriber
            .send(Message::text(
                json!({ "type": "subscribe", "id": "neighbour", "channel": channel }).to_string(),
            ))
            .await
            .map_err(|e| e.to_string())?;
        let reply = next_json(&mut subscriber, Duration::from_secs(10)).await?;
        if reply["type"] != "subscribed" {
            return Err(format!("the subscribe was answered {reply}"));
        }
        let publisher = session(cx).await?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (stop, stopped) = watch::channel(false);
        let reader = tokio::spawn(read_events(subscriber, seen.clone()));
        let writer = tokio::spawn(publish(publisher, channel, interval, seen.clone(), stopped));
        Ok(Self {
            seen,
            stop,
            tasks: vec![reader, writer],
        })
    }

    /// The median latency of the first `count` events (waiting up to `within` for them).
    pub async fn baseline(&self, count: usize, within: Duration) -> Option<Duration> {
        let until = Instant::now() + within;
        loop {
            {
                let seen = self.seen.lock().expect("the neighbour's lock");
                if seen.latencies.len() >= count {
                    return Some(median(&seen.latencies[..count]));
                }
            }
            if Instant::now() > until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops publishing, waits up to `within` for every acknowledged event, and checks that
    /// each publish was acknowledged and each event arrived once, in order.
    pub async fn finish(self, within: Duration) -> Result<Finished, String> {
        let _ = self.stop.send(true);
        let until = Instant::now() + within;
        let mut tasks = self.tasks.into_iter();
        let reader = tasks.next();
        for writer in tasks {
            let _ = writer.await;
        }
        loop {
            {
                let seen = self.seen.lock().expect("the neighbour's lock");
                let sent = seen.sent.len() as u64;
                let received = seen.latencies.len() as u64;
                if received >= sent || Instant::now() > until || !seen.problems.is_empty() {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(reader) = reader {
            reader.abort();
        }
        let seen = self.seen.lock().expect("the neighbour's lock");
        let sent = seen.sent.len() as u64;
        let mut problems = seen.problems.clone();
        if seen.acknowledged != sent {
            problems.push(format!(
                "{} of its {sent} publishes were acknowledged",
                seen.acknowledged
            ));
        }
        if (seen.latencies.len() as u64) != sent {
            problems.push(format!(
                "it received {} of the {sent} events published",
                seen.latencies.len()
            ));
        }
        if problems.is_empty() {
            Ok(Finished {
                latencies: seen.latencies.clone(),
            })
        } else {
            Err(problems.join("; "))
        }
    }
}

/// The median of `samples` (zero for none).
pub fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

async fn read_events(mut socket: Socket, seen: Arc<Mutex<Seen>>) {
    loop {
        let value = match next_json(&mut socket, Duration::from_secs(3600)).await {
            Ok(value) => value,
            Err(error) => {
                let mut seen = seen.lock().expect("the neighbour's lock");
                seen.problems.push(format!("its subscriber: {error}"));
                return;
            }
        };
        let arrived = Instant::now();
        let mut seen = seen.lock().expect("the neighbour's lock");
        if value["type"] != "event" {
            seen.problems
                .push(format!("its subscriber got {value} instead of an event"));
            return;
        }
        let n = value["payload"]["task_id"]
            .as_str()
            .and_then(|t| t.strip_prefix("N-"))
            .and_then(|n| n.parse::<u64>().ok());
        let seq = value["position"]["seq"].as_u64();
        let (Some(n), Some(seq)) = (n, seq) else {
            seen.problems
                .push(format!("an event it did not publish: {value}"));
            return;
        };
        let expected = seen.last.map_or(0, |(n, _)| n + 1);
        if n != expected || seen.last.is_some_and(|(_, last)| seq != last + 1) {
            let last = seen.last;
            seen.problems.push(format!(
                "event {n} (seq {seq}) arrived after {last:?}: out of order or with a gap"
            ));
            return;
        }
        seen.last = Some((n, seq));
        if let Some(sent) = seen.sent.get(&n).copied() {
            seen.latencies.push(arrived.saturating_duration_since(sent));
        }
    }
}

async fn publish(
    mut socket: Socket,
    channel: String,
    interval: Duration,
    seen: Arc<Mutex<Seen>>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    let salt: u32 = rand::random();
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let frame = json!({
                    "type": "publish", "id": format!("p-{n}"), "channel": channel,
                    "idempotency_key": format!("neighbour-{salt:08x}-{n}"),
                    "payload": { "task_id": format!("N-{n}"), "status": "running", "progress": 0.5, "assignee": null }
                })
                .to_string();
                seen.lock().expect("the neighbour's lock").sent.insert(n, Instant::now());
                if let Err(error) = socket.send(Message::text(frame)).await {
                    seen.lock().expect("the neighbour's lock").problems.push(format!("its publisher: {error}"));
                    return;
                }
                n += 1;
            }
            message = socket.next() => {
                match message {
                    Some(Ok(Message::Text(text))) => {
                        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                        match value["type"].as_str() {
                            Some("published") => seen.lock().expect("the neighbour's lock").acknowledged += 1,
                            Some("ping") => {
                                let pong = json!({ "type": "pong", "nonce": value["nonce"] }).to_string();
                                let _ = socket.send(Message::text(pong)).await;
                            }
                            _ => {
                                seen.lock().expect("the neighbour's lock").problems.push(format!("its publisher got {value}"));
                                return;
                            }
                        }
                    }
                    Some(Ok(_)) => {}
                    other => {
                        seen.lock().expect("the neighbour's lock").problems.push(format!("its publisher's connection ended: {other:?}"));
                        return;
                    }
                }
            }
            _ = stopped.changed() => break,
        }
    }
    // The acknowledgements of the last publishes still arrive.
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let (acknowledged, sent) = {
            let seen = seen.lock().expect("the neighbour's lock");
            (seen.acknowledged, seen.sent.len() as u64)
        };
        if acknowledged >= sent || Instant::now() > until {
            return;
        }
        match tokio::time::timeout(Duration::from_millis(500), socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) if text.contains("\"published\"") => {
                seen.lock().expect("the neighbour's lock").acknowledged += 1;
            }
            Ok(Some(Ok(_))) | Err(_) => {}
            Ok(_) => return,
        }
    }
}
