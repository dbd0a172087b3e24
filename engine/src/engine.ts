import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { Buckets, kvClaimStore, newId, type TaskjetEventInput } from "@taskjet/schemas";
import { inboxPrefixOf, StreamPublisher } from "@taskjet/sdk";
import { type Logger, pino } from "pino";
import { type EngineConfig, type EngineConfigInput, resolveEngineConfig } from "./config.js";
import { Dispatcher } from "./dispatcher/dispatcher.js";
import { EventWaits } from "./events/event-waits.js";
import { IdempotentRuns } from "./events/idempotent-runs.js";
import { EventRouter } from "./events/router.js";
import { HttpApi } from "./http/api.js";
import { Dashboard } from "./http/dashboard.js";
import { OpenApiDocs } from "./http/openapi.js";
import { RestApi } from "./http/rest.js";
import { type HttpServer, startHttpServer } from "./http/server.js";
import { Webhooks } from "./http/webhooks.js";
import type { Fence } from "./leases/fence.js";
import { Leases } from "./leases/leases.js";
import { appendEvent } from "./log/append.js";
import { LEASE_RENEW_MS, LEASE_TTL_MS, provision } from "./log/provision.js";
import { EngineMetrics, type NamespaceMetrics } from "./metrics/metrics.js";
import { connectNats, maxPayloadOf } from "./nats/connect.js";
import { Projector } from "./projector/projector.js";
import { RunStore } from "./projector/run-store.js";
import { Definitions } from "./scheduler/definitions.js";
import { factsOfState, limiterState, serveQueues, summarizeQueues } from "./scheduler/inspect.js";
import { RateUseStore } from "./scheduler/rate-use.js";
import { Scheduler } from "./scheduler/scheduler.js";
import { Crons } from "./timers/crons.js";
import { Retrier } from "./timers/retrier.js";
import { Schedules } from "./timers/schedules.js";
import { Timeouts } from "./timers/timeouts.js";
import { systemClock, Timers } from "./timers/timers.js";
import { RunEnds } from "./waiters/run-ends.js";
import { WorkerRegistry } from "./workers/registry.js";
import { listenForFreedSlots } from "./workers/slots-freed.js";

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
  /** This replica's id (in `TJ_LEASES`). */
  readonly id: string;
  /** The namespaces this replica leads now (holds the lease of); the others wait as standbys. */
  leading(): string[];
}

/** One namespace's projector, scheduler, dispatcher and worker registry. */
class NamespaceRuntime {
  private readonly projector: Projector;
  private readonly scheduler: Scheduler;
  private readonly registry: WorkerRegistry;
  private readonly definitions: Definitions;
  private readonly rateUse: RateUseStore;
  private readonly crons: Crons;
  private readonly router: EventRouter;
  private readonly timers: Timers;

  private readonly log: Logger;
  private readonly ends: RunEnds;
  private stopInspection: (() => void) | undefined;
  private freedSlots: Subscription | undefined;

