//! Decoding a frame: Ferry's codec (size gate, UTF-8, typed parse with every schema constraint)
//! beside its floor (`serde_json::from_slice` into a `serde_json::Value`, which checks nothing)
//! and beside generic validation of the same bytes with the `jsonschema` crate (parse into a
//! `Value`, then validate against the bundled schema). And one inbound event handled end to end
//! by the client session (decode, position check, dedup, delivery to the application) beside
//! decoding alone.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ferry_protocol::client::{ConnectionId, Transmit};
use ferry_protocol::{
    ClientConfig, ClientEvent, ClientSession, Codec, Frame, ServerMessage, Timestamp,
};
use serde_json::{Value, json};

/// A typical event: a task's progress on a project channel (about 230 bytes).
fn small_event() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": "event",
        "channel": "project:alpha:tasks",
        "message_id": "msg-01JD3F8Q2W7",
        "position": { "epoch": "ep-01JD3F8Q2W", "seq": 1042 },
        "published_at_ms": 1763856000000u64,
        "payload": { "task_id": "T-1042", "status": "running", "progress": 0.45, "assignee": "agent:coder" }
    }))
    .expect("serializes")
}

/// A large event: 100 KB of command output lines streamed from a daemon.
fn large_event() -> Vec<u8> {
    let lines: Vec<Value> = (0..1000)
        .map(|i| {
            json!(format!(
                "{i:05} test billing::invoices::case_{i} ... ok (elapsed 0.{i:03}s) ============"
            ))
        })
        .collect();
    let mut event = json!({
        "type": "event",
        "channel": "daemon:ws-42:output",
        "message_id": "msg-01JD3F8Q2W8",
        "position": { "epoch": "ep-01JD3F8Q2W", "seq": 88 },
        "published_at_ms": 1763856000000u64,
        "payload": { "type": "chunk", "run_id": "run-8812", "stream": "stdout", "lines": lines }
    });
    // Pad to exactly 100 000 bytes so runs are comparable.
    let size = serde_json::to_vec(&event).expect("serializes").len();
    event["payload"]["pad"] = json!("x".repeat(100_000 - size - ",\"pad\":\"\"".len()));
    serde_json::to_vec(&event).expect("serializes")
}

fn server_message_validator() -> jsonschema::Validator {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../generated/schema/bundle.schema.json"
    );
    let mut schema: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the bundle exists"))
            .expect("the bundle is JSON");
    schema["$ref"] = json!("#/$defs/ServerMessage");
    jsonschema::draft202012::new(&schema).expect("the bundle compiles")
}

