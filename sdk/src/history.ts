import type { JetStreamClient, JsMsg } from "@nats-io/jetstream";
import { decodeEvent, Streams, subjects, type TaskjetEvent } from "@taskjet/schemas";
import { readStream } from "./read-stream.js";

/** One message of a run's history: an accepted event, or a message the log holds but the model refuses. */
export type HistoryEntry =
  | { seq: number; time: Date; event: TaskjetEvent; rejected?: undefined }
  | { seq: number; time: Date; event?: undefined; rejected: string };

function toEntry(m: JsMsg, runId: string): HistoryEntry {
  const time = new Date(Math.floor(m.info.timestampNanos / 1e6));
  const decoded = decodeEvent(m.data, runId);
  return decoded.ok ? { seq: m.seq, time, event: decoded.event } : { seq: m.seq, time, rejected: decoded.reason };
}

/**
 * A run's history in order from `fromSeq`. With `follow`, keeps yielding live events until `until(entry)` is true or
 * `signal` aborts.
 */
export async function* readHistory(
  js: JetStreamClient,
  ns: string,
  runId: string,
  options: {
    fromSeq?: number;
    follow?: boolean;
    until?: (entry: HistoryEntry) => boolean;
    signal?: AbortSignal;
  } = {},
): AsyncGenerator<HistoryEntry> {
  const { until } = options;
  let last: HistoryEntry | undefined;
  const messages = readStream(
    js,
    Streams.history,
    subjects.history(ns, runId),
    { startSeq: options.fromSeq ?? 1 },
    {
      follow: options.follow,
      until: until ? () => last !== undefined && until(last) : undefined,
      signal: options.signal,
    },
  );
  for await (const m of messages) {
    last = toEntry(m, runId);
    yield last;
  }
}
