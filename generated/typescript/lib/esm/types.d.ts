/** Any JSON value. */
export type JsonValue = string | number | boolean | null | JsonValue[] | {
    [key: string]: JsonValue;
};
/**
 * A question ferry-server asks the backend, tagged by its type.
 */
export type BackendCall = RpcCall | PublishHookCall | SubscribeHookCall;
/**
 * A client called a method: execute it and answer with a RpcReturn or a BackendRefusal. The idempotency key lets the backend keep its own at-most-once record across server restarts (FERRY-RPC-3).
 */
export interface RpcCall {
    /**
     * Always "rpc".
     */
    type: "rpc";
    /**
     * The method called.
     */
    method: MethodName;
    /**
     * The call's arguments, already checked against the method's params schema.
     */
    params: Payload;
    /**
     * The call's idempotency key.
     */
    idempotency_key: IdempotencyKey;
    /**
     * The identity of the calling session.
     */
    user: UserId;
    /**
     * The calling session.
     */
    session_id: SessionId;
    /**
     * The rpc's request id on that session.
     */
    request_id: RequestId;
}
/**
 * A client publishes to a namespace with a publish hook: accept it (optionally with a replaced payload) or refuse it (FERRY-HOOK-1).
 */
export interface PublishHookCall {
    /**
     * Always "publish".
     */
    type: "publish";
    /**
     * The channel published to.
     */
    channel: ChannelName;
    /**
     * The payload, already checked against the namespace's payload schema.
     */
    payload: Payload;
    /**
     * The publish's idempotency key.
     */
    idempotency_key: IdempotencyKey;
    /**
     * The identity of the publishing session.
     */
    user: UserId;
    /**
     * The publishing session.
     */
    session_id: SessionId;
    /**
     * The publish's request id on that session.
     */
    request_id: RequestId;
}
/**
 * A client subscribes to a channel of a namespace with a subscribe hook: accept or refuse it (FERRY-HOOK-2).
 */
export interface SubscribeHookCall {
    /**
     * Always "subscribe".
     */
    type: "subscribe";
    /**
     * The channel subscribed to.
     */
    channel: ChannelName;
    /**
     * The identity of the subscribing session.
     */
    user: UserId;
    /**
     * The subscribing session.
     */
    session_id: SessionId;
    /**
     * The subscribe's request id on that session.
     */
    request_id: RequestId;
}
/**
 * The backend's answer to a BackendCall, tagged by its type: a result for an rpc, an acceptance for a hook, or a refusal for either.
 */
export type BackendAnswer = RpcReturn | HookAccept | BackendRefusal;
/**
 * The method ran and returned this result, which must match its result schema (FERRY-RPC-4).
 */
export interface RpcReturn {
    /**
     * Always "result".
     */
    type: "result";
    /**
     * The method's result.
     */
    result: Payload;
}
/**
 * The hook accepts the publish or subscribe. For a publish, payload replaces the client's payload when present.
 */
export interface HookAccept {
    /**
     * Always "accept".
     */
    type: "accept";
    /**
     * The payload to store instead of the client's; publish hooks only.
     */
    payload?: Payload;
}
/**
 * The backend refuses the call, publish or subscribe; the client gets an error with this code and message.
 */
export interface BackendRefusal {
    /**
     * Always "refuse".
     */
    type: "refuse";
    /**
     * The error code the client receives.
     */
    code: "rejected" | "forbidden" | "payload_invalid";
    /**
     * Why, for the client's logs.
     * @maxLength 256
     */
    message: string;
}
/**
 * Any message a client sends to the server, tagged by its type.
 */
export type ClientMessage = Subscribe | Unsubscribe | Publish | Pong | Rpc | Members;
/**
 * Asks to receive a channel's events. The server answers with subscribed or with an error carrying the same id. With from, the server first replays every event after that position (or says why it cannot) and then sends live events.
 */
