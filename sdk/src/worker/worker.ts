import { hostname } from "node:os";
import type { KV } from "@nats-io/kv";
import type { Subscription } from "@nats-io/transport-node";
import {
  type Assignment,
  AssignmentSchema,
  AttemptNotCurrentError,
  assignmentOf,
  Buckets,
  ChildRunOptionsSchema,
  ClosedError,
  type ControlMessage,
  ControlMessageSchema,
  childRunId,
  compiledOnUse,
  compileEventFilter,
  compileFlow,
  compileKeyExpression,
  describeValue,
  EventTriggerSchema,
  EventTypes,
  keys,
  type Logger,
  newId,
  parseWith,
  type SlotsFreed,
  Streams,
  subjects,
  type TaskDefinition,
  ValidationError,
  type WorkerLabels,
  WorkerLabelsSchema,
  type WorkerRegistration,
} from "@taskjet/schemas";
import type { ClientConfig } from "../config.js";
import { type Connection, openBucket, whyPublishFailed } from "../connection.js";
import { type CronSpec, type CronsClient, checkCronSpecs } from "../crons.js";
import { inDebugMode } from "../debug.js";
import { longTimeout } from "../long-timeout.js";
import type { RateLimitsClient } from "../rate-limits.js";
import { readTail } from "../run-reader.js";
import type { RunRef } from "../run-ref.js";
import type { JsonObject, TaskDeclaration } from "../task.js";
import { withTraceContext } from "../tracing.js";
import { WorkflowDeclaration } from "../workflow.js";
import { type ChildSpec, Context, type ContextHooks, type LogLevel } from "./context.js";
import { currentTask } from "./current.js";
import { Outbox } from "./outbox.js";
import { Pending, PendingAttempts } from "./pending.js";
import {
  type Reporter,
  type RunningFactType,
  reportResult,
  reportRunningFact,
  reportStarted,
  reportTimedOut,
  type StartFacts,
} from "./reports.js";

export const SDK_VERSION = "0.1.0";

/** Children recorded per `ChildrenSpawned` event (one event stays well under the payload limit). */
const CHILDREN_PER_EVENT = 2000;

const decoder = new TextDecoder();
const assignmentSchema = compiledOnUse(AssignmentSchema);

/** The run and task-run a child belongs to. */
export interface ChildParent {
  runId: string;
  taskRunId: string;
  additionalMetadata: Record<string, string>;
}

/** A child run to create, its id already derived. */
export interface NewChild {
  runId: string;
  taskName: string;
  key: string;
  input: Record<string, unknown>;
  sticky?: { mode: "SOFT" | "HARD"; workerId: string };
  priority?: number;
  /** Over the parent's, which the child inherits. */
  additionalMetadata?: Record<string, string>;
}

/** Creates child runs: implemented by the client. */
export interface ChildHost {
  createChildren(parent: ChildParent, children: NewChild[]): Promise<RunRef<JsonObject>[]>;
}

/** Options of `tj.worker()`. */
export interface WorkerOptions {
  /** The tasks and workflows this worker runs. */
  // biome-ignore lint/suspicious/noExplicitAny: a worker holds tasks of every input and output type
  workflows: (TaskDeclaration<any, any> | WorkflowDeclaration<any>)[];
  /** How many tasks it runs at once. @default 100 */
  slots?: number;
  /** How many durable tasks it runs at once, apart from `slots` (sleeping ones hold none). @default 1000 */
  durableSlots?: number;
  /** Labels for routing. @default {} */
  labels?: Record<string, string | number>;
  /** How long `stop()` lets running tasks finish before aborting them. @default 30000 */
  shutdownGraceMs?: number;
  /** How long a cancelled task may ignore its signal before its slot is freed anyway. @default 1000 */
  cancelGraceMs?: number;
  /**
   * On SIGTERM or SIGINT, drain (`stop()`: no new work, running tasks finish within `shutdownGraceMs`) and exit the
   * process. Set false to handle signals yourself.
   * @default true
   */
  handleSignals?: boolean;
}

/** An attempt in progress, and the slots it takes (from the durable pool for durable tasks). */
class Running {
  /**
   * The latest copy of this attempt the engine sent while it ran here, taken once this one is gone: `accept` then drops
   * it if this one's outcome was stored, and runs it if its report was ignored (the engine had the attempt waiting for
   * this worker again: it was reassigned here).
   */
  again: Assignment | undefined;

  constructor(
    readonly ctx: Context,
    readonly done: Promise<void>,
    readonly cost: number,
    readonly durable: boolean,
  ) {}
}

/**
 * How long an assignment may wait here for a slot before it is given back to the engine. The engine places attempts
 * of short tasks beyond a worker's slots (they start when a slot frees, without a round trip through it); one stuck
 * behind attempts that turned out long goes back and runs elsewhere.
 */
const PENDING_GIVE_BACK_MS = 1_000;

/**
 * The workers of this process that handle SIGTERM/SIGINT, and the exit code once they have all drained: each worker
 * gets the signal, and the process must not end when the first of them has stopped.
 */
const signalExit = { workers: new Set<Worker>(), code: 0 };

/**
 * A long-running process's slots for tasks: registers in `TJ_WORKERS`, listens on its own assignment subject, runs
 * each attempt and appends its facts (started, completed, failed) to the run's history with CAS.
 */
