//! The application's backend: where RPC calls run and where hooked publishes and subscribes
//! are decided (FERRY-RPC-1 to FERRY-RPC-5, FERRY-HOOK-1 to FERRY-HOOK-4).
//!
//! A backend is a [`tower::Service`] from a [`BackendCall`] to a [`BackendAnswer`], boxed as
//! [`Backend`]. Two are built in:
//!
//! - [`HttpBackend`]: POSTs each call as JSON to a URL, with the shared secret as a bearer
//!   token, and reads the answer (`--backend-url`, `--backend-secret`); [`Routed`] picks one
//!   per method or namespace (`--backend-route PATTERN=URL`);
//! - [`Handlers`]: Rust closures registered per method (`on_rpc`) and for the hooks
//!   (`on_publish`, `on_subscribe`), for an application that embeds the server.
//!
//! Either can be wrapped in `tower` layers (auth, logging, limits) before it is boxed:
//! `Backend::new(ServiceBuilder::new().layer(...).service(handlers))`.
//!
//! [`Ledger`] keeps each call's answer for the dedup window, keyed by user, method and
//! idempotency key, so that a call runs at most once however often it is sent (FERRY-RPC-3).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ferry_protocol::server::error_info;
use ferry_protocol::{
    BackendAnswer, BackendCall, BackendRefusal, BackendRefusalCode, ChannelPattern, ErrorCode,
    ErrorInfo, HookAccept, IdempotencyKey, MethodName, Payload, PublishHookCall, RpcCall,
    RpcReturn, SubscribeHookCall, Timestamp, UserId,
};
use parking_lot::Mutex;
use tokio::sync::watch;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

/// Why a backend gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The backend was not reached, so the call did not run: a retry may run it.
    #[error("the backend cannot be reached: {0}")]
    Unreachable(String),
    /// The backend was reached but gave no usable answer: a status other than 200, a body that
    /// is not a BackendAnswer (or is larger than the server reads), a connection lost
    /// mid-answer. The backend had the call, and the idempotency key with it.
    #[error("the backend failed: {0}")]
    Failed(String),
}

/// A backend, boxed: any `tower::Service<BackendCall>` that answers with a [`BackendAnswer`].
#[derive(Clone)]
pub struct Backend(BoxCloneSyncService<BackendCall, BackendAnswer, BackendError>);

impl Backend {
    /// Boxes a service (a [`HttpBackend`], [`Handlers`], or either behind `tower` layers).
    pub fn new<S>(service: S) -> Self
    where
        S: Service<BackendCall, Response = BackendAnswer, Error = BackendError>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        Self(BoxCloneSyncService::new(service))
    }

    /// Asks the backend one question.
    pub async fn ask(&self, call: BackendCall) -> Result<BackendAnswer, BackendError> {
        self.0.clone().oneshot(call).await
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Backend")
    }
}

/// The backend behind an HTTP endpoint (FERRY-HOOK-4): each call is one `POST` of its
/// [`BackendCall`] as JSON, with `Authorization: Bearer <secret>`, answered `200` with a
/// [`BackendAnswer`].
#[derive(Debug, Clone)]
pub struct HttpBackend {
    client: reqwest::Client,
    url: reqwest::Url,
    secret: Option<Arc<str>>,
    max_answer_bytes: usize,
}

impl HttpBackend {
    /// A backend at `url`, authenticated with `secret` when given, whose answers are read up
    /// to `max_answer_bytes` (a longer one is a failed call). How long a call may take is the
    /// caller's to bound (the RPC and hook timeouts).
    pub fn new(url: reqwest::Url, secret: Option<String>, max_answer_bytes: usize) -> Self {
        Self {
            client: reqwest::Client::new(),
            url,
            secret: secret.map(Arc::from),
            max_answer_bytes,
        }
    }
}

