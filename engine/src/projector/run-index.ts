import type { JetStreamClient } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import {
  Buckets,
  keys,
  RUN_STATUS_VALUES,
  type RunState,
  type RunStatus,
  RunStatuses,
  type RunSummary,
  statesOfEntry,
  ValidationError,
} from "@taskjet/schemas";
import type { Logger } from "pino";
import { followKv } from "../log/follow-kv.js";

/** Which runs a page shows. */
export interface RunFilter {
  statuses?: readonly string[] | undefined;
  /** The workflow's name, or any of its tasks'. */
  taskName?: string | undefined;
  /** Created at or after (ISO). */
  since?: string | undefined;
  /** Created before (ISO). */
  until?: string | undefined;
  /** Pairs the run's metadata must all have. */
  metadata?: readonly [string, string][] | undefined;
}

/** A run's place in the list: newest first, run ids breaking ties within a millisecond. */
interface Entry {
  createdAt: string;
  runId: string;
  /** How far into its history the summary was folded: an older state read later does not replace it. */
  lastSeq: number;
  summary: RunSummary;
}

/** Position of `(createdAt, runId)` in ascending order. */
function compare(a: { createdAt: string; runId: string }, b: { createdAt: string; runId: string }): number {
  if (a.createdAt !== b.createdAt) return a.createdAt < b.createdAt ? -1 : 1;
  return a.runId < b.runId ? -1 : a.runId > b.runId ? 1 : 0;
}

/** What a list shows of a run: its state without input, outputs, checkpoints and stacks. */
export function summarize(state: RunState): RunSummary {
  return {
    runId: state.runId,
    workflowName: state.workflowName,
    status: state.status,
    priority: state.priority,
    trigger: { kind: state.trigger.kind },
    additionalMetadata: state.additionalMetadata,
    createdAt: state.createdAt,
    ...(state.scheduledAt ? { scheduledAt: state.scheduledAt } : {}),
    ...(state.startedAt ? { startedAt: state.startedAt } : {}),
    ...(state.finishedAt ? { finishedAt: state.finishedAt } : {}),
    ...(state.error ? { error: { name: state.error.name, message: state.error.message.slice(0, 500) } } : {}),
    ...(state.replays ? { replays: state.replays } : {}),
    eventCount: state.eventCount,
    tasks: state.tasks.map((t) => ({
      taskRunId: t.taskRunId,
      taskName: t.taskName,
      ...(t.ref ? { ref: t.ref } : {}),
      status: t.status,
      attempt: t.attempt,
      ...(t.queuedAt ? { queuedAt: t.queuedAt } : {}),
      ...(t.startedAt ? { startedAt: t.startedAt } : {}),
      ...(t.finishedAt ? { finishedAt: t.finishedAt } : {}),
      ...(t.workerId ? { workerId: t.workerId } : {}),
      ...(t.workerName ? { workerName: t.workerName } : {}),
      ...(t.waiting ? { waiting: t.waiting } : {}),
      ...(t.retry ? { retrying: true } : {}),
    })),
  };
}

/**
 * An in-memory index of one namespace's runs for paged lists, kept by following `TJ_RUNS` (one read of the
 * namespace's states at start, then its changes, pushed: no polling). Every engine replica keeps one, leader or not.
 *
 * Why: the projection is a KV bucket, and JetStream reads a bucket only in write order, so a list "newest first" with
 * filters would read every state on every page (`runs.list`: seconds at 100,000 runs). Here the runs are held sorted
 * by creation, as summaries (no input or output): a page is a binary search for the cursor and a walk down to the
 * next `limit` matches, so its cost does not grow with the page number. Memory is about 1 KB per run (measured in
 * `test/bench/runs-paging.ts`). The cursor is the last run's (createdAt, runId), so pages do not shift as runs are
 * created. The list trails the log as the projection does: a finished run shows within ~25 ms, a running one after
 * about a second, one waiting for a slot after about 10 s (`projectionQueuedDelayMs`; the SDK's `runs.list` folds the
 * log past the projector's checkpoint instead, at the price of reading it).
 */
export class RunIndex {
  /** Ascending by (createdAt, runId): new runs append at the end. */
  private readonly sorted: Entry[] = [];
  private readonly byId = new Map<string, Entry>();
  private stopFollowing: (() => void) | undefined;
  private starting: Promise<void> | undefined;

  constructor(private readonly o: { js: JetStreamClient; kv: KV; ns: string; log: Logger }) {}

  /** Loads and follows the namespace's runs; later calls wait for the first. */
  start(): Promise<void> {
    this.starting ??= (async () => {
      const t0 = Date.now();
      this.stopFollowing = await followKv(this.o.js, this.o.kv, Buckets.runs, keys.runsOf(this.o.ns), {
        put: (key, json) => this.put(key, json),
        // Pages are never deleted one by one; a key's deletion takes its run out.
        remove: (key) => this.remove(key.slice(this.o.ns.length + 1)),
        log: this.o.log,
      });
      this.o.log.info({ runs: this.sorted.length, ms: Date.now() - t0 }, "run index loaded");
    })().catch((err) => {
      this.starting = undefined;
      throw err;
    });
    return this.starting;
  }

  stop(): void {
    this.stopFollowing?.();
    this.stopFollowing = undefined;
  }

  /** How many runs it holds. */
  get size(): number {
    return this.sorted.length;
  }

