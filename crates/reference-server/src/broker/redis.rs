//! The [`Broker`] shared by several nodes through one Redis: [`RedisBroker`].
//!
//! Every key is under one prefix, with the channel in a hash tag (`{channel}`), so a Redis
//! Cluster keeps a channel's keys in one slot and the scripts below touch one slot each:
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `<prefix>{<channel>}:state` | hash | `epoch`, `seq` (the head), `last_ms` (Redis time of the last event) |
//! | `<prefix>{<channel>}:events` | stream | one entry per retained event, id `<seq>-0`, fields `t` (Redis ms) and `f` (the event frame) |
//! | `<prefix>{<channel>}:dedup:<key>` | string | `<epoch> <seq> <message id>` of the first publish with the key, expiring after the dedup window |
//! | `<prefix>ticket:<ticket>` | string | the grant, as JSON, expiring with the ticket |
//! | `<prefix>user:{<user>}:sessions` | sorted set | the user's sessions on every node (`<node id>/<session id>`), scored by the end of their lease |
//!
//! and each channel has the pub/sub topic `<prefix><db>:{<channel>}` (topics are shared by
//! every database of a Redis, so the database number is part of the name).
//!
//! - Publish (FERRY-EVENT-1, FERRY-DEDUP-1): one Lua script, loaded once and called by its SHA
//!   (`EVALSHA`, loaded again on `NOSCRIPT`), checks the idempotency key, reads or creates the
//!   channel's epoch, takes the next seq, appends the event to the stream, trims it to the
//!   retention, records the key with the dedup window as its TTL and `PUBLISH`es the frame to
//!   the channel's topic. The frame is encoded once by the publishing node, around its epoch
//!   and seq which the script fills in; the acknowledgement is sent only after the script
//!   returned.
//! - Subscribe, resume and history (FERRY-SUBSCRIBE-2, FERRY-RESUME-1..5): one read script
//!   answers the head, the recovery and the events after a position from the stream (`XRANGE`
//!   by seq), atomically, so any node answers a resume exactly. Retention (FERRY-RESUME-3) is
//!   applied on publish and on read, by count and by Redis's clock: an event goes once it is
//!   beyond the last `max_events` *and* older than the window.
//! - Tickets (FERRY-TICKET-2, FERRY-TICKET-4): `SET ... PX ttl NX` on issue, `GETDEL` on
//!   redeem: of racing redemptions on any nodes, exactly one gets the grant.
//! - The per-user connection limit (FERRY-RATE-3) counts the user's sessions on every node:
//!   a script takes a slot in the user's sorted set if fewer than the limit hold a live lease.
//!   A node renews its sessions' 30 s leases every 10 s and removes a session's slot when it
//!   ends, so the slots of a node that dies come back within 30 s.
//! - Data loss (a Redis restarted without persistence, `FLUSHALL`, a failover to a replica that
//!   lagged): a channel whose state hash is gone gets a new random epoch on its next publish or
//!   read, so every position of the old history is answered `epoch_changed`.
//! - Live events (FERRY-EVENT-2): a node `SUBSCRIBE`s to a channel's topic when its first local
//!   session joins the channel and `UNSUBSCRIBE`s when the last one leaves, on one pub/sub
//!   connection owned by a background task. Pub/sub is at-most-once, so the task tracks the
//!   last seq it handed each feed: a seq jump, or a lost pub/sub connection, is filled from the
//!   stream before anything later is delivered. A hole the stream cannot fill (trimmed, or a
//!   new epoch) interrupts the feed's sessions ([`Feed::interrupt`], close 4410), whose clients
//!   resume and get their events or an explicit incomplete recovery.
//! - Unreachable Redis: every call fails with [`BrokerError::Unavailable`] (the retryable
//!   `unavailable`) within the response timeout; sessions stay open. Commands reconnect through
//!   the `redis` crate's connection manager, the pub/sub connection through the task (which
//!   also `PING`s it every 5 s, to notice a connection cut without a FIN), both with
//!   exponential backoff.
//!
//! Time: Redis's clock ages events, dedup keys and tickets, the same for every node, so the
//! `now` the trait passes (each node's own monotonic clock) is not used; `published_at_ms` is
//! the publishing node's wall clock.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink, PubSubStream};
use ::redis::{AsyncCommands, Client, Msg, RedisError, Script};
use ferry_protocol::bounded::{MAX_SAFE_INTEGER, UInt};
use ferry_protocol::replay::Retention;
use ferry_protocol::server::Grant;
use ferry_protocol::tables::defaults;
use ferry_protocol::{
    ChannelName, EncodedEvent, Epoch, Event, HistoryResponse, IdempotencyKey, MessageId,
    MethodName, Payload, Permission, PublishResponse, RecoveryGap, Seq, SessionId, StreamPosition,
    Ticket, Timestamp, UnixMillis, UserId,
};
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::memory::{hex, random_epoch, recovery, stored_event};
use super::{Broker, BrokerError, Feed, MAX_HISTORY_LIMIT, SharedCall, SubscribeReply};
use crate::backend::Outcome;

/// The prefix of every key and topic by default.
pub const DEFAULT_REDIS_PREFIX: &str = "ferry:";

/// Random bytes in a ticket: 256 bits, twice the 128 that FERRY-TICKET-2 asks for.
const TICKET_BYTES: usize = 32;

