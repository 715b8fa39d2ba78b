// The shell over an in-memory WebSocket and fetch and a virtual timer: what the application sees
// through FerryClient. (The real-socket runs are the conformance adapters'.)
import { test } from "node:test";
import assert from "node:assert/strict";
import type { ErrorInfo, HoldGrant, Member, Presence, Welcome } from "@ferry/protocol";
import { CallError, FerryClient, PublishError, type Timer, type WebSocketLike } from "../src/client.js";
import type { PublishFailure } from "../src/session.js";

class FakeSocket implements WebSocketLike {
  static last: FakeSocket | undefined;
  protocol = "ferry.v1";
  binaryType = "blob";
  sent: string[] = [];
  closed: [number | undefined, string | undefined] | undefined;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  constructor(readonly url: string, readonly protocols: string | string[]) {
    FakeSocket.last = this;
  }
  send(text: string): void {
    this.sent.push(text);
  }
  close(code?: number, reason?: string): void {
    this.closed = [code, reason];
  }
  receive(message: unknown): void {
    this.onmessage?.({ data: JSON.stringify(message) });
  }
}

function virtualTimer(): Timer & { advance(ms: number): void } {
  let now = 0;
  let timers: Array<{ at: number; callback: () => void; handle: number }> = [];
  let next = 0;
  return {
    now: () => now,
    setTimeout: (callback, ms) => {
      timers.push({ at: now + ms, callback, handle: ++next });
      return next;
    },
    clearTimeout: (handle) => {
      timers = timers.filter((t) => t.handle !== handle);
    },
    advance(ms) {
      const until = now + ms;
      for (;;) {
        timers.sort((a, b) => a.at - b.at);
        const due = timers[0];
        if (due === undefined || due.at > until) break;
        timers.shift();
        now = due.at;
        due.callback();
      }
      now = until;
    },
  };
}

const welcome: Welcome = {
  type: "welcome",
  protocol: "ferry.v1",
  session_id: "s",
  user: "u",
  permissions: [{ pattern: "**", read: true, write: true }],
  heartbeat: { interval_ms: 1000, timeout_ms: 1000 },
  limits: { max_message_bytes: 4096, max_subscriptions: 10, rate_limit: { messages_per_second: 10, burst: 10 } },
  reconnect: { base_ms: 100, factor: 2, cap_ms: 400, jitter: 0.5, max_attempts: 5, reset_after_ms: 300 },
  resume: { max_events: 10, window_ms: 1000 },
};

async function connected() {
  const timer = virtualTimer();
  const tickets: string[] = [];
  const fetch = (async (url: string, init: { headers: Record<string, string> }) => {
    tickets.push(`${url} ${init.headers["authorization"]}`);
    return new Response(JSON.stringify({ ticket: "0123456789abcdef0123456789abcdef", expires_in_ms: 1000, user: "u" }), { status: 201 });
  }) as unknown as typeof globalThis.fetch;
  const client = new FerryClient({ url: "http://127.0.0.1:9/", credential: "tok", fetch, WebSocket: FakeSocket, timer, random: () => 0.5, followPlatform: false });
  client.connect();
  await new Promise((resolve) => setImmediate(resolve));
  const socket = FakeSocket.last;
  assert.ok(socket !== undefined);
  socket.onopen?.({});
  socket.receive(welcome);
  return { client, socket, timer, tickets };
}

test("a ticket is fetched with the bearer credential and carried in ?ticket= with the subprotocol", async () => {
  const { socket, tickets, client } = await connected();
  assert.deepEqual(tickets, ["http://127.0.0.1:9/v1/tickets Bearer tok"]);
  assert.equal(socket.url, "ws://127.0.0.1:9/v1/ws?ticket=0123456789abcdef0123456789abcdef");
  assert.equal(socket.protocols, "ferry.v1");
  assert.equal(client.state.kind, "active");
});

