/** Any JSON value. */
export type JsonValue = string | number | boolean | null | JsonValue[] | {
    [key: string]: JsonValue;
};
/**
 * What the application asks of the client under test, one per line on the adapter's stdin.
 */
export type AdapterCommand = Connect | Subscribe | Unsubscribe | Publish | Call | Close;
/**
 * What the application saw, one per line on the adapter's stdout.
 */
export type AdapterReport = Ready | Subscribed | Refused | Delivered | Incomplete | Members | Published | PublishFailed | Answered | CallFailed | Stopped | Log;
/**
 * Start the client: it fetches a ticket from url's ticket endpoint with credential as its bearer token, connects, and from then on reconnects as the protocol says until it stops or is closed. Sent once, first.
 */
export interface Connect {
    /**
     * The command's tag.
     */
    type: "connect";
    /**
     * The server's base URL, for example http://127.0.0.1:41234; the endpoints of endpoints.json are below it (POST /v1/tickets, GET /v1/ws).
     * @minLength 1
     * @maxLength 2048
     */
    url: string;
    /**
     * The bearer credential the client presents to the ticket endpoint.
     * @minLength 1
     * @maxLength 4096
     */
    credential: string;
}
/**
 * Register the application handler named handler for channel's events. Registering the same handler twice on a channel must not make the client call it twice per event (FERRY-EVENT-5). With info, hold or members, the application asks for them on the channel's subscription, as the client's API lets it (for a client that takes them per handler, with this handler).
 */
export interface Subscribe {
    /**
     * The command's tag.
     */
    type: "subscribe";
    /**
     * The channel's name.
     */
    channel: Channel;
    /**
     * Which of the application's handlers to register; reports of what it sees carry this name.
     */
    handler: HandlerName;
    /**
     * The session's presence info, for a channel whose namespace keeps presence: the client sends it with the channel's subscribe and every re-subscribe (FERRY-PRESENCE-5).
     */
    info?: Info;
    /**
     * Hold the channel as its one publisher (FERRY-HOLD-1): the client asks for the hold with the subscribe, and after a reconnect with the fence of its last hold (FERRY-HOLD-5). Absent means false; needs the feature hold.
     */
    hold?: boolean;
    /**
     * Track the channel's members (FERRY-PRESENCE-6): the adapter reports members after every full read and after every presence event the client applies. Absent means false; needs the feature presence.
     */
    members?: boolean;
}
/**
 * Remove the handler named handler from channel; when no handler is left the client unsubscribes.
 */
export interface Unsubscribe {
    /**
     * The command's tag.
     */
    type: "unsubscribe";
    /**
     * The channel's name.
     */
    channel: Channel;
    /**
     * The handler to remove.
     */
    handler: HandlerName;
}
/**
 * Publish payload to channel through the client, and report its outcome with a published or publish_failed report carrying ref.
 */
export interface Publish {
    /**
     * The command's tag.
     */
    type: "publish";
    /**
     * The runner's name for this publish, echoed in its outcome report.
     */
    ref: Ref;
    /**
     * The channel's name.
     */
    channel: Channel;
    /**
     * The event's payload.
     */
    payload: Payload;
    /**
     * The application's own idempotency key; absent when the client should choose one.
     * @minLength 1
     * @maxLength 128
     */
    idempotency_key?: string;
}
/**
 * Call method with params through the client (an RPC), and report its outcome with an answered or call_failed report carrying ref.
 */
export interface Call {
    /**
     * The command's tag.
     */
    type: "call";
    /**
     * The runner's name for this call, echoed in its outcome report.
     */
    ref: Ref;
    /**
     * The method's name.
     * @minLength 1
     * @maxLength 255
     */
    method: string;
    /**
     * The call's params.
     */
    params: Payload;
    /**
     * The application's own idempotency key; absent when the client should choose one.
     * @minLength 1
     * @maxLength 128
     */
    idempotency_key?: string;
}
/**
 * The application closes the client: it ends its session and stops, reporting stopped with reason requested.
 */
