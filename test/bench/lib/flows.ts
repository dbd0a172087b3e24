/**
 * The fan-out and DAG of `flows.ts`, declared the same way in the worker (which runs them) and the client (which
 * triggers them): a declaration only registers anything when a worker starts with it.
 */
import type { Taskjet } from "@taskjet/sdk";
import { nowMs } from "./clock.js";

/** What the fan-out parent saw, in monotonic ms (`nowMs`, comparable across processes). */
export type FanOutTimes = { started: number; spawned: number; childrenDone: number };

export function declareFlows(tj: Taskjet, onChild: () => void = () => undefined) {
  const child = tj.task({
    name: "fan.child",
    fn: async (_input: { i: number }) => {
      onChild();
      return {};
    },
  });
  const parent = tj.task({
    name: "fan.parent",
    executionTimeout: "10m",
    fn: async (input: { children: number }, ctx): Promise<FanOutTimes> => {
      const started = nowMs();
      // One history write spawns them all; the parent then waits for every child's output, as a fan-in would.
      const refs = await ctx.bulkRunChildrenNoWait(
        Array.from({ length: input.children }, (_, i) => ({ task: child, input: { i } })),
      );
      const spawned = nowMs();
      await Promise.all(refs.map((r) => r.result()));
      return { started, spawned, childrenDone: nowMs() };
    },
  });
  // A chain of three no-op steps, each reading its parent's output: two hand-overs between tasks per run.
  const dag = tj.workflow<{ i: number }>({ name: "dag3" });
  const extract = dag.task({ name: "extract", fn: async (input: { i: number }) => ({ v: input.i }) });
  const transform = dag.task({
    name: "transform",
    parents: [extract],
    fn: async (_input, ctx) => ({ v: ctx.parentOutput<{ v: number }>(extract).v + 1 }),
  });
  dag.task({
    name: "load",
    parents: [transform],
    fn: async (_input, ctx) => ({ v: ctx.parentOutput<{ v: number }>(transform).v + 1 }),
  });
  return { child, parent, dag };
}
