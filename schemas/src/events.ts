import { z } from "zod";

/**
 * History events: the envelope `{ v, id, type, runId, taskRunId?, at, data }` and one payload schema per type.
 *
 * A published shape is never edited: a change is a new `v` plus an upcaster in `decodeEvent`, and the golden files
 * in `test/fixtures/` prove old logs still replay.
 */

/** Event type names (past tense). */
export const EventTypes = {
  RunCreated: "RunCreated",
  RunRescheduled: "RunRescheduled",
  RunDue: "RunDue",
  RunReplayed: "RunReplayed",
  TaskStarted: "TaskStarted",
  TaskCompleted: "TaskCompleted",
  TaskFailed: "TaskFailed",
  TaskRetryScheduled: "TaskRetryScheduled",
  TaskTimedOut: "TaskTimedOut",
  TaskTimeoutRefreshed: "TaskTimeoutRefreshed",
  RunCancelled: "RunCancelled",
  TaskReassigned: "TaskReassigned",
  TaskCancelled: "TaskCancelled",
  TaskSlotReleased: "TaskSlotReleased",
  TaskQueued: "TaskQueued",
  TaskWaiting: "TaskWaiting",
  TaskRateLimited: "TaskRateLimited",
  ChildrenSpawned: "ChildrenSpawned",
  DurableCheckpoint: "DurableCheckpoint",
  DurableSleeping: "DurableSleeping",
  DurableWoke: "DurableWoke",
  DurableWaitingForEvent: "DurableWaitingForEvent",
  DurableEventReceived: "DurableEventReceived",
  ReportIgnored: "ReportIgnored",
  EventRejected: "EventRejected",
} as const;
export type EventType = (typeof EventTypes)[keyof typeof EventTypes];

const token = z.string().regex(/^[A-Za-z0-9_-]{1,128}$/, "must be a subject token (letters, digits, _ and -)");
/**
 * A JSON object in a message parsed from JSON (inputs, outputs): checked as a whole. A record schema would check each
 * key as a string and each value as `unknown`, which JSON.parse already guarantees, and copy it: a third of the time
 * validating a `RunCreated` took.
 */
export const JsonObjectSchema = z.custom<Record<string, unknown>>(
  (v) => typeof v === "object" && v !== null && !Array.isArray(v),
  { error: "expected a JSON object" },
);

/** Why a run exists. */
export const TriggerKinds = ["run", "schedule", "cron", "event", "webhook", "child", "replay"] as const;
export const TriggerSchema = z.object({ kind: z.enum(TriggerKinds) }).loose();

/** One task of a run (a standalone task is a one-task workflow). */
export const TaskSpecSchema = z.object({
  taskRunId: token,
  taskName: z.string().min(1).max(128),
  /** How long an attempt may wait for a worker before it is cancelled (engine default when absent). */
  scheduleTimeoutMs: z.number().int().positive().optional(),
  /** Workflows: the task's name within its workflow (outputs and `parents` use it). */
  ref: z.string().min(1).max(128).optional(),
  /** Workflows: the refs of the tasks whose outputs it needs; it is queued once they all completed. */
  parents: z.array(z.string().min(1).max(128)).max(100).optional(),
  /** Workflows: a handler queued when the other tasks are done, if the run failed (`onFailure`) or not. */
  role: z.enum(["onFailure", "onSuccess"]).optional(),
});
export type TaskSpec = z.output<typeof TaskSpecSchema>;

/** How a task is retried, as its worker declared it (recorded with each start). */
export const RetryPolicySchema = z.object({
  /** How many times a failed attempt is retried. */
  retries: z.number().int().min(0).max(1000),
  /** Delay before retry n = min(maxSeconds, factor^n) seconds, optionally jittered; without it, a short fixed delay. */
  backoff: z
    .object({
      factor: z.number().min(1).max(1000),
      maxSeconds: z
        .number()
        .positive()
        .max(31 * 24 * 3600),
      jitter: z.boolean().default(false),
    })
    .strict()
    .optional(),
});
export type RetryPolicy = z.output<typeof RetryPolicySchema>;

export const RecordedErrorSchema = z.object({
  name: z.string(),
  message: z.string(),
  stack: z.string().optional(),
});

const attemptFacts = {
  attempt: z.number().int().min(0),
  workerId: token,
};

const envelope = {
  v: z.literal(1),
  id: z.string().min(1).max(128),
  runId: token,
  at: z.iso.datetime(),
};

