import { createHash } from "node:crypto";
import {
  EventTypes,
  type RunCreated,
  type TaskjetEvent,
  type TaskjetEventInput,
  TaskjetEventSchema,
  type TriggerKinds,
} from "./events.js";
import { newId } from "./ids.js";
import { compiledOnUse, jsonTooDeep, MESSAGE_JSON_DEPTH, zodIssues } from "./validation.js";

const decoder = new TextDecoder();
const eventSchema = compiledOnUse(TaskjetEventSchema);

/** The outcome of decoding one message from a run's subject. */
export type Decoded = { ok: true; event: TaskjetEvent } | { ok: false; reason: string };

/**
 * Decodes and validates one history message. `runId` is the run the subject belongs to: an event naming another run
 * is refused. Old envelope versions are upcast here, before validation, once a `v: 2` exists.
 */
export function decodeEvent(data: Uint8Array, runId: string): Decoded {
  return decodeJson(decoder.decode(data), runId);
}

/** `decodeEvent` of a message's text. */
export function decodeJson(text: string, runId: string): Decoded {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return { ok: false, reason: `not JSON: ${(err as Error).message}` };
  }
  // Each level takes at least two characters: only a message this long can be too deep.
  if (text.length > 2 * MESSAGE_JSON_DEPTH && jsonTooDeep(raw, MESSAGE_JSON_DEPTH)) {
    return { ok: false, reason: `nests objects and arrays deeper than ${MESSAGE_JSON_DEPTH} levels` };
  }
  const result = eventSchema().safeParse(raw);
  if (!result.success) {
    const issues = zodIssues(result.error, raw).map((i) => (i.path ? `${i.path}: ${i.message}` : i.message));
    return { ok: false, reason: `invalid event: ${issues.join("; ")}` };
  }
  if (result.data.runId !== runId) {
    return { ok: false, reason: `event names run ${result.data.runId} on the subject of run ${runId}` };
  }
  return { ok: true, event: result.data };
}

/**
 * The facts an event stands for, for people reading a history: a result that carries its attempt's start (`started`)
 * reads as the `TaskStarted` it replaced, then the result. Fold the event itself, never its expansion.
 */
export function expandEvent(event: TaskjetEvent): TaskjetEvent[] {
  if (
    (event.type !== EventTypes.TaskCompleted &&
      event.type !== EventTypes.TaskFailed &&
      event.type !== EventTypes.TaskRateLimited) ||
    !event.data.started
  ) {
    return [event];
  }
  const { started, ...result } = event.data;
  const { at, ...facts } = started;
  const start: TaskjetEvent = {
    v: event.v,
    id: event.id,
    type: EventTypes.TaskStarted,
    at,
    runId: event.runId,
    taskRunId: event.taskRunId,
    data: { ...facts, attempt: event.data.attempt, workerId: event.data.workerId },
  };
  return [start, { ...event, data: result } as TaskjetEvent];
}

/** Encodes an event for appending. */
export function encodeEvent(event: TaskjetEventInput): string {
  return JSON.stringify(event);
}

type EventOf<T extends TaskjetEventInput["type"]> = Extract<TaskjetEventInput, { type: T }>;

/** Builds an event envelope with a fresh id and the current time. */
export function makeEvent<T extends TaskjetEventInput["type"]>(
  type: T,
  fields: Omit<EventOf<T>, "v" | "id" | "type" | "at">,
  at: Date = new Date(),
): EventOf<T> {
  return { v: 1, id: newId(), type, at: at.toISOString(), ...fields } as unknown as EventOf<T>;
}

/**
 * The run id of a child: the same for the same parent task-run and key, so a parent retried makes no new child; a
 * replayed parent (`replays`) makes new ones.
 */
export function childRunId(parentTaskRunId: string, key: string, replays?: number): string {
  const parent = replays ? `${parentTaskRunId}\nreplay ${replays}` : parentTaskRunId;
  return `k${createHash("sha256").update(`${parent}\n${key}`).digest("base64url").slice(0, 31)}`;
}

