import type { Taskjet } from "@taskjet/sdk";
import { describe, expect, it } from "vitest";
import { connectClient, eventually, startEngine, uniqueNamespace, useNatsServer } from "../harness/fixtures.js";
import { kill, startEngineProcess } from "../harness/processes.js";

const nats = useNatsServer();
const engineProcess = (namespace: string) => startEngineProcess(nats.url, namespace);

/**
 * Every run's whole history: one terminal event per attempt at most, and as many executions as recorded starts. A
 * start is recorded alone (`TaskStarted`) or, for a short attempt, carried by its result (`data.started`).
 */
async function checkHistories(tj: Taskjet, runIds: string[], executions: Map<string, number>): Promise<void> {
  for (const runId of runIds) {
    const starts: number[] = [];
    const results = new Map<number, number>();
    let last = "";
    const seen: string[] = [];
    for await (const e of tj.runs.history(runId)) {
      if (!e.event) continue;
      last = e.event.type;
      seen.push(`${e.seq}:${e.event.type}${"started" in e.event.data ? "+started" : ""}`);
      const data = e.event.data as { attempt?: number; started?: unknown };
      if (e.event.type === "TaskStarted" || data.started) starts.push(data.attempt ?? -1);
      if (e.event.type === "TaskCompleted" || e.event.type === "TaskFailed") {
        results.set(data.attempt ?? -1, (results.get(data.attempt ?? -1) ?? 0) + 1);
      }
    }
    const why = `${runId} ran ${executions.get(runId) ?? 0} times: ${seen.join(" ")}`;
    expect(last, why).toBe("TaskCompleted");
    for (const n of results.values()) expect(n, why).toBe(1);
    expect(executions.get(runId) ?? 0, why).toBe(starts.length);
  }
}

/**
 * Starts a worker whose task counts its executions per run (sleeping `ms`), then triggers `n` runs of it: the refs and
 * the promise of all their outputs.
 */
async function countedRuns(tj: Taskjet, n: number, slots: number, ms: number) {
  const executions = new Map<string, number>();
  const t = tj.task({
    name: "work",
    fn: async (input: { i: number }, ctx) => {
      executions.set(ctx.workflowRunId(), (executions.get(ctx.workflowRunId()) ?? 0) + 1);
      await new Promise((r) => setTimeout(r, ms));
      return { i: input.i };
    },
  });
  const worker = await tj.worker("w", { workflows: [t], slots });
  await worker.start();
  const refs = await Promise.all(Array.from({ length: n }, (_, i) => t.runNoWait({ i })));
  return { executions, refs, results: Promise.all(refs.map((r) => r.result())) };
}

describe("engine crash", () => {
  it("recovery - an engine killed with SIGKILL with 5,000 runs in flight is replaced; every run completes, recorded once, run as often as recorded", async () => {
    const namespace = uniqueNamespace();
    let engine = await engineProcess(namespace);
    const tj = await connectClient(nats.url, { namespace });
    const { executions, refs, results } = await countedRuns(tj, 5000, 50, 1);
    await eventually(() => (executions.size >= 1000 ? true : undefined), 60_000, "some progress");
    await kill(engine.child, "SIGKILL");
    const doneAtKill = executions.size;
    const restartedAt = Date.now();
    engine = await engineProcess(namespace);
    const progressAt = await eventually(() => (executions.size > doneAtKill + 50 ? Date.now() : undefined), 60_000);
    process.stderr.write(
      `engine restart: process up in ${engine.startedIn} ms, work flowing again ${progressAt - restartedAt} ms after the kill (${doneAtKill} of 5000 run before)\n`,
    );
    const outputs = await results;
    expect(outputs.map((o) => o.i)).toEqual(Array.from({ length: 5000 }, (_, i) => i));
    expect(doneAtKill).toBeLessThan(5000);
    await checkHistories(
      tj,
      refs.map((r) => r.runId),
      executions,
    );
    await tj.close();
    await kill(engine.child, "SIGTERM");
  });

  it("waiting - a run that ends while no engine runs: result() reads it from the log, run() hears it from the next engine", async () => {
    const namespace = uniqueNamespace();
    let engine = await engineProcess(namespace);
    const tj = await connectClient(nats.url, { namespace });
    const runIds = new Map<number, string>();
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const t = tj.task({
      name: "gated",
      fn: async (input: { i: number }, ctx) => {
        runIds.set(input.i, ctx.workflowRunId());
        await gate;
        return { i: input.i };
      },
    });
    await (await tj.worker("w", { workflows: [t], slots: 2 })).start();
    let settled = false;
    const waiting = t.run({ i: 1 }).finally(() => {
      settled = true;
    });
    const other = await t.runNoWait({ i: 2 });
    await eventually(() => (runIds.size === 2 ? true : undefined), 15_000, "both running");
    await kill(engine.child, "SIGKILL");
    release();
    // The log has the end: a reader needs no engine.
    expect(await other.result({ timeoutMs: 15_000 })).toEqual({ i: 2 });
    const ended = await eventually(async () => {
      const state = await tj.runs.get(runIds.get(1) as string);
      return state.status === "COMPLETED" ? state : undefined;
    });
    expect(ended.output).toEqual({ i: 1 });
    // No engine folded that end, so none announced it to run(); the next one does, from the log.
    expect(settled).toBe(false);
    engine = await engineProcess(namespace);
    expect(await waiting).toEqual({ i: 1 });
    await tj.close();
    await kill(engine.child, "SIGTERM");
  });

  it("recovery - a nats-server restart (single node, file store) with runs in flight loses nothing", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const { executions, refs, results } = await countedRuns(tj, 1000, 20, 2);
    await eventually(() => (executions.size >= 200 ? true : undefined), 60_000, "some progress");
    await nats.server.kill("SIGKILL");
    await nats.server.restart();
    const outputs = await results;
    expect(outputs.map((o) => o.i)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    await checkHistories(
      tj,
      refs.map((r) => r.runId),
      executions,
    );
    await tj.close();
    await engine.stop();
  });
});
