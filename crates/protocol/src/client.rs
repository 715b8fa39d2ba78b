//! The client session: every client-side rule of ferry.v1 as a deterministic state machine.
//!
//! [`ClientSession`] opens no socket and reads no clock. Like quinn-proto's `Connection`, it is
//! driven from outside:
//!
//! - the application calls [`connect`](ClientSession::connect),
//!   [`subscribe`](ClientSession::subscribe), [`publish`](ClientSession::publish),
//!   [`call`](ClientSession::call) and [`close`](ClientSession::close);
//! - the I/O shell feeds what happened: [`handle_ticket`](ClientSession::handle_ticket),
//!   [`handle_connected`](ClientSession::handle_connected),
//!   [`handle_frame`](ClientSession::handle_frame), [`handle_closed`](ClientSession::handle_closed)
//!   and [`handle_timeout`](ClientSession::handle_timeout), each with the current time;
//! - the shell then drains [`poll_transmit`](ClientSession::poll_transmit) (fetch a ticket, open
//!   a connection, send a frame, close), [`poll_event`](ClientSession::poll_event) (what the
//!   application sees) and [`poll_timeout`](ClientSession::poll_timeout) (when to call
//!   `handle_timeout` next).
//!
//! The rules it holds:
//! - a fresh ticket before every connection attempt, nothing sent before the welcome, and the
//!   welcome's values obeyed (FERRY-TICKET-5, FERRY-WELCOME-2, FERRY-WELCOME-3, FERRY-WELCOME-4);
//! - after every reconnect, a subscribe for every channel held, from the last delivered
//!   position (FERRY-SUBSCRIBE-5);
//! - each event handed to the application at most once, and every gap, epoch change or
//!   incomplete recovery reported (FERRY-EVENT-3, FERRY-EVENT-4, FERRY-EVENT-5, FERRY-RESUME-4);
//! - publishes correlated with their acknowledgements, re-sent with the same idempotency key
//!   after a reconnect, failed locally after the request timeout (FERRY-PUBLISH-2,
//!   FERRY-PUBLISH-3); RPC calls the same way, failed locally `rpc.timeout_ms` plus the request
//!   timeout after they were made (FERRY-RPC-2, FERRY-RPC-3);
//! - pongs for pings, and a dead server detected after `interval + timeout` of silence
//!   (FERRY-HEARTBEAT-2, FERRY-HEARTBEAT-4);
//! - no frame above the advertised maximum size ever leaves (FERRY-SIZE-1, FERRY-SIZE-2);
//! - every close code acted on as the table says, backoff as the formula says, and a reason
//!   for every stop (FERRY-RECONNECT-1 to FERRY-RECONNECT-9);
//! - presence info and holds sent again on every re-subscribe, with the fence of the last hold
//!   (FERRY-HOLD-5), and a channel's members read again after every subscribed reply and kept
//!   up to date by its presence events (FERRY-PRESENCE-6).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::Duration;

use crate::backoff::{Backoff, BackoffPolicy};
use crate::close::action_for;
use crate::codec::{Codec, DecodeError, EncodeError, Frame, Outcome};
use crate::position::{Arrival, PositionTracker, Resumption};
use crate::presence::{MemberList, fence as wire_fence};
use crate::tables::{ClientAction, close_code, defaults};
use crate::time::Timestamp;
use crate::types::{
    ChannelName, ClientMessage, ErrorCode, ErrorInfo, Event, Goodbye, HeartbeatPolicy, HoldRequest,
    IdempotencyKey, Member, MemberPage, Members, MethodName, Payload, Pong, Presence, PresenceInfo,
    Publish, Published, RecoveryGap, RequestId, Rpc, RpcResult, ServerMessage, StreamPosition,
    Subscribe, Ticket, Unsubscribe, UserId, Welcome,
};

/// Settings that apply before a welcome advertises the server's values.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// How long to wait for the welcome after asking for a connection (FERRY-WELCOME-4).
    pub welcome_timeout: Duration,
    /// How long to wait for a ticket, and for the reply to a publish (FERRY-PUBLISH-2).
    pub request_timeout: Duration,
    /// The reconnect policy until a welcome advertises one.
    pub backoff: BackoffPolicy,
    /// The largest message the client sends until a welcome advertises the limit.
    pub max_message_bytes: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            welcome_timeout: Duration::from_millis(defaults::WELCOME_TIMEOUT_MS),
            request_timeout: Duration::from_millis(defaults::REQUEST_TIMEOUT_MS),
            backoff: BackoffPolicy::default(),
            max_message_bytes: defaults::MAX_MESSAGE_BYTES as usize,
        }
    }
}

/// Identifies one connection attempt. Input about an older connection is ignored, so a late
/// close or frame from a connection the session already gave up on cannot disturb the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(pub u64);

/// Identifies an application listener (a handler) on a channel. Registering the same listener
/// twice on a channel is the same as registering it once (FERRY-EVENT-5).
pub type ListenerId = u64;

/// Where the session is in its life.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientState {
    /// Not started: call [`ClientSession::connect`].
    Idle,
    /// Waiting for a ticket ([`Transmit::FetchTicket`] was emitted).
    FetchingTicket,
    /// Waiting for the WebSocket to open ([`Transmit::Connect`] was emitted).
    Connecting,
    /// Connected, waiting for the welcome.
    AwaitingWelcome,
    /// Welcomed: subscriptions and publishes flow.
    Active,
    /// Waiting before the next attempt.
    BackingOff {
        /// When the next attempt starts.
        until: Timestamp,
        /// Which retry it is (1 for the first since the last reset).
        retry: u32,
    },
    /// Stopped for good; the reason says why (FERRY-RECONNECT-9).
    Stopped(StopReason),
}

