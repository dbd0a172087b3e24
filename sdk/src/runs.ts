import { type KV, Kvm } from "@nats-io/kv";
import {
  Buckets,
  checkToken,
  evolve,
  isTerminal,
  keys,
  RUN_STATUS_VALUES,
  RunNotFoundError,
  type RunState,
  type RunStatus,
  Streams,
  subjects,
  ValidationError,
} from "@taskjet/schemas";
import { type Connection, withProvisioningHint } from "./connection.js";
import { type HistoryEntry, readHistory } from "./history.js";
import { readStream } from "./read-stream.js";
import { readRunState, readTail } from "./run-reader.js";

/** Filters of `runs.list`. */
export interface ListRunsOptions {
  /** Only runs in these statuses. */
  statuses?: RunStatus[];
  /** Only runs of this task (or workflow). */
  taskName?: string;
  /** At most this many, newest first. @default 100 */
  limit?: number;
}

const decoder = new TextDecoder();

/** Reading runs: state, lists and history. */
export class RunsClient {
  private kv: Promise<KV> | undefined;

  constructor(
    private readonly conn: Connection,
    private readonly ns: string,
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

  /** @internal The latest state, from `known` (folding only the log after it) or from the projection. */
  async read(runId: string, known: RunState | undefined): Promise<RunState | undefined> {
    if (known) return readTail(this.conn, this.ns, runId, known);
    return readRunState(this.conn, await this.bucket(), this.ns, runId);
  }

  /**
   * Runs of the namespace, newest first, from the projection. The projection trails the log: a finished run shows
   * within ~25 ms, a run still queued or running once it has been so for ~1 s (engine `projectionActiveDelayMs`).
   * `get` has no such lag.
   */
  async list(options: ListRunsOptions = {}): Promise<RunState[]> {
    const { statuses, taskName } = options;
    const limit = options.limit ?? 100;
    if (!Number.isInteger(limit) || limit <= 0) {
      throw new ValidationError([{ path: "limit", message: `must be a positive integer, got ${limit}` }]);
    }
    for (const [i, s] of (statuses ?? []).entries()) {
      if (!RUN_STATUS_VALUES.includes(s)) {
        throw new ValidationError([
          {
            path: `statuses[${i}]`,
            message: `must be one of ${RUN_STATUS_VALUES.join(", ")}, got ${JSON.stringify(s)}`,
          },
        ]);
      }
    }
    const out: RunState[] = [];
    const filter = `$KV.${Buckets.runs}.${keys.runsOf(this.ns)}`;
    const stream = `KV_${Buckets.runs}`;
    await this.conn.jsm.streams.info(stream).catch(withProvisioningHint(this.conn, stream));
    for await (const m of readStream(this.conn.js, stream, filter, "lastPerSubject")) {
      if (m.data.length === 0) continue;
      const state = JSON.parse(decoder.decode(m.data)) as RunState;
      if (statuses && !statuses.includes(state.status)) continue;
      if (taskName && state.workflowName !== taskName && !state.tasks.some((t) => t.taskName === taskName)) continue;
      out.push(state);
    }
    // Newest first; run ids break ties within a millisecond (ULIDs sort by creation).
    out.sort((a, b) => (a.createdAt === b.createdAt ? cmp(b.runId, a.runId) : cmp(b.createdAt, a.createdAt)));
    return out.slice(0, limit);
  }

  /**
   * A run's history, in order. With `follow`, yields live events until the run ends.
   * @throws RunNotFoundError when the run has no history
   */
  async *history(runId: string, options: { follow?: boolean } = {}): AsyncGenerator<HistoryEntry> {
    checkToken(runId, "runId");
    const last = await this.lastMessage(runId).catch(withProvisioningHint(this.conn, Streams.history));
    if (!last) throw new RunNotFoundError(runId);
    if (!options.follow) {
      yield* readHistory(this.conn.js, this.ns, runId);
      return;
    }
    let state: RunState | undefined;
    yield* readHistory(this.conn.js, this.ns, runId, {
      follow: true,
      until: (e) => {
        if (e.event) state = evolve(state, e.event, e.seq);
        return state !== undefined && isTerminal(state.status);
      },
    });
  }

  private lastMessage(runId: string) {
    return this.conn.jsm.direct.getMessage(Streams.history, { last_by_subj: subjects.history(this.ns, runId) });
  }

  private bucket(): Promise<KV> {
    this.kv ??= new Kvm(this.conn.nc).open(Buckets.runs);
    return this.kv;
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
