//! The test vectors, checked by the schema validator and by the generated Rust types.
//!
//! Every valid vector must be accepted by the `jsonschema` crate, decode into its generated
//! Rust type (messages through the tagged union, so the tag picks the right variant) and
//! re-encode to the same JSON value. Every invalid vector must be refused by both.

use std::path::PathBuf;

use ferry_codegen::SchemaSet;
use ferry_codegen::tables::VectorFile;
use ferry_protocol::{ClientMessage, Codec, Frame, Message, ServerMessage};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The example application's generated payload types.
#[allow(
    missing_docs,
    unreachable_pub,
    dead_code,
    clippy::all,
    clippy::unwrap_used
)]
mod app {
    include!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../generated/example-app/rust/types.rs"
    ));
}

fn load(relative: &str) -> SchemaSet {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    SchemaSet::load(&dir, relative).expect("the schema set loads")
}

/// Decodes `value` as `T` and encodes it back; `Err` when decoding fails.
fn round_trip<T: DeserializeOwned + Serialize>(value: &Value) -> Result<Value, String> {
    let decoded: T = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    Ok(serde_json::to_value(decoded).expect("generated types serialize"))
}

/// Decodes `value` as a frame of message family `M` through the codec and checks the tag
/// selected the variant named `tag`.
fn round_trip_message<M: Message>(
    value: &Value,
    tag: &str,
    type_name: impl Fn(&M) -> &'static str,
) -> Result<Value, String> {
    let text = serde_json::to_string(value).expect("vectors serialize");
    let decoded: M = Codec::default()
        .decode(Frame::Text(text.as_bytes()))
        .map_err(|e| e.to_string())?;
    assert_eq!(
        type_name(&decoded),
        tag,
        "{value} decoded as another message"
    );
    Ok(serde_json::to_value(decoded).expect("generated types serialize"))
}

/// Decodes `value` as the union `U` (a backend call or answer: JSON bodies, not frames),
/// checks that its tag picked the `tag` variant, and encodes it back.
fn round_trip_union<U: DeserializeOwned + Serialize>(
    value: &Value,
    tag: &str,
    type_name: impl Fn(&U) -> &'static str,
) -> Result<Value, String> {
    let decoded: U = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    assert_eq!(
        type_name(&decoded),
        tag,
        "{value} decoded as another variant"
    );
    Ok(serde_json::to_value(decoded).expect("generated types serialize"))
}

/// The generated Rust type of each protocol vector file.
fn protocol_round_trip(set: &SchemaSet, type_name: &str, value: &Value) -> Result<Value, String> {
    if let Some((union, tag)) = set.union_of(type_name) {
        return match union.name.as_str() {
            "ClientMessage" => {
                round_trip_message::<ClientMessage>(value, tag, ClientMessage::type_name)
            }
            "ServerMessage" => {
                round_trip_message::<ServerMessage>(value, tag, ServerMessage::type_name)
            }
            "BackendCall" => round_trip_union(value, tag, ferry_protocol::BackendCall::type_name),
            "BackendAnswer" => {
                round_trip_union(value, tag, ferry_protocol::BackendAnswer::type_name)
            }
            other => panic!("no Rust type for the union {other}"),
        };
    }
    match type_name {
        "TicketResponse" => round_trip::<ferry_protocol::TicketResponse>(value),
        "PublishRequest" => round_trip::<ferry_protocol::PublishRequest>(value),
        "PublishResponse" => round_trip::<ferry_protocol::PublishResponse>(value),
        "HistoryQuery" => round_trip::<ferry_protocol::HistoryQuery>(value),
        "HistoryResponse" => round_trip::<ferry_protocol::HistoryResponse>(value),
        "HealthResponse" => round_trip::<ferry_protocol::HealthResponse>(value),
        "ErrorBody" => round_trip::<ferry_protocol::ErrorBody>(value),
        other => panic!("vectors/{other}.json has no Rust type in this test: add it"),
    }
}

