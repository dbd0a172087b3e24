"use strict";
// Taskjet adapter for the shared peer benchmark (/work/shared/peers, contract at the top of lib/driver.js).
//
//   SETS="bullmq-aof" EXTRA=/work/main/test/bench/peers/bench-taskjet.js \
//     EXTRA_ARGS="--tests=enqueue_bulk,enqueue_seq,e2e50,e2e200,lat50" REPS=1 /work/shared/peers/run-all.sh
//
// Uses the built packages (/work/main/{sdk,engine}/dist: run `npm run build` first) against $NATS_URL.
// Processes: the driver (producer: Taskjet client), the driver's forked worker child (Taskjet worker), and the engine
// in a child process of its own, started per test with the test's queue name as its namespace (so every test starts
// from a fresh namespace and fresh engine memory, as the peers start from an emptied store) and warmed up before the
// test (`warmUp`), as the peers' servers are warm. Node runs with default flags everywhere, like the peers.
//
// Mapping: enqueueOne = tj.runNoWait (returns once RunCreated is stored); enqueueBulk = one tj.runManyNoWait call
// per chunk (returns once every RunCreated of the chunk is stored; the SDK pipelines the appends, up to 1024 in
// flight; throws if any element failed); countDone = distinct runs the producer has heard complete (`tj.runs.onEnd`:
// the engine's announcements of run ends, like BullMQ's QueueEvents); waitDone = resolved by that same listener
// (opt.wait=ends, default) or by the SDK's ref.result() (opt.wait=ref: reads the run, then listens for the engine's
// announcement of its end). The retry test's options are not mapped: leave retry50 out of --tests.
//
// For experiments, not for published runs: TJ_BENCH_CPU=1 prints the CPU each process used per test (see below);
// TJ_ENGINE_CONFIG='{"projectionActiveDelayMs":30000}' merges into the engine's configuration;
// TJ_ENGINE_NODE_ARGS='--max-semi-space-size=32' adds node flags to the engine's process.
const path = require("node:path");
const { spawn } = require("node:child_process");
const { pathToFileURL } = require("node:url");
const { main } = require(process.env.PEERS_DRIVER || "/work/shared/peers/lib/driver.js");

const ROOT = path.resolve(__dirname, "..", "..", "..");
const fromRoot = (id) => require(require.resolve(id, { paths: [ROOT] }));
const importDist = (pkg) => import(pathToFileURL(path.join(ROOT, pkg, "dist", "index.js")).href);
const NATS_URL = process.env.NATS_URL || "nats://127.0.0.1:14222";
const TASK = "noop";
const STREAMS = ["TJ_HISTORY", "KV_TJ_RUNS", "KV_TJ_WORKERS", "KV_TJ_DEFS"];
// TJ_BENCH_CPU=1: each process prints the CPU it used during a test (engine and worker from their own start; the
// producer and nats-server from `prepare`), to find which one saturates without a profiler's overhead.
const REPORT_CPU = process.env.TJ_BENCH_CPU === "1";
// Runs the engine child does before each test (`warmUp`); TJ_ENGINE_WARM=0 starts each test with a cold engine.
const WARM_RUNS = Number(process.env.TJ_ENGINE_WARM ?? 5000);

function cpuLine(who, since) {
  const u = process.cpuUsage(since);
  return `[taskjet cpu] ${who}: ${((u.user + u.system) / 1e6).toFixed(2)} s`;
}

/** Seconds of CPU the process listening on the NATS port has used (Linux /proc), or NaN. */
function natsServerCpuS() {
  try {
    const fs = require("node:fs");
    const port = new URL(NATS_URL).port;
    for (const pid of fs.readdirSync("/proc")) {
      if (!/^\d+$/.test(pid)) continue;
      let cmd;
      try {
        cmd = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8");
      } catch {
        continue;
      }
      if (!cmd.startsWith("/usr/sbin/nats-server") && !cmd.includes("nats-server\0")) continue;
      if (!cmd.split("\0").includes(port)) continue;
      const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
      return (Number(stat[11]) + Number(stat[12])) / 100; // utime + stime, in clock ticks of 10 ms
    }
  } catch {}
  return Number.NaN;
}

