//! The server session's rules, one test each, driven by a virtual clock: plain `Timestamp`
//! values, no sleeps, no sockets. Every transmit is decoded back with the codec.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::types::{MessageId, Seq, UnixMillis};

fn at(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn channel(name: &str) -> ChannelName {
    name.parse().expect("a valid channel name")
}

fn id(text: &str) -> RequestId {
    text.parse().expect("a valid request id")
}

fn position(epoch: &str, seq: u64) -> StreamPosition {
    StreamPosition {
        epoch: epoch.parse().expect("a valid epoch"),
        seq: Seq(UInt::new(seq).expect("a valid seq")),
    }
}

fn event(channel_name: &str, epoch: &str, seq: u64) -> EncodedEvent {
    EncodedEvent::new(event_value(channel_name, epoch, seq))
}

fn event_value(channel_name: &str, epoch: &str, seq: u64) -> Event {
    Event {
        channel: channel(channel_name),
        message_id: format!("msg-{epoch}-{seq}")
            .parse()
            .expect("a valid message id"),
        payload: Payload::from(json!({ "seq": seq })),
        position: position(epoch, seq),
        published_at_ms: UnixMillis(UInt::new(1_732_325_400_000 + seq).expect("a valid time")),
    }
}

fn permission(pattern: &str, read: bool, write: bool) -> Permission {
    Permission {
        pattern: pattern.parse().expect("a valid pattern"),
        read,
        write,
        call: None,
    }
}

/// The console user of the welcome example: read and write on `project:alpha:*`, read on
/// `agent:**` and on `daemon:ws-42:output`.
fn grant() -> Grant {
    Grant {
        user: "maria@example.com".parse().expect("a valid user id"),
        permissions: vec![
            permission("project:alpha:*", true, true),
            permission("agent:**", true, false),
            permission("daemon:ws-42:output", true, false),
        ],
    }
}

fn session_id() -> SessionId {
    "sess_01JD3F7Y2B".parse().expect("a valid session id")
}

/// A session accepted at 0 with `config` and [`grant`], its welcome already drained.
fn session_with(config: ServerConfig) -> ServerSession {
    let mut session = ServerSession::new(config, grant(), session_id(), at(0));
    let welcome = drain(&mut session);
    assert!(
        matches!(
            welcome.as_slice(),
            [Out::Message(ServerMessage::Welcome(_))]
        ),
        "{welcome:?}"
    );
    session
}

fn session() -> ServerSession {
    session_with(ServerConfig::default())
}

fn config_with(change: impl FnOnce(&mut ServerConfig)) -> ServerConfig {
    let mut config = ServerConfig::default();
    change(&mut config);
    config
}

/// What came out of `poll_transmit`, decoded.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "a test's transcript, never held in bulk"
)]
enum Out {
    Message(ServerMessage),
    Close(u16),
}

fn drain(session: &mut ServerSession) -> Vec<Out> {
    let codec = Codec::new(session.max_message_bytes());
    let mut out = Vec::new();
    while let Some(transmit) = session.poll_transmit() {
        match transmit {
            Transmit::Send { text } => {
                let message = codec
                    .decode_server(Frame::Text(text.as_bytes()))
                    .unwrap_or_else(|error| panic!("the session sent {text}: {error}"));
                out.push(Out::Message(message));
            }
            Transmit::Close { code, reason } => {
                assert!(reason.len() <= 123, "{reason}");
                out.push(Out::Close(code));
            }
        }
    }
    out
}

fn actions(session: &mut ServerSession) -> Vec<Action> {
    std::iter::from_fn(|| session.poll_action()).collect()
}

fn send(session: &mut ServerSession, text: &str, ms: u64) {
    session.handle_frame(Frame::Text(text.as_bytes()), at(ms));
}

fn subscribe(session: &mut ServerSession, request: &str, name: &str, ms: u64) {
    send(
        session,
        &json!({"type": "subscribe", "id": request, "channel": name}).to_string(),
        ms,
    );
}

fn subscribe_from(session: &mut ServerSession, request: &str, name: &str, from: StreamPosition) {
    send(
        session,
        &json!({"type": "subscribe", "id": request, "channel": name, "from": from}).to_string(),
        0,
    );
}

fn unsubscribe(session: &mut ServerSession, request: &str, name: &str, ms: u64) {
    send(
        session,
        &json!({"type": "unsubscribe", "id": request, "channel": name}).to_string(),
        ms,
    );
}

fn publish(session: &mut ServerSession, request: &str, name: &str, key: &str, ms: u64) {
    send(
        session,
        &json!({
            "type": "publish", "id": request, "channel": name,
            "idempotency_key": key, "payload": {"n": 1}
        })
        .to_string(),
        ms,
    );
}

fn pong(session: &mut ServerSession, nonce: &str, ms: u64) {
    send(
        session,
        &json!({"type": "pong", "nonce": nonce}).to_string(),
        ms,
    );
}

fn ping(nonce: &str) -> Out {
    Out::Message(ServerMessage::Ping(Ping {
        nonce: nonce.parse().expect("a valid nonce"),
    }))
}

fn subscribed(request: &str, name: &str, at_position: StreamPosition) -> Out {
    Out::Message(ServerMessage::Subscribed(Subscribed {
        hold: None,
        channel: channel(name),
        id: id(request),
        position: at_position,
        recovery: None,
    }))
}

fn unsubscribed(request: &str, name: &str) -> Out {
    Out::Message(ServerMessage::Unsubscribed(Unsubscribed {
        channel: channel(name),
        id: id(request),
    }))
}

fn live(event: EncodedEvent) -> Out {
    Out::Message(ServerMessage::Event(event.event().clone()))
}

/// The parts of an error a test checks: id, code, retryable, retry_after_ms (the message is
/// for humans).
fn error_parts(out: &Out) -> (Option<String>, ErrorCode, bool, Option<u64>) {
    match out {
        Out::Message(ServerMessage::Error(Error { error, id })) => (
            id.as_ref().map(|id| id.to_string()),
            error.code,
            error.retryable,
            error.retry_after_ms.map(UInt::get),
        ),
        other => panic!("expected an error, got {other:?}"),
    }
}

fn refusal(
    request: Option<&str>,
    code: ErrorCode,
) -> (Option<String>, ErrorCode, bool, Option<u64>) {
    (request.map(str::to_owned), code, retryable(code), None)
}

/// Subscribes `request` to `name` and has the shell answer at `head` with nothing to replay.
fn hold(session: &mut ServerSession, request: &str, name: &str, head: StreamPosition) {
    subscribe(session, request, name, 0);
    assert_eq!(
        actions(session),
        vec![Action::Subscribe {
            presence: None,
            hold: None,
            id: id(request),
            channel: channel(name),
            from: None
        }]
    );
    session.subscribed(&id(request), head.clone(), None, Vec::new());
    assert_eq!(drain(session), vec![subscribed(request, name, head)]);
}

const TASKS: &str = "project:alpha:tasks";
const APPROVALS: &str = "project:alpha:approvals";
const EPOCH: &str = "ep-01JD3F8Q2W";

// FERRY-WELCOME-1

#[test]
fn the_welcome_is_the_first_frame_and_advertises_the_config_and_the_grant() {
    let config = config_with(|config| {
        config.heartbeat.interval_ms = UInt::new(25_000).expect("in bounds");
        config.limits.max_subscriptions = UInt::new(256).expect("in bounds");
    });
    let mut session = ServerSession::new(config.clone(), grant(), session_id(), at(7));
    let expected = Welcome {
        presence: None,
        heartbeat: config.heartbeat.clone(),
        limits: config.limits.clone(),
        permissions: grant().permissions,
        protocol: WelcomeProtocol::FerryV1,
        reconnect: config.reconnect.clone(),
        resume: config.resume.clone(),
        rpc: None,
        session_id: session_id(),
        user: grant().user,
    };
    assert_eq!(
        drain(&mut session),
        vec![Out::Message(ServerMessage::Welcome(expected))]
    );
    assert_eq!(session.poll_timeout(), Some(at(25_007)));
    assert_eq!(session.poll_action(), None);
}

#[test]
fn the_default_config_advertises_the_protocol_defaults() {
    let mut session = ServerSession::new(
        ServerConfig::default(),
        Grant {
            user: "svc".parse().expect("a valid user id"),
            permissions: Vec::new(),
        },
        "s1".parse().expect("a valid session id"),
        at(0),
    );
    let Some(Transmit::Send { text }) = session.poll_transmit() else {
        panic!("the welcome comes first");
    };
    let sent: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(
        sent,
        json!({
            "type": "welcome", "protocol": "ferry.v1", "session_id": "s1", "user": "svc",
            "permissions": [],
            "heartbeat": {"interval_ms": 20000, "timeout_ms": 10000},
            "limits": {
                "max_message_bytes": 131072, "max_subscriptions": 100,
                "rate_limit": {"messages_per_second": 10, "burst": 20}
            },
            "reconnect": {
                "base_ms": 1000, "factor": 2, "cap_ms": 30000, "jitter": 0.5,
                "max_attempts": 20, "reset_after_ms": 5000
            },
            "resume": {"window_ms": 120000, "max_events": 1000}
        })
    );
    let config = ServerConfig::default();
    assert_eq!(
        config.malformed_frame_limit,
        defaults::MALFORMED_FRAME_LIMIT
    );
    assert_eq!(config.rate_limit_strikes, defaults::RATE_LIMIT_STRIKES);
    assert!(config.namespaces.is_empty());
}

// FERRY-HEARTBEAT-1

