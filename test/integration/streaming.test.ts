import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { Streams } from "@taskjet/schemas";
import { RunNotFoundError, type StreamChunk, type Taskjet } from "@taskjet/sdk";
import { describe, expect, it } from "vitest";
import { sleep } from "../harness/concurrency-probe.js";
import {
  connectClient,
  eventually,
  startEngine,
  startOf,
  uniqueNamespace,
  useNatsServer,
} from "../harness/fixtures.js";

const nats = useNatsServer();

/** Reads a whole chunk stream, noting when each chunk arrived and when the iterable ended. */
async function collect(tj: Taskjet, runId: string, seen: { at: number; chunk: StreamChunk }[] = []) {
  for await (const chunk of tj.runs.subscribeToStream(runId)) seen.push({ at: Date.now(), chunk });
  return { seen, endedAt: Date.now() };
}

const shape = (c: StreamChunk) => ({ attempt: c.attempt, taskRunId: c.taskRunId, index: c.index, text: c.text });

describe("streaming", () => {
  it("streaming - a TJ_LOGS stream of an older install (log subjects only) gains the chunk subject at engine start", async () => {
    const nc = await connect({ servers: nats.url });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(Streams.logs).catch(() => undefined);
    await jsm.streams.add({ name: Streams.logs, subjects: ["tj.*.log.*"] });
    const engine = await startEngine(nats.url, { namespaces: [uniqueNamespace()] });
    try {
      expect((await jsm.streams.info(Streams.logs)).config.subjects).toEqual(["tj.*.log.*", "tj.*.chunk.*"]);
    } finally {
      await engine.stop();
      await nc.close();
    }
  });

  it("streaming - subscribers from before, mid-stream and after the run get every chunk in order, and end with the run", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    try {
      const streamer = tj.task({
        name: "streamer",
        fn: async (_input, ctx) => {
          for (let i = 0; i < 50; i++) {
            await ctx.putStream(`token-${i} `);
            await sleep(15);
          }
          // A burst not awaited one by one: all of it must be stored before the run completes.
          for (let i = 0; i < 300; i++) void ctx.putStream(new Uint8Array([i % 256, 0xff]));
          return { done: true };
        },
      });
      const ref = await streamer.runNoWait({});
      // Subscribed before the task starts: no worker yet.
      const earlySeen: { at: number; chunk: StreamChunk }[] = [];
      const early = collect(tj, ref.runId, earlySeen);
      const worker = await tj.worker("w", { workflows: [streamer] });
      await worker.start();
      await eventually(() => (earlySeen.length >= 20 ? true : undefined));
      const joinedAfter = earlySeen.length;
      const mid = collect(tj, ref.runId);
      await ref.result();
      const finishedAt = Date.parse((await tj.runs.get(ref.runId)).finishedAt as string);
      const after = await collect(tj, ref.runId);
      const [e, m] = await Promise.all([early, mid]);

      const taskRunId = (await tj.runs.get(ref.runId)).tasks[0]?.taskRunId;
      const expected = [
        ...Array.from({ length: 50 }, (_, i) => ({ attempt: 0, taskRunId, index: i, text: `token-${i} ` })),
        ...Array.from({ length: 300 }, (_, i) => ({
          attempt: 0,
          taskRunId,
          index: 50 + i,
          text: new TextDecoder().decode(new Uint8Array([i % 256, 0xff])),
        })),
      ];
      for (const got of [e.seen, m.seen, after.seen]) expect(got.map((s) => shape(s.chunk))).toEqual(expected);
      expect([...(after.seen.at(-1)?.chunk.data ?? [])]).toEqual([299 % 256, 0xff]);
      // The second subscriber joined mid-stream; the first had chunks live, before the run finished; both iterables
      // ended only once it had.
      expect(joinedAfter).toBeLessThan(50);
      expect(earlySeen[0]?.at).toBeLessThan(finishedAt);
      for (const ended of [e.endedAt, m.endedAt]) expect(ended).toBeGreaterThanOrEqual(finishedAt);
      expect(e.seen[0]?.chunk.at).toBeInstanceOf(Date);
      await worker.stop();
    } finally {
      await tj.close();
      await engine.stop();
    }
  });

  it("streaming - following a replayed run goes on until the replay ends, not to the end it had before", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    try {
      const slow = tj.task({
        name: "slow-logs",
        fn: async (_input, ctx) => {
          for (let i = 0; i < 5; i++) {
            ctx.logger.info(`line ${i}`);
            await sleep(100);
          }
          return {};
        },
      });
      const worker = await tj.worker("w", { workflows: [slow] });
      await worker.start();
      const ref = await slow.runNoWait({});
      await ref.result();
      await tj.runs.replay({ ids: [ref.runId] });
      const lines: [number, string][] = [];
      for await (const l of tj.logs.follow(ref.runId)) lines.push([l.attempt, l.message]);
      expect(lines.filter(([attempt]) => attempt === 1).map(([, m]) => m)).toEqual(
        [0, 1, 2, 3, 4].map((i) => `line ${i}`),
      );
      await worker.stop();
    } finally {
      await tj.close();
      await engine.stop();
    }
  });

  it("streaming - a retried task's chunks and log lines carry their attempt; an unknown run is RunNotFoundError", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    try {
      const flaky = tj.task({
        name: "flaky-stream",
        retries: 1,
        backoff: { factor: 2, maxSeconds: 0.1 },
        fn: async (_input, ctx) => {
          await ctx.putStream(`a${ctx.retryCount()}-0`);
          ctx.logger.info("attempt", { n: ctx.retryCount() });
          if (ctx.retryCount() === 0) {
            await ctx.putStream("a0-1");
            throw new Error("first fails");
          }
          return {};
        },
      });
      const worker = await tj.worker("w", { workflows: [flaky] });
      await worker.start();
      const ref = await flaky.runNoWait({});
      const lines = (async () => {
        const out: [number, string][] = [];
        for await (const l of tj.logs.follow(ref.runId)) out.push([l.attempt, l.message]);
        return out;
      })();
      const chunks = await collect(tj, ref.runId);
      expect(chunks.seen.map((s) => [s.chunk.attempt, s.chunk.index, s.chunk.text])).toEqual([
        [0, 0, "a0-0"],
        [0, 1, "a0-1"],
        [1, 0, "a1-0"],
      ]);
      expect(await lines).toEqual([
        [0, "attempt"],
        [1, "attempt"],
      ]);
      expect(await ref.status()).toBe("COMPLETED");
      await expect(collect(tj, "no-such-run")).rejects.toBeInstanceOf(RunNotFoundError);
      await expect(tj.logs.follow("no-such-run").next()).rejects.toBeInstanceOf(RunNotFoundError);
      await worker.stop();
    } finally {
      await tj.close();
      await engine.stop();
    }
  });

  it("streaming - ref.stream() yields the run's history live through its terminal event, then ends", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    try {
      const once = tj.task({
        name: "fails-once",
        retries: 1,
        backoff: { factor: 2, maxSeconds: 0.1 },
        fn: async (_input, ctx) => {
          if (ctx.retryCount() === 0) throw new Error("first fails");
          return { ok: true };
        },
      });
      const ref = await once.runNoWait({});
      // Followed from before any worker exists: everything after RunCreated arrives live.
      const seen: { type: string | undefined; at: number; started?: unknown }[] = [];
      const streamed = (async () => {
        for await (const e of ref.stream())
          seen.push({ type: e.event?.type, at: Date.now(), started: startOf(e.event) });
      })();
      await eventually(() => (seen.length === 1 ? true : undefined));
      const worker = await tj.worker("w", { workflows: [once] });
      await worker.start();
      await streamed;
      // Short attempts: each result carries its start instead of a TaskStarted before it.
      expect(seen.map((s) => s.type)).toEqual([
        "RunCreated",
        "TaskFailed",
        "TaskRetryScheduled",
        "TaskQueued",
        "TaskCompleted",
      ]);
      for (const result of [seen[1], seen[4]]) expect(result?.started).toMatchObject({ workerName: "w" });
      expect(await ref.status()).toBe("COMPLETED");
      // Once finished, the same call yields the whole history and ends at once.
      const again: (string | undefined)[] = [];
      for await (const e of ref.stream()) again.push(e.event?.type);
      expect(again).toEqual(seen.map((s) => s.type));
      await worker.stop();
    } finally {
      await tj.close();
      await engine.stop();
    }
  });
});
