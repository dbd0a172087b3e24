import type { Engine, EngineConfigInput } from "@taskjet/engine";
import type { RunRef, Taskjet } from "@taskjet/sdk";
import { describe, expect, it } from "vitest";
import {
  connectClient,
  eventually,
  historyEvents,
  projectionEntries,
  startEngine,
  uniqueNamespace,
  useNatsServer,
} from "../harness/fixtures.js";

const nats = useNatsServer();

/**
 * Queued runs beyond the hot limit go cold: their state is only in `TJ_RUNS`, and the engine reads it back when it
 * places, cancels or times one out. Each test queues `N` runs with no worker, waits until at most `HOT` are in memory,
 * then acts on them.
 */
const HOT = 5;
const N = 50;

type Input = { i: number; key: string };

/** An engine that lets queued runs go cold early: a tiny hot limit, and states written 50 ms after a change. */
function coldEngine(namespace: string, extra: EngineConfigInput = {}): Promise<Engine> {
  return startEngine(nats.url, {
    namespaces: [namespace],
    hotRunLimit: HOT,
    projectionActiveDelayMs: 50,
    projectionQueuedDelayMs: 50,
    http: "127.0.0.1:0",
    ...extra,
  });
}

/** Unfinished runs the engine holds in memory (`taskjet_runs_in_memory`), scraped from its `/metrics`. */
async function runsInMemory(engine: Engine, token: string): Promise<number | undefined> {
  const res = await fetch(`http://${engine.httpAddress()}/metrics`, { headers: { authorization: `Bearer ${token}` } });
  if (res.status !== 200) return undefined;
  const line = (await res.text()).split("\n").find((l) => l.startsWith("taskjet_runs_in_memory{"));
  return line === undefined ? undefined : Number(line.split(" ").pop());
}

/** Waits until at most `HOT` runs are in memory, with `queued` runs waiting: the others are cold. */
async function untilCold(engine: Engine, tj: Taskjet, queued = N): Promise<void> {
  const { token } = await tj.apiTokens.create({ name: `metrics-${Math.random().toString(36).slice(2)}` });
  await eventually(async () => {
    const n = await runsInMemory(engine, token);
    return n !== undefined && n <= HOT ? true : undefined;
  });
  expect(queued).toBeGreaterThan(HOT);
}

/** `n` runs of `task` with inputs `{ i, key: k<i % keys> }` for i from `from`, triggered in order by one bulk call. */
async function enqueue(tj: Taskjet, task: string, from = 0, n = N, keys = 5): Promise<RunRef<Input>[]> {
  const items = Array.from({ length: n }, (_, j) => ({ input: { i: from + j, key: `k${(from + j) % keys}` } }));
  const refs = await tj.runManyNoWait<Input>(task, items);
  return refs.map((r) => {
    if (r instanceof Error) throw r;
    return r;
  });
}

/** A task that records how often each input ran, and returns its input. */
function recording(
  tj: Taskjet,
  name: string,
  options: {
    concurrency?: { expression: string; maxRuns: number; limitStrategy: "CANCEL_NEWEST" | "CANCEL_IN_PROGRESS" };
  } = {},
) {
  const calls = new Map<number, number>();
  const task = tj.task({
    name,
    ...options,
    fn: async (input: Input) => {
      calls.set(input.i, (calls.get(input.i) ?? 0) + 1);
      return { i: input.i };
    },
  });
  return { task, calls };
}

const statusOf = async (tj: Taskjet, refs: RunRef<Input>[]) =>
  Promise.all(refs.map(async (r) => (await tj.runs.get(r.runId)).status));

