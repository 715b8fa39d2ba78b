// The session core under a virtual clock: every rule is driven through handle* calls with
// explicit times, so nothing here sleeps or reads a real clock.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { CLOSE_CODES, CloseCode, type EventMessage, type ServerMessage, type Welcome } from "@ferry/protocol";
import { ClientSession, DEFAULT_CONFIG, utf8Length, type ClientEvent, type Transmit } from "../src/session.js";
import { delayBounds, delayMs } from "../src/backoff.js";

const policy = { base_ms: 100, factor: 2, cap_ms: 400, jitter: 0.5, max_attempts: 3, reset_after_ms: 300 };

function welcome(): Welcome {
  return {
    type: "welcome",
    protocol: "ferry.v1",
    session_id: "s-1",
    user: "u-1",
    permissions: [{ pattern: "**", read: true, write: true }],
    heartbeat: { interval_ms: 1000, timeout_ms: 500 },
    limits: { max_message_bytes: 1024, max_subscriptions: 100, rate_limit: { messages_per_second: 100, burst: 100 } },
    reconnect: policy,
    resume: { max_events: 100, window_ms: 60000 },
  };
}

function event(channel: string, seq: number): EventMessage {
  return { type: "event", channel, message_id: `m-${seq}`, position: { epoch: "e", seq }, payload: seq, published_at_ms: 0 };
}

/** A session and helpers that play the shell's part at explicit times. */
function harness(random: () => number = () => 0.5) {
  const session = new ClientSession(DEFAULT_CONFIG, random);
  const drain = (): Transmit[] => {
    const out: Transmit[] = [];
    for (let t = session.pollTransmit(); t !== undefined; t = session.pollTransmit()) out.push(t);
    return out;
  };
  const events = (): ClientEvent[] => {
    const out: ClientEvent[] = [];
    for (let e = session.pollEvent(); e !== undefined; e = session.pollEvent()) out.push(e);
    return out;
  };
  const frame = (connection: number, message: ServerMessage, now: number) => session.handleFrame(connection, { kind: "text", text: JSON.stringify(message) }, now);
  /** Ticket, open, welcome (from idle or at the end of a backoff): returns the connection id. */
  const establish = (now: number): number => {
    if (session.state.kind === "idle") session.connect(now);
    else session.handleTimeout(now);
    const fetch = drain();
    assert.deepEqual(fetch.at(-1), { kind: "fetch_ticket" });
    session.handleTicket({ ok: true, ticket: `t-${now}` }, now);
    const connect = drain().find((t) => t.kind === "connect");
    assert.ok(connect !== undefined && connect.kind === "connect");
    session.handleConnected(connect.connection, now);
    frame(connect.connection, welcome(), now);
    return connect.connection;
  };
  const sent = (transmits: Transmit[]) => transmits.flatMap((t) => (t.kind === "send" ? [JSON.parse(t.text) as Record<string, unknown>] : []));
  return { session, drain, events, frame, establish, sent };
}

test("nothing is sent before the welcome, and a subscribe made early goes out on it", () => {
  const h = harness();
  h.session.subscribe("project:alpha:tasks", 1);
  h.session.connect(0);
  assert.deepEqual(h.drain(), [{ kind: "fetch_ticket" }]);
  h.session.handleTicket({ ok: true, ticket: "t" }, 5);
  const [connect] = h.drain();
  assert.ok(connect?.kind === "connect" && connect.ticket === "t");
  h.session.handleConnected(connect.connection, 6);
  assert.deepEqual(h.drain(), []);
  h.frame(connect.connection, welcome(), 7);
  assert.deepEqual(h.sent(h.drain()), [{ type: "subscribe", id: "r0000000000000001", channel: "project:alpha:tasks" }]);
  assert.equal(h.session.state.kind, "active");
});

test("the first frame other than a welcome closes with 1002 and backs off", () => {
  const h = harness();
  h.session.connect(0);
  h.drain();
  h.session.handleTicket({ ok: true, ticket: "t" }, 0);
  const [connect] = h.drain();
  assert.ok(connect?.kind === "connect");
  h.session.handleConnected(connect.connection, 0);
  h.frame(connect.connection, { type: "ping", nonce: "n" }, 1);
  assert.deepEqual(h.drain(), [{ kind: "close", connection: connect.connection, code: CloseCode.ProtocolError, reason: "the first frame was not a welcome" }]);
  assert.equal(h.session.state.kind, "backing_off");
});

