/**
 * Fan-out and a DAG end to end, through the public SDK: one nats-server (started here), the engine, ONE worker and the
 * client as separate Node processes (`procs/engine.ts`, `procs/flow-worker.ts`, `procs/flow-client.ts`), as in
 * `throughput.ts`. The tasks are `lib/flows.ts`.
 *
 *   node --max-semi-space-size=32 --import tsx bench/flows.ts [options]        (from test/)
 *
 *   --children 1000    children per fan-out (one `ctx.bulkRunChildrenNoWait`, then the parent awaits every result)
 *   --fanout-reps 3    fan-outs, one after the other
 *   --dag-n 2000       runs of the 3-step DAG (extract → transform → load)   --dag-inflight 200   outstanding at once
 *   --single 100       DAG runs one at a time, `--single-gap-ms` apart (latency when nothing queues)
 *   --single-gap-ms 50 --slots 100 (worker slots)   --warm 200 (DAG runs before measuring)
 *   --out <file>       JSON results (default bench/results/flows-<stamp>.json)
 *
 * Timestamps are `process.hrtime` (monotonic, shared by the processes); the parent reports its own as its output.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { startNatsServer } from "../harness/nats-server.js";
import type { Percentiles } from "./lib/clock.js";
import { gitState, load } from "./lib/conditions.js";
import type { FanOutTimes } from "./lib/flows.js";
import { Proc } from "./lib/proc.js";

const { values: opt } = parseArgs({
  options: {
    children: { type: "string", default: "1000" },
    "fanout-reps": { type: "string", default: "3" },
    "dag-n": { type: "string", default: "2000" },
    "dag-inflight": { type: "string", default: "200" },
    single: { type: "string", default: "100" },
    "single-gap-ms": { type: "string", default: "50" },
    slots: { type: "string", default: "100" },
    warm: { type: "string", default: "200" },
    out: { type: "string" },
  },
  strict: true,
});
const params = {
  children: Number(opt.children),
  fanOutReps: Number(opt["fanout-reps"]),
  dagN: Number(opt["dag-n"]),
  dagInflight: Number(opt["dag-inflight"]),
  single: Number(opt.single),
  singleGapMs: Number(opt["single-gap-ms"]),
  slots: Number(opt.slots),
  warm: Number(opt.warm),
};
const NS = "bench";
const NODE_FLAGS = ["--max-semi-space-size=32"];
const here = dirname(fileURLToPath(import.meta.url));
const log = (line: string) => process.stderr.write(`[flows] ${line}\n`);

/** One fan-out, in ms from the parent's start (the trigger before it), and children/s while it waited. */
function fanOutRep(
  t: FanOutTimes & { triggeredAt: number; doneAt: number },
  lastChildAt: number,
  children: number,
  loadBefore: string,
) {
  return {
    loadBefore,
    triggerToStartMs: t.started - t.triggeredAt,
    spawnMs: t.spawned - t.started,
    lastChildRanMs: lastChildAt - t.started,
    childrenDoneMs: t.childrenDone - t.started,
    parentDoneMs: t.doneAt - t.started,
    childrenPerS: (children / (t.childrenDone - t.started)) * 1000,
  };
}

async function main(): Promise<void> {
  const startedAt = new Date().toISOString();
  const env = { node: process.version, loadAtStart: load(), git: gitState(["engine", "sdk", "schemas"]) };
  const server = await startNatsServer();
  const procs: Proc[] = [];
  try {
    const engine = await Proc.start("engine", NODE_FLAGS);
    procs.push(engine);
    await engine.request("start", { url: server.url, ns: NS });
    const worker = await Proc.start("flow-worker", NODE_FLAGS);
    procs.push(worker);
    await worker.request("start", { url: server.url, ns: NS, slots: params.slots });
    const client = await Proc.start("flow-client", NODE_FLAGS);
    procs.push(client);
    await client.request("connect", { url: server.url, ns: NS });
    log(`warming up: ${params.warm} DAG runs and a fan-out of 100`);
    await client.request("dag", { n: params.warm, inflight: Math.min(params.warm, 50) });
    await client.request("fanOut", { children: 100 });

    const fanOut = [];
    for (let rep = 1; rep <= params.fanOutReps; rep++) {
      await worker.request("reset");
      const loadBefore = load();
      const times = await client.request<FanOutTimes & { triggeredAt: number; doneAt: number }>("fanOut", {
        children: params.children,
      });
      const { children, lastChildAt } = await worker.request<{ children: number; lastChildAt: number }>("samples");
      // More calls than children would be re-deliveries: worth seeing in the results, not a reason to stop.
      if (children !== params.children) log(`warning: ${params.children} children spawned, ${children} calls ran`);
      const r = { ...fanOutRep(times, lastChildAt, params.children, loadBefore), childCalls: children };
      fanOut.push(r);
      log(
        `fan-out rep ${rep}: ${params.children} children done ${r.childrenDoneMs.toFixed(0)} ms after the parent started (${r.childrenPerS.toFixed(0)}/s), parent done at ${r.parentDoneMs.toFixed(0)} ms; load ${loadBefore}`,
      );
    }

    let loadBefore = load();
    const dag = {
      loadBefore,
      ...(await client.request<{ n: number; ms: number; rate: number; errors: number; latency: Percentiles }>("dag", {
        n: params.dagN,
        inflight: params.dagInflight,
      })),
    };
    log(`DAG: ${dag.n} runs at ${dag.rate.toFixed(0)}/s, p50 ${dag.latency.p50} ms, p99 ${dag.latency.p99} ms`);
    loadBefore = load();
    const dagSingle = {
      loadBefore,
      ...(await client.request<{ n: number; latency: Percentiles }>("dagSingle", {
        n: params.single,
        gapMs: params.singleGapMs,
      })),
    };
    log(`DAG one at a time: p50 ${dagSingle.latency.p50} ms, p99 ${dagSingle.latency.p99} ms`);

    const report = { startedAt, env: { ...env, loadAtEnd: load() }, params, fanOut, dag, dagSingle };
    const out = opt.out ?? join(here, "results", `flows-${startedAt.replace(/[:.]/g, "-")}.json`);
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, JSON.stringify(report, null, 1));
    log(`wrote ${out}`);
  } finally {
    for (const p of procs.reverse()) await p.request("stop", {}, 30_000).catch((e) => log(String(e)));
    for (const p of procs) await p.exit();
    await server.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
