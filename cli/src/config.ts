import { accessSync, constants, existsSync, readFileSync } from "node:fs";
import { delimiter, dirname, join, resolve } from "node:path";
import {
  checkToken,
  type NatsAccess,
  NatsAuthEnv,
  type NatsAuthField,
  resolveNatsAccess,
  ValidationError,
} from "@taskjet/schemas";
import { DEFAULT_NATS_URL } from "@taskjet/sdk";
import { UsageError } from "./errors.js";

/**
 * Configuration of the CLI, resolved once at the edge: flags > environment > `.taskjet/dev.json` > defaults.
 * The only module of the CLI that reads `process.env`.
 */

/** Namespace when neither `--namespace` nor `TASKJET_NAMESPACE` names one. */
export const DEFAULT_NAMESPACE = "default";
/** Where `taskjet dev` keeps its state, relative to the working directory. @default ".taskjet" */
export const DEFAULT_DEV_DIR = ".taskjet";
/** The file `taskjet dev` writes in its directory while it runs. */
export const DEV_FILE = "dev.json";
/** The port `taskjet dev` asks for first. */
export const DEFAULT_DEV_PORT = 4222;
/** Where Debian's package installs nats-server (not on a normal user's PATH). */
export const DEBIAN_NATS_SERVER = "/usr/sbin/nats-server";

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** The environment variables the CLI reads. */
export interface CliEnv {
  /** NATS URL or comma-separated URLs. */
  TASKJET_NATS_URL?: string | undefined;
  TASKJET_NAMESPACE?: string | undefined;
  TASKJET_LOG_LEVEL?: string | undefined;
  /** Replicas of what `taskjet engine` creates (3 on a cluster). */
  TASKJET_REPLICAS?: string | undefined;
  /** The engine's HTTP address (`taskjet engine`, `taskjet dev`), read by the engine itself. */
  TASKJET_HTTP?: string | undefined;
  /** nats-server binary for `taskjet dev`, instead of looking on PATH and at /usr/sbin/nats-server. */
  TASKJET_NATS_SERVER_BIN?: string | undefined;
  /** NATS authentication and TLS (`NatsAuthEnv`): TASKJET_NATS_USER, _PASSWORD, _TOKEN, _NKEY, _CREDS, _TLS_*. */
  TASKJET_NATS_USER?: string | undefined;
  TASKJET_NATS_PASSWORD?: string | undefined;
  TASKJET_NATS_TOKEN?: string | undefined;
  TASKJET_NATS_NKEY?: string | undefined;
  TASKJET_NATS_CREDS?: string | undefined;
  TASKJET_NATS_TLS_CA?: string | undefined;
  TASKJET_NATS_TLS_CERT?: string | undefined;
  TASKJET_NATS_TLS_KEY?: string | undefined;
  PATH?: string | undefined;
  /** Colour (output.ts `useColor`): NO_COLOR (no-color.org), FORCE_COLOR (as in Node), TERM=dumb. */
  NO_COLOR?: string | undefined;
  FORCE_COLOR?: string | undefined;
  TERM?: string | undefined;
}

/** Picks the variables the CLI uses out of the process environment. */
export function loadEnv(env: NodeJS.ProcessEnv = process.env): CliEnv {
  return {
    TASKJET_NATS_URL: env.TASKJET_NATS_URL,
    TASKJET_NAMESPACE: env.TASKJET_NAMESPACE,
    TASKJET_LOG_LEVEL: env.TASKJET_LOG_LEVEL,
    TASKJET_REPLICAS: env.TASKJET_REPLICAS,
    TASKJET_HTTP: env.TASKJET_HTTP,
    TASKJET_NATS_SERVER_BIN: env.TASKJET_NATS_SERVER_BIN,
    ...Object.fromEntries(Object.values(NatsAuthEnv).map((name) => [name, env[name]])),
    PATH: env.PATH,
    NO_COLOR: env.NO_COLOR,
    FORCE_COLOR: env.FORCE_COLOR,
    TERM: env.TERM,
  };
}

