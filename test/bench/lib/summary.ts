/**
 * The suite's results as the figures the report and the plots quote: medians, rates and percentiles taken out of each
 * scenario's JSON (whose shapes are declared here, as far as they are read), and the targets judged on them.
 */
import type { Percentiles } from "./clock.js";
import type { Conditions } from "./conditions.js";
import { BASELINE, type DriverResult, median, type PeerSystem, peerSystems, TASKJET } from "./peers.js";

export interface ScenarioRecord {
  id: string;
  title: string;
  /** The command line, from test/. */
  command: string;
  status: "ok" | "failed" | "skipped";
  reason?: string;
  loadBefore?: string;
  startedAt?: string;
  wallS?: number;
  /** The scenario's own JSON (for the peers: one per system). */
  result?: unknown;
}

export interface SuiteResults {
  suite: {
    startedAt: string;
    finishedAt: string;
    wallS: number;
    quick: boolean;
    command: string;
    peerReps: number;
    peerSets: string;
  };
  conditions: Conditions;
  scenarios: ScenarioRecord[];
}

// ---------------------------------------------------------------- the scripts' JSON, as far as it is read

interface ThroughputJson {
  params: { n: number; slots: number; rate: number; seconds: number };
  throughput?: { rate: number; loadBefore: string; machine: { otherCores: number } }[];
  latency?: {
    n: number;
    loadBefore: string;
    triggerToStart: Percentiles;
    runAndWait: Percentiles;
    offeredRate?: number;
    achievedRate?: number;
    saturated?: boolean;
    allDone: boolean;
    errors: number;
    machine: { otherCores: number };
  };
}
interface EnqueueJson {
  n: number;
  batch: number;
  rates: number[];
  median: number;
}
interface FanOutRep {
  triggerToStartMs: number;
  spawnMs: number;
  lastChildRanMs: number;
  childrenDoneMs: number;
  parentDoneMs: number;
  childrenPerS: number;
}
interface FlowsJson {
  params: { children: number; dagN: number; dagInflight: number };
  fanOut: FanOutRep[];
  dag: { n: number; rate: number; errors: number; latency: Percentiles };
  dagSingle: { n: number; latency: Percentiles };
}
/** What `scale.ts` writes: `recovery` is its first variant, `variants` all of them (QUEUED or RUNNING active runs). */
interface Recovery {
  active: number;
  recoveryMs: number;
  /** From the same `start()` call until a task function started on the waiting worker. */
  firstAssignMs?: number;
}
interface ScaleJson {
  queued?: { n: number; engineRssMaxMiB: number; drainS: number; drainRate: number };
  recovery?: Recovery & { variants?: Record<string, Recovery> };
}
interface HistoryJson {
  events: number;
  readFold: { median: number };
  read: { median: number };
  fold: { median: number };
  rebuilds: { runs: number; events: number; eventsPerSecond: number }[];
}

// ---------------------------------------------------------------- the figures

export interface ThroughputRow {
  replicas: 1 | 3;
  slots: number;
  n: number;
  median: number;
  min: number;
  max: number;
  reps: number;
  loadBefore: string[];
  /** CPU the machine spent on processes not of the bench, per rep: others sharing the two cores. */
  otherCores: number[];
}
export interface LatencyRow {
  replicas: 1 | 3;
  rate: number;
  seconds: number;
  n: number;
  start: Percentiles;
  runAndWait: Percentiles;
  offeredRate: number;
  achievedRate: number;
  saturated: boolean;
  /** Runs whose `tj.run()` had not resolved 60 s after the last trigger. */
  notDone: number;
  loadBefore: string;
  otherCores: number;
}
export interface Target {
  what: string;
  measured: string;
  /** null: not measured in this run. */
  met: boolean | null;
}
export interface Summary {
  throughput: ThroughputRow[];
  latency: LatencyRow[];
  enqueue?: { n: number; batch: number; median: number; min: number; max: number; reps: number };
  fanOut?: { children: number; reps: number } & FanOutRep;
  dag?: { n: number; inflight: number; rate: number; errors: number; latency: Percentiles; single: Percentiles };
  scale?: { queued?: NonNullable<ScaleJson["queued"]>; recovery: (Recovery & { variant: string })[] };
  history?: { events: number; readFoldMs: number; readMs: number; foldMs: number; rebuildEventsPerS: number };
  historyRebuild?: { runs: number; events: number };
  peers: PeerSystem[];
  targets: Target[];
}

