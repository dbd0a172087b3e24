import { Argument, type Command } from "commander";
import type { ConnectionFlags } from "../config.js";
import { ExitCodes } from "../errors.js";
import { formatTable } from "../output.js";
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
        const rows = crons.map((c) => [c.name, c.taskName, c.expression, c.timezone ?? "UTC", c.catchUp, c.source]);
        ctx.io.out(`${formatTable(["NAME", "TASK", "EXPRESSION", "ZONE", "CATCH-UP", "FROM"], rows)}\n`);
      }
      return ExitCodes.ok;
    });
  });

  const get = cmd.command("get").description("one cron, as JSON").addArgument(new Argument("<name>"));
  connectionOptions(get).action(async (name: string, flags: ConnectionFlags) => {
    ctx.exitCode = await withClient(flags, ctx, async (tj) => {
      const cron = await tj.crons.get(name);
      if (!cron) {
        ctx.io.err(`error: cron ${name} not found\n`);
        return ExitCodes.failure;
      }
      ctx.io.out(`${JSON.stringify(cron, null, 2)}\n`);
      return ExitCodes.ok;
    });
  });

  const del = cmd
    .command("delete")
    .description("delete a cron: no tick fires after it")
    .addArgument(new Argument("<name>"));
  connectionOptions(del).action(async (name: string, flags: ConnectionFlags) => {
    ctx.exitCode = await withClient(flags, ctx, async (tj) => {
      if (!(await tj.crons.delete(name))) {
        ctx.io.err(`error: cron ${name} not found\n`);
        return ExitCodes.failure;
      }
      ctx.io.out(`${name} deleted\n`);
      return ExitCodes.ok;
    });
  });
}
