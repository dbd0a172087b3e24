/**
 * Attempts shorter than this on average are worth queueing on a busy worker: the engine's round trip to refill a
 * freed slot (a few ms) is then a large share of each attempt's cycle.
 */
export const SHORT_ATTEMPT_MS = 100;

/**
 * How much work, in time, may wait on one slot: the engine's round trip to refill it, which under a burst of triggers
 * grows with the log it has yet to fold (the outcomes that free slots queue behind the `RunCreated` ahead of them).
 */
export const QUEUE_HORIZON_MS = 50;

/**
 * The most attempts that may wait per slot, however short: bounds how many a worker holds, and how far the attempts
 * waiting there (started in arrival order) can overtake a later one of higher priority.
 */
export const MAX_QUEUED_PER_SLOT = 10;

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

  /**
   * How many attempts of `taskName` may wait per slot on a busy worker: `QUEUE_HORIZON_MS` of its average attempt
   * (at least one, at most `MAX_QUEUED_PER_SLOT`) for a short task; none for a long or new one.
   */
  queuedPerSlot(taskName: string): number {
    const entry = this.byTask.get(taskName);
    if (entry === undefined || entry.samples < MIN_SAMPLES || entry.avgMs >= SHORT_ATTEMPT_MS) return 0;
    return Math.max(1, Math.min(MAX_QUEUED_PER_SLOT, Math.floor(QUEUE_HORIZON_MS / entry.avgMs)));
  }
}
