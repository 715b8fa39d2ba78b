// FerryClient: the thin shell over ClientSession. It makes no protocol decision: it moves
// tickets (fetch), frames and closes (WebSocket) and time (an injectable clock and timer) in
// and out of the session, and hands the session's events to the application's handlers.

import {
  CloseCode,
  ROUTES,
  SUBPROTOCOL,
  TICKET_QUERY_PARAMETER,
  isTicketResponse,
  type ErrorInfo,
  type EventMessage,
  type HoldGrant,
  type JsonValue,
  type Member,
  type Presence,
  type PresenceInfo,
  type Published,
  type RpcResult,
} from "@ferry/protocol";
import { ClientSession, DEFAULT_CONFIG, utf8Length, type ClientConfig, type ClientEvent, type ClientState, type IncompleteCause, type PublishFailure, type SubscribeOptions, type Transmit } from "./session.js";
import type { Resumption } from "./position.js";

/** The part of the platform's WebSocket the client uses (the browser's, Node 22's, or `ws`). */
export interface WebSocketLike {
  readonly protocol: string;
  binaryType: string;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
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
export class PublishError extends Error {
  /** Why the publish failed. */
  readonly failure: PublishFailure;
  /** The idempotency key of the publish. */
  readonly key: string | undefined;

  /** A publish error for `failure`. */
  constructor(failure: PublishFailure, key: string | undefined) {
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
  readonly failure: PublishFailure;
  /** The method called. */
  readonly method: string;
  /** The idempotency key of the call. */
  readonly key: string | undefined;

  /** A call error for `failure`. */
  constructor(method: string, failure: PublishFailure, key: string | undefined) {
    super(`${method}: ${describeFailure(failure, "call")}`);
    this.name = "CallError";
    this.failure = failure;
    this.method = method;
    this.key = key;
  }
}

/**
 * The shape of a method map: the params and result types of each method, by name, as an
 * application package's generated `Methods` interface has them.
 */
export type MethodMap<M> = { readonly [K in keyof M]: { readonly params: unknown; readonly result: unknown } };

/** Typed calls of an application's methods (see FerryClient.methods). */
export type TypedCall<M extends MethodMap<M>> = <K extends keyof M & string>(
  method: K,
  params: M[K]["params"],
  options?: { readonly idempotencyKey?: string },
) => Promise<M[K]["result"]>;

function describeFailure(failure: PublishFailure, what: "publish" | "call" = "publish"): string {
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

const systemTimer: Timer = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof globalThis.setTimeout>),
};

/** A typed view of one channel: `ChannelPayload` of an application package gives `P`. */
export interface Channel<P> {
  /** The channel's name. */
  readonly name: string;
  /** Adds a handler (a handler added twice is called once per event), with presence info or a hold; returns its removal. */
  subscribe(handler: EventHandler<P>, options?: ChannelOptions): () => void;
  /** Publishes a payload; settles with the acknowledgement or a PublishError. */
  publish(payload: P, options?: { readonly idempotencyKey?: string }): Promise<Published>;
}

/** A ferry.v1 client for browsers and Node. */
export class FerryClient {
  readonly #options: FerryClientOptions;
  readonly #session: ClientSession;
  readonly #timer: Timer;
  readonly #handlers = new Map<string, Map<EventHandler<never>, number>>();
  readonly #presence = new Map<string, Map<PresenceListener, number>>();
  readonly #listeners: { [K in keyof ClientEvents]: Set<ClientEvents[K]> } = {
    state: new Set(),
    subscribed: new Set(),
    subscribeFailed: new Set(),
    presence: new Set(),
    membersFailed: new Set(),
    incomplete: new Set(),
    notice: new Set(),
  };
  readonly #publishes = new Map<string, { resolve: (ack: Published) => void; reject: (error: PublishError) => void }>();
  readonly #calls = new Map<string, { method: string; resolve: (answer: RpcResult) => void; reject: (error: CallError) => void }>();
  #nextListener = 0;
  #socket: { id: number; ws: WebSocketLike } | undefined;
  #wake: unknown;
  #platformCleanup: (() => void) | undefined;

  /** A client; call connect() to start it. */
  constructor(options: FerryClientOptions) {
    this.#options = options;
    this.#timer = options.timer ?? systemTimer;
    this.#session = new ClientSession(options.config ?? DEFAULT_CONFIG, options.random ?? Math.random);
  }

  /** The connection state. */
  get state(): ClientState {
    return this.#session.state;
  }

  /** Listens to a client event; returns the removal. */
  on<K extends keyof ClientEvents>(event: K, listener: ClientEvents[K]): () => void {
    const set = this.#listeners[event] as Set<ClientEvents[K]>;
    set.add(listener);
    return () => set.delete(listener);
  }

