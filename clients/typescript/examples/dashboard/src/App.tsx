// The task-progress dashboard: every task of project alpha with its state and progress, live,
// the connection's state, and who else has the project open. Events, and the history read after
// a hole, are folded into the board by one reducer (a render per event, which is what a board
// wants); the status line re-renders only on a connection change, the "Who's here" panel only
// after a read of the members and when someone joins or leaves.
import { useCallback, useReducer, useState } from "react";
import { useChannel, useConnectionState, usePresence } from "@ferry/react";
import type { ClientState, Member } from "@ferry/client";
import type { ChannelPayload, TaskProgress } from "@ferry-app/example-app";

/** The project the dashboard shows. */
export const PROJECT = "alpha";
/** The channel the board shows. */
export const CHANNEL = `project:${PROJECT}:tasks`;
/** The project's approvals channel: its namespace keeps presence, so its members are the people looking at the project. */
export const APPROVALS = `project:${PROJECT}:approvals`;
type Task = ChannelPayload<typeof CHANNEL>;

interface Board {
  readonly tasks: Readonly<Record<string, { readonly task: TaskProgress; readonly seq: number }>>;
  /** Every message id delivered, to show that none came twice. */
  readonly seen: ReadonlySet<string>;
  readonly events: number;
  readonly duplicates: number;
}

const empty: Board = { tasks: {}, seen: new Set(), events: 0, duplicates: 0 };

interface Delivery {
  readonly task: Task;
  readonly messageId: string;
  readonly seq: number;
  /** From the history endpoint rather than the live feed: may repeat what was delivered. */
  readonly fromHistory: boolean;
}

function fold(board: Board, { task, messageId, seq, fromHistory }: Delivery): Board {
  if (board.seen.has(messageId)) return fromHistory ? board : { ...board, duplicates: board.duplicates + 1 };
  return { tasks: { ...board.tasks, [task.task_id]: { task, seq } }, seen: new Set(board.seen).add(messageId), events: board.events + 1, duplicates: board.duplicates };
}

function describe(state: ClientState): string {
  switch (state.kind) {
    case "active":
      return "live";
    case "idle":
    case "fetching_ticket":
    case "connecting":
    case "awaiting_welcome":
      return "connecting";
    case "backing_off":
      return `reconnecting (retry ${state.retry})`;
    case "stopped":
      return `stopped (${state.reason.kind})`;
  }
}

function ConnectionStatus() {
  const state = useConnectionState();
  return (
    <p className="status" data-testid="status" data-state={state.kind}>
      {describe(state)}
    </p>
  );
}

/** The name a member gave in its presence info, if it gave one. */
function nameOf(member: Member): string | undefined {
  const name = member.info?.["name"];
  return typeof name === "string" && name !== "" ? name : undefined;
}

/**
 * The people on the project: the members of its approvals channel, each user once however many
 * tabs it has open (a member's `sessions`), with the name its first tab gave.
 */
function WhoIsHere({ name }: { readonly name: string }) {
  const [refused, setRefused] = useState<string | undefined>(undefined);
  const { members, ready } = usePresence(APPROVALS, { info: { name }, onRefused: (error) => setRefused(error.code) });
  return (
    <section aria-labelledby="presence-heading" aria-busy={!ready && refused === undefined} data-testid="presence" data-ready={ready} data-count={members.length}>
      <h2 id="presence-heading">Who's here</h2>
      {refused !== undefined ? (
        <p data-testid="presence-refused">presence unavailable ({refused.replaceAll("_", " ")})</p>
      ) : !ready && members.length === 0 ? (
        <p role="status" data-testid="presence-loading">
          loading…
        </p>
      ) : (
        <ul aria-label="people on the project" data-testid="members">
          {members.map((member) => {
            const shown = nameOf(member);
            return (
              <li key={member.user} data-testid="member" data-user={member.user} data-sessions={member.sessions}>
                <strong>{member.user}</strong>
                {shown === undefined || shown === member.user ? null : <> ({shown})</>}
                {member.sessions > 1 ? <span data-testid="member-tabs">, {member.sessions} tabs</span> : null}
              </li>
            );
          })}
        </ul>
      )}
    </section>
  );
}

export function App({ credential, name }: { readonly credential: string; readonly name: string }) {
  const [board, deliver] = useReducer(fold, empty);
  const [notice, setNotice] = useState<string | undefined>(undefined);
  // A hole in the channel (the server restarted with a new epoch, or the resume window passed):
  // say so and fold in what history still holds.
  const refetch = useCallback(
    async (why: string) => {
      setNotice(`resynced after ${why}`);
      const response = await fetch(`/v1/history?channel=${encodeURIComponent(CHANNEL)}&limit=1000`, { headers: { authorization: `Bearer ${credential}` } });
      if (!response.ok) {
        setNotice(`resync failed: history answered ${response.status}`);
        return;
      }
      const page = (await response.json()) as { events: Array<{ message_id: string; position: { seq: number }; payload: Task }> };
      for (const event of page.events) deliver({ task: event.payload, messageId: event.message_id, seq: event.position.seq, fromHistory: true });
    },
    [credential],
  );
  useChannel<Task>(CHANNEL, (task, event) => deliver({ task, messageId: event.message_id, seq: event.position.seq, fromHistory: false }), {
    onIncomplete: (cause) => void refetch((cause.kind === "recovery" ? cause.reason : cause.kind).replaceAll("_", " ")),
  });
  const tasks = Object.values(board.tasks).sort((a, b) => a.task.task_id.localeCompare(b.task.task_id));
  return (
    <main style={{ fontFamily: "system-ui, sans-serif", maxWidth: 720, margin: "2em auto" }}>
      <h1>Project {PROJECT}: tasks</h1>
      <ConnectionStatus />
      {notice === undefined ? null : <p data-testid="notice">{notice}</p>}
      <table style={{ width: "100%", borderCollapse: "collapse" }}>
        <thead>
          <tr>
            <th align="left">task</th>
            <th align="left">status</th>
            <th align="left">progress</th>
            <th align="left">assignee</th>
          </tr>
        </thead>
        <tbody>
          {tasks.map(({ task }) => (
            <tr key={task.task_id} data-testid={`task-${task.task_id}`} data-status={task.status} data-progress={task.progress}>
              <td>{task.title ?? task.task_id}</td>
              <td>{task.status}</td>
              <td>
                <progress value={task.progress} max={1} /> {Math.round(task.progress * 100)}%
              </td>
              <td>{task.assignee ?? "unassigned"}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <p data-testid="counts" data-events={board.events} data-duplicates={board.duplicates}>
        {board.events} events received, {board.duplicates} duplicates
      </p>
      <WhoIsHere name={name} />
    </main>
  );
}