export const RunCreatedSchema = z.object({
  ...envelope,
  type: z.literal(EventTypes.RunCreated),
  data: z.object({
    workflowName: z.string().min(1).max(128),
    input: JsonObjectSchema,
    tasks: z.array(TaskSpecSchema).min(1),
    trigger: TriggerSchema,
    additionalMetadata: z.record(z.string(), z.string()).default({}),
    priority: z.number().int().min(1).max(3).default(1),
    /** Start later: the run stays SCHEDULED until the engine queues it at this time (`RunDue`). */
    scheduledAt: z.iso.datetime().optional(),
    /** Sticky from the start (a child run with `{ sticky: true }`): its tasks prefer or require this worker. */
    sticky: z.object({ mode: z.enum(["SOFT", "HARD"]), workerId: token }).optional(),
    /**
     * W3C trace context of the trigger (the caller's active OpenTelemetry span, or given): the run's tasks join that
     * trace. Optional, so v1 logs without it replay unchanged; only length-checked here, because a malformed value
     * must not make the whole run rejected (readers parse it before use).
     */
    traceparent: z.string().max(256).optional(),
    tracestate: z.string().max(512).optional(),
  }),
});

/** A scheduled run's time moved (`tj.scheduled.update`). */
export const RunRescheduledSchema = z.object({
  ...envelope,
  type: z.literal(EventTypes.RunRescheduled),
  data: z.object({ scheduledAt: z.iso.datetime() }),
});

/** The engine queued a scheduled run: its time (`scheduledAt`) came. */
export const RunDueSchema = z.object({
  ...envelope,
  type: z.literal(EventTypes.RunDue),
  data: z.object({ scheduledAt: z.iso.datetime() }),
});

/**
 * A finished run runs again with its recorded input, as new attempts in the same history: every task, or with `from`
 * that task (by ref) and its descendants, the others keeping their recorded outputs.
 */
export const RunReplayedSchema = z.object({
  ...envelope,
  type: z.literal(EventTypes.RunReplayed),
  data: z.object({ from: z.string().min(1).max(128).optional(), reason: z.string().min(1).max(200).optional() }),
});

/** What a worker knows when an attempt starts, beyond the attempt and worker ids. */
const startFacts = {
  workerName: z.string(),
  assignedAt: z.iso.datetime(),
  policy: RetryPolicySchema.optional(),
  /** When the engine times the attempt out unless it finished or was refreshed. */
  timeoutAt: z.iso.datetime().optional(),
  /** The task's sticky mode: the run's later attempts prefer (SOFT) or require (HARD) the first worker. */
  sticky: z.enum(["SOFT", "HARD"]).optional(),
};

export const TaskStartedSchema = z.object({
  ...envelope,
  type: z.literal(EventTypes.TaskStarted),
  taskRunId: token,
  data: z.object({ ...attemptFacts, ...startFacts }),
});

/**
 * The start of an attempt that ended before its worker recorded `TaskStarted` (a worker records the start only once
 * an attempt has run for a while, `START_RECORD_DELAY_MS`): its result carries the start, one append instead of two.
 * Readers show it as the `TaskStarted` it stands for (`expandEvent`).
 */
const startedWithResult = { started: z.object({ at: z.iso.datetime(), ...startFacts }).optional() };

export const TaskCompletedSchema = z.object({
  ...envelope,
  type: z.literal(EventTypes.TaskCompleted),
  taskRunId: token,
  data: z.object({ ...attemptFacts, output: JsonObjectSchema, ...startedWithResult }),
});

export const TaskFailedSchema = z.object({
  ...envelope,
  type: z.literal(EventTypes.TaskFailed),
  taskRunId: token,
  data: z.object({
    ...attemptFacts,
    error: RecordedErrorSchema,
    nonRetryable: z.boolean().optional(),
    ...startedWithResult,
  }),
});

/** The engine failed a running attempt past its execution deadline; retries apply. */
export const TaskTimedOutSchema = z.object({
  ...envelope,
  type: z.literal(EventTypes.TaskTimedOut),
  taskRunId: token,
  data: z.object({ attempt: z.number().int().min(0), timeoutAt: z.iso.datetime() }),
});

/** The running attempt moved its execution deadline (`ctx.refreshTimeout`). */
export const TaskTimeoutRefreshedSchema = z.object({
  ...envelope,
  type: z.literal(EventTypes.TaskTimeoutRefreshed),
  taskRunId: token,
  data: z.object({ ...attemptFacts, timeoutAt: z.iso.datetime() }),
});

/** The worker running the attempt was lost: the same attempt is queued again (not counted as a retry). */
export const TaskReassignedSchema = z.object({
  ...envelope,
  type: z.literal(EventTypes.TaskReassigned),
  taskRunId: token,
  data: z.object({ attempt: z.number().int().min(0), fromWorkerId: token, reason: z.string() }),
});

/**
 * The running attempt gave its worker slot back early (`ctx.releaseSlot()`); it keeps running. `forChild`: a durable
 * task waiting for a child (`ctx.spawnChild`), which replays on another worker if its own dies.
 */
