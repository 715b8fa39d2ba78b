//! `ferry-load-peer`: the peer `ferry-load` measures ferry-server against, a bare
//! tokio-tungstenite broadcast server with rooms, at tungstenite's default settings.
//!
//! It has almost no protocol of its own. A WebSocket opened on `/publish` is a publisher: every
//! text frame it sends is a JSON object whose `channel` member names a room, and the frame is
//! put, as it is, on that room's `tokio::sync::broadcast` channel, from which every connection in
//! the room writes the same pre-encoded frame to its client. On any other path a connection is
//! a subscriber: a `{"type":"subscribe","channel":...}` frame moves it into that room (one room
//! per connection) and is echoed back once it is in (the round trip a client waits for, as it
//! waits for `subscribed` from Ferry). The first subprotocol a client offers is accepted, so
//! that the same client code opens every server. The server runs until it is killed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

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

/// Frames a slow subscriber may fall behind by before it skips some (silently: this peer has
/// no way to tell the client).
const BROADCAST_CAPACITY: usize = 1024;

/// Each room's broadcast channel, by name.
type Rooms = Arc<Mutex<HashMap<String, broadcast::Sender<Message>>>>;

/// The sender of room `name`, made on first use.
fn room(rooms: &Rooms, name: &str) -> broadcast::Sender<Message> {
    let mut rooms = rooms.lock().unwrap_or_else(|e| e.into_inner());
    rooms
        .entry(name.to_owned())
        .or_insert_with(|| broadcast::channel(BROADCAST_CAPACITY).0)
        .clone()
}

/// The `channel` member of a JSON text frame, and whether the frame is a subscribe request.
fn channel_of(text: &str) -> Option<(String, bool)> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let channel = value.get("channel")?.as_str()?.to_owned();
    let subscribe = value.get("type").and_then(|t| t.as_str()) == Some("subscribe");
    Some((channel, subscribe))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("cannot listen on {}", args.bind))?;
    eprintln!("ferry-load-peer: listening on {}", listener.local_addr()?);
    let rooms = Rooms::default();
    let config = args
        .read_buffer_size
        .map(|size| WebSocketConfig::default().read_buffer_size(size));
    loop {
        let (stream, _) = listener.accept().await?;
        let rooms = rooms.clone();
        tokio::spawn(async move {
            // A failed handshake or a broken connection ends only that connection.
            let _ = connection(stream, rooms, config).await;
        });
    }
}

/// Runs one connection, as a publisher or a subscriber depending on its path.
// The handshake callback's error type is tungstenite's HTTP response.
#[allow(clippy::result_large_err)]
async fn connection(
    stream: TcpStream,
    rooms: Rooms,
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
            if let Message::Text(text) = message?
                && let Some((channel, _)) = channel_of(&text)
            {
                // No subscriber yet is not an error.
                let _ = room(&rooms, &channel).send(Message::Text(text));
            }
        }
        return Ok(());
    }
    // Until its first subscribe, a connection is in no room: a receiver that never yields.
    let mut incoming: Option<broadcast::Receiver<Message>> = None;
    loop {
        let out = tokio::select! {
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => match channel_of(&text) {
                    Some((channel, true)) => {
                        incoming = Some(room(&rooms, &channel).subscribe());
                        Message::Text(text)
                    }
                    _ => continue,
                },
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
            },
            frame = async {
                match incoming.as_mut() {
                    Some(incoming) => incoming.recv().await,
                    None => std::future::pending().await,
                }
            } => match frame {
                Ok(frame) => frame,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
        };
        ws.send(out).await?;
    }
}
