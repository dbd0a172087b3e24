import { readFileSync } from "node:fs";
import { jetstream } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { rebuildProjection } from "@taskjet/engine";
import { decodeEvent, evolve, type RunState, subjects } from "@taskjet/schemas";
import { describe, expect, it } from "vitest";
import { connectClient, startEngine, uniqueNamespace, useNatsServer } from "../harness/fixtures.js";

/**
 * Golden history: events exactly as version 1 of the wire format wrote them. These files are never edited; a new
 * event version must keep them folding to the same states (through an upcaster). `history-v1.jsonl` holds the first
 * event types; `history-v1-flow.jsonl` the ones added with flow control and scheduled runs, and
 * `history-v1-workflows.jsonl` workflows (DAG rules, handlers) and child runs, `history-v1-replay.jsonl` replays
 * (same envelope, v1), `history-v1-started-with-result.jsonl` short attempts whose result carries their start
 * (`data.started` on TaskCompleted, TaskFailed and TaskRateLimited, instead of a TaskStarted before it). The
 * recorded states (`*.states.json`) are what the reducer makes of them: when the reducer derives a new field, they
 * gain it and nothing else (`queuedSeq`, 2026-11-30: each file was checked to be the old states plus that field).
 */
const fixtures = [
  "history-v1",
  "history-v1-flow",
  "history-v1-workflows",
  "history-v1-replay",
  "history-v1-started-with-result",
].map((name) => {
  const lines = readFileSync(new URL(`../fixtures/${name}.jsonl`, import.meta.url), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { subject: string; event?: unknown; raw?: string });
  const expected = JSON.parse(
    readFileSync(new URL(`../fixtures/${name}.states.json`, import.meta.url), "utf8"),
  ) as Record<string, RunState>;
  return { name, lines, expected };
});
const encoder = new TextEncoder();
const payload = (l: { event?: unknown; raw?: string }) => l.raw ?? JSON.stringify(l.event);

const nats = useNatsServer();

describe.each(fixtures)("golden history $name", ({ lines, expected }) => {
  it("golden - the reducer folds the v1 log to the recorded states", () => {
    const states = new Map<string, RunState>();
    lines.forEach((l, i) => {
      const decoded = decodeEvent(encoder.encode(payload(l)), l.subject);
      if (!decoded.ok) return;
      const next = evolve(states.get(l.subject), decoded.event, i + 1);
      if (next) states.set(l.subject, next);
    });
    expect(Object.fromEntries(states)).toEqual(expected);
  });

  it("golden - a v1 log stored in JetStream replays through the engine and the rebuild to the same states", async () => {
    const namespace = uniqueNamespace();
    // A fresh engine provisions the streams; then the old log is written as it was.
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    await engine.stop();
    const nc = await connect({ servers: nats.url });
    const js = jetstream(nc);
    const first = (await js.publish("tj.warmup.hist.x", "{}")).seq; // sequences below are relative to this
    for (const l of lines) await js.publish(subjects.history(namespace, l.subject), payload(l));
    await rebuildProjection(nc, namespace);
    const tj = await connectClient(nats.url, { namespace });
    for (const [runId, state] of Object.entries(expected)) {
      const got = await tj.runs.get(runId);
      // Sequences relative to the warm-up message, as in the reducer's fold above.
      const tasks = got.tasks.map((t) => (t.queuedSeq === undefined ? t : { ...t, queuedSeq: t.queuedSeq - first }));
      expect({ ...got, lastSeq: got.lastSeq - first, tasks }).toEqual(state);
    }
    await tj.close();
    await nc.close();
  });
});
