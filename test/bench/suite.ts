/**
 * The whole benchmark suite in one command: every scenario (`lib/scenarios.ts`) as its own child process, one after
 * the other, then one report: `results/suite-<stamp>/` with `results.json`, `benchmarks.md`, `throughput.svg`,
 * `latency.svg` and a log per scenario.
 *
 *   cd test && npm run bench:suite -- [--quick] [--only a,b] [--skip-peers] [--publish]
 *
 *   --quick             every size reduced (minutes, not for quoting)
 *   --only a,b          these scenarios only: an id (`latency-500`) or the part before its dash (`latency`)
 *   --skip-peers        leave out the peers' harness (`../shared/peers/run-all.sh`)
 *   --peer-reps N       its repetitions (default 1 with --quick, else 3)
 *   --peer-sets "..."   its sets (default "bullmq-aof graphile-tuned pgboss-tuned"; bullmq-noaof is another)
 *   --publish           also write the report into docs/benchmarks.md (between its markers) and docs/benchmarks/*.svg
 *   --from <dir>        render (and --publish) an earlier suite folder again instead of running anything
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join, relative } from "node:path";
import { parseArgs } from "node:util";
import { latencyChart, throughputChart } from "./lib/charts.js";
import { conditions, load } from "./lib/conditions.js";
import { DEFAULT_SETS, latestPeerRun, readPeerRuns } from "./lib/peers.js";
import { publish } from "./lib/publish.js";
import { reportBlock } from "./lib/report.js";
import { runLogged } from "./lib/run-logged.js";
import { type Invocation, type RunOptions, SCENARIOS, type Scenario, TEST_DIR } from "./lib/scenarios.js";
import { type ScenarioRecord, type SuiteResults, summarize } from "./lib/summary.js";

const { values: opt } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    only: { type: "string" },
    "skip-peers": { type: "boolean", default: false },
    "peer-reps": { type: "string" },
    "peer-sets": { type: "string", default: DEFAULT_SETS },
    publish: { type: "boolean", default: false },
    from: { type: "string" },
  },
  strict: true,
});
const log = (line: string) => process.stderr.write(`[suite] ${line}\n`);
/** Lets the machine settle between scenarios (exiting servers, dirty pages). */
const SETTLE_MS = 2000;

