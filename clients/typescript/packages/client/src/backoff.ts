// The reconnect delay and retry count (FERRY-RECONNECT-2 to FERRY-RECONNECT-5), as
// crates/protocol's backoff module states them: retry n waits a delay drawn uniformly from
// [nominal(n) × (1 − jitter), nominal(n)] ms, nominal(n) = min(cap, base × factor^(n−1)),
// rounded down to a whole millisecond; the count resets only after a session stayed welcomed
// for reset_after_ms.

import { DEFAULTS, type ReconnectPolicy } from "@ferry/protocol";

/** The protocol's default reconnect policy, until a welcome advertises the server's. */
export const DEFAULT_RECONNECT: ReconnectPolicy = {
  base_ms: DEFAULTS.reconnectBaseMs,
  factor: DEFAULTS.reconnectFactor,
  cap_ms: DEFAULTS.reconnectCapMs,
  jitter: DEFAULTS.reconnectJitter,
  max_attempts: DEFAULTS.reconnectMaxAttempts,
  reset_after_ms: DEFAULTS.reconnectResetAfterMs,
};

function nominalMs(policy: ReconnectPolicy, retry: number): number {
  const grown = policy.base_ms * Math.pow(policy.factor, Math.max(0, retry - 1));
  return Number.isNaN(grown) ? policy.cap_ms : Math.min(grown, policy.cap_ms);
}

/** The shortest and longest delay of retry `retry` (1 for the first), in whole ms. */
export function delayBounds(policy: ReconnectPolicy, retry: number): readonly [number, number] {
  const nominal = nominalMs(policy, retry);
  return [Math.floor(nominal * (1 - policy.jitter)), Math.floor(nominal)];
}

/** The delay of retry `retry` for a uniform sample `unit` in [0, 1], in whole ms. */
export function delayMs(policy: ReconnectPolicy, retry: number, unit: number): number {
  const u = Number.isNaN(unit) ? 0 : Math.min(1, Math.max(0, unit));
  const nominal = nominalMs(policy, retry);
  const shortest = nominal * (1 - policy.jitter);
  const drawn = u >= 1 ? nominal : shortest + u * (nominal - shortest);
  return Math.min(Math.floor(nominal), Math.max(Math.floor(shortest), Math.floor(drawn)));
}

/** Counts retries in a row under a policy (FERRY-RECONNECT-4, FERRY-RECONNECT-5). */
export class Backoff {
  /** The policy in force: the default until a welcome advertises one. */
  policy: ReconnectPolicy;
  #retries = 0;
  #welcomedAt: number | undefined;

  /** A counter at zero retries under `policy`. */
  constructor(policy: ReconnectPolicy = DEFAULT_RECONNECT) {
    this.policy = policy;
  }

  /** The retries counted since the last reset. */
  get retries(): number {
    return this.#retries;
  }

  /** Counts one more retry; `undefined` when max_attempts retries are spent. */
  countRetry(): number | undefined {
    if (this.#retries >= this.policy.max_attempts) return undefined;
    this.#retries += 1;
    return this.#retries;
  }

  /** Counts a retry and draws its delay with `unit`; `undefined` when exhausted. */
  nextDelay(unit: number): number | undefined {
    const retry = this.countRetry();
    return retry === undefined ? undefined : delayMs(this.policy, retry, unit);
  }

  /** A welcome arrived at `now`. */
  onWelcome(now: number): void {
    this.#welcomedAt = now;
  }

  /** The welcomed session ended at `now`: reset the count if it lasted reset_after_ms. */
  onSessionEnd(now: number): void {
    if (this.#welcomedAt !== undefined && now - this.#welcomedAt >= this.policy.reset_after_ms) this.#retries = 0;
    this.#welcomedAt = undefined;
  }
}
