//! Ferry's fuzz targets, as plain functions of the input bytes: each must return without a
//! panic whatever it is fed. `fuzz_targets/` wraps each for libFuzzer (`cargo fuzz run NAME`,
//! nightly) and, on stable, as a binary that replays files; `tests/corpus.rs` runs each over
//! its seed corpus (`corpus/NAME`, made from `schema/vectors`) under `cargo test`.
//!
//! - [`codec_decode`]: the codec's decode of client and server frames (FERRY-TRANSPORT-2..5,
//!   FERRY-SIZE-1), and the round trip of every client message it accepts.
//! - [`server_session`]: a `ServerSession` fed a line-separated sequence of client frames and
//!   timeouts, its broker actions answered, every transmit drained.
//! - [`client_session`]: a `ClientSession` connected, then fed a line-separated sequence of
//!   server frames and timeouts, reconnecting whenever it asks to.
//! - [`http_bodies`]: the bodies and queries of the HTTP endpoints, decoded as the server
//!   decodes them, and a publish's event size checked as the server checks it (FERRY-SIZE-4).

use std::path::Path;
use std::time::Duration;

use ferry_protocol::client::{ConnectionId, Transmit as ClientTransmit};
use ferry_protocol::server::{Action, Grant, ServerConfig, check_event_size, error_info};
use ferry_protocol::{
    ClientConfig, ClientMessage, ClientSession, Codec, ErrorCode, Frame, HistoryQuery,
    PublishRequest, Recovery, RecoveryGap, ServerSession, StreamPosition, Ticket, Timestamp,
};

/// The message size limit the targets use: small, so that the size gate is reached often.
const MAX_BYTES: usize = 4096;

/// Decodes `data` as a text and a binary frame, from either side; a client message that
/// decodes must encode to a frame that decodes to the same message.
pub fn codec_decode(data: &[u8]) {
    let codec = Codec::new(MAX_BYTES);
    for frame in [Frame::Text(data), Frame::Binary(data)] {
        if let Err(error) = codec.decode_server(frame) {
            let _ = error.outcome();
        }
        match codec.decode_client(frame) {
            Ok(message) => round_trip(&codec, &message),
            Err(error) => {
                let _ = error.outcome();
            }
        }
    }
}

fn round_trip(codec: &Codec, message: &ClientMessage) {
    // A message within the limit re-encodes at most as long (compact JSON, no whitespace)...
    let Ok(text) = codec.encode(message) else {
        return;
    };
    // ...and what the codec writes, it reads back as the same message.
    let again = codec
        .decode_client(Frame::Text(text.as_bytes()))
        .expect("a frame the codec wrote decodes");
    assert_eq!(&again, message, "{text}");
}

/// The input as a sequence of steps: each line is a text frame, except that a line starting
/// with `#` advances the clock by as many seconds as the line is long and fires the timers.
fn steps(data: &[u8]) -> impl Iterator<Item = Step<'_>> {
    data.split(|&b| b == b'\n').map(|line| match line.first() {
        Some(b'#') => Step::Wait(Duration::from_secs(line.len() as u64)),
        _ => Step::Frame(line),
    })
}

enum Step<'a> {
    Frame(&'a [u8]),
    Wait(Duration),
}

fn position(seq: u64) -> StreamPosition {
    serde_json::from_value(serde_json::json!({ "epoch": "e-fuzz", "seq": seq }))
        .expect("a valid position")
}

