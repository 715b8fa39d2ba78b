//! The server's configuration: built-in defaults, then a TOML file, then `FERRY_*` environment
//! variables, then command-line flags, each overriding the one before.

use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

use crate::broker::{DEFAULT_MAX_CHANNELS, DEFAULT_MAX_HISTORY_BYTES};
use crate::hub::QueueLimits;
use ferry_protocol::server::ServerConfig;
use ferry_protocol::tables::defaults;
use serde::Deserialize;

/// Ferry's reference server: tickets, channels with permissions, heartbeats, resume with
/// replay, dedup, size and rate limits, graceful shutdown; in memory on one node, or on
/// several nodes sharing a Redis (--broker).
///
/// Every option can also be set in a TOML file (--config) with the same name in snake_case, or
/// in the environment as `FERRY_<NAME>`, the name in upper case (list options comma-separated).
/// Flags win over the environment, which wins over the file.
///
/// Logs go to stderr. RUST_LOG filters them (default "info"; for example
/// RUST_LOG=ferry_server=debug,info), --log-format picks text or JSON lines.
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "ferry-server", version, about, long_about)]
pub struct Flags {
    /// A TOML file with any of the options below.
    #[arg(long, env = "FERRY_CONFIG")]
    pub config: Option<PathBuf>,
    /// The address to listen on [default: 127.0.0.1:7400]. Development auth refuses anything
    /// but loopback.
    #[arg(long, env = "FERRY_BIND")]
    pub bind: Option<SocketAddr>,
    /// How bearer credentials are checked: "dev" (one generated token with every right;
    /// loopback only), "tokens" (a file of tokens, see --tokens-file) or "jwt" (signed tokens,
    /// see --jwt-hs256-secret-file and --jwt-rs256-public-key-file) [default: dev].
    #[arg(long, env = "FERRY_AUTH")]
    pub auth: Option<AuthMode>,
    /// With --auth tokens: a TOML file mapping tokens to a user and permissions.
    #[arg(long, env = "FERRY_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    /// With --auth jwt: a file holding the HS256 shared secret.
    #[arg(long, env = "FERRY_JWT_HS256_SECRET_FILE")]
    pub jwt_hs256_secret_file: Option<PathBuf>,
    /// With --auth jwt: a PEM file holding the RS256 public key.
    #[arg(long, env = "FERRY_JWT_RS256_PUBLIC_KEY_FILE")]
    pub jwt_rs256_public_key_file: Option<PathBuf>,
    /// Lifetime of a ticket, in milliseconds [default: 30000].
    #[arg(long, env = "FERRY_TICKET_TTL_MS")]
    pub ticket_ttl_ms: Option<u64>,
    /// Time between two pings, in milliseconds [default: 20000].
    #[arg(long, env = "FERRY_HEARTBEAT_INTERVAL_MS")]
    pub heartbeat_interval_ms: Option<u64>,
    /// Time a client has to answer a ping, in milliseconds [default: 10000].
    #[arg(long, env = "FERRY_HEARTBEAT_TIMEOUT_MS")]
    pub heartbeat_timeout_ms: Option<u64>,
    /// The largest message either side may send, in bytes [default: 131072].
    #[arg(long, env = "FERRY_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<u64>,
    /// Channels one session may hold at once [default: 100].
    #[arg(long, env = "FERRY_MAX_SUBSCRIPTIONS")]
    pub max_subscriptions: Option<u64>,
    /// Sessions one user may hold at once, over every node (FERRY-RATE-3) [default: 16]; one
    /// more is closed with 4409.
    #[arg(long, env = "FERRY_MAX_CONNECTIONS_PER_USER")]
    pub max_connections_per_user: Option<u64>,
    /// Sustained inbound frames per second per session [default: 10].
    #[arg(long, env = "FERRY_RATE_LIMIT_PER_SECOND")]
    pub rate_limit_per_second: Option<u64>,
    /// Inbound frames a session may send at once [default: 20].
    #[arg(long, env = "FERRY_RATE_LIMIT_BURST")]
    pub rate_limit_burst: Option<u64>,
    /// Sustained tickets per second one caller (the user its credential names) may obtain
    /// (FERRY-RATE-4) [default: 5]; beyond it, 429 rate_limited.
    #[arg(long, env = "FERRY_TICKET_RATE_LIMIT_PER_SECOND")]
    pub ticket_rate_limit_per_second: Option<u64>,
    /// Tickets one caller may obtain at once [default: 20].
    #[arg(long, env = "FERRY_TICKET_RATE_LIMIT_BURST")]
    pub ticket_rate_limit_burst: Option<u64>,
    /// Sustained backend publishes (POST /v1/publish) per second one caller may make
    /// (FERRY-RATE-4) [default: 200]; beyond it, 429 rate_limited. Counted per node.
    #[arg(long, env = "FERRY_PUBLISH_RATE_LIMIT_PER_SECOND")]
    pub publish_rate_limit_per_second: Option<u64>,
    /// Backend publishes one caller may make at once [default: 400].
    #[arg(long, env = "FERRY_PUBLISH_RATE_LIMIT_BURST")]
    pub publish_rate_limit_burst: Option<u64>,
    /// Age up to which missed events can be replayed, in milliseconds [default: 120000].
    #[arg(long, env = "FERRY_RESUME_WINDOW_MS")]
    pub resume_window_ms: Option<u64>,
    /// Most recent events per channel that can be replayed [default: 1000].
    #[arg(long, env = "FERRY_RESUME_MAX_EVENTS")]
    pub resume_max_events: Option<u64>,
    /// How long an idempotency key is remembered, in milliseconds (at least the resume window)
    /// [default: 120000].
    #[arg(long, env = "FERRY_DEDUP_WINDOW_MS")]
    pub dedup_window_ms: Option<u64>,
    /// The span over which a stopping server spreads its clients' reconnects, in milliseconds
    /// [default: 10000].
    #[arg(long, env = "FERRY_DRAIN_PERIOD_MS")]
    pub drain_period_ms: Option<u64>,
    /// Closes with 4411 a session that holds no subscription and sends nothing but pongs for
    /// this long, in milliseconds; 0 never does (FERRY-HEARTBEAT-5) [default: 0].
    #[arg(long, env = "FERRY_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Most channels the node holds state for at once [default: 100000]; a publish or
    /// subscribe that would create one more gets `unavailable`.
    #[arg(long, env = "FERRY_MAX_CHANNELS")]
    pub max_channels: Option<usize>,
    /// Most bytes of history the node holds over every channel (FERRY-RESUME-7), each event
    /// counted as its frame plus its payload [default: 268435456, 256 MiB]. Past it, events
    /// older than the resume window are dropped first, then publishes get `unavailable`. With
    /// a Redis broker the history lives in Redis and this does not apply.
    #[arg(long, env = "FERRY_MAX_HISTORY_BYTES")]
    pub max_history_bytes: Option<usize>,
    /// Most event frames queued for one session's socket [default: 4096]; a session that falls
    /// further behind is closed with 4410 and resumes.
    #[arg(long, env = "FERRY_OUTBOUND_QUEUE_FRAMES")]
    pub outbound_queue_frames: Option<usize>,
    /// Most bytes of event frames queued for one session's socket [default: 4194304]; a
    /// session that falls further behind is closed with 4410 and resumes.
    #[arg(long, env = "FERRY_OUTBOUND_QUEUE_BYTES")]
    pub outbound_queue_bytes: Option<usize>,
    /// Where channel state, tickets and fan-out live: "memory" (this node alone, the default)
    /// or a Redis shared by several nodes, as redis://HOST:PORT[/DB] (also rediss:// and
    /// redis+unix://) [default: memory].
    #[arg(long, env = "FERRY_BROKER")]
    pub broker: Option<String>,
    /// With a Redis broker: the prefix of every key and topic [default: ferry:]. The nodes of
    /// one deployment share it; two deployments on one Redis must not.
    #[arg(long, env = "FERRY_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
    /// A browser Origin allowed to open sessions and to call the HTTP endpoints through CORS
    /// (repeat, or comma-separated in the environment); "*" allows any. Requests without an Origin header (non-browser clients)
    /// are always allowed. Default: any with development auth, none otherwise.
    #[arg(
        long = "allowed-origins",
        alias = "allow-origin",
        env = "FERRY_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Option<Vec<String>>,
    /// An application schema set to serve: a folder as `ferry-codegen generate --schema` reads
    /// it (`*.schema.json`, `channels.json`, `methods.json`, `vectors/`), linted at start (a
    /// broken schema stops the server; missing descriptions or vectors are warned about). Repeat (or
    /// comma-separate in the environment) to serve several applications whose namespaces do
    /// not overlap. Default: the built-in example application.
    #[arg(
        long = "app",
        env = "FERRY_APP",
        value_delimiter = ',',
        value_name = "DIR"
    )]
    pub app: Option<Vec<PathBuf>>,
    /// With development auth: the token to accept. Default: one generated on first start and
    /// kept in $XDG_DATA_HOME/ferry/dev-token (else ~/.local/share/ferry/dev-token), so that
    /// it stays the same across restarts.
    #[arg(long, env = "FERRY_DEV_TOKEN")]
    pub dev_token: Option<String>,
    /// How log lines on stderr look: "text" (for people; coloured only on a terminal, never
    /// with NO_COLOR set) or "json" (one object a line, for log collectors) [default: text].
    #[arg(long, env = "FERRY_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// A PEM file holding the TLS certificate chain, leaf first: with --tls-key, the server
    /// speaks https:// and wss:// only. Both files are read again on SIGHUP (a file that
    /// cannot be used is logged and the previous pair kept). Default: plain HTTP.
    #[arg(long, env = "FERRY_TLS_CERT", value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,
    /// A PEM file holding the private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "FERRY_TLS_KEY", value_name = "PATH")]
    pub tls_key: Option<PathBuf>,
    /// Time a new connection has to finish its TLS handshake, and each request to deliver its
    /// headers, in milliseconds [default: 10000]; the connection is closed when it is up. A
    /// keep-alive connection that idles this long between requests is closed too.
    #[arg(long, env = "FERRY_HEADER_READ_TIMEOUT_MS")]
    pub header_read_timeout_ms: Option<u64>,
    /// Most TCP connections open at once, WebSocket sessions and TLS handshakes included
    /// [default: 10000]; one more is closed as soon as it is accepted.
    #[arg(long, env = "FERRY_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Most of those connections that have not yet presented a valid credential (a ticket on
    /// the WebSocket, a bearer token on an HTTP request) [default: 1000, at most
    /// --max-connections]; one more is closed as soon as it is accepted, so that peers which
    /// never authenticate cannot take the places of sessions.
    #[arg(long, env = "FERRY_MAX_UNAUTHENTICATED_CONNECTIONS")]
    pub max_unauthenticated_connections: Option<usize>,
    /// Time an HTTP response may wait for its peer to read it, in milliseconds [default:
    /// 10000]; the connection is closed when it is up. WebSocket sessions have their own
    /// deadline: a heartbeat's interval plus its timeout.
    #[arg(long, env = "FERRY_WRITE_TIMEOUT_MS")]
    pub write_timeout_ms: Option<u64>,
    /// The application's backend: every RPC call and every hooked publish or subscribe is
    /// POSTed there as a BackendCall (schema/backend.schema.json). Without it, calls and
    /// hooked requests get `unavailable`.
    #[arg(long, env = "FERRY_BACKEND_URL", value_name = "URL")]
    pub backend_url: Option<String>,
    /// A backend for some methods or namespaces only, as PATTERN=URL: the calls of methods and
    /// the hooked requests on channels the pattern matches go to URL instead of
    /// `--backend-url`. Repeat (or comma-separate in the environment); the first match wins.
    #[arg(
        long = "backend-route",
        env = "FERRY_BACKEND_ROUTES",
        value_delimiter = ',',
        value_name = "PATTERN=URL"
    )]
    pub backend_routes: Option<Vec<String>>,
    /// The secret sent to the backend as `Authorization: Bearer <secret>` (FERRY-HOOK-4);
    /// prefer the environment variable, which `ps` does not show.
    #[arg(long, env = "FERRY_BACKEND_SECRET", hide_env_values = true)]
    pub backend_secret: Option<String>,
    /// How long an RPC call may run before its client gets `timeout`, in milliseconds,
    /// advertised in the welcome (FERRY-RPC-2) [default: 10000].
    #[arg(long, env = "FERRY_RPC_TIMEOUT_MS")]
    pub rpc_timeout_ms: Option<u64>,
    /// How long a hook question may take before the request gets `unavailable`, in
    /// milliseconds (FERRY-HOOK-3) [default: 5000].
    #[arg(long, env = "FERRY_HOOK_TIMEOUT_MS")]
    pub hook_timeout_ms: Option<u64>,
    /// How long a session whose connection ended without an unsubscribe or a close frame
    /// stays present in its presence channels, in milliseconds, advertised in the welcome
    /// (FERRY-PRESENCE-4); also how long the holds of a node that stops last (FERRY-HOLD-4)
    /// [default: 30000].
    #[arg(long, env = "FERRY_PRESENCE_LEAVE_AFTER_MS")]
    pub presence_leave_after_ms: Option<u64>,
    /// Most RPC calls the node runs on its backend at once; a call over it waits, and its wait
    /// counts toward the RPC timeout (FERRY-RPC-2) [default: 256].
    #[arg(long, env = "FERRY_MAX_BACKEND_CALLS")]
    pub max_backend_calls: Option<usize>,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// How bearer credentials are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// One generated token with every right; loopback only.
    Dev,
    /// Tokens listed in a file.
    Tokens,
    /// JSON Web Tokens, HS256 or RS256.
    Jwt,
}

