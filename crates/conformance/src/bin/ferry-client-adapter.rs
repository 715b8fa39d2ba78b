//! `ferry-client-adapter`: the conformance adapter of the Rust client, [`ferry_client`].
//!
//! An adapter is a small program that wraps a client under test so that `ferry-conformance
//! client -- <adapter command>` can drive it. It plays the application: it reads what the
//! application does from stdin and writes what the application saw to stdout, one JSON object
//! per line each way. The contract is `schema/conformance/adapter.schema.json`, rendered in
//! `generated/conformance/docs/REFERENCE.md`; in short:
//!
//! - At start-up, before reading anything, write `ready` (who you are, which optional features
//!   your client lacks).
//! - Commands, in order: `connect` (first, once), then any of `subscribe`, `unsubscribe`,
//!   `publish`, `call` and `close`. Carry each out through the client's public API, as an application
//!   would; never talk to the server yourself.
//! - Reports: `subscribed`, `refused`, `delivered`, `incomplete` and `members` come from the
//!   application's handlers; `published` or `publish_failed` answers each `publish` (by its `ref`), and
//!   `answered` or `call_failed` each `call`; `stopped`
//!   is written once, when the client stops for good; `log` is free text.
//! - Report, do not judge: one `delivered` line per handler call, with no de-duplication or
//!   filtering, because the runner checks exactly that (for example FERRY-EVENT-5: a handler
//!   registered twice on a channel is still called once per event).
//! - Write each line whole and flush it at once; logs go to stderr. Exit when stdin closes,
//!   after closing the client and writing every outstanding report.
//!
//! Choices this adapter makes that an adapter for another client should make too:
//!
//! - One application handler per (channel, handler name): subscribing the same name twice on a
//!   channel registers the same handler object again.
//! - Every handler call is reported, the channel-level ones too (`subscribed`, `incomplete`,
//!   `refused`): this client hands those to every handler of the channel, so with two
//!   different handlers on a channel each appears twice.
//! - Publishes and calls run concurrently, each in its own task, but reach the client in the
//!   order of their commands.
//! - A subscribe's `info`, `hold` and `members` go to [`Client::subscribe_with`]. This client
//!   tells its application no hold's fence, so `subscribed` never carries one (the runner checks
//!   the fence on the wire). Each handler of a channel that tracks members keeps the members it
//!   was given ([`ChannelEvent::Members`]) and applies each [`ChannelEvent::Presence`] after it
//!   (a join sets the member with one session and its info, a leave removes it), reporting
//!   `members` after each.
//!
//! Try it against a local `ferry-server` (development auth prints a token):
//!
//! ```sh
//! printf '%s\n' \
//!   '{"type":"connect","url":"http://127.0.0.1:7400","credential":"TOKEN"}' \
//!   '{"type":"subscribe","channel":"project:alpha:tasks","handler":"a"}' \
//!   '{"type":"publish","ref":"p-1","channel":"project:alpha:tasks","payload":{"task_id":"T-1","status":"running","progress":0.5,"assignee":null}}' \
//!   | cargo run -q -p ferry-conformance --bin ferry-client-adapter
//! ```
//!
//! (stdin closes right after the last command, so add a `sleep` before it closes to see
//! events arrive.)

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use anyhow::{Context, Result};
use ferry_client::{
    CallError, ChannelEvent, Client, Handler, PublishError, StopReason, SubscribeOptions,
};
use ferry_conformance::adapter::{
    AdapterCommand, AdapterReport, Answered, Call, CallFailed, Channel, Delivered, HandlerName,
    Incomplete, IncompleteCause, Info, Log, MemberEntry, Members, Publish, PublishFailed,
    Published, Ready, Refused, Seq, Stopped, StoppedReason, Subscribe, Subscribed,
};
use ferry_protocol::client::IncompleteCause as ClientIncompleteCause;
use ferry_protocol::runtime::UInt;
use ferry_protocol::{
    ChannelName, ClientState, IdempotencyKey, Member, MethodName, PresenceChange, PresenceInfo,
    RecoveryGap,
};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, warn};

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    report(Ready {
        // ferry-client shares the workspace's version with this crate.
        adapter: format!("ferry-client {}", env!("CARGO_PKG_VERSION"))
            .try_into()
            .context("the adapter's name")?,
        unsupported: Vec::new(),
    });

    let mut commands = read_lines();
    let mut app: Option<App> = None;
    while let Some(line) = commands.recv().await {
        let command = match serde_json::from_str::<AdapterCommand>(&line) {
            Ok(command) => command,
            Err(error) => {
                log(format!(
                    "ignored a line that is not an AdapterCommand: {error}"
                ));
                continue;
            }
        };
        debug!(command = command.type_name(), "command");
        match (command, &mut app) {
            (AdapterCommand::Connect(connect), None) => {
                let client =
                    Client::builder(connect.url.as_str(), connect.credential.as_str()).connect();
                app = Some(App::new(client));
            }
            (AdapterCommand::Connect(_), Some(_)) => log("ignored a second connect".into()),
            (command, None) => log(format!("ignored {} before connect", command.type_name())),
            (AdapterCommand::Subscribe(c), Some(app)) => app.subscribe(c),
            (AdapterCommand::Unsubscribe(c), Some(app)) => app.unsubscribe(c.channel, c.handler),
            (AdapterCommand::Publish(publish), Some(app)) => app.publish(publish).await,
            (AdapterCommand::Call(call), Some(app)) => app.call(call).await,
            (AdapterCommand::Close(_), Some(app)) => app.client.close().await,
        }
    }
    // stdin closed: close the client, then let every outstanding report out.
    if let Some(app) = app {
        app.finish().await;
    }
    Ok(())
}

