import type { KV } from "@nats-io/kv";
import {
  AppendConflictError,
  Buckets,
  checkTaskName,
  checkToken,
  decodeRunEnd,
  describeValue,
  EventTypes,
  evolve,
  isTerminal,
  keys,
  type Logger,
  makeEvent,
  parseIsoTime,
  RUN_STATUS_VALUES,
  type RunEnd,
  RunNotFoundError,
  type RunState,
  type RunStatus,
  RunStatuses,
  refuseUnknownKeys,
  replayPlan,
  statesOfEntry,
  subjects,
  type TaskjetEventInput,
  ValidationError,
} from "@taskjet/schemas";
import { appendEvent } from "./append.js";
import { type StreamChunk, toChunk } from "./chunks.js";
import { type Connection, openBucket, withProvisioningHint } from "./connection.js";
import { type HistoryEntry, readHistory } from "./history.js";
import { readStream } from "./read-stream.js";
import { caughtUp, lastHistoryMessage, readRunState, readTail, readUnprojected } from "./run-reader.js";
import { followRunSide } from "./run-tail.js";

/** Which runs a bulk operation picks from the projection. */
export interface RunFilters {
  statuses?: RunStatus[];
  taskName?: string;
  /** Created at or after. */
  since?: Date | string;
  /** Created before. */
  until?: Date | string;
  /** Runs whose metadata has all these pairs. */
  additionalMetadata?: Record<string, string>;
}

/** Which runs `runs.cancel` cancels: by id, or every unfinished run matching filters. */
export type CancelRunsOptions = ({ ids: string[] } | { filters: RunFilters }) & { reason?: string };

/**
 * Which runs `runs.replay` re-runs: by id, or every finished run matching filters (default statuses: FAILED and
 * CANCELLED). `from` re-runs only that task of a workflow and its descendants.
 */
export type ReplayRunsOptions = ({ ids: string[] } | { filters: RunFilters }) & {
  from?: string;
  reason?: string;
  /** Called after each run is decided. */
  onProgress?: (done: number, total: number) => void;
};

/** Filters of `runs.list`. */
export interface ListRunsOptions {
  /** Only runs in these statuses. */
  statuses?: RunStatus[];
  /** Only runs of this task (or workflow). */
  taskName?: string;
  /** At most this many, newest first. @default 100 */
  limit?: number;
}

const FILTER_KEYS = ["statuses", "taskName", "since", "until", "additionalMetadata"] as const;
const LIST_KEYS = ["statuses", "taskName", "limit"] as const;

const decoder = new TextDecoder();

/** @internal A list's options checked (an object of `keys`, a positive integer limit): its limit, 100 by default. */
export function listLimit(options: { limit?: number }, keys: readonly string[], fallback = 100): number {
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new ValidationError([{ path: "options", message: `must be an object, got ${describeValue(options)}` }]);
  }
  refuseUnknownKeys(options, keys, "", "a list option");
  const limit = options.limit ?? fallback;
  if (!Number.isInteger(limit) || limit <= 0) {
    throw new ValidationError([{ path: "limit", message: `must be a positive integer, got ${describeValue(limit)}` }]);
  }
  return limit;
}

function checkStatuses(statuses: unknown, path: string): void {
  if (statuses === undefined) return;
  if (!Array.isArray(statuses)) {
    throw new ValidationError([{ path, message: `must be an array of statuses, got ${describeValue(statuses)}` }]);
  }
  for (const [i, s] of statuses.entries()) {
    if (!RUN_STATUS_VALUES.includes(s)) {
      throw new ValidationError([
        { path: `${path}[${i}]`, message: `must be one of ${RUN_STATUS_VALUES.join(", ")}, got ${describeValue(s)}` },
      ]);
    }
  }
}

/** Reading runs: state, lists and history. */
export class RunsClient {
  private kv: Promise<KV> | undefined;

  constructor(
    private readonly conn: Connection,
    private readonly ns: string,
    private readonly log: Logger,
  ) {}

