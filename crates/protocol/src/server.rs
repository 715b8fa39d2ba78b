//! The server session: every per-connection rule of ferry.v1 as a deterministic state machine.
//!
//! [`ServerSession`] opens no socket, reads no clock and talks to no broker. Like quinn-proto's
//! `Connection`, it is driven from outside by an I/O shell (the reference server):
//!
//! - **inputs**: [`handle_frame`](ServerSession::handle_frame) for each WebSocket data frame,
//!   [`handle_timeout`](ServerSession::handle_timeout) when the time from
//!   [`poll_timeout`](ServerSession::poll_timeout) has come, [`deliver`](ServerSession::deliver)
//!   for each live event of a channel, and the outcome of the broker work the session asked
//!   for: [`subscribed`](ServerSession::subscribed), [`published`](ServerSession::published),
//!   [`answered`](ServerSession::answered), [`request_failed`](ServerSession::request_failed); plus
//!   [`shutdown`](ServerSession::shutdown), [`restart`](ServerSession::restart),
//!   [`revoke`](ServerSession::revoke) and [`close`](ServerSession::close) from the server;
//! - **outputs**, drained after every input: [`poll_transmit`](ServerSession::poll_transmit)
//!   (a text frame to send, or the close that ends the session),
//!   [`poll_action`](ServerSession::poll_action) (broker and backend work: subscribe,
//!   unsubscribe, publish, rpc, already permission-checked) and [`poll_timeout`](ServerSession::poll_timeout).
//!
//! Time is handed in as a [`Timestamp`]; every input that carries one first brings the
//! session's timers up to it, so the outcome depends only on the inputs and their times, not
//! on the order in which a shell happens to notice a frame and a timer.
//!
//! # The rules it holds
//!
//! | rule | what the session does |
//! | --- | --- |
//! | FERRY-WELCOME-1 | the first transmit is a welcome advertising the [`ServerConfig`] and the ticket's [`Grant`] |
//! | FERRY-HEARTBEAT-1 | a ping with a fresh nonce every `heartbeat.interval_ms` |
//! | FERRY-HEARTBEAT-3 | close 4408 when a ping is unanswered `heartbeat.timeout_ms` after it was sent; a pong whose nonce answers no outstanding ping is ignored |
//! | FERRY-SIZE-1, FERRY-SIZE-3 | frames decoded under the advertised `max_message_bytes`; a larger frame closes with 1009; no larger message is sent |
//! | FERRY-SIZE-4 | a publish whose event could exceed `max_message_bytes` ([`check_event_size`]) gets `message_too_large` with the request's id and is not acted on |
//! | FERRY-TRANSPORT-3, -4, -5 | binary frames close with 1003, invalid UTF-8 with 1007; a malformed frame gets `bad_request` or `unknown_type` with id null, and the `malformed_frame_limit`-th one closes with 1008 |
//! | FERRY-RATE-1, FERRY-RATE-2 | a [`TokenBucket`] meters inbound frames; a frame that finds it empty gets `rate_limited` (with `retry_after_ms`, and the request's id when it has one) and is not acted on; the `rate_limit_strikes`-th refusal within one second closes with 4429 |
//! | FERRY-CHANNEL-1, -2, -5 | subscribe needs read, publish needs write, refused with `forbidden` and the request's id without ending the session; with namespaces declared, a channel outside all of them gets `unknown_channel` |
//! | FERRY-SUBSCRIBE-1, -4 | every subscribe gets exactly one `subscribed` or error; `already_subscribed` and `too_many_subscriptions` (in-flight subscribes count) |
//! | FERRY-SUBSCRIBE-2, FERRY-EVENT-2 | every event after the subscribed position is sent while subscribed, in order, none twice |
//! | FERRY-SUBSCRIBE-3 | every unsubscribe gets `unsubscribed` (also when not subscribed), and no event of the channel follows it |
//! | FERRY-RESUME-1, -2 | after a resuming `subscribed`, exactly the missed events, in order, before any live one; an incomplete recovery replays nothing |
//! | FERRY-PUBLISH-1 | a publish is acknowledged only when the shell reports it stored; a refusal carries the request's id |
//! | FERRY-ERROR-1 | every error carries the error table's `retryable` flag; `rate_limited` carries `retry_after_ms` |
//! | FERRY-RPC-1 | an rpc needs call on its method, a method the server declares, then params the shell checks; refused with `forbidden`, `unknown_method` or (from the shell) `payload_invalid`, and every call gets exactly one `rpc_result` or error |
//! | FERRY-RPC-2 | the welcome advertises `rpc.timeout_ms` when methods are declared; a call unanswered that long after it arrived gets `timeout`, and a later answer is dropped |
//! | FERRY-RPC-4 | an `rpc_result` above `max_message_bytes` is replaced by `message_too_large` with the call's id |
//! | FERRY-SHUTDOWN-1, FERRY-SECURITY-2 | a goodbye with a retry hint then close 1012; on revocation, goodbye `revoked` then close 4403 |
//!
//! # Decisions the spec leaves open
//!
//! - **What is metered.** Every inbound frame takes a token, malformed ones included, except a
//!   pong that answers an outstanding ping: those are bounded by the server's own pings, and
//!   exempting them keeps a busy client from being closed with 4408 because its heartbeat was
//!   rate limited. A pong with an unknown or stale nonce is metered like any frame (then
//!   ignored). Frames that close the session (oversized, binary, invalid UTF-8) close it
//!   whatever the bucket holds. A refused frame is only a strike: it does not also count as
//!   malformed. "Within one second" means less than 1000 ms between the first and the last of
//!   the strikes.
//! - **The limit-th frame is answered, then the session closes**: the
//!   `malformed_frame_limit`-th malformed frame gets its error and then the close 1008; the
//!   `rate_limit_strikes`-th refused frame gets `rate_limited` and then the close 4429.
//! - **Requests on one channel take effect in the order the client sent them.** While a
//!   subscribe is in flight (its [`Action::Subscribe`] not yet answered), later subscribes and
//!   unsubscribes of the same channel wait, and are evaluated when the reply comes, against the
//!   state it leaves. So `subscribe, unsubscribe` gives `subscribed` then `unsubscribed` (and an
//!   [`Action::Unsubscribe`]), never an `unsubscribed` followed by a `subscribed`; and a second
//!   subscribe gets `already_subscribed` once the first succeeded, or goes ahead if it failed.
//! - **Live events of an in-flight subscription are buffered** (FERRY-SUBSCRIBE-2). The shell
//!   must feed a channel's live events to [`deliver`](ServerSession::deliver) from before it
//!   reads the head it reports in [`subscribed`](ServerSession::subscribed); the session sends
//!   `subscribed`, then the replay, then the buffered events that lie after the reported
//!   position, then live ones. Past that, an event at or before the last one sent on its
//!   channel (same epoch) is dropped, so a broker that repeats itself causes no repetition.
//!   Events of another epoch always go through: the client sees the epoch change and reports
//!   it, which is never a silent gap.
//! - **The session checks the shell's replay.** A recovery is sent as complete only when the
//!   replay is exactly the events after `from` up to the reported position, in order;
//!   otherwise it is sent as incomplete (`history_exceeded`, or the reason the shell gave) and
//!   nothing is replayed (FERRY-RESUME-2). A subscribe without `from` gets no `recovery`.
//! - **A request id still in progress** (a subscribe or publish not yet answered, or a request
//!   waiting behind one) may not be reused: such a request is refused with `bad_request`
//!   carrying the id, since its reply could not be told apart.
//! - **How large a publish's event can be** is measured before anything is stored, with the
//!   longest message id, epoch, seq and `published_at_ms` the schema allows in place of the
//!   ones the broker will give it ([`max_event_bytes`]). The verdict so holds for any broker and
//!   does not change with the seq; the price is a margin: a publish whose actual event would
//!   come within a few hundred bytes of the limit (about 290 with the reference server's ids)
//!   is refused although that event would fit. The reference server applies the same check,
//!   [`check_event_size`], to `POST /v1/publish` (FERRY-SIZE-4).
//! - **An outbound message above `max_message_bytes`** is never sent (FERRY-SIZE-1). An event
//!   is replaced by an error notice (`message_too_large`, id null), and the client sees the gap
//!   at the channel's next event; an error whose message is too long is sent with a short one;
//!   anything else closes the session with 1011. With FERRY-SIZE-4 checked at every publish,
//!   an event only gets here if it was stored under a larger limit (another node, an earlier
//!   configuration) or by a publisher that skipped the check.
//! - **Once the close is queued the session is over**: every later input is ignored, pending
//!   actions are dropped, [`poll_action`](ServerSession::poll_action) and
//!   [`poll_timeout`](ServerSession::poll_timeout) return `None`, and
//!   [`poll_transmit`](ServerSession::poll_transmit) returns what was queued before the close,
//!   the close, then `None` forever. The shell drops the session's broker subscriptions.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::bounded::{Float, MAX_SAFE_INTEGER, UInt};
use crate::channel::{Access, permits, permits_call};
use crate::codec::{Codec, EncodeError, Frame, Outcome};
use crate::presence::{
    EncodedPresence, Exclusive, MAX_INFO_BYTES, MAX_MEMBER_PAGE, fence as wire_fence, info_bytes,
};
use crate::rate::TokenBucket;
use crate::shared::{EncodedEvent, FrameText};
use crate::tables::{self, close_code, defaults};
use crate::time::Timestamp;
use crate::types::{
    ChannelName, ChannelPattern, ClientMessage, Epoch, Error, ErrorCode, ErrorInfo,
    ErrorInfoMessage, Event, Goodbye, GoodbyeMessage, GoodbyeReason, HeartbeatPolicy, HoldGrant,
    IdempotencyKey, Member, MemberPage, Members, MessageId, MethodName, Nonce, Payload, Permission,
    Ping, PresenceInfo, PresencePolicy, Publish, PublishResponse, Published, RateLimit,
    ReconnectPolicy, Recovery, RecoveryGap, RequestId, ResumePolicy, Rpc, RpcPolicy, RpcResult,
    Seq, ServerMessage, SessionId, SessionLimits, StreamPosition, Subscribe, Subscribed,
    UnixMillis, Unsubscribe, Unsubscribed, UserId, Welcome, WelcomeProtocol,
};

