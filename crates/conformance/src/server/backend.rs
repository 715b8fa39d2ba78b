//! The application's backend as the runner plays it (`--backend-listen`): the server under test
//! POSTs each RPC call and hook question there (FERRY-HOOK-4), and each case scripts the answer
//! to the calls that carry its own idempotency key (or, for a subscribe hook, which has none,
//! its own channel), and keeps them, so that it can check what the server relays, what it asked
//! and how often a call ran (FERRY-RPC-1 to FERRY-RPC-5, FERRY-HOOK-1 to FERRY-HOOK-3).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

/// What the backend answers to the calls of one idempotency key.
#[derive(Debug, Clone)]
pub(crate) enum Script {
    /// `{"type":"result","result":…}`, after `delay`.
    Result { result: Value, delay: Duration },
    /// `{"type":"refuse","code":…,"message":`[`REFUSAL_MESSAGE`]`}`.
    Refuse { code: &'static str },
    /// `{"type":"accept"}`, with the replacing `payload` when given.
    Accept { payload: Option<Value> },
    /// An HTTP status other than 200, with no answer.
    Status(u16),
}

/// The message of every scripted refusal.
pub(crate) const REFUSAL_MESSAGE: &str = "refused by the conformance runner's backend";

/// The script key of the subscribe hook's calls about `channel`.
pub(crate) fn subscribe_key(channel: &str) -> String {
    format!("subscribe {channel}")
}

/// The runner's backend: scripts and keeps calls by idempotency key.
pub(crate) struct ScriptedBackend {
    state: Arc<BackendState>,
}

struct BackendState {
    secret: Option<String>,
    scripts: Mutex<HashMap<String, Script>>,
    /// The bodies of the calls that came, by script key.
    calls: Mutex<HashMap<String, Vec<Value>>>,
    /// Calls without the bearer secret, when there is one.
    unauthenticated: AtomicUsize,
}

impl ScriptedBackend {
    /// Listens on `address`, checking `Authorization: Bearer <secret>` when `secret` is given.
    pub(crate) async fn start(address: SocketAddr, secret: Option<String>) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| {
                format!("cannot listen on {address} as the backend (--backend-listen)")
            })?;
        let state = Arc::new(BackendState {
            secret,
            scripts: Mutex::new(HashMap::new()),
            calls: Mutex::new(HashMap::new()),
            unauthenticated: AtomicUsize::new(0),
        });
        let router = axum::Router::new()
            .fallback(axum::routing::post(answer))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Ok(Self { state })
    }

    /// Scripts the answer to the calls with idempotency key `key`.
    pub(crate) fn script(&self, key: &str, script: Script) {
        self.state
            .scripts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_owned(), script);
    }

    /// How many calls with `key` reached the backend.
    pub(crate) fn runs(&self, key: &str) -> usize {
        self.calls(key).len()
    }

    /// The bodies of the calls with `key` that reached the backend, in order.
    pub(crate) fn calls(&self, key: &str) -> Vec<Value> {
        self.state
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
            .unwrap_or_default()
    }

    /// How many calls came without the bearer secret.
    pub(crate) fn unauthenticated(&self) -> usize {
        self.state.unauthenticated.load(Ordering::SeqCst)
    }

    /// Whether the backend checks a secret.
    pub(crate) fn has_secret(&self) -> bool {
        self.state.secret.is_some()
    }
}

async fn answer(
    State(state): State<Arc<BackendState>>,
    headers: HeaderMap,
    Json(call): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if let Some(secret) = &state.secret {
        let sent = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if sent != Some(format!("Bearer {secret}").as_str()) {
            state.unauthenticated.fetch_add(1, Ordering::SeqCst);
            return (StatusCode::UNAUTHORIZED, Json(json!({})));
        }
    }
    let key = match (call["type"].as_str(), call["channel"].as_str()) {
        (Some("subscribe"), Some(channel)) => subscribe_key(channel),
        _ => call["idempotency_key"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    };
    state
        .calls
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key.clone())
        .or_default()
        .push(call);
    let script = state
        .scripts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .cloned();
    match script {
        Some(Script::Result { result, delay }) => {
            tokio::time::sleep(delay).await;
            (
                StatusCode::OK,
                Json(json!({ "type": "result", "result": result })),
            )
        }
        Some(Script::Refuse { code }) => (
            StatusCode::OK,
            Json(json!({ "type": "refuse", "code": code, "message": REFUSAL_MESSAGE })),
        ),
        Some(Script::Accept { payload }) => {
            let mut answer = json!({ "type": "accept" });
            if let Some(payload) = payload {
                answer["payload"] = payload;
            }
            (StatusCode::OK, Json(answer))
        }
        Some(Script::Status(status)) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            Json(json!({})),
        ),
        None => (
            StatusCode::OK,
            Json(
                json!({ "type": "refuse", "code": "rejected", "message": "no case of the conformance runner expects this call" }),
            ),
        ),
    }
}