export interface Subscribe {
    /**
     * Always "subscribe".
     */
    type: "subscribe";
    /**
     * The request id the reply will carry.
     */
    id: RequestId;
    /**
     * The channel to subscribe to.
     */
    channel: ChannelName;
    /**
     * The position of the last event the client delivered on this channel; absent on a first subscribe.
     */
    from?: StreamPosition;
    /**
     * The session's presence info, only on a channel whose namespace declares presence (FERRY-PRESENCE-5).
     */
    info?: PresenceInfo;
    /**
     * Asks to hold the channel as its one publisher, only on a channel whose namespace declares exclusive (FERRY-HOLD-1).
     */
    hold?: HoldRequest;
}
/**
 * Stops a channel's events. The server answers with unsubscribed (also when the session was not subscribed) and sends no event of that channel after the reply.
 */
export interface Unsubscribe {
    /**
     * Always "unsubscribe".
     */
    type: "unsubscribe";
    /**
     * The request id the reply will carry.
     */
    id: RequestId;
    /**
     * The channel to unsubscribe from.
     */
    channel: ChannelName;
}
/**
 * Publishes one event to a channel the session may write to. The server answers with published (the event's id and position) or with an error carrying the same id.
 */
export interface Publish {
    /**
     * Always "publish".
     */
    type: "publish";
    /**
     * The request id the acknowledgement will carry.
     */
    id: RequestId;
    /**
     * The channel to publish to.
     */
    channel: ChannelName;
    /**
     * Keeps a retried publish from being delivered twice; reuse it when retrying the same event.
     */
    idempotency_key: IdempotencyKey;
    /**
     * The event's data; it must match the channel namespace's payload schema when one is declared.
     */
    payload: Payload;
}
/**
 * Calls a method the application declares. The server answers with rpc_result or with an error carrying the same id (FERRY-RPC-1), executes the call at most once per idempotency key (FERRY-RPC-3), and answers timeout when the call runs longer than the welcome's rpc.timeout_ms (FERRY-RPC-2).
 */
export interface Rpc {
    /**
     * Always "rpc".
     */
    type: "rpc";
    /**
     * The request id the answer will carry.
     */
    id: RequestId;
    /**
     * The method to call.
     */
    method: MethodName;
    /**
     * Keeps a retried call from being executed twice; reuse it when retrying the same call.
     */
    idempotency_key: IdempotencyKey;
    /**
     * The call's arguments; they must match the method's params schema.
     */
    params: Payload;
}
/**
 * Asks for one page of a presence channel's members, on a session subscribed to it. The server answers with member_page or with an error carrying the same id (FERRY-PRESENCE-3).
 */
export interface Members {
    /**
     * Always "members".
     */
    type: "members";
    /**
     * The request id the reply will carry.
     */
    id: RequestId;
    /**
     * The channel whose members to list.
     */
    channel: ChannelName;
    /**
     * List the members whose user sorts after this one: the previous page's next; absent for the first page.
     */
    after?: UserId;
    /**
     * The most members the page holds; absent means 1000.
     * @minimum 1
     * @maximum 1000
     * @integer
     */
    limit?: number;
}
/**
 * Answers a ping, echoing its nonce, within the advertised heartbeat timeout.
 */
export interface Pong {
    /**
     * Always "pong".
     */
    type: "pong";
    /**
     * The nonce of the ping being answered.
     */
    nonce: Nonce;
}
/**
 * A structured channel name: one to eight segments separated by ':'. Each segment starts with a lowercase letter or digit and continues with lowercase letters, digits, '_' or '-' (at most 64 characters a segment). Example: project:alpha:tasks.
 * @minLength 1
 * @maxLength 255
 * @pattern ^[a-z0-9][a-z0-9_-]{0,63}(:[a-z0-9][a-z0-9_-]{0,63}){0,7}$
 */
