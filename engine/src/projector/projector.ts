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
  HISTORY_WARN_EVENTS,
  isTerminal,
  makeEvent,
  type RunState,
  RunStatuses,
  runIdFromHistorySubject,
  Streams,
  subjects,
  type TaskjetEvent,
  youngCopy,
} from "@taskjet/schemas";
import type { Logger } from "pino";
import type { Gate } from "../leases/fence.js";
import { appendAtTail } from "../log/append.js";
import { onIdle } from "../log/scan.js";
import type { RunStore, Stored } from "./run-store.js";

/** Marks, in the backlog, the point where the consumer had nothing more to deliver. */
const IDLE = Symbol("idle");

/** What a run id may be (the envelope's rule): a rejection can be recorded only on such a subject. */
const RUN_ID = /^[A-Za-z0-9_-]{1,128}$/;

/** Reads of stored states in flight at once for `load`: enough to pipeline, few enough not to flood the server. */
const MAX_READS = 1024;

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
  /** A run not finished is written only once it has waited this long unwritten: most runs get one write, final. */
  activeDelayMs: number;
  /**
   * `activeDelayMs` for a run that only waits for a slot (`mayGoCold`): its state is its creation, which the log has,
   * and a write per waiting run would cost the most when the engine is furthest behind.
   */
  queuedDelayMs: number;
  /** Called for every folded event once the projector has caught up with the log. */
  onChange: (change: RunChange) => void;
  /**
   * Called when a folded event ends a run (it becomes final, or final again after a replay), while catching up too.
   * The engine tells waiters.
   */
  onEnded?: (state: RunState) => void;
  /** A run whose history reaches this many events is logged, once. @default HISTORY_WARN_EVENTS */
  historyWarnEvents?: number;
  /**
   * Unfinished runs held in memory before queued ones go cold (kept only in `TJ_RUNS`, read back by `load`).
   * @default no limit
   */
  hotLimit?: number;
  /** Whether something still looks a run up in memory, though `mayGoCold` says it may go (a placed attempt). */
  pinned?: (state: RunState) => boolean;
  /** Writes wait while the lease is not confirmed: a deposed leader's stale states would stand over the new one's. */
  fence?: Gate;
}

/**
 * The projector's run states as the engine's parts see them. Hot runs are in memory; cold ones (queued runs beyond the
 * hot limit) only in `TJ_RUNS`. Whatever may meet a queued run it did not just hear of uses `load`.
 */
export interface RunStates {
  /** The run's state when it is in memory (a cold or finished run is not). */
  get(runId: string): RunState | undefined;
  /**
   * The run's latest state: from memory, else read from `TJ_RUNS` (a finished run too). With `keep` (default), an
   * unfinished run read stays in memory: for a caller that is about to make something happen to it, so the event that
   * follows finds it there.
   */
  load(runId: string, keep?: boolean): Promise<RunState | undefined>;
  /** `load` of many runs, read in parallel; the states in the order of `runIds`. */
  loadMany(runIds: readonly string[], keep?: boolean): Promise<(RunState | undefined)[]>;
  /** The states in memory: every unfinished run except the cold ones. */
  values(): IterableIterator<RunState>;
}

/**
 * Whether a run's state may leave memory once written (go cold): it only waits for a slot. Its queued attempts stay in
 * the scheduler core and their schedule deadlines in the timer heap, which is all a waiting run needs until it is
 * placed, cancelled or timed out (and those load it). A run that something else looks up by id keeps its state in
 * memory: a pending retry (retrier), a rate-limit pause (reapplied from the state), a recorded wait (queue summaries),
 * durable checkpoints (sleeps and event waits), child runs (cancelled with it), any task not queued.
 */
export function mayGoCold(state: RunState): boolean {
  if (state.status !== RunStatuses.queued || state.children?.length) return false;
  for (const t of state.tasks) {
    if (t.status !== RunStatuses.queued || t.retry || t.rateLimited || t.waiting || t.checkpoints) return false;
  }
  return true;
}

/** A read of a stored state in flight; `dropped` when the projector let go of the run meanwhile. */
interface Loading {
  promise: Promise<RunState | undefined>;
  keep: boolean;
  dropped: boolean;
}

