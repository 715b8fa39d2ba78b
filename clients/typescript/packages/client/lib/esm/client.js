// FerryClient: the thin shell over ClientSession. It makes no protocol decision: it moves
// tickets (fetch), frames and closes (WebSocket) and time (an injectable clock and timer) in
// and out of the session, and hands the session's events to the application's handlers.
import { CloseCode, ROUTES, SUBPROTOCOL, TICKET_QUERY_PARAMETER, isTicketResponse, } from "@ferry/protocol";
import { ClientSession, DEFAULT_CONFIG, utf8Length } from "./session.js";
/** A publish that failed; `failure` says why, `key` is the idempotency key it carried. */
export class PublishError extends Error {
    /** Why the publish failed. */
    failure;
    /** The idempotency key of the publish. */
    key;
    /** A publish error for `failure`. */
    constructor(failure, key) {
        super(describeFailure(failure));
        this.name = "PublishError";
        this.failure = failure;
        this.key = key;
    }
}
/**
 * An RPC call that failed; `failure` says why (`refused` carries the server's or the backend's
 * error: `rejected`, `forbidden`, `unknown_method`, `payload_invalid`, `timeout`, ...), `key`
 * is the idempotency key it carried: calling again with it after `timeout` gets the first
 * call's answer instead of running the method twice (FERRY-RPC-3).
 */
