import { silentLogger, Taskjet } from "@taskjet/sdk";
import { type Command, Option } from "commander";
import { type CliEnv, type ConnectionConfig, type ConnectionFlags, LOG_LEVELS, resolveConnection } from "../config.js";
import type { ExitCode } from "../errors.js";
import { LogFormats } from "../logger.js";
import type { Io, Style } from "../output.js";

/** What every command is given: where to print, the environment it may read, the working directory. */
export interface CliContext {
  io: Io;
  env: CliEnv;
  cwd: string;
  /** Set by the command's action: the process exit code. */
  exitCode: ExitCode;
  /** Printed under the error message, when the command fails with one. */
  hint?: string;
  /** Colours of human output, decided before the action runs (`--color`, `--no-color`, NO_COLOR, a terminal). */
  style: Style;
  /**
   * The flag each SDK field comes from, for the command running (`{ at: "--at" }`): a ValidationError the SDK throws
   * names the flag the user typed, not the field it filled.
   */
  flags?: Record<string, string>;
}

/** Adds `--nats`, `--namespace` and the NATS authentication and TLS flags. */
export function connectionOptions(cmd: Command, namespaceHelp = "namespace to work in"): Command {
  return natsAuthOptions(
    cmd
      .option(
        "--nats <urls>",
        "NATS URL(s), comma-separated (default: $TASKJET_NATS_URL, then a running `taskjet dev`, then nats://127.0.0.1:4222)",
      )
      .option("--namespace <ns>", `${namespaceHelp} (default: $TASKJET_NAMESPACE, then "default")`),
  );
}

/**
 * The NATS authentication and TLS flags. Secrets on a command line are visible to other users of the machine (ps):
 * prefer the environment variables for passwords and tokens.
 */
function natsAuthOptions(cmd: Command): Command {
  return cmd
    .option("--nats-user <user>", "NATS user, with --nats-password (default: $TASKJET_NATS_USER)")
    .option("--nats-password <password>", "NATS password (default: $TASKJET_NATS_PASSWORD, safer than the flag)")
    .option("--nats-token <token>", "NATS authentication token (default: $TASKJET_NATS_TOKEN, safer than the flag)")
    .option("--nats-nkey <file>", "NATS nkey seed file (default: $TASKJET_NATS_NKEY)")
    .option("--nats-creds <file>", "NATS .creds file (default: $TASKJET_NATS_CREDS)")
    .option(
      "--nats-tls-ca <file>",
      "CA certificate (PEM) to verify the NATS server with (default: $TASKJET_NATS_TLS_CA)",
    )
    .option(
      "--nats-tls-cert <file>",
      "client certificate (PEM) for NATS, with --nats-tls-key (default: $TASKJET_NATS_TLS_CERT)",
    )
    .option("--nats-tls-key <file>", "client certificate's private key (PEM) (default: $TASKJET_NATS_TLS_KEY)");
}

/** Adds `--log-level` and `--log-format` for long-running commands. */
export function logOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option("--log-level <level>", "log level (default: $TASKJET_LOG_LEVEL, then info)").choices(LOG_LEVELS),
    )
    .addOption(new Option("--log-format <format>", "log format").choices(LogFormats).default("pretty"))
    .option("--json", "the same as --log-format json: every line a JSON object")
    .hook("preAction", (self) => {
      if (self.opts().json) self.setOptionValue("logFormat", "json");
    });
}

/** Resolves the connection flags and connects the SDK client. The caller closes it. */
export async function connectClient(
  flags: ConnectionFlags,
  ctx: CliContext,
): Promise<{ tj: Taskjet; conn: ConnectionConfig }> {
  const conn = resolveConnection(flags, ctx.env, ctx.cwd);
  if (conn.serversFrom === "default") {
    ctx.hint = `used the default ${conn.servers.join(",")}: no --nats, no TASKJET_NATS_URL and no running \`taskjet dev\` was found`;
  }
  const tj = await Taskjet.connect({
    servers: conn.servers,
    namespace: conn.namespace,
    name: "taskjet-cli",
    auth: conn.access,
    // A command's output is its answer: what goes wrong is its error, not log lines.
    logger: silentLogger,
  });
  return { tj, conn };
}

/** Runs `fn` with a client and closes it however `fn` ends. */
export async function withClient<T>(
  flags: ConnectionFlags,
  ctx: CliContext,
  fn: (tj: Taskjet, conn: ConnectionConfig) => Promise<T>,
): Promise<T> {
  const { tj, conn } = await connectClient(flags, ctx);
  try {
    return await fn(tj, conn);
  } finally {
    await tj.close();
  }
}

/** Signals this close to the first are the same Ctrl-C delivered twice, not a second one. */
const SAME_SIGNAL_MS = 300;

/**
 * Resolves on the first SIGINT or SIGTERM with its name. `onAgain` runs on any further signal (a person pressing
 * Ctrl-C twice wants out now).
 */
export function waitForStopSignal(onAgain: (signal: NodeJS.Signals) => void): {
  signal: Promise<NodeJS.Signals>;
  dispose: () => void;
} {
  let receivedAt = 0;
  let resolveSignal!: (s: NodeJS.Signals) => void;
  const signal = new Promise<NodeJS.Signals>((r) => {
    resolveSignal = r;
  });
  const handler = (s: NodeJS.Signals) => {
    // One Ctrl-C can come twice: to the terminal's whole process group, and forwarded by `npm run` to its script.
    if (receivedAt > 0 && Date.now() - receivedAt > SAME_SIGNAL_MS) onAgain(s);
    receivedAt ||= Date.now();
    resolveSignal(s);
  };
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
  return {
    signal,
    dispose: () => {
      process.off("SIGINT", handler);
      process.off("SIGTERM", handler);
    },
  };
}

/** `promise`, or `undefined` after `ms` (the promise keeps running). */
export async function within<T>(promise: Promise<T>, ms: number): Promise<{ value: T } | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((r) => {
    timer = setTimeout(() => r(undefined), ms);
  });
  try {
    return await Promise.race([promise.then((value) => ({ value })), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
