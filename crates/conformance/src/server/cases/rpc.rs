//! RPC calls: the checks a server makes before a call runs (FERRY-RPC-1), which need no
//! backend. A call that runs needs the application's backend, which the runner does not serve.

use ferry_protocol::{ErrorCode, MethodName, ServerMessage, permits_call};
use serde_json::json;

use super::cite;
use crate::case::{CaseResult, Finding};
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
