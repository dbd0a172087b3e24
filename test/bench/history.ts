/**
 * Long histories: one real run of `--events` events (a durable task calling `ctx.now()` until it has written that many
 * `DurableCheckpoint`s), then, `--reps` times each: reading its whole history with `tj.runs.history` and folding it
 * with `evolve`; `tj.runs.stateAt` half-way and at the end; `tj.runs.get`. Then `--small` small runs beside it and
 * `rebuildProjection` over the namespace (engine stopped, as the command requires), in events/s. One process, its own
 * nats-server; prints a Markdown table.
 *
 *   node --max-semi-space-size=32 --import tsx bench/history.ts [--events 10000] [--small 20000] [--reps 5]
 *        [--json out.json]
 */
import { writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { parseArgs } from "node:util";
import { createEngine, rebuildProjection } from "@taskjet/engine";
import { evolve, HISTORY_WARN_EVENTS, type RunState } from "@taskjet/schemas";
import { type HistoryEntry, Taskjet } from "@taskjet/sdk";
import { pino } from "pino";
import { startNatsServer } from "../harness/nats-server.js";

const { values: opt } = parseArgs({
  options: {
    events: { type: "string", default: String(HISTORY_WARN_EVENTS) },
    small: { type: "string", default: "20000" },
    reps: { type: "string", default: "5" },
    json: { type: "string" },
  },
  strict: true,
});
const EVENTS = Number(opt.events);
const SMALL = Number(opt.small);
const REPS = Number(opt.reps);
const NS = "bench";
/** RunCreated, TaskStarted and TaskCompleted around the checkpoints. */
const FRAME = 3;

interface Stat {
  median: number;
  min: number;
  max: number;
}
function stat(xs: number[]): Stat {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
  return { median, min: s[0] as number, max: s[s.length - 1] as number };
}
async function repeat(fn: () => Promise<unknown>): Promise<Stat> {
  await fn(); // warm-up: JIT and the first consumer creation are not what a reader pays each time
  const ms: number[] = [];
  for (let i = 0; i < REPS; i++) {
    const t0 = performance.now();
    await fn();
    ms.push(performance.now() - t0);
  }
  return stat(ms);
}
const log = (line: string) => process.stderr.write(`${line}\n`);

const server = await startNatsServer();
try {
  // Warnings (the long history's among them) on stderr: stdout is the table.
  const logger = pino({ level: "warn" }, pino.destination(2));
  const engine = createEngine({ servers: [server.url], namespaces: [NS], http: "off" }, { logger });
  await engine.start();
  const tj = await Taskjet.connect({ servers: server.url, namespace: NS });
  const long = tj.durableTask({
    name: "long-history",
    executionTimeout: "30m",
    fn: async (input: { checkpoints: number }, ctx) => {
      for (let i = 0; i < input.checkpoints; i++) await ctx.now();
      return { checkpoints: input.checkpoints };
    },
  });
  const noop = tj.task({ name: "noop", fn: async () => ({}) });
  const worker = await tj.worker("history-bench", {
    workflows: [long, noop],
    slots: 100,
    durableSlots: 1,
    handleSignals: false,
  });
  await worker.start();

  let t0 = performance.now();
  const ref = await long.runNoWait({ checkpoints: EVENTS - FRAME });
  await ref.result({ timeoutMs: 30 * 60_000 });
  const writeMs = performance.now() - t0;
  const runId = ref.runId;
  log(`long run ${runId}: ${EVENTS} events written in ${(writeMs / 1000).toFixed(1)} s`);

  // (a) The whole history, read and folded as a reader does (keeping only the last state, so with an `owned` set);
  // also each half alone, and the fold that copies every list per event, as the projector's must.
  let entries: HistoryEntry[] = [];
  let folded: RunState | undefined;
  const read = await repeat(async () => {
    entries = [];
    for await (const e of tj.runs.history(runId)) entries.push(e);
  });
  const foldWith = (owned: WeakSet<object> | undefined) => async () => {
    folded = undefined;
    for (const e of entries) if (e.event) folded = evolve(folded, e.event, e.seq, owned) ?? folded;
  };
  const fold = await repeat(() => foldWith(new WeakSet())());
  const foldCopying = await repeat(foldWith(undefined));
  const readFold = await repeat(async () => {
    let state: RunState | undefined;
    const owned = new WeakSet<object>();
    for await (const e of tj.runs.history(runId)) if (e.event) state = evolve(state, e.event, e.seq, owned) ?? state;
    folded = state;
  });
  if (entries.length !== EVENTS || folded?.eventCount !== EVENTS || folded.status !== "COMPLETED") {
    throw new Error(`expected ${EVENTS} events, COMPLETED; read ${entries.length}, folded ${folded?.eventCount}`);
  }
  const lastSeq = folded.lastSeq;
  const midSeq = (entries[entries.length >> 1] as HistoryEntry).seq;
  // (b) Time travel; (c) the current state (projection plus the log's tail after it).
  const stateAtMid = await repeat(() => tj.runs.stateAt(runId, { seq: midSeq }));
  const stateAtEnd = await repeat(() => tj.runs.stateAt(runId, { seq: lastSeq }));
  const get = await repeat(() => tj.runs.get(runId));
  const stateBytes = Buffer.byteLength(JSON.stringify(folded));

  // (d) Rebuild over many runs: small no-op runs beside the long one.
  t0 = performance.now();
  for (let i = 0; i < SMALL; i += 5000) {
    const refs = await noop.runNoWait(Array.from({ length: Math.min(5000, SMALL - i) }, () => ({})));
    await Promise.all(refs.map((r) => r.result({ timeoutMs: 600_000 })));
  }
  log(`${SMALL} small runs done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  await worker.stop();
  await engine.stop();
  const rebuilds = [];
  for (let i = 0; i < REPS; i++) rebuilds.push(await rebuildProjection(tj.connection.nc, NS));
  const rebuild = rebuilds[0] as (typeof rebuilds)[number];
  const rate = stat(rebuilds.map((r) => r.eventsPerSecond));
  const foldRate = stat(rebuilds.map((r) => (r.events / r.foldMs) * 1000));
  const rebuildMs = stat(rebuilds.map((r) => r.ms));

  const ms = (s: Stat) => `${s.median.toFixed(1)} | ${s.min.toFixed(1)} | ${s.max.toFixed(1)}`;
  const perS = (s: Stat) =>
    `${Math.round(s.median).toLocaleString("en")} | ${Math.round(s.min).toLocaleString("en")} | ` +
    `${Math.round(s.max).toLocaleString("en")}`;
  const out = [
    `History of one run: ${EVENTS.toLocaleString("en")} events (${(EVENTS - FRAME).toLocaleString("en")} ` +
      `DurableCheckpoint), ${REPS} reps after a warm-up; target for read + fold: 200 ms`,
    "",
    "| measure | median | min | max |",
    "| --- | ---: | ---: | ---: |",
    `| read + fold (\`runs.history\` + \`evolve\`), ms | ${ms(readFold)} |`,
    `| read only, ms | ${ms(read)} |`,
    `| fold only, ms | ${ms(fold)} |`,
    `| fold only, copying lists per event (no \`owned\`, as the projector), ms | ${ms(foldCopying)} |`,
    `| \`runs.stateAt\` half-way (seq ${midSeq}), ms | ${ms(stateAtMid)} |`,
    `| \`runs.stateAt\` last event, ms | ${ms(stateAtEnd)} |`,
    `| \`runs.get\`, ms | ${ms(get)} |`,
    "",
    // A durable task's checkpoints travel in its projection and in each of its assignments: this must fit max_payload.
    `Its state as stored in \`TJ_RUNS\`: ${(stateBytes / 1024).toFixed(0)} KiB of JSON.`,
    "",
    `Rebuild: ${rebuild.runs.toLocaleString("en")} runs, ${rebuild.events.toLocaleString("en")} events, ` +
      `${rebuilds.length} rebuilds`,
    "",
    "| measure | median | min | max |",
    "| --- | ---: | ---: | ---: |",
    `| \`rebuildProjection\`, ms | ${ms(rebuildMs)} |`,
    `| rebuild, events/s (read + fold + write) | ${perS(rate)} |`,
    `| read + fold alone, events/s | ${perS(foldRate)} |`,
    "",
    `Load average at the end (1, 5, 15 min; ${cpus().length} cores): ${loadavg()
      .map((l) => l.toFixed(1))
      .join(", ")}`,
    "",
  ].join("\n");
  process.stdout.write(out);
  if (opt.json) {
    const measured = { writeMs, readFold, read, fold, foldCopying, stateAtMid, stateAtEnd, get, stateBytes, rebuilds };
    writeFileSync(
      opt.json,
      JSON.stringify({ events: EVENTS, small: SMALL, reps: REPS, ...measured, loadavg: loadavg() }),
    );
  }
  await tj.close();
} finally {
  await server.stop();
}
