import { connect } from "@nats-io/transport-node";
import { AssignmentSchema, assignmentOf, type ControlMessage, subjects, type TaskRunState } from "@taskjet/schemas";
import { describe, expect, it } from "vitest";
import {
  connectClient,
  eventually,
  historyTypes,
  startEngine,
  uniqueNamespace,
  useNatsServer,
} from "../harness/fixtures.js";

const nats = useNatsServer();

describe("worker", () => {
  it("context - exposes run, task-run, task name, attempt, worker and metadata; logs carry the ids", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const lines: Record<string, unknown>[] = [];
    const capture = {
      debug: (o: object, m?: string) => lines.push({ ...o, msg: m }),
      info: (o: object, m?: string) => lines.push({ ...o, msg: m }),
      warn: (o: object, m?: string) => lines.push({ ...o, msg: m }),
      error: (o: object, m?: string) => lines.push({ ...o, msg: m }),
      child(bindings: Record<string, unknown>) {
        const wrap = (level: "debug" | "info" | "warn" | "error") => (o: object, m?: string) =>
          this[level]({ ...bindings, ...o }, m);
        return {
          debug: wrap("debug"),
          info: wrap("info"),
          warn: wrap("warn"),
          error: wrap("error"),
          child: this.child,
        };
      },
    };
    const tj = await connectClient(nats.url, { namespace, logger: capture });
    const t = tj.task({
      name: "ctx",
      fn: async (_input, ctx) => {
        ctx.logger.info("hello from the task", { n: 1 });
        return {
          workflowRunId: ctx.workflowRunId(),
          taskRunId: ctx.taskRunId(),
          taskName: ctx.taskName(),
          retryCount: ctx.retryCount(),
          workerId: ctx.worker.id(),
          workerName: ctx.worker.name(),
          cancelled: ctx.cancelled,
          aborted: ctx.abortController.signal.aborted,
          metadata: ctx.additionalMetadata(),
        };
      },
    });
    const worker = await tj.worker("ctx-worker", { workflows: [t] });
    await worker.start();
    const ref = await t.runNoWait({}, { additionalMetadata: { user: "u1" } });
    const out = await ref.result();
    expect(out).toEqual({
      workflowRunId: ref.runId,
      taskRunId: `${ref.runId}-0`,
      taskName: "ctx",
      retryCount: 0,
      workerId: worker.id,
      workerName: "ctx-worker",
      cancelled: false,
      aborted: false,
      metadata: { user: "u1" },
    });
    const line = lines.find((l) => l.msg === "hello from the task");
    expect(line).toMatchObject({
      runId: ref.runId,
      taskRunId: `${ref.runId}-0`,
      attempt: 0,
      workerId: worker.id,
      n: 1,
    });
    await tj.close();
    await engine.stop();
  });

  it("stop - lets running tasks finish, and what it had not started runs on another worker", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const a = await connectClient(nats.url, { namespace });
    const b = await connectClient(nats.url, { namespace });
    const ranOn: Record<string, string> = {};
    const decl = (tj: typeof a, name: string) =>
      tj.task({
        name: "slow",
        fn: async (input: { i: number }) => {
          ranOn[input.i] = name;
          await new Promise((r) => setTimeout(r, 300));
          return { i: input.i, by: name };
        },
      });
    const wa = await a.worker("a", { workflows: [decl(a, "a")], slots: 2 });
    await wa.start();
    const refs = await Promise.all(Array.from({ length: 6 }, (_, i) => a.runNoWait("slow", { i })));
    await eventually(() => (wa.runningCount === 2 ? true : undefined));
    const stopping = wa.stop();
    const wb = await b.worker("b", { workflows: [decl(b, "b")], slots: 4 });
    await wb.start();
    await stopping;
    const outs = await Promise.all(refs.map((r) => r.result()));
    expect(outs.map((o) => o.i)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(outs.filter((o) => o.by === "a")).toHaveLength(2);
    expect(outs.filter((o) => o.by === "b")).toHaveLength(4);
    await a.close();
    await b.close();
    await engine.stop();
  });

  it("stop - a worker draining longer than its registration's TTL keeps it alive: its running task is not given to another, its result counts", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace], workerTtlMs: 1000 });
    const tj = await connectClient(nats.url, { namespace });
    let calls = 0;
    const long = tj.task({
      name: "long",
      fn: async () => {
        calls++;
        await new Promise((r) => setTimeout(r, 3000));
        return { done: true };
      },
    });
    const worker = await tj.worker("w", { workflows: [long] });
    await worker.start();
    const ref = await long.runNoWait({});
    await eventually(() => (worker.runningCount === 1 ? true : undefined));
    await worker.stop();
    expect(await ref.result({ timeoutMs: 5000 })).toEqual({ done: true });
    expect(calls).toBe(1);
    expect(await historyTypes(tj, ref.runId, { expand: true })).toEqual(["RunCreated", "TaskStarted", "TaskCompleted"]);
    expect((await tj.workers.list()).map((w) => w.workerId)).not.toContain(worker.id);
    await tj.close();
    await engine.stop();
  });

  it("stop - a task still running after the grace period is aborted through its signal, and its attempt goes to another worker instead of failing", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    let sawAbort = false;
    const stuck = tj.task({
      name: "stuck",
      fn: async (_input, ctx) => {
        await new Promise<void>((resolve) => ctx.abortController.signal.addEventListener("abort", () => resolve()));
        sawAbort = ctx.cancelled;
        throw new Error("aborted by shutdown");
      },
    });
    const worker = await tj.worker("w", { workflows: [stuck], shutdownGraceMs: 200 });
    await worker.start();
    const ref = await stuck.runNoWait({});
    await eventually(() => (worker.runningCount === 1 ? true : undefined));
    const started = Date.now();
    await worker.stop();
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(sawAbort).toBe(true);
    // Not a failure of the task: like a crashed worker's, the attempt is reassigned (the same attempt, no retry used).
    const other = await connectClient(nats.url, { namespace });
    const done = other.task({ name: "stuck", fn: async () => ({ finished: true }) });
    await (await other.worker("w2", { workflows: [done] })).start();
    expect(await ref.result({ timeoutMs: 10_000 })).toEqual({ finished: true });
    const types = await historyTypes(tj, ref.runId, { attempts: true, expand: true });
    expect(types).not.toContain("TaskFailed0");
    expect(types).toContain("TaskReassigned0");
    expect(types.at(-1)).toBe("TaskCompleted0");
    await other.close();
    await tj.close();
    await engine.stop();
  });
});

