import { describe, expect, it } from "vitest";
import { sleep } from "../harness/concurrency-probe.js";
import { connectClient, startNamespace, useNatsServer } from "../harness/fixtures.js";

const nats = useNatsServer();

describe("idempotency keys", () => {
  it("idempotencyKey - triggers with the same key within the ttl get the first run; the task runs once", async () => {
    const { engine, tj, namespace } = await startNamespace(nats.url);
    let calls = 0;
    const charge = tj.task({
      name: "charge",
      idempotency: { ttl: "1500ms" },
      fn: async (input: { amount: number }) => {
        calls++;
        return { charged: input.amount };
      },
    });
    const worker = await tj.worker("w", { workflows: [charge] });
    await worker.start();
    // Ten at once, each with its own fresh run id: only the key can make them one run (not JetStream's dedup).
    const refs = await Promise.all(
      Array.from({ length: 10 }, (_, i) => charge.runNoWait({ amount: 100 + i }, { idempotencyKey: "order-1" })),
    );
    expect(new Set(refs.map((r) => r.runId)).size).toBe(1);
    const output = await refs[0]?.result();
    expect(await charge.run({ amount: 999 }, { idempotencyKey: "order-1" })).toEqual(output);
    expect(calls).toBe(1);
    expect((await tj.runs.get(refs[0]?.runId as string)).trigger).toEqual({ kind: "run", idempotencyKey: "order-1" });
    // Another key, another run; the same key on another task is another run.
    expect(await charge.run({ amount: 5 }, { idempotencyKey: "order-2" })).toEqual({ charged: 5 });
    expect(calls).toBe(2);
    // Past the ttl: a new run.
    await sleep(1600);
    expect(await charge.run({ amount: 7 }, { idempotencyKey: "order-1" })).toEqual({ charged: 7 });
    expect(calls).toBe(3);
    // Bulk items with keys: one run per key, also within one call.
    const before = calls;
    const bulk = await charge.runManyNoWait([
      { input: { amount: 1 }, options: { idempotencyKey: "b" } },
      { input: { amount: 2 }, options: { idempotencyKey: "b" } },
      { input: { amount: 3 }, options: { idempotencyKey: "c" } },
    ]);
    expect(bulk[0]?.runId).toBe(bulk[1]?.runId);
    expect(await Promise.all(bulk.map((r) => r.result()))).toEqual([{ charged: 1 }, { charged: 1 }, { charged: 3 }]);
    expect(calls).toBe(before + 2);
    // By name from a client that did not declare the task (as REST and the CLI trigger): the registered ttl holds.
    const other = await connectClient(nats.url, { namespace });
    const first = await other.runNoWait("charge", { amount: 11 }, { idempotencyKey: "by-name" });
    expect((await other.runNoWait("charge", { amount: 12 }, { idempotencyKey: "by-name" })).runId).toBe(first.runId);
    await sleep(1600);
    const later = await other.runNoWait("charge", { amount: 13 }, { idempotencyKey: "by-name" });
    expect(later.runId).not.toBe(first.runId);
    expect(await later.result()).toEqual({ charged: 13 });
    await other.close();
    expect(() => tj.task({ name: "x", idempotency: { ttl: "40d" as "1h" }, fn: async () => ({}) })).toThrow(
      /idempotency\.ttl/,
    );
    await expect(charge.run({ amount: 1 }, { idempotencyKey: "" })).rejects.toThrow(/options\.idempotencyKey/);
    await tj.close();
    await engine.stop();
  });
});
