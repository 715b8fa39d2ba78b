//! The client session against a scripted server, on a virtual clock.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::tables::{CLOSE_CODES, rule};

const INTERVAL_MS: u64 = 2_000;
const TIMEOUT_MS: u64 = 1_000;
const BASE_MS: u64 = 100;
const CAP_MS: u64 = 1_600;
const MAX_BYTES: u64 = 4_096;

fn welcome(max_attempts: u64) -> Value {
    json!({
        "type": "welcome", "protocol": "ferry.v1", "session_id": "s-1", "user": "ada",
        "permissions": [{ "pattern": "**", "read": true, "write": true }],
        "heartbeat": { "interval_ms": INTERVAL_MS, "timeout_ms": TIMEOUT_MS },
        "limits": { "max_message_bytes": MAX_BYTES, "max_subscriptions": 100, "rate_limit": { "messages_per_second": 10, "burst": 20 } },
        "reconnect": { "base_ms": BASE_MS, "factor": 2, "cap_ms": CAP_MS, "jitter": 0.5, "max_attempts": max_attempts, "reset_after_ms": 5_000 },
        "resume": { "window_ms": 120_000, "max_events": 1_000 }
    })
}

/// The reconnect policy of [`welcome`].
fn advertised_policy(max_attempts: u64) -> BackoffPolicy {
    match serde_json::from_value::<ServerMessage>(welcome(max_attempts)).expect("a valid welcome") {
        ServerMessage::Welcome(w) => BackoffPolicy::from(&w.reconnect),
        other => panic!("{other:?}"),
    }
}

fn channel(name: &str) -> ChannelName {
    name.parse().expect("a valid channel name")
}

fn position(epoch: &str, seq: u64) -> Value {
    json!({ "epoch": epoch, "seq": seq })
}

fn event(ch: &str, epoch: &str, seq: u64) -> Value {
    json!({ "type": "event", "channel": ch, "message_id": format!("m-{epoch}-{seq}"), "position": position(epoch, seq), "published_at_ms": 1_000, "payload": { "n": seq } })
}

/// A client session and the scripted server around it.
struct Harness {
    session: ClientSession,
    now: Timestamp,
    connection: Option<ConnectionId>,
    /// Every message the client sent, decoded, with the connection it went on.
    sent: Vec<(ConnectionId, ClientMessage)>,
    /// Every transmit, in order.
    transmits: Vec<Transmit>,
    events: Vec<ClientEvent>,
    tickets: u64,
    /// The `max_attempts` the scripted server advertises.
    max_attempts: u64,
}

impl Harness {
    fn new(seed: u64) -> Self {
        Self {
            session: ClientSession::new(ClientConfig::default(), seed),
            now: Timestamp::ZERO,
            connection: None,
            sent: Vec::new(),
            transmits: Vec::new(),
            events: Vec::new(),
            tickets: 0,
            max_attempts: 20,
        }
    }

    /// Drains transmits and events, answering ticket fetches and connects as a healthy server.
    fn pump(&mut self) {
        while let Some(transmit) = self.session.poll_transmit() {
            self.transmits.push(transmit.clone());
            match transmit {
                Transmit::FetchTicket => {
                    self.tickets += 1;
                    let ticket = Ticket::try_from(format!("ticket-{:020}", self.tickets))
                        .expect("a valid ticket");
                    self.session.handle_ticket(Ok(ticket), self.now);
                }
                Transmit::Connect { connection, .. } => {
                    self.connection = Some(connection);
                    self.session.handle_connected(connection, self.now);
                }
                Transmit::Send { connection, text } => {
                    assert!(
                        text.len() as u64 <= self.session.max_message_bytes() as u64,
                        "{}: a frame above the maximum left the client",
                        rule::FERRY_SIZE_1
                    );
                    let message: ClientMessage =
                        serde_json::from_str(&text).expect("the client sends valid messages");
                    self.sent.push((connection, message));
                }
                Transmit::Close { .. } => self.connection = None,
            }
        }
        while let Some(event) = self.session.poll_event() {
            self.events.push(event);
        }
    }

    fn connect(&mut self) {
        self.session.connect(self.now);
        self.pump();
    }

    fn server(&mut self, message: Value) {
        let text = message.to_string();
        let connection = self.connection.expect("connected");
        self.session
            .handle_frame(connection, Frame::Text(text.as_bytes()), self.now);
        self.pump();
    }

    fn welcome(&mut self) {
        self.server(welcome(self.max_attempts));
    }

    fn close(&mut self, code: Option<u16>) {
        let connection = self.connection.take().expect("connected");
        self.session
            .handle_closed(connection, code, "scripted", self.now);
        self.pump();
    }

    /// Moves the clock to `to`, firing every timeout on the way.
    fn advance(&mut self, to: Timestamp) {
        while let Some(at) = self.session.poll_timeout().filter(|at| *at <= to) {
            self.now = self.now.max(at);
            self.session.handle_timeout(self.now);
            self.pump();
        }
        self.now = to;
    }

    /// Keeps the session welcomed for `ms`, with a ping every second so the heartbeat holds.
    fn stay_welcomed(&mut self, ms: u64) {
        let end = self.now + Duration::from_millis(ms);
        while self.now < end {
            let next = (self.now + Duration::from_millis(1_000)).min(end);
            self.advance(next);
            self.server(json!({ "type": "ping", "nonce": "n" }));
        }
    }

    /// Runs the clock until the session is active again (or stopped).
    fn until_active(&mut self) {
        for _ in 0..100 {
            match self.session.state() {
                ClientState::Active | ClientState::Stopped(_) => return,
                ClientState::AwaitingWelcome => self.welcome(),
                _ => {
                    let at = self
                        .session
                        .poll_timeout()
                        .expect("a timer while not active");
                    self.advance(at);
                }
            }
        }
        panic!("the session never became active");
    }

    fn sent_on(&self, connection: ConnectionId) -> Vec<&ClientMessage> {
        self.sent
            .iter()
            .filter(|(c, _)| *c == connection)
            .map(|(_, m)| m)
            .collect()
    }