/// A server session with every right, fed `data` as client frames.
pub fn server_session(data: &[u8]) {
    let grant = Grant {
        user: "fuzz".parse().expect("a valid user"),
        permissions: serde_json::from_value(serde_json::json!([
            { "pattern": "project:**", "read": true, "write": true }
        ]))
        .expect("valid permissions"),
    };
    let config = ServerConfig::default();
    let mut now = Timestamp::from_millis(0);
    let mut session = ServerSession::new(config, grant, "s-fuzz".parse().expect("an id"), now);
    let mut head = 0u64;
    for step in steps(data) {
        match step {
            Step::Frame(line) => {
                now = now + Duration::from_millis(3);
                session.handle_frame(Frame::Text(line), now);
            }
            Step::Wait(wait) => {
                now = now + wait;
                session.handle_timeout(now);
            }
        }
        while let Some(action) = session.poll_action() {
            match action {
                Action::Subscribe { id, from, .. } => {
                    let recovery = from.map(|_| Recovery {
                        complete: false,
                        reason: Some(RecoveryGap::HistoryExceeded),
                        replayed: serde_json::from_value(serde_json::json!(0)).expect("0"),
                    });
                    session.subscribed(&id, position(head), recovery, Vec::new());
                }
                Action::Publish { id, .. } => {
                    head += 1;
                    session.request_failed(&id, error_info(ErrorCode::Unavailable, "fuzz"));
                }
                Action::Rpc { id, .. } => {
                    let refused = error_info(ErrorCode::Unavailable, "fuzz");
                    session.answered(&id, Err(refused), false, now);
                }
                Action::Members { id, .. } => {
                    session.member_page(&id, Vec::new(), None, position(head));
                }
                Action::Unsubscribe { .. } => {}
            }
        }
        while session.poll_transmit().is_some() {}
    }
}

/// A client session, connected and fed `data` as server frames.
pub fn client_session(data: &[u8]) {
    let mut now = Timestamp::from_millis(0);
    let mut client = ClientSession::new(ClientConfig::default(), 7);
    let mut connection = None;
    client.connect(now);
    drive(&mut client, &mut connection, now);
    for step in steps(data) {
        match step {
            Step::Frame(line) => {
                now = now + Duration::from_millis(3);
                let id = connection.unwrap_or(ConnectionId(0));
                client.handle_frame(id, Frame::Text(line), now);
            }
            Step::Wait(wait) => {
                now = now + wait;
                client.handle_timeout(now);
            }
        }
        drive(&mut client, &mut connection, now);
    }
}

/// Answers what the client asks for (a ticket, a connection) and drains its events.
fn drive(client: &mut ClientSession, connection: &mut Option<ConnectionId>, now: Timestamp) {
    while let Some(transmit) = client.poll_transmit() {
        match transmit {
            ClientTransmit::FetchTicket => {
                let ticket = Ticket::try_from("0".repeat(64).as_str()).expect("a ticket");
                client.handle_ticket(Ok(ticket), now);
            }
            ClientTransmit::Connect { connection: id, .. } => {
                *connection = Some(id);
                client.handle_connected(id, now);
            }
            _ => {}
        }
    }
    while client.poll_event().is_some() {}
}

/// Decodes `data` as the server decodes a publish body and a history query, and checks a
/// decoded publish's event size as the server does.
pub fn http_bodies(data: &[u8]) {
    if let Ok(request) = serde_json::from_slice::<PublishRequest>(data) {
        let _ = check_event_size(&request.channel, &request.payload, MAX_BYTES);
    }
    // The history endpoint types its query string's values before it decodes them.
    if let Ok(serde_json::Value::Object(query)) = serde_json::from_slice(data) {
        let _ = serde_json::from_value::<HistoryQuery>(serde_json::Value::Object(query));
    }
}

/// What a target's binary does on stable: runs `target` over every file named on the command
/// line (a folder stands for the files in it), by default `corpus/NAME`; prints how many.
pub fn replay_main(name: &str, target: fn(&[u8])) {
    let mut paths: Vec<std::path::PathBuf> = std::env::args_os().skip(1).map(Into::into).collect();
    if paths.is_empty() {
        paths.push(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("corpus")
                .join(name),
        );
    }
    let mut count = 0;
    for path in paths {
        count += replay(&path, target);
    }
    eprintln!("{name}: {count} inputs, no panic");
}

/// Runs `target` over the file at `path`, or over every file in the folder; how many.
pub fn replay(path: &Path, target: fn(&[u8])) -> usize {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .collect();
        entries.sort();
        entries.iter().map(|entry| replay(entry, target)).sum()
    } else {
        let data =
            std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        target(&data);
        1
    }
}
