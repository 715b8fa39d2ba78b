//! The slow subscriber: a raw TCP client with a small receive buffer that completes the
//! WebSocket handshake and subscribes like any other session, then stops reading, so that the
//! server's writes to it back up. At the end it may resume reading, to see what the server did
//! with it (a close frame and its code, the connection ended, or the events still coming), and
//! while it does not read its TCP state on both ends is read from `/proc/net/tcp`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::client::{Target, subscribe_frame as subscribe};
use crate::wire::{
    EnginePacket, Frame, OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG, OPCODE_TEXT, SOCKETIO_CONNECT,
    TcpEntry, close_code, decode_frame, encode_client_frame, engine_packet, publish_index,
    socketio_event, tcp_entry,
};

/// How long one step of the handshake may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// The client's masking key (a benchmark on loopback; RFC 6455 wants it unpredictable only
/// against proxies that cache).
const MASK: [u8; 4] = [0x5a, 0x13, 0x77, 0x21];

/// A subscribed session whose socket is no longer read.
pub(crate) struct SlowSubscriber {
    stream: TcpStream,
    buffer: Vec<u8>,
    local_port: u16,
}

/// What the slow subscriber found when it read again.
#[derive(Debug)]
pub(crate) struct Resumed {
    /// Event frames it received.
    pub(crate) events: usize,
    /// The highest publish index among them.
    pub(crate) last_index: Option<usize>,
    /// How the reading ended.
    pub(crate) end: End,
}

/// How the slow subscriber's reading ended.
#[derive(Debug)]
pub(crate) enum End {
    /// A close frame, with its code and reason.
    CloseFrame(Option<(u16, String)>),
    /// The server ended the TCP connection without a close frame.
    Eof,
    /// The connection broke (for example reset).
    Error(String),
    /// Nothing came for the quiet period: the connection is still open.
    Quiet,
}

impl SlowSubscriber {
    /// Opens session `i` on `target`, subscribed to `channel`, over a socket whose receive
    /// buffer is `receive_buffer` bytes (set before connecting, so that the window stays small).
    pub(crate) async fn open(
        target: &Target,
        i: usize,
        channel: &str,
        receive_buffer: u32,
    ) -> Result<Self> {
        let (url, protocol) = target.session_url(i).await?;
        let rest = url
            .strip_prefix("ws://")
            .context("the slow subscriber speaks ws:// only")?;
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let address = tokio::net::lookup_host(host)
            .await?
            .next()
            .with_context(|| format!("no address for {host}"))?;
        let socket = TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(receive_buffer)?;
        let stream = tokio::time::timeout(STEP_TIMEOUT, socket.connect(address))
            .await
            .context("connect timed out")??;
        let local_port = stream.local_addr()?.port();
        let mut slow = Self {
            stream,
            buffer: Vec::new(),
            local_port,
        };
        let protocol_line = protocol
            .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: ZmVycnktbG9hZC1zbG93IQ==\r\nSec-WebSocket-Version: 13\r\n\
             {protocol_line}\r\n"
        );
        slow.stream.write_all(request.as_bytes()).await?;
        let head = slow.response_head().await?;
        if !head.starts_with("HTTP/1.1 101") {
            bail!(
                "the upgrade was refused: {}",
                head.lines().next().unwrap_or("")
            );
        }
        match target {
            Target::Ferry { .. } => {
                let welcome = slow.next_text().await?;
                if !welcome.starts_with(r#"{"type":"welcome""#) {
                    bail!("the first frame is not a welcome: {welcome}");
                }
                slow.send_text(&subscribe(channel)).await?;
                while !slow
                    .next_text()
                    .await?
                    .starts_with(r#"{"type":"subscribed""#)
                {}
            }
            Target::Peer { .. } => {
                let request = subscribe(channel);
                slow.send_text(&request).await?;
                while slow.next_text().await? != request {}
            }
            Target::SocketIo { .. } => {
                let open = slow.next_text().await?;
                if !matches!(engine_packet(&open), EnginePacket::Open(_)) {
                    bail!("the first Engine.IO packet is not an open packet: {open}");
                }
                slow.send_text(SOCKETIO_CONNECT).await?;
                while engine_packet(&slow.next_text().await?) != EnginePacket::Connected {}
                let name = serde_json::to_string(channel)?;
                slow.send_text(&socketio_event("subscribe", &name)).await?;
                while !matches!(
                    engine_packet(&slow.next_text().await?),
                    EnginePacket::Event {
                        name: "subscribed",
                        ..
                    }
                ) {}
            }
        }
        Ok(slow)
    }

