import { describe, expect, it } from "vitest";
import { makeEvent } from "./codec.js";
import { EventTypes, type RunCreated, type TaskjetEvent, TaskjetEventSchema } from "./events.js";
import { evolve } from "./evolve.js";
import { replayPlan } from "./replay.js";
import type { RunState } from "./run-state.js";

const runId = "01REPLAY";
const ev = (e: unknown): TaskjetEvent => TaskjetEventSchema.parse(e);

/** A run created with `data` (RunCreated's), and `step` to fold its next events into it. */
function folded(data: Pick<RunCreated["data"], "workflowName" | "input" | "tasks">): {
  state: RunState;
  seq: number;
  step: (e: unknown) => RunState;
} {
  let seq = 0;
  let state: RunState | undefined;
  const step = (e: unknown) => {
    state = evolve(state, ev(e), ++seq);
    if (!state) throw new Error("no state");
    return state;
  };
  step(makeEvent(EventTypes.RunCreated, { runId, data: { ...data, trigger: { kind: "run" } } }));
  return {
    get state() {
      return state as RunState;
    },
    get seq() {
      return seq;
    },
    step,
  };
}

/** A DAG a → b → c, a → d, with an onFailure handler. */
function dag() {
  return folded({
    workflowName: "wf",
    input: { n: 1 },
    tasks: [
      { taskRunId: "t-a", taskName: "wf.a", ref: "a" },
      { taskRunId: "t-b", taskName: "wf.b", ref: "b", parents: ["a"] },
      { taskRunId: "t-c", taskName: "wf.c", ref: "c", parents: ["b"] },
      { taskRunId: "t-d", taskName: "wf.d", ref: "d", parents: ["a"] },
      { taskRunId: "t-h", taskName: "wf.h", ref: "h", role: "onFailure" },
    ],
  });
}

const start = (taskRunId: string, attempt = 0) =>
  makeEvent(EventTypes.TaskStarted, {
    runId,
    taskRunId,
    data: { attempt, workerId: "w1", workerName: "w", assignedAt: new Date().toISOString() },
  });
const complete = (taskRunId: string, attempt = 0, output: Record<string, unknown> = { ok: taskRunId }) =>
  makeEvent(EventTypes.TaskCompleted, { runId, taskRunId, data: { attempt, workerId: "w1", output } });
const fail = (taskRunId: string, attempt = 0) =>
  makeEvent(EventTypes.TaskFailed, {
    runId,
    taskRunId,
    data: { attempt, workerId: "w1", error: { name: "Error", message: "boom" }, nonRetryable: true },
  });
const replayed = (from?: string) =>
  makeEvent(EventTypes.RunReplayed, { runId, data: from === undefined ? {} : { from } });

/** a and d complete, b fails, so c is cancelled and the handler runs. */
function failedAtB() {
  const r = dag();
  r.step(start("t-a"));
  r.step(complete("t-a"));
  r.step(start("t-d"));
  r.step(complete("t-d"));
  r.step(start("t-b"));
  r.step(fail("t-b"));
  r.step(start("t-h"));
  r.step(complete("t-h"));
  return r;
}

