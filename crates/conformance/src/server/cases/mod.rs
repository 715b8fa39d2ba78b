//! The case bodies, registered by id. A key ending in `.` registers one body for a family of
//! catalogue entries that differ only in their `params` (`server.transport.malformed.`).

mod channels;
mod errors;
mod events;
mod holds;
mod hooks;
mod limits;
mod patterns;
mod presence;
mod resume;
mod rpc;
mod tickets;
mod transport;

use super::ctx::Ctx;
use crate::case::{CaseFuture, Finding};

/// How many of the user's sessions a case holds at once, at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sessions {
    /// Up to this many.
    Up(usize),
    /// Every session the user may hold: the case runs while no other case holds one.
    All,
}

/// One registered body.
pub(crate) struct Body {
    /// The case id, or a family prefix ending in `.`.
    pub(crate) id: &'static str,
    /// The sessions it holds at once.
    pub(crate) sessions: Sessions,
    /// The params it reads (each entry of the family must give them).
    pub(crate) params: &'static [&'static str],
    /// The body.
    pub(crate) run: fn(Ctx) -> CaseFuture,
}

macro_rules! body {
    ($id:literal, $sessions:expr, [$($param:literal),*], $run:path) => {
        Body {
            id: $id,
            sessions: $sessions,
            params: &[$($param),*],
            run: |ctx| Box::pin($run(ctx)),
        }
    };
}

use Sessions::{All, Up};

