import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { connect } from "@nats-io/transport-node";
import { AssignmentSchema, assignmentOf, type ControlMessage, subjects, type TaskRunState } from "@taskjet/schemas";
import { ClosedError, Taskjet, ValidationError } from "@taskjet/sdk";
import { pino } from "pino";
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

  it("stop - a second stop() and tj.close() wait for a stop under way; a stop during start() waits for it, then drains; start() after close() is ClosedError", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const other = await connectClient(nats.url, { namespace });
    try {
      const slow = tj.task({
        name: "slow",
        fn: async () => {
          await new Promise((r) => setTimeout(r, 800));
          return { ok: true };
        },
      });
      const w = await tj.worker("w", { workflows: [slow], handleSignals: false });
      await w.start();
      const ref = await other.runNoWait("slow", {});
      await eventually(() => (w.runningCount === 1 ? true : undefined));
      const first = w.stop();
      const t0 = Date.now();
      await w.stop();
      expect(Date.now() - t0).toBeGreaterThan(400); // it waited for the drain
      await tj.close();
      await first;
      // The result was recorded before the connection closed.
      expect(await ref.result({ timeoutMs: 5000 })).toEqual({ ok: true });
      expect(await historyTypes(other, ref.runId, { expand: true })).toEqual([
        "RunCreated",
        "TaskStarted",
        "TaskCompleted",
      ]);
      // Stopped while starting: it does not go on to take work.
      const quick = other.task({ name: "quick", fn: async () => ({}) });
      const w2 = await other.worker("w2", { workflows: [quick], handleSignals: false });
      const started = w2.start();
      await w2.stop();
      await started;
      expect((await other.workers.list()).map((x) => x.name)).not.toContain("w2");
      // A client closed before its worker started.
      const closing = await connectClient(nats.url, { namespace });
      const w3 = await closing.worker("w3", { workflows: [closing.task({ name: "q3", fn: async () => ({}) })] });
      await closing.close();
      const err = await w3.start().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ClosedError);
      expect((err as ClosedError).code).toBe("CLOSED");
    } finally {
      await other.close();
      await engine.stop();
    }
  });

  it("context - a log line whose fields cannot be read does not fail the task; parentOutput of an Object.prototype name is not a parent", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    // The process's logger as users have it (pino), not the tests' capture: it serializes the fields itself.
    const tj = await Taskjet.connect({
      servers: nats.url,
      namespace,
      logger: pino({ level: "info" }, pino.destination("/dev/null")),
    });
    try {
      const wf = tj.workflow({ name: "logs" });
      const a = wf.task({ name: "a", fn: async () => ({ v: 1 }) });
      wf.task({
        name: "b",
        parents: [a],
        fn: async (_input, ctx) => {
          ctx.logger.warn("about to charge", {
            get card(): string {
              throw new Error("card getter exploded");
            },
          });
          const notParents = ["toString", "constructor", "__proto__"].map((ref) => {
            try {
              return typeof ctx.parentOutput(ref);
            } catch (err) {
              return err instanceof ValidationError ? "refused" : String(err);
            }
          });
          return { notParents };
        },
      });
      const w = await tj.worker("w", { workflows: [wf], handleSignals: false });
      await w.start();
      const ref = await wf.runNoWait({});
      expect(await ref.result()).toMatchObject({ b: { notParents: ["refused", "refused", "refused"] } });
      expect((await tj.logs.list(ref.runId)).map((l) => l.message)).toEqual(["about to charge"]);
    } finally {
      await tj.close();
      await engine.stop();
    }
  });

  it("timeout - a task that ignores its signal after its execution timeout is abandoned after cancelGraceMs: its slot runs the retry and other runs", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    try {
      const hang = tj.task({
        name: "hang",
        retries: 1,
        executionTimeout: "1s",
        fn: async (input: { hang: boolean }, ctx) => {
          if (input.hang && ctx.retryCount() === 0) await new Promise(() => {});
          return { ok: true };
        },
      });
      const w = await tj.worker("w", { workflows: [hang], slots: 1, cancelGraceMs: 300, handleSignals: false });
      await w.start();
      const hung = await hang.runNoWait({ hang: true });
      await eventually(() => (w.runningCount === 1 ? true : undefined));
      const next = await hang.runNoWait({ hang: false });
      expect(await hung.result({ timeoutMs: 10_000 })).toEqual({ ok: true }); // its retry ran
      expect(await next.result({ timeoutMs: 10_000 })).toEqual({ ok: true });
      expect(await historyTypes(tj, hung.runId)).toEqual([
        "RunCreated",
        "TaskStarted",
        "TaskTimedOut",
        "TaskRetryScheduled",
        "TaskQueued",
        "TaskCompleted",
      ]);
    } finally {
      await tj.close();
      await engine.stop();
    }
  });

  it("signals - SIGTERM to a process with two workers drains both: it exits once the busy one's task ended and was recorded", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const script = fileURLToPath(new URL("../harness/two-workers-process.ts", import.meta.url));
    const child = spawn(process.execPath, ["--import", "tsx", script, nats.url, namespace, "1500"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
    });
    try {
      await eventually(() => (out.includes("ready") ? true : undefined), 20_000);
      const ref = await tj.runNoWait("long", {});
      await eventually(async () => ((await tj.runs.get(ref.runId)).status === "RUNNING" ? true : undefined), 10_000);
      child.kill("SIGTERM");
      const code = await new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
      expect(code).toBe(0);
      expect(out).toContain("done");
      expect((await tj.runs.get(ref.runId)).status).toBe("COMPLETED");
    } finally {
      child.kill("SIGKILL");
      await tj.close();
      await engine.stop();
    }
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
