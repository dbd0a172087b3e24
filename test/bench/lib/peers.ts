/**
 * The peers' harness (`../shared/peers/run-all.sh`): how the suite invokes it, and its results read back as medians
 * over reps, as its own `summarize.js` computes them. Taskjet runs through the same driver (`peers/bench-taskjet.js`),
 * so its row is measured exactly like the peers'.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** The tests every system runs, whatever its set's default list (`BENCH_ARGS` comes last, so its `--tests` wins). */
export const PEER_TESTS = "enqueue_bulk,enqueue_seq,e2e50,e2e200,lat50";
/** `../shared/peers/README.md`'s smoke sizes, with caps short enough that a poll-bound peer cannot stall the suite. */
export const QUICK_ARGS = "--bulkN=2000 --seqN=200 --e2eN=2000 --latSec=3 --capMs=5000 --latCapMs=5000";
export const DEFAULT_SETS = "bullmq-aof graphile-tuned pgboss-tuned";
/** The system the throughput target is stated against. */
export const BASELINE = "bullmq-aof";
export const TASKJET = "taskjet-default";

const NAMES: Record<string, string> = {
  "bullmq-aof": "BullMQ (AOF everysec)",
  "bullmq-noaof": "BullMQ (no AOF)",
  "graphile-tuned": "graphile-worker tuned",
  "pgboss-tuned": "pg-boss tuned",
  [TASKJET]: "Taskjet (adapter)",
};

/** Median over the reps that did not fail; flags say whether any rep hit the time cap or fell behind the offered rate. */
export interface RateCell {
  value: number;
  reps: number;
  capped: boolean;
}
export interface LatencyCell {
  start: { p50: number; p95: number; p99: number };
  runAndWait: { p50: number; p99: number };
  reps: number;
  saturated: boolean;
  achievedRate: number;
  offeredRate: number;
}
export interface PeerSystem {
  key: string;
  name: string;
  version: string;
  e2e50?: RateCell;
  e2e200?: RateCell;
  bulk?: RateCell;
  seq?: RateCell;
  lat50?: LatencyCell;
  /** How the adapter ran its server side, as its `describe()` said (Taskjet's: the engine and its warm-up). */
  engine?: string;
}

interface DriverRun {
  error?: string;
  rate?: number;
  capped?: boolean;
  saturated?: boolean;
  achievedRate?: number;
  startLatency?: { p50: number; p95: number; p99: number };
  runAndWait?: { p50: number; p99: number };
}
export interface DriverResult {
  label: string;
  version: string;
  config?: { engine?: string };
  runs: Record<string, DriverRun[]>;
}

export function median(xs: number[]): number {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

function rateCell(runs: DriverRun[] | undefined): RateCell | undefined {
  const ok = (runs ?? []).filter((r) => !r.error && typeof r.rate === "number");
  if (!ok.length) return undefined;
  return { value: median(ok.map((r) => r.rate as number)), reps: ok.length, capped: ok.some((r) => r.capped) };
}

function latencyCell(runs: DriverRun[] | undefined, offeredRate: number): LatencyCell | undefined {
  const ok = (runs ?? []).filter((r) => !r.error && r.startLatency && r.runAndWait);
  if (!ok.length) return undefined;
  const m = (f: (r: DriverRun) => number) => median(ok.map(f));
  return {
    start: {
      p50: m((r) => r.startLatency?.p50 ?? Number.NaN),
      p95: m((r) => r.startLatency?.p95 ?? Number.NaN),
      p99: m((r) => r.startLatency?.p99 ?? Number.NaN),
    },
    runAndWait: { p50: m((r) => r.runAndWait?.p50 ?? Number.NaN), p99: m((r) => r.runAndWait?.p99 ?? Number.NaN) },
    reps: ok.length,
    saturated: ok.some((r) => r.saturated),
    achievedRate: m((r) => r.achievedRate ?? Number.NaN),
    offeredRate,
  };
}

/** Every system's JSON of one `run-all.sh` output folder (`<stamp>/bench-<system>-<variant>.json`), by `<system>-<variant>`. */
export function readPeerRuns(dir: string): Record<string, DriverResult> {
  const out: Record<string, DriverResult> = {};
  for (const f of readdirSync(dir).sort()) {
    if (f.startsWith("bench-") && f.endsWith(".json")) {
      out[f.slice("bench-".length, -".json".length)] = JSON.parse(readFileSync(join(dir, f), "utf8")) as DriverResult;
    }
  }
  return out;
}

/** The figures of each system. `offeredRate` is the trickle's rate (the driver's `--latRate`, 200 unless changed). */
export function peerSystems(runs: Record<string, DriverResult>, offeredRate = 200): PeerSystem[] {
  return Object.entries(runs).map(([key, r]) => {
    const system: PeerSystem = { key, name: NAMES[key] ?? r.label, version: r.version };
    if (r.config?.engine) system.engine = r.config.engine;
    const cells = {
      e2e50: rateCell(r.runs.e2e50),
      e2e200: rateCell(r.runs.e2e200),
      bulk: rateCell(r.runs.enqueue_bulk),
      seq: rateCell(r.runs.enqueue_seq),
      lat50: latencyCell(r.runs.lat50, offeredRate),
    };
    for (const [k, v] of Object.entries(cells)) if (v) Object.assign(system, { [k]: v });
    return system;
  });
}

/** The folder of the latest run under `PEERS_OUT` (`run-all.sh` points `latest` at it when it finishes). */
export function latestPeerRun(peersOut: string): string | undefined {
  if (!existsSync(peersOut)) return undefined;
  const latest = join(peersOut, "latest");
  if (existsSync(latest)) return latest;
  // A run that failed before its summary has no `latest`: its stamp folder still holds the finished systems.
  const stamps = readdirSync(peersOut).filter((d) => /^\d{8}T\d{6}Z$/.test(d));
  const last = stamps.sort()[stamps.length - 1];
  return last ? join(peersOut, last) : undefined;
}
