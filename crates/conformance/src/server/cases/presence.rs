//! Presence: who is in a channel (`--presence-channel`, with `--second-token` for a second
//! user). A user is a member while one of its sessions is subscribed, joins once however many
//! tabs it opens, leaves with its last session at once on an unsubscribe or a close frame and
//! `presence.leave_after_ms` after a connection that dropped, and not at all when it comes back
//! within that time; member pages are ordered by user and checked in the order FERRY-PRESENCE-3
//! gives; a subscribe's info is limited to 512 bytes, and info and hold only go where the
//! namespace declares presence or exclusive (FERRY-PRESENCE-1 to FERRY-PRESENCE-5,
//! FERRY-SUBSCRIBE-6).
//!
//! Each case watches the members from a session of the second user, so that what it sees of
//! the first user is never its own join. Delays are measured from the runner's own instants:
//! the instant before it dropped or closed a connection, so that a measured lapse can only come
//! out longer than the server's.

use std::time::Duration;

use ferry_protocol::{ErrorCode, MemberPage, Presence, PresenceChange, ServerMessage};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{cite, param, param_bool, param_code, param_u64, verdict};
use crate::case::{CaseResult, Finding};
use crate::server::checks::{a, error_info_problems, pos, summary};
use crate::server::ctx::{Ctx, REPLY_WAIT, Who, ms_between, setup, subscribe};
use crate::server::driver::Session;

/// How long a session listens for a presence event that must not come, after the change that
/// could have caused it was answered.
pub(super) const QUIET: Duration = Duration::from_millis(500);

/// How much sooner than `presence.leave_after_ms` after the runner dropped a connection its
/// leave may come: the server counts in whole milliseconds.
const EARLY_SLACK: Duration = Duration::from_millis(20);

/// How far beyond `presence.leave_after_ms` a lapse may end: the larger of 3 s and a quarter
/// of leave_after_ms, for a server that ends lapses on a timer of its own (ferry-server looks
/// every second), plus the tolerance on top.
pub(super) fn lapse_grace(leave_after: Duration) -> Duration {
    Duration::from_secs(3).max(leave_after / 4)
}

/// The advertised `presence.leave_after_ms` of a welcomed session.
pub(super) fn leave_after(ctx: &Ctx, session: &Session) -> Result<Duration, Finding> {
    match &session.welcome().presence {
        Some(policy) => Ok(Duration::from_millis(policy.leave_after_ms.get())),
        None => Err(Finding::fail(
            format!(
                "a welcome advertising presence.leave_after_ms, since the application declares a presence namespace ({}) (FERRY-PRESENCE-4)",
                ctx.options().presence_channel.as_deref().unwrap_or("?")
            ),
            "a welcome without presence".to_owned(),
        )),
    }
}

/// A presence info of exactly `bytes` bytes as compact JSON: `{"name":"xx…"}`.
pub(super) fn info_of(bytes: usize) -> Value {
    let overhead = r#"{"name":""}"#.len();
    json!({ "name": "x".repeat(bytes.saturating_sub(overhead)) })
}

/// Sends a subscribe to `channel` with the members of `extra` (info, hold, from) added, and
/// returns its id and its reply.
pub(super) async fn subscribe_with(
    session: &mut Session,
    channel: &str,
    extra: Value,
    expected: &str,
) -> Result<(String, ServerMessage), Finding> {
    let id = session.id("sub");
    let mut request = json!({ "type": "subscribe", "id": id, "channel": channel });
    if let (Some(request), Value::Object(extra)) = (request.as_object_mut(), extra) {
        request.extend(extra);
    }
    let reply = session.request(&request, REPLY_WAIT, expected).await?;
    Ok((id, reply))
}

/// Subscribes as a set-up step with `extra`; the reply must be subscribed.
pub(super) async fn subscribed_with(
    session: &mut Session,
    channel: &str,
    extra: Value,
) -> Result<ferry_protocol::Subscribed, Finding> {
    let expected = format!("a subscribed reply to a subscribe to {channel} with {extra}");
    match subscribe_with(session, channel, extra.clone(), &expected)
        .await
        .map_err(setup)?
    {
        (_, ServerMessage::Subscribed(subscribed)) => Ok(subscribed),
        (_, other) => Err(Finding::error(format!(
            "set-up: {expected} (the credential must grant read on the channel); got {}",
            a(&other)
        ))),
    }
}

