import {
  checkToken,
  NatsAccess,
  NatsAuthOptionsSchema,
  NatsTlsOptionsSchema,
  natsOptionNames,
  parseWith,
  resolveNatsAccess,
  ValidationError,
} from "@taskjet/schemas";
import { z } from "zod";

/** Default NATS URL when neither a flag nor `TASKJET_NATS_URL` names one. */
export const DEFAULT_NATS_URL = "nats://127.0.0.1:4222";

const positiveMs = z.number().int().positive();

/** The engine's resolved configuration. */
export const EngineConfigSchema = z.object({
  /** NATS server URLs. @default ["nats://127.0.0.1:4222"] */
  servers: z.array(z.string().min(1)).min(1).default([DEFAULT_NATS_URL]),
  /** Namespaces this engine serves. @default ["default"] */
  namespaces: z.array(z.string()).min(1).default(["default"]),
  /** Replication of the streams and buckets the engine creates (1 for dev, 3 for clusters). @default 1 */
  replicas: z.number().int().min(1).max(5).default(1),
  /** How long history is kept. @default 30 days */
  historyMaxAgeMs: positiveMs.default(30 * 24 * 3600_000),
  /** How long pushed events and task logs are kept. @default 7 days */
  eventsMaxAgeMs: positiveMs.default(7 * 24 * 3600_000),
  /** A worker silent this long is gone (the workers bucket TTL). @default 15 s */
  workerTtlMs: positiveMs.default(15_000),
  /** Projection writes of finished runs are coalesced over this window. @default 25 ms */
  projectionFlushMs: z.number().int().min(0).default(25),
  /** Unfinished runs are written to the projection only after this long unwritten. @default 1000 ms */
  projectionActiveDelayMs: z.number().int().min(0).default(1000),
  /**
   * `projectionActiveDelayMs` for a run that only waits for a slot: until then `TJ_RUNS` (the REST API's and the
   * dashboard's lists) does not show it; `runs.get` and `runs.list` do (they fold the log after the projector's
   * checkpoint). A write per waiting run would cost the most when a backlog has the engine furthest behind; with this
   * delay, a backlog that drains within it costs one write per run, not two. @default 10000 ms
   */
  projectionQueuedDelayMs: z.number().int().min(0).default(10_000),
  /**
   * Unfinished runs whose state the leader keeps in memory. Beyond it, runs that only wait for a slot go cold: their
   * state stays in `TJ_RUNS` (in pages, a flush's worth to a message) and is read back when one is placed, cancelled
   * or timed out (one request: such a run's history is mostly its `RunCreated`), and the leader keeps only a
   * compact queue record and schedule deadline per run (~300 bytes instead of ~900). The oldest queued runs, placed
   * first, stay in memory: the limit only has to outnumber what the workers take while a batch of cold ones is read.
   * @default 20000
   */
  hotRunLimit: z.number().int().min(0).default(20_000),
  /**
   * An assignment (core NATS) whose attempt is still placed and not started this long after it was sent is sent
   * again: it was lost with a dropped connection. Checked once per period, so a copy goes out after one to two.
   * @default 10 s
   */
  assignmentResendMs: positiveMs.default(10_000),
  /** How long a task may wait for a worker when neither its run nor its task says. @default 5 min */
  defaultScheduleTimeoutMs: positiveMs.default(5 * 60_000),
  /**
   * Where the HTTP server (webhooks) listens: `host:port`, or `off`. Unset: 127.0.0.1:8080, or a free port when that
   * is taken. @default unset
   */
  http: z
    .union([
      z.literal("off"),
      z
        .string()
        .regex(/^(\[[0-9A-Fa-f:.]+\]|[^:\s[\]]*):\d{1,5}$/, "must be host:port ([::1]:port for IPv6) or off")
        // Said once: a value that is no host:port has its own message above.
        .refine(
          (v) => !/:\d+$/.test(v) || Number(v.slice(v.lastIndexOf(":") + 1)) <= 65535,
          "must have a port of at most 65535",
        ),
    ])
    .optional(),
  /** pino level. @default "info" */
  logLevel: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  /**
   * NATS authentication, one way: `{ user, password }`, `{ token }`, `{ nkeyFile }` or `{ credsFile }` (or a resolved
   * `NatsAccess`). @default env TASKJET_NATS_USER + TASKJET_NATS_PASSWORD, TASKJET_NATS_TOKEN, TASKJET_NATS_NKEY or
   * TASKJET_NATS_CREDS
   */
  auth: z.union([z.instanceof(NatsAccess), NatsAuthOptionsSchema]).optional(),
  /** TLS PEM files `{ caFile, certFile, keyFile }`. @default env TASKJET_NATS_TLS_CA, _CERT, _KEY */
  tls: NatsTlsOptionsSchema.optional(),
});
export type EngineConfig = z.output<typeof EngineConfigSchema> & {
  /** Authentication and TLS, resolved (files read); `servers` are the URLs without credentials. */
  access: NatsAccess;
};
export type EngineConfigInput = z.input<typeof EngineConfigSchema>;

