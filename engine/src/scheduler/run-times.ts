/**
 * Attempts shorter than this on average are worth queueing on a busy worker: the engine's round trip to refill a
 * freed slot (a few ms) is then a large share of each attempt's cycle.
 */
export const SHORT_ATTEMPT_MS = 100;

/** Attempts seen before a task counts as short: its first ones never wait on a busy worker. */
const MIN_SAMPLES = 3;

/** Weight of the newest attempt in the moving average: a run of long ones turns a task long within a few. */
const ALPHA = 0.25;

/**
 * How long each task's attempts run (start to outcome, both the worker's clock), as an exponential moving average.
 * The scheduler queues attempts of short tasks on workers whose slots are all taken (`SchedulerCore.bestWorker`).
 */
export class RunTimes {
  private readonly byTask = new Map<string, { avgMs: number; samples: number }>();

  observe(taskName: string, ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) return;
    const entry = this.byTask.get(taskName);
    if (!entry) this.byTask.set(taskName, { avgMs: ms, samples: 1 });
    else {
      entry.avgMs += ALPHA * (ms - entry.avgMs);
      entry.samples++;
    }
  }

  isShort(taskName: string): boolean {
    const entry = this.byTask.get(taskName);
    return entry !== undefined && entry.samples >= MIN_SAMPLES && entry.avgMs < SHORT_ATTEMPT_MS;
  }
}
