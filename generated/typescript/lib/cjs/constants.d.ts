import type { ErrorCode } from "./types.js";
/** The WebSocket subprotocol a client asks for and the server's welcome names (FERRY-TRANSPORT-1). */
export declare const SUBPROTOCOL = "ferry.v1";
/** The query parameter of the connect endpoint that carries the ticket: `?ticket=...` (FERRY-TICKET-3). */
export declare const TICKET_QUERY_PARAMETER = "ticket";
/** What a client does when its session closes with a given code. */
export type ClientAction = "stop" | "backoff" | "retry_after_hint" | "renew_ticket";
/** One row of the close-code table. */
export interface CloseCodeInfo {
    readonly code: number;
    readonly name: string;
    readonly sentWhen: string;
    readonly action: ClientAction;
    readonly rules: readonly string[];
}
/** The close codes, by name. */
export declare const CloseCode: {
    /** The session ends at the client's request, or the server ends it on purpose with nothing to retry. */
    readonly NormalClosure: 1000;
    /** An endpoint goes away without a graceful shutdown (a proxy restarting, a page being left). */
    readonly GoingAway: 1001;
    /** A WebSocket-level protocol violation (for example a masked server frame or an unmasked client frame). */
    readonly ProtocolError: 1002;
    /** The client sent a binary frame; no binary encoding has been negotiated. */
    readonly UnsupportedData: 1003;
    /** Never sent: observed locally when a close frame carried no code. */
    readonly NoStatus: 1005;
    /** Never sent: observed locally when the connection dropped without a close frame. */
    readonly AbnormalClosure: 1006;
    /** The client sent a text frame that is not valid UTF-8. */
    readonly InvalidPayload: 1007;
    /** The client kept sending malformed frames after being told with errors: by default the 10th malformed frame of a session is answered with an error and the session is then closed. */
    readonly PolicyViolation: 1008;
    /** The client sent a frame larger than the advertised max_message_bytes. */
    readonly MessageTooBig: 1009;
    /** The server hit an unexpected condition and ended the session. */
    readonly InternalError: 1011;
    /** The server is shutting down or restarting, after a goodbye carrying a retry hint. */
    readonly ServiceRestart: 1012;
    /** The server is overloaded and sheds the session, after a goodbye with reason overloaded carrying a retry hint. */
    readonly TryAgainLater: 1013;
    /** The ticket is missing, unknown, expired or already used; sent before any other frame. */
    readonly TicketRejected: 4401;
    /** The identity behind the session lost its access while connected, after a goodbye with reason revoked. */
    readonly AccessRevoked: 4403;
    /** The client did not answer a ping within heartbeat.timeout_ms. */
    readonly HeartbeatTimeout: 4408;
    /** Opening this session would exceed the per-user connection limit. */
    readonly TooManyConnections: 4409;
    /** The session did not take its events as fast as its channels produced them, and what was queued for it passed the server's outbound queue limits. Nothing is lost: the client resumes at once from the last event it delivered. */
    readonly FellBehind: 4410;
    /** The session held no subscription and sent nothing but pongs for the server's idle timeout, a server setting (off by default in ferry-server). The client connects again when its application next subscribes or publishes. */
    readonly IdleTimeout: 4411;
    /** Another session took over the exclusive channel this session held, in a namespace that declares exclusive take_over. The client does not reconnect by itself: its application decides whether to take the channel back. */
    readonly TakenOver: 4412;
    /** The client kept sending after being answered with rate_limited. */
    readonly RateLimitExceeded: 4429;
};
/** Any close code of the table. */
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];
/**
 * Every WebSocket close code a ferry.v1 server sends or a client may observe, and the action a client takes on it. Actions: stop (do not reconnect; report the reason), renew_ticket (get a new ticket and retry at once, then under backoff if it happens again), backoff (retry under the reconnect policy), retry_after_hint (wait the goodbye's retry_after_ms, or back off when there is none). A code missing from this table is treated as backoff.
 */
