import type { CronDefinition, EventTrigger, TaskDefinition } from "@taskjet/schemas";
import {
  type Duration,
  describeValue,
  type FlowOptions,
  type FlowOptionsInput,
  parseDuration,
  type RetryPolicy,
  type RunOptions,
  ValidationError,
} from "@taskjet/schemas";
import type { CronCreator, CronOptions, CronSpec } from "./crons.js";
import type { RunRef } from "./run-ref.js";
import type { ChildOptions, Context } from "./worker/context.js";
import { currentTask } from "./worker/current.js";

/** A JSON object: what tasks take and return. */
export type JsonObject = Record<string, unknown>;

/** A task function. Returning nothing records `{}`. */
export type TaskFn<I extends object, O extends object | void> = (input: I, ctx: Context) => O | Promise<O>;

/** What `tj.task()` takes. */
export interface TaskOptions<I extends object, O extends object | void> {
  /** Unique within the namespace: letters, digits, `_`, `-` and inner dots. */
  name: string;
  /** The work. */
  fn: TaskFn<I, O>;
  /** How many times a failed attempt is retried. @default 0 */
  retries?: number;
  /**
   * Delay before retry n = min(maxSeconds, factor^n) seconds; `jitter` spreads it by ±50 %. Without it, retries
   * follow after a short fixed delay (100 ms).
   */
  backoff?: { factor: number; maxSeconds: number; jitter?: boolean };
  /**
   * How long one attempt may run (`"1h30m5s"`, `"15s"`, `"500ms"` or milliseconds). Past it the attempt fails with
   * `TaskTimedOut` (retries apply) and its `ctx.abortController.signal` aborts; `ctx.refreshTimeout()` extends it.
   * @default "60s"
   */
  executionTimeout?: Duration;
  /**
   * How long a run may wait for a worker before it is cancelled (`SCHEDULE_TIMEOUT`). Applies to runs triggered
   * through this declaration; runs triggered by name use the engine's default.
   * @default the engine's (5 minutes)
   */
  scheduleTimeout?: Duration;
  /** Priority of runs triggered through this declaration without one: 1 (low) to 3 (high). @default 1 */
  defaultPriority?: 1 | 2 | 3;
  /**
   * At most `maxRuns` (default 1) runs at once per value of the CEL `expression` over `input` and
   * `additional_metadata` (`"'global'"` caps the task). Several rules must all admit a run. `limitStrategy`:
   * `GROUP_ROUND_ROBIN` (default: queue, serve the values in turn), `CANCEL_IN_PROGRESS` (cancel the oldest runs of
   * the value to admit the new one) or `CANCEL_NEWEST` (cancel the new one). A `key` shares the rule's groups with
   * every task that names the same key.
   * @example concurrency: { expression: "input.userId", maxRuns: 2 }
   */
  concurrency?: ConcurrencyOption | ConcurrencyOption[];
  /**
   * Units each run takes from rate limits: a static one (`tj.ratelimits.upsert`) by `staticKey`, or one per value
   * of the CEL `dynamicKey` with its own `limit` per `duration`. A run over a limit stays queued until units free up.
   * @example rateLimits: [{ staticKey: "openai", units: 1 }, { dynamicKey: "input.userId", limit: 10, duration: "MINUTE" }]
   */
  rateLimits?: NonNullable<FlowOptionsInput["rateLimits"]>;
  /**
   * Worker labels this task wants: `required` ones filter workers (`comparator`, default EQUAL), the others add
   * their `weight` (default 100) to a worker's rank.
   * @example desiredWorkerLabels: { memory: { value: 256, required: true, comparator: "GREATER_THAN_OR_EQUAL" } }
   */
  desiredWorkerLabels?: NonNullable<FlowOptionsInput["desiredWorkerLabels"]>;
  /** Later attempts of a run prefer (`SOFT`) or require (`HARD`) the worker that ran its first attempt. */
  sticky?: "SOFT" | "HARD";
  /** Worker slots one run occupies. @default 1 */
  slotCost?: number;
  /**
   * `ttl`: how long a run's `idempotencyKey` keeps returning it to later triggers with the same key (default 24 h).
   * `expression`: for runs the engine starts from events and crons, a CEL key over `input` and `additional_metadata`
   * (`"input.orderId"`): one run per key within the ttl.
   */
  idempotency?: { ttl?: Duration; expression?: string };
  /**
   * Cron schedules registered with the worker: `"0 9 * * 1"` (5 fields, or 6 with seconds first; UTC) or
   * `{ expression, timezone, input, catchUp }`. A bad expression is refused when the worker registers.
   */
  onCrons?: CronSpec[];
  /**
   * Pushed events that start a run of this task (one per event), with the event's payload as input: keys
   * (`"user:created"`, `*` matches any characters: `"order:*"`) or `{ key, filter }` with a CEL filter over `payload`
   * and `additional_metadata` (`"payload.amount > 100"`).
   */
  onEvents?: (string | { key: string; filter?: string })[];
}

