//! What an RPC call and a publish hook cost, end to end over loopback: ferry-server in this
//! process, the Rust client over a real WebSocket, and the application's backend, each row
//! beside its floor.
//!
//! - `rpc/http_backend`: `client.call("tasks:start")`, run by an axum backend that ferry-server
//!   reaches over HTTP (`--backend-url`, with its bearer secret).
//! - `rpc/embedded`: the same call, answered by an embedded handler (`backend::Handlers`).
//! - `rpc/plain_http_floor`: one `POST` of the same BackendCall body straight to the same
//!   backend with reqwest: what the HTTP hop alone costs.
//! - `publish/hooked` and `publish/unhooked`: a client publish acknowledged by the server, on a
//!   namespace whose publishes the HTTP backend accepts first, and on one without a hook.
//!
//! Every call carries a fresh idempotency key, so each one runs on the backend.
//!
//! ```sh
//! cargo bench -p ferry-benches --bench rpc
//! ```

#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use criterion::{Criterion, criterion_group, criterion_main};
use ferry_client::Client;
use ferry_protocol::{ChannelName, IdempotencyKey, MethodName, Payload};
use ferry_server::auth::Auth;
use ferry_server::backend::{Backend, Handlers};
use ferry_server::broker::MemoryBroker;
use ferry_server::config::{Config, Flags};
use ferry_server::namespaces::Namespaces;
use serde_json::{Value, json};

const SECRET: &str = "bench-secret";
const BUNDLE: &str = include_str!("../../generated/example-app/schema/bundle.schema.json");

/// The backend: answers every call with a task id and accepts every publish.
async fn backend(Json(call): Json<Value>) -> Json<Value> {
    Json(match call["type"].as_str() {
        Some("rpc") => json!({ "type": "result", "result": { "task_id": "t-1" } }),
        _ => json!({ "type": "accept" }),
    })
}

/// Starts the HTTP backend; returns its URL.
async fn start_backend() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ferry", listener.local_addr().unwrap());
    let router = axum::Router::new().route("/ferry", axum::routing::post(backend));
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

/// ferry-server with `namespaces`, backed by `embedded` or by the HTTP backend at `url`;
/// returns a welcomed client.
async fn start_server(namespaces: Namespaces, url: &str, embedded: Option<Backend>) -> Client {
    let flags = Flags {
        backend_url: embedded.is_none().then(|| url.to_owned()),
        backend_secret: Some(SECRET.into()),
        rate_limit_per_second: Some(100_000),
        rate_limit_burst: Some(100_000),
        ..Flags::default()
    };
    let config = Config::resolve(flags).unwrap();
    let (auth, token) = Auth::development_with("dev-bench-token".into());
    let broker = MemoryBroker::new(config.memory_broker());
    let server = match embedded {
        None => ferry_server::Server::new(config, auth, broker, namespaces),
        Some(backend) => {
            ferry_server::Server::with_backend(config, auth, broker, namespaces, Some(backend))
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(ferry_server::serve(
        server,
        listener,
        std::future::pending(),
    ));
    let client = Client::builder(base, token).connect();
    assert!(client.wait_active(Duration::from_secs(30)).await);
    client
}

/// The example application's channels with a publish hook on `project:*:approvals`.
fn hooked_namespaces() -> Namespaces {
    let channels = json!({ "namespaces": [
        { "pattern": "project:*:tasks", "payload": "TaskProgress", "description": "Not hooked." },
        { "pattern": "project:*:approvals", "payload": "TaskProgress", "description": "Hooked.", "hooks": ["publish"] }
    ]});
    Namespaces::from_sources(BUNDLE, &channels.to_string()).unwrap()
}

fn rpc(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = runtime.block_on(start_backend());
    let method: MethodName = "tasks:start".parse().unwrap();
    let params = json!({ "project": "alpha", "title": "bench" });
    let keys = Arc::new(AtomicU64::new(0));
    let key = move || -> IdempotencyKey {
        format!("k-{}", keys.fetch_add(1, Ordering::Relaxed))
            .parse()
            .unwrap()
    };
    let embedded = Handlers::new().on_rpc(method.clone(), |_| async {
        Ok(Payload::from(json!({ "task_id": "t-1" })))
    });
    let over_http = runtime.block_on(start_server(Namespaces::example_app(), &url, None));
    let in_process = runtime.block_on(start_server(
        Namespaces::example_app(),
        &url,
        Some(Backend::new(embedded)),
    ));
    let mut group = c.benchmark_group("rpc");
    for (name, client) in [("http_backend", &over_http), ("embedded", &in_process)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iterations {
                        client
                            .call_with_key(method.clone(), params.clone(), Some(key()))
                            .await
                            .unwrap();
                    }
                    started.elapsed()
                })
            })
        });
    }
    let http = reqwest::Client::new();
    let body = json!({ "type": "rpc", "method": "tasks:start", "params": params, "idempotency_key": "k", "user": "developer", "session_id": "s-1", "request_id": "r1" });
    group.bench_function("plain_http_floor", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iterations {
                    let answer = http
                        .post(&url)
                        .bearer_auth(SECRET)
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    answer.bytes().await.unwrap();
                }
                started.elapsed()
            })
        })
    });
    group.finish();

    let client = runtime.block_on(start_server(hooked_namespaces(), &url, None));
    let payload =
        json!({ "task_id": "T-1", "status": "running", "progress": 0.5, "assignee": null });
    let mut group = c.benchmark_group("publish");
    for (name, channel) in [
        ("hooked", "project:alpha:approvals"),
        ("unhooked", "project:alpha:tasks"),
    ] {
        let channel: ChannelName = channel.parse().unwrap();
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iterations {
                        client
                            .publish(channel.clone(), payload.clone())
                            .await
                            .unwrap();
                    }
                    started.elapsed()
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, rpc);
criterion_main!(benches);
