/** Benchmark process: the client of `flows.ts`. Triggers fan-outs and DAG runs through the SDK and times them. */
import { Taskjet } from "@taskjet/sdk";
import { serve, watchConnection } from "../lib/child.js";
import { nowMs, percentiles } from "../lib/clock.js";
import { declareFlows } from "../lib/flows.js";
import { windowed } from "../lib/windowed.js";

let flows: ReturnType<typeof declareFlows> | undefined;
let tj: Taskjet | undefined;

function declared(): ReturnType<typeof declareFlows> {
  if (!flows) throw new Error("not connected");
  return flows;
}

serve({
  async connect(args) {
    tj = await Taskjet.connect({ servers: String(args.url), namespace: String(args.ns), name: "bench-flow-client" });
    watchConnection(tj.connection.nc, false);
    flows = declareFlows(tj);
    return true;
  },

  /** One parent spawning `children` children; its own timestamps come back as its output. */
  async fanOut(args) {
    const t0 = nowMs();
    const times = await declared().parent.run({ children: Number(args.children) });
    return { triggeredAt: t0, ...times, doneAt: nowMs() };
  },

  /** `n` DAG runs, `inflight` outstanding: runs/s from the first trigger to the last result, and each run's latency. */
  async dag(args) {
    const n = Number(args.n);
    const latency = new Float64Array(n).fill(Number.NaN);
    const t0 = nowMs();
    const errors = await windowed(n, Number(args.inflight), async (i) => {
      const t = nowMs();
      await declared().dag.run({ i });
      latency[i] = nowMs() - t;
    });
    const ms = nowMs() - t0;
    return {
      n,
      inflight: Number(args.inflight),
      ms,
      errors,
      rate: ((n - errors) / ms) * 1000,
      latency: percentiles(latency),
    };
  },

  /** `n` DAG runs one at a time, `gapMs` apart: what a single run costs when nothing queues. */
  async dagSingle(args) {
    const n = Number(args.n);
    const latency = new Float64Array(n).fill(Number.NaN);
    for (let i = 0; i < n; i++) {
      const t = nowMs();
      await declared().dag.run({ i });
      latency[i] = nowMs() - t;
      await new Promise((r) => setTimeout(r, Number(args.gapMs)));
    }
    return { n, gapMs: Number(args.gapMs), latency: percentiles(latency) };
  },

  async stop() {
    await tj?.close();
    return true;
  },
});
