//! Presence and exclusive channels as pure data, for every side that keeps them.
//!
//! - [`Roster`]: one channel's members as a broker that keeps them itself holds them
//!   (FERRY-PRESENCE-1): sessions present, keyed by session, folded into members keyed by
//!   user; a session whose connection ended without leaving *lapses* and leaves later
//!   (FERRY-PRESENCE-4). Each change that makes or ends a member is a [`Change`], which the
//!   broker turns into a presence event (FERRY-PRESENCE-2).
//! - [`HoldSlot`]: who holds one exclusive channel, with its fencing token (FERRY-HOLD-1,
//!   FERRY-HOLD-2).
//! - [`MemberList`]: a client's copy of a channel's members, synchronised from member pages and
//!   presence events as FERRY-PRESENCE-6 says.
//! - [`EncodedPresence`]: a presence event with its frame, encoded once for every subscriber.
//!
//! Nothing here reads a clock: lapses are [`Timestamp`]s handed in.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use crate::shared::FrameText;
use crate::tables::defaults;
use crate::time::Timestamp;
use crate::types::{
    ChannelName, Fence, Member, MemberPage, Presence, PresenceChange, PresenceInfo, ServerMessage,
    SessionId, StreamPosition, UserId,
};

/// The largest presence info a subscribe may carry, in bytes of compact JSON
/// (FERRY-PRESENCE-5).
pub const MAX_INFO_BYTES: usize = defaults::MAX_PRESENCE_INFO_BYTES as usize;

/// The most members one member page holds, and what a members request without a limit asks
/// for (FERRY-PRESENCE-3).
pub const MAX_MEMBER_PAGE: usize = defaults::MAX_MEMBER_PAGE as usize;

/// The size of `info` as compact JSON, the measure of FERRY-PRESENCE-5.
pub fn info_bytes(info: &PresenceInfo) -> usize {
    serde_json::to_string(info).map_or(usize::MAX, |text| text.len())
}

/// A fence as the schema carries it: a whole number from 1 to 2^53 − 1.
pub fn fence(value: u64) -> Fence {
    Fence(
        crate::bounded::UInt::new(value.clamp(1, crate::bounded::MAX_SAFE_INTEGER))
            .expect("clamped within the schema's bounds"),
    )
}

/// What an exclusive namespace does with a hold asked while another session holds the channel
/// (FERRY-HOLD-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exclusive {
    /// The new hold is refused with `held`.
    Refuse,
    /// The new hold is granted, and the previous holder's session is closed with 4412.
    TakeOver,
}

/// A change of a channel's members: a user became a member, or stopped being one
/// (FERRY-PRESENCE-2).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The user's first present session joined; `info` is that session's.
    Join {
        /// The user.
        user: UserId,
        /// The info of the session that made the user a member.
        info: Option<PresenceInfo>,
    },
    /// The user's last present session left.
    Leave {
        /// The user.
        user: UserId,
    },
}

impl Change {
    /// The presence event of this change on `channel`, whose head was `position` when the
    /// change was recorded.
    pub fn event(self, channel: ChannelName, position: StreamPosition) -> Presence {
        let (change, user, info) = match self {
            Self::Join { user, info } => (PresenceChange::Join, user, info),
            Self::Leave { user } => (PresenceChange::Leave, user, None),
        };
        Presence {
            change,
            channel,
            info,
            position,
            user,
        }
    }
}

/// One session present in a channel.
#[derive(Debug, Clone, PartialEq)]
struct Present {
    user: UserId,
    /// When the session leaves, if its connection ended without leaving (FERRY-PRESENCE-4).
    lapses_at: Option<Timestamp>,
}

/// One member: how many of its sessions are present, and the info of the one that made it a
/// member.
#[derive(Debug, Clone, PartialEq)]
struct MemberState {
    sessions: u64,
    info: Option<PresenceInfo>,
}

