import {
  AppendConflictError,
  EventTypes,
  makeEvent,
  type RunState,
  type TaskjetEventInput,
  type TaskRunState,
} from "@taskjet/schemas";
import type { Logger } from "pino";
import type { RunStates } from "../projector/projector.js";
import { retryDelayMs } from "./retry-delay.js";
import type { Clock, Timers } from "./timers.js";

export interface RetrierOptions {
  timers: Timers;
  clock: Clock;
  log: Logger;
  /** The projector's live states: every decision is taken against the latest fold. */
  states: Pick<RunStates, "get">;
  /** Appends with CAS on `expectedSeq`. */
  append: (event: TaskjetEventInput, expectedSeq: number) => Promise<number>;
}

/**
 * Turns a failed attempt that may be retried into the next one: appends `TaskRetryScheduled { at }`, waits on an engine
 * timer (holding no worker slot and no consumer ack), then appends `TaskQueued` for the next attempt. Both appends are
 * CAS-guarded: when the run moved on meanwhile (cancelled, say), the next fold of it decides again.
 */
export class Retrier {
  private readonly inFlight = new Set<string>();

  constructor(private readonly o: RetrierOptions) {}

  /** Looks at a run's tasks after a change (or at recovery) and acts on pending retries. */
  onState(state: RunState): void {
    for (const task of state.tasks) {
      if (!task.retry) continue;
      const key = `${task.taskRunId}:${task.retry.attempt}`;
      if (task.retry.at === undefined) this.schedule(state, task, key);
      else if (!this.o.timers.has(key))
        this.arm(state.runId, task.taskRunId, task.retry.attempt, Date.parse(task.retry.at));
    }
  }

  private schedule(state: RunState, task: TaskRunState, key: string): void {
    if (this.inFlight.has(key) || !task.retry) return;
    const attempt = task.retry.attempt;
    const delayMs = retryDelayMs(task.policy ?? { retries: 0 }, attempt);
    const event = makeEvent(EventTypes.TaskRetryScheduled, {
      runId: state.runId,
      taskRunId: task.taskRunId,
      data: { attempt, at: new Date(this.o.clock.now() + delayMs).toISOString(), delayMs },
    });
    this.appendOnce(key, event, state.lastSeq);
  }

  private arm(runId: string, taskRunId: string, attempt: number, due: number): void {
    const key = `${taskRunId}:${attempt}`;
    this.o.timers.set(key, due, () => {
      const state = this.o.states.get(runId);
      const task = state?.tasks.find((t) => t.taskRunId === taskRunId);
      if (!state || task?.retry?.attempt !== attempt) return; // the run moved on
      const event = makeEvent(EventTypes.TaskQueued, { runId, taskRunId, data: { attempt } });
      this.appendOnce(key, event, state.lastSeq);
    });
  }

  private appendOnce(key: string, event: TaskjetEventInput, expectedSeq: number): void {
    this.inFlight.add(key);
    this.o
      .append(event, expectedSeq)
      .catch((err) => {
        // A conflict means another event is on its way to the projector; folding it brings us back here.
        if (!(err instanceof AppendConflictError))
          this.o.log.warn({ err, key, type: event.type }, "retry append failed");
      })
      .finally(() => this.inFlight.delete(key));
  }
}
