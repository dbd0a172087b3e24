import { type CronDefinition, parseCron } from "@taskjet/schemas";
import { Argument, type Command } from "commander";
import type { ConnectionFlags } from "../config.js";
import { ExitCodes } from "../errors.js";
import { formatAgo, formatFields, formatTable, isoUtc, jsonLine, prettyJson } from "../output.js";
import { type CliContext, connectionOptions, withClient } from "./common.js";

/** `taskjet crons list|get|delete`: cron schedules (`onCrons`, `task.cron`). */
export function registerCrons(program: Command, ctx: CliContext): void {
  const cmd = program.command("crons").description("cron schedules");

  const list = cmd
    .command("list")
    .description("list crons")
    .option("-t, --task <name>", "only crons of this task")
    .option("--json", "one JSON object per line");
  connectionOptions(list).action(async (flags: ConnectionFlags & { task?: string; json?: boolean }) => {
    ctx.exitCode = await withClient(flags, ctx, async (tj, conn) => {
      const crons = await tj.crons.list(flags.task ? { taskName: flags.task } : {});
      if (flags.json) for (const c of crons) ctx.io.out(`${JSON.stringify(c)}\n`);
      else if (crons.length === 0) ctx.io.out(`no crons in namespace ${conn.namespace}\n`);
      else {
        const now = Date.now();
        const rows = crons.map((c) => [
          c.name,
          c.taskName,
          c.expression,
          c.timezone ?? "UTC",
          c.catchUp,
          c.source,
          formatAgo(nextTick(c, now) ?? undefined, now),
        ]);
        ctx.io.out(`${formatTable(["NAME", "TASK", "EXPRESSION", "ZONE", "CATCH-UP", "FROM", "NEXT TICK"], rows)}\n`);
      }
      return ExitCodes.ok;
    });
  });

  const get = cmd
    .command("get")
    .description("one cron: its schedule, input and next tick")
    .addArgument(new Argument("<name>"))
    .option("--json", "print the cron definition as JSON");
  connectionOptions(get).action(async (name: string, flags: ConnectionFlags & { json?: boolean }) => {
    ctx.exitCode = await withClient(flags, ctx, async (tj) => {
      const cron = await tj.crons.get(name);
      if (!cron) {
        ctx.io.err(`error: cron ${name} not found\n`);
        return ExitCodes.failure;
      }
      if (flags.json) ctx.io.out(`${JSON.stringify(cron, null, 2)}\n`);
      else ctx.io.out(`${cronView(cron)}\n`);
      return ExitCodes.ok;
    });
  });

  const del = cmd
    .command("delete")
    .description("delete a cron: no tick fires after it")
    .addArgument(new Argument("<name>"))
    .option("--json", "print {name, deleted} as JSON");
  connectionOptions(del).action(async (name: string, flags: ConnectionFlags & { json?: boolean }) => {
    ctx.exitCode = await withClient(flags, ctx, async (tj) => {
      if (!(await tj.crons.delete(name))) {
        ctx.io.err(`error: cron ${name} not found\n`);
        return ExitCodes.failure;
      }
      ctx.io.out(flags.json ? jsonLine({ name, deleted: true }) : `${name} deleted\n`);
      return ExitCodes.ok;
    });
  });
}

/** The cron's next tick after `now`, as the engine computes it; null for an expression that no longer parses. */
function nextTick(cron: CronDefinition, now: number): Date | null {
  try {
    return parseCron(cron.expression, cron.timezone, "expression").nextRun(new Date(now));
  } catch {
    return null;
  }
}

/** The human view of one cron. */
function cronView(c: CronDefinition): string {
  const next = nextTick(c, Date.now());
  return formatFields([
    ["Name", c.name],
    ["Task", c.taskName],
    ["Expression", `${c.expression} (${c.timezone ?? "UTC"})`],
    ["Next tick", next ? `${isoUtc(next)} (${formatAgo(next)})` : "-"],
    ["Catch-up", c.catchUp],
    ["From", c.source === "worker" ? "a worker's onCrons" : "the API (task.cron)"],
    ["Created", isoUtc(c.createdAt)],
    ...(c.priority ? ([["Priority", String(c.priority)]] as [string, string][]) : []),
    ...(Object.keys(c.additionalMetadata).length > 0
      ? ([
          [
            "Metadata",
            Object.entries(c.additionalMetadata)
              .map(([k, v]) => `${k}=${v}`)
              .join(" "),
          ],
        ] as [string, string][])
      : []),
    ["Input", prettyJson(c.input)],
  ]);
}
