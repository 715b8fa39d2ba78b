// The session core under a virtual clock: every rule is driven through handle* calls with
// explicit times, so nothing here sleeps or reads a real clock.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { CLOSE_CODES, CloseCode, closeAction, type EventMessage, type Member, type Presence, type PresenceInfo, type ServerMessage, type Welcome } from "@ferry/protocol";
import { ClientSession, DEFAULT_CONFIG, utf8Length, type ClientEvent, type Transmit } from "../src/session.js";
import { delayBounds, delayMs } from "../src/backoff.js";
import { compareUtf8 } from "../src/presence.js";

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

function presence(channel: string, change: "join" | "leave", user: string, seq: number, info?: PresenceInfo): Presence {
  const base = { type: "presence", channel, change, user, position: { epoch: "e", seq } } as const;
  return info === undefined ? base : { ...base, info };
}

function member(user: string, sessions = 1, info?: PresenceInfo): Member {
  return info === undefined ? { user, sessions } : { user, sessions, info };
}

/** The frames of one type among `frames`. */
function ofType(frames: ReadonlyArray<Record<string, unknown>>, type: string): Array<Record<string, unknown>> {
  return frames.filter((f) => f["type"] === type);
}

/** Answers the one subscribe among `frames` with `subscribed` at `position`, plus `extra` (a recovery, a hold). */
function answerSubscribe(h: ReturnType<typeof harness>, connection: number, frames: ReadonlyArray<Record<string, unknown>>, seq: number, extra: Record<string, unknown>, now: number): void {
  const [subscribe] = ofType(frames, "subscribe");
  assert.ok(subscribe !== undefined, "a subscribe was sent");
  h.frame(connection, { type: "subscribed", id: String(subscribe["id"]), channel: String(subscribe["channel"]), position: { epoch: "e", seq }, ...extra }, now);
}

/** Answers a members request with a page. */
function answerMembers(h: ReturnType<typeof harness>, connection: number, request: Record<string, unknown> | undefined, members: Member[], next: string | null, now: number): void {
  assert.ok(request !== undefined && request["type"] === "members", "a members request was sent");
  h.frame(connection, { type: "member_page", id: String(request["id"]), channel: String(request["channel"]), members, next, position: { epoch: "e", seq: 5 } }, now);
}

test("FERRY-PRESENCE-6: members are read after the subscribed reply, and the presence events that cross the pages are applied on top in order", () => {
  const h = harness();
  const room = "room:a";
  h.session.subscribe(room, 1, { members: true, info: { name: "Ada" } }, 0);
  const connection = h.establish(0);
  const first = h.sent(h.drain());
  assert.deepEqual(first, [{ type: "subscribe", id: "r0000000000000001", channel: room, info: { name: "Ada" } }]);
  assert.deepEqual(ofType(first, "members"), [], "no members request before the subscribed reply");
  answerSubscribe(h, connection, first, 5, {}, 1);
  const [request1] = h.sent(h.drain());
  assert.deepEqual(request1, { type: "members", id: "r0000000000000002", channel: room });
  assert.equal(h.session.members(room), undefined, "undefined until the first full read");
  // Recorded before the first page was read (so the page holds bob), it arrives before the page.
  h.frame(connection, presence(room, "join", "bob", 5), 2);
  answerMembers(h, connection, request1, [member("ada", 2, { name: "Ada" }), member("bob")], "bob", 3);
  const [request2] = h.sent(h.drain());
  assert.deepEqual(request2, { type: "members", id: "r0000000000000003", channel: room, after: "bob" });
  // Bob's last session leaves after the first page was read: the event arrives after it.
  h.frame(connection, presence(room, "leave", "bob", 5), 4);
  assert.deepEqual(h.events().filter((e) => e.kind === "presence" || e.kind === "members"), [], "nothing handed over during the read");
  assert.equal(h.session.members(room), undefined);
  // Cy joined after the first page was read and before the second: the second page holds cy,
  // with a second session since, and the join arrives after the last page.
  answerMembers(h, connection, request2, [member("cy", 2), member("dan")], null, 5);
  assert.deepEqual(h.sent(h.drain()), [], "no request after the last page");
  const expected = [member("ada", 2, { name: "Ada" }), member("cy", 2), member("dan")];
  assert.deepEqual(h.events().filter((e) => e.kind === "members" || e.kind === "presence"), [{ kind: "members", channel: room, members: expected }]);
  assert.deepEqual(h.session.members(room), expected);
  const join = presence(room, "join", "cy", 5);
  h.frame(connection, join, 6);
  assert.deepEqual(h.events(), [{ kind: "presence", channel: room, presence: join }]);
  assert.deepEqual(h.session.members(room), expected, "a join for a member the page holds keeps its count of sessions");
  const eve = presence(room, "join", "eve", 5, { name: "Eve" });
  h.frame(connection, eve, 7);
  h.frame(connection, presence(room, "leave", "ada", 5), 8);
  assert.deepEqual(h.events().map((e) => e.kind), ["presence", "presence"]);
  assert.deepEqual(h.session.members(room), [member("cy", 2), member("dan"), member("eve", 1, { name: "Eve" })]);
});

