//! The in-memory [`Broker`] of a single node: [`MemoryBroker`].
//!
//! - Tickets (FERRY-TICKET-2, FERRY-TICKET-4): 32 bytes from the thread-local CSPRNG, written
//!   as 64 hex digits, in one map behind one lock, so a redemption is a single `remove`: of
//!   racing redemptions exactly one finds the ticket. A min-heap of expiry times lets issue and
//!   redeem drop expired tickets as they go, so the map holds at most the tickets issued within
//!   the longest lifetime.
//! - Channels (FERRY-EVENT-1, FERRY-EVENT-2, FERRY-RESUME-1..3): one [`ReplayBuffer`] and one
//!   [`DedupWindow`] per channel behind the channel's own lock. A publish checks the key,
//!   appends, records the key and sends the event to the broadcast while holding that lock,
//!   so a channel's events are broadcast in seq order, while publishes to different channels
//!   run in parallel. A channel lives as long as the broker (forgetting it would restart its
//!   seq inside the same epoch); its memory is bounded by the retention.
//! - Dedup (FERRY-DEDUP-1, FERRY-DEDUP-2): the per-channel window is keyed by idempotency key,
//!   which is the same as one window keyed by (channel, key). It is bounded by age only (its
//!   capacity is `usize::MAX`): no key younger than the window is forgotten to save memory,
//!   and the per-connection and per-caller rate limits bound how many keys a window holds. The
//!   window is never shorter than the resume window.
//! - Fan-out: one `tokio::sync::broadcast` of `Arc<Event>` for every channel; each connection
//!   filters through its session.
//! - The epoch is random per broker, so a restarted in-memory server announces that its
//!   history is gone (`epoch_changed`) instead of reusing positions.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferry_protocol::bounded::{MAX_SAFE_INTEGER, UInt};
use ferry_protocol::replay::{ReplayBuffer, Retention, Sequenced};
use ferry_protocol::server::Grant;
use ferry_protocol::tables::defaults;
use ferry_protocol::{
    ChannelName, DedupWindow, Epoch, Event, HistoryResponse, IdempotencyKey, MessageId, Payload,
    PublishResponse, Recovery, RecoveryGap, Seq, StoredEvent, StreamPosition, Ticket, Timestamp,
    UnixMillis,
};
use parking_lot::{Mutex, RwLock};
use tokio::sync::broadcast;

use super::{Broker, BrokerError, EventReceiver, MAX_HISTORY_LIMIT, SubscribeReply};

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
    /// How many events a slow receiver of [`Broker::events`] may fall behind before it lags
    /// (at least 1).
    pub broadcast_capacity: usize,
    /// The epoch of every channel's history; random per start (see [`random_epoch`]).
    pub epoch: Epoch,
}

