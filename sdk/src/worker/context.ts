import {
  type Assignment,
  checkKnownKeys,
  compileEventFilter,
  type Duration,
  describeValue,
  EventTriggerSchema,
  type Logger,
  NonDeterminismError,
  parseDuration,
  parseWith,
  RateLimitedError,
  RunIdTakenError,
  type TaskLogLine,
  ValidationError,
} from "@taskjet/schemas";
import type { RunRef } from "../run-ref.js";
import { MAX_SCHEDULE_AHEAD_MS } from "../schedule-time.js";
import { contextFromHeaders, parseTraceparent, type TraceContext } from "../tracing.js";
import type { WorkflowTask } from "../workflow.js";

/** A task to start as a child: its declaration (`tj.task()`) or its name. */
export type TaskRef = { name: string } | string;

/**
 * What a child run returns: `O` when given (`ctx.runChild<{ sq: number }>(...)`), else the output of the task's
 * declaration (its function's), or any JSON object for a task given by name.
 */
export type ChildOutput<O, T> = [O] extends [never]
  ? T extends { fn: (...args: never[]) => infer R }
    ? OutputOf<Awaited<R>>
    : Record<string, unknown>
  : O;

/** A function's result as the run gives it: nothing (void, undefined) is an empty object, each union member apart. */
type OutputOf<R> = R extends void | undefined ? Record<string, unknown> : R;

/**
 * What a child run takes: the input of the task's declaration (its function's), or any JSON object by name, or when
 * the output type `O` was given (the task's type is then not inferred, so the input is not checked against it).
 */
export type ChildInput<T, O = never> = [O] extends [never]
  ? T extends { fn: (input: infer I, ...rest: never[]) => unknown }
    ? I
    : object
  : object;

/** One child of `bulkRunChildren`, typed by its task's declaration. */
export type ChildItem<T extends TaskRef, O = never> = { task: T; input: ChildInput<T, O> } & ChildOptions;

/** One child run to start. */
/** How a child run is made: `key` names it among this task-run's children (its id derives from it). */
export interface ChildOptions {
  key?: string | undefined;
  /** Run on this worker: preferred, or required when this task is HARD-sticky. */
  sticky?: boolean | undefined;
  /** 1 low .. 3 high (default 1). */
  priority?: number | undefined;
  /** Added to the metadata the child inherits from this run. */
  additionalMetadata?: Record<string, string> | undefined;
}

export interface ChildSpec extends ChildOptions {
  taskName: string;
  input: Record<string, unknown>;
}

// A misspelt option (`{ keey: "x" }`) would otherwise be dropped, and the child made without it.
const CHILD_OPTION_KEYS = ["key", "sticky", "priority", "additionalMetadata"];
const CHILD_ITEM_KEYS = ["task", "input", ...CHILD_OPTION_KEYS];
const CHILD_ITEM_SHAPE = "{ task, input, key?, sticky?, priority?, additionalMetadata? }";

function taskNameOf(task: TaskRef): string {
  const name = typeof task === "string" ? task : task?.name;
  if (typeof name !== "string") {
    throw new ValidationError([{ path: "task", message: "must be a task declared with tj.task() or a task name" }]);
  }
  return name;
}

function describe(c: { kind: string; value: string }): string {
  if (c.kind === "now") return "now()";
  return c.kind === "event" ? `waitForEvent(${c.value})` : `a sleep until ${c.value}`;
}

/** Log methods of `ctx.logger`: message first, optional fields. */
export interface TaskLogger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** What a `Context` asks of the worker running its attempt. */
export interface ContextHooks {
  refresh(ms: number): Promise<void>;
  /** `forChild`: a durable task waiting for its child, which replays elsewhere if this worker dies. */
  releaseSlot(forChild?: boolean): Promise<void>;
  spawn(children: ChildSpec[]): Promise<RunRef<Record<string, unknown>>[]>;
  checkpoint(index: number, value: string): Promise<void>;
  sleep(index: number, until: string): Promise<void>;
  waitEvent(index: number, key: string, filter: string | undefined): Promise<void>;
  /** Stores a `ctx.logger` line with the run (`TJ_LOGS`). */
  log(level: LogLevel, message: string, fields: Record<string, unknown> | undefined): void;
  /** Publishes a `ctx.putStream` chunk (`TJ_LOGS`) without waiting for its ack. */
  putStream(data: Uint8Array): Promise<void>;
}

/** The levels of `ctx.logger`. */
export type LogLevel = TaskLogLine["level"];

