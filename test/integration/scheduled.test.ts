import { RunCancelledError, RunNotScheduledError, RunStatuses, ValidationError } from "@taskjet/sdk";
import { describe, expect, it } from "vitest";
import { sleep } from "../harness/concurrency-probe.js";
import { eventually, historyEvents, startEngine, startNamespace, startOf, useNatsServer } from "../harness/fixtures.js";

const nats = useNatsServer();

describe("scheduled runs", () => {
  it("schedule - SCHEDULED from the start, queued by an engine timer at its time, then run", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const startedAt: number[] = [];
    const remind = tj.task({
      name: "remind",
      fn: async (input: { who: string }) => {
        startedAt.push(Date.now());
        return { reminded: input.who };
      },
    });
    const worker = await tj.worker("w", { workflows: [remind] });
    await worker.start();
    const at = new Date(Date.now() + 1500);
    const ref = await remind.schedule(at, { who: "ana" });
    const state = await tj.runs.get(ref.runId);
    expect(state.status).toBe(RunStatuses.scheduled);
    expect(state.scheduledAt).toBe(at.toISOString());
    expect(state.trigger.kind).toBe("schedule");
    expect(await ref.result()).toEqual({ reminded: "ana" });
    expect(startedAt[0]).toBeGreaterThanOrEqual(at.getTime());
    expect((startedAt[0] as number) - at.getTime()).toBeLessThan(1000);
    // A short attempt: its result carries its start, at or after the scheduled time.
    const h = await historyEvents(tj, ref.runId);
    expect(h.map((e) => e.type)).toEqual(["RunCreated", "RunDue", "TaskCompleted"]);
    expect(Date.parse(startOf(h[2])?.at as string)).toBeGreaterThanOrEqual(at.getTime());
    // In the past: at once. delay(): relative.
    const past = await remind.schedule(new Date(Date.now() - 60_000), { who: "bo" });
    expect(await past.result({ timeoutMs: 5000 })).toEqual({ reminded: "bo" });
    const t0 = Date.now();
    expect(await (await remind.delay("700ms", { who: "cy" })).result()).toEqual({ reminded: "cy" });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(700);
    await tj.close();
    await engine.stop();
  });

  it("scheduled - list, update (moves the time) and delete (never runs); bad times are refused", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    let calls = 0;
    const job = tj.task({
      name: "job",
      fn: async () => {
        calls++;
        return {};
      },
    });
    const worker = await tj.worker("w", { workflows: [job] });
    await worker.start();
    const later = await job.schedule(new Date(Date.now() + 60_000), {});
    const doomed = await job.schedule(new Date(Date.now() + 2_000), {});
    const listed = await eventually(async () => {
      const runs = await tj.scheduled.list({ taskName: "job" });
      return runs.length === 2 ? runs : undefined;
    });
    expect(listed.map((r) => r.runId)).toEqual([doomed.runId, later.runId]); // soonest first
    expect(await tj.scheduled.delete(doomed.runId)).toBe(true);
    await expect(doomed.result()).rejects.toBeInstanceOf(RunCancelledError);
    const moved = new Date(Date.now() + 800);
    expect((await tj.scheduled.update(later.runId, { triggerAt: moved })).scheduledAt).toBe(moved.toISOString());
    await later.result();
    expect(calls).toBe(1);
    const h = await historyEvents(tj, later.runId);
    expect(h.map((e) => e.type)).toEqual(["RunCreated", "RunRescheduled", "RunDue", "TaskCompleted"]);
    expect(Date.parse(startOf(h[3])?.at as string)).toBeGreaterThanOrEqual(moved.getTime());
    await expect(tj.scheduled.update(later.runId, { triggerAt: new Date() })).rejects.toBeInstanceOf(
      RunNotScheduledError,
    );
    await expect(tj.scheduled.update(doomed.runId, { triggerAt: new Date() })).rejects.toThrow(/is CANCELLED/);
    await expect(tj.scheduled.update(later.runId, { triggerAt: new Date(), at: 1 } as never)).rejects.toThrow(
      /^at: is not a schedule change \(triggerAt\), got 1$/,
    );
    await expect(job.schedule("not a date", {})).rejects.toThrow(ValidationError);
    await expect(job.schedule(new Date(Date.now() + 40 * 86_400_000), {})).rejects.toThrow(
      /at: must be within 30 days/,
    );
    await expect(job.delay("soon", {})).rejects.toThrow(/duration/);
    // Days, as the CLI's --delay takes them.
    const tomorrow = await job.delay("1d", {});
    const inHours = (Date.parse((await tj.runs.get(tomorrow.runId)).scheduledAt as string) - Date.now()) / 3_600_000;
    expect(inHours).toBeGreaterThan(23.9);
    expect(await tj.scheduled.delete(tomorrow.runId)).toBe(true);
    await tj.close();
    await engine.stop();
  });

  it("scheduled - delete racing the engine at the run's time: true only for a run that never runs, else RunNotScheduledError; list checks its options", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const ran = new Set<string>();
    const job = tj.task({
      name: "race",
      fn: async (_: object, ctx) => {
        ran.add(ctx.workflowRunId());
        await sleep(50);
        return {};
      },
    });
    const worker = await tj.worker("w", { workflows: [job], slots: 100 });
    await worker.start();
    const at = Date.now() + 1500;
    const refs = await Promise.all(Array.from({ length: 60 }, () => job.schedule(new Date(at), {})));
    await sleep(at - 60 - Date.now());
    const outcomes = await Promise.all(
      refs.map(async (ref, i) => {
        await sleep(i * 2);
        return tj.scheduled.delete(ref.runId).then(
          (deleted) => (deleted ? "deleted" : "false"),
          (err) => (err instanceof RunNotScheduledError ? "started" : String(err)),
        );
      }),
    );
    for (const [i, ref] of refs.entries()) {
      const outcome = outcomes[i];
      if (outcome === "deleted") {
        await expect(ref.result({ timeoutMs: 5000 })).rejects.toBeInstanceOf(RunCancelledError);
      } else {
        expect(outcome, ref.runId).toBe("started");
        await ref.result({ timeoutMs: 5000 });
      }
    }
    await sleep(200);
    for (const [i, ref] of refs.entries())
      expect(ran.has(ref.runId), `${ref.runId} ${outcomes[i]}`).toBe(outcomes[i] === "started");
    await expect(tj.scheduled.list({ limit: -1 })).rejects.toThrow(/limit: must be a positive integer, got -1/);
    await expect(tj.scheduled.list({ limit: 2.5 })).rejects.toThrow(ValidationError);
    await expect(tj.scheduled.list({ bogus: 1 } as never)).rejects.toThrow(/bogus/);
    await tj.close();
    await engine.stop();
  });

  it("scheduled - a time that passes while no engine runs fires when one starts; the engine's timer fires on time", async () => {
    const { engine, tj, namespace } = await startNamespace(nats.url);
    const ran: Record<string, number> = {};
    const tick = tj.task({
      name: "tick",
      fn: async (input: { id: string }) => {
        ran[input.id] = Date.now();
        return {};
      },
    });
    const worker = await tj.worker("w", { workflows: [tick] });
    await worker.start();
    const missed = await tick.schedule(new Date(Date.now() + 1000), { id: "missed" });
    await engine.stop();
    await sleep(1500);
    expect(ran.missed).toBeUndefined();
    const restarted = Date.now();
    const engine2 = await startEngine(nats.url, { namespaces: [namespace] });
    const onTime = new Date(Date.now() + 1500);
    const later = await tick.schedule(onTime, { id: "later" });
    await missed.result({ timeoutMs: 5000 });
    expect((ran.missed as number) - restarted).toBeLessThan(2000);
    await later.result({ timeoutMs: 5000 });
    expect((ran.later as number) - onTime.getTime()).toBeGreaterThanOrEqual(0);
    expect((ran.later as number) - onTime.getTime()).toBeLessThan(1000);
    await tj.close();
    await engine2.stop();
  });
});
