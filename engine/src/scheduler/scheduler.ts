import {
  EventTypes,
  isTerminal,
  makeEvent,
  type RunState,
  RunStatuses,
  type TaskjetEventInput,
  type TaskRunState,
  type WorkerRegistration,
} from "@taskjet/schemas";
import type { Logger } from "pino";
import type { Dispatcher } from "../dispatcher/dispatcher.js";
import type { RunChange } from "../projector/projector.js";
import type { Retrier } from "../timers/retrier.js";
import type { Schedules } from "../timers/schedules.js";
import type { Timeouts } from "../timers/timeouts.js";
import { type Cancellation, type Placement, type QueuedTask, SchedulerCore, taskPauseKey, type Wait } from "./core.js";
import { type CompiledDefinition, FlowKeyError, resolveFlow } from "./flow.js";

export interface SchedulerOptions {
  log: Logger;
  dispatcher: Dispatcher;
  retrier: Retrier;
  timeouts: Timeouts;
  schedules: Schedules;
  /** Durable tasks waiting for events. */
  eventWaits: { onState(state: RunState): void };
  /** Appends with CAS on `expectedSeq`. */
  append: (event: TaskjetEventInput, expectedSeq: number) => Promise<number>;
  /** The projector's live run states. */
  states: ReadonlyMap<string, RunState>;
  /** Registered task definitions. */
  definition: (taskName: string) => CompiledDefinition | undefined;
  now?: () => number;
}

/** How often an engine decision is tried again on a CAS conflict before it is left to the next change. */
const MAX_DECISION_TRIES = 20;

/**
 * Placements per event-loop turn. A worker with 100,000 free slots (or a backlog re-placed after a restart) would
 * otherwise be placed and dispatched in one synchronous pass of seconds, while lease renewals and folding wait (the
 * scale bench's engine lost its lease so); a thousand per turn changes nothing at ordinary rates.
 */
const MAX_PLACEMENTS_PER_TURN = 1000;

/**
 * The shell around `SchedulerCore`: turns run changes, worker changes and definitions into core calls, places work in
 * batches (all inputs of one I/O turn first, then one placement pass), and appends what flow control decides
 * (strategy cancellations, why an attempt waits).
 */
export class Scheduler {
  readonly core = new SchedulerCore();
  private kicked = false;
  private stopped = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private wakeTimer: { handle: NodeJS.Timeout; at: number } | undefined;
  /** Registrations as the workers sent them: re-applied when a definition arrives. */
  private readonly registrations = new Map<string, WorkerRegistration>();
  private readonly now: () => number;

