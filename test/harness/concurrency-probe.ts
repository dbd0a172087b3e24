/**
 * Measures what tasks observe from inside: how many run at once per key (and in total, weighted by cost), and when
 * each started. Tests wrap their task functions with `probe.around(key, ...)`.
 */
export class ConcurrencyProbe {
  private readonly running = new Map<string, number>();
  /** Highest number seen running at once, per key. */
  readonly maxByKey = new Map<string, number>();
  /** Start order and time (ms, monotonic) of every execution. */
  readonly starts: { key: string; at: number }[] = [];
  private total = 0;
  /** Highest total (sum of costs) seen running at once. */
  maxTotal = 0;

  async around<T>(key: string, fn: () => Promise<T>, cost = 1): Promise<T> {
    const now = (this.running.get(key) ?? 0) + 1;
    this.running.set(key, now);
    this.maxByKey.set(key, Math.max(this.maxByKey.get(key) ?? 0, now));
    this.total += cost;
    this.maxTotal = Math.max(this.maxTotal, this.total);
    this.starts.push({ key, at: performance.now() });
    try {
      return await fn();
    } finally {
      this.running.set(key, (this.running.get(key) ?? 1) - 1);
      this.total -= cost;
    }
  }

  /** The most starts of `key` (all keys when absent) inside any window of `windowMs`. */
  maxInWindow(windowMs: number, key?: string): number {
    const times = this.starts.filter((s) => key === undefined || s.key === key).map((s) => s.at);
    let max = 0;
    let lo = 0;
    for (let hi = 0; hi < times.length; hi++) {
      while ((times[hi] as number) - (times[lo] as number) >= windowMs) lo++;
      if (hi - lo + 1 > max && process.env.PROBE_DEBUG) {
        process.stderr.write(
          `window ${key ?? "*"} ${hi - lo + 1}: ${JSON.stringify(times.slice(Math.max(0, lo - 3), hi + 3).map((t) => Math.round(t)))}\n`,
        );
      }
      max = Math.max(max, hi - lo + 1);
    }
    return max;
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
