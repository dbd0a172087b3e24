import { EventTypes, makeEvent, type RunState, RunStatuses, type TaskjetEventInput } from "@taskjet/schemas";
import type { Logger } from "pino";
import type { Timers } from "./timers.js";

export interface SchedulesOptions {
  timers: Timers;
  log: Logger;
  states: ReadonlyMap<string, RunState>;
  append: (event: TaskjetEventInput, expectedSeq: number) => Promise<number>;
}

/**
 * Scheduled runs (`task.schedule`, `task.delay`): one engine timer per SCHEDULED run at its `scheduledAt`, armed again
 * from the projected states after a restart; a time in the past fires at once. Firing appends `RunDue` (CAS), which
 * queues the run's tasks; a conflict means the run moved (rescheduled, cancelled) and folding that re-arms the timer.
 */
export class Schedules {
  constructor(private readonly o: SchedulesOptions) {}

  onState(state: RunState): void {
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

  private fire(runId: string): void {
    const state = this.o.states.get(runId);
    if (state?.status !== RunStatuses.scheduled || !state.scheduledAt) return;
    const event = makeEvent(EventTypes.RunDue, { runId, data: { scheduledAt: state.scheduledAt } });
    this.o
      .append(event, state.lastSeq)
      .catch((err) => this.o.log.debug({ err, runId }, "scheduled run not queued now"));
  }
}