export type ChannelName = string;
/**
 * A pattern over channel names, used by permissions and namespaces. Segments are literal, or '*' for exactly one segment; a final '**' matches one or more remaining segments. Examples: project:alpha:*, agent:**, **.
 * @minLength 1
 * @maxLength 255
 * @pattern ^(\*\*|(\*|[a-z0-9][a-z0-9_-]{0,63})(:(\*|[a-z0-9][a-z0-9_-]{0,63})){0,7}(:\*\*)?)$
 */
export type ChannelPattern = string;
/**
 * A right granted with a ticket: read (subscribe, replay, history) and/or write (publish) on every channel the pattern matches, and call on every RPC method it matches (method names share the channel grammar).
 */
export interface Permission {
    /**
     * The channels this permission covers.
     */
    pattern: ChannelPattern;
    /**
     * Whether the holder may subscribe to, replay and read the history of matching channels.
     */
    read: boolean;
    /**
     * Whether the holder may publish to matching channels.
     */
    write: boolean;
    /**
     * Whether the holder may call the RPC methods the pattern matches; absent means false.
     */
    call?: boolean;
}
/**
 * The name of an RPC method an application declares in its methods.json, in the channel grammar: one to eight segments separated by ':', each a lowercase letter or digit followed by lowercase letters, digits, '_' or '-'. Example: tasks:start.
 * @minLength 1
 * @maxLength 255
 * @pattern ^[a-z0-9][a-z0-9_-]{0,63}(:[a-z0-9][a-z0-9_-]{0,63}){0,7}$
 */
export type MethodName = string;
/**
 * An identifier chosen by the client for a request (subscribe, unsubscribe, publish, rpc); the reply carries it back. Printable ASCII without spaces, 1 to 64 characters, unique among the connection's outstanding requests.
 * @minLength 1
 * @maxLength 64
 * @pattern ^[\x21-\x7E]+$
 */
export type RequestId = string;
/**
 * The server-assigned identifier of an event, unique within its channel for as long as the channel's history or dedup window remembers it. Printable ASCII without spaces, 1 to 128 characters.
 * @minLength 1
 * @maxLength 128
 * @pattern ^[\x21-\x7E]+$
 */
export type MessageId = string;
/**
 * A sender-chosen key that makes a publish or an RPC call idempotent: a repeated key on the same channel within the dedup window is acknowledged again with the original message id and position and is not delivered twice; a repeated key of the same user and method within the dedup window gets the first call's answer and is not executed again. Printable ASCII without spaces, 1 to 128 characters.
 * @minLength 1
 * @maxLength 128
 * @pattern ^[\x21-\x7E]+$
 */
export type IdempotencyKey = string;
/**
 * An opaque identifier of one history of a channel. It changes whenever the channel's history is reset (for example when a server without durable storage restarts); positions from different epochs cannot be compared.
 * @minLength 1
 * @maxLength 64
 * @pattern ^[A-Za-z0-9_-]+$
 */
export type Epoch = string;
/**
 * A sequence number within one epoch of one channel. The first event of an epoch has seq 1 and each later event exactly one more; seq 0 means 'before the first event'.
 * @minimum 0
 * @maximum 9007199254740991
 * @integer
 */
export type Seq = number;
/**
 * A position in a channel's stream: the event with this seq in this epoch, or the start of the epoch when seq is 0.
 */
export interface StreamPosition {
    /**
     * The epoch the sequence number belongs to.
     */
    epoch: Epoch;
    /**
     * The sequence number of the event at this position.
     */
    seq: Seq;
}
/**
 * The server-assigned identifier of one WebSocket session, for logs and support requests.
 * @minLength 1
 * @maxLength 64
 * @pattern ^[A-Za-z0-9_-]+$
 */
export type SessionId = string;
/**
 * The identity the ticket was issued to, as the server's authentication knows it.
 * @minLength 1
 * @maxLength 255
 */
export type UserId = string;
/**
 * A single-use, short-lived credential for opening one WebSocket session, carrying at least 128 random bits, encoded as base64url without padding.
 * @minLength 22
 * @maxLength 256
 * @pattern ^[A-Za-z0-9_-]+$
 */
