import { type ErrorInfo, type EventMessage, type Goodbye, type HoldGrant, type JsonValue, type Member, type Presence, type PresenceInfo, type Problem, type Published, type RecoveryGap, type RpcResult, type StreamPosition } from "@ferry/protocol";
import { type Resumption } from "./position.js";
/** Settings that apply before a welcome advertises the server's values. */
export interface ClientConfig {
    /** How long to wait for the welcome after asking for a connection, in ms (FERRY-WELCOME-4). */
    readonly welcomeTimeoutMs: number;
    /** How long to wait for a ticket, and for the reply to a publish or a members request, in ms (FERRY-PUBLISH-2). */
    readonly requestTimeoutMs: number;
    /** The largest message sent until a welcome advertises the limit, in UTF-8 bytes. */
    readonly maxMessageBytes: number;
}
/** The protocol's defaults. */
export declare const DEFAULT_CONFIG: ClientConfig;
/** Why a session stopped (FERRY-RECONNECT-9). */
export type StopReason = {
    readonly kind: "requested";
} | {
    readonly kind: "closed";
    readonly code: number;
    readonly reason: string;
} | {
    readonly kind: "credential_rejected";
} | {
    readonly kind: "attempts_exhausted";
    readonly retries: number;
    readonly lastFailure: string;
};
/** Where the session is in its life. */
export type ClientState = {
    readonly kind: "idle";
} | {
    readonly kind: "fetching_ticket";
} | {
    readonly kind: "connecting";
} | {
    readonly kind: "awaiting_welcome";
} | {
    readonly kind: "active";
} | {
    readonly kind: "backing_off";
    readonly until: number;
    readonly retry: number;
} | {
    readonly kind: "stopped";
    readonly reason: StopReason;
};
/** Why the shell could not get a ticket. */
export type TicketError = {
    readonly kind: "unauthorized";
} | {
    readonly kind: "failed";
    readonly why: string;
};
/** Something for the shell to do. */
export type Transmit = {
    readonly kind: "fetch_ticket";
} | {
    readonly kind: "connect";
    readonly connection: number;
    readonly ticket: string;
} | {
    readonly kind: "send";
    readonly connection: number;
    readonly text: string;
} | {
    readonly kind: "close";
    readonly connection: number;
    readonly code: number;
    readonly reason: string;
};
/** Why the events of a channel, as the application saw them, are incomplete. */
export type IncompleteCause = {
    readonly kind: "gap";
    readonly expected: number;
    readonly got: number;
} | {
    readonly kind: "epoch_changed";
} | {
    readonly kind: "recovery";
    readonly reason: RecoveryGap;
};
/** Why a publish, an RPC call or a read of a channel's members failed. */
export type PublishFailure = 
/** The server refused it (for a call: also `timeout`, `rejected` by the backend, ...; for members: `not_subscribed`, `forbidden`, ...). */
{
    readonly kind: "refused";
    readonly error: ErrorInfo;
}
/** No answer within the request timeout (a call: within rpc.timeout_ms plus it; members: each page within it). */
 | {
    readonly kind: "timed_out";
} | {
    readonly kind: "too_large";
    readonly size: number;
    readonly max: number;
} | {
    readonly kind: "session_stopped";
};
/** A frame from the server that breaks the protocol. */
export type ProtocolViolation = {
    readonly kind: "too_large";
    readonly size: number;
    readonly max: number;
} | {
    readonly kind: "binary";
} | {
    readonly kind: "invalid";
    readonly problems: readonly Problem[];
};
/** What the application sees. */
export type ClientEvent = {
    readonly kind: "state_changed";
    readonly state: ClientState;
}
/** A subscribe took effect; `hold` is the hold it obtained, when it asked for one (FERRY-HOLD-1). */
 | {
    readonly kind: "subscribed";
    readonly channel: string;
    readonly position: StreamPosition;
    readonly resumption: Resumption;
    readonly hold?: HoldGrant;
}
/** The server refused a subscribe (forbidden, unknown channel, `held`, ...): the channel is dropped, its fence forgotten. */
 | {
    readonly kind: "subscribe_failed";
    readonly channel: string;
    readonly error: ErrorInfo;
} | {
    readonly kind: "event";
    readonly event: EventMessage;
}
/** A tracked channel's members were read after a subscribed reply, with the presence events since applied on top (FERRY-PRESENCE-6): every member, ordered by user. */
 | {
    readonly kind: "members";
    readonly channel: string;
    readonly members: readonly Member[];
}
/** A user joined or left a channel. On a tracked channel it comes once the members were read, and the list was updated by it (the events before are in `members`). */
 | {
    readonly kind: "presence";
    readonly channel: string;
    readonly presence: Presence;
}
/** Reading a tracked channel's members failed: the channel's list is not kept until it is read again, after the next subscribed reply. */
 | {
    readonly kind: "members_failed";
    readonly channel: string;
    readonly failure: PublishFailure;
} | {
    readonly kind: "incomplete";
    readonly channel: string;
    readonly cause: IncompleteCause;
} | {
    readonly kind: "published";
    readonly key: string;
    readonly ack: Published;
} | {
    readonly kind: "publish_failed";
    readonly key: string;
    readonly failure: PublishFailure;
} | {
    readonly kind: "answered";
    readonly key: string;
    readonly answer: RpcResult;
} | {
    readonly kind: "call_failed";
    readonly key: string;
    readonly failure: PublishFailure;
} | {
    readonly kind: "server_error";
    readonly error: ErrorInfo;
} | {
    readonly kind: "protocol_violation";
    readonly violation: ProtocolViolation;
} | {
    readonly kind: "goodbye";
    readonly goodbye: Goodbye;
};
/** A data frame as the shell received it. */
export type Frame = {
    readonly kind: "text";
    readonly text: string;
} | {
    readonly kind: "binary";
    readonly bytes: number;
};
/** The length of a string in UTF-8 bytes, the unit of every size limit (FERRY-SIZE-1). */
export declare function utf8Length(text: string): number;
/** How a listener asks for a channel: with presence info, as its holder, tracking its members. */
export interface SubscribeOptions {
    /** The session's presence info, for a channel whose namespace keeps presence: a JSON object of at most 512 bytes (FERRY-PRESENCE-5). */
    readonly info?: PresenceInfo;
    /** Whether to hold the channel as its one publisher, for a channel whose namespace is exclusive (FERRY-HOLD-1). */
    readonly hold?: boolean;
    /** Whether to read the channel's members after every subscribed reply and keep them up to date (FERRY-PRESENCE-6). */
    readonly members?: boolean;
}
/** A ferry.v1 client session; see the module comment. */
export declare class ClientSession {
    #private;
    /** An idle session; `random` draws uniform samples in [0, 1) for the jitter and the keys. */
    constructor(config?: ClientConfig, random?: () => number);
    /** The session's state. */
    get state(): ClientState;
    /** The largest message the session sends now: the welcome's limit once welcomed. */
    get maxMessageBytes(): number;
    /** The retries counted in a row since the last reset. */
    get retries(): number;
    /** The listeners of a channel, each once. */
    listeners(channel: string): readonly number[];
    /**
     * The members of a channel a listener tracks (`members: true`), ordered by user, as of its last
     * read and the presence events since; undefined until they were read once, and again after a
     * read failed until the next one ends. The same array until the list changes.
     */
    members(channel: string): readonly Member[] | undefined;
    /** The fence of the last hold of a channel held now, sent with every hold asked again (FERRY-HOLD-5). */
    fence(channel: string): number | undefined;
    /** The channels held, with the last delivered position of each once known. */
    subscriptions(): ReadonlyArray<readonly [string, StreamPosition | undefined]>;
    /** Starts the session: fetch a ticket, connect, and keep reconnecting until stopped. */
    connect(now: number): void;
    /** Stops for good: closes the connection (1000) and fails every pending publish. */
    close(): void;
    /**
     * Adds a listener to a channel; the first one subscribes (when welcomed, or on the welcome).
     * With `options`, the listener asks for presence `info`, a `hold` or member tracking. Every
     * subscribe of the channel, re-subscribes included, carries the info of the latest listener
     * that gave one and a hold when any listener asks for it, with the fence of the last hold
     * (FERRY-HOLD-5); a later listener's info or hold applies from the channel's next subscribe
     * (after a reconnect). Member tracking starts at once: the members are read now when the
     * subscription is in effect, else after its subscribed reply, and after every later one.
     * `now` times the members requests.
     */
    subscribe(channel: string, listener: number): void;
    subscribe(channel: string, listener: number, options: SubscribeOptions, now: number): void;
    /** Removes a listener; when none is left the channel is unsubscribed (its fence forgotten). */
    unsubscribe(channel: string, listener: number): void;
    /**
     * Publishes `payload` to `channel` with idempotency key `key` (generated when absent) and
     * returns the key, or the failure when it cannot be sent at all (too large, stopped). It is
     * re-sent with the same key after a reconnect until acknowledged, refused or timed out.
     */
    publish(channel: string, payload: JsonValue, key: string | undefined, now: number): {
        ok: true;
        key: string;
    } | {
        ok: false;
        failure: PublishFailure;
    };
    /**
     * Calls `method` with `params` under idempotency key `key` (generated when absent) and returns
     * the key; the answer comes as an `answered` or `call_failed` event. Like a publish, the call
     * is sent once welcomed and re-sent with the same key on every welcomed session until
     * answered, so a call cut off by a reconnect runs at most once (FERRY-RPC-3). It fails locally
     * when no answer came within the advertised rpc.timeout_ms plus the request timeout
     * (FERRY-RPC-2). Every error but rate_limited fails it at once; after `timeout` or
     * `unavailable` the call may still complete, and calling again with the key gets its answer.
     */
    call(method: string, params: JsonValue, key: string | undefined, now: number): {
        ok: true;
        key: string;
    } | {
        ok: false;
        failure: PublishFailure;
    };
    /** Feeds the outcome of a ticket fetch. */
    handleTicket(result: {
        ok: true;
        ticket: string;
    } | {
        ok: false;
        error: TicketError;
    }, now: number): void;
    /** Feeds that the WebSocket of `connection` opened. */
    handleConnected(connection: number, now: number): void;
    /** Feeds a data frame received on `connection`. */
    handleFrame(connection: number, frame: Frame, now: number): void;
    /** Feeds that `connection` closed or failed to open; `code` is undefined without a close frame. */
    handleClosed(connection: number, code: number | undefined, reason: string, now: number): void;
    /** Feeds the passing of time: call it at pollTimeout(). */
    handleTimeout(now: number): void;
    /** When handleTimeout must be called next, if at all. */
    pollTimeout(): number | undefined;
    /** The next thing for the shell to do. */
    pollTransmit(): Transmit | undefined;
    /** The next thing for the application to see. */
    pollEvent(): ClientEvent | undefined;
}
