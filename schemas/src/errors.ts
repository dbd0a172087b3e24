/**
 * Typed errors shared by the SDK, CLI and engine. Check `code`, never the message text.
 */

/** Stable error codes. */
export const ErrorCodes = {
  invalidArgument: "INVALID_ARGUMENT",
  payloadTooLarge: "PAYLOAD_TOO_LARGE",
  appendConflict: "APPEND_CONFLICT",
  connectionFailed: "CONNECTION_FAILED",
  runNotFound: "RUN_NOT_FOUND",
  taskFailed: "TASK_FAILED",
  runRejected: "RUN_REJECTED",
  closed: "CLOSED",
  timeout: "TIMEOUT",
  notProvisioned: "NOT_PROVISIONED",
  runCancelled: "RUN_CANCELLED",
  notScheduled: "NOT_SCHEDULED",
  debugReadOnly: "DEBUG_READ_ONLY",
  authenticationFailed: "AUTHENTICATION_FAILED",
  permissionDenied: "PERMISSION_DENIED",
  runFinished: "RUN_FINISHED",
  replayRefused: "REPLAY_REFUSED",
  notFound: "NOT_FOUND",
  runIdTaken: "RUN_ID_TAKEN",
  alreadyExists: "ALREADY_EXISTS",
  attemptNotCurrent: "ATTEMPT_NOT_CURRENT",
  unavailable: "UNAVAILABLE",
} as const;
export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** Base class of every Taskjet error. */
export class TaskjetError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "TaskjetError";
    this.code = code;
  }
}

/** One problem found while validating a value: where it is and what is wrong. */
export interface ValidationIssue {
  path: string;
  message: string;
}

/** Bad input at an edge (SDK, CLI, HTTP, engine): names the field and the value. */
export class ValidationError extends TaskjetError {
  readonly issues: ValidationIssue[];
  constructor(issues: ValidationIssue[], options?: { cause?: unknown }) {
    super(
      ErrorCodes.invalidArgument,
      issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join("; "),
      options,
    );
    this.name = "ValidationError";
    this.issues = issues;
  }
  /** The first field named by this error. */
  get field(): string {
    return this.issues[0]?.path ?? "";
  }
}

/** A payload (input or output) over the size limit. */
export class PayloadTooLargeError extends TaskjetError {
  readonly field: string;
  readonly size: number;
  readonly limit: number;
  constructor(field: string, size: number, limit: number) {
    super(ErrorCodes.payloadTooLarge, `${field} is ${size} bytes as JSON, over the limit of ${limit} bytes`);
    this.name = "PayloadTooLargeError";
    this.field = field;
    this.size = size;
    this.limit = limit;
  }
}

/**
 * An append to a run's history was refused because someone else appended first (invariant 2): the caller must
 * re-read the run and decide again.
 */
export class AppendConflictError extends TaskjetError {
  readonly subject: string;
  readonly expectedSeq: number;
  constructor(subject: string, expectedSeq: number, options?: { cause?: unknown }) {
    super(
      ErrorCodes.appendConflict,
      `append to ${subject} expected last sequence ${expectedSeq}, but the subject has moved on`,
      options,
    );
    this.name = "AppendConflictError";
    this.subject = subject;
    this.expectedSeq = expectedSeq;
  }
}

/** The NATS servers could not be reached. */
export class ConnectionError extends TaskjetError {
  readonly servers: string[];
  constructor(servers: string[], options?: { cause?: unknown }) {
    const reason = options?.cause instanceof Error ? `: ${options.cause.message}` : "";
    const shown = servers.map(redactUrl);
    super(ErrorCodes.connectionFailed, `cannot connect to NATS at ${shown.join(", ")}${reason}`, options);
    this.name = "ConnectionError";
    this.servers = shown;
  }
}

/** The URL with any `user:password@` or `token@` replaced by `***@`: safe to log and print. */
export function redactUrl(url: string): string {
  return url.replace(/^((?:[a-z][a-z0-9+.-]*:\/\/)?)[^/@\s]+@/i, "$1***@");
}

