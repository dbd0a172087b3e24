/**
 * Paging runs through the REST API with `--runs` (100,000) projected runs: what `GET /api/v1/namespaces/:ns/runs`
 * costs on the first page, deep in the list (page N through cursors), with filters, with counts, and what its index
 * costs to load and hold; beside it, `tj.runs.list` (the SDK's full read of the projection) for comparison.
 *
 * The runs are written straight into `TJ_RUNS` as finished states (like a rebuild would), 24 hours of them, a tenth
 * FAILED, three tasks, metadata `tenant` over 50 values: what matters here is the projection's size, not how the runs
 * got there. One process, its own nats-server; prints a Markdown table (and JSON with `--json`).
 *
 *   node --max-semi-space-size=32 --expose-gc --import tsx bench/runs-paging.ts [--runs 100000] [--reps 20] [--json out.json]
 */
import { writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { parseArgs } from "node:util";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { createEngine } from "@taskjet/engine";
import { keys, type RunState } from "@taskjet/schemas";
import { Taskjet } from "@taskjet/sdk";
import { pino } from "pino";
import { startNatsServer } from "../harness/nats-server.js";

const { values: opt } = parseArgs({
  options: {
    runs: { type: "string", default: "100000" },
    reps: { type: "string", default: "20" },
    json: { type: "string" },
  },
  strict: true,
});
const RUNS = Number(opt.runs);
const REPS = Number(opt.reps);
const NS = "bench";
const log = (line: string) => process.stderr.write(`${line}\n`);

interface Stat {
  median: number;
  p95: number;
  min: number;
  max: number;
}
function stat(xs: number[]): Stat {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))] as number;
  return { median: at(0.5), p95: at(0.95), min: s[0] as number, max: s[s.length - 1] as number };
}
async function repeat(fn: () => Promise<unknown>, reps = REPS): Promise<Stat> {
  await fn();
  const ms: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    ms.push(performance.now() - t0);
  }
  return stat(ms);
}

/** A finished run as the projector writes it: ~700 bytes of JSON. */
function runState(i: number, createdMs: number): RunState {
  const runId = `r${String(i).padStart(9, "0")}`;
  const failed = i % 10 === 0;
  const taskName = ["ingest", "resize", "notify"][i % 3] as string;
  const at = new Date(createdMs).toISOString();
  const end = new Date(createdMs + 40).toISOString();
  return {
    v: 1,
    runId,
    workflowName: taskName,
    status: failed ? "FAILED" : "COMPLETED",
    input: { i, url: `https://example.com/items/${i}` },
    additionalMetadata: { tenant: `t${i % 50}`, source: "bench" },
    priority: 1,
    trigger: { kind: "run" },
    tasks: [
      {
        taskRunId: `${runId}-0`,
        taskName,
        status: failed ? "FAILED" : "COMPLETED",
        attempt: 0,
        workerId: "w1",
        workerName: "bench-worker",
        queuedAt: at,
        startedAt: at,
        finishedAt: end,
        ...(failed
          ? { error: { name: "Error", message: "upstream refused", stack: "Error: upstream refused\n    at x" } }
          : { output: { ok: true, bytes: i * 7 } }),
      },
    ],
    ...(failed ? { error: { name: "Error", message: "upstream refused" } } : { output: { ok: true, bytes: i * 7 } }),
    createdAt: at,
    startedAt: at,
    finishedAt: end,
    lastSeq: i + 1,
    eventCount: 3,
  };
}