function selected(): Scenario[] {
  const only = opt.only?.split(",").filter(Boolean);
  const picked = SCENARIOS.filter((s) => !only || only.some((o) => s.id === o || s.id.split("-")[0] === o));
  const unknown = only?.filter((o) => !SCENARIOS.some((s) => s.id === o || s.id.split("-")[0] === o));
  if (unknown?.length)
    throw new Error(`unknown scenario ${unknown.join(", ")}: ${SCENARIOS.map((s) => s.id).join(", ")}`);
  return picked.filter((s) => !(opt["skip-peers"] && s.id === "peers"));
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

/** The invocation as one would type it from test/. */
function shown(inv: Invocation): string {
  const env = Object.entries(inv.env ?? {}).map(([k, v]) => `${k}=${/[\s"]/.test(v) ? JSON.stringify(v) : v}`);
  const cmd = inv.cmd === process.execPath ? "node" : inv.cmd;
  const args = inv.args.map((a) => (a.startsWith("/") ? relative(TEST_DIR, a) : a));
  return [...env, cmd, ...args].join(" ");
}

/** What to reproduce this run with: the suite's own options, not the folder it rendered from. */
function reproduce(o: RunOptions, peers: boolean): string {
  const args = [
    ...(o.quick ? ["--quick"] : []),
    ...(opt.only ? ["--only", opt.only] : []),
    ...(opt["skip-peers"] ? ["--skip-peers"] : []),
    ...(peers ? ["--peer-reps", String(o.peerReps), "--peer-sets", JSON.stringify(o.peerSets)] : []),
  ];
  return `cd test && npm run bench:suite --${args.length ? ` ${args.join(" ")}` : ""}`;
}

function readResult(s: Scenario, out: string): unknown {
  if (s.id === "peers") {
    const run = latestPeerRun(out);
    const runs = run ? readPeerRuns(run) : {};
    return Object.keys(runs).length ? runs : undefined;
  }
  try {
    return JSON.parse(readFileSync(out, "utf8"));
  } catch {
    return undefined;
  }
}

async function runAll(dir: string, o: RunOptions): Promise<{ results: SuiteResults; interrupted: boolean }> {
  const startedAt = new Date();
  const scenarios = selected();
  const withPeers = scenarios.some((s) => s.id === "peers");
  const results: SuiteResults = {
    suite: {
      startedAt: startedAt.toISOString(),
      finishedAt: "",
      wallS: 0,
      quick: o.quick,
      command: reproduce(o, withPeers),
      peerReps: o.peerReps,
      peerSets: o.peerSets,
    },
    conditions: conditions(),
    scenarios: [],
  };
  if (results.conditions.staleDist.length) {
    log(
      `warning: sources newer than dist in ${results.conditions.staleDist.join(", ")}: \`npx turbo run build\` first?`,
    );
  }
  const save = () => {
    results.suite.finishedAt = new Date().toISOString();
    results.suite.wallS = (Date.now() - startedAt.getTime()) / 1000;
    writeFileSync(join(dir, "results.json"), JSON.stringify(results, null, 1));
  };
  for (const [i, s] of scenarios.entries()) {
    const out = s.id === "peers" ? join(dir, "peers") : join(dir, `${s.id}.json`);
    const inv = s.invocation(out, o);
    const record: ScenarioRecord = { id: s.id, title: s.title, command: shown(inv), status: "skipped" };
    results.scenarios.push(record);
    const reason = s.unavailable?.();
    if (reason) {
      record.reason = reason;
      log(`${s.id}: skipped: ${reason}`);
      save();
      continue;
    }
    if (i > 0) await new Promise((r) => setTimeout(r, SETTLE_MS));
    record.loadBefore = load();
    record.startedAt = new Date().toISOString();
    log(`${i + 1}/${scenarios.length} ${s.id} (load ${record.loadBefore}): ${record.command}`);
    const outcome = await runLogged(inv, TEST_DIR, join(dir, "logs", `${s.id}.log`), s.timeoutMin(o) * 60_000);
    record.wallS = outcome.wallS;
    const result = readResult(s, out);
    if (result !== undefined) record.result = result;
    const ok = outcome.code === 0 && result !== undefined;
    record.status = ok ? "ok" : "failed";
    if (!ok) {
      record.reason = outcome.timedOut
        ? `timed out after ${s.timeoutMin(o)} min`
        : outcome.code !== 0
          ? `exit ${outcome.code ?? outcome.signal}${result === undefined ? "" : " (partial results kept)"}`
          : "no results written";
    }
    log(`${s.id}: ${record.status}${record.reason ? ` (${record.reason})` : ""} in ${outcome.wallS.toFixed(0)} s`);
    save();
    if (outcome.interrupted) {
      log("interrupted: reporting what ran");
      save();
      return { results, interrupted: true };
    }
  }
  save();
  return { results, interrupted: false };
}

/** Writes the report and the plots into `dir`; publishes them when asked. */
function render(dir: string, results: SuiteResults, publishing: boolean): void {
  const summary = summarize(results);
  const c = results.conditions;
  const subtitle =
    `${results.suite.quick ? "QUICK RUN (reduced sizes) · " : ""}${c.date.slice(0, 16).replace("T", " ")} UTC · ` +
    `git ${c.git.head}${c.git.dirty.length ? "+dirty" : ""} · ${c.machine.cpus} × ${c.machine.cpuModel} · ` +
    `nats-server ${c.natsServer} · Node ${c.node}`;
  const plots = {
    "throughput.svg": throughputChart(summary, subtitle),
    "latency.svg": latencyChart(summary, subtitle),
  };
  for (const [name, svg] of Object.entries(plots)) writeFileSync(join(dir, name), svg);
  writeFileSync(join(dir, "benchmarks.md"), `# Taskjet benchmark suite\n\n${reportBlock(results, summary, ".")}`);
  log(`report: ${join(dir, "benchmarks.md")}`);
  for (const t of summary.targets) {
    log(`  ${t.met === null ? "—     " : t.met ? "met   " : "MISSED"} ${t.what}: ${t.measured}`);
  }
  if (publishing) {
    const docs = join(TEST_DIR, "..", "docs");
    for (const f of publish(docs, reportBlock(results, summary, "benchmarks"), plots)) log(`published ${f}`);
  }
}

async function main(): Promise<void> {
  if (opt.from) {
    render(opt.from, JSON.parse(readFileSync(join(opt.from, "results.json"), "utf8")) as SuiteResults, opt.publish);
    return;
  }
  const quick = Boolean(opt.quick);
  const o: RunOptions = {
    quick,
    peerReps: Number(opt["peer-reps"] ?? (quick ? 1 : 3)),
    peerSets: String(opt["peer-sets"]),
    ports: { redis: await freePort(), nats: await freePort() },
  };
  const dir = join(TEST_DIR, "bench", "results", `suite-${new Date().toISOString().replace(/[:.]/g, "-")}`);
  mkdirSync(join(dir, "logs"), { recursive: true });
  log(`writing ${dir}`);
  const { results, interrupted } = await runAll(dir, o);
  // Half a run would replace the published one: it stays in its folder, for `--from` once complete.
  if (interrupted && opt.publish) log("interrupted: not publishing");
  render(dir, results, opt.publish && !interrupted);
  log(`done in ${(results.suite.wallS / 60).toFixed(1)} min`);
  if (results.scenarios.some((s) => s.status === "failed")) process.exitCode = 1;
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