export class Worker {
  /** Unique per process: a restarted worker is a new worker. */
  readonly id = newId();
  readonly name: string;
  readonly slots: number;
  private readonly tasks = new Map<string, TaskDeclaration<JsonObject, JsonObject>>();
  private readonly workflowsDeclared: WorkflowDeclaration[];
  private labels: WorkerLabels;
  /** Slots taken by running attempts (a task with `slotCost: n` takes n). */
  private used = 0;
  readonly durableSlots: number;
  private durableUsed = 0;
  private readonly graceMs: number;
  private readonly cancelGraceMs: number;
  private readonly handleSignals: boolean;
  private readonly onSignal = (signal: NodeJS.Signals) => {
    this.log.info({ signal }, "signal received: draining");
    this.stop()
      .catch(() => {
        signalExit.code = 1;
      })
      .finally(() => {
        // Every worker of the process got the signal: the last to have drained ends it.
        signalExit.workers.delete(this);
        if (signalExit.workers.size === 0) process.exit(signalExit.code);
      });
  };
  private control: Subscription | undefined;
  private readonly log: Logger;
  private readonly pending = new PendingAttempts();
  private readonly running = new Map<string, Running>();
  /** Attempts that gave their slot back (`ctx.releaseSlot()`) and run on. */
  private readonly released = new Map<string, Running>();
  /**
   * Attempts (`taskRunId:attempt`) that ran here to a stored outcome, the latest `FINISHED_REMEMBERED`: a copy the
   * engine sends again (it had not folded the outcome yet) is not run again. An attempt runs before its start is
   * recorded, so no CAS on `TaskStarted` refuses it.
   */
  private finished = new Set<string>();
  /** Slim assignments being made whole (`fillIn`), by attempt key. */
  private readonly filling = new Set<string>();
  private finishedBefore = new Set<string>();
  /** Attempts whose slots were freed this turn, and attempts given back unstarted, announced at its end. */
  private freed: SlotsFreed["attempts"] = [];
  private givenBack: SlotsFreed["returned"] = [];
  private giveBackTimer: NodeJS.Timeout | undefined;
  /** The next turn attempts wait for before their code runs (`nextTurn`). */
  private turn: Promise<void> | undefined;
  /** Attempts whose start is not recorded yet, recorded once they run past `START_RECORD_DELAY_MS`. */
  private readonly starts = new StartSweep();
  private state: "new" | "starting" | "started" | "stopping" | "stopped" = "new";
  private starting: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;
  private assignments: Subscription | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private heartbeatMs = 5000;
  /**
   * Attempts aborted because the worker stopped: a failure they report is not theirs, and is not recorded. Once the
   * worker's registration is gone the engine gives them to another worker (`TaskReassigned`), as a crashed worker's.
   */
  private readonly stoppedUnder = new WeakSet<Context>();
  private beating: Promise<void> | undefined;
  private workersKv: KV | undefined;
  private startedAt = new Date().toISOString();
  private readonly reporter: Reporter;
  /** What every attempt's `AttemptHooks` asks of this worker. */
  private readonly host: AttemptHost = {
    id: this.id,
    payloadLimit: () => this.conn.payloadLimit,
    eventsLastSeq: async () => (await this.conn.jsm.streams.info(Streams.events)).state.last_seq,
    spawnChildren: (a, attempt, children) => this.spawnChildren(a, attempt, children),
    releaseSlot: async (key, attempt, forChild) => {
      if (this.released.has(key) || !this.running.has(key)) return;
      await attempt.releaseSlot(forChild);
      // Still running and still reported, but no longer counted against the slots.
      const entry = this.running.get(key);
      if (!entry) return;
      this.freeSlot(key);
      this.released.set(key, entry);
      this.pump();
    },
  };

  /** @internal use `tj.worker()` */
  constructor(
    private readonly conn: Connection,
    private readonly config: ClientConfig,
    name: string,
    options: WorkerOptions,
    private readonly onStopped: (w: Worker) => void,
    private readonly registries: { rateLimits: RateLimitsClient; crons: CronsClient },
    private readonly children: ChildHost,
  ) {
    if (typeof name !== "string" || name.trim() === "" || name.length > 128) {
      throw new ValidationError([
        { path: "name", message: `must be a non-empty string of at most 128 characters, got ${describeValue(name)}` },
      ]);
    }
    const {
      workflows,
      slots = 100,
      labels = {},
      shutdownGraceMs = 30_000,
      cancelGraceMs = 1000,
      handleSignals = true,
      durableSlots,
    } = options ?? ({} as WorkerOptions);
    this.handleSignals = handleSignals;
    if (!Array.isArray(workflows) || workflows.length === 0) {
      throw new ValidationError([
        { path: "workflows", message: "must list at least one task declared with tj.task()" },
      ]);
    }
    this.workflowsDeclared = workflows.filter((w): w is WorkflowDeclaration => w instanceof WorkflowDeclaration);
    // A workflow contributes each of its tasks (registered as `<workflow>.<task>`).
    const declarations = workflows.flatMap((w, i) =>
      w instanceof WorkflowDeclaration ? w.tasks.map((t) => ({ i, task: t.declaration })) : [{ i, task: w }],
    );
    for (const { i, task } of declarations) {
      if (typeof task?.name !== "string" || typeof task.fn !== "function") {
        throw new ValidationError([
          { path: `workflows[${i}]`, message: "must be a task (tj.task()) or a workflow (tj.workflow())" },
        ]);
      }
      if (this.tasks.has(task.name)) {
        throw new ValidationError([{ path: `workflows[${i}]`, message: `task name "${task.name}" is listed twice` }]);
      }
      this.tasks.set(task.name, task);
    }
    if (!Number.isInteger(slots) || slots < 1 || slots > 100_000) {
      throw new ValidationError([
        { path: "slots", message: `must be an integer from 1 to 100000, got ${describeValue(slots)}` },
      ]);
    }
    if (!Number.isInteger(shutdownGraceMs) || shutdownGraceMs < 0) {
      throw new ValidationError([
        { path: "shutdownGraceMs", message: `must be a non-negative integer, got ${describeValue(shutdownGraceMs)}` },
      ]);
    }
    for (const { i, task } of declarations) {
      const cost = task.flow?.slotCost ?? 1;
      if (cost > slots) {
        throw new ValidationError([
          {
            path: `workflows[${i}].slotCost`,
            message: `task "${task.name}" needs ${cost} slots but this worker has ${slots}, got ${cost}`,
          },
        ]);
      }
    }
    this.name = name;
    this.slots = slots;
    const hasDurable = [...this.tasks.values()].some((t) => t.flow.durable);
    this.durableSlots = durableSlots ?? (hasDurable ? 1000 : 0);
    if (!Number.isInteger(this.durableSlots) || this.durableSlots < 0 || this.durableSlots > 100_000) {
      throw new ValidationError([
        { path: "durableSlots", message: `must be an integer from 0 to 100000, got ${describeValue(durableSlots)}` },
      ]);
    }
    this.labels = parseWith(WorkerLabelsSchema, labels, "labels");
    this.graceMs = shutdownGraceMs;
    if (!Number.isInteger(cancelGraceMs) || cancelGraceMs < 0) {
      throw new ValidationError([
        { path: "cancelGraceMs", message: `must be a non-negative integer, got ${describeValue(cancelGraceMs)}` },
      ]);
    }
    this.cancelGraceMs = cancelGraceMs;
    this.log = config.logger.child({ module: "worker", workerId: this.id, worker: name });
    this.reporter = { conn, ns: config.namespace, workerId: this.id, workerName: name };
  }