impl Service<BackendCall> for HttpBackend {
    type Response = BackendAnswer;
    type Error = BackendError;
    type Future = Pin<Box<dyn Future<Output = Result<BackendAnswer, BackendError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BackendError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: BackendCall) -> Self::Future {
        let mut request = self.client.post(self.url.clone()).json(&call);
        if let Some(secret) = &self.secret {
            request = request.bearer_auth(secret);
        }
        let max = self.max_answer_bytes;
        Box::pin(async move {
            let mut response = request.send().await.map_err(|e| {
                if e.is_connect() {
                    BackendError::Unreachable(without_url(&e))
                } else {
                    BackendError::Failed(without_url(&e))
                }
            })?;
            let status = response.status();
            if status != reqwest::StatusCode::OK {
                return Err(BackendError::Failed(format!("it answered HTTP {status}")));
            }
            let mut body = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| BackendError::Failed(without_url(&e)))?
            {
                if body.len() + chunk.len() > max {
                    return Err(BackendError::Failed(format!(
                        "its answer is larger than {max} bytes"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            serde_json::from_slice(&body).map_err(|e| {
                BackendError::Failed(format!("its answer is not a BackendAnswer: {e}"))
            })
        })
    }
}

/// HTTP backends chosen per call: the first route whose pattern matches the call's method (or,
/// for a hook, its channel), else `otherwise` (`--backend-route`, `--backend-url`).
#[derive(Debug, Clone)]
pub struct Routed {
    /// The routes, in order.
    pub routes: Vec<(ChannelPattern, HttpBackend)>,
    /// The backend of calls no route matches.
    pub otherwise: Option<HttpBackend>,
}

impl Routed {
    fn route(&self, call: &BackendCall) -> Option<&HttpBackend> {
        let matches = |pattern: &ChannelPattern| match call {
            BackendCall::RpcCall(call) => pattern.matches_method(&call.method),
            BackendCall::PublishHookCall(call) => pattern.matches(&call.channel),
            BackendCall::SubscribeHookCall(call) => pattern.matches(&call.channel),
        };
        self.routes
            .iter()
            .find(|(pattern, _)| matches(pattern))
            .map(|(_, backend)| backend)
            .or(self.otherwise.as_ref())
    }
}

impl Service<BackendCall> for Routed {
    type Response = BackendAnswer;
    type Error = BackendError;
    type Future = Pin<Box<dyn Future<Output = Result<BackendAnswer, BackendError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BackendError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: BackendCall) -> Self::Future {
        match self.route(&call).cloned() {
            Some(mut backend) => backend.call(call),
            None => Box::pin(async {
                Err(BackendError::Unreachable(
                    "no backend route matches this call and no --backend-url is set".into(),
                ))
            }),
        }
    }
}

/// An HTTP client error without the URL, which may carry credentials.
fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "the backend");
    }
    text
}

/// What an embedded RPC handler or hook decides when it does not answer normally.
pub type Refusal = BackendRefusal;

type Answering<T> = Pin<Box<dyn Future<Output = Result<T, Refusal>> + Send>>;
type RpcHandler = Arc<dyn Fn(RpcCall) -> Answering<Payload> + Send + Sync>;
type PublishHook = Arc<dyn Fn(PublishHookCall) -> Answering<Option<Payload>> + Send + Sync>;
type SubscribeHook = Arc<dyn Fn(SubscribeHookCall) -> Answering<()> + Send + Sync>;

/// An embedded backend: Rust handlers per method and for the hooks, run in the server's
/// process with no HTTP in between. A call of a method without a handler, or a hook question
/// without a hook, is refused with `rejected`.
#[derive(Clone, Default)]
pub struct Handlers {
    rpc: HashMap<MethodName, RpcHandler>,
    publish: Option<PublishHook>,
    subscribe: Option<SubscribeHook>,
}

