//! Resume, replay and history (FERRY-RESUME-1, -2, -3, -5).

use std::collections::BTreeMap;
use std::time::Duration;

use ferry_protocol::{
    Event, HistoryResponse, PublishResponse, RecoveryGap, ServerMessage, StreamPosition, Subscribed,
};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{cite, param, verdict};
use crate::case::{CaseResult, Finding};
use crate::server::checks::{a, pos, summary};
use crate::server::ctx::{Ctx, REPLY_WAIT, Who};
use crate::server::driver::{Session, is_event_of, seqs};

/// The most events a resume case publishes to go beyond the advertised resume.max_events.
const MOST_EVENTS: u64 = 2_000;

/// How long a case waits for a long replay.
const REPLAY_WAIT: Duration = Duration::from_secs(20);

/// Sends a subscribe with `from` and returns its subscribed reply, failing with what the
/// rule asks when anything else comes; also fails when an event of the channel arrives
/// before the reply.
pub(super) async fn resume_from(
    session: &mut Session,
    channel: &str,
    from: &Value,
    expected: &str,
) -> Result<Subscribed, Finding> {
    session.drain_stash();
    let id = session.id("resume");
    let reply = session
        .request(
            &json!({ "type": "subscribe", "id": id, "channel": channel, "from": from }),
            REPLY_WAIT,
            expected,
        )
        .await?;
    let early: Vec<String> = session
        .drain_stash()
        .iter()
        .filter(|m| is_event_of(m, channel))
        .map(summary)
        .collect();
    let subscribed = match reply {
        ServerMessage::Subscribed(s) => s,
        other => return Err(Finding::fail(expected, a(&other))),
    };
    if !early.is_empty() {
        return Err(Finding::fail(
            expected,
            format!(
                "events of the channel arrived before the subscribed reply: {}",
                early.join(", ")
            ),
        ));
    }
    if subscribed.recovery.is_none() {
        return Err(Finding::fail(
            expected,
            format!(
                "a {} without recovery, which must be present when the subscribe carries from",
                summary(&ServerMessage::Subscribed(subscribed.clone()))
            ),
        ));
    }
    Ok(subscribed)
}

fn shown(subscribed: &Subscribed) -> String {
    summary(&ServerMessage::Subscribed(subscribed.clone()))
}

/// Checks that `events` are exactly the events at seq `first..=last` of the epoch, in order,
/// with the acknowledged message ids (when known).
fn exact_run(
    events: &[Event],
    epoch: &str,
    first: u64,
    last: u64,
    acks: &BTreeMap<u64, PublishResponse>,
) -> Vec<String> {
    let want: Vec<u64> = (first..=last).collect();
    let got: Vec<u64> = events.iter().map(|e| e.position.seq.get()).collect();
    let mut problems = Vec::new();
    if got != want || events.iter().any(|e| e.position.epoch.as_str() != epoch) {
        problems.push(format!(
            "events arrived at seq {} (epochs {}), not seq {first} to {last} of epoch {epoch} in order",
            seqs(events),
            events
                .iter()
                .map(|e| e.position.epoch.as_str().to_owned())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(", ")
        ));
        return problems;
    }
    for event in events {
        if let Some(ack) = acks.get(&event.position.seq.get())
            && ack.message_id != event.message_id
        {
            problems.push(format!(
                "the event at {} has message id {} but the publish acknowledged there had {}",
                pos(&event.position),
                event.message_id.as_str(),
                ack.message_id.as_str()
            ));
        }
    }
    problems
}

fn by_seq(acks: impl IntoIterator<Item = PublishResponse>) -> BTreeMap<u64, PublishResponse> {
    acks.into_iter()
        .map(|ack| (ack.position.seq.get(), ack))
        .collect()
}

