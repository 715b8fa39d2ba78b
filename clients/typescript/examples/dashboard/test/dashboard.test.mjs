// End to end: the dashboard on Vite's dev server, in Debian's headless chromium, against a real
// ferry-server. It connects and shows events; the server is stopped with SIGINT (its drain: a
// goodbye and 1012 to every session) and started again on the same port; the page shows the
// cut, reconnects on its own, and every event published before and after the restart is on the
// board exactly once. And "Who's here": the panel is loading until its first read, two tabs of
// one user are one member with 2 tabs, a second user (a Node client) joins and leaves in both
// tabs as it happens, and with one tab closed the other, read again, shows the user with 1 tab.
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
import WebSocket from "ws";
import { FerryClient } from "@ferry/client";
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

/** The value of a gauge on ferry-server's /metrics. */
async function gaugeOf(serverUrl, name) {
  const text = await fetch(`${serverUrl}/metrics`).then((r) => r.text());
  const line = text.split("\n").find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
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
  const gauge = (name) => gaugeOf(serverUrl, name);
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

// A member's count of tabs is as of the tab's last full read of the members (on load and after
// each reconnect): a second tab of a user who is already a member joins nothing (FERRY-PRESENCE-2),
// so a tab that was open before sees no change. A page closed or reloaded sends its close frame,
// so its session leaves at once rather than after presence.leave_after_ms.
test("who's here: two tabs of one user are one member with 2 tabs, a second user joins and leaves, a closed tab leaves", { timeout: 120000 }, async (t) => {
  assert.ok(existsSync(serverBin), `no ferry-server at ${serverBin}: cargo build -p ferry-server`);
  assert.ok(existsSync(chromiumBin), `no chromium at ${chromiumBin}: apt-get install -y chromium`);
  const dir = mkdtempSync(join(tmpdir(), "ferry-dashboard-presence-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const suffix = Math.random().toString(16).slice(2);
  const viewer = `viewer-${suffix}`;
  const reviewer = `reviewer-${suffix}`;
  writeFileSync(
    join(dir, "tokens.toml"),
    `[[tokens]]\ntoken = "${viewer}"\nuser = "dashboard"\npermissions = [{ pattern = "project:alpha:*", read = true, write = false }]\n\n` +
      `[[tokens]]\ntoken = "${reviewer}"\nuser = "reviewer"\npermissions = [{ pattern = "project:alpha:*", read = true, write = false }]\n`,
  );
  const [serverPort, pagePort] = [await freePort(), await freePort()];
  const serverUrl = `http://127.0.0.1:${serverPort}`;
  const pageUrl = `http://127.0.0.1:${pagePort}`;
  const server = startServer(serverPort, ["--auth", "tokens", "--tokens-file", join(dir, "tokens.toml"), "--allow-origin", pageUrl]);
  t.after(() => server.child.kill("SIGKILL"));
  await until("ferry-server", () => fetch(`${serverUrl}/v1/health`).then((r) => r.ok, () => false));

  process.env.FERRY_SERVER_URL = serverUrl;
  process.env.VITE_FERRY_TOKEN = viewer;
  const vite = await createServer({ root: here, configFile: join(here, "vite.config.ts"), logLevel: "warn", server: { port: pagePort, strictPort: true } });
  await vite.listen();
  t.after(() => vite.close());

  const browser = await chromium.launch({ executablePath: chromiumBin, args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"] });
  t.after(() => browser.close());
  // One browser context, one token: two tabs of the same user, as a person opening the dashboard twice.
  const context = await browser.newContext();
  const errors = [];
  const open = async (beforeLoad = async () => {}) => {
    const page = await context.newPage();
    page.on("pageerror", (error) => errors.push(String(error)));
    await beforeLoad(page);
    await page.goto(`${pageUrl}/?name=Ada`);
    return page;
  };
  const wait = { timeout: 20000 };
  const ready = "[data-testid=presence][data-ready=true]";
  const member = (user) => `${ready} [data-testid=member][data-user="${user}"]`;
  /** The panel's members once it is ready, as [user, sessions, text shown]. */
  const members = (page) => page.$$eval(`${ready} [data-testid=member]`, (items) => items.map((item) => [item.dataset.user, Number(item.dataset.sessions), item.textContent]));
  const sessions = () => gaugeOf(serverUrl, "ferry_sessions");

  // The first tab says it is loading until its first full read: its ticket is held back until
  // the panel was seen loading.
  let letTicketGo;
  const ticketHeld = new Promise((resolve) => (letTicketGo = resolve));
  const first = await open((page) =>
    page.route("**/v1/tickets", async (route) => {
      await ticketHeld;
      await route.continue();
    }),
  );
  const loading = first.getByRole("status").filter({ hasText: "loading" });
  await loading.waitFor(wait);
  assert.equal(await first.getAttribute("[data-testid=presence]", "data-ready"), "false");
  letTicketGo();
  await first.waitForSelector(member("dashboard") + "[data-sessions='1']", wait);
  await loading.waitFor({ ...wait, state: "detached" });
  await first.getByRole("heading", { name: "Who's here" }).waitFor(wait);
  assert.equal(await first.getByRole("list", { name: "people on the project" }).getByRole("listitem").count(), 1);
  assert.deepEqual(await members(first), [["dashboard", 1, "dashboard (Ada)"]]);

  // A second tab of the same user: it reads the user once, with 2 tabs; the first tab still lists
  // the user once (a second tab is no join).
  const second = await open();
  await second.waitForSelector(member("dashboard") + "[data-sessions='2']", wait);
  assert.deepEqual(await members(second), [["dashboard", 2, "dashboard (Ada), 2 tabs"]]);
  assert.deepEqual((await members(first)).map(([user]) => user), ["dashboard"]);
  assert.equal(await sessions(), 2, "one session per tab under StrictMode");

  // Another user (a Node client with its own token) joins: both tabs list it, with its name, as
  // it comes; it reads the dashboard's user once, with both tabs. Closing it (a close frame) is
  // a leave, and both tabs drop it.
  const other = new FerryClient({ url: serverUrl, credential: reviewer, WebSocket, followPlatform: false });
  t.after(() => other.close());
  let seen;
  other.presence("project:alpha:approvals", (list) => (seen = list), { info: { name: "Grace" } });
  other.connect();
  for (const page of [first, second]) {
    await page.waitForSelector(member("reviewer") + "[data-sessions='1']", wait);
    assert.deepEqual((await members(page)).map(([user]) => user), ["dashboard", "reviewer"]);
    assert.equal(await page.textContent(member("reviewer")), "reviewer (Grace)");
  }
  await until("the Node client's read of the members", () => seen?.length === 2, 20000);
  assert.deepEqual(seen, [
    { user: "dashboard", sessions: 2, info: { name: "Ada" } },
    { user: "reviewer", sessions: 1, info: { name: "Grace" } },
  ]);
  other.close();
  for (const page of [first, second]) await page.waitForSelector(member("reviewer"), { ...wait, state: "detached" });
  assert.deepEqual((await members(first)).map(([user]) => user), ["dashboard"]);

  // One tab closes: its session ends, and the other tab, read again, shows the user with one tab.
  await second.close();
  await until("the closed tab's session to end", async () => (await sessions()) === 1, 20000);
  await first.reload();
  await first.waitForSelector(member("dashboard") + "[data-sessions='1']", wait);
  assert.deepEqual(await members(first), [["dashboard", 1, "dashboard (Ada)"]]);
  assert.deepEqual(errors, []);
});
