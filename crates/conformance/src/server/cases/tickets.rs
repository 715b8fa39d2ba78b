//! Tickets and the welcome (FERRY-TICKET-1 to -4, FERRY-TICKET-6, FERRY-WELCOME-1).

use std::collections::BTreeSet;
use std::time::Duration;

use ferry_protocol::{SUBPROTOCOL, ServerMessage, TicketResponse};
use futures_util::future::join_all;
use reqwest::Method;
use tokio::time::Instant;

use super::{cite, param, verdict};
use crate::case::{CaseResult, Finding};
use crate::server::checks::summary;
use crate::server::ctx::{Ctx, REPLY_WAIT, Who, expect_welcome, redact};
use crate::server::driver::{ConnectError, Got};
use crate::server::http::Cred;

/// How many tickets the entropy heuristic looks at.
const ENTROPY_SAMPLES: usize = 16;

/// How many sessions race on one ticket (fewer when the user's connection limit is lower).
const RACERS: usize = 8;

/// A made-up ticket: 43 random base64url characters, as a 256-bit ticket looks.
fn forged_ticket() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..43)
        .map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())]))
        .collect()
}

/// A session whose ticket is missing, empty, forged or already used (param `ticket`) is
/// closed with 4401 before any other frame (FERRY-TICKET-3, FERRY-TICKET-4).
pub(super) async fn rejected(ctx: Ctx) -> CaseResult {
    let kind = param(&ctx, "ticket")?;
    let (query, what) = match kind {
        "missing" => (None, "missing (no ticket parameter)".to_owned()),
        "empty" => (Some("ticket=".to_owned()), "empty".to_owned()),
        "forged" => {
            let forged = forged_ticket();
            (
                Some(format!("ticket={forged}")),
                format!("one the server never issued ({})", redact(&forged)),
            )
        }
        "reused" => {
            let (mut first, ticket) = ctx.open(Who::Main).await?;
            expect_welcome(&mut first).await.map_err(|observed| {
                Finding::error(format!(
                    "set-up: the ticket's first use was not welcomed: {observed}"
                ))
            })?;
            drop(first);
            (
                Some(format!("ticket={}", ticket.ticket.as_str())),
                "already used by a welcomed session".to_owned(),
            )
        }
        other => {
            return Err(Finding::error(format!(
                "unknown param ticket {other:?} (missing, empty, forged or reused)"
            )));
        }
    };
    let expected = format!(
        "the upgrade succeeds and the session is closed with 4401 (ticket_rejected) before any other frame, since its ticket is {what} ({})",
        cite(&ctx)
    );
    match ctx.connect(query.as_deref(), Some(SUBPROTOCOL)).await? {
        Err(e) => Err(Finding::fail(
            expected,
            format!(
                "{} (clients learn that a ticket was rejected from close code 4401, whose action is renew_ticket)",
                e.describe()
            ),
        )),
        Ok(mut session) => {
            let got = session.recv_raw(REPLY_WAIT).await;
            if got.close_code() == Some(4401) {
                Ok(())
            } else {
                Err(Finding::fail(expected, format!("first {}", got.describe())))
            }
        }
    }
}

/// Of several sessions presenting the same ticket at once, exactly one is welcomed and the
/// others are closed with 4401 (FERRY-TICKET-4).
pub(super) async fn race(ctx: Ctx) -> CaseResult {
    let racers = RACERS.min(ctx.allowance());
    if racers < 2 {
        return Err(Finding::skip(
            "needs two sessions of the user at once; --max-connections-per-user allows one",
        ));
    }
    let ticket = ctx.http.ticket(&Cred::Main).await?;
    let query = format!("ticket={}", ticket.ticket.as_str());
    let attempts = (0..racers).map(|_| async {
        match ctx.connect(Some(&query), Some(SUBPROTOCOL)).await? {
            Err(e) => Ok::<_, Finding>((None, e.describe(), false, false)),
            Ok(mut session) => {
                let got = session.recv_raw(REPLY_WAIT).await;
                let welcomed = matches!(got, Got::Message(ServerMessage::Welcome(_), _));
                let rejected = got.close_code() == Some(4401);
                Ok((Some(session), got.describe(), welcomed, rejected))
            }
        }
    });
    let outcomes: Vec<_> = join_all(attempts)
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let welcomed = outcomes.iter().filter(|o| o.2).count();
    let rejected = outcomes.iter().filter(|o| o.3).count();
    if welcomed == 1 && rejected == racers - 1 {
        return Ok(());
    }
    let observed: Vec<String> = outcomes
        .iter()
        .enumerate()
        .map(|(i, o)| format!("session {}: {}", i + 1, o.1))
        .collect();
    Err(Finding::fail(
        format!(
            "of {racers} sessions opened at the same instant with one ticket, exactly one welcomed and the other {} closed with 4401 (ticket_rejected) ({})",
            racers - 1,
            cite(&ctx)
        ),
        format!(
            "{welcomed} welcomed, {rejected} closed with 4401: {}",
            observed.join("; ")
        ),
    ))
}