export const TaskSlotReleasedSchema = z.object({
  ...envelope,
  type: z.literal(EventTypes.TaskSlotReleased),
  taskRunId: token,
  data: z.object({ ...attemptFacts, forChild: z.literal(true).optional() }),
});

/** One task was cancelled by the engine (e.g. `SCHEDULE_TIMEOUT`: queued too long). */
export const TaskCancelledSchema = z.object({
  ...envelope,
  type: z.literal(EventTypes.TaskCancelled),
  taskRunId: token,
  data: z.object({ attempt: z.number().int().min(0), reason: z.string().min(1) }),
});

/** The run was cancelled: its unfinished tasks end CANCELLED; running attempts are told to stop. */
export const RunCancelledSchema = z.object({
  ...envelope,
  type: z.literal(EventTypes.RunCancelled),
  data: z.object({ reason: z.string().min(1).max(200) }),
});

/** The engine will queue attempt `attempt` at `at` (an engine timer: no slot or ack is held meanwhile). */
export const TaskRetryScheduledSchema = z.object({
  ...envelope,
  type: z.literal(EventTypes.TaskRetryScheduled),
  taskRunId: token,
  data: z.object({ attempt: z.number().int().min(1), at: z.iso.datetime(), delayMs: z.number().int().min(0) }),
});

/** Attempt `attempt` waits for a worker slot (a retry; the first attempt is queued by RunCreated). */
export const TaskQueuedSchema = z.object({
  ...envelope,
  type: z.literal(EventTypes.TaskQueued),
  taskRunId: token,
  data: z.object({ attempt: z.number().int().min(1) }),
});

/** Why a queued attempt is not placed yet (recorded once per attempt, when the scheduler first holds it back). */
export const WaitReasons = ["CONCURRENCY", "RATE_LIMIT", "NO_WORKER"] as const;
export const TaskWaitingSchema = z.object({
  ...envelope,
  type: z.literal(EventTypes.TaskWaiting),
  taskRunId: token,
  data: z.object({ attempt: z.number().int().min(0), reason: z.enum(WaitReasons), detail: z.string().max(500) }),
});

/**
 * The running attempt hit an upstream rate limit (`ctx.rateLimited`, `RateLimitedError`): it ends, the keys are
 * paused until `until`, and the next attempt is queued without counting as a retry.
 */
export const TaskRateLimitedSchema = z.object({
  ...envelope,
  type: z.literal(EventTypes.TaskRateLimited),
  taskRunId: token,
  data: z.object({
    ...attemptFacts,
    /** The rate-limit keys to pause; absent: the task's own keys (or the task itself when it has none). */
    keys: z.array(z.string().min(1).max(256)).max(16).optional(),
    until: z.iso.datetime(),
    message: z.string().max(1000).optional(),
    ...startedWithResult,
  }),
});

/**
 * A running task started child runs (`ctx.runChild`, `child.run()` inside a task): recorded in the parent's history
 * before the children are created, so cancelling the parent finds them. Child run ids derive from the parent task-run
 * and the child's key (or index), so a parent that runs again spawns the same children, not new ones.
 */
export const ChildrenSpawnedSchema = z.object({
  ...envelope,
  type: z.literal(EventTypes.ChildrenSpawned),
  taskRunId: token,
  data: z.object({
    ...attemptFacts,
    children: z
      .array(z.object({ runId: token, taskName: z.string().min(1).max(128), key: z.string().max(256) }))
      .min(1)
      .max(10_000),
  }),
});

/**
 * Durable tasks: a checkpoint the running attempt recorded (`ctx.now()`): on replay the task gets the recorded value
 * back instead of a new one. `index` is the checkpoint's position in the task's sequence of checkpoints.
 */
export const DurableCheckpointSchema = z.object({
  ...envelope,
  type: z.literal(EventTypes.DurableCheckpoint),
  taskRunId: token,
  data: z.object({ ...attemptFacts, index: z.number().int().min(0), kind: z.literal("now"), value: z.iso.datetime() }),
});

/**
 * Durable tasks: the attempt reached `ctx.sleepFor` / `ctx.sleepUntil`: it ends here and frees its slot; the engine
 * wakes the task at `until` (`DurableWoke`), and a new attempt replays up to this checkpoint and goes on.
 */
export const DurableSleepingSchema = z.object({
  ...envelope,
  type: z.literal(EventTypes.DurableSleeping),
  taskRunId: token,
  data: z.object({ ...attemptFacts, index: z.number().int().min(0), until: z.iso.datetime() }),
});

