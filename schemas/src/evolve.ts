import type { RecordedError } from "./errors.js";
import {
  EventTypes,
  type TaskCompleted,
  type TaskFailed,
  type TaskjetEvent,
  type TaskRateLimited,
  type TaskStarted,
} from "./events.js";
import { replayPlan, replayTasks } from "./replay.js";
import { type DurableCheckpointState, isTerminal, type RunState, RunStatuses, type TaskRunState } from "./run-state.js";

/**
 * The one reducer: folds one history event (at stream sequence `seq`) into a run's state. Pure, no I/O; the
 * projector, the scheduler's recovery, the CLI's history view and the tests all use it.
 *
 * Facts that no longer apply (a report for an attempt that is not current, an event for a finished task) change
 * nothing but the position: appends are CAS-guarded, so such events only reach the log as `ReportIgnored`.
 *
 * `owned`: for a caller that keeps only the latest state (a reader folding a history to its end), one new set passed
 * with every event of that fold. Lists this fold made are then grown in place instead of copied per event, which
 * keeps a durable task's thousands of checkpoints linear to fold (`test/bench/history.ts`). A state given earlier
 * may then change: never pass it where earlier states are kept (the projector).
 */
export function evolve(
  state: RunState | undefined,
  event: TaskjetEvent,
  seq: number,
  owned?: WeakSet<object>,
): RunState | undefined {
  if (state === undefined) return created(event, seq);
  if (seq <= state.lastSeq) return state; // already folded (redelivery)
  const next = apply(state, event, seq, owned);
  return next === state ? next : withQueuedSeq(state, next, seq);
}

/**
 * `next` with `queuedSeq` set on each attempt that `seq` queued: one that was not queued before, or is a new attempt,
 * or was queued again (a new `queuedAt`).
 */
function withQueuedSeq(before: RunState, next: RunState, seq: number): RunState {
  let tasks: TaskRunState[] | undefined;
  for (let i = 0; i < next.tasks.length; i++) {
    const t = next.tasks[i] as TaskRunState;
    if (t.status !== RunStatuses.queued || t.queuedSeq === seq) continue;
    const was = before.tasks[i];
    if (was?.status === RunStatuses.queued && was.attempt === t.attempt && was.queuedAt === t.queuedAt) continue;
    tasks ??= [...next.tasks];
    tasks[i] = { ...t, queuedSeq: seq };
  }
  return tasks ? { ...next, tasks } : next;
}

