import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  Buckets,
  decodeEvent,
  evolve,
  type RunState,
  runIdFromHistorySubject,
  Streams,
  subjects,
} from "@taskjet/schemas";
import { scan } from "../log/scan.js";
import { RunStore } from "./run-store.js";

/** What a rebuild did. */
export interface RebuildReport {
  runs: number;
  events: number;
  rejected: number;
  ms: number;
}

/**
 * Rebuilds one namespace's run projection from the log alone (invariant 1): folds every event of the history stream
 * with the engine's reducer and writes the states and the checkpoint. Run it with the engine stopped.
 */
export async function rebuildProjection(nc: NatsConnection, ns: string): Promise<RebuildReport> {
  const started = performance.now();
  const js = jetstream(nc);
  const kv = await new Kvm(nc).open(Buckets.runs);
  const store = new RunStore(js, kv, ns);
  const states = new Map<string, RunState>();
  let events = 0;
  let rejected = 0;
  let last = 0;
  await scan(js, Streams.history, subjects.historyAll(ns), { startSeq: 1 }, (m) => {
    events++;
    last = m.seq;
    const runId = runIdFromHistorySubject(m.subject);
    const decoded = decodeEvent(m.data, runId);
    if (!decoded.ok) {
      rejected++;
      return;
    }
    const next = evolve(states.get(runId), decoded.event, m.seq);
    if (next) states.set(runId, next);
  });
  const all = [...states.values()];
  for (let i = 0; i < all.length; i += 1000) await store.putMany(all.slice(i, i + 1000));
  await store.saveCheckpoint(last);
  return { runs: states.size, events, rejected, ms: performance.now() - started };
}
