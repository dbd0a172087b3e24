import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  AppendConflictError,
  Buckets,
  ClosedError,
  checkKnownKeys,
  checkTaskName,
  checkToken,
  describeValue,
  EventTriggerSchema,
  encodeJsonObject,
  FlowOptionsSchema,
  keys,
  newId,
  newRunCreated,
  parseDuration,
  parseWith,
  RetryPolicySchema,
  type RunCreated,
  type RunEnd,
  RunIdTakenError,
  RunNotFoundError,
  type RunOptions,
  RunOptionsSchema,
  refuseUnknownKeys,
  TaskDefinitionSchema,
  ValidationError,
} from "@taskjet/schemas";
import { z } from "zod";
import { ApiTokensClient } from "./api-tokens.js";
import { appendEvent, isTransient } from "./append.js";
import { type ClientConfig, type ClientOptions, resolveClientConfig } from "./config.js";
import { type Connection, openBucket, openConnection, wrapConnection } from "./connection.js";
import { CronsClient, checkCronSpecs } from "./crons.js";
import { assertWritable, registerForDebug } from "./debug.js";
import { EventsClient } from "./events.js";
import { DEFAULT_IDEMPOTENCY_TTL_MS, IdempotencyKeys } from "./idempotency.js";
import { LogsClient } from "./logs.js";
import { RateLimitsClient } from "./rate-limits.js";
import { outcome, RunRef } from "./run-ref.js";
import { RunsClient } from "./runs.js";
import { scheduleTime } from "./schedule-time.js";
import { ScheduledClient } from "./scheduled.js";
import {
  type BulkItem,
  type BulkOptions,
  type DeclaredOptions,
  type JsonObject,
  TaskDeclaration,
  type TaskOptions,
  type Triggers,
} from "./task.js";
import { activeTraceHeaders } from "./tracing.js";
import { RunWaiter, SHARED_FROM, SharedEnds } from "./waiter.js";
import { WebhooksClient } from "./webhooks.js";
import { type ChildParent, type NewChild, Worker, type WorkerOptions } from "./worker/worker.js";
import { WorkersClient } from "./workers.js";
import { WorkflowDeclaration, type WorkflowOptions } from "./workflow.js";

/** Appends a bulk trigger keeps in flight at once. */
const BULK_IN_FLIGHT = 1024;
/** How long a registered definition is trusted by name-only triggers. */
const REGISTERED_TTL_MS = 5000;
/**
 * How long a name found without a definition is taken as a plain task's: triggering it by name again meanwhile reads
 * nothing (a producer often runs before any worker registered what it triggers). Only a workflow trigger differs, for
 * this long after the workflow's first registration.
 */
const UNREGISTERED_TTL_MS = 1000;
/** How long a waiter keeps re-reading its run through transient failures (a failover stalls writes 5-8 s). */
const CATCH_UP_RETRY_MS = 60_000;
/** Waiters whose runs are read per second at most, by `recheckWaiters`, those waiting longest first. */
const RECHECKS_PER_SECOND = 100;

/** How long one attempt may run unless the task says otherwise. */
const DEFAULT_EXECUTION_TIMEOUT = "60s";

/** What `tj.task` and `tj.durableTask` take: every key of `TaskOptions` (the compiler checks the list is whole). */
const TASK_OPTION_KEYS = Object.keys({
  name: 1,
  fn: 1,
  retries: 1,
  backoff: 1,
  executionTimeout: 1,
  scheduleTimeout: 1,
  defaultPriority: 1,
  concurrency: 1,
  rateLimits: 1,
  desiredWorkerLabels: 1,
  sticky: 1,
  slotCost: 1,
  idempotency: 1,
  onCrons: 1,
  onEvents: 1,
} satisfies Record<keyof TaskOptions<JsonObject, JsonObject>, 1>);

/** The options a declaration keeps, validated. */
type CheckedOptions = ConstructorParameters<typeof TaskDeclaration>[2];

/**
 * Checks the options a task declares, all but its name and function: `tj.task` checks a task's with it, a workflow
 * its own and its `taskDefaults` (the same rules for the same option). Fields are named under `prefix`
 * (`taskDefaults.retries`), crons under `owner` (`<task>.onCrons[0]`).
 * @throws ValidationError naming the field and the value
 */
