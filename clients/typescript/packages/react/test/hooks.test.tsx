// The hooks under React Testing Library in jsdom, over FerryClient on an in-process socket.
import "./support/dom.js";
import { test } from "node:test";
import assert from "node:assert/strict";
import { StrictMode, useState } from "react";
import { act, render, screen, waitFor } from "@testing-library/react";
import { FerryProvider, useChannel, useChannelState, useConnectionState, usePresence, usePublish, type IncompleteCause } from "../src/index.js";
import { FakeSocket, event, fakeClient, fakeOptions, welcome } from "./support/fake.js";

interface Task {
  readonly task_id: string;
  readonly progress: number;
}

/** Waits for the client's socket, opens it and sends the welcome. */
async function serve(from = FakeSocket.all.length): Promise<FakeSocket> {
  await waitFor(() => assert.ok(FakeSocket.all.length > from), { timeout: 5000 });
  const socket = FakeSocket.all[from];
  assert.ok(socket !== undefined);
  act(() => {
    socket.onopen?.({});
    socket.receive(welcome);
  });
  return socket;
}

/** Answers every subscribe the socket has sent and not had answered. */
function answerSubscribes(socket: FakeSocket, answered: Set<unknown> = new Set()): void {
  for (const frame of socket.frames("subscribe")) {
    if (answered.has(frame["id"])) continue;
    answered.add(frame["id"]);
    act(() => socket.receive({ type: "subscribed", id: frame["id"], channel: frame["channel"], position: { epoch: "e", seq: 0 } }));
  }
}

test("under StrictMode, one socket, one ticket, one subscribe frame, and each event delivered once", async () => {
  const { client, tickets } = fakeClient();
  const before = FakeSocket.all.length;
  const seen: Task[] = [];
  let renders = 0;
  function Tasks() {
    renders += 1;
    useChannel<Task>("project:alpha:tasks", (task) => seen.push(task));
    return <p>tasks</p>;
  }
  let show: () => void = () => {};
  function App() {
    const [shown, setShown] = useState(false);
    show = () => setShown(true);
    return <FerryProvider client={client}>{shown ? <Tasks /> : null}</FerryProvider>;
  }
  const view = render(
    <StrictMode>
      <App />
    </StrictMode>,
  );
  const socket = await serve(before);
  // Mounted while the session is active, so StrictMode's mount, unmount, mount would send
  // subscribe, unsubscribe, subscribe without the delayed release.
  act(() => show());
  await screen.findByText("tasks");
  assert.equal(FakeSocket.all.length - before, 1, "one socket");
  assert.equal(tickets(), 1, "one ticket");
  assert.equal(socket.frames("subscribe").length, 1, "one subscribe frame");
  assert.equal(socket.frames("unsubscribe").length, 0, "no unsubscribe after StrictMode's remount");
  answerSubscribes(socket);
  const rendersBefore = renders;
  act(() => {
    socket.receive(event("project:alpha:tasks", 1, { task_id: "T-1", progress: 0.5 }));
    socket.receive(event("project:alpha:tasks", 2, { task_id: "T-1", progress: 1 }));
    socket.receive(event("project:alpha:tasks", 2, { task_id: "T-1", progress: 1 }));
  });
  assert.deepEqual(seen, [
    { task_id: "T-1", progress: 0.5 },
    { task_id: "T-1", progress: 1 },
  ]);
  assert.equal(renders, rendersBefore, "no re-render per message");
  view.unmount();
  client.close();
});

test("a new handler on every render is used at once, without a re-subscribe", async () => {
  const { client } = fakeClient();
  const before = FakeSocket.all.length;
  const seen: string[] = [];
  let bump: () => void = () => {};
  function Tasks() {
    const [label, setLabel] = useState("first");
    bump = () => setLabel("second");
    useChannel<Task>("project:alpha:tasks", (task) => seen.push(`${label}:${task.task_id}`));
    return <p>{label}</p>;
  }
  const view = render(
    <FerryProvider client={client}>
      <Tasks />
    </FerryProvider>,
  );
  const socket = await serve(before);
  answerSubscribes(socket);
  act(() => socket.receive(event("project:alpha:tasks", 1, { task_id: "T-1", progress: 0 })));
  act(() => bump());
  await screen.findByText("second");
  act(() => socket.receive(event("project:alpha:tasks", 2, { task_id: "T-2", progress: 0 })));
  assert.deepEqual(seen, ["first:T-1", "second:T-2"]);
  assert.equal(socket.frames("subscribe").length, 1);
  view.unmount();
  client.close();
});