/**
 * Folds the namespace's history into run states: in memory for the engine, and into `TJ_RUNS` with coalesced writes.
 *
 * It reads the log with an ordered consumer from a checkpoint stored beside the states, not with a durable consumer:
 * after a crash a durable redelivers its unacknowledged tail only after ack_wait while later messages flow, so a run's
 * events would arrive out of order. The checkpoint is written after the states it covers and never passes an event
 * whose run is still unwritten, so a restart re-reads only that tail; folding is idempotent (`evolve` skips sequences
 * it has seen).
 *
 * Finished runs are written within `flushMs`; unfinished ones only after `activeDelayMs` (`queuedDelayMs` for one that
 * only waits for a slot), so a short run is written once instead of once per event, and a run of a backlog once, not
 * twice. A run first written when its history is still short (it finished, or it only waits for a slot) goes into a
 * page with the others of its flush (`RunStore`): short runs, and the queued runs of a backlog, cost the store a
 * message per flush, not one each, and a cold run is read back from its one `RunCreated`. Readers that need the
 * latest state fold the log's tail on top (`runs.get`).
 *
 * Beyond `hotLimit` runs in memory, a written state that only waits for a slot (`mayGoCold`) is dropped: the store
 * has it as it is, so an event for it folds onto the stored state (as for a finished run), and `load` reads it back.
 * A flush writes the runs changed last at its end and drops from there, so the oldest queued runs, placed first,
 * mostly stay in memory.
 */
export class Projector implements RunStates {
  /**
   * Runs not finished (except cold ones), plus finished ones until their last state is written. A new map after each
   * flush (`youngCopy`): hold the projector, never this map.
   */
  get states(): Map<string, RunState> {
    return this.byRun;
  }
  /** `states`, re-made young after each flush (`youngCopy`). */
  private byRun = new Map<string, RunState>();
  /**
   * Runs with unwritten changes, by the sequence of the first, in the order they became dirty (an entry leaves only
   * once written), which is also the order of those sequences: the checkpoint is read off its first entry.
   */
  private readonly dirty = new Map<string, number>();
  /** Dirty runs to write within `flushMs` (`writeSoon`). */
  private readonly soon = new Set<string>();
  /**
   * The other dirty runs by when they are due, `activeDelayMs` or `queuedDelayMs` after they became dirty or changed
   * kind: one map per delay keeps each in the order of its due times, so a flush reads the ripe ones off their heads
   * however many thousands of queued runs wait behind them.
   */
  private readonly due = { active: new Map<string, number>(), queued: new Map<string, number>() };
  /**
   * Runs in memory whose state has a key of its own in the store (written there, or read from there): their next
   * states go there too. The others, finished or only waiting for a slot, go into pages (`RunStore.putPaged`).
   */
  private readonly keyed = new Set<string>();
  /**
   * Cold runs (out of memory unfinished) whose state is under their key. The others were paged: read back, a history of
   * one `RunCreated` (nearly every cold run's) is then one request, without asking for a key first.
   */
  private readonly coldKeyed = new Set<string>();
  /** Runs whose state is too large to write even slim (logged once). */
  private readonly oversized = new Set<string>();
  private position = 0;
  /** The namespace's last history sequence when reading started: folded, the projector is live. */
  private target = 0;
  private readonly backlog: (JsMsg | typeof IDLE)[] = [];
  private draining = false;
  private live = false;
  private onLive?: () => void;
  private flushTimer: NodeJS.Timeout | undefined;
  private readonly flushSoon = () => this.scheduleFlush(0);
  private flushDue = 0;
  private savedCheckpoint = 0;
  private flushing: Promise<void> | undefined;
  private messages: ConsumerMessages | undefined;
  private stopped = false;
  private readonly hotLimit: number;
  /** Reads of cold runs in flight, one per run however many callers wait for it. */
  private readonly loading = new Map<string, Loading>();
  private reads = 0;
  /** Reads waiting for one of the `MAX_READS` (a FIFO: a timeout firing for a million runs queues a million). */
  private readonly readQueue: ((() => void) | undefined)[] = [];
  private readQueueHead = 0;

  constructor(private readonly o: ProjectorOptions) {
    this.hotLimit = o.hotLimit ?? Number.POSITIVE_INFINITY;
  }

  get(runId: string): RunState | undefined {
    return this.states.get(runId);
  }

  values(): IterableIterator<RunState> {
    return this.states.values();
  }

