export type * from "./types.js";
export * from "./guards.js";
export * from "./constants.js";
export * from "./endpoints.js";
