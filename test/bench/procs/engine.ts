/** Benchmark process: one engine serving the benchmark namespace. */
import { connect } from "@nats-io/transport-node";
import { createEngine, type Engine } from "@taskjet/engine";
import { serve, watchConnection } from "../lib/child.js";
import { nowMs } from "../lib/clock.js";

let engine: Engine | undefined;

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
  async stop() {
    await engine?.stop();
    return true;
  },
});
