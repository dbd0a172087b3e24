import type { JetStreamClient, JetStreamManager, JsMsg } from "@nats-io/jetstream";
import { EventTypes, encodeEvent, makeEvent, type RunState, subjects, type TaskjetEventInput } from "@taskjet/schemas";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { mayGoCold, Projector } from "./projector.js";
import type { RunStore, Stored } from "./run-store.js";

const ns = "ns1";
const encoder = new TextEncoder();

/** Hands a run's events to the projector as its consumer would (sequences from `nextSeq`); resolves once folded. */
function feeder(projector: Projector, nextSeq: () => number) {
  const internals = projector as unknown as { receive(m: JsMsg | undefined): void; position: number };
  return async (runId: string, events: TaskjetEventInput[]) => {
    let last = 0;
    for (const e of events) {
      last = nextSeq();
      const m = {
        subject: subjects.history(ns, runId),
        data: encoder.encode(encodeEvent(e)),
        seq: last,
        info: { pending: 1 },
      };
      internals.receive(m as unknown as JsMsg);
    }
    // Folding is asynchronous (a run missing from memory is read from the store first): wait until it is done.
    while (internals.position < last) await new Promise((r) => setTimeout(r));
  };
}

function created(runId: string): TaskjetEventInput {
  return makeEvent(EventTypes.RunCreated, {
    runId,
    data: {
      workflowName: "long",
      input: {},
      additionalMetadata: {},
      priority: 1,
      tasks: [{ taskRunId: `${runId}-0`, taskName: "long" }],
      trigger: { kind: "run" },
    },
  });
}

/** A started attempt that keeps moving its deadline: one real event per call, as `ctx.refreshTimeout` writes. */
function runningFor(runId: string, events: number): TaskjetEventInput[] {
  const taskRunId = `${runId}-0`;
  const facts = { attempt: 0, workerId: "w1" };
  const started = makeEvent(EventTypes.TaskStarted, {
    runId,
    taskRunId,
    data: { ...facts, workerName: "w", assignedAt: new Date().toISOString() },
  });
  const refreshes = Array.from({ length: events - 2 }, (_, i) =>
    makeEvent(EventTypes.TaskTimeoutRefreshed, {
      runId,
      taskRunId,
      data: { ...facts, timeoutAt: new Date(Date.now() + 60_000 + i).toISOString() },
    }),
  );
  return [created(runId), started, ...refreshes];
}

describe("projector", () => {
  it("history limit - a run is logged once, with its id, when its history reaches the limit, not on later events", async () => {
    const { projector, feed, warnings } = testProjector({ historyWarnEvents: 5 });
    await feed("R1", runningFor("R1", 4));
    expect(warnings()).toEqual([]);
    await feed("R1", runningFor("R1", 3).slice(2)); // the 5th event
    expect(warnings()).toHaveLength(1);
    expect(warnings()[0]).toMatchObject({ level: 40, runId: "R1", events: 5, limit: 5 });
    await feed("R1", runningFor("R1", 12).slice(2)); // 10 more
    expect(projector.states.get("R1")?.eventCount).toBe(15);
    expect(warnings()).toHaveLength(1);
    // Another run gets its own line.
    await feed("R2", runningFor("R2", 7));
    expect(warnings().map((w) => w.runId)).toEqual(["R1", "R2"]);
    await projector.stop();
  });

  it("history limit - a run already past the limit when the engine restarts is not logged again", async () => {
    const before = testProjector({ historyWarnEvents: 5 });
    await before.feed("R3", runningFor("R3", 6));
    const stored = before.projector.states.get("R3") as RunState;
    expect(before.warnings()).toHaveLength(1);
    // Restarted: the run's next events are folded onto its stored state, which already counts past the limit.
    const after = testProjector({ historyWarnEvents: 5, stored: [stored] });
    await after.feed("R3", runningFor("R3", 2 + 7).slice(2));
    expect(after.projector.states.get("R3")?.eventCount).toBe(6 + 7);
    expect(after.warnings()).toEqual([]);
  });
});

/**
 * A projector over no NATS at all, its store kept in memory (seeded with `stored`): messages are handed to it as its
 * consumer would, `flush` writes as its timer would, warnings are kept. Reads made between `holdReads` and `release`
 * answer with what the store held when they were made, but only at `release`.
 */