function apply(state: RunState, event: TaskjetEvent, seq: number, owned: WeakSet<object> | undefined): RunState {
  let next = copy(state, { lastSeq: seq, eventCount: state.eventCount + 1 });
  switch (event.type) {
    case EventTypes.TaskStarted:
      return started(next, event.taskRunId, event.data.attempt, event.data.workerId, event.data, event.at);
    case EventTypes.TaskCompleted: {
      next = withStart(next, event);
      const task = currentTask(next, event.taskRunId, event.data.attempt);
      if (!task || isTerminal(task.status) || task.retry || !fromRunner(task, event.data.workerId)) return next;
      // Fields set to undefined rather than removed: cheaper than a rest copy, and JSON drops them alike.
      return withTask(
        next,
        copy(task, {
          status: RunStatuses.completed,
          workerId: event.data.workerId,
          finishedAt: event.at,
          output: event.data.output,
          error: undefined,
          timeoutAt: undefined,
        }),
      );
    }
    case EventTypes.TaskFailed: {
      next = withStart(next, event);
      const task = currentTask(next, event.taskRunId, event.data.attempt);
      if (!task || isTerminal(task.status) || task.retry || !fromRunner(task, event.data.workerId)) return next;
      return attemptFailed(next, task, event.data.error, event.at, event.data.nonRetryable === true);
    }
    case EventTypes.TaskTimedOut: {
      const task = currentTask(next, event.taskRunId, event.data.attempt);
      if (!task || task.status !== RunStatuses.running) return next;
      const error = {
        name: "TaskTimedOut",
        message: `execution timeout: attempt ${event.data.attempt} still running at ${event.data.timeoutAt}`,
      };
      return attemptFailed(next, task, error, event.at, false);
    }
    case EventTypes.TaskTimeoutRefreshed: {
      const task = currentTask(next, event.taskRunId, event.data.attempt);
      if (!task || task.status !== RunStatuses.running || task.workerId !== event.data.workerId) return next;
      return withTask(next, { ...task, timeoutAt: event.data.timeoutAt });
    }
    case EventTypes.TaskRetryScheduled: {
      const task = currentTask(next, event.taskRunId, event.data.attempt - 1);
      if (task?.retry?.attempt !== event.data.attempt) return next;
      return withTask(next, { ...task, retry: { attempt: event.data.attempt, at: event.data.at } });
    }
    case EventTypes.TaskQueued: {
      const task = currentTask(next, event.taskRunId, event.data.attempt - 1);
      if (task?.retry?.attempt !== event.data.attempt) return next;
      const { retry: _done, ...rest } = offWorker(task);
      return withTask(next, { ...rest, attempt: event.data.attempt, status: RunStatuses.queued, queuedAt: event.at });
    }
    case EventTypes.TaskWaiting: {
      const task = currentTask(next, event.taskRunId, event.data.attempt);
      if (task?.status !== RunStatuses.queued || task.retry) return next;
      return withTask(next, {
        ...task,
        waiting: { reason: event.data.reason, detail: event.data.detail, since: event.at },
      });
    }
    case EventTypes.TaskRateLimited: {
      next = withStart(next, event);
      const task = runningAttempt(next, event.taskRunId, event.data.attempt, event.data.workerId);
      if (!task) return next;
      const { keys, until, message } = event.data;
      return withTask(next, {
        ...requeued(offWorker(task), task.attempt + 1, event.at),
        rateLimited: keys ? { until, keys } : { until },
        error: { name: "RateLimited", message: message ?? `rate limited until ${until}` },
      });
    }
    case EventTypes.DurableCheckpoint: {
      const task = runningAttempt(next, event.taskRunId, event.data.attempt, event.data.workerId);
      if (!task) return next;
      const { index, value } = event.data;
      // A worker records checkpoints in index order from 0, so a duplicate can only be below the length: a long
      // durable task's fold would otherwise scan them all on each one (quadratic; test/bench/history.ts).
      if (index < (task.checkpoints?.length ?? 0) && task.checkpoints?.some((c) => c.index === index)) return next;
      const checkpoint: DurableCheckpointState = { index, kind: "now", value, done: true };
      return withTask(next, { ...task, checkpoints: appended(task.checkpoints, checkpoint, owned) });
    }
    case EventTypes.DurableSleeping: {
      const task = runningAttempt(next, event.taskRunId, event.data.attempt, event.data.workerId);
      if (!task) return next;
      const { index, until } = event.data;
      return withTask(next, suspended(task, { index, kind: "sleep", value: until, done: false }));
    }
    case EventTypes.DurableWaitingForEvent: {
      const task = runningAttempt(next, event.taskRunId, event.data.attempt, event.data.workerId);
      if (!task) return next;
      const { index, key, filter, afterSeq } = event.data;
      const waiting: DurableCheckpointState = { index, kind: "event", value: key, done: false, afterSeq };
      if (filter !== undefined) waiting.filter = filter;
      return withTask(next, suspended(task, waiting));
    }
    case EventTypes.DurableWoke: {
      const found = awaitedCheckpoint(next, event.taskRunId, event.data.attempt - 1, event.data.index, "sleep");
      if (!found) return next;
      return withTask(next, resumed(found, { ...found.checkpoint, done: true }, event.data.attempt, event.at));
    }
    case EventTypes.DurableEventReceived: {
      const found = awaitedCheckpoint(next, event.taskRunId, event.data.attempt - 1, event.data.index, "event");
      if (!found) return next;
      const { index, kind, value } = found.checkpoint;
      const done = { index, kind, value, done: true, result: event.data.event };
      return withTask(next, resumed(found, done, event.data.attempt, event.at));
    }
    case EventTypes.ChildrenSpawned: {
      const task = runningAttempt(next, event.taskRunId, event.data.attempt, event.data.workerId);
      if (!task) return next;
      const known = new Set((next.children ?? []).map((c) => c.runId));
      const added = event.data.children
        .filter((c) => !known.has(c.runId))
        .map((c) => ({ ...c, taskRunId: event.taskRunId }));
      next.children = [...(next.children ?? []), ...added];
      return next;
    }
    case EventTypes.TaskReassigned: {
      const task = currentTask(next, event.taskRunId, event.data.attempt);
      if (!task || task.status !== RunStatuses.running || task.workerId !== event.data.fromWorkerId) return next;
      // The same attempt, not a new one: it keeps the start it had.
      return withTask(next, { ...withoutWorkerFacts(task), status: RunStatuses.queued, queuedAt: event.at });
    }
    case EventTypes.TaskSlotReleased: {
      const task = currentTask(next, event.taskRunId, event.data.attempt);
      if (task?.status !== RunStatuses.running || task.workerId !== event.data.workerId) return next;
      return withTask(next, { ...task, slotReleased: true, ...(event.data.forChild ? { waitsForChild: true } : {}) });
    }
    case EventTypes.TaskCancelled: {
      const task = currentTask(next, event.taskRunId, event.data.attempt);
      if (!task || isTerminal(task.status)) return next;
      const { retry: _r, timeoutAt: _t, ...rest } = task;
      const error = { name: "TaskCancelled", message: event.data.reason };
      return withTask(next, { ...rest, status: RunStatuses.cancelled, finishedAt: event.at, error });
    }
    case EventTypes.RunCancelled: {
      if (isTerminal(next.status)) return next;
      const error = { name: "RunCancelled", message: event.data.reason };
      const tasks = next.tasks.map((t) => {
        if (isTerminal(t.status)) return t;
        const { retry: _r, timeoutAt: _t, ...rest } = t;
        return { ...rest, status: RunStatuses.cancelled, finishedAt: event.at };
      });
      return { ...next, tasks, status: RunStatuses.cancelled, error, finishedAt: event.at };
    }
    case EventTypes.RunRescheduled:
      if (next.status !== RunStatuses.scheduled) return next;
      next.scheduledAt = event.data.scheduledAt;
      return next;
    case EventTypes.RunDue:
      if (next.status !== RunStatuses.scheduled || next.scheduledAt !== event.data.scheduledAt) return next;
      next.status = RunStatuses.queued;
      next.tasks = next.tasks.map((t) => {
        if (t.status !== RunStatuses.scheduled) return t;
        if (t.parents?.length || t.role) return { ...t, status: RunStatuses.pending };
        return { ...t, status: RunStatuses.queued, queuedAt: event.at };
      });
      return next;
    case EventTypes.RunReplayed: {
      const plan = replayPlan(next, event.data.from);
      if (!("rerun" in plan)) return next;
      const { output: _o, error: _e, finishedAt: _f, startedAt: _s, sticky: _st, ...run } = next;
      return {
        ...run,
        status: RunStatuses.queued,
        tasks: replayTasks(next.tasks, plan.rerun, event.at),
        replays: (next.replays ?? 0) + 1,
        replayedAt: event.at,
      };
    }
    case EventTypes.RunCreated: // a second creation cannot be appended (CAS on sequence 0)
    case EventTypes.ReportIgnored:
    case EventTypes.EventRejected:
      return next;
  }
}