test("a handler added twice is called once per event, and its removal unsubscribes", async () => {
  const { client, socket } = await connected();
  const seen: unknown[] = [];
  const handler = (payload: unknown) => seen.push(payload);
  const off = client.subscribe("c:1", handler);
  client.subscribe("c:1", handler);
  const subscribes = socket.sent.map((t) => JSON.parse(t)).filter((m) => m.type === "subscribe");
  assert.equal(subscribes.length, 1);
  socket.receive({ type: "subscribed", id: subscribes[0].id, channel: "c:1", position: { epoch: "e", seq: 0 } });
  socket.receive({ type: "event", channel: "c:1", message_id: "m-1", position: { epoch: "e", seq: 1 }, published_at_ms: 0, payload: { n: 1 } });
  socket.receive({ type: "event", channel: "c:1", message_id: "m-1", position: { epoch: "e", seq: 1 }, published_at_ms: 0, payload: { n: 1 } });
  assert.deepEqual(seen, [{ n: 1 }]);
  off();
  assert.equal(JSON.parse(socket.sent.at(-1) ?? "{}").type, "unsubscribe");
});

test("publish settles with the ack, or rejects with a typed PublishError at the request timeout", async () => {
  const { client, socket, timer } = await connected();
  const acked = client.channel<{ n: number }>("c:1").publish({ n: 1 }, { idempotencyKey: "k-1" });
  const sent = JSON.parse(socket.sent.at(-1) ?? "{}");
  assert.equal(sent.idempotency_key, "k-1");
  socket.receive({ type: "published", id: sent.id, channel: "c:1", message_id: "m-9", position: { epoch: "e", seq: 9 }, duplicate: false });
  assert.equal((await acked).message_id, "m-9");
  const lost = client.publish("c:1", 2, { idempotencyKey: "k-2" });
  timer.advance(500);
  socket.receive({ type: "ping", nonce: "n" });
  timer.advance(10000);
  await assert.rejects(lost, (error: unknown) => error instanceof PublishError && error.failure.kind === "timed_out" && error.key === "k-2");
});

/** An application's method map, as a generated package's `Methods` is. */
interface Methods {
  "tasks:start": { params: { project: string; title: string }; result: { task_id: string } };
}

test("typed calls send their params and resolve with the method's result; a refusal rejects with a CallError", async () => {
  const { client, socket } = await connected();
  const rpc = client.methods<Methods>();
  const started = rpc("tasks:start", { project: "alpha", title: "Build" }, { idempotencyKey: "k-1" });
  const sent = JSON.parse(socket.sent.at(-1) ?? "{}");
  assert.deepEqual({ ...sent, id: undefined }, { type: "rpc", id: undefined, method: "tasks:start", idempotency_key: "k-1", params: { project: "alpha", title: "Build" } });
  socket.receive({ type: "rpc_result", id: sent.id, method: "tasks:start", result: { task_id: "t-1" }, duplicate: false });
  const result: { task_id: string } = await started;
  // The params are checked at compile time (tsc --strict runs over this file).
  const untyped = () => rpc("tasks:start", {
    // @ts-expect-error project is a string
    project: 1,
    title: "x",
  });
  void untyped;
  assert.deepEqual(result, { task_id: "t-1" });
  const refused = client.call("tasks:start", { project: "frozen", title: "x" }, { idempotencyKey: "k-2" });
  const second = JSON.parse(socket.sent.at(-1) ?? "{}");
  socket.receive({ type: "error", id: second.id, error: { code: "rejected", message: "frozen", retryable: false } });
  await assert.rejects(refused, (error: unknown) => error instanceof CallError && error.failure.kind === "refused" && error.failure.error.code === "rejected" && error.key === "k-2" && error.method === "tasks:start");
});

test("a message above the advertised size is refused locally, never sent", async () => {
  const { client, socket } = await connected();
  const before = socket.sent.length;
  await assert.rejects(client.publish("c:1", "x".repeat(5000)), (error: unknown) => error instanceof PublishError && error.failure.kind === "too_large");
  assert.equal(socket.sent.length, before);
});