function testProjector(
  options: {
    hotLimit?: number;
    activeDelayMs?: number;
    queuedDelayMs?: number;
    historyWarnEvents?: number;
    stored?: RunState[];
  } = {},
) {
  let seq = Math.max(0, ...(options.stored ?? []).map((s) => s.lastSeq));
  const stored = new Map((options.stored ?? []).map((s) => [s.runId, s]));
  const lines: Record<string, unknown>[] = [];
  /** What each flush wrote under the runs' keys, and into pages (empty calls left out). */
  const writes: string[][] = [];
  const pages: string[][] = [];
  /** Runs written under their key, or stored so from the start: the others were paged. */
  const keyed = new Set(stored.keys());
  /** `upToSeq` of each read, and whether it was told a lone `RunCreated` means a paged run. */
  const readBounds: number[] = [];
  const readLonePaged: boolean[] = [];
  const checkpoints: number[] = [];
  const held: (() => void)[] = [];
  let holding = false;
  let reads = 0;
  const store = {
    get: async (runId: string, upToSeq: number, lonePaged = false) => {
      reads++;
      readBounds.push(upToSeq);
      readLonePaged.push(lonePaged);
      const value = stored.get(runId);
      if (holding) await new Promise<void>((resolve) => held.push(resolve));
      return value === undefined
        ? undefined
        : { state: JSON.parse(JSON.stringify(value)) as RunState, keyed: keyed.has(runId) };
    },
    putMany: async (states: RunState[]) => {
      for (const s of states) {
        stored.set(s.runId, JSON.parse(JSON.stringify(s)) as RunState);
        keyed.add(s.runId);
      }
      if (states.length > 0) writes.push(states.map((s) => s.runId));
      return [];
    },
    putPaged: async (states: RunState[]) => {
      for (const s of states) stored.set(s.runId, JSON.parse(JSON.stringify(s)) as RunState);
      if (states.length > 0) pages.push(states.map((s) => s.runId));
      return [];
    },
    saveCheckpoint: async (n: number) => {
      checkpoints.push(n);
    },
  } as unknown as RunStore;
  const projector = new Projector({
    js: {} as JetStreamClient,
    jsm: {} as JetStreamManager,
    ns,
    store,
    log: pino({ level: "warn" }, { write: (line: string) => lines.push(JSON.parse(line)) }),
    flushMs: 60_000,
    activeDelayMs: options.activeDelayMs ?? 60_000,
    queuedDelayMs: options.queuedDelayMs ?? 60_000,
    onChange: () => {},
    hotLimit: options.hotLimit,
    historyWarnEvents: options.historyWarnEvents,
  });
  const internals = projector as unknown as { flush(everything: boolean): Promise<void> };
  const feed = feeder(projector, () => ++seq);
  return {
    projector,
    stored,
    feed,
    flush: () => internals.flush(true),
    /** A flush as the projector's timer makes it: what is ripe only. */
    flushRipe: () => internals.flush(false),
    writes,
    pages,
    readBounds,
    readLonePaged,
    checkpoints,
    holdReads: () => {
      holding = true;
    },
    stopHolding: () => {
      holding = false;
    },
    release: () => {
      holding = false;
      for (const resolve of held.splice(0)) resolve();
    },
    reads: () => reads,
    warnings: () => lines.filter((l) => String(l.msg).startsWith("run history is long")),
  };
}

function started(runId: string): TaskjetEventInput {
  return makeEvent(EventTypes.TaskStarted, {
    runId,
    taskRunId: `${runId}-0`,
    data: { attempt: 0, workerId: "w1", workerName: "w", assignedAt: new Date().toISOString() },
  });
}

function cancelled(runId: string): TaskjetEventInput {
  return makeEvent(EventTypes.RunCancelled, { runId, data: { reason: "test" } });
}

