import { type JsonObject, RunCancelledError, type RunOptions, TaskRunError, WaitTimeoutError } from "@taskjet/sdk";
import { Argument, type Command } from "commander";
import { ExitCodes, UsageError } from "../errors.js";
import { indent, jsonLine, prettyJson } from "../output.js";
import { collectKeyValue, intIn, parseDuration, parseJsonObject, parseRunId, parseTaskName } from "../parse.js";
import { triggerBulk } from "./bulk.js";
import { type CliContext, connectionOptions, withClient } from "./common.js";
import { parseTime } from "./scheduled.js";

interface TriggerFlags {
  nats?: string;
  namespace?: string;
  input: JsonObject;
  wait?: boolean;
  timeout?: number;
  json?: boolean;
  metadata: Record<string, string>;
  runId?: string;
  priority?: number;
  bulk?: string;
  batchId: string;
  at?: Date;
  delay?: number;
  idempotencyKey?: string;
}

/** `taskjet trigger <task>`. */
export function registerTrigger(program: Command, ctx: CliContext): void {
  const cmd = program
    .command("trigger")
    .description("trigger a run of a task; prints its run id, or with --wait its output")
    .addArgument(new Argument("<task>", "task name").argParser(parseTaskName))
    .option("-i, --input <json>", "input, a JSON object", parseJsonObject, {})
    .option("-w, --wait", "wait for the run to finish and print its output (exit 1 when it failed)")
    .option("--timeout <duration>", "with --wait: stop waiting after this long, e.g. 30s", parseDuration("--timeout"))
    .option("-m, --metadata <key=value>", "metadata kept with the run; repeat for more", collectKeyValue, {})
    .option("--run-id <id>", "run id to use: triggering the same id twice makes one run", parseRunId)
    .option("--priority <n>", "1 (low) to 3 (high)", intIn("--priority", 1, 3))
    .option("--idempotency-key <key>", "a second trigger with this key within the task's ttl returns the first run")
    .option("--at <time>", "schedule the run to start at this ISO date-time", parseTime("--at"))
    .option("--delay <duration>", "schedule the run to start after this long, e.g. 10m", parseDuration("--delay"))
    .option("--bulk <file.jsonl>", "one run per line of a JSON Lines file (each line an input); resumable")
    .option(
      "--batch-id <id>",
      "with --bulk: part of each run id; change it to send the same file as new runs",
      "default",
    )
    .option("--json", "print JSON");
  connectionOptions(cmd).action(async (task: string, flags: TriggerFlags) => {
    ctx.exitCode = await trigger(task, flags, ctx);
  });
}

