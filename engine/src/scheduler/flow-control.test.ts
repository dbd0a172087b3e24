import { describe, expect, it } from "vitest";
import { type Flow, NO_FLOW, type QueuedTask, SchedulerCore } from "./core.js";
import { RateLimiter } from "./rate-limiter.js";

let order = 0;
function task(taskName: string, flow: Partial<Flow> = {}, priority = 1): QueuedTask {
  const n = ++order;
  return {
    runId: `r${n}`,
    taskRunId: `r${n}-0`,
    taskName,
    attempt: 0,
    order: n,
    priority,
    flow: { ...NO_FLOW, ...flow },
  };
}
const group = (
  id: string,
  maxRuns = 1,
  strategy: "GROUP_ROUND_ROBIN" | "CANCEL_IN_PROGRESS" | "CANCEL_NEWEST" = "GROUP_ROUND_ROBIN",
) => ({
  lane: id,
  groups: [{ id, maxRuns, strategy }],
});

describe("flow control in the scheduler core", () => {
  it("concurrency - never more than maxRuns per group; a full group does not hold up another", () => {
    const core = new SchedulerCore();
    core.upsertWorker({ workerId: "w", tasks: ["a"], slots: 100 });
    for (let i = 0; i < 5; i++) core.enqueue(task("a", group("k1", 2)));
    core.enqueue(task("a", group("k2", 2)));
    const placed = core.place(0);
    expect(placed.map((p) => p.task.flow?.lane)).toEqual(["k1", "k2", "k1"]);
    expect(core.groupUsage("k1")).toBe(2);
    expect(core.place(0)).toEqual([]);
    core.finish(placed[0]?.task as QueuedTask);
    expect(core.place(0).map((p) => p.task.flow?.lane)).toEqual(["k1"]);
    expect(core.groupUsage("k1")).toBe(2);
  });

  it("GROUP_ROUND_ROBIN - a key with many queued runs does not starve a key with few", () => {
    const core = new SchedulerCore();
    for (let i = 0; i < 1000; i++) core.enqueue(task("a", { lane: "big" }));
    for (let i = 0; i < 10; i++) core.enqueue(task("a", { lane: "small" }));
    core.upsertWorker({ workerId: "w", tasks: ["a"], slots: 20 });
    const lanes = core.place(0).map((p) => p.task.flow?.lane);
    expect(lanes.filter((l) => l === "small")).toHaveLength(10);
    expect(lanes.slice(0, 4)).toEqual(["big", "small", "big", "small"]);
  });

  it("priority - higher priority lanes are served first, round robin among equals", () => {
    const core = new SchedulerCore();
    core.enqueue(task("a", { lane: "x" }, 1));
    core.enqueue(task("a", { lane: "y" }, 3));
    core.enqueue(task("b", {}, 2));
    core.upsertWorker({ workerId: "w", tasks: ["a", "b"], slots: 10 });
    expect(core.place(0).map((p) => p.task.priority)).toEqual([3, 2, 1]);
  });

  it("CANCEL_NEWEST - the incoming run is cancelled when its group is full", () => {
    const core = new SchedulerCore();
    core.upsertWorker({ workerId: "w", tasks: ["a"], slots: 10 });
    expect(core.enqueue(task("a", group("g", 1, "CANCEL_NEWEST")))).toEqual([]);
    const newest = task("a", group("g", 1, "CANCEL_NEWEST"));
    const [cancel] = core.enqueue(newest);
    expect(cancel?.task).toBe(newest);
    expect(cancel?.reason).toMatch(/CANCEL_NEWEST/);
    expect(core.place(0)).toHaveLength(1);
    expect(core.place(0)).toHaveLength(0);
  });

  it("CANCEL_IN_PROGRESS - the oldest member is cancelled; the new run starts once it finished", () => {
    const core = new SchedulerCore();
    core.upsertWorker({ workerId: "w", tasks: ["a"], slots: 10 });
    const first = task("a", group("g", 1, "CANCEL_IN_PROGRESS"));
    core.enqueue(first);
    expect(core.place(0)).toHaveLength(1);
    const second = task("a", group("g", 1, "CANCEL_IN_PROGRESS"));
    const cancels = core.enqueue(second);
    expect(cancels.map((c) => c.task)).toEqual([first]);
    expect(core.place(0)).toEqual([]); // the victim still runs until its cancellation is recorded
    // A third arrives before that: the queued second is the one to go now.
    const third = task("a", group("g", 1, "CANCEL_IN_PROGRESS"));
    expect(core.enqueue(third).map((c) => c.task)).toEqual([second]);
    core.finish(first);
    core.finish(second);
    expect(core.place(0).map((p) => p.task)).toEqual([third]);
  });

  it("several rules - a run one CANCEL_NEWEST rule refuses evicts nobody under its CANCEL_IN_PROGRESS rule", () => {
    const core = new SchedulerCore();
    core.upsertWorker({ workerId: "w", tasks: ["a"], slots: 1 });
    const rules = (a: string, b: string) => ({
      lane: `${a}/${b}`,
      groups: [
        { id: `a:${a}`, maxRuns: 1, strategy: "CANCEL_IN_PROGRESS" as const },
        { id: `b:${b}`, maxRuns: 1, strategy: "CANCEL_NEWEST" as const },
      ],
    });
    const running = task("a", rules("w", "y"));
    core.enqueue(running);
    expect(core.place(0).map((p) => p.task)).toEqual([running]);
    const queued = task("a", rules("x", "z"));
    expect(core.enqueue(queued)).toEqual([]);
    // a:x is full (queued) and b:y is full (running): b's rule refuses the newest; a's must not evict for it.
    const newest = task("a", rules("x", "y"));
    expect(core.enqueue(newest).map((c) => c.task)).toEqual([newest]);
    core.finish(running);
    expect(core.place(0).map((p) => p.task)).toEqual([queued]);
  });

  it("concurrency - with a rule per key and a shared one, keys take turns whatever the order of the rules", () => {
    for (const perKeyFirst of [true, false]) {
      const core = new SchedulerCore();
      core.upsertWorker({ workerId: "w", tasks: ["a"], slots: 1 });
      const flowOf = (key: string) => {
        const own = { id: `k:${key}`, maxRuns: 1, strategy: "GROUP_ROUND_ROBIN" as const };
        const shared = { id: "global", maxRuns: 1, strategy: "GROUP_ROUND_ROBIN" as const };
        return { lane: key, groups: perKeyFirst ? [own, shared] : [shared, own] };
      };
      for (let i = 0; i < 5; i++) core.enqueue(task("a", flowOf("A")));
      for (let i = 0; i < 2; i++) core.enqueue(task("a", flowOf("B")));
      const served: string[] = [];
      for (let placed = core.place(0); placed.length > 0; placed = core.place(0)) {
        for (const p of placed) {
          served.push(p.task.flow?.lane as string);
          core.finish(p.task);
        }
      }
      expect(served.join(""), `per-key rule first: ${perKeyFirst}`).toBe("ABABAAA");
    }
  });

  describe("a run waiting out a retry backoff", () => {
    /** A placed run of group g whose attempt 0 failed with a retry to come; its attempt 1 to queue later. */
    function failedOnce(core: SchedulerCore, strategy: "CANCEL_IN_PROGRESS" | "CANCEL_NEWEST" | "GROUP_ROUND_ROBIN") {
      core.upsertWorker({ workerId: "w", tasks: ["a"], slots: 10 });
      const first = task("a", group("g", 1, strategy));
      core.enqueue(first);
      expect(core.place(0)).toHaveLength(1);
      core.finish(first);
      core.awaitRetry(first);
      return { first, retry: { ...first, attempt: 1, order: first.order + 100 } };
    }

    it("CANCEL_NEWEST - keeps its place: a run arriving meanwhile is the one cancelled, and the retry runs", () => {
      const core = new SchedulerCore();
      const { retry } = failedOnce(core, "CANCEL_NEWEST");
      const newer = task("a", group("g", 1, "CANCEL_NEWEST"));
      expect(core.enqueue(newer).map((c) => c.task)).toEqual([newer]);
      expect(core.enqueue(retry)).toEqual([]);
      expect(core.place(0).map((p) => p.task)).toEqual([retry]);
    });

    it("CANCEL_IN_PROGRESS - a run arriving meanwhile cancels it and runs at once", () => {
      const core = new SchedulerCore();
      const { first } = failedOnce(core, "CANCEL_IN_PROGRESS");
      const newer = task("a", group("g", 1, "CANCEL_IN_PROGRESS"));
      expect(core.enqueue(newer).map((c) => c.task)).toEqual([first]);
      expect(core.place(0).map((p) => p.task)).toEqual([newer]);
    });

    it("GROUP_ROUND_ROBIN - frees its place meanwhile: a run arriving starts, the retry waits for it", () => {
      const core = new SchedulerCore();
      const { retry } = failedOnce(core, "GROUP_ROUND_ROBIN");
      const newer = task("a", group("g", 1));
      expect(core.enqueue(newer)).toEqual([]);
      expect(core.place(0).map((p) => p.task)).toEqual([newer]);
      core.enqueue(retry);
      expect(core.place(0)).toEqual([]);
    });

    it("its run ending (finish of the failed attempt, or dropRetry) frees the place it kept", () => {
      const core = new SchedulerCore();
      const { first } = failedOnce(core, "CANCEL_NEWEST");
      core.finish(first);
      expect(core.enqueue(task("a", group("g", 1, "CANCEL_NEWEST")))).toEqual([]);
      const other = new SchedulerCore();
      const kept = failedOnce(other, "CANCEL_NEWEST");
      other.dropRetry(kept.first.taskRunId);
      expect(other.awaitsRetries()).toBe(false);
      expect(other.enqueue(task("a", group("g", 1, "CANCEL_NEWEST")))).toEqual([]);
    });
  });

  it("rate limits - paced and capped; a lane waits with a wake-up time and moves when it comes", () => {
    const core = new SchedulerCore();
    core.setRateLimit("api", 2, 1000);
    core.upsertWorker({ workerId: "w", tasks: ["a"], slots: 100 });
    for (let i = 0; i < 5; i++) core.enqueue(task("a", { rates: [{ key: "api", units: 1 }] }));
    expect(core.place(0)).toHaveLength(1);
    const wake = core.nextWakeAt() as number;
    expect(wake).toBeGreaterThan(400);
    expect(core.place(wake - 1)).toHaveLength(0);
    expect(core.place(wake)).toHaveLength(1);
    const [wait] = core.drainWaits();
    expect(wait?.reason).toBe("RATE_LIMIT");
  });

  it("rate limits - an undefined static key waits until it is defined", () => {
    const core = new SchedulerCore();
    core.upsertWorker({ workerId: "w", tasks: ["a"], slots: 100 });
    core.enqueue(task("a", { rates: [{ key: "later", units: 1 }] }));
    expect(core.place(0)).toHaveLength(0);
    expect(core.drainWaits()[0]?.detail).toMatch(/not defined/);
    core.setRateLimit("later", 10, 1000);
    expect(core.place(0)).toHaveLength(1);
  });

  it("pause - a paused key holds its lanes until the time passes", () => {
    const core = new SchedulerCore();
    core.upsertWorker({ workerId: "w", tasks: ["a"], slots: 100 });
    core.pauseKey("user-1", 5000);
    core.enqueue(task("a", { lane: "user-1", rates: [{ key: "user-1", units: 1, limit: 100, durationMs: 1000 }] }));
    core.enqueue(task("a", { lane: "user-2", rates: [{ key: "user-2", units: 1, limit: 100, durationMs: 1000 }] }));
    expect(core.place(1000).map((p) => p.task.flow?.lane)).toEqual(["user-2"]);
    expect(core.nextWakeAt()).toBe(5000);
    expect(core.place(5000).map((p) => p.task.flow?.lane)).toEqual(["user-1"]);
  });

  it("labels - required labels filter, weights rank, then free slots", () => {
    const core = new SchedulerCore();
    core.upsertWorker({ workerId: "small", tasks: ["a"], slots: 10, labels: { memory: 128 } });
    core.upsertWorker({ workerId: "big", tasks: ["a"], slots: 10, labels: { memory: 512 } });
    core.upsertWorker({ workerId: "gpu", tasks: ["a"], slots: 10, labels: { memory: 256, gpu: "a100" } });
    const labels = [
      {
        key: "memory",
        desired: { value: 256, required: true, comparator: "GREATER_THAN_OR_EQUAL" as const, weight: 100 },
      },
      { key: "gpu", desired: { value: "a100", required: false, comparator: "EQUAL" as const, weight: 10 } },
    ];
    for (let i = 0; i < 12; i++) core.enqueue(task("a", { labels }));
    const placed = core.place(0);
    expect(placed.filter((p) => p.workerId === "small")).toHaveLength(0);
    expect(placed.slice(0, 10).every((p) => p.workerId === "gpu")).toBe(true);
    expect(placed.slice(10).every((p) => p.workerId === "big")).toBe(true);
  });

  it("sticky - HARD requires its worker even when others are free; SOFT prefers it and falls back", () => {
    const core = new SchedulerCore();
    core.upsertWorker({ workerId: "w1", tasks: ["a"], slots: 1 });
    core.upsertWorker({ workerId: "w2", tasks: ["a"], slots: 5 });
    const busy = task("a");
    core.hold(busy, "w1");
    const hard = task("a", { lane: "@w1", sticky: { mode: "HARD", workerId: "w1" } });
    const soft = task("a", { sticky: { mode: "SOFT", workerId: "w1" } });
    core.enqueue(hard);
    core.enqueue(soft);
    expect(core.place(0)).toEqual([{ task: soft, workerId: "w2" }]);
    core.finish(busy);
    expect(core.place(5000)).toEqual([{ task: hard, workerId: "w1" }]);
  });

  it("sticky and labels - a SOFT-sticky worker that lost a required label is not used", () => {
    const core = new SchedulerCore();
    core.upsertWorker({ workerId: "w1", tasks: ["a"], slots: 5, labels: { zone: "b" } });
    core.upsertWorker({ workerId: "w2", tasks: ["a"], slots: 5, labels: { zone: "a" } });
    const labels = [
      { key: "zone", desired: { value: "a", required: true, comparator: "EQUAL" as const, weight: 100 } },
    ];
    core.enqueue(task("a", { labels, sticky: { mode: "SOFT", workerId: "w1" } }));
    expect(core.place(0).map((p) => p.workerId)).toEqual(["w2"]);
    core.enqueue(task("a", { labels, lane: "@w1", sticky: { mode: "HARD", workerId: "w1" } }));
    expect(core.place(0)).toEqual([]);
    expect(core.drainWaits().map((w) => w.reason)).toEqual(["NO_WORKER"]);
  });

  it("slot cost - a task takes n slots on one worker, never over-commits it, and smaller work fills the rest", () => {
    const core = new SchedulerCore();
    core.upsertWorker({ workerId: "w", tasks: ["a", "b"], slots: 4 });
    core.enqueue(task("a", { slotCost: 3 }));
    core.enqueue(task("a", { slotCost: 3 }));
    core.enqueue(task("b"));
    expect(core.place(0).map((p) => p.task.taskName)).toEqual(["a", "b"]);
    expect(core.usage("w")).toBe(4);
    expect(core.depths().get("a")).toBe(1);
  });
});

