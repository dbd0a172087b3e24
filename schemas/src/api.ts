import { z } from "zod";
import { CronDefinitionSchema } from "./cron.js";
import { RecordedErrorSchema, TaskjetEventSchema } from "./events.js";
import { parseIsoTime } from "./iso-time.js";
import { RunOptionsSchema } from "./options.js";
import { RUN_STATUS_VALUES } from "./run-state.js";
import { TaskLogLineSchema, WorkerRegistrationSchema } from "./wire.js";

/**
 * The engine's REST API (`/api/v1/namespaces/:ns/...`): parameters, queries, bodies and answers, in zod. The engine
 * validates requests with these and generates its OpenAPI document (`GET /api/v1/openapi.json`) from them; clients
 * (the dashboard) may import them for their types.
 */

const token = z.string().regex(/^[A-Za-z0-9_-]{1,128}$/, "must be 1-128 letters, digits, _ or -");
const runId = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "must be 1-64 letters, digits, _ or -");
const taskName = z
  .string()
  .regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, 'must be letters, digits, "_", "-" and inner dots')
  .max(128);
const status = z.enum(RUN_STATUS_VALUES as [string, ...string[]]);

/**
 * A query parameter given once or several times, and comma-separated unless its values may hold commas: always a
 * list.
 */
function listParam<T extends z.ZodType>(item: T, { commas = true } = {}) {
  return z.preprocess(
    (v) =>
      v === undefined
        ? undefined
        : (Array.isArray(v) ? v : [v])
            .flatMap((s) => (commas && typeof s === "string" ? s.split(",") : [s]))
            .filter((s) => s !== ""),
    z.array(item),
  );
}

/** A time: ISO 8601, or a duration before now (`15m`, `2h`, `7d`). */
const timeParam = z
  .string()
  .refine(
    (s) => /^\d+(ms|s|m|h|d)$/.test(s) || !Number.isNaN(Date.parse(s)),
    "must be an ISO time (2026-11-28T09:00:00Z) or a duration before now (15m, 2h, 7d)",
  );

/** `:ns` */
export const NamespaceParamsSchema = z.object({ ns: token.describe("namespace") });
/** `:ns`, `:id` */
export const RunParamsSchema = z.object({ ns: token.describe("namespace"), id: runId.describe("run id") });

/** `GET runs`: filters and paging. */
export const ListRunsQuerySchema = z
  .object({
    status: listParam(status).optional().describe("only runs in these statuses (repeat, or comma-separated)"),
    task: taskName.optional().describe("only runs of this task or workflow (or having a task of this name)"),
    since: timeParam.optional().describe("created at or after: ISO time, or a duration before now (1h)"),
    until: timeParam.optional().describe("created before: ISO time, or a duration before now"),
    // A value may hold commas (and "="): one pair per parameter, split at its first "=".
    metadata: listParam(z.string().regex(/^[^=]+=.*$/, "must be key=value"), { commas: false })
      .optional()
      .describe("key=value pairs the run's additionalMetadata must all have (repeat the parameter)"),
    limit: z.coerce.number().int().min(1).max(500).default(50).describe("runs per page, newest first"),
    cursor: z
      .string()
      .max(400)
      .optional()
      .describe("nextCursor of the previous page: the page after it (pages stay stable as new runs arrive)"),
    counts: z
      .enum(["true", "false"])
      .optional()
      .describe("true: also count the runs matching the other filters per status (reads the whole range)"),
  })
  .strict();
export type ListRunsQuery = z.output<typeof ListRunsQuerySchema>;

/** One task-run in a list: enough to draw it without the run's input and outputs. */
export const TaskRunSummarySchema = z.object({
  taskRunId: z.string(),
  taskName: z.string(),
  ref: z.string().optional(),
  status,
  attempt: z.number().int(),
  queuedAt: z.string().optional(),
  startedAt: z.string().optional(),
  finishedAt: z.string().optional(),
  workerId: z.string().optional(),
  workerName: z.string().optional(),
  /** Why the queued attempt waits, as the scheduler recorded it. */
  waiting: z.object({ reason: z.string(), detail: z.string(), since: z.string() }).optional(),
  /** A failed attempt waiting out its retry backoff. */
  retrying: z.boolean().optional(),
});