/// The generated Rust type of each example-application vector file.
fn app_round_trip(set: &SchemaSet, type_name: &str, value: &Value) -> Result<Value, String> {
    let via_union = |union: &str| -> Result<Value, String> {
        let tag = set
            .union_of(type_name)
            .map(|(_, tag)| tag)
            .expect("a union variant");
        let result = match union {
            "ApprovalEvent" => round_trip::<app::ApprovalEvent>(value),
            "CommandOutput" => round_trip::<app::CommandOutput>(value),
            other => panic!("no Rust type for the union {other}"),
        };
        if let Ok(encoded) = &result {
            assert_eq!(
                encoded["type"],
                Value::from(tag),
                "{value} decoded as another variant"
            );
        }
        result
    };
    match type_name {
        "TaskProgress" => round_trip::<app::TaskProgress>(value),
        "AgentActivity" => round_trip::<app::AgentActivity>(value),
        "StartTask" => round_trip::<app::StartTask>(value),
        "TaskStarted" => round_trip::<app::TaskStarted>(value),
        "ApprovalRequested" | "ApprovalResolved" => via_union("ApprovalEvent"),
        "OutputChunk" | "CommandExited" => via_union("CommandOutput"),
        other => panic!("example-app vectors/{other}.json has no Rust type in this test: add it"),
    }
}

/// The generated Rust type of each adapter-contract vector file: every one is a command or a
/// report, decoded through its tagged union so that the tag picks the variant.
fn adapter_round_trip(set: &SchemaSet, type_name: &str, value: &Value) -> Result<Value, String> {
    use ferry_conformance::adapter::{AdapterCommand, AdapterReport};
    let (union, tag) = set.union_of(type_name).expect("a command or a report");
    let result = match union.name.as_str() {
        "AdapterCommand" => round_trip::<AdapterCommand>(value),
        "AdapterReport" => round_trip::<AdapterReport>(value),
        other => panic!("no Rust type for the union {other}"),
    };
    if let Ok(encoded) = &result {
        assert_eq!(
            encoded["type"],
            Value::from(tag),
            "{value} decoded as another variant"
        );
    }
    result
}

fn check_set(
    set: &SchemaSet,
    rust: impl Fn(&SchemaSet, &str, &Value) -> Result<Value, String>,
) -> usize {
    assert!(!set.vectors.is_empty(), "{} has no vectors", set.label);
    let mut checked = 0;
    for VectorFile {
        type_name,
        valid,
        invalid,
    } in set.vectors.values()
    {
        let validator = ferry_codegen::validator_for(set, type_name).expect("the schema compiles");
        for v in valid {
            let at = format!("{}/vectors/{type_name}.json valid {:?}", set.label, v.name);
            assert!(validator.is_valid(&v.value), "{at}: refused by jsonschema");
            match rust(set, type_name, &v.value) {
                Ok(encoded) => assert_eq!(encoded, v.value, "{at}: re-encodes differently"),
                Err(e) => panic!("{at}: refused by the generated Rust: {e}"),
            }
            checked += 1;
        }
        for v in invalid {
            let at = format!(
                "{}/vectors/{type_name}.json invalid {:?}",
                set.label, v.name
            );
            assert!(
                !validator.is_valid(&v.value),
                "{at}: accepted by jsonschema"
            );
            if let Ok(encoded) = rust(set, type_name, &v.value) {
                panic!("{at}: accepted by the generated Rust as {encoded}");
            }
            checked += 1;
        }
    }
    checked
}

#[test]
fn protocol_vectors_agree_between_the_schema_and_the_generated_rust() {
    let set = load("schema");
    let checked = check_set(&set, protocol_round_trip);
    assert!(checked >= 150, "only {checked} vectors checked");
}

#[test]
fn example_app_vectors_agree_between_the_schema_and_the_generated_rust() {
    let set = load("schema/example-app");
    let checked = check_set(&set, app_round_trip);
    assert!(checked >= 50, "only {checked} vectors checked");
}

#[test]
fn adapter_contract_vectors_agree_between_the_schema_and_the_generated_rust() {
    let set = load("schema/conformance");
    let checked = check_set(&set, adapter_round_trip);
    assert!(checked >= 35, "only {checked} vectors checked");
}

#[test]
fn every_message_and_body_has_valid_and_invalid_vectors() {
    for label in ["schema", "schema/example-app", "schema/conformance"] {
        let set = load(label);
        for name in set.messages().chain(set.bodies()) {
            let file = set
                .vectors
                .get(name)
                .unwrap_or_else(|| panic!("{label}: {name} has no vectors"));
            assert!(
                !file.valid.is_empty() && !file.invalid.is_empty(),
                "{label}: {name} needs valid and invalid vectors"
            );
        }
    }
}