export declare const CLOSE_CODES: readonly CloseCodeInfo[];
/** Each close code's client action, by code: the table without its texts, which a browser bundle that imports only `closeAction` leaves out. */
export declare const CLOSE_ACTIONS: {
    readonly [code: number]: ClientAction;
};
/** The action for a close code; a code missing from the table is treated as backoff (FERRY-RECONNECT-1). */
export declare function closeAction(code: number): ClientAction;
/** One row of the error-code table. */
export interface ErrorCodeInfo {
    readonly meaning: string;
    readonly retryable: boolean;
    readonly httpStatus: number;
    readonly rules: readonly string[];
}
/** Every error code, with its meaning, whether a retry can help, and its HTTP status. */
export declare const ERROR_CODES: {
    readonly [code in ErrorCode]: ErrorCodeInfo;
};
/** The protocol's defaults and fixed limits. Advertised values may differ per server: obey the welcome. */
export declare const DEFAULTS: {
    /**
     * The largest message either side may send. (bytes)
     */
    readonly maxMessageBytes: 131072;
    /**
     * Time between two server pings. (ms)
     */
    readonly heartbeatIntervalMs: 20000;
    /**
     * Time a client has to answer a ping; with the interval, dead-peer detection takes 30 s. (ms)
     */
    readonly heartbeatTimeoutMs: 10000;
    /**
     * Nominal delay before the first retry. (ms)
     */
    readonly reconnectBaseMs: 1000;
    /**
     * Growth of the nominal delay per retry. (ratio)
     */
    readonly reconnectFactor: 2;
    /**
     * The largest delay between retries. (ms)
     */
    readonly reconnectCapMs: 30000;
    /**
     * Fraction of the nominal delay that is randomised. (ratio)
     */
    readonly reconnectJitter: 0.5;
    /**
     * Failed retries in a row before a client stops. (count)
     */
    readonly reconnectMaxAttempts: 20;
    /**
     * How long a session must stay welcomed before the retry count resets. (ms)
     */
    readonly reconnectResetAfterMs: 5000;
    /**
     * Age up to which missed events can be replayed. (ms)
     */
    readonly resumeWindowMs: 120000;
    /**
     * Number of most recent events per channel that can be replayed. (count)
     */
    readonly resumeMaxEvents: 1000;
    /**
     * Sustained inbound frame rate per session. (count/s)
     */
    readonly rateLimitMessagesPerSecond: 10;
    /**
     * Inbound frames a session may send at once after a quiet period. (count)
     */
    readonly rateLimitBurst: 20;
    /**
     * Channels one session may hold at once. (count)
     */
    readonly maxSubscriptions: 100;
    /**
     * Lifetime of a ticket. (ms)
     */
    readonly ticketTtlMs: 30000;
    /**
     * Least number of random bits in a ticket. (bits)
     */
    readonly ticketMinEntropyBits: 128;
    /**
     * How long an idempotency key is remembered; never shorter than the resume window. (ms)
     */
    readonly dedupWindowMs: 120000;
    /**
     * Frames refused with rate_limited within one second; the last of them is answered, then the session is closed with 4429. (count)
     */
    readonly rateLimitStrikes: 5;
    /**
     * Malformed frames in one session; the last of them is answered, then the session is closed with 1008. (count)
     */
    readonly malformedFrameLimit: 10;
    /**
     * Bytes of history a node retains over all its channels, each event counted as its frame plus its payload's text; past it, events older than the resume window go first, then publishes are refused with unavailable. (bytes)
     */
    readonly maxHistoryBytes: 268435456;
    /**
     * Sustained tickets one caller may obtain per second. (count/s)
     */
    readonly ticketRateLimitPerSecond: 5;
    /**
     * Tickets one caller may obtain at once after a quiet period (enough for every session the per-user connection limit allows to reconnect at once). (count)
     */
    readonly ticketRateLimitBurst: 20;
    /**
     * Sustained backend publishes (POST /v1/publish) one caller may make per second; with the dedup window it bounds the idempotency keys one caller can make the server hold. (count/s)
     */
    readonly publishRateLimitPerSecond: 200;
    /**
     * Backend publishes one caller may make at once after a quiet period. (count)
     */
    readonly publishRateLimitBurst: 400;
    /**
     * Concurrent sessions one identity may hold. (count)
     */
    readonly maxConnectionsPerUser: 16;
    /**
     * The span over which a shutting-down server spreads its clients' reconnects. (ms)
     */
    readonly drainPeriodMs: 10000;
    /**
     * How long a client waits for the welcome after the WebSocket opens. (ms)
     */
    readonly welcomeTimeoutMs: 10000;
    /**
     * How long a server lets an RPC call run before it answers timeout. (ms)
     */
    readonly rpcTimeoutMs: 10000;
    /**
     * How long a client waits for the reply to a request before failing it locally. (ms)
     */
    readonly requestTimeoutMs: 10000;
    /**
     * How long a session whose connection ended without an unsubscribe or a close frame from its client still counts as present; as long as the heartbeat's dead-peer detection. (ms)
     */
    readonly presenceLeaveAfterMs: 30000;
    /**
     * The largest presence info a subscribe may carry, as the client serialized it. (bytes)
     */
    readonly maxPresenceInfoBytes: 512;
    /**
     * The most members one member_page holds, and the limit a members request without one asks for. (count)
     */
    readonly maxMemberPage: 1000;
};
/** How binding a rule is (RFC 2119). */
export type RuleLevel = "MUST" | "SHOULD";
/** One rule of the catalogue. */
export interface Rule {
    readonly level: RuleLevel;
    readonly section: string;
    readonly text: string;
}
/** The rule catalogue, by rule id. */
export declare const RULES: {
    readonly "FERRY-TRANSPORT-1": {
        readonly level: "MUST";
        readonly section: "TRANSPORT";
        readonly text: "A client MUST open the session with the WebSocket subprotocol ferry.v1, and a server MUST refuse an upgrade that does not offer it, with HTTP 400 and an ErrorBody whose code is bad_request.";
    };
    readonly "FERRY-TRANSPORT-2": {
        readonly level: "MUST";
        readonly section: "TRANSPORT";
        readonly text: "Each text frame MUST carry exactly one JSON object encoded as UTF-8, whose type member names a message of this protocol.";
    };
    readonly "FERRY-TRANSPORT-3": {
        readonly level: "MUST";
        readonly section: "TRANSPORT";
        readonly text: "A server MUST close a session that sends a binary frame with close code 1003, and a client MUST NOT send binary frames.";
    };
    readonly "FERRY-TRANSPORT-4": {
        readonly level: "MUST";
        readonly section: "TRANSPORT";
        readonly text: "A server MUST close a session that sends a text frame which is not valid UTF-8 with close code 1007.";
    };
    readonly "FERRY-TRANSPORT-5": {
        readonly level: "MUST";
        readonly section: "TRANSPORT";
        readonly text: "A receiver MUST ignore no malformed frame silently: a frame that is not a JSON object, names an unknown type or breaks its message's schema MUST get an error message (bad_request or unknown_type) with id null, or the close code the close-code table gives. A frame that breaks its message's schema is malformed even when it carries a request id: its error has id null, since only a frame that decodes as a request is a request (FERRY-SUBSCRIBE-1, FERRY-PUBLISH-1).";
    };
    readonly "FERRY-TRANSPORT-6": {
        readonly level: "MUST";
        readonly section: "TRANSPORT";
        readonly text: "A client MUST hand no part of a malformed frame from the server, nor of one larger than limits.max_message_bytes, to the application, and MUST NOT answer it with a frame of its own; it either keeps the session or closes it and reconnects under its backoff.";
    };
    readonly "FERRY-TICKET-1": {
        readonly level: "MUST";
        readonly section: "TICKET";
        readonly text: "A server MUST issue tickets only to callers that present a valid bearer credential to the ticket endpoint, and MUST bind each ticket to the caller's identity and permissions.";
    };
    readonly "FERRY-TICKET-2": {
        readonly level: "MUST";
        readonly section: "TICKET";
        readonly text: "A ticket MUST carry at least 128 bits from a cryptographically secure random source. A server MUST accept it until its advertised lifetime (expires_in_ms, 30 s by default) has passed, and MUST refuse it after.";
    };
    readonly "FERRY-TICKET-3": {
        readonly level: "MUST";
        readonly section: "TICKET";
        readonly text: "A server MUST close a session whose ticket is missing, unknown, expired or already used with close code 4401, before sending any frame other than the close.";
    };
    readonly "FERRY-TICKET-4": {
        readonly level: "MUST";
        readonly section: "TICKET";
        readonly text: "A ticket MUST be redeemed at most once: of several sessions presenting the same ticket, even at the same instant, exactly one MUST succeed.";
    };
    readonly "FERRY-TICKET-5": {
        readonly level: "MUST";
        readonly section: "TICKET";
        readonly text: "A client MUST obtain a fresh ticket before every connection attempt and MUST NOT reuse a ticket.";
    };
    readonly "FERRY-TICKET-6": {
        readonly level: "MUST";
        readonly section: "TICKET";
        readonly text: "Tickets and bearer credentials MUST NOT appear in logs, metrics or error messages.";
    };
    readonly "FERRY-WELCOME-1": {
        readonly level: "MUST";
        readonly section: "WELCOME";
        readonly text: "A server MUST send a welcome as the first frame of every accepted session, advertising the heartbeat, limits, reconnect policy and resume window that apply to it.";
    };
    readonly "FERRY-WELCOME-2": {
        readonly level: "MUST";
        readonly section: "WELCOME";
        readonly text: "A client MUST NOT send any frame before it has received the welcome.";
    };
    readonly "FERRY-WELCOME-3": {
        readonly level: "MUST";
        readonly section: "WELCOME";
        readonly text: "A client MUST obey the values advertised in the welcome rather than built-in defaults.";
    };
    readonly "FERRY-WELCOME-4": {
        readonly level: "SHOULD";
        readonly section: "WELCOME";
        readonly text: "A client SHOULD close the connection and reconnect under its backoff when no welcome arrives within 10 s of the WebSocket opening.";
    };
    readonly "FERRY-CHANNEL-1": {
        readonly level: "MUST";
        readonly section: "CHANNEL";
        readonly text: "A server MUST allow a subscribe only when one of the session's permissions grants read on the channel, and a publish only when one grants write.";
    };
    readonly "FERRY-CHANNEL-2": {
        readonly level: "MUST";
        readonly section: "CHANNEL";
        readonly text: "A forbidden subscribe or publish MUST be answered with an error whose code is forbidden and whose id is the request's; it MUST NOT end the session.";
    };
    readonly "FERRY-CHANNEL-3": {
        readonly level: "MUST";
        readonly section: "CHANNEL";
        readonly text: "A channel pattern segment '*' MUST match exactly one segment, and a final '**' MUST match one or more remaining segments; any other segment matches only itself.";
    };
    readonly "FERRY-CHANNEL-4": {
        readonly level: "MUST";
        readonly section: "CHANNEL";
        readonly text: "When a channel's namespace declares a payload schema, a server MUST refuse a publish whose payload does not match it with payload_invalid, and MUST NOT store or deliver it.";
    };
    readonly "FERRY-CHANNEL-5": {
        readonly level: "MUST";
        readonly section: "CHANNEL";
        readonly text: "A server that declares namespaces MUST refuse a subscribe or publish on a channel outside every namespace with unknown_channel.";
    };
    readonly "FERRY-SUBSCRIBE-1": {
        readonly level: "MUST";
        readonly section: "SUBSCRIBE";
        readonly text: "A server MUST answer every subscribe with either a subscribed or an error carrying the subscribe's id.";
    };
    readonly "FERRY-SUBSCRIBE-2": {
        readonly level: "MUST";
        readonly section: "SUBSCRIBE";
        readonly text: "A subscribed reply MUST carry the channel's head at the moment the subscription took effect; every event after that position MUST be delivered to the session while it stays subscribed.";
    };
    readonly "FERRY-SUBSCRIBE-3": {
        readonly level: "MUST";
        readonly section: "SUBSCRIBE";
        readonly text: "A server MUST answer every unsubscribe with unsubscribed carrying its id, and MUST NOT send an event of that channel after the reply.";
    };
    readonly "FERRY-SUBSCRIBE-4": {
        readonly level: "MUST";
        readonly section: "SUBSCRIBE";
        readonly text: "A server MUST refuse a subscribe that would exceed the advertised max_subscriptions with too_many_subscriptions, and a subscribe to a channel the session already holds with already_subscribed.";
    };
    readonly "FERRY-SUBSCRIBE-5": {
        readonly level: "MUST";
        readonly section: "SUBSCRIBE";
        readonly text: "After a reconnect, a client MUST re-subscribe to every channel it held, passing the position of the last event it delivered on each (or the position of the last subscribed reply when no event arrived).";
    };
    readonly "FERRY-SUBSCRIBE-6": {
        readonly level: "MUST";
        readonly section: "SUBSCRIBE";
        readonly text: "A server MUST check a subscribe in this order and answer the first check that fails: read permission (forbidden), the declared namespaces (unknown_channel), a subscription the session already holds (already_subscribed), then max_subscriptions (too_many_subscriptions); then info or hold on a namespace that does not declare presence or exclusive, or info over its size (bad_request); then a hold another session keeps (held, FERRY-HOLD-2).";
    };
    readonly "FERRY-SUBSCRIBE-7": {
        readonly level: "MUST";
        readonly section: "SUBSCRIBE";
        readonly text: "A client MUST tell the application that a subscribe was refused, with the error's code, and MUST NOT subscribe to that channel again by itself, neither on the same session nor after a reconnect: a refused channel is not held.";
    };
    readonly "FERRY-EVENT-1": {
        readonly level: "MUST";
        readonly section: "EVENT";
        readonly text: "Every event MUST carry a message id, the channel's epoch and a seq that is exactly one more than the previous event of the same channel and epoch; the first event of an epoch has seq 1.";
    };
    readonly "FERRY-EVENT-2": {
        readonly level: "MUST";
        readonly section: "EVENT";
        readonly text: "A server MUST deliver a channel's events to each session in seq order, with no gap and no repetition.";
    };
    readonly "FERRY-EVENT-3": {
        readonly level: "MUST";
        readonly section: "EVENT";
        readonly text: "A client MUST hand each event to the application at most once, even across replays and reconnects, and MUST drop an event whose position is not after the last one it delivered on that channel and epoch.";
    };
    readonly "FERRY-EVENT-4": {
        readonly level: "MUST";
        readonly section: "EVENT";
        readonly text: "A client that sees a gap in seq, or an epoch change that no recovery reply announced, MUST tell the application that its view of the channel is incomplete; it MUST NOT skip the gap silently. The event that revealed the gap is then handed to the application, and the events after it are judged against its position.";
    };
    readonly "FERRY-EVENT-5": {
        readonly level: "MUST";
        readonly section: "EVENT";
        readonly text: "A client MUST call a handler registered twice for the same channel once per event.";
    };
    readonly "FERRY-EVENT-6": {
        readonly level: "MUST";
        readonly section: "EVENT";
        readonly text: "A server MUST bound what it queues for each session, and a session that does not take its events fast enough MUST NOT delay or lose another session's events: once what is queued for it passes the server's bounds, the server MUST close it with 4410 (fell_behind), and its client resumes from the last event it delivered (FERRY-SUBSCRIBE-5).";
    };
    readonly "FERRY-RESUME-1": {
        readonly level: "MUST";
        readonly section: "RESUME";
        readonly text: "When a subscribe carries from and the server still holds every event after it in the same epoch, the server MUST reply with recovery.complete true and replay exactly those events, in order, before any live event of the channel.";
    };
    readonly "FERRY-RESUME-2": {
        readonly level: "MUST";
        readonly section: "RESUME";
        readonly text: "When the events after from are no longer held, the server MUST reply with recovery.complete false and reason history_exceeded; when from names another epoch, with reason epoch_changed; when from lies beyond the head, with reason position_ahead. It MUST NOT replay a partial range in these cases.";
    };
    readonly "FERRY-RESUME-3": {
        readonly level: "MUST";
        readonly section: "RESUME";
        readonly text: "A server MUST keep, per channel, at least the last resume.max_events events and every event younger than resume.window_ms (by default 1000 events and 2 minutes), except that a server at its history byte cap MAY drop events older than resume.window_ms as FERRY-RESUME-7 says.";
    };
    readonly "FERRY-RESUME-4": {
        readonly level: "MUST";
        readonly section: "RESUME";
        readonly text: "A client MUST tell the application when a recovery is incomplete, so that it can refetch its state.";
    };
    readonly "FERRY-RESUME-5": {
        readonly level: "MUST";
        readonly section: "RESUME";
        readonly text: "The history endpoint MUST return events after the requested position in seq order and MUST set complete false, with a reason, when it cannot continue exactly from that position. An incomplete page carries the oldest events the server still holds in the channel's current epoch, up to the limit, and its head says where the channel stands.";
    };
    readonly "FERRY-RESUME-6": {
        readonly level: "MUST";
        readonly section: "RESUME";
        readonly text: "A server MUST apply read permissions to replay and history exactly as to live delivery.";
    };
    readonly "FERRY-RESUME-7": {
        readonly level: "MUST";
        readonly section: "RESUME";
        readonly text: "A server MAY bound the bytes of history it retains over all channels. When an event would pass that bound, the server MUST first drop events older than resume.window_ms, and if that does not make room it MUST refuse the publish with unavailable and store nothing; it MUST NOT drop an event younger than resume.window_ms to make room, and a resume or history read from before a dropped event MUST be answered as FERRY-RESUME-2 says (history_exceeded).";
    };
    readonly "FERRY-PUBLISH-1": {
        readonly level: "MUST";
        readonly section: "PUBLISH";
        readonly text: "A server MUST acknowledge a publish (published on WebSocket, a PublishResponse over HTTP) only after the event is stored in the channel's history, and MUST answer a refused publish with an error carrying the request's id.";
    };
    readonly "FERRY-PUBLISH-2": {
        readonly level: "MUST";
        readonly section: "PUBLISH";
        readonly text: "A client MUST correlate each acknowledgement or error with its publish by id, and SHOULD fail a publish that receives neither within 10 s with a local timeout, counted from the moment the application asked for the publish, wherever the session then is.";
    };
    readonly "FERRY-PUBLISH-3": {
        readonly level: "MUST";
        readonly section: "PUBLISH";
        readonly text: "A client retrying a publish MUST reuse its idempotency key. A publish that has had neither acknowledgement nor error when its session ends is sent again on the next welcomed session, until it is answered or times out (FERRY-PUBLISH-2).";
    };
    readonly "FERRY-PUBLISH-4": {
        readonly level: "MUST";
        readonly section: "PUBLISH";
        readonly text: "A server MUST check a publish in this order and answer the first check that fails: write permission (forbidden); the declared namespaces (unknown_channel) and the size of the event it makes (message_too_large), in either order; on an exclusive channel, the session's hold (held, FERRY-HOLD-3); the namespace's payload schema (payload_invalid); and only then the idempotency key, so that a repeated key whose publish fails an earlier check gets that check's error, not duplicate true.";
    };
    readonly "FERRY-DEDUP-1": {
        readonly level: "MUST";
        readonly section: "DEDUP";
        readonly text: "A server MUST answer a publish whose idempotency key was already accepted on the same channel within the dedup window with the original message id and position and duplicate true, and MUST NOT store or deliver the event again.";
    };
    readonly "FERRY-DEDUP-2": {
        readonly level: "MUST";
        readonly section: "DEDUP";
        readonly text: "The dedup window MUST be at least as long as the resume window, and a server MUST NOT forget an idempotency key younger than the window to save memory; the rate limits bound how many keys a window holds.";
    };
    readonly "FERRY-HEARTBEAT-1": {
        readonly level: "MUST";
        readonly section: "HEARTBEAT";
        readonly text: "A server MUST send a ping every heartbeat.interval_ms (20 s by default) on every welcomed session.";
    };
    readonly "FERRY-HEARTBEAT-2": {
        readonly level: "MUST";
        readonly section: "HEARTBEAT";
        readonly text: "A client MUST answer each ping with a pong echoing its nonce within heartbeat.timeout_ms (10 s by default).";
    };
    readonly "FERRY-HEARTBEAT-3": {
        readonly level: "MUST";
        readonly section: "HEARTBEAT";
        readonly text: "A server MUST close with 4408 a session that has not answered a ping within heartbeat.timeout_ms.";
    };
    readonly "FERRY-HEARTBEAT-4": {
        readonly level: "MUST";
        readonly section: "HEARTBEAT";
        readonly text: "A client that receives no frame for heartbeat.interval_ms + heartbeat.timeout_ms MUST treat the session as dead, close it and reconnect under its backoff.";
    };
    readonly "FERRY-HEARTBEAT-5": {
        readonly level: "MUST";
        readonly section: "HEARTBEAT";
        readonly text: "A server that closes idle sessions MUST close with 4411, and only a session that has held no subscription, pending or active, and sent no message other than pong for its idle timeout; a session that holds a subscription, or sent anything else within that time, stays open.";
    };
    readonly "FERRY-SIZE-1": {
        readonly level: "MUST";
        readonly section: "SIZE";
        readonly text: "Neither side may send a message larger than limits.max_message_bytes (131072 bytes by default), counted in bytes of its UTF-8 encoding; a message of exactly that size is allowed.";
    };
    readonly "FERRY-SIZE-2": {
        readonly level: "MUST";
        readonly section: "SIZE";
        readonly text: "A client MUST refuse to send an oversized message and report a local message_too_large error to the application, keeping the session open.";
    };
    readonly "FERRY-SIZE-3": {
        readonly level: "MUST";
        readonly section: "SIZE";
        readonly text: "A server MUST refuse an oversized inbound frame before buffering it whole and close the session with 1009.";
    };
    readonly "FERRY-SIZE-4": {
        readonly level: "MUST";
        readonly section: "SIZE";
        readonly text: "A server MUST refuse with message_too_large (HTTP 413) a publish whose event, as delivered in an event frame, would exceed max_message_bytes, so that every stored event can reach every subscriber.";
    };
    readonly "FERRY-RECONNECT-1": {
        readonly level: "MUST";
        readonly section: "RECONNECT";
        readonly text: "A client MUST act on every close code as the close-code table says: stop, renew_ticket, backoff or retry_after_hint; a close code missing from the table MUST be treated as backoff.";
    };
    readonly "FERRY-RECONNECT-2": {
        readonly level: "MUST";
        readonly section: "RECONNECT";
        readonly text: "Before retry n (n = 1, 2, ... since the last reset) a client MUST wait a delay drawn uniformly from [nominal(n) * (1 - jitter), nominal(n)] milliseconds and rounded down to a whole millisecond, where nominal(n) = min(cap_ms, base_ms * factor^(n-1)) is computed without rounding. The delay counts from the end of the session or failed attempt: the close frame the client received, or the end of the connection when no close frame came first. Until its first welcome a client follows the reconnect policy of the defaults table (or one its application configures), and from then on that of the last welcome it received.";
    };
    readonly "FERRY-RECONNECT-3": {
        readonly level: "MUST";
        readonly section: "RECONNECT";
        readonly text: "A client MUST NOT wait longer than cap_ms between two attempts, except when following a server's retry hint.";
    };
    readonly "FERRY-RECONNECT-4": {
        readonly level: "MUST";
        readonly section: "RECONNECT";
        readonly text: "A client MUST stop after max_attempts retries have failed in a row, and MUST tell the application that it stopped and why. Every connection attempt after a session ends, or after the first attempt fails, counts as a retry and advances n, including an immediate renew_ticket retry and one that follows a retry hint; a session that was welcomed but ended before reset_after_ms does not reset the count (FERRY-RECONNECT-5).";
    };
    readonly "FERRY-RECONNECT-5": {
        readonly level: "MUST";
        readonly section: "RECONNECT";
        readonly text: "A client MUST reset its retry count to 0 once a session has stayed welcomed for reconnect.reset_after_ms, and only then.";
    };
    readonly "FERRY-RECONNECT-6": {
        readonly level: "MUST";
        readonly section: "RECONNECT";
        readonly text: "On renew_ticket the client MUST obtain a new ticket and retry at once if the previous attempt did not also end in renew_ticket, and under its backoff otherwise.";
    };
    readonly "FERRY-RECONNECT-7": {
        readonly level: "MUST";
        readonly section: "RECONNECT";
        readonly text: "On retry_after_hint the client MUST wait the retry_after_ms of the goodbye received on that session when it is a number, and follow its backoff otherwise.";
    };
    readonly "FERRY-RECONNECT-8": {
        readonly level: "MUST";
        readonly section: "RECONNECT";
        readonly text: "A client MUST treat a 401 from the ticket endpoint as stop, and any other failure to obtain a ticket or to connect as a failed attempt under its backoff.";
    };
    readonly "FERRY-RECONNECT-9": {
        readonly level: "MUST";
        readonly section: "RECONNECT";
        readonly text: "A client that stops MUST say why: the close code and reason, the exhausted attempts, or the application's own request.";
    };
    readonly "FERRY-ERROR-1": {
        readonly level: "MUST";
        readonly section: "ERROR";
        readonly text: "Every error MUST carry a code from the error table, a message and the table's retryable flag; retry_after_ms MUST be present on rate_limited.";
    };
    readonly "FERRY-ERROR-2": {
        readonly level: "MUST";
        readonly section: "ERROR";
        readonly text: "A malformed frame, an unknown type or a failed request MUST NOT end any other session, and MUST NOT crash the server.";
    };
    readonly "FERRY-ERROR-3": {
        readonly level: "MUST";
        readonly section: "ERROR";
        readonly text: "HTTP endpoints MUST answer errors with an ErrorBody and the status given in endpoints.json.";
    };
    readonly "FERRY-RATE-1": {
        readonly level: "MUST";
        readonly section: "RATE";
        readonly text: "A server MUST meter each session's inbound frames with the advertised token bucket (a pong answering an outstanding ping is not metered) and answer a frame that finds the bucket empty with rate_limited (retry_after_ms set, id set when the frame carries one), without acting on it.";
    };
    readonly "FERRY-RATE-2": {
        readonly level: "MUST";
        readonly section: "RATE";
        readonly text: "A server MUST close with 4429 a session that keeps sending after being rate limited: by default, the 5th frame refused within one second is answered with rate_limited and the session is then closed. The second is a sliding window: each refusal counts for one second after it.";
    };
    readonly "FERRY-RATE-3": {
        readonly level: "MUST";
        readonly section: "RATE";
        readonly text: "A server MUST close with 4409 a new session that would exceed the per-user connection limit, and leave the user's existing sessions untouched. The limit is checked once the ticket is redeemed: the 4409 comes instead of the welcome, and the ticket is spent.";
    };
    readonly "FERRY-RATE-4": {
        readonly level: "MUST";
        readonly section: "RATE";
        readonly text: "A server MUST meter the ticket endpoint and the backend publish endpoint with a token bucket per caller and endpoint, and answer a request that finds its bucket empty with HTTP 429 and rate_limited (retry_after_ms set to the time until the bucket holds a token, and a Retry-After header with that time in whole seconds, rounded up), without acting on it; one caller's requests MUST NOT take another caller's tokens.";
    };
    readonly "FERRY-RATE-5": {
        readonly level: "MUST";
        readonly section: "RATE";
        readonly text: "A client MUST NOT send a request again on the session that refused it with rate_limited; such a publish waits for the next welcomed session or its timeout (FERRY-PUBLISH-2).";
    };
    readonly "FERRY-SHUTDOWN-1": {
        readonly level: "MUST";
        readonly section: "SHUTDOWN";
        readonly text: "A server that shuts down MUST send each session a goodbye with a retry_after_ms, then close it with 1012.";
    };
    readonly "FERRY-SHUTDOWN-2": {
        readonly level: "SHOULD";
        readonly section: "SHUTDOWN";
        readonly text: "A server SHOULD spread the retry_after_ms values it hands out over its drain period so that reconnects do not arrive at once.";
    };
    readonly "FERRY-SHUTDOWN-3": {
        readonly level: "MUST";
        readonly section: "SHUTDOWN";
        readonly text: "A server MUST NOT lose an event whose publish it has acknowledged, including during shutdown.";
    };
    readonly "FERRY-SHUTDOWN-4": {
        readonly level: "MUST";
        readonly section: "SHUTDOWN";
        readonly text: "While draining, a server MUST refuse new sessions and new tickets with unavailable (HTTP 503), from the moment it starts draining until the process ends.";
    };
    readonly "FERRY-SHUTDOWN-5": {
        readonly level: "SHOULD";
        readonly section: "SHUTDOWN";
        readonly text: "A server SHOULD serve GET /v1/ready for load balancers, answering 503 unavailable from the moment it starts draining, and keep answering GET /v1/health with 200 and status draining until the process ends, so that an orchestrator does not restart a server that is draining.";
    };
    readonly "FERRY-SECURITY-1": {
        readonly level: "SHOULD";
        readonly section: "SECURITY";
        readonly text: "A server SHOULD bind to loopback unless configured otherwise, and SHOULD check the Origin header of browser sessions against an allowlist.";
    };
    readonly "FERRY-SECURITY-2": {
        readonly level: "MUST";
        readonly section: "SECURITY";
        readonly text: "A server MUST check permissions on subscribe, publish, replay, history and rpc, against the permissions bound to the ticket or credential.";
    };
    readonly "FERRY-RPC-1": {
        readonly level: "MUST";
        readonly section: "RPC";
        readonly text: "A server MUST answer every rpc with exactly one rpc_result or one error carrying the call's id. It checks a call in this order and answers the first check that fails, without executing the call: call permission on the method (forbidden), the methods its application declares (unknown_method), then the method's params schema (payload_invalid).";
    };
    readonly "FERRY-RPC-2": {
        readonly level: "MUST";
        readonly section: "RPC";
        readonly text: "A server that declares methods MUST advertise rpc.timeout_ms in its welcome and MUST answer a call that has no answer timeout_ms after it arrived with the error timeout, which is retryable: the call may still complete, and a retry with the same idempotency key gets its answer (FERRY-RPC-3). Waiting for a free slot of the server's limit on calls in flight counts toward timeout_ms. A client fails a call locally (timeout) when no answer has come request_timeout_ms after timeout_ms.";
    };
    readonly "FERRY-RPC-3": {
        readonly level: "MUST";
        readonly section: "RPC";
        readonly text: "A server MUST execute a call at most once per user, method and idempotency key within the dedup window: a repeated key gets the first call's answer, as an rpc_result with duplicate true or as the same error, waiting for the first call if it is still running, whichever session sends it. Only an answer that says the call did not complete is forgotten, so that a retry executes: a check of FERRY-RPC-1 failed, the backend could not be reached, or it gave no usable answer (a status other than 200, a body that is not a BackendAnswer, a connection lost mid-answer; a backend that can fail after acting keeps its own record by the idempotency key it is given); a call the backend gave no answer to within twice timeout_ms is kept as unavailable. A client retrying a call MUST reuse its idempotency key, and a call that has had no answer when its session ends is sent again on the next welcomed session, until it is answered or times out.";
    };
    readonly "FERRY-RPC-4": {
        readonly level: "MUST";
        readonly section: "RPC";
        readonly text: "A server MUST check the backend's result against the method's result schema and MUST NOT forward a result that breaks it or whose rpc_result would exceed max_message_bytes: the client gets internal or message_too_large instead, and the same key gets the same error (the call ran).";
    };
    readonly "FERRY-RPC-5": {
        readonly level: "MUST";
        readonly section: "RPC";
        readonly text: "A server MUST answer a call whose backend cannot be reached, answers with a status other than 200, or answers with a body that is not a BackendAnswer with unavailable (retryable). It retries a call to its backend only when the method declares itself idempotent.";
    };
    readonly "FERRY-RPC-6": {
        readonly level: "MUST";
        readonly section: "RPC";
        readonly text: "A client MUST correlate each rpc_result or error with its call by id, whatever the order, and give the application exactly one outcome per call, a retry's answer included. An error ends the call, except rate_limited, after which the call waits for the next welcomed session like a publish (FERRY-RATE-5); timeout and unavailable are retryable, and an application retrying them reuses the call's idempotency key.";
    };
    readonly "FERRY-HOOK-1": {
        readonly level: "MUST";
        readonly section: "HOOK";
        readonly text: "For a namespace that declares a publish hook, a server MUST ask the backend about each publish a client sends on a session, after the checks of FERRY-PUBLISH-4 up to the payload schema and before it is stored: only a publish the backend accepts is stored and fanned out, with the payload the backend returned if it returned one (checked against the namespace's payload schema again: a replaced payload that breaks it gets internal), and a refusal reaches the client as the error the backend chose (rejected, forbidden or payload_invalid) with its message. A retried publish may be asked about again; only the first accepted one is stored (FERRY-DEDUP-1). Publishes made with POST /v1/publish come from the backend and are not asked about.";
    };
    readonly "FERRY-HOOK-2": {
        readonly level: "MUST";
        readonly section: "HOOK";
        readonly text: "For a namespace that declares a subscribe hook, a server MUST ask the backend about each subscribe (resuming ones included) that passes the checks of FERRY-SUBSCRIBE-6, before the subscription takes effect: a refusal reaches the client as the error the backend chose (rejected, forbidden or payload_invalid) with its message, and no event of the channel is sent.";
    };
    readonly "FERRY-HOOK-3": {
        readonly level: "MUST";
        readonly section: "HOOK";
        readonly text: "A server MUST NOT take a backend that cannot be reached, does not answer within its timeout or answers anything but a BackendAnswer for an acceptance: the publish or subscribe gets unavailable (retryable). Since a hook decides and does not act, a server may retry a hook call once.";
    };
    readonly "FERRY-HOOK-4": {
        readonly level: "MUST";
        readonly section: "HOOK";
        readonly text: "A server MUST call an HTTP backend with POST, a BackendCall body naming the session's user, session id and request id, and an Authorization: Bearer header carrying the secret shared with that backend (or over mutually authenticated TLS); a backend answers 200 with a BackendAnswer. A backend SHOULD refuse a call without the secret.";
    };
    readonly "FERRY-PRESENCE-1": {
        readonly level: "MUST";
        readonly section: "PRESENCE";
        readonly text: "In a channel whose namespace declares presence, a server MUST count a session as present from its subscribed reply until its unsubscribe is answered, until its client's close frame arrives, or, when its connection ends any other way (dropped, timed out, closed by the server, its node gone), until presence.leave_after_ms later. A user is a member while at least one of its sessions is present; a member carries the number of its present sessions and the info of the session that made it a member, kept until it leaves. Every node sharing the channel sees the same members.";
    };
    readonly "FERRY-PRESENCE-2": {
        readonly level: "MUST";
        readonly section: "PRESENCE";
        readonly text: "A server MUST send a presence event with change join when a user becomes a member and with change leave when it stops being one, to every session subscribed to the channel, once per change and in the order the changes were recorded; a session whose subscribe was in flight when a change was recorded may get its event after its subscribed reply (its own join among them), and the members it reads after the reply include it already; never for a member whose count of sessions changes otherwise (a second tab joins nothing). Each carries the channel's head when the change was recorded. Presence events are not stored in history, not replayed on resume and take no seq: membership is state, and one member page after a resume costs less than replaying every join and leave since.";
    };
    readonly "FERRY-PRESENCE-3": {
        readonly level: "MUST";
        readonly section: "PRESENCE";
        readonly text: "A server MUST answer members on a channel the session holds an active subscription to, whose namespace declares presence, with member_page carrying its id: the members whose user sorts after after (UTF-8 bytes, ascending), at most limit (1000 when absent) and fewer when that many would not fit in max_message_bytes, next set to the page's last user when more follow and null otherwise, and the channel's head when it was read. Checks, in order: read permission (forbidden), the declared namespaces (unknown_channel), the subscription (not_subscribed), then a namespace without presence (bad_request).";
    };
    readonly "FERRY-PRESENCE-4": {
        readonly level: "MUST";
        readonly section: "PRESENCE";
        readonly text: "A server whose application declares a presence namespace MUST advertise presence.leave_after_ms in the welcome and MUST keep it: a client that reconnects and subscribes again within it, resuming or not, causes neither a leave nor a join of its user. A node shared with others refreshes its sessions' presence while they last, so that those of a node that stops (crashed, cut off) leave within leave_after_ms of its last refresh plus the time it takes to notice.";
    };
    readonly "FERRY-PRESENCE-5": {
        readonly level: "MUST";
        readonly section: "PRESENCE";
        readonly text: "A server MUST refuse with bad_request a subscribe whose info takes over 512 bytes as compact JSON (no whitespace outside strings), or that carries info on a namespace without presence or hold on a namespace without exclusive.";
    };
    readonly "FERRY-PRESENCE-6": {
        readonly level: "SHOULD";
        readonly section: "PRESENCE";
        readonly text: "A client that tracks a channel's members SHOULD read every member page after each subscribed reply (a resume's included), apply on top of the pages, in order, the presence events that arrived since that reply, and then apply each presence event as it arrives: a join sets the member with one session and its info, a leave removes it. Since each event states a member's whole presence, this gives the server's members whatever the order in which pages and events cross.";
    };
    readonly "FERRY-HOLD-1": {
        readonly level: "MUST";
        readonly section: "HOLD";
        readonly text: "In a channel whose namespace declares exclusive, a session holds the channel by subscribing with hold; a server MUST let at most one session hold a channel at a time, across every node sharing it, and MUST answer a granted hold with subscribed carrying hold.fence, a fencing token larger than that of every earlier hold of the channel.";
    };
    readonly "FERRY-HOLD-2": {
        readonly level: "MUST";
        readonly section: "HOLD";
        readonly text: "When another session holds the channel, a server MUST pass the hold to the asking session if it carries the holder's fence and the holder's user (a client taking its own hold back after a reconnect); otherwise, in a namespace declaring exclusive refuse it MUST answer held, and in one declaring exclusive take_over it MUST grant the hold and close the previous holder's session with 4412. A session whose hold passed to another is closed with 4412 in both cases.";
    };
    readonly "FERRY-HOLD-3": {
        readonly level: "MUST";
        readonly section: "HOLD";
        readonly text: "A server MUST accept a publish sent on a session to an exclusive channel only from the session holding it, checked against the hold's fence when the event is stored, so that a holder that lost its hold has no publish stored after the new holder's grant; any other session gets held. Publishes through POST /v1/publish come from the backend and are not held back.";
    };
    readonly "FERRY-HOLD-4": {
        readonly level: "MUST";
        readonly section: "HOLD";
        readonly text: "A server MUST end a hold at its session's unsubscribe or end, and a node shared with others MUST refresh its holds while they last, so that the holds of a node that stops lapse within presence.leave_after_ms of its last refresh.";
    };
    readonly "FERRY-HOLD-5": {
        readonly level: "MUST";
        readonly section: "HOLD";
        readonly text: "A client MUST keep the fence of its last hold of each channel and send it with hold when it subscribes to the channel again after a reconnect; on close code 4412 it MUST NOT reconnect by itself and tells its application that the hold was taken over.";
    };
};
/** A rule id, for tests and conformance cases to cite. */
export type RuleId = keyof typeof RULES;
