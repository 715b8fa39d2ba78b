//! Server mode: drives a server under test, in any language, over real HTTP and WebSocket.
//!
//! Every case gets fresh channels (from [`ServerOptions::channel_template`]) and its own
//! sessions, so cases run in parallel against one server. What the runner sends is raw JSON
//! text (valid or not); what the server sends is decoded with the generated types, so a frame
//! that breaks the schema is itself a finding (FERRY-TRANSPORT-2).
//!
//! The pieces:
//! - `driver`: the raw WebSocket driver. Each session is a task that owns the socket, answers
//!   pings (unless a case turns that off), records every frame in the case's transcript and
//!   paces what the case sends under the welcome's token bucket.
//! - `http`: the ticket, publish and history endpoints, with every exchange recorded.
//! - `ctx`: what a case body gets: its channels, sessions and timing budget.
//! - `checks`: the rules that hold for every error (FERRY-ERROR-1, FERRY-ERROR-3) and the words
//!   failures use (close-code names, positions).
//! - `cases`: the bodies, registered by case id in `cases::BODIES`; the catalogue is
//!   `cases/server.toml`, where a family of similar cases is one body with `params`.
//! - `shutdown`: the cases that stop the server (run last): the server is stopped once and
//!   each case judges its rule on what that one stop showed.
//!
//! Sessions are counted against the per-user connection limit
//! ([`ServerOptions::max_connections_per_user`]): a case reserves the sessions it opens before
//! it starts, so parallel cases never push the user over the limit, and the case that checks
//! the limit itself (FERRY-RATE-3) waits until no other case holds a session.

mod backend;
mod cases;
mod checks;
mod ctx;
mod driver;
mod http;
mod https;
mod shutdown;

/// How long the runner waits for an HTTP answer.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use ferry_protocol::{ChannelName, TicketResponse};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::case::{CaseFuture, Finding, Suite};
use crate::catalogue::CaseInfo;
use crate::transcript::Transcript;

use self::ctx::Ctx;
use self::http::{Cred, Http};

/// A hook that makes the server under test shut down gracefully, for runners that host the
/// server themselves (an in-process test); used instead of [`ServerOptions::stop_command`].
pub type StopHook = Arc<dyn Fn() + Send + Sync>;