/// The same options, as they appear in the TOML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    bind: Option<SocketAddr>,
    auth: Option<AuthMode>,
    tokens_file: Option<PathBuf>,
    jwt_hs256_secret_file: Option<PathBuf>,
    jwt_rs256_public_key_file: Option<PathBuf>,
    ticket_ttl_ms: Option<u64>,
    heartbeat_interval_ms: Option<u64>,
    heartbeat_timeout_ms: Option<u64>,
    max_message_bytes: Option<u64>,
    max_subscriptions: Option<u64>,
    max_connections_per_user: Option<u64>,
    rate_limit_per_second: Option<u64>,
    rate_limit_burst: Option<u64>,
    ticket_rate_limit_per_second: Option<u64>,
    ticket_rate_limit_burst: Option<u64>,
    publish_rate_limit_per_second: Option<u64>,
    publish_rate_limit_burst: Option<u64>,
    resume_window_ms: Option<u64>,
    resume_max_events: Option<u64>,
    dedup_window_ms: Option<u64>,
    drain_period_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    max_channels: Option<usize>,
    max_history_bytes: Option<usize>,
    outbound_queue_frames: Option<usize>,
    outbound_queue_bytes: Option<usize>,
    allowed_origins: Option<Vec<String>>,
    broker: Option<String>,
    redis_prefix: Option<String>,
    app: Option<Vec<PathBuf>>,
    log_format: Option<LogFormat>,
    dev_token: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    header_read_timeout_ms: Option<u64>,
    max_connections: Option<usize>,
    max_unauthenticated_connections: Option<usize>,
    write_timeout_ms: Option<u64>,
    backend_url: Option<String>,
    backend_routes: Option<Vec<String>>,
    backend_secret: Option<String>,
    rpc_timeout_ms: Option<u64>,
    hook_timeout_ms: Option<u64>,
    presence_leave_after_ms: Option<u64>,
    max_backend_calls: Option<usize>,
}

