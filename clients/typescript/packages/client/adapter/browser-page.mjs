// The page that runs @ferry/client in a browser for the conformance adapter, and the bridge to
// one such page: a static server for the page and the built client, and openAdapterPage, which
// opens the page in a browser context of its own, starts the adapter in it when a runner is
// attached, hands it the runner's command lines in order, and reloads it for the next runner
// (a reload is far cheaper than a new context, which is a new window with renderers of its own).
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const here = new URL(".", import.meta.url);
const clientLib = new URL("../lib/esm/", import.meta.url);
const protocolLib = new URL("../../../../../generated/typescript/lib/esm/", import.meta.url);
const validatorLib = new URL("../../validator/lib/esm/", import.meta.url);
const version = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).version;

const pageHtml = `<!doctype html><meta charset="utf-8"><title>@ferry/client conformance</title>
<script type="importmap">{"imports": {"@ferry/client": "/client/index.js", "@ferry/protocol": "/protocol/index.js", "@ferry/validator": "/validator/index.js"}}</script>
<script type="module">
import { FerryClient } from "@ferry/client";
import { createAdapter } from "/adapter/commands.mjs";
let adapter;
globalThis.ferryStart = () => {
  adapter = createAdapter({ FerryClient, WebSocket: globalThis.WebSocket, report: (line) => globalThis.ferryReport(JSON.stringify(line)), name: "@ferry/client ${version} (" + navigator.userAgent.match(/(Headless)?Chrome\\/[0-9.]+/)[0] + ")" });
};
globalThis.ferryCommand = (line) => adapter?.command(line);
</script>`;

const roots = { "/client/": clientLib, "/protocol/": protocolLib, "/validator/": validatorLib, "/adapter/": here };

/** Serves the page and the built client on 127.0.0.1 (a free port); resolves to its origin and a stop. */
export async function startPageServer() {
  const server = createServer(async (request, response) => {
    const path = new URL(request.url ?? "/", "http://x").pathname;
    if (path === "/favicon.ico") {
      response.writeHead(204).end();
      return;
    }
    if (path === "/") {
      response.writeHead(200, { "content-type": "text/html" }).end(pageHtml);
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
  return { origin: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

/**
 * Opens the adapter page of `origin` in a new context of `browser`. Returns `attach(report, log)`
 * (starts the adapter: its report lines go to `report`, the page's console to `log`),
 * `command(line)`, `stop()` (closes the client), `reload()` (ready to be attached again) and
 * `close()` (drops the context).
 */
export async function openAdapterPage(browser, origin) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const drop = () => {};
  let report = drop;
  let log = drop;
  page.on("console", (message) => log(`page: ${message.text()}`));
  page.on("pageerror", (error) => log(`page error: ${error}`));
  // A page that crashes or closes mid-case reports nothing more: say so in the case's
  // transcript and in the host's log, so that its silence is not taken for the client's.
  page.on("crash", () => {
    log("the page crashed: its client reports nothing more");
    process.stderr.write(`a page crashed (${new Date().toISOString()})\n`);
  });
  page.on("close", () => log("the page closed: its client reports nothing more"));
  // Reports leave in order: the page calls ferryReport synchronously for each.
  await page.exposeFunction("ferryReport", (line) => report(line));
  const load = async () => {
    await page.goto(origin);
    await page.waitForFunction(() => typeof globalThis.ferryStart === "function");
  };
  await load();

  // Lines reach the page in order; those that arrive while a hand-over is in flight go together
  // in the next one and are applied one after another in the same task, so commands the runner
  // sends at once (subscribe h1, subscribe h2) take effect together, as in the Node adapter.
  let queued = [];
  let pending = Promise.resolve();
  const flush = () => {
    if (queued.length === 0) return undefined;
    const batch = queued;
    queued = [];
    return page.evaluate((ls) => ls.forEach((l) => globalThis.ferryCommand(l)), batch).catch((error) => log(`command failed: ${error}`));
  };
  return {
    attach(onReport, onLog) {
      report = onReport;
      log = onLog;
      pending = page.evaluate(() => globalThis.ferryStart()).catch((error) => log(`start failed: ${error}`));
    },
    command(line) {
      queued.push(line);
      if (queued.length === 1) pending = pending.then(flush);
    },
    /** Closes the client; what the old document says afterwards is dropped. */
    async stop() {
      await pending;
      await page.evaluate(() => globalThis.ferryCommand('{"type":"close"}')).catch(() => {});
      report = drop;
      log = drop;
      queued = [];
      pending = Promise.resolve();
    },
    /** Reloads the page, ready to be attached again. */
    reload: load,
    close: () => context.close().catch(() => {}),
  };
}