test("members are ordered by user as UTF-8 bytes, the server's order, not JavaScript's UTF-16 order", () => {
  assert.ok("\u{1F600}" < "\uFF5E", "UTF-16 puts a surrogate pair first");
  assert.ok(compareUtf8("\uFF5E", "\u{1F600}") < 0 && compareUtf8("\u{1F600}", "\uFF5E") > 0);
  assert.ok(compareUtf8("ab", "abc") < 0 && compareUtf8("b", "abc") > 0 && compareUtf8("x", "x") === 0);
  const h = harness();
  h.session.subscribe("room:a", 1, { members: true }, 0);
  const connection = h.establish(0);
  answerSubscribe(h, connection, h.sent(h.drain()), 0, {}, 1);
  const [request] = h.sent(h.drain());
  h.frame(connection, presence("room:a", "join", "\u{1F600}", 0), 2);
  answerMembers(h, connection, request, [member("ada"), member("\uFF5E")], null, 3);
  assert.deepEqual(h.session.members("room:a")?.map((m) => m.user), ["ada", "\uFF5E", "\u{1F600}"]);
  h.frame(connection, presence("room:a", "join", "\uE000", 0), 4);
  h.frame(connection, presence("room:a", "join", "\u{10000}", 0), 4);
  assert.deepEqual(h.session.members("room:a")?.map((m) => m.user), ["ada", "\uE000", "\uFF5E", "\u{10000}", "\u{1F600}"]);
});

test("a reconnect in the middle of a read starts it over after the next subscribed reply, and every subscribed reply reads the members again", () => {
  const h = harness();
  const room = "room:a";
  h.session.subscribe(room, 1, { members: true }, 0);
  let connection = h.establish(0);
  answerSubscribe(h, connection, h.sent(h.drain()), 2, {}, 1);
  const [request1] = h.sent(h.drain());
  answerMembers(h, connection, request1, [member("amy")], "amy", 2);
  const [request2] = h.sent(h.drain());
  assert.equal(request2?.["after"], "amy");
  h.frame(connection, presence(room, "join", "zed", 2), 3);
  h.session.handleClosed(connection, 1011, "restart", 4);
  connection = h.establish(1000);
  const resubscribe = h.sent(h.drain());
  assert.deepEqual(ofType(resubscribe, "members"), [], "no read before the new subscribed reply");
  // The old connection's request id answers nothing on the new one.
  answerMembers(h, connection, request2, [member("old")], null, 1001);
  assert.deepEqual(h.events().filter((e) => e.kind === "members"), []);
  answerSubscribe(h, connection, resubscribe, 2, { recovery: { complete: true, replayed: 0, reason: null } }, 1002);
  const [again] = h.sent(h.drain());
  assert.deepEqual({ ...again, id: undefined }, { type: "members", id: undefined, channel: room }, "the read starts over from the first page");
  answerMembers(h, connection, again, [member("bob")], null, 1003);
  assert.deepEqual(h.events().filter((e) => e.kind === "members" || e.kind === "presence"), [{ kind: "members", channel: room, members: [member("bob")] }], "nothing of the cut-off read survives");
  // A resume reads them again; the list known so far stays readable meanwhile.
  h.session.handleClosed(connection, 1011, "restart", 1004);
  connection = h.establish(2000);
  answerSubscribe(h, connection, h.sent(h.drain()), 2, { recovery: { complete: true, replayed: 0, reason: null } }, 2001);
  const [resync] = h.sent(h.drain());
  assert.equal(resync?.["type"], "members");
  h.frame(connection, presence(room, "leave", "bob", 2), 2002);
  h.frame(connection, presence(room, "join", "cy", 2), 2002);
  assert.deepEqual(h.session.members(room), [member("bob")]);
  answerMembers(h, connection, resync, [member("bob")], null, 2003);
  assert.deepEqual(h.events().filter((e) => e.kind === "members" || e.kind === "presence"), [{ kind: "members", channel: room, members: [member("cy")] }]);
});

