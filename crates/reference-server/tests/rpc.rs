//! RPC calls and hooks end to end: ferry-server with an application set that declares a method
//! and a hooked namespace, a real HTTP backend on loopback, and the Rust client over a real
//! WebSocket (FERRY-RPC-1 to FERRY-RPC-5, FERRY-HOOK-1, FERRY-HOOK-3, FERRY-HOOK-4).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use ferry_client::{CallError, Client, PublishError};
use ferry_protocol::{
    BackendCall, BackendRefusalCode, ErrorCode, IdempotencyKey, MethodName, Payload,
};
use ferry_server::auth::Auth;
use ferry_server::backend::{Backend, Handlers, refusal};
use ferry_server::broker::MemoryBroker;
use ferry_server::config::{Config, Flags};
use ferry_server::namespaces::Namespaces;
use serde_json::{Value, json};

const SECRET: &str = "backend-secret-for-tests";

/// An application set with one method (`jobs:run`) and a namespace whose publishes are hooked.
fn write_app(dir: &Path) {
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Jobs", "description": "A test application.",
        "$defs": {
            "RunJob": { "description": "Params.", "type": "object", "additionalProperties": false, "required": ["name"],
                "properties": { "name": { "type": "string", "minLength": 1, "maxLength": 64, "description": "The job." } } },
            "JobRun": { "description": "Result.", "type": "object", "additionalProperties": false, "required": ["run"],
                "properties": { "run": { "type": "integer", "minimum": 0, "maximum": 1000000, "description": "Its number." } } },
            "Note": { "description": "A note.", "type": "object", "additionalProperties": false, "required": ["text"],
                "properties": { "text": { "type": "string", "maxLength": 256, "description": "The text." },
                                "by": { "type": "string", "maxLength": 64, "description": "Who." } } }
        }
    });
    std::fs::write(dir.join("jobs.schema.json"), schema.to_string()).expect("write");
    let channels = json!({ "description": "Jobs.", "namespaces": [
        { "pattern": "notes:*", "payload": "Note", "description": "Hooked notes.", "hooks": ["publish"] }
    ]});
    std::fs::write(dir.join("channels.json"), channels.to_string()).expect("write");
    let methods = json!({ "description": "Jobs.", "methods": [
        { "name": "jobs:run", "params": "RunJob", "result": "JobRun", "description": "Runs a job." }
    ]});
    std::fs::write(dir.join("methods.json"), methods.to_string()).expect("write");
    std::fs::create_dir_all(dir.join("vectors")).expect("mkdir");
    for (name, valid, invalid) in [
        ("RunJob", json!({ "name": "a" }), json!({})),
        ("JobRun", json!({ "run": 1 }), json!({ "run": -1 })),
        ("Note", json!({ "text": "hi" }), json!({ "text": 1 })),
    ] {
        let vectors = json!({ "type": name,
            "valid": [{ "name": "ok", "description": "Valid.", "value": valid }],
            "invalid": [{ "name": "bad", "description": "Invalid.", "value": invalid }] });
        std::fs::write(
            dir.join(format!("vectors/{name}.json")),
            vectors.to_string(),
        )
        .expect("write");
    }
}

/// What the scripted backend saw.
#[derive(Default)]
struct Seen {
    runs: AtomicUsize,
    unauthenticated: AtomicUsize,
    /// Publishes of the text "held" the hook has been asked about; each waits for `release`.
    held: AtomicUsize,
    release: tokio::sync::Notify,
}