/** Folds a whole history. */
export function fold(events: Iterable<{ event: TaskjetEvent; seq: number }>): RunState | undefined {
  let state: RunState | undefined;
  const owned = new WeakSet<object>();
  for (const { event, seq } of events) state = evolve(state, event, seq, owned);
  return state;
}

/** `list` and `item`: a new list, or `list` itself grown when this fold made it (see `evolve`'s `owned`). */
function appended<T>(list: T[] | undefined, item: T, owned: WeakSet<object> | undefined): T[] {
  if (list && owned?.has(list)) {
    list.push(item);
    return list;
  }
  // concat copies a packed array in one go: about twice as fast as a spread.
  const copy = list ? list.concat([item]) : [item];
  owned?.add(copy);
  return copy;
}

/**
 * Shared by every run without metadata and every plain trigger: an engine holds a million queued states, and each
 * copy of these costs about 56 bytes (`test/bench/scale.ts`). Frozen, as nothing may change one run's through them.
 */
const NO_METADATA: Record<string, string> = Object.freeze({}) as Record<string, string>;
const RUN_TRIGGER: RunState["trigger"] = Object.freeze({ kind: "run" });

function isEmpty(o: object): boolean {
  for (const _ in o) return false;
  return true;
}

function created(event: TaskjetEvent, seq: number): RunState | undefined {
  if (event.type === EventTypes.RunCreated) {
    const d = event.data;
    const status = d.scheduledAt ? RunStatuses.scheduled : RunStatuses.queued;
    return {
      v: 1,
      runId: event.runId,
      workflowName: d.workflowName,
      status,
      input: d.input,
      additionalMetadata: isEmpty(d.additionalMetadata) ? NO_METADATA : d.additionalMetadata,
      priority: d.priority,
      trigger: d.trigger.kind === "run" && Object.keys(d.trigger).length === 1 ? RUN_TRIGGER : d.trigger,
      tasks: d.tasks.map((t) => {
        const waits = (t.parents?.length ?? 0) > 0 || t.role !== undefined;
        const taskStatus = waits && status === RunStatuses.queued ? RunStatuses.pending : status;
        return {
          taskRunId: t.taskRunId,
          taskName: t.taskName,
          ...(t.ref ? { ref: t.ref } : {}),
          ...(t.parents?.length ? { parents: t.parents } : {}),
          ...(t.role ? { role: t.role } : {}),
          status: taskStatus,
          attempt: 0,
          ...(taskStatus === RunStatuses.queued ? { queuedAt: event.at, queuedSeq: seq } : {}),
          ...(t.scheduleTimeoutMs ? { scheduleTimeoutMs: t.scheduleTimeoutMs } : {}),
        };
      }),
      createdAt: event.at,
      ...(d.scheduledAt ? { scheduledAt: d.scheduledAt } : {}),
      ...(d.sticky ? { sticky: d.sticky } : {}),
      ...(d.traceparent ? { traceparent: d.traceparent } : {}),
      ...(d.tracestate ? { tracestate: d.tracestate } : {}),
      lastSeq: seq,
      eventCount: 1,
    };
  }
  if (event.type === EventTypes.EventRejected) {
    // The run's first message was refused: the run exists only as that refusal, failed.
    return {
      v: 1,
      runId: event.runId,
      workflowName: "",
      status: RunStatuses.failed,
      input: {},
      additionalMetadata: {},
      priority: 1,
      trigger: { kind: "run" },
      tasks: [],
      error: { name: "EventRejected", message: event.data.reason },
      createdAt: event.at,
      finishedAt: event.at,
      lastSeq: seq,
      eventCount: 1,
    };
  }
  return undefined;
}