describe("projector - cold runs", () => {
  it("cold runs - beyond the hot limit, written runs that only wait for a slot leave memory, the last changed first", async () => {
    const p = testProjector({ hotLimit: 3 });
    for (const id of ["Q0", "Q1", "Q2", "Q3"]) await p.feed(id, [created(id)]);
    await p.feed("R0", [created("R0"), started("R0")]);
    for (const id of ["Q4", "Q5"]) await p.feed(id, [created(id)]);
    await p.flush();
    // Every state is written; the running one stays, and the oldest queued ones stay until the limit is met.
    expect([...p.stored.keys()].sort()).toEqual(["Q0", "Q1", "Q2", "Q3", "Q4", "Q5", "R0"]);
    expect([...p.projector.states.keys()]).toEqual(["Q0", "Q1", "R0"]);
  });

  it("cold runs - an event for a cold run folds onto its stored state, in order, and keeps it in memory", async () => {
    const p = testProjector({ hotLimit: 1 });
    for (const id of ["Q0", "Q1", "Q2"]) await p.feed(id, [created(id)]);
    await p.flush();
    expect(p.projector.get("Q2")).toBeUndefined();
    await p.feed("Q2", [started("Q2")]);
    expect(p.projector.get("Q2")).toMatchObject({ status: "RUNNING", eventCount: 2, lastSeq: 4 });
    // Written again: no longer a cold candidate (it runs), so it stays.
    await p.flush();
    expect(p.stored.get("Q2")).toMatchObject({ status: "RUNNING", eventCount: 2 });
    expect(p.projector.get("Q2")).toBeDefined();
  });

  it("cold runs - load reads a cold run back (kept unless asked not to), one read for many callers; a finished run is never kept", async () => {
    const p = testProjector({ hotLimit: 0 });
    for (const id of ["Q0", "Q1", "Q2"]) await p.feed(id, [created(id)]);
    await p.feed("C0", [created("C0"), cancelled("C0")]);
    await p.flush();
    expect(p.projector.states.size).toBe(0);
    const reads = p.reads();
    const [a, b] = await Promise.all([p.projector.load("Q0"), p.projector.load("Q0")]);
    expect(p.reads() - reads).toBe(1);
    expect(a).toMatchObject({ runId: "Q0", status: "QUEUED" });
    expect(b).toBe(a);
    expect(p.projector.get("Q0")).toBe(a);
    expect(await p.projector.loadMany(["Q1", "C0", "never"], false)).toMatchObject([
      { runId: "Q1", status: "QUEUED" },
      { runId: "C0", status: "CANCELLED" },
      undefined,
    ]);
    expect(p.projector.get("Q1")).toBeUndefined();
    expect(await p.projector.load("C0")).toMatchObject({ status: "CANCELLED" });
    expect(p.projector.get("C0")).toBeUndefined();
    // In memory: no read at all.
    const before = p.reads();
    expect(await p.projector.load("Q0")).toBe(a);
    expect(p.reads()).toBe(before);
  });

  it("cold runs - a read that the run's fold, write and drop overtook reads again instead of bringing back the old state", async () => {
    const p = testProjector({ hotLimit: 0 });
    await p.feed("Q0", [created("Q0")]);
    await p.flush();
    p.holdReads();
    const loading = p.projector.load("Q0"); // reads the QUEUED state, answered only later
    p.stopHolding();
    await p.feed("Q0", [cancelled("Q0")]);
    await p.flush(); // CANCELLED written and dropped while that read is in flight
    expect(p.projector.get("Q0")).toBeUndefined();
    const reads = p.reads();
    p.release();
    const state = await loading;
    expect(p.reads() - reads).toBe(1); // read again
    expect(state).toMatchObject({ status: "CANCELLED" });
    expect(p.projector.get("Q0")).toBeUndefined();
  });

  it("cold runs - a read answered after the run was folded returns the state in memory", async () => {
    const p = testProjector({ hotLimit: 0 });
    await p.feed("Q0", [created("Q0")]);
    await p.flush();
    p.holdReads();
    const loading = p.projector.load("Q0");
    const fold = p.feed("Q0", [started("Q0")]);
    p.release();
    await fold;
    expect(await loading).toBe(p.projector.get("Q0"));
    expect(await loading).toMatchObject({ status: "RUNNING" });
  });

  it("cold runs - after recovery, coolDown drops cold candidates beyond the limit, the last loaded first", async () => {
    const p = testProjector({ hotLimit: 2 });
    for (const id of ["Q0", "Q1", "Q2", "Q3"]) await p.feed(id, [created(id)]);
    await p.feed("R0", [created("R0"), started("R0")]);
    await p.flush(); // with a limit of 2: Q0 and R0 stay
    expect([...p.projector.states.keys()]).toEqual(["Q0", "R0"]);
    // As `start` loads them: every unfinished run from the store, then the scheduler queues them.
    for (const id of ["Q1", "Q2", "Q3"]) p.projector.states.set(id, p.stored.get(id) as RunState);
    expect(p.projector.coolDown()).toBe(3);
    expect([...p.projector.states.keys()]).toEqual(["Q0", "R0"]);
  });

  it("cold runs - only a run waiting for a slot may go cold", () => {
    const base = {
      v: 1,
      runId: "R",
      workflowName: "w",
      status: "QUEUED",
      input: {},
      additionalMetadata: {},
      priority: 1,
      trigger: { kind: "run" },
      createdAt: "2024-01-01T00:00:00.000Z",
      lastSeq: 1,
      eventCount: 1,
    } as const;
    const task = { taskRunId: "R-0", taskName: "t", status: "QUEUED", attempt: 0 } as const;
    const state = (t: Partial<RunState["tasks"][number]>[], run: Partial<RunState> = {}) =>
      ({ ...base, ...run, tasks: t.map((x) => ({ ...task, ...x })) }) as RunState;
    expect(mayGoCold(state([{}]))).toBe(true);
    expect(mayGoCold(state([{}, { taskRunId: "R-1" }]))).toBe(true);
    expect(mayGoCold(state([{}, { taskRunId: "R-1", status: "PENDING" }]))).toBe(false);
    expect(mayGoCold(state([{ status: "RUNNING" }], { status: "RUNNING" }))).toBe(false);
    expect(mayGoCold(state([{}], { status: "SCHEDULED" }))).toBe(false);
    expect(mayGoCold(state([{ retry: { attempt: 1 } }]))).toBe(false);
    expect(mayGoCold(state([{ rateLimited: { until: base.createdAt } }]))).toBe(false);
    expect(mayGoCold(state([{ waiting: { reason: "NO_WORKER", detail: "", since: base.createdAt } }]))).toBe(false);
    expect(mayGoCold(state([{ checkpoints: [] }]))).toBe(false);
    expect(mayGoCold(state([{}], { children: [{ runId: "C", taskName: "c", key: "k", taskRunId: "R-0" }] }))).toBe(
      false,
    );
  });
});

