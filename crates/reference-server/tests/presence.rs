//! Presence and exclusive channels end to end: ferry-server with the example application
//! (`project:*:approvals` keeps presence, `daemon:*:output` is exclusive with take_over) and
//! raw WebSocket clients over loopback (FERRY-PRESENCE-1..5, FERRY-HOLD-1..4).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{next_json, send};
use ferry_server::Server;
use ferry_server::auth::Auth;
use ferry_server::broker::MemoryBroker;
use ferry_server::config::{AuthMode, Flags};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const ROOM: &str = "project:alpha:approvals";
const OUTPUT: &str = "daemon:ws-1:output";

const TOKENS: &str = r#"
[[tokens]]
token = "t-ada-0123456789"
user = "ada"
permissions = [{ pattern = "project:alpha:*", read = true, write = true }]

[[tokens]]
token = "t-bob-0123456789"
user = "bob"
permissions = [{ pattern = "project:alpha:*", read = true, write = true }]

[[tokens]]
token = "t-dmn-0123456789"
user = "daemon-ws-1"
permissions = [{ pattern = "daemon:ws-1:*", read = true, write = true }]
"#;

const ADA: &str = "t-ada-0123456789";
const BOB: &str = "t-bob-0123456789";
const DAEMON: &str = "t-dmn-0123456789";

struct Running {
    base: String,
    _server: Arc<Server<MemoryBroker>>,
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Running {
    async fn start(leave_after_ms: u64) -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let tokens = dir.path().join("tokens.toml");
        std::fs::write(&tokens, TOKENS).expect("write the tokens file");
        let auth = Auth::from_file(&tokens).expect("a valid tokens file");
        let flags = Flags {
            auth: Some(AuthMode::Tokens),
            tokens_file: Some(tokens),
            presence_leave_after_ms: Some(leave_after_ms),
            ..Flags::default()
        };
        let common::InProcess {
            server,
            address,
            stop,
            ..
        } = common::in_process(flags, auth, None).await;
        Self {
            base: format!("http://{address}"),
            _server: server,
            _stop: stop,
            _dir: dir,
            http: reqwest::Client::new(),
        }
    }