/// The application around the client under test.
struct App {
    client: Client,
    /// The application's handlers, one per (channel, handler name).
    handlers: HashMap<(Channel, HandlerName), Handler>,
    /// The publishes and calls in flight, each reporting its own outcome.
    requests: JoinSet<()>,
    /// Reports `stopped` when the client stops.
    stopped: JoinHandle<()>,
}

impl App {
    fn new(client: Client) -> Self {
        let watcher = client.clone();
        // `wait_for` checks the current state before waiting for changes, so a stop that
        // happens before this task runs is not missed.
        let stopped = tokio::spawn(async move {
            let state = watcher
                .wait_for(|s| matches!(s, ClientState::Stopped(_)))
                .await;
            report(match state {
                ClientState::Stopped(reason) => stopped_report(&reason),
                other => Stopped {
                    reason: StoppedReason::Other,
                    close_code: None,
                    message: text(format!("the client's task ended in state {other:?}")),
                },
            });
        });
        Self {
            client,
            handlers: HashMap::new(),
            requests: JoinSet::new(),
            stopped,
        }
    }

    fn subscribe(&mut self, command: Subscribe) {
        let Subscribe {
            channel,
            handler: name,
            info,
            hold,
            members,
        } = command;
        let Some(channel_name) = channel_name(&channel) else {
            return;
        };
        let options = SubscribeOptions {
            info: info.map(|info| PresenceInfo(info.0)),
            hold: hold.unwrap_or(false),
            members: members.unwrap_or(false),
        };
        let handler = self
            .handlers
            .entry((channel.clone(), name.clone()))
            .or_insert_with(|| handler(channel, name));
        if self
            .client
            .subscribe_with(channel_name, handler, options)
            .is_err()
        {
            log("subscribe: the client has stopped".into());
        }
    }

    fn unsubscribe(&mut self, channel: Channel, name: HandlerName) {
        let Some(channel_name) = channel_name(&channel) else {
            return;
        };
        // The handler is kept: subscribing its name again registers the same handler.
        let Some(handler) = self.handlers.get(&(channel, name)) else {
            log("unsubscribe: no handler of that name was ever subscribed to the channel".into());
            return;
        };
        if self.client.unsubscribe(channel_name, handler).is_err() {
            log("unsubscribe: the client has stopped".into());
        }
    }

    /// Starts the publish, then lets it finish in its own task. Its first step hands the
    /// publish to the client, so publishes reach the client in the order of their commands
    /// while several can wait for their acknowledgements at once.
    async fn publish(&mut self, publish: Publish) {
        let Publish {
            ref_,
            channel,
            payload,
            idempotency_key,
        } = publish;
        let channel = ChannelName::try_from(channel.to_string());
        let key = idempotency_key
            .map(|key| IdempotencyKey::try_from(key.to_string()))
            .transpose();
        let (channel, key) = match (channel, key) {
            (Ok(channel), Ok(key)) => (channel, key),
            (Err(error), _) | (_, Err(error)) => {
                // The runner only sends valid names and keys; answer anyway so it never waits.
                report(publish_failed(ref_, "bad_request", error.to_string()));
                return;
            }
        };
        let client = self.client.clone();
        let outcome = async move {
            let result = client.publish_with_key(channel, payload, key).await;
            report(match result {
                Ok(ack) => AdapterReport::from(Published {
                    ref_,
                    message_id: text_like(ack.message_id.to_string()),
                    epoch: text_like(ack.position.epoch.to_string()),
                    seq: Seq(ack.position.seq.0),
                    duplicate: ack.duplicate,
                }),
                Err(error) => publish_failed(ref_, failure_code(&error), error.to_string()).into(),
            });
        };
        self.start(outcome).await;
    }

