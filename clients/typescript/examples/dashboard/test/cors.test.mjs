// CORS end to end in Debian's headless chromium (web security on) against a real ferry-server:
// a page on an allowed origin gets a ticket from the ticket endpoint (a preflighted POST with
// Authorization) and opens a session; a page on another origin is refused both.
// Needs the ferry-server binary (FERRY_SERVER_BIN, default target/debug/ferry-server) and
// chromium (FERRY_CHROMIUM, default /usr/bin/chromium).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const repo = fileURLToPath(new URL("../../../../../", import.meta.url));
const serverBin = process.env.FERRY_SERVER_BIN ?? join(repo, "target/debug/ferry-server");
const chromiumBin = process.env.FERRY_CHROMIUM ?? "/usr/bin/chromium";

/** Serves an empty page on a random loopback port; resolves to its origin. */
function page(t) {
  const server = createServer((_, response) => {
    response.writeHead(200, { "content-type": "text/html" });
    response.end("<!doctype html><title>ferry cors</title>");
  });
  t.after(() => server.close());
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(`http://127.0.0.1:${server.address().port}`)));
}

/** Runs in the page: asks for a ticket, then opens a session with it; says how far it got. */
async function ticketThenSession({ serverUrl, token }) {
  let ticket;
  try {
    const response = await fetch(`${serverUrl}/v1/tickets`, { method: "POST", headers: { authorization: `Bearer ${token}` } });
    ticket = (await response.json()).ticket;
  } catch (error) {
    return { ticket: false, why: String(error) };
  }
  const welcome = await new Promise((resolve) => {
    const socket = new WebSocket(`${serverUrl.replace("http", "ws")}/v1/ws?ticket=${ticket}`, "ferry.v1");
    socket.onmessage = (event) => {
      resolve(JSON.parse(event.data).type);
      socket.close();
    };
    socket.onclose = () => resolve(null);
  });
  return { ticket: true, welcome };
}

test("a page on an allowed origin gets a ticket and connects; a page on another origin cannot", { timeout: 60000 }, async (t) => {
  assert.ok(existsSync(serverBin), `no ferry-server at ${serverBin}`);
  assert.ok(existsSync(chromiumBin), `no chromium at ${chromiumBin}`);
  const dir = mkdtempSync(join(tmpdir(), "ferry-cors-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const token = `console-${Math.random().toString(16).slice(2)}`;
  writeFileSync(join(dir, "tokens.toml"), `[[tokens]]\ntoken = "${token}"\nuser = "console"\npermissions = [{ pattern = "project:*:tasks", read = true, write = false }]\n`);
  const [allowed, other] = [await page(t), await page(t)];

  const server = spawn(serverBin, ["--bind", "127.0.0.1:0", "--auth", "tokens", "--tokens-file", join(dir, "tokens.toml"), "--allowed-origins", allowed], { stdio: ["ignore", "ignore", "pipe"] });
  t.after(() => server.kill("SIGKILL"));
  let log = "";
  const serverUrl = await new Promise((resolve, reject) => {
    server.stderr.on("data", (chunk) => {
      log += chunk;
      const address = /listening.*?address=(\S+)/.exec(log.replace(/\x1b\[[0-9;]*m/g, ""));
      if (address) resolve(`http://${address[1]}`);
    });
    server.on("exit", (code) => reject(new Error(`ferry-server exited ${code}: ${log}`)));
  });

  const browser = await chromium.launch({ executablePath: chromiumBin, args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"] });
  t.after(() => browser.close());
  const tab = await browser.newPage();

  await tab.goto(allowed);
  assert.deepEqual(await tab.evaluate(ticketThenSession, { serverUrl, token }), { ticket: true, welcome: "welcome" });

  await tab.goto(other);
  const refused = await tab.evaluate(ticketThenSession, { serverUrl, token });
  assert.equal(refused.ticket, false, "CORS keeps the ticket from a page on another origin");
  assert.match(refused.why, /TypeError/);
  // A ticket obtained elsewhere does not open a session from that page either (FERRY-SECURITY-1).
  const { ticket } = await (await fetch(`${serverUrl}/v1/tickets`, { method: "POST", headers: { authorization: `Bearer ${token}` } })).json();
  const opened = await tab.evaluate(
    ({ serverUrl, ticket }) =>
      new Promise((resolve) => {
        const socket = new WebSocket(`${serverUrl.replace("http", "ws")}/v1/ws?ticket=${ticket}`, "ferry.v1");
        socket.onmessage = () => resolve(true);
        socket.onclose = () => resolve(false);
      }),
    { serverUrl, ticket },
  );
  assert.equal(opened, false, "the upgrade is refused for an origin outside the allowlist");
});