/** One concurrency rule as users write it. */
export type ConcurrencyOption = NonNullable<FlowOptionsInput["concurrency"]>[number];

/** Output type as the caller receives it. */
export type Output<O> = O extends void ? JsonObject : O;

/** One run of a bulk trigger. */
export interface BulkItem<I extends object = JsonObject> {
  input: I;
  options?: RunOptions;
}

/** Options of a bulk trigger. */
export interface BulkOptions {
  /** Return each item's error (validation, sending, or the run's failure) in its place instead of throwing. */
  returnExceptions?: boolean;
}

/** How a declaration triggers runs: implemented by the client. */
export interface Triggers {
  run<O>(taskName: string, input: JsonObject, options?: RunOptions, declared?: DeclaredOptions): Promise<O>;
  runNoWait<O>(
    taskName: string,
    input: JsonObject,
    options?: RunOptions,
    declared?: DeclaredOptions,
  ): Promise<RunRef<O>>;
  runMany<O>(
    taskName: string,
    items: readonly BulkItem[],
    options?: BulkOptions,
    declared?: DeclaredOptions,
  ): Promise<(O | Error)[]>;
  runManyNoWait<O>(
    taskName: string,
    items: readonly BulkItem[],
    options?: BulkOptions,
    declared?: DeclaredOptions,
  ): Promise<(RunRef<O> | Error)[]>;
  schedule<O>(
    taskName: string,
    at: Date | string,
    input: JsonObject,
    options?: RunOptions,
    declared?: DeclaredOptions,
  ): Promise<RunRef<O>>;
  readonly crons: CronCreator;
}

/** What a declaration adds to the runs it triggers. */
export interface DeclaredOptions {
  scheduleTimeoutMs?: number | undefined;
  idempotencyTtlMs?: number | undefined;
  defaultPriority?: number | undefined;
  /** A workflow triggered by name: its tasks, as its workers registered them. */
  workflow?: TaskDefinition["workflow"];
}

/** A declared task: the runnable returned by `tj.task()`, registered on workers and triggered through it. */
export class TaskDeclaration<I extends object = JsonObject, O extends object | void = JsonObject> {
  readonly name: string;
  readonly fn: TaskFn<I, O>;
  /** Retries and backoff, validated. */
  readonly policy: RetryPolicy;
  /** Execution timeout in milliseconds. */
  readonly executionTimeoutMs: number;
  /** Schedule timeout in milliseconds, when set. */
  readonly scheduleTimeoutMs: number | undefined;
  /** Priority of its runs unless a run says otherwise. */
  readonly defaultPriority: number | undefined;
  /** Flow control, validated (expressions are compiled when a worker registers the task). */
  readonly flow: FlowOptions;
  /** How long an idempotency key holds, when the task says. */
  readonly idempotencyTtlMs: number | undefined;
  /** Cron schedules its workers register. */
  readonly onCrons: readonly CronSpec[] | undefined;
  /** Idempotency key of the runs events and crons start (CEL), when the task says. */
  readonly idempotencyExpression: string | undefined;
  /** Event triggers its workers register, validated. */
  readonly onEvents: readonly EventTrigger[] | undefined;

  constructor(
    private readonly triggers: Triggers,
    options: TaskOptions<I, O>,
    resolved: {
      policy: RetryPolicy;
      executionTimeoutMs: number;
      scheduleTimeoutMs: number | undefined;
      defaultPriority: number | undefined;
      flow: FlowOptions;
      idempotencyTtlMs: number | undefined;
      onEvents: EventTrigger[] | undefined;
    },
  ) {
    this.name = options.name;
    this.fn = options.fn;
    this.policy = resolved.policy;
    this.executionTimeoutMs = resolved.executionTimeoutMs;
    this.scheduleTimeoutMs = resolved.scheduleTimeoutMs;
    this.defaultPriority = resolved.defaultPriority;
    this.flow = resolved.flow;
    this.idempotencyTtlMs = resolved.idempotencyTtlMs;
    this.onCrons = options.onCrons;
    this.onEvents = resolved.onEvents;
    this.idempotencyExpression = options.idempotency?.expression;
  }

