//! Pure parsing and encoding the load client needs beside tokio-tungstenite: Engine.IO v4 and
//! Socket.IO packets (to speak to the Socket.IO peer over a plain WebSocket), WebSocket frames
//! (for the raw slow subscriber, which must control its socket's reads itself), the publish
//! index carried in every event, and `/proc/net/tcp` lines (to watch the slow subscriber's TCP
//! state).

/// An Engine.IO v4 text packet, as far as the load client cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EnginePacket<'a> {
    /// `0{...}`: the handshake, with its JSON (sid, pingInterval, ...).
    Open(&'a str),
    /// `1`: the server closes the session.
    Close,
    /// `2`: a ping, answered with [`ENGINE_PONG`].
    Ping,
    /// `40...`: the Socket.IO connect acknowledgement of the main namespace.
    Connected,
    /// `44...`: the Socket.IO server refused the connect.
    ConnectError(&'a str),
    /// `42[...]`: a Socket.IO event: its name and the whole JSON array.
    Event {
        /// The event name, the array's first member.
        name: &'a str,
        /// The JSON array `["name", args...]`.
        array: &'a str,
    },
    /// Anything else (pong, upgrade, noop, other Socket.IO packets).
    Other,
}

/// The Engine.IO pong that answers a ping.
pub(crate) const ENGINE_PONG: &str = "3";

/// The Socket.IO connect to the main namespace.
pub(crate) const SOCKETIO_CONNECT: &str = "40";

/// Classifies one Engine.IO text packet.
pub(crate) fn engine_packet(text: &str) -> EnginePacket<'_> {
    let Some(kind) = text.as_bytes().first() else {
        return EnginePacket::Other;
    };
    match kind {
        b'0' => EnginePacket::Open(&text[1..]),
        b'1' => EnginePacket::Close,
        b'2' if text.len() == 1 => EnginePacket::Ping,
        b'4' => match text.as_bytes().get(1) {
            Some(b'0') => EnginePacket::Connected,
            Some(b'4') => EnginePacket::ConnectError(&text[2..]),
            Some(b'2') => {
                let array = &text[2..];
                match event_name(array) {
                    Some(name) => EnginePacket::Event { name, array },
                    None => EnginePacket::Other,
                }
            }
            _ => EnginePacket::Other,
        },
        _ => EnginePacket::Other,
    }
}

/// The name of a Socket.IO event array `["name", ...]` (a name without escapes).
fn event_name(array: &str) -> Option<&str> {
    let rest = array.strip_prefix("[\"")?;
    let end = rest.find('"')?;
    let name = &rest[..end];
    (!name.contains('\\')).then_some(name)
}

/// A Socket.IO event packet `42["name",arg]`, `arg` already JSON.
pub(crate) fn socketio_event(name: &str, arg_json: &str) -> String {
    format!("42[\"{name}\",{arg_json}]")
}

/// What precedes the publish index in every event the load client publishes.
const INDEX_MARK: &str = "\"task_id\":\"T-";

/// The task id that carries publish index `n` in an event's payload.
pub(crate) fn task_id(n: usize) -> String {
    format!("T-{n}")
}

/// The publish index an event frame carries in its payload's task id, whatever wraps it
/// (Ferry's event, the peers' copy of it, a Socket.IO event array).
pub(crate) fn publish_index(frame: &str) -> Option<usize> {
    let start = frame.find(INDEX_MARK)? + INDEX_MARK.len();
    let digits = frame[start..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    frame[start..start + digits].parse().ok()
}

/// A WebSocket frame from the server (never masked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    /// The opcode: 1 text, 2 binary, 8 close, 9 ping, 10 pong, 0 continuation.
    pub(crate) opcode: u8,
    /// The payload.
    pub(crate) payload: Vec<u8>,
}

/// The close frame's opcode.
pub(crate) const OPCODE_CLOSE: u8 = 8;
/// The text frame's opcode.
pub(crate) const OPCODE_TEXT: u8 = 1;
/// The ping frame's opcode.
pub(crate) const OPCODE_PING: u8 = 9;
/// The pong frame's opcode.
pub(crate) const OPCODE_PONG: u8 = 10;

