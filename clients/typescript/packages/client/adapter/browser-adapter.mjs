#!/usr/bin/env node
// The conformance adapter of @ferry/client in a real browser: serves the built client to a
// page in headless Chromium (Debian's chromium, driven by playwright-core) and bridges the
// runner's lines: each AdapterCommand line from stdin is handed to the page, each report the
// page makes is written to stdout. The client under test runs on the browser's own WebSocket
// and fetch. The page is served from 127.0.0.1 on another port than the runner's server, so
// the browser runs with web security off (no CORS preflight against the scripted server).
// Run: ferry-conformance client -- node clients/typescript/packages/client/adapter/browser-adapter.mjs
// Environment: FERRY_CHROMIUM (default /usr/bin/chromium); FERRY_BROWSER_ENDPOINT, the
// endpoint that browser-server.mjs prints, to open a page in one shared browser instead of
// starting a browser per case (a browser's start-up can take seconds on a busy machine).
import { createServer } from "node:http";
import { createInterface } from "node:readline";
import { readFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { launchOptions } from "./browser-options.mjs";

const here = new URL(".", import.meta.url);
const clientLib = new URL("../lib/esm/", import.meta.url);
const protocolLib = new URL("../../../../../generated/typescript/lib/esm/", import.meta.url);
const validatorLib = new URL("../../validator/lib/esm/", import.meta.url);
const version = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).version;

const page_html = `<!doctype html><meta charset="utf-8"><title>@ferry/client conformance</title>
<script type="importmap">{"imports": {"@ferry/client": "/client/index.js", "@ferry/protocol": "/protocol/index.js", "@ferry/validator": "/validator/index.js"}}</script>
<script type="module">
import { FerryClient } from "@ferry/client";
import { createAdapter } from "/adapter/commands.mjs";
const adapter = createAdapter({ FerryClient, WebSocket: globalThis.WebSocket, report: (line) => globalThis.ferryReport(JSON.stringify(line)), name: "@ferry/client ${version} (" + navigator.userAgent.match(/(Headless)?Chrome\\/[0-9.]+/)[0] + ")" });
globalThis.ferryCommand = (line) => adapter.command(line);
</script>`;

const roots = { "/client/": clientLib, "/protocol/": protocolLib, "/validator/": validatorLib, "/adapter/": here };
const server = createServer(async (request, response) => {
  const path = new URL(request.url ?? "/", "http://x").pathname;
  if (path === "/") {
    response.writeHead(200, { "content-type": "text/html" }).end(page_html);
    return;
  }
  const root = Object.entries(roots).find(([prefix]) => path.startsWith(prefix));
  const file = root === undefined || path.includes("..") ? undefined : new URL(path.slice(root[0].length), root[1]);
  try {
    if (file === undefined) throw new Error("not found");
    response.writeHead(200, { "content-type": "text/javascript" }).end(await readFile(fileURLToPath(file)));
  } catch {
    response.writeHead(404).end();
  }
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const origin = `http://127.0.0.1:${server.address().port}`;

const endpoint = process.env.FERRY_BROWSER_ENDPOINT;
const browser = endpoint ? await chromium.connect(endpoint) : await chromium.launch(launchOptions());
const context = await browser.newContext();
const page = await context.newPage();
page.on("console", (message) => process.stderr.write(`page: ${message.text()}\n`));
page.on("pageerror", (error) => process.stderr.write(`page error: ${error}\n`));
// Reports leave in order: the page calls ferryReport synchronously for each.
await page.exposeFunction("ferryReport", (line) => process.stdout.write(`${line}\n`));
await page.goto(origin);
await page.waitForFunction(() => typeof globalThis.ferryCommand === "function");

let pending = Promise.resolve();
const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  pending = pending.then(() => page.evaluate((l) => globalThis.ferryCommand(l), line)).catch((error) => process.stderr.write(`command failed: ${error}\n`));
});
lines.on("close", async () => {
  await pending;
  await page.evaluate(() => globalThis.ferryCommand('{"type":"close"}')).catch(() => {});
  await context.close().catch(() => {});
  await browser.close().catch(() => {});
  server.close();
  process.exit(0);
});
