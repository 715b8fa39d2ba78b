//! The HTTP endpoints of `endpoints.json`: tickets, backend publish, history, health, and the
//! WebSocket upgrade. Every error answers with an `ErrorBody` and the status the table gives
//! (FERRY-ERROR-3).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use ferry_protocol::server::{Grant, check_event_size};
use ferry_protocol::tables::{ERROR_CODES, endpoint};
use ferry_protocol::{
    Access, ErrorBody, ErrorCode, ErrorInfo, HealthResponse, HistoryQuery, PublishRequest,
    SUBPROTOCOL, TicketResponse, permits,
};
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::{debug, info, warn};

use crate::auth::Identity;
use crate::broker::Broker;
use crate::limits::Metered;
use crate::namespaces::PayloadError;
use crate::transport::Peer;
use crate::{Server, connection};

/// The read buffer of each WebSocket connection, and the most one read of the socket takes:
/// room for the frames a client sends (requests, publishes of a few hundred bytes) with the
/// least memory held by a session that sends nothing. A larger frame grows the buffer for
/// itself and arrives in reads of this size.
const READ_BUFFER_BYTES: usize = 2 * 1024;

/// How long a request body may take to arrive in full; a body that stops arriving is answered
/// with `bad_request` and its connection closed, so it pins no memory.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The server's routes.
pub fn router<B: Broker>(server: Arc<Server<B>>) -> Router {
    use axum::routing::{get, post};
    Router::new()
        .route(endpoint::ISSUE_TICKET.path, post(issue_ticket::<B>))
        .route(endpoint::CONNECT.path, get(connect::<B>))
        .route(endpoint::PUBLISH.path, post(publish::<B>))
        .route(endpoint::HISTORY.path, get(history::<B>))
        .route(endpoint::HEALTH.path, get(health::<B>))
        .route(endpoint::READY.path, get(ready::<B>))
        .route(endpoint::METRICS.path, get(metrics::<B>))
        .fallback(|| async { error(ErrorCode::NotFound, "no endpoint at this path") })
        // Axum keeps its `Allow` header on this answer.
        .method_not_allowed_fallback(|method: Method| async move {
            error(
                ErrorCode::MethodNotAllowed,
                format!("the endpoint at this path does not take {method}"),
            )
        })
        .layer(axum::middleware::map_response_with_state(
            server.clone(),
            count_rejection::<B>,
        ))
        .layer(cors(&server))
        .with_state(server)
}

/// CORS for browser pages on other origins (FERRY-SECURITY-1): the same Origin allowlist
/// that guards the WebSocket upgrade decides which pages may call the HTTP endpoints, preflight
/// included. Credentials are bearer tokens in `Authorization`, never cookies, so no
/// `Access-Control-Allow-Credentials`.
fn cors<B: Broker>(server: &Arc<Server<B>>) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let config = server.clone();
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, _| {
            origin
                .to_str()
                .is_ok_and(|origin| config.config.allows_origin(origin))
        }))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(std::time::Duration::from_secs(600))
}

/// Counts every HTTP error response by its error code (carried in the response's extensions).
async fn count_rejection<B: Broker>(
    State(server): State<Arc<Server<B>>>,
    response: Response,
) -> Response {
    if let Some(code) = response.extensions().get::<ErrorCode>()
        && let Ok(serde_json::Value::String(code)) = serde_json::to_value(code)
    {
        server.metrics.reject(&code);
    }
    response
}

/// `GET /metrics`: OpenMetrics (the documented format) to a scraper that asks for it, as
/// Prometheus does; Prometheus' classic text format otherwise, which every older tool and
/// `promtool check metrics` read.
async fn metrics<B: Broker>(State(server): State<Arc<Server<B>>>, headers: HeaderMap) -> Response {
    server
        .metrics
        .sessions
        .set(i64::try_from(server.live_sessions()).unwrap_or(i64::MAX));
    if let Some((held, _)) = server.broker.history_bytes() {
        server
            .metrics
            .history_bytes
            .set(i64::try_from(held).unwrap_or(i64::MAX));
    }
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|accept| accept.contains("application/openmetrics-text"));
    if openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                endpoint::METRICS.response_content_type,
            )],
            server.metrics.encode(),
        )
            .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, crate::metrics::CLASSIC_CONTENT_TYPE)],
            server.metrics.encode_classic(),
        )
            .into_response()
    }
}

