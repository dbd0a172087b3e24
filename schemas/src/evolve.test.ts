import { describe, expect, it } from "vitest";
import { expandEvent, makeEvent } from "./codec.js";
import { EventTypes, type TaskCompleted, type TaskjetEvent, TaskjetEventSchema } from "./events.js";
import { evolve, fold } from "./evolve.js";
import { RunStatuses } from "./run-state.js";

const runId = "01RUN";
const taskRunId = "01RUN-0";

function ev(e: unknown): TaskjetEvent {
  return TaskjetEventSchema.parse(e);
}
const created = ev(
  makeEvent(EventTypes.RunCreated, {
    runId,
    data: {
      workflowName: "hello",
      input: { a: 1 },
      tasks: [{ taskRunId, taskName: "hello" }],
      trigger: { kind: "run" },
    },
  }),
);
const started = (attempt = 0, workerId = "w1") =>
  ev(
    makeEvent(EventTypes.TaskStarted, {
      runId,
      taskRunId,
      data: { attempt, workerId, workerName: "worker", assignedAt: new Date().toISOString() },
    }),
  );
const completed = (attempt = 0) =>
  ev(
    makeEvent(EventTypes.TaskCompleted, { runId, taskRunId, data: { attempt, workerId: "w1", output: { ok: true } } }),
  );
const failed = (attempt = 0) =>
  ev(
    makeEvent(EventTypes.TaskFailed, {
      runId,
      taskRunId,
      data: { attempt, workerId: "w1", error: { name: "Error", message: "boom", stack: "Error: boom\n  at x" } },
    }),
  );

describe("evolve", () => {
  it("evolve - RunCreated makes a queued run with its tasks and defaults", () => {
    const s = evolve(undefined, created, 5);
    expect(s?.status).toBe(RunStatuses.queued);
    expect(s?.tasks).toEqual([
      { taskRunId, taskName: "hello", status: "QUEUED", attempt: 0, queuedAt: created.at, queuedSeq: 5 },
    ]);
    expect(s?.priority).toBe(1);
    expect(s?.additionalMetadata).toEqual({});
    expect(s?.lastSeq).toBe(5);
  });

  it("evolve - started then completed ends COMPLETED with the output and timing", () => {
    const s = fold([
      { event: created, seq: 1 },
      { event: started(), seq: 2 },
      { event: completed(), seq: 3 },
    ]);
    expect(s?.status).toBe(RunStatuses.completed);
    expect(s?.output).toEqual({ ok: true });
    expect(s?.startedAt).toBeDefined();
    expect(s?.finishedAt).toBeDefined();
    expect(s?.tasks[0]?.workerId).toBe("w1");
    expect(s?.eventCount).toBe(3);
    expect(s?.lastSeq).toBe(3);
  });

  it("evolve - a failure ends FAILED with the recorded error", () => {
    const s = fold([
      { event: created, seq: 1 },
      { event: started(), seq: 2 },
      { event: failed(), seq: 3 },
    ]);
    expect(s?.status).toBe(RunStatuses.failed);
    expect(s?.error?.message).toBe("boom");
    expect(s?.tasks[0]?.error?.stack).toContain("at x");
  });

  it("evolve - nothing completes twice: a second result and stale attempts change nothing", () => {
    const done = fold([
      { event: created, seq: 1 },
      { event: started(), seq: 2 },
      { event: completed(), seq: 3 },
    ]);
    const again = evolve(done, failed(), 4);
    expect(again?.status).toBe(RunStatuses.completed);
    expect(again?.lastSeq).toBe(4);
    const stale = evolve(evolve(undefined, created, 1), started(3), 2);
    expect(stale?.tasks[0]?.status).toBe(RunStatuses.queued);
  });

  it("evolve - an event at or below the last sequence is ignored (redelivery)", () => {
    const s = fold([
      { event: created, seq: 1 },
      { event: started(), seq: 2 },
    ]);
    expect(evolve(s, completed(), 2)).toBe(s);
  });

  it("evolve - a rejected first message makes a failed run carrying the reason", () => {
    const rejected = ev(makeEvent(EventTypes.EventRejected, { runId, data: { rejectedSeq: 1, reason: "not JSON" } }));
    const s = evolve(undefined, rejected, 2);
    expect(s?.status).toBe(RunStatuses.failed);
    expect(s?.error).toEqual({ name: "EventRejected", message: "not JSON" });
  });

  it("evolve - facts about a run never created fold to nothing", () => {
    expect(evolve(undefined, started(), 1)).toBeUndefined();
  });
});