#[test]
fn a_ping_with_a_fresh_nonce_goes_out_every_heartbeat_interval() {
    let mut session = session();
    assert_eq!(session.poll_timeout(), Some(at(20_000)));
    session.handle_timeout(at(19_999));
    assert_eq!(drain(&mut session), vec![]);
    session.handle_timeout(at(20_000));
    assert_eq!(drain(&mut session), vec![ping("hb-1")]);
    // The pong's deadline comes before the next ping.
    assert_eq!(session.poll_timeout(), Some(at(30_000)));
    pong(&mut session, "hb-1", 25_000);
    assert_eq!(session.poll_timeout(), Some(at(40_000)));
    session.handle_timeout(at(40_000));
    assert_eq!(drain(&mut session), vec![ping("hb-2")]);
    pong(&mut session, "hb-2", 40_001);
    // A shell that wakes up late sends one ping, not a burst, and keeps the cadence.
    session.handle_timeout(at(61_000));
    assert_eq!(drain(&mut session), vec![ping("hb-3")]);
    assert_eq!(session.poll_timeout(), Some(at(71_000)));
    pong(&mut session, "hb-3", 61_000);
    assert_eq!(session.poll_timeout(), Some(at(80_000)));
    // Late by exactly one interval: the next ping is an interval after this one, not at once.
    session.handle_timeout(at(100_000));
    assert_eq!(drain(&mut session), vec![ping("hb-4")]);
    pong(&mut session, "hb-4", 100_000);
    assert_eq!(session.poll_timeout(), Some(at(120_000)));
}

#[test]
fn a_pong_with_the_outstanding_nonce_clears_the_ping() {
    let mut session = session();
    session.handle_timeout(at(20_000));
    assert_eq!(drain(&mut session), vec![ping("hb-1")]);
    pong(&mut session, "hb-1", 29_999);
    session.handle_timeout(at(30_000));
    assert_eq!(drain(&mut session), vec![]);
    assert!(!session.is_closed());
}

// FERRY-HEARTBEAT-3

#[test]
fn missed_pong_closes_with_4408_after_the_timeout() {
    let mut session = session();
    session.handle_timeout(at(20_000));
    assert_eq!(drain(&mut session), vec![ping("hb-1")]);
    session.handle_timeout(at(29_999));
    assert_eq!(drain(&mut session), vec![]);
    session.handle_timeout(at(30_000));
    assert_eq!(
        drain(&mut session),
        vec![Out::Close(close_code::HEARTBEAT_TIMEOUT)]
    );
    assert!(session.is_closed());
    assert_eq!(session.poll_timeout(), None);
}

#[test]
fn a_pong_arriving_at_the_deadline_is_too_late() {
    // Every input first brings the timers up to its time, so the outcome does not depend on
    // whether the shell noticed the timer or the frame first.
    let mut session = session();
    session.handle_timeout(at(20_000));
    drain(&mut session);
    pong(&mut session, "hb-1", 30_000);
    assert_eq!(
        drain(&mut session),
        vec![Out::Close(close_code::HEARTBEAT_TIMEOUT)]
    );
}

#[test]
fn a_pong_with_a_wrong_or_stale_nonce_is_ignored() {
    let mut session = session();
    session.handle_timeout(at(20_000));
    drain(&mut session);
    pong(&mut session, "hb-0", 21_000);
    pong(&mut session, "not-a-ping", 21_000);
    assert_eq!(drain(&mut session), vec![], "not an error");
    pong(&mut session, "hb-1", 22_000);
    pong(&mut session, "hb-1", 23_000);
    assert_eq!(drain(&mut session), vec![], "a stale nonce is not an error");
    session.handle_timeout(at(30_000));
    assert_eq!(drain(&mut session), vec![]);
    session.handle_timeout(at(40_000));
    assert_eq!(drain(&mut session), vec![ping("hb-2")]);
    pong(&mut session, "hb-1", 41_000);
    session.handle_timeout(at(50_000));
    assert_eq!(
        drain(&mut session),
        vec![Out::Close(close_code::HEARTBEAT_TIMEOUT)],
        "the stale pong answered nothing"
    );
}

#[test]
fn a_pong_answers_its_ping_when_the_timeout_exceeds_the_interval() {
    let mut session = session_with(config_with(|config| {
        config.heartbeat = HeartbeatPolicy {
            interval_ms: UInt::new(1_000).expect("in bounds"),
            timeout_ms: UInt::new(5_000).expect("in bounds"),
        };
    }));
    session.handle_timeout(at(1_000));
    session.handle_timeout(at(2_000));
    assert_eq!(drain(&mut session), vec![ping("hb-1"), ping("hb-2")]);
    // The pong of the first ping arrives after the second ping went out: it still counts.
    pong(&mut session, "hb-1", 2_500);
    assert_eq!(session.poll_timeout(), Some(at(3_000)));
    session.handle_timeout(at(3_000));
    session.handle_timeout(at(4_000));
    assert_eq!(drain(&mut session), vec![ping("hb-3"), ping("hb-4")]);
    // Answering a later ping answers the earlier ones too.
    pong(&mut session, "hb-4", 4_500);
    for ms in [5_000, 6_000, 7_000, 8_000] {
        session.handle_timeout(at(ms));
    }
    let sent = drain(&mut session);
    assert_eq!(
        sent,
        vec![ping("hb-5"), ping("hb-6"), ping("hb-7"), ping("hb-8")]
    );
    // hb-5 (sent at 5000) was never answered.
    session.handle_timeout(at(9_999));
    drain(&mut session);
    session.handle_timeout(at(10_000));
    assert_eq!(
        drain(&mut session).last(),
        Some(&Out::Close(close_code::HEARTBEAT_TIMEOUT))
    );
}

// FERRY-SIZE-1, FERRY-SIZE-3

#[test]
fn an_oversized_frame_closes_with_1009_and_a_frame_of_exactly_the_maximum_is_read() {
    let mut session = session_with(config_with(|config| {
        config.limits.max_message_bytes = UInt::new(1024).expect("in bounds");
    }));
    let frame = |padding: usize| {
        json!({
            "type": "publish", "id": "p1", "channel": TASKS, "idempotency_key": "k1",
            "payload": {"text": "x".repeat(padding)}
        })
        .to_string()
    };
    let base = frame(0).len();
    let exact = frame(1024 - base);
    assert_eq!(exact.len(), 1024);
    send(&mut session, &exact, 0);
    // Read and answered, not closed: its event could not fit in a frame (FERRY-SIZE-4).
    assert_eq!(
        error_parts(&drain(&mut session)[0]),
        refusal(Some("p1"), ErrorCode::MessageTooLarge)
    );
    assert!(!session.is_closed());
    let over = frame(1025 - base);
    send(&mut session, &over, 0);
    assert_eq!(
        drain(&mut session),
        vec![Out::Close(close_code::MESSAGE_TOO_BIG)]
    );
}

// FERRY-TRANSPORT-3, FERRY-TRANSPORT-4

#[test]
fn a_binary_frame_closes_with_1003_and_invalid_utf8_with_1007() {
    let mut session = session();
    session.handle_frame(Frame::Binary(b"{\"type\":\"pong\"}"), at(0));
    assert_eq!(
        drain(&mut session),
        vec![Out::Close(close_code::UNSUPPORTED_DATA)]
    );
    let mut session = self::session();
    session.handle_frame(
        Frame::Text(b"{\"type\":\"pong\",\"nonce\":\"\xff\"}"),
        at(0),
    );
    assert_eq!(
        drain(&mut session),
        vec![Out::Close(close_code::INVALID_PAYLOAD)]
    );
}

// FERRY-TRANSPORT-5