/// Every body, in catalogue order.
#[rustfmt::skip]
pub(crate) static BODIES: &[Body] = &[
    body!("server.transport.upgrade.", Up(1), ["offer"], transport::upgrade_refused),
    body!("server.transport.bad_frame.", Up(1), ["kind", "close"], transport::bad_frame_closes),
    body!("server.transport.malformed.", Up(2), ["frame", "code"], transport::malformed_frame),
    body!("server.ticket.rejected.", Up(2), ["ticket"], tickets::rejected),
    body!("server.ticket.race_redeems_once", Up(8), [], tickets::race),
    body!("server.ticket.expires", Up(1), [], tickets::expires),
    body!("server.ticket.valid_until_expiry", Up(1), [], tickets::valid_until_expiry),
    body!("server.ticket.entropy", Up(0), [], tickets::entropy),
    body!("server.ticket.not_echoed", Up(1), [], tickets::not_echoed),
    body!("server.welcome.first_frame", Up(1), [], tickets::welcome_first),
    body!("server.subscribe.reply_carries_id", Up(1), [], channels::subscribe_reply),
    body!("server.subscribe.position_is_head", Up(1), [], channels::position_is_head),
    body!("server.subscribe.already_subscribed", Up(1), [], channels::already_subscribed),
    body!("server.subscribe.too_many_subscriptions", Up(1), [], channels::too_many),
    body!("server.unsubscribe.reply_carries_id", Up(1), [], channels::unsubscribe_reply),
    body!("server.unsubscribe.no_event_after_reply", Up(1), [], channels::no_event_after_unsubscribed),
    body!("server.permission.subscribe.", Up(1), ["from"], channels::subscribe_forbidden),
    body!("server.permission.publish.", Up(1), ["via"], channels::publish_forbidden),
    body!("server.rpc.unknown_method", Up(1), [], rpc::unknown_method),
    body!("server.rpc.call_forbidden", Up(1), [], rpc::call_forbidden),
    body!("server.rpc.result_relayed", Up(1), [], rpc::result_relayed),
    body!("server.rpc.refusal_relayed", Up(1), [], rpc::refusal_relayed),
    body!("server.rpc.repeat_runs_once", Up(2), [], rpc::repeat_runs_once),
    body!("server.rpc.timeout_then_retry", Up(1), [], rpc::timeout_then_retry),
    body!("server.rpc.invalid_result_withheld", Up(1), [], rpc::invalid_result_withheld),
    body!("server.rpc.backend_failure", Up(1), [], rpc::backend_failure),
    body!("server.rpc.bearer_secret", Up(1), [], rpc::bearer_secret),
    body!("server.hook.publish_accepted", Up(2), [], hooks::publish_accepted),
    body!("server.hook.publish_refused", Up(2), [], hooks::publish_refused),
    body!("server.hook.backend_down", Up(2), [], hooks::backend_down),
    body!("server.hook.subscribe_refused", Up(2), [], hooks::subscribe_refused),
    body!("server.presence.welcome_advertises_leave_after", Up(2), [], presence::welcome_advertises_leave_after),
    body!("server.presence.one_member_per_user", Up(3), [], presence::one_member_per_user),
    body!("server.presence.leave_on_unsubscribe", Up(2), [], presence::leave_on_unsubscribe),
    body!("server.presence.leave_on_close_frame", Up(2), [], presence::leave_on_close_frame),
    body!("server.presence.dropped_connection_lapses", Up(2), [], presence::dropped_connection_lapses),
    body!("server.presence.reconnect_within_leave_after.", Up(3), ["resume"], presence::reconnect_within_leave_after),
    body!("server.presence.members_pages", Up(2), [], presence::members_pages),
    body!("server.presence.members_check_order.", Up(1), ["who", "channel", "state", "code"], presence::members_check_order),
    body!("server.presence.info_size.", Up(1), ["bytes"], presence::info_size),
    body!("server.presence.subscribe_order.", Up(2), ["channel", "info", "hold", "first", "code"], presence::subscribe_order),
    body!("server.hold.granted_with_fence", Up(2), [], holds::granted_with_fence),
    body!("server.hold.ends_with_session.", Up(2), ["end"], holds::ends_with_session),
    body!("server.hold.refused_while_held", Up(3), [], holds::refused_while_held),
    body!("server.hold.reclaim_with_fence.", Up(2), ["namespace"], holds::reclaim_with_fence),
    body!("server.hold.take_over", Up(2), [], holds::take_over),
    body!("server.hold.publish_needs_hold", Up(2), [], holds::publish_needs_hold),
    body!("server.hold.displaced_publish_not_stored", Up(2), [], holds::displaced_publish_not_stored),
    body!("server.permission.history_forbidden", Up(1), [], channels::history_forbidden),
    body!("server.channel.unknown_channel.", Up(1), ["via"], channels::unknown_channel),
    body!("server.channel.pattern_segments", Up(2), [], patterns::pattern_segments),
    body!("server.channel.payload_invalid.", Up(2), ["via", "shape"], channels::payload_invalid),
    body!("server.event.sequence.", Up(2), ["via", "count"], events::sequence),
    body!("server.event.fell_behind", Up(3), [], events::fell_behind),
    body!("server.publish.ack_after_store", Up(1), [], events::ack_after_store),
    body!("server.publish.payload_checked_before_dedup", Up(2), [], channels::payload_checked_before_dedup),
    body!("server.dedup_window.at_least_resume_window", Up(1), [], events::dedup_window),
    body!("server.dedup.", Up(2), ["first", "second"], events::dedup),
    body!("server.resume.exact", Up(2), [], resume::exact),
    body!("server.resume.gap.", Up(1), ["from", "reason"], resume::gap),
    body!("server.resume.history_exceeded", Up(1), [], resume::history_exceeded),
    body!("server.resume.retention", Up(3), [], resume::retention),
    body!("server.history.after_position", Up(0), [], resume::history_after),
    body!("server.heartbeat.ping_every_interval", Up(1), [], limits::ping_every_interval),
    body!("server.heartbeat.unanswered_closes_4408", Up(1), [], limits::unanswered_closes),
    body!("server.heartbeat.answered_stays_open", Up(1), [], limits::answered_stays_open),
    body!("server.heartbeat.wrong_nonce_closes_4408", Up(1), [], limits::wrong_nonce_closes),
    body!("server.size.exact_limit_accepted", Up(1), [], limits::exact_size_accepted),
    body!("server.size.one_byte_over_closes_1009", Up(1), [], limits::one_byte_over),
    body!("server.size.announced_oversize_closes_1009", Up(1), [], limits::announced_oversize),
    body!("server.size.http_event_too_large", Up(1), ["pad_fields"], limits::http_event_too_large),
    body!("server.rate.burst_then_rate_limited", Up(1), [], limits::rate_limited),
    body!("server.rate.keeps_sending_closes_4429", Up(1), [], limits::keeps_sending),
    body!("server.rate.connection_limit_4409", All, [], limits::connection_limit),
    body!("server.error.codes_match_table", Up(3), [], errors::codes_match_table),
    body!("server.http.", Up(0), ["method", "path", "auth", "status", "code"], errors::http_error),
    body!("server.shutdown.goodbye_then_1012", Up(4), [], super::shutdown::goodbye_then_1012),
    body!("server.shutdown.retry_hints_spread", Up(4), [], super::shutdown::retry_hints_spread),
    body!("server.shutdown.draining_refuses_new_work", Up(4), [], super::shutdown::draining_refuses),
    body!("server.shutdown.ready_and_health", Up(4), [], super::shutdown::ready_and_health),
    body!("server.shutdown.acknowledged_publishes_kept", Up(4), [], super::shutdown::acknowledged_publishes_kept),
];

