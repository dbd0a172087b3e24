import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { appendEvent } from "@taskjet/engine";
import {
  AssignmentSchema,
  Buckets,
  EventTypes,
  keys,
  makeEvent,
  type SlotsFreed,
  SlotsFreedSchema,
  subjects,
  type WorkerRegistration,
} from "@taskjet/schemas";
import type { RunRef } from "@taskjet/sdk";
import { describe, expect, it } from "vitest";
import {
  connectClient,
  eventually,
  historyTypes,
  startEngine,
  uniqueNamespace,
  useNatsServer,
} from "../harness/fixtures.js";
import { kill, startWorkerProcess } from "../harness/processes.js";

const nats = useNatsServer();
/** A worker in a child process; resolves once it is registered. */
const workerProcess = (namespace: string, task: string, slots: number, taskMs: number, release = false) =>
  startWorkerProcess(nats.url, namespace, task, slots, taskMs, release ? "release" : undefined);

describe("lost workers", () => {
  it("drain - SIGTERM on a worker process lets its running tasks finish, takes nothing new, and exits 0", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const draining = await workerProcess(namespace, "job", 2, 800);
    const refs = await Promise.all([1, 2, 3, 4].map((i) => tj.runNoWait("job", { i })));
    await eventually(async () => {
      const states = await Promise.all(refs.map((r) => tj.runs.get(r.runId)));
      return states.filter((s) => s.status === "RUNNING").length === 2 ? true : undefined;
    });
    const exited = new Promise<number | null>((r) => draining.child.once("exit", (code) => r(code)));
    draining.child.kill("SIGTERM");
    expect(await exited).toBe(0);
    // Both running tasks finished before it exited; the two it had not started wait for another worker.
    expect(draining.output().match(/^done /gm)).toHaveLength(2);
    const next = await workerProcess(namespace, "job", 2, 10);
    const outputs = await Promise.all(refs.map((r) => r.result({ timeoutMs: 20_000 })));
    expect(outputs.filter((o) => o.worker === draining.workerId)).toHaveLength(2);
    expect(outputs.filter((o) => o.worker === next.workerId)).toHaveLength(2);
    for (const ref of refs) {
      for await (const e of tj.runs.history(ref.runId)) expect(e.event?.type).not.toBe("TaskReassigned");
    }
    await kill(next.child, "SIGTERM");
    await tj.close();
    await engine.stop();
  });

  it("reassign - a worker declared dead that comes back has its stale result recorded as ReportIgnored, never applied", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace], workerTtlMs: 1500 });
    const tj = await connectClient(nats.url, { namespace });
    const frozen = await workerProcess(namespace, "job", 1, 1500);
    const ref = await tj.runNoWait("job", { n: 1 });
    await eventually(async () => ((await tj.runs.get(ref.runId)).status === "RUNNING" ? true : undefined));
    frozen.child.kill("SIGSTOP"); // silent: no heartbeats, no reports
    // Long enough for the survivor to record its start (TaskStarted) before its result.
    const survivor = await workerProcess(namespace, "job", 1, 200);
    expect(await ref.result({ timeoutMs: 20_000 })).toMatchObject({ worker: survivor.workerId });
    frozen.child.kill("SIGCONT"); // wakes up and reports its (stale) result
    const h = await eventually(async () => {
      const out: { type: string; worker?: string }[] = [];
      for await (const e of tj.runs.history(ref.runId)) {
        out.push({
          type: e.event?.type ?? "?",
          worker: (e.event?.data as { workerId?: string } | undefined)?.workerId,
        });
      }
      return out.some((e) => e.type === "ReportIgnored") ? out : undefined;
    }, 20_000);
    expect(h.map((e) => e.type)).toEqual([
      "RunCreated",
      "TaskStarted",
      "TaskReassigned",
      "TaskStarted",
      "TaskCompleted",
      "ReportIgnored",
    ]);
    expect(h[4]?.worker).toBe(survivor.workerId);
    expect(h[5]?.worker).toBe(frozen.workerId);
    expect(await tj.runs.get(ref.runId)).toMatchObject({ status: "COMPLETED", output: { worker: survivor.workerId } });
    await kill(frozen.child, "SIGKILL");
    await kill(survivor.child, "SIGTERM");
    await tj.close();
    await engine.stop();
  });

  it("reassign - a lone worker declared dead that comes back runs the reassigned attempt again: its stale result is ignored, and the run completes", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace], workerTtlMs: 1500 });
    const tj = await connectClient(nats.url, { namespace });
    const lone = await workerProcess(namespace, "job", 1, 1500);
    const ref = await tj.runNoWait("job", { n: 1 });
    await eventually(async () => ((await tj.runs.get(ref.runId)).status === "RUNNING" ? true : undefined));
    lone.child.kill("SIGSTOP");
    await eventually(
      async () => ((await historyTypes(tj, ref.runId)).includes("TaskReassigned") ? true : undefined),
      20_000,
    );
    // Back: it registers again, is given the reassigned attempt while its first copy still runs, and then reports
    // that copy's result, which the log no longer takes.
    lone.child.kill("SIGCONT");
    expect(await ref.result({ timeoutMs: 20_000 })).toMatchObject({ worker: lone.workerId });
    // The second run of the attempt records its own start (not collapsed into the first's by dedup).
    expect(await historyTypes(tj, ref.runId)).toEqual([
      "RunCreated",
      "TaskStarted",
      "TaskReassigned",
      "ReportIgnored",
      "TaskStarted",
      "TaskCompleted",
    ]);
    await kill(lone.child, "SIGTERM");
    await tj.close();
    await engine.stop();
  });

  it("takeover - a worker whose registration lapsed while no engine led (NATS down, or it froze) keeps its attempt if it heartbeats within a TTL of the new leader; one that does not has it reassigned", async () => {
    const namespace = uniqueNamespace();
    const config = { namespaces: [namespace], workerTtlMs: 1500 };
    const first = await startEngine(nats.url, config);
    const tj = await connectClient(nats.url, { namespace });
    const frozen = await workerProcess(namespace, "job", 1, 1500);
    const dead = await workerProcess(namespace, "job", 1, 60_000);
    const refs = await Promise.all([1, 2].map((n) => tj.runNoWait("job", { n })));
    await eventually(async () => {
      const states = await Promise.all(refs.map((r) => tj.runs.get(r.runId)));
      return states.every((s) => s.status === "RUNNING") ? true : undefined;
    });
    const [a, b] = refs as [RunRef, RunRef];
    const [onDead, onFrozen] = (await tj.runs.get(a.runId)).tasks[0]?.workerId === dead.workerId ? [a, b] : [b, a];
    await first.stop();
    frozen.child.kill("SIGSTOP");
    await kill(dead.child, "SIGKILL");
    // Both registrations expire while no engine leads.
    const nc = await connect({ servers: nats.url });
    const kv = await new Kvm(nc).open(Buckets.workers);
    await eventually(
      async () => ((await kv.get(keys.worker(namespace, frozen.workerId)))?.operation === "PUT" ? undefined : true),
      10_000,
      "the frozen worker's registration expired",
    );
    await nc.close();
    const second = await startEngine(nats.url, config);
    frozen.child.kill("SIGCONT");
    try {
      expect(await onFrozen.result({ timeoutMs: 20_000 })).toMatchObject({
        worker: frozen.workerId,
      });
      expect(await historyTypes(tj, onFrozen.runId)).toEqual(["RunCreated", "TaskStarted", "TaskCompleted"]);
      // Nobody heartbeats for the dead one: its attempt runs again on the frozen worker once that is free.
      expect(await onDead.result({ timeoutMs: 20_000 })).toMatchObject({
        worker: frozen.workerId,
      });
      expect(await historyTypes(tj, onDead.runId)).toEqual([
        "RunCreated",
        "TaskStarted",
        "TaskReassigned",
        "TaskStarted",
        "TaskCompleted",
      ]);
    } finally {
      await kill(frozen.child, "SIGTERM");
      await tj.close();
      await second.stop();
    }
  });

  it("reassign - a worker that came back, was given its attempt again and died again has it reassigned a second time", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace], workerTtlMs: 1500 });
    const tj = await connectClient(nats.url, { namespace });
    const twice = await workerProcess(namespace, "job", 1, 1500);
    const ref = await tj.runNoWait("job", { n: 1 });
    const count = async (type: string) => (await historyTypes(tj, ref.runId)).filter((t) => t === type).length;
    const until = (type: string, n: number) =>
      eventually(async () => ((await count(type)) >= n ? true : undefined), 20_000, `${n} ${type}`);
    await until("TaskStarted", 1);
    twice.child.kill("SIGSTOP");
    await until("TaskReassigned", 1);
    twice.child.kill("SIGCONT");
    // It runs the attempt again, and is lost again with it.
    await until("TaskStarted", 2);
    twice.child.kill("SIGSTOP");
    await until("TaskReassigned", 2);
    await kill(twice.child, "SIGKILL");
    const survivor = await workerProcess(namespace, "job", 1, 100);
    expect(await ref.result({ timeoutMs: 20_000 })).toMatchObject({ worker: survivor.workerId });
    await kill(survivor.child, "SIGTERM");
    await tj.close();
    await engine.stop();
  });

  it("releaseSlot - a task that released its slot is not reassigned when its worker dies", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace], workerTtlMs: 1000 });
    const tj = await connectClient(nats.url, { namespace });
    const w = await workerProcess(namespace, "detached", 1, 60_000, true);
    const ref = await tj.runNoWait("detached", {});
    await eventually(async () => {
      for await (const e of tj.runs.history(ref.runId)) if (e.event?.type === "TaskSlotReleased") return true;
      return undefined;
    });
    await kill(w.child, "SIGKILL");
    const other = await workerProcess(namespace, "detached", 1, 10);
    await new Promise((r) => setTimeout(r, 3000)); // well past the TTL and a sweep
    expect(await historyTypes(tj, ref.runId)).toEqual(["RunCreated", "TaskStarted", "TaskSlotReleased"]);
    expect((await tj.runs.get(ref.runId)).status).toBe("RUNNING");
    expect(await ref.cancel()).toBe(true);
    await kill(other.child, "SIGTERM");
    await tj.close();
    await engine.stop();
  });

  it("durable spawnChild - a durable task that gave its slot back to wait for a child is reassigned when its worker dies, and replays", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace], workerTtlMs: 1000 });
    const tj = await connectClient(nats.url, { namespace });
    const doomed = await startWorkerProcess(nats.url, namespace, "parent", 2, 60_000, "child");
    const ref = await tj.runNoWait("parent", {});
    await eventually(async () => {
      for await (const e of tj.runs.history(ref.runId)) if (e.event?.type === "TaskSlotReleased") return true;
      return undefined;
    });
    await kill(doomed.child, "SIGKILL");
    const other = await startWorkerProcess(nats.url, namespace, "parent", 2, 10, "child");
    const out = (await ref.result({ timeoutMs: 20_000 })) as { pid: number };
    expect(out.pid).toBe(other.child.pid);
    expect(await tj.runs.list({ taskName: "parent-child" })).toHaveLength(1); // replayed, not spawned again
    const types = await historyTypes(tj, ref.runId);
    expect(types).toContain("TaskReassigned");
    expect(types.filter((t) => t === "ChildrenSpawned").length).toBeGreaterThanOrEqual(1);
    await kill(other.child, "SIGTERM");
    await tj.close();
    await engine.stop();
  });

  it("reassign - a worker killed with SIGKILL mid-task: its attempts are reassigned (not retried) and complete on another worker", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace], workerTtlMs: 1500 });
    const tj = await connectClient(nats.url, { namespace });
    const doomed = await workerProcess(namespace, "long", 3, 60_000);
    const refs = await Promise.all([1, 2, 3].map((i) => tj.runNoWait("long", { i })));
    await eventually(async () => {
      const states = await Promise.all(refs.map((r) => tj.runs.get(r.runId)));
      return states.every((s) => s.status === "RUNNING") ? true : undefined;
    });
    const killedAt = Date.now();
    await kill(doomed.child, "SIGKILL");
    const survivor = await workerProcess(namespace, "long", 3, 50);
    const outputs = await Promise.all(refs.map((r) => r.result({ timeoutMs: 30_000 })));
    const tookMs = Date.now() - killedAt;
    for (const [i, out] of outputs.entries()) expect(out).toMatchObject({ i: i + 1, worker: survivor.workerId });
    for (const ref of refs) {
      const h = await historyTypes(tj, ref.runId, { attempts: true });
      expect(h).toEqual(["RunCreated", "TaskStarted0", "TaskReassigned0", "TaskStarted0", "TaskCompleted0"]);
      const state = await tj.runs.get(ref.runId);
      expect(state.tasks[0]).toMatchObject({ attempt: 0, status: "COMPLETED", workerId: survivor.workerId });
    }
    // Detection needs the worker's registration to expire (TTL 1.5 s); generous bound for a loaded machine.
    expect(tookMs).toBeLessThan(15_000);
    await kill(survivor.child, "SIGTERM");
    await tj.close();
    await engine.stop();
  });

  it("resend - an assignment lost on the way is sent again while its attempt is placed and not started, and only then", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace], assignmentResendMs: 300 });
    const tj = await connectClient(nats.url, { namespace });
    const t = tj.task({ name: "lost", fn: async () => ({}) });
    const slow = tj.task({
      name: "slow",
      fn: async () => {
        await new Promise((r) => setTimeout(r, 1500));
        return {};
      },
    });
    const real = await tj.worker("real", { workflows: [slow] });
    await real.start();
    // A worker that registers for "lost" (its definition registered by a worker that leaves) and drops what it gets,
    // as a connection that went down would.
    const leaving = await tj.worker("definer", { workflows: [t] });
    await leaving.start();
    await leaving.stop();
    const nc = await connect({ servers: nats.url });
    const copies: { runId: string; attempt: number }[] = [];
    const deafId = "01DEAFWORKER00000000000000";
    nc.subscribe(subjects.assign(namespace, deafId), {
      callback: (_err, m) => {
        copies.push(AssignmentSchema.parse(m.json()));
      },
    });
    const realCopies: string[] = [];
    nc.subscribe(subjects.assign(namespace, real.id), {
      callback: (_err, m) => {
        realCopies.push(m.string());
      },
    });
    await nc.flush();
    await registerBareWorker(nc, namespace, deafId, "lost");
    const ref = await t.runNoWait({});
    // Never started: sent again every one to two periods, the same attempt each time.
    await eventually(() => (copies.length >= 3 ? true : undefined), 10_000, "copies sent again");
    expect(copies.map((c) => [c.runId, c.attempt])).toEqual(copies.map(() => [ref.runId, 0]));
    // Started (a run of 1.5 s records its start at once): one copy only, though five periods pass.
    expect(await slow.run({})).toEqual({});
    expect(realCopies).toHaveLength(1);
    await nc.close();
    await real.stop();
    await tj.close();
    await engine.stop();
  });

  it("report ignored - an attempt its live worker took for stale while the run still waits for it there runs again elsewhere, queued or running", async () => {
    const namespace = uniqueNamespace();
    // Copies sent again every 300 ms: to the worker below, which drops them, they rescue nothing.
    const engine = await startEngine(nats.url, { namespaces: [namespace], assignmentResendMs: 300 });
    const tj = await connectClient(nats.url, { namespace });
    const job = tj.task({ name: "job", fn: async () => ({ by: "real" }) });
    const definer = await tj.worker("definer", { workflows: [job] });
    await definer.start();
    await definer.stop();
    // A live worker that, handed an attempt, drains (it stays registered, and takes nothing more) and records the
    // attempt as ignored (after its start, for the second run), as a worker misled by a stream leader behind it would.
    const nc = await connect({ servers: nats.url });
    const bareId = "01STALEWORKER0000000000000";
    let handed = 0;
    const misled = new Set<string>();
    nc.subscribe(subjects.assign(namespace, bareId), {
      callback: (_err, m) => {
        const a = AssignmentSchema.parse(m.json());
        if (misled.has(a.runId)) return;
        misled.add(a.runId);
        const facts = { attempt: a.attempt, workerId: bareId };
        const base = { runId: a.runId, taskRunId: a.taskRunId };
        (async () => {
          // Draining first, and heard (a KV watch: milliseconds): the engine then places the attempt nowhere but on
          // the real worker started below.
          await registerBareWorker(nc, namespace, bareId, "job", true);
          await new Promise((r) => setTimeout(r, 300));
          let seq = a.expectedSeq;
          if (handed++ === 1) {
            const start = { ...facts, workerName: "bare", assignedAt: a.assignedAt };
            seq = await appendEvent(js, namespace, makeEvent(EventTypes.TaskStarted, { ...base, data: start }), seq);
          }
          const data = { ...facts, report: "completed" as const, reason: "test: taken for stale" };
          await appendEvent(js, namespace, makeEvent(EventTypes.ReportIgnored, { ...base, data }), seq);
        })().catch((err) => misled.add(`error: ${String(err)}`));
      },
    });
    const js = jetstream(nc);
    await nc.flush();
    for (const expected of [
      ["RunCreated", "ReportIgnored", "TaskStarted", "TaskCompleted"],
      ["RunCreated", "TaskStarted", "ReportIgnored", "TaskReassigned", "TaskStarted", "TaskCompleted"],
    ]) {
      await registerBareWorker(nc, namespace, bareId, "job");
      const ref = await job.runNoWait({});
      await eventually(async () => ((await historyTypes(tj, ref.runId)).includes("ReportIgnored") ? true : undefined));
      const real = await tj.worker("real", { workflows: [job] });
      await real.start();
      expect(await ref.result({ timeoutMs: 10_000 })).toEqual({ by: "real" });
      // (A `TaskWaiting` may come between: the run waited for a worker while the bare one drained.)
      const types = await historyTypes(tj, ref.runId, { expand: true });
      expect(types.filter((t) => t !== "TaskWaiting")).toEqual(expected);
      await real.stop();
    }
    expect([...misled].filter((r) => r.startsWith("error"))).toEqual([]);
    await nc.close();
    await tj.close();
    await engine.stop();
  });

  it("slots freed - a worker tells the engine of a slot freed without an outcome (a durable sleep), and that word lets the engine place the next attempt there", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const t = tj.task({ name: "quick", fn: async () => ({}) });
    // Not "quick": runs of it that end soon would let the engine queue attempts of it on the full bare worker below.
    const chore = tj.task({ name: "chore", fn: async () => ({}) });
    const nap = tj.durableTask({
      name: "nap",
      fn: async (_input, ctx) => {
        await ctx.sleepFor("200ms");
        return {};
      },
    });
    // It registers "quick" too, whose definition the bare worker below relies on, but never runs it.
    const real = await tj.worker("real", { workflows: [t, chore, nap] });
    await real.start();
    const nc = await connect({ servers: nats.url });
    const announced: SlotsFreed[] = [];
    nc.subscribe(subjects.slotsFreed(namespace, real.id), {
      callback: (_err, m) => {
        announced.push(SlotsFreedSchema.parse(m.json()));
      },
    });
    await nc.flush();
    // Completed: the stored outcome frees the slot where the engine folds it, no word needed.
    for (let i = 0; i < 3; i++) await chore.run({ i });
    // Asleep: the attempt ended with no outcome, so the worker says its slot is free; the attempt after the sleep
    // completes, and is not announced either.
    const napRef = await nap.runNoWait({});
    await napRef.result();
    const napTask = (await tj.runs.get(napRef.runId)).tasks[0];
    await eventually(() => (announced.length > 0 ? true : undefined), 5000, "freed slots announced");
    // Time for a wrong word on the second attempt (sent after its append) to arrive.
    await new Promise((r) => setTimeout(r, 300));
    expect(announced.flatMap((a) => a.attempts)).toEqual([{ taskRunId: napTask?.taskRunId, attempt: 0 }]);
    await real.stop();

    // A one-slot worker that records nothing: only its word frees the slot for the second run.
    const bareId = "01BAREWORKER00000000000000";
    const received: { runId: string; taskRunId: string; attempt: number }[] = [];
    nc.subscribe(subjects.assign(namespace, bareId), {
      callback: (_err, m) => {
        received.push(AssignmentSchema.parse(m.json()));
      },
    });
    await nc.flush();
    await registerBareWorker(nc, namespace, bareId, "quick");
    const refs = [await t.runNoWait({ n: 1 }), await t.runNoWait({ n: 2 })];
    await eventually(() => (received.length > 0 ? true : undefined), 5000, "first assignment");
    await new Promise((r) => setTimeout(r, 300));
    expect(received).toHaveLength(1);
    const first = received[0] as (typeof received)[number];
    const freed: SlotsFreed = {
      v: 1,
      attempts: [{ taskRunId: first.taskRunId, attempt: first.attempt }],
      returned: [],
    };
    nc.publish(subjects.slotsFreed(namespace, bareId), JSON.stringify(freed));
    await eventually(
      () => (received.length === 2 ? true : undefined),
      5000,
      "second assignment after the slot was freed",
    );
    expect(new Set(received.map((a) => a.runId))).toEqual(new Set(refs.map((r) => r.runId)));
    await nc.close();
    await tj.close();
    await engine.stop();
  });
});

/** Registers a worker in `TJ_WORKERS` as the SDK would, with one slot, that listens to nothing by itself. */
async function registerBareWorker(
  nc: NatsConnection,
  namespace: string,
  workerId: string,
  task: string,
  draining = false,
) {
  const now = new Date().toISOString();
  const registration: WorkerRegistration = {
    v: 1,
    workerId,
    name: "bare",
    tasks: [task],
    slots: 1,
    durableSlots: 0,
    labels: {},
    sdkVersion: "test",
    hostname: "test",
    pid: 1,
    startedAt: now,
    heartbeatAt: now,
    draining,
    usedSlots: 0,
    usedDurableSlots: 0,
    runningTasks: {},
    // One assignment per message, as workers of SDKs before arrays take them.
    assignmentBatches: false,
    slimAssignments: false,
  };
  await (await new Kvm(nc).open(Buckets.workers)).put(keys.worker(namespace, workerId), JSON.stringify(registration));
}
