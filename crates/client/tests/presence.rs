//! ferry-client's presence and holds against a real server over loopback: members read after
//! every subscribed reply and kept up to date (FERRY-PRESENCE-6), a reconnect that causes no
//! leave and no join (FERRY-PRESENCE-4), and a hold taken over (FERRY-HOLD-2, FERRY-HOLD-5).

mod support;

use std::sync::Arc;
use std::time::Duration;

use ferry_client::{ChannelEvent, Client, Handler, StopReason, SubscribeOptions};
use ferry_protocol::ClientState;
use parking_lot::Mutex;
use support::TestServer;

const ROOM: &str = "project:alpha:approvals";
const OUTPUT: &str = "daemon:ws-42:output";

type Log = Arc<Mutex<Vec<ChannelEvent>>>;

fn recorder(log: &Log) -> Handler {
    let log = log.clone();
    Handler::new(move |event| log.lock().push(event.clone()))
}

/// Polls `condition` every 10 ms for up to 20 s.
async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}

/// The member lists the handler got, as (user, sessions).
fn member_lists(log: &Log) -> Vec<Vec<(String, u64)>> {
    log.lock()
        .iter()
        .filter_map(|event| match event {
            ChannelEvent::Members(members) => Some(
                members
                    .iter()
                    .map(|m| (m.user.to_string(), m.sessions.get()))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn presence_events(log: &Log) -> usize {
    log.lock()
        .iter()
        .filter(|event| matches!(event, ChannelEvent::Presence(_)))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_read_after_every_subscribe_and_a_reconnect_is_neither_a_leave_nor_a_join() {
    let server = TestServer::example_app(100, 120_000).await;
    let tracking = SubscribeOptions {
        members: true,
        ..SubscribeOptions::default()
    };
    let first = Client::builder(&server.url, &server.token)
        .seed(1)
        .connect();
    let log: Log = Arc::default();
    first
        .subscribe_with(
            ROOM.parse().expect("a channel"),
            &recorder(&log),
            tracking.clone(),
        )
        .expect("running");
    assert!(
        eventually(|| member_lists(&log).len() == 1).await,
        "{:?}",
        log.lock()
    );
    assert_eq!(member_lists(&log)[0].len(), 1, "the client's own user");
    let user = member_lists(&log)[0][0].0.clone();

    // A second tab of the same user: no presence event, and the next read counts two sessions.
    let second = Client::builder(&server.url, &server.token)
        .seed(2)
        .connect();
    let other: Log = Arc::default();
    second
        .subscribe_with(
            ROOM.parse().expect("a channel"),
            &recorder(&other),
            tracking,
        )
        .expect("running");
    assert!(eventually(|| member_lists(&other).len() == 1).await);
    assert_eq!(member_lists(&other)[0], vec![(user.clone(), 2)]);

    // Both cut off without a close frame: both reconnect and read the members again, and the
    // lapsing sessions of before cause no leave (their user is still present) and no join.
    let before = presence_events(&log);
    server.cut_off_everyone();
    assert!(eventually(|| member_lists(&log).len() == 2 && member_lists(&other).len() == 2).await);
    let sessions = member_lists(&log)[1][0].1;
    assert!(
        sessions >= 2,
        "the sessions cut off still count until they lapse: {sessions}"
    );
    assert_eq!(presence_events(&log), before, "{:?}", log.lock());
    first.close().await;
    second.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_whose_hold_is_taken_over_stops_and_says_why() {
    let server = TestServer::example_app(100, 120_000).await;
    let hold = SubscribeOptions {
        hold: true,
        ..SubscribeOptions::default()
    };
    let output = OUTPUT.parse().expect("a channel");
    let first = Client::builder(&server.url, &server.token)
        .seed(3)
        .connect();
    let log: Log = Arc::default();
    first
        .subscribe_with(output, &recorder(&log), hold.clone())
        .expect("running");
    assert!(
        eventually(|| log
            .lock()
            .iter()
            .any(|e| matches!(e, ChannelEvent::Subscribed(_))))
        .await
    );
    // Cut off, the daemon takes its own hold back with its fence and goes on publishing.
    server.cut_off_everyone();
    assert!(
        eventually(|| log
            .lock()
            .iter()
            .filter(|e| matches!(e, ChannelEvent::Subscribed(_)))
            .count()
            == 2)
        .await
    );
    let chunk =
        serde_json::json!({ "type": "chunk", "run_id": "r-1", "stream": "stdout", "data": "x" });
    first
        .publish(OUTPUT.parse().expect("a channel"), chunk.clone())
        .await
        .expect("the holder publishes after its reconnect");

    let second = Client::builder(&server.url, &server.token)
        .seed(4)
        .connect();
    second
        .subscribe_with(
            OUTPUT.parse().expect("a channel"),
            &Handler::new(|_| {}),
            hold,
        )
        .expect("running");
    let stopped = first
        .wait_for(|state| matches!(state, ClientState::Stopped(_)))
        .await;
    assert!(
        matches!(
            stopped,
            ClientState::Stopped(StopReason::Closed { code: 4412, .. })
        ),
        "{stopped:?}"
    );
    second
        .publish(OUTPUT.parse().expect("a channel"), chunk)
        .await
        .expect("the new holder publishes");
    second.close().await;
}