/// What a call's record holds while a node runs it; a finished call's holds its outcome.
const CALL_RUNNING: &str = "running";

/// How long one Redis command may take before the call fails with `unavailable`.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long connecting to Redis may take.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);

/// The first and the longest wait between two attempts to reconnect the pub/sub connection.
const RECONNECT_MIN: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// How often the pub/sub connection is checked with a `PING`.
const LIVENESS_EVERY: Duration = Duration::from_secs(5);

/// The scripts' common part: retention and Redis's clock.
const RETAIN_LUA: &str = include_str!("retain.lua");
/// The publish script, after [`RETAIN_LUA`].
const PUBLISH_LUA: &str = include_str!("publish.lua");
/// The read script, after [`RETAIN_LUA`].
const READ_LUA: &str = include_str!("read.lua");
/// The connection-slot script.
const SLOTS_LUA: &str = include_str!("slots.lua");

/// How long a node's hold on a connection slot lasts unless renewed: a node that dies gives
/// its sessions' slots back after at most this long.
const SLOT_LEASE: Duration = Duration::from_secs(30);

/// How often a node renews the leases of its sessions' slots.
const SLOT_RENEW_EVERY: Duration = Duration::from_secs(10);

/// The slots this node's sessions hold, by the key of their user's sorted set.
type HeldSlots = parking_lot::Mutex<HashMap<String, HashSet<String>>>;

/// The settings of a [`RedisBroker`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisBrokerConfig {
    /// Where Redis is: `redis://HOST:PORT[/DB]` (or `rediss://`, `redis+unix://`, with the
    /// `redis` crate's syntax for a user and password).
    pub url: String,
    /// The prefix of every key and topic; nodes of one deployment share it, and two
    /// deployments on one Redis must not.
    pub prefix: String,
    /// How much history each channel keeps (FERRY-RESUME-3).
    pub retention: Retention,
    /// How long an idempotency key is remembered (FERRY-DEDUP-1); raised to
    /// `retention.max_age` if shorter (FERRY-DEDUP-2).
    pub dedup_window: Duration,
}

impl RedisBrokerConfig {
    /// The defaults for Redis at `url`: prefix [`DEFAULT_REDIS_PREFIX`], the given retention
    /// and the default dedup window (2 minutes, or the retention's age if longer).
    pub fn new(url: impl Into<String>, retention: Retention) -> Self {
        Self {
            url: url.into(),
            prefix: DEFAULT_REDIS_PREFIX.to_owned(),
            retention,
            dedup_window: Duration::from_millis(defaults::DEDUP_WINDOW_MS).max(retention.max_age),
        }
    }
}

/// Key and topic names under the prefix.
#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
    db: i64,
}

impl Keys {
    fn state(&self, channel: &ChannelName) -> String {
        format!("{}{{{}}}:state", self.prefix, channel.as_str())
    }

    fn events(&self, channel: &ChannelName) -> String {
        format!("{}{{{}}}:events", self.prefix, channel.as_str())
    }

    fn dedup(&self, channel: &ChannelName, key: &IdempotencyKey) -> String {
        format!(
            "{}{{{}}}:dedup:{}",
            self.prefix,
            channel.as_str(),
            key.as_str()
        )
    }

    fn ticket(&self, ticket: &str) -> String {
        format!("{}ticket:{ticket}", self.prefix)
    }

    /// A call's record; the user's length comes first, so no two calls share a key whatever
    /// their user ids hold.
    fn call(&self, user: &UserId, method: &MethodName, key: &IdempotencyKey) -> String {
        format!(
            "{}call:{}:{}:{}:{}",
            self.prefix,
            user.len(),
            user.as_str(),
            method.as_str(),
            key.as_str()
        )
    }

    fn sessions(&self, user: &UserId) -> String {
        format!("{}user:{{{}}}:sessions", self.prefix, user.as_str())
    }

    fn topic(&self, channel: &ChannelName) -> String {
        format!("{}{}:{{{}}}", self.prefix, self.db, channel.as_str())
    }
}

/// The broker of several nodes sharing one Redis: tickets, history, dedup and fan-out in Redis
/// streams, keys and pub/sub. Cheap to share behind an `Arc`; dropping it stops its pub/sub
/// task.
pub struct RedisBroker {
    conn: ConnectionManager,
    keys: Keys,
    retention: Retention,
    dedup_window: Duration,
    publish_script: Script,
    read_script: Script,
    /// Random per broker, so message ids stay unique across nodes and restarts.
    message_prefix: String,
    next_message: AtomicU64,
    live: mpsc::UnboundedSender<Command>,
    slots_script: Script,
    held_slots: Arc<HeldSlots>,
}

