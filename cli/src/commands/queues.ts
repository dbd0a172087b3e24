import { factsOfState, summarizeQueues } from "@taskjet/engine";
import type { Queue } from "@taskjet/schemas";
import { type RunState, RunStatuses, type WorkerRegistration } from "@taskjet/sdk";
import type { Command } from "commander";
import type { ConnectionFlags } from "../config.js";
import { ExitCodes } from "../errors.js";
import { formatAgo, formatTable, jsonLine, type Style, short } from "../output.js";
import { intIn } from "../parse.js";
import { type CliContext, connectionOptions, withClient } from "./common.js";

/** `taskjet queues`: per task, what waits and what runs, from the runs as `runs.list` reads them. */
export function registerQueues(program: Command, ctx: CliContext): void {
  const cmd = program
    .command("queues")
    .summary("per task: queued depth, oldest queued age, running attempts, why the oldest waits")
    .description(
      "per task: queued depth, oldest queued age, running attempts and why the oldest waits; read as `runs list` " +
        "reads runs (the projection, and the runs created after its checkpoint, from the log)",
    )
    .option("-t, --task <name>", "only this task")
    .option(
      "-n, --limit <n>",
      "read at most this many active runs, newest first",
      intIn("--limit", 1, 1_000_000),
      100_000,
    )
    .option("--json", "one JSON object per task and line");
  connectionOptions(cmd).action(async (flags: ConnectionFlags & { task?: string; limit: number; json?: boolean }) => {
    ctx.exitCode = await withClient(flags, ctx, async (tj, conn) => {
      const [states, workers] = await Promise.all([
        tj.runs.list({
          statuses: [RunStatuses.queued, RunStatuses.running],
          ...(flags.task ? { taskName: flags.task } : {}),
          limit: flags.limit,
        }),
        tj.workers.list(),
      ]);
      const now = Date.now();
      const queues = queuesOf(states, workers, now).filter((q) => !flags.task || q.taskName === flags.task);
      if (states.length === flags.limit) {
        // Newest first: what was cut are the oldest runs, the ones a queue's age is about.
        ctx.io.err(`warning: read the newest ${flags.limit} active runs only; raise --limit for exact counts\n`);
      }
      if (flags.json) for (const q of queues) ctx.io.out(jsonLine(q));
      else if (queues.length === 0) ctx.io.out(`nothing queued or running in namespace ${conn.namespace}\n`);
      else ctx.io.out(`${queuesTable(queues, ctx.style, now)}\n`);
      return ExitCodes.ok;
    });
  });
}

/** The queues of the active runs, as the engine summarizes them. */
export function queuesOf(states: RunState[], workers: WorkerRegistration[], now: number): Queue[] {
  return summarizeQueues(
    states.flatMap((s) => [...factsOfState(s)]),
    workers.map((w) => w.tasks),
    now,
  );
}

function queuesTable(queues: Queue[], style: Style, now: number): string {
  return formatTable(
    ["TASK", "QUEUED", "OLDEST", "RUNNING", "RETRYING", "WORKERS", "OLDEST WAITS ON"],
    queues.map((q) => [
      q.taskName,
      String(q.queued),
      q.oldestQueuedAt ? formatAgo(q.oldestQueuedAt, now) : "-",
      String(q.running),
      String(q.retrying),
      q.workers === 0 ? style.bad("0") : String(q.workers),
      waitCell(q, style),
    ]),
  );
}

function waitCell(q: Queue, style: Style): string {
  if (q.waiting) return style.warn(short(`${q.waiting.reason}: ${q.waiting.detail}`, 80));
  if (q.queued > 0 && q.workers === 0) return style.warn("no live worker has registered this task");
  return "-";
}
