import { describe, expect, it } from "vitest";
import { makeEvent } from "./codec.js";
import { EventTypes, type TaskjetEvent, TaskjetEventSchema } from "./events.js";
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
    expect(s?.tasks).toEqual([{ taskRunId, taskName: "hello", status: "QUEUED", attempt: 0 }]);
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
