import { describe, expect, it } from "vitest";
import { retryDelayMs } from "./retry-delay.js";
import { type Clock, Timers } from "./timers.js";

/** A clock whose time moves only when the test says so. */
function fakeClock() {
  let now = 1_000_000;
  const pending = new Map<number, { at: number; fn: () => void }>();
  let id = 0;
  let sets = 0;
  const clock: Clock = {
    now: () => now,
    setTimeout: (fn, ms) => {
      // As Node does: a delay that does not fit in 32 bits becomes 1 ms.
      sets++;
      pending.set(++id, { at: now + (ms > 2 ** 31 - 1 ? 1 : ms), fn });
      return id;
    },
    clearTimeout: (h) => {
      pending.delete(h as number);
    },
  };
  const advance = (ms: number) => {
    now += ms;
    for (const [h, t] of [...pending].sort((a, b) => a[1].at - b[1].at)) {
      if (t.at <= now && pending.delete(h)) t.fn();
    }
  };
  return { clock, advance, armed: () => pending.size, now: () => now, sets: () => sets };
}

describe("timers", () => {
  it("timers - due timers wait while the lease is not confirmed, then fire in order, once", () => {
    const c = fakeClock();
    let ok = false;
    let resume: (() => void) | undefined;
    const timers = new Timers(c.clock, {
      get ok() {
        return ok;
      },
      whenOk: (fn) => {
        resume = fn;
      },
    });
    const fired: string[] = [];
    timers.set("b", c.now() + 20, () => fired.push("b"));
    timers.set("a", c.now() + 10, () => fired.push("a"));
    c.advance(30);
    expect(fired).toEqual([]);
    timers.set("c", c.now() + 5, () => fired.push("c"));
    c.advance(10);
    expect(fired).toEqual([]);
    ok = true;
    resume?.();
    expect(fired).toEqual(["a", "b", "c"]);
    c.advance(100);
    expect(fired).toEqual(["a", "b", "c"]);
  });

  it("timers - a timer further out than a host timeout can wait (~24.8 days) fires on its day, not at once", () => {
    const c = fakeClock();
    const timers = new Timers(c.clock);
    let fired = 0;
    timers.set("far", c.now() + 30 * 86_400_000, () => fired++);
    for (let i = 0; i < 10; i++) c.advance(1);
    expect(c.sets()).toBe(1); // no host timer spinning every millisecond
    c.advance(2 ** 31 - 11);
    expect(fired).toBe(0);
    expect(c.armed()).toBe(1);
    c.advance(30 * 86_400_000 - (2 ** 31 - 1));
    expect(fired).toBe(1);
  });

  it("timers - one shared callback serves many timers, each given its own argument", () => {
    const c = fakeClock();
    const timers = new Timers(c.clock);
    const fired: number[] = [];
    const onDue = (n: number) => fired.push(n);
    for (const n of [3, 1, 2]) timers.set(`k${n}`, c.now() + n * 10, onDue, n);
    timers.cancel("k2");
    c.advance(100);
    expect(fired).toEqual([1, 3]);
  });

  it("timers - fire in due order, once, with one host timer armed", () => {
    const c = fakeClock();
    const timers = new Timers(c.clock);
    const fired: string[] = [];
    timers.set("b", c.now() + 200, () => fired.push("b"));
    timers.set("a", c.now() + 100, () => fired.push("a"));
    timers.set("c", c.now() + 300, () => fired.push("c"));
    expect(c.armed()).toBe(1);
    c.advance(150);
    expect(fired).toEqual(["a"]);
    c.advance(1000);
    expect(fired).toEqual(["a", "b", "c"]);
    expect(timers.size).toBe(0);
  });

  it("timers - replacing or cancelling a key drops the old entry", () => {
    const c = fakeClock();
    const timers = new Timers(c.clock);
    const fired: string[] = [];
    timers.set("x", c.now() + 100, () => fired.push("x1"));
    timers.set("x", c.now() + 500, () => fired.push("x2"));
    timers.set("y", c.now() + 50, () => fired.push("y"));
    timers.cancel("y");
    c.advance(200);
    expect(fired).toEqual([]);
    c.advance(400);
    expect(fired).toEqual(["x2"]);
  });

  it("timers - a timer already due fires on the next turn; stop() silences everything", () => {
    const c = fakeClock();
    const timers = new Timers(c.clock);
    const fired: string[] = [];
    timers.set("late", c.now() - 1000, () => fired.push("late"));
    c.advance(0);
    expect(fired).toEqual(["late"]);
    timers.set("never", c.now() + 10, () => fired.push("never"));
    timers.stop();
    c.advance(100);
    expect(fired).toEqual(["late"]);
  });
});

describe("timers - churn", () => {
  it("timers - many timers set and cancelled keep the heap bounded and the survivors firing", () => {
    const c = fakeClock();
    const timers = new Timers(c.clock);
    const fired: string[] = [];
    for (let i = 0; i < 50_000; i++) {
      timers.set(`t${i}`, c.now() + 60_000, () => fired.push(`t${i}`));
      if (i % 1000 !== 0) timers.cancel(`t${i}`);
    }
    expect(timers.size).toBe(50);
    expect((timers as unknown as { heap: { size: number } }).heap.size).toBeLessThan(2 * 50 + 1024 + 2);
    c.advance(60_000);
    expect(fired).toHaveLength(50);
  });
});

describe("retry delay", () => {
  it("retries - backoff is min(maxSeconds, factor^n) seconds; without it a short fixed delay", () => {
    const policy = { retries: 5, backoff: { factor: 2, maxSeconds: 10, jitter: false } };
    expect([1, 2, 3, 4, 5].map((n) => retryDelayMs(policy, n))).toEqual([2000, 4000, 8000, 10000, 10000]);
    expect(retryDelayMs({ retries: 3 }, 1)).toBe(100);
  });

  it("retries - jitter spreads the delay by ±50 % and never passes the cap", () => {
    const policy = { retries: 5, backoff: { factor: 2, maxSeconds: 10, jitter: true } };
    expect(retryDelayMs(policy, 1, () => 0)).toBe(1000);
    expect(retryDelayMs(policy, 1, () => 0.999)).toBe(2998);
    expect(retryDelayMs(policy, 4, () => 0.999)).toBe(10000);
  });
});
