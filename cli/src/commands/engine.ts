import { createEngine } from "@taskjet/engine";
import type { Command } from "commander";
import { type ConnectionFlags, resolveEngineCliConfig } from "../config.js";
import { ExitCodes } from "../errors.js";
import { createLogger, type LogFormat } from "../logger.js";
import { intIn } from "../parse.js";
import { type CliContext, connectionOptions, logOptions, waitForStopSignal, within } from "./common.js";

/** How long a stop may take before the process leaves anyway. */
const STOP_TIMEOUT_MS = 15_000;

interface EngineFlags extends ConnectionFlags {
  replicas?: number;
  logLevel?: string;
  logFormat: LogFormat;
  http?: string;
}

/** `taskjet engine`: the engine alone, until SIGINT or SIGTERM. */
export function registerEngine(program: Command, ctx: CliContext): void {
  const cmd = program
    .command("engine")
    .description("run the engine (projector, scheduler, dispatcher) against a NATS server until stopped")
    .option(
      "--replicas <n>",
      "replicas of the streams and buckets it creates, 3 on a cluster (default $TASKJET_REPLICAS, then 1)",
      intIn("--replicas", 1, 5),
    )
    .option("--http <host:port>", "HTTP server for webhooks, or off (default $TASKJET_HTTP, then 127.0.0.1:8080)");
  connectionOptions(cmd, "namespaces to serve, comma-separated");
  logOptions(cmd).action(async (flags: EngineFlags) => {
    ctx.exitCode = await runEngine(flags, ctx);
  });
}

async function runEngine(flags: EngineFlags, ctx: CliContext): Promise<0 | 1> {
  ctx.flags = { http: flags.http !== undefined ? "--http" : "TASKJET_HTTP" };
  const config = resolveEngineCliConfig(flags, ctx.env, ctx.cwd);
  const logger = createLogger(config.logLevel, flags.logFormat, ctx.io.out);
  const engine = createEngine(
    {
      servers: config.servers,
      auth: config.access,
      namespaces: config.namespaces,
      replicas: config.replicas,
      logLevel: config.logLevel,
      ...(flags.http ? { http: flags.http } : {}),
    },
    { logger },
  );
  const stop = waitForStopSignal(() => {
    ctx.io.err("stopping already; exiting now\n");
    process.exit(ExitCodes.failure);
  });
  try {
    let signal: NodeJS.Signals;
    try {
      // A signal while connecting or provisioning stops the start too.
      const first = await Promise.race([engine.start().then(() => undefined), stop.signal]);
      signal = first ?? (await stop.signal);
    } catch (err) {
      await within(engine.stop(), STOP_TIMEOUT_MS).catch(() => undefined);
      throw err;
    }
    logger.info({ module: "cli", signal }, "stopping");
    if (!(await within(engine.stop(), STOP_TIMEOUT_MS))) {
      logger.error({ timeoutMs: STOP_TIMEOUT_MS }, "engine did not stop in time");
      return ExitCodes.failure;
    }
    return ExitCodes.ok;
  } finally {
    stop.dispose();
  }
}