/// Why a session stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    /// The application called [`ClientSession::close`].
    Requested,
    /// The server closed with a code whose action is `stop`.
    Closed {
        /// The close code.
        code: u16,
        /// The close reason the server gave.
        reason: String,
    },
    /// The ticket endpoint refused the credential (401): retrying cannot help
    /// (FERRY-RECONNECT-8).
    CredentialRejected,
    /// `max_attempts` retries failed in a row (FERRY-RECONNECT-4).
    AttemptsExhausted {
        /// How many retries were made.
        retries: u32,
        /// How the last attempt failed.
        last_failure: String,
    },
}

impl fmt::Display for ClientState {
    /// A short phrase for logs and status lines: "active", "backing off before retry 3", ...
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Idle => f.write_str("idle"),
            Self::FetchingTicket => f.write_str("fetching a ticket"),
            Self::Connecting => f.write_str("connecting"),
            Self::AwaitingWelcome => f.write_str("connected, awaiting the welcome"),
            Self::Active => f.write_str("active"),
            Self::BackingOff { retry, .. } => write!(f, "backing off before retry {retry}"),
            Self::Stopped(reason) => write!(f, "stopped: {reason}"),
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Requested => f.write_str("closed by the application"),
            Self::Closed { code, reason } => write!(
                f,
                "the server closed the session with {code} ({reason}), whose action is stop"
            ),
            Self::CredentialRejected => f.write_str("the ticket endpoint rejected the credential"),
            Self::AttemptsExhausted {
                retries,
                last_failure,
            } => {
                write!(
                    f,
                    "gave up after {retries} failed retries; the last: {last_failure}"
                )
            }
        }
    }
}

/// Why the shell could not get a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketError {
    /// The ticket endpoint answered 401: the credential is not valid.
    Unauthorized,
    /// Any other failure: a network error, a timeout, a 5xx, a 429, a malformed body.
    Failed(String),
}

/// Something for the I/O shell to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Transmit {
    /// Ask the ticket endpoint for a ticket, then call [`ClientSession::handle_ticket`].
    FetchTicket,
    /// Open a WebSocket with this ticket and the `ferry.v1` subprotocol; then call
    /// [`ClientSession::handle_connected`], or [`ClientSession::handle_closed`] if it fails.
    Connect {
        /// The connection's id, to pass back with everything about it.
        connection: ConnectionId,
        /// The ticket for `?ticket=`.
        ticket: Ticket,
    },
    /// Send one text frame on the current connection.
    Send {
        /// The connection to send on.
        connection: ConnectionId,
        /// The frame's text; never larger than the advertised maximum.
        text: String,
    },
    /// Close the connection with this code. The session has already moved on; a later
    /// `handle_closed` for it is ignored.
    Close {
        /// The connection to close.
        connection: ConnectionId,
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
}

/// Why the events of a channel, as the application saw them, are incomplete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncompleteCause {
    /// Events between two delivered ones never arrived (FERRY-EVENT-4).
    Gap {
        /// The seq that should have come.
        expected: u64,
        /// The seq that came.
        got: u64,
    },
    /// The channel's epoch changed without a recovery reply announcing it (FERRY-EVENT-4).
    EpochChanged,
    /// A re-subscribe could not replay the missed events (FERRY-RESUME-4).
    Recovery(RecoveryGap),
}

/// Why a publish or an RPC call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum PublishFailure {
    /// The server refused it (for a call: also `timeout`, `rejected` by the backend, ...).
    Refused(ErrorInfo),
    /// No answer within the request timeout (FERRY-PUBLISH-2), or for a call within
    /// `rpc.timeout_ms` plus the request timeout (FERRY-RPC-2).
    TimedOut,
    /// The message is larger than the maximum message size; it was never sent (FERRY-SIZE-2).
    TooLarge(EncodeError),
    /// The session stopped before an acknowledgement arrived.
    SessionStopped,
}

/// What the application sees.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// The session's state changed.
    StateChanged(ClientState),
    /// A subscription took effect at `position`; `resumption` says whether missed events will
    /// be replayed.
    Subscribed {
        /// The channel.
        channel: ChannelName,
        /// The channel's head when the subscription took effect.
        position: StreamPosition,
        /// What happened to the events missed while disconnected.
        resumption: Resumption,
        /// The fence of the hold the subscribe obtained, when it asked to hold the channel.
        hold: Option<u64>,
    },
    /// A channel's members were read after a subscribed reply, with the presence events since
    /// applied on top (FERRY-PRESENCE-6), for a subscription that tracks them.
    Members {
        /// The channel.
        channel: ChannelName,
        /// Every member, ordered by user.
        members: Vec<Member>,
    },
    /// A user joined or left a channel: for a subscription that tracks members, once its
    /// members were read (the events before are in [`ClientEvent::Members`]).
    Presence(Presence),
    /// Reading a channel's members failed; the subscription reads them again after its next
    /// subscribed reply.
    MembersFailed {
        /// The channel.
        channel: ChannelName,
        /// Why.
        error: ErrorInfo,
    },
    /// The server refused a subscribe; the channel is dropped from the session.
    SubscribeFailed {
        /// The channel.
        channel: ChannelName,
        /// Why.
        error: ErrorInfo,
    },
    /// An event to hand to the channel's listeners; each event comes at most once.
    Event(Event),
    /// The application's view of a channel has a hole: refetch its state (for example through
    /// the history endpoint).
    Incomplete {
        /// The channel.
        channel: ChannelName,
        /// Why.
        cause: IncompleteCause,
    },
    /// A publish was acknowledged.
    Published {
        /// The publish's idempotency key.
        key: IdempotencyKey,
        /// The acknowledgement.
        ack: Published,
    },
    /// A publish failed.
    PublishFailed {
        /// The publish's idempotency key.
        key: IdempotencyKey,
        /// Why.
        failure: PublishFailure,
    },
    /// An RPC call was answered.
    Answered {
        /// The call's idempotency key.
        key: IdempotencyKey,
        /// The answer.
        answer: RpcResult,
    },
    /// An RPC call failed; a retry with the same key gets the first call's answer if it ran.
    CallFailed {
        /// The call's idempotency key.
        key: IdempotencyKey,
        /// Why.
        failure: PublishFailure,
    },
    /// The server reported an error that answers no request of this session.
    ServerError(ErrorInfo),
    /// The server sent a frame that breaks the protocol; it was ignored (or, when the spec
    /// prescribes a close, the connection was closed).
    ProtocolViolation(DecodeError),
    /// The server is about to close the session on purpose.
    Goodbye(Goodbye),
}

