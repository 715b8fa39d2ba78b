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
//! | `<prefix>{<channel>}:presence` | hash | the channel's present sessions: `<node id>/<session id>` → `p:<user>` (refreshed by its node) or `l:<user>` (lapsed) |
//! | `<prefix>{<channel>}:lapses` | sorted set | the same sessions, scored by the Redis time (ms) at which each leaves unless refreshed |
//! | `<prefix>{<channel>}:members` | hash | user → how many of its sessions are present |
//! | `<prefix>{<channel>}:infos` | hash | user → the info (JSON) of the session that made it a member, for members whose session gave one |
//! | `<prefix>{<channel>}:users` | sorted set | the members' users, all scored 0, paged with `ZRANGEBYLEX` |
//! | `<prefix>{<channel>}:hold` | hash | the holder: `session` (`<node id>/<session id>`), `user`, `fence`, `expires` (Redis ms), expiring with the hold |
//! | `<prefix>{<channel>}:fence` | string | the last fence given on the channel, a counter that never goes back; started from Redis's clock in microseconds when absent, so fences grow across a Redis that lost its data |
//!
//! and each channel has the pub/sub topic `<prefix><db>:{<channel>}` (topics are shared by
//! every database of a Redis, so the database number is part of the name), which carries the
//! channel's event frames, its presence frames (`{"type":"presence",...}`, as sessions receive
//! them) and take-over notices (`take_over <old fence> <channel>`).
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
//! - Presence (FERRY-PRESENCE-1..4): one script (`presence.lua`) makes every change of a
//!   channel's members atomically, by Redis's clock so every node agrees: a join, a leave, a
//!   lapse, a refresh, a sweep and a members read each first drop the sessions whose time has
//!   come. A session joins with an expiry `presence_leave_after` ahead (at least 1 s), which its
//!   node refreshes every third of it while the session lasts; a lapse (its connection ended
//!   without leaving) stops the refreshing and sets the expiry `presence_leave_after` from
//!   then; a leave removes it at once. So the sessions of a node that stops leave that expiry
//!   (`presence_leave_after`, at least 1 s) after its last refresh, once a node's sweep
//!   ([`Broker::expire_presence`], over the channels where it has present or lapsed sessions,
//!   about every second) or any change or read of the channel's members finds them due. When a change makes or ends a
//!   member, the script publishes the presence frame on the channel's topic, with the
//!   channel's head then, and every node hands it to its feed ([`Feed::push_presence`]) after
//!   any events up to that head. Presence frames lost with a pub/sub connection cannot be
//!   filled in: after a reconnect, the sessions of the channels where the node has presence
//!   are interrupted, and their clients resume and read the members again (FERRY-PRESENCE-6).
//! - Holds (FERRY-HOLD-1..4): one script (`hold.lua`) claims, releases and refreshes a
//!   channel's holder record, which lasts `presence_leave_after` (at least 1 s) unless its node
//!   refreshes it, so the holds of a node that stops lapse; an expired holder counts as none.
//!   Every grant takes the next value of the channel's fence counter (`INCR`, never reused). A
//!   grant that displaces a holder publishes a take-over notice with the old fence on the
//!   channel's topic, and every node following the channel calls [`Feed::take_over`]; a node
//!   whose refresh finds a hold of its own gone tells its feed the same way, in case the notice
//!   was lost. The publish script checks, atomically with the append and before the
//!   idempotency key, that a fenced publish carries the holder's fence
//!   ([`BrokerError::NotHolder`] otherwise: nothing stored, no duplicate answer).
//! - Unreachable Redis: every call fails with [`BrokerError::Unavailable`] (the retryable
//!   `unavailable`) within the response timeout; sessions stay open. Commands reconnect through
//!   the `redis` crate's connection manager, the pub/sub connection through the task (which
//!   also `PING`s it every 5 s, to notice a connection cut without a FIN), both with
//!   exponential backoff.
//!
//! Time: Redis's clock ages events, dedup keys, tickets, presence and holds, the same for every
//! node, so the `now` the trait passes (each node's own monotonic clock) is not used;
//! `published_at_ms` is the publishing node's wall clock.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink, PubSubStream};
use ::redis::{AsyncCommands, Client, FromRedisValue, Msg, RedisError, Script};
use ferry_protocol::bounded::{MAX_SAFE_INTEGER, UInt};
use ferry_protocol::presence::{Claimed, Holder, MAX_MEMBER_PAGE};
use ferry_protocol::replay::Retention;
use ferry_protocol::server::Grant;
use ferry_protocol::tables::defaults;
use ferry_protocol::{
    ChannelName, EncodedEvent, EncodedPresence, Epoch, Event, Exclusive, HistoryResponse,
    IdempotencyKey, Member, MessageId, MethodName, Payload, Permission, PresenceInfo,
    PublishResponse, RecoveryGap, Seq, SessionId, StreamPosition, Ticket, Timestamp, UnixMillis,
    UserId,
};
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::memory::{hex, random_epoch, recovery, stored_event};
use super::{
    Broker, BrokerError, Feed, MAX_HISTORY_LIMIT, MembersRead, PresentSession, SharedCall,
    SubscribeReply,
};
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
/// The presence script.
const PRESENCE_LUA: &str = include_str!("presence.lua");
/// The hold script.
const HOLD_LUA: &str = include_str!("hold.lua");