/// One channel's members, kept by a broker that holds them itself (FERRY-PRESENCE-1).
///
/// Sessions join and leave; a user is a member while one of its sessions is present. A
/// session whose connection ended otherwise than by leaving [`lapse`](Self::lapse)s: it stays
/// present until its lapse time, so that its client reconnecting meanwhile causes no leave and
/// no join, and [`expire`](Self::expire) makes it leave then.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Roster {
    sessions: HashMap<SessionId, Present>,
    /// Ordered by user as UTF-8 bytes, the order of member pages.
    members: BTreeMap<UserId, MemberState>,
}

impl Roster {
    /// An empty roster.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether no session is present.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// How many users are members.
    pub fn members(&self) -> usize {
        self.members.len()
    }

    /// `session` of `user` is present, with `info`: a [`Change::Join`] if it makes `user` a
    /// member. A session already present stays so, and no longer lapses.
    pub fn join(
        &mut self,
        session: SessionId,
        user: UserId,
        info: Option<PresenceInfo>,
    ) -> Option<Change> {
        if let Some(present) = self.sessions.get_mut(&session) {
            present.lapses_at = None;
            return None;
        }
        self.sessions.insert(
            session,
            Present {
                user: user.clone(),
                lapses_at: None,
            },
        );
        if let Some(member) = self.members.get_mut(&user) {
            member.sessions += 1;
            return None;
        }
        self.members.insert(
            user.clone(),
            MemberState {
                sessions: 1,
                info: info.clone(),
            },
        );
        Some(Change::Join { user, info })
    }

    /// `session` is no longer present: a [`Change::Leave`] if it was its user's last. A session
    /// not present changes nothing.
    pub fn leave(&mut self, session: &SessionId) -> Option<Change> {
        let present = self.sessions.remove(session)?;
        let member = self.members.get_mut(&present.user)?;
        member.sessions -= 1;
        if member.sessions > 0 {
            return None;
        }
        self.members.remove(&present.user);
        Some(Change::Leave { user: present.user })
    }

    /// The connection of `session` ended without a leave: it leaves at `at`, unless it joins
    /// again first.
    pub fn lapse(&mut self, session: &SessionId, at: Timestamp) {
        if let Some(present) = self.sessions.get_mut(session) {
            present.lapses_at = Some(at);
        }
    }

    /// The earliest lapse time, when [`expire`](Self::expire) has work.
    pub fn next_lapse(&self) -> Option<Timestamp> {
        self.sessions.values().filter_map(|p| p.lapses_at).min()
    }

    /// Makes every session whose lapse time has come leave, earliest first; the changes they
    /// make, in that order.
    pub fn expire(&mut self, now: Timestamp) -> Vec<Change> {
        let mut due: Vec<(Timestamp, SessionId)> = self
            .sessions
            .iter()
            .filter_map(|(session, present)| {
                present
                    .lapses_at
                    .filter(|at| *at <= now)
                    .map(|at| (at, session.clone()))
            })
            .collect();
        due.sort();
        due.into_iter()
            .filter_map(|(_, session)| self.leave(&session))
            .collect()
    }

    /// One page of members: those whose user sorts after `after`, at most `limit` of them,
    /// and the `next` of the page (its last user when more follow).
    pub fn page(&self, after: Option<&UserId>, limit: usize) -> (Vec<Member>, Option<UserId>) {
        let from = match after {
            Some(after) => std::ops::Bound::Excluded(after),
            None => std::ops::Bound::Unbounded,
        };
        let mut rest =
            self.members
                .range((from, std::ops::Bound::Unbounded))
                .map(|(user, state)| Member {
                    info: state.info.clone(),
                    sessions: crate::bounded::UInt::new(state.sessions.min(1_000_000))
                        .expect("a member has at least one session"),
                    user: user.clone(),
                });
        let page: Vec<Member> = rest.by_ref().take(limit).collect();
        let next = if rest.next().is_some() {
            page.last().map(|member| member.user.clone())
        } else {
            None
        };
        (page, next)
    }
}