#[cfg(test)]
mod tests;

/// The largest close reason a WebSocket close frame carries, in bytes (RFC 6455, 5.5).
const MAX_CLOSE_REASON_BYTES: usize = 123;

/// The longest error message the session writes itself, in characters (the schema allows
/// 1024; staying well below keeps every error within the smallest `max_message_bytes`).
const MAX_OWN_ERROR_CHARS: usize = 256;

/// The span within which `rate_limit_strikes` refusals close the session (FERRY-RATE-2).
const STRIKE_WINDOW: Duration = Duration::from_secs(1);

/// What a server applies to a session and advertises in its welcome (FERRY-WELCOME-1).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// The ping interval and pong timeout (FERRY-HEARTBEAT-1, FERRY-HEARTBEAT-3).
    pub heartbeat: HeartbeatPolicy,
    /// The maximum message size, subscription count and rate limit.
    pub limits: SessionLimits,
    /// The backoff clients follow when the session ends (advertised only).
    pub reconnect: ReconnectPolicy,
    /// How far back a re-subscribe can replay (advertised; the shell's history keeps it).
    pub resume: ResumePolicy,
    /// The channel namespaces the server declares, as patterns (FERRY-CHANNEL-5). Empty: the
    /// server declares none, and every channel is known.
    pub namespaces: Arc<[ChannelPattern]>,
    /// Malformed frames a session may send: the one that reaches this count closes the session
    /// with 1008 (FERRY-TRANSPORT-5).
    pub malformed_frame_limit: u64,
    /// Frames refused with `rate_limited` within one second: the one that reaches this count
    /// closes the session with 4429 (FERRY-RATE-2).
    pub rate_limit_strikes: u64,
    /// How long a session may hold no subscription and send nothing but pongs before it is
    /// closed with 4411 (FERRY-HEARTBEAT-5); `None`, the default, never closes it.
    pub idle_timeout: Option<Duration>,
    /// The RPC methods the server's application declares (FERRY-RPC-1). Empty, the default:
    /// every rpc gets `unknown_method`, and the welcome advertises no `rpc` policy.
    pub methods: Arc<[MethodName]>,
    /// How long a call may run before the session answers `timeout` (FERRY-RPC-2), advertised
    /// as `rpc.timeout_ms` (whole milliseconds, 1 ms to 10 minutes).
    pub rpc_timeout: Duration,
    /// The namespaces whose channels keep presence (FERRY-PRESENCE-1). Empty, the default: no
    /// channel does, and the welcome advertises no `presence` policy.
    pub presence: Arc<[ChannelPattern]>,
    /// The exclusive namespaces, and what a second hold does in each (FERRY-HOLD-1).
    pub exclusive: Arc<[(ChannelPattern, Exclusive)]>,
    /// How long a session whose connection ended without leaving still counts as present
    /// (FERRY-PRESENCE-4), advertised as `presence.leave_after_ms` (whole milliseconds, at
    /// most an hour); the shell's broker keeps it.
    pub presence_leave_after: Duration,
}

/// A default of the protocol as a bounded number; evaluated in constants, so a default
/// outside its schema bounds fails the build.
const fn bounded<const MIN: u64, const MAX: u64>(value: u64) -> UInt<MIN, MAX> {
    match UInt::new(value) {
        Some(value) => value,
        None => panic!("a value outside its schema bounds"),
    }
}

/// `value` moved into `[MIN, MAX]`.
fn clamped<const MIN: u64, const MAX: u64>(value: u64) -> UInt<MIN, MAX> {
    bounded(value.clamp(MIN, MAX))
}

/// Whole milliseconds of a duration, saturating.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

const DEFAULT_HEARTBEAT: HeartbeatPolicy = HeartbeatPolicy {
    interval_ms: bounded(defaults::HEARTBEAT_INTERVAL_MS),
    timeout_ms: bounded(defaults::HEARTBEAT_TIMEOUT_MS),
};

const DEFAULT_LIMITS: SessionLimits = SessionLimits {
    max_message_bytes: bounded(defaults::MAX_MESSAGE_BYTES),
    max_subscriptions: bounded(defaults::MAX_SUBSCRIPTIONS),
    rate_limit: RateLimit {
        messages_per_second: bounded(defaults::RATE_LIMIT_MESSAGES_PER_SECOND),
        burst: bounded(defaults::RATE_LIMIT_BURST),
    },
};

const DEFAULT_RESUME: ResumePolicy = ResumePolicy {
    window_ms: bounded(defaults::RESUME_WINDOW_MS),
    max_events: bounded(defaults::RESUME_MAX_EVENTS),
};

/// The integer members of the default reconnect policy: base, cap, attempts, reset.
#[allow(clippy::type_complexity)]
const DEFAULT_RECONNECT_INTEGERS: (
    UInt<1, 3_600_000>,
    UInt<1, 3_600_000>,
    UInt<0, 10_000>,
    UInt<0, 3_600_000>,
) = (
    bounded(defaults::RECONNECT_BASE_MS),
    bounded(defaults::RECONNECT_CAP_MS),
    bounded(defaults::RECONNECT_MAX_ATTEMPTS),
    bounded(defaults::RECONNECT_RESET_AFTER_MS),
);

impl Default for ServerConfig {
    /// The protocol's defaults (`tables::defaults`): pings every 20 s answered within 10 s,
    /// 131072-byte messages, 100 subscriptions, 10 frames/s in bursts of 20, backoff from 1 s
    /// doubling to 30 s with jitter 0.5 over 20 attempts reset after 5 s, resume over 2 minutes
    /// and 1000 events; no namespaces and no methods (calls time out after 10 s); 10 malformed
    /// frames and 5 rate-limit strikes.
    fn default() -> Self {
        let (base_ms, cap_ms, max_attempts, reset_after_ms) = DEFAULT_RECONNECT_INTEGERS;
        Self {
            heartbeat: DEFAULT_HEARTBEAT,
            limits: DEFAULT_LIMITS,
            reconnect: ReconnectPolicy {
                base_ms,
                cap_ms,
                factor: Float::new(defaults::RECONNECT_FACTOR)
                    .expect("the default factor lies within the schema's [1, 10]"),
                jitter: Float::new(defaults::RECONNECT_JITTER)
                    .expect("the default jitter lies within the schema's [0, 1]"),
                max_attempts,
                reset_after_ms,
            },
            resume: DEFAULT_RESUME,
            namespaces: Arc::from([]),
            malformed_frame_limit: defaults::MALFORMED_FRAME_LIMIT,
            rate_limit_strikes: defaults::RATE_LIMIT_STRIKES,
            idle_timeout: None,
            methods: Arc::from([]),
            rpc_timeout: Duration::from_millis(defaults::RPC_TIMEOUT_MS),
            presence: Arc::from([]),
            exclusive: Arc::from([]),
            presence_leave_after: Duration::from_millis(defaults::PRESENCE_LEAVE_AFTER_MS),
        }
    }
}

/// What the session's ticket was bound to when it was issued (FERRY-TICKET-1): the identity
/// and its permissions, in the order the server checks them.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    /// The identity the ticket was issued to.
    pub user: UserId,
    /// The rights bound to the ticket.
    pub permissions: Vec<Permission>,
}

