import type { RateUseRecord } from "@taskjet/schemas";

/**
 * Rate limits as the scheduler enforces them, pure (time is passed in).
 *
 * Two rules together: a hard cap (never more than `limit` units admitted in any window of `duration`), and pacing
 * (units are spread one every `duration / limit`, so a queue of 200 runs under 20/s takes ten seconds instead of
 * leaving in bursts). The cap counts a unit from when its task actually started, not from when it was placed: the
 * placement reserves it, and the start (or the attempt's end, if it never started) settles it. The delay between
 * the two varies (tens of ms while a worker warms up), and counting from placement let a downstream observer see
 * more than `limit` starts in a window. A guard of 10 % (at most 1 s) on the window covers the rest: the worker's start
 * can still trail the engine's sight of it when a process stalls (70 ms and more seen on this 2-core machine under
 * load). Limits are never exceeded at the cost of under-using them: 20/s admits about 18 per second, 60/min about 59.
 */

/** How far ahead of its paced time a unit may be admitted, so one placement pass can admit several. */
const PACING_TOLERANCE_MS = 25;

/** The window the hard cap counts in: the duration plus 10 % (at least 5 ms, at most 1 s). */
export function guardedWindow(durationMs: number): number {
  return durationMs + Math.min(1000, Math.max(5, Math.round(durationMs * 0.1)));
}

/** One key's use of the limit as a task declares it. */
export interface RateUse {
  key: string;
  units: number;
  /** For keys not configured with `setLimit` (dynamic keys): their limit. */
  limit?: number;
  durationMs?: number;
}

/** Admissions of one key, merged into buckets so a high limit keeps a short log. */
interface Bucket {
  start: number;
  last: number;
  units: number;
}

interface KeyState {
  limit: number;
  windowMs: number;
  /** Paced time of the next unit. */
  nextAt: number;
  log: Bucket[];
  head: number;
  sum: number;
  /** Units placed whose tasks have not started yet: they count until settled into the log. */
  reserved: number;
  /** Set by `setLimit`: kept when idle. */
  configured: boolean;
}

/** Why a use cannot be admitted now. */
export type RateBlock =
  | { kind: "until"; at: number; detail: string }
  | { kind: "undefined"; key: string; detail: string }
  /** At the cap with units reserved by placed tasks that have not started: look again when one settles. */
  | { kind: "reserved"; key: string; detail: string }
  | { kind: "never"; detail: string };

/** One key as `snapshot` shows it. */
export interface RateKeySnapshot {
  key: string;
  limit: number;
  /** The window the cap counts in (the duration plus its guard). */
  windowMs: number;
  /** Units admitted within the window at the snapshot's time. */
  used: number;
  /** Units placed whose tasks have not started yet. */
  reserved: number;
  pausedUntil?: number;
}

export class RateLimiter {
  private readonly keys = new Map<string, KeyState>();
  private readonly paused = new Map<string, number>();
  /** Reserved uses by attempt key. */
  private readonly reservations = new Map<string, readonly RateUse[]>();
  private admitted = 0;
  /** Keys whose admissions changed since `takeChanged`. */
  private readonly changed = new Set<string>();

  /** Configures a static limit (`tj.ratelimits.upsert`); the units already admitted still count. */
  setLimit(key: string, limit: number, durationMs: number): void {
    const state = this.keys.get(key);
    if (state) {
      state.limit = limit;
      state.windowMs = guardedWindow(durationMs);
      state.configured = true;
    } else this.keys.set(key, fresh(limit, durationMs, true));
  }

  /** Whether a static key is configured. */
  has(key: string): boolean {
    return this.keys.get(key)?.configured === true;
  }

  /** Nothing is admitted on `key` before `until` (an upstream asked to back off). */
  pause(key: string, until: number): void {
    if ((this.paused.get(key) ?? 0) < until) this.paused.set(key, until);
  }

  /** Whether any key is paused (most of the time none is: callers skip building keys to look up). */
  hasPauses(): boolean {
    return this.paused.size > 0;
  }