    /// A welcomed session of the caller with `token`; the welcome is returned beside it.
    async fn session(&self, token: &str) -> (Socket, Value) {
        let response = self
            .http
            .post(format!("{}/v1/tickets", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("the ticket endpoint answers");
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.expect("JSON");
        let ticket = body["ticket"].as_str().expect("a ticket");
        let url = format!(
            "{}/v1/ws?ticket={ticket}",
            self.base.replace("http://", "ws://")
        );
        let mut request = url.into_client_request().expect("a URL");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("ferry.v1"),
        );
        let mut socket = tokio_tungstenite::connect_async(request)
            .await
            .expect("the upgrade succeeds")
            .0;
        let welcome = next_json(&mut socket).await;
        assert_eq!(welcome["type"], "welcome");
        (socket, welcome)
    }
}

/// Subscribes to `channel` (with `extra` members in the frame) and returns the reply.
async fn subscribe(socket: &mut Socket, id: &str, channel: &str, extra: Value) -> Value {
    let mut frame = json!({ "type": "subscribe", "id": id, "channel": channel });
    if let (Some(frame), Some(extra)) = (frame.as_object_mut(), extra.as_object()) {
        frame.extend(extra.clone());
    }
    send(socket, frame).await;
    reply(socket, id).await
}

/// The reply to request `id`; presence events that come first are kept in `seen`.
async fn reply(socket: &mut Socket, id: &str) -> Value {
    loop {
        let frame = next_json(socket).await;
        if frame["id"] == id {
            return frame;
        }
        assert_eq!(
            frame["type"], "presence",
            "only presence may come first: {frame}"
        );
    }
}

/// Every member page of `channel`, as (user, sessions), asked `limit` at a time.
async fn members(socket: &mut Socket, channel: &str, limit: u64) -> Vec<(String, u64)> {
    let mut all = Vec::new();
    let mut after = Value::Null;
    for page in 0.. {
        let id = format!("m{page}");
        let mut frame = json!({ "type": "members", "id": id, "channel": channel, "limit": limit });
        if !after.is_null() {
            frame["after"] = after.clone();
        }
        send(socket, frame).await;
        let answer = reply(socket, &id).await;
        assert_eq!(answer["type"], "member_page", "{answer}");
        for member in answer["members"].as_array().expect("members") {
            all.push((
                member["user"].as_str().expect("a user").to_owned(),
                member["sessions"].as_u64().expect("sessions"),
            ));
        }
        after = answer["next"].clone();
        if after.is_null() {
            break;
        }
    }
    all
}

/// The next presence event, as (change, user).
async fn presence(socket: &mut Socket) -> (String, String) {
    let frame = next_json(socket).await;
    assert_eq!(frame["type"], "presence", "{frame}");
    (
        frame["change"].as_str().expect("a change").to_owned(),
        frame["user"].as_str().expect("a user").to_owned(),
    )
}

fn pair(user: &str, sessions: u64) -> (String, u64) {
    (user.to_owned(), sessions)
}

#[tokio::test]
async fn a_user_with_two_tabs_joins_once_and_leaves_with_its_last_tab() {
    let running = Running::start(30_000).await;
    let (mut bob, welcome) = running.session(BOB).await;
    assert_eq!(welcome["presence"]["leave_after_ms"], 30_000);
    let subscribed = subscribe(&mut bob, "s1", ROOM, json!({ "info": { "name": "Bob" } })).await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    assert_eq!(members(&mut bob, ROOM, 1000).await, vec![pair("bob", 1)]);

    let (mut tab1, _) = running.session(ADA).await;
    let info = json!({ "info": { "name": "Ada", "tab": 1 } });
    assert_eq!(
        subscribe(&mut tab1, "s1", ROOM, info).await["type"],
        "subscribed"
    );
    let frame = next_json(&mut bob).await;
    assert_eq!(
        (
            &frame["type"],
            &frame["change"],
            &frame["user"],
            &frame["info"]["tab"]
        ),
        (&json!("presence"), &json!("join"), &json!("ada"), &json!(1)),
        "{frame}"
    );
    assert!(frame["position"]["epoch"].is_string(), "{frame}");

    let (mut tab2, _) = running.session(ADA).await;
    let info = json!({ "info": { "name": "Ada", "tab": 2 } });
    assert_eq!(
        subscribe(&mut tab2, "s1", ROOM, info).await["type"],
        "subscribed"
    );
    // The members read comes after the second tab's subscribed reply: no join came for it.
    assert_eq!(
        members(&mut bob, ROOM, 1000).await,
        vec![pair("ada", 2), pair("bob", 1)]
    );

    send(
        &mut tab1,
        json!({ "type": "unsubscribe", "id": "u1", "channel": ROOM }),
    )
    .await;
    assert_eq!(reply(&mut tab1, "u1").await["type"], "unsubscribed");
    assert_eq!(
        members(&mut bob, ROOM, 1000).await,
        vec![pair("ada", 1), pair("bob", 1)]
    );
    // The last tab's close frame ends its presence at once: a leave, well before leave_after.
    tab2.close(None).await.expect("close");
    assert_eq!(
        presence(&mut bob).await,
        ("leave".to_owned(), "ada".to_owned())
    );
    assert_eq!(members(&mut bob, ROOM, 1000).await, vec![pair("bob", 1)]);
}

#[tokio::test]
async fn a_dropped_connection_stays_present_for_leave_after_so_a_reconnect_is_silent() {
    // Long enough for a reconnect on a loaded machine; the final leave is waited for.
    let leave_after = Duration::from_secs(8);
    let running = Running::start(leave_after.as_millis() as u64).await;
    let (mut bob, _) = running.session(BOB).await;
    subscribe(&mut bob, "s1", ROOM, json!({})).await;
    assert_eq!(
        presence(&mut bob).await,
        ("join".to_owned(), "bob".to_owned()),
        "a subscriber may see its own join after its reply"
    );
    let (mut ada, _) = running.session(ADA).await;
    subscribe(&mut ada, "s1", ROOM, json!({})).await;
    assert_eq!(
        presence(&mut bob).await,
        ("join".to_owned(), "ada".to_owned())
    );

    // Dropped without a close frame: the connection ended "any other way".
    let dropped = tokio::time::Instant::now();
    drop(ada);
    let (mut again, _) = running.session(ADA).await;
    subscribe(&mut again, "s1", ROOM, json!({})).await;
    let reconnected = dropped.elapsed();
    assert!(
        reconnected < leave_after,
        "the reconnect took {reconnected:?}, longer than leave_after: the machine is too busy for this test"
    );
    // No leave and no join for ada, before or after the dropped session's lapse.
    assert_eq!(
        members(&mut bob, ROOM, 1000).await,
        vec![pair("ada", 2), pair("bob", 1)],
        "the dropped session still counts until it lapses"
    );
    tokio::time::sleep(leave_after.saturating_sub(dropped.elapsed()) + Duration::from_secs(2))
        .await;
    assert_eq!(
        members(&mut bob, ROOM, 1000).await,
        vec![pair("ada", 1), pair("bob", 1)],
        "the dropped session lapsed without a leave"
    );

    // This time nobody comes back: the leave comes once leave_after has passed.
    let dropped = tokio::time::Instant::now();
    drop(again);
    assert_eq!(
        presence(&mut bob).await.0,
        "leave",
        "within next_json's 10 s"
    );
    assert!(
        dropped.elapsed() >= leave_after,
        "the leave came after {:?}, before leave_after",
        dropped.elapsed()
    );
}

#[tokio::test]
async fn members_come_in_pages_and_only_to_subscribers_of_a_presence_channel() {
    let running = Running::start(30_000).await;
    let (mut bob, _) = running.session(BOB).await;
    send(
        &mut bob,
        json!({ "type": "members", "id": "m1", "channel": ROOM }),
    )
    .await;
    let refused = reply(&mut bob, "m1").await;
    assert_eq!(refused["error"]["code"], "not_subscribed", "{refused}");
    let wrong = subscribe(&mut bob, "s0", "project:alpha:tasks", json!({ "info": {} })).await;
    assert_eq!(
        wrong["error"]["code"], "bad_request",
        "info outside presence: {wrong}"
    );
    let wrong = subscribe(&mut bob, "s1", ROOM, json!({ "hold": {} })).await;
    assert_eq!(
        wrong["error"]["code"], "bad_request",
        "hold outside exclusive: {wrong}"
    );
    subscribe(&mut bob, "s2", "project:alpha:tasks", json!({})).await;
    send(
        &mut bob,
        json!({ "type": "members", "id": "m2", "channel": "project:alpha:tasks" }),
    )
    .await;
    assert_eq!(reply(&mut bob, "m2").await["error"]["code"], "bad_request");
    subscribe(&mut bob, "s3", ROOM, json!({})).await;
    let mut tabs = Vec::new();
    for _ in 0..3 {
        let (mut tab, _) = running.session(ADA).await;
        subscribe(&mut tab, "s1", ROOM, json!({})).await;
        tabs.push(tab);
    }
    let listed = members(&mut bob, ROOM, 1).await;
    assert_eq!(listed, vec![pair("ada", 3), pair("bob", 1)]);
}

#[tokio::test]
async fn a_second_daemon_takes_the_channel_over_and_the_first_is_closed_with_4412() {
    let running = Running::start(30_000).await;
    let (mut first, _) = running.session(DAEMON).await;
    let refused = {
        send(
            &mut first,
            json!({ "type": "publish", "id": "p0", "channel": OUTPUT, "idempotency_key": "k0",
            "payload": { "type": "chunk", "run_id": "r1", "stream": "stdout", "data": "x" } }),
        )
        .await;
        reply(&mut first, "p0").await
    };
    assert_eq!(
        refused["error"]["code"], "held",
        "a session that does not hold it: {refused}"
    );
    let granted = subscribe(&mut first, "s1", OUTPUT, json!({ "hold": {} })).await;
    let fence = granted["hold"]["fence"].as_u64().expect("a fence");
    send(
        &mut first,
        json!({ "type": "publish", "id": "p1", "channel": OUTPUT, "idempotency_key": "k1",
        "payload": { "type": "chunk", "run_id": "r1", "stream": "stdout", "data": "x" } }),
    )
    .await;
    let stored = reply(&mut first, "p1").await;
    assert_eq!(stored["type"], "published", "{stored}");

    let (mut second, _) = running.session(DAEMON).await;
    let taken = subscribe(&mut second, "s1", OUTPUT, json!({ "hold": {} })).await;
    assert!(
        taken["hold"]["fence"].as_u64().expect("a fence") > fence,
        "{taken}"
    );
    // The first daemon is closed with 4412 (its own events may come before the close).
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), first.next()).await {
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close, got {other:?}"),
        }
    };
    assert_eq!(closed.map(|f| u16::from(f.code)), Some(4412));
    send(
        &mut second,
        json!({ "type": "publish", "id": "p2", "channel": OUTPUT, "idempotency_key": "k2",
        "payload": { "type": "chunk", "run_id": "r1", "stream": "stdout", "data": "y" } }),
    )
    .await;
    assert_eq!(reply(&mut second, "p2").await["type"], "published");
    let event = next_json(&mut second).await;
    assert_eq!(
        event["payload"]["data"], "y",
        "the holder's own event: {event}"
    );
}