/// Whether the registry key `key` covers case `id`.
pub(crate) fn matches(key: &str, id: &str) -> bool {
    match key.strip_suffix('.') {
        Some(_) => id.starts_with(key) && id.len() > key.len(),
        None => key == id,
    }
}

/// The body of case `id`.
pub(crate) fn body(id: &str) -> Option<&'static Body> {
    BODIES.iter().find(|body| matches(body.id, id))
}

/// A string param the catalogue entry must give (checked by a unit test).
pub(crate) fn param<'a>(ctx: &'a Ctx, name: &str) -> Result<&'a str, Finding> {
    ctx.case.param_str(name).ok_or_else(|| {
        Finding::error(format!(
            "{}: the catalogue entry lacks the string param {name:?}",
            ctx.case.id
        ))
    })
}

/// An integer param the catalogue entry must give.
pub(crate) fn param_u64(ctx: &Ctx, name: &str) -> Result<u64, Finding> {
    ctx.case.param_u64(name).ok_or_else(|| {
        Finding::error(format!(
            "{}: the catalogue entry lacks the integer param {name:?}",
            ctx.case.id
        ))
    })
}

/// A boolean param the catalogue entry must give.
pub(crate) fn param_bool(ctx: &Ctx, name: &str) -> Result<bool, Finding> {
    ctx.case
        .params
        .get(name)
        .and_then(toml::Value::as_bool)
        .ok_or_else(|| {
            Finding::error(format!(
                "{}: the catalogue entry lacks the boolean param {name:?}",
                ctx.case.id
            ))
        })
}

/// An error code param.
pub(crate) fn param_code(ctx: &Ctx, name: &str) -> Result<ferry_protocol::ErrorCode, Finding> {
    let text = param(ctx, name)?;
    text.parse().map_err(|_| {
        Finding::error(format!(
            "{}: the param {name:?} = {text:?} is not an error code",
            ctx.case.id
        ))
    })
}

/// The rules the case cites, for its failure messages: `FERRY-TICKET-3, FERRY-TICKET-4`.
pub(crate) fn cite(ctx: &Ctx) -> String {
    ctx.case.rules.join(", ")
}

/// Fails with every problem found, or passes when there is none.
pub(crate) fn verdict(expected: impl Into<String>, problems: Vec<String>) -> crate::CaseResult {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Finding::fail(expected, problems.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::{Mode, of_mode};

    #[test]
    fn family_keys_match_only_longer_ids() {
        assert!(matches("server.dedup.", "server.dedup.ws_then_ws"));
        assert!(!matches("server.dedup.", "server.dedup."));
        assert!(!matches("server.dedup.", "server.dedupe.x"));
        assert!(matches("server.ticket.entropy", "server.ticket.entropy"));
        assert!(!matches("server.ticket.entropy", "server.ticket.entropy2"));
    }

    #[test]
    fn http_error_entries_give_the_status_the_error_table_gives() {
        for case in of_mode(Mode::Server).filter(|c| c.id.starts_with("server.http.")) {
            let code: ferry_protocol::ErrorCode = case
                .param_str("code")
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("{}: code is an error code", case.id));
            assert_eq!(
                case.param_u64("status"),
                Some(u64::from(crate::server::checks::http_status(code))),
                "{}",
                case.id
            );
        }
    }

    #[test]
    fn malformed_entries_expect_an_error_code_the_table_allows() {
        for case in
            of_mode(Mode::Server).filter(|c| c.id.starts_with("server.transport.malformed."))
        {
            let code = case.param_str("code").unwrap_or_default();
            assert!(
                code == "bad_request" || code == "unknown_type",
                "{}: FERRY-TRANSPORT-5 allows bad_request or unknown_type, not {code}",
                case.id
            );
        }
    }
}