export interface Close {
    /**
     * The command's tag.
     */
    type: "close";
}
/**
 * The adapter's first line: who it is and which features its client lacks. Cases that need a missing feature are reported as skipped, not failed.
 */
export interface Ready {
    /**
     * The report's tag.
     */
    type: "ready";
    /**
     * The client under test and its version, for the report (for example ferry-client 0.1.0).
     * @minLength 1
     * @maxLength 256
     */
    adapter: string;
    /**
     * The features the client does not offer.
     * @maxItems 16
     */
    unsupported: Feature[];
}
/**
 * The subscription of channel took effect (again, after a reconnect).
 */
export interface Subscribed {
    /**
     * The report's tag.
     */
    type: "subscribed";
    /**
     * The channel's name.
     */
    channel: Channel;
    /**
     * The fence of the hold the subscription obtained, when the subscribe asked to hold the channel and the client tells its application the fence; absent otherwise (the runner then checks the fence on the wire only).
     */
    fence?: Fence;
}
/**
 * The server refused the subscription of channel with an error.
 */
export interface Refused {
    /**
     * The report's tag.
     */
    type: "refused";
    /**
     * The channel's name.
     */
    channel: Channel;
    /**
     * The error code of the refusal (forbidden, unknown_channel, ...).
     * @minLength 1
     * @maxLength 64
     */
    code: string;
}
/**
 * The client called the handler named handler with an event. One line per call: a handler called twice for one event is reported twice.
 */
export interface Delivered {
    /**
     * The report's tag.
     */
    type: "delivered";
    /**
     * The handler that was called.
     */
    handler: HandlerName;
    /**
     * The event's channel.
     */
    channel: Channel;
    /**
     * The event's message id.
     */
    message_id: MessageId;
    /**
     * The event's epoch.
     */
    epoch: Epoch;
    /**
     * The event's seq.
     */
    seq: Seq;
    /**
     * The event's payload.
     */
    payload: Payload;
}
/**
 * The client told the application that its view of channel has a hole, so it must refetch (FERRY-EVENT-4, FERRY-RESUME-4).
 */
export interface Incomplete {
    /**
     * The report's tag.
     */
    type: "incomplete";
    /**
     * The channel's name.
     */
    channel: Channel;
    /**
     * Why: a seq gap, an unannounced epoch change, or the reason of an incomplete recovery.
     */
    cause: "gap" | "epoch_changed" | "history_exceeded" | "position_ahead" | "other";
}
/**
 * The members of channel the client gives its application, for a subscription that tracks them: once every member page after a subscribed reply was read, with the presence events since that reply applied on top, and again after every presence event applied later (FERRY-PRESENCE-6). One line per time the application is told; the members as the client holds them, in any order.
 */
export interface Members {
    /**
     * The report's tag.
     */
    type: "members";
    /**
     * The channel's name.
     */
    channel: Channel;
    /**
     * Every member the client holds, one per user.
     * @maxItems 100000
     */
    members: MemberEntry[];
}
/**
 * The publish named ref was acknowledged.
 */
export interface Published {
    /**
     * The report's tag.
     */
    type: "published";
    /**
     * The publish command's ref.
     */
    ref: Ref;
    /**
     * The stored event's message id.
     */
    message_id: MessageId;
    /**
     * The stored event's epoch.
     */
    epoch: Epoch;
    /**
     * The stored event's seq.
     */
    seq: Seq;
    /**
     * Whether the server had already stored this idempotency key.
     */
    duplicate: boolean;
}
/**
 * The publish named ref failed: refused by the server, refused locally (message_too_large), timed out, or abandoned because the client stopped.
 */
export interface PublishFailed {
    /**
     * The report's tag.
     */
    type: "publish_failed";
    /**
     * The publish command's ref.
     */
    ref: Ref;
    /**
     * An error code from the error table (message_too_large for a local size refusal), or timeout, or stopped.
     * @minLength 1
     * @maxLength 64
     */
    code: string;
    /**
     * The client's explanation.
     */
    message: TextMessage;
}
/**
 * The call named ref was answered with the method's result.
 */
