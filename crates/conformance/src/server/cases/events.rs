//! Events, publish acknowledgements and de-duplication (FERRY-EVENT-1, FERRY-EVENT-2,
//! FERRY-PUBLISH-1, FERRY-DEDUP-1).

use std::collections::BTreeSet;

use ferry_protocol::{MessageId, ServerMessage, StreamPosition};
use serde_json::json;

use super::{cite, param, param_u64, verdict};
use crate::case::{CaseResult, Finding};
use crate::server::checks::{a, pos};
use crate::server::ctx::{Ctx, REPLY_WAIT, Who, setup, subscribe};
use crate::server::driver::{Session, seqs};

/// An acknowledgement, over either transport.
#[derive(Debug, Clone)]
struct Ack {
    message_id: MessageId,
    position: StreamPosition,
    duplicate: bool,
}

impl Ack {
    fn shown(&self) -> String {
        format!(
            "message id {}, {}, duplicate {}",
            self.message_id.as_str(),
            pos(&self.position),
            self.duplicate
        )
    }
}

/// Publishes over `via` (`ws` through `session`, or `http`) and returns the acknowledgement;
/// a publish on WebSocket must be acknowledged with its id (FERRY-PUBLISH-1).
async fn publish_via(
    ctx: &Ctx,
    via: &str,
    session: Option<&mut Session>,
    channel: &str,
    key: &str,
) -> Result<Ack, Finding> {
    match (via, session) {
        ("ws", Some(session)) => {
            let id = session.id("pub");
            let expected = format!(
                "publish {id} to {channel} acknowledged with published carrying id {id} and channel {channel} (FERRY-PUBLISH-1)"
            );
            match session
                .request(
                    &json!({ "type": "publish", "id": id, "channel": channel, "idempotency_key": key, "payload": ctx.payload() }),
                    REPLY_WAIT,
                    &expected,
                )
                .await?
            {
                ServerMessage::Published(p) if p.channel.as_str() == channel => Ok(Ack {
                    message_id: p.message_id,
                    position: p.position,
                    duplicate: p.duplicate,
                }),
                other => Err(Finding::fail(expected, a(&other))),
            }
        }
        ("http", _) => {
            let ack = ctx.http.publish(channel, key, ctx.payload()).await?;
            Ok(Ack {
                message_id: ack.message_id,
                position: ack.position,
                duplicate: ack.duplicate,
            })
        }
        (other, _) => Err(Finding::error(format!(
            "unknown transport {other:?} (ws or http)"
        ))),
    }
}

/// `count` publishes (param `via`: ws or http) to a fresh channel reach a subscriber as
/// events with seq 1, 2, 3, ... in one epoch, in order, with the acknowledged message ids
/// and positions (FERRY-EVENT-1, FERRY-EVENT-2; on WebSocket also FERRY-PUBLISH-1).
pub(super) async fn sequence(ctx: Ctx) -> CaseResult {
    let via = param(&ctx, "via")?;
    let count = param_u64(&ctx, "count")?;
    let channel = ctx.channel(0);
    let mut subscriber = ctx.session(Who::Main).await?;
    let subscribed = subscribe(&mut subscriber, &channel).await?;
    let mut publisher = if via == "ws" {
        Some(ctx.session(Who::Main).await?)
    } else {
        None
    };
    let mut acks = Vec::new();
    for n in 1..=count {
        acks.push(
            publish_via(
                &ctx,
                via,
                publisher.as_mut(),
                &channel,
                &ctx.key(&format!("seq-{n}")),
            )
            .await?,
        );
    }
    let n = usize::try_from(count).unwrap_or(usize::MAX);
    let expected = format!(
        "{count} events of the fresh channel {channel}, at seq 1 to {count} of the subscribed epoch {} in order, with the message ids and positions of the {count} acknowledgements ({})",
        subscribed.position.epoch.as_str(),
        cite(&ctx)
    );
    let events = subscriber
        .events(&channel, n, REPLY_WAIT, &expected)
        .await?;
    let mut problems = Vec::new();
    if subscribed.position.seq.get() != 0 {
        problems.push(format!(
            "subscribed to the fresh channel at {} (a channel without events has seq 0)",
            pos(&subscribed.position)
        ));
    }
    for (i, event) in events.iter().enumerate() {
        let want = i as u64 + 1;
        if event.position.seq.get() != want || event.position.epoch != subscribed.position.epoch {
            problems.push(format!(
                "event {} is at {}, not epoch {} seq {want}",
                i + 1,
                pos(&event.position),
                subscribed.position.epoch.as_str()
            ));
        }
        match acks.iter().find(|a| a.message_id == event.message_id) {
            Some(ack) if ack.position == event.position => {}
            Some(ack) => problems.push(format!(
                "event {} ({}) was acknowledged at {}",
                event.message_id.as_str(),
                pos(&event.position),
                pos(&ack.position)
            )),
            None => problems.push(format!(
                "event {} at {} matches no acknowledgement",
                event.message_id.as_str(),
                pos(&event.position)
            )),
        }
        if event.payload.to_value().ok().as_ref() != Some(ctx.payload()) {
            problems.push(format!(
                "event at {} carries the payload {} instead of the published {}",
                pos(&event.position),
                event.payload,
                ctx.payload()
            ));
        }
    }
    let ids: BTreeSet<&str> = acks.iter().map(|a| a.message_id.as_str()).collect();
    if ids.len() != acks.len() {
        problems.push("two acknowledgements share a message id".into());
    }
    if let Some(dup) = acks.iter().find(|a| a.duplicate) {
        problems.push(format!(
            "a publish with a fresh idempotency key was acknowledged as a duplicate: {}",
            dup.shown()
        ));
    }
    if !problems.is_empty() {
        problems.push(format!("events arrived at seq {}", seqs(&events)));
    }
    verdict(expected, problems)
}