/** The task's handle on the runtime while it runs. */
export class Context {
  /** Aborted when the attempt is cancelled or the worker gives up on it. */
  readonly abortController = new AbortController();
  /** Logs tagged with the run, task-run and attempt. */
  readonly logger: TaskLogger;
  /** The worker running this attempt. */
  readonly worker: { id(): string; name(): string };

  constructor(
    private readonly assignment: Assignment,
    worker: { id: string; name: string },
    log: Logger,
    private readonly hooks: ContextHooks,
    /** Durable tasks only. */
    private readonly durable = false,
  ) {
    // Instances of classes, not object literals of closures: see `AttemptHooks` in worker.ts.
    this.worker = new WorkerIdentity(worker.id, worker.name);
    this.logger = new AttemptLogger(log, hooks);
  }

  /**
   * Streams a chunk (an LLM token, a progress line, bytes) to the run's subscribers (`tj.runs.subscribeToStream`),
   * stored with the run in order and tagged with this attempt. Resolves at once, without waiting for the chunk to be
   * stored, unless about a thousand chunks are still awaiting it; the attempt's result is reported only after all
   * were stored. A chunk the server refuses is logged by the worker, not thrown.
   * @param chunk a string (stored as UTF-8) or bytes, at most the payload limit (1 MiB by default)
   * @throws ValidationError for another type or a chunk over the limit
   * @example
   * for await (const token of llm.stream(prompt)) await ctx.putStream(token);
   */
  async putStream(chunk: string | Uint8Array): Promise<void> {
    if (typeof chunk === "string") return this.hooks.putStream(new TextEncoder().encode(chunk));
    if (!(chunk instanceof Uint8Array)) {
      throw new ValidationError([
        { path: "chunk", message: `must be a string or a Uint8Array, got ${chunk === null ? "null" : typeof chunk}` },
      ]);
    }
    return this.hooks.putStream(chunk);
  }

  /** True once the attempt was cancelled: stop and return. */
  get cancelled(): boolean {
    return this.aborted || this.abortController.signal.aborted;
  }

  /**
   * @internal Aborts the attempt (`abortController`), remembered beside the signal: Node makes a controller's signal
   * only when it is first read, and reading it for every attempt cost the worker about a tenth of its CPU per short
   * task (an object and its GC), where most tasks never look at it.
   */
  abort(reason: Error): void {
    this.aborted = true;
    this.abortController.abort(reason);
  }

  /** @internal Whether `abort` was called (the signal is not read for it). */
  aborted = false;

  /** The run (workflow run) this task belongs to. */
  workflowRunId(): string {
    return this.assignment.runId;
  }

  /** This task-run's id. */
  taskRunId(): string {
    return this.assignment.taskRunId;
  }

  /** The task's name. */
  taskName(): string {
    return this.assignment.taskName;
  }

  /**
   * 0 on the first run, n on the n-th retry. A durable task's resumption after a sleep or an event, a run paused by
   * an upstream rate limit, and a replay are not retries.
   */
  retryCount(): number {
    return this.assignment.retry ?? this.assignment.attempt;
  }

  /** The attempt's index in the run's history: every attempt counts, retries, resumptions and replays alike. */
  attempt(): number {
    return this.assignment.attempt;
  }

  /**
   * Moves this attempt's execution deadline to `duration` from now, recorded in history (`TaskTimeoutRefreshed`).
   * @throws ValidationError for a bad duration; an error when the attempt is no longer current (timed out, cancelled)
   */
  async refreshTimeout(duration: Duration): Promise<void> {
    await this.hooks.refresh(parseDuration(duration, "refreshTimeout"));
  }

  /**
   * Gives this attempt's worker slot back while the task keeps running (recorded as `TaskSlotReleased`); the worker
   * may start another task at once. A task that released its slot is not reassigned if its worker dies.
   */
  async releaseSlot(): Promise<void> {
    await this.hooks.releaseSlot();
  }

  /**
   * Ends this attempt because an upstream service is rate limiting (an HTTP 429): throws a `RateLimitedError`, so
   * call it as `return ctx.rateLimited(...)` or let it propagate. The run's rate-limit keys (or `key`, or the task
   * itself when it has none) pause until `retryAfter` (a date, or a delay such as `"30s"`), and the run is queued
   * again without using a retry.
   */
  rateLimited(retryAfter: Date | Duration, key?: string): never {
    if (retryAfter instanceof Date) {
      if (Number.isNaN(retryAfter.getTime())) parseDuration("invalid date", "retryAfter");
    } else parseDuration(retryAfter, "retryAfter", { allowZero: true });
    throw new RateLimitedError({ retryAfter, ...(key === undefined ? {} : { key }) });
  }

