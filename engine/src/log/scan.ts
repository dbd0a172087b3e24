import {
  type ConsumerMessages,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type MsgRequest,
  type StoredMsg,
} from "@nats-io/jetstream";

/**
 * Calls `onIdle` once the consumer has nothing more to deliver for now: an idle heartbeat, or a pull that expired
 * short of its batch. nats-server 2.9.10 over-counts `num_pending` for wildcard-filtered consumers that start mid-stream
 * (seen: pending 8 with the stream at its end), so "pending reached 0" alone cannot mark the end of a read.
 */
export function onIdle(messages: ConsumerMessages, idle: () => void): void {
  (async () => {
    for await (const s of messages.status()) {
      if (s.type === "heartbeat" || (s.type === "debug" && s.code === 408)) {
        idle();
        return;
      }
    }
  })().catch(() => undefined);
}

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
    // Short pulls and heartbeats: a lost pull is noticed in seconds, and the end of the data in half a second.
    const messages = await consumer.consume({ max_messages: 1000, expires: 2000, idle_heartbeat: 500 });
    onIdle(messages, () => messages.stop());
    for await (const m of messages) {
      onMessage(m);
      if (m.info.pending === 0) break;
    }
  } finally {
    await consumer.delete().catch(() => undefined);
  }
}

/**
 * The messages of one subject after `afterSeq`, in order, one request each from the stream's leader (a direct get may
 * answer from a lagging replica): no consumer to make for the few messages of one run's subject. Stops at the end, or
 * when the caller breaks out.
 */
export async function* subjectMessages(
  jsm: JetStreamManager,
  stream: string,
  subject: string,
  afterSeq: number,
): AsyncGenerator<StoredMsg> {
  for (let position = afterSeq; ; ) {
    // nats-server 2.9 answers next_by_subj on STREAM.MSG.GET too (probed); the client's type declares it for direct gets.
    const request = { next_by_subj: subject, seq: position + 1 } as unknown as MsgRequest;
    const m = await jsm.streams.getMessage(stream, request);
    if (!m) return;
    position = m.seq;
    yield m;
  }
}
