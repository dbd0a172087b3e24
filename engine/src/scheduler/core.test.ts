import { describe, expect, it } from "vitest";
import { type QueuedTask, SchedulerCore } from "./core.js";

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
});