/// The backend: `jobs:run` answers `{run: n}` (after 800 ms for a job named "slow"),
/// refuses a job named "nope", and returns a result that breaks the schema for "broken";
/// the publish hook refuses notes saying "spam" and signs the others.
async fn backend(
    State(seen): State<Arc<Seen>>,
    headers: HeaderMap,
    Json(call): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {SECRET}"))
    {
        seen.unauthenticated.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::UNAUTHORIZED, Json(json!({})));
    }
    let answer = match call["type"].as_str() {
        Some("rpc") => {
            let run = seen.runs.fetch_add(1, Ordering::SeqCst) + 1;
            match call["params"]["name"].as_str() {
                Some("slow") => {
                    // Longer than the 500 ms RPC timeout, within the 1 s the backend is given.
                    tokio::time::sleep(Duration::from_millis(800)).await;
                    json!({ "type": "result", "result": { "run": run } })
                }
                Some("nope") => {
                    json!({ "type": "refuse", "code": "rejected", "message": "jobs named nope never run" })
                }
                Some("broken") => json!({ "type": "result", "result": { "run": "many" } }),
                _ => json!({ "type": "result", "result": { "run": run } }),
            }
        }
        Some("publish") if call["payload"]["text"] == "held" => {
            seen.held.fetch_add(1, Ordering::SeqCst);
            seen.release.notified().await;
            json!({ "type": "accept" })
        }
        Some("publish") if call["payload"]["text"] == "spam" => {
            json!({ "type": "refuse", "code": "rejected", "message": "no spam" })
        }
        Some("publish") => {
            json!({ "type": "accept", "payload": { "text": call["payload"]["text"], "by": call["user"] } })
        }
        _ => json!({ "type": "refuse", "code": "forbidden", "message": "unexpected" }),
    };
    (StatusCode::OK, Json(answer))
}

