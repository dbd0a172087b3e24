/**
 * Throughput and latency of the hot path: one nats-server (started here, never the system one), and the engine, ONE
 * worker and the client as three separate Node processes (`bench/procs/*.ts`), driven over IPC.
 *
 *   node --max-semi-space-size=32 --import tsx bench/throughput.ts [options]     (from test/, or `npm run bench`)
 *
 *   --n 20000          runs in the throughput phase          --slots 100      worker slots
 *   --inflight 1000    triggers outstanding at once          --mode run       how the client waits: run | ref | sub | ends
 *   --rate 500         open-loop rate of the latency phase   --seconds 10     its duration
 *   --lat-mode run     how the latency phase waits           --reps 1         throughput repetitions (same processes)
 *   --phases throughput,latency                             --warm 2000      warm-up runs before the phases
 *   --semi 32          --max-semi-space-size of the children (0: node's default)
 *   --node-flags=--single-threaded-gc   more node flags for the children (space-separated)
 *   --count-ops        count every publish per process by subject kind (a Map increment per publish)
 *   --cpu-prof engine,worker[,client]  CPU-profile these processes during the (last) throughput rep, or during the
 *                      latency phase when it runs alone (`--phases latency`: what a task costs when nothing batches)
 *   --alloc-prof engine,worker[,client]  instead: sample what these processes allocate, collected objects included
 *                      (`.heapprofile`, summed by `tools/heapprofile-top.ts`): where their GC's work comes from
 *   --alloc-kept       with --alloc-prof: only what outlived a young-generation GC (promoted, or alive at the end):
 *                      what their scavenges copy
 *   --prof-dir /tmp/tj-prof             where the .cpuprofile and .heapprofile files go
 *   --flush-ms 25      the engine's projectionFlushMs (KV projection coalescing window; engine default 25)
 *   --what-if cancel,ulid  apply a suggested fix at runtime in the child processes only (see lib/whatif.ts)
 *   --flow none        the task's flow control: none | concurrency | ratelimit | both, never binding (lib/flow.ts)
 *   --out <file>       JSON results (default bench/results/throughput-<stamp>.json; the folder is gitignored)
 *   --stalls           latency phase: split trigger→start at the assignment's publish and match the slowest 1 % against
 *                      every process's GC pauses and the VM's steal time (lib/stalls.ts)
 *   --cluster          run on the three nodes of deploy/nats/ (harness/nats-cluster.ts) with every stream and bucket R3
 *
 * TJ_BENCH_NATS_CONFIG adds lines to the single server's configuration: `prof_port: 6061` serves Go's pprof, so
 * `curl 127.0.0.1:6061/debug/pprof/profile?seconds=5` profiles nats-server during a phase.
 *
 * Prints a Markdown report and the JSON. Timestamps are `process.hrtime` (CLOCK_MONOTONIC, shared across processes).
 */
import { execSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Buckets, type FlowOptions, keys, type TaskDefinition } from "@taskjet/schemas";
import { startNatsCluster } from "../harness/nats-cluster.js";
import { startNatsServer } from "../harness/nats-server.js";
import type { CpuSnapshot } from "./lib/child.js";
import { nowMs, type Percentiles, percentiles } from "./lib/clock.js";
import { gitState, load } from "./lib/conditions.js";
import { FLOWS, type Flow, isFlow, usesConcurrency, usesRateLimit } from "./lib/flow.js";
import { Proc } from "./lib/proc.js";
import { analyseStalls, goGcLog, stealTicks } from "./lib/stalls.js";

const { values: opt } = parseArgs({
  options: {
    n: { type: "string", default: "20000" },
    slots: { type: "string", default: "100" },
    inflight: { type: "string", default: "1000" },
    mode: { type: "string", default: "run" },
    rate: { type: "string", default: "500" },
    seconds: { type: "string", default: "10" },
    "lat-mode": { type: "string", default: "run" },
    reps: { type: "string", default: "1" },
    phases: { type: "string", default: "throughput,latency" },
    warm: { type: "string", default: "2000" },
    semi: { type: "string", default: "32" },
    "node-flags": { type: "string", default: "" },
    "count-ops": { type: "boolean", default: false },
    "cpu-prof": { type: "string", default: "" },
    "alloc-prof": { type: "string", default: "" },
    "alloc-kept": { type: "boolean", default: false },
    "prof-dir": { type: "string", default: "/tmp/tj-prof" },
    out: { type: "string" },
    "what-if": { type: "string", default: "" },
    "flush-ms": { type: "string" },
    flow: { type: "string", default: "none" },
    cluster: { type: "boolean", default: false },
    stalls: { type: "boolean", default: false },
  },
  strict: true,
});