export type Ticket = string;
/**
 * An opaque value the server puts in a ping and the client echoes in its pong.
 * @minLength 1
 * @maxLength 64
 * @pattern ^[\x21-\x7E]+$
 */
export type Nonce = string;
/**
 * The application's data carried by an event: any JSON value. A channel namespace may declare a schema that every published payload must match.
 */
export type Payload = JsonValue;
/**
 * A point in time as milliseconds since the Unix epoch (UTC).
 * @minimum 0
 * @maximum 9007199254740991
 * @integer
 */
export type UnixMillis = number;
/**
 * How a client reconnects after losing its session. Retry n (n = 1, 2, ... counted since the last reset) waits a delay drawn uniformly from [nominal(n) * (1 - jitter), nominal(n)] milliseconds, where nominal(n) = min(cap_ms, base_ms * factor^(n-1)); a client rounds the drawn delay down to a whole millisecond. The delay therefore never exceeds cap_ms. After max_attempts retries have failed in a row the client stops. The count resets to 0 once a session has stayed welcomed for reset_after_ms.
 */
export interface ReconnectPolicy {
    /**
     * The nominal delay before the first retry, in milliseconds.
     * @minimum 1
     * @maximum 3600000
     * @integer
     */
    base_ms: number;
    /**
     * The multiplier applied to the nominal delay for each further retry.
     * @minimum 1
     * @maximum 10
     */
    factor: number;
    /**
     * The largest delay a client ever waits between retries, in milliseconds.
     * @minimum 1
     * @maximum 3600000
     * @integer
     */
    cap_ms: number;
    /**
     * The fraction of the nominal delay that is randomised: 0 waits exactly nominal(n), 1 waits anywhere in [0, nominal(n)].
     * @minimum 0
     * @maximum 1
     */
    jitter: number;
    /**
     * How many retries in a row may fail before the client stops and reports why; 0 means never retry.
     * @minimum 0
     * @maximum 10000
     * @integer
     */
    max_attempts: number;
    /**
     * How long a session must stay welcomed before the retry count resets to 0, in milliseconds.
     * @minimum 0
     * @maximum 3600000
     * @integer
     */
    reset_after_ms: number;
}
/**
 * Application-level liveness. The server sends a ping every interval_ms; the client answers each ping with a pong within timeout_ms or the server closes with 4408. A client that receives no frame at all for interval_ms + timeout_ms treats the session as dead and reconnects.
 */
export interface HeartbeatPolicy {
    /**
     * Time between two pings from the server, in milliseconds.
     * @minimum 1
     * @maximum 3600000
     * @integer
     */
    interval_ms: number;
    /**
     * Time the client has to answer a ping, and the grace a client adds to interval_ms before declaring the server dead, in milliseconds.
     * @minimum 1
     * @maximum 3600000
     * @integer
     */
    timeout_ms: number;
}
/**
 * A token bucket on the frames a client sends: it refills at messages_per_second and holds at most burst tokens; each inbound frame takes one token, except a pong that answers an outstanding ping (the server's own pings bound those).
 */
export interface RateLimit {
    /**
     * The sustained rate at which the bucket refills, in frames per second.
     * @minimum 1
     * @maximum 1000000
     * @integer
     */
    messages_per_second: number;
    /**
     * The bucket's capacity: how many frames may arrive at once after a quiet period.
     * @minimum 1
     * @maximum 1000000
     * @integer
     */
    burst: number;
}
/**
 * The per-session limits the server enforces and the client must respect.
 */
export interface SessionLimits {
    /**
     * The largest message, in bytes of its UTF-8 encoding, that either side may send.
     * @minimum 1024
     * @maximum 67108864
     * @integer
     */
    max_message_bytes: number;
    /**
     * How many channels one session may be subscribed to at once.
     * @minimum 1
     * @maximum 1000000
     * @integer
     */
    max_subscriptions: number;
    /**
     * The token bucket applied to the client's frames.
     */
    rate_limit: RateLimit;
}
/**
 * How far back a re-subscribe can resume: the server keeps, per channel, at least the last max_events events and every event younger than window_ms.
 */
