"use strict";
// The reconnect delay and retry count (FERRY-RECONNECT-2 to FERRY-RECONNECT-5), as
// crates/protocol's backoff module states them: retry n waits a delay drawn uniformly from
// [nominal(n) × (1 − jitter), nominal(n)] ms, nominal(n) = min(cap, base × factor^(n−1)),
// rounded down to a whole millisecond; the count resets only after a session stayed welcomed
// for reset_after_ms.
Object.defineProperty(exports, "__esModule", { value: true });
exports.Backoff = exports.DEFAULT_RECONNECT = void 0;
exports.delayBounds = delayBounds;
exports.delayMs = delayMs;
const protocol_1 = require("@ferry/protocol");
/** The protocol's default reconnect policy, until a welcome advertises the server's. */
exports.DEFAULT_RECONNECT = {
    base_ms: protocol_1.DEFAULTS.reconnectBaseMs,
    factor: protocol_1.DEFAULTS.reconnectFactor,
    cap_ms: protocol_1.DEFAULTS.reconnectCapMs,
    jitter: protocol_1.DEFAULTS.reconnectJitter,
    max_attempts: protocol_1.DEFAULTS.reconnectMaxAttempts,
    reset_after_ms: protocol_1.DEFAULTS.reconnectResetAfterMs,
};
function nominalMs(policy, retry) {
    const grown = policy.base_ms * Math.pow(policy.factor, Math.max(0, retry - 1));
    return Number.isNaN(grown) ? policy.cap_ms : Math.min(grown, policy.cap_ms);
}
/** The shortest and longest delay of retry `retry` (1 for the first), in whole ms. */
function delayBounds(policy, retry) {
    const nominal = nominalMs(policy, retry);
    return [Math.floor(nominal * (1 - policy.jitter)), Math.floor(nominal)];
}
/** The delay of retry `retry` for a uniform sample `unit` in [0, 1], in whole ms. */
function delayMs(policy, retry, unit) {
    const u = Number.isNaN(unit) ? 0 : Math.min(1, Math.max(0, unit));
    const nominal = nominalMs(policy, retry);
    const shortest = nominal * (1 - policy.jitter);
    const drawn = u >= 1 ? nominal : shortest + u * (nominal - shortest);
    return Math.min(Math.floor(nominal), Math.max(Math.floor(shortest), Math.floor(drawn)));
}
/** Counts retries in a row under a policy (FERRY-RECONNECT-4, FERRY-RECONNECT-5). */
class Backoff {
    /** The policy in force: the default until a welcome advertises one. */
    policy;
    #retries = 0;
    #welcomedAt;
    /** A counter at zero retries under `policy`. */
    constructor(policy = exports.DEFAULT_RECONNECT) {
        this.policy = policy;
    }
    /** The retries counted since the last reset. */
    get retries() {
        return this.#retries;
    }
    /** Counts one more retry; `undefined` when max_attempts retries are spent. */
    countRetry() {
        if (this.#retries >= this.policy.max_attempts)
            return undefined;
        this.#retries += 1;
        return this.#retries;
    }
    /** Counts a retry and draws its delay with `unit`; `undefined` when exhausted. */
    nextDelay(unit) {
        const retry = this.countRetry();
        return retry === undefined ? undefined : delayMs(this.policy, retry, unit);
    }
    /** A welcome arrived at `now`. */
    onWelcome(now) {
        this.#welcomedAt = now;
    }
    /** The welcomed session ended at `now`: reset the count if it lasted reset_after_ms. */
    onSessionEnd(now) {
        if (this.#welcomedAt !== undefined && now - this.#welcomedAt >= this.policy.reset_after_ms)
            this.#retries = 0;
        this.#welcomedAt = undefined;
    }
}
exports.Backoff = Backoff;
