import { describe, expect, it } from "vitest";
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
});
