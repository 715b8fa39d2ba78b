//! ferry-server's resource limits: the token buckets per caller on the ticket and publish
//! endpoints (FERRY-RATE-4) and the cap on a node's history bytes (FERRY-RESUME-7), over real
//! loopback sockets and, for the cap's timing, through the broker with a virtual clock.

mod common;

use std::sync::Arc;
use std::time::Duration;

use ferry_protocol::replay::Retention;
use ferry_protocol::{ChannelName, Payload, Timestamp};
use ferry_server::Server;
use ferry_server::auth::Auth;
use ferry_server::broker::{Broker, BrokerError, MemoryBroker, MemoryBrokerConfig};
use ferry_server::config::{Config, Flags};
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
        let common::InProcess {
            server,
            address,
            stop,
            ..
        } = common::in_process(flags, auth, None).await;
        let base = format!("http://{address}");
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
async fn until_limited<F, Fut>(request: F, success: u16) -> (u64, reqwest::Response, f64)
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = reqwest::Response>,
{
    until_limited_by(request, success, 429).await
}

/// Sends requests until the first answered `refusal`; as [`until_limited`].
async fn until_limited_by<F, Fut>(
    mut request: F,
    success: u16,
    refusal: u16,
) -> (u64, reqwest::Response, f64)
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = reqwest::Response>,
{
    let started = std::time::Instant::now();
    for n in 0..1000 {
        let response = request(n).await;
        if response.status() == refusal {
            return (n, response, started.elapsed().as_secs_f64());
        }
        assert_eq!(response.status(), success, "request {n}");
    }
    panic!("no {refusal} in 1000 requests");
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

/// A publish of a 100-byte payload to `channel` at `now` (milliseconds).
async fn publish_at(
    broker: &MemoryBroker,
    channel: &str,
    key: &str,
    now: u64,
) -> Result<ferry_protocol::PublishResponse, BrokerError> {
    let channel: ChannelName = channel.parse().expect("a valid channel");
    broker
        .publish(
            &channel,
            key.parse().expect("a valid key"),
            Payload::from(json!({ "pad": "x".repeat(90) })),
            Timestamp::from_millis(now),
            0,
        )
        .await
}

/// A memory broker that keeps 1000 events per channel and every event of the last second, and
/// at most `max_history_bytes` of history.
fn capped_broker(max_history_bytes: usize) -> MemoryBroker {
    MemoryBroker::new(MemoryBrokerConfig {
        max_history_bytes,
        ..MemoryBrokerConfig::new(Retention {
            max_events: 1000,
            max_age: Duration::from_millis(1000),
        })
    })
}

/// Publishes to `channel` at `now` until the cap refuses one; the number stored.
async fn fill(broker: &MemoryBroker, channel: &str, now: u64) -> u64 {
    for n in 0..10_000u64 {
        match publish_at(broker, channel, &format!("{channel}-{n}"), now).await {
            Ok(ack) => assert_eq!(ack.position.seq.get(), n + 1),
            Err(refusal) => {
                assert!(
                    matches!(refusal, BrokerError::HistoryFull { max: 4096 }),
                    "{refusal:?}"
                );
                assert_eq!(refusal.code(), ferry_protocol::ErrorCode::Unavailable);
                return n;
            }
        }
    }
    panic!("no refusal in 10 000 publishes");
}

#[tokio::test]
async fn history_bytes_stay_under_the_cap_and_a_young_event_is_never_shed_to_make_room() {
    let broker = capped_broker(4096);
    let stored = fill(&broker, "project:alpha:tasks", 0).await;
    assert!(stored >= 5, "{stored} events of about 300 bytes in 4096");
    assert!(broker.history_bytes() <= 4096, "{}", broker.history_bytes());
    let held = broker.history_bytes();

    // Half a window later nothing has aged: another channel is refused, and the first
    // channel's events are all still there for a resume from its start (FERRY-RESUME-7).
    let refused = publish_at(&broker, "project:beta:tasks", "b-0", 500).await;
    assert!(
        matches!(refused, Err(BrokerError::HistoryFull { .. })),
        "{refused:?}"
    );
    assert_eq!(
        broker.history_bytes(),
        held,
        "a refused publish stores nothing"
    );
    let channel: ChannelName = "project:alpha:tasks".parse().expect("valid");
    let page = broker
        .history(&channel, None, Some(0), 1000, Timestamp::from_millis(500))
        .await
        .expect("a page");
    assert!(page.complete, "{page:?}");
    assert_eq!(page.events.len() as u64, stored);
}

#[tokio::test]
async fn at_the_cap_events_past_the_window_are_shed_and_a_resume_from_before_them_is_told() {
    let broker = capped_broker(4096);
    let stored = fill(&broker, "project:alpha:tasks", 0).await;

    // Past the window the first channel's events are no longer owed (FERRY-RESUME-3 keeps the
    // last 1000 of a quiet channel only while the cap allows): a new channel gets room.
    let ack = publish_at(&broker, "project:beta:tasks", "b-0", 1001)
        .await
        .expect("room was made from the aged events");
    assert_eq!(ack.position.seq.get(), 1);
    assert!(
        broker.history_bytes() <= 4096 / 2,
        "{}",
        broker.history_bytes()
    );

    // A resume from before the shed events gets history_exceeded, never a gap.
    let channel: ChannelName = "project:alpha:tasks".parse().expect("valid");
    let (head, recovery, replay) = broker
        .subscribe(
            &channel,
            Some(&ferry_protocol::StreamPosition {
                epoch: broker.epoch().clone(),
                seq: ferry_protocol::Seq(ferry_protocol::bounded::UInt::new(0).expect("0")),
            }),
            Timestamp::from_millis(1001),
        )
        .await
        .expect("a subscribe");
    assert_eq!(head.seq.get(), stored, "the head stays where it was");
    let recovery = recovery.expect("a recovery");
    assert!(!recovery.complete);
    assert_eq!(
        recovery.reason,
        Some(ferry_protocol::RecoveryGap::HistoryExceeded)
    );
    assert!(replay.is_empty());

    // The first channel goes on at the next seq.
    let next = publish_at(&broker, "project:alpha:tasks", "a-next", 1002)
        .await
        .expect("room");
    assert_eq!(next.position.seq.get(), stored + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_publish_past_the_history_cap_gets_503_unavailable_and_the_metrics_show_it() {
    let running = Running::start(Flags {
        auth: Some(ferry_server::config::AuthMode::Tokens),
        tokens_file: Some("unused".into()),
        max_history_bytes: Some(4096),
        ..Flags::default()
    })
    .await;
    let (accepted, refused, _) =
        until_limited_by(|n| running.publish(ADA, format!("ada-{n}")), 200, 503).await;
    assert!(accepted >= 5, "{accepted} publishes before the cap");
    let body: Value = refused.json().await.expect("a JSON error body");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert_eq!(body["error"]["retryable"], true, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("4096 bytes of history")),
        "{body}"
    );
    let metrics = running.metrics().await;
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
    };
    assert!(value("ferry_history_bytes") <= 4096, "{metrics}");
    assert!(value("ferry_history_bytes") > 0, "{metrics}");
    assert_eq!(value("ferry_history_full_total"), 1, "{metrics}");
}
