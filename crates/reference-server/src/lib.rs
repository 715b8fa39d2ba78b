//! `ferry-server`: Ferry's reference server, on one node or several.
//!
//! An I/O shell around the protocol core: every per-connection rule lives in
//! `ferry_protocol::ServerSession`, and channel state (history, dedup, tickets, fan-out) behind
//! the [`broker::Broker`] trait: in this node's memory ([`broker::MemoryBroker`]) or in a Redis
//! shared by several nodes ([`broker::RedisBroker`]). This crate adds the HTTP endpoints
//! ([`http`]), the WebSocket loop (`connection`), authentication ([`auth`]), the application's
//! payload schemas and methods ([`namespaces`]), the application's backend for RPC calls and
//! hooks ([`backend`]), configuration ([`config`]), the accept loop with TLS and its
//! connection bounds ([`transport`]) and graceful shutdown ([`Server::drain`]).

pub mod auth;
pub mod backend;
pub mod broker;
pub mod config;
mod connection;
mod gate;
pub mod http;
pub mod hub;
pub mod limits;
pub mod metrics;
pub mod namespaces;
mod socket;
pub mod transport;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use ferry_protocol::server::ServerConfig;
use ferry_protocol::{SessionId, Timestamp, UserId};
use std::sync::Mutex;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::auth::Auth;
use crate::backend::{Backend, HttpBackend, Ledger};
use crate::broker::Broker;
use crate::config::Config;
use crate::hub::{Doorbells, Hub};
use crate::namespaces::Namespaces;

/// A running server's shared state.
pub struct Server<B> {
    /// The effective configuration.
    pub config: Config,
    /// What `GET /metrics` reports.
    pub metrics: metrics::Metrics,
    auth: Auth,
    broker: B,
    hub: Hub,
    namespaces: Namespaces,
    /// What every session applies: the configuration's session settings with the
    /// application's namespaces, methods, presence and exclusive channels, built once and
    /// shared by reference count.
    session: Arc<ServerConfig>,
    /// Each caller's token buckets on the ticket and publish endpoints (FERRY-RATE-4).
    callers: limits::CallerLimits,
    origin: Instant,
    /// What every session reads when its doorbell rings: a drain starting, or a cut.
    lifecycle: watch::Sender<Lifecycle>,
    /// Every session's mailbox, rung when the lifecycle changes.
    doorbells: Arc<Doorbells>,
    sessions: AtomicU64,
    per_user: Mutex<HashMap<UserId, usize>>,
    live: AtomicUsize,
    /// Where RPC calls run and hooked requests are decided; `None`: they get `unavailable`.
    backend: Option<Backend>,
    /// Each call's answer for the dedup window (FERRY-RPC-3).
    ledger: Ledger,
    /// The node's slots for calls running on the backend (`--max-backend-calls`).
    calls: Arc<tokio::sync::Semaphore>,
}

impl<B: Broker> Server<B> {
    /// A server with this configuration, credentials, broker and namespaces, whose backend is
    /// the HTTP endpoint the configuration names (`--backend-url`), if any.
    pub fn new(config: Config, auth: Auth, broker: B, namespaces: Namespaces) -> Arc<Self> {
        let backend = config.backend.as_ref().map(|http| {
            // An answer carries at most one message's payload, plus its envelope.
            let max_answer = 2 * config.session.limits.max_message_bytes.get() as usize;
            let to =
                |url: &reqwest::Url| HttpBackend::new(url.clone(), http.secret.clone(), max_answer);
            Backend::new(backend::Routed {
                routes: http
                    .routes
                    .iter()
                    .map(|(p, url)| (p.clone(), to(url)))
                    .collect(),
                otherwise: http.url.as_ref().map(to),
            })
        });
        Self::with_backend(config, auth, broker, namespaces, backend)
    }

    /// A server whose backend is `backend`: an embedding application's own handlers
    /// ([`backend::Handlers`]), or any `tower` service boxed as a [`Backend`].
    pub fn with_backend(
        config: Config,
        auth: Auth,
        broker: B,
        namespaces: Namespaces,
        backend: Option<Backend>,
    ) -> Arc<Self> {
        let session = Arc::new(ServerConfig {
            namespaces: namespaces.patterns().into(),
            methods: namespaces.method_names().into(),
            presence: namespaces.presence_patterns().into(),
            exclusive: namespaces.exclusive_patterns().into(),
            ..config.session.clone()
        });
        Arc::new(Self {
            session,
            ledger: Ledger::new(config.dedup_window),
            calls: Arc::new(tokio::sync::Semaphore::new(config.max_backend_calls)),
            backend,
            callers: limits::CallerLimits::new(&config),
            config,
            metrics: metrics::Metrics::default(),
            auth,
            broker,
            hub: Hub::default(),
            namespaces,
            origin: Instant::now(),
            lifecycle: watch::channel(Lifecycle::default()).0,
            doorbells: Arc::default(),
            sessions: AtomicU64::new(0),
            per_user: Mutex::new(HashMap::new()),
            live: AtomicUsize::new(0),
        })
    }

