/**
 * Bulk enqueue rate: how many triggers per second `runManyNoWait` gets accepted into the log (each one a `RunCreated`
 * appended with CAS and acknowledged by JetStream). Starts its own nats-server; the engine provisions the streams and,
 * with `--engine on`, keeps running in its own process (folding every run, as in production).
 *
 *   node --max-semi-space-size=32 --import tsx bench/enqueue.ts [--n 50000] [--batch 5000] [--reps 3] [--engine off]
 *        [--out result.json]
 */
import { writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { createEngine } from "@taskjet/engine";
import { Taskjet } from "@taskjet/sdk";
import { startNatsServer } from "../harness/nats-server.js";
import { benchInput } from "./lib/clock.js";
import { Proc } from "./lib/proc.js";

const { values: opt } = parseArgs({
  options: {
    n: { type: "string", default: "50000" },
    batch: { type: "string", default: "5000" },
    reps: { type: "string", default: "3" },
    engine: { type: "string", default: "on" },
    out: { type: "string" },
  },
  strict: true,
});
const N = Number(opt.n);
const BATCH = Number(opt.batch);
const NS = "bench";

const server = await startNatsServer();
try {
  // Provision once, in this process, then stop: the measured process only triggers.
  const provisioner = createEngine({ servers: [server.url], namespaces: [NS], logLevel: "silent" });
  await provisioner.start();
  await provisioner.stop();
  let engine: Proc | undefined;
  if (opt.engine === "on") {
    engine = await Proc.start("engine", ["--max-semi-space-size=32"]);
    await engine.request("start", { url: server.url, ns: NS });
  }
  const tj = await Taskjet.connect({ servers: server.url, namespace: NS, name: "bench-enqueue" });
  const rates: number[] = [];
  for (let rep = 0; rep < Number(opt.reps); rep++) {
    const t0 = performance.now();
    for (let i = 0; i < N; i += BATCH) {
      const items = Array.from({ length: Math.min(BATCH, N - i) }, (_, k) => ({ input: benchInput(i + k, false) }));
      const refs = await tj.runManyNoWait("noop", items);
      if (refs.some((r) => r instanceof Error)) throw new Error("a trigger failed");
    }
    const seconds = (performance.now() - t0) / 1000;
    rates.push(N / seconds);
    process.stdout.write(`rep ${rep + 1}: ${N} triggers in ${seconds.toFixed(2)} s = ${Math.round(N / seconds)}/s\n`);
  }
  const median = [...rates].sort((a, b) => a - b)[Math.floor(rates.length / 2)] as number;
  process.stdout.write(`median ${Math.round(median)} triggers/s (n=${N}, batch=${BATCH}, engine ${opt.engine})\n`);
  if (opt.out) {
    const result = { n: N, batch: BATCH, engine: opt.engine, rates, median, loadavg: loadavg() };
    writeFileSync(opt.out, JSON.stringify(result));
  }
  await tj.close();
  await engine?.request("stop");
  await engine?.exit();
} finally {
  await server.stop();
}
