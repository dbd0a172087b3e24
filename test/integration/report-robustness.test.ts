import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { Streams, subjects } from "@taskjet/schemas";
import { TaskRunError } from "@taskjet/sdk";
import { describe, expect, it } from "vitest";
import { historyEvents, historyTypes, startNamespace, useNatsServer } from "../harness/fixtures.js";
import { runWithLostStartAck } from "../harness/lost-ack.js";

const nats = useNatsServer();

/** How long a run that must end gets: a run stuck QUEUED (the bug) fails the test here, not at its timeout. */
const SETTLES_WITHIN_MS = 15_000;

/** Errors whose fields the model would refuse or that cannot be read at all. */
function oddErrors(): { name: string; make: () => unknown; readable: RegExp }[] {
  return [
    {
      name: "stack-object",
      make: () => {
        const e = new Error("weird stack");
        (e as { stack: unknown }).stack = { a: 1 };
        return e;
      },
      readable: /weird stack/,
    },
    {
      name: "name-object",
      make: () => {
        const e = new Error("weird name");
        (e as { name: unknown }).name = { x: 1 };
        return e;
      },
      readable: /weird name/,
    },
    { name: "huge-message", make: () => new Error("m".repeat(3_000_000)), readable: /^m+/ },
    {
      name: "throwing-proxy",
      make: () =>
        new Proxy(
          {},
          {
            get() {
              throw 1;
            },
          },
        ),
      readable: /.+/,
    },
    {
      name: "throwing-error-proxy",
      make: () =>
        new Proxy(new Error("hidden"), {
          get() {
            throw new Error("no reading me");
          },
        }),
      readable: /.+/,
    },
  ];
}

