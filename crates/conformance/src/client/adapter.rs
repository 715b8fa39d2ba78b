//! The adapter as a child process: commands to its stdin, reports from its stdout, its stderr
//! kept as a log.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use super::ClientOptions;
use crate::adapter::{AdapterCommand, AdapterReport, Feature};
use crate::case::Finding;
use crate::transcript::Transcript;

/// How long an adapter has to print its ready line.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How many stderr lines are kept for error messages.
const STDERR_TAIL: usize = 20;

/// The transcript link of the adapter's stdin and stdout.
const LINK: &str = "adapter";

/// One report the adapter printed.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    /// The report as the contract types it.
    pub(crate) report: AdapterReport,
    /// The same report as JSON, for the case scripts' checks.
    pub(crate) json: Value,
}

impl Report {
    /// The report's `type`.
    pub(crate) fn kind(&self) -> &str {
        self.json["type"].as_str().unwrap_or_default()
    }

    /// A string member.
    pub(crate) fn str(&self, name: &str) -> Option<&str> {
        self.json[name].as_str()
    }

    /// An integer member.
    pub(crate) fn u64(&self, name: &str) -> Option<u64> {
        self.json[name].as_u64()
    }

    /// The line as the adapter printed it (re-encoded).
    pub(crate) fn line(&self) -> String {
        self.json.to_string()
    }
}

/// What the adapter's ready line says.
#[derive(Debug, Clone)]
pub(crate) struct Ready {
    /// Who it is.
    pub(crate) adapter: String,
    /// What its client lacks.
    pub(crate) unsupported: Vec<Feature>,
}

enum Line {
    Report(Report),
    Invalid { line: String, error: String },
    End,
}

/// A running adapter. Dropping it kills the process.
pub(crate) struct AdapterProcess {
    command_line: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<Line>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    transcript: Transcript,
    /// Reports read but not yet taken by [`expect`](Self::expect).
    backlog: VecDeque<Report>,
    /// Every report read, in order.
    history: Vec<Report>,
    /// Why the adapter cannot be used any more, once known.
    broken: Option<Finding>,
}

