#!/usr/bin/env node
// One command for the demo: ferry-server (the example application, the tokens of tokens.toml),
// a simulated task runner publishing progress, and the dashboard on Vite's dev server at
// http://127.0.0.1:5173. Type r and Enter to restart ferry-server (SIGINT: it drains, then a new
// one starts on the same port) and watch the board reconnect; Ctrl-C stops all three. FERRY_SERVER_BIN names a ferry-server binary;
// otherwise the repository's target/debug one is built with cargo when missing.
import { spawn, spawnSync } from "node:child_process";
import { createInterface } from "node:readline";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { createServer } from "vite";
import { simulate } from "./simulate.mjs";

const here = fileURLToPath(new URL("..", import.meta.url));
const repo = fileURLToPath(new URL("../../../../../", import.meta.url));
const serverUrl = "http://127.0.0.1:7400";
const page = "http://127.0.0.1:5173";

let bin = process.env.FERRY_SERVER_BIN ?? `${repo}target/debug/ferry-server`;
if (!process.env.FERRY_SERVER_BIN && !existsSync(bin)) {
  console.log("building ferry-server (cargo build -p ferry-server) ...");
  const built = spawnSync("cargo", ["build", "--quiet", "-p", "ferry-server"], { cwd: repo, stdio: "inherit" });
  if (built.status !== 0) process.exit(built.status ?? 1);
}
const args = ["--bind", "127.0.0.1:7400", "--auth", "tokens", "--tokens-file", `${here}tokens.toml`, "--allow-origin", `${page},http://localhost:5173`, "--drain-period-ms", "2000"];
let stopping = false;
let restart = false;
let server;
const start = () => {
  server = spawn(bin, args, { stdio: ["ignore", "inherit", "inherit"] });
  server.on("exit", (code, signal) => {
    console.log(`ferry-server exited (${signal ?? code})`);
    if (restart && !stopping) {
      restart = false;
      console.log("starting ferry-server again");
      start();
    }
  });
};
start();

for (let i = 0; i < 100; i++) {
  const up = await fetch(`${serverUrl}/v1/health`).then((r) => r.ok, () => false);
  if (up) break;
  await new Promise((resolve) => setTimeout(resolve, 100));
}
const stopSimulator = simulate({ url: serverUrl, token: "demo-task-runner", log: (line) => console.log(line) });
process.env.FERRY_SERVER_URL = serverUrl;
const vite = await createServer({ root: here, configFile: `${here}vite.config.ts`, server: { strictPort: true } });
await vite.listen();
console.log(`\n  the dashboard: ${page}\n  ferry-server:  ${serverUrl}\n  r + Enter restarts ferry-server, Ctrl-C stops everything\n`);
createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.trim() !== "r") return;
  restart = true;
  server.kill("SIGINT");
});

const stop = async () => {
  stopping = true;
  stopSimulator();
  server.kill("SIGINT");
  await vite.close();
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
// Vite's own SIGTERM handler may exit first: the server goes with this process whichever way.
process.on("exit", () => {
  stopping = true;
  server.kill("SIGINT");
});
