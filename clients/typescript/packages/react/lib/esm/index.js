// @ferry/react: React bindings of @ferry/client. FerryProvider puts one client (one socket) in
// context; useChannel, useChannelState, useConnectionState, usePublish and usePresence read it.
// Safe under StrictMode (reference-counted subscriptions with a delayed release), and no
// re-render per message unless a component asks for one.
export { DEFAULT_RELEASE_DELAY_MS, FerryProvider, useChannel, useChannelState, useConnectionState, useFerryClient, usePresence, usePublish, } from "./hooks.js";
export { ChannelRegistry, registryOf } from "./registry.js";
