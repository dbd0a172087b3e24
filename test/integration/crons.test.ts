import { Kvm } from "@nats-io/kv";
import { Buckets, keys } from "@taskjet/schemas";
import { type CronSpec, type Taskjet, ValidationError } from "@taskjet/sdk";
import { describe, expect, it } from "vitest";
import { sleep } from "../harness/concurrency-probe.js";
import { connectClient, eventually, startEngine, startNamespace, useNatsServer } from "../harness/fixtures.js";

const nats = useNatsServer();

/** The ticks of the runs a cron made, from the runs themselves. */
async function ticksOf(tj: Taskjet, runIds: Iterable<string>): Promise<string[]> {
  const ticks: string[] = [];
  for (const id of runIds) {
    const state = await tj.runs.get(id);
    expect(state.trigger.kind).toBe("cron");
    ticks.push(state.trigger.tick as string);
  }
  return ticks.sort();
}

describe("crons", () => {
  it("cron - every second for 10 s with two engine replicas: 10±1 runs, one per tick", async () => {
    const { engine, tj, namespace } = await startNamespace(nats.url);
    const replica = await startEngine(nats.url, { namespaces: [namespace] });
    const runs = new Set<string>();
    let executions = 0;
    const beat = tj.task({
      name: "beat",
      fn: async (_input, ctx) => {
        executions++;
        runs.add(ctx.workflowRunId());
        return {};
      },
    });
    const worker = await tj.worker("w", { workflows: [beat], slots: 10 });
    await worker.start();
    const def = await beat.cron("heartbeat", "* * * * * *", { from: "cron" });
    expect(def).toMatchObject({ name: "heartbeat", taskName: "beat", expression: "* * * * * *", source: "api" });
    await sleep(10_000);
    expect(await tj.crons.delete("heartbeat")).toBe(true);
    await sleep(1500);
    const count = runs.size;
    expect(count).toBeGreaterThanOrEqual(9);
    expect(count).toBeLessThanOrEqual(11);
    expect(executions).toBe(count);
    const ticks = await ticksOf(tj, runs);
    expect(new Set(ticks).size).toBe(ticks.length);
    expect(await tj.crons.get("heartbeat")).toBeUndefined();
    await sleep(1500);
    expect(runs.size).toBe(count); // deleted: no more ticks
    await tj.close();
    await replica.stop();
    await engine.stop();
  }, 30_000);

  it("onCrons - declared with the task, registered by the worker; bad expressions and zones are refused when declared", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const inputs: unknown[] = [];
    const tick = tj.task({
      name: "tick",
      onCrons: [{ expression: "* * * * * *", input: { source: "declared" } }],
      fn: async (input) => {
        inputs.push(input);
        return {};
      },
    });
    const worker = await tj.worker("w", { workflows: [tick] });
    await worker.start();
    await eventually(() => (inputs.length >= 2 ? true : undefined), 5000);
    expect(inputs[0]).toEqual({ source: "declared" });
    const [cron] = await tj.crons.list({ taskName: "tick" });
    expect(cron).toMatchObject({ taskName: "tick", source: "worker", expression: "* * * * * *" });
    await worker.stop();
    for (const [spec, message] of [
      ["61 * * * *", /bad\.onCrons\[0\]: is not a valid cron expression \(.*minute.*\), got "61 \* \* \* \*"/],
      ["* * *", /must have 5 fields \(6 with seconds first\), not 3/],
      ["0 0 30 2 *", /bad\.onCrons\[0\]: never fires: no date matches it, got "0 0 30 2 \*"/],
      [{ expression: "0 9 * * *", timezone: "Mars/Olympus" }, /bad\.onCrons\[0\]\.timezone: must be an IANA time zone/],
    ] as const) {
      let err: unknown;
      try {
        tj.task({ name: "bad", onCrons: [spec], fn: async () => ({}) });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as Error).message).toMatch(message);
    }
    await expect(tick.cron("x", "not a cron")).rejects.toThrow(ValidationError);
    await expect(tick.cron("bad name!", "* * * * *")).rejects.toThrow(/name/);
    await tj.close();
    await engine.stop();
  });

  it("cron - ticks missed while no engine ran are not backfilled; catchUp latest fires the last one", async () => {
    const { engine, tj, namespace } = await startNamespace(nats.url);
    const byCron = new Map<string, Set<string>>();
    const job = tj.task({
      name: "job",
      fn: async (input: { cron: string }, ctx) => {
        const set = byCron.get(input.cron) ?? new Set<string>();
        set.add(ctx.workflowRunId());
        byCron.set(input.cron, set);
        return {};
      },
    });
    const worker = await tj.worker("w", { workflows: [job], slots: 10 });
    await worker.start();
    await job.cron("plain", "* * * * * *", { cron: "plain" });
    await job.cron("latest", "* * * * * *", { cron: "latest" }, { catchUp: "latest" });
    await sleep(2500);
    await engine.stop();
    const down = Date.now();
    await sleep(3000);
    const up = Date.now();
    const engine2 = await startEngine(nats.url, { namespaces: [namespace] });
    await sleep(2500);
    await tj.crons.delete("plain");
    await tj.crons.delete("latest");
    await sleep(1000);
    const inGap = async (name: string) =>
      (await ticksOf(tj, byCron.get(name) ?? [])).filter((t) => {
        const ms = Date.parse(t);
        return ms > down + 1000 && ms < up - 1000;
      });
    expect(await inGap("plain")).toEqual([]);
    // The latest tick before the restart fired once; the ones before it did not.
    const latest = (await ticksOf(tj, byCron.get("latest") ?? [])).filter((t) => Date.parse(t) > down + 1000);
    const caughtUp = latest.filter((t) => Date.parse(t) < up);
    expect(caughtUp).toHaveLength(1);
    expect(Date.parse(caughtUp[0] as string)).toBeGreaterThan(up - 1100);
    await tj.close();
    await engine2.stop();
  }, 30_000);

  it("onCrons entries - each whole entry (shape, keys, catchUp, input) is refused when declared, named by its path, the value described", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const fn = async () => ({});
    const refusal = (declare: () => unknown): ValidationError => {
      try {
        declare();
      } catch (err) {
        expect(err).toBeInstanceOf(ValidationError);
        expect((err as ValidationError).code).toBe("INVALID_ARGUMENT");
        return err as ValidationError;
      }
      throw new Error("accepted");
    };
    for (const [onCrons, path, message] of [
      [[{ expression: "* * * * *", catchUp: "all" }], "bad.onCrons[0].catchUp", /got "all"$/],
      [["0 * * * *", { expression: "* * * * *", input: [1] }], "bad.onCrons[1].input", /JSON object, got \[1\]$/],
      [[{ expression: "* * * * *", input: { at: new Date(0) } }], "bad.onCrons[0].input.at", /Date instance/],
      [[5], "bad.onCrons[0]", /must be a cron expression or \{ expression, .*\}, got 5$/],
      [[null], "bad.onCrons[0]", /got null$/],
      [[["* * * * *"]], "bad.onCrons[0]", /got \["\* \* \* \* \*"\]$/],
      [[{ expression: "* * * * *", tz: "UTC" }], "bad.onCrons[0]", /"tz"/],
      [[{ timezone: "UTC" }], "bad.onCrons[0].expression", /expected string/],
      ["* * * * *", "bad.onCrons", /must be an array .*got "\* \* \* \* \*"$/],
    ] as const) {
      const err = refusal(() => tj.task({ name: "bad", onCrons: onCrons as never, fn }));
      expect(err.field, JSON.stringify(onCrons)).toBe(path);
      expect(err.message).toMatch(message);
    }
    const wfErr = refusal(() =>
      tj.workflow({ name: "flow", onCrons: [{ expression: "* * * * *", catchUp: "all" as never }] }),
    );
    expect(wfErr.field).toBe("flow.onCrons[0].catchUp");
    expect(await tj.crons.list()).toEqual([]);
    await tj.close();
    await engine.stop();
  });

  it("start() after a failed start() - an entry gone bad after declaring is refused before anything is written; the worker stays startable", async () => {
    const { engine, tj, namespace } = await startNamespace(nats.url);
    const defs = await new Kvm(tj.connection.nc).open(Buckets.defs);
    const fn = async () => ({});
    const spec: { expression: string; catchUp?: string } = { expression: "* * * * *" };
    const a = tj.task({ name: "a", fn });
    const bad = tj.task({ name: "bad", onCrons: [spec as CronSpec], fn });
    spec.catchUp = "all"; // changed after it was declared: the worker checks again
    const w = await tj.worker("w1", { workflows: [a, bad] });
    for (let i = 0; i < 2; i++) {
      const err = await w.start().catch((e) => e);
      expect(err, `start ${i + 1}`).toBeInstanceOf(ValidationError);
      expect((err as ValidationError).field).toBe("bad.onCrons[0].catchUp");
      expect((err as Error).message).toMatch(/got "all"$/);
    }
    expect(await defs.get(keys.def(namespace, "a"))).toBeNull();
    expect(await defs.get(keys.def(namespace, "bad"))).toBeNull();
    expect(await tj.crons.list()).toEqual([]);
    spec.catchUp = "latest";
    await w.start();
    expect((await tj.workers.list()).map((x) => x.name)).toEqual(["w1"]);
    expect(await tj.crons.list({ taskName: "bad" })).toMatchObject([{ expression: "* * * * *", catchUp: "latest" }]);
    await w.stop();

    // A start() failing after its checks (its client closed meanwhile) is undone: the next one tries again.
    const other = await connectClient(nats.url, { namespace });
    const w2 = await other.worker("w2", { workflows: [other.task({ name: "c", fn })] });
    await other.close();
    const first = await w2.start().catch((e) => e);
    expect(first).toBeInstanceOf(Error);
    const second = await w2.start().catch((e) => e);
    expect(second).toBeInstanceOf(Error);
    expect((second as Error).message).not.toMatch(/is starting/);
    expect([(second as Error).constructor.name, (second as Error).message]).toEqual([
      (first as Error).constructor.name,
      (first as Error).message,
    ]);
    await tj.close();
    await engine.stop();
  });

  it("cron() options - a string instead of options, an unknown key or a bad value is refused naming it (the zone is never silently dropped)", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const t = tj.task({ name: "t", fn: async () => ({}) });
    for (const [options, path, message] of [
      ["UTC", "options", /must be an object \{ timezone\?, .*\}, got "UTC"$/],
      [null, "options", /got null$/],
      [["UTC"], "options", /got \["UTC"\]$/],
      [
        { tz: "UTC" },
        "options.tz",
        /is not a cron option \(timezone, additionalMetadata, priority, catchUp\), got "UTC"$/,
      ],
      [{ timezone: "UTC", catchup: "latest" }, "options.catchup", /got "latest"$/],
      [{ timezone: "Mars/Olympus" }, "options.timezone", /must be an IANA time zone .*, got "Mars\/Olympus"$/],
      [{ catchUp: "all" }, "options.catchUp", /got "all"$/],
      [{ priority: 7 }, "options.priority", /got 7$/],
    ] as const) {
      const err = await t.cron("nightly", "0 3 * * *", {}, options as never).catch((e) => e);
      expect(err, JSON.stringify(options)).toBeInstanceOf(ValidationError);
      expect((err as ValidationError).code).toBe("INVALID_ARGUMENT");
      expect((err as ValidationError).field).toBe(path);
      expect((err as Error).message).toMatch(message);
    }
    expect(await tj.crons.get("nightly")).toBeUndefined();
    const def = await t.cron("nightly", "0 3 * * *", {}, { timezone: "Europe/Paris", catchUp: "latest" });
    expect(def).toMatchObject({ timezone: "Europe/Paris", catchUp: "latest" });
    await tj.close();
    await engine.stop();
  });
});