/// How to reach the server under test, and what the run may assume about it.
///
/// Skip reasons name the command-line flag of each option (`--restricted-token`,
/// `--stop-command`, `--max-wait-ms`, ...), as `ferry-conformance server --help` lists them.
#[derive(Clone)]
pub struct ServerOptions {
    /// The server's base URL, such as `http://127.0.0.1:7400`; WebSocket sessions go to the
    /// same host (`ws://`, or `wss://` for `https://`).
    pub url: String,
    /// Another node of the same deployment (its base URL) to open the WebSocket sessions at,
    /// while tickets, backend publishes and history go to [`url`](Self::url); `None` for one
    /// node.
    pub ws_url: Option<String>,
    /// A PEM file of certificate authorities to trust, besides the system's, for an
    /// `https://` server with a private CA.
    pub ca_file: Option<std::path::PathBuf>,
    /// A bearer credential with read and write on the test channels and the right to publish
    /// over HTTP (`POST /v1/publish`).
    pub token: String,
    /// A credential that lacks rights on some channel of the template. Without it the
    /// permission cases are skipped; with it, they find a forbidden channel from the
    /// permissions its welcome lists.
    pub restricted_token: Option<String>,
    /// What the restricted credential holds on the template's channels; the permission cases
    /// expect the server to refuse the rest, whatever its welcome lists. Nothing by default.
    pub restricted_rights: RestrictedRights,
    /// The channels the cases use: `{}` is replaced by a segment unique to each case and run
    /// (lowercase letters, digits and `-`). `project:{}:tasks` by default.
    pub channel_template: String,
    /// A payload every channel of the template accepts. By default a task progress of the
    /// example application.
    pub payload: Value,
    /// A payload the template's namespace refuses (FERRY-CHANNEL-4); the case is skipped when
    /// `None`.
    pub invalid_payload: Option<Value>,
    /// A channel outside every namespace the server declares (FERRY-CHANNEL-5); the cases are
    /// skipped when `None`.
    pub outside_channel: Option<String>,
    /// String fields of the payload's schema that take about `max_message_bytes` characters,
    /// for the case of an HTTP publish too large to deliver (tried after the payload's own
    /// string fields and the case's).
    pub pad_fields: Vec<String>,
    /// How many sessions one user may hold at once (the limit is not advertised). 16 by
    /// default, the protocol's default.
    pub max_connections_per_user: u64,
    /// The most bytes of events the server queues for one session that does not read (not
    /// advertised). 4 MiB by default, ferry-server's default.
    pub max_queued_bytes: u64,
    /// The longest a timing case may wait; a case whose wait, computed from the server's
    /// advertised values, is longer is skipped. 45 s by default.
    pub max_wait: Duration,
    /// A shell command that makes the server shut down gracefully. The shutdown cases run
    /// last, and are skipped without it (or [`stop`](Self::stop)).
    pub stop_command: Option<String>,
    /// Stops the server in-process; wins over [`stop_command`](Self::stop_command).
    pub stop: Option<StopHook>,
    /// The slack every timing check allows, stated in its failures. 250 ms by default.
    pub tolerance: Duration,
    /// Where the runner listens as the application's backend, which the server under test
    /// must be configured to call (`http://ADDR/`); the RPC cases that need a backend are
    /// skipped without it.
    pub backend_listen: Option<std::net::SocketAddr>,
    /// The secret the server sends the backend as a bearer token (FERRY-HOOK-4), checked by
    /// the runner's backend when given.
    pub backend_secret: Option<String>,
    /// A method the server's application declares, and valid params for it: the RPC cases
    /// call it. `tasks:start` of the example application by default.
    pub rpc_method: String,
    /// Params [`rpc_method`](Self::rpc_method) accepts.
    pub rpc_params: Value,
    /// A result that breaks the method's result schema (FERRY-RPC-4); `{}` by default, which
    /// the example application's `TaskStarted` refuses.
    pub rpc_invalid_result: Value,
    /// A result the method's result schema accepts.
    pub rpc_result: Value,
    /// The channels of a namespace whose publishes and subscribes the server asks its backend
    /// about (FERRY-HOOK-1, FERRY-HOOK-2): `{}` is replaced as in
    /// [`channel_template`](Self::channel_template). The hook cases are skipped when `None`;
    /// `crates/conformance/fixtures/hooked-app` declares `hooked:*` for a server to serve.
    pub hooked_channel: Option<String>,
    /// A payload the hooked namespace accepts, which the hook cases publish.
    pub hooked_payload: Value,
    /// Another payload the hooked namespace accepts, with which the backend replaces a
    /// publish's.
    pub hooked_replacement: Value,
    /// A credential of another user than [`token`](Self::token)'s, with read and write on the
    /// presence and exclusive channels: the presence and hold cases need two users. They are
    /// skipped without it.
    pub second_token: Option<String>,
    /// The channels of a namespace that keeps presence (FERRY-PRESENCE-1): `{}` is replaced as
    /// in [`channel_template`](Self::channel_template). The presence cases are skipped when
    /// `None`; `crates/conformance/fixtures/presence-app` declares `presence:*`.
    pub presence_channel: Option<String>,
    /// The channels of an exclusive namespace that refuses a second hold (FERRY-HOLD-2,
    /// `"exclusive": "refuse"`); the fixture declares `solo:*`.
    pub exclusive_channel: Option<String>,
    /// The channels of an exclusive namespace where a second hold takes over (FERRY-HOLD-2,
    /// `"exclusive": "take_over"`); the fixture declares `relay:*`.
    pub takeover_channel: Option<String>,
    /// A payload the namespaces of the presence and exclusive channels accept.
    pub presence_payload: Value,
    /// A payload the exclusive namespaces' schema refuses, for the check order of a publish
    /// (FERRY-PUBLISH-4); that part is skipped when `None`.
    pub presence_invalid_payload: Option<Value>,
}

