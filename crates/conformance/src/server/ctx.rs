//! What a case body gets: its catalogue entry and transcript, fresh channels, sessions within
//! its reservation, the HTTP endpoints and its timing budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use ferry_protocol::{Access, ChannelName, SUBPROTOCOL, ServerMessage, TicketResponse, permits};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::driver::{self, ConnectError, Got, Session};
use super::http::{Cred, Http};
use super::{Reservation, ServerOptions, Shared};
use crate::case::{CaseResult, Finding};
use crate::catalogue::CaseInfo;
use crate::transcript::Transcript;

/// How long a request waits for its reply before the case fails (half the default deadline).
pub(crate) const REPLY_WAIT: Duration = Duration::from_secs(5);

/// How long a case waits for the welcome.
const WELCOME_WAIT: Duration = Duration::from_secs(5);

/// How much of a case's deadline its timing waits may use; the rest is for the case's own
/// steps.
const DEADLINE_MARGIN: Duration = Duration::from_secs(8);

/// Whose credential a session is opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Who {
    /// `--token`.
    Main,
    /// `--restricted-token`.
    Restricted,
    /// `--second-token`, another user than `--token`'s.
    Second,
}

impl Who {
    pub(crate) fn cred(self) -> Cred {
        match self {
            Self::Main => Cred::Main,
            Self::Restricted => Cred::Restricted,
            Self::Second => Cred::Second,
        }
    }
}

/// Which node of the deployment a session opens at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Node {
    /// `--ws-url`'s, where every case's sessions open (`--url`'s when there is no `--ws-url`).
    Ws,
    /// `--url`'s, where tickets, publishes and history go.
    Http,
}

/// One running case.
pub(crate) struct Ctx {
    /// The catalogue entry.
    pub(crate) case: &'static CaseInfo,
    /// The transcript.
    pub(crate) t: Transcript,
    /// The HTTP endpoints, recording into the transcript.
    pub(crate) http: Http,
    pub(super) shared: Arc<Shared>,
    segment: String,
    links: AtomicU32,
    opened: AtomicUsize,
    reservation: Arc<Reservation>,
}

impl Ctx {
    pub(super) fn new(
        shared: Arc<Shared>,
        case: &'static CaseInfo,
        t: Transcript,
        reservation: Arc<Reservation>,
    ) -> Self {
        let segment = format!(
            "c{:06x}-{:08x}",
            fnv(&case.id) & 0xff_ffff,
            rand::random::<u32>()
        );
        Self {
            case,
            http: Http::new(&shared, t.clone()),
            t,
            shared,
            segment,
            links: AtomicU32::new(0),
            opened: AtomicUsize::new(0),
            reservation,
        }
    }

    /// A context for the same case that records into `t` (the shared shutdown run).
    pub(super) fn with_transcript(&self, t: Transcript) -> Self {
        Self {
            case: self.case,
            http: Http::new(&self.shared, t.clone()),
            t,
            shared: self.shared.clone(),
            segment: self.segment.clone(),
            links: AtomicU32::new(0),
            opened: AtomicUsize::new(0),
            reservation: self.reservation.clone(),
        }
    }

    /// How many sessions the case may hold at once.
    pub(crate) fn allowance(&self) -> usize {
        self.reservation.sessions()
    }

    /// The runner's backend; a skip when the run has none (`--backend-listen`).
    pub(crate) fn backend(&self) -> Result<&super::backend::ScriptedBackend, Finding> {
        self.shared.backend.get().ok_or_else(|| {
            Finding::skip("needs the runner as the application's backend: pass --backend-listen ADDR and configure the server's backend as http://ADDR/")
        })
    }

    /// The run's options.
    pub(crate) fn options(&self) -> &ServerOptions {
        &self.shared.options
    }

    /// The case's `n`-th channel, fresh for this case and run.
    pub(crate) fn channel(&self, n: usize) -> String {
        self.shared
            .options
            .channel_template
            .replace("{}", &self.unique_segment(n))
    }

    /// The segment that stands for `{}` in the case's `n`-th channel: unique to the case and
    /// the run.
    pub(crate) fn unique_segment(&self, n: usize) -> String {
        format!("{}-{n}", self.segment)
    }