    fn last_subscribe_id(&self, ch: &str) -> String {
        self.sent
            .iter()
            .rev()
            .find_map(|(_, m)| match m {
                ClientMessage::Subscribe(s) if s.channel.as_str() == ch => Some(s.id.to_string()),
                _ => None,
            })
            .expect("a subscribe was sent")
    }

    fn subscribed(&mut self, ch: &str, head: Value, recovery: Option<Value>) {
        let id = self.last_subscribe_id(ch);
        let mut reply = json!({ "type": "subscribed", "id": id, "channel": ch, "position": head });
        if let Some(recovery) = recovery {
            reply["recovery"] = recovery;
        }
        self.server(reply);
    }

    fn delivered(&self) -> Vec<(String, u64)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Event(ev) => {
                    Some((ev.position.epoch.to_string(), ev.position.seq.get()))
                }
                _ => None,
            })
            .collect()
    }

    fn incompletes(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, ClientEvent::Incomplete { .. }))
            .count()
    }
}

#[test]
fn a_ticket_comes_before_every_connect_and_nothing_is_sent_before_the_welcome() {
    let mut h = Harness::new(1);
    h.session.subscribe(channel("project:alpha:tasks"), 1);
    h.connect();
    assert_eq!(h.session.state(), &ClientState::AwaitingWelcome);
    assert!(
        h.sent.is_empty(),
        "{}: sent before the welcome",
        rule::FERRY_WELCOME_2
    );
    h.welcome();
    assert_eq!(h.session.state(), &ClientState::Active);
    assert!(matches!(h.sent.as_slice(), [(_, ClientMessage::Subscribe(s))] if s.from.is_none()));
    h.close(Some(close_code::INTERNAL_ERROR));
    h.until_active();
    let kinds: Vec<&str> = h
        .transmits
        .iter()
        .filter_map(|t| match t {
            Transmit::FetchTicket => Some("ticket"),
            Transmit::Connect { .. } => Some("connect"),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        ["ticket", "connect", "ticket", "connect"],
        "{}",
        rule::FERRY_TICKET_5
    );
    let tickets: Vec<&Ticket> = h
        .transmits
        .iter()
        .filter_map(|t| match t {
            Transmit::Connect { ticket, .. } => Some(ticket),
            _ => None,
        })
        .collect();
    assert_ne!(tickets[0], tickets[1], "a ticket is never reused");
}

#[test]
fn the_welcomes_limits_replace_the_defaults() {
    let mut h = Harness::new(2);
    h.connect();
    let payload = Payload::from(json!("x".repeat(MAX_BYTES as usize)));
    // Before the welcome the default maximum (131072) applies: the message is accepted.
    assert!(
        h.session
            .publish(channel("project:alpha:tasks"), payload.clone(), None, h.now)
            .is_ok()
    );
    h.welcome();
    // The welcome lowered the limit to 4096: the queued publish fails instead of being sent.
    assert!(h.events.iter().any(|e| matches!(
        e,
        ClientEvent::PublishFailed {
            failure: PublishFailure::TooLarge(_),
            ..
        }
    )));
    let error = h
        .session
        .publish(channel("project:alpha:tasks"), payload, None, h.now)
        .expect_err("above 4096 bytes");
    assert!(
        matches!(
            error,
            PublishFailure::TooLarge(EncodeError::TooLarge { max: 4096, .. })
        ),
        "{}",
        rule::FERRY_WELCOME_3
    );
    assert!(
        h.sent.is_empty(),
        "{}: an oversized message left the client",
        rule::FERRY_SIZE_2
    );
}

#[test]
fn a_message_of_exactly_the_maximum_size_is_sent_and_one_byte_more_is_not() {
    let mut h = Harness::new(3);
    h.connect();
    h.welcome();
    let ch = channel("project:alpha:tasks");
    let key = IdempotencyKey::try_from("k-1").expect("valid");
    let frame_size = |n: usize| {
        let message = ClientMessage::Publish(Publish {
            id: RequestId::try_from("r18446744073709551615").expect("valid"),
            channel: ch.clone(),
            idempotency_key: key.clone(),
            payload: Payload::from(json!("x".repeat(n))),
        });
        serde_json::to_string(&message).expect("serializes").len()
    };
    let fits = (0..MAX_BYTES as usize)
        .rev()
        .find(|n| frame_size(*n) <= MAX_BYTES as usize)
        .expect("some payload fits");
    assert!(
        h.session
            .publish(
                ch.clone(),
                Payload::from(json!("x".repeat(fits))),
                Some(key.clone()),
                h.now
            )
            .is_ok()
    );
    assert!(
        h.session
            .publish(
                ch,
                Payload::from(json!("x".repeat(fits + 1))),
                Some(key),
                h.now
            )
            .is_err()
    );
}

#[test]
fn a_handler_registered_twice_is_one_listener_and_one_subscribe() {
    let mut h = Harness::new(4);
    let ch = channel("project:alpha:tasks");
    h.session.subscribe(ch.clone(), 7);
    h.session.subscribe(ch.clone(), 7);
    h.session.subscribe(ch.clone(), 8);
    h.connect();
    h.welcome();
    assert_eq!(
        h.session.listeners(&ch).collect::<Vec<_>>(),
        vec![7, 8],
        "{}",
        rule::FERRY_EVENT_5
    );
    assert_eq!(h.sent.len(), 1, "one subscribe per channel");
    h.session.unsubscribe(&ch, 7);
    h.pump();
    assert_eq!(h.sent.len(), 1, "another listener still holds the channel");
    h.session.unsubscribe(&ch, 8);
    h.pump();
    assert!(matches!(
        h.sent.last(),
        Some((_, ClientMessage::Unsubscribe(_)))
    ));
}

#[test]
fn a_channel_subscribed_while_active_is_subscribed_at_once_and_only_by_its_first_listener() {
    let mut h = Harness::new(4);
    h.connect();
    h.welcome();
    let ch = channel("project:alpha:tasks");
    let subscribes = |h: &Harness| {
        h.sent
            .iter()
            .filter(|(_, m)| matches!(m, ClientMessage::Subscribe(_)))
            .count()
    };
    h.session.subscribe(ch.clone(), 1);
    h.pump();
    assert_eq!(subscribes(&h), 1, "the first listener subscribes at once");
    h.session.subscribe(ch, 2);
    h.pump();
    assert_eq!(subscribes(&h), 1, "{}", rule::FERRY_EVENT_5);
}

#[test]
fn states_read_as_short_phrases_for_status_lines() {
    let retrying = ClientState::BackingOff {
        until: Timestamp::ZERO,
        retry: 3,
    };
    assert_eq!(retrying.to_string(), "backing off before retry 3");
    let stopped = ClientState::Stopped(StopReason::AttemptsExhausted {
        retries: 20,
        last_failure: "connection refused".into(),
    });
    assert_eq!(
        stopped.to_string(),
        "stopped: gave up after 20 failed retries; the last: connection refused"
    );
}

#[test]
fn generated_idempotency_keys_differ_within_a_session_and_between_sessions() {
    // Two publishes with one key would be one publish to the server (FERRY-DEDUP-1).
    let keys = |seed| {
        let mut h = Harness::new(seed);
        h.connect();
        h.welcome();
        let ch = channel("project:alpha:tasks");
        (0..3)
            .map(|_| {
                h.session
                    .publish(ch.clone(), Payload::from(json!({})), None, h.now)
                    .expect("fits")
                    .to_string()
            })
            .collect::<Vec<_>>()
    };
    let mut all: Vec<String> = keys(1).into_iter().chain(keys(2)).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 6, "{all:?}");
}