    /// The client's local port, which names the connection in `/proc/net/tcp`.
    pub(crate) fn local_port(&self) -> u16 {
        self.local_port
    }

    /// Reads again until the server closes, the connection ends, nothing comes for `quiet`,
    /// or `limit` has passed; counts the events.
    pub(crate) async fn resume(mut self, quiet: Duration, limit: Duration) -> Resumed {
        let started = Instant::now();
        let mut events = 0;
        let mut last_index = None;
        let mut chunk = vec![0; 64 * 1024];
        loop {
            loop {
                match decode_frame(&self.buffer) {
                    Ok(Some((frame, used))) => {
                        self.buffer.drain(..used);
                        match frame.opcode {
                            OPCODE_CLOSE => {
                                return Resumed {
                                    events,
                                    last_index,
                                    end: End::CloseFrame(close_code(&frame.payload)),
                                };
                            }
                            OPCODE_TEXT => {
                                let text = String::from_utf8_lossy(&frame.payload);
                                if let Some(n) = publish_index(&text) {
                                    events += 1;
                                    last_index = last_index.max(Some(n));
                                }
                            }
                            _ => {}
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        return Resumed {
                            events,
                            last_index,
                            end: End::Error(format!("a frame the client refuses: {e:?}")),
                        };
                    }
                }
            }
            if started.elapsed() > limit {
                return Resumed {
                    events,
                    last_index,
                    end: End::Quiet,
                };
            }
            let end = match tokio::time::timeout(quiet, self.stream.read(&mut chunk)).await {
                Err(_) => End::Quiet,
                Ok(Ok(0)) => End::Eof,
                Ok(Ok(n)) => {
                    self.buffer.extend_from_slice(&chunk[..n]);
                    continue;
                }
                Ok(Err(e)) => End::Error(e.to_string()),
            };
            return Resumed {
                events,
                last_index,
                end,
            };
        }
    }

    /// Reads the HTTP response head of the upgrade; what follows it stays buffered.
    async fn response_head(&mut self) -> Result<String> {
        loop {
            if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
                self.buffer.drain(..end + 4);
                return Ok(head);
            }
            self.fill().await?;
        }
    }

    /// The next text frame of the handshake (answering pings).
    async fn next_text(&mut self) -> Result<String> {
        loop {
            let Frame { opcode, payload } = self.next_frame().await?;
            match opcode {
                OPCODE_TEXT => return Ok(String::from_utf8(payload)?),
                OPCODE_CLOSE => bail!(
                    "the server closed the connection: {:?}",
                    close_code(&payload)
                ),
                OPCODE_PING => {
                    let pong = encode_client_frame(OPCODE_PONG, &payload, MASK);
                    self.stream.write_all(&pong).await?;
                }
                _ => {}
            }
        }
    }

    async fn next_frame(&mut self) -> Result<Frame> {
        loop {
            match decode_frame(&self.buffer) {
                Ok(Some((frame, used))) => {
                    self.buffer.drain(..used);
                    return Ok(frame);
                }
                Ok(None) => self.fill().await?,
                Err(e) => bail!("a frame the client refuses: {e:?}"),
            }
        }
    }

    async fn fill(&mut self) -> Result<()> {
        let mut chunk = [0; 4096];
        let n = tokio::time::timeout(STEP_TIMEOUT, self.stream.read(&mut chunk))
            .await
            .context("no answer from the server in time")??;
        if n == 0 {
            bail!("the server ended the connection during the handshake");
        }
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    async fn send_text(&mut self, text: &str) -> Result<()> {
        let frame = encode_client_frame(OPCODE_TEXT, text.as_bytes(), MASK);
        self.stream.write_all(&frame).await?;
        Ok(())
    }
}

/// Both ends of one loopback connection in `/proc/net/tcp`: the client's (local port
/// `client_port`) and the server's (local port `server_port`, remote `client_port`).
pub(crate) fn tcp_ends(client_port: u16, server_port: u16) -> (Option<TcpEntry>, Option<TcpEntry>) {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let mut client = None;
    let mut server = None;
    for entry in table.lines().filter_map(tcp_entry) {
        if entry.local_port == client_port && entry.remote_port == server_port {
            client = Some(entry);
        } else if entry.local_port == server_port && entry.remote_port == client_port {
            server = Some(entry);
        }
    }
    (client, server)
}
