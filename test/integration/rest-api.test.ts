import { connect as connectTcp } from "node:net";
import { expandEvent, type TaskjetEvent } from "@taskjet/schemas";
import type { Taskjet } from "@taskjet/sdk";
import { describe, expect, it, onTestFinished } from "vitest";
import {
  connectClient,
  eventually,
  historyEvents,
  startEngine,
  uniqueNamespace,
  useNatsServer,
} from "../harness/fixtures.js";
import { startNatsServer } from "../harness/nats-server.js";
import { startTcpProxy } from "../harness/tcp-proxy.js";

const nats = useNatsServer();

type Json = Record<string, unknown> & { error?: { code: string; message: string; issues?: unknown[] } };

/** A JSON request to the engine's HTTP server. */
function client(base: string) {
  return async (
    method: string,
    path: string,
    o: { token?: string; body?: unknown; raw?: string; headers?: Record<string, string> } = {},
  ) => {
    const headers: Record<string, string> = { ...o.headers };
    if (o.token) headers.authorization = `Bearer ${o.token}`;
    const payload = o.raw ?? (o.body === undefined ? undefined : JSON.stringify(o.body));
    if (payload !== undefined) headers["content-type"] ??= "application/json";
    const res = await fetch(`${base}${path}`, { method, headers, ...(payload !== undefined ? { body: payload } : {}) });
    const text = await res.text();
    let body: Json = {};
    try {
      body = text ? (JSON.parse(text) as Json) : {};
    } catch {
      body = { text };
    }
    return { status: res.status, body, headers: res.headers };
  };
}

/** Bytes written to the HTTP server as they are, and its answer split at the blank line. */
async function rawRequest(address: string, bytes: string): Promise<{ head: string; body: string }> {
  const [host, port] = [
    address.slice(0, address.lastIndexOf(":")),
    Number(address.slice(address.lastIndexOf(":") + 1)),
  ];
  const text = await new Promise<string>((resolve, reject) => {
    const socket = connectTcp(port, host, () => socket.write(bytes));
    let answer = "";
    socket.on("data", (chunk) => {
      answer += chunk.toString("utf8");
    });
    socket.on("close", () => resolve(answer));
    socket.on("error", reject);
  });
  const at = text.indexOf("\r\n\r\n");
  return { head: text.slice(0, at), body: text.slice(at + 4) };
}

/** Waits until the engine has seen a new token (it follows TJ_API_TOKENS). */
async function tokenFor(tj: Taskjet, call: ReturnType<typeof client>, name: string): Promise<string> {
  const { token } = await tj.apiTokens.create({ name });
  await eventually(async () =>
    (await call("GET", `/api/v1/namespaces/${tj.namespace}/workers`, { token })).status === 200 ? true : undefined,
  );
  return token;
}