  /** Registers the worker and starts taking work; resolves once registered. */
  start(): Promise<void> {
    if (this.state !== "new") return Promise.reject(new Error(`worker ${this.name} is ${this.state}`));
    if (this.conn.nc.isClosed()) return Promise.reject(new ClosedError("client"));
    // `taskjet debug` loads the worker's module only for its task functions.
    if (inDebugMode()) return Promise.resolve();
    this.state = "starting";
    this.starting = this.startOnce();
    return this.starting;
  }

  private async startOnce(): Promise<void> {
    try {
      await this.checkFlow();
      await this.startTakingWork();
    } catch (err) {
      // Startable again, with the same error for the same cause: what it subscribed is undone, and a new start()
      // writes its definitions and crons again.
      this.assignments?.unsubscribe();
      this.control?.unsubscribe();
      if (this.state === "starting") this.state = "new";
      // Its first write is a definition: on a NATS no engine has provisioned, that says so.
      throw await whyPublishFailed(this.conn, `KV_${Buckets.defs}`, err);
    }
  }

  /** `start()` once its checks passed: writes definitions and crons, subscribes, registers, heartbeats. */
  private async startTakingWork(): Promise<void> {
    const { nc } = this.conn;
    const ns = this.config.namespace;
    const defs = await openBucket(this.conn, Buckets.defs);
    this.workersKv = await openBucket(this.conn, Buckets.workers);
    const now = new Date().toISOString();
    await Promise.all(
      [...this.tasks.values()].map((task) => {
        const def: TaskDefinition = {
          v: 1,
          name: task.name,
          policy: task.policy,
          flow: task.flow,
          ...(task.defaultPriority ? { defaultPriority: task.defaultPriority } : {}),
          ...(task.scheduleTimeoutMs ? { scheduleTimeoutMs: task.scheduleTimeoutMs } : {}),
          ...(task.onEvents?.length ? { onEvents: [...task.onEvents] } : {}),
          // The ttl also without an expression: a trigger by name (REST, the CLI) keys its runs for that long.
          ...(task.idempotencyExpression || task.idempotencyTtlMs
            ? {
                idempotency: {
                  ...(task.idempotencyExpression ? { expression: task.idempotencyExpression } : {}),
                  ...(task.idempotencyTtlMs ? { ttlMs: task.idempotencyTtlMs } : {}),
                },
              }
            : {}),
          registeredBy: this.name,
          registeredAt: now,
        };
        return defs.put(keys.def(ns, task.name), JSON.stringify(def));
      }),
    );
    // Workflows: their shape and events, so the engine can start their runs.
    for (const wf of this.workflowsDeclared) {
      const onEvents = (wf.options.onEvents ?? []).map((e) => (typeof e === "string" ? { key: e } : e));
      const def: TaskDefinition = {
        v: 1,
        name: wf.name,
        ...wf.definition(),
        ...(wf.options.defaultPriority ? { defaultPriority: wf.options.defaultPriority } : {}),
        ...(onEvents.length ? { onEvents } : {}),
        registeredBy: this.name,
        registeredAt: now,
      };
      await defs.put(keys.def(ns, wf.name), JSON.stringify(def));
    }
    // After the definitions: a tick must find the workflow it starts.
    const crons = new Map<string, readonly CronSpec[]>([
      ...[...this.tasks.values()].map((t) => [t.name, t.onCrons ?? []] as const),
      ...this.workflowsDeclared.map((wf) => [wf.name, wf.options.onCrons ?? []] as const),
    ]);
    await this.registries.crons.declare(crons);
    this.assignments = nc.subscribe(subjects.assign(ns, this.id), { callback: (_err, m) => this.receive(m.data) });
    this.control = nc.subscribe(subjects.control(ns, this.id), { callback: (_err, m) => this.onControl(m.data) });
    // The server has both subscriptions before the engine can learn of this worker and place work on it.
    await nc.flush();
    await this.register(false);
    const ttl = (await this.workersKv.status()).ttl;
    this.heartbeatMs = ttl > 0 ? Math.max(250, Math.floor(ttl / 3)) : 5000;
    this.beat(false);
    this.state = "started";
    if (this.handleSignals) {
      signalExit.workers.add(this);
      process.once("SIGTERM", this.onSignal);
      process.once("SIGINT", this.onSignal);
    }
    this.log.info({ tasks: [...this.tasks.keys()], slots: this.slots }, "worker started");
  }

  /**
   * Stops taking work and lets running tasks finish, up to `shutdownGraceMs`; then aborts the rest and leaves: their
   * attempts go to another worker, as a crashed worker's do (a failure they report once aborted is not recorded).
   * Assignments it had not started go back to the queue.
   */
  stop(): Promise<void> {
    if (this.state === "new" || this.state === "stopped") return Promise.resolve();
    // A second caller (a shutdown hook, then `tj.close()`) waits for the same drain.
    this.stopping ??= this.stopOnce();
    return this.stopping;
  }