test("two components share one subscription; the last to leave unsubscribes after the delay, and a remount within it keeps it", async () => {
  const { client } = fakeClient();
  const before = FakeSocket.all.length;
  const seen: string[] = [];
  function Listener({ name }: { name: string }) {
    useChannel<Task>("project:alpha:tasks", (task) => seen.push(`${name}:${task.task_id}`));
    return null;
  }
  let setShown: (shown: readonly string[]) => void = () => {};
  function App() {
    const [shown, set] = useState<readonly string[]>(["a", "b"]);
    setShown = set;
    return (
      <FerryProvider client={client} releaseDelayMs={20}>
        {shown.map((name) => (
          <Listener key={name} name={name} />
        ))}
      </FerryProvider>
    );
  }
  const view = render(<App />);
  const socket = await serve(before);
  answerSubscribes(socket);
  assert.equal(socket.frames("subscribe").length, 1, "one subscribe for two components");
  act(() => socket.receive(event("project:alpha:tasks", 1, { task_id: "T-1", progress: 0 })));
  assert.deepEqual([...seen].sort(), ["a:T-1", "b:T-1"]);
  // A route change: both views leave and another arrives in the same commit.
  act(() => setShown(["c"]));
  act(() => socket.receive(event("project:alpha:tasks", 2, { task_id: "T-2", progress: 0 })));
  assert.deepEqual(seen.slice(2), ["c:T-2"]);
  act(() => setShown([]));
  assert.equal(socket.frames("unsubscribe").length, 0, "the release waits for its delay");
  await waitFor(() => assert.equal(socket.frames("unsubscribe").length, 1), { timeout: 5000 });
  assert.equal(socket.frames("subscribe").length, 1);
  view.unmount();
  client.close();
});

test("useConnectionState follows the client: fetching_ticket, active, backing_off after a cut", async () => {
  const { client } = fakeClient();
  const before = FakeSocket.all.length;
  function Status() {
    return <p>state: {useConnectionState().kind}</p>;
  }
  const view = render(
    <FerryProvider client={client}>
      <Status />
    </FerryProvider>,
  );
  await screen.findByText("state: fetching_ticket");
  const socket = await serve(before);
  await screen.findByText("state: active");
  act(() => socket.onclose?.({ code: 1012, reason: "restart" }));
  await screen.findByText("state: backing_off");
  view.unmount();
  client.close();
});

test("usePublish sends with the idempotency key and settles with the acknowledgement", async () => {
  const { client } = fakeClient();
  const before = FakeSocket.all.length;
  let publish: ((task: Task, options?: { idempotencyKey?: string }) => Promise<unknown>) | undefined;
  function Publisher() {
    publish = usePublish<Task>("project:alpha:tasks");
    return null;
  }
  const view = render(
    <FerryProvider client={client}>
      <Publisher />
    </FerryProvider>,
  );
  const socket = await serve(before);
  assert.ok(publish !== undefined);
  const acked = publish({ task_id: "T-1", progress: 1 }, { idempotencyKey: "k-1" });
  const [sent] = socket.frames("publish");
  assert.equal(sent?.["idempotency_key"], "k-1");
  assert.deepEqual(sent?.["payload"], { task_id: "T-1", progress: 1 });
  socket.receive({ type: "published", id: sent?.["id"], channel: "project:alpha:tasks", message_id: "m-9", position: { epoch: "e", seq: 9 }, duplicate: false });
  assert.deepEqual(await acked, { type: "published", id: sent?.["id"], channel: "project:alpha:tasks", message_id: "m-9", position: { epoch: "e", seq: 9 }, duplicate: false });
  view.unmount();
  client.close();
});

