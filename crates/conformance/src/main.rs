//! `ferry-conformance`: drives a Ferry server or client through the protocol's rules and
//! reports which hold. Run `ferry-conformance --help`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use ferry_conformance::catalogue::{self, CaseInfo, Mode};
use ferry_conformance::client::{ClientOptions, ClientSuite};
use ferry_conformance::expectations::ExpectationList;
use ferry_conformance::server::{RestrictedRights, ServerOptions, ServerSuite};
use ferry_conformance::{RunOptions, RunReport, Suite, Verdict, report};

/// Drive any Ferry server or client, in any language, through the protocol's rules.
///
/// Every case has a stable id, cites rule ids from the protocol reference
/// (generated/docs/PROTOCOL.md) and has a level, MUST or SHOULD. The exit code is 0 when every
/// MUST case passes (every case, with --strict); 1 (FAILED) when one fails, errs or is
/// unexpectedly passing while listed as known to fail; 2 when the run cannot start; 3
/// (INCOMPLETE) when nothing failed but a MUST case was skipped without being declared in
/// --known-unsupported, or stayed inconclusive because the machine was too busy to time it.
#[derive(Parser)]
#[command(name = "ferry-conformance", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Drive a server under test through its ticket, publish and history endpoints and raw
    /// WebSocket frames.
    Server(Box<ServerArgs>),
    /// Drive a client under test through its adapter, against a scripted server hosted by the
    /// runner: `ferry-conformance client -- ./my-adapter --flag`.
    Client(ClientArgs),
    /// Print every case with its id, level and rules.
    List(ListArgs),
}

#[derive(Args)]
struct ListArgs {
    /// Only the cases of this mode.
    #[arg(long, value_parser = ["server", "client"])]
    mode: Option<String>,
    /// Only the cases whose id matches this glob (repeatable).
    #[arg(long = "case", value_name = "GLOB")]
    cases: Vec<String>,
    /// Print the catalogue as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Print every rule of the protocol with the cases that check it (or why none does), as
    /// the Markdown table of the crate README.
    #[arg(long, conflicts_with_all = ["mode", "cases", "json"])]
    coverage: bool,
}

#[derive(Args)]
struct RunArgs {
    /// Run only the cases whose id matches this glob (repeatable), e.g. 'server.ticket.*' or
    /// 'client.reconnect.*'.
    #[arg(long = "case", value_name = "GLOB")]
    cases: Vec<String>,
    /// How many cases run at once [default: the number of cores the runner may use].
    #[arg(long, env = "FERRY_CONFORMANCE_JOBS")]
    jobs: Option<usize>,
    /// Fail the run on SHOULD failures too.
    #[arg(long, env = "FERRY_CONFORMANCE_STRICT")]
    strict: bool,
    /// A TOML list of cases known to fail ([[case]] pattern = "glob", reason = "...").
    #[arg(long, env = "FERRY_CONFORMANCE_KNOWN_FAILING", value_name = "FILE")]
    known_failing: Option<PathBuf>,
    /// A TOML list of cases known to be flaky (same format); a failing one runs up to twice more.
    #[arg(long, env = "FERRY_CONFORMANCE_KNOWN_FLAKY", value_name = "FILE")]
    known_flaky: Option<PathBuf>,
    /// A TOML list of cases the implementation does not support (same format, the reason
    /// saying why); their skips leave the run complete. Any other skipped MUST case makes the
    /// run INCOMPLETE (exit code 3).
    #[arg(long, env = "FERRY_CONFORMANCE_KNOWN_UNSUPPORTED", value_name = "FILE")]
    known_unsupported: Option<PathBuf>,
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the results as JUnit XML to FILE.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Write the results as Markdown to FILE.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Show which cases would run, and how the lists mark them, without running any.
    #[arg(long)]
    dry_run: bool,
    /// No progress lines on stderr.
    #[arg(long, short)]
    quiet: bool,
    /// Show credentials (tokens, tickets) whole in transcripts and reports, which otherwise
    /// show only their first four characters. For local debugging: such reports hold live
    /// credentials.
    #[arg(long)]
    reveal_credentials: bool,
    /// How far a measured time may lie beyond the protocol's bound before a timing case
    /// fails, in milliseconds [default: 250 in server mode, 100 in client mode]. Measured
    /// delays can only come out longer than the implementation's own, so the lower bound stays
    /// tight (5 ms); each failure states the tolerance it applied.
    #[arg(long, env = "FERRY_CONFORMANCE_TOLERANCE_MS")]
    tolerance_ms: Option<u64>,
}

