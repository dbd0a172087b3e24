/** Benchmark process: one engine serving the benchmark namespace. */
import { connect } from "@nats-io/transport-node";
import { createEngine, type Engine } from "@taskjet/engine";
import { serve, watchConnection } from "../lib/child.js";

let engine: Engine | undefined;

serve({
  async start(args) {
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
      },
      { connection: nc },
    );
    await engine.start();
    return true;
  },
  async stop() {
    await engine?.stop();
    return true;
  },
});