/// A session that delivered up to some position, then went away while 5 events were
/// published, resubscribes with from: recovery complete, exactly the missed events replayed
/// in order, then live events, with no gap and no repetition (FERRY-RESUME-1).
pub(super) async fn exact(ctx: Ctx) -> CaseResult {
    let channel = ctx.channel(0);
    let mut first = ctx.subscribed(Who::Main, &channel).await?;
    let mut acks = ctx
        .http
        .publish_many(&channel, &ctx.key("before"), 2, ctx.payload())
        .await?;
    let delivered = first
        .events(
            &channel,
            2,
            REPLY_WAIT,
            "the two events published while subscribed",
        )
        .await
        .map_err(crate::server::ctx::setup)?;
    let from = delivered[1].position.clone();
    drop(first);
    for n in 1..=5 {
        acks.push(
            ctx.http
                .publish(&channel, &ctx.key(&format!("missed-{n}")), ctx.payload())
                .await?,
        );
    }
    let mut session = ctx.session(Who::Main).await?;
    // A live publish races with the resume: replayed events must still come first.
    let live = {
        let (http, channel, key, payload) = (
            ctx.http.clone(),
            channel.clone(),
            ctx.key("live"),
            ctx.payload().clone(),
        );
        tokio::spawn(async move { http.publish(&channel, &key, &payload).await })
    };
    let expected = format!(
        "a subscribe with from {} (the last event the session delivered) answered with subscribed whose recovery is complete true, reason null and replayed the number of events after from up to the subscribed position, then exactly those events in order, then the live event, with no gap and no repetition ({})",
        pos(&from),
        cite(&ctx)
    );
    let subscribed = resume_from(&mut session, &channel, &json!(from), &expected).await?;
    let live = live
        .await
        .map_err(|e| Finding::error(format!("the live publisher failed: {e}")))??;
    acks.push(live.clone());
    let recovery = subscribed.recovery.clone().expect("checked by resume_from");
    let head = subscribed.position.seq.get();
    let mut problems = Vec::new();
    if !recovery.complete
        || recovery.reason.is_some()
        || recovery.replayed.get() != head.saturating_sub(from.seq.get())
        || head < from.seq.get() + 5
        || subscribed.position.epoch != from.epoch
    {
        problems.push(format!(
            "the reply was a {} (5 events were published after from before the resume)",
            shown(&subscribed)
        ));
        return verdict(expected, problems);
    }
    let last = live.position.seq.get();
    let count = usize::try_from(last.saturating_sub(from.seq.get())).unwrap_or(usize::MAX);
    let events = session
        .events(&channel, count, REPLY_WAIT, &expected)
        .await?;
    problems.extend(exact_run(
        &events,
        from.epoch.as_str(),
        from.seq.get() + 1,
        last,
        &by_seq(acks),
    ));
    verdict(expected, problems)
}

/// FERRY-RESUME-2 for a recovery that cannot be served: `subscribed` says complete false with
/// `reason`, replayed 0, at the channel's `head`; and no partial range follows it, so the first
/// event of the channel after it is a live one published after the reply.
async fn nothing_replayed(
    ctx: &Ctx,
    session: &mut Session,
    channel: &str,
    subscribed: &Subscribed,
    head: &StreamPosition,
    reason: RecoveryGap,
    expected: &str,
) -> CaseResult {
    let recovery = subscribed.recovery.clone().expect("checked by resume_from");
    if recovery.complete
        || recovery.reason != Some(reason)
        || recovery.replayed.get() != 0
        || &subscribed.position != head
    {
        return Err(Finding::fail(expected, format!("a {}", shown(subscribed))));
    }
    let live = ctx
        .http
        .publish(channel, &ctx.key("live"), ctx.payload())
        .await?;
    let events = session.events(channel, 1, REPLY_WAIT, expected).await?;
    if events[0].message_id != live.message_id {
        return Err(Finding::fail(
            expected,
            format!(
                "the first event after subscribed is at {}, before the live event at {} (a partial replay)",
                pos(&events[0].position),
                pos(&live.position)
            ),
        ));
    }
    Ok(())
}

