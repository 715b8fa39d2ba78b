//! What every client case body works with: its adapter, its scripted server, the welcome it
//! advertises, the messages it sends, and the timing checks, each failure stated in the
//! protocol's terms.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ferry_protocol::tables::defaults;
use ferry_protocol::{BackoffPolicy, ReconnectPolicy};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::ClientOptions;
use super::adapter::{AdapterProcess, Report};
use super::scripted::{Attempt, ClientFrame, Conn, FrameKind, ScriptedServer, TicketRequest};
use crate::adapter::Feature;
use crate::case::{CaseResult, Finding, ensure};
use crate::catalogue::CaseInfo;
use crate::transcript::Transcript;

/// The bearer credential every client is given.
pub(crate) const CREDENTIAL: &str = "conformance-credential";

/// How long a client has for its first ticket request after the connect command (it may be
/// starting up).
pub(crate) const SETUP: Duration = Duration::from_secs(5);

/// How long a client has to react to a frame or a command.
pub(crate) const REACT: Duration = Duration::from_secs(1);

/// How long the runner watches for an action that must not come (a reconnect after a stop).
pub(crate) const QUIET: Duration = Duration::from_millis(1000);

/// How much shorter than the protocol's lower bound a measured delay may be: a measured delay
/// can only come out longer than the client's own, except for the client's rounding to whole
/// milliseconds.
pub(crate) const LOWER_SLACK: Duration = Duration::from_millis(5);

/// A timing check whose delay came out too long is inconclusive when the runner's own timer
/// woke later than the tolerance divided by this during the measurement (25 ms of the client
/// mode's 100): one late wake-up of the runner stands for several of the client's (its timer,
/// its ticket request, its connect) on the same busy processor.
pub(crate) const DISTURBANCE: u32 = 4;

/// How long past the end of a delay window the runner waits before calling the delay missing
/// (so that a late request is reported with its measured delay).
const LATE_GRACE: Duration = Duration::from_millis(1000);

/// Whole milliseconds, for messages.
pub(crate) fn ms(duration: Duration) -> u128 {
    duration.as_millis()
}

/// A feature name of the adapter contract.
pub(crate) fn feature(name: &str) -> Result<Feature, Finding> {
    serde_json::from_value(Value::String(name.to_owned())).map_err(|_| {
        Finding::error(format!(
            "the case requires `{name}`, which is not a feature of the adapter contract"
        ))
    })
}

/// A reconnect policy as a welcome advertises it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Policy {
    pub(crate) base_ms: u64,
    pub(crate) factor: f64,
    pub(crate) cap_ms: u64,
    pub(crate) jitter: f64,
    pub(crate) max_attempts: u64,
    pub(crate) reset_after_ms: u64,
}

impl Policy {
    /// The policy of cases that do not study the backoff: short delays, retries to spare, no
    /// reset during the case.
    pub(crate) const SHORT: Self = Self {
        base_ms: 100,
        factor: 2.0,
        cap_ms: 400,
        jitter: 0.5,
        max_attempts: 8,
        reset_after_ms: 60_000,
    };

    /// The formula of FERRY-RECONNECT-2 for this policy, from ferry-protocol.
    pub(crate) fn backoff(&self) -> Result<BackoffPolicy, Finding> {
        let advertised: ReconnectPolicy = serde_json::to_value(self)
            .and_then(serde_json::from_value)
            .map_err(|e| {
                Finding::error(format!(
                    "the case's reconnect policy breaks the schema: {e}"
                ))
            })?;
        Ok(BackoffPolicy::from(&advertised))
    }

    /// The policy in words.
    pub(crate) fn describe(&self) -> String {
        format!(
            "base {} ms, factor {}, cap {} ms, jitter {}",
            self.base_ms, self.factor, self.cap_ms, self.jitter
        )
    }
}

