//! The mutants: each breaks exactly one rule of the protocol.

use ferry_protocol::tables::{CLOSE_CODES, ClientAction};
use serde_json::Value;

/// The ticket [`Mutation::ServerIssuesTicketsWhileDraining`] issues: no report may show it
/// whole, as no report shows any ticket whole.
pub const FORGED_TICKET: &str = "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0";

/// Which implementation a mutant breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// A server mutant: the reference server behind a tampering proxy.
    Server,
    /// A client mutant: the Rust client's adapter behind a tampering proxy and report filter.
    Client,
}

/// One deliberate defect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation {
    /// Breaks nothing: the proxy alone, to show it does not change a verdict by itself.
    Control,
    /// Accepts a ticket a second time.
    ServerAcceptsTicketTwice,
    /// Closes a rejected ticket with 1008 instead of 4401.
    ServerWrongTicketCloseCode,
    /// Sends the first replayed event of a recovery twice.
    ServerDuplicatesReplay,
    /// Leaves out the first replayed event of a recovery.
    ServerSkipsReplay,
    /// Leaves out the second live event of every channel.
    ServerSkipsLiveEvent,
    /// Drops an oversized frame silently instead of closing with 1009.
    ServerHasNoSizeGate,
    /// Never pings.
    ServerNeverPings,
    /// Never closes a peer that stopped answering pings.
    ServerIgnoresSilentPeer,
    /// Stores a publish again when its idempotency key repeats.
    ServerForgetsIdempotencyKeys,
    /// Forgets a backend publish's idempotency key half a resume window after it came.
    ServerForgetsKeysEarly,
    /// Ends the session when it refuses a subscribe or publish as forbidden.
    ServerClosesOnForbidden,
    /// Runs an RPC call again when its idempotency key repeats.
    ServerRunsCallsTwice,
    /// Calls every history page complete, with no reason.
    ServerHistoryClaimsComplete,
    /// Calls every resume's recovery complete, with no reason.
    ServerRecoveryClaimsComplete,
    /// Never answers a frame with rate_limited.
    ServerNeverRateLimits,
    /// Gives the error of a malformed frame the id the frame carried instead of null.
    ServerNumbersMalformedErrors,
    /// Takes a client connection that dropped without a close frame for a close frame: the
    /// session's presence ends at once instead of lapsing.
    ServerTakesDropsForCloses,
    /// Answers a granted hold without its fence.
    ServerWithholdsFences,
    /// Issues the restricted credential's tickets with the full credential's rights (its
    /// welcome still lists the restricted rights).
    ServerTicketGrantsEverything,
    /// Matches the literal segments of the restricted credential's patterns against any
    /// segment, as `*` (its `project:alpha:*` reads every project); its welcome still lists the
    /// patterns as they are.
    ServerPatternLiteralsMatchAnySegment,
    /// Advertises a resume window twice as long as the one it keeps events for.
    ServerAdvertisesLongerResumeWindow,
    /// Advertises a ticket lifetime twice as long as the one it keeps tickets for.
    ServerAdvertisesLongerTicketLifetime,
    /// Advertises a rate burst twice as large as the bucket it meters with.
    ServerAdvertisesLargerBurst,
    /// Counts a pong with any nonce as the answer to the outstanding ping.
    ServerAcceptsAnyPong,
    /// Sends a ping before the welcome.
    ServerPingsBeforeWelcome,
    /// Accepts an upgrade that does not offer the ferry.v1 subprotocol.
    ServerAcceptsUpgradeWithoutSubprotocol,
    /// Closes a session that keeps sending after rate_limited with 1008, not 4429.
    ServerWrongRateCloseCode,
    /// Refuses a session over the per-user limit with 1013, not 4409.
    ServerWrongConnectionLimitCode,
    /// Closes a session that sent a binary frame with 1002, not 1003.
    ServerWrongBinaryCloseCode,
    /// Closes a session that sent a text frame that is not UTF-8 with 1002, not 1007.
    ServerWrongUtf8CloseCode,
    /// Closes a session that sent an oversized frame with 1008, not 1009.
    ServerWrongSizeCloseCode,
    /// Shuts down without a goodbye: the 1012 comes alone.
    ServerSkipsGoodbye,
    /// Issues tickets while it drains: a 503 to `POST /v1/tickets` becomes a 201 with a
    /// ticket ([`FORGED_TICKET`]).
    ServerIssuesTicketsWhileDraining,
    /// Loses the newest event of a channel when it stops, as a server whose last writes were
    /// never flushed: while it drains, its history pages lack it.
    ServerLosesNewestEventWhileDraining,
    /// Answers an unsubscribe at once and stops delivering the channel's events only a
    /// moment later.
    ServerUnsubscribesLate,
    /// Puts the position before the channel's head in a subscribed reply.
    ServerReportsStaleHead,
    /// Repeats a refused bearer credential in the message of its 401.
    ServerEchoesCredential,
    /// Replays the missed events to a resuming subscribe it refuses as forbidden.
    ServerReplaysWithoutRead,
    /// Waits longer than cap_ms between attempts.
    ClientHasNoBackoffCap,
    /// Waits exactly the nominal delay, without jitter.
    ClientHasNoJitter,
    /// Never stops retrying.
    ClientNeverGivesUp,
    /// Never resets its retry count.
    ClientNeverResetsRetries,
    /// Never answers a ping.
    ClientIgnoresPings,
    /// Never notices a silent server.
    ClientMissesDeadPeer,
    /// Does not re-subscribe after a reconnect.
    ClientForgetsSubscriptions,
    /// Re-subscribes without its last position.
    ClientResubscribesFromScratch,
    /// Presents a ticket it already used.
    ClientReusesTicket,
    /// Retries on close codes whose action is stop.
    ClientIgnoresStopCodes,
    /// Sends messages above the advertised maximum.
    ClientSendsOversized,
    /// Calls every handler twice per event.
    ClientCallsHandlerTwice,
    /// Hands a repeated event to the application again.
    ClientDeliversRepeatedEvents,
    /// Says nothing when its view of a channel has a gap.
    ClientHidesGaps,
    /// Retries a publish with a new idempotency key.
    ClientForgetsPublishKey,
    /// Retries an RPC call with a new idempotency key.
    ClientForgetsCallKey,
    /// Never tells the application that a call failed.
    ClientLosesCallErrors,
    /// Counts a call's local timeout from the protocol's default rpc.timeout_ms, not the
    /// advertised one.
    ClientIgnoresRpcTimeout,
    /// Sends a frame before the welcome.
    ClientSpeaksBeforeWelcome,
    /// Re-subscribes after a reconnect asking for its hold without the fence of its last one.
    ClientForgetsFences,
    /// Measures a message in characters (Unicode scalar values), not bytes of UTF-8.
    ClientCountsCharacters,
    /// Says nothing when an event of a new epoch arrives that no recovery announced.
    ClientHidesEpochChanges,
    /// Sends a request refused with rate_limited again on the same session, once
    /// retry_after_ms has passed.
    ClientResendsAfterRateLimit,
    /// Treats 4401 like any other retryable close: waits its backoff before it renews the
    /// ticket.
    ClientBacksOffAfterTicketRejected,
}