function checkTaskOptions(
  options: Partial<Omit<TaskOptions<JsonObject, JsonObject | void>, "fn">>,
  durable: boolean,
  owner: string,
  prefix: string,
  maxPayloadBytes: number,
): CheckedOptions {
  const at = (field: string) => (prefix ? `${prefix}.${field}` : field);
  const policy = parseWith(RetryPolicySchema, { retries: options.retries ?? 0, backoff: options.backoff }, prefix);
  const executionTimeoutMs = parseDuration(
    options.executionTimeout ?? DEFAULT_EXECUTION_TIMEOUT,
    at("executionTimeout"),
  );
  const scheduleTimeoutMs =
    options.scheduleTimeout === undefined ? undefined : parseDuration(options.scheduleTimeout, at("scheduleTimeout"));
  const { defaultPriority } = options;
  if (defaultPriority !== undefined && ![1, 2, 3].includes(defaultPriority)) {
    throw new ValidationError([
      { path: at("defaultPriority"), message: `must be 1, 2 or 3, got ${describeValue(defaultPriority)}` },
    ]);
  }
  const { concurrency, rateLimits, desiredWorkerLabels, sticky, slotCost } = options;
  const flow = parseWith(
    FlowOptionsSchema,
    {
      concurrency: concurrency === undefined || Array.isArray(concurrency) ? concurrency : [concurrency],
      rateLimits,
      desiredWorkerLabels,
      sticky,
      slotCost,
      ...(durable ? { durable: true } : {}),
    },
    prefix,
  );
  const { idempotency } = options;
  if (idempotency !== undefined && (typeof idempotency !== "object" || idempotency === null)) {
    throw new ValidationError([
      { path: at("idempotency"), message: `must be { ttl?, expression? }, got ${describeValue(idempotency)}` },
    ]);
  }
  const expression = options.idempotency?.expression;
  if (expression !== undefined && (typeof expression !== "string" || expression.length === 0)) {
    throw new ValidationError([
      {
        path: at("idempotency.expression"),
        message: `must be a CEL expression string, got ${describeValue(expression)}`,
      },
    ]);
  }
  const idempotencyTtlMs =
    options.idempotency?.ttl === undefined ? undefined : parseDuration(options.idempotency.ttl, at("idempotency.ttl"));
  if (idempotencyTtlMs !== undefined && idempotencyTtlMs > 30 * 24 * 3600 * 1000) {
    throw new ValidationError([
      {
        path: at("idempotency.ttl"),
        message: `must be at most 30 days, got ${describeValue(options.idempotency?.ttl)}`,
      },
    ]);
  }
  const onEvents =
    options.onEvents === undefined
      ? undefined
      : parseWith(
          z.array(EventTriggerSchema).max(32),
          Array.isArray(options.onEvents)
            ? options.onEvents.map((e) => (typeof e === "string" ? { key: e } : e))
            : options.onEvents,
          at("onEvents"),
        );
  checkCronSpecs(owner, options.onCrons, maxPayloadBytes);
  return { policy, executionTimeoutMs, scheduleTimeoutMs, defaultPriority, flow, idempotencyTtlMs, onEvents };
}

/**
 * The Taskjet client: declares tasks, starts workers, triggers and reads runs.
 *
 * @example
 * const tj = await Taskjet.connect({ servers: "nats://127.0.0.1:4222" });
 * const hello = tj.task({ name: "hello", fn: async (input: { name: string }) => ({ greeting: `hi ${input.name}` }) });
 * const worker = await tj.worker("w1", { workflows: [hello], slots: 10 });
 * await worker.start();
 * const { greeting } = await hello.run({ name: "x" });
 * await tj.close();
 */
/**
 * `client` with every method refusing with `ClosedError` once `closed()`, as the client's own methods do: otherwise a
 * call after `close()` fails deep in nats.js with an error that has no code.
 */
function refusedOnceClosed<T extends object>(client: T, closed: () => boolean): T {
  return new Proxy(client, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        if (closed()) throw new ClosedError("client");
        return value.apply(target, args);
      };
    },
  });
}

