import type { RunState, TaskRunState, WorkerRegistration } from "@taskjet/sdk";
import { describe, expect, it } from "vitest";
import { queuesOf } from "./queues.js";

const now = Date.parse("2026-01-01T12:00:00Z");
const ago = (ms: number) => new Date(now - ms).toISOString();

function run(runId: string, tasks: Partial<TaskRunState>[]): RunState {
  return {
    v: 1,
    runId,
    workflowName: tasks[0]?.taskName ?? "t",
    status: "QUEUED",
    input: {},
    additionalMetadata: {},
    priority: 1,
    trigger: { kind: "run" },
    tasks: tasks.map((t, i) => ({ taskRunId: `${runId}-${i}`, taskName: "t", status: "QUEUED", attempt: 0, ...t })),
    createdAt: ago(60_000),
    lastSeq: 1,
    eventCount: 1,
  };
}

const worker = { tasks: ["send"] } as WorkerRegistration;

describe("queues", () => {
  it("summary - depth, oldest age and its wait reason, running and retrying, per task", () => {
    const waiting = { reason: "CONCURRENCY", detail: "group u1 full (2 of 2)", since: ago(5_000) };
    const queues = queuesOf(
      [
        run("r1", [{ taskName: "send", queuedAt: ago(10_000) }]),
        run("r2", [{ taskName: "send", queuedAt: ago(30_000), waiting }]),
        run("r3", [{ taskName: "send", status: "RUNNING" }]),
        run("r4", [{ taskName: "send", retry: { attempt: 1, at: ago(-5_000) } }]),
        // A workflow: each task counts under its own name; its PENDING task is not queued.
        run("r5", [
          { taskName: "fetch", status: "COMPLETED" },
          { taskName: "parse" },
          { taskName: "store", status: "PENDING" },
        ]),
      ],
      [worker],
      now,
    );
    expect(queues).toEqual([
      {
        taskName: "parse",
        queued: 1,
        // No queuedAt recorded: the run's creation stands in.
        oldestQueuedAt: ago(60_000),
        oldestAgeMs: 60_000,
        running: 0,
        retrying: 0,
        waiting: null,
        workers: 0,
      },
      {
        taskName: "send",
        queued: 2,
        oldestQueuedAt: ago(30_000),
        oldestAgeMs: 30_000,
        running: 1,
        retrying: 1,
        waiting,
        workers: 1,
      },
    ]);
  });
});
