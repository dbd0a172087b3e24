/**
 * Benchmark process: the client. Triggers runs and observes every completion.
 *
 * Wait modes (how the client learns a run finished):
 * - `run`: `tj.run()` per run (the SDK subscribes to the run's subject before appending `RunCreated`);
 * - `ref`: `tj.runNoWait()`, then `ref.result()` (the SDK re-reads the run's history, then listens);
 * - `sub`: `tj.runNoWait()` plus ONE wildcard core-NATS subscription on the namespace's history subjects that counts
 *   `TaskCompleted` per distinct run (not an SDK API: what the design's "one subscription for many waiters" costs).
 */
import type { Msg } from "@nats-io/transport-node";
import { Taskjet } from "@taskjet/sdk";
import { serve, watchConnection } from "../lib/child.js";
import { benchInput, nowMs, percentiles } from "../lib/clock.js";
import { type Flow, RATE_KEY, RATE_LIMIT, usesRateLimit } from "../lib/flow.js";
import { windowed } from "../lib/windowed.js";

type Mode = "run" | "ref" | "sub" | "ends";

let tj: Taskjet | undefined;
let ns = "";
let taskName = "";

function client(): Taskjet {
  if (!tj) throw new Error("not connected");
  return tj;
}

/** Counts distinct runs whose `TaskCompleted` was heard on the namespace's history subjects. */
function completionCounter(target: number): { done: Promise<void>; heard: () => number; stop: () => void } {
  const decoder = new TextDecoder();
  const completed = new Set<string>();
  let resolve: () => void = () => undefined;
  const done = new Promise<void>((r) => {
    resolve = r;
  });
  const sub = client().connection.nc.subscribe(`tj.${ns}.hist.*`, {
    callback: (_err: Error | null, msg: Msg) => {
      const event = JSON.parse(decoder.decode(msg.data)) as { type: string; runId: string };
      if (event.type !== "TaskCompleted" || completed.has(event.runId)) return;
      completed.add(event.runId);
      if (completed.size === target) resolve();
    },
  });
  return { done, heard: () => completed.size, stop: () => sub.unsubscribe() };
}

/**
 * `ends` mode: one `runs.onEnd` listener for every run (as the peers' adapter counts), each trigger waiting for its run's
 * end through it; the runs in flight stay bounded like `run`, without a subscription per run.
 */
const endWaiters = new Map<string, () => void>();
const endedEarly = new Set<string>();
/** The listener lives as long as the client process. */
let listening = false;

async function runOne(mode: Mode, input: Record<string, unknown>): Promise<void> {
  if (mode === "run") await client().run(taskName, input);
  else if (mode === "ends") {
    if (!listening) {
      client().runs.onEnd((end) => {
        const resolve = endWaiters.get(end.runId);
        if (resolve) {
          endWaiters.delete(end.runId);
          resolve();
        } else endedEarly.add(end.runId);
      });
      listening = true;
    }
    const ref = await client().runNoWait(taskName, input);
    if (endedEarly.delete(ref.runId)) return;
    await new Promise<void>((resolve) => endWaiters.set(ref.runId, resolve));
  } else {
    const ref = await client().runNoWait(taskName, input);
    if (mode === "ref") await ref.result();
  }
}

