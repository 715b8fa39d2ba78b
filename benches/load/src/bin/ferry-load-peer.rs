//! `ferry-load-peer`: the peer `ferry-load` measures ferry-server against, a bare
//! tokio-tungstenite broadcast server at tungstenite's default settings.
//!
//! It has no protocol of its own. A WebSocket opened on `/publish` is a publisher: every text
//! frame it sends is put, as it is, on one `tokio::sync::broadcast` channel, and every other
//! connection writes that same pre-encoded frame to its client. On any other path a connection
//! is a subscriber: it receives every broadcast frame, and a text frame it sends is echoed back
//! to it (the round trip a client waits for before counting the connection as open, as it waits
//! for `subscribed` from Ferry). The first subprotocol a client offers is accepted, so that the
//! same client code opens both servers. The server runs until it is killed.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::accept_hdr_async_with_config;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// A bare tokio-tungstenite broadcast server (default settings) for ferry-load to compare with.
#[derive(Debug, Parser)]
#[command(name = "ferry-load-peer")]
struct Args {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:7401")]
    bind: SocketAddr,
    /// tungstenite's read buffer per connection, in bytes [default: tungstenite's, 128 KiB].
    #[arg(long)]
    read_buffer_size: Option<usize>,
}

/// Frames a slow subscriber may fall behind by before it skips some; the load generator waits
/// for each frame to reach every subscriber before it publishes the next, so this is never hit.
const BROADCAST_CAPACITY: usize = 1024;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("cannot listen on {}", args.bind))?;
    eprintln!("ferry-load-peer: listening on {}", listener.local_addr()?);
    let (frames, _) = broadcast::channel::<Message>(BROADCAST_CAPACITY);
    let config = args
        .read_buffer_size
        .map(|size| WebSocketConfig::default().read_buffer_size(size));
    loop {
        let (stream, _) = listener.accept().await?;
        let frames = frames.clone();
        tokio::spawn(async move {
            // A failed handshake or a broken connection ends only that connection.
            let _ = connection(stream, frames, config).await;
        });
    }
}

/// Runs one connection, as a publisher or a subscriber depending on its path.
// The handshake callback's error type is tungstenite's HTTP response.
#[allow(clippy::result_large_err)]
async fn connection(
    stream: TcpStream,
    frames: broadcast::Sender<Message>,
    config: Option<WebSocketConfig>,
) -> Result<()> {
    let mut publisher = false;
    let mut ws = accept_hdr_async_with_config(
        stream,
        |request: &Request, mut response: Response| -> Result<Response, ErrorResponse> {
            publisher = request.uri().path() == "/publish";
            let offered = request
                .headers()
                .get(SEC_WEBSOCKET_PROTOCOL)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(str::trim)
                .and_then(|v| v.parse().ok());
            if let Some(protocol) = offered {
                response
                    .headers_mut()
                    .insert(SEC_WEBSOCKET_PROTOCOL, protocol);
            }
            Ok(response)
        },
        config,
    )
    .await?;
    if publisher {
        while let Some(message) = ws.next().await {
            let message = message?;
            if message.is_text() {
                // No subscriber yet is not an error.
                let _ = frames.send(message);
            }
        }
        return Ok(());
    }
    let mut incoming = frames.subscribe();
    loop {
        let out = tokio::select! {
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => Message::Text(text),
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
            },
            frame = incoming.recv() => match frame {
                Ok(frame) => frame,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
        };
        ws.send(out).await?;
    }
}