/// The shortest time a live session's presence entry, or a hold, lasts unless refreshed,
/// whatever `presence_leave_after` says: refreshing more often than every third of it would
/// load Redis for nothing.
const MIN_PRESENCE_LEASE: Duration = Duration::from_secs(1);

/// How long after a lapsed session's leave is due its node still sweeps the channel, in case
/// no other node does.
const LAPSE_SWEEP_GRACE: Duration = Duration::from_secs(10);

/// The most sessions one sweep of a channel drops in one script call.
const SWEEP_BATCH: usize = 512;

/// How many channels are swept or refreshed at once.
const CONCURRENT_CHANNELS: usize = 16;

/// The prefix of a take-over notice on a channel's topic.
const TAKE_OVER: &str = "take_over ";

/// The prefix of a presence frame on a channel's topic.
const PRESENCE_FRAME: &str = r#"{"type":"presence","#;

/// How long a node's hold on a connection slot lasts unless renewed: a node that dies gives
/// its sessions' slots back after at most this long.
const SLOT_LEASE: Duration = Duration::from_secs(30);

/// How often a node renews the leases of its sessions' slots.
const SLOT_RENEW_EVERY: Duration = Duration::from_secs(10);

/// The slots this node's sessions hold, by the key of their user's sorted set.
type HeldSlots = parking_lot::Mutex<HashMap<String, HashSet<String>>>;

/// What this node keeps of its sessions' presence and holds, for their refresh, the sweep and
/// the take-overs it must tell its feeds of.
#[derive(Debug, Default)]
struct Local {
    /// The fields (`<node id>/<session id>`) of this node's present sessions that have not
    /// lapsed, by channel.
    present: HashMap<ChannelName, HashSet<String>>,
    /// This node's holds, by channel.
    holds: HashMap<ChannelName, LocalHold>,
    /// The channels where a session of this node lapsed, swept until the instant given.
    lapsing: HashMap<ChannelName, tokio::time::Instant>,
    /// The feeds of the channels this node follows.
    feeds: HashMap<ChannelName, Arc<Feed>>,
}

/// The leaves this node has left to the background, in the order they were issued. A members
/// read waits for those issued before it, so that a session whose unsubscribe was answered is
/// not read as present on its own node (FERRY-PRESENCE-1).
#[derive(Debug, Default)]
struct Leaves {
    /// The next leave's number, and the numbers of those still running.
    running: parking_lot::Mutex<(u64, std::collections::BTreeSet<u64>)>,
    finished: tokio::sync::Notify,
}

/// One leave in the background; it counts as finished when dropped, run or not.
struct Leaving {
    leaves: Arc<Leaves>,
    number: u64,
}