/// What a scripted welcome advertises.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WelcomeSpec {
    pub(crate) heartbeat_interval_ms: u64,
    pub(crate) heartbeat_timeout_ms: u64,
    pub(crate) max_message_bytes: u64,
    pub(crate) reconnect: Policy,
    /// The advertised `rpc.timeout_ms`; with it the welcome also grants calls on every method.
    /// Only the RPC cases set it, so that the other cases' welcomes stay those of ferry.v1 1.0.
    pub(crate) rpc_timeout_ms: Option<u64>,
    /// The advertised `presence.leave_after_ms`, as a server with a presence namespace
    /// advertises it. Only the presence and hold cases set it.
    pub(crate) presence_leave_after_ms: Option<u64>,
}

impl WelcomeSpec {
    /// The protocol's default heartbeat and size limit, with `reconnect`.
    pub(crate) fn new(reconnect: Policy) -> Self {
        Self {
            heartbeat_interval_ms: defaults::HEARTBEAT_INTERVAL_MS,
            heartbeat_timeout_ms: defaults::HEARTBEAT_TIMEOUT_MS,
            max_message_bytes: defaults::MAX_MESSAGE_BYTES,
            reconnect,
            rpc_timeout_ms: None,
            presence_leave_after_ms: None,
        }
    }

    fn message(&self, session: u64) -> Value {
        let mut welcome = json!({
            "type": "welcome",
            "protocol": ferry_protocol::SUBPROTOCOL,
            "session_id": format!("conformance-{session}"),
            "user": super::scripted::USER,
            "permissions": [{"pattern": "**", "read": true, "write": true}],
            "heartbeat": {
                "interval_ms": self.heartbeat_interval_ms,
                "timeout_ms": self.heartbeat_timeout_ms,
            },
            "limits": {
                "max_message_bytes": self.max_message_bytes,
                "max_subscriptions": defaults::MAX_SUBSCRIPTIONS,
                "rate_limit": {
                    "messages_per_second": 1000,
                    "burst": 1000,
                },
            },
            "reconnect": self.reconnect,
            "resume": {
                "window_ms": defaults::RESUME_WINDOW_MS,
                "max_events": defaults::RESUME_MAX_EVENTS,
            },
        });
        if let Some(timeout_ms) = self.rpc_timeout_ms {
            welcome["rpc"] = json!({"timeout_ms": timeout_ms});
            welcome["permissions"][0]["call"] = json!(true);
        }
        if let Some(leave_after_ms) = self.presence_leave_after_ms {
            welcome["presence"] = json!({"leave_after_ms": leave_after_ms});
        }
        welcome
    }
}

/// The epoch of the scripted channels.
pub(crate) const EPOCH: &str = "ep-1";

/// An event of `channel` at (`epoch`, `seq`); its message id names its position.
pub(crate) fn event(channel: &str, epoch: &str, seq: u64, payload: Value) -> Value {
    json!({
        "type": "event",
        "channel": channel,
        "message_id": message_id(epoch, seq),
        "position": {"epoch": epoch, "seq": seq},
        "published_at_ms": 1_732_325_400_000_u64,
        "payload": payload,
    })
}

/// The message id of the scripted event at (`epoch`, `seq`).
pub(crate) fn message_id(epoch: &str, seq: u64) -> String {
    format!("m-{epoch}-{seq}")
}

/// The subscribed reply to `subscribe`, at (`epoch`, `seq`), with `recovery` when given.
pub(crate) fn subscribed(
    subscribe: &Value,
    epoch: &str,
    seq: u64,
    recovery: Option<Value>,
) -> Value {
    let mut reply = json!({
        "type": "subscribed",
        "id": subscribe["id"],
        "channel": subscribe["channel"],
        "position": {"epoch": epoch, "seq": seq},
    });
    if let Some(recovery) = recovery {
        reply["recovery"] = recovery;
    }
    reply
}

/// The subscribed reply to `subscribe` granting the hold of `fence`.
pub(crate) fn subscribed_holding(
    subscribe: &Value,
    epoch: &str,
    seq: u64,
    recovery: Option<Value>,
    fence: u64,
) -> Value {
    let mut reply = subscribed(subscribe, epoch, seq, recovery);
    reply["hold"] = json!({"fence": fence});
    reply
}