test("useChannelState re-renders with the folded state, and useChannel's onIncomplete reports a gap", async () => {
  const { client } = fakeClient();
  const before = FakeSocket.all.length;
  const gaps: IncompleteCause[] = [];
  function Progress() {
    const latest = useChannelState<Task, Task | undefined>("project:alpha:tasks", (_, task) => task, undefined);
    useChannel("project:alpha:tasks", () => {}, { onIncomplete: (cause) => gaps.push(cause) });
    return <p>progress: {latest === undefined ? "none" : latest.progress}</p>;
  }
  const view = render(
    <StrictMode>
      <FerryProvider client={client}>
        <Progress />
      </FerryProvider>
    </StrictMode>,
  );
  const socket = await serve(before);
  answerSubscribes(socket);
  await screen.findByText("progress: none");
  act(() => socket.receive(event("project:alpha:tasks", 1, { task_id: "T-1", progress: 0.25 })));
  await screen.findByText("progress: 0.25");
  act(() => socket.receive(event("project:alpha:tasks", 3, { task_id: "T-1", progress: 0.75 })));
  await screen.findByText("progress: 0.75");
  assert.deepEqual(gaps, [{ kind: "gap", expected: 2, got: 3 }]);
  assert.equal(socket.frames("subscribe").length, 1);
  view.unmount();
  client.close();
});

test("a provider given options owns its client: one socket under StrictMode, closed with 1000 after it unmounts", async () => {
  const { options, tickets } = fakeOptions();
  const before = FakeSocket.all.length;
  function Status() {
    const state = useConnectionState();
    return <p>owned: {state.kind}</p>;
  }
  const view = render(
    <StrictMode>
      <FerryProvider options={options} releaseDelayMs={10}>
        <Status />
      </FerryProvider>
    </StrictMode>,
  );
  const socket = await serve(before);
  await screen.findByText("owned: active");
  assert.equal(FakeSocket.all.length - before, 1);
  assert.equal(tickets(), 1);
  assert.equal(socket.closed, undefined, "StrictMode's remount does not close the client");
  view.unmount();
  await waitFor(() => assert.deepEqual(socket.closed, [1000, "closed by the application"]), { timeout: 5000 });
});

test("a hook outside a FerryProvider throws a clear error", () => {
  function Orphan() {
    useConnectionState();
    return null;
  }
  const original = console.error;
  console.error = () => {};
  try {
    assert.throws(() => render(<Orphan />), /outside a FerryProvider/);
  } finally {
    console.error = original;
  }
});

test("a refused subscribe reaches onRefused, and a component that comes later asks again", async () => {
  const { client } = fakeClient();
  const before = FakeSocket.all.length;
  const refused: string[] = [];
  function Secret({ id }: { id: string }) {
    useChannel("project:beta:tasks", () => {}, { onRefused: (error) => refused.push(`${id}:${error.code}`) });
    return null;
  }
  let setShown: (shown: string) => void = () => {};
  function App() {
    const [shown, set] = useState("a");
    setShown = set;
    return (
      <FerryProvider client={client}>
        <Secret key={shown} id={shown} />
      </FerryProvider>
    );
  }
  const view = render(<App />);
  const socket = await serve(before);
  const [first] = socket.frames("subscribe");
  act(() => socket.receive({ type: "error", id: first?.["id"], error: { code: "forbidden", message: "no read on project:beta:tasks", retryable: false } }));
  assert.deepEqual(refused, ["a:forbidden"]);
  act(() => setShown("b"));
  assert.equal(socket.frames("subscribe").length, 2, "the later component subscribes anew");
  view.unmount();
  client.close();
});

/** A presence event of `room:a`. */
function presence(change: "join" | "leave", user: string): Record<string, unknown> {
  return { type: "presence", channel: "room:a", change, user, position: { epoch: "e", seq: 0 } };
}