  /** Starts the client: ticket, connect, and reconnect as the protocol says until closed. */
  connect(): void {
    if (this.#options.followPlatform !== false && this.#platformCleanup === undefined) this.#platformCleanup = followPlatform(this);
    this.#session.connect(this.#timer.now());
    this.#pump();
  }

  /** Closes the client for good (close code 1000); pending publishes fail with session_stopped. */
  close(): void {
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
  subscribe<P = JsonValue>(channel: string, handler: EventHandler<P>, options?: ChannelOptions): () => void {
    const asked = options === undefined ? {} : { ...options };
    return this.#hold(this.#handlers, channel, handler as EventHandler<never>, asked);
  }

  /**
   * Tracks `channel`'s members: `listener` gets every member, ordered by user, once they were
   * read after the subscribed reply and again after every change (a join or a leave), and again
   * after every re-read that follows a reconnect (FERRY-PRESENCE-6). Added to a channel whose
   * members are known already, it gets them at once. The channel is subscribed as by
   * `subscribe` (one subscription, however many handlers and listeners), with presence `info`
   * when given. Returns the listener's removal.
   */
  presence(channel: string, listener: PresenceListener, options?: { readonly info?: PresenceInfo }): () => void {
    const asked = options?.info === undefined ? { members: true } : { members: true, info: options.info };
    const added = this.#presence.get(channel)?.has(listener) !== true;
    const release = this.#hold(this.#presence, channel, listener, asked);
    const known = this.#session.members(channel);
    if (added && known !== undefined) listener(known);
    return release;
  }

  /** The members of a channel whose members a presence listener tracks, once read (see presence). */
  members(channel: string): readonly Member[] | undefined {
    return this.#session.members(channel);
  }

  /** Registers `callback` on `channel` in `registry` as one listener of the session; returns its removal. */
  #hold<C>(registry: Map<string, Map<C, number>>, channel: string, callback: C, options: SubscribeOptions): () => void {
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
      if (current?.get(callback) !== listener) return;
      current.delete(callback);
      if (current.size === 0) registry.delete(channel);
      this.#session.unsubscribe(channel, listener);
      this.#pump();
    };
  }