/** Durable tasks: the engine ended a sleep: the next attempt is queued (not counted as a retry). */
export const DurableWokeSchema = z.object({
  ...envelope,
  type: z.literal(EventTypes.DurableWoke),
  taskRunId: token,
  data: z.object({ attempt: z.number().int().min(1), index: z.number().int().min(0) }),
});

/**
 * Durable tasks: the attempt reached `ctx.waitForEvent`: it ends and frees its slot until a pushed event of `key`
 * (matching `filter`) stored after stream sequence `afterSeq` arrives; the engine then records it
 * (`DurableEventReceived`) and queues the next attempt, which gets the event back from history.
 */
export const DurableWaitingForEventSchema = z.object({
  ...envelope,
  type: z.literal(EventTypes.DurableWaitingForEvent),
  taskRunId: token,
  data: z.object({
    ...attemptFacts,
    index: z.number().int().min(0),
    key: z.string().min(1).max(260),
    filter: z.string().max(1000).optional(),
    afterSeq: z.number().int().min(0),
  }),
});

/** Durable tasks: the event a wait was for arrived: the next attempt is queued (not counted as a retry). */
export const DurableEventReceivedSchema = z.object({
  ...envelope,
  type: z.literal(EventTypes.DurableEventReceived),
  taskRunId: token,
  data: z.object({
    attempt: z.number().int().min(1),
    index: z.number().int().min(0),
    event: z.object({ id: z.string(), key: z.string(), payload: z.record(z.string(), z.unknown()) }),
  }),
});

/** A report from an attempt that was no longer current when it arrived: recorded, never applied. */
export const ReportIgnoredSchema = z.object({
  ...envelope,
  type: z.literal(EventTypes.ReportIgnored),
  taskRunId: token,
  data: z.object({
    ...attemptFacts,
    report: z.enum(["started", "completed", "failed", "rateLimited"]),
    reason: z.string(),
  }),
});

/** The engine could not accept the message at `rejectedSeq` on this run's subject. */
export const EventRejectedSchema = z.object({
  ...envelope,
  type: z.literal(EventTypes.EventRejected),
  data: z.object({ rejectedSeq: z.number().int().min(1), reason: z.string() }),
});

export const TaskjetEventSchema = z.discriminatedUnion("type", [
  RunCreatedSchema,
  RunRescheduledSchema,
  RunDueSchema,
  RunReplayedSchema,
  TaskStartedSchema,
  TaskCompletedSchema,
  TaskFailedSchema,
  TaskRetryScheduledSchema,
  TaskQueuedSchema,
  TaskWaitingSchema,
  TaskRateLimitedSchema,
  ChildrenSpawnedSchema,
  DurableCheckpointSchema,
  DurableSleepingSchema,
  DurableWokeSchema,
  DurableWaitingForEventSchema,
  DurableEventReceivedSchema,
  TaskTimedOutSchema,
  TaskTimeoutRefreshedSchema,
  RunCancelledSchema,
  TaskReassignedSchema,
  TaskCancelledSchema,
  TaskSlotReleasedSchema,
  ReportIgnoredSchema,
  EventRejectedSchema,
]);

export type TaskjetEvent = z.output<typeof TaskjetEventSchema>;
export type RunCreated = z.output<typeof RunCreatedSchema>;
export type RunRescheduled = z.output<typeof RunRescheduledSchema>;
export type RunDue = z.output<typeof RunDueSchema>;
export type RunReplayed = z.output<typeof RunReplayedSchema>;
export type TaskStarted = z.output<typeof TaskStartedSchema>;
export type TaskCompleted = z.output<typeof TaskCompletedSchema>;
export type TaskFailed = z.output<typeof TaskFailedSchema>;
export type TaskRetryScheduled = z.output<typeof TaskRetryScheduledSchema>;
export type TaskQueued = z.output<typeof TaskQueuedSchema>;
export type TaskWaiting = z.output<typeof TaskWaitingSchema>;
export type TaskRateLimited = z.output<typeof TaskRateLimitedSchema>;
export type ChildrenSpawned = z.output<typeof ChildrenSpawnedSchema>;
export type TaskTimedOut = z.output<typeof TaskTimedOutSchema>;
export type TaskTimeoutRefreshed = z.output<typeof TaskTimeoutRefreshedSchema>;
export type RunCancelled = z.output<typeof RunCancelledSchema>;
export type TaskReassigned = z.output<typeof TaskReassignedSchema>;
export type TaskCancelled = z.output<typeof TaskCancelledSchema>;
export type ReportIgnored = z.output<typeof ReportIgnoredSchema>;
export type EventRejected = z.output<typeof EventRejectedSchema>;
/** What a writer passes in: defaults may be left out. */
export type TaskjetEventInput = z.input<typeof TaskjetEventSchema>;