/// A subscribe whose from cannot be served (param `from`: `other_epoch` or `ahead`) gets
/// recovery complete false with the reason of param `reason`, and nothing is replayed
/// (FERRY-RESUME-2).
pub(super) async fn gap(ctx: Ctx) -> CaseResult {
    let kind = param(&ctx, "from")?;
    let reason: RecoveryGap = param(&ctx, "reason")?
        .parse()
        .map_err(|_| Finding::error("the param reason is not a RecoveryGap"))?;
    let channel = ctx.channel(0);
    let acks = ctx
        .http
        .publish_many(&channel, &ctx.key("old"), 3, ctx.payload())
        .await?;
    let head = acks[2].position.clone();
    let (from, what) = match kind {
        "other_epoch" => {
            let epoch = format!("conformance-{:08x}", rand::random::<u32>());
            (
                json!({ "epoch": epoch, "seq": 2 }),
                format!("epoch {epoch} seq 2, an epoch the channel never had"),
            )
        }
        "ahead" => (
            json!({ "epoch": head.epoch, "seq": head.seq.get() + 10 }),
            format!(
                "epoch {} seq {}, beyond the head {}",
                head.epoch.as_str(),
                head.seq.get() + 10,
                pos(&head)
            ),
        ),
        other => {
            return Err(Finding::error(format!(
                "unknown param from {other:?} (other_epoch or ahead)"
            )));
        }
    };
    let mut session = ctx.session(Who::Main).await?;
    let expected = format!(
        "a subscribe with from {what} answered with subscribed at the head ({}) whose recovery is complete false, replayed 0, reason {reason}; and no event replayed ({})",
        pos(&head),
        cite(&ctx)
    );
    let subscribed = resume_from(&mut session, &channel, &from, &expected).await?;
    nothing_replayed(
        &ctx,
        &mut session,
        &channel,
        &subscribed,
        &head,
        reason,
        &expected,
    )
    .await
}

/// The advertised resume window, and the events to publish to go beyond max_events; a skip
/// when that is too many.
fn window(session: &Session) -> Result<(u64, Duration), Finding> {
    let resume = &session.welcome().resume;
    let max_events = resume.max_events.get();
    if max_events > MOST_EVENTS {
        return Err(Finding::skip(format!(
            "the welcome advertises resume.max_events {max_events}; this case publishes at most {MOST_EVENTS} + 3 events"
        )));
    }
    Ok((max_events, Duration::from_millis(resume.window_ms.get())))
}

/// After more than resume.max_events events, older than resume.window_ms, a resume from
/// seq 1 gets recovery complete false with reason history_exceeded and nothing replayed; a
/// server that still holds everything is not at fault, and the case is skipped
/// (FERRY-RESUME-2, FERRY-RESUME-3).
pub(super) async fn history_exceeded(ctx: Ctx) -> CaseResult {
    let channel = ctx.channel(0);
    let mut session = ctx.session(Who::Main).await?;
    let (max_events, window) = window(&session)?;
    let wait = window + ctx.tolerance();
    ctx.within_budget(
        wait,
        &format!(
            "resume.window_ms of {} ms plus the tolerance: a server keeps every event younger than the window",
            window.as_millis()
        ),
    )?;
    let mut acks = ctx
        .http
        .publish_many(&channel, &ctx.key("old"), max_events + 3, ctx.payload())
        .await?;
    ctx.t.note(
        "runner",
        format!(
            "waiting {} ms (resume.window_ms + tolerance) so the first events are older than the window",
            wait.as_millis()
        ),
    );
    tokio::time::sleep(wait).await;
    acks.push(
        ctx.http
            .publish(&channel, &ctx.key("newest"), ctx.payload())
            .await?,
    );
    let epoch = acks[0].position.epoch.clone();
    let head = acks.last().expect("published").position.clone();
    let expected = format!(
        "after {} events ({} more than resume.max_events {max_events}, the first older than resume.window_ms {} ms), a subscribe with from epoch {} seq 1 answered with subscribed whose recovery is complete false, replayed 0, reason history_exceeded, and nothing replayed; or, if the server still holds every event, complete true with all of them ({})",
        head.seq.get(),
        head.seq.get() - max_events,
        window.as_millis(),
        epoch.as_str(),
        cite(&ctx)
    );
    let subscribed = resume_from(
        &mut session,
        &channel,
        &json!({ "epoch": epoch, "seq": 1 }),
        &expected,
    )
    .await?;
    let recovery = subscribed.recovery.clone().expect("checked by resume_from");
    if recovery.complete {
        if recovery.replayed.get() != head.seq.get() - 1 || subscribed.position != head {
            return Err(Finding::fail(expected, format!("a {}", shown(&subscribed))));
        }
        let count = usize::try_from(head.seq.get() - 1).unwrap_or(usize::MAX);
        let events = session
            .events(&channel, count, REPLAY_WAIT, &expected)
            .await?;
        verdict(
            expected,
            exact_run(&events, epoch.as_str(), 2, head.seq.get(), &by_seq(acks)),
        )?;
        return Err(Finding::skip(format!(
            "the server still holds every event after seq 1 (it keeps more than resume.max_events {max_events} and resume.window_ms {} ms require) and replayed them all exactly, so history_exceeded could not be provoked: start the server with a resume window it enforces and that --max-wait-ms covers (ferry-server: --resume-window-ms 0 --resume-max-events 50)",
            window.as_millis()
        )));
    }
    nothing_replayed(
        &ctx,
        &mut session,
        &channel,
        &subscribed,
        &head,
        RecoveryGap::HistoryExceeded,
        &expected,
    )
    .await
}