/// Where channel state, tickets and fan-out live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerChoice {
    /// In this node's memory ([`MemoryBroker`](crate::broker::MemoryBroker)).
    Memory,
    /// In a Redis shared by several nodes ([`RedisBroker`](crate::broker::RedisBroker)).
    Redis {
        /// The Redis URL.
        url: String,
        /// The prefix of every key and topic.
        prefix: String,
    },
}

/// The port the server listens on by default.
pub const DEFAULT_PORT: u16 = 7400;

/// Where the JWT verification key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtKey {
    /// A file holding the HS256 shared secret (trailing whitespace ignored).
    Hs256SecretFile(PathBuf),
    /// A PEM file holding the RS256 public key.
    Rs256PublicKeyFile(PathBuf),
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub bind: SocketAddr,
    /// How credentials are checked.
    pub auth: AuthMode,
    /// The tokens file, with `AuthMode::Tokens`.
    pub tokens_file: Option<PathBuf>,
    /// The JWT key, with `AuthMode::Jwt`.
    pub jwt_key: Option<JwtKey>,
    /// Lifetime of a ticket.
    pub ticket_ttl: Duration,
    /// How long an idempotency key is remembered.
    pub dedup_window: Duration,
    /// The span over which reconnects are spread on shutdown.
    pub drain_period: Duration,
    /// Most channels the node holds state for at once.
    pub max_channels: usize,
    /// Most bytes of history the node holds over every channel (FERRY-RESUME-7).
    pub max_history_bytes: usize,
    /// Sessions one user may hold at once, over every node (FERRY-RATE-3).
    pub max_connections_per_user: u64,
    /// How much may be queued for one session's socket before it counts as fallen behind.
    pub outbound_queue: QueueLimits,
    /// Each caller's token bucket on the ticket endpoint (FERRY-RATE-4).
    pub ticket_rate: CallerRate,
    /// Each caller's token bucket on the backend publish endpoint (FERRY-RATE-4).
    pub publish_rate: CallerRate,
    /// What every session advertises and enforces.
    pub session: ServerConfig,
    /// Browser origins allowed to open sessions ("*" for any).
    pub allowed_origins: Vec<String>,
    /// Where channel state, tickets and fan-out live.
    pub broker: BrokerChoice,
    /// The application schema sets served; none means the built-in example application.
    pub apps: Vec<PathBuf>,
    /// How log lines look.
    pub log_format: LogFormat,
    /// With development auth, the token given to accept (else the kept one).
    pub dev_token: Option<String>,
    /// The certificate and key to serve TLS with; none for plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Time a connection has for its TLS handshake and each request for its headers.
    pub header_read_timeout: Duration,
    /// Most TCP connections open at once.
    pub max_connections: usize,
    /// Most connections open at once that have not presented a valid credential.
    pub max_unauthenticated_connections: usize,
    /// Time an HTTP response may wait for its peer to read it.
    pub write_timeout: Duration,
    /// The application's backend, if one is configured.
    pub backend: Option<BackendConfig>,
    /// How long a hook question may take (FERRY-HOOK-3).
    pub hook_timeout: Duration,
    /// Most RPC calls running on the backend at once.
    pub max_backend_calls: usize,
}

