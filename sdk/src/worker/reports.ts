import { JetStreamApiError } from "@nats-io/jetstream/internal";
import { InvalidArgumentError } from "@nats-io/transport-node";
import {
  AppendConflictError,
  type Assignment,
  AttemptNotCurrentError,
  describeValue,
  ErrorCodes,
  EventTypes,
  encodeJsonObject,
  isNonRetryable,
  isRateLimited,
  makeEvent,
  parseDuration,
  RECORDED_TEXT_MAX,
  type RecordedError,
  type RunState,
  RunStatuses,
  Streams,
  subjects,
  type TaskCompleted,
  type TaskFailed,
  TaskjetError,
  type TaskjetEventInput,
  type TaskRateLimited,
  type TaskRunState,
  type TaskStarted,
  toRecordedError,
  truncateText,
} from "@taskjet/schemas";
import { appendEvent, isTransient } from "../append.js";
import type { Connection } from "../connection.js";
import { readTail } from "../run-reader.js";

/** Who reports. */
export interface Reporter {
  conn: Connection;
  ns: string;
  workerId: string;
  workerName: string;
}

/** The run as the log has it now (the rare path after a conflict: read it all, no consumer). */
function currentState(conn: Connection, ns: string, runId: string): Promise<RunState | undefined> {
  return readTail(conn, ns, runId, undefined);
}

/** How long a report waits for a stream leader that is behind what the worker knows to catch up (an election's span). */
const BEHIND_FOR_MS = 15_000;

/**
 * Appends with CAS on `expected`. On a conflict the run is re-read; while `stillValid` holds for the attempt's task the
 * append is retried on the new tail, otherwise the outcome is `{ stale }` with what the log now says.
 *
 * A log read that ends before `expected` (a sequence the worker knows is there: the assignment's, or its own last
 * append) says nothing about the attempt: the stream leader that answered has not applied the run's latest events yet
 * (seen on a 3-node cluster under load: the conflict and the read both answered as if the run had no event at all).
 * The report waits for it, retrying, instead of taking the attempt for stale.
 */
async function appendWhileCurrent(
  r: Reporter,
  a: Assignment,
  event: TaskjetEventInput,
  expected: number,
  stillValid: (task: TaskRunState | undefined) => boolean,
): Promise<
  { seq: number; duplicate: boolean } | { stale: { state: RunState | undefined; task: TaskRunState | undefined } }
> {
  let behindSince = 0;
  for (let behind = 0; ; ) {
    try {
      return await appendEvent(r.conn, r.ns, event, expected);
    } catch (err) {
      if (!(err instanceof AppendConflictError)) throw err;
      const state = await currentState(r.conn, r.ns, a.runId);
      if ((state?.lastSeq ?? 0) < expected) {
        behindSince ||= Date.now();
        if (Date.now() - behindSince > BEHIND_FOR_MS) throw err;
        await new Promise((resolve) => setTimeout(resolve, Math.min(1000, 20 * 2 ** behind++)));
        continue;
      }
      const task = state?.tasks.find((t) => t.taskRunId === a.taskRunId);
      if (!state || !stillValid(task)) return { stale: { state, task } };
      expected = state.lastSeq;
    }
  }
}

function notCurrent(task: TaskRunState | undefined): AttemptNotCurrentError {
  return new AttemptNotCurrentError(`task is ${task?.status ?? "unknown"} at attempt ${task?.attempt ?? "?"}`);
}

/** What a worker records of an attempt's start: `TaskStarted`'s data beyond the attempt and worker ids. */
export type StartFacts = Omit<TaskStarted["data"], "attempt" | "workerId">;

/** The attempt still waits to start: nobody started, timed out, cancelled or re-queued it meanwhile. */
function waitingToStart(t: TaskRunState | undefined, a: Assignment): boolean {
  return t?.status === RunStatuses.queued && t.attempt === a.attempt && !t.retry;
}

/**
 * Appends `TaskStarted` with CAS on the sequence the assignment was handed. On a conflict the run is re-read: if the
 * attempt is still waiting to start, the append is retried on the new tail; otherwise the attempt is not ours.
 * @returns the sequence of our `TaskStarted`
 * @throws AttemptNotCurrentError
 */
