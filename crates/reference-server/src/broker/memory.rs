//! The in-memory [`Broker`] of a single node: [`MemoryBroker`].
//!
//! - Tickets (FERRY-TICKET-2, FERRY-TICKET-4): 32 bytes from the thread-local CSPRNG, written
//!   as 64 hex digits, in one map behind one lock, so a redemption is a single `remove`: of
//!   racing redemptions exactly one finds the ticket. A min-heap of expiry times lets issue and
//!   redeem drop expired tickets as they go, so the map holds at most the tickets issued within
//!   the longest lifetime.
//! - Channels (FERRY-EVENT-1, FERRY-EVENT-2, FERRY-RESUME-1..3): one [`ReplayBuffer`] and one
//!   [`DedupWindow`] per channel behind the channel's own lock. A publish checks the key,
//!   encodes the event once, appends it, records the key and pushes it to the channel's
//!   [`Feed`] (if this node follows the channel) while holding that lock, so a channel's events
//!   reach its feed in seq order, while publishes to different channels run in parallel.
//! - Forgetting (memory that follows use): a channel nobody follows, that holds no event and
//!   no live idempotency key, and that nobody followed for the retention's age (one that
//!   sessions subscribed to but nobody published to), is dropped by
//!   [`Broker::purge_expired`]. A channel that holds events keeps its last `max_events` however
//!   old, as FERRY-RESUME-3 asks, so it stays, until the history cap sheds them (below). A channel's state starts in the broker's
//!   *current* epoch: the node's random epoch until the first channel is forgotten, then that
//!   epoch with the number of channels forgotten so far appended (`<epoch>-<n>`). The number
//!   only grows, so a forgotten channel always comes back in an epoch it never had and a
//!   resume across it is
//!   answered `epoch_changed`, never with a restarted seq. A channel the broker holds no state
//!   for reads as empty at seq 0 of the current epoch. At most
//!   [`MemoryBrokerConfig::max_channels`] channels are held; a publish or subscribe that would
//!   create one more is refused with [`BrokerError::ChannelLimit`] (`unavailable`).
//! - History bytes (FERRY-RESUME-7): the bytes of every channel's history (each event counted
//!   as its frame plus its payload's text) stay within
//!   [`MemoryBrokerConfig::max_history_bytes`]. A publish reserves its event's bytes in one
//!   atomic counter before it appends, so concurrent publishes to different channels cannot
//!   pass the cap together; every event a history drops gives its bytes back. When an event
//!   does not fit, every channel sheds its events older than the retention's age, the last
//!   `max_events` included ([`ReplayBuffer::shed_aged`]), one channel's lock at a time; if it
//!   still does not fit, the publish is refused with [`BrokerError::HistoryFull`]
//!   (`unavailable`, retryable) and nothing is stored. An event younger than the retention's
//!   age is never shed, so a client that resumes within the resume window always gets its
//!   replay; one that resumes from before a shed event gets `history_exceeded`.
//! - Dedup (FERRY-DEDUP-1, FERRY-DEDUP-2): the per-channel window is keyed by idempotency key,
//!   which is the same as one window keyed by (channel, key). It is bounded by age only (its
//!   capacity is `usize::MAX`): no key younger than the window is forgotten to save memory,
//!   and the per-connection and per-caller rate limits bound how many keys a window holds. The
//!   window is never shorter than the resume window.
//! - Epochs are random, so a restarted in-memory server announces that its history is gone
//!   (`epoch_changed`) instead of reusing positions.
//! - Presence and holds (FERRY-PRESENCE-1..4, FERRY-HOLD-1..4): a channel's [`Roster`] and
//!   [`HoldSlot`] live in its state, behind its lock, so a join, a leave or a hold and the
//!   presence event or take-over it causes reach the channel's feed in the order they happened,
//!   ordered with its events. A publish under a fence checks it under the same lock as its
//!   append. Channels with lapsed sessions are listed apart, so the presence sweep visits only
//!   them; a channel with members or a holder is never forgotten.

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use ferry_protocol::bounded::{MAX_SAFE_INTEGER, UInt};
use ferry_protocol::presence::{Claimed, HoldSlot};
use ferry_protocol::replay::{ReplayBuffer, Retention, Sequenced};
use ferry_protocol::server::Grant;
use ferry_protocol::tables::defaults;
use ferry_protocol::{
    ChannelName, DedupWindow, EncodedEvent, EncodedPresence, Epoch, Event, Exclusive,
    HistoryResponse, IdempotencyKey, MessageId, Payload, PublishResponse, Recovery, RecoveryGap,
    Roster, Seq, SessionId, StoredEvent, StreamPosition, Ticket, Timestamp, UnixMillis, UserId,
};
use parking_lot::{Mutex, RwLock};