/** Splits `a,b` server lists. */
export function splitServers(value: string): string[] {
  return value
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** The variables `resolveEngineConfig` reads, by the option each sets. */
const ENV_NAMES = {
  servers: "TASKJET_NATS_URL",
  namespaces: "TASKJET_NAMESPACE",
  replicas: "TASKJET_REPLICAS",
  http: "TASKJET_HTTP",
  logLevel: "TASKJET_LOG_LEVEL",
} as const;

/**
 * Resolves the configuration: defaults < environment (`TASKJET_NATS_URL`, `TASKJET_NAMESPACE`, `TASKJET_REPLICAS`,
 * `TASKJET_HTTP`, `TASKJET_LOG_LEVEL`, the `TASKJET_NATS_*` authentication and TLS variables) < explicit options. The only place the engine reads `process.env`.
 * @throws ValidationError listing `path: message` per problem
 */
export function resolveEngineConfig(
  options: EngineConfigInput = {},
  env: NodeJS.ProcessEnv = process.env,
): EngineConfig {
  const fromEnv: EngineConfigInput = {};
  if (env.TASKJET_NATS_URL) fromEnv.servers = splitServers(env.TASKJET_NATS_URL);
  if (env.TASKJET_NAMESPACE) fromEnv.namespaces = splitServers(env.TASKJET_NAMESPACE);
  // Digits only, else the string itself: the error then shows what was set ("abc", not NaN).
  if (env.TASKJET_REPLICAS) {
    fromEnv.replicas = /^\d+$/.test(env.TASKJET_REPLICAS)
      ? Number(env.TASKJET_REPLICAS)
      : (env.TASKJET_REPLICAS as never);
  }
  if (env.TASKJET_HTTP) fromEnv.http = env.TASKJET_HTTP;
  if (env.TASKJET_LOG_LEVEL) fromEnv.logLevel = env.TASKJET_LOG_LEVEL as EngineConfig["logLevel"];
  const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
  // A bad value named as it was set: the variable's name when the environment gave it.
  const named = (err: unknown): never => {
    if (!(err instanceof ValidationError)) throw err;
    throw new ValidationError(
      err.issues.map((issue) => {
        const option = /^[a-zA-Z]+/.exec(issue.path)?.[0] as keyof typeof ENV_NAMES | undefined;
        const variable = option && !(option in defined) && option in fromEnv ? ENV_NAMES[option] : undefined;
        return variable ? { ...issue, path: variable } : issue;
      }),
    );
  };
  let config: z.output<typeof EngineConfigSchema>;
  try {
    config = parseWith(EngineConfigSchema, { ...fromEnv, ...defined });
    for (const [i, ns] of config.namespaces.entries()) checkToken(ns, `namespaces[${i}]`);
  } catch (err) {
    return named(err);
  }
  const access =
    config.auth instanceof NatsAccess
      ? config.auth
      : resolveNatsAccess(
          config.servers,
          { auth: config.auth, tls: config.tls, names: natsOptionNames("auth.", "tls.") },
          env,
        );
  return { ...config, servers: access.servers, access };
}
