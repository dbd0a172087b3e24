export {
  AlreadyExistsError,
  AppendConflictError,
  AttemptNotCurrentError,
  ClosedError,
  type ConcurrencyRule,
  ConnectionError,
  type CronDefinition,
  DebugReadOnlyError,
  type DesiredLabel,
  ErrorCodes,
  HISTORY_WARN_EVENTS,
  LimitStrategies,
  type LimitStrategy,
  NatsAccess,
  NatsAuthenticationError,
  type NatsAuthOptions,
  type NatsTlsOptions,
  NonDeterminismError,
  NonRetryableError,
  NotProvisionedError,
  PayloadTooLargeError,
  PermissionDeniedError,
  type RateLimitDuration,
  RateLimitedError,
  type RecordedError,
  RUN_STATUS_VALUES,
  RunCancelledError,
  type RunEnd,
  RunIdTakenError,
  RunNotFoundError,
  RunNotScheduledError,
  type RunOptions,
  RunRejectedError,
  type RunState,
  type RunStatus,
  RunStatuses,
  type StickyMode,
  silentLogger,
  TaskjetError,
  type TaskjetEvent,
  type TaskLogLine,
  type TaskRateLimit,
  TaskRunError,
  type TaskRunState,
  UnavailableError,
  ValidationError,
  WaitTimeoutError,
  type WorkerRegistration,
} from "@taskjet/schemas";
export type { ApiTokenInfo, ApiTokensClient } from "./api-tokens.js";
/** @internal the engine retries its requests through a failover on the same errors */
export { isTransient } from "./append.js";
export type { StreamChunk } from "./chunks.js";
export { Taskjet } from "./client.js";
export { type ClientOptions, DEFAULT_NATS_URL } from "./config.js";
/** @internal The engine connects with the same options and errors. */
export { connectionError, inboxPrefixOf, isStreamNotFound, natsAccessOptions } from "./connection.js";
export type { CronOptions, CronSpec, CronsClient } from "./crons.js";
export {
  type DebugEffects,
  type DebugHooks,
  type DebugOutcome,
  type DebugTask,
  enterDebugMode,
  inDebugMode,
} from "./debug.js";
export type { EventsClient, ListedEvent, PushOptions } from "./events.js";
export type { HistoryEntry } from "./history.js";
export type { LogsClient } from "./logs.js";
/** @internal the engine publishes its appends and projection writes through it too */
export { StreamPublisher } from "./publisher.js";
export type { RateLimitSpec, RateLimitsClient } from "./rate-limits.js";
export { RunRef } from "./run-ref.js";
export type { CancelRunsOptions, ListRunsOptions, ReplayRunsOptions, RunFilters, RunsClient } from "./runs.js";
export type { ScheduledClient } from "./scheduled.js";
export type { BulkItem, BulkOptions, JsonObject, Output, TaskDeclaration, TaskFn, TaskOptions } from "./task.js";
export type { TraceContext, TraceHeaders } from "./tracing.js";
export type { WebhookInfo, WebhookSpec, WebhooksClient } from "./webhooks.js";
export type { Context, TaskLogger } from "./worker/context.js";
export { Worker, type WorkerOptions } from "./worker/worker.js";
export type { WorkersClient } from "./workers.js";
export type {
  TaskDefaults,
  WorkflowDeclaration,
  WorkflowOptions,
  WorkflowTask,
  WorkflowTaskOptions,
} from "./workflow.js";
