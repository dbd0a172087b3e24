/**
 * The suite's Markdown: targets, Taskjet beside the peers (ratios first: absolute numbers move with the machine's
 * load, ratios from one run much less), Taskjet's own scenarios, and the conditions needed to reproduce them.
 */
import { orderedPeers, ratioText } from "./charts.js";
import type { LatencyCell, PeerSystem, RateCell } from "./peers.js";
import { TASKJET } from "./peers.js";
import type { SuiteResults, Summary } from "./summary.js";

const n0 = (x: number | null | undefined) =>
  x == null || !Number.isFinite(x) ? "—" : Math.round(x).toLocaleString("en-US");
/** Milliseconds with the precision they deserve: 0.83, 12.4, 1,520. */
const ms = (x: number | null | undefined) =>
  x == null || !Number.isFinite(x) ? "—" : x >= 100 ? n0(x) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
const reps = (n: number) => `${n} rep${n === 1 ? "" : "s"}`;
const table = (head: string[], rows: string[][]) =>
  [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`, ...rows.map((r) => `| ${r.join(" | ")} |`)].join(
    "\n",
  );

function targetsSection(s: Summary): string {
  const mark = (met: boolean | null) => (met === null ? "not measured" : met ? "**met**" : "**missed**");
  return [
    "### Targets (issue 10, this 2-core machine)",
    "",
    table(
      ["target", "measured", "verdict"],
      s.targets.map((t) => [t.what, t.measured, mark(t.met)]),
    ),
  ].join("\n");
}

/** One measure of the peers' table: its cell per system, and Taskjet ÷ each peer. */
interface Measure {
  name: string;
  value(p: PeerSystem): number | undefined;
  flag?(p: PeerSystem): string;
  format(x: number | undefined): string;
}

const rateFlag = (c: RateCell | undefined) => (c?.capped ? " ᶜ" : "");
const latFlag = (c: LatencyCell | undefined) => (c?.saturated ? " ˢ" : "");

const MEASURES: Measure[] = [
  { name: "e2e jobs/s, c=50", value: (p) => p.e2e50?.value, flag: (p) => rateFlag(p.e2e50), format: n0 },
  { name: "e2e jobs/s, c=200", value: (p) => p.e2e200?.value, flag: (p) => rateFlag(p.e2e200), format: n0 },
  ...(["p50", "p95", "p99"] as const).map(
    (q): Measure => ({
      name: `trigger→start ${q}, ms`,
      value: (p) => p.lat50?.start[q],
      flag: (p) => latFlag(p.lat50),
      format: ms,
    }),
  ),
  ...(["p50", "p99"] as const).map(
    (q): Measure => ({
      name: `run-and-wait ${q}, ms`,
      value: (p) => p.lat50?.runAndWait[q],
      flag: (p) => latFlag(p.lat50),
      format: ms,
    }),
  ),
  { name: "enqueue bulk, jobs/s", value: (p) => p.bulk?.value, flag: (p) => rateFlag(p.bulk), format: n0 },
  { name: "enqueue seq, jobs/s", value: (p) => p.seq?.value, format: n0 },
];

function peersSection(results: SuiteResults, s: Summary): string {
  const record = results.scenarios.find((x) => x.id === "peers");
  const head = "### Side by side with the peers (one driver, one run)";
  if (!s.peers.length) {
    return [head, "", `Not measured in this run: ${record?.reason ?? record?.status ?? "peers not selected"}.`].join(
      "\n",
    );
  }
  const systems = orderedPeers(s.peers);
  const taskjet = systems.find((p) => p.key === TASKJET);
  const others = systems.filter((p) => p.key !== TASKJET);
  const repCount = Math.max(...systems.map((p) => p.e2e50?.reps ?? p.lat50?.reps ?? 0));
  const rows = MEASURES.map((m) => {
    const cells = systems.map((p) => `${m.format(m.value(p))}${m.flag?.(p) ?? ""}`);
    const t = taskjet ? m.value(taskjet) : undefined;
    const ratios = taskjet ? others.map((p) => ratioText(t, m.value(p)) ?? "—") : [];
    return [m.name, ...cells, ...ratios];
  });
  const saturated = systems.filter((p) => p.lat50?.saturated);
  const capped = systems.filter((p) => [p.e2e50, p.e2e200, p.bulk].some((c) => c?.capped));
  return [
    head,
    "",
    "Every system through `../shared/peers/run-all.sh` and its driver (`lib/driver.js`), Taskjet through " +
      "`test/bench/peers/bench-taskjet.js`: no-op handler, ~100-byte JSON payload, producer and worker in separate " +
      "Node processes with default flags, a fresh store per test; Taskjet's engine, a process of its own like the " +
      `peers' servers, is started per test${taskjet?.engine ? ` (${taskjet.engine})` : ""}. ` +
      `Median of ${reps(repCount)}. ` +
      "Ratios are Taskjet ÷ peer: above 1× Taskjet is faster on rates, below 1× it is faster on latencies.",
    "",
    table(
      ["measure", ...systems.map((p) => `${p.name} ${p.version}`), ...others.map((p) => `Taskjet ÷ ${p.name}`)],
      rows,
    ),
    "",
    ...(capped.length ? [`ᶜ time-capped (rate = completed ÷ cap): ${capped.map((p) => p.name).join(", ")}.`, ""] : []),
    ...(saturated.length
      ? [
          `ˢ saturated: fewer than 90 % of the offered 200 jobs/s completed in time (${saturated
            .map((p) => `${p.name}: ${n0(p.lat50?.achievedRate)}/s`)
            .join(", ")}), so its latencies are queueing delay, not pickup latency.`,
          "",
        ]
      : []),
    "Latency: open-loop trickle of 200 jobs/s, worker concurrency 50, 200 warm-up jobs; trigger→start = handler " +
      "start − timestamp before the add call; run-and-wait = completion seen by the producer − the same timestamp " +
      "(pg-boss and graphile-worker have no completion push: the driver polls every 10 ms).",
  ].join("\n");
}

