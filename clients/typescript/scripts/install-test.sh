#!/usr/bin/env bash
# Installs Ferry's TypeScript packages into scratch projects the way an application would, and
# proves they import: @ferry/protocol and an application package that ferry-codegen generates
# with --package-name, each by a file: dependency, in a CommonJS project (TypeScript's node16
# resolution) and in an ES module project, type-checked with tsc --strict and then run by node;
# then a React project with @ferry/client and @ferry/react by path as well, type-checked with
# tsc --strict (its channel typed from the application package) and built with Vite.
# Usage: clients/typescript/scripts/install-test.sh   (after `npm ci` in clients/typescript)
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
tsc="$root/clients/typescript/node_modules/.bin/tsc"
[ -x "$tsc" ] || { echo "install-test: run npm ci in clients/typescript first" >&2; exit 1; }
work="$(mktemp -d "${TMPDIR:-/tmp}/ferry-install.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# An application's own package, as its team would generate it from its channel schemas.
# The test build's ferry-codegen (scripts/test runs cargo test first); a `cargo run -p` would
# compile a second copy of dependencies under other features.
(cd "$root" && cargo test --workspace --no-run --quiet --locked \
  && "${CARGO_TARGET_DIR:-target}/debug/ferry-codegen" generate \
  --schema schema/example-app --out "$work/app-gen" --package-name @acme/channels \
  --validator "file:$root/clients/typescript/packages/validator")
(cd "$work/app-gen/typescript" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
test -f "$work/app-gen/typescript/lib/cjs/index.js" || { echo "install-test: the generated package did not build on install" >&2; exit 1; }

program='
const welcome: unknown = { type: "ping", nonce: "n-1" };
const event: EventMessage | undefined = undefined;
const progress: ChannelPayload<"project:alpha:tasks"> = { task_id: "T-1", status: "running", progress: 0.5, assignee: null };
if (SUBPROTOCOL !== "ferry.v1") throw new Error("subprotocol " + SUBPROTOCOL);
if (TICKET_QUERY_PARAMETER !== "ticket") throw new Error("ticket parameter " + TICKET_QUERY_PARAMETER);
if (!isServerMessage(welcome)) throw new Error("a ping is a server message");
if (isServerMessage({ type: "event" })) throw new Error("an incomplete event is refused");
if (!isTaskProgress(progress)) throw new Error("a task progress is valid");
if (closeAction(CloseCode.TicketRejected) !== "renew_ticket") throw new Error("4401 renews the ticket");
console.log(kind, "ok", event === undefined);
'

scratch() { # scratch KIND TYPE MODULE
  local dir="$work/$1"
  mkdir -p "$dir/src"
  cat >"$dir/package.json" <<JSON
{ "name": "scratch-$1", "version": "1.0.0", "private": true, "type": "$2",
  "dependencies": { "@ferry/protocol": "file:$root/generated/typescript", "@acme/channels": "file:$work/app-gen/typescript" } }
JSON
  cat >"$dir/tsconfig.json" <<JSON
{ "compilerOptions": { "strict": true, "module": "$3", "moduleResolution": "$3", "target": "ES2022",
  "outDir": "out", "skipLibCheck": false, "types": [] }, "include": ["src"] }
JSON
  {
    echo 'import { SUBPROTOCOL, TICKET_QUERY_PARAMETER, CloseCode, closeAction, isServerMessage, type EventMessage } from "@ferry/protocol";'
    echo 'import { isTaskProgress, type ChannelPayload } from "@acme/channels";'
    echo "const kind = \"$1\";"
    echo "$program"
  } >"$dir/src/main.ts"
  (cd "$dir" && npm install --no-audit --no-fund --loglevel=error >/dev/null && "$tsc" -p tsconfig.json && node out/main.js)
}

scratch commonjs commonjs node16
scratch esm module nodenext
echo "install-test: both scratch projects installed, type-checked and ran"

# A React application. Its lib/ is committed, so the linked packages need no build on install
# (--ignore-scripts); React and its types come from npm, TypeScript and Vite from the workspace.
# @ferry/react resolves react from its own folder, so Vite is told to keep one copy (dedupe), as
# an application linking a package by path does.
react="$work/react"
mkdir -p "$react/src"
cat >"$react/package.json" <<JSON
{ "name": "scratch-react", "version": "1.0.0", "private": true, "type": "module",
  "dependencies": { "@ferry/protocol": "file:$root/generated/typescript", "@ferry/client": "file:$root/clients/typescript/packages/client",
    "@ferry/react": "file:$root/clients/typescript/packages/react", "@acme/channels": "file:$work/app-gen/typescript",
    "react": "19.2.0", "react-dom": "19.2.0" },
  "devDependencies": { "@types/react": "19.2.2", "@types/react-dom": "19.2.2" } }
JSON
cat >"$react/tsconfig.json" <<'JSON'
{ "compilerOptions": { "strict": true, "module": "ESNext", "moduleResolution": "bundler", "target": "ES2022", "jsx": "react-jsx",
  "lib": ["ES2022", "DOM"], "noEmit": true, "skipLibCheck": false, "types": [] }, "include": ["src"] }
JSON
cat >"$react/vite.config.mjs" <<'JS'
export default { esbuild: { jsx: "automatic" }, resolve: { dedupe: ["react", "react-dom"] }, logLevel: "warn" };
JS
echo '<!doctype html><html><body><div id="root"></div><script type="module" src="/src/main.tsx"></script></body></html>' >"$react/index.html"
cat >"$react/src/main.tsx" <<'TSX'
import { StrictMode, useState } from "react";
import { createRoot } from "react-dom/client";
import { FerryClient, type ClientState } from "@ferry/client";
import { FerryProvider, useChannel, useConnectionState, usePublish } from "@ferry/react";
import type { ChannelPayload } from "@acme/channels";

type Task = ChannelPayload<"project:alpha:tasks">;

function Board() {
  const state: ClientState = useConnectionState();
  const [last, setLast] = useState<Task | undefined>(undefined);
  useChannel<Task>("project:alpha:tasks", (task) => setLast(task));
  const publish = usePublish<Task>("project:alpha:tasks");
  // @ts-expect-error: a TaskProgress needs its status, progress and assignee
  const wrong = () => publish({ task_id: "T-1" });
  const publishRunning = () => void publish({ task_id: "T-1", status: "running", progress: 0.5, assignee: null });
  return <p onClick={publishRunning} onDoubleClick={() => void wrong()}>{state.kind}: {last?.progress ?? "none"}</p>;
}

const client = new FerryClient({ url: window.location.origin, credential: "token" });
const root = document.getElementById("root");
if (root === null) throw new Error("no #root");
createRoot(root).render(
  <StrictMode>
    <FerryProvider client={client}>
      <Board />
    </FerryProvider>
  </StrictMode>,
);
TSX
(cd "$react" && npm install --no-audit --no-fund --prefer-offline --ignore-scripts --loglevel=error >/dev/null \
  && "$tsc" -p tsconfig.json && "$root/clients/typescript/node_modules/.bin/vite" build >/dev/null)
test -f "$react/dist/index.html" || { echo "install-test: the React project did not build" >&2; exit 1; }
echo "install-test: the React project installed, type-checked under tsc --strict and built with Vite"