  constructor(
    private readonly ns: string,
    private readonly nc: NatsConnection,
    js: JetStreamClient,
    jsm: JetStreamManager,
    publisher: StreamPublisher,
    kvs: Kvs,
    config: EngineConfig,
    log: Logger,
    fence: Fence,
    private readonly metrics?: NamespaceMetrics,
  ) {
    const nsLog = log.child({ ns });
    const append = (event: TaskjetEventInput, expectedSeq: number) => appendEvent(publisher, ns, event, expectedSeq);
    this.log = nsLog.child({ module: "engine" });
    this.ends = new RunEnds({ nc, ns, log: nsLog.child({ module: "run-ends" }) });
    const dispatcher = new Dispatcher({
      nc,
      ns,
      log: nsLog.child({ module: "dispatcher" }),
      onUndelivered: (p) => this.scheduler.undelivered(p),
      takesBatches: (workerId) => this.scheduler.registration(workerId)?.assignmentBatches === true,
      takesSlim: (workerId) => this.scheduler.registration(workerId)?.slimAssignments === true,
      fence,
    });
    this.projector = new Projector({
      js,
      jsm,
      ns,
      store: new RunStore(js, jsm, kvs.runs, ns, publisher, () => maxPayloadOf(nc)),
      log: nsLog.child({ module: "projector" }),
      flushMs: config.projectionFlushMs,
      activeDelayMs: config.projectionActiveDelayMs,
      queuedDelayMs: config.projectionQueuedDelayMs,
      hotLimit: config.hotRunLimit,
      pinned: (state) => this.scheduler.placed(state),
      fence,
      onChange: (change) => {
        this.scheduler.onChange(change);
        this.metrics?.observe(change);
      },
      onEnded: (state) => {
        this.ends.announce(state);
        this.scheduler.ended(state);
      },
    });
    this.timers = new Timers(systemClock, fence);
    const retrier = new Retrier({
      timers: this.timers,
      clock: systemClock,
      log: nsLog.child({ module: "retries" }),
      states: this.projector,
      append,
    });
    const timeouts = new Timeouts({
      timers: this.timers,
      log: nsLog.child({ module: "timeouts" }),
      states: this.projector,
      append,
    });
    const schedules = new Schedules({
      timers: this.timers,
      log: nsLog.child({ module: "schedules" }),
      states: this.projector,
      append,
    });
    const eventWaits = new EventWaits({
      js,
      ns,
      log: nsLog.child({ module: "event-waits" }),
      states: this.projector,
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
      states: this.projector,
      awaitWorker: (id) => this.registry.expect(id),
      definition: (name) => this.definitions.get(name),
      scheduleTimeoutMs: config.defaultScheduleTimeoutMs,
      resendAfterMs: config.assignmentResendMs,
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
    this.rateUse = new RateUseStore({
      js,
      kv: kvs.rateUse,
      ns,
      rates: this.scheduler.core.rates,
      log: nsLog.child({ module: "rate-use" }),
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
    // Before anything is placed: what the last leader admitted counts.
    await this.rateUse.start();
    this.scheduler.recover();
    this.freedSlots = listenForFreedSlots(this.nc, this.ns, this.log, (workerId, attempts, returned) =>
      this.scheduler.slotsFreed(workerId, attempts, returned),
    );
    this.projector.coolDown();
    await this.crons.start();
    await this.router.start();
    // Live scheduler state for `GET /metrics` and `GET queues` (any replica's REST API asks the leader over NATS).
    this.metrics?.setLive(() => ({
      core: this.scheduler.core.snapshot(),
      states: this.projector.values(),
      runsInMemory: this.projector.states.size,
      coldQueues: () => this.scheduler.coldQueues(),
      workerName: (id) => this.scheduler.registration(id)?.name,
      now: Date.now(),
    }));
    this.stopInspection = serveQueues(this.nc, this.ns, () => this.queues(), this.log);
  }

  /** The queues as this leader's scheduler holds them: the runs in memory, and what its queues hold of cold ones. */
  private async queues() {
    const cold = await this.scheduler.coldQueues();
    const now = Date.now();
    const core = this.scheduler.core.snapshot();
    const projector = this.projector;
    const facts = (function* () {
      for (const state of projector.values()) yield* factsOfState(state);
    })();
    return {
      source: "leader" as const,
      at: new Date(now).toISOString(),
      queues: summarizeQueues(
        facts,
        core.workers.map((w) => w.tasks),
        now,
        cold,
      ),
      ...limiterState(core, this.scheduler.core.rates.snapshot(now)),
    };
  }

  /** `flush`: write pending projections (not when the lease was lost: the new leader re-reads them from the log). */
  async stop(flush: boolean): Promise<void> {
    this.stopInspection?.();
    this.freedSlots?.unsubscribe();
    this.metrics?.setLive(undefined);
    await this.router.stop();
    this.crons.stop();
    this.timers.stop();
    this.scheduler.stop();
    await this.rateUse.stop(flush);
    this.registry.stop();
    this.definitions.stop();
    await this.projector.stop(flush);
    this.ends.stop();
  }

  /** The engine's connection came back after a drop. */
  reconnected(): void {
    this.ends.again();
    this.registry.reconnected();
  }
}

type Kvs = Record<
  "runs" | "workers" | "defs" | "rateLimits" | "rateUse" | "crons" | "idempotency",
  Awaited<ReturnType<Kvm["open"]>>
>;

/**
 * Until the connection closes. After a drop, the other replicas found this one's ping unanswered and may have taken its
 * leases; after a reconnect, what went out just before the drop may not have got through.
 */
async function watchConnection(
  nc: NatsConnection,
  on: { disconnect: () => void; reconnect: () => void },
): Promise<void> {
  for await (const status of nc.status()) {
    if (status.type === "disconnect") on.disconnect();
    else if (status.type === "reconnect") on.reconnect();
  }
}

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
  const id = newId();
  const runtimes = new Map<string, NamespaceRuntime>();
  let leases: Leases | undefined;
  let http: HttpServer | undefined;
  let webhooks: Webhooks | undefined;
  let api: HttpApi | undefined;
  let rest: RestApi | undefined;
  const metrics = new EngineMetrics(id, config.namespaces, () => leases?.leading() ?? []);
  let dashboard: Dashboard | undefined;
  let state: "new" | "started" | "stopped" = "new";

  return {
    config,
    id,
    httpAddress: () => http?.address,
    leading: () => leases?.leading() ?? [],
    async start() {
      if (state !== "new") throw new Error(`engine already ${state}`);
      state = "started";
      try {
        nc = deps.connection ?? (await connectNats(config.servers, "taskjet-engine", config.access));
        watchConnection(nc, {
          disconnect: () => leases?.disconnected(),
          reconnect: () => {
            for (const rt of runtimes.values()) rt.reconnected();
          },
        }).catch((err) => log.warn({ err }, "connection status watch ended"));
        const js = jetstream(nc);
        const jsm = await jetstreamManager(nc);
        const publisher = new StreamPublisher(nc, inboxPrefixOf(nc));
        await provision(nc, jsm, config, log);
        log.debug({}, "streams and buckets ready");
        const kvm = new Kvm(nc);
        const kvs: Kvs = {
          runs: await kvm.open(Buckets.runs),
          workers: await kvm.open(Buckets.workers),
          defs: await kvm.open(Buckets.defs),
          rateLimits: await kvm.open(Buckets.rateLimits),
          rateUse: await kvm.open(Buckets.rateUse),
          crons: await kvm.open(Buckets.crons),
          idempotency: await kvm.open(Buckets.idempotency),
        };
        leases = new Leases({
          kv: await kvm.open(Buckets.leases),
          nc,
          engineId: id,
          namespaces: config.namespaces,
          log: baseLog.child({ module: "leases", engineId: id }),
          renewMs: LEASE_RENEW_MS,
          ttlMs: LEASE_TTL_MS,
          lead: async (ns, fence) => {
            const rt = new NamespaceRuntime(
              ns,
              nc as NatsConnection,
              js,
              jsm,
              publisher,
              kvs,
              config,
              baseLog,
              fence,
              metrics.of(ns),
            );
            runtimes.set(ns, rt);
            await rt.start();
          },
          follow: async (ns, graceful) => {
            const rt = runtimes.get(ns);
            runtimes.delete(ns);
            await rt?.stop(graceful);
          },
        });
        await leases.start();
        if (config.http !== "off") {
          const hooks = new Webhooks({
            js,
            maxPayload: () => nc?.info?.max_payload,
            kv: await kvm.open(Buckets.webhooks),
            namespaces: config.namespaces,
            log: baseLog.child({ module: "webhooks" }),
          });
          webhooks = hooks;
          await hooks.start();
          const tokens = new HttpApi({ js, kvm, namespaces: config.namespaces, log: baseLog.child({ module: "api" }) });
          api = tokens;
          await tokens.start();
          const docs = new OpenApiDocs({ title: "Taskjet", version: "1" });
          rest = new RestApi({
            nc,
            js,
            runsKv: kvs.runs,
            namespaces: config.namespaces,
            access: config.access,
            tokens: tokens.tokens,
            metrics,
            docs,
            log: baseLog.child({ module: "rest" }),
          });
          const restRoutes = rest;
          const board = new Dashboard({
            js,
            jsm,
            namespaces: config.namespaces,
            log: baseLog.child({ module: "dashboard" }),
          });
          dashboard = board;
          http = await startHttpServer(
            config.http,
            baseLog.child({ module: "http" }),
            (app) => {
              docs.attach(app); // first: it documents the routes registered after it
              hooks.routes(app);
              restRoutes.routes(app); // behind bearer tokens; webhooks keep their own authentication
              board.routes(app, tokens.tokens);
            },
            () => ({
              ok: !(nc as NatsConnection).isClosed(),
              namespaces: config.namespaces,
              leading: leases?.leading() ?? [],
            }),
          );
        }
      } catch (err) {
        await this.stop();
        throw err;
      }
      log.info(
        { servers: config.servers, namespaces: config.namespaces, leading: leases?.leading(), engineId: id },
        "engine started",
      );
    },
    async stop() {
      if (state !== "started") return;
      state = "stopped";
      dashboard?.stop(); // its event streams would hold the server's close
      await http?.stop();
      webhooks?.stop();
      api?.stop();
      await rest?.stop();
      await leases?.stop();
      for (const rt of runtimes.values()) await rt.stop(true); // started before its lease could be recorded
      if (nc && !deps.connection) await nc.drain().catch(() => nc?.close());
      log.info({}, "engine stopped");
    },
  };
}