impl Leaves {
    fn start(self: &Arc<Self>) -> Leaving {
        let mut running = self.running.lock();
        let number = running.0;
        running.0 += 1;
        running.1.insert(number);
        Leaving {
            leaves: self.clone(),
            number,
        }
    }

    /// Returns once every leave started before this call has finished.
    async fn settled(&self) {
        let before = self.running.lock().0;
        loop {
            let finished = self.finished.notified();
            tokio::pin!(finished);
            finished.as_mut().enable();
            if self.running.lock().1.first().is_none_or(|&n| n >= before) {
                return;
            }
            finished.await;
        }
    }
}

impl Drop for Leaving {
    fn drop(&mut self) {
        self.leaves.running.lock().1.remove(&self.number);
        self.leaves.finished.notify_waiters();
    }
}

/// A hold of a session of this node.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LocalHold {
    field: String,
    user: UserId,
    fence: u64,
}

type SharedLocal = parking_lot::Mutex<Local>;

/// The presence and hold scripts, and what running them takes: cheap to clone into a task.
#[derive(Clone)]
struct Scripts {
    conn: ConnectionManager,
    keys: Keys,
    presence: Script,
    hold: Script,
}

impl Scripts {
    /// Runs the presence script's `op` on `channel` with `args`.
    async fn presence<T: FromRedisValue>(
        &self,
        channel: &ChannelName,
        op: &str,
        args: &[&str],
    ) -> Result<T, RedisError> {
        let mut invocation = self.presence.prepare_invoke();
        for key in self.keys.presence(channel) {
            invocation.key(key);
        }
        invocation
            .arg(op)
            .arg(channel.as_str())
            .arg(self.keys.topic(channel))
            .arg(random_epoch().as_str());
        for arg in args {
            invocation.arg(*arg);
        }
        invocation.invoke_async(&mut self.conn.clone()).await
    }

    /// Runs the hold script's `op` on `channel` with `args`.
    async fn hold<T: FromRedisValue>(
        &self,
        channel: &ChannelName,
        op: &str,
        args: &[&str],
    ) -> Result<T, RedisError> {
        let mut invocation = self.hold.key(self.keys.hold(channel));
        invocation
            .key(self.keys.fence(channel))
            .arg(op)
            .arg(channel.as_str())
            .arg(self.keys.topic(channel));
        for arg in args {
            invocation.arg(*arg);
        }
        invocation.invoke_async(&mut self.conn.clone()).await
    }

    /// Runs `work` in the background, if there is a runtime to run it on; a call that cannot
    /// reach Redis is left to the leases.
    fn spawn<F>(&self, work: impl FnOnce(Self) -> F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(work(self.clone()));
        }
    }
}

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
    /// How long a session whose connection ended without leaving stays present
    /// (FERRY-PRESENCE-4), and how long after its node's last refresh a session's presence or
    /// a hold lapses when the node stops (FERRY-HOLD-4; at least 1 s for those).
    pub presence_leave_after: Duration,
}