function taskjetSection(s: Summary): string {
  const out: string[] = ["### Taskjet's own scenarios", ""];
  if (s.throughput.length) {
    out.push(
      "Throughput (`throughput.ts`): engine, one worker and the client as three processes, no-op tasks, 1,000 in " +
        "flight (`tj.run()` each), time from the first trigger to the last completion seen by the client. Others' " +
        "CPU: what the machine spent on processes not of the bench meanwhile (`/proc/stat` minus ours).",
      "",
      table(
        ["nodes", "slots", "tasks", "tasks/s (median)", "min–max", "reps", "load before", "others' CPU, cores"],
        s.throughput.map((t) => [
          t.replicas === 3 ? "3 (R3)" : "1 (R1)",
          String(t.slots),
          n0(t.n),
          n0(t.median),
          `${n0(t.min)}–${n0(t.max)}`,
          String(t.reps),
          t.loadBefore.join("; "),
          t.otherCores.map((x) => x.toFixed(2)).join("; "),
        ]),
      ),
      "",
    );
  }
  if (s.latency.length) {
    out.push(
      "Latency at fixed rates (`throughput.ts --phases latency`): open loop, run i triggered at T0 + i/rate " +
        "whatever happened before (no coordinated omission), 100 slots. Offered = triggers issued per second; " +
        "completed = results seen per second. Where completed falls under 90 % of the rate the run is marked " +
        "saturated: its percentiles are queueing delay. A run never seen done is one whose `tj.run()` had not " +
        "resolved 60 s after the last trigger.",
      "",
      table(
        [
          "nodes",
          "rate/s",
          "runs",
          "offered / completed per s",
          "trigger→start p50 / p95 / p99 ms",
          "run-and-wait p50 / p95 / p99 ms",
          "load before",
          "others' CPU, cores",
        ],
        s.latency.map((l) => [
          l.replicas === 3 ? "3 (R3)" : "1 (R1)",
          n0(l.rate),
          n0(l.n),
          `${n0(l.offeredRate)} / ${n0(l.achievedRate)}${l.saturated ? " (saturated)" : ""}${l.notDone ? ` (${l.notDone} never seen done)` : ""}`,
          `${ms(l.start.p50)} / ${ms(l.start.p95)} / ${ms(l.start.p99)}`,
          `${ms(l.runAndWait.p50)} / ${ms(l.runAndWait.p95)} / ${ms(l.runAndWait.p99)}`,
          l.loadBefore,
          l.otherCores.toFixed(2),
        ]),
      ),
      "",
    );
  }
  const rows: string[][] = [];
  if (s.enqueue) {
    rows.push([
      "Bulk enqueue (`enqueue.ts`, `runManyNoWait`)",
      `${n0(s.enqueue.n)} runs in batches of ${n0(s.enqueue.batch)}, engine on`,
      `${n0(s.enqueue.median)} runs/s (${n0(s.enqueue.min)}–${n0(s.enqueue.max)}, ${reps(s.enqueue.reps)})`,
    ]);
  }
  if (s.fanOut) {
    const f = s.fanOut;
    rows.push([
      "Fan-out (`flows.ts`)",
      `1 parent → ${n0(f.children)} children (\`ctx.bulkRunChildrenNoWait\`, then every result), median of ${reps(f.reps)}`,
      `children spawned ${ms(f.spawnMs)} ms after the parent started, all done at ${ms(f.childrenDoneMs)} ms ` +
        `(${n0(f.childrenPerS)} children/s), parent done at ${ms(f.parentDoneMs)} ms; trigger→parent start ${ms(f.triggerToStartMs)} ms`,
    ]);
  }
  if (s.dag) {
    const d = s.dag;
    rows.push([
      "3-step DAG (`flows.ts`)",
      `extract → transform → load, ${n0(d.n)} runs, ${d.inflight} in flight`,
      `${n0(d.rate)} runs/s (${n0(d.rate * 3)} tasks/s); per run p50 ${ms(d.latency.p50)} / p99 ${ms(d.latency.p99)} ms` +
        `${d.errors ? `; ${d.errors} failed` : ""}; one at a time p50 ${ms(d.single.p50)} / p99 ${ms(d.single.p99)} ms`,
    ]);
  }
  if (s.scale?.queued) {
    const q = s.scale.queued;
    rows.push([
      "Queued runs (`scale.ts`)",
      `${n0(q.n)} runs queued, then drained`,
      `engine RSS max ${n0(q.engineRssMaxMiB)} MiB; drained in ${ms(q.drainS)} s (${n0(q.drainRate)} runs/s)`,
    ]);
  }
  for (const r of s.scale?.recovery ?? []) {
    rows.push([
      "Recovery (`scale.ts`)",
      `engine SIGKILLed and restarted with ${n0(r.active)} ${r.variant} runs`,
      `\`start()\` resolved after ${ms(r.recoveryMs)} ms` +
        (r.firstAssignMs === undefined ? "" : `, first task started ${ms(r.firstAssignMs)} ms after \`start()\``),
    ]);
  }
  if (s.history) {
    const h = s.history;
    rows.push([
      "History replay (`history.ts`)",
      `one run of ${n0(h.events)} events, \`runs.history\` + \`evolve\``,
      `${ms(h.readFoldMs)} ms (read ${ms(h.readMs)}, fold ${ms(h.foldMs)}), median`,
    ]);
    rows.push([
      "Projection rebuild (`history.ts`)",
      s.historyRebuild
        ? `${n0(s.historyRebuild.runs)} runs, ${n0(s.historyRebuild.events)} events, engine stopped`
        : "engine stopped",
      `${n0(h.rebuildEventsPerS)} events/s (read + fold + write), median`,
    ]);
  }
  if (rows.length) out.push(table(["scenario", "what", "result"], rows), "");
  return out.join("\n");
}

