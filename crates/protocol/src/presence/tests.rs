use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn session(s: &str) -> SessionId {
    SessionId::try_from(s).expect("a session id")
}

fn user(u: &str) -> UserId {
    UserId::try_from(u).expect("a user id")
}

fn info(name: &str) -> PresenceInfo {
    let serde_json::Value::Object(map) = serde_json::json!({ "name": name }) else {
        unreachable!()
    };
    PresenceInfo(map)
}

fn at(ms: u64) -> Timestamp {
    Timestamp::ZERO + Duration::from_millis(ms)
}

fn position(seq: u64) -> StreamPosition {
    StreamPosition {
        epoch: "ep-1".parse().expect("an epoch"),
        seq: crate::bounded::UInt::new(seq).expect("a seq").into(),
    }
}

fn channel() -> ChannelName {
    "room:a".parse().expect("a channel")
}

fn users(page: &[Member]) -> Vec<(&str, u64)> {
    page.iter()
        .map(|m| (m.user.as_str(), m.sessions.get()))
        .collect()
}

#[test]
fn a_user_with_three_tabs_joins_once_and_leaves_with_the_last() {
    let mut roster = Roster::new();
    let ada = user("ada");
    assert_eq!(
        roster.join(session("s1"), ada.clone(), Some(info("first"))),
        Some(Change::Join {
            user: ada.clone(),
            info: Some(info("first"))
        })
    );
    assert_eq!(
        roster.join(session("s2"), ada.clone(), Some(info("second"))),
        None
    );
    assert_eq!(roster.join(session("s3"), ada.clone(), None), None);
    let (page, next) = roster.page(None, 10);
    assert_eq!(users(&page), vec![("ada", 3)]);
    assert_eq!(
        page[0].info,
        Some(info("first")),
        "the info of the joining session"
    );
    assert_eq!(next, None);
    assert_eq!(roster.leave(&session("s1")), None);
    assert_eq!(roster.leave(&session("s3")), None);
    assert_eq!(
        roster.leave(&session("s3")),
        None,
        "a second leave changes nothing"
    );
    assert_eq!(
        roster.leave(&session("s2")),
        Some(Change::Leave { user: ada })
    );
    assert!(roster.is_empty());
}

#[test]
fn a_lapsed_session_leaves_at_its_time_unless_its_user_came_back() {
    let mut roster = Roster::new();
    roster.join(session("old"), user("ada"), None);
    roster.join(session("b1"), user("bob"), None);
    roster.lapse(&session("old"), at(30_000));
    roster.lapse(&session("b1"), at(20_000));
    assert_eq!(roster.next_lapse(), Some(at(20_000)));
    // Ada's client reconnects with a new session before the lapse: no join.
    assert_eq!(roster.join(session("new"), user("ada"), None), None);
    assert_eq!(roster.expire(at(19_999)), vec![]);
    assert_eq!(
        roster.expire(at(30_000)),
        vec![Change::Leave { user: user("bob") }],
        "bob leaves; ada's old session goes without a leave"
    );
    assert_eq!(users(&roster.page(None, 10).0), vec![("ada", 1)]);
    assert_eq!(roster.next_lapse(), None);
}

#[test]
fn pages_follow_the_byte_order_of_users_and_name_the_next() {
    let mut roster = Roster::new();
    for (i, name) in ["b", "a", "Z", "é", "c"].iter().enumerate() {
        roster.join(session(&format!("s{i}")), user(name), None);
    }
    let (first, next) = roster.page(None, 2);
    assert_eq!(users(&first), vec![("Z", 1), ("a", 1)]);
    assert_eq!(next, Some(user("a")));
    let (second, next) = roster.page(next.as_ref(), 2);
    assert_eq!(users(&second), vec![("b", 1), ("c", 1)]);
    let (last, next) = roster.page(next.as_ref(), 2);
    assert_eq!(users(&last), vec![("é", 1)]);
    assert_eq!(next, None, "no member follows the last page");
    let (exact, next) = roster.page(None, 5);
    assert_eq!(exact.len(), 5);
    assert_eq!(
        next, None,
        "a page that ends exactly at the last member has no next"
    );
}

