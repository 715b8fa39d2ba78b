//! The server under attack: a `ferry-server` process spawned for one probe, or one already
//! running; its memory, health, metrics and tickets.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::TargetSpec;

/// The server one probe attacks.
pub struct Server {
    /// Its base URL.
    pub base: String,
    /// A token with every right.
    pub token: String,
    pid: Option<u32>,
    child: Option<Child>,
    _data: Option<tempfile::TempDir>,
}

impl Server {
    /// Spawns the binary with `flags` (on a random loopback port, development auth, a data
    /// directory of its own), or takes the external one as it is.
    pub async fn start(spec: &TargetSpec, flags: &[&str]) -> Result<Self, String> {
        match spec {
            TargetSpec::External {
                url, token, pid, ..
            } => Ok(Self {
                base: url.trim_end_matches('/').to_owned(),
                token: token.clone(),
                pid: *pid,
                child: None,
                _data: None,
            }),
            TargetSpec::Spawn { server } => {
                let data = tempfile::tempdir().map_err(|e| format!("a temp dir: {e}"))?;
                let mut child = Command::new(server)
                    .env("XDG_DATA_HOME", data.path())
                    .env_remove("RUST_LOG")
                    .args(["--bind", "127.0.0.1:0"])
                    .args(flags)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| format!("{}: {e}", server.display()))?;
                let stdout = child.stdout.take().ok_or("no stdout")?;
                let (base, token) =
                    tokio::time::timeout(Duration::from_secs(60), walkthrough(stdout))
                        .await
                        .map_err(|_| "it printed no address and token within 60 s".to_owned())??;
                Ok(Self {
                    base,
                    token,
                    pid: child.id(),
                    child: Some(child),
                    _data: Some(data),
                })
            }
        }
    }

    /// Whether this run spawned it (so the probe's flags are in force).
    pub fn spawned(&self) -> bool {
        self.child.is_some()
    }

    /// Its process id, if known.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Its resident memory now, in bytes.
    pub fn rss(&self) -> Option<u64> {
        self.pid.and_then(rss)
    }

    /// Stops a spawned server; an error if it had exited on its own (it crashed).
    pub async fn stop(mut self) -> Result<(), String> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the server exited during the probe: {status}"));
        }
        child.start_kill().map_err(|e| format!("kill: {e}"))?;
        let _ = child.wait().await;
        Ok(())
    }
}

/// Reads the base URL and the development token from what `ferry-server` prints at start.
async fn walkthrough(stdout: tokio::process::ChildStdout) -> Result<(String, String), String> {
    let mut lines = BufReader::new(stdout).lines();
    let mut base = None;
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(rest) = line.split("running on ").nth(1) {
            base = rest.split_whitespace().next().map(str::to_owned);
        }
        if line.contains("Development token")
            && let Some(token) = line.rsplit(' ').next()
        {
            let base = base.ok_or("the token came before the address")?;
            // Keep reading (and dropping) its output so that it never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok((base, token.trim().to_owned()));
        }
    }
    Err("ferry-server ended its output before printing a token".to_owned())
}

/// The resident memory of process `pid`, in bytes (`VmRSS` of `/proc/<pid>/status`).
pub fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `GET /v1/health` answers 200 with status `ok` within 10 s.
pub async fn health(http: &reqwest::Client, base: &str) -> Result<(), String> {
    let response = http
        .get(format!("{base}/v1/health"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|e| format!("{status} without a JSON body: {e}"))?;
    if status != 200 || body["status"] != "ok" {
        return Err(format!("{status} {body}"));
    }
    Ok(())
}

/// The value of the metric sample named exactly `name` (no labels) in `GET /metrics`.
pub async fn metric(http: &reqwest::Client, base: &str, name: &str) -> Result<f64, String> {
    let text = http
        .get(format!("{base}/metrics"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("/metrics: {e}"))?
        .text()
        .await
        .map_err(|e| format!("/metrics: {e}"))?;
    text.lines()
        .find_map(|line| {
            let mut parts = line.split_whitespace();
            (parts.next() == Some(name))
                .then(|| parts.next().and_then(|v| v.parse().ok()))
                .flatten()
        })
        .ok_or_else(|| format!("/metrics has no {name}"))
}

/// A ticket for the token, waiting out `429 rate_limited` as a well-behaved client does (a
/// probe that needs many has the ticket rate raised on a spawned server).
pub async fn ticket(http: &reqwest::Client, base: &str, token: &str) -> Result<String, String> {
    for _ in 0..100 {
        let response = http
            .post(format!("{base}/v1/tickets"))
            .bearer_auth(token)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| format!("POST /v1/tickets: {e}"))?;
        let status = response.status();
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|e| format!("POST /v1/tickets: {status} without JSON: {e}"))?;
        if status == 429 {
            let wait = body["error"]["retry_after_ms"].as_u64().unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(wait.clamp(10, 10_000))).await;
            continue;
        }
        return body["ticket"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("POST /v1/tickets: {status} {body}"));
    }
    Err("POST /v1/tickets: rate limited a hundred times in a row".to_owned())
}