export class Taskjet implements Triggers {
  /** Reading runs: `get`, `list`, `history`. */
  readonly runs: RunsClient;
  /** Static rate limits: `upsert`, `get`, `list`. */
  readonly ratelimits: RateLimitsClient;
  /** Scheduled runs: `list`, `get`, `update`, `delete`. */
  readonly scheduled: ScheduledClient;
  /** Cron schedules: `create`, `list`, `get`, `delete`. */
  readonly crons: CronsClient;
  /** Pushed events: `push`, `bulkPush`, `list`. */
  readonly events: EventsClient;
  /** Webhooks on the engine's HTTP server: `create`, `list`, `get`, `delete`. */
  readonly webhooks: WebhooksClient;
  /** Task log lines stored per run: `list`. */
  readonly logs: LogsClient;
  /** Bearer tokens of the engine's HTTP API for this namespace: `create`, `list`, `revoke`. */
  readonly apiTokens: ApiTokensClient;
  /** The namespace's live workers, as registered on their last heartbeat: `list`. */
  readonly workers: WorkersClient;
  private readonly waiters = new Set<RunWaiter>();
  /** Where waiters listen while many are outstanding (`SHARED_FROM`). */
  private readonly sharedEnds: SharedEnds;
  private readonly idempotency: IdempotencyKeys;
  /** Workers this client started, stopped by `close`. */
  private readonly ownWorkers = new Set<Worker>();
  private readonly registeredCache = new Map<string, { declared: DeclaredOptions | undefined; until: number }>();
  private defsKv: Promise<KV> | undefined;
  private closed = false;
  private readonly recheck: NodeJS.Timeout;

  private constructor(
    /** @internal */ readonly connection: Connection,
    /** @internal */ readonly config: ClientConfig,
    /** Whether `close` drains the connection: not one borrowed with `fromConnection`. */
    private readonly ownsConnection = true,
  ) {
    const open = <T extends object>(client: T) => refusedOnceClosed(client, () => this.closed);
    this.runs = open(new RunsClient(connection, config.namespace, config.logger));
    this.ratelimits = open(new RateLimitsClient(connection, config.namespace));
    this.scheduled = open(new ScheduledClient(connection, config.namespace, this.runs));
    this.idempotency = new IdempotencyKeys(connection, config.namespace);
    this.crons = open(new CronsClient(connection, config.namespace));
    this.events = open(new EventsClient(connection, config.namespace, () => this.eventTaskNames()));
    this.webhooks = open(new WebhooksClient(connection, config.namespace));
    this.logs = open(new LogsClient(connection, config.namespace));
    this.apiTokens = open(new ApiTokensClient(connection, config.namespace));
    this.workers = open(new WorkersClient(connection, config.namespace));
    this.sharedEnds = new SharedEnds(connection.nc, config.namespace);
    this.watchReconnects().catch((err) => config.logger.warn({ err }, "connection status watch ended"));
    this.recheck = setInterval(() => this.recheckWaiters(), 1000);
    this.recheck.unref();
  }

  /**
   * Connects to NATS.
   * @throws ConnectionError naming the server URLs; ValidationError for bad options
   */
  static async connect(options: ClientOptions = {}): Promise<Taskjet> {
    const config = resolveClientConfig(options);
    const connection = await openConnection(config.access, config.name, config.maxPayloadBytes, config.inboxPrefix);
    return new Taskjet(connection, config);
  }

  /**
   * A client over a NATS connection opened elsewhere, which it neither opens nor closes (`close` stops its workers
   * and fails pending waits only). The engine's REST API serves each namespace through one.
   * @throws ValidationError for bad options
   */
  static async fromConnection(nc: NatsConnection, options: ClientOptions = {}): Promise<Taskjet> {
    const config = resolveClientConfig(options);
    return new Taskjet(await wrapConnection(nc, config.maxPayloadBytes), config, false);
  }

  /** The namespace this client works in. */
  get namespace(): string {
    return this.config.namespace;
  }

  /**
   * Declares a durable task: its context adds `ctx.sleepFor`, `ctx.sleepUntil` and `ctx.now()`, each a checkpoint in
   * the run's history. A sleep ends the attempt and frees its slot; the engine wakes the task when it is over, on any
   * worker, and the new attempt replays the completed checkpoints instead of repeating them. Durable tasks run in the
   * worker's `durableSlots`.
   */
  durableTask<I extends object = JsonObject, O extends object | void = JsonObject>(
    options: TaskOptions<I, O>,
  ): TaskDeclaration<I, O> {
    return this.declare(options, true);
  }