/// Unsubscribes `session` from `channel` and waits for the reply.
pub(super) async fn unsubscribe(session: &mut Session, channel: &str) -> CaseResult {
    let id = session.id("unsub");
    let expected = format!("an unsubscribed reply to unsubscribe {id} from {channel}");
    let request = json!({ "type": "unsubscribe", "id": id, "channel": channel });
    match session.request(&request, REPLY_WAIT, &expected).await? {
        ServerMessage::Unsubscribed(_) => Ok(()),
        other => Err(Finding::fail(expected, a(&other))),
    }
}

/// Sends a members request and returns its id and reply.
async fn members(
    session: &mut Session,
    channel: &str,
    after: Option<&str>,
    limit: Option<u64>,
    expected: &str,
) -> Result<(String, ServerMessage), Finding> {
    let id = session.id("mem");
    let mut request = json!({ "type": "members", "id": id, "channel": channel });
    if let Some(after) = after {
        request["after"] = json!(after);
    }
    if let Some(limit) = limit {
        request["limit"] = json!(limit);
    }
    let reply = session.request(&request, REPLY_WAIT, expected).await?;
    Ok((id, reply))
}

/// One member page, which must come as the reply.
async fn page(
    session: &mut Session,
    channel: &str,
    after: Option<&str>,
    limit: Option<u64>,
    expected: &str,
) -> Result<MemberPage, Finding> {
    match members(session, channel, after, limit, expected).await? {
        (_, ServerMessage::MemberPage(page)) => Ok(page),
        (_, other) => Err(Finding::fail(expected, a(&other))),
    }
}

/// The page's members as failures show them: `[ada ×2 {"name":"a"}, grace ×1]`.
fn shown(page: &MemberPage) -> String {
    let members: Vec<String> = page
        .members
        .iter()
        .map(|m| {
            format!(
                "{} ×{}{}",
                m.user.as_str(),
                m.sessions.get(),
                m.info
                    .as_ref()
                    .map_or_else(String::new, |i| format!(" {}", Value::Object(i.0.clone())))
            )
        })
        .collect();
    format!(
        "[{}] next {}",
        members.join(", "),
        page.next.as_ref().map_or("null", |n| n.as_str())
    )
}

/// Whether `message` is a presence event of `channel` about `user`.
fn is_presence_of(message: &ServerMessage, channel: &str, user: &str) -> bool {
    matches!(message, ServerMessage::Presence(p) if p.channel.as_str() == channel && p.user.as_str() == user)
}

/// The next presence event of `channel` about `user` on `session`, within `wait`.
async fn next_presence(
    session: &mut Session,
    channel: &str,
    user: &str,
    wait: Duration,
    expected: &str,
) -> Result<(Presence, Instant), Finding> {
    let message = session
        .take(|m| is_presence_of(m, channel, user), wait, expected)
        .await?;
    let at = Instant::now();
    match message {
        ServerMessage::Presence(presence) => Ok((presence, at)),
        other => Err(Finding::error(format!(
            "the runner took {} for a presence event (a runner bug)",
            a(&other)
        ))),
    }
}

/// Fails unless no presence event of `channel` about `user` arrives within `wait`.
async fn no_presence(
    session: &mut Session,
    channel: &str,
    user: &str,
    wait: Duration,
    expected: &str,
) -> CaseResult {
    match session
        .take(|m| is_presence_of(m, channel, user), wait, expected)
        .await
    {
        Ok(message) => Err(Finding::fail(expected, a(&message))),
        // Silence is what the rule asks for; an end or a frame that does not decode is not.
        Err(Finding::Fail { observed, .. })
            if session.ended().is_none() && observed.starts_with("nothing within") =>
        {
            Ok(())
        }
        Err(other) => Err(other),
    }
}

/// What is wrong with `presence` as a `change` of `user` carrying `info` (none on a leave) and
/// the head `head`.
fn presence_problems(
    presence: &Presence,
    change: PresenceChange,
    info: Option<&Value>,
    head: &ferry_protocol::StreamPosition,
) -> Vec<String> {
    let mut problems = Vec::new();
    if presence.change != change {
        problems.push(format!("a {} where a {change} was due", presence.change));
    }
    let got = presence.info.as_ref().map(|i| Value::Object(i.0.clone()));
    if got.as_ref() != info {
        problems.push(format!(
            "the {} carries info {} instead of {}",
            presence.change,
            got.map_or_else(|| "none".into(), |v| v.to_string()),
            info.map_or_else(|| "none".into(), Value::to_string)
        ));
    }
    if &presence.position != head {
        problems.push(format!(
            "the {} carries {} where the channel's head, unchanged since the watcher subscribed, is {}",
            presence.change,
            pos(&presence.position),
            pos(head)
        ));
    }
    problems
}

