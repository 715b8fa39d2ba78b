#!/usr/bin/env bash
# Installs Ferry's TypeScript packages into scratch projects the way an application would, and
# proves they import: @ferry/protocol and an application package that ferry-codegen generates
# with --package-name, each by a file: dependency, in a CommonJS project (TypeScript's node16
# resolution) and in an ES module project, type-checked with tsc --strict and then run by node.
# Usage: clients/typescript/scripts/install-test.sh   (after `npm ci` in clients/typescript)
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
tsc="$root/clients/typescript/node_modules/.bin/tsc"
[ -x "$tsc" ] || { echo "install-test: run npm ci in clients/typescript first" >&2; exit 1; }
work="$(mktemp -d "${TMPDIR:-/tmp}/ferry-install.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# An application's own package, as its team would generate it from its channel schemas.
(cd "$root" && cargo run --quiet --locked -p ferry-codegen -- generate \
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