use super::{
    Broker, BrokerError, Feed, MAX_HISTORY_LIMIT, MembersRead, PresentSession, SubscribeReply,
};

/// Random bytes in a ticket: 256 bits, twice the 128 that FERRY-TICKET-2 asks for.
const TICKET_BYTES: usize = 32;

/// The settings of a [`MemoryBroker`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryBrokerConfig {
    /// How much history each channel keeps (FERRY-RESUME-3).
    pub retention: Retention,
    /// How long an idempotency key is remembered (FERRY-DEDUP-1); raised to
    /// `retention.max_age` if shorter (FERRY-DEDUP-2).
    pub dedup_window: Duration,
    /// Most channels held at once; a publish or subscribe that would create one more is
    /// refused with [`BrokerError::ChannelLimit`].
    pub max_channels: usize,
    /// Most bytes of history held over every channel (FERRY-RESUME-7), each event counted as
    /// its frame plus its payload's text. A publish that would pass it first sheds every event
    /// older than the retention's age, then is refused with [`BrokerError::HistoryFull`].
    pub max_history_bytes: usize,
    /// The node's epoch, in which a channel the broker holds no state for reads as empty;
    /// random per start (see [`random_epoch`]). Channels created after one was forgotten
    /// start in this epoch with the number of forgotten channels appended.
    pub epoch: Epoch,
    /// How long a session whose connection ended without leaving stays present
    /// (FERRY-PRESENCE-4).
    pub presence_leave_after: Duration,
}

/// The default for [`MemoryBrokerConfig::max_channels`].
pub const DEFAULT_MAX_CHANNELS: usize = 100_000;

/// The default for [`MemoryBrokerConfig::max_history_bytes`]: 256 MiB.
pub const DEFAULT_MAX_HISTORY_BYTES: usize = defaults::MAX_HISTORY_BYTES as usize;

impl MemoryBrokerConfig {
    /// The defaults with the given retention: the default dedup window (2 minutes, or the
    /// retention's age if longer), at most [`DEFAULT_MAX_CHANNELS`] channels and
    /// [`DEFAULT_MAX_HISTORY_BYTES`] of history, and a random epoch.
    pub fn new(retention: Retention) -> Self {
        Self {
            retention,
            dedup_window: Duration::from_millis(defaults::DEDUP_WINDOW_MS).max(retention.max_age),
            max_channels: DEFAULT_MAX_CHANNELS,
            max_history_bytes: DEFAULT_MAX_HISTORY_BYTES,
            epoch: random_epoch(),
            presence_leave_after: Duration::from_millis(defaults::PRESENCE_LEAVE_AFTER_MS),
        }
    }
}

impl Default for MemoryBrokerConfig {
    /// [`MemoryBrokerConfig::new`] with the default retention (1000 events and 2 minutes).
    fn default() -> Self {
        Self::new(Retention::default())
    }
}

/// A fresh random epoch (`e-` and 32 hex digits: 128 random bits), so that positions of an
/// earlier run of the server are answered with `epoch_changed`.
pub fn random_epoch() -> Epoch {
    let text = format!("e-{}", hex(&rand::random::<[u8; 16]>()));
    Epoch::try_from(text.as_str())
        .unwrap_or_else(|_| unreachable!("\"e-\" and hex digits match the Epoch pattern"))
}

/// The in-memory broker of a single node: tickets, per-channel history and dedup, and fan-out
/// to the feeds of followed channels. Cheap to share behind an `Arc`; every lock is held for a
/// short, synchronous section and never across an `.await`.
pub struct MemoryBroker {
    retention: Retention,
    dedup_window: Duration,
    max_channels: usize,
    max_history_bytes: usize,
    /// Bytes of history held over every channel (the sum of their [`ReplayBuffer::bytes`]),
    /// never above `max_history_bytes`: a publish reserves its event's bytes here first.
    history_bytes: AtomicUsize,
    epoch: Epoch,
    /// How many channels were forgotten; new channel states start in an epoch naming it.
    forgotten: AtomicU64,
    /// Random per broker, so message ids stay unique across restarts.
    message_prefix: String,
    next_message: AtomicU64,
    channels: RwLock<HashMap<ChannelName, Arc<Mutex<ChannelState>>>>,
    tickets: Mutex<Tickets>,
    presence_leave_after: Duration,
    /// The channels with a lapsed session, the only ones the presence sweep visits.
    lapsing: Mutex<HashSet<ChannelName>>,
}