  /** Declares a task. The returned runnable is registered on workers and triggers runs. */
  task<I extends object = JsonObject, O extends object | void = JsonObject>(
    options: TaskOptions<I, O>,
  ): TaskDeclaration<I, O> {
    return this.declare(options, false);
  }

  private declare<I extends object, O extends object | void>(
    options: TaskOptions<I, O>,
    durable: boolean,
  ): TaskDeclaration<I, O> {
    if (typeof options !== "object" || options === null) {
      throw new ValidationError([
        { path: "task", message: `must be an object with name and fn, got ${String(options)}` },
      ]);
    }
    checkTaskName(options.name, "name");
    if (typeof options.fn !== "function") {
      throw new ValidationError([{ path: "fn", message: `must be a function, got ${typeof options.fn}` }]);
    }
    refuseUnknownKeys(options, TASK_OPTION_KEYS, "", "a task option");
    const checked = checkTaskOptions(options, durable, options.name, "", this.connection.payloadLimit);
    const declaration = new TaskDeclaration(this, options, checked);
    registerForDebug(declaration as TaskDeclaration<JsonObject, JsonObject | void>, durable);
    return declaration;
  }

  /** Creates a worker; `await worker.start()` registers it and starts taking work. */
  async worker(name: string, options: WorkerOptions): Promise<Worker> {
    this.assertOpen();
    const worker = new Worker(
      this.connection,
      this.config,
      name,
      options,
      (w) => this.ownWorkers.delete(w),
      { rateLimits: this.ratelimits, crons: this.crons },
      this,
    );
    this.ownWorkers.add(worker);
    return worker;
  }

  /** Triggers a run of a task by name and waits for its output. */
  async run<O = JsonObject>(
    taskName: string,
    input: JsonObject,
    options?: RunOptions,
    declared?: DeclaredOptions,
  ): Promise<O> {
    declared ??= await this.registered(taskName);
    const event = this.runCreated(taskName, input, await this.claim(taskName, options, declared), declared);
    return this.appendAndWait<O>(event);
  }

  /** Appends a run's creation and waits for its outcome. */
  private async appendAndWait<O>(event: RunCreated): Promise<O> {
    // Listening before appending: the engine's announcement of the run's end cannot come before the subscription.
    const waiter = this.waiter(event.runId);
    try {
      let existed: boolean;
      try {
        existed = existedBefore(await appendEvent(this.connection, this.namespace, event, 0));
      } catch (err) {
        if (!(err instanceof AppendConflictError)) throw err;
        existed = true;
      }
      if (existed) {
        await this.checkNotTaken(event);
        // The run existed already (same run id): it may have moved on before we listened.
        await this.catchUp(waiter);
      }
    } catch (err) {
      waiter.abandon();
      throw err;
    }
    return outcome<O>(await waiter.done);
  }

  /** Appends a run's creation (an existing run id of the same task is that run) and returns its handle. */
  private async appendNoWait<O>(event: RunCreated): Promise<RunRef<O>> {
    let existed: boolean;
    try {
      existed = existedBefore(await appendEvent(this.connection, this.namespace, event, 0));
    } catch (err) {
      if (!(err instanceof AppendConflictError)) throw err;
      existed = true;
    }
    if (existed) await this.checkNotTaken(event);
    return this.handle<O>(event.runId, existed);
  }

  /**
   * A run id that exists already is that run when it is a run of the same task (a retried trigger); a run of another
   * task is not the caller's.
   * @throws RunIdTakenError
   */
  private async checkNotTaken(event: RunCreated): Promise<void> {
    const existing = await this.runs.read(event.runId, undefined);
    const task = event.data.workflowName;
    if (existing && existing.workflowName !== task) throw new RunIdTakenError(event.runId, existing.workflowName, task);
  }

  /**
   * Declares a workflow: a DAG of tasks (`wf.task({ name, parents, fn })`) run as one run.
   * @throws ValidationError for a bad name
   */
  workflow<I extends object = JsonObject>(options: WorkflowOptions): WorkflowDeclaration<I> {
    if (typeof options !== "object" || options === null) {
      throw new ValidationError([
        { path: "workflow", message: `must be an object with a name, got ${String(options)}` },
      ]);
    }
    return new WorkflowDeclaration<I>(this, options);
  }