  private async stopOnce(): Promise<void> {
    // Stopped while starting: the start goes on to subscribe and register, so it is let finish, then drained.
    if (this.state === "starting") await this.starting?.catch(() => undefined);
    if (this.state !== "started") {
      this.stopping = undefined; // the start failed: nothing to stop, and it may start again
      return;
    }
    this.state = "stopping";
    process.off("SIGTERM", this.onSignal);
    process.off("SIGINT", this.onSignal);
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.assignments?.unsubscribe();
    if (this.giveBackTimer) clearTimeout(this.giveBackTimer);
    const unstarted = this.pending.drain();
    await this.register(true).catch((err) => this.log.warn({ err }, "could not announce draining"));
    // Heartbeats go on through the grace: a registration that lapsed would have the engine take this worker for gone
    // and place its running attempts again, whose results would then be ignored.
    this.beat(true);
    // Draining announced first, so the engine places them elsewhere.
    for (const p of unstarted) this.giveBack(p.assignment);
    const drained = Promise.all([...this.running.values(), ...this.released.values()].map((r) => r.done));
    const timer = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), this.graceMs).unref());
    if ((await Promise.race([drained, timer])) === "timeout") {
      for (const [key, r] of [...this.running, ...this.released]) {
        this.log.warn({ attempt: key }, "task still running after the shutdown grace: aborting it, for another worker");
        this.stoppedUnder.add(r.ctx);
        r.ctx.abort(new Error("worker stopped"));
      }
      // Give aborted tasks a moment to report; one that ignores its signal is abandoned.
      await Promise.race([drained, new Promise((r) => setTimeout(r, 1000).unref())]);
    }
    const ns = this.config.namespace;
    if (this.heartbeat) clearInterval(this.heartbeat);
    await this.beating; // one landing after the delete would register the worker again until its TTL
    this.control?.unsubscribe();
    await this.workersKv?.delete(keys.worker(ns, this.id)).catch(() => undefined);
    this.state = "stopped";
    signalExit.workers.delete(this);
    this.onStopped(this);
    this.log.info({}, "worker stopped");
  }

  /** Renews the registration every `heartbeatMs`, draining or not, in place of the renewals before. */
  private beat(draining: boolean): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = setInterval(() => {
      this.beating = this.register(draining).catch((err) => this.log.warn({ err }, "heartbeat failed"));
    }, this.heartbeatMs);
  }

  /**
   * Replaces or adds labels (`{ gpu: "a100" }`) and announces them at once; the scheduler routes by the new ones.
   * @throws ValidationError naming a bad label
   */
  async upsertLabels(labels: Record<string, string | number>): Promise<void> {
    this.labels = { ...this.labels, ...parseWith(WorkerLabelsSchema, labels, "labels") };
    if (this.state === "started") await this.register(false);
  }

  /** The labels the scheduler routes by. */
  getLabels(): Readonly<WorkerLabels> {
    return this.labels;
  }

  /**
   * What registration checks beyond the declaration: every CEL and cron expression parses, and no task takes more
   * units of a static rate limit than the limit allows.
   */
  private async checkFlow(): Promise<void> {
    for (const wf of this.workflowsDeclared) {
      checkCronSpecs(wf.name, wf.options.onCrons);
      for (const [i, e] of (wf.options.onEvents ?? []).entries()) {
        const trigger = parseWith(
          EventTriggerSchema,
          typeof e === "string" ? { key: e } : e,
          `${wf.name}.onEvents[${i}]`,
        );
        if (trigger.filter !== undefined) compileEventFilter(trigger.filter, `${wf.name}.onEvents[${i}].filter`);
      }
    }
    for (const task of this.tasks.values()) {
      compileFlow(task.flow, `${task.name}.`);
      checkCronSpecs(task.name, task.onCrons);
      if (task.idempotencyExpression) {
        compileKeyExpression(task.idempotencyExpression, `${task.name}.idempotency.expression`);
      }
      for (const [i, t] of (task.onEvents ?? []).entries()) {
        if (t.filter !== undefined) compileEventFilter(t.filter, `${task.name}.onEvents[${i}].filter`);
      }
      for (const [i, use] of (task.flow.rateLimits ?? []).entries()) {
        if (!("staticKey" in use)) continue;
        const limit = await this.registries.rateLimits.get(use.staticKey);
        if (limit && use.units > limit.limit) {
          throw new ValidationError([
            {
              path: `${task.name}.rateLimits[${i}].units`,
              message: `must not exceed the limit of "${use.staticKey}" (${limit.limit} per ${limit.duration}), got ${use.units}`,
            },
          ]);
        }
      }
    }
  }

  /** How many tasks run right now. */
  get runningCount(): number {
    return this.running.size;
  }

  /** Attempts in progress by task name, including those that gave their slot back. */
  private runningTasks(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const r of [...this.running.values(), ...this.released.values()]) {
      const name = r.ctx.taskName();
      counts[name] = (counts[name] ?? 0) + 1;
    }
    return counts;
  }

  private async register(draining: boolean): Promise<void> {
    const registration: WorkerRegistration = {
      v: 1,
      workerId: this.id,
      name: this.name,
      tasks: [...this.tasks.keys()],
      slots: this.slots,
      durableSlots: this.durableSlots,
      labels: this.labels,
      sdkVersion: SDK_VERSION,
      hostname: hostname(),
      pid: process.pid,
      startedAt: this.startedAt,
      heartbeatAt: new Date().toISOString(),
      draining,
      usedSlots: this.used,
      usedDurableSlots: this.durableUsed,
      runningTasks: this.runningTasks(),
      assignmentBatches: true,
      slimAssignments: true,
    };
    await this.workersKv?.put(keys.worker(this.config.namespace, this.id), JSON.stringify(registration));
  }

  /** The engine says an attempt was cancelled: abort it; after the grace period, free its slot even if it runs on. */
  private onControl(data: Uint8Array): void {
    let message: ControlMessage;
    try {
      message = ControlMessageSchema.parse(JSON.parse(decoder.decode(data)));
    } catch (err) {
      this.log.warn({ err }, "malformed control message ignored");
      return;
    }
    const key = `${message.taskRunId}:${message.attempt}`;
    const running = this.running.get(key) ?? this.released.get(key);
    if (!running) {
      // Still waiting here for a slot: it never runs.
      this.pending.remove(key);
      return;
    }
    running.again = undefined;
    running.ctx.abort(new Error(`cancelled: ${message.reason}`));
    this.abandonAfterGrace(key, running, "cancelled");
  }

  /** A task that ignores its abort signal (cancelled, timed out) is abandoned after the grace: its slot serves others. */
  private abandonAfterGrace(key: string, running: Running, why: "cancelled" | "timed out"): void {
    setTimeout(() => {
      if (this.running.get(key) !== running) return;
      this.log.warn(
        {
          runId: running.ctx.workflowRunId(),
          taskRunId: running.ctx.taskRunId(),
          taskName: running.ctx.taskName(),
          graceMs: this.cancelGraceMs,
        },
        `${why} task ignored its signal: abandoned, its slot freed`,
      );
      this.freeSlot(key);
      this.pump();
    }, this.cancelGraceMs).unref();
  }

  /** An assignment, or an array of those the engine placed here in one turn. */
  private receive(data: Uint8Array): void {
    // Stopping: the engine queues it again when this worker leaves.
    if (this.state === "stopping" || this.state === "stopped") return;
    let message: unknown;
    try {
      message = JSON.parse(decoder.decode(data));
    } catch (err) {
      this.log.error({ err }, "malformed assignment message dropped");
      return;
    }
    for (const raw of Array.isArray(message) ? message : [message]) {
      const parsed = assignmentSchema().safeParse(raw);
      if (parsed.success) this.accept(parsed.data);
      else this.log.error({ err: parsed.error }, "malformed assignment dropped");
    }
    this.pump();
    this.armGiveBack();
  }

  private accept(assignment: Assignment): void {
    if (!this.tasks.has(assignment.taskName)) {
      this.log.error(
        { runId: assignment.runId, taskName: assignment.taskName },
        "assignment for a task this worker does not have",
      );
      return;
    }
    // A copy sent again of an attempt that ran here, runs, or waits for a slot: the first copy is the one (one sent
    // while it runs is kept, for the case its report is ignored: `Running.again`).
    const key = `${assignment.taskRunId}:${assignment.attempt}`;
    if (this.finished.has(key) || this.finishedBefore.has(key) || this.pending.has(key)) return;
    const here = this.running.get(key) ?? this.released.get(key);
    if (here) {
      here.again = assignment;
      return;
    }
    if (assignment.slim) {
      this.fillIn(assignment, key);
      return;
    }
    this.pending.push(new Pending(assignment, key, Date.now()));
  }

  /**
   * A slim assignment (too large for a message whole) is made whole from the run's history, then taken as it would
   * have been. A failed read drops it: the engine sends again what stays placed and not started.
   */
  private fillIn(slim: Assignment, key: string): void {
    if (this.filling.has(key)) return;
    this.filling.add(key);
    readTail(this.conn, this.config.namespace, slim.runId, undefined)
      .then((state) => {
        const task = state?.tasks.find((t) => t.taskRunId === slim.taskRunId);
        if (!state || !task) throw new Error(`run ${slim.runId} has no task-run ${slim.taskRunId}`);
        return { ...assignmentOf(state, task, slim), attempt: slim.attempt };
      })
      .then(
        (whole) => {
          this.filling.delete(key);
          if (this.state !== "started") return;
          this.accept(whole);
          this.pump();
          this.armGiveBack();
        },
        (err: unknown) => {
          this.filling.delete(key);
          this.log.warn(
            { err, runId: slim.runId, taskRunId: slim.taskRunId },
            "could not read a slim assignment's run",
          );
        },
      );
  }

  /** While assignments wait for a slot: gives back, when it is due, each that waited `PENDING_GIVE_BACK_MS`. */
  private armGiveBack(): void {
    const oldest = this.pending.oldest();
    if (this.giveBackTimer || !oldest) return;
    this.giveBackTimer = setTimeout(
      () => {
        this.giveBackTimer = undefined;
        const due = Date.now() - PENDING_GIVE_BACK_MS;
        for (const p of this.pending.takeArrivedBy(due)) {
          this.log.debug({ runId: p.assignment.runId, attempt: p.key }, "no slot in time: assignment given back");
          this.giveBack(p.assignment);
        }
        this.armGiveBack();
      },
      Math.max(0, oldest.since + PENDING_GIVE_BACK_MS - Date.now()),
    );
    this.giveBackTimer.unref();
  }

  /** Starts pending attempts while slots are free (invariant 6: never more than `slots` at once). */
  private pump(): void {
    for (let next = this.pending.peek(); next && this.state !== "stopping"; next = this.pending.peek()) {
      const head = this.tasks.get(next.assignment.taskName);
      const cost = head?.flow.slotCost ?? 1;
      const durable = head?.flow.durable === true;
      if (durable ? this.durableUsed + cost > this.durableSlots : this.used + cost > this.slots) return;
      this.pending.shift();
      const { key } = next;
      const log = this.log.child({
        runId: next.assignment.runId,
        taskRunId: next.assignment.taskRunId,
        attempt: next.assignment.attempt,
      });
      const attempt = new AttemptClock(next.assignment, this.reporter, head as Task, this.starts);
      const outbox = new Outbox(this.conn.js, this.config.namespace, next.assignment, log, this.conn.payloadLimit);
      const hooks = new AttemptHooks(this.host, next.assignment, key, attempt, outbox, durable);
      const ctx = new Context(next.assignment, this, log, hooks, durable);
      attempt.onDeadline = () => {
        log.warn({ timeoutAt: attempt.timeoutAt }, "execution timeout: aborting the task");
        // Record the timeout first, so the aborted task's own failure is not taken for the attempt's outcome.
        return attempt
          .recordStart()
          .then(() =>
            reportTimedOut(this.reporter, next.assignment, attempt.lastSeq, new Date(attempt.timeoutAt).toISOString()),
          )
          .catch((err) => log.warn({ err }, "could not record the timeout; the engine will"))
          .finally(() => {
            ctx.abort(new Error(`execution timeout of ${attempt.timeoutMs} ms exceeded`));
            const running = this.running.get(key);
            if (running?.ctx === ctx) this.abandonAfterGrace(key, running, "timed out");
          });
      };
      const done: Promise<void> = this.execute(next, ctx, attempt, outbox, log, hooks.suspended)
        .catch((err) => {
          log.error({ err }, "attempt failed to report");
          return false;
        })
        .then((outcomeStored) => {
          attempt.stop();
          const running = this.running.get(key);
          const entry = running ?? this.released.get(key);
          // Abandoned after a cancellation, the slot may already serve another attempt.
          if (running?.done === done) {
            this.freeSlot(key);
            // A stored outcome frees the slot where the engine folds it, about when this message would arrive: only an
            // attempt that ends without one (a durable task's sleep, an ignored report) needs telling.
            if (!outcomeStored) this.announceFreed(next.assignment);
          }
          this.released.delete(key);
          const again = entry?.done === done ? entry.again : undefined;
          if (again && this.state !== "stopping" && this.state !== "stopped") {
            this.accept(again);
            this.armGiveBack();
          }
          this.pump();
        });
      this.running.set(key, new Running(ctx, done, cost, durable));
      if (durable) this.durableUsed += cost;
      else this.used += cost;
    }
  }

  /**
   * Records the children in the parent's history (one `ChildrenSpawned` per chunk, CAS on this attempt's tail), then
   * creates them (an existing id is that child: a retried parent gets its children back).
   */
  private async spawnChildren(
    a: Assignment,
    attempt: AttemptClock,
    children: (ChildSpec & { key: string })[],
  ): Promise<RunRef<JsonObject>[]> {
    const specs = children.map((c) => ({
      runId: childRunId(a.taskRunId, c.key, a.replays),
      taskName: c.taskName,
      key: c.key,
    }));
    for (let i = 0; i < specs.length; i += CHILDREN_PER_EVENT) {
      await attempt.record(EventTypes.ChildrenSpawned, { children: specs.slice(i, i + CHILDREN_PER_EVENT) });
    }
    // Sticky children follow this worker, as firmly as this task is sticky (SOFT unless it is HARD).
    const sticky = { mode: this.tasks.get(a.taskName)?.flow.sticky ?? "SOFT", workerId: this.id } as const;
    return this.children.createChildren(
      { runId: a.runId, taskRunId: a.taskRunId, additionalMetadata: a.additionalMetadata },
      children.map((c, i) => ({
        taskName: c.taskName,
        input: c.input,
        key: c.key,
        runId: (specs[i] as { runId: string }).runId,
        ...(c.sticky ? { sticky } : {}),
        ...(c.priority === undefined ? {} : { priority: c.priority }),
        ...(c.additionalMetadata === undefined ? {} : { additionalMetadata: c.additionalMetadata }),
      })),
    );
  }

  private freeSlot(key: string): void {
    const entry = this.running.get(key);
    if (!entry) return;
    this.running.delete(key);
    if (entry.durable) this.durableUsed -= entry.cost;
    else this.used -= entry.cost;
  }

  /** Tells the engine, once per turn for all of them, which attempts' slots are free again (`SlotsFreed`). */
  private announceFreed({ taskRunId, attempt }: Assignment): void {
    this.announceAtTurnEnd();
    this.freed.push({ taskRunId, attempt });
  }

  /** Gives an unstarted assignment back to the engine, which queues it again (`SlotsFreed.returned`). */
  private giveBack({ runId, taskRunId, attempt }: Assignment): void {
    this.announceAtTurnEnd();
    this.givenBack.push({ runId, taskRunId, attempt });
  }

  private announceAtTurnEnd(): void {
    if (this.freed.length > 0 || this.givenBack.length > 0) return;
    setImmediate(() => {
      const message: SlotsFreed = { v: 1, attempts: this.freed, returned: this.givenBack };
      this.freed = [];
      this.givenBack = [];
      try {
        this.conn.nc.publish(subjects.slotsFreed(this.config.namespace, this.id), JSON.stringify(message));
      } catch (err) {
        // Closed: the engine frees them as it folds their outcomes, and sends given-back ones here again (ignored:
        // this worker is gone or stopping, and the engine queues them again when it leaves).
        this.log.debug({ err }, "could not announce freed slots");
      }
    });
  }

  /** Resolves on the next event-loop turn; every attempt begun in this turn shares one `setImmediate`. */
  private nextTurn(): Promise<void> {
    this.turn ??= new Promise<void>((resolve) =>
      setImmediate(() => {
        this.turn = undefined;
        resolve();
      }),
    );
    return this.turn;
  }

  /** The assignment's attempt ran here to a stored outcome (see `finished`). */
  private ranToOutcome(key: string): void {
    // Two generations, the older dropped whole: deleting a Set's oldest entries one by one leaves holes that every
    // later `values().next()` walks past.
    this.finished.add(key);
    if (this.finished.size < FINISHED_REMEMBERED) return;
    this.finishedBefore = this.finished;
    this.finished = new Set();
  }

  private async execute(
    { assignment: a, key }: Pending,
    ctx: Context,
    attempt: AttemptClock,
    outbox: Outbox,
    log: Logger,
    suspended: Promise<"suspended"> | undefined,
  ): Promise<boolean> {
    // The task's code runs from a later turn, never inside `pump()`: the attempt is then registered (running, its
    // slot counted), so a `releaseSlot()` or a cancel at its very start finds it, and whatever the same I/O turn
    // delivered first (a cancelled attempt's abort, before a newer one of its concurrency key) has run.
    await this.nextTurn();
    // Cancelled in that turn (its cancellation came right behind it): the function would get a signal aborted before
    // it could listen to it, and run to its end.
    if (ctx.aborted) {
      attempt.stop();
      this.ranToOutcome(key);
      log.debug({}, "attempt cancelled before its function began: not run");
      return false;
    }
    attempt.begin((err) => {
      // Started elsewhere, or the run moved on before the start was recorded: stop this copy.
      if (err instanceof AttemptNotCurrentError) ctx.abort(err);
      else log.warn({ err }, "could not record the start; the result will carry it");
    });
    const task = this.tasks.get(a.taskName) as TaskDeclaration<JsonObject, JsonObject>;
    const run = async () => {
      try {
        // Triggers made from inside the task (`child.run(input)`) become its children; with OpenTelemetry, the run's
        // trigger is the active span's parent, so the task's spans join the caller's trace without any code.
        const fn = () => currentTask.run(ctx, () => task.fn(a.input, ctx));
        return { ok: true as const, output: await withTraceContext(ctx.traceContext(), fn) };
      } catch (error) {
        return { ok: false as const, error };
      }
    };
    // Only a durable task can end its attempt early, at a sleep or a wait.
    const result = suspended ? await Promise.race([run(), suspended]) : await run();
    if (result === "suspended") {
      attempt.stop();
      this.ranToOutcome(key);
      log.debug({}, "durable task sleeping: attempt ended, slot freed");
      return false;
    }
    attempt.stop();
    // Past its deadline, and no timer could catch it (the task held the event loop throughout): timed out, as it would
    // have been had it awaited anything. Its result is then recorded as ignored, like any timed-out attempt's.
    if (!ctx.aborted && Date.now() > attempt.timeoutAt) await attempt.onDeadline();
    if (!result.ok && this.stoppedUnder.has(ctx)) {
      log.warn({}, "attempt aborted by the worker's stop: left to another worker, no failure recorded");
      return false;
    }
    // Every line and chunk of the attempt stored before its outcome: a reader that sees the run end has them all.
    await outbox.settled();
    const started = await attempt.startForResult();
    const applied = await reportResult(this.reporter, a, attempt.lastSeq, result, this.conn.payloadLimit, started);
    // Only once an outcome is stored: the engine sends the assignment again to a worker that could not report it. An
    // ignored report stored none: if the engine still had the attempt waiting here, it places it again, to run.
    if (applied) this.ranToOutcome(key);
    // A cancelled or timed-out attempt's late result is the expected end of it, not news.
    else if (ctx.aborted) log.debug({}, "result of an aborted attempt recorded as ReportIgnored");
    else log.warn({}, "result arrived after the attempt was superseded: recorded as ReportIgnored");
    return applied;
  }
}