/// Something for the shell to put on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// Send one text frame; never larger than the advertised `max_message_bytes`. An event's
    /// text is shared with every other session it goes to ([`EncodedEvent`]).
    Send {
        /// The frame's JSON text.
        text: FrameText,
    },
    /// Close the WebSocket with this code and reason. It is the session's last transmit.
    Close {
        /// The close code, from the close-code table.
        code: u16,
        /// The close reason, at most 123 bytes.
        reason: String,
    },
}

/// Broker work for the shell, already checked against the session's permissions and limits.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start feeding the channel's live events to [`ServerSession::deliver`], then read the
    /// channel's head (and, with `from`, the events after it) and answer with
    /// [`ServerSession::subscribed`] or [`ServerSession::request_failed`].
    Subscribe {
        /// The subscribe's request id, to pass back.
        id: RequestId,
        /// The channel.
        channel: ChannelName,
        /// The position the client resumes from, if it resumes.
        from: Option<StreamPosition>,
        /// On a channel that keeps presence: the session joins its members once subscribed,
        /// with this info (FERRY-PRESENCE-1).
        presence: Option<Join>,
        /// On an exclusive channel, when the subscribe asks to hold it: claim the hold first,
        /// and answer with [`ServerSession::subscribed_with_hold`] (FERRY-HOLD-1, FERRY-HOLD-2).
        hold: Option<HoldClaim>,
    },
    /// Stop feeding the channel's events, leave its members and end the session's hold of it
    /// (FERRY-PRESENCE-1, FERRY-HOLD-4). The client has already been answered; nothing to
    /// report back.
    Unsubscribe {
        /// The unsubscribe's request id.
        id: RequestId,
        /// The channel.
        channel: ChannelName,
    },
    /// Check the payload against the channel namespace's schema (FERRY-CHANNEL-4), look the
    /// idempotency key up in the dedup window (FERRY-DEDUP-1), store the event, and answer with
    /// [`ServerSession::published`] or [`ServerSession::request_failed`].
    Publish {
        /// The publish's request id, to pass back.
        id: RequestId,
        /// The channel to publish to.
        channel: ChannelName,
        /// The publisher's idempotency key.
        idempotency_key: IdempotencyKey,
        /// The event's data.
        payload: Payload,
        /// On an exclusive channel, the fence of the session's hold: the event is stored only
        /// while that hold is the channel's (FERRY-HOLD-3).
        fence: Option<u64>,
    },
    /// Read one page of a presence channel's members, at most `limit` of those whose user
    /// sorts after `after`, and answer with [`ServerSession::member_page`] or
    /// [`ServerSession::request_failed`] (FERRY-PRESENCE-3).
    Members {
        /// The members request's id, to pass back.
        id: RequestId,
        /// The channel, one the session holds an active subscription to.
        channel: ChannelName,
        /// The previous page's `next`.
        after: Option<crate::types::UserId>,
        /// The most members to read: the request's limit, at most [`MAX_MEMBER_PAGE`].
        limit: usize,
    },
    /// Check the params against the method's params schema (`payload_invalid`, FERRY-RPC-1),
    /// look the user's idempotency key up so the call runs at most once (FERRY-RPC-3), run it,
    /// and answer with [`ServerSession::answered`] or [`ServerSession::request_failed`]. The
    /// session answers `timeout` itself when that takes longer than `rpc_timeout`
    /// (FERRY-RPC-2); the call may still finish, and its answer is for a retry.
    Rpc {
        /// The rpc's request id, to pass back.
        id: RequestId,
        /// The method called, one the server declares and the session may call.
        method: MethodName,
        /// The caller's idempotency key.
        idempotency_key: IdempotencyKey,
        /// The call's arguments.
        params: Payload,
    },
}

/// The presence a subscribe to a presence channel joins with (FERRY-PRESENCE-1).
#[derive(Debug, Clone, PartialEq)]
pub struct Join {
    /// The session's presence info, at most [`MAX_INFO_BYTES`] as compact JSON.
    pub info: Option<PresenceInfo>,
}

/// A hold a subscribe asks for on an exclusive channel (FERRY-HOLD-1).
#[derive(Debug, Clone, PartialEq)]
pub struct HoldClaim {
    /// The fence of the client's last hold of the channel, to take it back (FERRY-HOLD-2).
    pub fence: Option<u64>,
    /// What the namespace does when another session holds the channel.
    pub mode: Exclusive,
}

/// A ping waiting for its pong.
#[derive(Debug, Clone)]
struct OutstandingPing {
    nonce: Nonce,
    /// The time at which the session closes with 4408 if no pong came.
    deadline: Timestamp,
}

/// The session's subscription to one channel.
#[derive(Debug, Clone)]
enum Subscription {
    /// The subscribe was handed to the shell and is not answered yet.
    Pending {
        id: RequestId,
        from: Option<StreamPosition>,
        /// Live events that arrived meanwhile, in order.
        buffered: Vec<EncodedEvent>,
    },
    /// Subscribed; `last` is the position of the last event sent (or the subscribed position).
    Active { last: StreamPosition },
}

/// A subscribe or unsubscribe: the requests that change a channel's subscription.
#[derive(Debug, Clone)]
enum ChannelRequest {
    Subscribe(Subscribe),
    Unsubscribe(Unsubscribe),
}

impl ChannelRequest {
    fn id(&self) -> &RequestId {
        match self {
            Self::Subscribe(subscribe) => &subscribe.id,
            Self::Unsubscribe(unsubscribe) => &unsubscribe.id,
        }
    }

    fn channel(&self) -> &ChannelName {
        match self {
            Self::Subscribe(subscribe) => &subscribe.channel,
            Self::Unsubscribe(unsubscribe) => &unsubscribe.channel,
        }
    }
}

/// What the session knows of each channel it holds or has requests for. A session holds few
/// channels (at most `max_subscriptions`), so a list searched in place costs less than a hash
/// table's hashing, and its room grows one channel at a time: an idle session with one
/// subscription keeps one entry, not a table's four.
#[derive(Debug, Clone, Default)]
struct ChannelStates(Vec<(ChannelName, ChannelState)>);

impl ChannelStates {
    fn get(&self, channel: &ChannelName) -> Option<&ChannelState> {
        self.0
            .iter()
            .find_map(|(name, state)| (name == channel).then_some(state))
    }

    fn get_mut(&mut self, channel: &ChannelName) -> Option<&mut ChannelState> {
        self.0
            .iter_mut()
            .find_map(|(name, state)| (name == channel).then_some(state))
    }

    /// The channel's state, a new one if the session knew nothing of it.
    fn or_default(&mut self, channel: &ChannelName) -> &mut ChannelState {
        let index = match self.0.iter().position(|(name, _)| name == channel) {
            Some(index) => index,
            None => {
                if self.0.len() == self.0.capacity() {
                    self.0.reserve_exact(self.0.len().max(1));
                }
                self.0.push((channel.clone(), ChannelState::default()));
                self.0.len() - 1
            }
        };
        &mut self.0[index].1
    }

    fn remove(&mut self, channel: &ChannelName) {
        if let Some(index) = self.0.iter().position(|(name, _)| name == channel) {
            self.0.swap_remove(index);
        }
        if self.0.is_empty() {
            self.0 = Vec::new();
        }
    }

    fn iter(&self) -> impl Iterator<Item = &(ChannelName, ChannelState)> {
        self.0.iter()
    }

    fn values(&self) -> impl Iterator<Item = &ChannelState> {
        self.0.iter().map(|(_, state)| state)
    }

    fn clear(&mut self) {
        self.0 = Vec::new();
    }
}

/// What the session knows of one channel.
#[derive(Debug, Clone, Default)]
struct ChannelState {
    subscription: Option<Subscription>,
    /// Requests waiting for the pending subscribe's reply, in arrival order; empty unless the
    /// subscription is pending.
    deferred: VecDeque<ChannelRequest>,
}

/// A request the client is still waiting for a reply to.
#[derive(Debug, Clone)]
enum InProgress {
    /// A subscribe handed to the shell.
    Subscribe { channel: ChannelName },
    /// A publish handed to the shell.
    Publish { channel: ChannelName },
    /// A members request handed to the shell.
    Members { channel: ChannelName },
    /// A call handed to the shell, answered `timeout` at `deadline`.
    Rpc {
        method: MethodName,
        deadline: Timestamp,
    },
    /// A subscribe or unsubscribe waiting behind a pending subscribe of its channel.
    Deferred,
}

