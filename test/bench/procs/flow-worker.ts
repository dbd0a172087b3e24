/** Benchmark process: one worker running the fan-out and DAG of `lib/flows.ts`; it notes when the last child ran. */
import { Taskjet, type Worker } from "@taskjet/sdk";
import { serve, watchConnection } from "../lib/child.js";
import { nowMs } from "../lib/clock.js";
import { declareFlows } from "../lib/flows.js";

let tj: Taskjet | undefined;
let worker: Worker | undefined;
let children = 0;
let lastChildAt = 0;

serve({
  async start(args) {
    tj = await Taskjet.connect({ servers: String(args.url), namespace: String(args.ns), name: "bench-flow-worker" });
    watchConnection(tj.connection.nc, false);
    const { child, parent, dag } = declareFlows(tj, () => {
      children++;
      lastChildAt = nowMs();
    });
    worker = await tj.worker("bench-flows", { workflows: [child, parent, dag], slots: Number(args.slots) });
    await worker.start();
    return worker.id;
  },
  reset() {
    children = 0;
    lastChildAt = 0;
    return true;
  },
  samples() {
    return { children, lastChildAt };
  },
  async stop() {
    await tj?.close();
    return true;
  },
});
