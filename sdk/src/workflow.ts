import {
  type CronDefinition,
  checkTaskName,
  type Duration,
  describeValue,
  type RunOptions,
  type StickyMode,
  type TaskDefinition,
  type TaskSpec,
  ValidationError,
} from "@taskjet/schemas";
import type { CronCreator, CronOptions, CronSpec } from "./crons.js";
import type { RunRef } from "./run-ref.js";
import {
  type ConcurrencyOption,
  childOptions,
  type DeclaredOptions,
  type JsonObject,
  type Output,
  type TaskDeclaration,
  type TaskOptions,
} from "./task.js";
import { currentTask } from "./worker/current.js";

/** Options a workflow gives all its tasks unless a task says otherwise. */
export interface TaskDefaults {
  retries?: number;
  backoff?: { factor: number; maxSeconds: number; jitter?: boolean };
  executionTimeout?: Duration;
  scheduleTimeout?: Duration;
}

/** What `tj.workflow()` takes. */
export interface WorkflowOptions {
  /** Unique in the namespace: letters, digits, `_`, `-` and inner dots. */
  name: string;
  /** Priority of its runs unless a run says otherwise: 1 (low) to 3 (high). */
  defaultPriority?: 1 | 2 | 3;
  /** Its tasks prefer (SOFT) or require (HARD) the worker that ran the run's first task. */
  sticky?: StickyMode;
  /** Options every task gets unless it sets its own. */
  taskDefaults?: TaskDefaults;
  /**
   * Concurrency over the workflow's tasks: a rule shared by all of them (one group per key), so at most `maxRuns` of
   * its tasks run at once per key; for a chain of tasks that is `maxRuns` runs. Several rules: an array, as for tasks.
   */
  concurrency?: ConcurrencyOption | ConcurrencyOption[];
  /** Pushed events that start a run of the workflow (keys, `*` patterns, or `{ key, filter }`), as for tasks. */
  onEvents?: (string | { key: string; filter?: string })[];
  /** Cron schedules that start runs of the workflow, registered with the worker, as for tasks. */
  onCrons?: CronSpec[];
}

/** One task of a workflow as users declare it. */
export interface WorkflowTaskOptions<I extends object, O extends object | void>
  extends Omit<TaskOptions<I, O>, "name" | "concurrency" | "sticky" | "onEvents" | "onCrons"> {
  /** Unique within the workflow. */
  name: string;
  /** Tasks (of this workflow, declared before) whose outputs it needs: it runs once they all completed. */
  parents?: (WorkflowTask | string)[];
}

/** A task of a workflow: pass it to `ctx.parentOutput()`, which is typed by its output `O`. */
// biome-ignore lint/suspicious/noExplicitAny: a parent list holds tasks of every output type
export interface WorkflowTask<O = any> {
  /** Its name within the workflow. */
  readonly ref: string;
  /** Type only (never set): the task's output, for `ctx.parentOutput(task)`. */
  readonly outputType?: O;
  readonly parents: readonly string[];
  readonly role: "onFailure" | "onSuccess" | undefined;
  /** The task as registered on workers (`<workflow>.<ref>`). */
  // biome-ignore lint/suspicious/noExplicitAny: a workflow holds tasks of every input and output type
  readonly declaration: TaskDeclaration<any, any>;
}

/** How a workflow declares its tasks and triggers its runs: implemented by the client. */
export interface WorkflowHost {
  // biome-ignore lint/suspicious/noExplicitAny: as above
  task(options: TaskOptions<any, any>): TaskDeclaration<any, any>;
  /** Checks options as `tj.task` does (all but name and fn), naming fields under `prefix` and crons under `owner`. */
  // biome-ignore lint/suspicious/noExplicitAny: as above
  checkOptions(options: Partial<TaskOptions<any, any>>, owner: string, prefix?: string): void;
  readonly crons: CronCreator;
  runWorkflow<O>(
    // biome-ignore lint/suspicious/noExplicitAny: any workflow, whatever its input type
    workflow: WorkflowDeclaration<any>,
    input: JsonObject,
    options: RunOptions | undefined,
    mode: "wait" | "noWait" | { at: Date | string },
  ): Promise<O | RunRef<O>>;
}

