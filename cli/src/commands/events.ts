import { Argument, type Command } from "commander";
import type { ConnectionFlags } from "../config.js";
import { ExitCodes } from "../errors.js";
import { formatAgo, formatTable, jsonLine, short } from "../output.js";
import { collectKeyValue, intIn, parseJsonObject } from "../parse.js";
import { type CliContext, connectionOptions, withClient } from "./common.js";

/** `taskjet events push|list`: pushed events and the runs they started. */
export function registerEvents(program: Command, ctx: CliContext): void {
  const cmd = program.command("events").description("pushed events (onEvents triggers)");

  const push = cmd
    .command("push")
    .description("push an event: every task whose onEvents matches gets one run; prints the event id")
    .addArgument(new Argument("<key>", "event key, e.g. user:created"))
    .option("-p, --payload <json>", "payload, a JSON object (the runs' input)", parseJsonObject, {})
    .option(
      "-m, --metadata <key=value>",
      "metadata kept with the event and its runs; repeat for more",
      collectKeyValue,
      {},
    )
    .option("--priority <n>", "priority of the runs it starts, 1 (low) to 3 (high)", intIn("--priority", 1, 3))
    .option("--json", "print JSON");
  connectionOptions(push).action(
    async (
      key: string,
      flags: ConnectionFlags & {
        payload: Record<string, unknown>;
        metadata: Record<string, string>;
        priority?: 1 | 2 | 3;
        json?: boolean;
      },
    ) => {
      ctx.exitCode = await withClient(flags, ctx, async (tj) => {
        const { eventId } = await tj.events.push(key, flags.payload, {
          additionalMetadata: flags.metadata,
          ...(flags.priority ? { priority: flags.priority } : {}),
        });
        ctx.io.out(flags.json ? jsonLine({ eventId, key }) : `${eventId}\n`);
        return ExitCodes.ok;
      });
    },
  );

  const list = cmd
    .command("list")
    .description("the newest events, with the runs each started")
    .option("-k, --key <key>", "only events of this key")
    .option("-n, --limit <n>", "at most this many", intIn("--limit", 1, 10_000), 20)
    .option("--json", "one JSON object per line");
  connectionOptions(list).action(async (flags: ConnectionFlags & { key?: string; limit: number; json?: boolean }) => {
    ctx.flags = { key: "--key", limit: "--limit" };
    ctx.exitCode = await withClient(flags, ctx, async (tj, conn) => {
      const events = await tj.events.list({ ...(flags.key ? { key: flags.key } : {}), limit: flags.limit });
      if (flags.json) for (const e of events) ctx.io.out(jsonLine(e));
      else if (events.length === 0) ctx.io.out(`no events in namespace ${conn.namespace}\n`);
      else {
        const now = Date.now();
        const rows = events.map((e) => [
          e.id,
          e.key,
          formatAgo(e.at, now),
          short(JSON.stringify(e.payload), 40),
          e.runs.map((r) => `${r.taskName}:${r.runId}`).join(" ") || "-",
        ]);
        ctx.io.out(`${formatTable(["EVENT", "KEY", "AT", "PAYLOAD", "RUNS"], rows)}\n`);
      }
      return ExitCodes.ok;
    });
  });
}