/// A source of uniform random numbers, seeded by the caller so that tests are repeatable
/// (SplitMix64).
#[derive(Debug, Clone)]
struct Entropy(u64);

impl Entropy {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform sample in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One channel the application holds.
#[derive(Debug, Clone, Default)]
struct Subscription {
    listeners: BTreeSet<ListenerId>,
    /// The last delivered position, once a `subscribed` reply arrived.
    tracker: Option<PositionTracker>,
    options: SubscribeOptions,
    /// The fence of the last hold obtained, sent with every re-subscribe (FERRY-HOLD-5).
    fence: Option<u64>,
    /// The channel's members, when the subscription tracks them.
    members: Option<MemberList>,
}

/// How a subscription asks for a channel: with presence info, as its holder, tracking its
/// members.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubscribeOptions {
    /// The session's presence info, for a channel whose namespace keeps presence
    /// (FERRY-PRESENCE-5).
    pub info: Option<PresenceInfo>,
    /// Whether to hold the channel as its one publisher, for an exclusive namespace
    /// (FERRY-HOLD-1).
    pub hold: bool,
    /// Whether to read the channel's members after every subscribed reply and keep them up
    /// to date ([`ClientEvent::Members`], FERRY-PRESENCE-6).
    pub members: bool,
}

/// A publish or call waiting for its answer, re-sent with its key on every welcomed session.
#[derive(Debug, Clone)]
struct Pending {
    key: IdempotencyKey,
    request: Keyed,
    deadline: Timestamp,
    /// The request id on the current connection, once sent.
    sent_as: Option<RequestId>,
}

/// The requests that carry an idempotency key.
#[derive(Debug, Clone)]
enum Keyed {
    Publish {
        channel: ChannelName,
        payload: Payload,
    },
    Rpc {
        method: MethodName,
        params: Payload,
    },
}

impl Pending {
    fn message(&self, id: RequestId) -> ClientMessage {
        let idempotency_key = self.key.clone();
        match &self.request {
            Keyed::Publish { channel, payload } => ClientMessage::Publish(Publish {
                id,
                channel: channel.clone(),
                idempotency_key,
                payload: payload.clone(),
            }),
            Keyed::Rpc { method, params } => ClientMessage::Rpc(Rpc {
                id,
                method: method.clone(),
                idempotency_key,
                params: params.clone(),
            }),
        }
    }

    /// The event that fails it.
    fn failed(self, failure: PublishFailure) -> ClientEvent {
        match self.request {
            Keyed::Publish { .. } => ClientEvent::PublishFailed {
                key: self.key,
                failure,
            },
            Keyed::Rpc { .. } => ClientEvent::CallFailed {
                key: self.key,
                failure,
            },
        }
    }
}

/// What a request id on the current connection stands for.
#[derive(Debug, Clone)]
enum Request {
    Subscribe {
        channel: ChannelName,
        from: Option<StreamPosition>,
    },
    Unsubscribe,
    /// A page of a channel's members.
    Members {
        channel: ChannelName,
    },
    /// A publish or call; its [`Pending`] has the key.
    Keyed {
        key: IdempotencyKey,
    },
}

/// The current connection.
#[derive(Debug, Clone)]
struct Link {
    id: ConnectionId,
    /// When the last frame arrived (or the connection was asked for).
    last_heard: Timestamp,
    /// The welcome's heartbeat, once welcomed.
    heartbeat: Option<HeartbeatPolicy>,
    /// The goodbye's retry hint, if one arrived.
    retry_hint: Option<Duration>,
    requests: BTreeMap<String, Request>,
}

/// A ferry.v1 client session; see the [module](self) documentation.
#[derive(Debug)]
pub struct ClientSession {
    config: ClientConfig,
    state: ClientState,
    entropy: Entropy,
    codec: Codec,
    backoff: Backoff,
    link: Option<Link>,
    next_connection: u64,
    next_request: u64,
    /// Whether the previous attempt ended in `renew_ticket` (FERRY-RECONNECT-6).
    renewed: bool,
    /// The deadline of the current ticket fetch, connect or welcome wait.
    deadline: Option<Timestamp>,
    subscriptions: BTreeMap<ChannelName, Subscription>,
    publishes: Vec<Pending>,
    /// The last advertised `rpc.timeout_ms` (the protocol's default before any welcome).
    rpc_timeout: Duration,
    transmits: VecDeque<Transmit>,
    events: VecDeque<ClientEvent>,
}

