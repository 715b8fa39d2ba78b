//! RPC calls: the checks a server makes before a call runs (FERRY-RPC-1), which need no
//! backend, and what it does with a call that runs on the application's backend, which the
//! runner plays (`--backend-listen`): the result or refusal relayed, the timeout, at most one
//! execution per key, a result that breaks its schema, a failing backend, and the bearer
//! secret (FERRY-RPC-1 to FERRY-RPC-5, FERRY-HOOK-4).

use std::time::{Duration, Instant};

use ferry_protocol::{ErrorCode, MethodName, ServerMessage, permits_call};
use serde_json::{Value, json};

use super::cite;
use crate::case::{CaseResult, Finding};
use crate::server::backend::{Script, ScriptedBackend};
use crate::server::checks::a;
use crate::server::ctx::{Ctx, REPLY_WAIT, Who};
use crate::server::driver::Session;

/// A method name no application declares: the case's own, under the runner's name.
fn undeclared_method(ctx: &Ctx) -> String {
    format!(
        "ferry-conformance:undeclared-{}",
        ctx.key("m")
            .to_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "-")
    )
}

/// Whether the session's welcome grants call on `method`.
fn may_call(session: &Session, method: &str) -> bool {
    MethodName::try_from(method).is_ok_and(|m| permits_call(&session.welcome().permissions, &m))
}

/// Sends an rpc of `method` and expects an error with its id and `code`; the session must
/// stay open.
async fn expect_refusal(
    ctx: &Ctx,
    session: &mut Session,
    method: &str,
    code: ErrorCode,
    expected: &str,
) -> CaseResult {
    let id = session.id("rpc");
    let request = json!({ "type": "rpc", "id": id, "method": method, "idempotency_key": ctx.key("rpc"), "params": {} });
    let reply = session.request(&request, REPLY_WAIT, expected).await?;
    match &reply {
        ServerMessage::Error(e)
            if e.id.as_deref().map(String::as_str) == Some(id.as_str()) && e.error.code == code =>
        {
            ctx.still_open(session, "a refused call does not end the session: a following unsubscribe gets its unsubscribed").await
        }
        other => Err(Finding::fail(expected, a(other))),
    }
}

/// A call of a method the server's application does not declare, by a session that may call
/// it, gets unknown_method with its id and runs nothing (FERRY-RPC-1).
pub(super) async fn unknown_method(ctx: Ctx) -> CaseResult {
    let method = undeclared_method(&ctx);
    let mut session = ctx.session(Who::Main).await?;
    if !may_call(&session, &method) {
        return Err(Finding::skip(format!(
            "the --token's welcome grants no call on {method}, so the server must answer forbidden before it looks the method up (FERRY-RPC-1); give the --token a permission with \"call\": true on a pattern that matches it (\"**\" does) to run this case"
        )));
    }
    let expected = format!(
        "rpc of {method}, which no application declares, answered with an error with its id and code unknown_method ({})",
        cite(&ctx)
    );
    expect_refusal(
        &ctx,
        &mut session,
        &method,
        ErrorCode::UnknownMethod,
        &expected,
    )
    .await
}

/// A call by a session whose permissions grant no call on the method gets forbidden with its
/// id, whether or not the method exists (FERRY-RPC-1, FERRY-SECURITY-2).
pub(super) async fn call_forbidden(ctx: Ctx) -> CaseResult {
    let method = undeclared_method(&ctx);
    let mut session = ctx.session(Who::Restricted).await?;
    if may_call(&session, &method) {
        return Err(Finding::skip(format!(
            "the --restricted-token's welcome grants call on {method}; pass a restricted credential without call on it to run this case"
        )));
    }
    let expected = format!(
        "rpc of {method} by the restricted session, whose permissions grant no call on it, answered with an error with its id and code forbidden ({})",
        cite(&ctx)
    );
    expect_refusal(&ctx, &mut session, &method, ErrorCode::Forbidden, &expected).await
}

