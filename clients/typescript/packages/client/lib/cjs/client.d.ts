import { type ErrorInfo, type EventMessage, type HoldGrant, type JsonValue, type Member, type Presence, type PresenceInfo, type Published, type RpcResult } from "@ferry/protocol";
import { type ClientConfig, type ClientEvent, type ClientState, type IncompleteCause, type PublishFailure } from "./session.js";
import type { Resumption } from "./position.js";
/** The part of the platform's WebSocket the client uses (the browser's, Node 22's, or `ws`). */
export interface WebSocketLike {
    readonly protocol: string;
    binaryType: string;
    onopen: ((event: unknown) => void) | null;
    onmessage: ((event: {
        data: unknown;
    }) => void) | null;
    onclose: ((event: {
        code: number;
        reason: string;
    }) => void) | null;
    onerror: ((event: unknown) => void) | null;
    send(text: string): void;
    close(code?: number, reason?: string): void;
}
/** A WebSocket constructor. */
export type WebSocketFactory = new (url: string, protocols: string | string[]) => WebSocketLike;
/** A clock and timer; tests pass a virtual one. */
export interface Timer {
    now(): number;
    setTimeout(callback: () => void, ms: number): unknown;
    clearTimeout(handle: unknown): void;
}
/** Options of a FerryClient. */
export interface FerryClientOptions {
    /** The server's base URL, for example `https://rt.example.com` (endpoints are below it). */
    readonly url: string;
    /** The bearer credential for the ticket endpoint, or a function that returns a fresh one. */
    readonly credential: string | (() => string | Promise<string>);
    /** The WebSocket constructor; defaults to the global `WebSocket` (pass `ws` on Node < 22). */
    readonly WebSocket?: WebSocketFactory;
    /** The fetch function; defaults to the global `fetch`. */
    readonly fetch?: typeof fetch;
    /** Clock and timer; defaults to Date.now and the global setTimeout. */
    readonly timer?: Timer;
    /** A uniform random source in [0, 1); defaults to Math.random. */
    readonly random?: () => number;
    /** Settings until the welcome; defaults to the protocol's. */
    readonly config?: ClientConfig;
    /**
     * Whether to follow the page's visibility and the browser's online/offline events, where the
     * platform offers them (default true): going offline drops the socket at once instead of
     * waiting for the heartbeat timeout; coming online or visible again cuts a pending backoff
     * short and reconnects. A hidden page stays connected (timers there may be throttled, and
     * the server's heartbeat decides).
     */
    readonly followPlatform?: boolean;
}
/** Information a handler receives with each event. */
export type EventHandler<P = JsonValue> = (payload: P, event: EventMessage) => void;
/** Receives a channel's members, ordered by user, after every full read and every change. */
export type PresenceListener = (members: readonly Member[]) => void;
/** How a handler asks for a channel (see FerryClient.subscribe). */
export interface ChannelOptions {
    /** The session's presence info, for a channel whose namespace keeps presence (a JSON object of at most 512 bytes). */
    readonly info?: PresenceInfo;
    /** Hold the channel as its one publisher, for a channel whose namespace is exclusive: the `subscribed` event carries the hold's fence, and a refusal comes as `subscribeFailed` with `held`. */
    readonly hold?: boolean;
}
/** What the application can listen to on a client. */
export interface ClientEvents {
    /** The connection state changed. */
    state: (state: ClientState) => void;
    /** A subscription took effect (also after each re-subscribe); `hold` is the hold it obtained, when one was asked. */
    subscribed: (channel: string, resumption: Resumption, hold: HoldGrant | undefined) => void;
    /** The server refused a subscribe (`held` for a hold another session keeps); the channel's handlers and presence listeners are dropped. */
    subscribeFailed: (channel: string, error: ErrorInfo) => void;
    /** A user joined or left a channel (for a channel whose members are tracked, after its members were read). */
    presence: (presence: Presence) => void;
    /** Reading a tracked channel's members failed; they are read again after the channel's next subscribed reply. */
    membersFailed: (channel: string, failure: PublishFailure) => void;
    /** A channel's events have a hole: refetch its state (for example with the history endpoint). */
    incomplete: (channel: string, cause: IncompleteCause) => void;
    /** Something that answers no request: a server error, a protocol violation, a goodbye. */
    notice: (event: ClientEvent) => void;
}
/** A publish that failed; `failure` says why, `key` is the idempotency key it carried. */
export declare class PublishError extends Error {
    /** Why the publish failed. */
    readonly failure: PublishFailure;
    /** The idempotency key of the publish. */
    readonly key: string | undefined;
    /** A publish error for `failure`. */
    constructor(failure: PublishFailure, key: string | undefined);
}
/**
 * An RPC call that failed; `failure` says why (`refused` carries the server's or the backend's
 * error: `rejected`, `forbidden`, `unknown_method`, `payload_invalid`, `timeout`, ...), `key`
 * is the idempotency key it carried: calling again with it after `timeout` gets the first
 * call's answer instead of running the method twice (FERRY-RPC-3).
 */