#[test]
fn a_malformed_frame_gets_an_error_with_id_null_and_the_session_stays_open() {
    let mut session = session();
    let cases = [
        ("{", ErrorCode::BadRequest),
        ("[1,2]", ErrorCode::BadRequest),
        (
            r#"{"type":"subscribe_all","id":"r1"}"#,
            ErrorCode::UnknownType,
        ),
        (r#"{"type":"ping","nonce":"n"}"#, ErrorCode::UnknownType),
        // A request with an id that breaks its schema: still id null.
        (
            r#"{"type":"subscribe","id":"r1","channel":"Not A Channel"}"#,
            ErrorCode::BadRequest,
        ),
    ];
    for (frame, code) in cases {
        send(&mut session, frame, 0);
        let out = drain(&mut session);
        assert_eq!(out.len(), 1, "{frame}: {out:?}");
        assert_eq!(error_parts(&out[0]), refusal(None, code), "{frame}");
    }
    assert!(!session.is_closed());
    assert_eq!(session.poll_action(), None);
}

#[test]
fn the_tenth_malformed_frame_is_answered_then_closes_with_1008() {
    let mut session = session();
    for n in 1..10 {
        send(&mut session, "not json", n);
        let out = drain(&mut session);
        assert_eq!(out.len(), 1);
        assert_eq!(error_parts(&out[0]), refusal(None, ErrorCode::BadRequest));
    }
    send(&mut session, "not json", 10);
    let out = drain(&mut session);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(error_parts(&out[0]), refusal(None, ErrorCode::BadRequest));
    assert_eq!(out[1], Out::Close(close_code::POLICY_VIOLATION));
}

// FERRY-RATE-1

#[test]
fn a_frame_that_finds_the_bucket_empty_gets_rate_limited_with_its_id_and_is_not_acted_on() {
    // The defaults: 10 frames per second in bursts of 20.
    let mut session = session();
    for n in 0..20 {
        publish(
            &mut session,
            &format!("p{n}"),
            TASKS,
            &format!("k{n}"),
            1_000,
        );
    }
    assert_eq!(actions(&mut session).len(), 20);
    assert_eq!(drain(&mut session), vec![]);
    publish(&mut session, "p20", TASKS, "k20", 1_000);
    let out = drain(&mut session);
    assert_eq!(out.len(), 1);
    assert_eq!(
        error_parts(&out[0]),
        (Some("p20".into()), ErrorCode::RateLimited, true, Some(100))
    );
    assert_eq!(session.poll_action(), None, "not acted on");
    // A malformed frame that finds the bucket empty: rate_limited with id null.
    send(&mut session, "{", 1_040);
    let out = drain(&mut session);
    assert_eq!(
        error_parts(&out[0]),
        (None, ErrorCode::RateLimited, true, Some(60))
    );
    // A token later the frame goes through.
    publish(&mut session, "p21", TASKS, "k21", 1_100);
    assert_eq!(drain(&mut session), vec![]);
    assert_eq!(actions(&mut session).len(), 1);
}

// FERRY-RATE-2

#[test]
fn the_fifth_refusal_within_one_second_is_answered_then_closes_with_4429() {
    let mut session = session();
    for n in 0..20 {
        unsubscribe(&mut session, &format!("u{n}"), TASKS, 0);
    }
    drain(&mut session);
    for ms in [0, 10, 20, 30] {
        unsubscribe(&mut session, "over", TASKS, ms);
        let out = drain(&mut session);
        assert_eq!(out.len(), 1);
        assert_eq!(error_parts(&out[0]).1, ErrorCode::RateLimited);
    }
    unsubscribe(&mut session, "over", TASKS, 40);
    let out = drain(&mut session);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(error_parts(&out[0]).1, ErrorCode::RateLimited);
    assert_eq!(out[1], Out::Close(close_code::RATE_LIMIT_EXCEEDED));
}

#[test]
fn refusals_spread_over_more_than_a_second_do_not_close() {
    let mut session = session_with(config_with(|config| {
        config.limits.rate_limit = RateLimit {
            messages_per_second: UInt::new(1).expect("in bounds"),
            burst: UInt::new(1).expect("in bounds"),
        };
    }));
    let mut refused = 0;
    for ms in [0, 100, 200, 300, 400, 1_099, 1_100, 1_201] {
        unsubscribe(&mut session, "u", TASKS, ms);
        for out in drain(&mut session) {
            match error_parts_or_reply(&out) {
                Some(ErrorCode::RateLimited) => refused += 1,
                Some(other) => panic!("{other:?}"),
                None => {}
            }
        }
    }
    // 100..400 and 1100, 1201 refused (six), but never five within one second.
    assert_eq!(refused, 6);
    assert!(!session.is_closed());
    unsubscribe(&mut session, "u", TASKS, 1_250);
    assert_eq!(
        drain(&mut session).last(),
        Some(&Out::Close(close_code::RATE_LIMIT_EXCEEDED)),
        "300, 400, 1100, 1201 and 1250 lie within one second"
    );
}

fn error_parts_or_reply(out: &Out) -> Option<ErrorCode> {
    match out {
        Out::Message(ServerMessage::Error(error)) => Some(error.error.code),
        _ => None,
    }
}

#[test]
fn pongs_answering_a_ping_are_not_metered_and_other_pongs_are() {
    let mut session = session_with(config_with(|config| {
        config.limits.rate_limit = RateLimit {
            messages_per_second: UInt::new(1).expect("in bounds"),
            burst: UInt::new(1).expect("in bounds"),
        };
    }));
    // The frame at 20000 empties the bucket; the ping goes out first.
    unsubscribe(&mut session, "u1", TASKS, 20_000);
    assert_eq!(
        drain(&mut session),
        vec![ping("hb-1"), unsubscribed("u1", TASKS)]
    );
    pong(&mut session, "hb-1", 20_000);
    assert_eq!(drain(&mut session), vec![], "answered, not rate limited");
    // A pong that answers nothing takes a token like any frame.
    pong(&mut session, "hb-1", 20_001);
    let out = drain(&mut session);
    assert_eq!(
        error_parts(&out[0]),
        (None, ErrorCode::RateLimited, true, Some(999))
    );
    session.handle_timeout(at(30_000));
    assert!(!session.is_closed(), "the ping was answered");
}

// FERRY-CHANNEL-1, FERRY-CHANNEL-2

#[test]
fn a_subscribe_without_read_permission_is_forbidden_and_the_session_stays_open() {
    let mut session = session_with(config_with(|_| {}));
    subscribe(&mut session, "s1", "billing:invoices", 0);
    let out = drain(&mut session);
    assert_eq!(
        error_parts(&out[0]),
        refusal(Some("s1"), ErrorCode::Forbidden)
    );
    assert_eq!(session.poll_action(), None);
    // Write without read does not grant a subscribe either.
    let mut writer = ServerSession::new(
        ServerConfig::default(),
        Grant {
            user: "svc".parse().expect("a valid user id"),
            permissions: vec![permission("audit:*", false, true)],
        },
        session_id(),
        at(0),
    );
    drain(&mut writer);
    subscribe(&mut writer, "s1", "audit:logins", 0);
    assert_eq!(
        error_parts(&drain(&mut writer)[0]),
        refusal(Some("s1"), ErrorCode::Forbidden)
    );
    // The session goes on.
    hold(&mut session, "s2", TASKS, position(EPOCH, 0));
}

#[test]
fn a_publish_without_write_permission_is_forbidden() {
    let mut session = session();
    publish(&mut session, "p1", "agent:reviewer:activity", "k1", 0);
    assert_eq!(
        error_parts(&drain(&mut session)[0]),
        refusal(Some("p1"), ErrorCode::Forbidden)
    );
    assert_eq!(session.poll_action(), None);
    assert!(!session.is_closed());
}

// FERRY-CHANNEL-5

#[test]
fn a_channel_outside_every_declared_namespace_is_an_unknown_channel() {
    let mut session = ServerSession::new(
        config_with(|config| {
            config.namespaces = vec!["project:**".parse().expect("a pattern")].into()
        }),
        Grant {
            user: "admin".parse().expect("a valid user id"),
            permissions: vec![permission("**", true, true)],
        },
        session_id(),
        at(0),
    );
    drain(&mut session);
    subscribe(&mut session, "s1", "agent:reviewer", 0);
    publish(&mut session, "p1", "agent:reviewer", "k1", 0);
    let out = drain(&mut session);
    assert_eq!(
        error_parts(&out[0]),
        refusal(Some("s1"), ErrorCode::UnknownChannel)
    );
    assert_eq!(
        error_parts(&out[1]),
        refusal(Some("p1"), ErrorCode::UnknownChannel)
    );
    subscribe(&mut session, "s2", TASKS, 0);
    publish(&mut session, "p2", TASKS, "k2", 0);
    assert_eq!(actions(&mut session).len(), 2);
}

// FERRY-SUBSCRIBE-4

#[test]
fn a_subscribe_to_a_held_or_pending_channel_is_already_subscribed() {
    let mut session = session();
    hold(&mut session, "s1", TASKS, position(EPOCH, 3));
    subscribe(&mut session, "s2", TASKS, 0);
    assert_eq!(
        error_parts(&drain(&mut session)[0]),
        refusal(Some("s2"), ErrorCode::AlreadySubscribed)
    );
    // A second subscribe while the first is in flight waits for its outcome.
    subscribe(&mut session, "s3", APPROVALS, 0);
    subscribe(&mut session, "s4", APPROVALS, 0);
    assert_eq!(actions(&mut session).len(), 1);
    assert_eq!(drain(&mut session), vec![]);
    session.subscribed(&id("s3"), position(EPOCH, 0), None, Vec::new());
    let out = drain(&mut session);
    assert_eq!(out[0], subscribed("s3", APPROVALS, position(EPOCH, 0)));
    assert_eq!(
        error_parts(&out[1]),
        refusal(Some("s4"), ErrorCode::AlreadySubscribed)
    );
    // ... and goes ahead when the first failed.
    let output = "daemon:ws-42:output";
    subscribe(&mut session, "s5", output, 0);
    subscribe(&mut session, "s6", output, 0);
    assert_eq!(actions(&mut session).len(), 1);
    session.request_failed(
        &id("s5"),
        ErrorInfo {
            code: ErrorCode::Unavailable,
            message: "draining".parse().expect("short"),
            retry_after_ms: None,
            retryable: true,
        },
    );
    assert_eq!(
        error_parts(&drain(&mut session)[0]),
        refusal(Some("s5"), ErrorCode::Unavailable)
    );
    assert_eq!(
        actions(&mut session),
        vec![Action::Subscribe {
            presence: None,
            hold: None,
            id: id("s6"),
            channel: channel(output),
            from: None
        }]
    );
}

#[test]
fn a_subscribe_beyond_max_subscriptions_is_refused_counting_those_in_flight() {
    let mut session = session_with(config_with(|config| {
        config.limits.max_subscriptions = UInt::new(2).expect("in bounds");
    }));
    hold(&mut session, "s1", TASKS, position(EPOCH, 0));
    subscribe(&mut session, "s2", APPROVALS, 0);
    assert_eq!(actions(&mut session).len(), 1, "in flight");
    subscribe(&mut session, "s3", "agent:reviewer", 0);
    assert_eq!(
        error_parts(&drain(&mut session)[0]),
        refusal(Some("s3"), ErrorCode::TooManySubscriptions)
    );
    assert_eq!(session.poll_action(), None);
    unsubscribe(&mut session, "u1", TASKS, 0);
    assert_eq!(drain(&mut session), vec![unsubscribed("u1", TASKS)]);
    actions(&mut session);
    subscribe(&mut session, "s4", "agent:reviewer", 0);
    assert_eq!(actions(&mut session).len(), 1);
}

// FERRY-SUBSCRIBE-1, FERRY-RESUME-1

#[test]
fn subscribed_carries_the_position_then_the_replayed_events_in_order() {
    let mut session = session();
    subscribe_from(&mut session, "s1", TASKS, position(EPOCH, 3));
    assert_eq!(
        actions(&mut session),
        vec![Action::Subscribe {
            presence: None,
            hold: None,
            id: id("s1"),
            channel: channel(TASKS),
            from: Some(position(EPOCH, 3)),
        }]
    );
    let replay = vec![
        event(TASKS, EPOCH, 4),
        event(TASKS, EPOCH, 5),
        event(TASKS, EPOCH, 6),
    ];
    session.subscribed(
        &id("s1"),
        position(EPOCH, 6),
        Some(Recovery {
            complete: true,
            reason: None,
            replayed: UInt::new(3).expect("in bounds"),
        }),
        replay,
    );
    assert_eq!(
        drain(&mut session),
        vec![
            Out::Message(ServerMessage::Subscribed(Subscribed {
                hold: None,
                channel: channel(TASKS),
                id: id("s1"),
                position: position(EPOCH, 6),
                recovery: Some(Recovery {
                    complete: true,
                    reason: None,
                    replayed: UInt::new(3).expect("in bounds"),
                }),
            })),
            live(event(TASKS, EPOCH, 4)),
            live(event(TASKS, EPOCH, 5)),
            live(event(TASKS, EPOCH, 6)),
        ]
    );
    // A first subscribe (no from) gets no recovery, whatever the shell says.
    subscribe(&mut session, "s2", APPROVALS, 0);
    actions(&mut session);
    session.subscribed(
        &id("s2"),
        position(EPOCH, 9),
        Some(Recovery {
            complete: true,
            reason: None,
            replayed: UInt::new(1).expect("in bounds"),
        }),
        vec![event(APPROVALS, EPOCH, 9)],
    );
    assert_eq!(
        drain(&mut session),
        vec![subscribed("s2", APPROVALS, position(EPOCH, 9))]
    );
}

// FERRY-RESUME-1: what a resume replays of what the shell read

#[test]
fn a_resume_replays_only_its_channels_events_of_the_heads_epoch_after_from() {
    let (from, head) = (position(EPOCH, 2), position(EPOCH, 4));
    let seqs = |events: &[EncodedEvent]| -> Vec<u64> {
        events
            .iter()
            .map(|e| e.event().position.seq.get())
            .collect()
    };
    let replay = vec![
        event(APPROVALS, EPOCH, 3),
        event(TASKS, "ep-01JD3F8Q2X", 3),
        event(TASKS, EPOCH, 2),
        event(TASKS, EPOCH, 3),
        event(TASKS, EPOCH, 4),
        event(TASKS, EPOCH, 5),
    ];
    let (recovery, events) = resume(&channel(TASKS), &from, &head, None, replay);
    assert!(recovery.complete, "{recovery:?}");
    assert_eq!(seqs(&events), vec![3, 4]);
    assert!(
        events
            .iter()
            .all(|e| e.event().channel == channel(TASKS) && e.event().position.epoch == head.epoch)
    );
    // From the head itself: complete, with nothing to replay.
    let (recovery, events) = resume(&channel(TASKS), &head, &head, None, Vec::new());
    assert!(recovery.complete, "{recovery:?}");
    assert!(events.is_empty());
    // A replay that lacks the last event is no recovery at all.
    let replay = vec![event(TASKS, EPOCH, 3)];
    let (recovery, events) = resume(&channel(TASKS), &from, &head, None, replay);
    assert_eq!(
        (recovery.complete, recovery.reason),
        (false, Some(RecoveryGap::HistoryExceeded))
    );
    assert!(events.is_empty());
}

// FERRY-RESUME-2

#[test]
fn an_incomplete_recovery_replays_nothing_and_says_why() {
    let cases: [(
        StreamPosition,
        Option<Recovery>,
        Vec<EncodedEvent>,
        RecoveryGap,
    ); 4] = [
        // The shell's history no longer holds seq 4.
        (
            position(EPOCH, 3),
            Some(Recovery {
                complete: false,
                reason: Some(RecoveryGap::HistoryExceeded),
                replayed: UInt::new(0).expect("in bounds"),
            }),
            vec![event(TASKS, EPOCH, 5), event(TASKS, EPOCH, 6)],
            RecoveryGap::HistoryExceeded,
        ),
        // The shell claims completeness but seq 5 is missing: never a partial range.
        (
            position(EPOCH, 3),
            None,
            vec![event(TASKS, EPOCH, 4), event(TASKS, EPOCH, 6)],
            RecoveryGap::HistoryExceeded,
        ),
        (
            position("ep-old", 3),
            None,
            vec![],
            RecoveryGap::EpochChanged,
        ),
        (position(EPOCH, 7), None, vec![], RecoveryGap::PositionAhead),
    ];
    for (from, recovery, replay, reason) in cases {
        let mut session = session();
        subscribe_from(&mut session, "s1", TASKS, from.clone());
        actions(&mut session);
        session.subscribed(&id("s1"), position(EPOCH, 6), recovery, replay);
        assert_eq!(
            drain(&mut session),
            vec![Out::Message(ServerMessage::Subscribed(Subscribed {
                hold: None,
                channel: channel(TASKS),
                id: id("s1"),
                position: position(EPOCH, 6),
                recovery: Some(Recovery {
                    complete: false,
                    reason: Some(reason),
                    replayed: UInt::new(0).expect("in bounds"),
                }),
            }))],
            "from {from:?}"
        );
        // Live events continue after the subscribed position.
        session.deliver(&event(TASKS, EPOCH, 7));
        assert_eq!(drain(&mut session), vec![live(event(TASKS, EPOCH, 7))]);
    }
}

// FERRY-SUBSCRIBE-1

#[test]
fn a_failed_subscribe_is_answered_with_the_shells_error_and_holds_nothing() {
    let mut session = session();
    subscribe(&mut session, "s1", TASKS, 0);
    actions(&mut session);
    session.deliver(&event(TASKS, EPOCH, 1));
    session.request_failed(
        &id("s1"),
        ErrorInfo {
            code: ErrorCode::Internal,
            message: "the broker is unreachable".parse().expect("short"),
            retry_after_ms: None,
            // Not the table's flag: the session sets the table's.
            retryable: false,
        },
    );
    let out = drain(&mut session);
    assert_eq!(out.len(), 1, "the buffered event is dropped: {out:?}");
    assert_eq!(
        error_parts(&out[0]),
        (Some("s1".into()), ErrorCode::Internal, true, None)
    );
    assert!(!session.is_subscribed(&channel(TASKS)));
    session.deliver(&event(TASKS, EPOCH, 2));
    assert_eq!(drain(&mut session), vec![]);
    // A second answer for the same id is ignored.
    session.subscribed(&id("s1"), position(EPOCH, 2), None, Vec::new());
    assert_eq!(drain(&mut session), vec![]);
}

// FERRY-SUBSCRIBE-1: what the shell reads of a session's subscriptions

#[test]
fn the_session_lists_its_active_subscriptions_and_a_closed_session_none() {
    let mut session = session();
    subscribe(&mut session, "s1", TASKS, 0);
    subscribe(&mut session, "s2", APPROVALS, 0);
    actions(&mut session);
    session.subscribed(&id("s1"), position(EPOCH, 0), None, Vec::new());
    // APPROVALS's subscribe is still in flight: it does not count yet.
    let listed: Vec<String> = session.subscriptions().map(|c| c.to_string()).collect();
    assert_eq!(listed, vec![TASKS.to_owned()]);
    session.subscribed(&id("s2"), position(EPOCH, 0), None, Vec::new());
    let mut listed: Vec<String> = session.subscriptions().map(|c| c.to_string()).collect();
    listed.sort();
    assert_eq!(listed, vec![APPROVALS.to_owned(), TASKS.to_owned()]);
    session.close(close_code::INTERNAL_ERROR, "the shell failed");
    assert_eq!(session.subscriptions().count(), 0);
    assert!(!session.is_subscribed(&channel(TASKS)));
}

// FERRY-SUBSCRIBE-2

#[test]
fn events_published_while_a_subscribe_is_in_flight_follow_the_reply() {
    let mut session = session();
    subscribe(&mut session, "s1", TASKS, 0);
    actions(&mut session);
    // The shell feeds live events from before it reads the head (seq 5).
    for seq in [5, 6, 7] {
        session.deliver(&event(TASKS, EPOCH, seq));
    }
    assert_eq!(drain(&mut session), vec![], "nothing before the reply");
    session.subscribed(&id("s1"), position(EPOCH, 5), None, Vec::new());
    assert_eq!(
        drain(&mut session),
        vec![
            subscribed("s1", TASKS, position(EPOCH, 5)),
            live(event(TASKS, EPOCH, 6)),
            live(event(TASKS, EPOCH, 7)),
        ]
    );
    session.deliver(&event(TASKS, EPOCH, 8));
    assert_eq!(drain(&mut session), vec![live(event(TASKS, EPOCH, 8))]);
}

// FERRY-EVENT-2

#[test]
fn live_events_reach_only_held_channels_in_order_and_never_twice() {
    let mut session = session();
    session.deliver(&event(TASKS, EPOCH, 1));
    assert_eq!(drain(&mut session), vec![], "not subscribed");
    hold(&mut session, "s1", TASKS, position(EPOCH, 1));
    session.deliver(&event(APPROVALS, EPOCH, 2));
    session.deliver(&event(TASKS, EPOCH, 1));
    session.deliver(&event(TASKS, EPOCH, 2));
    session.deliver(&event(TASKS, EPOCH, 2));
    // A new epoch goes through: the client sees the epoch change and says so.
    session.deliver(&event(TASKS, "ep-new", 1));
    assert_eq!(
        drain(&mut session),
        vec![
            live(event(TASKS, EPOCH, 2)),
            live(event(TASKS, "ep-new", 1))
        ]
    );
}

// FERRY-SUBSCRIBE-3

#[test]
fn unsubscribe_is_answered_and_no_event_of_the_channel_follows() {
    let mut session = session();
    hold(&mut session, "s1", TASKS, position(EPOCH, 0));
    unsubscribe(&mut session, "u1", TASKS, 0);
    assert_eq!(drain(&mut session), vec![unsubscribed("u1", TASKS)]);
    assert_eq!(
        actions(&mut session),
        vec![Action::Unsubscribe {
            id: id("u1"),
            channel: channel(TASKS)
        }]
    );
    session.deliver(&event(TASKS, EPOCH, 1));
    assert_eq!(drain(&mut session), vec![]);
    assert!(!session.is_subscribed(&channel(TASKS)));
}

#[test]
fn an_unsubscribe_of_a_channel_not_held_is_still_answered() {
    let mut session = session();
    unsubscribe(&mut session, "u1", TASKS, 0);
    assert_eq!(drain(&mut session), vec![unsubscribed("u1", TASKS)]);
    assert_eq!(session.poll_action(), None, "no broker work");
}

#[test]
fn an_unsubscribe_behind_a_subscribe_in_flight_is_answered_after_it() {
    let mut session = session();
    subscribe(&mut session, "s1", TASKS, 0);
    unsubscribe(&mut session, "u1", TASKS, 0);
    subscribe(&mut session, "s2", TASKS, 0);
    assert_eq!(
        drain(&mut session),
        vec![],
        "both wait for the subscribe's reply"
    );
    assert_eq!(actions(&mut session).len(), 1);
    session.deliver(&event(TASKS, EPOCH, 1));
    session.subscribed(&id("s1"), position(EPOCH, 0), None, Vec::new());
    assert_eq!(
        drain(&mut session),
        vec![
            subscribed("s1", TASKS, position(EPOCH, 0)),
            live(event(TASKS, EPOCH, 1)),
            unsubscribed("u1", TASKS),
        ]
    );
    assert_eq!(
        actions(&mut session),
        vec![
            Action::Unsubscribe {
                id: id("u1"),
                channel: channel(TASKS)
            },
            Action::Subscribe {
                presence: None,
                hold: None,
                id: id("s2"),
                channel: channel(TASKS),
                from: None
            },
        ]
    );
    // Between the unsubscribe and the new subscribe's reply, events are buffered, not sent.
    session.deliver(&event(TASKS, EPOCH, 2));
    assert_eq!(drain(&mut session), vec![]);
    session.subscribed(&id("s2"), position(EPOCH, 2), None, Vec::new());
    assert_eq!(
        drain(&mut session),
        vec![subscribed("s2", TASKS, position(EPOCH, 2))]
    );
}

// FERRY-PUBLISH-1, FERRY-DEDUP-1

#[test]
fn a_publish_is_acknowledged_only_with_the_stored_position() {
    let mut session = session();
    publish(&mut session, "p1", TASKS, "task-1", 0);
    assert_eq!(
        actions(&mut session),
        vec![Action::Publish {
            fence: None,
            id: id("p1"),
            channel: channel(TASKS),
            idempotency_key: "task-1".parse().expect("a valid key"),
            payload: Payload::from(json!({"n": 1})),
        }]
    );
    assert_eq!(
        drain(&mut session),
        vec![],
        "nothing before the event is stored"
    );
    let ack = |duplicate| PublishResponse {
        channel: channel(TASKS),
        duplicate,
        message_id: "msg_01JD3F9A7XKQ".parse::<MessageId>().expect("a valid id"),
        position: position(EPOCH, 46),
    };
    session.published(&id("p1"), ack(false));
    let published = |request: &str, duplicate| {
        Out::Message(ServerMessage::Published(Published {
            channel: channel(TASKS),
            duplicate,
            id: id(request),
            message_id: "msg_01JD3F9A7XKQ".parse().expect("a valid id"),
            position: position(EPOCH, 46),
        }))
    };
    assert_eq!(drain(&mut session), vec![published("p1", false)]);
    // The retry with the same key: the shell's dedup window answers with the original.
    publish(&mut session, "p1-retry", TASKS, "task-1", 0);
    actions(&mut session);
    session.published(&id("p1-retry"), ack(true));
    assert_eq!(drain(&mut session), vec![published("p1-retry", true)]);
    // An answer for no publish in flight is ignored.
    session.published(&id("p1"), ack(false));
    assert_eq!(drain(&mut session), vec![]);
}

#[test]
fn a_refused_publish_gets_the_error_with_its_id() {
    let mut session = session();
    publish(&mut session, "p1", TASKS, "task-1", 0);
    actions(&mut session);
    session.request_failed(
        &id("p1"),
        ErrorInfo {
            code: ErrorCode::PayloadInvalid,
            message: "/progress: 1.5 is above the maximum of 1"
                .parse()
                .expect("short"),
            retry_after_ms: None,
            retryable: false,
        },
    );
    assert_eq!(
        error_parts(&drain(&mut session)[0]),
        refusal(Some("p1"), ErrorCode::PayloadInvalid)
    );
}

#[test]
fn a_request_id_still_in_progress_is_refused() {
    let mut session = session();
    publish(&mut session, "r1", TASKS, "k1", 0);
    subscribe(&mut session, "r1", TASKS, 0);
    let out = drain(&mut session);
    assert_eq!(
        error_parts(&out[0]),
        refusal(Some("r1"), ErrorCode::BadRequest)
    );
    assert_eq!(actions(&mut session).len(), 1, "only the publish");
    session.published(
        &id("r1"),
        PublishResponse {
            channel: channel(TASKS),
            duplicate: false,
            message_id: "m1".parse().expect("a valid id"),
            position: position(EPOCH, 1),
        },
    );
    drain(&mut session);
    // Once answered, the id may be used again.
    subscribe(&mut session, "r1", TASKS, 0);
    assert_eq!(actions(&mut session).len(), 1);
}

// FERRY-SIZE-1

#[test]
fn an_event_above_the_maximum_size_is_never_sent_and_a_notice_takes_its_place() {
    let mut session = session_with(config_with(|config| {
        config.limits.max_message_bytes = UInt::new(1024).expect("in bounds");
    }));
    hold(&mut session, "s1", TASKS, position(EPOCH, 0));
    let mut big = event_value(TASKS, EPOCH, 1);
    big.payload = Payload::from(json!({"text": "x".repeat(2000)}));
    session.deliver(&big.into());
    session.deliver(&event(TASKS, EPOCH, 2));
    let out = drain(&mut session);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(
        error_parts(&out[0]),
        refusal(None, ErrorCode::MessageTooLarge)
    );
    assert_eq!(out[1], live(event(TASKS, EPOCH, 2)));
}

#[test]
fn an_event_of_exactly_the_maximum_size_is_sent_and_one_byte_more_is_not() {
    let mut session = session_with(config_with(|config| {
        config.limits.max_message_bytes = UInt::new(1024).expect("in bounds");
    }));
    hold(&mut session, "s1", TASKS, position(EPOCH, 0));
    // An event of `bytes` bytes as a frame: its payload padded to make up the difference.
    let sized = |seq: u64, bytes: usize| -> EncodedEvent {
        let padded = |pad: usize| {
            let mut event = event_value(TASKS, EPOCH, seq);
            event.payload = Payload::from(json!({ "text": "x".repeat(pad) }));
            EncodedEvent::new(event)
        };
        let encoded = padded(bytes - padded(0).len());
        assert_eq!(encoded.len(), bytes);
        encoded
    };
    session.deliver(&sized(1, 1024));
    session.deliver(&sized(2, 1025));
    let out = drain(&mut session);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0], live(sized(1, 1024)));
    assert_eq!(
        error_parts(&out[1]),
        refusal(None, ErrorCode::MessageTooLarge)
    );
}

