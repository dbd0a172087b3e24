/**
 * Side-by-side Markdown table of `throughput.ts` result files: median tasks/s over reps, the CPU each process spent
 * per 1k tasks (median over reps), the CPU-bound ceiling that implies on this machine (cores / Σ CPU per task, which is
 * less sensitive to other load than tasks/s), and the latency phase's percentiles.
 *
 *   node --import tsx bench/tools/compare.ts label=file.json [label=file.json ...]
 */
import { readFileSync } from "node:fs";

const med = (xs: number[]) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (!s.length) return Number.NaN;
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const f = (x: number, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : "—");
const ROLES = ["client", "engine", "worker", "nats-server"];

const rows: string[] = [];
const lat: string[] = [];
for (const arg of process.argv.slice(2)) {
  const eq = arg.indexOf("=");
  const label = eq > 0 ? arg.slice(0, eq) : arg;
  // biome-ignore lint/suspicious/noExplicitAny: plain JSON
  const r: any = JSON.parse(readFileSync(eq > 0 ? arg.slice(eq + 1) : arg, "utf8"));
  // biome-ignore lint/suspicious/noExplicitAny: plain JSON
  const reps: any[] = r.throughput ?? [];
  if (reps.length) {
    const rates = reps.map((t) => t.rate);
    const perK = ROLES.map((p) => med(reps.map((t) => t.cpu[p]?.perKTasksS)));
    const sum = perK.reduce((a, b) => a + b, 0);
    const other = reps.map((t) => t.machine.otherCores);
    rows.push(
      `| ${label} | ${f(med(rates))} (${rates.map((x: number) => f(x)).join(", ")}) | ${other.map((x: number) => f(x, 2)).join(", ")} | ${perK.map((x) => f(x, 3)).join(" / ")} | ${f(sum, 3)} | ${f((r.env.cpus / sum) * 1000)} |`,
    );
  }
  if (r.latency) {
    const l = r.latency;
    const s = l.triggerToStart;
    const w = l.runAndWait;
    const cpu = ROLES.map((p) => f(l.cpu[p]?.perKTasksS, 3)).join(" / ");
    lat.push(
      `| ${label} | ${f(s.p50, 2)} / ${f(s.p95, 2)} / ${f(s.p99, 2)} | ${f(w.p50, 2)} / ${f(w.p95, 2)} / ${f(w.p99, 2)} | ${cpu} | ${f(l.machine.otherCores, 2)} |`,
    );
  }
}
if (rows.length) {
  console.log(
    "| variant | tasks/s median (reps) | other load, cores (per rep) | CPU s per 1k tasks: client / engine / worker / nats-server | Σ ms CPU per task | CPU-bound ceiling, tasks/s |",
  );
  console.log("|---|---|---|---|---|---|");
  for (const row of rows) console.log(row);
}
if (lat.length) {
  console.log("");
  console.log(
    "| variant | trigger→start p50 / p95 / p99 ms | run-and-wait p50 / p95 / p99 ms | CPU s per 1k tasks: client / engine / worker / nats-server | other load, cores |",
  );
  console.log("|---|---|---|---|---|");
  for (const row of lat) console.log(row);
}
