/**
 * `--flow`: flow-control options the benchmark's task declares, to measure what evaluating them costs. Every limit
 * is set far from binding (no run ever waits on one), so a difference from `none` is the scheduler's bookkeeping,
 * not throttling.
 */
import type { TaskOptions } from "@taskjet/sdk";

export const FLOWS = ["none", "concurrency", "ratelimit", "both"] as const;
export type Flow = (typeof FLOWS)[number];

/** Distinct values of `input.k` (`benchInput`): several groups, so the round robin has groups to turn over. */
export const FLOW_KEYS = 10;
/** The static rate limit's key and limit: ~300x the throughput one machine reaches. */
export const RATE_KEY = "bench";
export const RATE_LIMIT = 1_000_000;

export function isFlow(x: string): x is Flow {
  return (FLOWS as readonly string[]).includes(x);
}

export const usesConcurrency = (flow: Flow) => flow === "concurrency" || flow === "both";
export const usesRateLimit = (flow: Flow) => flow === "ratelimit" || flow === "both";

/** The task's flow options: one concurrency rule, one static rate limit, both or neither. */
export function flowOptions(flow: Flow, slots: number): Pick<TaskOptions<never, never>, "concurrency" | "rateLimits"> {
  return {
    // Per key at most `slots`: the worker never holds more than that in all keys together.
    ...(usesConcurrency(flow) ? { concurrency: { expression: "input.k", maxRuns: slots } } : {}),
    ...(usesRateLimit(flow) ? { rateLimits: [{ staticKey: RATE_KEY, units: 1 }] } : {}),
  };
}
