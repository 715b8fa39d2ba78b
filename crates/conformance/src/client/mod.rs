//! Client mode: drives a client under test through its adapter against a scripted server.
//!
//! Each case gets its own adapter process (the client under test, wrapped as
//! `generated/conformance/docs/REFERENCE.md` describes) and its own scripted server on a random
//! loopback port, so cases run in parallel. The scripted server answers the ticket endpoint
//! (`POST /v1/tickets`) and the WebSocket endpoint (`GET /v1/ws`) exactly as the case's script
//! says, and records everything: ticket requests with their time and `Authorization` header,
//! the tickets and subprotocols each connection offers, every frame both ways and every close.
//! The script advertises short timings in its welcome (a heartbeat of a few hundred
//! milliseconds, a backoff base of 50 to 200 ms), so the suite runs in seconds; clients must
//! obey them (FERRY-WELCOME-3).
//!
//! Every frame the client sends is checked on arrival against the rules that hold for every
//! frame: nothing before the welcome (FERRY-WELCOME-2), text only (FERRY-TRANSPORT-3), one
//! client message per frame (FERRY-TRANSPORT-2) and no more bytes than advertised
//! (FERRY-SIZE-1). Delays are measured from the moment the scripted server ended the previous
//! attempt to the client's next ticket request, and checked against
//! [`BackoffPolicy::bounds`](ferry_protocol::BackoffPolicy::bounds) with
//! [`ClientOptions::tolerance`] above (measured delays can only come out longer than the
//! client's own) and 5 ms below.

mod adapter;
mod cases;
mod harness;
mod scripted;

use std::path::PathBuf;
use std::time::Duration;

use crate::adapter::Feature;
use crate::case::{CaseFuture, Finding, Suite};
use crate::catalogue::CaseInfo;
use crate::transcript::Transcript;

use self::adapter::AdapterProcess;
use self::harness::Harness;

/// How to start the client adapter, and how strictly to time it.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The adapter's program and its arguments.
    pub command: Vec<String>,
    /// How much later than the protocol allows a measured delay may come (timer slack,
    /// process and network latency); stated in every timing failure. 100 ms by default.
    pub tolerance: Duration,
    /// Extra environment variables for the adapter.
    pub env: Vec<(String, String)>,
    /// The adapter's working directory; the runner's own when `None`.
    pub cwd: Option<PathBuf>,
}

impl ClientOptions {
    /// The default tolerance on measured delays.
    pub const DEFAULT_TOLERANCE: Duration = Duration::from_millis(100);

    /// Options for the adapter started by `command` (program first), with the default
    /// tolerance, no extra environment and the runner's working directory.
    pub fn new(command: Vec<String>) -> Self {
        Self {
            command,
            tolerance: Self::DEFAULT_TOLERANCE,
            env: Vec::new(),
            cwd: None,
        }
    }

    /// The command line as one string, for messages.
    pub fn command_line(&self) -> String {
        self.command.join(" ")
    }
}

/// The client-mode suite: every case of `cases/client.toml`, run against a client adapter.
#[derive(Debug, Clone)]
pub struct ClientSuite {
    options: ClientOptions,
    adapter: String,
    unsupported: Vec<Feature>,
}

impl ClientSuite {
    /// Starts the adapter once to read its ready line, and remembers who it is and which
    /// features it lacks (cases that need one are skipped).
    ///
    /// Fails when the adapter cannot be started, exits, prints something else or nothing
    /// within 10 s; the error quotes the end of its stderr.
    pub async fn prepare(options: ClientOptions) -> anyhow::Result<Self> {
        if options.command.is_empty() {
            anyhow::bail!("no adapter command given");
        }
        let mut process = AdapterProcess::spawn(&options, Transcript::new())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let ready = process.ready().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self {
            options,
            adapter: ready.adapter,
            unsupported: ready.unsupported,
        })
    }

    /// Who the adapter says it is (its ready line's `adapter`).
    pub fn adapter(&self) -> &str {
        &self.adapter
    }

    /// The features the adapter declares unsupported.
    pub fn unsupported(&self) -> &[Feature] {
        &self.unsupported
    }
}

impl Suite for ClientSuite {
    fn target(&self) -> String {
        format!(
            "{} (adapter `{}`)",
            self.adapter,
            self.options.command_line()
        )
    }

    fn start(&self, case: &'static CaseInfo, transcript: Transcript) -> CaseFuture {
        let options = self.options.clone();
        let unsupported = self.unsupported.clone();
        Box::pin(async move {
            for name in &case.requires {
                let feature = harness::feature(name)?;
                if unsupported.contains(&feature) {
                    return Err(Finding::skip(format!(
                        "the adapter declares the feature `{name}` unsupported: a client with it runs this case; without it, declare the case in --known-unsupported with a reason"
                    )));
                }
            }
            let body = cases::body_for(&case.id).ok_or_else(|| {
                Finding::error(format!("no body is registered for the case {}", case.id))
            })?;
            let mut harness = Harness::start(case, transcript, &options).await?;
            let result = body(&mut harness).await;
            harness.conclude(result).await
        })
    }
}
