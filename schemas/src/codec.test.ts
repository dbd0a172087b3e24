import { describe, expect, it } from "vitest";
import { decodeEvent, expandEvent, makeEvent } from "./codec.js";
import { EventTypes, type TaskjetEvent, TaskjetEventSchema } from "./events.js";

const runId = "01RUN";
const taskRunId = "01RUN-0";
const ev = (e: unknown): TaskjetEvent => TaskjetEventSchema.parse(e);
const started = {
  at: "2026-11-28T10:00:00.000Z",
  workerName: "worker-1",
  assignedAt: "2026-11-28T09:59:59.990Z",
  policy: { retries: 2 },
  timeoutAt: "2026-11-28T10:01:00.000Z",
  sticky: "SOFT" as const,
};

describe("expandEvent", () => {
  it("expandEvent - a result carrying its start reads as that TaskStarted, then the result without it", () => {
    const completed = ev(
      makeEvent(EventTypes.TaskCompleted, {
        runId,
        taskRunId,
        data: { attempt: 1, workerId: "w1", output: { ok: true }, started },
      }),
    );
    const facts = expandEvent(completed);
    expect(facts.map((e) => e.type)).toEqual(["TaskStarted", "TaskCompleted"]);
    expect(facts[0]).toEqual({
      v: 1,
      id: completed.id,
      type: "TaskStarted",
      at: started.at,
      runId,
      taskRunId,
      data: {
        attempt: 1,
        workerId: "w1",
        workerName: "worker-1",
        assignedAt: started.assignedAt,
        policy: { retries: 2 },
        timeoutAt: started.timeoutAt,
        sticky: "SOFT",
      },
    });
    expect(facts[1]).toEqual({ ...completed, data: { attempt: 1, workerId: "w1", output: { ok: true } } });
    // Both are valid events; the original is left as it was.
    for (const f of facts) expect(TaskjetEventSchema.parse(f)).toEqual(f);
    expect(completed.type === "TaskCompleted" && completed.data.started).toEqual(started);
  });

  it("expandEvent - TaskFailed and TaskRateLimited carrying a start expand too; other events are themselves", () => {
    const failed = ev(
      makeEvent(EventTypes.TaskFailed, {
        runId,
        taskRunId,
        data: { attempt: 0, workerId: "w1", error: { name: "Error", message: "boom" }, started },
      }),
    );
    expect(expandEvent(failed).map((e) => [e.type, e.at])).toEqual([
      ["TaskStarted", started.at],
      ["TaskFailed", failed.at],
    ]);
    const limited = ev(
      makeEvent(EventTypes.TaskRateLimited, {
        runId,
        taskRunId,
        data: { attempt: 0, workerId: "w1", until: "2026-11-28T10:00:05.000Z", started },
      }),
    );
    expect(expandEvent(limited).map((e) => e.type)).toEqual(["TaskStarted", "TaskRateLimited"]);
    // A result without a start (its TaskStarted was recorded alone), and any other event: unchanged.
    const plain = ev(
      makeEvent(EventTypes.TaskCompleted, { runId, taskRunId, data: { attempt: 0, workerId: "w1", output: {} } }),
    );
    expect(expandEvent(plain)).toEqual([plain]);
    expect(expandEvent(plain)[0]).toBe(plain);
    const alone = ev(
      makeEvent(EventTypes.TaskStarted, {
        runId,
        taskRunId,
        data: { attempt: 0, workerId: "w1", workerName: "worker-1", assignedAt: started.assignedAt },
      }),
    );
    expect(expandEvent(alone)).toEqual([alone]);
  });
});

describe("decodeEvent", () => {
  const bytes = (e: unknown) => new TextEncoder().encode(JSON.stringify(e));
  const created = makeEvent(EventTypes.RunCreated, {
    runId,
    data: {
      workflowName: "wf",
      input: { a: 1 },
      tasks: [{ taskRunId, taskName: "t" }],
      trigger: { kind: "run" },
      additionalMetadata: {},
      priority: 1,
    },
  });
  const completed = makeEvent(EventTypes.TaskCompleted, {
    runId,
    taskRunId,
    data: { attempt: 0, workerId: "w1", output: {}, started },
  });

  it("decodeEvent - its compiled parser keeps the schema's results: defaults, stripped keys, and each error", () => {
    const variants: unknown[] = [
      created,
      completed,
      // defaults filled, an unknown key stripped
      { ...created, data: { ...created.data, additionalMetadata: undefined, priority: undefined, extra: 1 } },
      {
        ...completed,
        data: {
          ...completed.data,
          started: { ...started, policy: { retries: 1, backoff: { factor: 2, maxSeconds: 10 } } },
        },
      },
      // refused: a wrong type, a bad time, a missing field, a bad token, an unknown event type
      { ...completed, data: { ...completed.data, attempt: -1 } },
      { ...completed, at: "yesterday" },
      { ...created, data: { ...created.data, tasks: [] } },
      { ...created, data: { ...created.data, tasks: [{ taskRunId: "a b", taskName: "t" }] } },
      { ...created, type: "RunExploded" },
    ];
    for (const v of variants) {
      const runtime = TaskjetEventSchema.safeParse(JSON.parse(JSON.stringify(v)));
      const decoded = decodeEvent(bytes(v), runId);
      if (runtime.success) expect(decoded).toEqual({ ok: true, event: runtime.data });
      else expect(decoded.ok).toBe(false);
    }
    const refused = decodeEvent(bytes({ ...completed, data: { ...completed.data, attempt: -1 } }), runId);
    expect(refused).toEqual({ ok: false, reason: expect.stringContaining("data.attempt") });
  });
});