type Task = TaskDeclaration<JsonObject, JsonObject>;

/** JSON with every object's keys sorted: an input written in another key order is the same input. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

/**
 * How long an attempt runs before its worker records `TaskStarted`. One that ends sooner (most do) records its start
 * in its result: one append per attempt instead of two. Meanwhile the run reads QUEUED, and a second copy of the
 * attempt (placed again after its worker was taken for gone) may run too: its result is then recorded as ignored.
 */
const START_RECORD_DELAY_MS = 20;

/**
 * Execution timeouts shorter than this get their timer when the attempt begins; longer ones when the start sweep
 * finds the attempt still running (20-30 ms later, or more under an event-loop lag: far from such a deadline).
 */
const ARM_AT_BEGIN_BELOW_MS = 1_000;

/** How many finished assignments a worker remembers, to not run one delivered again (`Worker.finished`). */
const FINISHED_REMEMBERED = 10_000;

/** What an attempt's hooks ask of their worker: one object per worker. */
interface AttemptHost {
  readonly id: string;
  payloadLimit(): number;
  /** The events stream's last sequence: a durable wait takes the events stored after it. */
  eventsLastSeq(): Promise<number>;
  spawnChildren(
    a: Assignment,
    attempt: AttemptClock,
    children: (ChildSpec & { key: string })[],
  ): Promise<RunRef<JsonObject>[]>;
  /** `ctx.releaseSlot()`: the attempt runs on, no longer counted against the slots. */
  releaseSlot(key: string, attempt: AttemptClock, forChild?: boolean): Promise<void>;
}