impl ClientSession {
    /// A session in the [`Idle`](ClientState::Idle) state; `seed` seeds the jitter and the
    /// generated idempotency keys.
    pub fn new(config: ClientConfig, seed: u64) -> Self {
        Self {
            codec: Codec::new(config.max_message_bytes),
            backoff: Backoff::new(config.backoff),
            config,
            state: ClientState::Idle,
            entropy: Entropy(seed),
            link: None,
            next_connection: 0,
            next_request: 0,
            renewed: false,
            deadline: None,
            subscriptions: BTreeMap::new(),
            publishes: Vec::new(),
            rpc_timeout: Duration::from_millis(defaults::RPC_TIMEOUT_MS),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The session's state.
    pub fn state(&self) -> &ClientState {
        &self.state
    }

    /// The largest message the session sends now: the welcome's limit once welcomed.
    pub fn max_message_bytes(&self) -> usize {
        self.codec.max_message_bytes()
    }

    /// The listeners of a channel, each once.
    pub fn listeners(&self, channel: &ChannelName) -> impl Iterator<Item = ListenerId> + '_ {
        self.subscriptions
            .get(channel)
            .into_iter()
            .flat_map(|s| s.listeners.iter().copied())
    }

    /// The channels the application holds, with the last delivered position of each (known
    /// once a subscription took effect).
    pub fn subscriptions(
        &self,
    ) -> impl Iterator<Item = (&ChannelName, Option<&StreamPosition>)> + '_ {
        self.subscriptions
            .iter()
            .map(|(c, s)| (c, s.tracker.as_ref().map(PositionTracker::last)))
    }

    /// Starts the session: fetch a ticket, connect, and keep reconnecting until stopped.
    pub fn connect(&mut self, now: Timestamp) {
        if self.state == ClientState::Idle {
            self.fetch_ticket(now);
        }
    }

    /// Stops the session for good: closes the connection (1000) and fails every pending
    /// publish.
    pub fn close(&mut self) {
        if let Some(link) = self.link.take() {
            self.transmits.push_back(Transmit::Close {
                connection: link.id,
                code: close_code::NORMAL_CLOSURE,
                reason: "closed by the application".into(),
            });
        }
        self.stop(StopReason::Requested);
    }

    /// Adds a listener to a channel. The first listener of a channel subscribes (at once when
    /// welcomed, otherwise as soon as a welcome arrives); further listeners share it.
    pub fn subscribe(&mut self, channel: ChannelName, listener: ListenerId) {
        self.subscribe_with(channel, listener, SubscribeOptions::default());
    }

    /// [`subscribe`](Self::subscribe) with presence info, a hold or member tracking. The first
    /// listener's subscribe carries the options; a later listener's options apply from the
    /// next subscribe (after a reconnect), except member tracking, which starts at once.
    pub fn subscribe_with(
        &mut self,
        channel: ChannelName,
        listener: ListenerId,
        options: SubscribeOptions,
    ) {
        let entry = self.subscriptions.entry(channel.clone()).or_default();
        let first = entry.listeners.is_empty();
        entry.listeners.insert(listener);
        let track_now = options.members && !entry.options.members && !first;
        if first {
            entry.options = options;
        } else {
            entry.options.hold |= options.hold;
            entry.options.members |= options.members;
            if options.info.is_some() {
                entry.options.info = options.info;
            }
        }
        if entry.options.members && entry.members.is_none() {
            entry.members = Some(MemberList::new());
        }
        if first && self.state == ClientState::Active {
            self.send_subscribe(&channel);
        } else if track_now && entry.tracker.is_some() {
            self.sync_members(&channel);
        }
    }

    /// The members of a channel whose subscription tracks them, as of its last read and the
    /// presence events since; `None` until they were read once.
    pub fn members(&self, channel: &ChannelName) -> Option<impl ExactSizeIterator<Item = &Member>> {
        let list = self.subscriptions.get(channel)?.members.as_ref()?;
        list.is_synced().then(|| list.members())
    }

    /// Removes a listener from a channel; when none is left the channel is unsubscribed and its
    /// events are no longer delivered.
    pub fn unsubscribe(&mut self, channel: &ChannelName, listener: ListenerId) {
        let Some(entry) = self.subscriptions.get_mut(channel) else {
            return;
        };
        entry.listeners.remove(&listener);
        if !entry.listeners.is_empty() {
            return;
        }
        self.subscriptions.remove(channel);
        if self.state == ClientState::Active {
            let id = self.request_id();
            let message = ClientMessage::Unsubscribe(Unsubscribe {
                id: id.clone(),
                channel: channel.clone(),
            });
            if self.send(&message).is_ok()
                && let Some(link) = &mut self.link
            {
                link.requests.insert(id.to_string(), Request::Unsubscribe);
            }
        }
    }

    /// Publishes `payload` to `channel` with the idempotency key `key` (one is generated when
    /// `None`), returning the key. The publish is sent at once when welcomed, otherwise when a
    /// welcome arrives; it is re-sent with the same key after a reconnect until acknowledged,
    /// refused or timed out. A message above the maximum size is refused here and never sent
    /// (FERRY-SIZE-2).
    pub fn publish(
        &mut self,
        channel: ChannelName,
        payload: Payload,
        key: Option<IdempotencyKey>,
        now: Timestamp,
    ) -> Result<IdempotencyKey, PublishFailure> {
        let deadline = now + self.config.request_timeout;
        self.enqueue(Keyed::Publish { channel, payload }, key, deadline)
    }