describe("replay", () => {
  it("replay - from a middle task re-runs it, its descendants and the handlers, keeping the other outputs", () => {
    const r = failedAtB();
    expect(r.state.status).toBe("FAILED");
    const s = r.step(replayed("b"));
    const byRef = Object.fromEntries(s.tasks.map((t) => [t.ref, t]));
    expect(s.status).toBe("QUEUED");
    expect(s.error).toBeUndefined();
    expect(s.finishedAt).toBeUndefined();
    expect(s.replays).toBe(1);
    expect(byRef.a).toMatchObject({ status: "COMPLETED", attempt: 0, output: { ok: "t-a" } });
    expect(byRef.d).toMatchObject({ status: "COMPLETED", attempt: 0, output: { ok: "t-d" } });
    expect(byRef.b).toMatchObject({ status: "QUEUED", attempt: 1, requeues: 1, replays: 1 });
    expect(byRef.b?.error).toBeUndefined();
    expect(byRef.c).toMatchObject({ status: "PENDING", attempt: 1 });
    expect(byRef.h).toMatchObject({ status: "PENDING", attempt: 1 });

    r.step(start("t-b", 1));
    r.step(complete("t-b", 1));
    expect(Object.fromEntries(r.state.tasks.map((t) => [t.ref, t.status]))).toMatchObject({ c: "QUEUED" });
    r.step(start("t-c", 1));
    const done = r.step(complete("t-c", 1));
    expect(done.status).toBe("COMPLETED");
    expect(done.output).toEqual({ a: { ok: "t-a" }, b: { ok: "t-b" }, c: { ok: "t-c" }, d: { ok: "t-d" } });
    expect(done.tasks.find((t) => t.ref === "h")).toMatchObject({ status: "CANCELLED" });
  });

  it("replay - without from re-runs every task from the roots", () => {
    const r = failedAtB();
    const s = r.step(replayed());
    expect(s.tasks.map((t) => [t.ref, t.status, t.attempt])).toEqual([
      ["a", "QUEUED", 1],
      ["b", "PENDING", 1],
      ["c", "PENDING", 1],
      ["d", "PENDING", 1],
      ["h", "PENDING", 1],
    ]);
    expect(s.tasks.every((t) => t.output === undefined)).toBe(true);
  });

  it("replay - is ignored for a run not finished, and for a task whose parent did not complete", () => {
    const r = dag();
    const before = r.state;
    expect(r.step(replayed())).toMatchObject({ status: before.status, tasks: before.tasks });
    expect(replayPlan(r.state)).toEqual({ refused: `run ${runId} is QUEUED: only finished runs replay` });

    const f = failedAtB();
    expect("refused" in replayPlan(f.state, "c") && replayPlan(f.state, "c")).toMatchObject({
      refused: expect.stringContaining("replay from b"),
    });
    expect(replayPlan(f.state, "nope")).toMatchObject({ refused: expect.stringContaining("tasks: a, b, c, d") });
    const unchanged = f.step(replayed("c"));
    expect(unchanged.status).toBe("FAILED");
  });

  it("replay - from a task one of whose descendants also needs a task that failed and is not re-run is refused", () => {
    // a → b, a → e, b + e → g: e failed, so g was cancelled; from b would re-run g, which would wait for e forever.
    const { step } = folded({
      workflowName: "wf",
      input: {},
      tasks: [
        { taskRunId: "t-a", taskName: "wf.a", ref: "a" },
        { taskRunId: "t-b", taskName: "wf.b", ref: "b", parents: ["a"] },
        { taskRunId: "t-e", taskName: "wf.e", ref: "e", parents: ["a"] },
        { taskRunId: "t-g", taskName: "wf.g", ref: "g", parents: ["b", "e"] },
      ],
    });
    let failed: RunState | undefined;
    for (const e of [start("t-a"), complete("t-a"), start("t-b"), complete("t-b"), start("t-e"), fail("t-e")]) {
      failed = step(e);
    }
    if (!failed) throw new Error("no state");
    expect(failed.status).toBe("FAILED");
    expect(replayPlan(failed, "b")).toEqual({
      refused: `task g of run ${runId} also needs e, which did not complete and a replay from b does not re-run: replay the whole run, or from a task both depend on`,
    });
    expect(step(replayed("b")).status).toBe("FAILED"); // refused: nothing changes
    expect(replayPlan(failed, "e")).toMatchObject({ rerun: new Set(["e", "g"]) });
  });

  it("replay - a replayed attempt gets the full retry budget again", () => {
    const { step } = folded({ workflowName: "t", input: {}, tasks: [{ taskRunId: "t-0", taskName: "t" }] });
    const startWith = (attempt: number) =>
      makeEvent(EventTypes.TaskStarted, {
        runId,
        taskRunId: "t-0",
        data: {
          attempt,
          workerId: "w1",
          workerName: "w",
          assignedAt: new Date().toISOString(),
          policy: { retries: 1 },
        },
      });
    const failOnce = (attempt: number) =>
      makeEvent(EventTypes.TaskFailed, {
        runId,
        taskRunId: "t-0",
        data: { attempt, workerId: "w1", error: { name: "Error", message: "x" } },
      });
    step(startWith(0));
    step(failOnce(0));
    step(makeEvent(EventTypes.TaskQueued, { runId, taskRunId: "t-0", data: { attempt: 1 } }));
    step(startWith(1));
    expect(step(failOnce(1)).status).toBe("FAILED");
    expect(step(replayed()).tasks[0]).toMatchObject({ status: "QUEUED", attempt: 2 });
    step(startWith(2));
    expect(step(failOnce(2)).tasks[0]).toMatchObject({ status: "QUEUED", retry: { attempt: 3 } });
  });
});
