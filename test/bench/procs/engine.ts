/** Benchmark process: one engine serving the benchmark namespace. */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { createEngine, type Engine } from "@taskjet/engine";
import { serve, watchConnection } from "../lib/child.js";
import { nowMs } from "../lib/clock.js";

let engine: Engine | undefined;
/** With TJ_BENCH_STALLS=1: measured runs' input index and when their assignment was published (flat pairs). */
let assigned: number[] = [];

/** Timestamps each measured assignment as it is published (parses every assignment: for investigations only). */
function stampAssignments(nc: NatsConnection): void {
  const publish = nc.publish.bind(nc);
  nc.publish = (subject, payload, opts) => {
    if (subject.includes(".assign.") && typeof payload === "string") {
      const at = nowMs();
      const parsed = JSON.parse(payload) as
        | { input?: { i?: number; m?: number } }
        | { input?: { i?: number; m?: number } }[];
      for (const a of Array.isArray(parsed) ? parsed : [parsed])
        if (a.input?.m === 1 && a.input.i !== undefined) assigned.push(a.input.i, at);
    }
    return publish(subject, payload, opts);
  };
}

serve({
  /**
   * Returns when `start` was called and when it resolved (monotonic ms, comparable across processes), and the CPU
   * time it took: on a busy machine the wall time says more about the neighbours.
   */
  async start(args) {
    const calledAt = nowMs();
    const cpu = process.cpuUsage();
    const servers = String(args.url).split(",");
    // The engine's own connection settings (engine/src/nats/connect.ts), opened here so it can be watched.
    const nc = await connect({
      servers,
      name: "taskjet-engine",
      noAsyncTraces: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
    });
    watchConnection(nc, Boolean(args.countOps));
    if (process.env.TJ_BENCH_STALLS === "1") stampAssignments(nc);
    engine = createEngine(
      {
        servers,
        namespaces: [String(args.ns)],
        logLevel: "warn",
        replicas: Number(args.replicas ?? 1),
        ...(args.flushMs !== undefined ? { projectionFlushMs: Number(args.flushMs) } : {}),
        ...(args.scheduleTimeoutMs !== undefined ? { defaultScheduleTimeoutMs: Number(args.scheduleTimeoutMs) } : {}),
      },
      { connection: nc },
    );
    await engine.start();
    const used = process.cpuUsage(cpu);
    return { calledAt, startedAt: nowMs(), cpuMs: (used.user + used.system) / 1000 };
  },
  assigned() {
    const out = assigned;
    assigned = [];
    return out;
  },
  async stop() {
    await engine?.stop();
    return true;
  },
});