describe("evolve - retries", () => {
  const policy = { retries: 1 };
  const startedWith = (attempt: number) =>
    ev(
      makeEvent(EventTypes.TaskStarted, {
        runId,
        taskRunId,
        data: { attempt, workerId: "w1", workerName: "worker", assignedAt: new Date().toISOString(), policy },
      }),
    );
  const scheduled = ev(
    makeEvent(EventTypes.TaskRetryScheduled, {
      runId,
      taskRunId,
      data: { attempt: 1, at: "2026-11-28T10:00:00.000Z", delayMs: 100 },
    }),
  );
  const queued = ev(makeEvent(EventTypes.TaskQueued, { runId, taskRunId, data: { attempt: 1 } }));

  it("evolve - queuedSeq is the sequence of the event that queued the attempt: a later TaskWaiting keeps it, a retry's TaskQueued moves it", () => {
    const waiting = ev(
      makeEvent(EventTypes.TaskWaiting, {
        runId,
        taskRunId,
        data: { attempt: 0, reason: "CONCURRENCY", detail: "group k full" },
      }),
    );
    const states = [
      { event: created, seq: 3 },
      { event: waiting, seq: 9 },
      { event: startedWith(0), seq: 12 },
      { event: failed(0), seq: 13 },
      { event: scheduled, seq: 14 },
      { event: queued, seq: 20 },
      { event: waiting, seq: 21 },
    ].map((_, i, all) => fold(all.slice(0, i + 1))?.tasks[0]);
    expect(states.map((t) => [t?.status, t?.attempt, t?.queuedSeq])).toEqual([
      ["QUEUED", 0, 3],
      ["QUEUED", 0, 3],
      ["RUNNING", 0, 3],
      ["QUEUED", 0, 13], // waiting out its backoff (`retry`): not in a queue, recovery skips it
      ["QUEUED", 0, 13],
      ["QUEUED", 1, 20],
      ["QUEUED", 1, 20],
    ]);
  });

  it("evolve - a failure with retries left is not final: retry pending, then scheduled, then the next attempt queued", () => {
    const afterFail = fold([
      { event: created, seq: 1 },
      { event: startedWith(0), seq: 2 },
      { event: failed(0), seq: 3 },
    ]);
    expect(afterFail?.status).toBe(RunStatuses.running);
    expect(afterFail?.tasks[0]).toMatchObject({ status: "QUEUED", attempt: 0, retry: { attempt: 1 } });
    const afterSchedule = evolve(afterFail, scheduled, 4);
    expect(afterSchedule?.tasks[0]?.retry).toEqual({ attempt: 1, at: "2026-11-28T10:00:00.000Z" });
    // A start of the next attempt before it is queued changes nothing.
    expect(evolve(afterSchedule, startedWith(1), 5)?.tasks[0]?.status).toBe("QUEUED");
    const afterQueued = evolve(afterSchedule, queued, 5);
    expect(afterQueued?.tasks[0]).toMatchObject({ status: "QUEUED", attempt: 1 });
    expect(afterQueued?.tasks[0]?.retry).toBeUndefined();
    const final = evolve(evolve(afterQueued, startedWith(1), 6), completed(1), 7);
    expect(final?.status).toBe(RunStatuses.completed);
    expect(final?.tasks[0]?.error).toBeUndefined();
  });

  it("evolve - the last allowed failure, and a non-retryable one, are final", () => {
    const last = fold([
      { event: created, seq: 1 },
      { event: startedWith(0), seq: 2 },
      { event: failed(0), seq: 3 },
      { event: scheduled, seq: 4 },
      { event: queued, seq: 5 },
      { event: startedWith(1), seq: 6 },
      { event: failed(1), seq: 7 },
    ]);
    expect(last?.status).toBe(RunStatuses.failed);
    const nonRetryable = ev(
      makeEvent(EventTypes.TaskFailed, {
        runId,
        taskRunId,
        data: { attempt: 0, workerId: "w1", error: { name: "NonRetryableError", message: "no" }, nonRetryable: true },
      }),
    );
    const fatal = fold([
      { event: created, seq: 1 },
      { event: startedWith(0), seq: 2 },
      { event: nonRetryable, seq: 3 },
    ]);
    expect(fatal?.status).toBe(RunStatuses.failed);
  });
});