    /// Calls `method` with `params` under the idempotency key `key` (one is generated when
    /// `None`), returning the key; the answer comes as [`ClientEvent::Answered`] or
    /// [`ClientEvent::CallFailed`]. Like a publish, the call is sent once welcomed, re-sent with
    /// the same key on every welcomed session until answered (so a call cut off by a
    /// reconnect runs at most once, FERRY-RPC-3), and refused here when too large
    /// (FERRY-SIZE-2). It fails locally when no answer came within the advertised
    /// `rpc.timeout_ms` plus the request timeout (FERRY-RPC-2). Every error but `rate_limited`
    /// fails it at once; after `timeout` or `unavailable` the call may still complete, and
    /// calling again with the key gets its answer.
    pub fn call(
        &mut self,
        method: MethodName,
        params: Payload,
        key: Option<IdempotencyKey>,
        now: Timestamp,
    ) -> Result<IdempotencyKey, PublishFailure> {
        let deadline = now + self.rpc_timeout + self.config.request_timeout;
        self.enqueue(Keyed::Rpc { method, params }, key, deadline)
    }

    /// Queues a publish or call under `key` (a generated one when `None`), failing at
    /// `deadline`, and sends it now when welcomed.
    fn enqueue(
        &mut self,
        request: Keyed,
        key: Option<IdempotencyKey>,
        deadline: Timestamp,
    ) -> Result<IdempotencyKey, PublishFailure> {
        if matches!(self.state, ClientState::Stopped(_)) {
            return Err(PublishFailure::SessionStopped);
        }
        let key = match key {
            Some(key) => key,
            None => self.generate_key(),
        };
        let pending = Pending {
            key,
            request,
            deadline,
            sent_as: None,
        };
        // Measure with a request id of the length every id has (see `request_id`), so that a
        // message that passes here fits whenever it is sent, and one of exactly the maximum
        // size passes.
        let probe = pending
            .message(RequestId::try_from("r18446744073709551615").expect("a valid request id"));
        self.codec
            .encode(&probe)
            .map_err(PublishFailure::TooLarge)?;
        let key = pending.key.clone();
        self.publishes.push(pending);
        if self.state == ClientState::Active {
            let index = self.publishes.len() - 1;
            self.send_publish(index);
        }
        Ok(key)
    }

    /// Feeds the outcome of a ticket fetch.
    pub fn handle_ticket(&mut self, result: Result<Ticket, TicketError>, now: Timestamp) {
        if self.state != ClientState::FetchingTicket {
            return;
        }
        match result {
            Ok(ticket) => {
                self.next_connection += 1;
                let id = ConnectionId(self.next_connection);
                self.link = Some(Link {
                    id,
                    last_heard: now,
                    heartbeat: None,
                    retry_hint: None,
                    requests: BTreeMap::new(),
                });
                self.deadline = Some(now + self.config.welcome_timeout);
                self.set_state(ClientState::Connecting);
                self.transmits.push_back(Transmit::Connect {
                    connection: id,
                    ticket,
                });
            }
            Err(TicketError::Unauthorized) => self.stop(StopReason::CredentialRejected),
            Err(TicketError::Failed(why)) => {
                self.retry(ClientAction::Backoff, format!("no ticket: {why}"), now)
            }
        }
    }

    /// Feeds that the WebSocket of `connection` opened.
    pub fn handle_connected(&mut self, connection: ConnectionId, now: Timestamp) {
        if self.state != ClientState::Connecting || !self.is_current(connection) {
            return;
        }
        if let Some(link) = &mut self.link {
            link.last_heard = now;
        }
        self.set_state(ClientState::AwaitingWelcome);
    }

    /// Feeds a data frame received on `connection`.
    pub fn handle_frame(&mut self, connection: ConnectionId, frame: Frame<'_>, now: Timestamp) {
        if !self.is_current(connection)
            || !matches!(
                self.state,
                ClientState::AwaitingWelcome | ClientState::Active
            )
        {
            return;
        }
        if let Some(link) = &mut self.link {
            link.last_heard = now;
        }
        let message = match self.codec.decode_server(frame) {
            Ok(message) => message,
            Err(error) => {
                let outcome = error.outcome();
                self.events.push_back(ClientEvent::ProtocolViolation(error));
                if let Outcome::Close(code) = outcome {
                    self.drop_link(code, "the server sent a frame the protocol refuses", now);
                }
                return;
            }
        };
        match message {
            ServerMessage::Welcome(welcome) if self.state == ClientState::AwaitingWelcome => {
                self.on_welcome(welcome, now)
            }
            _ if self.state == ClientState::AwaitingWelcome => {
                // A server sends the welcome first (FERRY-WELCOME-1); anything else means the
                // session cannot be trusted.
                self.drop_link(
                    close_code::PROTOCOL_ERROR,
                    "the first frame was not a welcome",
                    now,
                );
            }
            ServerMessage::Welcome(_) => {}
            ServerMessage::Ping(ping) => {
                let pong = ClientMessage::Pong(Pong { nonce: ping.nonce });
                let _ = self.send(&pong);
            }
            ServerMessage::Event(event) => self.on_event(event),
            ServerMessage::Subscribed(reply) => {
                let Some(Request::Subscribe { channel, from }) = self.take_request(&reply.id)
                else {
                    return;
                };
                let Some(entry) = self.subscriptions.get_mut(&channel) else {
                    return;
                };
                let (tracker, resumption) =
                    PositionTracker::after_subscribed(from.as_ref(), &reply);
                entry.tracker = Some(tracker);
                let hold = reply.hold.map(|hold| hold.fence.get());
                if hold.is_some() {
                    entry.fence = hold;
                }
                self.events.push_back(ClientEvent::Subscribed {
                    channel: channel.clone(),
                    position: reply.position,
                    resumption,
                    hold,
                });
                if let Resumption::Incomplete(gap) = resumption {
                    self.events.push_back(ClientEvent::Incomplete {
                        channel: channel.clone(),
                        cause: IncompleteCause::Recovery(gap),
                    });
                }
                self.sync_members(&channel);
            }
            ServerMessage::Unsubscribed(reply) => {
                self.take_request(&reply.id);
            }
            ServerMessage::MemberPage(page) => self.on_member_page(page),
            ServerMessage::Presence(presence) => self.on_presence(presence),
            ServerMessage::Published(ack) => {
                if let Some(key) = self.settle(&ack.id, |r| matches!(r, Keyed::Publish { .. })) {
                    self.events.push_back(ClientEvent::Published { key, ack });
                }
            }
            ServerMessage::RpcResult(answer) => {
                if let Some(key) = self.settle(&answer.id, |r| matches!(r, Keyed::Rpc { .. })) {
                    self.events.push_back(ClientEvent::Answered { key, answer });
                }
            }
            ServerMessage::Error(error) => self.on_error(error.id, error.error),
            ServerMessage::Goodbye(goodbye) => {
                if let Some(link) = &mut self.link {
                    link.retry_hint = goodbye
                        .retry_after_ms
                        .map(|ms| Duration::from_millis(ms.get()));
                }
                self.events.push_back(ClientEvent::Goodbye(goodbye));
            }
        }
    }

