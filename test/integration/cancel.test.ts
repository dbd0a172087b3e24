import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { Buckets, keys } from "@taskjet/schemas";
import { AttemptNotCurrentError, RunCancelledError, ValidationError } from "@taskjet/sdk";
import { describe, expect, it } from "vitest";
import {
  connectClient,
  eventually,
  historyTypes,
  startEngine,
  uniqueNamespace,
  useNatsServer,
} from "../harness/fixtures.js";

const nats = useNatsServer();

describe("cancellation", () => {
  it("cancel - a queued run leaves the queue and never runs; waiters get RunCancelledError", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const ref = await tj.runNoWait("later", { n: 1 });
    const waiting = ref.result().catch((e: unknown) => e);
    expect(await ref.cancel("not needed")).toBe(true);
    expect(await ref.cancel()).toBe(false); // already finished (cancelled)
    const err = await waiting;
    expect(err).toBeInstanceOf(RunCancelledError);
    expect((err as RunCancelledError).reason).toBe("not needed");
    let ran = 0;
    const later = tj.task({
      name: "later",
      fn: async () => {
        ran++;
        return {};
      },
    });
    const worker = await tj.worker("w", { workflows: [later] });
    await worker.start();
    const other = await later.run({ n: 2 }); // the queue moves on; the cancelled run never runs
    expect(other).toEqual({});
    expect(ran).toBe(1);
    expect(await tj.runs.get(ref.runId)).toMatchObject({ status: "CANCELLED", tasks: [{ status: "CANCELLED" }] });
    expect(await historyTypes(tj, ref.runId)).toEqual(["RunCreated", "RunCancelled"]);
    await tj.close();
    await engine.stop();
  });

  it("cancel - a reason the engine would refuse is refused before anything is written, and the run goes on", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const ref = await tj.runNoWait("later", {});
    for (const reason of ["x".repeat(201), "", 42, { why: 1 }]) {
      const err = await ref.cancel(reason as never).catch((e: unknown) => e);
      expect(err, String(reason)).toBeInstanceOf(ValidationError);
      expect((err as ValidationError).field).toBe("reason");
      await expect(tj.runs.cancel({ ids: [ref.runId], reason: reason as never })).rejects.toThrow(/reason: must be/);
    }
    // Neither ids nor filters: refused, not read as "every unfinished run".
    await expect(tj.runs.cancel({} as never)).rejects.toThrow(/filters: give ids, or filters/);
    await expect(tj.runs.cancel(undefined as never)).rejects.toThrow(/options: must be an object/);
    await expect(tj.runs.replay(undefined as never)).rejects.toThrow(/options: must be an object/);
    expect(await historyTypes(tj, ref.runId)).toEqual(["RunCreated"]);
    const later = tj.task({ name: "later", fn: async () => ({ ran: true }) });
    const worker = await tj.worker("w", { workflows: [later] });
    await worker.start();
    expect(await ref.result()).toEqual({ ran: true });
    await tj.close();
    await engine.stop();
  });

  it("cancel - a running task's signal aborts and ctx.cancelled turns true; its late result is ReportIgnored", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    let sawCancel = false;
    let started = false;
    let refused: unknown;
    const slow = tj.task({
      name: "slow",
      fn: async (_input, ctx) => {
        started = true;
        await new Promise((resolve) => ctx.abortController.signal.addEventListener("abort", resolve));
        sawCancel = ctx.cancelled;
        // What the attempt records from now on is refused, with a typed error.
        refused = await ctx.refreshTimeout("1m").catch((e: unknown) => e);
        return { finished: true }; // a result after the cancellation
      },
    });
    const worker = await tj.worker("w", { workflows: [slow] });
    await worker.start();
    const ref = await slow.runNoWait({});
    await eventually(() => (started ? true : undefined));
    // Running as the log says (its TaskStarted recorded), not only running on its worker.
    await eventually(async () => ((await ref.status()) === "RUNNING" ? true : undefined));
    const { cancelled } = await tj.runs.cancel({ ids: [ref.runId] });
    expect(cancelled).toEqual([ref.runId]);
    await expect(ref.result()).rejects.toBeInstanceOf(RunCancelledError);
    await eventually(() => (sawCancel ? true : undefined));
    const h = await eventually(async () => {
      const t = await historyTypes(tj, ref.runId);
      return t.includes("ReportIgnored") ? t : undefined;
    });
    expect(h).toEqual(["RunCreated", "TaskStarted", "RunCancelled", "ReportIgnored"]);
    expect((await tj.runs.get(ref.runId)).status).toBe("CANCELLED");
    expect(refused).toBeInstanceOf(AttemptNotCurrentError);
    expect(refused).toMatchObject({ code: "ATTEMPT_NOT_CURRENT", message: expect.stringMatching(/CANCELLED/) });
    await tj.close();
    await engine.stop();
  });

  it("cancel - while no engine runs: once one starts, the running task's signal aborts and its child runs are cancelled", async () => {
    const namespace = uniqueNamespace();
    let engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const aborted: string[] = [];
    const started = new Set<string>();
    const waitForAbort = async (name: string, signal: AbortSignal) => {
      started.add(name);
      await new Promise((resolve) => signal.addEventListener("abort", resolve));
      aborted.push(name);
      return {};
    };
    const child = tj.task({
      name: "away-child",
      fn: (_input, ctx) => waitForAbort("child", ctx.abortController.signal),
    });
    const alone = tj.task({
      name: "away-alone",
      fn: (_input, ctx) => waitForAbort("alone", ctx.abortController.signal),
    });
    const parent = tj.task({
      name: "away-parent",
      fn: async (_input, ctx) => {
        await child.runNoWait({});
        return waitForAbort("parent", ctx.abortController.signal);
      },
    });
    const worker = await tj.worker("w", { workflows: [child, alone, parent], slots: 5 });
    await worker.start();
    const aloneRef = await alone.runNoWait({});
    const parentRef = await parent.runNoWait({});
    await eventually(() => (started.size === 3 ? true : undefined));
    // Recorded as running (their starts stored), then the engine goes away and both runs are cancelled meanwhile.
    await eventually(async () =>
      (await aloneRef.status()) === "RUNNING" && (await parentRef.status()) === "RUNNING" ? true : undefined,
    );
    await engine.stop();
    expect(await aloneRef.cancel("while away")).toBe(true);
    expect(await parentRef.cancel("while away")).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(aborted).toEqual([]);
    engine = await startEngine(nats.url, { namespaces: [namespace] });
    await eventually(() => (aborted.length === 3 ? true : undefined));
    expect(aborted.sort()).toEqual(["alone", "child", "parent"]);
    const [childRun] = await tj.runs.list({ taskName: "away-child" });
    expect(await tj.runs.get(childRun?.runId as string)).toMatchObject({
      status: "CANCELLED",
      error: { message: expect.stringMatching(/^parent run .* cancelled: while away/) },
    });
    await worker.stop();
    await tj.close();
    await engine.stop();
  });

  it("cancel - a task that ignores its signal is abandoned after the grace period and its slot freed", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    let release: () => void = () => {};
    const stubborn = tj.task({
      name: "stubborn",
      fn: async () => {
        await new Promise<void>((r) => {
          release = r;
        });
        return {};
      },
    });
    const quick = tj.task({ name: "quick", fn: async () => ({ quick: true }) });
    const worker = await tj.worker("w", { workflows: [stubborn, quick], slots: 1, cancelGraceMs: 300 });
    await worker.start();
    const ref = await stubborn.runNoWait({});
    await eventually(() => (worker.runningCount === 1 ? true : undefined));
    await ref.cancel();
    // With its only slot taken by the abandoned task, the next run starts once the grace period has passed.
    const t0 = Date.now();
    expect(await quick.run({})).toEqual({ quick: true });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    release();
    await tj.close();
    await engine.stop();
  });

  it("cancel - by filters cancels the matching unfinished runs only", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, {
      namespaces: [namespace],
      projectionActiveDelayMs: 0,
      projectionQueuedDelayMs: 0,
    });
    const tj = await connectClient(nats.url, { namespace });
    const a = await tj.runNoWait("a", {}, { additionalMetadata: { tenant: "x" } });
    const b = await tj.runNoWait("a", {}, { additionalMetadata: { tenant: "y" } });
    const c = await tj.runNoWait("b", {}, { additionalMetadata: { tenant: "x" } });
    await eventually(async () => ((await tj.runs.list()).length === 3 ? true : undefined));
    const future = new Date(Date.now() + 60_000);
    expect((await tj.runs.cancel({ filters: { taskName: "a", since: future } })).cancelled).toEqual([]);
    expect((await tj.runs.cancel({ filters: { taskName: "a", until: new Date(0).toISOString() } })).cancelled).toEqual(
      [],
    );
    const result = await tj.runs.cancel({ filters: { taskName: "a", additionalMetadata: { tenant: "x" } } });
    expect(result.cancelled).toEqual([a.runId]);
    expect((await tj.runs.get(b.runId)).status).toBe("QUEUED");
    expect((await tj.runs.get(c.runId)).status).toBe("QUEUED");
    await expect(tj.runs.cancel({ ids: ["bad.id"] })).rejects.toThrow(ValidationError);
    await expect(tj.runs.cancel({ filters: { since: "yesterday-ish" } })).rejects.toThrow(/filters.since/);
    // A misspelt or empty filter is refused, not read as no filter (which would cancel every unfinished run).
    await expect(tj.runs.cancel({ filters: { task: "a" } as never })).rejects.toThrow(
      /filters.task: is not a run filter/,
    );
    await expect(tj.runs.cancel({ filters: { taskName: "" } })).rejects.toThrow(/filters.taskName: must be 1-128/);
    await expect(tj.runs.replay({ filters: { taskName: "bad name!" } })).rejects.toThrow(
      /filters.taskName: must be 1-128 .*, got "bad name!"/,
    );
    await expect(tj.runs.replay({ filters: { status: ["FAILED"] } as never })).rejects.toThrow(/filters.status/);
    await expect(tj.runs.list({ status: ["QUEUED"] } as never)).rejects.toThrow(/status: is not a list option/);
    expect((await tj.runs.get(b.runId)).status).toBe("QUEUED");
    // By ids: each once, and one naming no run does not keep the others from being cancelled.
    // The projection (stopped with its engine) still has them QUEUED: a list folds the log's events after it.
    await engine.stop();
    expect(await tj.runs.cancel({ ids: [b.runId, "no-such-run", b.runId, c.runId] })).toEqual({
      cancelled: [b.runId, c.runId],
      alreadyFinished: [],
      notFound: ["no-such-run"],
    });
    const listed = new Map((await tj.runs.list()).map((r) => [r.runId, r.status]));
    expect([listed.get(a.runId), listed.get(b.runId), listed.get(c.runId)]).toEqual([
      "CANCELLED",
      "CANCELLED",
      "CANCELLED",
    ]);
    expect((await tj.runs.list({ statuses: ["QUEUED"] })).map((r) => r.runId)).toEqual([]);
    await tj.close();
  });

  it("list, cancel - by filters they find the runs created after the projection's checkpoint, not written yet", async () => {
    const namespace = uniqueNamespace();
    // Defaults: a run that only waits for a slot is written to the projection after 10 s.
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const a1 = await tj.runNoWait("a", {});
    const a2 = await tj.runNoWait("a", {});
    const b = await tj.runNoWait("b", {});
    const nc = await connect({ servers: nats.url });
    const projection = await new Kvm(nc).open(Buckets.runs);
    expect(await projection.get(keys.run(namespace, a1.runId))).toBeNull();
    expect((await tj.runs.list()).map((s) => [s.runId, s.status])).toEqual([
      [b.runId, "QUEUED"],
      [a2.runId, "QUEUED"],
      [a1.runId, "QUEUED"],
    ]);
    // As the log has them: queued, not running.
    expect((await tj.runs.cancel({ filters: { statuses: ["RUNNING"] } })).cancelled).toEqual([]);
    const result = await tj.runs.cancel({ filters: { taskName: "a" } });
    expect(result.cancelled.sort()).toEqual([a1.runId, a2.runId].sort());
    expect((await tj.runs.get(a1.runId)).status).toBe("CANCELLED");
    expect((await tj.runs.get(b.runId)).status).toBe("QUEUED");
    await nc.close();
    await tj.close();
    await engine.stop();
  });
});