  load(runId: string, keep = true): Promise<RunState | undefined> {
    const hot = this.states.get(runId);
    if (hot) return Promise.resolve(hot);
    const pending = this.loading.get(runId);
    if (pending) {
      pending.keep ||= keep;
      return pending.promise;
    }
    const loading = { keep, dropped: false } as Loading;
    loading.promise = this.read(runId).then(
      (stored) => {
        this.loading.delete(runId);
        // Folded meanwhile: the state in memory is the latest.
        const now = this.states.get(runId);
        if (now) return now;
        // Folded, written and dropped meanwhile: what was read may predate that write.
        if (loading.dropped) return this.load(runId, loading.keep);
        if (stored && loading.keep && !this.stopped && !isTerminal(stored.state.status)) this.hold(stored);
        return stored?.state;
      },
      (err: unknown) => {
        this.loading.delete(runId);
        throw err;
      },
    );
    this.loading.set(runId, loading);
    return loading.promise;
  }

  loadMany(runIds: readonly string[], keep = true): Promise<(RunState | undefined)[]> {
    return Promise.all(runIds.map((runId) => this.load(runId, keep)));
  }

  /**
   * After recovery, once the scheduler has queued every loaded run: drops the states that may go cold beyond the hot
   * limit, the last loaded (the last written, mostly the newest) first. Returns how many.
   */
  coolDown(): number {
    let excess = this.states.size - this.hotLimit;
    if (excess <= 0) return 0;
    const runIds = [...this.states.keys()];
    let dropped = 0;
    for (let i = runIds.length - 1; i >= 0 && excess > 0; i--) {
      const state = this.states.get(runIds[i] as string);
      if (!state || !this.mayDrop(state)) continue;
      this.drop(state.runId, true);
      excess--;
      dropped++;
    }
    this.o.log.debug({ cold: dropped, hot: this.states.size }, "queued runs beyond the hot limit left in the store");
    return dropped;
  }

  /** Loads the unfinished runs, then reads the log from the checkpoint; resolves once caught up. */
  async start(): Promise<void> {
    const { js, ns, store } = this.o;
    for (const stored of await store.all({ activeOnly: true })) this.hold(stored);
    this.position = await store.checkpoint();
    this.o.log.debug({ active: this.states.size, position: this.position }, "projection loaded");
    this.savedCheckpoint = this.position;
    const consumer = await js.consumers.get(Streams.history, {
      filter_subjects: subjects.historyAll(ns),
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: this.position + 1,
    });
    const caughtUp = new Promise<void>((resolve) => {
      this.onLive = resolve;
    });
    // Caught up once the namespace's last event as of now is folded: under a steady load the consumer is never idle,
    // and 2.9.10 can over-count `pending` for a filtered consumer, so neither alone says when (a takeover waited ~5 s).
    this.target = await this.o.jsm.streams
      .getMessage(Streams.history, { last_by_subj: subjects.historyAll(ns) })
      .then((m) => m?.seq ?? 0)
      .catch(() => 0);
    const pending = this.target <= this.position ? 0 : (await consumer.info(true)).num_pending;
    this.o.log.debug({ pending }, "reading the log");
    if (pending === 0) this.goLive();
    this.messages = await consumer.consume({
      callback: (m) => this.receive(m),
      max_messages: 2000,
      expires: 5000,
      idle_heartbeat: 1000,
    });
    onIdle(this.messages, () => {
      // Caught up once what was pending is folded: queue behind the backlog.
      if (!this.live) this.backlog.push(IDLE);
      this.receive(undefined);
    });
    await caughtUp;
    this.o.log.info({ active: this.states.size, position: this.position }, "projector caught up");
  }

  /** Stops reading and, with `flush`, writes what is pending. */
  async stop(flush = true): Promise<void> {
    this.stopped = true;
    await this.messages?.close().catch(() => undefined);
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    await this.flushing;
    if (flush && this.dirty.size > 0) await this.flush(true);
  }

  private goLive(): void {
    if (this.live) return;
    this.live = true;
    this.onLive?.();
    // Unfinished runs folded while catching up were not written: their delay runs from now on.
    this.rescheduleFlush();
  }

  private receive(m: JsMsg | undefined): void {
    if (m) this.backlog.push(m);
    if (!this.draining) this.drain().catch((err) => this.o.log.error({ err }, "projector stalled"));
  }

