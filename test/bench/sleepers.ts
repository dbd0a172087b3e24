/**
 * Durable sleepers: `--n` durable runs that each sleep `--sleep` ms on a worker with only `--durable-slots` durable
 * slots. A sleeping run holds no slot, so all of them sleep at once and wake together. One process (engine, worker and
 * client share it), its own nats-server.
 *
 *   node --max-semi-space-size=32 --import tsx bench/sleepers.ts [--n 10000] [--sleep 5000] [--durable-slots 10]
 */
import { parseArgs } from "node:util";
import { createEngine } from "@taskjet/engine";
import { Taskjet } from "@taskjet/sdk";
import { startNatsServer } from "../harness/nats-server.js";

const { values: opt } = parseArgs({
  options: {
    n: { type: "string", default: "10000" },
    sleep: { type: "string", default: "5000" },
    "durable-slots": { type: "string", default: "10" },
  },
  strict: true,
});
const N = Number(opt.n);
const SLEEP = Number(opt.sleep);
const server = await startNatsServer();
try {
  const engine = createEngine({ servers: [server.url], namespaces: ["bench"], logLevel: "warn", http: "off" });
  await engine.start();
  const tj = await Taskjet.connect({ servers: server.url, namespace: "bench" });
  let asleep = 0;
  let maxRunning = 0;
  const nap = tj.durableTask({
    name: "nap",
    executionTimeout: "10m",
    fn: async (_input: { i: number }, ctx) => {
      asleep++;
      await ctx.sleepFor(SLEEP);
      return {};
    },
  });
  const worker = await tj.worker("sleepers", {
    workflows: [nap],
    slots: 1,
    durableSlots: Number(opt["durable-slots"]),
    handleSignals: false,
  });
  await worker.start();
  const watch = setInterval(() => {
    maxRunning = Math.max(maxRunning, worker.runningCount);
  }, 10);
  const t0 = performance.now();
  const refs = [];
  for (let i = 0; i < N; i += 5000) {
    refs.push(...(await nap.runNoWait(Array.from({ length: Math.min(5000, N - i) }, (_, k) => ({ i: i + k })))));
  }
  const triggered = performance.now() - t0;
  while (asleep < N) await new Promise((r) => setTimeout(r, 50));
  const allAsleep = performance.now() - t0;
  await Promise.all(refs.map((r) => r.result({ timeoutMs: 600_000 })));
  const done = performance.now() - t0;
  clearInterval(watch);
  process.stdout.write(
    `${N} durable runs, ${opt["durable-slots"]} durable slots: triggered in ${(triggered / 1000).toFixed(1)} s, ` +
      `all asleep after ${(allAsleep / 1000).toFixed(1)} s, all done after ${(done / 1000).toFixed(1)} s ` +
      `(sleep ${SLEEP} ms); at most ${maxRunning} running at once\n`,
  );
  await tj.close();
  await engine.stop();
} finally {
  await server.stop();
}
