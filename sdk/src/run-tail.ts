import type { JsMsg } from "@nats-io/jetstream";
import { checkToken, evolve, isTerminal, RunNotFoundError, type RunState, Streams } from "@taskjet/schemas";
import { type Connection, withProvisioningHint } from "./connection.js";
import { readHistory } from "./history.js";
import { readStream } from "./read-stream.js";
import { lastHistoryMessage } from "./run-reader.js";

/** The sequence of the last message on `subject` (0 when none): by request body, or scoped, through a consumer. */
async function lastSeqOf(conn: Connection, stream: string, subject: string): Promise<number> {
  if (!conn.scoped) return (await conn.jsm.streams.getMessage(stream, { last_by_subj: subject }))?.seq ?? 0;
  let seq = 0;
  for await (const m of readStream(conn.js, stream, subject, "lastPerSubject")) seq = m.seq;
  return seq;
}

/**
 * Reads `filter` of `TJ_LOGS` (a run's log lines or stream chunks) from its first message, live, through one ordered
 * consumer, and ends once the run is terminal and everything stored under `filter` by then has been delivered.
 * Workers have every line and chunk of an attempt acknowledged before they report its outcome, so nothing of a
 * finished attempt is missed; an attempt the engine ends on its own (timeout, cancellation) may be cut short.
 * @throws RunNotFoundError when the run has no history
 */
export async function* followRunSide(
  conn: Connection,
  ns: string,
  runId: string,
  filter: string,
): AsyncGenerator<JsMsg> {
  checkToken(runId, "runId");
  const last = await lastHistoryMessage(conn, ns, runId);
  if (!last) throw new RunNotFoundError(runId);
  const stop = new AbortController();
  let endSeq: number | undefined;
  let delivered = 0;
  let failure: unknown;
  const watch = (async () => {
    let state: RunState | undefined;
    const history = readHistory(conn.js, ns, runId, {
      follow: true,
      signal: stop.signal,
      // Not before what was stored when it was asked: a replayed run was terminal before its replay's events.
      until: (e) => {
        if (e.event) state = evolve(state, e.event, e.seq);
        return e.seq >= last.seq && state !== undefined && isTerminal(state.status);
      },
    });
    for await (const _ of history);
    if (stop.signal.aborted) return;
    // Taken after the terminal event: the outcome was reported only once the attempt's messages were stored.
    endSeq = await lastSeqOf(conn, Streams.logs, filter);
    if (delivered >= endSeq) stop.abort();
  })().catch((err) => {
    failure = err;
    stop.abort();
  });
  try {
    const messages = readStream(
      conn.js,
      Streams.logs,
      filter,
      { startSeq: 1 },
      { follow: true, signal: stop.signal, until: (m) => endSeq !== undefined && m.seq >= endSeq },
    );
    for await (const m of messages) {
      delivered = m.seq;
      yield m;
    }
  } catch (err) {
    withProvisioningHint(conn, Streams.logs)(err);
  } finally {
    // Also when the caller stops early: the history consumer goes with the read.
    stop.abort();
    await watch;
  }
  if (failure) throw failure;
}
