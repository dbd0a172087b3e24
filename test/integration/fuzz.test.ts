import { createHmac } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type JetStreamManager, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { Taskjet, TaskjetEvent } from "@taskjet/sdk";
import { describe, expect, it } from "vitest";
import { runCli } from "../harness/cli.js";
import {
  connectClient,
  eventually,
  historyTypes,
  startEngine,
  uniqueNamespace,
  useNatsServer,
} from "../harness/fixtures.js";

/**
 * Hostile input for a bounded time (FUZZ_MS, default 20 s): random bytes, JSON-ish garbage and mutated copies of real
 * events on the history, command and event subjects, and random requests to the HTTP endpoints, while normal runs go
 * on. Afterwards the engine still serves, nothing it accepted crashed it, and what it refused is recorded.
 * Reproduce a failure with TASKJET_FUZZ_SEED=<the seed in the failure message>.
 */

const nats = useNatsServer();
const FUZZ_MS = Number(process.env.TASKJET_FUZZ_MS ?? 20_000);
const SEED = Number(process.env.TASKJET_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));

/** mulberry32: small, seeded, good enough to pick garbage. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)] as T;
  return { next, int, pick, chance: (p: number) => next() < p };
}
type Rng = ReturnType<typeof prng>;

const FIELDS = [
  "v",
  "id",
  "type",
  "runId",
  "taskRunId",
  "at",
  "data",
  "input",
  "output",
  "attempt",
  "tasks",
  "taskName",
  "parents",
  "ref",
  "role",
  "trigger",
  "kind",
  "priority",
  "workerId",
  "expectedSeq",
  "error",
  "policy",
  "started",
  "retries",
  "index",
  "until",
  "key",
  "filter",
  "payload",
  "additionalMetadata",
  "__proto__",
  "constructor",
  "prototype",
  "reason",
];
const TYPES = [
  "RunCreated",
  "TaskQueued",
  "TaskAssigned",
  "TaskStarted",
  "TaskCompleted",
  "TaskFailed",
  "TaskRetryScheduled",
  "TaskTimedOut",
  "RunCancelled",
  "TaskReassigned",
  "TaskCancelled",
  "TaskSlotReleased",
  "ChildrenSpawned",
  "DurableCheckpoint",
  "DurableSleeping",
  "DurableWoke",
  "ReportIgnored",
  "EventRejected",
  "RunReplayed",
  "Nope",
];

function randomString(r: Rng): string {
  switch (r.int(6)) {
    case 0:
      return "";
    case 1:
      return "x".repeat(r.int(5000));
    case 2:
      return String.fromCodePoint(...Array.from({ length: r.int(20) }, () => r.int(0x2ffff)));
    case 3:
      return r.pick(TYPES);
    case 4:
      return new Date(r.int(2 ** 42)).toISOString();
    default:
      return Math.random().toString(36).slice(2);
  }
}

function randomJson(r: Rng, depth = 0): unknown {
  const kind = depth > 4 ? r.int(4) : r.int(7);
  switch (kind) {
    case 0:
      return r.pick([null, true, false, 0, -1, 1.5, 2 ** 53 + 2, -(2 ** 31), 1e308]);
    case 1:
      return randomString(r);
    case 2:
      return r.int(1000);
    case 3:
      return r.pick([[], {}, [null], { "": "" }]);
    case 4:
      return Array.from({ length: r.int(5) }, () => randomJson(r, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = r.int(6); i > 0; i--)
        Object.defineProperty(o, r.pick(FIELDS), {
          value: randomJson(r, depth + 1),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      return o;
    }
  }
}

/** A value nested `n` levels deep (as text: building it would overflow before it is sent). */
const deep = (n: number) => `${'{"a":'.repeat(n)}1${"}".repeat(n)}`;

/** One of the ways to set a field wrong. */
function mutate(r: Rng, event: Record<string, unknown>, runId: string): Record<string, unknown> {
  const copy = structuredClone(event) as Record<string, unknown>;
  copy.runId = runId;
  const data = (copy.data ?? {}) as Record<string, unknown>;
  for (let n = 1 + r.int(3); n > 0; n--) {
    const target = r.chance(0.5) ? copy : data;
    const keys = Object.keys(target);
    const key = r.chance(0.7) && keys.length > 0 ? r.pick(keys) : r.pick(FIELDS);
    if (key === "runId" && target === copy && r.chance(0.7)) continue; // mostly keep it on the subject's run
    if (r.chance(0.2)) delete target[key];
    else target[key] = randomJson(r);
  }
  copy.data = data;
  if (r.chance(0.3)) copy.type = r.pick(TYPES);
  return copy;
}

