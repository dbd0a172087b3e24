import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { appendEvent, rebuildProjection } from "@taskjet/engine";
import {
  AppendConflictError,
  assignmentOf,
  Buckets,
  EventTypes,
  keys,
  makeEvent,
  type RunState,
  statesOfEntry,
  subjects,
  type TaskRunState,
} from "@taskjet/schemas";
import { describe, expect, it } from "vitest";
import { sleep } from "../harness/concurrency-probe.js";
import {
  connectClient,
  eventually,
  historyEvents,
  historyTypes,
  startEngine,
  uniqueNamespace,
  useNatsServer,
} from "../harness/fixtures.js";

const nats = useNatsServer();

async function rawConnection(url: string) {
  const nc = await connect({ servers: url });
  return { nc, js: jetstream(nc), jsm: await jetstreamManager(nc) };
}

/** Every run's state in `TJ_RUNS`, by run id: under its key or in a page (the later entry of a run wins). */
async function projection(url: string, ns: string): Promise<Map<string, RunState>> {
  const { nc } = await rawConnection(url);
  const kv = await new Kvm(nc).open(Buckets.runs);
  const entries: { revision: number; key: string; json: string }[] = [];
  for await (const key of await kv.keys(keys.runsOf(ns))) {
    const entry = await kv.get(key);
    if (entry?.operation === "PUT") entries.push({ revision: entry.revision, key, json: entry.string() });
  }
  const out = new Map<string, RunState>();
  for (const e of entries.sort((a, b) => a.revision - b.revision)) {
    for (const state of statesOfEntry(e.key, e.json)) out.set(state.runId, state);
  }
  await nc.close();
  return out;
}