export interface Answered {
    /**
     * The report's tag.
     */
    type: "answered";
    /**
     * The call command's ref.
     */
    ref: Ref;
    /**
     * The method's result.
     */
    result: Payload;
    /**
     * Whether the server answered with an earlier call's result for the same idempotency key.
     */
    duplicate: boolean;
}
/**
 * The call named ref failed: refused by the server or its backend, refused locally (message_too_large), timed out, or abandoned because the client stopped.
 */
export interface CallFailed {
    /**
     * The report's tag.
     */
    type: "call_failed";
    /**
     * The call command's ref.
     */
    ref: Ref;
    /**
     * An error code from the error table (message_too_large for a local size refusal), or timeout, or stopped.
     * @minLength 1
     * @maxLength 64
     */
    code: string;
    /**
     * The client's explanation.
     */
    message: TextMessage;
}
/**
 * The client stopped for good and told the application why (FERRY-RECONNECT-9).
 */
export interface Stopped {
    /**
     * The report's tag.
     */
    type: "stopped";
    /**
     * The application asked; a close code whose action is stop; max_attempts retries failed; the ticket endpoint answered 401; something else.
     */
    reason: "requested" | "closed" | "attempts_exhausted" | "unauthorized" | "other";
    /**
     * The close code that stopped it, when reason is closed; null otherwise.
     * @minimum 0
     * @maximum 4999
     * @integer
     */
    close_code: number | null;
    /**
     * The client's explanation.
     */
    message: TextMessage;
}
/**
 * Free text for the case's transcript; the runner asserts nothing on it.
 */
export interface Log {
    /**
     * The report's tag.
     */
    type: "log";
    /**
     * The text.
     */
    message: TextMessage;
}
/**
 * A name the runner gives to one of the application's handlers, so that reports say which handler was called.
 * @minLength 1
 * @maxLength 64
 * @pattern ^[A-Za-z0-9_-]+$
 */
export type HandlerName = string;
/**
 * A name the runner gives to one publish or call, echoed in its outcome.
 * @minLength 1
 * @maxLength 64
 * @pattern ^[\x21-\x7E]+$
 */
export type Ref = string;
/**
 * Any JSON value: an event's payload, passed through unchanged.
 */
export type Payload = JsonValue;
/**
 * Presence info: a JSON object, passed through unchanged.
 */
export type Info = {
    [key: string]: JsonValue;
};
/**
 * A hold's fencing token, passed through from the subscribed reply's hold.
 * @minimum 1
 * @maximum 9007199254740991
 * @integer
 */
export type Fence = number;
/**
 * One member as the client holds it.
 */
export interface MemberEntry {
    /**
     * The member's user.
     * @minLength 1
     * @maxLength 255
     */
    user: string;
    /**
     * How many of the user's sessions are present, as the client holds it (1 after a join).
     * @minimum 1
     * @maximum 1000000
     * @integer
     */
    sessions: number;
    /**
     * The member's presence info; absent when it gave none.
     */
    info?: Info;
}
/**
 * An optional feature of a client: publish (publishing over the WebSocket), idempotency_key (publishing with the application's own key), unsubscribe, multiple_handlers (more than one handler per channel), rpc (RPC calls), hold (subscribing with a hold of an exclusive channel), presence (tracking a channel's members, with presence info).
 */
export type Feature = "publish" | "idempotency_key" | "unsubscribe" | "multiple_handlers" | "rpc" | "hold" | "presence";
/**
 * A channel's name, as the protocol's ChannelName (the runner only sends valid names; the adapter passes them through).
 * @minLength 1
 * @maxLength 255
 */
export type Channel = string;
/**
 * An event's epoch, passed through from the event.
 * @minLength 1
 * @maxLength 64
 */
export type Epoch = string;
/**
 * An event's message id, passed through from the event.
 * @minLength 1
 * @maxLength 128
 */
export type MessageId = string;
/**
 * An event's seq, passed through from the event.
 * @minimum 0
 * @maximum 9007199254740991
 * @integer
 */
export type Seq = number;
/**
 * Free text for people reading the report.
 * @maxLength 4096
 */
export type TextMessage = string;
