//! Presence and exclusive channels in the server session (FERRY-PRESENCE-*, FERRY-HOLD-*).

use super::*;
use crate::presence::{EncodedPresence, Exclusive};
use crate::types::{Member, PresenceChange};

const ROOM: &str = "project:alpha:approvals";
const OUTPUT: &str = "project:alpha:output";

fn presence_config(mode: Exclusive) -> ServerConfig {
    config_with(|config| {
        config.presence = vec!["project:*:approvals".parse().expect("a pattern")].into();
        config.exclusive = vec![("project:*:output".parse().expect("a pattern"), mode)].into();
        config.presence_leave_after = Duration::from_millis(15_000);
    })
}

fn error_code(out: &[Out]) -> Vec<(Option<String>, ErrorCode)> {
    out.iter()
        .map(|out| match out {
            Out::Message(ServerMessage::Error(error)) => {
                (error.id.as_ref().map(|id| id.to_string()), error.error.code)
            }
            other => panic!("not an error: {other:?}"),
        })
        .collect()
}

/// The one item of `items`.
fn one<T: std::fmt::Debug>(items: Vec<T>) -> T {
    let [item] = <[T; 1]>::try_from(items).unwrap_or_else(|items| panic!("not one: {items:?}"));
    item
}

fn member(user: &str, sessions: u64) -> Member {
    Member {
        info: None,
        sessions: UInt::new(sessions).expect("sessions"),
        user: user.parse().expect("a user"),
    }
}

fn presence_event(user: &str) -> EncodedPresence {
    presence_event_with(user, None)
}

fn presence_event_with(user: &str, info: Option<crate::types::PresenceInfo>) -> EncodedPresence {
    EncodedPresence::new(crate::types::Presence {
        change: PresenceChange::Join,
        channel: channel(ROOM),
        info,
        position: position(EPOCH, 3),
        user: user.parse().expect("a user"),
    })
}

#[test]
fn the_welcome_advertises_leave_after_only_with_presence_namespaces() {
    let mut session = ServerSession::new(
        presence_config(Exclusive::Refuse),
        grant(),
        session_id(),
        at(0),
    );
    let Out::Message(ServerMessage::Welcome(welcome)) = one(drain(&mut session)) else {
        panic!("a welcome first");
    };
    assert_eq!(
        welcome.presence.as_ref().map(|p| p.leave_after_ms.get()),
        Some(15_000)
    );
    let mut plain = ServerSession::new(ServerConfig::default(), grant(), session_id(), at(0));
    let Out::Message(ServerMessage::Welcome(welcome)) = one(drain(&mut plain)) else {
        panic!("a welcome first");
    };
    assert_eq!(welcome.presence, None);
}

#[test]
fn a_subscribe_to_a_presence_channel_joins_with_its_info() {
    let mut session = session_with(presence_config(Exclusive::Refuse));
    send(
        &mut session,
        &format!(
            r#"{{"type":"subscribe","id":"s1","channel":"{ROOM}","info":{{"name":"Maria"}}}}"#
        ),
        1,
    );
    let Action::Subscribe { presence, hold, .. } = one(actions(&mut session)) else {
        panic!("one subscribe");
    };
    let info = presence.as_ref().and_then(|join| join.info.as_ref());
    assert_eq!(
        info.map(|i| i["name"].clone()),
        Some(serde_json::json!("Maria"))
    );
    assert_eq!(hold, None);
    subscribe(&mut session, "s2", "project:alpha:tasks", 2);
    let Action::Subscribe { presence, .. } = one(actions(&mut session)) else {
        panic!("one subscribe");
    };
    assert_eq!(presence, None, "a namespace without presence joins nothing");
}