/// A channel of the presence namespace, the watching session of the second user subscribed to
/// it with its head, and the first user's name.
async fn watched(ctx: &Ctx) -> Result<(String, Session, ferry_protocol::StreamPosition), Finding> {
    let channel = ctx.presence_channel(0)?;
    let mut watcher = ctx.session(Who::Second).await?;
    let subscribed = subscribe(&mut watcher, &channel).await?;
    Ok((channel, watcher, subscribed.position))
}

/// A welcome advertises presence.leave_after_ms when the application declares a presence
/// namespace, to every user: `--token`'s, and `--second-token`'s when given (FERRY-PRESENCE-4).
pub(super) async fn welcome_advertises_leave_after(ctx: Ctx) -> CaseResult {
    let session = ctx.session(Who::Main).await?;
    leave_after(&ctx, &session)?;
    if ctx.options().second_token.is_some() {
        let session = ctx.session(Who::Second).await?;
        leave_after(&ctx, &session)?;
    }
    Ok(())
}

/// One user with two sessions in a channel is one member: the watcher gets one join (with the
/// first session's info), none for the second session and none of a leave when the first goes,
/// and the member pages count its sessions (2, then 1) and keep the first session's info; the
/// leave comes with the last session's unsubscribe (FERRY-PRESENCE-1, -2, -3).
pub(super) async fn one_member_per_user(ctx: Ctx) -> CaseResult {
    let (channel, mut watcher, head) = watched(&ctx).await?;
    let watcher_user = watcher.welcome().user.as_str().to_owned();
    let (info_a, info_b) = (json!({ "name": "tab-a" }), json!({ "name": "tab-b" }));
    let mut tab_a = ctx.session(Who::Main).await?;
    let user = tab_a.welcome().user.as_str().to_owned();
    subscribed_with(&mut tab_a, &channel, json!({ "info": info_a })).await?;
    let expected = format!(
        "a join of {user} with the first tab's info {info_a} at the channel's head, once its first session subscribed to {channel} ({})",
        cite(&ctx)
    );
    let (join, _) = next_presence(&mut watcher, &channel, &user, REPLY_WAIT, &expected).await?;
    verdict(
        &expected,
        presence_problems(&join, PresenceChange::Join, Some(&info_a), &head),
    )?;
    let mut tab_b = ctx.session(Who::Main).await?;
    subscribed_with(&mut tab_b, &channel, json!({ "info": info_b })).await?;
    let expected = format!(
        "after {user}'s second session subscribed: a member page holding {user} with 2 sessions and the first session's info {info_a}, and {watcher_user} with 1 ({})",
        cite(&ctx)
    );
    let both = page(&mut watcher, &channel, None, None, &expected).await?;
    let counted = |page: &MemberPage, who: &str| {
        page.members
            .iter()
            .find(|m| m.user.as_str() == who)
            .map(|m| {
                (
                    m.sessions.get(),
                    m.info.as_ref().map(|i| Value::Object(i.0.clone())),
                )
            })
    };
    if counted(&both, &user) != Some((2, Some(info_a.clone())))
        || counted(&both, &watcher_user).map(|(n, _)| n) != Some(1)
    {
        return Err(Finding::fail(expected, shown(&both)));
    }
    unsubscribe(&mut tab_a, &channel).await?;
    let expected = format!(
        "after {user}'s first session unsubscribed: a member page holding {user} with 1 session, its info still the first session's {info_a}, since it has not left ({})",
        cite(&ctx)
    );
    let one = page(&mut watcher, &channel, None, None, &expected).await?;
    if counted(&one, &user) != Some((1, Some(info_a.clone()))) {
        return Err(Finding::fail(expected, shown(&one)));
    }
    unsubscribe(&mut tab_b, &channel).await?;
    let expected = format!(
        "the next presence event about {user} after its join is its leave, once its last session unsubscribed: a second tab joins nothing and the first tab's unsubscribe leaves nothing ({})",
        cite(&ctx)
    );
    let (leave, _) = next_presence(&mut watcher, &channel, &user, REPLY_WAIT, &expected).await?;
    verdict(
        &expected,
        presence_problems(&leave, PresenceChange::Leave, None, &head),
    )?;
    let expected = format!(
        "no presence event about {user} after its leave ({})",
        cite(&ctx)
    );
    no_presence(&mut watcher, &channel, &user, QUIET, &expected).await
}