serve({
  async connect(args) {
    ns = String(args.ns);
    taskName = String(args.task);
    tj = await Taskjet.connect({ servers: String(args.url), namespace: ns, name: "bench-client" });
    watchConnection(tj.connection.nc, Boolean(args.countOps));
    // Triggers go by name: only the worker's declaration carries flow options, but a static limit must exist first.
    if (usesRateLimit(args.flow as Flow)) {
      await tj.ratelimits.upsert({ key: RATE_KEY, limit: RATE_LIMIT, duration: "SECOND" });
    }
    return true;
  },

  /** `n` runs, `inflight` outstanding; time from the first trigger until the client has seen every completion. */
  async throughput(args) {
    const n = Number(args.n);
    const inflight = Number(args.inflight);
    const mode = String(args.mode) as Mode;
    const counter = mode === "sub" ? completionCounter(n) : undefined;
    if (counter) await client().connection.nc.flush(); // the subscription is in place before the first trigger
    const t0 = nowMs();
    const errors = await windowed(n, inflight, (i) => runOne(mode, benchInput(i, false)));
    const triggeredMs = nowMs() - t0;
    if (counter) {
      await Promise.race([counter.done, new Promise((r) => setTimeout(r, 120_000))]);
      counter.stop();
    }
    const ms = nowMs() - t0;
    const completed = counter ? counter.heard() : n - errors;
    return { n, inflight, mode, ms, triggeredMs, errors, completed, rate: (completed / ms) * 1000 };
  },

  /**
   * Bulk enqueue: `n` runs by `tj.runManyNoWait` in batches of `batch` (`offset` numbers the inputs); returns once every
   * `RunCreated` is acknowledged. Monotonic start and end, so the orchestrator can line them up with its samples.
   */
  async enqueue(args) {
    const n = Number(args.n);
    const batch = Number(args.batch);
    const offset = Number(args.offset ?? 0);
    const startedAt = nowMs();
    let errors = 0;
    for (let i = 0; i < n; i += batch) {
      const items = Array.from({ length: Math.min(batch, n - i) }, (_, k) => ({
        input: benchInput(offset + i + k, false),
      }));
      const refs = await client().runManyNoWait(taskName, items, { returnExceptions: true });
      for (const r of refs) if (r instanceof Error && errors++ < 3) console.error("[client] trigger failed:", r);
    }
    return { n, errors, startedAt, endedAt: nowMs() };
  },

  /** Plain closed-loop runs (warm-up). */
  async warm(args) {
    const errors = await windowed(Number(args.n), Number(args.inflight ?? 50), (i) =>
      runOne("run", benchInput(i, false)),
    );
    return { errors };
  },

  /**
   * Open loop: run i is triggered at T0 + i/rate whatever happened before (no coordinated omission). Returns the
   * trigger timestamps' outcomes: run-and-wait per index, and (mode `ref`) how long `runNoWait` took.
   */
  async latency(args) {
    const rate = Number(args.rate);
    const n = Math.round(rate * Number(args.seconds));
    const mode = String(args.mode) as Mode;
    const period = 1000 / rate;
    const runAndWait = new Float64Array(n).fill(Number.NaN);
    const triggerCall = new Float64Array(n).fill(Number.NaN);
    const triggerAt = new Float64Array(n).fill(Number.NaN);
    const pending: Promise<void>[] = [];
    let errors = 0;
    let maxLag = 0;
    let lastDone = 0;
    const T0 = nowMs() + 5;
    await new Promise<void>((resolve) => {
      let i = 0;
      const tick = () => {
        const tn = nowMs();
        while (i < n && T0 + i * period <= tn) {
          const idx = i++;
          maxLag = Math.max(maxLag, tn - (T0 + idx * period));
          const t = nowMs();
          triggerAt[idx] = t;
          const input = benchInput(idx, true, t);
          const p =
            mode === "run"
              ? client().run(taskName, input)
              : client()
                  .runNoWait(taskName, input)
                  .then((ref) => {
                    triggerCall[idx] = nowMs() - t;
                    return ref.result();
                  });
          pending.push(
            p.then(
              () => {
                lastDone = nowMs();
                runAndWait[idx] = lastDone - t;
              },
              (err: unknown) => {
                if (errors++ < 3) console.error("[client] latency run failed:", err);
              },
            ),
          );
        }
        if (i >= n) return resolve();
        setTimeout(tick, Math.max(0, T0 + i * period - nowMs()));
      };
      tick();
    });
    const trickleMs = nowMs() - T0;
    const allDone = await Promise.race([
      Promise.all(pending).then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), 60_000)),
    ]);
    // Runs not seen done: are they unfinished in the store (not run) or finished there (the end not heard)?
    const unfinished = allDone
      ? []
      : (await client().runs.list({ statuses: ["QUEUED", "RUNNING"], limit: 50 })).map((r) => ({
          runId: r.runId,
          status: r.status,
          tasks: r.tasks.map((t) => ({ status: t.status, attempt: t.attempt, workerId: t.workerId })),
        }));
    if (!allDone) {
      console.error("[client] runs not seen done; unfinished in the store:", JSON.stringify(unfinished));
      // What the log holds for each (read by a consumer on the run's subject), and what a plain get reads.
      for (const { runId } of unfinished.slice(0, 5)) {
        const events: string[] = [];
        for await (const e of client().runs.history(runId)) {
          const why = e.event?.type === "ReportIgnored" ? ` (${e.event.data.reason})` : "";
          events.push(`${e.seq}:${e.event?.type ?? "?"}${why}`);
        }
        const got = await client()
          .runs.get(runId)
          .then(
            (r) => r.status,
            (err: Error) => err.message,
          );
        console.error(`[client] ${runId}: history ${events.join(" ")}; runs.get ${got}`);
      }
    }
    // At a rate the system cannot sustain the client falls behind its schedule (offered < rate) and completions lag
    // (achieved < rate): the percentiles are then queueing delay, so both rates are reported with them. A run never
    // seen done (`allDone` false) is not saturation: `runAndWait.n` tells how many were.
    const done = runAndWait.filter(Number.isFinite).length;
    const achievedRate = lastDone ? (done / (lastDone - T0)) * 1000 : 0;
    return {
      n,
      rate,
      mode,
      trickleMs,
      offeredRate: (n / trickleMs) * 1000,
      achievedRate,
      saturated: achievedRate < rate * 0.9,
      maxScheduleLagMs: maxLag,
      allDone,
      errors,
      runAndWait: percentiles(runAndWait),
      triggerCall: mode === "run" ? null : percentiles(triggerCall),
      ...(process.env.TJ_BENCH_STALLS === "1" ? { triggerAt: [...triggerAt] } : {}),
    };
  },

  async stop() {
    await tj?.close();
    return true;
  },
});
