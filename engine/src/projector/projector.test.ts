import type { JetStreamClient, JetStreamManager, JsMsg } from "@nats-io/jetstream";
import { EventTypes, encodeEvent, makeEvent, type RunState, subjects, type TaskjetEventInput } from "@taskjet/schemas";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { Projector } from "./projector.js";
import type { RunStore } from "./run-store.js";

const ns = "ns1";
const encoder = new TextEncoder();

/** A projector over no NATS at all: messages are handed to it as its consumer would, the store keeps nothing. */
function projectorWithLog(historyWarnEvents: number, stored: RunState[] = []) {
  let seq = Math.max(0, ...stored.map((s) => s.lastSeq));
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: "warn" }, { write: (line: string) => lines.push(JSON.parse(line)) });
  const store = {
    get: async (runId: string) => stored.find((s) => s.runId === runId),
    putMany: async () => {},
    saveCheckpoint: async () => {},
  } as unknown as RunStore;
  const projector = new Projector({
    js: {} as JetStreamClient,
    jsm: {} as JetStreamManager,
    ns,
    store,
    log,
    flushMs: 60_000,
    activeDelayMs: 60_000,
    onChange: () => {},
    historyWarnEvents,
  });
  const feed = async (runId: string, events: TaskjetEventInput[]) => {
    const internals = projector as unknown as { receive(m: JsMsg | undefined): void };
    for (const e of events) {
      seq++;
      const m = {
        subject: subjects.history(ns, runId),
        data: encoder.encode(encodeEvent(e)),
        seq,
        info: { pending: 1 },
      };
      internals.receive(m as unknown as JsMsg);
    }
    const target = seq;
    // Folding is asynchronous (a run missing from memory is read from the store first): wait until it is done.
    while ((projector as unknown as { position: number }).position < target) await new Promise((r) => setTimeout(r));
  };
  const warnings = () => lines.filter((l) => String(l.msg).startsWith("run history is long"));
  return { projector, feed, warnings };
}

function created(runId: string): TaskjetEventInput {
  return makeEvent(EventTypes.RunCreated, {
    runId,
    data: {
      workflowName: "long",
      input: {},
      additionalMetadata: {},
      priority: 1,
      tasks: [{ taskRunId: `${runId}-0`, taskName: "long" }],
      trigger: { kind: "run" },
    },
  });
}

/** A started attempt that keeps moving its deadline: one real event per call, as `ctx.refreshTimeout` writes. */
function runningFor(runId: string, events: number): TaskjetEventInput[] {
  const taskRunId = `${runId}-0`;
  const facts = { attempt: 0, workerId: "w1" };
  const started = makeEvent(EventTypes.TaskStarted, {
    runId,
    taskRunId,
    data: { ...facts, workerName: "w", assignedAt: new Date().toISOString() },
  });
  const refreshes = Array.from({ length: events - 2 }, (_, i) =>
    makeEvent(EventTypes.TaskTimeoutRefreshed, {
      runId,
      taskRunId,
      data: { ...facts, timeoutAt: new Date(Date.now() + 60_000 + i).toISOString() },
    }),
  );
  return [created(runId), started, ...refreshes];
}

describe("projector", () => {
  it("history limit - a run is logged once, with its id, when its history reaches the limit, not on later events", async () => {
    const { projector, feed, warnings } = projectorWithLog(5);
    await feed("R1", runningFor("R1", 4));
    expect(warnings()).toEqual([]);
    await feed("R1", runningFor("R1", 3).slice(2)); // the 5th event
    expect(warnings()).toHaveLength(1);
    expect(warnings()[0]).toMatchObject({ level: 40, runId: "R1", events: 5, limit: 5 });
    await feed("R1", runningFor("R1", 12).slice(2)); // 10 more
    expect(projector.states.get("R1")?.eventCount).toBe(15);
    expect(warnings()).toHaveLength(1);
    // Another run gets its own line.
    await feed("R2", runningFor("R2", 7));
    expect(warnings().map((w) => w.runId)).toEqual(["R1", "R2"]);
    await projector.stop();
  });

  it("history limit - a run already past the limit when the engine restarts is not logged again", async () => {
    const before = projectorWithLog(5);
    await before.feed("R3", runningFor("R3", 6));
    const stored = before.projector.states.get("R3") as RunState;
    expect(before.warnings()).toHaveLength(1);
    // Restarted: the run's next events are folded onto its stored state, which already counts past the limit.
    const after = projectorWithLog(5, [stored]);
    await after.feed("R3", runningFor("R3", 2 + 7).slice(2));
    expect(after.projector.states.get("R3")?.eventCount).toBe(6 + 7);
    expect(after.warnings()).toEqual([]);
  });
});
