"use strict";
// The client session: every client-side rule of ferry.v1 as a deterministic state machine, the
// TypeScript twin of crates/protocol's ClientSession (same states, events and names).
//
// It opens no socket and reads no clock. It is driven from outside:
// - the application calls connect, subscribe, unsubscribe, publish, call and close;
// - the shell feeds what happened: handleTicket, handleConnected, handleFrame, handleClosed and
//   handleTimeout, each with the current time in ms;
// - the shell then drains pollTransmit (fetch a ticket, open a connection, send, close),
//   pollEvent (what the application sees) and pollTimeout (when to call handleTimeout next).
//
// The rules it holds:
// - a fresh ticket before every connection attempt, nothing sent before the welcome, and the
//   welcome's values obeyed (FERRY-TICKET-5, FERRY-WELCOME-2, FERRY-WELCOME-3, FERRY-WELCOME-4);
// - after every reconnect, a subscribe for every channel held, from the last delivered
//   position (FERRY-SUBSCRIBE-5);
// - each event handed to the application at most once, and every gap, epoch change or
//   incomplete recovery reported (FERRY-EVENT-3, FERRY-EVENT-4, FERRY-EVENT-5, FERRY-RESUME-4);
// - publishes correlated with their acknowledgements, re-sent with the same idempotency key
//   after a reconnect, failed locally after the request timeout (FERRY-PUBLISH-2, FERRY-PUBLISH-3);
//   RPC calls the same way, failed locally rpc.timeout_ms plus the request timeout after they
//   were made (FERRY-RPC-2, FERRY-RPC-3);
// - pongs for pings, and a dead server detected after interval + timeout of silence
//   (FERRY-HEARTBEAT-2, FERRY-HEARTBEAT-4);
// - no frame above the advertised maximum size, counted in UTF-8 bytes, ever leaves
//   (FERRY-SIZE-1, FERRY-SIZE-2);
// - every close code acted on as the generated close-code table says, backoff as the formula
//   says, and a reason for every stop (FERRY-RECONNECT-1 to FERRY-RECONNECT-9);
// - presence info and holds sent again on every re-subscribe, with the fence of the last hold
//   (FERRY-HOLD-5), and a tracked channel's members read again after every subscribed reply and
//   kept up to date by its presence events (FERRY-PRESENCE-6, see ./presence.ts); presence events
//   take no seq and never touch the position of a channel's events.
Object.defineProperty(exports, "__esModule", { value: true });
exports.ClientSession = exports.DEFAULT_CONFIG = void 0;
exports.utf8Length = utf8Length;
const protocol_1 = require("@ferry/protocol");
const backoff_js_1 = require("./backoff.js");
const position_js_1 = require("./position.js");
const presence_js_1 = require("./presence.js");
/** The protocol's defaults. */
exports.DEFAULT_CONFIG = {
    welcomeTimeoutMs: protocol_1.DEFAULTS.welcomeTimeoutMs,
    requestTimeoutMs: protocol_1.DEFAULTS.requestTimeoutMs,
    maxMessageBytes: protocol_1.DEFAULTS.maxMessageBytes,
};
/** The length of a string in UTF-8 bytes, the unit of every size limit (FERRY-SIZE-1). */
function utf8Length(text) {
    let bytes = 0;
    for (let i = 0; i < text.length; i++) {
        const unit = text.charCodeAt(i);
        if (unit < 0x80)
            bytes += 1;
        else if (unit < 0x800)
            bytes += 2;
        else if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
            bytes += 4;
            i++;
        }
        else
            bytes += 3;
    }
    return bytes;
}
/**
 * A request id of the length every id has (see `#requestId`): a publish measured with it has
 * the size it is sent with, so one that fits once fits when re-sent, and one of exactly the
 * maximum size fits (FERRY-SIZE-1).
 */