/// When a timing case presents its ticket.
#[derive(Clone, Copy)]
enum Presented {
    /// The tolerance after its lifetime, counted from when the ticket arrived.
    AfterLifetime,
    /// The tolerance before its lifetime, counted from before it was asked for.
    BeforeLifetime,
}

/// Asks for a ticket of `--token`'s and sleeps until the instant `at` names. Each side counts
/// from the instant that favours the server: its lifetime starts after the request left and
/// before the answer came. Returns the ticket, the instant counted from and its lifetime.
async fn ticket_then_wait(
    ctx: &Ctx,
    at: Presented,
) -> Result<(TicketResponse, Instant, Duration), Finding> {
    let requested = Instant::now();
    let ticket = ctx.http.ticket(&Cred::Main).await?;
    let lifetime = Duration::from_millis(ticket.expires_in_ms.get());
    let tolerance = ctx.tolerance();
    let (from, wait, sign, what) = match at {
        Presented::AfterLifetime => (Instant::now(), lifetime + tolerance, "+", "plus"),
        Presented::BeforeLifetime => (requested, lifetime.saturating_sub(tolerance), "-", "less"),
    };
    ctx.within_budget(
        wait,
        &format!(
            "the ticket's expires_in_ms of {} ms {what} the tolerance of {} ms",
            lifetime.as_millis(),
            tolerance.as_millis()
        ),
    )?;
    ctx.t.note(
        "runner",
        format!(
            "presenting the ticket after {} ms: expires_in_ms {} {sign} tolerance {}",
            wait.as_millis(),
            lifetime.as_millis(),
            tolerance.as_millis()
        ),
    );
    tokio::time::sleep_until(from + wait).await;
    Ok((ticket, from, lifetime))
}

/// A ticket used after its advertised lifetime (expires_in_ms, plus the tolerance) is
/// rejected with 4401 (FERRY-TICKET-2, FERRY-TICKET-3).
pub(super) async fn expires(ctx: Ctx) -> CaseResult {
    let (ticket, issued, lifetime) = ticket_then_wait(&ctx, Presented::AfterLifetime).await?;
    let expected = format!(
        "a ticket presented {} ms after it was issued with expires_in_ms {} is rejected: close 4401 (ticket_rejected) before any other frame ({})",
        issued.elapsed().as_millis(),
        lifetime.as_millis(),
        cite(&ctx)
    );
    let query = format!("ticket={}", ticket.ticket.as_str());
    match ctx.connect(Some(&query), Some(SUBPROTOCOL)).await? {
        Err(e) => Err(Finding::fail(expected, e.describe())),
        Ok(mut session) => {
            let got = session.recv_raw(REPLY_WAIT).await;
            if got.close_code() == Some(4401) {
                Ok(())
            } else {
                Err(Finding::fail(expected, format!("first {}", got.describe())))
            }
        }
    }
}