describe("slots", () => {
  it("releaseSlot - a task that gives its slot back keeps running while the worker starts another", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const order: string[] = [];
    const long = tj.task({
      name: "long",
      fn: async (_input, ctx) => {
        order.push("long started");
        await ctx.releaseSlot();
        await new Promise((r) => setTimeout(r, 600));
        order.push("long finished");
        return { long: true };
      },
    });
    const short = tj.task({
      name: "short",
      fn: async () => {
        order.push("short ran");
        return { short: true };
      },
    });
    const worker = await tj.worker("w", { workflows: [long, short], slots: 1 });
    await worker.start();
    const longRef = await long.runNoWait({});
    await eventually(() => (order.includes("long started") ? true : undefined));
    expect(await short.run({})).toEqual({ short: true });
    expect(order).toEqual(["long started", "short ran"]);
    expect(await longRef.result()).toEqual({ long: true });
    expect(await historyTypes(tj, longRef.runId)).toEqual([
      "RunCreated",
      "TaskStarted",
      "TaskSlotReleased",
      "TaskCompleted",
    ]);
    await tj.close();
    await engine.stop();
  });

  it("assignments - those one turn places on a worker travel together in one message, and each attempt runs once", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const ran: number[] = [];
    const t = tj.task({
      name: "numbered",
      fn: async (input: { n: number }) => {
        ran.push(input.n);
        return {};
      },
    });
    const worker = await tj.worker("w", { workflows: [t], slots: 100 });
    await worker.start();
    const nc = await connect({ servers: nats.url });
    const messages: unknown[] = [];
    nc.subscribe(subjects.assign(namespace, worker.id), {
      callback: (_err, m) => {
        messages.push(m.json());
      },
    });
    await nc.flush();
    const all = Array.from({ length: 300 }, (_, n) => n);
    const refs = await t.runManyNoWait(all.map((n) => ({ input: { n } })));
    await Promise.all(refs.map((r) => r.result()));
    expect(ran.sort((a, b) => a - b)).toEqual(all);
    // Every message an array (the worker's registration says it takes them); many assignments share one.
    const batches = messages.map((m) => AssignmentSchema.array().parse(m));
    expect(
      batches
        .flat()
        .map((a) => a.input.n as number)
        .sort((a, b) => a - b),
    ).toEqual(all);
    expect(Math.max(...batches.map((b) => b.length))).toBeGreaterThan(10);
    await nc.close();
    await tj.close();
    await engine.stop();
  });

  it("cancel - an attempt whose cancellation arrives right behind its assignment never runs its function", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const calls: boolean[] = [];
    const t = tj.task({
      name: "cancelled-at-once",
      fn: async (_input, ctx) => {
        calls.push(ctx.abortController.signal.aborted);
        return {};
      },
    });
    // Cancelled before any worker exists: the engine never places it, so the test plays the engine's part below.
    const ref = await t.runNoWait({});
    expect(await ref.cancel()).toBe(true);
    let createdSeq = 0;
    for await (const e of tj.runs.history(ref.runId)) createdSeq ||= e.seq;
    const created = await tj.runs.stateAt(ref.runId, { seq: createdSeq });
    const worker = await tj.worker("w", { workflows: [t] });
    await worker.start();
    const nc = await connect({ servers: nats.url });
    // As a concurrency strategy's cancellation can follow a placement: the engine sends the assignment, folds the
    // cancellation and tells the worker, and the worker reads both in one turn.
    const task = created.tasks[0] as TaskRunState;
    nc.publish(
      subjects.assign(namespace, worker.id),
      JSON.stringify(assignmentOf(created, task, { expectedSeq: createdSeq, assignedAt: new Date().toISOString() })),
    );
    const cancel: ControlMessage = {
      v: 1,
      type: "cancel",
      runId: ref.runId,
      taskRunId: task.taskRunId,
      attempt: 0,
      reason: "test",
    };
    nc.publish(subjects.control(namespace, worker.id), JSON.stringify(cancel));
    await nc.flush();
    // A turn for it to run, were it to (it then records a ReportIgnored).
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(calls).toEqual([]);
    expect(await historyTypes(tj, ref.runId)).toEqual(["RunCreated", "RunCancelled"]);
    await nc.close();
    await tj.close();
    await engine.stop();
  });

  describe("short tasks queued on a busy worker", () => {
    /**
     * Two clients declaring the same task `quick`, which sleeps `input.ms` and says where and when it started. The
     * engine learns the task is short from its first attempts (`RunTimes`).
     */
    async function setup() {
      const namespace = uniqueNamespace();
      const engine = await startEngine(nats.url, { namespaces: [namespace] });
      const tj = await connectClient(nats.url, { namespace });
      const other = await connectClient(nats.url, { namespace });
      const started: Record<string, { by: string; at: number }> = {};
      const declare = (client: typeof tj, by: string) =>
        client.task({
          name: "quick",
          fn: async (input: { id: string; ms: number }) => {
            started[input.id] = { by, at: Date.now() };
            await new Promise((r) => setTimeout(r, input.ms));
            return { id: input.id, by };
          },
        });
      const quick = declare(tj, "w1");
      const w1 = await tj.worker("w1", { workflows: [quick], slots: 1 });
      await w1.start();
      for (let i = 0; i < 4; i++) await quick.run({ id: `warm${i}`, ms: 1 });
      const startW2 = async () => {
        const w2 = await other.worker("w2", { workflows: [declare(other, "w2")], slots: 1 });
        await w2.start();
        return w2;
      };
      const close = async () => {
        await tj.close();
        await other.close();
        await engine.stop();
      };
      return { tj, quick, w1, startW2, started, close };
    }

    it("slots - an attempt waiting on a worker whose slot a long attempt holds is given back and runs elsewhere", async () => {
      const { tj, quick, startW2, started, close } = await setup();
      const long = await quick.runNoWait({ id: "long", ms: 3_000 });
      await eventually(() => started.long);
      const triggered = Date.now();
      const waiting = await quick.runNoWait({ id: "waiting", ms: 1 });
      // Placed on w1 beside the long attempt (the task is short so far): a second worker joining does not get it...
      await new Promise((r) => setTimeout(r, 100));
      await startW2();
      // ...until w1 gives it back, a second after it arrived, long before the long attempt ends.
      expect(await waiting.result()).toEqual({ id: "waiting", by: "w2" });
      expect((started.waiting?.at ?? 0) - triggered).toBeGreaterThanOrEqual(900);
      expect(await long.status()).toBe("RUNNING");
      // Given back unstarted: nothing of w1 in its history.
      expect(await historyTypes(tj, waiting.runId, { expand: true })).toEqual([
        "RunCreated",
        "TaskStarted",
        "TaskCompleted",
      ]);
      expect(await long.result()).toEqual({ id: "long", by: "w1" });
      await close();
    });

    it("stop - attempts waiting on a stopping worker are given back at once, not after its running ones end", async () => {
      const { quick, w1, startW2, started, close } = await setup();
      const long = await quick.runNoWait({ id: "long", ms: 2_000 });
      await eventually(() => started.long);
      const waiting = await quick.runNoWait({ id: "waiting", ms: 1 });
      await startW2();
      await new Promise((r) => setTimeout(r, 100));
      // w2's slot was free: had the attempt been queued in the engine, it would have run there by now.
      expect(started.waiting).toBeUndefined();
      const stopAt = Date.now();
      const stopping = w1.stop();
      expect(await waiting.result()).toEqual({ id: "waiting", by: "w2" });
      expect((started.waiting?.at ?? 0) - stopAt).toBeLessThan(800);
      await stopping;
      expect(await long.result()).toEqual({ id: "long", by: "w1" });
      await close();
    });
  });
});