const N = Number(opt.n);
const SLOTS = Number(opt.slots);
const INFLIGHT = Number(opt.inflight);
const MODE = opt.mode as string;
const RATE = Number(opt.rate);
const SECONDS = Number(opt.seconds);
const LAT_MODE = opt["lat-mode"] as string;
const REPS = Number(opt.reps);
const PHASES = new Set(String(opt.phases).split(","));
const WARM = Number(opt.warm);
const COUNT_OPS = Boolean(opt["count-ops"]);
const ALLOC_PROF = opt["alloc-prof"] !== "";
if (ALLOC_PROF && opt["cpu-prof"] !== "") throw new Error("--cpu-prof and --alloc-prof profile one at a time");
if (opt["alloc-kept"] && !ALLOC_PROF) throw new Error("--alloc-kept needs --alloc-prof");
const PROFILED = new Set(
  String(ALLOC_PROF ? opt["alloc-prof"] : opt["cpu-prof"])
    .split(",")
    .filter(Boolean),
);
const PROF_DIR = String(opt["prof-dir"]);
for (const m of [MODE, LAT_MODE]) if (!["run", "ref", "sub", "ends"].includes(m)) throw new Error(`unknown mode ${m}`);
if (LAT_MODE === "sub") throw new Error("--lat-mode must be run or ref");
const CLUSTER = Boolean(opt.cluster);
const FLOW = String(opt.flow) as Flow;
if (!isFlow(FLOW)) throw new Error(`--flow must be one of ${FLOWS.join(", ")}`);

const NS = "bench";
const TASK = "noop";
const ROLES = ["client", "engine", "worker"] as const;
type Role = (typeof ROLES)[number];
const STREAMS = ["TJ_HISTORY", "KV_TJ_RUNS", "KV_TJ_WORKERS", "TJ_COMMANDS"] as const;
const CLK_TCK = Number(execSync("getconf CLK_TCK").toString().trim()) || 100;
const here = dirname(fileURLToPath(import.meta.url));

// ------------------------------------------------------------------ measurements around a phase

interface Snapshot {
  at: number;
  procs: Record<Role, CpuSnapshot>;
  ops: Partial<Record<Role, Record<string, number>>>;
  serverCpuS: number;
  machine: { busyS: number; totalS: number };
  streams: Record<string, { lastSeq: number; messages: number; bytes: number }>;
}

/** The cluster seen as the single server the bench expects: its URLs comma-separated, its CPU that of all three. */
async function clusterAsServer(): Promise<{ url: string; pid: string; pids(): number[]; stop(): Promise<void> }> {
  const cluster = await startNatsCluster();
  const pids = () => cluster.nodes.map((n) => n.pid);
  const pin = process.env.TJ_BENCH_PIN;
  const url = pin ? cluster.urls[Number(pin)] : cluster.urls.join(",");
  if (url === undefined) {
    await cluster.stop();
    throw new Error(`TJ_BENCH_PIN=${pin}: the cluster's nodes are 0-${cluster.urls.length - 1}`);
  }
  return { url, pid: pids().join(","), pids, stop: () => cluster.stop() };
}

function procCpuS(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK; // utime, stime
}

function machineCpu(): { busyS: number; totalS: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busyS: (total - idle) / CLK_TCK, totalS: total / CLK_TCK };
}

function diffOps(a: Record<string, number> = {}, b: Record<string, number> = {}): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(b)) if (v - (a[k] ?? 0) > 0) out[k] = v - (a[k] ?? 0);
  return out;
}

