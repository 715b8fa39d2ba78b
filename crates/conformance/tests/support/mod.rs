//! The reference server for the conformance tests: `ferry-server` in-process on a random
//! loopback port, with the example application's namespaces, a full and a restricted token,
//! and short timings so that every timing case runs in well under a second.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::sync::{Arc, Mutex};

use ferry_conformance::server::{ServerOptions, StopHook};
use ferry_server::auth::Auth;
use ferry_server::broker::{MemoryBroker, RedisBroker};
use ferry_server::config::{AuthMode, Config, Flags};
use ferry_server::namespaces::Namespaces;
use ferry_server::{Server, serve};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const TOKEN: &str = "conformance-full-0123456789abcdef";
pub const RESTRICTED: &str = "conformance-viewer-0123456789abcdef";
pub const SECOND: &str = "conformance-second-0123456789abcdef";
/// A credential of `RESTRICTED`'s user whose patterns are `RESTRICTED`'s with every literal
/// segment but the first taken as `*`: the rights of a server whose matcher lets a literal
/// segment match any segment.
pub const RESTRICTED_WIDE: &str = "conformance-viewer-wide-0123456789abcdef";
/// The user `RESTRICTED` is issued to.
pub const RESTRICTED_USER: &str = "conformance-viewer";

/// The permissions `RESTRICTED` grants, as a welcome lists them.
pub fn restricted_permissions() -> serde_json::Value {
    serde_json::json!([{ "pattern": "project:alpha:*", "read": true, "write": false }])
}
/// What the server queues for one session that does not read, at most: small, so that
/// `server.event.fell_behind` publishes little.
const QUEUED_BYTES: usize = 128 << 10;

/// A full token (every right, may publish over HTTP), a restricted one (read on one project,
/// no write, no HTTP publish), a wider one for the restricted user (read on every project, for
/// a mutant) and a second user's (read and write on the presence fixture's namespaces).
const TOKENS: &str = r#"
[[tokens]]
token = "conformance-full-0123456789abcdef"
user = "conformance"
backend = true
permissions = [{ pattern = "**", read = true, write = true, call = true }]

[[tokens]]
token = "conformance-viewer-0123456789abcdef"
user = "conformance-viewer"
permissions = [{ pattern = "project:alpha:*", read = true, write = false }]

[[tokens]]
token = "conformance-viewer-wide-0123456789abcdef"
user = "conformance-viewer"
permissions = [{ pattern = "project:*:*", read = true, write = false }]

[[tokens]]
token = "conformance-second-0123456789abcdef"
user = "conformance-second"
permissions = [
  { pattern = "presence:*", read = true, write = true },
  { pattern = "solo:*", read = true, write = true },
  { pattern = "relay:*", read = true, write = true },
]
"#;

/// The secret the reference server sends the suite's backend.
const BACKEND_SECRET: &str = "conformance-backend-secret";

/// A running reference server.
pub struct ReferenceServer {
    /// Its base URL.
    pub url: String,
    /// Where it expects its backend: the suite listens there (`--backend-listen`).
    pub backend: std::net::SocketAddr,
    /// The server's task; it ends after a graceful shutdown.
    pub served: JoinHandle<std::io::Result<()>>,
    stop: Arc<Mutex<Option<oneshot::Sender<()>>>>,
    _dir: tempfile::TempDir,
}

impl ReferenceServer {
    /// Starts one.
    pub async fn start() -> Self {
        Self::start_with(false, None).await
    }

    /// Starts a node of a deployment whose broker is the Redis at `redis_url`, under the key
    /// `prefix` its other nodes share.
    pub async fn start_on_redis(redis_url: &str, prefix: &str) -> Self {
        Self::start_with(false, Some((redis_url, prefix))).await
    }

    /// Starts one serving `https://` and `wss://` with a certificate for `localhost` signed by
    /// a CA made here, whose PEM file is [`ca_file`](Self::ca_file).
    pub async fn start_tls() -> Self {
        Self::start_with(true, None).await
    }

    /// The CA file of a server started with [`start_tls`](Self::start_tls).
    pub fn ca_file(&self) -> std::path::PathBuf {
        self._dir.path().join("ca.pem")
    }