/// Serves the scripted backend on a loopback port; returns its URL.
async fn spawn_backend(seen: Arc<Seen>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let url = format!("http://{}/ferry", listener.local_addr().expect("addr"));
    let router = axum::Router::new()
        .route("/ferry", axum::routing::post(backend))
        .with_state(seen);
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

struct Running {
    base: String,
    token: String,
    seen: Arc<Seen>,
    server: Arc<ferry_server::Server<MemoryBroker>>,
    _app: tempfile::TempDir,
}

/// ferry-server with the jobs application, its backend at `backend_url` (the scripted one
/// when `None`), and an RPC timeout of 500 ms.
async fn start(backend_url: Option<String>) -> Running {
    start_with(backend_url, None, &[], false).await
}

/// [`start`], with an embedded backend instead of the HTTP one when `embedded` is given,
/// `hooks` on the notes namespace, and with `routed` the scripted backend as the route of
/// `jobs:*` only (`--backend-route`), `--backend-url` naming a port nothing listens on.
async fn start_with(
    backend_url: Option<String>,
    embedded: Option<Backend>,
    hooks: &[&str],
    routed: bool,
) -> Running {
    let app = tempfile::tempdir().expect("a temp dir");
    write_app(app.path());
    if !hooks.is_empty() {
        let channels = json!({ "description": "Jobs.", "namespaces": [
            { "pattern": "notes:*", "payload": "Note", "description": "Hooked notes.", "hooks": hooks }
        ]});
        std::fs::write(app.path().join("channels.json"), channels.to_string()).expect("write");
    }
    let seen = Arc::new(Seen::default());
    let backend_url = match backend_url {
        Some(url) => url,
        None => spawn_backend(seen.clone()).await,
    };
    let (backend_url, backend_routes) = if routed {
        (
            closed_port_url(),
            Some(vec![format!("jobs:*={backend_url}")]),
        )
    } else {
        (backend_url, None)
    };
    let flags = Flags {
        backend_url: embedded.is_none().then_some(backend_url),
        backend_routes,
        backend_secret: Some(SECRET.into()),
        rpc_timeout_ms: Some(500),
        ..Flags::default()
    };
    let config = Config::resolve(flags).expect("a valid configuration");
    let namespaces = Namespaces::load(&[app.path().to_owned()]).expect("the app loads");
    let (auth, token) = Auth::development_with("dev-rpc-test-token".into());
    let broker = MemoryBroker::new(config.memory_broker());
    let server = match embedded {
        None => ferry_server::Server::new(config, auth, broker, namespaces),
        Some(backend) => {
            ferry_server::Server::with_backend(config, auth, broker, namespaces, Some(backend))
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(ferry_server::serve(
        server.clone(),
        listener,
        std::future::pending(),
    ));
    Running {
        base,
        token,
        seen,
        server,
        _app: app,
    }
}

fn method(name: &str) -> MethodName {
    name.parse().expect("a valid method name")
}

async fn client(running: &Running) -> Client {
    let client = Client::builder(running.base.clone(), running.token.clone()).connect();
    assert!(
        client.wait_active(Duration::from_secs(30)).await,
        "welcomed"
    );
    client
}

fn refused_code(error: &CallError) -> Option<ErrorCode> {
    match error {
        CallError::Refused(info) => Some(info.code),
        _ => None,
    }
}

#[tokio::test]
async fn a_call_runs_on_the_backend_and_its_checks_refusals_and_schema_hold() {
    let running = start(None).await;
    let client = client(&running).await;
    let answer = client
        .call(method("jobs:run"), json!({ "name": "build" }))
        .await
        .expect("answered");
    assert_eq!(answer.result.to_value().expect("json"), json!({ "run": 1 }));
    assert!(!answer.duplicate);

    // FERRY-RPC-1: an undeclared method and params that break the schema never reach the
    // backend.
    let unknown = client.call(method("jobs:stop"), json!({})).await;
    assert_eq!(
        unknown.as_ref().err().and_then(refused_code),
        Some(ErrorCode::UnknownMethod),
        "{unknown:?}"
    );
    let invalid = client.call(method("jobs:run"), json!({ "name": 7 })).await;
    assert_eq!(
        invalid.as_ref().err().and_then(refused_code),
        Some(ErrorCode::PayloadInvalid),
        "{invalid:?}"
    );
    assert_eq!(running.seen.runs.load(Ordering::SeqCst), 1);

    // The backend's refusal reaches the client as the error it chose.
    let nope = client
        .call(method("jobs:run"), json!({ "name": "nope" }))
        .await;
    assert_eq!(
        nope.as_ref().err().and_then(refused_code),
        Some(ErrorCode::Rejected),
        "{nope:?}"
    );
    // FERRY-RPC-4: a result that breaks the method's result schema is not forwarded.
    let broken = client
        .call(method("jobs:run"), json!({ "name": "broken" }))
        .await;
    assert_eq!(
        broken.as_ref().err().and_then(refused_code),
        Some(ErrorCode::Internal),
        "{broken:?}"
    );
    assert_eq!(running.seen.unauthenticated.load(Ordering::SeqCst), 0);
    client.close().await;
}

#[tokio::test]
async fn a_call_that_times_out_runs_once_and_a_retry_with_its_key_gets_the_first_answer() {
    let running = start(None).await;
    let client = client(&running).await;
    let key: IdempotencyKey = "k-slow-1".parse().expect("valid");
    let first = client
        .call_with_key(
            method("jobs:run"),
            json!({ "name": "slow" }),
            Some(key.clone()),
        )
        .await;
    assert_eq!(
        first.as_ref().err().and_then(refused_code),
        Some(ErrorCode::Timeout),
        "FERRY-RPC-2: 500 ms is up before the backend's 800: {first:?}"
    );
    // The retry waits for the first call, which completes on the backend.
    let retry = client
        .call_with_key(method("jobs:run"), json!({ "name": "slow" }), Some(key))
        .await;
    let retry = match retry {
        Ok(answer) => answer,
        // The first call may still be running when the retry's own 500 ms are up: ask again.
        Err(CallError::Refused(info)) if info.code == ErrorCode::Timeout => client
            .call_with_key(
                method("jobs:run"),
                json!({ "name": "slow" }),
                Some("k-slow-1".parse().expect("valid")),
            )
            .await
            .expect("the first call's answer"),
        Err(other) => panic!("{other:?}"),
    };
    assert!(retry.duplicate, "FERRY-RPC-3: the first call's answer");
    assert_eq!(retry.result.to_value().expect("json"), json!({ "run": 1 }));
    assert_eq!(running.seen.runs.load(Ordering::SeqCst), 1, "it ran once");
    client.close().await;
}

#[tokio::test]
async fn a_call_cut_off_by_a_reconnect_is_resent_and_runs_once() {
    let running = start(None).await;
    let client = client(&running).await;
    let calling = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .call(method("jobs:run"), json!({ "name": "slow" }))
                .await
        })
    };
    // Cut every session once the backend has the call; the client reconnects and resends it
    // with its key.
    while running.seen.runs.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    running.server.disconnect_all();
    let outcome = calling.await.expect("the task");
    // The resent call either waited for the first one's answer or timed out waiting.
    match &outcome {
        Ok(answer) => assert!(answer.duplicate, "{answer:?}"),
        Err(error) => assert_eq!(refused_code(error), Some(ErrorCode::Timeout), "{error:?}"),
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        running.seen.runs.load(Ordering::SeqCst),
        1,
        "FERRY-RPC-3: ran once"
    );
    client.close().await;
}

