import type { RunState } from "@taskjet/schemas";
import { describe, expect, it } from "vitest";
import type { HistoryItem } from "./api.ts";
import { buildTimeline } from "./timeline.ts";

const T0 = Date.parse("2026-11-28T10:00:00.000Z");
const at = (s: number) => new Date(T0 + s * 1000).toISOString();
let seq = 0;
function ev(s: number, type: string, data: Record<string, unknown>, taskRunId?: string): HistoryItem {
  seq++;
  return { seq, time: at(s), event: { type, at: at(s), data, ...(taskRunId ? { taskRunId } : {}) } };
}
const created = (tasks: Record<string, unknown>[]) => ev(0, "RunCreated", { workflowName: "w", input: {}, tasks });

describe("buildTimeline", () => {
  it("timeline - a task's queue, wait reason, attempts, failure and retry backoff, as bars", () => {
    const t = "r-0";
    const history = [
      created([{ taskRunId: t, taskName: "charge" }]),
      ev(1, "TaskWaiting", { attempt: 0, reason: "CONCURRENCY", detail: "group user-1 full (2/2)" }, t),
      ev(3, "TaskStarted", { attempt: 0, workerId: "w1", workerName: "w", assignedAt: at(3) }, t),
      ev(4, "TaskFailed", { attempt: 0, workerId: "w1", error: { name: "Error", message: "declined" } }, t),
      ev(4, "TaskRetryScheduled", { attempt: 1, at: at(6), delayMs: 2000 }, t),
      ev(6, "TaskQueued", { attempt: 1 }, t),
      ev(7, "TaskStarted", { attempt: 1, workerId: "w1", workerName: "w", assignedAt: at(7) }, t),
      ev(9, "TaskCompleted", { attempt: 1, workerId: "w1", output: {} }, t),
    ];
    const tl = buildTimeline(history, undefined, T0 + 60_000);
    expect(tl.start).toBe(T0);
    expect(tl.end).toBe(T0 + 9000);
    const segs = tl.rows[0]?.segments.map((s) => [s.kind, (s.start - T0) / 1000, (s.end - T0) / 1000, s.outcome]);
    expect(segs).toEqual([
      ["queued", 0, 1, undefined],
      ["waiting", 1, 3, undefined],
      ["running", 3, 4, "failed"],
      ["backoff", 4, 6, undefined],
      ["queued", 6, 7, undefined],
      ["running", 7, 9, "completed"],
    ]);
    expect(tl.rows[0]?.segments[1]?.label).toBe("concurrency-limited: group user-1 full (2/2)");
    expect(tl.rows[0]?.segments[2]?.label).toContain("declined");
  });

  it("timeline - workflow children wait for their parents, then queue; a final failure ends its descendants", () => {
    const history = [
      created([
        { taskRunId: "a", taskName: "a", ref: "a" },
        { taskRunId: "b", taskName: "b", ref: "b", parents: ["a"] },
        { taskRunId: "c", taskName: "c", ref: "c", parents: ["b"] },
        { taskRunId: "h", taskName: "h", ref: "h", role: "onFailure" },
      ]),
      ev(1, "TaskStarted", { attempt: 0, workerId: "w1", workerName: "w", assignedAt: at(1) }, "a"),
      ev(2, "TaskCompleted", { attempt: 0, workerId: "w1", output: {} }, "a"),
      ev(3, "TaskStarted", { attempt: 0, workerId: "w1", workerName: "w", assignedAt: at(3) }, "b"),
      ev(4, "TaskFailed", { attempt: 0, workerId: "w1", nonRetryable: true, error: { name: "E", message: "x" } }, "b"),
      ev(5, "TaskStarted", { attempt: 0, workerId: "w1", workerName: "w", assignedAt: at(5) }, "h"),
    ];
    const tl = buildTimeline(history, undefined, T0 + 6000);
    const kinds = Object.fromEntries(
      tl.rows.map((r) => [
        r.taskRunId,
        r.segments.map((s) => `${s.kind}@${(s.start - T0) / 1000}-${(s.end - T0) / 1000}`),
      ]),
    );
    expect(kinds).toEqual({
      a: ["queued@0-1", "running@1-2"],
      b: ["pending@0-2", "queued@2-3", "running@3-4"],
      c: ["pending@0-4"],
      h: ["pending@0-4", "queued@4-5", "running@5-6"],
    });
    expect(tl.rows.find((r) => r.taskRunId === "c")?.segments[0]?.outcome).toBe("cancelled");
    expect(tl.rows.find((r) => r.taskRunId === "h")?.segments.at(-1)?.open).toBe(true);
    expect(tl.rows.find((r) => r.taskRunId === "h")?.name).toBe("h (onFailure)");
  });

  it("timeline - a rate-limited attempt pauses, and the run's state closes what the history leaves open", () => {
    const t = "r-0";
    const history = [
      created([{ taskRunId: t, taskName: "call" }]),
      ev(1, "TaskStarted", { attempt: 0, workerId: "w1", workerName: "w", assignedAt: at(1) }, t),
      ev(2, "TaskRateLimited", { attempt: 0, workerId: "w1", until: at(5), keys: ["openai"] }, t),
      ev(6, "RunCancelled", { reason: "stop" }),
    ];
    const tl = buildTimeline(history, undefined, T0 + 60_000);
    expect(tl.rows[0]?.segments.map((s) => [s.kind, s.outcome])).toEqual([
      ["queued", undefined],
      ["running", "rate limited"],
      ["rate-limited", "cancelled"],
    ]);
    expect(tl.rows[0]?.segments[2]?.label).toContain("openai");

    const open = buildTimeline(history.slice(0, 2), undefined, T0 + 10_000);
    expect(open.rows[0]?.segments.at(-1)).toMatchObject({ kind: "running", open: true, end: T0 + 10_000 });
    const state = {
      finishedAt: at(3),
      tasks: [{ taskRunId: t, status: "FAILED", finishedAt: at(3) }],
    } as unknown as RunState;
    const closed = buildTimeline(history.slice(0, 2), state, T0 + 10_000);
    expect(closed.rows[0]?.segments.at(-1)).toMatchObject({ kind: "running", open: false, end: T0 + 3000 });
  });

  it("timeline - a short attempt's result that carries its start runs from that start, as after TaskStarted", () => {
    const t = "r-0";
    const started = (s: number) => ({ at: at(s), workerName: "w", assignedAt: at(s) });
    const history = [
      created([{ taskRunId: t, taskName: "charge" }]),
      ev(
        4,
        "TaskFailed",
        { attempt: 0, workerId: "w1", error: { name: "E", message: "declined" }, started: started(3) },
        t,
      ),
      ev(4, "TaskRetryScheduled", { attempt: 1, at: at(6), delayMs: 2000 }, t),
      ev(6, "TaskQueued", { attempt: 1 }, t),
      ev(9, "TaskCompleted", { attempt: 1, workerId: "w1", output: {}, started: started(7) }, t),
    ];
    const tl = buildTimeline(history, undefined, T0 + 60_000);
    const segs = tl.rows[0]?.segments.map((s) => [s.kind, (s.start - T0) / 1000, (s.end - T0) / 1000, s.outcome]);
    expect(segs).toEqual([
      ["queued", 0, 3, undefined],
      ["running", 3, 4, "failed"],
      ["backoff", 4, 6, undefined],
      ["queued", 6, 7, undefined],
      ["running", 7, 9, "completed"],
    ]);
    expect(tl.rows[0]?.segments[1]?.label).toContain("declined");
    expect(tl.rows[0]?.segments[4]?.label).toContain("on w");
  });
});
