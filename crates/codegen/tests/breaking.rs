//! `ferry-codegen breaking` on real edits of copies of the real `schema/`: one test per
//! compatibility rule, each asserting the verdict in a direction where the change breaks and,
//! where the rule allows one, a direction where it does not, so an inverted judgement fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_codegen::breaking::{self, Change, Direction, RULES, Verdict};
use serde_json::{Value, json};

use Direction::{
    Both, ClientToServer as C2S, None as Table, Request, Response, ServerToClient as S2C,
};
use Verdict::{Breaking, Compatible};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create the copy's folder");
    for entry in fs::read_dir(from).expect("read the folder") {
        let path = entry.expect("a folder entry").path();
        let target = to.join(path.file_name().expect("a file name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            fs::copy(&path, &target).expect("copy a file");
        }
    }
}

/// A copy of a schema set of this repository in a temporary folder.
struct Copy {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Copy {
    fn of(set: &str) -> Self {
        let tmp = tempfile::tempdir().expect("a temporary folder");
        let dir = tmp.path().join("set");
        copy_dir(&repo().join(set), &dir);
        Self { _tmp: tmp, dir }
    }

    /// Edits one JSON file of the copy in place.
    fn edit(&self, file: &str, f: impl FnOnce(&mut Value)) -> &Self {
        let path = self.dir.join(file);
        let mut value: Value =
            serde_json::from_str(&fs::read_to_string(&path).expect("read")).expect("JSON");
        f(&mut value);
        fs::write(&path, serde_json::to_string_pretty(&value).expect("print")).expect("write");
        self
    }