/// The member_page answering `members` with `page` (Member objects), `next` and the head
/// (`epoch`, `seq`).
pub(crate) fn member_page(
    members: &Value,
    page: Value,
    next: Option<&str>,
    epoch: &str,
    seq: u64,
) -> Value {
    json!({
        "type": "member_page",
        "id": members["id"],
        "channel": members["channel"],
        "members": page,
        "next": next,
        "position": {"epoch": epoch, "seq": seq},
    })
}

/// A presence event of `channel`: `user` joined (with `info` when given) or left, at the
/// head (`epoch`, `seq`).
pub(crate) fn presence(
    channel: &str,
    change: &str,
    user: &str,
    info: Option<Value>,
    epoch: &str,
    seq: u64,
) -> Value {
    let mut message = json!({
        "type": "presence",
        "channel": channel,
        "change": change,
        "user": user,
        "position": {"epoch": epoch, "seq": seq},
    });
    if let Some(info) = info {
        message["info"] = info;
    }
    message
}

/// The unsubscribed reply to `unsubscribe`.
pub(crate) fn unsubscribed(unsubscribe: &Value) -> Value {
    json!({
        "type": "unsubscribed",
        "id": unsubscribe["id"],
        "channel": unsubscribe["channel"],
    })
}

/// A recovery object.
pub(crate) fn recovery(complete: bool, replayed: u64, reason: Option<&str>) -> Value {
    json!({"complete": complete, "replayed": replayed, "reason": reason})
}

/// An error reply to the request `id`.
pub(crate) fn error_reply(id: &Value, code: &str) -> Value {
    json!({
        "type": "error",
        "id": id,
        "error": {"code": code, "message": "refused by the case script", "retryable": false},
    })
}

/// A ping.
pub(crate) fn ping(nonce: &str) -> Value {
    json!({"type": "ping", "nonce": nonce})
}

/// A goodbye.
pub(crate) fn goodbye(reason: &str, retry_after_ms: Option<u64>) -> Value {
    json!({
        "type": "goodbye",
        "reason": reason,
        "message": "said by the case script",
        "retry_after_ms": retry_after_ms,
    })
}

/// The published acknowledgement of `publish`.
pub(crate) fn published(publish: &Value, epoch: &str, seq: u64, duplicate: bool) -> Value {
    json!({
        "type": "published",
        "id": publish["id"],
        "channel": publish["channel"],
        "message_id": message_id(epoch, seq),
        "position": {"epoch": epoch, "seq": seq},
        "duplicate": duplicate,
    })
}

/// The rpc_result answering `rpc` with `result`.
pub(crate) fn rpc_result(rpc: &Value, result: Value, duplicate: bool) -> Value {
    json!({
        "type": "rpc_result",
        "id": rpc["id"],
        "method": rpc["method"],
        "result": result,
        "duplicate": duplicate,
    })
}

/// A `from` position as a subscribe carries it.
pub(crate) fn position(epoch: &str, seq: u64) -> Value {
    json!({"epoch": epoch, "seq": seq})
}

/// One case's world: its adapter, its scripted server, its transcript.
pub(crate) struct Harness {
    pub(crate) case: &'static CaseInfo,
    pub(crate) transcript: Transcript,
    pub(crate) tolerance: Duration,
    pub(crate) server: ScriptedServer,
    pub(crate) adapter: AdapterProcess,
    sessions: u64,
    /// Every ticket a connection attempt presented.
    presented: HashSet<String>,
}

impl Harness {
    /// Starts the case's scripted server and adapter, and reads the adapter's ready line.
    pub(crate) async fn start(
        case: &'static CaseInfo,
        transcript: Transcript,
        options: &ClientOptions,
    ) -> Result<Self, Finding> {
        transcript.secret(CREDENTIAL);
        let server = ScriptedServer::start(transcript.clone()).await?;
        let mut adapter =
            AdapterProcess::spawn(options, transcript.clone()).map_err(Finding::error)?;
        adapter.ready().await.map_err(Finding::error)?;
        Ok(Self {
            case,
            transcript,
            tolerance: options.tolerance,
            server,
            adapter,
            sessions: 0,
            presented: HashSet::new(),
        })
    }

