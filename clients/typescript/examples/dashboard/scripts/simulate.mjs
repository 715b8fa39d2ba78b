// A simulated task runner: the backend side of the demo. It publishes TaskProgress events for a
// few tasks to project:alpha:tasks through ferry-server's POST /v1/publish, each with its own
// idempotency key, until stopped.

const tasks = [
  { task_id: "T-1", title: "Index the repository", assignee: "agent-7" },
  { task_id: "T-2", title: "Run the test suite", assignee: "agent-3" },
  { task_id: "T-3", title: "Write the release notes", assignee: null },
  { task_id: "T-4", title: "Review the migration", assignee: "ana" },
];

/** Publishes one TaskProgress; resolves to the server's answer. */
export async function publishTask({ url, token, channel = "project:alpha:tasks", key, payload }) {
  const response = await fetch(new URL("/v1/publish", url), {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ channel, idempotency_key: key, payload }),
  });
  if (!response.ok) throw new Error(`publish answered ${response.status}: ${await response.text()}`);
  return response.json();
}

/** Moves the tasks along every `everyMs` until the returned stop is called. */
export function simulate({ url, token, everyMs = 800, log = () => {} }) {
  const progress = new Map(tasks.map((t) => [t.task_id, 0]));
  let step = 0;
  const tick = async () => {
    const task = tasks[step % tasks.length];
    step += 1;
    const done = Math.min(1, (progress.get(task.task_id) ?? 0) + 0.1 + Math.random() * 0.2);
    progress.set(task.task_id, done >= 1 ? 0 : done);
    const payload = { ...task, status: done >= 1 ? "succeeded" : "running", progress: Math.round(done * 100) / 100 };
    try {
      await publishTask({ url, token, key: `sim-${Date.now()}-${step}`, payload });
    } catch (error) {
      log(`simulator: ${error.message}`);
    }
  };
  const timer = setInterval(tick, everyMs);
  return () => clearInterval(timer);
}
