// End to end: the dashboard on Vite's dev server, in Debian's headless chromium, against a real
// ferry-server. It connects and shows events; the server is stopped with SIGINT (its drain: a
// goodbye and 1012 to every session) and started again on the same port; the page shows the
// cut, reconnects on its own, and every event published before and after the restart is on the
// board exactly once.
// Needs the ferry-server binary (FERRY_SERVER_BIN, default target/debug/ferry-server) and
// chromium (FERRY_CHROMIUM, default /usr/bin/chromium).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { createServer } from "vite";
import { publishTask } from "../scripts/simulate.mjs";

const here = fileURLToPath(new URL("..", import.meta.url));
const repo = fileURLToPath(new URL("../../../../../", import.meta.url));
const serverBin = process.env.FERRY_SERVER_BIN ?? join(repo, "target/debug/ferry-server");
const chromiumBin = process.env.FERRY_CHROMIUM ?? "/usr/bin/chromium";

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createNetServer();
    probe.on("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

async function until(what, check, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function startServer(port, args) {
  const child = spawn(serverBin, ["--bind", `127.0.0.1:${port}`, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stdout.on("data", (chunk) => (log += chunk));
  child.stderr.on("data", (chunk) => (log += chunk));
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  return { child, exited, log: () => log };
}

test("the dashboard connects, shows events, survives a SIGINT restart of ferry-server and loses nothing", { timeout: 120000 }, async (t) => {
  assert.ok(existsSync(serverBin), `no ferry-server at ${serverBin}: cargo build -p ferry-server`);
  assert.ok(existsSync(chromiumBin), `no chromium at ${chromiumBin}: apt-get install -y chromium`);
  const dir = mkdtempSync(join(tmpdir(), "ferry-dashboard-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const suffix = Math.random().toString(16).slice(2);
  const viewer = `viewer-${suffix}`;
  const runner = `runner-${suffix}`;
  writeFileSync(
    join(dir, "tokens.toml"),
    `[[tokens]]\ntoken = "${viewer}"\nuser = "dashboard"\npermissions = [{ pattern = "project:alpha:*", read = true, write = false }]\n\n` +
      `[[tokens]]\ntoken = "${runner}"\nuser = "task-runner"\nbackend = true\npermissions = [{ pattern = "project:alpha:*", read = true, write = true }]\n`,
  );
  const [serverPort, pagePort] = [await freePort(), await freePort()];
  const serverUrl = `http://127.0.0.1:${serverPort}`;
  const pageUrl = `http://127.0.0.1:${pagePort}`;
  const args = ["--auth", "tokens", "--tokens-file", join(dir, "tokens.toml"), "--allow-origin", pageUrl, "--drain-period-ms", "300"];
  const healthy = () => fetch(`${serverUrl}/v1/health`).then((r) => r.ok, () => false);

  let server = startServer(serverPort, args);
  t.after(() => server.child.kill("SIGKILL"));
  await until("ferry-server", healthy);

  process.env.FERRY_SERVER_URL = serverUrl;
  process.env.VITE_FERRY_TOKEN = viewer;
  const vite = await createServer({ root: here, configFile: join(here, "vite.config.ts"), logLevel: "warn", server: { port: pagePort, strictPort: true } });
  await vite.listen();
  t.after(() => vite.close());

  const browser = await chromium.launch({ executablePath: chromiumBin, args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"] });
  t.after(() => browser.close());
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(String(error)));
  await page.goto(pageUrl);
  const status = () => page.getAttribute("[data-testid=status]", "data-state");
  const counts = async () => ({ events: Number(await page.getAttribute("[data-testid=counts]", "data-events")), duplicates: Number(await page.getAttribute("[data-testid=counts]", "data-duplicates")) });
  // The page runs under StrictMode, which mounts every effect twice: still one session, one subscription.
  const gauge = async (name) => {
    const text = await fetch(`${serverUrl}/metrics`).then((r) => r.text());
    const line = text.split("\n").find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
    return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
  };
  const task = async (id) => ({ status: await page.getAttribute(`[data-testid=task-${id}]`, "data-status"), progress: Number(await page.getAttribute(`[data-testid=task-${id}]`, "data-progress")) });

  await page.waitForSelector("[data-testid=status][data-state=active]", { timeout: 60000 });
  const publish = (key, payload) => publishTask({ url: serverUrl, token: runner, key, payload });
  await publish("e2e-1", { task_id: "T-1", status: "running", progress: 0.3, assignee: "agent-7" });
  await publish("e2e-2", { task_id: "T-2", status: "queued", progress: 0, assignee: null });
  await publish("e2e-3", { task_id: "T-1", status: "running", progress: 0.6, assignee: "agent-7" });
  await page.waitForSelector("[data-testid=counts][data-events='3']", { timeout: 30000 });
  assert.deepEqual(await task("T-1"), { status: "running", progress: 0.6 });
  assert.equal(await gauge("ferry_sessions"), 1, "one session for the StrictMode page");
  assert.equal(await gauge("ferry_sessions_opened_total"), 1, "one session opened");

  // Ctrl-C: ferry-server drains (goodbye, 1012) and exits; the page shows it is no longer live.
  server.child.kill("SIGINT");
  const stopped = await server.exited;
  assert.equal(stopped.code, 0, `ferry-server's exit after SIGINT; its log:\n${server.log()}`);
  assert.match(server.log(), /drain|shut/i);
  await page.waitForSelector("[data-testid=status]:not([data-state=active])", { timeout: 30000 });
  const shown = await page.textContent("[data-testid=status]");
  assert.match(shown ?? "", /reconnecting|connecting/);

  server = startServer(serverPort, args);
  await until("ferry-server after the restart", healthy);
  await page.waitForSelector("[data-testid=status][data-state=active]", { timeout: 60000 });
  await publish("e2e-4", { task_id: "T-2", status: "running", progress: 0.5, assignee: "agent-3" });
  await publish("e2e-5", { task_id: "T-1", status: "succeeded", progress: 1, assignee: "agent-7" });
  await page.waitForSelector("[data-testid=counts][data-events='5']", { timeout: 30000 });
  assert.deepEqual(await counts(), { events: 5, duplicates: 0 });
  assert.deepEqual(await task("T-1"), { status: "succeeded", progress: 1 });
  assert.deepEqual(await task("T-2"), { status: "running", progress: 0.5 });
  // The restarted server is a new epoch: the client says its recovery was incomplete, and the
  // page says it resynced from history rather than pretending nothing happened.
  assert.match((await page.textContent("[data-testid=notice]")) ?? "", /^resynced after /);
  assert.equal(await status(), "active");
  if (process.env.FERRY_DASHBOARD_SCREENSHOT) await page.screenshot({ path: process.env.FERRY_DASHBOARD_SCREENSHOT });
  assert.deepEqual(errors, []);
});
