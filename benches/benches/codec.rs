//! Decoding a frame: Ferry's codec (size gate, UTF-8, typed parse with every schema constraint)
//! beside its floor (`serde_json::from_slice` into a `serde_json::Value`, which checks nothing)
//! and beside generic validation of the same bytes with the `jsonschema` crate (parse into a
//! `Value`, then validate against the bundled schema).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ferry_protocol::{Codec, Frame, ServerMessage};
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

criterion_group!(benches, decode, encode);
criterion_main!(benches);
