import type { JetStreamClient } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import type { Logger } from "pino";
import { scan } from "./scan.js";

const decoder = new TextDecoder();

/**
 * Loads the current values of `keyFilter` in a KV bucket, then follows its changes from the revision after them, so
 * no change between the two is missed. Keys are passed as stored (`<ns>.<name>`). Returns a stop function.
 */
export async function followKv(
  js: JetStreamClient,
  kv: KV,
  bucket: string,
  keyFilter: string,
  handlers: { put: (key: string, json: string, revision: number) => void; remove: (key: string) => void; log: Logger },
): Promise<() => void> {
  let revision = 0;
  const prefix = `$KV.${bucket}.`;
  await scan(js, `KV_${bucket}`, `${prefix}${keyFilter}`, "lastPerSubject", (m) => {
    revision = Math.max(revision, m.seq);
    if (m.data.length > 0) handlers.put(m.subject.slice(prefix.length), decoder.decode(m.data), m.seq);
  });
  // With nothing found, from the start.
  const watcher = await kv.watch({ key: keyFilter, ...(revision > 0 ? { resumeFromRevision: revision + 1 } : {}) });
  (async () => {
    for await (const e of watcher) {
      if (e.operation === "PUT") handlers.put(e.key, e.string(), e.revision);
      else handlers.remove(e.key);
    }
  })().catch((err) => handlers.log.error({ err, bucket }, "KV watch ended"));
  return () => watcher.stop();
}
