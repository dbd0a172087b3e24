import { describe, expect, it } from "vitest";
import { youngCopy } from "./young-map.js";

describe("youngCopy", () => {
  it("copies a map below the limit: a new map, the same entries in the same order", () => {
    const map = new Map([
      ["b", 2],
      ["a", 1],
      ["c", 3],
    ]);
    const copy = youngCopy(map, 4);
    expect(copy).not.toBe(map);
    expect([...copy]).toEqual([...map]);
  });

  it("leaves a map at or above the limit as it is", () => {
    const map = new Map([
      ["a", 1],
      ["b", 2],
    ]);
    expect(youngCopy(map, 2)).toBe(map);
  });
});