/// One WebSocket session on the server, from the welcome to the close.
#[derive(Debug, Clone)]
pub struct ServerSession {
    /// Shared by every session of a server: it is the same for all of them.
    config: Arc<ServerConfig>,
    session_id: SessionId,
    grant: Grant,
    codec: Codec,
    /// The latest time handed in.
    now: Timestamp,
    next_ping: Timestamp,
    pings: VecDeque<OutstandingPing>,
    pings_sent: u64,
    bucket: TokenBucket,
    /// When the frames refused within the last second were refused, oldest first.
    strikes: VecDeque<Timestamp>,
    malformed: u64,
    /// When the client last sent a frame other than a pong, or a subscription of its ended
    /// (FERRY-HEARTBEAT-5 counts idleness from the later of the two).
    active_at: Timestamp,
    channels: ChannelStates,
    /// The exclusive channels the session holds, with each hold's fence (FERRY-HOLD-1).
    holds: Vec<(ChannelName, u64)>,
    in_progress: HashMap<RequestId, InProgress>,
    transmits: VecDeque<Transmit>,
    actions: VecDeque<Action>,
    closed: bool,
}

impl ServerSession {
    /// Takes request `id` out of the requests in progress. The map's room is given back once
    /// none is left, so an idle session holds none.
    fn finish(&mut self, id: &RequestId) -> Option<InProgress> {
        let finished = self.in_progress.remove(id);
        if self.in_progress.is_empty() {
            self.in_progress = HashMap::new();
        }
        finished
    }

    /// A session accepted at `now` for a redeemed ticket's `grant`. Its first transmit is the
    /// welcome (FERRY-WELCOME-1); its first ping is due one heartbeat interval later. A server
    /// hands every session the same `Arc` of its configuration.
    pub fn new(
        config: impl Into<Arc<ServerConfig>>,
        grant: Grant,
        session_id: SessionId,
        now: Timestamp,
    ) -> Self {
        let config = config.into();
        let max_message_bytes =
            usize::try_from(config.limits.max_message_bytes.get()).unwrap_or(usize::MAX);
        let welcome = Welcome {
            heartbeat: config.heartbeat.clone(),
            limits: config.limits.clone(),
            permissions: grant.permissions.clone(),
            protocol: WelcomeProtocol::FerryV1,
            reconnect: config.reconnect.clone(),
            resume: config.resume.clone(),
            rpc: (!config.methods.is_empty()).then(|| RpcPolicy {
                timeout_ms: clamped(millis(config.rpc_timeout)),
            }),
            presence: (!config.presence.is_empty()).then(|| PresencePolicy {
                leave_after_ms: clamped(millis(config.presence_leave_after)),
            }),
            session_id: session_id.clone(),
            user: grant.user.clone(),
        };
        let mut session = Self {
            codec: Codec::new(max_message_bytes),
            now,
            next_ping: now + Duration::from_millis(config.heartbeat.interval_ms.get()),
            pings: VecDeque::new(),
            pings_sent: 0,
            bucket: TokenBucket::from_limit(&config.limits.rate_limit, now),
            strikes: VecDeque::new(),
            malformed: 0,
            active_at: now,
            channels: ChannelStates::default(),
            holds: Vec::new(),
            in_progress: HashMap::new(),
            transmits: VecDeque::new(),
            actions: VecDeque::new(),
            closed: false,
            config,
            session_id,
            grant,
        };
        session.send(welcome.into());
        session
    }

    /// The session's id, as advertised in the welcome.
    pub fn session_id(&self) -> &SessionId {
        &self.session_id
    }

    /// The identity the session's ticket was issued to.
    pub fn user(&self) -> &UserId {
        &self.grant.user
    }

    /// The permissions the session's requests are checked against.
    pub fn permissions(&self) -> &[Permission] {
        &self.grant.permissions
    }

    /// The configuration the session applies and advertised.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The advertised maximum message size in bytes. The shell should configure its WebSocket
    /// reader with it, so that an oversized frame is refused before it is buffered whole
    /// (FERRY-SIZE-3), and then call [`close`](Self::close) with 1009.
    pub fn max_message_bytes(&self) -> usize {
        self.codec.max_message_bytes()
    }

    /// Whether the session has ended (its close is queued or sent).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether the session is subscribed to `channel` (a subscribe still in flight does not
    /// count).
    pub fn is_subscribed(&self, channel: &ChannelName) -> bool {
        self.channels
            .get(channel)
            .is_some_and(|state| matches!(state.subscription, Some(Subscription::Active { .. })))
    }

