/**
 * "What if" switches for measuring a suggested fix before anyone makes it: applied at runtime inside the benchmark
 * processes only (env `TJ_BENCH_WHATIF`, comma-separated), never in the packages.
 *
 * - `cancel`: nats-core 3.4.0 `RequestOne.cancel()` builds `new RequestError("cancelled")` (an Error with a captured
 *   stack) after EVERY request, even one already answered and even with `noAsyncTraces`; here it reuses one instance.
 * - `flushturn`: nats-core writes its outbound buffer to the socket in a microtask after the first command queued
 *   into it, so commands queued by promise chains that settle over several microtask rounds go out in several writes;
 *   here the buffer is written once per event-loop turn (`setImmediate`).
 * - `ulid`: `ulid()` 3.0.2 re-detects its PRNG per call and asks `crypto.getRandomValues` for ONE byte per character
 *   (16 native calls per id); here 1-byte requests are served from a 8 KiB pool filled by the same CSPRNG.
 * - `noals`: the worker runs task functions outside the AsyncLocalStorage that makes their triggers children (what
 *   Node 20's promise hooks, on for every promise once it is used, cost the worker).
 * - `noprojection`: the engine writes no run state to `TJ_RUNS`, neither under keys nor in pages (its checkpoint
 *   still moves): what the projection costs at all. Breaks every reader of `TJ_RUNS`; for throughput only.
 */
import { randomFillSync } from "node:crypto";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

export async function applyWhatIf(spec: string | undefined): Promise<string[]> {
  const applied: string[] = [];
  for (const what of (spec ?? "").split(",").filter(Boolean)) {
    if (what === "cancel") patchRequestCancel();
    else if (what === "ulid") patchRandomBytePool();
    else if (what === "flushturn") patchFlushPerTurn();
    else if (what === "noals") await patchNoTaskContext();
    else if (what === "noprojection") await patchNoProjection();
    else throw new Error(`unknown what-if ${what}`);
    applied.push(what);
  }
  return applied;
}

function patchRequestCancel(): void {
  const require = createRequire(import.meta.url);
  const lib = dirname(require.resolve("@nats-io/nats-core")); // the same module instance transport-node uses
  const { RequestOne } = require(join(lib, "request.js"));
  const { RequestError } = require(join(lib, "errors.js"));
  const cancelled = new RequestError("cancelled");
  RequestOne.prototype.cancel = function cancel(
    this: { timer?: { cancel(): void }; mux: { cancel(r: unknown): void }; deferred: { reject(e: unknown): void } },
    err?: Error,
  ) {
    this.timer?.cancel();
    this.mux.cancel(this);
    this.deferred.reject(err ?? cancelled);
  };
}

function patchFlushPerTurn(): void {
  const require = createRequire(import.meta.url);
  const lib = dirname(require.resolve("@nats-io/nats-core"));
  const { ProtocolHandler } = require(join(lib, "protocol.js"));
  const { encode } = require(join(lib, "encoders.js"));
  type Handler = {
    outbound: { length(): number; size(): number; fill(b: Uint8Array, ...p: Uint8Array[]): void };
    pendingLimit: number;
    flushPending(): void;
  };
  ProtocolHandler.prototype.sendCommand = function sendCommand(
    this: Handler,
    cmd: string | Uint8Array,
    ...payloads: Uint8Array[]
  ) {
    const len = this.outbound.length();
    this.outbound.fill(typeof cmd === "string" ? encode(cmd) : cmd, ...payloads);
    if (len === 0) setImmediate(() => this.flushPending());
    else if (this.outbound.size() >= this.pendingLimit) this.flushPending();
  };
}

function patchRandomBytePool(): void {
  const pool = new Uint8Array(8192);
  let pos = pool.length;
  const original = globalThis.crypto.getRandomValues.bind(globalThis.crypto);
  globalThis.crypto.getRandomValues = (<T extends ArrayBufferView | null>(array: T): T => {
    if (array instanceof Uint8Array && array.length === 1) {
      if (pos >= pool.length) {
        randomFillSync(pool);
        pos = 0;
      }
      array[0] = pool[pos++] as number;
      return array;
    }
    return original(array as Parameters<typeof original>[0]) as unknown as T;
  }) as typeof globalThis.crypto.getRandomValues;
}

async function patchNoTaskContext(): Promise<void> {
  const require = createRequire(import.meta.url);
  const dist = dirname(require.resolve("@taskjet/sdk"));
  const { currentTask } = await import(join(dist, "worker", "current.js"));
  currentTask.run = (_store: unknown, fn: () => unknown) => fn();
}

async function patchNoProjection(): Promise<void> {
  const require = createRequire(import.meta.url);
  const dist = dirname(require.resolve("@taskjet/engine"));
  const { RunStore } = await import(join(dist, "projector", "run-store.js"));
  RunStore.prototype.putMany = async () => [];
  RunStore.prototype.putPaged = async () => [];
}