#[derive(Args)]
struct ServerArgs {
    /// The server's base URL; its endpoints are below it (/v1/tickets, /v1/ws, ...).
    #[arg(
        long,
        env = "FERRY_CONFORMANCE_URL",
        default_value = "http://127.0.0.1:7400"
    )]
    url: String,
    /// Another node of the same deployment, by its base URL: WebSocket sessions go there,
    /// while tickets, backend publishes and history go to --url. Runs the suite across two
    /// nodes sharing a broker (tickets from one node redeemed at the other, publishes to one
    /// delivered by the other).
    #[arg(long, env = "FERRY_CONFORMANCE_WS_URL")]
    ws_url: Option<String>,
    /// A PEM file of certificate authorities to trust, besides the system's, for https:// and
    /// wss:// servers whose certificate a private CA signed.
    #[arg(long, env = "FERRY_CONFORMANCE_CA_FILE", value_name = "PATH")]
    ca_file: Option<std::path::PathBuf>,
    /// The bearer credential for tickets and backend publishes: it must grant read and write
    /// on the test channels.
    #[arg(long, env = "FERRY_CONFORMANCE_TOKEN", hide_env_values = true)]
    token: String,
    /// A second credential, with fewer rights on the test channels than --token (see
    /// --restricted-rights); the permission cases are skipped without it. The cases check
    /// what the server does with it, not the permissions its welcome lists.
    /// server.channel.pattern_segments also needs a read pattern in its welcome that names
    /// channels of the server's namespaces, such as project:alpha:* beside project:*:tasks.
    #[arg(
        long,
        env = "FERRY_CONFORMANCE_RESTRICTED_TOKEN",
        hide_env_values = true
    )]
    restricted_token: Option<String>,
    /// What --restricted-token may do on the test channels: 'none' (neither read nor write:
    /// every permission case runs), 'read' (the write cases run) or 'write' (the read cases
    /// run). The server must refuse it everything else.
    #[arg(
        long,
        env = "FERRY_CONFORMANCE_RESTRICTED_RIGHTS",
        default_value = "none",
        value_parser = ["none", "read", "write"]
    )]
    restricted_rights: String,
    /// The channels cases use; '{}' becomes a segment unique to each case and run. The
    /// default fits ferry-server's embedded example application.
    #[arg(
        long,
        env = "FERRY_CONFORMANCE_CHANNEL",
        default_value = "project:{}:tasks"
    )]
    channel: String,
    /// A payload the server accepts on those channels (JSON).
    #[arg(
        long,
        env = "FERRY_CONFORMANCE_PAYLOAD",
        default_value = r#"{"task_id":"T-1","status":"running","progress":0.5,"assignee":null}"#
    )]
    payload: String,
    /// A payload the channels' schema refuses (JSON), or 'none' when the server declares no
    /// payload schema.
    #[arg(
        long,
        env = "FERRY_CONFORMANCE_INVALID_PAYLOAD",
        default_value = r#"{"bogus":true}"#
    )]
    invalid_payload: String,
    /// Listen here as the application's backend (HOST:PORT), and configure the server under
    /// test to call http://HOST:PORT/ for its RPC calls (ferry-server: --backend-url); the RPC
    /// cases that need a backend are skipped without it.
    #[arg(
        long,
        env = "FERRY_CONFORMANCE_BACKEND_LISTEN",
        value_name = "HOST:PORT"
    )]
    backend_listen: Option<std::net::SocketAddr>,
    /// The secret the server sends its backend as a bearer token, which the runner's backend
    /// checks (ferry-server: --backend-secret).
    #[arg(long, env = "FERRY_CONFORMANCE_BACKEND_SECRET", hide_env_values = true)]
    backend_secret: Option<String>,
    /// A method the server's application declares, for the RPC cases.
    #[arg(
        long,
        env = "FERRY_CONFORMANCE_RPC_METHOD",
        default_value = "tasks:start"
    )]
    rpc_method: String,
    /// Params --rpc-method accepts (JSON).
    #[arg(
        long,
        env = "FERRY_CONFORMANCE_RPC_PARAMS",
        default_value = r#"{"project":"alpha","title":"conformance"}"#
    )]
    rpc_params: String,
    /// A result --rpc-method's result schema accepts (JSON).
    #[arg(
        long,
        env = "FERRY_CONFORMANCE_RPC_RESULT",
        default_value = r#"{"task_id":"t-conformance"}"#
    )]
    rpc_result: String,
    /// A result --rpc-method's result schema refuses (JSON).
    #[arg(
        long,
        env = "FERRY_CONFORMANCE_RPC_INVALID_RESULT",
        default_value = "{}"
    )]
    rpc_invalid_result: String,
    /// The channels of a namespace whose publishes and subscribes the server asks its backend
    /// about, with {} where each case puts a segment of its own (for example 'hooked:{}', which
    /// crates/conformance/fixtures/hooked-app declares); the hook cases are skipped without it.
    #[arg(
        long,
        env = "FERRY_CONFORMANCE_HOOKED_CHANNEL",
        value_name = "TEMPLATE"
    )]
    hooked_channel: Option<String>,
    /// A payload the hooked namespace accepts (JSON), which the hook cases publish.
    #[arg(
        long,
        env = "FERRY_CONFORMANCE_HOOKED_PAYLOAD",
        default_value = r#"{"text":"conformance"}"#
    )]
    hooked_payload: String,
    /// Another payload the hooked namespace accepts (JSON), with which the runner's backend
    /// replaces a publish's.
    #[arg(
        long,
        env = "FERRY_CONFORMANCE_HOOKED_REPLACEMENT",
        default_value = r#"{"text":"replaced by the backend"}"#
    )]
    hooked_replacement: String,
    /// A credential of another user than --token's, with read and write on the presence and
    /// exclusive channels: the presence and hold cases need two users (a member that watches
    /// another join and leave, a second holder), and are skipped without it.
    #[arg(long, env = "FERRY_CONFORMANCE_SECOND_TOKEN", hide_env_values = true)]
    second_token: Option<String>,
    /// The channels of a namespace that keeps presence ("presence": true), with {} where each
    /// case puts a segment of its own (for example 'presence:{}', which
    /// crates/conformance/fixtures/presence-app declares); the presence cases are skipped
    /// without it.
    #[arg(
        long,
        env = "FERRY_CONFORMANCE_PRESENCE_CHANNEL",
        value_name = "TEMPLATE"
    )]
    presence_channel: Option<String>,
    /// The channels of an exclusive namespace that refuses a second hold ("exclusive":
    /// "refuse"; 'solo:{}' in crates/conformance/fixtures/presence-app); the hold cases that
    /// need it are skipped without it.
    #[arg(
        long,
        env = "FERRY_CONFORMANCE_EXCLUSIVE_CHANNEL",
        value_name = "TEMPLATE"
    )]
    exclusive_channel: Option<String>,
    /// The channels of an exclusive namespace where a second hold takes the channel over
    /// ("exclusive": "take_over"; 'relay:{}' in crates/conformance/fixtures/presence-app); the
    /// take-over cases are skipped without it.
    #[arg(
        long,
        env = "FERRY_CONFORMANCE_TAKEOVER_CHANNEL",
        value_name = "TEMPLATE"
    )]
    takeover_channel: Option<String>,
    /// A payload the namespaces of --presence-channel, --exclusive-channel and
    /// --takeover-channel accept (JSON).
    #[arg(
        long,
        env = "FERRY_CONFORMANCE_PRESENCE_PAYLOAD",
        default_value = r#"{"text":"conformance"}"#
    )]
    presence_payload: String,
    /// A payload the exclusive namespaces' schema refuses (JSON), or 'none' when they check no
    /// payload schema.
    #[arg(
        long,
        env = "FERRY_CONFORMANCE_PRESENCE_INVALID_PAYLOAD",
        default_value = "{}"
    )]
    presence_invalid_payload: String,
    /// A channel outside every namespace the server declares, or 'none' when it declares none.
    #[arg(
        long,
        env = "FERRY_CONFORMANCE_OUTSIDE_CHANNEL",
        default_value = "conformance:outside:namespaces"
    )]
    outside_channel: String,
    /// A string field of --payload's schema that takes about max_message_bytes characters
    /// (repeatable); the case of an HTTP publish too large to deliver pads it in a copy of
    /// --payload, after the payload's own string fields.
    #[arg(long = "pad-field", value_name = "FIELD")]
    pad_fields: Vec<String>,
    /// The server's limit of concurrent sessions per user (it is not advertised).
    #[arg(
        long,
        env = "FERRY_CONFORMANCE_MAX_CONNECTIONS_PER_USER",
        default_value_t = 16
    )]
    max_connections_per_user: u64,
    /// The most bytes of events the server queues for one session that does not read (it is
    /// not advertised; ferry-server: --outbound-queue-bytes); server.event.fell_behind
    /// publishes twice this and 4.25 MiB more (what the kernel's buffers may hold) while one session stops reading.
    #[arg(
        long,
        env = "FERRY_CONFORMANCE_MAX_QUEUED_BYTES",
        default_value_t = 4 << 20
    )]
    max_queued_bytes: u64,
    /// The longest wait a timing case may need, from the server's advertised values (ticket
    /// lifetime, heartbeat); longer ones are skipped.
    #[arg(long, env = "FERRY_CONFORMANCE_MAX_WAIT_MS", default_value_t = 45_000)]
    max_wait_ms: u64,
    /// A shell command that makes the server shut down gracefully; the shutdown cases run
    /// last and are skipped without it. With --ws-url it must stop both nodes: each is asked
    /// for new work once a session of its own got its goodbye.
    #[arg(long, env = "FERRY_CONFORMANCE_STOP_COMMAND")]
    stop_command: Option<String>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args)]