    /// The body's verdict, except that a failure while the adapter has exited is an error:
    /// the adapter crashed, the client did not break a rule.
    pub(crate) async fn conclude(mut self, result: CaseResult) -> CaseResult {
        match result {
            Err(Finding::Fail { expected, observed }) => match self.adapter.exited().await {
                Some(Finding::Error(why)) => Err(Finding::error(format!(
                    "{why}; the case had found: expected {expected}; observed {observed}"
                ))),
                _ => Err(Finding::Fail { expected, observed }),
            },
            other => other,
        }
    }

    /// A parameter of the case, read as `T`; `None` when absent.
    pub(crate) fn param<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, Finding> {
        let Some(value) = self.case.params.get(name) else {
            return Ok(None);
        };
        serde_json::to_value(value)
            .and_then(serde_json::from_value)
            .map(Some)
            .map_err(|e| {
                Finding::error(format!(
                    "the parameter `{name}` of {} is not valid: {e}",
                    self.case.id
                ))
            })
    }

    /// The reconnect policy the case advertises: its `reconnect` parameter, or
    /// [`Policy::SHORT`].
    pub(crate) fn policy(&self) -> Result<Policy, Finding> {
        Ok(self.param("reconnect")?.unwrap_or(Policy::SHORT))
    }

    /// Sends an adapter command.
    pub(crate) async fn command(&mut self, command: Value) -> CaseResult {
        self.adapter.send(command).await
    }

    /// Tells the adapter to start its client against the scripted server.
    pub(crate) async fn connect(&mut self) -> CaseResult {
        let command =
            json!({"type": "connect", "url": self.server.url(), "credential": CREDENTIAL});
        self.command(command).await
    }

    /// Tells the adapter to register `handler` on `channel`.
    pub(crate) async fn subscribe(&mut self, channel: &str, handler: &str) -> CaseResult {
        self.command(json!({"type": "subscribe", "channel": channel, "handler": handler}))
            .await
    }

    /// Tells the adapter to register `handler` on `channel` with `options` (the subscribe
    /// command's `info`, `hold` and `members`, as a JSON object).
    pub(crate) async fn subscribe_with(
        &mut self,
        channel: &str,
        handler: &str,
        options: Value,
    ) -> CaseResult {
        let mut command = json!({"type": "subscribe", "channel": channel, "handler": handler});
        if let (Some(command), Some(options)) = (command.as_object_mut(), options.as_object()) {
            command.extend(options.clone());
        }
        self.command(command).await
    }

    /// Tells the adapter to remove `handler` from `channel`.
    pub(crate) async fn unsubscribe(&mut self, channel: &str, handler: &str) -> CaseResult {
        self.command(json!({"type": "unsubscribe", "channel": channel, "handler": handler}))
            .await
    }

    /// Tells the adapter to publish `payload` to `channel` under `reference`.
    pub(crate) async fn publish(
        &mut self,
        reference: &str,
        channel: &str,
        payload: Value,
        key: Option<&str>,
    ) -> CaseResult {
        let mut command =
            json!({"type": "publish", "ref": reference, "channel": channel, "payload": payload});
        if let Some(key) = key {
            command["idempotency_key"] = json!(key);
        }
        self.command(command).await
    }

    /// Tells the adapter to call `method` with `params` under `reference`.
    pub(crate) async fn call(
        &mut self,
        reference: &str,
        method: &str,
        params: Value,
        key: Option<&str>,
    ) -> CaseResult {
        let mut command =
            json!({"type": "call", "ref": reference, "method": method, "params": params});
        if let Some(key) = key {
            command["idempotency_key"] = json!(key);
        }
        self.command(command).await
    }

    /// The next ticket request, within `within`; `expected` says what the rule asks.
    pub(crate) async fn ticket(
        &mut self,
        within: Duration,
        expected: &str,
    ) -> Result<TicketRequest, Finding> {
        match self.server.next_ticket(within).await {
            Some(request) => Ok(request),
            None => Err(Finding::fail(
                expected,
                format!("no ticket request within {} ms", ms(within)),
            )),
        }
    }

