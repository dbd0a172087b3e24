import { TaskRunError } from "@taskjet/sdk";
import { describe, expect, it } from "vitest";
import { sleep } from "../harness/concurrency-probe.js";
import {
  connectClient,
  eventually,
  historyTypes,
  startEngine,
  startNamespace,
  uniqueNamespace,
  useNatsServer,
} from "../harness/fixtures.js";
import { kill, startWorkerProcess } from "../harness/processes.js";

const nats = useNatsServer();

describe("durable tasks", () => {
  it("sleep - the attempt ends at the sleep, a new one replays the checkpoints and goes on at the sleep's end", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    let executions = 0;
    const remind = tj.durableTask({
      name: "remind",
      fn: async (_input, ctx) => {
        executions++;
        const before = await ctx.now();
        await ctx.sleepFor("1s");
        const after = await ctx.now();
        return { before: before.toISOString(), after: after.toISOString(), attempt: ctx.attempt() };
      },
    });
    const worker = await tj.worker("w", { workflows: [remind] });
    await worker.start();
    const t0 = Date.now();
    const out = (await remind.run({})) as { before: string; after: string; attempt: number };
    expect(Date.parse(out.after) - Date.parse(out.before)).toBeGreaterThanOrEqual(1000);
    expect(Date.parse(out.before) - t0).toBeLessThan(1000); // recorded by the first attempt, replayed by the second
    expect(out.attempt).toBe(1);
    expect(executions).toBe(2);
    const [ref] = await tj.runs.list({ taskName: "remind", limit: 1 });
    expect(await historyTypes(tj, ref?.runId as string)).toEqual([
      "RunCreated",
      "TaskStarted",
      "DurableCheckpoint",
      "DurableSleeping",
      "DurableWoke",
      "TaskStarted",
      "DurableCheckpoint",
      "TaskCompleted",
    ]);
    await tj.close();
    await engine.stop();
  });

  it("sleep - sleeping runs hold no slot; a sleep outlives its worker and ends on another at its original time", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const woke: number[] = [];
    const nap = tj.durableTask({
      name: "nap",
      fn: async (input: { i: number }, ctx) => {
        await ctx.sleepUntil(new Date(Date.now() + 1500));
        woke.push(Date.now());
        return { i: input.i };
      },
    });
    const first = await tj.worker("first", { workflows: [nap], durableSlots: 2 });
    await first.start();
    const t0 = Date.now();
    const refs = await nap.runNoWait(Array.from({ length: 20 }, (_, i) => ({ i })));
    // Twenty runs asleep at once on a worker with two durable slots.
    await new Promise((r) => setTimeout(r, 700));
    await first.stop();
    const second = await tj.worker("second", { workflows: [nap], durableSlots: 2 });
    await second.start();
    await Promise.all(refs.map((r) => r.result()));
    expect(woke).toHaveLength(20);
    // Each woke at its own sleep's end (set within the first ~700 ms), not a sleep restarted by the new worker.
    expect(Math.max(...woke) - t0).toBeLessThan(1500 + 700 + 1500);
    expect(Math.min(...woke) - t0).toBeGreaterThanOrEqual(1500);
    await tj.close();
    await engine.stop();
  });

  it("worker SIGKILL mid-sleep - another worker resumes it: the checkpoint is not repeated, the sleep ends on time", async () => {
    // A short worker TTL: the dead worker is known gone before the sleep ends, so the wake goes to the rescuer.
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace], workerTtlMs: 1000 });
    const tj = await connectClient(nats.url, { namespace });
    const doomed = await startWorkerProcess(nats.url, namespace, "nap", 5, 3000, "durable");
    const ref = await tj.runNoWait("nap", { who: "ana" });
    await eventually(async () => ((await historyTypes(tj, ref.runId)).includes("DurableSleeping") ? true : undefined));
    const sleptAt = Date.now();
    await kill(doomed.child, "SIGKILL");
    await sleep(1500);
    // The same steps as the process's task: record now(), sleep, return.
    const nap = tj.durableTask({
      name: "nap",
      fn: async (input: Record<string, unknown>, ctx) => {
        const before = await ctx.now();
        await ctx.sleepFor(3000);
        return { ...input, before: before.toISOString(), worker: ctx.worker.id() };
      },
    });
    const rescuer = await tj.worker("rescuer", { workflows: [nap] });
    await rescuer.start();
    const out = (await ref.result({ timeoutMs: 10_000 })) as { before: string; worker: string };
    const doneAt = Date.now();
    expect(out.worker).toBe(rescuer.id);
    expect(Date.parse(out.before)).toBeLessThan(sleptAt); // recorded by the killed worker, not taken again
    // The original sleep's end (~3 s after it began), not a new 3 s sleep from the rescuer's start (~4.5 s).
    expect(doneAt - sleptAt).toBeGreaterThanOrEqual(2900);
    expect(doneAt - sleptAt).toBeLessThan(4000);
    const types = await historyTypes(tj, ref.runId);
    expect(types.filter((t) => t === "DurableCheckpoint")).toHaveLength(1);
    expect(types.filter((t) => t === "DurableSleeping")).toHaveLength(1);
    await tj.close();
    await engine.stop();
  });

  it("waitForEvent - frees the slot, resumes with the first matching event; replays return it without waiting", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    let executions = 0;
    const approve = tj.durableTask({
      name: "approve",
      fn: async (input: { order: string }, ctx) => {
        executions++;
        const event = await ctx.waitForEvent("approval:granted", `payload.order == '${input.order}'`);
        return { by: event.payload.by, eventId: event.id };
      },
    });
    const worker = await tj.worker("w", { workflows: [approve], durableSlots: 1 });
    await worker.start();
    const refs = await approve.runNoWait([{ order: "o1" }, { order: "o2" }, { order: "o3" }]);
    // Three waiting on one durable slot: waiting holds none.
    await eventually(async () => {
      const states = await Promise.all(refs.map((r) => tj.runs.get(r.runId)));
      return states.every((s) => s.tasks[0]?.status === "PENDING") ? true : undefined;
    });
    await tj.events.push("approval:granted", { order: "o9", by: "nobody" });
    const { eventId } = await tj.events.push("approval:granted", { order: "o2", by: "ana" });
    expect(await refs[1]?.result()).toEqual({ by: "ana", eventId });
    await tj.events.push("approval:granted", { order: "o1", by: "bo" });
    await tj.events.push("approval:granted", { order: "o3", by: "cy" });
    expect(await refs[0]?.result()).toEqual({ by: "bo", eventId: expect.any(String) });
    expect(await refs[2]?.result()).toEqual({ by: "cy", eventId: expect.any(String) });
    expect(executions).toBe(6); // each run: the attempt that waited, the one that resumed
    await tj.close();
    await engine.stop();
  });

  it("waitForEvent race - an event pushed the moment the wait is recorded, before the engine registers it, is not missed", async () => {
    const { engine, tj, namespace } = await startNamespace(nats.url);
    const wait = tj.durableTask({
      name: "wait",
      fn: async (input: { k: string }, ctx) => ({ got: (await ctx.waitForEvent(input.k)).payload.n }),
    });
    const worker = await tj.worker("w", { workflows: [wait], durableSlots: 50 });
    await worker.start();
    // Push each run's event as soon as its wait is appended (a plain subscription hears the append itself): the
    // router may see the event before the engine folds the wait.
    const sub = tj.connection.nc.subscribe(`tj.${namespace}.hist.*`, {
      callback: (_err, m) => {
        const e = m.json<{ type: string; data: { key?: string } }>();
        if (e.type === "DurableWaitingForEvent" && e.data.key) void tj.events.push(e.data.key, { n: 1 });
      },
    });
    const refs = await wait.runNoWait(Array.from({ length: 30 }, (_, i) => ({ k: `race-${i}` })));
    const outs = await Promise.all(refs.map((r) => r.result({ timeoutMs: 15_000 })));
    expect(outs.every((o) => o.got === 1)).toBe(true);
    sub.unsubscribe();
    await tj.close();
    await engine.stop();
  });

  it("waitForEvent backlog - an event pushed before the wait began is not taken, though the engine's router reads it after the wait began", async () => {
    const namespace = uniqueNamespace();
    let engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    try {
      const wait = tj.durableTask({
        name: "wait",
        fn: async (_input, ctx) => ({ got: (await ctx.waitForEvent("k:target")).payload.tag }),
      });
      // Its runs tell when the router has read an event.
      const seen = tj.task({ name: "seen", onEvents: ["k:target"], fn: async () => ({}) });
      const worker = await tj.worker("w", { workflows: [wait, seen], durableSlots: 5 });
      await worker.start();
      await engine.stop();
      // A backlog for the next engine's router, then the event the wait must not take.
      for (let b = 0; b < 4; b++) {
        await tj.events.bulkPush(
          "noise:x",
          Array.from({ length: 5000 }, (_, i) => ({ payload: { i } })),
        );
      }
      await tj.events.push("k:target", { tag: "before" });
      const ref = await wait.runNoWait({});
      engine = await startEngine(nats.url, { namespaces: [namespace] });
      await eventually(
        async () => ((await historyTypes(tj, ref.runId)).includes("DurableWaitingForEvent") ? true : undefined),
        20_000,
        "the wait recorded",
      );
      // The router reads the event from before the wait only now, past the backlog.
      await eventually(
        async () => ((await tj.runs.list({ taskName: "seen" })).length === 1 ? true : undefined),
        30_000,
        "the router read the event pushed before the wait",
      );
      await tj.events.push("k:target", { tag: "after" });
      expect(await ref.result({ timeoutMs: 30_000 })).toEqual({ got: "after" });
    } finally {
      await tj.close();
      await engine.stop();
    }
  }, 90_000);

  it("spawnChild - a child as a checkpoint: the replay after a sleep gets the same child's output, not a new child", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    let childRuns = 0;
    const quote = tj.task({
      name: "quote",
      fn: async (input: { item: string }) => {
        childRuns++;
        return { price: input.item.length * 10 };
      },
    });
    const buy = tj.durableTask({
      name: "buy",
      fn: async (input: { item: string }, ctx) => {
        const { price } = await ctx.spawnChild<{ price: number }>(quote, input);
        await ctx.sleepFor("300ms");
        return { paid: price };
      },
    });
    const worker = await tj.worker("w", { workflows: [quote, buy] });
    await worker.start();
    expect(await buy.run({ item: "lamp" })).toEqual({ paid: 40 });
    expect(childRuns).toBe(1);
    await tj.close();
    await engine.stop();
  });

  it("spawnChild - a durable child of a durable parent on a worker with one durable slot: the parent waits without it", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const leaf = tj.durableTask({
      name: "leaf",
      fn: async (_input, ctx) => {
        await ctx.now();
        return { v: 1 };
      },
    });
    const parent = tj.durableTask({
      name: "parent",
      fn: async (_input, ctx) => ({ child: await ctx.spawnChild(leaf, {}) }),
    });
    await (await tj.worker("w", { workflows: [leaf, parent], slots: 5, durableSlots: 1 })).start();
    // Held by the parent, the slot would leave the child queued for good.
    const ref = await parent.runNoWait({});
    expect(await ref.result({ timeoutMs: 10_000 })).toEqual({ child: { v: 1 } });
    await tj.close();
    await engine.stop();
  });

  it("retryCount - a durable task's resumptions are not retries; a failure is; spawnChild keeps { sticky: true }", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const counts: number[] = [];
    let failed = false;
    const child = tj.task({ name: "child", fn: async () => ({}) });
    const naps = tj.durableTask({
      name: "naps",
      retries: 1,
      fn: async (_input, ctx) => {
        counts.push(ctx.retryCount());
        await ctx.spawnChild(child, {}, { sticky: true });
        await ctx.sleepFor("50ms");
        await ctx.sleepFor("50ms");
        if (!failed) {
          failed = true;
          throw new Error("once");
        }
        return {};
      },
    });
    const worker = await tj.worker("w", { workflows: [child, naps] });
    await worker.start();
    const ref = await naps.runNoWait({});
    await ref.result();
    // Three attempts to the failure (two wake-ups), then the retry, which replays the recorded sleeps.
    expect(counts).toEqual([0, 0, 0, 1]);
    const [first] = (await tj.runs.get(ref.runId)).children ?? [];
    expect((await tj.runs.get(first?.runId as string)).sticky).toMatchObject({ mode: "SOFT" });
    await tj.close();
    await engine.stop();
  });

  it("non-determinism - a replay that reaches other checkpoints than history recorded fails, naming both", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    let runs = 0;
    const flaky = tj.durableTask({
      name: "flaky",
      retries: 3,
      fn: async (_input, ctx) => {
        runs++;
        if (runs === 1) await ctx.now();
        await ctx.sleepFor("200ms");
        return {};
      },
    });
    const worker = await tj.worker("w", { workflows: [flaky] });
    await worker.start();
    const err = await flaky.run({}).catch((e) => e);
    expect(err).toBeInstanceOf(TaskRunError);
    expect((err as TaskRunError).taskError.name).toBe("NonDeterminismError");
    expect((err as TaskRunError).message).toMatch(
      /checkpoint 0: the task now calls a sleep, but its history recorded now\(\)/,
    );
    expect(runs).toBe(2); // not retried
    // A replay spawning another task where history has a child: the same error, naming both.
    const childA = tj.task({ name: "child-a", fn: async () => ({}) });
    const childB = tj.task({ name: "child-b", fn: async () => ({}) });
    let spawns = 0;
    const changing = tj.durableTask({
      name: "changing",
      fn: async (_input, ctx) => {
        await ctx.spawnChild(spawns++ === 0 ? childA : childB, {});
        await ctx.sleepFor("100ms");
        return {};
      },
    });
    await (await tj.worker("w-children", { workflows: [childA, childB, changing], durableSlots: 2 })).start();
    const changed = await changing.run({}).catch((e: unknown) => e);
    expect((changed as TaskRunError).taskError?.name).toBe("NonDeterminismError");
    expect(String(changed)).toMatch(
      /the task now calls spawnChild\(child-b\), but its history recorded spawnChild\(child-a\)/,
    );
    const plain = tj.task({
      name: "plain",
      fn: async (_i, ctx) => {
        await ctx.now();
        return {};
      },
    });
    const w2 = await tj.worker("w2", { workflows: [plain] });
    await w2.start();
    await expect(plain.run({})).rejects.toThrow(/only available in durable tasks/);
    // Longer than the history lives (30 days): refused, as schedule() refuses it.
    const sleeper = tj.durableTask({
      name: "long-sleeper",
      fn: async (_i, ctx) => {
        await ctx.sleepFor("745h"); // 31 days
        return {};
      },
    });
    const w3 = await tj.worker("w3", { workflows: [sleeper], durableSlots: 1 });
    await w3.start();
    const slept = await sleeper.run({}).catch((e: unknown) => e);
    expect(String(slept)).toMatch(/duration: must be at most 30 days .*, got "745h"/);
    await tj.close();
    await engine.stop();
  });
});
