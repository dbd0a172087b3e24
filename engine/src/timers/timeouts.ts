import {
  EventTypes,
  makeEvent,
  type RunState,
  RunStatuses,
  type TaskjetEventInput,
  type TaskRunState,
} from "@taskjet/schemas";
import type { Logger } from "pino";
import type { RunStates } from "../projector/projector.js";
import { retryUnlessConflict } from "./retry-append.js";
import type { Timers } from "./timers.js";

/** The attempt a deadline is for. */
export interface Attempt {
  readonly runId: string;
  readonly taskRunId: string;
  readonly attempt: number;
}

const attemptOf = (state: RunState, task: TaskRunState): Attempt => ({
  runId: state.runId,
  taskRunId: task.taskRunId,
  attempt: task.attempt,
});

/** Cold runs read at once when their schedule deadlines pass: a million queued together pass together. */
const COLD_BATCH = 1000;

/** How soon the attempts of cold runs that could not be read are looked at again, in ms. */
const RETRY_READ_MS = 1000;

export interface TimeoutsOptions {
  timers: Timers;
  log: Logger;
  /** The projector's run states: a queued run may be cold (read back with `load`). */
  states: RunStates;
  /** Appends with CAS on `expectedSeq`. */
  append: (event: TaskjetEventInput, expectedSeq: number) => Promise<number>;
}

/**
 * Execution deadlines: one engine timer per running attempt, at the `timeoutAt` its worker recorded (moved by
 * `TaskTimeoutRefreshed`). When it passes with the attempt still running, the engine appends `TaskTimedOut` (CAS): the
 * attempt counts as failed and retries apply. A worker that is gone is covered the same way.
 *
 * Schedule deadlines: an attempt still waiting for a worker `scheduleTimeoutMs` after it was queued is cancelled
 * (`TaskCancelled`, reason `SCHEDULE_TIMEOUT`). Every queued attempt has one, and a million may be queued (most of
 * them cold): the scheduler core keeps them beside its queue records and hands over those that passed (`unscheduled`).
 */
export class Timeouts {
  /** Passed schedule deadlines of cold runs, waiting to be read in batches. */
  private coldPassed: Attempt[] = [];
  private readingCold = false;
  private retries = 0;

  constructor(private readonly o: TimeoutsOptions) {}

  /** Arms, moves or drops the execution deadlines of a run's tasks after any change (idempotent). */
  onState(state: RunState): void {
    for (const task of state.tasks) {
      // Keys are joined: a template literal leaves a chain of cons strings beside the flat copy a Map key is hashed
      // from. The callback is shared, given the attempt as an argument (a closure made in this loop keeps its block
      // scopes too).
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

  /**
   * Attempts whose schedule deadline passed: each one its run's state still shows waiting for a worker is cancelled.
   * Runs in memory are decided at once; cold ones are read first, in batches.
   */
  unscheduled(attempts: readonly Attempt[]): void {
    for (const a of attempts) {
      const state = this.o.states.get(a.runId);
      if (state) this.cancelUnscheduled(state, a).catch(() => undefined);
      else this.coldPassed.push(a);
    }
    if (this.coldPassed.length === 0 || this.readingCold) return;
    this.readingCold = true;
    this.cancelColdPassed()
      .catch((err) => this.o.log.error({ err }, "schedule timeouts of cold runs stalled"))
      .finally(() => {
        this.readingCold = false;
      });
  }

  private readonly onExpired = (a: Attempt) => this.expire(a.runId, a.taskRunId, a.attempt);

  /**
   * Reads the cold runs whose schedule deadlines passed, a batch at a time, and cancels those still waiting: a batch's
   * appends are awaited before the next is read, so a million passing deadlines never put a million reads in flight. A
   * batch that cannot be read is looked at again shortly (on the engine's timers: not after the engine stopped).
   */
  private async cancelColdPassed(): Promise<void> {
    while (this.coldPassed.length > 0) {
      const passed = this.coldPassed;
      this.coldPassed = [];
      for (let i = 0; i < passed.length; i += COLD_BATCH) {
        const batch = passed.slice(i, i + COLD_BATCH);
        let states: (RunState | undefined)[];
        try {
          states = await this.o.states.loadMany(batch.map((a) => a.runId));
        } catch (err) {
          this.o.log.warn({ err, runs: batch.length }, "could not read cold runs past their schedule deadline");
          this.o.timers.set(`schedule-retry:${++this.retries}`, this.o.timers.now() + RETRY_READ_MS, () =>
            this.unscheduled(batch),
          );
          continue;
        }
        await Promise.all(batch.map((a, j) => (states[j] ? this.cancelUnscheduled(states[j], a) : undefined)));
      }
    }
  }

  /** Appends `TaskCancelled` (SCHEDULE_TIMEOUT) while the attempt still waits for a worker. */
  private cancelUnscheduled(state: RunState, a: Attempt, tries = 0): Promise<void> {
    const { runId, taskRunId, attempt } = a;
    const task = state.tasks.find((t) => t.taskRunId === taskRunId);
    if (task?.status !== RunStatuses.queued || task.attempt !== attempt || task.retry) return Promise.resolve();
    const event = makeEvent(EventTypes.TaskCancelled, {
      runId,
      taskRunId,
      data: { attempt, reason: "SCHEDULE_TIMEOUT" },
    });
    if (tries === 0) this.o.log.info({ runId, taskRunId, attempt }, "schedule timeout");
    // The scheduler has let the attempt go: until this is recorded, only this retry decides it.
    const again = (t: number) => {
      const current = this.o.states.get(runId);
      if (current) void this.cancelUnscheduled(current, a, t);
      else this.unscheduled([a]);
    };
    return this.o
      .append(event, state.lastSeq)
      .then(
        () => undefined,
        retryUnlessConflict(
          this.o,
          `unscheduled:${taskRunId}:${attempt}`,
          tries,
          again,
          "schedule timeout not recorded",
        ),
      );
  }

  private expire(runId: string, taskRunId: string, attempt: number, tries = 0): void {
    const state = this.o.states.get(runId);
    const task = state?.tasks.find((t) => t.taskRunId === taskRunId);
    if (!state || !task || task.status !== RunStatuses.running || task.attempt !== attempt || !task.timeoutAt) return;
    const event = makeEvent(EventTypes.TaskTimedOut, {
      runId,
      taskRunId,
      data: { attempt, timeoutAt: task.timeoutAt },
    });
    if (tries === 0) this.o.log.info({ runId, taskRunId, attempt }, "execution timeout");
    // A conflict: the run moved on (finished, refreshed); folding that event re-arms the timer if still needed.
    const key = ["timeout", taskRunId, attempt].join(":");
    const again = (t: number) => this.expire(runId, taskRunId, attempt, t);
    this.o.append(event, state.lastSeq).catch(retryUnlessConflict(this.o, key, tries, again, "timeout not recorded"));
  }
}