/// A member's only session unsubscribes: the watcher gets its leave, which carries no info,
/// and the members no longer hold it (FERRY-PRESENCE-1, -2).
pub(super) async fn leave_on_unsubscribe(ctx: Ctx) -> CaseResult {
    let (channel, mut watcher, head) = watched(&ctx).await?;
    let mut member = ctx.session(Who::Main).await?;
    let user = member.welcome().user.as_str().to_owned();
    let info = json!({ "name": "leaving" });
    subscribed_with(&mut member, &channel, json!({ "info": info })).await?;
    let expected = format!("a join of {user} with its info {info} ({})", cite(&ctx));
    let (join, _) = next_presence(&mut watcher, &channel, &user, REPLY_WAIT, &expected).await?;
    verdict(
        &expected,
        presence_problems(&join, PresenceChange::Join, Some(&info), &head),
    )?;
    unsubscribe(&mut member, &channel).await?;
    let expected = format!(
        "a leave of {user}, without info, once its only session unsubscribed from {channel} ({})",
        cite(&ctx)
    );
    let (leave, _) = next_presence(&mut watcher, &channel, &user, REPLY_WAIT, &expected).await?;
    verdict(
        &expected,
        presence_problems(&leave, PresenceChange::Leave, None, &head),
    )?;
    let expected = format!(
        "after {user}'s leave, a member page without it ({})",
        cite(&ctx)
    );
    let after = page(&mut watcher, &channel, None, None, &expected).await?;
    if after.members.iter().any(|m| m.user.as_str() == user) {
        return Err(Finding::fail(expected, shown(&after)));
    }
    Ok(())
}

/// A member's only session ends with its client's close frame: the leave comes at once, not
/// `presence.leave_after_ms` later as for a connection that dropped (FERRY-PRESENCE-1, -2).
/// "At once" is judged as before leave_after_ms (at most 5 s) plus the tolerance has passed
/// since the runner began the closing handshake; with a leave_after_ms of 0 it cannot be told
/// apart from a lapse, and only the leave itself is checked.
pub(super) async fn leave_on_close_frame(ctx: Ctx) -> CaseResult {
    let (channel, mut watcher, head) = watched(&ctx).await?;
    let lapse = leave_after(&ctx, &watcher)?;
    let mut member = ctx.session(Who::Main).await?;
    let user = member.welcome().user.as_str().to_owned();
    subscribed_with(&mut member, &channel, json!({})).await?;
    let expected = format!("a join of {user} ({})", cite(&ctx));
    let (join, _) = next_presence(&mut watcher, &channel, &user, REPLY_WAIT, &expected).await?;
    verdict(
        &expected,
        presence_problems(&join, PresenceChange::Join, None, &head),
    )?;
    let by = lapse.min(REPLY_WAIT) + ctx.tolerance();
    ctx.t.note(
        "runner",
        "closing the member's session with a close frame (the closing handshake)",
    );
    let closed = Instant::now();
    drop(member);
    let expected = format!(
        "a leave of {user} within {} ms of its session's close frame: at once, not presence.leave_after_ms ({} ms) later as after a dropped connection ({})",
        by.as_millis(),
        lapse.as_millis(),
        cite(&ctx)
    );
    let (leave, at) = next_presence(&mut watcher, &channel, &user, by.max(REPLY_WAIT), &expected)
        .await
        .map_err(|finding| disturbed(finding, closed, ctx.tolerance()))?;
    verdict(
        &expected,
        presence_problems(&leave, PresenceChange::Leave, None, &head),
    )?;
    let took = at.saturating_duration_since(closed);
    if took > by {
        return late(&expected, "the leave", took, closed, at, ctx.tolerance());
    }
    Ok(())
}

/// A failure to see an event in time, made inconclusive when the runner's own timer woke late
/// by more than a quarter of the tolerance since `from`.
fn disturbed(finding: Finding, from: Instant, tolerance: Duration) -> Finding {
    let Finding::Fail { expected, observed } = finding else {
        return finding;
    };
    let lag = crate::lag::worst_between(from.into_std(), Instant::now().into_std());
    if lag > tolerance / 4 {
        return Finding::inconclusive(format!(
            "{observed}, while the runner's own timer woke up to {} ms late (more than a quarter of the tolerance): the machine was too busy to tell",
            lag.as_millis()
        ));
    }
    Finding::fail(expected, observed)
}

