import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import {
  Buckets,
  decodeEvent,
  EventTypes,
  evolve,
  isPageKey,
  isTerminal,
  keys,
  type RunState,
  Streams,
  slimState,
  statesOfEntry,
  subjects,
} from "@taskjet/schemas";
import { ulid } from "ulid";
import type { Publisher } from "../log/append.js";
import { foldHistory } from "../log/fold.js";
import { scan, subjectMessages } from "../log/scan.js";
import { exceeds } from "../nats/connect.js";

const decoder = new TextDecoder();

/** Where a `TJ_RUNS` key's messages are stored: the key follows. */
const KV_PREFIX = `$KV.${Buckets.runs}.`;

/** A page's length at most, in characters: ~350 short runs (a flush at full speed holds about a hundred). */
const PAGE_CHARS = 256 * 1024;

/** A run's stored state, and whether it was found under its own key (`keys.run`) or folded from the log. */
export interface Stored {
  state: RunState;
  keyed: boolean;
}

/**
 * The `TJ_RUNS` projection of one namespace: run states plus the projector's checkpoint.
 *
 * A run's state lives under its own key once written there; a run first written while its history is short (it
 * finished within the projection's delay, or it only waits for a slot) goes, with the others of the same flush, into a
 * page (`keys.runPage`): one message per flush instead of one per run (a third of the hot path's stored messages,
 * and two per run of a backlog past the hot limit: its state as it left the engine's memory, then its end). Nobody
 * looks a paged run up by key: its history is short and is the truth, so a read that misses the key folds it
 * (`get`); lists and the run index read the pages, a run's later entry over its earlier one.
 */
export class RunStore {
  /** Where a page is put together (`putPaged`). */
  private scratch = Buffer.alloc(0);

  constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly kv: KV,
    private readonly ns: string,
    /** The engine's `StreamPublisher` (`js` serves a one-off rebuild). */
    private readonly publisher: Publisher,
    /** The server's largest message: a state beyond it cannot be stored. */
    private readonly maxPayload: () => number,
  ) {}

  /**
   * The run's state under its key, else folded from its history: events after `upToSeq` are left out, so the state is
   * never ahead of a projector that has folded only that far (the events after it are still to reach it, and must
   * change the state when they do). With `lonePaged` the caller knows that, if the run's history is one `RunCreated`,
   * the run has no key (a cold run the projector paged): that history is then read in one request, without asking
   * for the key first.
   */
  async get(runId: string, upToSeq = Number.POSITIVE_INFINITY, lonePaged = false): Promise<Stored | undefined> {
    if (lonePaged) {
      const lone = await this.loneCreation(runId, upToSeq);
      if (lone) return { state: lone, keyed: false };
    }
    const entry = await this.kv.get(keys.run(this.ns, runId));
    if (entry?.operation === "PUT" && entry.length > 0) {
      const state = entry.json<RunState>();
      const whole = state.slim ? await this.fromLog(runId, upToSeq) : state;
      return whole && { state: whole, keyed: true };
    }
    const state = await this.foldRun(runId, upToSeq);
    return state && { state, keyed: false };
  }

  /**
   * Writes each state under its key, pipelined (a KV put is a publish to the key's subject). A state larger than the
   * server takes (input and outputs near the limit each) is written slim (`slimState`); returns the runs too large
   * even so, not written.
   */
  async putMany(states: RunState[]): Promise<string[]> {
    const max = this.maxPayload();
    const unwritten: string[] = [];
    await Promise.all(
      states.map((s) => {
        let json = JSON.stringify(s);
        if (exceeds(json, max)) json = JSON.stringify(slimState(s));
        if (exceeds(json, max)) {
          unwritten.push(s.runId);
          return undefined;
        }
        return this.publisher.publish(KV_PREFIX + keys.run(this.ns, s.runId), json);
      }),
    );
    return unwritten;
  }

  /**
   * Writes states in pages, pipelined. Returns the states too large for a page, not written: they go under their own
   * keys (`putMany`).
   */
  async putPaged(states: RunState[]): Promise<RunState[]> {
    // A character takes at most three bytes: a page within this never exceeds the server's max payload.
    const limit = Math.min(PAGE_CHARS, Math.floor(this.maxPayload() / 3));
    // Each state's JSON goes straight into one buffer as UTF-8: joining a page's strings and encoding the result cost
    // the engine four times as much (10 against 2 µs per state, in a loop), a tenth of its CPU per short task.
    if (this.scratch.length < 3 * limit) this.scratch = Buffer.allocUnsafe(3 * limit);
    const buf = this.scratch;
    const large: RunState[] = [];
    const writes: Promise<unknown>[] = [];
    let bytes = 0;
    let chars = 2;
    const write = () => {
      if (bytes === 0) return;
      buf[bytes++] = 0x5d; // ]
      // A copy: the connection holds a payload until it writes it, and the scratch buffer serves the next page.
      const page = new Uint8Array(buf.subarray(0, bytes));
      writes.push(this.publisher.publish(KV_PREFIX + keys.runPage(this.ns, ulid()), page));
      bytes = 0;
      chars = 2;
    };
    for (const s of states) {
      const json = JSON.stringify(s);
      if (json.length + 2 > limit) {
        large.push(s);
        continue;
      }
      if (chars + json.length + 1 > limit) write();
      const first = bytes === 0;
      buf[bytes++] = first ? 0x5b : 0x2c; // [ or ,
      bytes += buf.write(json, bytes);
      chars += json.length + 1;
    }
    write();
    await Promise.all(writes);
    return large;
  }

  /**
   * The state of a run whose whole history up to `upToSeq` is its `RunCreated` (appended only on an empty subject: the
   * last event being one means it is the only one), from one read of the subject's last message; else undefined.
   */
  private async loneCreation(runId: string, upToSeq: number): Promise<RunState | undefined> {
    const last = await this.jsm.streams.getMessage(Streams.history, {
      last_by_subj: subjects.history(this.ns, runId),
    });
    if (!last || last.seq > upToSeq) return undefined;
    const decoded = decodeEvent(last.data, runId);
    if (!decoded.ok || decoded.event.type !== EventTypes.RunCreated) return undefined;
    return evolve(undefined, decoded.event, last.seq);
  }

  /**
   * A run's state folded from its history up to `upToSeq`, a message at a time without a consumer: a run read this
   * way (paged, or never projected) has a short history.
   */
  private async foldRun(runId: string, upToSeq: number): Promise<RunState | undefined> {
    const owned = new WeakSet<object>(); // only the last state is kept: the fold may grow its lists in place
    let state: RunState | undefined;
    for await (const m of subjectMessages(this.jsm, Streams.history, subjects.history(this.ns, runId), 0)) {
      if (m.seq > upToSeq) break;
      const decoded = decodeEvent(m.data, runId);
      if (decoded.ok) state = evolve(state, decoded.event, m.seq, owned) ?? state;
    }
    return state;
  }

  /** A run's state folded from its whole history through a consumer (one stored slim: a long history, mostly). */
  private async fromLog(runId: string, upToSeq?: number): Promise<RunState | undefined> {
    return (await foldHistory(this.js, subjects.history(this.ns, runId), undefined, upToSeq)).states.get(runId);
  }

  /** Every run state of the namespace (the latest entry of each run), optionally only those not finished. */
  async all(options: { activeOnly: boolean }): Promise<Stored[]> {
    const byRun = new Map<string, Stored>();
    await scan(this.js, `KV_${Buckets.runs}`, KV_PREFIX + keys.runsOf(this.ns), "lastPerSubject", (m) => {
      if (m.data.length === 0) return; // delete marker
      const key = m.subject.slice(KV_PREFIX.length);
      // The entry folded furthest into the run's history stands, not the one written last (a leader deposed while
      // frozen may write an older state after the new leader's). Finished runs are not held when not asked for: a
      // namespace keeps millions.
      const states = statesOfEntry(key, decoder.decode(m.data));
      const keyed = !isPageKey(key);
      for (const state of states) {
        const known = byRun.get(state.runId);
        if (known && known.state.lastSeq > state.lastSeq) continue;
        if (options.activeOnly && isTerminal(state.status)) byRun.delete(state.runId);
        else byRun.set(state.runId, { state, keyed });
      }
    });
    const out: Stored[] = [];
    for (const { state, keyed } of byRun.values()) {
      const whole = state.slim ? await this.fromLog(state.runId) : state;
      if (whole) out.push({ state: whole, keyed });
    }
    return out;
  }

  /** The history stream sequence up to which every event is reflected in this store. */
  async checkpoint(): Promise<number> {
    const entry = await this.kv.get(keys.projectorCheckpoint(this.ns));
    return entry && entry.operation === "PUT" && entry.length > 0 ? Number(entry.string()) : 0;
  }

  async saveCheckpoint(seq: number): Promise<void> {
    await this.kv.put(keys.projectorCheckpoint(this.ns), String(seq));
  }
}
