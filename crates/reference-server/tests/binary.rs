//! The `ferry-server` binary as an operator runs it: started on its defaults (on a random
//! port), stopped with SIGTERM while clients are connected and a backend keeps publishing.

mod common;

use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_traffic_says_goodbye_closes_with_1012_and_keeps_acknowledged_publishes() {
    let data = tempfile::tempdir().expect("a temp dir");
    let (mut child, base, token) = start(data.path(), &["--drain-period-ms", "1000"]).await;
    let http = reqwest::Client::new();

    let mut sockets = Vec::new();
    for _ in 0..3 {
        let ticket: Value = http
            .post(format!("{base}/v1/tickets"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("JSON");
        let url = format!(
            "{}/v1/ws?ticket={}",
            base.replace("http://", "ws://"),
            ticket["ticket"].as_str().expect("a ticket")
        );
        let mut request = url.into_client_request().expect("a URL");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("ferry.v1"),
        );
        let (mut socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("upgrades");
        let welcome = socket.next().await.expect("a frame").expect("a frame");
        assert!(matches!(&welcome, Message::Text(t) if t.contains("\"welcome\"")));
        socket
            .send(Message::text(
                json!({ "type": "subscribe", "id": "s", "channel": "project:alpha:tasks" })
                    .to_string(),
            ))
            .await
            .expect("send");
        sockets.push(socket);
    }

    // A backend publishes without pause; every acknowledged publish must be in the history.
    let publisher = {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for n in 0..10_000u64 {
                let body = json!({ "channel": "project:alpha:tasks", "idempotency_key": format!("k-{n}"), "payload": { "task_id": format!("T-{n}"), "status": "running", "progress": 0.5, "assignee": null } });
                let Ok(response) = http
                    .post(format!("{base}/v1/publish"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                else {
                    break;
                };
                if response.status() != 200 {
                    break;
                }
                let ack: Value = response.json().await.expect("JSON");
                acknowledged.push(ack["position"]["seq"].as_u64().expect("a seq"));
            }
            acknowledged
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = child.id().expect("running");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());

    for socket in &mut sockets {
        let mut goodbye = None;
        let code = loop {
            match tokio::time::timeout(Duration::from_secs(10), socket.next())
                .await
                .expect("the server closes within 10 s")
            {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).expect("JSON");
                    if value["type"] == "goodbye" {
                        goodbye = Some(value);
                    }
                }
                Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                other => panic!("the connection ended without a close frame: {other:?}"),
            }
        };
        let goodbye = goodbye.expect("FERRY-SHUTDOWN-1: a goodbye before the close");
        assert!(
            goodbye["retry_after_ms"]
                .as_u64()
                .is_some_and(|ms| ms <= 1_000),
            "{goodbye}"
        );
        assert_eq!(code, Some(1012));
    }
    let acknowledged = publisher.await.expect("the publisher ran");
    assert!(
        !acknowledged.is_empty(),
        "publishes were acknowledged before the stop"
    );
    // Acknowledged publishes got consecutive positions, none lost in between. That each is in
    // the history after the stop is checked in-process (tests/server.rs), where the in-memory
    // history can still be read.
    let n = acknowledged.len() as u64;
    assert_eq!(acknowledged, (1..=n).collect::<Vec<_>>());
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits within the drain period")
        .expect("exits");
    assert!(
        exit.success(),
        "ferry-server exits 0 after a graceful stop: {exit:?}"
    );
}

/// Starts `ferry-server` with `args` (on a random loopback port, development auth) and reads
/// its address and development token from the walkthrough it prints.
async fn start(data: &std::path::Path, args: &[&str]) -> (tokio::process::Child, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry-server"))
        .env("XDG_DATA_HOME", data)
        // These tests issue tickets and publish as fast as they can, far past the default
        // per-caller rates (FERRY-RATE-4), which have tests of their own.
        .envs([
            ("FERRY_TICKET_RATE_LIMIT_PER_SECOND", "100000"),
            ("FERRY_TICKET_RATE_LIMIT_BURST", "100000"),
            ("FERRY_PUBLISH_RATE_LIMIT_PER_SECOND", "100000"),
            ("FERRY_PUBLISH_RATE_LIMIT_BURST", "100000"),
        ])
        .args(["--bind", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ferry-server starts");
    let (base, token) = common::read_walkthrough(child.stdout.take().expect("stdout")).await;
    (child, base, token)
}

/// Writes an application schema set, as a team would for `ferry-codegen generate --schema`:
/// one namespace `billing:*:invoices` carrying `Invoice`, with its vectors.
fn write_billing_app(dir: &std::path::Path, pattern: &str) {
    std::fs::create_dir_all(dir.join("vectors")).expect("mkdir");
    std::fs::write(
        dir.join("payloads.schema.json"),
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "Billing payloads",
            "description": "What the billing service publishes.",
            "$defs": { "Invoice": {
                "description": "An invoice was issued.",
                "type": "object",
                "additionalProperties": false,
                "required": ["invoice_id", "cents"],
                "properties": {
                    "invoice_id": { "type": "string", "minLength": 1, "maxLength": 64, "description": "The invoice." },
                    "cents": { "type": "integer", "minimum": 0, "maximum": 1_000_000_000, "description": "The amount." }
                }
            } }
        })
        .to_string(),
    )
    .expect("write");
    std::fs::write(
        dir.join("channels.json"),
        json!({
            "description": "The billing service.",
            "namespaces": [{ "pattern": pattern, "payload": "Invoice", "description": "Invoices of one account." }]
        })
        .to_string(),
    )
    .expect("write");
    std::fs::write(
        dir.join("vectors/Invoice.json"),
        json!({
            "type": "Invoice",
            "valid": [{ "name": "issued", "description": "An invoice.", "value": { "invoice_id": "I-1", "cents": 100 } }],
            "invalid": [{ "name": "negative", "description": "A negative amount.", "value": { "invoice_id": "I-1", "cents": -1 } }]
        })
        .to_string(),
    )
    .expect("write");
}

/// Runs `ferry-server` on `args` expecting it to refuse to start; returns its stderr.
async fn refused(args: &[&str]) -> String {
    let data = tempfile::tempdir().expect("a temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_ferry-server"))
        .env("XDG_DATA_HOME", data.path())
        .args(["--bind", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(20), output)
        .await
        .expect("exits")
        .expect("runs");
    assert_eq!(output.status.code(), Some(2), "refuses to start");
    String::from_utf8(output.stderr).expect("UTF-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_set_given_with_app_is_enforced_and_a_bad_one_refused_at_start() {
    let root = tempfile::tempdir().expect("a temp dir");
    let billing = root.path().join("billing");
    write_billing_app(&billing, "billing:*:invoices");
    let (_child, base, token) =
        start(root.path(), &["--app", billing.to_str().expect("UTF-8")]).await;
    let http = reqwest::Client::new();
    let publish = |channel: &str, payload: Value| {
        http.post(format!("{base}/v1/publish"))
            .bearer_auth(&token)
            .json(&json!({ "channel": channel, "idempotency_key": format!("k-{payload}"), "payload": payload }))
            .send()
    };
    let valid = publish(
        "billing:acme:invoices",
        json!({ "invoice_id": "I-1", "cents": 100 }),
    )
    .await
    .expect("answers");
    assert_eq!(valid.status(), 200);
    let invalid = publish(
        "billing:acme:invoices",
        json!({ "invoice_id": "I-2", "cents": -5 }),
    )
    .await
    .expect("answers");
    assert_eq!(invalid.status(), 422);
    let body: Value = invalid.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "payload_invalid", "{body}");
    // The example application is not served beside it.
    let elsewhere = publish(
        "project:alpha:tasks",
        json!({ "task_id": "T-1", "status": "running", "progress": 0.5, "assignee": null }),
    )
    .await
    .expect("answers");
    let body: Value = elsewhere.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "unknown_channel", "{body}");

    // Two sets whose namespaces overlap are refused, naming both.
    let wide = root.path().join("wide");
    write_billing_app(&wide, "billing:**");
    let stderr = refused(&[
        "--app",
        billing.to_str().expect("UTF-8"),
        "--app",
        wide.to_str().expect("UTF-8"),
    ])
    .await;
    assert!(
        stderr.contains("wide/channels.json") && stderr.contains("overlaps"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "printed once: {stderr}");

    // A set without its test vectors, which code generation refuses, is served: they do not
    // change what a payload check decides.
    std::fs::remove_file(wide.join("vectors/Invoice.json")).expect("rm");
    let (_served, base, token) =
        start(root.path(), &["--app", wide.to_str().expect("UTF-8")]).await;
    let answer = http
        .post(format!("{base}/v1/publish"))
        .bearer_auth(&token)
        .json(&json!({ "channel": "billing:acme", "idempotency_key": "k-1", "payload": { "invoice_id": "I-1", "cents": -1 } }))
        .send()
        .await
        .expect("answers");
    assert_eq!(answer.status(), 422, "its schema is enforced");

    // A set whose schema breaks a codegen lint is refused, naming the file and the problem.
    write_billing_app(&wide, "billing:**");
    let schema = std::fs::read_to_string(wide.join("payloads.schema.json")).expect("read");
    let mut schema: Value = serde_json::from_str(&schema).expect("JSON");
    schema["$defs"]["Invoice"]["properties"]["cents"]["multipleOf"] = json!(5);
    std::fs::write(wide.join("payloads.schema.json"), schema.to_string()).expect("write");
    let stderr = refused(&["--app", wide.to_str().expect("UTF-8")]).await;
    assert!(
        stderr.contains("wide/payloads.schema.json") && stderr.contains("multipleOf"),
        "{stderr}"
    );
    std::fs::write(wide.join("payloads.schema.json"), "{ not json").expect("write");
    let stderr = refused(&["--app", wide.to_str().expect("UTF-8")]).await;
    assert!(stderr.contains("wide/payloads.schema.json"), "{stderr}");
}

/// The first log line `ferry-server` writes to stderr (a pipe, not a terminal) with `args`.
async fn first_log_line(args: &[&str]) -> String {
    let data = tempfile::tempdir().expect("a temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry-server"))
        .env("XDG_DATA_HOME", data.path())
        .args(["--bind", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("ferry-server starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the server logs")
        .expect("stderr")
        .expect("a line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_json_lines_on_request_and_plain_text_without_a_terminal() {
    let json_line = first_log_line(&["--log-format", "json"]).await;
    let entry: Value = serde_json::from_str(&json_line).expect("a JSON object a line");
    assert_eq!(entry["level"], "INFO", "{entry}");
    assert_eq!(
        entry["fields"]["message"], "ferry-server listening",
        "{entry}"
    );
    let text = first_log_line(&[]).await;
    assert!(text.contains("ferry-server listening"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "no colour codes in a pipe: {text:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_development_token_stays_the_same_across_restarts_unless_one_is_given() {
    let data = tempfile::tempdir().expect("a temp dir");
    let (mut first, _, token) = start(data.path(), &[]).await;
    first.kill().await.expect("stops");
    let (_second, base, again) = start(data.path(), &[]).await;
    assert_eq!(
        again, token,
        "the walkthrough's FERRY_TOKEN still works after a restart"
    );
    let answer = reqwest::Client::new()
        .post(format!("{base}/v1/tickets"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("answers");
    assert_eq!(answer.status(), 201);
    let (_third, _, given) = start(data.path(), &["--dev-token", "dev-0123456789abcdef"]).await;
    assert_eq!(given, "dev-0123456789abcdef");
    let stderr = refused(&["--dev-token", "short"]).await;
    assert!(stderr.contains("dev_token"), "{stderr}");
}