const encode = (value: unknown) => new TextEncoder().encode(typeof value === "string" ? value : JSON.stringify(value));
const randomBytes = (r: Rng) => Uint8Array.from({ length: r.int(2048) }, () => r.int(256));
const runIdOf = (r: Rng) => `fz${r.int(2 ** 30).toString(36)}${r.int(2 ** 30).toString(36)}`;

/** Messages stored on `subject` of `stream`. */
async function countOn(jsm: JetStreamManager, stream: string, subject: string): Promise<number> {
  const info = await jsm.streams.info(stream, { subjects_filter: subject });
  return Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
}

/** Real histories to mutate: a plain task, one that fails and retries, a two-task workflow; a task on events. */
async function templates(tj: Taskjet) {
  const hello = tj.task({ name: "hello", fn: async (input: { n?: number }) => ({ n: input.n ?? 0 }) });
  const flaky = tj.task({
    name: "flaky",
    retries: 1,
    fn: async (_input, ctx) => {
      if (ctx.retryCount() === 0) throw new Error("first attempt fails");
      return {};
    },
  });
  const wf = tj.workflow({ name: "pair" });
  const first = wf.task({ name: "first", fn: async () => ({ one: 1 }) });
  wf.task({
    name: "second",
    parents: [first],
    fn: async (_i, ctx) => ({ two: (ctx.parentOutput(first) as { one: number }).one + 1 }),
  });
  // Pushed events (and webhook requests) that get through start runs of this one.
  const onEvent = tj.task({ name: "on-event", onEvents: ["fz:*", "order:*"], fn: async () => ({}) });
  const worker = await tj.worker("fuzz-worker", { workflows: [hello, flaky, wf, onEvent], slots: 20 });
  await worker.start();
  const refs = [await hello.runNoWait({ n: 1 }), await flaky.runNoWait({}), await wf.runNoWait({})];
  const out: Record<string, unknown>[][] = [];
  for (const ref of refs) {
    await ref.result();
    const events: Record<string, unknown>[] = [];
    for await (const e of tj.runs.history(ref.runId)) if (e.event) events.push(e.event as TaskjetEvent as never);
    out.push(events);
  }
  return { histories: out, hello };
}