/// Where the application's backend listens and how ferry-server proves itself to it.
#[derive(Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// The URL a BackendCall is POSTed to when no route matches; `None`: only routed calls
    /// have a backend.
    pub url: Option<reqwest::Url>,
    /// The backends of some methods and namespaces, in order: the first whose pattern matches
    /// the method (or the channel) gets the call.
    pub routes: Vec<(ferry_protocol::ChannelPattern, reqwest::Url)>,
    /// The shared secret, sent as a bearer token.
    pub secret: Option<String>,
}

impl std::fmt::Debug for BackendConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendConfig")
            .field("url", &self.url.as_ref().map(reqwest::Url::as_str))
            .field(
                "routes",
                &self
                    .routes
                    .iter()
                    .map(|(p, u)| format!("{}={}", p.as_str(), u.as_str()))
                    .collect::<Vec<_>>(),
            )
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// One caller's token bucket on an HTTP endpoint (FERRY-RATE-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallerRate {
    /// Sustained requests per second.
    pub per_second: NonZeroU64,
    /// Requests at once after a quiet period.
    pub burst: NonZeroU64,
}

/// The PEM files the server's TLS certificate and key are read from (at start and on SIGHUP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key of the leaf certificate.
    pub key: PathBuf,
}

/// The default of `header_read_timeout_ms`.
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;

/// The default of `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// The default of `max_unauthenticated_connections`.
pub const DEFAULT_MAX_UNAUTHENTICATED_CONNECTIONS: usize = 1_000;

/// The default of `write_timeout_ms`.
pub const DEFAULT_WRITE_TIMEOUT_MS: u64 = 10_000;

/// A configuration that cannot be used; the message names the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read the config file {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (not a `source`: the message carries it, so it is printed once).
        error: std::io::Error,
    },
    /// The config file is not valid TOML of the expected shape.
    #[error("the config file {} is invalid: {error}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What toml reported, naming the field (carried by the message, printed once).
        error: toml::de::Error,
    },
    /// A value is out of the range the protocol allows.
    #[error("{field} = {value} is out of range: {why}")]
    Range {
        /// The option's name.
        field: &'static str,
        /// The value given.
        value: String,
        /// The allowed range.
        why: String,
    },
    /// Options that do not fit together.
    #[error("{0}")]
    Conflict(String),
}

