/**
 * Scale (issue 10): a million queued runs, and recovery after an engine crash with a hundred thousand active ones.
 * Each phase starts its own nats-server (never the system one) and the engine, workers and client as separate Node
 * processes (`bench/procs/*.ts`) driven over IPC; memory is sampled every 500 ms (RSS from `/proc`, heap over IPC).
 *
 *   node --max-semi-space-size=32 --import tsx bench/scale.ts [--quick] [--n 1000000] [--active 100000] [--out f.json]
 *
 *   --quick            n 50,000 and active 10,000
 *   --n 1000000        queued phase: runs bulk-enqueued (`tj.runManyNoWait`, ~100-byte inputs) with no worker running
 *   --active 100000    recovery phase: active runs when the engine is killed
 *   --slots 100        slots of the worker that drains the queue      --batch 5000   runs per `runManyNoWait` call
 *   --extra 1000       running variant: runs queued while no engine runs, for the first assignment after recovery
 *   --phases queued,recovery          --variants queued,running      (recovery with QUEUED or RUNNING active runs)
 *   --heap-snapshot <dir>   write the engine's heap snapshot once the queue is full (queued phase; pauses it)
 *   --cpu-prof <dir>        CPU-profile the restarted engine from its `start()` to its first assignment
 *
 * Queued phase: the engine folds every trigger; "queued" is when its projection checkpoint reaches the namespace's
 * last history sequence (every run folded, handed to the scheduler and written to `TJ_RUNS`, `lib/projection.ts`).
 * Then one worker starts and the queue drains: drained when the worker has started N calls and none runs.
 *
 * Recovery phase: the runs are made active (QUEUED: no worker; RUNNING: a worker with `active` slots holds every call
 * until every start is in the log, then `extra` runs are queued once the engine is dead), the projection is caught up,
 * the engine is SIGKILLed, a worker with free slots registers (no engine runs meanwhile), and a new engine process
 * starts. recoveryMs = its `start()` call (connect included) until `start()` resolves (lease taken, projection loaded,
 * log tail read, scheduler rebuilt), with the CPU time it took beside it (the machine is shared); firstAssignMs =
 * `start()` call until the first task function starts on the free worker; `...FromSpawnMs` count from the spawn.
 *
 * Runs get a 24 h schedule timeout (engine `defaultScheduleTimeoutMs`): at the default 5 min, a million queued runs
 * would be cancelled before one worker could run them all. Prints Markdown and writes JSON (`--out`, default
 * `bench/results/scale-<stamp>.json`).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { type JetStreamManager, jetstreamManager } from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Buckets, Streams } from "@taskjet/schemas";
import { type NatsServer, startNatsServer } from "../harness/nats-server.js";
import type { MemSnapshot } from "./lib/child.js";
import { nowMs } from "./lib/clock.js";
import { conditions, load } from "./lib/conditions.js";
import { dirMiB, MemSampler, rssMiB } from "./lib/memory.js";
import { Proc } from "./lib/proc.js";
import { projectionLag, until } from "./lib/projection.js";

const { values: opt } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    n: { type: "string" },
    active: { type: "string" },
    slots: { type: "string", default: "100" },
    batch: { type: "string", default: "5000" },
    extra: { type: "string", default: "1000" },
    phases: { type: "string", default: "queued,recovery" },
    variants: { type: "string", default: "queued,running" },
    "heap-snapshot": { type: "string" },
    "cpu-prof": { type: "string" },
    out: { type: "string" },
  },
  strict: true,
});

const N = Number(opt.n ?? (opt.quick ? 50_000 : 1_000_000));
const ACTIVE = Number(opt.active ?? (opt.quick ? 10_000 : 100_000));
const SLOTS = Number(opt.slots);
const BATCH = Number(opt.batch);
const EXTRA = Number(opt.extra);
const PHASES = new Set(String(opt.phases).split(","));
const VARIANTS = String(opt.variants).split(",") as Variant[];
const NS = "bench";
const TASK = "noop";
const FLAGS = ["--max-semi-space-size=32"];
/** The engine can be asked for its heap after a full GC: live data, what per-run bytes are computed from. */
const ENGINE_FLAGS = [...FLAGS, "--expose-gc"];
const SCHEDULE_TIMEOUT_MS = 24 * 3600_000;
const HOUR_MS = 3600_000;
const here = dirname(fileURLToPath(import.meta.url));

