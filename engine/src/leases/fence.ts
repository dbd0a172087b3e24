/** What a leader's parts ask before acting for its namespace: `Fence`, or nothing in tests. */
export interface Gate {
  readonly ok: boolean;
  /** Runs `fn` once the lease is confirmed again; never once it is gone. Call only when `ok` is false. */
  whenOk(fn: () => void): void;
}

/**
 * Whether a leader may still act for its namespace. Another replica takes a lease once the bucket's TTL has passed
 * since the holder's last renewal, or at once when the holder's connection is gone. A leader frozen meanwhile (a stopped
 * process, a suspended VM, a machine starved for seconds) wakes up with buffered messages and overdue timers that run
 * before its next renewal tells it it lost. What it would do then that the per-run CAS does not fence (assignments that
 * run a task a second time, cron ticks fired late, stale states written over the new leader's) waits until a renewal
 * sent within the window confirms the lease; when the lease turns out lost, it never happens.
 */
export class Fence implements Gate {
  private confirmedAt = Number.NEGATIVE_INFINITY;
  private readonly waiting = new Set<() => void>();
  private dropped = false;

  /**
   * @param windowMs how long after a renewal was sent no other replica can have taken the lease (under the TTL)
   * @param kick renews at once (something waits)
   */
  constructor(
    private readonly windowMs: number,
    private readonly kick: () => void,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get ok(): boolean {
    return this.now() - this.confirmedAt < this.windowMs;
  }

  /** A renewal (or the creation) of the lease sent at `sentAt`, by this fence's clock, succeeded. */
  confirm(sentAt: number): void {
    if (sentAt > this.confirmedAt) this.confirmedAt = sentAt;
    if (this.waiting.size === 0 || !this.ok) return;
    const waiting = [...this.waiting];
    this.waiting.clear();
    for (const fn of waiting) fn();
  }

  /** The connection dropped: the others found no one answering and may have taken the lease. */
  lapse(): void {
    this.confirmedAt = Number.NEGATIVE_INFINITY;
  }

  whenOk(fn: () => void): void {
    if (this.dropped) return;
    const first = this.waiting.size === 0;
    this.waiting.add(fn);
    if (first) this.kick();
  }

  /** The lease is gone or given up: what waits never runs. */
  drop(): void {
    this.dropped = true;
    this.waiting.clear();
  }
}