    /// Feeds that `connection` closed (or failed to open): `code` is the close frame's code,
    /// `None` when the connection dropped without one.
    pub fn handle_closed(
        &mut self,
        connection: ConnectionId,
        code: Option<u16>,
        reason: &str,
        now: Timestamp,
    ) {
        if !self.is_current(connection)
            || !matches!(
                self.state,
                ClientState::Connecting | ClientState::AwaitingWelcome | ClientState::Active
            )
        {
            return;
        }
        let code = code.unwrap_or(close_code::ABNORMAL_CLOSURE);
        let action = action_for(code);
        let hint = self.link.as_ref().and_then(|l| l.retry_hint);
        self.end_link(now);
        if action == ClientAction::Stop {
            self.stop(StopReason::Closed {
                code,
                reason: reason.to_owned(),
            });
            return;
        }
        let failure = format!("closed with {code} ({reason})");
        match (action, hint) {
            (ClientAction::RetryAfterHint, Some(hint)) => self.schedule(Some(hint), failure, now),
            _ => self.retry(action, failure, now),
        }
    }

    /// Feeds the passing of time: call it at [`poll_timeout`](Self::poll_timeout).
    pub fn handle_timeout(&mut self, now: Timestamp) {
        // Publishes that waited too long fail, wherever the session is (FERRY-PUBLISH-2).
        let (expired, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.publishes)
            .into_iter()
            .partition(|p| p.deadline <= now);
        self.publishes = kept;
        for publish in expired {
            if let (Some(link), Some(id)) = (&mut self.link, &publish.sent_as) {
                link.requests.remove(id.as_str());
            }
            self.events
                .push_back(publish.failed(PublishFailure::TimedOut));
        }
        match self.state.clone() {
            ClientState::BackingOff { until, .. } if until <= now => self.fetch_ticket(now),
            ClientState::FetchingTicket if self.deadline.is_some_and(|d| d <= now) => {
                self.retry(
                    ClientAction::Backoff,
                    "the ticket request timed out".into(),
                    now,
                );
            }
            ClientState::Connecting | ClientState::AwaitingWelcome
                if self.deadline.is_some_and(|d| d <= now) =>
            {
                self.drop_link(
                    close_code::GOING_AWAY,
                    "no welcome within the welcome timeout",
                    now,
                );
            }
            ClientState::Active if self.heartbeat_deadline().is_some_and(|d| d <= now) => {
                self.drop_link(
                    close_code::GOING_AWAY,
                    "no frame from the server within the heartbeat interval and timeout",
                    now,
                );
            }
            _ => {}
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next, if at all.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let state = match &self.state {
            ClientState::BackingOff { until, .. } => Some(*until),
            ClientState::FetchingTicket
            | ClientState::Connecting
            | ClientState::AwaitingWelcome => self.deadline,
            ClientState::Active => self.heartbeat_deadline(),
            ClientState::Idle | ClientState::Stopped(_) => None,
        };
        let publish = self.publishes.iter().map(|p| p.deadline).min();
        [state, publish].into_iter().flatten().min()
    }

    /// The next thing for the shell to do.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next thing for the application to see.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    fn is_current(&self, connection: ConnectionId) -> bool {
        self.link.as_ref().is_some_and(|l| l.id == connection)
    }

    fn heartbeat_deadline(&self) -> Option<Timestamp> {
        let link = self.link.as_ref()?;
        let heartbeat = link.heartbeat.as_ref()?;
        let silence =
            Duration::from_millis(heartbeat.interval_ms.get() + heartbeat.timeout_ms.get());
        Some(link.last_heard + silence)
    }

    fn set_state(&mut self, state: ClientState) {
        if self.state != state {
            self.state = state.clone();
            self.events.push_back(ClientEvent::StateChanged(state));
        }
    }

    fn fetch_ticket(&mut self, now: Timestamp) {
        self.deadline = Some(now + self.config.request_timeout);
        self.set_state(ClientState::FetchingTicket);
        self.transmits.push_back(Transmit::FetchTicket);
    }