export class CallError extends Error {
    /** Why the call failed. */
    failure;
    /** The method called. */
    method;
    /** The idempotency key of the call. */
    key;
    /** A call error for `failure`. */
    constructor(method, failure, key) {
        super(`${method}: ${describeFailure(failure, "call")}`);
        this.name = "CallError";
        this.failure = failure;
        this.method = method;
        this.key = key;
    }
}
function describeFailure(failure, what = "publish") {
    switch (failure.kind) {
        case "refused":
            return `the server refused the ${what}: ${failure.error.code} (${failure.error.message})`;
        case "timed_out":
            return what === "publish" ? "no acknowledgement within the request timeout" : "no answer within rpc.timeout_ms plus the request timeout";
        case "too_large":
            return `the message is ${failure.size} bytes, above the maximum of ${failure.max}`;
        case "session_stopped":
            return `the client stopped before an ${what === "publish" ? "acknowledgement" : "answer"} arrived`;
    }
}
const systemTimer = {
    now: () => Date.now(),
    setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms),
    clearTimeout: (handle) => globalThis.clearTimeout(handle),
};
/** A ferry.v1 client for browsers and Node. */
export class FerryClient {
    #options;
    #session;
    #timer;
    #handlers = new Map();
    #presence = new Map();
    #listeners = {
        state: new Set(),
        subscribed: new Set(),
        subscribeFailed: new Set(),
        presence: new Set(),
        membersFailed: new Set(),
        incomplete: new Set(),
        notice: new Set(),
    };
    #publishes = new Map();
    #calls = new Map();
    #nextListener = 0;
    #socket;
    #wake;
    #platformCleanup;
    /** A client; call connect() to start it. */
    constructor(options) {
        this.#options = options;
        this.#timer = options.timer ?? systemTimer;
        this.#session = new ClientSession(options.config ?? DEFAULT_CONFIG, options.random ?? Math.random);
    }
    /** The connection state. */
    get state() {
        return this.#session.state;
    }
    /** Listens to a client event; returns the removal. */
    on(event, listener) {
        const set = this.#listeners[event];
        set.add(listener);
        return () => set.delete(listener);
    }
    /** Starts the client: ticket, connect, and reconnect as the protocol says until closed. */
    connect() {
        if (this.#options.followPlatform !== false && this.#platformCleanup === undefined)
            this.#platformCleanup = followPlatform(this);
        this.#session.connect(this.#timer.now());
        this.#pump();
    }
    /** Closes the client for good (close code 1000); pending publishes fail with session_stopped. */
    close() {
        this.#session.close();
        this.#platformCleanup?.();
        this.#platformCleanup = undefined;
        this.#pump();
    }
    /**
     * Adds `handler` to `channel` (the same handler twice is called once, with the options of its
     * first addition); returns its removal. `options` asks for presence `info` or a `hold`; they
     * go with the channel's subscribe when this is its first handler or listener, and with every
     * re-subscribe after a reconnect, the hold carrying the fence of the last one (FERRY-HOLD-5).
     */
    subscribe(channel, handler, options) {
        const asked = options === undefined ? {} : { ...options };
        return this.#hold(this.#handlers, channel, handler, asked);
    }
    /**
     * Tracks `channel`'s members: `listener` gets every member, ordered by user, once they were
     * read after the subscribed reply and again after every change (a join or a leave), and again
     * after every re-read that follows a reconnect (FERRY-PRESENCE-6). Added to a channel whose
     * members are known already, it gets them at once. The channel is subscribed as by
     * `subscribe` (one subscription, however many handlers and listeners), with presence `info`
     * when given. Returns the listener's removal.
     */
    presence(channel, listener, options) {
        const asked = options?.info === undefined ? { members: true } : { members: true, info: options.info };
        const added = this.#presence.get(channel)?.has(listener) !== true;
        const release = this.#hold(this.#presence, channel, listener, asked);
        const known = this.#session.members(channel);
        if (added && known !== undefined)
            listener(known);
        return release;
    }
    /** The members of a channel whose members a presence listener tracks, once read (see presence). */
    members(channel) {
        return this.#session.members(channel);
    }
    /** Registers `callback` on `channel` in `registry` as one listener of the session; returns its removal. */
    #hold(registry, channel, callback, options) {
        let callbacks = registry.get(channel);
        if (callbacks === undefined) {
            callbacks = new Map();
            registry.set(channel, callbacks);
        }
        let id = callbacks.get(callback);
        if (id === undefined) {
            id = ++this.#nextListener;
            callbacks.set(callback, id);
            this.#session.subscribe(channel, id, options, this.#timer.now());
            this.#pump();
        }
        const listener = id;
        return () => {
            const current = registry.get(channel);
            if (current?.get(callback) !== listener)
                return;
            current.delete(callback);
            if (current.size === 0)
                registry.delete(channel);
            this.#session.unsubscribe(channel, listener);
            this.#pump();
        };
    }
    /** Publishes `payload` to `channel`; settles with the acknowledgement or a PublishError. */
    publish(channel, payload, options) {
        const result = this.#session.publish(channel, payload, options?.idempotencyKey, this.#timer.now());
        if (!result.ok)
            return Promise.reject(new PublishError(result.failure, options?.idempotencyKey));
        const promise = new Promise((resolve, reject) => this.#publishes.set(result.key, { resolve, reject }));
        this.#pump();
        return promise;
    }
    /**
     * Calls `method` with `params`; settles with the answer (`result`, and `duplicate` when a
     * retried key got an earlier call's answer) or a CallError. The call is re-sent with its
     * idempotency key across reconnects until answered, and the server runs it at most once.
     */
    call(method, params, options) {
        const result = this.#session.call(method, params, options?.idempotencyKey, this.#timer.now());
        if (!result.ok)
            return Promise.reject(new CallError(method, result.failure, options?.idempotencyKey));
        const promise = new Promise((resolve, reject) => this.#calls.set(result.key, { method, resolve, reject }));
        this.#pump();
        return promise;
    }
    /**
     * Typed calls through an application package's generated `Methods` map:
     * `const rpc = client.methods<Methods>(); const started = await rpc("tasks:start", params);`
     * takes each method's params type and returns its result type.
     */
    methods() {
        return async (method, params, options) => (await this.call(method, params, options)).result;
    }
    /** A typed view of a channel. */
    channel(name) {
        return {
            name,
            subscribe: (handler, options) => this.subscribe(name, handler, options),
            publish: (payload, options) => this.publish(name, payload, options),
        };
    }
    /** Cuts a pending backoff short or drops a socket the platform says is dead (see followPlatform). */
    nudge(reason) {
        const state = this.#session.state;
        if (reason === "offline" && this.#socket !== undefined) {
            this.#socket.ws.close(1000, "offline");
            this.#session.handleClosed(this.#socket.id, undefined, "the platform went offline", this.#timer.now());
        }
        else if (reason !== "offline" && state.kind === "backing_off") {
            this.#session.handleTimeout(state.until);
        }
        this.#pump();
    }
    #emit(event, ...args) {
        for (const listener of this.#listeners[event])
            listener(...args);
    }
    /** Drains the session: transmits, then events, then re-arms the timer. */
    #pump() {
        for (;;) {
            const transmit = this.#session.pollTransmit();
            if (transmit !== undefined) {
                this.#perform(transmit);
                continue;
            }
            const event = this.#session.pollEvent();
            if (event === undefined)
                break;
            this.#deliver(event);
        }
        if (this.#wake !== undefined)
            this.#timer.clearTimeout(this.#wake);
        this.#wake = undefined;
        const at = this.#session.pollTimeout();
        if (at !== undefined) {
            this.#wake = this.#timer.setTimeout(() => {
                this.#wake = undefined;
                this.#session.handleTimeout(this.#timer.now());
                this.#pump();
            }, Math.max(0, at - this.#timer.now()));
        }
    }
    #perform(transmit) {
        switch (transmit.kind) {
            case "fetch_ticket":
                void this.#fetchTicket();
                return;
            case "connect":
                this.#open(transmit.connection, transmit.ticket);
                return;
            case "send":
                if (this.#socket?.id === transmit.connection)
                    this.#socket.ws.send(transmit.text);
                return;
            case "close":
                if (this.#socket?.id === transmit.connection) {
                    closeSocket(this.#socket.ws, transmit.code, transmit.reason);
                    this.#socket = undefined;
                }
                return;
        }
    }
    async #fetchTicket() {
        const doFetch = this.#options.fetch ?? globalThis.fetch.bind(globalThis);
        let result;
        try {
            const credential = typeof this.#options.credential === "function" ? await this.#options.credential() : this.#options.credential;
            const response = await doFetch(new URL(ROUTES.issueTicket.path, this.#options.url).toString(), {
                method: ROUTES.issueTicket.method,
                headers: { authorization: `Bearer ${credential}` },
            });
            if (response.status === 401)
                result = { ok: false, error: { kind: "unauthorized" } };
            else if (response.status !== ROUTES.issueTicket.successStatus)
                result = { ok: false, error: { kind: "failed", why: `the ticket endpoint answered ${response.status}` } };
            else {
                const body = await response.json();
                result = isTicketResponse(body) ? { ok: true, ticket: body.ticket } : { ok: false, error: { kind: "failed", why: "the ticket response is not a TicketResponse" } };
            }
        }
        catch (error) {
            result = { ok: false, error: { kind: "failed", why: String(error) } };
        }
        this.#session.handleTicket(result, this.#timer.now());
        this.#pump();
    }
    #open(connection, ticket) {
        const Factory = this.#options.WebSocket ?? globalThis.WebSocket;
        const url = new URL(ROUTES.connect.path, this.#options.url);
        url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
        url.searchParams.set(TICKET_QUERY_PARAMETER, ticket);
        let ws;
        try {
            if (Factory === undefined)
                throw new Error("no WebSocket: pass the WebSocket option (the ws package on Node < 22)");
            ws = new Factory(url.toString(), SUBPROTOCOL);
        }
        catch (error) {
            this.#session.handleClosed(connection, undefined, String(error), this.#timer.now());
            this.#pump();
            return;
        }
        ws.binaryType = "arraybuffer";
        this.#socket = { id: connection, ws };
        const current = () => this.#socket?.id === connection;
        ws.onopen = () => {
            if (ws.protocol !== SUBPROTOCOL) {
                closeSocket(ws, CloseCode.ProtocolError, `the server did not accept ${SUBPROTOCOL}`);
                if (current())
                    this.#socket = undefined;
                this.#session.handleClosed(connection, CloseCode.ProtocolError, "no subprotocol", this.#timer.now());
            }
            else
                this.#session.handleConnected(connection, this.#timer.now());
            this.#pump();
        };
        ws.onmessage = (event) => {
            const frame = typeof event.data === "string" ? { kind: "text", text: event.data } : { kind: "binary", bytes: byteLength(event.data) };
            this.#session.handleFrame(connection, frame, this.#timer.now());
            this.#pump();
        };
        ws.onclose = (event) => {
            if (current())
                this.#socket = undefined;
            // 1005 and 1006 are never sent: they mean no close frame (or none with a code) came.
            const code = event.code === 1005 || event.code === 1006 ? undefined : event.code;
            this.#session.handleClosed(connection, code, event.reason, this.#timer.now());
            this.#pump();
        };
        ws.onerror = () => { };
    }
    #deliver(event) {
        switch (event.kind) {
            case "state_changed":
                this.#emit("state", event.state);
                return;
            case "event": {
                const handlers = this.#handlers.get(event.event.channel);
                for (const handler of [...(handlers?.keys() ?? [])])
                    handler(event.event.payload, event.event);
                return;
            }
            case "subscribed":
                this.#emit("subscribed", event.channel, event.resumption, event.hold);
                return;
            case "subscribe_failed":
                this.#handlers.delete(event.channel);
                this.#presence.delete(event.channel);
                this.#emit("subscribeFailed", event.channel, event.error);
                return;
            case "members":
                for (const listener of [...(this.#presence.get(event.channel)?.keys() ?? [])])
                    listener(event.members);
                return;
            case "presence": {
                this.#emit("presence", event.presence);
                const members = this.#session.members(event.channel);
                if (members === undefined)
                    return;
                for (const listener of [...(this.#presence.get(event.channel)?.keys() ?? [])])
                    listener(members);
                return;
            }
            case "members_failed":
                this.#emit("membersFailed", event.channel, event.failure);
                return;
            case "incomplete":
                this.#emit("incomplete", event.channel, event.cause);
                return;
            case "published":
                this.#publishes.get(event.key)?.resolve(event.ack);
                this.#publishes.delete(event.key);
                return;
            case "publish_failed":
                this.#publishes.get(event.key)?.reject(new PublishError(event.failure, event.key));
                this.#publishes.delete(event.key);
                return;
            case "answered":
                this.#calls.get(event.key)?.resolve(event.answer);
                this.#calls.delete(event.key);
                return;
            case "call_failed": {
                const call = this.#calls.get(event.key);
                call?.reject(new CallError(call.method, event.failure, event.key));
                this.#calls.delete(event.key);
                return;
            }
            default:
                this.#emit("notice", event);
        }
    }
}
/**
 * Closes `ws` with `code`, or with 1000 where the platform refuses the code: a browser's
 * WebSocket.close takes only 1000 and 3000-4999 (so not 1001, 1002, 1003 or 1009) and a reason
 * of at most 123 UTF-8 bytes, and throws otherwise. The reason then names the protocol's code.
 */
export function closeSocket(ws, code, reason) {
    try {
        ws.close(code, truncateUtf8(reason, 123));
    }
    catch {
        try {
            ws.close(CloseCode.NormalClosure, truncateUtf8(`${code}: ${reason}`, 123));
        }
        catch {
            ws.close();
        }
    }
}
function truncateUtf8(text, max) {
    if (utf8Length(text) <= max)
        return text;
    let cut = text.slice(0, max);
    while (utf8Length(cut) > max)
        cut = cut.slice(0, -1);
    return cut;
}
function byteLength(data) {
    if (data instanceof ArrayBuffer)
        return data.byteLength;
    if (ArrayBuffer.isView(data))
        return data.byteLength;
    return 0;
}
/** Wires the page's visibility and online/offline events to `client.nudge`, where they exist. */
function followPlatform(client) {
    const target = globalThis;
    if (typeof target.addEventListener !== "function" || typeof target.removeEventListener !== "function")
        return () => { };
    const online = () => client.nudge("online");
    const offline = () => client.nudge("offline");
    const visible = () => {
        if (target.document?.visibilityState === "visible")
            client.nudge("visible");
    };
    target.addEventListener("online", online);
    target.addEventListener("offline", offline);
    target.document !== undefined && target.addEventListener("visibilitychange", visible);
    return () => {
        target.removeEventListener?.("online", online);
        target.removeEventListener?.("offline", offline);
        target.removeEventListener?.("visibilitychange", visible);
    };
}