    /// The next ticket request, which must come a delay within `window` after `reference`
    /// (checked with the tolerance); `what` names the retry and the rule, `since` the event
    /// at `reference`.
    pub(crate) async fn retry_ticket(
        &mut self,
        reference: Instant,
        window: (Duration, Duration),
        what: &str,
        since: &str,
    ) -> Result<TicketRequest, Finding> {
        let until = reference + window.1 + self.tolerance + LATE_GRACE;
        let left = until.saturating_duration_since(Instant::now());
        let Some(request) = self.server.next_ticket(left).await else {
            return Err(Finding::fail(
                self.window_text(what, window),
                format!(
                    "no ticket request within {} ms of {since}",
                    ms(until.saturating_duration_since(reference))
                ),
            ));
        };
        let measured = request.at.saturating_duration_since(reference);
        self.transcript.note(
            "runner",
            format!(
                "{what}: measured {} ms from {since} to the ticket request; allowed [{}, {}] ms",
                ms(measured),
                ms(window.0),
                ms(window.1)
            ),
        );
        self.check_delay(what, reference, measured, window, since)?;
        Ok(request)
    }

    fn window_text(&self, what: &str, window: (Duration, Duration)) -> String {
        format!(
            "{what}: the delay must lie in [{}, {}] ms (tolerance -{} ms / +{} ms)",
            ms(window.0),
            ms(window.1),
            ms(LOWER_SLACK),
            ms(self.tolerance)
        )
    }

    /// Checks a delay measured from `reference` against `window`, widened by [`LOWER_SLACK`]
    /// below and the tolerance above. A delay too long while the runner's own timer woke more
    /// than [`DISTURBANCE`] of the tolerance late is inconclusive, not a failure: the machine
    /// was too busy to tell (a delay too short has no such excuse, as the runner's lateness
    /// only lengthens what it measures from its own instants).
    pub(crate) fn check_delay(
        &self,
        what: &str,
        reference: Instant,
        measured: Duration,
        window: (Duration, Duration),
        since: &str,
    ) -> CaseResult {
        let low = window.0.saturating_sub(LOWER_SLACK);
        let high = window.1 + self.tolerance;
        if low <= measured && measured <= high {
            return Ok(());
        }
        let observed = format!(
            "measured {} ms from {since} to the next ticket request",
            ms(measured)
        );
        let lag = crate::lag::worst_between(reference, reference + measured);
        if measured > high && lag > self.tolerance / DISTURBANCE {
            return Err(Finding::inconclusive(format!(
                "{observed}, beyond the window [{}, {}] ms + {} ms, while the runner's own timer woke up to {} ms late (more than 1/{DISTURBANCE} of the tolerance): the machine was too busy to tell",
                ms(window.0),
                ms(window.1),
                ms(self.tolerance),
                ms(lag)
            )));
        }
        Err(Finding::fail(self.window_text(what, window), observed))
    }

    /// Checks that no ticket request comes within `within`; `expected` says why none may.
    pub(crate) async fn no_ticket(
        &mut self,
        within: Duration,
        since: Instant,
        expected: &str,
    ) -> CaseResult {
        let left = (since + within).saturating_duration_since(Instant::now());
        match self.server.next_ticket(left).await {
            None => Ok(()),
            Some(request) => Err(Finding::fail(
                expected,
                format!(
                    "a ticket request came {} ms later",
                    ms(request.at.saturating_duration_since(since))
                ),
            )),
        }
    }