/// A session of the main credential that may call `--rpc-method`, and the runner's backend.
async fn caller(ctx: &Ctx) -> Result<(Session, &ScriptedBackend), Finding> {
    let backend = ctx.backend()?;
    let session = ctx.session(Who::Main).await?;
    let method = &ctx.options().rpc_method;
    if !may_call(&session, method) {
        return Err(Finding::skip(format!(
            "the --token's welcome grants no call on {method} (--rpc-method); give it a permission with \"call\": true on a pattern that matches it to run this case"
        )));
    }
    Ok((session, backend))
}

/// Sends a call of `--rpc-method` with its params under `key`, and waits `wait` for the reply.
async fn call(
    ctx: &Ctx,
    session: &mut Session,
    key: &str,
    wait: Duration,
    expected: &str,
) -> Result<(String, ServerMessage), Finding> {
    let id = session.id("rpc");
    let request = json!({ "type": "rpc", "id": id, "method": ctx.options().rpc_method, "idempotency_key": key, "params": ctx.options().rpc_params });
    let reply = session.request(&request, wait, expected).await?;
    Ok((id, reply))
}

/// Fails unless `reply` is the rpc_result of call `id` with `result` and `duplicate`.
fn expect_result(
    ctx: &Ctx,
    reply: &ServerMessage,
    id: &str,
    result: &Value,
    duplicate: bool,
    expected: &str,
) -> CaseResult {
    match reply {
        ServerMessage::RpcResult(answer)
            if answer.id.as_str() == id
                && answer.method.as_str() == ctx.options().rpc_method
                && answer.result.to_value().ok().as_ref() == Some(result)
                && answer.duplicate == duplicate =>
        {
            Ok(())
        }
        other => Err(Finding::fail(expected, a(other))),
    }
}

/// Fails unless `reply` is an error of call `id` with `code`.
fn expect_code(reply: &ServerMessage, id: &str, code: ErrorCode, expected: &str) -> CaseResult {
    match reply {
        ServerMessage::Error(e)
            if e.id.as_deref().map(String::as_str) == Some(id) && e.error.code == code =>
        {
            Ok(())
        }
        other => Err(Finding::fail(expected, a(other))),
    }
}

/// Fails unless the backend ran the calls of `key` exactly once.
fn ran_once(backend: &ScriptedBackend, key: &str, rule: &str) -> CaseResult {
    match backend.runs(key) {
        1 => Ok(()),
        n => Err(Finding::fail(
            format!("the call with idempotency key {key} run on the backend exactly once ({rule})"),
            format!("the backend received it {n} times"),
        )),
    }
}

/// A call runs on the backend and its result comes back as rpc_result with the call's id,
/// method and result, duplicate false (FERRY-RPC-1).
pub(super) async fn result_relayed(ctx: Ctx) -> CaseResult {
    let (mut session, backend) = caller(&ctx).await?;
    let key = ctx.key("rpc-result");
    let result = ctx.options().rpc_result.clone();
    backend.script(
        &key,
        Script::Result {
            result: result.clone(),
            delay: Duration::ZERO,
        },
    );
    let expected = format!(
        "rpc of {} answered with rpc_result carrying its id, the method and the backend's result {result}, duplicate false ({})",
        ctx.options().rpc_method,
        cite(&ctx)
    );
    let (id, reply) = call(&ctx, &mut session, &key, REPLY_WAIT, &expected).await?;
    expect_result(&ctx, &reply, &id, &result, false, &expected)?;
    ran_once(backend, &key, "FERRY-RPC-1")
}

/// The backend's refusal reaches the client as the error it chose, with the call's id
/// (FERRY-RPC-1, FERRY-ERROR-1).
pub(super) async fn refusal_relayed(ctx: Ctx) -> CaseResult {
    let (mut session, backend) = caller(&ctx).await?;
    let key = ctx.key("rpc-refused");
    backend.script(&key, Script::Refuse { code: "rejected" });
    let expected = format!(
        "rpc that the backend refuses with rejected answered with an error with its id and code rejected, not retryable ({})",
        cite(&ctx)
    );
    let (id, reply) = call(&ctx, &mut session, &key, REPLY_WAIT, &expected).await?;
    expect_code(&reply, &id, ErrorCode::Rejected, &expected)?;
    if let ServerMessage::Error(e) = &reply
        && e.error.retryable
    {
        return Err(Finding::fail(expected, a(&reply)));
    }
    ctx.still_open(&mut session, "a refused call does not end the session")
        .await
}

