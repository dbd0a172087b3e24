import {
  checkToken,
  DEFAULT_MAX_PAYLOAD_BYTES,
  describeValue,
  type Logger,
  NatsAccess,
  type NatsAuthOptions,
  type NatsTlsOptions,
  natsOptionNames,
  resolveNatsAccess,
  silentLogger,
  ValidationError,
} from "@taskjet/schemas";
import { pino } from "pino";

/** Default NATS URL when neither an option nor `TASKJET_NATS_URL` names one. */
export const DEFAULT_NATS_URL = "nats://127.0.0.1:4222";

/** Options of `Taskjet.connect`. */
export interface ClientOptions {
  /** NATS server URL or URLs. @default env TASKJET_NATS_URL (comma-separated), then "nats://127.0.0.1:4222" */
  servers?: string | string[];
  /** Namespace token. @default env TASKJET_NAMESPACE, then "default" */
  namespace?: string;
  /**
   * Any logger with pino's shape; `silentLogger` for none. @default pino to stderr at `warn` (a heartbeat that failed,
   * a result that could not be recorded), or at the level env TASKJET_LOG_LEVEL names
   */
  logger?: Logger;
  /** Largest input or output, in bytes of JSON. @default 1 MiB */
  maxPayloadBytes?: number;
  /** Connection name shown by the server. @default "taskjet-client" */
  name?: string;
  /**
   * NATS authentication, one way: `{ user, password }`, `{ token }`, `{ nkeyFile }` (an nkey seed file) or
   * `{ credsFile }` (a `.creds` file). Credentials in a server URL (`nats://user:pass@host`) count as one way too.
   * Given here, it replaces the environment's method. A resolved `NatsAccess` (what the CLI passes) is used as is.
   * @default env TASKJET_NATS_USER + TASKJET_NATS_PASSWORD, TASKJET_NATS_TOKEN, TASKJET_NATS_NKEY or TASKJET_NATS_CREDS
   * @example Taskjet.connect({ servers: "tls://nats.internal:4222", auth: { credsFile: "/etc/taskjet/worker.creds" } })
   */
  auth?: NatsAuthOptions | NatsAccess;
  /**
   * TLS: `{ caFile, certFile, keyFile }` (PEM files). Any of them, or a `tls://` URL, makes TLS required.
   * @default env TASKJET_NATS_TLS_CA, TASKJET_NATS_TLS_CERT, TASKJET_NATS_TLS_KEY
   */
  tls?: NatsTlsOptions;
  /**
   * Where replies to this connection's requests go. Per namespace, so the permissions template can keep one
   * namespace's credentials from reading another's replies.
   * @default "_INBOX.<namespace>"
   */
  inboxPrefix?: string;
}

/** Resolved client settings. */
export interface ClientConfig {
  /** Without credentials: safe to print. */
  servers: string[];
  /** Authentication and TLS, resolved (files read). */
  access: NatsAccess;
  inboxPrefix: string;
  namespace: string;
  logger: Logger;
  maxPayloadBytes: number;
  name: string;
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

/**
 * What a worker or client says when no logger was given: its warnings, on stderr (a worker that cannot heartbeat or
 * record a result should not fail silently), one JSON line each.
 * @throws ValidationError for a level pino does not know
 */
function defaultLogger(level: string | undefined): Logger {
  if (level !== undefined && !LOG_LEVELS.includes(level)) {
    throw new ValidationError([
      { path: "TASKJET_LOG_LEVEL", message: `must be one of ${LOG_LEVELS.join(", ")}, got ${describeValue(level)}` },
    ]);
  }
  if (level === "silent") return silentLogger;
  return pino({ level: level ?? "warn", base: { name: "taskjet" } }, pino.destination({ dest: 2, sync: true }));
}

/** Options < environment < defaults. The only place the SDK reads `process.env`. */
export function resolveClientConfig(options: ClientOptions = {}, env: NodeJS.ProcessEnv = process.env): ClientConfig {
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    const hint = typeof options === "string" ? ` (servers go in { servers: ${describeValue(options)} })` : "";
    throw new ValidationError([
      { path: "options", message: `must be an object, got ${describeValue(options)}${hint}` },
    ]);
  }
  const rawServers: unknown = options.servers ?? env.TASKJET_NATS_URL ?? DEFAULT_NATS_URL;
  if (typeof rawServers !== "string" && !Array.isArray(rawServers)) {
    throw new ValidationError([
      { path: "servers", message: `must be a URL or a list of URLs, got ${describeValue(rawServers)}` },
    ]);
  }
  const servers = (Array.isArray(rawServers) ? rawServers : rawServers.split(","))
    .map((s) => (typeof s === "string" ? s.trim() : s))
    .filter((s) => s !== "");
  if (servers.length === 0 || servers.some((s) => typeof s !== "string")) {
    throw new ValidationError([
      { path: "servers", message: `must be a URL or a list of URLs, got ${describeValue(rawServers)}` },
    ]);
  }
  const namespace = checkToken(options.namespace ?? env.TASKJET_NAMESPACE ?? "default", "namespace");
  const maxPayloadBytes = options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
  if (!Number.isInteger(maxPayloadBytes) || maxPayloadBytes <= 0) {
    throw new ValidationError([
      { path: "maxPayloadBytes", message: `must be a positive integer, got ${describeValue(maxPayloadBytes)}` },
    ]);
  }
  const access =
    options.auth instanceof NatsAccess
      ? options.auth
      : resolveNatsAccess(
          servers,
          {
            auth: options.auth,
            tls: options.tls,
            names: natsOptionNames("auth.", "tls."),
          },
          env,
        );
  const inboxPrefix = options.inboxPrefix ?? `_INBOX.${namespace}`;
  if (!/^[^\s*>]+$/.test(inboxPrefix) || inboxPrefix.startsWith(".") || inboxPrefix.endsWith(".")) {
    throw new ValidationError([
      { path: "inboxPrefix", message: `must be a subject without wildcards, got ${describeValue(inboxPrefix)}` },
    ]);
  }
  return {
    servers: access.servers,
    access,
    inboxPrefix,
    namespace,
    logger: options.logger ?? defaultLogger(env.TASKJET_LOG_LEVEL),
    maxPayloadBytes,
    name: options.name ?? "taskjet-client",
  };
}
