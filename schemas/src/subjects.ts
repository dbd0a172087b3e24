/**
 * Every stream, bucket, subject and consumer name Taskjet uses. Nothing else builds a name.
 *
 * `<ns>` is the namespace token. Streams and buckets are shared by all namespaces; subjects and keys carry the
 * namespace so permissions can be scoped per namespace.
 */

/** JetStream stream names. */
export const Streams = {
  /** Commands from clients (cancel, replay, admin): WorkQueue, consumed by the engine intake. */
  commands: "TJ_COMMANDS",
  /** The append-only event log: one subject per run. */
  history: "TJ_HISTORY",
  /** Pushed events (`events.push`, webhooks). */
  events: "TJ_EVENTS",
  /** Task log lines and stream chunks. */
  logs: "TJ_LOGS",
} as const;
export type Streams = (typeof Streams)[keyof typeof Streams];

/**
 * Streams earlier versions created and this one deletes: `TJ_ASSIGN` stored assignments (`tj.*.assign.*`), which now
 * go over core NATS; left in place it would keep a copy of every assignment.
 */
export const RetiredStreams = ["TJ_ASSIGN"] as const;

/** JetStream KV bucket names. */
export const Buckets = {
  /**
   * Projection of every run's state: key `<ns>.<runId>`, or, for runs that finished before their state was ever
   * written, pages of many under `<ns>.=<pageId>` (`keys.runPage`).
   */
  runs: "TJ_RUNS",
  /** Live workers, key `<ns>.<workerId>`; bucket TTL makes a silent worker's key vanish. */
  workers: "TJ_WORKERS",
  /** Task definitions registered by workers, key `<ns>.<taskName>`. */
  defs: "TJ_DEFS",
  /** Static rate limits (`tj.ratelimits.upsert`), key `<ns>.<key>`. */
  rateLimits: "TJ_RATELIMITS",
  /**
   * What each rate-limit key admitted within its window, as the namespace's leader last wrote it: key
   * `<ns>.<base64url of the rate-limit key>`. A leader taking over (a restart, a failover) counts on from it, so a
   * limit holds across leaders. Bucket TTL: a key idle for longer than the longest window (a day) vanishes.
   */
  rateUse: "TJ_RATEUSE",
  /** Webhook definitions, key `<ns>.<name>`. */
  webhooks: "TJ_WEBHOOKS",
  /** Cron schedules, key `<ns>.<cronName>`. */
  crons: "TJ_CRONS",
  /** Idempotency keys of triggers, key `<ns>.<hash of task and key>` → the run they made. */
  idempotency: "TJ_IDEMPOTENCY",
  /** Scheduler leases, key `<ns>`; bucket TTL. */
  leases: "TJ_LEASES",
  /** HTTP API bearer tokens, key `<ns>.<name>` → `{ name, hash, createdAt }` (SHA-256 only, never the token). */
  apiTokens: "TJ_API_TOKENS",
} as const;
export type Buckets = (typeof Buckets)[keyof typeof Buckets];

/** Subject patterns each stream captures, across all namespaces. */
export const StreamSubjects = {
  [Streams.commands]: ["tj.*.cmd.>"],
  [Streams.history]: ["tj.*.hist.*"],
  [Streams.events]: ["tj.*.event.>"],
  [Streams.logs]: ["tj.*.log.*", "tj.*.chunk.*"],
} as const satisfies Record<Streams, readonly string[]>;

