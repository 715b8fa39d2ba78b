#!/usr/bin/env node
// Starts one headless chromium for many browser-adapter runs and prints its endpoint on the first
// line of stdout (pass it as FERRY_BROWSER_ENDPOINT); the browser closes when this process ends.
import { chromium } from "playwright-core";
import { launchOptions } from "./browser-options.mjs";

const server = await chromium.launchServer(launchOptions());
process.stdout.write(`${server.wsEndpoint()}\n`);
const stop = async () => {
  await server.close().catch(() => {});
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
process.stdin.resume();
process.stdin.on("end", stop);