    /// Edits one definition of a schema file of the copy.
    fn def(&self, file: &str, name: &str, f: impl FnOnce(&mut Value)) -> &Self {
        self.edit(file, |v| {
            let def = v["$defs"].get_mut(name).expect("the definition exists");
            f(def);
        })
    }
}

const CLIENT: &str = "client-messages.schema.json";
const SERVER: &str = "server-messages.schema.json";
const DEFS: &str = "definitions.schema.json";
const HTTP: &str = "http.schema.json";

/// Judges `new` against `old`.
fn judge(old: &Copy, new: &Copy) -> Vec<Change> {
    let against = old.dir.to_str().expect("a UTF-8 path");
    breaking::check(&new.dir, "new", against)
        .expect("the comparison runs")
        .expect("the older set exists")
        .changes
}

/// Judges an edit of the protocol's schema set against the set as it is.
fn protocol(edit: impl FnOnce(&Copy)) -> Vec<Change> {
    let old = Copy::of("schema");
    let new = Copy::of("schema");
    edit(&new);
    judge(&old, &new)
}

/// Judges the protocol set as it is against an edited older copy.
fn protocol_from(edit_old: impl FnOnce(&Copy)) -> Vec<Change> {
    let old = Copy::of("schema");
    edit_old(&old);
    judge(&old, &Copy::of("schema"))
}

/// The verdict of the change judged by `rule` at `location` in `direction`.
fn verdict(changes: &[Change], rule: &str, location: &str, direction: Direction) -> Verdict {
    let found: Vec<&Change> = changes
        .iter()
        .filter(|c| c.rule == rule && c.location == location && c.direction == direction)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {rule} change at {location} ({direction:?}); got:\n{changes:#?}"
    );
    found[0].verdict
}

fn assert_verdicts(
    changes: &[Change],
    rule: &str,
    location: &str,
    expected: &[(Direction, Verdict)],
) {
    for (direction, want) in expected {
        assert_eq!(
            verdict(changes, rule, location, *direction),
            *want,
            "{rule} at {location} in {direction:?}"
        );
    }
}

fn member(name: &str) -> Value {
    json!({ "type": "string", "maxLength": 16, "description": "A member added by a test." })
        .as_object()
        .map(|o| {
            let mut o = o.clone();
            o.insert(
                "description".into(),
                format!("{name}, added by a test.").into(),
            );
            Value::Object(o)
        })
        .expect("an object")
}

fn add_member(def: &mut Value, name: &str, required: bool) {
    def["properties"][name] = member(name);
    if required {
        def["required"]
            .as_array_mut()
            .expect("required")
            .push(name.into());
    }
}

fn remove_member(def: &mut Value, name: &str) {
    def["properties"]
        .as_object_mut()
        .expect("properties")
        .remove(name);
    if let Some(required) = def["required"].as_array_mut() {
        required.retain(|r| r != name);
    }
}

fn make_optional(def: &mut Value, name: &str) {
    def["required"]
        .as_array_mut()
        .expect("required")
        .retain(|r| r != name);
}

fn make_nullable(def: &mut Value, name: &str) {
    let inner = def["properties"][name].take();
    def["properties"][name] =
        json!({ "anyOf": [inner, { "type": "null" }], "description": "nullable" });
}

// StreamPosition is read both ways: in subscribe's `from` (client to server) and in
// subscribed's `position` (server to client), so one edit of it is judged in both directions.
const POSITION: &str = "StreamPosition";

#[test]
fn member_added_required() {
    let changes = protocol(|s| {
        s.def(DEFS, POSITION, |d| add_member(d, "shard", true));
    });
    assert_verdicts(
        &changes,
        "member-added-required",
        "StreamPosition.shard",
        &[(C2S, Breaking), (S2C, Breaking), (Response, Breaking)],
    );
}

#[test]
fn member_added_optional() {
    let changes = protocol(|s| {
        s.def(DEFS, POSITION, |d| add_member(d, "shard", false));
    });
    assert_verdicts(
        &changes,
        "member-added-optional",
        "StreamPosition.shard",
        &[(C2S, Compatible), (S2C, Breaking), (Response, Breaking)],
    );
}

#[test]
fn member_removed_required() {
    let changes = protocol(|s| {
        s.def(DEFS, POSITION, |d| remove_member(d, "epoch"));
    });
    assert_verdicts(
        &changes,
        "member-removed-required",
        "StreamPosition.epoch",
        &[(C2S, Breaking), (S2C, Breaking)],
    );
}

#[test]
fn member_removed_optional() {
    // The old version had an optional `shard`; the current one does not.
    let changes = protocol_from(|s| {
        s.def(DEFS, POSITION, |d| add_member(d, "shard", false));
    });
    assert_verdicts(
        &changes,
        "member-removed-optional",
        "StreamPosition.shard",
        &[(C2S, Breaking), (S2C, Compatible)],
    );
}

#[test]
fn member_became_required() {
    let changes = protocol(|s| {
        s.def(DEFS, "ErrorInfo", |d| {
            d["required"]
                .as_array_mut()
                .expect("required")
                .push("retry_after_ms".into());
        });
    });
    // ErrorInfo is only sent by servers: narrowing it keeps old clients reading.
    assert_verdicts(
        &changes,
        "member-became-required",
        "ErrorInfo.retry_after_ms",
        &[(S2C, Compatible), (Response, Compatible)],
    );
    let changes = protocol(|s| {
        s.def(CLIENT, "Subscribe", |d| {
            d["required"]
                .as_array_mut()
                .expect("required")
                .push("from".into());
        });
    });
    assert_verdicts(
        &changes,
        "member-became-required",
        "Subscribe.from",
        &[(C2S, Breaking)],
    );
}

#[test]
fn member_became_optional() {
    let changes = protocol(|s| {
        s.def(DEFS, POSITION, |d| make_optional(d, "seq"));
    });
    assert_verdicts(
        &changes,
        "member-became-optional",
        "StreamPosition.seq",
        &[(C2S, Compatible), (S2C, Breaking)],
    );
}

#[test]
fn enum_value_added() {
    let changes = protocol(|s| {
        s.def(DEFS, "ErrorCode", |d| {
            d["enum"]
                .as_array_mut()
                .expect("enum")
                .push("fell_behind".into())
        });
    });
    assert_verdicts(
        &changes,
        "enum-value-added",
        "ErrorCode",
        &[(S2C, Breaking), (Response, Breaking)],
    );
    // RequestId travels both ways (subscribe.id and subscribed.id).
    let old = Copy::of("schema");
    old.def(DEFS, "RequestId", |d| d["enum"] = json!(["r-1", "r-2"]));
    let new = Copy::of("schema");
    new.def(DEFS, "RequestId", |d| {
        d["enum"] = json!(["r-1", "r-2", "r-3"])
    });
    let changes = judge(&old, &new);
    assert_verdicts(
        &changes,
        "enum-value-added",
        "RequestId",
        &[(C2S, Compatible), (S2C, Breaking)],
    );
}

#[test]
fn enum_value_removed() {
    let changes = protocol(|s| {
        s.def(DEFS, "ErrorCode", |d| {
            d["enum"]
                .as_array_mut()
                .expect("enum")
                .retain(|v| v != "not_found")
        });
    });
    assert_verdicts(
        &changes,
        "enum-value-removed",
        "ErrorCode",
        &[(S2C, Compatible), (Response, Compatible)],
    );
    let old = Copy::of("schema");
    old.def(DEFS, "RequestId", |d| d["enum"] = json!(["r-1", "r-2"]));
    let new = Copy::of("schema");
    new.def(DEFS, "RequestId", |d| d["enum"] = json!(["r-1"]));
    let changes = judge(&old, &new);
    assert_verdicts(
        &changes,
        "enum-value-removed",
        "RequestId",
        &[(C2S, Breaking), (S2C, Compatible)],
    );
}

#[test]
fn type_widened() {
    let changes = protocol(|s| {
        s.def(DEFS, "Seq", |d| d["type"] = "number".into());
    });
    assert_verdicts(
        &changes,
        "type-widened",
        "Seq",
        &[(C2S, Compatible), (S2C, Breaking), (Response, Breaking)],
    );
}

#[test]
fn type_narrowed() {
    let changes = protocol_from(|s| {
        s.def(DEFS, "Seq", |d| d["type"] = json!(["integer", "string"]));
    });
    assert_verdicts(
        &changes,
        "type-narrowed",
        "Seq",
        &[(C2S, Breaking), (S2C, Compatible)],
    );
}

#[test]
fn type_changed() {
    let changes = protocol(|s| {
        s.def(DEFS, "Seq", |d| d["type"] = "string".into());
    });
    assert_verdicts(
        &changes,
        "type-changed",
        "Seq",
        &[(C2S, Breaking), (S2C, Breaking)],
    );
}

#[test]
fn became_nullable() {
    let changes = protocol(|s| {
        s.def(DEFS, POSITION, |d| make_nullable(d, "seq"));
    });
    assert_verdicts(
        &changes,
        "became-nullable",
        "StreamPosition.seq",
        &[(C2S, Compatible), (S2C, Breaking)],
    );
}

#[test]
fn became_non_nullable() {
    let changes = protocol_from(|s| {
        s.def(DEFS, POSITION, |d| make_nullable(d, "seq"));
    });
    assert_verdicts(
        &changes,
        "became-non-nullable",
        "StreamPosition.seq",
        &[(C2S, Breaking), (S2C, Compatible)],
    );
}

#[test]
fn bound_tightened() {
    let changes = protocol(|s| {
        s.def(DEFS, "ChannelName", |d| d["maxLength"] = 100.into());
    });
    assert_verdicts(
        &changes,
        "bound-tightened",
        "ChannelName",
        &[
            (C2S, Breaking),
            (Request, Breaking),
            (S2C, Compatible),
            (Response, Compatible),
        ],
    );
}

#[test]
fn bound_relaxed() {
    let changes = protocol(|s| {
        s.def(DEFS, "Seq", |d| {
            d.as_object_mut().expect("an object").remove("maximum");
        });
    });
    assert_verdicts(
        &changes,
        "bound-relaxed",
        "Seq",
        &[(C2S, Compatible), (S2C, Breaking)],
    );
}

#[test]
fn pattern_changed() {
    let changes = protocol(|s| {
        s.def(DEFS, "Epoch", |d| d["pattern"] = "^[A-Za-z0-9]+$".into());
    });
    assert_verdicts(
        &changes,
        "pattern-changed",
        "Epoch",
        &[(C2S, Breaking), (S2C, Breaking)],
    );
}

#[test]
fn const_changed() {
    let old = Copy::of("schema");
    old.def(DEFS, "Epoch", |d| d["const"] = "e-1".into());
    let new = Copy::of("schema");
    new.def(DEFS, "Epoch", |d| d["const"] = "e-2".into());
    let changes = judge(&old, &new);
    assert_verdicts(
        &changes,
        "const-changed",
        "Epoch",
        &[(C2S, Breaking), (S2C, Breaking)],
    );
}

#[test]
fn object_closed() {
    let changes = protocol_from(|s| {
        s.def(DEFS, POSITION, |d| d["additionalProperties"] = true.into());
    });
    assert_verdicts(
        &changes,
        "object-closed",
        "StreamPosition",
        &[(C2S, Breaking), (S2C, Compatible)],
    );
}

#[test]
fn object_opened() {
    let changes = protocol(|s| {
        s.def(DEFS, POSITION, |d| {
            d.as_object_mut()
                .expect("an object")
                .remove("additionalProperties");
        });
    });
    assert_verdicts(
        &changes,
        "object-opened",
        "StreamPosition",
        &[(C2S, Compatible), (S2C, Breaking)],
    );
}

/// Adds a copy of `from` tagged `tag` as definition `name` to the union `union` of `file`.
fn add_variant(s: &Copy, file: &str, union: &str, from: &str, name: &str, tag: &str) {
    s.edit(file, |v| {
        let mut def = v["$defs"][from].clone();
        def["properties"]["type"]["const"] = tag.into();
        v["$defs"][name] = def;
        v["$defs"][union]["oneOf"]
            .as_array_mut()
            .expect("oneOf")
            .push(json!({ "$ref": format!("#/$defs/{name}") }));
    });
}

fn remove_variant(s: &Copy, file: &str, union: &str, name: &str) {
    s.edit(file, |v| {
        v["$defs"][union]["oneOf"]
            .as_array_mut()
            .expect("oneOf")
            .retain(|arm| arm["$ref"] != format!("#/$defs/{name}"));
        v["$defs"].as_object_mut().expect("$defs").remove(name);
    });
}

#[test]
fn variant_added() {
    let changes = protocol(|s| {
        add_variant(s, CLIENT, "ClientMessage", "Pong", "Hello", "hello");
        add_variant(s, SERVER, "ServerMessage", "Ping", "Nudge", "nudge");
    });
    assert_verdicts(&changes, "variant-added", "Hello", &[(C2S, Compatible)]);
    assert_verdicts(&changes, "variant-added", "Nudge", &[(S2C, Breaking)]);
}

#[test]
fn variant_removed() {
    let changes = protocol(|s| {
        remove_variant(s, CLIENT, "ClientMessage", "Pong");
        remove_variant(s, SERVER, "ServerMessage", "Goodbye");
    });
    assert_verdicts(
        &changes,
        "variant-removed",
        "ClientMessage",
        &[(C2S, Breaking)],
    );
    assert_verdicts(
        &changes,
        "variant-removed",
        "ServerMessage",
        &[(S2C, Compatible)],
    );
}

#[test]
fn variants_are_matched_by_tag_not_by_position_or_name() {
    // Reordering the union and renaming a variant's definition changes nothing on the wire.
    let changes = protocol(|s| {
        s.edit(CLIENT, |v| {
            let arms = v["$defs"]["ClientMessage"]["oneOf"]
                .as_array_mut()
                .expect("oneOf");
            arms.reverse();
        });
    });
    assert!(changes.is_empty(), "{changes:#?}");
    // A member added to one variant is reported inside that variant only.
    let changes = protocol(|s| {
        s.def(SERVER, "Ping", |d| add_member(d, "note", false));
    });
    assert_verdicts(
        &changes,
        "member-added-optional",
        "Ping.note",
        &[(S2C, Breaking)],
    );
    assert_eq!(changes.len(), 1, "{changes:#?}");
}

fn close_codes(f: impl FnOnce(&mut Vec<Value>)) -> impl FnOnce(&Copy) {
    move |s| {
        s.edit("close-codes.json", |v| {
            f(v["codes"].as_array_mut().expect("codes"))
        });
    }
}

#[test]
fn close_code_added() {
    let changes = protocol(close_codes(|codes| {
        codes.push(json!({ "code": 4499, "name": "newly_added", "sent_when": "A code the old table does not have.", "action": "renew_ticket", "rules": [] }));
    }));
    assert_verdicts(
        &changes,
        "close-code-added",
        "close code 4499",
        &[(S2C, Compatible)],
    );
}

#[test]
fn close_code_removed() {
    let changes = protocol(close_codes(|codes| codes.retain(|c| c["code"] != 4409)));
    assert_verdicts(
        &changes,
        "close-code-removed",
        "close code 4409",
        &[(S2C, Breaking)],
    );
}

#[test]
fn close_code_renumbered() {
    let changes = protocol(close_codes(|codes| {
        for c in codes.iter_mut().filter(|c| c["code"] == 4409) {
            c["code"] = 4419.into();
        }
    }));
    assert_verdicts(
        &changes,
        "close-code-renumbered",
        "close code 4419",
        &[(S2C, Breaking)],
    );
}

#[test]
fn close_code_action_changed() {
    let changes = protocol(close_codes(|codes| {
        for c in codes.iter_mut().filter(|c| c["code"] == 4408) {
            c["action"] = "stop".into();
        }
    }));
    assert_verdicts(
        &changes,
        "close-code-action-changed",
        "close code 4408",
        &[(S2C, Breaking)],
    );
}

fn error_codes(f: impl FnOnce(&mut Vec<Value>)) -> impl FnOnce(&Copy) {
    move |s| {
        s.edit("error-codes.json", |v| {
            f(v["codes"].as_array_mut().expect("codes"))
        });
    }
}

#[test]
fn error_code_added() {
    let changes = protocol(|s| {
        error_codes(|codes| {
            codes.push(json!({ "code": "fell_behind", "meaning": "m", "retryable": true, "http_status": 409, "rules": [] }));
        })(s);
        s.def(DEFS, "ErrorCode", |d| {
            d["enum"]
                .as_array_mut()
                .expect("enum")
                .push("fell_behind".into())
        });
    });
    // The table row is reported; the enum the error frame carries is what breaks old clients.
    assert_verdicts(
        &changes,
        "error-code-added",
        "error code fell_behind",
        &[(S2C, Compatible)],
    );
    assert_verdicts(
        &changes,
        "enum-value-added",
        "ErrorCode",
        &[(S2C, Breaking)],
    );
}

#[test]
fn error_code_removed() {
    let changes = protocol(error_codes(|codes| {
        codes.retain(|c| c["code"] != "not_found")
    }));
    assert_verdicts(
        &changes,
        "error-code-removed",
        "error code not_found",
        &[(S2C, Breaking)],
    );
}

#[test]
fn error_code_changed() {
    let changes = protocol(error_codes(|codes| {
        for c in codes.iter_mut().filter(|c| c["code"] == "rate_limited") {
            c["retryable"] = false.into();
        }
    }));
    assert_verdicts(
        &changes,
        "error-code-changed",
        "error code rate_limited",
        &[(S2C, Breaking)],
    );
}

#[test]
fn default_changed() {
    let changes = protocol(|s| {
        s.edit("defaults.json", |v| {
            for d in v["values"].as_array_mut().expect("values") {
                if d["name"] == "heartbeat_interval_ms" {
                    d["value"] = 25000.into();
                }
            }
        });
    });
    assert_verdicts(
        &changes,
        "default-changed",
        "default heartbeat_interval_ms",
        &[(Table, Compatible)],
    );
}

#[test]
fn rule_changed() {
    let changes = protocol(|s| {
        s.edit("rules.json", |v| {
            let rules = v["sections"][0]["rules"].as_array_mut().expect("rules");
            rules.push(
                json!({ "id": "FERRY-TRANSPORT-99", "level": "SHOULD", "text": "A test rule." }),
            );
            rules[0]["level"] = "SHOULD".into();
        });
    });
    assert_verdicts(
        &changes,
        "rule-changed",
        "FERRY-TRANSPORT-99",
        &[(Table, Compatible)],
    );
    assert_verdicts(
        &changes,
        "rule-changed",
        "FERRY-TRANSPORT-1",
        &[(Table, Compatible)],
    );
}

fn endpoint(s: &Copy, name: &str, f: impl FnOnce(&mut Value)) {
    s.edit("endpoints.json", |v| {
        let e = v["endpoints"]
            .as_array_mut()
            .expect("endpoints")
            .iter_mut()
            .find(|e| e["name"] == name)
            .expect("the endpoint exists");
        f(e);
    });
}

#[test]
fn endpoint_added() {
    let changes = protocol(|s| {
        s.edit("endpoints.json", |v| {
            let list = v["endpoints"].as_array_mut().expect("endpoints");
            let mut e = list
                .iter()
                .find(|e| e["name"] == "health")
                .expect("health")
                .clone();
            e["name"] = "status".into();
            e["path"] = "/v1/status".into();
            list.push(e);
        });
    });
    assert_verdicts(
        &changes,
        "endpoint-added",
        "GET /v1/status",
        &[(Table, Compatible)],
    );
}

#[test]
fn endpoint_removed() {
    let changes = protocol(|s| {
        s.edit("endpoints.json", |v| {
            v["endpoints"]
                .as_array_mut()
                .expect("endpoints")
                .retain(|e| e["name"] != "history")
        });
    });
    assert_verdicts(
        &changes,
        "endpoint-removed",
        "GET /v1/history",
        &[(Request, Breaking)],
    );
}

#[test]
fn endpoint_moved() {
    let changes = protocol(|s| endpoint(s, "publish", |e| e["path"] = "/v1/events".into()));
    assert_verdicts(
        &changes,
        "endpoint-moved",
        "POST /v1/events",
        &[(Request, Breaking)],
    );
}

#[test]
fn endpoint_auth_changed() {
    let changes = protocol(|s| endpoint(s, "health", |e| e["auth"] = "bearer".into()));
    assert_verdicts(
        &changes,
        "endpoint-auth-changed",
        "GET /v1/health",
        &[(Request, Breaking)],
    );
}

#[test]
fn endpoint_auth_removed() {
    let changes = protocol(|s| endpoint(s, "history", |e| e["auth"] = "none".into()));
    assert_verdicts(
        &changes,
        "endpoint-auth-removed",
        "GET /v1/history",
        &[(Request, Compatible)],
    );
}

#[test]
fn endpoint_success_status_changed() {
    let changes = protocol(|s| endpoint(s, "issue_ticket", |e| e["success_status"] = 200.into()));
    assert_verdicts(
        &changes,
        "endpoint-success-status-changed",
        "POST /v1/tickets",
        &[(Response, Breaking)],
    );
}

#[test]
fn endpoint_error_status_changed() {
    let changes = protocol(|s| {
        endpoint(s, "history", |e| {
            e["errors"]
                .as_array_mut()
                .expect("errors")
                .push(json!({ "status": 429, "code": "rate_limited", "when": "Too fast." }));
        });
    });
    assert_verdicts(
        &changes,
        "endpoint-error-status-changed",
        "GET /v1/history",
        &[(Response, Compatible)],
    );
}

#[test]
fn endpoint_body_added() {
    let changes = protocol(|s| {
        endpoint(s, "issue_ticket", |e| {
            e["request"] = "PublishRequest".into()
        });
        endpoint(s, "metrics", |e| e["response"] = "HealthResponse".into());
    });
    assert_verdicts(
        &changes,
        "endpoint-body-added",
        "POST /v1/tickets",
        &[(Request, Breaking)],
    );
    assert_verdicts(
        &changes,
        "endpoint-body-added",
        "GET /metrics",
        &[(Response, Compatible)],
    );
}

#[test]
fn endpoint_body_removed() {
    let changes = protocol(|s| {
        endpoint(s, "publish", |e| e["request"] = Value::Null);
        endpoint(s, "health", |e| e["response"] = Value::Null);
    });
    assert_verdicts(
        &changes,
        "endpoint-body-removed",
        "POST /v1/publish",
        &[(Request, Compatible)],
    );
    assert_verdicts(
        &changes,
        "endpoint-body-removed",
        "GET /v1/health",
        &[(Response, Breaking)],
    );
}

#[test]
fn http_bodies_are_judged_as_request_and_response() {
    let changes = protocol(|s| {
        s.def(HTTP, "PublishRequest", |d| add_member(d, "priority", false));
        s.def(HTTP, "PublishResponse", |d| add_member(d, "node", false));
    });
    assert_verdicts(
        &changes,
        "member-added-optional",
        "PublishRequest.priority",
        &[(Request, Compatible)],
    );
    assert_verdicts(
        &changes,
        "member-added-optional",
        "PublishResponse.node",
        &[(Response, Breaking)],
    );
}

/// Judges an edit of the example application's schema set against the set as it is.
fn application(edit: impl FnOnce(&Copy)) -> Vec<Change> {
    let old = Copy::of("schema/example-app");
    let new = Copy::of("schema/example-app");
    edit(&new);
    judge(&old, &new)
}

#[test]
fn namespace_added() {
    let changes = application(|s| {
        s.edit("channels.json", |v| {
            v["namespaces"].as_array_mut().expect("namespaces").push(json!({ "pattern": "team:*:tasks", "payload": "TaskProgress", "description": "Team tasks." }));
        });
    });
    assert_verdicts(
        &changes,
        "namespace-added",
        "channel team:*:tasks",
        &[(Both, Compatible)],
    );
}

#[test]
fn namespace_removed() {
    let changes = application(|s| {
        s.edit("channels.json", |v| {
            v["namespaces"]
                .as_array_mut()
                .expect("namespaces")
                .retain(|n| n["pattern"] != "agent:*:activity")
        });
    });
    assert_verdicts(
        &changes,
        "namespace-removed",
        "channel agent:*:activity",
        &[(Both, Breaking)],
    );
}

#[test]
fn channel_payloads_break_both_ways() {
    // A payload is written by publishers and read by subscribers of either version: widening
    // and narrowing both break.
    let changes = application(|s| {
        s.edit("payloads.schema.json", |v| {
            add_member(&mut v["$defs"]["TaskProgress"], "eta_ms", false);
            let status = &mut v["$defs"]["TaskProgress"]["properties"]["status"];
            if let Some(values) = status["enum"].as_array_mut() {
                values.pop();
            }
        });
    });
    assert_verdicts(
        &changes,
        "member-added-optional",
        "TaskProgress.eta_ms",
        &[(Both, Breaking)],
    );
    assert_verdicts(
        &changes,
        "enum-value-removed",
        "TaskProgress.status",
        &[(Both, Breaking)],
    );
}

fn declare(s: &Copy, compatibility: Value) {
    fs::write(
        s.dir.join("compatibility.json"),
        serde_json::to_string_pretty(&compatibility).expect("print"),
    )
    .expect("write");
}

#[test]
fn a_raised_major_declares_every_breaking_change() {
    let changes = protocol(|s| {
        s.def(SERVER, "Welcome", |d| remove_member(d, "session_id"));
        declare(
            s,
            json!({ "description": "d", "version": "2.0.0", "allow": [] }),
        );
    });
    let change = changes
        .iter()
        .find(|c| c.rule == "member-removed-required")
        .expect("found");
    assert_eq!(change.verdict, Breaking);
    // The baseline is the protocol's own set, at its current version.
    let compatibility: Value = serde_json::from_str(
        &fs::read_to_string(repo().join("schema/compatibility.json")).expect("read"),
    )
    .expect("json");
    let version = compatibility["version"].as_str().expect("a version");
    assert_eq!(
        change.declared.as_deref(),
        Some(format!("version {version} -> 2.0.0").as_str())
    );
    assert!(!change.fails());
    // A minor raise declares nothing.
    let changes = protocol(|s| {
        s.def(SERVER, "Welcome", |d| remove_member(d, "session_id"));
        declare(
            s,
            json!({ "description": "d", "version": "1.9.0", "allow": [] }),
        );
    });
    assert!(changes.iter().any(Change::fails));
}

#[test]
fn an_allow_entry_declares_only_its_change() {
    let changes = protocol(|s| {
        s.def(SERVER, "Welcome", |d| remove_member(d, "session_id"));
        s.def(DEFS, "ChannelName", |d| d["maxLength"] = 100.into());
        declare(
            s,
            json!({ "description": "d", "version": "1.0.0", "allow": [
            { "rule": "member-removed-required", "where": "Welcome", "reason": "session ids move to a header" }
        ] }),
        );
    });
    let welcome = changes
        .iter()
        .find(|c| c.location == "Welcome.session_id")
        .expect("found");
    assert_eq!(
        welcome.declared.as_deref(),
        Some("session ids move to a header")
    );
    let channel = changes
        .iter()
        .find(|c| c.location == "ChannelName" && c.direction == C2S)
        .expect("found");
    assert!(channel.fails(), "{channel:?}");
}

#[test]
fn an_allow_entry_without_a_reason_is_refused() {
    let old = Copy::of("schema");
    let new = Copy::of("schema");
    declare(
        &new,
        json!({ "description": "d", "version": "1.0.0", "allow": [
        { "rule": "member-removed-required", "where": "Welcome", "reason": " " }
    ] }),
    );
    let error =
        breaking::check(&new.dir, "new", old.dir.to_str().expect("utf-8")).expect_err("refused");
    assert!(error.to_string().contains("without a reason"), "{error}");
    declare(
        &new,
        json!({ "description": "d", "version": "1.0.0", "allow": [
        { "rule": "no-such-rule", "where": "Welcome", "reason": "r" }
    ] }),
    );
    let error =
        breaking::check(&new.dir, "new", old.dir.to_str().expect("utf-8")).expect_err("refused");
    assert!(
        error.to_string().contains("no compatibility rule"),
        "{error}"
    );
}

#[test]
fn the_real_schema_is_compatible_with_itself() {
    let report = breaking::check(
        &repo().join("schema"),
        "schema",
        repo().join("schema").to_str().expect("utf-8"),
    )
    .expect("runs")
    .expect("the folder exists");
    assert!(report.changes.is_empty(), "{:#?}", report.changes);
}

#[test]
fn every_rule_has_a_test_here() {
    let source = include_str!("breaking.rs");
    for rule in RULES {
        let test = format!("fn {}()", rule.id.replace('-', "_"));
        assert!(
            source.contains(&test),
            "no test {test} for rule {}",
            rule.id
        );
    }
}

#[test]
fn schema_readme_shows_the_rule_table_the_check_uses() {
    let readme = fs::read_to_string(repo().join("schema/README.md")).expect("read the README");
    assert!(
        readme.contains(&breaking::rules::markdown_table()),
        "schema/README.md must hold the table ferry_codegen::breaking::rules::markdown_table() prints"
    );
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=ferry",
            "-c",
            "user.email=ferry@example.invalid",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?}");
}

