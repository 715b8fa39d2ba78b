//! Presence and holds in the client session (FERRY-PRESENCE-6, FERRY-HOLD-5).

use super::*;
use crate::client::SubscribeOptions;

const ROOM: &str = "project:alpha:approvals";
const OUTPUT: &str = "daemon:ws-42:output";

fn last_members(h: &Harness) -> crate::types::Members {
    h.sent
        .iter()
        .rev()
        .find_map(|(_, m)| match m {
            ClientMessage::Members(m) => Some(m.clone()),
            _ => None,
        })
        .expect("a members request was sent")
}

fn page(id: &str, users: &[(&str, u64)], next: Option<&str>) -> Value {
    let members: Vec<Value> = users
        .iter()
        .map(|(user, sessions)| json!({ "user": user, "sessions": sessions }))
        .collect();
    json!({ "type": "member_page", "id": id, "channel": ROOM, "members": members,
            "next": next, "position": position("e1", 0) })
}

fn presence(change: &str, user: &str) -> Value {
    json!({ "type": "presence", "channel": ROOM, "change": change, "user": user,
            "position": position("e1", 0) })
}

fn members_events(h: &Harness) -> Vec<Vec<String>> {
    h.events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Members { members, .. } => {
                Some(members.iter().map(|m| m.user.to_string()).collect())
            }
            _ => None,
        })
        .collect()
}

fn tracking() -> SubscribeOptions {
    SubscribeOptions {
        members: true,
        ..SubscribeOptions::default()
    }
}

#[test]
fn members_are_read_page_by_page_with_the_events_since_the_reply_on_top() {
    let mut h = Harness::new(1);
    h.session.subscribe_with(channel(ROOM), 1, tracking());
    h.connect();
    h.welcome();
    h.subscribed(ROOM, position("e1", 0), None);
    let first = last_members(&h);
    assert_eq!(first.after, None);
    h.server(presence("join", "dan"));
    h.server(page(
        first.id.as_str(),
        &[("ada", 1), ("bob", 2)],
        Some("bob"),
    ));
    let second = last_members(&h);
    assert_eq!(second.after.as_ref().map(|u| u.as_str()), Some("bob"));
    h.server(presence("leave", "ada"));
    assert!(
        members_events(&h).is_empty(),
        "nothing before the last page"
    );
    assert!(h.session.members(&channel(ROOM)).is_none());
    h.server(page(second.id.as_str(), &[("carol", 1)], None));
    assert_eq!(members_events(&h), vec![vec!["bob", "carol", "dan"]]);
    assert!(
        !h.events
            .iter()
            .any(|e| matches!(e, ClientEvent::Presence(_))),
        "events of the sync are folded into the members"
    );
    h.server(presence("leave", "carol"));
    assert!(
        matches!(h.events.last(), Some(ClientEvent::Presence(p)) if p.user.as_str() == "carol")
    );
    let now: Vec<&str> = h
        .session
        .members(&channel(ROOM))
        .expect("synced")
        .map(|m| m.user.as_str())
        .collect();
    assert_eq!(now, vec!["bob", "dan"]);
    // The positions of the channel are not touched by presence events.
    assert_eq!(
        h.session
            .subscriptions()
            .find(|(c, _)| c.as_str() == ROOM)
            .and_then(|(_, p)| p.map(|p| p.seq.get())),
        Some(0)
    );
}

