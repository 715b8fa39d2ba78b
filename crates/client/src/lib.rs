//! `ferry-client`: the async Rust client of Ferry, for daemons and backend services.
//!
//! A thin tokio shell over [`ferry_protocol::ClientSession`], which makes every protocol
//! decision (ticket before every connect, backoff, re-subscribe with positions, dedup, heartbeat,
//! size gate, close-code actions). This crate only moves bytes and time: it fetches tickets over
//! HTTP, opens the WebSocket with the `ferry.v1` subprotocol, feeds frames and timeouts to the
//! session and carries out what it asks. An `https://` base URL means TLS for both (`wss://`),
//! trusting the system's certificate authorities and optionally a CA file ([`tls`],
//! [`ClientBuilder::ca_file`]).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use ferry_client::{Client, Handler, ChannelEvent};
//!
//! let client = Client::builder("http://127.0.0.1:7400", "dev-token").connect();
//! let handler = Handler::new(|event: &ChannelEvent| {
//!     if let ChannelEvent::Event(event) = event {
//!         println!("{}: {}", event.position.seq.get(), event.payload);
//!     }
//! });
//! client.subscribe("project:alpha:tasks".parse()?, &handler)?;
//! let ack = client.publish("project:alpha:tasks".parse()?, serde_json::json!({ "task_id": "T-1" })).await?;
//! println!("stored at seq {}", ack.position.seq.get());
//! client.close().await;
//! # Ok(()) }
//! ```
//!
//! The types that matter: [`Client`] (cloneable handle), [`ClientBuilder`], [`Handler`] (an
//! application callback; registering the same handler twice on a channel calls it once per
//! event) and [`ChannelEvent`] (what a handler sees). Handlers run on the client's task: keep
//! them short and hand heavy work to a channel of your own.

mod driver;
mod ticket;
pub mod tls;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferry_protocol::client::{IncompleteCause, PublishFailure};
use ferry_protocol::{
    ChannelName, ClientConfig, ClientState, ErrorInfo, Event, IdempotencyKey, Member, Method,
    MethodName, Payload, Presence, Published, Resumption, RpcResult,
};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

pub use ferry_protocol::client::{StopReason, SubscribeOptions};

/// What a handler sees of its channel.
#[derive(Debug, Clone, PartialEq)]
pub enum ChannelEvent {
    /// The subscription took effect (again, after a reconnect); `resumption` says whether the
    /// events missed meanwhile are replayed.
    Subscribed(Resumption),
    /// An event, delivered at most once.
    Event(Event),
    /// The view of the channel has a hole: refetch the application's state.
    Incomplete(IncompleteCause),
    /// The server refused the subscription (a hold another session keeps is `held`); the
    /// handler is removed.
    Refused(ErrorInfo),
    /// Every member of the channel, read after the subscription took effect, for a
    /// subscription that tracks members ([`SubscribeOptions::members`], FERRY-PRESENCE-6).
    Members(Vec<Member>),
    /// A user joined or left the channel (after [`ChannelEvent::Members`], when tracked).
    Presence(Presence),
    /// The channel's members could not be read; they are read again after the next
    /// reconnect.
    MembersFailed(ErrorInfo),
}

/// An application callback for a channel's events. Clones share an identity: registering a
/// handler (or a clone of it) twice on a channel calls it once per event (FERRY-EVENT-5).
#[derive(Clone)]
pub struct Handler {
    id: u64,
    callback: Arc<dyn Fn(&ChannelEvent) + Send + Sync>,
}

impl Handler {
    /// A handler that calls `callback` on the client's task for every [`ChannelEvent`].
    pub fn new(callback: impl Fn(&ChannelEvent) + Send + Sync + 'static) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            callback: Arc::new(callback),
        }
    }

    fn call(&self, event: &ChannelEvent) {
        (self.callback)(event);
    }
}

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handler")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Why a publish failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PublishError {
    /// The server refused it.
    #[error("the server refused the publish: {} ({})", .0.message.as_str(), serde_json::to_string(&.0.code).unwrap_or_default())]
    Refused(ErrorInfo),
    /// No acknowledgement within the request timeout.
    #[error("no acknowledgement within the request timeout")]
    TimedOut,
    /// The message is above the maximum message size; it was not sent.
    #[error("the message is {size} bytes, above the maximum of {max}")]
    TooLarge {
        /// The encoded size.
        size: usize,
        /// The maximum message size.
        max: usize,
    },
    /// The client stopped before an acknowledgement arrived.
    #[error("the client stopped")]
    Stopped,
}

impl From<PublishFailure> for PublishError {
    fn from(failure: PublishFailure) -> Self {
        match failure {
            PublishFailure::Refused(info) => Self::Refused(info),
            PublishFailure::TimedOut => Self::TimedOut,
            PublishFailure::TooLarge(ferry_protocol::EncodeError::TooLarge { size, max }) => {
                Self::TooLarge { size, max }
            }
            PublishFailure::SessionStopped => Self::Stopped,
        }
    }
}