impl ServerOptions {
    /// Options for the server at `url`, with `token`, and every other option at its default.
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ws_url: None,
            ca_file: None,
            token: token.into(),
            restricted_token: None,
            restricted_rights: RestrictedRights::None,
            channel_template: "project:{}:tasks".into(),
            payload: json!({ "task_id": "T-1", "status": "running", "progress": 0.5, "assignee": null }),
            invalid_payload: Some(json!({ "bogus": true })),
            outside_channel: Some("conformance:outside:namespaces".into()),
            pad_fields: Vec::new(),
            max_connections_per_user: ferry_protocol::tables::defaults::MAX_CONNECTIONS_PER_USER,
            max_queued_bytes: 4 << 20,
            max_wait: Duration::from_secs(45),
            stop_command: None,
            stop: None,
            tolerance: Duration::from_millis(250),
            backend_listen: None,
            backend_secret: None,
            rpc_method: "tasks:start".into(),
            rpc_params: json!({ "project": "alpha", "title": "conformance" }),
            rpc_invalid_result: json!({}),
            rpc_result: json!({ "task_id": "t-conformance" }),
            hooked_channel: None,
            hooked_payload: json!({ "text": "conformance" }),
            hooked_replacement: json!({ "text": "replaced by the backend" }),
            second_token: None,
            presence_channel: None,
            exclusive_channel: None,
            takeover_channel: None,
            presence_payload: json!({ "text": "conformance" }),
            presence_invalid_payload: Some(json!({})),
        }
    }

    /// Whether the run can stop the server.
    pub fn can_stop(&self) -> bool {
        self.stop.is_some() || self.stop_command.is_some()
    }
}

impl fmt::Debug for ServerOptions {
    /// Credentials are never shown (FERRY-TICKET-6 holds for the runner too).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerOptions")
            .field("url", &self.url)
            .field("ws_url", &self.ws_url)
            .field("ca_file", &self.ca_file)
            .field("token", &"<redacted>")
            .field(
                "restricted_token",
                &self.restricted_token.as_ref().map(|_| "<redacted>"),
            )
            .field("restricted_rights", &self.restricted_rights)
            .field("channel_template", &self.channel_template)
            .field("payload", &self.payload)
            .field("invalid_payload", &self.invalid_payload)
            .field("outside_channel", &self.outside_channel)
            .field("pad_fields", &self.pad_fields)
            .field("max_connections_per_user", &self.max_connections_per_user)
            .field("max_queued_bytes", &self.max_queued_bytes)
            .field("max_wait", &self.max_wait)
            .field("stop_command", &self.stop_command)
            .field("stop", &self.stop.as_ref().map(|_| "<hook>"))
            .field("tolerance", &self.tolerance)
            .field("backend_listen", &self.backend_listen)
            .field(
                "backend_secret",
                &self.backend_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("rpc_method", &self.rpc_method)
            .field("rpc_params", &self.rpc_params)
            .field("rpc_invalid_result", &self.rpc_invalid_result)
            .field("hooked_channel", &self.hooked_channel)
            .field("hooked_payload", &self.hooked_payload)
            .field("hooked_replacement", &self.hooked_replacement)
            .field("rpc_result", &self.rpc_result)
            .field(
                "second_token",
                &self.second_token.as_ref().map(|_| "<redacted>"),
            )
            .field("presence_channel", &self.presence_channel)
            .field("exclusive_channel", &self.exclusive_channel)
            .field("takeover_channel", &self.takeover_channel)
            .field("presence_payload", &self.presence_payload)
            .field("presence_invalid_payload", &self.presence_invalid_payload)
            .finish()
    }
}