fn codegen(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ferry-codegen"))
        .current_dir(dir)
        .args(args)
        .env_remove("FERRY_CODEGEN_SCHEMA")
        .output()
        .expect("ferry-codegen runs")
}

#[test]
fn the_cli_reads_a_git_revision_and_exits_0_1_or_2() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let root = tmp.path();
    copy_dir(&repo().join("schema"), &root.join("schema"));
    git(root, &["init", "-q"]);
    git(root, &["add", "."]);
    git(root, &["commit", "-q", "-m", "baseline"]);

    let same = codegen(root, &["breaking", "--against", "HEAD"]);
    assert_eq!(
        same.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&same.stderr)
    );

    let edited = Copy {
        _tmp: tempfile::tempdir().expect("tmp"),
        dir: root.join("schema"),
    };
    edited.def(SERVER, "Welcome", |d| remove_member(d, "session_id"));
    let broken = codegen(root, &["breaking", "--against", "HEAD"]);
    assert_eq!(broken.status.code(), Some(1));
    let table = String::from_utf8_lossy(&broken.stdout);
    assert!(
        table.contains("BREAKING")
            && table.contains("member-removed-required")
            && table.contains("Welcome.session_id"),
        "{table}"
    );

    let github = codegen(
        root,
        &["breaking", "--against", "HEAD", "--format", "github"],
    );
    assert_eq!(github.status.code(), Some(1));
    let annotations = String::from_utf8_lossy(&github.stdout);
    let error = annotations
        .lines()
        .find(|l| l.starts_with("::error "))
        .expect("an error annotation");
    assert!(
        error.starts_with("::error file=schema/server-messages.schema.json,line="),
        "{error}"
    );
    assert!(error.contains("title=member-removed-required::"), "{error}");

    let json = codegen(root, &["breaking", "--against", "HEAD", "--format", "json"]);
    let reports: Value = serde_json::from_slice(&json.stdout).expect("JSON output");
    let change = &reports[0]["changes"][0];
    assert_eq!(change["rule"], "member-removed-required");
    assert_eq!(change["verdict"], "breaking");
    assert_eq!(change["direction"], "server_to_client");
    assert_eq!(change["where"], "Welcome.session_id");

    // A set outside the repository names its folder in the revision.
    let outside = Copy::of("schema");
    let path = outside.dir.to_str().expect("utf-8");
    let same = codegen(
        root,
        &["breaking", "--schema", path, "--against", "HEAD:schema"],
    );
    assert_eq!(
        same.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&same.stderr)
    );
    let not_there = codegen(
        root,
        &["breaking", "--schema", path, "--against", "HEAD:nowhere"],
    );
    assert_eq!(not_there.status.code(), Some(2));

    let missing = codegen(root, &["breaking", "--against", "no-such-revision"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("neither a folder nor a git revision")
    );
}
