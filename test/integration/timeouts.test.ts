import type { Taskjet } from "@taskjet/sdk";
import { TaskRunError, ValidationError } from "@taskjet/sdk";
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

const types = (tj: Taskjet, runId: string) => historyTypes(tj, runId, { attempts: true });

describe("timeouts", () => {
  it("timeouts - an attempt past its execution timeout fails with TaskTimedOut, its signal aborts, retries apply, the late result is ignored", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const aborted: boolean[] = [];
    const slowThenFast = tj.task({
      name: "slow-then-fast",
      executionTimeout: "300ms",
      retries: 1,
      fn: async (_input, ctx) => {
        if (ctx.retryCount() === 0) {
          // Ignores its signal for a while, then reports a result that comes too late.
          await new Promise((r) => setTimeout(r, 700));
          aborted.push(ctx.abortController.signal.aborted, ctx.cancelled);
          return { attempt: 0 };
        }
        return { attempt: ctx.retryCount() };
      },
    });
    const worker = await tj.worker("w", { workflows: [slowThenFast] });
    await worker.start();
    const ref = await slowThenFast.runNoWait({});
    expect(await ref.result()).toEqual({ attempt: 1 });
    await new Promise((r) => setTimeout(r, 800)); // let attempt 0 report late
    expect(aborted).toEqual([true, true]);
    const h = await types(tj, ref.runId);
    expect(h.slice(0, 4)).toEqual(["RunCreated", "TaskStarted0", "TaskTimedOut0", "TaskRetryScheduled1"]);
    expect(h).toContain("TaskCompleted1");
    expect(h.filter((t) => t.startsWith("TaskCompleted"))).toEqual(["TaskCompleted1"]);
    expect(h).toContain("ReportIgnored0");
    expect(await tj.runs.get(ref.runId)).toMatchObject({ status: "COMPLETED", output: { attempt: 1 } });
    await tj.close();
    await engine.stop();
  });

  it("timeouts - without retries a timed-out run fails with a TaskTimedOut error", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const stuck = tj.task({
      name: "stuck",
      executionTimeout: 200,
      fn: async (_input, ctx) => {
        await new Promise((resolve) => ctx.abortController.signal.addEventListener("abort", resolve));
        throw new Error("gave up");
      },
    });
    const worker = await tj.worker("w", { workflows: [stuck] });
    await worker.start();
    const err = (await stuck.run({}).catch((e: unknown) => e)) as TaskRunError;
    expect(err).toBeInstanceOf(TaskRunError);
    expect(err.taskError.name).toBe("TaskTimedOut");
    await tj.close();
    await engine.stop();
  });

  it("timeouts - a task that holds the event loop past its execution timeout times out, as one that awaited would", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const busy = tj.task({
      name: "busy",
      executionTimeout: 1000,
      fn: async (input: { ms: number }) => {
        const t0 = Date.now();
        while (Date.now() - t0 < input.ms) {} // no timer can fire meanwhile, not even the worker's
        return { busyMs: input.ms };
      },
    });
    const worker = await tj.worker("w", { workflows: [busy] });
    await worker.start();
    for (const ms of [1300, 100]) {
      const ref = await busy.runNoWait({ ms });
      if (ms < 1000) {
        expect(await ref.result()).toEqual({ busyMs: ms });
        continue;
      }
      const err = (await ref.result().catch((e: unknown) => e)) as TaskRunError;
      expect(err).toBeInstanceOf(TaskRunError);
      expect(err.taskError.name).toBe("TaskTimedOut");
      expect(await types(tj, ref.runId)).toContain("TaskTimedOut0");
    }
    await tj.close();
    await engine.stop();
  });

  it("timeouts - with no engine left, the worker itself aborts an attempt at its execution timeout of seconds", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    let began = 0;
    let abortedAfterMs: number | undefined;
    const stuck = tj.task({
      name: "stuck-alone",
      executionTimeout: "1500ms",
      fn: async (_input, ctx) => {
        began = Date.now();
        await new Promise((resolve) => ctx.abortController.signal.addEventListener("abort", resolve));
        abortedAfterMs = Date.now() - began;
        return {};
      },
    });
    const worker = await tj.worker("w", { workflows: [stuck] });
    await worker.start();
    const ref = await stuck.runNoWait({});
    await eventually(async () => ((await types(tj, ref.runId)).includes("TaskStarted0") ? true : undefined));
    await engine.stop(); // only the worker's own timer can abort it now
    await eventually(() => abortedAfterMs, 5000, "the abort");
    expect(abortedAfterMs).toBeGreaterThanOrEqual(1450);
    expect(abortedAfterMs).toBeLessThan(2500);
    expect(await types(tj, ref.runId)).toContain("TaskTimedOut0");
    await worker.stop();
    await tj.close();
  });

  it("timeouts - ctx.refreshTimeout extends the deadline, recorded in history", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const long = tj.task({
      name: "long",
      executionTimeout: "300ms",
      fn: async (_input, ctx) => {
        for (let i = 0; i < 3; i++) {
          await new Promise((r) => setTimeout(r, 200));
          await ctx.refreshTimeout("300ms");
        }
        return { ok: !ctx.cancelled };
      },
    });
    const worker = await tj.worker("w", { workflows: [long] });
    await worker.start();
    const ref = await long.runNoWait({});
    expect(await ref.result()).toEqual({ ok: true });
    expect(await types(tj, ref.runId)).toEqual([
      "RunCreated",
      "TaskStarted0",
      "TaskTimeoutRefreshed0",
      "TaskTimeoutRefreshed0",
      "TaskTimeoutRefreshed0",
      "TaskCompleted0",
    ]);
    await tj.close();
    await engine.stop();
  });

  it("timeouts - durations beyond what one Node timer holds (24.8 days) are waited out, not fired at once", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const long = tj.task({
      name: "long-deadline",
      executionTimeout: "600h",
      fn: async (_input, ctx) => {
        await new Promise((r) => setTimeout(r, 100)); // past the start record: its deadline is armed
        await ctx.refreshTimeout("700h");
        await new Promise((r) => setTimeout(r, 100));
        return { aborted: ctx.abortController.signal.aborted };
      },
    });
    await (await tj.worker("w", { workflows: [long] })).start();
    const ref = await long.runNoWait({});
    expect(await ref.result({ timeoutMs: 2 ** 40 })).toEqual({ aborted: false });
    expect(await ref.result({ timeoutMs: 40 * 86_400_000 })).toEqual({ aborted: false });
    expect(await types(tj, ref.runId)).toEqual([
      "RunCreated",
      "TaskStarted0",
      "TaskTimeoutRefreshed0",
      "TaskCompleted0",
    ]);
    await tj.close();
    await engine.stop();
  });

  it("timeouts - durations are checked when the task is declared and when refreshed", async () => {
    const tj = await connectClient(nats.url);
    const fn = async () => ({});
    expect(() => tj.task({ name: "a", fn, executionTimeout: "-5s" })).toThrow(
      /executionTimeout: must be a positive duration.*got "-5s"/,
    );
    expect(() => tj.task({ name: "a", fn, executionTimeout: "soon" })).toThrow(ValidationError);
    await tj.close();
  });
});

