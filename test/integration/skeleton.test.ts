import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { Buckets, keys, type RunState, StreamSubjects, Streams, subjects, type TaskjetEvent } from "@taskjet/schemas";
import {
  ConnectionError,
  NotProvisionedError,
  PayloadTooLargeError,
  RunNotFoundError,
  RunRejectedError,
  Taskjet,
  TaskjetError,
  ValidationError,
} from "@taskjet/sdk";
import { describe, expect, it } from "vitest";
import {
  connectClient,
  eventually,
  startEngine,
  startOf,
  uniqueNamespace,
  useNatsServer,
} from "../harness/fixtures.js";
import { startNatsServer } from "../harness/nats-server.js";

const nats = useNatsServer();

async function historyMessages(url: string): Promise<number> {
  const nc = await connect({ servers: url });
  const jsm = await jetstreamManager(nc);
  const n = (await jsm.streams.info(Streams.history)).state.messages;
  await nc.close();
  return n;
}

describe("skeleton", () => {
  it("slots - 1,000 runs over 2 workers with 10 slots each all complete, never more than 10 running on a worker", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const client = await connectClient(nats.url, { namespace });
    const workerClients = [await connectClient(nats.url, { namespace }), await connectClient(nats.url, { namespace })];
    const running = [0, 0];
    const peak = [0, 0];
    const ran = [0, 0];
    const workers = await Promise.all(
      workerClients.map(async (tj, i) => {
        const task = tj.task({
          name: "count",
          fn: async (input: { i: number }) => {
            running[i] = (running[i] ?? 0) + 1;
            peak[i] = Math.max(peak[i] ?? 0, running[i] ?? 0);
            await new Promise((r) => setTimeout(r, 1 + (input.i % 4)));
            running[i] = (running[i] ?? 0) - 1;
            ran[i] = (ran[i] ?? 0) + 1;
            return { i: input.i };
          },
        });
        const w = await tj.worker(`w${i}`, { workflows: [task], slots: 10 });
        await w.start();
        return w;
      }),
    );
    const trigger = client.task({ name: "count", fn: async (input: { i: number }) => ({ i: input.i }) });
    const refs = await Promise.all(Array.from({ length: 1000 }, (_, i) => trigger.runNoWait({ i })));
    const outputs = await Promise.all(refs.map((r) => r.result()));
    expect(outputs.map((o) => o.i)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect((ran[0] ?? 0) + (ran[1] ?? 0)).toBe(1000);
    expect(peak[0]).toBeLessThanOrEqual(10);
    expect(peak[1]).toBeLessThanOrEqual(10);
    // Both workers took part, and the slots were used.
    expect(Math.min(ran[0] ?? 0, ran[1] ?? 0)).toBeGreaterThan(100);
    expect(Math.max(peak[0] ?? 0, peak[1] ?? 0)).toBe(10);
    await Promise.all(workers.map((w) => w.stop()));
    await Promise.all([client, ...workerClients].map((tj) => tj.close()));
    await engine.stop();
  });

  it("runs - get, list and history agree with what happened", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const ok = tj.task({ name: "ok", fn: async (input: { v: number }) => ({ v: input.v + 1 }) });
    const bad = tj.task({
      name: "bad",
      fn: async () => {
        throw new TypeError("bad input");
      },
    });
    const worker = await tj.worker("w", { workflows: [ok, bad] });
    await worker.start();
    const okRef = await ok.runNoWait({ v: 1 }, { additionalMetadata: { tenant: "acme" } });
    const badRef = await bad.runNoWait({});
    expect(await okRef.result()).toEqual({ v: 2 });
    await badRef.result().catch(() => undefined);
    const queuedRef = await tj.runNoWait("no-worker-yet", { x: 1 });

    const okState = await tj.runs.get(okRef.runId);
    expect(okState).toMatchObject({
      runId: okRef.runId,
      workflowName: "ok",
      status: "COMPLETED",
      input: { v: 1 },
      output: { v: 2 },
      additionalMetadata: { tenant: "acme" },
      trigger: { kind: "run" },
    });
    expect(okState.tasks[0]).toMatchObject({ taskName: "ok", status: "COMPLETED", attempt: 0, workerId: worker.id });
    expect(new Date(okState.finishedAt as string) >= new Date(okState.startedAt as string)).toBe(true);
    expect(await okRef.status()).toBe("COMPLETED");
    expect((await tj.runs.get(badRef.runId)).error).toMatchObject({ name: "TypeError", message: "bad input" });
    expect(await tj.runs.get(queuedRef.runId)).toMatchObject({ status: "QUEUED" });

    const listed = await eventually(async () => {
      const all = await tj.runs.list();
      return all.length === 3 && all.every((s) => s.status !== "RUNNING") ? all : undefined;
    });
    expect(listed.map((s) => s.runId)).toEqual([queuedRef.runId, badRef.runId, okRef.runId]);
    expect((await tj.runs.list({ statuses: ["FAILED"] })).map((s) => s.runId)).toEqual([badRef.runId]);
    expect((await tj.runs.list({ taskName: "ok" })).map((s) => s.runId)).toEqual([okRef.runId]);
    expect(await tj.runs.list({ limit: 1 })).toHaveLength(1);

    const history: { seq: number; type?: string; event?: TaskjetEvent }[] = [];
    for await (const e of tj.runs.history(okRef.runId))
      history.push({ seq: e.seq, type: e.event?.type, event: e.event });
    // A short attempt: its result carries its start (one append instead of TaskStarted, then TaskCompleted).
    expect(history.map((h) => h.type)).toEqual(["RunCreated", "TaskCompleted"]);
    expect(history[1]?.event?.data).toMatchObject({
      attempt: 0,
      workerId: worker.id,
      started: { at: okState.startedAt, workerName: "w" },
    });
    expect(history.map((h) => h.seq)).toEqual([...history.map((h) => h.seq)].sort((a, b) => a - b));
    expect(history.at(-1)?.seq).toBe(okState.lastSeq);

    const followed: string[] = [];
    let lastFollowed: TaskjetEvent | undefined;
    const follow = (async () => {
      for await (const e of tj.runs.history(queuedRef.runId, { follow: true })) {
        followed.push(e.event?.type ?? "?");
        lastFollowed = e.event;
      }
    })();
    const late = tj.task({ name: "no-worker-yet", fn: async () => ({ late: true }) });
    const worker2 = await tj.worker("w2", { workflows: [late] });
    await worker2.start();
    await follow;
    expect(followed).toEqual(["RunCreated", "TaskCompleted"]);
    expect(startOf(lastFollowed)).toMatchObject({ workerName: "w2" });
    await tj.close();
    await engine.stop();
  });

  it("queue - a trigger for a task no worker ever registered waits QUEUED, and runs once a worker starts", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const ref = await tj.runNoWait("later", { n: 7 });
    await new Promise((r) => setTimeout(r, 200));
    expect(await ref.status()).toBe("QUEUED");
    await eventually(async () => ((await tj.runs.list({ statuses: ["QUEUED"] })).length === 1 ? true : undefined));
    const later = tj.task({ name: "later", fn: async (input: { n: number }) => ({ n: input.n * 2 }) });
    const worker = await tj.worker("w", { workflows: [later] });
    await worker.start();
    expect(await ref.result()).toEqual({ n: 14 });
    await tj.close();
    await engine.stop();
  });

  it("recovery - runs triggered while the engine is down are run after it restarts; finished ones are not run again", async () => {
    const namespace = uniqueNamespace();
    let engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    let calls = 0;
    const t = tj.task({
      name: "r",
      fn: async (input: { i: number }) => {
        calls++;
        return { i: input.i };
      },
    });
    const worker = await tj.worker("w", { workflows: [t], slots: 5 });
    await worker.start();
    const before = await Promise.all(Array.from({ length: 20 }, (_, i) => t.run({ i })));
    expect(before).toHaveLength(20);
    await engine.stop();
    const refs = await Promise.all(Array.from({ length: 20 }, (_, i) => t.runNoWait({ i: 100 + i })));
    await new Promise((r) => setTimeout(r, 200));
    expect(calls).toBe(20);
    engine = await startEngine(nats.url, { namespaces: [namespace] });
    const after = await Promise.all(refs.map((r) => r.result()));
    expect(after.map((o) => o.i)).toEqual(Array.from({ length: 20 }, (_, i) => 100 + i));
    expect(calls).toBe(40);
    await tj.close();
    await engine.stop();
  });

  it("rejection - malformed and unknown-shape messages on a run's subject are recorded, never silently dropped", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const nc = await connect({ servers: nats.url });
    const ref = await tj.runNoWait("nobody", { a: 1 });
    nc.publish(subjects.history(namespace, ref.runId), JSON.stringify({ v: 1, type: "Mystery", runId: ref.runId }));
    nc.publish(
      subjects.history(namespace, "bogus-run"),
      JSON.stringify({ v: 9, type: "RunCreated", runId: "bogus-run" }),
    );
    const waited = tj
      .ref("bogus-run")
      .result()
      .catch((e: unknown) => e);
    const rejectedOf = async (runId: string) => {
      const out: string[] = [];
      for await (const e of tj.runs.history(runId)) {
        if (e.event?.type === "EventRejected") out.push(e.event.data.reason);
      }
      return out.length > 0 ? out : undefined;
    };
    const reasons = await eventually(() => rejectedOf(ref.runId));
    expect(reasons[0]).toMatch(/invalid event: type/);
    expect((await tj.runs.get(ref.runId)).status).toBe("QUEUED");
    const bogus = await eventually(() => rejectedOf("bogus-run"));
    expect(bogus[0]).toMatch(/invalid event/);
    expect(await tj.runs.get("bogus-run")).toMatchObject({ status: "FAILED", error: { name: "EventRejected" } });
    expect(await waited).toBeInstanceOf(RunRejectedError);
    await nc.close();
    await tj.close();
    await engine.stop();
  });

  it("provisioning - streams and buckets are created once and updated to new settings on restart", async () => {
    const namespace = uniqueNamespace();
    // The stream earlier versions stored assignments in: it would keep a copy of each one now sent over core NATS.
    const old = await connect({ servers: nats.url });
    await (await jetstreamManager(old)).streams.add({ name: "TJ_ASSIGN", subjects: ["tj.*.assign.*"] });
    await old.close();
    let engine = await startEngine(nats.url, { namespaces: [namespace], historyMaxAgeMs: 3_600_000 });
    await engine.stop();
    engine = await startEngine(nats.url, { namespaces: [namespace], historyMaxAgeMs: 7_200_000, workerTtlMs: 9_000 });
    const nc = await connect({ servers: nats.url });
    const jsm = await jetstreamManager(nc);
    expect((await jsm.streams.info(Streams.history)).config.max_age).toBe(7_200_000 * 1e6);
    expect((await jsm.streams.info(`KV_${Buckets.workers}`)).config.max_age).toBe(9_000 * 1e6);
    // Nothing listens to a copy of every stored event: the engine tells waiters when a run ends.
    expect((await jsm.streams.info(Streams.history)).config.republish).toBeUndefined();
    await expect(jsm.streams.info("TJ_ASSIGN")).rejects.toThrow(/stream not found/);
    await nc.close();
    await engine.stop();
  });

  it("provisioning - a history stream an earlier version made with a republish rule is kept as it is, and runs finish", async () => {
    const old = await startNatsServer();
    const namespace = uniqueNamespace();
    const nc = await connect({ servers: old.url });
    const jsm = await jetstreamManager(nc);
    const republish = { src: "tj.*.hist.*", dest: "tj.{{wildcard(1)}}.stored.{{wildcard(2)}}" };
    await jsm.streams.add({ name: Streams.history, subjects: [...StreamSubjects[Streams.history]], republish });
    const engine = await startEngine(old.url, { namespaces: [namespace] });
    const tj = await connectClient(old.url, { namespace });
    const t = tj.task({ name: "t", fn: async (input: { n: number }) => ({ twice: input.n * 2 }) });
    await (await tj.worker("w", { workflows: [t] })).start();
    expect(await t.run({ n: 21 })).toEqual({ twice: 42 });
    // nats-server 2.9 refuses to change a stream's republish rule: it stays, unused.
    expect((await jsm.streams.info(Streams.history)).config.republish).toEqual(republish);
    await tj.close();
    await engine.stop();
    await nc.close();
    await old.stop();
  });

  it("bad input - each kind gets its typed error before anything is sent", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const t = tj.task({ name: "in", fn: async () => ({}) });
    const before = await historyMessages(nats.url);
    const circular: Record<string, unknown> = {};
    circular.me = circular;
    const cases: [string, () => Promise<unknown>, string][] = [
      // An array is a bulk trigger (one run per element): each element must be an object.
      ["array", () => t.runNoWait([1, 2] as unknown as Record<string, unknown>), "[0].input"],
      ["array by name", () => tj.runNoWait("in", [1, 2] as unknown as Record<string, unknown>), "input"],
      ["string", () => t.runNoWait("hello" as unknown as Record<string, unknown>), "input"],
      ["function", () => t.runNoWait({ f: () => 1 }), "input.f"],
      ["bigint", () => t.run({ n: 10n }), "input.n"],
      ["circular", () => t.runNoWait(circular), "input.me"],
      ["empty task name", () => tj.runNoWait("", {}), "taskName"],
      ["invalid task name", () => tj.runNoWait("has space", {}), "taskName"],
      ["bad priority", () => t.runNoWait({}, { priority: 9 as 1 }), "options.priority"],
      ["bad run id", () => t.runNoWait({}, { runId: "a.b" }), "options.runId"],
      ["unknown option", () => t.runNoWait({}, { retries: 3 } as never), "options"],
    ];
    for (const [what, call, field] of cases) {
      const err = await call().catch((e: unknown) => e);
      expect(err, what).toBeInstanceOf(ValidationError);
      expect((err as ValidationError).field, what).toBe(field);
      expect((err as ValidationError).code, what).toBe("INVALID_ARGUMENT");
    }
    const big = await t.runNoWait({ blob: "x".repeat(1024 * 1024) }).catch((e: unknown) => e);
    expect(big).toBeInstanceOf(PayloadTooLargeError);
    expect((big as PayloadTooLargeError).limit).toBe(1024 * 1024);
    expect((big as PayloadTooLargeError).message).toContain("input is 1048587 bytes");
    expect(() => tj.task({ name: "bad name!", fn: async () => ({}) })).toThrow(ValidationError);
    expect(() => tj.task({ name: "ok", fn: "nope" as never })).toThrow(/fn: must be a function/);
    await expect(tj.worker("w", { workflows: [t], slots: 0 })).rejects.toThrow(/slots: must be an integer/);
    await expect(tj.worker("w", { workflows: [] })).rejects.toThrow(ValidationError);
    // Options given where the name goes: the value (a task holding its client, so circular) is described, not a
    // TypeError from rendering it.
    await expect(tj.worker({ workflows: [t] } as never, undefined as never)).rejects.toThrow(
      /name: must be a non-empty string.*\[object Object\]/,
    );
    await expect(tj.worker("w", { workflows: [t], slots: 10n as never })).rejects.toThrow(
      /slots: must be an integer .*, got 10n/,
    );
    // Shapes a caller gets wrong, each named; none reaches NATS as a malformed request.
    await expect(Taskjet.connect(nats.url as never)).rejects.toThrow(/options: must be an object.*\{ servers:/);
    await expect(Taskjet.connect({ servers: 5 as never })).rejects.toThrow(/servers: must be a URL or a list/);
    await expect(tj.runs.list(null as never)).rejects.toThrow(/options: must be an object, got null/);
    await expect(tj.runs.list({ statuses: "FAILED" as never })).rejects.toThrow(/statuses: must be an array/);
    await expect(tj.runs.list({ taskName: 5 as never })).rejects.toThrow(/taskName: must be 1-128 characters.*, got 5/);
    // A name no task can have would match nothing, silently: refused as a name is.
    await expect(tj.runs.list({ taskName: "bad name!" })).rejects.toThrow(
      /taskName: must be 1-128 .*, got "bad name!"/,
    );
    await expect(tj.scheduled.list({ taskName: "" })).rejects.toThrow(/taskName: must be 1-128 .*, got ""/);
    await expect(tj.crons.list({ taskName: "a b" })).rejects.toThrow(/taskName: must be 1-128 .*, got "a b"/);
    expect(() => tj.ref("a b")).toThrow(ValidationError);
    await expect(tj.webhooks.get("a b")).rejects.toThrow(ValidationError);
    await expect(tj.ratelimits.get("a b")).rejects.toThrow(ValidationError);
    await expect(tj.crons.get("a b")).rejects.toThrow(ValidationError);
    await expect(tj.crons.delete("a b")).rejects.toThrow(ValidationError);
    await expect(tj.webhooks.delete("a b")).rejects.toThrow(ValidationError);
    // Task options: a typo is named, not dropped; idempotency is an object.
    expect(() => tj.task({ name: "typo", retrys: 3, fn: async () => ({}) } as never)).toThrow(
      /retrys: is not a task option/,
    );
    expect(() => tj.task({ name: "idem", idempotency: "input.x" as never, fn: async () => ({}) })).toThrow(
      /idempotency: must be \{ ttl\?, expression\? \}, got "input.x"/,
    );
    await expect(tj.events.push("k", {}, { metadata: { a: "b" } } as never)).rejects.toThrow(
      /metadata: is not part of a pushed event/,
    );
    // Times are ISO date-times: `new Date("12")` would read 2001-12-01, and the run would start at once.
    await expect(t.schedule("12", {})).rejects.toThrow(/at: must be a Date or an ISO date-time, got "12"/);
    await expect(tj.runs.cancel({ filters: { since: "5" } })).rejects.toThrow(
      /filters\.since: must be a Date or an ISO/,
    );
    // A run nobody created: no run to wait for.
    await expect(tj.ref("nosuchrun").result()).rejects.toThrow(RunNotFoundError);
    await expect(tj.runs.get("no.such")).rejects.toThrow(ValidationError);
    await expect(tj.runs.get("nosuchrun")).rejects.toThrow(RunNotFoundError);
    await expect(tj.runs.list({ statuses: ["DONE" as never] })).rejects.toThrow(/statuses\[0\]: must be one of/);
    // Nothing half-created: the log did not move.
    expect(await historyMessages(nats.url)).toBe(before);
    // Just under the limit is fine end to end.
    const worker = await tj.worker("w", {
      workflows: [tj.task({ name: "echo", fn: async (i: Record<string, unknown>) => i })],
    });
    await worker.start();
    const payload = { blob: "y".repeat(1024 * 1024 - 20) };
    const out = (await tj.run("echo", payload)) as { blob: string };
    expect(out.blob.length).toBe(payload.blob.length);
    // Input and output together are larger than one message: the projection keeps the run slim (no input, no
    // outputs), and reads fold the log for the rest.
    const ref = await tj.runNoWait("echo", payload);
    expect(((await ref.result()) as { blob: string }).blob.length).toBe(payload.blob.length);
    const nc = await connect({ servers: nats.url });
    const kv = await new Kvm(nc).open(Buckets.runs);
    const stored = await eventually(async () => (await kv.get(keys.run(namespace, ref.runId)))?.json<RunState>());
    expect(stored).toMatchObject({ status: "COMPLETED", slim: true, input: {} });
    expect(stored.output).toBeUndefined();
    const read = await tj.runs.get(ref.runId);
    expect((read.output as { blob: string }).blob.length).toBe(payload.blob.length);
    expect(read.slim).toBeUndefined();
    // Listed too: the list folds the history of a run whose projection is slim.
    const listed = (await tj.runs.list({ taskName: "echo" })).find((r) => r.runId === ref.runId) as RunState;
    expect((listed.input as { blob: string }).blob.length).toBe(payload.blob.length);
    expect((listed.output as { blob: string }).blob.length).toBe(payload.blob.length);
    await nc.close();
    await tj.close();
    await engine.stop();
  });

  it("closed client - every call after close() is refused with ClosedError, code CLOSED", async () => {
    const namespace = uniqueNamespace();
    const tj = await connectClient(nats.url, { namespace });
    const t = tj.task({ name: "t", fn: async () => ({}) });
    await tj.close();
    await tj.close(); // twice is fine
    const calls: [string, () => unknown][] = [
      ["run", () => t.run({})],
      ["runNoWait", () => tj.runNoWait("t", {})],
      ["worker", () => tj.worker("w", { workflows: [t] })],
      ["runs.list", () => tj.runs.list()],
      ["runs.get", () => tj.runs.get("r1")],
      ["runs.cancel", () => tj.runs.cancel({ ids: ["r1"] })],
      ["events.push", () => tj.events.push("k", {})],
      ["crons.list", () => tj.crons.list()],
      ["scheduled.list", () => tj.scheduled.list()],
      ["logs.list", () => tj.logs.list("r1")],
      ["webhooks.list", () => tj.webhooks.list()],
      ["ratelimits.list", () => tj.ratelimits.list()],
      ["workers.list", () => tj.workers.list()],
    ];
    for (const [what, call] of calls) {
      const err = await (async () => call())().catch((e: unknown) => e);
      expect(err, what).toBeInstanceOf(TaskjetError);
      expect((err as TaskjetError).code, what).toBe("CLOSED");
    }
  });

  it("bad input - output that is not a JSON object fails the task with a clear error", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const t = tj.task({ name: "weird", fn: async () => 42 as unknown as Record<string, unknown> });
    const v = tj.task({ name: "void", fn: async () => {} });
    const worker = await tj.worker("w", { workflows: [t, v] });
    await worker.start();
    await expect(t.run({})).rejects.toThrow(/output: must be a JSON object, got 42/);
    expect(await v.run({})).toEqual({});
    await tj.close();
    await engine.stop();
  });

  it("connection - failures name the server URL; a NATS without Taskjet's streams says to start an engine", async () => {
    const err = await Taskjet.connect({ servers: "nats://127.0.0.1:1" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as Error).message).toContain("nats://127.0.0.1:1");
    await expect(Taskjet.connect({ namespace: "a.b" })).rejects.toThrow(/namespace/);
    const bare = await startNatsServer();
    const tj = await connectClient(bare.url);
    const notYet = await tj.runNoWait("t", {}).catch((e: unknown) => e);
    expect(notYet).toBeInstanceOf(NotProvisionedError);
    expect((notYet as Error).message).toContain("start an engine");
    // Pushing an event and starting a worker say the same, not nats.js's "jetstream is not enabled".
    await expect(tj.events.push("k", {})).rejects.toBeInstanceOf(NotProvisionedError);
    const worker = await tj.worker("w", { workflows: [tj.task({ name: "t", fn: async () => ({}) })] });
    const notStarted = await worker.start().catch((e: unknown) => e);
    expect(notStarted).toBeInstanceOf(NotProvisionedError);
    expect((notStarted as Error).message).toContain("start an engine");
    // Reads and writes of the definition buckets too (opening one succeeds without its stream).
    const t = tj.task({ name: "t2", fn: async () => ({}) });
    for (const call of [
      () => tj.webhooks.list(),
      () => tj.webhooks.get("x"),
      () => tj.webhooks.create({ name: "x", eventKey: "a:b", auth: { type: "hmac", secret: "s3cret-s3cret" } }),
      () => t.cron("c", "0 * * * *", {}),
      () => tj.crons.list(),
      () => tj.ratelimits.upsert({ key: "k", limit: 1, duration: "SECOND" }),
      () => tj.ratelimits.list(),
    ]) {
      const e = await call().catch((x: unknown) => x);
      expect(e, call.toString()).toBeInstanceOf(NotProvisionedError);
      expect((e as Error).message).toContain("start an engine");
    }
    await tj.close();
    await bare.stop();
  });
});