impl Config {
    /// Resolves flags (already merged with the environment by clap) over the file over the
    /// defaults, and checks every value.
    pub fn resolve(flags: Flags) -> Result<Self, ConfigError> {
        let file = match &flags.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let pick =
            |flag: Option<u64>, file: Option<u64>, default: u64| flag.or(file).unwrap_or(default);
        let bind = flags
            .bind
            .or(file.bind)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)));
        let auth = flags.auth.or(file.auth).unwrap_or(AuthMode::Dev);
        let tokens_file = flags.tokens_file.or(file.tokens_file);
        let allowed_origins = flags
            .allowed_origins
            .or(file.allowed_origins)
            .unwrap_or_else(|| match auth {
                AuthMode::Dev => vec!["*".to_owned()],
                AuthMode::Tokens | AuthMode::Jwt => Vec::new(),
            });
        let hs256 = flags.jwt_hs256_secret_file.or(file.jwt_hs256_secret_file);
        let rs256 = flags
            .jwt_rs256_public_key_file
            .or(file.jwt_rs256_public_key_file);
        let jwt_key = match (auth, hs256, rs256) {
            (AuthMode::Jwt, Some(path), None) => Some(JwtKey::Hs256SecretFile(path)),
            (AuthMode::Jwt, None, Some(path)) => Some(JwtKey::Rs256PublicKeyFile(path)),
            (AuthMode::Jwt, _, _) => {
                return Err(ConfigError::Conflict(
                    "auth = \"jwt\" needs exactly one of jwt_hs256_secret_file and jwt_rs256_public_key_file".into(),
                ));
            }
            _ => None,
        };
        let heartbeat_interval = pick(
            flags.heartbeat_interval_ms,
            file.heartbeat_interval_ms,
            defaults::HEARTBEAT_INTERVAL_MS,
        );
        let heartbeat_timeout = pick(
            flags.heartbeat_timeout_ms,
            file.heartbeat_timeout_ms,
            defaults::HEARTBEAT_TIMEOUT_MS,
        );
        let max_message_bytes = pick(
            flags.max_message_bytes,
            file.max_message_bytes,
            defaults::MAX_MESSAGE_BYTES,
        );
        let max_subscriptions = pick(
            flags.max_subscriptions,
            file.max_subscriptions,
            defaults::MAX_SUBSCRIPTIONS,
        );
        let rate = pick(
            flags.rate_limit_per_second,
            file.rate_limit_per_second,
            defaults::RATE_LIMIT_MESSAGES_PER_SECOND,
        );
        let burst = pick(
            flags.rate_limit_burst,
            file.rate_limit_burst,
            defaults::RATE_LIMIT_BURST,
        );
        let resume_window = pick(
            flags.resume_window_ms,
            file.resume_window_ms,
            defaults::RESUME_WINDOW_MS,
        );
        let resume_events = pick(
            flags.resume_max_events,
            file.resume_max_events,
            defaults::RESUME_MAX_EVENTS,
        );
        let dedup_window = pick(
            flags.dedup_window_ms,
            file.dedup_window_ms,
            defaults::DEDUP_WINDOW_MS,
        );
        let ticket_ttl = pick(
            flags.ticket_ttl_ms,
            file.ticket_ttl_ms,
            defaults::TICKET_TTL_MS,
        );
        let drain_period = pick(
            flags.drain_period_ms,
            file.drain_period_ms,
            defaults::DRAIN_PERIOD_MS,
        );

        let max_connections_per_user = pick(
            flags.max_connections_per_user,
            file.max_connections_per_user,
            defaults::MAX_CONNECTIONS_PER_USER,
        );
        if max_connections_per_user == 0 {
            return Err(ConfigError::Range {
                field: "max_connections_per_user",
                value: "0".into(),
                why: "must be at least 1".into(),
            });
        }
        let positive = |field: &'static str, flag: Option<u64>, file: Option<u64>, default: u64| {
            NonZeroU64::new(pick(flag, file, default)).ok_or(ConfigError::Range {
                field,
                value: "0".into(),
                why: "must be at least 1".into(),
            })
        };
        let ticket_rate = CallerRate {
            per_second: positive(
                "ticket_rate_limit_per_second",
                flags.ticket_rate_limit_per_second,
                file.ticket_rate_limit_per_second,
                defaults::TICKET_RATE_LIMIT_PER_SECOND,
            )?,
            burst: positive(
                "ticket_rate_limit_burst",
                flags.ticket_rate_limit_burst,
                file.ticket_rate_limit_burst,
                defaults::TICKET_RATE_LIMIT_BURST,
            )?,
        };
        let publish_rate = CallerRate {
            per_second: positive(
                "publish_rate_limit_per_second",
                flags.publish_rate_limit_per_second,
                file.publish_rate_limit_per_second,
                defaults::PUBLISH_RATE_LIMIT_PER_SECOND,
            )?,
            burst: positive(
                "publish_rate_limit_burst",
                flags.publish_rate_limit_burst,
                file.publish_rate_limit_burst,
                defaults::PUBLISH_RATE_LIMIT_BURST,
            )?,
        };
        let max_channels = flags
            .max_channels
            .or(file.max_channels)
            .unwrap_or(DEFAULT_MAX_CHANNELS);
        let max_history_bytes = flags
            .max_history_bytes
            .or(file.max_history_bytes)
            .unwrap_or(DEFAULT_MAX_HISTORY_BYTES);
        let queue_defaults = QueueLimits::default();
        let outbound_queue = QueueLimits {
            frames: flags
                .outbound_queue_frames
                .or(file.outbound_queue_frames)
                .unwrap_or(queue_defaults.frames),
            bytes: flags
                .outbound_queue_bytes
                .or(file.outbound_queue_bytes)
                .unwrap_or(queue_defaults.bytes),
        };
        for (field, value) in [
            ("max_channels", max_channels),
            ("max_history_bytes", max_history_bytes),
            ("outbound_queue_frames", outbound_queue.frames),
            ("outbound_queue_bytes", outbound_queue.bytes),
        ] {
            if value == 0 {
                return Err(ConfigError::Range {
                    field,
                    value: value.to_string(),
                    why: "must be at least 1".into(),
                });
            }
        }

        let tls = match (
            flags.tls_cert.or(file.tls_cert),
            flags.tls_key.or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (Some(cert), None) => {
                return Err(ConfigError::Conflict(format!(
                    "tls_cert is given ({}) but tls_key is not: TLS needs both (--tls-cert and --tls-key), or neither for plain HTTP",
                    cert.display()
                )));
            }
            (None, Some(key)) => {
                return Err(ConfigError::Conflict(format!(
                    "tls_key is given ({}) but tls_cert is not: TLS needs both (--tls-cert and --tls-key), or neither for plain HTTP",
                    key.display()
                )));
            }
        };
        let header_read_timeout = pick(
            flags.header_read_timeout_ms,
            file.header_read_timeout_ms,
            DEFAULT_HEADER_READ_TIMEOUT_MS,
        );
        if !(1..=3_600_000).contains(&header_read_timeout) {
            return Err(ConfigError::Range {
                field: "header_read_timeout_ms",
                value: header_read_timeout.to_string(),
                why: "1 to 3600000".into(),
            });
        }
        let max_connections = flags
            .max_connections
            .or(file.max_connections)
            .unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            return Err(ConfigError::Range {
                field: "max_connections",
                value: "0".into(),
                why: "must be at least 1".into(),
            });
        }
        let max_unauthenticated_connections = flags
            .max_unauthenticated_connections
            .or(file.max_unauthenticated_connections)
            .unwrap_or(DEFAULT_MAX_UNAUTHENTICATED_CONNECTIONS.min(max_connections));
        if !(1..=max_connections).contains(&max_unauthenticated_connections) {
            return Err(ConfigError::Range {
                field: "max_unauthenticated_connections",
                value: max_unauthenticated_connections.to_string(),
                why: format!("1 to max_connections ({max_connections})"),
            });
        }
        let backend_url = |field: &'static str, url: &str| {
            reqwest::Url::parse(url)
                .ok()
                .filter(|u| u.scheme() == "http")
                .ok_or_else(|| ConfigError::Range {
                    field,
                    value: url.to_owned(),
                    why: "an http:// URL (the backend is reached over plain HTTP, on loopback or a private network)".into(),
                })
        };
        let url = flags
            .backend_url
            .or(file.backend_url)
            .map(|url| backend_url("backend_url", &url))
            .transpose()?;
        let routes = flags
            .backend_routes
            .or(file.backend_routes)
            .unwrap_or_default()
            .iter()
            .map(|route| {
                let (pattern, url) = route.split_once('=').ok_or_else(|| ConfigError::Range {
                    field: "backend_routes",
                    value: route.clone(),
                    why: "PATTERN=URL, such as tasks:*=http://127.0.0.1:8080/ferry".into(),
                })?;
                let pattern = pattern.parse().map_err(|e| ConfigError::Range {
                    field: "backend_routes",
                    value: route.clone(),
                    why: format!("{pattern:?} is not a channel pattern: {e}"),
                })?;
                Ok((pattern, backend_url("backend_routes", url)?))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let backend = (url.is_some() || !routes.is_empty()).then(|| BackendConfig {
            url,
            routes,
            secret: flags.backend_secret.or(file.backend_secret),
        });
        let rpc_timeout = pick(
            flags.rpc_timeout_ms,
            file.rpc_timeout_ms,
            defaults::RPC_TIMEOUT_MS,
        );
        if !(1..=600_000).contains(&rpc_timeout) {
            return Err(ConfigError::Range {
                field: "rpc_timeout_ms",
                value: rpc_timeout.to_string(),
                why: "1 to 600000, the schema's bounds on rpc.timeout_ms".into(),
            });
        }
        let presence_leave_after = pick(
            flags.presence_leave_after_ms,
            file.presence_leave_after_ms,
            defaults::PRESENCE_LEAVE_AFTER_MS,
        );
        if presence_leave_after > 3_600_000 {
            return Err(ConfigError::Range {
                field: "presence_leave_after_ms",
                value: presence_leave_after.to_string(),
                why: "0 to 3600000, the schema's bounds on presence.leave_after_ms".into(),
            });
        }
        let hook_timeout = pick(flags.hook_timeout_ms, file.hook_timeout_ms, 5_000);
        if !(1..=600_000).contains(&hook_timeout) {
            return Err(ConfigError::Range {
                field: "hook_timeout_ms",
                value: hook_timeout.to_string(),
                why: "1 to 600000".into(),
            });
        }
        let max_backend_calls = flags
            .max_backend_calls
            .or(file.max_backend_calls)
            .unwrap_or(256);
        if max_backend_calls == 0 {
            return Err(ConfigError::Range {
                field: "max_backend_calls",
                value: "0".into(),
                why: "at least 1".into(),
            });
        }
        let write_timeout = pick(
            flags.write_timeout_ms,
            file.write_timeout_ms,
            DEFAULT_WRITE_TIMEOUT_MS,
        );
        if !(1..=3_600_000).contains(&write_timeout) {
            return Err(ConfigError::Range {
                field: "write_timeout_ms",
                value: write_timeout.to_string(),
                why: "1 to 3600000".into(),
            });
        }

        let redis_prefix = flags
            .redis_prefix
            .or(file.redis_prefix)
            .unwrap_or_else(|| crate::broker::DEFAULT_REDIS_PREFIX.to_owned());
        let broker = match flags.broker.or(file.broker).as_deref() {
            None | Some("memory") => BrokerChoice::Memory,
            Some(url)
                if ["redis://", "rediss://", "redis+unix://", "unix://"]
                    .iter()
                    .any(|scheme| url.starts_with(scheme)) =>
            {
                BrokerChoice::Redis {
                    url: url.to_owned(),
                    prefix: redis_prefix,
                }
            }
            Some(other) => {
                return Err(ConfigError::Range {
                    field: "broker",
                    value: other.to_owned(),
                    why: "\"memory\" or a URL redis://HOST:PORT[/DB]".into(),
                });
            }
        };

        if auth == AuthMode::Dev && !bind.ip().is_loopback() {
            return Err(ConfigError::Conflict(format!(
                "development auth hands every right to one printed token, so it only binds to loopback; {bind} is not. Use --auth tokens --tokens-file FILE to listen on other addresses"
            )));
        }
        if auth == AuthMode::Tokens && tokens_file.is_none() {
            return Err(ConfigError::Conflict(
                "auth = \"tokens\" needs tokens_file (--tokens-file or FERRY_TOKENS_FILE)".into(),
            ));
        }
        if dedup_window < resume_window {
            return Err(ConfigError::Range {
                field: "dedup_window_ms",
                value: dedup_window.to_string(),
                why: format!("must be at least resume_window_ms ({resume_window}), FERRY-DEDUP-2"),
            });
        }
        if !(1..=3_600_000).contains(&ticket_ttl) {
            return Err(ConfigError::Range {
                field: "ticket_ttl_ms",
                value: ticket_ttl.to_string(),
                why: "1 to 3600000".into(),
            });
        }

        let dev_token = flags.dev_token.or(file.dev_token);
        if let Some(token) = &dev_token
            && (token.len() < 16
                || !token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)))
        {
            return Err(ConfigError::Range {
                field: "dev_token",
                value: "(hidden)".into(),
                why: "at least 16 characters of letters, digits and -._~+/".into(),
            });
        }

        // The advertised values go through the generated types, whose bounds are the schema's.
        let advertised = serde_json::json!({
            "heartbeat": { "interval_ms": heartbeat_interval, "timeout_ms": heartbeat_timeout },
            "limits": { "max_message_bytes": max_message_bytes, "max_subscriptions": max_subscriptions, "rate_limit": { "messages_per_second": rate, "burst": burst } },
            "resume": { "window_ms": resume_window, "max_events": resume_events },
        });
        let defaults_session = ServerConfig::default();
        let defaults_json = serde_json::json!({
            "heartbeat": defaults_session.heartbeat,
            "limits": defaults_session.limits,
            "resume": defaults_session.resume,
        });
        // Each option alone over the defaults, so that a range error names its own field.
        let fields: [(&'static str, &'static str, &[&str]); 8] = [
            ("heartbeat_interval_ms", "heartbeat", &["interval_ms"]),
            ("heartbeat_timeout_ms", "heartbeat", &["timeout_ms"]),
            ("max_message_bytes", "limits", &["max_message_bytes"]),
            ("max_subscriptions", "limits", &["max_subscriptions"]),
            (
                "rate_limit_per_second",
                "limits",
                &["rate_limit", "messages_per_second"],
            ),
            ("rate_limit_burst", "limits", &["rate_limit", "burst"]),
            ("resume_window_ms", "resume", &["window_ms"]),
            ("resume_max_events", "resume", &["max_events"]),
        ];
        for (field, group, path) in fields {
            let mut value = &advertised[group];
            let mut alone = defaults_json[group].clone();
            let mut slot = &mut alone;
            for key in path {
                value = &value[*key];
                slot = &mut slot[*key];
            }
            *slot = value.clone();
            let checked = match group {
                "heartbeat" => {
                    serde_json::from_value::<ferry_protocol::HeartbeatPolicy>(alone).map(drop)
                }
                "limits" => {
                    serde_json::from_value::<ferry_protocol::SessionLimits>(alone).map(drop)
                }
                _ => serde_json::from_value::<ferry_protocol::ResumePolicy>(alone).map(drop),
            };
            if let Err(error) = checked {
                return Err(range(field, value, error));
            }
        }
        let session = ServerConfig {
            heartbeat: serde_json::from_value(advertised["heartbeat"].clone())
                .map_err(|e| range("heartbeat_interval_ms", &advertised["heartbeat"], e))?,
            limits: serde_json::from_value(advertised["limits"].clone())
                .map_err(|e| range("max_message_bytes", &advertised["limits"], e))?,
            resume: serde_json::from_value(advertised["resume"].clone())
                .map_err(|e| range("resume_window_ms", &advertised["resume"], e))?,
            idle_timeout: match flags.idle_timeout_ms.or(file.idle_timeout_ms) {
                None | Some(0) => None,
                Some(ms) => Some(Duration::from_millis(ms)),
            },
            rpc_timeout: Duration::from_millis(rpc_timeout),
            presence_leave_after: Duration::from_millis(presence_leave_after),
            ..defaults_session
        };
        Ok(Self {
            bind,
            auth,
            tokens_file,
            jwt_key,
            ticket_ttl: Duration::from_millis(ticket_ttl),
            dedup_window: Duration::from_millis(dedup_window),
            drain_period: Duration::from_millis(drain_period),
            max_channels,
            max_history_bytes,
            max_connections_per_user,
            outbound_queue,
            ticket_rate,
            publish_rate,
            session,
            allowed_origins,
            broker,
            apps: flags.app.or(file.app).unwrap_or_default(),
            log_format: flags.log_format.or(file.log_format).unwrap_or_default(),
            dev_token,
            tls,
            header_read_timeout: Duration::from_millis(header_read_timeout),
            max_connections,
            max_unauthenticated_connections,
            write_timeout: Duration::from_millis(write_timeout),
            backend,
            hook_timeout: Duration::from_millis(hook_timeout),
            max_backend_calls,
        })
    }
}

