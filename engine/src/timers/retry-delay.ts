import type { RetryPolicy } from "@taskjet/schemas";

/** Delay before a retry when the task has no backoff. */
export const FIXED_RETRY_DELAY_MS = 100;

/**
 * Milliseconds before retry number `retry` (1 for the first retry): min(maxSeconds, factor^retry) seconds, spread by
 * ±50 % (still capped) with jitter; a short fixed delay without backoff.
 */
export function retryDelayMs(policy: RetryPolicy, retry: number, random: () => number = Math.random): number {
  const { backoff } = policy;
  if (!backoff) return FIXED_RETRY_DELAY_MS;
  const capMs = backoff.maxSeconds * 1000;
  const base = Math.min(capMs, backoff.factor ** retry * 1000);
  return Math.round(backoff.jitter ? Math.min(capMs, base * (0.5 + random())) : base);
}