  /**
   * Triggers a run and waits for its output; given an array of inputs, triggers them all (pipelined) and returns the
   * outputs in input order.
   * @throws TaskRunError carrying the task's error when it failed; ValidationError / PayloadTooLargeError for bad input
   */
  run(input: I, options?: RunOptions): Promise<Output<O>>;
  run(inputs: readonly I[], options?: RunOptions): Promise<Output<O>[]>;
  run(input: I | readonly I[], options?: RunOptions): Promise<Output<O> | Output<O>[]> {
    const parent = currentTask.getStore();
    if (parent) {
      // Inside a task: child runs of it.
      const child = childOptions(options, "options");
      if (child instanceof ValidationError) return Promise.reject(child);
      if (Array.isArray(input)) {
        return parent.bulkRunChildren(input.map((i) => ({ ...child, task: this.name, input: i }))) as Promise<
          Output<O>[]
        >;
      }
      return parent.runChild(this.name, input as JsonObject, child) as Promise<Output<O>>;
    }
    if (Array.isArray(input)) {
      const refused = oneRunOption(options, input.length);
      if (refused) return Promise.reject(refused);
      return this.runMany(input.map((i) => ({ input: i, options }))) as Promise<Output<O>[]>;
    }
    return this.triggers.run<Output<O>>(this.name, input as JsonObject, options, this.declared());
  }

  /**
   * Triggers a run and returns once it is recorded: `ref.runId`, `await ref.result()`, `await ref.status()`. Given an
   * array of inputs, returns a handle per input, in order.
   */
  runNoWait(input: I, options?: RunOptions): Promise<RunRef<Output<O>>>;
  runNoWait(inputs: readonly I[], options?: RunOptions): Promise<RunRef<Output<O>>[]>;
  runNoWait(input: I | readonly I[], options?: RunOptions): Promise<RunRef<Output<O>> | RunRef<Output<O>>[]> {
    const parent = currentTask.getStore();
    if (parent) {
      const child = childOptions(options, "options");
      if (child instanceof ValidationError) return Promise.reject(child);
      if (Array.isArray(input)) {
        return parent.bulkRunChildrenNoWait(input.map((i) => ({ ...child, task: this.name, input: i }))) as Promise<
          RunRef<Output<O>>[]
        >;
      }
      return parent.runChildNoWait(this.name, input as JsonObject, child) as Promise<RunRef<Output<O>>>;
    }
    if (Array.isArray(input)) {
      const refused = oneRunOption(options, input.length);
      if (refused) return Promise.reject(refused);
      return this.runManyNoWait(input.map((i) => ({ input: i, options }))) as Promise<RunRef<Output<O>>[]>;
    }
    return this.triggers.runNoWait<Output<O>>(this.name, input as JsonObject, options, this.declared());
  }

  /**
   * Triggers many runs, pipelined, and waits for all: outputs in input order. Throws the first failure unless
   * `returnExceptions` puts each error in its place.
   * @example const [a, b] = await task.runMany([{ input: { n: 1 } }, { input: { n: 2 }, options: { priority: 3 } }])
   */
  runMany(items: readonly BulkItem<I>[], options?: { returnExceptions?: false }): Promise<Output<O>[]>;
  runMany(items: readonly BulkItem<I>[], options: BulkOptions): Promise<(Output<O> | Error)[]>;
  runMany(items: readonly BulkItem<I>[], options: BulkOptions = {}): Promise<(Output<O> | Error)[]> {
    const parent = currentTask.getStore();
    if (parent) {
      return this.childrenNoWait(parent, items).then(async (refs) => {
        if (!options.returnExceptions) return Promise.all(refs.map((r) => r.result()));
        return Promise.all(refs.map((r) => r.result().catch((err: unknown) => err as Error)));
      });
    }
    return this.triggers.runMany<Output<O>>(this.name, items as readonly BulkItem[], options, this.declared());
  }

  /** Triggers many runs, pipelined; resolves with their handles in input order once all are recorded. */
  runManyNoWait(items: readonly BulkItem<I>[], options?: { returnExceptions?: false }): Promise<RunRef<Output<O>>[]>;
  runManyNoWait(items: readonly BulkItem<I>[], options: BulkOptions): Promise<(RunRef<Output<O>> | Error)[]>;
  runManyNoWait(items: readonly BulkItem<I>[], options: BulkOptions = {}): Promise<(RunRef<Output<O>> | Error)[]> {
    const parent = currentTask.getStore();
    if (parent) return this.childrenNoWait(parent, items);
    return this.triggers.runManyNoWait<Output<O>>(this.name, items as readonly BulkItem[], options, this.declared());
  }

