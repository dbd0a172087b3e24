import { parseIsoTime, RunNotScheduledError, RunStatuses } from "@taskjet/schemas";
import { Argument, type Command, InvalidArgumentError } from "commander";
import type { ConnectionFlags } from "../config.js";
import { ExitCodes } from "../errors.js";
import { formatAgo, formatTable, isoUtc, jsonLine } from "../output.js";
import { intIn, parseRunIdArgument } from "../parse.js";
import { type CliContext, connectionOptions, withClient } from "./common.js";

/** `--at`: an ISO date-time, checked before connecting. */
export function parseTime(flag: string): (value: string) => Date {
  return (value) => {
    const date = parseIsoTime(value);
    if (date === undefined) {
      throw new InvalidArgumentError(`${flag} must be an ISO date-time such as 2026-12-01T09:00:00Z, got "${value}"`);
    }
    return date;
  };
}

/** `taskjet scheduled list|get|update|delete`: runs created to start later. */
export function registerScheduled(program: Command, ctx: CliContext): void {
  const cmd = program.command("scheduled").description("runs scheduled to start later (trigger --at / --delay)");

  const list = cmd
    .command("list")
    .description("scheduled runs, soonest first")
    .option("-t, --task <name>", "only runs of this task")
    .option("-n, --limit <n>", "at most this many", intIn("--limit", 1, 100_000), 50)
    .option("--json", "print a JSON array of run states");
  connectionOptions(list).action(async (flags: ConnectionFlags & { task?: string; limit: number; json?: boolean }) => {
    ctx.exitCode = await withClient(flags, ctx, async (tj, conn) => {
      const runs = await tj.scheduled.list({ ...(flags.task ? { taskName: flags.task } : {}), limit: flags.limit });
      if (flags.json) ctx.io.out(`${JSON.stringify(runs, null, 2)}\n`);
      else if (runs.length === 0) ctx.io.out(`no scheduled runs in namespace ${conn.namespace}\n`);
      else {
        const now = Date.now();
        const rows = runs.map((r) => [
          r.runId,
          r.workflowName,
          formatAgo(r.scheduledAt, now),
          isoUtc(r.scheduledAt),
          formatAgo(r.createdAt, now),
        ]);
        ctx.io.out(`${formatTable(["RUN", "TASK", "STARTS", "AT (UTC)", "CREATED"], rows)}\n`);
      }
      return ExitCodes.ok;
    });
  });

  const get = cmd
    .command("get")
    .description("one scheduled run")
    .addArgument(new Argument("<runId>").argParser(parseRunIdArgument))
    .option("--json", "print JSON");
  connectionOptions(get).action(async (runId: string, flags: ConnectionFlags & { json?: boolean }) => {
    ctx.exitCode = await withClient(flags, ctx, async (tj) => {
      const run = await tj.scheduled.get(runId);
      // As update and delete say: a run that started (or never was scheduled) is no scheduled run.
      if (run.status !== RunStatuses.scheduled) {
        ctx.hint = `taskjet runs get ${runId}`;
        throw new RunNotScheduledError(runId, run.status);
      }
      if (flags.json) ctx.io.out(`${JSON.stringify(run, null, 2)}\n`);
      else {
        ctx.io.out(
          `${run.runId} ${run.workflowName} ${ctx.style.status(run.status)} starts ${isoUtc(run.scheduledAt)} ` +
            `(${formatAgo(run.scheduledAt)})\n`,
        );
      }
      return ExitCodes.ok;
    });
  });

  const update = cmd
    .command("update")
    .description("move a scheduled run to another time")
    .addArgument(new Argument("<runId>").argParser(parseRunIdArgument))
    .requiredOption("--at <time>", "the new start time (ISO date-time)", parseTime("--at"))
    .option("--json", "print the run state as JSON");
  connectionOptions(update).action(async (runId: string, flags: ConnectionFlags & { at: Date; json?: boolean }) => {
    ctx.flags = { triggerAt: "--at" };
    ctx.exitCode = await withClient(flags, ctx, async (tj) => {
      const run = await tj.scheduled.update(runId, { triggerAt: flags.at });
      if (flags.json) ctx.io.out(`${JSON.stringify(run, null, 2)}\n`);
      else ctx.io.out(`${run.runId} now starts ${isoUtc(run.scheduledAt)}\n`);
      return ExitCodes.ok;
    });
  });

  const del = cmd
    .command("delete")
    .description("delete a scheduled run: it never starts")
    .addArgument(new Argument("<runId>").argParser(parseRunIdArgument))
    .option("--json", "print {runId, deleted} as JSON");
  connectionOptions(del).action(async (runId: string, flags: ConnectionFlags & { json?: boolean }) => {
    ctx.exitCode = await withClient(flags, ctx, async (tj) => {
      const deleted = await tj.scheduled.delete(runId);
      if (flags.json) ctx.io.out(jsonLine({ runId, deleted }));
      else ctx.io.out(deleted ? `${runId} deleted\n` : `${runId} was already deleted\n`);
      return ExitCodes.ok;
    });
  });
}
