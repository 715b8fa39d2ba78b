"use strict";
// @ferry/react: React bindings of @ferry/client. FerryProvider puts one client (one socket) in
// context; useChannel, useChannelState, useConnectionState, usePublish and usePresence read it.
// Safe under StrictMode (reference-counted subscriptions with a delayed release), and no
// re-render per message unless a component asks for one.
Object.defineProperty(exports, "__esModule", { value: true });
exports.registryOf = exports.ChannelRegistry = exports.usePublish = exports.usePresence = exports.useFerryClient = exports.useConnectionState = exports.useChannelState = exports.useChannel = exports.FerryProvider = exports.DEFAULT_RELEASE_DELAY_MS = void 0;
var hooks_js_1 = require("./hooks.js");
Object.defineProperty(exports, "DEFAULT_RELEASE_DELAY_MS", { enumerable: true, get: function () { return hooks_js_1.DEFAULT_RELEASE_DELAY_MS; } });
Object.defineProperty(exports, "FerryProvider", { enumerable: true, get: function () { return hooks_js_1.FerryProvider; } });
Object.defineProperty(exports, "useChannel", { enumerable: true, get: function () { return hooks_js_1.useChannel; } });
Object.defineProperty(exports, "useChannelState", { enumerable: true, get: function () { return hooks_js_1.useChannelState; } });
Object.defineProperty(exports, "useConnectionState", { enumerable: true, get: function () { return hooks_js_1.useConnectionState; } });
Object.defineProperty(exports, "useFerryClient", { enumerable: true, get: function () { return hooks_js_1.useFerryClient; } });
Object.defineProperty(exports, "usePresence", { enumerable: true, get: function () { return hooks_js_1.usePresence; } });
Object.defineProperty(exports, "usePublish", { enumerable: true, get: function () { return hooks_js_1.usePublish; } });
var registry_js_1 = require("./registry.js");
Object.defineProperty(exports, "ChannelRegistry", { enumerable: true, get: function () { return registry_js_1.ChannelRegistry; } });
Object.defineProperty(exports, "registryOf", { enumerable: true, get: function () { return registry_js_1.registryOf; } });
