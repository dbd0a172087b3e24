import { DeliverPolicy, type JetStreamClient, type JsMsg } from "@nats-io/jetstream";

/** Where a read starts. */
export type ReadFrom = { startSeq: number } | "lastPerSubject";

/**
 * Reads the messages of `stream` matching `filter` through one short-lived ordered consumer: to the end as of the
 * call, or, with `follow`, on until `until(m)` is true.
 */
export async function* readStream(
  js: JetStreamClient,
  stream: string,
  filter: string,
  from: ReadFrom,
  options: { follow?: boolean; until?: (m: JsMsg) => boolean } = {},
): AsyncGenerator<JsMsg> {
  const consumer = await js.consumers.get(stream, {
    filter_subjects: filter,
    ...(from === "lastPerSubject"
      ? { deliver_policy: DeliverPolicy.LastPerSubject }
      : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(1, from.startSeq) }),
  });
  try {
    if (!options.follow && (await consumer.info(true)).num_pending === 0) return;
    // Short pulls: a lost pull (server busy, leader change) is noticed when it expires, not after 30 s.
    const messages = await consumer.consume({ max_messages: 1000, expires: 2000 });
    for await (const m of messages) {
      yield m;
      if (options.follow ? options.until?.(m) : m.info.pending === 0) break;
    }
  } finally {
    await consumer.delete().catch(() => undefined);
  }
}