type Variant = "queued" | "running";
interface Samples {
  calls: number;
  running: number;
  firstCallAt?: number;
  lastCallAt?: number;
}
interface Enqueued {
  n: number;
  errors: number;
  startedAt: number;
  endedAt: number;
}

/** One nats-server with what the phase started on it, stopped together. */
interface Stage {
  server: NatsServer;
  nc: NatsConnection;
  jsm: JetStreamManager;
  /** `TJ_RUNS`, once the first engine provisioned it. */
  runs?: KV;
  sampler: MemSampler;
  procs: Proc[];
}

async function withStage<T>(run: (s: Stage) => Promise<T>): Promise<T> {
  const server = await startNatsServer();
  const sampler = new MemSampler(500);
  sampler.track("nats", server.pid);
  const nc = await connect({ servers: server.url, name: "bench-scale", noAsyncTraces: true });
  const stage: Stage = { server, nc, jsm: await jetstreamManager(nc), sampler, procs: [] };
  try {
    return await run(stage);
  } finally {
    sampler.stop();
    for (const p of stage.procs) await p.request("stop", {}, 60_000).catch(() => undefined);
    for (const p of stage.procs) await p.exit();
    await nc.close();
    await server.stop();
  }
}

/** Starts `bench/procs/<role>.ts`, sampled as `label`. */
async function startProc(s: Stage, role: string, label: string, flags: string[]): Promise<Proc> {
  const proc = await Proc.start(role, flags);
  s.procs.push(proc);
  s.sampler.track(label, proc.pid, proc);
  return proc;
}

/** An engine process; `beforeStart` runs between the process being up and `start()` (a profiler). */
async function startEngine(s: Stage, beforeStart?: (p: Proc) => Promise<unknown>) {
  const spawnAt = nowMs();
  const proc = await startProc(s, "engine", "engine", ENGINE_FLAGS);
  await beforeStart?.(proc);
  const times = await proc.request<{ calledAt: number; startedAt: number; cpuMs: number }>("start", {
    url: s.server.url,
    ns: NS,
    scheduleTimeoutMs: SCHEDULE_TIMEOUT_MS,
  });
  // The bucket exists once an engine provisioned it.
  s.runs ??= await new Kvm(s.nc).open(Buckets.runs);
  return { proc, spawnAt, ...times };
}

async function startWorker(s: Stage, label: string, args: Record<string, unknown>): Promise<Proc> {
  const proc = await startProc(s, "worker", label, FLAGS);
  await proc.request("start", { url: s.server.url, ns: NS, task: TASK, ...args });
  return proc;
}

async function startClient(s: Stage): Promise<Proc> {
  const proc = await startProc(s, "client", "client", FLAGS);
  await proc.request("connect", { url: s.server.url, ns: NS, task: TASK });
  return proc;
}

const caughtUp = (s: Stage, timeoutMs: number) =>
  until("projection caught up", async () => (await projectionLag(s.jsm, s.runs as KV, NS)) === 0, timeoutMs);

/** Events in the history stream (one namespace per server here): a held run has two, RunCreated and TaskStarted. */
const historyMessages = async (s: Stage) => (await s.jsm.streams.info(Streams.history)).state.messages;

const samplesOf = (worker: Proc) => worker.request<Samples>("samples");

/** Until the workers have started `n` calls between them and none is running: every one reported. */
const drained = (workers: Proc[], n: number, timeoutMs: number) =>
  until(
    "drained",
    async () => {
      const all = await Promise.all(workers.map(samplesOf));
      return all.reduce((sum, w) => sum + w.calls, 0) >= n && all.every((w) => w.running === 0);
    },
    timeoutMs,
    500,
  );

const r1 = (x: number | undefined) => (x === undefined ? null : Math.round(x * 10) / 10);
const seconds = (ms: number) => Math.round(ms) / 1000;