export interface ResumePolicy {
    /**
     * The age, in milliseconds, up to which missed events can be replayed.
     * @minimum 0
     * @maximum 86400000
     * @integer
     */
    window_ms: number;
    /**
     * The number of most recent events per channel that can be replayed.
     * @minimum 0
     * @maximum 100000000
     * @integer
     */
    max_events: number;
}
/**
 * How the server answers RPC calls on this session (FERRY-RPC-2).
 */
export interface RpcPolicy {
    /**
     * How long, from its arrival, the server lets a call run before it answers timeout.
     * @minimum 1
     * @maximum 600000
     * @integer
     */
    timeout_ms: number;
}
/**
 * How the server keeps presence on this session (FERRY-PRESENCE-4).
 */
export interface PresencePolicy {
    /**
     * How long a session whose connection ended without an unsubscribe or a close frame from its client still counts as present in its channels, so that a client reconnecting within it causes no leave and no join.
     * @minimum 0
     * @maximum 3600000
     * @integer
     */
    leave_after_ms: number;
}
/**
 * A small JSON object a session attaches to its presence in a channel (a display name, a device): at most 512 bytes as the client serialized it (FERRY-PRESENCE-5). The application defines its members.
 */
export type PresenceInfo = {
    [key: string]: JsonValue;
};
/**
 * What a presence event reports: a user became a member of the channel (join) or stopped being one (leave).
 */
export type PresenceChange = "join" | "leave";
/**
 * A user present in a channel: one or more of its sessions are subscribed to it (FERRY-PRESENCE-1).
 */
export interface Member {
    /**
     * The member's identity.
     */
    user: UserId;
    /**
     * How many of the user's sessions were present in the channel when the page was read; no presence event tells a change of it (FERRY-PRESENCE-2), so a client that shows it reads the members again to refresh it.
     * @minimum 1
     * @maximum 1000000
     * @integer
     */
    sessions: number;
    /**
     * The info of the session that made the user a member; absent when that session gave none.
     */
    info?: PresenceInfo;
}
/**
 * A fencing token of an exclusive channel: each hold of the channel gets a larger one than every earlier hold (FERRY-HOLD-1).
 * @minimum 1
 * @maximum 9007199254740991
 * @integer
 */
export type Fence = number;
/**
 * Asks to hold an exclusive channel: to be the one session that may publish to it (FERRY-HOLD-1).
 */
export interface HoldRequest {
    /**
     * The fence of this client's last hold of the channel, when it re-subscribes after a reconnect: a hold that still carries it passes to the new session (FERRY-HOLD-2).
     */
    fence?: Fence;
}
/**
 * The hold a subscribe obtained on an exclusive channel.
 */
export interface HoldGrant {
    /**
     * This hold's fencing token; keep it to reclaim the hold after a reconnect.
     */
    fence: Fence;
}
/**
 * Why missed events could not be replayed: the requested position is older than the retained history (history_exceeded), belongs to an epoch that was reset (epoch_changed), or lies beyond the channel's head (position_ahead).
 */
export type RecoveryGap = "history_exceeded" | "epoch_changed" | "position_ahead";
/**
 * A code from the error table (error-codes.json).
 */
export type ErrorCode = "bad_request" | "unknown_type" | "unauthorized" | "forbidden" | "unknown_channel" | "payload_invalid" | "already_subscribed" | "too_many_subscriptions" | "rate_limited" | "message_too_large" | "not_found" | "method_not_allowed" | "unavailable" | "internal" | "unknown_method" | "rejected" | "timeout" | "not_subscribed" | "held";
/**
 * A typed error, shared by the WebSocket error message and every HTTP error body.
 */
