//! The broker boundary of the reference server: tickets, fan-out, history and dedup state behind
//! one trait, so that a broker shared by several nodes (Redis) can replace the in-memory one
//! without touching the rest of the server.
//!
//! The rules a [`Broker`] carries:
//! - FERRY-TICKET-2: a ticket carries at least 128 bits from a secure random source and expires
//!   after its lifetime; FERRY-TICKET-4: it is redeemed at most once, atomically, so of several
//!   racing redemptions exactly one gets the grant; FERRY-TICKET-6: tickets never appear in
//!   errors or `Debug` output.
//! - FERRY-EVENT-1: every event carries a message id, the channel's epoch and the next seq;
//!   FERRY-EVENT-2: a followed channel's events reach its [`Feed`] in seq order, without gaps.
//! - FERRY-SUBSCRIBE-2: [`Broker::subscribe`] reports the channel's head; every event after it
//!   reaches a feed that followed the channel before the call.
//! - FERRY-RESUME-1, FERRY-RESUME-2: with `from`, exactly the events after it, or an explicit
//!   incomplete recovery (`history_exceeded`, `epoch_changed`, `position_ahead`) and no events;
//!   FERRY-RESUME-3: the retention of each channel's history; FERRY-RESUME-5: the history
//!   endpoint's pages; FERRY-RESUME-7: a broker that caps its history's bytes sheds events
//!   past the retention's age before it refuses a publish with [`BrokerError::HistoryFull`],
//!   and never sheds a younger one.
//! - FERRY-DEDUP-1: a repeated idempotency key on a channel within the dedup window is answered
//!   with the original message id and position, `duplicate: true`, and is neither stored nor
//!   fanned out again; FERRY-DEDUP-2: the window is at least the resume window and no key
//!   younger than it is forgotten to save memory.
//! - FERRY-RPC-3: a broker shared by several nodes keeps a record of RPC calls, so that a call
//!   runs once whichever node its retries reach ([`Broker::claim_call`]).
//! - FERRY-PRESENCE-1, -2, -3: each presence channel's members, the same on every node, and a
//!   presence event pushed to the channel's feeds when a user becomes or stops being a member,
//!   with the channel's head then; FERRY-PRESENCE-4: a session whose connection ended without
//!   leaving ([`Broker::lapse_presence`]) leaves `presence_leave_after` later, and so do the
//!   sessions of a node that stops refreshing them.
//! - FERRY-HOLD-1..4: one holder per exclusive channel with a growing fence
//!   ([`Broker::claim_hold`]), a displaced holder told through the channel's feeds
//!   ([`Feed::take_over`]), and publishes stored only under the current fence
//!   ([`Broker::publish_fenced`]).
//!
//! Permissions (FERRY-CHANNEL-*, FERRY-RESUME-6) are checked by the callers before they reach
//! the broker; the broker trusts the channel it is given.
//!
//! # Fan-out
//!
//! A broker hands live events only for the channels a node follows, one [`Feed`] per channel:
//! the node's [`Hub`](crate::hub::Hub) calls [`Broker::follow`] when its first session joins a
//! channel and [`Broker::unfollow`] when its last one leaves, which a broker shared by several
//! nodes maps to subscribing to and unsubscribing from the channel's topic. Each event is
//! encoded once, when it is published ([`EncodedEvent`]), and that frame is what feeds, replays
//! and every session share.
//!
//! # Time
//!
//! Every method that depends on time takes `now`, a [`Timestamp`] on the server's monotonic
//! clock (tickets, retention and dedup age by it). The wall-clock time an event carries
//! (`published_at_ms`, Unix milliseconds) is handed to [`Broker::publish`] separately, so a
//! broker never reads a clock and tests drive it with virtual time.

mod memory;
mod redis;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ferry_protocol::presence::Claimed;
use ferry_protocol::server::Grant;
use ferry_protocol::{
    ChannelName, EncodedEvent, Epoch, ErrorCode, Exclusive, HistoryResponse, IdempotencyKey,
    Member, MethodName, Payload, PresenceInfo, PublishResponse, Recovery, SessionId,
    StreamPosition, Ticket, Timestamp, UserId,
};

use crate::backend::Outcome;

pub use self::redis::{DEFAULT_REDIS_PREFIX, RedisBroker, RedisBrokerConfig};
pub use crate::hub::Feed;
pub use memory::{
    DEFAULT_MAX_CHANNELS, DEFAULT_MAX_HISTORY_BYTES, MemoryBroker, MemoryBrokerConfig, random_epoch,
};