/// A measurement that came out late: a failure, or inconclusive when the runner's own timer
/// woke late by more than a quarter of the tolerance meanwhile.
fn late(
    expected: &str,
    what: &str,
    took: Duration,
    from: Instant,
    to: Instant,
    tolerance: Duration,
) -> CaseResult {
    let observed = format!("{what} came {} ms later", took.as_millis());
    let lag = crate::lag::worst_between(from.into_std(), to.into_std());
    if lag > tolerance / 4 {
        return Err(Finding::inconclusive(format!(
            "{observed}, while the runner's own timer woke up to {} ms late (more than a quarter of the tolerance): the machine was too busy to tell",
            lag.as_millis()
        )));
    }
    Err(Finding::fail(expected, observed))
}

/// A member whose connection drops without a close frame stays a member for
/// `presence.leave_after_ms`: its leave comes no sooner than that after the runner dropped the
/// connection, and no later than that plus the larger of 3 s and a quarter of it, plus the
/// tolerance (FERRY-PRESENCE-1, FERRY-PRESENCE-4).
pub(super) async fn dropped_connection_lapses(ctx: Ctx) -> CaseResult {
    let (channel, mut watcher, head) = watched(&ctx).await?;
    let lapse = leave_after(&ctx, &watcher)?;
    let grace = lapse_grace(lapse);
    ctx.within_budget(
        lapse + grace + ctx.tolerance(),
        &format!(
            "presence.leave_after_ms of {} ms, the {} ms a lapse may take beyond it and the tolerance",
            lapse.as_millis(),
            grace.as_millis()
        ),
    )?;
    let mut member = ctx.session(Who::Main).await?;
    let user = member.welcome().user.as_str().to_owned();
    subscribed_with(&mut member, &channel, json!({})).await?;
    let expected = format!("a join of {user} ({})", cite(&ctx));
    next_presence(&mut watcher, &channel, &user, REPLY_WAIT, &expected).await?;
    let cut = Instant::now();
    member.cut();
    let by = lapse + grace + ctx.tolerance();
    let expected = format!(
        "a leave of {user} no sooner than presence.leave_after_ms ({} ms) after its connection dropped without a close frame, and within {} ms of it ({})",
        lapse.as_millis(),
        by.as_millis(),
        cite(&ctx)
    );
    let (leave, at) = next_presence(&mut watcher, &channel, &user, by, &expected)
        .await
        .map_err(|finding| match finding {
            Finding::Fail { expected, observed } => disturbed(
                Finding::fail(
                    expected,
                    format!(
                        "{observed}, {} ms after the connection dropped",
                        ms_between(cut, Instant::now())
                    ),
                ),
                cut,
                ctx.tolerance(),
            ),
            other => other,
        })?;
    verdict(
        &expected,
        presence_problems(&leave, PresenceChange::Leave, None, &head),
    )?;
    let took = at.saturating_duration_since(cut);
    if took + EARLY_SLACK < lapse {
        return Err(Finding::fail(
            expected,
            format!(
                "the leave came {} ms after the connection dropped, before leave_after_ms",
                took.as_millis()
            ),
        ));
    }
    if took > by {
        return late(&expected, "the leave", took, cut, at, ctx.tolerance());
    }
    Ok(())
}

