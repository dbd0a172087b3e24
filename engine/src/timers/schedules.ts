import { EventTypes, makeEvent, type RunState, RunStatuses, type TaskjetEventInput } from "@taskjet/schemas";
import type { Logger } from "pino";
import type { RunStates } from "../projector/projector.js";
import { retryUnlessConflict } from "./retry-append.js";
import type { Timers } from "./timers.js";

export interface SchedulesOptions {
  timers: Timers;
  log: Logger;
  states: Pick<RunStates, "get">;
  append: (event: TaskjetEventInput, expectedSeq: number) => Promise<number>;
}

/**
 * Timers of things that start later: scheduled runs (`task.schedule`, `task.delay`; `RunDue` at `scheduledAt`) and
 * durable sleeps (`ctx.sleepFor`; `DurableWoke` at the sleep's end). Armed again from the projected states after a
 * restart; a time in the past fires at once. Firing appends with CAS; a conflict means the run moved (rescheduled,
 * cancelled) and folding that re-arms or drops the timer; any other failure (NATS unavailable) fires it again later.
 */
export class Schedules {
  constructor(private readonly o: SchedulesOptions) {}

  onState(state: RunState): void {
    this.sleeps(state);
    // Called for every event of every run (and every run at recovery): a run never scheduled has no timer, so no key
    // is built and looked up for it.
    if (state.scheduledAt === undefined) return;
    const key = `due:${state.runId}`;
    if (state.status !== RunStatuses.scheduled || !state.scheduledAt) {
      this.o.timers.cancel(key);
      return;
    }
    const due = Date.parse(state.scheduledAt);
    if (this.o.timers.dueOf(key) === due) return;
    const { runId } = state;
    this.o.timers.set(key, due, () => this.fire(runId));
  }

  private sleeps(state: RunState): void {
    for (const task of state.tasks) {
      // Armed only from a checkpoint: a task without any has none (a replay drops them, but bumps the attempt that
      // `wake` checks).
      if (!task.checkpoints) continue;
      const key = `sleep:${task.taskRunId}`;
      const sleep = task.checkpoints.find((c) => c.kind === "sleep" && !c.done);
      if (task.status !== RunStatuses.pending || !sleep) {
        this.o.timers.cancel(key);
        continue;
      }
      const due = Date.parse(sleep.value);
      if (this.o.timers.dueOf(key) === due) continue;
      const { runId } = state;
      const { taskRunId, attempt } = task;
      const { index } = sleep;
      this.o.timers.set(key, due, () => this.wake(runId, taskRunId, attempt, index));
    }
  }

  private wake(runId: string, taskRunId: string, attempt: number, index: number, tries = 0): void {
    const state = this.o.states.get(runId);
    const task = state?.tasks.find((t) => t.taskRunId === taskRunId);
    if (!state || task?.status !== RunStatuses.pending || task.attempt !== attempt) return;
    const event = makeEvent(EventTypes.DurableWoke, { runId, taskRunId, data: { attempt: attempt + 1, index } });
    const again = (t: number) => this.wake(runId, taskRunId, attempt, index, t);
    this.o
      .append(event, state.lastSeq)
      .catch(retryUnlessConflict(this.o, `sleep:${taskRunId}`, tries, again, "durable task not woken"));
  }

  private fire(runId: string, tries = 0): void {
    const state = this.o.states.get(runId);
    if (state?.status !== RunStatuses.scheduled || !state.scheduledAt) return;
    const event = makeEvent(EventTypes.RunDue, { runId, data: { scheduledAt: state.scheduledAt } });
    const again = (t: number) => this.fire(runId, t);
    this.o
      .append(event, state.lastSeq)
      .catch(retryUnlessConflict(this.o, `due:${runId}`, tries, again, "scheduled run not queued"));
  }
}