describe("evolve - a result that carries its start", () => {
  type Start = NonNullable<TaskCompleted["data"]["started"]>;
  const startedAt = "2026-11-28T10:00:00.000Z";
  const start = (extra: Partial<Start> = {}): Start => ({
    at: startedAt,
    workerName: "worker-1",
    assignedAt: "2026-11-28T09:59:59.990Z",
    ...extra,
  });
  const completedWith = (attempt: number, started?: Start, workerId = "w1") =>
    ev(
      makeEvent(EventTypes.TaskCompleted, {
        runId,
        taskRunId,
        data: { attempt, workerId, output: { ok: true }, ...(started ? { started } : {}) },
      }),
    );
  const failedWith = (attempt: number, started: Start) =>
    ev(
      makeEvent(EventTypes.TaskFailed, {
        runId,
        taskRunId,
        data: { attempt, workerId: "w1", error: { name: "Error", message: "boom" }, started },
      }),
    );

  it("evolve - a TaskCompleted carrying its start completes a queued attempt, started then, by that worker", () => {
    const result = completedWith(0, start());
    const s = fold([
      { event: created, seq: 1 },
      { event: result, seq: 2 },
    ]);
    expect(s?.status).toBe(RunStatuses.completed);
    expect(s?.output).toEqual({ ok: true });
    expect(s?.startedAt).toBe(startedAt);
    expect(s?.tasks[0]).toMatchObject({
      status: "COMPLETED",
      attempt: 0,
      workerId: "w1",
      workerName: "worker-1",
      startedAt,
    });
    expect(s?.eventCount).toBe(2);
    // The same as the two facts it stands for.
    const [started, completed] = expandEvent(result);
    const two = fold([
      { event: created, seq: 1 },
      { event: started as TaskjetEvent, seq: 2 },
      { event: completed as TaskjetEvent, seq: 3 },
    ]);
    expect(two?.tasks[0]).toEqual(s?.tasks[0]);
  });

  it("evolve - a TaskFailed carrying its start uses the policy it carries: a retry is scheduled, then runs", () => {
    const afterFail = fold([
      { event: created, seq: 1 },
      { event: failedWith(0, start({ policy: { retries: 1 } })), seq: 2 },
    ]);
    expect(afterFail?.status).toBe(RunStatuses.running);
    expect(afterFail?.tasks[0]).toMatchObject({
      status: "QUEUED",
      attempt: 0,
      retry: { attempt: 1 },
      policy: { retries: 1 },
      error: { message: "boom" },
    });
    const scheduled = ev(
      makeEvent(EventTypes.TaskRetryScheduled, { runId, taskRunId, data: { attempt: 1, at: startedAt, delayMs: 100 } }),
    );
    const queued = ev(makeEvent(EventTypes.TaskQueued, { runId, taskRunId, data: { attempt: 1 } }));
    const retried = fold([
      { event: created, seq: 1 },
      { event: failedWith(0, start({ policy: { retries: 1 } })), seq: 2 },
      { event: scheduled, seq: 3 },
      { event: queued, seq: 4 },
    ]);
    expect(retried?.tasks[0]).toMatchObject({ status: "QUEUED", attempt: 1 });
    // The retry's own short attempt fails too: no retries left, the run fails.
    expect(evolve(retried, failedWith(1, start({ policy: { retries: 1 } })), 5)?.status).toBe(RunStatuses.failed);
    // Without a policy in the start, the failure is final.
    const noPolicy = fold([
      { event: created, seq: 1 },
      { event: failedWith(0, start()), seq: 2 },
    ]);
    expect(noPolicy?.status).toBe(RunStatuses.failed);
  });

  it("evolve - a TaskRateLimited carrying its start re-queues the next attempt without using a retry; sticky is set", () => {
    const limited = ev(
      makeEvent(EventTypes.TaskRateLimited, {
        runId,
        taskRunId,
        data: { attempt: 0, workerId: "w1", until: "2026-11-28T10:00:05.000Z", started: start({ sticky: "HARD" }) },
      }),
    );
    const s = fold([
      { event: created, seq: 1 },
      { event: limited, seq: 2 },
    ]);
    expect(s?.tasks[0]).toMatchObject({ status: "QUEUED", attempt: 1, requeues: 1 });
    expect(s?.sticky).toEqual({ mode: "HARD", workerId: "w1" });
  });

  it("evolve - a result carrying a start for an attempt another worker started is ignored", () => {
    const byOther = ev(
      makeEvent(EventTypes.TaskStarted, {
        runId,
        taskRunId,
        data: { attempt: 0, workerId: "w2", workerName: "worker-2", assignedAt: startedAt },
      }),
    );
    const running = fold([
      { event: created, seq: 1 },
      { event: byOther, seq: 2 },
    ]);
    const s = evolve(running, completedWith(0, start()), 3);
    expect(s?.status).toBe(RunStatuses.running);
    expect(s?.tasks[0]).toEqual(running?.tasks[0]);
    expect(s?.tasks[0]).toMatchObject({ status: "RUNNING", workerId: "w2", workerName: "worker-2" });
    expect(s?.lastSeq).toBe(3);
    // Its own start recorded, then a stale copy's result carrying a start: the same.
    const completed = evolve(running, completedWith(0, undefined, "w2"), 3);
    expect(evolve(completed, completedWith(0, start()), 4)?.tasks[0]).toEqual(completed?.tasks[0]);
  });

  it("evolve - a result carrying a start for an attempt that is not the current one changes nothing", () => {
    const s = fold([
      { event: created, seq: 1 },
      { event: completedWith(1, start()), seq: 2 },
    ]);
    expect(s?.status).toBe(RunStatuses.queued);
    expect(s?.tasks[0]).toMatchObject({ status: "QUEUED", attempt: 0 });
    expect(s?.tasks[0]?.workerId).toBeUndefined();
  });
});