    /// The channels the session is subscribed to, in no particular order.
    pub fn subscriptions(&self) -> impl Iterator<Item = &ChannelName> + '_ {
        self.channels.iter().filter_map(|(channel, state)| {
            matches!(state.subscription, Some(Subscription::Active { .. })).then_some(channel)
        })
    }

    /// Handles one WebSocket data frame received at `now`.
    pub fn handle_frame(&mut self, frame: Frame<'_>, now: Timestamp) {
        if self.closed {
            return;
        }
        self.advance(now);
        if self.closed {
            return;
        }
        let message = self.codec.decode_client(frame);
        if !matches!(message, Ok(ClientMessage::Pong(_))) {
            self.active_at = self.now;
        }
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                match error.outcome() {
                    Outcome::Close(code) => self.close(code, &error.to_string()),
                    Outcome::Reply(code) => {
                        if self.meter(None) {
                            self.malformed_frame(code, &error.to_string());
                        }
                    }
                }
                return;
            }
        };
        match message {
            ClientMessage::Pong(pong) => self.pong(&pong.nonce),
            ClientMessage::Subscribe(subscribe) => {
                if self.meter(Some(&subscribe.id)) {
                    self.channel_request(ChannelRequest::Subscribe(subscribe));
                }
            }
            ClientMessage::Unsubscribe(unsubscribe) => {
                if self.meter(Some(&unsubscribe.id)) {
                    self.channel_request(ChannelRequest::Unsubscribe(unsubscribe));
                }
            }
            ClientMessage::Publish(publish) => {
                if self.meter(Some(&publish.id)) {
                    self.publish(publish);
                }
            }
            ClientMessage::Rpc(rpc) => {
                if self.meter(Some(&rpc.id)) {
                    self.rpc(rpc);
                }
            }
            ClientMessage::Members(members) => {
                if self.meter(Some(&members.id)) {
                    self.members(members);
                }
            }
        }
    }

    /// Handles the passing of time: sends the ping that is due, or closes with 4408 when a
    /// ping went unanswered for `heartbeat.timeout_ms` (FERRY-HEARTBEAT-1, FERRY-HEARTBEAT-3).
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if self.closed {
            return;
        }
        self.advance(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next: the next ping, the
    /// deadline of the oldest unanswered one, the end of the idle timeout, or the first call
    /// that times out. `None` once the session is closed.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if self.closed {
            return None;
        }
        [
            Some(self.next_ping),
            self.pings.front().map(|ping| ping.deadline),
            self.idle_deadline(),
            self.rpc_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// When the session, idle since `active_at`, closes with 4411 (FERRY-HEARTBEAT-5): `None`
    /// without an idle timeout or while it holds a subscription, pending or active.
    fn idle_deadline(&self) -> Option<Timestamp> {
        let timeout = self.config.idle_timeout?;
        let holds = self.channels.values().any(|c| c.subscription.is_some());
        (!holds).then(|| self.active_at + timeout)
    }

    /// The earliest deadline of the calls in flight (FERRY-RPC-2).
    fn rpc_deadline(&self) -> Option<Timestamp> {
        self.in_progress
            .values()
            .filter_map(|request| match request {
                InProgress::Rpc { deadline, .. } => Some(*deadline),
                _ => None,
            })
            .min()
    }

    /// The next thing to put on the wire, in order. After a [`Transmit::Close`], `None`.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next piece of broker work, in order. `None` once the session is closed.
    pub fn poll_action(&mut self) -> Option<Action> {
        if self.closed {
            return None;
        }
        let action = self.actions.pop_front();
        if self.actions.is_empty() {
            // Actions come with requests, seldom: an idle session keeps no room for them.
            self.actions = VecDeque::new();
        }
        action
    }

    /// A live event of a channel, from the broker. It is sent if the session is subscribed to
    /// the channel and the event lies after the last one sent there; buffered if a subscribe to
    /// the channel is in flight; dropped otherwise (FERRY-SUBSCRIBE-2, FERRY-SUBSCRIBE-3).
    pub fn deliver(&mut self, encoded: &EncodedEvent) {
        if self.closed {
            return;
        }
        self.forward(encoded);
    }

    /// The shell's answer to an [`Action::Subscribe`]: the subscription took effect with the
    /// channel's head at `position`.
    ///
    /// For a subscribe that carried `from`, `recovery` is what the shell's history said and
    /// `replay` the events after `from` up to `position`; the session sends the recovery as
    /// complete only if `replay` is exactly those events, and replays nothing otherwise
    /// (FERRY-RESUME-1, FERRY-RESUME-2). For a subscribe without `from`, both are ignored.
    /// Then come the live events buffered meanwhile that lie after `position`
    /// (FERRY-SUBSCRIBE-2), and the requests that waited for this reply. An `id` that names
    /// no subscribe in flight is ignored.
    pub fn subscribed(
        &mut self,
        id: &RequestId,
        position: StreamPosition,
        recovery: Option<Recovery>,
        replay: Vec<EncodedEvent>,
    ) {
        self.subscribed_with_hold(id, position, recovery, replay, None);
    }

    /// [`subscribed`](Self::subscribed) for a subscribe that asked to hold its exclusive
    /// channel: `hold` is the fence of the hold the shell's broker granted, sent in the reply
    /// (FERRY-HOLD-1); the session's publishes to the channel carry it from then on.
    pub fn subscribed_with_hold(
        &mut self,
        id: &RequestId,
        position: StreamPosition,
        recovery: Option<Recovery>,
        replay: Vec<EncodedEvent>,
        hold: Option<u64>,
    ) {
        if self.closed {
            return;
        }
        let Some(channel) = self.pending_subscribe(id) else {
            return;
        };
        self.finish(id);
        let Some(state) = self.channels.get_mut(&channel) else {
            return;
        };
        let Some(Subscription::Pending { from, buffered, .. }) = state.subscription.take() else {
            return;
        };
        state.subscription = Some(Subscription::Active {
            last: position.clone(),
        });
        let (recovery, replay) = match from {
            None => (None, Vec::new()),
            Some(from) => {
                let (recovery, replay) = resume(&channel, &from, &position, recovery, replay);
                (Some(recovery), replay)
            }
        };
        if let Some(fence) = hold {
            self.holds.push((channel.clone(), fence));
        }
        self.send(
            Subscribed {
                channel: channel.clone(),
                hold: hold.map(|fence| HoldGrant {
                    fence: wire_fence(fence),
                }),
                id: id.clone(),
                position,
                recovery,
            }
            .into(),
        );
        for event in replay {
            self.send_event(&event);
        }
        for event in &buffered {
            self.forward(event);
        }
        self.drain_deferred(&channel);
    }

    /// The shell's answer to an [`Action::Members`]: up to the action's `limit` members whose
    /// user sorts after its `after`, in order, `next` when more follow, and the channel's head
    /// when they were read. The page sent holds as many of them as fit in `max_message_bytes`,
    /// its `next` the last user it holds when some were left out (FERRY-PRESENCE-3). An `id`
    /// that names no members request in flight is ignored.
    pub fn member_page(
        &mut self,
        id: &RequestId,
        mut members: Vec<Member>,
        mut next: Option<UserId>,
        position: StreamPosition,
    ) {
        if self.closed {
            return;
        }
        let Some(InProgress::Members { channel }) = self.finish(id) else {
            return;
        };
        let max = self.codec.max_message_bytes();
        loop {
            let page = ServerMessage::MemberPage(MemberPage {
                channel: channel.clone(),
                id: id.clone(),
                members,
                next,
                position: position.clone(),
            });
            if encoded_len(&page) <= max {
                return self.send(page);
            }
            let ServerMessage::MemberPage(page) = page else {
                unreachable!("built as a member page")
            };
            members = page.members;
            // Halve until it fits: a page of none always does (the smallest max_message_bytes
            // holds every id, channel, user and position the schema allows).
            members.truncate(members.len() / 2);
            next = members.last().map(|member| member.user.clone());
        }
    }

    /// A presence event of a channel, from the broker: sent if the session holds an active
    /// subscription to the channel, dropped otherwise; a session whose subscribe is in flight
    /// reads the members after its reply (FERRY-PRESENCE-2, FERRY-PRESENCE-6).
    pub fn deliver_presence(&mut self, encoded: &EncodedPresence) {
        if self.closed || !self.is_subscribed(&encoded.presence().channel) {
            return;
        }
        if encoded.text().len() > self.codec.max_message_bytes() {
            // A presence event is small; one this large cannot reach the client whole.
            self.close(
                close_code::INTERNAL_ERROR,
                "a presence event exceeded max_message_bytes",
            );
            return;
        }
        self.transmits.push_back(Transmit::Send {
            text: encoded.text().clone(),
        });
    }

    /// Another session took over `channel`, whose hold carried `fence`: if this session holds
    /// the channel with that fence, it is closed with 4412 (FERRY-HOLD-2).
    pub fn taken_over(&mut self, channel: &ChannelName, fence: u64) {
        if self.hold(channel) == Some(fence) {
            let reason = format!("another session took over {}", channel.as_str());
            self.close(close_code::TAKEN_OVER, &reason);
        }
    }

    /// The fence of the session's hold of `channel`, if it holds it (FERRY-HOLD-1).
    pub fn hold(&self, channel: &ChannelName) -> Option<u64> {
        self.holds
            .iter()
            .find_map(|(held, fence)| (held == channel).then_some(*fence))
    }

    /// The shell's answer to an [`Action::Publish`]: the event is stored (or was, for a
    /// repeated idempotency key) and `ack` says where. The client gets `published` with the
    /// request's id and channel (FERRY-PUBLISH-1, FERRY-DEDUP-1). An `id` that names no publish
    /// in flight is ignored.
    pub fn published(&mut self, id: &RequestId, ack: PublishResponse) {
        if self.closed {
            return;
        }
        let Some(InProgress::Publish { channel }) = self.in_progress.get(id) else {
            return;
        };
        let channel = channel.clone();
        self.finish(id);
        self.send(
            Published {
                channel,
                duplicate: ack.duplicate,
                id: id.clone(),
                message_id: ack.message_id,
                position: ack.position,
            }
            .into(),
        );
    }

    /// The shell's answer to an [`Action::Rpc`], come at `now`: the method's result, already
    /// checked against its result schema (FERRY-RPC-4), or the error the call ended with
    /// (`payload_invalid`, `rejected`, `unavailable`, ...); `duplicate` when a repeated
    /// idempotency key got an earlier call's outcome (FERRY-RPC-3). The session's timers come
    /// up to `now` first, so an answer later than `rpc_timeout` is dropped for the `timeout`
    /// already due (FERRY-RPC-2). The client gets `rpc_result` (or `message_too_large` when
    /// that would exceed `max_message_bytes`) or the error. An `id` that names no call in
    /// flight is ignored.
    pub fn answered(
        &mut self,
        id: &RequestId,
        outcome: Result<Payload, ErrorInfo>,
        duplicate: bool,
        now: Timestamp,
    ) {
        if self.closed {
            return;
        }
        self.advance(now);
        if self.closed || !matches!(self.in_progress.get(id), Some(InProgress::Rpc { .. })) {
            return;
        }
        let Some(InProgress::Rpc { method, .. }) = self.finish(id) else {
            return;
        };
        let result = match outcome {
            Ok(result) => result,
            Err(error) => return self.send_error_info(Some(id.clone()), error),
        };
        self.send(
            RpcResult {
                duplicate,
                id: id.clone(),
                method,
                result,
            }
            .into(),
        );
    }

    /// The shell's answer to an [`Action::Subscribe`] or [`Action::Publish`] that failed
    /// (`payload_invalid`, `unavailable`, `rejected`, `internal`, ...; a failed
    /// [`Action::Rpc`] is answered with [`answered`](Self::answered)): the client gets the
    /// error with the request's id, its `retryable` flag set from the error table
    /// (FERRY-ERROR-1). A failed subscribe leaves the channel unsubscribed and drops the events
    /// buffered for it. An `id` that names no request in flight is ignored.
    pub fn request_failed(&mut self, id: &RequestId, error: ErrorInfo) {
        if self.closed {
            return;
        }
        match self.in_progress.get(id) {
            Some(
                InProgress::Publish { .. } | InProgress::Rpc { .. } | InProgress::Members { .. },
            ) => {
                self.finish(id);
                self.send_error_info(Some(id.clone()), error);
            }
            Some(InProgress::Subscribe { .. }) => {
                let Some(channel) = self.pending_subscribe(id) else {
                    return;
                };
                self.finish(id);
                if let Some(state) = self.channels.get_mut(&channel) {
                    state.subscription = None;
                }
                self.active_at = self.now;
                self.send_error_info(Some(id.clone()), error);
                self.drain_deferred(&channel);
            }
            Some(InProgress::Deferred) | None => {}
        }
    }

    /// The server shuts down: a goodbye with reason `shutdown` and `retry_after` as its hint
    /// (at most one hour), then close 1012 (FERRY-SHUTDOWN-1). Spreading the hints over the
    /// drain period is the server's choice (FERRY-SHUTDOWN-2).
    pub fn shutdown(&mut self, retry_after: Duration, now: Timestamp) {
        self.goodbye(
            GoodbyeReason::Shutdown,
            "the server is shutting down",
            Some(retry_after),
            close_code::SERVICE_RESTART,
            now,
        );
    }

    /// The server restarts: as [`shutdown`](Self::shutdown), with reason `restart`.
    pub fn restart(&mut self, retry_after: Duration, now: Timestamp) {
        self.goodbye(
            GoodbyeReason::Restart,
            "the server is restarting",
            Some(retry_after),
            close_code::SERVICE_RESTART,
            now,
        );
    }

    /// The identity behind the session lost its access: a goodbye with reason `revoked` and no
    /// retry hint, then close 4403.
    pub fn revoke(&mut self, now: Timestamp) {
        self.goodbye(
            GoodbyeReason::Revoked,
            "access to this session was revoked",
            None,
            close_code::ACCESS_REVOKED,
            now,
        );
    }

    /// Ends the session with `code` and `reason` (cut to 123 bytes), for what the shell
    /// observes itself: a frame its WebSocket reader refused as too large (1009), an internal
    /// failure (1011). Nothing is sent after it.
    pub fn close(&mut self, code: u16, reason: &str) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.actions.clear();
        self.pings.clear();
        self.channels.clear();
        self.holds.clear();
        self.in_progress.clear();
        self.transmits.push_back(Transmit::Close {
            code,
            reason: close_reason(reason),
        });
    }

    /// Brings the timers up to `now`: the heartbeat deadline first, then the idle timeout, then
    /// the next ping.
    fn advance(&mut self, now: Timestamp) {
        self.now = self.now.max(now);
        let now = self.now;
        if self.pings.front().is_some_and(|ping| ping.deadline <= now) {
            self.close(
                close_code::HEARTBEAT_TIMEOUT,
                "no pong within heartbeat.timeout_ms",
            );
            return;
        }
        if self.idle_deadline().is_some_and(|deadline| deadline <= now) {
            self.close(
                close_code::IDLE_TIMEOUT,
                "no subscription and no message within the idle timeout",
            );
            return;
        }
        self.expire_calls(now);
        if now >= self.next_ping {
            self.ping(now);
        }
    }

    /// Answers `timeout` to every call whose deadline has come, oldest deadline first
    /// (FERRY-RPC-2).
    fn expire_calls(&mut self, now: Timestamp) {
        let mut expired: Vec<(Timestamp, RequestId)> = self
            .in_progress
            .iter()
            .filter_map(|(id, request)| match request {
                InProgress::Rpc { deadline, .. } if *deadline <= now => {
                    Some((*deadline, id.clone()))
                }
                _ => None,
            })
            .collect();
        expired.sort();
        for (_, id) in expired {
            self.finish(&id);
            let message = format!(
                "no answer within rpc.timeout_ms ({} ms); a retry with the same idempotency key gets the call's answer",
                millis(self.config.rpc_timeout)
            );
            self.send_error(Some(id), ErrorCode::Timeout, &message, None);
        }
    }

    /// Sends a ping with a fresh nonce and schedules the next one an interval after this one
    /// was due (or after now, when the shell was late by a whole interval).
    fn ping(&mut self, now: Timestamp) {
        self.pings_sent += 1;
        let nonce: Nonce = format!("hb-{}", self.pings_sent)
            .parse()
            .expect("hb-<n> is printable ASCII of at most 64 characters");
        let timeout = Duration::from_millis(self.config.heartbeat.timeout_ms.get());
        let interval = Duration::from_millis(self.config.heartbeat.interval_ms.get());
        self.pings.push_back(OutstandingPing {
            nonce: nonce.clone(),
            deadline: now + timeout,
        });
        let next = self.next_ping + interval;
        self.next_ping = if next > now { next } else { now + interval };
        self.send(Ping { nonce }.into());
    }

    /// A pong: it answers its ping and every earlier one. A nonce that answers no outstanding
    /// ping is not an error; such a pong is metered like any frame and ignored.
    fn pong(&mut self, nonce: &Nonce) {
        match self.pings.iter().position(|ping| ping.nonce == *nonce) {
            Some(index) => {
                self.pings.drain(..=index);
            }
            None => {
                self.meter(None);
            }
        }
    }

    /// Takes a token for an inbound frame. When the bucket is empty, answers `rate_limited`
    /// (with the request's id, if any), counts a strike, closes with 4429 on the last one, and
    /// returns false: the frame is not acted on (FERRY-RATE-1, FERRY-RATE-2).
    fn meter(&mut self, id: Option<&RequestId>) -> bool {
        let Err(wait) = self.bucket.try_take(self.now) else {
            return true;
        };
        let message = format!(
            "more than {} frames per second (burst {}); wait {} ms",
            self.bucket.messages_per_second(),
            self.bucket.burst(),
            millis(wait)
        );
        self.send_error(id.cloned(), ErrorCode::RateLimited, &message, Some(wait));
        while self
            .strikes
            .front()
            .is_some_and(|&at| self.now.saturating_since(at) >= STRIKE_WINDOW)
        {
            self.strikes.pop_front();
        }
        self.strikes.push_back(self.now);
        if self.strikes.len() as u64 >= self.config.rate_limit_strikes {
            self.close(
                close_code::RATE_LIMIT_EXCEEDED,
                "kept sending after being rate limited",
            );
        }
        false
    }

    /// Answers a malformed frame with `code` and id null, and closes with 1008 on the last one
    /// allowed (FERRY-TRANSPORT-5).
    fn malformed_frame(&mut self, code: ErrorCode, detail: &str) {
        self.malformed += 1;
        self.send_error(None, code, detail, None);
        if self.malformed >= self.config.malformed_frame_limit {
            self.close(close_code::POLICY_VIOLATION, "too many malformed frames");
        }
    }

    /// A subscribe or unsubscribe: evaluated now, or after the pending subscribe of its
    /// channel is answered.
    fn channel_request(&mut self, request: ChannelRequest) {
        if self.refuse_reused_id(request.id()) {
            return;
        }
        if let Some(state) = self.channels.get_mut(request.channel())
            && matches!(state.subscription, Some(Subscription::Pending { .. }))
        {
            self.in_progress
                .insert(request.id().clone(), InProgress::Deferred);
            state.deferred.push_back(request);
            return;
        }
        self.evaluate(request);
    }

    /// Evaluates a subscribe or unsubscribe against the channel's settled state.
    fn evaluate(&mut self, request: ChannelRequest) {
        match request {
            ChannelRequest::Subscribe(subscribe) => self.evaluate_subscribe(subscribe),
            ChannelRequest::Unsubscribe(unsubscribe) => self.evaluate_unsubscribe(unsubscribe),
        }
    }

    fn evaluate_subscribe(&mut self, subscribe: Subscribe) {
        let Subscribe {
            channel,
            from,
            hold,
            id,
            info,
        } = subscribe;
        let keeps_presence = self.keeps_presence(&channel);
        let exclusive = self.exclusive(&channel);
        let refusal = if let Some(refusal) = self.read_refusal(&channel) {
            Some(refusal)
        } else if self.is_subscribed(&channel) {
            Some((
                ErrorCode::AlreadySubscribed,
                "the session is already subscribed to the channel",
            ))
        } else if self.held() >= self.config.limits.max_subscriptions.get() {
            Some((
                ErrorCode::TooManySubscriptions,
                "the session holds max_subscriptions channels already",
            ))
        } else if info.is_some() && !keeps_presence {
            Some((
                ErrorCode::BadRequest,
                "info is only for a channel whose namespace keeps presence",
            ))
        } else if info
            .as_ref()
            .is_some_and(|info| info_bytes(info) > MAX_INFO_BYTES)
        {
            Some((
                ErrorCode::BadRequest,
                "info takes more than 512 bytes as compact JSON",
            ))
        } else if hold.is_some() && exclusive.is_none() {
            Some((
                ErrorCode::BadRequest,
                "hold is only for a channel whose namespace is exclusive",
            ))
        } else {
            None
        };
        if let Some((code, message)) = refusal {
            self.send_error(Some(id), code, message, None);
            return;
        }
        let presence = keeps_presence.then_some(Join { info });
        let hold = hold.zip(exclusive).map(|(hold, mode)| HoldClaim {
            fence: hold.fence.map(|fence| fence.get()),
            mode,
        });
        self.channels.or_default(&channel).subscription = Some(Subscription::Pending {
            id: id.clone(),
            from: from.clone(),
            buffered: Vec::new(),
        });
        self.in_progress.insert(
            id.clone(),
            InProgress::Subscribe {
                channel: channel.clone(),
            },
        );
        self.actions.push_back(Action::Subscribe {
            id,
            channel,
            from,
            presence,
            hold,
        });
    }

    fn evaluate_unsubscribe(&mut self, unsubscribe: Unsubscribe) {
        let Unsubscribe { channel, id } = unsubscribe;
        let mut held = false;
        if let Some(state) = self.channels.get_mut(&channel)
            && matches!(state.subscription, Some(Subscription::Active { .. }))
        {
            state.subscription = None;
            held = true;
        }
        self.holds.retain(|(held, _)| *held != channel);
        self.forget_if_idle(&channel);
        if held {
            self.actions.push_back(Action::Unsubscribe {
                id: id.clone(),
                channel: channel.clone(),
            });
        }
        self.send(Unsubscribed { channel, id }.into());
    }

    fn publish(&mut self, publish: Publish) {
        let Publish {
            channel,
            id,
            idempotency_key,
            payload,
        } = publish;
        if self.refuse_reused_id(&id) {
            return;
        }
        if !permits(&self.grant.permissions, &channel, Access::Write) {
            self.send_error(
                Some(id),
                ErrorCode::Forbidden,
                "no permission of this session grants write on the channel",
                None,
            );
            return;
        }
        if !self.is_known(&channel) {
            self.send_error(
                Some(id),
                ErrorCode::UnknownChannel,
                "the channel belongs to no namespace this server declares",
                None,
            );
            return;
        }
        if let Err(too_large) = check_event_size(&channel, &payload, self.max_message_bytes()) {
            self.send_error(
                Some(id),
                ErrorCode::MessageTooLarge,
                &too_large.to_string(),
                None,
            );
            return;
        }
        let fence = self.hold(&channel);
        if fence.is_none() && self.exclusive(&channel).is_some() {
            self.send_error(
                Some(id),
                ErrorCode::Held,
                "the channel is exclusive and this session does not hold it",
                None,
            );
            return;
        }
        self.in_progress.insert(
            id.clone(),
            InProgress::Publish {
                channel: channel.clone(),
            },
        );
        self.actions.push_back(Action::Publish {
            id,
            channel,
            idempotency_key,
            payload,
            fence,
        });
    }

    /// A members request, checked as FERRY-PRESENCE-3 orders: read permission, the declared
    /// namespaces, the subscription, then presence.
    fn members(&mut self, members: Members) {
        let Members {
            after,
            channel,
            id,
            limit,
        } = members;
        if self.refuse_reused_id(&id) {
            return;
        }
        let refusal = if let Some(refusal) = self.read_refusal(&channel) {
            Some(refusal)
        } else if !self.is_subscribed(&channel) {
            Some((
                ErrorCode::NotSubscribed,
                "members lists only a channel the session is subscribed to",
            ))
        } else if !self.keeps_presence(&channel) {
            Some((
                ErrorCode::BadRequest,
                "the channel's namespace keeps no presence",
            ))
        } else {
            None
        };
        if let Some((code, message)) = refusal {
            self.send_error(Some(id), code, message, None);
            return;
        }
        let limit = limit.map_or(MAX_MEMBER_PAGE, |limit| {
            usize::try_from(limit.get()).map_or(MAX_MEMBER_PAGE, |l| l.min(MAX_MEMBER_PAGE))
        });
        self.in_progress.insert(
            id.clone(),
            InProgress::Members {
                channel: channel.clone(),
            },
        );
        self.actions.push_back(Action::Members {
            id,
            channel,
            after,
            limit,
        });
    }

    fn rpc(&mut self, rpc: Rpc) {
        let Rpc {
            id,
            idempotency_key,
            method,
            params,
        } = rpc;
        if self.refuse_reused_id(&id) {
            return;
        }
        let refusal = if !permits_call(&self.grant.permissions, &method) {
            Some((
                ErrorCode::Forbidden,
                "no permission of this session grants call on the method",
            ))
        } else if !self.config.methods.contains(&method) {
            Some((
                ErrorCode::UnknownMethod,
                "the method is not one this server's application declares",
            ))
        } else {
            None
        };
        if let Some((code, message)) = refusal {
            self.send_error(Some(id), code, message, None);
            return;
        }
        self.in_progress.insert(
            id.clone(),
            InProgress::Rpc {
                method: method.clone(),
                deadline: self.now + self.config.rpc_timeout,
            },
        );
        self.actions.push_back(Action::Rpc {
            id,
            method,
            idempotency_key,
            params,
        });
    }

    /// Refuses a request whose id is still in progress; returns whether it did.
    fn refuse_reused_id(&mut self, id: &RequestId) -> bool {
        if !self.in_progress.contains_key(id) {
            return false;
        }
        self.send_error(
            Some(id.clone()),
            ErrorCode::BadRequest,
            "the request id belongs to a request still in progress",
            None,
        );
        true
    }

    /// After a pending subscribe is answered: evaluates the requests that waited for it, in
    /// order, until one is a subscribe that goes to the shell in turn.
    fn drain_deferred(&mut self, channel: &ChannelName) {
        loop {
            if self.closed {
                return;
            }
            let Some(state) = self.channels.get_mut(channel) else {
                return;
            };
            if matches!(state.subscription, Some(Subscription::Pending { .. })) {
                return;
            }
            let Some(request) = state.deferred.pop_front() else {
                self.forget_if_idle(channel);
                return;
            };
            self.finish(request.id());
            self.evaluate(request);
        }
    }

    /// Sends an event of a subscribed channel if it lies after the last one sent there, or
    /// buffers it while the subscribe is in flight.
    fn forward(&mut self, encoded: &EncodedEvent) {
        let event = encoded.event();
        let Some(state) = self.channels.get_mut(&event.channel) else {
            return;
        };
        match &mut state.subscription {
            Some(Subscription::Pending { buffered, .. }) => buffered.push(encoded.clone()),
            Some(Subscription::Active { last }) if is_after(&event.position, last) => {
                last.clone_from(&event.position);
                self.send_event(encoded);
            }
            Some(Subscription::Active { .. }) | None => {}
        }
    }

    /// The channel of the subscribe in flight with this id.
    fn pending_subscribe(&self, id: &RequestId) -> Option<ChannelName> {
        let Some(InProgress::Subscribe { channel }) = self.in_progress.get(id) else {
            return None;
        };
        let state = self.channels.get(channel)?;
        match &state.subscription {
            Some(Subscription::Pending { id: pending, .. }) if pending == id => {
                Some(channel.clone())
            }
            _ => None,
        }
    }

    /// Drops what the session keeps of a channel it neither holds nor has requests for.
    fn forget_if_idle(&mut self, channel: &ChannelName) {
        if self
            .channels
            .get(channel)
            .is_some_and(|state| state.subscription.is_none() && state.deferred.is_empty())
        {
            self.channels.remove(channel);
        }
    }

    /// How many channels the session holds or has a subscribe in flight for
    /// (FERRY-SUBSCRIBE-4).
    fn held(&self) -> u64 {
        self.channels
            .values()
            .filter(|state| state.subscription.is_some())
            .count() as u64
    }

    /// Whether the channel lies in a namespace the server declares, or the server declares
    /// none (FERRY-CHANNEL-5).
    fn is_known(&self, channel: &ChannelName) -> bool {
        self.config.namespaces.is_empty()
            || self
                .config
                .namespaces
                .iter()
                .any(|namespace| namespace.matches(channel))
    }

    /// The first two checks of a request that reads a channel (FERRY-SUBSCRIBE-6,
    /// FERRY-PRESENCE-3): read permission (`forbidden`), then the declared namespaces
    /// (`unknown_channel`).
    fn read_refusal(&self, channel: &ChannelName) -> Option<(ErrorCode, &'static str)> {
        if !permits(&self.grant.permissions, channel, Access::Read) {
            Some((
                ErrorCode::Forbidden,
                "no permission of this session grants read on the channel",
            ))
        } else if !self.is_known(channel) {
            Some((
                ErrorCode::UnknownChannel,
                "the channel belongs to no namespace this server declares",
            ))
        } else {
            None
        }
    }

    /// Whether the channel's namespace keeps presence (FERRY-PRESENCE-1).
    fn keeps_presence(&self, channel: &ChannelName) -> bool {
        self.config
            .presence
            .iter()
            .any(|namespace| namespace.matches(channel))
    }

    /// What the channel's namespace does with a second hold, if it is exclusive
    /// (FERRY-HOLD-1).
    fn exclusive(&self, channel: &ChannelName) -> Option<Exclusive> {
        self.config
            .exclusive
            .iter()
            .find_map(|(namespace, mode)| namespace.matches(channel).then_some(*mode))
    }

    fn goodbye(
        &mut self,
        reason: GoodbyeReason,
        message: &str,
        retry_after: Option<Duration>,
        code: u16,
        now: Timestamp,
    ) {
        if self.closed {
            return;
        }
        self.advance(now);
        if self.closed {
            return;
        }
        let goodbye = Goodbye {
            message: message
                .parse::<GoodbyeMessage>()
                .expect("the session's goodbye messages are short"),
            reason,
            retry_after_ms: retry_after.map(|wait| clamped(millis(wait))),
        };
        self.send(goodbye.into());
        self.close(code, message);
    }

    /// Sends an error the session itself raised.
    fn send_error(
        &mut self,
        id: Option<RequestId>,
        code: ErrorCode,
        message: &str,
        retry_after: Option<Duration>,
    ) {
        let error = match retry_after {
            Some(wait) => retry_after_info(code, message, wait),
            None => error_info(code, message),
        };
        self.send_error_info(id, error);
    }

    /// Sends an error with the error table's `retryable` flag for its code (FERRY-ERROR-1).
    fn send_error_info(&mut self, id: Option<RequestId>, mut error: ErrorInfo) {
        error.retryable = retryable(error.code);
        self.send(Error { error, id }.into());
    }

    /// Queues a message, never one above `max_message_bytes` (FERRY-SIZE-1).
    fn send(&mut self, message: ServerMessage) {
        if self.closed {
            return;
        }
        match self.codec.encode(&message) {
            Ok(text) => self
                .transmits
                .push_back(Transmit::Send { text: text.into() }),
            Err(EncodeError::TooLarge { size, max }) => self.oversized(message, size, max),
        }
    }

    /// Sends an event's shared frame, under the same size gate as [`send`](Self::send).
    fn send_event(&mut self, encoded: &EncodedEvent) {
        if self.closed {
            return;
        }
        let max = self.codec.max_message_bytes();
        if encoded.len() > max {
            self.oversized(
                ServerMessage::Event(encoded.event().clone()),
                encoded.len(),
                max,
            );
        } else {
            self.transmits.push_back(Transmit::Send {
                text: encoded.text().clone(),
            });
        }
    }

    /// What goes out instead of a message that does not fit.
    fn oversized(&mut self, message: ServerMessage, size: usize, max: usize) {
        match message {
            ServerMessage::Event(event) => {
                let notice = format!(
                    "the event at seq {} of {} is {size} bytes, above max_message_bytes {max}, \
                     and was not sent",
                    event.position.seq.get(),
                    *event.channel,
                );
                self.send_error(None, ErrorCode::MessageTooLarge, &notice, None);
            }
            ServerMessage::RpcResult(answer) => {
                let message = format!(
                    "the result of {} is {size} bytes as an rpc_result, above max_message_bytes {max}",
                    *answer.method
                );
                self.send_error(Some(answer.id), ErrorCode::MessageTooLarge, &message, None);
            }
            ServerMessage::Error(mut error)
                if *error.error.message != error.error.code.to_string() =>
            {
                error.error.message = error_message(&error.error.code.to_string());
                self.send(error.into());
            }
            _ => self.close(
                close_code::INTERNAL_ERROR,
                "a message exceeded max_message_bytes",
            ),
        }
    }
}

