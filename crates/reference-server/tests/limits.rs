//! ferry-server's resource limits over real loopback sockets: the token buckets per caller on
//! the ticket and publish endpoints (FERRY-RATE-4).

use std::sync::Arc;
use std::time::Duration;

use ferry_server::auth::Auth;
use ferry_server::broker::MemoryBroker;
use ferry_server::config::{Config, Flags};
use ferry_server::namespaces::Namespaces;
use ferry_server::{Server, serve};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// Two callers, each a backend that may publish to `project:alpha:*`.
const TOKENS: &str = r#"
[[tokens]]
token = "t-ada-0123456789"
user = "ada"
backend = true
permissions = [{ pattern = "project:alpha:*", read = true, write = true }]

[[tokens]]
token = "t-bob-0123456789"
user = "bob"
backend = true
permissions = [{ pattern = "project:alpha:*", read = true, write = true }]
"#;

const ADA: &str = "t-ada-0123456789";
const BOB: &str = "t-bob-0123456789";

/// A server on a random loopback port with the two callers of [`TOKENS`].
struct Running {
    base: String,
    _server: Arc<Server<MemoryBroker>>,
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Running {
    async fn start(flags: Flags) -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let tokens = dir.path().join("tokens.toml");
        std::fs::write(&tokens, TOKENS).expect("write the tokens file");
        let auth = Auth::from_file(&tokens).expect("a valid tokens file");
        let config = Config::resolve(flags).expect("valid test configuration");
        let broker = MemoryBroker::new(config.memory_broker());
        let server = Server::new(config, auth, broker, Namespaces::example_app());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("an address"));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(serve(server.clone(), listener, async move {
            let _ = stopped.await;
        }));
        Self {
            base,
            _server: server,
            _stop: stop,
            _dir: dir,
            http: reqwest::Client::new(),
        }
    }

    async fn ticket(&self, token: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/tickets", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("the ticket endpoint answers")
    }

    async fn publish(&self, token: &str, key: String) -> reqwest::Response {
        let body = json!({
            "channel": "project:alpha:tasks",
            "idempotency_key": key,
            "payload": { "task_id": "T-1", "status": "running", "progress": 0.5, "assignee": null },
        });
        self.http
            .post(format!("{}/v1/publish", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("the publish endpoint answers")
    }

    async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("the metrics endpoint answers")
            .text()
            .await
            .expect("text")
    }
}

/// What a 429 said: its `retry_after_ms` and `Retry-After` header, checked against each other
/// and against the error table (FERRY-ERROR-1, FERRY-RATE-4).
async fn rate_limited(response: reqwest::Response) -> u64 {
    assert_eq!(response.status(), 429);
    let header: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After header in whole seconds");
    let body: Value = response.json().await.expect("a JSON error body");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert_eq!(body["error"]["retryable"], true, "{body}");
    let wait = body["error"]["retry_after_ms"]
        .as_u64()
        .expect("retry_after_ms on rate_limited");
    assert!(wait >= 1, "{body}");
    assert_eq!(header, wait.div_ceil(1000).max(1), "Retry-After rounds up");
    wait
}

/// Sends requests until the first 429 and returns how many succeeded before it, with the
/// seconds the run took: at least the burst, and at most the burst plus what the bucket
/// refilled meanwhile.
async fn until_limited<F, Fut>(mut request: F, success: u16) -> (u64, reqwest::Response, f64)
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = reqwest::Response>,
{
    let started = std::time::Instant::now();
    for n in 0..1000 {
        let response = request(n).await;
        if response.status() == 429 {
            return (n, response, started.elapsed().as_secs_f64());
        }
        assert_eq!(response.status(), success, "request {n}");
    }
    panic!("no 429 in 1000 requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ticket_past_the_burst_gets_429_with_retry_after_another_caller_does_not_and_the_bucket_refills()
 {
    let running = Running::start(Flags {
        auth: Some(ferry_server::config::AuthMode::Tokens),
        tokens_file: Some("unused".into()),
        ticket_rate_limit_per_second: Some(1),
        ticket_rate_limit_burst: Some(3),
        ..Flags::default()
    })
    .await;
    let (granted, refused, seconds) = until_limited(|_| running.ticket(ADA), 201).await;
    assert!(
        (3..=3 + seconds.ceil() as u64).contains(&granted),
        "{granted} tickets in {seconds} s before the first 429"
    );
    let wait = rate_limited(refused).await;
    assert!(wait <= 1000, "one token a second: {wait} ms");

    // Another caller has a bucket of its own.
    for n in 0..3 {
        assert_eq!(running.ticket(BOB).await.status(), 201, "bob's ticket {n}");
    }

    // Once the wait is over the bucket holds a token again.
    tokio::time::sleep(Duration::from_millis(wait)).await;
    assert_eq!(running.ticket(ADA).await.status(), 201);

    let metrics = running.metrics().await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("ferry_http_rate_limited_total{endpoint=\"issue_ticket\"}"))
        .unwrap_or_else(|| panic!("no rate-limited counter in:\n{metrics}"));
    let counted: u64 = line
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a count");
    assert!(counted >= 1, "{line}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ferry_rejections_total{code=\"rate_limited\"}")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_publishing_past_its_burst_gets_429_and_stores_nothing_while_another_publishes() {
    let running = Running::start(Flags {
        auth: Some(ferry_server::config::AuthMode::Tokens),
        tokens_file: Some("unused".into()),
        publish_rate_limit_per_second: Some(1),
        publish_rate_limit_burst: Some(2),
        ..Flags::default()
    })
    .await;
    let (accepted, refused, seconds) =
        until_limited(|n| running.publish(ADA, format!("ada-{n}")), 200).await;
    assert!(
        (2..=2 + seconds.ceil() as u64).contains(&accepted),
        "{accepted} publishes in {seconds} s before the first 429"
    );
    let wait = rate_limited(refused).await;

    // The refused publish was not stored: the channel's head is the accepted count.
    let history: Value = running
        .http
        .get(format!(
            "{}/v1/history?channel=project:alpha:tasks",
            running.base
        ))
        .bearer_auth(BOB)
        .send()
        .await
        .expect("the history endpoint answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(history["head"]["seq"], accepted, "{history}");

    for n in 0..2 {
        let response = running.publish(BOB, format!("bob-{n}")).await;
        assert_eq!(response.status(), 200, "bob's publish {n}");
    }
    tokio::time::sleep(Duration::from_millis(wait)).await;
    assert_eq!(running.publish(ADA, "ada-after".into()).await.status(), 200);
}

#[test]
fn a_rate_of_zero_is_refused_at_start_and_names_its_field() {
    for (flags, field) in [
        (
            Flags {
                ticket_rate_limit_per_second: Some(0),
                ..Flags::default()
            },
            "ticket_rate_limit_per_second",
        ),
        (
            Flags {
                publish_rate_limit_burst: Some(0),
                ..Flags::default()
            },
            "publish_rate_limit_burst",
        ),
    ] {
        let error = Config::resolve(flags).expect_err("zero").to_string();
        assert!(error.starts_with(field), "{error}");
    }
}
