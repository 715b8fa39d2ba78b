//! The root README's "Try it" walkthrough, run as written: `ferry-server` on its defaults (on a
//! free port instead of 7400), the `tail` example on the README's channel, the README's `curl`
//! commands through `bash`, a Ctrl-C drain, a restart with the same development token, and the
//! `tail` resuming and printing what is published next. `cargo test --workspace` builds the
//! binaries this test runs.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// How long any one step may take on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// The walkthrough's commands, read from the README.
struct Walkthrough {
    /// The arguments of the `tail` example (after `--`).
    tail_args: Vec<String>,
    /// The `curl` commands, continuations joined, in order: ticket, publish, history.
    curls: Vec<String>,
}

impl Walkthrough {
    fn read() -> Self {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .expect("the README");
        let section = readme
            .split("\n## Try it\n")
            .nth(1)
            .expect("the README has a Try it section");
        let block = section
            .split("```sh\n")
            .nth(1)
            .and_then(|rest| rest.split("\n```").next())
            .expect("the Try it section has a sh block");
        let joined = block.replace("\\\n", " ");
        let commands: Vec<&str> = joined
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        assert!(
            commands
                .iter()
                .any(|c| c.starts_with("export FERRY_TOKEN=")),
            "the walkthrough sets FERRY_TOKEN: {commands:?}"
        );
        let tail = commands
            .iter()
            .find_map(|c| c.strip_prefix("cargo run -p ferry-client --example tail -- "))
            .expect("the walkthrough runs the tail example");
        Self {
            tail_args: tail.split_whitespace().map(str::to_owned).collect(),
            curls: commands
                .iter()
                .filter(|c| c.starts_with("curl "))
                .map(|c| (*c).to_owned())
                .collect(),
        }
    }

    fn curl(&self, what: &str) -> &str {
        let path = format!("/v1/{what}");
        self.curls
            .iter()
            .find(|c| c.contains(&path))
            .unwrap_or_else(|| panic!("the walkthrough has a curl to {path}: {:?}", self.curls))
    }
}

/// A binary of this build: `target/debug/<name>`, beside this test's own `deps/`.
fn built(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/debug");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: `cargo test --workspace` builds it",
        path.display()
    );
    path
}

