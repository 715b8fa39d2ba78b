// The dashboard is served by Vite with ferry-server behind the same origin: /v1 (the ticket
// endpoint, history and the WebSocket) is proxied to FERRY_SERVER_URL, so the page needs no CORS.
import { fileURLToPath } from "node:url";
import { defineConfig, searchForWorkspaceRoot } from "vite";

const target = process.env["FERRY_SERVER_URL"] ?? "http://127.0.0.1:7400";
const proxy = { "/v1": { target, ws: true } };
// The generated packages (@ferry/protocol, @ferry-app/example-app) are linked from generated/.
const generated = fileURLToPath(new URL("../../../../generated", import.meta.url));

export default defineConfig({
  esbuild: { jsx: "automatic" },
  server: { host: "127.0.0.1", port: 5173, proxy, fs: { allow: [searchForWorkspaceRoot(process.cwd()), generated] } },
  preview: { host: "127.0.0.1", port: 4173, proxy },
});