impl RedisBroker {
    /// A broker on the Redis at `config.url`. Connects lazily: a Redis that is not up yet
    /// makes calls fail with `unavailable` until it is. Must be called within a Tokio runtime
    /// (it starts the pub/sub task). Fails only on a URL that cannot be used.
    pub fn new(config: RedisBrokerConfig) -> Result<Self, BrokerError> {
        let client = Client::open(config.url.as_str())
            .map_err(|e| BrokerError::Unavailable(format!("bad Redis URL: {e}")))?;
        let keys = Keys {
            prefix: config.prefix,
            db: client.get_connection_info().redis_settings().db(),
        };
        let manager = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_min_delay(RECONNECT_MIN)
            .set_max_delay(RECONNECT_MAX)
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager)
            .map_err(unavailable)?;
        let message_prefix = format!("m{}", hex(&rand::random::<[u8; 8]>()));
        // The pub/sub connection names its node (Redis 7.2 and later list it in CLIENT LIST as
        // lib-name=ferry-live lib-ver=<id>),
        // so an operator can tell the nodes' connections apart.
        let info = client.get_connection_info().clone();
        let settings = info
            .redis_settings()
            .clone()
            .set_lib_name("ferry-live", &message_prefix);
        let live_client = Client::open(info.set_redis_settings(settings))
            .map_err(|e| BrokerError::Unavailable(format!("bad Redis URL: {e}")))?;
        let (live, commands) = mpsc::unbounded_channel();
        let task = LiveTask {
            client: live_client,
            conn: conn.clone(),
            keys: keys.clone(),
            followed: HashMap::new(),
            link: None,
            failures: 0,
        };
        tokio::spawn(task.run(commands));
        let held_slots = Arc::new(HeldSlots::default());
        let slots_script = Script::new(SLOTS_LUA);
        tokio::spawn(renew_slots(
            conn.clone(),
            slots_script.clone(),
            Arc::downgrade(&held_slots),
        ));
        Ok(Self {
            conn,
            keys,
            retention: config.retention,
            dedup_window: config.dedup_window.max(config.retention.max_age),
            publish_script: Script::new(&format!("{RETAIN_LUA}\n{PUBLISH_LUA}")),
            read_script: Script::new(&format!("{RETAIN_LUA}\n{READ_LUA}")),
            message_prefix,
            next_message: AtomicU64::new(1),
            live,
            slots_script,
            held_slots,
        })
    }

    /// Whether Redis answers a `PING` now.
    pub async fn ping(&self) -> Result<(), BrokerError> {
        let mut conn = self.conn.clone();
        ::redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(drop)
            .map_err(unavailable)
    }

    /// This broker's random id: the prefix of the message ids it gives, and the `lib-ver` its
    /// pub/sub connection shows in `CLIENT LIST` (with `lib-name=ferry-live`, Redis 7.2 and
    /// later).
    pub fn node_id(&self) -> &str {
        &self.message_prefix
    }

    /// The prefix of every key and topic.
    pub fn prefix(&self) -> &str {
        &self.keys.prefix
    }

    /// How long idempotency keys are remembered (never shorter than the resume window).
    pub fn dedup_window(&self) -> Duration {
        self.dedup_window
    }

    /// How much history each channel keeps.
    pub fn retention(&self) -> Retention {
        self.retention
    }

    fn next_message_id(&self) -> Result<MessageId, BrokerError> {
        let number = self.next_message.fetch_add(1, Ordering::Relaxed);
        MessageId::try_from(format!("{}-{number}", self.message_prefix).as_str())
            .map_err(|_| BrokerError::Internal("a generated message id broke the pattern".into()))
    }

    /// Runs the read script: the channel's epoch, head, the seq before its oldest retained
    /// event, the gap from the position (if any) and the frames asked for.
    async fn read(
        &self,
        channel: &ChannelName,
        epoch: Option<&Epoch>,
        after_seq: Option<u64>,
        limit: usize,
        mode: &str,
    ) -> Result<Read, BrokerError> {
        let mut conn = self.conn.clone();
        let answer: Vec<String> = self
            .read_script
            .key(self.keys.state(channel))
            .key(self.keys.events(channel))
            .arg(random_epoch().as_str())
            .arg(self.retention.max_events)
            .arg(duration_ms(self.retention.max_age))
            .arg(epoch.map_or("", |epoch| epoch.as_str()))
            .arg(after_seq.map_or_else(String::new, |seq| seq.to_string()))
            .arg(limit)
            .arg(mode)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut answer = answer.into_iter();
        let mut next = || {
            answer
                .next()
                .ok_or_else(|| BrokerError::Internal("a short answer from the read script".into()))
        };
        let epoch = parse_epoch(&next()?)?;
        let head = parse_seq(&next()?)?;
        // The seq before the oldest retained event, which the gap already accounts for.
        parse_seq(&next()?)?;
        let gap = match next()?.as_str() {
            "" => None,
            "epoch_changed" => Some(RecoveryGap::EpochChanged),
            "position_ahead" => Some(RecoveryGap::PositionAhead),
            "history_exceeded" => Some(RecoveryGap::HistoryExceeded),
            other => {
                return Err(BrokerError::Internal(format!(
                    "the read script answered the gap {other:?}"
                )));
            }
        };
        let events = answer
            .map(parse_frame)
            .collect::<Result<Vec<_>, BrokerError>>()?;
        Ok(Read {
            head: position(&epoch, head)?,
            gap,
            events,
        })
    }
}

/// What the read script answered.
struct Read {
    head: StreamPosition,
    gap: Option<RecoveryGap>,
    events: Vec<EncodedEvent>,
}

