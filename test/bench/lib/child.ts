/**
 * The child side of a benchmark process: answers the orchestrator's IPC requests `{ id, cmd, ...args }` with
 * `{ id, ok, result | error }`, and offers what every process reports: CPU time, event-loop utilisation, a CPU
 * profile of one phase, and (opt-in) a count of what it publishes, by kind of subject.
 */
import { writeFile } from "node:fs/promises";
import { Session } from "node:inspector/promises";
import { PerformanceObserver, performance } from "node:perf_hooks";
import { writeHeapSnapshot } from "node:v8";
import type { NatsConnection } from "@nats-io/transport-node";
import { nowMs } from "./clock.js";
import { LOOP_STALL } from "./stalls.js";
import { applyWhatIf } from "./whatif.js";

export type Handler = (args: Record<string, unknown>) => unknown;

/** A process's memory as it sees it (RSS is also read from `/proc` by the orchestrator, without asking). */
export interface MemSnapshot {
  rssMiB: number;
  heapUsedMiB: number;
  heapTotalMiB: number;
  externalMiB: number;
  arrayBuffersMiB: number;
  /** Whether a full GC ran first (`gc: true` and `--expose-gc`): heap used is then live data only. */
  collected: boolean;
}

export interface CpuSnapshot {
  userUs: number;
  systemUs: number;
  elu: { idle: number; active: number; utilization: number };
  /** NATS connection counters (messages and bytes in and out), summed over the process's connections. */
  nats: { inMsgs: number; outMsgs: number; inBytes: number; outBytes: number };
}

const whatIf = await applyWhatIf(process.env.TJ_BENCH_WHATIF);
/** With TJ_BENCH_STALLS=1: every GC pause and event-loop stall as monotonic start ms, duration ms, kind (flat triples). */
const gcPauses: number[] = [];
if (process.env.TJ_BENCH_STALLS === "1") {
  const toMono = nowMs() - performance.now();
  new PerformanceObserver((list) => {
    for (const e of list.getEntries())
      gcPauses.push(e.startTime + toMono, e.duration, (e as { detail?: { kind?: number } }).detail?.kind ?? 0);
  }).observe({ entryTypes: ["gc"] });
  // Event-loop stalls: a 5 ms interval firing late by more than 5 ms.
  let expected = nowMs() + 5;
  setInterval(() => {
    const t = nowMs();
    if (t - expected > 5) gcPauses.push(expected, t - expected, LOOP_STALL);
    expected = t + 5;
  }, 5).unref();
}
const connections: NatsConnection[] = [];
const ops = new Map<string, number>();
let session: Session | undefined;

/** Takes part in the process's reports (`nc.stats()`), and with `countOps` counts every publish by subject kind. */
export function watchConnection(nc: NatsConnection, countOps: boolean): void {
  connections.push(nc);
  if (!countOps) return;
  // Every outgoing message (publishes, requests, pulls, acks) goes through protocol.publish.
  const protocol = (nc as unknown as { protocol: { publish: (subject: string, ...rest: unknown[]) => unknown } })
    .protocol;
  const publish = protocol.publish.bind(protocol);
  protocol.publish = (subject: string, ...rest: unknown[]) => {
    const kind = subjectKind(subject);
    ops.set(kind, (ops.get(kind) ?? 0) + 1);
    return publish(subject, ...rest);
  };
}

/** Collapses ids out of a subject: `tj.<ns>.hist.<runId>` → `tj.*.hist`, `$JS.API.CONSUMER.INFO.S.C` → `$JS.API.CONSUMER.INFO`. */
export function subjectKind(subject: string): string {
  const t = subject.split(".");
  if (t[0] === "tj") return `tj.*.${t[2]}`;
  if (t[0] === "$KV") return `$KV.${t[1]}`;
  if (t[0] === "$JS" && t[1] === "ACK") return "$JS.ACK";
  if (t[0] === "$JS" && t[1] === "FC") return "$JS.FC";
  if (t[0] === "$JS" && t[1] === "API") {
    if (t[2] === "DIRECT") return `$JS.API.DIRECT.GET.${t[4]}`;
    if (t[2] === "CONSUMER" && t[3] === "MSG") return `$JS.API.CONSUMER.MSG.NEXT.${t[5]}`;
    return t.slice(0, 4).join(".");
  }
  if (t[0]?.startsWith("_INBOX")) return "_INBOX";
  return t.slice(0, 2).join(".");
}

