//! The servers under test, each started as a child process on a free loopback port, so that its
//! resident set and CPU time are its own: ferry-server (tokens auth, since one identity may hold
//! only 16 sessions), the bare tokio-tungstenite peer, and the Node `ws` and Socket.IO peers of
//! `benches/peers` (run by `node` directly, so that the child is the server).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

use crate::client::Target;

/// Sessions each generated user opens, below ferry-server's limit of 16 per identity.
const SESSIONS_PER_USER: usize = 8;

/// The bearer token of the generated backend identity, which may publish anywhere.
const BACKEND_TOKEN: &str = "load-backend";

/// How long a server may take to accept connections after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Which server a measurement runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Kind {
    /// ferry-server, the reference server.
    Ferry,
    /// ferry-load-peer, a bare tokio-tungstenite broadcast server at default settings.
    Peer,
    /// `benches/peers/ws-server.js`, a Node `ws` 8 broadcast server.
    NodeWs,
    /// `benches/peers/socketio-server.js`, a Socket.IO 4.8 server.
    Socketio,
}

impl Kind {
    /// Whether the server has channels of its own (only Ferry; the peers' rooms are minimal).
    pub(crate) fn is_ferry(self) -> bool {
        self == Kind::Ferry
    }
}

/// Where the two server binaries are.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    /// The ferry-server executable.
    pub(crate) ferry: PathBuf,
    /// The ferry-load-peer executable.
    pub(crate) peer: PathBuf,
    /// Extra arguments for ferry-server.
    pub(crate) ferry_args: Vec<String>,
    /// Extra arguments for the peer.
    pub(crate) peer_args: Vec<String>,
    /// The Node executable.
    pub(crate) node: PathBuf,
    /// The folder of the Node peers, with their `node_modules`.
    pub(crate) peers_dir: PathBuf,
    /// Whether servers are stopped with SIGTERM, waiting for them to exit, instead of killed.
    pub(crate) graceful_stop: bool,
}

/// A running server: the child process, and how clients reach it.
pub(crate) struct Running {
    child: Child,
    pid: u32,
    port: u16,
    /// Stop it with SIGTERM and wait, instead of killing it.
    graceful_stop: bool,
    /// How clients open sessions and publish on it.
    pub(crate) target: Target,
    scratch: Option<PathBuf>,
}

