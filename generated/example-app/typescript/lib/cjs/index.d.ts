export type * from "./types.js";
export * from "./guards.js";
export * from "./channels.js";
export * from "./methods.js";