  /** Durable tasks: the position of the next checkpoint. */
  private checkpointIndex = 0;

  /**
   * Durable tasks: the current time, recorded; on replay the recorded time comes back.
   * @throws NonDeterminismError when history recorded another checkpoint here
   */
  async now(): Promise<Date> {
    const { index, recorded } = this.nextCheckpoint("now()");
    if (recorded) {
      if (recorded.kind !== "now") throw new NonDeterminismError(index, "now()", describe(recorded));
      return new Date(recorded.value);
    }
    const value = new Date();
    await this.hooks.checkpoint(index, value.toISOString());
    return value;
  }

  /**
   * Durable tasks: sleeps until `date`, recorded as a checkpoint. The attempt ends here and frees its slot; the engine
   * wakes the task at `date` (also if this worker died meanwhile) and a new attempt replays the completed checkpoints
   * instead of repeating them, then goes on after this line.
   * @throws NonDeterminismError when history recorded another checkpoint here
   */
  async sleepUntil(date: Date | string): Promise<void> {
    const at = date instanceof Date ? date : new Date(date);
    if (Number.isNaN(at.getTime())) {
      throw new ValidationError([{ path: "date", message: `must be a date, got ${describeValue(date)}` }]);
    }
    const { index, recorded } = this.nextCheckpoint(`sleepUntil(${at.toISOString()})`);
    if (recorded) {
      if (recorded.kind !== "sleep") throw new NonDeterminismError(index, "a sleep", describe(recorded));
      if (recorded.done || Date.parse(recorded.value) <= Date.now()) return;
    } else if (at.getTime() - Date.now() > MAX_SCHEDULE_AHEAD_MS) {
      // A run's history lives 30 days (the stream's default retention): a run asleep longer would wake without it.
      throw new ValidationError([
        {
          path: "date",
          message: `must be within 30 days (the history's default retention), got ${at.toISOString()}`,
        },
      ]);
    }
    await this.hooks.sleep(index, recorded?.value ?? at.toISOString());
    // The attempt is over: this promise is dropped with it.
    return new Promise<void>(() => {});
  }

  /**
   * Durable tasks: waits for a pushed event of `key` (`*` matches any characters) that makes the CEL `filter` over
   * `payload` and `additional_metadata` true, and returns it. The attempt ends here and frees its slot; an event
   * pushed after this call is never missed, also one pushed before the engine registered the wait.
   * @throws NonDeterminismError when history recorded another checkpoint here
   */
  async waitForEvent(
    key: string,
    filter?: string,
  ): Promise<{ id: string; key: string; payload: Record<string, unknown> }> {
    const { index, recorded } = this.nextCheckpoint(`waitForEvent(${key})`);
    if (recorded) {
      if (recorded.kind !== "event" || recorded.value !== key) {
        throw new NonDeterminismError(index, `waitForEvent(${key})`, describe(recorded));
      }
      if (recorded.done && recorded.result) return recorded.result;
    }
    parseWith(EventTriggerSchema, { key, ...(filter === undefined ? {} : { filter }) }, "waitForEvent");
    if (filter !== undefined) compileEventFilter(filter, "filter");
    await this.hooks.waitEvent(index, key, filter);
    return new Promise(() => {});
  }

  /** Durable tasks: sleeps for `duration` (`"10m"`, milliseconds), measured from the first time it is reached. */
  async sleepFor(duration: Duration): Promise<void> {
    const ms = parseDuration(duration, "duration", { allowZero: true });
    if (ms > MAX_SCHEDULE_AHEAD_MS) {
      throw new ValidationError([
        {
          path: "duration",
          message: `must be at most 30 days (the history's default retention), got ${describeValue(duration)}`,
        },
      ]);
    }
    return this.sleepUntil(new Date(Date.now() + ms));
  }

  private nextCheckpoint(what: string) {
    if (!this.durable) {
      throw new ValidationError([{ path: what, message: "is only available in durable tasks (tj.durableTask)" }]);
    }
    const index = this.checkpointIndex++;
    const recorded = this.assignment.checkpoints;
    // Recorded in index order: found by position, so replaying thousands of checkpoints stays linear.
    const at = recorded?.[index];
    return { index, recorded: at?.index === index ? at : recorded?.find((c) => c.index === index) };
  }