export interface ErrorInfo {
    /**
     * What went wrong, from the error table.
     */
    code: ErrorCode;
    /**
     * A human-readable explanation for logs; never parse it.
     * @maxLength 1024
     */
    message: string;
    /**
     * Whether the same request may succeed if sent again later.
     */
    retryable: boolean;
    /**
     * When present, the earliest time after which a retry may succeed, in milliseconds.
     * @minimum 0
     * @maximum 86400000
     * @integer
     */
    retry_after_ms?: number;
}
/**
 * A freshly issued ticket. Open the WebSocket with `?ticket=` and this ticket before it expires; it works once.
 */
export interface TicketResponse {
    /**
     * The single-use ticket.
     */
    ticket: Ticket;
    /**
     * How long the ticket stays valid, in milliseconds from the response.
     * @minimum 1
     * @maximum 3600000
     * @integer
     */
    expires_in_ms: number;
    /**
     * The identity the ticket is bound to.
     */
    user: UserId;
}
/**
 * Publishes one event from a backend service.
 */
export interface PublishRequest {
    /**
     * The channel to publish to.
     */
    channel: ChannelName;
    /**
     * Reuse it when retrying: a repeat within the dedup window is acknowledged with the original position and not delivered again.
     */
    idempotency_key: IdempotencyKey;
    /**
     * The event's data; it must match the channel namespace's payload schema when one is declared.
     */
    payload: Payload;
}
/**
 * The acknowledgement of a backend publish: the event is stored at position.
 */
export interface PublishResponse {
    /**
     * The channel published to.
     */
    channel: ChannelName;
    /**
     * The id the event carries.
     */
    message_id: MessageId;
    /**
     * Where the event sits in the channel's stream.
     */
    position: StreamPosition;
    /**
     * True when the idempotency key was seen before and nothing new was published.
     */
    duplicate: boolean;
}
/**
 * The query string of the history endpoint, shown as an object: which channel, and the position after which to read.
 */
export interface HistoryQuery {
    /**
     * The channel to read.
     */
    channel: ChannelName;
    /**
     * The epoch of after_seq; absent reads the current epoch from its oldest retained event.
     */
    epoch?: Epoch;
    /**
     * Return events after this sequence number; absent means from the oldest retained event.
     */
    after_seq?: Seq;
    /**
     * The most events to return (default 100).
     * @minimum 1
     * @maximum 1000
     * @integer
     */
    limit?: number;
}
/**
 * One event as kept in a channel's history.
 */
export interface StoredEvent {
    /**
     * The event's id.
     */
    message_id: MessageId;
    /**
     * The event's epoch and sequence number.
     */
    position: StreamPosition;
    /**
     * When the server accepted the event.
     */
    published_at_ms: UnixMillis;
    /**
     * The application's data.
     */
    payload: Payload;
}
/**
 * A page of a channel's history. When complete is false, events after the requested position were lost (reason says why) and events starts at the oldest retained one.
 */
export interface HistoryResponse {
    /**
     * The channel read.
     */
    channel: ChannelName;
    /**
     * The channel's latest position when the page was read.
     */
    head: StreamPosition;
    /**
     * Whether events continue exactly from the requested position.
     */
    complete: boolean;
    /**
     * Why the page does not continue from the requested position; null when complete.
     */
    reason: RecoveryGap | null;
    /**
     * The events in seq order; fewer than limit when the head was reached.
     * @maxItems 1000
     */
    events: StoredEvent[];
}
/**
 * Whether the server accepts new sessions.
 */
export interface HealthResponse {
    /**
     * ok while serving; draining during a graceful shutdown.
     */
    status: "ok" | "draining";
    /**
     * The server's software version.
     * @maxLength 64
     */
    version: string;
}
/**
 * The body of every HTTP error response.
 */
export interface ErrorBody {
    /**
     * What went wrong.
     */
    error: ErrorInfo;
}
/**
 * Any message a server sends to a client, tagged by its type.
 */