impl Running {
    /// Starts a server of this kind able to hold `sessions` sessions, and waits until it
    /// answers.
    pub(crate) async fn start(kind: Kind, binaries: &Binaries, sessions: usize) -> Result<Self> {
        let port = free_port()?;
        let address = format!("127.0.0.1:{port}");
        let (mut command, target, scratch) = match kind {
            Kind::Ferry => {
                let scratch =
                    std::env::temp_dir().join(format!("ferry-load-{}-{port}", std::process::id()));
                std::fs::create_dir_all(&scratch)
                    .with_context(|| format!("cannot create {}", scratch.display()))?;
                let users = sessions.div_ceil(SESSIONS_PER_USER).max(1);
                let tokens_file = scratch.join("tokens.toml");
                std::fs::write(&tokens_file, tokens_file_text(users))
                    .with_context(|| format!("cannot write {}", tokens_file.display()))?;
                let mut command = Command::new(&binaries.ferry);
                command
                    .arg("--bind")
                    .arg(&address)
                    .arg("--auth")
                    .arg("tokens")
                    .arg("--tokens-file")
                    .arg(&tokens_file)
                    // No ping within a run: idle means idle.
                    .arg("--heartbeat-interval-ms")
                    .arg("600000")
                    // A load generator is one caller far above an application's rates.
                    .args(["--ticket-rate-limit-per-second", "1000000"])
                    .args(["--ticket-rate-limit-burst", "1000000"])
                    .args(["--publish-rate-limit-per-second", "1000000"])
                    .args(["--publish-rate-limit-burst", "1000000"]);
                // Room for every session and the ticket requests beside them, unless the run
                // sets the cap itself.
                if !sets_max_connections(&binaries.ferry_args) {
                    command.arg(format!("--max-connections={}", sessions + 1024));
                }
                command.args(&binaries.ferry_args);
                let http = reqwest::Client::builder()
                    .no_proxy()
                    .pool_max_idle_per_host(512)
                    .build()?;
                let target = Target::Ferry {
                    base: format!("http://{address}"),
                    tokens: Arc::new((0..users).map(user_token).collect()),
                    backend: BACKEND_TOKEN.to_owned(),
                    http,
                };
                (command, target, Some(scratch))
            }
            Kind::Peer => {
                let mut command = Command::new(&binaries.peer);
                command
                    .arg("--bind")
                    .arg(&address)
                    .args(&binaries.peer_args);
                let target = Target::Peer {
                    base: format!("ws://{address}"),
                };
                (command, target, None)
            }
            Kind::NodeWs | Kind::Socketio => {
                let script = binaries.peers_dir.join(match kind {
                    Kind::NodeWs => "ws-server.js",
                    _ => "socketio-server.js",
                });
                if !binaries.peers_dir.join("node_modules").is_dir() {
                    bail!(
                        "{} has no node_modules: run {} first",
                        binaries.peers_dir.display(),
                        binaries.peers_dir.join("install").display()
                    );
                }
                let mut command = Command::new(&binaries.node);
                command.arg(&script).arg("--bind").arg(&address);
                let base = format!("ws://{address}");
                let target = match kind {
                    Kind::NodeWs => Target::Peer { base },
                    _ => Target::SocketIo { base },
                };
                (command, target, None)
            }
        };
        let binary = command.as_std().get_program().to_owned();
        let child = command
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (build it with `cargo build --release -p ferry-server -p ferry-load`)",
                    Path::new(&binary).display()
                )
            })?;
        let pid = child.id().context("the server exited at once")?;
        let mut running = Self {
            child,
            pid,
            port,
            graceful_stop: binaries.graceful_stop,
            target,
            scratch,
        };
        running.wait_ready(&address).await?;
        Ok(running)
    }

    /// Waits until the server accepts TCP connections (and, for Ferry, reports health).
    async fn wait_ready(&mut self, address: &str) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the server exited during start: {status}");
            }
            let ready = match &self.target {
                Target::Ferry { base, http, .. } => http
                    .get(format!("{base}/v1/health"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success()),
                Target::Peer { .. } | Target::SocketIo { .. } => {
                    tokio::net::TcpStream::connect(address).await.is_ok()
                }
            };
            if ready {
                return Ok(());
            }
            if start.elapsed() > START_TIMEOUT {
                bail!("the server did not answer on {address} within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's resident set size, in bytes (`VmRSS` of `/proc/<pid>/status`).
    pub(crate) fn rss(&self) -> Result<u64> {
        let path = format!("/proc/{}/status", self.pid);
        let status =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("no VmRSS line in {path}"))?;
        Ok(kib * 1024)
    }

    /// The loopback port the server listens on.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// CPU time the server has used so far, two ways: user plus system time of
    /// `/proc/<pid>/stat` (whole clock ticks, see [`clock_tick`]), and the scheduler's on-CPU
    /// time of every live thread (`/proc/<pid>/task/*/schedstat`, in nanoseconds).
    pub(crate) fn cpu(&self) -> Result<CpuTime> {
        let path = format!("/proc/{}/stat", self.pid);
        let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        // The fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
        // utime and stime are fields 14 and 15 of stat(5); field 3 is the first after the name.
        let (Some(user), Some(system)) = (ticks(11), ticks(12)) else {
            bail!("no CPU times in {path}");
        };
        let tick = clock_tick();
        let mut scheduled = 0;
        let tasks = format!("/proc/{}/task", self.pid);
        for task in std::fs::read_dir(&tasks).with_context(|| format!("cannot read {tasks}"))? {
            let schedstat = std::fs::read_to_string(task?.path().join("schedstat"));
            // A thread that ended between the listing and the read has nothing left to count.
            if let Some(ns) = schedstat
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            {
                scheduled += ns;
            }
        }
        Ok(CpuTime {
            ticks: tick * u32::try_from(user + system).unwrap_or(u32::MAX),
            scheduled: Duration::from_nanos(scheduled),
        })
    }

    /// Stops the server (see [`Binaries::graceful_stop`]) and removes its scratch files.
    pub(crate) async fn stop(mut self) -> Result<()> {
        let mut exited = false;
        if self.graceful_stop {
            let signalled = Command::new("kill")
                .args(["-TERM", &self.pid.to_string()])
                .status()
                .await?;
            if signalled.success() {
                eprintln!("  waiting up to 60 s for the server to exit after SIGTERM");
                exited = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
                    .await
                    .is_ok();
            }
        }
        if !exited {
            self.child.kill().await?;
        }
        if let Some(scratch) = self.scratch.take() {
            let _ = std::fs::remove_dir_all(scratch);
        }
        Ok(())
    }
}

/// The token of generated user `i`.
fn user_token(i: usize) -> String {
    format!("load-token-{i}")
}

/// A tokens file with `users` users that may read and write everywhere, and one backend.
fn tokens_file_text(users: usize) -> String {
    let mut text = String::with_capacity(users * 128);
    let entry = |text: &mut String, token: &str, user: &str, backend: bool| {
        text.push_str(&format!(
            "[[tokens]]\ntoken = \"{token}\"\nuser = \"{user}\"\nbackend = {backend}\n\
             permissions = [{{ pattern = \"**\", read = true, write = true }}]\n\n"
        ));
    };
    entry(&mut text, BACKEND_TOKEN, "load-backend", true);
    for i in 0..users {
        entry(&mut text, &user_token(i), &format!("load-user-{i}"), false);
    }
    text
}

/// A loopback port nothing listens on now.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A server's CPU time so far, as two counters read at once.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuTime {
    /// utime + stime of `/proc/<pid>/stat`, a whole number of clock ticks.
    pub(crate) ticks: Duration,
    /// Σ on-CPU time of the live threads, `/proc/<pid>/task/*/schedstat` (nanoseconds).
    pub(crate) scheduled: Duration,
}

impl CpuTime {
    /// The CPU time spent between `earlier` and `self`.
    pub(crate) fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            ticks: self.ticks.saturating_sub(earlier.ticks),
            scheduled: self.scheduled.saturating_sub(earlier.scheduled),
        }
    }
}

/// The clock tick of `/proc/<pid>/stat`'s CPU times: `USER_HZ`, which Linux fixes at 100 for
/// user space on every architecture this tool runs on (`getconf CLK_TCK`), so 10 ms.
pub(crate) fn clock_tick() -> Duration {
    Duration::from_millis(10)
}

/// Whether ferry-server's extra arguments set `--max-connections` themselves.
fn sets_max_connections(args: &[String]) -> bool {
    args.iter()
        .any(|arg| arg == "--max-connections" || arg.starts_with("--max-connections="))
}