function conditionsSection(results: SuiteResults): string {
  const c = results.conditions;
  const dirty = c.git.dirty.length
    ? `, dirty: ${c.git.dirty.length} file(s) (${c.git.dirty.slice(0, 8).join(", ")}${c.git.dirty.length > 8 ? ", …" : ""})`
    : ", clean";
  return [
    "### Conditions",
    "",
    table(
      ["", ""],
      [
        ["date", `${c.date} (suite ${(results.suite.wallS / 60).toFixed(1)} min)`],
        ["git", `\`${c.git.head}\`${dirty}`],
        [
          "built packages",
          c.staleDist.length
            ? `**sources newer than dist in ${c.staleDist.join(", ")}** (the benches run dist)`
            : "dist up to date with the sources",
        ],
        [
          "Node",
          `${c.node}; Taskjet's scenarios with \`--max-semi-space-size=32\`, the peers' driver (Taskjet's adapter too) with default flags`,
        ],
        [
          "nats-server",
          `${c.natsServer}; file store; R1 = one server, R3 = the three nodes of \`deploy/nats/\` with every stream and bucket replicated 3×`,
        ],
        ["JetStream sync", c.syncInterval],
        ["Redis", `${c.redis}; \`--save ""\`, AOF \`everysec\` (the BullMQ AOF row)`],
        ["PostgreSQL", `${c.postgres}; stock config (\`fsync=on\`, \`synchronous_commit=on\`)`],
        ["machine", `${c.machine.cpus} × ${c.machine.cpuModel}, ${c.machine.memGiB} GiB, Linux ${c.machine.kernel}`],
        ["payload", `~${c.payloadBytes}-byte JSON input per task, no-op handler`],
        ["load average at start", `${c.loadAtStart} (1, 5, 15 min); per scenario below`],
      ],
    ),
    "",
    "Scenarios ran one after the other, never two at once, each with its own servers:",
    "",
    table(
      ["scenario", "load before", "wall", "status", "command (from `test/`)"],
      results.scenarios.map((s) => [
        s.title,
        s.loadBefore ?? "—",
        s.wallS === undefined ? "—" : `${s.wallS.toFixed(0)} s`,
        s.status === "ok" ? "ok" : `**${s.status}**${s.reason ? `: ${s.reason}` : ""}`,
        `\`${s.command}\``,
      ]),
    ),
  ].join("\n");
}

