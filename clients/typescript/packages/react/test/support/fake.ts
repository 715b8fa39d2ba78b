// An in-process WebSocket, ticket endpoint and virtual clock for FerryClient, so the hooks can be
// driven frame by frame. (The real-socket runs are the conformance adapters' and the dashboard's.)
import type { FerryClientOptions, Timer, WebSocketLike } from "@ferry/client";
import { FerryClient } from "@ferry/client";

/** A WebSocket that records what the client sends and lets the test play the server. */
export class FakeSocket implements WebSocketLike {
  static all: FakeSocket[] = [];
  protocol = "ferry.v1";
  binaryType = "blob";
  readonly sent: string[] = [];
  closed: [number | undefined, string | undefined] | undefined;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  constructor(readonly url: string, readonly protocols: string | string[]) {
    FakeSocket.all.push(this);
  }
  send(text: string): void {
    this.sent.push(text);
  }
  close(code?: number, reason?: string): void {
    this.closed = [code, reason];
  }
  /** The server sends `message`. */
  receive(message: unknown): void {
    this.onmessage?.({ data: JSON.stringify(message) });
  }
  /** The frames sent, parsed, of one type. */
  frames(type: string): Array<Record<string, unknown>> {
    return this.sent.map((t) => JSON.parse(t) as Record<string, unknown>).filter((m) => m["type"] === type);
  }
}

/** A clock that moves only when told. */
export function virtualTimer(): Timer {
  let next = 0;
  return { now: () => 0, setTimeout: () => ++next, clearTimeout: () => {} };
}

export const welcome = {
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

/** Options of a client on FakeSocket, a ticket endpoint that counts its calls, and a virtual clock. */
export function fakeOptions(): { options: FerryClientOptions; tickets: () => number } {
  let tickets = 0;
  const fetch = (async () => {
    tickets += 1;
    return new Response(JSON.stringify({ ticket: "0123456789abcdef0123456789abcdef", expires_in_ms: 1000, user: "u" }), { status: 201 });
  }) as unknown as typeof globalThis.fetch;
  return { options: { url: "http://127.0.0.1:9/", credential: "tok", fetch, WebSocket: FakeSocket, timer: virtualTimer(), random: () => 0.5, followPlatform: false }, tickets: () => tickets };
}

/** A client on FakeSocket. */
export function fakeClient(): { client: FerryClient; tickets: () => number } {
  const { options, tickets } = fakeOptions();
  return { client: new FerryClient(options), tickets };
}

/** An event frame of `channel` at `seq`. */
export function event(channel: string, seq: number, payload: unknown): Record<string, unknown> {
  return { type: "event", channel, message_id: `m-${seq}`, position: { epoch: "e", seq }, published_at_ms: 0, payload };
}