test("a 401 from the ticket endpoint stops with credential_rejected", () => {
  const h = harness();
  h.session.connect(0);
  h.session.handleTicket({ ok: false, error: { kind: "unauthorized" } }, 1);
  assert.deepEqual(h.session.state, { kind: "stopped", reason: { kind: "credential_rejected" } });
});

test("every close code is acted on as the generated table says", () => {
  for (const row of CLOSE_CODES) {
    const h = harness();
    const connection = h.establish(0);
    h.session.handleClosed(connection, row.code, "r", 10);
    const state = h.session.state;
    if (row.action === "stop") assert.deepEqual(state, { kind: "stopped", reason: { kind: "closed", code: row.code, reason: "r" } }, String(row.code));
    else if (row.action === "renew_ticket") assert.deepEqual(state, { kind: "backing_off", until: 10, retry: 1 }, String(row.code));
    else {
      const [low, high] = delayBounds(policy, 1);
      assert.ok(state.kind === "backing_off" && state.until - 10 >= low && state.until - 10 <= high, String(row.code));
    }
  }
});

test("a code missing from the table backs off; 4401 twice in a row waits under the backoff the second time", () => {
  const h = harness();
  let connection = h.establish(0);
  h.session.handleClosed(connection, 4999, "?", 10);
  assert.equal(h.session.state.kind, "backing_off");
  connection = h.establish(200);
  h.session.handleClosed(connection, CloseCode.TicketRejected, "rejected", 210);
  assert.deepEqual(h.session.state, { kind: "backing_off", until: 210, retry: 2 });
  h.session.handleTimeout(210);
  h.drain();
  h.session.handleTicket({ ok: true, ticket: "t2" }, 210);
  const connect = h.drain().find((t) => t.kind === "connect");
  assert.ok(connect?.kind === "connect");
  h.session.handleClosed(connect.connection, CloseCode.TicketRejected, "rejected", 220);
  const state = h.session.state;
  assert.ok(state.kind === "backing_off" && state.until > 220, "the second renew in a row waits under the backoff");
});

test("max_attempts retries in a row stop with attempts_exhausted", () => {
  const h = harness();
  const connection = h.establish(0);
  h.session.handleClosed(connection, 1011, "internal", 1);
  for (let i = 0; i < policy.max_attempts; i++) {
    const state = h.session.state;
    assert.ok(state.kind === "backing_off");
    h.session.handleTimeout(state.until);
    h.session.handleTicket({ ok: false, error: { kind: "failed", why: "503" } }, state.until);
  }
  const state = h.session.state;
  assert.ok(state.kind === "stopped" && state.reason.kind === "attempts_exhausted" && state.reason.retries === policy.max_attempts);
});

test("a silent server is declared dead at interval + timeout, not before", () => {
  const h = harness();
  const connection = h.establish(0);
  h.drain();
  assert.equal(h.session.pollTimeout(), 1500);
  h.session.handleTimeout(1499);
  assert.equal(h.session.state.kind, "active");
  h.frame(connection, { type: "ping", nonce: "n-1" }, 1000);
  assert.deepEqual(h.sent(h.drain()), [{ type: "pong", nonce: "n-1" }]);
  assert.equal(h.session.pollTimeout(), 2500);
  h.session.handleTimeout(2500);
  assert.equal(h.drain()[0]?.kind, "close");
  assert.equal(h.session.state.kind, "backing_off");
});

test("the size gate counts UTF-8 bytes: a publish above the advertised limit is refused and never sent", () => {
  assert.equal(utf8Length("é😀a"), 2 + 4 + 1);
  const h = harness();
  h.establish(0);
  h.drain();
  const big = h.session.publish("c:1", "é".repeat(500), "k-1", 1);
  assert.ok(!big.ok && big.failure.kind === "too_large" && big.failure.max === 1024);
  assert.deepEqual(h.drain(), []);
  assert.ok(h.session.publish("c:1", "é".repeat(300), "k-2", 1).ok);
});