impl Config {
    /// Whether a browser may open a session from `origin` (FERRY-SECURITY-1).
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.allowed_origins
            .iter()
            .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin))
    }

    /// The in-memory broker's settings: the advertised resume window as its retention, and the
    /// configured dedup window.
    pub fn memory_broker(&self) -> crate::broker::MemoryBrokerConfig {
        let retention = ferry_protocol::replay::Retention::from(&self.session.resume);
        crate::broker::MemoryBrokerConfig {
            dedup_window: self.dedup_window,
            max_channels: self.max_channels,
            max_history_bytes: self.max_history_bytes,
            presence_leave_after: self.session.presence_leave_after,
            ..crate::broker::MemoryBrokerConfig::new(retention)
        }
    }

    /// The Redis broker's settings, with a Redis broker: its URL and prefix, the advertised
    /// resume window as its retention and the configured dedup window.
    pub fn redis_broker(&self) -> Option<crate::broker::RedisBrokerConfig> {
        let BrokerChoice::Redis { url, prefix } = &self.broker else {
            return None;
        };
        let retention = ferry_protocol::replay::Retention::from(&self.session.resume);
        Some(crate::broker::RedisBrokerConfig {
            prefix: prefix.clone(),
            dedup_window: self.dedup_window,
            presence_leave_after: self.session.presence_leave_after,
            ..crate::broker::RedisBrokerConfig::new(url.clone(), retention)
        })
    }
}