  /** @internal Checks a workflow's options as `tj.task` checks a task's (`WorkflowHost.checkOptions`). */
  checkOptions(
    options: Partial<Omit<TaskOptions<JsonObject, JsonObject | void>, "fn">>,
    owner: string,
    prefix = "",
  ): void {
    checkTaskOptions(options, false, owner, prefix, this.connection.payloadLimit);
  }

  /** @internal Triggers a workflow run (`wf.run`, `wf.runNoWait`). */
  async runWorkflow<O>(
    // biome-ignore lint/suspicious/noExplicitAny: any workflow, whatever its input type
    wf: WorkflowDeclaration<any>,
    input: JsonObject,
    options: RunOptions | undefined,
    mode: "wait" | "noWait" | { at: Date | string },
  ): Promise<O | RunRef<O>> {
    const declared: DeclaredOptions = { defaultPriority: wf.options.defaultPriority };
    const event = this.runCreated(wf.name, input, await this.claim(wf.name, options, declared), declared);
    event.data.tasks = wf.specs(event.runId, (t) => ({ scheduleTimeoutMs: t.declaration.scheduleTimeoutMs }));
    if (typeof mode === "object") {
      event.data.scheduledAt = scheduleTime(mode.at, "at");
      event.data.trigger = { kind: "schedule" };
    }
    return mode === "wait" ? this.appendAndWait<O>(event) : this.appendNoWait<O>(event);
  }

  /** Triggers a run of a task by name and returns once it is recorded in the log. */
  async runNoWait<O = JsonObject>(
    taskName: string,
    input: JsonObject,
    options?: RunOptions,
    declared?: DeclaredOptions,
  ): Promise<RunRef<O>> {
    declared ??= await this.registered(taskName);
    const event = this.runCreated(taskName, input, await this.claim(taskName, options, declared), declared);
    return this.appendNoWait<O>(event);
  }

  /**
   * Triggers many runs of a task by name, pipelined (no round trip per run), and returns their handles in input
   * order once every run is recorded. Every item is validated before anything is sent.
   * @throws ValidationError naming the item (`[3].input`), unless `returnExceptions` puts each error in its place
   */
  async runManyNoWait<O = JsonObject>(
    taskName: string,
    items: readonly BulkItem[],
    options: BulkOptions = {},
    declared?: DeclaredOptions,
  ): Promise<(RunRef<O> | Error)[]> {
    declared ??= await this.registered(taskName);
    const events = this.bulkEvents(taskName, await this.claimAll(taskName, items, declared), options, declared);
    const appended = await this.appendAll(events);
    return appended.map((r, i) =>
      r instanceof Error ? r : this.handle<O>((events[i] as RunCreated).runId, r === "existed"),
    );
  }

  /**
   * Triggers many runs of a task by name and waits for all of them: outputs in input order. Without
   * `returnExceptions` the first failure (in input order) is thrown once every run has finished.
   */
  async runMany<O = JsonObject>(
    taskName: string,
    items: readonly BulkItem[],
    options: BulkOptions = {},
    declared?: DeclaredOptions,
  ): Promise<(O | Error)[]> {
    declared ??= await this.registered(taskName);
    const events = this.bulkEvents(taskName, await this.claimAll(taskName, items, declared), options, declared);
    // Listening before appending, as in run().
    const waiters = events.map((e) => (e instanceof Error ? undefined : this.waiter(e.runId)));
    const appended = await this.appendAll(events);
    const results = await Promise.all(
      appended.map(async (r, i) => {
        const waiter = waiters[i];
        if (r instanceof Error || !waiter) {
          waiter?.abandon();
          return r instanceof Error ? r : new Error("not sent");
        }
        if (r === "existed") await this.catchUp(waiter);
        try {
          return outcome<O>(await waiter.done);
        } catch (err) {
          return err instanceof Error ? err : new Error(String(err));
        }
      }),
    );
    if (!options.returnExceptions) {
      const failed = results.find((r) => r instanceof Error);
      if (failed) throw failed;
    }
    return results;
  }