/// An error response: the code's HTTP status and retryable flag come from the error table.
pub(crate) fn error(code: ErrorCode, message: impl Into<String>) -> Response {
    error_response(ferry_protocol::server::error_info(code, &message.into()))
}

/// The response for `info`, with the status the error table gives its code.
fn error_response(info: ErrorInfo) -> Response {
    let code = info.code;
    let row = ERROR_CODES
        .iter()
        .find(|row| row.code == code)
        .expect("every error code is in the table");
    let status = StatusCode::from_u16(row.http_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Json(ErrorBody { error: info })).into_response();
    response.extensions_mut().insert(code);
    response
}

/// Takes one of the caller's tokens on `endpoint` (FERRY-RATE-4); `None` when it had one, and
/// when its bucket is empty the 429 to answer: `rate_limited` with `retry_after_ms`, and `Retry-After` in whole
/// seconds, rounded up (RFC 9110 §10.2.3).
fn meter<B: Broker>(server: &Server<B>, endpoint: Metered, caller: &Identity) -> Option<Response> {
    let wait = match server.callers.take(endpoint, &caller.user, server.now()) {
        Ok(()) => return None,
        Err(wait) => wait,
    };
    server
        .metrics
        .http_rate_limited
        .get_or_create(&crate::metrics::Endpoint {
            endpoint: endpoint.name(),
        })
        .inc();
    debug!(user = %caller.user.as_str(), endpoint = endpoint.name(), "rate limited");
    let message = format!(
        "too many requests to {}; retry in {} ms",
        endpoint.name(),
        wait.as_millis()
    );
    let mut response = error_response(ferry_protocol::server::retry_after_info(
        ErrorCode::RateLimited,
        &message,
        wait,
    ));
    let seconds = wait.as_millis().div_ceil(1000).max(1);
    response.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from(u64::try_from(seconds).unwrap_or(u64::MAX)),
    );
    Some(response)
}

/// The connection a request came on, as the transport hands it to the handlers.
type OnPeer = Option<Extension<Arc<Peer>>>;

/// The caller's identity from its bearer credential; a valid one also counts its connection as
/// authenticated from now on.
fn identity<B: Broker>(server: &Server<B>, headers: &HeaderMap, peer: &OnPeer) -> Option<Identity> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let identity = server.auth.check(authorization)?;
    if let Some(Extension(peer)) = peer {
        peer.authenticated();
    }
    Some(identity)
}

/// A 401 with `WWW-Authenticate: Bearer` (RFC 6750): `error="invalid_token"` when a
/// credential was sent and refused, the bare scheme when none was sent.
fn unauthorized(headers: &HeaderMap) -> Response {
    let mut response = error(
        ErrorCode::Unauthorized,
        "the Authorization header carries no valid bearer credential",
    );
    let challenge = if headers.contains_key(header::AUTHORIZATION) {
        "Bearer error=\"invalid_token\""
    } else {
        "Bearer"
    };
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static(challenge),
    );
    response
}