/** What `taskjet dev` records in `<dir>/dev.json` while it runs. */
export interface DevInfo {
  /** The NATS URL of the dev server. */
  url: string;
  /** The nats-server process: the file is believed only while it lives. */
  pid: number;
  /** The `taskjet dev` process that owns the file and removes it on exit. */
  cliPid: number;
  namespace: string;
  startedAt: string;
  /** The engine's HTTP address (`host:port`: REST, dashboard, webhooks), absent when HTTP is off. */
  http?: string;
}

/** Where a setting came from, for messages. */
export type Source = "flag" | "env" | "dev.json" | "default";

/** Where to connect and which namespace to work in. */
export interface ConnectionConfig {
  servers: string[];
  serversFrom: Source;
  /** The dev.json used, when `serversFrom` is "dev.json". */
  devFile?: string;
  namespace: string;
  namespaceFrom: Source;
  /** Authentication and TLS, resolved (files read). */
  access: NatsAccess;
}

/** The flags every connecting command takes. */
export interface ConnectionFlags extends NatsAuthFlags {
  nats?: string;
  namespace?: string;
}

/** `--nats-user`, `--nats-password`, `--nats-token`, `--nats-nkey`, `--nats-creds`, `--nats-tls-ca|cert|key`. */
export interface NatsAuthFlags {
  natsUser?: string;
  natsPassword?: string;
  natsToken?: string;
  natsNkey?: string;
  natsCreds?: string;
  natsTlsCa?: string;
  natsTlsCert?: string;
  natsTlsKey?: string;
}

/** Each setting's flag, for messages. */
export const NATS_AUTH_FLAGS: Record<NatsAuthField, string> = {
  user: "--nats-user",
  password: "--nats-password",
  token: "--nats-token",
  nkeyFile: "--nats-nkey",
  credsFile: "--nats-creds",
  caFile: "--nats-tls-ca",
  certFile: "--nats-tls-cert",
  keyFile: "--nats-tls-key",
};

/**
 * Resolves NATS authentication and TLS: flags over environment (a method given by flags replaces the environment's),
 * credentials in `servers` URLs taken out.
 * @throws UsageError naming the flag or variable: two methods at once, a file that cannot be read, ...
 */
export function resolveNatsAuth(servers: string[], flags: NatsAuthFlags, env: CliEnv): NatsAccess {
  try {
    return resolveNatsAccess(
      servers,
      {
        auth: {
          user: flags.natsUser,
          password: flags.natsPassword,
          token: flags.natsToken,
          nkeyFile: flags.natsNkey,
          credsFile: flags.natsCreds,
        },
        tls: { caFile: flags.natsTlsCa, certFile: flags.natsTlsCert, keyFile: flags.natsTlsKey },
        names: NATS_AUTH_FLAGS,
      },
      env as Record<string, string | undefined>,
    );
  } catch (err) {
    if (err instanceof ValidationError) throw new UsageError(err.message);
    throw err;
  }
}

