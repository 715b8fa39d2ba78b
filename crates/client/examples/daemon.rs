//! A workstation daemon that runs a command and streams its output into a Ferry channel, in
//! order, as the example application's `CommandOutput` payloads: `chunk`s of standard output
//! and standard error, then `exited` with the exit code.
//!
//! ```sh
//! cargo run -p ferry-client --example daemon -- \
//!     --url http://127.0.0.1:7400 --token "$FERRY_TOKEN" --channel daemon:ws-42:output -- cargo test
//! ```
//!
//! The example application's output channels are exclusive (FERRY-HOLD-1): the daemon holds
//! its channel before it runs the command, takes its hold back with its fence after a
//! reconnect, and a daemon started later for the same workstation takes the channel over, which
//! stops this one with close code 4412.
//!
//! Output is batched (a chunk at most every 100 ms or 16 KiB per stream) and each chunk is
//! published with an idempotency key derived from the run id and chunk number, so a chunk
//! re-sent after a reconnect is stored once. Each change of the connection's state is reported
//! on stderr; when the client stops for good, the next publish fails and the daemon exits with
//! status 1.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use ferry_client::{ChannelEvent, Client, Handler, SubscribeOptions};
use ferry_protocol::{ChannelName, IdempotencyKey};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

/// Run a command and stream its output into a Ferry channel.
#[derive(Parser)]
struct Args {
    /// The Ferry server's base URL (https:// for a server with TLS).
    #[arg(long, env = "FERRY_URL", default_value = "http://127.0.0.1:7400")]
    url: String,
    /// A PEM file of certificate authorities to trust besides the system's (a private CA).
    #[arg(long, env = "FERRY_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// The bearer credential for the ticket endpoint.
    #[arg(long, env = "FERRY_TOKEN")]
    token: String,
    /// The channel to publish to, for example daemon:ws-42:output.
    #[arg(long)]
    channel: ChannelName,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

const FLUSH_EVERY: Duration = Duration::from_millis(100);
const CHUNK_BYTES: usize = 16 * 1024;

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut builder = Client::builder(&args.url, &args.token);
    if let Some(ca_file) = &args.ca_file {
        builder = builder.ca_file(ca_file)?;
    }
    let client = builder.connect();
    // Every change of the connection's state, on stderr: the daemon's own log.
    let mut changes = client.state_changes();
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match changes.recv().await {
                Ok(state) => eprintln!("daemon: {state}"),
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break,
            }
        }
    });
    if !client.wait_active(Duration::from_secs(30)).await {
        bail!("could not connect to {}: {:?}", args.url, client.state());
    }
    // Hold the channel: the one publisher of an exclusive channel is its holder.
    let (held, mut holding) = mpsc::unbounded_channel();
    let handler = Handler::new(move |event| match event {
        ChannelEvent::Subscribed(_) => {
            let _ = held.send(Ok(()));
        }
        ChannelEvent::Refused(error) => {
            let _ = held.send(Err(error.message.to_string()));
        }
        _ => {}
    });
    let hold = SubscribeOptions {
        hold: true,
        ..SubscribeOptions::default()
    };
    client.subscribe_with(args.channel.clone(), &handler, hold)?;
    match tokio::time::timeout(Duration::from_secs(30), holding.recv()).await {
        Ok(Some(Ok(()))) => eprintln!("daemon: holding {}", args.channel.as_str()),
        Ok(Some(Err(why))) => bail!("cannot hold {}: {why}", args.channel.as_str()),
        _ => bail!(
            "no answer to the hold of {} within 30 s",
            args.channel.as_str()
        ),
    }

    let run_id = format!("run-{:016x}", rand::random::<u64>());
    let mut child = Command::new(&args.command[0])
        .args(&args.command[1..])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", args.command[0]))?;
    let (lines, mut batches) = mpsc::channel::<(&'static str, String)>(256);
    for (stream, pipe) in [
        (
            "stdout",
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ),
        ("stderr", child.stderr.take().map(|p| Box::new(p) as _)),
    ] {
        let Some(pipe) = pipe else { continue };
        let lines = lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if lines.send((stream, line)).await.is_err() {
                    break;
                }
            }
        });
    }
    drop(lines);

    let mut chunk = 0u64;
    let mut pending: Vec<(&'static str, String)> = Vec::new();
    let mut ticker = tokio::time::interval(FLUSH_EVERY);
    loop {
        tokio::select! {
            line = batches.recv() => match line {
                Some((stream, line)) => {
                    match pending.iter_mut().find(|(s, _)| *s == stream) {
                        Some((_, data)) => { data.push_str(&line); data.push('\n'); }
                        None => pending.push((stream, format!("{line}\n"))),
                    }
                    if pending.iter().any(|(_, d)| d.len() >= CHUNK_BYTES) {
                        publish_all(&client, &args.channel, &run_id, &mut chunk, &mut pending).await?;
                    }
                }
                None => break,
            },
            _ = ticker.tick() => publish_all(&client, &args.channel, &run_id, &mut chunk, &mut pending).await?,
        }
    }
    publish_all(&client, &args.channel, &run_id, &mut chunk, &mut pending).await?;
    let status = child.wait().await?;
    let exited = json!({ "type": "exited", "run_id": run_id, "exit_code": status.code() });
    let key = IdempotencyKey::try_from(format!("{run_id}-exit"))?;
    client
        .publish_with_key(args.channel.clone(), exited, Some(key))
        .await?;
    client.close().await;
    Ok(())
}

async fn publish_all(
    client: &Client,
    channel: &ChannelName,
    run_id: &str,
    chunk: &mut u64,
    pending: &mut Vec<(&'static str, String)>,
) -> Result<()> {
    for (stream, data) in pending.drain(..) {
        *chunk += 1;
        let key = IdempotencyKey::try_from(format!("{run_id}-{chunk}"))?;
        let payload = json!({ "type": "chunk", "run_id": run_id, "stream": stream, "data": data });
        client
            .publish_with_key(channel.clone(), payload, Some(key))
            .await?;
    }
    Ok(())
}