async function main(): Promise<void> {
  const startedAt = new Date().toISOString();
  const env = {
    node: process.version,
    cpus: cpus().length,
    loadAtStart: load(),
    nodeFlags: [
      ...(Number(opt.semi) > 0 ? [`--max-semi-space-size=${opt.semi}`] : []),
      ...String(opt["node-flags"]).split(" ").filter(Boolean),
    ],
    // others edit the packages concurrently: record what was measured (the built dist is what runs)
    git: gitState(["engine", "sdk", "schemas"]),
    whatIf: String(opt["what-if"]).split(",").filter(Boolean),
  };
  console.error(`[bench] load average ${env.loadAtStart}; starting nats-server`);
  const server = CLUSTER
    ? await clusterAsServer()
    : await startNatsServer({ config: () => process.env.TJ_BENCH_NATS_CONFIG ?? "" });
  const procs = {} as Record<Role, Proc>;
  const nc = await connect({ servers: server.url.split(","), name: "bench-orchestrator", noAsyncTraces: true });
  try {
    const jsm = await jetstreamManager(nc);
    for (const role of ROLES)
      procs[role] = await Proc.start(role, env.nodeFlags, {
        TJ_BENCH_WHATIF: env.whatIf.join(","),
        TJ_BENCH_STALLS: opt.stalls ? "1" : "",
      });
    const common = { url: server.url, ns: NS, task: TASK, countOps: COUNT_OPS, flow: FLOW, replicas: CLUSTER ? 3 : 1 };
    await procs.engine.request("start", { ...common, flushMs: opt["flush-ms"] ? Number(opt["flush-ms"]) : undefined });
    const workerId = await procs.worker.request<string>("start", { ...common, slots: SLOTS });
    await procs.client.request("connect", common);
    const registeredFlow = await registeredFlowOf(nc);
    console.error(`[bench] flow ${FLOW}: the worker registered ${JSON.stringify(registeredFlow)}`);
    console.error(
      `[bench] nats-server ${server.url} pid ${server.pid}; worker ${workerId}; warming up with ${WARM} runs`,
    );
    await procs.client.request("warm", { n: WARM, inflight: Math.min(SLOTS, 100) });

    const snapshot = async (): Promise<Snapshot> => {
      const [client, engine, worker] = await Promise.all(ROLES.map((r) => procs[r].request<CpuSnapshot>("cpu")));
      const ops: Snapshot["ops"] = {};
      if (COUNT_OPS) for (const r of ROLES) ops[r] = await procs[r].request<Record<string, number>>("ops");
      const streams: Snapshot["streams"] = {};
      for (const s of STREAMS) {
        const info = await jsm.streams.info(s).catch(() => undefined);
        streams[s] = {
          lastSeq: info?.state.last_seq ?? 0,
          messages: info?.state.messages ?? 0,
          bytes: info?.state.bytes ?? 0,
        };
      }
      return {
        at: nowMs(),
        procs: { client: client as CpuSnapshot, engine: engine as CpuSnapshot, worker: worker as CpuSnapshot },
        ops,
        serverCpuS: ("pids" in server ? server.pids() : [server.pid]).reduce((sum, pid) => sum + procCpuS(pid), 0),
        machine: machineCpu(),
        streams,
      };
    };

    /** CPU, writes and publishes between two snapshots, per task. */
    const account = (a: Snapshot, b: Snapshot, tasks: number) => {
      const wallS = (b.at - a.at) / 1000;
      const cpu: Record<string, { cpuS: number; perKTasksS: number; cores: number; elu?: number }> = {};
      let oursS = 0;
      for (const r of ROLES) {
        const s = (b.procs[r].userUs + b.procs[r].systemUs - a.procs[r].userUs - a.procs[r].systemUs) / 1e6;
        const eluActive = b.procs[r].elu.active - a.procs[r].elu.active;
        const eluIdle = b.procs[r].elu.idle - a.procs[r].elu.idle;
        cpu[r] = { cpuS: s, perKTasksS: s / (tasks / 1000), cores: s / wallS, elu: eluActive / (eluActive + eluIdle) };
        oursS += s;
      }
      const serverS = b.serverCpuS - a.serverCpuS;
      cpu["nats-server"] = { cpuS: serverS, perKTasksS: serverS / (tasks / 1000), cores: serverS / wallS };
      oursS += serverS;
      const machineBusyS = b.machine.busyS - a.machine.busyS;
      const machineCores = (machineBusyS / (b.machine.totalS - a.machine.totalS)) * env.cpus;
      const writes: Record<string, number> = {};
      // Bytes each write stored, from the growth of a stream: exact where nothing was removed meanwhile (the history;
      // the runs bucket while its keys are new), which is where the server's time per write goes (copies into its cache).
      const bytesPerWrite: Record<string, number> = {};
      for (const s of STREAMS) {
        const written = (b.streams[s]?.lastSeq ?? 0) - (a.streams[s]?.lastSeq ?? 0);
        writes[s] = written / tasks;
        if (written > 0) bytesPerWrite[s] = ((b.streams[s]?.bytes ?? 0) - (a.streams[s]?.bytes ?? 0)) / written;
      }
      const nats: Record<string, { outPerTask: number; inPerTask: number }> = {};
      for (const r of ROLES) {
        nats[r] = {
          outPerTask: (b.procs[r].nats.outMsgs - a.procs[r].nats.outMsgs) / tasks,
          inPerTask: (b.procs[r].nats.inMsgs - a.procs[r].nats.inMsgs) / tasks,
        };
      }
      const ops: Record<string, Record<string, number>> = {};
      if (COUNT_OPS) {
        for (const r of ROLES) {
          const d = diffOps(a.ops[r], b.ops[r]);
          ops[r] = Object.fromEntries(Object.entries(d).map(([k, v]) => [k, v / tasks]));
        }
      }
      return {
        wallS,
        cpu,
        machine: { busyCores: machineCores, otherCores: machineCores - oursS / wallS },
        writesPerTask: writes,
        bytesPerWrite,
        natsMsgsPerTask: nats,
        ...(COUNT_OPS ? { publishesPerTask: ops } : {}),
      };
    };

    const results: Record<string, unknown> = {};
    const profStart = async () => {
      mkdirSync(PROF_DIR, { recursive: true });
      for (const r of PROFILED)
        await procs[r as Role].request(ALLOC_PROF ? "allocStart" : "profStart", {
          intervalUs: 500,
          kept: opt["alloc-kept"],
        });
    };
    const profStop = async (suffix: string) => {
      const files: string[] = [];
      for (const p of PROFILED) {
        const file = join(PROF_DIR, `${p}${suffix}.${ALLOC_PROF ? "heapprofile" : "cpuprofile"}`);
        files.push(await procs[p as Role].request<string>(ALLOC_PROF ? "allocStop" : "profStop", { file }));
      }
      return files;
    };

    if (PHASES.has("throughput")) {
      const reps: unknown[] = [];
      for (let rep = 1; rep <= REPS; rep++) {
        await procs.worker.request("reset");
        const profile = rep === REPS && PROFILED.size > 0;
        if (profile) await profStart();
        const loadBefore = load();
        const a = await snapshot();
        const r = await procs.client.request<{ rate: number; completed: number; ms: number }>("throughput", {
          n: N,
          inflight: INFLIGHT,
          mode: MODE,
        });
        const b = await snapshot();
        const files = profile ? await profStop("") : [];
        const { calls } = await procs.worker.request<{ calls: number }>("samples");
        const rec = {
          loadBefore,
          ...r,
          workerCalls: calls,
          ...account(a, b, N),
          ...(files.length ? { profiles: files } : {}),
        };
        reps.push(rec);
        console.error(
          `[bench] throughput rep ${rep}: ${r.rate.toFixed(0)} tasks/s (${r.completed}/${N} in ${r.ms.toFixed(0)} ms, worker ran ${calls}; load ${loadBefore})`,
        );
      }
      results.throughput = reps;
    }

    if (PHASES.has("latency")) {
      await procs.client.request("warm", { n: 200, inflight: 10 });
      await procs.worker.request("reset");
      const profile = PROFILED.size > 0 && !PHASES.has("throughput");
      if (profile) await profStart();
      const loadBefore = load();
      if (opt.stalls) for (const role of ROLES) await procs[role].request("gcLog");
      if (opt.stalls) await procs.engine.request("assigned");
      const stealBefore = stealTicks();
      const a = await snapshot();
      const r = await procs.client.request<{ n: number; runAndWait: unknown; triggerAt?: number[] }>("latency", {
        rate: RATE,
        seconds: SECONDS,
        mode: LAT_MODE,
      });
      const b = await snapshot();
      const files = profile ? await profStop("-latency") : [];
      const { startLatency, calls } = await procs.worker.request<{ startLatency: number[]; calls: number }>("samples");
      const start = new Float64Array(r.n).fill(Number.NaN);
      for (let k = 0; k < startLatency.length; k += 2) start[startLatency[k] as number] = startLatency[k + 1] as number;
      const stealCores = (stealTicks() - stealBefore) / 100 / ((b.at - a.at) / 1000);
      let stalls: ReturnType<typeof analyseStalls> | undefined;
      if (opt.stalls && r.triggerAt) {
        const gc: Record<string, number[]> = {};
        for (const role of ROLES) gc[role] = await procs[role].request<number[]>("gcLog");
        if (process.env.TJ_BENCH_NATS_GCLOG) gc["nats-server"] = goGcLog(process.env.TJ_BENCH_NATS_GCLOG);
        const assigned = await procs.engine.request<number[]>("assigned");
        stalls = analyseStalls({ triggerAt: r.triggerAt, start, assigned, gc });
        delete r.triggerAt;
      }
      results.latency = {
        stealCores,
        ...(stalls ? { stalls } : {}),
        loadBefore,
        ...r,
        workerCalls: calls,
        triggerToStart: percentiles(start),
        ...account(a, b, r.n),
        ...(files.length ? { profiles: files } : {}),
      };
      console.error(`[bench] latency done (load ${loadBefore})`);
    }

    // Where the busiest streams lead: on a cluster, a process connected elsewhere reaches them through a route.
    const leaders: Record<string, string | undefined> = {};
    if (CLUSTER) {
      for (const name of ["TJ_HISTORY", `KV_${Buckets.runs}`])
        leaders[name] = (await jsm.streams.info(name)).cluster?.leader;
      console.error(`[bench] stream leaders ${JSON.stringify(leaders)}`);
    }
    const report = {
      startedAt,
      env: { ...env, loadAtEnd: load(), ...(CLUSTER ? { leaders } : {}) },
      params: {
        n: N,
        slots: SLOTS,
        inflight: INFLIGHT,
        mode: MODE,
        rate: RATE,
        seconds: SECONDS,
        latMode: LAT_MODE,
        warm: WARM,
        countOps: COUNT_OPS,
        flow: FLOW,
        registeredFlow,
      },
      ...results,
    };
    const out = opt.out ?? join(here, "results", `throughput-${startedAt.replace(/[:.]/g, "-")}.json`);
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, JSON.stringify(report, null, 1));
    console.log(markdown(report));
    console.log("```json");
    console.log(JSON.stringify(report));
    console.log("```");
    console.error(`[bench] wrote ${out}`);
  } finally {
    for (const role of ROLES) await procs[role]?.request("stop", {}, 30_000).catch((e) => console.error(String(e)));
    for (const role of ROLES) await procs[role]?.exit();
    await nc.close();
    await server.stop();
  }
}