    /// The case's `n`-th channel of the hooked namespace (`--hooked-channel`); a skip when
    /// the run has none.
    pub(crate) fn hooked_channel(&self, n: usize) -> Result<String, Finding> {
        let template = self
            .shared
            .options
            .hooked_channel
            .as_ref()
            .ok_or_else(|| Finding::skip("needs a hooked namespace: pass --hooked-channel"))?;
        Ok(template.replace("{}", &format!("{}-{n}", self.segment)))
    }

    /// The case's `n`-th channel of the presence namespace (`--presence-channel`); a skip when
    /// the run has none.
    pub(crate) fn presence_channel(&self, n: usize) -> Result<String, Finding> {
        self.fixture_channel(
            &self.shared.options.presence_channel,
            "--presence-channel",
            n,
        )
    }

    /// The case's `n`-th channel of the exclusive namespace that refuses a second hold
    /// (`--exclusive-channel`); a skip when the run has none.
    pub(crate) fn exclusive_channel(&self, n: usize) -> Result<String, Finding> {
        self.fixture_channel(
            &self.shared.options.exclusive_channel,
            "--exclusive-channel",
            n,
        )
    }

    /// The case's `n`-th channel of the exclusive namespace where a second hold takes over
    /// (`--takeover-channel`); a skip when the run has none.
    pub(crate) fn takeover_channel(&self, n: usize) -> Result<String, Finding> {
        self.fixture_channel(
            &self.shared.options.takeover_channel,
            "--takeover-channel",
            n,
        )
    }

    fn fixture_channel(
        &self,
        template: &Option<String>,
        flag: &str,
        n: usize,
    ) -> Result<String, Finding> {
        let template = template
            .as_ref()
            .ok_or_else(|| Finding::skip(format!("needs {flag}")))?;
        Ok(template.replace("{}", &format!("{}-{n}", self.segment)))
    }

    /// An idempotency key unique to this case and run.
    pub(crate) fn key(&self, label: &str) -> String {
        format!("{}-{label}", self.segment)
    }

    /// The payload every channel of the template accepts.
    pub(crate) fn payload(&self) -> &Value {
        &self.shared.options.payload
    }

    /// The slack of timing checks.
    pub(crate) fn tolerance(&self) -> Duration {
        self.shared.options.tolerance
    }

    /// How long a timing wait may be: `--max-wait-ms`, within the case's deadline.
    pub(crate) fn wait_budget(&self) -> Duration {
        self.shared
            .options
            .max_wait
            .min(self.case.deadline().saturating_sub(DEADLINE_MARGIN))
    }

    /// Skips the case when it would need to wait `need` (`what` says why) beyond its budget.
    pub(crate) fn within_budget(&self, need: Duration, what: &str) -> CaseResult {
        let budget = self.wait_budget();
        if need <= budget {
            return Ok(());
        }
        let limit = if budget == self.shared.options.max_wait {
            format!("--max-wait-ms ({} ms)", budget.as_millis())
        } else {
            format!(
                "the {} ms this case's deadline leaves for waiting (raise deadline_ms in cases/server.toml)",
                budget.as_millis()
            )
        };
        Err(Finding::skip(format!(
            "would wait {} ms ({what}), more than {limit} allows: raise it to at least {} ms, or start the server with shorter advertised values (ferry-server: --ticket-ttl-ms, --heartbeat-interval-ms, --heartbeat-timeout-ms, --resume-window-ms)",
            need.as_millis(),
            need.as_millis()
        )))
    }

