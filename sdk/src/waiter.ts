import type { Subscription } from "@nats-io/transport-node";
import { decodeEvent, evolve, isTerminal, type RunState, Streams, subjects, type TaskjetEvent } from "@taskjet/schemas";
import type { Connection } from "./connection.js";
import { readHistory } from "./history.js";

/**
 * Waits for one run to finish without a consumer: a plain subscription on the run's subject (JetStream-captured
 * subjects are delivered to plain subscribers too), folding what it hears with the engine's reducer.
 *
 * A plain subscriber also hears appends the stream refused (a CAS conflict), so a final state heard that way is
 * confirmed against the stream's last message before it is believed; on a mismatch the log is folded instead.
 */
export class RunWaiter {
  private state: RunState | undefined;
  private readonly seen = new Set<string>();
  private readonly sub: Subscription;
  private settled = false;
  private checking = false;
  private resolveFn!: (state: RunState) => void;
  private rejectFn!: (err: unknown) => void;
  /** Resolves with the run's final state. */
  readonly done: Promise<RunState>;

  constructor(
    private readonly conn: Connection,
    private readonly ns: string,
    readonly runId: string,
    private readonly onSettled: (w: RunWaiter) => void,
  ) {
    this.done = new Promise((resolve, reject) => {
      this.resolveFn = resolve;
      this.rejectFn = reject;
    });
    this.sub = conn.nc.subscribe(subjects.history(ns, runId), {
      callback: (_err, msg) => {
        const decoded = decodeEvent(msg.data, runId);
        if (decoded.ok) this.hear(decoded.event, undefined);
      },
    });
  }

  /** Folds an event whose stream sequence is known (the caller's own append). */
  seed(event: TaskjetEvent, seq: number): void {
    this.hear(event, seq);
  }

  /** Folds the run's stored history: for runs created elsewhere, and after a reconnect (messages may be lost). */
  async catchUp(): Promise<void> {
    if (this.settled) return;
    let state: RunState | undefined;
    for await (const entry of readHistory(this.conn.js, this.ns, this.runId)) {
      if (!entry.event) continue;
      this.seen.add(entry.event.id);
      state = evolve(state, entry.event, entry.seq);
    }
    if (state && (!this.state || state.lastSeq >= this.state.lastSeq)) this.state = state;
    if (this.state && isTerminal(this.state.status)) this.settle(this.state);
  }

  fail(err: unknown): void {
    if (this.settled) return;
    this.settled = true;
    this.sub.unsubscribe();
    this.onSettled(this);
    this.rejectFn(err);
  }

  private hear(event: TaskjetEvent, seq: number | undefined): void {
    if (this.settled || this.seen.has(event.id)) return;
    this.seen.add(event.id);
    // Plain deliveries carry no stream sequence; their order on one subject is the append order.
    const next = evolve(this.state, event, seq ?? (this.state?.lastSeq ?? 0) + 1);
    if (!next) return;
    this.state = next;
    if (isTerminal(next.status)) this.confirm(event.id).catch((err) => this.fail(err));
  }

  private async confirm(eventId: string): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      const last = await this.conn.jsm.direct.getMessage(Streams.history, {
        last_by_subj: subjects.history(this.ns, this.runId),
      });
      const decoded = last ? decodeEvent(last.data, this.runId) : undefined;
      if (decoded?.ok && decoded.event.id === eventId && this.state) {
        this.settle(this.state);
        return;
      }
      this.state = undefined;
      await this.catchUp();
    } finally {
      this.checking = false;
    }
  }

  private settle(state: RunState): void {
    if (this.settled) return;
    this.settled = true;
    this.sub.unsubscribe();
    this.onSettled(this);
    this.resolveFn(state);
  }
}
