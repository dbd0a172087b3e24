import type { MsgRequest } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import {
  Buckets,
  decodeEvent,
  EventTypes,
  evolve,
  keys,
  type RunState,
  runIdFromHistorySubject,
  Streams,
  subjects,
  type TaskjetEvent,
} from "@taskjet/schemas";
import { type Connection, withProvisioningHint } from "./connection.js";
import { readStream } from "./read-stream.js";

/**
 * A run's current state, read without a consumer: the projection under the run's key (`TJ_RUNS`, which trails the log:
 * its writes are coalesced), then the log's tail after it, message by message. A run with no key (not written yet, or
 * finished before it was and written in a page) is folded from its whole history, short for such a run.
 */
export async function readRunState(conn: Connection, kv: KV, ns: string, runId: string): Promise<RunState | undefined> {
  const entry = await kv.get(keys.run(ns, runId)).catch(withProvisioningHint(conn, `KV_${Buckets.runs}`));
  const stored = entry?.operation === "PUT" && entry.length > 0 ? entry.json<RunState>() : undefined;
  // Stored slim (too large for one message): the whole history has the rest.
  return readTail(conn, ns, runId, stored?.slim ? undefined : stored);
}

/** Folds the messages of a run's subject after `state` (from the start when undefined). */
export async function readTail(
  conn: Connection,
  ns: string,
  runId: string,
  state: RunState | undefined,
): Promise<RunState | undefined> {
  const subject = subjects.history(ns, runId);
  let position = state?.lastSeq ?? 0;
  const owned = new WeakSet<object>(); // only the last state is kept: the fold may grow its lists in place
  if (conn.scoped) {
    // A read by request body is denied: a consumer filtered on the run's subject, which permissions can check.
    for await (const m of readStream(conn.js, Streams.history, subject, { startSeq: position + 1 })) {
      const decoded = decodeEvent(m.data, runId);
      if (decoded.ok) state = evolve(state, decoded.event, m.seq, owned) ?? state;
    }
    return state;
  }
  for (;;) {
    // The leader's copy (a direct get may answer from a lagging replica). nats-server 2.9 answers next_by_subj on
    // STREAM.MSG.GET too (probed); the client's type only declares it for direct gets.
    const request = { next_by_subj: subject, seq: position + 1 } as unknown as MsgRequest;
    const m = await conn.jsm.streams
      .getMessage(Streams.history, request)
      .catch(withProvisioningHint(conn, Streams.history));
    if (!m) return state;
    position = m.seq;
    const decoded = decodeEvent(m.data, runId);
    if (decoded.ok) state = evolve(state, decoded.event, m.seq, owned) ?? state;
  }
}

/**
 * The runs created after the projector's checkpoint, folded from the log: `TJ_RUNS` may not show them yet (a run
 * waiting for a slot is written only after the engine's `projectionQueuedDelayMs`). What the checkpoint trails by
 * bounds the read: about that delay's worth of history.
 */
export async function readUnprojected(
  conn: Connection,
  kv: KV,
  ns: string,
): Promise<{ created: Map<string, RunState>; later: Map<string, { event: TaskjetEvent; seq: number }[]> }> {
  const entry = await kv.get(keys.projectorCheckpoint(ns)).catch(withProvisioningHint(conn, `KV_${Buckets.runs}`));
  const checkpoint = entry?.operation === "PUT" && entry.length > 0 ? Number(entry.string()) : 0;
  const created = new Map<string, RunState>();
  const later = new Map<string, { event: TaskjetEvent; seq: number }[]>();
  const owned = new WeakSet<object>();
  for await (const m of readStream(conn.js, Streams.history, subjects.historyAll(ns), { startSeq: checkpoint + 1 })) {
    const runId = runIdFromHistorySubject(m.subject);
    const state = created.get(runId);
    const decoded = decodeEvent(m.data, runId);
    if (!decoded.ok) continue;
    if (!state && decoded.event.type !== EventTypes.RunCreated) {
      // A run created before the checkpoint: these go onto its projected state, which the caller reads.
      const events = later.get(runId) ?? [];
      events.push({ event: decoded.event, seq: m.seq });
      later.set(runId, events);
      continue;
    }
    const next = evolve(state, decoded.event, m.seq, owned);
    if (next) created.set(runId, next);
  }
  return { created, later };
}

/** A projected state with the events the log has after it (`readUnprojected`'s `later`) folded on. */
export function caughtUp(state: RunState, events: { event: TaskjetEvent; seq: number }[] | undefined): RunState {
  let out = state;
  for (const { event, seq } of events ?? []) if (seq > out.lastSeq) out = evolve(out, event, seq) ?? out;
  return out;
}

/**
 * The last message on a run's subject (a direct get), null when the run has no history.
 * @throws NotProvisionedError when the history stream does not exist
 */
export function lastHistoryMessage(conn: Connection, ns: string, runId: string) {
  return conn.jsm.direct
    .getMessage(Streams.history, { last_by_subj: subjects.history(ns, runId) })
    .catch(withProvisioningHint(conn, Streams.history));
}