/// A publish refused because its event could exceed `max_message_bytes` (FERRY-SIZE-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the event of this publish could take up to {bound} bytes in an event frame, above \
     max_message_bytes {max}"
)]
pub struct EventTooLarge {
    /// What [`max_event_bytes`] gave for the publish.
    pub bound: usize,
    /// The maximum message size.
    pub max: usize,
}

/// FERRY-SIZE-4: refuses a publish of `payload` to `channel` whose event could exceed
/// `max_message_bytes` in an event frame, so that every stored event can reach every
/// subscriber. A server answers the refusal with `message_too_large` (HTTP 413) and stores
/// nothing. [`ServerSession`] applies it to every publish frame; an HTTP publish endpoint calls
/// it itself.
pub fn check_event_size(
    channel: &ChannelName,
    payload: &Payload,
    max_message_bytes: usize,
) -> Result<(), EventTooLarge> {
    let bound = max_event_bytes(channel, payload);
    if bound > max_message_bytes {
        return Err(EventTooLarge {
            bound,
            max: max_message_bytes,
        });
    }
    Ok(())
}

/// The most bytes the event frame of a publish of `payload` to `channel` can take, whatever
/// message id, position and time a server gives the event: the exact encoded size of that
/// event with a 128-character message id of characters JSON escapes (`"`), a 64-character
/// epoch, and seq and `published_at_ms` at 2^53 − 1, the longest the schema allows.
pub fn max_event_bytes(channel: &ChannelName, payload: &Payload) -> usize {
    let longest_id = MessageId::try_from("\"".repeat(128)).expect("128 printable characters");
    let longest_epoch = Epoch::try_from("e".repeat(64)).expect("64 letters");
    let largest = UInt::new(MAX_SAFE_INTEGER).expect("2^53 - 1 is within the bounds");
    // The event with a null payload, then the payload's own encoding in place of the null:
    // the same bytes as encoding the whole event, without copying the payload.
    let skeleton = ServerMessage::Event(Event {
        channel: channel.clone(),
        message_id: longest_id,
        payload: Payload::from_value(&serde_json::Value::Null),
        position: StreamPosition {
            epoch: longest_epoch,
            seq: Seq(largest),
        },
        published_at_ms: UnixMillis(largest),
    });
    encoded_len(&skeleton) - "null".len() + encoded_len(payload)
}