/// What [`HoldSlot::claim`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// The session holds the channel with this fence; `displaced` held it before and must be
    /// closed with 4412 (FERRY-HOLD-2).
    Granted {
        /// The new hold's fencing token.
        fence: u64,
        /// The previous holder, if the hold passed from one.
        displaced: Option<Holder>,
    },
    /// Another session holds the channel, and the namespace refuses a second hold.
    Held,
}

/// The session holding an exclusive channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The holding session.
    pub session: SessionId,
    /// Its user.
    pub user: UserId,
    /// Its hold's fencing token.
    pub fence: u64,
}

/// Who holds one exclusive channel, and the last fence given out (FERRY-HOLD-1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HoldSlot {
    holder: Option<Holder>,
    last_fence: u64,
}

impl HoldSlot {
    /// A channel nobody ever held.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current holder.
    pub fn holder(&self) -> Option<&Holder> {
        self.holder.as_ref()
    }

    /// `session` of `user` asks to hold the channel, carrying `asked`, the fence of its
    /// client's last hold: granted with a fence larger than every earlier one when nobody
    /// holds it, when `asked` is the holder's fence and `user` the holder's user (the client
    /// takes its own hold back), or when the namespace lets a new hold take over; [`Claimed::Held`]
    /// otherwise (FERRY-HOLD-2).
    pub fn claim(
        &mut self,
        session: SessionId,
        user: UserId,
        asked: Option<u64>,
        mode: Exclusive,
    ) -> Claimed {
        let displaced = match &self.holder {
            None => None,
            Some(holder) => {
                let own = asked == Some(holder.fence) && holder.user == user;
                if !own && mode == Exclusive::Refuse {
                    return Claimed::Held;
                }
                Some(holder.clone())
            }
        };
        self.last_fence = (self.last_fence + 1).min(crate::bounded::MAX_SAFE_INTEGER);
        let fence = self.last_fence;
        self.holder = Some(Holder {
            session,
            user,
            fence,
        });
        Claimed::Granted { fence, displaced }
    }

    /// Ends the hold of `session`, if it still holds the channel (FERRY-HOLD-4).
    pub fn release(&mut self, session: &SessionId) {
        if self
            .holder
            .as_ref()
            .is_some_and(|holder| holder.session == *session)
        {
            self.holder = None;
        }
    }

    /// Whether a publish carrying `fence` comes from the current hold (FERRY-HOLD-3).
    pub fn admits(&self, fence: u64) -> bool {
        self.holder
            .as_ref()
            .is_some_and(|holder| holder.fence == fence)
    }
}

/// A presence event together with its frame, encoded once for every session it goes to.
#[derive(Clone, PartialEq)]
pub struct EncodedPresence {
    presence: Arc<Presence>,
    text: FrameText,
}

impl EncodedPresence {
    /// Encodes `presence` into its frame.
    pub fn new(presence: Presence) -> Self {
        let message = ServerMessage::Presence(presence);
        let text = serde_json::to_string(&message).expect("generated messages always serialize");
        let ServerMessage::Presence(presence) = message else {
            unreachable!("the message was built as a presence event")
        };
        Self {
            presence: Arc::new(presence),
            text: FrameText::from(text),
        }
    }

    /// Parses a presence frame's JSON text, kept as it is, for frames that come back from a
    /// broker shared by several nodes. Fails on text that is not a `ServerMessage` of type
    /// `presence`.
    pub fn from_text(text: String) -> Result<Self, serde_json::Error> {
        match serde_json::from_str::<ServerMessage>(&text)? {
            ServerMessage::Presence(presence) => Ok(Self {
                presence: Arc::new(presence),
                text: FrameText::from(text),
            }),
            _ => Err(<serde_json::Error as serde::de::Error>::custom(
                "not a presence frame",
            )),
        }
    }

