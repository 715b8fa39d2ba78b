//! The node's fan-out, keyed by channel: a channel's live events reach exactly the sessions on
//! this node that hold it (or have a subscribe to it in flight), so publishing to a channel with
//! k local subscribers costs O(k), whatever else the node holds.
//!
//! - [`Hub`] maps each channel that some local session holds to its [`Feed`]. The first session
//!   to join a channel creates the feed and asks the broker to [`follow`](Broker::follow) the
//!   channel (a Redis broker maps this to SUBSCRIBE); the last one to leave lets it go
//!   ([`unfollow`](Broker::unfollow)). A session joins *before* it reads the channel's head, so
//!   every event after that head reaches it (FERRY-SUBSCRIBE-2); the server session drops the
//!   ones at or before it, so none is sent twice.
//! - [`Feed::push`] hands one [`EncodedEvent`] (its frame encoded once, shared by reference
//!   count) to every subscriber's [`Mailbox`], and so do [`Feed::push_presence`] a presence
//!   event and [`Feed::take_over`] the news that a hold passed to another session.
//! - [`Mailbox`] is one session's bounded queue of events not yet written to its socket, in
//!   frames and in bytes ([`QueueLimits`]). A session that falls behind its limits has its queue
//!   dropped and is marked [`fell behind`](Mailbox::fell_behind); its connection closes it with
//!   4410 (`fell_behind`, FERRY-EVENT-6) and the client resumes from its last event. Nobody
//!   else waits for it: a push never blocks.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use ferry_protocol::{ChannelName, EncodedEvent, EncodedPresence, Timestamp};
use parking_lot::Mutex;
use tokio::sync::OnceCell;

use crate::broker::{Broker, BrokerError};
use crate::gate::Doorbell;

/// How much one session may have queued for its socket before it counts as fallen behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most event frames queued at once (at least 1).
    pub frames: usize,
    /// Most bytes of event frames queued at once. An event larger than this alone is still
    /// queued when the queue is empty, so that one large event never closes a session that
    /// keeps up.
    pub bytes: usize,
}

impl Default for QueueLimits {
    /// 4096 frames and 4 MiB.
    fn default() -> Self {
        Self {
            frames: 4096,
            bytes: 4 << 20,
        }
    }
}

/// One channel's live events on this node, handed out to the local sessions that hold it.
pub struct Feed {
    channel: ChannelName,
    subscribers: Mutex<Vec<Arc<Mailbox>>>,
    /// Set once the broker follows the channel for this feed.
    followed: OnceCell<()>,
}

impl Feed {
    pub(crate) fn new(channel: ChannelName) -> Self {
        Self {
            channel,
            subscribers: Mutex::new(Vec::new()),
            followed: OnceCell::new(),
        }
    }

    /// The channel this feed carries.
    pub fn channel(&self) -> &ChannelName {
        &self.channel
    }

    /// Hands `event` to every local subscriber of the channel. Brokers call this once per
    /// event, in seq order; it never blocks on a subscriber.
    pub fn push(&self, event: &EncodedEvent) {
        for mailbox in self.subscribers.lock().iter() {
            mailbox.push(event);
        }
    }

    /// Hands a presence event of the channel to every local subscriber (FERRY-PRESENCE-2).
    pub fn push_presence(&self, presence: &EncodedPresence) {
        for mailbox in self.subscribers.lock().iter() {
            mailbox.push_presence(presence);
        }
    }

    /// Tells every local subscriber that the hold of the channel with `fence` passed to
    /// another session: the one that holds it with that fence closes with 4412
    /// (FERRY-HOLD-2). Never dropped for a full queue.
    pub fn take_over(&self, fence: u64) {
        for mailbox in self.subscribers.lock().iter() {
            mailbox.take_over(&self.channel, fence);
        }
    }

    /// Tells every local subscriber that the channel's live events have a hole the broker
    /// cannot fill (or a new epoch): each session is closed with 4410 as one that fell behind,
    /// and its client resumes from its last event, getting the missed events or an explicit
    /// incomplete recovery (FERRY-RESUME-2), never a silent gap.
    pub fn interrupt(&self) {
        for mailbox in self.subscribers.lock().iter() {
            mailbox.interrupt();
        }
    }

    /// How many local sessions hold the channel.
    pub fn subscribers(&self) -> usize {
        self.subscribers.lock().len()
    }
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("channel", &self.channel)
            .field("subscribers", &self.subscribers())
            .finish()
    }
}