/** The NATS server refused the connection's credentials, or wants credentials and none were configured. */
export class NatsAuthenticationError extends TaskjetError {
  readonly servers: string[];
  /** How the connection tried to authenticate, and where that came from: `"token (TASKJET_NATS_TOKEN)"`. */
  readonly method: string;
  constructor(servers: string[], method: string, options?: { cause?: unknown }) {
    const shown = servers.map(redactUrl);
    const reason = options?.cause instanceof Error ? ` (${options.cause.message})` : "";
    super(
      ErrorCodes.authenticationFailed,
      method === "none"
        ? `NATS at ${shown.join(", ")} requires authentication and none was configured${reason}: set TASKJET_NATS_USER and TASKJET_NATS_PASSWORD, TASKJET_NATS_TOKEN, TASKJET_NATS_NKEY or TASKJET_NATS_CREDS (or the matching options)`
        : `NATS at ${shown.join(", ")} refused the credentials: ${method}${reason}`,
      options,
    );
    this.name = "NatsAuthenticationError";
    this.servers = shown;
    this.method = method;
  }
}

/**
 * The NATS server refused a publish or a subscription these credentials may not make: most often a namespace the
 * credentials are not for (see deploy/nats/permissions-namespace.conf).
 */
export class PermissionDeniedError extends TaskjetError {
  readonly operation: "publish" | "subscription";
  readonly subject: string;
  constructor(operation: "publish" | "subscription", subject: string, options?: { cause?: unknown }) {
    super(
      ErrorCodes.permissionDenied,
      `NATS denied ${operation === "publish" ? "publishing to" : "subscribing to"} ${subject}: these credentials are not allowed to (another namespace?)`,
      options,
    );
    this.name = "PermissionDeniedError";
    this.operation = operation;
    this.subject = subject;
  }
}

/** No run with this id in the namespace. */
export class RunNotFoundError extends TaskjetError {
  readonly runId: string;
  constructor(runId: string) {
    super(ErrorCodes.runNotFound, `run ${runId} not found`);
    this.name = "RunNotFoundError";
    this.runId = runId;
  }
}

/** What was to be created exists already (an API token's name): nothing was changed. */
export class AlreadyExistsError extends TaskjetError {
  constructor(message: string) {
    super(ErrorCodes.alreadyExists, message);
    this.name = "AlreadyExistsError";
  }
}

/** A trigger's `runId` names a run of another task: nothing was created. */
export class RunIdTakenError extends TaskjetError {
  readonly runId: string;
  /** The task (or workflow) of the run that has the id. */
  readonly existingTask: string;
  constructor(runId: string, existingTask: string, task: string) {
    super(
      ErrorCodes.runIdTaken,
      `runId: run ${runId} exists already as a run of ${existingTask}, not ${task}: choose another runId or leave it out`,
    );
    this.name = "RunIdTakenError";
    this.runId = runId;
    this.existingTask = existingTask;
  }
}

/** An operation that needs an unfinished run (cancel) on one that already finished. */
export class RunFinishedError extends TaskjetError {
  readonly runId: string;
  readonly status: string;
  constructor(runId: string, status: string) {
    super(ErrorCodes.runFinished, `run ${runId} has already finished: it is ${status}`);
    this.name = "RunFinishedError";
    this.runId = runId;
    this.status = status;
  }
}

/** A replay that does not apply to the run (not finished, or a `from` task whose parents did not complete). */
export class ReplayRefusedError extends TaskjetError {
  readonly runId: string;
  readonly reason: string;
  constructor(runId: string, reason: string) {
    super(ErrorCodes.replayRefused, `run ${runId} cannot be replayed: ${reason}`);
    this.name = "ReplayRefusedError";
    this.runId = runId;
    this.reason = reason;
  }
}

/** Something the request names does not exist here (a namespace this engine does not serve, a cron). */
export class NotFoundError extends TaskjetError {
  constructor(message: string) {
    super(ErrorCodes.notFound, message);
    this.name = "NotFoundError";
  }
}

/** A scheduled-run operation on a run that is not (or no longer) SCHEDULED. */
export class RunNotScheduledError extends TaskjetError {
  readonly runId: string;
  readonly status: string;
  constructor(runId: string, status: string) {
    super(ErrorCodes.notScheduled, `run ${runId} is not scheduled: it is ${status}`);
    this.name = "RunNotScheduledError";
    this.runId = runId;
    this.status = status;
  }
}

/** The error a task function raised, as recorded in history. */
export interface RecordedError {
  name: string;
  message: string;
  stack?: string | undefined;
}