describe("rate limiter", () => {
  it("never lets more than the limit start in any window, whatever the start delays, and spreads admissions", () => {
    const limiter = new RateLimiter();
    limiter.setLimit("k", 20, 1000);
    const uses = [{ key: "k", units: 1 }];
    const starts: number[] = [];
    const pending: { id: string; at: number }[] = [];
    let seed = 7;
    const delay = () => {
      seed = (seed * 48271) % 2147483647;
      return seed % 150; // a worker warming up: 0-150 ms from placement to start
    };
    for (let now = 0; now < 10_000; now++) {
      for (const p of pending.filter((x) => x.at === now)) {
        limiter.settle(p.id, now);
        starts.push(now);
      }
      if (!limiter.check(uses, now)) {
        limiter.consume(uses, now, `a${now}`);
        pending.push({ id: `a${now}`, at: now + delay() });
      }
    }
    starts.sort((a, b) => a - b);
    for (let i = 20; i < starts.length; i++) {
      expect((starts[i] as number) - (starts[i - 20] as number)).toBeGreaterThanOrEqual(1000);
    }
    // Counting from the start costs the start delay once per window: about 20 per 1.17 s here, 18/s with fast starts.
    expect(starts.length).toBeGreaterThanOrEqual(155);
    expect(starts.length).toBeLessThanOrEqual(200);
    // Paced: the first 20 are spread over most of the first second, not a burst.
    expect(starts[19]).toBeGreaterThan(800);
  });

  it("a use above the limit is never admitted; units count against the limit, first reserved then started", () => {
    const limiter = new RateLimiter();
    limiter.setLimit("k", 5, 1000);
    expect(limiter.check([{ key: "k", units: 6 }], 0)?.kind).toBe("never");
    limiter.consume([{ key: "k", units: 5 }], 0, "a");
    expect(limiter.check([{ key: "k", units: 1 }], 500)?.kind).toBe("reserved");
    limiter.settle("a", 600);
    const block = limiter.check([{ key: "k", units: 1 }], 700);
    expect(block?.kind === "until" && block.at).toBe(600 + 1100);
  });

  it("what one limiter admitted, taken and restored into another, counts there: the cap and the pacing hold", () => {
    const before = new RateLimiter();
    before.setLimit("k", 5, 1000);
    const dynamic = { key: "user-1", units: 1, limit: 2, durationMs: 60_000 };
    for (const [i, at] of [0, 200, 400].entries()) {
      before.consume([{ key: "k", units: 1 }], at, `a${i}`);
      before.settle(`a${i}`, at + 10);
    }
    before.consume([dynamic], 0, "d");
    before.settle("d", 5);
    const records = before.takeChanged(500);
    expect(records.map((r) => [r.key, r.log.reduce((n, [, , units]) => n + units, 0)])).toEqual([
      ["k", 3],
      ["user-1", 1],
    ]);
    expect(before.takeChanged(600)).toEqual([]); // nothing admitted since
    const after = new RateLimiter();
    after.setLimit("k", 5, 1000); // the static limit, as definitions set it before recovery
    for (const r of records) after.restore(r, 500);
    // Paced from the last start (410, one every 1100 / 5 ms, admitted up to 25 ms early); the dynamic key's one of 2 a
    // minute holds the next 30.5 s (61 s with its guard, halved).
    const next = after.check([{ key: "k", units: 1 }], 500);
    expect(next?.kind === "until" && next.at).toBe(410 + 220 - 25);
    expect(after.check([{ key: "k", units: 1 }], 410 + 220)).toBeUndefined();
    const user = after.check([dynamic], 500);
    expect(user?.kind === "until" && user.at).toBe(5 + 30_500 - 25);
    // The cap: two more fit within the window, not three.
    after.consume([{ key: "k", units: 1 }], 630, "b0");
    after.settle("b0", 630);
    after.consume([{ key: "k", units: 1 }], 850, "b1");
    after.settle("b1", 850);
    const capped = after.check([{ key: "k", units: 1 }], 1070);
    expect(capped?.kind === "until" && capped.at).toBe(10 + 1100);
    // Admissions older than their window are not restored.
    const late = new RateLimiter();
    for (const r of records) late.restore(r, 2_000);
    expect(late.snapshot(2_000).map((k) => [k.key, k.used])).toEqual([["user-1", 1]]);
  });
});