  /**
   * A run's current state: the projection, brought up to date with the log's tail (the projection's writes are
   * coalesced), so a read after a write sees the write.
   * @throws RunNotFoundError
   */
  async get(runId: string): Promise<RunState> {
    checkToken(runId, "runId");
    const state = await this.read(runId, undefined);
    if (!state) throw new RunNotFoundError(runId);
    return state;
  }

  /**
   * Cancels runs by id or by filters (matched as `list` finds runs).
   * Appends `RunCancelled` with CAS to each unfinished run.
   * @returns the runs cancelled now, and those that had already finished
   */
  async cancel(
    options: CancelRunsOptions,
  ): Promise<{ cancelled: string[]; alreadyFinished: string[]; notFound: string[] }> {
    checkOptions(options);
    const reason = checkReason(options.reason) ?? "cancelled by request";
    const ids = new Set(await this.select(options, [RunStatuses.queued, RunStatuses.running]));
    const cancelled: string[] = [];
    const alreadyFinished: string[] = [];
    // An id naming no run is said beside the others, which are cancelled all the same.
    const notFound: string[] = [];
    for (const id of ids) {
      try {
        if (await this.cancelOne(id, reason)) cancelled.push(id);
        else alreadyFinished.push(id);
      } catch (err) {
        if (!(err instanceof RunNotFoundError)) throw err;
        notFound.push(id);
      }
    }
    return { cancelled, alreadyFinished, notFound };
  }

  /**
   * Re-runs finished runs with their recorded input, as new attempts in the same history (`RunReplayed`): a run that
   * is not finished, or a `from` task whose parents did not complete, is refused with the reason. Watch the new
   * outcome with `tj.ref(id).result()`.
   */
  async replay(
    options: ReplayRunsOptions,
  ): Promise<{ replayed: string[]; refused: { runId: string; reason: string }[] }> {
    checkOptions(options);
    const { from } = options;
    if (from !== undefined && (typeof from !== "string" || from.length === 0 || from.length > 128)) {
      throw new ValidationError([{ path: "from", message: `must be a task name, got ${describeValue(from)}` }]);
    }
    const reason = checkReason(options.reason);
    const ids = await this.select(options, [RunStatuses.failed, RunStatuses.cancelled]);
    const replayed: string[] = [];
    const refused: { runId: string; reason: string }[] = [];
    let done = 0;
    await inParallel(ids, REPLAY_CONCURRENCY, async (runId) => {
      const refusal = await this.replayOne(runId, from, reason);
      if (refusal === undefined) replayed.push(runId);
      else refused.push({ runId, reason: refusal });
      options.onProgress?.(++done, ids.length);
    });
    return { replayed, refused };
  }

  /** Appends `RunReplayed` with CAS on the run's latest state; the refusal's reason when it does not apply. */
  private async replayOne(runId: string, from?: string, reason?: string): Promise<string | undefined> {
    const state = await this.read(runId, undefined);
    if (!state) return `no run ${runId}`;
    const event = makeEvent(EventTypes.RunReplayed, {
      runId,
      data: { ...(from !== undefined ? { from } : {}), ...(reason !== undefined ? { reason } : {}) },
    });
    let refused: string | undefined;
    await this.appendDecided(state, event, (s) => {
      const plan = replayPlan(s, from);
      refused = "refused" in plan ? plan.refused : undefined;
      return refused === undefined;
    });
    return refused;
  }

  /**
   * Appends `event` with CAS on the run's tail while `applies` says it applies to the latest state; after a conflict
   * (someone wrote first) it decides again on the new tail.
   * @returns whether this call stored it (false: it no longer applies, or a retry found it stored already)
   */
  private async appendDecided(
    state: RunState,
    event: TaskjetEventInput,
    applies: (state: RunState) => boolean,
  ): Promise<boolean> {
    for (let s = state; ; ) {
      if (!applies(s)) return false;
      try {
        return !(await appendEvent(this.conn, this.ns, event, s.lastSeq)).duplicate;
      } catch (err) {
        if (!(err instanceof AppendConflictError)) throw err;
        s = (await this.read(event.runId, s)) ?? s;
      }
    }
  }