fn range(field: &'static str, value: &serde_json::Value, error: serde_json::Error) -> ConfigError {
    ConfigError::Range {
        field,
        value: value.to_string(),
        why: error.to_string(),
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_owned(),
        error,
    })?;
    toml::from_str(&text).map_err(|error| ConfigError::Parse {
        path: path.to_owned(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_bind_loopback_with_development_auth() {
        let config = Config::resolve(Flags::default()).expect("the defaults are valid");
        assert_eq!(
            config.bind,
            SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT))
        );
        assert_eq!(config.auth, AuthMode::Dev);
        assert_eq!(config.session.limits.max_message_bytes.get(), 131_072);
    }

    #[test]
    fn development_auth_refuses_a_public_address() {
        let flags = Flags {
            bind: Some("0.0.0.0:7400".parse().expect("valid")),
            ..Flags::default()
        };
        let error = Config::resolve(flags).expect_err("dev auth on 0.0.0.0");
        assert!(
            error.to_string().contains("only binds to loopback"),
            "{error}"
        );
    }

    #[test]
    fn an_out_of_range_value_names_its_field() {
        let flags = Flags {
            max_message_bytes: Some(10),
            ..Flags::default()
        };
        let error = Config::resolve(flags).expect_err("below the schema's 1024");
        assert!(error.to_string().contains("max_message_bytes"), "{error}");
    }

    #[test]
    fn a_bad_config_file_names_the_field() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("ferry.toml");
        std::fs::write(&path, "heartbeat_interval_ms = \"soon\"\n").expect("write");
        let error = Config::resolve(Flags {
            config: Some(path.clone()),
            ..Flags::default()
        })
        .expect_err("a string for a number");
        assert!(
            error.to_string().contains("heartbeat_interval_ms"),
            "{error}"
        );
        std::fs::write(&path, "heartbeat_interval = 5\n").expect("write");
        let error = Config::resolve(Flags {
            config: Some(path),
            ..Flags::default()
        })
        .expect_err("unknown field");
        assert!(error.to_string().contains("heartbeat_interval"), "{error}");
    }

    #[test]
    fn browser_origins_are_open_in_development_and_closed_with_tokens() {
        let dev = Config::resolve(Flags::default()).expect("valid");
        assert!(dev.allows_origin("http://localhost:5173"));
        let dir = tempfile::tempdir().expect("a temp dir");
        let flags = Flags {
            auth: Some(AuthMode::Tokens),
            tokens_file: Some(dir.path().join("tokens.toml")),
            ..Flags::default()
        };
        let tokens = Config::resolve(flags.clone()).expect("valid");
        assert!(
            !tokens.allows_origin("http://localhost:5173"),
            "no browser origin unless listed"
        );
        let listed = Config::resolve(Flags {
            allowed_origins: Some(vec!["https://console.example".into()]),
            ..flags
        })
        .expect("valid");
        assert!(listed.allows_origin("https://Console.Example"));
        assert!(!listed.allows_origin("https://evil.example"));
    }

    #[test]
    fn jwt_auth_needs_exactly_one_key() {
        let jwt = Flags {
            auth: Some(AuthMode::Jwt),
            ..Flags::default()
        };
        let error = Config::resolve(jwt.clone()).expect_err("no key");
        assert!(
            error.to_string().contains("jwt_hs256_secret_file"),
            "{error}"
        );
        let both = Flags {
            jwt_hs256_secret_file: Some("s".into()),
            jwt_rs256_public_key_file: Some("p".into()),
            ..jwt.clone()
        };
        assert!(Config::resolve(both).is_err());
        let one = Config::resolve(Flags {
            jwt_rs256_public_key_file: Some("key.pem".into()),
            ..jwt
        })
        .expect("one key");
        assert_eq!(
            one.jwt_key,
            Some(JwtKey::Rs256PublicKeyFile("key.pem".into()))
        );
    }

    #[test]
    fn the_broker_is_memory_by_default_and_redis_by_url() {
        let config = Config::resolve(Flags::default()).expect("valid");
        assert_eq!(config.broker, BrokerChoice::Memory);
        assert!(config.redis_broker().is_none());
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("ferry.toml");
        std::fs::write(&path, "broker = \"redis://127.0.0.1:6379/2\"\n").expect("write");
        let config = Config::resolve(Flags {
            config: Some(path),
            redis_prefix: Some("app:".into()),
            ..Flags::default()
        })
        .expect("valid");
        assert_eq!(
            config.broker,
            BrokerChoice::Redis {
                url: "redis://127.0.0.1:6379/2".into(),
                prefix: "app:".into()
            }
        );
        let redis = config.redis_broker().expect("a Redis broker");
        assert_eq!(redis.prefix, "app:");
        assert_eq!(redis.dedup_window, config.dedup_window);
        let error = Config::resolve(Flags {
            broker: Some("postgres://db".into()),
            ..Flags::default()
        })
        .expect_err("not a broker");
        assert!(error.to_string().contains("broker"), "{error}");
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("ferry.toml");
        std::fs::write(
            &path,
            "heartbeat_interval_ms = 5000\nheartbeat_timeout_ms = 2000\n",
        )
        .expect("write");
        let flags = Flags {
            config: Some(path),
            heartbeat_interval_ms: Some(7000),
            ..Flags::default()
        };
        let config = Config::resolve(flags).expect("valid");
        assert_eq!(config.session.heartbeat.interval_ms.get(), 7000);
        assert_eq!(config.session.heartbeat.timeout_ms.get(), 2000);
    }

    #[test]
    fn a_range_error_names_the_one_field_at_fault() {
        for (flags, field) in [
            (
                Flags {
                    heartbeat_timeout_ms: Some(0),
                    ..Flags::default()
                },
                "heartbeat_timeout_ms = 0",
            ),
            (
                Flags {
                    rate_limit_burst: Some(0),
                    ..Flags::default()
                },
                "rate_limit_burst = 0",
            ),
            (
                Flags {
                    max_connections_per_user: Some(0),
                    ..Flags::default()
                },
                "max_connections_per_user = 0",
            ),
        ] {
            let error = Config::resolve(flags)
                .expect_err("out of range")
                .to_string();
            assert!(error.starts_with(field), "{error}");
        }
    }

    #[test]
    fn tls_needs_both_files_and_the_error_names_the_one_given() {
        let error = Config::resolve(Flags {
            tls_cert: Some("cert.pem".into()),
            ..Flags::default()
        })
        .expect_err("a certificate without a key")
        .to_string();
        assert!(
            error.starts_with("tls_cert is given (cert.pem) but tls_key is not"),
            "{error}"
        );
        let error = Config::resolve(Flags {
            tls_key: Some("key.pem".into()),
            ..Flags::default()
        })
        .expect_err("a key without a certificate")
        .to_string();
        assert!(error.starts_with("tls_key is given (key.pem)"), "{error}");
        let both = Config::resolve(Flags {
            tls_cert: Some("cert.pem".into()),
            tls_key: Some("key.pem".into()),
            ..Flags::default()
        })
        .expect("both");
        assert_eq!(
            both.tls,
            Some(TlsFiles {
                cert: "cert.pem".into(),
                key: "key.pem".into()
            })
        );
        assert_eq!(Config::resolve(Flags::default()).expect("valid").tls, None);
    }

    #[test]
    fn connection_bounds_have_defaults_and_name_their_field_when_out_of_range() {
        let config = Config::resolve(Flags::default()).expect("valid");
        assert_eq!(config.header_read_timeout, Duration::from_secs(10));
        assert_eq!(config.max_connections, 10_000);
        assert_eq!(config.max_unauthenticated_connections, 1_000);
        assert_eq!(config.write_timeout, Duration::from_secs(10));
        let few = Config::resolve(Flags {
            max_connections: Some(100),
            ..Flags::default()
        })
        .expect("valid");
        assert_eq!(few.max_unauthenticated_connections, 100);
        for (flags, field) in [
            (
                Flags {
                    header_read_timeout_ms: Some(0),
                    ..Flags::default()
                },
                "header_read_timeout_ms = 0",
            ),
            (
                Flags {
                    max_connections: Some(0),
                    ..Flags::default()
                },
                "max_connections = 0",
            ),
            (
                Flags {
                    max_connections: Some(100),
                    max_unauthenticated_connections: Some(101),
                    ..Flags::default()
                },
                "max_unauthenticated_connections = 101",
            ),
            (
                Flags {
                    max_unauthenticated_connections: Some(0),
                    ..Flags::default()
                },
                "max_unauthenticated_connections = 0",
            ),
            (
                Flags {
                    write_timeout_ms: Some(0),
                    ..Flags::default()
                },
                "write_timeout_ms = 0",
            ),
            (
                Flags {
                    backend_url: Some("https://backend.example/ferry".into()),
                    ..Flags::default()
                },
                "backend_url = https://backend.example/ferry",
            ),
            (
                Flags {
                    backend_routes: Some(vec!["tasks:*".into()]),
                    ..Flags::default()
                },
                "backend_routes = tasks:*",
            ),
            (
                Flags {
                    backend_routes: Some(vec!["Tasks=http://127.0.0.1:1/".into()]),
                    ..Flags::default()
                },
                "backend_routes = Tasks=http://127.0.0.1:1/",
            ),
            (
                Flags {
                    rpc_timeout_ms: Some(0),
                    ..Flags::default()
                },
                "rpc_timeout_ms = 0",
            ),
            (
                Flags {
                    max_backend_calls: Some(0),
                    ..Flags::default()
                },
                "max_backend_calls = 0",
            ),
        ] {
            let error = Config::resolve(flags)
                .expect_err("out of range")
                .to_string();
            assert!(error.starts_with(field), "{error}");
        }
    }

    #[test]
    fn the_backend_secret_never_appears_in_the_configurations_debug_output() {
        let config = Config::resolve(Flags {
            backend_url: Some("http://127.0.0.1:8080/ferry".into()),
            backend_routes: Some(vec!["tasks:*=http://127.0.0.1:8081/ferry".into()]),
            backend_secret: Some("s3cr3t-value".into()),
            ..Flags::default()
        })
        .expect("valid");
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        assert!(
            shown.contains("tasks:*=http://127.0.0.1:8081/ferry"),
            "{shown}"
        );
    }
}