  /**
   * Starts a child run of `task` (a declaration or a task name) and waits for its output. The child's id derives from
   * this task-run and `key` (else its position among this attempt's children): a retried parent gets the same child
   * back, not a new one. Cancelling this run cancels its children. Inside a task, `child.run(input)` does the same.
   * @throws TaskRunError when the child failed
   */
  async runChild<O = never, T extends TaskRef = TaskRef>(
    task: T,
    input: ChildInput<T, O>,
    options: ChildOptions = {},
  ): Promise<ChildOutput<O, T>> {
    return (await this.runChildNoWait<O, T>(task, input, options)).result();
  }

  /**
   * Durable tasks: a child run as a checkpoint. Its id derives from this task-run and `key` (or its position among
   * this task's children), so a replay gets the same child, and its output at once if it finished. This task gives its
   * durable slot back to wait for the child (`releaseSlot`), and runs on without one: a durable child may need that
   * very slot (a worker with `durableSlots: 1` running both), which the parent would hold until the child ended.
   */
  async spawnChild<O = never, T extends TaskRef = TaskRef>(
    task: T,
    input: ChildInput<T, O>,
    options: ChildOptions = {},
  ): Promise<ChildOutput<O, T>> {
    const child = await this.runChildNoWait<O, T>(task, input, options).catch((err: unknown) => {
      // A replay that spawns another task where history has a child: the code changed, as for any checkpoint.
      if (!(err instanceof RunIdTakenError)) throw err;
      throw new NonDeterminismError(
        `child run ${err.runId}`,
        `spawnChild(${taskNameOf(task)})`,
        `spawnChild(${err.existingTask})`,
      );
    });
    if (this.durable) await this.hooks.releaseSlot(true);
    return child.result();
  }

  /** Starts a child run and returns its handle once it is recorded. */
  async runChildNoWait<O = never, T extends TaskRef = TaskRef>(
    task: T,
    input: ChildInput<T, O>,
    options: ChildOptions = {},
  ): Promise<RunRef<ChildOutput<O, T>>> {
    checkKnownKeys(options, CHILD_OPTION_KEYS, "options", "a child run option");
    const [ref] = await this.hooks.spawn([
      { ...options, taskName: taskNameOf(task), input: input as Record<string, unknown> },
    ]);
    return ref as unknown as RunRef<ChildOutput<O, T>>;
  }

  /**
   * Starts many child runs in one go (one history write for all) and waits for their outputs, in order. Children of
   * one task are typed by its declaration; children of several tasks give JSON objects (or `O` when given).
   */
  bulkRunChildren<O = never, T extends TaskRef = TaskRef>(
    children: readonly ChildItem<T, O>[],
  ): Promise<ChildOutput<O, T>[]>;
  bulkRunChildren(children: readonly ChildItem<TaskRef, Record<string, unknown>>[]): Promise<Record<string, unknown>[]>;
  async bulkRunChildren(children: readonly ChildItem<TaskRef, object>[]): Promise<unknown[]> {
    const refs = await this.bulkRunChildrenNoWait(children);
    return Promise.all(refs.map((r) => r.result()));
  }

  /** Starts many child runs in one go; their handles, in order (typed as `bulkRunChildren`'s outputs). */
  bulkRunChildrenNoWait<O = never, T extends TaskRef = TaskRef>(
    children: readonly ChildItem<T, O>[],
  ): Promise<RunRef<ChildOutput<O, T>>[]>;
  bulkRunChildrenNoWait(
    children: readonly ChildItem<TaskRef, Record<string, unknown>>[],
  ): Promise<RunRef<Record<string, unknown>>[]>;
  async bulkRunChildrenNoWait(children: readonly ChildItem<TaskRef, object>[]): Promise<RunRef<unknown>[]> {
    if (!Array.isArray(children)) {
      throw new ValidationError([{ path: "children", message: "must be an array of { task, input, key? }" }]);
    }
    for (const [i, c] of children.entries()) {
      checkKnownKeys(c, CHILD_ITEM_KEYS, `children[${i}]`, "a child field", CHILD_ITEM_SHAPE);
    }
    const refs = await this.hooks.spawn(
      children.map((c) => ({ ...c, taskName: taskNameOf(c?.task), input: c?.input as Record<string, unknown> })),
    );
    return refs as unknown as RunRef<unknown>[];
  }

