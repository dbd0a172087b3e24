import type { Assignment } from "@taskjet/schemas";
import { describe, expect, it } from "vitest";
import { Pending, PendingAttempts } from "./pending.js";

const at = (key: string, since: number, priority?: number) =>
  new Pending({ taskRunId: key, ...(priority ? { priority } : {}) } as Assignment, key, since);

describe("pending attempts", () => {
  it("pending - the highest priority first, arrival order within one; the longest waiting is given back first", () => {
    const pending = new PendingAttempts();
    for (const p of [at("a", 1), at("b", 2, 3), at("c", 3), at("d", 4, 2), at("e", 5, 3)]) pending.push(p);
    expect(pending.has("c")).toBe(true);
    expect(pending.oldest()?.key).toBe("a");
    expect(pending.takeArrivedBy(2).map((p) => p.key)).toEqual(["a", "b"]);
    expect(pending.remove("e")).toBe(true);
    expect(pending.remove("e")).toBe(false);
    pending.push(at("f", 6, 3));
    const order: string[] = [];
    for (let p = pending.shift(); p; p = pending.shift()) order.push(p.key);
    expect(order).toEqual(["f", "d", "c"]);
    expect(pending.size).toBe(0);
    pending.push(at("g", 7));
    expect(pending.drain().map((p) => p.key)).toEqual(["g"]);
    expect(pending.has("g")).toBe(false);
  });
});
