import {
  AppendConflictError,
  EventTypes,
  makeEvent,
  type RunState,
  RunStatuses,
  type TaskjetEventInput,
  type TaskRunState,
} from "@taskjet/schemas";
import type { Logger } from "pino";
import type { Timers } from "./timers.js";

/** The attempt a deadline is for. */
interface Attempt {
  runId: string;
  taskRunId: string;
  attempt: number;
}

const attemptOf = (state: RunState, task: TaskRunState): Attempt => ({
  runId: state.runId,
  taskRunId: task.taskRunId,
  attempt: task.attempt,
});

export interface TimeoutsOptions {
  timers: Timers;
  log: Logger;
  /** The projector's live states. */
  states: ReadonlyMap<string, RunState>;
  /** Appends with CAS on `expectedSeq`. */
  append: (event: TaskjetEventInput, expectedSeq: number) => Promise<number>;
  /** How long an attempt may wait for a worker when its run does not say. */
  defaultScheduleTimeoutMs: number;
}

/**
 * Execution deadlines: one engine timer per running attempt, at the `timeoutAt` its worker recorded (moved by
 * `TaskTimeoutRefreshed`). When it passes with the attempt still running, the engine appends `TaskTimedOut` (CAS): the
 * attempt counts as failed and retries apply. A worker that is gone is covered the same way.
 *
 * Schedule deadlines: an attempt still waiting for a worker `scheduleTimeoutMs` after it was queued is cancelled
 * (`TaskCancelled`, reason `SCHEDULE_TIMEOUT`).
 */
export class Timeouts {
  constructor(private readonly o: TimeoutsOptions) {}

  /** Arms, moves or drops the deadlines of a run's tasks after any change (idempotent). */
  onState(state: RunState): void {
    // Every queued attempt has a deadline, and a million may be queued: keys are joined (a template literal leaves a
    // chain of cons strings beside the flat copy a Map key is hashed from) and the callbacks are shared, given the
    // attempt as an argument (a closure made in this loop keeps its block scopes too): ~200 bytes less per attempt.
    for (const task of state.tasks) {
      const waitKey = ["schedule", task.taskRunId, task.attempt].join(":");
      if (task.status === RunStatuses.queued && !task.retry && task.queuedAt) {
        const due = Date.parse(task.queuedAt) + (task.scheduleTimeoutMs ?? this.o.defaultScheduleTimeoutMs);
        if (this.o.timers.dueOf(waitKey) !== due) {
          this.o.timers.set(waitKey, due, this.onUnscheduled, attemptOf(state, task));
        }
      } else {
        this.o.timers.cancel(waitKey);
      }
      const key = ["timeout", task.taskRunId, task.attempt].join(":");
      if (task.status !== RunStatuses.running || !task.timeoutAt) {
        this.o.timers.cancel(key);
        continue;
      }
      const due = Date.parse(task.timeoutAt);
      if (this.o.timers.dueOf(key) === due) continue;
      this.o.timers.set(key, due, this.onExpired, attemptOf(state, task));
    }
  }

  private readonly onUnscheduled = (a: Attempt) => this.unscheduled(a.runId, a.taskRunId, a.attempt);
  private readonly onExpired = (a: Attempt) => this.expire(a.runId, a.taskRunId, a.attempt);

  private unscheduled(runId: string, taskRunId: string, attempt: number): void {
    const state = this.o.states.get(runId);
    const task = state?.tasks.find((t) => t.taskRunId === taskRunId);
    if (!state || task?.status !== RunStatuses.queued || task.attempt !== attempt || task.retry) return;
    const event = makeEvent(EventTypes.TaskCancelled, {
      runId,
      taskRunId,
      data: { attempt, reason: "SCHEDULE_TIMEOUT" },
    });
    this.o.log.info({ runId, taskRunId, attempt }, "schedule timeout");
    this.o.append(event, state.lastSeq).catch((err) => {
      if (!(err instanceof AppendConflictError)) this.o.log.warn({ err, runId }, "could not record a schedule timeout");
    });
  }

  private expire(runId: string, taskRunId: string, attempt: number): void {
    const state = this.o.states.get(runId);
    const task = state?.tasks.find((t) => t.taskRunId === taskRunId);
    if (!state || !task || task.status !== RunStatuses.running || task.attempt !== attempt || !task.timeoutAt) return;
    const event = makeEvent(EventTypes.TaskTimedOut, {
      runId,
      taskRunId,
      data: { attempt, timeoutAt: task.timeoutAt },
    });
    this.o.log.info({ runId, taskRunId, attempt }, "execution timeout");
    this.o.append(event, state.lastSeq).catch((err) => {
      // A conflict: the run moved on (finished, refreshed); folding that event re-arms the timer if still needed.
      if (!(err instanceof AppendConflictError)) this.o.log.warn({ err, runId }, "could not record a timeout");
    });
  }
}