    /// Starts the call like [`publish`](Self::publish) starts a publish.
    async fn call(&mut self, call: Call) {
        let Call {
            ref_,
            method,
            params,
            idempotency_key,
        } = call;
        let method = MethodName::try_from(method.to_string());
        let key = idempotency_key
            .map(|key| IdempotencyKey::try_from(key.to_string()))
            .transpose();
        let (method, key) = match (method, key) {
            (Ok(method), Ok(key)) => (method, key),
            (Err(error), _) | (_, Err(error)) => {
                report(call_failed(ref_, "bad_request", error.to_string()));
                return;
            }
        };
        let client = self.client.clone();
        let outcome = async move {
            let result = client.call_with_key(method, params, key).await;
            report(match result {
                Ok(answer) => AdapterReport::from(Answered {
                    ref_,
                    result: answer.result,
                    duplicate: answer.duplicate,
                }),
                Err(error) => {
                    call_failed(ref_, call_failure_code(&error), error.to_string()).into()
                }
            });
        };
        self.start(outcome).await;
    }

    /// Polls a publish or call once, which hands it to the client, and lets it finish in a
    /// task of its own if it has not yet.
    async fn start(&mut self, outcome: impl Future<Output = ()> + Send + 'static) {
        let mut outcome = Box::pin(outcome);
        let first = std::future::poll_fn(|cx| Poll::Ready(outcome.as_mut().poll(cx))).await;
        if first.is_pending() {
            self.requests.spawn(outcome);
        }
    }

    /// Closes the client and waits until `stopped` and every publish's and call's outcome are
    /// reported.
    async fn finish(mut self) {
        self.client.close().await;
        if let Err(error) = self.stopped.await {
            warn!(%error, "the task reporting the stop failed");
        }
        while let Some(done) = self.requests.join_next().await {
            if let Err(error) = done {
                warn!(%error, "a publish or call task failed");
            }
        }
    }
}

/// The application handler `name` of `channel`: reports every call it gets.
fn handler(channel: Channel, name: HandlerName) -> Handler {
    // The members this handler was given, once it was, by user.
    let tracked: Arc<Mutex<Option<BTreeMap<String, Member>>>> = Arc::default();
    Handler::new(move |event: &ChannelEvent| {
        let channel = channel.clone();
        report(match event {
            ChannelEvent::Members(members) => {
                let list: BTreeMap<String, Member> = members
                    .iter()
                    .map(|m| (m.user.to_string(), m.clone()))
                    .collect();
                let report = members_report(channel, &list);
                *tracked.lock().unwrap_or_else(|p| p.into_inner()) = Some(list);
                report.into()
            }
            ChannelEvent::Presence(presence) => {
                let mut tracked = tracked.lock().unwrap_or_else(|p| p.into_inner());
                // Presence events of a channel whose members were never given are not tracked.
                let Some(list) = tracked.as_mut() else {
                    return;
                };
                let user = presence.user.to_string();
                match presence.change {
                    PresenceChange::Join => {
                        list.insert(
                            user,
                            Member {
                                info: presence.info.clone(),
                                sessions: UInt::new(1).expect("1 is a valid session count"),
                                user: presence.user.clone(),
                            },
                        );
                    }
                    PresenceChange::Leave => {
                        list.remove(&user);
                    }
                }
                members_report(channel, list).into()
            }
            ChannelEvent::MembersFailed(error) => Log {
                message: text(format!(
                    "the members of {} could not be read: {}",
                    channel.as_str(),
                    error.code
                )),
            }
            .into(),
            ChannelEvent::Subscribed(_) => AdapterReport::from(Subscribed {
                channel,
                fence: None,
            }),
            ChannelEvent::Refused(error) => Refused {
                channel,
                code: text_like(error.code.to_string()),
            }
            .into(),
            ChannelEvent::Incomplete(cause) => Incomplete {
                channel,
                cause: incomplete_cause(cause),
            }
            .into(),
            ChannelEvent::Event(event) => Delivered {
                handler: name.clone(),
                channel: text_like(event.channel.to_string()),
                message_id: text_like(event.message_id.to_string()),
                epoch: text_like(event.position.epoch.to_string()),
                seq: Seq(event.position.seq.0),
                payload: event.payload.clone(),
            }
            .into(),
        });
    })
}

