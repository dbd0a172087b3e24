import { expandEvent } from "@taskjet/schemas";
import { type Context, type Taskjet, ValidationError, type Worker } from "@taskjet/sdk";
import { describe, expect, it } from "vitest";
import { ConcurrencyProbe, sleep } from "../harness/concurrency-probe.js";
import { eventually, historyEvents, startNamespace, startOf, useNatsServer } from "../harness/fixtures.js";

const nats = useNatsServer();

const setup = () => startNamespace(nats.url);

/** The worker names each attempt of each run ran on, from the run's history. */
async function workersByAttempt(tj: Taskjet, runId: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of tj.runs.history(runId)) {
    // A start recorded alone, or carried by the result of a short attempt.
    for (const fact of e.event ? expandEvent(e.event) : []) {
      if (fact.type === "TaskStarted") out.push(fact.data.workerName);
    }
  }
  return out;
}

describe("routing", () => {
  it("labels - required labels are never violated; weights rank the workers that qualify", async () => {
    const { engine, tj } = await setup();
    const ranOn: string[] = [];
    const train = tj.task({
      name: "train",
      desiredWorkerLabels: {
        memory: { value: 256, required: true, comparator: "GREATER_THAN_OR_EQUAL" },
        gpu: { value: "a100", weight: 10 },
      },
      fn: async (_input, ctx) => {
        ranOn.push(ctx.worker.name());
        await sleep(20);
        return {};
      },
    });
    const workers: Worker[] = [];
    for (const [name, labels] of [
      ["small", { memory: 128, gpu: "a100" }],
      ["big", { memory: 512 }],
      ["gpu", { memory: 256, gpu: "a100" }],
    ] as const) {
      const w = await tj.worker(name, { workflows: [train], slots: 5, labels });
      await w.start();
      workers.push(w);
    }
    // Five at a time fit on the preferred worker: they all go there.
    await Promise.all(Array.from({ length: 5 }, () => train.run({})));
    expect(ranOn).toEqual(["gpu", "gpu", "gpu", "gpu", "gpu"]);
    ranOn.length = 0;
    await Promise.all(Array.from({ length: 100 }, () => train.run({})));
    expect(ranOn).toHaveLength(100);
    expect(ranOn).not.toContain("small");
    expect(ranOn).toContain("big"); // the preferred worker was full at times
    // New labels take effect at once: the small worker qualifies after an upgrade.
    await workers[0]?.upsertLabels({ memory: 1024, gpu: "h100" });
    await workers[2]?.stop();
    await workers[1]?.stop();
    ranOn.length = 0;
    await train.run({});
    expect(ranOn).toEqual(["small"]);
    await expect(workers[0]?.upsertLabels({ "bad key!": 1 })).rejects.toThrow(ValidationError);
    await tj.close();
    await engine.stop();
  });

  it("labels - a run no live worker qualifies for waits, says why, and runs when one does", async () => {
    const { engine, tj } = await setup();
    const gpuTask = tj.task({
      name: "gpu-task",
      desiredWorkerLabels: { gpu: { value: "a100", required: true } },
      fn: async (_input, ctx) => ({ on: ctx.worker.name() }),
    });
    const cpu = await tj.worker("cpu", { workflows: [gpuTask], labels: { gpu: "none" } });
    await cpu.start();
    const ref = await gpuTask.runNoWait({});
    const waiting = await eventually(async () => (await tj.runs.get(ref.runId)).tasks[0]?.waiting);
    expect(waiting.reason).toBe("NO_WORKER");
    expect(waiting.detail).toMatch(/gpu EQUAL a100/);
    const gpu = await tj.worker("gpu", { workflows: [gpuTask], labels: { gpu: "a100" } });
    await gpu.start();
    expect(await ref.result()).toEqual({ on: "gpu" });
    // A short attempt: its result carries its start, on the worker that qualifies.
    const h = await historyEvents(tj, ref.runId);
    expect(h.map((e) => e.type)).toEqual(["RunCreated", "TaskWaiting", "TaskCompleted"]);
    expect(startOf(h[2])).toMatchObject({ workerName: "gpu" });
    await tj.close();
    await engine.stop();
  });

  it("sticky HARD - every attempt of a run stays on the worker that ran its first", async () => {
    const { engine, tj } = await setup();
    const flaky = tj.task({
      name: "flaky",
      sticky: "HARD",
      retries: 3,
      fn: async (_input, ctx) => {
        if (ctx.retryCount() < 3) throw new Error(`attempt ${ctx.retryCount()} fails`);
        return {};
      },
    });
    for (const name of ["w1", "w2", "w3"]) {
      const w = await tj.worker(name, { workflows: [flaky], slots: 3 });
      await w.start();
    }
    const refs = await Promise.all(Array.from({ length: 15 }, () => flaky.runNoWait({})));
    await Promise.all(refs.map((r) => r.result()));
    const firsts = new Set<string>();
    for (const ref of refs) {
      const ran = await workersByAttempt(tj, ref.runId);
      expect(ran).toHaveLength(4);
      expect(new Set(ran).size).toBe(1);
      firsts.add(ran[0] as string);
    }
    expect(firsts.size).toBeGreaterThan(1); // runs spread; each one stuck to its own worker
    const state = await tj.runs.get(refs[0]?.runId as string);
    expect(state.sticky?.mode).toBe("HARD");
    await tj.close();
    await engine.stop();
  });

  for (const mode of ["SOFT", "HARD"] as const) {
    it(`sticky ${mode} and labels - a sticky worker that lost a required label is ${mode === "SOFT" ? "left for another that has it" : "waited for until it has it again"}`, async () => {
      const { engine, tj } = await setup();
      const workers = new Map<string, Worker>();
      const ranOn: string[] = [];
      const zoned = tj.task({
        name: "zoned",
        sticky: mode,
        retries: 1,
        backoff: { factor: 2, maxSeconds: 1 },
        desiredWorkerLabels: { zone: { value: "a", required: true } },
        fn: async (_input, ctx: Context) => {
          ranOn.push(ctx.worker.name());
          if (ctx.retryCount() === 0) {
            // Before the retry is placed (1 s backoff), the worker that ran attempt 0 leaves zone a.
            await workers.get(ctx.worker.name())?.upsertLabels({ zone: "b" });
            throw new Error("first attempt fails");
          }
          return {};
        },
      });
      for (const [name, zone] of [
        ["a1", "a"],
        ["a2", "a"],
        ["b1", "b"],
      ]) {
        const w = await tj.worker(name as string, { workflows: [zoned], slots: 2, labels: { zone: zone as string } });
        await w.start();
        workers.set(name as string, w);
      }
      const ref = await zoned.runNoWait({});
      if (mode === "SOFT") {
        await ref.result();
        expect(ranOn).toHaveLength(2);
        expect(ranOn[1]).not.toBe(ranOn[0]);
        expect(ranOn).not.toContain("b1");
      } else {
        const waiting = await eventually(async () => (await tj.runs.get(ref.runId)).tasks[0]?.waiting, 10_000);
        expect(waiting.reason).toBe("NO_WORKER");
        expect(ranOn).toHaveLength(1);
        await workers.get(ranOn[0] as string)?.upsertLabels({ zone: "a" });
        await ref.result();
        expect(ranOn).toHaveLength(2);
        expect(ranOn[1]).toBe(ranOn[0]);
      }
      await tj.close();
      await engine.stop();
    });
  }

  it("slot cost - a task of cost 3 takes 3 of a worker's 4 slots; the worker never runs more than 4 slots' worth", async () => {
    const { engine, tj } = await setup();
    const probe = new ConcurrencyProbe();
    const heavy = tj.task({
      name: "heavy",
      slotCost: 3,
      fn: () => probe.around("heavy", () => sleep(15).then(() => ({})), 3),
    });
    const light = tj.task({ name: "light", fn: () => probe.around("light", () => sleep(5).then(() => ({})), 1) });
    expect(() => tj.task({ name: "x", slotCost: 0, fn: async () => ({}) })).toThrow(/slotCost/);
    await expect(tj.worker("tiny", { workflows: [heavy], slots: 2 })).rejects.toThrow(/workflows\[0\]\.slotCost/);
    const worker = await tj.worker("w", { workflows: [heavy, light], slots: 4 });
    await worker.start();
    const refs = await Promise.all([
      ...Array.from({ length: 10 }, () => heavy.runNoWait({})),
      ...Array.from({ length: 30 }, () => light.runNoWait({})),
    ]);
    await Promise.all(refs.map((r) => r.result()));
    expect(probe.maxTotal).toBe(4);
    expect(probe.maxByKey.get("heavy")).toBe(1);
    await tj.close();
    await engine.stop();
  });
});
