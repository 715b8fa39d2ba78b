//! The application's backend as the runner plays it (`--backend-listen`): the server under test
//! POSTs each RPC call there (FERRY-HOOK-4), and each case scripts the answer to the calls that
//! carry its own idempotency key, and counts them, so that it can check what the server relays
//! and how often a call ran (FERRY-RPC-1 to FERRY-RPC-5).

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
    /// `{"type":"refuse","code":…,"message":…}`.
    Refuse { code: &'static str },
    /// An HTTP status other than 200, with no answer.
    Status(u16),
}

/// The runner's backend: scripts and counts by idempotency key.
pub(crate) struct ScriptedBackend {
    state: Arc<BackendState>,
}

struct BackendState {
    secret: Option<String>,
    scripts: Mutex<HashMap<String, Script>>,
    runs: Mutex<HashMap<String, usize>>,
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
            runs: Mutex::new(HashMap::new()),
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
        self.state
            .runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .copied()
            .unwrap_or(0)
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
    let key = call["idempotency_key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    *state
        .runs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key.clone())
        .or_insert(0) += 1;
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
            Json(
                json!({ "type": "refuse", "code": code, "message": "refused by the conformance runner's backend" }),
            ),
        ),
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