    /// The protocol clock: milliseconds since the server started.
    pub fn now(&self) -> Timestamp {
        Timestamp::from_millis(u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    fn instant(&self, at: Timestamp) -> Instant {
        self.origin + Duration::from_millis(at.as_millis())
    }

    /// The broker.
    pub fn broker(&self) -> &B {
        &self.broker
    }

    /// Whether the server is shutting down.
    pub fn is_draining(&self) -> bool {
        self.lifecycle.borrow().drain.is_some()
    }

    /// How many WebSocket sessions are open.
    pub fn live_sessions(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// How long a write to a session's socket may wait: the heartbeat's interval plus
    /// timeout, the time in which a live client must have answered a ping.
    fn patience(&self) -> Duration {
        let heartbeat = &self.config.session.heartbeat;
        Duration::from_millis(
            heartbeat
                .interval_ms
                .get()
                .saturating_add(heartbeat.timeout_ms.get()),
        )
    }

    fn session_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.session)
    }

    fn next_session_id(&self) -> SessionId {
        let n = self.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        format!("s-{n}")
            .parse()
            .expect("s- followed by digits is a valid session id")
    }

    /// Takes one of the user's connection slots (FERRY-RATE-3); `None` when the user holds
    /// them all. The slot is given back when the guard drops.
    fn connection_slot(self: &Arc<Self>, user: &UserId) -> Option<Slot<B>> {
        let mut per_user = self.per_user.lock().unwrap_or_else(|e| e.into_inner());
        let count = per_user.entry(user.clone()).or_insert(0);
        if *count as u64 >= self.config.max_connections_per_user {
            return None;
        }
        *count += 1;
        self.live.fetch_add(1, Ordering::SeqCst);
        Some(Slot {
            server: self.clone(),
            user: user.clone(),
            shared: None,
        })
    }

    /// Drops every open WebSocket connection at once, without a close frame, as a crashed
    /// proxy or a cut cable would: for failure drills and for testing clients' reconnects.
    /// Clients see an abnormal closure (1006) and resume.
    pub fn disconnect_all(&self) {
        self.lifecycle.send_modify(|lifecycle| lifecycle.cuts += 1);
        self.doorbells.ring_all();
    }

    /// Stops gracefully (FERRY-SHUTDOWN-1 to -4): refuses new tickets and sessions, sends every
    /// session a goodbye with a retry hint spread over the drain period and closes it with
    /// 1012, and waits (at most the drain period plus five seconds) until all are closed.
    pub async fn drain(&self) {
        self.lifecycle
            .send_modify(|lifecycle| lifecycle.drain = Some(self.config.drain_period));
        self.doorbells.ring_all();
        let limit = Instant::now() + self.config.drain_period + Duration::from_secs(5);
        while self.live_sessions() > 0 && Instant::now() < limit {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The server's state as every session reads it, from one `watch` channel, when
/// [`Doorbells::ring_all`] rings its mailbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Lifecycle {
    /// The drain period, once the server stops (FERRY-SHUTDOWN-1).
    drain: Option<Duration>,
    /// How many times [`Server::disconnect_all`] was called; a session drops when it grows.
    cuts: u64,
}

/// One of a user's connection slots; dropping it gives the slot back, to this node and (once
/// [`Slot::share`] took it there) to the broker.
struct Slot<B: Broker> {
    server: Arc<Server<B>>,
    user: UserId,
    /// The session whose slot the broker counts across nodes.
    shared: Option<SessionId>,
}

impl<B: Broker> Slot<B> {
    /// Takes the slot in the broker too, for `session`, so that the limit counts the user's
    /// sessions on every node (FERRY-RATE-3); `false` when the user holds every slot there.
    async fn share(&mut self, session: &SessionId) -> Result<bool, broker::BrokerError> {
        let granted = self
            .server
            .broker
            .take_connection_slot(
                &self.user,
                session,
                self.server.config.max_connections_per_user,
            )
            .await?;
        if granted {
            self.shared = Some(session.clone());
        }
        Ok(granted)
    }
}

impl<B: Broker> Drop for Slot<B> {
    fn drop(&mut self) {
        if let Some(session) = self.shared.take() {
            self.server
                .broker
                .release_connection_slot(&self.user, &session);
        }
        let mut per_user = self
            .server
            .per_user
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = per_user.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                per_user.remove(&self.user);
            }
        }
        self.server.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The wall clock as Unix milliseconds, for `published_at_ms`.
pub(crate) fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How often the broker releases expired tickets, keys and history.
const PURGE_EVERY: Duration = Duration::from_secs(10);

/// How often the broker makes lapsed sessions leave their presence channels
/// (FERRY-PRESENCE-4): a leave comes at most this much after its time.
const EXPIRE_PRESENCE_EVERY: Duration = Duration::from_secs(1);

/// Serves until `stop` completes, then drains gracefully: over TLS when the configuration
/// names a certificate and key ([`Config::tls`]), which are then read again on every SIGHUP.
pub async fn serve<B: Broker>(
    server: Arc<Server<B>>,
    listener: TcpListener,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = match &server.config.tls {
        Some(files) => Some(Arc::new(
            transport::Tls::load(files).map_err(std::io::Error::other)?,
        )),
        None => None,
    };
    let reload = tls
        .clone()
        .map(|tls| tokio::spawn(transport::reload_on_hangup(tls)));
    let served = serve_with_tls(server, listener, tls, stop).await;
    if let Some(reload) = reload {
        reload.abort();
    }
    served
}

/// Serves until `stop` completes, then drains gracefully: over TLS with `tls` (whatever the
/// configuration says; the caller reloads it with [`transport::Tls::reload`] when it wants),
/// over plain TCP without.
pub async fn serve_with_tls<B: Broker>(
    server: Arc<Server<B>>,
    listener: TcpListener,
    tls: Option<Arc<transport::Tls>>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let purging = server.clone();
    let purge = tokio::spawn(async move {
        let mut every = tokio::time::interval(PURGE_EVERY);
        loop {
            every.tick().await;
            purging.broker.purge_expired(purging.now()).await;
        }
    });
    let sweeping = server.clone();
    let sweep = tokio::spawn(async move {
        let mut every = tokio::time::interval(EXPIRE_PRESENCE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            sweeping.broker.expire_presence(sweeping.now()).await;
        }
    });
    let served = transport::accept_loop(server, listener, tls, stop).await;
    purge.abort();
    sweep.abort();
    served
}