/**
 * A running attempt's side of its `Context`: children, durable checkpoints and waits, log lines, stream chunks.
 *
 * A class, like the other objects an attempt keeps (`Running`, `Pending`, the context's logger), never an object
 * literal of closures. V8 allocates an object literal straight in its old generation once most objects from that
 * literal outlived a young-generation GC (allocation-site pretenuring; early in a process, while that generation is
 * small, an attempt's objects do), and whatever young objects such an old one points to then survive every scavenge
 * until the next full GC, so are copied and promoted. With literals here, nearly all of each attempt was promoted:
 * 85 MiB of 20,000 no-op attempts against 17 MiB, and the worker's CPU per task was about a quarter higher.
 */
class AttemptHooks implements ContextHooks {
  /** Durable tasks: resolves when the attempt reaches a sleep or a wait, and so ends without a result. */
  readonly suspended: Promise<"suspended"> | undefined;
  private suspend: () => void = () => {};
  private childIndex = 0;
  /** This attempt's keyed children so far: a key names one child, so the same key with another input is a mistake. */
  private keyedInputs: Map<string, { taskName: string; input: string }> | undefined;

  constructor(
    private readonly host: AttemptHost,
    private readonly a: Assignment,
    private readonly key: string,
    private readonly attempt: AttemptClock,
    private readonly outbox: Outbox,
    durable: boolean,
  ) {
    this.suspended = durable
      ? new Promise<"suspended">((resolve) => {
          this.suspend = () => resolve("suspended");
        })
      : undefined;
  }