/// A publish on WebSocket is acknowledged with published carrying its id once the event is
/// in the history; the same holds for the HTTP acknowledgement (FERRY-PUBLISH-1).
pub(super) async fn ack_after_store(ctx: Ctx) -> CaseResult {
    let channel = ctx.channel(0);
    let mut session = ctx.session(Who::Main).await?;
    let mut acks =
        vec![publish_via(&ctx, "ws", Some(&mut session), &channel, &ctx.key("ws")).await?];
    acks.push(publish_via(&ctx, "http", None, &channel, &ctx.key("http")).await?);
    let mut problems = Vec::new();
    for (via, ack) in ["WebSocket", "HTTP"].iter().zip(&acks) {
        let page = ctx
            .http
            .history_page(&format!(
                "channel={channel}&epoch={}&after_seq={}",
                ack.position.epoch.as_str(),
                ack.position.seq.get().saturating_sub(1)
            ))
            .await?;
        let stored = page
            .events
            .iter()
            .any(|e| e.message_id == ack.message_id && e.position == ack.position);
        if !stored {
            problems.push(format!(
                "right after the {via} acknowledgement ({}), the history holds {}",
                ack.shown(),
                if page.events.is_empty() {
                    "no event there".to_owned()
                } else {
                    page.events
                        .iter()
                        .map(|e| format!("{} ({})", e.message_id.as_str(), pos(&e.position)))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ));
        }
    }
    verdict(
        format!(
            "a publish is acknowledged only once its event is stored: the history read right after each acknowledgement holds the event at the acknowledged position ({})",
            cite(&ctx)
        ),
        problems,
    )
}

/// A publish repeated with the same idempotency key (params `first` and `second`: ws or
/// http) is acknowledged with the original message id and position and duplicate true, and
/// a subscriber gets the event once (FERRY-DEDUP-1).
pub(super) async fn dedup(ctx: Ctx) -> CaseResult {
    let first = param(&ctx, "first")?;
    let second = param(&ctx, "second")?;
    let channel = ctx.channel(0);
    let mut subscriber = ctx.subscribed(Who::Main, &channel).await?;
    let mut publisher = if first == "ws" || second == "ws" {
        Some(ctx.session(Who::Main).await?)
    } else {
        None
    };
    let key = ctx.key("once");
    let original = publish_via(&ctx, first, publisher.as_mut(), &channel, &key).await?;
    let repeat = publish_via(&ctx, second, publisher.as_mut(), &channel, &key).await?;
    let marker = publish_via(&ctx, "http", None, &channel, &ctx.key("marker")).await?;
    let expected = format!(
        "the publish repeated over {second} with the idempotency key {key}, first published over {first}, acknowledged with the original message id and position and duplicate true, and not stored or delivered again ({})",
        cite(&ctx)
    );
    let mut problems = Vec::new();
    if original.duplicate {
        problems.push(format!(
            "the first publish was acknowledged as a duplicate: {}",
            original.shown()
        ));
    }
    if !repeat.duplicate
        || repeat.message_id != original.message_id
        || repeat.position != original.position
    {
        problems.push(format!(
            "the first acknowledgement was ({}), the repeat's ({})",
            original.shown(),
            repeat.shown()
        ));
    }
    if marker.position.seq.get() != original.position.seq.get() + 1 {
        problems.push(format!(
            "the next publish with a new key was stored at {}, not right after the original at {} (the repeat was stored again)",
            pos(&marker.position),
            pos(&original.position)
        ));
    }
    let events = subscriber
        .events(&channel, 2, REPLY_WAIT, &expected)
        .await
        .map_err(setup)?;
    let ids: Vec<&MessageId> = events.iter().map(|e| &e.message_id).collect();
    if ids != [&original.message_id, &marker.message_id] {
        problems.push(format!(
            "the subscriber got events at seq {} with message ids {} (expected {} then {})",
            seqs(&events),
            ids.iter()
                .map(|id| id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            original.message_id.as_str(),
            marker.message_id.as_str()
        ));
    }
    verdict(expected, problems)
}