/// An event held in a channel's history, its frame shared with every session it goes to.
#[derive(Debug, Clone)]
struct Stored(EncodedEvent);

impl Sequenced for Stored {
    fn seq(&self) -> u64 {
        self.0.event().position.seq.get()
    }

    /// The frame and the payload's JSON text, which the parsed event keeps beside it: the
    /// bulk of what holding the event costs.
    fn bytes(&self) -> usize {
        self.0.len() + self.0.event().payload.as_str().len()
    }
}

/// One channel's history, dedup window and feed.
struct ChannelState {
    history: ReplayBuffer<Stored>,
    dedup: DedupWindow<IdempotencyKey, PublishResponse>,
    /// The node's feed of the channel, while some local session holds it.
    feed: Option<Arc<Feed>>,
    /// When the channel was last unfollowed (or created); forgetting waits the retention's
    /// age after it.
    idle_since: Timestamp,
    /// Dropped from the broker's map: whoever finds this set took the state just before it
    /// was forgotten, and starts again with a fresh one.
    forgotten: bool,
    /// Members and holder, for a channel that has had either.
    presence: Option<Box<ChannelPresence>>,
}

/// A channel's members and holder.
#[derive(Debug, Default)]
struct ChannelPresence {
    roster: Roster,
    hold: HoldSlot,
}

impl ChannelState {
    fn presence(&mut self) -> &mut ChannelPresence {
        self.presence.get_or_insert_default()
    }

    /// Pushes a change of the channel's members to its feed, with the channel's head.
    fn announce(&self, channel: &ChannelName, change: ferry_protocol::presence::Change) {
        if let Some(feed) = &self.feed {
            let event = change.event(channel.clone(), self.history.head());
            feed.push_presence(&EncodedPresence::new(event));
        }
    }

    /// Whether the channel has members or a holder.
    fn has_presence(&self) -> bool {
        self.presence
            .as_ref()
            .is_some_and(|p| !p.roster.is_empty() || p.hold.holder().is_some())
    }
}

/// What a publish did to its channel's state.
enum Appended {
    /// Stored and fanned out, or answered as a duplicate.
    Stored(PublishResponse),
    /// Not stored: the event does not fit the history cap (FERRY-RESUME-7).
    NoRoom {
        key: IdempotencyKey,
        payload: Payload,
    },
}

/// The live tickets, with their expiry times in a min-heap for purging.
#[derive(Default)]
struct Tickets {
    live: HashMap<String, IssuedTicket>,
    expiries: BinaryHeap<Reverse<(Timestamp, String)>>,
}

struct IssuedTicket {
    grant: Grant,
    expires_at: Timestamp,
}

impl Tickets {
    /// Drops every ticket expired at `now` (and the heap entries of redeemed ones).
    fn purge(&mut self, now: Timestamp) {
        while let Some(Reverse((expires_at, _))) = self.expiries.peek() {
            if *expires_at > now {
                break;
            }
            if let Some(Reverse((_, ticket))) = self.expiries.pop() {
                self.live.remove(&ticket);
            }
        }
    }
}

impl MemoryBroker {
    /// A broker with no tickets and no events.
    pub fn new(config: MemoryBrokerConfig) -> Self {
        let message_prefix = format!("m{}", hex(&rand::random::<[u8; 8]>()));
        Self {
            retention: config.retention,
            dedup_window: config.dedup_window.max(config.retention.max_age),
            epoch: config.epoch,
            message_prefix,
            next_message: AtomicU64::new(1),
            max_channels: config.max_channels,
            max_history_bytes: config.max_history_bytes,
            history_bytes: AtomicUsize::new(0),
            forgotten: AtomicU64::new(0),
            channels: RwLock::new(HashMap::new()),
            tickets: Mutex::new(Tickets::default()),
            presence_leave_after: config.presence_leave_after,
            lapsing: Mutex::new(HashSet::new()),
        }
    }