  /** Folds messages strictly in order; only a run missing from memory makes it wait (for its stored state). */
  private async drain(): Promise<void> {
    this.draining = true;
    try {
      for (let m = this.backlog.shift(); m !== undefined; m = this.backlog.shift()) {
        if (m === IDLE) {
          this.goLive();
          continue;
        }
        try {
          if (m.seq > this.position) {
            // Only an event for a run not in memory has to wait (for its stored state): no promise per event.
            const pending = this.fold(m);
            if (pending) await pending;
          }
        } catch (err) {
          // Never skip an event: keep it at the head and try again shortly (a failed read of a stored state).
          this.o.log.warn({ err, seq: m.seq }, "could not fold an event; retrying");
          this.backlog.unshift(m);
          setTimeout(() => this.receive(undefined), 500).unref();
          return;
        }
        if (!this.live && (m.info.pending === 0 || m.seq >= this.target)) this.goLive();
      }
    } finally {
      this.draining = false;
    }
  }

  private fold(m: JsMsg): Promise<void> | undefined {
    const runId = runIdFromHistorySubject(m.subject);
    const decoded = decodeEvent(m.data, runId);
    if (!decoded.ok) {
      this.position = m.seq;
      this.reject(runId, m.seq, decoded.reason);
      return;
    }
    const { event } = decoded;
    const prev = this.states.get(runId);
    if (prev || event.type === EventTypes.RunCreated) {
      this.apply(prev, event, m.seq);
      return;
    }
    // A cold run, or a late fact about a finished one (a rejection of a bad message on its subject too): its stored
    // state is its latest (a run leaves memory only once written and unchanged since), and nothing else folds
    // meanwhile, so this event lands on it in order.
    return this.stored(runId).then((stored) => {
      if (stored) {
        this.apply(stored.state, event, m.seq);
        if (this.states.has(runId)) this.held(stored);
      } else if (event.type === EventTypes.EventRejected) {
        // The run's first message was refused: the run exists, FAILED.
        this.apply(undefined, event, m.seq);
      } else {
        this.position = m.seq;
        this.reject(runId, m.seq, `${event.type} for a run that was never created`);
      }
    });
  }

  private apply(prev: RunState | undefined, event: TaskjetEvent, seq: number): void {
    const state = evolve(prev, event, seq);
    this.position = seq;
    if (!state || state === prev) return;
    this.warnIfLong(prev, state);
    // Keyed by the state's own id: `runId` is cut from the message's subject, and a map key would keep all of it.
    this.states.set(state.runId, state);
    if (!this.dirty.has(state.runId)) this.dirty.set(state.runId, seq);
    if (this.writeSoon(state)) {
      this.soon.add(state.runId);
      this.scheduleFlush(this.o.flushMs);
    } else {
      this.scheduleFlush(this.arm(state));
    }
    // Before live too: a run that ended while no engine read the log has waiters as well, and the end is a fact.
    if (this.o.onEnded && isTerminal(state.status) && !(prev && isTerminal(prev.status))) this.o.onEnded(state);
    if (this.live) this.o.onChange({ event, seq, state });
  }

  /**
   * Logs a run whose history just reached the limit. Comparing with the previous count rather than remembering the runs
   * already named costs no memory and holds across restarts: an event re-read after one is skipped when the stored
   * state has it (only a crash before that state was written can log the run again).
   */
  private warnIfLong(prev: RunState | undefined, state: RunState): void {
    const limit = this.o.historyWarnEvents ?? HISTORY_WARN_EVENTS;
    if (state.eventCount < limit || (prev?.eventCount ?? 0) >= limit) return;
    this.o.log.warn(
      { runId: state.runId, events: state.eventCount, limit, workflowName: state.workflowName },
      "run history is long: reading and folding it slows down every reader (see README, History limits)",
    );
  }

  /** Records why a message on a run's subject was not accepted (invariant 5: never silence). */
  private reject(runId: string, seq: number, reason: string): void {
    if (this.stopped) return;
    if (!RUN_ID.test(runId)) {
      // Not a run's subject (a token no run id can be): an EventRejected there would be refused in turn, and
      // rejected again, without end. The message stays in the stream, where this names it.
      this.o.log.warn(
        { subject: subjects.history(this.o.ns, runId.slice(0, 200)), seq, reason },
        "message on a history subject that is no run's: left in the stream",
      );
      return;
    }
    this.o.log.warn({ runId, seq, reason }, "history message rejected");
    const event = makeEvent(EventTypes.EventRejected, { runId, data: { rejectedSeq: seq, reason } });
    appendAtTail(this.o.js, this.o.jsm, this.o.ns, event, seq).catch((err) =>
      this.o.log.error({ err, runId, seq }, "could not record a rejection"),
    );
  }

