//! What a channel's payload schema costs a publish, in ferry-server's own code path: the check
//! every publish goes through (`Namespaces::check`), then the in-memory broker's `publish`
//! (dedup, sequence, history), with and without a payload schema.
//!
//! - `check/example_app`: the example application's `TaskProgress`, compiled once by the
//!   `jsonschema` crate, checking a valid 73-byte payload (the payload is parsed, then
//!   validated).
//! - `check/no_schema`: a server that declares no namespaces, which still parses every payload
//!   once to refuse text that clients could not read alike: the floor of `check`.
//! - `publish/with_schema` and `publish/without_schema`: each check followed by the broker's
//!   publish of the same payload under a fresh idempotency key, with no subscriber.
//!
//! ```sh
//! cargo bench -p ferry-benches --bench publish
//! ```

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ferry_protocol::{ChannelName, Payload, Timestamp};
use ferry_server::broker::{Broker, MemoryBroker, MemoryBrokerConfig};
use ferry_server::namespaces::Namespaces;
use serde_json::json;

fn payload() -> Payload {
    Payload::from(
        json!({ "task_id": "T-1", "status": "running", "progress": 0.5, "assignee": null }),
    )
}

fn checks(c: &mut Criterion) {
    let channel: ChannelName = "project:alpha:tasks".parse().unwrap();
    let payload = payload();
    let mut group = c.benchmark_group("check");
    for (name, namespaces) in [
        ("example_app", Namespaces::example_app()),
        ("no_schema", Namespaces::none()),
    ] {
        namespaces.check(&channel, &payload).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| namespaces.check(black_box(&channel), black_box(&payload)))
        });
    }
    group.finish();
}

fn publishes(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let channel: ChannelName = "project:alpha:tasks".parse().unwrap();
    let payload = payload();
    let mut group = c.benchmark_group("publish");
    for (name, namespaces) in [
        ("with_schema", Namespaces::example_app()),
        ("without_schema", Namespaces::none()),
    ] {
        let broker = MemoryBroker::new(MemoryBrokerConfig::default());
        let mut n = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                n += 1;
                namespaces.check(&channel, &payload).unwrap();
                runtime
                    .block_on(broker.publish(
                        &channel,
                        format!("k-{n}").parse().unwrap(),
                        payload.clone(),
                        Timestamp::from_millis(0),
                        0,
                    ))
                    .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, checks, publishes);
criterion_main!(benches);
