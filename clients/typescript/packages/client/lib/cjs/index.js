"use strict";
// @ferry/client: a ferry.v1 client for browsers and Node. FerryClient is the shell most
// applications use; ClientSession is its sans-IO core, for tests and other shells.
Object.defineProperty(exports, "__esModule", { value: true });
exports.compareUtf8 = exports.MemberList = exports.classify = exports.PositionTracker = exports.delayMs = exports.delayBounds = exports.DEFAULT_RECONNECT = exports.Backoff = exports.utf8Length = exports.DEFAULT_CONFIG = exports.ClientSession = exports.PublishError = exports.FerryClient = exports.CallError = void 0;
var client_js_1 = require("./client.js");
Object.defineProperty(exports, "CallError", { enumerable: true, get: function () { return client_js_1.CallError; } });
Object.defineProperty(exports, "FerryClient", { enumerable: true, get: function () { return client_js_1.FerryClient; } });
Object.defineProperty(exports, "PublishError", { enumerable: true, get: function () { return client_js_1.PublishError; } });
var session_js_1 = require("./session.js");
Object.defineProperty(exports, "ClientSession", { enumerable: true, get: function () { return session_js_1.ClientSession; } });
Object.defineProperty(exports, "DEFAULT_CONFIG", { enumerable: true, get: function () { return session_js_1.DEFAULT_CONFIG; } });
Object.defineProperty(exports, "utf8Length", { enumerable: true, get: function () { return session_js_1.utf8Length; } });
var backoff_js_1 = require("./backoff.js");
Object.defineProperty(exports, "Backoff", { enumerable: true, get: function () { return backoff_js_1.Backoff; } });
Object.defineProperty(exports, "DEFAULT_RECONNECT", { enumerable: true, get: function () { return backoff_js_1.DEFAULT_RECONNECT; } });
Object.defineProperty(exports, "delayBounds", { enumerable: true, get: function () { return backoff_js_1.delayBounds; } });
Object.defineProperty(exports, "delayMs", { enumerable: true, get: function () { return backoff_js_1.delayMs; } });
var position_js_1 = require("./position.js");
Object.defineProperty(exports, "PositionTracker", { enumerable: true, get: function () { return position_js_1.PositionTracker; } });
Object.defineProperty(exports, "classify", { enumerable: true, get: function () { return position_js_1.classify; } });
var presence_js_1 = require("./presence.js");
Object.defineProperty(exports, "MemberList", { enumerable: true, get: function () { return presence_js_1.MemberList; } });
Object.defineProperty(exports, "compareUtf8", { enumerable: true, get: function () { return presence_js_1.compareUtf8; } });
