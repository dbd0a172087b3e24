import { Histogram, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { FoldHistogram } from "./histogram.js";

const BOUNDS = [0.01, 0.1, 1];

describe("FoldHistogram", () => {
  it("renders what prom-client's Histogram renders for the same observations", async () => {
    const ours = new Registry();
    const theirs = new Registry();
    const fold = new FoldHistogram("t_seconds", "help text", BOUNDS, ours);
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
      fold.observe(task, () => ({ namespace: "ns", task }), v);
      reference.observe({ namespace: "ns", task }, v);
    }
    expect(await ours.metrics()).toBe(await theirs.metrics());
  });

  it("names each series' labels once and ignores values that are not finite", async () => {
    const registry = new Registry();
    const fold = new FoldHistogram("t_seconds", "h", BOUNDS, registry);
    let named = 0;
    const labels = () => {
      named++;
      return { task: "a" };
    };
    fold.observe("a", labels, 0.2);
    fold.observe("a", labels, Number.NaN);
    fold.observe("a", labels, 0.3);
    expect(named).toBe(1);
    const text = await registry.metrics();
    expect(text).toContain('t_seconds_count{task="a"} 2');
    expect(text).toContain('t_seconds_sum{task="a"} 0.5');
    fold.reset();
    expect(await registry.metrics()).not.toContain("t_seconds_count");
  });
});
