import { UnavailableError } from "@taskjet/sdk";
import { describe, expect, it } from "vitest";
import { connectClient, eventually, historyTypes, startEngine, uniqueNamespace } from "../harness/fixtures.js";
import { startNatsServer } from "../harness/nats-server.js";

/** Longer than a publish waits for its ack (5 s): appends made meanwhile fail, they are not only late. */
const OUTAGE_MS = 8000;

describe("NATS outage", () => {
  it("outage - a scheduled run, a durable sleep and a retry due while NATS is down go on once it is back, with the engine up all along", async () => {
    const nats = await startNatsServer();
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    try {
      let failures = 0;
      const job = tj.task({ name: "job", fn: async () => ({ ok: true }) });
      const flaky = tj.task({
        name: "flaky",
        retries: 1,
        backoff: { factor: 2, maxSeconds: 1 },
        fn: async () => {
          if (failures++ === 0) throw new Error("first attempt fails");
          return { ok: true };
        },
      });
      const nap = tj.durableTask({
        name: "nap",
        fn: async (_input, ctx) => {
          await ctx.sleepFor("1500ms");
          return { woke: true };
        },
      });
      const worker = await tj.worker("w", { workflows: [job, flaky, nap], durableSlots: 5 });
      await worker.start();
      const napping = await nap.runNoWait({});
      await eventually(
        async () => ((await historyTypes(tj, napping.runId)).includes("DurableSleeping") ? true : undefined),
        5000,
        "the nap recorded",
      );
      const scheduled = await job.schedule(new Date(Date.now() + 1000), {});
      const retried = await flaky.runNoWait({});
      await eventually(
        async () => ((await historyTypes(tj, retried.runId)).includes("TaskRetryScheduled") ? true : undefined),
        5000,
        "the retry scheduled",
      );
      // Everything above comes due during the outage.
      await nats.kill("SIGTERM");
      await new Promise((r) => setTimeout(r, OUTAGE_MS));
      await nats.restart();
      expect(await scheduled.result({ timeoutMs: 20_000 })).toEqual({ ok: true });
      expect(await napping.result({ timeoutMs: 20_000 })).toEqual({ woke: true });
      expect(await retried.result({ timeoutMs: 20_000 })).toEqual({ ok: true });
      expect((await historyTypes(tj, scheduled.runId)).filter((t) => t === "RunDue")).toHaveLength(1);
    } finally {
      await tj.close();
      await engine.stop();
      await nats.stop();
    }
  }, 60_000);

  it("outage - a worker running a task through an outage longer than its registration's TTL is not taken for gone: the task runs once, on it", async () => {
    const nats = await startNatsServer();
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace], workerTtlMs: 1500 });
    const tj = await connectClient(nats.url, { namespace });
    try {
      let calls = 0;
      const long = tj.task({
        name: "long",
        fn: async () => {
          calls++;
          await new Promise((r) => setTimeout(r, 6000));
          return { done: true };
        },
      });
      const worker = await tj.worker("w", { workflows: [long] });
      await worker.start();
      const ref = await long.runNoWait({});
      await eventually(() => (worker.runningCount === 1 ? true : undefined));
      await nats.kill("SIGTERM");
      await new Promise((r) => setTimeout(r, 3000)); // two TTLs: neither heartbeats nor the engine's reads get through
      await nats.restart();
      expect(await ref.result({ timeoutMs: 20_000 })).toEqual({ done: true });
      expect(calls).toBe(1);
      expect(await historyTypes(tj, ref.runId, { expand: true })).toEqual([
        "RunCreated",
        "TaskStarted",
        "TaskCompleted",
      ]);
    } finally {
      await tj.close();
      await engine.stop();
      await nats.stop();
    }
  }, 60_000);

  it("outage - a task that ends while NATS is down for longer than an append retries has its outcome kept and recorded once NATS is back; a trigger meanwhile fails with UnavailableError", async () => {
    const nats = await startNatsServer();
    const namespace = uniqueNamespace();
    // The default worker TTL (15 s), shorter than the outage: the new leader waits for the worker's heartbeat.
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    try {
      const ran: string[] = [];
      const job = tj.task({
        name: "job",
        fn: async (_input, ctx) => {
          ran.push(ctx.workflowRunId());
          await new Promise((r) => setTimeout(r, 1000));
          return { done: true };
        },
      });
      const worker = await tj.worker("w", { workflows: [job] });
      await worker.start();
      const ref = await job.runNoWait({});
      await eventually(
        async () => ((await historyTypes(tj, ref.runId)).includes("TaskStarted") ? true : undefined),
        5000,
        "the start recorded",
      );
      await nats.kill("SIGKILL");
      // Past the 15 s an append retries for: the task's result and this trigger are both refused meanwhile.
      const refused = await job.runNoWait({}).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(UnavailableError);
      expect((refused as UnavailableError).code).toBe("UNAVAILABLE");
      expect((refused as Error).message).toMatch(/did not acknowledge RunCreated of run \S+ within 15 s.*try again/);
      await nats.restart();
      expect(await ref.result({ timeoutMs: 20_000 })).toEqual({ done: true });
      // The refused trigger may run too (nats.js sent it once reconnected): what it said, "may have been recorded".
      expect(await historyTypes(tj, ref.runId, { expand: true })).toEqual([
        "RunCreated",
        "TaskStarted",
        "TaskCompleted",
      ]);
      expect(ran.filter((id) => id === ref.runId)).toHaveLength(1);
    } finally {
      await tj.close();
      await engine.stop();
      await nats.stop();
    }
  }, 90_000);
});