/// A ticket presented before its advertised lifetime has passed (expires_in_ms less the
/// tolerance, counted from before the ticket was asked for) is welcomed (FERRY-TICKET-2): a
/// server must not expire tickets sooner than it says. A rejection is inconclusive when the
/// upgrade's answer came only after the lifetime had passed.
pub(super) async fn valid_until_expiry(ctx: Ctx) -> CaseResult {
    let (ticket, requested, lifetime) = ticket_then_wait(&ctx, Presented::BeforeLifetime).await?;
    let presented = Instant::now();
    let expected = format!(
        "a ticket presented {} ms after it was asked for, with expires_in_ms {}, is welcomed ({})",
        presented.saturating_duration_since(requested).as_millis(),
        lifetime.as_millis(),
        cite(&ctx)
    );
    let query = format!("ticket={}", ticket.ticket.as_str());
    let got = match ctx.connect(Some(&query), Some(SUBPROTOCOL)).await? {
        Err(e) => e.describe(),
        Ok(mut session) => match session.recv_raw(REPLY_WAIT).await {
            Got::Message(ServerMessage::Welcome(_), _) => return Ok(()),
            got => format!("first {}", got.describe()),
        },
    };
    let answered = Instant::now();
    if answered.saturating_duration_since(requested) >= lifetime {
        return Err(Finding::inconclusive(format!(
            "{got}, but the runner presented the ticket {} ms and had the answer only {} ms after asking for it, past its lifetime of {} ms: the machine was too busy to tell",
            presented.saturating_duration_since(requested).as_millis(),
            answered.saturating_duration_since(requested).as_millis(),
            lifetime.as_millis()
        )));
    }
    Err(Finding::fail(expected, got))
}

/// Estimates the random bits of `tickets`: over the positions every ticket has, those whose
/// character varies from ticket to ticket, times log2 of the number of distinct characters
/// seen. A fixed prefix, a counter or a timestamp adds little; a random base64url ticket of
/// 22 characters scores about 132 bits.
fn entropy_estimate(tickets: &[String]) -> (f64, usize, usize, usize) {
    let length = tickets.iter().map(|t| t.len()).min().unwrap_or(0);
    let varying = (0..length)
        .filter(|&i| {
            let column: BTreeSet<u8> = tickets.iter().map(|t| t.as_bytes()[i]).collect();
            column.len() > 1
        })
        .count();
    let alphabet: BTreeSet<u8> = tickets.iter().flat_map(|t| t.bytes()).collect();
    let bits = varying as f64 * (alphabet.len().max(1) as f64).log2();
    (bits, varying, length, alphabet.len())
}

/// Tickets are distinct and long and varied enough to carry 128 random bits (FERRY-TICKET-2).
pub(super) async fn entropy(ctx: Ctx) -> CaseResult {
    let mut tickets = Vec::with_capacity(ENTROPY_SAMPLES);
    for _ in 0..ENTROPY_SAMPLES {
        let TicketResponse { ticket, .. } = ctx.http.ticket(&Cred::Main).await?;
        tickets.push(ticket.as_str().to_owned());
    }
    let distinct: BTreeSet<&String> = tickets.iter().collect();
    let (bits, varying, length, alphabet) = entropy_estimate(&tickets);
    let expected = format!(
        "{ENTROPY_SAMPLES} tickets that are all different and carry at least 128 random bits ({}). Heuristic: over the {ENTROPY_SAMPLES} tickets, (positions whose character varies) x log2(distinct characters seen) must reach 128; a random base64url ticket of 22 characters scores about 132",
        cite(&ctx)
    );
    let mut problems = Vec::new();
    if distinct.len() != tickets.len() {
        problems.push(format!(
            "only {} of {} tickets are distinct",
            distinct.len(),
            tickets.len()
        ));
    }
    if bits < 128.0 {
        problems.push(format!(
            "estimated {bits:.0} bits: {varying} of {length} positions vary, {alphabet} distinct characters seen (for example {} and {})",
            redact(&tickets[0]),
            redact(&tickets[1])
        ));
    }
    verdict(expected, problems)
}