describe("invariants", () => {
  it("invariant 1 - dropping the runs KV and rebuilding from the log yields the same run states", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const ok = tj.task({ name: "ok", fn: async (input: { i: number }) => ({ doubled: input.i * 2 }) });
    const bad = tj.task({
      name: "bad",
      fn: async () => {
        throw new Error("nope");
      },
    });
    const waiting = tj.task({ name: "nobody-runs-this", fn: async () => ({}) });
    const worker = await tj.worker("w", { workflows: [ok, bad], slots: 20 });
    await worker.start();
    const refs = await Promise.all([
      ...Array.from({ length: 30 }, (_, i) => ok.runNoWait({ i })),
      ...Array.from({ length: 5 }, () => bad.runNoWait({})),
      waiting.runNoWait({}),
    ]);
    await Promise.allSettled(refs.slice(0, 35).map((r) => r.result()));
    // A malformed message on a run's subject is part of the log too.
    const { nc, jsm } = await rawConnection(nats.url);
    nc.publish(subjects.history(namespace, "garbage-run"), "{not json");
    await eventually(async () =>
      (await tj.runs.get("garbage-run").catch(() => undefined))?.status === "FAILED" ? true : undefined,
    );
    await worker.stop();
    await tj.close();
    await engine.stop();

    const live = await projection(nats.url, namespace);
    expect(live.size).toBe(37);
    const statuses = [...live.values()].map((s) => s.status).sort();
    expect(statuses.filter((s) => s === "COMPLETED")).toHaveLength(30);
    expect(statuses.filter((s) => s === "FAILED")).toHaveLength(6);
    expect(statuses.filter((s) => s === "QUEUED")).toHaveLength(1);

    // Drop the whole bucket (every namespace's projection), rebuild this namespace from the log.
    await jsm.streams.delete(`KV_${Buckets.runs}`);
    await new Kvm(nc).create(Buckets.runs, { history: 1 });
    expect((await projection(nats.url, namespace)).size).toBe(0);
    const report = await rebuildProjection(nc, namespace);
    expect(report.runs).toBe(37);
    expect(report.rejected).toBe(1);
    expect(await projection(nats.url, namespace)).toEqual(live);

    // The engine starts from the rebuilt projection and carries on.
    const engine2 = await startEngine(nats.url, { namespaces: [namespace] });
    const tj2 = await connectClient(nats.url, { namespace });
    const waiting2 = tj2.task({ name: "nobody-runs-this", fn: async () => ({ late: true }) });
    const worker2 = await tj2.worker("w2", { workflows: [waiting2] });
    await worker2.start();
    expect(await tj2.ref(refs[35]?.runId as string).result()).toEqual({ late: true });
    await tj2.close();
    await engine2.stop();
    await nc.close();
  });

  it("invariant 5 - a bad message on a finished run's subject is rejected beside it: the run stays as it ended, in memory or not", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, {
      namespaces: [namespace],
      projectionActiveDelayMs: 0,
      projectionQueuedDelayMs: 0,
    });
    const tj = await connectClient(nats.url, { namespace });
    const done = tj.task({ name: "done", fn: async () => ({ done: true }) });
    await (await tj.worker("w", { workflows: [done] })).start();
    const ref = await done.runNoWait({});
    expect(await ref.result()).toEqual({ done: true });
    // Projected (and so out of the engine's memory), then garbage on its subject.
    await eventually(async () =>
      (await projection(nats.url, namespace)).get(ref.runId)?.status === "COMPLETED" ? true : undefined,
    );
    const { nc, js } = await rawConnection(nats.url);
    await js.publish(subjects.history(namespace, ref.runId), "not json");
    await eventually(async () => ((await historyTypes(tj, ref.runId)).includes("EventRejected") ? true : undefined));
    await sleep(300);
    const projected = (await projection(nats.url, namespace)).get(ref.runId);
    expect(projected).toMatchObject({ status: "COMPLETED", workflowName: "done", output: { done: true } });
    expect((await tj.runs.list({ statuses: ["FAILED"] })).map((r) => r.runId)).not.toContain(ref.runId);
    await nc.close();
    await tj.close();
    await engine.stop();
  });

  it("invariant 2 - an append with a stale expected sequence is refused as a typed conflict", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const ref = await tj.runNoWait("unclaimed", { a: 1 });
    const { nc, js } = await rawConnection(nats.url);
    const state = await tj.runs.get(ref.runId);
    const started = makeEvent(EventTypes.TaskStarted, {
      runId: ref.runId,
      taskRunId: `${ref.runId}-0`,
      data: { attempt: 0, workerId: "w1", workerName: "w1", assignedAt: new Date().toISOString() },
    });
    const seq = await appendEvent(js, namespace, started, state.lastSeq);
    expect(seq).toBeGreaterThan(state.lastSeq);
    // Another writer that had seen the same tail (another worker handed the same attempt).
    const late = makeEvent(EventTypes.TaskStarted, {
      runId: ref.runId,
      taskRunId: `${ref.runId}-0`,
      data: { attempt: 0, workerId: "w2", workerName: "w2", assignedAt: new Date().toISOString() },
    });
    const err = await appendEvent(js, namespace, late, state.lastSeq).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AppendConflictError);
    expect((err as AppendConflictError).code).toBe("APPEND_CONFLICT");
    expect((err as AppendConflictError).expectedSeq).toBe(state.lastSeq);
    const after = await tj.runs.get(ref.runId);
    expect(after.tasks[0]?.workerId).toBe("w1");
    await nc.close();
    await tj.close();
    await engine.stop();
  });

  it("invariant 2 - a worker whose result append conflicts re-reads the run and still records its result once", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const { nc } = await rawConnection(nats.url);
    const t = tj.task({
      name: "interleaved",
      fn: async (_input, ctx) => {
        // Its start recorded first (TaskStarted): the result's append then expects the tail that TaskStarted left.
        await eventually(async () =>
          (await tj.runs.get(ctx.workflowRunId())).status === "RUNNING" ? true : undefined,
        );
        // Someone else appends to the run while it runs: the engine records a rejection, moving the tail.
        nc.publish(subjects.history(namespace, ctx.workflowRunId()), "garbage");
        await eventually(async () => {
          for await (const e of tj.runs.history(ctx.workflowRunId()))
            if (e.event?.type === "EventRejected") return true;
          return undefined;
        });
        return { done: true };
      },
    });
    const worker = await tj.worker("w", { workflows: [t] });
    await worker.start();
    const ref = await t.runNoWait({});
    expect(await ref.result()).toEqual({ done: true });
    expect(await historyTypes(tj, ref.runId)).toEqual([
      "RunCreated",
      "TaskStarted",
      "rejected",
      "EventRejected",
      "TaskCompleted",
    ]);
    await nc.close();
    await tj.close();
    await engine.stop();
  });

  it("invariant 2 - a short attempt whose result (carrying its start) conflicts re-reads the run and records it once", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const { nc, js } = await rawConnection(nats.url);
    const t = tj.task({
      name: "interleaved-short",
      fn: async (_input, ctx) => {
        // Someone else appends to the run before its start is recorded: the tail the assignment gave is stale.
        await js.publish(subjects.history(namespace, ctx.workflowRunId()), "garbage");
        return { done: true };
      },
    });
    const worker = await tj.worker("w", { workflows: [t] });
    await worker.start();
    const ref = await t.runNoWait({});
    expect(await ref.result()).toEqual({ done: true });
    // The engine's EventRejected lands before or after the result; the result is recorded once, after the foreign
    // message (its first append, expecting the tail before it, was refused), and carries the start.
    const types = await eventually(async () => {
      const h = await historyTypes(tj, ref.runId);
      return h.includes("EventRejected") ? h : undefined;
    });
    expect(types.filter((x) => x !== "EventRejected")).toEqual(["RunCreated", "rejected", "TaskCompleted"]);
    expect(types.filter((x) => x === "EventRejected")).toHaveLength(1);
    const completed = (await historyEvents(tj, ref.runId)).find((e) => e.type === "TaskCompleted");
    expect(completed?.data).toMatchObject({ workerId: worker.id, started: { workerName: "w" } });
    expect(await tj.runs.get(ref.runId)).toMatchObject({ status: "COMPLETED", tasks: [{ workerId: worker.id }] });
    await nc.close();
    await tj.close();
    await engine.stop();
  });

  it("invariant 3 - the same trigger sent twice creates one run, also past the dedup window", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const t = tj.task({ name: "once", fn: async (input: { n: number }) => ({ n: input.n }) });
    const worker = await tj.worker("w", { workflows: [t] });
    await worker.start();
    const a = await t.runNoWait({ n: 1 }, { runId: "order-42" });
    const b = await t.runNoWait({ n: 1 }, { runId: "order-42" });
    expect(b.runId).toBe(a.runId);
    expect(await t.run({ n: 2 }, { runId: "order-42" })).toEqual({ n: 1 });
    // Past the dedup window the msg id no longer protects; the expected sequence 0 still does.
    const { nc, js } = await rawConnection(nats.url);
    const again = makeEvent(EventTypes.RunCreated, {
      runId: "order-42",
      data: {
        workflowName: "once",
        input: { n: 3 },
        tasks: [{ taskRunId: "order-42-0", taskName: "once" }],
        trigger: { kind: "run" },
      },
    });
    const err = await js
      .publish(subjects.history(namespace, "order-42"), JSON.stringify(again), {
        msgID: "a-different-id",
        expect: { lastSubjectSequence: 0 },
      })
      .catch((e: unknown) => e);
    expect(String(err)).toMatch(/wrong last sequence/);
    const created: unknown[] = [];
    for await (const e of tj.runs.history("order-42")) if (e.event?.type === "RunCreated") created.push(e);
    expect(created).toHaveLength(1);
    await nc.close();
    await tj.close();
    await engine.stop();
  });

  it("invariant 4 - an attempt handed again after its result is recorded: its worker ignores the copy, another worker runs it and that result is ReportIgnored", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    let runs = 0;
    const t = tj.task({ name: "twice", fn: async () => ({ n: ++runs }) });
    const worker = await tj.worker("w", { workflows: [t] });
    await worker.start();
    const ref = await t.runNoWait({});
    expect(await ref.result()).toEqual({ n: 1 });
    const other = await tj.worker("w2", { workflows: [t] });
    await other.start();
    // The same assignment again (as a placement on a worker taken for gone is made again elsewhere): a worker runs an
    // attempt before recording its start, so nothing refuses the copy before it runs. The worker that ran it knows it
    // and ignores it; the other runs it, and its result must not pass for a retry of the first one's append.
    let createdSeq = 0;
    for await (const e of tj.runs.history(ref.runId)) createdSeq ||= e.seq;
    const state = await tj.runs.stateAt(ref.runId, { seq: createdSeq });
    const assignment = assignmentOf(state, state.tasks[0] as TaskRunState, {
      expectedSeq: createdSeq,
      assignedAt: new Date().toISOString(),
    });
    const { nc } = await rawConnection(nats.url);
    // In this order on one connection: the first copy is handled before the second one's task can run.
    nc.publish(subjects.assign(namespace, worker.id), JSON.stringify(assignment));
    nc.publish(subjects.assign(namespace, other.id), JSON.stringify(assignment));
    const types = await eventually(async () => {
      const h = await historyTypes(tj, ref.runId);
      return h.includes("ReportIgnored") ? h : undefined;
    });
    expect(runs).toBe(2);
    expect(types).toEqual(["RunCreated", "TaskCompleted", "ReportIgnored"]);
    const ignored = (await historyEvents(tj, ref.runId))[2];
    expect(ignored?.data).toMatchObject({ attempt: 0, workerId: other.id, report: "completed" });
    expect(await tj.runs.get(ref.runId)).toMatchObject({ status: "COMPLETED", output: { n: 1 } });
    await nc.close();
    await tj.close();
    await engine.stop();
  });
});
