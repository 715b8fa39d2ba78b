// Validates every AsyncAPI document given on the command line with @asyncapi/parser (its
// Spectral rulesets included) and fails on any diagnostic: zero errors and zero warnings.
// Usage: node validate.mjs FILE...
import { readFile } from "node:fs/promises";
import { Parser } from "@asyncapi/parser";

const severities = ["error", "warning", "info", "hint"];
const parser = new Parser();
let failed = false;
const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node validate.mjs FILE...");
  process.exit(2);
}
for (const file of files) {
  const source = await readFile(file, "utf8");
  const { document, diagnostics } = await parser.parse(source, { source: file });
  const serious = diagnostics.filter((d) => d.severity <= 1);
  for (const d of diagnostics) {
    const at = d.path && d.path.length ? d.path.join(".") : "(document)";
    console.log(`${file}: ${severities[d.severity] ?? d.severity} ${d.code}: ${d.message} at ${at}`);
  }
  if (document === undefined || serious.length > 0) {
    failed = true;
    console.log(`${file}: FAILED (${serious.length} error(s) or warning(s))`);
  } else {
    const ops = document.operations().length;
    const msgs = document.allMessages().length;
    console.log(`${file}: valid AsyncAPI ${document.version()}, ${ops} operations, ${msgs} messages`);
  }
}
process.exit(failed ? 1 : 0);
