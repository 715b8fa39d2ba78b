#!/usr/bin/env node
// The conformance adapter of @ferry/client in a real browser: the client runs in a page of
// headless Chromium (Debian's chromium, driven by playwright-core) on the browser's own WebSocket
// and fetch, and this process bridges the runner's lines: each AdapterCommand line from stdin is
// handed to the page, each report the page makes is written to stdout. The page is served from
// 127.0.0.1 on another port than the runner's server, so the browser runs with web security off
// (no CORS preflight against the scripted server).
// Run: ferry-conformance client -- node clients/typescript/packages/client/adapter/browser-adapter.mjs
// Environment: FERRY_CHROMIUM (default /usr/bin/chromium); FERRY_BROWSER_HOST, the host:port
// that browser-server.mjs prints, to take a page already loaded in one shared browser instead
// of starting a browser per case (a browser's start-up, and even a page's, can take seconds on
// a busy machine): this process then only relays lines and loads no browser driver.
import { createInterface } from "node:readline";
import { connect } from "node:net";

const host = process.env.FERRY_BROWSER_HOST;
if (host) {
  // Relay: stdin to the host's page, the page's lines back (lines starting with # are its log).
  const [hostname, port] = [host.slice(0, host.lastIndexOf(":")), Number(host.slice(host.lastIndexOf(":") + 1))];
  const socket = connect({ host: hostname, port });
  socket.on("error", (error) => {
    process.stderr.write(`browser host ${host}: ${error}\n`);
    process.exit(1);
  });
  const lines = createInterface({ input: socket });
  lines.on("error", () => {});
  lines.on("line", (line) => {
    if (line.startsWith("#")) process.stderr.write(`${line.slice(1)}\n`);
    else process.stdout.write(`${line}\n`);
  });
  socket.on("close", () => process.exit(0));
  process.stdin.pipe(socket);
} else {
  const { chromium } = await import("playwright-core");
  const { launchOptions } = await import("./browser-options.mjs");
  const { openAdapterPage, startPageServer } = await import("./browser-page.mjs");
  const server = await startPageServer();
  const browser = await chromium.launch(launchOptions());
  const page = await openAdapterPage(browser, server.origin);
  page.attach(
    (line) => process.stdout.write(`${line}\n`),
    (line) => process.stderr.write(`${line}\n`),
  );
  const lines = createInterface({ input: process.stdin });
  lines.on("line", (line) => page.command(line));
  lines.on("close", async () => {
    await page.stop();
    await browser.close().catch(() => {});
    server.close();
    process.exit(0);
  });
}