  /**
   * One page, newest first, after `cursor` (a previous page's `nextCursor`). With `counts`, also the runs matching
   * the filters other than status, per status (this walks the whole created-at range).
   * @throws ValidationError for a cursor this index did not make
   */
  page(
    filter: RunFilter,
    limit: number,
    cursor?: string,
    counts = false,
  ): { runs: RunSummary[]; nextCursor: string | null; counts?: Record<string, number> } {
    const after = cursor === undefined ? undefined : decodeCursor(cursor);
    const statuses = filter.statuses && filter.statuses.length > 0 ? new Set(filter.statuses) : undefined;
    const others = (e: Entry) => this.matchesOthers(e, filter);
    // Newest first: start below the cursor (or `until`), stop at `since`.
    let top = this.sorted.length;
    if (filter.until !== undefined) top = this.lowerBound({ createdAt: filter.until, runId: "" });
    if (after) top = Math.min(top, this.lowerBound(after));
    const runs: RunSummary[] = [];
    let last: Entry | undefined;
    let more = false;
    for (let i = top - 1; i >= 0; i--) {
      const e = this.sorted[i] as Entry;
      if (filter.since !== undefined && e.createdAt < filter.since) break;
      if ((statuses && !statuses.has(e.summary.status)) || !others(e)) continue;
      if (runs.length === limit) {
        more = true;
        break;
      }
      runs.push(e.summary);
      last = e;
    }
    const nextCursor = more && last ? encodeCursor(last) : null;
    if (!counts) return { runs, nextCursor };
    const tally: Record<string, number> = Object.fromEntries(RUN_STATUS_VALUES.map((s) => [s, 0]));
    const hi =
      filter.until === undefined ? this.sorted.length : this.lowerBound({ createdAt: filter.until, runId: "" });
    const lo = filter.since === undefined ? 0 : this.lowerBound({ createdAt: filter.since, runId: "" });
    for (let i = lo; i < hi; i++) {
      const e = this.sorted[i] as Entry;
      if (others(e)) tally[e.summary.status] = (tally[e.summary.status] ?? 0) + 1;
    }
    return { runs, nextCursor, counts: tally };
  }

  /** Runs in `status` (optionally of one task), for views that need them all (scheduled runs, queues). */
  withStatus(statuses: readonly RunStatus[], taskName?: string): RunSummary[] {
    const wanted = new Set<string>(statuses);
    const out: RunSummary[] = [];
    for (const e of this.sorted) {
      if (wanted.has(e.summary.status) && (taskName === undefined || this.hasTask(e, taskName))) out.push(e.summary);
    }
    return out;
  }

  /** Runs not finished (queued, running, pending, scheduled): the projection's view of the queues. */
  active(): RunSummary[] {
    return this.withStatus([RunStatuses.queued, RunStatuses.running, RunStatuses.pending]);
  }

  private matchesOthers(e: Entry, filter: RunFilter): boolean {
    if (filter.taskName !== undefined && !this.hasTask(e, filter.taskName)) return false;
    if (filter.metadata) {
      for (const [k, v] of filter.metadata) if (e.summary.additionalMetadata[k] !== v) return false;
    }
    return true;
  }

  private hasTask(e: Entry, taskName: string): boolean {
    return e.summary.workflowName === taskName || e.summary.tasks.some((t) => t.taskName === taskName);
  }

  /** A `TJ_RUNS` entry: one run's state, or a page of them. */
  private put(key: string, json: string): void {
    let states: RunState[];
    try {
      states = statesOfEntry(key, json);
    } catch (err) {
      this.o.log.warn({ err, key }, "run index: a projected state does not parse");
      return;
    }
    for (const state of states) this.putState(state);
  }

  private putState(state: RunState): void {
    if (typeof state?.runId !== "string" || typeof state.createdAt !== "string") return;
    const existing = this.byId.get(state.runId);
    if (existing && existing.lastSeq > state.lastSeq) return; // a stale write (a deposed leader's) read after
    const summary = summarize(state);
    if (existing && existing.createdAt === state.createdAt) {
      existing.summary = summary; // status changes keep the run's place: creation time never changes
      existing.lastSeq = state.lastSeq;
      return;
    }
    if (existing) this.remove(state.runId);
    const entry: Entry = { createdAt: state.createdAt, runId: state.runId, lastSeq: state.lastSeq, summary };
    this.byId.set(state.runId, entry);
    // Runs are projected roughly in creation order: walk back from the end to the entry's place.
    let i = this.sorted.length;
    while (i > 0 && compare(this.sorted[i - 1] as Entry, entry) > 0) i--;
    if (i === this.sorted.length) this.sorted.push(entry);
    else if (this.sorted.length - i < 64) this.sorted.splice(i, 0, entry);
    else this.sorted.splice(this.lowerBound(entry), 0, entry);
  }

  private remove(runId: string): void {
    const entry = this.byId.get(runId);
    if (!entry) return;
    this.byId.delete(runId);
    const i = this.lowerBound(entry);
    if (this.sorted[i] === entry) this.sorted.splice(i, 1);
  }

  /** The first position whose entry is not below `key`. */
  private lowerBound(key: { createdAt: string; runId: string }): number {
    let lo = 0;
    let hi = this.sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compare(this.sorted[mid] as Entry, key) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

function encodeCursor(e: { createdAt: string; runId: string }): string {
  return Buffer.from(JSON.stringify([e.createdAt, e.runId])).toString("base64url");
}

function decodeCursor(cursor: string): { createdAt: string; runId: string } {
  try {
    const [createdAt, runId] = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as unknown[];
    if (typeof createdAt === "string" && typeof runId === "string") return { createdAt, runId };
  } catch {
    // reported below
  }
  throw new ValidationError([
    { path: "cursor", message: `must be a nextCursor this API returned, got ${JSON.stringify(cursor.slice(0, 80))}` },
  ]);
}