#[test]
fn a_reconnect_reads_the_members_again_and_info_goes_with_every_subscribe() {
    let mut h = Harness::new(2);
    let serde_json::Value::Object(info) = json!({ "name": "Maria" }) else {
        unreachable!()
    };
    h.session.subscribe_with(
        channel(ROOM),
        1,
        SubscribeOptions {
            info: Some(crate::types::PresenceInfo(info)),
            members: true,
            hold: false,
        },
    );
    h.connect();
    h.welcome();
    h.subscribed(ROOM, position("e1", 0), None);
    let first = last_members(&h);
    h.close(None);
    h.until_active();
    let connection = h.connection.expect("reconnected");
    let subscribes: Vec<_> = h
        .sent_on(connection)
        .into_iter()
        .filter_map(|m| match m {
            ClientMessage::Subscribe(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(subscribes.len(), 1);
    assert_eq!(
        subscribes[0].info.as_ref().map(|i| i["name"].clone()),
        Some(json!("Maria"))
    );
    // The first connection's members request went with it; its late answer is not taken.
    h.server(page(first.id.as_str(), &[("ghost", 1)], None));
    assert!(members_events(&h).is_empty());
    h.subscribed(
        ROOM,
        position("e1", 0),
        Some(json!({ "complete": true, "replayed": 0, "reason": null })),
    );
    let again = last_members(&h);
    assert_ne!(again.id, first.id);
    h.server(page(again.id.as_str(), &[("maria@example.com", 1)], None));
    assert_eq!(members_events(&h), vec![vec!["maria@example.com"]]);
}

#[test]
fn the_fence_of_the_last_hold_goes_with_the_next_subscribe_and_is_forgotten_on_unsubscribe() {
    let mut h = Harness::new(3);
    let hold = SubscribeOptions {
        hold: true,
        ..SubscribeOptions::default()
    };
    h.session.subscribe_with(channel(OUTPUT), 1, hold.clone());
    h.connect();
    h.welcome();
    let first = h.sent.iter().rev().find_map(|(_, m)| match m {
        ClientMessage::Subscribe(s) => Some(s.clone()),
        _ => None,
    });
    assert_eq!(first.and_then(|s| s.hold).map(|h| h.fence), Some(None));
    let id = h.last_subscribe_id(OUTPUT);
    h.server(json!({ "type": "subscribed", "id": id, "channel": OUTPUT,
                     "position": position("e1", 0), "hold": { "fence": 41 } }));
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, ClientEvent::Subscribed { hold: Some(41), .. }))
    );
    h.close(None);
    h.until_active();
    let again = h.sent.iter().rev().find_map(|(_, m)| match m {
        ClientMessage::Subscribe(s) => Some(s.clone()),
        _ => None,
    });
    assert_eq!(
        again
            .and_then(|s| s.hold)
            .and_then(|h| h.fence)
            .map(|f| f.get()),
        Some(41),
        "{}",
        rule::FERRY_HOLD_5
    );
    h.session.unsubscribe(&channel(OUTPUT), 1);
    h.session.subscribe_with(channel(OUTPUT), 1, hold);
    h.pump();
    let fresh = h.sent.iter().rev().find_map(|(_, m)| match m {
        ClientMessage::Subscribe(s) => Some(s.clone()),
        _ => None,
    });
    assert_eq!(fresh.and_then(|s| s.hold).map(|h| h.fence), Some(None));
}

#[test]
fn a_takeover_stops_the_session() {
    let mut h = Harness::new(4);
    h.connect();
    h.welcome();
    h.close(Some(close_code::TAKEN_OVER));
    assert!(matches!(
        h.session.state(),
        ClientState::Stopped(StopReason::Closed { code: 4412, .. })
    ));
}

#[test]
fn a_refused_members_request_is_reported_and_ends_the_sync() {
    let mut h = Harness::new(5);
    h.session.subscribe_with(channel(ROOM), 1, tracking());
    h.connect();
    h.welcome();
    h.subscribed(ROOM, position("e1", 0), None);
    let request = last_members(&h);
    h.server(
        json!({ "type": "error", "id": request.id.as_str(), "error": {
        "code": "bad_request", "message": "no presence", "retryable": false } }),
    );
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, ClientEvent::MembersFailed { .. }))
    );
    h.server(presence("join", "ada"));
    assert!(h.session.members(&channel(ROOM)).is_none());
}