/// The length of a value's JSON encoding, as the codec writes it, without building the text.
fn encoded_len(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).expect("generated messages always serialize");
    count.0
}

/// Whether an event at `position` comes after `last` on its channel: a later seq of the same
/// epoch, or any position of another epoch (which the client reports as an epoch change).
fn is_after(position: &StreamPosition, last: &StreamPosition) -> bool {
    position.epoch != last.epoch || position.seq.get() > last.seq.get()
}

/// The recovery a resuming subscribe gets, and the events to replay (FERRY-RESUME-1,
/// FERRY-RESUME-2): complete only when `replay` holds exactly the events after `from` up to
/// `position` in `position`'s epoch, in order; otherwise incomplete with nothing replayed.
fn resume(
    channel: &ChannelName,
    from: &StreamPosition,
    position: &StreamPosition,
    recovery: Option<Recovery>,
    replay: Vec<EncodedEvent>,
) -> (Recovery, Vec<EncodedEvent>) {
    let incomplete = |reason: RecoveryGap| {
        (
            Recovery {
                complete: false,
                reason: Some(reason),
                replayed: clamped(0),
            },
            Vec::new(),
        )
    };
    if from.epoch != position.epoch {
        return incomplete(RecoveryGap::EpochChanged);
    }
    let (after, head) = (from.seq.get(), position.seq.get());
    if after > head {
        return incomplete(RecoveryGap::PositionAhead);
    }
    if let Some(Recovery {
        complete: false,
        reason,
        ..
    }) = recovery
    {
        return incomplete(reason.unwrap_or(RecoveryGap::HistoryExceeded));
    }
    let events: Vec<EncodedEvent> = replay
        .into_iter()
        .filter(|encoded| {
            let event = encoded.event();
            event.channel == *channel
                && event.position.epoch == position.epoch
                && event.position.seq.get() > after
                && event.position.seq.get() <= head
        })
        .collect();
    let exact = events.len() as u64 == head - after
        && events
            .iter()
            .zip(after + 1..)
            .all(|(event, seq)| event.event().position.seq.get() == seq);
    if !exact {
        return incomplete(RecoveryGap::HistoryExceeded);
    }
    (
        Recovery {
            complete: true,
            reason: None,
            replayed: clamped(events.len() as u64),
        },
        events,
    )
}