    /// The next connection attempt, within [`REACT`]. Every attempt must present the ticket
    /// of a ticket request, which no earlier attempt presented (FERRY-TICKET-5).
    pub(crate) async fn attempt(&mut self, expected: &str) -> Result<Attempt, Finding> {
        let Some(attempt) = self.server.next_attempt(REACT).await else {
            return Err(Finding::fail(
                expected,
                format!("no WebSocket connection attempt within {} ms", ms(REACT)),
            ));
        };
        let rule = "a connection attempt presents, in ?ticket=, a fresh ticket from the ticket endpoint, never one presented before (FERRY-TICKET-5)";
        match &attempt.ticket {
            None => {
                return Err(Finding::fail(
                    rule,
                    format!("{} carried no ticket query parameter", attempt.link),
                ));
            }
            Some(ticket) if !self.server.has_issued(ticket) => {
                return Err(Finding::fail(
                    rule,
                    format!(
                        "{} presented {ticket:?}, which the ticket endpoint never issued",
                        attempt.link
                    ),
                ));
            }
            Some(ticket) if !self.presented.insert(ticket.clone()) => {
                return Err(Finding::fail(
                    rule,
                    format!(
                        "{} presented {ticket:?} again, already used by an earlier connection",
                        attempt.link
                    ),
                ));
            }
            Some(_) => {}
        }
        Ok(attempt)
    }

    /// The next connection attempt, which the script's plan accepts.
    pub(crate) async fn accepted(&mut self, expected: &str) -> Result<Conn, Finding> {
        let attempt = self.attempt(expected).await?;
        attempt.conn.ok_or_else(|| {
            Finding::error(format!(
                "the case script expected {} to be accepted, but its plan refused it",
                attempt.link
            ))
        })
    }

    /// Sends the welcome of `spec` on `conn`.
    pub(crate) async fn welcome(&mut self, conn: &mut Conn, spec: &WelcomeSpec) -> CaseResult {
        self.sessions += 1;
        conn.send(spec.message(self.sessions)).await
    }

    /// Starts the client and gives it a welcomed session: the connect command, the ticket
    /// request, the accepted connection and the welcome.
    pub(crate) async fn establish(&mut self, spec: &WelcomeSpec) -> Result<Conn, Finding> {
        self.connect().await?;
        self.ticket(
            SETUP,
            "a ticket request to POST /v1/tickets after the connect command (FERRY-TICKET-5)",
        )
        .await?;
        let mut conn = self
            .accepted("a WebSocket connection to GET /v1/ws with the ticket just issued (FERRY-TRANSPORT-1)")
            .await?;
        self.welcome(&mut conn, spec).await?;
        Ok(conn)
    }

    /// After the scripted server ended the previous session: the next ticket request within
    /// `within`, the accepted connection and the welcome.
    pub(crate) async fn reconnected(
        &mut self,
        spec: &WelcomeSpec,
        within: Duration,
        why: &str,
    ) -> Result<Conn, Finding> {
        self.ticket(
            within,
            &format!("a reconnect (a fresh ticket request) {why}"),
        )
        .await?;
        let mut conn = self
            .accepted("a WebSocket connection with the ticket just issued")
            .await?;
        self.welcome(&mut conn, spec).await?;
        Ok(conn)
    }

    /// FERRY-RECONNECT-9: the client stops and says why. The adapter's `stopped` report must
    /// come within [`REACT`] and carry `reason`, and with `close_code` set, that close code
    /// (`Some(None)`: null); `expected` says what the rule asks.
    pub(crate) async fn expect_stopped(
        &mut self,
        reason: &str,
        close_code: Option<Option<u16>>,
        expected: &str,
    ) -> CaseResult {
        let stopped = self
            .report(|r| r.kind() == "stopped", REACT, expected)
            .await?;
        let code_holds = match close_code {
            None => true,
            Some(None) => stopped.json["close_code"].is_null(),
            Some(Some(code)) => stopped.u64("close_code") == Some(code.into()),
        };
        ensure(
            stopped.str("reason") == Some(reason) && code_holds,
            expected,
            || stopped.line(),
        )
    }

    /// The first report satisfying `predicate` within `within`; `expected` says what the rule
    /// asks.
    pub(crate) async fn report(
        &mut self,
        predicate: impl FnMut(&Report) -> bool,
        within: Duration,
        expected: &str,
    ) -> Result<Report, Finding> {
        match self.adapter.expect(predicate, within).await? {
            Some(report) => Ok(report),
            None => Err(Finding::fail(
                expected,
                format!(
                    "no such report within {} ms; the adapter reported: {}",
                    ms(within),
                    self.reports_text()
                ),
            )),
        }
    }

