import { type ErrorInfo, type EventMessage, type Goodbye, type JsonValue, type Problem, type Published, type RecoveryGap, type RpcResult, type StreamPosition } from "@ferry/protocol";
import { type Resumption } from "./position.js";
/** Settings that apply before a welcome advertises the server's values. */
export interface ClientConfig {
    /** How long to wait for the welcome after asking for a connection, in ms (FERRY-WELCOME-4). */
    readonly welcomeTimeoutMs: number;
    /** How long to wait for a ticket, and for the reply to a publish, in ms (FERRY-PUBLISH-2). */
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
/** Why a publish or an RPC call failed. */
export type PublishFailure = 
/** The server refused it (for a call: also `timeout`, `rejected` by the backend, ...). */
{
    readonly kind: "refused";
    readonly error: ErrorInfo;
}
/** No answer within the request timeout (a call: within rpc.timeout_ms plus it). */
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
} | {
    readonly kind: "subscribed";
    readonly channel: string;
    readonly position: StreamPosition;
    readonly resumption: Resumption;
} | {
    readonly kind: "subscribe_failed";
    readonly channel: string;
    readonly error: ErrorInfo;
} | {
    readonly kind: "event";
    readonly event: EventMessage;
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
    /** The channels held, with the last delivered position of each once known. */
    subscriptions(): ReadonlyArray<readonly [string, StreamPosition | undefined]>;
    /** Starts the session: fetch a ticket, connect, and keep reconnecting until stopped. */
    connect(now: number): void;
    /** Stops for good: closes the connection (1000) and fails every pending publish. */
    close(): void;
    /** Adds a listener to a channel; the first one subscribes (when welcomed, or on the welcome). */
    subscribe(channel: string, listener: number): void;
    /** Removes a listener; when none is left the channel is unsubscribed. */
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