/// The error table's `retryable` flag for `code` (FERRY-ERROR-1).
fn retryable(code: ErrorCode) -> bool {
    tables::ERROR_CODES
        .iter()
        .find(|row| row.code == code)
        .is_some_and(|row| row.retryable)
}

/// An error as the error table says (FERRY-ERROR-1): `code`, with its `retryable` flag from
/// the table, and `message` cut to 256 characters (a message may quote what
/// it refuses, which can be far longer than an error message may be).
pub fn error_info(code: ErrorCode, message: &str) -> ErrorInfo {
    ErrorInfo {
        code,
        message: error_message(message),
        retry_after_ms: None,
        retryable: retryable(code),
    }
}

/// An error that tells when to retry (FERRY-ERROR-1): [`error_info`] with `retry_after_ms`
/// set to `wait` in whole milliseconds (within the schema's bounds). This is how every
/// `rate_limited` error is made, over WebSocket (FERRY-RATE-1) and HTTP (FERRY-RATE-4).
pub fn retry_after_info(code: ErrorCode, message: &str, wait: Duration) -> ErrorInfo {
    ErrorInfo {
        retry_after_ms: Some(clamped(millis(wait))),
        ..error_info(code, message)
    }
}

/// An error message of at most [`MAX_OWN_ERROR_CHARS`] characters.
fn error_message(text: &str) -> ErrorInfoMessage {
    let short: String = text.chars().take(MAX_OWN_ERROR_CHARS).collect();
    short
        .parse()
        .expect("at most 256 characters, within the schema's 1024")
}

/// A close reason cut to 123 bytes on a character boundary.
fn close_reason(text: &str) -> String {
    let mut end = text.len().min(MAX_CLOSE_REASON_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}