/** The creation of a one-task run (a standalone task): what every trigger (client, cron, event router) appends. */
export function newRunCreated(run: {
  runId: string;
  taskName: string;
  input: Record<string, unknown>;
  trigger: { kind: (typeof TriggerKinds)[number]; [k: string]: unknown };
  additionalMetadata?: Record<string, string>;
  priority?: number;
  scheduleTimeoutMs?: number | undefined;
  /** Sticky from the start: the worker its tasks prefer (SOFT) or require (HARD). */
  sticky?: { mode: "SOFT" | "HARD"; workerId: string } | undefined;
  /** W3C trace context of the trigger: the run's tasks join that trace. */
  trace?: { traceparent: string; tracestate?: string | undefined } | undefined;
  /** A workflow's tasks (else the run is the one task `taskName`). */
  workflow?:
    | {
        tasks: {
          ref: string;
          taskName: string;
          parents?: string[] | undefined;
          role?: "onFailure" | "onSuccess" | undefined;
          scheduleTimeoutMs?: number | undefined;
        }[];
      }
    | undefined;
}): RunCreated {
  const tasks = run.workflow
    ? run.workflow.tasks.map((t, i) => ({
        taskRunId: `${run.runId}-${i}`,
        taskName: t.taskName,
        ref: t.ref,
        ...(t.parents?.length ? { parents: t.parents } : {}),
        ...(t.role ? { role: t.role } : {}),
        ...(t.scheduleTimeoutMs ? { scheduleTimeoutMs: t.scheduleTimeoutMs } : {}),
      }))
    : [
        {
          taskRunId: `${run.runId}-0`,
          taskName: run.taskName,
          ...(run.scheduleTimeoutMs ? { scheduleTimeoutMs: run.scheduleTimeoutMs } : {}),
        },
      ];
  return makeEvent(EventTypes.RunCreated, {
    runId: run.runId,
    data: {
      workflowName: run.taskName,
      input: run.input,
      tasks,
      trigger: run.trigger,
      additionalMetadata: run.additionalMetadata ?? {},
      priority: run.priority ?? 1,
      ...(run.sticky ? { sticky: run.sticky } : {}),
      ...(run.trace ? { traceparent: run.trace.traceparent } : {}),
      ...(run.trace?.tracestate ? { tracestate: run.trace.tracestate } : {}),
    },
  }) as RunCreated;
}

/** Dedup id (`Nats-Msg-Id`) of an event: retries of the same append collapse into one message. */
export function eventMsgId(event: TaskjetEventInput): string {
  switch (event.type) {
    case EventTypes.RunCreated:
      return event.runId;
    case EventTypes.TaskRetryScheduled:
      return `${event.taskRunId}:${event.data.attempt}:retry`;
    case EventTypes.TaskQueued:
      return `${event.taskRunId}:${event.data.attempt}:queued`;
    case EventTypes.TaskTimedOut:
      return `${event.taskRunId}:${event.data.attempt}:timedout`;
    case EventTypes.EventRejected:
      return `${event.runId}:rejected:${event.data.rejectedSeq}`;
    case EventTypes.RunCancelled:
      return `${event.runId}:cancelled`;
    case EventTypes.TaskCancelled:
      return `${event.taskRunId}:${event.data.attempt}:cancelled`;
    // A worker's facts (its start, a slot released, a result) by their own id: dedup is only for the append that made
    // them retrying. Two copies of one attempt, on two workers or run twice by one (it was reassigned back to it), are
    // two writers: the CAS decides between them, and a second copy's start must not collapse into the first's. So is a
    // reassignment: one worker can lose the same attempt twice (it came back, was given it again, and died again), and
    // the engine decides each from the run's state, with CAS.
    default:
      return event.id;
  }
}