/// The server keeps at least the last resume.max_events events of a channel, and every
/// event younger than resume.window_ms: resumes within those bounds are complete and replay
/// exactly the missed events (FERRY-RESUME-3, FERRY-RESUME-1).
pub(super) async fn retention(ctx: Ctx) -> CaseResult {
    let channel = ctx.channel(0);
    let mut session = ctx.session(Who::Main).await?;
    let (max_events, window) = window(&session)?;
    let started = Instant::now();
    let acks = ctx
        .http
        .publish_many(&channel, &ctx.key("kept"), max_events + 3, ctx.payload())
        .await?;
    let head = acks.last().expect("published").position.clone();
    let epoch = head.epoch.clone();
    let acks = by_seq(acks);
    let mut problems = Vec::new();

    // Every event is younger than the window: all of them must be replayed.
    let age = started.elapsed() + ctx.tolerance();
    if age < window {
        let expected = format!(
            "all {} events are younger than resume.window_ms {} ms, so a subscribe with from epoch {} seq 0 is answered with recovery complete true, replayed {}, then all of them in order ({})",
            head.seq.get(),
            window.as_millis(),
            epoch.as_str(),
            head.seq.get(),
            cite(&ctx)
        );
        let subscribed = resume_from(
            &mut session,
            &channel,
            &json!({ "epoch": epoch, "seq": 0 }),
            &expected,
        )
        .await?;
        let recovery = subscribed.recovery.clone().expect("checked by resume_from");
        if !recovery.complete || recovery.replayed.get() != head.seq.get() {
            return Err(Finding::fail(expected, format!("a {}", shown(&subscribed))));
        }
        let count = usize::try_from(head.seq.get()).unwrap_or(usize::MAX);
        let events = session
            .events(&channel, count, REPLAY_WAIT, &expected)
            .await?;
        let found = exact_run(&events, epoch.as_str(), 1, head.seq.get(), &acks);
        if !found.is_empty() {
            return verdict(expected, found);
        }
    } else {
        ctx.t.note(
            "runner",
            format!(
                "publishing took {} ms, not within resume.window_ms {} ms less the tolerance: the window part is not checked",
                started.elapsed().as_millis(),
                window.as_millis()
            ),
        );
    }

    // Still every event when the oldest is about as old as the window (less the tolerance),
    // after one more publish: a server keeps what it advertises, not a shorter window.
    drop(session);
    let (head, acks) = aged_replay(&ctx, &channel, window, started, head, acks).await?;

    // The last max_events events are kept whatever their age.
    let mut session = ctx.session(Who::Main).await?;
    let from_seq = head.seq.get() - max_events;
    let expected = format!(
        "a subscribe with from epoch {} seq {from_seq} (the last resume.max_events = {max_events} events are after it) answered with recovery complete true, replayed {max_events}, then exactly those events in order ({})",
        epoch.as_str(),
        cite(&ctx)
    );
    let subscribed = resume_from(
        &mut session,
        &channel,
        &json!({ "epoch": epoch, "seq": from_seq }),
        &expected,
    )
    .await?;
    let recovery = subscribed.recovery.clone().expect("checked by resume_from");
    if !recovery.complete || recovery.replayed.get() != max_events {
        problems.push(format!("a {}", shown(&subscribed)));
        return verdict(expected, problems);
    }
    let count = usize::try_from(max_events).unwrap_or(usize::MAX);
    let events = session
        .events(&channel, count, REPLAY_WAIT, &expected)
        .await?;
    problems.extend(exact_run(
        &events,
        epoch.as_str(),
        from_seq + 1,
        head.seq.get(),
        &acks,
    ));
    verdict(expected, problems)
}

