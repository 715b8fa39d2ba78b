//! The OpenAPI document as generated from the real `schema/`: every HTTP endpoint but the
//! WebSocket upgrade, and every example valid against the schema it illustrates.

use std::path::PathBuf;

use ferry_codegen::SchemaSet;
use serde_json::{Value, json};

fn document() -> Value {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schema");
    let set = SchemaSet::load(&dir, "schema").expect("the schema loads");
    let text = ferry_codegen::openapi::generate(&set)
        .expect("generates")
        .expect("the protocol has endpoints");
    serde_json::from_str(&text).expect("JSON")
}

#[test]
fn every_http_endpoint_is_an_operation_and_the_websocket_upgrade_is_not() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths: Vec<&str> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        paths,
        [
            "/v1/tickets",
            "/v1/publish",
            "/v1/history",
            "/v1/health",
            "/v1/ready",
            "/metrics"
        ]
    );
    assert_eq!(
        doc["paths"]["/v1/tickets"]["post"]["security"],
        json!([{ "bearer": [] }])
    );
    assert_eq!(doc["paths"]["/v1/health"]["get"]["security"], json!([]));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let unauthorized = &doc["paths"]["/v1/publish"]["post"]["responses"]["401"];
    assert_eq!(
        unauthorized["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
}

/// Every `example` next to a `schema` in the document is accepted by that schema.
#[test]
fn every_example_matches_its_schema() {
    let doc = document();
    let mut pairs = Vec::new();
    collect(&doc["paths"], &mut pairs);
    assert!(pairs.len() >= 10, "expected examples for bodies and errors");
    for (schema, example) in pairs {
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": doc["components"],
            "allOf": [schema],
        });
        let validator = jsonschema::draft202012::new(&root).expect("a valid schema");
        assert!(
            validator.is_valid(&example),
            "{example} does not match {schema}"
        );
    }
}

fn collect(value: &Value, out: &mut Vec<(Value, Value)>) {
    match value {
        Value::Object(map) => {
            if let (Some(schema), Some(example)) = (map.get("schema"), map.get("example")) {
                out.push((schema.clone(), example.clone()));
            }
            map.values().for_each(|v| collect(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
        _ => {}
    }
}