impl Broker for RedisBroker {
    async fn issue_ticket(
        &self,
        grant: Grant,
        ttl: Duration,
        _now: Timestamp,
    ) -> Result<Ticket, BrokerError> {
        let value =
            serde_json::json!({ "user": grant.user, "permissions": grant.permissions }).to_string();
        let ttl_ms = duration_ms(ttl).max(1);
        let mut conn = self.conn.clone();
        loop {
            let text = hex(&rand::random::<[u8; TICKET_BYTES]>());
            let ticket = Ticket::try_from(text.as_str()).map_err(|_| {
                BrokerError::Internal("a generated ticket broke the pattern".into())
            })?;
            let set: Option<String> = ::redis::cmd("SET")
                .arg(self.keys.ticket(&text))
                .arg(&value)
                .arg("PX")
                .arg(ttl_ms)
                .arg("NX")
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if set.is_some() {
                return Ok(ticket);
            }
        }
    }

    async fn redeem_ticket(
        &self,
        ticket: &str,
        _now: Timestamp,
    ) -> Result<Option<Grant>, BrokerError> {
        if Ticket::try_from(ticket).is_err() {
            return Ok(None);
        }
        let mut conn = self.conn.clone();
        // GETDEL takes the ticket whatever its state: single-use across nodes (FERRY-TICKET-4).
        let taken: Option<String> = conn
            .get_del(self.keys.ticket(ticket))
            .await
            .map_err(unavailable)?;
        let Some(taken) = taken else {
            return Ok(None);
        };
        #[derive(serde::Deserialize)]
        struct Stored {
            user: UserId,
            permissions: Vec<Permission>,
        }
        let stored: Stored = serde_json::from_str(&taken)
            .map_err(|e| BrokerError::Internal(format!("a stored grant does not parse: {e}")))?;
        Ok(Some(Grant {
            user: stored.user,
            permissions: stored.permissions,
        }))
    }

    async fn publish(
        &self,
        channel: &ChannelName,
        key: IdempotencyKey,
        payload: Payload,
        _now: Timestamp,
        published_at_ms: u64,
    ) -> Result<PublishResponse, BrokerError> {
        let message_id = self.next_message_id()?;
        let frame = FrameParts::encode(Event {
            channel: channel.clone(),
            message_id: message_id.clone(),
            payload,
            position: StreamPosition {
                epoch: marker_epoch(),
                seq: Seq(UInt::new(MAX_SAFE_INTEGER)
                    .ok_or_else(|| BrokerError::Internal("2^53 - 1 is a seq".into()))?),
            },
            published_at_ms: UnixMillis(
                UInt::new(published_at_ms.min(MAX_SAFE_INTEGER))
                    .ok_or_else(|| BrokerError::Internal("published_at_ms out of range".into()))?,
            ),
        })?;
        let mut conn = self.conn.clone();
        let answer: Vec<String> = self
            .publish_script
            .key(self.keys.state(channel))
            .key(self.keys.events(channel))
            .key(self.keys.dedup(channel, &key))
            .arg(random_epoch().as_str())
            .arg(message_id.as_str())
            .arg(&frame.before_epoch)
            .arg(&frame.before_seq)
            .arg(&frame.after_seq)
            .arg(self.retention.max_events)
            .arg(duration_ms(self.retention.max_age))
            .arg(duration_ms(self.dedup_window).max(1))
            .arg(self.keys.topic(channel))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let short = || BrokerError::Internal("a short answer from the publish script".into());
        match answer.first().map(String::as_str) {
            Some("published") => {
                let epoch = parse_epoch(answer.get(1).ok_or_else(short)?)?;
                let seq = parse_seq(answer.get(2).ok_or_else(short)?)?;
                Ok(PublishResponse {
                    channel: channel.clone(),
                    duplicate: false,
                    message_id,
                    position: position(&epoch, seq)?,
                })
            }
            Some("duplicate") => {
                let record = answer.get(1).ok_or_else(short)?;
                let mut parts = record.splitn(3, ' ');
                let (Some(epoch), Some(seq), Some(original)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return Err(BrokerError::Internal(
                        "a dedup record does not parse".into(),
                    ));
                };
                Ok(PublishResponse {
                    channel: channel.clone(),
                    duplicate: true,
                    message_id: MessageId::try_from(original).map_err(|_| {
                        BrokerError::Internal("a dedup record's message id does not parse".into())
                    })?,
                    position: position(&parse_epoch(epoch)?, parse_seq(seq)?)?,
                })
            }
            Some("exhausted") => Err(BrokerError::SeqExhausted {
                channel: channel.clone(),
            }),
            _ => Err(short()),
        }
    }

    async fn subscribe(
        &self,
        channel: &ChannelName,
        from: Option<&StreamPosition>,
        _now: Timestamp,
    ) -> Result<SubscribeReply, BrokerError> {
        let Some(from) = from else {
            let read = self.read(channel, None, None, 0, "subscribe").await?;
            return Ok((read.head, None, Vec::new()));
        };
        let read = self
            .read(
                channel,
                Some(&from.epoch),
                Some(from.seq.get()),
                usize::try_from(MAX_SAFE_INTEGER).unwrap_or(usize::MAX),
                "subscribe",
            )
            .await?;
        if let Some(gap) = read.gap {
            return Ok((read.head, Some(recovery(Some(gap), 0)?), Vec::new()));
        }
        // The script answered every event after `from` up to the head, atomically.
        let expected = read.head.seq.get() - from.seq.get();
        let consecutive = read
            .events
            .iter()
            .zip(from.seq.get() + 1..)
            .all(|(event, seq)| event.event().position.seq.get() == seq);
        if read.events.len() as u64 != expected || !consecutive {
            return Err(BrokerError::Internal(format!(
                "the stream of {} does not hold the seqs it should",
                channel.as_str()
            )));
        }
        let recovery = recovery(None, read.events.len())?;
        Ok((read.head, Some(recovery), read.events))
    }