#[test]
fn reconnect_delays_are_spread_uniformly_over_the_jitter_range() {
    let policy = advertised_policy(20);
    let (low, high) = policy.bounds(1);
    let span = (high - low).as_secs_f64();
    let mut quarters = [0u32; 4];
    for seed in 0..400 {
        let (state, now) = after_close(1011, None, seed);
        let ClientState::BackingOff { until, retry: 1 } = state else {
            panic!("{state:?}")
        };
        let waited = until - now;
        assert!(low <= waited && waited <= high, "{waited:?}");
        let quarter = ((waited - low).as_secs_f64() / span * 4.0) as usize;
        quarters[quarter.min(3)] += 1;
    }
    // 100 expected in each; a fixed set of seeds, so the counts are the same every run.
    assert!(
        quarters.iter().all(|&n| n >= 60),
        "{}: first delays by quarter of [{low:?}, {high:?}]: {quarters:?}",
        rule::FERRY_RECONNECT_2
    );
}

#[test]
fn after_a_reconnect_every_channel_is_resubscribed_from_its_last_delivered_position() {
    let mut h = Harness::new(5);
    for ch in [
        "project:alpha:tasks",
        "agent:reviewer:activity",
        "daemon:ws-42:output",
    ] {
        h.session.subscribe(channel(ch), 1);
    }
    h.connect();
    h.welcome();
    h.subscribed("project:alpha:tasks", position("e1", 4), None);
    h.subscribed("agent:reviewer:activity", position("e9", 0), None);
    h.server(event("project:alpha:tasks", "e1", 5));
    h.server(event("project:alpha:tasks", "e1", 6));
    // daemon:ws-42:output never got its reply: it is re-sent without a position.
    h.close(None);
    h.until_active();
    let connection = h.connection.expect("reconnected");
    let froms: BTreeMap<String, Option<StreamPosition>> = h
        .sent_on(connection)
        .into_iter()
        .filter_map(|m| match m {
            ClientMessage::Subscribe(s) => Some((s.channel.to_string(), s.from.clone())),
            _ => None,
        })
        .collect();
    let pos = |epoch: &str, seq: u64| {
        serde_json::from_value::<StreamPosition>(position(epoch, seq)).expect("valid")
    };
    assert_eq!(froms.len(), 3, "{}", rule::FERRY_SUBSCRIBE_5);
    assert_eq!(froms["project:alpha:tasks"], Some(pos("e1", 6)));
    assert_eq!(froms["agent:reviewer:activity"], Some(pos("e9", 0)));
    assert_eq!(froms["daemon:ws-42:output"], None);
}

#[test]
fn a_ping_is_answered_with_a_pong_echoing_its_nonce() {
    let mut h = Harness::new(6);
    h.connect();
    h.welcome();
    h.server(json!({ "type": "ping", "nonce": "n-42" }));
    assert!(
        matches!(h.sent.last(), Some((_, ClientMessage::Pong(p))) if p.nonce.as_str() == "n-42"),
        "{}",
        rule::FERRY_HEARTBEAT_2
    );
}

#[test]
fn a_silent_server_is_declared_dead_after_exactly_interval_plus_timeout() {
    let mut h = Harness::new(7);
    h.connect();
    h.welcome();
    h.advance(Timestamp::from_millis(500));
    h.server(json!({ "type": "ping", "nonce": "n-1" }));
    let heard = h.now;
    let dead_at = heard + Duration::from_millis(INTERVAL_MS + TIMEOUT_MS);
    assert_eq!(h.session.poll_timeout(), Some(dead_at));
    h.advance(Timestamp::from_millis(dead_at.as_millis() - 1));
    assert_eq!(
        h.session.state(),
        &ClientState::Active,
        "still alive 1 ms before the deadline"
    );
    h.advance(dead_at);
    assert!(
        matches!(h.session.state(), ClientState::BackingOff { .. }),
        "{}: {:?}",
        rule::FERRY_HEARTBEAT_4,
        h.session.state()
    );
    assert!(matches!(
        h.transmits.last(),
        Some(Transmit::Close {
            code: close_code::GOING_AWAY,
            ..
        })
    ));
}

#[test]
fn no_welcome_within_the_welcome_timeout_is_a_failed_attempt() {
    let mut h = Harness::new(8);
    h.connect();
    let timeout = Duration::from_millis(defaults::WELCOME_TIMEOUT_MS);
    h.advance(Timestamp::ZERO + timeout);
    assert!(
        matches!(h.session.state(), ClientState::BackingOff { retry: 1, .. }),
        "{}: {:?}",
        rule::FERRY_WELCOME_4,
        h.session.state()
    );
}