/// What a shared record of RPC calls says of a call ([`Broker::claim_call`]).
#[derive(Debug, Clone, PartialEq)]
pub enum SharedCall {
    /// No node ran it within the dedup window: this node runs it.
    Run,
    /// Another node runs it now.
    Running,
    /// It ran; this is its outcome.
    Done(Outcome),
}

/// The most events one history page holds, whatever limit is asked for (the schema's bound on
/// `HistoryQuery.limit` and `HistoryResponse.events`).
pub const MAX_HISTORY_LIMIT: usize = 1000;

/// What a subscribe reads, in the order [`ServerSession::subscribed`] takes it: the channel's
/// head, and for a subscribe with `from` the recovery and the events to replay (empty unless
/// the recovery is complete).
///
/// [`ServerSession::subscribed`]: ferry_protocol::ServerSession::subscribed
pub type SubscribeReply = (StreamPosition, Option<Recovery>, Vec<EncodedEvent>);

/// A session present in a channel that keeps presence (FERRY-PRESENCE-1).
#[derive(Debug, Clone, PartialEq)]
pub struct PresentSession {
    /// The session.
    pub session: SessionId,
    /// Its user, the key of members.
    pub user: UserId,
    /// Its presence info.
    pub info: Option<PresenceInfo>,
}

/// One page of a channel's members as a broker reads it (FERRY-PRESENCE-3): the members in
/// order of user, the `next` of the page, and the channel's head when it was read.
pub type MembersRead = (Vec<Member>, Option<UserId>, StreamPosition);

/// Why a broker could not do what was asked. Never carries a ticket (FERRY-TICKET-6).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// The broker cannot be reached or refused the work for now; retrying later may help.
    #[error("the broker is unavailable: {0}")]
    Unavailable(String),
    /// The channel's epoch has used every sequence number a JSON number carries exactly
    /// (2^53 − 1); the channel needs a new epoch.
    #[error("channel {} has used every sequence number of its epoch", channel.as_str())]
    SeqExhausted {
        /// The channel.
        channel: ChannelName,
    },
    /// The node holds as many channels as it may ([`MemoryBrokerConfig::max_channels`]); a
    /// channel it holds no state for cannot be created until some are forgotten.
    #[error("this node holds its maximum of {max} channels; retry later")]
    ChannelLimit {
        /// The limit.
        max: usize,
    },
    /// The node holds as many bytes of history as it may
    /// ([`MemoryBrokerConfig::max_history_bytes`]) even after shedding every event older than
    /// the retention's age: the publish is not stored (FERRY-RESUME-7).
    #[error("this node holds its maximum of {max} bytes of history; retry later")]
    HistoryFull {
        /// The limit.
        max: usize,
    },
    /// The publish carried the fence of a hold that is no longer the channel's
    /// (FERRY-HOLD-3): nothing is stored.
    #[error("the channel is held by another session")]
    NotHolder,
    /// A broken invariant of the broker itself.
    #[error("internal broker error: {0}")]
    Internal(String),
}

impl BrokerError {
    /// The error code to answer a request with: `unavailable` (retryable) when the broker is
    /// unavailable or at its channel or history limit, `internal` otherwise.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Unavailable(_) | Self::ChannelLimit { .. } | Self::HistoryFull { .. } => {
                ErrorCode::Unavailable
            }
            Self::NotHolder => ErrorCode::Held,
            Self::SeqExhausted { .. } | Self::Internal(_) => ErrorCode::Internal,
        }
    }
}

