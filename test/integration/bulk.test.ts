import { TaskRunError, ValidationError } from "@taskjet/sdk";
import { describe, expect, it } from "vitest";
import { historyEvents, startNamespace, useNatsServer } from "../harness/fixtures.js";

const nats = useNatsServer();

describe("bulk", () => {
  it("bulk - 10,000 runs in one call all complete, each run once, handles in input order", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const seen = new Map<number, number>();
    const square = tj.task({
      name: "square",
      fn: async (input: { n: number }) => {
        seen.set(input.n, (seen.get(input.n) ?? 0) + 1);
        return { sq: input.n * input.n };
      },
    });
    const worker = await tj.worker("w", { workflows: [square], slots: 200 });
    await worker.start();
    const items = Array.from({ length: 10_000 }, (_, n) => ({ input: { n } }));
    const refs = await square.runManyNoWait(items);
    expect(refs).toHaveLength(10_000);
    expect(new Set(refs.map((r) => r.runId)).size).toBe(10_000);
    const outputs = await Promise.all(refs.map((r) => r.result()));
    expect(outputs.every((o, n) => o.sq === n * n)).toBe(true);
    expect(seen.size).toBe(10_000);
    expect([...seen.values()].every((count) => count === 1)).toBe(true);
    // A short attempt: its result carries its start instead of a TaskStarted before it.
    const last = await historyEvents(tj, refs[9_999]?.runId as string);
    expect(last.map((e) => e.type)).toEqual(["RunCreated", "TaskCompleted"]);
    expect(last[1]?.data).toMatchObject({ attempt: 0, workerId: worker.id, started: { workerName: "w" } });
    await tj.close();
    await engine.stop();
  }, 120_000);

  it("bulk - run(inputs[]) returns outputs in order; the same run ids again make no new runs", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    let calls = 0;
    const echo = tj.task({
      name: "echo",
      fn: async (input: { v: string }) => {
        calls++;
        return { v: input.v };
      },
    });
    const worker = await tj.worker("w", { workflows: [echo], slots: 10 });
    await worker.start();
    expect(await echo.run([{ v: "a" }, { v: "b" }, { v: "c" }])).toEqual([{ v: "a" }, { v: "b" }, { v: "c" }]);
    const refs = await echo.runNoWait([{ v: "x" }, { v: "y" }]);
    expect(await Promise.all(refs.map((r) => r.result()))).toEqual([{ v: "x" }, { v: "y" }]);
    // Options naming one run cannot go with several inputs (each input would be that run, and lost).
    const sent = calls;
    await expect(echo.run([{ v: "s" }, { v: "t" }], { runId: "one" })).rejects.toThrow(/options.runId: names one run/);
    await expect(echo.runNoWait([{ v: "s" }], { idempotencyKey: "k" })).rejects.toThrow(/options.idempotencyKey/);
    expect(await echo.run([{ v: "u" }, { v: "w" }], { priority: 3 })).toEqual([{ v: "u" }, { v: "w" }]);
    expect(calls).toBe(sent + 2);
    const items = ["p", "q", "r"].map((v, i) => ({ input: { v }, options: { runId: `fixed-${i}` } }));
    expect(await echo.runMany(items)).toEqual([{ v: "p" }, { v: "q" }, { v: "r" }]);
    const before = calls;
    expect(await echo.runMany(items)).toEqual([{ v: "p" }, { v: "q" }, { v: "r" }]);
    expect(calls).toBe(before);
    await tj.close();
    await engine.stop();
  });

  it("bulk - bad items are refused before anything is sent, or returned in place with returnExceptions", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    let calls = 0;
    const half = tj.task({
      name: "half",
      fn: async (input: { n: number }) => {
        calls++;
        if (input.n % 2 === 1) throw new RangeError(`odd: ${input.n}`);
        return { half: input.n / 2 };
      },
    });
    const worker = await tj.worker("w", { workflows: [half], slots: 10 });
    await worker.start();
    const bad = [{ input: { n: 0 } }, { input: { n: 2 } }, { input: "not an object" as unknown as { n: number } }];
    const err = await half.runMany(bad).catch((e) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).message).toMatch(/\[2\]\.input: must be a JSON object, got "not an object"/);
    await expect(half.runManyNoWait([{ input: { n: 1 }, options: { priority: 9 as 3 } }])).rejects.toThrow(
      /\[0\]\.options\.priority/,
    );
    // Misspelt options or item fields are refused, not dropped.
    await expect(half.runManyNoWait([{ input: { n: 1 } }], { returnException: true } as never)).rejects.toThrow(
      /options.returnException: is not a bulk option \(returnExceptions\), got true/,
    );
    await expect(half.runManyNoWait([{ input: { n: 1 }, option: { priority: 3 } } as never])).rejects.toThrow(
      /\[0\]\.option: is not a bulk item field \(input, options\)/,
    );
    expect(calls).toBe(0);
    const results = await half.runMany([...bad, { input: { n: 3 } }, { input: { n: 4 } }], { returnExceptions: true });
    expect(results[0]).toEqual({ half: 0 });
    expect(results[1]).toEqual({ half: 1 });
    expect(results[2]).toBeInstanceOf(ValidationError);
    expect(results[3]).toBeInstanceOf(TaskRunError);
    expect((results[3] as TaskRunError).message).toMatch(/odd: 3/);
    expect(results[4]).toEqual({ half: 2 });
    expect(calls).toBe(4);
    // Without returnExceptions the first failure is thrown, after every run finished.
    await expect(half.run([{ n: 6 }, { n: 5 }, { n: 8 }])).rejects.toThrow(/odd: 5/);
    expect(calls).toBe(7);
    await tj.close();
    await engine.stop();
  });
});
