//! Bytes written by hand over a `TcpStream`: WebSocket frames (mask bit, opcodes, lengths a
//! library would refuse to send) and HTTP/1.1 requests and responses.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The FIN bit with the text opcode.
pub const TEXT: u8 = 0x81;
/// The FIN bit with the close opcode.
pub const CLOSE: u8 = 0x88;
/// The FIN bit with the ping opcode.
pub const PING: u8 = 0x89;

/// The largest server frame this client reads whole; anything longer is an answer no
/// documented close or error would give.
const MAX_SERVER_FRAME: u64 = 16 * 1024 * 1024;

/// A client frame: `first` is the FIN/RSV/opcode byte; masked unless `masked` is false.
pub fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = header(first, payload.len() as u64, masked);
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    if masked {
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A masked frame header announcing `length` bytes of payload, with the mask key, and
/// `payload` after it (which may be shorter than announced).
pub fn announcing(first: u8, length: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = header(first, length, true);
    let mask = [0x11u8, 0x22, 0x33, 0x44];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fn header(first: u8, length: u64, masked: bool) -> Vec<u8> {
    let bit = if masked { 0x80 } else { 0 };
    let mut out = vec![first];
    match length {
        n if n < 126 => out.push(bit | n as u8),
        n if n <= 0xffff => {
            out.push(bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(bit | 127);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    out
}

/// A plain TCP connection to `address`, with a receive buffer of `receive_buffer` bytes when
/// given (set before connecting, so that the window the server sees is that small).
pub async fn connect(address: &str, receive_buffer: Option<u32>) -> Result<TcpStream, String> {
    let addr: std::net::SocketAddr = address.parse().map_err(|e| format!("{address}: {e}"))?;
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    if let Some(size) = receive_buffer {
        socket
            .set_recv_buffer_size(size)
            .map_err(|e| e.to_string())?;
    }
    tokio::time::timeout(Duration::from_secs(10), socket.connect(addr))
        .await
        .map_err(|_| "connect took over 10 s".to_owned())?
        .map_err(|e| format!("connect: {e}"))
}

/// The upgrade request for `ticket`, with RFC 6455's sample key.
pub fn upgrade_request(address: &str, ticket: &str) -> String {
    format!(
        "GET /v1/ws?ticket={ticket} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ferry.v1\r\n\r\n"
    )
}

/// Reads an HTTP response head (up to the blank line), byte by byte so nothing after it is
/// consumed.
pub async fn read_head(stream: &mut TcpStream, within: Duration) -> Result<String, String> {
    let mut head = Vec::new();
    let until = Instant::now() + within;
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut byte)).await {
            Err(_) => return Err(format!("no response head within {} s", within.as_secs())),
            Ok(Err(error)) => return Err(format!("read: {error}")),
            Ok(Ok(0)) => {
                return Err(format!(
                    "the connection ended after {} bytes of response head",
                    head.len()
                ));
            }
            Ok(Ok(_)) => head.push(byte[0]),
        }
        if head.len() > 64 * 1024 {
            return Err("a response head over 64 KiB".to_owned());
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// Sends the upgrade for `ticket` over `stream` and checks the 101.
pub async fn upgrade(stream: &mut TcpStream, address: &str, ticket: &str) -> Result<(), String> {
    stream
        .write_all(upgrade_request(address, ticket).as_bytes())
        .await
        .map_err(|e| format!("write the upgrade: {e}"))?;
    let head = read_head(stream, Duration::from_secs(10)).await?;
    if !head.starts_with("HTTP/1.1 101") {
        return Err(format!(
            "the upgrade was answered {}",
            head.lines().next().unwrap_or("")
        ));
    }
    Ok(())
}

/// A raw session: connected, upgraded, welcomed.
pub async fn session(cx: &crate::Cx, receive_buffer: Option<u32>) -> Result<TcpStream, String> {
    let ticket = crate::target::ticket(&cx.http, &cx.base, &cx.token).await?;
    let mut stream = connect(&cx.address, receive_buffer).await?;
    upgrade(&mut stream, &cx.address, &ticket).await?;
    match read_frame(&mut stream, Duration::from_secs(10)).await? {
        Some((1, payload)) if payload.windows(9).any(|w| w == b"\"welcome\"") => Ok(stream),
        other => Err(format!("expected a welcome, got {}", describe(&other))),
    }
}

/// A frame, as a short description for a failure message.
pub fn describe(frame: &Option<(u8, Vec<u8>)>) -> String {
    match frame {
        None => "the end of the stream".to_owned(),
        Some((8, payload)) => format!("a close {}", close_code(payload).unwrap_or(0)),
        Some((opcode, payload)) => format!(
            "opcode {opcode}: {}",
            String::from_utf8_lossy(&payload[..payload.len().min(200)])
        ),
    }
}

/// The code of a close frame's payload.
pub fn close_code(payload: &[u8]) -> Option<u16> {
    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))
}

/// One server frame: its opcode and payload; `None` at the end of the stream (a FIN or a
/// reset), an error when nothing arrives within `within` or the frame breaks RFC 6455 from a
/// server (masked, over 16 MiB).
pub async fn read_frame(
    stream: &mut TcpStream,
    within: Duration,
) -> Result<Option<(u8, Vec<u8>)>, String> {
    let timed = async {
        let mut head = [0u8; 2];
        if stream.read_exact(&mut head).await.is_err() {
            return Ok(None);
        }
        if head[1] & 0x80 != 0 {
            return Err("a masked server frame".to_owned());
        }
        let length = match head[1] & 0x7f {
            126 => {
                let mut n = [0u8; 2];
                stream.read_exact(&mut n).await.map_err(|e| e.to_string())?;
                u64::from(u16::from_be_bytes(n))
            }
            127 => {
                let mut n = [0u8; 8];
                stream.read_exact(&mut n).await.map_err(|e| e.to_string())?;
                u64::from_be_bytes(n)
            }
            n => u64::from(n),
        };
        if length > MAX_SERVER_FRAME {
            return Err(format!("a server frame of {length} bytes"));
        }
        let mut payload = vec![0u8; length as usize];
        stream
            .read_exact(&mut payload)
            .await
            .map_err(|e| format!("a frame cut short: {e}"))?;
        Ok(Some((head[0] & 0x0f, payload)))
    };
    tokio::time::timeout(within, timed)
        .await
        .map_err(|_| format!("no frame within {} s", within.as_secs()))?
}

/// How a connection ended after the client's last frame.
#[derive(Debug)]
pub struct Ending {
    /// The close frame's code, if one came.
    pub code: Option<u16>,
    /// The text frames before it.
    pub texts: Vec<Vec<u8>>,
    /// Whether the stream then ended with a FIN (no reset, nothing more).
    pub clean: bool,
    /// When the close frame arrived.
    pub at: Option<Instant>,
}

/// Reads frames until a close frame, answers it with a close frame carrying the same code (the
/// closing handshake a well-behaved client completes), and reads on to the end of the stream
/// (within `within`); keeps the text frames before the close.
pub async fn until_close(stream: &mut TcpStream, within: Duration) -> Ending {
    let until = Instant::now() + within;
    let mut ending = Ending {
        code: None,
        texts: Vec::new(),
        clean: false,
        at: None,
    };
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match read_frame(stream, left).await {
            Ok(Some((8, payload))) => {
                ending.code = close_code(&payload);
                ending.at = Some(Instant::now());
                let echo = frame(CLOSE, &payload[..payload.len().min(2)], true);
                // The server may have stopped reading (after a violation it drains instead).
                let _ = stream.write_all(&echo).await;
                break;
            }
            Ok(Some((1, payload))) => ending.texts.push(payload),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return ending,
        }
    }
    let mut rest = [0u8; 4096];
    let left = until.saturating_duration_since(Instant::now()) + Duration::from_secs(3);
    ending.clean = matches!(
        tokio::time::timeout(left, stream.read(&mut rest)).await,
        Ok(Ok(0))
    );
    ending
}

/// Sends `bytes` followed by 64 KiB of valid frames the server never reads, then expects a
/// close frame with one of the `expected` codes and a FIN after it; `within` bounds the wait
/// for the close. Returns the time from the write to the close frame.
pub async fn violation_answered(
    cx: &crate::Cx,
    bytes: Vec<u8>,
    expected: &[u16],
    within: Duration,
) -> Result<Duration, String> {
    let mut stream = session(cx, None).await?;
    let mut all = bytes;
    for _ in 0..64 {
        all.extend(frame(TEXT, &[b' '; 1020], true));
    }
    let sent = Instant::now();
    // A server that closes before reading everything may reset the rest of the write; what
    // matters is what it answers.
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.write_all(&all)).await;
    let ending = until_close(&mut stream, within).await;
    match ending.code {
        Some(code) if expected.contains(&code) && ending.clean => {
            Ok(ending.at.map_or(Duration::ZERO, |at| at - sent))
        }
        Some(code) if expected.contains(&code) => Err(format!(
            "closed with {code}, but the connection did not then end with a FIN"
        )),
        Some(code) => Err(format!("closed with {code} instead of {expected:?}")),
        None => Err(format!(
            "no close frame within {} s, or the connection ended without one (expected {expected:?})",
            within.as_secs()
        )),
    }
}

/// An HTTP response read off a raw connection.
#[derive(Debug)]
pub struct Response {
    /// Its status.
    pub status: u16,
    /// Its head, lower-cased.
    pub head: String,
    /// Its body (by `content-length`).
    pub body: Vec<u8>,
    /// When its head arrived.
    pub at: Instant,
}

/// Reads one HTTP response (head and `content-length` body) within `within`.
pub async fn read_response(stream: &mut TcpStream, within: Duration) -> Result<Response, String> {
    let head = read_head(stream, within).await?;
    let at = Instant::now();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {head:?}"))?;
    let head = head.to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length.min(1024 * 1024)];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut body))
        .await
        .map_err(|_| "the body did not arrive".to_owned())?
        .map_err(|e| format!("the body: {e}"))?;
    Ok(Response {
        status,
        head,
        body,
        at,
    })
}
