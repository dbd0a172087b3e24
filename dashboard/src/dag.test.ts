import { describe, expect, it } from "vitest";
import { layoutDag } from "./dag.ts";

describe("layoutDag", () => {
  it("dag - layers a diamond left to right, handlers last with dashed edges from the leaves", () => {
    const { nodes, edges, width, height } = layoutDag([
      { ref: "fetch", taskName: "fetch", status: "COMPLETED" },
      { ref: "parse", taskName: "parse", parents: ["fetch"], status: "COMPLETED" },
      { ref: "links", taskName: "links", parents: ["fetch"], status: "FAILED" },
      { ref: "store", taskName: "store", parents: ["parse", "links"], status: "CANCELLED" },
      { ref: "alert", taskName: "alert", role: "onFailure", status: "COMPLETED" },
    ]);
    const layer = Object.fromEntries(nodes.map((n) => [n.ref, n.layer]));
    expect(layer).toEqual({ fetch: 0, parse: 1, links: 1, store: 2, alert: 3 });
    expect(edges.filter((e) => !e.handler).map((e) => `${e.from}>${e.to}`)).toEqual([
      "fetch>parse",
      "fetch>links",
      "parse>store",
      "links>store",
    ]);
    expect(edges.filter((e) => e.handler).map((e) => `${e.from}>${e.to}`)).toEqual(["store>alert"]);
    const parse = nodes.find((n) => n.ref === "parse");
    const links = nodes.find((n) => n.ref === "links");
    expect(parse?.x).toBe(links?.x);
    expect(parse?.y).not.toBe(links?.y);
    expect(width).toBeGreaterThan(4 * 160);
    expect(height).toBeGreaterThan(2 * 40);
  });

  it("dag - a single task is one node, no edge", () => {
    const { nodes, edges } = layoutDag([{ ref: "t", taskName: "t", status: "RUNNING" }]);
    expect(nodes).toHaveLength(1);
    expect(edges).toEqual([]);
  });
});