/** Splits a comma-separated list, dropping blanks. */
export function splitList(value: string): string[] {
  return value
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

/**
 * Resolves servers (`--nats` > `TASKJET_NATS_URL` > a live `.taskjet/dev.json` above `cwd` > nats://127.0.0.1:4222)
 * and namespace (`--namespace` > `TASKJET_NAMESPACE` > that dev.json's, when the servers came from it > "default").
 * @throws UsageError naming the flag or variable and the bad value
 */
export function resolveConnection(flags: ConnectionFlags, env: CliEnv, cwd: string): ConnectionConfig {
  let servers: string[];
  let serversFrom: Source;
  let devFile: string | undefined;
  let devNamespace: string | undefined;
  if (flags.nats !== undefined) {
    servers = parseServers(flags.nats, "--nats");
    serversFrom = "flag";
  } else if (env.TASKJET_NATS_URL) {
    servers = parseServers(env.TASKJET_NATS_URL, "TASKJET_NATS_URL");
    serversFrom = "env";
  } else {
    const dev = findDevInfo(cwd);
    if (dev) {
      servers = [dev.info.url];
      serversFrom = "dev.json";
      devFile = dev.file;
      devNamespace = dev.info.namespace;
    } else {
      servers = [DEFAULT_NATS_URL];
      serversFrom = "default";
    }
  }
  const { namespace, namespaceFrom } = resolveNamespace(flags.namespace, env, devNamespace);
  const access = resolveNatsAuth(servers, flags, env);
  return { servers: access.servers, serversFrom, ...(devFile ? { devFile } : {}), namespace, namespaceFrom, access };
}

/** `dev`: the namespace of the `taskjet dev` whose server the command talks to (its dev.json's). */
function resolveNamespace(
  flag: string | undefined,
  env: CliEnv,
  dev?: string,
): { namespace: string; namespaceFrom: Source } {
  if (flag !== undefined) return { namespace: parseNamespace(flag, "--namespace"), namespaceFrom: "flag" };
  if (env.TASKJET_NAMESPACE) {
    return { namespace: parseNamespace(env.TASKJET_NAMESPACE, "TASKJET_NAMESPACE"), namespaceFrom: "env" };
  }
  if (dev !== undefined) return { namespace: parseNamespace(dev, "dev.json namespace"), namespaceFrom: "dev.json" };
  return { namespace: DEFAULT_NAMESPACE, namespaceFrom: "default" };
}

/** A URL list: `nats://a:4222,nats://b:4222` (`host:port` is accepted too). */
export function parseServers(value: string, name: string): string[] {
  const servers = splitList(value);
  if (servers.length === 0) throw new UsageError(`${name} must be a NATS URL or a comma-separated list, got ""`);
  for (const s of servers) {
    if (!s.includes("://")) continue;
    try {
      new URL(s);
    } catch {
      throw new UsageError(`${name} must be NATS URLs like nats://127.0.0.1:4222, got ${JSON.stringify(s)}`);
    }
  }
  return servers;
}

/** A namespace token, validated by the schemas' rule. */
export function parseNamespace(value: string, name: string): string {
  try {
    return checkToken(value, name);
  } catch (err) {
    if (err instanceof ValidationError) throw new UsageError(err.message);
    throw err;
  }
}

/** A pino level from `--log-level`, `TASKJET_LOG_LEVEL`, or "info". */
export function resolveLogLevel(flag: string | undefined, env: CliEnv): LogLevel {
  const [value, name] = flag !== undefined ? [flag, "--log-level"] : [env.TASKJET_LOG_LEVEL, "TASKJET_LOG_LEVEL"];
  if (value === undefined || value === "") return "info";
  if (!(LOG_LEVELS as readonly string[]).includes(value)) {
    throw new UsageError(`${name} must be one of ${LOG_LEVELS.join(", ")}, got ${JSON.stringify(value)}`);
  }
  return value as LogLevel;
}

/**
 * The `.taskjet/dev.json` nearest above `cwd` whose nats-server is still alive: a file left by a `taskjet dev` that
 * was killed is ignored.
 */
export function findDevInfo(cwd: string): { file: string; info: DevInfo } | undefined {
  for (let dir = resolve(cwd); ; dir = dirname(dir)) {
    const file = join(dir, DEFAULT_DEV_DIR, DEV_FILE);
    const info = readDevInfo(file);
    if (info && isAlive(info.pid)) return { file, info };
    if (dirname(dir) === dir) return undefined;
  }
}

/** Reads a dev.json, or undefined when it is missing or unreadable. */
export function readDevInfo(file: string): DevInfo | undefined {
  if (!existsSync(file)) return undefined;
  try {
    const raw = JSON.parse(readFileSync(file, "utf8")) as Partial<DevInfo>;
    if (typeof raw.url !== "string" || !Number.isInteger(raw.pid)) return undefined;
    return {
      url: raw.url,
      pid: raw.pid as number,
      cliPid: Number.isInteger(raw.cliPid) ? (raw.cliPid as number) : 0,
      namespace: typeof raw.namespace === "string" ? raw.namespace : DEFAULT_NAMESPACE,
      startedAt: typeof raw.startedAt === "string" ? raw.startedAt : "",
      ...(typeof raw.http === "string" ? { http: raw.http } : {}),
    };
  } catch {
    return undefined;
  }
}

/** True when a process with this id exists (ours or not). */
export function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The resolved settings of `taskjet dev`. */
export interface DevConfig {
  /** The port asked for with `--port`; undefined means 4222, or any free port when 4222 is taken. */
  port: number | undefined;
  /** Absolute state directory. */
  dir: string;
  namespace: string;
  example: boolean;
  logLevel: LogLevel;
  /** The nats-server binary, or undefined when none was found. */
  natsServerBin: string | undefined;
  /** Where the binary was looked for, for the error message. */
  natsServerSearched: string[];
  /** TASKJET_NATS_URL of this shell: other commands here will use it over dev.json. */
  envNatsUrl: string | undefined;
}

/** Resolves `taskjet dev`'s flags and environment. */
export function resolveDevConfig(
  flags: { port?: number; dir?: string; namespace?: string; example?: boolean; logLevel?: string },
  env: CliEnv,
  cwd: string,
): DevConfig {
  const { namespace } = resolveNamespace(flags.namespace, env);
  const found = findNatsServer(env);
  return {
    port: flags.port,
    dir: resolve(cwd, flags.dir ?? DEFAULT_DEV_DIR),
    namespace,
    example: flags.example === true,
    logLevel: resolveLogLevel(flags.logLevel, env),
    natsServerBin: found.bin,
    natsServerSearched: found.searched,
    envNatsUrl: env.TASKJET_NATS_URL || undefined,
  };
}

/** `TASKJET_NATS_SERVER_BIN` if set; else `nats-server` on PATH; else Debian's /usr/sbin/nats-server. */
function findNatsServer(env: CliEnv): { bin: string | undefined; searched: string[] } {
  if (env.TASKJET_NATS_SERVER_BIN) {
    const bin = env.TASKJET_NATS_SERVER_BIN;
    return { bin: isExecutable(bin) ? bin : undefined, searched: [`${bin} (TASKJET_NATS_SERVER_BIN)`] };
  }
  const candidates = splitPath(env.PATH).map((d) => join(d, "nats-server"));
  candidates.push(DEBIAN_NATS_SERVER);
  return { bin: candidates.find(isExecutable), searched: ["nats-server on PATH", DEBIAN_NATS_SERVER] };
}

function splitPath(path: string | undefined): string[] {
  return (path ?? "").split(delimiter).filter((d) => d !== "");
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The resolved settings of `taskjet engine`. */
export interface EngineCliConfig {
  servers: string[];
  serversFrom: Source;
  access: NatsAccess;
  namespaces: string[];
  replicas: number;
  logLevel: LogLevel;
}

/** `TASKJET_REPLICAS`: 1 to 5, 1 when unset (a dev server has one node). */
function parseReplicas(value: string | undefined): number {
  if (value === undefined || value === "") return 1;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 5) {
    throw new UsageError(`TASKJET_REPLICAS must be an integer from 1 to 5, got ${JSON.stringify(value)}`);
  }
  return n;
}

/** Resolves `taskjet engine`'s flags: `--namespace` may list several namespaces (`a,b`). */
export function resolveEngineCliConfig(
  flags: ConnectionFlags & { replicas?: number; logLevel?: string },
  env: CliEnv,
  cwd: string,
): EngineCliConfig {
  const { namespace: _, ...connFlags } = flags;
  const conn = resolveConnection(connFlags, env, cwd);
  // The namespace a taskjet dev found through its dev.json serves, as for the other commands.
  const [raw, name] =
    flags.namespace !== undefined
      ? [flags.namespace, "--namespace"]
      : env.TASKJET_NAMESPACE
        ? [env.TASKJET_NAMESPACE, "TASKJET_NAMESPACE"]
        : [conn.namespace, conn.namespaceFrom === "dev.json" ? "dev.json namespace" : "TASKJET_NAMESPACE"];
  const namespaces = splitList(raw).map((ns) => parseNamespace(ns, name));
  if (namespaces.length === 0) throw new UsageError(`${name} must name at least one namespace, got ""`);
  return {
    servers: conn.servers,
    serversFrom: conn.serversFrom,
    access: conn.access,
    namespaces,
    replicas: flags.replicas ?? parseReplicas(env.TASKJET_REPLICAS),
    logLevel: resolveLogLevel(flags.logLevel, env),
  };
}