async fn issue_ticket<B: Broker>(
    State(server): State<Arc<Server<B>>>,
    headers: HeaderMap,
    peer: OnPeer,
) -> Response {
    if server.is_draining() {
        return error(ErrorCode::Unavailable, "the server is shutting down");
    }
    let Some(identity) = identity(&server, &headers, &peer) else {
        return unauthorized(&headers);
    };
    if let Some(limited) = meter(&server, Metered::IssueTicket, &identity) {
        return limited;
    }
    let grant = Grant {
        user: identity.user.clone(),
        permissions: identity.permissions.clone(),
    };
    match server
        .broker
        .issue_ticket(grant, server.config.ticket_ttl, server.now())
        .await
    {
        Ok(ticket) => {
            let body = TicketResponse {
                ticket,
                expires_in_ms: u64::try_from(server.config.ticket_ttl.as_millis())
                    .ok()
                    .and_then(|ms| ms.try_into().ok())
                    .expect("the ttl was checked at start"),
                user: identity.user.clone(),
            };
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Err(e) => error(e.code(), e.to_string()),
    }
}

async fn connect<B: Broker>(
    State(server): State<Arc<Server<B>>>,
    headers: HeaderMap,
    peer: OnPeer,
    Query(query): Query<HashMap<String, String>>,
    upgrade: Result<crate::socket::Upgrade, crate::socket::NotAnUpgrade>,
) -> Response {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return error(
                ErrorCode::BadRequest,
                format!("this endpoint takes a WebSocket upgrade: {rejection}"),
            );
        }
    };
    if server.is_draining() {
        return error(ErrorCode::Unavailable, "the server is shutting down");
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
        && !server.config.allows_origin(origin)
    {
        return error(
            ErrorCode::Forbidden,
            format!("the Origin {origin} may not open sessions; allow it with --allowed-origins"),
        );
    }
    let max = server.config.session.limits.max_message_bytes.get() as usize;
    let config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        // tungstenite's default 128 KiB read buffer is most of an idle connection's memory;
        // 2 KiB cuts it from about 134 KiB to 7 KiB a connection (BENCHMARKS.md), and the
        // buffer still grows for larger frames.
        .read_buffer_size(READ_BUFFER_BYTES);
    if !upgrade.offers(SUBPROTOCOL) {
        // FERRY-TRANSPORT-1: a client that does not speak ferry.v1 is refused at the upgrade.
        return error(
            ErrorCode::BadRequest,
            format!("the WebSocket must offer the {SUBPROTOCOL} subprotocol"),
        );
    }
    // The ticket is redeemed on the upgraded connection, which a rejection then closes with 4401.
    let ticket = query.get("ticket").cloned();
    upgrade.accept(SUBPROTOCOL, config, move |socket| {
        connection::run(server, socket, ticket, peer.map(|Extension(peer)| peer))
    })
}

async fn publish<B: Broker>(
    State(server): State<Arc<Server<B>>>,
    headers: HeaderMap,
    peer: OnPeer,
    body: Body,
) -> Response {
    // The credential comes from the headers before a byte of the body is read, so an
    // unauthenticated caller cannot make the server buffer anything.
    let Some(identity) = identity(&server, &headers, &peer) else {
        return unauthorized(&headers);
    };
    if server.is_draining() {
        return error(ErrorCode::Unavailable, "the server is shutting down");
    }
    // Metered before the body is read: a caller over its rate costs no buffering either.
    if let Some(limited) = meter(&server, Metered::Publish, &identity) {
        return limited;
    }
    let max = server.config.session.limits.max_message_bytes.get() as usize;
    let body = match read_body(&headers, body, max).await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    let request: PublishRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return error(
                ErrorCode::BadRequest,
                format!("the body is not a PublishRequest: {e}"),
            );
        }
    };
    if !identity.backend || !permits(&identity.permissions, &request.channel, Access::Write) {
        return error(
            ErrorCode::Forbidden,
            format!(
                "no backend write permission on {}",
                request.channel.as_str()
            ),
        );
    }
    // FERRY-SIZE-4: the body fits, but the event it makes must fit an event frame too.
    if let Err(too_large) = check_event_size(&request.channel, &request.payload, max) {
        return error(ErrorCode::MessageTooLarge, too_large.to_string());
    }
    match server.namespaces.check(&request.channel, &request.payload) {
        Ok(()) => {}
        Err(PayloadError::UnknownChannel) => {
            return error(
                ErrorCode::UnknownChannel,
                format!(
                    "{} belongs to no declared namespace",
                    request.channel.as_str()
                ),
            );
        }
        Err(refusal) => return error(refusal.code(), refusal.to_string()),
    }
    match server
        .broker
        .publish(
            &request.channel,
            request.idempotency_key,
            request.payload,
            server.now(),
            crate::wall_clock_ms(),
        )
        .await
    {
        Ok(ack) => {
            info!(channel = %ack.channel.as_str(), seq = ack.position.seq.get(), duplicate = ack.duplicate, "backend publish");
            (StatusCode::OK, Json(ack)).into_response()
        }
        Err(e) => {
            warn!(error = %e, "backend publish failed");
            server.metrics.publish_failed(&e);
            error(e.code(), e.to_string())
        }
    }
}