/// Waits until the first event of `channel` (published after `started`) is nearly
/// resume.window_ms old, publishes one more, and resumes from seq 0: every event must still be
/// replayed. Left out, with a note, when the window is no longer than the tolerance or the
/// wait is beyond the case's budget. Returns the head and acknowledgements, the new publish
/// included.
async fn aged_replay(
    ctx: &Ctx,
    channel: &str,
    window: Duration,
    started: Instant,
    head: StreamPosition,
    mut acks: BTreeMap<u64, PublishResponse>,
) -> Result<(StreamPosition, BTreeMap<u64, PublishResponse>), Finding> {
    let tolerance = ctx.tolerance();
    let wait = window.saturating_sub(tolerance);
    if wait.is_zero() {
        ctx.t.note(
            "runner",
            format!(
                "resume.window_ms {} ms is within the tolerance: events nearly as old as the window are not checked",
                window.as_millis()
            ),
        );
        return Ok((head, acks));
    }
    if wait > ctx.wait_budget() {
        ctx.t.note(
            "runner",
            format!(
                "events nearly as old as resume.window_ms are not checked: that waits {} ms, more than the {} ms --max-wait-ms or the case's deadline allows",
                wait.as_millis(),
                ctx.wait_budget().as_millis()
            ),
        );
        return Ok((head, acks));
    }
    let planned = started + wait;
    ctx.t.note(
        "runner",
        format!(
            "waiting until {} ms after the first publish was sent (resume.window_ms {} ms less the tolerance), then publishing once more and resuming from seq 0",
            wait.as_millis(),
            window.as_millis()
        ),
    );
    tokio::time::sleep_until(planned).await;
    let newest = ctx
        .http
        .publish(channel, &ctx.key("aged-newest"), ctx.payload())
        .await?;
    let head = newest.position.clone();
    acks.insert(head.seq.get(), newest);
    let epoch = head.epoch.clone();
    let expected = format!(
        "with the first of {} events not yet resume.window_ms {} ms old, a subscribe with from epoch {} seq 0 is answered with recovery complete true, replayed {}, then all of them in order: a server keeps every event younger than the window it advertises ({})",
        head.seq.get(),
        window.as_millis(),
        epoch.as_str(),
        head.seq.get(),
        cite(ctx)
    );
    let mut session = ctx.session(Who::Main).await?;
    let subscribed = resume_from(
        &mut session,
        channel,
        &json!({ "epoch": epoch, "seq": 0 }),
        &expected,
    )
    .await?;
    let age = started.elapsed();
    let recovery = subscribed.recovery.clone().expect("checked by resume_from");
    if !recovery.complete || recovery.replayed.get() != head.seq.get() {
        let observed = format!("a {}", shown(&subscribed));
        if age >= window {
            return Err(Finding::inconclusive(format!(
                "{observed}; but the reply came {} ms after the first publish was sent, so the first event may have been older than the window of {} ms by then",
                age.as_millis(),
                window.as_millis()
            )));
        }
        return Err(Finding::fail(expected, observed));
    }
    let count = usize::try_from(head.seq.get()).unwrap_or(usize::MAX);
    let events = session
        .events(channel, count, REPLAY_WAIT, &expected)
        .await?;
    verdict(
        expected,
        exact_run(&events, epoch.as_str(), 1, head.seq.get(), &acks),
    )?;
    Ok((head, acks))
}