describe("evolve - workflows", () => {
  const wf = ev(
    makeEvent(EventTypes.RunCreated, {
      runId,
      data: {
        workflowName: "wf",
        input: {},
        tasks: [
          { taskRunId: "t-a", taskName: "wf.a", ref: "a" },
          { taskRunId: "t-b", taskName: "wf.b", ref: "b", parents: ["a"] },
          { taskRunId: "t-c", taskName: "wf.c", ref: "c", parents: ["a"] },
          { taskRunId: "t-d", taskName: "wf.d", ref: "d", parents: ["b", "c"] },
          { taskRunId: "t-h", taskName: "wf.h", ref: "h", role: "onFailure" },
        ],
        trigger: { kind: "run" },
      },
    }),
  );
  const start = (t: string) =>
    ev(
      makeEvent(EventTypes.TaskStarted, {
        runId,
        taskRunId: t,
        data: { attempt: 0, workerId: "w1", workerName: "w", assignedAt: new Date().toISOString() },
      }),
    );
  const done = (t: string, output: Record<string, unknown> = {}) =>
    ev(makeEvent(EventTypes.TaskCompleted, { runId, taskRunId: t, data: { attempt: 0, workerId: "w1", output } }));
  const fail = (t: string) =>
    ev(
      makeEvent(EventTypes.TaskFailed, {
        runId,
        taskRunId: t,
        data: { attempt: 0, workerId: "w1", error: { name: "Error", message: `${t} broke` } },
      }),
    );
  const statuses = (events: TaskjetEvent[]) =>
    Object.fromEntries(
      (fold(events.map((event, i) => ({ event, seq: i + 1 })))?.tasks ?? []).map((t) => [t.ref, t.status]),
    );

  it("evolve - only roots are queued; a child is queued once all its parents completed", () => {
    expect(statuses([wf])).toEqual({ a: "QUEUED", b: "PENDING", c: "PENDING", d: "PENDING", h: "PENDING" });
    expect(statuses([wf, start("t-a"), done("t-a")])).toMatchObject({ b: "QUEUED", c: "QUEUED", d: "PENDING" });
    const partly = [wf, start("t-a"), done("t-a"), start("t-b"), done("t-b")];
    expect(statuses(partly)).toMatchObject({ c: "QUEUED", d: "PENDING" });
    const all = [...partly, start("t-c"), done("t-c"), start("t-d"), done("t-d", { sum: 1 })];
    const s = fold(all.map((event, i) => ({ event, seq: i + 1 })));
    expect(s?.status).toBe(RunStatuses.completed); // the handler is skipped: the run succeeded
    expect(s?.tasks.find((t) => t.ref === "h")?.status).toBe(RunStatuses.cancelled);
    expect(s?.output).toEqual({ a: {}, b: {}, c: {}, d: { sum: 1 } });
  });

  it("evolve - a failure cancels its descendants, lets a sibling finish, then releases onFailure; the run fails last", () => {
    const events = [wf, start("t-a"), done("t-a"), start("t-b"), start("t-c"), fail("t-b")];
    expect(statuses(events)).toMatchObject({ c: "RUNNING", d: "CANCELLED", h: "PENDING" });
    expect(fold(events.map((event, i) => ({ event, seq: i + 1 })))?.status).toBe(RunStatuses.running);
    const more = [...events, done("t-c")];
    expect(statuses(more)).toMatchObject({ c: "COMPLETED", h: "QUEUED" });
    const end = fold([...more, start("t-h"), done("t-h")].map((event, i) => ({ event, seq: i + 1 })));
    expect(end?.status).toBe(RunStatuses.failed);
    expect(end?.error?.message).toBe("t-b broke");
  });
});