/// Reads a request body of at most `max` bytes within [`BODY_READ_TIMEOUT`]: a
/// `Content-Length` above `max` is refused before reading, a body that grows past it as soon
/// as it does (`message_too_large`, FERRY-SIZE-2), and one that stops arriving when the time
/// is up (`bad_request`).
async fn read_body(headers: &HeaderMap, body: Body, max: usize) -> Result<Bytes, Response> {
    let too_large = |length: &dyn std::fmt::Display| {
        error(
            ErrorCode::MessageTooLarge,
            format!("the body is {length} bytes, above the maximum of {max}"),
        )
    };
    if let Some(length) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && length > max as u64
    {
        return Err(too_large(&length));
    }
    match tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, max)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            let length_limited = std::error::Error::source(&e)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            if length_limited {
                Err(too_large(&format!("more than {max}")))
            } else {
                Err(error(
                    ErrorCode::BadRequest,
                    format!("the body could not be read: {e}"),
                ))
            }
        }
        Err(_) => Err(error(
            ErrorCode::BadRequest,
            format!(
                "the body did not arrive in full within {} s",
                BODY_READ_TIMEOUT.as_secs()
            ),
        )),
    }
}

async fn history<B: Broker>(
    State(server): State<Arc<Server<B>>>,
    headers: HeaderMap,
    peer: OnPeer,
    Query(raw): Query<HashMap<String, String>>,
) -> Response {
    let Some(identity) = identity(&server, &headers, &peer) else {
        return unauthorized(&headers);
    };
    // Query strings carry text; the schema's HistoryQuery types them.
    let mut typed = serde_json::Map::new();
    for (key, value) in raw {
        let value = match key.as_str() {
            "after_seq" | "limit" => value
                .parse::<u64>()
                .map(serde_json::Value::from)
                .unwrap_or(serde_json::Value::String(value)),
            _ => serde_json::Value::String(value),
        };
        typed.insert(key, value);
    }
    let query: HistoryQuery = match serde_json::from_value(serde_json::Value::Object(typed)) {
        Ok(query) => query,
        Err(e) => {
            return error(
                ErrorCode::BadRequest,
                format!("the query is not a HistoryQuery: {e}"),
            );
        }
    };
    if !permits(&identity.permissions, &query.channel, Access::Read) {
        return error(
            ErrorCode::Forbidden,
            format!("no read permission on {}", query.channel.as_str()),
        );
    }
    if !server.namespaces.declares(&query.channel) {
        return error(
            ErrorCode::UnknownChannel,
            format!(
                "{} belongs to no declared namespace",
                query.channel.as_str()
            ),
        );
    }
    let limit = query.limit.map_or(100, |l| l.get() as usize);
    let after = query.after_seq.map(|seq| seq.get());
    match server
        .broker
        .history(
            &query.channel,
            query.epoch.as_ref(),
            after,
            limit,
            server.now(),
        )
        .await
    {
        Ok(page) => (StatusCode::OK, Json(page)).into_response(),
        Err(e) => error(e.code(), e.to_string()),
    }
}

/// `GET /v1/health`, liveness: 200 for as long as the process serves, draining or not
/// (FERRY-SHUTDOWN-5).
async fn health<B: Broker>(State(server): State<Arc<Server<B>>>) -> Response {
    (StatusCode::OK, Json(health_response(server.is_draining()))).into_response()
}

/// `GET /v1/ready`, readiness for load balancers: 503 `unavailable` from the moment a drain
/// starts (FERRY-SHUTDOWN-5).
async fn ready<B: Broker>(State(server): State<Arc<Server<B>>>) -> Response {
    if server.is_draining() {
        error(ErrorCode::Unavailable, "the server is draining")
    } else {
        (StatusCode::OK, Json(health_response(false))).into_response()
    }
}

fn health_response(draining: bool) -> HealthResponse {
    serde_json::from_value(json!({
        "status": if draining { "draining" } else { "ok" },
        "version": env!("CARGO_PKG_VERSION"),
    }))
    .expect("a valid health response")
}