    fn on_welcome(&mut self, welcome: Welcome, now: Timestamp) {
        // FERRY-WELCOME-3: the advertised values replace the built-in ones.
        self.codec = Codec::new(
            usize::try_from(welcome.limits.max_message_bytes.get()).unwrap_or(usize::MAX),
        );
        self.backoff
            .set_policy(BackoffPolicy::from(&welcome.reconnect));
        self.backoff.on_welcome(now);
        self.renewed = false;
        self.deadline = None;
        if let Some(rpc) = &welcome.rpc {
            self.rpc_timeout = Duration::from_millis(rpc.timeout_ms.get());
        }
        if let Some(link) = &mut self.link {
            link.heartbeat = Some(welcome.heartbeat);
        }
        self.set_state(ClientState::Active);
        // FERRY-SUBSCRIBE-5: every channel held, from its last delivered position.
        let channels: Vec<ChannelName> = self.subscriptions.keys().cloned().collect();
        for channel in &channels {
            self.send_subscribe(channel);
        }
        for index in 0..self.publishes.len() {
            self.send_publish(index);
        }
    }

    fn on_event(&mut self, event: Event) {
        let Some(entry) = self.subscriptions.get_mut(&event.channel) else {
            return;
        };
        let Some(tracker) = &mut entry.tracker else {
            return;
        };
        let arrival = tracker.observe(&event.position);
        let cause = match arrival {
            Arrival::Duplicate => return,
            Arrival::Deliver => None,
            Arrival::Gap { expected, got } => Some(IncompleteCause::Gap { expected, got }),
            Arrival::EpochChanged => Some(IncompleteCause::EpochChanged),
        };
        if let Some(cause) = cause {
            self.events.push_back(ClientEvent::Incomplete {
                channel: event.channel.clone(),
                cause,
            });
        }
        self.events.push_back(ClientEvent::Event(event));
    }

    /// Starts reading a tracked channel's members after its subscribed reply
    /// (FERRY-PRESENCE-6).
    fn sync_members(&mut self, channel: &ChannelName) {
        let Some(list) = self
            .subscriptions
            .get_mut(channel)
            .and_then(|s| s.members.as_mut())
        else {
            return;
        };
        list.restart();
        self.send_members(channel, None);
    }

    fn send_members(&mut self, channel: &ChannelName, after: Option<UserId>) {
        let id = self.request_id();
        let message = ClientMessage::Members(Members {
            after,
            channel: channel.clone(),
            id: id.clone(),
            limit: None,
        });
        if self.send(&message).is_ok()
            && let Some(link) = &mut self.link
        {
            link.requests.insert(
                id.to_string(),
                Request::Members {
                    channel: channel.clone(),
                },
            );
        }
    }

    fn on_member_page(&mut self, page: MemberPage) {
        let Some(Request::Members { channel }) = self.take_request(&page.id) else {
            return;
        };
        let Some(list) = self
            .subscriptions
            .get_mut(&channel)
            .and_then(|s| s.members.as_mut())
        else {
            return;
        };
        let next = page.next.clone();
        if list.page(page) {
            let members = list.members().cloned().collect();
            self.events
                .push_back(ClientEvent::Members { channel, members });
        } else if list.is_syncing() {
            self.send_members(&channel, next);
        }
    }

    fn on_presence(&mut self, presence: Presence) {
        let Some(entry) = self.subscriptions.get_mut(&presence.channel) else {
            return;
        };
        let live = match &mut entry.members {
            Some(list) => {
                let syncing = list.is_syncing();
                list.presence(&presence);
                !syncing
            }
            None => true,
        };
        if live {
            self.events.push_back(ClientEvent::Presence(presence));
        }
    }

    fn on_error(&mut self, id: Option<RequestId>, error: ErrorInfo) {
        let request = id.as_ref().and_then(|id| self.take_request(id));
        match request {
            Some(Request::Subscribe { channel, .. }) => {
                self.subscriptions.remove(&channel);
                self.events
                    .push_back(ClientEvent::SubscribeFailed { channel, error });
            }
            Some(Request::Keyed { key }) => {
                // A publish's retryable refusal (rate limited, unavailable) is left to the
                // request timeout and the next connection, and so is a call's `rate_limited`;
                // any other error fails the request now (a call's `timeout` or `unavailable`
                // the application retries with the key when it wants the answer).
                let index = self.publishes.iter().position(|p| p.key == key);
                let is_call =
                    index.is_some_and(|i| matches!(self.publishes[i].request, Keyed::Rpc { .. }));
                let waits = if is_call {
                    error.code == ErrorCode::RateLimited
                } else {
                    error.retryable
                };
                if waits {
                    if let Some(index) = index {
                        self.publishes[index].sent_as = None;
                    }
                    self.events.push_back(ClientEvent::ServerError(error));
                } else if let Some(index) = index {
                    let failed = self.publishes.remove(index);
                    self.events
                        .push_back(failed.failed(PublishFailure::Refused(error)));
                }
            }
            Some(Request::Members { channel }) => {
                if let Some(list) = self
                    .subscriptions
                    .get_mut(&channel)
                    .and_then(|s| s.members.as_mut())
                {
                    list.abandon();
                }
                self.events
                    .push_back(ClientEvent::MembersFailed { channel, error });
            }
            Some(Request::Unsubscribe) | None => {
                self.events.push_back(ClientEvent::ServerError(error))
            }
        }
    }