  /** The run ids an operation names, or those matching its filters (`statuses` defaulting to `defaults`). */
  private async select(options: { ids: string[] } | { filters: RunFilters }, defaults: RunStatus[]): Promise<string[]> {
    if ("ids" in options) {
      if (!Array.isArray(options.ids)) {
        throw new ValidationError([
          { path: "ids", message: `must be an array of run ids, got ${describeValue(options.ids)}` },
        ]);
      }
      // Each run once: a repeated id would be both done and refused as no longer applying.
      return [...new Set(options.ids.map((id, i) => checkToken(id, `ids[${i}]`)))];
    }
    if (!("filters" in options) || typeof options.filters !== "object" || options.filters === null) {
      throw new ValidationError([
        {
          path: "filters",
          message: `give ids, or filters ({} for every run), got ${describeValue((options as { filters?: unknown }).filters)}`,
        },
      ]);
    }
    const f = options.filters;
    // A misspelt filter would otherwise be no filter, and the operation would apply to every run.
    refuseUnknownKeys(f, FILTER_KEYS, "filters", "a run filter");
    // Checked as names are: a name no task can have would match nothing, silently.
    if (f.taskName !== undefined) checkTaskName(f.taskName, "filters.taskName");
    const metadata = f.additionalMetadata ?? {};
    if (typeof metadata !== "object" || metadata === null || Array.isArray(metadata)) {
      throw new ValidationError([
        {
          path: "filters.additionalMetadata",
          message: `must be an object of strings, got ${describeValue(metadata)}`,
        },
      ]);
    }
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") {
        throw new ValidationError([
          { path: `filters.additionalMetadata.${k}`, message: `must be a string, got ${describeValue(v)}` },
        ]);
      }
    }
    checkStatuses(f.statuses, "filters.statuses");
    const since = f.since === undefined ? undefined : dateOf(f.since, "filters.since");
    const until = f.until === undefined ? undefined : dateOf(f.until, "filters.until");
    const matches = await this.list({
      statuses: f.statuses ?? defaults,
      ...(f.taskName !== undefined ? { taskName: f.taskName } : {}),
      limit: Number.MAX_SAFE_INTEGER,
    });
    return matches
      .filter((s) => (since === undefined || s.createdAt >= since) && (until === undefined || s.createdAt < until))
      .filter((s) => Object.entries(metadata).every(([k, v]) => s.additionalMetadata[k] === v))
      .map((s) => s.runId);
  }

  /**
   * @internal Cancels one run; `false` when it had already finished (or `applies`, decided again after every
   * conflict, says no; it may throw instead).
   * @throws RunNotFoundError
   */
  async cancelOne(
    runId: string,
    reason?: string,
    applies: (state: RunState) => boolean = (s) => !isTerminal(s.status),
  ): Promise<boolean> {
    reason = checkReason(reason) ?? "cancelled by request";
    const state = await this.read(runId, undefined);
    if (!state) throw new RunNotFoundError(runId);
    const event = makeEvent(EventTypes.RunCancelled, { runId, data: { reason } });
    return this.appendDecided(state, event, applies);
  }

  /** @internal The latest state, from `known` (folding only the log after it) or from the projection. */
  async read(runId: string, known: RunState | undefined): Promise<RunState | undefined> {
    if (known) return readTail(this.conn, this.ns, runId, known);
    return readRunState(this.conn, await this.bucket(), this.ns, runId);
  }

  /**
   * Calls `listener` with every run of the namespace that ends from now on, as the engine announces it: its status,
   * output or error, and its tasks' statuses (`slim: true` without the output when that did not fit in one message:
   * `get` has it). Live, like any subscription: ends announced while this client is disconnected are not replayed
   * (`list` has them), and one may come twice (an engine announces its latest ends again after a reconnect). What the
   * listener throws is logged.
   * @returns a function that stops listening
   * @throws ValidationError when `listener` is not a function
   */
  onEnd(listener: (end: RunEnd) => void): () => void {
    if (typeof listener !== "function") {
      throw new ValidationError([{ path: "listener", message: `must be a function, got ${typeof listener}` }]);
    }
    const sub = this.conn.nc.subscribe(subjects.endedAll(this.ns), {
      callback: (_err, msg) => {
        const end = decodeRunEnd(msg.data);
        if (!end) return; // not an engine's announcement
        try {
          listener(end);
        } catch (err) {
          this.log.error({ err, runId: end.runId }, "runs.onEnd listener threw");
        }
      },
    });
    return () => sub.unsubscribe();
  }

  /**
   * Runs of the namespace, newest first, as the log has them: the projection (`TJ_RUNS`, whose writes trail the log:
   * ~25 ms for a finished run, ~1 s for an active one, ~10 s for one waiting for a slot), with the runs created after
   * its checkpoint folded from the log on top. Reads the whole projection, and the log after the checkpoint.
   */
  async list(options: ListRunsOptions = {}): Promise<RunState[]> {
    const limit = listLimit(options, LIST_KEYS);
    const { statuses, taskName } = options;
    checkStatuses(statuses, "statuses");
    if (taskName !== undefined) checkTaskName(taskName, "taskName");
    const out: RunState[] = [];
    const wanted = (state: RunState) =>
      (!statuses || statuses.includes(state.status)) &&
      (!taskName || state.workflowName === taskName || state.tasks.some((t) => t.taskName === taskName));
    const filter = `$KV.${Buckets.runs}.${keys.runsOf(this.ns)}`;
    const stream = `KV_${Buckets.runs}`;
    await this.conn.jsm.streams.info(stream).catch(withProvisioningHint(this.conn, stream));
    // Read first: a run the projection gets meanwhile is then in one of the two.
    const unprojected = await readUnprojected(this.conn, await this.bucket(), this.ns);
    // A run's state is under its key or in pages (finished, or queued), and may be in several (queued in one page,
    // finished in another; replayed after it was paged): the one folded furthest into its history stands, whatever
    // the order they were written in (a leader deposed while frozen may write an older state last).
    const projected = new Map<string, RunState>();
    const prefix = `$KV.${Buckets.runs}.`;
    for await (const m of readStream(this.conn.js, stream, filter, "lastPerSubject")) {
      if (m.data.length === 0) continue;
      for (const state of statesOfEntry(m.subject.slice(prefix.length), decoder.decode(m.data))) {
        const known = projected.get(state.runId);
        if (!known || known.lastSeq <= state.lastSeq) projected.set(state.runId, state);
      }
    }
    const { created, later } = unprojected;
    for (const projectedState of projected.values()) {
      // Created after the checkpoint: the log has it as it is now. Else the log's events after the checkpoint go on.
      if (created.has(projectedState.runId)) continue;
      const state = caughtUp(projectedState, later.get(projectedState.runId));
      if (wanted(state)) out.push(state);
    }
    for (const state of created.values()) if (wanted(state)) out.push(state);
    // Newest first; run ids break ties within a millisecond (ULIDs sort by creation).
    out.sort((a, b) => (a.createdAt === b.createdAt ? cmp(b.runId, a.runId) : cmp(b.createdAt, a.createdAt)));
    const page = out.slice(0, limit);
    // A state stored slim (too large for one message) has no input or outputs: its history has them, as `get` reads.
    return Promise.all(
      page.map(async (state) =>
        state.slim ? ((await readTail(this.conn, this.ns, state.runId, undefined)) ?? state) : state,
      ),
    );
  }

  /**
   * Time travel: the run's state right after the event at stream sequence `seq`, or after the last event at or before
   * `time`, folded by the engine's reducer from the log.
   * @throws RunNotFoundError when the run has no history; ValidationError for a bad point or one before the run began
   */
  async stateAt(runId: string, at: { seq?: number; time?: Date | string }): Promise<RunState> {
    checkToken(runId, "runId");
    const { seq, time } = at ?? {};
    if ((seq === undefined) === (time === undefined) || (seq !== undefined && !(Number.isInteger(seq) && seq > 0))) {
      throw new ValidationError([
        { path: "at", message: `must be { seq } (a positive integer) or { time }, got ${describeValue(at)}` },
      ]);
    }
    const until = time === undefined ? undefined : Date.parse(dateOf(time, "at.time"));
    let state: RunState | undefined;
    const owned = new WeakSet<object>(); // only the last state is kept: the fold may grow its lists in place
    for await (const e of this.history(runId)) {
      if (seq !== undefined ? e.seq > seq : e.time.getTime() > (until as number)) break;
      if (e.event) state = evolve(state, e.event, e.seq, owned) ?? state;
    }
    if (!state) {
      throw new ValidationError([{ path: "at", message: `run ${runId} has no event at or before ${seq ?? time}` }]);
    }
    return state;
  }

  /**
   * A run's history, in order. With `follow`, yields live events until the run ends.
   * @throws RunNotFoundError when the run has no history
   */
  async *history(runId: string, options: { follow?: boolean } = {}): AsyncGenerator<HistoryEntry> {
    checkToken(runId, "runId");
    const last = await lastHistoryMessage(this.conn, this.ns, runId);
    if (!last) throw new RunNotFoundError(runId);
    if (!options.follow) {
      yield* readHistory(this.conn.js, this.ns, runId);
      return;
    }
    let state: RunState | undefined;
    const owned = new WeakSet<object>();
    yield* readHistory(this.conn.js, this.ns, runId, {
      follow: true,
      // Not before what was stored when it was asked: a replayed run was terminal before its replay's events.
      until: (e) => {
        if (e.event) state = evolve(state, e.event, e.seq, owned);
        return e.seq >= last.seq && state !== undefined && isTerminal(state.status);
      },
    });
  }

  /**
   * The chunks the run's tasks put with `ctx.putStream`, every attempt's, in order: from the first one (a subscriber
   * that joins late, or after the run finished, still gets them all), then live as they are stored. Ends once the
   * run is terminal and every chunk stored by then has been delivered; breaking out of the loop stops reading.
   * @example
   * for await (const chunk of tj.runs.subscribeToStream(ref.runId)) process.stdout.write(chunk.text);
   * @throws RunNotFoundError when the run has no history
   */
  async *subscribeToStream(runId: string): AsyncGenerator<StreamChunk> {
    for await (const m of followRunSide(this.conn, this.ns, runId, subjects.chunk(this.ns, runId))) {
      const chunk = toChunk(m);
      if (chunk) yield chunk;
    }
  }

  /** @internal Whether the run's subject holds any message (a first message the engine has yet to refuse counts). */
  async hasHistory(runId: string): Promise<boolean> {
    return Boolean(await lastHistoryMessage(this.conn, this.ns, runId));
  }

  private bucket(): Promise<KV> {
    this.kv ??= openBucket(this.conn, Buckets.runs);
    return this.kv;
  }
}

/** Replays in flight at once: each is a read and an append. */
const REPLAY_CONCURRENCY = 32;

async function inParallel<T>(items: T[], width: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < items.length) await work(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, lane));
}

function dateOf(value: Date | string, field: string): string {
  const d = value instanceof Date ? value : typeof value === "string" ? parseIsoTime(value) : undefined;
  if (d === undefined || Number.isNaN(d.getTime())) {
    throw new ValidationError([
      { path: field, message: `must be a Date or an ISO date-time, got ${describeValue(value)}` },
    ]);
  }
  return d.toISOString();
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A cancellation's or replay's reason, as the engine records it: 1 to 200 characters. */
function checkReason(reason: unknown): string | undefined {
  if (reason === undefined) return undefined;
  if (typeof reason !== "string" || reason.length === 0 || reason.length > 200) {
    throw new ValidationError([
      { path: "reason", message: `must be a string of 1 to 200 characters, got ${describeValue(reason)}` },
    ]);
  }
  return reason;
}

function checkOptions(options: unknown): void {
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new ValidationError([
      { path: "options", message: `must be an object ({ ids } or { filters }), got ${describeValue(options)}` },
    ]);
  }
}
