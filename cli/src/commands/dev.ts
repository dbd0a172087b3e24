import { rmSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { createEngine, DEFAULT_NATS_URL, resolveEngineConfig } from "@taskjet/engine";
import { NatsAccess } from "@taskjet/schemas";
import { Taskjet } from "@taskjet/sdk";
import type { Command } from "commander";
import type { Logger } from "pino";
import {
  DEFAULT_DEV_DIR,
  DEFAULT_DEV_PORT,
  DEFAULT_NAMESPACE,
  DEV_FILE,
  type DevConfig,
  type DevInfo,
  isAlive,
  readDevInfo,
  resolveDevConfig,
} from "../config.js";
import { type ExitCode, ExitCodes } from "../errors.js";
import { EXAMPLE_TASKS, startExampleWorker } from "../example.js";
import { createLogger, type LogFormat } from "../logger.js";
import { type DevNatsServer, isPortFree, startDevNatsServer } from "../nats-server.js";
import { intIn } from "../parse.js";
import { type CliContext, logOptions, waitForStopSignal, within } from "./common.js";

/** How long each part may take to stop while the server is up; after the server died, much less. */
const STOP_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_SERVER_GONE_MS = 2_000;

interface DevFlags {
  port?: number;
  dir?: string;
  example?: boolean;
  namespace?: string;
  logLevel?: string;
  logFormat: LogFormat;
  http?: string;
}

/** `taskjet dev`: nats-server, engine and optionally an example worker, in the foreground. */
export function registerDev(program: Command, ctx: CliContext): void {
  const cmd = program
    .command("dev")
    .description("run a local nats-server, the engine and (with --example) an example worker until Ctrl-C")
    .option(
      "-p, --port <port>",
      `NATS port on 127.0.0.1 (default: ${DEFAULT_DEV_PORT}, or a free port when it is taken)`,
      intIn("--port", 1, 65_535),
    )
    .option("--dir <dir>", "state directory: dev.json, nats-server config and log, JetStream store", DEFAULT_DEV_DIR)
    .option(
      "--http <host:port>",
      "engine HTTP server (webhooks), or off (default 127.0.0.1:8080, a free port if taken)",
    )
    .option("--example", `also run an example worker with the tasks ${EXAMPLE_TASKS.join(", ")}`)
    .option("--namespace <ns>", 'namespace the engine serves (default: $TASKJET_NAMESPACE, then "default")');
  logOptions(cmd).action(async (flags: DevFlags) => {
    ctx.exitCode = await runDev(flags, ctx);
  });
}

/** One thing to undo on the way out, newest first. */
interface Cleanup {
  what: string;
  run: () => Promise<unknown>;
}

async function runDev(flags: DevFlags, ctx: CliContext): Promise<ExitCode> {
  const { io } = ctx;
  const config = resolveDevConfig(flags, ctx.env, ctx.cwd);
  ctx.flags = { http: flags.http !== undefined ? "--http" : "TASKJET_HTTP" };
  // The engine's address checked before nats-server starts, named as typed (flag or variable).
  resolveEngineConfig(
    {
      servers: [DEFAULT_NATS_URL],
      auth: NatsAccess.none([DEFAULT_NATS_URL]),
      namespaces: [config.namespace],
      ...(flags.http ? { http: flags.http } : {}),
    },
    ctx.env.TASKJET_HTTP === undefined ? {} : { TASKJET_HTTP: ctx.env.TASKJET_HTTP },
  );
  if (!config.natsServerBin) {
    io.err(installHelp(config.natsServerSearched));
    return ExitCodes.failure;
  }
  await mkdir(config.dir, { recursive: true });
  const devFile = join(config.dir, DEV_FILE);
  const running = readDevInfo(devFile);
  if (running && isAlive(running.pid)) {
    const owner = isAlive(running.cliPid)
      ? `taskjet dev (pid ${running.cliPid}) is already running from ${config.dir}: stop it first, or use another --dir`
      : `a nats-server (pid ${running.pid}) left by an earlier taskjet dev still runs from ${config.dir}: stop it with \`kill ${running.pid}\``;
    io.err(`error: ${owner} (NATS at ${running.url})\n`);
    return ExitCodes.failure;
  }

  const port = await choosePort(config.port, config.dir);
  if (port === undefined) {
    io.err(
      `error: port ${config.port} on 127.0.0.1 is in use: pick another --port, or leave --port out to get a free one\n`,
    );
    return ExitCodes.failure;
  }

  const log = createLogger(config.logLevel, flags.logFormat, io.out);
  const cleanups: Cleanup[] = [];
  let server: DevNatsServer | undefined;
  // A second Ctrl-C while stopping: no more waiting, but leave no server and no dev.json behind.
  const stop = waitForStopSignal(() => {
    io.err("stopping already; killing nats-server and exiting now\n");
    server?.kill();
    rmSync(devFile, { force: true });
    process.exit(ExitCodes.failure);
  });
  let serverGone = false;
  let exitCode: ExitCode = ExitCodes.ok;
  try {
    server = await startDevNatsServer({ bin: config.natsServerBin, dir: config.dir, port });
    const nats = server;
    cleanups.push({ what: "nats-server", run: () => nats.stop() });
    await writeFile(join(config.dir, LAST_PORT_FILE), `${nats.port}\n`);
    log.info({ module: "dev", url: nats.url, natsPid: nats.pid, logFile: nats.logFile }, "nats-server started");

    // The dev server has no authentication: credentials in this shell's environment are for other servers.
    const access = NatsAccess.none([nats.url]);
    const engine = createEngine(
      {
        servers: [nats.url],
        auth: access,
        namespaces: [config.namespace],
        replicas: 1,
        logLevel: config.logLevel,
        ...(flags.http ? { http: flags.http } : {}),
      },
      { logger: log },
    );
    cleanups.push({ what: "engine", run: () => engine.stop() });
    await engine.start();

    if (config.example) {
      const tj = await Taskjet.connect({
        servers: [nats.url],
        auth: access,
        namespace: config.namespace,
        logger: log.child({ module: "example" }),
        name: "taskjet-dev-example",
      });
      cleanups.push({ what: "example worker", run: () => tj.close() });
      await startExampleWorker(tj);
    }

    // Written last: a dev.json means everything is up (scripts wait for it before triggering).
    const info: DevInfo = {
      url: nats.url,
      pid: nats.pid,
      cliPid: process.pid,
      namespace: config.namespace,
      startedAt: new Date().toISOString(),
      ...(engine.httpAddress() ? { http: engine.httpAddress() } : {}),
    };
    await writeFile(devFile, `${JSON.stringify(info, null, 2)}\n`);
    cleanups.push({ what: "dev.json", run: () => rm(devFile, { force: true }) });
    // In JSON every stdout line must parse: the banner's facts become one log record.
    if (flags.logFormat === "json") {
      log.info(
        {
          module: "dev",
          url: nats.url,
          namespace: config.namespace,
          http: engine.httpAddress() ?? null,
          dir: config.dir,
        },
        "taskjet dev is ready",
      );
    } else
      io.out(banner(config, nats, nats.port !== DEFAULT_DEV_PORT && config.port === undefined, engine.httpAddress()));

    const reason = await Promise.race([
      stop.signal.then((signal) => ({ signal })),
      nats.exited.then((exit) => ({ exit })),
    ]);
    if ("exit" in reason) {
      serverGone = true;
      log.error({ module: "dev", ...reason.exit, logFile: nats.logFile }, "nats-server exited unexpectedly: stopping");
      exitCode = ExitCodes.failure;
    } else {
      log.info({ module: "dev", signal: reason.signal }, "stopping: worker, engine, then nats-server");
    }
  } finally {
    await runCleanups(cleanups, log, serverGone ? STOP_TIMEOUT_SERVER_GONE_MS : STOP_TIMEOUT_MS);
    stop.dispose();
  }
  if (exitCode === ExitCodes.ok) log.info({ module: "dev" }, "stopped");
  return exitCode;
}

/**
 * The asked-for port if free; else 4222 if free; else the port the last run of this directory picked, if free (so an
 * exported TASKJET_NATS_URL and running workers find the server again); else "any" (nats-server picks); undefined if
 * the asked one is taken.
 */
async function choosePort(asked: number | undefined, dir: string): Promise<number | "any" | undefined> {
  if (asked !== undefined) return (await isPortFree(asked)) ? asked : undefined;
  if (await isPortFree(DEFAULT_DEV_PORT)) return DEFAULT_DEV_PORT;
  const last = Number(await readFile(join(dir, LAST_PORT_FILE), "utf8").catch(() => ""));
  return Number.isInteger(last) && last > 0 && last < 65_536 && (await isPortFree(last)) ? last : "any";
}

/** The port a run of `taskjet dev` listened on, kept in its directory for the next run. */
const LAST_PORT_FILE = "last-port";

/** Undoes newest first; a part that fails or hangs is logged and skipped so the rest still stop. */
async function runCleanups(cleanups: Cleanup[], log: Logger, timeoutMs: number): Promise<void> {
  for (const c of [...cleanups].reverse()) {
    try {
      if (!(await within(c.run(), timeoutMs))) log.warn({ module: "dev", timeoutMs }, `${c.what} did not stop in time`);
    } catch (err) {
      log.warn({ module: "dev", err }, `${c.what} did not stop cleanly`);
    }
  }
}

function installHelp(searched: string[]): string {
  return [
    `error: nats-server not found (looked for ${searched.join(" and ")}).`,
    "taskjet dev runs a local NATS server and needs the nats-server binary (2.9 or newer). Install it:",
    "  Debian/Ubuntu:  sudo apt-get install -y nats-server",
    "  elsewhere:      download it from https://github.com/nats-io/nats-server/releases and put it on PATH",
    "or point TASKJET_NATS_SERVER_BIN at a nats-server binary.",
    "",
  ].join("\n");
}

function banner(config: DevConfig, nats: DevNatsServer, movedPort: boolean, http: string | undefined): string {
  const lines: string[] = [""];
  if (movedPort) {
    lines.push(
      `!! Port ${DEFAULT_DEV_PORT} on 127.0.0.1 is already in use (another NATS server?), so taskjet dev listens on port ${nats.port}.`,
      `!! Commands in other shells must be told: export TASKJET_NATS_URL=${nats.url}`,
      "",
    );
  }
  lines.push(
    "taskjet dev is ready",
    `  NATS       ${nats.url}`,
    `  namespace  ${config.namespace}`,
    "  engine     running in this process",
    `  HTTP       ${http ? `http://${http} (webhooks: /api/v1/namespaces/${config.namespace}/webhooks/<name>)` : "off"}`,
    config.example
      ? `  worker     "example" with tasks ${EXAMPLE_TASKS.join(", ")}`
      : "  worker     none (add --example for a demo worker, or start your own)",
    `  state      ${config.dir} (dev.json, nats-server.log, JetStream store in nats/)`,
    "",
    "From another shell:",
    `  export TASKJET_NATS_URL=${nats.url}`,
  );
  if (config.namespace !== DEFAULT_NAMESPACE) lines.push(`  export TASKJET_NAMESPACE=${config.namespace}`);
  if (config.example) lines.push(`  taskjet trigger hello --input '{"name":"world"}' --wait`);
  else lines.push("  taskjet trigger <task> --input '{}' --wait");
  lines.push("  taskjet runs list", "  taskjet runs history <run-id>", "");
  if (basename(config.dir) === DEFAULT_DEV_DIR) {
    lines.push(
      `(Commands run in ${join(config.dir, "..")} or below find this server through dev.json without the export.)`,
    );
  }
  if (config.envNatsUrl && config.envNatsUrl !== nats.url) {
    lines.push(`Note: TASKJET_NATS_URL is set to ${config.envNatsUrl} in this shell; commands use it over dev.json.`);
  }
  lines.push("Ctrl-C stops the worker, the engine and nats-server.", "");
  return `${lines.join("\n")}\n`;
}
