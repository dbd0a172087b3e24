import { RateLimitedError, ValidationError } from "@taskjet/sdk";
import { describe, expect, it } from "vitest";
import { ConcurrencyProbe } from "../harness/concurrency-probe.js";
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

describe("rate limits", () => {
  it("static - 200 runs under 20/s take at least 9.5 s and no 1 s window sees more than 20 starts", async () => {
    const { engine, tj } = await setup();
    await tj.ratelimits.upsert({ key: "partner-api", limit: 20, duration: "SECOND" });
    expect(await tj.ratelimits.get("partner-api")).toEqual({ key: "partner-api", limit: 20, duration: "SECOND" });
    const probe = new ConcurrencyProbe();
    const call = tj.task({
      name: "call-partner",
      rateLimits: [{ staticKey: "partner-api", units: 1 }],
      fn: () => probe.around("partner", async () => ({})),
    });
    const worker = await tj.worker("w", { workflows: [call], slots: 100 });
    await worker.start();
    const t0 = performance.now();
    const refs = await Promise.all(Array.from({ length: 200 }, (_, i) => call.runNoWait({ i })));
    await Promise.all(refs.map((r) => r.result()));
    const elapsed = performance.now() - t0;
    expect(elapsed).toBeGreaterThanOrEqual(9500);
    expect(probe.maxInWindow(1000)).toBeLessThanOrEqual(20);
    // Not slower than it must be: the limit is used.
    expect(elapsed).toBeLessThan(13_000);
    expect(await historyTypes(tj, refs[199]?.runId as string)).toContain("TaskWaiting");
    await tj.close();
    await engine.stop();
  }, 30_000);

  it("restarts - what one engine admitted counts for the next: 2 per minute admit no more across restarts, static and dynamic", async () => {
    const namespace = uniqueNamespace();
    let engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    await tj.ratelimits.upsert({ key: "quota", limit: 2, duration: "MINUTE" });
    const starts: string[] = [];
    const call = tj.task({
      name: "call",
      rateLimits: [{ staticKey: "quota", units: 1 }],
      fn: async (input: { n: number }) => {
        starts.push(`static${input.n}`);
        return {};
      },
    });
    const perUser = tj.task({
      name: "per-user",
      rateLimits: [{ dynamicKey: "input.user", units: 1, limit: 2, duration: "MINUTE" }],
      fn: async (input: { user: string; n: number }) => {
        starts.push(`${input.user}${input.n}`);
        return {};
      },
    });
    const worker = await tj.worker("w", { workflows: [call, perUser] });
    await worker.start();
    await call.runNoWait(Array.from({ length: 6 }, (_, n) => ({ n })));
    await perUser.runNoWait(Array.from({ length: 6 }, (_, n) => ({ user: "u", n })));
    // Paced one every 30 s: the first of each key starts at once, the next one not within this test.
    await eventually(() => (starts.length >= 2 ? true : undefined));
    for (let restart = 0; restart < 3; restart++) {
      await engine.stop();
      engine = await startEngine(nats.url, { namespaces: [namespace] });
      await new Promise((r) => setTimeout(r, 700));
    }
    expect(starts.sort()).toEqual(["static0", "u0"]);
    await tj.close();
    await engine.stop();
  });

  it("dynamic - a limit per user: one user's backlog never delays another user", async () => {
    const { engine, tj } = await setup();
    const probe = new ConcurrencyProbe();
    const send = tj.task({
      name: "send",
      rateLimits: [{ dynamicKey: "input.user", units: 1, limit: 5, duration: "SECOND" }],
      fn: (input: { user: string }) => probe.around(input.user, async () => ({ at: performance.now() })),
    });
    const worker = await tj.worker("w", { workflows: [send], slots: 50 });
    await worker.start();
    const heavy = await Promise.all(Array.from({ length: 20 }, () => send.runNoWait({ user: "heavy" })));
    const t0 = performance.now();
    const light = await Promise.all(Array.from({ length: 5 }, () => send.runNoWait({ user: "light" })));
    const lightDone = await Promise.all(light.map((r) => r.result()));
    // Five units of its own: the light user's runs are paced within its first second, not after heavy's 4 s.
    expect(Math.max(...lightDone.map((o) => (o.at as number) - t0))).toBeLessThan(2000);
    await Promise.all(heavy.map((r) => r.result()));
    expect(probe.maxInWindow(1000, "heavy")).toBeLessThanOrEqual(5);
    expect(probe.maxInWindow(1000, "light")).toBeLessThanOrEqual(5);
    await tj.close();
    await engine.stop();
  }, 30_000);

  it("dynamic - a value's budget is its declared limit's: another task's limit on the same value, or a static limit named like the value, is another budget", async () => {
    const { engine, tj } = await setup();
    await tj.ratelimits.upsert({ key: "same", limit: 1, duration: "MINUTE" });
    const probe = new ConcurrencyProbe();
    const slow = tj.task({
      name: "slow-user",
      rateLimits: [{ dynamicKey: "input.user", units: 1, limit: 1, duration: "MINUTE" }],
      fn: () => probe.around("slow", async () => ({})),
    });
    const fast = tj.task({
      name: "fast-user",
      rateLimits: [{ dynamicKey: "input.user", units: 1, limit: 100, duration: "SECOND" }],
      fn: () => probe.around("fast", async () => ({})),
    });
    const worker = await tj.worker("w", { workflows: [slow, fast], slots: 20 });
    await worker.start();
    // The value "same" is also a static limit's name (1 a minute): neither that nor slow-user's 1 a minute holds fast-user.
    const slowRefs = await slow.runNoWait([{ user: "same" }, { user: "same" }]);
    await slowRefs[0]?.result();
    const fastRefs = await fast.runNoWait(Array.from({ length: 10 }, () => ({ user: "same" })));
    await Promise.all(fastRefs.map((r) => r.result({ timeoutMs: 5000 })));
    expect(probe.starts.filter((s) => s.key === "fast")).toHaveLength(10);
    // And fast-user's ten did not use slow-user's budget: its second run still waits for the next minute.
    expect(await slowRefs[1]?.status()).toBe("QUEUED");
    await tj.close();
    await engine.stop();
  }, 30_000);

  it("registration - units above the limit and unknown keys: refused at registration, or waiting until defined", async () => {
    const { engine, tj } = await setup();
    expect(() =>
      tj.task({
        name: "x",
        rateLimits: [{ dynamicKey: "input.u", units: 5, limit: 2, duration: "MINUTE" }],
        fn: async () => ({}),
      }),
    ).toThrow(/rateLimits\[0\]\.units/);
    expect(() =>
      tj.task({
        name: "x",
        rateLimits: [{ dynamicKey: "input.u", limit: 2, duration: "FORTNIGHT" as "DAY" }],
        fn: async () => ({}),
      }),
    ).toThrow(ValidationError);
    await expect(tj.ratelimits.upsert({ key: "k", limit: 0, duration: "SECOND" })).rejects.toThrow(/limit/);
    await tj.ratelimits.upsert({ key: "tiny", limit: 2, duration: "MINUTE" });
    const greedy = tj.task({ name: "greedy", rateLimits: [{ staticKey: "tiny", units: 3 }], fn: async () => ({}) });
    const w1 = await tj.worker("w1", { workflows: [greedy] });
    const err = await w1.start().catch((e) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as Error).message).toMatch(/greedy\.rateLimits\[0\]\.units.*limit of "tiny"/);
    // A key nobody defined yet: the run waits, says why, and runs once the limit exists.
    const later = tj.task({ name: "later", rateLimits: [{ staticKey: "defined-later" }], fn: async () => ({ ok: 1 }) });
    const w2 = await tj.worker("w2", { workflows: [later] });
    await w2.start();
    const ref = await later.runNoWait({});
    await eventually(async () => ((await tj.runs.get(ref.runId)).tasks[0]?.waiting ? true : undefined));
    expect((await tj.runs.get(ref.runId)).tasks[0]?.waiting?.detail).toMatch(/defined-later.*not defined/);
    await tj.ratelimits.upsert({ key: "defined-later", limit: 10, duration: "SECOND" });
    expect(await ref.result()).toEqual({ ok: 1 });
    await tj.close();
    await engine.stop();
  });

  it("rateLimited - an upstream 429 pauses the key until retryAfter and re-queues the run without using a retry", async () => {
    const { engine, tj } = await setup();
    const starts: { run: number; attempt: number; at: number }[] = [];
    const upstream = tj.task({
      name: "upstream",
      retries: 0,
      fn: async (input: { run: number }, ctx) => {
        starts.push({ run: input.run, attempt: ctx.attempt(), at: performance.now() });
        if (input.run === 1 && ctx.attempt() === 0) ctx.rateLimited("1500ms");
        return { attempt: ctx.attempt(), retry: ctx.retryCount() };
      },
    });
    const keyed = tj.task({
      name: "keyed",
      rateLimits: [{ staticKey: "vendor" }],
      fn: async (input: { run: number }, ctx) => {
        starts.push({ run: input.run, attempt: ctx.attempt(), at: performance.now() });
        if (input.run === 10 && ctx.attempt() === 0) throw new RateLimitedError({ key: "vendor", retryAfter: 1000 });
        return {};
      },
    });
    await tj.ratelimits.upsert({ key: "vendor", limit: 1000, duration: "SECOND" });
    const worker = await tj.worker("w", { workflows: [upstream, keyed], slots: 10 });
    await worker.start();
    const first = await upstream.runNoWait({ run: 1 });
    await eventually(() => (starts.length > 0 ? true : undefined));
    const limitedAt = performance.now();
    const second = await upstream.runNoWait({ run: 2 });
    expect(await first.result()).toEqual({ attempt: 1, retry: 0 }); // a second attempt, not a retry
    await second.result();
    // The task had no rate limits of its own: the whole task paused, the second run included.
    for (const s of starts.filter((x) => x.run === 2 || x.attempt === 1))
      expect(s.at - limitedAt).toBeGreaterThan(1200);
    // Short attempts: each result carries its start; read as facts, each attempt started, then ended.
    const history = await historyTypes(tj, first.runId, { attempts: true });
    expect(history).toEqual(["RunCreated", "TaskRateLimited0", "TaskWaiting1", "TaskCompleted1"]);
    expect(await historyTypes(tj, first.runId, { attempts: true, expand: true })).toEqual([
      "RunCreated",
      "TaskStarted0",
      "TaskRateLimited0",
      "TaskWaiting1",
      "TaskStarted1",
      "TaskCompleted1",
    ]);
    const state = await tj.runs.get(first.runId);
    expect(state.tasks[0]?.requeues).toBe(1);

    const a = await keyed.runNoWait({ run: 10 });
    await eventually(() => (starts.some((s) => s.run === 10) ? true : undefined));
    const pausedAt = performance.now();
    const b = await keyed.runNoWait({ run: 11 });
    await Promise.all([a.result(), b.result()]);
    const bStart = starts.find((s) => s.run === 11)?.at as number;
    expect(bStart - pausedAt).toBeGreaterThan(700);
    await tj.close();
    await engine.stop();
  });
});
