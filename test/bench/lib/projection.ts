/**
 * Whether the engine has taken in everything in the log, seen from outside it: the projector's checkpoint (every
 * event up to it is folded and its run's state written to `TJ_RUNS`) against the namespace's last history sequence.
 * A folded event has reached the scheduler in the same turn, so a caught-up checkpoint also means "queued".
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { Streams, subjects } from "@taskjet/schemas";
import { nowMs } from "./clock.js";

/** Where `RunStore` keeps the checkpoint (engine/src/projector/run-store.ts). */
const checkpointKey = (ns: string) => `${ns}._projector.checkpoint`;

export async function projectionLag(jsm: JetStreamManager, runs: KV, ns: string): Promise<number> {
  const last = await jsm.streams
    .getMessage(Streams.history, { last_by_subj: subjects.historyAll(ns) })
    .then((m) => m?.seq ?? 0)
    .catch(() => 0);
  const entry = await runs.get(checkpointKey(ns));
  const checkpoint = entry?.operation === "PUT" && entry.length > 0 ? Number(entry.string()) : 0;
  return Math.max(0, last - checkpoint);
}

/** Polls `done` every `intervalMs` until it holds; the monotonic ms at which it was seen to. */
export async function until(
  what: string,
  done: () => boolean | Promise<boolean>,
  timeoutMs: number,
  intervalMs = 250,
): Promise<number> {
  const deadline = nowMs() + timeoutMs;
  for (;;) {
    if (await done()) return nowMs();
    if (nowMs() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