/** The flow options the engine reads for the task (TJ_DEFS), checked against `--flow`: a typo would measure nothing. */
async function registeredFlowOf(nc: NatsConnection): Promise<FlowOptions> {
  const entry = await (await new Kvm(nc).open(Buckets.defs)).get(keys.def(NS, TASK));
  const flow = entry?.json<TaskDefinition>().flow ?? {};
  if (Boolean(flow.concurrency) !== usesConcurrency(FLOW) || Boolean(flow.rateLimits) !== usesRateLimit(FLOW)) {
    throw new Error(`--flow ${FLOW}, but the task's definition has ${JSON.stringify(flow)}`);
  }
  return flow;
}

// ------------------------------------------------------------------ report

const f = (x: unknown, d = 2) => (typeof x === "number" && Number.isFinite(x) ? x.toFixed(d) : "—");

// biome-ignore lint/suspicious/noExplicitAny: the report is plain JSON
function markdown(r: any): string {
  const lines: string[] = [];
  const p = r.params;
  lines.push(
    `## Taskjet hot path (${r.startedAt}, node ${r.env.node}, ${r.env.cpus} cpus, flags ${r.env.nodeFlags.join(" ") || "none"})`,
  );
  lines.push("");
  // biome-ignore lint/suspicious/noExplicitAny: plain JSON
  const costTable = (title: string, x: any) => {
    lines.push(
      `${title}: wall ${f(x.wallS)} s; machine busy ${f(x.machine.busyCores)} cores, of which not ours ${f(x.machine.otherCores)}`,
    );
    lines.push("");
    lines.push("| process | CPU s | CPU s per 1k tasks | cores | event loop busy | NATS msgs out / in per task |");
    lines.push("|---|---|---|---|---|---|");
    for (const [name, c] of Object.entries(x.cpu) as [
      string,
      { cpuS: number; perKTasksS: number; cores: number; elu?: number },
    ][]) {
      const n = x.natsMsgsPerTask[name];
      lines.push(
        `| ${name} | ${f(c.cpuS)} | ${f(c.perKTasksS, 3)} | ${f(c.cores)} | ${c.elu === undefined ? "—" : `${f(c.elu * 100, 0)} %`} | ${n ? `${f(n.outPerTask)} / ${f(n.inPerTask)}` : "—"} |`,
      );
    }
    lines.push("");
    lines.push(
      `Stream writes per task: ${Object.entries(x.writesPerTask)
        .map(
          ([s, v]) => `${s} ${f(v)}${x.bytesPerWrite[s] === undefined ? "" : ` (${f(x.bytesPerWrite[s], 0)} B each)`}`,
        )
        .join(", ")}`,
    );
    if (x.publishesPerTask) {
      lines.push("");
      lines.push("| process | publishes per task by subject kind |");
      lines.push("|---|---|");
      for (const [role, o] of Object.entries(x.publishesPerTask) as [string, Record<string, number>][]) {
        lines.push(
          `| ${role} | ${Object.entries(o)
            .sort((a, b) => b[1] - a[1])
            .map(([k, v]) => `${k} ${f(v)}`)
            .join(", ")} |`,
        );
      }
    }
    lines.push("");
  };
  if (r.throughput) {
    lines.push(
      `### Throughput: ${p.n} no-op runs, ${p.slots} slots, ${p.inflight} in flight, wait mode \`${p.mode}\`, flow \`${p.flow}\``,
    );
    lines.push("");
    lines.push("| rep | tasks/s | ms | completed | load before |");
    lines.push("|---|---|---|---|---|");
    for (const [i, t] of r.throughput.entries()) {
      lines.push(
        `| ${i + 1} | ${f(t.rate, 0)} | ${f(t.ms, 0)} | ${t.completed} (worker ran ${t.workerCalls}) | ${t.loadBefore} |`,
      );
    }
    lines.push("");
    costTable("Last rep", r.throughput[r.throughput.length - 1]);
  }
  if (r.latency) {
    const l = r.latency;
    lines.push(
      `### Latency: open loop ${p.rate}/s for ${p.seconds} s (${l.n} runs), wait mode \`${p.latMode}\`, load before ${l.loadBefore}`,
    );
    lines.push("");
    lines.push("| ms | p50 | p95 | p99 | max | n |");
    lines.push("|---|---|---|---|---|---|");
    const row = (name: string, s: Percentiles | null) =>
      s && lines.push(`| ${name} | ${f(s.p50)} | ${f(s.p95)} | ${f(s.p99)} | ${f(s.max)} | ${s.n} |`);
    row("trigger→start", l.triggerToStart);
    row("run-and-wait", l.runAndWait);
    row("runNoWait call", l.triggerCall);
    lines.push("");
    lines.push(
      `all done: ${l.allDone}, errors ${l.errors}, max schedule lag ${f(l.maxScheduleLagMs)} ms; offered ${f(l.offeredRate, 0)}/s, completed ${f(l.achievedRate, 0)}/s${l.saturated ? " (saturated: the percentiles are queueing delay)" : ""}`,
    );
    lines.push("");
    if (l.stealCores !== undefined)
      lines.push(`Stolen by the hypervisor during the phase: ${f(l.stealCores)} cores`, "");
    if (l.stalls) {
      const st = l.stalls as ReturnType<typeof analyseStalls>;
      lines.push("| ms | p50 | p95 | p99 | max | n |", "|---|---|---|---|---|---|");
      row("trigger→assignment published", st.triggerToAssign);
      row("assignment published→start", st.assignToStart);
      row(`slowest 1 %: trigger→assignment`, st.slowSplit.toAssign);
      row(`slowest 1 %: assignment→start`, st.slowSplit.assignToStart);
      lines.push("");
      const blame = Object.entries(st.gcBlame)
        .map(([proc, b]) => `${proc} ${b.runs} (${f(b.pausedMs / Math.max(1, b.runs))} ms each)`)
        .join(", ");
      lines.push(
        `Of the ${st.slowRuns} slowest runs, a GC pause fell inside the trigger→start of: ${blame || "none"}; none in ${st.slowWithoutGc}.`,
      );
      lines.push(
        `Bursts (s from the first trigger: runs, worst ms): ${st.bursts.map((b) => `${b.atS}: ${b.runs}, ${b.worstMs} [${b.seen.join(", ")}]`).join("; ")}`,
      );
      for (const [proc, kinds] of Object.entries(st.gcPauses))
        lines.push(
          `- ${proc} GC: ${Object.entries(kinds)
            .map(([k, v]) => `${k} ${v.n}× total ${f(v.totalMs)} ms max ${f(v.maxMs)} ms`)
            .join("; ")}`,
        );
      lines.push("");
    }
    costTable("Latency phase", l);
  }
  return lines.join("\n");
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