/// The WebSocket base URL (`ws://host:port` or `wss://host:port`) of a node's base URL.
fn ws_base_of(base: &str) -> anyhow::Result<String> {
    if let Some(rest) = base.strip_prefix("https://") {
        Ok(format!("wss://{rest}"))
    } else if let Some(rest) = base.strip_prefix("http://") {
        Ok(format!("ws://{rest}"))
    } else {
        bail!("the server URL {base} must start with http:// or https://");
    }
}

/// The server-mode suite: one per run, shared by every case.
pub struct ServerSuite {
    shared: Arc<Shared>,
}

/// What every case of a run shares.
struct Shared {
    options: ServerOptions,
    client: reqwest::Client,
    /// TLS for `https://` and `wss://` servers: the system's CAs and `--ca-file`.
    tls: Arc<rustls::ClientConfig>,
    /// The base URL without a trailing slash.
    base: String,
    /// The WebSocket base URL (`ws://host:port`): `--ws-url`'s node, or `--url`'s.
    ws_base: String,
    /// The WebSocket base URL of `--url`'s node when `--ws-url` names another node.
    http_node_ws_base: Option<String>,
    sessions: Arc<SessionBudget>,
    shutdown: tokio::sync::OnceCell<Arc<shutdown::Observation>>,
    /// The runner's backend, with `--backend-listen`; started once the credentials have been
    /// checked, so that a run that cannot start holds no port.
    backend: std::sync::OnceLock<backend::ScriptedBackend>,
}

impl ServerSuite {
    /// Checks up front that the server answers and that the credentials get tickets, so that a
    /// wrong URL or token is one clear error rather than a failure in every case.
    pub async fn connect(options: ServerOptions) -> anyhow::Result<Self> {
        let base = options.url.trim_end_matches('/').to_owned();
        let ws_base = ws_base_of(
            options
                .ws_url
                .as_deref()
                .map_or(base.as_str(), |url| url.trim_end_matches('/')),
        )?;
        let http_node_ws_base = Some(ws_base_of(&base)?).filter(|own| *own != ws_base);
        check_template(&options.channel_template, "--channel")?;
        for (template, flag) in [
            (&options.hooked_channel, "--hooked-channel"),
            (&options.presence_channel, "--presence-channel"),
            (&options.exclusive_channel, "--exclusive-channel"),
            (&options.takeover_channel, "--takeover-channel"),
        ] {
            if let Some(template) = template {
                check_template(template, flag)?;
            }
        }
        if let Some(outside) = &options.outside_channel
            && ChannelName::try_from(outside.as_str()).is_err()
        {
            bail!("--outside-channel {outside:?} is not a valid channel name");
        }
        if options.max_connections_per_user == 0 {
            bail!("--max-connections-per-user must be at least 1");
        }
        let client = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .build()
            .context("cannot build the HTTP client")?;
        let tls = ferry_client::tls::client_config(options.ca_file.as_deref())?;
        let limit = usize::try_from(options.max_connections_per_user).unwrap_or(usize::MAX);
        if ferry_protocol::MethodName::try_from(options.rpc_method.as_str()).is_err() {
            bail!(
                "--rpc-method {:?} is not a method name: ':'-separated segments of a-z, 0-9, '_' and '-'",
                options.rpc_method
            );
        }
        let shared = Arc::new(Shared {
            backend: std::sync::OnceLock::new(),
            client,
            tls,
            base,
            ws_base,
            http_node_ws_base,
            sessions: SessionBudget::new(limit),
            shutdown: tokio::sync::OnceCell::new(),
            options,
        });
        let http = Http::new(&shared, Transcript::new());
        let main = check_ticket(&http, Cred::Main, "--token").await?;
        if shared.options.restricted_token.is_some() {
            check_ticket(&http, Cred::Restricted, "--restricted-token").await?;
        }
        if shared.options.second_token.is_some() {
            let second = check_ticket(&http, Cred::Second, "--second-token").await?;
            if second.user == main.user {
                bail!(
                    "--second-token gets tickets for the user {:?}, as --token does: the presence and hold cases need a credential of another user",
                    main.user.as_str()
                );
            }
        }
        if let Some(address) = shared.options.backend_listen {
            let backend =
                backend::ScriptedBackend::start(address, shared.options.backend_secret.clone())
                    .await?;
            let _ = shared.backend.set(backend);
        }
        Ok(Self { shared })
    }
}