impl Handlers {
    /// No handlers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `handler` for each call of `method`; its `Ok` is the method's result (checked
    /// against the result schema before it is sent), its `Err` the refusal the client gets.
    pub fn on_rpc<F, Fut>(mut self, method: MethodName, handler: F) -> Self
    where
        F: Fn(RpcCall) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Payload, Refusal>> + Send + 'static,
    {
        self.rpc
            .insert(method, Arc::new(move |call| Box::pin(handler(call))));
        self
    }

    /// Decides each client publish to a namespace with a publish hook: `Ok(None)` accepts it
    /// as it is, `Ok(Some(payload))` stores `payload` instead, `Err` refuses it.
    pub fn on_publish<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(PublishHookCall) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<Payload>, Refusal>> + Send + 'static,
    {
        self.publish = Some(Arc::new(move |call| Box::pin(hook(call))));
        self
    }

    /// Decides each subscribe to a namespace with a subscribe hook.
    pub fn on_subscribe<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(SubscribeHookCall) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Refusal>> + Send + 'static,
    {
        self.subscribe = Some(Arc::new(move |call| Box::pin(hook(call))));
        self
    }
}

/// A refusal with `code` and `message` (cut to the schema's 256 characters).
pub fn refusal(code: BackendRefusalCode, message: &str) -> Refusal {
    let message: String = message.chars().take(256).collect();
    BackendRefusal {
        code,
        message: message.parse().expect("at most 256 characters"),
    }
}

impl Service<BackendCall> for Handlers {
    type Response = BackendAnswer;
    type Error = BackendError;
    type Future = Pin<Box<dyn Future<Output = Result<BackendAnswer, BackendError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BackendError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: BackendCall) -> Self::Future {
        let nobody = |what: &str| {
            let refused = refusal(
                BackendRefusalCode::Rejected,
                &format!("no handler is registered for {what}"),
            );
            Box::pin(async move { Ok(BackendAnswer::BackendRefusal(refused)) }) as Self::Future
        };
        let answer = |outcome: Result<BackendAnswer, Refusal>| {
            Ok(outcome.unwrap_or_else(BackendAnswer::BackendRefusal))
        };
        match call {
            BackendCall::RpcCall(call) => match self.rpc.get(&call.method).cloned() {
                Some(handler) => Box::pin(async move {
                    answer(
                        handler(call)
                            .await
                            .map(|result| BackendAnswer::RpcReturn(RpcReturn { result })),
                    )
                }),
                None => nobody(call.method.as_str()),
            },
            BackendCall::PublishHookCall(call) => match self.publish.clone() {
                Some(hook) => Box::pin(async move {
                    answer(
                        hook(call)
                            .await
                            .map(|payload| BackendAnswer::HookAccept(HookAccept { payload })),
                    )
                }),
                None => nobody("publishes"),
            },
            BackendCall::SubscribeHookCall(call) => match self.subscribe.clone() {
                Some(hook) => Box::pin(async move {
                    answer(
                        hook(call)
                            .await
                            .map(|()| BackendAnswer::HookAccept(HookAccept { payload: None })),
                    )
                }),
                None => nobody("subscribes"),
            },
        }
    }
}

/// A call's answer as the ledger keeps it: the result, or the error the client got.
pub type Outcome = Result<Payload, ErrorInfo>;

/// Who may have run a call: its user, method and idempotency key (FERRY-RPC-3).
type CallKey = (UserId, MethodName, IdempotencyKey);

enum Entry {
    /// Running: its outcome will be sent on this channel.
    Running(watch::Receiver<Option<Outcome>>),
    /// Ran: its outcome, kept until `expires`.
    Done {
        outcome: Outcome,
        expires: Timestamp,
    },
}

/// The node's record of calls (FERRY-RPC-3): a call runs once per user, method and key within
/// the dedup window; a repeat waits for the first and gets its outcome.
pub struct Ledger {
    window: Duration,
    entries: Mutex<Entries>,
}

