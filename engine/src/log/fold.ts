import type { JetStreamClient } from "@nats-io/jetstream";
import { decodeEvent, evolve, type RunState, runIdFromHistorySubject, Streams } from "@taskjet/schemas";
import { scan } from "./scan.js";

/** What folding a part of the log gave. */
export interface Folded {
  /** The state of each run folded, by run id. */
  states: Map<string, RunState>;
  /** Messages read (`rejected` included). */
  events: number;
  /** Messages the reducer could not take (not JSON, invalid, another run's). */
  rejected: number;
  /** The last sequence read. */
  last: number;
}

/**
 * Folds the history messages matching `filter` (one run's subject, or a namespace's `tj.<ns>.hist.*`) from the
 * start, with the engine's reducer, up to `upToSeq`. `onRead` hears each message's sequence, as a count goes.
 */
export async function foldHistory(
  js: JetStreamClient,
  filter: string,
  onRead?: (events: number, seq: number) => void,
  upToSeq = Number.POSITIVE_INFINITY,
): Promise<Folded> {
  const folded: Folded = { states: new Map(), events: 0, rejected: 0, last: 0 };
  // Only each run's last state is kept: the fold may grow its lists in place.
  const owned = new WeakSet<object>();
  await scan(js, Streams.history, filter, { startSeq: 1 }, (m) => {
    if (m.seq > upToSeq) return;
    folded.events++;
    folded.last = m.seq;
    onRead?.(folded.events, m.seq);
    const runId = runIdFromHistorySubject(m.subject);
    const decoded = decodeEvent(m.data, runId);
    if (!decoded.ok) {
      folded.rejected++;
      return;
    }
    const next = evolve(folded.states.get(runId), decoded.event, m.seq, owned);
    if (next) folded.states.set(runId, next);
  });
  return folded;
}