#[tokio::test]
async fn a_hooked_publish_is_stored_as_the_backend_replaced_it_or_refused() {
    let running = start(None).await;
    let client = client(&running).await;
    let notes: ferry_protocol::ChannelName = "notes:team".parse().expect("valid");
    let refused = client
        .publish(notes.clone(), json!({ "text": "spam" }))
        .await;
    match &refused {
        Err(PublishError::Refused(info)) => assert_eq!(info.code, ErrorCode::Rejected),
        other => panic!("FERRY-HOOK-1: {other:?}"),
    }
    client
        .publish(notes.clone(), json!({ "text": "hello" }))
        .await
        .expect("accepted");
    let history = reqwest::Client::new()
        .get(format!("{}/v1/history?channel=notes:team", running.base))
        .bearer_auth(&running.token)
        .send()
        .await
        .expect("history")
        .json::<Value>()
        .await
        .expect("json");
    let payloads: Vec<&Value> = history["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| &e["payload"])
        .collect();
    assert_eq!(
        payloads,
        vec![&json!({ "text": "hello", "by": "developer" })],
        "only the accepted publish is stored, as the backend replaced it"
    );
    client.close().await;
}

#[tokio::test]
async fn a_backend_that_cannot_be_reached_makes_calls_and_hooked_publishes_unavailable() {
    let running = start(Some(closed_port_url())).await;
    let client = client(&running).await;
    let call = client
        .call(method("jobs:run"), json!({ "name": "a" }))
        .await;
    assert_eq!(
        call.as_ref().err().and_then(refused_code),
        Some(ErrorCode::Unavailable),
        "FERRY-RPC-5: {call:?}"
    );
    client.close().await;
    a_hooked_publish_is_not_stored(&running).await;
}

#[tokio::test]
async fn an_embedded_backend_behind_a_tower_layer_answers_calls_and_decides_subscribes() {
    let layered = Arc::new(AtomicUsize::new(0));
    let handlers = Handlers::new()
        .on_rpc(method("jobs:run"), |call| async move {
            let name = call.params.to_value().expect("json")["name"].clone();
            if name == "nope" {
                return Err(refusal(BackendRefusalCode::Rejected, "not that one"));
            }
            Ok(Payload::from(json!({ "run": 7 })))
        })
        .on_subscribe(|call| async move {
            if call.channel.as_str() == "notes:secret" {
                Err(refusal(BackendRefusalCode::Forbidden, "not for you"))
            } else {
                Ok(())
            }
        });
    // A layer in tower's style sees every call before the handlers do.
    let counting = {
        let layered = layered.clone();
        tower::ServiceBuilder::new()
            .map_request(move |call: BackendCall| {
                layered.fetch_add(1, Ordering::SeqCst);
                call
            })
            .service(handlers)
    };
    let running = start_with(None, Some(Backend::new(counting)), &["subscribe"], false).await;
    let client = client(&running).await;
    let answer = client
        .call(method("jobs:run"), json!({ "name": "a" }))
        .await
        .expect("answered");
    assert_eq!(answer.result.to_value().expect("json"), json!({ "run": 7 }));
    let nope = client
        .call(method("jobs:run"), json!({ "name": "nope" }))
        .await;
    assert_eq!(
        nope.as_ref().err().and_then(refused_code),
        Some(ErrorCode::Rejected),
        "{nope:?}"
    );

    // FERRY-HOOK-2: the hook decides each subscribe.
    let (events, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let handler = ferry_client::Handler::new(move |event: &ferry_client::ChannelEvent| {
        let _ = events.send(event.clone());
    });
    client
        .subscribe("notes:secret".parse().expect("valid"), &handler)
        .expect("running");
    let refused = tokio::time::timeout(Duration::from_secs(30), seen.recv())
        .await
        .expect("an answer")
        .expect("open");
    match refused {
        ferry_client::ChannelEvent::Refused(info) => assert_eq!(info.code, ErrorCode::Forbidden),
        other => panic!("{other:?}"),
    }
    client
        .subscribe("notes:open".parse().expect("valid"), &handler)
        .expect("running");
    let accepted = tokio::time::timeout(Duration::from_secs(30), seen.recv())
        .await
        .expect("an answer")
        .expect("open");
    assert!(
        matches!(accepted, ferry_client::ChannelEvent::Subscribed(_)),
        "{accepted:?}"
    );
    assert_eq!(
        layered.load(Ordering::SeqCst),
        4,
        "two calls and two subscribes"
    );
    client.close().await;
}

/// A publish to the hooked notes namespace, whose hook cannot be asked, is not stored
/// (FERRY-HOOK-3): the client keeps it for its next session, so it fails by its request
/// timeout (1.5 s here) or the close.
async fn a_hooked_publish_is_not_stored(running: &Running) {
    let client = Client::builder(running.base.clone(), running.token.clone())
        .config(ferry_protocol::ClientConfig {
            request_timeout: Duration::from_millis(1_500),
            ..ferry_protocol::ClientConfig::default()
        })
        .connect();
    assert!(client.wait_active(Duration::from_secs(30)).await);
    let publish = client
        .publish("notes:team".parse().expect("valid"), json!({ "text": "x" }))
        .await;
    assert!(publish.is_err(), "{publish:?}");
    client.close().await;
}

/// A backend URL on a loopback port nothing listens on.
fn closed_port_url() -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let url = format!("http://{}/ferry", closed.local_addr().expect("addr"));
    drop(closed);
    url
}

#[tokio::test]
async fn a_backend_route_takes_the_calls_of_the_methods_its_pattern_matches() {
    let running = start_with(None, None, &["publish"], true).await;
    let client = client(&running).await;
    // jobs:run is routed to the scripted backend; the default backend is down, so the hooked
    // publish, whose channel no route matches, is not accepted.
    let answer = client
        .call(method("jobs:run"), json!({ "name": "a" }))
        .await
        .expect("routed");
    assert_eq!(answer.result.to_value().expect("json"), json!({ "run": 1 }));
    client.close().await;
    a_hooked_publish_is_not_stored(&running).await;
}

/// A node of a deployment on the test Redis under `prefix`, serving the jobs application of
/// `app` with its backend at `backend_url`; returns its base URL and token.
async fn redis_node(app: &Path, backend_url: &str, prefix: &str) -> (String, String) {
    use ferry_server::broker::{RedisBroker, RedisBrokerConfig};
    let flags = Flags {
        backend_url: Some(backend_url.to_owned()),
        backend_secret: Some(SECRET.into()),
        rpc_timeout_ms: Some(500),
        ..Flags::default()
    };
    let config = Config::resolve(flags).expect("a valid configuration");
    let broker = RedisBroker::new(RedisBrokerConfig {
        prefix: prefix.to_owned(),
        ..RedisBrokerConfig::new(
            common::redis_url(),
            ferry_protocol::replay::Retention::default(),
        )
    })
    .expect("a Redis URL");
    broker
        .ping()
        .await
        .expect("these tests need Redis (.ci/run starts one)");
    let namespaces = Namespaces::load(&[app.to_owned()]).expect("the app loads");
    let (auth, token) = Auth::development_with("dev-rpc-test-token".into());
    let server = ferry_server::Server::new(config, auth, broker, namespaces);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(ferry_server::serve(
        server,
        listener,
        std::future::pending(),
    ));
    (base, token)
}

#[tokio::test]
async fn a_call_retried_on_another_node_of_the_deployment_runs_once() {
    let prefix = common::test_prefix();
    let app = tempfile::tempdir().expect("a temp dir");
    write_app(app.path());
    let seen = Arc::new(Seen::default());
    let backend_url = spawn_backend(seen.clone()).await;
    let (first, token) = redis_node(app.path(), &backend_url, &prefix).await;
    let (second, _) = redis_node(app.path(), &backend_url, &prefix).await;
    let on_first = Client::builder(first, token.clone()).connect();
    let on_second = Client::builder(second, token).connect();
    assert!(on_first.wait_active(Duration::from_secs(30)).await);
    assert!(on_second.wait_active(Duration::from_secs(30)).await);
    let key: IdempotencyKey = "k-across-nodes".parse().expect("valid");
    let calling = {
        let client = on_first.clone();
        let key = key.clone();
        tokio::spawn(async move {
            client
                .call_with_key(method("jobs:run"), json!({ "name": "slow" }), Some(key))
                .await
        })
    };
    while seen.runs.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The same call reaches the other node while the first node runs it: it waits for the
    // first node's outcome, or times out waiting (its own 500 ms), and runs nothing.
    let meanwhile = on_second
        .call_with_key(
            method("jobs:run"),
            json!({ "name": "slow" }),
            Some(key.clone()),
        )
        .await;
    match &meanwhile {
        Ok(answer) => assert!(answer.duplicate, "{answer:?}"),
        Err(error) => assert_eq!(refused_code(error), Some(ErrorCode::Timeout), "{error:?}"),
    }
    let _ = calling.await.expect("the task");
    // Once the first node has recorded the outcome, the other node answers from it.
    let mut later = None;
    for _ in 0..50 {
        match on_second
            .call_with_key(
                method("jobs:run"),
                json!({ "name": "slow" }),
                Some(key.clone()),
            )
            .await
        {
            Ok(answer) => {
                later = Some(answer);
                break;
            }
            Err(error) => assert_eq!(refused_code(&error), Some(ErrorCode::Timeout), "{error:?}"),
        }
    }
    let later = later.expect("the first node's outcome");
    assert!(later.duplicate);
    assert_eq!(later.result.to_value().expect("json"), json!({ "run": 1 }));
    assert_eq!(
        seen.runs.load(Ordering::SeqCst),
        1,
        "FERRY-RPC-3 across nodes"
    );
    on_first.close().await;
    on_second.close().await;
    common::forget(&prefix).await;
}

#[tokio::test]
async fn a_slow_hook_holds_back_only_its_sessions_later_hooked_requests_and_keeps_their_order() {
    let running = start(None).await;
    let client = client(&running).await;
    let notes: ferry_protocol::ChannelName = "notes:ordered".parse().expect("valid");
    let held = {
        let (client, notes) = (client.clone(), notes.clone());
        tokio::spawn(async move { client.publish(notes, json!({ "text": "held" })).await })
    };
    while running.seen.held.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The hook holds the first publish; a second one waits behind it, and the session still
    // answers a call meanwhile.
    let next = {
        let (client, notes) = (client.clone(), notes.clone());
        tokio::spawn(async move { client.publish(notes, json!({ "text": "next" })).await })
    };
    let answer = client
        .call(method("jobs:run"), json!({ "name": "a" }))
        .await
        .expect("answered while the hook holds a publish");
    assert!(!answer.duplicate);
    assert!(!held.is_finished() && !next.is_finished());
    running.seen.release.notify_one();
    let held = held.await.expect("the task").expect("accepted");
    let next = next.await.expect("the task").expect("accepted");
    assert!(
        held.position.seq.get() < next.position.seq.get(),
        "stored in the order they were sent: {held:?} {next:?}"
    );
    client.close().await;
}

/// The example application's generated types, its method types among them.
#[allow(
    missing_docs,
    unreachable_pub,
    dead_code,
    clippy::all,
    clippy::unwrap_used
)]
mod app {
    include!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../generated/example-app/rust/types.rs"
    ));
}