/// A member whose connection drops and which reconnects and subscribes again within
/// `presence.leave_after_ms` (resuming from its subscribed position, or not, by the `resume`
/// param) causes neither a leave nor a join: the watcher sees nothing of it until
/// leave_after_ms, the lapse's grace and the tolerance have passed since the drop, and it is
/// still a member then (FERRY-PRESENCE-4).
pub(super) async fn reconnect_within_leave_after(ctx: Ctx) -> CaseResult {
    let resume = param_bool(&ctx, "resume")?;
    let (channel, mut watcher, _) = watched(&ctx).await?;
    let lapse = leave_after(&ctx, &watcher)?;
    let grace = lapse_grace(lapse);
    let tolerance = ctx.tolerance();
    if lapse < 4 * tolerance {
        return Err(Finding::skip(format!(
            "the advertised presence.leave_after_ms of {} ms leaves no room to reconnect within it (the case needs at least four times the tolerance, {} ms): start the server with a longer one (ferry-server: --presence-leave-after-ms)",
            lapse.as_millis(),
            (4 * tolerance).as_millis()
        )));
    }
    ctx.within_budget(
        lapse + grace + tolerance,
        &format!(
            "presence.leave_after_ms of {} ms, the {} ms a lapse may take beyond it and the tolerance",
            lapse.as_millis(),
            grace.as_millis()
        ),
    )?;
    let mut member = ctx.session(Who::Main).await?;
    let user = member.welcome().user.as_str().to_owned();
    let first = subscribed_with(&mut member, &channel, json!({})).await?;
    let expected = format!("a join of {user} ({})", cite(&ctx));
    next_presence(&mut watcher, &channel, &user, REPLY_WAIT, &expected).await?;
    let cut = Instant::now();
    member.cut();
    let mut again = ctx.session(Who::Main).await?;
    let extra = if resume {
        json!({ "from": first.position })
    } else {
        json!({})
    };
    subscribed_with(&mut again, &channel, extra).await?;
    let back = ms_between(cut, Instant::now());
    if Duration::from_millis(u64::try_from(back).unwrap_or(u64::MAX)) + tolerance > lapse {
        return Err(Finding::inconclusive(format!(
            "the runner needed {back} ms to reconnect and subscribe again, too close to presence.leave_after_ms ({} ms) to tell whether it came back within it",
            lapse.as_millis()
        )));
    }
    ctx.t.note(
        "runner",
        format!("subscribed again {back} ms after the drop; watching for a leave or a join"),
    );
    let until = cut + lapse + grace + tolerance;
    let expected = format!(
        "neither a leave nor a join of {user}, whose connection dropped and which subscribed again {back} ms later ({}), within presence.leave_after_ms ({} ms), watched until {} ms after the drop ({})",
        if resume { "resuming" } else { "without from" },
        lapse.as_millis(),
        (lapse + grace + tolerance).as_millis(),
        cite(&ctx)
    );
    no_presence(
        &mut watcher,
        &channel,
        &user,
        until.saturating_duration_since(Instant::now()),
        &expected,
    )
    .await?;
    let expected = format!(
        "{user}, back within leave_after_ms, still a member ({})",
        cite(&ctx)
    );
    let members = page(&mut watcher, &channel, None, None, &expected).await?;
    if !members.members.iter().any(|m| m.user.as_str() == user) {
        return Err(Finding::fail(expected, shown(&members)));
    }
    Ok(())
}

/// Member pages are ordered by user as UTF-8 bytes and paged with limit and next: limit 1
/// gives the first user with next set to it, after it the second with next null, after the
/// last user nothing; each page carries the channel's head (FERRY-PRESENCE-3).
pub(super) async fn members_pages(ctx: Ctx) -> CaseResult {
    let (channel, mut watcher, head) = watched(&ctx).await?;
    let mut member = ctx.session(Who::Main).await?;
    let info = json!({ "name": "paged" });
    subscribed_with(&mut member, &channel, json!({ "info": info })).await?;
    let mut users = [
        member.welcome().user.as_str().to_owned(),
        watcher.welcome().user.as_str().to_owned(),
    ];
    users.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let [low, high] = &users;
    let mut problems = Vec::new();
    let mut check = |what: &str, page: &MemberPage, want: &[&str], next: Option<&str>| {
        let got: Vec<&str> = page.members.iter().map(|m| m.user.as_str()).collect();
        if got != want || page.next.as_ref().map(|n| n.as_str()) != next {
            problems.push(format!(
                "{what}: {} where [{}] next {} was due",
                shown(page),
                want.join(", "),
                next.unwrap_or("null")
            ));
        }
        if page.position != head {
            problems.push(format!(
                "{what} carries {} where the channel's head is {}",
                pos(&page.position),
                pos(&head)
            ));
        }
    };
    let expected = format!(
        "member pages ordered by user as UTF-8 bytes ({low} before {high}), paged by limit and next, at the channel's head {} ({})",
        pos(&head),
        cite(&ctx)
    );
    let all = page(&mut watcher, &channel, None, None, &expected).await?;
    check("the first page, no limit", &all, &[low, high], None);
    let first = page(&mut watcher, &channel, None, Some(1), &expected).await?;
    check("the first page of limit 1", &first, &[low], Some(low));
    let after = first
        .next
        .as_ref()
        .map_or(low.as_str(), |n| n.as_str())
        .to_owned();
    let second = page(&mut watcher, &channel, Some(&after), Some(1), &expected).await?;
    check("the page of limit 1 after its next", &second, &[high], None);
    let past = page(&mut watcher, &channel, Some(high), None, &expected).await?;
    check("the page after the last user", &past, &[], None);
    let paged = member.welcome().user.as_str().to_owned();
    if let Some(m) = all.members.iter().find(|m| m.user.as_str() == paged)
        && m.info.as_ref().map(|i| Value::Object(i.0.clone())) != Some(info.clone())
    {
        problems.push(format!(
            "{paged}'s member carries info {} instead of its session's {info}",
            m.info
                .as_ref()
                .map_or_else(|| "none".into(), |i| Value::Object(i.0.clone()).to_string())
        ));
    }
    verdict(expected, problems)
}

