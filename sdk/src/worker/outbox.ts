import type { JetStreamClient } from "@nats-io/jetstream";
import { headers } from "@nats-io/transport-node";
import { ChunkHeaders, type Logger, subjects, type TaskLogLine } from "@taskjet/schemas";
import { configure } from "safe-stable-stringify";

/** Publishes awaiting their ack beyond which `putStream` makes the task wait (memory stays bounded). */
const MAX_IN_FLIGHT = 1000;

/** How much of a log line's fields too large for a message is kept, as a preview of their JSON, in characters. */
const FIELDS_PREVIEW_CHARS = 16_384;

/** Room kept for a line's envelope beyond its fields (its message is at most 10,000 characters). */
const LINE_ENVELOPE_BYTES = 256;

/**
 * A `ctx.logger` line as the JSON stored in `TJ_LOGS`, whatever its fields hold: a circular reference reads
 * `"[Circular]"`, a BigInt its decimal digits, a field that cannot be read or turned into JSON (a throwing getter or
 * Proxy, a throwing `toJSON`) `"[unserializable: <reason>]"`; fields whose JSON would take the line over `maxBytes`
 * are replaced by `{ "[truncated]": <the start of their JSON> }`. Never throws: a task's logging must not fail it.
 */
export function encodeLogLine(line: TaskLogLine, maxBytes: number): string {
  const { fields, ...rest } = line;
  const head = JSON.stringify(rest);
  if (fields === undefined) return head;
  let fieldsJson = serializeFields(fields);
  // Most lines are far below the limit: only count bytes when they could be over it.
  if ((head.length + fieldsJson.length) * 3 > maxBytes) {
    const size = Buffer.byteLength(head) + Buffer.byteLength(fieldsJson);
    if (size > maxBytes) {
      // At most 6 bytes a character once the preview is itself a JSON string (`\u0001`).
      const room = Math.floor((maxBytes - Buffer.byteLength(head) - LINE_ENVELOPE_BYTES) / 6);
      const keep = Math.max(0, Math.min(FIELDS_PREVIEW_CHARS, room));
      const preview = `${fieldsJson.slice(0, keep)}… [truncated: fields were ${size} bytes as JSON, over the limit of ${maxBytes}]`;
      fieldsJson = JSON.stringify({ "[truncated]": preview });
    }
  }
  return `${head.slice(0, -1)},"fields":${fieldsJson}}`;
}

/** `fields` as a JSON object; never throws (see `encodeLogLine`). */
function serializeFields(fields: Record<string, unknown>): string {
  try {
    return JSON.stringify(fields) ?? "{}";
  } catch {
    // The rare path: each field on its own, so one bad field spoils only itself.
  }
  try {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(fields)) {
      try {
        const json = safeJson(fields[key]);
        if (json !== undefined) out[key] = JSON.parse(json);
      } catch (err) {
        out[key] = unserializable(err);
      }
    }
    return JSON.stringify(out);
  } catch (err) {
    return JSON.stringify({ "[fields]": unserializable(err) });
  }
}

/** JSON with circular references as `"[Circular]"` (only a value's own ancestors: a shared object is written twice). */
const stringifyCircular = configure({ circularValue: "[Circular]", deterministic: false });

/** JSON of a value with BigInts as their digits (a string: a JSON number would lose them past 2^53). */
function safeJson(value: unknown): string | undefined {
  return stringifyCircular(value, (_key, v) => (typeof v === "bigint" ? v.toString() : v));
}

function unserializable(err: unknown): string {
  let reason: string;
  try {
    reason = err instanceof Error ? err.message : String(err);
  } catch {
    reason = "unknown reason";
  }
  return `[unserializable: ${reason.slice(0, 200)}]`;
}

/**
 * One attempt's log lines and stream chunks on their way to `TJ_LOGS`. Each is published at once without waiting for
 * its ack (publishes leave in call order on one connection, so the stream stores them in order); the worker awaits
 * `settled()` before reporting the attempt's outcome, so a reader that sees the run end knows all of them are stored.
 * A publish the stream refuses is logged, never thrown into the task.
 */
export class Outbox {
  private readonly inFlight = new Set<Promise<void>>();
  private chunks = 0;

  constructor(
    private readonly js: JetStreamClient,
    private readonly ns: string,
    private readonly attempt: { runId: string; taskRunId: string; attempt: number },
    private readonly log: Logger,
    /** The largest message this connection may publish beyond an envelope (`Connection.payloadLimit`). */
    private readonly maxBytes = 1024 * 1024,
  ) {}

  /** Publishes a `ctx.logger` line (its fields made storable: `encodeLogLine`); never throws. */
  line(line: TaskLogLine): void {
    let data: string;
    try {
      data = encodeLogLine(line, this.maxBytes);
    } catch (err) {
      this.log.debug({ err }, "log line not stored");
      return;
    }
    // Said at warn, as a lost chunk is: a line NATS did not store (an outage) is otherwise missing without a word.
    this.track(this.js.publish(subjects.log(this.ns, this.attempt.runId), data), "log line not stored");
  }

  /** Publishes a `ctx.putStream` chunk; resolves at once unless too many chunks await their ack. */
  async chunk(data: Uint8Array): Promise<void> {
    const h = headers();
    h.set(ChunkHeaders.version, "1");
    h.set(ChunkHeaders.taskRunId, this.attempt.taskRunId);
    h.set(ChunkHeaders.attempt, String(this.attempt.attempt));
    h.set(ChunkHeaders.index, String(this.chunks++));
    this.track(
      this.js.publish(subjects.chunk(this.ns, this.attempt.runId), data, { headers: h }),
      "stream chunk not stored",
    );
    while (this.inFlight.size > MAX_IN_FLIGHT) await Promise.race(this.inFlight);
  }

  /** Resolves once every publish made so far was acknowledged or failed (later ones are not waited for). */
  async settled(): Promise<void> {
    await Promise.all([...this.inFlight]);
  }

  private track(publish: Promise<unknown>, failed: string): void {
    const p: Promise<void> = publish.then(
      () => {
        this.inFlight.delete(p);
      },
      (err: unknown) => {
        this.inFlight.delete(p);
        this.log.warn({ err }, failed);
      },
    );
    this.inFlight.add(p);
  }
}