/** A run in a list: its state without input, outputs and stacks. `GET runs/:id` has everything. */
export const RunSummarySchema = z.object({
  runId: z.string(),
  workflowName: z.string(),
  status,
  priority: z.number().int(),
  trigger: z.object({ kind: z.string() }),
  additionalMetadata: z.record(z.string(), z.string()),
  createdAt: z.string(),
  scheduledAt: z.string().optional(),
  startedAt: z.string().optional(),
  finishedAt: z.string().optional(),
  error: z.object({ name: z.string(), message: z.string() }).optional(),
  replays: z.number().int().optional(),
  eventCount: z.number().int(),
  tasks: z.array(TaskRunSummarySchema),
});
export type RunSummary = z.output<typeof RunSummarySchema>;
export type TaskRunSummary = z.output<typeof TaskRunSummarySchema>;

/** `GET runs` */
export const RunsPageSchema = z.object({
  runs: z.array(RunSummarySchema),
  /** Pass as `cursor` for the next page; null on the last page. */
  nextCursor: z.string().nullable(),
  /** With `counts=true`: runs per status matching the other filters. */
  counts: z.record(z.string(), z.number().int()).optional(),
});
export type RunsPage = z.output<typeof RunsPageSchema>;

/** A run's full state (`runs.get`): the projection with the log's tail folded on it. */
export const RunStateSchema = z
  .object({
    v: z.literal(1),
    runId: z.string(),
    workflowName: z.string(),
    status,
    input: z.record(z.string(), z.unknown()),
    additionalMetadata: z.record(z.string(), z.string()),
    priority: z.number().int(),
    trigger: z.object({ kind: z.string() }).loose(),
    tasks: z.array(TaskRunSummarySchema.omit({ retrying: true, waiting: true }).loose()),
    output: z.record(z.string(), z.unknown()).optional(),
    error: RecordedErrorSchema.optional(),
    createdAt: z.string(),
    scheduledAt: z.string().optional(),
    startedAt: z.string().optional(),
    finishedAt: z.string().optional(),
    traceparent: z.string().optional(),
    lastSeq: z.number().int(),
    eventCount: z.number().int(),
  })
  .loose();

/** `GET runs/:id/history`: every message of the run's history, in order. */
export const RunHistorySchema = z.object({
  runId: z.string(),
  events: z.array(
    z.object({
      seq: z.number().int(),
      time: z.string(),
      /** The event, when the model accepts it. */
      event: TaskjetEventSchema.optional(),
      /** Why the model refuses the message, when it does (it stays in the log). */
      rejected: z.string().optional(),
    }),
  ),
});

/** `GET runs/:id/logs` */
export const RunLogsSchema = z.object({ runId: z.string(), lines: z.array(TaskLogLineSchema) });

/** `POST runs`: trigger a task or workflow by name (the SDK's `runNoWait` / `schedule`, with its validation). */
export const TriggerRunBodySchema = z
  .object({
    task: taskName.describe("the task or workflow to run"),
    input: z.record(z.string(), z.unknown()).default({}).describe("a JSON object, at most 1 MiB"),
    // As the SDK's schedule() and the CLI's --at read it: the same time gets the same answer at every edge.
    scheduleAt: z
      .string()
      .refine((s) => parseIsoTime(s) !== undefined, {
        message: "must be an ISO 8601 date-time such as 2026-12-01T09:00:00Z",
      })
      .optional()
      .describe(
        "start then instead of now (SCHEDULED until): ISO 8601; a date alone is its midnight UTC, a time without a zone the engine's local time",
      ),
    ...RunOptionsSchema.shape,
  })
  .strict();
export type TriggerRunBody = z.output<typeof TriggerRunBodySchema>;

/** `POST runs` answer: 201 for a new run, 200 when the idempotency key or `runId` named an earlier run of the task. */
export const TriggeredRunSchema = z.object({ runId: z.string(), existing: z.boolean() });