    /// The key of the publish or call `id` answers, if it is one `kind` accepts; the request
    /// is settled and forgotten.
    fn settle(&mut self, id: &RequestId, kind: impl Fn(&Keyed) -> bool) -> Option<IdempotencyKey> {
        let Some(Request::Keyed { key }) = self.link.as_ref()?.requests.get(id.as_str()) else {
            return None;
        };
        let index = self.publishes.iter().position(|p| p.key == *key)?;
        // A reply of the other kind answers nothing: the request still waits for its own.
        if !kind(&self.publishes[index].request) {
            return None;
        }
        self.take_request(id);
        Some(self.publishes.remove(index).key)
    }

    fn take_request(&mut self, id: &RequestId) -> Option<Request> {
        self.link.as_mut()?.requests.remove(id.as_str())
    }

    /// The next request id: `r` and the request's number in 20 digits, so that every id has
    /// the length of the longest (`u64::MAX` has 20 digits) and a frame measured with one id
    /// has the same size with any other (FERRY-SIZE-1: a message of exactly the maximum size
    /// goes out).
    fn request_id(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId::try_from(format!("r{:020}", self.next_request))
            .expect("r followed by digits is a valid request id")
    }

    fn generate_key(&mut self) -> IdempotencyKey {
        let (a, b) = (self.entropy.next_u64(), self.entropy.next_u64());
        IdempotencyKey::try_from(format!("k-{a:016x}{b:016x}"))
            .expect("k- followed by hex digits is a valid idempotency key")
    }

    /// Encodes and queues a frame on the current connection; the size gate is applied here,
    /// on every frame the session emits.
    fn send(&mut self, message: &ClientMessage) -> Result<(), EncodeError> {
        let text = self.codec.encode(message)?;
        if let Some(link) = &self.link {
            self.transmits.push_back(Transmit::Send {
                connection: link.id,
                text,
            });
        }
        Ok(())
    }

    fn send_subscribe(&mut self, channel: &ChannelName) {
        let Some(subscription) = self.subscriptions.get(channel) else {
            return;
        };
        let from = subscription.tracker.as_ref().map(|t| t.last().clone());
        let info = subscription.options.info.clone();
        // FERRY-HOLD-5: the fence of the last hold goes with every hold asked again.
        let hold = subscription.options.hold.then(|| HoldRequest {
            fence: subscription.fence.map(wire_fence),
        });
        let id = self.request_id();
        let message = ClientMessage::Subscribe(Subscribe {
            channel: channel.clone(),
            from: from.clone(),
            hold,
            id: id.clone(),
            info,
        });
        if self.send(&message).is_err() {
            return;
        }
        if let Some(link) = &mut self.link {
            link.requests.insert(
                id.to_string(),
                Request::Subscribe {
                    channel: channel.clone(),
                    from,
                },
            );
        }
    }

    fn send_publish(&mut self, index: usize) {
        let id = self.request_id();
        let Some(publish) = self.publishes.get(index) else {
            return;
        };
        let key = publish.key.clone();
        match self.send(&publish.message(id.clone())) {
            Ok(()) => {
                if let Some(link) = &mut self.link {
                    link.requests.insert(id.to_string(), Request::Keyed { key });
                }
                if let Some(publish) = self.publishes.get_mut(index) {
                    publish.sent_as = Some(id);
                }
            }
            Err(error) => {
                // The welcome lowered the limit below this message: it can never be sent.
                let failed = self.publishes.remove(index);
                self.events
                    .push_back(failed.failed(PublishFailure::TooLarge(error)));
            }
        }
    }

    /// Forgets the current connection: its requests are void, its subscribes and publishes
    /// will be sent again on the next one.
    fn end_link(&mut self, now: Timestamp) {
        if self.link.take().is_some() {
            self.backoff.on_session_end(now);
        }
        self.deadline = None;
        for publish in &mut self.publishes {
            publish.sent_as = None;
        }
    }

    /// Closes the current connection from this side and reconnects under the backoff.
    fn drop_link(&mut self, code: u16, reason: &str, now: Timestamp) {
        if let Some(link) = &self.link {
            self.transmits.push_back(Transmit::Close {
                connection: link.id,
                code,
                reason: reason.to_owned(),
            });
        }
        self.end_link(now);
        self.retry(ClientAction::Backoff, reason.to_owned(), now);
    }

    /// Schedules the next attempt after a failure whose action is `action` (not `stop`).
    fn retry(&mut self, action: ClientAction, failure: String, now: Timestamp) {
        let renew_at_once = action == ClientAction::RenewTicket && !self.renewed;
        self.renewed = action == ClientAction::RenewTicket;
        let delay = if renew_at_once {
            Some(Duration::ZERO)
        } else {
            None
        };
        self.schedule(delay, failure, now);
    }

    /// Counts a retry and waits `delay`, or the backoff's delay when `None`; stops when the
    /// attempts are exhausted (FERRY-RECONNECT-4).
    fn schedule(&mut self, delay: Option<Duration>, failure: String, now: Timestamp) {
        let counted = match delay {
            Some(delay) => self.backoff.count_retry().map(|_| delay),
            None => {
                let unit = self.entropy.unit();
                self.backoff.next_delay(unit)
            }
        };
        match counted {
            Some(delay) => self.set_state(ClientState::BackingOff {
                until: now + delay,
                retry: self.backoff.retries(),
            }),
            None => self.stop(StopReason::AttemptsExhausted {
                retries: self.backoff.retries(),
                last_failure: failure,
            }),
        }
    }

    fn stop(&mut self, reason: StopReason) {
        self.link = None;
        self.deadline = None;
        for publish in std::mem::take(&mut self.publishes) {
            self.events
                .push_back(publish.failed(PublishFailure::SessionStopped));
        }
        self.set_state(ClientState::Stopped(reason));
    }
}

#[cfg(test)]
mod tests;
