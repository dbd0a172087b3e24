import type { MsgRequest } from "@nats-io/jetstream";
import { JetStreamApiError, jserrors } from "@nats-io/jetstream/internal";
import { TimeoutError } from "@nats-io/transport-node";
import {
  AppendConflictError,
  decodeEvent,
  decodeJson,
  EventTypes,
  encodeEvent,
  eventMsgId,
  NotProvisionedError,
  PayloadTooLargeError,
  Streams,
  subjects,
  type TaskjetEventInput,
  UnavailableError,
  ValidationError,
} from "@taskjet/schemas";
import { type Connection, permissionDenied, whyPublishFailed } from "./connection.js";
import { assertWritable } from "./debug.js";
import { readStream } from "./read-stream.js";

const WRONG_LAST_SEQUENCE = 10071;
/** What a history message carries besides its body: the run's subject and the expected sequence. */
const SUBJECT_AND_HEADERS_BYTES = 512;
/** How long an append keeps retrying through a leader election (measured 5-8 s on a 3-node cluster). */
const RETRY_FOR_MS = 15_000;

/**
 * The hot path's events, built from parts already checked (the trigger's options and input, the worker's outcome):
 * checking them again would cost every task a second validation. Every other event the SDK appends is checked as the
 * engine will check it, so what the engine would refuse (`EventRejected`, after the caller was told it worked) is
 * refused here instead.
 */
const PRECHECKED = new Set<string>([
  EventTypes.RunCreated,
  EventTypes.TaskStarted,
  EventTypes.TaskCompleted,
  EventTypes.TaskFailed,
]);

/**
 * Appends one event to its run's subject with CAS on `expectedSeq` (invariant 2), retrying transient failures: a
 * retry of an append that was stored returns the stored sequence, marked `duplicate`.
 *
 * Duplicates are found by the CAS, not by the server's dedup (`Nats-Msg-Id`): the message after `expectedSeq` on the
 * subject is the one a conflict is about, and when its dedup id is this event's, it is this append (a retry whose
 * first try was stored, or the same fact appended before, as a second trigger of one run id). That holds for any
 * time since, where the server's dedup holds for its window only, and it spares every replica a dedup entry per
 * message: a map of two entries per task for two minutes, which nats-server's GC scans (measured on a 3-node
 * cluster: about 4 % less server CPU per task, within the noise of single pairs).
 * @throws AppendConflictError when someone else appended first; NotProvisionedError when no stream captures it;
 *   ValidationError when the engine would refuse the event; PayloadTooLargeError when it is over the server's limit;
 *   UnavailableError when NATS did not acknowledge it for 15 s (it may be stored: the same append again is one)
 */
export async function appendEvent(
  conn: Connection,
  ns: string,
  event: TaskjetEventInput,
  expectedSeq: number,
): Promise<{ seq: number; duplicate: boolean; earlierTry?: boolean }> {
  assertWritable(`appending ${event.type} to run ${event.runId}`);
  const subject = subjects.history(ns, event.runId);
  const data = encodeEvent(event);
  // An event over the server's limit (an input just under `payloadLimit` with large metadata) would fail in nats.js
  // with an error that has no code. Three bytes per character at most: most events need no count.
  const room = conn.messageLimit - SUBJECT_AND_HEADERS_BYTES;
  if (data.length * 3 > room && Buffer.byteLength(data) > room) {
    throw new PayloadTooLargeError(`the ${event.type} event`, Buffer.byteLength(data), room);
  }
  if (!PRECHECKED.has(event.type)) {
    const decoded = decodeJson(data, event.runId);
    if (!decoded.ok) throw new ValidationError([{ path: event.type, message: decoded.reason }]);
  }
  const deadline = Date.now() + RETRY_FOR_MS;
  for (let attempt = 0; ; attempt++) {
    let failure: unknown;
    try {
      const ack = await conn.publisher.publish(subject, data, { expect: { lastSubjectSequence: expectedSeq } });
      return { seq: ack.seq, duplicate: false };
    } catch (err) {
      if (!(err instanceof JetStreamApiError && err.code === WRONG_LAST_SEQUENCE)) failure = err;
      else {
        try {
          const stored = await storedAlready(conn, subject, event, expectedSeq);
          if (stored !== undefined) return { seq: stored.seq, duplicate: true, earlierTry: stored.earlierTry };
        } catch (readErr) {
          failure = readErr; // a failover interrupted the read: retried with the append, which conflicts again
        }
        if (failure === undefined) throw new AppendConflictError(subject, expectedSeq, { cause: err });
      }
    }
    const denied = permissionDenied(failure);
    if (denied) throw denied; // another namespace's run: retrying will not help
    // No responders is what a missing stream and a stream between leaders both look like.
    if (attempt === 0) {
      const why = await whyPublishFailed(conn, Streams.history, failure);
      if (why instanceof NotProvisionedError) throw why;
    }
    if (!isTransient(failure)) throw failure;
    if (Date.now() > deadline) throw new UnavailableError(event.type, event.runId, RETRY_FOR_MS, { cause: failure });
    await new Promise((r) => setTimeout(r, Math.min(1000, 50 * 2 ** attempt)));
  }
}

/**
 * The sequence of `event` when it is the message after `expectedSeq` on its subject (compared by dedup id), read from
 * the stream leader: the leader that refused the append holds that message. `earlierTry`: it is this very event (its
 * id), stored by an earlier try of this append, not the same fact appended by another (a second trigger of a run id).
 */
async function storedAlready(
  conn: Connection,
  subject: string,
  event: TaskjetEventInput,
  expectedSeq: number,
): Promise<{ seq: number; earlierTry: boolean } | undefined> {
  let next: { seq: number; data: Uint8Array } | undefined;
  if (conn.scoped) {
    // A read by request body is denied: a consumer filtered on the run's subject, which permissions can check.
    for await (const m of readStream(conn.js, Streams.history, subject, { startSeq: expectedSeq + 1 })) {
      next = m;
      break;
    }
  } else {
    // nats-server 2.9 answers next_by_subj on STREAM.MSG.GET too (probed); the client's type declares it for direct gets.
    const request = { next_by_subj: subject, seq: expectedSeq + 1 } as unknown as MsgRequest;
    next = (await conn.jsm.streams.getMessage(Streams.history, request)) ?? undefined;
  }
  if (!next) return undefined;
  const decoded = decodeEvent(next.data, event.runId);
  if (!decoded.ok || eventMsgId(decoded.event) !== eventMsgId(event)) return undefined;
  return { seq: next.seq, earlierTry: decoded.event.id === event.id };
}

/** JetStream's "system temporarily unavailable": a stream or meta leader being elected. */
const UNAVAILABLE = 10008;

/**
 * What a NATS failover looks like to a request (no leader yet, a dead server, an election under way): worth trying
 * again shortly. A retried append that was stored before the error is found by its CAS conflict, not stored twice.
 */
export function isTransient(err: unknown): boolean {
  return (
    err instanceof UnavailableError ||
    err instanceof jserrors.JetStreamNotEnabled ||
    err instanceof TimeoutError ||
    (err instanceof JetStreamApiError && err.code === UNAVAILABLE)
  );
}
