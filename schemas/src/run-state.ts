import type { RecordedError } from "./errors.js";
import type { RetryPolicy } from "./events.js";

/** Lifecycle of a run and of each of its task-runs. */
export const RunStatuses = {
  /** Created to start later (`task.schedule`, `task.delay`): nothing is queued before its time. */
  scheduled: "SCHEDULED",
  /** A workflow task waiting for its parents (or a handler waiting for the others). */
  pending: "PENDING",
  queued: "QUEUED",
  running: "RUNNING",
  completed: "COMPLETED",
  failed: "FAILED",
  cancelled: "CANCELLED",
} as const;
export type RunStatus = (typeof RunStatuses)[keyof typeof RunStatuses];
export const RUN_STATUS_VALUES = Object.values(RunStatuses) as RunStatus[];

const TERMINAL: ReadonlySet<RunStatus> = new Set([RunStatuses.completed, RunStatuses.failed, RunStatuses.cancelled]);

/** COMPLETED, FAILED and CANCELLED are final. */
export function isTerminal(status: RunStatus): boolean {
  return TERMINAL.has(status);
}

/**
 * A durable task's checkpoint: `now` (value: the time), `sleep` (value: until), `event` (value: the key; `filter`,
 * `afterSeq` while waiting; `result` once the event came).
 */
export interface DurableCheckpointState {
  index: number;
  kind: "now" | "sleep" | "event";
  value: string;
  done: boolean;
  filter?: string;
  afterSeq?: number;
  result?: { id: string; key: string; payload: Record<string, unknown> };
}

/** One task of a run, as folded from its history. */
export interface TaskRunState {
  taskRunId: string;
  taskName: string;
  /** Workflows: its name within the workflow. */
  ref?: string;
  /** Workflows: the refs of the tasks it waits for. */
  parents?: string[];
  /** Workflows: an `onFailure` or `onSuccess` handler. */
  role?: "onFailure" | "onSuccess";
  status: RunStatus;
  /** The current attempt index (0 for the first). */
  attempt: number;
  workerId?: string;
  workerName?: string;
  startedAt?: string;
  finishedAt?: string;
  output?: Record<string, unknown>;
  /** The last attempt's error (also while a retry is pending). */
  error?: RecordedError;
  /** When the current attempt started waiting for a worker. */
  queuedAt?: string;
  /**
   * The sequence of the event that queued the current attempt: its place in its queue, first in first out. Recovery
   * orders by it (a later event on the run, `TaskWaiting` say, must not move the attempt back). Absent in states
   * projected before it existed: the run's `lastSeq` stands in.
   */
  queuedSeq?: number;
  /** How long an attempt may wait for a worker (absent: the engine's default). */
  scheduleTimeoutMs?: number;
  /** The running attempt gave its slot back: it is not reassigned if its worker dies (unless `waitsForChild`). */
  slotReleased?: boolean;
  /** A durable attempt gave its slot back to wait for a child: it replays on another worker if its own dies. */
  waitsForChild?: boolean;
  /** The running attempt's execution deadline. */
  timeoutAt?: string;
  /** How failed attempts are retried, as recorded by the last start. */
  policy?: RetryPolicy;
  /** Attempts that ended without counting against the retries (rate limited upstream). */
  requeues?: number;
  /** Why the queued attempt waits, as the scheduler recorded it. */
  waiting?: { reason: string; detail: string; since: string };
  /** The last attempt hit an upstream rate limit: these keys (all the task's when absent) pause until `until`. */
  rateLimited?: { until: string; keys?: string[] };
  /** Durable tasks: the checkpoints recorded so far, in order; a sleep not yet over is `done: false`. */
  checkpoints?: DurableCheckpointState[];
  /** How many times a replay re-ran it (its child runs are new ones for each). */
  replays?: number;
  /** A retry decided but not yet queued: the attempt it will be, and when (once scheduled). */
  retry?: { attempt: number; at?: string };
}

