/**
 * Reconnect delays: exponential growth from `initialMs`, capped at `maxMs`, with jitter so that a
 * restarted sidecar is not hit by every tab at the same instant.
 */

export interface BackoffOptions {
  /** Ceiling of the first retry's delay (the actual delay is 50–100 % of it). */
  initialMs: number;
  /** No delay is ever longer than this. */
  maxMs: number;
  /** Growth of the ceiling per failed attempt. */
  factor: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 250, maxMs: 10_000, factor: 2 };

/** Delay before reconnect attempt `attempt` (0 = the first retry after a drop). */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(options.maxMs, options.initialMs * options.factor ** Math.max(0, attempt));
  // "Equal jitter": never less than half the ceiling, so delays still grow, never more than the cap.
  return Math.round(ceiling * (0.5 + random() * 0.5));
}
