import type { RunRef } from "@taskjet/sdk";
import { describe, expect, it } from "vitest";
import { sleep } from "../harness/concurrency-probe.js";
import { connectClient, startEngine, uniqueNamespace, useNatsServer } from "../harness/fixtures.js";

const nats = useNatsServer();

describe("priority", () => {
  it("priority - priority 3 runs queued after 500 priority-1 runs start before them, across tasks; FIFO within a priority", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const started: string[] = [];
    const bulk = tj.task({
      name: "bulk",
      fn: async (input: { tag: string }) => {
        started.push(input.tag);
        return {};
      },
    });
    const urgent = tj.task({
      name: "urgent",
      defaultPriority: 3,
      fn: async (input: { tag: string }) => {
        started.push(input.tag);
        return {};
      },
    });
    const low = await Promise.all(Array.from({ length: 500 }, (_, i) => bulk.runNoWait({ tag: `low${i}` })));
    const high = [];
    for (let i = 0; i < 5; i++) high.push(await urgent.runNoWait({ tag: `high${i}` }));
    const mid = await bulk.runNoWait({ tag: "mid" }, { priority: 2 });
    const worker = await tj.worker("w", { workflows: [bulk, urgent], slots: 1 });
    await worker.start();
    await Promise.all([...low, ...high, mid].map((r) => r.result()));
    expect(started.slice(0, 6)).toEqual(["high0", "high1", "high2", "high3", "high4", "mid"]);
    expect(started.slice(6)).toEqual(Array.from({ length: 500 }, (_, i) => `low${i}`));
    expect((await tj.runs.get(high[0]?.runId as string)).priority).toBe(3);
    expect(() => tj.task({ name: "x", defaultPriority: 4 as 3, fn: async () => ({}) })).toThrow(/defaultPriority/);
    await tj.close();
    await engine.stop();
  });

  it("priority - a short task's runs placed on a busy worker as they came still start highest priority first", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const started: string[] = [];
    const tiny = tj.task({
      name: "tiny",
      fn: async (input: { tag: string }) => {
        started.push(input.tag);
        return {};
      },
    });
    const block = tj.task({ name: "block", fn: async () => sleep(600).then(() => ({})) });
    const worker = await tj.worker("w", { workflows: [tiny, block], slots: 1 });
    await worker.start();
    // A short task to the engine (its attempts take ~1 ms): it places them on the busy worker rather than queue them.
    for (let i = 0; i < 30; i++) await tiny.run({ tag: "warm" });
    started.length = 0;
    const blocking = await block.runNoWait({});
    await sleep(100);
    const refs: RunRef[] = [];
    for (const p of [1, 1, 2, 3, 3] as const)
      refs.push(await tiny.runNoWait({ tag: `p${p}-${refs.length}` }, { priority: p }));
    await Promise.all([blocking, ...refs].map((r) => r.result()));
    expect(started).toEqual(["p3-3", "p3-4", "p2-2", "p1-0", "p1-1"]);
    await tj.close();
    await engine.stop();
  });
});