  /** Publishes `payload` to `channel`; settles with the acknowledgement or a PublishError. */
  publish(channel: string, payload: JsonValue, options?: { readonly idempotencyKey?: string }): Promise<Published> {
    const result = this.#session.publish(channel, payload, options?.idempotencyKey, this.#timer.now());
    if (!result.ok) return Promise.reject(new PublishError(result.failure, options?.idempotencyKey));
    const promise = new Promise<Published>((resolve, reject) => this.#publishes.set(result.key, { resolve, reject }));
    this.#pump();
    return promise;
  }

  /**
   * Calls `method` with `params`; settles with the answer (`result`, and `duplicate` when a
   * retried key got an earlier call's answer) or a CallError. The call is re-sent with its
   * idempotency key across reconnects until answered, and the server runs it at most once.
   */
  call(method: string, params: JsonValue, options?: { readonly idempotencyKey?: string }): Promise<RpcResult> {
    const result = this.#session.call(method, params, options?.idempotencyKey, this.#timer.now());
    if (!result.ok) return Promise.reject(new CallError(method, result.failure, options?.idempotencyKey));
    const promise = new Promise<RpcResult>((resolve, reject) => this.#calls.set(result.key, { method, resolve, reject }));
    this.#pump();
    return promise;
  }

  /**
   * Typed calls through an application package's generated `Methods` map:
   * `const rpc = client.methods<Methods>(); const started = await rpc("tasks:start", params);`
   * takes each method's params type and returns its result type.
   */
  methods<M extends MethodMap<M>>(): TypedCall<M> {
    return async (method, params, options) => (await this.call(method, params as JsonValue, options)).result as M[typeof method]["result"];
  }

  /** A typed view of a channel. */
  channel<P = JsonValue>(name: string): Channel<P> {
    return {
      name,
      subscribe: (handler, options) => this.subscribe<P>(name, handler, options),
      publish: (payload, options) => this.publish(name, payload as JsonValue, options),
    };
  }

  /** Cuts a pending backoff short or drops a socket the platform says is dead (see followPlatform). */
  nudge(reason: "online" | "offline" | "visible"): void {
    const state = this.#session.state;
    if (reason === "offline" && this.#socket !== undefined) {
      this.#socket.ws.close(1000, "offline");
      this.#session.handleClosed(this.#socket.id, undefined, "the platform went offline", this.#timer.now());
    } else if (reason !== "offline" && state.kind === "backing_off") {
      this.#session.handleTimeout(state.until);
    }
    this.#pump();
  }

  #emit<K extends keyof ClientEvents>(event: K, ...args: Parameters<ClientEvents[K]>): void {
    for (const listener of this.#listeners[event]) (listener as (...a: Parameters<ClientEvents[K]>) => void)(...args);
  }

  /** Drains the session: transmits, then events, then re-arms the timer. */
  #pump(): void {
    for (;;) {
      const transmit = this.#session.pollTransmit();
      if (transmit !== undefined) {
        this.#perform(transmit);
        continue;
      }
      const event = this.#session.pollEvent();
      if (event === undefined) break;
      this.#deliver(event);
    }
    if (this.#wake !== undefined) this.#timer.clearTimeout(this.#wake);
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

  #perform(transmit: Transmit): void {
    switch (transmit.kind) {
      case "fetch_ticket":
        void this.#fetchTicket();
        return;
      case "connect":
        this.#open(transmit.connection, transmit.ticket);
        return;
      case "send":
        if (this.#socket?.id === transmit.connection) this.#socket.ws.send(transmit.text);
        return;
      case "close":
        if (this.#socket?.id === transmit.connection) {
          closeSocket(this.#socket.ws, transmit.code, transmit.reason);
          this.#socket = undefined;
        }
        return;
    }
  }

  async #fetchTicket(): Promise<void> {
    const doFetch = this.#options.fetch ?? globalThis.fetch.bind(globalThis);
    let result: Parameters<ClientSession["handleTicket"]>[0];
    try {
      const credential = typeof this.#options.credential === "function" ? await this.#options.credential() : this.#options.credential;
      const response = await doFetch(new URL(ROUTES.issueTicket.path, this.#options.url).toString(), {
        method: ROUTES.issueTicket.method,
        headers: { authorization: `Bearer ${credential}` },
      });
      if (response.status === 401) result = { ok: false, error: { kind: "unauthorized" } };
      else if (response.status !== ROUTES.issueTicket.successStatus) result = { ok: false, error: { kind: "failed", why: `the ticket endpoint answered ${response.status}` } };
      else {
        const body: unknown = await response.json();
        result = isTicketResponse(body) ? { ok: true, ticket: body.ticket } : { ok: false, error: { kind: "failed", why: "the ticket response is not a TicketResponse" } };
      }
    } catch (error) {
      result = { ok: false, error: { kind: "failed", why: String(error) } };
    }
    this.#session.handleTicket(result, this.#timer.now());
    this.#pump();
  }

  #open(connection: number, ticket: string): void {
    const Factory = this.#options.WebSocket ?? (globalThis as { WebSocket?: WebSocketFactory }).WebSocket;
    const url = new URL(ROUTES.connect.path, this.#options.url);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set(TICKET_QUERY_PARAMETER, ticket);
    let ws: WebSocketLike;
    try {
      if (Factory === undefined) throw new Error("no WebSocket: pass the WebSocket option (the ws package on Node < 22)");
      ws = new Factory(url.toString(), SUBPROTOCOL);
    } catch (error) {
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
        if (current()) this.#socket = undefined;
        this.#session.handleClosed(connection, CloseCode.ProtocolError, "no subprotocol", this.#timer.now());
      } else this.#session.handleConnected(connection, this.#timer.now());
      this.#pump();
    };
    ws.onmessage = (event) => {
      const frame = typeof event.data === "string" ? { kind: "text" as const, text: event.data } : { kind: "binary" as const, bytes: byteLength(event.data) };
      this.#session.handleFrame(connection, frame, this.#timer.now());
      this.#pump();
    };
    ws.onclose = (event) => {
      if (current()) this.#socket = undefined;
      // 1005 and 1006 are never sent: they mean no close frame (or none with a code) came.
      const code = event.code === 1005 || event.code === 1006 ? undefined : event.code;
      this.#session.handleClosed(connection, code, event.reason, this.#timer.now());
      this.#pump();
    };
    ws.onerror = () => {};
  }

  #deliver(event: ClientEvent): void {
    switch (event.kind) {
      case "state_changed":
        this.#emit("state", event.state);
        return;
      case "event": {
        const handlers = this.#handlers.get(event.event.channel);
        for (const handler of [...(handlers?.keys() ?? [])]) (handler as EventHandler<JsonValue>)(event.event.payload, event.event);
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
        for (const listener of [...(this.#presence.get(event.channel)?.keys() ?? [])]) listener(event.members);
        return;
      case "presence": {
        this.#emit("presence", event.presence);
        const members = this.#session.members(event.channel);
        if (members === undefined) return;
        for (const listener of [...(this.#presence.get(event.channel)?.keys() ?? [])]) listener(members);
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
export function closeSocket(ws: WebSocketLike, code: number, reason: string): void {
  try {
    ws.close(code, truncateUtf8(reason, 123));
  } catch {
    try {
      ws.close(CloseCode.NormalClosure, truncateUtf8(`${code}: ${reason}`, 123));
    } catch {
      ws.close();
    }
  }
}

function truncateUtf8(text: string, max: number): string {
  if (utf8Length(text) <= max) return text;
  let cut = text.slice(0, max);
  while (utf8Length(cut) > max) cut = cut.slice(0, -1);
  return cut;
}

function byteLength(data: unknown): number {
  if (data instanceof ArrayBuffer) return data.byteLength;
  if (ArrayBuffer.isView(data)) return data.byteLength;
  return 0;
}

/** Wires the page's visibility and online/offline events to `client.nudge`, where they exist. */
function followPlatform(client: FerryClient): () => void {
  const target = globalThis as { addEventListener?: (type: string, listener: () => void) => void; removeEventListener?: (type: string, listener: () => void) => void; document?: { visibilityState?: string } };
  if (typeof target.addEventListener !== "function" || typeof target.removeEventListener !== "function") return () => {};
  const online = () => client.nudge("online");
  const offline = () => client.nudge("offline");
  const visible = () => {
    if (target.document?.visibilityState === "visible") client.nudge("visible");
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
