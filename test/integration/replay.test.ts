import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RunStatuses, TaskRunError, ValidationError } from "@taskjet/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../harness/cli.js";
import { sleep } from "../harness/concurrency-probe.js";
import { eventually, historyTypes, startNamespace, useNatsServer } from "../harness/fixtures.js";

const nats = useNatsServer();

let cwd: string;
beforeAll(async () => {
  cwd = await mkdtemp(join(tmpdir(), "tj-replay-"));
});
afterAll(async () => {
  await rm(cwd, { recursive: true, force: true });
});

const taskjet = (namespace: string, args: string[]) =>
  runCli([...args, "--nats", nats.url, "--namespace", namespace], { cwd });

describe("replay", () => {
  it("replay - a failed run runs again with its recorded input as a new attempt in the same history", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    let fixed = false;
    const inputs: unknown[] = [];
    const charge = tj.task({
      name: "charge",
      retries: 1,
      fn: async (input: { amount: number }, ctx) => {
        inputs.push({ input, attempt: ctx.attempt() });
        if (!fixed) throw new Error(`declined ${input.amount}`);
        return { charged: input.amount };
      },
    });
    const worker = await tj.worker("w", { workflows: [charge] });
    await worker.start();
    const ref = await charge.runNoWait({ amount: 42 });
    await expect(ref.result()).rejects.toThrow(TaskRunError);

    fixed = true;
    const result = await tj.runs.replay({ ids: [ref.runId], reason: "card fixed" });
    expect(result).toEqual({ replayed: [ref.runId], refused: [] });
    expect(await ref.result()).toEqual({ charged: 42 });
    expect(inputs).toEqual([
      { input: { amount: 42 }, attempt: 0 },
      { input: { amount: 42 }, attempt: 1 },
      { input: { amount: 42 }, attempt: 2 },
    ]);
    const types = await historyTypes(tj, ref.runId, { attempts: true });
    // A short attempt: its result carries its start, which reads as the TaskStarted it stands for.
    expect(types.slice(types.indexOf("RunReplayed"))).toEqual(["RunReplayed", "TaskCompleted2"]);
    const facts = await historyTypes(tj, ref.runId, { attempts: true, expand: true });
    expect(facts.slice(facts.indexOf("RunReplayed"))).toEqual(["RunReplayed", "TaskStarted2", "TaskCompleted2"]);
    const state = await tj.runs.get(ref.runId);
    expect(state).toMatchObject({ status: RunStatuses.completed, replays: 1, output: { charged: 42 } });
    expect(state.error).toBeUndefined();

    // A replayed attempt has the task's retries again: two more failures make one retry, then FAILED. An id given
    // three times is one run replayed once, not also refused as no longer finished.
    fixed = false;
    expect(await tj.runs.replay({ ids: [ref.runId, ref.runId, ref.runId] })).toEqual({
      replayed: [ref.runId],
      refused: [],
    });
    await expect(ref.result()).rejects.toThrow("declined 42");
    expect(inputs.slice(3).map((i) => (i as { attempt: number }).attempt)).toEqual([3, 4]);

    // Unfinished runs and unknown ids are refused, with the reason.
    const slow = tj.task({ name: "slow", fn: async () => sleep(800).then(() => ({})) });
    const w2 = await tj.worker("w2", { workflows: [slow] });
    await w2.start();
    const running = await slow.runNoWait({});
    const refused = await tj.runs.replay({ ids: [running.runId, "nosuchrun"] });
    expect(refused.replayed).toEqual([]);
    expect(refused.refused).toEqual(
      expect.arrayContaining([
        { runId: running.runId, reason: expect.stringMatching(/is (QUEUED|RUNNING): only finished runs replay/) },
        { runId: "nosuchrun", reason: "no run nosuchrun" },
      ]),
    );
    await expect(tj.runs.replay({ ids: ["bad id"] })).rejects.toThrow(ValidationError);
    // Filters named by their path; a metadata value that is not a string would match nothing.
    await expect(tj.runs.replay({ filters: { statuses: ["DONE" as "FAILED"] } })).rejects.toThrow(
      /^filters\.statuses\[0\]: must be one of .*, got "DONE"$/,
    );
    await expect(tj.runs.replay({ filters: { additionalMetadata: { k: 1 as never } } })).rejects.toThrow(
      /^filters\.additionalMetadata\.k: must be a string, got 1$/,
    );
    await expect(tj.events.list({ limit: -1 })).rejects.toThrow(/^limit: must be a positive integer, got -1$/);
    await expect(tj.events.list({ keyy: "x" } as never)).rejects.toThrow(/^keyy: is not a list option/);
    await running.result();
    await tj.close();
    await engine.stop();
  });

  it("history follow - a replayed run is followed to its last end, not to the end it had before its replay", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    let fail = true;
    const flaky = tj.task({
      name: "flaky",
      fn: async () => {
        if (fail) throw new Error("planned");
        return { ok: true };
      },
    });
    const worker = await tj.worker("w", { workflows: [flaky] });
    await worker.start();
    const ref = await flaky.runNoWait({});
    await ref.result().catch(() => undefined);
    fail = false;
    await tj.runs.replay({ ids: [ref.runId] });
    expect(await ref.result()).toEqual({ ok: true });
    const followed: string[] = [];
    for await (const e of tj.runs.history(ref.runId, { follow: true })) followed.push(e.event?.type ?? "?");
    expect(followed).toEqual(await historyTypes(tj, ref.runId));
    expect(followed.slice(-2)).toEqual(["RunReplayed", "TaskCompleted"]);
    await tj.close();
    await engine.stop();
  });

  it("replay --from - a DAG re-runs a middle task and its descendants only, reusing the other recorded outputs", async () => {
    const { engine, tj, namespace } = await startNamespace(nats.url);
    const ran: string[] = [];
    const note = <T>(what: string, output: T): T => {
      ran.push(what);
      return output;
    };
    let bFails = true;
    const wf = tj.workflow<{ n: number }>({ name: "etl" });
    const a = wf.task({ name: "a", fn: async (i: { n: number }) => note("a", { v: i.n + 1 }) });
    const b = wf.task({
      name: "b",
      parents: [a],
      fn: async (_i, ctx) => {
        ran.push("b");
        if (bFails) throw new Error("b broke");
        return { v: ctx.parentOutput<{ v: number }>(a).v * 10 };
      },
    });
    wf.task({
      name: "c",
      parents: [b],
      fn: async (_i, ctx) => note("c", { v: ctx.parentOutput<{ v: number }>(b).v + 1 }),
    });
    wf.task({ name: "d", parents: [a], fn: async () => note("d", { v: "d" }) });
    wf.onFailure({ name: "alert", fn: async () => note("alert", { alerted: true }) });
    const worker = await tj.worker("w", { workflows: [wf], slots: 5 });
    await worker.start();
    const ref = await wf.runNoWait({ n: 1 });
    await expect(ref.result()).rejects.toThrow("b broke");
    expect([...ran].sort()).toEqual(["a", "alert", "b", "d"]);

    bFails = false;
    ran.length = 0;
    const res = await taskjet(namespace, ["runs", "replay", ref.runId, "--from", "b"]);
    expect(res.stderr).toBe("");
    expect(res.stdout).toBe(`replayed ${ref.runId}\n`);
    expect(res.code).toBe(0);
    expect(await ref.result()).toEqual({ a: { v: 2 }, b: { v: 20 }, c: { v: 21 }, d: { v: "d" } });
    expect(ran).toEqual(["b", "c"]);
    const state = await tj.runs.get(ref.runId);
    expect(state.tasks.map((t) => [t.ref, t.status, t.attempt])).toEqual([
      ["a", "COMPLETED", 0],
      ["b", "COMPLETED", 1],
      ["c", "COMPLETED", 1],
      ["d", "COMPLETED", 0],
      ["alert", "CANCELLED", 1],
    ]);

    // The timeline says what happened.
    const history = await taskjet(namespace, ["runs", "history", ref.runId]);
    expect(history.stdout).toMatch(/RunReplayed\s+-\s+-\s+replayed from b: replayed from the CLI/);

    // A finished run only; a task whose parent did not complete is refused with what to do instead.
    const again = await taskjet(namespace, ["runs", "replay", ref.runId, "--from", "nope"]);
    expect(again.code).toBe(1);
    expect(again.stdout).toContain(`refused ${ref.runId}: run ${ref.runId} has no task "nope" (tasks: a, b, c, d)`);
    await tj.close();
    await engine.stop();
  });

  it("replay --filter - every FAILED run of a task since a time, with progress; other tasks and older runs untouched", async () => {
    const { engine, tj, namespace } = await startNamespace(nats.url);
    let healthy = false;
    const sync = tj.task({
      name: "sync",
      fn: async (i: { k: number }) => {
        if (!healthy) throw new Error("upstream down");
        return { k: i.k };
      },
    });
    const other = tj.task({
      name: "other",
      fn: async () => {
        if (!healthy) throw new Error("also down");
        return {};
      },
    });
    const worker = await tj.worker("w", { workflows: [sync, other], slots: 20 });
    await worker.start();
    const old = await sync.runNoWait({ k: -1 });
    await expect(old.result()).rejects.toThrow();
    await sleep(50);
    const since = new Date();
    const refs = await sync.runManyNoWait(Array.from({ length: 30 }, (_, k) => ({ input: { k } })));
    const otherRef = await other.runNoWait({});
    for (const r of [...refs, otherRef]) await expect(r.result()).rejects.toThrow();
    // The projection lists finished runs within ~25 ms.
    await eventually(async () =>
      (await tj.runs.list({ statuses: ["FAILED"], limit: 1000 })).length === 32 ? true : undefined,
    );

    healthy = true;
    const progress: number[] = [];
    const result = await tj.runs.replay({
      filters: { statuses: ["FAILED"], taskName: "sync", since },
      onProgress: (done, total) => progress.push(done * 1000 + total),
    });
    expect(result.refused).toEqual([]);
    expect([...result.replayed].sort()).toEqual(refs.map((r) => r.runId).sort());
    expect(progress).toHaveLength(30);
    expect(progress.at(-1)).toBe(30 * 1000 + 30);
    expect((await Promise.all(refs.map((r) => r.result()))).map((o) => o.k)).toEqual(refs.map((_, k) => k));
    expect((await tj.runs.get(old.runId)).status).toBe("FAILED");
    expect((await tj.runs.get(otherRef.runId)).status).toBe("FAILED");

    // The CLI: by filter, JSON out; nothing FAILED of `sync` is left since then.
    const cli = await taskjet(namespace, [
      "runs",
      "replay",
      "--filter",
      "--status",
      "FAILED",
      "--task",
      "other",
      "--json",
    ]);
    expect(cli.code).toBe(0);
    expect(JSON.parse(cli.stdout)).toEqual({ replayed: [otherRef.runId], refused: [] });
    expect(await otherRef.result()).toEqual({});
    const none = await taskjet(namespace, [
      "runs",
      "replay",
      "--filter",
      "--task",
      "sync",
      "--since",
      "1h",
      "--status",
      "FAILED",
    ]);
    expect(none.stdout).toBe(`replayed ${old.runId}\n`);
    const usage = await taskjet(namespace, ["runs", "replay", "--filter", "--since", "yesterday"]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("--since must be an ISO date-time or a duration ago");
    await tj.close();
    await engine.stop();
  });

  it("replay - a replayed parent makes new child runs instead of reusing the recorded ones", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const child = tj.task({ name: "child", fn: async (i: { x: number }) => ({ x: i.x * 2 }) });
    const parent = tj.task({
      name: "parent",
      fn: async (_i, ctx) => {
        const refs = await ctx.bulkRunChildrenNoWait([
          { task: child, input: { x: 1 } },
          { task: child, input: { x: 2 } },
        ]);
        const outs = await Promise.all(refs.map((r) => r.result() as Promise<{ x: number }>));
        return { ids: refs.map((r) => r.runId), sum: outs.reduce((s, o) => s + o.x, 0) };
      },
    });
    const worker = await tj.worker("w", { workflows: [parent, child], slots: 5 });
    await worker.start();
    const ref = await parent.runNoWait({});
    const first = await ref.result();
    expect(first.sum).toBe(6);
    await tj.runs.replay({ ids: [ref.runId] });
    const second = await ref.result();
    expect(second.sum).toBe(6);
    expect(second.ids).toHaveLength(2);
    expect(second.ids.filter((id: string) => first.ids.includes(id))).toEqual([]);
    expect((await tj.runs.get(ref.runId)).children?.map((c) => c.runId)).toEqual([...first.ids, ...second.ids]);
    await tj.close();
    await engine.stop();
  });
});