async function queuedPhase() {
  return withStage(async (s) => {
    const engine = await startEngine(s);
    const client = await startClient(s);
    const baseline = await engine.proc.request<MemSnapshot>("mem", { gc: true });
    const loadAtEnqueue = load();
    console.error(`[scale] enqueueing ${N} runs (load ${loadAtEnqueue})`);
    const enq = await client.request<Enqueued>("enqueue", { n: N, batch: BATCH }, 4 * HOUR_MS);
    const enqueueS = (enq.endedAt - enq.startedAt) / 1000;
    console.error(`[scale] enqueued in ${enqueueS.toFixed(1)} s; waiting for the engine to fold them`);
    const queuedAt = await caughtUp(s, 2 * HOUR_MS);
    const atQueued = s.sampler.sample();
    const loadAtQueued = load();
    const live = await engine.proc.request<MemSnapshot>("mem", { gc: true }, 600_000);
    const storeMiB = dirMiB(s.server.storeDir);
    if (opt["heap-snapshot"]) {
      mkdirSync(opt["heap-snapshot"], { recursive: true });
      const file = join(opt["heap-snapshot"], `engine-queued-${N}.heapsnapshot`);
      console.error(`[scale] writing ${file}`);
      await engine.proc.request("heapSnapshot", { file }, HOUR_MS);
    }
    console.error(`[scale] ${N} queued; engine RSS ${atQueued.rssMiB.engine?.toFixed(0)} MiB; draining`);
    const loadAtDrain = load();
    const drainFrom = nowMs();
    const worker = await startWorker(s, "worker", { slots: SLOTS });
    const drainedAt = await drained([worker], N, 4 * HOUR_MS);
    const w = await samplesOf(worker);
    const engineDoneAt = await caughtUp(s, HOUR_MS);
    const drainS = (drainedAt - drainFrom) / 1000;
    return {
      n: N,
      errors: enq.errors,
      enqueueS: seconds(enqueueS * 1000),
      enqueueRate: Math.round(N / enqueueS),
      /** From the first trigger until the engine had folded, queued and written every run. */
      queuedS: seconds(queuedAt - enq.startedAt),
      engineRssBaselineMiB: r1(baseline.rssMiB),
      engineRssMaxMiB: r1(s.sampler.peak("engine")),
      engineRssMaxQueueingMiB: r1(s.sampler.peak("engine", 0, queuedAt)),
      engineRssQueuedMiB: r1(atQueued.rssMiB.engine),
      engineRssQueuedAfterGcMiB: r1(live.rssMiB),
      engineHeapQueuedMiB: r1(live.heapUsedMiB),
      /** The engine's own view once queued, after a full GC: heap reserved vs used, and memory outside the heap. */
      engineMemQueued: live,
      /** Live heap (after a full GC) per queued run, above the idle engine's. */
      engineHeapPerRunBytes: Math.round(((live.heapUsedMiB - baseline.heapUsedMiB) * 1024 * 1024) / N),
      natsRssMiB: r1(atQueued.rssMiB.nats),
      natsRssMaxMiB: r1(s.sampler.peak("nats")),
      storeMiB: r1(storeMiB),
      drainS: seconds(drainS * 1000),
      drainRate: Math.round(N / drainS),
      firstStartS: w.firstCallAt === undefined ? null : seconds(w.firstCallAt - drainFrom),
      /** After the drain, until the engine had folded the last completion. */
      engineCaughtUpS: seconds(engineDoneAt - drainFrom),
      engineRssDrainedMiB: r1(rssMiB(engine.proc.pid)),
      workerRssMaxMiB: r1(s.sampler.peak("worker")),
      storeDrainedMiB: r1(dirMiB(s.server.storeDir)),
      load: { enqueue: loadAtEnqueue, queued: loadAtQueued, drain: loadAtDrain, end: load() },
      /** Memory over the phase (seconds from the first trigger): the queue filling, the GC, the drain. */
      series: s.sampler.series(enq.startedAt, nowMs()),
    };
  });
}

/**
 * Makes `ACTIVE` runs active, kills the engine, and times a new one. QUEUED: no worker until the kill. RUNNING: a
 * worker with `ACTIVE` slots holds every call; `EXTRA` more runs are queued while no engine runs, and a second worker
 * with free slots takes them from the new engine.
 */