/// Drives a session to active, closes it with `code` (after a goodbye with `hint` if any), and
/// returns the state it lands in and when.
fn after_close(code: u16, hint: Option<u64>, seed: u64) -> (ClientState, Timestamp) {
    let mut h = Harness::new(seed);
    h.connect();
    h.welcome();
    h.advance(Timestamp::from_millis(100));
    if let Some(ms) = hint {
        h.server(json!({ "type": "goodbye", "reason": "shutdown", "message": "restarting", "retry_after_ms": ms }));
    }
    h.close(Some(code));
    (h.session.state().clone(), h.now)
}

#[test]
fn every_close_code_leads_to_its_documented_action() {
    let policy = advertised_policy(20);
    for info in CLOSE_CODES {
        for seed in 0..20 {
            let (state, now) = after_close(info.code, None, seed);
            match info.action {
                ClientAction::Stop => assert!(
                    matches!(&state, ClientState::Stopped(StopReason::Closed { code, .. }) if *code == info.code),
                    "{}: {state:?}",
                    info.code
                ),
                ClientAction::RenewTicket => assert_eq!(
                    state,
                    ClientState::BackingOff {
                        until: now,
                        retry: 1
                    },
                    "{}: renew at once",
                    info.code
                ),
                ClientAction::Backoff | ClientAction::RetryAfterHint => {
                    let ClientState::BackingOff { until, retry: 1 } = state else {
                        panic!("{}: {state:?}", info.code)
                    };
                    let (low, high) = policy.bounds(1);
                    let waited = until - now;
                    assert!(
                        low <= waited && waited <= high,
                        "{}: waited {waited:?}, not in [{low:?}, {high:?}]",
                        info.code
                    );
                }
            }
        }
    }
    // A code missing from the table is treated as backoff (FERRY-RECONNECT-1).
    assert!(matches!(
        after_close(4999, None, 1).0,
        ClientState::BackingOff { .. }
    ));
}

#[test]
fn a_goodbyes_retry_hint_is_waited_exactly() {
    for code in [close_code::SERVICE_RESTART, close_code::TRY_AGAIN_LATER] {
        let (state, now) = after_close(code, Some(7_300), 3);
        assert_eq!(
            state,
            ClientState::BackingOff {
                until: now + Duration::from_millis(7_300),
                retry: 1
            },
            "{}",
            rule::FERRY_RECONNECT_7
        );
    }
    // The hint only counts for retry_after_hint codes.
    let (state, now) = after_close(close_code::INTERNAL_ERROR, Some(7_300), 3);
    assert!(
        matches!(state, ClientState::BackingOff { until, .. } if until - now <= Duration::from_millis(BASE_MS))
    );
}

#[test]
fn a_second_renew_ticket_in_a_row_backs_off() {
    let mut h = Harness::new(9);
    h.connect();
    h.close(Some(close_code::TICKET_REJECTED));
    assert_eq!(
        h.session.state(),
        &ClientState::BackingOff {
            until: h.now,
            retry: 1
        }
    );
    h.advance(h.now);
    assert_eq!(h.session.state(), &ClientState::AwaitingWelcome);
    h.close(Some(close_code::TICKET_REJECTED));
    let ClientState::BackingOff { until, retry: 2 } = h.session.state().clone() else {
        panic!("{:?}", h.session.state())
    };
    let (low, high) = BackoffPolicy::default().bounds(2);
    assert!(
        low <= until - h.now && until - h.now <= high,
        "{}",
        rule::FERRY_RECONNECT_6
    );
}

#[test]
fn a_rejected_credential_stops_at_once() {
    let mut h = Harness::new(10);
    h.session.connect(h.now);
    assert_eq!(h.session.poll_transmit(), Some(Transmit::FetchTicket));
    h.session
        .handle_ticket(Err(TicketError::Unauthorized), h.now);
    assert_eq!(
        h.session.state(),
        &ClientState::Stopped(StopReason::CredentialRejected),
        "{}",
        rule::FERRY_RECONNECT_8
    );
}

