import { createRequire } from "node:module";
import { ErrorCodes, TaskjetError, ValidationError } from "@taskjet/sdk";
import { Command, CommanderError } from "commander";
import { registerAdmin } from "./commands/admin.js";
import type { CliContext } from "./commands/common.js";
import { registerCompletion } from "./commands/completion.js";
import { registerCrons } from "./commands/crons.js";
import { registerDebug } from "./commands/debug.js";
import { registerDev } from "./commands/dev.js";
import { registerEngine } from "./commands/engine.js";
import { registerEvents } from "./commands/events.js";
import { registerQueues } from "./commands/queues.js";
import { registerRateLimits } from "./commands/ratelimits.js";
import { registerRuns } from "./commands/runs.js";
import { registerScheduled } from "./commands/scheduled.js";
import { registerStatus } from "./commands/status.js";
import { registerTokens } from "./commands/tokens.js";
import { registerTrigger } from "./commands/trigger.js";
import { registerWebhooks } from "./commands/webhooks.js";
import { registerWorkers } from "./commands/workers.js";
import { type CliEnv, loadEnv } from "./config.js";
import { type ExitCode, ExitCodes, UsageError } from "./errors.js";
import { addExamples } from "./help.js";
import { createStyle, type Io, processIo, safeIo, useColor } from "./output.js";

const { version } = createRequire(import.meta.url)("../package.json") as { version: string };

/** Builds the `taskjet` command tree; actions store their exit code in `ctx.exitCode`. */
export function buildProgram(ctx: CliContext): Command {
  const program = new Command("taskjet")
    .description("Taskjet: durable tasks on NATS JetStream")
    .version(version, "-V, --version")
    // Set before the subcommands are added: they inherit it.
    .exitOverride()
    .configureOutput({ writeOut: ctx.io.out, writeErr: ctx.io.err })
    .showHelpAfterError("(add --help for usage)")
    .configureHelp({ showGlobalOptions: true })
    // Program options are accepted after a subcommand too: `taskjet runs list --no-color`.
    .option("--color", "colour the output even when it is not a terminal (NO_COLOR still wins)")
    .option("--no-color", "never colour the output")
    .hook("preAction", (_program, action) => {
      const { color } = action.optsWithGlobals<{ color?: boolean }>();
      ctx.style = createStyle(useColor({ flag: color, env: ctx.env, interactive: ctx.io.interactive }));
    });
  registerDev(program, ctx);
  registerEngine(program, ctx);
  registerTrigger(program, ctx);
  registerRuns(program, ctx);
  registerRateLimits(program, ctx);
  registerScheduled(program, ctx);
  registerCrons(program, ctx);
  registerEvents(program, ctx);
  registerWebhooks(program, ctx);
  registerTokens(program, ctx);
  registerDebug(program, ctx);
  registerStatus(program, ctx);
  registerAdmin(program, ctx);
  registerWorkers(program, ctx);
  registerQueues(program, ctx);
  registerCompletion(program, ctx);
  addExamples(program);
  return program;
}

/** What `main` may be given instead of the process's own. */
export interface MainOptions {
  io?: Io;
  env?: CliEnv;
  cwd?: string;
}

/**
 * Runs the CLI on `argv` (as in `process.argv`) and returns the exit code: 0 ok, 1 failure, 2 usage.
 *
 * @example
 * process.exitCode = await main(process.argv);
 */
export async function main(argv: string[], options: MainOptions = {}): Promise<ExitCode> {
  const ctx: CliContext = {
    // Colour codes pass only while the CLI colours its output (decided once the command's flags are parsed).
    io: safeIo(options.io ?? processIo(), () => ctx.style.enabled),
    env: options.env ?? loadEnv(),
    cwd: options.cwd ?? process.cwd(),
    exitCode: ExitCodes.ok,
    style: createStyle(false),
  };
  try {
    await buildProgram(ctx).parseAsync(argv);
    return ctx.exitCode;
  } catch (err) {
    const code = report(err, ctx.io, ctx.flags);
    if (code === ExitCodes.failure && ctx.hint) ctx.io.err(`hint: ${ctx.hint}\n`);
    return code;
  }
}

/** The flag a field path came from (`auth.key` → `--key`), or the path when no flag fills it. */
function flagOf(path: string, flags: Record<string, string>): string {
  for (let at = path; at !== ""; at = at.slice(0, Math.max(0, Math.max(at.lastIndexOf("."), at.lastIndexOf("["))))) {
    const flag = flags[at];
    if (flag !== undefined) return at === path ? flag : `${flag} (${path})`;
  }
  return path;
}

/** Prints an error the way the CLI promises and picks the exit code. */
function report(err: unknown, io: Io, flags: Record<string, string> = {}): ExitCode {
  // Commander printed its own message (or the help) already.
  if (err instanceof CommanderError) return err.exitCode === 0 ? ExitCodes.ok : ExitCodes.usage;
  if (err instanceof UsageError) {
    io.err(`error: ${err.message}\n(add --help for usage)\n`);
    return ExitCodes.usage;
  }
  // A bad argument value the SDK caught (a key, a limit, a time it checks): a usage error too.
  if (err instanceof TaskjetError && err.code === ErrorCodes.invalidArgument) {
    const message =
      err instanceof ValidationError
        ? err.issues.map((i) => (i.path ? `${flagOf(i.path, flags)}: ${i.message}` : i.message)).join("; ")
        : err.message;
    io.err(`error: ${message}\n(add --help for usage)\n`);
    return ExitCodes.usage;
  }
  if (err instanceof TaskjetError) {
    io.err(`error: ${err.message}\n`);
    return ExitCodes.failure;
  }
  const message = err instanceof Error ? err.message : String(err);
  io.err(`error: ${message}\n`);
  return ExitCodes.failure;
}
