//! The HTTP side of a server under test: tickets, backend publish and history, with every
//! exchange recorded in the case's transcript (credentials never are: FERRY-TICKET-6).

use std::sync::Arc;
use std::time::Duration;

use ferry_protocol::{ErrorBody, ErrorCode, HistoryResponse, PublishResponse, TicketResponse};
use futures_util::StreamExt;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::Shared;
use crate::case::Finding;
use crate::transcript::Transcript;

/// The link HTTP exchanges are recorded under.
const LINK: &str = "http";

/// How many times a publish answered with 429 is retried, after its retry_after_ms.
const RATE_LIMITED_RETRIES: u32 = 20;

/// An error with its sources: `a: b: c`.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Which credential a request carries.
#[derive(Debug, Clone)]
pub(crate) enum Cred {
    /// `--token`.
    Main,
    /// `--restricted-token`.
    Restricted,
    /// `--second-token`.
    Second,
    /// No `Authorization` header.
    Nothing,
    /// This `Authorization` header value (one the runner made up).
    Header(String),
}

impl Cred {
    fn shown(&self) -> String {
        match self {
            Self::Main => "Authorization: Bearer <--token>".into(),
            Self::Restricted => "Authorization: Bearer <--restricted-token>".into(),
            Self::Second => "Authorization: Bearer <--second-token>".into(),
            Self::Nothing => "no Authorization".into(),
            Self::Header(value) => format!("Authorization: {value}"),
        }
    }
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    /// The status code.
    pub(crate) status: u16,
    /// The body, as text.
    pub(crate) text: String,
}

impl Reply {
    /// The body as `T`.
    pub(crate) fn json<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_str(&self.text).map_err(|e| e.to_string())
    }

    /// The body as an ErrorBody.
    pub(crate) fn error_body(&self) -> Result<ErrorBody, String> {
        self.json()
    }

    /// The error code of an ErrorBody body.
    pub(crate) fn error_code(&self) -> Option<ErrorCode> {
        self.error_body().ok().map(|b| b.error.code)
    }

    /// The answer as failures show it: `HTTP 403 {"error":...}`.
    pub(crate) fn shown(&self) -> String {
        let body: String = self.text.chars().take(300).collect();
        format!("HTTP {} {body}", self.status)
    }
}

/// The server's HTTP endpoints, for one case (cheap to clone into tasks).
#[derive(Clone)]
pub(crate) struct Http {
    shared: Arc<Shared>,
    t: Transcript,
}

impl Http {
    /// The endpoints of the suite's server, recording into `t`.
    pub(crate) fn new(shared: &Arc<Shared>, t: Transcript) -> Self {
        Self {
            shared: shared.clone(),
            t,
        }
    }

    /// The server's base URL.
    pub(crate) fn base(&self) -> &str {
        &self.shared.base
    }