/// Why bytes from the server are not a frame the raw client accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// A server frame must not be masked (RFC 6455 §5.1).
    Masked,
    /// A length the client will not buffer.
    TooLong(u64),
}

/// The largest frame the raw client buffers.
const MAX_FRAME: u64 = 1 << 20;

/// Decodes the first frame of `bytes`: the frame and the bytes it took, or `None` when more
/// bytes are needed.
pub(crate) fn decode_frame(bytes: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
    let [first, second, ..] = *bytes else {
        return Ok(None);
    };
    if second & 0x80 != 0 {
        return Err(FrameError::Masked);
    }
    let (len, header) = match second & 0x7f {
        126 => match bytes.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match bytes.get(2..10) {
            Some(b) => {
                let mut be = [0; 8];
                be.copy_from_slice(b);
                (u64::from_be_bytes(be), 10)
            }
            None => return Ok(None),
        },
        short => (u64::from(short), 2),
    };
    if len > MAX_FRAME {
        return Err(FrameError::TooLong(len));
    }
    let end = header + len as usize;
    let Some(payload) = bytes.get(header..end) else {
        return Ok(None);
    };
    let frame = Frame {
        opcode: first & 0x0f,
        payload: payload.to_vec(),
    };
    Ok(Some((frame, end)))
}

/// Encodes one final client frame, masked with `mask` as RFC 6455 requires of clients.
pub(crate) fn encode_client_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// The close code and reason of a close frame's payload (`None` when it has no code).
pub(crate) fn close_code(payload: &[u8]) -> Option<(u16, String)> {
    let [high, low, ref reason @ ..] = *payload else {
        return None;
    };
    Some((
        u16::from_be_bytes([high, low]),
        String::from_utf8_lossy(reason).into_owned(),
    ))
}

/// One IPv4 TCP socket of `/proc/net/tcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpEntry {
    /// The local port.
    pub(crate) local_port: u16,
    /// The remote port.
    pub(crate) remote_port: u16,
    /// The state, as the kernel numbers it (1 ESTABLISHED, 4 FIN_WAIT1, 8 CLOSE_WAIT, ...).
    pub(crate) state: u8,
    /// Bytes in the send queue.
    pub(crate) tx_queue: u64,
    /// Bytes in the receive queue.
    pub(crate) rx_queue: u64,
}

/// Parses one line of `/proc/net/tcp` (`None` for the header or a line of another shape).
pub(crate) fn tcp_entry(line: &str) -> Option<TcpEntry> {
    let mut fields = line.split_whitespace();
    fields.next()?.strip_suffix(':')?;
    let port = |address: &str| {
        let (_, port) = address.split_once(':')?;
        u16::from_str_radix(port, 16).ok()
    };
    let local_port = port(fields.next()?)?;
    let remote_port = port(fields.next()?)?;
    let state = u8::from_str_radix(fields.next()?, 16).ok()?;
    let (tx, rx) = fields.next()?.split_once(':')?;
    Some(TcpEntry {
        local_port,
        remote_port,
        state,
        tx_queue: u64::from_str_radix(tx, 16).ok()?,
        rx_queue: u64::from_str_radix(rx, 16).ok()?,
    })
}