#[test]
fn an_error_too_large_to_send_goes_out_with_its_code_as_its_message() {
    let mut session = session_with(config_with(|config| {
        config.limits.max_message_bytes = UInt::new(1024).expect("in bounds");
    }));
    subscribe(&mut session, "s1", TASKS, 0);
    actions(&mut session);
    session.request_failed(
        &id("s1"),
        ErrorInfo {
            code: ErrorCode::Internal,
            message: "x".repeat(1024).parse().expect("the longest message"),
            retry_after_ms: None,
            retryable: true,
        },
    );
    match drain(&mut session).as_slice() {
        [Out::Message(ServerMessage::Error(error))] => {
            assert_eq!(error.id.as_ref().map(|id| id.as_str()), Some("s1"));
            assert_eq!(error.error.code, ErrorCode::Internal);
            assert_eq!(*error.error.message, "internal");
        }
        other => panic!("one short error, and the session open: {other:?}"),
    }
}

// FERRY-SIZE-4

#[test]
fn max_event_bytes_is_the_size_of_the_longest_event_a_publish_can_produce() {
    let payload = Payload::from(json!({"text": "é\"x", "n": [1, 2.5, null]}));
    let largest = UInt::new(crate::bounded::MAX_SAFE_INTEGER).expect("in bounds");
    let longest = ServerMessage::Event(Event {
        channel: channel(TASKS),
        message_id: "\"".repeat(128).parse().expect("a valid message id"),
        payload: payload.clone(),
        position: StreamPosition {
            epoch: "e".repeat(64).parse().expect("a valid epoch"),
            seq: Seq(largest),
        },
        published_at_ms: UnixMillis(largest),
    });
    let exact = Codec::new(usize::MAX)
        .encode(&longest)
        .expect("encodes")
        .len();
    assert_eq!(max_event_bytes(&channel(TASKS), &payload), exact);
    // Any event a server actually makes is at most that.
    let mut real = event_value(TASKS, EPOCH, 1);
    real.payload = payload.clone();
    let real = Codec::new(usize::MAX)
        .encode(&ServerMessage::Event(real))
        .expect("encodes")
        .len();
    assert!(real < exact, "{real} < {exact}");
}

