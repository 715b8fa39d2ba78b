//! Errors: the error table's flags on every error, and the HTTP endpoints' error answers
//! (FERRY-ERROR-1, FERRY-ERROR-3, FERRY-TICKET-1).

use std::time::Duration;

use ferry_protocol::{Access, ChannelName, ServerMessage, permits};
use reqwest::Method;
use serde_json::{Value, json};

use super::limits::{bucket, flood};
use super::{cite, param, param_code, verdict};
use crate::case::{CaseResult, Finding};
use crate::server::checks::{error_info_problems, http_error_problems, http_status};
use crate::server::ctx::{Ctx, Who};
use crate::server::driver::Session;
use crate::server::http::{Cred, Reply};

/// How long the table case waits for each provoked error.
const ERROR_WAIT: Duration = Duration::from_secs(2);

/// Sends `frame` and returns the first error answering it (by `id`, or with id null when the
/// frame has none), if one comes.
async fn provoke(session: &mut Session, frame: String, id: Option<&str>) -> Option<ServerMessage> {
    session.send_text(frame).await;
    session
        .take(
            |m| matches!(m, ServerMessage::Error(e) if e.id.as_deref().map(String::as_str) == id),
            ERROR_WAIT,
            "an error",
        )
        .await
        .ok()
}

/// What FERRY-ERROR-1 and FERRY-ERROR-3 ask of an HTTP error answer, whatever its code.
fn http_answer_problems(what: &str, reply: &Reply) -> Vec<String> {
    match reply.error_body() {
        Ok(body) => {
            let mut problems: Vec<String> = error_info_problems(&body.error)
                .into_iter()
                .map(|p| format!("{what}: {p}"))
                .collect();
            let status = http_status(body.error.code);
            if reply.status != status {
                problems.push(format!(
                    "{what}: HTTP {} with code {}, for which the error table gives HTTP {status} (FERRY-ERROR-3)",
                    reply.status, body.error.code
                ));
            }
            problems
        }
        Err(why) => vec![format!(
            "{what}: the error answer is not an ErrorBody ({why}): {} (FERRY-ERROR-3)",
            reply.shown()
        )],
    }
}

/// Errors provoked on every path the run can reach (malformed frames, refused requests,
/// the rate limit, refused HTTP requests) carry the error table's retryable flag,
/// retry_after_ms on rate_limited, and over HTTP the table's status (FERRY-ERROR-1,
/// FERRY-ERROR-3).
pub(super) async fn codes_match_table(ctx: Ctx) -> CaseResult {
    let mut seen: Vec<String> = Vec::new();
    let mut problems = Vec::new();
    let channel = ctx.channel(0);
    let mut check = |what: &str, answer: Option<ServerMessage>| match answer {
        Some(ServerMessage::Error(e)) => {
            seen.push(format!("{what}: {}", e.error.code));
            problems.extend(
                error_info_problems(&e.error)
                    .into_iter()
                    .map(|p| format!("{what}: {p}")),
            );
        }
        _ => ctx.t.note("runner", format!("{what}: no error came back")),
    };

    let mut session = ctx.subscribed(Who::Main, &channel).await?;
    check(
        "a frame that is not JSON",
        provoke(&mut session, "{\"type\":".into(), None).await,
    );
    check(
        "an unknown type",
        provoke(&mut session, json!({ "type": "hello" }).to_string(), None).await,
    );
    let id = session.id("again");
    check(
        "a second subscribe",
        provoke(
            &mut session,
            json!({ "type": "subscribe", "id": id, "channel": channel }).to_string(),
            Some(&id),
        )
        .await,
    );
    if let Some(invalid) = &ctx.options().invalid_payload {
        let id = session.id("invalid");
        check(
            "an invalid payload",
            provoke(
                &mut session,
                json!({ "type": "publish", "id": id, "channel": channel, "idempotency_key": ctx.key("invalid"), "payload": invalid }).to_string(),
                Some(&id),
            )
            .await,
        );
    }
    if let Some(outside) = &ctx.options().outside_channel
        && let Ok(name) = ChannelName::try_from(outside.as_str())
        && permits(&session.welcome().permissions, &name, Access::Read)
    {
        let id = session.id("outside");
        check(
            "a channel outside every namespace",
            provoke(
                &mut session,
                json!({ "type": "subscribe", "id": id, "channel": outside }).to_string(),
                Some(&id),
            )
            .await,
        );
    }
    if ctx.options().restricted_token.is_some() {
        let mut restricted = ctx.session(Who::Restricted).await?;
        if let Ok(forbidden) = ctx.forbidden_channel(restricted.welcome(), Access::Read) {
            let id = restricted.id("forbidden");
            check(
                "a forbidden subscribe",
                provoke(
                    &mut restricted,
                    json!({ "type": "subscribe", "id": id, "channel": forbidden }).to_string(),
                    Some(&id),
                )
                .await,
            );
        }
    }
    let mut flooded = ctx.session(Who::Main).await?;
    if let Ok((burst, rate)) = bucket(&flooded) {
        let n = burst + 3 + (rate as f64 * 0.1).ceil() as u64;
        let (_, answers, _) = flood(&ctx, &mut flooded, "rate", n).await;
        let limited = answers
            .by_id
            .into_values()
            .flatten()
            .chain(answers.unmatched_rate_limited)
            .find(|m| matches!(m, ServerMessage::Error(e) if e.error.code == ferry_protocol::ErrorCode::RateLimited));
        check("a burst beyond the rate limit", limited);
    }

    let body = |payload: &Value, channel: &str| {
        json!({ "channel": channel, "idempotency_key": ctx.key("http"), "payload": payload })
            .to_string()
    };
    let mut requests: Vec<(&str, Method, String, Cred, Option<String>)> = vec![
        (
            "POST /v1/tickets without a credential",
            Method::POST,
            "/v1/tickets".into(),
            Cred::Nothing,
            None,
        ),
        (
            "POST /v1/publish with a body that is not JSON",
            Method::POST,
            "/v1/publish".into(),
            Cred::Main,
            Some("{\"channel\":".into()),
        ),
        (
            "GET of an unknown path",
            Method::GET,
            "/v1/conformance-nowhere".into(),
            Cred::Nothing,
            None,
        ),
    ];
    if let Some(invalid) = &ctx.options().invalid_payload {
        requests.push((
            "POST /v1/publish with an invalid payload",
            Method::POST,
            "/v1/publish".into(),
            Cred::Main,
            Some(body(invalid, &channel)),
        ));
    }
    if let Some(outside) = &ctx.options().outside_channel {
        requests.push((
            "POST /v1/publish outside every namespace",
            Method::POST,
            "/v1/publish".into(),
            Cred::Main,
            Some(body(ctx.payload(), outside)),
        ));
    }
    if ctx.options().restricted_token.is_some() {
        requests.push((
            "POST /v1/publish with the restricted credential",
            Method::POST,
            "/v1/publish".into(),
            Cred::Restricted,
            Some(body(ctx.payload(), &channel)),
        ));
    }
    for (what, method, path, cred, body) in requests {
        let reply = ctx.http.call(method, &path, &cred, body).await?;
        if reply.status < 400 {
            ctx.t.note("runner", format!("{what}: not refused"));
            continue;
        }
        if let Some(code) = reply.error_code() {
            seen.push(format!("{what}: HTTP {} {code}", reply.status));
        }
        problems.extend(http_answer_problems(what, &reply));
    }
    if seen.is_empty() {
        return Err(Finding::error("no error could be provoked"));
    }
    ctx.t
        .note("runner", format!("errors checked: {}", seen.join("; ")));
    verdict(
        format!(
            "every error carries a code from the error table with the table's retryable flag, retry_after_ms on rate_limited, and over HTTP an ErrorBody with the table's status ({})",
            cite(&ctx)
        ),
        problems,
    )
}