/** Thrown by `run()` / `result()` when the task failed; carries the task's own error as recorded. */
export class TaskRunError extends TaskjetError {
  readonly runId: string;
  readonly taskName: string;
  readonly taskError: RecordedError;
  constructor(runId: string, taskName: string, taskError: RecordedError) {
    super(ErrorCodes.taskFailed, `task ${taskName} (run ${runId}) failed: ${taskError.name}: ${taskError.message}`);
    this.name = "TaskRunError";
    this.runId = runId;
    this.taskName = taskName;
    this.taskError = taskError;
    // The remote stack is what the user debugs; keep ours in the message's first line only.
    if (taskError.stack) this.stack = `${this.name}: ${this.message}\n--- task stack ---\n${taskError.stack}`;
  }
}

/** Thrown by `run()` / `result()` when the run was cancelled. */
export class RunCancelledError extends TaskjetError {
  readonly runId: string;
  readonly reason: string;
  constructor(runId: string, reason: string) {
    super(ErrorCodes.runCancelled, `run ${runId} was cancelled: ${reason}`);
    this.name = "RunCancelledError";
    this.runId = runId;
    this.reason = reason;
  }
}

/**
 * What a task attempt tried to record (its start, a refreshed timeout, a checkpoint, child runs) was refused: the
 * attempt is no longer the run's current one (cancelled, timed out, or given to another worker). The task should stop.
 */
export class AttemptNotCurrentError extends TaskjetError {
  constructor(reason: string) {
    super(ErrorCodes.attemptNotCurrent, `attempt no longer current: ${reason}`);
    this.name = "AttemptNotCurrentError";
  }
}

/** The engine refused a run's creation event (malformed or of unknown shape); the reason is in its history. */
export class RunRejectedError extends TaskjetError {
  readonly runId: string;
  constructor(runId: string, reason: string) {
    super(ErrorCodes.runRejected, `run ${runId} was rejected: ${reason}`);
    this.name = "RunRejectedError";
    this.runId = runId;
  }
}

/** An operation on a closed client or worker. */
export class ClosedError extends TaskjetError {
  constructor(what: string) {
    super(ErrorCodes.closed, `${what} is closed`);
    this.name = "ClosedError";
  }
}

/**
 * NATS did not acknowledge an append for longer than a stream leader's election takes (the server unreachable, or the
 * history stream without a leader): the event may have been stored all the same.
 */
export class UnavailableError extends TaskjetError {
  constructor(
    readonly eventType: string,
    readonly runId: string,
    ms: number,
    options?: { cause?: unknown },
  ) {
    const why = options?.cause instanceof Error ? ` (${options.cause.message})` : "";
    super(
      ErrorCodes.unavailable,
      `NATS did not acknowledge ${eventType} of run ${runId} within ${ms / 1000} s${why}: it may have been recorded ` +
        "all the same; try again with the same run id, which records it once",
      options,
    );
    this.name = "UnavailableError";
  }
}

/** Waiting took longer than the caller allowed. */
export class WaitTimeoutError extends TaskjetError {
  constructor(what: string, ms: number) {
    super(ErrorCodes.timeout, `${what} did not finish within ${ms} ms`);
    this.name = "WaitTimeoutError";
  }
}

/** The streams Taskjet needs do not exist on the server: no engine has ever started against it. */
export class NotProvisionedError extends TaskjetError {
  readonly stream: string;
  constructor(stream: string, servers: string[]) {
    super(
      ErrorCodes.notProvisioned,
      `stream ${stream} does not exist on ${servers.join(", ")}: start an engine against this NATS first (taskjet dev, or taskjet engine --nats ${servers.join(",")})`,
    );
    this.name = "NotProvisionedError";
    this.stream = stream;
  }
}

/** `taskjet debug` runs a task locally and writes nothing: the task (or its module) tried to. */
export class DebugReadOnlyError extends TaskjetError {
  constructor(what: string) {
    super(ErrorCodes.debugReadOnly, `taskjet debug writes nothing to the cluster: ${what} was not done`);
    this.name = "DebugReadOnlyError";
  }
}

/**
 * Thrown from a task to fail it at once, whatever retries remain.
 * @example throw new NonRetryableError("invoice already paid")
 */
export class NonRetryableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "NonRetryableError";
  }
}

/**
 * Thrown from a task when an upstream service refused it for now (an HTTP 429): the attempt ends, `key` (or the
 * task's own rate-limit keys) pauses until `retryAfter`, and the run is queued again without using a retry.
 * @example throw new RateLimitedError({ key: "openai", retryAfter: "30s" })
 */
