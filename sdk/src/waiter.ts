import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { decodeRunEnd, isTerminal, type RunEnd, type RunState, subjects } from "@taskjet/schemas";

/** A waiter that has heard nothing this long reads its run (`recheckAt`), then again after twice as long, and so on. */
const RECHECK_FIRST_MS = 5000;
const RECHECK_MAX_MS = 300_000;

/**
 * Waits for one run to finish without a consumer: a plain subscription on `tj.<ns>.ended.<runId>`, where the engine
 * announces how the run ended (`RunEnd`) once it folds the event that ended it. Made before the run's trigger is
 * appended, it cannot miss the announcement; made for a run that may already have ended, `catchUp` reads the run. An
 * end too large for one message (a large output) is announced `slim`: the waiter reads the run (`onSlim`).
 */
export class RunWaiter {
  private readonly sub: Subscription;
  private settled = false;
  private resolveFn!: (end: RunEnd) => void;
  private rejectFn!: (err: unknown) => void;
  /** Resolves with how the run ended. */
  readonly done: Promise<RunEnd>;
  private readonly since = Date.now();
  /** When the client should read the run in case its end was announced and lost (`rechecked`). */
  recheckAt = this.since + RECHECK_FIRST_MS;

  constructor(
    nc: NatsConnection,
    ns: string,
    readonly runId: string,
    private readonly onSettled: (w: RunWaiter) => void,
    private readonly onSlim: (w: RunWaiter) => void,
  ) {
    this.done = new Promise((resolve, reject) => {
      this.resolveFn = resolve;
      this.rejectFn = reject;
    });
    this.sub = nc.subscribe(subjects.ended(ns, runId), {
      callback: (err, msg) => {
        // A refused subscription (permissions) hears nothing: the client's rechecks find the end.
        if (err) return;
        const end = decodeRunEnd(msg.data);
        // Not the engine's: the run's own end still comes, or a catch-up reads it.
        if (end?.runId !== this.runId || this.settled) return;
        if (end.slim) this.onSlim(this);
        else this.adopt(end);
      },
    });
  }

  /**
   * Reads the run (the caller's `read`: projection plus log tail), for a run that may have ended before the
   * subscription existed, e.g. created elsewhere, or after a reconnect (plain messages may have been lost).
   */
  async catchUp(read: () => Promise<RunState | undefined>): Promise<void> {
    if (this.settled) return;
    const state = await read();
    if (state) this.adopt(state);
  }

  /** Read at `now`: the next read after as long again as it has waited (at most `RECHECK_MAX_MS` later). */
  rechecked(now: number): void {
    this.recheckAt = now + Math.min(RECHECK_MAX_MS, now - this.since);
  }

  fail(err: unknown): void {
    if (this.settled) return;
    this.finish();
    this.rejectFn(err);
  }

  private adopt(end: RunEnd): void {
    if (!isTerminal(end.status) || this.settled) return;
    this.finish();
    this.resolveFn(end);
  }

  private finish(): void {
    this.settled = true;
    this.sub.unsubscribe();
    this.onSettled(this);
  }
}