    /// The presence event.
    pub fn presence(&self) -> &Presence {
        &self.presence
    }

    /// The frame's JSON text.
    pub fn text(&self) -> &FrameText {
        &self.text
    }
}

impl fmt::Debug for EncodedPresence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncodedPresence")
            .field("channel", &self.presence.channel)
            .field("change", &self.presence.change)
            .field("user", &self.presence.user)
            .finish_non_exhaustive()
    }
}

/// A client's copy of one channel's members, kept as FERRY-PRESENCE-6 says: after each
/// subscribed reply it [`restart`](Self::restart)s, takes every member page, and applies on
/// top of them the presence events that arrived since the reply; from then on it applies each
/// event as it comes. Each event states a member's whole presence, so the copy equals the
/// server's members whatever the order in which pages and events crossed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemberList {
    members: BTreeMap<UserId, Member>,
    /// While a sync is under way: the pages read so far and the events since the reply.
    syncing: Option<Syncing>,
    synced: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Syncing {
    pages: BTreeMap<UserId, Member>,
    events: Vec<Presence>,
}

impl MemberList {
    /// A list that has never been synchronised.
    pub fn new() -> Self {
        Self::default()
    }

    /// A subscribed reply arrived: a new sync starts, and the events from now on are kept
    /// until its last page.
    pub fn restart(&mut self) {
        self.syncing = Some(Syncing::default());
    }

    /// Ends the sync under way without a result: the events it kept are dropped, and the list
    /// is no longer [`synced`](Self::is_synced) until the next sync ends.
    pub fn abandon(&mut self) {
        self.syncing = None;
        self.synced = false;
    }

    /// Whether a sync is under way.
    pub fn is_syncing(&self) -> bool {
        self.syncing.is_some()
    }

    /// Whether the list has been synchronised once: [`members`](Self::members) holds the
    /// server's members as of the last sync and the events since.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// Takes one member page of the sync under way; `true` when it was the last (its `next`
    /// is null) and the list now holds the members. A page outside a sync is ignored.
    pub fn page(&mut self, page: MemberPage) -> bool {
        let Some(sync) = self.syncing.as_mut() else {
            return false;
        };
        for member in page.members {
            sync.pages.insert(member.user.clone(), member);
        }
        if page.next.is_some() {
            return false;
        }
        let Some(sync) = self.syncing.take() else {
            return false;
        };
        self.members = sync.pages;
        for event in &sync.events {
            apply(&mut self.members, event);
        }
        self.synced = true;
        true
    }

    /// Takes one presence event: kept for the sync under way, or applied to the list; `true`
    /// when the list changed now.
    pub fn presence(&mut self, event: &Presence) -> bool {
        if let Some(sync) = self.syncing.as_mut() {
            sync.events.push(event.clone());
            return false;
        }
        self.synced && apply(&mut self.members, event)
    }

    /// The members, ordered by user.
    pub fn members(&self) -> impl ExactSizeIterator<Item = &Member> + '_ {
        self.members.values()
    }
}

/// Applies one presence event: a join sets the member with one session and its info, a leave
/// removes it. Returns whether the list changed.
///
/// A join finds its user absent when it is recorded, so a join for a user the list already
/// holds is one the list reflects already (a page read after it) and keeps the entry, whose
/// count of sessions is newer.
fn apply(members: &mut BTreeMap<UserId, Member>, event: &Presence) -> bool {
    match event.change {
        PresenceChange::Join => {
            if members.contains_key(&event.user) {
                return false;
            }
            let member = Member {
                info: event.info.clone(),
                sessions: crate::bounded::UInt::new(1).expect("1 is within 1..=1000000"),
                user: event.user.clone(),
            };
            members.insert(event.user.clone(), member);
            true
        }
        PresenceChange::Leave => members.remove(&event.user).is_some(),
    }
}

#[cfg(test)]
mod tests;
