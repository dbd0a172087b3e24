import type { RateLimitDuration } from "@taskjet/sdk";
import { Argument, type Command, Option } from "commander";
import type { ConnectionFlags } from "../config.js";
import { ExitCodes } from "../errors.js";
import { formatTable, jsonLine } from "../output.js";
import { intIn } from "../parse.js";
import { type CliContext, connectionOptions, withClient } from "./common.js";

const DURATIONS = ["SECOND", "MINUTE", "HOUR", "DAY"];

/** `taskjet ratelimits list|set`: the static rate limits tasks name with `rateLimits: [{ staticKey }]`. */
export function registerRateLimits(program: Command, ctx: CliContext): void {
  const cmd = program.command("ratelimits").description("static rate limits");
  const list = cmd
    .command("list")
    .description("list the static rate limits")
    .option("--json", "one JSON object per line");
  connectionOptions(list).action(async (flags: ConnectionFlags & { json?: boolean }) => {
    ctx.exitCode = await withClient(flags, ctx, async (tj, conn) => {
      const limits = await tj.ratelimits.list();
      if (flags.json) for (const l of limits) ctx.io.out(jsonLine(l));
      else if (limits.length === 0) ctx.io.out(`no rate limits in namespace ${conn.namespace}\n`);
      else {
        const rows = limits.map((l) => [l.key, String(l.limit), l.duration]);
        ctx.io.out(`${formatTable(["KEY", "LIMIT", "PER"], rows)}\n`);
      }
      return ExitCodes.ok;
    });
  });
  const set = cmd
    .command("set")
    .description("create or change a static rate limit; runs waiting on it move at once")
    .addArgument(new Argument("<key>", "the key tasks name as staticKey"))
    .requiredOption("--limit <n>", "units allowed per duration", intIn("--limit", 1, 1_000_000_000))
    .addOption(new Option("--duration <unit>", "window").choices(DURATIONS).makeOptionMandatory())
    .option("--json", "print {key, limit, duration} as JSON");
  connectionOptions(set).action(
    async (key: string, flags: ConnectionFlags & { limit: number; duration: RateLimitDuration; json?: boolean }) => {
      ctx.exitCode = await withClient(flags, ctx, async (tj) => {
        const spec = { key, limit: flags.limit, duration: flags.duration };
        await tj.ratelimits.upsert(spec);
        ctx.io.out(flags.json ? jsonLine(spec) : `${key}: ${flags.limit} per ${flags.duration}\n`);
        return ExitCodes.ok;
      });
    },
  );
}
