import { type RunEnd, RunStatuses, TaskRunError } from "@taskjet/sdk";
import { describe, expect, it } from "vitest";
import { connectClient, eventually, startEngine, uniqueNamespace, useNatsServer } from "../harness/fixtures.js";
import { startTcpProxy } from "../harness/tcp-proxy.js";

const nats = useNatsServer();

describe("run", () => {
  it("run - waits for the task's output", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const hello = tj.task({
      name: "hello",
      fn: async (input: { name: string }, ctx) => ({ greeting: `hi ${input.name}`, runId: ctx.workflowRunId() }),
    });
    const worker = await tj.worker("w1", { workflows: [hello], slots: 5 });
    await worker.start();
    const out = await hello.run({ name: "x" });
    expect(out.greeting).toBe("hi x");
    const state = await tj.runs.get(out.runId as string);
    expect(state.status).toBe(RunStatuses.completed);
    expect(state.output).toEqual(out);
    await tj.close();
    await engine.stop();
  });

  it("run - a throwing task ends FAILED with its message and stack", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const boom = tj.task({
      name: "boom",
      fn: async () => {
        throw new RangeError("out of range: 42");
      },
    });
    const worker = await tj.worker("w1", { workflows: [boom] });
    await worker.start();
    const ref = await boom.runNoWait({});
    const err = await ref.result().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TaskRunError);
    const taskErr = (err as TaskRunError).taskError;
    expect(taskErr.name).toBe("RangeError");
    expect(taskErr.message).toBe("out of range: 42");
    expect(taskErr.stack).toContain("run.test.ts");
    expect((err as TaskRunError).code).toBe("TASK_FAILED");
    await eventually(async () => ((await tj.runs.get(ref.runId)).status === RunStatuses.failed ? true : undefined));
    await tj.close();
    await engine.stop();
  });

  it("run - resolves although the engine's server dropped the announcement of the run's end: the engine announces recent ends again after it reconnects", async () => {
    const namespace = uniqueNamespace();
    // The engine alone talks through the proxy; the waiting client and the worker talk to the server directly.
    const proxy = await startTcpProxy({ host: "127.0.0.1", port: nats.server.port });
    const engine = await startEngine(proxy.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    let started: () => void = () => undefined;
    const running = new Promise<void>((r) => {
      started = r;
    });
    let open: () => void = () => undefined;
    const gate = new Promise<void>((r) => {
      open = r;
    });
    const held = tj.task({
      name: "held",
      fn: async (input: { n: number }) => {
        started();
        await gate;
        return { n: input.n * 2 };
      },
    });
    const worker = await tj.worker("w1", { workflows: [held], slots: 1 });
    await worker.start();
    let settled = false;
    const result = held.run({ n: 21 }).finally(() => {
      settled = true;
    });
    await running;
    // From here the server never reads what the engine writes: it folds the result and announces the end into the
    // void, as into a server that dies before passing it on to the waiter's.
    proxy.swallow();
    open();
    await eventually(() => (worker.runningCount === 0 ? true : undefined));
    await new Promise((r) => setTimeout(r, 1000));
    expect(settled).toBe(false);
    // The engine's connection drops; it reconnects (through the proxy, which passes everything now).
    proxy.cut();
    await expect(result).resolves.toEqual({ n: 42 });
    await tj.close();
    await engine.stop();
    await proxy.close();
  });

  it("runs.onEnd - hears every run of its namespace end, with its output or error, until stopped", async () => {
    const namespace = uniqueNamespace();
    const other = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace, other] });
    const tj = await connectClient(nats.url, { namespace });
    const tjOther = await connectClient(nats.url, { namespace: other });
    const ends: RunEnd[] = [];
    const stop = tj.runs.onEnd((end) => ends.push(end));
    const decl = (c: typeof tj) =>
      c.task({
        name: "half",
        fn: async (input: { n: number }) => {
          if (input.n < 0) throw new Error(`negative: ${input.n}`);
          return { half: input.n / 2 };
        },
      });
    const half = decl(tj);
    const halfOther = decl(tjOther);
    const worker = await tj.worker("w", { workflows: [half] });
    await worker.start();
    const workerOther = await tjOther.worker("w", { workflows: [halfOther] });
    await workerOther.start();
    const refs = await Promise.all([half.runNoWait({ n: 4 }), half.runNoWait({ n: 10 }), half.runNoWait({ n: -1 })]);
    await halfOther.run({ n: 2 });
    await Promise.allSettled(refs.map((r) => r.result()));
    const byRun = new Map(ends.map((e) => [e.runId, e]));
    expect(byRun.size).toBe(3);
    expect(byRun.get(refs[0].runId)).toMatchObject({ status: "COMPLETED", output: { half: 2 }, workflowName: "half" });
    expect(byRun.get(refs[1].runId)).toMatchObject({ status: "COMPLETED", output: { half: 5 } });
    expect(byRun.get(refs[2].runId)).toMatchObject({ status: "FAILED", error: { message: "negative: -1" } });
    expect(byRun.get(refs[2].runId)?.tasks).toEqual([{ taskName: "half", status: "FAILED" }]);
    stop();
    expect(() => tj.runs.onEnd("log" as never)).toThrow(/listener: must be a function, got string/);
    await half.run({ n: 6 });
    expect(new Set(ends.map((e) => e.runId)).size).toBe(3);
    await tj.close();
    await tjOther.close();
    await engine.stop();
  });
});
