export { CallError, FerryClient, PublishError, type Channel, type ChannelOptions, type PresenceListener, type MethodMap, type TypedCall, type ClientEvents, type EventHandler, type FerryClientOptions, type Timer, type WebSocketFactory, type WebSocketLike } from "./client.js";
export { ClientSession, DEFAULT_CONFIG, utf8Length, type ClientConfig, type ClientEvent, type ClientState, type Frame, type IncompleteCause, type ProtocolViolation, type PublishFailure, type StopReason, type SubscribeOptions, type TicketError, type Transmit } from "./session.js";
export { Backoff, DEFAULT_RECONNECT, delayBounds, delayMs } from "./backoff.js";
export { PositionTracker, classify, type Arrival, type Resumption } from "./position.js";
export { MemberList, compareUtf8, type PageOutcome, type Sync } from "./presence.js";
export type { HoldGrant, Member, Presence, PresenceInfo } from "@ferry/protocol";