export async function reportStarted(r: Reporter, a: Assignment, facts: StartFacts): Promise<number> {
  const event = makeEvent(EventTypes.TaskStarted, {
    runId: a.runId,
    taskRunId: a.taskRunId,
    data: { ...facts, attempt: a.attempt, workerId: r.workerId },
  });
  const outcome = await appendWhileCurrent(r, a, event, a.expectedSeq, (t) => waitingToStart(t, a));
  if ("stale" in outcome) throw notCurrent(outcome.stale.task);
  if (outcome.duplicate) {
    // This worker started the attempt before: our own retry of a lost ack (go on), or the assignment redelivered
    // after it already ran (a server restart lost the ack), which must not run it again.
    const task = (await currentState(r.conn, r.ns, a.runId))?.tasks.find((t) => t.taskRunId === a.taskRunId);
    if (!isOurs(task, a, r)) throw notCurrent(task);
  }
  return outcome.seq;
}

/** Facts a worker appends about its running attempt, beyond its start and result. */
export type RunningFactType =
  | typeof EventTypes.TaskTimeoutRefreshed
  | typeof EventTypes.TaskSlotReleased
  | typeof EventTypes.ChildrenSpawned
  | typeof EventTypes.DurableCheckpoint
  | typeof EventTypes.DurableSleeping
  | typeof EventTypes.DurableWaitingForEvent;

/**
 * Appends a fact about this worker's running attempt (`RunningFactType`: the event type and its data beyond the
 * attempt and worker) with CAS on the
 * last sequence this worker wrote for it; on a conflict, retries on the new tail while the attempt is still ours.
 * @returns the new last sequence
 * @throws AttemptNotCurrentError when the attempt was timed out, cancelled or reassigned meanwhile
 */
export async function reportRunningFact<T extends RunningFactType>(
  r: Reporter,
  a: Assignment,
  lastSeq: number,
  type: T,
  data: Omit<Extract<TaskjetEventInput, { type: T }>["data"], "attempt" | "workerId">,
): Promise<number> {
  const event = makeEvent(type, {
    runId: a.runId,
    taskRunId: a.taskRunId,
    data: { ...data, attempt: a.attempt, workerId: r.workerId },
  } as unknown as Parameters<typeof makeEvent<T>>[1]);
  const outcome = await appendWhileCurrent(r, a, event, lastSeq, (t) => isOurs(t, a, r));
  if ("stale" in outcome) throw notCurrent(outcome.stale.task);
  return outcome.seq;
}

/**
 * Records that this worker's attempt passed its deadline (`TaskTimedOut`, the same fact and dedup id the engine's
 * timer appends, so whichever comes second is a duplicate). Nothing is appended when the attempt is no longer ours.
 */
export async function reportTimedOut(r: Reporter, a: Assignment, lastSeq: number, timeoutAt: string): Promise<void> {
  const event = makeEvent(EventTypes.TaskTimedOut, {
    runId: a.runId,
    taskRunId: a.taskRunId,
    data: { attempt: a.attempt, timeoutAt },
  });
  const expired = (t: TaskRunState | undefined) =>
    isOurs(t, a, r) && Date.parse(t?.timeoutAt ?? timeoutAt) <= Date.now();
  await appendWhileCurrent(r, a, event, lastSeq, expired);
}

function isOurs(task: TaskRunState | undefined, a: Assignment, r: Reporter): boolean {
  return task?.status === RunStatuses.running && task.attempt === a.attempt && task.workerId === r.workerId;
}

/**
 * Appends the attempt's result with CAS on the last sequence this worker wrote for it, or, with `started` (the start
 * not recorded: the result carries it), on the assignment's. On a conflict: if the attempt is still ours (or still
 * waiting to start), retry on the new tail; if it was timed out, cancelled or reassigned meanwhile, the result is
 * stale and is recorded as `ReportIgnored` (invariant 4), never applied.
 * @returns whether the result was applied
 */