#[test]
fn a_publish_whose_event_could_exceed_the_maximum_is_refused_with_its_id_and_one_that_fits_goes_on()
{
    const MAX: usize = 1024;
    let mut session = session_with(config_with(|config| {
        config.limits.max_message_bytes = UInt::new(MAX as u64).expect("in bounds");
    }));
    let payload = |n: usize| json!({"text": "x".repeat(n)});
    // The bound grows by one byte per character of text: size the text so that it is exactly
    // the maximum.
    let base = max_event_bytes(&channel(TASKS), &Payload::from(payload(0)));
    let fits = MAX - base;
    assert_eq!(
        max_event_bytes(&channel(TASKS), &Payload::from(payload(fits))),
        MAX
    );
    let frame = |request: &str, n: usize| {
        json!({
            "type": "publish", "id": request, "channel": TASKS,
            "idempotency_key": request, "payload": payload(n)
        })
        .to_string()
    };
    // The publish frame itself is well under the maximum: only its event could exceed it.
    assert!(frame("p1", fits + 1).len() < MAX);
    send(&mut session, &frame("p1", fits + 1), 0);
    assert_eq!(
        error_parts(&drain(&mut session)[0]),
        refusal(Some("p1"), ErrorCode::MessageTooLarge)
    );
    assert_eq!(session.poll_action(), None, "nothing reaches the broker");
    assert!(!session.is_closed());
    send(&mut session, &frame("p2", fits), 0);
    assert!(drain(&mut session).is_empty());
    assert!(matches!(
        actions(&mut session).as_slice(),
        [Action::Publish { id: p2, .. }] if *p2 == id("p2")
    ));
    assert_eq!(
        check_event_size(&channel(TASKS), &Payload::from(payload(fits + 1)), MAX),
        Err(EventTooLarge {
            bound: MAX + 1,
            max: MAX
        })
    );
}

// FERRY-SHUTDOWN-1