    pub(crate) fn next_link(&self) -> String {
        format!("ws#{}", self.links.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Opens `GET /v1/ws` with `query` (such as `ticket=...`), offering `protocol`.
    pub(crate) async fn connect(
        &self,
        query: Option<&str>,
        protocol: Option<&str>,
    ) -> Result<Result<Session, ConnectError>, Finding> {
        self.connect_at(Node::Ws, query, protocol).await
    }

    /// Whether `--url` and `--ws-url` name two nodes.
    pub(crate) fn two_nodes(&self) -> bool {
        self.shared.http_node_ws_base.is_some()
    }

    /// [`Ctx::connect`] at `node`.
    async fn connect_at(
        &self,
        node: Node,
        query: Option<&str>,
        protocol: Option<&str>,
    ) -> Result<Result<Session, ConnectError>, Finding> {
        let opened = self.opened.fetch_add(1, Ordering::SeqCst) + 1;
        if !self.reservation.exclusive() && opened > self.reservation.sessions() {
            if self.reservation.requested() > self.reservation.sessions() {
                return Err(Finding::skip(format!(
                    "needs {} sessions of the user at once; --max-connections-per-user allows {}",
                    self.reservation.requested(),
                    self.reservation.sessions()
                )));
            }
            return Err(Finding::error(format!(
                "the case opened more sessions ({opened}) than it reserved ({}); a runner bug",
                self.reservation.sessions()
            )));
        }
        let path = match query {
            Some(query) => format!("/v1/ws?{query}"),
            None => "/v1/ws".to_owned(),
        };
        let base = match (node, &self.shared.http_node_ws_base) {
            (Node::Http, Some(http_node)) => http_node,
            _ => &self.shared.ws_base,
        };
        let url = format!("{base}{path}");
        let shown = match query.and_then(|q| q.strip_prefix("ticket=")) {
            Some(ticket) => format!("/v1/ws?ticket={}", redact(ticket)),
            None => path,
        };
        Ok(driver::connect(
            &url,
            &shown,
            &self.shared.tls,
            protocol,
            self.next_link(),
            &self.t,
            self.reservation.clone(),
        )
        .await)
    }

    /// Opens a session with a fresh ticket of `who`, offering ferry.v1, without waiting for
    /// anything (a set-up step: the upgrade must succeed).
    pub(crate) async fn open(&self, who: Who) -> Result<(Session, TicketResponse), Finding> {
        self.open_at(Node::Ws, who).await
    }

    /// [`Ctx::open`] at `node`.
    async fn open_at(&self, node: Node, who: Who) -> Result<(Session, TicketResponse), Finding> {
        let ticket = self.http.ticket(&who.cred()).await?;
        let session = self
            .connect_at(
                node,
                Some(&format!("ticket={}", ticket.ticket.as_str())),
                Some(SUBPROTOCOL),
            )
            .await?
            .map_err(|e| {
                Finding::error(format!(
                    "set-up: opening a session with a fresh ticket failed: {}",
                    e.describe()
                ))
            })?;
        Ok((session, ticket))
    }

    /// A welcomed session of `who` (a set-up step: the welcome must come first).
    pub(crate) async fn session(&self, who: Who) -> Result<Session, Finding> {
        self.session_at(Node::Ws, who).await
    }

    /// [`Ctx::session`] at `node`.
    async fn session_at(&self, node: Node, who: Who) -> Result<Session, Finding> {
        let (mut session, _) = self.open_at(node, who).await?;
        match expect_welcome(&mut session).await {
            Ok(()) => Ok(session),
            Err(observed) => Err(Finding::error(format!(
                "set-up: a session with a fresh ticket was not welcomed (FERRY-WELCOME-1): {observed}"
            ))),
        }
    }

    /// A welcomed session of `who` subscribed to `channel` (a set-up step).
    pub(crate) async fn subscribed(&self, who: Who, channel: &str) -> Result<Session, Finding> {
        self.subscribed_at(Node::Ws, who, channel).await
    }

    /// [`Ctx::subscribed`] at `node`.
    pub(crate) async fn subscribed_at(
        &self,
        node: Node,
        who: Who,
        channel: &str,
    ) -> Result<Session, Finding> {
        let mut session = self.session_at(node, who).await?;
        subscribe(&mut session, channel).await?;
        Ok(session)
    }

    /// A channel of the template on which the restricted credential lacks `access`, by what
    /// the run was told (`--restricted-rights`), never by the permissions the server's welcome
    /// lists: a server that grants the credential more than its rights must fail, not be
    /// believed. A skip when the credential was declared to hold `access`.
    pub(crate) fn forbidden_channel(
        &self,
        welcome: &ferry_protocol::Welcome,
        access: Access,
    ) -> Result<String, Finding> {
        let channel = self.channel(0);
        let name = ChannelName::try_from(channel.as_str())
            .map_err(|e| Finding::error(format!("{channel} is not a channel name: {e}")))?;
        let right = match access {
            Access::Read => "read",
            Access::Write => "write",
        };
        if self.shared.options.restricted_rights.holds(access) {
            return Err(Finding::skip(format!(
                "--restricted-rights says the --restricted-token holds {right} on the template's channels ({}); pass a --restricted-token without {right} there, with --restricted-rights saying what it holds, to run this case",
                self.shared.options.channel_template
            )));
        }
        if permits(&welcome.permissions, &name, access) {
            self.t.note(
                "runner",
                format!(
                    "the restricted session's welcome lists {right} on {channel} (permissions {}), which its credential was declared to lack: the server's behaviour decides",
                    serde_json::to_string(&welcome.permissions).unwrap_or_default()
                ),
            );
        }
        Ok(channel)
    }

    /// Checks that `session` is still open and answering: an unsubscribe (which needs no
    /// right) gets its unsubscribed.
    pub(crate) async fn still_open(&self, session: &mut Session, expected: &str) -> CaseResult {
        let id = session.id("probe");
        let probe = json!({ "type": "unsubscribe", "id": id, "channel": self.channel(99) });
        let reply = session.request(&probe, REPLY_WAIT, expected).await?;
        match reply {
            ServerMessage::Unsubscribed(_) => Ok(()),
            other => Err(Finding::fail(
                expected,
                format!(
                    "the probe unsubscribe {id} got {}",
                    super::checks::a(&other)
                ),
            )),
        }
    }

    /// Stops the server: the hook, or the command (spawned; its outcome is noted when it
    /// ends).
    pub(crate) fn stop_server(&self) -> Result<(), Finding> {
        if let Some(stop) = &self.shared.options.stop {
            self.t.note("runner", "stopping the server (stop hook)");
            stop();
            return Ok(());
        }
        let Some(command) = &self.shared.options.stop_command else {
            return Err(Finding::skip("no --stop-command"));
        };
        self.t
            .note("runner", format!("stopping the server: sh -c {command:?}"));
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| Finding::error(format!("cannot run --stop-command {command:?}: {e}")))?;
        let t = self.t.clone();
        tokio::spawn(async move {
            match child.wait_with_output().await {
                Ok(output) => t.note(
                    "runner",
                    format!(
                        "--stop-command ended with {}; stdout {:?}; stderr {:?}",
                        output.status,
                        String::from_utf8_lossy(&output.stdout),
                        String::from_utf8_lossy(&output.stderr)
                    ),
                ),
                Err(e) => t.note("runner", format!("--stop-command: {e}")),
            }
        });
        Ok(())
    }
}

/// Reads the first frame of `session`; it must be a welcome. On failure, what came instead.
pub(crate) async fn expect_welcome(session: &mut Session) -> Result<(), String> {
    match session.recv_raw(WELCOME_WAIT).await {
        Got::Message(ServerMessage::Welcome(welcome), at) => {
            session.welcomed(welcome, at);
            Ok(())
        }
        other => Err(format!(
            "the first frame should be a welcome; got {}",
            other.describe()
        )),
    }
}

/// Subscribes `session` to `channel` (a set-up step); returns the subscribed reply.
pub(crate) async fn subscribe(
    session: &mut Session,
    channel: &str,
) -> Result<ferry_protocol::Subscribed, Finding> {
    subscribe_from(session, channel, None).await
}

/// Subscribes `session` to `channel`, resuming after `from` if given (a set-up step).
pub(crate) async fn subscribe_from(
    session: &mut Session,
    channel: &str,
    from: Option<&ferry_protocol::StreamPosition>,
) -> Result<ferry_protocol::Subscribed, Finding> {
    let id = session.id("sub");
    let mut request = json!({ "type": "subscribe", "id": id, "channel": channel });
    if let Some(from) = from {
        request["from"] = json!(from);
    }
    let expected = format!("a subscribed reply to subscribe {id} on {channel}");
    match session
        .request(&request, REPLY_WAIT, &expected)
        .await
        .map_err(setup)?
    {
        ServerMessage::Subscribed(subscribed) => Ok(subscribed),
        other => Err(Finding::error(format!(
            "set-up: {expected} (the token must grant read on the test channels); got {}",
            super::checks::a(&other)
        ))),
    }
}

/// Turns a failed set-up step into an error: the case reaches no verdict on its own rules.
pub(crate) fn setup(finding: Finding) -> Finding {
    match finding {
        Finding::Fail { expected, observed } => Finding::error(format!(
            "set-up step failed: expected {expected}; observed {observed}"
        )),
        other => other,
    }
}

/// Shows a ticket by its first characters only.
pub(crate) fn redact(ticket: &str) -> String {
    crate::transcript::mask(ticket)
}

/// FNV-1a, for a short stable hash of a case id in its channel names.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Milliseconds between two instants, for failures.
pub(crate) fn ms_between(from: Instant, to: Instant) -> u128 {
    to.saturating_duration_since(from).as_millis()
}
