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
import type { RunChange, RunStates } from "../projector/projector.js";
import type { Retrier } from "../timers/retrier.js";
import type { Schedules } from "../timers/schedules.js";
import type { Timeouts } from "../timers/timeouts.js";
import {
  attemptKey,
  type Cancellation,
  type Placement,
  type QueuedTask,
  SchedulerCore,
  taskPauseKey,
  type Wait,
} from "./core.js";
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
  /** The projector's run states: a queued run may be cold (read back with `load`). */
  states: RunStates;
  /** Running attempts name a worker not registered: it is declared gone (`workerDown`) unless it heartbeats. */
  awaitWorker: (workerId: string) => void;
  /** Registered task definitions. */
  definition: (taskName: string) => CompiledDefinition | undefined;
  /** How long an attempt may wait for a worker when its run does not say (then `timeouts` cancels it). */
  scheduleTimeoutMs: number;
  /** How often placed attempts not started are looked at: one left so for a whole period has its assignment resent. */
  resendAfterMs: number;
  now?: () => number;
}

/** Node fires a longer timeout at once (it takes the delay as 32 bits): the wake timer wakes early and re-arms. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/** How often an engine decision is tried again on a CAS conflict before it is left to the next change. */
const MAX_DECISION_TRIES = 20;

/**
 * Placements per event-loop turn. A worker with 100,000 free slots (or a backlog re-placed after a restart) would
 * otherwise be placed and dispatched in one synchronous pass of seconds, while lease renewals and folding wait (the
 * scale bench's engine lost its lease so); a thousand per turn changes nothing at ordinary rates.
 */
const MAX_PLACEMENTS_PER_TURN = 1000;

/**
 * Cold runs read at once when a definition change queues a task's attempts again: a million cold runs must neither
 * come into memory together nor be queued out of order (an attempt queued before the tail walks back to its place).
 */
const REQUEUE_CHUNK = 1000;