#[test]
fn shutdown_sends_a_goodbye_with_the_retry_hint_then_closes_with_1012() {
    for (reason, restart) in [
        (GoodbyeReason::Shutdown, false),
        (GoodbyeReason::Restart, true),
    ] {
        let mut session = session();
        publish(&mut session, "p1", TASKS, "k1", 0);
        if restart {
            session.restart(Duration::from_millis(3_500), at(1_000));
        } else {
            session.shutdown(Duration::from_millis(3_500), at(1_000));
        }
        let out = drain(&mut session);
        let [Out::Message(ServerMessage::Goodbye(goodbye)), close] = out.as_slice() else {
            panic!("{out:?}");
        };
        assert_eq!(goodbye.reason, reason);
        assert_eq!(goodbye.retry_after_ms.map(UInt::get), Some(3_500));
        assert_eq!(*close, Out::Close(close_code::SERVICE_RESTART));
        assert_eq!(session.poll_action(), None, "work not yet taken is dropped");
    }
}

// FERRY-SECURITY-2 (close 4403)

#[test]
fn revocation_sends_a_goodbye_revoked_then_closes_with_4403() {
    let mut session = session();
    session.revoke(at(5));
    let out = drain(&mut session);
    let [Out::Message(ServerMessage::Goodbye(goodbye)), close] = out.as_slice() else {
        panic!("{out:?}");
    };
    assert_eq!(goodbye.reason, GoodbyeReason::Revoked);
    assert_eq!(goodbye.retry_after_ms, None);
    assert_eq!(*close, Out::Close(close_code::ACCESS_REVOKED));
}

#[test]
fn after_the_close_nothing_is_emitted_and_every_input_is_ignored() {
    let mut session = session();
    hold(&mut session, "s1", TASKS, position(EPOCH, 0));
    publish(&mut session, "p1", TASKS, "k1", 0);
    session.handle_frame(Frame::Binary(b"x"), at(1));
    assert_eq!(
        drain(&mut session),
        vec![Out::Close(close_code::UNSUPPORTED_DATA)]
    );
    publish(&mut session, "p2", TASKS, "k2", 2);
    session.deliver(&event(TASKS, EPOCH, 1));
    session.published(
        &id("p1"),
        PublishResponse {
            channel: channel(TASKS),
            duplicate: false,
            message_id: "m1".parse().expect("a valid id"),
            position: position(EPOCH, 1),
        },
    );
    session.handle_timeout(at(1_000_000));
    session.shutdown(Duration::ZERO, at(1_000_000));
    session.close(close_code::INTERNAL_ERROR, "again");
    assert_eq!(session.poll_transmit(), None);
    assert_eq!(session.poll_action(), None);
    assert_eq!(session.poll_timeout(), None);
    assert!(session.is_closed());
}

#[test]
fn a_close_reason_is_cut_to_123_bytes_on_a_character_boundary() {
    let mut session = session();
    session.close(close_code::INTERNAL_ERROR, &"é".repeat(100));
    let Some(Transmit::Close { code, reason }) = session.poll_transmit() else {
        panic!("a close");
    };
    assert_eq!(code, close_code::INTERNAL_ERROR);
    assert_eq!(reason, "é".repeat(61));
}

// The property: whatever a client sends and whenever the broker answers.

const CHANNELS: [&str; 4] = [TASKS, APPROVALS, "agent:reviewer", "billing:invoices"];
const MODEL_EPOCH: &str = "ep-1";

#[derive(Debug, Clone)]
enum Op {
    Subscribe {
        channel: usize,
        from: Option<u64>,
    },
    Unsubscribe {
        channel: usize,
    },
    Publish {
        channel: usize,
        key: u8,
    },
    /// `n` publishes at once.
    Flood {
        n: u8,
    },
    Pong {
        answer: bool,
    },
    Malformed {
        which: usize,
    },
    Oversized,
    Binary,
    /// Another publisher's event on a channel.
    External {
        channel: usize,
    },
    Advance {
        ms: u64,
    },
    /// The shell answers an action taken earlier. A subscribe reports the head read when the
    /// action was taken, or (`read_late`) the head now, after events buffered meanwhile.
    Answer {
        index: usize,
        succeed: bool,
        read_late: bool,
    },
    Shutdown,
}

fn op() -> impl Strategy<Value = Op> {
    // Weighted so that about half the runs end with the session still open (and the end-state
    // checks apply); the other half close it by one of the ways a session ends.
    prop_oneof![
        60 => (0..CHANNELS.len(), proptest::option::of(0u64..8))
            .prop_map(|(channel, from)| Op::Subscribe { channel, from }),
        30 => (0..CHANNELS.len()).prop_map(|channel| Op::Unsubscribe { channel }),
        50 => (0..CHANNELS.len(), 0u8..4).prop_map(|(channel, key)| Op::Publish { channel, key }),
        3 => (1u8..26).prop_map(|n| Op::Flood { n }),
        50 => prop_oneof![4 => Just(true), 1 => Just(false)].prop_map(|answer| Op::Pong { answer }),
        15 => (0..MALFORMED.len()).prop_map(|which| Op::Malformed { which }),
        1 => Just(Op::Oversized),
        1 => Just(Op::Binary),
        60 => (0..CHANNELS.len()).prop_map(|channel| Op::External { channel }),
        60 => prop_oneof![Just(0u64), 1u64..300, 300u64..2000].prop_map(|ms| Op::Advance { ms }),
        80 => (
            any::<usize>(),
            prop_oneof![4 => Just(true), 1 => Just(false)],
            any::<bool>(),
        )
            .prop_map(|(index, succeed, read_late)| Op::Answer { index, succeed, read_late }),
        1 => Just(Op::Shutdown),
    ]
}

const MALFORMED: [&str; 5] = [
    "{",
    "42",
    r#"{"type":"subscribe_all"}"#,
    r#"{"type":"publish","id":"x"}"#,
    r#"{"type":"unsubscribe","id":"bad id","channel":"a"}"#,
];

/// The shell and broker of the property: one epoch per channel, every stored event delivered
/// to the session at once, subscribes answered with the head read when the action was taken.
struct Model {
    session: ServerSession,
    now: u64,
    heads: HashMap<usize, u64>,
    /// Actions taken but not answered, with the head read at the time for a subscribe.
    taken: Vec<(Action, u64)>,
    next_id: u64,
    /// Every request id sent in a well-formed request, and whether it carried `from`.
    requests: HashMap<String, Option<bool>>,
    replies: HashMap<String, usize>,
    /// Per channel, the next seq the client must see, while subscribed.
    expected: HashMap<String, u64>,
    last_ping: Option<String>,
    /// Per channel, the number of the latest request whose success reply came.
    taken_effect: HashMap<String, u64>,
    closed: bool,
}

impl Model {
    fn new() -> Self {
        let config = config_with(|config| {
            config.heartbeat = HeartbeatPolicy {
                interval_ms: UInt::new(1_000).expect("in bounds"),
                timeout_ms: UInt::new(2_500).expect("in bounds"),
            };
            config.limits.max_message_bytes = UInt::new(1024).expect("in bounds");
            config.limits.max_subscriptions = UInt::new(2).expect("in bounds");
        });
        let mut model = Self {
            session: ServerSession::new(config, grant(), session_id(), at(0)),
            now: 0,
            heads: HashMap::new(),
            taken: Vec::new(),
            next_id: 0,
            requests: HashMap::new(),
            replies: HashMap::new(),
            expected: HashMap::new(),
            last_ping: None,
            taken_effect: HashMap::new(),
            closed: false,
        };
        let welcome = drain(&mut model.session);
        assert!(matches!(
            welcome.as_slice(),
            [Out::Message(ServerMessage::Welcome(_))]
        ));
        model
    }

    fn fresh_id(&mut self, from: Option<bool>) -> String {
        self.next_id += 1;
        let request = format!("r{}", self.next_id);
        self.requests.insert(request.clone(), from);
        request
    }

    fn frame(&mut self, text: &str) {
        self.session
            .handle_frame(Frame::Text(text.as_bytes()), at(self.now));
    }

