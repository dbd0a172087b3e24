import { z } from "zod";
import { JsonObjectSchema, RetryPolicySchema } from "./events.js";
import { FlowOptionsSchema, WorkerLabelsSchema } from "./flow.js";
import { EventTriggerSchema } from "./pushed-events.js";

/**
 * Messages that are not history events: assignments (engine → worker), worker registrations and task definitions.
 */

const token = z.string().regex(/^[A-Za-z0-9_-]{1,128}$/);

/**
 * Everything a worker needs to run one attempt, published on the worker's assignment subject: alone, or, to a worker
 * whose registration says `assignmentBatches`, in a JSON array with the others placed there in the same turn.
 */
export const AssignmentSchema = z.object({
  v: z.literal(1),
  runId: token,
  taskRunId: token,
  taskName: z.string(),
  attempt: z.number().int().min(0),
  input: JsonObjectSchema,
  additionalMetadata: z.record(z.string(), z.string()),
  /** The run subject's last sequence the engine saw: the worker's first append expects it (CAS). */
  expectedSeq: z.number().int().min(1),
  assignedAt: z.iso.datetime(),
  /**
   * The run's priority (absent: 1). A worker starts what waits on it for a slot highest priority first: the engine
   * places a short task's attempts on busy workers as they come, a run of priority 3 maybe after ones of priority 1.
   */
  priority: z.number().int().min(1).max(3).optional(),
  /**
   * Which retry this attempt is: `attempt` less the attempts that did not count against the retries (a durable task's
   * wake-ups, upstream rate limits, a replay's earlier attempts). Absent: `attempt`.
   */
  retry: z.number().int().min(0).optional(),
  /** Workflows: the task's name within its workflow. */
  ref: z.string().optional(),
  /** Workflows: the outputs of its parents, by ref. */
  parentOutputs: z.record(z.string(), JsonObjectSchema).optional(),
  /** Workflows, `onFailure` handlers: the errors of the tasks that failed, by ref. */
  taskErrors: z
    .record(z.string(), z.object({ name: z.string(), message: z.string(), stack: z.string().optional() }))
    .optional(),
  /** How many times a replay re-ran the task: a replayed parent's child runs are new ones. */
  replays: z.number().int().min(1).optional(),
  /** Durable tasks: the checkpoints recorded so far, replayed instead of repeated. */
  checkpoints: z
    .array(
      z.object({
        index: z.number(),
        kind: z.enum(["now", "sleep", "event"]),
        value: z.string(),
        done: z.boolean(),
        result: z.object({ id: z.string(), key: z.string(), payload: z.record(z.string(), z.unknown()) }).optional(),
      }),
    )
    .optional(),
  /** Why the run exists (`RunCreated.trigger`): the pushed event, the cron tick, ... */
  trigger: z.object({ kind: z.string() }).loose().optional(),
  /** W3C trace context of the trigger, when it had one: the task's spans join the caller's trace. */
  traceparent: z.string().max(256).optional(),
  tracestate: z.string().max(512).optional(),
  /**
   * Sent without its input, parents' outputs, errors and checkpoints, which together were larger than a NATS message
   * (`slimAssignment`): the worker reads the run from its history for them. Only to workers whose registration says
   * `slimAssignments`.
   */
  slim: z.literal(true).optional(),
});
export type Assignment = z.output<typeof AssignmentSchema>;

/** A live worker, refreshed every heartbeat in `TJ_WORKERS`. */
export const WorkerRegistrationSchema = z.object({
  v: z.literal(1),
  workerId: token,
  name: z.string().min(1),
  tasks: z.array(z.string()),
  slots: z.number().int().min(1),
  /** Slots for durable tasks, apart from `slots` (a sleeping durable task holds none). */
  durableSlots: z.number().int().min(0).default(0),
  labels: WorkerLabelsSchema.default({}),
  sdkVersion: z.string(),
  hostname: z.string(),
  pid: z.number().int(),
  startedAt: z.iso.datetime(),
  heartbeatAt: z.iso.datetime(),
  /** Stopping: finishing what it runs, taking nothing new. */
  draining: z.boolean().default(false),
  /**
   * Load as of `heartbeatAt`, for people (`taskjet workers list`); the scheduler keeps its own count. Defaults let
   * registrations of workers older than these fields parse.
   */
  usedSlots: z.number().int().min(0).default(0),
  usedDurableSlots: z.number().int().min(0).default(0),
  /** Attempts running, by task name, slot released or not. */
  runningTasks: z.record(z.string(), z.number().int().min(1)).default({}),
  /** Takes a JSON array of assignments in one message (older workers, without the field, one per message). */
  assignmentBatches: z.boolean().default(false),
  /** Takes an assignment too large for a message as `slim`, reading the rest from the run's history. */
  slimAssignments: z.boolean().default(false),
});
export type WorkerRegistration = z.output<typeof WorkerRegistrationSchema>;

