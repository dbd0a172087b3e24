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
import { retryUnlessConflict } from "./retry-append.js";
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
    for (const task of state.tasks) if (task.retry) this.decide(state, task);
  }

  private decide(state: RunState, task: TaskRunState, tries = 0): void {
    if (!task.retry) return;
    const key = `${task.taskRunId}:${task.retry.attempt}`;
    if (task.retry.at === undefined) this.schedule(state, task, key, tries);
    else if (!this.o.timers.has(key))
      this.arm(state.runId, task.taskRunId, task.retry.attempt, Date.parse(task.retry.at));
  }

  private schedule(state: RunState, task: TaskRunState, key: string, tries: number): void {
    if (this.inFlight.has(key) || !task.retry) return;
    const attempt = task.retry.attempt;
    const delayMs = retryDelayMs(task.policy ?? { retries: 0 }, attempt);
    const { runId } = state;
    const { taskRunId } = task;
    const event = makeEvent(EventTypes.TaskRetryScheduled, {
      runId,
      taskRunId,
      data: { attempt, at: new Date(this.o.clock.now() + delayMs).toISOString(), delayMs },
    });
    const again = (t: number) => {
      const s = this.o.states.get(runId);
      const current = s?.tasks.find((x) => x.taskRunId === taskRunId);
      if (s && current?.retry?.attempt === attempt) this.decide(s, current, t);
    };
    this.appendOnce(key, event, state.lastSeq, again, tries, "retry not scheduled");
  }

  private arm(runId: string, taskRunId: string, attempt: number, due: number): void {
    this.o.timers.set(`${taskRunId}:${attempt}`, due, () => this.requeue(runId, taskRunId, attempt));
  }

  /** Queues the attempt again while its run still waits for it. */
  private requeue(runId: string, taskRunId: string, attempt: number, tries = 0): void {
    const state = this.o.states.get(runId);
    const task = state?.tasks.find((t) => t.taskRunId === taskRunId);
    if (!state || task?.retry?.attempt !== attempt) return; // the run moved on
    const event = makeEvent(EventTypes.TaskQueued, { runId, taskRunId, data: { attempt } });
    const again = (t: number) => this.requeue(runId, taskRunId, attempt, t);
    this.appendOnce(`${taskRunId}:${attempt}`, event, state.lastSeq, again, tries, "retry not queued");
  }

  /**
   * One append per retry step at a time. A conflict means another event is on its way to the projector, and folding it
   * brings us back here, unless it was folded while this append was in flight (and skipped for it): then this decides
   * again on the state folded since. Another failure tries again later (the state it decided from does not change).
   */
  private appendOnce(
    key: string,
    event: TaskjetEventInput,
    expectedSeq: number,
    again: (tries: number) => void,
    tries: number,
    what: string,
  ): void {
    this.inFlight.add(key);
    let conflicted = false;
    this.o
      .append(event, expectedSeq)
      .catch((err: unknown) => {
        if (err instanceof AppendConflictError) conflicted = true;
        else retryUnlessConflict(this.o, `append:${key}`, tries, again, what)(err);
      })
      .finally(() => {
        this.inFlight.delete(key);
        if (conflicted && (this.o.states.get(event.runId)?.lastSeq ?? 0) > expectedSeq) again(0);
      });
  }
}