export declare class CallError extends Error {
    /** Why the call failed. */
    readonly failure: PublishFailure;
    /** The method called. */
    readonly method: string;
    /** The idempotency key of the call. */
    readonly key: string | undefined;
    /** A call error for `failure`. */
    constructor(method: string, failure: PublishFailure, key: string | undefined);
}
/**
 * The shape of a method map: the params and result types of each method, by name, as an
 * application package's generated `Methods` interface has them.
 */
export type MethodMap<M> = {
    readonly [K in keyof M]: {
        readonly params: unknown;
        readonly result: unknown;
    };
};
/** Typed calls of an application's methods (see FerryClient.methods). */
export type TypedCall<M extends MethodMap<M>> = <K extends keyof M & string>(method: K, params: M[K]["params"], options?: {
    readonly idempotencyKey?: string;
}) => Promise<M[K]["result"]>;
/** A typed view of one channel: `ChannelPayload` of an application package gives `P`. */
export interface Channel<P> {
    /** The channel's name. */
    readonly name: string;
    /** Adds a handler (a handler added twice is called once per event), with presence info or a hold; returns its removal. */
    subscribe(handler: EventHandler<P>, options?: ChannelOptions): () => void;
    /** Publishes a payload; settles with the acknowledgement or a PublishError. */
    publish(payload: P, options?: {
        readonly idempotencyKey?: string;
    }): Promise<Published>;
}
/** A ferry.v1 client for browsers and Node. */
export declare class FerryClient {
    #private;
    /** A client; call connect() to start it. */
    constructor(options: FerryClientOptions);
    /** The connection state. */
    get state(): ClientState;
    /** Listens to a client event; returns the removal. */
    on<K extends keyof ClientEvents>(event: K, listener: ClientEvents[K]): () => void;
    /** Starts the client: ticket, connect, and reconnect as the protocol says until closed. */
    connect(): void;
    /** Closes the client for good (close code 1000); pending publishes fail with session_stopped. */
    close(): void;
    /**
     * Adds `handler` to `channel` (the same handler twice is called once, with the options of its
     * first addition); returns its removal. `options` asks for presence `info` or a `hold`; they
     * go with the channel's subscribe when this is its first handler or listener, and with every
     * re-subscribe after a reconnect, the hold carrying the fence of the last one (FERRY-HOLD-5).
     */
    subscribe<P = JsonValue>(channel: string, handler: EventHandler<P>, options?: ChannelOptions): () => void;
    /**
     * Tracks `channel`'s members: `listener` gets every member, ordered by user, once they were
     * read after the subscribed reply and again after every change (a join or a leave), and again
     * after every re-read that follows a reconnect (FERRY-PRESENCE-6). Added to a channel whose
     * members are known already, it gets them at once. The channel is subscribed as by
     * `subscribe` (one subscription, however many handlers and listeners), with presence `info`
     * when given. Returns the listener's removal.
     */
    presence(channel: string, listener: PresenceListener, options?: {
        readonly info?: PresenceInfo;
    }): () => void;
    /** The members of a channel whose members a presence listener tracks, once read (see presence). */
    members(channel: string): readonly Member[] | undefined;
    /** Publishes `payload` to `channel`; settles with the acknowledgement or a PublishError. */
    publish(channel: string, payload: JsonValue, options?: {
        readonly idempotencyKey?: string;
    }): Promise<Published>;
    /**
     * Calls `method` with `params`; settles with the answer (`result`, and `duplicate` when a
     * retried key got an earlier call's answer) or a CallError. The call is re-sent with its
     * idempotency key across reconnects until answered, and the server runs it at most once.
     */
    call(method: string, params: JsonValue, options?: {
        readonly idempotencyKey?: string;
    }): Promise<RpcResult>;
    /**
     * Typed calls through an application package's generated `Methods` map:
     * `const rpc = client.methods<Methods>(); const started = await rpc("tasks:start", params);`
     * takes each method's params type and returns its result type.
     */
    methods<M extends MethodMap<M>>(): TypedCall<M>;
    /** A typed view of a channel. */
    channel<P = JsonValue>(name: string): Channel<P>;
    /** Cuts a pending backoff short or drops a socket the platform says is dead (see followPlatform). */
    nudge(reason: "online" | "offline" | "visible"): void;
}
/**
 * Closes `ws` with `code`, or with 1000 where the platform refuses the code: a browser's
 * WebSocket.close takes only 1000 and 3000-4999 (so not 1001, 1002, 1003 or 1009) and a reason
 * of at most 123 UTF-8 bytes, and throws otherwise. The reason then names the protocol's code.
 */
export declare function closeSocket(ws: WebSocketLike, code: number, reason: string): void;