/// Bearer credentials and tickets the server refuses are not echoed in its error bodies or
/// close reasons (FERRY-TICKET-6).
pub(super) async fn not_echoed(ctx: Ctx) -> CaseResult {
    let secret = format!("conformance-secret-{:016x}", rand::random::<u64>());
    let header = Cred::Header(format!("Bearer {secret}"));
    let mut problems = Vec::new();
    for (method, path) in [
        (Method::POST, "/v1/tickets".to_owned()),
        (Method::POST, "/v1/publish".to_owned()),
        (
            Method::GET,
            format!("/v1/history?channel={}", ctx.channel(0)),
        ),
    ] {
        let body = (method == Method::POST && path == "/v1/publish").then(|| {
            serde_json::json!({ "channel": ctx.channel(0), "idempotency_key": "k", "payload": ctx.payload() })
                .to_string()
        });
        let reply = ctx.http.call(method.clone(), &path, &header, body).await?;
        if reply.text.contains(&secret) {
            problems.push(format!(
                "{method} {path} with a refused bearer credential echoes it in its body: {}",
                reply.shown()
            ));
        }
    }
    let forged = forged_ticket();
    if let Ok(mut session) = ctx
        .connect(Some(&format!("ticket={forged}")), Some(SUBPROTOCOL))
        .await?
    {
        let (before, end) = session.until_end(REPLY_WAIT).await;
        let mut seen: Vec<String> = before.iter().map(summary).collect();
        if let Got::Closed { reason, .. } = &end {
            seen.push(reason.clone());
        }
        if seen.iter().any(|text| text.contains(&forged)) {
            problems.push(format!(
                "a session with a forged ticket is told the ticket back: {}",
                end.describe()
            ));
        }
    }
    verdict(
        format!(
            "refused credentials and tickets never appear in error bodies, error messages or close reasons ({})",
            cite(&ctx)
        ),
        problems,
    )
}

/// The first frame of a session is a schema-valid welcome for the ticket's user, on a
/// session whose upgrade selected ferry.v1 (FERRY-WELCOME-1, FERRY-TRANSPORT-1,
/// FERRY-TICKET-1).
pub(super) async fn welcome_first(ctx: Ctx) -> CaseResult {
    let ticket = ctx.http.ticket(&Cred::Main).await?;
    let query = format!("ticket={}", ticket.ticket.as_str());
    let mut session = match ctx.connect(Some(&query), Some(SUBPROTOCOL)).await? {
        Ok(session) => session,
        Err(e @ ConnectError::Unreachable(_)) => return Err(Finding::error(e.describe())),
        Err(e) => {
            return Err(Finding::fail(
                "an upgrade offering ferry.v1 with a fresh ticket switches protocols (101) and selects ferry.v1 (FERRY-TRANSPORT-1)",
                e.describe(),
            ));
        }
    };
    if session.protocol.as_deref() != Some(SUBPROTOCOL) {
        return Err(Finding::fail(
            "the 101 answer selects the subprotocol ferry.v1 (Sec-WebSocket-Protocol: ferry.v1) (FERRY-TRANSPORT-1)",
            format!(
                "selected subprotocol: {}",
                session.protocol.as_deref().unwrap_or("none")
            ),
        ));
    }
    let got = session.recv_raw(REPLY_WAIT).await;
    let Got::Message(ServerMessage::Welcome(welcome), _) = got else {
        return Err(Finding::fail(
            "the first frame of the session is a welcome that matches the schema, every field present and within its bounds (FERRY-WELCOME-1)",
            format!("first {}", got.describe()),
        ));
    };
    verdict(
        format!(
            "the welcome names the user the ticket was issued to ({}) (FERRY-TICKET-1)",
            ticket.user.as_str()
        ),
        if welcome.user == ticket.user {
            Vec::new()
        } else {
            vec![format!(
                "the welcome names user {} while the ticket was issued to {}",
                welcome.user.as_str(),
                ticket.user.as_str()
            )]
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tickets_score_above_128_bits_and_counters_below() {
        let random: Vec<String> = (0..ENTROPY_SAMPLES)
            .map(|_| forged_ticket()[..22].to_owned())
            .collect();
        let (bits, ..) = entropy_estimate(&random);
        assert!(bits >= 128.0, "22 random base64url characters: {bits}");
        let counters: Vec<String> = (0..ENTROPY_SAMPLES)
            .map(|n| format!("ticket-0000000000000000000000000000000{n:05}"))
            .collect();
        let (bits, ..) = entropy_estimate(&counters);
        assert!(bits < 128.0, "a counter: {bits}");
        let hex: Vec<String> = (0..ENTROPY_SAMPLES)
            .map(|_| format!("{:032x}", rand::random::<u128>()))
            .collect();
        let (bits, ..) = entropy_estimate(&hex);
        assert!(bits >= 127.9, "128 random bits in hex: {bits}");
    }
}
