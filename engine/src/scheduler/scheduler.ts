import {
  EventTypes,
  makeEvent,
  type RunState,
  RunStatuses,
  type TaskjetEventInput,
  type WorkerRegistration,
} from "@taskjet/schemas";
import type { Logger } from "pino";
import type { Dispatcher } from "../dispatcher/dispatcher.js";
import type { RunChange } from "../projector/projector.js";
import type { Retrier } from "../timers/retrier.js";
import type { Timeouts } from "../timers/timeouts.js";
import { type Placement, type QueuedTask, SchedulerCore } from "./core.js";

export interface SchedulerOptions {
  log: Logger;
  dispatcher: Dispatcher;
  retrier: Retrier;
  timeouts: Timeouts;
  /** Appends with CAS on `expectedSeq`. */
  append: (event: TaskjetEventInput, expectedSeq: number) => Promise<number>;
  /** The projector's live run states. */
  states: ReadonlyMap<string, RunState>;
}

/**
 * The shell around `SchedulerCore`: turns run changes and worker changes into core calls, and places work in batches
 * (all inputs of one I/O turn first, then one placement pass).
 */
export class Scheduler {
  readonly core = new SchedulerCore();
  private kicked = false;
  private stopped = false;
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(private readonly o: SchedulerOptions) {}

  /** Rebuilds memory from the projected states of unfinished runs. */
  recover(): void {
    for (const state of this.o.states.values()) {
      for (const task of state.tasks) {
        const queued: QueuedTask = {
          ...taskRef(state, task.taskRunId, task.taskName, task.attempt),
          order: state.lastSeq,
        };
        if (task.status === RunStatuses.queued && !task.retry) this.core.enqueue(queued);
        else if (task.status === RunStatuses.running && task.workerId && !task.slotReleased) {
          // Its worker vanished while no engine watched: the attempt goes to another worker.
          if (this.core.hasWorker(task.workerId)) this.core.hold(queued, task.workerId);
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
      this.o.timeouts.onState(state);
    }
    this.kick();
  }

  onChange({ event, seq, state }: RunChange): void {
    this.o.timeouts.onState(state);
    switch (event.type) {
      case EventTypes.RunCreated:
        for (const task of state.tasks) {
          this.core.enqueue({ ...taskRef(state, task.taskRunId, task.taskName, task.attempt), order: seq });
        }
        break;
      case EventTypes.TaskStarted: {
        const task = state.tasks.find((t) => t.taskRunId === event.taskRunId);
        if (task?.status === RunStatuses.running && task.attempt === event.data.attempt) {
          this.core.hold(
            { ...taskRef(state, task.taskRunId, task.taskName, task.attempt), order: seq },
            event.data.workerId,
          );
        }
        break;
      }
      case EventTypes.TaskCompleted:
      case EventTypes.TaskFailed:
      case EventTypes.TaskTimedOut:
      case EventTypes.TaskCancelled:
      case EventTypes.TaskSlotReleased: {
        // The attempt is over (final or not), or gave its slot back: the slot is free.
        const task = state.tasks.find((t) => t.taskRunId === event.taskRunId);
        if (task) this.core.finish({ taskRunId: task.taskRunId, taskName: task.taskName, attempt: event.data.attempt });
        if (task?.retry) this.o.retrier.onState(state);
        break;
      }
      case EventTypes.TaskRetryScheduled:
        this.o.retrier.onState(state);
        return;
      case EventTypes.RunCancelled:
        for (const task of state.tasks) {
          if (task.status !== RunStatuses.cancelled) continue;
          this.core.finish(task);
          // It had started: its worker aborts it (and abandons it after a grace period if it ignores the signal).
          if (task.workerId && task.startedAt) {
            this.o.dispatcher.control(task.workerId, {
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
      case EventTypes.TaskReassigned:
      case EventTypes.TaskQueued: {
        const task = state.tasks.find((t) => t.taskRunId === event.taskRunId);
        if (task?.status === RunStatuses.queued && task.attempt === event.data.attempt) {
          this.core.enqueue({ ...taskRef(state, task.taskRunId, task.taskName, task.attempt), order: seq });
        }
        break;
      }
      default:
        return;
    }
    this.kick();
  }

  workerUp(worker: WorkerRegistration): void {
    // A draining worker keeps what it runs and gets nothing new.
    this.core.upsertWorker({
      workerId: worker.workerId,
      tasks: worker.tasks,
      slots: worker.draining ? 0 : worker.slots,
    });
    this.kick();
  }

  /**
   * A departed worker: attempts it never started go back to their queues; attempts it was running are reassigned
   * (`TaskReassigned`: the same attempt, not a retry) to run elsewhere.
   */
  workerDown(workerId: string, reason: string): void {
    for (const task of this.core.removeWorker(workerId)) {
      const current = this.o.states.get(task.runId)?.tasks.find((t) => t.taskRunId === task.taskRunId);
      if (current?.status === RunStatuses.queued && current.attempt === task.attempt && !current.retry) {
        this.core.enqueue(task);
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

  /** Appends `TaskReassigned` while the attempt is still running on the lost worker (CAS; retried on conflicts). */
  private reassign(
    runId: string,
    taskRunId: string,
    attempt: number,
    fromWorkerId: string,
    reason: string,
    tries = 0,
  ): void {
    const state = this.o.states.get(runId);
    const task = state?.tasks.find((t) => t.taskRunId === taskRunId);
    if (!state || task?.status !== RunStatuses.running || task.attempt !== attempt || task.workerId !== fromWorkerId)
      return;
    this.o.log.info({ runId, taskRunId, attempt, fromWorkerId, reason }, "reassigning a lost worker's attempt");
    const event = makeEvent(EventTypes.TaskReassigned, { runId, taskRunId, data: { attempt, fromWorkerId, reason } });
    this.o.append(event, state.lastSeq).catch((err) => {
      if (this.stopped || tries >= 20) return this.o.log.warn({ err, runId }, "could not reassign");
      // Someone wrote first: decide again on the folded tail shortly.
      setTimeout(() => this.reassign(runId, taskRunId, attempt, fromWorkerId, reason, tries + 1), 100).unref();
    });
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
  }

  private kick(): void {
    if (this.kicked || this.stopped) return;
    this.kicked = true;
    setImmediate(() => {
      this.kicked = false;
      if (this.stopped) return;
      const placements = this.core.place();
      if (placements.length > 0) this.o.dispatcher.send(placements, (runId) => this.o.states.get(runId));
    });
  }
}

function taskRef(state: RunState, taskRunId: string, taskName: string, attempt: number) {
  return { runId: state.runId, taskRunId, taskName, attempt, priority: state.priority };
}