/// Why an RPC call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The server or the application's backend refused it, or it timed out on the server
    /// (`timeout`: it may still complete, and calling again with the same key gets its answer).
    #[error("the call failed: {} ({})", .0.message.as_str(), serde_json::to_string(&.0.code).unwrap_or_default())]
    Refused(ErrorInfo),
    /// No answer within the advertised `rpc.timeout_ms` plus the request timeout.
    #[error("no answer within rpc.timeout_ms plus the request timeout")]
    TimedOut,
    /// The call is above the maximum message size; it was not sent.
    #[error("the call is {size} bytes, above the maximum of {max}")]
    TooLarge {
        /// The encoded size.
        size: usize,
        /// The maximum message size.
        max: usize,
    },
    /// The client stopped before an answer arrived.
    #[error("the client stopped")]
    Stopped,
    /// The params could not be encoded, or the result does not decode as the method's result
    /// type (the client's generated types and the server's schema set disagree).
    #[error("the method's params or result do not fit their types: {0}")]
    Types(String),
}

impl From<PublishFailure> for CallError {
    fn from(failure: PublishFailure) -> Self {
        match PublishError::from(failure) {
            PublishError::Refused(info) => Self::Refused(info),
            PublishError::TimedOut => Self::TimedOut,
            PublishError::TooLarge { size, max } => Self::TooLarge { size, max },
            PublishError::Stopped => Self::Stopped,
        }
    }
}

/// The client has stopped; no command reaches it any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client has stopped")]
pub struct Stopped;

