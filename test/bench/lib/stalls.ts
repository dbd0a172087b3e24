/**
 * Where the latency tail comes from (`throughput.ts --stalls`): the trigger→start of each measured run split at the
 * engine's publish of its assignment, and the slowest runs matched against the GC pauses of every Node process and
 * the time the hypervisor took from this VM (steal).
 */
import { readFileSync } from "node:fs";
import { constants } from "node:perf_hooks";
import { percentiles } from "./clock.js";

export interface StallInput {
  /** Client: monotonic ms of each run's trigger, by input index. */
  triggerAt: number[];
  /** Worker: start − trigger per index (NaN: never started). */
  start: Float64Array;
  /** Engine: flat pairs (index, monotonic ms of the assignment's publish). */
  assigned: number[];
  /** Per process: flat triples (monotonic start ms, duration ms, V8 GC kind). */
  gc: Record<string, number[]>;
}

/** CPU ticks (1/100 s) stolen from this VM so far (`/proc/stat` steal, all CPUs). */
export function stealTicks(): number {
  const cpu = readFileSync("/proc/stat", "utf8").split("\n")[0]?.trim().split(/\s+/) ?? [];
  return Number(cpu[8] ?? 0);
}

/**
 * nats-server's GC cycles from a `GODEBUG=gctrace=1` log whose lines a wrapper prefixed with the monotonic ms it read
 * them at (bench/tools/nats-server-gctrace.sh), as GC log triples: the cycle's wall clock ends at the stamp.
 */
export function goGcLog(file: string): number[] {
  const out: number[] = [];
  for (const line of readFileSync(file, "utf8").split("\n")) {
    const m = /^([\d.]+) gc \d+ @[\d.]+s \d+%: ([\d.]+)\+([\d.]+)\+([\d.]+) ms clock/.exec(line);
    if (!m) continue;
    const wall = Number(m[2]) + Number(m[3]) + Number(m[4]);
    out.push(Number(m[1]) - wall, wall, GO_GC);
  }
  return out;
}

/** Kinds in the GC logs: Node's GC kinds, and two of ours (an event-loop stall, a Go GC cycle of nats-server). */
export const LOOP_STALL = -1;
const GO_GC = -2;
const KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: "minor",
  [constants.NODE_PERFORMANCE_GC_MAJOR]: "major",
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: "incremental",
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: "weakcb",
  [LOOP_STALL]: "loop-stall",
  [GO_GC]: "go-gc",
};

export function analyseStalls(x: StallInput) {
  const n = x.triggerAt.length;
  const toAssign = new Float64Array(n).fill(Number.NaN);
  const assignToStart = new Float64Array(n).fill(Number.NaN);
  const assignAt = new Float64Array(n).fill(Number.NaN);
  for (let k = 0; k < x.assigned.length; k += 2) {
    const i = x.assigned[k] as number;
    // The first publish: a resend after a lost message would be a second.
    if (i < n && Number.isNaN(assignAt[i])) assignAt[i] = x.assigned[k + 1] as number;
  }
  for (let i = 0; i < n; i++) {
    toAssign[i] = (assignAt[i] as number) - (x.triggerAt[i] as number);
    assignToStart[i] = (x.start[i] as number) - (toAssign[i] as number);
  }
  const p99 = percentiles(x.start).p99 ?? Number.POSITIVE_INFINITY;
  const slow: number[] = [];
  for (let i = 0; i < n; i++) if ((x.start[i] as number) >= p99) slow.push(i);
  // For each slow run: which processes paused for GC inside its trigger→start window, and how long in all.
  const blame: Record<string, { runs: number; pausedMs: number }> = {};
  let unexplained = 0;
  for (const i of slow) {
    const from = x.triggerAt[i] as number;
    const to = from + (x.start[i] as number);
    let any = false;
    for (const [proc, log] of Object.entries(x.gc)) {
      let paused = 0;
      for (let k = 0; k < log.length; k += 3) {
        if (log[k + 2] === LOOP_STALL) continue;
        const s = log[k] as number;
        const e = s + (log[k + 1] as number);
        if (e > from && s < to) paused += Math.min(e, to) - Math.max(s, from);
      }
      if (paused > 0) {
        any = true;
        const b = blame[proc] ?? { runs: 0, pausedMs: 0 };
        blame[proc] = b;
        b.runs++;
        b.pausedMs += paused;
      }
    }
    if (!any) unexplained++;
  }
  const pauses: Record<string, Record<string, { n: number; totalMs: number; maxMs: number }>> = {};
  for (const [proc, log] of Object.entries(x.gc)) {
    const byKind: Record<string, { n: number; totalMs: number; maxMs: number }> = {};
    for (let k = 0; k < log.length; k += 3) {
      const kind = KINDS[log[k + 2] as number] ?? String(log[k + 2]);
      const d = log[k + 1] as number;
      const s = byKind[kind] ?? { n: 0, totalMs: 0, maxMs: 0 };
      byKind[kind] = s;
      s.n++;
      s.totalMs += d;
      s.maxMs = Math.max(s.maxMs, d);
    }
    pauses[proc] = byKind;
  }
  // The slow runs' split: which hop took the time.
  const slowSplit = {
    toAssign: percentiles(Float64Array.from(slow, (i) => toAssign[i] as number)),
    assignToStart: percentiles(Float64Array.from(slow, (i) => assignToStart[i] as number)),
  };
  // Slow runs close together in time are one stall: when (s from the first trigger) and how many runs each.
  const t0 = x.triggerAt[0] as number;
  const bursts: { atS: number; runs: number; worstMs: number; from: number; to: number; seen: string[] }[] = [];
  let lastAt = Number.NEGATIVE_INFINITY;
  for (const i of slow) {
    const at = x.triggerAt[i] as number;
    if (at - lastAt > 50)
      bursts.push({ atS: Math.round((at - t0) / 10) / 100, runs: 0, worstMs: 0, from: at, to: at, seen: [] });
    const b = bursts[bursts.length - 1] as (typeof bursts)[number];
    b.runs++;
    b.worstMs = Math.max(b.worstMs, Math.round(x.start[i] as number));
    b.to = Math.max(b.to, at + (x.start[i] as number));
    lastAt = at;
  }
  // What each process was doing meanwhile: its GC pauses and event-loop stalls inside the burst.
  for (const b of bursts) {
    for (const [proc, log] of Object.entries(x.gc)) {
      for (let k = 0; k < log.length; k += 3) {
        const s = log[k] as number;
        const d = log[k + 1] as number;
        if (s + d > b.from && s < b.to)
          b.seen.push(`${proc} ${KINDS[log[k + 2] as number] ?? log[k + 2]} ${d.toFixed(1)}`);
      }
    }
  }
  return {
    bursts,
    triggerToAssign: percentiles(toAssign),
    assignToStart: percentiles(assignToStart),
    slowRuns: slow.length,
    slowSplit,
    gcBlame: blame,
    slowWithoutGc: unexplained,
    gcPauses: pauses,
  };
}