/// Every channel some session on this node holds, with its feed.
#[derive(Debug, Default)]
pub struct Hub {
    feeds: Mutex<HashMap<ChannelName, Arc<Feed>>>,
}

impl Hub {
    /// Adds `mailbox` to `channel`'s subscribers, creating the feed and having the broker follow
    /// the channel if it is the first. Returns once the broker follows it, so every event
    /// published from then on reaches the mailbox. On an error the mailbox is not a subscriber.
    pub async fn join<B: Broker>(
        &self,
        broker: &B,
        channel: &ChannelName,
        mailbox: &Arc<Mailbox>,
        now: Timestamp,
    ) -> Result<(), BrokerError> {
        let feed = {
            let mut feeds = self.feeds.lock();
            let feed = feeds
                .entry(channel.clone())
                .or_insert_with(|| Arc::new(Feed::new(channel.clone())));
            feed.subscribers.lock().push(Arc::clone(mailbox));
            Arc::clone(feed)
        };
        // Joiners of a feed being followed wait for that follow, so none reads a head before
        // the broker hands the channel's events to the feed.
        let followed = feed
            .followed
            .get_or_try_init(|| broker.follow(channel, Arc::clone(&feed), now))
            .await;
        if let Err(error) = followed {
            self.leave(broker, channel, mailbox, now);
            return Err(error);
        }
        Ok(())
    }

    /// Removes `mailbox` from `channel`'s subscribers; the last one to leave has the broker
    /// unfollow the channel. Leaving a channel not joined does nothing.
    pub fn leave<B: Broker>(
        &self,
        broker: &B,
        channel: &ChannelName,
        mailbox: &Arc<Mailbox>,
        now: Timestamp,
    ) {
        let mut feeds = self.feeds.lock();
        let Some(feed) = feeds.get(channel) else {
            return;
        };
        let emptied = {
            let mut subscribers = feed.subscribers.lock();
            if let Some(index) = subscribers.iter().position(|m| Arc::ptr_eq(m, mailbox)) {
                subscribers.swap_remove(index);
            }
            subscribers.is_empty()
        };
        if emptied && let Some(feed) = feeds.remove(channel) {
            // Under the hub's lock, so a new feed for the channel is followed only after this
            // one is let go.
            broker.unfollow(channel, &feed, now);
        }
    }

    /// How many channels this node follows.
    pub fn channels(&self) -> usize {
        self.feeds.lock().len()
    }
}

/// One session's bounded queue of live events, filled by feeds and emptied by its connection,
/// with the doorbell its connection waits on (a lock-free one: the connection waits again
/// after every delivery).
#[derive(Debug)]
pub struct Mailbox {
    limits: QueueLimits,
    queue: Mutex<Queue>,
    doorbell: Doorbell,
}

#[derive(Debug, Default)]
struct Queue {
    events: VecDeque<Delivery>,
    bytes: usize,
    fell_behind: bool,
    /// The holds that passed to another session, by channel and fence.
    taken_over: Vec<(ChannelName, u64)>,
}

/// What a feed hands a session: an event or a presence event, each a frame shared with every
/// session it goes to.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// An event of a channel.
    Event(EncodedEvent),
    /// A presence event of a channel.
    Presence(EncodedPresence),
}

impl Delivery {
    /// The frame's size in bytes, as the queue limits count it.
    fn len(&self) -> usize {
        match self {
            Self::Event(event) => event.len(),
            Self::Presence(presence) => presence.text().len(),
        }
    }
}

/// What [`Mailbox::take`] found besides the deliveries.
#[derive(Debug, Default)]
pub struct Taken {
    /// The session fell behind its limits and must close with 4410.
    pub fell_behind: bool,
    /// The holds of this session's channels that passed to another session, by channel and
    /// fence (FERRY-HOLD-2).
    pub taken_over: Vec<(ChannelName, u64)>,
}

/// A queue that held more than this many slots when it was emptied gives the memory back.
const KEEP_CAPACITY: usize = 64;

impl Mailbox {
    /// An empty mailbox with these limits.
    pub fn new(limits: QueueLimits) -> Self {
        Self {
            limits,
            queue: Mutex::new(Queue::default()),
            doorbell: Doorbell::new(false),
        }
    }

    /// Queues `event`, or marks the session fallen behind if the event would take the queue
    /// past its limits (and drops what it held: the client replays it on resume).
    pub fn push(&self, event: &EncodedEvent) {
        self.deliver(Delivery::Event(event.clone()));
    }

