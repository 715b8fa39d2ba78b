//! What the integration tests share: for the tests that need Redis, where it is, a key prefix
//! of their own and the means to reach into it (a test that finds no Redis fails, loudly:
//! `.ci/run` starts one); for the tests of the binary, the walkthrough it prints.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use ferry_protocol::replay::Retention;
use ferry_server::broker::{RedisBroker, RedisBrokerConfig};

/// The Redis the tests use: `FERRY_TEST_REDIS_URL`, or the one `.ci/run` starts.
pub fn redis_url() -> String {
    std::env::var("FERRY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A key prefix no other test uses, so tests run in parallel and never touch other data.
pub fn test_prefix() -> String {
    format!("ferry-test-{:016x}:", rand::random::<u64>())
}

/// A plain connection to the test Redis, failing the test if there is none.
pub async fn redis() -> redis::aio::MultiplexedConnection {
    let url = redis_url();
    let client = redis::Client::open(url.as_str()).expect("a Redis URL");
    client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|error| {
            panic!("these tests need a Redis at {url} (.ci/run starts one): {error}")
        })
}

/// A Redis broker under `prefix` with the given retention, checked to reach Redis.
pub async fn redis_broker_with(prefix: &str, retention: Retention) -> Arc<RedisBroker> {
    let url = redis_url();
    let broker = RedisBroker::new(RedisBrokerConfig {
        prefix: prefix.to_owned(),
        ..RedisBrokerConfig::new(url.clone(), retention)
    })
    .expect("a Redis URL");
    broker.ping().await.unwrap_or_else(|error| {
        panic!("these tests need a Redis at {url} (.ci/run starts one): {error}")
    });
    Arc::new(broker)
}

/// A Redis broker under `prefix` with the default retention.
pub async fn redis_broker(prefix: &str) -> Arc<RedisBroker> {
    redis_broker_with(prefix, Retention::default()).await
}

/// Deletes every key under `prefix`.
pub async fn forget(prefix: &str) {
    let mut conn = redis().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .expect("DEL");
    }
}

/// A Redis of one test's own, on a random port, without persistence: for faults that would
/// harm other tests on the shared Redis (restarts, `FLUSHALL`, killing pub/sub connections).
pub struct PrivateRedis {
    /// Its port.
    pub port: u16,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    /// Starts one, failing the test if `redis-server` is not installed.
    pub async fn start() -> Self {
        for _ in 0..20 {
            let port = 20_000 + (rand::random::<u16>() % 40_000);
            let mut redis = Self { port, child: None };
            if redis.run().await {
                return redis;
            }
        }
        panic!("cannot start a private redis-server");
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server on its port; whether it answers.
    async fn run(&mut self) -> bool {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("these tests need redis-server (.ci/run installs it): {error}")
            });
        self.child = Some(child);
        for _ in 0..100 {
            if self.answers().await {
                return true;
            }
            if let Some(child) = self.child.as_mut()
                && child.try_wait().ok().flatten().is_some()
            {
                self.child = None;
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        false
    }

    async fn answers(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url().as_str()) else {
            return false;
        };
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            return false;
        };
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_ok()
    }

    /// Kills the server (SIGKILL): everything it held is lost.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub async fn restart(&mut self) {
        self.kill();
        assert!(
            self.run().await,
            "redis-server restarts on port {}",
            self.port
        );
    }

    /// A plain connection to it.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url().as_str())
            .expect("a URL")
            .get_multiplexed_async_connection()
            .await
            .expect("the private Redis answers")
    }

    /// Closes every pub/sub connection, as a network fault would; how many were closed.
    pub async fn kill_pubsub_connections(&self) -> i64 {
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut self.connection().await)
            .await
            .expect("CLIENT KILL")
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads the walkthrough `ferry-server` prints on `stdout` with development auth: its base URL
/// and its development token. The rest of stdout is read to its end in the background, so the
/// server never writes to a closed pipe.
pub async fn read_walkthrough(stdout: tokio::process::ChildStdout) -> (String, String) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut lines = BufReader::new(stdout).lines();
    let (mut base, mut token) = (None, None);
    while base.is_none() || token.is_none() {
        let line = tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line())
            .await
            .expect("the server prints its walkthrough")
            .expect("stdout")
            .expect("a line");
        if let Some(rest) = line.split("running on ").nth(1) {
            base = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(rest) = line.split("Development token (every right): ").nth(1) {
            token = Some(rest.trim().to_owned());
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (base.expect("an address"), token.expect("a token"))
}

/// Sends `value` as a text frame.
pub async fn send<S>(socket: &mut tokio_tungstenite::WebSocketStream<S>, value: serde_json::Value)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::SinkExt;
    socket
        .send(tokio_tungstenite::tungstenite::Message::text(
            value.to_string(),
        ))
        .await
        .expect("send");
}

/// The next text frame as JSON, pings answered on the way, within ten seconds.
pub async fn next_json<S>(socket: &mut tokio_tungstenite::WebSocketStream<S>) -> serde_json::Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), socket.next())
            .await
            .expect("a frame within 10 s")
        {
            Some(Ok(Message::Text(text))) => {
                let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
                if value["type"] == "ping" {
                    send(
                        socket,
                        serde_json::json!({ "type": "pong", "nonce": value["nonce"] }),
                    )
                    .await;
                    continue;
                }
                return value;
            }
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// ferry-server running in the test's own process: the example application, the in-memory
/// broker and the given auth, on a random loopback port.
pub struct InProcess {
    /// The server's shared state.
    pub server: Arc<ferry_server::Server<ferry_server::broker::MemoryBroker>>,
    /// Where it listens.
    pub address: std::net::SocketAddr,
    /// Sending (or dropping) it starts the graceful stop.
    pub stop: tokio::sync::oneshot::Sender<()>,
    /// The serving task, which ends once the stop has drained.
    pub done: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts [`InProcess`] with `flags` and `auth`, serving TLS with `tls` when given (and with
/// the TLS files of `flags` otherwise, as `ferry_server::serve` does).
pub async fn in_process(
    flags: ferry_server::config::Flags,
    auth: ferry_server::auth::Auth,
    tls: Option<Arc<ferry_server::transport::Tls>>,
) -> InProcess {
    use ferry_server::broker::MemoryBroker;
    let config = ferry_server::config::Config::resolve(flags).expect("valid test configuration");
    let broker = MemoryBroker::new(config.memory_broker());
    let server = ferry_server::Server::new(
        config,
        auth,
        broker,
        ferry_server::namespaces::Namespaces::example_app(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let address = listener.local_addr().expect("an address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stopped = async move {
        let _ = stopped.await;
    };
    let done = match tls {
        None => tokio::spawn(ferry_server::serve(server.clone(), listener, stopped)),
        Some(tls) => tokio::spawn(ferry_server::serve_with_tls(
            server.clone(),
            listener,
            Some(tls),
            stopped,
        )),
    };
    InProcess {
        server,
        address,
        stop,
        done,
    }
}
