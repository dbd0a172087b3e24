import {
  AppendConflictError,
  checkToken,
  EventTypes,
  makeEvent,
  RunNotFoundError,
  RunNotScheduledError,
  type RunState,
  RunStatuses,
  refuseUnknownKeys,
} from "@taskjet/schemas";
import { appendEvent } from "./append.js";
import type { Connection } from "./connection.js";
import { listLimit, type RunsClient } from "./runs.js";
import { scheduleTime } from "./schedule-time.js";

/** Runs created to start later (`task.schedule`, `task.delay`), while they are SCHEDULED. */
export class ScheduledClient {
  constructor(
    private readonly conn: Connection,
    private readonly ns: string,
    private readonly runs: RunsClient,
  ) {}

  /**
   * Scheduled runs, soonest first: the first `limit` of them.
   * @param options.taskName only runs of this task
   * @param options.limit at most this many, @default 100
   */
  async list(options: { taskName?: string; limit?: number } = {}): Promise<RunState[]> {
    const limit = listLimit(options, ["taskName", "limit"]);
    const runs = await this.runs.list({
      statuses: [RunStatuses.scheduled],
      ...(options.taskName !== undefined ? { taskName: options.taskName } : {}),
      limit: Number.MAX_SAFE_INTEGER,
    });
    runs.sort((a, b) => (a.scheduledAt ?? "").localeCompare(b.scheduledAt ?? ""));
    return runs.slice(0, limit);
  }

  /**
   * A scheduled run (also once it has started: its status says so).
   * @throws RunNotFoundError
   */
  get(runId: string): Promise<RunState> {
    return this.runs.get(runId);
  }

  /**
   * Moves a scheduled run to `triggerAt` (recorded as `RunRescheduled`).
   * @throws RunNotScheduledError when it already started or was deleted; ValidationError for a bad time
   */
  async update(runId: string, change: { triggerAt: Date | string }): Promise<RunState> {
    checkToken(runId, "runId");
    if (typeof change === "object" && change !== null)
      refuseUnknownKeys(change, ["triggerAt"], "", "a schedule change");
    const scheduledAt = scheduleTime(change?.triggerAt, "triggerAt");
    const event = makeEvent(EventTypes.RunRescheduled, { runId, data: { scheduledAt } });
    let state = await this.runs.read(runId, undefined);
    for (;;) {
      if (!state) throw new RunNotFoundError(runId);
      if (state.status !== RunStatuses.scheduled) throw new RunNotScheduledError(runId, state.status);
      try {
        await appendEvent(this.conn, this.ns, event, state.lastSeq);
        return this.runs.get(runId);
      } catch (err) {
        if (!(err instanceof AppendConflictError)) throw err;
        state = await this.runs.read(runId, state); // it moved: decide again
      }
    }
  }

  /**
   * Deletes a scheduled run: it is cancelled and never starts. `false` when it was cancelled already (deleted).
   * @throws RunNotScheduledError when it already started or finished (cancel a running one with `runs.cancel`)
   */
  async delete(runId: string): Promise<boolean> {
    checkToken(runId, "runId");
    // Decided again after every conflict: the engine may have made it due meanwhile, and a due run may start.
    return this.runs.cancelOne(runId, "scheduled run deleted", (s) => {
      if (s.status === RunStatuses.cancelled) return false;
      if (s.status !== RunStatuses.scheduled) throw new RunNotScheduledError(runId, s.status);
      return true;
    });
  }
}
