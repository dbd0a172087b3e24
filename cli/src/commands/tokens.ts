import { Argument, type Command } from "commander";
import type { ConnectionFlags } from "../config.js";
import { ExitCodes } from "../errors.js";
import { formatTable, jsonLine } from "../output.js";
import { type CliContext, connectionOptions, withClient } from "./common.js";

/** `taskjet tokens create|list|revoke`: bearer tokens of the engine's HTTP API, per namespace, stored hashed. */
export function registerTokens(program: Command, ctx: CliContext): void {
  const cmd = program
    .command("tokens")
    .description("bearer tokens of the engine's HTTP API (REST, dashboard), per namespace; stored hashed");

  const create = cmd
    .command("create")
    .description("make a token and print it: it is shown this once")
    .option("--name <name>", "name to list and revoke it by (default: a random one)")
    .option("--json", "print JSON");
  connectionOptions(create).action(async (flags: ConnectionFlags & { name?: string; json?: boolean }) => {
    ctx.flags = { name: "--name" };
    ctx.exitCode = await withClient(flags, ctx, async (tj, conn) => {
      const made = await tj.apiTokens.create(flags.name === undefined ? {} : { name: flags.name });
      if (flags.json) ctx.io.out(jsonLine(made));
      else {
        ctx.io.out(`${made.token}\n`);
        ctx.io.err(
          `token ${made.name} for namespace ${conn.namespace}: shown once, store it now (Authorization: Bearer <token>)\n`,
        );
      }
      return ExitCodes.ok;
    });
  });

  const list = cmd
    .command("list")
    .description("list the namespace's tokens (names only: tokens are not stored)")
    .option("--json", "one JSON object per line");
  connectionOptions(list).action(async (flags: ConnectionFlags & { json?: boolean }) => {
    ctx.exitCode = await withClient(flags, ctx, async (tj, conn) => {
      const tokens = await tj.apiTokens.list();
      if (flags.json) for (const t of tokens) ctx.io.out(jsonLine(t));
      else if (tokens.length === 0) ctx.io.out(`no API tokens in namespace ${conn.namespace}\n`);
      else
        ctx.io.out(
          `${formatTable(
            ["NAME", "CREATED"],
            tokens.map((t) => [t.name, t.createdAt]),
          )}\n`,
        );
      return ExitCodes.ok;
    });
  });

  const revoke = cmd
    .command("revoke")
    .description("revoke a token: the engine refuses it from then on")
    .addArgument(new Argument("<name>"))
    .option("--json", "print {name, revoked} as JSON");
  connectionOptions(revoke).action(async (name: string, flags: ConnectionFlags & { json?: boolean }) => {
    ctx.exitCode = await withClient(flags, ctx, async (tj) => {
      if (await tj.apiTokens.revoke(name)) {
        ctx.io.out(flags.json ? jsonLine({ name, revoked: true }) : `${name} revoked\n`);
        return ExitCodes.ok;
      }
      ctx.io.err(`error: no token ${name}\n`);
      return ExitCodes.failure;
    });
  });
}