test("usePresence under StrictMode: one subscribe with the info, the members once every page is read, a re-render per join or leave, shared by a later component", async () => {
  const { client } = fakeClient();
  const before = FakeSocket.all.length;
  function Room({ label }: { label: string }) {
    const { members, ready } = usePresence("room:a", { info: { name: label } });
    return (
      <p>
        {label} ready: {String(ready)} members: {members.map((m) => `${m.user}/${m.sessions}`).join(",")}
      </p>
    );
  }
  let setShown: (shown: readonly string[]) => void = () => {};
  function App() {
    const [shown, set] = useState<readonly string[]>([]);
    setShown = set;
    return (
      <FerryProvider client={client} releaseDelayMs={20}>
        {shown.map((label) => (
          <Room key={label} label={label} />
        ))}
      </FerryProvider>
    );
  }
  const view = render(
    <StrictMode>
      <App />
    </StrictMode>,
  );
  const socket = await serve(before);
  // Mounted while the session is active: StrictMode's mount, unmount, mount must not cost a second subscribe.
  act(() => setShown(["Ada"]));
  await screen.findByText("Ada ready: false members:");
  const subscribes = socket.frames("subscribe");
  assert.equal(subscribes.length, 1, "one subscribe frame");
  assert.deepEqual(subscribes[0]?.["info"], { name: "Ada" });
  assert.equal(socket.frames("unsubscribe").length, 0);
  assert.equal(socket.frames("members").length, 0, "nothing is read before the subscribed reply");
  answerSubscribes(socket);
  const [first] = socket.frames("members");
  assert.equal(socket.frames("members").length, 1, "one read");
  act(() => socket.receive({ type: "member_page", id: first?.["id"], channel: "room:a", members: [{ user: "ada", sessions: 2 }], next: "ada", position: { epoch: "e", seq: 0 } }));
  const second = socket.frames("members")[1];
  assert.equal(second?.["after"], "ada");
  // Cy joins between the pages (the second page was read before the join).
  act(() => socket.receive(presence("join", "cy")));
  await screen.findByText("Ada ready: false members:");
  act(() => socket.receive({ type: "member_page", id: second?.["id"], channel: "room:a", members: [{ user: "bob", sessions: 1 }], next: null, position: { epoch: "e", seq: 0 } }));
  await screen.findByText("Ada ready: true members: ada/2,bob/1,cy/1");
  act(() => socket.receive(presence("leave", "ada")));
  await screen.findByText("Ada ready: true members: bob/1,cy/1");
  act(() => setShown(["Ada", "Bea"]));
  await screen.findByText("Bea ready: true members: bob/1,cy/1");
  assert.equal(socket.frames("subscribe").length, 1, "the later component shares the subscription");
  assert.equal(socket.frames("members").length, 2, "and reads nothing again");
  act(() => socket.receive(presence("join", "dan")));
  await screen.findByText("Ada ready: true members: bob/1,cy/1,dan/1");
  await screen.findByText("Bea ready: true members: bob/1,cy/1,dan/1");
  act(() => setShown([]));
  assert.equal(socket.frames("unsubscribe").length, 0, "the release waits for its delay");
  await waitFor(() => assert.equal(socket.frames("unsubscribe").length, 1), { timeout: 5000 });
  view.unmount();
  client.close();
});

test("usePresence: a refused subscribe reaches onRefused and leaves it not ready", async () => {
  const { client } = fakeClient();
  const before = FakeSocket.all.length;
  const refused: string[] = [];
  function Room() {
    const { members, ready } = usePresence("room:a", { onRefused: (error) => refused.push(error.code) });
    return <p>refused ready: {String(ready)} {members.length}</p>;
  }
  const view = render(
    <FerryProvider client={client}>
      <Room />
    </FerryProvider>,
  );
  const socket = await serve(before);
  const [subscribe] = socket.frames("subscribe");
  assert.equal(subscribe?.["info"], undefined, "no info asked, none sent");
  act(() => socket.receive({ type: "error", id: subscribe?.["id"], error: { code: "bad_request", message: "room:a keeps no presence", retryable: false } }));
  assert.deepEqual(refused, ["bad_request"]);
  await screen.findByText("refused ready: false 0");
  assert.equal(socket.frames("members").length, 0);
  view.unmount();
  client.close();
});