export async function reportResult(
  r: Reporter,
  a: Assignment,
  lastSeq: number,
  result: { ok: true; output: unknown } | { ok: false; error: unknown },
  payloadLimit: number,
  started?: StartFacts & { at: string },
): Promise<boolean> {
  let event = outcomeEvent(r, a, result, payloadLimit);
  // Not recorded yet: the result carries the start and finds the attempt still waiting to start (or started by us,
  // when a start whose ack was lost was stored after all: the carried start then changes nothing).
  if (started) event.data.started = started;
  const current = started
    ? (t: TaskRunState | undefined) => waitingToStart(t, a) || isOurs(t, a, r)
    : (t?: TaskRunState) => isOurs(t, a, r);
  let outcome: Awaited<ReturnType<typeof appendWhileCurrent>>;
  try {
    outcome = await untilAcknowledged(r, () => appendWhileCurrent(r, a, event, lastSeq, current));
  } catch (err) {
    if (!refusedForGood(err)) throw err;
    // The same event would be refused again, and an attempt without an outcome leaves its run waiting for good (it
    // never started on record, so nothing times it out): record that it failed, and why, so retries apply.
    event = refusedOutcome(r, a, event, err);
    if (started) event.data.started = started;
    outcome = await untilAcknowledged(r, () => appendWhileCurrent(r, a, event, lastSeq, current));
  }
  if (!("stale" in outcome)) return true;
  const report =
    event.type === EventTypes.TaskCompleted
      ? "completed"
      : event.type === EventTypes.TaskFailed
        ? "failed"
        : "rateLimited";
  const { task, state } = outcome.stale;
  await recordIgnored(r, a, report, task, state);
  return false;
}

/**
 * An outcome is what a worker must not drop: past an append's own retries (NATS down for longer than an election), it
 * goes on trying, every few seconds, until NATS takes it or the connection is closed. Dropped, the run stayed RUNNING
 * until its execution timeout, which then failed it or ran the task again. The same event again is stored once.
 */
async function untilAcknowledged<T>(r: Reporter, append: () => Promise<T>): Promise<T> {
  try {
    return await append();
  } catch (err) {
    if (!isTransient(err) || r.conn.nc.isClosed()) throw err;
  }
  for (let tries = 0; ; tries++) {
    await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 1000 * 2 ** tries)));
    try {
      return await afterFailure.run(append);
    } catch (err) {
      if (!isTransient(err) || r.conn.nc.isClosed()) throw err;
    }
  }
}

/**
 * At most this many outcomes are retried at once after their first append gave up. 100,000 outcomes reported in one
 * burst (a worker holding as many attempts, released together) time out together; retried together, each retry's
 * conflict read-back overflowed the server's API queue, timed out and was retried again, for good.
 */
const RETRYING_AT_ONCE = 32;

/** Runs at most `limit` of the functions given at once; the others wait their turn, first come first served. */
class Limiter {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly limit: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.running++;
    try {
      return await fn();
    } finally {
      this.running--;
      this.waiting.shift()?.();
    }
  }
}

const afterFailure = new Limiter(RETRYING_AT_ONCE);

/** JetStream's "message size exceeds maximum allowed" (the stream's `max_msg_size`). */
const MESSAGE_TOO_LARGE = 10054;

/**
 * Whether an append failed for a reason that sending the same event again cannot fix: the event is over the
 * connection's `max_payload` or the stream's message size, or the engine would refuse it.
 */
function refusedForGood(err: unknown): boolean {
  return (
    err instanceof InvalidArgumentError ||
    (err instanceof JetStreamApiError && err.code === MESSAGE_TOO_LARGE) ||
    (err instanceof TaskjetError &&
      (err.code === ErrorCodes.invalidArgument || err.code === ErrorCodes.payloadTooLarge))
  );
}

/** What a worker records in place of an outcome that could not be appended: a small `TaskFailed` saying why. */
function refusedOutcome(
  r: Reporter,
  a: Assignment,
  refused: TaskCompleted | TaskFailed | TaskRateLimited,
  why: unknown,
): TaskFailed {
  const own = refused.type === EventTypes.TaskFailed ? refused.data.error : undefined;
  const reason = toRecordedError(why, 1000);
  return failedEvent(r, a, {
    name: "OutcomeRefusedError",
    message:
      `the attempt's ${refused.type} could not be recorded (${reason.name}: ${reason.message})` +
      (own ? `; the task failed with ${truncateText(own.name, 256)}: ${truncateText(own.message, 1000)}` : ""),
  });
}

/** The attempt failed with `error`. */
function failedEvent(r: Reporter, a: Assignment, error: RecordedError, nonRetryable = false): TaskFailed {
  return makeEvent(EventTypes.TaskFailed, {
    runId: a.runId,
    taskRunId: a.taskRunId,
    data: { attempt: a.attempt, workerId: r.workerId, error, ...(nonRetryable ? { nonRetryable: true } : {}) },
  }) as TaskFailed;
}