#[test]
fn retries_stop_after_max_attempts_and_say_why() {
    let mut h = Harness::new(11);
    h.connect();
    h.server(welcome(3));
    let mut waits = Vec::new();
    h.close(None);
    loop {
        match h.session.state().clone() {
            ClientState::BackingOff { until, retry } => {
                waits.push((retry, until - h.now));
                h.advance(until);
                // Every attempt fails before the welcome.
                h.close(None);
            }
            ClientState::Stopped(reason) => {
                assert!(
                    matches!(reason, StopReason::AttemptsExhausted { retries: 3, .. }),
                    "{}: {reason:?}",
                    rule::FERRY_RECONNECT_9
                );
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        waits.iter().map(|(r, _)| *r).collect::<Vec<_>>(),
        vec![1, 2, 3],
        "{}",
        rule::FERRY_RECONNECT_4
    );
    let policy = advertised_policy(3);
    for (retry, waited) in waits {
        let (low, high) = policy.bounds(retry);
        assert!(
            low <= waited && waited <= high,
            "{}: retry {retry} waited {waited:?}",
            rule::FERRY_RECONNECT_2
        );
    }
}

#[test]
fn the_retry_count_resets_only_after_a_session_stayed_welcomed_long_enough() {
    let mut h = Harness::new(12);
    h.connect();
    h.welcome();
    h.close(None);
    h.until_active();
    // Welcomed again, but closed before reset_after (5 s): the count goes on.
    h.stay_welcomed(4_999);
    h.close(None);
    assert!(
        matches!(h.session.state(), ClientState::BackingOff { retry: 2, .. }),
        "{:?}",
        h.session.state()
    );
    h.until_active();
    h.stay_welcomed(5_000);
    h.close(None);
    assert!(
        matches!(h.session.state(), ClientState::BackingOff { retry: 1, .. }),
        "{}: {:?}",
        rule::FERRY_RECONNECT_5,
        h.session.state()
    );
}

#[test]
fn publishes_are_correlated_resent_with_their_key_and_time_out() {
    let mut h = Harness::new(13);
    h.connect();
    h.welcome();
    let ch = channel("project:alpha:tasks");
    let key = h
        .session
        .publish(
            ch.clone(),
            Payload::from(json!({ "task_id": "T-1" })),
            None,
            h.now,
        )
        .expect("fits");
    h.pump();
    let first = match h.sent.last() {
        Some((_, ClientMessage::Publish(p))) => p.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(first.idempotency_key, key);
    // The connection drops before the ack: the publish goes out again with the same key.
    h.close(None);
    h.until_active();
    let again = match h.sent.last() {
        Some((_, ClientMessage::Publish(p))) => p.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(again.idempotency_key, key, "{}", rule::FERRY_PUBLISH_3);
    h.server(json!({ "type": "published", "id": again.id.to_string(), "channel": "project:alpha:tasks", "message_id": "m-1", "position": position("e1", 1), "duplicate": true }));
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, ClientEvent::Published { key: k, .. } if *k == key)),
        "{}",
        rule::FERRY_PUBLISH_2
    );
    // A publish that gets no answer fails after the request timeout.
    let lost = h
        .session
        .publish(ch, Payload::from(json!({})), None, h.now)
        .expect("fits");
    let deadline = h.now + Duration::from_millis(defaults::REQUEST_TIMEOUT_MS);
    h.advance(deadline);
    // The heartbeat fired meanwhile; what matters is that the publish failed on time.
    assert!(h.events.iter().any(|e| matches!(e, ClientEvent::PublishFailed { key: k, failure: PublishFailure::TimedOut } if *k == lost)));
}

#[test]
fn duplicates_are_dropped_and_gaps_and_epoch_changes_are_reported() {
    let mut h = Harness::new(14);
    h.session.subscribe(channel("project:alpha:tasks"), 1);
    h.connect();
    h.welcome();
    h.subscribed("project:alpha:tasks", position("e1", 0), None);
    for seq in [1, 2, 2, 1, 3] {
        h.server(event("project:alpha:tasks", "e1", seq));
    }
    assert_eq!(
        h.delivered(),
        vec![("e1".into(), 1), ("e1".into(), 2), ("e1".into(), 3)],
        "{}",
        rule::FERRY_EVENT_3
    );
    assert_eq!(h.incompletes(), 0);
    h.server(event("project:alpha:tasks", "e1", 6));
    assert!(
        h.events.iter().any(|e| matches!(
            e,
            ClientEvent::Incomplete {
                cause: IncompleteCause::Gap {
                    expected: 4,
                    got: 6
                },
                ..
            }
        )),
        "{}",
        rule::FERRY_EVENT_4
    );
    h.server(event("project:alpha:tasks", "e2", 1));
    assert!(h.events.iter().any(|e| matches!(
        e,
        ClientEvent::Incomplete {
            cause: IncompleteCause::EpochChanged,
            ..
        }
    )));
    // Events of a channel nobody holds are not delivered.
    h.server(event("agent:x:activity", "e1", 1));
    assert_eq!(h.delivered().len(), 5);
}

#[test]
fn an_incomplete_recovery_is_reported() {
    let mut h = Harness::new(15);
    h.session.subscribe(channel("project:alpha:tasks"), 1);
    h.connect();
    h.welcome();
    h.subscribed("project:alpha:tasks", position("e1", 3), None);
    h.close(None);
    h.until_active();
    h.subscribed(
        "project:alpha:tasks",
        position("e1", 4000),
        Some(json!({ "complete": false, "replayed": 0, "reason": "history_exceeded" })),
    );
    assert!(
        h.events.iter().any(|e| matches!(
            e,
            ClientEvent::Incomplete {
                cause: IncompleteCause::Recovery(RecoveryGap::HistoryExceeded),
                ..
            }
        )),
        "{}",
        rule::FERRY_RESUME_4
    );
    // Live events continue from the head.
    h.server(event("project:alpha:tasks", "e1", 4001));
    assert_eq!(h.delivered().last(), Some(&("e1".into(), 4001)));
}

#[test]
fn input_about_an_abandoned_connection_is_ignored() {
    let mut h = Harness::new(16);
    h.connect();
    h.welcome();
    let old = h.connection.expect("connected");
    h.close(None);
    h.until_active();
    h.session
        .handle_closed(old, Some(close_code::NORMAL_CLOSURE), "late", h.now);
    h.session.handle_frame(
        old,
        Frame::Text(event("a:b", "e", 1).to_string().as_bytes()),
        h.now,
    );
    h.pump();
    assert_eq!(h.session.state(), &ClientState::Active);
}

#[test]
fn a_late_open_of_an_abandoned_connection_does_not_count_for_the_current_one() {
    let mut session = ClientSession::new(ClientConfig::default(), 18);
    let mut now = Timestamp::ZERO;
    // Fetches a ticket and returns the connection the session then asks to open.
    let attempt = |session: &mut ClientSession, now: Timestamp| {
        assert_eq!(session.poll_transmit(), Some(Transmit::FetchTicket));
        let ticket = Ticket::try_from(format!("ticket-{:020}", 1)).expect("a valid ticket");
        session.handle_ticket(Ok(ticket), now);
        match session.poll_transmit() {
            Some(Transmit::Connect { connection, .. }) => connection,
            other => panic!("{other:?}"),
        }
    };
    session.connect(now);
    let first = attempt(&mut session, now);
    // The first WebSocket fails to open; the client backs off and tries a second one.
    session.handle_closed(first, None, "refused", now);
    now = session.poll_timeout().expect("a retry is scheduled");
    session.handle_timeout(now);
    let second = attempt(&mut session, now);
    assert_eq!(session.state(), &ClientState::Connecting);
    session.handle_connected(first, now);
    assert_eq!(
        session.state(),
        &ClientState::Connecting,
        "the first is abandoned"
    );
    session.handle_connected(second, now);
    assert_eq!(session.state(), &ClientState::AwaitingWelcome);
}

/// The id of the last publish sent with `key`.
fn publish_id(h: &Harness, key: &IdempotencyKey) -> String {
    h.sent
        .iter()
        .rev()
        .find_map(|(_, m)| match m {
            ClientMessage::Publish(p) if p.idempotency_key == *key => Some(p.id.to_string()),
            _ => None,
        })
        .expect("the publish was sent")
}

fn refusal(id: &str, code: &str, retryable: bool) -> Value {
    json!({ "type": "error", "id": id, "error": { "code": code, "message": "refused", "retryable": retryable } })
}

#[test]
fn a_refusal_settles_its_own_request_and_only_that_one() {
    let mut h = Harness::new(19);
    h.connect();
    h.welcome();
    let ch = channel("project:alpha:tasks");
    let publish = |h: &mut Harness| {
        let key = h
            .session
            .publish(ch.clone(), Payload::from(json!({})), None, h.now)
            .expect("fits");
        h.pump();
        key
    };
    let (refused, retried, acked, waiting) = (
        publish(&mut h),
        publish(&mut h),
        publish(&mut h),
        publish(&mut h),
    );
    let id = publish_id(&h, &refused);
    h.server(refusal(&id, "forbidden", false));
    assert!(h.events.iter().any(|e| matches!(e, ClientEvent::PublishFailed { key, failure: PublishFailure::Refused(_) } if *key == refused)));
    let id = publish_id(&h, &retried);
    h.server(refusal(&id, "rate_limited", true));
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, ClientEvent::ServerError(info) if info.retryable))
    );
    let id = publish_id(&h, &acked);
    h.server(json!({ "type": "published", "id": id, "channel": "project:alpha:tasks", "message_id": "m-1", "position": position("e1", 1), "duplicate": false }));
    // A refused subscribe is reported and the channel given up.
    h.session.subscribe(channel("project:beta:tasks"), 1);
    h.pump();
    let id = h.last_subscribe_id("project:beta:tasks");
    h.server(refusal(&id, "forbidden", false));
    assert!(h.events.iter().any(|e| matches!(e, ClientEvent::SubscribeFailed { channel, .. } if channel.as_str() == "project:beta:tasks")));
    // The next session resends exactly the publishes still owed: the retryable refusal and
    // the one never answered, not the refused nor the acknowledged one.
    let before = h.sent.len();
    h.close(None);
    h.until_active();
    let resent: Vec<IdempotencyKey> = h.sent[before..]
        .iter()
        .filter_map(|(_, m)| match m {
            ClientMessage::Publish(p) => Some(p.idempotency_key.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(resent, vec![retried, waiting], "{}", rule::FERRY_PUBLISH_3);
    assert!(
        !h.sent[before..]
            .iter()
            .any(|(_, m)| matches!(m, ClientMessage::Subscribe(_))),
        "a refused channel is not subscribed again"
    );
}

#[test]
fn a_first_frame_that_is_not_a_welcome_fails_the_connection_and_a_second_welcome_is_ignored() {
    let mut h = Harness::new(20);
    h.connect();
    h.server(json!({ "type": "ping", "nonce": "n" }));
    assert!(
        matches!(
            h.transmits.last(),
            Some(Transmit::Close { code, .. }) if *code == close_code::PROTOCOL_ERROR
        ),
        "{}: {:?}",
        rule::FERRY_WELCOME_1,
        h.transmits.last()
    );
    h.until_active();
    h.session.subscribe(channel("project:alpha:tasks"), 1);
    h.pump();
    let before = h.sent.len();
    h.welcome();
    assert_eq!(h.session.state(), &ClientState::Active);
    assert_eq!(
        h.sent.len(),
        before,
        "a second welcome resubscribes nothing"
    );
}

#[test]
fn a_timeout_before_any_deadline_changes_nothing_and_a_slow_ticket_request_backs_off() {
    let mut session = ClientSession::new(ClientConfig::default(), 21);
    let quiet = |session: &mut ClientSession, now: Timestamp| {
        let state = session.state().clone();
        session.handle_timeout(now);
        assert_eq!(session.state(), &state, "a timeout at {now:?} came early");
        assert_eq!(session.poll_transmit(), None);
    };
    let mut now = Timestamp::ZERO;
    session.connect(now);
    assert_eq!(session.poll_transmit(), Some(Transmit::FetchTicket));
    let deadline = session
        .poll_timeout()
        .expect("the ticket request has a deadline");
    quiet(&mut session, now);
    // The ticket never comes: at its deadline the client backs off.
    now = deadline;
    session.handle_timeout(now);
    let ClientState::BackingOff { until, .. } = session.state().clone() else {
        panic!("{:?}", session.state())
    };
    quiet(&mut session, now);
    now = until;
    session.handle_timeout(now);
    assert_eq!(session.poll_transmit(), Some(Transmit::FetchTicket));
    let ticket = Ticket::try_from(format!("ticket-{:020}", 2)).expect("a valid ticket");
    session.handle_ticket(Ok(ticket), now);
    let connection = match session.poll_transmit() {
        Some(Transmit::Connect { connection, .. }) => connection,
        other => panic!("{other:?}"),
    };
    quiet(&mut session, now);
    session.handle_connected(connection, now);
    quiet(&mut session, now);
    let text = welcome(20).to_string();
    session.handle_frame(connection, Frame::Text(text.as_bytes()), now);
    while session.poll_transmit().is_some() {}
    assert_eq!(session.state(), &ClientState::Active);
    quiet(&mut session, now + Duration::from_millis(INTERVAL_MS));
}

#[test]
fn close_stops_for_good_and_fails_pending_publishes() {
    let mut h = Harness::new(17);
    h.connect();
    let key = h
        .session
        .publish(channel("a:b"), Payload::from(json!(1)), None, h.now)
        .expect("fits");
    h.session.close();
    h.pump();
    assert_eq!(
        h.session.state(),
        &ClientState::Stopped(StopReason::Requested)
    );
    assert!(h.events.iter().any(|e| matches!(e, ClientEvent::PublishFailed { key: k, failure: PublishFailure::SessionStopped } if *k == key)));
    assert_eq!(h.session.poll_timeout(), None);
}

/// What the scripted server does next, in the property below.
#[derive(Debug, Clone)]
enum Step {
    /// Publish a new event on channel `usize` and deliver it (live).
    Live(usize),
    /// Deliver an already-published event of a channel again (a duplicate).
    Repeat(usize, u64),
    /// Drop the connection; on reconnect, the server replays what it still holds.
    Disconnect { history: u64 },
    /// Reset a channel's history (new epoch).
    ResetEpoch(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..3usize).prop_map(Step::Live),
        2 => (0..3usize, 0..20u64).prop_map(|(c, s)| Step::Repeat(c, s)),
        2 => (0..8u64).prop_map(|history| Step::Disconnect { history }),
        1 => (0..3usize).prop_map(Step::ResetEpoch),
    ]
}

const CHANNELS: [&str; 3] = [
    "project:alpha:tasks",
    "agent:reviewer:activity",
    "daemon:ws-42:output",
];

/// A server's view of one channel: its epoch and every event in it.
#[derive(Debug, Clone)]
struct ServerChannel {
    epoch: u32,
    head: u64,
}

proptest! {
    #![proptest_config(ProptestConfig::default())]

    /// FERRY-EVENT-3, FERRY-EVENT-4, FERRY-RESUME-4, FERRY-SUBSCRIBE-5, FERRY-TICKET-5: under any
    /// mix of live events, duplicates, disconnects with partial history and epoch resets, the
    /// application never sees an event twice, sees each channel's events in order, and is told
    /// of every hole; every reconnect fetches a ticket first and re-subscribes every channel
    /// from the last delivered position.
    #[test]
    fn no_event_twice_and_no_silent_gap(steps in prop::collection::vec(step(), 1..60), seed in any::<u64>()) {
        let mut h = Harness::new(seed);
        // Disconnects come faster than reset_after here; the attempt limit has its own test.
        h.max_attempts = 10_000;
        let mut server: Vec<ServerChannel> = CHANNELS.iter().map(|_| ServerChannel { epoch: 1, head: 0 }).collect();
        for ch in CHANNELS {
            h.session.subscribe(channel(ch), 1);
        }
        h.connect();
        h.welcome();
        for (i, ch) in CHANNELS.iter().enumerate() {
            h.subscribed(ch, position(&format!("e{}", server[i].epoch), server[i].head), None);
        }
        for step in steps {
            match step {
                Step::Live(c) => {
                    server[c].head += 1;
                    h.server(event(CHANNELS[c], &format!("e{}", server[c].epoch), server[c].head));
                }
                Step::Repeat(c, seq) => {
                    if seq >= 1 && seq <= server[c].head {
                        h.server(event(CHANNELS[c], &format!("e{}", server[c].epoch), seq));
                    }
                }
                Step::ResetEpoch(c) => {
                    server[c] = ServerChannel { epoch: server[c].epoch + 1, head: 0 };
                }
                Step::Disconnect { history } => {
                    h.close(None);
                    h.until_active();
                    let connection = h.connection.expect("reconnected");
                    let subscribes: Vec<Subscribe> = h.sent_on(connection).into_iter().filter_map(|m| match m { ClientMessage::Subscribe(s) => Some(s.clone()), _ => None }).collect();
                    prop_assert_eq!(subscribes.len(), CHANNELS.len());
                    for (c, ch) in CHANNELS.iter().enumerate() {
                        let sub = subscribes.iter().find(|s| s.channel.as_str() == *ch).expect("every channel re-subscribed");
                        let last = h.session.subscriptions().find(|(name, _)| name.as_str() == *ch).and_then(|(_, p)| p.cloned());
                        prop_assert_eq!(&sub.from, &last);
                        let epoch = format!("e{}", server[c].epoch);
                        let head = server[c].head;
                        let from = sub.from.clone().expect("subscribed before");
                        let oldest_held = head.saturating_sub(history) + 1;
                        let (recovery, replay) = if from.epoch.as_str() != epoch {
                            (json!({ "complete": false, "replayed": 0, "reason": "epoch_changed" }), vec![])
                        } else if from.seq.get() + 1 < oldest_held {
                            (json!({ "complete": false, "replayed": 0, "reason": "history_exceeded" }), vec![])
                        } else {
                            let missed: Vec<u64> = (from.seq.get() + 1..=head).collect();
                            (json!({ "complete": true, "replayed": missed.len(), "reason": null }), missed)
                        };
                        h.subscribed(ch, position(&epoch, head), Some(recovery));
                        for seq in replay {
                            h.server(event(ch, &epoch, seq));
                        }
                    }
                }
            }
        }
        // Per channel: delivered positions strictly increase within an epoch, and every hole
        // (a skipped seq or a new epoch) was announced by an Incomplete event before the event
        // after it.
        for ch in CHANNELS {
            let mut last: Option<(String, u64)> = None;
            let mut announced = false;
            for event in &h.events {
                match event {
                    ClientEvent::Incomplete { channel, .. } if channel.as_str() == ch => announced = true,
                    // After a first or an incomplete subscribe, the stream restarts at the head.
                    ClientEvent::Subscribed { channel, position, resumption, .. } if channel.as_str() == ch && !matches!(resumption, Resumption::Complete { .. }) => {
                        last = Some((position.epoch.to_string(), position.seq.get()));
                        if resumption.is_incomplete() { announced = true; }
                    }
                    ClientEvent::Event(e) if e.channel.as_str() == ch => {
                        let here = (e.position.epoch.to_string(), e.position.seq.get());
                        if let Some((epoch, seq)) = &last {
                            let next = *epoch == here.0 && here.1 == seq + 1;
                            prop_assert!(*epoch != here.0 || here.1 > *seq, "{} delivered {:?} after {:?}", ch, here, last);
                            prop_assert!(next || announced, "{} skipped from {:?} to {:?} silently", ch, last, here);
                        }
                        announced = false;
                        last = Some(here);
                    }
                    _ => {}
                }
            }
        }
        let connects = h.transmits.iter().filter(|t| matches!(t, Transmit::Connect { .. })).count() as u64;
        prop_assert_eq!(connects, h.tickets, "a fresh ticket before every connect");
    }

    /// FERRY-SIZE-1: whatever the application publishes, no frame above the advertised maximum
    /// leaves the client, and a refused publish says so at once.
    #[test]
    fn no_frame_above_the_maximum_is_ever_emitted(sizes in prop::collection::vec(0..6_000usize, 1..20), seed in any::<u64>()) {
        let mut h = Harness::new(seed);
        h.connect();
        h.welcome();
        for size in sizes {
            let result = h.session.publish(channel("daemon:ws-42:output"), Payload::from(json!("y".repeat(size))), None, h.now);
            h.pump();
            if size > MAX_BYTES as usize {
                prop_assert!(result.is_err());
            }
        }
        // The harness asserts the size of every Send as it drains it.
        prop_assert!(h.sent.iter().all(|(_, m)| serde_json::to_string(m).map(|t| t.len() as u64 <= MAX_BYTES).unwrap_or(false)));
    }

    /// FERRY-HEARTBEAT-4: with any advertised heartbeat, a silent server is declared dead after
    /// exactly interval + timeout since the last frame.
    #[test]
    fn a_missed_heartbeat_reconnects_after_exactly_interval_plus_timeout(interval in 1..60_000u64, timeout in 1..60_000u64, quiet in 0..10_000u64) {
        let mut h = Harness::new(interval ^ timeout);
        h.connect();
        let mut w = welcome(20);
        w["heartbeat"] = json!({ "interval_ms": interval, "timeout_ms": timeout });
        h.advance(Timestamp::from_millis(quiet));
        h.server(w);
        let dead_at = Timestamp::from_millis(quiet + interval + timeout);
        prop_assert_eq!(h.session.poll_timeout(), Some(dead_at));
        h.advance(Timestamp::from_millis(dead_at.as_millis() - 1));
        prop_assert_eq!(h.session.state(), &ClientState::Active);
        h.advance(dead_at);
        let backing_off = matches!(h.session.state(), ClientState::BackingOff { .. });
        prop_assert!(backing_off);
    }
}

/// The last rpc sent.
fn last_call(h: &Harness) -> crate::types::Rpc {
    h.sent
        .iter()
        .rev()
        .find_map(|(_, m)| match m {
            ClientMessage::Rpc(rpc) => Some(rpc.clone()),
            _ => None,
        })
        .expect("a call was sent")
}

fn answer(id: &str, duplicate: bool) -> Value {
    json!({ "type": "rpc_result", "id": id, "method": "tasks:start", "result": { "task_id": "t-1" }, "duplicate": duplicate })
}

#[test]
fn a_call_is_resent_with_its_key_after_a_reconnect_and_answered_once() {
    let mut h = Harness::new(31);
    let method: MethodName = "tasks:start".parse().expect("valid");
    // Made before the first welcome: it waits for one.
    let key = h
        .session
        .call(
            method.clone(),
            Payload::from(json!({ "project": "alpha" })),
            None,
            h.now,
        )
        .expect("fits");
    h.connect();
    assert!(h.sent.is_empty(), "nothing before the welcome");
    h.welcome();
    let first = last_call(&h);
    assert_eq!(first.idempotency_key, key);
    assert_eq!(first.method, method);
    h.close(None);
    h.until_active();
    let again = last_call(&h);
    assert_ne!(again.id, first.id);
    assert_eq!(again.idempotency_key, key, "{}", rule::FERRY_RPC_3);
    // The first connection's answer is void; the current one's settles the call.
    h.server(answer(first.id.as_str(), false));
    assert!(
        !h.events
            .iter()
            .any(|e| matches!(e, ClientEvent::Answered { .. }))
    );
    h.server(answer(again.id.as_str(), true));
    h.server(answer(again.id.as_str(), true));
    let answers: Vec<_> = h
        .events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Answered { key: k, answer } => Some((k.clone(), answer.duplicate)),
            _ => None,
        })
        .collect();
    assert_eq!(answers, vec![(key, true)], "one answer, the first call's");
    // A publish answer with the call's id does not settle a call, nor the reverse.
    let call = h
        .session
        .call(method, Payload::from(json!({})), None, h.now)
        .expect("fits");
    h.pump();
    let id = last_call(&h).id.to_string();
    h.server(json!({ "type": "published", "id": id, "channel": "project:alpha:tasks", "message_id": "m-1", "position": position("e1", 1), "duplicate": false }));
    assert!(
        !h.events
            .iter()
            .any(|e| matches!(e, ClientEvent::Published { .. }))
    );
    assert!(
        !h.events
            .iter()
            .any(|e| matches!(e, ClientEvent::Answered { key, .. } if *key == call))
    );
    // The call still waits for its own answer.
    h.server(answer(&id, false));
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, ClientEvent::Answered { key, .. } if *key == call))
    );
}