    async fn history(
        &self,
        channel: &ChannelName,
        epoch: Option<&Epoch>,
        after_seq: Option<u64>,
        limit: usize,
        _now: Timestamp,
    ) -> Result<HistoryResponse, BrokerError> {
        let limit = limit.min(MAX_HISTORY_LIMIT);
        let read = self
            .read(channel, epoch, after_seq, limit, "history")
            .await?;
        Ok(HistoryResponse {
            channel: channel.clone(),
            complete: read.gap.is_none(),
            events: read
                .events
                .iter()
                .map(|event| stored_event(event.event()))
                .collect(),
            head: read.head,
            reason: read.gap,
        })
    }

    async fn follow(
        &self,
        channel: &ChannelName,
        feed: Arc<Feed>,
        _now: Timestamp,
    ) -> Result<(), BrokerError> {
        let (done, answer) = oneshot::channel();
        self.live
            .send(Command::Follow {
                channel: channel.clone(),
                feed,
                done,
            })
            .map_err(|_| BrokerError::Internal("the pub/sub task stopped".into()))?;
        answer
            .await
            .map_err(|_| BrokerError::Internal("the pub/sub task stopped".into()))?
    }

    fn unfollow(&self, channel: &ChannelName, feed: &Arc<Feed>, _now: Timestamp) {
        let _ = self.live.send(Command::Unfollow {
            channel: channel.clone(),
            feed: Arc::clone(feed),
        });
    }

    async fn claim_call(
        &self,
        user: &UserId,
        method: &MethodName,
        key: &IdempotencyKey,
        lease: Duration,
    ) -> Result<Option<SharedCall>, BrokerError> {
        let record = self.keys.call(user, method, key);
        let mut conn = self.conn.clone();
        loop {
            let claimed: Option<String> = ::redis::cmd("SET")
                .arg(&record)
                .arg(CALL_RUNNING)
                .arg("PX")
                .arg(duration_ms(lease).max(1))
                .arg("NX")
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if claimed.is_some() {
                return Ok(Some(SharedCall::Run));
            }
            let held: Option<String> = ::redis::cmd("GET")
                .arg(&record)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            match held.as_deref() {
                // Forgotten or lapsed between the two commands: claim again.
                None => {}
                Some(CALL_RUNNING) => return Ok(Some(SharedCall::Running)),
                Some(text) => {
                    let outcome: Outcome = serde_json::from_str(text).map_err(|e| {
                        BrokerError::Internal(format!("a call record does not decode: {e}"))
                    })?;
                    return Ok(Some(SharedCall::Done(outcome)));
                }
            }
        }
    }

    async fn finish_call(
        &self,
        user: &UserId,
        method: &MethodName,
        key: &IdempotencyKey,
        outcome: Option<&Outcome>,
        window: Duration,
    ) -> Result<(), BrokerError> {
        let record = self.keys.call(user, method, key);
        let mut conn = self.conn.clone();
        match outcome {
            None => ::redis::cmd("DEL")
                .arg(&record)
                .query_async::<i64>(&mut conn)
                .await
                .map(drop),
            Some(outcome) => {
                let text = serde_json::to_string(outcome).map_err(|e| {
                    BrokerError::Internal(format!("a call's outcome does not encode: {e}"))
                })?;
                ::redis::cmd("SET")
                    .arg(&record)
                    .arg(text)
                    .arg("PX")
                    .arg(duration_ms(window).max(1))
                    .query_async::<()>(&mut conn)
                    .await
            }
        }
        .map_err(unavailable)
    }

    async fn take_connection_slot(
        &self,
        user: &UserId,
        session: &SessionId,
        max: u64,
    ) -> Result<bool, BrokerError> {
        let key = self.keys.sessions(user);
        let member = format!("{}/{}", self.message_prefix, session.as_str());
        let mut conn = self.conn.clone();
        let taken: i64 = self
            .slots_script
            .key(&key)
            .arg("take")
            .arg(&member)
            .arg(max)
            .arg(duration_ms(SLOT_LEASE))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if taken == 1 {
            self.held_slots
                .lock()
                .entry(key)
                .or_default()
                .insert(member);
        }
        Ok(taken == 1)
    }

    fn release_connection_slot(&self, user: &UserId, session: &SessionId) {
        let key = self.keys.sessions(user);
        let member = format!("{}/{}", self.message_prefix, session.as_str());
        {
            let mut held = self.held_slots.lock();
            if let Some(members) = held.get_mut(&key) {
                members.remove(&member);
                if members.is_empty() {
                    held.remove(&key);
                }
            }
        }
        // In the background; if Redis cannot be told, the lease runs out.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let mut conn = self.conn.clone();
            runtime.spawn(async move {
                let _: Result<i64, RedisError> = conn.zrem(key, member).await;
            });
        }
    }
}

