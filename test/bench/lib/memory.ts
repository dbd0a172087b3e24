/**
 * Memory over time, as the kernel sees it: resident set size per process from `/proc/<pid>/status` (no help needed
 * from a busy process), with the V8 heap asked over IPC beside it when that process answers in time, and the size of
 * a directory (the JetStream store).
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { MemSnapshot } from "./child.js";
import { nowMs } from "./clock.js";
import type { Proc } from "./proc.js";

const MiB = 1024 * 1024;

/** VmRSS of a process in MiB; undefined once it is gone. */
export function rssMiB(pid: number): number | undefined {
  try {
    const kb = /^VmRSS:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    return kb === undefined ? undefined : Number(kb) / 1024;
  } catch {
    return undefined;
  }
}

/** Bytes of the files under `dir`, in MiB (what the store holds, not what the filesystem allocated). */
export function dirMiB(dir: string): number {
  let bytes = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) bytes += statSync(join(entry.parentPath, entry.name)).size;
  }
  return bytes / MiB;
}

export interface MemSample {
  /** Monotonic ms (`nowMs`). */
  at: number;
  rssMiB: Record<string, number>;
  /** Heap used per process that answered within the interval. */
  heapUsedMiB: Record<string, number>;
}

const round = (mib: Record<string, number>) =>
  Object.fromEntries(Object.entries(mib).map(([role, v]) => [role, Math.round(v)]));

/** Samples the RSS of tracked processes every `intervalMs`; for tracked `Proc`s, their heap too. */
export class MemSampler {
  readonly samples: MemSample[] = [];
  private readonly pids = new Map<string, { pid: number; proc?: Proc | undefined }>();
  private readonly heap = new Map<string, number>();
  private readonly asking = new Set<string>();
  private readonly timer: NodeJS.Timeout;

  constructor(intervalMs = 500) {
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  /** Follows `role` (replacing what had that role: a restarted engine is still the engine). */
  track(role: string, pid: number, proc?: Proc): void {
    this.pids.set(role, { pid, proc });
    this.heap.delete(role);
  }

  untrack(role: string): void {
    this.pids.delete(role);
    this.heap.delete(role);
  }

  /** One sample now (also taken on the interval). */
  sample(): MemSample {
    const s: MemSample = { at: nowMs(), rssMiB: {}, heapUsedMiB: Object.fromEntries(this.heap) };
    for (const [role, { pid, proc }] of this.pids) {
      const rss = rssMiB(pid);
      if (rss !== undefined) s.rssMiB[role] = rss;
      if (proc && !this.asking.has(role)) this.askHeap(role, proc);
    }
    this.samples.push(s);
    return s;
  }

  /** The highest RSS of `role` sampled in [from, to] (monotonic ms). */
  peak(role: string, from = 0, to = Number.POSITIVE_INFINITY): number | undefined {
    let max: number | undefined;
    for (const s of this.samples) {
      const v = s.rssMiB[role];
      if (s.at >= from && s.at <= to && v !== undefined && (max === undefined || v > max)) max = v;
    }
    return max;
  }

  /** Samples taken in [from, to], thinned to at most `points` (for a plot: seconds from `from`, MiB per role). */
  series(
    from: number,
    to: number,
    points = 400,
  ): { s: number; rssMiB: Record<string, number>; heapUsedMiB: Record<string, number> }[] {
    const within = this.samples.filter((x) => x.at >= from && x.at <= to);
    const step = Math.max(1, Math.ceil(within.length / points));
    return within
      .filter((_, i) => i % step === 0)
      .map((x) => ({ s: Math.round(x.at - from) / 1000, rssMiB: round(x.rssMiB), heapUsedMiB: round(x.heapUsedMiB) }));
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** A process busy for longer than the interval is not asked again until it answers: its RSS is sampled anyway. */
  private askHeap(role: string, proc: Proc): void {
    this.asking.add(role);
    proc
      .request<MemSnapshot>("mem", {}, 60_000)
      .then(
        (m) => {
          if (this.pids.get(role)?.proc === proc) this.heap.set(role, m.heapUsedMiB);
        },
        () => undefined,
      )
      .finally(() => this.asking.delete(role));
  }
}