  spawn(children: ChildSpec[]): Promise<RunRef<JsonObject>[]> {
    const added = new Map<string, { taskName: string; input: string }>();
    for (const [i, c] of children.entries()) {
      // Checked before the children are recorded in this run's history.
      const at = children.length === 1 ? "options" : `children[${i}]`;
      try {
        parseWith(ChildRunOptionsSchema, { priority: c?.priority, additionalMetadata: c?.additionalMetadata }, at);
      } catch (err) {
        return Promise.reject(err);
      }
      // A key decides the child's id: `String()` of anything but a string would give distinct keys one child, and
      // "#n" is the n-th unkeyed child's.
      const path = children.length === 1 ? "options.key" : `children[${i}].key`;
      if (c.key !== undefined && (typeof c.key !== "string" || c.key.length > 256 || c.key.startsWith("#"))) {
        return Promise.reject(
          new ValidationError([
            {
              path,
              message: `must be a string of at most 256 characters, not starting with "#" (unkeyed children's), got ${describeValue(c.key)}`,
            },
          ]),
        );
      }
      if (c.key !== undefined) {
        const input = canonicalJson(c.input);
        const before = this.keyedInputs?.get(c.key) ?? added.get(c.key);
        // Another task under the same key is refused where the child is recorded (RunIdTakenError).
        if (before?.taskName === c.taskName && before.input !== input) {
          return Promise.reject(
            new ValidationError([
              {
                path,
                message: `${describeValue(c.key)} already names a child of this attempt with another input (${before.input.slice(0, 80)}): one key is one child, whose output it would give back`,
              },
            ]),
          );
        }
        if (!before) added.set(c.key, { taskName: c.taskName, input });
      }
    }
    if (added.size > 0) {
      this.keyedInputs ??= new Map();
      for (const [key, child] of added) this.keyedInputs.set(key, child);
    }
    // Keys decide child ids; unkeyed children are numbered in the order this attempt starts them.
    const keyed = children.map((c) => ({ ...c, key: c.key ?? `#${this.childIndex++}` }));
    return this.host.spawnChildren(this.a, this.attempt, keyed);
  }

  checkpoint(index: number, value: string): Promise<void> {
    return this.attempt.record(EventTypes.DurableCheckpoint, { index, kind: "now", value });
  }

  async sleep(index: number, until: string): Promise<void> {
    await this.attempt.record(EventTypes.DurableSleeping, { index, until });
    this.suspend();
  }

  async waitEvent(index: number, key: string, filter: string | undefined): Promise<void> {
    // Noted before asking: events stored after it are the ones the wait may take.
    const afterSeq = await this.host.eventsLastSeq();
    await this.attempt.record(EventTypes.DurableWaitingForEvent, {
      index,
      key,
      afterSeq,
      ...(filter === undefined ? {} : { filter }),
    });
    this.suspend();
  }