/// Renews, every [`SLOT_RENEW_EVERY`], the leases of the connection slots this node's sessions
/// hold, until the broker is dropped.
async fn renew_slots(conn: ConnectionManager, script: Script, held: std::sync::Weak<HeldSlots>) {
    let mut every = tokio::time::interval(SLOT_RENEW_EVERY);
    every.tick().await;
    loop {
        every.tick().await;
        let Some(held) = held.upgrade() else {
            return;
        };
        let users: Vec<(String, Vec<String>)> = held
            .lock()
            .iter()
            .map(|(key, members)| (key.clone(), members.iter().cloned().collect()))
            .collect();
        drop(held);
        for (key, members) in users {
            let mut conn = conn.clone();
            let mut invocation = script.key(&key);
            invocation.arg("renew").arg(duration_ms(SLOT_LEASE));
            for member in &members {
                invocation.arg(member);
            }
            if let Err(error) = invocation.invoke_async::<i64>(&mut conn).await {
                debug!(%error, "cannot renew connection slots; retrying at the next round");
            }
        }
    }
}

impl fmt::Debug for RedisBroker {
    /// Settings only: tickets never appear in `Debug` output (FERRY-TICKET-6).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBroker")
            .field("prefix", &self.keys.prefix)
            .field("db", &self.keys.db)
            .field("retention", &self.retention)
            .field("dedup_window", &self.dedup_window)
            .finish_non_exhaustive()
    }
}

/// An event frame cut around its epoch and seq, which the publish script fills in.
struct FrameParts {
    before_epoch: String,
    before_seq: String,
    after_seq: String,
}

impl FrameParts {
    /// Encodes `event`, whose position holds a random marker epoch and seq 2^53 − 1, and cuts
    /// the frame at them. The position comes after the payload in the frame, and the marker is
    /// random, so its last occurrence is the position's.
    fn encode(event: Event) -> Result<Self, BrokerError> {
        let marker = event.position.epoch.as_str().to_owned();
        let encoded = EncodedEvent::new(event);
        let text = encoded.text().as_str();
        let broken = || BrokerError::Internal("an event frame did not cut at its position".into());
        let at = text.rfind(&marker).ok_or_else(broken)?;
        let (before_epoch, rest) = (&text[..at], &text[at + marker.len()..]);
        let seq_text = MAX_SAFE_INTEGER.to_string();
        let seq_at = rest.find(&seq_text).ok_or_else(broken)?;
        let (before_seq, after_seq) = (&rest[..seq_at], &rest[seq_at + seq_text.len()..]);
        if before_seq != r#"","seq":"# {
            return Err(broken());
        }
        Ok(Self {
            before_epoch: before_epoch.to_owned(),
            before_seq: before_seq.to_owned(),
            after_seq: after_seq.to_owned(),
        })
    }
}

/// A random epoch-shaped marker, never a channel's epoch (those start with `e-`).
fn marker_epoch() -> Epoch {
    Epoch::try_from(format!("x{}", hex(&rand::random::<[u8; 16]>())).as_str())
        .unwrap_or_else(|_| unreachable!("hex digits match the Epoch pattern"))
}

