import { Counter, Histogram, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { FoldCounter, FoldHistogram } from "./fold-metrics.js";

const BOUNDS = [0.01, 0.1, 1];

describe("fold metrics", () => {
  it("FoldHistogram - renders what prom-client's Histogram renders for the same observations", async () => {
    const ours = new Registry();
    const theirs = new Registry();
    const fold = new FoldHistogram("t_seconds", "help text", BOUNDS, ours, (task) => ({ namespace: "ns", task }));
    const reference = new Histogram({
      name: "t_seconds",
      help: "help text",
      labelNames: ["namespace", "task"],
      buckets: BOUNDS,
      registers: [theirs],
    });
    const observations: [string, number][] = [
      ["a", 0],
      ["a", 0.01],
      ["a", 0.05],
      ["b", 0.5],
      ["a", 3],
      ["b", 1],
      ["b", 0.0101],
    ];
    for (const [task, v] of observations) {
      fold.observe(task, v);
      reference.observe({ namespace: "ns", task }, v);
    }
    expect(await ours.metrics()).toBe(await theirs.metrics());
  });

  it("FoldCounter - renders what prom-client's Counter renders for the same increments", async () => {
    const ours = new Registry();
    const theirs = new Registry();
    const fold = new FoldCounter("t_total", "help text", ours, (key) => {
      const [workflow = "", status = ""] = key.split("\0");
      return { namespace: "ns", workflow, status };
    });
    const reference = new Counter({
      name: "t_total",
      help: "help text",
      labelNames: ["namespace", "workflow", "status"],
      registers: [theirs],
    });
    for (const [workflow, status] of [
      ["w", "COMPLETED"],
      ["w", "FAILED"],
      ["w", "COMPLETED"],
      ["v", "COMPLETED"],
    ] as const) {
      fold.inc(`${workflow}\0${status}`);
      reference.inc({ namespace: "ns", workflow, status });
    }
    expect(await ours.metrics()).toBe(await theirs.metrics());
  });

  it("FoldHistogram - names each series' labels once and ignores values that are not finite", async () => {
    const registry = new Registry();
    let named = 0;
    const fold = new FoldHistogram("t_seconds", "h", BOUNDS, registry, (task) => {
      named++;
      return { task };
    });
    fold.observe("a", 0.2);
    fold.observe("a", Number.NaN);
    fold.observe("a", 0.3);
    expect(named).toBe(1);
    const text = await registry.metrics();
    expect(text).toContain('t_seconds_count{task="a"} 2');
    expect(text).toContain('t_seconds_sum{task="a"} 0.5');
    fold.reset();
    expect(await registry.metrics()).not.toContain("t_seconds_count");
  });
});
