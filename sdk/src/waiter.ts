import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { decodeRunEnd, isTerminal, type RunEnd, type RunState, subjects } from "@taskjet/schemas";

/** A waiter that has heard nothing this long reads its run (`recheckAt`), then again after twice as long, and so on. */
const RECHECK_FIRST_MS = 5000;
const RECHECK_MAX_MS = 300_000;

/** Outstanding waiters of one client from which new ones listen through `SharedEnds` instead of alone. */
export const SHARED_FROM = 32;

/**
 * One subscription on `tj.<ns>.ended.*` for the waiters a client makes while many are outstanding. A subscription
 * per run costs every server of a cluster two interest changes per run (subscribe, unsubscribe) to apply and pass on:
 * on the R3 cluster, 1,000 `run()`s in flight spent 11-29 % more of the three servers' CPU per task than the same runs
 * heard by one listener (`throughput.ts --mode ends`). Shared, the client hears the ends of runs it does not wait for
 * too, so it is used only from `SHARED_FROM` waiters on, and dropped when its last waiter settles.
 */
export class SharedEnds {
  private sub: Subscription | undefined;
  private readonly byRun = new Map<string, Set<RunWaiter>>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly ns: string,
  ) {}

  /** Whether waiters listen here now. */
  get active(): boolean {
    return this.sub !== undefined;
  }

  /** Listens for `waiter`'s run; the subscription is sent before anything the caller publishes next. */
  add(waiter: RunWaiter): void {
    this.sub ??= this.nc.subscribe(subjects.endedAll(this.ns), {
      callback: (err, msg) => {
        // A refused subscription (permissions) hears nothing: the client's rechecks find the ends.
        if (err) return;
        const end = decodeRunEnd(msg.data);
        const waiters = end && this.byRun.get(end.runId);
        if (end && waiters) for (const w of [...waiters]) w.hear(end);
      },
    });
    const waiters = this.byRun.get(waiter.runId);
    if (waiters) waiters.add(waiter);
    else this.byRun.set(waiter.runId, new Set([waiter]));
  }

  remove(waiter: RunWaiter): void {
    const waiters = this.byRun.get(waiter.runId);
    if (!waiters?.delete(waiter)) return;
    if (waiters.size === 0) this.byRun.delete(waiter.runId);
    if (this.byRun.size === 0) {
      this.sub?.unsubscribe();
      this.sub = undefined;
    }
  }
}

/**
 * Waits for one run to finish without a consumer: a plain subscription on `tj.<ns>.ended.<runId>` (or the client's
 * `SharedEnds`), where the engine announces how the run ended (`RunEnd`) once it folds the event that ended it. Made
 * before the run's trigger is appended, it cannot miss the announcement; made for a run that may already have ended,
 * `catchUp` reads the run. An end too large for one message (a large output) is announced `slim`: the waiter reads
 * the run (`onSlim`).
 */
export class RunWaiter {
  private readonly sub: Subscription | undefined;
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
    private readonly shared?: SharedEnds,
  ) {
    this.done = new Promise((resolve, reject) => {
      this.resolveFn = resolve;
      this.rejectFn = reject;
    });
    if (shared) {
      shared.add(this);
      return;
    }
    this.sub = nc.subscribe(subjects.ended(ns, runId), {
      callback: (err, msg) => {
        // A refused subscription (permissions) hears nothing: the client's rechecks find the end.
        if (!err) this.hear(decodeRunEnd(msg.data));
      },
    });
  }

  /** An announcement heard on the run's subject. */
  hear(end: RunEnd | undefined): void {
    // Not the engine's: the run's own end still comes, or a catch-up reads it.
    if (end?.runId !== this.runId || this.settled) return;
    if (end.slim) this.onSlim(this);
    else this.adopt(end);
  }

  /**
   * Reads the run (the caller's `read`: projection plus log tail), for a run that may have ended before the
   * subscription existed, e.g. created elsewhere, or after a reconnect (plain messages may have been lost).
   */
  /** @returns whether the run exists (or this waiter has already settled) */
  async catchUp(read: () => Promise<RunState | undefined>): Promise<boolean> {
    if (this.settled) return true;
    const state = await read();
    if (state) this.adopt(state);
    return state !== undefined;
  }

  /** Read at `now`: the next read after as long again as it has waited (at most `RECHECK_MAX_MS` later). */
  rechecked(now: number): void {
    this.recheckAt = now + Math.min(RECHECK_MAX_MS, now - this.since);
  }

  /** Stops listening, its caller having failed before waiting (`done` never settles). */
  abandon(): void {
    if (!this.settled) this.finish();
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
    this.sub?.unsubscribe();
    this.shared?.remove(this);
    this.onSettled(this);
  }
}