/// The ledger's calls, and the finished ones in the order they expire (the window is the same
/// for all, so finishing order is expiry order): a sweep pops expired ones off the front, in
/// time proportional to what it removes.
#[derive(Default)]
struct Entries {
    calls: HashMap<CallKey, Entry>,
    expiring: std::collections::VecDeque<(Timestamp, CallKey)>,
}

impl Entries {
    fn sweep(&mut self, now: Timestamp) {
        while let Some((expires, _)) = self.expiring.front() {
            if *expires > now {
                return;
            }
            let (expires, call) = self.expiring.pop_front().expect("a front");
            // The call may have been forgotten and run again since; only its own expiry goes.
            if matches!(self.calls.get(&call), Some(Entry::Done { expires: at, .. }) if *at == expires)
            {
                self.calls.remove(&call);
            }
        }
    }
}

/// The claim of a call that runs: hand it back to [`Ledger::finish`] with the outcome.
pub struct Running {
    call: CallKey,
    sender: watch::Sender<Option<Outcome>>,
}

/// What [`Ledger::claim`] found.
pub enum Claim {
    /// The first call with this key: run it, then [`Ledger::finish`] it.
    Run(Running),
    /// A repeat: this is (or will be) the first call's outcome.
    Repeat(watch::Receiver<Option<Outcome>>),
    /// A repeat of a call that has finished.
    Done(Outcome),
}

impl Ledger {
    /// A ledger that remembers outcomes for `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            entries: Mutex::new(Entries::default()),
        }
    }

    /// Claims a call at `now`: run it, or wait for the first call with its key.
    pub fn claim(
        &self,
        user: &UserId,
        method: &MethodName,
        key: &IdempotencyKey,
        now: Timestamp,
    ) -> Claim {
        let mut entries = self.entries.lock();
        entries.sweep(now);
        let call = (user.clone(), method.clone(), key.clone());
        match entries.calls.get(&call) {
            Some(Entry::Done { outcome, .. }) => Claim::Done(outcome.clone()),
            // A claim whose runner is gone (its task ended without an outcome) is void.
            Some(Entry::Running(outcome)) if outcome.has_changed().is_ok() => {
                Claim::Repeat(outcome.clone())
            }
            _ => {
                let (sender, receiver) = watch::channel(None);
                entries.calls.insert(call.clone(), Entry::Running(receiver));
                Claim::Run(Running { call, sender })
            }
        }
    }

    /// Records a claimed call's outcome at `now` and hands it to the repeats waiting for it.
    /// An outcome that proves the call did not run (`forget`) is not kept, so that a retry runs
    /// it.
    pub fn finish(&self, running: Running, outcome: Outcome, forget: bool, now: Timestamp) {
        let Running { call, sender } = running;
        let mut entries = self.entries.lock();
        if forget {
            entries.calls.remove(&call);
        } else {
            let expires = now + self.window;
            entries.expiring.push_back((expires, call.clone()));
            entries.calls.insert(
                call,
                Entry::Done {
                    outcome: outcome.clone(),
                    expires,
                },
            );
        }
        drop(entries);
        sender.send_replace(Some(outcome));
    }

    /// How many calls the ledger holds (running or kept).
    pub fn len(&self) -> usize {
        self.entries.lock().calls.len()
    }

    /// Whether the ledger holds no call.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Waits for the first call's outcome; `unavailable` if it was abandoned without one.
pub async fn outcome_of(mut repeat: watch::Receiver<Option<Outcome>>) -> Outcome {
    match repeat.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone().expect("waited for Some"),
        Err(_) => Err(error_info(
            ErrorCode::Unavailable,
            "the first call with this idempotency key was abandoned; retry",
        )),
    }
}

/// The error code a refusal carries to the client.
fn refusal_code(code: BackendRefusalCode) -> ErrorCode {
    match code {
        BackendRefusalCode::Rejected => ErrorCode::Rejected,
        BackendRefusalCode::Forbidden => ErrorCode::Forbidden,
        BackendRefusalCode::PayloadInvalid => ErrorCode::PayloadInvalid,
    }
}