test("going offline drops the socket at once and coming online cuts the backoff short", async () => {
  const { client, socket } = await connected();
  const kind = () => client.state.kind;
  client.nudge("offline");
  assert.deepEqual(socket.closed, [1000, "offline"]);
  assert.equal(kind(), "backing_off");
  client.nudge("online");
  assert.equal(kind(), "fetching_ticket");
  client.close();
  assert.equal(kind(), "stopped");
});

test("where the platform refuses a protocol close code, as a browser refuses 1001, the socket closes with 1000 naming it", async () => {
  const { socket, timer, client } = await connected();
  // A browser's WebSocket.close takes only 1000 and 3000-4999.
  const close = socket.close.bind(socket);
  socket.close = (code?: number, reason?: string) => {
    if (code !== undefined && code !== 1000 && (code < 3000 || code > 4999)) throw new Error(`InvalidAccessError: ${code}`);
    close(code, reason);
  };
  timer.advance(2001);
  assert.deepEqual(socket.closed, [1000, "1001: no frame from the server within the heartbeat interval and timeout"]);
  assert.equal(client.state.kind, "backing_off");
});

/** The frames `socket` sent, parsed, of one type. */
function frames(socket: FakeSocket, type: string): Array<Record<string, unknown>> {
  return socket.sent.map((t) => JSON.parse(t) as Record<string, unknown>).filter((m) => m["type"] === type);
}

test("presence listeners share the channel's one subscription, get the members after the read and after each change, and the last removal unsubscribes", async () => {
  const { client, socket } = await connected();
  const a: string[][] = [];
  const b: string[][] = [];
  const raw: Presence[] = [];
  const failures: Array<[string, PublishFailure]> = [];
  client.on("presence", (p) => raw.push(p));
  client.on("membersFailed", (channel, failure) => failures.push([channel, failure]));
  const listenerA = (members: readonly Member[]) => a.push(members.map((m) => m.user));
  const offA = client.presence("room:a", listenerA, { info: { name: "Ada" } });
  const offAgain = client.presence("room:a", listenerA);
  const offHandler = client.subscribe("room:a", () => {});
  const [subscribe, ...more] = frames(socket, "subscribe");
  assert.deepEqual(more, [], "one subscribe frame");
  assert.deepEqual(subscribe?.["info"], { name: "Ada" });
  assert.deepEqual(frames(socket, "members"), [], "the members are read after the subscribed reply");
  socket.receive({ type: "subscribed", id: subscribe?.["id"], channel: "room:a", position: { epoch: "e", seq: 0 } });
  const [request] = frames(socket, "members");
  assert.equal(request?.["channel"], "room:a");
  assert.equal(client.members("room:a"), undefined);
  socket.receive({ type: "member_page", id: request?.["id"], channel: "room:a", members: [{ user: "ada", sessions: 1, info: { name: "Ada" } }], next: null, position: { epoch: "e", seq: 0 } });
  assert.deepEqual(a, [["ada"]], "the listener added twice is called once");
  const offB = client.presence("room:a", (members) => b.push(members.map((m) => m.user)));
  assert.deepEqual(b, [["ada"]], "a listener added later gets the members at once");
  assert.equal(frames(socket, "members").length, 1, "and nothing is read again for it");
  client.presence("room:a", listenerA);
  assert.deepEqual(a, [["ada"]], "a listener added again is not called again");
  const join = { type: "presence", channel: "room:a", change: "join", user: "bob", position: { epoch: "e", seq: 0 } } as const;
  socket.receive(join);
  assert.deepEqual(a, [["ada"], ["ada", "bob"]]);
  assert.deepEqual(b, [["ada"], ["ada", "bob"]]);
  assert.deepEqual(raw, [join]);
  assert.deepEqual(client.members("room:a")?.map((m) => m.user), ["ada", "bob"]);
  offA();
  offAgain();
  offB();
  assert.equal(client.members("room:a"), undefined, "nobody tracks them now");
  assert.deepEqual(frames(socket, "unsubscribe"), [], "the handler still holds the channel");
  socket.receive({ ...join, change: "leave" });
  assert.deepEqual(a.length + b.length, 4, "a removed listener hears nothing");
  assert.equal(raw.length, 2, "presence events still reach the client's listeners");
  offHandler();
  assert.equal(frames(socket, "unsubscribe").length, 1);
  assert.deepEqual(failures, []);
});