    fn store(&mut self, index: usize) -> EncodedEvent {
        let head = self.heads.entry(index).or_insert(0);
        *head += 1;
        event(CHANNELS[index], MODEL_EPOCH, *head)
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Subscribe {
                channel: index,
                from,
            } => {
                let request = self.fresh_id(Some(from.is_some()));
                let mut message =
                    json!({"type": "subscribe", "id": request, "channel": CHANNELS[index]});
                if let Some(seq) = from {
                    message["from"] = json!({"epoch": MODEL_EPOCH, "seq": seq});
                }
                self.frame(&message.to_string());
            }
            Op::Unsubscribe { channel: index } => {
                let request = self.fresh_id(None);
                self.frame(
                    &json!({"type": "unsubscribe", "id": request, "channel": CHANNELS[index]})
                        .to_string(),
                );
            }
            Op::Publish {
                channel: index,
                key,
            } => self.publish(index, key),
            Op::Flood { n } => {
                for key in 0..n {
                    self.publish(0, key);
                }
            }
            Op::Pong { answer } => {
                let nonce = match (&self.last_ping, answer) {
                    (Some(nonce), true) => nonce.clone(),
                    _ => "hb-0".to_owned(),
                };
                self.frame(&json!({"type": "pong", "nonce": nonce}).to_string());
            }
            Op::Malformed { which } => self.frame(MALFORMED[which]),
            Op::Oversized => self.frame(&"x".repeat(1025)),
            Op::Binary => self
                .session
                .handle_frame(Frame::Binary(b"\x00"), at(self.now)),
            Op::External { channel: index } => {
                let stored = self.store(index);
                self.session.deliver(&stored);
            }
            Op::Advance { ms } => {
                self.now += ms;
                self.session.handle_timeout(at(self.now));
            }
            Op::Answer {
                index,
                succeed,
                read_late,
            } => {
                if !self.taken.is_empty() {
                    let (action, mut head) = self.taken.remove(index % self.taken.len());
                    if read_late {
                        head = self.head_of(&action);
                    }
                    self.answer(action, head, succeed);
                }
            }
            Op::Shutdown => self
                .session
                .shutdown(Duration::from_millis(500), at(self.now)),
        }
        self.take_actions();
        self.check_transmits();
    }

    fn publish(&mut self, index: usize, key: u8) {
        let request = self.fresh_id(None);
        self.frame(
            &json!({
                "type": "publish", "id": request, "channel": CHANNELS[index],
                "idempotency_key": format!("k{key}"), "payload": {"key": key}
            })
            .to_string(),
        );
    }

    fn take_actions(&mut self) {
        while let Some(action) = self.session.poll_action() {
            let head = self.head_of(&action);
            self.taken.push((action, head));
        }
    }

    /// The current head of a subscribe's channel (0 for other actions).
    fn head_of(&self, action: &Action) -> u64 {
        let Action::Subscribe { channel, .. } = action else {
            return 0;
        };
        let index = CHANNELS
            .iter()
            .position(|name| *name == channel.as_str())
            .expect("a model channel");
        self.heads.get(&index).copied().unwrap_or(0)
    }

    fn answer(&mut self, action: Action, head: u64, succeed: bool) {
        let failure = |code| ErrorInfo {
            code,
            message: "refused".parse().expect("short"),
            retry_after_ms: None,
            retryable: false,
        };
        match action {
            Action::Subscribe {
                id, from, channel, ..
            } if succeed => {
                let replay = from
                    .filter(|from| from.seq.get() <= head)
                    .map(|from| {
                        (from.seq.get() + 1..=head)
                            .map(|seq| event(channel.as_str(), MODEL_EPOCH, seq))
                            .collect()
                    })
                    .unwrap_or_default();
                self.session
                    .subscribed(&id, position(MODEL_EPOCH, head), None, replay);
            }
            Action::Subscribe { id, .. } => self
                .session
                .request_failed(&id, failure(ErrorCode::Unavailable)),
            Action::Publish { id, channel, .. } if succeed => {
                let index = CHANNELS
                    .iter()
                    .position(|name| *name == channel.as_str())
                    .expect("a model channel");
                let stored = self.store(index);
                self.session.deliver(&stored);
                self.session.published(
                    &id,
                    PublishResponse {
                        channel,
                        duplicate: false,
                        message_id: stored.event().message_id.clone(),
                        position: stored.event().position.clone(),
                    },
                );
            }
            Action::Publish { id, .. } => self
                .session
                .request_failed(&id, failure(ErrorCode::PayloadInvalid)),
            Action::Unsubscribe { .. } => {}
            Action::Rpc { .. } => unreachable!("the model makes no calls"),
            Action::Members { .. } => unreachable!("the model keeps no presence"),
        }
    }

    /// Reads what the session sent as a client would, checking the transcript as it goes.
    fn check_transmits(&mut self) {
        for out in drain(&mut self.session) {
            assert!(!self.closed, "{out:?} after the close");
            let reply_to = match &out {
                Out::Close(_) => {
                    self.closed = true;
                    None
                }
                Out::Message(ServerMessage::Ping(ping)) => {
                    self.last_ping = Some(ping.nonce.to_string());
                    None
                }
                Out::Message(ServerMessage::Subscribed(reply)) => {
                    self.took_effect(&reply.channel, &reply.id);
                    let carried_from = self.requests.get(reply.id.as_str()).copied().flatten();
                    assert_eq!(carried_from, Some(reply.recovery.is_some()), "{reply:?}");
                    let replayed = reply
                        .recovery
                        .as_ref()
                        .map_or(0, |recovery| recovery.replayed.get());
                    let previous = self.expected.insert(
                        reply.channel.to_string(),
                        reply.position.seq.get() - replayed + 1,
                    );
                    assert_eq!(previous, None, "subscribed twice: {reply:?}");
                    Some(reply.id.to_string())
                }
                Out::Message(ServerMessage::RpcResult(answer)) => {
                    panic!("an rpc_result, but the model makes no calls: {answer:?}")
                }
                Out::Message(ServerMessage::Unsubscribed(reply)) => {
                    self.took_effect(&reply.channel, &reply.id);
                    self.expected.remove(reply.channel.as_str());
                    Some(reply.id.to_string())
                }
                Out::Message(ServerMessage::Event(event)) => {
                    let next = self
                        .expected
                        .get_mut(event.channel.as_str())
                        .unwrap_or_else(|| panic!("an event while not subscribed: {event:?}"));
                    assert_eq!(event.position.seq.get(), *next, "no gap, no repetition");
                    *next += 1;
                    None
                }
                Out::Message(ServerMessage::Published(reply)) => Some(reply.id.to_string()),
                Out::Message(ServerMessage::Error(error)) => {
                    error.id.as_ref().map(|id| id.to_string())
                }
                Out::Message(ServerMessage::Goodbye(_)) => None,
                Out::Message(ServerMessage::Welcome(_)) => panic!("a second welcome"),
                Out::Message(ServerMessage::MemberPage(_) | ServerMessage::Presence(_)) => {
                    panic!("presence, but the model keeps none: {out:?}")
                }
            };
            if let Some(request) = reply_to {
                assert!(self.requests.contains_key(&request), "a reply to {request}");
                *self.replies.entry(request).or_default() += 1;
            }
        }
    }

    /// Subscribes and unsubscribes of one channel take effect in the order they were sent.
    fn took_effect(&mut self, channel: &ChannelName, request: &RequestId) {
        let number: u64 = request[1..].parse().expect("model ids are r<n>");
        let previous = self.taken_effect.insert(channel.to_string(), number);
        assert!(
            previous < Some(number),
            "{} took effect on {} after r{previous:?}",
            request.as_str(),
            channel.as_str()
        );
    }

    /// Answers everything outstanding, then checks the end state.
    fn finish(mut self) -> Result<(), TestCaseError> {
        while !self.taken.is_empty() {
            let (action, head) = self.taken.remove(0);
            self.answer(action, head, true);
            self.take_actions();
            self.check_transmits();
        }
        for (request, count) in &self.replies {
            prop_assert!(*count <= 1, "{} got {} replies", request, count);
        }
        if !self.closed {
            for request in self.requests.keys() {
                prop_assert_eq!(
                    self.replies.get(request).copied(),
                    Some(1),
                    "{} got no reply",
                    request
                );
            }
            // Every event after the subscribed position reached the client.
            for (name, next) in &self.expected {
                let index = CHANNELS
                    .iter()
                    .position(|channel| channel == name)
                    .expect("a model channel");
                let head = self.heads.get(&index).copied().unwrap_or(0);
                prop_assert_eq!(*next, head + 1, "{} missed events", name);
            }
        }
        prop_assert_eq!(self.session.poll_transmit(), None);
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn every_request_gets_exactly_one_reply_events_never_gap_and_nothing_follows_the_close(
        ops in proptest::collection::vec(op(), 0..80),
    ) {
        let mut model = Model::new();
        for op in ops {
            model.apply(op);
        }
        model.finish()?;
    }
}

#[test]
fn an_error_quoting_a_long_value_is_cut_to_a_valid_message() {
    let quoted = format!("the payload {:?} is not an object", "x".repeat(5_000));
    let info = super::error_info(ErrorCode::PayloadInvalid, &quoted);
    assert_eq!(info.message.as_str().chars().count(), 256);
    assert!(quoted.starts_with(info.message.as_str()));
    assert!(
        !info.retryable,
        "the table says payload_invalid is not retryable"
    );
    let info = super::error_info(ErrorCode::RateLimited, "slow down");
    assert!(info.retryable);
    assert_eq!(info.message.as_str(), "slow down");
}

// FERRY-HEARTBEAT-5

fn idle_after(ms: u64) -> ServerSession {
    session_with(config_with(|c| {
        c.idle_timeout = Some(Duration::from_millis(ms))
    }))
}

#[test]
fn a_session_without_subscriptions_closes_with_4411_after_the_idle_timeout_and_pongs_do_not_count()
{
    let mut session = idle_after(50_000);
    session.handle_timeout(at(20_000));
    assert_eq!(drain(&mut session), vec![ping("hb-1")]);
    pong(&mut session, "hb-1", 20_001);
    session.handle_timeout(at(40_000));
    assert_eq!(drain(&mut session), vec![ping("hb-2")]);
    pong(&mut session, "hb-2", 40_001);
    assert_eq!(session.poll_timeout(), Some(at(50_000)));
    session.handle_timeout(at(49_999));
    assert_eq!(drain(&mut session), vec![]);
    session.handle_timeout(at(50_000));
    assert_eq!(
        drain(&mut session),
        vec![Out::Close(close_code::IDLE_TIMEOUT)]
    );
    assert!(session.is_closed());
}

#[test]
fn a_session_holding_a_subscription_is_never_idle_and_idleness_counts_from_its_unsubscribe() {
    let mut session = idle_after(5_000);
    hold(&mut session, "r1", TASKS, position(EPOCH, 3));
    assert_eq!(
        session.poll_timeout(),
        Some(at(20_000)),
        "the next ping only"
    );
    session.handle_timeout(at(19_999));
    assert_eq!(drain(&mut session), vec![]);
    unsubscribe(&mut session, "r2", TASKS, 19_999);
    assert_eq!(drain(&mut session), vec![unsubscribed("r2", TASKS)]);
    session.handle_timeout(at(24_998));
    assert_eq!(drain(&mut session), vec![ping("hb-1")]);
    session.handle_timeout(at(24_999));
    assert_eq!(
        drain(&mut session),
        vec![Out::Close(close_code::IDLE_TIMEOUT)]
    );
}

#[test]
fn a_subscribe_in_flight_holds_the_session_and_its_refusal_starts_the_idle_timeout() {
    let mut session = idle_after(5_000);
    subscribe(&mut session, "r1", TASKS, 1_000);
    assert_eq!(actions(&mut session).len(), 1);
    session.handle_timeout(at(10_000));
    assert_eq!(drain(&mut session), vec![], "pending: not idle");
    session.request_failed(&id("r1"), error_info(ErrorCode::Unavailable, "broker down"));
    assert_eq!(drain(&mut session).len(), 1, "the refusal");
    assert_eq!(session.poll_timeout(), Some(at(15_000)));
}