/// What a hook decided: go ahead (with a replaced payload, for a publish), or the error the
/// client gets (FERRY-HOOK-1, FERRY-HOOK-2, FERRY-HOOK-3).
pub async fn ask_hook(
    backend: Option<&Backend>,
    call: BackendCall,
    timeout: Duration,
) -> Result<Option<Payload>, ErrorInfo> {
    let unavailable = |why: &str| {
        Err(error_info(
            ErrorCode::Unavailable,
            &format!("the backend that decides this request {why}; retry later"),
        ))
    };
    let Some(backend) = backend else {
        return unavailable("is not configured");
    };
    // A hook decides and does not act: one retry when the backend was not reached.
    let mut attempts = 2;
    loop {
        attempts -= 1;
        match tokio::time::timeout(timeout, backend.ask(call.clone())).await {
            Ok(Ok(BackendAnswer::HookAccept(accept))) => return Ok(accept.payload),
            Ok(Ok(BackendAnswer::BackendRefusal(refused))) => {
                return Err(error_info(refusal_code(refused.code), &refused.message));
            }
            Ok(Ok(BackendAnswer::RpcReturn(_))) => {
                return unavailable("answered with a result instead of accept or refuse");
            }
            Ok(Err(BackendError::Unreachable(_))) if attempts > 0 => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "a hook call failed");
                return unavailable("failed");
            }
            Err(_) => return unavailable("did not answer within --hook-timeout-ms"),
        }
    }
}

