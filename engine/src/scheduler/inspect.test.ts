import { describe, expect, it } from "vitest";
import { SchedulerCore } from "./core.js";
import { limiterState, summarizeQueues } from "./inspect.js";

describe("queue inspection", () => {
  it("inspect - per task: queued depth, oldest queued and why it waits, running, retrying, workers", () => {
    const now = Date.parse("2026-11-28T10:00:10Z");
    const queues = summarizeQueues(
      [
        { taskName: "b", status: "QUEUED", retrying: false, queuedAt: "2026-11-28T10:00:05Z" },
        {
          taskName: "b",
          status: "QUEUED",
          retrying: false,
          queuedAt: "2026-11-28T10:00:00Z",
          waiting: { reason: "RATE_LIMIT", detail: "openai", since: "2026-11-28T10:00:01Z" },
        },
        { taskName: "b", status: "QUEUED", retrying: true, queuedAt: "2026-11-28T09:00:00Z" },
        { taskName: "a", status: "RUNNING", retrying: false },
        { taskName: "a", status: "COMPLETED", retrying: false },
      ],
      [["a", "b"], ["a"]],
      now,
    );
    expect(queues).toEqual([
      {
        taskName: "a",
        queued: 0,
        oldestQueuedAt: null,
        oldestAgeMs: null,
        running: 1,
        retrying: 0,
        waiting: null,
        workers: 2,
      },
      {
        taskName: "b",
        queued: 2,
        oldestQueuedAt: "2026-11-28T10:00:00Z",
        oldestAgeMs: 10_000,
        running: 0,
        retrying: 1,
        waiting: { reason: "RATE_LIMIT", detail: "openai", since: "2026-11-28T10:00:01Z" },
        workers: 1,
      },
    ]);
  });

  it("inspect - attempts of cold runs count as queued; the oldest of them is the oldest when it is older", () => {
    const now = Date.parse("2026-11-28T10:00:10Z");
    const queues = summarizeQueues(
      [
        {
          taskName: "a",
          status: "QUEUED",
          retrying: false,
          queuedAt: "2026-11-28T10:00:05Z",
          waiting: { reason: "CONCURRENCY", detail: "g", since: "2026-11-28T10:00:06Z" },
        },
        { taskName: "b", status: "QUEUED", retrying: false, queuedAt: "2026-11-28T10:00:01Z" },
      ],
      [],
      now,
      new Map([
        ["a", { queued: 1000, oldestQueuedAt: "2026-11-28T10:00:00Z" }],
        ["b", { queued: 10, oldestQueuedAt: "2026-11-28T10:00:02Z" }],
        ["c", { queued: 5 }],
      ]),
    );
    expect(queues.map((q) => [q.taskName, q.queued, q.oldestQueuedAt, q.oldestAgeMs, q.waiting])).toEqual([
      ["a", 1001, "2026-11-28T10:00:00Z", 10_000, null],
      ["b", 11, "2026-11-28T10:00:01Z", 9_000, null],
      ["c", 5, null, null, null],
    ]);
  });

  it("inspect - the core's snapshot shows slots, groups and rate-limit keys without changing them", () => {
    const core = new SchedulerCore();
    core.setRateLimit("openai", 2, 1000);
    core.upsertWorker({ workerId: "w", tasks: ["t"], slots: 3 });
    const flow = {
      lane: "",
      groups: [{ id: "g", maxRuns: 1, strategy: "GROUP_ROUND_ROBIN" as const }],
      rates: [{ key: "openai", units: 1 }],
      labels: [],
      slotCost: 1,
    };
    for (let i = 0; i < 3; i++)
      core.enqueue({ runId: `r${i}`, taskRunId: `r${i}-0`, taskName: "t", attempt: 0, order: i, flow });
    expect(core.place(0)).toHaveLength(1);
    core.place(0); // the others park on the group
    const snap = core.snapshot();
    expect(snap.tasks).toEqual([
      { taskName: "t", queued: 2, lanes: 1, parked: { concurrency: 1, rateLimit: 0, worker: 0 } },
    ]);
    expect(snap.workers).toEqual([
      {
        workerId: "w",
        slots: 3,
        usedSlots: 1,
        queuedOnWorker: 0,
        durableSlots: 0,
        usedDurableSlots: 0,
        running: 1,
        byTask: { t: 1 },
        tasks: ["t"],
      },
    ]);
    const state = limiterState(snap, core.rates.snapshot(0));
    expect(state.concurrency).toEqual([{ group: "g", maxRuns: 1, running: 1, members: 3, waitingLanes: 1 }]);
    expect(state.rateLimits).toEqual([
      { key: "openai", limit: 2, windowMs: 1100, used: 0, reserved: 1, pausedUntil: null },
    ]);
    // Reading changed nothing: the placement goes on as before.
    core.finish({ taskRunId: "r0-0", attempt: 0 });
    expect(core.place(2000)).toHaveLength(1);
  });
});