/// A child process whose output lines arrive on channels.
struct Running {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

impl Running {
    fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starts");
        let lines = |read: Box<dyn std::io::Read + Send>| {
            let (send, receive) = channel();
            std::thread::spawn(move || {
                for line in BufReader::new(read).lines().map_while(Result::ok) {
                    if send.send(line).is_err() {
                        break;
                    }
                }
            });
            receive
        };
        let stdout = lines(Box::new(child.stdout.take().expect("stdout")));
        let stderr = lines(Box::new(child.stderr.take().expect("stderr")));
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// The first line on `from` that contains `needle`, and every line read until then.
    fn until(from: &Receiver<String>, needle: &str, what: &str) -> (String, Vec<String>) {
        let deadline = Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match from.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return (line, seen),
                Ok(line) => seen.push(line),
                Err(e) => panic!("{what}: no line with {needle:?} ({e}); read: {seen:#?}"),
            }
        }
    }

    fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIGINT delivered");
    }

    fn wait(&mut self, what: &str) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("waits") {
                return status;
            }
            assert!(Instant::now() < deadline, "{what} did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ferry-server` on its defaults but the address, with its data directory in `data`; returns
/// it, its base URL and the development token it printed.
fn server(data: &std::path::Path, bind: &str) -> (Running, String, String) {
    let mut command = Command::new(built("ferry-server"));
    command
        .env("XDG_DATA_HOME", data)
        .env_remove("RUST_LOG")
        .args(["--bind", bind]);
    let running = Running::spawn(command);
    let (line, _) = Running::until(&running.stdout, "running on ", "ferry-server");
    let base = line
        .split("running on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("an address")
        .to_owned();
    let (line, _) = Running::until(&running.stdout, "Development token", "ferry-server");
    let token = line.rsplit(' ').next().expect("a token").trim().to_owned();
    assert!(
        token.starts_with("dev-"),
        "the README's dev-... token: {line}"
    );
    (running, base, token)
}

fn tail(base: &str, token: &str, args: &[String]) -> Running {
    let mut command = Command::new(built("examples/tail"));
    command
        .env("FERRY_URL", base)
        .env("FERRY_TOKEN", token)
        .env_remove("RUST_LOG")
        .args(args);
    Running::spawn(command)
}

/// Runs one of the README's curl commands through bash, against `base`, and returns its output.
fn curl(command: &str, base: &str, token: &str) -> String {
    let command = command.replace("http://127.0.0.1:7400", base);
    let output = Command::new("bash")
        .args(["-c", &format!("{command} --max-time 30")])
        .env("FERRY_TOKEN", token)
        .output()
        .expect("bash runs curl");
    assert!(
        output.status.success(),
        "{command}: {:?}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

#[test]
fn the_readme_walkthrough_works_as_written_across_a_restart() {
    let walkthrough = Walkthrough::read();
    let data = tempfile::tempdir().expect("a temp dir");
    let (mut server_one, base, token) = server(data.path(), "127.0.0.1:0");

    let mut tail = tail(&base, &token, &walkthrough.tail_args);
    Running::until(&tail.stderr, "tail: active", "tail");
    Running::until(&tail.stderr, "tail: subscribed", "tail");

    let ticket = curl(walkthrough.curl("tickets"), &base, &token);
    assert!(ticket.contains("\"ticket\""), "a ticket: {ticket}");
    let published = curl(walkthrough.curl("publish"), &base, &token);
    assert!(
        published.contains("\"position\""),
        "a position: {published}"
    );
    let (event, _) = Running::until(&tail.stdout, "\"T-1\"", "tail's stdout");
    assert!(
        event.contains("\"running\""),
        "the published payload: {event}"
    );
    let again = curl(walkthrough.curl("publish"), &base, &token);
    assert!(
        again.contains("\"duplicate\":true"),
        "the same idempotency_key again is a duplicate: {again}"
    );
    let history = curl(walkthrough.curl("history"), &base, &token);
    assert_eq!(
        history.matches("\"T-1\"").count(),
        1,
        "the history holds the event once: {history}"
    );

    // Ctrl-C: the server drains and exits; the tail stays and reports that it is reconnecting.
    server_one.interrupt();
    assert!(
        server_one.wait("ferry-server").success(),
        "exit 0 after the drain"
    );
    let (left, _) = Running::until(&tail.stderr, "tail: ", "tail after the stop");
    assert!(!left.contains("active"), "no longer active: {left}");

    // The restart keeps the development token, so the tail's credential still works.
    let address = base.trim_start_matches("http://");
    let (_server_two, base_two, token_two) = server(data.path(), address);
    assert_eq!(token_two, token, "the development token survives a restart");
    Running::until(&tail.stderr, "tail: active", "tail after the restart");
    Running::until(&tail.stderr, "tail: subscribed", "tail after the restart");
    curl(walkthrough.curl("publish"), &base_two, &token);
    let (event, _) = Running::until(&tail.stdout, "\"T-1\"", "tail's stdout after the restart");
    assert!(
        event.contains("\"running\""),
        "the published payload: {event}"
    );

    tail.interrupt();
    assert!(tail.wait("tail").success(), "Ctrl-C ends tail with 0");
}

#[test]
fn the_tail_example_exits_non_zero_when_its_credential_is_rejected() {
    let walkthrough = Walkthrough::read();
    let data = tempfile::tempdir().expect("a temp dir");
    let (_server, base, _) = server(data.path(), "127.0.0.1:0");
    let mut tail = tail(&base, "dev-not-the-token", &walkthrough.tail_args);
    let (line, _) = Running::until(&tail.stderr, "stopped for good", "tail");
    assert!(line.contains("credential"), "says why: {line}");
    assert_eq!(tail.wait("tail").code(), Some(1));
}