/// Runs one call on the backend and says whether its outcome may be forgotten (the call did
/// not complete, so a retry runs it: FERRY-RPC-3). The backend gets twice the RPC timeout, so
/// that a call the client was told `timeout` about can still finish for its retry.
pub async fn run_call(
    backend: Option<&Backend>,
    method: &crate::namespaces::Method,
    call: RpcCall,
    timeout: Duration,
) -> (Outcome, bool) {
    let unavailable = |why: String| Err(error_info(ErrorCode::Unavailable, &why));
    let Some(backend) = backend else {
        return (
            unavailable("no backend is configured for RPC calls".into()),
            true,
        );
    };
    let name = call.method.clone();
    let call = BackendCall::RpcCall(call);
    let mut attempts = if method.idempotent { 2 } else { 1 };
    loop {
        attempts -= 1;
        let answer = tokio::time::timeout(timeout * 2, backend.ask(call.clone())).await;
        return match answer {
            Ok(Ok(BackendAnswer::RpcReturn(RpcReturn { result }))) => {
                match method.check_result(&result) {
                    Ok(()) => (Ok(result), false),
                    Err(problem) => {
                        tracing::warn!(method = %name.as_str(), %problem, "the backend's result breaks the method's result schema");
                        let message = format!("the backend's result for {} breaks its result schema", name.as_str());
                        (Err(error_info(ErrorCode::Internal, &message)), false)
                    }
                }
            }
            Ok(Ok(BackendAnswer::BackendRefusal(refused))) => (
                Err(error_info(refusal_code(refused.code), &refused.message)),
                false,
            ),
            Ok(Ok(BackendAnswer::HookAccept(_))) => {
                let message = format!("the backend answered {} with accept instead of a result", name.as_str());
                (Err(error_info(ErrorCode::Internal, &message)), false)
            }
            Ok(Err(BackendError::Unreachable(_))) if attempts > 0 => continue,
            Ok(Err(BackendError::Unreachable(why))) => {
                tracing::warn!(method = %name.as_str(), %why, "the backend cannot be reached");
                (unavailable("the backend cannot be reached; retry later".into()), true)
            }
            Ok(Err(BackendError::Failed(why))) if attempts > 0 => {
                tracing::debug!(method = %name.as_str(), %why, "retrying an idempotent call");
                continue;
            }
            Ok(Err(BackendError::Failed(why))) => {
                tracing::warn!(method = %name.as_str(), %why, "the backend failed a call");
                (unavailable(format!("the backend failed the call: {why}")), true)
            }
            Err(_) => (
                unavailable(
                    "the backend gave no answer; the call may have run, and this answer is kept for the dedup window"
                        .into(),
                ),
                false,
            ),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (UserId, MethodName, IdempotencyKey) {
        (
            "ada".parse().expect("valid"),
            "tasks:start".parse().expect("valid"),
            "k-1".parse().expect("valid"),
        )
    }

    #[tokio::test]
    async fn a_repeated_key_waits_for_the_first_call_and_gets_its_outcome() {
        let ledger = Ledger::new(Duration::from_secs(60));
        let (user, method, key) = ids();
        let now = Timestamp::from_millis(0);
        let Claim::Run(first) = ledger.claim(&user, &method, &key, now) else {
            panic!("the first call runs");
        };
        let Claim::Repeat(waiting) = ledger.claim(&user, &method, &key, now) else {
            panic!("a repeat while running waits");
        };
        let other: UserId = "bob".parse().expect("valid");
        assert!(
            matches!(ledger.claim(&other, &method, &key, now), Claim::Run(_)),
            "another user's key is another call"
        );
        let result = Payload::from(serde_json::json!({ "task_id": "t-1" }));
        ledger.finish(first, Ok(result.clone()), false, now);
        assert_eq!(outcome_of(waiting).await, Ok(result.clone()));
        assert!(
            matches!(ledger.claim(&user, &method, &key, Timestamp::from_millis(59_999)), Claim::Done(Ok(r)) if r == result)
        );
        assert!(
            matches!(
                ledger.claim(&user, &method, &key, Timestamp::from_millis(60_000)),
                Claim::Run(_)
            ),
            "forgotten after the window"
        );
    }

    #[test]
    fn finished_calls_are_swept_once_their_window_has_passed() {
        let ledger = Ledger::new(Duration::from_millis(100));
        let (user, method, _) = ids();
        for n in 0..10u64 {
            let key: IdempotencyKey = format!("k-{n}").parse().expect("valid");
            let now = Timestamp::from_millis(n * 10);
            let Claim::Run(running) = ledger.claim(&user, &method, &key, now) else {
                panic!("a new key runs");
            };
            ledger.finish(running, Ok(Payload::from(serde_json::json!(n))), false, now);
        }
        assert_eq!(ledger.len(), 10);
        // At 150 ms, the calls finished at 0 to 50 ms have expired; the one claimed now stays.
        let key: IdempotencyKey = "k-new".parse().expect("valid");
        let _running = ledger.claim(&user, &method, &key, Timestamp::from_millis(150));
        assert_eq!(ledger.len(), 10 - 6 + 1);
    }

    #[tokio::test]
    async fn a_call_that_did_not_run_is_forgotten_so_a_retry_runs_it() {
        let ledger = Ledger::new(Duration::from_secs(60));
        let (user, method, key) = ids();
        let now = Timestamp::from_millis(0);
        let Claim::Run(first) = ledger.claim(&user, &method, &key, now) else {
            panic!("the first call runs");
        };
        let unavailable = error_info(ErrorCode::Unavailable, "down");
        ledger.finish(first, Err(unavailable), true, now);
        assert!(matches!(
            ledger.claim(&user, &method, &key, now),
            Claim::Run(_)
        ));
        // A claim dropped without an outcome releases its repeats with `unavailable`, and the
        // next call runs.
        let Claim::Run(dropped) = ledger.claim(&user, &method, &key, now) else {
            panic!("forgotten");
        };
        let Claim::Repeat(waiting) = ledger.claim(&user, &method, &key, now) else {
            panic!("running");
        };
        drop(dropped);
        assert_eq!(
            outcome_of(waiting).await.map_err(|e| e.code),
            Err(ErrorCode::Unavailable)
        );
        assert!(matches!(
            ledger.claim(&user, &method, &key, now),
            Claim::Run(_)
        ));
    }
}
