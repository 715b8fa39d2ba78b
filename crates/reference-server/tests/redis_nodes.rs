//! Two `ferry-server` processes on one real Redis, as a deployment of several nodes runs:
//! a ticket from one node redeemed at the other, a publish to one delivered by the other in
//! order, a retried publish on the other stored once, a node killed with SIGKILL (or drained)
//! mid-stream while its client resumes on the other with every acknowledged event exactly
//! once, Redis restarted under traffic, the per-user connection limit across nodes, presence
//! and holds across nodes, and an unsubscribe answered only once the other node reads the
//! leave. Each test has its own key prefix (or its own Redis).

mod common;

use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const CHANNEL: &str = "project:alpha:tasks";

/// One `ferry-server` process on a random port with development auth and a Redis broker.
struct Node {
    child: Child,
    api: Api,
    /// Its data directory, where development auth keeps its token: its own, not the user's.
    _data: tempfile::TempDir,
}

/// A node's address and development token, for HTTP and WebSocket calls.
#[derive(Clone)]
struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Node {
    async fn start(redis_url: &str, prefix: &str) -> Self {
        Self::start_with(redis_url, prefix, &[]).await
    }

    /// [`start`](Self::start) with more command-line arguments.
    async fn start_with(redis_url: &str, prefix: &str, args: &[&str]) -> Self {
        let data = tempfile::tempdir().expect("a temp dir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferry-server"))
            .env("XDG_DATA_HOME", data.path())
            // These tests issue tickets and publish as fast as they can, far past the default
            // per-caller rates (FERRY-RATE-4), which have tests of their own.
            .envs([
                ("FERRY_TICKET_RATE_LIMIT_PER_SECOND", "100000"),
                ("FERRY_TICKET_RATE_LIMIT_BURST", "100000"),
                ("FERRY_PUBLISH_RATE_LIMIT_PER_SECOND", "100000"),
                ("FERRY_PUBLISH_RATE_LIMIT_BURST", "100000"),
            ])
            .args(["--bind", "127.0.0.1:0", "--drain-period-ms", "500"])
            .args(["--broker", redis_url, "--redis-prefix", prefix])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("ferry-server starts");
        let stderr = child.stderr.take().expect("stderr");
        let (base, token) = if args.contains(&"--auth") {
            // Only development auth prints a walkthrough; the address is in the log.
            (listening(stderr).await, String::new())
        } else {
            tokio::spawn(drain(stderr));
            common::read_walkthrough(child.stdout.take().expect("stdout")).await
        };
        Self {
            child,
            api: Api {
                base,
                token,
                http: reqwest::Client::new(),
            },
            _data: data,
        }
    }

    /// SIGKILL: the node dies without a goodbye, as a crashed machine would.
    async fn kill(&mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("the node exits");
    }
}

/// The base URL a node logs when it listens, read from its log; the rest is drained.
async fn listening(stderr: tokio::process::ChildStderr) -> String {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut lines = BufReader::new(stderr).lines();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the node logs its address")
            .expect("stderr")
            .expect("a line");
        if let Some(rest) = line.split("listening address=").nth(1) {
            let address = rest.split_whitespace().next().expect("an address");
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return format!("http://{address}");
        }
    }
}

/// Reads a node's log to its end, so that it never writes to a closed pipe.
async fn drain(stderr: tokio::process::ChildStderr) {
    use tokio::io::AsyncReadExt;
    let mut stderr = stderr;
    let mut buffer = [0u8; 4096];
    while matches!(stderr.read(&mut buffer).await, Ok(n) if n > 0) {}
}