export type ServerMessage = Welcome | Subscribed | Unsubscribed | Published | RpcResult | EventMessage | MemberPage | Presence | Ping | ErrorMessage | Goodbye;
/**
 * The server's first frame on every session. It tells the client everything it must obey: heartbeat timing, limits, reconnect policy and resume window. A client sends nothing before it.
 */
export interface Welcome {
    /**
     * Always "welcome".
     */
    type: "welcome";
    /**
     * The protocol version spoken on this session.
     */
    protocol: "ferry.v1";
    /**
     * This session's id, for logs and support.
     */
    session_id: SessionId;
    /**
     * The identity the ticket was issued to.
     */
    user: UserId;
    /**
     * The rights bound to the ticket, in the order the server checks them.
     * @maxItems 256
     */
    permissions: Permission[];
    /**
     * The ping interval and the pong timeout.
     */
    heartbeat: HeartbeatPolicy;
    /**
     * Message size, subscription count and rate limits for this session.
     */
    limits: SessionLimits;
    /**
     * The backoff the client must follow when this session ends.
     */
    reconnect: ReconnectPolicy;
    /**
     * How far back a re-subscribe can replay missed events.
     */
    resume: ResumePolicy;
    /**
     * How calls are answered; present when the server's application declares methods.
     */
    rpc?: RpcPolicy;
    /**
     * How presence is kept; present when the server's application declares a presence namespace.
     */
    presence?: PresencePolicy;
}
/**
 * The outcome of a subscribe that carried from. When complete, the server replays exactly replayed events (the ones after from, up to the subscribed position) before any live event. When not complete, it replays nothing, reason says why, and the application must refetch its state (for example through the history endpoint) before trusting the stream.
 */
export interface Recovery {
    /**
     * Whether every event after from will be replayed.
     */
    complete: boolean;
    /**
     * How many events the server replays after this reply; 0 when not complete.
     * @minimum 0
     * @maximum 9007199254740991
     * @integer
     */
    replayed: number;
    /**
     * Why recovery is incomplete; null when it is complete.
     */
    reason: RecoveryGap | null;
}
/**
 * The success reply to subscribe. position is the channel's head when the subscription took effect: replayed events (if any) lead up to it, and live events follow it, so a client can resume from here even if no event ever arrives.
 */
export interface Subscribed {
    /**
     * Always "subscribed".
     */
    type: "subscribed";
    /**
     * The id of the subscribe this answers.
     */
    id: RequestId;
    /**
     * The channel now subscribed.
     */
    channel: ChannelName;
    /**
     * The channel's head when the subscription took effect.
     */
    position: StreamPosition;
    /**
     * Present exactly when the subscribe carried from: whether the missed events will be replayed.
     */
    recovery?: Recovery;
    /**
     * Present exactly when the subscribe asked to hold the channel: the hold it obtained.
     */
    hold?: HoldGrant;
}
/**
 * The reply to unsubscribe; no event of the channel follows it.
 */
export interface Unsubscribed {
    /**
     * Always "unsubscribed".
     */
    type: "unsubscribed";
    /**
     * The id of the unsubscribe this answers.
     */
    id: RequestId;
    /**
     * The channel no longer subscribed.
     */
    channel: ChannelName;
}
/**
 * The answer to an rpc: the method's result, which matches its result schema. A repeated idempotency key gets the first call's result again, with duplicate true, and the call is not executed again.
 */
export interface RpcResult {
    /**
     * Always "rpc_result".
     */
    type: "rpc_result";
    /**
     * The id of the rpc this answers.
     */
    id: RequestId;
    /**
     * The method that was called.
     */
    method: MethodName;
    /**
     * What the method returned.
     */
    result: Payload;
    /**
     * True when the idempotency key was seen before and this is the first call's answer.
     */
    duplicate: boolean;
}
/**
 * The acknowledgement of a publish: the event is stored in the channel's history at position. A repeated idempotency key gets the original message id and position, with duplicate true.
 */