/// The name of a kernel TCP state.
pub(crate) fn tcp_state_name(state: u8) -> &'static str {
    match state {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_io_packets() {
        assert_eq!(
            engine_packet(r#"0{"sid":"a","pingInterval":25000}"#),
            EnginePacket::Open(r#"{"sid":"a","pingInterval":25000}"#)
        );
        assert_eq!(engine_packet("2"), EnginePacket::Ping);
        assert_eq!(engine_packet("2probe"), EnginePacket::Other);
        assert_eq!(engine_packet("1"), EnginePacket::Close);
        assert_eq!(engine_packet(r#"40{"sid":"b"}"#), EnginePacket::Connected);
        assert_eq!(
            engine_packet(r#"44{"message":"no"}"#),
            EnginePacket::ConnectError(r#"{"message":"no"}"#)
        );
        assert_eq!(
            engine_packet(r#"42["event",{"channel":"c"}]"#),
            EnginePacket::Event {
                name: "event",
                array: r#"["event",{"channel":"c"}]"#
            }
        );
        assert_eq!(engine_packet(r#"42[1]"#), EnginePacket::Other);
        assert_eq!(engine_packet(r#"42["a\"b",1]"#), EnginePacket::Other);
        assert_eq!(engine_packet(""), EnginePacket::Other);
        assert_eq!(engine_packet("3"), EnginePacket::Other);
    }

    #[test]
    fn socketio_event_packets_round_trip() {
        let packet = socketio_event("subscribe", r#""project:c1:tasks""#);
        assert_eq!(packet, r#"42["subscribe","project:c1:tasks"]"#);
        assert!(matches!(
            engine_packet(&packet),
            EnginePacket::Event {
                name: "subscribe",
                ..
            }
        ));
    }

    #[test]
    fn publish_indexes() {
        let frame = format!(r#"{{"payload":{{"task_id":"{}","x":1}}}}"#, task_id(4711));
        assert_eq!(publish_index(&frame), Some(4711));
        assert_eq!(publish_index(r#"42["event",{"task_id":"T-0"}]"#), Some(0));
        assert_eq!(publish_index(r#"{"task_id":"T-"}"#), None);
        assert_eq!(publish_index(r#"{"task_id":"X-1"}"#), None);
    }

    #[test]
    fn server_frames_decode_at_every_length_form() {
        assert_eq!(decode_frame(&[0x81]), Ok(None));
        assert_eq!(
            decode_frame(&[0x81, 2, b'h', b'i', 0xff]),
            Ok(Some((
                Frame {
                    opcode: OPCODE_TEXT,
                    payload: b"hi".to_vec()
                },
                4
            )))
        );
        let mut medium = vec![0x81, 126, 0x01, 0x00];
        medium.extend(std::iter::repeat_n(b'a', 256));
        let (frame, used) = decode_frame(&medium).expect("a frame").expect("complete");
        assert_eq!((frame.payload.len(), used), (256, 260));
        assert_eq!(decode_frame(&medium[..200]), Ok(None));
        let mut long = vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0];
        long.extend(std::iter::repeat_n(0u8, 65536));
        let (frame, used) = decode_frame(&long).expect("a frame").expect("complete");
        assert_eq!((frame.opcode, frame.payload.len(), used), (2, 65536, 65546));
        assert_eq!(
            decode_frame(&[0x81, 127, 0, 0, 0, 1, 0, 0, 0, 0]),
            Err(FrameError::TooLong(1 << 32))
        );
        assert_eq!(
            decode_frame(&[0x81, 0x82, 1, 2, 3, 4]),
            Err(FrameError::Masked)
        );
    }

    #[test]
    fn client_frames_are_masked() {
        let mask = [1, 2, 3, 4];
        let frame = encode_client_frame(OPCODE_TEXT, b"abcde", mask);
        assert_eq!(&frame[..6], &[0x81, 0x85, 1, 2, 3, 4]);
        let unmasked: Vec<u8> = frame[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!(unmasked, b"abcde");
        let long = encode_client_frame(OPCODE_TEXT, &[0; 300], mask);
        assert_eq!(&long[..4], &[0x81, 0x80 | 126, 0x01, 0x2c]);
        assert_eq!(long.len(), 4 + 4 + 300);
    }

    #[test]
    fn close_frames() {
        assert_eq!(
            close_code(&[0x03, 0xf3, b'l', b'a', b'g']),
            Some((1011, "lag".to_owned()))
        );
        assert_eq!(close_code(&[0x03]), None);
        assert_eq!(close_code(&[]), None);
    }

    #[test]
    fn proc_net_tcp_lines() {
        let line = "   3: 0100007F:9C40 0100007F:1F90 01 0002A000:00000010 00:00000000 00000000     0        0 123 1 0000000000000000 20 4 30 10 -1";
        assert_eq!(
            tcp_entry(line),
            Some(TcpEntry {
                local_port: 0x9c40,
                remote_port: 0x1f90,
                state: 1,
                tx_queue: 0x2a000,
                rx_queue: 0x10,
            })
        );
        assert_eq!(
            tcp_entry("  sl  local_address rem_address   st tx_queue rx_queue tr"),
            None
        );
        assert_eq!(tcp_state_name(4), "FIN_WAIT1");
    }
}