/** A task definition as a worker registered it in `TJ_DEFS`. */
export const TaskDefinitionSchema = z.object({
  v: z.literal(1),
  name: z.string(),
  policy: RetryPolicySchema.optional(),
  /** Concurrency, rate limits, routing and slot cost: applied by the scheduler to every run of the task. */
  flow: FlowOptionsSchema.optional(),
  /** Runs started by events and crons: a key (CEL over input and metadata) makes one run per ttl. */
  idempotency: z
    .object({ expression: z.string().min(1).max(1000).optional(), ttlMs: z.number().int().positive().optional() })
    .strict()
    .optional(),
  /** A workflow (the definition is named after it): its tasks, for the runs the engine starts (crons, events). */
  workflow: z
    .object({
      tasks: z
        .array(
          z.object({
            ref: z.string(),
            taskName: z.string(),
            parents: z.array(z.string()).optional(),
            role: z.enum(["onFailure", "onSuccess"]).optional(),
            scheduleTimeoutMs: z.number().int().positive().optional(),
          }),
        )
        .min(1),
    })
    .optional(),
  /**
   * What a run of it gets unless its trigger says otherwise, for the runs made from the definition (by name, by events
   * and crons): the task's `defaultPriority`, and how long an attempt may wait for a worker (`scheduleTimeout`).
   */
  defaultPriority: z.number().int().min(1).max(3).optional(),
  scheduleTimeoutMs: z.number().int().positive().optional(),
  /** Pushed events that start a run of the task. */
  onEvents: z.array(EventTriggerSchema).max(32).optional(),
  registeredBy: z.string(),
  registeredAt: z.iso.datetime(),
});
export type TaskDefinition = z.output<typeof TaskDefinitionSchema>;

/** Engine → worker control message (core NATS, at most once; CAS fencing covers a worker that misses it). */
export const ControlMessageSchema = z.object({
  v: z.literal(1),
  type: z.literal("cancel"),
  runId: token,
  taskRunId: token,
  attempt: z.number().int().min(0),
  reason: z.string(),
});
export type ControlMessage = z.output<typeof ControlMessageSchema>;

/**
 * Worker → engine: attempts whose slots this worker has just freed without recording an outcome that frees them (a
 * durable task gone to sleep, a result ignored as stale; core NATS, at most once). An
 * attempt that ends with a stored outcome is not named: the engine frees its slot as it folds that outcome, which
 * arrives about when this message would (one message per attempt at a steady rate, measured to cost more than it won).
 *
 * `returned`: attempts placed on this worker that it gives back unstarted (they waited too long for a slot behind
 * longer attempts, or the worker is stopping); the engine queues them again. Absent in messages of older workers.
 */
export const SlotsFreedSchema = z.object({
  v: z.literal(1),
  attempts: z.array(z.object({ taskRunId: token, attempt: z.number().int().min(0) })).max(100_000),
  returned: z
    .array(z.object({ runId: token, taskRunId: token, attempt: z.number().int().min(0) }))
    .max(100_000)
    .default([]),
});
export type SlotsFreed = z.output<typeof SlotsFreedSchema>;

/** One `ctx.logger` line of a task, stored per run in `TJ_LOGS` (`tj.<ns>.log.<runId>`). */
export const TaskLogLineSchema = z.object({
  v: z.literal(1),
  at: z.iso.datetime(),
  level: z.enum(["debug", "info", "warn", "error"]),
  message: z.string().max(10_000),
  fields: z.record(z.string(), z.unknown()).optional(),
  taskRunId: token,
  attempt: z.number().int().min(0),
  workerId: token,
});
export type TaskLogLine = z.output<typeof TaskLogLineSchema>;

/**
 * Headers of one stream chunk (`ctx.putStream`) in `TJ_LOGS` (`tj.<ns>.chunk.<runId>`). The payload is the chunk's
 * bytes as the task gave them, so binary chunks need no encoding; `version` is `"1"`.
 */
export const ChunkHeaders = {
  version: "Tj-Chunk-V",
  taskRunId: "Tj-Task-Run-Id",
  attempt: "Tj-Attempt",
  /** The chunk's position among its attempt's chunks, from 0. */
  index: "Tj-Index",
} as const;
export type ChunkHeaders = (typeof ChunkHeaders)[keyof typeof ChunkHeaders];