/// Reads a history page that must be a 200 HistoryResponse.
async fn page(ctx: &Ctx, query: &str, expected: &str) -> Result<HistoryResponse, Finding> {
    let reply = ctx
        .http
        .history(query, &crate::server::http::Cred::Main)
        .await?;
    if reply.status != 200 {
        return Err(Finding::fail(expected, reply.shown()));
    }
    reply.json().map_err(|e| {
        Finding::fail(
            expected,
            format!(
                "a body that is not a HistoryResponse ({e}): {}",
                reply.shown()
            ),
        )
    })
}

fn page_seqs(page: &HistoryResponse) -> Vec<u64> {
    page.events.iter().map(|e| e.position.seq.get()).collect()
}

/// The history endpoint returns the events after a position in seq order, honours limit, and
/// says complete false with a reason when it cannot continue from the position asked
/// (FERRY-RESUME-5).
pub(super) async fn history_after(ctx: Ctx) -> CaseResult {
    let channel = ctx.channel(0);
    let acks = by_seq(
        ctx.http
            .publish_many(&channel, &ctx.key("h"), 5, ctx.payload())
            .await?,
    );
    let head: StreamPosition = acks.get(&5).expect("five publishes").position.clone();
    let epoch = head.epoch.as_str().to_owned();
    let mut problems = Vec::new();

    let expected = format!(
        "GET /v1/history?channel={channel}&epoch={epoch}&after_seq=2 answers complete true, reason null, head {} and the events at seq 3, 4, 5 with their acknowledged message ids ({})",
        pos(&head),
        cite(&ctx)
    );
    let all = page(
        &ctx,
        &format!("channel={channel}&epoch={epoch}&after_seq=2"),
        &expected,
    )
    .await?;
    if !all.complete || all.reason.is_some() || all.head != head || all.channel.as_str() != channel
    {
        problems.push(format!(
            "complete {}, reason {:?}, head {}, channel {}",
            all.complete,
            all.reason.map(|r| r.to_string()),
            pos(&all.head),
            all.channel.as_str()
        ));
    }
    if page_seqs(&all) != [3, 4, 5] {
        problems.push(format!("events at seq {:?}", page_seqs(&all)));
    }
    for event in &all.events {
        if let Some(ack) = acks.get(&event.position.seq.get())
            && (ack.message_id != event.message_id || ack.position != event.position)
        {
            problems.push(format!(
                "the event at {} has message id {}, acknowledged as {}",
                pos(&event.position),
                event.message_id.as_str(),
                ack.message_id.as_str()
            ));
        }
    }
    verdict(expected, problems)?;

    let expected = format!(
        "GET /v1/history?channel={channel}&epoch={epoch}&after_seq=2&limit=2 answers the events at seq 3 and 4 ({})",
        cite(&ctx)
    );
    let limited = page(
        &ctx,
        &format!("channel={channel}&epoch={epoch}&after_seq=2&limit=2"),
        &expected,
    )
    .await?;
    if page_seqs(&limited) != [3, 4] {
        return Err(Finding::fail(
            expected,
            format!("events at seq {:?}", page_seqs(&limited)),
        ));
    }

    let other = format!("conformance-{:08x}", rand::random::<u32>());
    let expected = format!(
        "GET /v1/history with epoch {other}, an epoch the channel never had, answers complete false with a reason, and its events in seq order ({})",
        cite(&ctx)
    );
    let gap = page(
        &ctx,
        &format!("channel={channel}&epoch={other}&after_seq=2"),
        &expected,
    )
    .await?;
    let seqs = page_seqs(&gap);
    if gap.complete || gap.reason.is_none() || !seqs.windows(2).all(|w| w[1] == w[0] + 1) {
        return Err(Finding::fail(
            expected,
            format!(
                "complete {}, reason {:?}, events at seq {seqs:?}",
                gap.complete,
                gap.reason.map(|r| r.to_string())
            ),
        ));
    }
    Ok(())
}