  /**
   * Workflows: the output of a parent task (the task returned by `wf.task()`, or its name). An `onFailure` /
   * `onSuccess` handler sees every task that completed.
   * @throws ValidationError when the task is not a parent of this one
   */
  parentOutput<T extends WorkflowTask<object>>(task: T): T extends WorkflowTask<infer O> ? O : never;
  parentOutput<O extends object = Record<string, unknown>>(task: WorkflowTask | string): O;
  parentOutput(task: { ref: string } | string): object {
    const ref = typeof task === "string" ? task : task?.ref;
    const outputs = this.assignment.parentOutputs ?? {};
    if (typeof ref !== "string" || !Object.hasOwn(outputs, ref)) {
      throw new ValidationError([
        {
          path: "task",
          message: `"${ref}" is not a completed parent of ${this.assignment.ref ?? this.assignment.taskName} (parents: ${Object.keys(outputs).join(", ") || "none"})`,
        },
      ]);
    }
    return outputs[ref] as object;
  }

  /**
   * Workflows, `onFailure` handler: by ref (the task's name in the workflow), the error of each task that failed or was
   * cancelled for a reason of its own (a schedule timeout); not of those left unrun because a parent failed.
   */
  errors(): Record<string, { name: string; message: string; stack?: string | undefined }> {
    return this.assignment.taskErrors ?? {};
  }

  /** The pushed event (or webhook request) that started this run (`onEvents`), or undefined otherwise. */
  triggeringEvent(): { id: string; key: string; payload: Record<string, unknown> } | undefined {
    const t = this.assignment.trigger;
    if (t?.kind !== "event" && t?.kind !== "webhook") return undefined;
    return { id: String(t.eventId), key: String(t.key), payload: this.assignment.input };
  }

  /** Why this run exists: `{ kind: "run" | "schedule" | "cron" | "event" | "webhook", ... }`. */
  trigger(): { kind: string; [k: string]: unknown } {
    return this.assignment.trigger ?? { kind: "run" };
  }

  /**
   * The W3C `traceparent` of the run's trigger (the span active where it was triggered, or the one given), when it had
   * one: `00-<trace id>-<span id>-<flags>`. Put it in outgoing headers to carry the trace further by hand.
   */
  traceparent(): string | undefined {
    return parseTraceparent(this.assignment.traceparent) ? this.assignment.traceparent : undefined;
  }

  /**
   * The run's trigger as an OpenTelemetry context (its span as a remote parent), when `@opentelemetry/api` is installed
   * and the run has a trace context; else undefined. The worker already runs the task with it active, so spans the task
   * starts join the caller's trace; pass it explicitly where that context is lost (callbacks of other libraries).
   * @example
   * const span = tracer.startSpan("charge", {}, ctx.traceContext());
   */
  traceContext(): TraceContext | undefined {
    this.traceCtx ??= { value: contextFromHeaders(this.assignment) };
    return this.traceCtx.value;
  }
  private traceCtx: { value: TraceContext | undefined } | undefined;

  /** The string key/value pairs the run was triggered with. */
  additionalMetadata(): Record<string, string> {
    return this.assignment.additionalMetadata;
  }
}

/** `ctx.worker`. Its methods work detached too (`const { id } = ctx.worker`), as the logger's do. */
class WorkerIdentity {
  readonly id: () => string;
  readonly name: () => string;

  constructor(id: string, name: string) {
    this.id = () => id;
    this.name = () => name;
  }
}

/** `ctx.logger`: each line goes to the process's logger and is stored with the run (`taskjet runs logs`). */
class AttemptLogger implements TaskLogger {
  readonly debug = (message: string, fields?: Record<string, unknown>): void => this.line("debug", message, fields);
  readonly info = (message: string, fields?: Record<string, unknown>): void => this.line("info", message, fields);
  readonly warn = (message: string, fields?: Record<string, unknown>): void => this.line("warn", message, fields);
  readonly error = (message: string, fields?: Record<string, unknown>): void => this.line("error", message, fields);

  constructor(
    private readonly log: Logger,
    private readonly hooks: ContextHooks,
  ) {}

  private line(level: LogLevel, message: string, fields: Record<string, unknown> | undefined): void {
    try {
      this.log[level](fields ?? {}, message);
    } catch (err) {
      // The process's logger serializes the fields as they are (a getter that throws, say): a task's logging must not
      // fail it, and the stored line is cut or described (`encodeLogLine`).
      this.log[level]({ fieldsError: String(err) }, message);
    }
    this.hooks.log(level, message, fields);
  }
}
