import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { Buckets, kvClaimStore, type TaskjetEventInput } from "@taskjet/schemas";
import { type Logger, pino } from "pino";
import { type EngineConfig, type EngineConfigInput, resolveEngineConfig } from "./config.js";
import { Dispatcher } from "./dispatcher/dispatcher.js";
import { EventWaits } from "./events/event-waits.js";
import { IdempotentRuns } from "./events/idempotent-runs.js";
import { EventRouter } from "./events/router.js";
import { type HttpServer, startHttpServer } from "./http/server.js";
import { Webhooks } from "./http/webhooks.js";
import { appendEvent } from "./log/append.js";
import { provision } from "./log/provision.js";
import { connectNats } from "./nats/connect.js";
import { Projector } from "./projector/projector.js";
import { RunStore } from "./projector/run-store.js";
import { Definitions } from "./scheduler/definitions.js";
import { Scheduler } from "./scheduler/scheduler.js";
import { Crons } from "./timers/crons.js";
import { Retrier } from "./timers/retrier.js";
import { Schedules } from "./timers/schedules.js";
import { Timeouts } from "./timers/timeouts.js";
import { systemClock, Timers } from "./timers/timers.js";
import { WorkerRegistry } from "./workers/registry.js";

/** What the engine is given rather than makes: a logger, or an existing connection to share. */
export interface EngineDeps {
  logger?: Logger;
  /** A connection to use instead of opening one; the engine then does not close it. */
  connection?: NatsConnection;
}

/** A running engine. */
export interface Engine {
  readonly config: EngineConfig;
  /** Connects, provisions streams and buckets, recovers state and starts serving its namespaces. */
  start(): Promise<void>;
  /** Stops taking work, writes pending projections and disconnects. */
  stop(): Promise<void>;
  /** `host:port` of the HTTP server (webhooks), once started; undefined when `http` is `off`. */
  httpAddress(): string | undefined;
}

/** One namespace's projector, scheduler, dispatcher and worker registry. */
class NamespaceRuntime {
  private readonly projector: Projector;
  private readonly scheduler: Scheduler;
  private readonly registry: WorkerRegistry;
  private readonly definitions: Definitions;
  private readonly crons: Crons;
  private readonly router: EventRouter;
  private readonly timers: Timers;

  private readonly log: Logger;

  constructor(
    ns: string,
    nc: NatsConnection,
    js: JetStreamClient,
    jsm: JetStreamManager,
    kvs: Kvs,
    config: EngineConfig,
    log: Logger,
  ) {
    const nsLog = log.child({ ns });
    const append = (event: TaskjetEventInput, expectedSeq: number) => appendEvent(js, ns, event, expectedSeq);
    this.log = nsLog.child({ module: "engine" });
    const dispatcher = new Dispatcher({
      nc,
      js,
      jsm,
      ns,
      log: nsLog.child({ module: "dispatcher" }),
      onUndelivered: (p) => this.scheduler.undelivered(p),
    });
    this.projector = new Projector({
      js,
      jsm,
      ns,
      store: new RunStore(js, kvs.runs, ns),
      log: nsLog.child({ module: "projector" }),
      flushMs: config.projectionFlushMs,
      activeDelayMs: config.projectionActiveDelayMs,
      onChange: (change) => this.scheduler.onChange(change),
    });
    this.timers = new Timers(systemClock);
    const retrier = new Retrier({
      timers: this.timers,
      clock: systemClock,
      log: nsLog.child({ module: "retries" }),
      states: this.projector.states,
      append,
    });
    const timeouts = new Timeouts({
      timers: this.timers,
      log: nsLog.child({ module: "timeouts" }),
      defaultScheduleTimeoutMs: config.defaultScheduleTimeoutMs,
      states: this.projector.states,
      append,
    });
    const schedules = new Schedules({
      timers: this.timers,
      log: nsLog.child({ module: "schedules" }),
      states: this.projector.states,
      append,
    });
    const eventWaits = new EventWaits({
      js,
      ns,
      log: nsLog.child({ module: "event-waits" }),
      states: this.projector.states,
      append,
    });
    this.scheduler = new Scheduler({
      log: nsLog.child({ module: "scheduler" }),
      dispatcher,
      retrier,
      timeouts,
      schedules,
      eventWaits,
      append,
      states: this.projector.states,
      definition: (name) => this.definitions.get(name),
    });
    this.definitions = new Definitions({
      js,
      defsKv: kvs.defs,
      rateLimitsKv: kvs.rateLimits,
      ns,
      log: nsLog.child({ module: "definitions" }),
      onDefinition: (def) => this.scheduler.definitionChanged(def),
      onRateLimit: (key, limit, durationMs) => this.scheduler.rateLimitChanged(key, limit, durationMs),
    });
    const idempotent = new IdempotentRuns(kvClaimStore(kvs.idempotency), ns, nsLog.child({ module: "idempotency" }));
    this.crons = new Crons({
      js,
      kv: kvs.crons,
      ns,
      timers: this.timers,
      log: nsLog.child({ module: "crons" }),
      append,
      definition: (name) => this.definitions.get(name),
      idempotent,
    });
    this.router = new EventRouter({
      js,
      jsm,
      ns,
      log: nsLog.child({ module: "events" }),
      definitions: () => this.definitions.all(),
      append,
      idempotent,
      eventWaits,
    });
    this.registry = new WorkerRegistry({
      js,
      kv: kvs.workers,
      ns,
      ttlMs: config.workerTtlMs,
      log: nsLog.child({ module: "workers" }),
      onUp: (w) => this.scheduler.workerUp(w),
      onDown: (id, reason) => this.scheduler.workerDown(id, reason),
    });
  }