impl Mutation {
    /// Every mutant.
    pub const ALL: &[Mutation] = &[
        Self::ServerAcceptsTicketTwice,
        Self::ServerWrongTicketCloseCode,
        Self::ServerDuplicatesReplay,
        Self::ServerSkipsReplay,
        Self::ServerSkipsLiveEvent,
        Self::ServerHasNoSizeGate,
        Self::ServerNeverPings,
        Self::ServerIgnoresSilentPeer,
        Self::ServerForgetsIdempotencyKeys,
        Self::ServerForgetsKeysEarly,
        Self::ServerClosesOnForbidden,
        Self::ServerRunsCallsTwice,
        Self::ServerHistoryClaimsComplete,
        Self::ServerRecoveryClaimsComplete,
        Self::ServerNeverRateLimits,
        Self::ServerNumbersMalformedErrors,
        Self::ServerTakesDropsForCloses,
        Self::ServerWithholdsFences,
        Self::ServerTicketGrantsEverything,
        Self::ServerPatternLiteralsMatchAnySegment,
        Self::ServerAdvertisesLongerResumeWindow,
        Self::ServerAdvertisesLongerTicketLifetime,
        Self::ServerAdvertisesLargerBurst,
        Self::ServerAcceptsAnyPong,
        Self::ServerPingsBeforeWelcome,
        Self::ServerAcceptsUpgradeWithoutSubprotocol,
        Self::ServerWrongRateCloseCode,
        Self::ServerWrongConnectionLimitCode,
        Self::ServerWrongBinaryCloseCode,
        Self::ServerWrongUtf8CloseCode,
        Self::ServerWrongSizeCloseCode,
        Self::ServerSkipsGoodbye,
        Self::ServerIssuesTicketsWhileDraining,
        Self::ServerLosesNewestEventWhileDraining,
        Self::ServerUnsubscribesLate,
        Self::ServerReportsStaleHead,
        Self::ServerEchoesCredential,
        Self::ServerReplaysWithoutRead,
        Self::ClientHasNoBackoffCap,
        Self::ClientHasNoJitter,
        Self::ClientNeverGivesUp,
        Self::ClientNeverResetsRetries,
        Self::ClientIgnoresPings,
        Self::ClientMissesDeadPeer,
        Self::ClientForgetsSubscriptions,
        Self::ClientResubscribesFromScratch,
        Self::ClientReusesTicket,
        Self::ClientIgnoresStopCodes,
        Self::ClientSendsOversized,
        Self::ClientCallsHandlerTwice,
        Self::ClientDeliversRepeatedEvents,
        Self::ClientHidesGaps,
        Self::ClientForgetsPublishKey,
        Self::ClientForgetsCallKey,
        Self::ClientLosesCallErrors,
        Self::ClientIgnoresRpcTimeout,
        Self::ClientSpeaksBeforeWelcome,
        Self::ClientForgetsFences,
        Self::ClientCountsCharacters,
        Self::ClientHidesEpochChanges,
        Self::ClientResendsAfterRateLimit,
        Self::ClientBacksOffAfterTicketRejected,
    ];