    /// Every report so far, one per line's JSON, for messages.
    pub(crate) fn reports_text(&self) -> String {
        let lines: Vec<String> = self
            .adapter
            .history()
            .iter()
            .filter(|r| r.kind() != "log")
            .map(Report::line)
            .collect();
        if lines.is_empty() {
            "nothing".to_owned()
        } else {
            lines.join(", ")
        }
    }

    /// The delivered reports of `channel`, in order, as (handler, epoch, seq).
    pub(crate) fn deliveries(&self, channel: &str) -> Vec<(String, String, u64)> {
        self.adapter
            .history()
            .iter()
            .filter(|r| r.kind() == "delivered" && r.str("channel") == Some(channel))
            .map(|r| {
                (
                    r.str("handler").unwrap_or_default().to_owned(),
                    r.str("epoch").unwrap_or_default().to_owned(),
                    r.u64("seq").unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Waits for the subscribe of `channel` on `conn`, skipping other client messages.
    pub(crate) async fn expect_subscribe(
        &mut self,
        conn: &mut Conn,
        channel: &str,
        expected: &str,
    ) -> Result<Value, Finding> {
        self.expect_request(
            conn,
            "subscribe",
            &format!("subscribe to {channel}"),
            channel,
            expected,
        )
        .await
    }

    /// Waits for the unsubscribe of `channel` on `conn`, skipping other client messages.
    pub(crate) async fn expect_unsubscribe(
        &mut self,
        conn: &mut Conn,
        channel: &str,
        expected: &str,
    ) -> Result<Value, Finding> {
        self.expect_request(
            conn,
            "unsubscribe",
            &format!("unsubscribe from {channel}"),
            channel,
            expected,
        )
        .await
    }

    /// Waits for a members request of `channel` on `conn`, skipping other client messages.
    pub(crate) async fn expect_members(
        &mut self,
        conn: &mut Conn,
        channel: &str,
        expected: &str,
    ) -> Result<Value, Finding> {
        self.expect_request(
            conn,
            "members",
            &format!("members request of {channel}"),
            channel,
            expected,
        )
        .await
    }

    /// Waits for a request of type `kind` on `channel` (`what` in words), skipping other client
    /// messages.
    async fn expect_request(
        &mut self,
        conn: &mut Conn,
        kind: &str,
        what: &str,
        channel: &str,
        expected: &str,
    ) -> Result<Value, Finding> {
        let deadline = Instant::now() + REACT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match conn.recv(left).await? {
                None => {
                    return Err(Finding::fail(
                        expected,
                        format!("no {what} within {} ms on {}", ms(REACT), conn.link()),
                    ));
                }
                Some(ClientFrame {
                    kind: FrameKind::Message { json, .. },
                    ..
                }) => {
                    if json["type"] == kind && json["channel"] == channel {
                        return Ok(json);
                    }
                }
                Some(frame) => {
                    return Err(Finding::fail(
                        expected,
                        format!("{} carried {} instead", conn.link(), frame.kind.describe()),
                    ));
                }
            }
        }
    }

    /// A welcomed session of `spec` on which `handler` holds `channel`, subscribed at
    /// (EPOCH, 0) and reported subscribed by the adapter.
    pub(crate) async fn subscribed_session(
        &mut self,
        spec: &WelcomeSpec,
        channel: &str,
        handler: &str,
    ) -> Result<Conn, Finding> {
        let mut conn = self.establish(spec).await?;
        self.subscribe(channel, handler).await?;
        let subscribe = self
            .expect_subscribe(
                &mut conn,
                channel,
                &format!("a subscribe to {channel}, which the application asked for"),
            )
            .await?;
        conn.send(subscribed(&subscribe, EPOCH, 0, None)).await?;
        self.report(
            |r| r.kind() == "subscribed" && r.str("channel") == Some(channel),
            REACT,
            &format!("a subscribed report for {channel} once the server answered subscribed"),
        )
        .await?;
        Ok(conn)
    }
}
