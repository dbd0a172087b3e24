import {
  isTerminal,
  RunCancelledError,
  type RunEnd,
  RunRejectedError,
  type RunState,
  type RunStatus,
  RunStatuses,
  TaskRunError,
  ValidationError,
  WaitTimeoutError,
} from "@taskjet/schemas";
import type { HistoryEntry } from "./history.js";
import { longTimeout } from "./long-timeout.js";

/** Turns a final run state into the caller's result: the output, or a typed error carrying the task's error. */
export function outcome<O>(state: RunEnd): O {
  if (state.status === RunStatuses.completed) return (state.output ?? {}) as O;
  if (state.status === RunStatuses.cancelled)
    throw new RunCancelledError(state.runId, state.error?.message ?? "cancelled");
  const failed = state.tasks.find((t) => t.status === RunStatuses.failed);
  if (!failed && state.error?.name === "EventRejected") throw new RunRejectedError(state.runId, state.error.message);
  throw new TaskRunError(
    state.runId,
    failed?.taskName ?? state.workflowName,
    state.error ?? { name: "Error", message: `run ended ${state.status}` },
  );
}

/** A handle on a triggered run. */
export class RunRef<O = Record<string, unknown>> {
  constructor(
    /** The run's id (client-made). */
    readonly runId: string,
    private readonly wait: () => Promise<RunEnd>,
    private readonly read: () => Promise<RunState>,
    private readonly cancelRun: (reason?: string) => Promise<boolean>,
    private readonly follow: () => AsyncGenerator<HistoryEntry>,
    /**
     * The trigger that returned this handle found the run already there and created nothing: its run id was given
     * before (a retried trigger), or its idempotency key holds an earlier run. Always false from `tj.ref`.
     */
    readonly existing = false,
  ) {}

  /**
   * Cancels the run: queued tasks leave the queue, running ones are aborted through their signal. Resolves `true` when
   * this call cancelled it, `false` when it had already finished.
   */
  cancel(reason?: string): Promise<boolean> {
    return this.cancelRun(reason);
  }

  /**
   * Waits for the run to finish: its output, or a TaskRunError carrying the task's error.
   * @param options.timeoutMs give up after this long with a WaitTimeoutError (the run goes on)
   */
  async result(options: { timeoutMs?: number } = {}): Promise<O> {
    const { timeoutMs } = options;
    if (timeoutMs === undefined) return outcome<O>(await this.wait());
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
      throw new ValidationError([{ path: "timeoutMs", message: `must be a positive number, got ${timeoutMs}` }]);
    }
    let cancel = () => {};
    const expired = new Promise<RunEnd>((resolve, reject) => {
      const timedOut = () => reject(new WaitTimeoutError(`run ${this.runId}`, timeoutMs));
      // It may have ended as the time ran out: the log has its end before the engine announces it.
      cancel = longTimeout(
        () => this.read().then((state) => (isTerminal(state.status) ? resolve(state) : timedOut()), timedOut),
        timeoutMs,
      );
    });
    try {
      return outcome<O>(await Promise.race([this.wait(), expired]));
    } finally {
      cancel();
    }
  }

  /** The run's current status. */
  async status(): Promise<RunStatus> {
    return (await this.read()).status;
  }

  /**
   * The run's history from its first event, then live as events are appended, ending after the event that made the
   * run terminal (`tj.runs.history(runId, { follow: true })`). Breaking out of the loop stops reading.
   * @example
   * for await (const { seq, event } of ref.stream()) timeline.push({ seq, type: event?.type });
   * @throws RunNotFoundError when the run has no history
   */
  stream(): AsyncGenerator<HistoryEntry> {
    return this.follow();
  }
}
