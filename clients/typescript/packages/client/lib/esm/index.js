// @ferry/client: a ferry.v1 client for browsers and Node. FerryClient is the shell most
// applications use; ClientSession is its sans-IO core, for tests and other shells.
export { CallError, FerryClient, PublishError } from "./client.js";
export { ClientSession, DEFAULT_CONFIG, utf8Length } from "./session.js";
export { Backoff, DEFAULT_RECONNECT, delayBounds, delayMs } from "./backoff.js";
export { PositionTracker, classify } from "./position.js";
export { MemberList, compareUtf8 } from "./presence.js";