#[test]
fn any_message_but_a_pong_restarts_the_idle_timeout_and_without_one_a_session_is_never_idle() {
    let mut idle = idle_after(5_000);
    publish(&mut idle, "p1", TASKS, "k-1", 4_000);
    assert_eq!(idle.poll_timeout(), Some(at(9_000)));
    send(&mut idle, "not json", 8_000);
    assert_eq!(
        idle.poll_timeout(),
        Some(at(13_000)),
        "a malformed frame counts"
    );

    let mut never = session();
    never.handle_timeout(at(19_999));
    assert_eq!(drain(&mut never), vec![]);
    assert_eq!(never.poll_timeout(), Some(at(20_000)));
}

/// A session whose application declares `tasks:start`, for a user who may call `tasks:*`.
fn rpc_session(timeout_ms: u64) -> ServerSession {
    let config = config_with(|config| {
        config.methods = vec!["tasks:start".parse().expect("a valid method name")].into();
        config.rpc_timeout = Duration::from_millis(timeout_ms);
    });
    let mut grant = grant();
    let mut call = permission("tasks:*", false, false);
    call.call = Some(true);
    grant.permissions.push(call);
    let mut session = ServerSession::new(config, grant, session_id(), at(0));
    match drain(&mut session).as_slice() {
        [Out::Message(ServerMessage::Welcome(welcome))] => assert_eq!(
            welcome.rpc.as_ref().map(|rpc| rpc.timeout_ms.get()),
            Some(timeout_ms),
            "FERRY-RPC-2: the welcome advertises the timeout"
        ),
        other => panic!("{other:?}"),
    }
    session
}

fn call(session: &mut ServerSession, request: &str, method: &str, ms: u64) {
    send(
        session,
        &json!({"type": "rpc", "id": request, "method": method, "idempotency_key": format!("k-{request}"), "params": {"project": "alpha"}}).to_string(),
        ms,
    );
}

fn error_of(out: &[Out]) -> Vec<(Option<String>, ErrorCode, bool)> {
    out.iter()
        .filter_map(|out| match out {
            Out::Message(ServerMessage::Error(error)) => Some((
                error.id.as_ref().map(|id| id.as_str().to_owned()),
                error.error.code,
                error.error.retryable,
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn a_server_without_methods_advertises_no_rpc_policy_and_knows_no_method() {
    let mut session = ServerSession::new(ServerConfig::default(), grant(), session_id(), at(0));
    match drain(&mut session).as_slice() {
        [Out::Message(ServerMessage::Welcome(welcome))] => assert_eq!(welcome.rpc, None),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_call_is_checked_for_call_permission_then_for_a_declared_method() {
    let mut session = rpc_session(5_000);
    // The grant's other permissions read and write, but only tasks:* carries call.
    call(&mut session, "r1", "project:alpha:tasks", 1);
    call(&mut session, "r2", "tasks:cancel", 2);
    assert_eq!(
        error_of(&drain(&mut session)),
        vec![
            (Some("r1".into()), ErrorCode::Forbidden, false),
            (Some("r2".into()), ErrorCode::UnknownMethod, false)
        ]
    );
    assert_eq!(
        actions(&mut session),
        vec![],
        "a refused call is not executed"
    );

    call(&mut session, "r3", "tasks:start", 3);
    assert_eq!(
        actions(&mut session),
        vec![Action::Rpc {
            id: "r3".parse().expect("valid"),
            method: "tasks:start".parse().expect("valid"),
            idempotency_key: "k-r3".parse().expect("valid"),
            params: Payload::from(json!({"project": "alpha"})),
        }]
    );
    // Its id is taken until it is answered.
    call(&mut session, "r3", "tasks:start", 4);
    assert_eq!(
        error_of(&drain(&mut session)),
        vec![(Some("r3".into()), ErrorCode::BadRequest, false)]
    );
    session.answered(
        &"r3".parse().expect("valid"),
        Ok(Payload::from(json!({"task_id": "t-1"}))),
        true,
        at(5),
    );
    match drain(&mut session).as_slice() {
        [Out::Message(ServerMessage::RpcResult(answer))] => {
            assert_eq!(answer.id.as_str(), "r3");
            assert_eq!(answer.method.as_str(), "tasks:start");
            assert_eq!(
                answer.result.to_value().expect("json"),
                json!({"task_id": "t-1"})
            );
            assert!(answer.duplicate);
        }
        other => panic!("{other:?}"),
    }
    // Answered once: a second answer for the id is dropped.
    session.answered(
        &"r3".parse().expect("valid"),
        Ok(Payload::from(json!(1))),
        false,
        at(6),
    );
    assert_eq!(drain(&mut session), vec![]);
}

#[test]
fn an_answer_whose_id_names_a_publish_in_flight_leaves_the_publish_alone() {
    let mut session = session();
    publish(&mut session, "p1", TASKS, "task-1", 0);
    actions(&mut session);
    session.answered(&id("p1"), Ok(Payload::from(json!(1))), false, at(1));
    assert_eq!(drain(&mut session), vec![], "p1 is no call");
    session.published(
        &id("p1"),
        PublishResponse {
            channel: channel(TASKS),
            duplicate: false,
            message_id: "msg_01JD3F9A7XKQ".parse::<MessageId>().expect("a valid id"),
            position: position(EPOCH, 1),
        },
    );
    match drain(&mut session).as_slice() {
        [Out::Message(ServerMessage::Published(published))] => {
            assert_eq!(published.id.as_str(), "p1");
        }
        other => panic!("the publish is still acknowledged: {other:?}"),
    }
}

#[test]
fn a_call_unanswered_for_the_rpc_timeout_gets_timeout_and_its_late_answer_is_dropped() {
    let mut session = rpc_session(5_000);
    call(&mut session, "r1", "tasks:start", 1_000);
    call(&mut session, "r2", "tasks:start", 2_000);
    assert_eq!(actions(&mut session).len(), 2);
    assert_eq!(session.poll_timeout(), Some(at(6_000)), "r1's deadline");
    session.handle_timeout(at(5_999));
    assert_eq!(error_of(&drain(&mut session)), vec![]);
    session.handle_timeout(at(6_000));
    assert_eq!(
        error_of(&drain(&mut session)),
        vec![(Some("r1".into()), ErrorCode::Timeout, true)],
        "timeout is retryable: the call may still complete"
    );
    assert_eq!(session.poll_timeout(), Some(at(7_000)), "r2's deadline");
    session.answered(
        &"r1".parse().expect("valid"),
        Ok(Payload::from(json!(1))),
        false,
        at(6_100),
    );
    session.answered(
        &"r2".parse().expect("valid"),
        Ok(Payload::from(json!(2))),
        false,
        at(6_200),
    );
    match drain(&mut session).as_slice() {
        [Out::Message(ServerMessage::RpcResult(answer))] => assert_eq!(answer.id.as_str(), "r2"),
        other => panic!("only r2 is answered: {other:?}"),
    }
    assert_eq!(
        session.poll_timeout(),
        Some(at(20_000)),
        "the next ping only"
    );
}

#[test]
fn a_failed_call_gets_the_shells_error_and_an_oversized_result_gets_message_too_large() {
    let mut session = rpc_session(5_000);
    call(&mut session, "r1", "tasks:start", 1);
    call(&mut session, "r2", "tasks:start", 2);
    session.answered(
        &"r1".parse().expect("valid"),
        Err(ErrorInfo {
            code: ErrorCode::Rejected,
            message: "already running".parse().expect("short"),
            retry_after_ms: None,
            retryable: true,
        }),
        false,
        at(3),
    );
    let big = "x".repeat(session.max_message_bytes());
    session.answered(
        &"r2".parse().expect("valid"),
        Ok(Payload::from(json!(big))),
        false,
        at(4),
    );
    assert_eq!(
        error_of(&drain(&mut session)),
        vec![
            (Some("r1".into()), ErrorCode::Rejected, false),
            (Some("r2".into()), ErrorCode::MessageTooLarge, false)
        ],
        "the table's retryable flag, and no oversized frame"
    );
    assert!(!session.is_closed());
}

#[test]
fn an_answer_that_comes_after_the_deadline_is_dropped_for_the_timeout_even_before_the_timer_fires()
{
    let mut session = rpc_session(5_000);
    call(&mut session, "r1", "tasks:start", 1_000);
    assert_eq!(actions(&mut session).len(), 1);
    // The shell hands the answer in at 6 001 ms before it has handled the timer due at 6 000:
    // the session is brought up to the answer's time first (FERRY-RPC-2).
    session.answered(
        &"r1".parse().expect("valid"),
        Ok(Payload::from(json!({"task_id": "t-1"}))),
        false,
        at(6_001),
    );
    assert_eq!(
        error_of(&drain(&mut session)),
        vec![(Some("r1".into()), ErrorCode::Timeout, true)]
    );
}
mod presence;

#[test]
fn the_channel_states_keep_room_for_the_channels_held_only() {
    let name = |n: &str| -> ChannelName { n.parse().expect("a channel name") };
    let mut states = ChannelStates::default();
    states.or_default(&name("project:alpha:tasks"));
    assert_eq!(states.0.capacity(), 1, "one channel, one entry");
    states.or_default(&name("project:alpha:tasks"));
    assert_eq!(states.0.len(), 1, "the same channel is one entry");
    states.or_default(&name("project:beta:tasks"));
    states.or_default(&name("project:gamma:tasks"));
    assert_eq!(states.0.len(), 3);
    assert!(states.get(&name("project:beta:tasks")).is_some());
    states.remove(&name("project:beta:tasks"));
    assert!(states.get(&name("project:beta:tasks")).is_none());
    assert!(states.get_mut(&name("project:gamma:tasks")).is_some());
    states.remove(&name("project:alpha:tasks"));
    states.remove(&name("project:gamma:tasks"));
    assert_eq!(states.0.capacity(), 0, "no channel, no room");
}

#[test]
fn an_idle_session_keeps_no_room_for_actions() {
    let mut session = session();
    session.handle_frame(
        Frame::Text(br#"{"type":"subscribe","id":"s1","channel":"project:alpha:tasks"}"#),
        at(0),
    );
    assert!(matches!(
        session.poll_action(),
        Some(Action::Subscribe { .. })
    ));
    assert_eq!(session.actions.capacity(), 0);
}