/// An HTTP request (params `method`, `path`, `auth`, `body`) is refused with the status and
/// ErrorBody code the error table gives param `code` (FERRY-ERROR-3, and FERRY-TICKET-1 for
/// the ticket endpoint). In `path` and `body`, `{channel}` is a fresh channel and `{payload}`
/// the valid payload.
pub(super) async fn http_error(ctx: Ctx) -> CaseResult {
    let method: Method = param(&ctx, "method")?
        .parse()
        .map_err(|_| Finding::error("the param method is not an HTTP method"))?;
    let channel = ctx.channel(0);
    let fill = |text: &str| {
        text.replace("{channel}", &channel)
            .replace("{payload}", &ctx.payload().to_string())
            .replace("{key}", &ctx.key("http"))
    };
    let path = fill(param(&ctx, "path")?);
    let body = ctx.case.param_str("body").map(fill);
    let cred = match param(&ctx, "auth")? {
        "token" => Cred::Main,
        "none" => Cred::Nothing,
        "invalid" => Cred::Header(format!(
            "Bearer conformance-invalid-{:016x}",
            rand::random::<u64>()
        )),
        "basic" => Cred::Header("Basic Y29uZm9ybWFuY2U6aW52YWxpZA==".into()),
        other => {
            return Err(Finding::error(format!(
                "unknown param auth {other:?} (token, none, invalid or basic)"
            )));
        }
    };
    let code = param_code(&ctx, "code")?;
    let reply = ctx.http.call(method.clone(), &path, &cred, body).await?;
    verdict(
        format!(
            "{method} {path} answered HTTP {} with an ErrorBody whose code is {code} and whose retryable flag is the error table's ({})",
            http_status(code),
            cite(&ctx)
        ),
        http_error_problems(&reply, code)
            .into_iter()
            .chain(
                (reply.status < 400)
                    .then(|| format!("the request was not refused: {}", reply.shown())),
            )
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_error_with_a_status_other_than_the_tables_is_named() {
        let reply = Reply {
            status: 400,
            text: r#"{"error":{"code":"forbidden","message":"no","retryable":false}}"#.into(),
        };
        let problems = http_answer_problems("x", &reply);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("403"), "{problems:?}");
        let plain = Reply {
            status: 500,
            text: "oops".into(),
        };
        assert!(http_answer_problems("x", &plain)[0].contains("not an ErrorBody"));
    }
}