  /**
   * Creates a run that starts at `at` (a Date or an ISO time; a time in the past starts it at once). It is
   * SCHEDULED until then: `tj.scheduled` lists, moves and deletes it.
   * @throws ValidationError for a bad time, one beyond the history's retention, or bad input
   */
  async schedule<O = JsonObject>(
    taskName: string,
    at: Date | string,
    input: JsonObject,
    options?: RunOptions,
    declared?: DeclaredOptions,
  ): Promise<RunRef<O>> {
    declared ??= await this.registered(taskName);
    const event = this.runCreated(taskName, input, await this.claim(taskName, options, declared), declared);
    event.data.scheduledAt = scheduleTime(at, "at");
    event.data.trigger = { kind: "schedule" };
    return this.appendNoWait<O>(event);
  }

  /** @internal Creates child runs (pipelined; an existing id is that child) and returns their handles in order. */
  async createChildren(parent: ChildParent, children: NewChild[]): Promise<RunRef<JsonObject>[]> {
    // A child named by a workflow (or a task registered with a priority and schedule timeout) is built from what its
    // workers registered, as a trigger by name is: a workflow's name alone would make a run no worker takes.
    const names = [...new Set(children.map((c, i) => checkTaskName(c.taskName, `children[${i}].task`)))];
    const declared = new Map(await Promise.all(names.map(async (n) => [n, await this.registered(n)] as const)));
    const events = children.map((c, i) => {
      encodeJsonObject(c.input, `children[${i}].input`, this.connection.payloadLimit);
      const d = declared.get(c.taskName);
      return newRunCreated({
        runId: c.runId,
        taskName: c.taskName,
        input: c.input,
        trigger: { kind: "child", parentRunId: parent.runId, parentTaskRunId: parent.taskRunId, key: c.key },
        additionalMetadata: { ...parent.additionalMetadata, ...c.additionalMetadata },
        priority: c.priority ?? d?.defaultPriority ?? 1,
        scheduleTimeoutMs: d?.scheduleTimeoutMs,
        workflow: d?.workflow,
        sticky: c.sticky,
        // The task's active span (its own, or the run's trigger the worker activated): children join its trace.
        trace: activeTraceHeaders(),
      });
    });
    const appended = await this.appendAll(events);
    const failed = appended.find((r) => r instanceof Error);
    if (failed) throw failed;
    return events.map((e, i) => this.handle<JsonObject>(e.runId, appended[i] === "existed"));
  }

  /** A handle on an existing run. */
  ref<O = JsonObject>(runId: string): RunRef<O> {
    checkToken(runId, "runId");
    return this.handle<O>(runId, false);
  }

  private handle<O>(runId: string, existing: boolean): RunRef<O> {
    return new RunRef<O>(
      runId,
      () => this.waitFor(runId),
      () => this.runs.get(runId),
      (reason) => this.runs.cancelOne(runId, reason),
      () => this.runs.history(runId, { follow: true }),
      existing,
    );
  }

  /** Tasks registered with `onEvents` (from `TJ_DEFS`). */
  private async eventTaskNames(): Promise<string[]> {
    const kv = await openBucket(this.connection, Buckets.defs);
    const names: string[] = [];
    for await (const key of await kv.keys(keys.defsOf(this.namespace))) {
      const entry = await kv.get(key);
      if (entry?.operation !== "PUT" || entry.length === 0) continue;
      const def = TaskDefinitionSchema.safeParse(entry.json());
      if (def.success && (def.data.onEvents?.length ?? 0) > 0) names.push(def.data.name);
    }
    return names;
  }