describe("REST API", () => {
  it("rest - every endpoint wants a token of its namespace, validates input naming field and value, and answers typed JSON errors", async () => {
    const namespace = uniqueNamespace();
    const other = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace, other], http: "127.0.0.1:0" });
    const call = client(`http://${engine.httpAddress()}`);
    const tj = await connectClient(nats.url, { namespace });
    const otherTj = await connectClient(nats.url, { namespace: other });
    const token = await tokenFor(tj, call, "rest");
    const otherToken = await tokenFor(otherTj, call, "rest");
    const hello = tj.task({ name: "hello", fn: async (input: { n: number }) => ({ twice: input.n * 2 }) });
    const worker = await tj.worker("w", { workflows: [hello] });
    await worker.start();
    const done = await hello.runNoWait({ n: 1 });
    await done.result();

    const ns = `/api/v1/namespaces/${namespace}`;
    const endpoints: [string, string, unknown?][] = [
      ["GET", `${ns}/runs`],
      ["POST", `${ns}/runs`, { task: "hello", input: { n: 1 } }],
      ["GET", `${ns}/runs/${done.runId}`],
      ["GET", `${ns}/runs/${done.runId}/history`],
      ["GET", `${ns}/runs/${done.runId}/logs`],
      ["POST", `${ns}/runs/${done.runId}/cancel`, {}],
      ["POST", `${ns}/runs/${done.runId}/replay`, {}],
      ["GET", `${ns}/workers`],
      ["GET", `${ns}/queues`],
      ["GET", `${ns}/crons`],
      ["GET", `${ns}/scheduled`],
    ];
    for (const [method, path, body] of endpoints) {
      const anonymous = await call(method, path, { body });
      expect(anonymous.status, `${method} ${path}`).toBe(401);
      expect(anonymous.body.error?.code).toBe("UNAUTHENTICATED");
      const foreign = await call(method, path, { body, token: otherToken });
      expect(foreign.status, `${method} ${path}`).toBe(403);
      expect(foreign.body.error?.code).toBe("FORBIDDEN");
    }
    expect((await call("GET", "/metrics")).status).toBe(401);

    // 400 names the field and the value found.
    const badLimit = await call("GET", `${ns}/runs?limit=9999`, { token });
    expect(badLimit.status).toBe(400);
    expect(badLimit.body.error).toMatchObject({
      code: "INVALID_ARGUMENT",
      message: expect.stringMatching(/query\.limit.*9999/),
    });
    expect(badLimit.body.error?.issues).toEqual([{ path: "query.limit", message: expect.stringContaining("9999") }]);
    const badStatus = await call("GET", `${ns}/runs?status=DONE`, { token });
    expect(badStatus.body.error?.message).toMatch(/query\.status\[0\].*"DONE"/);
    expect((await call("GET", `${ns}/runs?cursor=nonsense`, { token })).body.error?.message).toMatch(/cursor/);
    expect((await call("GET", `${ns}/runs?since=yesterday`, { token })).body.error?.message).toMatch(
      /query\.since.*"yesterday"/,
    );
    expect((await call("GET", `${ns}/runs?colour=red`, { token })).status).toBe(400);
    const badPriority = await call("POST", `${ns}/runs`, { token, body: { task: "hello", input: {}, priority: 7 } });
    expect(badPriority.status).toBe(400);
    expect(badPriority.body.error?.message).toMatch(/body\.priority.*7/);
    const badInput = await call("POST", `${ns}/runs`, { token, body: { task: "hello", input: "text" } });
    expect(badInput.body.error?.message).toMatch(/body\.input.*"text"/);
    const badTask = await call("POST", `${ns}/runs`, { token, body: { task: "no spaces!", input: {} } });
    expect(badTask.body.error?.message).toMatch(/body\.task.*"no spaces!"/);
    const unknownField = await call("POST", `${ns}/runs`, { token, body: { task: "hello", inptu: {} } });
    expect(unknownField.status).toBe(400);
    expect(unknownField.body.error?.message).toContain("inptu");
    const notJson = await call("POST", `${ns}/runs`, { token, raw: "{nope" });
    expect(notJson).toMatchObject({ status: 400, body: { error: { code: "INVALID_ARGUMENT" } } });
    const huge = await call("POST", `${ns}/runs`, {
      token,
      body: { task: "hello", input: { s: "x".repeat(1_100_000) } },
    });
    expect(huge).toMatchObject({ status: 413, body: { error: { code: "PAYLOAD_TOO_LARGE" } } });
    const xmlBody = await call("POST", `${ns}/runs`, {
      token,
      raw: "<a/>",
      headers: { "content-type": "application/xml" },
    });
    expect(xmlBody).toMatchObject({ status: 415, body: { error: { code: "INVALID_ARGUMENT" } } });
    // Plain text is read as JSON (fetch sends a string body so by default); an empty body is no body.
    const plain = await call("POST", `${ns}/runs`, {
      token,
      raw: JSON.stringify({ task: "hello", input: { n: 2 } }),
      headers: { "content-type": "text/plain;charset=UTF-8" },
    });
    expect(plain).toMatchObject({ status: 201, body: { existing: false } });
    const emptyCancel = await call("POST", `${ns}/runs/${plain.body.runId}/cancel`, {
      token,
      raw: "",
      headers: { "content-type": "application/json" },
    });
    expect(emptyCancel.status).not.toBe(400);
    // Refused by Node's HTTP parser before any route, in the same shape: headers over its limit, a request not HTTP.
    const bigHeaders = await call("GET", `${ns}/runs`, { token, headers: { "x-pad": "p".repeat(20_000) } });
    expect(bigHeaders).toMatchObject({
      status: 431,
      body: { error: { code: "PAYLOAD_TOO_LARGE", message: expect.stringMatching(/request headers/) } },
    });
    // Refused by the router, in the same shape: a path segment too long to be an id, or one that does not decode.
    const longId = await call("GET", `${ns}/runs/${"x".repeat(101)}`, { token });
    expect(longId).toMatchObject({ status: 414, body: { error: { code: "INVALID_ARGUMENT" } } });
    const badEscape = await call("GET", `${ns}/runs/%zz`, { token });
    expect(badEscape).toMatchObject({ status: 400, body: { error: { code: "INVALID_ARGUMENT" } } });
    const notHttp = await rawRequest(engine.httpAddress() as string, "HELLO THERE\r\n\r\n");
    expect(notHttp.head).toMatch(/^HTTP\/1\.1 400 /);
    expect(JSON.parse(notHttp.body)).toMatchObject({ error: { code: "INVALID_ARGUMENT" } });
    const badId = await call("GET", `${ns}/runs/a$b`, { token });
    expect(badId.status).toBe(400);
    expect(badId.body.error?.message).toMatch(/id.*"a\$b"/);
    const badTrace = await call("POST", `${ns}/runs`, { token, body: { task: "hello", traceparent: "00-zz" } });
    expect(badTrace.body.error?.message).toMatch(/body\.traceparent.*W3C/);

    // 404 for a run that does not exist, on every route about one.
    for (const [method, suffix] of [
      ["GET", ""],
      ["GET", "/history"],
      ["GET", "/logs"],
      ["POST", "/cancel"],
      ["POST", "/replay"],
    ] as const) {
      const missing = await call(method, `${ns}/runs/nope${suffix}`, {
        token,
        ...(method === "POST" ? { body: {} } : {}),
      });
      expect(missing, `${method} ${suffix}`).toMatchObject({ status: 404, body: { error: { code: "RUN_NOT_FOUND" } } });
    }

    // 409 for an operation that does not apply: cancelling a finished run, replaying an unfinished one.
    const cancelDone = await call("POST", `${ns}/runs/${done.runId}/cancel`, { token });
    expect(cancelDone).toMatchObject({ status: 409, body: { error: { code: "RUN_FINISHED" } } });
    const waiting = await tj.runNoWait("nobody-runs-this", {});
    const replayQueued = await call("POST", `${ns}/runs/${waiting.runId}/replay`, { token, body: {} });
    expect(replayQueued).toMatchObject({ status: 409, body: { error: { code: "REPLAY_REFUSED" } } });

    await worker.stop();
    await otherTj.close();
    await tj.close();
    await engine.stop();
  });

  it("rest - trigger, read, list with filters and cursor paging, cancel, replay, workers, queues, crons, scheduled", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace], http: "127.0.0.1:0" });
    const call = client(`http://${engine.httpAddress()}`);
    const tj = await connectClient(nats.url, { namespace });
    const token = await tokenFor(tj, call, "rest");
    const ns = `/api/v1/namespaces/${namespace}`;
    const hello = tj.task({
      name: "hello",
      fn: async (input: { n: number; fail?: boolean }, ctx) => {
        ctx.logger.info("saying hello", { n: input.n });
        if (input.fail) throw new Error(`no ${input.n}`);
        return { twice: input.n * 2 };
      },
    });
    const other = tj.task({ name: "other", fn: async () => ({}) });
    const worker = await tj.worker("rest-worker", { workflows: [hello, other], slots: 7, labels: { zone: "a" } });
    await worker.start();

    // POST runs, then GET runs/:id completes.
    const posted = await call("POST", `${ns}/runs`, {
      token,
      body: { task: "hello", input: { n: 21 }, additionalMetadata: { env: "prod" }, priority: 2 },
    });
    expect(posted).toMatchObject({ status: 201, body: { runId: expect.any(String), existing: false } });
    const runId = posted.body.runId as string;
    expect(posted.headers.get("location")).toBe(`${ns}/runs/${runId}`);
    const finished = await eventually(async () => {
      const r = await call("GET", `${ns}/runs/${runId}`, { token });
      return r.body.status === "COMPLETED" ? r : undefined;
    });
    expect(finished.body).toMatchObject({ runId, status: "COMPLETED", output: { twice: 42 }, priority: 2 });
    expect(finished.body).toEqual(JSON.parse(JSON.stringify(await tj.runs.get(runId))));

    // Idempotency key: the second trigger answers the first run (200, existing).
    const once = { task: "hello", input: { n: 1 }, idempotencyKey: "k-1" };
    const first = await call("POST", `${ns}/runs`, { token, body: once });
    const second = await call("POST", `${ns}/runs`, { token, body: once });
    expect(first.status).toBe(201);
    expect(second).toMatchObject({ status: 200, body: { runId: first.body.runId, existing: true } });

    // History and logs.
    const history = await call("GET", `${ns}/runs/${runId}/history`, { token });
    expect(history.status).toBe(200);
    // The stored events as they are (the SDK's history), whose facts are the run's start, then its completion: a
    // short attempt's result carries its start, a longer one (waiting for its log line's ack) recorded it alone.
    const events = (history.body.events as { seq: number; event: TaskjetEvent }[]).map((e) => e.event);
    expect(events).toEqual(await historyEvents(tj, runId));
    expect(events.flatMap((e) => expandEvent(e)).map((e) => e.type)).toEqual([
      "RunCreated",
      "TaskStarted",
      "TaskCompleted",
    ]);
    const logs = await call("GET", `${ns}/runs/${runId}/logs`, { token });
    expect(logs.body.lines).toEqual([
      expect.objectContaining({ level: "info", message: "saying hello", fields: { n: 21 }, attempt: 0 }),
    ]);

    // Lists: 12 more runs (3 failing, 3 of another task, metadata on some), paged 5 at a time.
    const refs = [];
    for (let i = 0; i < 12; i++) {
      const fail = i % 4 === 0;
      const task = i % 4 === 1 ? other : hello;
      const tags: Record<string, string> = i === 11 ? { tags: "x,y=z" } : {}; // a value with a comma and an "="
      refs.push(await task.runNoWait({ n: i, fail }, { additionalMetadata: { batch: i < 6 ? "a" : "b", ...tags } }));
    }
    await Promise.allSettled(refs.map((r) => r.result()));
    const total = refs.length + 2; // the POSTed run and the idempotent one
    const all = await eventually(async () => {
      const r = await call("GET", `${ns}/runs?limit=500&counts=true`, { token });
      return (r.body.runs as unknown[]).length === total ? r : undefined;
    });
    expect(all.body.counts).toMatchObject({ COMPLETED: total - 3, FAILED: 3, QUEUED: 0 });
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page: Awaited<ReturnType<typeof call>> = await call(
        "GET",
        `${ns}/runs?limit=5${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`,
        { token },
      );
      expect(page.status).toBe(200);
      seen.push(...(page.body.runs as { runId: string }[]).map((r) => r.runId));
      cursor = page.body.nextCursor as string | null;
      pages++;
      // A run created while paging lands on the first page, never shifts the later ones.
      if (pages === 1) await hello.runNoWait({ n: 99 });
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toEqual((all.body.runs as { runId: string }[]).map((r) => r.runId));
    const listed = all.body.runs as { runId: string; createdAt: string; status: string; input?: unknown }[];
    expect(listed[0]?.input).toBeUndefined(); // summaries: no inputs and outputs in lists
    for (let i = 1; i < listed.length; i++) {
      expect((listed[i - 1] as { createdAt: string }).createdAt >= (listed[i] as { createdAt: string }).createdAt).toBe(
        true,
      );
    }
    const failed = await call("GET", `${ns}/runs?status=FAILED`, { token });
    expect((failed.body.runs as { status: string }[]).map((r) => r.status)).toEqual(["FAILED", "FAILED", "FAILED"]);
    const ofOther = await call("GET", `${ns}/runs?task=other`, { token });
    expect(ofOther.body.runs).toHaveLength(3);
    const batchB = await call("GET", `${ns}/runs?metadata=batch=b&status=COMPLETED,FAILED`, { token });
    expect((batchB.body.runs as unknown[]).length).toBe(6);
    const byEnv = await call("GET", `${ns}/runs?metadata=env%3Dprod`, { token });
    expect((byEnv.body.runs as { runId: string }[]).map((r) => r.runId)).toEqual([runId]);
    const byTags = await call("GET", `${ns}/runs?metadata=tags%3Dx%2Cy%3Dz&metadata=batch=b`, { token });
    expect((byTags.body.runs as { runId: string }[]).map((r) => r.runId)).toEqual([refs[11]?.runId]);
    const future = await call("GET", `${ns}/runs?since=${new Date(Date.now() + 60_000).toISOString()}`, { token });
    expect(future.body.runs).toEqual([]);
    const recent = await call(
      "GET",
      `${ns}/runs?since=1h&until=${encodeURIComponent(new Date(Date.now() + 1000).toISOString())}`,
      {
        token,
      },
    );
    expect((recent.body.runs as unknown[]).length).toBeGreaterThanOrEqual(total);

    // Replay a failed run; cancel a queued one.
    const failedId = (failed.body.runs as { runId: string }[])[0]?.runId as string;
    const replay = await call("POST", `${ns}/runs/${failedId}/replay`, { token, body: { reason: "try again" } });
    expect(replay).toMatchObject({ status: 200, body: { runId: failedId, replayed: true } });
    await eventually(async () => ((await tj.runs.get(failedId)).replays === 1 ? true : undefined));
    const stuck = await tj.runNoWait("nobody-runs-this", { x: 1 });
    const cancelled = await call("POST", `${ns}/runs/${stuck.runId}/cancel`, { token, body: { reason: "no worker" } });
    expect(cancelled).toMatchObject({ status: 200, body: { runId: stuck.runId, cancelled: true } });
    expect(await tj.runs.get(stuck.runId)).toMatchObject({ status: "CANCELLED", error: { message: "no worker" } });

    // Workers: the registration with its load.
    const workers = await call("GET", `${ns}/workers`, { token });
    expect(workers.body.workers).toEqual([
      expect.objectContaining({
        name: "rest-worker",
        workerId: worker.id,
        slots: 7,
        labels: { zone: "a" },
        tasks: ["hello", "other"],
        heartbeatAgeMs: expect.any(Number),
      }),
    ]);

    // Queues, from the leader's memory: three runs of a task no worker takes, waiting.
    const queuedRefs = await Promise.all([1, 2, 3].map((i) => tj.runNoWait("unserved", { i })));
    const queues = await eventually(async () => {
      const r = await call("GET", `${ns}/queues`, { token });
      const q = (r.body.queues as { taskName: string; queued: number }[]).find((x) => x.taskName === "unserved");
      return q?.queued === 3 ? r : undefined;
    });
    expect(queues.body.source).toBe("leader");
    // ?task= filters to that task's queue (it listed every task); an unknown parameter is 400, as on other lists.
    const one = await call("GET", `${ns}/queues?task=unserved`, { token });
    expect((one.body.queues as { taskName: string }[]).map((q) => q.taskName)).toEqual(["unserved"]);
    expect((await call("GET", `${ns}/queues?tsk=unserved`, { token })).status).toBe(400);
    expect((await call("GET", `${ns}/workers?x=1`, { token })).status).toBe(400);
    expect(queues.body.queues).toContainEqual(
      expect.objectContaining({
        taskName: "unserved",
        queued: 3,
        running: 0,
        workers: 0,
        oldestAgeMs: expect.any(Number),
      }),
    );
    expect(queues.body).toMatchObject({ concurrency: [], rateLimits: [] });

    // Crons and scheduled runs.
    await hello.cron("nightly", "0 3 * * *", { n: 3 }, { timezone: "Europe/Paris" });
    const crons = await call("GET", `${ns}/crons?task=hello`, { token });
    expect(crons.body.crons).toEqual([
      expect.objectContaining({
        name: "nightly",
        taskName: "hello",
        expression: "0 3 * * *",
        timezone: "Europe/Paris",
      }),
    ]);
    const at = new Date(Date.now() + 3_600_000).toISOString();
    const scheduledPost = await call("POST", `${ns}/runs`, {
      token,
      body: { task: "hello", input: { n: 5 }, scheduleAt: at },
    });
    expect(scheduledPost.status).toBe(201);
    const tooFar = await call("POST", `${ns}/runs`, {
      token,
      body: { task: "hello", scheduleAt: new Date(Date.now() + 40 * 86_400_000).toISOString() },
    });
    expect(tooFar).toMatchObject({
      status: 400,
      body: { error: { message: expect.stringMatching(/^body\.scheduleAt: must be within 30 days/) } },
    });
    const scheduled = await eventually(async () => {
      const r = await call("GET", `${ns}/scheduled?task=hello`, { token });
      return (r.body.runs as unknown[]).length === 1 ? r : undefined;
    });
    expect(scheduled.body.runs).toEqual([
      expect.objectContaining({ runId: scheduledPost.body.runId, status: "SCHEDULED", scheduledAt: at }),
    ]);
    // The times the SDK's schedule() takes, read as it reads them (a date alone is its midnight UTC).
    const day = new Date(Date.now() + 2 * 86_400_000).toISOString().slice(0, 10);
    const byDate = await call("POST", `${ns}/runs`, { token, body: { task: "hello", scheduleAt: day } });
    expect(byDate.status).toBe(201);
    expect((await tj.runs.get(byDate.body.runId as string)).scheduledAt).toBe(`${day}T00:00:00.000Z`);
    const local = `${day}T10:00:00`;
    const byLocal = await call("POST", `${ns}/runs`, { token, body: { task: "hello", scheduleAt: local } });
    expect((await tj.runs.get(byLocal.body.runId as string)).scheduledAt).toBe(new Date(local).toISOString());
    expect(await call("POST", `${ns}/runs`, { token, body: { task: "hello", scheduleAt: "tomorrow" } })).toMatchObject({
      status: 400,
      body: {
        error: {
          message: 'body.scheduleAt: must be an ISO 8601 date-time such as 2026-12-01T09:00:00Z, got "tomorrow"',
        },
      },
    });
    for (const r of [byDate, byLocal]) await tj.ref(r.body.runId as string).cancel("test over");

    for (const r of queuedRefs) await r.cancel("test over");
    await worker.stop();
    await tj.close();
    await engine.stop();
  });

  it("rest - a runId naming a run is that run for its task (200, existing) and 409 RUN_ID_TAKEN for another task; nothing created", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace], http: "127.0.0.1:0" });
    const call = client(`http://${engine.httpAddress()}`);
    const tj = await connectClient(nats.url, { namespace });
    const token = await tokenFor(tj, call, "rest");
    const ns = `/api/v1/namespaces/${namespace}`;
    const echo = tj.task({ name: "echo", fn: async (input: Record<string, unknown>) => input });
    const worker = await tj.worker("w", { workflows: [echo] });
    await worker.start();

    // The same run id again, for the same task: that run, nothing created (as the SDK's runNoWait answers).
    const runId = `rest-${namespace}`;
    const created = await call("POST", `${ns}/runs`, { token, body: { task: "echo", input: { a: 1 }, runId } });
    expect(created).toMatchObject({ status: 201, body: { runId, existing: false } });
    await tj.ref(runId).result();
    const again = await call("POST", `${ns}/runs`, { token, body: { task: "echo", input: { a: 1 }, runId } });
    expect(again).toMatchObject({ status: 200, body: { runId, existing: true } });
    expect(again.headers.get("location")).toBe(`${ns}/runs/${runId}`);
    expect(await tj.runNoWait("echo", { a: 1 }, { runId })).toMatchObject({ runId, existing: true });
    // Requests at once naming a new run id: the append decides, one creates it and the others answer that run.
    const racedId = `${runId}-raced`;
    const raced = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        call("POST", `${ns}/runs`, { token, body: { task: "echo", input: { i }, runId: racedId } }),
      ),
    );
    expect(raced.map((r) => r.status).sort()).toEqual([200, 200, 200, 200, 200, 200, 200, 201]);
    const winner = raced.findIndex((r) => r.status === 201);
    expect(await tj.ref(racedId).result()).toEqual({ i: winner });
    // For another task: refused, naming both; the run is untouched.
    const stored = await historyEvents(tj, runId);
    const taken = await call("POST", `${ns}/runs`, { token, body: { task: "long", input: {}, runId } });
    expect(taken.status).toBe(409);
    expect(taken.body.error).toEqual({
      code: "RUN_ID_TAKEN",
      message: expect.stringMatching(new RegExp(`${runId}.*echo.*long`)),
    });
    const scheduledTaken = await call("POST", `${ns}/runs`, {
      token,
      body: { task: "long", input: {}, runId, scheduleAt: new Date(Date.now() + 60_000).toISOString() },
    });
    expect(scheduledTaken).toMatchObject({ status: 409, body: { error: { code: "RUN_ID_TAKEN" } } });
    expect(await tj.runs.get(runId)).toMatchObject({ workflowName: "echo", status: "COMPLETED", output: { a: 1 } });
    expect(await historyEvents(tj, runId)).toEqual(stored);
    // A run id nobody has: created.
    const fresh = await call("POST", `${ns}/runs`, { token, body: { task: "echo", runId: `${runId}-2` } });
    expect(fresh).toMatchObject({ status: 201, body: { runId: `${runId}-2`, existing: false } });

    await worker.stop();
    await tj.close();
    await engine.stop();
  });

  it("rest - POST runs whose append NATS stored but never confirmed is 503 naming the run id, and sending it again with that id makes one run", async () => {
    // The engine alone talks through the proxy; the client talks to the server directly.
    const proxy = await startTcpProxy({ host: "127.0.0.1", port: nats.server.port });
    onTestFinished(() => proxy.close());
    const namespace = uniqueNamespace();
    const engine = await startEngine(proxy.url, { namespaces: [namespace], http: "127.0.0.1:0" });
    const call = client(`http://${engine.httpAddress()}`);
    const tj = await connectClient(nats.url, { namespace });
    const token = await tokenFor(tj, call, "rest");
    const ns = `/api/v1/namespaces/${namespace}`;
    // From here the server's replies to the engine are lost: its append is stored, its ack never arrives.
    proxy.deafen();
    const lost = await call("POST", `${ns}/runs`, { token, body: { task: "echo", input: { n: 1 } } });
    expect(lost.status).toBe(503);
    const runId = /"runId": "([^"]+)"/.exec(lost.body.error?.message ?? "")?.[1] as string;
    expect(lost.body.error).toEqual({
      code: "UNAVAILABLE",
      message: expect.stringMatching(/may have been recorded; send it again with "runId": "[^"]+" to have one run/),
    });
    expect(await tj.runs.get(runId)).toMatchObject({ workflowName: "echo", input: { n: 1 } });
    proxy.cut(); // the engine reconnects, through a proxy that passes everything now
    const again = await eventually(async () => {
      const res = await call("POST", `${ns}/runs`, { token, body: { task: "echo", input: { n: 1 }, runId } });
      return res.status === 503 ? undefined : res;
    });
    expect(again).toMatchObject({ status: 200, body: { runId, existing: true } });
    // Its acks lost for a while only: the append's retry finds its own first try stored, a run this request created.
    proxy.deafen();
    const slow = call("POST", `${ns}/runs`, { token, body: { task: "echo", input: { n: 2 } } });
    // Past its first try's timeout: later tries meet the stored first one once the engine reconnects.
    await new Promise((resolve) => setTimeout(resolve, 6000));
    proxy.cut();
    expect(await slow).toMatchObject({ status: 201, body: { existing: false } });
    await tj.close();
    await engine.stop();
  });

  it("rest - since/until take an ISO time or a duration ago in ms, s, m, h or d (7d, 1d), and a refusal names what is accepted", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace], http: "127.0.0.1:0" });
    const call = client(`http://${engine.httpAddress()}`);
    const tj = await connectClient(nats.url, { namespace });
    const token = await tokenFor(tj, call, "rest");
    const ns = `/api/v1/namespaces/${namespace}`;
    const echo = tj.task({ name: "echo", fn: async (input: Record<string, unknown>) => input });
    const worker = await tj.worker("w", { workflows: [echo] });
    await worker.start();
    const ref = await echo.runNoWait({});
    await ref.result();
    const week = await eventually(async () => {
      const r = await call("GET", `${ns}/runs?since=7d`, { token });
      return (r.body.runs as unknown[] | undefined)?.length === 1 ? r : undefined;
    });
    expect(week.status).toBe(200);
    expect((week.body.runs as { runId: string }[])[0]?.runId).toBe(ref.runId);
    expect(await call("GET", `${ns}/runs?until=1d`, { token })).toMatchObject({ status: 200, body: { runs: [] } });
    for (const since of ["1d", "15m", "2h", "90s", "500ms", "99999999999999d"]) {
      const r = await call("GET", `${ns}/runs?since=${since}`, { token });
      expect(r.status, since).toBe(200);
      expect((r.body.runs as unknown[]).length, since).toBe(1);
    }
    const badSince = await call("GET", `${ns}/runs?since=7w`, { token });
    expect(badSince.status).toBe(400);
    expect(badSince.body.error?.message).toMatch(/query\.since: must be an ISO time .*7d.*"7w"/);
    // What Date.parse reads in legacy forms (`5` as 2001-05-01) is no ISO time either.
    for (const legacy of ["5", "-1", "1.5"]) {
      const r = await call("GET", `${ns}/runs?until=${legacy}`, { token });
      expect(r.status, legacy).toBe(400);
      expect(r.body.error?.message, legacy).toMatch(/query\.until: must be an ISO time/);
    }
    await worker.stop();
    await tj.close();
    await engine.stop();
  });

  it("rest - an input whose RunCreated event is over the server's max_payload is 413 PAYLOAD_TOO_LARGE, not 500; a __proto__ key is refused by name", async () => {
    // The production default max_payload (1 MiB), where the harness raises it to 2 MiB.
    const small = await startNatsServer({ maxPayload: "1048576" });
    onTestFinished(() => small.stop());
    const namespace = uniqueNamespace();
    const engine = await startEngine(small.url, { namespaces: [namespace], http: "127.0.0.1:0" });
    const call = client(`http://${engine.httpAddress()}`);
    const tj = await connectClient(small.url, { namespace });
    const token = await tokenFor(tj, call, "rest");
    const ns = `/api/v1/namespaces/${namespace}`;

    // Within the HTTP body limit, an input within the SDK's limit (1 MiB less 8 KiB), but the RunCreated event
    // (input, metadata and the envelope) is over the server's max_payload.
    const input = { s: "x".repeat(1_040_000) };
    const body = { task: "echo", input, additionalMetadata: { pad: "" } };
    body.additionalMetadata.pad = "y".repeat(1024 * 1024 - Buffer.byteLength(JSON.stringify(body)));
    expect(Buffer.byteLength(JSON.stringify(body))).toBe(1024 * 1024);
    const near = await call("POST", `${ns}/runs`, { token, body });
    expect(near.status).toBe(413);
    expect(near.body.error).toEqual({
      code: "PAYLOAD_TOO_LARGE",
      message: expect.stringMatching(/input 1040008 bytes.*max_payload 1048576 bytes/),
    });
    const fits = await call("POST", `${ns}/runs`, { token, body: { task: "echo", input } });
    expect(fits.status).toBe(201);

    // Valid JSON that Fastify refuses: the answer says what is refused.
    const proto = await call("POST", `${ns}/runs`, { token, raw: '{"task":"echo","input":{"__proto__":{"x":1}}}' });
    expect(proto.status).toBe(400);
    expect(proto.body.error).toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/__proto__/) });
    const notJson = await call("POST", `${ns}/runs`, { token, raw: "{nope" });
    expect(notJson.status).toBe(400);
    expect(notJson.body.error).toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/JSON/) });

    await tj.runs.cancel({ ids: [fits.body.runId as string] });
    await tj.close();
    await engine.stop();
  });

  it("rest - a standby replica serves the API too: reads from NATS, queues asked of the leader", async () => {
    const namespace = uniqueNamespace();
    const leader = await startEngine(nats.url, { namespaces: [namespace], http: "127.0.0.1:0" });
    const standby = await startEngine(nats.url, { namespaces: [namespace], http: "127.0.0.1:0" });
    expect(standby.leading()).toEqual([]);
    const call = client(`http://${standby.httpAddress()}`);
    const tj = await connectClient(nats.url, { namespace });
    const token = await tokenFor(tj, call, "standby");
    const ns = `/api/v1/namespaces/${namespace}`;
    const posted = await call("POST", `${ns}/runs`, { token, body: { task: "later", input: {} } });
    expect(posted.status).toBe(201);
    const queues = await eventually(async () => {
      const r = await call("GET", `${ns}/queues`, { token });
      return (r.body.queues as { queued: number }[])[0]?.queued === 1 ? r : undefined;
    });
    expect(queues.body).toMatchObject({ source: "leader", queues: [{ taskName: "later", queued: 1 }] });
    expect((await call("GET", `${ns}/runs/${posted.body.runId}`, { token })).body).toMatchObject({ status: "QUEUED" });
    await tj.runs.cancel({ ids: [posted.body.runId as string] });
    await standby.stop();
    await leader.stop();
    await tj.close();
  });

  it("openapi - the document is generated from the schemas and covers every route the server serves", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace], http: "127.0.0.1:0" });
    const call = client(`http://${engine.httpAddress()}`);
    const doc = await call("GET", "/api/v1/openapi.json"); // no token needed
    expect(doc.status).toBe(200);
    expect(doc.body.openapi).toBe("3.1.0");
    const paths = doc.body.paths as Record<string, Record<string, Record<string, unknown>>>;
    const expected = [
      "get /api/v1/namespaces/{ns}/runs",
      "post /api/v1/namespaces/{ns}/runs",
      "get /api/v1/namespaces/{ns}/runs/{id}",
      "get /api/v1/namespaces/{ns}/runs/{id}/history",
      "get /api/v1/namespaces/{ns}/runs/{id}/logs",
      "post /api/v1/namespaces/{ns}/runs/{id}/cancel",
      "post /api/v1/namespaces/{ns}/runs/{id}/replay",
      "get /api/v1/namespaces/{ns}/workers",
      "get /api/v1/namespaces/{ns}/queues",
      "get /api/v1/namespaces/{ns}/crons",
      "get /api/v1/namespaces/{ns}/scheduled",
      "get /metrics",
      "get /api/v1/openapi.json",
      "post /api/v1/namespaces/{ns}/webhooks/{name}",
      "get /api/v1/dashboard/session",
      "get /api/v1/namespaces/{ns}/events/stream",
      "get /api/v1/namespaces/{ns}/runs/{id}/chunks",
    ];
    const documented = Object.entries(paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m} ${path}`));
    for (const op of expected) expect(documented).toContain(op);
    for (const [path, ops] of Object.entries(paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const name = `${method} ${path}`;
        expect(op["x-taskjet-undocumented"], `${name} has no schema`).toBeUndefined();
        const responses = op.responses as Record<string, { content?: Record<string, { schema?: unknown }> }>;
        const ok = Object.entries(responses).find(([s]) => s.startsWith("2"));
        expect(ok, `${name} documents its success`).toBeDefined();
        const params = ((op.parameters ?? []) as { name: string; in: string; schema: unknown }[]).filter(
          (p) => p.in === "path",
        );
        expect(params.map((p) => p.name).sort(), name).toEqual(
          [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort(),
        );
        for (const p of params) expect(p.schema).toBeTruthy();
      }
    }
    // Schemas come from zod: the trigger's body and the list's page are described field by field.
    const trigger = paths["/api/v1/namespaces/{ns}/runs"]?.post as {
      requestBody: {
        required: boolean;
        content: { "application/json": { schema: { properties: Record<string, unknown>; required: string[] } } };
      };
    };
    // A trigger needs its body; a cancellation's is optional (`{ reason? }`).
    expect(trigger.requestBody.required).toBe(true);
    const cancel = paths["/api/v1/namespaces/{ns}/runs/{id}/cancel"]?.post as { requestBody: { required: boolean } };
    expect(cancel.requestBody.required).toBe(false);
    const body = trigger.requestBody.content["application/json"].schema;
    expect(Object.keys(body.properties)).toEqual(
      expect.arrayContaining(["task", "input", "idempotencyKey", "additionalMetadata", "priority", "traceparent"]),
    );
    expect(body.required).toContain("task");
    expect(body.properties.priority).toMatchObject({ type: "integer", minimum: 1, maximum: 3 });
    const list = paths["/api/v1/namespaces/{ns}/runs"]?.get as {
      parameters: { name: string }[];
      responses: Record<string, { content: Record<string, { schema: { properties: Record<string, unknown> } }> }>;
    };
    expect(list.parameters.map((p) => p.name)).toEqual(
      expect.arrayContaining(["ns", "status", "task", "since", "until", "metadata", "limit", "cursor"]),
    );
    expect(Object.keys(list.responses["200"]?.content["application/json"]?.schema.properties ?? {})).toEqual(
      expect.arrayContaining(["runs", "nextCursor"]),
    );
    await engine.stop();
  });
});