struct ClientArgs {
    /// The adapter's command line: the program and its arguments, after `--`.
    #[arg(required = true, last = true, value_name = "COMMAND")]
    command: Vec<String>,
    #[command(flatten)]
    run: RunArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FERRY_CONFORMANCE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ferry-conformance: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ferry-conformance: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::List(args) => list(&args),
        Command::Server(args) => {
            let cases = plan(Mode::Server, &args.run)?;
            if args.run.dry_run {
                return dry_run(Mode::Server, &cases, &args.run);
            }
            let options = server_options(&args)?;
            let suite = ServerSuite::connect(options).await?;
            execute(Arc::new(suite), Mode::Server, cases, &args.run).await
        }
        Command::Client(args) => {
            let cases = plan(Mode::Client, &args.run)?;
            if args.run.dry_run {
                return dry_run(Mode::Client, &cases, &args.run);
            }
            let mut options = ClientOptions::new(args.command.clone());
            if let Some(ms) = args.run.tolerance_ms {
                options.tolerance = Duration::from_millis(ms);
            }
            let suite = ClientSuite::prepare(options).await?;
            execute(Arc::new(suite), Mode::Client, cases, &args.run).await
        }
    }
}

fn server_options(args: &ServerArgs) -> Result<ServerOptions> {
    let json = |flag: &str, text: &str| -> Result<serde_json::Value> {
        serde_json::from_str(text).with_context(|| format!("--{flag} is not valid JSON: {text}"))
    };
    let optional = |text: &str| (text != "none").then(|| text.to_owned());
    let mut options = ServerOptions::new(args.url.clone(), args.token.clone());
    options.ws_url = args.ws_url.clone();
    options.ca_file = args.ca_file.clone();
    options.restricted_token = args.restricted_token.clone();
    options.restricted_rights = match args.restricted_rights.as_str() {
        "read" => RestrictedRights::Read,
        "write" => RestrictedRights::Write,
        _ => RestrictedRights::None,
    };
    options.channel_template = args.channel.clone();
    options.payload = json("payload", &args.payload)?;
    options.invalid_payload = optional(&args.invalid_payload)
        .map(|text| json("invalid-payload", &text))
        .transpose()?;
    options.outside_channel = optional(&args.outside_channel);
    options.pad_fields = args.pad_fields.clone();
    options.max_connections_per_user = args.max_connections_per_user;
    options.max_queued_bytes = args.max_queued_bytes;
    options.max_wait = Duration::from_millis(args.max_wait_ms);
    options.stop_command = args.stop_command.clone();
    options.backend_listen = args.backend_listen;
    options.backend_secret = args.backend_secret.clone();
    options.rpc_method = args.rpc_method.clone();
    options.rpc_params = json("rpc-params", &args.rpc_params)?;
    options.rpc_result = json("rpc-result", &args.rpc_result)?;
    options.rpc_invalid_result = json("rpc-invalid-result", &args.rpc_invalid_result)?;
    options.hooked_channel = args.hooked_channel.clone();
    options.hooked_payload = json("hooked-payload", &args.hooked_payload)?;
    options.hooked_replacement = json("hooked-replacement", &args.hooked_replacement)?;
    options.second_token = args.second_token.clone();
    options.presence_channel = args.presence_channel.clone();
    options.exclusive_channel = args.exclusive_channel.clone();
    options.takeover_channel = args.takeover_channel.clone();
    options.presence_payload = json("presence-payload", &args.presence_payload)?;
    options.presence_invalid_payload = optional(&args.presence_invalid_payload)
        .map(|text| json("presence-invalid-payload", &text))
        .transpose()?;
    if let Some(ms) = args.run.tolerance_ms {
        options.tolerance = Duration::from_millis(ms);
    }
    Ok(options)
}

