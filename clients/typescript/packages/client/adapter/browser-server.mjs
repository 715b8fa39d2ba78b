#!/usr/bin/env node
// The browser host of many browser-adapter runs: starts one headless chromium, keeps pages with
// the client already loaded (FERRY_BROWSER_POOL of them to begin with, default 2, one per case
// run at once), and listens on 127.0.0.1 for adapters. It prints its host:port on the first line
// of stdout (pass it as FERRY_BROWSER_HOST). Each adapter that connects gets a loaded page of
// its own (a new one when none is free): its lines go to the page, the page's reports come back
// one a line (its console lines prefixed with #), and when the adapter's side ends the page's
// client is closed and the page reloaded for the next adapter. The browser closes when stdin
// ends or on SIGTERM or SIGINT.
import { createServer } from "node:net";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";
import { launchOptions } from "./browser-options.mjs";
import { openAdapterPage, startPageServer } from "./browser-page.mjs";

// One case's trouble (a page that crashed, an adapter killed mid-line) must not end the others'.
process.on("uncaughtException", (error) => process.stderr.write(`browser host: ${error?.stack ?? error}\n`));
process.on("unhandledRejection", (error) => process.stderr.write(`browser host: ${error?.stack ?? error}\n`));

const poolSize = Math.max(1, Number(process.env.FERRY_BROWSER_POOL ?? 2));
const pages = await startPageServer();
const browser = await chromium.launch(launchOptions());

// Pages loaded and waiting for an adapter. Each goes back here, reloaded, when its adapter
// leaves; when none is free a new one is opened.
const idle = [];
const open = () => openAdapterPage(browser, pages.origin);
for (let i = 0; i < poolSize; i++) idle.push(open());

const server = createServer({ allowHalfOpen: true }, async (socket) => {
  const opening = idle.shift() ?? open();
  socket.on("error", () => {});
  // Lines, and the end of them, may come while the page is still loading: hold them until then.
  let page;
  let held = [];
  let ended = false;
  let finished = false;
  const finish = async () => {
    if (finished) return;
    finished = true;
    try {
      await page.stop();
      socket.end();
      await page.reload();
      idle.push(Promise.resolve(page));
    } catch (error) {
      process.stderr.write(`a page could not be reset, dropping it: ${error}\n`);
      await page.close();
    }
  };
  // The adapter's end of the lines, or of the connection (a runner may kill an adapter).
  const end = () => {
    ended = true;
    if (page !== undefined) void finish();
  };
  const lines = createInterface({ input: socket });
  lines.on("line", (line) => (page === undefined ? held.push(line) : page.command(line)));
  lines.on("error", () => {});
  lines.on("close", end);
  socket.on("close", end);
  try {
    page = await opening;
  } catch (error) {
    socket.end(`#the browser host could not open a page: ${error}\n`);
    return;
  }
  const write = (text) => {
    if (socket.writable) socket.write(text);
  };
  page.attach(
    (line) => write(`${line}\n`),
    (line) => write(`#${line.replaceAll("\n", " | ")}\n`),
  );
  for (const line of held) page.command(line);
  held = [];
  if (ended) void finish();
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
process.stdout.write(`127.0.0.1:${server.address().port}\n`);

const stop = async () => {
  server.close();
  await browser.close().catch(() => {});
  pages.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
process.stdin.resume();
process.stdin.on("end", stop);