#[test]
fn a_call_fails_at_the_servers_timeout_or_after_the_advertised_timeout_plus_the_request_timeout() {
    let mut h = Harness::new(32);
    h.connect();
    let mut welcome = welcome(20);
    welcome["rpc"] = json!({ "timeout_ms": 3_000 });
    h.server(welcome);
    let method: MethodName = "tasks:start".parse().expect("valid");
    let timed = h
        .session
        .call(method.clone(), Payload::from(json!({})), None, h.now)
        .expect("fits");
    h.pump();
    h.server(refusal(last_call(&h).id.as_str(), "timeout", true));
    assert!(
        h.events.iter().any(|e| matches!(e, ClientEvent::CallFailed { key, failure: PublishFailure::Refused(error) } if *key == timed && error.code == ErrorCode::Timeout)),
        "the server's timeout fails the call at once: {:?}", h.events
    );
    let started = h.now;
    let lost = h
        .session
        .call(method, Payload::from(json!({})), None, h.now)
        .expect("fits");
    h.pump();
    let deadline = started + Duration::from_millis(3_000 + defaults::REQUEST_TIMEOUT_MS);
    h.stay_welcomed(3_000 + defaults::REQUEST_TIMEOUT_MS - 1);
    assert!(
        !h.events
            .iter()
            .any(|e| matches!(e, ClientEvent::CallFailed { key, .. } if *key == lost))
    );
    h.advance(deadline);
    assert!(
        h.events.iter().any(|e| matches!(e, ClientEvent::CallFailed { key, failure: PublishFailure::TimedOut } if *key == lost)),
        "{}", rule::FERRY_RPC_2
    );
}
mod presence;
