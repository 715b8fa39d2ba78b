//! Ferry's protocol core: the generated message types of `ferry.v1` and the protocol's rules as
//! pure, deterministic code.
//!
//! This crate opens no socket and reads no clock. The reference server, the Rust client and the
//! conformance runner all build on it, so each rule is written once, here or in `schema/`.
//!
//! The types that matter:
//! - [`ClientMessage`] and [`ServerMessage`]: every frame of the protocol, as tagged unions
//!   generated from `schema/` (see `generated/rust/types.rs`); the HTTP bodies
//!   ([`TicketResponse`], [`PublishRequest`], [`HistoryResponse`], ...) beside them.
//! - [`Codec`]: frame to message and back, with the size gate first, and a [`DecodeError`] that
//!   says which close code or error code the spec prescribes ([`Outcome`]).
//! - [`tables`]: the close-code table with each code's [`ClientAction`](tables::ClientAction),
//!   the error codes, the defaults, the rule catalogue and the endpoints, generated from the
//!   schema's tables.
//! - [`bounded`]: the number types that carry schema bounds.
//! - [`ClientSession`]: every client-side rule as a state machine driven like quinn-proto's
//!   `Connection` (feed it events and timeouts; drain transmits, application events and the
//!   next timeout), so a client shell in any runtime only moves bytes and time.
//! - [`ServerSession`]: every per-connection rule of a server (welcome, heartbeat, rate and
//!   size limits, permissions, replay ordering, shutdown) in the same style, so a server is an
//!   I/O shell plus a broker. Each session has its own `Transmit` type
//!   ([`client::Transmit`], [`server::Transmit`]).
//! - The rules as pure building blocks, each driven with time and randomness handed in:
//!   [`BackoffPolicy`] and [`Backoff`] (the reconnect formula and retry count),
//!   [`close::action_for`] (the close-code classifier), [`DedupWindow`] (idempotency keys),
//!   [`PositionTracker`] (a client's per-channel stream position), [`ReplayBuffer`] (a
//!   channel's history for resume), [`TokenBucket`] (the inbound rate limit), and [`Roster`],
//!   [`presence::HoldSlot`] and [`MemberList`] (presence and exclusive channels).

pub mod backoff;
pub mod bounded;
pub mod channel;
pub mod client;
pub mod close;
pub mod codec;
pub mod dedup;
pub mod position;
pub mod presence;
pub mod rate;
pub mod replay;
pub mod rpc;
pub mod runtime;
pub mod server;
pub mod shared;
pub mod time;

/// The generated message and body types (from `schema/*.schema.json`).
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used
)]
pub mod types {
    include!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../generated/rust/types.rs"
    ));
}

/// The generated tables: close codes, error codes, defaults, rules and endpoints (from
/// `schema/*.json`).
#[allow(clippy::all)]
pub mod tables {
    use crate::types::ErrorCode;
    include!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../generated/rust/tables.rs"
    ));
}

pub use backoff::{Backoff, BackoffPolicy};
pub use channel::{Access, permits, permits_call};
pub use client::{ClientConfig, ClientEvent, ClientSession, ClientState, SubscribeOptions};
pub use codec::{Codec, DecodeError, EncodeError, Frame, Message, Outcome};
pub use dedup::DedupWindow;
pub use position::{Arrival, PositionTracker, Resumption};
pub use presence::{EncodedPresence, Exclusive, MemberList, Roster};
pub use rate::{CallerBuckets, TokenBucket};
pub use replay::{ReplayBuffer, Retention};
pub use rpc::Method;
pub use server::{Grant, ServerConfig, ServerSession};
pub use shared::{EncodedEvent, FrameText};
pub use time::Timestamp;
pub use types::*;

/// The WebSocket subprotocol of this version of Ferry.
pub const SUBPROTOCOL: &str = "ferry.v1";
