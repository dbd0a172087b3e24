import { describe, expect, it } from "vitest";
import { PREFETCH_HOLD_OFF_MS, type QueuedTask, SchedulerCore } from "./core.js";
import { MAX_QUEUED_PER_SLOT, QUEUE_HORIZON_MS } from "./run-times.js";

let order = 0;
function task(taskName: string, n = order): QueuedTask {
  order++;
  return { runId: `r${n}`, taskRunId: `r${n}-0`, taskName, attempt: 0, order: n };
}

describe("scheduler core", () => {
  it("scheduler - places nothing without a worker; a task no worker has waits", () => {
    const core = new SchedulerCore();
    core.enqueue(task("a", 1));
    expect(core.place(0)).toEqual([]);
    core.upsertWorker({ workerId: "w", tasks: ["b"], slots: 5 });
    expect(core.place(0)).toEqual([]);
    expect(core.depths().get("a")).toBe(1);
  });

  it("scheduler - FIFO across tasks, never more than the free slots", () => {
    const core = new SchedulerCore();
    core.enqueue(task("b", 2));
    core.enqueue(task("a", 1));
    core.enqueue(task("a", 3));
    core.upsertWorker({ workerId: "w", tasks: ["a", "b"], slots: 2 });
    expect(core.place(0).map((p) => p.task.order)).toEqual([1, 2]);
    expect(core.place(0)).toEqual([]);
    core.finish({ taskRunId: "r1-0", attempt: 0 });
    expect(core.place(0).map((p) => p.task.order)).toEqual([3]);
    expect(core.usage("w")).toBe(2);
  });

  it("scheduler - a slot its worker says it freed takes new work before the outcome is folded, once, groups kept until then", () => {
    const core = new SchedulerCore();
    core.upsertWorker({ workerId: "w", tasks: ["a"], slots: 1 });
    core.upsertWorker({ workerId: "other", tasks: [], slots: 1 });
    const group = { id: "g", maxRuns: 1, strategy: "GROUP_ROUND_ROBIN" as const };
    const flow = { lane: "", groups: [], rates: [], labels: [], slotCost: 1 };
    const first = { ...task("a", 1), flow: { ...flow, groups: [group] } };
    const second = { ...task("a", 2), flow: { ...flow, groups: [group] } };
    const third = { ...task("a", 3), flow: { ...flow, lane: "other" } };
    core.enqueue(first);
    core.enqueue(second);
    core.enqueue(third);
    expect(core.place(0).map((p) => p.task.order)).toEqual([1]);
    // Not its worker, or not placed: nothing freed.
    expect(core.slotFreed(first, "other")).toBe(false);
    expect(core.slotFreed(second, "w")).toBe(false);
    expect(core.slotFreed(first, "w")).toBe(true);
    expect(core.slotFreed(first, "w")).toBe(false);
    expect(core.usage("w")).toBe(0);
    // The slot is free, the group still held by the first: the third (no group) goes, the second waits.
    expect(core.place(0).map((p) => p.task.order)).toEqual([3]);
    // The first's outcome folded: its group frees, its slot is not freed twice.
    core.finish(first);
    expect(core.usage("w")).toBe(1);
    core.finish(third);
    expect(core.place(0).map((p) => p.task.order)).toEqual([2]);
    expect(core.usage("w")).toBe(1);
  });

  it("scheduler - a removed worker hands back the attempts it freed the slot of but whose outcome is not folded", () => {
    const core = new SchedulerCore();
    core.upsertWorker({ workerId: "w", tasks: ["a"], slots: 1 });
    const t = task("a", 1);
    core.enqueue(t);
    core.place(0);
    core.slotFreed(t, "w");
    expect(core.removeWorker("w")).toEqual([t]);
    expect(core.knows(t)).toBe(false);
  });

  it("scheduler - spreads work to the worker with the most free slots", () => {
    const core = new SchedulerCore();
    core.upsertWorker({ workerId: "w1", tasks: ["a"], slots: 2 });
    core.upsertWorker({ workerId: "w2", tasks: ["a"], slots: 2 });
    for (let i = 0; i < 4; i++) core.enqueue(task("a", 10 + i));
    const placed = core.place(0);
    expect(placed.filter((p) => p.workerId === "w1")).toHaveLength(2);
    expect(placed.filter((p) => p.workerId === "w2")).toHaveLength(2);
  });

  it("scheduler - duplicates are ignored and a removed worker hands back what it held", () => {
    const core = new SchedulerCore();
    const t = task("a", 1);
    core.enqueue(t);
    core.enqueue({ ...t });
    core.upsertWorker({ workerId: "w", tasks: ["a"], slots: 5 });
    expect(core.place(0)).toHaveLength(1);
    expect(core.removeWorker("w")).toEqual([t]);
    core.enqueue(t);
    core.upsertWorker({ workerId: "w2", tasks: ["a"], slots: 1 });
    expect(core.place(0)).toEqual([{ task: t, workerId: "w2" }]);
  });

  it("scheduler - hold moves an attempt to the worker that started it and frees the other slot", () => {
    const core = new SchedulerCore();
    core.upsertWorker({ workerId: "w1", tasks: ["a"], slots: 1 });
    core.upsertWorker({ workerId: "w2", tasks: ["a"], slots: 1 });
    const t = task("a", 1);
    core.enqueue(t);
    const [p] = core.place(0);
    const other = p?.workerId === "w1" ? "w2" : "w1";
    core.hold(t, other);
    expect(core.usage(other)).toBe(1);
    expect(core.usage(p?.workerId as string)).toBe(0);
  });

  it("scheduler - the queue stays in order across removals, re-queues and recovery in any order", () => {
    const core = new SchedulerCore();
    for (const n of [5, 1, 4, 2, 3, 9, 7]) core.enqueue(task("a", n));
    core.finish({ taskRunId: "r4-0", attempt: 0 });
    core.enqueue(task("a", 6));
    core.enqueue(task("a", 8));
    core.upsertWorker({ workerId: "w", tasks: ["a"], slots: 100 });
    expect(core.place(0).map((p) => p.task.order)).toEqual([1, 2, 3, 5, 6, 7, 8, 9]);
  });

  it("scheduler - higher priority first across tasks, FIFO within a priority", () => {
    const core = new SchedulerCore();
    core.enqueue({ ...task("a", 1), priority: 1 });
    core.enqueue({ ...task("b", 2), priority: 2 });
    core.enqueue({ ...task("a", 3), priority: 3 });
    core.enqueue({ ...task("b", 4), priority: 3 });
    core.enqueue({ ...task("a", 5), priority: 2 });
    core.upsertWorker({ workerId: "w", tasks: ["a", "b"], slots: 10 });
    expect(core.place(0).map((p) => p.task.order)).toEqual([3, 4, 2, 5, 1]);
    core.finish({ taskRunId: "r1-0", attempt: 0 });
    expect(core.usage("w")).toBe(4);
  });

  it("scheduler - takeQueued hands back a whole backlog at once, placed attempts stay", () => {
    const core = new SchedulerCore();
    core.upsertWorker({ workerId: "w", tasks: ["a"], slots: 1 });
    core.enqueue(task("a", 1));
    expect(core.place(0)).toHaveLength(1);
    const n = 200_000; // a spread of this many overflowed the stack; one-by-one removal was quadratic
    for (let i = 0; i < n; i++) core.enqueue(task("a", 10 + i));
    const taken = core.takeQueued("a");
    expect(taken).toHaveLength(n);
    expect(taken[0]?.order).toBe(10);
    expect(core.depths().get("a")).toBeUndefined();
    expect(core.knows({ taskRunId: "r10-0", attempt: 0 })).toBe(false);
    expect(core.usage("w")).toBe(1);
    for (const t of taken.slice(0, 3)) core.enqueue(t);
    core.finish({ taskRunId: "r1-0", attempt: 0 });
    expect(core.place(0).map((p) => p.task.order)).toEqual([10]);
    expect(core.depths().get("a")).toBe(2);
  });

  it("scheduler - place stops at its limit and goes on from there in the next call", () => {
    const core = new SchedulerCore();
    for (let i = 1; i <= 5; i++) core.enqueue(task("a", i));
    core.upsertWorker({ workerId: "w", tasks: ["a"], slots: 100 });
    expect(core.place(0, 2).map((p) => p.task.order)).toEqual([1, 2]);
    expect(core.place(0, 2).map((p) => p.task.order)).toEqual([3, 4]);
    expect(core.place(0).map((p) => p.task.order)).toEqual([5]);
  });

  it("scheduler - oldestQueued gives each task's lowest order over lanes and priorities; isQueued only what waits", () => {
    const core = new SchedulerCore();
    const lane = (t: QueuedTask, key: string, priority = 1) => ({
      ...t,
      priority,
      flow: { lane: key, groups: [], rates: [], labels: [], slotCost: 1 },
    });
    core.enqueue(lane(task("a", 5), "x"));
    core.enqueue(lane(task("a", 3), "y"));
    core.enqueue(lane(task("a", 2), "y", 3)); // oldest, in another priority
    core.enqueue(task("b", 9));
    expect([...core.oldestQueued()].map(([name, q]) => [name, q.order])).toEqual([
      ["a", 2],
      ["b", 9],
    ]);
    core.upsertWorker({ workerId: "w", tasks: ["a"], slots: 1 });
    const [placed] = core.place(0); // priority 3 first
    expect(placed?.task.order).toBe(2);
    expect(core.isQueued(placed?.task as QueuedTask)).toBe(false);
    expect(core.knows(placed?.task as QueuedTask)).toBe(true);
    expect(core.isQueued({ taskRunId: "r3-0", attempt: 0 })).toBe(true);
    expect(core.oldestQueued().get("a")?.order).toBe(3);
  });

  it("scheduler - two attempts of one task-run known at once are kept apart: one held, the next queued", () => {
    const core = new SchedulerCore();
    core.upsertWorker({ workerId: "w", tasks: ["a"], slots: 2 });
    const first = task("a", 1);
    core.enqueue(first);
    expect(core.place(0)).toHaveLength(1);
    const next = { ...first, attempt: 1, order: 2 };
    core.enqueue(next);
    expect(core.workerOf(first)).toBe("w");
    expect(core.isQueued(next)).toBe(true);
    expect(core.knows({ taskRunId: first.taskRunId, attempt: 2 })).toBe(false);
    core.finish(first);
    expect(core.knows(first)).toBe(false);
    expect(core.usage("w")).toBe(0);
    expect(core.place(0).map((p) => [p.task.taskRunId, p.task.attempt])).toEqual([[first.taskRunId, 1]]);
    core.finish(next);
    expect(core.knows(next)).toBe(false);
    expect(core.usage("w")).toBe(0);
  });

  it("schedule deadlines - expired gives queued and placed attempts past their deadline, in order, once", () => {
    const core = new SchedulerCore();
    const [a, b, c, d] = [task("a", 1), task("a", 2), task("a", 3), task("a", 4)];
    core.enqueue(b, 2000);
    core.enqueue(a, 1000);
    core.enqueue(c, 3000);
    core.enqueue(d); // no deadline
    expect(core.nextDeadline()).toBe(1000);
    core.upsertWorker({ workerId: "w", tasks: ["a"], slots: 1 });
    expect(core.place(0).map((p) => p.task)).toEqual([a]); // placed, not started: still waiting for its worker
    core.finish(b); // done: its deadline goes with it
    expect(core.expired(999)).toEqual([]);
    expect(core.expired(2500)).toEqual([a]);
    expect(core.expired(2500)).toEqual([]);
    expect(core.nextDeadline()).toBe(3000);
    expect(core.expired(10_000)).toEqual([c]);
    expect(core.nextDeadline()).toBeUndefined();
  });

  it("schedule deadlines - an attempt queued again with a new record has the new record's deadline only", () => {
    const core = new SchedulerCore();
    const t = task("a", 1);
    core.enqueue(t, 1000);
    const [taken] = core.takeQueued("a");
    expect(taken).toBe(t);
    expect(core.nextDeadline()).toBeUndefined();
    const again = { ...t };
    core.enqueue(again, 5000);
    expect(core.expired(4000)).toEqual([]);
    expect(core.expired(5000)).toEqual([again]);
  });

  it("schedule deadlines - finished attempts' entries are dropped: the heap stays bounded by the attempts known", () => {
    const core = new SchedulerCore();
    for (let i = 0; i < 50_000; i++) {
      const t = task("a", 100 + i);
      core.enqueue(t, 60_000 + i);
      if (i % 1000 !== 0) core.finish(t);
    }
    expect(core.depths().get("a")).toBe(50);
    expect((core as unknown as { deadlines: { size: number } }).deadlines.size).toBeLessThan(2 * 50 + 1024 + 2);
    expect(core.expired(200_000)).toHaveLength(50);
  });

  it("scheduler - an undelivered placement goes back to the head of its queue", () => {
    const core = new SchedulerCore();
    core.upsertWorker({ workerId: "w", tasks: ["a"], slots: 1 });
    const t = task("a", 1);
    core.enqueue(t);
    core.enqueue(task("a", 2));
    const [p] = core.place(0);
    core.unplace(p?.task as QueuedTask);
    expect(core.usage("w")).toBe(0);
    expect(core.depths().get("a")).toBe(2);
    expect(core.place(0)[0]?.task.order).toBe(1);
  });

  describe("attempts of short tasks queued on busy workers", () => {
    /** A core whose task `a` ran `ms` in each of its last `samples` attempts. */
    function warmed(ms: number, samples = 3): SchedulerCore {
      const core = new SchedulerCore();
      for (let i = 0; i < samples; i++) core.ran("a", ms);
      return core;
    }

    it("scheduler - a short task waits on a full worker, as many per slot as fill the horizon; a long or new one does not", () => {
      // 2 ms attempts: the horizon would hold 25 per slot, the cap allows 10.
      const short = warmed(2);
      short.upsertWorker({ workerId: "w", tasks: ["a"], slots: 2 });
      const room = 2 * (1 + MAX_QUEUED_PER_SLOT);
      for (let i = 1; i <= room + 1; i++) short.enqueue(task("a", i));
      expect(short.place(0).length).toBe(room);
      expect(short.snapshot().workers[0]).toMatchObject({
        slots: 2,
        usedSlots: 2,
        queuedOnWorker: room - 2,
        running: room,
      });
      // One ended: its place goes to the next, never more than that.
      short.finish({ taskRunId: "r1-0", attempt: 0 });
      expect(short.place(0).map((p) => p.task.order)).toEqual([room + 1]);

      for (const [core, why] of [
        [warmed(500), "long"],
        [warmed(2, 2), "too few samples"],
      ] as const) {
        core.upsertWorker({ workerId: "w", tasks: ["a"], slots: 2 });
        for (let i = 1; i <= 4; i++) core.enqueue(task("a", i));
        expect(core.place(0).length, why).toBe(2);
      }
    });

    it("scheduler - longer attempts wait fewer per slot: what waits on a slot stays within the horizon", () => {
      for (const [ms, perSlot] of [
        [QUEUE_HORIZON_MS / 4, 4],
        [QUEUE_HORIZON_MS / 2 + 1, 1],
        [99, 1],
      ] as const) {
        const core = warmed(ms);
        core.upsertWorker({ workerId: "w", tasks: ["a"], slots: 3 });
        for (let i = 1; i <= 50; i++) core.enqueue(task("a", i));
        expect(core.place(0).length, `${ms} ms`).toBe(3 * (1 + perSlot));
      }
    });

    it("scheduler - the average follows the latest attempts: a task that turned long stops queueing on workers", () => {
      const core = warmed(2, 10);
      for (let i = 0; i < 5; i++) core.ran("a", 1_000);
      core.upsertWorker({ workerId: "w", tasks: ["a"], slots: 1 });
      core.enqueue(task("a", 1));
      core.enqueue(task("a", 2));
      expect(core.place(0).length).toBe(1);
    });

    it("scheduler - a worker with a free slot comes first; durable tasks never wait on a worker", () => {
      const core = warmed(2);
      core.upsertWorker({ workerId: "big", tasks: ["a"], slots: 4 });
      core.upsertWorker({ workerId: "small", tasks: ["a"], slots: 1 });
      for (let i = 1; i <= 5; i++) core.enqueue(task("a", i));
      // Five attempts, five slots: each goes to a free slot, none waits while a slot is free elsewhere.
      const placed = core.place(0);
      expect(placed.filter((p) => p.workerId === "big").length).toBe(4);
      expect(placed.filter((p) => p.workerId === "small").length).toBe(1);

      const durable = warmed(2);
      durable.upsertWorker({ workerId: "w", tasks: ["a"], slots: 0, durableSlots: 1 });
      const flow = { lane: "", groups: [], rates: [], labels: [], slotCost: 1, durable: true };
      durable.enqueue({ ...task("a", 1), flow });
      durable.enqueue({ ...task("a", 2), flow });
      expect(durable.place(0).length).toBe(1);
    });

    it("scheduler - an attempt given back goes back to the head of its queue, and its worker takes no more than its slots for a while", () => {
      const core = warmed(2);
      core.upsertWorker({ workerId: "w", tasks: ["a"], slots: 1 });
      const room = 1 + MAX_QUEUED_PER_SLOT;
      for (let i = 1; i <= room + 2; i++) core.enqueue(task("a", i));
      expect(core.place(1_000).length).toBe(room);
      // Not placed there, or not placed at all: nothing to give back.
      expect(core.returned({ taskRunId: "r2-0", attempt: 0 }, "other", 2_000)).toBe(false);
      expect(core.returned({ taskRunId: `r${room + 1}-0`, attempt: 0 }, "w", 2_000)).toBe(false);
      expect(core.returned({ taskRunId: "r2-0", attempt: 0 }, "w", 2_000)).toBe(true);
      expect(core.depths().get("a")).toBe(3);
      expect(core.usage("w")).toBe(room - 1);
      // w is full, and takes no more than its slots for a while.
      expect(core.place(2_000)).toEqual([]);
      // Another worker joins: the given-back attempt is the first it gets, then the next in line.
      core.upsertWorker({ workerId: "w2", tasks: ["a"], slots: 1 });
      const placed = core.place(2_001);
      expect(placed.map((p) => [p.task.order, p.workerId])).toEqual([
        [2, "w2"],
        [room + 1, "w2"],
        [room + 2, "w2"],
      ]);
      // The hold-off over, the first worker takes what waits again.
      core.finish({ taskRunId: "r1-0", attempt: 0 });
      core.finish({ taskRunId: "r2-0", attempt: 0 });
      // w2 holds two of its `room`: what fits there goes there while w still holds off, the next one to w after.
      const fitsW2 = room - 2;
      for (let i = 1; i <= fitsW2 + 1; i++) core.enqueue(task("a", room + 2 + i));
      const held = core.place(1_999 + PREFETCH_HOLD_OFF_MS);
      expect(held.length).toBe(fitsW2);
      expect(held.every((p) => p.workerId === "w2")).toBe(true);
      expect(core.place(2_000 + PREFETCH_HOLD_OFF_MS).map((p) => [p.task.order, p.workerId])).toEqual([
        [room + 3 + fitsW2, "w"],
      ]);
    });
  });
});