    /// The mutant's name on the command line and in reports.
    pub fn name(self) -> String {
        let debug = format!("{self:?}");
        let mut name = String::new();
        for (i, c) in debug.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                name.push('-');
            }
            name.push(c.to_ascii_lowercase());
        }
        name
    }

    /// Parses a name from [`name`](Self::name).
    pub fn from_name(name: &str) -> Option<Self> {
        std::iter::once(Self::Control)
            .chain(Self::ALL.iter().copied())
            .find(|m| m.name() == name)
    }

    /// Which side it breaks (`None` for the control).
    pub fn side(self) -> Option<Side> {
        let name = format!("{self:?}");
        if name.starts_with("Server") {
            Some(Side::Server)
        } else if name.starts_with("Client") {
            Some(Side::Client)
        } else {
            None
        }
    }

    /// The rule it breaks.
    pub fn rule(self) -> &'static str {
        match self {
            Self::Control => "none",
            Self::ServerAcceptsTicketTwice => "FERRY-TICKET-4",
            Self::ServerWrongTicketCloseCode => "FERRY-TICKET-3",
            Self::ServerDuplicatesReplay | Self::ServerSkipsReplay => "FERRY-RESUME-1",
            Self::ServerSkipsLiveEvent => "FERRY-EVENT-2",
            Self::ServerHasNoSizeGate => "FERRY-SIZE-3",
            Self::ServerNeverPings => "FERRY-HEARTBEAT-1",
            Self::ServerIgnoresSilentPeer => "FERRY-HEARTBEAT-3",
            Self::ServerForgetsIdempotencyKeys => "FERRY-DEDUP-1",
            Self::ServerForgetsKeysEarly => "FERRY-DEDUP-2",
            Self::ServerClosesOnForbidden => "FERRY-CHANNEL-2",
            Self::ClientHasNoBackoffCap => "FERRY-RECONNECT-3",
            Self::ClientHasNoJitter => "FERRY-RECONNECT-2",
            Self::ClientNeverGivesUp => "FERRY-RECONNECT-4",
            Self::ClientNeverResetsRetries => "FERRY-RECONNECT-5",
            Self::ClientIgnoresPings => "FERRY-HEARTBEAT-2",
            Self::ClientMissesDeadPeer => "FERRY-HEARTBEAT-4",
            Self::ClientForgetsSubscriptions | Self::ClientResubscribesFromScratch => {
                "FERRY-SUBSCRIBE-5"
            }
            Self::ClientReusesTicket => "FERRY-TICKET-5",
            Self::ClientIgnoresStopCodes => "FERRY-RECONNECT-1",
            Self::ClientSendsOversized => "FERRY-SIZE-2",
            Self::ClientCallsHandlerTwice => "FERRY-EVENT-5",
            Self::ClientDeliversRepeatedEvents => "FERRY-EVENT-3",
            Self::ClientHidesGaps => "FERRY-EVENT-4",
            Self::ClientForgetsPublishKey => "FERRY-PUBLISH-3",
            Self::ServerRunsCallsTwice | Self::ClientForgetsCallKey => "FERRY-RPC-3",
            Self::ClientLosesCallErrors => "FERRY-RPC-6",
            Self::ClientIgnoresRpcTimeout => "FERRY-RPC-2",
            Self::ServerHistoryClaimsComplete => "FERRY-RESUME-5",
            Self::ServerRecoveryClaimsComplete => "FERRY-RESUME-2",
            Self::ServerNeverRateLimits => "FERRY-RATE-1",
            Self::ServerNumbersMalformedErrors => "FERRY-TRANSPORT-5",
            Self::ServerTakesDropsForCloses => "FERRY-PRESENCE-4",
            Self::ServerWithholdsFences => "FERRY-HOLD-1",
            Self::ClientSpeaksBeforeWelcome => "FERRY-WELCOME-2",
            Self::ClientForgetsFences => "FERRY-HOLD-5",
            Self::ServerTicketGrantsEverything => "FERRY-TICKET-1",
            Self::ServerPatternLiteralsMatchAnySegment => "FERRY-CHANNEL-3",
            Self::ServerAdvertisesLongerResumeWindow => "FERRY-RESUME-3",
            Self::ServerAdvertisesLongerTicketLifetime => "FERRY-TICKET-2",
            Self::ServerAdvertisesLargerBurst => "FERRY-RATE-1",
            Self::ServerAcceptsAnyPong => "FERRY-HEARTBEAT-3",
            Self::ServerPingsBeforeWelcome => "FERRY-WELCOME-1",
            Self::ServerAcceptsUpgradeWithoutSubprotocol => "FERRY-TRANSPORT-1",
            Self::ServerWrongRateCloseCode => "FERRY-RATE-2",
            Self::ServerWrongConnectionLimitCode => "FERRY-RATE-3",
            Self::ServerWrongBinaryCloseCode => "FERRY-TRANSPORT-3",
            Self::ServerWrongUtf8CloseCode => "FERRY-TRANSPORT-4",
            Self::ServerWrongSizeCloseCode => "FERRY-SIZE-3",
            Self::ServerSkipsGoodbye => "FERRY-SHUTDOWN-1",
            Self::ServerIssuesTicketsWhileDraining => "FERRY-SHUTDOWN-4",
            Self::ServerLosesNewestEventWhileDraining => "FERRY-SHUTDOWN-3",
            Self::ServerUnsubscribesLate => "FERRY-SUBSCRIBE-3",
            Self::ServerReportsStaleHead => "FERRY-SUBSCRIBE-2",
            Self::ServerEchoesCredential => "FERRY-TICKET-6",
            Self::ServerReplaysWithoutRead => "FERRY-RESUME-6",
            Self::ClientCountsCharacters => "FERRY-SIZE-1",
            Self::ClientHidesEpochChanges => "FERRY-EVENT-4",
            Self::ClientResendsAfterRateLimit => "FERRY-RATE-5",
            Self::ClientBacksOffAfterTicketRejected => "FERRY-RECONNECT-6",
        }
    }

    /// The groups of cases (id prefixes) that judge the rule it breaks: a mutant runs only
    /// those cases, while the control runs every case.
    pub fn groups(self) -> &'static [&'static str] {
        match self {
            Self::Control => &[""],
            Self::ServerAcceptsTicketTwice
            | Self::ServerWrongTicketCloseCode
            | Self::ServerAdvertisesLongerTicketLifetime => &["server.ticket."],
            Self::ServerDuplicatesReplay
            | Self::ServerSkipsReplay
            | Self::ServerRecoveryClaimsComplete
            | Self::ServerAdvertisesLongerResumeWindow => &["server.resume."],
            Self::ServerSkipsLiveEvent => &["server.event.sequence."],
            Self::ServerHasNoSizeGate | Self::ServerWrongSizeCloseCode => &["server.size."],
            Self::ServerNeverPings | Self::ServerIgnoresSilentPeer | Self::ServerAcceptsAnyPong => {
                &["server.heartbeat."]
            }
            Self::ServerForgetsIdempotencyKeys => &["server.dedup."],
            Self::ServerForgetsKeysEarly => &["server.dedup_window."],
            Self::ServerClosesOnForbidden => &["server.permission."],
            Self::ServerTicketGrantsEverything => {
                &["server.permission.", "server.rpc.call_forbidden"]
            }
            Self::ServerReplaysWithoutRead => &["server.permission.subscribe."],
            Self::ServerPatternLiteralsMatchAnySegment => &["server.channel.pattern_segments"],
            Self::ServerRunsCallsTwice => &["server.rpc."],
            Self::ServerHistoryClaimsComplete => &["server.history."],
            Self::ServerNeverRateLimits
            | Self::ServerAdvertisesLargerBurst
            | Self::ServerWrongRateCloseCode
            | Self::ServerWrongConnectionLimitCode => &["server.rate."],
            Self::ServerNumbersMalformedErrors => &["server.transport.malformed."],
            Self::ServerWrongBinaryCloseCode | Self::ServerWrongUtf8CloseCode => {
                &["server.transport.bad_frame."]
            }
            Self::ServerAcceptsUpgradeWithoutSubprotocol => &["server.transport.upgrade."],
            Self::ServerTakesDropsForCloses => &["server.presence."],
            Self::ServerWithholdsFences => &["server.hold."],
            Self::ServerPingsBeforeWelcome => &["server.welcome."],
            Self::ServerSkipsGoodbye
            | Self::ServerIssuesTicketsWhileDraining
            | Self::ServerLosesNewestEventWhileDraining => &["server.shutdown."],
            Self::ServerUnsubscribesLate => &["server.unsubscribe."],
            Self::ServerReportsStaleHead => &["server.subscribe."],
            Self::ServerEchoesCredential => &["server.ticket.not_echoed", "server.http."],
            Self::ClientHasNoBackoffCap
            | Self::ClientHasNoJitter
            | Self::ClientNeverGivesUp
            | Self::ClientNeverResetsRetries => &["client.reconnect."],
            Self::ClientIgnoresPings | Self::ClientMissesDeadPeer => &["client.heartbeat."],
            Self::ClientForgetsSubscriptions | Self::ClientResubscribesFromScratch => {
                &["client.subscribe.", "client.resume."]
            }
            Self::ClientReusesTicket | Self::ClientSpeaksBeforeWelcome => &["client.handshake."],
            Self::ClientBacksOffAfterTicketRejected => {
                &["client.handshake.", "client.close.ticket_rejected"]
            }
            Self::ClientIgnoresStopCodes => &["client.close."],
            Self::ClientSendsOversized => &["client.welcome.", "client.size."],
            Self::ClientCountsCharacters => &["client.size."],
            Self::ClientCallsHandlerTwice
            | Self::ClientHidesGaps
            | Self::ClientHidesEpochChanges => &["client.event."],
            Self::ClientDeliversRepeatedEvents => &["client.event.", "client.resume."],
            Self::ClientForgetsPublishKey | Self::ClientResendsAfterRateLimit => {
                &["client.publish."]
            }
            Self::ClientForgetsCallKey
            | Self::ClientLosesCallErrors
            | Self::ClientIgnoresRpcTimeout => &["client.rpc."],
            Self::ClientForgetsFences => &["client.hold."],
        }
    }

    /// Whether case `id` runs against this mutant.
    pub fn runs(self, id: &str) -> bool {
        self.groups().iter().any(|group| id.starts_with(group))
    }

    /// The credential whose rights the restricted credential's tickets are issued with, its
    /// welcome still listing the restricted rights; `None` for every other mutant.
    pub fn restricted_poses_as(self) -> Option<&'static str> {
        match self {
            Self::ServerTicketGrantsEverything => Some(crate::support::TOKEN),
            Self::ServerPatternLiteralsMatchAnySegment => Some(crate::support::RESTRICTED_WIDE),
            _ => None,
        }
    }

    /// The close code the peer sees instead of `code`.
    pub fn close_code(self, code: u16) -> u16 {
        match self {
            Self::ServerWrongTicketCloseCode if code == 4401 => 1008,
            Self::ServerWrongRateCloseCode if code == 4429 => 1008,
            Self::ServerWrongConnectionLimitCode if code == 4409 => 1013,
            Self::ServerWrongBinaryCloseCode if code == 1003 => 1002,
            Self::ServerWrongUtf8CloseCode if code == 1007 => 1002,
            Self::ServerWrongSizeCloseCode if code == 1009 => 1008,
            Self::ClientBacksOffAfterTicketRejected if code == 4401 => 1011,
            Self::ClientIgnoresStopCodes
                if CLOSE_CODES
                    .iter()
                    .any(|c| c.code == code && c.action == ClientAction::Stop) =>
            {
                1011
            }
            _ => code,
        }
    }

    /// Changes the welcome a mutant client obeys; `None` leaves it alone.
    pub fn rewrite_welcome(self, welcome: &mut Value) -> Option<String> {
        let (section, field, value) = match self {
            Self::ClientHasNoBackoffCap => ("reconnect", "cap_ms", Value::from(3_600_000)),
            Self::ClientHasNoJitter => ("reconnect", "jitter", Value::from(0)),
            Self::ClientNeverGivesUp => ("reconnect", "max_attempts", Value::from(10_000)),
            Self::ClientNeverResetsRetries => {
                ("reconnect", "reset_after_ms", Value::from(3_600_000))
            }
            Self::ClientMissesDeadPeer => {
                welcome["heartbeat"]["timeout_ms"] = Value::from(3_600_000);
                ("heartbeat", "interval_ms", Value::from(3_600_000))
            }
            Self::ClientSendsOversized => ("limits", "max_message_bytes", Value::from(67_108_864)),
            Self::ServerAdvertisesLongerResumeWindow => {
                let window = welcome["resume"]["window_ms"].as_u64()?;
                ("resume", "window_ms", Value::from(2 * window))
            }
            Self::ServerAdvertisesLargerBurst => {
                let burst = welcome["limits"]["rate_limit"]["burst"].as_u64()?;
                welcome["limits"]["rate_limit"]["burst"] = Value::from(2 * burst);
                return Some(welcome.to_string());
            }
            Self::ClientIgnoresRpcTimeout if welcome.get("rpc").is_some() => (
                "rpc",
                "timeout_ms",
                Value::from(ferry_protocol::tables::defaults::RPC_TIMEOUT_MS),
            ),
            _ => return None,
        };
        welcome[section][field] = value;
        Some(welcome.to_string())
    }
}