const LONGEST_REQUEST_ID = "r9007199254740991";
/** A ferry.v1 client session; see the module comment. */
class ClientSession {
    #config;
    #random;
    #state = { kind: "idle" };
    #maxMessageBytes;
    #backoff = new backoff_js_1.Backoff(backoff_js_1.DEFAULT_RECONNECT);
    #link;
    #nextConnection = 0;
    #nextRequest = 0;
    #renewed = false;
    #deadline;
    #subscriptions = new Map();
    #publishes = [];
    /** The last advertised rpc.timeout_ms (the protocol's default before any welcome). */
    #rpcTimeoutMs = protocol_1.DEFAULTS.rpcTimeoutMs;
    #transmits = [];
    #events = [];
    /** An idle session; `random` draws uniform samples in [0, 1) for the jitter and the keys. */
    constructor(config = exports.DEFAULT_CONFIG, random = Math.random) {
        this.#config = config;
        this.#random = random;
        this.#maxMessageBytes = config.maxMessageBytes;
    }
    /** The session's state. */
    get state() {
        return this.#state;
    }
    /** The largest message the session sends now: the welcome's limit once welcomed. */
    get maxMessageBytes() {
        return this.#maxMessageBytes;
    }
    /** The retries counted in a row since the last reset. */
    get retries() {
        return this.#backoff.retries;
    }
    /** The listeners of a channel, each once. */
    listeners(channel) {
        return [...(this.#subscriptions.get(channel)?.listeners.keys() ?? [])];
    }
    /**
     * The members of a channel a listener tracks (`members: true`), ordered by user, as of its last
     * read and the presence events since; undefined until they were read once, and again after a
     * read failed until the next one ends. The same array until the list changes.
     */
    members(channel) {
        const list = this.#subscriptions.get(channel)?.members;
        return list?.isSynced === true ? list.members() : undefined;
    }
    /** The fence of the last hold of a channel held now, sent with every hold asked again (FERRY-HOLD-5). */
    fence(channel) {
        return this.#subscriptions.get(channel)?.fence;
    }
    /** The channels held, with the last delivered position of each once known. */
    subscriptions() {
        return [...this.#subscriptions].map(([c, s]) => [c, s.tracker?.last]);
    }
    /** Starts the session: fetch a ticket, connect, and keep reconnecting until stopped. */
    connect(now) {
        if (this.#state.kind === "idle")
            this.#fetchTicket(now);
    }
    /** Stops for good: closes the connection (1000) and fails every pending publish. */
    close() {
        if (this.#link !== undefined) {
            this.#transmits.push({ kind: "close", connection: this.#link.id, code: protocol_1.CloseCode.NormalClosure, reason: "closed by the application" });
            this.#link = undefined;
        }
        this.#stop({ kind: "requested" });
    }
    subscribe(channel, listener, options = {}, now) {
        let entry = this.#subscriptions.get(channel);
        if (entry === undefined) {
            entry = { listeners: new Map(), tracker: undefined, fence: undefined, members: undefined, confirmedOn: undefined };
            this.#subscriptions.set(channel, entry);
        }
        const first = entry.listeners.size === 0;
        // Delete first so that a listener subscribing again counts as the latest.
        entry.listeners.delete(listener);
        entry.listeners.set(listener, options);
        if (first && this.#state.kind === "active")
            this.#sendSubscribe(channel);
        this.#track(channel, entry, now);
    }
    /** Removes a listener; when none is left the channel is unsubscribed (its fence forgotten). */
    unsubscribe(channel, listener) {
        const entry = this.#subscriptions.get(channel);
        if (entry === undefined || !entry.listeners.delete(listener))
            return;
        if (entry.listeners.size > 0) {
            this.#track(channel, entry, undefined);
            return;
        }
        this.#subscriptions.delete(channel);
        if (this.#state.kind === "active") {
            const id = this.#requestId();
            if (this.#send({ type: "unsubscribe", id, channel }) === undefined)
                this.#link?.requests.set(id, { kind: "unsubscribe" });
        }
    }
    /**
     * Publishes `payload` to `channel` with idempotency key `key` (generated when absent) and
     * returns the key, or the failure when it cannot be sent at all (too large, stopped). It is
     * re-sent with the same key after a reconnect until acknowledged, refused or timed out.
     */
    publish(channel, payload, key, now) {
        if (this.#state.kind === "stopped")
            return { ok: false, failure: { kind: "session_stopped" } };
        const chosen = key ?? this.#generateKey();
        return this.#enqueue({ key: chosen, request: { kind: "publish", channel, payload }, deadline: now + this.#config.requestTimeoutMs, sentAs: undefined });
    }
    /**
     * Calls `method` with `params` under idempotency key `key` (generated when absent) and returns
     * the key; the answer comes as an `answered` or `call_failed` event. Like a publish, the call
     * is sent once welcomed and re-sent with the same key on every welcomed session until
     * answered, so a call cut off by a reconnect runs at most once (FERRY-RPC-3). It fails locally
     * when no answer came within the advertised rpc.timeout_ms plus the request timeout
     * (FERRY-RPC-2). Every error but rate_limited fails it at once; after `timeout` or
     * `unavailable` the call may still complete, and calling again with the key gets its answer.
     */
    call(method, params, key, now) {
        if (this.#state.kind === "stopped")
            return { ok: false, failure: { kind: "session_stopped" } };
        const chosen = key ?? this.#generateKey();
        const deadline = now + this.#rpcTimeoutMs + this.#config.requestTimeoutMs;
        return this.#enqueue({ key: chosen, request: { kind: "rpc", method, params }, deadline, sentAs: undefined });
    }
    /** Queues a publish or call, sending it now when welcomed, unless it can never fit. */
    #enqueue(pending) {
        const size = utf8Length(JSON.stringify(keyedMessage(pending, LONGEST_REQUEST_ID)));
        if (size > this.#maxMessageBytes)
            return { ok: false, failure: { kind: "too_large", size, max: this.#maxMessageBytes } };
        this.#publishes.push(pending);
        if (this.#state.kind === "active")
            this.#sendPublish(pending);
        return { ok: true, key: pending.key };
    }
    /** Feeds the outcome of a ticket fetch. */
    handleTicket(result, now) {
        if (this.#state.kind !== "fetching_ticket")
            return;
        if (result.ok) {
            this.#nextConnection += 1;
            const id = this.#nextConnection;
            this.#link = { id, lastHeard: now, heartbeat: undefined, retryHintMs: undefined, requests: new Map() };
            this.#deadline = now + this.#config.welcomeTimeoutMs;
            this.#setState({ kind: "connecting" });
            this.#transmits.push({ kind: "connect", connection: id, ticket: result.ticket });
        }
        else if (result.error.kind === "unauthorized") {
            this.#stop({ kind: "credential_rejected" });
        }
        else {
            this.#retry("backoff", `no ticket: ${result.error.why}`, now);
        }
    }
    /** Feeds that the WebSocket of `connection` opened. */
    handleConnected(connection, now) {
        if (this.#state.kind !== "connecting" || !this.#isCurrent(connection) || this.#link === undefined)
            return;
        this.#link.lastHeard = now;
        this.#setState({ kind: "awaiting_welcome" });
    }
    /** Feeds a data frame received on `connection`. */
    handleFrame(connection, frame, now) {
        const link = this.#link;
        if (link === undefined || !this.#isCurrent(connection))
            return;
        if (this.#state.kind !== "awaiting_welcome" && this.#state.kind !== "active")
            return;
        link.lastHeard = now;
        if (frame.kind === "binary") {
            this.#events.push({ kind: "protocol_violation", violation: { kind: "binary" } });
            this.#dropLink(protocol_1.CloseCode.UnsupportedData, "the server sent a binary frame", now);
            return;
        }
        const size = utf8Length(frame.text);
        if (size > this.#maxMessageBytes) {
            this.#events.push({ kind: "protocol_violation", violation: { kind: "too_large", size, max: this.#maxMessageBytes } });
            this.#dropLink(protocol_1.CloseCode.MessageTooBig, "the server sent a frame above the maximum message size", now);
            return;
        }
        const parsed = (0, protocol_1.parseServerMessage)(frame.text);
        if (!parsed.ok) {
            this.#events.push({ kind: "protocol_violation", violation: { kind: "invalid", problems: parsed.problems } });
            return;
        }
        const message = parsed.value;
        if (this.#state.kind === "awaiting_welcome") {
            // A server sends the welcome first (FERRY-WELCOME-1); anything else cannot be trusted.
            if (message.type === "welcome")
                this.#onWelcome(message, now);
            else
                this.#dropLink(protocol_1.CloseCode.ProtocolError, "the first frame was not a welcome", now);
            return;
        }
        switch (message.type) {
            case "welcome":
                return;
            case "ping":
                this.#send({ type: "pong", nonce: message.nonce });
                return;
            case "event":
                this.#onEvent(message);
                return;
            case "subscribed": {
                const request = link.requests.get(message.id);
                if (request?.kind !== "subscribe")
                    return;
                link.requests.delete(message.id);
                const entry = this.#subscriptions.get(request.channel);
                if (entry === undefined)
                    return;
                const [tracker, resumption] = position_js_1.PositionTracker.afterSubscribed(request.from, message);
                entry.tracker = tracker;
                entry.confirmedOn = link.id;
                // FERRY-HOLD-5: the fence of the last hold is kept for the next re-subscribe.
                if (message.hold !== undefined)
                    entry.fence = message.hold.fence;
                const hold = message.hold === undefined ? {} : { hold: { fence: message.hold.fence } };
                this.#events.push({ kind: "subscribed", channel: request.channel, position: message.position, resumption, ...hold });
                if (resumption.kind === "incomplete")
                    this.#events.push({ kind: "incomplete", channel: request.channel, cause: { kind: "recovery", reason: resumption.reason } });
                this.#syncMembers(request.channel, entry, now);
                return;
            }
            case "unsubscribed":
                link.requests.delete(message.id);
                return;
            case "member_page":
                this.#onMemberPage(message, now);
                return;
            case "presence":
                this.#onPresence(message);
                return;
            case "published": {
                const key = this.#settle(message.id, "publish");
                if (key !== undefined)
                    this.#events.push({ kind: "published", key, ack: message });
                return;
            }
            case "rpc_result": {
                const key = this.#settle(message.id, "rpc");
                if (key !== undefined)
                    this.#events.push({ kind: "answered", key, answer: message });
                return;
            }
            case "error":
                this.#onError(message.id ?? undefined, message.error);
                return;
            case "goodbye":
                link.retryHintMs = message.retry_after_ms ?? undefined;
                this.#events.push({ kind: "goodbye", goodbye: message });
                return;
        }
    }
    /** Feeds that `connection` closed or failed to open; `code` is undefined without a close frame. */
    handleClosed(connection, code, reason, now) {
        const kind = this.#state.kind;
        if (!this.#isCurrent(connection) || (kind !== "connecting" && kind !== "awaiting_welcome" && kind !== "active"))
            return;
        const closed = code ?? protocol_1.CloseCode.AbnormalClosure;
        const action = (0, protocol_1.closeAction)(closed);
        const hint = this.#link?.retryHintMs;
        this.#endLink(now);
        if (action === "stop") {
            this.#stop({ kind: "closed", code: closed, reason });
            return;
        }
        const failure = `closed with ${closed} (${reason})`;
        if (action === "retry_after_hint" && hint !== undefined)
            this.#schedule(hint, failure, now);
        else
            this.#retry(action, failure, now);
    }
    /** Feeds the passing of time: call it at pollTimeout(). */
    handleTimeout(now) {
        const expired = this.#publishes.filter((p) => p.deadline <= now);
        this.#publishes = this.#publishes.filter((p) => p.deadline > now);
        for (const publish of expired) {
            if (publish.sentAs !== undefined)
                this.#link?.requests.delete(publish.sentAs);
            this.#events.push(failed(publish, { kind: "timed_out" }));
        }
        const requests = this.#link?.requests;
        for (const [id, request] of requests ?? []) {
            if (request.kind !== "members" || request.deadline > now)
                continue;
            requests?.delete(id);
            this.#failMembers(request.channel, request.sync, { kind: "timed_out" });
        }
        const state = this.#state;
        const due = this.#deadline !== undefined && this.#deadline <= now;
        if (state.kind === "backing_off" && state.until <= now)
            this.#fetchTicket(now);
        else if (state.kind === "fetching_ticket" && due)
            this.#retry("backoff", "the ticket request timed out", now);
        else if ((state.kind === "connecting" || state.kind === "awaiting_welcome") && due)
            this.#dropLink(protocol_1.CloseCode.GoingAway, "no welcome within the welcome timeout", now);
        else if (state.kind === "active") {
            const heartbeat = this.#heartbeatDeadline();
            if (heartbeat !== undefined && heartbeat <= now)
                this.#dropLink(protocol_1.CloseCode.GoingAway, "no frame from the server within the heartbeat interval and timeout", now);
        }
    }
    /** When handleTimeout must be called next, if at all. */
    pollTimeout() {
        const state = this.#state;
        let next;
        if (state.kind === "backing_off")
            next = state.until;
        else if (state.kind === "fetching_ticket" || state.kind === "connecting" || state.kind === "awaiting_welcome")
            next = this.#deadline;
        else if (state.kind === "active")
            next = this.#heartbeatDeadline();
        for (const p of this.#publishes)
            if (next === undefined || p.deadline < next)
                next = p.deadline;
        for (const r of this.#link?.requests.values() ?? [])
            if (r.kind === "members" && (next === undefined || r.deadline < next))
                next = r.deadline;
        return next;
    }
    /** The next thing for the shell to do. */
    pollTransmit() {
        return this.#transmits.shift();
    }
    /** The next thing for the application to see. */
    pollEvent() {
        return this.#events.shift();
    }
    #isCurrent(connection) {
        return this.#link?.id === connection;
    }
    #heartbeatDeadline() {
        const heartbeat = this.#link?.heartbeat;
        return heartbeat === undefined || this.#link === undefined ? undefined : this.#link.lastHeard + heartbeat.interval_ms + heartbeat.timeout_ms;
    }
    #setState(state) {
        if (JSON.stringify(this.#state) !== JSON.stringify(state)) {
            this.#state = state;
            this.#events.push({ kind: "state_changed", state });
        }
    }
    #fetchTicket(now) {
        this.#deadline = now + this.#config.requestTimeoutMs;
        this.#setState({ kind: "fetching_ticket" });
        this.#transmits.push({ kind: "fetch_ticket" });
    }
    #onWelcome(welcome, now) {
        // FERRY-WELCOME-3: the advertised values replace the built-in ones.
        this.#maxMessageBytes = welcome.limits.max_message_bytes;
        this.#backoff.policy = welcome.reconnect;
        this.#backoff.onWelcome(now);
        this.#renewed = false;
        this.#deadline = undefined;
        if (welcome.rpc !== undefined)
            this.#rpcTimeoutMs = welcome.rpc.timeout_ms;
        if (this.#link !== undefined)
            this.#link.heartbeat = welcome.heartbeat;
        this.#setState({ kind: "active" });
        // FERRY-SUBSCRIBE-5: every channel held, from its last delivered position.
        for (const channel of [...this.#subscriptions.keys()])
            this.#sendSubscribe(channel);
        for (const publish of [...this.#publishes])
            this.#sendPublish(publish);
    }
    #onEvent(event) {
        const tracker = this.#subscriptions.get(event.channel)?.tracker;
        if (tracker === undefined)
            return;
        const arrival = tracker.observe(event.position);
        if (arrival.kind === "duplicate")
            return;
        if (arrival.kind === "gap")
            this.#events.push({ kind: "incomplete", channel: event.channel, cause: { kind: "gap", expected: arrival.expected, got: arrival.got } });
        if (arrival.kind === "epoch_changed")
            this.#events.push({ kind: "incomplete", channel: event.channel, cause: { kind: "epoch_changed" } });
        this.#events.push({ kind: "event", event });
    }
    #onError(id, error) {
        const request = id === undefined ? undefined : this.#link?.requests.get(id);
        if (id !== undefined && request !== undefined)
            this.#link?.requests.delete(id);
        if (request?.kind === "subscribe") {
            this.#subscriptions.delete(request.channel);
            this.#events.push({ kind: "subscribe_failed", channel: request.channel, error });
        }
        else if (request?.kind === "members") {
            this.#failMembers(request.channel, request.sync, { kind: "refused", error });
        }
        else if (request?.kind === "keyed") {
            // A publish's retryable refusal (rate limited, unavailable) is left to the request timeout
            // and the next connection, and so is a call's rate_limited; any other error fails the
            // request now (a call's timeout or unavailable the application retries with the key).
            const pending = this.#publishes.find((p) => p.key === request.key);
            const waits = pending?.request.kind === "rpc" ? error.code === "rate_limited" : error.retryable;
            if (waits) {
                if (pending !== undefined)
                    pending.sentAs = undefined;
                this.#events.push({ kind: "server_error", error });
            }
            else if (pending !== undefined) {
                this.#publishes = this.#publishes.filter((p) => p !== pending);
                this.#events.push(failed(pending, { kind: "refused", error }));
            }
        }
        else {
            this.#events.push({ kind: "server_error", error });
        }
    }
    /** The key of the publish or call `id` answers, if it is of `kind`; the request is settled. */
    #settle(id, kind) {
        const request = this.#link?.requests.get(id);
        if (request?.kind !== "keyed")
            return undefined;
        const pending = this.#publishes.find((p) => p.key === request.key);
        // A reply of the other kind answers nothing: the request still waits for its own.
        if (pending === undefined || pending.request.kind !== kind)
            return undefined;
        this.#link?.requests.delete(id);
        this.#publishes = this.#publishes.filter((p) => p !== pending);
        return pending.key;
    }
    /** `r` and the request's number in 16 digits, the length of the largest safe integer. */
    #requestId() {
        this.#nextRequest += 1;
        return `r${String(this.#nextRequest).padStart(16, "0")}`;
    }
    #generateKey() {
        let hex = "";
        for (let i = 0; i < 4; i++)
            hex += Math.floor(this.#random() * 0x100000000).toString(16).padStart(8, "0");
        return `k-${hex}`;
    }
    /** Encodes and queues a frame; the size gate applies to every frame. Returns the failure, if any. */
    #send(message) {
        const text = JSON.stringify(message);
        const size = utf8Length(text);
        if (size > this.#maxMessageBytes)
            return { kind: "too_large", size, max: this.#maxMessageBytes };
        if (this.#link !== undefined)
            this.#transmits.push({ kind: "send", connection: this.#link.id, text });
        return undefined;
    }
    #sendSubscribe(channel) {
        const entry = this.#subscriptions.get(channel);
        if (entry === undefined)
            return;
        const from = entry.tracker?.last;
        const id = this.#requestId();
        const message = { type: "subscribe", id, channel };
        if (from !== undefined)
            message.from = { ...from };
        // The info of the latest listener that gave one; a hold when any listener asks for it.
        for (const options of entry.listeners.values())
            if (options.info !== undefined)
                message.info = options.info;
        // FERRY-HOLD-5: the fence of the last hold goes with every hold asked again.
        if ([...entry.listeners.values()].some((o) => o.hold === true))
            message.hold = entry.fence === undefined ? {} : { fence: entry.fence };
        if (this.#send(message) === undefined)
            this.#link?.requests.set(id, { kind: "subscribe", channel, from: from === undefined ? undefined : { ...from } });
    }
    /**
     * Keeps a member list exactly while a listener of the channel tracks members. A list made for
     * a subscription in effect on this connection is read at once (FERRY-PRESENCE-6); otherwise
     * its subscribed reply starts the read. A list dropped ends its sync: the pages that answer it
     * are ignored.
     */
    #track(channel, entry, now) {
        const tracks = [...entry.listeners.values()].some((o) => o.members === true);
        if (!tracks) {
            entry.members = undefined;
            return;
        }
        if (entry.members !== undefined)
            return;
        entry.members = new presence_js_1.MemberList();
        const confirmed = this.#state.kind === "active" && this.#link !== undefined && entry.confirmedOn === this.#link.id;
        if (confirmed && now !== undefined)
            this.#syncMembers(channel, entry, now);
    }
    /** Starts reading a tracked channel's members, after its subscribed reply (FERRY-PRESENCE-6). */
    #syncMembers(channel, entry, now) {
        if (entry.members === undefined)
            return;
        this.#sendMembers(channel, entry.members.restart(), undefined, now);
    }
    #sendMembers(channel, sync, after, now) {
        const id = this.#requestId();
        const failure = this.#send(after === undefined ? { type: "members", id, channel } : { type: "members", id, channel, after });
        if (failure !== undefined)
            this.#failMembers(channel, sync, failure);
        else
            this.#link?.requests.set(id, { kind: "members", channel, sync, deadline: now + this.#config.requestTimeoutMs });
    }
    #onMemberPage(page, now) {
        const request = this.#link?.requests.get(page.id);
        if (request?.kind !== "members")
            return;
        this.#link?.requests.delete(page.id);
        const list = this.#subscriptions.get(request.channel)?.members;
        if (list === undefined)
            return;
        const outcome = list.page(request.sync, page);
        if (outcome === "last")
            this.#events.push({ kind: "members", channel: request.channel, members: list.members() });
        else if (outcome === "more" && page.next !== null)
            this.#sendMembers(request.channel, request.sync, page.next, now);
    }
    /** A presence event: kept for a sync under way, else applied and handed over. It takes no seq and leaves the channel's position alone. */
    #onPresence(presence) {
        const entry = this.#subscriptions.get(presence.channel);
        if (entry === undefined)
            return;
        const list = entry.members;
        if (list?.isSyncing === true) {
            list.presence(presence);
            return;
        }
        list?.presence(presence);
        this.#events.push({ kind: "presence", channel: presence.channel, presence });
    }
    /** Abandons `sync` if it is still the channel's sync under way, and says so. */
    #failMembers(channel, sync, failure) {
        const list = this.#subscriptions.get(channel)?.members;
        if (list === undefined || !list.isCurrent(sync))
            return;
        list.abandon();
        this.#events.push({ kind: "members_failed", channel, failure });
    }
    #sendPublish(publish) {
        const id = this.#requestId();
        const failure = this.#send(keyedMessage(publish, id));
        if (failure === undefined) {
            this.#link?.requests.set(id, { kind: "keyed", key: publish.key });
            publish.sentAs = id;
        }
        else {
            // The welcome lowered the limit below this message: it can never be sent.
            this.#publishes = this.#publishes.filter((p) => p !== publish);
            this.#events.push(failed(publish, failure));
        }
    }
    #endLink(now) {
        if (this.#link !== undefined) {
            this.#link = undefined;
            this.#backoff.onSessionEnd(now);
        }
        this.#deadline = undefined;
        for (const publish of this.#publishes)
            publish.sentAs = undefined;
    }
    #dropLink(code, reason, now) {
        if (this.#link !== undefined)
            this.#transmits.push({ kind: "close", connection: this.#link.id, code, reason });
        this.#endLink(now);
        this.#retry("backoff", reason, now);
    }
    #retry(action, failure, now) {
        const renewAtOnce = action === "renew_ticket" && !this.#renewed;
        this.#renewed = action === "renew_ticket";
        this.#schedule(renewAtOnce ? 0 : undefined, failure, now);
    }
    /** Counts a retry and waits `delay` (or the backoff's delay); stops when exhausted (FERRY-RECONNECT-4). */
    #schedule(delay, failure, now) {
        const counted = delay === undefined ? this.#backoff.nextDelay(this.#random()) : this.#backoff.countRetry() === undefined ? undefined : delay;
        if (counted === undefined)
            this.#stop({ kind: "attempts_exhausted", retries: this.#backoff.retries, lastFailure: failure });
        else
            this.#setState({ kind: "backing_off", until: now + counted, retry: this.#backoff.retries });
    }
    #stop(reason) {
        this.#link = undefined;
        this.#deadline = undefined;
        for (const publish of this.#publishes)
            this.#events.push(failed(publish, { kind: "session_stopped" }));
        this.#publishes = [];
        // A sync under way (or cut off by the connection's end) has no subscribed reply to come.
        for (const [channel, entry] of this.#subscriptions) {
            if (entry.members?.isSyncing !== true)
                continue;
            entry.members.abandon();
            this.#events.push({ kind: "members_failed", channel, failure: { kind: "session_stopped" } });
        }
        this.#setState({ kind: "stopped", reason });
    }
}
exports.ClientSession = ClientSession;
function keyedMessage(pending, id) {
    const request = pending.request;
    return request.kind === "publish"
        ? { type: "publish", id, channel: request.channel, idempotency_key: pending.key, payload: request.payload }
        : { type: "rpc", id, method: request.method, idempotency_key: pending.key, params: request.params };
}
/** The event that fails a publish or call. */
function failed(pending, failure) {
    return pending.request.kind === "publish"
        ? { kind: "publish_failed", key: pending.key, failure }
        : { kind: "call_failed", key: pending.key, failure };
}
