import { describe, expect, it } from "vitest";
import { makeEvent } from "./codec.js";
import { EventTypes, type TaskjetEvent, TaskjetEventSchema } from "./events.js";
import { evolve, fold } from "./evolve.js";
import type { RunState } from "./run-state.js";

const runId = "01LONG";
const taskRunId = "01LONG-0";
const ev = (e: unknown): TaskjetEvent => TaskjetEventSchema.parse(e);
const at = (ms: number) => new Date(1_800_000_000_000 + ms).toISOString();

/** A durable task: checkpoints, a sleep, a wake-up, a replay that records more checkpoints, then its completion. */
function durableHistory(before: number, after: number): { event: TaskjetEvent; seq: number }[] {
  const events: TaskjetEvent[] = [
    ev(
      makeEvent(EventTypes.RunCreated, {
        runId,
        data: { workflowName: "long", input: {}, tasks: [{ taskRunId, taskName: "long" }], trigger: { kind: "run" } },
      }),
    ),
  ];
  const started = (attempt: number) =>
    ev(
      makeEvent(EventTypes.TaskStarted, {
        runId,
        taskRunId,
        data: { attempt, workerId: "w1", workerName: "w", assignedAt: at(0) },
      }),
    );
  const checkpoint = (attempt: number, index: number) =>
    ev(
      makeEvent(EventTypes.DurableCheckpoint, {
        runId,
        taskRunId,
        data: { attempt, workerId: "w1", index, kind: "now", value: at(index) },
      }),
    );
  events.push(started(0));
  for (let i = 0; i < before; i++) events.push(checkpoint(0, i));
  events.push(
    ev(
      makeEvent(EventTypes.DurableSleeping, {
        runId,
        taskRunId,
        data: { attempt: 0, workerId: "w1", index: before, until: at(60_000) },
      }),
    ),
  );
  events.push(ev(makeEvent(EventTypes.DurableWoke, { runId, taskRunId, data: { attempt: 1, index: before } })));
  events.push(started(1));
  for (let i = before + 1; i <= before + after; i++) events.push(checkpoint(1, i));
  events.push(checkpoint(1, 3)); // a fact written twice (a lost ack retried): changes nothing
  events.push(
    ev(
      makeEvent(EventTypes.TaskCompleted, {
        runId,
        taskRunId,
        data: { attempt: 1, workerId: "w1", output: { ok: true } },
      }),
    ),
  );
  return events.map((event, i) => ({ event, seq: i + 1 }));
}

describe("evolve over long histories", () => {
  it("long history - a fold that grows its lists in place (owned) ends in the same state as one that copies them", () => {
    const history = durableHistory(50, 30);
    let copying: RunState | undefined;
    for (const { event, seq } of history) copying = evolve(copying, event, seq);
    const owned = fold(history);
    expect(owned).toEqual(copying);
    expect(owned?.status).toBe("COMPLETED");
    expect(owned?.tasks[0]?.checkpoints?.map((c) => c.index)).toEqual(Array.from({ length: 81 }, (_, i) => i));
  });

  it("long history - without owned every state is left as it was; with it, the fold's own list is grown, not copied", () => {
    const [c, s, c0, c1, c2] = durableHistory(5, 0); // created, started, checkpoints 0, 1 and 2
    const history = [c, s, c0, c1].map((e) => e as { event: TaskjetEvent; seq: number });
    const states: RunState[] = [];
    for (const { event, seq } of history) states.push(evolve(states.at(-1), event, seq) as RunState);
    expect(states.map((s) => s.tasks[0]?.checkpoints?.length ?? 0)).toEqual([0, 0, 1, 2]);

    const owned = new WeakSet<object>();
    const grown: RunState[] = [];
    for (const { event, seq } of history) grown.push(evolve(grown.at(-1), event, seq, owned) as RunState);
    expect(grown[3]?.tasks[0]?.checkpoints).toBe(grown[2]?.tasks[0]?.checkpoints);
    // A list the fold did not make (a state from elsewhere) is copied once, then owned.
    const next = evolve(states[3], c2?.event as TaskjetEvent, 5, owned);
    expect(next?.tasks[0]?.checkpoints).toHaveLength(3);
    expect(states[3]?.tasks[0]?.checkpoints).toHaveLength(2);
  });
});
