/**
 * Benchmark process: one worker with a no-op task. For measured inputs (`m: 1`) it records trigger→start, the task
 * function's start minus the client's timestamp taken just before the trigger call (`input.t`, monotonic ms).
 */
import { Taskjet, type Worker } from "@taskjet/sdk";
import { serve, watchConnection } from "../lib/child.js";
import { nowMs } from "../lib/clock.js";
import { type Flow, flowOptions } from "../lib/flow.js";

let tj: Taskjet | undefined;
let worker: Worker | undefined;
let calls = 0;
let startLatency: number[] = []; // pairs: index, ms

serve({
  async start(args) {
    tj = await Taskjet.connect({ servers: String(args.url), namespace: String(args.ns), name: "bench-worker" });
    watchConnection(tj.connection.nc, Boolean(args.countOps));
    const task = tj.task({
      name: String(args.task),
      // The worker's declaration is what registers the flow options with the engine (TJ_DEFS).
      ...flowOptions(args.flow as Flow, Number(args.slots)),
      fn: async (input: { i: number; m: number; t: number }) => {
        const started = nowMs();
        calls++;
        if (input.m === 1) startLatency.push(input.i, started - input.t);
        return {};
      },
    });
    worker = await tj.worker("bench", { workflows: [task], slots: Number(args.slots) });
    await worker.start();
    return worker.id;
  },
  reset() {
    calls = 0;
    startLatency = [];
    return true;
  },
  samples() {
    return { calls, startLatency };
  },
  async stop() {
    await tj?.close();
    return true;
  },
});
