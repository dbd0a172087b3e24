import { DeliverPolicy, type JetStreamClient, type JsMsg } from "@nats-io/jetstream";

/**
 * Reads every message of `stream` matching `filter` from `startSeq` (or only the last per subject) to the end as of
 * the call, through one short-lived ordered consumer.
 */
export async function scan(
  js: JetStreamClient,
  stream: string,
  filter: string,
  from: { startSeq: number } | "lastPerSubject",
  onMessage: (m: JsMsg) => void,
): Promise<void> {
  const consumer = await js.consumers.get(stream, {
    filter_subjects: filter,
    ...(from === "lastPerSubject"
      ? { deliver_policy: DeliverPolicy.LastPerSubject }
      : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(1, from.startSeq) }),
  });
  try {
    const info = await consumer.info(true);
    if (info.num_pending === 0) return;
    // Short pulls: a lost pull (server busy, leader change) is noticed when it expires, not after 30 s.
    const messages = await consumer.consume({ max_messages: 1000, expires: 2000 });
    for await (const m of messages) {
      onMessage(m);
      if (m.info.pending === 0) break;
    }
  } finally {
    await consumer.delete().catch(() => undefined);
  }
}