test("presence events take no seq: they neither move a channel's position nor cause a gap, tracked or not", () => {
  const h = harness();
  h.session.subscribe("room:a", 1);
  h.session.subscribe("room:b", 2, { members: true }, 0);
  const connection = h.establish(0);
  const subscribes = ofType(h.sent(h.drain()), "subscribe");
  answerSubscribe(h, connection, subscribes.slice(0, 1), 3, {}, 1);
  answerSubscribe(h, connection, subscribes.slice(1), 3, {}, 1);
  const [request] = ofType(h.sent(h.drain()), "members");
  answerMembers(h, connection, request, [], null, 2);
  h.events();
  const untracked = presence("room:a", "join", "bob", 9);
  h.frame(connection, untracked, 3);
  h.frame(connection, presence("room:b", "join", "bob", 9), 3);
  h.frame(connection, presence("room:c", "join", "bob", 9), 3);
  h.frame(connection, event("room:a", 4), 4);
  h.frame(connection, event("room:b", 4), 4);
  const seen = h.events();
  assert.deepEqual(seen[0], { kind: "presence", channel: "room:a", presence: untracked }, "an untracked channel's presence events are handed over too");
  assert.deepEqual(seen.map((e) => (e.kind === "presence" ? `presence ${e.channel}` : e.kind === "event" ? `event ${e.event.channel} ${e.event.position.seq}` : e.kind)), ["presence room:a", "presence room:b", "event room:a 4", "event room:b 4"], "no gap, and nothing for a channel not held");
  assert.deepEqual(h.session.subscriptions(), [
    ["room:a", { epoch: "e", seq: 4 }],
    ["room:b", { epoch: "e", seq: 4 }],
  ]);
  assert.deepEqual(h.session.members("room:b"), [member("bob")]);
  assert.equal(h.session.members("room:a"), undefined);
});

test("FERRY-HOLD-5: the fence of the last hold goes with every re-subscribe after a reconnect and is forgotten after an unsubscribe", () => {
  const h = harness();
  const lock = "lock:a";
  h.session.subscribe(lock, 1, { hold: true }, 0);
  h.session.subscribe("room:a", 2);
  let connection = h.establish(0);
  const first = h.sent(h.drain());
  assert.deepEqual(first, [
    { type: "subscribe", id: "r0000000000000001", channel: lock, hold: {} },
    { type: "subscribe", id: "r0000000000000002", channel: "room:a" },
  ]);
  answerSubscribe(h, connection, first, 0, { hold: { fence: 7 } }, 1);
  assert.deepEqual(h.events().filter((e) => e.kind === "subscribed"), [{ kind: "subscribed", channel: lock, position: { epoch: "e", seq: 0 }, resumption: { kind: "fresh" }, hold: { fence: 7 } }]);
  assert.equal(h.session.fence(lock), 7);
  h.session.handleClosed(connection, 1011, "restart", 2);
  connection = h.establish(1000);
  const second = ofType(h.sent(h.drain()), "subscribe").filter((f) => f["channel"] === lock);
  assert.deepEqual({ ...second[0], id: undefined }, { type: "subscribe", id: undefined, channel: lock, from: { epoch: "e", seq: 0 }, hold: { fence: 7 } });
  answerSubscribe(h, connection, second, 0, { recovery: { complete: true, replayed: 0, reason: null }, hold: { fence: 8 } }, 1001);
  h.session.handleClosed(connection, 1011, "restart", 1002);
  connection = h.establish(2000);
  const third = ofType(h.sent(h.drain()), "subscribe").filter((f) => f["channel"] === lock);
  assert.deepEqual(third[0]?.["hold"], { fence: 8 }, "the last hold's fence");
  // A reply without a hold (the subscribe that asked for none) keeps the fence.
  answerSubscribe(h, connection, third, 0, {}, 2001);
  assert.equal(h.session.fence(lock), 8);
  h.session.unsubscribe(lock, 1);
  assert.equal(h.session.fence(lock), undefined);
  h.drain();
  h.session.subscribe(lock, 3, { hold: true }, 2002);
  assert.deepEqual(h.sent(h.drain()).map((f) => ({ ...f, id: undefined })), [{ type: "subscribe", id: undefined, channel: lock, hold: {} }], "a new subscription asks without a fence and from nowhere");
});