  private scheduleFlush(inMs: number): void {
    if (this.flushing || this.stopped) return;
    const due = Date.now() + inMs;
    if (this.flushTimer && this.flushDue <= due) return;
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushDue = due;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      const { fence } = this.o;
      if (fence && !fence.ok) {
        fence.whenOk(this.flushSoon);
        return;
      }
      this.flush(false).catch((err) => this.o.log.error({ err }, "projection flush failed"));
    }, inMs);
  }

  /** Writes finished runs and those unwritten for `activeDelayMs` (all with `everything`), then the checkpoint. */
  private flush(everything: boolean): Promise<void> {
    const run = async () => {
      const batch = everything ? this.everyDirty() : this.ripe();
      const upTo = this.position;
      try {
        const unwritten = await this.write(batch);
        for (const runId of unwritten) {
          // Even without input and outputs: only a run with thousands of tasks gets there. Said once per run.
          if (this.oversized.has(runId)) continue;
          this.oversized.add(runId);
          this.o.log.error({ runId }, "run state larger than the server's max payload: not written; retrying");
        }
        for (const s of batch) {
          // Changed while writing, or not written: stays dirty.
          if (this.states.get(s.runId) !== s || unwritten.includes(s.runId)) continue;
          this.dirty.delete(s.runId);
          this.soon.delete(s.runId);
          this.due.active.delete(s.runId);
          this.due.queued.delete(s.runId);
          if (isTerminal(s.status)) this.drop(s.runId);
        }
        this.coolWritten(batch);
        this.byRun = youngCopy(this.byRun);
        const oldest = this.dirty.values().next().value;
        const checkpoint = oldest !== undefined ? Math.min(upTo, oldest - 1) : upTo;
        if (checkpoint > this.savedCheckpoint) {
          await this.o.store.saveCheckpoint(checkpoint);
          this.savedCheckpoint = checkpoint;
        }
      } catch (err) {
        this.o.log.warn({ err, runs: batch.length }, "projection write failed; will retry");
        await new Promise((r) => setTimeout(r, 500));
      }
    };
    this.flushing = run().finally(() => {
      this.flushing = undefined;
      this.rescheduleFlush();
    });
    return this.flushing;
  }

  /**
   * Writes a batch: runs never written under a key whose history is short (finished, or only waiting for a slot) into
   * pages, the others under their keys. A run is taken as keyed before its write is acknowledged: a write that fails
   * may still have been stored, and a page written later must not leave an older state under the key. Returns the runs
   * not written (too large even slim).
   */
  private async write(batch: RunState[]): Promise<string[]> {
    const paged: RunState[] = [];
    const single: RunState[] = [];
    for (const s of batch) {
      if (!this.keyed.has(s.runId) && (isTerminal(s.status) || mayGoCold(s))) paged.push(s);
      else {
        single.push(s);
        this.keyed.add(s.runId);
      }
    }
    const [unwritten, large] = await Promise.all([this.o.store.putMany(single), this.o.store.putPaged(paged)]);
    if (large.length === 0) return unwritten;
    for (const s of large) this.keyed.add(s.runId);
    return [...unwritten, ...(await this.o.store.putMany(large))];
  }

  /**
   * Whether a changed state is written within `flushMs` rather than `activeDelayMs`: a finished run, or, while live, one
   * that goes cold once written (beyond the hot limit, a run waits longer than the delay anyway). Written at once, its
   * state leaves memory before the young generation is collected: kept for the delay, a million of them would be
   * promoted and die in the old generation, which V8 then lets grow to twice the live heap and more.
   */
  private writeSoon(state: RunState): boolean {
    return (
      isTerminal(state.status) ||
      (this.live && this.states.size > this.hotLimit && mayGoCold(state) && !this.o.pinned?.(state))
    );
  }

  /** Drops written states that may go cold while more than `hotLimit` are held, the last changed first. */
  private coolWritten(batch: RunState[]): void {
    for (let i = batch.length - 1; i >= 0 && this.states.size > this.hotLimit; i--) {
      const s = batch[i] as RunState;
      if (this.states.get(s.runId) === s && this.mayDrop(s)) this.drop(s.runId, true);
    }
  }

  /** Written and unchanged since (the store has it as it is), and only waiting for a slot. */
  private mayDrop(state: RunState): boolean {
    return !this.dirty.has(state.runId) && mayGoCold(state) && !this.o.pinned?.(state);
  }

  /**
   * Lets go of a run's state (`cold`: unfinished, to be read back); a read of it in flight must not bring back what it
   * read before the last write.
   */
  private drop(runId: string, cold = false): void {
    this.states.delete(runId);
    if (this.keyed.delete(runId) && cold) this.coldKeyed.add(runId);
    const loading = this.loading.size > 0 ? this.loading.get(runId) : undefined;
    if (loading) loading.dropped = true;
  }

  /** Keeps a stored state in memory. */
  private hold(stored: Stored): void {
    this.states.set(stored.state.runId, stored.state);
    this.held(stored);
  }

  /** A stored state is in memory again: where it was read from is where its next state goes. */
  private held(stored: Stored): void {
    const { runId } = stored.state;
    this.coldKeyed.delete(runId);
    if (stored.keyed) this.keyed.add(runId);
  }

  /** A stored state read back, up to what has been folded. */
  private stored(runId: string): Promise<Stored | undefined> {
    return this.o.store.get(runId, this.position, !this.coldKeyed.has(runId));
  }

  /**
   * Reads a stored state, at most `MAX_READS` at once; the others wait their turn in order. Not past what has been
   * folded: the events after it are yet to be folded onto it.
   */
  private async read(runId: string): Promise<Stored | undefined> {
    if (this.reads >= MAX_READS) await new Promise<void>((resolve) => this.readQueue.push(resolve));
    else this.reads++;
    try {
      return await this.stored(runId);
    } finally {
      this.nextRead();
    }
  }

  /** Hands a finished read's turn to the next waiting one (the count stays), or gives it back. */
  private nextRead(): void {
    const next = this.readQueue[this.readQueueHead];
    if (!next) {
      this.reads--;
      return;
    }
    this.readQueue[this.readQueueHead++] = undefined;
    if (this.readQueueHead === this.readQueue.length) {
      this.readQueue.length = 0;
      this.readQueueHead = 0;
    } else if (this.readQueueHead > 1024 && this.readQueueHead * 2 > this.readQueue.length) {
      this.readQueue.splice(0, this.readQueueHead);
      this.readQueueHead = 0;
    }
    next();
  }

  /**
   * Puts a dirty run not to be written soon in the due map of its kind; a run already there keeps its due time, one that
   * changed kind is due a delay from now. Returns in how many ms it is due.
   */
  private arm(state: RunState): number {
    const queued = mayGoCold(state);
    const [into, from, delay] = queued
      ? [this.due.queued, this.due.active, this.o.queuedDelayMs]
      : [this.due.active, this.due.queued, this.o.activeDelayMs];
    const now = performance.now();
    const due = into.get(state.runId);
    if (due !== undefined) return Math.max(0, due - now);
    from.delete(state.runId);
    into.set(state.runId, now + delay);
    return delay;
  }

  /** The dirty runs to write now: the `soon` ones, then, once live, those due (`arm`). */
  private ripe(): RunState[] {
    const batch: RunState[] = [];
    for (const runId of this.soon) {
      const state = this.states.get(runId);
      if (state && this.writeSoon(state)) batch.push(state);
      else {
        // Replayed, or back under the hot limit: it waits like the others.
        this.soon.delete(runId);
        if (state) this.arm(state);
      }
    }
    // While catching up, unfinished states are not final yet: the next events are already waiting.
    if (!this.live) return batch;
    const now = performance.now();
    for (const due of [this.due.active, this.due.queued]) {
      for (const [runId, at] of due) {
        if (at > now) break;
        const state = this.states.get(runId);
        if (!state || !this.dirty.has(runId)) due.delete(runId);
        else if (!this.soon.has(runId)) batch.push(state);
      }
    }
    return batch;
  }

  private everyDirty(): RunState[] {
    const batch: RunState[] = [];
    for (const runId of this.dirty.keys()) {
      const state = this.states.get(runId);
      if (state) batch.push(state);
    }
    return batch;
  }

  private rescheduleFlush(): void {
    if (this.soon.size > 0) {
      this.scheduleFlush(this.o.flushMs);
      return;
    }
    if (!this.live) return;
    const next = Math.min(
      this.due.active.values().next().value ?? Number.POSITIVE_INFINITY,
      this.due.queued.values().next().value ?? Number.POSITIVE_INFINITY,
    );
    if (next !== Number.POSITIVE_INFINITY) this.scheduleFlush(Math.max(0, next - performance.now()));
  }
}
