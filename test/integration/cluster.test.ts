import { type ConsumerMessages, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Buckets, decodeEvent, Streams, subjects, type TaskjetEvent } from "@taskjet/schemas";
import type { Taskjet } from "@taskjet/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectClient, eventually, startEngine, uniqueNamespace } from "../harness/fixtures.js";
import { type NatsCluster, type NatsNode, startNatsCluster } from "../harness/nats-cluster.js";

/** Triggers per second of the steady load. */
const RATE = 80;
const BEFORE_KILL_MS = 3000;
const AFTER_KILL_MS = 12_000;

let cluster: NatsCluster;
beforeAll(async () => {
  cluster = await startNatsCluster();
});
afterAll(async () => {
  await cluster?.stop();
});

/** Every event of a namespace's runs, by run id, read through one ordered consumer. */
async function namespaceHistories(nc: NatsConnection, ns: string): Promise<Map<string, TaskjetEvent[]>> {
  const consumer = await jetstream(nc).consumers.get(Streams.history, { filter_subjects: subjects.historyAll(ns) });
  const out = new Map<string, TaskjetEvent[]>();
  const messages: ConsumerMessages = await consumer.consume({ max_messages: 1000, expires: 2000, idle_heartbeat: 500 });
  // A heartbeat means nothing is left to deliver (num_pending over-counts for wildcard filters on 2.9).
  void (async () => {
    for await (const s of messages.status()) if (s.type === "heartbeat") return messages.stop();
  })();
  for await (const m of messages) {
    const runId = m.subject.slice(m.subject.lastIndexOf(".") + 1);
    const decoded = decodeEvent(m.data, runId);
    if (decoded.ok) out.set(runId, [...(out.get(runId) ?? []), decoded.event]);
    if (m.info.pending === 0) break;
  }
  messages.stop();
  return out;
}

/** `last_seq` of every stream as this node's own replica holds it (monitoring, not the stream leader's answer). */
async function localStreams(node: NatsNode): Promise<Record<string, number>> {
  const res = await fetch(`http://127.0.0.1:${node.monitorPort}/jsz?accounts=true&streams=true`);
  const jsz = (await res.json()) as {
    account_details?: { stream_detail?: { name: string; state: { last_seq: number } }[] }[];
  };
  const out: Record<string, number> = {};
  for (const acc of jsz.account_details ?? []) for (const s of acc.stream_detail ?? []) out[s.name] = s.state.last_seq;
  return out;
}

/** Where a client's connection is, by node name. */
function nodeOf(tj: Taskjet): string {
  const server = tj.connection.nc.getServer();
  return cluster.nodes.find((n) => server.endsWith(`:${n.port}`))?.name ?? server;
}

