import { describe, expect, it } from "vitest";
import { connectClient, eventually, startEngine, uniqueNamespace, useNatsServer } from "../harness/fixtures.js";
import { kill, startWorkerProcess } from "../harness/processes.js";

const nats = useNatsServer();

/** One sample of a Prometheus text exposition: name, labels, value. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1] as string] = l[2] as string;
    }
    out.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  return out;
}

/** The sum of the samples named `name` whose labels include `labels`. */
function total(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
}

describe("metrics", () => {
  it("metrics - scraped during a load of 200 runs, counters and histograms move with the right labels", async () => {
    const namespace = uniqueNamespace();
    const other = uniqueNamespace();
    const engine = await startEngine(nats.url, {
      namespaces: [namespace, other],
      http: "127.0.0.1:0",
      workerTtlMs: 1500,
    });
    const base = `http://${engine.httpAddress()}`;
    const tj = await connectClient(nats.url, { namespace });
    const otherTj = await connectClient(nats.url, { namespace: other });
    const { token } = await tj.apiTokens.create({ name: "prometheus" });
    const { token: otherToken } = await otherTj.apiTokens.create({ name: "prometheus" });
    const scrape = async (t = token) => {
      const res = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${t}` } });
      if (res.status !== 200) throw new Error(`metrics answered ${res.status}`);
      expect(res.headers.get("content-type")).toContain("text/plain");
      return parseMetrics(await res.text());
    };
    // The process's CPU counts from the engine's start, not from the first scrape (this file's first).
    for (const until = performance.now() + 300; performance.now() < until; );
    const first = await eventually(() => scrape());
    expect(total(first, "process_cpu_seconds_total")).toBeGreaterThanOrEqual(0.25);
    await eventually(() => scrape(otherToken));

    let failures = 0;
    const work = tj.task({
      name: "work",
      fn: async (input: { i: number }) => {
        await new Promise((r) => setTimeout(r, 5 + (input.i % 10)));
        return { i: input.i };
      },
    });
    const flaky = tj.task({
      name: "flaky",
      retries: 2,
      fn: async () => {
        if (failures++ % 2 === 0) throw new Error("first attempt fails");
        return {};
      },
    });
    const slow = tj.task({
      name: "slow",
      executionTimeout: "300ms",
      fn: async (_i, ctx) => {
        await new Promise((r) => {
          const t = setTimeout(r, 5000);
          ctx.abortController.signal.addEventListener("abort", () => {
            clearTimeout(t);
            r(undefined);
          });
        });
        return {};
      },
    });
    const worker = await tj.worker("metrics-worker", { workflows: [work, flaky, slow], slots: 20 });
    await worker.start();

    // Queue depth and the oldest queued age of a task no worker takes, from the leader's memory.
    await Promise.all([1, 2, 3].map((i) => tj.runNoWait("unserved", { i })));
    const queued = await eventually(async () => {
      const s = await scrape();
      return total(s, "taskjet_queue_depth", { namespace, task: "unserved" }) === 3 ? s : undefined;
    });
    expect(total(queued, "taskjet_queue_oldest_age_seconds", { task: "unserved" })).toBeGreaterThanOrEqual(0);
    expect(total(queued, "taskjet_lease_held", { namespace, engine_id: engine.id })).toBe(1);
    expect(total(queued, "taskjet_worker_slots", { namespace, worker: "metrics-worker", worker_id: worker.id })).toBe(
      20,
    );

    // 200 runs; scraped while they run: the worker's slots fill up.
    const refs = await work.runNoWait(Array.from({ length: 200 }, (_, i) => ({ i })));
    let busiest = 0;
    const during = (async () => {
      for (let n = 0; n < 40; n++) {
        const s = await scrape();
        busiest = Math.max(busiest, total(s, "taskjet_worker_used_slots", { namespace, worker_id: worker.id }));
        if (total(s, "taskjet_task_duration_seconds_count", { task: "work" }) >= 200) return;
        await new Promise((r) => setTimeout(r, 25));
      }
    })();
    await Promise.all(refs.map((r) => r.result()));
    await during;
    expect(busiest).toBeGreaterThan(0);

    await flaky.run({});
    await expect(slow.run({})).rejects.toThrow(/TaskTimedOut|timeout/);

    const after = await eventually(async () => {
      const s = await scrape();
      return total(s, "taskjet_task_duration_seconds_count", { task: "work", outcome: "completed" }) >= 200 &&
        total(s, "taskjet_task_timeouts_total", { task: "slow" }) >= 1
        ? s
        : undefined;
    });
    expect(total(after, "taskjet_task_duration_seconds_count", { namespace, task: "work", outcome: "completed" })).toBe(
      200,
    );
    expect(total(after, "taskjet_queue_wait_seconds_count", { namespace, task: "work" })).toBe(200);
    // Buckets are cumulative: the +Inf bucket holds them all; the sums are real durations.
    expect(total(after, "taskjet_queue_wait_seconds_bucket", { task: "work", le: "+Inf" })).toBe(200);
    expect(total(after, "taskjet_task_duration_seconds_sum", { task: "work" })).toBeGreaterThan(200 * 0.004);
    expect(total(after, "taskjet_history_events_total", { namespace, type: "TaskCompleted" })).toBeGreaterThanOrEqual(
      201,
    );
    expect(total(after, "taskjet_history_events_total", { namespace, type: "RunCreated" })).toBeGreaterThanOrEqual(205);
    expect(total(after, "taskjet_runs_finished_total", { workflow: "work", status: "COMPLETED" })).toBe(200);
    expect(total(after, "taskjet_task_retries_total", { namespace, task: "flaky" })).toBe(1);
    expect(total(after, "taskjet_task_duration_seconds_count", { task: "flaky", outcome: "failed" })).toBe(1);
    expect(total(after, "taskjet_task_timeouts_total", { namespace, task: "slow" })).toBe(1);
    expect(total(after, "taskjet_task_duration_seconds_count", { task: "slow", outcome: "timed_out" })).toBe(1);
    expect(total(after, "taskjet_runs_finished_total", { workflow: "slow", status: "FAILED" })).toBe(1);
    expect(after.some((s) => s.name === "process_cpu_seconds_total")).toBe(true);

    // Reassignments: a worker process killed with its attempt running.
    const doomed = await startWorkerProcess(nats.url, namespace, "long", 1, 60_000);
    const longRef = await tj.runNoWait("long", {});
    await eventually(async () => ((await tj.runs.get(longRef.runId)).status === "RUNNING" ? true : undefined));
    await kill(doomed.child, "SIGKILL");
    const reassigned = await eventually(async () => {
      const s = await scrape();
      return total(s, "taskjet_task_reassignments_total", { namespace, task: "long" }) === 1 ? s : undefined;
    });
    // The dead worker's gauges are gone with it.
    expect(reassigned.filter((s) => s.labels.worker_id === doomed.workerId)).toEqual([]);

    // Another namespace's token sees that namespace's series only.
    const theirs = await scrape(otherToken);
    expect(theirs.filter((s) => s.labels.namespace === namespace)).toEqual([]);
    expect(total(theirs, "taskjet_lease_held", { namespace: other })).toBe(1);

    await tj.runs.cancel({ filters: { statuses: ["QUEUED", "RUNNING"] } });
    await worker.stop();
    await otherTj.close();
    await tj.close();
    await engine.stop();
  });
});