function resultOf<T>(results: SuiteResults, id: string): T | undefined {
  const s = results.scenarios.find((x) => x.id === id);
  return s?.result as T | undefined;
}

const fmt = (x: number, d = 0) => x.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d });

export function summarize(results: SuiteResults): Summary {
  const throughput: ThroughputRow[] = [];
  const latency: LatencyRow[] = [];
  for (const s of results.scenarios) {
    const r = s.result as ThroughputJson | undefined;
    if (!r?.params || !(s.id.startsWith("throughput-") || s.id.startsWith("latency-") || s.id === "cluster")) continue;
    const replicas = s.id === "cluster" ? 3 : 1;
    if (r.throughput?.length) {
      const rates = r.throughput.map((t) => t.rate);
      throughput.push({
        replicas,
        slots: r.params.slots,
        n: r.params.n,
        median: median(rates),
        min: Math.min(...rates),
        max: Math.max(...rates),
        reps: rates.length,
        loadBefore: r.throughput.map((t) => t.loadBefore),
        otherCores: r.throughput.map((t) => t.machine.otherCores),
      });
    }
    if (r.latency) {
      const l = r.latency;
      latency.push({
        replicas,
        rate: r.params.rate,
        seconds: r.params.seconds,
        n: l.n,
        start: l.triggerToStart,
        runAndWait: l.runAndWait,
        offeredRate: l.offeredRate ?? Number.NaN,
        achievedRate: l.achievedRate ?? Number.NaN,
        saturated: l.saturated ?? false,
        notDone: l.n - l.runAndWait.n,
        loadBefore: l.loadBefore,
        otherCores: l.machine.otherCores,
      });
    }
  }
  const summary: Summary = {
    throughput,
    latency,
    peers: peerSystems(resultOf<Record<string, DriverResult>>(results, "peers") ?? {}),
    targets: [],
  };
  const enqueue = resultOf<EnqueueJson>(results, "enqueue");
  if (enqueue?.rates) {
    summary.enqueue = {
      n: enqueue.n,
      batch: enqueue.batch,
      median: enqueue.median,
      min: Math.min(...enqueue.rates),
      max: Math.max(...enqueue.rates),
      reps: enqueue.rates.length,
    };
  }
  const flows = resultOf<FlowsJson>(results, "flows");
  if (flows?.fanOut?.length) {
    const m = (f: (r: FanOutRep) => number) => median(flows.fanOut.map(f));
    summary.fanOut = {
      children: flows.params.children,
      reps: flows.fanOut.length,
      triggerToStartMs: m((r) => r.triggerToStartMs),
      spawnMs: m((r) => r.spawnMs),
      lastChildRanMs: m((r) => r.lastChildRanMs),
      childrenDoneMs: m((r) => r.childrenDoneMs),
      parentDoneMs: m((r) => r.parentDoneMs),
      childrenPerS: m((r) => r.childrenPerS),
    };
    summary.dag = {
      n: flows.dag.n,
      inflight: flows.params.dagInflight,
      rate: flows.dag.rate,
      errors: flows.dag.errors,
      latency: flows.dag.latency,
      single: flows.dagSingle.latency,
    };
  }
  const scale = resultOf<ScaleJson>(results, "scale");
  if (scale) {
    const variants = scale.recovery?.variants ?? (scale.recovery ? { queued: scale.recovery } : {});
    summary.scale = {
      ...(scale.queued ? { queued: scale.queued } : {}),
      recovery: Object.entries(variants).map(([variant, r]) => ({ variant, ...r })),
    };
  }
  const history = resultOf<HistoryJson>(results, "history");
  if (history?.rebuilds?.length) {
    summary.history = {
      events: history.events,
      readFoldMs: history.readFold.median,
      readMs: history.read.median,
      foldMs: history.fold.median,
      rebuildEventsPerS: median(history.rebuilds.map((r) => r.eventsPerSecond)),
    };
    const first = history.rebuilds[0] as HistoryJson["rebuilds"][number];
    summary.historyRebuild = { runs: first.runs, events: first.events };
  }
  summary.targets = targets(summary);
  return summary;
}

