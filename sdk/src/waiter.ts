import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import { decodeEvent, evolve, isTerminal, type RunState, subjects, type TaskjetEvent } from "@taskjet/schemas";

/**
 * Waits for one run to finish without a consumer: a plain subscription on `tj.<ns>.stored.<runId>`, where the history
 * stream republishes every event it stored, in order and with its sequence. (The run's own subject would also deliver
 * appends the stream refused on a CAS conflict.) Events are folded with the engine's reducer until the run is final.
 */
export class RunWaiter {
  private state: RunState | undefined;
  /** Heard while a base state is being read (`catchUp`): folded after it. */
  private early: { data: Uint8Array; seq: number }[] | undefined;
  private readonly sub: Subscription;
  private settled = false;
  private resolveFn!: (state: RunState) => void;
  private rejectFn!: (err: unknown) => void;
  /** Resolves with the run's final state. */
  readonly done: Promise<RunState>;

  constructor(
    nc: NatsConnection,
    ns: string,
    readonly runId: string,
    private readonly onSettled: (w: RunWaiter) => void,
  ) {
    this.done = new Promise((resolve, reject) => {
      this.resolveFn = resolve;
      this.rejectFn = reject;
    });
    this.sub = nc.subscribe(subjects.stored(ns, runId), {
      callback: (_err, msg) => {
        this.hear(msg.data, storedSequence(msg));
      },
    });
  }

  /**
   * Reads a base state (the caller's `read`: projection plus log tail) for a run that may have moved on before the
   * subscription existed, e.g. created elsewhere, or after a reconnect (plain messages may have been lost).
   */
  async catchUp(read: (known: RunState | undefined) => Promise<RunState | undefined>): Promise<void> {
    if (this.settled) return;
    this.early ??= [];
    try {
      const state = await read(this.state);
      if (state && state.lastSeq > (this.state?.lastSeq ?? 0)) this.adopt(state);
    } finally {
      const early = this.early ?? [];
      this.early = undefined;
      for (const m of early) this.hear(m.data, m.seq);
    }
  }

  /**
   * Our own `RunCreated`, stored at `seq` (after `awaitOwnCreate`): folded as built, and what was heard meanwhile
   * after it, so its echo is skipped without being decoded.
   */
  created(event: TaskjetEvent, seq: number): void {
    if (this.settled) return;
    const early = this.early ?? [];
    this.early = undefined;
    const state = this.state ? undefined : evolve(undefined, event, seq);
    if (state) this.adopt(state);
    for (const m of early) this.hear(m.data, m.seq);
  }

  /** The caller is appending the run's `RunCreated`: hold what is heard until `created` or `catchUp`. */
  awaitOwnCreate(): this {
    this.early ??= [];
    return this;
  }

  fail(err: unknown): void {
    if (this.settled) return;
    this.finish();
    this.rejectFn(err);
  }

  private hear(data: Uint8Array, seq: number): void {
    if (this.settled || !Number.isFinite(seq)) return;
    if (this.early) {
      this.early.push({ data, seq });
      return;
    }
    if (this.state && seq <= this.state.lastSeq) return;
    const decoded = decodeEvent(data, this.runId);
    if (!decoded.ok) return; // the engine records the rejection; its EventRejected follows
    const next = evolve(this.state, decoded.event, seq);
    if (next) this.adopt(next);
  }

  private adopt(state: RunState): void {
    this.state = state;
    if (!isTerminal(state.status) || this.settled) return;
    this.finish();
    this.resolveFn(state);
  }

  private finish(): void {
    this.settled = true;
    this.sub.unsubscribe();
    this.onSettled(this);
  }
}

const decoder = new TextDecoder();
const SEQUENCE_HEADER = "\r\nNats-Sequence:";

/**
 * The stream sequence a republished message carries (`Nats-Sequence`), read from the raw header block: decoding
 * nats.js's headers object for it (six headers, each key canonicalised through intermediate strings) cost about 5 KB
 * of garbage per message, two messages per run waited for. nats.js 3.4 keeps the raw block on the message; should
 * that change, the headers object is the fallback.
 */
function storedSequence(msg: Msg): number {
  const raw = msg as Msg & { _rdata?: Uint8Array; _msg?: { hdr?: number } };
  const end = raw._msg?.hdr ?? -1;
  if (raw._rdata && end > 0) {
    const block = decoder.decode(raw._rdata.subarray(0, end));
    const at = block.indexOf(SEQUENCE_HEADER);
    if (at >= 0) return Number.parseInt(block.slice(at + SEQUENCE_HEADER.length), 10);
  }
  return Number(msg.headers?.get("Nats-Sequence"));
}