    async fn start_with(tls: bool, redis: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (tls_cert, tls_key) = if tls {
            write_certificates(dir.path());
            (
                Some(dir.path().join("cert.pem")),
                Some(dir.path().join("key.pem")),
            )
        } else {
            (None, None)
        };
        let tokens = dir.path().join("tokens.toml");
        std::fs::write(&tokens, TOKENS).expect("write the tokens file");
        // A free port for the suite's backend, which the suite binds when it starts.
        let backend = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a loopback port");
        let config = Config::resolve(Flags {
            backend_url: Some(format!("http://{backend}/")),
            backend_secret: Some(BACKEND_SECRET.into()),
            rpc_timeout_ms: Some(300),
            auth: Some(AuthMode::Tokens),
            tokens_file: Some(tokens.clone()),
            heartbeat_interval_ms: Some(300),
            heartbeat_timeout_ms: Some(300),
            ticket_ttl_ms: Some(1_000),
            max_message_bytes: Some(16_384),
            max_subscriptions: Some(5),
            rate_limit_per_second: Some(50),
            rate_limit_burst: Some(10),
            // The suite asks for tickets and publishes far faster than one application would.
            ticket_rate_limit_per_second: Some(100_000),
            ticket_rate_limit_burst: Some(100_000),
            publish_rate_limit_per_second: Some(100_000),
            publish_rate_limit_burst: Some(100_000),
            // Long enough that server.dedup_window.at_least_resume_window repeats its key well
            // inside the window (it waits the window less the 250 ms tolerance).
            resume_window_ms: Some(1_000),
            resume_max_events: Some(20),
            drain_period_ms: Some(1_000),
            // Long enough for the reconnect cases to come back within it, short enough that
            // the lapse cases wait a few seconds.
            presence_leave_after_ms: Some(1_500),
            outbound_queue_bytes: Some(QUEUED_BYTES),
            tls_cert,
            tls_key,
            broker: redis.map(|(url, _)| url.to_owned()),
            redis_prefix: redis.map(|(_, prefix)| prefix.to_owned()),
            ..Flags::default()
        })
        .expect("a valid test configuration");
        let auth = Auth::from_file(&tokens).expect("a valid tokens file");
        // The example application, and the suite's hooked, presence and exclusive namespaces
        // beside it.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let namespaces = Namespaces::load(&[
            root.join("../../schema/example-app"),
            root.join("fixtures/hooked-app"),
            root.join("fixtures/presence-app"),
        ])
        .expect("the example application and the suite's fixtures load");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let port = listener.local_addr().expect("an address").port();
        let url = if tls {
            format!("https://localhost:{port}")
        } else {
            format!("http://127.0.0.1:{port}")
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let stopped = async move {
            let _ = stopped.await;
        };
        let served = match config.redis_broker() {
            None => {
                let broker = MemoryBroker::new(config.memory_broker());
                let server = Server::new(config, auth, broker, namespaces);
                tokio::spawn(serve(server, listener, stopped))
            }
            Some(redis) => {
                let broker = RedisBroker::new(redis).expect("a valid Redis broker configuration");
                let server = Server::new(config, auth, broker, namespaces);
                tokio::spawn(serve(server, listener, stopped))
            }
        };
        Self {
            url,
            backend,
            served,
            stop: Arc::new(Mutex::new(Some(stop))),
            _dir: dir,
        }
    }

    /// The suite's options for reaching it at `url` (its own, or a proxy's in front of it),
    /// with every token, the fixtures' channels and a stop hook that drains it.
    pub fn options(&self, url: &str) -> ServerOptions {
        let mut options = ServerOptions::new(url, TOKEN);
        options.restricted_token = Some(RESTRICTED.into());
        options.backend_listen = Some(self.backend);
        options.backend_secret = Some(BACKEND_SECRET.into());
        options.hooked_channel = Some("hooked:{}".into());
        options.second_token = Some(SECOND.into());
        options.presence_channel = Some("presence:{}".into());
        options.exclusive_channel = Some("solo:{}".into());
        options.takeover_channel = Some("relay:{}".into());
        options.max_queued_bytes = QUEUED_BYTES as u64;
        options.stop = Some(self.stop_hook());
        options
    }

    /// A hook that starts its graceful shutdown (once; later calls do nothing).
    pub fn stop_hook(&self) -> StopHook {
        let stop = self.stop.clone();
        Arc::new(move || {
            if let Some(stop) = stop.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = stop.send(());
            }
        })
    }
}

/// Writes a CA (`ca.pem`) and a certificate for `localhost` it signed (`cert.pem`, `key.pem`).
fn write_certificates(dir: &std::path::Path) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca =
        CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a key")).expect("a CA");
    let key = KeyPair::generate().expect("a key");
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .signed_by(&key, &ca)
        .expect("a certificate");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");
    std::fs::write(dir.join("cert.pem"), leaf.pem()).expect("write");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write");
}
