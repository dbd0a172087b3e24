import type { WebhookSpec } from "@taskjet/sdk";
import { Argument, type Command, Option } from "commander";
import type { ConnectionFlags } from "../config.js";
import { ExitCodes, UsageError } from "../errors.js";
import { formatTable, jsonLine } from "../output.js";
import { type CliContext, connectionOptions, withClient } from "./common.js";

interface CreateFlags extends ConnectionFlags {
  eventKey?: string;
  eventKeyExpression?: string;
  auth: "hmac" | "apiKey" | "basic";
  secret?: string;
  header?: string;
  encoding?: "hex" | "base64";
  prefix?: string;
  key?: string;
  username?: string;
  password?: string;
  json?: boolean;
}

/** `taskjet webhooks create|list|delete`: HTTP endpoints on the engine that turn requests into events. */
export function registerWebhooks(program: Command, ctx: CliContext): void {
  const cmd = program.command("webhooks").description("webhooks served by the engine's HTTP server");

  const create = cmd
    .command("create")
    .description("create or replace a webhook; prints the path to POST to")
    .addArgument(new Argument("<name>"))
    .option("--event-key <key>", "key of the events it makes")
    .option("--event-key-expression <cel>", "or a CEL expression over body and headers computing it")
    .addOption(
      new Option("--auth <type>", "how senders authenticate")
        .choices(["hmac", "apiKey", "basic"])
        .makeOptionMandatory(),
    )
    .option("--secret <secret>", "hmac: the shared secret")
    .option("--header <name>", "hmac / apiKey: the header carrying the signature or key")
    .addOption(new Option("--encoding <enc>", "hmac: signature encoding").choices(["hex", "base64"]))
    .option("--prefix <text>", "hmac: text before the signature, e.g. sha256=")
    .option("--key <key>", "apiKey: the key (stored hashed)")
    .option("--username <user>", "basic: the user name")
    .option("--password <password>", "basic: the password (stored hashed)")
    .option("--json", "print JSON");
  connectionOptions(create).action(async (name: string, flags: CreateFlags) => {
    ctx.flags = {
      eventKey: "--event-key (or --event-key-expression)",
      eventKeyExpression: "--event-key-expression",
      "auth.secret": "--secret",
      "auth.header": "--header",
      "auth.prefix": "--prefix",
      "auth.key": "--key",
      "auth.username": "--username",
      "auth.password": "--password",
    };
    const auth = authOf(flags);
    ctx.exitCode = await withClient(flags, ctx, async (tj) => {
      const info = await tj.webhooks.create({
        name,
        ...(flags.eventKey ? { eventKey: flags.eventKey } : {}),
        ...(flags.eventKeyExpression ? { eventKeyExpression: flags.eventKeyExpression } : {}),
        auth,
      });
      ctx.io.out(flags.json ? jsonLine(info) : `${info.path}\n`);
      return ExitCodes.ok;
    });
  });

  const list = cmd
    .command("list")
    .description("list webhooks (no secrets)")
    .option("--json", "one JSON object per line");
  connectionOptions(list).action(async (flags: ConnectionFlags & { json?: boolean }) => {
    ctx.exitCode = await withClient(flags, ctx, async (tj, conn) => {
      const hooks = await tj.webhooks.list();
      if (flags.json) for (const h of hooks) ctx.io.out(jsonLine(h));
      else if (hooks.length === 0) ctx.io.out(`no webhooks in namespace ${conn.namespace}\n`);
      else {
        const rows = hooks.map((h) => [h.name, h.eventKey ?? h.eventKeyExpression ?? "-", h.auth.type, h.path]);
        ctx.io.out(`${formatTable(["NAME", "EVENT KEY", "AUTH", "PATH"], rows)}\n`);
      }
      return ExitCodes.ok;
    });
  });

  const del = cmd
    .command("delete")
    .description("delete a webhook: its URL answers 404")
    .addArgument(new Argument("<name>"))
    .option("--json", "print {name, deleted} as JSON");
  connectionOptions(del).action(async (name: string, flags: ConnectionFlags & { json?: boolean }) => {
    ctx.exitCode = await withClient(flags, ctx, async (tj) => {
      if (!(await tj.webhooks.delete(name))) {
        ctx.io.err(`error: webhook ${name} not found\n`);
        return ExitCodes.failure;
      }
      ctx.io.out(flags.json ? jsonLine({ name, deleted: true }) : `${name} deleted\n`);
      return ExitCodes.ok;
    });
  });
}

/** The auth object from the flags of its type; a missing one is a usage error. */
function authOf(flags: CreateFlags): WebhookSpec["auth"] {
  const need = (value: string | undefined, flag: string): string => {
    if (!value) throw new UsageError(`--auth ${flags.auth} needs ${flag}`);
    return value;
  };
  // A flag of another kind of auth would be dropped: refused, as the user meant something by it.
  const takes = {
    hmac: ["secret", "header", "encoding", "prefix"],
    apiKey: ["key", "header"],
    basic: ["username", "password"],
  };
  const stray = (["secret", "header", "encoding", "prefix", "key", "username", "password"] as const).filter(
    (f) => flags[f] !== undefined && !takes[flags.auth].includes(f),
  );
  if (stray.length > 0) throw new UsageError(`--auth ${flags.auth} does not take --${stray.join(", --")}`);
  if (flags.auth === "hmac") {
    return {
      type: "hmac",
      secret: need(flags.secret, "--secret"),
      ...(flags.header ? { header: flags.header } : {}),
      ...(flags.encoding ? { encoding: flags.encoding } : {}),
      ...(flags.prefix ? { prefix: flags.prefix } : {}),
    };
  }
  if (flags.auth === "apiKey") {
    return { type: "apiKey", key: need(flags.key, "--key"), ...(flags.header ? { header: flags.header } : {}) };
  }
  return { type: "basic", username: need(flags.username, "--username"), password: need(flags.password, "--password") };
}
