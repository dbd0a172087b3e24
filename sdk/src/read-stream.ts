import { DeliverPolicy, type JetStreamClient, type JsMsg } from "@nats-io/jetstream";
import { rethrowDenied } from "./connection.js";

/** Where a read starts. */
export type ReadFrom = { startSeq: number } | "lastPerSubject";

/**
 * Reads the messages of `stream` matching `filter` through one short-lived ordered consumer: to the end as of the
 * call, or, with `follow`, on until `until(m)` is true or `signal` aborts.
 */
export async function* readStream(
  js: JetStreamClient,
  stream: string,
  filter: string,
  from: ReadFrom,
  options: { follow?: boolean; until?: (m: JsMsg) => boolean; signal?: AbortSignal } = {},
): AsyncGenerator<JsMsg> {
  const consumer = await js.consumers
    .get(stream, {
      filter_subjects: filter,
      ...(from === "lastPerSubject"
        ? { deliver_policy: DeliverPolicy.LastPerSubject }
        : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(1, from.startSeq) }),
    })
    .catch(rethrowDenied);
  const { signal } = options;
  let stop = () => {};
  try {
    if (!options.follow && (await consumer.info(true)).num_pending === 0) return;
    // Short pulls and heartbeats: a lost pull is noticed in seconds, and the end of the data in half a second.
    const messages = await consumer.consume({ max_messages: 1000, expires: 2000, idle_heartbeat: 500 });
    stop = () => messages.stop();
    signal?.addEventListener("abort", stop, { once: true });
    if (signal?.aborted) stop();
    // nats-server 2.9.10 can over-count `pending` for filtered consumers starting mid-stream: when the consumer goes
    // idle (a heartbeat, or a pull expiring short of its batch) there is nothing more to read.
    if (!options.follow) {
      (async () => {
        for await (const s of messages.status()) {
          if (s.type === "heartbeat" || (s.type === "debug" && s.code === 408)) return messages.stop();
        }
      })().catch(() => undefined);
    }
    for await (const m of messages) {
      yield m;
      if (options.follow ? options.until?.(m) : m.info.pending === 0) break;
    }
  } finally {
    signal?.removeEventListener("abort", stop);
    await consumer.delete().catch(() => undefined);
  }
}
