import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { Buckets, type RunState, Streams, subjects, type TaskRunState } from "@taskjet/schemas";
import { foldHistory } from "../log/fold.js";
import { maxPayloadOf } from "../nats/connect.js";
import { RunStore } from "./run-store.js";

/** What a rebuild did. */
export interface RebuildReport {
  runs: number;
  /** Messages of the namespace's log folded (`rejected` included). */
  events: number;
  rejected: number;
  ms: number;
  /** Of `ms`, reading and folding the log; the rest is writing the states. */
  foldMs: number;
  /** `events` over the whole of `ms`. */
  eventsPerSecond: number;
}

/**
 * Where a rebuild is: reading the log (`done` and `total` are history sequences, the namespace's last one as of the
 * start being `total`), then writing states (`done` of `total` runs).
 */
export type RebuildProgress = (phase: "read" | "write", done: number, total: number) => void;

/** Folds one namespace's whole log with the engine's reducer. */
async function foldLog(nc: NatsConnection, ns: string, onProgress?: RebuildProgress) {
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const total = onProgress
    ? await jsm.streams
        .getMessage(Streams.history, { last_by_subj: subjects.historyAll(ns) })
        .then((m) => m?.seq ?? 0)
        .catch(() => 0)
    : 0;
  const folded = await foldHistory(js, subjects.historyAll(ns), (events, seq) => {
    if (onProgress && events % 1000 === 0) onProgress("read", Math.min(seq, total), total);
  });
  const store = new RunStore(js, jsm, await new Kvm(nc).open(Buckets.runs), ns, js, () => maxPayloadOf(nc));
  return { store, ...folded };
}

/**
 * Rebuilds one namespace's run projection from the log alone (invariant 1): folds every event of the history stream
 * with the engine's reducer and writes the states and the checkpoint. Run it with the engine stopped.
 */
export async function rebuildProjection(
  nc: NatsConnection,
  ns: string,
  options: { onProgress?: RebuildProgress } = {},
): Promise<RebuildReport> {
  const { onProgress } = options;
  const started = performance.now();
  const { store, states, events, rejected, last } = await foldLog(nc, ns, onProgress);
  const foldMs = performance.now() - started;
  // Every run under its own key: keys left from before the rebuild must not shadow what it writes.
  const all = [...states.values()];
  for (let i = 0; i < all.length; i += 1000) {
    const unwritten = await store.putMany(all.slice(i, i + 1000));
    if (unwritten.length > 0) {
      throw new Error(`run states larger than the server's max payload even slimmed: ${unwritten.join(", ")}`);
    }
    onProgress?.("write", Math.min(i + 1000, all.length), all.length);
  }
  await store.saveCheckpoint(last);
  const ms = performance.now() - started;
  return { runs: states.size, events, rejected, ms, foldMs, eventsPerSecond: ms > 0 ? (events * 1000) / ms : 0 };
}

/** What a verification found. */
export interface VerifyReport {
  runs: number;
  events: number;
  /** Runs whose projection is not the log's fold: missing, or different. */
  differing: { runId: string; reason: string }[];
  ms: number;
}

/**
 * Checks invariant 1 on a live namespace: folds the log and compares every run's projection in `TJ_RUNS` with it.
 * Run it with the engines idle: a projection still being written (within `projectionActiveDelayMs`) shows as behind.
 */
export async function verifyProjection(nc: NatsConnection, ns: string): Promise<VerifyReport> {
  const started = performance.now();
  const { store, states, events } = await foldLog(nc, ns);
  const projection = new Map((await store.all({ activeOnly: false })).map(({ state }) => [state.runId, state]));
  const differing: { runId: string; reason: string }[] = [];
  for (const [runId, folded] of states) {
    const projected = projection.get(runId);
    if (!projected) differing.push({ runId, reason: "no projection" });
    else if (projected.lastSeq < folded.lastSeq) {
      differing.push({
        runId,
        reason: `projection behind: at sequence ${projected.lastSeq}, log at ${folded.lastSeq}`,
      });
    } else {
      const fields = differingFields(projected, folded);
      if (fields.length > 0) {
        differing.push({
          runId,
          reason: `projection differs in ${fields.join(", ")} (status ${projected.status}, log says ${folded.status})`,
        });
      }
    }
  }
  return { runs: states.size, events, differing, ms: performance.now() - started };
}

/**
 * The fields where a projected state and the log's fold differ (`tasks[0].status`). A task's `queuedSeq` that the
 * projection lacks is no difference: an engine before it wrote that state.
 */
function differingFields(projected: RunState, folded: RunState): string[] {
  const differs = (a: unknown, b: unknown) => JSON.stringify(a) !== JSON.stringify(b);
  const fieldsOf = (a: object, b: object) => [...new Set([...Object.keys(a), ...Object.keys(b)])];
  const out: string[] = [];
  for (const key of fieldsOf(projected, folded)) {
    if (key !== "tasks") {
      if (differs(projected[key as keyof RunState], folded[key as keyof RunState])) out.push(key);
      continue;
    }
    for (let i = 0; i < Math.max(projected.tasks.length, folded.tasks.length); i++) {
      const p: Partial<TaskRunState> = projected.tasks[i] ?? {};
      const f: Partial<TaskRunState> = folded.tasks[i] ?? {};
      for (const field of fieldsOf(p, f) as (keyof TaskRunState)[]) {
        if (field === "queuedSeq" && !(field in p)) continue;
        if (differs(p[field], f[field])) out.push(`tasks[${i}].${field}`);
      }
    }
  }
  return out;
}