impl MemoryBrokerConfig {
    /// The defaults with the given retention: the default dedup window (2 minutes, or the
    /// retention's age if longer), a broadcast capacity of 4096 events and a random epoch.
    pub fn new(retention: Retention) -> Self {
        Self {
            retention,
            dedup_window: Duration::from_millis(defaults::DEDUP_WINDOW_MS).max(retention.max_age),
            broadcast_capacity: 4096,
            epoch: random_epoch(),
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
/// through one broadcast. Cheap to share behind an `Arc`; every lock is held for a short,
/// synchronous section and never across an `.await`.
pub struct MemoryBroker {
    retention: Retention,
    dedup_window: Duration,
    epoch: Epoch,
    /// Random per broker, so message ids stay unique across restarts.
    message_prefix: String,
    next_message: AtomicU64,
    channels: RwLock<HashMap<ChannelName, Arc<Mutex<ChannelState>>>>,
    tickets: Mutex<Tickets>,
    events: broadcast::Sender<Arc<Event>>,
}

/// An event held in a channel's history, shared with the broadcast.
#[derive(Debug, Clone)]
struct Stored(Arc<Event>);

impl Sequenced for Stored {
    fn seq(&self) -> u64 {
        self.0.position.seq.get()
    }
}

/// One channel's history and dedup window.
struct ChannelState {
    history: ReplayBuffer<Stored>,
    dedup: DedupWindow<IdempotencyKey, PublishResponse>,
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
            channels: RwLock::new(HashMap::new()),
            tickets: Mutex::new(Tickets::default()),
            events: broadcast::channel(config.broadcast_capacity.max(1)).0,
        }
    }

    /// The epoch of every channel's history.
    pub fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    /// How long idempotency keys are remembered (never shorter than the resume window).
    pub fn dedup_window(&self) -> Duration {
        self.dedup_window
    }

    /// How much history each channel keeps.
    pub fn retention(&self) -> Retention {
        self.retention
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

    /// The channel's state, created empty in the broker's epoch if it has none yet.
    fn channel_state(&self, channel: &ChannelName) -> Arc<Mutex<ChannelState>> {
        if let Some(state) = self.channels.read().get(channel) {
            return Arc::clone(state);
        }
        let mut channels = self.channels.write();
        let state = channels.entry(channel.clone()).or_insert_with(|| {
            Arc::new(Mutex::new(ChannelState {
                history: ReplayBuffer::new(self.epoch.clone(), self.retention),
                dedup: DedupWindow::new(usize::MAX, self.dedup_window),
            }))
        });
        Arc::clone(state)
    }

    /// Runs `read` on the channel's history, under its lock; on an empty history of the
    /// broker's epoch for a channel nobody published to (without creating it, so reads of
    /// arbitrary names cost no memory).
    fn with_history<R>(
        &self,
        channel: &ChannelName,
        read: impl FnOnce(&mut ReplayBuffer<Stored>) -> R,
    ) -> R {
        let state = self.channels.read().get(channel).cloned();
        match state {
            Some(state) => read(&mut state.lock().history),
            None => read(&mut ReplayBuffer::new(self.epoch.clone(), self.retention)),
        }
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
        now: Timestamp,
        published_at_ms: u64,
    ) -> Result<PublishResponse, BrokerError> {
        let state = self.channel_state(channel);
        let mut state = state.lock();
        if let Some(original) = state.dedup.check(&key, now) {
            return Ok(PublishResponse {
                duplicate: true,
                ..original.clone()
            });
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
        let event = Arc::new(Event {
            channel: channel.clone(),
            message_id: self.next_message_id()?,
            payload,
            position: position.clone(),
            published_at_ms: UnixMillis(published_at_ms),
        });
        state
            .history
            .append(Stored(Arc::clone(&event)), now)
            .map_err(|error| BrokerError::Internal(error.to_string()))?;
        let ack = PublishResponse {
            channel: channel.clone(),
            duplicate: false,
            message_id: event.message_id.clone(),
            position,
        };
        state.dedup.insert(key, ack.clone(), now);
        // Sent under the channel's lock, so the channel's events are broadcast in seq order.
        // An error only means that no connection listens.
        let _ = self.events.send(event);
        Ok(ack)
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
                    let replay: Vec<Event> = replay.map(|stored| (*stored.0).clone()).collect();
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
                    .map(|stored| stored_event(&stored.0))
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

    fn purge_expired_now(&self, now: Timestamp) {
        self.tickets.lock().purge(now);
        let channels: Vec<_> = self.channels.read().values().cloned().collect();
        for state in channels {
            let mut state = state.lock();
            state.history.expire(now);
            state.dedup.expire(now);
        }
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
        self.publish_now(channel, key, payload, now, published_at_ms)
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

    fn events(&self) -> EventReceiver {
        self.events.subscribe()
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
fn recovery(gap: Option<RecoveryGap>, replayed: usize) -> Result<Recovery, BrokerError> {
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
fn stored_event(event: &Event) -> StoredEvent {
    StoredEvent {
        message_id: event.message_id.clone(),
        payload: event.payload.clone(),
        position: event.position.clone(),
        published_at_ms: event.published_at_ms.clone(),
    }
}

/// Lowercase hex digits of `bytes`.
fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

#[cfg(test)]
mod tests;
