import type { MsgRequest } from "@nats-io/jetstream";
import type { Subscription } from "@nats-io/transport-node";
import { decodeEvent, evolve, isTerminal, type RunState, Streams, subjects, type TaskjetEvent } from "@taskjet/schemas";
import type { Connection } from "./connection.js";
import { readHistory } from "./history.js";

/** Re-reads after a wake-up that found nothing new yet: a heard append may not be readable at once. */
const REREAD_DELAYS_MS = [5, 20, 100, 500, 2000];

/**
 * Waits for one run to finish without a consumer: a plain subscription on the run's subject (JetStream-captured
 * subjects are delivered to plain subscribers too), folding what it hears with the engine's reducer.
 *
 * A plain subscriber also hears appends the stream refused (a CAS conflict). So a final state heard that way is
 * believed only if the stream's last message is the event that made it final. Otherwise the waiter turns
 * authoritative: from then on what it hears only wakes it up, and it folds what the stream stored, by sequence.
 */
export class RunWaiter {
  /** What the stream stored, folded with real sequences. */
  private confirmed: RunState | undefined;
  /** `confirmed` plus what was heard since (optimistic). */
  private heard: RunState | undefined;
  /** Heard before a base state exists (from `seed` or `catchUp`): folding them alone would see a partial run. */
  private early: TaskjetEvent[] | undefined = [];
  private readonly seen = new Set<string>();
  private authoritative = false;
  private reading: Promise<void> | undefined;
  private wokenWhileReading = false;
  private rereads = 0;
  private rereadTimer: NodeJS.Timeout | undefined;
  private readonly sub: Subscription;
  private settled = false;
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
        if (decoded.ok) this.hear(decoded.event);
      },
    });
  }

  /** Folds the run's first event, whose stream sequence the caller knows (its own append). */
  seed(event: TaskjetEvent, seq: number): void {
    this.seen.add(event.id);
    this.confirmed = evolve(undefined, event, seq);
    this.heard = this.confirmed;
    this.replayEarly();
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
    this.adopt(state);
    if (!this.settled) this.replayEarly();
  }

  fail(err: unknown): void {
    if (this.settled) return;
    this.finish();
    this.rejectFn(err);
  }

  private replayEarly(): void {
    const early = this.early ?? [];
    this.early = undefined;
    for (const event of early) this.hear(event);
  }

  private hear(event: TaskjetEvent): void {
    if (this.early) {
      this.early.push(event);
      return;
    }
    if (this.settled) return;
    if (this.authoritative) {
      this.wake();
      return;
    }
    if (this.seen.has(event.id)) return;
    this.seen.add(event.id);
    const next = evolve(this.heard, event, (this.heard?.lastSeq ?? 0) + 1);
    if (!next) return;
    this.heard = next;
    if (isTerminal(next.status)) this.confirm(event.id).catch((err) => this.fail(err));
  }

  /** The usual path: one read shows the heard final event is the stream's last message. */
  private async confirm(eventId: string): Promise<void> {
    const last = await this.conn.jsm.direct.getMessage(Streams.history, {
      last_by_subj: subjects.history(this.ns, this.runId),
    });
    const decoded = last ? decodeEvent(last.data, this.runId) : undefined;
    if (this.authoritative || this.settled) return;
    if (decoded?.ok && decoded.event.id === eventId && this.heard) {
      this.settle(this.heard);
      return;
    }
    this.authoritative = true;
    this.wake();
  }

  /** Authoritative mode: fold whatever the stream stored after what we know, by sequence. */
  private wake(): void {
    if (this.reading) {
      this.wokenWhileReading = true;
      return;
    }
    if (this.rereadTimer) clearTimeout(this.rereadTimer);
    this.rereadTimer = undefined;
    this.reading = this.readTail()
      .then((progressed) => {
        this.reading = undefined;
        if (this.settled) return;
        if (progressed || this.wokenWhileReading) {
          this.wokenWhileReading = false;
          this.rereads = 0;
          if (!progressed) this.wake();
          return;
        }
        const delay = REREAD_DELAYS_MS[this.rereads++];
        if (delay !== undefined) this.rereadTimer = setTimeout(() => this.wake(), delay);
      })
      .catch((err) => this.fail(err));
  }

  private async readTail(): Promise<boolean> {
    const subject = subjects.history(this.ns, this.runId);
    let state = this.confirmed;
    for (;;) {
      // The leader's copy (a direct get may answer from a lagging replica). nats-server 2.9 answers next_by_subj on
      // STREAM.MSG.GET too (probed); the client's type only declares it for direct gets.
      const request = { next_by_subj: subject, seq: (state?.lastSeq ?? 0) + 1 } as unknown as MsgRequest;
      const m = await this.conn.jsm.streams.getMessage(Streams.history, request);
      if (!m) break;
      const decoded = decodeEvent(m.data, this.runId);
      const next = decoded.ok ? evolve(state, decoded.event, m.seq) : state;
      // A message that folds to nothing (refused) still moves the read position on.
      state = next ? { ...next, lastSeq: m.seq } : state;
      if (!state) break;
    }
    const progressed = (state?.lastSeq ?? 0) > (this.confirmed?.lastSeq ?? 0);
    this.adopt(state);
    return progressed;
  }

  private adopt(state: RunState | undefined): void {
    if (!state || (this.confirmed && state.lastSeq < this.confirmed.lastSeq)) return;
    this.confirmed = state;
    this.heard = state;
    if (isTerminal(state.status)) this.settle(state);
  }

  private settle(state: RunState): void {
    if (this.settled) return;
    this.finish();
    this.resolveFn(state);
  }

  private finish(): void {
    this.settled = true;
    if (this.rereadTimer) clearTimeout(this.rereadTimer);
    this.sub.unsubscribe();
    this.onSettled(this);
  }
}