/** An attempt ended in failure: retried while the policy allows, else final. */
function attemptFailed(
  state: RunState,
  task: TaskRunState,
  error: RecordedError,
  at: string,
  nonRetryable: boolean,
): RunState {
  if (!nonRetryable && task.attempt - (task.requeues ?? 0) < (task.policy?.retries ?? 0)) {
    // Not final: the engine schedules the next attempt (TaskRetryScheduled, then TaskQueued).
    return withTask(
      state,
      copy(task, { status: RunStatuses.queued, error, retry: { attempt: task.attempt + 1 }, timeoutAt: undefined }),
    );
  }
  return withTask(state, copy(task, { status: RunStatuses.failed, finishedAt: at, error, timeoutAt: undefined }));
}

/** The task's running attempt, when a worker's fact about `attempt` comes from the worker running it. */
function runningAttempt(
  state: RunState,
  taskRunId: string,
  attempt: number,
  workerId: string,
): TaskRunState | undefined {
  const task = currentTask(state, taskRunId, attempt);
  return task?.status === RunStatuses.running && fromRunner(task, workerId) ? task : undefined;
}

/** The task without its running attempt's worker facts and start: the attempt left the worker. */
function offWorker(task: TaskRunState): TaskRunState {
  const { startedAt: _s, ...rest } = withoutWorkerFacts(task);
  return rest;
}

/** The facts of the worker running the attempt, gone; its start kept. Every key in one place: a new fact is added here. */
function withoutWorkerFacts(task: TaskRunState): TaskRunState {
  const { workerId: _w, workerName: _n, timeoutAt: _t, slotReleased: _r, waitsForChild: _c, ...rest } = task;
  return rest;
}