describe("NATS node failure", () => {
  it("cluster - SIGKILL of the TJ_HISTORY leader under load: triggers, workers and waiters carry on, every acknowledged run completes once, the node catches up", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(cluster.urls[0] as string, {
      servers: cluster.urls,
      replicas: 3,
      namespaces: [namespace],
    });
    const client = await connectClient(cluster.urls[0] as string, { namespace, servers: cluster.urls, name: "client" });
    const workerClient = await connectClient(cluster.urls[0] as string, {
      namespace,
      servers: cluster.urls,
      name: "worker",
    });
    const nc = await connect({ servers: cluster.urls, noAsyncTraces: true });
    const jsm = await jetstreamManager(nc);

    const executions = new Map<string, number>();
    const executedAt: number[] = [];
    const tick = workerClient.task({
      name: "tick",
      fn: async (input: { i: number }, ctx) => {
        executions.set(ctx.workflowRunId(), (executions.get(ctx.workflowRunId()) ?? 0) + 1);
        executedAt.push(Date.now());
        return { i: input.i };
      },
    });
    const worker = await workerClient.worker("w", { workflows: [tick], slots: 50 });
    await worker.start();

    // `replicas: 3` reaches every stream and bucket, and the durable consumers follow their stream.
    const streams: string[] = [];
    for await (const si of jsm.streams.list()) {
      streams.push(si.config.name);
      expect(si.config.num_replicas, si.config.name).toBe(3);
      for await (const ci of jsm.consumers.list(si.config.name)) {
        if (ci.config.durable_name) expect(ci.cluster?.replicas?.length, ci.name).toBe(2);
      }
    }
    expect(streams).toEqual(
      expect.arrayContaining([...Object.values(Streams), ...Object.values(Buckets).map((b) => `KV_${b}`)]),
    );

    // The load: RATE triggers a second; each acknowledged one is waited for.
    const acked = new Map<string, { i: number; at: number }>();
    const results = new Map<string, { i: number; at: number }>();
    const waits: Promise<void>[] = [];
    let refused = 0;
    const waitErrors: string[] = [];
    let i = 0;
    const trigger = () => {
      const n = i++;
      const at = Date.now();
      void client.runNoWait<{ i: number }>("tick", { i: n }).then(
        (ref) => {
          acked.set(ref.runId, { i: n, at });
          waits.push(
            ref.result().then(
              (out) => {
                results.set(ref.runId, { i: out.i, at: Date.now() });
              },
              (err: unknown) => {
                waitErrors.push(`${ref.runId}: ${String(err)}`);
              },
            ),
          );
        },
        () => {
          refused++;
        },
      );
    };
    const load = setInterval(() => {
      for (let k = 0; k < RATE / 40; k++) trigger();
    }, 25);

    try {
      await new Promise((r) => setTimeout(r, BEFORE_KILL_MS));
      const leader = (await jsm.streams.info(Streams.history)).cluster?.leader;
      expect(leader).toBeDefined();
      const victim = cluster.node(leader as string);
      const where = `client on ${nodeOf(client)}, worker on ${nodeOf(workerClient)}`;
      // What else the victim leads decides how long the stall is (a lease bucket, the projection...).
      const alsoLed: string[] = [];
      for await (const si of jsm.streams.list()) {
        if (si.cluster?.leader === victim.name && si.config.name !== Streams.history) alsoLed.push(si.config.name);
      }
      const killedAt = Date.now();
      const triggeredBeforeKill = i;
      await victim.kill("SIGKILL");
      await new Promise((r) => setTimeout(r, AFTER_KILL_MS));
      clearInterval(load);
      const triggered = i;

      // Every acknowledged run completes, and its waiter hears it.
      await eventually(() => (acked.size + refused === triggered ? true : undefined), 20_000, "every trigger answered");
      await eventually(
        () => (results.size + waitErrors.length === acked.size ? true : undefined),
        45_000,
        "every waiter settled",
      );
      expect(waitErrors).toEqual([]);
      await Promise.all(waits);
      for (const [runId, { i: n }] of acked) expect(results.get(runId)?.i, runId).toBe(n);

      const afterKill = [...acked.values()].filter((a) => a.at >= killedAt);
      const firstAfterKill = Math.min(
        ...[...acked]
          .filter(([, a]) => a.at >= killedAt)
          .map(([id]) => results.get(id)?.at ?? Number.POSITIVE_INFINITY),
      );
      let longestGap = 0;
      const sorted = [...executedAt].sort((a, b) => a - b);
      for (let k = 1; k < sorted.length; k++)
        longestGap = Math.max(longestGap, (sorted[k] ?? 0) - (sorted[k - 1] ?? 0));
      const twice = [...executions.values()].filter((n) => n > 1).length;
      process.stderr.write(
        `cluster failover: killed ${victim.name} (TJ_HISTORY leader, also ${alsoLed.join(", ") || "nothing else"}; ` +
          `${where}); ${triggered} triggered ` +
          `(${triggeredBeforeKill} before the kill), ${acked.size} acknowledged, ${refused} refused; ` +
          `longest gap between task executions ${longestGap} ms; first completion of a run triggered after the kill ` +
          `${firstAfterKill - killedAt} ms after it (${afterKill.length} such runs); ${twice} runs executed twice\n`,
      );
      expect(refused).toBe(0);
      expect(afterKill.length).toBeGreaterThan(0);

      // Exactly-once recording: every acknowledged run's history ends completed, one terminal event per attempt.
      const histories = await namespaceHistories(nc, namespace);
      for (const runId of acked.keys()) {
        const events = histories.get(runId) ?? [];
        expect(
          events.filter((e) => e.type === "RunCreated"),
          runId,
        ).toHaveLength(1);
        const terminals = new Map<number, number>();
        for (const e of events) {
          if (e.type === "TaskCompleted" || e.type === "TaskFailed" || e.type === "TaskTimedOut") {
            const attempt = (e.data as { attempt?: number }).attempt ?? -1;
            terminals.set(attempt, (terminals.get(attempt) ?? 0) + 1);
          }
        }
        for (const n of terminals.values()) expect(n, runId).toBe(1);
        expect(events.at(-1)?.type, runId).toBe("TaskCompleted");
        expect(executions.get(runId) ?? 0, runId).toBeGreaterThanOrEqual(1);
      }
      expect(histories.size).toBe(acked.size);

      // The restarted node catches up: its own replica of every stream matches the others'.
      const restartedAt = Date.now();
      await victim.restart();
      const caughtUp = await eventually(
        async () => {
          const views = await Promise.all(cluster.nodes.map(localStreams));
          const names = Object.keys(views[0] ?? {});
          const same =
            names.length > 0 &&
            names.includes(Streams.history) &&
            views.every((v) => names.every((s) => v[s] === views[0]?.[s]));
          return same ? Date.now() : undefined;
        },
        30_000,
        `${victim.name} caught up`,
      );
      const info = await jsm.streams.info(Streams.history);
      const replica = info.cluster?.replicas?.find((r) => r.name === victim.name);
      process.stderr.write(
        `cluster failover: ${victim.name} restarted and caught up in ${caughtUp - restartedAt} ms ` +
          `(TJ_HISTORY replica current=${replica?.current}, lag ${replica?.lag ?? 0})\n`,
      );

      // And the system still works with all three nodes.
      const ref = await client.runNoWait("tick", { i: -1 });
      expect(await ref.result()).toEqual({ i: -1 });
    } finally {
      clearInterval(load);
      await worker.stop();
      await workerClient.close();
      await client.close();
      await engine.stop();
      await nc.close();
    }
  }, 90_000);

  it("cluster - SIGKILL of the KV_TJ_WORKERS leader while a task runs longer than the workers' TTL: its live worker is not taken for gone, the task runs once", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(cluster.urls[0] as string, {
      servers: cluster.urls,
      replicas: 3,
      namespaces: [namespace],
      workerTtlMs: 3000,
    });
    const tj = await connectClient(cluster.urls[0] as string, { namespace, servers: cluster.urls });
    const nc = await connect({ servers: cluster.urls, noAsyncTraces: true });
    const jsm = await jetstreamManager(nc);
    let calls = 0;
    const long = tj.task({
      name: "long",
      fn: async () => {
        calls++;
        await new Promise((r) => setTimeout(r, 15_000));
        return { done: true };
      },
    });
    const worker = await tj.worker("w", { workflows: [long] });
    try {
      await worker.start();
      const ref = await long.runNoWait({});
      await eventually(() => (worker.runningCount === 1 ? true : undefined));
      const leader = (await jsm.streams.info(`KV_${Buckets.workers}`)).cluster?.leader as string;
      const victim = cluster.node(leader);
      await victim.kill("SIGKILL");
      expect(await ref.result({ timeoutMs: 40_000 })).toEqual({ done: true });
      expect(calls).toBe(1);
      const events = (await namespaceHistories(nc, namespace)).get(ref.runId) ?? [];
      expect(events.map((e) => e.type)).not.toContain("TaskReassigned");
      await victim.restart();
    } finally {
      await worker.stop();
      await tj.close();
      await engine.stop();
      await nc.close();
    }
  }, 90_000);
});