fn decode(c: &mut Criterion) {
    let codec = Codec::default();
    let validator = server_message_validator();
    let mut group = c.benchmark_group("decode");
    for (name, frame) in [
        ("event-230B", small_event()),
        ("event-100KB", large_event()),
    ] {
        assert!(
            codec.decode_server(Frame::Text(&frame)).is_ok(),
            "{name} must be a valid event"
        );
        let value: Value = serde_json::from_slice(&frame).expect("JSON");
        assert!(validator.is_valid(&value), "{name} must pass the schema");
        group.throughput(Throughput::Bytes(frame.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("ferry_codec_typed", name),
            &frame,
            |b, frame| {
                b.iter(|| {
                    codec
                        .decode_server(Frame::Text(black_box(frame)))
                        .expect("valid")
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("floor_serde_json_value", name),
            &frame,
            |b, frame| {
                b.iter(|| serde_json::from_slice::<Value>(black_box(frame)).expect("valid"));
            },
        );
        group.bench_with_input(
            BenchmarkId::new("jsonschema_generic", name),
            &frame,
            |b, frame| {
                b.iter(|| {
                    let value: Value = serde_json::from_slice(black_box(frame)).expect("valid");
                    assert!(validator.is_valid(&value));
                });
            },
        );
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let codec = Codec::default();
    let mut group = c.benchmark_group("encode");
    let frame = small_event();
    let message: ServerMessage = serde_json::from_slice(&frame).expect("valid");
    let value: Value = serde_json::from_slice(&frame).expect("JSON");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function(
        BenchmarkId::new("ferry_codec_size_gated", "event-230B"),
        |b| b.iter(|| codec.encode(black_box(&message)).expect("fits")),
    );
    group.bench_function(
        BenchmarkId::new("floor_serde_json_value", "event-230B"),
        |b| b.iter(|| serde_json::to_string(black_box(&value)).expect("serializes")),
    );
    group.finish();
}

/// The typical event at sequence number `seq`.
fn event_at(seq: u64) -> Vec<u8> {
    let mut event: Value = serde_json::from_slice(&small_event()).expect("JSON");
    event["position"]["seq"] = json!(seq);
    serde_json::to_vec(&event).expect("serializes")
}

/// A client session, welcomed and subscribed to `project:alpha:tasks` at seq 0.
fn active_session() -> (ClientSession, ConnectionId) {
    let now = Timestamp::ZERO;
    let mut session = ClientSession::new(ClientConfig::default(), 1);
    session.subscribe("project:alpha:tasks".parse().expect("valid"), 1);
    session.connect(now);
    session.handle_ticket(
        Ok("ticket-00000000000000000001".parse().expect("valid")),
        now,
    );
    let connection = std::iter::from_fn(|| session.poll_transmit())
        .find_map(|t| {
            if let Transmit::Connect { connection, .. } = t {
                Some(connection)
            } else {
                None
            }
        })
        .expect("a ticket leads to a connect");
    session.handle_connected(connection, now);
    let welcome = json!({
        "type": "welcome", "protocol": "ferry.v1", "session_id": "s-1", "user": "ada",
        "permissions": [{ "pattern": "**", "read": true, "write": true }],
        "heartbeat": { "interval_ms": 20_000, "timeout_ms": 10_000 },
        "limits": { "max_message_bytes": 131_072, "max_subscriptions": 100, "rate_limit": { "messages_per_second": 10, "burst": 20 } },
        "reconnect": { "base_ms": 1_000, "factor": 2, "cap_ms": 30_000, "jitter": 0.5, "max_attempts": 20, "reset_after_ms": 5_000 },
        "resume": { "window_ms": 120_000, "max_events": 1_000 }
    });
    session.handle_frame(connection, Frame::Text(welcome.to_string().as_bytes()), now);
    let mut subscribe_id = None;
    while let Some(transmit) = session.poll_transmit() {
        if let Transmit::Send { text, .. } = transmit {
            let sent: Value = serde_json::from_str(&text).expect("JSON");
            subscribe_id = sent["id"].as_str().map(str::to_owned);
        }
    }
    let reply = json!({ "type": "subscribed", "id": subscribe_id, "channel": "project:alpha:tasks", "position": { "epoch": "ep-01JD3F8Q2W", "seq": 0 } });
    session.handle_frame(connection, Frame::Text(reply.to_string().as_bytes()), now);
    while session.poll_event().is_some() {}
    (session, connection)
}

fn client_event(c: &mut Criterion) {
    const CHUNK: u64 = 10_000;
    let codec = Codec::default();
    let mut group = c.benchmark_group("client_event");
    group.throughput(Throughput::Elements(1));
    // Each iteration handles the next event of the channel (seq one more than the last), so
    // every event is new and delivered. Frames are built outside the timed part, in chunks.
    group.bench_function(
        BenchmarkId::new("client_session_end_to_end", "event-230B"),
        |b| {
            let (mut session, connection) = active_session();
            let mut next = 1u64;
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(CHUNK);
                    let frames: Vec<Vec<u8>> = (next..next + n).map(event_at).collect();
                    next += n;
                    let start = Instant::now();
                    for frame in &frames {
                        session.handle_frame(connection, Frame::Text(frame), Timestamp::ZERO);
                        while let Some(event) = session.poll_event() {
                            assert!(
                                matches!(event, ClientEvent::Event(_)),
                                "every event is delivered"
                            );
                            black_box(event);
                        }
                    }
                    total += start.elapsed();
                    left -= n;
                }
                total
            });
        },
    );
    group.bench_function(BenchmarkId::new("decode_only", "event-230B"), |b| {
        let frame = event_at(1);
        b.iter(|| {
            codec
                .decode_server(Frame::Text(black_box(&frame)))
                .expect("valid")
        });
    });
    group.finish();
}

criterion_group!(benches, decode, encode, client_event);
criterion_main!(benches);
