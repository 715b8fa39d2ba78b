//! The WebSocket upgrade and the socket a session runs on: tokio-tungstenite over the upgraded
//! HTTP connection, kept at hand so that a closing session can drain what the peer still sends.
//!
//! axum's own `WebSocket` hides the connection under it, and the stream stops reading after
//! the first protocol error (an unmasked frame, RSV bits, a fragmented control frame, a
//! reserved opcode, an oversized or non-UTF-8 frame). Dropping the connection then, with the
//! peer's bytes unread, makes the kernel answer with a TCP reset, which can destroy the close
//! frame just sent before the peer reads its code. [`close_after_violation`] sends the close
//! frame, shuts the write side (so the peer sees the end after the close frame) and reads and
//! discards until the peer closes too, bounded in time and bytes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, protocol::CloseFrame};

use crate::transport::Counted;

/// A session's WebSocket: tungstenite over the connection the HTTP/1.1 request came on.
pub(crate) type Socket = WebSocketStream<Connection>;

/// The connection under a session's WebSocket. Over plain TCP it is the TCP socket itself,
/// taken back from hyper once the request is answered, so that each of a session's reads and
/// writes reaches the socket without going through hyper's upgraded-connection layers; over
/// TLS it stays hyper's upgraded connection.
pub(crate) enum Connection {
    /// The TCP socket the request came on.
    Tcp(Counted<TcpStream>),
    /// Hyper's upgraded connection (TLS).
    Upgraded(TokioIo<Upgraded>),
}

impl Connection {
    /// Takes the TCP socket back from hyper when the connection is plain TCP, with the
    /// bytes hyper had read past the request (the client's first frames, if it sent them
    /// at once).
    fn take(upgraded: Upgraded) -> (Self, Vec<u8>) {
        match upgraded.downcast::<TokioIo<Counted<TcpStream>>>() {
            Ok(parts) => (Self::Tcp(parts.io.into_inner()), parts.read_buf.to_vec()),
            Err(upgraded) => (Self::Upgraded(TokioIo::new(upgraded)), Vec::new()),
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Self::Upgraded(upgraded) => Pin::new(upgraded).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Self::Upgraded(upgraded) => Pin::new(upgraded).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(tcp) => Pin::new(tcp).poll_flush(cx),
            Self::Upgraded(upgraded) => Pin::new(upgraded).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Self::Upgraded(upgraded) => Pin::new(upgraded).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Self::Upgraded(upgraded) => Pin::new(upgraded).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Tcp(tcp) => tcp.is_write_vectored(),
            Self::Upgraded(upgraded) => upgraded.is_write_vectored(),
        }
    }
}

/// A request to upgrade to WebSocket (RFC 6455 §4.2.1), as far as it was valid; the
/// rejection is the reason it is not one, for a `bad_request` body.
pub(crate) struct Upgrade {
    key: HeaderValue,
    offered: Vec<String>,
    on_upgrade: OnUpgrade,
}

/// Why a request is not a WebSocket upgrade.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotAnUpgrade {
    /// Not a GET.
    #[error("the method is not GET")]
    Method,
    /// No `Connection: upgrade` with `Upgrade: websocket`.
    #[error("the request does not ask to upgrade to websocket")]
    Headers,
    /// No `Sec-WebSocket-Version: 13`.
    #[error("Sec-WebSocket-Version is not 13")]
    Version,
    /// No `Sec-WebSocket-Key`.
    #[error("Sec-WebSocket-Key is missing")]
    Key,
    /// The connection cannot be upgraded (not HTTP/1.1).
    #[error("the connection cannot be upgraded")]
    NotUpgradable,
}

