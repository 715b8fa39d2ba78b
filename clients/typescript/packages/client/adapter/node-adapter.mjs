#!/usr/bin/env node
// The conformance adapter of @ferry/client in Node: reads the runner's AdapterCommand lines on
// stdin, drives a FerryClient, and writes AdapterReport lines on stdout (the contract is
// generated/conformance/docs/REFERENCE.md). It only acts and reports; the runner asserts.
// Run: ferry-conformance client -- node clients/typescript/packages/client/adapter/node-adapter.mjs
import { createInterface } from "node:readline";
import { readFileSync } from "node:fs";
import { FerryClient } from "@ferry/client";
import { createAdapter } from "./commands.mjs";

const version = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).version;
let WebSocketImpl = globalThis.WebSocket;
if (WebSocketImpl === undefined) ({ WebSocket: WebSocketImpl } = await import("ws"));

const adapter = createAdapter({
  FerryClient,
  WebSocket: WebSocketImpl,
  report: (line) => process.stdout.write(`${JSON.stringify(line)}\n`),
  name: `@ferry/client ${version} (node ${process.version})`,
});
const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => adapter.command(line));
lines.on("close", () => {
  adapter.close();
  process.exit(0);
});
