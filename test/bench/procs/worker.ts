/**
 * Benchmark process: one worker with a no-op task. For measured inputs (`m: 1`) it records trigger→start, the task
 * function's start minus the client's timestamp taken just before the trigger call (`input.t`, monotonic ms).
 * With `hold`, each call waits for `release` instead (attempts that stay RUNNING, for the scale bench).
 */
import { Taskjet, type Worker } from "@taskjet/sdk";
import { serve, watchConnection } from "../lib/child.js";
import { nowMs } from "../lib/clock.js";
import { type Flow, flowOptions } from "../lib/flow.js";

let tj: Taskjet | undefined;
let worker: Worker | undefined;
let calls = 0;
let startLatency: number[] = []; // pairs: index, ms
/** Monotonic ms of the first and last task function start since `reset`. */
let firstCallAt: number | undefined;
let lastCallAt: number | undefined;
/** With `hold`: what every call waits on; `release` opens it for good (calls after it do not wait). */
let gate: { promise: Promise<void>; open: () => void } | undefined;

function closedGate(): { promise: Promise<void>; open: () => void } {
  let open: () => void = () => undefined;
  const promise = new Promise<void>((r) => {
    open = r;
  });
  return { promise, open };
}

serve({
  async start(args) {
    gate = args.hold ? closedGate() : undefined;
    tj = await Taskjet.connect({ servers: String(args.url), namespace: String(args.ns), name: "bench-worker" });
    watchConnection(tj.connection.nc, Boolean(args.countOps));
    const task = tj.task({
      name: String(args.task),
      // The worker's declaration is what registers the flow options with the engine (TJ_DEFS).
      ...flowOptions(args.flow as Flow, Number(args.slots)),
      ...(args.executionTimeout ? { executionTimeout: String(args.executionTimeout) } : {}),
      fn: async (input: { i: number; m: number; t: number }) => {
        const started = nowMs();
        calls++;
        firstCallAt ??= started;
        lastCallAt = started;
        if (input.m === 1) startLatency.push(input.i, started - input.t);
        if (gate) await gate.promise;
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
    firstCallAt = undefined;
    lastCallAt = undefined;
    return true;
  },
  samples() {
    return { calls, startLatency, firstCallAt, lastCallAt, running: worker?.runningCount ?? 0 };
  },
  /** Lets every held call return. */
  release() {
    gate?.open();
    return true;
  },
  async stop() {
    await tj?.close();
    return true;
  },
});