impl IntoResponse for NotAnUpgrade {
    /// `bad_request`, for a handler that does not take the rejection itself.
    fn into_response(self) -> Response {
        crate::http::error(
            ferry_protocol::ErrorCode::BadRequest,
            format!("this endpoint takes a WebSocket upgrade: {self}"),
        )
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = NotAnUpgrade;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, NotAnUpgrade> {
        if parts.method != Method::GET {
            return Err(NotAnUpgrade::Method);
        }
        let headers = &parts.headers;
        if !has_token(headers, header::CONNECTION, "upgrade")
            || !has_token(headers, header::UPGRADE, "websocket")
        {
            return Err(NotAnUpgrade::Headers);
        }
        if !has_token(headers, header::SEC_WEBSOCKET_VERSION, "13") {
            return Err(NotAnUpgrade::Version);
        }
        let key = headers
            .get(header::SEC_WEBSOCKET_KEY)
            .ok_or(NotAnUpgrade::Key)?
            .clone();
        let offered = headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|p| p.trim().to_owned())
            .collect();
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(NotAnUpgrade::NotUpgradable)?;
        Ok(Self {
            key,
            offered,
            on_upgrade,
        })
    }
}

/// Whether a comma-separated header holds `token`, in any case.
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

impl Upgrade {
    /// Whether the client offered `protocol` in `Sec-WebSocket-Protocol`.
    pub(crate) fn offers(&self, protocol: &str) -> bool {
        self.offered.iter().any(|p| p == protocol)
    }

    /// Answers 101 with `protocol` selected and runs `session` on the socket once the
    /// connection is upgraded.
    pub(crate) fn accept<F, Fut>(
        self,
        protocol: &'static str,
        config: WebSocketConfig,
        session: F,
    ) -> Response
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let (connection, read) = Connection::take(upgraded);
            let socket = if read.is_empty() {
                WebSocketStream::from_raw_socket(connection, Role::Server, Some(config)).await
            } else {
                WebSocketStream::from_partially_read(connection, read, Role::Server, Some(config))
                    .await
            };
            session(socket).await;
        });
        (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, HeaderValue::from_static("upgrade")),
                (header::UPGRADE, HeaderValue::from_static("websocket")),
                (
                    header::SEC_WEBSOCKET_ACCEPT,
                    HeaderValue::try_from(derive_accept_key(self.key.as_bytes()))
                        .unwrap_or_else(|_| unreachable!("base64 is a valid header value")),
                ),
                (
                    header::SEC_WEBSOCKET_PROTOCOL,
                    HeaderValue::from_static(protocol),
                ),
            ],
        )
            .into_response()
    }
}

/// Most bytes read and dropped after a close that followed a protocol violation.
const DRAIN_BYTES: usize = 1 << 20;

/// Closes a socket whose stream stopped at a protocol violation (RFC 6455 §7.1.7): the close
/// frame with `code`, then the end of the write side, then the peer's remaining bytes read and
/// dropped (at most [`DRAIN_BYTES`], within `patience` for the close and `handshake` for the
/// rest) until it closes, so that the connection ends without a reset that could destroy the
/// close frame.
pub(crate) async fn close_after_violation(
    socket: &mut Socket,
    code: u16,
    reason: &str,
    patience: Duration,
    handshake: Duration,
) {
    let frame = CloseFrame {
        code: code.into(),
        reason: reason.into(),
    };
    let sent = tokio::time::timeout(
        patience,
        futures_util::SinkExt::send(socket, Message::Close(Some(frame))),
    )
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        return;
    }
    shut_and_drain(socket, handshake).await;
}

/// Ends the write side of a socket whose close frame is out, then reads and drops what the
/// peer still sends (at most [`DRAIN_BYTES`], within `handshake`) until it closes, so that the
/// connection ends with a FIN rather than a reset that could destroy the close frame.
pub(crate) async fn shut_and_drain(socket: &mut Socket, handshake: Duration) {
    let io = socket.get_mut();
    let _ = tokio::time::timeout(handshake, async {
        let _ = io.shutdown().await;
        // On the heap, and only while draining: a buffer in this future would sit in every
        // session's task for its whole life.
        let mut buffer = vec![0u8; 4096];
        let mut drained = 0;
        while drained < DRAIN_BYTES {
            match io.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}