test("a publish is re-sent with the same key after a reconnect and settles once on its ack", () => {
  const h = harness();
  let connection = h.establish(0);
  h.drain();
  const result = h.session.publish("c:1", { n: 1 }, undefined, 1);
  assert.ok(result.ok);
  const [first] = h.sent(h.drain());
  h.session.handleClosed(connection, 1011, "x", 2);
  connection = h.establish(500);
  const [again] = h.sent(h.drain());
  assert.equal(first?.["idempotency_key"], result.key);
  assert.equal(again?.["idempotency_key"], result.key);
  h.events();
  h.frame(connection, { type: "published", id: String(again?.["id"]), channel: "c:1", message_id: "m-1", position: { epoch: "e", seq: 1 }, duplicate: true }, 501);
  assert.deepEqual(h.events().filter((e) => e.kind === "published" || e.kind === "publish_failed").map((e) => e.kind), ["published"]);
  h.session.handleTimeout(100000);
  assert.deepEqual(h.events().filter((e) => e.kind === "publish_failed"), []);
});

test("an unacknowledged publish fails with timed_out at the request timeout", () => {
  const h = harness();
  h.establish(0);
  assert.ok(h.session.publish("c:1", 1, "k", 10).ok);
  h.events();
  h.session.handleTimeout(10 + DEFAULT_CONFIG.requestTimeoutMs);
  assert.deepEqual(h.events().filter((e) => e.kind === "publish_failed"), [{ kind: "publish_failed", key: "k", failure: { kind: "timed_out" } }]);
});

test("a call is re-sent with its key after a reconnect, settles once on its answer, and a publish ack does not settle it", () => {
  const h = harness();
  let connection = h.establish(0);
  h.drain();
  const result = h.session.call("tasks:start", { project: "alpha" }, undefined, 1);
  assert.ok(result.ok);
  const [first] = h.sent(h.drain());
  assert.deepEqual({ ...first, id: undefined }, { type: "rpc", id: undefined, method: "tasks:start", idempotency_key: result.key, params: { project: "alpha" } });
  h.session.handleClosed(connection, 1011, "x", 2);
  connection = h.establish(500);
  const [again] = h.sent(h.drain());
  assert.equal(again?.["type"], "rpc");
  assert.equal(again?.["idempotency_key"], result.key, "FERRY-RPC-3: the same key");
  h.events();
  // The old connection's id answers nothing; a published with the call's id settles nothing.
  h.frame(connection, { type: "rpc_result", id: String(first?.["id"]), method: "tasks:start", result: 1, duplicate: false }, 501);
  h.frame(connection, { type: "published", id: String(again?.["id"]), channel: "c:1", message_id: "m-1", position: { epoch: "e", seq: 1 }, duplicate: false }, 501);
  assert.deepEqual(h.events().filter((e) => e.kind === "answered" || e.kind === "published"), []);
  const answer = { type: "rpc_result", id: String(again?.["id"]), method: "tasks:start", result: { task_id: "t-1" }, duplicate: true } as const;
  h.frame(connection, answer, 502);
  assert.deepEqual(h.events().filter((e) => e.kind === "answered"), [{ kind: "answered", key: result.key, answer }]);
  h.session.handleTimeout(100000);
  assert.deepEqual(h.events().filter((e) => e.kind === "call_failed"), []);
});

test("a call fails at once on the server's timeout, and locally rpc.timeout_ms plus the request timeout after it was made", () => {
  const h = harness();
  h.session.connect(0);
  h.drain();
  h.session.handleTicket({ ok: true, ticket: "t" }, 0);
  const connect = h.drain().find((t) => t.kind === "connect");
  assert.ok(connect?.kind === "connect");
  h.session.handleConnected(connect.connection, 0);
  h.frame(connect.connection, { ...welcome(), rpc: { timeout_ms: 3000 } }, 0);
  h.drain();
  assert.ok(h.session.call("tasks:start", {}, "k-1", 10).ok);
  const [sent] = h.sent(h.drain());
  h.frame(connect.connection, { type: "error", id: String(sent?.["id"]), error: { code: "timeout", message: "slow", retryable: true } }, 20);
  assert.deepEqual(h.events().filter((e) => e.kind === "call_failed").map((e) => e.kind === "call_failed" && e.failure.kind === "refused" && e.failure.error.code), ["timeout"]);
  assert.ok(h.session.call("tasks:start", {}, "k-2", 100).ok);
  h.drain();
  h.events();
  const deadline = 100 + 3000 + DEFAULT_CONFIG.requestTimeoutMs;
  assert.equal(h.session.pollTimeout() !== undefined && h.session.pollTimeout()! <= deadline, true);
  h.session.handleTimeout(deadline - 1);
  assert.deepEqual(h.events().filter((e) => e.kind === "call_failed"), []);
  h.session.handleTimeout(deadline);
  assert.deepEqual(h.events().filter((e) => e.kind === "call_failed"), [{ kind: "call_failed", key: "k-2", failure: { kind: "timed_out" } }]);
});