/** Per task, what the queues hold of cold runs (not in memory), for queue summaries and metrics. */
export interface ColdQueue {
  /** Attempts of cold runs waiting in the queues. */
  queued: number;
  /** When the task's oldest queued attempt was queued, if its run is cold. */
  oldestQueuedAt?: string;
}

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
  private readonly resendTimer: NodeJS.Timeout;
  /** Placed attempts not started at the last `resendUnstarted`, as `workerId attemptKey`. */
  private unstarted = new Set<string>();
  private recovered = false;
  /** Runs a concurrency strategy is cancelling, until that is recorded (`cancelByStrategy`). */
  private readonly cancelling = new Set<string>();
  /** Runs cancelled while the log was read up to where it is (`ended`), for `recover`. */
  private readonly cancelledAway: RunState[] = [];

  constructor(private readonly o: SchedulerOptions) {
    this.now = o.now ?? Date.now;
    this.resendTimer = setInterval(() => this.resendUnstarted(), o.resendAfterMs);
    this.resendTimer.unref();
  }

  /** Rebuilds memory from the projected states of unfinished runs. */
  recover(): void {
    const now = this.now();
    // Every unfinished run is in memory now: the projector lets the cold ones go after this. Queued attempts go back in
    // queue order, the sequence of the event that queued each (`queuedSeq`), as live: not the run's last sequence,
    // which a later event (`TaskWaiting`) moves past runs queued after it. Sorted first: the store gives them in the
    // order they were last written, and an attempt queued before a queue's tail walks back to its place.
    const states = [...this.o.states.values()];
    // Running attempts first: they are members of their concurrency groups when the queued ones are enqueued, so a
    // run triggered while no engine led (a failover) meets the strategy it would have met live.
    for (const state of states) {
      for (const task of state.tasks) {
        if (task.status !== RunStatuses.running || !task.workerId) continue;
        if (!this.core.hasWorker(task.workerId)) {
          // Its registration lapsed while no engine watched: the worker may have died then, or NATS was down for
          // longer than the TTL and kept it from heartbeating. It holds its attempts, placed nothing, until it
          // heartbeats or the registry declares it gone (`workerDown` then reassigns them).
          this.core.upsertWorker({ workerId: task.workerId, tasks: [], slots: 0 });
          this.o.awaitWorker(task.workerId);
        }
        this.hold(state, task, state.lastSeq);
        // It runs on without its slot, keeping its concurrency places.
        if (task.slotReleased) this.core.slotFreed(task, task.workerId);
      }
    }
    const queued: { state: RunState; task: TaskRunState; order: number }[] = [];
    for (const state of states) {
      for (const task of state.tasks) {
        if (task.status === RunStatuses.queued && !task.retry) {
          queued.push({ state, task, order: task.queuedSeq ?? state.lastSeq });
        } else if (task.retry) this.awaitRetry(state, task, state.lastSeq);
      }
    }
    queued.sort((a, b) => a.order - b.order);
    for (const { state, task, order } of queued) {
      this.reapplyPause(state, task, now);
      this.enqueue(state, task, order);
    }
    for (const state of states) {
      this.o.retrier.onState(state);
      this.watch(state);
    }
    this.recovered = true;
    for (const state of this.cancelledAway.splice(0)) this.cancelled(state, state.error?.message ?? "cancelled");
    this.kick();
  }

  onChange({ event, seq, state }: RunChange): void {
    this.watch(state);
    // However the run ended (a sibling's failure ends a workflow too), its retries will not come.
    if (this.core.awaitsRetries() && isTerminal(state.status)) {
      for (const t of state.tasks) this.core.dropRetry(t.taskRunId);
    }
    // A retry waits on its own appends, and any event of the run (a sibling task's, in a workflow) can make one of them
    // conflict: every fold of a run with a retry pending decides again.
    if (state.tasks.some((t) => t.retry)) this.o.retrier.onState(state);
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
      case EventTypes.TaskSlotReleased:
        // The attempt runs on without its slot: the slot takes new work, the attempt keeps its concurrency places.
        if (this.core.slotFreed({ taskRunId: event.taskRunId, attempt: event.data.attempt }, event.data.workerId))
          this.kick();
        break;
      case EventTypes.TaskCompleted:
      case EventTypes.TaskFailed:
      case EventTypes.TaskTimedOut:
      case EventTypes.TaskCancelled: {
        // The attempt is over (final or not): its slot and its concurrency places are free.
        const task = state.tasks.find((t) => t.taskRunId === event.taskRunId);
        const startedMs = this.startedWithResult(event);
        if (task && event.type !== EventTypes.TaskCancelled) this.ranFor(task, event, startedMs);
        if (task) this.core.finish({ taskRunId: task.taskRunId, attempt: event.data.attempt });
        // Failed with a retry to come: the run keeps its places in groups that cancel.
        if (task?.retry && task.attempt === event.data.attempt) this.awaitRetry(state, task, seq);
        // A workflow: tasks this one unblocked (children, handlers) are queued now.
        if (state.tasks.length > 1) this.enqueueReady(state, seq);
        break;
      }
      case EventTypes.TaskRetryScheduled:
        return;
      case EventTypes.RunCancelled:
        this.cancelled(state, event.data.reason);
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
      case EventTypes.ReportIgnored: {
        // Its worker took the attempt for stale (a stream leader behind it, or a reassignment it missed) though the
        // run still waits for it there: with its result ignored it would wait for good, so it runs again. The worker
        // keeps no memory of an attempt whose report it saw ignored, so it may be the one to run it.
        const task = state.tasks.find((t) => t.taskRunId === event.taskRunId);
        const { attempt, workerId } = event.data;
        // A refused start is followed by the copy's refused result: that one says the copy is over.
        if (task?.attempt !== attempt || event.data.report === "started") break;
        if (task.status === RunStatuses.queued) this.core.returned(task, workerId, this.now());
        else if (task.status === RunStatuses.running && task.workerId === workerId) {
          // Its worker lives on (unlike a departed one's): the slot it held there is free now.
          this.core.finish(task);
          this.reassign(state.runId, task.taskRunId, attempt, workerId, "its worker took it for stale");
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

  /**
   * A result that carries its attempt's start: rate-limit units count from that start, as for `TaskStarted`.
   * @returns that start (epoch ms), if the result carries it
   */
  private startedWithResult(event: {
    taskRunId: string;
    data: { attempt: number; started?: { at: string } };
  }): number | undefined {
    if (!event.data.started) return undefined;
    const at = Date.parse(event.data.started.at);
    this.core.started({ taskRunId: event.taskRunId, attempt: event.data.attempt }, at);
    return at;
  }

  /**
   * Tells the core how long an attempt ran to its outcome, when its start is known: carried by the result
   * (`startedMs`), else recorded on the task (unless the task has moved on to a later attempt).
   */
  private ranFor(task: TaskRunState, event: { at: string; data: { attempt: number } }, startedMs?: number): void {
    const start =
      startedMs ?? (task.attempt === event.data.attempt && task.startedAt ? Date.parse(task.startedAt) : undefined);
    if (start !== undefined) this.core.ran(task.taskName, Date.parse(event.at) - start);
  }

  /** Whether an attempt of the run is placed on a worker (its assignment may be sent again from the run's state). */
  placed(state: RunState): boolean {
    for (const task of state.tasks) if (this.core.workerOf(task) !== undefined) return true;
    return false;
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
    this.requeue(this.core.takeQueued(def.name), 0);
    this.kick();
  }

  /**
   * Queues taken attempts again from `from` on, in their order: while their runs are in memory at once, then a chunk
   * at a time once a cold one needs reading (read, not kept: nothing happens to those runs yet). An attempt whose run
   * moved on meanwhile is left out; one taken twice (a second change) is queued once.
   */
  private requeue(taken: QueuedTask[], from: number): void {
    let i = from;
    for (; i < taken.length; i++) {
      const queued = taken[i] as QueuedTask;
      const state = this.o.states.get(queued.runId);
      if (!state) break;
      this.requeueOne(state, queued);
    }
    if (i >= taken.length || this.stopped) return;
    const chunk = taken.slice(i, i + REQUEUE_CHUNK);
    this.o.states
      .loadMany(
        chunk.map((q) => q.runId),
        false,
      )
      .then(
        (states) => {
          if (this.stopped) return;
          for (const [j, queued] of chunk.entries()) {
            const state = this.o.states.get(queued.runId) ?? states[j];
            if (state) this.requeueOne(state, queued);
          }
          this.kick();
          this.requeue(taken, i + chunk.length);
        },
        (err: unknown) => {
          // Out of the core until read: try again, or those attempts would never be placed.
          this.o.log.warn({ err, runs: chunk.length }, "could not read cold runs to queue again; retrying");
          setTimeout(() => this.requeue(taken, i), 500).unref();
        },
      );
  }

  private requeueOne(state: RunState, queued: QueuedTask): void {
    const task = state.tasks.find((t) => t.taskRunId === queued.taskRunId);
    if (task?.status === RunStatuses.queued && task.attempt === queued.attempt) this.enqueue(state, task, queued.order);
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
      // Cold only while its assignment waits for the run to be read (the dispatch then finds it unplaced).
      this.withState(held.runId, (state) => {
        const current = state.tasks.find((t) => t.taskRunId === held.taskRunId);
        if (current?.status === RunStatuses.queued && current.attempt === held.attempt && !current.retry) {
          this.enqueue(state, current, held.order);
          this.kick();
        }
      });
    }
    for (const state of this.o.states.values()) {
      for (const t of state.tasks) {
        if (t.status === RunStatuses.running && t.workerId === workerId && (!t.slotReleased || t.waitsForChild)) {
          this.reassign(state.runId, t.taskRunId, t.attempt, workerId, `worker ${reason}`);
        }
      }
    }
    this.kick();
  }

  /**
   * A worker freed these attempts' slots (`SlotsFreed`): placements need not wait for their outcomes' fold. It gave
   * back `returned`, placed on it and never started: those not started elsewhere meanwhile are queued again.
   */
  slotsFreed(
    workerId: string,
    attempts: readonly { taskRunId: string; attempt: number }[],
    returned: readonly { runId: string; taskRunId: string; attempt: number }[] = [],
  ): void {
    let freed = false;
    for (const a of attempts) freed = this.core.slotFreed(a, workerId) || freed;
    for (const r of returned) {
      if (this.notStarted(r)) freed = this.core.returned(r, workerId, this.now()) || freed;
    }
    if (returned.length > 0) this.o.log.debug({ workerId, returned: returned.length }, "worker gave back attempts");
    if (freed) this.kick();
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

  /**
   * Sends again the assignments of attempts found placed and not started at two sweeps in a row (one to two periods
   * after they were placed): lost on the way (a dropped connection), or waiting behind a blocked worker, which ignores
   * a second copy. It remembers only what the workers hold now, not every assignment of the period: at thousands of
   * tasks a second those outlived the young generation, and every one of them cost the engine a copy and a promotion.
   */
  private resendUnstarted(): void {
    if (this.stopped) return;
    const seen = new Set<string>();
    const again: Placement[] = [];
    for (const placement of this.core.placements()) {
      const { task, workerId } = placement;
      if (!this.notStarted(task)) continue;
      const key = `${workerId} ${attemptKey(task)}`;
      seen.add(key);
      if (this.unstarted.has(key)) again.push(placement);
    }
    this.unstarted = seen;
    if (again.length === 0) return;
    this.o.log.info({ assignments: again.length }, "assignments not started in time: sending them again");
    this.o.dispatcher.send(again, (runId) => this.o.states.get(runId));
  }

  /** Whether the run's state still has this attempt queued: placed, maybe, but not started. */
  private notStarted(a: { runId: string; taskRunId: string; attempt: number }): boolean {
    const current = this.o.states.get(a.runId)?.tasks.find((t) => t.taskRunId === a.taskRunId);
    return current?.status === RunStatuses.queued && current.attempt === a.attempt;
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.resendTimer);
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
    if (this.cancelling.size > 0 && this.cancelling.has(state.runId)) return;
    let queued: QueuedTask;
    try {
      queued = this.queued(state, task, order);
    } catch (err) {
      if (!(err instanceof FlowKeyError)) throw err;
      this.failUnschedulable(state, task, err);
      return;
    }
    // The schedule deadline lives beside the queue record: one per queued attempt, cold runs' too.
    const deadline =
      task.queuedAt && !task.retry
        ? Date.parse(task.queuedAt) + (task.scheduleTimeoutMs ?? this.o.scheduleTimeoutMs)
        : undefined;
    for (const c of this.core.enqueue(queued, deadline)) this.cancelByStrategy(c);
  }

  /** A failed attempt whose task retries keeps its run's places meanwhile (`SchedulerCore.awaitRetry`). */
  private awaitRetry(state: RunState, task: TaskRunState, order: number): void {
    if (this.cancelling.size > 0 && this.cancelling.has(state.runId)) return;
    try {
      this.core.awaitRetry(this.queued(state, task, order));
    } catch (err) {
      // No key for its input: the retry fails as unschedulable when it queues.
      if (!(err instanceof FlowKeyError)) throw err;
    }
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
    // Until its cancellation is recorded, the run's attempts queue nowhere: a retry coming due meanwhile would come in
    // as the newest run of its key and turn the strategy on the run that cancelled it.
    this.cancelling.add(task.runId);
    this.decide(
      task.runId,
      // A run that finished meanwhile has nothing to cancel (its final event already freed it in the core).
      (s) =>
        isTerminal(s.status)
          ? undefined
          : makeEvent(EventTypes.RunCancelled, { runId: s.runId, data: { reason: reason.slice(0, 200) } }),
      MAX_DECISION_TRIES,
      0,
      (recorded) => {
        this.cancelling.delete(task.runId);
        // Not cancelled after all (given up): what it has queued goes back in its queues.
        if (!recorded) this.withState(task.runId, (s) => isTerminal(s.status) || this.enqueueReady(s, s.lastSeq));
      },
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

  /**
   * A run was cancelled: its child runs are cancelled too, and the workers running or about to run its tasks abort
   * them (abandoning them after a grace period if they ignore the signal).
   */
  private cancelled(state: RunState, reason: string): void {
    this.cancelChildren(state, reason);
    for (const task of state.tasks) {
      if (task.status !== RunStatuses.cancelled) continue;
      const placedOn = this.core.workerOf(task);
      this.core.finish(task);
      // It had started, or its worker may be running it before recording the start.
      const workerId = task.startedAt ? task.workerId : placedOn;
      if (workerId) {
        this.o.dispatcher.control(workerId, {
          v: 1,
          type: "cancel",
          runId: state.runId,
          taskRunId: task.taskRunId,
          attempt: task.attempt,
          reason,
        });
      }
    }
  }

  /**
   * A run ended, as the projector folds it, also while it catches up before `recover`. One cancelled then (while no
   * engine read the log, or just before a takeover) is dealt with in `recover`: its workers were never told, and its
   * children never cancelled. Telling them again what a previous leader told them is harmless.
   */
  ended(state: RunState): void {
    if (this.recovered || state.status !== RunStatuses.cancelled) return;
    if (state.children?.length || state.tasks.some((t) => t.startedAt && t.workerId)) this.cancelledAway.push(state);
  }

  /** A cancelled run's child runs are cancelled too (and theirs, as each cancellation is folded). */
  private cancelChildren(state: RunState, reason: string): void {
    for (const child of state.children ?? []) {
      // Its attempts not placed yet are never placed now: a worker runs an attempt before it records the start, so
      // one placed before the child's own cancellation is folded would run (the cancellation removes placed ones).
      this.withState(child.runId, (childState) => {
        for (const task of childState.tasks) {
          if (task.status === RunStatuses.queued && this.core.knows(task) && this.core.workerOf(task) === undefined) {
            this.core.finish(task);
          }
        }
      });
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
  /** `settled`: told once whether the decision was recorded (false: no longer needed, or given up). */
  private decide(
    runId: string,
    build: (state: RunState) => TaskjetEventInput | undefined,
    maxTries = MAX_DECISION_TRIES,
    tries = 0,
    settled?: (recorded: boolean) => void,
  ): void {
    this.withState(runId, (state) => {
      const event = build(state);
      if (!event) return settled?.(false);
      this.o.append(event, state.lastSeq).then(
        () => settled?.(true),
        (err: unknown) => {
          if (this.stopped || tries + 1 >= maxTries) {
            this.o.log.warn({ err, runId, type: event.type }, "decision not recorded");
            return settled?.(false);
          }
          setTimeout(() => this.decide(runId, build, maxTries, tries + 1, settled), 100).unref();
        },
      );
    });
  }

  /**
   * Calls `fn` with the run's latest state: at once when it is in memory, else once read from the store (kept in
   * memory: something is about to happen to the run). A run that was never created is skipped; a failed read is tried
   * again shortly, a few times.
   */
  private withState(runId: string, fn: (state: RunState) => void, tries = 0): void {
    const hot = this.o.states.get(runId);
    if (hot) {
      fn(hot);
      return;
    }
    this.o.states.load(runId).then(
      (state) => {
        if (state && !this.stopped) fn(state);
      },
      (err: unknown) => {
        if (this.stopped || tries + 1 >= MAX_DECISION_TRIES)
          return this.o.log.warn({ err, runId }, "could not read a cold run's state");
        setTimeout(() => this.withState(runId, fn, tries + 1), 250).unref();
      },
    );
  }

  /**
   * Publishes the assignments of a placement pass. A cold run's state (its input, its expected sequence) is read
   * first, all of the pass's at once, and kept: its start follows. A placement that was undone while reading is
   * dropped; one whose attempt turns out to be no longer queued (cancelled, timed out) is finished, freeing its slot.
   */
  private dispatch(placements: Placement[]): void {
    let cold: Placement[] | undefined;
    let hot: Placement[] | undefined;
    for (const [i, p] of placements.entries()) {
      if (this.o.states.get(p.task.runId)) hot?.push(p);
      else if (!cold) {
        cold = [p];
        hot = placements.slice(0, i);
      } else cold.push(p);
    }
    const sent = hot ?? placements;
    if (sent.length > 0) this.o.dispatcher.send(sent, (runId) => this.o.states.get(runId));
    if (!cold) return;
    const reading = cold;
    this.o.states.loadMany(reading.map((p) => p.task.runId)).then(
      (states) => {
        if (this.stopped) return;
        const ready: Placement[] = [];
        const loaded = new Map<string, RunState>();
        let finished = false;
        for (const [i, p] of reading.entries()) {
          if (this.core.workerOf(p.task) !== p.workerId) continue;
          const state = states[i];
          const current = state?.tasks.find((t) => t.taskRunId === p.task.taskRunId);
          if (!state || current?.status !== RunStatuses.queued || current.attempt !== p.task.attempt) {
            this.core.finish(p.task);
            finished = true;
            continue;
          }
          ready.push(p);
          loaded.set(state.runId, state);
        }
        if (ready.length > 0) this.o.dispatcher.send(ready, (runId) => this.o.states.get(runId) ?? loaded.get(runId));
        if (finished) this.kick();
      },
      (err: unknown) => {
        this.o.log.warn({ err, placements: reading.length }, "could not read cold runs to assign; placing again");
        for (const p of reading) this.undelivered(p);
      },
    );
  }

  /**
   * Per task with attempts of cold runs in its queues: how many, and when the oldest queued attempt was queued if its
   * run is cold (read from the store). Queued attempts of runs in memory are counted from their states by the caller.
   */
  async coldQueues(): Promise<Map<string, ColdQueue>> {
    const hotQueued = new Map<string, number>();
    for (const state of this.o.states.values()) {
      for (const t of state.tasks) {
        if (t.status === RunStatuses.queued && this.core.isQueued(t))
          hotQueued.set(t.taskName, (hotQueued.get(t.taskName) ?? 0) + 1);
      }
    }
    const out = new Map<string, ColdQueue>();
    for (const [taskName, depth] of this.core.depths()) {
      const cold = depth - (hotQueued.get(taskName) ?? 0);
      if (cold > 0) out.set(taskName, { queued: cold });
    }
    const coldOldest = [...this.core.oldestQueued()].filter(([, q]) => !this.o.states.get(q.runId));
    if (coldOldest.length === 0) return out;
    const states = await this.o.states.loadMany(
      coldOldest.map(([, q]) => q.runId),
      false,
    );
    for (const [i, [taskName, q]] of coldOldest.entries()) {
      const queuedAt = states[i]?.tasks.find((t) => t.taskRunId === q.taskRunId)?.queuedAt;
      if (!queuedAt) continue;
      const entry = out.get(taskName) ?? { queued: 0 };
      entry.oldestQueuedAt = queuedAt;
      out.set(taskName, entry);
    }
    return out;
  }

  private kick(): void {
    if (this.kicked || this.stopped) return;
    this.kicked = true;
    setImmediate(() => {
      this.kicked = false;
      if (this.stopped) return;
      const now = this.now();
      const expired = this.core.expired(now);
      if (expired.length > 0) this.o.timeouts.unscheduled(expired);
      const placements = this.core.place(now, MAX_PLACEMENTS_PER_TURN);
      if (placements.length > 0) this.dispatch(placements);
      if (placements.length === MAX_PLACEMENTS_PER_TURN) this.kick(); // the rest on the next turn
      const waits = this.core.drainWaits();
      if (waits.length > 0) this.recordWaits(waits);
      this.armWake();
    });
  }

  /** One host timer for the earliest parked lane (rate limit windows, pauses) or schedule deadline. */
  private armWake(): void {
    const lane = this.core.nextWakeAt();
    const deadline = this.core.nextDeadline();
    const at = lane === undefined ? deadline : deadline === undefined ? lane : Math.min(lane, deadline);
    if (at === undefined || (this.wakeTimer && this.wakeTimer.at <= at)) return;
    if (this.wakeTimer) clearTimeout(this.wakeTimer.handle);
    const handle = setTimeout(
      () => {
        this.wakeTimer = undefined;
        this.kick();
      },
      Math.min(MAX_TIMEOUT_MS, Math.max(0, at - this.now())),
    );
    handle.unref();
    this.wakeTimer = { handle, at };
  }
}