async function recoveryPhase(variant: Variant) {
  return withStage(async (s) => {
    const a = await startEngine(s);
    const client = await startClient(s);
    const holder =
      variant === "running"
        ? await startWorker(s, "holder", { slots: ACTIVE, hold: true, executionTimeout: "1h" })
        : undefined;
    console.error(`[scale] recovery (${variant}): enqueueing ${ACTIVE} runs (load ${load()})`);
    await client.request<Enqueued>("enqueue", { n: ACTIVE, batch: BATCH }, HOUR_MS);
    if (holder) {
      await until("all running", async () => (await samplesOf(holder)).running >= ACTIVE, HOUR_MS, 500);
      // RUNNING in the log, not only on the worker: a worker records a start some ms after it (`TaskStarted`), and
      // an attempt the log still shows queued would be placed again by the new engine.
      await until("all starts recorded", async () => (await historyMessages(s)) >= 2 * ACTIVE, HOUR_MS, 500);
    }
    await caughtUp(s, HOUR_MS);
    const engineRssBeforeKillMiB = rssMiB(a.proc.pid);
    s.sampler.untrack("engine");
    await a.proc.kill("SIGKILL");
    if (EXTRA > 0 && holder) await client.request<Enqueued>("enqueue", { n: EXTRA, batch: BATCH, offset: ACTIVE });
    const worker = await startWorker(s, "worker", { slots: SLOTS });
    const loadAtRestart = load();
    console.error(`[scale] engine killed; restarting (load ${loadAtRestart})`);
    const profiling = Boolean(opt["cpu-prof"]);
    const b = await startEngine(s, (p) =>
      profiling ? p.request("profStart", { intervalUs: 200 }) : Promise.resolve(),
    );
    const engineRssMiB = rssMiB(b.proc.pid);
    const firstAt = await until(
      "first assignment",
      async () => (await samplesOf(worker)).firstCallAt !== undefined,
      HOUR_MS,
      20,
    );
    const w = await samplesOf(worker);
    let profile: string | undefined;
    if (opt["cpu-prof"]) {
      mkdirSync(opt["cpu-prof"], { recursive: true });
      const file = join(opt["cpu-prof"], `engine-recovery-${variant}-${ACTIVE}.cpuprofile`);
      profile = await b.proc.request<string>("profStop", { file });
    }
    const firstCallAt = w.firstCallAt ?? firstAt;
    // Everything recovered still runs to the end on the new engine (the holder's calls count from before the kill).
    await holder?.request("release");
    const doneFrom = nowMs();
    await drained(holder ? [worker, holder] : [worker], holder ? ACTIVE + EXTRA : ACTIVE, HOUR_MS);
    const doneAt = await caughtUp(s, HOUR_MS);
    return {
      variant,
      active: ACTIVE,
      ...(variant === "running" ? { extraQueued: EXTRA } : {}),
      recoveryMs: Math.round(b.startedAt - b.calledAt),
      recoveryFromSpawnMs: Math.round(b.startedAt - b.spawnAt),
      /** CPU time of the engine process during `start()`: the work itself, whatever else the machine runs. */
      recoveryCpuMs: Math.round(b.cpuMs),
      firstAssignMs: Math.round(firstCallAt - b.calledAt),
      firstAssignFromSpawnMs: Math.round(firstCallAt - b.spawnAt),
      engineRssMiB: r1(engineRssMiB),
      engineRssBeforeKillMiB: r1(engineRssBeforeKillMiB),
      /** Peak from the new engine's spawn until the runs are let go (RUNNING) or start draining (QUEUED). */
      engineRssMaxRecoveringMiB: r1(Math.max(engineRssMiB ?? 0, s.sampler.peak("engine", b.spawnAt, doneFrom) ?? 0)),
      /** Peak while every recovered run completes (RUNNING: all at once, as the holder lets them go). */
      engineRssMaxFinishingMiB: r1(s.sampler.peak("engine", doneFrom)),
      /** From the release (RUNNING) or the first assignment check (QUEUED) until every run completed and was folded. */
      finishS: seconds(doneAt - doneFrom),
      loadAtRestart,
      ...(profile ? { profile } : {}),
    };
  });
}