  log(level: LogLevel, message: string, fields: Record<string, unknown> | undefined): void {
    this.outbox.line({
      v: 1,
      at: new Date().toISOString(),
      level,
      message: String(message).slice(0, 10_000),
      ...(fields ? { fields } : {}),
      taskRunId: this.a.taskRunId,
      attempt: this.a.attempt,
      workerId: this.host.id,
    });
  }

  putStream(data: Uint8Array): Promise<void> {
    const limit = this.host.payloadLimit();
    if (data.byteLength > limit) {
      throw new ValidationError([{ path: "chunk", message: `must be at most ${limit} bytes, got ${data.byteLength}` }]);
    }
    return this.outbox.chunk(data);
  }

  refresh(ms: number): Promise<void> {
    return this.attempt.refresh(ms);
  }

  releaseSlot(forChild?: boolean): Promise<void> {
    return this.host.releaseSlot(this.key, this.attempt, forChild);
  }
}

/**
 * One attempt's place in the log and its deadline: the last sequence this worker wrote for it (the next append's
 * expected sequence), when its start is recorded, and the local timer that aborts the task when its execution timeout
 * passes.
 */
class AttemptClock {
  lastSeq: number;
  timeoutAt = 0;
  onDeadline: () => Promise<void> = async () => {};
  /** Cancels the deadline's timer, when armed. */
  private timer: (() => void) | undefined;
  private stopped = false;
  private onStartError: (err: unknown) => void = () => {};
  /** When the attempt began (epoch ms). */
  began = 0;
  private facts: StartFacts | undefined;
  private startRecord: Promise<void> | undefined;

  constructor(
    private readonly a: Assignment,
    private readonly reporter: Reporter,
    private readonly task: Task,
    private readonly starts: StartSweep,
  ) {
    this.lastSeq = a.expectedSeq;
  }

  get timeoutMs(): number {
    return this.task.executionTimeoutMs;
  }

  /** The attempt starts now; its start is recorded after `START_RECORD_DELAY_MS` unless it ends first. */
  begin(onStartError: (err: unknown) => void): void {
    this.began = Date.now();
    this.timeoutAt = this.began + this.task.executionTimeoutMs;
    const { sticky } = this.task.flow;
    this.facts = {
      workerName: this.reporter.workerName,
      assignedAt: this.a.assignedAt,
      policy: this.task.policy,
      timeoutAt: new Date(this.timeoutAt).toISOString(),
      ...(sticky ? { sticky } : {}),
    };
    // The deadline's timer waits for the start sweep unless the deadline is near: a timer made and cleared per attempt
    // cost the worker about a tenth of its CPU per short task, and most attempts end before the sweep finds them.
    if (this.task.executionTimeoutMs < ARM_AT_BEGIN_BELOW_MS) this.arm();
    this.onStartError = onStartError;
    this.starts.add(this);
  }

  /** It ran past `START_RECORD_DELAY_MS` (`StartSweep`): its start is recorded now. */
  startDue(): void {
    this.recordStart().catch(this.onStartError);
  }

  /** Appends `TaskStarted` once (CAS on the assignment's sequence). @throws AttemptNotCurrentError */
  recordStart(): Promise<void> {
    this.starts.delete(this);
    // Running on past the start sweep (or recording a fact before it): now its deadline needs its timer.
    if (!this.timer && !this.stopped) this.arm();
    this.startRecord ??= reportStarted(this.reporter, this.a, this.facts as StartFacts).then((seq) => {
      this.lastSeq = seq;
    });
    return this.startRecord;
  }

  /** The start for the result to carry: none once `TaskStarted` was recorded, or tried (awaited first). */
  async startForResult(): Promise<(StartFacts & { at: string }) | undefined> {
    this.starts.delete(this);
    const facts = { at: new Date(this.began).toISOString(), ...(this.facts as StartFacts) };
    if (!this.startRecord) {
      this.startRecord = Promise.resolve();
      return facts;
    }
    try {
      await this.startRecord;
      return undefined;
    } catch (err) {
      // Not ours: the result's CAS on our last sequence then fails and it is recorded as ignored. Not known to be
      // stored (a failover): the result carries the start, which applies only if it was not.
      return err instanceof AttemptNotCurrentError ? undefined : facts;
    }
  }

  async refresh(ms: number): Promise<void> {
    const timeoutAt = Date.now() + ms;
    await this.record(EventTypes.TaskTimeoutRefreshed, { timeoutAt: new Date(timeoutAt).toISOString() });
    this.timeoutAt = timeoutAt;
    this.arm();
  }

  async releaseSlot(forChild?: boolean): Promise<void> {
    await this.record(EventTypes.TaskSlotReleased, forChild ? { forChild } : {});
  }

  /** Appends a fact about this running attempt after the last one it wrote (CAS), and moves its place. */
  async record<T extends RunningFactType>(type: T, data: Parameters<typeof reportRunningFact<T>>[4]): Promise<void> {
    await this.recordStart();
    this.lastSeq = await reportRunningFact(this.reporter, this.a, this.lastSeq, type, data);
  }

  /** The task function returned: no deadline, and a start not recorded yet is carried by the result. */
  stop(): void {
    this.stopped = true;
    this.starts.delete(this);
    this.disarm();
  }

  private disarm(): void {
    this.timer?.();
    this.timer = undefined;
  }

  private arm(): void {
    this.disarm();
    this.timer = longTimeout(() => this.onDeadline(), Math.max(0, this.timeoutAt - Date.now()), true);
  }
}

/**
 * One timer for all attempts whose start is not recorded yet, instead of one per attempt: most end before it matters.
 * Attempts are kept in the order they began, so a sweep stops at the first one not yet due.
 */
class StartSweep {
  private readonly waiting = new Set<AttemptClock>();
  private timer: NodeJS.Timeout | undefined;

  add(attempt: AttemptClock): void {
    this.waiting.add(attempt);
    if (this.timer) return;
    this.timer = setInterval(() => this.sweep(), START_RECORD_DELAY_MS / 2);
    this.timer.unref();
  }

  delete(attempt: AttemptClock): void {
    this.waiting.delete(attempt);
  }

  private sweep(): void {
    const due = Date.now() - START_RECORD_DELAY_MS;
    for (const attempt of this.waiting) {
      if (attempt.began > due) break;
      this.waiting.delete(attempt);
      attempt.startDue();
    }
    if (this.waiting.size > 0) return;
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