/// Builds a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base_url: String,
    credential: String,
    config: ClientConfig,
    seed: Option<u64>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl ClientBuilder {
    /// Settings that apply before the server's welcome (timeouts, the initial backoff and
    /// size limit); the welcome's advertised values replace them.
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// Seeds the jitter and generated idempotency keys, for repeatable runs (random by default).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The TLS settings for an `https://` server (tickets and `wss://` alike). By default the
    /// system's certificate authorities are trusted ([`tls::client_config`] without a CA file).
    pub fn tls(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Trusts the PEM certificates in `path` as well as the system's certificate authorities:
    /// a private CA, or a development server's self-signed certificate.
    pub fn ca_file(self, path: impl AsRef<std::path::Path>) -> Result<Self, tls::TlsError> {
        Ok(self.tls(tls::client_config(Some(path.as_ref()))?))
    }

    /// Starts the client on the current tokio runtime: it fetches a ticket, connects, and
    /// keeps reconnecting until it stops or is closed.
    pub fn connect(self) -> Client {
        let (commands, inbox) = mpsc::unbounded_channel();
        let (state_tx, state) = watch::channel(ClientState::Idle);
        let (changes, _) = broadcast::channel(64);
        let seed = self.seed.unwrap_or_else(rand::random);
        let tls = match self.tls {
            Some(tls) => tls,
            None => tls::client_config(None).expect("no CA file, nothing to fail on"),
        };
        let driver = driver::Driver::new(
            self.base_url,
            self.credential,
            tls,
            self.config,
            seed,
            inbox,
            state_tx,
            changes.clone(),
        );
        tokio::spawn(driver.run());
        Client {
            commands,
            state,
            changes,
        }
    }
}

/// A handle on a running client; clones share it.
#[derive(Debug, Clone)]
pub struct Client {
    commands: mpsc::UnboundedSender<driver::Command>,
    state: watch::Receiver<ClientState>,
    changes: broadcast::Sender<ClientState>,
}

impl Client {
    /// A builder for a client of the server at `base_url` (for example `http://127.0.0.1:7400`,
    /// or `https://ferry.example` for TLS)
    /// that authenticates with the bearer `credential` (never logged).
    pub fn builder(base_url: impl Into<String>, credential: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.into(),
            credential: credential.into(),
            config: ClientConfig::default(),
            seed: None,
            tls: None,
        }
    }

    /// The current state.
    pub fn state(&self) -> ClientState {
        self.state.borrow().clone()
    }

    /// Every state change from now on, in order.
    pub fn state_changes(&self) -> broadcast::Receiver<ClientState> {
        self.changes.subscribe()
    }

    /// Waits until the state satisfies `predicate` (checked on the current state first) or the
    /// client's task ends, and returns that state.
    pub async fn wait_for(&self, mut predicate: impl FnMut(&ClientState) -> bool) -> ClientState {
        let mut state = self.state.clone();
        let reached = state.wait_for(|s| predicate(s)).await.map(|s| s.clone());
        reached.unwrap_or_else(|_| state.borrow().clone())
    }

    /// Calls `handler` for the events of `channel`, subscribing when it is the channel's first
    /// handler. The subscription survives reconnects and resumes from the last event delivered.
    pub fn subscribe(&self, channel: ChannelName, handler: &Handler) -> Result<(), Stopped> {
        self.subscribe_with(channel, handler, SubscribeOptions::default())
    }

    /// [`subscribe`](Self::subscribe) with presence info, a hold of an exclusive channel
    /// (kept across reconnects with its fence, FERRY-HOLD-5), or member tracking
    /// ([`ChannelEvent::Members`] after every subscribed reply, then
    /// [`ChannelEvent::Presence`]).
    pub fn subscribe_with(
        &self,
        channel: ChannelName,
        handler: &Handler,
        options: SubscribeOptions,
    ) -> Result<(), Stopped> {
        self.commands
            .send(driver::Command::Subscribe(
                channel,
                handler.clone(),
                options,
            ))
            .map_err(|_| Stopped)
    }

    /// Stops calling `handler` for `channel`; the last handler's removal unsubscribes.
    pub fn unsubscribe(&self, channel: ChannelName, handler: &Handler) -> Result<(), Stopped> {
        self.commands
            .send(driver::Command::Unsubscribe(channel, handler.id))
            .map_err(|_| Stopped)
    }

    /// Publishes `payload` to `channel` and waits for the acknowledgement. The publish is
    /// re-sent with the same idempotency key across reconnects until acknowledged (so it is
    /// stored once), refused, or timed out.
    pub async fn publish(
        &self,
        channel: ChannelName,
        payload: impl Into<Payload>,
    ) -> Result<Published, PublishError> {
        self.publish_with_key(channel, payload, None).await
    }

    /// Like [`publish`](Self::publish), with the application's own idempotency key (reuse it
    /// to retry the same event after a restart).
    pub async fn publish_with_key(
        &self,
        channel: ChannelName,
        payload: impl Into<Payload>,
        key: Option<IdempotencyKey>,
    ) -> Result<Published, PublishError> {
        let (reply, result) = oneshot::channel();
        let command = driver::Command::Publish {
            channel,
            payload: payload.into(),
            key,
            reply,
        };
        self.commands
            .send(command)
            .map_err(|_| PublishError::Stopped)?;
        result.await.unwrap_or(Err(PublishError::Stopped))
    }

    /// Calls `method` with `params` and waits for its answer (FERRY-RPC-1). The call carries a
    /// fresh idempotency key and is re-sent with it across reconnects until answered, so the
    /// server executes it at most once (FERRY-RPC-3).
    pub async fn call(
        &self,
        method: MethodName,
        params: impl Into<Payload>,
    ) -> Result<RpcResult, CallError> {
        self.call_with_key(method, params, None).await
    }

    /// Like [`call`](Self::call), with the application's own idempotency key: calling again
    /// with the key of a call that failed with `timeout` (or whose process restarted) gets that
    /// call's answer instead of running it twice.
    pub async fn call_with_key(
        &self,
        method: MethodName,
        params: impl Into<Payload>,
        key: Option<IdempotencyKey>,
    ) -> Result<RpcResult, CallError> {
        let (reply, result) = oneshot::channel();
        let command = driver::Command::Call {
            method,
            params: params.into(),
            key,
            reply,
        };
        self.commands
            .send(command)
            .map_err(|_| CallError::Stopped)?;
        result.await.unwrap_or(Err(CallError::Stopped))
    }

    /// Calls the method `M` (a type `ferry-codegen` generates from an application's
    /// `methods.json`) with typed params, and decodes its typed result.
    pub async fn rpc<M: Method>(&self, params: &M::Params) -> Result<M::Result, CallError> {
        let method: MethodName = M::NAME
            .parse()
            .map_err(|e| CallError::Types(format!("{:?} is not a method name: {e}", M::NAME)))?;
        let params = serde_json::to_value(params).map_err(|e| CallError::Types(e.to_string()))?;
        let answer = self.call(method, Payload::from(params)).await?;
        answer
            .result
            .deserialize()
            .map_err(|e| CallError::Types(format!("the result of {}: {e}", M::NAME)))
    }

    /// Closes the session (close code 1000) and waits until the client has stopped.
    pub async fn close(&self) {
        let _ = self.commands.send(driver::Command::Close);
        self.wait_for(|s| matches!(s, ClientState::Stopped(_)))
            .await;
    }

    /// Waits until the client is active, or `timeout` passes (returns whether it is active).
    pub async fn wait_active(&self, timeout: Duration) -> bool {
        tokio::time::timeout(
            timeout,
            self.wait_for(|s| matches!(s, ClientState::Active | ClientState::Stopped(_))),
        )
        .await
        .is_ok_and(|s| s == ClientState::Active)
    }
}
