import {
  AppendConflictError,
  EventTypes,
  makeEvent,
  type RunState,
  RunStatuses,
  type TaskjetEventInput,
} from "@taskjet/schemas";
import type { Logger } from "pino";
import type { Timers } from "./timers.js";

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
    for (const task of state.tasks) {
      const waitKey = `schedule:${task.taskRunId}:${task.attempt}`;
      if (task.status === RunStatuses.queued && !task.retry && task.queuedAt) {
        const due = Date.parse(task.queuedAt) + (task.scheduleTimeoutMs ?? this.o.defaultScheduleTimeoutMs);
        if (this.o.timers.dueOf(waitKey) !== due) {
          const { runId } = state;
          const { taskRunId, attempt } = task;
          this.o.timers.set(waitKey, due, () => this.unscheduled(runId, taskRunId, attempt));
        }
      } else {
        this.o.timers.cancel(waitKey);
      }
      const key = `timeout:${task.taskRunId}:${task.attempt}`;
      if (task.status !== RunStatuses.running || !task.timeoutAt) {
        this.o.timers.cancel(key);
        continue;
      }
      const due = Date.parse(task.timeoutAt);
      if (this.o.timers.dueOf(key) === due) continue;
      const { runId } = state;
      const { taskRunId, attempt } = task;
      this.o.timers.set(key, due, () => this.expire(runId, taskRunId, attempt));
    }
  }

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