fn unavailable(error: RedisError) -> BrokerError {
    BrokerError::Unavailable(format!("Redis: {error}"))
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn parse_epoch(text: &str) -> Result<Epoch, BrokerError> {
    Epoch::try_from(text)
        .map_err(|_| BrokerError::Internal(format!("Redis holds the bad epoch {text:?}")))
}

fn parse_seq(text: &str) -> Result<u64, BrokerError> {
    text.parse()
        .map_err(|_| BrokerError::Internal(format!("Redis holds the bad seq {text:?}")))
}

fn parse_frame(text: String) -> Result<EncodedEvent, BrokerError> {
    EncodedEvent::from_text(text).map_err(|e| {
        BrokerError::Internal(format!("Redis holds an event that does not parse: {e}"))
    })
}

fn position(epoch: &Epoch, seq: u64) -> Result<StreamPosition, BrokerError> {
    Ok(StreamPosition {
        epoch: epoch.clone(),
        seq: Seq(UInt::new(seq)
            .ok_or_else(|| BrokerError::Internal(format!("seq {seq} is out of range")))?),
    })
}

/// Stream entries as `XRANGE` answers them: id, then field names and values.
type StreamEntries = Vec<(String, Vec<(String, String)>)>;

/// What the broker asks of its pub/sub task.
enum Command {
    Follow {
        channel: ChannelName,
        feed: Arc<Feed>,
        done: oneshot::Sender<Result<(), BrokerError>>,
    },
    Unfollow {
        channel: ChannelName,
        feed: Arc<Feed>,
    },
}

/// A channel this node follows: its feed and the last position handed to it.
struct Followed {
    feed: Arc<Feed>,
    /// The epoch and seq of the last event handed to the feed, or of the head when the
    /// channel was followed; `None` for a channel that had no state then.
    last: Option<(Epoch, u64)>,
}

/// The pub/sub side of a [`RedisBroker`]: one connection, the channels followed, and the
/// fill-in of holes from the stream.
struct LiveTask {
    client: Client,
    conn: ConnectionManager,
    keys: Keys,
    followed: HashMap<ChannelName, Followed>,
    link: Option<(PubSubSink, PubSubStream)>,
    /// Failed connection attempts in a row, for the backoff.
    failures: u32,
}

impl LiveTask {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut retry_at = tokio::time::Instant::now();
        let mut liveness = tokio::time::interval(LIVENESS_EVERY);
        liveness.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.link.is_none() && tokio::time::Instant::now() >= retry_at {
                if self.connect().await {
                    self.failures = 0;
                } else {
                    self.failures = self.failures.saturating_add(1);
                    retry_at = tokio::time::Instant::now() + self.backoff();
                }
            }
            let connected = self.link.is_some();
            tokio::select! {
                command = commands.recv() => match command {
                    None => return,
                    Some(Command::Follow { channel, feed, done }) => {
                        let followed = self.follow(channel, feed).await;
                        let _ = done.send(followed);
                    }
                    Some(Command::Unfollow { channel, feed }) => self.unfollow(&channel, &feed).await,
                },
                message = next_message(&mut self.link), if connected => match message {
                    Some(message) => self.on_message(&message).await,
                    None => {
                        warn!("lost the Redis pub/sub connection; reconnecting");
                        self.link = None;
                        retry_at = tokio::time::Instant::now();
                    }
                },
                () = tokio::time::sleep_until(retry_at), if !connected => {}
                _ = liveness.tick(), if connected => {
                    // A connection cut without a FIN (a partition) is noticed within seconds.
                    if let Some((sink, _)) = self.link.as_mut() {
                        let answered =
                            tokio::time::timeout(RESPONSE_TIMEOUT, sink.ping::<::redis::Value>()).await;
                        if !matches!(answered, Ok(Ok(_))) {
                            warn!("the Redis pub/sub connection does not answer; reconnecting");
                            self.link = None;
                            retry_at = tokio::time::Instant::now();
                        }
                    }
                }
            }
        }
    }

    /// The wait before the next attempt: exponential from [`RECONNECT_MIN`] to
    /// [`RECONNECT_MAX`], with full jitter over its upper half.
    fn backoff(&self) -> Duration {
        let exp = RECONNECT_MIN.saturating_mul(1 << self.failures.min(10));
        let cap = exp.min(RECONNECT_MAX);
        cap / 2 + cap.mul_f64(rand::random::<f64>() / 2.0)
    }

    /// Opens the pub/sub connection, subscribes to every followed channel's topic, then fills
    /// in from the streams what was published while it was down. Whether it is connected.
    async fn connect(&mut self) -> bool {
        let opened = tokio::time::timeout(CONNECTION_TIMEOUT, self.client.get_async_pubsub()).await;
        let pubsub = match opened {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(error)) => {
                debug!(%error, "cannot open the Redis pub/sub connection");
                return false;
            }
            Err(_) => {
                debug!("timed out opening the Redis pub/sub connection");
                return false;
            }
        };
        let (mut sink, stream) = pubsub.split();
        let topics: Vec<String> = self.followed.keys().map(|c| self.keys.topic(c)).collect();
        for chunk in topics.chunks(256) {
            match tokio::time::timeout(RESPONSE_TIMEOUT, sink.subscribe(chunk)).await {
                Ok(Ok(())) => {}
                _ => return false,
            }
        }
        self.link = Some((sink, stream));
        if !self.followed.is_empty() {
            info!(
                channels = self.followed.len(),
                "Redis pub/sub connected; filling in from the streams"
            );
        }
        let channels: Vec<ChannelName> = self.followed.keys().cloned().collect();
        for channel in channels {
            self.catch_up(&channel).await;
        }
        true
    }

    async fn follow(&mut self, channel: ChannelName, feed: Arc<Feed>) -> Result<(), BrokerError> {
        if let Some(followed) = self.followed.get_mut(&channel) {
            followed.feed = feed;
            return Ok(());
        }
        let Some((sink, _)) = self.link.as_mut() else {
            return Err(BrokerError::Unavailable(
                "Redis pub/sub is not connected".into(),
            ));
        };
        let topic = self.keys.topic(&channel);
        match tokio::time::timeout(RESPONSE_TIMEOUT, sink.subscribe(&topic)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                self.link = None;
                return Err(unavailable(error));
            }
            Err(_) => {
                self.link = None;
                return Err(BrokerError::Unavailable(
                    "Redis pub/sub did not confirm a subscribe".into(),
                ));
            }
        }
        // Subscribed first, so every event after this head reaches the feed.
        let last = match self.head(&channel).await {
            Ok(last) => last,
            Err(error) => {
                if let Some((sink, _)) = self.link.as_mut() {
                    let _ = sink.unsubscribe(&topic).await;
                }
                return Err(error);
            }
        };
        self.followed.insert(channel, Followed { feed, last });
        Ok(())
    }

    async fn unfollow(&mut self, channel: &ChannelName, feed: &Arc<Feed>) {
        let ours = self
            .followed
            .get(channel)
            .is_some_and(|followed| Arc::ptr_eq(&followed.feed, feed));
        if !ours {
            return;
        }
        self.followed.remove(channel);
        if let Some((sink, _)) = self.link.as_mut() {
            let topic = self.keys.topic(channel);
            if !matches!(
                tokio::time::timeout(RESPONSE_TIMEOUT, sink.unsubscribe(&topic)).await,
                Ok(Ok(()))
            ) {
                // A connection in doubt is replaced; the new one subscribes to what is followed.
                self.link = None;
            }
        }
    }

    /// The channel's head as its state hash holds it, `None` if it has no state.
    async fn head(&self, channel: &ChannelName) -> Result<Option<(Epoch, u64)>, BrokerError> {
        let mut conn = self.conn.clone();
        let (epoch, seq): (Option<String>, Option<String>) = ::redis::cmd("HMGET")
            .arg(self.keys.state(channel))
            .arg("epoch")
            .arg("seq")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        match (epoch, seq) {
            (Some(epoch), seq) => Ok(Some((
                parse_epoch(&epoch)?,
                seq.as_deref().map_or(Ok(0), parse_seq)?,
            ))),
            (None, _) => Ok(None),
        }
    }

    /// Hands a live event to its channel's feed, after filling any hole before it.
    async fn on_message(&mut self, message: &Msg) {
        let event = match std::str::from_utf8(message.get_payload_bytes())
            .ok()
            .map(|text| EncodedEvent::from_text(text.to_owned()))
        {
            Some(Ok(event)) => event,
            _ => {
                warn!(
                    topic = message.get_channel_name(),
                    "a message on a Ferry topic is not an event frame; ignored"
                );
                return;
            }
        };
        let channel = event.event().channel.clone();
        let Some(followed) = self.followed.get(&channel) else {
            return;
        };
        let epoch = event.event().position.epoch.clone();
        let seq = event.event().position.seq.get();
        let from = match &followed.last {
            Some((last_epoch, last)) if *last_epoch == epoch => {
                if seq <= *last {
                    return;
                }
                *last
            }
            Some(_) => {
                // The channel's state was lost and began a new epoch: positions held by the
                // sessions are gone, so they resume and hear epoch_changed.
                info!(
                    channel = channel.as_str(),
                    "a new epoch; the channel's sessions resume"
                );
                followed.feed.interrupt();
                0
            }
            None => 0,
        };
        if seq > from + 1 {
            self.fill(&channel, &epoch, from, Some(seq - 1)).await;
        }
        if let Some(followed) = self.followed.get_mut(&channel) {
            followed.feed.push(&event);
            followed.last = Some((epoch, seq));
        }
    }

    /// After a reconnect: hands the feed every event published since its last one.
    async fn catch_up(&mut self, channel: &ChannelName) {
        let head = match self.head(channel).await {
            Ok(head) => head,
            Err(error) => {
                // Unknown: the sessions resume, and the task tries again on their next event.
                warn!(channel = channel.as_str(), %error, "cannot read a channel's head after a reconnect");
                if let Some(followed) = self.followed.get(channel) {
                    followed.feed.interrupt();
                }
                return;
            }
        };
        let Some(followed) = self.followed.get_mut(channel) else {
            return;
        };
        let Some((epoch, head)) = head else {
            if followed.last.take().is_some() {
                info!(
                    channel = channel.as_str(),
                    "the channel's state is gone; its sessions resume"
                );
                followed.feed.interrupt();
            }
            return;
        };
        let from = match &followed.last {
            Some((last_epoch, last)) if *last_epoch == epoch => *last,
            Some(_) => {
                info!(
                    channel = channel.as_str(),
                    "a new epoch; the channel's sessions resume"
                );
                followed.feed.interrupt();
                0
            }
            None => 0,
        };
        if head > from {
            self.fill(channel, &epoch, from, Some(head)).await;
        } else {
            followed.last = Some((epoch, from));
        }
    }

    /// Hands the feed the events after `from` up to `to` (inclusive) of `epoch`, read from the
    /// stream. If the stream does not hold exactly those, the feed is interrupted: its
    /// sessions resume and get what is retained or an explicit incomplete recovery.
    async fn fill(&mut self, channel: &ChannelName, epoch: &Epoch, from: u64, to: Option<u64>) {
        let mut conn = self.conn.clone();
        let end = to.map_or_else(|| "+".to_owned(), |to| format!("{to}-0"));
        let read: Result<StreamEntries, RedisError> = ::redis::cmd("XRANGE")
            .arg(self.keys.events(channel))
            .arg(format!("{}-0", from + 1))
            .arg(end)
            .query_async(&mut conn)
            .await;
        let Some(followed) = self.followed.get_mut(channel) else {
            return;
        };
        let events: Option<Vec<EncodedEvent>> = read.ok().and_then(|entries| {
            entries
                .into_iter()
                .map(|(_, fields)| {
                    fields
                        .into_iter()
                        .find(|(name, _)| name == "f")
                        .and_then(|(_, frame)| EncodedEvent::from_text(frame).ok())
                })
                .collect()
        });
        let filled = events.filter(|events| {
            let consecutive = events.iter().zip(from + 1..).all(|(event, seq)| {
                event.event().position.seq.get() == seq && &event.event().position.epoch == epoch
            });
            let complete = to.is_none_or(|to| events.len() as u64 == to - from);
            consecutive && complete
        });
        match filled {
            Some(events) => {
                debug!(
                    channel = channel.as_str(),
                    events = events.len(),
                    "filled a hole in the live feed from the stream"
                );
                for event in &events {
                    followed.feed.push(event);
                }
                let last = events.last().map_or(from, |e| e.event().position.seq.get());
                followed.last = Some((epoch.clone(), last));
            }
            None => {
                info!(
                    channel = channel.as_str(),
                    "a hole in the live feed the stream cannot fill; the channel's sessions resume"
                );
                followed.feed.interrupt();
                followed.last = Some((epoch.clone(), to.unwrap_or(from)));
            }
        }
    }
}

/// The next message on the pub/sub connection; `None` when it is lost.
async fn next_message(link: &mut Option<(PubSubSink, PubSubStream)>) -> Option<Msg> {
    match link {
        Some((_, stream)) => stream.next().await,
        None => std::future::pending().await,
    }
}