test("a members request refused by the server reaches membersFailed", async () => {
  const { client, socket } = await connected();
  const failures: Array<[string, PublishFailure]> = [];
  client.on("membersFailed", (channel, failure) => failures.push([channel, failure]));
  const lists: string[][] = [];
  client.presence("room:a", (members) => lists.push(members.map((m) => m.user)));
  const [subscribe] = frames(socket, "subscribe");
  socket.receive({ type: "subscribed", id: subscribe?.["id"], channel: "room:a", position: { epoch: "e", seq: 0 } });
  const [request] = frames(socket, "members");
  const error: ErrorInfo = { code: "bad_request", message: "room:a keeps no presence", retryable: false };
  socket.receive({ type: "error", id: request?.["id"], error });
  assert.deepEqual(failures, [["room:a", { kind: "refused", error }]]);
  assert.deepEqual(lists, []);
});

test("a hold asked in the subscribe options: subscribed carries its fence, a reconnect asks again with it, and a held refusal reaches subscribeFailed", async () => {
  const { client, socket, timer } = await connected();
  const holds: Array<HoldGrant | undefined> = [];
  const refused: string[] = [];
  client.on("subscribed", (channel, _resumption, hold) => channel === "lock:a" && holds.push(hold));
  client.on("subscribeFailed", (channel, error) => refused.push(`${channel}:${error.code}`));
  const seen: unknown[] = [];
  client.channel<number>("lock:a").subscribe((n) => seen.push(n), { hold: true });
  const [first] = frames(socket, "subscribe");
  assert.deepEqual(first?.["hold"], {});
  socket.receive({ type: "subscribed", id: first?.["id"], channel: "lock:a", position: { epoch: "e", seq: 0 }, hold: { fence: 4 } });
  assert.deepEqual(holds, [{ fence: 4 }]);
  socket.onclose?.({ code: 1011, reason: "restart" });
  timer.advance(1000);
  await new Promise((resolve) => setImmediate(resolve));
  const next = FakeSocket.last;
  assert.ok(next !== undefined && next !== socket, "a new connection");
  next.onopen?.({});
  next.receive(welcome);
  const [again] = frames(next, "subscribe");
  assert.deepEqual(again?.["hold"], { fence: 4 }, "FERRY-HOLD-5");
  next.receive({ type: "error", id: again?.["id"], error: { code: "held", message: "another session holds lock:a", retryable: false } });
  assert.deepEqual(refused, ["lock:a:held"]);
  next.receive({ type: "event", channel: "lock:a", message_id: "m-1", position: { epoch: "e", seq: 1 }, published_at_ms: 0, payload: 1 });
  assert.deepEqual(seen, [], "the refused channel's handlers are dropped");
});

test("closed with 4412 (taken over), the client stops: no new ticket, no new socket", async () => {
  const { client, socket, timer, tickets } = await connected();
  const states: string[] = [];
  client.on("state", (state) => states.push(state.kind === "stopped" && state.reason.kind === "closed" ? `stopped ${state.reason.code}` : state.kind));
  socket.onclose?.({ code: 4412, reason: "taken over" });
  assert.deepEqual(states, ["stopped 4412"]);
  timer.advance(60000);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(FakeSocket.last, socket);
  assert.equal(tickets.length, 1);
});