/// The state a Ferry server shares between its connections (and, with a shared broker, between
/// its nodes): tickets, each channel's history and sequence, the dedup window and the fan-out
/// of live events.
///
/// The methods are async so that an implementation can do I/O; a server is generic over
/// `B: Broker`. Implementations must be linearizable per channel: a publish's append, its
/// dedup entry and its fan-out appear to happen at one instant, and a subscribe or history
/// read sees a channel either before or after it.
pub trait Broker: Send + Sync + 'static {
    /// Issues a single-use ticket bound to `grant`, valid from `now` for `ttl`
    /// (FERRY-TICKET-1, FERRY-TICKET-2). The ticket carries at least 128 random bits from a
    /// secure source and matches the schema's `Ticket` pattern.
    fn issue_ticket(
        &self,
        grant: Grant,
        ttl: Duration,
        now: Timestamp,
    ) -> impl Future<Output = Result<Ticket, BrokerError>> + Send;

    /// Redeems `ticket` at `now`: its grant if it was issued, is not expired (`now` is before
    /// its issue time plus its `ttl`) and was never redeemed; `None` otherwise
    /// (FERRY-TICKET-2, FERRY-TICKET-3). Atomic: of several racing redemptions of one ticket,
    /// exactly one gets the grant (FERRY-TICKET-4). Unknown, used and expired tickets are not
    /// told apart, so the answer reveals nothing to a guesser.
    fn redeem_ticket(
        &self,
        ticket: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<Grant>, BrokerError>> + Send;

    /// Publishes `payload` to `channel` with the publisher's idempotency `key`.
    ///
    /// A key already accepted on the channel within the dedup window is answered with the
    /// original message id and position and `duplicate: true`; nothing is stored or fanned out
    /// (FERRY-DEDUP-1). Otherwise the event gets a unique message id, the next seq of the
    /// channel's epoch (FERRY-EVENT-1) and `published_at_ms` (wall-clock Unix milliseconds,
    /// capped at 2^53 − 1); it is encoded once, stored in the channel's history at `now` and
    /// pushed to the feeds that follow the channel, a channel's events in seq order
    /// (FERRY-EVENT-2).
    fn publish(
        &self,
        channel: &ChannelName,
        key: IdempotencyKey,
        payload: Payload,
        now: Timestamp,
        published_at_ms: u64,
    ) -> impl Future<Output = Result<PublishResponse, BrokerError>> + Send;

    /// Reads `channel` for a subscribe at `now`: its head (FERRY-SUBSCRIBE-2) and, with `from`,
    /// the recovery and the events after `from` up to the head, exactly those and in order
    /// (FERRY-RESUME-1), or an incomplete recovery with its reason and no events
    /// (FERRY-RESUME-2). [`Follow`](Self::follow) the channel before calling this, so that no
    /// event after the head is missed. A channel nobody published to has its head at seq 0.
    fn subscribe(
        &self,
        channel: &ChannelName,
        from: Option<&StreamPosition>,
        now: Timestamp,
    ) -> impl Future<Output = Result<SubscribeReply, BrokerError>> + Send;

    /// Reads one page of `channel`'s history at `now` for the history endpoint
    /// (FERRY-RESUME-5): at most `limit` events (and never more than [`MAX_HISTORY_LIMIT`]) in
    /// seq order, after the position (`epoch`, `after_seq`).
    ///
    /// An absent `epoch` means the current epoch; an absent `after_seq` means from the oldest
    /// retained event. When every event after the position is retained the page continues
    /// exactly from it (`complete: true`, `reason: null`); otherwise (`history_exceeded`,
    /// `epoch_changed`, `position_ahead`) `complete` is false, `reason` says why and the page
    /// starts at the oldest retained event. `head` is the channel's head when the page was
    /// read.
    fn history(
        &self,
        channel: &ChannelName,
        epoch: Option<&Epoch>,
        after_seq: Option<u64>,
        limit: usize,
        now: Timestamp,
    ) -> impl Future<Output = Result<HistoryResponse, BrokerError>> + Send;

    /// Hands every event of `channel` published after this returns to `feed`, in seq order
    /// and each once, until [`unfollow`](Self::unfollow). Called when the node's first session
    /// joins the channel, before it reads the channel's head. A channel followed again gets
    /// the new feed in place of the old.
    fn follow(
        &self,
        channel: &ChannelName,
        feed: Arc<Feed>,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// Stops handing `channel`'s events to `feed`, if it is still the channel's feed; called
    /// when the node's last session leaves the channel. Never waits: a broker that must tell
    /// others does so in the background.
    fn unfollow(&self, channel: &ChannelName, feed: &Arc<Feed>, now: Timestamp);

    /// Takes one of `user`'s connection slots for this node's session `session`, counting
    /// the sessions of every node that shares the broker (FERRY-RATE-3): `false` when the user
    /// holds `max` already. The default grants every slot, for a broker of one node, whose
    /// server counts its own sessions.
    fn take_connection_slot(
        &self,
        user: &UserId,
        session: &SessionId,
        max: u64,
    ) -> impl Future<Output = Result<bool, BrokerError>> + Send {
        let _ = (user, session, max);
        async { Ok(true) }
    }

    /// Gives back a slot [`take_connection_slot`](Self::take_connection_slot) granted, when the
    /// session ends. Never waits: a broker that must tell others does so in the background.
    fn release_connection_slot(&self, user: &UserId, session: &SessionId) {
        let _ = (user, session);
    }

    /// The bytes of history this node holds over every channel and their cap
    /// (FERRY-RESUME-7), for a broker that holds history in the node's memory; `None` for one
    /// that holds it elsewhere (the default).
    fn history_bytes(&self) -> Option<(usize, usize)> {
        None
    }

    /// Claims the RPC call of `user`, `method` and `key` in a record that every node sharing
    /// the broker sees (FERRY-RPC-3), for `lease` (after which a claim whose node never
    /// finished it lapses). `Ok(None)`, the default: the broker keeps no shared record, and the
    /// node's own ledger decides alone.
    fn claim_call(
        &self,
        user: &UserId,
        method: &MethodName,
        key: &IdempotencyKey,
        lease: Duration,
    ) -> impl Future<Output = Result<Option<SharedCall>, BrokerError>> + Send {
        let _ = (user, method, key, lease);
        async { Ok(None) }
    }

    /// Records the outcome of a call [`claim_call`](Self::claim_call) gave this node to run,
    /// kept for `window`; `None` forgets the claim, so that a retry runs the call.
    fn finish_call(
        &self,
        user: &UserId,
        method: &MethodName,
        key: &IdempotencyKey,
        outcome: Option<&Outcome>,
        window: Duration,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send {
        let _ = (user, method, key, outcome, window);
        async { Ok(()) }
    }

    /// Publishes as [`publish`](Self::publish) does, for the session holding an exclusive
    /// channel with `fence`: atomically with the append, the fence must still be the
    /// channel's, or nothing is stored and the answer is [`BrokerError::NotHolder`]
    /// (FERRY-HOLD-3). A repeated key is answered as a duplicate only under the same check.
    fn publish_fenced(
        &self,
        channel: &ChannelName,
        key: IdempotencyKey,
        payload: Payload,
        fence: u64,
        now: Timestamp,
        published_at_ms: u64,
    ) -> impl Future<Output = Result<PublishResponse, BrokerError>> + Send;

    /// `present` joins `channel`'s members (FERRY-PRESENCE-1): when it makes its user a
    /// member, a join is pushed to the feeds that follow the channel, on every node, with the
    /// channel's head (FERRY-PRESENCE-2). Called after the channel's head is read for the
    /// subscribe, before its reply.
    fn join_presence(
        &self,
        channel: &ChannelName,
        present: PresentSession,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// `session` leaves `channel` now (an unsubscribe, its client's close frame); a leave is
    /// pushed if it was its user's last session. The leave is under way when this returns,
    /// whether the future is awaited or dropped: the future resolves once every node reads
    /// it (or once recording it failed, when the session's entry lapses instead), so that an
    /// unsubscribe answered after it is never read as present anywhere.
    fn leave_presence(
        &self,
        channel: &ChannelName,
        session: &SessionId,
        now: Timestamp,
    ) -> impl Future<Output = ()> + Send + 'static;

    /// The connection of `session` ended otherwise: it leaves `channel` the broker's
    /// `presence_leave_after` from `now` (FERRY-PRESENCE-4), when
    /// [`expire_presence`](Self::expire_presence) finds it due. Never waits.
    fn lapse_presence(&self, channel: &ChannelName, session: &SessionId, now: Timestamp);

    /// Makes the sessions whose lapse has come at `now` leave, pushing the leaves they cause.
    /// A server calls it about every second.
    fn expire_presence(&self, now: Timestamp) -> impl Future<Output = ()> + Send;

    /// Reads one page of `channel`'s members: at most `limit` of those whose user sorts after
    /// `after` (FERRY-PRESENCE-3), with every leave this node was told of before the call.
    fn members(
        &self,
        channel: &ChannelName,
        after: Option<&UserId>,
        limit: usize,
        now: Timestamp,
    ) -> impl Future<Output = Result<MembersRead, BrokerError>> + Send;

    /// `session` of `user` asks to hold the exclusive `channel`, carrying `asked`, the fence of
    /// its client's last hold, in a namespace that does `mode` with a second hold
    /// (FERRY-HOLD-1, FERRY-HOLD-2). A granted hold that displaces another is told to the
    /// feeds that follow the channel ([`Feed::take_over`] with the old fence), on every node.
    fn claim_hold(
        &self,
        channel: &ChannelName,
        session: &SessionId,
        user: &UserId,
        asked: Option<u64>,
        mode: Exclusive,
        now: Timestamp,
    ) -> impl Future<Output = Result<Claimed, BrokerError>> + Send;

    /// Ends the hold of `session` on `channel`, if it still holds it (FERRY-HOLD-4). Never
    /// waits.
    fn release_hold(&self, channel: &ChannelName, session: &SessionId, now: Timestamp);

    /// Releases memory held for things expired at `now` (tickets, dedup keys, history beyond
    /// the retention, channels nobody holds whose history and keys all expired). Answers never depend on it: expired state is ignored whether or not it
    /// was released. A server calls it now and then; the default does nothing, for brokers
    /// that expire state themselves.
    fn purge_expired(&self, now: Timestamp) -> impl Future<Output = ()> + Send {
        let _ = now;
        async {}
    }
}