describe("schedule timeouts", () => {
  it("timeouts - a run nobody picks up within its scheduleTimeout is cancelled with SCHEDULE_TIMEOUT", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace], defaultScheduleTimeoutMs: 400 });
    const tj = await connectClient(nats.url, { namespace });
    const declared = tj.task({ name: "unattended", scheduleTimeout: "250ms", fn: async () => ({}) });
    const viaDeclaration = await declared.runNoWait({});
    const byName = await tj.runNoWait("unattended", {});
    const t0 = Date.now();
    await expect(viaDeclaration.result()).rejects.toThrow(/SCHEDULE_TIMEOUT/);
    await expect(byName.result()).rejects.toThrow(/SCHEDULE_TIMEOUT/);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(300);
    expect(await types(tj, viaDeclaration.runId)).toEqual(["RunCreated", "TaskCancelled0"]);
    expect(await tj.runs.get(byName.runId)).toMatchObject({
      status: "CANCELLED",
      tasks: [{ status: "CANCELLED", error: { name: "TaskCancelled", message: "SCHEDULE_TIMEOUT" } }],
    });
    // A worker starting later does not run them.
    let ran = 0;
    const late = tj.task({
      name: "unattended",
      fn: async () => {
        ran++;
        return {};
      },
    });
    const worker = await tj.worker("w", { workflows: [late] });
    await worker.start();
    await late.run({});
    expect(ran).toBe(1);
    await tj.close();
    await engine.stop();
  });

  it("timeouts - runs made from the registered definition (by name, by events, by another client) get its scheduleTimeout and defaultPriority", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace], defaultScheduleTimeoutMs: 60_000 });
    const tj = await connectClient(nats.url, { namespace });
    const st = tj.task({
      name: "registered-opts",
      scheduleTimeout: "500ms",
      defaultPriority: 3,
      onEvents: ["st:go"],
      fn: async () => ({}),
    });
    // Registered, then gone: nothing runs the runs below.
    const worker = await tj.worker("w", { workflows: [st] });
    await worker.start();
    await worker.stop();
    const other = await connectClient(nats.url, { namespace });
    const byName = await other.runNoWait("registered-opts", {});
    await other.events.push("st:go", { via: "event" });
    const byEvent = await eventually(async () => {
      const runs = await tj.runs.list({ taskName: "registered-opts" });
      return runs.find((r) => r.trigger.kind === "event");
    });
    for (const runId of [byName.runId, byEvent.runId]) {
      const ended = await eventually(async () => {
        const state = await tj.runs.get(runId);
        return state.status === "CANCELLED" ? state : undefined;
      });
      expect(ended).toMatchObject({ priority: 3, tasks: [{ error: { message: "SCHEDULE_TIMEOUT" } }] });
    }
    await other.close();
    await tj.close();
    await engine.stop();
  });
});