    /// Queues a presence event as [`push`](Self::push) queues an event, under the same limits.
    pub fn push_presence(&self, presence: &EncodedPresence) {
        self.deliver(Delivery::Presence(presence.clone()));
    }

    fn deliver(&self, delivery: Delivery) {
        let mut queue = self.queue.lock();
        if queue.fell_behind {
            return;
        }
        let was_empty = queue.events.is_empty();
        let over = queue.events.len() >= self.limits.frames.max(1)
            || (!was_empty && queue.bytes + delivery.len() > self.limits.bytes);
        if over {
            queue.fell_behind = true;
            queue.events = VecDeque::new();
            queue.bytes = 0;
        } else {
            queue.bytes += delivery.len();
            queue.events.push_back(delivery);
            if !was_empty {
                return;
            }
        }
        drop(queue);
        self.ring();
    }

    /// Records that the hold of `channel` with `fence` passed to another session, whatever
    /// the queue holds (see [`Feed::take_over`]).
    pub fn take_over(&self, channel: &ChannelName, fence: u64) {
        self.queue.lock().taken_over.push((channel.clone(), fence));
        self.ring();
    }

    /// Marks the session fallen behind whatever its queue holds (see [`Feed::interrupt`]), and
    /// drops what it held: the client replays it on resume.
    pub fn interrupt(&self) {
        let mut queue = self.queue.lock();
        queue.fell_behind = true;
        queue.events = VecDeque::new();
        queue.bytes = 0;
        drop(queue);
        self.ring();
    }

    /// Moves everything queued into `into` (which must be empty), without waiting, and says
    /// whether the session fell behind its limits (then nothing is moved, and the session must
    /// close with 4410) and which of its holds passed to others. The two buffers trade places,
    /// so a session that keeps up allocates nothing in the steady state; one left with a large
    /// buffer by a burst gives it back.
    pub fn take(&self, into: &mut VecDeque<Delivery>) -> Taken {
        debug_assert!(into.is_empty(), "take into an empty buffer");
        if into.capacity() > KEEP_CAPACITY {
            *into = VecDeque::new();
        }
        let mut queue = self.queue.lock();
        std::mem::swap(into, &mut queue.events);
        queue.bytes = 0;
        Taken {
            fell_behind: queue.fell_behind,
            taken_over: std::mem::take(&mut queue.taken_over),
        }
    }

    /// Whether the session fell behind its limits.
    pub fn fell_behind(&self) -> bool {
        self.queue.lock().fell_behind
    }

    /// Wakes the connection waiting in [`ready`](Self::ready), or the next one to wait: for
    /// something queued, or for news the connection finds elsewhere (a drain or a cut of the
    /// server, see [`Doorbells`]).
    pub fn ring(&self) {
        self.doorbell.ring();
    }

    /// Waits until the mailbox is rung: something may have been queued since the last
    /// [`take`](Self::take), the session fell behind, or the server has news. It can wake with
    /// nothing queued: callers take and look. One task waits on a mailbox at a time.
    pub async fn ready(&self) {
        std::future::poll_fn(|cx| self.doorbell.poll_rung(cx)).await;
    }
}

/// The mailbox of every session on the node, for news that concerns them all (a drain or a
/// cut): [`ring_all`](Self::ring_all) rings each, and each connection then reads the news from
/// the server's state. Waiting on one doorbell costs a session less, on every delivery, than
/// waiting on a second channel beside its mailbox.
#[derive(Debug, Default)]
pub struct Doorbells {
    mailboxes: Mutex<HashMap<usize, Arc<Mailbox>>>,
}

impl Doorbells {
    /// Adds `mailbox`, until the returned registration drops.
    pub fn register(self: &Arc<Self>, mailbox: &Arc<Mailbox>) -> Registration {
        let key = Arc::as_ptr(mailbox) as usize;
        self.mailboxes.lock().insert(key, Arc::clone(mailbox));
        Registration {
            doorbells: Arc::clone(self),
            key,
        }
    }

    /// Rings every registered mailbox.
    pub fn ring_all(&self) {
        for mailbox in self.mailboxes.lock().values() {
            mailbox.ring();
        }
    }
}

/// A mailbox's place among the [`Doorbells`]; dropping it takes the mailbox out.
#[derive(Debug)]
pub struct Registration {
    doorbells: Arc<Doorbells>,
    key: usize,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.doorbells.mailboxes.lock().remove(&self.key);
    }
}

#[cfg(test)]
mod tests;