  /** Inside a task: the items as child runs of it, each with its options. */
  private childrenNoWait(parent: Context, items: readonly BulkItem<I>[]): Promise<RunRef<Output<O>>[]> {
    if (!Array.isArray(items)) {
      return Promise.reject(
        new ValidationError([{ path: "items", message: "must be an array of { input, options? }" }]),
      );
    }
    const children = [];
    for (const [i, it] of items.entries()) {
      const child = childOptions(it?.options, `[${i}].options`);
      if (child instanceof ValidationError) return Promise.reject(child);
      children.push({ ...child, task: this.name, input: it?.input as JsonObject });
    }
    return parent.bulkRunChildrenNoWait(children) as Promise<RunRef<Output<O>>[]>;
  }

  /**
   * Creates a run that starts at `at` (a time in the past starts it at once); SCHEDULED until then.
   * @example const ref = await remind.schedule(new Date(Date.now() + 3_600_000), { userId: "u1" })
   */
  schedule(at: Date | string, input: I, options?: RunOptions): Promise<RunRef<Output<O>>> {
    return this.triggers.schedule<Output<O>>(this.name, at, input as JsonObject, options, this.declared());
  }

  /** Creates a run that starts after `duration` (`"10m"`, `"1h30m"`, milliseconds). */
  async delay(duration: Duration, input: I, options?: RunOptions): Promise<RunRef<Output<O>>> {
    const ms = parseDuration(duration, "duration", { allowZero: true });
    return this.schedule(new Date(Date.now() + ms), input, options);
  }

  /**
   * Creates or replaces the cron `name`: every tick of `expression` (5 fields, or 6 with seconds first; UTC unless
   * `timezone`) runs this task with `input`. Exactly one run per tick, whatever the number of engines.
   * @throws ValidationError with the cron parser's message for a bad expression
   * @example await report.cron("nightly-report", "0 2 * * *", { kind: "daily" }, { timezone: "Europe/Paris" })
   */
  cron(name: string, expression: string, input?: I, options?: CronOptions): Promise<CronDefinition> {
    return this.triggers.crons.create(name, this.name, expression, input as JsonObject | undefined, options);
  }

  private declared(): DeclaredOptions {
    return {
      scheduleTimeoutMs: this.scheduleTimeoutMs,
      defaultPriority: this.defaultPriority,
      idempotencyTtlMs: this.idempotencyTtlMs,
    };
  }
}

/**
 * Options given with an array of inputs apply to each run; one that names a single run (its id, an idempotency key)
 * would make every input that run, all but the first input lost: refused.
 */
function oneRunOption(options: RunOptions | undefined, count: number): ValidationError | undefined {
  const field = (["runId", "idempotencyKey"] as const).find((f) => options?.[f] !== undefined);
  if (field === undefined) return undefined;
  return new ValidationError([
    {
      path: `options.${field}`,
      message: `names one run, so it cannot go with ${count} inputs: give each its own in runMany([{ input, options }])`,
    },
  ]);
}

/**
 * Run options as a child run takes them: its priority and metadata (over the parent's); its id derives from the
 * parent task-run and its trace is the parent task's, so an id, an idempotency key or a trace context is refused.
 */
export function childOptions(options: RunOptions | undefined, path: string): ChildOptions | ValidationError {
  if (options === undefined) return {};
  if (typeof options !== "object" || options === null) {
    return new ValidationError([{ path, message: `must be an object, got ${describeValue(options)}` }]);
  }
  const own = (["runId", "idempotencyKey", "traceparent", "tracestate"] as const).find((f) => options[f] !== undefined);
  if (own !== undefined) {
    return new ValidationError([
      {
        path: `${path}.${own}`,
        message:
          "inside a task a trigger is a child run, whose id derives from its parent task-run: give it a key " +
          "(ctx.runChild(task, input, { key })) instead",
      },
    ]);
  }
  const { priority, additionalMetadata, ...rest } = options;
  const unknown = Object.keys(rest)[0];
  if (unknown !== undefined) {
    return new ValidationError([{ path: `${path}.${unknown}`, message: "is not a run option" }]);
  }
  return {
    ...(priority === undefined ? {} : { priority }),
    ...(additionalMetadata === undefined ? {} : { additionalMetadata }),
  };
}
