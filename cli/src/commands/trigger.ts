import { type JsonObject, type RunOptions, TaskRunError } from "@taskjet/sdk";
import { Argument, type Command } from "commander";
import { ExitCodes } from "../errors.js";
import { indent, jsonLine, prettyJson } from "../output.js";
import { collectKeyValue, intIn, parseDuration, parseJsonObject, parseRunId, parseTaskName } from "../parse.js";
import { type CliContext, connectionOptions, withClient, within } from "./common.js";

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
    .option("--json", "print JSON");
  connectionOptions(cmd).action(async (task: string, flags: TriggerFlags) => {
    ctx.exitCode = await trigger(task, flags, ctx);
  });
}

async function trigger(task: string, flags: TriggerFlags, ctx: CliContext): Promise<0 | 1> {
  const { io } = ctx;
  const options: RunOptions = {
    additionalMetadata: flags.metadata,
    ...(flags.runId ? { runId: flags.runId } : {}),
    ...(flags.priority ? { priority: flags.priority } : {}),
  };
  return withClient(flags, ctx, async (tj, conn) => {
    const ref = await tj.runNoWait(task, flags.input, options);
    if (!flags.wait) {
      if (flags.json) io.out(jsonLine({ runId: ref.runId, task, namespace: conn.namespace }));
      else {
        io.out(`${ref.runId}\n`);
        if (ctx.io.interactive) io.err(`follow it with: taskjet runs history ${ref.runId}\n`);
      }
      return ExitCodes.ok;
    }
    const result = ref.result().then(
      (output) => ({ ok: true as const, output }),
      (error: unknown) => ({ ok: false as const, error }),
    );
    const done = flags.timeout ? await within(result, flags.timeout) : { value: await result };
    if (!done) {
      const status = await ref.status().catch(() => "unknown");
      const message = `run ${ref.runId} is still ${status} after ${flags.timeout} ms (it goes on: taskjet runs get ${ref.runId})`;
      if (flags.json) io.out(jsonLine({ runId: ref.runId, status, timedOut: true }));
      io.err(`error: ${message}\n`);
      return ExitCodes.failure;
    }
    const outcome = done.value;
    if (outcome.ok) {
      if (flags.json) io.out(jsonLine({ runId: ref.runId, status: "COMPLETED", output: outcome.output }));
      else {
        io.out(`${prettyJson(outcome.output)}\n`);
        if (ctx.io.interactive) io.err(`run ${ref.runId} completed (taskjet runs history ${ref.runId})\n`);
      }
      return ExitCodes.ok;
    }
    if (!(outcome.error instanceof TaskRunError)) throw outcome.error;
    const { taskError } = outcome.error;
    if (flags.json) io.out(jsonLine({ runId: ref.runId, status: "FAILED", error: taskError }));
    io.err(`error: ${outcome.error.message}\n`);
    if (taskError.stack) io.err(`${indent(taskError.stack)}\n`);
    return ExitCodes.failure;
  });
}
