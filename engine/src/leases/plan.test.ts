import { describe, expect, it } from "vitest";
import { planLeases } from "./plan.js";

const view = (self: string, holders: [string, string][], live: string[], namespaces = ["a", "b", "c", "d"]) => ({
  self,
  namespaces,
  holders: new Map(holders),
  live: new Set(live),
});

describe("planLeases", () => {
  it("plan - a lone replica takes every free namespace", () => {
    expect(planLeases(view("e1", [], ["e1"]))).toEqual({ acquire: ["a", "b", "c", "d"], release: [] });
  });

  it("plan - two replicas: each takes up to its fair share, and not a live replica's lease", () => {
    expect(
      planLeases(
        view(
          "e2",
          [
            ["a", "e1"],
            ["b", "e1"],
          ],
          ["e1", "e2"],
        ),
      ),
    ).toEqual({
      acquire: ["c", "d"],
      release: [],
    });
    expect(planLeases(view("e2", [["a", "e1"]], ["e1", "e2"], ["a"]))).toEqual({ acquire: [], release: [] });
  });

  it("plan - a replica over its share releases the surplus once another replica is live", () => {
    const all: [string, string][] = [
      ["a", "e1"],
      ["b", "e1"],
      ["c", "e1"],
      ["d", "e1"],
    ];
    expect(planLeases(view("e1", all, ["e1"]))).toEqual({ acquire: [], release: [] });
    expect(planLeases(view("e1", all, ["e1", "e2"]))).toEqual({ acquire: [], release: ["c", "d"] });
    expect(planLeases(view("e1", all, ["e1", "e2", "e3"]))).toEqual({ acquire: [], release: ["c", "d"] });
  });

  it("plan - the leases of a replica that is gone are free", () => {
    const holders: [string, string][] = [
      ["a", "e1"],
      ["b", "e1"],
      ["c", "e2"],
      ["d", "e2"],
    ];
    expect(planLeases(view("e2", holders, ["e2"]))).toEqual({ acquire: ["a", "b"], release: [] });
    expect(planLeases(view("e2", holders, ["e1", "e2"]))).toEqual({ acquire: [], release: [] });
  });
});
