import { connect } from "@nats-io/transport-node";
import { RunCancelledError, RunStatuses, TaskRunError, ValidationError } from "@taskjet/sdk";
import { describe, expect, it, onTestFinished } from "vitest";
import { ConcurrencyProbe, sleep } from "../harness/concurrency-probe.js";
import { eventually, historyTypes, startNamespace, useNatsServer } from "../harness/fixtures.js";
import { startNatsServer } from "../harness/nats-server.js";

const nats = useNatsServer();

/** Notes that `what` ran and returns `output`. */
function record<T>(log: string[], what: string, output: T): T {
  log.push(what);
  return output;
}

describe("workflows", () => {
  it("DAG diamond - A → B, C → D: outputs flow to children, B and C run in parallel, the run returns every output", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const probe = new ConcurrencyProbe();
    const wf = tj.workflow<{ n: number }>({ name: "diamond" });
    const a = wf.task({ name: "a", fn: async (input: { n: number }) => ({ v: input.n + 1 }) });
    const b = wf.task({
      name: "b",
      parents: [a],
      fn: (_input, ctx) =>
        probe.around("mid", async () => {
          await sleep(150);
          return { v: ctx.parentOutput<{ v: number }>(a).v * 2 };
        }),
    });
    const c = wf.task({
      name: "c",
      parents: [a],
      fn: (_input, ctx) =>
        probe.around("mid", async () => {
          await sleep(150);
          return { v: ctx.parentOutput<{ v: number }>(a).v * 3 };
        }),
    });
    wf.task({
      name: "d",
      parents: [b, "c"],
      fn: async (_input, ctx) => ({ sum: ctx.parentOutput<{ v: number }>(b).v + ctx.parentOutput<{ v: number }>(c).v }),
    });
    const worker = await tj.worker("w", { workflows: [wf], slots: 10 });
    await worker.start();
    const out = await wf.run({ n: 1 });
    expect(out).toEqual({ a: { v: 2 }, b: { v: 4 }, c: { v: 6 }, d: { sum: 10 } });
    expect(probe.maxByKey.get("mid")).toBe(2);
    // By name (as the CLI triggers): the client builds the DAG its workers registered.
    expect(await tj.run("diamond", { n: 1 })).toEqual(out);
    // Scheduled: SCHEDULED until its time, then the same DAG.
    const later = await wf.schedule(new Date(Date.now() + 300), { n: 2 });
    expect((await tj.runs.get(later.runId)).status).toBe(RunStatuses.scheduled);
    expect(await later.result()).toEqual({ a: { v: 3 }, b: { v: 6 }, c: { v: 9 }, d: { sum: 15 } });
    const ref = await wf.runNoWait({ n: 10 });
    await ref.result();
    const state = await tj.runs.get(ref.runId);
    expect(state.workflowName).toBe("diamond");
    expect(state.tasks.map((t) => [t.ref, t.status])).toEqual([
      ["a", "COMPLETED"],
      ["b", "COMPLETED"],
      ["c", "COMPLETED"],
      ["d", "COMPLETED"],
    ]);
    // Four tasks, one history: no event beyond their own starts and completions.
    const types = await historyTypes(tj, ref.runId, { expand: true });
    expect(types).toHaveLength(9);
    expect(types.filter((t) => t === "TaskStarted")).toHaveLength(4);
    expect(types.filter((t) => t === "TaskCompleted")).toHaveLength(4);
    // As stored: the long tasks (b, c) recorded their starts alone; the short ones (a, d) with their results.
    const stored = await historyTypes(tj, ref.runId);
    expect(stored).toHaveLength(7);
    expect(stored.filter((t) => t === "TaskStarted")).toHaveLength(2);
    await tj.close();
    await engine.stop();
  });

  it("large parents - a task whose parents' outputs together exceed a NATS message gets them all (read from the run's history)", async () => {
    // The production default max_payload (1 MiB), where the harness raises it to 2 MiB.
    const small = await startNatsServer({ maxPayload: "1048576" });
    onTestFinished(() => small.stop());
    const { engine, tj } = await startNamespace(small.url);
    const wf = tj.workflow({ name: "big-parents" });
    const big = (c: string) => ({ blob: c.repeat(600 * 1024) });
    const a = wf.task({ name: "a", fn: async () => big("a") });
    const b = wf.task({ name: "b", fn: async () => big("b") });
    wf.task({
      name: "c",
      parents: [a, b],
      fn: async (_input, ctx) => {
        // Typed by the parent's declaration: a field it does not return does not compile.
        // @ts-expect-error `a` returns { blob }
        expect(ctx.parentOutput(a).nope).toBeUndefined();
        return { a: ctx.parentOutput(a).blob.length, b: ctx.parentOutput(b).blob.length };
      },
    });
    await (await tj.worker("w", { workflows: [wf] })).start();
    const ref = await wf.runNoWait({});
    // Before, its assignment was never delivered: the run waited for its schedule timeout.
    expect(await ref.result({ timeoutMs: 20_000 })).toMatchObject({ c: { a: 600 * 1024, b: 600 * 1024 } });
    await tj.close();
    await engine.stop();
  });

  it("by name before any worker registered it - a plain run, its definition read once however often; a workflow registered later is built once that second is over", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    // Every read of the name's definition, however the client asks (direct get by subject or body, or the API's).
    const spy = await connect({ servers: nats.url });
    let reads = 0;
    for (const subject of [
      "$JS.API.DIRECT.GET.KV_TJ_DEFS.>",
      "$JS.API.DIRECT.GET.KV_TJ_DEFS",
      "$JS.API.STREAM.MSG.GET.KV_TJ_DEFS",
    ]) {
      spy.subscribe(subject, {
        callback: (_err, m) => {
          if (`${m.subject} ${m.string()}`.includes(".late")) reads++;
        },
      });
    }
    await spy.flush();
    const started = Date.now();
    const first = await tj.runNoWait("late", { i: 0 });
    for (let i = 1; i < 20; i++) await tj.runNoWait("late", { i });
    await spy.flush();
    // 20 triggers within the second a missing definition is remembered: one read (two if they spanned it).
    expect(reads).toBeGreaterThanOrEqual(1);
    expect(reads).toBeLessThanOrEqual(Math.ceil((Date.now() - started) / 1000) + 1);
    // A plain run: one task, no DAG behind it.
    const plain = await tj.runs.get(first.runId);
    expect(plain.tasks).toHaveLength(1);
    expect(plain.tasks[0]?.ref).toBeUndefined();

    const wf = tj.workflow({ name: "late" });
    wf.task({ name: "only", fn: async () => ({ ok: true }) });
    const worker = await tj.worker("w", { workflows: [wf] });
    await worker.start();
    await sleep(1100);
    const ref = await tj.runNoWait("late", {});
    expect((await tj.runs.get(ref.runId)).tasks.map((t) => t.ref)).toEqual(["only"]);
    expect(await ref.result()).toEqual(await wf.run({}));
    await spy.close();
    await tj.close();
    await engine.stop();
  });

  it("failure midway - the failed task's descendants never run, an independent branch finishes, onFailure sees the errors", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const ran: string[] = [];
    let handled: Record<string, { message: string }> | undefined;
    const wf = tj.workflow({ name: "pipeline", taskDefaults: { retries: 1 } });
    const fetchTask = wf.task({ name: "fetch", fn: async () => record(ran, "fetch", { rows: 3 }) });
    const parse = wf.task({
      name: "parse",
      parents: [fetchTask],
      fn: async (_i, ctx) => {
        ran.push(`parse${ctx.retryCount()}`);
        throw new SyntaxError("bad row 2");
      },
    });
    wf.task({ name: "store", parents: [parse], fn: async () => record(ran, "store", {}) });
    wf.task({
      name: "archive",
      parents: [fetchTask],
      fn: async () => {
        await sleep(300);
        return record(ran, "archive", { ok: 1 });
      },
    });
    wf.onFailure({
      name: "alert",
      fn: async (_i, ctx) => {
        handled = ctx.errors();
        ran.push("alert");
        return {};
      },
    });
    const worker = await tj.worker("w", { workflows: [wf], slots: 10 });
    await worker.start();
    const ref = await wf.runNoWait({});
    const err = await ref.result().catch((e) => e);
    expect(err).toBeInstanceOf(TaskRunError);
    expect((err as TaskRunError).message).toMatch(/bad row 2/);
    expect(ran.sort()).toEqual(["alert", "archive", "fetch", "parse0", "parse1"]);
    expect(handled).toEqual({ parse: expect.objectContaining({ name: "SyntaxError", message: "bad row 2" }) });
    const state = await tj.runs.get(ref.runId);
    expect(state.status).toBe(RunStatuses.failed);
    const byRef = Object.fromEntries(state.tasks.map((t) => [t.ref, t]));
    expect(byRef.store?.status).toBe(RunStatuses.cancelled);
    expect(byRef.store?.error?.message).toBe("not run: parse failed");
    expect(byRef.archive?.status).toBe(RunStatuses.completed);
    expect(byRef.alert?.status).toBe(RunStatuses.completed);
    await tj.close();
    await engine.stop();
  });

  it("onFailure - a task cancelled for a reason of its own (its schedule timeout) is among ctx.errors()", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    let handled: Record<string, { name: string; message: string }> | undefined;
    const wf = tj.workflow({ name: "stuck-flow" });
    // No worker has the label it requires: it waits a second, then its schedule timeout cancels it.
    const stuck = wf.task({
      name: "stuck",
      scheduleTimeout: "1s",
      desiredWorkerLabels: { gpu: { value: "h100", required: true } },
      fn: async () => ({}),
    });
    wf.task({ name: "after", parents: [stuck], fn: async () => ({}) });
    wf.onFailure({
      name: "alert",
      fn: async (_i, ctx) => {
        handled = ctx.errors();
        return {};
      },
    });
    await (await tj.worker("w", { workflows: [wf] })).start();
    await wf.run({}).catch(() => undefined);
    await eventually(() => handled);
    // Its descendant, never run because of it, is not: the handler sees the cause.
    expect(handled).toEqual({ stuck: expect.objectContaining({ message: expect.stringMatching(/SCHEDULE_TIMEOUT/) }) });
    await tj.close();
    await engine.stop();
  });

  it("retry beside a sibling - a task failing once while its sibling completes at the same moment is retried in every run (the sibling's event made the retry's append conflict)", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const failed = new Set<string>();
    const wf = tj.workflow({
      name: "siblings",
      taskDefaults: { retries: 1, backoff: { factor: 1, maxSeconds: 0.05 } },
    });
    wf.task({
      name: "flaky",
      fn: async (_i, ctx) => {
        if (!failed.has(ctx.workflowRunId())) {
          failed.add(ctx.workflowRunId());
          throw new Error("once");
        }
        return { ok: true };
      },
    });
    wf.task({ name: "steady", fn: async () => ({ ok: true }) });
    const worker = await tj.worker("w", { workflows: [wf], slots: 50 });
    await worker.start();
    const refs = await Promise.all(Array.from({ length: 150 }, () => tj.runNoWait("siblings", {})));
    const ends = await Promise.all(refs.map((r) => r.result({ timeoutMs: 20_000 }).then(() => "done", String)));
    expect(ends.filter((e) => e !== "done")).toEqual([]);
    await tj.close();
    await engine.stop();
  }, 40_000);

  it("onSuccess - runs once every task completed; skipped when the run failed", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const calls: string[] = [];
    const wf = tj.workflow<{ fail: boolean }>({ name: "report", defaultPriority: 3 });
    const only = wf.task({
      name: "only",
      fn: async (input: { fail: boolean }) => {
        if (input.fail) throw new Error("nope");
        return { done: true };
      },
    });
    wf.onSuccess({ name: "notify", fn: async (_i, ctx) => record(calls, `ok:${ctx.parentOutput(only).done}`, {}) });
    const worker = await tj.worker("w", { workflows: [wf] });
    await worker.start();
    expect(await wf.run({ fail: false })).toEqual({ only: { done: true } });
    await expect(wf.run({ fail: true })).rejects.toThrow(/nope/);
    expect(calls).toEqual(["ok:true"]);
    const runs = await eventually(async () => {
      const listed = await tj.runs.list({ taskName: "report" });
      return listed.length === 2 ? listed : undefined;
    });
    expect(runs.map((r) => r.priority)).toEqual([3, 3]);
    await tj.close();
    await engine.stop();
  });

  it("cascading cancel - cancelling a workflow run stops its running task and never starts the rest", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const started: string[] = [];
    const wf = tj.workflow({ name: "long" });
    const slow = wf.task({
      name: "slow",
      fn: async (_i, ctx) => {
        started.push("slow");
        await new Promise((r) => ctx.abortController.signal.addEventListener("abort", r));
        return {};
      },
    });
    wf.task({ name: "after", parents: [slow], fn: async () => record(started, "after", {}) });
    const worker = await tj.worker("w", { workflows: [wf] });
    await worker.start();
    const ref = await wf.runNoWait({});
    await eventually(() => (started.includes("slow") ? true : undefined));
    expect(await ref.cancel("no longer needed")).toBe(true);
    await expect(ref.result()).rejects.toBeInstanceOf(RunCancelledError);
    await sleep(300);
    expect(started).toEqual(["slow"]);
    const state = await tj.runs.get(ref.runId);
    expect(state.tasks.map((t) => t.status)).toEqual([RunStatuses.cancelled, RunStatuses.cancelled]);
    await tj.close();
    await engine.stop();
  });

  it("triggers - a workflow started by a pushed event and by a cron runs its whole DAG", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const wf = tj.workflow({ name: "on-signup", onEvents: ["user:created"] });
    const first = wf.task({ name: "welcome", fn: async (input: { user: string }) => ({ mail: `hi ${input.user}` }) });
    wf.task({ name: "log", parents: [first], fn: async (_i, ctx) => ({ sent: ctx.parentOutput(first).mail }) });
    const worker = await tj.worker("w", { workflows: [wf] });
    await worker.start();
    const { eventId } = await tj.events.push("user:created", { user: "ana" });
    const [listed] = await eventually(async () => {
      const events = await tj.events.list({ key: "user:created" });
      return events[0]?.runs.length ? events : undefined;
    });
    expect(listed?.id).toBe(eventId);
    const runId = listed?.runs[0]?.runId as string;
    expect(await tj.ref(runId).result()).toEqual({ welcome: { mail: "hi ana" }, log: { sent: "hi ana" } });
    await wf.cron("every-second", "* * * * * *", { user: "cron" });
    const cronRun = await eventually(async () => {
      const runs = await tj.runs.list({ taskName: "on-signup" });
      return runs.find((r) => r.trigger.kind === "cron" && r.status === "COMPLETED");
    }, 5000);
    expect(cronRun.output).toEqual({ welcome: { mail: "hi cron" }, log: { sent: "hi cron" } });
    await tj.crons.delete("every-second");
    await tj.close();
    await engine.stop();
  });

  it("definition - duplicate names, unknown or later parents (so no cycle) and empty workflows are refused, naming them", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const wf = tj.workflow({ name: "bad" });
    const a = wf.task({ name: "a", fn: async () => ({}) });
    expect(() => wf.task({ name: "a", fn: async () => ({}) })).toThrow(/already has a task "a"/);
    expect(() => wf.task({ name: "b", parents: ["c"], fn: async () => ({}) })).toThrow(
      /task "b" names parent "c", which is not a task declared before it in workflow bad/,
    );
    const other = tj.workflow({ name: "other" });
    expect(() => other.task({ name: "x", parents: [a], fn: async () => ({}) })).toThrow(ValidationError);
    expect(() => wf.onFailure({ name: "h", parents: [a], fn: async () => ({}) })).toThrow(/no parents/);
    expect(() => tj.workflow({ name: "has space" })).toThrow(/name/);
    await expect(tj.workflow({ name: "empty" }).run({})).rejects.toThrow(/has no tasks/);
    await tj.close();
    await engine.stop();
  });

  it("options - each workflow option is refused when declared, with tj.task's rule and message for it; parents must be an array of its tasks", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const thrown = (declare: () => unknown): unknown => {
      try {
        declare();
      } catch (err) {
        return err;
      }
      return "accepted";
    };
    const fn = async () => ({});
    for (const [option, value, message] of [
      ["defaultPriority", 7, /^defaultPriority: must be 1, 2 or 3, got 7$/],
      ["sticky", "ALWAYS", /^sticky: .*got "ALWAYS"$/],
      ["concurrency", "input.x", /^concurrency\[0\]: .*got "input\.x"$/],
      ["concurrency", { expression: "input.x", maxRuns: 0 }, /^concurrency\[0\]\.maxRuns: .*got 0$/],
      ["concurrency", { expression: "input.x", limit: 2 }, /^concurrency\[0\]: .*"limit"/],
      ["onEvents", "user:created", /^onEvents: .*got "user:created"$/],
      ["onCrons", [{ expression: "* * * * *", catchUp: "all" }], /^p\.onCrons\[0\]\.catchUp: .*got "all"$/],
    ] as const) {
      const asTask = thrown(() => tj.task({ name: "p", fn, [option]: value } as never));
      const asWorkflow = thrown(() => tj.workflow({ name: "p", [option]: value } as never));
      expect(asWorkflow, `workflow ${option}: ${JSON.stringify(value)}`).toBeInstanceOf(ValidationError);
      expect((asWorkflow as ValidationError).code).toBe("INVALID_ARGUMENT");
      expect((asWorkflow as Error).message).toMatch(message);
      expect((asWorkflow as Error).message).toBe((asTask as Error).message);
    }
    for (const [taskDefaults, message] of [
      ["retry twice", /^taskDefaults: must be an object of task options .*got "retry twice"$/],
      [{ retries: -1 }, /^taskDefaults\.retries: .*got -1$/],
      [{ backoff: { factor: 0, maxSeconds: 10 } }, /^taskDefaults\.backoff\.factor: .*got 0$/],
      [{ executionTimeout: "soon" }, /^taskDefaults\.executionTimeout: .*"soon"/],
      [{ scheduleTimeout: -5 }, /^taskDefaults\.scheduleTimeout: .*-5/],
    ] as const) {
      const err = thrown(() => tj.workflow({ name: "d", taskDefaults } as never));
      expect(err, JSON.stringify(taskDefaults)).toBeInstanceOf(ValidationError);
      expect((err as Error).message).toMatch(message);
    }

    const wf = tj.workflow({ name: "bad" });
    const a = wf.task({ name: "a", fn });
    for (const parents of ["a", a, { 0: a }, 1]) {
      const err = thrown(() => wf.task({ name: "b", parents: parents as never, fn }));
      expect(err, String(parents)).toBeInstanceOf(ValidationError);
      expect((err as ValidationError).field).toBe("parents");
      expect((err as Error).message).toMatch(
        /^parents: must be an array of tasks of workflow bad \(or their names\), got /,
      );
    }
    expect((thrown(() => wf.task({ name: "b", parents: "a" as never, fn })) as Error).message).toMatch(/got "a"$/);
    // Refused, so not declared: the name is free for a correct declaration.
    wf.task({ name: "b", parents: ["a"], fn });

    // Good options are kept: a priority, several concurrency rules (each its own key), defaults for every task.
    const ok = tj.workflow<{ k: string }>({
      name: "ok",
      defaultPriority: 3,
      sticky: "SOFT",
      concurrency: [
        { expression: "input.k", maxRuns: 1 },
        { expression: "'global'", maxRuns: 2 },
      ],
      taskDefaults: { retries: 1, executionTimeout: "5s" },
    });
    let failures = 0;
    const first = ok.task({
      name: "first",
      fn: async (input: { k: string }) => {
        if (failures++ === 0) throw new Error("once");
        return { k: input.k };
      },
    });
    ok.task({ name: "second", parents: [first], fn: async (_i, ctx) => ({ got: ctx.parentOutput(first).k }) });
    expect(first.declaration.flow.concurrency?.map((r) => r.key)).toEqual(["ok.workflow", "ok.workflow-1"]);
    const worker = await tj.worker("w", { workflows: [ok] });
    await worker.start();
    const ref = await ok.runNoWait({ k: "x" });
    expect(await ref.result()).toEqual({ first: { k: "x" }, second: { got: "x" } });
    expect((await tj.runs.get(ref.runId)).priority).toBe(3);
    await tj.close();
    await engine.stop();
  });
});