  /** Stops this client's workers (gracefully), fails pending waits and disconnects. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.recheck);
    await Promise.all([...this.ownWorkers].map((w) => w.stop()));
    for (const w of [...this.waiters]) w.fail(new ClosedError("client"));
    if (this.ownsConnection) await this.connection.nc.drain().catch(() => this.connection.nc.close());
  }

  private async waitFor(runId: string): Promise<RunEnd> {
    const waiter = this.waiter(runId);
    // Reads go to the stream leader, which has every run whose creation was acknowledged. A subject whose only
    // message does not fold (a first message the engine will refuse) is a run: its end is the refusal.
    if ((await this.catchUp(waiter)) === false && !(await this.runs.hasHistory(runId))) {
      waiter.fail(new RunNotFoundError(runId));
    }
    return waiter.done;
  }

  private waiter(runId: string): RunWaiter {
    this.assertOpen();
    const shared = this.waiters.size >= SHARED_FROM || this.sharedEnds.active;
    const waiter = new RunWaiter(
      this.connection.nc,
      this.namespace,
      runId,
      (w) => this.waiters.delete(w),
      (w) => void this.catchUp(w),
      shared ? this.sharedEnds : undefined,
    );
    this.waiters.add(waiter);
    return waiter;
  }

  /** @returns whether the run exists; undefined when the read failed (the waiter then failed) */
  private async catchUp(waiter: RunWaiter): Promise<boolean | undefined> {
    const deadline = Date.now() + CATCH_UP_RETRY_MS;
    for (let attempt = 0; ; attempt++) {
      try {
        return await waiter.catchUp(() => this.runs.read(waiter.runId, undefined));
      } catch (err) {
        // A read in a NATS failover fails for seconds; the waiter may hear the run's end meanwhile, so it is not done.
        if (!isTransient(err) || this.closed || Date.now() > deadline) {
          waiter.fail(err);
          return undefined;
        }
        await new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** attempt)));
      }
    }
  }

  /**
   * With an idempotency key, the run id to use: the key's run while its claim lasts, else a new one now claimed.
   * Without one, the options as given.
   */
  private async claim(
    taskName: string,
    options: RunOptions | undefined,
    declared?: DeclaredOptions,
  ): Promise<RunOptions> {
    if (!options?.idempotencyKey) return options ?? {};
    assertWritable(`claiming idempotency key ${options.idempotencyKey}`);
    const opts = parseWith(RunOptionsSchema, options, "options");
    const key = opts.idempotencyKey as string;
    const ttl = declared?.idempotencyTtlMs ?? DEFAULT_IDEMPOTENCY_TTL_MS;
    return { ...options, runId: await this.idempotency.claim(taskName, key, ttl, opts.runId ?? newId()) };
  }

  /** `claim` for each bulk item with a key (in parallel); a bad item is left for validation to report. */
  private claimAll(taskName: string, items: readonly BulkItem[], declared?: DeclaredOptions): Promise<BulkItem[]> {
    if (!Array.isArray(items) || !items.some((i) => i?.options?.idempotencyKey))
      return Promise.resolve(items as BulkItem[]);
    return Promise.all(
      items.map(async (item) =>
        item?.options?.idempotencyKey
          ? { ...item, options: await this.claim(taskName, item.options, declared).catch(() => item.options) }
          : item,
      ),
    );
  }

  /** Validates every item (all of them, before anything is sent) and builds their events, or errors in place. */
  private bulkEvents(
    taskName: string,
    items: readonly BulkItem[],
    options: BulkOptions,
    declared: DeclaredOptions | undefined,
  ): (RunCreated | Error)[] {
    this.assertOpen();
    checkTaskName(taskName, "taskName");
    checkKnownKeys(options, ["returnExceptions"], "options", "a bulk option");
    if (!Array.isArray(items)) {
      throw new ValidationError([
        { path: "items", message: `must be an array of { input, options }, got ${typeof items}` },
      ]);
    }
    const events = items.map((item, i) => {
      try {
        if (typeof item !== "object" || item === null) {
          throw new ValidationError([{ path: `[${i}]`, message: `must be { input, options? }, got ${String(item)}` }]);
        }
        refuseUnknownKeys(item, ["input", "options"], `[${i}]`, "a bulk item field");
        return this.runCreated(taskName, item.input, item.options, declared, `[${i}].`);
      } catch (err) {
        if (!options.returnExceptions) throw err;
        return err instanceof Error ? err : new Error(String(err));
      }
    });
    return events;
  }

  /**
   * Appends `RunCreated` events with many in flight at once over the one connection. An existing run id is that
   * run (`"existed"`), as for a single trigger, or `RunIdTakenError` when it is a run of another task.
   */
  private async appendAll(events: readonly (RunCreated | Error)[]): Promise<("created" | "existed" | Error)[]> {
    const results: ("created" | "existed" | Error)[] = new Array(events.length);
    let next = 0;
    const lane = async () => {
      while (next < events.length) {
        const i = next++;
        const event = events[i] as RunCreated | Error;
        if (event instanceof Error) {
          results[i] = event;
          continue;
        }
        try {
          try {
            results[i] = existedBefore(await appendEvent(this.connection, this.namespace, event, 0))
              ? "existed"
              : "created";
          } catch (err) {
            if (!(err instanceof AppendConflictError)) throw err;
            results[i] = "existed";
          }
          if (results[i] === "existed") await this.checkNotTaken(event);
        } catch (err) {
          results[i] = err instanceof Error ? err : new Error(String(err));
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(BULK_IN_FLIGHT, events.length) }, lane));
    return results;
  }

  /** Validates a trigger at the edge and builds its `RunCreated` event. */
  private runCreated(
    taskName: string,
    input: JsonObject,
    options: RunOptions = {},
    declared: DeclaredOptions = {},
    path = "",
  ): RunCreated {
    this.assertOpen();
    checkTaskName(taskName, "taskName");
    const opts = parseWith(RunOptionsSchema, options ?? {}, `${path}options`);
    encodeJsonObject(input, `${path}input`, this.connection.payloadLimit);
    const runId = opts.runId ?? newId();
    return newRunCreated({
      runId,
      taskName,
      input,
      trigger: opts.idempotencyKey ? { kind: "run", idempotencyKey: opts.idempotencyKey } : { kind: "run" },
      additionalMetadata: opts.additionalMetadata ?? {},
      priority: opts.priority ?? declared.defaultPriority ?? 1,
      scheduleTimeoutMs: declared.scheduleTimeoutMs,
      workflow: declared.workflow,
      trace: opts.traceparent ? { traceparent: opts.traceparent, tracestate: opts.tracestate } : activeTraceHeaders(),
    });
  }

  /**
   * What a name-only trigger needs from the definition the task's workers registered: a workflow's tasks. A registered
   * definition is cached for a few seconds, so a burst of triggers costs one read; an unregistered name is not (its
   * workers may register next, and a workflow must not be triggered as one task).
   */
  private async registered(taskName: string): Promise<DeclaredOptions | undefined> {
    const now = Date.now();
    const cached = this.registeredCache.get(taskName);
    if (cached && cached.until > now) return cached.declared;
    try {
      this.defsKv ??= openBucket(this.connection, Buckets.defs);
      const entry = await (await this.defsKv).get(keys.def(this.namespace, taskName));
      const def = entry?.operation === "PUT" ? TaskDefinitionSchema.safeParse(entry.json()) : undefined;
      if (!def?.success) {
        this.registeredCache.set(taskName, { declared: undefined, until: now + UNREGISTERED_TTL_MS });
        return undefined;
      }
      const { workflow, defaultPriority, scheduleTimeoutMs, idempotency } = def.data;
      const declared: DeclaredOptions = {
        ...(workflow ? { workflow } : {}),
        ...(defaultPriority ? { defaultPriority } : {}),
        ...(scheduleTimeoutMs ? { scheduleTimeoutMs } : {}),
        ...(idempotency?.ttlMs ? { idempotencyTtlMs: idempotency.ttlMs } : {}),
      };
      this.registeredCache.set(taskName, { declared, until: now + REGISTERED_TTL_MS });
      return declared;
    } catch {
      this.defsKv = undefined; // not provisioned yet: the append says so
      return undefined;
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new ClosedError("client");
  }

  /**
   * Reads the runs of the waiters due (`RunWaiter.recheckAt`): an end is announced over core NATS, and one lost on
   * its way without this connection dropping (a route between cluster nodes that broke and came back) is heard of no
   * other way. A read that fails is left for the next one.
   */
  private recheckWaiters(): void {
    const now = Date.now();
    let budget = RECHECKS_PER_SECOND;
    for (const waiter of this.waiters) {
      if (waiter.recheckAt > now) continue;
      if (budget-- === 0) return;
      waiter.rechecked(now);
      waiter
        .catchUp(() => this.runs.read(waiter.runId, undefined))
        .catch((err) => this.config.logger.debug({ err, runId: waiter.runId }, "could not read a waited run"));
    }
  }

  /** After a reconnect, plain subscriptions may have missed events: waiters re-read the log. */
  private async watchReconnects(): Promise<void> {
    for await (const status of this.connection.nc.status()) {
      if (status.type !== "reconnect") continue;
      await Promise.all([...this.waiters].map((w) => this.catchUp(w)));
    }
  }
}

/**
 * Whether a run's creation found the run there already: stored by another trigger of its run id, not by an earlier
 * try of this append (whose ack was lost: the run is this trigger's).
 */
function existedBefore(appended: { duplicate: boolean; earlierTry?: boolean }): boolean {
  return appended.duplicate && !appended.earlierTry;
}