describe("projector - writes", () => {
  it("writes - a flush writes finished runs at once and leaves unfinished ones for the delay; the checkpoint stops before the oldest unwritten", async () => {
    const p = testProjector();
    await p.feed("F0", [created("F0"), cancelled("F0")]); // seq 1-2
    await p.feed("Q0", [created("Q0")]); // 3
    await p.feed("F1", [created("F1"), cancelled("F1")]); // 4-5
    await p.feed("Q1", [created("Q1")]); // 6
    await p.flushRipe();
    expect(p.pages).toEqual([["F0", "F1"]]);
    expect(p.writes).toEqual([]);
    expect(p.checkpoints).toEqual([2]);
    // Nothing else is ripe: no write, and the checkpoint holds.
    await p.flushRipe();
    expect(p.pages).toHaveLength(1);
    expect(p.writes).toEqual([]);
    expect(p.checkpoints).toEqual([2]);
  });

  it("writes - past the delay, unfinished runs are written in the order they changed, and the checkpoint reaches the end", async () => {
    const p = testProjector({ activeDelayMs: 0, queuedDelayMs: 0 });
    for (const id of ["R0", "R1", "R2"]) await p.feed(id, [created(id), started(id)]); // 1-6
    await p.feed("F0", [created("F0"), cancelled("F0")]); // 7-8
    await p.feed("R0", [cancelled("R0")]); // 9: finished, written with the finished ones
    await p.flushRipe();
    expect(p.pages).toEqual([["F0", "R0"]]);
    expect(p.writes).toEqual([["R1", "R2"]]);
    expect(p.checkpoints).toEqual([9]);
  });

  it("writes - a run that only waits for a slot goes into a page, until it is written under its key", async () => {
    const p = testProjector({ activeDelayMs: 0, queuedDelayMs: 0 });
    await p.feed("Q0", [created("Q0")]); // 1
    await p.feed("Q1", [created("Q1")]); // 2
    await p.flushRipe();
    expect(p.pages).toEqual([["Q0", "Q1"]]);
    expect(p.writes).toEqual([]);
    await p.feed("Q0", [started("Q0")]); // 3: a history no longer short
    await p.flushRipe();
    expect(p.writes).toEqual([["Q0"]]);
    await p.feed("Q0", [cancelled("Q0")]); // 4: keyed, so under its key again
    await p.feed("Q1", [cancelled("Q1")]); // 5
    await p.flushRipe();
    expect(p.writes).toEqual([["Q0"], ["Q0"]]);
    expect(p.pages).toEqual([["Q0", "Q1"], ["Q1"]]);
    expect(p.checkpoints.at(-1)).toBe(5);
  });

  it("writes - a run once written under its key stays there when it finishes; one that finished first goes into a page", async () => {
    const p = testProjector({ activeDelayMs: 0 });
    await p.feed("R0", [created("R0"), started("R0")]); // 1-2
    await p.flushRipe();
    expect(p.writes).toEqual([["R0"]]);
    await p.feed("R0", [cancelled("R0")]); // 3
    await p.feed("F0", [created("F0"), cancelled("F0")]); // 4-5
    await p.flushRipe();
    // A page written after the key would leave the key's RUNNING state to whoever reads the key.
    expect(p.writes).toEqual([["R0"], ["R0"]]);
    expect(p.pages).toEqual([["F0"]]);
    expect(p.stored.get("R0")).toMatchObject({ status: "CANCELLED" });
  });

  it("writes - a cold run is paged and read back; one read back from its key is written there again; a read never returns more than was folded", async () => {
    const keyedRun = testProjector();
    await keyedRun.feed("K0", [created("K0")]);
    const k0 = keyedRun.projector.states.get("K0") as RunState;
    const p = testProjector({ hotLimit: 0, stored: [k0] });
    // As a restart loads it (the projection then had queued runs under their keys), and lets it go cold.
    (p.projector as unknown as { hold(stored: Stored): void }).hold({ state: structuredClone(k0), keyed: true });
    expect(p.projector.coolDown()).toBe(1);
    await p.feed("Q0", [created("Q0")]); // 2
    await p.feed("Q1", [created("Q1")]); // 3
    await p.flush(); // both paged, then cold
    expect(p.projector.states.size).toBe(0);
    expect(p.pages).toEqual([["Q0", "Q1"]]);
    await p.feed("Q0", [cancelled("Q0")]); // 4: read from the store (its history), then folded
    await p.feed("K0", [cancelled("K0")]); // 5: read from its key
    expect(p.readBounds).toEqual([3, 4]);
    // Only the paged one may be taken from a lone `RunCreated` without asking for its key.
    expect(p.readLonePaged).toEqual([true, false]);
    await p.flush();
    expect(p.pages).toEqual([["Q0", "Q1"], ["Q0"]]);
    expect(p.writes).toEqual([["K0"]]);
  });

  it("writes - a run due at once to go cold, back under the hot limit by the flush, is written after the queued delay", async () => {
    const p = testProjector({ hotLimit: 2, queuedDelayMs: 30 });
    for (const id of ["Q0", "Q1", "Q2"]) await p.feed(id, [created(id)]); // Q2: over the limit, to be written at once
    // One of the others leaves memory before the flush (as a written run goes cold): Q2 may stay.
    p.projector.states.delete("Q0");
    await p.flushRipe();
    expect([...p.writes.flat(), ...p.pages.flat()]).toEqual([]);
    await new Promise((r) => setTimeout(r, 40));
    await p.flushRipe();
    expect(p.pages.flat()).toContain("Q2");
  });

  it("writes - a run that only waits for a slot is written after the queued delay, one that started after the active delay", async () => {
    const p = testProjector({ activeDelayMs: 0, queuedDelayMs: 40 });
    await p.feed("Q0", [created("Q0")]); // 1
    await p.feed("R0", [created("R0"), started("R0")]); // 2-3
    await p.feed("Q1", [created("Q1")]); // 4
    // (The projector's own timer flushes too: the writes are read in order, whoever made them.)
    await p.flushRipe();
    // The started run only; the checkpoint stays before the waiting runs.
    expect(p.writes.flat()).toEqual(["R0"]);
    expect(p.checkpoints).toEqual([]);
    await p.feed("Q1", [started("Q1")]); // 5: now due at the active delay
    await p.flushRipe();
    expect(p.writes.flat()).toEqual(["R0", "Q1"]);
    await new Promise((r) => setTimeout(r, 50));
    await p.flushRipe();
    expect(p.writes.flat()).toEqual(["R0", "Q1"]);
    expect(p.pages).toEqual([["Q0"]]);
    expect(p.checkpoints).toEqual([5]);
  });
});