/// A repeated key, on the same session and on another session of the same user, gets the
/// first call's result with duplicate true, and the call runs once (FERRY-RPC-3).
pub(super) async fn repeat_runs_once(ctx: Ctx) -> CaseResult {
    let (mut session, backend) = caller(&ctx).await?;
    let key = ctx.key("rpc-repeat");
    let result = ctx.options().rpc_result.clone();
    backend.script(
        &key,
        Script::Result {
            result: result.clone(),
            delay: Duration::ZERO,
        },
    );
    let first = format!(
        "the first rpc with key {key} answered with the backend's result, duplicate false ({})",
        cite(&ctx)
    );
    let (id, reply) = call(&ctx, &mut session, &key, REPLY_WAIT, &first).await?;
    expect_result(&ctx, &reply, &id, &result, false, &first)?;
    let again = format!(
        "the same call with the same key answered with the first call's result, duplicate true, without running again ({})",
        cite(&ctx)
    );
    let (id, reply) = call(&ctx, &mut session, &key, REPLY_WAIT, &again).await?;
    expect_result(&ctx, &reply, &id, &result, true, &again)?;
    let mut other = ctx.session(Who::Main).await?;
    let elsewhere = format!(
        "the same call from another session of the same user answered with the first call's result, duplicate true ({})",
        cite(&ctx)
    );
    let (id, reply) = call(&ctx, &mut other, &key, REPLY_WAIT, &elsewhere).await?;
    expect_result(&ctx, &reply, &id, &result, true, &elsewhere)?;
    ran_once(backend, &key, "FERRY-RPC-3")
}

/// A call the backend answers later than the advertised rpc.timeout_ms gets timeout
/// (retryable), no sooner than the timeout; a retry with the same key once the backend has
/// answered runs nothing more (FERRY-RPC-2, FERRY-RPC-3).
pub(super) async fn timeout_then_retry(ctx: Ctx) -> CaseResult {
    let (mut session, backend) = caller(&ctx).await?;
    let Some(policy) = session.welcome().rpc.clone() else {
        return Err(Finding::fail(
            format!(
                "a welcome advertising rpc.timeout_ms from a server that declares {} ({})",
                ctx.options().rpc_method,
                cite(&ctx)
            ),
            "a welcome without rpc",
        ));
    };
    let timeout = Duration::from_millis(policy.timeout_ms.get());
    // The backend answers half a timeout late: after the session's timeout, within twice it.
    let delay = timeout + timeout / 2;
    ctx.within_budget(
        delay + timeout,
        "the advertised rpc.timeout_ms and a late answer",
    )?;
    let key = ctx.key("rpc-timeout");
    let result = ctx.options().rpc_result.clone();
    backend.script(
        &key,
        Script::Result {
            result: result.clone(),
            delay,
        },
    );
    let tolerance = ctx.tolerance();
    let expected = format!(
        "rpc whose backend answers after {} ms answered with an error with its id and code timeout, retryable, {} ms after it was sent (+{} ms tolerance) ({})",
        delay.as_millis(),
        timeout.as_millis(),
        tolerance.as_millis(),
        cite(&ctx)
    );
    let sent = Instant::now();
    let (id, reply) = call(
        &ctx,
        &mut session,
        &key,
        timeout + tolerance + REPLY_WAIT,
        &expected,
    )
    .await?;
    let took = sent.elapsed();
    expect_code(&reply, &id, ErrorCode::Timeout, &expected)?;
    if let ServerMessage::Error(e) = &reply
        && !e.error.retryable
    {
        return Err(Finding::fail(expected, a(&reply)));
    }
    // The reply cannot have come before the server's timer; a late one on a busy machine is
    // within the tolerance or the run is disturbed.
    if took + Duration::from_millis(5) < timeout {
        return Err(Finding::fail(
            expected,
            format!(
                "timeout after {} ms, before rpc.timeout_ms",
                took.as_millis()
            ),
        ));
    }
    tokio::time::sleep(delay.saturating_sub(sent.elapsed()) + REPLY_WAIT / 4).await;
    let retried = format!(
        "the call retried with key {key} after the backend answered gets the first call's answer (rpc_result, duplicate true) or, from a server that gave up on the backend, unavailable, and runs nothing more ({})",
        cite(&ctx)
    );
    let (id, reply) = call(&ctx, &mut session, &key, REPLY_WAIT, &retried).await?;
    let answered = expect_result(&ctx, &reply, &id, &result, true, &retried);
    if answered.is_err() {
        expect_code(&reply, &id, ErrorCode::Unavailable, &retried)?;
    }
    ran_once(backend, &key, "FERRY-RPC-3")
}