#[tokio::test]
async fn a_typed_call_sends_the_generated_params_and_decodes_the_generated_result() {
    let handlers = Handlers::new().on_rpc(method("tasks:start"), |call| async move {
        let params = call.params.to_value().expect("json");
        Ok(Payload::from(
            json!({ "task_id": format!("{}-1", params["project"].as_str().unwrap_or("?")) }),
        ))
    });
    let config = Config::resolve(Flags::default()).expect("valid");
    let (auth, token) = Auth::development_with("dev-rpc-test-token".into());
    let broker = MemoryBroker::new(config.memory_broker());
    let server = ferry_server::Server::with_backend(
        config,
        auth,
        broker,
        Namespaces::example_app(),
        Some(Backend::new(handlers)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(ferry_server::serve(
        server,
        listener,
        std::future::pending(),
    ));
    let client = Client::builder(base, token).connect();
    assert!(client.wait_active(Duration::from_secs(30)).await);
    let params = app::StartTask {
        project: "alpha".parse().expect("valid"),
        title: "Build".parse().expect("valid"),
    };
    let started: app::TaskStarted = client
        .rpc::<app::TasksStart>(&params)
        .await
        .expect("a typed result");
    assert_eq!(started.task_id.as_str(), "alpha-1");
    client.close().await;
}
