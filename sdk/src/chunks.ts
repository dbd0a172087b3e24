import type { JsMsg } from "@nats-io/jetstream";
import { ChunkHeaders } from "@taskjet/schemas";

/** One chunk a task put with `ctx.putStream`, as `tj.runs.subscribeToStream` yields it. */
export interface StreamChunk {
  /** The attempt that put it: 0 on the first run, n on the n-th retry. */
  attempt: number;
  /** The task-run that put it (a workflow run has one per task). */
  taskRunId: string;
  /** Its position among its attempt's chunks, from 0: a gap means a chunk the stream refused. */
  index: number;
  /** When the stream stored it. */
  at: Date;
  /** The bytes as the task gave them (a string is stored as UTF-8). */
  data: Uint8Array;
  /** `data` decoded as UTF-8. */
  text: string;
}

const decoder = new TextDecoder();

/** The chunk a `TJ_LOGS` message carries, or undefined for a message of another version or without its headers. */
export function toChunk(m: JsMsg): StreamChunk | undefined {
  const h = m.headers;
  if (h?.get(ChunkHeaders.version) !== "1") return undefined;
  const attempt = h.get(ChunkHeaders.attempt);
  const index = h.get(ChunkHeaders.index);
  const taskRunId = h.get(ChunkHeaders.taskRunId);
  if (!/^\d+$/.test(attempt) || !/^\d+$/.test(index) || taskRunId === "") return undefined;
  return {
    attempt: Number(attempt),
    taskRunId,
    index: Number(index),
    at: new Date(Math.floor(m.info.timestampNanos / 1e6)),
    data: m.data,
    text: decoder.decode(m.data),
  };
}