/// A result that breaks the method's result schema is not forwarded: the client gets
/// internal with the call's id (FERRY-RPC-4).
pub(super) async fn invalid_result_withheld(ctx: Ctx) -> CaseResult {
    let (mut session, backend) = caller(&ctx).await?;
    let key = ctx.key("rpc-invalid");
    let invalid = ctx.options().rpc_invalid_result.clone();
    backend.script(
        &key,
        Script::Result {
            result: invalid.clone(),
            delay: Duration::ZERO,
        },
    );
    let expected = format!(
        "rpc whose backend returns {invalid}, which breaks the method's result schema (--rpc-invalid-result), answered with an error with its id and code internal, never the result ({})",
        cite(&ctx)
    );
    let (id, reply) = call(&ctx, &mut session, &key, REPLY_WAIT, &expected).await?;
    expect_code(&reply, &id, ErrorCode::Internal, &expected)
}

/// A backend that answers 503 makes the call unavailable, retryable (FERRY-RPC-5).
pub(super) async fn backend_failure(ctx: Ctx) -> CaseResult {
    let (mut session, backend) = caller(&ctx).await?;
    let key = ctx.key("rpc-503");
    backend.script(&key, Script::Status(503));
    let expected = format!(
        "rpc whose backend answers HTTP 503 answered with an error with its id and code unavailable, retryable ({})",
        cite(&ctx)
    );
    let (id, reply) = call(&ctx, &mut session, &key, REPLY_WAIT, &expected).await?;
    expect_code(&reply, &id, ErrorCode::Unavailable, &expected)?;
    match &reply {
        ServerMessage::Error(e) if e.error.retryable => Ok(()),
        other => Err(Finding::fail(expected, a(other))),
    }
}

/// The server calls its backend with the shared secret as a bearer token (FERRY-HOOK-4).
pub(super) async fn bearer_secret(ctx: Ctx) -> CaseResult {
    let (mut session, backend) = caller(&ctx).await?;
    if !backend.has_secret() {
        return Err(Finding::skip(
            "needs the secret the server sends its backend: pass --backend-secret (ferry-server: the same --backend-secret)",
        ));
    }
    let before = backend.unauthenticated();
    let key = ctx.key("rpc-secret");
    let result = ctx.options().rpc_result.clone();
    backend.script(
        &key,
        Script::Result {
            result: result.clone(),
            delay: Duration::ZERO,
        },
    );
    let expected = format!(
        "the server's call to the backend carrying Authorization: Bearer <--backend-secret>, so the call runs and its result comes back ({})",
        cite(&ctx)
    );
    let (id, reply) = call(&ctx, &mut session, &key, REPLY_WAIT, &expected).await?;
    if backend.unauthenticated() > before {
        return Err(Finding::fail(
            expected,
            "the backend received a call without the bearer secret",
        ));
    }
    expect_result(&ctx, &reply, &id, &result, false, &expected)
}