#[test]
fn a_hold_is_refused_taken_over_or_taken_back_as_the_namespace_says() {
    let mut slot = HoldSlot::new();
    let Claimed::Granted {
        fence: first,
        displaced,
    } = slot.claim(session("d1"), user("daemon"), None, Exclusive::Refuse)
    else {
        panic!("a free channel is granted");
    };
    assert_eq!((first, displaced), (1, None));
    assert_eq!(
        slot.claim(session("d2"), user("daemon"), None, Exclusive::Refuse),
        Claimed::Held
    );
    assert_eq!(
        slot.claim(
            session("x"),
            user("mallory"),
            Some(first),
            Exclusive::Refuse
        ),
        Claimed::Held,
        "the fence alone is not enough: the user must be the holder's"
    );
    let Claimed::Granted {
        fence: second,
        displaced,
    } = slot.claim(
        session("d2"),
        user("daemon"),
        Some(first),
        Exclusive::Refuse,
    )
    else {
        panic!("the holder's own client takes its hold back");
    };
    assert_eq!(
        (second, displaced.map(|h| (h.session, h.fence))),
        (2, Some((session("d1"), 1)))
    );
    assert!(!slot.admits(first), "the old fence no longer publishes");
    assert!(slot.admits(second));
    let Claimed::Granted {
        fence: third,
        displaced,
    } = slot.claim(session("d3"), user("other"), None, Exclusive::TakeOver)
    else {
        panic!("take_over grants");
    };
    assert_eq!(
        (third, displaced.map(|h| (h.session, h.fence))),
        (3, Some((session("d2"), 2)))
    );
    slot.release(&session("d2"));
    assert!(
        slot.admits(third),
        "a displaced session's release does nothing"
    );
    slot.release(&session("d3"));
    assert_eq!(slot.holder(), None);
    let Claimed::Granted { fence, .. } =
        slot.claim(session("d4"), user("daemon"), None, Exclusive::Refuse)
    else {
        panic!("a released channel is granted");
    };
    assert_eq!(fence, 4, "fences only grow");
}

fn presence(change: PresenceChange, name: &str, seq: u64) -> Presence {
    Presence {
        change,
        channel: channel(),
        info: None,
        position: position(seq),
        user: user(name),
    }
}

fn page_of(members: &[(&str, u64)], next: Option<&str>) -> MemberPage {
    MemberPage {
        channel: channel(),
        id: "m".parse().expect("an id"),
        members: members
            .iter()
            .map(|(name, sessions)| Member {
                info: None,
                sessions: crate::bounded::UInt::new(*sessions).expect("sessions"),
                user: user(name),
            })
            .collect(),
        next: next.map(user),
        position: position(0),
    }
}

fn listed(list: &MemberList) -> Vec<(&str, u64)> {
    list.members()
        .map(|m| (m.user.as_str(), m.sessions.get()))
        .collect()
}

#[test]
fn events_that_cross_the_pages_are_applied_on_top_of_them() {
    let mut list = MemberList::new();
    list.restart();
    // Recorded before the first page was read: bob joined (the page has him, with 2 tabs by
    // then); carol left after the first page was read but before the second was.
    assert!(!list.presence(&presence(PresenceChange::Join, "bob", 1)));
    assert!(!list.page(page_of(&[("ada", 1), ("bob", 2)], Some("bob"))));
    assert!(!list.presence(&presence(PresenceChange::Leave, "ada", 1)));
    assert!(!list.presence(&presence(PresenceChange::Join, "dan", 2)));
    assert!(!list.is_synced());
    assert!(list.page(page_of(&[("carol", 1)], None)));
    assert!(list.is_synced());
    assert_eq!(listed(&list), vec![("bob", 2), ("carol", 1), ("dan", 1)]);
    assert!(list.presence(&presence(PresenceChange::Leave, "carol", 3)));
    assert!(!list.presence(&presence(PresenceChange::Leave, "carol", 3)));
    assert_eq!(listed(&list), vec![("bob", 2), ("dan", 1)]);
}

