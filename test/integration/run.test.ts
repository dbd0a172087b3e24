import { connect } from "@nats-io/transport-node";
import { subjects } from "@taskjet/schemas";
import {
  PayloadTooLargeError,
  type RunEnd,
  RunIdTakenError,
  RunStatuses,
  TaskRunError,
  ValidationError,
} from "@taskjet/sdk";
import { describe, expect, it } from "vitest";
import { sleep } from "../harness/concurrency-probe.js";
import { connectClient, eventually, startEngine, uniqueNamespace, useNatsServer } from "../harness/fixtures.js";
import { startNatsServer } from "../harness/nats-server.js";
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

  it("run - input and output types declared as interfaces: the task, its triggers and a workflow compile and run typed", async () => {
    interface OrderInput {
      orderId: string;
      amount: number;
    }
    interface OrderOutput {
      charged: boolean;
    }
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const charge = tj.task({
      name: "charge-typed",
      fn: async (input: OrderInput): Promise<OrderOutput> => ({ charged: input.amount > 0 }),
    });
    const explicit = tj.task<OrderInput, OrderOutput>({ name: "charge-explicit", fn: async (i) => ({ charged: !!i }) });
    const wf = tj.workflow<OrderInput>({ name: "order-typed" });
    wf.task({ name: "bill", fn: async (input: OrderInput): Promise<OrderOutput> => ({ charged: input.amount > 1 }) });
    await (await tj.worker("w", { workflows: [charge, explicit, wf] })).start();
    const out: OrderOutput = await charge.run({ orderId: "o1", amount: 5 });
    expect(out).toEqual({ charged: true });
    expect(await explicit.run({ orderId: "o2", amount: 0 })).toEqual({ charged: true });
    expect(await wf.run({ orderId: "o3", amount: 1 })).toEqual({ bill: { charged: false } });
    await tj.close();
    await engine.stop();
  });

  it("run - result({ timeoutMs }) of a run that ended as the time ran out (its end in the log, not announced yet) is that end", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const gated = tj.task({
      name: "gated",
      fn: async () => {
        await gate;
        return { done: true };
      },
    });
    const worker = await tj.worker("w", { workflows: [gated] });
    await worker.start();
    const ref = await gated.runNoWait({});
    await eventually(async () => ((await ref.status()) === "RUNNING" ? true : undefined));
    // No engine to announce its end: the worker records it in the log, and nobody says so.
    await engine.stop();
    const waited = ref.result({ timeoutMs: 1500 });
    await sleep(200); // listening, the run still RUNNING
    release();
    await eventually(async () => ((await ref.status()) === "COMPLETED" ? true : undefined));
    expect(await waited).toEqual({ done: true });
    await worker.stop();
    await tj.close();
  });

  it("run - properties set to undefined in an input or output are left out, as JSON.stringify leaves them out", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const report = tj.task({
      name: "report",
      fn: async (input: { day: string; note?: string }, ctx) => ({
        why: ctx.trigger().kind,
        event: ctx.triggeringEvent()?.key,
        keys: Object.keys(input),
      }),
    });
    await (await tj.worker("w", { workflows: [report] })).start();
    expect(await report.run({ day: "2026-11-28", note: undefined })).toStrictEqual({ why: "run", keys: ["day"] });
    await tj.close();
    await engine.stop();
  });

  it("run - an input nested as deep as the edge takes (256 levels) runs, and its task's output as deep is recorded; one level more is refused", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const echo = tj.task({ name: "echo-deep", fn: async (input: Record<string, unknown>) => input });
    await (await tj.worker("w", { workflows: [echo] })).start();
    // `levels` objects, one inside the other.
    const nested = (levels: number) => {
      let v: Record<string, unknown> = {};
      for (let i = 1; i < levels; i++) v = { v };
      return v;
    };
    expect(await echo.run(nested(256))).toEqual(nested(256));
    const err = await echo.runNoWait(nested(257)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect(String(err)).toMatch(/deeper than 256 levels/);
    await tj.close();
    await engine.stop();
  });

  it("run - a given runId: a retried trigger of the same task is that run; another task's run is RunIdTakenError", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const echo = tj.task({ name: "echo", fn: async (input: { n: number }) => ({ n: input.n }) });
    const other = tj.task({ name: "other", fn: async () => ({ other: true }) });
    await (await tj.worker("w", { workflows: [echo, other] })).start();
    expect(await echo.run({ n: 1 }, { runId: "given1" })).toEqual({ n: 1 });
    expect(await echo.run({ n: 2 }, { runId: "given1" })).toEqual({ n: 1 }); // the same run, not a second one
    expect((await echo.runNoWait({ n: 3 }, { runId: "given1" })).runId).toBe("given1");
    for (const trigger of [() => other.run({}, { runId: "given1" }), () => other.runNoWait({}, { runId: "given1" })]) {
      const err = await trigger().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RunIdTakenError);
      expect(err).toMatchObject({ code: "RUN_ID_TAKEN", runId: "given1", existingTask: "echo" });
    }
    const [many] = await other.runMany([{ input: {}, options: { runId: "given1" } }], { returnExceptions: true });
    expect(many).toBeInstanceOf(RunIdTakenError);
    expect((await tj.runs.list()).map((r) => r.runId)).toEqual(["given1"]);
    await tj.close();
    await engine.stop();
  });

  it("run - an input under the limit whose RunCreated is over the server's max_payload (large metadata) is PayloadTooLargeError", async () => {
    const server = await startNatsServer({ maxPayload: "1MB" }); // the default, where the harness raises it
    const tj = await connectClient(server.url, { namespace: uniqueNamespace() });
    const meta = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, "m".repeat(1024)]));
    const input = { blob: "x".repeat(tj.connection.payloadLimit - 20) };
    const big = await tj.runNoWait("t", input, { additionalMetadata: meta }).catch((e: unknown) => e);
    expect(big).toBeInstanceOf(PayloadTooLargeError);
    expect((big as PayloadTooLargeError).message).toMatch(/^the RunCreated event is \d+ bytes as JSON, over the limit/);
    // Waiting for it too: refused, and the waiter it listened with is dropped (no rejection left unhandled).
    await expect(tj.run("t", input, { additionalMetadata: meta })).rejects.toThrow(PayloadTooLargeError);
    await tj.close();
    await server.stop();
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
    // What the server passes on of the engine's announcements (the client would also find the end by reading the run
    // once it has waited 5 s: this shows the announcement came).
    const nc = await connect({ servers: nats.url });
    const announced: string[] = [];
    nc.subscribe(subjects.endedAll(namespace), {
      callback: (_err, m) => {
        announced.push(m.string());
      },
    });
    await nc.flush();
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
    expect(announced).toEqual([]);
    // The engine's connection drops; it reconnects (through the proxy, which passes everything now).
    proxy.cut();
    await expect(result).resolves.toEqual({ n: 42 });
    await eventually(() => (announced.length > 0 ? true : undefined), 10_000, "the end announced again");
    await nc.close();
    await tj.close();
    await engine.stop();
    await proxy.close();
  });

  it("run - resolves although its waiter never hears the end announced (its user may not listen for ends): the client reads the runs it has long waited for", async () => {
    const server = await startNatsServer({
      config: () => `authorization { users: [
        { user: engine, password: e }
        { user: deaf, password: d, permissions: { subscribe: { deny: ["tj.*.ended.>"] } } }
      ] }`,
    });
    try {
      const namespace = uniqueNamespace();
      const engine = await startEngine(server.url, {
        namespaces: [namespace],
        auth: { user: "engine", password: "e" },
      });
      const tj = await connectClient(server.url, { namespace, auth: { user: "deaf", password: "d" } });
      const double = tj.task({ name: "double", fn: async (input: { n: number }) => ({ n: input.n * 2 }) });
      const worker = await tj.worker("w1", { workflows: [double], slots: 1 });
      await worker.start();
      const t0 = performance.now();
      expect(await double.run({ n: 21 })).toEqual({ n: 42 });
      // Not from the announcement (it never came): from the first read, 5 s into the wait.
      expect(performance.now() - t0).toBeGreaterThan(4000);
      await tj.close();
      await engine.stop();
    } finally {
      await server.stop();
    }
  });

  it("run - many at once share one subscription to the ends, each resolving with its own run's output, and the client unsubscribes once none waits", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const nc = tj.connection.nc;
    const subscribed: string[] = [];
    const subscribe = nc.subscribe.bind(nc);
    nc.subscribe = (subject, opts) => {
      subscribed.push(subject);
      return subscribe(subject, opts);
    };
    try {
      const echo = tj.task({ name: "echo", fn: async (input: { i: number }) => ({ i: input.i, twice: input.i * 2 }) });
      const worker = await tj.worker("w1", { workflows: [echo], slots: 20 });
      await worker.start();
      const n = 300;
      const before = subscribed.length;
      const outs = await Promise.all(Array.from({ length: n }, (_, i) => echo.run({ i })));
      expect(outs).toEqual(Array.from({ length: n }, (_, i) => ({ i, twice: 2 * i })));
      const perRun = subscribed.slice(before).filter((s) => s !== subjects.endedAll(namespace));
      const shared = subscribed.slice(before).filter((s) => s === subjects.endedAll(namespace));
      // The first waiters listen alone, the rest through one subscription.
      expect(perRun.length).toBeGreaterThan(0);
      expect(perRun.length).toBeLessThanOrEqual(32);
      expect(shared).toHaveLength(1);
      // Its last waiter settled: the shared subscription is gone, and a lone run() listens alone again.
      const live = () =>
        [
          ...(
            nc as unknown as { protocol: { subscriptions: { all(): { subject: string }[] } } }
          ).protocol.subscriptions.all(),
        ].map((sub) => sub.subject);
      expect(live()).not.toContain(subjects.endedAll(namespace));
      expect(await echo.run({ i: 7 })).toEqual({ i: 7, twice: 14 });
      expect(subscribed.at(-1)).not.toBe(subjects.endedAll(namespace));
    } finally {
      await tj.close();
      await engine.stop();
    }
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