describe("fuzz", () => {
  it(
    "fuzz - hostile messages and requests for a bounded time: the engine keeps serving and records what it refused",
    async () => {
      const r = prng(SEED);
      const why = `(TASKJET_FUZZ_SEED=${SEED})`;
      const namespace = uniqueNamespace("fz");
      const engine = await startEngine(nats.url, { namespaces: [namespace], http: "127.0.0.1:0" });
      const base = `http://${engine.httpAddress()}`;
      const tj = await connectClient(nats.url, { namespace });
      const { histories, hello } = await templates(tj);
      await tj.webhooks.create({
        name: "signed",
        eventKey: "fz:signed",
        auth: { type: "hmac", secret: "whsec_fuzzfuzz" },
      });
      await tj.webhooks.create({ name: "keyed", eventKey: "fz:keyed", auth: { type: "apiKey", key: "key_fuzzfuzz" } });
      const { token } = await tj.apiTokens.create({ name: "fuzz" });

      const raw: NatsConnection = await connect({ servers: nats.url });
      const jsm = await jetstreamManager(raw);
      const sent = { garbageRuns: [] as string[], weird: new Map<string, number>(), commands: 0, http: 0 };
      const http5xx: string[] = [];
      const normal: Promise<unknown>[] = [];
      const hist = (runId: string) => `tj.${namespace}.hist.${runId}`;

      const publishOne = () => {
        switch (r.int(9)) {
          case 0: {
            // Random bytes as the first message of a run: rejected, and recorded as such.
            const runId = runIdOf(r);
            raw.publish(hist(runId), randomBytes(r));
            sent.garbageRuns.push(runId);
            break;
          }
          case 1: {
            const runId = runIdOf(r);
            raw.publish(hist(runId), encode(r.chance(0.1) ? deep(300 + r.int(20_000)) : randomJson(r)));
            sent.garbageRuns.push(runId);
            break;
          }
          case 2:
          case 3: {
            // A real history, re-targeted to a new run with a few fields set wrong, published in order.
            const runId = runIdOf(r);
            for (const e of r.pick(histories))
              raw.publish(hist(runId), encode(r.chance(0.3) ? mutate(r, e, runId) : { ...e, runId }));
            break;
          }
          case 4: {
            // A mutated event injected into a finished real run.
            const events = r.pick(histories);
            const e = r.pick(events);
            raw.publish(hist(String(e.runId)), encode(mutate(r, e, String(e.runId))));
            break;
          }
          case 5: {
            // Subjects no run id can have: nothing may loop on them.
            const subject = hist(r.pick(["a$b", "ü", "x".repeat(200), "%00", "a:b", "{}"]));
            raw.publish(subject, r.chance(0.5) ? randomBytes(r) : encode(randomJson(r)));
            sent.weird.set(subject, (sent.weird.get(subject) ?? 0) + 1);
            break;
          }
          case 6:
            raw.publish(`tj.${namespace}.cmd.${r.pick(["cancel", "replay", "x", "admin.drop"])}`, randomBytes(r));
            sent.commands++;
            break;
          default: {
            // Pushed events: garbage, too deep, or well-formed with hostile payloads.
            const key = r.pick(["fz:a", "order:paid", "x.y.z"]);
            const event = (payload: string) =>
              `{"v":1,"id":"${runIdOf(r)}","key":"${key}","payload":${payload},"additionalMetadata":{},"at":"${new Date().toISOString()}","source":"push"}`;
            const body = r.chance(0.2)
              ? deep(300 + r.int(5000))
              : r.chance(0.1)
                ? event(deep(6000 + r.int(20_000))) // well-formed, and deeper than JSON.stringify can go
                : r.chance(0.5)
                  ? JSON.stringify(randomJson(r))
                  : JSON.stringify({
                      v: 1,
                      id: runIdOf(r),
                      key,
                      payload: randomJson(r),
                      additionalMetadata: {},
                      at: new Date().toISOString(),
                      source: "push",
                    });
            raw.publish(`tj.${namespace}.event.${key}`, encode(body));
          }
        }
      };

      const request = async () => {
        const segment = (n: number) =>
          encodeURIComponent(
            randomString(r)
              .slice(0, n)
              .replace(/[\uD800-\uDFFF]/g, "?"),
          );
        const paths = [
          `/api/v1/namespaces/${namespace}/webhooks/signed`,
          `/api/v1/namespaces/${namespace}/webhooks/keyed`,
          `/api/v1/namespaces/${namespace}/webhooks/${segment(80)}`,
          `/api/v1/namespaces/${namespace}/runs/${r.pick(sent.garbageRuns.concat("x"))}`,
          `/api/v1/namespaces/${segment(40)}/runs/${runIdOf(r)}`,
          `/${"../".repeat(r.int(5))}etc/passwd`,
          "/api/v1/namespaces/%zz/runs/%",
        ];
        const path = r.pick(paths);
        const method = r.pick(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]);
        let body: Uint8Array | string | undefined;
        if (method !== "GET" && method !== "OPTIONS") {
          body = r.pick([
            () => randomBytes(r),
            () => JSON.stringify(randomJson(r)),
            () => deep(300 + r.int(20_000)),
            () => "x".repeat(1024 * 1024 + r.int(2000)), // over the body limit
            () => `{"a":${"[".repeat(r.int(3000))}`,
          ])();
        }
        const headers: Record<string, string> = {};
        const text = typeof body === "string" ? body : "";
        if (r.chance(0.5))
          headers["content-type"] = r.pick([
            "application/json",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/json; charset=utf-16",
          ]);
        if (r.chance(0.3)) headers["x-signature"] = createHmac("sha256", "whsec_fuzzfuzz").update(text).digest("hex");
        if (r.chance(0.3)) headers["x-api-key"] = "key_fuzzfuzz";
        if (r.chance(0.3))
          headers.authorization = r.pick([
            `Bearer ${token}`,
            "Bearer",
            `Bearer ${"t".repeat(5000)}`,
            "Basic Og==",
            `bearer ${token} x`,
          ]);
        try {
          const res = await fetch(`${base}${path}`, { method, headers, ...(body === undefined ? {} : { body }) });
          const got = await res.text();
          sent.http++;
          if (res.status >= 500) http5xx.push(`${method} ${path.slice(0, 80)} → ${res.status} ${got.slice(0, 200)}`);
        } catch (err) {
          // The server may reset a connection it refuses (an oversized body): fine, as long as it keeps serving.
          if (!/fetch failed|socket|ECONNRESET|other side closed/i.test(String((err as Error).cause ?? err))) throw err;
        }
      };

      const until = Date.now() + FUZZ_MS;
      let i = 0;
      while (Date.now() < until) {
        for (let k = 0; k < 10; k++) publishOne();
        await raw.flush();
        await Promise.all([request(), request()]);
        if (++i % 20 === 0) normal.push(hello.run({ n: i }));
        await new Promise((res) => setTimeout(res, 25));
      }

      // Normal runs started during the fuzz all finished, and a new one runs now.
      expect(await Promise.all(normal), why).toEqual(normal.map((_, k) => ({ n: (k + 1) * 20 })));
      expect(await hello.run({ n: -1 }), why).toEqual({ n: -1 });
      const health = await fetch(`${base}/api/v1/namespaces/${namespace}/runs/none`, {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(health.status, why).toBe(404);
      expect(http5xx, why).toEqual([]);
      expect(sent.http, why).toBeGreaterThan(100);

      // What was refused is in history: the garbage, then the EventRejected that names it (a run that is only that).
      for (const runId of sent.garbageRuns.slice(0, 15)) {
        const types = await eventually(
          async () => {
            const t = await historyTypes(tj, runId);
            return t.includes("EventRejected") ? t : undefined;
          },
          15_000,
          `EventRejected on ${runId} ${why}`,
        );
        expect(types[0], why).toBe("rejected");
        expect(await tj.runs.get(runId), why).toMatchObject({ status: "FAILED", error: { name: "EventRejected" } });
      }
      // Subjects no run can have keep exactly what was sent there (no rejection loop), for inspection.
      for (const [subject, count] of sent.weird)
        expect(await countOn(jsm, "TJ_HISTORY", subject), `${subject} ${why}`).toBe(count);
      // Every pushed event was routed or refused: none is redelivered over and over (a poison message).
      await eventually(
        async () => {
          const info = await jsm.consumers.info("TJ_EVENTS", `tj_${namespace}_event_router`);
          return info.num_pending === 0 && info.num_ack_pending === 0 ? true : undefined;
        },
        20_000,
        `event router drained ${why}`,
      );
      // Commands nobody consumes yet stay stored.
      expect(await countOn(jsm, "TJ_COMMANDS", `tj.${namespace}.cmd.>`), why).toBe(sent.commands);

      await raw.close();
      await tj.close();
      await engine.stop();
    },
    FUZZ_MS + 90_000,
  );

  it("fuzz - hostile bulk files: usage errors that name the file or line, only good lines sent", async () => {
    const namespace = uniqueNamespace("fz");
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const dir = await mkdtemp(join(tmpdir(), "tj-fuzz-bulk-"));
    try {
      const bulk = (file: string) =>
        runCli(["trigger", "hello", "--bulk", file, "--nats", nats.url, "--namespace", namespace], { cwd: dir });
      for (const file of ["/dev/zero", dir]) {
        const res = await bulk(file);
        expect(res.code, file).toBe(2);
        expect(res.stderr).toContain(`--bulk: ${file} is not a regular file`);
      }
      const binary = join(dir, "binary.jsonl");
      await writeFile(binary, Buffer.from([0x7b, 0x1b, 0x5b, 0x32, 0x4a, 0x00, 0xff, 0x0a]));
      const garbled = await bulk(binary);
      expect(garbled.code).toBe(2);
      expect(garbled.stderr).toMatch(/line 1: not JSON/);
      expect(garbled.stderr).not.toMatch(/\p{Cc}(?<!\n)/u); // no escape sequence reaches the terminal
      // Too deep is known from the file: refused with the other bad lines, nothing sent.
      const mixed = join(dir, "mixed.jsonl");
      await writeFile(mixed, ['{"ok":true}', deep(10_000), ""].join("\n"));
      const refused = await bulk(mixed);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(/line 2: nests objects and arrays deeper than 256 levels/);
      expect(refused.stderr).toContain("nothing sent");
      // Too large for the server is known once connected: that line fails, named by its line, the others are sent.
      const large = join(dir, "large.jsonl");
      await writeFile(large, ['{"ok":true}', `{"big":"${"x".repeat(1100 * 1024)}"}`, ""].join("\n"));
      const res = await bulk(large);
      expect(res.code).toBe(1);
      expect(res.stderr).toMatch(/^line 2: input is \d+ bytes as JSON, over the limit/m);
      expect(res.stdout).toContain("1 runs of hello accepted");
    } finally {
      await rm(dir, { recursive: true, force: true });
      await engine.stop();
    }
  });
});