/**
 * A workflow: a DAG of tasks run as one run. Tasks whose parents are done run in parallel; a failed task (after its
 * retries) fails the run, its descendants are not run, tasks not depending on it still finish.
 *
 * @example
 * const wf = tj.workflow({ name: "order" });
 * const charge = wf.task({ name: "charge", fn: async (i: { amount: number }) => ({ paid: i.amount }) });
 * const ship = wf.task({ name: "ship", parents: [charge], fn: async (_i, ctx) => ({ ok: ctx.parentOutput(charge) }) });
 * const { charge: c, ship: s } = await wf.run({ amount: 10 });
 */
export class WorkflowDeclaration<I extends object = JsonObject> {
  readonly name: string;
  readonly tasks: WorkflowTask[] = [];

  constructor(
    private readonly host: WorkflowHost,
    readonly options: WorkflowOptions,
  ) {
    this.name = checkTaskName(options?.name, "name");
    // Every option now, with the rules `tj.task` has for the same option: not at each run, nor when registered.
    const { taskDefaults, defaultPriority, sticky, concurrency, onEvents, onCrons } = options;
    if (taskDefaults !== undefined) {
      if (typeof taskDefaults !== "object" || taskDefaults === null || Array.isArray(taskDefaults)) {
        throw new ValidationError([
          {
            path: "taskDefaults",
            message: `must be an object of task options (retries, backoff, executionTimeout, scheduleTimeout), got ${describeValue(taskDefaults)}`,
          },
        ]);
      }
      host.checkOptions(taskDefaults, "taskDefaults", "taskDefaults");
    }
    host.checkOptions({ defaultPriority, sticky, concurrency, onEvents, onCrons }, this.name);
  }

  /**
   * Declares a task of the workflow.
   * @throws ValidationError for a duplicate name or a parent that is not a task of this workflow declared before
   */
  task<TI extends object = I, O extends object | void = JsonObject>(
    options: WorkflowTaskOptions<TI, O>,
  ): WorkflowTask<Output<O>> {
    return this.add(options, undefined);
  }

  /** A task run once the others are done, if the run failed: `ctx.errors()` gives each failed task's error. */
  onFailure<O extends object | void = JsonObject>(options: WorkflowTaskOptions<I, O>): WorkflowTask {
    return this.add(options, "onFailure");
  }

  /** A task run once every other task completed. */
  onSuccess<O extends object | void = JsonObject>(options: WorkflowTaskOptions<I, O>): WorkflowTask {
    return this.add(options, "onSuccess");
  }

  /** Creates or replaces the cron `name`: every tick runs the workflow with `input` (one run per tick). */
  cron(name: string, expression: string, input?: I, options?: CronOptions): Promise<CronDefinition> {
    return this.host.crons.create(name, this.name, expression, input as JsonObject | undefined, options);
  }

  /** @internal The definition workers register for it (the engine builds runs from it for crons and events). */
  definition(): { workflow: NonNullable<TaskDefinition["workflow"]> } {
    return {
      workflow: {
        tasks: this.tasks.map((t) => ({
          ref: t.ref,
          taskName: t.declaration.name,
          ...(t.parents.length ? { parents: [...t.parents] } : {}),
          ...(t.role ? { role: t.role } : {}),
          ...(t.declaration.scheduleTimeoutMs ? { scheduleTimeoutMs: t.declaration.scheduleTimeoutMs } : {}),
        })),
      },
    };
  }

  /** Triggers a run and waits for it: `{ [taskName]: output }`. Inside a task, a child run of it. */
  run<O extends object = JsonObject>(input: I, options?: RunOptions): Promise<O> {
    const parent = currentTask.getStore();
    if (parent) {
      const child = childOptions(options, "options");
      if (child instanceof ValidationError) return Promise.reject(child);
      return parent.runChild<O>(this, input as JsonObject, child) as Promise<O>;
    }
    return this.host.runWorkflow<O>(this, input as JsonObject, options, "wait") as Promise<O>;
  }

