//! ferry-client against a real server over loopback: tickets, reconnect, resume, dedup.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ferry_client::{ChannelEvent, Client, Handler, PublishError, StopReason};
use ferry_protocol::ClientState;
use ferry_protocol::Resumption;
use parking_lot::Mutex;
use serde_json::json;
use support::TestServer;

const CHANNELS: [&str; 3] = [
    "project:alpha:tasks",
    "agent:reviewer:activity",
    "daemon:ws-42:output",
];

/// Everything the handlers saw, by channel.
type Log = Arc<Mutex<BTreeMap<String, Vec<ChannelEvent>>>>;

fn recorder(log: &Log, channel: &str) -> Handler {
    let (log, channel) = (log.clone(), channel.to_owned());
    Handler::new(move |event| {
        log.lock()
            .entry(channel.clone())
            .or_default()
            .push(event.clone())
    })
}

fn seqs(log: &Log, channel: &str) -> Vec<u64> {
    log.lock()
        .get(channel)
        .map(|events| {
            events
                .iter()
                .filter_map(|e| {
                    if let ChannelEvent::Event(e) = e {
                        Some(e.position.seq.get())
                    } else {
                        None
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

fn count(log: &Log, channel: &str, pick: impl Fn(&ChannelEvent) -> bool) -> usize {
    log.lock()
        .get(channel)
        .map(|events| events.iter().filter(|e| pick(e)).count())
        .unwrap_or(0)
}

/// Polls `condition` every 10 ms for up to `limit`.
async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cut_off_mid_stream_resumes_every_channel_with_no_duplicate_and_no_gap() {
    let server = TestServer::start(100_000, 120_000).await;
    let client = Client::builder(&server.url, &server.token)
        .seed(7)
        .connect();
    let log: Log = Arc::default();
    for channel in CHANNELS {
        client
            .subscribe(channel.parse().expect("valid"), &recorder(&log, channel))
            .expect("running");
    }
    assert!(
        client.wait_active(Duration::from_secs(10)).await,
        "{:?}",
        client.state()
    );
    assert!(
        eventually(Duration::from_secs(10), || CHANNELS.iter().all(|c| count(
            &log,
            c,
            |e| matches!(e, ChannelEvent::Subscribed(_))
        ) == 1))
        .await
    );

    const EVENTS: u64 = 600;
    let mut changes = client.state_changes();
    for i in 1..=EVENTS {
        for channel in CHANNELS {
            server
                .publish(channel, &format!("{channel}-{i}"), json!({ "i": i }))
                .await;
        }
        if i % 150 == 0 {
            // Cut a live connection each time, mid-stream, and wait until the client noticed.
            assert!(client.wait_active(Duration::from_secs(10)).await);
            server.cut_off_everyone();
            let noticed = tokio::time::timeout(
                Duration::from_secs(10),
                client.wait_for(|s| *s != ClientState::Active),
            )
            .await;
            assert!(noticed.is_ok(), "the client noticed the cut");
        }
        if i % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }
    let all_delivered = eventually(Duration::from_secs(20), || {
        CHANNELS
            .iter()
            .all(|c| seqs(&log, c).len() as u64 >= EVENTS)
    })
    .await;
    for channel in CHANNELS {
        let seen = seqs(&log, channel);
        assert!(
            all_delivered,
            "{channel}: {} of {EVENTS} events after 20 s",
            seen.len()
        );
        assert_eq!(
            seen,
            (1..=EVENTS).collect::<Vec<_>>(),
            "{channel}: every event once, in order (FERRY-EVENT-3)"
        );
        assert_eq!(
            count(&log, channel, |e| matches!(e, ChannelEvent::Incomplete(_))),
            0,
            "{channel}: nothing was lost, so no gap is reported"
        );
        let subscribed = count(&log, channel, |e| matches!(e, ChannelEvent::Subscribed(_)));
        let resumed = count(&log, channel, |e| {
            matches!(e, ChannelEvent::Subscribed(Resumption::Complete { .. }))
        });
        assert!(
            resumed >= 1 && resumed == subscribed - 1,
            "{channel}: every re-subscribe resumed completely ({resumed} of {subscribed})"
        );
    }
    let backoffs = std::iter::from_fn(|| changes.try_recv().ok())
        .filter(|s| matches!(s, ClientState::BackingOff { .. }))
        .count();
    assert!(backoffs >= 1, "the client reconnected after the cuts");
    client.close().await;
    assert_eq!(client.state(), ClientState::Stopped(StopReason::Requested));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_resolve_on_their_ack_and_are_stored_once_across_reconnects() {
    let server = TestServer::start(10_000, 120_000).await;
    let client = Client::builder(&server.url, &server.token)
        .seed(8)
        .connect();
    assert!(client.wait_active(Duration::from_secs(10)).await);
    let channel: ferry_protocol::ChannelName = "project:alpha:tasks".parse().expect("valid");
    let first = client
        .publish(channel.clone(), json!({ "task_id": "T-1" }))
        .await
        .expect("acknowledged");
    assert_eq!(first.position.seq.get(), 1);
    assert!(!first.duplicate);

    // Many publishes in flight while the connection is cut twice: every one is acknowledged,
    // and each is stored exactly once thanks to its idempotency key (FERRY-PUBLISH-3).
    let mut pending = Vec::new();
    for i in 0..60 {
        let (client, channel) = (client.clone(), channel.clone());
        pending.push(tokio::spawn(async move {
            client.publish(channel, json!({ "i": i })).await
        }));
        if i == 20 || i == 40 {
            tokio::time::sleep(Duration::from_millis(2)).await;
            server.cut_off_everyone();
        }
    }
    let mut positions = Vec::new();
    for publish in pending {
        let ack = publish.await.expect("the task ran").expect("acknowledged");
        positions.push(ack.position.seq.get());
    }
    positions.sort_unstable();
    positions.dedup();
    assert_eq!(positions.len(), 60, "each publish got its own position");
    assert_eq!(
        server.head("project:alpha:tasks").await,
        61,
        "nothing was stored twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_in_flight_with_one_key_each_get_their_own_answer() {
    let server = TestServer::start(10_000, 120_000).await;
    let client = Client::builder(&server.url, &server.token)
        .seed(9)
        .connect();
    assert!(client.wait_active(Duration::from_secs(10)).await);
    let channel: ferry_protocol::ChannelName = "project:alpha:tasks".parse().expect("valid");
    let key: ferry_protocol::IdempotencyKey = "order-17".parse().expect("valid");
    // An application retrying before the first answer came: both calls resolve, to the same
    // stored event (FERRY-DEDUP-1), and neither is told the client stopped.
    let (a, b) = tokio::join!(
        client.publish_with_key(channel.clone(), json!({ "n": 1 }), Some(key.clone())),
        client.publish_with_key(channel.clone(), json!({ "n": 1 }), Some(key)),
    );
    let (a, b) = (
        a.expect("first acknowledged"),
        b.expect("second acknowledged"),
    );
    assert_eq!(a.message_id, b.message_id);
    assert_eq!(a.position, b.position);
    assert!(
        a.duplicate != b.duplicate,
        "exactly one of them stored the event"
    );
    assert_eq!(server.head("project:alpha:tasks").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_history_is_reported_as_incomplete_not_skipped() {
    let server = TestServer::start(5, 0).await;
    let client = Client::builder(&server.url, &server.token)
        .seed(9)
        .connect();
    let log: Log = Arc::default();
    client
        .subscribe(
            CHANNELS[0].parse().expect("valid"),
            &recorder(&log, CHANNELS[0]),
        )
        .expect("running");
    assert!(client.wait_active(Duration::from_secs(10)).await);
    assert!(
        eventually(Duration::from_secs(10), || count(
            &log,
            CHANNELS[0],
            |e| matches!(e, ChannelEvent::Subscribed(_))
        ) == 1)
        .await
    );
    server.publish(CHANNELS[0], "k-0", json!(0)).await;
    assert!(
        eventually(Duration::from_secs(10), || seqs(&log, CHANNELS[0])
            == vec![1])
        .await
    );
    // Cut off, then more events than the channel keeps are published before the client is back.
    server.cut_off_everyone();
    for i in 1..=50 {
        server
            .publish(CHANNELS[0], &format!("k-{i}"), json!(i))
            .await;
    }
    assert!(
        eventually(Duration::from_secs(10), || count(
            &log,
            CHANNELS[0],
            |e| matches!(e, ChannelEvent::Incomplete(_))
        ) == 1)
        .await,
        "FERRY-RESUME-4: {:?}",
        log.lock()
    );
    server.publish(CHANNELS[0], "k-51", json!(51)).await;
    assert!(
        eventually(Duration::from_secs(10), || seqs(&log, CHANNELS[0]).last()
            == Some(&52))
        .await,
        "live events continue after the hole"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_registered_twice_is_called_once_per_event() {
    let server = TestServer::start(100, 120_000).await;
    let client = Client::builder(&server.url, &server.token).connect();
    let calls = Arc::new(Mutex::new(0u32));
    let counted = calls.clone();
    let handler = Handler::new(move |event| {
        if matches!(event, ChannelEvent::Event(_)) {
            *counted.lock() += 1;
        }
    });
    let channel: ferry_protocol::ChannelName = CHANNELS[1].parse().expect("valid");
    client
        .subscribe(channel.clone(), &handler)
        .expect("running");
    client
        .subscribe(channel.clone(), &handler.clone())
        .expect("running");
    assert!(client.wait_active(Duration::from_secs(10)).await);
    for i in 0..3 {
        client
            .publish(channel.clone(), json!(i))
            .await
            .expect("acknowledged");
    }
    assert!(eventually(Duration::from_secs(5), || *calls.lock() >= 3).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(*calls.lock(), 3, "FERRY-EVENT-5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_credential_stops_the_client_and_says_why() {
    let server = TestServer::start(100, 120_000).await;
    let client = Client::builder(&server.url, "not-the-token").connect();
    let state = tokio::time::timeout(
        Duration::from_secs(10),
        client.wait_for(|s| matches!(s, ClientState::Stopped(_))),
    )
    .await
    .expect("stops");
    assert_eq!(state, ClientState::Stopped(StopReason::CredentialRejected));
    let error = client
        .publish("a:b".parse().expect("valid"), json!(1))
        .await
        .expect_err("stopped");
    assert_eq!(error, PublishError::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_publish_fails_locally_and_the_session_stays_open() {
    let server = TestServer::start(100, 120_000).await;
    let client = Client::builder(&server.url, &server.token).connect();
    assert!(client.wait_active(Duration::from_secs(10)).await);
    let channel: ferry_protocol::ChannelName = CHANNELS[2].parse().expect("valid");
    let error = client
        .publish(channel.clone(), json!("x".repeat(10_000)))
        .await
        .expect_err("above the advertised 8192 bytes");
    assert!(
        matches!(error, PublishError::TooLarge { max: 8_192, .. }),
        "{error}"
    );
    assert_eq!(client.state(), ClientState::Active, "FERRY-SIZE-2");
    client
        .publish(channel, json!("small"))
        .await
        .expect("the session still works");
}