impl std::ops::Deref for Node {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Api {
    /// This node's address with another caller's token.
    fn as_caller(&self, token: &str) -> Self {
        Self {
            token: token.to_owned(),
            ..self.clone()
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

    /// Opens a WebSocket with `ticket`.
    async fn open(&self, ticket: &str) -> Socket {
        let url = format!(
            "{}/v1/ws?ticket={ticket}",
            self.base.replace("http://", "ws://")
        );
        let mut request = url.into_client_request().expect("a URL");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("ferry.v1"),
        );
        tokio_tungstenite::connect_async(request)
            .await
            .expect("the upgrade succeeds")
            .0
    }

    /// A welcomed session subscribed to [`CHANNEL`] (from `from`, if given), with the
    /// subscribed reply.
    async fn subscriber(&self, ticket: &str, from: Option<Value>) -> (Socket, Value) {
        let mut socket = self.open(ticket).await;
        let welcome = next_json(&mut socket).await.expect("a welcome");
        assert_eq!(welcome["type"], "welcome");
        let mut subscribe = json!({ "type": "subscribe", "id": "s", "channel": CHANNEL });
        if let Some(from) = from {
            subscribe["from"] = from;
        }
        send(&mut socket, subscribe).await;
        let subscribed = next_json(&mut socket).await.expect("a reply");
        assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
        (socket, subscribed)
    }

    /// A backend publish: the status and the body.
    async fn publish(&self, key: &str, n: u64) -> Option<(u16, Value)> {
        let body = json!({ "channel": CHANNEL, "idempotency_key": key, "payload": task(n) });
        let response = self
            .http
            .post(format!("{}/v1/publish", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.json().await.ok()?))
    }

    async fn history(&self) -> Value {
        self.http
            .get(format!("{}/v1/history?channel={CHANNEL}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("JSON")
    }
}

fn task(n: u64) -> Value {
    json!({ "task_id": format!("T-{n}"), "status": "running", "progress": 0.5, "assignee": null })
}

async fn send(socket: &mut Socket, value: Value) {
    socket
        .send(Message::text(value.to_string()))
        .await
        .expect("send");
}

/// The next text frame as JSON (pings answered on the way), within ten seconds; `None` when
/// the connection ends.
async fn next_json(socket: &mut Socket) -> Option<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a frame within 10 s")
        {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(&text).expect("JSON");
                if value["type"] == "ping" {
                    let pong = json!({ "type": "pong", "nonce": value["nonce"] });
                    let _ = socket.send(Message::text(pong.to_string())).await;
                    continue;
                }
                return Some(value);
            }
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// The close code the connection ends with, skipping other frames; within ten seconds.
async fn close_code(socket: &mut Socket) -> Option<u16> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("closed within 10 s")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_delivery_and_dedup_work_across_two_nodes() {
    let prefix = common::test_prefix();
    let url = common::redis_url();
    common::redis().await;
    let (a, b) = tokio::join!(Node::start(&url, &prefix), Node::start(&url, &prefix));

    // FERRY-TICKET-4 across nodes: a ticket from A opens a session at B, and only once.
    let ticket = a.ticket().await;
    let (mut at_b, subscribed) = b.subscriber(&ticket, None).await;
    assert_eq!(subscribed["position"]["seq"], 0);
    let mut again = a.open(&ticket).await;
    assert_eq!(
        close_code(&mut again).await,
        Some(4401),
        "a used ticket is refused on the other node too"
    );

    // A publish to A reaches the subscriber on B, in order.
    let mut acks = Vec::new();
    for n in 1..=20 {
        let (status, ack) = a.publish(&format!("k-{n}"), n).await.expect("answers");
        assert_eq!(status, 200, "{ack}");
        acks.push(ack);
    }
    for ack in &acks {
        let event = next_json(&mut at_b).await.expect("an event");
        assert_eq!(event["type"], "event");
        assert_eq!(event["position"], ack["position"]);
        assert_eq!(event["message_id"], ack["message_id"]);
    }

    // A retried backend publish on B with a key A accepted is stored once.
    let (status, retry) = b.publish("k-5", 5).await.expect("answers");
    assert_eq!(status, 200);
    assert_eq!(retry["duplicate"], true, "FERRY-DEDUP-1 across nodes");
    assert_eq!(retry["position"], acks[4]["position"]);
    assert_eq!(retry["message_id"], acks[4]["message_id"]);
    let history = b.history().await;
    assert_eq!(history["events"].as_array().map(Vec::len), Some(20));
    // And not delivered again: the next event B's subscriber sees is a new one.
    let (_, last) = b.publish("k-21", 21).await.expect("answers");
    let event = next_json(&mut at_b).await.expect("an event");
    assert_eq!(event["position"], last["position"]);
    common::forget(&prefix).await;
}

/// How node A leaves in the drill.
#[derive(Debug, Clone, Copy)]
enum Leaving {
    /// SIGKILL: no goodbye, the connection just ends.
    Killed,
    /// SIGTERM: a graceful drain, a goodbye and 1012.
    Drained,
}

/// One run of the node-loss drill: a client streams from A while a backend publishes through
/// B; A leaves (killed or drained) after the client saw a seeded number of events; the client
/// resumes on B from its last event. Every acknowledged event reaches it exactly once, in
/// order.
async fn node_loss_loses_no_acknowledged_event(seed: u64, leaving: Leaving) {
    let mut rng = StdRng::seed_from_u64(seed);
    let total: u64 = rng.random_range(150..=300);
    let kill_after: u64 = rng.random_range(10..=100);
    let prefix = common::test_prefix();
    let url = common::redis_url();
    let (mut a, b) = tokio::join!(Node::start(&url, &prefix), Node::start(&url, &prefix));
    let ticket = a.ticket().await;
    let (mut at_a, _) = a.subscriber(&ticket, None).await;

    let publisher = {
        let node = b.api.clone();
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for n in 1..=total {
                // A publish that gets no answer is retried with the same key until it does.
                loop {
                    match node.publish(&format!("k-{n}"), n).await {
                        Some((200, ack)) => {
                            acknowledged.push(ack["position"]["seq"].as_u64().expect("a seq"));
                            break;
                        }
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            }
            acknowledged
        })
    };

    let mut seen: Vec<u64> = Vec::new();
    let mut position = None;
    while (seen.len() as u64) < kill_after {
        let event = next_json(&mut at_a).await.expect("an event from A");
        assert_eq!(event["type"], "event");
        seen.push(event["position"]["seq"].as_u64().expect("a seq"));
        position = Some(event["position"].clone());
    }
    let mut goodbye = false;
    match leaving {
        Leaving::Killed => a.kill().await,
        Leaving::Drained => {
            let pid = a.child.id().expect("running").to_string();
            let status = std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .expect("kill runs");
            assert!(status.success());
        }
    }
    // Whatever A had sent before it left is read; then its connection is gone.
    while let Some(frame) = next_json(&mut at_a).await {
        if frame["type"] == "goodbye" {
            goodbye = true;
            continue;
        }
        assert_eq!(frame["type"], "event", "seed {seed}: {frame}");
        seen.push(frame["position"]["seq"].as_u64().expect("a seq"));
        position = Some(frame["position"].clone());
    }
    if let Leaving::Drained = leaving {
        assert!(goodbye, "seed {seed}: a draining node says goodbye");
        let exit = tokio::time::timeout(Duration::from_secs(10), a.child.wait())
            .await
            .expect("A exits after its drain")
            .expect("an exit status");
        assert!(exit.success(), "{exit:?}");
    }

    let ticket = b.ticket().await;
    let (mut at_b, subscribed) = b.subscriber(&ticket, position).await;
    assert_eq!(
        subscribed["recovery"]["complete"], true,
        "seed {seed}: {subscribed}"
    );
    let acknowledged = publisher.await.expect("the publisher ran");
    assert_eq!(
        acknowledged,
        (1..=total).collect::<Vec<_>>(),
        "seed {seed}: one event per key"
    );
    while seen.last().copied().unwrap_or(0) < total {
        let event = next_json(&mut at_b).await.expect("an event from B");
        assert_eq!(event["type"], "event", "seed {seed}: {event}");
        seen.push(event["position"]["seq"].as_u64().expect("a seq"));
    }
    assert_eq!(
        seen,
        (1..=total).collect::<Vec<_>>(),
        "seed {seed}: every acknowledged event exactly once, in order ({leaving:?} after {kill_after})"
    );
    common::forget(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_stream_loses_no_acknowledged_event_when_its_client_resumes_elsewhere() {
    for seed in [1, 2, 3] {
        node_loss_loses_no_acknowledged_event(seed, Leaving::Killed).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_drained_mid_stream_lets_its_client_resume_elsewhere_with_nothing_lost() {
    node_loss_loses_no_acknowledged_event(4, Leaving::Drained).await;
}

/// Redis restarted empty under traffic: a client's publish gets the retryable `unavailable`
/// while Redis is down and its session stays open; once Redis is back the session is closed
/// with 4410 (its feed lost its history) and its resume is answered `epoch_changed`. The node
/// never exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_under_traffic_gives_unavailable_then_epoch_changed() {
    let mut redis = common::PrivateRedis::start().await;
    let mut node = Node::start(&redis.url(), "ferry:").await;
    let ticket = node.ticket().await;
    let (mut socket, _) = node.subscriber(&ticket, None).await;
    let (status, before) = node.publish("k-1", 1).await.expect("answers");
    assert_eq!(status, 200);
    let event = next_json(&mut socket).await.expect("an event");
    assert_eq!(event["position"], before["position"]);

    redis.kill();
    send(
        &mut socket,
        json!({ "type": "publish", "id": "p1", "channel": CHANNEL, "idempotency_key": "k-2", "payload": task(2) }),
    )
    .await;
    let refused = next_json(&mut socket).await.expect("an answer");
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["error"]["code"], "unavailable", "{refused}");
    assert_eq!(refused["error"]["retryable"], true, "{refused}");
    let (status, body) = node.publish("k-2", 2).await.expect("answers");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");

    redis.restart().await;
    // The session stayed open; the node sees its channel's history gone and closes it so that
    // its client resumes.
    assert_eq!(close_code(&mut socket).await, Some(4410));
    let mut resumed = None;
    for _ in 0..100 {
        let ticket = node.ticket().await;
        let mut socket = node.open(&ticket).await;
        if next_json(&mut socket)
            .await
            .is_some_and(|w| w["type"] == "welcome")
        {
            send(
                &mut socket,
                json!({ "type": "subscribe", "id": "r", "channel": CHANNEL, "from": before["position"] }),
            )
            .await;
            if let Some(reply) = next_json(&mut socket).await
                && reply["type"] == "subscribed"
            {
                resumed = Some(reply);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resumed = resumed.expect("a resume once Redis is back");
    assert_eq!(resumed["recovery"]["complete"], false, "{resumed}");
    assert_eq!(resumed["recovery"]["reason"], "epoch_changed", "{resumed}");
    assert!(
        node.child.try_wait().expect("a status").is_none(),
        "the node is still running"
    );
}

/// FERRY-RATE-3 across nodes: the per-user connection limit (16) counts the user's sessions on
/// every node; a session that ends gives its slot back to all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_user_connection_limit_counts_sessions_on_every_node() {
    let prefix = common::test_prefix();
    let url = common::redis_url();
    let (a, b) = tokio::join!(Node::start(&url, &prefix), Node::start(&url, &prefix));
    let mut sessions = Vec::new();
    for n in 0..16 {
        let node = if n % 2 == 0 { &a } else { &b };
        let mut socket = node.open(&node.ticket().await).await;
        let welcome = next_json(&mut socket).await.expect("a welcome");
        assert_eq!(welcome["type"], "welcome", "session {n}: {welcome}");
        sessions.push(socket);
    }
    for node in [&a, &b] {
        let mut refused = node.open(&node.ticket().await).await;
        assert_eq!(
            close_code(&mut refused).await,
            Some(4409),
            "the 17th session of the user, on either node"
        );
    }
    // A session on A ends; its slot is free for a session on B.
    let mut ended = sessions.remove(0);
    ended.close(None).await.expect("close");
    while ended.next().await.is_some() {}
    let mut admitted = None;
    for _ in 0..100 {
        let mut socket = b.open(&b.ticket().await).await;
        match next_json(&mut socket).await {
            Some(welcome) if welcome["type"] == "welcome" => {
                admitted = Some(socket);
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert!(
        admitted.is_some(),
        "the freed slot is taken on the other node"
    );
    common::forget(&prefix).await;
}

/// Three callers for the presence test: two users and a daemon.
const PRESENCE_TOKENS: &str = r#"
[[tokens]]
token = "t-ada-0123456789"
user = "ada"
permissions = [{ pattern = "project:alpha:*", read = true, write = true }]

[[tokens]]
token = "t-bob-0123456789"
user = "bob"
permissions = [{ pattern = "project:alpha:*", read = true, write = true }]

[[tokens]]
token = "t-carol-012345678"
user = "carol"
permissions = [{ pattern = "project:alpha:*", read = true, write = true }]

[[tokens]]
token = "t-daemon-01234567"
user = "daemon-ws-1"
permissions = [{ pattern = "daemon:ws-1:*", read = true, write = true }]
"#;

/// A tokens file of [`PRESENCE_TOKENS`] in a directory of its own, which lives as long as the
/// returned handle, and its path.
fn presence_tokens() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, PRESENCE_TOKENS).expect("write the tokens");
    let path = tokens.to_str().expect("a UTF-8 path").to_owned();
    (dir, path)
}

const ROOM: &str = "project:alpha:approvals";

/// How often the presence test reads the members: well within the session's rate limit.
const POLL: Duration = Duration::from_millis(250);

/// A welcomed session of `api`'s caller subscribed to [`ROOM`].
async fn present(api: &Api) -> Socket {
    let mut socket = api.open(&api.ticket().await).await;
    assert_eq!(
        next_json(&mut socket).await.expect("a welcome")["type"],
        "welcome"
    );
    let subscribe = json!({ "type": "subscribe", "id": "s", "channel": ROOM });
    ask(&mut socket, subscribe, "subscribed").await;
    socket
}

/// Sends `request` and reads up to the frame that answers its id, which must be of type
/// `answer`.
async fn ask(socket: &mut Socket, request: Value, answer: &str) -> Value {
    let id = request["id"].clone();
    send(socket, request).await;
    loop {
        let frame = next_json(socket).await.expect("a reply");
        if frame["id"] == id {
            assert_eq!(frame["type"], answer, "{frame}");
            return frame;
        }
    }
}

/// The members of [`ROOM`] as `socket`'s node reads them, as (user, sessions); presence events
/// met on the way are returned too, as (change, user).
async fn members(socket: &mut Socket) -> (Vec<(String, u64)>, Vec<(String, String)>) {
    send(
        socket,
        json!({ "type": "members", "id": "m", "channel": ROOM }),
    )
    .await;
    let mut events = Vec::new();
    loop {
        let frame = next_json(socket).await.expect("a reply");
        if frame["type"] == "presence" {
            events.push((
                frame["change"].as_str().unwrap_or("").to_owned(),
                frame["user"].as_str().unwrap_or("").to_owned(),
            ));
            continue;
        }
        assert_eq!(frame["type"], "member_page", "{frame}");
        let listed = frame["members"]
            .as_array()
            .expect("members")
            .iter()
            .map(|m| {
                (
                    m["user"].as_str().unwrap_or("").to_owned(),
                    m["sessions"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        return (listed, events);
    }
}

/// A welcomed session of `api`'s caller holding `daemon:ws-1:output`, with its fence.
async fn holder(api: &Api) -> (Socket, u64) {
    let mut socket = api.open(&api.ticket().await).await;
    assert_eq!(
        next_json(&mut socket).await.expect("a welcome")["type"],
        "welcome"
    );
    let subscribe =
        json!({ "type": "subscribe", "id": "h", "channel": "daemon:ws-1:output", "hold": {} });
    send(&mut socket, subscribe).await;
    let reply = next_json(&mut socket).await.expect("a reply");
    let fence = reply["hold"]["fence"]
        .as_u64()
        .unwrap_or_else(|| panic!("a hold: {reply}"));
    (socket, fence)
}

/// FERRY-PRESENCE-1, -2, -4 across nodes: users with tabs on two nodes are one member each,
/// seen the same from either node; a node killed with SIGKILL takes its sessions' presence
/// with it once its refreshes stop (carol leaves; ada, still on the other node, does not).
/// FERRY-HOLD-1, -2 across nodes: a daemon's hold on one node taken over from the other
/// closes the first with 4412.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_holds_across_nodes_and_a_killed_nodes_sessions_leave() {
    let prefix = common::test_prefix();
    let url = common::redis_url();
    common::redis().await;
    let (_dir, tokens) = presence_tokens();
    let tokens = tokens.as_str();
    let args = [
        "--auth",
        "tokens",
        "--tokens-file",
        tokens,
        "--presence-leave-after-ms",
        "1500",
    ];
    let (mut a, b) = tokio::join!(
        Node::start_with(&url, &prefix, &args),
        Node::start_with(&url, &prefix, &args)
    );
    let (ada_a, ada_b) = (
        a.as_caller("t-ada-0123456789"),
        b.as_caller("t-ada-0123456789"),
    );
    let bob_b = b.as_caller("t-bob-0123456789");
    let carol_a = a.as_caller("t-carol-012345678");

    let mut bob = present(&bob_b).await;
    let _tab1 = present(&ada_a).await;
    let mut tab2 = present(&ada_b).await;
    let _carol = present(&carol_a).await;
    // Everyone has joined once everyone is listed, on either node.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut joins = Vec::new();
    loop {
        let (listed, events) = members(&mut bob).await;
        joins.extend(
            events
                .into_iter()
                .filter(|(change, _)| change == "join")
                .map(|(_, user)| user),
        );
        if listed
            == [
                ("ada".to_owned(), 2),
                ("bob".to_owned(), 1),
                ("carol".to_owned(), 1),
            ]
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "members: {listed:?}"
        );
        tokio::time::sleep(POLL).await;
    }
    let (seen_from_a, _) = members(&mut present(&carol_a).await).await;
    assert_eq!(
        seen_from_a,
        [
            ("ada".to_owned(), 2),
            ("bob".to_owned(), 1),
            ("carol".to_owned(), 2)
        ]
    );

    let (mut first, old) = holder(&a.as_caller("t-daemon-01234567")).await;
    let (_second, new) = holder(&b.as_caller("t-daemon-01234567")).await;
    assert!(new > old, "fences grow across nodes: {old} then {new}");
    assert_eq!(
        close_code(&mut first).await,
        Some(4412),
        "taken over from the other node"
    );

    a.kill().await;
    // carol was only on A: she leaves; ada keeps her tab on B, so she stays, with one session.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut leaves = Vec::new();
    loop {
        let (listed, events) = members(&mut bob).await;
        leaves.extend(
            events
                .into_iter()
                .filter(|(change, _)| change == "leave")
                .map(|(_, user)| user),
        );
        if listed == [("ada".to_owned(), 1), ("bob".to_owned(), 1)] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after the kill: {listed:?}"
        );
        tokio::time::sleep(POLL).await;
    }
    assert!(
        joins.iter().filter(|u| *u == "ada").count() <= 1,
        "ada joined once: {joins:?}"
    );
    // The leave may come after the page that no longer lists carol: it travels over pub/sub.
    while leaves.is_empty() {
        let frame = next_json(&mut bob).await.expect("carol's leave");
        assert_eq!(frame["type"], "presence", "{frame}");
        assert_eq!(frame["change"], "leave", "{frame}");
        leaves.push(frame["user"].as_str().unwrap_or("").to_owned());
    }
    assert_eq!(leaves, ["carol"], "only carol left");

    // ada's last tab closes: now she leaves, at once.
    tab2.close(None).await.expect("close");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (listed, _) = members(&mut bob).await;
        if listed == [("bob".to_owned(), 1)] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after ada's last tab: {listed:?}"
        );
        tokio::time::sleep(POLL).await;
    }
    common::forget(&prefix).await;
}

/// A TCP proxy to the test Redis that holds every chunk a client sends for [`SLOW_REDIS`]: a
/// node behind it records its presence changes that much later than a node on Redis itself.
async fn slow_redis() -> String {
    let upstream = common::redis_url()
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .expect("a host and port")
        .to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let address = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(redis) = TcpStream::connect(&upstream).await else {
                continue;
            };
            let (mut from_client, mut to_client) = client.into_split();
            let (mut from_redis, mut to_redis) = redis.into_split();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut chunk = vec![0; 64 * 1024];
                while let Ok(n @ 1..) = from_client.read(&mut chunk).await {
                    tokio::time::sleep(SLOW_REDIS).await;
                    if to_redis.write_all(&chunk[..n]).await.is_err() {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from_redis, &mut to_client).await;
            });
        }
    });
    format!("redis://{address}")
}

/// How long [`slow_redis`] holds what a client sends.
const SLOW_REDIS: Duration = Duration::from_millis(100);

/// FERRY-PRESENCE-1 across nodes: a session is present until its unsubscribe is answered, so
/// the members another node reads right after that answer no longer list it, even when the
/// node that answered reaches Redis [`SLOW_REDIS`] late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answered_unsubscribe_is_read_as_a_leave_on_the_other_node() {
    let prefix = common::test_prefix();
    let url = common::redis_url();
    common::redis().await;
    let (_dir, tokens) = presence_tokens();
    let tokens = tokens.as_str();
    let args = ["--auth", "tokens", "--tokens-file", tokens];
    let slow = slow_redis().await;
    let (a, b) = tokio::join!(
        Node::start_with(&slow, &prefix, &args),
        Node::start_with(&url, &prefix, &args)
    );
    let mut bob = present(&b.as_caller("t-bob-0123456789")).await;
    let carol_a = a.as_caller("t-carol-012345678");
    for round in 0..3 {
        let mut carol = present(&carol_a).await;
        // carol's join is recorded before her subscribed reply, so bob's node reads it now.
        let (listed, _) = members(&mut bob).await;
        assert_eq!(
            listed,
            [("bob".to_owned(), 1), ("carol".to_owned(), 1)],
            "round {round}: after carol's subscribed reply"
        );
        let unsubscribe = json!({ "type": "unsubscribe", "id": "u", "channel": ROOM });
        ask(&mut carol, unsubscribe, "unsubscribed").await;
        let (listed, _) = members(&mut bob).await;
        assert_eq!(
            listed,
            [("bob".to_owned(), 1)],
            "round {round}: right after carol's unsubscribe was answered at the slow node"
        );
    }
    common::forget(&prefix).await;
}
