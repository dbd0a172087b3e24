import {
  type ConsumerMessages,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from "@nats-io/jetstream";
import {
  decodeEvent,
  EventTypes,
  evolve,
  isTerminal,
  makeEvent,
  type RunState,
  runIdFromHistorySubject,
  Streams,
  subjects,
  type TaskjetEvent,
} from "@taskjet/schemas";
import type { Logger } from "pino";
import { appendAtTail } from "../log/append.js";
import type { RunStore } from "./run-store.js";

/** One event folded into a run, as the scheduler hears of it. */
export interface RunChange {
  event: TaskjetEvent;
  seq: number;
  state: RunState;
}

export interface ProjectorOptions {
  js: JetStreamClient;
  jsm: JetStreamManager;
  ns: string;
  store: RunStore;
  log: Logger;
  /** Coalescing window for KV writes. */
  flushMs: number;
  /** Called for every folded event once the projector has caught up with the log. */
  onChange: (change: RunChange) => void;
}

/**
 * Folds the namespace's history into run states: in memory for the engine, and into `TJ_RUNS` with coalesced writes.
 *
 * It reads the log with an ordered consumer from a checkpoint stored beside the states, not with a durable consumer:
 * after a crash a durable redelivers its unacknowledged tail only after ack_wait while later messages flow, so a run's
 * events would arrive out of order. The checkpoint is written after the states it covers, so a restart re-reads at
 * most one flush window, and folding is idempotent (`evolve` skips sequences it has seen).
 */
export class Projector {
  /** Runs not finished, plus finished ones until their last state is written. */
  readonly states = new Map<string, RunState>();
  private readonly dirty = new Set<string>();
  private position = 0;
  private readonly backlog: JsMsg[] = [];
  private draining = false;
  private live = false;
  private onLive?: () => void;
  private flushTimer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private messages: ConsumerMessages | undefined;
  private stopped = false;

  constructor(private readonly o: ProjectorOptions) {}

  /** Loads the unfinished runs, then reads the log from the checkpoint; resolves once caught up. */
  async start(): Promise<void> {
    const { js, ns, store } = this.o;
    for (const state of await store.all({ activeOnly: true })) this.states.set(state.runId, state);
    this.position = await store.checkpoint();
    const consumer = await js.consumers.get(Streams.history, {
      filter_subjects: subjects.historyAll(ns),
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: this.position + 1,
    });
    const caughtUp = new Promise<void>((resolve) => {
      this.onLive = resolve;
    });
    if ((await consumer.info(true)).num_pending === 0) this.goLive();
    this.messages = await consumer.consume({ callback: (m) => this.receive(m), max_messages: 2000, expires: 5000 });
    await caughtUp;
    this.o.log.info({ active: this.states.size, position: this.position }, "projector caught up");
  }

  /** Stops reading and writes what is pending. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.messages?.close().catch(() => undefined);
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    await this.flushing;
    if (this.dirty.size > 0) await this.flush();
  }

  private goLive(): void {
    if (this.live) return;
    this.live = true;
    this.onLive?.();
  }

  private receive(m: JsMsg): void {
    this.backlog.push(m);
    if (!this.draining) this.drain().catch((err) => this.o.log.error({ err }, "projector stalled"));
  }

  /** Folds messages strictly in order; only a run missing from memory makes it wait (for its stored state). */
  private async drain(): Promise<void> {
    this.draining = true;
    try {
      for (let m = this.backlog.shift(); m !== undefined; m = this.backlog.shift()) {
        if (m.seq > this.position) await this.fold(m);
        if (!this.live && m.info.pending === 0) this.goLive();
      }
    } finally {
      this.draining = false;
    }
  }

  private async fold(m: JsMsg): Promise<void> {
    const runId = runIdFromHistorySubject(m.subject);
    const decoded = decodeEvent(m.data, runId);
    if (!decoded.ok) {
      this.position = m.seq;
      this.reject(runId, m.seq, decoded.reason);
      return;
    }
    const { event } = decoded;
    let prev = this.states.get(runId);
    if (!prev && event.type !== EventTypes.RunCreated && event.type !== EventTypes.EventRejected) {
      prev = await this.o.store.get(runId); // a late fact about a finished run
      if (!prev) {
        this.position = m.seq;
        this.reject(runId, m.seq, `${event.type} for a run that was never created`);
        return;
      }
    }
    const state = evolve(prev, event, m.seq);
    this.position = m.seq;
    if (!state || state === prev) return;
    this.states.set(runId, state);
    this.dirty.add(runId);
    this.scheduleFlush();
    if (this.live) this.o.onChange({ event, seq: m.seq, state });
  }

  /** Records why a message on a run's subject was not accepted (invariant 5: never silence). */
  private reject(runId: string, seq: number, reason: string): void {
    if (this.stopped) return;
    this.o.log.warn({ runId, seq, reason }, "history message rejected");
    const event = makeEvent(EventTypes.EventRejected, { runId, data: { rejectedSeq: seq, reason } });
    appendAtTail(this.o.js, this.o.jsm, this.o.ns, event, seq).catch((err) =>
      this.o.log.error({ err, runId, seq }, "could not record a rejection"),
    );
  }

  private scheduleFlush(): void {
    if (this.flushTimer || this.flushing || this.stopped) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      this.flush().catch((err) => this.o.log.error({ err }, "projection flush failed"));
    }, this.o.flushMs);
  }

  private flush(): Promise<void> {
    const run = async () => {
      const ids = [...this.dirty];
      this.dirty.clear();
      const upTo = this.position;
      const batch = ids.map((id) => this.states.get(id)).filter((s): s is RunState => s !== undefined);
      try {
        await this.o.store.putMany(batch);
        await this.o.store.saveCheckpoint(upTo);
        for (const s of batch) {
          if (isTerminal(s.status) && this.states.get(s.runId) === s) this.states.delete(s.runId);
        }
      } catch (err) {
        for (const id of ids) this.dirty.add(id);
        this.o.log.warn({ err, runs: ids.length }, "projection write failed; will retry");
        await new Promise((r) => setTimeout(r, 500));
      }
    };
    this.flushing = run().finally(() => {
      this.flushing = undefined;
      if (this.dirty.size > 0) this.scheduleFlush();
    });
    return this.flushing;
  }
}