    /// Sends a request and records both ways. An answer that never comes is an error (no
    /// verdict), not a failure.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        cred: &Cred,
        body: Option<String>,
    ) -> Result<Reply, Finding> {
        self.call_quietly(method, path, cred, body, true).await
    }

    /// Like [`call`](Self::call), for a case that judges a missing answer itself: `Ok(Err)`
    /// says why no HTTP answer came.
    pub(crate) async fn try_call(
        &self,
        method: Method,
        path: &str,
        cred: &Cred,
        body: Option<String>,
    ) -> Result<Result<Reply, String>, Finding> {
        match self.call_quietly(method, path, cred, body, true).await {
            Ok(reply) => Ok(Ok(reply)),
            Err(Finding::Error(why)) => Ok(Err(why)),
            Err(other) => Err(other),
        }
    }

    async fn call_quietly(
        &self,
        method: Method,
        path: &str,
        cred: &Cred,
        body: Option<String>,
        record: bool,
    ) -> Result<Reply, Finding> {
        if record {
            self.t.sent(
                LINK,
                format!(
                    "{method} {path} ({}){}",
                    cred.shown(),
                    body.as_deref()
                        .map_or_else(String::new, |b| format!(" {b}"))
                ),
            );
        }
        let authorization = match cred {
            Cred::Main => Some(format!("Bearer {}", self.shared.options.token)),
            Cred::Restricted => match &self.shared.options.restricted_token {
                Some(token) => Some(format!("Bearer {token}")),
                None => return Err(Finding::error("the case needs --restricted-token")),
            },
            Cred::Second => match &self.shared.options.second_token {
                Some(token) => Some(format!("Bearer {token}")),
                None => return Err(Finding::error("the case needs --second-token")),
            },
            Cred::Nothing => None,
            Cred::Header(value) => Some(value.clone()),
        };
        let (status, text) = if self.shared.base.starts_with("https://") {
            super::https::request(
                &self.shared.tls,
                &self.shared.base,
                method.as_str(),
                path,
                authorization.as_deref(),
                body,
                super::HTTP_TIMEOUT,
            )
            .await
            .map_err(|e| {
                let why = format!(
                    "{method} {path}: no HTTP answer ({e}); the server closed the connection or cannot be reached"
                );
                self.t.note(LINK, &why);
                Finding::error(why)
            })?
        } else {
            self.plain(method.clone(), path, authorization, body)
                .await?
        };
        if let Some(ticket) = serde_json::from_str::<Value>(&text)
            .ok()
            .as_ref()
            .and_then(|v| v.get("ticket"))
            .and_then(Value::as_str)
        {
            self.t.secret(ticket);
        }
        let reply = Reply { status, text };
        if record {
            self.t.received(LINK, reply.shown());
        }
        Ok(reply)
    }

    /// One request over plain HTTP, with the runner's pooled client.
    async fn plain(
        &self,
        method: Method,
        path: &str,
        authorization: Option<String>,
        body: Option<String>,
    ) -> Result<(u16, String), Finding> {
        let mut request = self
            .shared
            .client
            .request(method.clone(), format!("{}{path}", self.shared.base));
        if let Some(value) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = request.send().await.map_err(|e| {
            let why = format!(
                "{method} {path}: no HTTP answer ({}); the server closed the connection or cannot be reached",
                chain(&e)
            );
            self.t.note(LINK, &why);
            Finding::error(why)
        })?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| {
            let why = format!("{method} {path}: the body could not be read ({e})");
            self.t.note(LINK, &why);
            Finding::error(why)
        })?;
        Ok((status, text))
    }

    /// A ticket for `cred` (a set-up step: anything but 201 with a TicketResponse is an
    /// error).
    pub(crate) async fn ticket(&self, cred: &Cred) -> Result<TicketResponse, Finding> {
        let reply = self.call(Method::POST, "/v1/tickets", cred, None).await?;
        if reply.status != 201 {
            return Err(Finding::error(format!(
                "set-up: POST /v1/tickets answered {} instead of 201 with a ticket",
                reply.shown()
            )));
        }
        reply.json().map_err(|e| {
            Finding::error(format!(
                "set-up: POST /v1/tickets answered 201 with a body that is not a TicketResponse ({e})"
            ))
        })
    }

    /// Publishes through `POST /v1/publish` with `--token` (a set-up step: anything but a
    /// PublishResponse is an error). A 429 is retried after its retry_after_ms.
    pub(crate) async fn publish(
        &self,
        channel: &str,
        key: &str,
        payload: &Value,
    ) -> Result<PublishResponse, Finding> {
        self.publish_recorded(channel, key, payload, true).await
    }

    async fn publish_recorded(
        &self,
        channel: &str,
        key: &str,
        payload: &Value,
        record: bool,
    ) -> Result<PublishResponse, Finding> {
        let body = json!({ "channel": channel, "idempotency_key": key, "payload": payload });
        let mut attempts = 0;
        loop {
            let reply = self
                .call_quietly(
                    Method::POST,
                    "/v1/publish",
                    &Cred::Main,
                    Some(body.to_string()),
                    record,
                )
                .await?;
            if reply.status == 429 && attempts < RATE_LIMITED_RETRIES {
                attempts += 1;
                let wait = reply
                    .error_body()
                    .ok()
                    .and_then(|b| b.error.retry_after_ms)
                    .map_or(100, |ms| ms.get())
                    .clamp(10, 5_000);
                tokio::time::sleep(Duration::from_millis(wait)).await;
                continue;
            }
            if reply.status != 200 {
                return Err(Finding::error(format!(
                    "set-up: publishing to {channel} over HTTP with --token answered {} instead of 200 with a PublishResponse (the token must have write on the test channels and may publish over HTTP)",
                    reply.shown()
                )));
            }
            return reply.json().map_err(|e| {
                Finding::error(format!(
                    "set-up: POST /v1/publish answered 200 with a body that is not a PublishResponse ({e}): {}",
                    reply.shown()
                ))
            });
        }
    }

    /// Publishes `n` events to `channel` over HTTP, several at a time, with keys
    /// `<prefix>-1` to `<prefix>-n`; returns the acknowledgements in seq order. The transcript
    /// gets one line for them all.
    pub(crate) async fn publish_many(
        &self,
        channel: &str,
        prefix: &str,
        n: u64,
        payload: &Value,
    ) -> Result<Vec<PublishResponse>, Finding> {
        self.t.note(
            LINK,
            format!("publishing {n} events to {channel} over HTTP (keys {prefix}-1 to {prefix}-{n}), 8 at a time"),
        );
        let acks: Vec<Result<PublishResponse, Finding>> = futures_util::stream::iter(1..=n)
            .map(|i| {
                let key = format!("{prefix}-{i}");
                async move { self.publish_recorded(channel, &key, payload, false).await }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let mut acks = acks.into_iter().collect::<Result<Vec<_>, _>>()?;
        acks.sort_by_key(|ack| ack.position.seq.get());
        if let (Some(first), Some(last)) = (acks.first(), acks.last()) {
            self.t.received(
                LINK,
                format!(
                    "{} acknowledgements: seq {} to {} of epoch {}",
                    acks.len(),
                    first.position.seq.get(),
                    last.position.seq.get(),
                    last.position.epoch.as_str()
                ),
            );
        }
        Ok(acks)
    }

    /// `GET /v1/history?<query>` with `cred`.
    pub(crate) async fn history(&self, query: &str, cred: &Cred) -> Result<Reply, Finding> {
        self.call(Method::GET, &format!("/v1/history?{query}"), cred, None)
            .await
    }

    /// A history page with `--token` (a set-up step).
    pub(crate) async fn history_page(&self, query: &str) -> Result<HistoryResponse, Finding> {
        let reply = self.history(query, &Cred::Main).await?;
        if reply.status != 200 {
            return Err(Finding::error(format!(
                "set-up: GET /v1/history?{query} with --token answered {} instead of 200 (the token must have read on the test channels)",
                reply.shown()
            )));
        }
        reply.json().map_err(|e| {
            Finding::error(format!(
                "set-up: GET /v1/history answered 200 with a body that is not a HistoryResponse ({e})"
            ))
        })
    }
}