    /// The node's epoch: the epoch of every channel until the first one is forgotten.
    pub fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    /// The epoch a channel state created now starts in, and in which a channel without state
    /// reads as empty.
    fn current_epoch(&self) -> Epoch {
        match self.forgotten.load(Ordering::Acquire) {
            0 => self.epoch.clone(),
            forgotten => {
                // Within the schema's 64 characters: the node's epoch is cut, never the number.
                let suffix = format!("-{forgotten}");
                let base: String = self.epoch.chars().take(64 - suffix.len()).collect();
                Epoch::try_from(format!("{base}{suffix}").as_str()).unwrap_or_else(|_| {
                    unreachable!("epoch characters and a number match the Epoch pattern")
                })
            }
        }
    }

    /// How many channels the broker holds state for.
    pub fn channels_held(&self) -> usize {
        self.channels.read().len()
    }

    /// How long idempotency keys are remembered (never shorter than the resume window).
    pub fn dedup_window(&self) -> Duration {
        self.dedup_window
    }

    /// How much history each channel keeps.
    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// Bytes of history held over every channel, as [`MemoryBrokerConfig::max_history_bytes`]
    /// counts them.
    pub fn history_bytes(&self) -> usize {
        self.history_bytes.load(Ordering::Acquire)
    }

    /// The cap on [`history_bytes`](Self::history_bytes).
    pub fn max_history_bytes(&self) -> usize {
        self.max_history_bytes
    }

