import { type ReconnectPolicy } from "@ferry/protocol";
/** The protocol's default reconnect policy, until a welcome advertises the server's. */
export declare const DEFAULT_RECONNECT: ReconnectPolicy;
/** The shortest and longest delay of retry `retry` (1 for the first), in whole ms. */
export declare function delayBounds(policy: ReconnectPolicy, retry: number): readonly [number, number];
/** The delay of retry `retry` for a uniform sample `unit` in [0, 1], in whole ms. */
export declare function delayMs(policy: ReconnectPolicy, retry: number, unit: number): number;
/** Counts retries in a row under a policy (FERRY-RECONNECT-4, FERRY-RECONNECT-5). */
export declare class Backoff {
    #private;
    /** The policy in force: the default until a welcome advertises one. */
    policy: ReconnectPolicy;
    /** A counter at zero retries under `policy`. */
    constructor(policy?: ReconnectPolicy);
    /** The retries counted since the last reset. */
    get retries(): number;
    /** Counts one more retry; `undefined` when max_attempts retries are spent. */
    countRetry(): number | undefined;
    /** Counts a retry and draws its delay with `unit`; `undefined` when exhausted. */
    nextDelay(unit: number): number | undefined;
    /** A welcome arrived at `now`. */
    onWelcome(now: number): void;
    /** The welcomed session ended at `now`: reset the count if it lasted reset_after_ms. */
    onSessionEnd(now: number): void;
}