async function trigger(task: string, flags: TriggerFlags, ctx: CliContext): Promise<0 | 1> {
  // A flag that would be ignored is refused: the user meant something by it.
  if (flags.timeout !== undefined && !flags.wait) throw new UsageError("--timeout goes with --wait");
  if (flags.batchId !== "default" && !flags.bulk) throw new UsageError("--batch-id goes with --bulk");
  ctx.flags = {
    at: flags.delay !== undefined ? "--delay" : "--at",
    input: "--input",
    runId: "--run-id",
    "options.runId": "--run-id",
    "options.additionalMetadata": "--metadata",
    "options.priority": "--priority",
    "options.idempotencyKey": "--idempotency-key",
  };
  const { io } = ctx;
  const options: RunOptions = {
    additionalMetadata: flags.metadata,
    ...(flags.runId ? { runId: flags.runId } : {}),
    ...(flags.priority ? { priority: flags.priority } : {}),
    ...(flags.idempotencyKey !== undefined ? { idempotencyKey: flags.idempotencyKey } : {}),
  };
  if (flags.bulk) {
    if (flags.runId || flags.wait) throw new UsageError("--bulk does not go with --run-id or --wait");
    // A bulk trigger starts every line now (runManyNoWait schedules nothing), and one idempotency key for every line
    // would make one run of them all: refused rather than ignored.
    if (Object.keys(flags.input).length > 0) {
      throw new UsageError("--bulk does not go with --input: each line of the file is a run's input");
    }
    const refused = [
      ...(flags.at ? ["--at"] : []),
      ...(flags.delay !== undefined ? ["--delay"] : []),
      ...(flags.idempotencyKey !== undefined ? ["--idempotency-key"] : []),
    ];
    if (refused.length > 0) {
      throw new UsageError(
        `--bulk does not go with ${refused.join(" or ")}: each line starts at once, with a run id of its own (resending the file creates no run twice)`,
      );
    }
    const path = flags.bulk;
    return withClient(flags, ctx, async (tj) => {
      const { sent, failed } = await triggerBulk(tj, ctx, task, path, {
        batch: flags.batchId,
        json: flags.json === true,
        runOptions: options,
      });
      if (!flags.json) {
        io.out(`${sent} runs of ${task} accepted from ${path}${failed ? `, ${failed} refused` : ""}\n`);
        if (ctx.io.interactive) io.err("run ids come from the file's lines: sending it again creates no run twice\n");
      }
      return failed > 0 ? ExitCodes.failure : ExitCodes.ok;
    });
  }
  if (flags.at && flags.delay) throw new UsageError("--at and --delay do not go together");
  const startAt = flags.at ?? (flags.delay ? new Date(Date.now() + flags.delay) : undefined);
  if (startAt && flags.wait) throw new UsageError("--wait does not go with --at or --delay: follow it with runs get");
  return withClient(flags, ctx, async (tj, conn) => {
    if (startAt) {
      const ref = await tj.schedule(task, startAt, flags.input, options);
      if (flags.json) io.out(jsonLine({ runId: ref.runId, task, namespace: conn.namespace, scheduledAt: startAt }));
      else io.out(`${ref.runId}\n`);
      if (ctx.io.interactive && !flags.json)
        io.err(`scheduled for ${startAt.toISOString()}: taskjet scheduled get ${ref.runId}\n`);
      return ExitCodes.ok;
    }
    const ref = await tj.runNoWait(task, flags.input, options);
    if (!flags.wait) {
      if (flags.json) io.out(jsonLine({ runId: ref.runId, task, namespace: conn.namespace, existing: ref.existing }));
      else {
        io.out(`${ref.runId}\n`);
        if (ctx.io.interactive) io.err(`follow it with: taskjet runs history ${ref.runId}\n`);
      }
      return ExitCodes.ok;
    }
    // A run ending as the time runs out is that end, not a timeout (`result` reads the log then).
    const outcome = await ref.result(flags.timeout ? { timeoutMs: flags.timeout } : {}).then(
      (output) => ({ ok: true as const, output }),
      (error: unknown) => ({ ok: false as const, error }),
    );
    if (!outcome.ok && outcome.error instanceof WaitTimeoutError) {
      const status = await ref.status().catch(() => "unknown");
      const message = `run ${ref.runId} is still ${status} after ${flags.timeout} ms (it goes on: taskjet runs get ${ref.runId})`;
      if (flags.json) io.out(jsonLine({ runId: ref.runId, status, timedOut: true }));
      io.err(`error: ${message}\n`);
      return ExitCodes.failure;
    }
    if (outcome.ok) {
      if (flags.json) io.out(jsonLine({ runId: ref.runId, status: "COMPLETED", output: outcome.output }));
      else {
        io.out(`${prettyJson(outcome.output)}\n`);
        if (ctx.io.interactive) io.err(`run ${ref.runId} completed (taskjet runs history ${ref.runId})\n`);
      }
      return ExitCodes.ok;
    }
    if (outcome.error instanceof RunCancelledError) {
      if (flags.json) io.out(jsonLine({ runId: ref.runId, status: "CANCELLED", reason: outcome.error.reason }));
      io.err(`error: ${outcome.error.message}\n`);
      return ExitCodes.failure;
    }
    if (!(outcome.error instanceof TaskRunError)) throw outcome.error;
    const { taskError } = outcome.error;
    if (flags.json) io.out(jsonLine({ runId: ref.runId, status: "FAILED", error: taskError }));
    io.err(`error: ${outcome.error.message}\n`);
    if (taskError.stack) io.err(`${indent(taskError.stack)}\n`);
    return ExitCodes.failure;
  });
}
