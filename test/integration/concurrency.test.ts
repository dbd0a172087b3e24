import { RunCancelledError, type RunRef, RunStatuses, ValidationError } from "@taskjet/sdk";
import { describe, expect, it } from "vitest";
import { ConcurrencyProbe, sleep } from "../harness/concurrency-probe.js";
import {
  connectClient,
  eventually,
  historyTypes,
  startEngine,
  startNamespace,
  uniqueNamespace,
  useNatsServer,
} from "../harness/fixtures.js";

const nats = useNatsServer();

const setup = () => startNamespace(nats.url);

describe("concurrency", () => {
  it("concurrency - maxRuns 2 per key over 500 runs across 5 keys: never more than 2 of a key at once", async () => {
    const { engine, tj } = await setup();
    const probe = new ConcurrencyProbe();
    const capped = tj.task({
      name: "capped",
      concurrency: { expression: "input.key", maxRuns: 2 },
      fn: (input: { key: string }) => probe.around(input.key, () => sleep(10).then(() => ({}))),
    });
    const worker = await tj.worker("w", { workflows: [capped], slots: 20 });
    await worker.start();
    const refs = await Promise.all(Array.from({ length: 500 }, (_, i) => capped.runNoWait({ key: `k${i % 5}` })));
    await Promise.all(refs.map((r) => r.result()));
    expect(probe.starts).toHaveLength(500);
    // Reaches the cap (the keys ran in parallel) and never passes it.
    expect([...probe.maxByKey.values()]).toEqual([2, 2, 2, 2, 2]);
    expect(probe.maxTotal).toBeLessThanOrEqual(10);
    // Why runs waited is in their history.
    let waited = 0;
    for (const ref of refs.slice(-20)) if ((await historyTypes(tj, ref.runId)).includes("TaskWaiting")) waited++;
    expect(waited).toBeGreaterThan(0);
    const state = await tj.runs.get(refs[refs.length - 1]?.runId as string);
    expect(state.status).toBe(RunStatuses.completed);
    await tj.close();
    await engine.stop();
  });

  it("releaseSlot - a run that gives its worker slot back keeps its concurrency place: still never more than maxRuns of a key at once", async () => {
    const { engine, tj } = await setup();
    const probe = new ConcurrencyProbe();
    const capped = tj.task({
      name: "capped-released",
      concurrency: { expression: "input.key", maxRuns: 2 },
      fn: (input: { key: string }, ctx) =>
        probe.around(input.key, async () => {
          await sleep(20);
          await ctx.releaseSlot();
          await sleep(300);
          return {};
        }),
    });
    const worker = await tj.worker("w", { workflows: [capped], slots: 10 });
    await worker.start();
    const refs = await Promise.all(Array.from({ length: 12 }, (_, i) => capped.runNoWait({ key: `k${i % 2}` })));
    await Promise.all(refs.map((r) => r.result()));
    expect(probe.starts).toHaveLength(12);
    expect([...probe.maxByKey.values()]).toEqual([2, 2]);
    await tj.close();
    await engine.stop();
  });

  it("recovery - an engine restart mid-way keeps the cap: running runs still count, queued ones keep their keys", async () => {
    const namespace = uniqueNamespace();
    let engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const probe = new ConcurrencyProbe();
    const capped = tj.task({
      name: "capped",
      concurrency: { expression: "input.key", maxRuns: 2 },
      fn: (input: { key: string }) => probe.around(input.key, () => sleep(800).then(() => ({}))),
    });
    const worker = await tj.worker("w", { workflows: [capped], slots: 20 });
    await worker.start();
    const refs = await Promise.all(Array.from({ length: 24 }, (_, i) => capped.runNoWait({ key: `k${i % 4}` })));
    // Restarted while the first eight run: the new engine must count them from the log.
    await eventually(() => (probe.starts.length >= 8 ? true : undefined));
    await engine.stop();
    engine = await startEngine(nats.url, { namespaces: [namespace] });
    await Promise.all(refs.map((r) => r.result()));
    expect(probe.starts).toHaveLength(24);
    expect([...probe.maxByKey.values()]).toEqual([2, 2, 2, 2]);
    await tj.close();
    await engine.stop();
  });

  it("recovery - runs held back by a full key start in the order they were created, across engine restarts", async () => {
    const namespace = uniqueNamespace();
    let engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const order: number[] = [];
    const one = tj.task({
      name: "one",
      concurrency: { expression: "'k'", maxRuns: 1 },
      fn: async (input: { n: number }) => {
        order.push(input.n);
        await sleep(300);
        return {};
      },
    });
    const worker = await tj.worker("w", { workflows: [one], slots: 5 });
    await worker.start();
    const refs: RunRef[] = [];
    for (let n = 1; n <= 6; n++) refs.push(await one.runNoWait({ n }));
    // The second run was told why it waits (`TaskWaiting`, appended after the later runs' creation): the engine that
    // recovers it must not take that event for its place in the queue.
    await eventually(async () => ((await historyTypes(tj, refs[1]?.runId as string)).includes("TaskWaiting") ? 1 : 0));
    for (let restart = 0; restart < 2; restart++) {
      await engine.stop();
      engine = await startEngine(nats.url, { namespaces: [namespace] });
      await sleep(350);
    }
    await Promise.all(refs.map((r) => r.result()));
    expect(order).toEqual([1, 2, 3, 4, 5, 6]);
    await tj.close();
    await engine.stop();
  });

  it("GROUP_ROUND_ROBIN - a key with 200 queued runs does not starve keys with 25 queued after it", async () => {
    const { engine, tj } = await setup();
    const probe = new ConcurrencyProbe();
    const fair = tj.task({
      name: "fair",
      concurrency: { expression: "input.key", maxRuns: 3, limitStrategy: "GROUP_ROUND_ROBIN" },
      fn: (input: { key: string }) => probe.around(input.key, () => sleep(2).then(() => ({}))),
    });
    const big = await Promise.all(Array.from({ length: 200 }, () => fair.runNoWait({ key: "big" })));
    const small = await Promise.all(Array.from({ length: 100 }, (_, i) => fair.runNoWait({ key: `small${i % 4}` })));
    // Two slots, fewer than one key may use: the cap never binds, only the order of service decides who progresses.
    const worker = await tj.worker("w", { workflows: [fair], slots: 2 });
    await worker.start();
    await Promise.all([...big, ...small].map((r) => r.result()));
    const order = probe.starts.map((s) => s.key);
    // In turn: every key gets a start in each round of 5 while it has runs queued.
    const lastSmall = Math.max(...["small0", "small1", "small2", "small3"].map((k) => order.lastIndexOf(k)));
    expect(lastSmall).toBeLessThan(140); // FIFO would start the small keys at 200..299
    for (const key of ["small0", "small1", "small2", "small3"]) {
      expect(order.indexOf(key)).toBeLessThan(10);
    }
    expect(order.slice(140).every((k) => k === "big")).toBe(true);
    await tj.close();
    await engine.stop();
  });

  it("GROUP_ROUND_ROBIN - with a rule per key and a shared one, a key's backlog does not hold up another key, whatever the order of the rules", async () => {
    const { engine, tj } = await setup();
    const perKey = { expression: "input.key", maxRuns: 1 };
    const shared = { expression: "'all'", maxRuns: 1 };
    const probes = [new ConcurrencyProbe(), new ConcurrencyProbe()] as const;
    const tasks = [
      [perKey, shared],
      [shared, perKey],
    ].map((concurrency, i) =>
      tj.task({
        name: `two-rules-${i}`,
        concurrency,
        fn: (input: { key: string }) => probes[i as 0 | 1].around(input.key, () => sleep(5).then(() => ({}))),
      }),
    );
    const worker = await tj.worker("w", { workflows: tasks, slots: 1 });
    for (const t of tasks) {
      await Promise.all(Array.from({ length: 20 }, () => t.runNoWait({ key: "big" })));
      await Promise.all(Array.from({ length: 3 }, () => t.runNoWait({ key: "small" })));
    }
    await worker.start();
    await eventually(() => (probes.every((p) => p.starts.length === 23) ? true : undefined), 20_000);
    for (const probe of probes) {
      const order = probe.starts.map((s) => (s.key === "big" ? "B" : "s"));
      // In turn while both keys have runs queued (FIFO would start the small key's runs last).
      expect(order.join("").slice(0, 6)).toBe("BsBsBs");
    }
    await tj.close();
    await engine.stop();
  });

  it("CANCEL_IN_PROGRESS - a new run of a key cancels the running one, which history says; the new one runs", async () => {
    const { engine, tj } = await setup();
    const probe = new ConcurrencyProbe();
    const deploy = tj.task({
      name: "deploy",
      concurrency: { expression: "input.env", maxRuns: 1, limitStrategy: "CANCEL_IN_PROGRESS" },
      fn: (input: { env: string; n: number }, ctx) =>
        probe.around(input.env, async () => {
          if (input.n === 1) {
            await new Promise((resolve) => ctx.abortController.signal.addEventListener("abort", resolve));
            return { aborted: true };
          }
          return { n: input.n };
        }),
    });
    const worker = await tj.worker("w", { workflows: [deploy], slots: 5 });
    await worker.start();
    const first = await deploy.runNoWait({ env: "prod", n: 1 });
    await eventually(async () => ((await first.status()) === RunStatuses.running ? true : undefined));
    const other = await deploy.runNoWait({ env: "staging", n: 3 });
    const second = await deploy.runNoWait({ env: "prod", n: 2 });
    expect(await second.result()).toEqual({ n: 2 });
    expect(await other.result()).toEqual({ n: 3 });
    const err = await first.result().catch((e) => e);
    expect(err).toBeInstanceOf(RunCancelledError);
    expect((err as RunCancelledError).reason).toMatch(/CANCEL_IN_PROGRESS/);
    const history = await historyTypes(tj, first.runId);
    expect(history).toContain("RunCancelled");
    expect(probe.maxByKey.get("prod")).toBe(1);
    await tj.close();
    await engine.stop();
  });

  it("CANCEL_NEWEST - a run arriving while its key is full is cancelled; the running one finishes", async () => {
    const { engine, tj } = await setup();
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const started: number[] = [];
    const once = tj.task({
      name: "once",
      concurrency: { expression: "input.account", maxRuns: 1, limitStrategy: "CANCEL_NEWEST" },
      fn: async (input: { account: string; n: number }) => {
        started.push(input.n);
        if (input.n === 1) await gate;
        return { n: input.n };
      },
    });
    const worker = await tj.worker("w", { workflows: [once], slots: 5 });
    await worker.start();
    const first = await once.runNoWait({ account: "a", n: 1 });
    await eventually(() => (started.includes(1) ? true : undefined));
    const newest = await once.runNoWait({ account: "a", n: 2 });
    const err = await newest.result().catch((e) => e);
    expect(err).toBeInstanceOf(RunCancelledError);
    expect((err as RunCancelledError).reason).toMatch(/CANCEL_NEWEST/);
    expect(await once.run({ account: "b", n: 3 })).toEqual({ n: 3 });
    release();
    expect(await first.result()).toEqual({ n: 1 });
    expect(started).not.toContain(2);
    expect(await historyTypes(tj, newest.runId)).toEqual(["RunCreated", "RunCancelled"]);
    await tj.close();
    await engine.stop();
  });

  it.each([
    ["CANCEL_NEWEST", "the run arriving meanwhile is cancelled and the retry completes"],
    ["CANCEL_IN_PROGRESS", "the run arriving meanwhile cancels it, and no retry runs"],
  ] as const)("%s - a run waiting out a retry backoff keeps its place: %s", async (strategy, _outcome) => {
    const { engine, tj } = await setup();
    const probe = new ConcurrencyProbe();
    const flaky = tj.task({
      name: `flaky-${strategy}`,
      retries: 1,
      backoff: { factor: 2, maxSeconds: 2 },
      concurrency: { expression: "input.key", maxRuns: 1, limitStrategy: strategy },
      fn: (input: { key: string; n: number }, ctx) =>
        probe.around(input.key, async () => {
          if (input.n === 1 && ctx.retryCount() === 0) throw new Error("first attempt fails");
          return { n: input.n, attempt: ctx.retryCount() };
        }),
    });
    const worker = await tj.worker("w", { workflows: [flaky], slots: 5 });
    await worker.start();
    const older = await flaky.runNoWait({ key: "k", n: 1 });
    // Its first attempt failed: the retry comes 2 s later.
    await eventually(async () => ((await historyTypes(tj, older.runId)).includes("TaskFailed") ? true : undefined));
    const newer = await flaky.runNoWait({ key: "k", n: 2 });
    const [olderOutcome, newerOutcome] = await Promise.all(
      [older, newer].map((r) => r.result().catch((e: unknown) => e)),
    );
    if (strategy === "CANCEL_NEWEST") {
      expect(newerOutcome).toBeInstanceOf(RunCancelledError);
      expect(olderOutcome).toEqual({ n: 1, attempt: 1 });
    } else {
      expect(olderOutcome).toBeInstanceOf(RunCancelledError);
      expect((olderOutcome as RunCancelledError).reason).toContain(`admits newer run ${newer.runId}`);
      expect(newerOutcome).toEqual({ n: 2, attempt: 0 });
    }
    // The older run's first attempt, then either its retry or the newer run: never both.
    expect(probe.starts).toHaveLength(2);
    expect(probe.maxByKey.get("k")).toBe(1);
    await tj.close();
    await engine.stop();
  });

  it.each([
    ["CANCEL_IN_PROGRESS", "the running one is cancelled"],
    ["CANCEL_NEWEST", "the new one is cancelled"],
  ] as const)(
    "%s - a run triggered while no engine leads meets its strategy once one does: %s",
    async (strategy, _what) => {
      const namespace = uniqueNamespace();
      let engine = await startEngine(nats.url, { namespaces: [namespace] });
      const tj = await connectClient(nats.url, { namespace });
      const probe = new ConcurrencyProbe();
      const held = tj.task({
        name: `held-${strategy}`,
        concurrency: { expression: "input.key", maxRuns: 1, limitStrategy: strategy },
        fn: (input: { key: string; n: number }, ctx) =>
          probe.around(input.key, async () => {
            await new Promise<void>((resolve) => {
              const timer = setTimeout(resolve, input.n === 1 ? 20_000 : 10);
              ctx.abortController.signal.addEventListener("abort", () => {
                clearTimeout(timer);
                resolve();
              });
            });
            return { n: input.n };
          }),
      });
      const worker = await tj.worker("w", { workflows: [held], slots: 5 });
      await worker.start();
      const first = await held.runNoWait({ key: "k", n: 1 });
      await eventually(async () => ((await first.status()) === "RUNNING" ? true : undefined));
      await engine.stop();
      const second = await held.runNoWait({ key: "k", n: 2 });
      engine = await startEngine(nats.url, { namespaces: [namespace] });
      const [firstOutcome, secondOutcome] = await Promise.all(
        [first, second].map((r) => r.result({ timeoutMs: 15_000 }).catch((e: unknown) => e)),
      );
      if (strategy === "CANCEL_IN_PROGRESS") {
        expect(firstOutcome).toBeInstanceOf(RunCancelledError);
        expect(secondOutcome).toEqual({ n: 2 });
      } else {
        expect(secondOutcome).toBeInstanceOf(RunCancelledError);
        await first.cancel();
      }
      expect(probe.maxByKey.get("k")).toBe(1);
      await worker.stop();
      await tj.close();
      await engine.stop();
    },
  );

  it("CANCEL_IN_PROGRESS - a run arriving as an older one fails toward a quick retry: the newer completes, the older is cancelled, never both", async () => {
    const { engine, tj, namespace } = await setup();
    const other = await connectClient(nats.url, { namespace });
    const task = tj.task({
      name: "quick-retry",
      retries: 2, // no backoff: the retry comes 100 ms later
      concurrency: { expression: "input.key", maxRuns: 1, limitStrategy: "CANCEL_IN_PROGRESS" },
      fn: async (input: { key: string; first: boolean }, ctx) => {
        if (input.first && ctx.retryCount() === 0) {
          // The newer run arrives as this attempt fails.
          await other.runNoWait("quick-retry", { key: input.key, first: false });
          throw new Error("fails once");
        }
        return { first: input.first };
      },
    });
    await (await tj.worker("w", { workflows: [task], slots: 10 })).start();
    for (let i = 0; i < 8; i++) {
      const key = `k${i}`;
      const older = await task.runNoWait({ key, first: true });
      const newer = await eventually(async () => {
        const runs = await tj.runs.list({ taskName: "quick-retry" });
        return runs.find((r) => r.runId !== older.runId && r.input.key === key);
      });
      const [a, b] = await Promise.all(
        [older.runId, newer.runId].map((id) =>
          tj
            .ref(id)
            .result({ timeoutMs: 10_000 })
            .catch((e: unknown) => e),
        ),
      );
      expect(b, key).toEqual({ first: false });
      expect(a, key).toBeInstanceOf(RunCancelledError);
    }
    await other.close();
    await tj.close();
    await engine.stop();
  });

  it("shared key - two tasks naming the same rule key never overlap; the global expression caps a task", async () => {
    const { engine, tj } = await setup();
    const probe = new ConcurrencyProbe();
    const rule = { expression: "'db'", maxRuns: 1, key: "migrations" };
    const a = tj.task({
      name: "migrate-a",
      concurrency: rule,
      fn: () => probe.around("db", () => sleep(5).then(() => ({}))),
    });
    const b = tj.task({
      name: "migrate-b",
      concurrency: rule,
      fn: () => probe.around("db", () => sleep(5).then(() => ({}))),
    });
    const capped = tj.task({
      name: "global",
      concurrency: [
        { expression: "'global'", maxRuns: 3 },
        { expression: "input.user", maxRuns: 1 },
      ],
      fn: (input: { user: string }) =>
        probe.around("global", () => probe.around(input.user, () => sleep(5).then(() => ({})))),
    });
    const worker = await tj.worker("w", { workflows: [a, b, capped], slots: 20 });
    await worker.start();
    const runs = [
      ...Array.from({ length: 30 }, (_, i) => (i % 2 ? a : b).runNoWait({})),
      ...Array.from({ length: 60 }, (_, i) => capped.runNoWait({ user: `u${i % 6}` })),
    ];
    await Promise.all((await Promise.all(runs)).map((r) => r.result()));
    expect(probe.maxByKey.get("db")).toBe(1);
    expect(probe.maxByKey.get("global")).toBe(3);
    for (let u = 0; u < 6; u++) expect(probe.maxByKey.get(`u${u}`)).toBe(1);
    await tj.close();
    await engine.stop();
  });

  it("bad rules - shapes are refused when declared, expressions that do not compile when the worker registers", async () => {
    const { engine, tj } = await setup();
    expect(() =>
      tj.task({ name: "x", concurrency: { expression: "input.k", maxRuns: 0 }, fn: async () => ({}) }),
    ).toThrow(/concurrency\[0\]\.maxRuns/);
    expect(() =>
      tj.task({
        name: "x",
        concurrency: { expression: "input.k", limitStrategy: "DROP" as "CANCEL_NEWEST" },
        fn: async () => ({}),
      }),
    ).toThrow(ValidationError);
    const bad = tj.task({ name: "bad", concurrency: { expression: "input.(" }, fn: async () => ({}) });
    const worker = await tj.worker("w", { workflows: [bad] });
    const err = await worker.start().catch((e) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).message).toMatch(/bad\.concurrency\[0\]\.expression.*CEL.*input\.\(/);
    await tj.close();
    await engine.stop();
  });

  it("key errors - a run whose expression cannot be evaluated on its input fails at once, saying why", async () => {
    const { engine, tj } = await setup();
    const keyed = tj.task({
      name: "keyed",
      concurrency: { expression: "input.tenant" },
      fn: async () => ({ ok: true }),
    });
    const worker = await tj.worker("w", { workflows: [keyed] });
    await worker.start();
    const ref = await keyed.runNoWait({ other: 1 });
    await expect(ref.result()).rejects.toThrow(
      /concurrency\[0\]\.expression "input\.tenant" failed: No such key: tenant/,
    );
    expect(await keyed.run({ tenant: "t1" })).toEqual({ ok: true });
    await tj.close();
    await engine.stop();
  });
});
