//! A mutant client adapter: runs the real adapter, points its client at a tampering proxy in
//! front of the runner's scripted server, and filters what it reports.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

use crate::mutations::Mutation;
use crate::proxy::Proxy;

/// `NAME -- ADAPTER...`: returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let Some(mutation) = args.first().and_then(|n| Mutation::from_name(n)) else {
        eprintln!("usage: --mutant-adapter NAME -- ADAPTER...");
        return 2;
    };
    let Some(adapter) = args.get(2..).filter(|a| !a.is_empty()) else {
        eprintln!("usage: --mutant-adapter NAME -- ADAPTER...");
        return 2;
    };
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(run(mutation, adapter.to_vec()))
}

async fn run(mutation: Mutation, adapter: Vec<String>) -> i32 {
    let mut child = Command::new(&adapter[0])
        .args(&adapter[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the adapter starts");
    let mut child_in = child.stdin.take().expect("piped stdin");
    let child_out = child.stdout.take().expect("piped stdout");
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
    let (repeats_tx, mut repeats_rx) = mpsc::unbounded_channel::<Value>();
    let handlers: std::sync::Arc<parking_lot::Mutex<BTreeMap<String, BTreeSet<String>>>> =
        std::sync::Arc::default();

    // Our stdout: one writer.
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(line) = out_rx.recv().await {
            if stdout
                .write_all(format!("{line}\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
            let _ = stdout.flush().await;
        }
    });

    // The adapter's reports, filtered.
    let reports = out_tx.clone();
    let pump_out = tokio::spawn(async move {
        let mut lines = BufReader::new(child_out).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let kind = serde_json::from_str::<Value>(&line)
                .ok()
                .and_then(|v| v["type"].as_str().map(str::to_owned))
                .unwrap_or_default();
            match (mutation, kind.as_str()) {
                (Mutation::ClientCallsHandlerTwice, "delivered") => {
                    let _ = reports.send(line.clone());
                }
                (Mutation::ClientHidesGaps, "incomplete")
                | (Mutation::ClientLosesCallErrors, "call_failed") => continue,
                (Mutation::ClientHidesEpochChanges, "incomplete")
                    if line.contains(r#""cause":"epoch_changed""#) =>
                {
                    continue;
                }
                _ => {}
            }
            let _ = reports.send(line);
        }
    });

    // Events the server sent again, delivered again as a client without dedup would.
    let known = handlers.clone();
    let repeated = out_tx.clone();
    let redeliver = tokio::spawn(async move {
        while let Some(event) = repeats_rx.recv().await {
            let channel = event["channel"].as_str().unwrap_or_default().to_owned();
            let names = known.lock().get(&channel).cloned().unwrap_or_default();
            for handler in names {
                let report = json!({
                    "type": "delivered",
                    "handler": handler,
                    "channel": channel,
                    "message_id": event["message_id"],
                    "epoch": event["position"]["epoch"],
                    "seq": event["position"]["seq"],
                    "payload": event["payload"],
                });
                let _ = repeated.send(report.to_string());
            }
        }
    });

    // The runner's commands, with the client pointed at the proxy.
    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    let mut proxy = None;
    let mut repeats = Some(repeats_tx);
    while let Ok(Some(line)) = commands.next_line().await {
        let mut line = line;
        if let Ok(mut command) = serde_json::from_str::<Value>(&line) {
            match command["type"].as_str() {
                Some("connect") => {
                    let upstream = command["url"].as_str().unwrap_or_default().to_owned();
                    let started = Proxy::start(&upstream, mutation, repeats.take()).await;
                    command["url"] = json!(started.url);
                    proxy = Some(started);
                    line = command.to_string();
                }
                Some("publish") if mutation == Mutation::ClientCountsCharacters => {
                    // The client measures the payload with one ASCII character in place of
                    // each character that is not ASCII; the proxy sends the real one.
                    let measured = as_ascii(&command["payload"]);
                    if measured != command["payload"]
                        && let Some(proxy) = &proxy
                    {
                        proxy
                            .originals
                            .lock()
                            .push((measured.clone(), command["payload"].clone()));
                        command["payload"] = measured;
                        line = command.to_string();
                    }
                }
                Some("subscribe") => {
                    let channel = command["channel"].as_str().unwrap_or_default().to_owned();
                    let handler = command["handler"].as_str().unwrap_or_default().to_owned();
                    handlers.lock().entry(channel).or_default().insert(handler);
                }
                _ => {}
            }
        }
        if child_in
            .write_all(format!("{line}\n").as_bytes())
            .await
            .is_err()
        {
            break;
        }
        let _ = child_in.flush().await;
    }
    drop(child_in);
    let status = child
        .wait()
        .await
        .map(|s| s.code().unwrap_or(1))
        .unwrap_or(1);
    let _ = pump_out.await;
    redeliver.abort();
    let _ = redeliver.await;
    drop(out_tx);
    let _ = writer.await;
    drop(proxy);
    status
}

/// `value` with each character that is not ASCII in its strings replaced by `x`: what a
/// client that counts characters sees of its size.
fn as_ascii(value: &Value) -> Value {
    match value {
        Value::String(text) => Value::String(
            text.chars()
                .map(|c| if c.is_ascii() { c } else { 'x' })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(as_ascii).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), as_ascii(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}
