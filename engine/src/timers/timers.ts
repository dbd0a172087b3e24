import type { Gate } from "../leases/fence.js";
import { MinHeap } from "../scheduler/min-heap.js";

/** Time as the engine sees it: injected so timer logic is tested without sleeping. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

const MAX_TIMEOUT_MS = 2 ** 31 - 1;

interface Entry {
  key: string;
  due: number;
  fn: (arg: unknown) => void;
  arg: unknown;
}

/**
 * The engine's one timer heap (nats-server 2.9 has no message scheduling): retry backoffs now, timeouts and schedules
 * later. A min-heap by due time with lazy deletion, and a single armed host timer for the earliest entry.
 */
export class Timers {
  private readonly heap = new MinHeap<Entry>();
  private readonly live = new Map<string, Entry>();
  private armed: { handle: unknown; due: number } | undefined;
  private stopped = false;

  private readonly fireNow = () => this.fire();

  /** @param fence due timers wait while it is closed (a cron tick fired by a deposed leader would be late and twice) */
  constructor(
    private readonly clock: Clock = systemClock,
    private readonly fence?: Gate,
  ) {}

  /**
   * Runs `fn(arg)` at `due` (epoch ms); replaces a timer with the same key. With `arg`, one `fn` serves many timers:
   * no closure per timer (a closure with its scopes costs ~130 bytes, and each of a million queued attempts has one).
   */
  set<A = undefined>(key: string, due: number, fn: (arg: A) => void, arg?: A): void {
    if (this.stopped) return;
    const entry: Entry = { key, due, fn: fn as (arg: unknown) => void, arg };
    this.live.set(key, entry);
    this.heap.push(due, entry);
    // Cancelled and replaced entries stay in the heap until they surface; most timers (execution timeouts) are
    // cancelled long before they are due, so drop the dead at once when they outnumber the live ones.
    if (this.heap.size > 2 * this.live.size + 1024) this.heap.retain((e) => this.live.get(e.key) === e);
    this.arm();
  }

  cancel(key: string): void {
    this.live.delete(key);
  }

  has(key: string): boolean {
    return this.live.has(key);
  }

  /** When the live timer of `key` is due, if there is one. */
  dueOf(key: string): number | undefined {
    return this.live.get(key)?.due;
  }

  get size(): number {
    return this.live.size;
  }

  /** The time of the clock the timers fire by. */
  now(): number {
    return this.clock.now();
  }

  stop(): void {
    this.stopped = true;
    if (this.armed) this.clock.clearTimeout(this.armed.handle);
    this.armed = undefined;
    this.live.clear();
    this.heap.retain(() => false);
  }

  private arm(): void {
    const next = this.peek();
    if (!next) return;
    if (this.armed && this.armed.due <= next.due) return;
    if (this.armed) this.clock.clearTimeout(this.armed.handle);
    // Node fires a longer timeout at once (it takes the delay as 32 bits): wake early and re-arm instead.
    const delay = Math.min(MAX_TIMEOUT_MS, Math.max(0, next.due - this.clock.now()));
    this.armed = { due: next.due, handle: this.clock.setTimeout(() => this.fire(), delay) };
  }

  private fire(): void {
    this.armed = undefined;
    if (this.fence && !this.fence.ok) {
      this.fence.whenOk(this.fireNow);
      return;
    }
    const now = this.clock.now();
    for (let next = this.peek(); next && next.due <= now; next = this.peek()) {
      this.heap.pop();
      this.live.delete(next.key);
      next.fn(next.arg);
    }
    this.arm();
  }

  /** The earliest entry still live (dropping cancelled and replaced ones). */
  private peek(): Entry | undefined {
    for (;;) {
      const top = this.heap.top();
      if (!top || this.live.get(top.key) === top) return top;
      this.heap.pop();
    }
  }
}