export class RateLimitedError extends Error {
  readonly key: string | undefined;
  /** A date, or a delay in milliseconds or as a duration string (`"30s"`). */
  readonly retryAfter: Date | number | string;
  constructor(options: { key?: string; retryAfter: Date | number | string; message?: string }) {
    super(options.message ?? `rate limited${options.key ? ` on ${options.key}` : ""}`);
    this.name = "RateLimitedError";
    this.key = options.key;
    this.retryAfter = options.retryAfter;
  }
}

/** Whether a task's error asks to pause and retry later (checked by name, so copies of the SDK agree). */
export function isRateLimited(err: unknown): err is RateLimitedError {
  try {
    return err instanceof Error && err.name === "RateLimitedError" && "retryAfter" in err;
  } catch {
    return false; // a Proxy whose traps throw: whatever it is, it asks for nothing
  }
}

/**
 * A durable task replayed its checkpoints in a different order than history recorded (its code between checkpoints
 * is not deterministic, or it changed): the task fails, not retried.
 */
export class NonDeterminismError extends Error {
  /** `at`: the checkpoint's index, or what else it is (a child run). */
  constructor(at: number | string, now: string, recorded: string) {
    super(
      `${typeof at === "number" ? `checkpoint ${at}` : at}: the task now calls ${now}, but its history recorded ${recorded}`,
    );
    this.name = "NonDeterminismError";
  }
}

/** Whether a task's error forbids retrying it (checked by name, so copies of the SDK agree). */
export function isNonRetryable(err: unknown): boolean {
  try {
    return err instanceof Error && (err.name === "NonRetryableError" || err.name === "NonDeterminismError");
  } catch {
    return false;
  }
}

/** Longest `name` of a recorded error, in characters. */
const RECORDED_NAME_MAX = 256;

/**
 * Longest `message` and `stack` of a recorded error by default, in characters. A character takes at most 6 bytes as
 * JSON (`\u0001`): a recorded error stays under 200 KB, well inside the smallest payload limit a history event has.
 */
export const RECORDED_TEXT_MAX = 16_384;

/**
 * Turns anything thrown into the recorded shape, always valid whatever was thrown: every field a string (a value that
 * is not one as its JSON or `String()`, one that cannot be read or printed as a description of why), `name` cut to 256
 * characters and `message` and `stack` to `maxChars` (marked as cut), so the event that carries it fits a message.
 * Never throws (a task's error must always reach history: a report that throws leaves the run waiting for good).
 * @example toRecordedError(Object.assign(new Error("m"), { stack: { a: 1 } })) // { name: "Error", message: "m", stack: '{"a":1}' }
 */
export function toRecordedError(err: unknown, maxChars = RECORDED_TEXT_MAX): RecordedError {
  try {
    if (err instanceof Error) {
      const name = readField(err, "name");
      const stack = readField(err, "stack");
      return {
        name: truncateText(name === undefined || name === "" ? "Error" : printable(name), RECORDED_NAME_MAX),
        message: truncateText(printable(readField(err, "message") ?? ""), maxChars),
        ...(stack === undefined ? {} : { stack: truncateText(printable(stack), maxChars) }),
      };
    }
    return { name: "Error", message: truncateText(printable(err), maxChars) };
  } catch (failure) {
    // `instanceof` itself threw (a Proxy's getPrototypeOf trap).
    return { name: "Error", message: `[unreadable thrown value: ${describeFailure(failure)}]` };
  }
}

/**
 * `text` cut to at most `max` characters (never between the two halves of a surrogate pair), with a note of its
 * length when it was cut.
 */
export function truncateText(text: string, max: number): string {
  if (text.length <= max) return text;
  let cut = max;
  const last = text.charCodeAt(cut - 1);
  if (last >= 0xd800 && last <= 0xdbff) cut--;
  return `${text.slice(0, cut)}… [truncated: ${text.length} characters in all]`;
}

function readField(err: Error, field: "name" | "message" | "stack"): unknown {
  try {
    return err[field];
  } catch (failure) {
    return `[unreadable ${field}: ${describeFailure(failure)}]`;
  }
}

/** A string as it is; anything else as its JSON, else `String()`, else a description of why neither works. */
function printable(value: unknown): string {
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    try {
      return String(value);
    } catch (failure) {
      return `[unprintable ${typeof value}: ${describeFailure(failure)}]`;
    }
  }
}

/** What was thrown while reading or printing a value, in a few words; never throws. */
function describeFailure(failure: unknown): string {
  try {
    const text = failure instanceof Error ? `${failure.name}: ${failure.message}` : String(failure);
    return truncateText(text, 200);
  } catch {
    return "unknown reason";
  }
}