const server = await startNatsServer();
const results: Record<string, unknown> = {};
try {
  const nc = await connect({ servers: server.url });
  // An engine first: it provisions the streams and buckets.
  const logger = pino({ level: "warn" }, pino.destination(2));
  const provisioner = createEngine({ servers: [server.url], namespaces: [NS], http: "off" }, { logger });
  await provisioner.start();
  await provisioner.stop();

  log(`writing ${RUNS} run states into TJ_RUNS ...`);
  const kv = await new Kvm(nc).open("TJ_RUNS");
  const start = Date.now() - 24 * 3600_000;
  const t0 = performance.now();
  let bytes = 0;
  for (let i = 0; i < RUNS; i += 1000) {
    await Promise.all(
      Array.from({ length: Math.min(1000, RUNS - i) }, (_, k) => {
        const n = i + k;
        const json = JSON.stringify(runState(n, start + Math.floor((n / RUNS) * 24 * 3600_000)));
        bytes += json.length;
        return kv.put(keys.run(NS, `r${String(n).padStart(9, "0")}`), json);
      }),
    );
  }
  results.seed = { runs: RUNS, ms: Math.round(performance.now() - t0), avgStateBytes: Math.round(bytes / RUNS) };
  log(`seeded in ${results.seed && (results.seed as { ms: number }).ms} ms`);

  // The engine whose REST API is measured; its run index loads as it starts.
  global.gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  const engine = createEngine({ servers: [server.url], namespaces: [NS], http: "127.0.0.1:0" }, { logger });
  const tStart = performance.now();
  await engine.start();
  const tj = await Taskjet.connect({ servers: server.url, namespace: NS });
  const { token } = await tj.apiTokens.create({ name: "bench" });
  const base = `http://${engine.httpAddress()}/api/v1/namespaces/${NS}`;
  const get = async (path: string) => {
    const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}` } });
    if (res.status !== 200) throw new Error(`${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as {
      runs: { runId: string }[];
      nextCursor: string | null;
      counts?: Record<string, number>;
    };
  };
  // The first list waits for the index: the time to load 100,000 states from TJ_RUNS.
  let first: Awaited<ReturnType<typeof get>> | undefined;
  for (;;) {
    try {
      first = await get("/runs?limit=50");
      break;
    } catch (err) {
      if (!/401/.test(String(err))) throw err; // the token is not followed yet
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  const indexReadyMs = Math.round(performance.now() - tStart);
  global.gc?.();
  const heapIndex = process.memoryUsage().heapUsed - heapBefore;
  results.index = {
    engineStartToFirstPageMs: indexReadyMs,
    heapMiB: Math.round((heapIndex / 1024 / 1024) * 10) / 10,
    bytesPerRun: Math.round(heapIndex / RUNS),
  };
  if (first?.runs.length !== 50) throw new Error("first page is not 50 runs");

  // A cursor deep in the list: walk to page 1000 (50,000 runs in) once, then measure that page.
  let cursor = first.nextCursor;
  const walk0 = performance.now();
  let pages = 1;
  let deepCursor: string | null = null;
  while (cursor && pages < 1000) {
    const page = await get(`/runs?limit=50&cursor=${encodeURIComponent(cursor)}`);
    cursor = page.nextCursor;
    pages++;
    if (pages === 1000) deepCursor = cursor;
  }
  results.walk = { pages, ms: Math.round(performance.now() - walk0), msPerPage: (performance.now() - walk0) / pages };
  const c = encodeURIComponent(deepCursor ?? "");
  results.pages = {
    first50: await repeat(() => get("/runs?limit=50")),
    first500: await repeat(() => get("/runs?limit=500")),
    page1000: await repeat(() => get(`/runs?limit=50&cursor=${c}`)),
    failedOnly: await repeat(() => get("/runs?limit=50&status=FAILED")),
    taskAndTenant: await repeat(() => get("/runs?limit=50&task=resize&metadata=tenant%3Dt7")),
    lastHour: await repeat(() => get("/runs?limit=50&since=1h")),
    noMatch: await repeat(() => get("/runs?limit=50&metadata=tenant%3Dnobody")),
    withCounts: await repeat(() => get("/runs?limit=50&counts=true")),
  };
  // For comparison: the SDK's list reads the whole projection on every call.
  results.sdkListAll = await repeat(() => tj.runs.list({ statuses: ["FAILED"], limit: 50 }), 3);

  await tj.close();
  await engine.stop();
  await nc.close();
} finally {
  await server.stop();
}

const row = (name: string, s: Stat) =>
  `| ${name} | ${s.median.toFixed(1)} | ${s.p95.toFixed(1)} | ${s.min.toFixed(1)} | ${s.max.toFixed(1)} |`;
const pages = results.pages as Record<string, Stat>;
process.stdout.write(
  [
    `runs: ${RUNS}, reps: ${REPS}, cpus: ${cpus().length}, load: ${loadavg()
      .map((l) => l.toFixed(1))
      .join(" ")}`,
    `seed: ${JSON.stringify(results.seed)}`,
    `index: ${JSON.stringify(results.index)}`,
    `walk (cursor after cursor): ${JSON.stringify(results.walk)}`,
    "",
    "| request (ms, over HTTP) | median | p95 | min | max |",
    "| --- | --- | --- | --- | --- |",
    ...Object.entries(pages).map(([k, s]) => row(k, s)),
    row("sdk runs.list (full read)", results.sdkListAll as Stat),
    "",
  ].join("\n"),
);
if (opt.json) writeFileSync(opt.json, JSON.stringify(results, null, 2));
process.exit(0);