fn plan(mode: Mode, args: &RunArgs) -> Result<Vec<&'static CaseInfo>> {
    catalogue::select(mode, &args.cases).map_err(anyhow::Error::msg)
}

fn lists(args: &RunArgs) -> Result<(ExpectationList, ExpectationList, ExpectationList)> {
    let load = |path: &Option<PathBuf>| -> Result<ExpectationList> {
        Ok(match path {
            Some(path) => ExpectationList::load(path)?,
            None => ExpectationList::default(),
        })
    };
    Ok((
        load(&args.known_failing)?,
        load(&args.known_flaky)?,
        load(&args.known_unsupported)?,
    ))
}

fn dry_run(mode: Mode, cases: &[&'static CaseInfo], args: &RunArgs) -> Result<ExitCode> {
    let (failing, flaky, unsupported) = lists(args)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{} {mode} case(s) would run:", cases.len())?;
    for case in cases {
        let mut marks = Vec::new();
        if let Some(known) = failing.matching(&case.id) {
            marks.push(format!(
                "known failing ({}): {}",
                known.pattern, known.reason
            ));
        }
        if let Some(known) = flaky.matching(&case.id) {
            marks.push(format!("known flaky ({}): {}", known.pattern, known.reason));
        }
        if let Some(known) = unsupported.matching(&case.id) {
            marks.push(format!(
                "declared unsupported ({}): {}",
                known.pattern, known.reason
            ));
        }
        if case.last {
            marks.push("runs last, alone".to_owned());
        }
        writeln!(
            out,
            "  {:<6} {:<44} {:<34} {}",
            case.level.to_string(),
            case.id,
            case.rules.join(","),
            marks.join("; ")
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn execute(
    suite: Arc<dyn Suite>,
    mode: Mode,
    cases: Vec<&'static CaseInfo>,
    args: &RunArgs,
) -> Result<ExitCode> {
    let (known_failing, known_flaky, known_unsupported) = lists(args)?;
    ferry_conformance::transcript::reveal_credentials(args.reveal_credentials);
    let jobs = args.jobs.unwrap_or_else(ferry_conformance::default_jobs);
    let options = RunOptions {
        jobs,
        strict: args.strict,
        known_failing,
        known_flaky,
        known_unsupported,
        progress: !args.quiet,
    };
    if !args.quiet {
        eprintln!(
            "ferry-conformance: {} {mode} case(s) against {}, {} at a time",
            cases.len(),
            suite.target(),
            jobs
        );
    }
    let report = ferry_conformance::run(suite, mode, cases, &options).await;
    write_reports(&report, args)?;
    let mut out = std::io::stdout().lock();
    write!(out, "{}", report::table(&report))?;
    Ok(match report.verdict() {
        Verdict::Passed => ExitCode::SUCCESS,
        Verdict::Failed => ExitCode::from(1),
        Verdict::Incomplete => ExitCode::from(3),
    })
}

fn write_reports(report: &RunReport, args: &RunArgs) -> Result<()> {
    let write = |path: &Option<PathBuf>, text: String| -> Result<()> {
        if let Some(path) = path {
            write_file(path, &text)?;
        }
        Ok(())
    };
    write(&args.json, report::json(report))?;
    write(&args.junit, report::junit(report))?;
    write(&args.markdown, report::markdown(report))?;
    Ok(())
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn list(args: &ListArgs) -> Result<ExitCode> {
    if args.coverage {
        write!(
            std::io::stdout().lock(),
            "{}",
            catalogue::coverage_markdown()
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut cases: Vec<&CaseInfo> = Vec::new();
    for mode in [Mode::Server, Mode::Client] {
        if args.mode.as_deref().is_none_or(|m| mode.to_string() == m) {
            let matching = if args.cases.is_empty() {
                catalogue::of_mode(mode).collect()
            } else {
                // A glob need only match the cases of one of the modes listed.
                let known: Vec<String> = args
                    .cases
                    .iter()
                    .filter(|g| catalogue::select(mode, std::slice::from_ref(*g)).is_ok())
                    .cloned()
                    .collect();
                if known.is_empty() {
                    Vec::new()
                } else {
                    catalogue::select(mode, &known).map_err(anyhow::Error::msg)?
                }
            };
            cases.extend(matching);
        }
    }
    anyhow::ensure!(
        !cases.is_empty(),
        "no case matches; `ferry-conformance list` shows them all"
    );
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&cases)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let width = cases.iter().map(|c| c.id.len()).max().unwrap_or(2);
    writeln!(out, "{:<6} {:<width$} {:<34} TITLE", "LEVEL", "ID", "RULES")?;
    for case in &cases {
        writeln!(
            out,
            "{:<6} {:<width$} {:<34} {}",
            case.level.to_string(),
            case.id,
            case.rules.join(","),
            case.title
        )?;
    }
    writeln!(out, "\n{} case(s)", cases.len())?;
    Ok(ExitCode::SUCCESS)
}