/** The task's next attempt, queued without counting as a retry (rate limited upstream, a durable task resuming). */
function requeued(task: TaskRunState, attempt: number, at: string): TaskRunState {
  return { ...task, status: RunStatuses.queued, attempt, queuedAt: at, requeues: (task.requeues ?? 0) + 1 };
}

/** A durable task's attempt ended at a checkpoint it waits on (a sleep, an event): pending, holding no worker. */
function suspended(task: TaskRunState, checkpoint: DurableCheckpointState): TaskRunState {
  const others = (task.checkpoints ?? []).filter((c) => c.index !== checkpoint.index);
  return { ...offWorker(task), status: RunStatuses.pending, checkpoints: [...others, checkpoint] };
}

/** A pending durable task and the checkpoint of `kind` at `index` it still waits on. */
function awaitedCheckpoint(
  state: RunState,
  taskRunId: string,
  attempt: number,
  index: number,
  kind: DurableCheckpointState["kind"],
): (TaskRunState & { checkpoint: DurableCheckpointState }) | undefined {
  const task = currentTask(state, taskRunId, attempt);
  const checkpoint = task?.checkpoints?.find((c) => c.index === index && c.kind === kind && !c.done);
  return task?.status === RunStatuses.pending && checkpoint ? { ...task, checkpoint } : undefined;
}

/** The awaited checkpoint is over (`done`): the next attempt is queued to replay past it. */
function resumed(
  found: TaskRunState & { checkpoint: DurableCheckpointState },
  done: DurableCheckpointState,
  attempt: number,
  at: string,
): TaskRunState {
  const { checkpoint, ...task } = found;
  const checkpoints = (task.checkpoints ?? []).map((c) => (c === checkpoint ? done : c));
  return { ...requeued(task, attempt, at), checkpoints };
}

/** A result counts only from the worker running the attempt (a reassigned attempt's old worker is stale). */
/**
 * A copy of `base` with `changes`. Object.assign rather than a spread: on Node 20 (V8 11.3) a spread that adds
 * properties its source lacks, or properties added to its result later, costs about 1 µs each; this does not.
 */
function copy<T extends object>(base: T, changes: Partial<T>): T {
  return Object.assign({}, base, changes);
}

/** A queued attempt starts on a worker (`TaskStarted`, or the start a result carries). */
function started(
  next: RunState,
  taskRunId: string,
  attempt: number,
  workerId: string,
  facts: Omit<TaskStarted["data"], "attempt" | "workerId">,
  at: string,
): RunState {
  const task = currentTask(next, taskRunId, attempt);
  if (!task || task.status !== RunStatuses.queued || task.retry) return next;
  // Fields set to undefined rather than removed (no rest copy: this is the hot path), JSON drops them alike.
  const running = copy(task, {
    waiting: undefined,
    rateLimited: undefined,
    status: RunStatuses.running,
    workerId,
    workerName: facts.workerName,
    startedAt: at,
  });
  if (facts.policy) running.policy = facts.policy;
  if (facts.timeoutAt) running.timeoutAt = facts.timeoutAt;
  if (facts.sticky && !next.sticky) next.sticky = { mode: facts.sticky, workerId };
  return withTask(next, running);
}

/** A result that carries its attempt's start applies the start first, as if `TaskStarted` preceded it. */
function withStart(next: RunState, event: TaskCompleted | TaskFailed | TaskRateLimited): RunState {
  const start = event.data.started;
  return start ? started(next, event.taskRunId, event.data.attempt, event.data.workerId, start, start.at) : next;
}

function fromRunner(task: TaskRunState, workerId: string): boolean {
  return task.workerId === undefined || task.workerId === workerId;
}

function currentTask(state: RunState, taskRunId: string, attempt: number): TaskRunState | undefined {
  const task = state.tasks.find((t) => t.taskRunId === taskRunId);
  return task && task.attempt === attempt ? task : undefined;
}

/**
 * Replaces one task and derives the rest from the tasks: in a workflow, children whose parents all completed are
 * queued, descendants of a task that failed or was cancelled are cancelled, and the `onFailure` / `onSuccess` handler
 * is queued (or skipped) once the other tasks are done; the run is final when every task is. `next` is the fresh copy
 * `evolve` made for this event, so it is filled in place.
 */
