import { RunCancelledError, RunStatuses, ValidationError } from "@taskjet/sdk";
import { describe, expect, it } from "vitest";
import { sleep } from "../harness/concurrency-probe.js";
import { eventually, historyTypes, startNamespace, useNatsServer } from "../harness/fixtures.js";

const nats = useNatsServer();

describe("child runs", () => {
  it("fan-out - a parent starts 1,000 children in one go and sums their outputs", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const square = tj.task({ name: "square", fn: async (input: { n: number }) => ({ sq: input.n * input.n }) });
    const parent = tj.task({
      name: "sum-squares",
      executionTimeout: "120s",
      fn: async (input: { count: number }, ctx) => {
        // The children's output type comes from `square`'s declaration (`o.sq` is a number without a type argument).
        const outputs = await ctx.bulkRunChildren(
          Array.from({ length: input.count }, (_, n) => ({ task: square, input: { n } })),
        );
        return { sum: outputs.reduce((s, o) => s + o.sq, 0) };
      },
    });
    const worker = await tj.worker("w", { workflows: [square, parent], slots: 100 });
    await worker.start();
    const t0 = performance.now();
    const ref = await parent.runNoWait({ count: 1000 });
    expect(await ref.result()).toEqual({ sum: 332_833_500 });
    const seconds = (performance.now() - t0) / 1000;
    process.stderr.write(`fan-out: 1 parent → 1,000 children summed in ${seconds.toFixed(2)} s\n`);
    const state = await tj.runs.get(ref.runId);
    expect(state.children).toHaveLength(1000);
    const child = await tj.runs.get(state.children?.[7]?.runId as string);
    expect(child.trigger).toMatchObject({ kind: "child", parentRunId: ref.runId, key: "#7" });
    expect(child.output).toEqual({ sq: 49 });
    await tj.close();
    await engine.stop();
  }, 120_000);

  it("child.run inside a task - a child of it, recorded in the parent's history; a retried parent gets the same children", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const runs = new Map<string, number>();
    const double = tj.task({
      name: "double",
      fn: async (input: { n: number }, ctx) => {
        runs.set(ctx.workflowRunId(), (runs.get(ctx.workflowRunId()) ?? 0) + 1);
        return { v: input.n * 2 };
      },
    });
    const parent = tj.task({
      name: "parent",
      retries: 1,
      fn: async (_input, ctx) => {
        const a = await double.run({ n: 1 }); // a child, because it runs inside a task
        const b = await ctx.runChild<{ v: number }>(double, { n: 2 }, { key: "second" });
        if (ctx.retryCount() === 0) throw new Error("first attempt fails after its children");
        return { total: a.v + b.v };
      },
    });
    const worker = await tj.worker("w", { workflows: [double, parent], slots: 10 });
    await worker.start();
    const ref = await parent.runNoWait({});
    expect(await ref.result()).toEqual({ total: 6 });
    // Two attempts of the parent, two children, each run once.
    expect(runs.size).toBe(2);
    expect([...runs.values()]).toEqual([1, 1]);
    const history = await historyTypes(tj, ref.runId);
    expect(history.filter((t) => t === "ChildrenSpawned")).toHaveLength(4); // each attempt records its two
    const state = await tj.runs.get(ref.runId);
    expect(state.children?.map((c) => c.key)).toEqual(["#0", "second"]);
    await tj.close();
    await engine.stop();
  });

  it("workflow inside a task - wf.run() is a child run of it: a retried parent gets the same workflow run", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const wf = tj.workflow({ name: "inner" });
    const a = wf.task({ name: "inner-a", fn: async (input: { n: number }) => ({ a: input.n }) });
    wf.task({
      name: "inner-b",
      parents: [a],
      fn: async (_input, ctx) => ({ b: (ctx.parentOutput(a) as { a: number }).a + 1 }),
    });
    const outer = tj.task({
      name: "outer",
      retries: 1,
      fn: async (input: { n: number }, ctx) => {
        const out = await wf.run<{ "inner-b": { b: number } }>({ n: input.n });
        if (ctx.retryCount() === 0) throw new Error("fail once, after the workflow ran");
        return { b: out["inner-b"].b };
      },
    });
    const worker = await tj.worker("w", { workflows: [wf, outer] });
    await worker.start();
    const ref = await outer.runNoWait({ n: 4 });
    expect(await ref.result()).toEqual({ b: 5 });
    const inner = await tj.runs.list({ taskName: "inner" });
    expect(inner).toHaveLength(1); // not one per attempt of the parent
    expect(inner[0]?.trigger.kind).toBe("child");
    expect((await tj.runs.get(ref.runId)).children?.map((c) => c.runId)).toEqual([inner[0]?.runId]);
    await tj.close();
    await engine.stop();
  });

  it("child options - inside a task, a trigger's priority and metadata go to the child, runMany's returnExceptions holds, an id is refused", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const seen: { n: number; meta: Record<string, string> }[] = [];
    const square = tj.task({
      name: "square-opts",
      fn: async (input: { n: number }, ctx) => {
        seen.push({ n: input.n, meta: ctx.additionalMetadata() });
        if (input.n < 0) throw new Error("negative");
        return { sq: input.n * input.n };
      },
    });
    const parent = tj.task({
      name: "parent-opts",
      fn: async (_input, ctx) => {
        const one = await square.runNoWait({ n: 2 }, { priority: 3, additionalMetadata: { tenant: "acme" } });
        const mixed = await square.runMany([{ input: { n: 3 } }, { input: { n: -1 } }], { returnExceptions: true });
        const refused = await square.run({ n: 4 }, { runId: "mine" }).catch((e: unknown) => e);
        // Typed by the child's declaration: an input it does not take does not compile.
        // @ts-expect-error square takes { n: number }
        const wrong = await ctx.runChildNoWait(square, { m: 1 }).catch((e: unknown) => e);
        return {
          child: one.runId,
          first: (await one.result()).sq,
          mixed: mixed.map((m) => (m instanceof Error ? m.name : m.sq)),
          refused: String(refused),
          wrong: wrong instanceof Error ? wrong.name : "started",
        };
      },
    });
    await (await tj.worker("w", { workflows: [square, parent], slots: 10 })).start();
    const out = await parent.run({}, { additionalMetadata: { region: "eu" } });
    expect(out).toMatchObject({
      first: 4,
      mixed: [9, "TaskRunError"],
      refused: expect.stringMatching(/options.runId: inside a task a trigger is a child run/),
      wrong: "started", // the types say no; nothing at run time checks a task's input shape
    });
    expect(await tj.runs.get(out.child as string)).toMatchObject({
      priority: 3,
      additionalMetadata: { region: "eu", tenant: "acme" },
    });
    expect(seen.find((s) => s.n === 3)?.meta).toEqual({ region: "eu" });
    await tj.close();
    await engine.stop();
  });

  it("child workflow - a workflow started as a child runs as that workflow (built from what its workers registered)", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const wf = tj.workflow({ name: "two-step" });
    const x = wf.task({ name: "x", fn: async (input: { n: number }) => ({ v: input.n * 2 }) });
    wf.task({ name: "y", parents: [x], fn: async (_i, ctx) => ({ w: ctx.parentOutput(x).v * 10 }) });
    const parent = tj.task({ name: "wf-parent", fn: async (_input, ctx) => ctx.runChild(wf, { n: 3 }) });
    await (await tj.worker("w", { workflows: [wf, parent] })).start();
    expect(await parent.run({})).toEqual({ x: { v: 6 }, y: { w: 60 } });
    await tj.close();
    await engine.stop();
  });

  it("child keys - a key that is not a string is refused in the task, never two children made one", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const square = tj.task({ name: "square", fn: async (input: { i: number }) => ({ sq: input.i * input.i }) });
    const keys = tj.task({
      name: "keys",
      fn: async (_input, ctx) => {
        const refused: string[] = [];
        for (const key of [{ a: 1 }, 7, "k".repeat(257), "#0"]) {
          const err = await ctx.runChild(square, { i: 2 }, { key: key as never }).catch((e: unknown) => e);
          if (err instanceof ValidationError) refused.push(err.message);
        }
        const bulk = await ctx
          .bulkRunChildren([
            { task: square, input: { i: 1 }, key: "one" },
            { task: square, input: { i: 3 }, key: { b: 2 } as never },
          ])
          .catch((e: unknown) => e);
        const a = await ctx.runChild(square, { i: 2 }, { key: "a" }); // typed by square's declaration
        const b = await ctx.runChild<{ sq: number }>(square, { i: 3 }, { key: "b" });
        return { refused, bulk: (bulk as Error).message, a: a.sq, b: b.sq };
      },
    });
    const worker = await tj.worker("w", { workflows: [square, keys] });
    await worker.start();
    const out = (await keys.run({})) as { refused: string[]; bulk: string; a: number; b: number };
    const why = 'must be a string of at most 256 characters, not starting with "#" (unkeyed children\'s), got';
    expect(out.refused).toEqual([
      `options.key: ${why} {"a":1}`,
      `options.key: ${why} 7`,
      expect.stringMatching(/^options\.key: must be .*, got "k+\.\.\."$/),
      `options.key: ${why} "#0"`, // the first unkeyed child's key: it would be that child
    ]);
    expect(out.bulk).toBe(`children[1].key: ${why} {"b":2}`);
    expect([out.a, out.b]).toEqual([4, 9]);
    const { children } = await tj.runs.get((await tj.runs.list({ taskName: "keys" }))[0]?.runId as string);
    expect(children?.map((c) => c.key)).toEqual(["a", "b"]); // the refused ones made nothing
    await tj.close();
    await engine.stop();
  });

  it("child keys - a key given again with another input, in one call or two, and a misspelt option are refused; the same key and input give the same child", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    let ran = 0;
    const square = tj.task({
      name: "square",
      fn: async (input: { i: number }) => {
        ran++;
        return { sq: input.i * input.i };
      },
    });
    const parent = tj.task({
      name: "parent",
      fn: async (_input, ctx) => {
        const message = (e: unknown) => (e instanceof ValidationError ? `${e.field} | ${e.message}` : String(e));
        const inOneCall = await ctx
          .bulkRunChildren([
            { task: square, input: { i: 1 }, key: "k" },
            { task: square, input: { i: 2 }, key: "k" },
          ])
          .catch(message);
        const first = await ctx.runChild(square, { i: 3 }, { key: "k3" });
        // The same input with its keys in another order is the same input.
        const again = await ctx.runChild(square, { x: [1, { b: 2, a: 1 }], i: 3 } as never, { key: "k4" });
        const reordered = await ctx.runChild(square, { i: 3, x: [1, { a: 1, b: 2 }] } as never, { key: "k4" });
        if (again.sq !== reordered.sq) throw new Error("another child");
        await ctx.runChild(square, { i: 3 }, { key: "k3" });
        const other = await ctx.runChild(square, { i: 4 }, { key: "k3" }).catch(message);
        const misspelt = await ctx.runChild(square, { i: 5 }, { keey: "x" } as never).catch(message);
        const misspeltItem = await ctx
          .bulkRunChildren([{ task: square, input: { i: 6 }, priorty: 2 } as never])
          .catch(message);
        return { inOneCall, first: first.sq, again: again.sq, other, misspelt, misspeltItem };
      },
    });
    const worker = await tj.worker("w", { workflows: [square, parent] });
    await worker.start();
    const out = await parent.run({});
    expect(out).toEqual({
      inOneCall: expect.stringMatching(
        /^children\[1\]\.key \| .*"k" already names a child of this attempt with another input \(\{"i":1\}\)/,
      ),
      first: 9,
      again: 9,
      other: expect.stringMatching(/^options\.key \| .*"k3" already names a child .* another input \(\{"i":3\}\)/),
      misspelt: expect.stringMatching(
        /^options\.keey \| .*is not a child run option \(key, sticky, priority, additionalMetadata\), got "x"$/,
      ),
      misspeltItem: expect.stringMatching(/^children\[0\]\.priorty \| .*is not a child field .*, got 2$/),
    });
    expect(ran).toBe(2); // k3 and k4, once each: nothing refused made a child
    await tj.close();
    await engine.stop();
  });

  it("sticky children - children run with { sticky: true } stay on the parent's worker (HARD), others go elsewhere", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const ranOn: Record<string, string[]> = { sticky: [], free: [] };
    const piece = tj.task({
      name: "piece",
      fn: async (input: { kind: "sticky" | "free" }, ctx) => {
        ranOn[input.kind]?.push(ctx.worker.id());
        await sleep(30);
        return {};
      },
    });
    const parent = tj.task({
      name: "assemble",
      sticky: "HARD",
      fn: async (_input, ctx) => {
        await Promise.all([
          ctx.bulkRunChildren(
            Array.from({ length: 10 }, () => ({ task: piece, input: { kind: "sticky" as const }, sticky: true })),
          ),
          ctx.bulkRunChildren(Array.from({ length: 10 }, () => ({ task: piece, input: { kind: "free" as const } }))),
        ]);
        return { on: ctx.worker.id() };
      },
    });
    const w1 = await tj.worker("w1", { workflows: [piece, parent], slots: 20 });
    const w2 = await tj.worker("w2", { workflows: [piece, parent], slots: 20 });
    await w1.start();
    await w2.start();
    const { on } = await parent.run({});
    expect(new Set(ranOn.sticky)).toEqual(new Set([on]));
    // Unbound children go where slots are freest: the other worker, busy with nothing.
    expect(ranOn.free?.some((w) => w !== on)).toBe(true);
    await tj.close();
    await engine.stop();
  });

  it("cascading cancel - cancelling a parent cancels its running and queued children", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const aborted: string[] = [];
    const blocker = tj.task({
      name: "blocker",
      fn: async (input: { i: number }, ctx) => {
        await new Promise((r) => ctx.abortController.signal.addEventListener("abort", r));
        aborted.push(`child${input.i}`);
        return {};
      },
    });
    const parent = tj.task({
      name: "boss",
      fn: async (_input, ctx) => {
        await ctx.bulkRunChildrenNoWait(Array.from({ length: 5 }, (_, i) => ({ task: blocker, input: { i } })));
        await new Promise((r) => ctx.abortController.signal.addEventListener("abort", r));
        return {};
      },
    });
    // Three slots: the parent and two children run, three children stay queued.
    const worker = await tj.worker("w", { workflows: [blocker, parent], slots: 3 });
    await worker.start();
    const ref = await parent.runNoWait({});
    const children = await eventually(async () => {
      const s = await tj.runs.get(ref.runId);
      return s.children?.length === 5 ? s.children : undefined;
    });
    await eventually(() => (worker.runningCount === 3 ? true : undefined));
    await ref.cancel("stop everything");
    await expect(ref.result()).rejects.toBeInstanceOf(RunCancelledError);
    for (const c of children) {
      const err = await tj
        .ref(c.runId)
        .result()
        .catch((e) => e);
      expect(err).toBeInstanceOf(RunCancelledError);
      expect((err as RunCancelledError).reason).toMatch(/parent run .* cancelled: stop everything/);
    }
    await eventually(() => (aborted.length === 2 ? true : undefined));
    await sleep(300);
    expect(aborted).toHaveLength(2); // the queued three never started
    expect((await tj.runs.get(children[4]?.runId as string)).status).toBe(RunStatuses.cancelled);
    await tj.close();
    await engine.stop();
  });
});
