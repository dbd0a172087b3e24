import { checkToken, DEFAULT_MAX_PAYLOAD_BYTES, type Logger, silentLogger, ValidationError } from "@taskjet/schemas";

/** Default NATS URL when neither an option nor `TASKJET_NATS_URL` names one. */
export const DEFAULT_NATS_URL = "nats://127.0.0.1:4222";

/** Options of `Taskjet.connect`. */
export interface ClientOptions {
  /** NATS server URL or URLs. @default env TASKJET_NATS_URL (comma-separated), then "nats://127.0.0.1:4222" */
  servers?: string | string[];
  /** Namespace token. @default env TASKJET_NAMESPACE, then "default" */
  namespace?: string;
  /** Any logger with pino's shape. @default silent */
  logger?: Logger;
  /** Largest input or output, in bytes of JSON. @default 1 MiB */
  maxPayloadBytes?: number;
  /** Connection name shown by the server. @default "taskjet-client" */
  name?: string;
}

/** Resolved client settings. */
export interface ClientConfig {
  servers: string[];
  namespace: string;
  logger: Logger;
  maxPayloadBytes: number;
  name: string;
}

/** Options < environment < defaults. The only place the SDK reads `process.env`. */
export function resolveClientConfig(options: ClientOptions = {}, env: NodeJS.ProcessEnv = process.env): ClientConfig {
  const rawServers = options.servers ?? env.TASKJET_NATS_URL ?? DEFAULT_NATS_URL;
  const servers = (Array.isArray(rawServers) ? rawServers : rawServers.split(","))
    .map((s) => (typeof s === "string" ? s.trim() : s))
    .filter((s) => s !== "");
  if (servers.length === 0 || servers.some((s) => typeof s !== "string")) {
    throw new ValidationError([
      { path: "servers", message: `must be a URL or a list of URLs, got ${JSON.stringify(rawServers)}` },
    ]);
  }
  const namespace = checkToken(options.namespace ?? env.TASKJET_NAMESPACE ?? "default", "namespace");
  const maxPayloadBytes = options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
  if (!Number.isInteger(maxPayloadBytes) || maxPayloadBytes <= 0) {
    throw new ValidationError([
      { path: "maxPayloadBytes", message: `must be a positive integer, got ${maxPayloadBytes}` },
    ]);
  }
  return {
    servers,
    namespace,
    logger: options.logger ?? silentLogger,
    maxPayloadBytes,
    name: options.name ?? "taskjet-client",
  };
}
