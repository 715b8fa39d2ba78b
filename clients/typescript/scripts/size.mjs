#!/usr/bin/env node
// The minified and gzipped size of @ferry/client beside peer clients, measured in one run the
// same way: each entry bundled by esbuild (browser platform, ES2022, minified, tree-shaken, its
// dependencies included), then gzip at level 9. The peers (centrifuge 5.8, socket.io-client 4.8,
// phoenix 1.8) are installed from npm into a temporary folder by this run.
// Usage: node scripts/size.mjs [--json]   (from clients/typescript, after npm ci)
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";

const workspace = fileURLToPath(new URL("..", import.meta.url));
const peers = { centrifuge: "5.8.0", "socket.io-client": "4.8.4", phoenix: "1.8.16" };

const dir = mkdtempSync(join(tmpdir(), "ferry-size-"));
try {
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "ferry-size", private: true }));
  execFileSync("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error", "--ignore-scripts", ...Object.entries(peers).map(([n, v]) => `${n}@${v}`)], { cwd: dir, stdio: ["ignore", "ignore", "inherit"] });

  const entries = [
    { name: "@ferry/client (FerryClient only)", code: `export { FerryClient } from "@ferry/client";`, from: workspace },
    { name: "@ferry/client (every export)", code: `export * from "@ferry/client";`, from: workspace },
    { name: "@ferry/react (every export, React excluded)", code: `export * from "@ferry/react";`, from: workspace, external: ["react"] },
    { name: `centrifuge ${peers.centrifuge}`, code: `export * from "centrifuge";`, from: dir },
    { name: `socket.io-client ${peers["socket.io-client"]}`, code: `export * from "socket.io-client";`, from: dir },
    { name: `phoenix ${peers.phoenix}`, code: `export * from "phoenix";`, from: dir },
  ];
  const rows = [];
  for (const entry of entries) {
    const result = await build({
      stdin: { contents: entry.code, resolveDir: entry.from, loader: "js" },
      bundle: true,
      minify: true,
      format: "esm",
      platform: "browser",
      target: "es2022",
      write: false,
      external: entry.external ?? [],
      logLevel: "error",
      legalComments: "none",
    });
    const bytes = result.outputFiles[0].contents;
    rows.push({ name: entry.name, minified: bytes.length, gzipped: gzipSync(bytes, { level: 9 }).length });
  }
  if (process.argv.includes("--json")) {
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
  } else {
    const kb = (n) => `${(n / 1000).toFixed(1)} KB`;
    process.stdout.write("| bundle | minified | minified + gzip |\n| --- | ---: | ---: |\n");
    for (const row of rows) process.stdout.write(`| ${row.name} | ${kb(row.minified)} | ${kb(row.gzipped)} |\n`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