#[test]
fn a_new_subscribed_reply_starts_the_sync_over() {
    let mut list = MemberList::new();
    list.restart();
    list.page(page_of(&[("ada", 1)], None));
    list.restart();
    assert!(list.is_syncing());
    assert!(!list.presence(&presence(PresenceChange::Leave, "ada", 1)));
    assert_eq!(
        listed(&list),
        vec![("ada", 1)],
        "kept until the new sync ends"
    );
    assert!(list.page(page_of(&[], None)));
    assert_eq!(listed(&list), vec![]);
    assert!(
        !list.page(page_of(&[("zed", 1)], None)),
        "a page outside a sync is ignored"
    );
}

proptest! {
    /// FERRY-PRESENCE-6 against a model: whatever the interleaving of joins, leaves and the
    /// page reads, and wherever the page reads fall among them, the list ends with the
    /// roster's members.
    #[test]
    fn the_member_list_converges_on_the_roster(
        ops in proptest::collection::vec((0u8..6, 0u8..3, any::<bool>()), 1..60),
        page_size in 1usize..4,
        read_points in proptest::collection::vec(0usize..60, 0..6),
    ) {
        let mut roster = Roster::new();
        let mut list = MemberList::new();
        let mut delivered: Vec<Presence> = Vec::new();
        let mut reads = read_points.clone();
        reads.sort_unstable();
        let mut cursor: Option<UserId> = None;
        let mut started = false;
        let mut done = false;
        for (step, (s, u, joins)) in ops.iter().enumerate() {
            // Page reads at their points, each seeing the roster then.
            while !done && reads.first().is_some_and(|r| *r <= step) {
                reads.remove(0);
                if !started {
                    list.restart();
                    started = true;
                }
                let (members, next) = roster.page(cursor.as_ref(), page_size);
                let page = MemberPage {
                    channel: channel(),
                    id: "m".parse().expect("an id"),
                    members,
                    next: next.clone(),
                    position: position(0),
                };
                done = list.page(page);
                cursor = next;
            }
            let id = session(&format!("s{s}"));
            let who = user(&format!("u{}", s % 3 + u % 2));
            let change = if *joins { roster.join(id, who, None) } else { roster.leave(&id) };
            if let Some(change) = change {
                let event = change.event(channel(), position(0));
                if started {
                    list.presence(&event);
                }
                delivered.push(event);
            }
        }
        if !started {
            list.restart();
        }
        while !done {
            let (members, next) = roster.page(cursor.as_ref(), page_size);
            let page = MemberPage {
                channel: channel(),
                id: "m".parse().expect("an id"),
                members,
                next: next.clone(),
                position: position(0),
            };
            done = list.page(page);
            cursor = next;
        }
        let expected: Vec<String> = roster.page(None, usize::MAX).0.iter().map(|m| m.user.as_str().to_owned()).collect();
        let got: Vec<String> = list.members().map(|m| m.user.as_str().to_owned()).collect();
        prop_assert_eq!(got, expected);
    }
}

#[test]
fn info_is_measured_as_compact_json() {
    assert_eq!(info_bytes(&info("Ada")), r#"{"name":"Ada"}"#.len());
}

#[test]
fn a_presence_frame_round_trips_its_text() {
    let event = presence(PresenceChange::Join, "ada", 4);
    let encoded = EncodedPresence::new(event.clone());
    assert_eq!(encoded.presence(), &event);
    let parsed = EncodedPresence::from_text(encoded.text().as_str().to_owned()).expect("a frame");
    assert_eq!(parsed, encoded);
    assert!(EncodedPresence::from_text(r#"{"type":"ping","nonce":"n"}"#.to_owned()).is_err());
}