/** A run's state: the projection `evolve` folds from the run's history, stored in `TJ_RUNS`. */
export interface RunState {
  v: 1;
  runId: string;
  workflowName: string;
  status: RunStatus;
  input: Record<string, unknown>;
  additionalMetadata: Record<string, string>;
  priority: number;
  trigger: { kind: string; [k: string]: unknown };
  tasks: TaskRunState[];
  /** Child runs its tasks started, in order (cancelling this run cancels them). */
  children?: { runId: string; taskName: string; key: string; taskRunId: string }[];
  /** Sticky runs: the worker that ran the first task, which later attempts prefer (SOFT) or require (HARD). */
  sticky?: { mode: "SOFT" | "HARD"; workerId: string };
  output?: Record<string, unknown>;
  error?: RecordedError;
  createdAt: string;
  /** How many times it was replayed (`RunReplayed`), and when last. */
  replays?: number;
  replayedAt?: string;
  /** W3C trace context of the trigger (`RunCreated.traceparent` / `tracestate`), passed to each assignment. */
  traceparent?: string;
  tracestate?: string;
  /** Scheduled runs: when the engine queues it (moved by `RunRescheduled`). */
  scheduledAt?: string;
  startedAt?: string;
  finishedAt?: string;
  /** Stream sequence of the last event folded in: the expected sequence for the next append. */
  lastSeq: number;
  /** How many valid events were folded. */
  eventCount: number;
  /**
   * Stored in `TJ_RUNS` without its input, outputs and checkpoints (`slimState`): the whole state is larger than the
   * server's max payload. Readers fold the run's history instead.
   */
  slim?: true;
}

/**
 * How a run ended, as the engine announces it to waiters (`subjects.ended`): what `run()` returns or throws, without
 * the input, the tasks' outputs and the rest of the state. `slim` when the output did not fit in one message.
 */
export interface RunEnd {
  runId: string;
  workflowName: string;
  status: RunStatus;
  lastSeq: number;
  output?: Record<string, unknown>;
  error?: RecordedError;
  tasks: { taskName: string; status: RunStatus }[];
  slim?: true;
}

const decoder = new TextDecoder();

/** An announcement read off `subjects.ended`, or undefined for anything that is not one. */
export function decodeRunEnd(data: Uint8Array): RunEnd | undefined {
  let end: unknown;
  try {
    end = JSON.parse(decoder.decode(data));
  } catch {
    return undefined;
  }
  const e = end as Partial<RunEnd> | null;
  return typeof e === "object" && e !== null && typeof e.runId === "string" && typeof e.status === "string"
    ? (e as RunEnd)
    : undefined;
}

export function runEnd(state: RunState): RunEnd {
  const { runId, workflowName, status, lastSeq, output, error } = state;
  return {
    runId,
    workflowName,
    status,
    lastSeq,
    ...(output ? { output } : {}),
    ...(error ? { error } : {}),
    tasks: state.tasks.map(({ taskName, status }) => ({ taskName, status })),
  };
}

/**
 * The states one `TJ_RUNS` entry holds: a page's (`keys.runPage`, whose last token starts with `=`), or the one run's.
 * A reader that meets one run in several entries keeps the latest written (the highest revision).
 */
export function statesOfEntry(key: string, json: string): RunState[] {
  const value = JSON.parse(json) as RunState | RunState[];
  if (!isPageKey(key)) return [value as RunState];
  return Array.isArray(value) ? value : [];
}

/** Whether a `TJ_RUNS` key is a page's (`keys.runPage`: its last token starts with `=`) rather than one run's. */
export function isPageKey(key: string): boolean {
  return key.charCodeAt(key.lastIndexOf(".") + 1) === 61 /* = */;
}

/** What `TJ_RUNS` keeps of a run too large for one message: enough to list it; readers fold its history for the rest. */
export function slimState(state: RunState): RunState {
  const { output: _output, ...rest } = state;
  return {
    ...rest,
    input: {},
    tasks: state.tasks.map(({ output: _o, checkpoints: _c, ...task }) => task),
    slim: true,
  };
}