  async start(): Promise<void> {
    await this.definitions.start();
    await this.registry.start();
    this.log.debug({}, "workers loaded");
    await this.projector.start();
    this.scheduler.recover();
    await this.crons.start();
    await this.router.start();
  }

  async stop(): Promise<void> {
    await this.router.stop();
    this.crons.stop();
    this.timers.stop();
    this.scheduler.stop();
    this.registry.stop();
    this.definitions.stop();
    await this.projector.stop();
  }
}

type Kvs = Record<
  "runs" | "workers" | "defs" | "rateLimits" | "crons" | "idempotency",
  Awaited<ReturnType<Kvm["open"]>>
>;

/**
 * The composition root.
 *
 * @example
 * const engine = createEngine({ servers: ["nats://127.0.0.1:4222"] });
 * await engine.start();
 * process.on("SIGINT", () => engine.stop());
 */
export function createEngine(options: EngineConfigInput = {}, deps: EngineDeps = {}): Engine {
  const config = resolveEngineConfig(options);
  const baseLog = deps.logger ?? pino({ level: config.logLevel });
  const log = baseLog.child({ module: "engine" });
  let nc: NatsConnection | undefined;
  let runtimes: NamespaceRuntime[] = [];
  let http: HttpServer | undefined;
  let webhooks: Webhooks | undefined;
  let state: "new" | "started" | "stopped" = "new";

  return {
    config,
    httpAddress: () => http?.address,
    async start() {
      if (state !== "new") throw new Error(`engine already ${state}`);
      state = "started";
      try {
        nc = deps.connection ?? (await connectNats(config.servers, "taskjet-engine"));
        const js = jetstream(nc);
        const jsm = await jetstreamManager(nc);
        await provision(nc, jsm, config, log);
        log.debug({}, "streams and buckets ready");
        const kvm = new Kvm(nc);
        const kvs: Kvs = {
          runs: await kvm.open(Buckets.runs),
          workers: await kvm.open(Buckets.workers),
          defs: await kvm.open(Buckets.defs),
          rateLimits: await kvm.open(Buckets.rateLimits),
          crons: await kvm.open(Buckets.crons),
          idempotency: await kvm.open(Buckets.idempotency),
        };
        runtimes = config.namespaces.map(
          (ns) => new NamespaceRuntime(ns, nc as NatsConnection, js, jsm, kvs, config, baseLog),
        );
        for (const rt of runtimes) await rt.start();
        if (config.http !== "off") {
          const hooks = new Webhooks({
            js,
            kv: await kvm.open(Buckets.webhooks),
            namespaces: config.namespaces,
            log: baseLog.child({ module: "webhooks" }),
          });
          webhooks = hooks;
          await hooks.start();
          http = await startHttpServer(config.http, baseLog.child({ module: "http" }), (app) => hooks.routes(app));
        }
      } catch (err) {
        await this.stop();
        throw err;
      }
      log.info({ servers: config.servers, namespaces: config.namespaces }, "engine started");
    },
    async stop() {
      if (state !== "started") return;
      state = "stopped";
      await http?.stop();
      webhooks?.stop();
      for (const rt of runtimes) await rt.stop();
      if (nc && !deps.connection) await nc.drain().catch(() => nc?.close());
      log.info({}, "engine stopped");
    },
  };
}
