import { JetStreamApiError, type JetStreamManager, type PubAck } from "@nats-io/jetstream";
import {
  AppendConflictError,
  encodeEvent,
  eventMsgId,
  Streams,
  subjects,
  type TaskjetEventInput,
} from "@taskjet/schemas";

const WRONG_LAST_SEQUENCE = 10071;

/** What appends need of a JetStream client: `js.publish`, or the faster `StreamPublisher`. */
export interface Publisher {
  publish(
    subject: string,
    data: Uint8Array | string,
    options?: { msgID?: string; expect?: { lastSubjectSequence?: number } },
  ): Promise<PubAck>;
}

/**
 * Appends one event to its run's subject, expecting `expectedSeq` to be the subject's last sequence (invariant 2).
 * Returns the event's stream sequence; a retried append (same dedup id) returns the original one.
 * @throws AppendConflictError when someone else appended first
 */
export async function appendEvent(
  js: Publisher,
  ns: string,
  event: TaskjetEventInput,
  expectedSeq: number,
): Promise<number> {
  const subject = subjects.history(ns, event.runId);
  try {
    const ack = await js.publish(subject, encodeEvent(event), {
      msgID: eventMsgId(event),
      expect: { lastSubjectSequence: expectedSeq },
    });
    return ack.seq;
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === WRONG_LAST_SEQUENCE) {
      throw new AppendConflictError(subject, expectedSeq, { cause: err });
    }
    throw err;
  }
}

/** The last sequence on a run's subject, 0 when it has none. */
export async function lastSequence(jsm: JetStreamManager, ns: string, runId: string): Promise<number> {
  const msg = await jsm.streams.getMessage(Streams.history, { last_by_subj: subjects.history(ns, runId) });
  return msg?.seq ?? 0;
}

/**
 * Appends a fact whose place in the log does not depend on what came before it (a rejection, an ignored report):
 * on a conflict it re-reads the subject's tail and tries again, still with CAS.
 */
export async function appendAtTail(
  js: Publisher,
  jsm: JetStreamManager,
  ns: string,
  event: TaskjetEventInput,
  knownSeq: number,
): Promise<number> {
  let expected = knownSeq;
  for (let attempt = 0; ; attempt++) {
    try {
      return await appendEvent(js, ns, event, expected);
    } catch (err) {
      if (!(err instanceof AppendConflictError) || attempt >= 10) throw err;
      expected = await lastSequence(jsm, ns, event.runId);
    }
  }
}