impl RedisBrokerConfig {
    /// The defaults for Redis at `url`: prefix [`DEFAULT_REDIS_PREFIX`], the given retention,
    /// the default dedup window (2 minutes, or the retention's age if longer) and the default
    /// `presence_leave_after` (30 s).
    pub fn new(url: impl Into<String>, retention: Retention) -> Self {
        Self {
            url: url.into(),
            prefix: DEFAULT_REDIS_PREFIX.to_owned(),
            retention,
            dedup_window: Duration::from_millis(defaults::DEDUP_WINDOW_MS).max(retention.max_age),
            presence_leave_after: Duration::from_millis(defaults::PRESENCE_LEAVE_AFTER_MS),
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

    fn in_channel(&self, channel: &ChannelName, name: &str) -> String {
        format!("{}{{{}}}:{name}", self.prefix, channel.as_str())
    }

    /// The keys of the presence script, in its order: sessions, lapses, members, infos, users,
    /// the state hash and the stream.
    fn presence(&self, channel: &ChannelName) -> [String; 7] {
        [
            self.in_channel(channel, "presence"),
            self.in_channel(channel, "lapses"),
            self.in_channel(channel, "members"),
            self.in_channel(channel, "infos"),
            self.in_channel(channel, "users"),
            self.state(channel),
            self.events(channel),
        ]
    }

    fn hold(&self, channel: &ChannelName) -> String {
        self.in_channel(channel, "hold")
    }

    fn fence(&self, channel: &ChannelName) -> String {
        self.in_channel(channel, "fence")
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
    scripts: Scripts,
    local: Arc<SharedLocal>,
    leaves: Arc<Leaves>,
    presence_leave_after: Duration,
    /// How long a live session's presence entry and a hold last unless refreshed.
    presence_lease: Duration,
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
        let local = Arc::new(SharedLocal::default());
        let task = LiveTask {
            client: live_client,
            conn: conn.clone(),
            keys: keys.clone(),
            followed: HashMap::new(),
            link: None,
            failures: 0,
            local: Arc::downgrade(&local),
        };
        tokio::spawn(task.run(commands));
        let held_slots = Arc::new(HeldSlots::default());
        let slots_script = Script::new(SLOTS_LUA);
        tokio::spawn(renew_slots(
            conn.clone(),
            slots_script.clone(),
            Arc::downgrade(&held_slots),
        ));
        let scripts = Scripts {
            conn: conn.clone(),
            keys: keys.clone(),
            presence: Script::new(PRESENCE_LUA),
            hold: Script::new(HOLD_LUA),
        };
        let presence_lease = config.presence_leave_after.max(MIN_PRESENCE_LEASE);
        tokio::spawn(refresh_presence(
            scripts.clone(),
            presence_lease,
            Arc::downgrade(&local),
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
            scripts,
            local,
            leaves: Arc::default(),
            presence_leave_after: config.presence_leave_after,
            presence_lease,
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

    /// How long a session whose connection ended without leaving stays present.
    pub fn presence_leave_after(&self) -> Duration {
        self.presence_leave_after
    }

    /// The name of `session` of this node in presence and hold records.
    fn field(&self, session: &SessionId) -> String {
        format!("{}/{}", self.message_prefix, session.as_str())
    }

    fn next_message_id(&self) -> Result<MessageId, BrokerError> {
        let number = self.next_message.fetch_add(1, Ordering::Relaxed);
        MessageId::try_from(format!("{}-{number}", self.message_prefix).as_str())
            .map_err(|_| BrokerError::Internal("a generated message id broke the pattern".into()))
    }

    /// Runs the publish script; under the hold with `fence`, if given (FERRY-HOLD-3).
    async fn publish_under(
        &self,
        channel: &ChannelName,
        key: IdempotencyKey,
        payload: Payload,
        fence: Option<u64>,
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
            .key(self.keys.hold(channel))
            .arg(random_epoch().as_str())
            .arg(message_id.as_str())
            .arg(&frame.before_epoch)
            .arg(&frame.before_seq)
            .arg(&frame.after_seq)
            .arg(self.retention.max_events)
            .arg(duration_ms(self.retention.max_age))
            .arg(duration_ms(self.dedup_window).max(1))
            .arg(self.keys.topic(channel))
            .arg(fence.map_or_else(String::new, |fence| fence.to_string()))
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
            Some("not_holder") => Err(BrokerError::NotHolder),
            _ => Err(short()),
        }
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
        self.publish_under(channel, key, payload, None, published_at_ms)
            .await
    }

    async fn publish_fenced(
        &self,
        channel: &ChannelName,
        key: IdempotencyKey,
        payload: Payload,
        fence: u64,
        _now: Timestamp,
        published_at_ms: u64,
    ) -> Result<PublishResponse, BrokerError> {
        self.publish_under(channel, key, payload, Some(fence), published_at_ms)
            .await
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
                feed: Arc::clone(&feed),
                done,
            })
            .map_err(|_| BrokerError::Internal("the pub/sub task stopped".into()))?;
        answer
            .await
            .map_err(|_| BrokerError::Internal("the pub/sub task stopped".into()))??;
        self.local.lock().feeds.insert(channel.clone(), feed);
        Ok(())
    }

    fn unfollow(&self, channel: &ChannelName, feed: &Arc<Feed>, _now: Timestamp) {
        {
            let mut local = self.local.lock();
            if local
                .feeds
                .get(channel)
                .is_some_and(|followed| Arc::ptr_eq(followed, feed))
            {
                local.feeds.remove(channel);
            }
        }
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

    async fn join_presence(
        &self,
        channel: &ChannelName,
        present: PresentSession,
        _now: Timestamp,
    ) -> Result<(), BrokerError> {
        let field = self.field(&present.session);
        let info = match &present.info {
            Some(info) => serde_json::to_string(info).map_err(|e| {
                BrokerError::Internal(format!("a presence info does not encode: {e}"))
            })?,
            None => String::new(),
        };
        let lease = duration_ms(self.presence_lease).to_string();
        let _joined: i64 = self
            .scripts
            .presence(
                channel,
                "join",
                &[&field, present.user.as_str(), &info, &lease],
            )
            .await
            .map_err(unavailable)?;
        self.local
            .lock()
            .present
            .entry(channel.clone())
            .or_default()
            .insert(field);
        Ok(())
    }

    fn leave_presence(
        &self,
        channel: &ChannelName,
        session: &SessionId,
        _now: Timestamp,
    ) -> impl Future<Output = ()> + Send + 'static {
        let field = self.field(session);
        self.local.lock().forget_present(channel, &field);
        let channel = channel.clone();
        let leaving = self.leaves.start();
        let (recorded, was_recorded) = tokio::sync::oneshot::channel::<()>();
        // In a task of its own, so that it completes whether or not the caller waits; if Redis
        // cannot be told, the entry expires as a lapse would.
        self.scripts.spawn(|scripts| async move {
            if let Err(error) = scripts.presence::<i64>(&channel, "leave", &[&field]).await {
                debug!(channel = channel.as_str(), %error, "cannot record a leave; the entry lapses");
            }
            drop(leaving);
            let _ = recorded.send(());
        });
        async move {
            // An error only says the task is gone (no runtime, or it ended): nothing to wait for.
            let _ = was_recorded.await;
        }
    }

    fn lapse_presence(&self, channel: &ChannelName, session: &SessionId, _now: Timestamp) {
        let field = self.field(session);
        {
            let mut local = self.local.lock();
            local.forget_present(channel, &field);
            let until = tokio::time::Instant::now() + self.presence_leave_after + LAPSE_SWEEP_GRACE;
            local.lapsing.insert(channel.clone(), until);
        }
        let channel = channel.clone();
        let leave_after = duration_ms(self.presence_leave_after).to_string();
        // In the background; if Redis cannot be told, the entry expires with its lease.
        self.scripts.spawn(|scripts| async move {
            if let Err(error) = scripts
                .presence::<i64>(&channel, "lapse", &[&field, &leave_after])
                .await
            {
                debug!(channel = channel.as_str(), %error, "cannot record a lapse; the entry expires with its lease");
            }
        });
    }

    async fn expire_presence(&self, _now: Timestamp) {
        let channels: HashSet<ChannelName> = {
            let mut local = self.local.lock();
            let now = tokio::time::Instant::now();
            local.lapsing.retain(|_, until| *until > now);
            local
                .present
                .keys()
                .chain(local.lapsing.keys())
                .cloned()
                .collect()
        };
        let batch = SWEEP_BATCH.to_string();
        let batch = batch.as_str();
        futures_util::stream::iter(channels)
            .for_each_concurrent(CONCURRENT_CHANNELS, |channel| async move {
                loop {
                    match self
                        .scripts
                        .presence::<usize>(&channel, "expire", &[batch])
                        .await
                    {
                        Ok(dropped) if dropped >= SWEEP_BATCH => {}
                        Ok(_) => return,
                        Err(error) => {
                            debug!(channel = channel.as_str(), %error, "cannot sweep a channel's presence; retrying at the next sweep");
                            return;
                        }
                    }
                }
            })
            .await;
    }

    async fn members(
        &self,
        channel: &ChannelName,
        after: Option<&UserId>,
        limit: usize,
        _now: Timestamp,
    ) -> Result<MembersRead, BrokerError> {
        let limit = limit.min(MAX_MEMBER_PAGE);
        self.leaves.settled().await;
        let answer: Vec<String> = self
            .scripts
            .presence(
                channel,
                "members",
                &[after.map_or("", |user| user.as_str()), &limit.to_string()],
            )
            .await
            .map_err(unavailable)?;
        let short = || BrokerError::Internal("a short answer from the presence script".into());
        let mut answer = answer.into_iter();
        let epoch = parse_epoch(&answer.next().ok_or_else(short)?)?;
        let seq = parse_seq(&answer.next().ok_or_else(short)?)?;
        let more = answer.next().ok_or_else(short)? == "1";
        let mut members = Vec::new();
        while let Some(user) = answer.next() {
            let (Some(sessions), Some(info)) = (answer.next(), answer.next()) else {
                return Err(short());
            };
            members.push(Member {
                info: parse_info(&info)?,
                sessions: UInt::new(parse_seq(&sessions)?.clamp(1, 1_000_000)).ok_or_else(
                    || BrokerError::Internal("a member's count is out of range".into()),
                )?,
                user: parse_user(&user)?,
            });
        }
        let next = if more {
            members.last().map(|member| member.user.clone())
        } else {
            None
        };
        Ok((members, next, position(&epoch, seq)?))
    }

    async fn claim_hold(
        &self,
        channel: &ChannelName,
        session: &SessionId,
        user: &UserId,
        asked: Option<u64>,
        mode: Exclusive,
        _now: Timestamp,
    ) -> Result<Claimed, BrokerError> {
        let field = self.field(session);
        let asked = asked.map_or_else(String::new, |fence| fence.to_string());
        let mode = match mode {
            Exclusive::Refuse => "refuse",
            Exclusive::TakeOver => "take_over",
        };
        let lease = duration_ms(self.presence_lease).to_string();
        let answer: Vec<String> = self
            .scripts
            .hold(
                channel,
                "claim",
                &[&field, user.as_str(), &asked, mode, &lease],
            )
            .await
            .map_err(unavailable)?;
        let short = || BrokerError::Internal("a short answer from the hold script".into());
        match answer.first().map(String::as_str) {
            Some("held") => Ok(Claimed::Held),
            Some("granted") => {
                let fence = parse_fence(answer.get(1).ok_or_else(short)?)?;
                let displaced = match (answer.get(2), answer.get(3), answer.get(4)) {
                    (Some(session), Some(user), Some(fence)) => Some(Holder {
                        session: parse_field(session)?,
                        user: parse_user(user)?,
                        fence: parse_fence(fence)?,
                    }),
                    _ => None,
                };
                self.local.lock().holds.insert(
                    channel.clone(),
                    LocalHold {
                        field,
                        user: user.clone(),
                        fence,
                    },
                );
                Ok(Claimed::Granted { fence, displaced })
            }
            _ => Err(short()),
        }
    }

    fn release_hold(&self, channel: &ChannelName, session: &SessionId, _now: Timestamp) {
        let field = self.field(session);
        {
            let mut local = self.local.lock();
            if local
                .holds
                .get(channel)
                .is_some_and(|hold| hold.field == field)
            {
                local.holds.remove(channel);
            }
        }
        let channel = channel.clone();
        let lease = duration_ms(self.presence_lease).to_string();
        // In the background; if Redis cannot be told, the hold lapses with its lease.
        self.scripts.spawn(|scripts| async move {
            if let Err(error) = scripts
                .hold::<i64>(&channel, "release", &[&field, &lease])
                .await
            {
                debug!(channel = channel.as_str(), %error, "cannot release a hold; it lapses with its lease");
            }
        });
    }
}

impl Local {
    /// `field` no longer refreshes its presence in `channel`.
    fn forget_present(&mut self, channel: &ChannelName, field: &str) {
        if let Some(fields) = self.present.get_mut(channel) {
            fields.remove(field);
            if fields.is_empty() {
                self.present.remove(channel);
            }
        }
    }
}

/// Refreshes, every third of `lease`, the presence entries of this node's live sessions and
/// its holds, until the broker is dropped. Sessions found gone (their entries expired while
/// Redis could not be reached) are forgotten; holds found gone are told to the channel's feed
/// as taken over, in case the notice on the topic was lost.
async fn refresh_presence(scripts: Scripts, lease: Duration, local: std::sync::Weak<SharedLocal>) {
    let mut every = tokio::time::interval(lease / 3);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    let lease = duration_ms(lease).to_string();
    loop {
        every.tick().await;
        let Some(shared) = local.upgrade() else {
            return;
        };
        let (present, holds) = {
            let held = shared.lock();
            let present: Vec<(ChannelName, Vec<String>)> = held
                .present
                .iter()
                .flat_map(|(channel, fields)| {
                    let fields: Vec<String> = fields.iter().cloned().collect();
                    fields
                        .chunks(SWEEP_BATCH)
                        .map(|chunk| (channel.clone(), chunk.to_vec()))
                        .collect::<Vec<_>>()
                })
                .collect();
            let holds: Vec<(ChannelName, LocalHold)> = held
                .holds
                .iter()
                .map(|(channel, hold)| (channel.clone(), hold.clone()))
                .collect();
            (present, holds)
        };
        drop(shared);
        let (scripts, local, lease) = (&scripts, &local, lease.as_str());
        futures_util::stream::iter(present)
            .for_each_concurrent(CONCURRENT_CHANNELS, |(channel, fields)| async move {
                let mut args = vec![lease];
                args.extend(fields.iter().map(String::as_str));
                match scripts
                    .presence::<Vec<String>>(&channel, "refresh", &args)
                    .await
                {
                    Ok(missing) if !missing.is_empty() => {
                        debug!(channel = channel.as_str(), sessions = missing.len(), "presence entries expired before their refresh");
                        if let Some(shared) = local.upgrade() {
                            let mut held = shared.lock();
                            for field in &missing {
                                held.forget_present(&channel, field);
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        debug!(channel = channel.as_str(), %error, "cannot refresh presence; retrying at the next round");
                    }
                }
            })
            .await;
        futures_util::stream::iter(holds)
            .for_each_concurrent(CONCURRENT_CHANNELS, |(channel, hold)| async move {
                let fence = hold.fence.to_string();
                let args = [hold.field.as_str(), &fence, hold.user.as_str(), lease];
                match scripts.hold::<i64>(&channel, "refresh", &args).await {
                    Ok(1) => {}
                    Ok(_) => {
                        let Some(shared) = local.upgrade() else {
                            return;
                        };
                        let feed = {
                            let mut held = shared.lock();
                            if held.holds.get(&channel) != Some(&hold) {
                                return;
                            }
                            held.holds.remove(&channel);
                            held.feeds.get(&channel).cloned()
                        };
                        info!(channel = channel.as_str(), fence = hold.fence, "a hold of this node passed to another session");
                        if let Some(feed) = feed {
                            feed.take_over(hold.fence);
                        }
                    }
                    Err(error) => {
                        debug!(channel = channel.as_str(), %error, "cannot refresh a hold; retrying at the next round");
                    }
                }
            })
            .await;
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
            .field("presence_leave_after", &self.presence_leave_after)
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

fn parse_fence(text: &str) -> Result<u64, BrokerError> {
    text.parse()
        .map_err(|_| BrokerError::Internal(format!("Redis holds the bad fence {text:?}")))
}

fn parse_user(text: &str) -> Result<UserId, BrokerError> {
    text.parse()
        .map_err(|_| BrokerError::Internal(format!("Redis holds the bad user {text:?}")))
}

/// The session of a presence or hold record's `<node id>/<session id>`.
fn parse_field(text: &str) -> Result<SessionId, BrokerError> {
    text.split_once('/')
        .and_then(|(_, session)| session.parse().ok())
        .ok_or_else(|| BrokerError::Internal(format!("Redis holds the bad session {text:?}")))
}

/// A member's info as the presence script answers it: `""` for none.
fn parse_info(text: &str) -> Result<Option<PresenceInfo>, BrokerError> {
    if text.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(text).map(Some).map_err(|e| {
        BrokerError::Internal(format!(
            "Redis holds a presence info that does not parse: {e}"
        ))
    })
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
    /// The broker's record of its sessions' presence, to tell which channels keep it.
    local: std::sync::Weak<SharedLocal>,
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
        for channel in &channels {
            self.catch_up(channel).await;
        }
        // Presence events published while the connection was down are lost, and no stream
        // holds them: the sessions of channels with presence resume, and read the members
        // again (FERRY-PRESENCE-6).
        let with_presence: Vec<ChannelName> = match self.local.upgrade() {
            Some(local) => {
                let local = local.lock();
                channels
                    .into_iter()
                    .filter(|channel| local.present.contains_key(channel))
                    .collect()
            }
            None => Vec::new(),
        };
        for channel in &with_presence {
            if let Some(followed) = self.followed.get(channel) {
                info!(
                    channel = channel.as_str(),
                    "presence events may be lost; the channel's sessions resume"
                );
                followed.feed.interrupt();
            }
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

    /// Hands a message on a channel's topic to the channel's feed: a live event after filling
    /// any hole before it, a presence event after the events up to its head, a take-over.
    async fn on_message(&mut self, message: &Msg) {
        let Ok(text) = std::str::from_utf8(message.get_payload_bytes()) else {
            warn!(
                topic = message.get_channel_name(),
                "a message on a Ferry topic is not UTF-8; ignored"
            );
            return;
        };
        if text.starts_with(PRESENCE_FRAME) {
            return self.on_presence(message, text).await;
        }
        if let Some(notice) = text.strip_prefix(TAKE_OVER) {
            return self.on_take_over(message, notice);
        }
        let event = match EncodedEvent::from_text(text.to_owned()) {
            Ok(event) => event,
            Err(_) => {
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

    /// Hands a presence event to its channel's feed. Its head says which events were published
    /// before it: any of them the feed has not had yet (their messages lost) are filled in from
    /// the stream first, so the feed gets them in the order they were recorded. Presence
    /// frames take no seq, so they leave the feed's last seq as it is.
    async fn on_presence(&mut self, message: &Msg, text: &str) {
        let Ok(presence) = EncodedPresence::from_text(text.to_owned()) else {
            warn!(
                topic = message.get_channel_name(),
                "a presence message on a Ferry topic does not parse; ignored"
            );
            return;
        };
        let channel = presence.presence().channel.clone();
        let Some(followed) = self.followed.get(&channel) else {
            return;
        };
        let head = &presence.presence().position;
        let behind = match &followed.last {
            Some((epoch, last)) if *epoch == head.epoch => Some(*last),
            Some(_) => None,
            None => Some(0),
        }
        .filter(|last| head.seq.get() > *last);
        if let Some(last) = behind {
            let epoch = head.epoch.clone();
            self.fill(&channel, &epoch, last, Some(head.seq.get()))
                .await;
        }
        if let Some(followed) = self.followed.get(&channel) {
            followed.feed.push_presence(&presence);
        }
    }

    /// Tells a channel's feed that the hold with the notice's fence passed to another session.
    fn on_take_over(&self, message: &Msg, notice: &str) {
        let parsed = notice.split_once(' ').and_then(|(fence, channel)| {
            Some((
                fence.parse::<u64>().ok()?,
                channel.parse::<ChannelName>().ok()?,
            ))
        });
        let Some((fence, channel)) = parsed else {
            warn!(
                topic = message.get_channel_name(),
                "a take-over notice on a Ferry topic does not parse; ignored"
            );
            return;
        };
        if let Some(followed) = self.followed.get(&channel) {
            followed.feed.take_over(fence);
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
