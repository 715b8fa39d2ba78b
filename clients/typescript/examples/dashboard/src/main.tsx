import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { FerryProvider } from "@ferry/react";
import { App } from "./App.js";

// The page and ferry-server share an origin (Vite proxies /v1), so the client's URL is the page's.
// The credential is the demo viewer token of tokens.toml unless VITE_FERRY_TOKEN names another.
const credential = import.meta.env["VITE_FERRY_TOKEN"] ?? "demo-dashboard-viewer";
// The name this tab shows in "Who's here": ?name= in the page's URL, or a default. Presence info
// is at most 512 bytes, so a long one is cut.
const name = new URLSearchParams(window.location.search).get("name")?.trim().slice(0, 64) || "anonymous";
const root = document.getElementById("root");
if (root === null) throw new Error("no #root element");

createRoot(root).render(
  <StrictMode>
    <FerryProvider options={{ url: window.location.origin, credential }}>
      <App credential={credential} name={name} />
    </FerryProvider>
  </StrictMode>,
);