impl AdapterProcess {
    /// Starts the adapter with piped stdin, stdout and stderr.
    pub(crate) fn spawn(options: &ClientOptions, transcript: Transcript) -> Result<Self, String> {
        let command_line = options.command_line();
        let (program, args) = options
            .command
            .split_first()
            .ok_or_else(|| "no adapter command given".to_owned())?;
        let mut command = Command::new(program);
        command
            .args(args)
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(cwd) = &options.cwd {
            command.current_dir(cwd);
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("could not start the adapter `{command_line}`: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| "the adapter's stdout is not piped".to_owned())?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| "the adapter's stderr is not piped".to_owned())?;
        transcript.note(LINK, format!("started `{command_line}`"));

        let (tx, lines) = mpsc::unbounded_channel();
        let record = transcript.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let line = line.trim_end_matches('\r').to_owned();
                record.received(LINK, &line);
                let parsed = serde_json::from_str::<Value>(&line)
                    .map_err(|e| e.to_string())
                    .and_then(|json| {
                        serde_json::from_value::<AdapterReport>(json.clone())
                            .map(|report| Report { report, json })
                            .map_err(|e| e.to_string())
                    });
                let item = match parsed {
                    Ok(report) => Line::Report(report),
                    Err(error) => Line::Invalid { line, error },
                };
                if tx.send(item).is_err() {
                    return;
                }
            }
            let _ = tx.send(Line::End);
        });

        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let keep = tail.clone();
        let record = transcript.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                record.note("stderr", &line);
                let mut tail = keep.lock().unwrap_or_else(|p| p.into_inner());
                if tail.len() == STDERR_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });

        Ok(Self {
            command_line,
            child,
            stdin,
            lines,
            stderr: tail,
            transcript,
            backlog: VecDeque::new(),
            history: Vec::new(),
            broken: None,
        })
    }

    /// Reads the ready line, which must come first and within [`READY_TIMEOUT`].
    pub(crate) async fn ready(&mut self) -> Result<Ready, String> {
        let line = tokio::time::timeout(READY_TIMEOUT, self.lines.recv()).await;
        let report = match line {
            Err(_) => {
                return Err(format!(
                    "the adapter `{}` did not print a ready line within {} s; stderr: {}",
                    self.command_line,
                    READY_TIMEOUT.as_secs(),
                    self.stderr_tail()
                ));
            }
            Ok(None | Some(Line::End)) => {
                let status = self.exit_status().await;
                return Err(format!(
                    "the adapter `{}` exited with {status} before printing its ready line; stderr: {}",
                    self.command_line,
                    self.stderr_tail()
                ));
            }
            Ok(Some(Line::Invalid { line, error })) => {
                return Err(format!(
                    "the adapter `{}` printed a first line that is not an AdapterReport ({error}): {line}",
                    self.command_line
                ));
            }
            Ok(Some(Line::Report(report))) => report,
        };
        match report.report {
            AdapterReport::Ready(ready) => Ok(Ready {
                adapter: ready.adapter.to_string(),
                unsupported: ready.unsupported,
            }),
            _ => Err(format!(
                "the adapter `{}` must print a ready report first; it printed: {}",
                self.command_line,
                report.line()
            )),
        }
    }

    /// Writes one command, given as JSON; the runner's own command is checked against the
    /// contract first.
    pub(crate) async fn send(&mut self, command: Value) -> Result<(), Finding> {
        let typed: AdapterCommand = serde_json::from_value(command.clone()).map_err(|e| {
            Finding::error(format!(
                "the case script built a command the adapter contract refuses ({e}): {command}"
            ))
        })?;
        let line = serde_json::to_string(&typed)
            .map_err(|e| Finding::error(format!("cannot encode an adapter command: {e}")))?;
        self.transcript.sent(LINK, &line);
        let written = match &mut self.stdin {
            Some(stdin) => {
                let mut bytes = line.into_bytes();
                bytes.push(b'\n');
                match stdin.write_all(&bytes).await {
                    Ok(()) => stdin.flush().await,
                    Err(e) => Err(e),
                }
            }
            None => Err(std::io::Error::other("stdin is closed")),
        };
        match written {
            Ok(()) => Ok(()),
            Err(error) => Err(self
                .gone(&format!("writing to its stdin failed: {error}"))
                .await),
        }
    }

    /// The next report not yet read, waiting up to `timeout`; `None` when none came.
    pub(crate) async fn read(&mut self, timeout: Duration) -> Result<Option<Report>, Finding> {
        if let Some(finding) = &self.broken {
            return Err(finding.clone());
        }
        let line = match tokio::time::timeout(timeout, self.lines.recv()).await {
            Err(_) => return Ok(None),
            Ok(line) => line,
        };
        match line {
            Some(Line::Report(report)) => {
                self.history.push(report.clone());
                Ok(Some(report))
            }
            Some(Line::Invalid { line, error }) => {
                let finding = Finding::error(format!(
                    "the adapter printed a line that is not an AdapterReport ({error}): {line}"
                ));
                self.broken = Some(finding.clone());
                Err(finding)
            }
            None | Some(Line::End) => Err(self.gone("it closed its stdout").await),
        }
    }

    /// The first report that satisfies `predicate`, from those read but not yet taken and
    /// then from new ones, waiting up to `timeout`; `None` when none came.
    pub(crate) async fn expect(
        &mut self,
        mut predicate: impl FnMut(&Report) -> bool,
        timeout: Duration,
    ) -> Result<Option<Report>, Finding> {
        if let Some(index) = self.backlog.iter().position(&mut predicate) {
            return Ok(self.backlog.remove(index));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            match self.read(left).await? {
                None => return Ok(None),
                Some(report) if predicate(&report) => return Ok(Some(report)),
                Some(report) => self.backlog.push_back(report),
            }
        }
    }

    /// Reads every report that comes within `period`.
    pub(crate) async fn settle(&mut self, period: Duration) -> Result<(), Finding> {
        let deadline = tokio::time::Instant::now() + period;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            match self.read(left).await? {
                None => return Ok(()),
                Some(report) => self.backlog.push_back(report),
            }
        }
    }

    /// Every report read so far, in order.
    pub(crate) fn history(&self) -> &[Report] {
        &self.history
    }

    /// Why the adapter is gone, when it has exited (for turning a failure into an error).
    pub(crate) async fn exited(&mut self) -> Option<Finding> {
        match self.child.try_wait() {
            Ok(Some(_)) => Some(self.gone("it exited").await),
            _ => None,
        }
    }

    /// An error naming the adapter's exit status and the end of its stderr.
    async fn gone(&mut self, how: &str) -> Finding {
        if let Some(finding) = &self.broken {
            return finding.clone();
        }
        let status = self.exit_status().await;
        // Give the stderr reader a moment to collect the last lines.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let finding = Finding::error(format!(
            "the adapter exited with {status} during the case ({how}); last stderr lines: {}",
            self.stderr_tail()
        ));
        self.transcript
            .note(LINK, format!("the adapter exited with {status}"));
        self.broken = Some(finding.clone());
        finding
    }

    async fn exit_status(&mut self) -> String {
        match tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await {
            Ok(Ok(status)) => match status.code() {
                Some(code) => format!("status {code}"),
                None => format!("{status}"),
            },
            Ok(Err(error)) => format!("an unknown status ({error})"),
            Err(_) => "no exit yet (it closed its stdout but still runs)".to_owned(),
        }
    }

    fn stderr_tail(&self) -> String {
        let tail = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        if tail.is_empty() {
            "(empty)".to_owned()
        } else {
            tail.iter().cloned().collect::<Vec<_>>().join(" | ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(script: &str) -> ClientOptions {
        ClientOptions::new(vec!["sh".into(), "-c".into(), script.into()])
    }

    #[tokio::test]
    async fn a_ready_line_is_read_and_later_reports_expected() {
        let script = r#"echo '{"type":"ready","adapter":"fake 1","unsupported":["publish"]}'; read line; echo '{"type":"log","message":"x"}'; echo '{"type":"subscribed","channel":"c"}'; sleep 5"#;
        let mut adapter =
            AdapterProcess::spawn(&shell(script), Transcript::new()).expect("sh starts");
        let ready = adapter.ready().await.expect("a ready line");
        assert_eq!(ready.adapter, "fake 1");
        assert_eq!(ready.unsupported, vec![Feature::Publish]);
        adapter
            .send(serde_json::json!({"type": "close"}))
            .await
            .expect("stdin is open");
        let subscribed = adapter
            .expect(|r| r.kind() == "subscribed", Duration::from_secs(5))
            .await
            .expect("no error")
            .expect("a subscribed report");
        assert_eq!(subscribed.str("channel"), Some("c"));
        assert_eq!(adapter.history().len(), 2);
        let log = adapter
            .expect(|r| r.kind() == "log", Duration::ZERO)
            .await
            .expect("no error");
        assert!(log.is_some(), "the log report stays in the backlog");
    }

    #[tokio::test]
    async fn an_adapter_that_exits_early_is_named_with_its_status_and_stderr() {
        let mut adapter =
            AdapterProcess::spawn(&shell("echo boom >&2; exit 127"), Transcript::new())
                .expect("sh starts");
        let error = adapter.ready().await.expect_err("no ready line");
        assert!(error.contains("exited with status 127"), "{error}");
        assert!(error.contains("boom"), "{error}");
    }

    #[tokio::test]
    async fn an_invalid_line_mid_case_is_an_error() {
        let script =
            r#"echo '{"type":"ready","adapter":"fake","unsupported":[]}'; echo 'hello'; sleep 5"#;
        let mut adapter =
            AdapterProcess::spawn(&shell(script), Transcript::new()).expect("sh starts");
        adapter.ready().await.expect("a ready line");
        let finding = adapter
            .read(Duration::from_secs(5))
            .await
            .expect_err("an invalid line");
        assert!(
            matches!(&finding, Finding::Error(m) if m.contains("not an AdapterReport") && m.contains("hello")),
            "{finding:?}"
        );
    }

    #[tokio::test]
    async fn an_adapter_that_exits_mid_case_is_an_error() {
        let script = r#"echo '{"type":"ready","adapter":"fake","unsupported":[]}'; echo 'panicked' >&2; exit 101"#;
        let mut adapter =
            AdapterProcess::spawn(&shell(script), Transcript::new()).expect("sh starts");
        adapter.ready().await.expect("a ready line");
        let finding = adapter
            .read(Duration::from_secs(5))
            .await
            .expect_err("the adapter exited");
        assert!(
            matches!(&finding, Finding::Error(m) if m.contains("status 101") && m.contains("panicked")),
            "{finding:?}"
        );
    }
}