/// Gets one ticket with `cred`, or says clearly why not.
async fn check_ticket(http: &Http, cred: Cred, flag: &str) -> anyhow::Result<TicketResponse> {
    let url = format!("{}/v1/tickets", http.base());
    let reply = http
        .call(reqwest::Method::POST, "/v1/tickets", &cred, None)
        .await
        .map_err(|finding| anyhow::anyhow!("cannot reach {url}: {} (--url)", describe(&finding)))?;
    if reply.status != 201 {
        let code = reply
            .error_body()
            .map(|body| body.error.code.to_string())
            .unwrap_or_else(|_| "no ErrorBody".into());
        bail!(
            "cannot obtain a ticket from {url}: {} {code} — pass a valid {flag}",
            reply.status
        );
    }
    reply.json::<TicketResponse>().map_err(|e| {
        anyhow::anyhow!("{url} answered 201 with a body that is not a TicketResponse: {e}")
    })
}

fn describe(finding: &Finding) -> String {
    match finding {
        Finding::Fail { expected, observed } => format!("expected {expected}; observed {observed}"),
        Finding::Skip(reason) | Finding::Error(reason) | Finding::Inconclusive(reason) => {
            reason.clone()
        }
    }
}

impl Suite for ServerSuite {
    fn target(&self) -> String {
        self.shared.base.clone()
    }

    fn start(&self, case: &'static CaseInfo, transcript: Transcript) -> CaseFuture {
        let shared = self.shared.clone();
        transcript.secret(&shared.options.token);
        if let Some(token) = &shared.options.restricted_token {
            transcript.secret(token);
        }
        if let Some(secret) = &shared.options.backend_secret {
            transcript.secret(secret);
        }
        if let Some(token) = &shared.options.second_token {
            transcript.secret(token);
        }
        Box::pin(async move {
            let Some(body) = cases::body(&case.id) else {
                return Err(Finding::error(format!(
                    "no body is registered for {} (a runner bug)",
                    case.id
                )));
            };
            if let Some(param) = body.params.iter().find(|p| !case.params.contains_key(**p)) {
                return Err(Finding::error(format!(
                    "{}: the catalogue entry lacks the param {param:?} its body reads",
                    case.id
                )));
            }
            for need in &case.requires {
                if let Some(reason) = missing(&shared.options, need)? {
                    return Err(Finding::skip(reason));
                }
            }
            if matches!(body.sessions, cases::Sessions::All) {
                transcript.note(
                    "runner",
                    "waiting until no other case holds a session of the user",
                );
            }
            let reservation = shared.sessions.reserve(body.sessions).await;
            let ctx = Ctx::new(shared, case, transcript, reservation);
            (body.run)(ctx).await
        })
    }
}

/// What the restricted credential may do on the channels of the template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestrictedRights {
    /// Neither read nor write: every permission case runs.
    None,
    /// Read only: the write cases run.
    Read,
    /// Write only: the read cases run.
    Write,
}

impl RestrictedRights {
    /// Whether the credential holds `access` there.
    pub fn holds(self, access: ferry_protocol::Access) -> bool {
        matches!(
            (self, access),
            (Self::Read, ferry_protocol::Access::Read)
                | (Self::Write, ferry_protocol::Access::Write)
        )
    }
}

/// Checks that a channel template (`flag` names its option) holds `{}` once and makes valid
/// channel names.
fn check_template(template: &str, flag: &str) -> anyhow::Result<()> {
    if template.matches("{}").count() != 1 {
        bail!("the channel template {template:?} must contain {{}} exactly once ({flag})");
    }
    let sample = template.replace("{}", "c0123456-89abcdef-1");
    if ChannelName::try_from(sample.as_str()).is_err() {
        bail!(
            "the channel template {template:?} does not make valid channel names (for example {sample:?}): segments are lowercase letters, digits, '_' and '-' ({flag})"
        );
    }
    Ok(())
}

