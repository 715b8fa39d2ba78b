export type * from "./types.js";
export * from "./guards.js";
export * from "./channels.js";