  /** Until when `key` is paused, if it is at `now`. */
  pausedUntil(key: string, now: number): number | undefined {
    const until = this.paused.get(key);
    if (until === undefined) return undefined;
    if (until > now) return until;
    this.paused.delete(key);
    return undefined;
  }

  /** Every key's state at `now`, for people (`GET queues`): read-only, nothing expires or is pruned. */
  snapshot(now: number): RateKeySnapshot[] {
    const out: RateKeySnapshot[] = [];
    for (const [key, state] of this.keys) {
      let used = 0;
      for (let i = state.head; i < state.log.length; i++) {
        const bucket = state.log[i] as Bucket;
        if (bucket.last + state.windowMs > now) used += bucket.units;
      }
      const paused = this.paused.get(key);
      out.push({
        key,
        limit: state.limit,
        windowMs: state.windowMs,
        used,
        reserved: state.reserved,
        ...(paused !== undefined && paused > now ? { pausedUntil: paused } : {}),
      });
    }
    // Keys paused by `ctx.rateLimited()` without a limit of their own (a task's pause key).
    for (const [key, until] of this.paused) {
      if (!this.keys.has(key) && until > now) {
        out.push({ key, limit: 0, windowMs: 0, used: 0, reserved: 0, pausedUntil: until });
      }
    }
    return out;
  }

  /** Whether all uses can be admitted at `now`; otherwise the block that lasts longest. */
  check(uses: readonly RateUse[], now: number): RateBlock | undefined {
    let worst: RateBlock | undefined;
    for (const use of uses) {
      const block = this.checkOne(use, now);
      if (!block) continue;
      if (block.kind !== "until") return block;
      if (!worst || (worst.kind === "until" && block.at > worst.at)) worst = block;
    }
    return worst;
  }

  /** Records the admission of all uses at `now` (after `check` allowed it), reserved for `attempt` until it starts. */
  consume(uses: readonly RateUse[], now: number, attempt: string): void {
    if (uses.length === 0) return;
    for (const use of uses) {
      const state = this.stateOf(use);
      if (!state) continue;
      state.nextAt = Math.max(state.nextAt, now) + use.units * (state.windowMs / state.limit);
      state.reserved += use.units;
    }
    this.reservations.set(attempt, uses);
    if (++this.admitted % 4096 === 0) this.prune(now);
  }

  /**
   * The attempt started (or ended without starting) at `now`: its reserved units count in the window from then.
   * Returns the keys settled, whose waiting lanes may now learn when they can go.
   */
  settle(attempt: string, now: number): readonly RateUse[] {
    const uses = this.reservations.get(attempt);
    if (!uses) return [];
    this.reservations.delete(attempt);
    for (const use of uses) {
      const state = this.keys.get(use.key);
      if (!state) continue;
      state.reserved -= use.units;
      const width = Math.max(1, state.windowMs / 1000);
      const tail = state.log[state.log.length - 1];
      if (tail && state.log.length > state.head && now - tail.start < width && now >= tail.last) {
        tail.units += use.units;
        tail.last = now;
      } else state.log.push({ start: now, last: now, units: use.units });
      state.sum += use.units;
      this.changed.add(use.key);
    }
    return uses;
  }

  /** The admissions within their window of each key that admitted more since the last call: what a leader keeps. */
  takeChanged(now: number): RateUseRecord[] {
    const out: RateUseRecord[] = [];
    for (const key of this.changed) {
      const state = this.keys.get(key);
      if (!state) continue;
      expire(state, now);
      const log = state.log.slice(state.head).map((b): [number, number, number] => [b.start, b.last, b.units]);
      out.push({ v: 1, key, limit: state.limit, windowMs: state.windowMs, log });
    }
    this.changed.clear();
    return out;
  }

  /** `key`'s admissions are to be taken again (their write failed). */
  markChanged(key: string): void {
    this.changed.add(key);
  }