/// The members report of `channel` listing `list`.
fn members_report(channel: Channel, list: &BTreeMap<String, Member>) -> Members {
    Members {
        channel,
        members: list
            .values()
            .map(|m| MemberEntry {
                info: m.info.clone().map(|info| Info(info.0)),
                sessions: UInt::new(m.sessions.get())
                    .expect("the contract's bounds are the protocol's"),
                user: text_like(m.user.to_string()),
            })
            .collect(),
    }
}

fn incomplete_cause(cause: &ClientIncompleteCause) -> IncompleteCause {
    match cause {
        ClientIncompleteCause::Gap { .. } => IncompleteCause::Gap,
        ClientIncompleteCause::EpochChanged
        | ClientIncompleteCause::Recovery(RecoveryGap::EpochChanged) => {
            IncompleteCause::EpochChanged
        }
        ClientIncompleteCause::Recovery(RecoveryGap::HistoryExceeded) => {
            IncompleteCause::HistoryExceeded
        }
        ClientIncompleteCause::Recovery(RecoveryGap::PositionAhead) => {
            IncompleteCause::PositionAhead
        }
    }
}

fn failure_code(error: &PublishError) -> String {
    match error {
        PublishError::Refused(info) => info.code.to_string(),
        PublishError::TooLarge { .. } => "message_too_large".into(),
        PublishError::TimedOut => "timeout".into(),
        PublishError::Stopped => "stopped".into(),
    }
}

fn call_failure_code(error: &CallError) -> String {
    match error {
        CallError::Refused(info) => info.code.to_string(),
        CallError::TooLarge { .. } => "message_too_large".into(),
        CallError::TimedOut => "timeout".into(),
        CallError::Stopped => "stopped".into(),
        // Only `rpc::<M>()` decodes results; this adapter passes them through untouched.
        CallError::Types(_) => "bad_request".into(),
    }
}

fn stopped_report(reason: &StopReason) -> Stopped {
    let (reason_code, close_code) = match reason {
        StopReason::Requested => (StoppedReason::Requested, None),
        StopReason::Closed { code, .. } => (StoppedReason::Closed, UInt::new(u64::from(*code))),
        StopReason::CredentialRejected => (StoppedReason::Unauthorized, None),
        StopReason::AttemptsExhausted { .. } => (StoppedReason::AttemptsExhausted, None),
    };
    Stopped {
        reason: reason_code,
        close_code,
        message: text(reason.to_string()),
    }
}

fn publish_failed(
    ref_: ferry_conformance::adapter::Ref,
    code: impl Into<String>,
    message: String,
) -> PublishFailed {
    PublishFailed {
        ref_,
        code: text_like(code.into()),
        message: text(message),
    }
}

fn call_failed(
    ref_: ferry_conformance::adapter::Ref,
    code: impl Into<String>,
    message: String,
) -> CallFailed {
    CallFailed {
        ref_,
        code: text_like(code.into()),
        message: text(message),
    }
}

/// The protocol's name for a channel the runner named, or a `log` report saying why not.
fn channel_name(channel: &Channel) -> Option<ChannelName> {
    ChannelName::try_from(channel.to_string())
        .map_err(|error| {
            log(format!(
                "{:?} is not a channel name: {error}",
                channel.as_str()
            ))
        })
        .ok()
}

/// A string from the protocol as one of the contract's string types. The contract's bounds
/// are the protocol's own, so this cannot fail for a value the client accepted.
fn text_like<T>(value: String) -> T
where
    T: TryFrom<String>,
    T::Error: std::fmt::Debug,
{
    T::try_from(value).expect("the contract's string bounds match the protocol's")
}

/// Free text, cut to the contract's 4096 characters.
fn text(mut message: String) -> ferry_conformance::adapter::Text {
    if let Some((at, _)) = message.char_indices().nth(4096) {
        message.truncate(at);
    }
    text_like(message)
}

fn log(message: String) {
    warn!("{message}");
    report(Log {
        message: text(message),
    });
}

/// Writes one report as one line on stdout and flushes it. Called from any task; the stdout
/// lock keeps lines whole.
fn report(report: impl Into<AdapterReport>) {
    let report = report.into();
    let line = serde_json::to_string(&report).expect("a report always encodes");
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        warn!(%error, "cannot write a report to stdout");
    }
}

/// stdin's lines, read on a thread of their own; the channel closes when stdin does.
fn read_lines() -> mpsc::UnboundedReceiver<String> {
    let (lines, receiver) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(line) if line.trim().is_empty() => {}
                Ok(line) => {
                    if lines.send(line).is_err() {
                        return;
                    }
                }
                Err(error) => {
                    warn!(%error, "cannot read stdin");
                    return;
                }
            }
        }
    });
    receiver
}