function snapshot(): CpuSnapshot {
  const cpu = process.cpuUsage();
  const elu = performance.eventLoopUtilization();
  const nats = { inMsgs: 0, outMsgs: 0, inBytes: 0, outBytes: 0 };
  for (const nc of connections) {
    const s = nc.stats();
    nats.inMsgs += s.inMsgs;
    nats.outMsgs += s.outMsgs;
    nats.inBytes += s.inBytes;
    nats.outBytes += s.outBytes;
  }
  return { userUs: cpu.user, systemUs: cpu.system, elu, nats };
}

const MiB = 1024 * 1024;

function memory(collect: boolean): MemSnapshot {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (collect) gc?.();
  const m = process.memoryUsage();
  return {
    rssMiB: m.rss / MiB,
    heapUsedMiB: m.heapUsed / MiB,
    heapTotalMiB: m.heapTotal / MiB,
    externalMiB: m.external / MiB,
    arrayBuffersMiB: m.arrayBuffers / MiB,
    collected: collect && gc !== undefined,
  };
}

/** Opens the inspector `session` and starts a profile in it. */
async function startProfile(start: (s: Session) => Promise<void>): Promise<true> {
  session = new Session();
  session.connect();
  await start(session);
  return true;
}

/** Ends the profile `session` runs, and writes it to `file`. */
async function stopProfile(file: string, stop: (s: Session) => Promise<{ profile: unknown }>): Promise<string | false> {
  if (!session) return false;
  const { profile } = await stop(session);
  session.disconnect();
  session = undefined;
  await writeFile(file, JSON.stringify(profile));
  return file;
}

const common: Record<string, Handler> = {
  cpu: () => snapshot(),
  mem: (args) => memory(Boolean(args.gc)),
  /** Writes a heap snapshot (stops the process for as long as it takes: seconds per GiB of heap). */
  heapSnapshot: (args) => writeHeapSnapshot(String(args.file)),
  exit: () => true,
  gcLog: () => gcPauses.splice(0),
  ops: () => Object.fromEntries(ops),
  profStart: (args) =>
    startProfile(async (s) => {
      await s.post("Profiler.enable");
      await s.post("Profiler.setSamplingInterval", { interval: Number(args.intervalUs ?? 500) });
      await s.post("Profiler.start");
    }),
  profStop: (args) => stopProfile(String(args.file), (s) => s.post("Profiler.stop")),
  /**
   * Samples allocations, also of objects collected since: where the GC's work comes from, not what stays. With `kept`,
   * not of those a scavenge collected: what outlived one, which is what scavenges copy and promote.
   */
  allocStart: (args) =>
    startProfile(async (s) => {
      await s.post("HeapProfiler.enable");
      await s.post("HeapProfiler.startSampling", {
        samplingInterval: Number(args.intervalBytes ?? 16384),
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: args.kept !== true,
      });
    }),
  allocStop: (args) => stopProfile(String(args.file), (s) => s.post("HeapProfiler.stopSampling")),
};

/** Serves IPC requests until `exit`; a process whose parent is gone exits too (no orphans). */
export function serve(handlers: Record<string, Handler>): void {
  if (!process.send) throw new Error("run me from throughput.ts (needs an IPC channel)");
  const all = { ...common, ...handlers };
  process.on("disconnect", () => process.exit(2));
  process.on("message", (msg: { id: number; cmd: string; args?: Record<string, unknown> }) => {
    const handler = all[msg.cmd];
    Promise.resolve()
      .then(() => {
        if (!handler) throw new Error(`unknown command ${msg.cmd}`);
        return handler(msg.args ?? {});
      })
      .then(
        (result) => ({ id: msg.id, ok: true, result }),
        (err: unknown) => ({ id: msg.id, ok: false, error: String((err as Error)?.stack ?? err) }),
      )
      .then((reply) => {
        // exit only once the reply is flushed; the CPU profile of `--cpu-prof` is written on a normal exit
        process.send?.(reply, undefined, {}, () => {
          if (msg.cmd === "exit") process.exit(0);
        });
      })
      .catch(() => process.exit(3));
  });
  process.send({ ready: true, whatIf });
}