#[test]
fn info_and_hold_are_refused_where_the_namespace_has_no_use_for_them() {
    let mut session = session_with(presence_config(Exclusive::Refuse));
    let big = "x".repeat(512 - 11 + 1);
    for (request, frame) in [
        (
            "i1",
            r#"{"type":"subscribe","id":"i1","channel":"project:alpha:tasks","info":{}}"#
                .to_owned(),
        ),
        (
            "i2",
            format!(
                r#"{{"type":"subscribe","id":"i2","channel":"{ROOM}","info":{{"name":"{big}"}}}}"#
            ),
        ),
        (
            "h1",
            format!(r#"{{"type":"subscribe","id":"h1","channel":"{ROOM}","hold":{{}}}}"#),
        ),
    ] {
        send(&mut session, &frame, 1);
        assert_eq!(
            error_code(&drain(&mut session)),
            vec![(Some(request.to_owned()), ErrorCode::BadRequest)],
            "{frame}"
        );
    }
    assert!(actions(&mut session).is_empty());
    // 512 bytes exactly is accepted: {"name":"…"} is 11 bytes around the string.
    let fits = "x".repeat(512 - 11);
    send(
        &mut session,
        &format!(
            r#"{{"type":"subscribe","id":"i3","channel":"{ROOM}","info":{{"name":"{fits}"}}}}"#
        ),
        2,
    );
    assert_eq!(actions(&mut session).len(), 1, "512 bytes of info fit");
}

#[test]
fn members_is_checked_in_the_order_of_the_rule() {
    let mut session = session_with(presence_config(Exclusive::Refuse));
    for (request, frame, code) in [
        (
            "m1",
            r#"{"type":"members","id":"m1","channel":"project:beta:approvals"}"#,
            ErrorCode::Forbidden,
        ),
        (
            "m2",
            r#"{"type":"members","id":"m2","channel":"project:alpha:approvals"}"#,
            ErrorCode::NotSubscribed,
        ),
    ] {
        send(&mut session, frame, 1);
        assert_eq!(
            error_code(&drain(&mut session)),
            vec![(Some(request.to_owned()), code)]
        );
    }
    hold(
        &mut session,
        "s1",
        "project:alpha:tasks",
        position(EPOCH, 0),
    );
    send(
        &mut session,
        r#"{"type":"members","id":"m3","channel":"project:alpha:tasks"}"#,
        2,
    );
    assert_eq!(
        error_code(&drain(&mut session)),
        vec![(Some("m3".to_owned()), ErrorCode::BadRequest)],
        "a subscribed channel without presence"
    );
    let mut declared = session_with(config_with(|config| {
        config.presence = vec!["project:*:approvals".parse().expect("a pattern")].into();
        config.namespaces = vec!["project:*:approvals".parse().expect("a pattern")].into();
    }));
    send(
        &mut declared,
        r#"{"type":"members","id":"m4","channel":"project:alpha:tasks"}"#,
        1,
    );
    assert_eq!(
        error_code(&drain(&mut declared)),
        vec![(Some("m4".to_owned()), ErrorCode::UnknownChannel)]
    );
}

#[test]
fn a_member_page_fits_max_message_bytes_and_names_where_it_stopped() {
    let mut session = session_with(config_with(|config| {
        config.presence = vec!["project:*:approvals".parse().expect("a pattern")].into();
        config.limits.max_message_bytes = UInt::new(1024).expect("the schema's least");
    }));
    send(
        &mut session,
        &format!(r#"{{"type":"subscribe","id":"s1","channel":"{ROOM}"}}"#),
        1,
    );
    actions(&mut session);
    session.subscribed(&id("s1"), position(EPOCH, 0), None, Vec::new());
    drain(&mut session);
    send(
        &mut session,
        &format!(r#"{{"type":"members","id":"m1","channel":"{ROOM}","limit":5000}}"#),
        2,
    );
    assert_eq!(
        error_code(&drain(&mut session)),
        vec![(None, ErrorCode::BadRequest)],
        "a limit above 1000 breaks the schema"
    );
    send(
        &mut session,
        &format!(r#"{{"type":"members","id":"m2","channel":"{ROOM}"}}"#),
        3,
    );
    let Action::Members { limit, after, .. } = one(actions(&mut session)) else {
        panic!("one members action");
    };
    assert_eq!((limit, after), (1000, None));
    let many: Vec<Member> = (0..100)
        .map(|i| member(&format!("user-{i:04}"), 1))
        .collect();
    session.member_page(&id("m2"), many, None, position(EPOCH, 0));
    let Out::Message(ServerMessage::MemberPage(page)) = one(drain(&mut session)) else {
        panic!("one page");
    };
    assert!(
        !page.members.is_empty() && page.members.len() < 100,
        "{}",
        page.members.len()
    );
    assert_eq!(
        page.next.as_ref(),
        page.members.last().map(|m| &m.user),
        "the next page starts after the last member sent"
    );
    let text = serde_json::to_string(&ServerMessage::MemberPage(page.clone())).expect("json");
    assert!(text.len() <= 1024, "{}", text.len());
}

#[test]
fn a_presence_event_of_exactly_max_message_bytes_is_sent_and_a_larger_one_closes_with_1011() {
    // An event of `bytes` bytes: its info padded to make up the difference.
    let sized = |bytes: usize| {
        let note = |text: String| {
            let mut info = serde_json::Map::new();
            info.insert("note".into(), json!(text));
            presence_event_with("bob", Some(crate::types::PresenceInfo(info)))
        };
        let base = note(String::new()).text().len();
        note("x".repeat(bytes - base))
    };
    for (bytes, sent) in [(1024, true), (1025, false)] {
        let mut session = session_with(config_with(|config| {
            config.presence = vec!["project:*:approvals".parse().expect("a pattern")].into();
            config.limits.max_message_bytes = UInt::new(1024).expect("the schema's least");
        }));
        subscribe(&mut session, "s1", ROOM, 1);
        actions(&mut session);
        session.subscribed(&id("s1"), position(EPOCH, 3), None, Vec::new());
        drain(&mut session);
        let event = sized(bytes);
        assert_eq!(event.text().len(), bytes);
        session.deliver_presence(&event);
        match (one(drain(&mut session)), sent) {
            (Out::Message(ServerMessage::Presence(p)), true) => assert_eq!(p.user.as_str(), "bob"),
            (Out::Close(code), false) => assert_eq!(code, close_code::INTERNAL_ERROR),
            (other, _) => panic!("{bytes} bytes: {other:?}"),
        }
    }
}

#[test]
fn presence_events_reach_only_active_subscriptions() {
    let mut session = session_with(presence_config(Exclusive::Refuse));
    send(
        &mut session,
        &format!(r#"{{"type":"subscribe","id":"s1","channel":"{ROOM}"}}"#),
        1,
    );
    actions(&mut session);
    session.deliver_presence(&presence_event("early"));
    assert_eq!(
        drain(&mut session),
        vec![],
        "pending: the members read after the reply has it"
    );
    session.subscribed(&id("s1"), position(EPOCH, 3), None, Vec::new());
    drain(&mut session);
    session.deliver_presence(&presence_event("bob"));
    let Out::Message(ServerMessage::Presence(event)) = one(drain(&mut session)) else {
        panic!("the event");
    };
    assert_eq!(event.user.as_str(), "bob");
    unsubscribe(&mut session, "u1", ROOM, 2);
    drain(&mut session);
    session.deliver_presence(&presence_event("carol"));
    assert_eq!(drain(&mut session), vec![]);
}

#[test]
fn only_the_holder_publishes_and_a_takeover_closes_it_with_4412() {
    let mut session = session_with(presence_config(Exclusive::TakeOver));
    publish(&mut session, "p1", OUTPUT, "k1", 1);
    assert_eq!(
        error_code(&drain(&mut session)),
        vec![(Some("p1".to_owned()), ErrorCode::Held)]
    );
    send(
        &mut session,
        &format!(r#"{{"type":"subscribe","id":"s1","channel":"{OUTPUT}","hold":{{"fence":7}}}}"#),
        2,
    );
    let Action::Subscribe { hold, .. } = one(actions(&mut session)) else {
        panic!("one subscribe");
    };
    assert_eq!(
        hold,
        Some(HoldClaim {
            fence: Some(7),
            mode: Exclusive::TakeOver
        })
    );
    session.subscribed_with_hold(&id("s1"), position(EPOCH, 0), None, Vec::new(), Some(8));
    let Out::Message(ServerMessage::Subscribed(reply)) = one(drain(&mut session)) else {
        panic!("subscribed");
    };
    assert_eq!(reply.hold.as_ref().map(|h| h.fence.get()), Some(8));
    publish(&mut session, "p2", OUTPUT, "k2", 3);
    let Action::Publish { fence, .. } = one(actions(&mut session)) else {
        panic!("one publish");
    };
    assert_eq!(fence, Some(8), "the publish carries the hold's fence");
    session.taken_over(&channel(OUTPUT), 7);
    assert_eq!(
        drain(&mut session),
        vec![],
        "an older hold's takeover is not this session's"
    );
    session.taken_over(&channel(OUTPUT), 8);
    assert_eq!(
        drain(&mut session),
        vec![Out::Close(close_code::TAKEN_OVER)]
    );
}

#[test]
fn an_unsubscribe_ends_the_hold() {
    let mut session = session_with(presence_config(Exclusive::Refuse));
    send(
        &mut session,
        &format!(r#"{{"type":"subscribe","id":"s1","channel":"{OUTPUT}","hold":{{}}}}"#),
        1,
    );
    actions(&mut session);
    session.subscribed_with_hold(&id("s1"), position(EPOCH, 0), None, Vec::new(), Some(1));
    drain(&mut session);
    assert_eq!(session.hold(&channel(OUTPUT)), Some(1));
    unsubscribe(&mut session, "u1", OUTPUT, 2);
    drain(&mut session);
    assert_eq!(session.hold(&channel(OUTPUT)), None);
    publish(&mut session, "p1", OUTPUT, "k1", 3);
    assert_eq!(
        error_code(&drain(&mut session)),
        vec![(Some("p1".to_owned()), ErrorCode::Held)]
    );
}