  constructor(private readonly o: SchedulerOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Rebuilds memory from the projected states of unfinished runs. */
  recover(): void {
    const now = this.now();
    for (const state of this.o.states.values()) {
      for (const task of state.tasks) {
        if (task.status === RunStatuses.queued && !task.retry) {
          this.reapplyPause(state, task, now);
          this.enqueue(state, task, state.lastSeq);
        } else if (task.status === RunStatuses.running && task.workerId && !task.slotReleased) {
          // Its worker vanished while no engine watched: the attempt goes to another worker.
          if (this.core.hasWorker(task.workerId)) this.hold(state, task, state.lastSeq);
          else
            this.reassign(
              state.runId,
              task.taskRunId,
              task.attempt,
              task.workerId,
              "worker gone before the engine started",
            );
        }
      }
      this.o.retrier.onState(state);
      this.watch(state);
    }
    this.kick();
  }

  onChange({ event, seq, state }: RunChange): void {
    this.watch(state);
    switch (event.type) {
      case EventTypes.RunCreated:
      case EventTypes.RunDue:
      case EventTypes.RunReplayed:
        for (const task of state.tasks) if (task.status === RunStatuses.queued) this.enqueue(state, task, seq);
        break;
      case EventTypes.TaskStarted: {
        const task = state.tasks.find((t) => t.taskRunId === event.taskRunId);
        if (task?.status === RunStatuses.running && task.attempt === event.data.attempt) {
          this.hold(state, task, seq);
          this.core.started(task, this.now());
        }
        break;
      }
      case EventTypes.DurableSleeping:
      case EventTypes.DurableWaitingForEvent:
        // The attempt ended at its sleep or wait: its slot is free.
        this.core.finish({ taskRunId: event.taskRunId, attempt: event.data.attempt });
        break;
      case EventTypes.DurableWoke:
      case EventTypes.DurableEventReceived: {
        const task = state.tasks.find((t) => t.taskRunId === event.taskRunId);
        if (task?.status === RunStatuses.queued && task.attempt === event.data.attempt) this.enqueue(state, task, seq);
        break;
      }
      case EventTypes.TaskCompleted:
      case EventTypes.TaskFailed:
      case EventTypes.TaskTimedOut:
      case EventTypes.TaskCancelled:
      case EventTypes.TaskSlotReleased: {
        // The attempt is over (final or not), or gave its slot back: the slot is free.
        const task = state.tasks.find((t) => t.taskRunId === event.taskRunId);
        this.startedWithResult(event);
        if (task) this.core.finish({ taskRunId: task.taskRunId, attempt: event.data.attempt });
        if (task?.retry) this.o.retrier.onState(state);
        // A workflow: tasks this one unblocked (children, handlers) are queued now.
        if (state.tasks.length > 1) this.enqueueReady(state, seq);
        break;
      }
      case EventTypes.TaskRetryScheduled:
        this.o.retrier.onState(state);
        return;
      case EventTypes.RunCancelled:
        this.cancelChildren(state, event.data.reason);
        for (const task of state.tasks) {
          if (task.status !== RunStatuses.cancelled) continue;
          const placedOn = this.core.workerOf(task);
          this.core.finish(task);
          // It had started, or its worker may be running it before recording the start: that worker aborts it (and
          // abandons it after a grace period if it ignores the signal).
          const workerId = task.startedAt ? task.workerId : placedOn;
          if (workerId) {
            this.o.dispatcher.control(workerId, {
              v: 1,
              type: "cancel",
              runId: state.runId,
              taskRunId: task.taskRunId,
              attempt: task.attempt,
              reason: event.data.reason,
            });
          }
        }
        break;
      case EventTypes.TaskRateLimited: {
        // The attempt ended on the worker: its slot is free, its keys pause, and the next attempt queues.
        this.startedWithResult(event);
        this.core.finish({ taskRunId: event.taskRunId, attempt: event.data.attempt });
        const task = state.tasks.find((t) => t.taskRunId === event.taskRunId);
        if (task?.status === RunStatuses.queued && task.attempt === event.data.attempt + 1) {
          this.reapplyPause(state, task, this.now());
          this.enqueue(state, task, seq);
        }
        break;
      }
      case EventTypes.TaskReassigned:
      case EventTypes.TaskQueued: {
        const task = state.tasks.find((t) => t.taskRunId === event.taskRunId);
        if (task?.status === RunStatuses.queued && task.attempt === event.data.attempt) this.enqueue(state, task, seq);
        break;
      }
      default:
        return;
    }
    this.kick();
  }

  /** A result that carries its attempt's start: rate-limit units count from that start, as for `TaskStarted`. */
  private startedWithResult(event: { taskRunId: string; data: { attempt: number; started?: { at: string } } }): void {
    if (event.data.started)
      this.core.started({ taskRunId: event.taskRunId, attempt: event.data.attempt }, Date.parse(event.data.started.at));
  }

  /** A live worker's registration as last heartbeated (its name, for metrics). */
  registration(workerId: string): WorkerRegistration | undefined {
    return this.registrations.get(workerId);
  }

  workerUp(worker: WorkerRegistration): void {
    this.registrations.set(worker.workerId, worker);
    this.applyWorker(worker);
    this.kick();
  }

  /**
   * A definition arrived or changed: workers may now take its task, and its queued attempts are queued again under
   * the new flow options.
   */
  definitionChanged(def: CompiledDefinition): void {
    for (const worker of this.registrations.values()) if (worker.tasks.includes(def.name)) this.applyWorker(worker);
    for (const queued of this.core.takeQueued(def.name)) {
      const state = this.o.states.get(queued.runId);
      const task = state?.tasks.find((t) => t.taskRunId === queued.taskRunId);
      if (state && task?.status === RunStatuses.queued && task.attempt === queued.attempt) {
        this.enqueue(state, task, queued.order);
      }
    }
    this.kick();
  }

  /** A static rate limit was defined or changed. */
  rateLimitChanged(key: string, limit: number, durationMs: number): void {
    this.core.setRateLimit(key, limit, durationMs);
    this.kick();
  }

  /**
   * A departed worker: attempts it never started go back to their queues; attempts it was running are reassigned
   * (`TaskReassigned`: the same attempt, not a retry) to run elsewhere.
   */
  workerDown(workerId: string, reason: string): void {
    this.registrations.delete(workerId);
    for (const held of this.core.removeWorker(workerId)) {
      const state = this.o.states.get(held.runId);
      const current = state?.tasks.find((t) => t.taskRunId === held.taskRunId);
      if (state && current?.status === RunStatuses.queued && current.attempt === held.attempt && !current.retry) {
        this.enqueue(state, current, held.order);
      }
    }
    for (const state of this.o.states.values()) {
      for (const t of state.tasks) {
        if (t.status === RunStatuses.running && t.workerId === workerId && !t.slotReleased) {
          this.reassign(state.runId, t.taskRunId, t.attempt, workerId, `worker ${reason}`);
        }
      }
    }
    this.o.dispatcher.purge(workerId).catch((err) => this.o.log.warn({ err, workerId }, "could not purge assignments"));
    this.kick();
  }

  /** An assignment that could not be published: back to the queue, and try again shortly. */
  undelivered(placement: Placement): void {
    this.core.unplace(placement.task);
    if (this.retryTimer || this.stopped) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.kick();
    }, 250);
  }

  stop(): void {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.wakeTimer) clearTimeout(this.wakeTimer.handle);
  }

  /** Arms, moves or drops what a run's state asks of the clock and of events: timeouts, schedules, sleeps, waits. */
  private watch(state: RunState): void {
    this.o.timeouts.onState(state);
    this.o.schedules.onState(state);
    this.o.eventWaits.onState(state);
  }

  /** A worker takes only tasks the engine has a definition for, so flow control always applies. */
  private applyWorker(worker: WorkerRegistration): void {
    this.core.upsertWorker({
      workerId: worker.workerId,
      tasks: worker.tasks.filter((t) => this.o.definition(t) !== undefined),
      // A draining worker keeps what it runs and gets nothing new.
      slots: worker.draining ? 0 : worker.slots,
      durableSlots: worker.draining ? 0 : worker.durableSlots,
      labels: worker.labels,
    });
  }

  private queued(state: RunState, task: TaskRunState, order: number): QueuedTask {
    return {
      runId: state.runId,
      taskRunId: task.taskRunId,
      taskName: task.taskName,
      attempt: task.attempt,
      priority: state.priority,
      order,
      flow: resolveFlow(this.o.definition(task.taskName), state, task.taskName),
    };
  }

  private enqueue(state: RunState, task: TaskRunState, order: number): void {
    let queued: QueuedTask;
    try {
      queued = this.queued(state, task, order);
    } catch (err) {
      if (!(err instanceof FlowKeyError)) throw err;
      this.failUnschedulable(state, task, err);
      return;
    }
    for (const c of this.core.enqueue(queued)) this.cancelByStrategy(c);
  }

  private enqueueReady(state: RunState, order: number): void {
    for (const t of state.tasks) {
      if (t.status === RunStatuses.queued && !t.retry && !this.core.knows(t)) this.enqueue(state, t, order);
    }
  }

  private hold(state: RunState, task: TaskRunState, order: number): void {
    const workerId = task.workerId as string;
    if (this.core.knows(task)) {
      this.core.hold({ ...task, runId: state.runId, order }, workerId);
      return;
    }
    try {
      this.core.hold(this.queued(state, task, order), workerId);
    } catch (err) {
      // Running already: it holds its slot without flow groups.
      if (!(err instanceof FlowKeyError)) throw err;
      this.core.hold(
        { runId: state.runId, taskRunId: task.taskRunId, taskName: task.taskName, attempt: task.attempt, order },
        workerId,
      );
    }
  }

  /** Pauses the keys a rate-limited attempt asked for, while the pause lasts. */
  private reapplyPause(state: RunState, task: TaskRunState, now: number): void {
    const limited = task.rateLimited;
    if (!limited) return;
    const until = Date.parse(limited.until);
    if (!(until > now)) return;
    let keys = limited.keys;
    if (!keys) {
      const own = this.o.definition(task.taskName)?.flow.rateLimits ?? [];
      try {
        keys = own.length > 0 ? this.queued(state, task, 0).flow?.rates.map((r) => r.key) : undefined;
      } catch {
        keys = undefined;
      }
    }
    for (const key of keys ?? [taskPauseKey(task.taskName)]) this.core.pauseKey(key, until);
  }

  /** A key expression failed on this run: the attempt can never be placed, so it fails now, saying why. */
  private failUnschedulable(state: RunState, task: TaskRunState, err: FlowKeyError): void {
    this.o.log.warn({ runId: state.runId, taskRunId: task.taskRunId, err }, "flow key could not be evaluated");
    this.decide(state.runId, (s) => {
      const t = s.tasks.find((x) => x.taskRunId === task.taskRunId);
      if (t?.status !== RunStatuses.queued || t.attempt !== task.attempt) return undefined;
      return makeEvent(EventTypes.TaskFailed, {
        runId: s.runId,
        taskRunId: t.taskRunId,
        data: {
          attempt: t.attempt,
          workerId: "engine",
          error: { name: err.name, message: err.message },
          nonRetryable: true,
        },
      });
    });
  }

  /** A concurrency strategy cancels a run: `RunCancelled` with the strategy as the reason. */
  private cancelByStrategy({ task, reason }: Cancellation): void {
    this.o.log.info({ runId: task.runId, reason }, "cancelled by a concurrency strategy");
    // A run that finished meanwhile has nothing to cancel (its final event already freed it in the core).
    this.decide(task.runId, (s) =>
      isTerminal(s.status)
        ? undefined
        : makeEvent(EventTypes.RunCancelled, { runId: s.runId, data: { reason: reason.slice(0, 200) } }),
    );
  }

  /** Records why attempts wait (history: TaskQueued → why it waits → TaskStarted). */
  private recordWaits(waits: Wait[]): void {
    for (const { task, reason, detail } of waits) {
      this.decide(
        task.runId,
        (s) => {
          const t = s.tasks.find((x) => x.taskRunId === task.taskRunId);
          if (t?.status !== RunStatuses.queued || t.attempt !== task.attempt || t.retry || t.waiting) return undefined;
          return makeEvent(EventTypes.TaskWaiting, {
            runId: s.runId,
            taskRunId: t.taskRunId,
            data: { attempt: t.attempt, reason, detail: detail.slice(0, 500) },
          });
        },
        3,
      );
    }
  }

  /** A cancelled run's child runs are cancelled too (and theirs, as each cancellation is folded). */
  private cancelChildren(state: RunState, reason: string): void {
    for (const child of state.children ?? []) {
      // Its attempts not placed yet are never placed now: a worker runs an attempt before it records the start, so
      // one placed before the child's own cancellation is folded would run (the cancellation removes placed ones).
      for (const task of this.o.states.get(child.runId)?.tasks ?? []) {
        if (task.status === RunStatuses.queued && this.core.knows(task) && this.core.workerOf(task) === undefined) {
          this.core.finish(task);
        }
      }
      this.decide(child.runId, (s) => {
        if (isTerminal(s.status)) return undefined;
        return makeEvent(EventTypes.RunCancelled, {
          runId: s.runId,
          data: { reason: `parent run ${state.runId} cancelled: ${reason}`.slice(0, 200) },
        });
      });
    }
  }

  /** Appends `TaskReassigned` while the attempt is still running on the lost worker. */
  private reassign(runId: string, taskRunId: string, attempt: number, fromWorkerId: string, reason: string): void {
    this.decide(runId, (state) => {
      const task = state.tasks.find((t) => t.taskRunId === taskRunId);
      if (task?.status !== RunStatuses.running || task.attempt !== attempt || task.workerId !== fromWorkerId) {
        return undefined;
      }
      this.o.log.info({ runId, taskRunId, attempt, fromWorkerId, reason }, "reassigning a lost worker's attempt");
      return makeEvent(EventTypes.TaskReassigned, { runId, taskRunId, data: { attempt, fromWorkerId, reason } });
    });
  }

  /**
   * Appends the event `build` makes from the run's current state, with CAS; on a conflict, decides again on the folded
   * tail shortly. `build` returning nothing means the decision no longer applies.
   */
  private decide(
    runId: string,
    build: (state: RunState) => TaskjetEventInput | undefined,
    maxTries = MAX_DECISION_TRIES,
    tries = 0,
  ): void {
    const state = this.o.states.get(runId);
    const event = state && build(state);
    if (!state || !event) return;
    this.o.append(event, state.lastSeq).catch((err) => {
      if (this.stopped || tries + 1 >= maxTries)
        return this.o.log.warn({ err, runId, type: event.type }, "decision not recorded");
      setTimeout(() => this.decide(runId, build, maxTries, tries + 1), 100).unref();
    });
  }

  private kick(): void {
    if (this.kicked || this.stopped) return;
    this.kicked = true;
    setImmediate(() => {
      this.kicked = false;
      if (this.stopped) return;
      const placements = this.core.place(this.now(), MAX_PLACEMENTS_PER_TURN);
      if (placements.length > 0) this.o.dispatcher.send(placements, (runId) => this.o.states.get(runId));
      if (placements.length === MAX_PLACEMENTS_PER_TURN) this.kick(); // the rest on the next turn
      const waits = this.core.drainWaits();
      if (waits.length > 0) this.recordWaits(waits);
      this.armWake();
    });
  }

  /** One host timer for the earliest parked lane (rate limit windows, pauses). */
  private armWake(): void {
    const at = this.core.nextWakeAt();
    if (at === undefined || (this.wakeTimer && this.wakeTimer.at <= at)) return;
    if (this.wakeTimer) clearTimeout(this.wakeTimer.handle);
    const handle = setTimeout(
      () => {
        this.wakeTimer = undefined;
        this.kick();
      },
      Math.max(0, at - this.now()),
    );
    handle.unref();
    this.wakeTimer = { handle, at };
  }
}