/// Why a case that requires `need` cannot run with these options, if it cannot.
fn missing(options: &ServerOptions, need: &str) -> Result<Option<String>, Finding> {
    Ok(match need {
        "restricted_token" => options.restricted_token.is_none().then(|| {
            "needs a credential that lacks rights on some channel of the template: pass --restricted-token".to_owned()
        }),
        "stop_command" => (!options.can_stop()).then(|| {
            "stops the server: pass --stop-command (a shell command that makes the server shut down gracefully)".to_owned()
        }),
        "invalid_payload" => options.invalid_payload.is_none().then(|| {
            "needs a payload the template's namespace refuses: pass --invalid-payload".to_owned()
        }),
        "outside_channel" => options.outside_channel.is_none().then(|| {
            "needs a channel outside every namespace the server declares: pass --outside-channel"
                .to_owned()
        }),
        "hooked_channel" => options.hooked_channel.is_none().then(|| {
            "needs a namespace whose publishes and subscribes the server asks its backend about: serve one (ferry-server: --app crates/conformance/fixtures/hooked-app beside the application) and pass --hooked-channel 'hooked:{}'".to_owned()
        }),
        "second_token" => options.second_token.is_none().then(|| {
            "needs two users: pass --second-token, a credential of another user than --token's with read and write on the presence and exclusive channels".to_owned()
        }),
        "presence_channel" => options.presence_channel.is_none().then(|| {
            format!("needs a namespace that keeps presence: serve one ({FIXTURE}) and pass --presence-channel 'presence:{{}}'")
        }),
        "exclusive_channel" => options.exclusive_channel.is_none().then(|| {
            format!("needs an exclusive namespace that refuses a second hold: serve one ({FIXTURE}) and pass --exclusive-channel 'solo:{{}}'")
        }),
        "takeover_channel" => options.takeover_channel.is_none().then(|| {
            format!("needs an exclusive namespace where a second hold takes over: serve one ({FIXTURE}) and pass --takeover-channel 'relay:{{}}'")
        }),
        "backend" => options.backend_listen.is_none().then(|| {
            "needs the runner as the application's backend: pass --backend-listen ADDR and configure the server's backend as http://ADDR/ (ferry-server: --backend-url), with --rpc-method naming a method the server declares".to_owned()
        }),
        other => {
            return Err(Finding::error(format!(
                "the catalogue requires {other:?}, which server mode does not know"
            )));
        }
    })
}

/// Where the presence and hold cases' skip reasons send the reader for a fixture to serve.
const FIXTURE: &str =
    "ferry-server: --app crates/conformance/fixtures/presence-app beside the application";

/// The requirements server-mode cases may name in `requires`.
#[cfg(test)]
const KNOWN_REQUIREMENTS: &[&str] = &[
    "restricted_token",
    "stop_command",
    "invalid_payload",
    "outside_channel",
    "backend",
    "hooked_channel",
    "second_token",
    "presence_channel",
    "exclusive_channel",
    "takeover_channel",
];

/// The user's sessions the run may hold at once, shared out among running cases.
///
/// A case reserves what it opens before it starts; the reservation is given back once the
/// case has ended and each of its sessions is closed. The case that needs every slot waits
/// until no case holds any, without holding up the others meanwhile, and then holds up new
/// reservations until it ends.
struct SessionBudget {
    limit: usize,
    state: Mutex<BudgetState>,
    changed: Notify,
}

#[derive(Default)]
struct BudgetState {
    held: usize,
    exclusive: bool,
}

/// Sessions reserved by one case; given back when the last clone drops.
pub(crate) struct Reservation {
    budget: Arc<SessionBudget>,
    sessions: usize,
    requested: usize,
    exclusive: bool,
}