/**
 * The event recording an attempt's result. Never throws: whatever the task returned or threw (a Proxy whose traps
 * throw, an error with odd fields), the attempt ends with an outcome, at worst a `TaskFailed` saying what went wrong.
 */
function outcomeEvent(
  r: Reporter,
  a: Assignment,
  result: { ok: true; output: unknown } | { ok: false; error: unknown },
  payloadLimit: number,
): TaskCompleted | TaskFailed | TaskRateLimited {
  try {
    return resultEvent(r, a, result, payloadLimit);
  } catch (err) {
    return failedEvent(r, a, toRecordedError(err, recordedTextMax(payloadLimit)));
  }
}

/**
 * How many characters of an error's message and stack a result records: at most 6 bytes each as JSON, the error's
 * fields then take under 3/4 of the payload limit (`RECORDED_TEXT_MAX`, 16 Ki characters, under the default limits).
 */
function recordedTextMax(payloadLimit: number): number {
  return Math.max(256, Math.min(RECORDED_TEXT_MAX, Math.floor(payloadLimit / 16)));
}

function resultEvent(
  r: Reporter,
  a: Assignment,
  result: { ok: true; output: unknown } | { ok: false; error: unknown },
  payloadLimit: number,
): TaskCompleted | TaskFailed | TaskRateLimited {
  const base = { runId: a.runId, taskRunId: a.taskRunId };
  if (!result.ok && isRateLimited(result.error)) {
    const { key, retryAfter, message } = result.error;
    let until: number;
    try {
      until =
        retryAfter instanceof Date
          ? retryAfter.getTime()
          : Date.now() + parseDuration(retryAfter, "retryAfter", { allowZero: true });
      if (Number.isNaN(until)) throw new TypeError(`retryAfter: must be a valid date, got ${String(retryAfter)}`);
      if (key !== undefined && (typeof key !== "string" || key.length > 256)) {
        throw new TypeError(`key: must be a string of at most 256 characters, got ${describeValue(key)}`);
      }
    } catch (err) {
      return resultEvent(r, a, { ok: false, error: err }, payloadLimit);
    }
    return makeEvent(EventTypes.TaskRateLimited, {
      ...base,
      data: {
        attempt: a.attempt,
        workerId: r.workerId,
        until: new Date(until).toISOString(),
        // The event holds 1,000 characters of it (the note of a cut included).
        ...(message === undefined ? {} : { message: truncateText(String(message), 950) }),
        ...(key ? { keys: [key] } : {}),
      },
    }) as TaskRateLimited;
  }
  if (result.ok) {
    try {
      const output = result.output === undefined ? {} : result.output;
      encodeJsonObject(output, "output", payloadLimit);
      return makeEvent(EventTypes.TaskCompleted, {
        ...base,
        data: { attempt: a.attempt, workerId: r.workerId, output: output as Record<string, unknown> },
      }) as TaskCompleted;
    } catch (err) {
      return resultEvent(r, a, { ok: false, error: err }, payloadLimit);
    }
  }
  return failedEvent(r, a, toRecordedError(result.error, recordedTextMax(payloadLimit)), isNonRetryable(result.error));
}

async function recordIgnored(
  r: Reporter,
  a: Assignment,
  report: "completed" | "failed" | "rateLimited",
  task: { status: string; attempt: number } | undefined,
  state: RunState | undefined,
): Promise<void> {
  const event = makeEvent(EventTypes.ReportIgnored, {
    runId: a.runId,
    taskRunId: a.taskRunId,
    data: {
      attempt: a.attempt,
      workerId: r.workerId,
      report,
      reason: `attempt ${a.attempt} is no longer current: task is ${task?.status ?? "unknown"} at attempt ${task?.attempt ?? "?"}`,
    },
  });
  let expected = state?.lastSeq ?? 0;
  for (let i = 0; i < 10; i++) {
    try {
      await appendEvent(r.conn, r.ns, event, expected);
      return;
    } catch (err) {
      if (!(err instanceof AppendConflictError)) throw err;
      const last = await r.conn.jsm.direct.getMessage(Streams.history, {
        last_by_subj: subjects.history(r.ns, a.runId),
      });
      expected = last?.seq ?? 0;
    }
  }
}