describe("cold runs", () => {
  it("cold runs - queued runs beyond the hot limit each run exactly once with their own input when a worker comes", async () => {
    const namespace = uniqueNamespace();
    const engine = await coldEngine(namespace);
    const tj = await connectClient(nats.url, { namespace });
    const refs = await enqueue(tj, "job");
    await untilCold(engine, tj);
    const { task, calls } = recording(tj, "job");
    const worker = await tj.worker("w", { workflows: [task], slots: 4 });
    await worker.start();
    const outputs = await Promise.all(refs.map((r) => r.result({ timeoutMs: 30_000 })));
    expect(outputs).toEqual(refs.map((_, i) => ({ i })));
    expect([...calls.keys()].sort((a, b) => a - b)).toEqual(refs.map((_, i) => i));
    expect([...calls.values()].every((n) => n === 1)).toBe(true);
    await worker.stop();
    await tj.close();
    await engine.stop();
  });

  it("cold runs - queued runs are projected in pages, not a message each; get and list read them back, and an engine restart loses none and lets them go cold again", async () => {
    const namespace = uniqueNamespace();
    let engine = await coldEngine(namespace);
    const tj = await connectClient(nats.url, { namespace });
    const refs = await enqueue(tj, "job");
    const ids = refs.map((r) => r.runId);
    await untilCold(engine, tj);
    const queued = await eventually(async () => {
      const e = await projectionEntries(nats.url, namespace);
      const paged = new Map(e.pages.flatMap((p) => p.runs.map((s) => [s.runId, s] as const)));
      return ids.every((id) => paged.get(id)?.status === "QUEUED") ? e : undefined;
    });
    expect(ids.filter((id) => queued.keyed.has(id))).toEqual([]);
    expect(queued.pages.length).toBeLessThanOrEqual(N / 5);
    // Cold, and under no key: read from their history.
    const cold = await tj.runs.get(ids[N - 1] as string);
    expect(cold).toMatchObject({ status: "QUEUED", input: { i: N - 1, key: `k${(N - 1) % 5}` } });
    const listed = await tj.runs.list({ statuses: ["QUEUED"], limit: 1000 });
    expect(new Set(listed.map((r) => r.runId))).toEqual(new Set(ids));
    await engine.stop();
    // A new engine recovers them from the pages, lets them go cold again, and reads each back to place it.
    engine = await coldEngine(namespace);
    await untilCold(engine, tj);
    const { task, calls } = recording(tj, "job");
    const worker = await tj.worker("w", { workflows: [task], slots: 4 });
    await worker.start();
    expect(await Promise.all(refs.map((r) => r.result({ timeoutMs: 30_000 })))).toEqual(refs.map((_, i) => ({ i })));
    expect([...calls.values()].every((n) => n === 1)).toBe(true);
    expect(calls.size).toBe(N);
    // Their ends go into pages too, written after the queued states, so every reader takes the end.
    const ended = await eventually(async () => {
      const e = await projectionEntries(nats.url, namespace);
      const latest = new Map(e.pages.flatMap((p) => p.runs.map((s) => [s.runId, s.status] as const)));
      return ids.every((id) => latest.get(id) === "COMPLETED") ? e : undefined;
    });
    expect(ids.filter((id) => ended.keyed.has(id))).toEqual([]);
    expect(await tj.runs.list({ statuses: ["COMPLETED"], limit: 1000 })).toHaveLength(N);
    await worker.stop();
    await tj.close();
    await engine.stop();
  });

  it("cold runs - a schedule timeout cancels cold queued runs", async () => {
    const namespace = uniqueNamespace();
    const engine = await coldEngine(namespace, { defaultScheduleTimeoutMs: 2500 });
    const tj = await connectClient(nats.url, { namespace });
    const refs = await enqueue(tj, "unattended");
    await untilCold(engine, tj);
    await eventually(
      async () => ((await statusOf(tj, refs)).every((s) => s === "CANCELLED") ? true : undefined),
      20_000,
    );
    for (const ref of refs) {
      expect(await tj.runs.get(ref.runId)).toMatchObject({
        tasks: [{ status: "CANCELLED", error: { message: "SCHEDULE_TIMEOUT" } }],
      });
    }
    // Nothing is left queued: a worker starting now runs none of them.
    const { task, calls } = recording(tj, "unattended");
    const worker = await tj.worker("w", { workflows: [task], slots: 4 });
    await worker.start();
    expect(await task.run({ i: -1, key: "x" })).toEqual({ i: -1 });
    expect([...calls.keys()]).toEqual([-1]);
    await worker.stop();
    await tj.close();
    await engine.stop();
  });

  it("cold runs - cancel of a cold queued run: it never runs, the others do", async () => {
    const namespace = uniqueNamespace();
    const engine = await coldEngine(namespace);
    const tj = await connectClient(nats.url, { namespace });
    const refs = await enqueue(tj, "job");
    await untilCold(engine, tj);
    // The newest go cold first (the oldest are placed first and stay in memory).
    const cancelled = refs.slice(-10);
    const { cancelled: ids } = await tj.runs.cancel({ ids: cancelled.map((r) => r.runId), reason: "not needed" });
    expect(ids.sort()).toEqual(cancelled.map((r) => r.runId).sort());
    const { task, calls } = recording(tj, "job");
    const worker = await tj.worker("w", { workflows: [task], slots: 4 });
    await worker.start();
    const kept = refs.slice(0, -10);
    expect(await Promise.all(kept.map((r) => r.result({ timeoutMs: 30_000 })))).toEqual(kept.map((_, i) => ({ i })));
    expect(await statusOf(tj, cancelled)).toEqual(cancelled.map(() => "CANCELLED"));
    for (const ref of cancelled) {
      expect((await historyEvents(tj, ref.runId)).map((e) => e.type)).toEqual(["RunCreated", "RunCancelled"]);
    }
    expect([...calls.keys()].sort((a, b) => a - b)).toEqual(kept.map((_, i) => i));
    await worker.stop();
    await tj.close();
    await engine.stop();
  });

  it("cold runs - CANCEL_NEWEST applied when the definition arrives after its runs went cold keeps the oldest run per key", async () => {
    const namespace = uniqueNamespace();
    const engine = await coldEngine(namespace);
    const tj = await connectClient(nats.url, { namespace });
    // No definition yet: the runs queue without flow control, then its arrival queues them again under it.
    const refs = await enqueue(tj, "capped");
    await untilCold(engine, tj);
    const { task, calls } = recording(tj, "capped", {
      concurrency: { expression: "input.key", maxRuns: 1, limitStrategy: "CANCEL_NEWEST" },
    });
    const worker = await tj.worker("w", { workflows: [task], slots: 4 });
    await worker.start();
    const oldest = refs.slice(0, 5);
    expect(await Promise.all(oldest.map((r) => r.result({ timeoutMs: 30_000 })))).toEqual(
      oldest.map((_, i) => ({ i })),
    );
    const newer = refs.slice(5);
    await eventually(async () => ((await statusOf(tj, newer)).every((s) => s === "CANCELLED") ? true : undefined));
    for (const ref of newer) {
      const events = await historyEvents(tj, ref.runId);
      expect(events.map((e) => e.type)).toEqual(["RunCreated", "RunCancelled"]);
      expect((events[1]?.data as { reason?: string } | undefined)?.reason).toMatch(/^CONCURRENCY_CANCEL_NEWEST/);
    }
    expect([...calls.keys()].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4]);
    await worker.stop();
    await tj.close();
    await engine.stop();
  });

  it("cold runs - CANCEL_IN_PROGRESS: a new run cancels its key's cold queued run", async () => {
    const namespace = uniqueNamespace();
    const engine = await coldEngine(namespace);
    const tj = await connectClient(nats.url, { namespace });
    const keys = 20;
    // A worker registers the definition, then leaves: the runs queue under it with no worker to take them.
    const registering = recording(tj, "latest", {
      concurrency: { expression: "input.key", maxRuns: 1, limitStrategy: "CANCEL_IN_PROGRESS" },
    });
    const first = await tj.worker("registers", { workflows: [registering.task], slots: 1 });
    await first.start();
    await first.stop();
    // Two runs per key: each key's second cancels its first at once; the 20 left over go cold but 5.
    const older = await enqueue(tj, "latest", 0, 2 * keys, keys);
    await untilCold(engine, tj, keys);
    // One more per key: each cancels its key's survivor, most of them cold.
    const newest = await enqueue(tj, "latest", 2 * keys, keys, keys);
    await eventually(async () => ((await statusOf(tj, older)).every((s) => s === "CANCELLED") ? true : undefined));
    for (const ref of older) {
      const events = await historyEvents(tj, ref.runId);
      expect(events.map((e) => e.type)).toEqual(["RunCreated", "RunCancelled"]);
      expect((events[1]?.data as { reason?: string } | undefined)?.reason).toMatch(/^CONCURRENCY_CANCEL_IN_PROGRESS/);
    }
    const { task, calls } = recording(tj, "latest", {
      concurrency: { expression: "input.key", maxRuns: 1, limitStrategy: "CANCEL_IN_PROGRESS" },
    });
    const worker = await tj.worker("w", { workflows: [task], slots: 4 });
    await worker.start();
    expect(await Promise.all(newest.map((r) => r.result({ timeoutMs: 30_000 })))).toEqual(
      newest.map((_, j) => ({ i: 2 * keys + j })),
    );
    expect([...calls.keys()].sort((a, b) => a - b)).toEqual(newest.map((_, j) => 2 * keys + j));
    await worker.stop();
    await tj.close();
    await engine.stop();
  });
});