impl SessionBudget {
    fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            state: Mutex::new(BudgetState::default()),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BudgetState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `want` fits, and takes it.
    async fn reserve(self: &Arc<Self>, want: cases::Sessions) -> Arc<Reservation> {
        let (requested, exclusive) = match want {
            cases::Sessions::Up(n) => (n, false),
            cases::Sessions::All => (self.limit, true),
        };
        let sessions = requested.min(self.limit);
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                let fits = !state.exclusive
                    && if exclusive {
                        state.held == 0
                    } else {
                        state.held + sessions <= self.limit
                    };
                if fits {
                    state.held += sessions;
                    state.exclusive = exclusive;
                    return Arc::new(Reservation {
                        budget: self.clone(),
                        sessions,
                        requested,
                        exclusive,
                    });
                }
            }
            notified.await;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        {
            let mut state = self.budget.lock();
            state.held = state.held.saturating_sub(self.sessions);
            if self.exclusive {
                state.exclusive = false;
            }
        }
        self.budget.changed.notify_waiters();
    }
}

impl Reservation {
    /// How many sessions the case may open.
    pub(crate) fn sessions(&self) -> usize {
        self.sessions
    }

    /// How many sessions the case asked for (more than it got when the user's limit is
    /// lower).
    pub(crate) fn requested(&self) -> usize {
        self.requested
    }

    /// Whether the case holds every session of the user (no other case runs meanwhile).
    pub(crate) fn exclusive(&self) -> bool {
        self.exclusive
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::{Mode, of_mode};

    #[test]
    fn every_server_case_has_a_body_and_every_body_a_case() {
        let ids: Vec<&str> = of_mode(Mode::Server).map(|c| c.id.as_str()).collect();
        assert!(ids.len() > 40, "the server catalogue is nearly empty");
        let without: Vec<&&str> = ids.iter().filter(|id| cases::body(id).is_none()).collect();
        assert!(without.is_empty(), "cases without a body: {without:?}");
        let unused: Vec<&str> = cases::BODIES
            .iter()
            .map(|b| b.id)
            .filter(|key| !ids.iter().any(|id| cases::matches(key, id)))
            .collect();
        assert!(unused.is_empty(), "bodies without a case: {unused:?}");
    }

    #[test]
    fn every_requirement_is_known_and_families_have_their_params() {
        for case in of_mode(Mode::Server) {
            for need in &case.requires {
                assert!(
                    KNOWN_REQUIREMENTS.contains(&need.as_str()),
                    "{}: unknown requirement {need}",
                    case.id
                );
            }
            let body = cases::body(&case.id).expect("checked above");
            for param in body.params {
                assert!(
                    case.params.contains_key(*param),
                    "{}: the body reads the param {param:?}, which the entry lacks",
                    case.id
                );
            }
        }
    }

    #[test]
    fn shutdown_cases_run_last_and_need_a_way_to_stop() {
        for case in of_mode(Mode::Server) {
            let stops = case.id.starts_with("server.shutdown.");
            assert_eq!(
                case.last, stops,
                "{}: only shutdown cases run last",
                case.id
            );
            if stops {
                assert!(
                    case.requires.iter().any(|r| r == "stop_command"),
                    "{}",
                    case.id
                );
            }
        }
    }

    #[tokio::test]
    async fn the_exclusive_reservation_waits_for_the_others_and_holds_them_up() {
        let budget = SessionBudget::new(4);
        let first = budget.reserve(cases::Sessions::Up(3)).await;
        let second = budget.reserve(cases::Sessions::Up(1)).await;
        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.reserve(cases::Sessions::All).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiting.is_finished(),
            "the exclusive case waits for the others"
        );
        drop(first);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "one session is still held");
        drop(second);
        let all = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("granted once nothing is held")
            .expect("the task ran");
        assert_eq!(all.sessions(), 4);
        let blocked = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.reserve(cases::Sessions::Up(1)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !blocked.is_finished(),
            "held up while the exclusive case runs"
        );
        drop(all);
        let one = tokio::time::timeout(Duration::from_secs(1), blocked)
            .await
            .expect("granted once the exclusive case ends")
            .expect("the task ran");
        assert_eq!(one.sessions(), 1);
    }
}