/** The generated part of the report; `images` is the path from the Markdown file to the SVGs' folder. */
export function reportBlock(results: SuiteResults, s: Summary, images: string): string {
  const c = results.conditions;
  const lead = results.suite.quick
    ? "**Quick run (`--quick`): every size is reduced; for checking the suite, not for quoting.**"
    : `Measured ${c.date.slice(0, 10)} at \`${c.git.head}\`${c.git.dirty.length ? " (uncommitted changes)" : ""}.`;
  // Other work on the machine lowers every row, Taskjet's and the peers' alike, but not evenly: say so up front.
  const loads = results.scenarios.flatMap((x) => (x.loadBefore ? [Number(x.loadBefore.split(" ")[0])] : []));
  const busiest = loads.length ? Math.max(...loads) : 0;
  const shared =
    busiest > c.machine.cpus
      ? ` The 1-minute load average before a scenario reached ${busiest.toFixed(1)} on ${c.machine.cpus} cores: it ` +
        "counts the scenario before for about a minute, and anything else on the machine; the tables give each " +
        "scenario's load and, for Taskjet's own, the CPU other processes took meanwhile. Ratios within one run hold " +
        "better than absolute numbers."
      : "";
  return [
    "## Results",
    "",
    lead + shared,
    "",
    `![Throughput: Taskjet and the peers](${images}/throughput.svg)`,
    "",
    `![Latency: Taskjet and the peers](${images}/latency.svg)`,
    "",
    targetsSection(s),
    "",
    peersSection(results, s),
    "",
    taskjetSection(s),
    conditionsSection(results),
    "",
    "### Reproduce",
    "",
    "```",
    results.suite.command,
    "```",
    "",
  ].join("\n");
}
