import { NonRetryableError, TaskRunError, ValidationError } from "@taskjet/sdk";
import { describe, expect, it } from "vitest";
import { connectClient, eventually, startEngine, uniqueNamespace, useNatsServer } from "../harness/fixtures.js";

const nats = useNatsServer();

type Entry = { type: string; attempt?: number; at: number; data: Record<string, unknown> };
async function historyOf(tj: Awaited<ReturnType<typeof connectClient>>, runId: string): Promise<Entry[]> {
  const out: Entry[] = [];
  for await (const e of tj.runs.history(runId)) {
    if (!e.event) continue;
    const data = e.event.data as Record<string, unknown>;
    out.push({ type: e.event.type, attempt: data.attempt as number | undefined, at: Date.parse(e.event.at), data });
  }
  return out;
}

describe("retries", () => {
  it("retries - a task failing twice succeeds on its third attempt, each retry recorded and delayed by its backoff", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const seen: number[] = [];
    const flaky = tj.task({
      name: "flaky",
      retries: 2,
      backoff: { factor: 2, maxSeconds: 0.3 },
      fn: async (_input, ctx) => {
        seen.push(ctx.retryCount());
        if (ctx.retryCount() < 2) throw new Error(`attempt ${ctx.retryCount()} failed`);
        return { ok: true, attempt: ctx.retryCount() };
      },
    });
    const worker = await tj.worker("w", { workflows: [flaky] });
    await worker.start();
    const ref = await flaky.runNoWait({});
    expect(await ref.result()).toEqual({ ok: true, attempt: 2 });
    expect(seen).toEqual([0, 1, 2]);
    const h = await historyOf(tj, ref.runId);
    // Short attempts: each result carries its start (and the retry policy the next retry follows).
    expect(h.map((e) => `${e.type}${e.attempt ?? ""}`)).toEqual([
      "RunCreated",
      "TaskFailed0",
      "TaskRetryScheduled1",
      "TaskQueued1",
      "TaskFailed1",
      "TaskRetryScheduled2",
      "TaskQueued2",
      "TaskCompleted2",
    ]);
    for (const result of h.filter((e) => e.type === "TaskFailed" || e.type === "TaskCompleted")) {
      expect(result.data.started).toMatchObject({ workerName: "w", policy: { retries: 2 } });
    }
    for (const retry of h.filter((e) => e.type === "TaskRetryScheduled")) {
      expect(retry.data.delayMs).toBe(300); // min(0.3 s, 2^n s)
      const queued = h.find((e) => e.type === "TaskQueued" && e.attempt === retry.attempt) as Entry;
      expect(queued.at).toBeGreaterThanOrEqual(Date.parse(retry.data.at as string));
    }
    const state = await tj.runs.get(ref.runId);
    expect(state).toMatchObject({ status: "COMPLETED", tasks: [{ attempt: 2, status: "COMPLETED" }] });
    expect(state.tasks[0]?.error).toBeUndefined();
    await tj.close();
    await engine.stop();
  });

  it("retries - NonRetryableError fails at once; exhausted retries fail with the last attempt's error", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    let calls = 0;
    const fatal = tj.task({
      name: "fatal",
      retries: 3,
      fn: async () => {
        calls++;
        throw new NonRetryableError("card declined");
      },
    });
    const always = tj.task({
      name: "always",
      retries: 2,
      fn: async (_input, ctx) => {
        throw new Error(`failure ${ctx.retryCount()}`);
      },
    });
    const worker = await tj.worker("w", { workflows: [fatal, always] });
    await worker.start();
    const fatalErr = (await fatal.run({}).catch((e: unknown) => e)) as TaskRunError;
    expect(fatalErr).toBeInstanceOf(TaskRunError);
    expect(fatalErr.taskError).toMatchObject({ name: "NonRetryableError", message: "card declined" });
    expect(calls).toBe(1);
    const alwaysRef = await always.runNoWait({});
    await expect(alwaysRef.result()).rejects.toThrow(/failure 2/);
    const h = await historyOf(tj, alwaysRef.runId);
    expect(h.filter((e) => e.type === "TaskFailed").map((e) => e.attempt)).toEqual([0, 1, 2]);
    expect(h.filter((e) => e.type === "TaskRetryScheduled").map((e) => e.attempt)).toEqual([1, 2]);
    expect(h.at(-1)?.type).toBe("TaskFailed");
    expect(await tj.runs.get(alwaysRef.runId)).toMatchObject({ status: "FAILED", error: { message: "failure 2" } });
    await tj.close();
    await engine.stop();
  });

  it("retries - a retry waiting on its backoff survives an engine restart and fires at its recorded time", async () => {
    const namespace = uniqueNamespace();
    let engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const startedAt: number[] = [];
    const once = tj.task({
      name: "once",
      retries: 1,
      backoff: { factor: 1.5, maxSeconds: 1.5 },
      fn: async (_input, ctx) => {
        startedAt.push(Date.now());
        if (ctx.retryCount() === 0) throw new Error("first try fails");
        return { ok: true };
      },
    });
    const worker = await tj.worker("w", { workflows: [once] });
    await worker.start();
    const ref = await once.runNoWait({});
    const scheduled = await eventually(async () =>
      (await historyOf(tj, ref.runId)).find((e) => e.type === "TaskRetryScheduled"),
    );
    await engine.stop();
    engine = await startEngine(nats.url, { namespaces: [namespace] });
    expect(await ref.result()).toEqual({ ok: true });
    expect(startedAt).toHaveLength(2);
    expect(startedAt[1] as number).toBeGreaterThanOrEqual(Date.parse(scheduled.data.at as string));
    await tj.close();
    await engine.stop();
  });

  it("retries - bad options are refused when the task is declared, naming the option", async () => {
    const tj = await connectClient(nats.url);
    const fn = async () => ({});
    expect(() => tj.task({ name: "a", fn, retries: -1 })).toThrow(ValidationError);
    expect(() => tj.task({ name: "a", fn, retries: 1.5 })).toThrow(/retries/);
    expect(() => tj.task({ name: "a", fn, backoff: { factor: 0.5, maxSeconds: 10 } })).toThrow(/backoff\.factor/);
    expect(() => tj.task({ name: "a", fn, backoff: { factor: 2, maxSeconds: 0 } })).toThrow(/backoff\.maxSeconds/);
    await tj.close();
  });
});
