import type { MsgRequest } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { Buckets, decodeEvent, evolve, keys, type RunState, Streams, subjects } from "@taskjet/schemas";
import { type Connection, withProvisioningHint } from "./connection.js";
import { readStream } from "./read-stream.js";

/**
 * A run's current state, read without a consumer: the projection (`TJ_RUNS`, which trails the log: its writes are
 * coalesced), then the log's tail after it, message by message.
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
