import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { type RunState, statesOfEntry } from "@taskjet/schemas";
import { describe, expect, it } from "vitest";
import type { Publisher } from "../log/append.js";
import { RunStore } from "./run-store.js";

/** A finished run whose state's JSON is about `size` characters. */
function finished(runId: string, size: number): RunState {
  const state = {
    v: 1,
    runId,
    workflowName: "t",
    status: "COMPLETED",
    input: { pad: "" },
    additionalMetadata: {},
    priority: 1,
    trigger: { kind: "run" },
    tasks: [],
    createdAt: "2026-01-01T00:00:00.000Z",
    lastSeq: 2,
    eventCount: 2,
  } as unknown as RunState;
  (state.input as { pad: string }).pad = "x".repeat(Math.max(0, size - JSON.stringify(state).length));
  return state;
}

/** A store writing to a fake publisher under a server that takes `maxPayload` bytes. */
function store(maxPayload: number) {
  const published: { subject: string; data: string }[] = [];
  const publisher = {
    publish: async (subject: string, data: string | Uint8Array) => {
      published.push({ subject, data: typeof data === "string" ? data : new TextDecoder().decode(data) });
    },
  } as unknown as Publisher;
  const s = new RunStore({} as JetStreamClient, {} as JetStreamManager, {} as KV, "ns1", publisher, () => maxPayload);
  return { s, published };
}

describe("run store - pages", () => {
  it("pages - finished states fill pages up to a third of the max payload; a state too large for a page is handed back", async () => {
    const { s, published } = store(3000); // pages of at most 1,000 characters
    const states = ["A", "B", "C", "D", "E"].map((id) => finished(id, 300));
    const large = finished("L", 1200);
    expect(await s.putPaged([...states.slice(0, 3), large, ...states.slice(3)])).toEqual([large]);
    expect(published.map((p) => p.data.length <= 1000)).toEqual([true, true]);
    expect(published.every((p) => /^\$KV\.TJ_RUNS\.ns1\.=[0-9A-Z]{26}$/.test(p.subject))).toBe(true);
    const pages = published.map((p) => statesOfEntry(p.subject.slice("$KV.TJ_RUNS.".length), p.data));
    expect(pages.map((page) => page.map((r) => r.runId))).toEqual([
      ["A", "B", "C"],
      ["D", "E"],
    ]);
    expect(pages[0]?.[1]).toEqual(states[1]);
  });

  it("pages - characters of several bytes are written whole, and one page's bytes never reach the next", async () => {
    const { s, published } = store(30_000);
    const wide = finished("W", 300);
    (wide.input as { pad: string }).pad = 'é€😀\u2028"quoted"'.repeat(20);
    const states = [finished("A", 5000), wide, finished("B", 200)];
    await s.putPaged(states);
    await s.putPaged([finished("C", 50)]);
    const pages = published.map((p) => statesOfEntry(p.subject.slice("$KV.TJ_RUNS.".length), p.data));
    expect(pages).toEqual([states, [finished("C", 50)]]);
  });

  it("pages - a run's own key is one state; a page's is many, and a page that is not an array holds none", () => {
    const state = finished("A", 100);
    expect(statesOfEntry("ns1.A", JSON.stringify(state))).toEqual([state]);
    expect(statesOfEntry("ns1.=01ABC", JSON.stringify([state, state]))).toHaveLength(2);
    expect(statesOfEntry("ns1.=01ABC", JSON.stringify(state))).toEqual([]);
  });
});