  /** Triggers a run and returns once it is recorded. Inside a task, a child run of it. */
  runNoWait<O extends object = JsonObject>(input: I, options?: RunOptions): Promise<RunRef<O>> {
    const parent = currentTask.getStore();
    if (parent) {
      const child = childOptions(options, "options");
      if (child instanceof ValidationError) return Promise.reject(child);
      return parent.runChildNoWait<O>(this, input as JsonObject, child) as Promise<RunRef<O>>;
    }
    return this.host.runWorkflow<O>(this, input as JsonObject, options, "noWait") as Promise<RunRef<O>>;
  }

  /** Creates a run that starts at `at` (SCHEDULED until then; `tj.scheduled` manages it). */
  schedule<O extends object = JsonObject>(at: Date | string, input: I, options?: RunOptions): Promise<RunRef<O>> {
    return this.host.runWorkflow<O>(this, input as JsonObject, options, { at }) as Promise<RunRef<O>>;
  }

  /** @internal The task specs of a new run. */
  specs(runId: string, declared: (t: WorkflowTask) => DeclaredOptions): TaskSpec[] {
    if (this.tasks.every((t) => t.role !== undefined)) {
      throw new ValidationError([{ path: "workflow", message: `workflow ${this.name} has no tasks` }]);
    }
    return this.tasks.map((t, i) => {
      const timeout = declared(t).scheduleTimeoutMs;
      return {
        taskRunId: `${runId}-${i}`,
        taskName: t.declaration.name,
        ref: t.ref,
        ...(t.parents.length ? { parents: [...t.parents] } : {}),
        ...(t.role ? { role: t.role } : {}),
        ...(timeout ? { scheduleTimeoutMs: timeout } : {}),
      };
    });
  }

  private add<TI extends object, O extends object | void>(
    options: WorkflowTaskOptions<TI, O>,
    role: "onFailure" | "onSuccess" | undefined,
  ): WorkflowTask {
    const ref = checkTaskName(options?.name, "name");
    if (this.tasks.some((t) => t.ref === ref)) {
      throw new ValidationError([{ path: "name", message: `workflow ${this.name} already has a task "${ref}"` }]);
    }
    if (role && this.tasks.some((t) => t.role === role)) {
      throw new ValidationError([{ path: "name", message: `workflow ${this.name} already has an ${role} handler` }]);
    }
    if (options.parents !== undefined && !Array.isArray(options.parents)) {
      throw new ValidationError([
        {
          path: "parents",
          message: `must be an array of tasks of workflow ${this.name} (or their names), got ${describeValue(options.parents)}`,
        },
      ]);
    }
    const parents = (options.parents ?? []).map((p, i) => {
      const name = typeof p === "string" ? p : p?.ref;
      const parent = this.tasks.find((t) => t.ref === name && (typeof p === "string" || t === p));
      if (!parent || parent.role) {
        throw new ValidationError([
          {
            path: `parents[${i}]`,
            message: `task "${ref}" names parent "${String(name)}", which is not a task declared before it in workflow ${this.name} (so cycles cannot form)`,
          },
        ]);
      }
      return parent.ref;
    });
    if (role && parents.length) {
      throw new ValidationError([{ path: "parents", message: `the ${role} handler runs after all tasks: no parents` }]);
    }
    const { parents: _p, name: _n, ...rest } = options;
    const defaults = this.options.taskDefaults ?? {};
    const { concurrency } = this.options;
    // Each rule shared by the workflow's tasks: one key per rule (the first `<workflow>.workflow`) unless it names one.
    const rules = (concurrency === undefined ? [] : Array.isArray(concurrency) ? concurrency : [concurrency]).map(
      (rule, i) => ({ ...rule, key: rule.key ?? `${this.name}.workflow${i === 0 ? "" : `-${i}`}` }),
    );
    const declaration = this.host.task({
      ...defaults,
      ...rest,
      name: `${this.name}.${ref}`,
      ...(this.options.sticky ? { sticky: this.options.sticky } : {}),
      ...(rules.length ? { concurrency: rules } : {}),
    } as TaskOptions<JsonObject, JsonObject>);
    const task: WorkflowTask = { ref, parents, role, declaration };
    this.tasks.push(task);
    return task;
  }
}
