/** The suite's two plots: throughput and latency, Taskjet beside each peer, with Taskjet ÷ peer on each peer's row. */
import type { PeerSystem } from "./peers.js";
import { TASKJET } from "./peers.js";
import type { LatencyRow, Summary } from "./summary.js";
import { barChart, type Panel, type Row } from "./svg.js";

type Mark = NonNullable<Panel["marks"]>[number];

const ORDER = ["bullmq-aof", "bullmq-noaof", "graphile-tuned", "pgboss-tuned"];

/** Peers in a fixed order (the baseline first), Taskjet's row last. */
export function orderedPeers(peers: PeerSystem[]): PeerSystem[] {
  const rank = (p: PeerSystem) => (p.key === TASKJET ? 99 : ORDER.indexOf(p.key) < 0 ? 50 : ORDER.indexOf(p.key));
  return [...peers].sort((a, b) => rank(a) - rank(b));
}

/** Taskjet ÷ peer: 12×, 1.05×, 0.73×, 0.0012× (pg-boss's seconds against milliseconds keep two digits too). */
export function ratioText(t: number | null | undefined, p: number | null | undefined): string | undefined {
  if (!t || !p) return undefined;
  const r = t / p;
  return `${r >= 10 ? r.toFixed(0) : r >= 0.1 ? r.toFixed(2) : r.toPrecision(2)}×`;
}

/**
 * One row per system of `pick`'s values; peers' rows carry Taskjet's first value ÷ theirs, named `what` (the series,
 * when there are several).
 */
function peerRows(peers: PeerSystem[], what: string, pick: (p: PeerSystem) => (number | null)[] | undefined): Row[] {
  const taskjet = peers.find((p) => p.key === TASKJET);
  const tj = taskjet ? pick(taskjet)?.[0] : undefined;
  return orderedPeers(peers).map((p) => {
    const values = pick(p) ?? [null];
    const r = p.key === TASKJET ? undefined : ratioText(tj, values[0]);
    const note = r && `Taskjet${what} ${r}`;
    return { label: p.name, values, highlight: p.key === TASKJET, ...(note ? { note } : {}) };
  });
}

export function throughputChart(s: Summary, subtitle: string): string {
  const panels: Panel[] = [];
  if (s.peers.length) {
    const rate = (title: string, k: "e2e50" | "e2e200" | "bulk" | "seq"): Panel => ({
      title,
      unit: "jobs/s",
      scale: "linear",
      series: ["median"],
      rows: peerRows(s.peers, "", (p) => [p[k]?.value ?? null]),
    });
    panels.push(
      rate("End to end, one worker, c=50", "e2e50"),
      rate("End to end, one worker, c=200", "e2e200"),
      rate("Bulk enqueue (chunks of 1,000)", "bulk"),
      rate("Sequential awaited enqueue", "seq"),
    );
  }
  if (s.throughput.length) {
    panels.push({
      title: "Taskjet hot path (throughput.ts)",
      unit: "tasks/s",
      scale: "linear",
      series: ["median"],
      rows: s.throughput.map((t) => ({
        label: `R${t.replicas}, ${t.slots} slots`,
        values: [t.median],
        highlight: true,
      })),
    });
  }
  const flows: Row[] = [];
  if (s.enqueue) flows.push({ label: "bulk enqueue, runs/s", values: [s.enqueue.median], highlight: true });
  if (s.fanOut) flows.push({ label: "fan-out, children/s", values: [s.fanOut.childrenPerS], highlight: true });
  if (s.dag) flows.push({ label: "3-step DAG, runs/s", values: [s.dag.rate], highlight: true });
  if (flows.length)
    panels.push({
      title: "Taskjet enqueue and flows",
      unit: "per s",
      scale: "linear",
      series: ["median"],
      rows: flows,
    });
  return barChart("Throughput (higher is better)", subtitle, panels);
}

export function latencyChart(s: Summary, subtitle: string): string {
  const panels: Panel[] = [];
  if (s.peers.length) {
    panels.push({
      title: "trigger→start, 200 jobs/s, c=50",
      unit: "ms",
      scale: "log",
      series: ["p50", "p95", "p99"],
      rows: peerRows(s.peers, " p50", (p) =>
        p.lat50 ? [p.lat50.start.p50, p.lat50.start.p95, p.lat50.start.p99] : undefined,
      ),
    });
    panels.push({
      title: "run-and-wait, 200 jobs/s, c=50",
      unit: "ms",
      scale: "log",
      series: ["p50", "p99"],
      rows: peerRows(s.peers, " p50", (p) => (p.lat50 ? [p.lat50.runAndWait.p50, p.lat50.runAndWait.p99] : undefined)),
    });
  }
  if (s.latency.length) {
    const label = (l: Summary["latency"][number]) =>
      `R${l.replicas}, ${l.rate.toLocaleString("en-US")}/s${l.saturated ? " (sat.)" : ""}`;
    const percentiles = (title: string, pick: (l: LatencyRow) => LatencyRow["start"], mark: Mark): Panel => ({
      title,
      unit: "ms",
      scale: "log",
      series: ["p50", "p95", "p99"],
      rows: s.latency.map((l) => ({
        label: label(l),
        values: [pick(l).p50, pick(l).p95, pick(l).p99],
        highlight: true,
      })),
      marks: [mark],
    });
    panels.push(
      percentiles("Taskjet trigger→start at fixed rates", (l) => l.start, { value: 10, label: "target p99 < 10 ms" }),
    );
    panels.push(
      percentiles("Taskjet run-and-wait at fixed rates", (l) => l.runAndWait, { value: 5, label: "target p50 < 5 ms" }),
    );
  }
  if (s.dag) {
    const d = s.dag;
    panels.push({
      title: "Taskjet 3-step DAG, trigger to result",
      unit: "ms",
      scale: "log",
      series: ["p50", "p95", "p99"],
      rows: [
        { label: "one at a time", values: [d.single.p50, d.single.p95, d.single.p99], highlight: true },
        { label: `${d.inflight} in flight`, values: [d.latency.p50, d.latency.p95, d.latency.p99], highlight: true },
      ],
    });
  }
  return barChart("Latency (lower is better)", subtitle, panels);
}