test("property: retry n's delay always lies within the formula's bounds", () => {
  fc.assert(
    fc.property(
      fc.record({ base_ms: fc.integer({ min: 1, max: 60000 }), factor: fc.double({ min: 1, max: 10, noNaN: true }), cap_ms: fc.integer({ min: 1, max: 600000 }), jitter: fc.double({ min: 0, max: 1, noNaN: true }) }),
      fc.integer({ min: 1, max: 200 }),
      fc.double({ min: 0, max: 1, noNaN: true }),
      (p, retry, unit) => {
        const delay = delayMs({ ...p, max_attempts: 10, reset_after_ms: 1000 }, retry, unit);
        const nominal = Math.min(p.cap_ms, p.base_ms * Math.pow(p.factor, retry - 1));
        assert.ok(Number.isInteger(delay));
        assert.ok(delay >= Math.floor(nominal * (1 - p.jitter)) && delay <= Math.floor(nominal) && delay <= p.cap_ms);
      },
    ),
    { seed: 11, numRuns: 2000 },
  );
});

test("property: across reconnects and overlapping replays no event is delivered twice and no gap is silent", () => {
  const step = fc.oneof(
    fc.record({ kind: fc.constant("event" as const), seq: fc.integer({ min: 1, max: 30 }) }),
    fc.record({ kind: fc.constant("reconnect" as const), replayFrom: fc.integer({ min: 0, max: 30 }) }),
  );
  fc.assert(
    fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
      const h = harness();
      const channel = "project:alpha:tasks";
      h.session.subscribe(channel, 1);
      let connection = h.establish(0);
      let now = 1;
      const reply = (recovered: boolean) => {
        const sub = h.sent(h.drain()).find((m) => m["type"] === "subscribe");
        assert.ok(sub !== undefined, "a subscribe on every welcome");
        const position = (sub["from"] as { epoch: string; seq: number } | undefined) ?? { epoch: "e", seq: 0 };
        h.frame(connection, { type: "subscribed", id: String(sub["id"]), channel, position, ...(recovered ? { recovery: { complete: true, replayed: 0, reason: null } } : {}) }, now);
        return position.seq;
      };
      reply(false);
      for (const s of steps) {
        now += 1;
        if (s.kind === "event") {
          h.frame(connection, event(channel, s.seq), now);
        } else {
          // The session stayed welcomed past reset_after_ms, so the retry count starts over.
          now += policy.reset_after_ms;
          h.session.handleClosed(connection, 1011, "x", now);
          const state = h.session.state;
          now = state.kind === "backing_off" ? Math.max(now, state.until) : now;
          connection = h.establish(now);
          const from = reply(true);
          // A replay that overlaps what was delivered already.
          for (let seq = Math.max(1, Math.min(from, s.replayFrom)); seq <= from; seq++) h.frame(connection, event(channel, seq), now);
        }
      }
      let last = 0;
      for (const e of h.events()) {
        if (e.kind === "incomplete" && e.cause.kind === "gap") {
          assert.equal(e.cause.expected, last + 1, "a gap names the seq that should have come");
          last = e.cause.got - 1;
        }
        if (e.kind === "event") {
          assert.equal(e.event.position.seq, last + 1, `delivered ${e.event.position.seq} after ${last}: a duplicate or a silent gap`);
          last = e.event.position.seq;
        }
      }
    }),
    { seed: 12, numRuns: 300 },
  );
});