async function main(): Promise<void> {
  const env = { ...conditions(), nodeFlags: FLAGS, engineFlags: ENGINE_FLAGS };
  console.error(`[scale] n ${N}, active ${ACTIVE}; load average ${env.loadAtStart}`);
  const report: Record<string, unknown> = {
    startedAt: env.date,
    env,
    params: { n: N, active: ACTIVE, slots: SLOTS, batch: BATCH, extra: EXTRA, scheduleTimeoutMs: SCHEDULE_TIMEOUT_MS },
  };
  if (PHASES.has("queued")) report.queued = await queuedPhase();
  if (PHASES.has("recovery")) {
    const variants: Record<string, unknown> = {};
    for (const v of VARIANTS) variants[v] = await recoveryPhase(v);
    // The QUEUED variant is the headline (the suite reads `recovery.*`); the others sit beside it.
    report.recovery = { ...(variants.queued ?? variants[VARIANTS[0] as string] ?? {}), variants };
  }
  (report.env as Record<string, unknown>).loadAtEnd = load();
  const out = opt.out ?? join(here, "results", `scale-${env.date.replace(/[:.]/g, "-")}.json`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(report, null, 1));
  console.log(markdown(report));
  console.error(`[scale] wrote ${out}`);
}

// biome-ignore lint/suspicious/noExplicitAny: the report is plain JSON
function markdown(r: any): string {
  const lines = [
    `## Taskjet at scale (${r.startedAt}, node ${r.env.node}, ${r.env.machine.cpus} cpus, ${r.env.git.head})`,
    "",
  ];
  const q = r.queued;
  if (q) {
    lines.push(`### ${q.n.toLocaleString("en")} queued runs, then one worker with ${r.params.slots} slots`, "");
    lines.push("| what | value | load average |", "|---|---|---|");
    lines.push(
      `| enqueue (runManyNoWait) | ${q.enqueueRate}/s (${q.enqueueS} s${q.errors ? `, ${q.errors} errors` : ""}) | ${q.load.enqueue} |`,
    );
    lines.push(`| all folded and queued | ${q.queuedS} s after the first trigger | ${q.load.queued} |`);
    lines.push(
      `| engine RSS: idle / peak / queued / queued after GC | ${q.engineRssBaselineMiB} / ${q.engineRssMaxMiB} / ${q.engineRssQueuedMiB} / ${q.engineRssQueuedAfterGcMiB} MiB | |`,
    );
    lines.push(
      `| engine live heap when queued | ${q.engineHeapQueuedMiB} MiB = ${q.engineHeapPerRunBytes} B per run | |`,
    );
    lines.push(
      `| nats-server RSS queued / peak; store on disk | ${q.natsRssMiB} / ${q.natsRssMaxMiB} MiB; ${q.storeMiB} MiB | |`,
    );
    lines.push(
      `| time to drain | ${q.drainS} s = ${q.drainRate} runs/s (first start after ${q.firstStartS} s) | ${q.load.drain} |`,
    );
    lines.push(`| engine RSS drained | ${q.engineRssDrainedMiB} MiB | ${q.load.end} |`, "");
  }
  if (r.recovery) {
    lines.push(`### Engine SIGKILLed with ${r.params.active.toLocaleString("en")} active runs, restarted`, "");
    lines.push(
      "| active runs | start() → resolved (CPU) | spawn → resolved | start() → first assignment | spawn → first assignment | engine RSS after start / peak recovering | load average |",
      "|---|---|---|---|---|---|---|",
    );
    for (const v of Object.values(r.recovery.variants) as Record<string, number | string>[]) {
      lines.push(
        `| ${v.active} ${String(v.variant).toUpperCase()}${v.extraQueued ? ` (+${v.extraQueued} queued)` : ""} | ${v.recoveryMs} ms (${v.recoveryCpuMs} ms) | ${v.recoveryFromSpawnMs} ms | ${v.firstAssignMs} ms | ${v.firstAssignFromSpawnMs} ms | ${v.engineRssMiB} / ${v.engineRssMaxRecoveringMiB} MiB | ${v.loadAtRestart} |`,
      );
    }
    lines.push("");
  }
  return lines.join("\n");
}

// Ctrl-C: exit through 'exit', where the harness kills the nats-servers it started (the children follow their IPC).
process.once("SIGINT", () => process.exit(130));

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