test("a hold refused with held drops the channel and its fence; 4412 (taken over) stops without reconnecting", () => {
  const h = harness();
  h.session.subscribe("lock:a", 1, { hold: true }, 0);
  let connection = h.establish(0);
  answerSubscribe(h, connection, h.sent(h.drain()), 0, { hold: { fence: 3 } }, 1);
  h.session.handleClosed(connection, 1011, "restart", 2);
  connection = h.establish(1000);
  const [resubscribe] = h.sent(h.drain());
  h.events();
  h.frame(connection, { type: "error", id: String(resubscribe?.["id"]), error: { code: "held", message: "another session holds lock:a", retryable: false } }, 1001);
  assert.deepEqual(h.events(), [{ kind: "subscribe_failed", channel: "lock:a", error: { code: "held", message: "another session holds lock:a", retryable: false } }]);
  assert.equal(h.session.fence("lock:a"), undefined);
  assert.deepEqual(h.session.subscriptions(), []);

  const t = harness();
  t.session.subscribe("lock:a", 1, { hold: true }, 0);
  const held = t.establish(0);
  answerSubscribe(t, held, t.sent(t.drain()), 0, { hold: { fence: 1 } }, 1);
  t.events();
  assert.equal(closeAction(CloseCode.TakenOver), "stop");
  t.session.handleClosed(held, 4412, "taken over", 2);
  assert.deepEqual(t.session.state, { kind: "stopped", reason: { kind: "closed", code: 4412, reason: "taken over" } });
  assert.deepEqual(t.events(), [{ kind: "state_changed", state: t.session.state }]);
  assert.equal(t.session.pollTimeout(), undefined, "no backoff to wait for");
  t.session.handleTimeout(1_000_000);
  t.session.connect(1_000_000);
  assert.deepEqual(t.drain(), [], "no ticket, no connection");
});

test("a refused or unanswered members request is reported, ends the tracking until the next subscribed reply, and a late page changes nothing", () => {
  const h = harness();
  const room = "room:a";
  h.session.subscribe(room, 1, { members: true }, 0);
  let connection = h.establish(0);
  answerSubscribe(h, connection, h.sent(h.drain()), 0, {}, 1);
  const [request] = h.sent(h.drain());
  answerMembers(h, connection, request, [member("ada")], null, 2);
  h.events();
  h.session.handleClosed(connection, 1011, "restart", 3);
  connection = h.establish(1000);
  answerSubscribe(h, connection, h.sent(h.drain()), 0, {}, 1001);
  const [refused] = h.sent(h.drain());
  h.events();
  const error = { code: "not_subscribed", message: "not subscribed to room:a", retryable: false } as const;
  h.frame(connection, { type: "error", id: String(refused?.["id"]), error }, 1002);
  assert.deepEqual(h.events(), [{ kind: "members_failed", channel: room, failure: { kind: "refused", error } }]);
  assert.equal(h.session.members(room), undefined, "the list cannot be trusted any more");
  const join = presence(room, "join", "bob", 0);
  h.frame(connection, join, 1003);
  assert.deepEqual(h.events(), [{ kind: "presence", channel: room, presence: join }], "still handed over");
  assert.equal(h.session.members(room), undefined);

  // The next subscribed reply reads them again; this time no page comes.
  h.session.handleClosed(connection, 1011, "restart", 1004);
  connection = h.establish(2000);
  answerSubscribe(h, connection, h.sent(h.drain()), 0, {}, 2010);
  const [unanswered] = h.sent(h.drain());
  assert.equal(unanswered?.["type"], "members");
  h.events();
  const deadline = 2010 + DEFAULT_CONFIG.requestTimeoutMs;
  const next = h.session.pollTimeout();
  assert.ok(next !== undefined && next <= deadline);
  h.frame(connection, { type: "ping", nonce: "n" }, deadline - 600);
  h.session.handleTimeout(deadline - 1);
  assert.deepEqual(h.events(), []);
  h.session.handleTimeout(deadline);
  assert.deepEqual(h.events(), [{ kind: "members_failed", channel: room, failure: { kind: "timed_out" } }]);
  answerMembers(h, connection, unanswered, [member("late")], null, deadline + 1);
  assert.deepEqual(h.events(), []);
  assert.equal(h.session.members(room), undefined);
});