/** The targets for this 2-core machine, each judged on what this run measured (null: not measured). */
function targets(s: Summary): Target[] {
  const out: Target[] = [];
  const baseline = s.peers.find((p) => p.key === BASELINE);
  const taskjet = s.peers.find((p) => p.key === TASKJET);
  // The same driver measured both; the lower of the two concurrencies' ratios decides, so neither is cherry-picked.
  const ratios = (["e2e50", "e2e200"] as const).flatMap((k) => {
    const b = baseline?.[k]?.value;
    const t = taskjet?.[k]?.value;
    return b && t ? [{ k, b, t, r: t / b }] : [];
  });
  const worst = ratios.length ? Math.min(...ratios.map((x) => x.r)) : Number.NaN;
  const ratioText = ratios
    .map((x) => `c=${x.k.slice(3)}: ${fmt(x.t)} vs ${fmt(x.b)} jobs/s (${fmt(x.r, 2)}×)`)
    .join("; ");
  out.push({
    what: "End-to-end throughput ≥ BullMQ (Redis AOF everysec), one node, same driver",
    measured: ratioText || "peers not run",
    met: ratios.length ? worst >= 1 : null,
  });
  out.push({
    what: "Stretch: ≥ 1.5× BullMQ",
    measured: ratios.length ? `lower ratio ${fmt(worst, 2)}×` : "peers not run",
    met: ratios.length ? worst >= 1.5 : null,
  });
  const single = s.throughput.find((t) => t.replicas === 1 && t.slots === 100);
  const r3 = s.throughput.find((t) => t.replicas === 3);
  out.push({
    what: "R3 cluster throughput ≥ 60 % of one node (throughput.ts, 100 slots)",
    measured:
      single && r3
        ? `${fmt(r3.median)} vs ${fmt(single.median)} tasks/s (${fmt((r3.median / single.median) * 100)} %)`
        : "not measured",
    met: single && r3 ? r3.median >= 0.6 * single.median : null,
  });
  const at500 = s.latency.find((l) => l.replicas === 1 && l.rate === 500);
  out.push({
    what: "trigger→start p99 < 10 ms at 500 tasks/s",
    measured: at500?.start.p99 != null ? `${fmt(at500.start.p99, 2)} ms` : "not measured",
    met: at500?.start.p99 != null ? at500.start.p99 < 10 : null,
  });
  out.push({
    what: "run-and-wait p50 < 5 ms (at 500 tasks/s)",
    measured: at500?.runAndWait.p50 != null ? `${fmt(at500.runAndWait.p50, 2)} ms` : "not measured",
    met: at500?.runAndWait.p50 != null ? at500.runAndWait.p50 < 5 : null,
  });
  const q = s.scale?.queued;
  out.push({
    what: "1,000,000 queued runs: engine RSS < 1 GiB",
    measured: q ? `${fmt(q.engineRssMaxMiB)} MiB at ${fmt(q.n)} queued` : "not measured",
    met: q ? q.engineRssMaxMiB < 1024 : null,
  });
  // Every variant must meet it: queued and running active runs are both what a restart finds.
  const rec = s.scale?.recovery ?? [];
  out.push({
    what: "Recovery after a restart with 100,000 active runs < 5 s",
    measured: rec.length
      ? rec.map((r) => `${r.variant}: ${fmt(r.recoveryMs / 1000, 2)} s with ${fmt(r.active)} active`).join("; ")
      : "not measured",
    met: rec.length ? rec.every((r) => r.recoveryMs < 5000) : null,
  });
  return out;
}