/** Subjects within one namespace. */
export const subjects = {
  /** The history subject of one run: every event of the run, in order. */
  history: (ns: string, runId: string) => `tj.${ns}.hist.${runId}`,
  /** Every run's history in a namespace. */
  historyAll: (ns: string) => `tj.${ns}.hist.*`,
  /**
   * Where the engine announces how a run ended (core NATS, not captured: a `RunEnd`) once it folds the event that
   * ended it: `run()`, `result()` and `runs.onEnd` listen here, without a consumer.
   */
  ended: (ns: string, runId: string) => `tj.${ns}.ended.${runId}`,
  endedAll: (ns: string) => `tj.${ns}.ended.*`,
  /**
   * Engine → worker assignments (core NATS, not captured: an assignment is derived from the history, and one lost on
   * a reconnect is sent again by the engine).
   */
  assign: (ns: string, workerId: string) => `tj.${ns}.assign.${workerId}`,
  /** Commands of one kind. */
  command: (ns: string, kind: string) => `tj.${ns}.cmd.${kind}`,
  /** Engine → worker control messages (core NATS, not captured). */
  control: (ns: string, workerId: string) => `tj.${ns}.ctl.${workerId}`,
  /** Worker → engine: slots a worker freed (core NATS, `SlotsFreed`). */
  slotsFreed: (ns: string, workerId: string) => `tj.${ns}.free.${workerId}`,
  /** Every worker's freed slots in a namespace. */
  slotsFreedAll: (ns: string) => `tj.${ns}.free.*`,
  /** Pushed events of one key. */
  event: (ns: string, key: string) => `tj.${ns}.event.${key}`,
  /** Every pushed event of a namespace. */
  eventsAll: (ns: string) => `tj.${ns}.event.>`,
  /** Task log lines of one run. */
  log: (ns: string, runId: string) => `tj.${ns}.log.${runId}`,
  /** Stream chunks (`ctx.putStream`) of one run, every attempt's, in order. */
  chunk: (ns: string, runId: string) => `tj.${ns}.chunk.${runId}`,
} as const;

/**
 * The engine replica leading a namespace answers questions about its scheduler's memory here (core NATS
 * request/reply; `what`: `queues`), so any replica's REST API can give live queue state. Outside `tj.<ns>.>`, where
 * a namespace's own credentials could answer in the leader's place.
 */
export const engineInspect = (ns: string, what: "queues") => `tjengine.ns.${ns}.${what}`;

/** Engine replicas answer here while alive (core NATS): a replica gone answers "no responders" at once. */
export const enginePing = (engineId: string) => `tjengine.${engineId}.ping`;

/** KV keys within one namespace. */
export const keys = {
  run: (ns: string, runId: string) => `${ns}.${runId}`,
  /**
   * A page of runs' states (a JSON array), written once: one message for a flush's worth of short or queued runs
   * instead of one each. `=` cannot start a run id, so a page key is never a run's.
   */
  runPage: (ns: string, pageId: string) => `${ns}.=${pageId}`,
  /** Every run's key and every page of a namespace. */
  runsOf: (ns: string) => `${ns}.*`,
  /**
   * The history sequence up to which every event is reflected in `TJ_RUNS` (the engine's projector). Three tokens, so
   * run scans (`runsOf`) never see it.
   */
  projectorCheckpoint: (ns: string) => `${ns}._projector.checkpoint`,
  worker: (ns: string, workerId: string) => `${ns}.${workerId}`,
  workersOf: (ns: string) => `${ns}.*`,
  def: (ns: string, taskName: string) => `${ns}.${taskName}`,
  defsOf: (ns: string) => `${ns}.>`,
  rateLimit: (ns: string, key: string) => `${ns}.${key}`,
  rateLimitsOf: (ns: string) => `${ns}.>`,
  /** A rate-limit key's admissions: any string (a dynamic key's value), so encoded to a KV key's characters. */
  rateUse: (ns: string, key: string) => `${ns}.${Buffer.from(key).toString("base64url")}`,
  rateUsesOf: (ns: string) => `${ns}.*`,
  idempotency: (ns: string, digest: string) => `${ns}.${digest}`,
  cron: (ns: string, name: string) => `${ns}.${name}`,
  webhook: (ns: string, name: string) => `${ns}.${name}`,
  webhooksOf: (ns: string) => `${ns}.*`,
  apiToken: (ns: string, name: string) => `${ns}.${name}`,
  apiTokensOf: (ns: string) => `${ns}.*`,
  cronsOf: (ns: string) => `${ns}.>`,
  lease: (ns: string) => ns,
  /** An engine replica's presence in `TJ_LEASES` (renewed with its leases; a dot, so never a namespace's lease). */
  engine: (engineId: string) => `_engine.${engineId}`,
  engines: "_engine.*",
} as const;

/** Durable consumer names (no dots allowed). */
export const consumers = {
  /** The engine's event router of a namespace (shared by replicas). */
  eventRouter: (ns: string) => `tj_${ns}_event_router`,
} as const;

/** The run id is the last token of a history subject. */
export function runIdFromHistorySubject(subject: string): string {
  return subject.slice(subject.lastIndexOf(".") + 1);
}