    /// Takes `bytes` of the history cap for an event about to be appended; false when they
    /// would pass it.
    fn reserve_history(&self, bytes: usize) -> bool {
        self.history_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes)
                    .filter(|&total| total <= self.max_history_bytes)
            })
            .is_ok()
    }

    /// Gives back the bytes of events a channel's history dropped.
    fn release_history(&self, bytes: usize) {
        if bytes > 0 {
            self.history_bytes.fetch_sub(bytes, Ordering::AcqRel);
        }
    }

    /// Sheds every event older than the retention's age from every channel
    /// (FERRY-RESUME-7), one channel's lock at a time.
    fn shed_aged(&self, now: Timestamp) {
        let channels: Vec<_> = self.channels.read().values().cloned().collect();
        for state in channels {
            let freed = state.lock().history.shed_aged(now);
            self.release_history(freed);
        }
    }

    /// How many tickets are held, expired ones not yet purged included.
    pub fn tickets_held(&self) -> usize {
        self.tickets.lock().live.len()
    }

    fn issue_ticket_now(
        &self,
        grant: Grant,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Ticket, BrokerError> {
        let mut tickets = self.tickets.lock();
        tickets.purge(now);
        let text = loop {
            let text = hex(&rand::random::<[u8; TICKET_BYTES]>());
            if !tickets.live.contains_key(&text) {
                break text;
            }
        };
        let ticket = Ticket::try_from(text.as_str())
            .map_err(|_| BrokerError::Internal("a generated ticket broke the pattern".into()))?;
        let expires_at = now + ttl;
        tickets.expiries.push(Reverse((expires_at, text.clone())));
        tickets
            .live
            .insert(text, IssuedTicket { grant, expires_at });
        Ok(ticket)
    }

    fn redeem_ticket_now(&self, ticket: &str, now: Timestamp) -> Option<Grant> {
        let mut tickets = self.tickets.lock();
        tickets.purge(now);
        // Removing it whatever its state makes the redemption single-use (FERRY-TICKET-4).
        let issued = tickets.live.remove(ticket)?;
        (now < issued.expires_at).then_some(issued.grant)
    }

    /// Runs `change` on the channel's state under its lock, creating the state empty in a
    /// fresh epoch if the broker holds none (and refusing to past `max_channels`).
    fn with_channel<R>(
        &self,
        channel: &ChannelName,
        now: Timestamp,
        change: impl FnOnce(&mut ChannelState) -> R,
    ) -> Result<R, BrokerError> {
        loop {
            let held = self.channels.read().get(channel).cloned();
            let state = match held {
                Some(state) => state,
                None => {
                    let mut channels = self.channels.write();
                    let at_limit = channels.len() >= self.max_channels;
                    match channels.entry(channel.clone()) {
                        Entry::Occupied(held) => Arc::clone(held.get()),
                        Entry::Vacant(_) if at_limit => {
                            return Err(BrokerError::ChannelLimit {
                                max: self.max_channels,
                            });
                        }
                        Entry::Vacant(vacant) => {
                            Arc::clone(vacant.insert(Arc::new(Mutex::new(ChannelState {
                                history: ReplayBuffer::new(self.current_epoch(), self.retention),
                                dedup: DedupWindow::new(usize::MAX, self.dedup_window),
                                feed: None,
                                idle_since: now,
                                forgotten: false,
                                presence: None,
                            }))))
                        }
                    }
                }
            };
            let mut state = state.lock();
            if !state.forgotten {
                return Ok(change(&mut state));
            }
        }
    }

    /// Runs `read` on the channel's history, under its lock; on an empty history of the
    /// node's epoch for a channel the broker holds no state for (without creating it, so reads
    /// of arbitrary names cost no memory).
    fn with_history<R>(
        &self,
        channel: &ChannelName,
        read: impl FnOnce(&mut ReplayBuffer<Stored>) -> R,
    ) -> R {
        let state = self.channels.read().get(channel).cloned();
        if let Some(state) = state {
            let mut state = state.lock();
            if !state.forgotten {
                let before = state.history.bytes();
                let answer = read(&mut state.history);
                self.release_history(before.saturating_sub(state.history.bytes()));
                return answer;
            }
        }
        read(&mut ReplayBuffer::new(self.current_epoch(), self.retention))
    }

    fn next_message_id(&self) -> Result<MessageId, BrokerError> {
        let number = self.next_message.fetch_add(1, Ordering::Relaxed);
        let text = format!("{}-{number}", self.message_prefix);
        MessageId::try_from(text.as_str())
            .map_err(|_| BrokerError::Internal("a generated message id broke the pattern".into()))
    }

    fn publish_now(
        &self,
        channel: &ChannelName,
        key: IdempotencyKey,
        payload: Payload,
        fence: Option<u64>,
        now: Timestamp,
        published_at_ms: u64,
    ) -> Result<PublishResponse, BrokerError> {
        let message_id = self.next_message_id()?;
        let admits = |state: &ChannelState| {
            fence.is_none_or(|fence| {
                state
                    .presence
                    .as_ref()
                    .is_some_and(|p| p.hold.admits(fence))
            })
        };
        let first = self.with_channel(channel, now, |state| {
            if !admits(state) {
                return Err(BrokerError::NotHolder);
            }
            self.append(
                state,
                channel,
                key,
                payload,
                message_id.clone(),
                now,
                published_at_ms,
            )
        })??;
        let (key, payload) = match first {
            Appended::Stored(ack) => return Ok(ack),
            Appended::NoRoom { key, payload } => (key, payload),
        };
        // FERRY-RESUME-7: make room from what the retention lets go under pressure, once.
        self.shed_aged(now);
        let second = self.with_channel(channel, now, |state| {
            if !admits(state) {
                return Err(BrokerError::NotHolder);
            }
            self.append(
                state,
                channel,
                key,
                payload,
                message_id,
                now,
                published_at_ms,
            )
        })??;
        match second {
            Appended::Stored(ack) => Ok(ack),
            Appended::NoRoom { .. } => Err(BrokerError::HistoryFull {
                max: self.max_history_bytes,
            }),
        }
    }

    /// A publish's work on its channel's state, under the channel's lock; the key and payload
    /// back when the event does not fit the history cap (nothing is stored then).
    #[allow(clippy::too_many_arguments)]
    fn append(
        &self,
        state: &mut ChannelState,
        channel: &ChannelName,
        key: IdempotencyKey,
        payload: Payload,
        message_id: MessageId,
        now: Timestamp,
        published_at_ms: u64,
    ) -> Result<Appended, BrokerError> {
        if let Some(original) = state.dedup.check(&key, now) {
            return Ok(Appended::Stored(PublishResponse {
                duplicate: true,
                ..original.clone()
            }));
        }
        let seq = UInt::new(state.history.next_seq()).ok_or_else(|| BrokerError::SeqExhausted {
            channel: channel.clone(),
        })?;
        let position = StreamPosition {
            epoch: state.history.epoch().clone(),
            seq: Seq(seq),
        };
        let published_at_ms = UInt::new(published_at_ms.min(MAX_SAFE_INTEGER))
            .ok_or_else(|| BrokerError::Internal("published_at_ms out of range".into()))?;
        let ack = PublishResponse {
            channel: channel.clone(),
            duplicate: false,
            message_id: message_id.clone(),
            position: position.clone(),
        };
        let event = EncodedEvent::new(Event {
            channel: channel.clone(),
            message_id,
            payload,
            position,
            published_at_ms: UnixMillis(published_at_ms),
        });
        let stored = Stored(event.clone());
        let bytes = stored.bytes();
        if !self.reserve_history(bytes) {
            let payload = event.event().payload.clone();
            return Ok(Appended::NoRoom { key, payload });
        }
        let before = state.history.bytes();
        if let Err(error) = state.history.append(stored, now) {
            self.release_history(bytes);
            return Err(BrokerError::Internal(error.to_string()));
        }
        // The append may have let older events go: their bytes come back.
        self.release_history((before + bytes).saturating_sub(state.history.bytes()));
        state.dedup.insert(key, ack.clone(), now);
        // Pushed under the channel's lock, so the channel's events reach its feed in seq order.
        if let Some(feed) = &state.feed {
            feed.push(&event);
        }
        Ok(Appended::Stored(ack))
    }

    fn follow_now(
        &self,
        channel: &ChannelName,
        feed: Arc<Feed>,
        now: Timestamp,
    ) -> Result<(), BrokerError> {
        self.with_channel(channel, now, |state| state.feed = Some(feed))
    }

    fn unfollow_now(&self, channel: &ChannelName, feed: &Arc<Feed>, now: Timestamp) {
        let state = self.channels.read().get(channel).cloned();
        if let Some(state) = state {
            let mut state = state.lock();
            if state
                .feed
                .as_ref()
                .is_some_and(|held| Arc::ptr_eq(held, feed))
            {
                state.feed = None;
                state.idle_since = now;
            }
        }
    }

    fn subscribe_now(
        &self,
        channel: &ChannelName,
        from: Option<&StreamPosition>,
        now: Timestamp,
    ) -> Result<SubscribeReply, BrokerError> {
        self.with_history(channel, |history| {
            let head = history.head();
            let Some(from) = from else {
                return Ok((head, None, Vec::new()));
            };
            match history.after(from, now) {
                Ok(replay) => {
                    let replay: Vec<EncodedEvent> = replay.map(|stored| stored.0.clone()).collect();
                    let recovery = recovery(None, replay.len())?;
                    Ok((head, Some(recovery), replay))
                }
                Err(gap) => Ok((head, Some(recovery(Some(gap), 0)?), Vec::new())),
            }
        })
    }

    fn history_now(
        &self,
        channel: &ChannelName,
        epoch: Option<&Epoch>,
        after_seq: Option<u64>,
        limit: usize,
        now: Timestamp,
    ) -> Result<HistoryResponse, BrokerError> {
        let limit = limit.min(MAX_HISTORY_LIMIT);
        self.with_history(channel, |history| {
            // After this, every held event is retained at `now`.
            history.expire(now);
            let head = history.head();
            let before_oldest = head.seq.get() - history.len() as u64;
            let page = |from: u64| -> Result<Vec<StoredEvent>, RecoveryGap> {
                let from = position(history.epoch(), from).ok_or(RecoveryGap::PositionAhead)?;
                Ok(history
                    .after(&from, now)?
                    .take(limit)
                    .map(|stored| stored_event(stored.0.event()))
                    .collect())
            };
            let requested_epoch = epoch.unwrap_or(history.epoch());
            let answer = if requested_epoch == history.epoch() {
                page(after_seq.unwrap_or(before_oldest))
            } else {
                Err(RecoveryGap::EpochChanged)
            };
            let (events, reason) = match answer {
                Ok(events) => (events, None),
                Err(gap) => (page(before_oldest).unwrap_or_default(), Some(gap)),
            };
            Ok(HistoryResponse {
                channel: channel.clone(),
                complete: reason.is_none(),
                events,
                head,
                reason,
            })
        })
    }

    fn join_presence_now(
        &self,
        channel: &ChannelName,
        present: PresentSession,
        now: Timestamp,
    ) -> Result<(), BrokerError> {
        self.with_channel(channel, now, |state| {
            let PresentSession {
                session,
                user,
                info,
            } = present;
            if let Some(change) = state.presence().roster.join(session, user, info) {
                state.announce(channel, change);
            }
        })
    }

    /// Runs `change` on the presence of a channel the broker holds state for.
    fn with_presence(
        &self,
        channel: &ChannelName,
        change: impl FnOnce(&mut ChannelState) -> Vec<ferry_protocol::presence::Change>,
    ) {
        let Some(state) = self.channels.read().get(channel).cloned() else {
            return;
        };
        let mut state = state.lock();
        if state.forgotten || state.presence.is_none() {
            return;
        }
        for event in change(&mut state) {
            state.announce(channel, event);
        }
    }

    fn expire_presence_now(&self, now: Timestamp) {
        let lapsing: Vec<ChannelName> = self.lapsing.lock().iter().cloned().collect();
        for channel in lapsing {
            let mut settled = true;
            self.with_presence(&channel, |state| {
                let roster = &mut state.presence().roster;
                let changes = roster.expire(now);
                settled = roster.next_lapse().is_none();
                changes
            });
            if settled {
                self.lapsing.lock().remove(&channel);
            }
        }
    }

    fn members_now(
        &self,
        channel: &ChannelName,
        after: Option<&UserId>,
        limit: usize,
    ) -> MembersRead {
        let state = self.channels.read().get(channel).cloned();
        if let Some(state) = state {
            let state = state.lock();
            if !state.forgotten {
                let (members, next) = state
                    .presence
                    .as_ref()
                    .map(|p| p.roster.page(after, limit))
                    .unwrap_or_default();
                return (members, next, state.history.head());
            }
        }
        let empty = ReplayBuffer::<Stored>::new(self.current_epoch(), self.retention);
        (Vec::new(), None, empty.head())
    }

    fn claim_hold_now(
        &self,
        channel: &ChannelName,
        session: &SessionId,
        user: &UserId,
        asked: Option<u64>,
        mode: Exclusive,
        now: Timestamp,
    ) -> Result<Claimed, BrokerError> {
        self.with_channel(channel, now, |state| {
            let claimed = state
                .presence()
                .hold
                .claim(session.clone(), user.clone(), asked, mode);
            if let (
                Claimed::Granted {
                    displaced: Some(displaced),
                    ..
                },
                Some(feed),
            ) = (&claimed, &state.feed)
            {
                feed.take_over(displaced.fence);
            }
            claimed
        })
    }

    fn purge_expired_now(&self, now: Timestamp) {
        self.tickets.lock().purge(now);
        let channels: Vec<_> = self
            .channels
            .read()
            .iter()
            .map(|(channel, state)| (channel.clone(), Arc::clone(state)))
            .collect();
        let mut idle = Vec::new();
        for (channel, state) in channels {
            let mut state = state.lock();
            let before = state.history.bytes();
            state.history.expire(now);
            self.release_history(before - state.history.bytes());
            state.dedup.expire(now);
            if self.forgettable(&state, now) {
                idle.push(channel);
            }
        }
        if idle.is_empty() {
            return;
        }
        let mut held = self.channels.write();
        for channel in idle {
            // Checked again under both locks: a publish or follow may have come meanwhile.
            let Some(state) = held.get(&channel).cloned() else {
                continue;
            };
            let mut state = state.lock();
            if self.forgettable(&state, now) {
                state.forgotten = true;
                held.remove(&channel);
                self.forgotten.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    /// Whether a channel's state can be dropped: nobody follows it, nothing in its history or
    /// dedup window is younger than their windows, and nobody followed it for the retention's
    /// age.
    fn forgettable(&self, state: &ChannelState, now: Timestamp) -> bool {
        state.feed.is_none()
            && !state.has_presence()
            && state.history.is_empty()
            && state.dedup.is_empty()
            && now.saturating_since(state.idle_since) >= self.retention.max_age
    }
}

impl Broker for MemoryBroker {
    async fn issue_ticket(
        &self,
        grant: Grant,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Ticket, BrokerError> {
        self.issue_ticket_now(grant, ttl, now)
    }

    async fn redeem_ticket(
        &self,
        ticket: &str,
        now: Timestamp,
    ) -> Result<Option<Grant>, BrokerError> {
        Ok(self.redeem_ticket_now(ticket, now))
    }

    async fn publish(
        &self,
        channel: &ChannelName,
        key: IdempotencyKey,
        payload: Payload,
        now: Timestamp,
        published_at_ms: u64,
    ) -> Result<PublishResponse, BrokerError> {
        self.publish_now(channel, key, payload, None, now, published_at_ms)
    }

    async fn publish_fenced(
        &self,
        channel: &ChannelName,
        key: IdempotencyKey,
        payload: Payload,
        fence: u64,
        now: Timestamp,
        published_at_ms: u64,
    ) -> Result<PublishResponse, BrokerError> {
        self.publish_now(channel, key, payload, Some(fence), now, published_at_ms)
    }

    async fn join_presence(
        &self,
        channel: &ChannelName,
        present: PresentSession,
        now: Timestamp,
    ) -> Result<(), BrokerError> {
        self.join_presence_now(channel, present, now)
    }

    fn leave_presence(
        &self,
        channel: &ChannelName,
        session: &SessionId,
        _now: Timestamp,
    ) -> impl Future<Output = ()> + Send + 'static {
        self.with_presence(channel, |state| {
            state.presence().roster.leave(session).into_iter().collect()
        });
        std::future::ready(())
    }

    fn lapse_presence(&self, channel: &ChannelName, session: &SessionId, now: Timestamp) {
        let at = now + self.presence_leave_after;
        self.with_presence(channel, |state| {
            state.presence().roster.lapse(session, at);
            Vec::new()
        });
        self.lapsing.lock().insert(channel.clone());
    }

    async fn expire_presence(&self, now: Timestamp) {
        self.expire_presence_now(now);
    }

    async fn members(
        &self,
        channel: &ChannelName,
        after: Option<&UserId>,
        limit: usize,
        _now: Timestamp,
    ) -> Result<MembersRead, BrokerError> {
        Ok(self.members_now(channel, after, limit))
    }

    async fn claim_hold(
        &self,
        channel: &ChannelName,
        session: &SessionId,
        user: &UserId,
        asked: Option<u64>,
        mode: Exclusive,
        now: Timestamp,
    ) -> Result<Claimed, BrokerError> {
        self.claim_hold_now(channel, session, user, asked, mode, now)
    }

    fn release_hold(&self, channel: &ChannelName, session: &SessionId, _now: Timestamp) {
        self.with_presence(channel, |state| {
            state.presence().hold.release(session);
            Vec::new()
        });
    }

    async fn subscribe(
        &self,
        channel: &ChannelName,
        from: Option<&StreamPosition>,
        now: Timestamp,
    ) -> Result<SubscribeReply, BrokerError> {
        self.subscribe_now(channel, from, now)
    }

    async fn history(
        &self,
        channel: &ChannelName,
        epoch: Option<&Epoch>,
        after_seq: Option<u64>,
        limit: usize,
        now: Timestamp,
    ) -> Result<HistoryResponse, BrokerError> {
        self.history_now(channel, epoch, after_seq, limit, now)
    }

    async fn follow(
        &self,
        channel: &ChannelName,
        feed: Arc<Feed>,
        now: Timestamp,
    ) -> Result<(), BrokerError> {
        self.follow_now(channel, feed, now)
    }

    fn unfollow(&self, channel: &ChannelName, feed: &Arc<Feed>, now: Timestamp) {
        self.unfollow_now(channel, feed, now);
    }

    fn history_bytes(&self) -> Option<(usize, usize)> {
        Some((self.history_bytes(), self.max_history_bytes))
    }

    async fn purge_expired(&self, now: Timestamp) {
        self.purge_expired_now(now);
    }
}

impl fmt::Debug for MemoryBroker {
    /// Counts only: tickets never appear in `Debug` output (FERRY-TICKET-6).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBroker")
            .field("epoch", &self.epoch)
            .field("retention", &self.retention)
            .field("dedup_window", &self.dedup_window)
            .field("channels", &self.channels.read().len())
            .field("tickets", &self.tickets.lock().live.len())
            .finish_non_exhaustive()
    }
}

/// A recovery: complete with `replayed` events when `gap` is `None`.
pub(super) fn recovery(gap: Option<RecoveryGap>, replayed: usize) -> Result<Recovery, BrokerError> {
    let replayed = u64::try_from(replayed)
        .ok()
        .and_then(UInt::new)
        .ok_or_else(|| BrokerError::Internal("replay count out of range".into()))?;
    Ok(Recovery {
        complete: gap.is_none(),
        reason: gap,
        replayed,
    })
}

/// The position `seq` of `epoch`, if `seq` is a valid seq.
fn position(epoch: &Epoch, seq: u64) -> Option<StreamPosition> {
    Some(StreamPosition {
        epoch: epoch.clone(),
        seq: Seq(UInt::new(seq)?),
    })
}

/// An event as the history endpoint returns it (without its channel).
pub(super) fn stored_event(event: &Event) -> StoredEvent {
    StoredEvent {
        message_id: event.message_id.clone(),
        payload: event.payload.clone(),
        position: event.position.clone(),
        published_at_ms: event.published_at_ms.clone(),
    }
}

/// Lowercase hex digits of `bytes`.
pub(super) fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

#[cfg(test)]
mod tests;