/// A members request is checked in the order FERRY-PRESENCE-3 gives: read permission
/// (forbidden), the declared namespaces (unknown_channel), the subscription (not_subscribed),
/// then a namespace without presence (bad_request). Each entry sends one request that fails
/// the check `code` names and the later ones (params `who`, `channel`, `state`), and expects
/// that code with its id; the session goes on.
pub(super) async fn members_check_order(ctx: Ctx) -> CaseResult {
    let who = param(&ctx, "who")?;
    let kind = param(&ctx, "channel")?;
    let state = param(&ctx, "state")?;
    let code = param_code(&ctx, "code")?;
    let who = match who {
        "restricted" => Who::Restricted,
        _ => Who::Main,
    };
    let mut session = ctx.session(who).await?;
    let channel = match kind {
        "forbidden" => ctx.forbidden_channel(session.welcome(), ferry_protocol::Access::Read)?,
        "outside" => ctx
            .options()
            .outside_channel
            .clone()
            .ok_or_else(|| Finding::skip("needs --outside-channel"))?,
        "presence" => ctx.presence_channel(0)?,
        _ => ctx.channel(0),
    };
    match state {
        "subscribed" => {
            subscribe(&mut session, &channel).await?;
        }
        "unsubscribed" => {
            subscribe(&mut session, &channel).await?;
            unsubscribe(&mut session, &channel).await.map_err(setup)?;
        }
        _ => {}
    }
    let expected = format!(
        "members on {channel} ({kind}, {state}) answered with an error with its id and code {code} ({})",
        cite(&ctx)
    );
    let (id, reply) = members(&mut session, &channel, None, None, &expected).await?;
    match &reply {
        ServerMessage::Error(e)
            if e.id.as_deref().map(String::as_str) == Some(id.as_str()) && e.error.code == code =>
        {
            verdict(&expected, error_info_problems(&e.error))?;
        }
        other => return Err(Finding::fail(expected, a(other))),
    }
    ctx.still_open(
        &mut session,
        "a refused members request does not end the session",
    )
    .await
}

/// A subscribe's info of `bytes` bytes as compact JSON: at most 512 is accepted, and the
/// members carry it as sent; one byte more is refused with bad_request and does not subscribe
/// (FERRY-PRESENCE-5).
pub(super) async fn info_size(ctx: Ctx) -> CaseResult {
    let bytes = usize::try_from(param_u64(&ctx, "bytes")?).unwrap_or(usize::MAX);
    let most = usize::try_from(ferry_protocol::tables::defaults::MAX_PRESENCE_INFO_BYTES)
        .unwrap_or(usize::MAX);
    let accepted = bytes <= most;
    let channel = ctx.presence_channel(0)?;
    let mut session = ctx.session(Who::Main).await?;
    let info = info_of(bytes);
    let user = session.welcome().user.as_str().to_owned();
    let expected = if accepted {
        format!(
            "a subscribe to {channel} whose info takes {bytes} bytes as compact JSON answered subscribed, and the member carrying that info ({})",
            cite(&ctx)
        )
    } else {
        format!(
            "a subscribe to {channel} whose info takes {bytes} bytes as compact JSON, over 512, answered with an error with its id and code bad_request, and not subscribed ({})",
            cite(&ctx)
        )
    };
    let (id, reply) =
        subscribe_with(&mut session, &channel, json!({ "info": info }), &expected).await?;
    if accepted {
        if !matches!(&reply, ServerMessage::Subscribed(s) if s.id.as_str() == id) {
            return Err(Finding::fail(expected, a(&reply)));
        }
        let members = page(&mut session, &channel, None, None, &expected).await?;
        let carried = members
            .members
            .iter()
            .find(|m| m.user.as_str() == user)
            .and_then(|m| m.info.as_ref())
            .map(|i| Value::Object(i.0.clone()));
        if carried.as_ref() != Some(&info) {
            return Err(Finding::fail(
                expected,
                format!(
                    "the member page {} (info {})",
                    summary(&ServerMessage::MemberPage(members.clone())),
                    carried.map_or_else(
                        || "none".into(),
                        |v| format!("of {} bytes", v.to_string().len())
                    )
                ),
            ));
        }
        return Ok(());
    }
    refused_then_subscribes(
        &ctx,
        &mut session,
        &channel,
        &id,
        &reply,
        ErrorCode::BadRequest,
        &expected,
    )
    .await
}