/** `POST runs/:id/cancel` */
export const CancelRunBodySchema = z
  .object({ reason: z.string().min(1).max(200).optional() })
  .strict()
  .default({});
export const CancelledRunSchema = z.object({ runId: z.string(), cancelled: z.literal(true) });

/** `POST runs/:id/replay` */
export const ReplayRunBodySchema = z
  .object({
    from: z.string().min(1).max(128).optional().describe("workflows: re-run this task and its descendants only"),
    reason: z.string().min(1).max(200).optional(),
  })
  .strict()
  .default({});
export const ReplayedRunSchema = z.object({ runId: z.string(), replayed: z.literal(true) });

/** `GET workers` */
export const WorkersSchema = z.object({
  workers: z.array(
    WorkerRegistrationSchema.extend({
      /** Milliseconds since its last heartbeat, at the answer's time. */
      heartbeatAgeMs: z.number().int(),
    }),
  ),
});

/** One task's queue. */
export const QueueSchema = z.object({
  taskName: z.string(),
  /** Attempts waiting for a slot (rate- or concurrency-limited ones included). */
  queued: z.number().int(),
  oldestQueuedAt: z.string().nullable(),
  oldestAgeMs: z.number().int().nullable(),
  running: z.number().int(),
  /** Failed attempts waiting out their retry backoff (not queued yet). */
  retrying: z.number().int(),
  /** Why the oldest queued attempt waits, when the engine recorded it. */
  waiting: z.object({ reason: z.string(), detail: z.string(), since: z.string() }).nullable(),
  /** Live workers that registered the task. */
  workers: z.number().int(),
});
export type Queue = z.output<typeof QueueSchema>;

/** A concurrency group of the scheduler (one rule's value). */
export const ConcurrencyGroupSchema = z.object({
  group: z.string(),
  maxRuns: z.number().int(),
  /** Attempts placed or running in it. */
  running: z.number().int(),
  /** Attempts queued or running that count for its strategy. */
  members: z.number().int(),
  /** Lanes parked until it has room. */
  waitingLanes: z.number().int(),
});

/** A rate-limit key of the scheduler. */
export const RateLimitStateSchema = z.object({
  key: z.string(),
  limit: z.number(),
  windowMs: z.number().int(),
  /** Units admitted within the current window, and units placed whose tasks have not started. */
  used: z.number(),
  reserved: z.number(),
  /** Paused by `ctx.rateLimited()` until then. */
  pausedUntil: z.string().nullable(),
});

/**
 * `GET queues`: per task. `source: "leader"`: asked of the engine replica leading the namespace (its scheduler's
 * memory, exact and live, with concurrency groups and rate limits); `"projection"`: no leader answered, computed from
 * `TJ_RUNS`, which shows a queued or running run once it has been so for about a second.
 */
export const QueuesSchema = z.object({
  source: z.enum(["leader", "projection"]),
  at: z.string(),
  queues: z.array(QueueSchema),
  concurrency: z.array(ConcurrencyGroupSchema),
  rateLimits: z.array(RateLimitStateSchema),
});
export type Queues = z.output<typeof QueuesSchema>;

/** `GET queues`, `GET workers` */
export const QueuesQuerySchema = z.object({ task: taskName.optional().describe("only this task's queue") }).strict();
export const NoQuerySchema = z.object({}).strict();

/** `GET crons` */
export const CronsQuerySchema = z.object({ task: taskName.optional().describe("only crons of this task") }).strict();
export const CronsSchema = z.object({ crons: z.array(CronDefinitionSchema) });

/** `GET scheduled` */
export const ScheduledQuerySchema = z
  .object({
    task: taskName.optional().describe("only runs of this task"),
    limit: z.coerce.number().int().min(1).max(1000).default(100),
  })
  .strict();
export const ScheduledSchema = z.object({ runs: z.array(RunSummarySchema) });

/** Every error answer: a stable `code`, a message naming the field and value, and the issues of a bad request. */
export const ApiErrorSchema = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    issues: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  }),
});
export type ApiError = z.output<typeof ApiErrorSchema>;