  /**
   * Counts what an earlier leader admitted on a key (`takeChanged`), before this one admits anything: a limit holds
   * across a restart or a failover. Paced from the last of them.
   */
  restore(record: RateUseRecord, now: number): void {
    const live = record.log.filter(([, last]) => last + record.windowMs > now);
    if (live.length === 0) return;
    const state = this.keys.get(record.key) ?? {
      limit: record.limit,
      windowMs: record.windowMs,
      nextAt: 0,
      log: [],
      head: 0,
      sum: 0,
      reserved: 0,
      configured: false,
    };
    this.keys.set(record.key, state);
    for (const [start, last, units] of live) {
      state.log.push({ start, last, units });
      state.sum += units;
      state.nextAt = Math.max(state.nextAt, last + units * (state.windowMs / state.limit));
    }
    state.log = state.log.slice(state.head).sort((a, b) => a.start - b.start);
    state.head = 0;
  }

  private checkOne(use: RateUse, now: number): RateBlock | undefined {
    const paused = this.pausedUntil(use.key, now);
    if (paused !== undefined) {
      return { kind: "until", at: paused, detail: `rate limit key "${use.key}" paused until ${iso(paused)}` };
    }
    const state = this.stateOf(use);
    if (!state) {
      return {
        kind: "undefined",
        key: use.key,
        detail: `rate limit "${use.key}" is not defined (tj.ratelimits.upsert)`,
      };
    }
    if (use.units > state.limit) {
      return { kind: "never", detail: `needs ${use.units} units of "${use.key}", whose limit is ${state.limit}` };
    }
    expire(state, now);
    const paced = state.nextAt - PACING_TOLERANCE_MS;
    let at = paced > now ? paced : 0;
    const inUse = state.sum + state.reserved;
    if (inUse + use.units > state.limit) {
      // Reserved units leave the window only after their tasks start: until one does, nothing tells when.
      if (state.reserved + use.units > state.limit) {
        return {
          kind: "reserved",
          key: use.key,
          detail: `rate limit "${use.key}" (${state.limit} per window) is in use`,
        };
      }
      // The cap: wait until enough of the oldest starts leave the window.
      let remaining = inUse;
      for (let i = state.head; i < state.log.length && remaining + use.units > state.limit; i++) {
        const bucket = state.log[i] as Bucket;
        remaining -= bucket.units;
        at = Math.max(at, bucket.last + state.windowMs);
      }
    }
    if (at === 0) return undefined;
    return { kind: "until", at, detail: `rate limit "${use.key}" (${state.limit} per window) until ${iso(at)}` };
  }

  private stateOf(use: RateUse): KeyState | undefined {
    let state = this.keys.get(use.key);
    if (state?.configured) return state;
    if (use.limit === undefined || use.durationMs === undefined) return undefined;
    if (!state) {
      state = fresh(use.limit, use.durationMs, false);
      this.keys.set(use.key, state);
    } else {
      state.limit = use.limit;
      state.windowMs = guardedWindow(use.durationMs);
    }
    return state;
  }

  /** Forgets dynamic keys that have nothing left in their window. */
  private prune(now: number): void {
    for (const [key, state] of this.keys) {
      if (state.configured) continue;
      expire(state, now);
      if (state.sum === 0 && state.reserved === 0 && state.nextAt <= now) this.keys.delete(key);
    }
  }
}

function fresh(limit: number, durationMs: number, configured: boolean): KeyState {
  return { limit, windowMs: guardedWindow(durationMs), nextAt: 0, log: [], head: 0, sum: 0, reserved: 0, configured };
}

function expire(state: KeyState, now: number): void {
  while (state.head < state.log.length) {
    const bucket = state.log[state.head] as Bucket;
    if (bucket.last + state.windowMs > now) break;
    state.sum -= bucket.units;
    state.head++;
  }
  if (state.head > 64 && state.head * 2 > state.log.length) {
    state.log = state.log.slice(state.head);
    state.head = 0;
  }
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