describe("report robustness", () => {
  it("report robustness - a task throwing an error with odd fields fails after its retries, error recorded readably", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const cases = oddErrors();
    const tasks = cases.map((c) =>
      tj.task({
        name: `odd-${c.name}`,
        retries: 1,
        backoff: { factor: 2, maxSeconds: 0.1 },
        executionTimeout: "3s",
        fn: async () => {
          throw c.make();
        },
      }),
    );
    const worker = await tj.worker("odd-worker", { workflows: tasks });
    await worker.start();
    const refs = await Promise.all(tasks.map((t) => t.runNoWait({})));
    const outcomes = await Promise.all(
      refs.map((ref) =>
        ref.result({ timeoutMs: SETTLES_WITHIN_MS }).then(
          () => "completed",
          (err: unknown) => err,
        ),
      ),
    );
    for (const [i, c] of cases.entries()) {
      const err = outcomes[i];
      expect(err, c.name).toBeInstanceOf(TaskRunError);
      const recorded = (err as TaskRunError).taskError;
      expect(typeof recorded.name, c.name).toBe("string");
      expect(recorded.message, c.name).toMatch(c.readable);
      expect(recorded.stack === undefined || typeof recorded.stack === "string", c.name).toBe(true);
      // Well under any message limit, whatever the task threw.
      expect(JSON.stringify(recorded).length, c.name).toBeLessThan(200_000);
      const ref = refs[i] as (typeof refs)[number];
      expect((await tj.runs.get(ref.runId)).status, c.name).toBe("FAILED");
      const types = await historyTypes(tj, ref.runId, { attempts: true });
      expect(types, c.name).not.toContain("rejected");
      expect(types, c.name).toContain("TaskFailed0");
      expect(types, c.name).toContain("TaskFailed1");
    }
    await tj.close();
    await engine.stop();
  });

  it("report robustness - a worker whose start was stored but whose ack was lost finds it stored on retry: the task runs once, attempt 0 completes", async () => {
    const { engine, tj, namespace } = await startNamespace(nats.url);
    const runId = await runWithLostStartAck(tj, nats.server.port, {});
    // Found by the CAS, not by the server's dedup: no message of the run carries a dedup id.
    const nc = await connect({ servers: nats.url });
    const jsm = await jetstreamManager(nc);
    for (let seq = 0; ; ) {
      const m = await jsm.streams.getMessage(Streams.history, {
        next_by_subj: subjects.history(namespace, runId),
        seq: seq + 1,
      } as unknown as { seq: number });
      if (!m) break;
      expect(m.header.get("Nats-Msg-Id")).toBe("");
      seq = m.seq;
    }
    await nc.close();
    await tj.close();
    await engine.stop();
  }, 40_000);

  it("report robustness - an output too large for one message fails the attempt with PAYLOAD_TOO_LARGE, then retries", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const big = tj.task({
      name: "big-output",
      retries: 1,
      backoff: { factor: 2, maxSeconds: 0.1 },
      fn: async () => ({ blob: "x".repeat(1.5 * 1024 * 1024) }),
    });
    const worker = await tj.worker("big-worker", { workflows: [big] });
    await worker.start();
    const ref = await big.runNoWait({});
    const err = await ref.result({ timeoutMs: SETTLES_WITHIN_MS }).then(
      () => "completed",
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TaskRunError);
    expect((err as TaskRunError).taskError).toMatchObject({ name: "PayloadTooLargeError" });
    expect((err as TaskRunError).taskError.message).toMatch(/output is \d+ bytes as JSON, over the limit of \d+ bytes/);
    const failed = (await historyEvents(tj, ref.runId)).filter((e) => e.type === "TaskFailed");
    expect(failed.map((e) => (e.data as { attempt: number }).attempt)).toEqual([0, 1]);
    await tj.close();
    await engine.stop();
  });

  it("report robustness - an output that throws an unreadable value while checked fails the attempt, then retries", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const unreadable = new Proxy(
      {},
      {
        get() {
          throw 1;
        },
      },
    );
    const odd = tj.task({
      name: "odd-output",
      retries: 1,
      backoff: { factor: 2, maxSeconds: 0.1 },
      fn: async () => ({
        get x(): unknown {
          throw unreadable;
        },
      }),
    });
    const worker = await tj.worker("odd-output-worker", { workflows: [odd] });
    await worker.start();
    const ref = await odd.runNoWait({});
    const err = await ref.result({ timeoutMs: SETTLES_WITHIN_MS }).then(
      () => "completed",
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TaskRunError);
    expect((err as TaskRunError).taskError.message).toMatch(/unprintable object/);
    const types = await historyTypes(tj, ref.runId, { attempts: true });
    expect(types).toContain("TaskFailed0");
    expect(types).toContain("TaskFailed1");
    await tj.close();
    await engine.stop();
  });

  it("report robustness - ctx.logger fields that are circular, BigInt or huge never fail the task and are stored readably", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const circular: Record<string, unknown> = { name: "loop" };
    circular.self = circular;
    const shared = { n: 1 };
    const lg = tj.task({
      name: "odd-logs",
      fn: async (_input, ctx) => {
        ctx.logger.info("circular", { c: circular });
        ctx.logger.info("bigint", { b: 1n, nested: { big: 2n ** 70n } });
        ctx.logger.info("shared", { a: shared, b: shared });
        ctx.logger.info("throwing", {
          p: new Proxy(
            {},
            {
              get() {
                throw new Error("no reading me");
              },
              ownKeys() {
                throw new Error("no listing me");
              },
            },
          ),
        });
        ctx.logger.info("huge", { blob: "y".repeat(3_000_000) });
        return { ok: true };
      },
    });
    const worker = await tj.worker("log-worker", { workflows: [lg] });
    await worker.start();
    const ref = await lg.runNoWait({});
    expect(await ref.result({ timeoutMs: SETTLES_WITHIN_MS })).toEqual({ ok: true });
    const lines = await tj.logs.list(ref.runId);
    const byMessage = new Map(lines.map((l) => [l.message, l]));
    expect([...byMessage.keys()]).toEqual(["circular", "bigint", "shared", "throwing", "huge"]);
    expect(byMessage.get("circular")?.fields).toEqual({ c: { name: "loop", self: "[Circular]" } });
    expect(byMessage.get("bigint")?.fields).toEqual({ b: "1", nested: { big: (2n ** 70n).toString() } });
    expect(byMessage.get("shared")?.fields).toEqual({ a: { n: 1 }, b: { n: 1 } });
    expect(JSON.stringify(byMessage.get("throwing")?.fields)).toMatch(/unserializable/);
    const huge = JSON.stringify(byMessage.get("huge")?.fields);
    expect(huge).toMatch(/truncated/);
    expect(huge.length).toBeLessThan(1024 * 1024);
    await tj.close();
    await engine.stop();
  });
});