test("listeners share one subscription: a later listener's tracking starts at once, and it ends with the last listener that asked for it", () => {
  const h = harness();
  const room = "room:a";
  h.session.subscribe(room, 1);
  const connection = h.establish(0);
  answerSubscribe(h, connection, h.sent(h.drain()), 4, {}, 1);
  h.session.subscribe(room, 2, { members: true, info: { name: "Ada" } }, 10);
  const [request] = h.sent(h.drain());
  assert.deepEqual(request, { type: "members", id: "r0000000000000002", channel: room }, "read at once, with no second subscribe");
  h.session.subscribe(room, 3, { members: true }, 11);
  assert.deepEqual(h.drain(), [], "a second tracking listener reads nothing more");
  answerMembers(h, connection, request, [member("bob")], null, 12);
  assert.deepEqual(h.session.members(room), [member("bob")]);
  h.session.unsubscribe(room, 2);
  assert.deepEqual(h.session.members(room), [member("bob")], "listener 3 still tracks them");
  h.session.unsubscribe(room, 3);
  assert.equal(h.session.members(room), undefined);
  assert.deepEqual(h.session.listeners(room), [1]);
  assert.deepEqual(h.drain(), [], "no unsubscribe while a listener is left");
  // Tracking asked again while the page of a dropped read is on its way: that page is not the new read's.
  h.session.subscribe(room, 5, { members: true }, 20);
  const [dropped] = h.sent(h.drain());
  h.session.unsubscribe(room, 5);
  h.session.subscribe(room, 6, { members: true }, 21);
  const [current] = h.sent(h.drain());
  assert.notEqual(current?.["id"], dropped?.["id"]);
  answerMembers(h, connection, dropped, [member("stale")], null, 22);
  assert.equal(h.session.members(room), undefined);
  answerMembers(h, connection, current, [member("cy")], null, 23);
  assert.deepEqual(h.session.members(room), [member("cy")]);
  h.session.unsubscribe(room, 6);
  h.events();
  // The info of the latest listener that gave one goes with the next subscribe, after a reconnect.
  h.session.subscribe(room, 4, { info: { name: "Bea" } }, 30);
  h.session.subscribe(room, 7, { info: { name: "Cy" } }, 31);
  assert.deepEqual(h.drain(), [], "nothing is sent for them now");
  h.session.handleClosed(connection, 1011, "restart", 32);
  h.establish(1000);
  const resubscribe = h.sent(h.drain());
  assert.deepEqual(ofType(resubscribe, "subscribe").map((f) => f["info"]), [{ name: "Cy" }]);
  assert.deepEqual(ofType(resubscribe, "members"), [], "nobody tracks the members now");
});

test("the size gate applies to a subscribe with presence info: one above the advertised maximum never leaves", () => {
  const h = harness();
  h.establish(0);
  h.drain();
  h.session.subscribe("room:a", 1, { info: { name: "x".repeat(1100) } }, 1);
  assert.deepEqual(h.drain(), []);
  h.session.subscribe("room:b", 2, { info: { name: "x".repeat(400) } }, 1);
  assert.equal(ofType(h.sent(h.drain()), "subscribe").length, 1);
});
