import { setTimeout as sleep } from "node:timers/promises";
import type { Taskjet, Worker } from "@taskjet/sdk";

/** The longest `slow` sleeps, so a typo cannot park a slot for days. */
const MAX_SLOW_MS = 3_600_000;

/** Names of the example tasks, for the banner. */
export const EXAMPLE_TASKS = ["hello", "slow", "fail"] as const;

/**
 * The example worker of `taskjet dev --example`: `hello` greets, `slow` sleeps `input.ms`, `fail` always throws.
 * Declared with the SDK exactly as an application would.
 */
export async function startExampleWorker(tj: Taskjet): Promise<Worker> {
  const hello = tj.task({
    name: "hello",
    fn: async (input: { name?: string }, ctx) => {
      ctx.logger.info("saying hello", { name: input.name });
      return { greeting: `hello, ${input.name ?? "world"}!` };
    },
  });
  const slow = tj.task({
    name: "slow",
    fn: async (input: { ms?: number }, ctx) => {
      const ms = input.ms ?? 1000;
      if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 0 || ms > MAX_SLOW_MS) {
        throw new RangeError(`input.ms must be a number of milliseconds from 0 to ${MAX_SLOW_MS}, got ${String(ms)}`);
      }
      await sleep(ms, undefined, { signal: ctx.abortController.signal });
      return { sleptMs: ms };
    },
  });
  const fail = tj.task({
    name: "fail",
    fn: async (input: { message?: string }) => {
      throw new Error(input.message ?? "this task always fails");
    },
  });
  // A short grace: Ctrl-C on `taskjet dev` should not wait long for a `slow` run.
  const worker = await tj.worker("example", {
    workflows: [hello, slow, fail],
    slots: 10,
    shutdownGraceMs: 2000,
    // `taskjet dev` stops worker, engine and nats-server in order on Ctrl-C itself.
    handleSignals: false,
  });
  await worker.start();
  return worker;
}