/// Fails unless `reply` is the error of `id` with `code`; then checks that the refused
/// subscribe did not take effect: a plain subscribe to `channel` is answered subscribed.
async fn refused_then_subscribes(
    ctx: &Ctx,
    session: &mut Session,
    channel: &str,
    id: &str,
    reply: &ServerMessage,
    code: ErrorCode,
    expected: &str,
) -> CaseResult {
    match reply {
        ServerMessage::Error(e)
            if e.id.as_deref().map(String::as_str) == Some(id) && e.error.code == code =>
        {
            verdict(expected, error_info_problems(&e.error))?;
        }
        other => return Err(Finding::fail(expected, a(other))),
    }
    let again = format!(
        "after the refused subscribe, a plain subscribe to {channel} answered subscribed: the refused one did not subscribe ({})",
        cite(ctx)
    );
    match subscribe_with(session, channel, json!({}), &again).await? {
        (_, ServerMessage::Subscribed(_)) => Ok(()),
        (_, other) => Err(Finding::fail(again, a(&other))),
    }
}

/// A subscribe with info or hold is checked in the order FERRY-SUBSCRIBE-6 gives: info on a
/// namespace without presence and hold on one without exclusive get bad_request, after
/// already_subscribed and before held (FERRY-PRESENCE-5). Params: `channel` (template,
/// presence or exclusive), `info` (bytes of compact JSON, 0 for none), `hold`, `first` (none,
/// subscribed: the session holds the channel already, held: another session holds it) and the
/// expected `code`.
pub(super) async fn subscribe_order(ctx: Ctx) -> CaseResult {
    let kind = param(&ctx, "channel")?;
    let info = usize::try_from(param_u64(&ctx, "info")?).unwrap_or(usize::MAX);
    let hold = param_bool(&ctx, "hold")?;
    let first = param(&ctx, "first")?;
    let code = param_code(&ctx, "code")?;
    let channel = match kind {
        "presence" => ctx.presence_channel(0)?,
        "exclusive" => ctx.exclusive_channel(0)?,
        _ => ctx.channel(0),
    };
    let mut session = ctx.session(Who::Main).await?;
    let _holder = match first {
        "subscribed" => {
            subscribe(&mut session, &channel).await?;
            None
        }
        "held" => {
            let mut holder = ctx.session(Who::Second).await?;
            subscribed_with(&mut holder, &channel, json!({ "hold": {} })).await?;
            Some(holder)
        }
        _ => None,
    };
    let mut extra = json!({});
    if info > 0 {
        extra["info"] = info_of(info);
    }
    if hold {
        extra["hold"] = json!({});
    }
    let expected = format!(
        "a subscribe to {channel} ({kind}{}{}{}) answered with an error with its id and code {code} ({})",
        if info > 0 {
            format!(", info of {info} bytes")
        } else {
            String::new()
        },
        if hold { ", hold" } else { "" },
        match first {
            "subscribed" => ", already subscribed",
            "held" => ", held by another session",
            _ => "",
        },
        cite(&ctx)
    );
    let (id, reply) = subscribe_with(&mut session, &channel, extra, &expected).await?;
    if first == "subscribed" {
        return match &reply {
            ServerMessage::Error(e)
                if e.id.as_deref().map(String::as_str) == Some(id.as_str())
                    && e.error.code == code =>
            {
                verdict(&expected, error_info_problems(&e.error))
            }
            other => Err(Finding::fail(expected, a(other))),
        };
    }
    refused_then_subscribes(&ctx, &mut session, &channel, &id, &reply, code, &expected).await
}