/** The engine child (`--tj-engine <ns>`): one engine for the test's namespace, stopped over IPC. */
async function engineMain(ns) {
  const { createEngine } = await importDist("engine");
  const warmNs = `${ns}_warm`;
  const engine = createEngine({
    servers: [NATS_URL],
    namespaces: WARM_RUNS > 0 ? [ns, warmNs] : [ns],
    logLevel: "warn",
    ...JSON.parse(process.env.TJ_ENGINE_CONFIG || "{}"),
  });
  await engine.start();
  if (WARM_RUNS > 0) await warmUp(warmNs, WARM_RUNS);
  const cpuFrom = process.cpuUsage();
  if (REPORT_CPU) process.on("exit", () => console.error(cpuLine(`engine ${ns}`, cpuFrom)));
  process.on("disconnect", () => process.exit(2));
  process.on("message", (m) => {
    if (m === "stop")
      engine.stop().then(
        () => process.exit(0),
        () => process.exit(1),
      );
  });
  process.send("ready");
}

/**
 * Runs `n` no-op tasks through the engine in a namespace of their own (a worker in this process), so the test meets
 * an engine whose code V8 has compiled, as a long-running engine is, the way the peers' Redis and PostgreSQL are warm.
 */
async function warmUp(ns, n) {
  const { Taskjet } = await importDist("sdk");
  const tj = await Taskjet.connect({ servers: NATS_URL, namespace: ns, name: "bench-warm-up" });
  const task = tj.task({ name: TASK, fn: async () => ({}) });
  const worker = await tj.worker("warm-up", { workflows: [task], slots: 50 });
  await worker.start();
  let ended = 0;
  let allEnded;
  const done = new Promise((resolve) => {
    allEnded = resolve;
  });
  const stop = tj.runs.onEnd(() => {
    if (++ended === n) allEnded();
  });
  for (let i = 0; i < n; i += 1000) {
    const inputs = [];
    for (let k = i; k < Math.min(n, i + 1000); k++)
      inputs.push({ input: { i: k, user: "user-warm", kind: "bench.noop" } });
    await tj.runManyNoWait(TASK, inputs);
  }
  await done;
  stop();
  await tj.close();
}

let admin; // { nc, jsm } for purges
let engineChild;
let tj; // producer client of the current test
let reader; // the producer's completion reader of the current test
let waitMode = "ends";
let cpuFrom; // the producer's and nats-server's CPU at `prepare`

function startEngine(ns) {
  const nodeArgs = (process.env.TJ_ENGINE_NODE_ARGS || "").split(" ").filter(Boolean);
  const child = spawn(process.execPath, [...process.execArgv, ...nodeArgs, __filename, "--tj-engine", ns], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
    env: process.env,
  });
  const exited = new Promise((r) => child.once("exit", r));
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("engine did not start within 30 s")), 30000);
    child.once("message", () => {
      clearTimeout(t);
      resolve({ child, exited });
    });
    exited.then(
      (code) => reject(new Error(`engine exited with ${code}`)),
      () => undefined,
    );
  });
}

async function stopEngine() {
  if (!engineChild) return;
  const { child, exited } = engineChild;
  engineChild = undefined;
  child.send("stop");
  const t = setTimeout(() => child.kill("SIGKILL"), 15000);
  await exited;
  clearTimeout(t);
}

/** Distinct runs heard completing (`tj.runs.onEnd`, the engine's announcements); resolves waiters by run id. */
function startReader() {
  const done = new Set();
  const waiters = new Map();
  const stop = tj.runs.onEnd((end) => {
    if (end.status !== "COMPLETED" || done.has(end.runId)) return;
    done.add(end.runId);
    const w = waiters.get(end.runId);
    if (w) {
      waiters.delete(end.runId);
      w.resolve();
    }
  });
  return {
    done,
    wait(runId) {
      if (done.has(runId)) return Promise.resolve();
      return new Promise((resolve, reject) => waiters.set(runId, { resolve, reject }));
    },
    abort() {
      for (const w of waiters.values()) w.reject(new Error("aborted"));
      waiters.clear();
    },
    stop,
  };
}