export interface Published {
    /**
     * Always "published".
     */
    type: "published";
    /**
     * The id of the publish this acknowledges.
     */
    id: RequestId;
    /**
     * The channel published to.
     */
    channel: ChannelName;
    /**
     * The id the event carries.
     */
    message_id: MessageId;
    /**
     * Where the event sits in the channel's stream.
     */
    position: StreamPosition;
    /**
     * True when the idempotency key was seen before and nothing new was published.
     */
    duplicate: boolean;
}
/**
 * One event of a subscribed channel, live or replayed. Within a channel and epoch, events arrive in seq order, each exactly one more than the previous.
 */
export interface EventMessage {
    /**
     * Always "event".
     */
    type: "event";
    /**
     * The channel the event belongs to.
     */
    channel: ChannelName;
    /**
     * The event's id; the key for de-duplication.
     */
    message_id: MessageId;
    /**
     * The event's epoch and sequence number.
     */
    position: StreamPosition;
    /**
     * When the server accepted the event.
     */
    published_at_ms: UnixMillis;
    /**
     * The application's data.
     */
    payload: Payload;
}
/**
 * The reply to members: one page of the channel's members, ordered by user (FERRY-PRESENCE-3).
 */
export interface MemberPage {
    /**
     * Always "member_page".
     */
    type: "member_page";
    /**
     * The id of the members request this answers.
     */
    id: RequestId;
    /**
     * The channel whose members these are.
     */
    channel: ChannelName;
    /**
     * The members whose user sorts after the request's after, in ascending order of user (compared as UTF-8 bytes).
     * @maxItems 1000
     */
    members: Member[];
    /**
     * The after of the next page: the last user of this page when more members follow, null when this page is the last.
     */
    next: UserId | null;
    /**
     * The channel's head when the page was read.
     */
    position: StreamPosition;
}
/**
 * A user joined or left a presence channel (FERRY-PRESENCE-2). Presence events are not stored, not replayed on resume and take no seq.
 */
export interface Presence {
    /**
     * Always "presence".
     */
    type: "presence";
    /**
     * The channel whose members changed.
     */
    channel: ChannelName;
    /**
     * Whether the user joined or left.
     */
    change: PresenceChange;
    /**
     * The user that joined or left.
     */
    user: UserId;
    /**
     * On a join, the info of the session that made the user a member, if it gave one; never on a leave.
     */
    info?: PresenceInfo;
    /**
     * The channel's head when the change was recorded: the events up to it were published before the change.
     */
    position: StreamPosition;
}
/**
 * The server's heartbeat, sent every heartbeat interval. The client answers with a pong carrying the same nonce.
 */
export interface Ping {
    /**
     * Always "ping".
     */
    type: "ping";
    /**
     * The value the pong must echo.
     */
    nonce: Nonce;
}
/**
 * A typed error: the reply to a failed request (id set) or a notice about the session (id null). The session stays open unless a close frame follows.
 */
export interface ErrorMessage {
    /**
     * Always "error".
     */
    type: "error";
    /**
     * The id of the request that failed; null when the error answers no request (for example an unparseable frame).
     */
    id: RequestId | null;
    /**
     * What went wrong.
     */
    error: ErrorInfo;
}
/**
 * Sent just before the server closes a session on purpose (shutdown, restart, revoked access). The client follows the close code's action, waiting retry_after_ms when it is a number.
 */
export interface Goodbye {
    /**
     * Always "goodbye".
     */
    type: "goodbye";
    /**
     * Why the session ends: the server stops (shutdown) or restarts (restart) and closes with 1012, sheds load (overloaded) and closes with 1013, or the identity lost its access (revoked) and closes with 4403.
     */
    reason: "shutdown" | "restart" | "overloaded" | "revoked";
    /**
     * A human-readable explanation for logs.
     * @maxLength 1024
     */
    message: string;
    /**
     * How long to wait before reconnecting, spreading clients over the server's drain period; null when the client should not reconnect or should use its backoff.
     * @minimum 0
     * @maximum 3600000
     * @integer
     */
    retry_after_ms: number | null;
}