function withTask(
  next: RunState,
  task: TaskRunState,
  at = task.finishedAt ?? task.startedAt ?? next.createdAt,
): RunState {
  let tasks = next.tasks.length === 1 ? [task] : next.tasks.map((t) => (t.taskRunId === task.taskRunId ? task : t));
  if (tasks.length > 1) tasks = settleWorkflow(tasks, task, at);
  next.tasks = tasks;
  if (task.startedAt && !next.startedAt) next.startedAt = task.startedAt;
  if (!tasks.every((t) => isTerminal(t.status))) {
    if (tasks.some((t) => t.status === RunStatuses.running)) next.status = RunStatuses.running;
    return next;
  }
  const main = tasks.filter((t) => t.role === undefined);
  const handlerFailed = tasks.find((t) => t.role === "onSuccess" && t.status === RunStatuses.failed);
  const failed = main.find((t) => t.status === RunStatuses.failed) ?? handlerFailed;
  const cancelled = main.find((t) => t.status === RunStatuses.cancelled);
  next.finishedAt = latest(tasks) ?? task.finishedAt;
  if (failed) {
    next.status = RunStatuses.failed;
    next.error = failed.error;
  } else if (cancelled) {
    next.status = RunStatuses.cancelled;
    next.error = cancelled.error;
  } else {
    next.status = RunStatuses.completed;
    // A workflow's output is keyed by its tasks' refs, one task or many; a plain run's is its task's.
    next.output =
      tasks.length === 1 && tasks[0]?.ref === undefined
        ? tasks[0]?.output
        : Object.fromEntries(main.map((t) => [t.ref ?? t.taskName, t.output]));
  }
  return next;
}

/** The DAG rules after `changed` moved: queue ready children, cancel orphaned descendants, release the handlers. */
function settleWorkflow(tasks: TaskRunState[], changed: TaskRunState, at: string): TaskRunState[] {
  const refOf = (t: TaskRunState) => t.ref ?? t.taskName;
  const byRef = new Map(tasks.map((t) => [refOf(t), t]));
  let out = tasks;
  if (changed.status === RunStatuses.failed || changed.status === RunStatuses.cancelled) {
    // Everything downstream of it can never run.
    const doomed = new Set<string>([refOf(changed)]);
    for (let grew = true; grew; ) {
      grew = false;
      for (const t of out) {
        if (!doomed.has(refOf(t)) && t.parents?.some((p) => doomed.has(p))) {
          doomed.add(refOf(t));
          grew = true;
        }
      }
    }
    out = out.map((t) =>
      t.status === RunStatuses.pending && doomed.has(refOf(t)) && t.role === undefined
        ? {
            ...t,
            status: RunStatuses.cancelled,
            finishedAt: at,
            error: { name: "ParentFailed", message: `not run: ${refOf(changed)} ${changed.status.toLowerCase()}` },
          }
        : t,
    );
  }
  if (changed.status === RunStatuses.completed) {
    out = out.map((t) =>
      t.status === RunStatuses.pending &&
      t.role === undefined &&
      t.parents?.every((p) => byRef.get(p)?.status === RunStatuses.completed)
        ? { ...t, status: RunStatuses.queued, queuedAt: at }
        : t,
    );
  }
  const main = out.filter((t) => t.role === undefined);
  if (main.every((t) => isTerminal(t.status))) {
    const ok = main.every((t) => t.status === RunStatuses.completed);
    out = out.map((t) => {
      if (t.role === undefined || t.status !== RunStatuses.pending) return t;
      if ((t.role === "onFailure") === !ok) return { ...t, status: RunStatuses.queued, queuedAt: at };
      return {
        ...t,
        status: RunStatuses.cancelled,
        finishedAt: at,
        error: { name: "HandlerSkipped", message: ok ? "the run succeeded" : "the run failed" },
      };
    });
  }
  return out;
}

function latest(tasks: TaskRunState[]): string | undefined {
  let max: string | undefined;
  for (const t of tasks) if (t.finishedAt && (!max || t.finishedAt > max)) max = t.finishedAt;
  return max;
}