const adapter = {
  name: "taskjet",
  version: require(path.join(ROOT, "sdk", "package.json")).version,
  describe: (c) => ({
    backend: "nats-server 2.9.10 JetStream (file store, R1, default sync_interval 2 min), one engine process",
    worker: "tj.worker(slots = c), no-op task returning {}",
    enqueue: "runManyNoWait per chunk of 1,000 (one bulk call, appends pipelined by the SDK)",
    runAndWait: `${c.opts?.wait || "ends"}: ${
      c.opts?.wait === "ref"
        ? "SDK ref.result() (listens for the run's end, then reads the run)"
        : "one tj.runs.onEnd listener per test (the engine's announcements of run ends), resolving waiters by run id"
    }`,
    node: "default flags",
    engine:
      WARM_RUNS > 0
        ? `warmed up by ${WARM_RUNS.toLocaleString("en-US")} runs of another namespace first`
        : "cold: no warm-up",
  }),

  async init(c) {
    waitMode = c.opts?.wait || "ends";
    const { connect } = fromRoot("@nats-io/transport-node");
    const { jetstreamManager } = fromRoot("@nats-io/jetstream");
    const nc = await connect({ servers: NATS_URL, name: "bench-admin", noAsyncTraces: true });
    admin = { nc, jsm: await jetstreamManager(nc) };
  },
  async reset() {
    for (const s of STREAMS) await admin.jsm.streams.purge(s).catch(() => undefined); // absent before the 1st engine
  },
  async prepare(queue) {
    await stopEngine();
    engineChild = await startEngine(queue);
    const { Taskjet } = await importDist("sdk");
    tj = await Taskjet.connect({ servers: NATS_URL, namespace: queue, name: "bench-producer" });
    reader = startReader();
    if (REPORT_CPU) cpuFrom = { node: process.cpuUsage(), nats: natsServerCpuS() };
  },
  async enqueueOne(data) {
    return tj.runNoWait(TASK, data);
  },
  async enqueueBulk(datas) {
    const refs = await tj.runManyNoWait(
      TASK,
      datas.map((d) => ({ input: d })),
    );
    const failed = refs.find((r) => r instanceof Error);
    if (failed) throw failed;
    return refs;
  },
  waitDone(ref) {
    return waitMode === "ref" ? ref.result() : reader.wait(ref.runId);
  },
  async countDone() {
    return reader.done.size;
  },
  abortWaits() {
    reader?.abort();
  },
  async cleanup() {
    if (REPORT_CPU && cpuFrom) {
      console.error(cpuLine("producer", cpuFrom.node));
      console.error(`[taskjet cpu] nats-server: ${(natsServerCpuS() - cpuFrom.nats).toFixed(2)} s`);
      cpuFrom = undefined;
    }
    await reader?.stop();
    await tj?.close();
    tj = undefined;
    reader = undefined;
    await stopEngine();
  },
  async close() {
    await stopEngine();
    await admin?.nc.close();
  },

  // ---- worker side (the driver's forked child)
  async workerInit() {
    process.on("disconnect", () => process.exit(2));
  },
  async startWorker(queue, concurrency, handle) {
    const { Taskjet } = await importDist("sdk");
    const wtj = await Taskjet.connect({ servers: NATS_URL, namespace: queue, name: "bench-worker" });
    const task = wtj.task({
      name: TASK,
      fn: async (input, ctx) => {
        await handle(input, ctx.workflowRunId());
        return {};
      },
    });
    const worker = await wtj.worker("bench", { workflows: [task], slots: concurrency });
    await worker.start();
    const cpuFrom = process.cpuUsage();
    return {
      stop: () => {
        if (REPORT_CPU) console.error(cpuLine(`worker ${queue}`, cpuFrom));
        return wtj.close();
      },
    };
  },
  async workerClose() {},
};

if (process.argv[2] === "--tj-engine") {
  engineMain(process.argv[3]).catch((err) => {
    console.error("[taskjet engine]", err);
    process.exit(1);
  });
} else {
  main(adapter, __filename);
}
