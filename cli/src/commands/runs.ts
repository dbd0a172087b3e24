import { expandEvent, HISTORY_WARN_EVENTS, parseIsoTime, RUN_STATUS_VALUES } from "@taskjet/schemas";
import type { HistoryEntry, RunFilters, RunState, RunStatus, TaskjetEvent } from "@taskjet/sdk";
import { SingleBar } from "cli-progress";
import { Argument, type Command, InvalidArgumentError } from "commander";
import { completeValues } from "../completion.js";
import type { ConnectionFlags } from "../config.js";
import { ExitCodes, UsageError } from "../errors.js";
import {
  createStyle,
  formatAgo,
  formatBytes,
  formatDuration,
  formatFields,
  formatTable,
  isoUtc,
  jsonLine,
  jsonSize,
  msBetween,
  padRow,
  prettyJson,
  type Style,
  short,
} from "../output.js";
import { collectStatuses, intIn, parseRunIdArgument, parseTimeOrAgo } from "../parse.js";
import { type CliContext, connectionOptions, withClient } from "./common.js";

/** Variadic run ids, each checked like a single one. */
function collectRunIds(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), parseRunIdArgument(value)];
}

/** `taskjet runs list|get|history`. */
export function registerRuns(program: Command, ctx: CliContext): void {
  const runs = program.command("runs").description("list and inspect runs");

  const list = runs
    .command("list")
    .description("list runs, newest first")
    .option("-s, --status <statuses>", "only runs in these statuses, comma-separated or repeated", collectStatuses)
    .option("-t, --task <name>", "only runs of this task")
    .option("-n, --limit <n>", "at most this many", intIn("--limit", 1, 100_000), 50)
    .option("--json", "print a JSON array of run states");
  completeValues(list, "--status", RUN_STATUS_VALUES);
  connectionOptions(list).action(
    async (flags: ConnectionFlags & { status?: RunStatus[]; task?: string; limit: number; json?: boolean }) => {
      ctx.exitCode = await withClient(flags, ctx, async (tj, conn) => {
        const states = await tj.runs.list({
          ...(flags.status ? { statuses: flags.status } : {}),
          ...(flags.task ? { taskName: flags.task } : {}),
          limit: flags.limit,
        });
        if (flags.json) ctx.io.out(`${JSON.stringify(states, null, 2)}\n`);
        else if (states.length === 0) ctx.io.out(`no runs in namespace ${conn.namespace}\n`);
        else ctx.io.out(`${runsTable(states, ctx.style)}\n`);
        return ExitCodes.ok;
      });
    },
  );

  const get = runs
    .command("get")
    .description("show a run: status, times, input, output or error")
    .addArgument(new Argument("<id>", "run id").argParser(parseRunIdArgument))
    .option("--json", "print the run state as JSON");
  connectionOptions(get).action(async (id: string, flags: ConnectionFlags & { json?: boolean }) => {
    ctx.exitCode = await withClient(flags, ctx, async (tj) => {
      const state = await tj.runs.get(id);
      ctx.io.out(flags.json ? `${JSON.stringify(state, null, 2)}\n` : `${runView(state, ctx.style)}\n`);
      return ExitCodes.ok;
    });
  });

  const cancel = selectionOptions(
    runs
      .command("cancel")
      .description("cancel runs by id, or every unfinished run matching --status/--task/--since/--until")
      .addArgument(new Argument("[ids...]", "run ids").argParser(collectRunIds)),
    "cancel",
    "QUEUED,RUNNING",
  )
    .option("--reason <text>", "recorded in history", "cancelled from the CLI")
    .option("--json", "print {cancelled, alreadyFinished} as JSON");
  connectionOptions(cancel).action(
    async (ids: string[] | undefined, flags: ConnectionFlags & SelectionFlags & { reason: string; json?: boolean }) => {
      const selection = selectionOf(ids, flags);
      ctx.exitCode = await withClient(flags, ctx, async (tj) => {
        const result = await tj.runs.cancel({ ...selection, reason: flags.reason });
        if (flags.json) ctx.io.out(`${JSON.stringify(result)}\n`);
        else {
          for (const id of result.cancelled) ctx.io.out(`cancelled ${id}\n`);
          for (const id of result.alreadyFinished) ctx.io.out(`already finished ${id}\n`);
          for (const id of result.notFound) ctx.io.err(`error: run ${id} not found\n`);
          if (result.cancelled.length + result.alreadyFinished.length + result.notFound.length === 0) {
            ctx.io.out("no matching runs\n");
          }
        }
        return result.notFound.length > 0 ? ExitCodes.failure : ExitCodes.ok;
      });
    },
  );

  const replay = selectionOptions(
    runs
      .command("replay")
      .description("re-run finished runs with their recorded input, as new attempts in the same history")
      .addArgument(new Argument("[ids...]", "run ids").argParser(collectRunIds)),
    "replay",
    "FAILED,CANCELLED",
  )
    .option("--from <task>", "workflows: re-run this task and its descendants, keeping the other outputs")
    .option("--reason <text>", "recorded in history", "replayed from the CLI")
    .option("--json", "print {replayed, refused} as JSON");
  connectionOptions(replay).action(
    async (
      ids: string[] | undefined,
      flags: ConnectionFlags & SelectionFlags & { from?: string; reason: string; json?: boolean },
    ) => {
      const selection = selectionOf(ids, flags);
      ctx.exitCode = await withClient(flags, ctx, async (tj) => {
        const bar = ctx.io.interactive
          ? new SingleBar({ format: "{bar} {value}/{total} runs  {eta_formatted} left", hideCursor: true })
          : undefined;
        let result: Awaited<ReturnType<typeof tj.runs.replay>>;
        try {
          result = await tj.runs.replay({
            ...selection,
            ...(flags.from ? { from: flags.from } : {}),
            reason: flags.reason,
            onProgress: (done, total) => {
              if (done === 1) bar?.start(total, 0);
              bar?.update(done);
            },
          });
        } finally {
          bar?.stop();
        }
        if (flags.json) ctx.io.out(`${JSON.stringify(result)}\n`);
        else {
          for (const id of result.replayed) ctx.io.out(`replayed ${id}\n`);
          for (const r of result.refused) ctx.io.out(`refused ${r.runId}: ${r.reason}\n`);
          if (result.replayed.length + result.refused.length === 0) ctx.io.out("no matching runs\n");
        }
        // Refusals of named runs are errors; a filter's refusals are runs that changed meanwhile.
        return result.refused.length > 0 && !flags.filter ? ExitCodes.failure : ExitCodes.ok;
      });
    },
  );

  const state = runs
    .command("state")
    .description("a run's state after any event of its history (time travel), folded by the engine's reducer")
    .addArgument(new Argument("<id>", "run id").argParser(parseRunIdArgument))
    .option("--at <seq|time>", "a stream sequence (as runs history shows) or an ISO time; default: now", parseAt)
    .option("--json", "print the state as JSON");
  connectionOptions(state).action(
    async (id: string, flags: ConnectionFlags & { at?: { seq: number } | { time: Date }; json?: boolean }) => {
      ctx.flags = { at: "--at" };
      ctx.exitCode = await withClient(flags, ctx, async (tj) => {
        // A time goes as ISO text: the SDK's "no event at or before" names it as given, never as Date.toString().
        const at = flags.at && "time" in flags.at ? { time: flags.at.time.toISOString() } : flags.at;
        const s = at ? await tj.runs.stateAt(id, at) : await tj.runs.get(id);
        if (flags.json) ctx.io.out(`${JSON.stringify(s, null, 2)}\n`);
        else
          ctx.io.out(`${runView(s, ctx.style)}\n  (as of sequence ${s.lastSeq}, event ${s.eventCount} of the run)\n`);
        return ExitCodes.ok;
      });
    },
  );

  const logs = runs
    .command("logs")
    .description("a run's task log lines (ctx.logger), every attempt's, in order")
    .addArgument(new Argument("<id>", "run id").argParser(parseRunIdArgument))
    .option("-f, --follow", "keep printing new lines until the run ends")
    .option("--json", "print one JSON object per line");
  connectionOptions(logs).action(async (id: string, flags: ConnectionFlags & { json?: boolean; follow?: boolean }) => {
    ctx.exitCode = await withClient(flags, ctx, async (tj) => {
      for await (const line of flags.follow ? tj.logs.follow(id) : await tj.logs.list(id)) {
        if (flags.json) ctx.io.out(jsonLine(line));
        else {
          const fields = line.fields ? ` ${JSON.stringify(line.fields)}` : "";
          ctx.io.out(
            `${line.at} ${line.level.toUpperCase().padEnd(5)} attempt ${line.attempt} ${line.message}${fields}\n`,
          );
        }
      }
      return ExitCodes.ok;
    });
  });

  const history = runs
    .command("history")
    .description("show a run's history as a timeline")
    .addArgument(new Argument("<id>", "run id").argParser(parseRunIdArgument))
    .option("-f, --follow", "keep printing new events until the run ends")
    .option("--json", "print one JSON object per event (JSON Lines)");
  connectionOptions(history).action(
    async (id: string, flags: ConnectionFlags & { json?: boolean; follow?: boolean }) => {
      ctx.exitCode = await withClient(flags, ctx, async (tj) => {
        const entries = warnWhenLong(tj.runs.history(id, { follow: flags.follow === true }), id, ctx);
        const timeline = new Timeline(ctx.style);
        if (flags.json) {
          for await (const entry of entries) ctx.io.out(jsonLine(entry));
        } else if (flags.follow) {
          // The header comes with the first event: a run that does not exist prints only its error.
          let header = false;
          for await (const entry of entries) {
            if (!header) ctx.io.out(`${padRow(HISTORY_HEADERS, FOLLOW_WIDTHS)}\n`);
            header = true;
            for (const row of timeline.rows(entry)) ctx.io.out(`${padRow(row, FOLLOW_WIDTHS)}\n`);
          }
        } else {
          const rows: string[][] = [];
          for await (const entry of entries) rows.push(...timeline.rows(entry));
          ctx.io.out(`${formatTable(HISTORY_HEADERS, rows)}\n`);
        }
        return ExitCodes.ok;
      });
    },
  );
}

/** Passes a history through, saying on stderr once it reaches the length histories should stay below. */
async function* warnWhenLong(
  entries: AsyncIterable<HistoryEntry>,
  runId: string,
  ctx: CliContext,
): AsyncGenerator<HistoryEntry> {
  let n = 0;
  for await (const entry of entries) {
    if (++n === HISTORY_WARN_EVENTS) {
      ctx.io.err(
        `warning: run ${runId} has ${HISTORY_WARN_EVENTS.toLocaleString("en")} events or more in its history; ` +
          "reading and folding it slows down as it grows (README: History limits)\n",
      );
    }
    yield entry;
  }
}

interface SelectionFlags {
  filter?: boolean;
  status?: RunStatus[];
  task?: string;
  since?: Date;
  until?: Date;
}

/** The flags of a bulk command that acts on run ids or on every run matching filters. */
function selectionOptions(cmd: Command, verb: string, defaultStatuses: string): Command {
  cmd
    .option("--filter", `${verb} every run matching --status/--task/--since/--until instead of ids`)
    .option(
      "-s, --status <statuses>",
      `with --filter: only runs in these statuses (default ${defaultStatuses})`,
      collectStatuses,
    )
    .option("-t, --task <name>", "with --filter: only runs of this task or workflow")
    .option(
      "--since <time|ago>",
      "with --filter: created at or after (ISO time, or 1d, 6h, 30m ago)",
      parseTimeOrAgo("--since"),
    )
    .option("--until <time|ago>", "with --filter: created before", parseTimeOrAgo("--until"));
  return completeValues(cmd, "--status", RUN_STATUS_VALUES);
}

/** Run ids, or the filters: one of them. */
function selectionOf(ids: string[] | undefined, flags: SelectionFlags): { ids: string[] } | { filters: RunFilters } {
  if (!flags.filter && (!ids || ids.length === 0)) throw new UsageError("give run ids, or --filter");
  if (flags.filter && ids && ids.length > 0) throw new UsageError("give run ids or --filter, not both");
  if (!flags.filter) {
    // Filters without --filter would be ignored: the ids alone would be acted on.
    const filters = (["status", "task", "since", "until"] as const).filter((f) => flags[f] !== undefined);
    if (filters.length > 0) throw new UsageError(`--${filters.join(", --")} go with --filter, not with run ids`);
    return { ids: ids ?? [] };
  }
  return {
    filters: {
      ...(flags.status ? { statuses: flags.status } : {}),
      ...(flags.task ? { taskName: flags.task } : {}),
      ...(flags.since ? { since: flags.since } : {}),
      ...(flags.until ? { until: flags.until } : {}),
    },
  };
}

function runsTable(states: RunState[], style: Style): string {
  const now = Date.now();
  return formatTable(
    ["RUN ID", "TASK", "STATUS", "CREATED", "DURATION"],
    states.map((s) => [
      s.runId,
      s.workflowName || "-",
      style.status(s.status),
      formatAgo(s.createdAt, now),
      formatDuration(msBetween(s.createdAt, s.finishedAt)),
    ]),
  );
}

/** The human view of one run. */
export function runView(s: RunState, style: Style = createStyle(false)): string {
  const fields: [string, string][] = [
    ["Run", s.runId],
    ["Task", s.workflowName || "-"],
    ["Status", style.status(s.status)],
    ["Created", isoUtc(s.createdAt)],
    ...(s.scheduledAt ? ([["Starts", isoUtc(s.scheduledAt)]] as [string, string][]) : []),
    ["Started", isoUtc(s.startedAt)],
    ["Finished", isoUtc(s.finishedAt)],
  ];
  const waited = msBetween(s.createdAt, s.startedAt);
  const ran = msBetween(s.startedAt, s.finishedAt);
  if (s.finishedAt) {
    const parts = [
      waited !== undefined ? `queued ${formatDuration(waited)}` : "",
      ran !== undefined ? `ran ${formatDuration(ran)}` : "",
    ];
    const detail = parts.filter((p) => p !== "").join(", ");
    fields.push(["Duration", `${formatDuration(msBetween(s.createdAt, s.finishedAt))}${detail ? ` (${detail})` : ""}`]);
  }
  for (const t of s.tasks) {
    const label = s.tasks.length > 1 ? `Task ${t.taskName}` : "Attempt";
    const worker = t.workerName ? `, worker ${t.workerName} (${t.workerId ?? "?"})` : "";
    fields.push([label, `${s.tasks.length > 1 ? `${style.status(t.status)}, attempt ` : ""}${t.attempt}${worker}`]);
    if (t.retry) {
      // Between attempts the task still reads RUNNING: say it waits out a backoff, not that the failed attempt runs.
      const when = t.retry.at ? `at ${isoUtc(t.retry.at)}` : "being scheduled";
      const why = t.error ? ` after ${t.error.name}: ${t.error.message}` : "";
      fields.push(["Retry", style.warn(`attempt ${t.retry.attempt} ${when}${why}`)]);
    }
    if (t.waiting && t.status === "QUEUED") {
      fields.push([
        "Waiting",
        style.warn(`${t.waiting.reason}: ${t.waiting.detail} (since ${isoUtc(t.waiting.since)})`),
      ]);
    }
  }
  if (s.sticky) fields.push(["Sticky", `${s.sticky.mode} on worker ${s.sticky.workerId}`]);
  if (Object.keys(s.additionalMetadata).length > 0) {
    fields.push([
      "Metadata",
      Object.entries(s.additionalMetadata)
        .map(([k, v]) => `${k}=${v}`)
        .join(" "),
    ]);
  }
  fields.push(["Input", prettyJson(s.input)]);
  if (s.output !== undefined) fields.push(["Output", prettyJson(s.output)]);
  if (s.error)
    fields.push([
      "Error",
      `${style.bad(`${s.error.name}: ${s.error.message}`)}${s.error.stack ? `\n${style.dim(s.error.stack)}` : ""}`,
    ]);
  return formatFields(fields);
}

const HISTORY_HEADERS = ["SEQ", "TIME (UTC)", "DELTA", "EVENT", "TASK/ATTEMPT", "WORKER", "DETAILS"];
const FOLLOW_WIDTHS = [4, 24, 9, 14, 16, 12, 0];

/** Turns history entries into rows, remembering what later events refer back to (task names, worker names). */
class Timeline {
  private previous: Date | undefined;
  private readonly taskNames = new Map<string, string>();
  private readonly workerNames = new Map<string, string>();

  constructor(private readonly style: Style) {}

  /** One row per fact: a result that carries its attempt's start reads as that `TaskStarted`, then the result. */
  rows(entry: HistoryEntry): string[][] {
    if (!entry.event) return [this.row(entry.seq, entry.time, undefined, entry.rejected)];
    const facts = expandEvent(entry.event);
    // The start's own time: the message was stored with the result.
    return facts.map((e, i) => this.row(entry.seq, i < facts.length - 1 ? new Date(e.at) : entry.time, e));
  }

  private row(seq: number, time: Date, e: TaskjetEvent | undefined, rejected = ""): string[] {
    const delta = this.previous ? `+${time.getTime() - this.previous.getTime()}ms` : "+0ms";
    this.previous = time;
    const cells = [String(seq), isoUtc(time), delta];
    if (!e) return [...cells, this.style.bad("(unreadable)"), "-", "-", short(rejected, 100)];
    return [...cells, this.eventType(e.type), this.taskOf(e), this.workerOf(e), this.details(e)];
  }

  /** Outcomes stand out: green completed, red failed, grey cancelled, yellow waits. */
  private eventType(type: TaskjetEvent["type"]): string {
    switch (type) {
      case "TaskCompleted":
        return this.style.good(type);
      case "TaskFailed":
      case "TaskTimedOut":
      case "EventRejected":
        return this.style.bad(type);
      case "RunCancelled":
      case "TaskCancelled":
      case "ReportIgnored":
        return this.style.dim(type);
      case "TaskWaiting":
      case "TaskRateLimited":
      case "TaskReassigned":
        return this.style.warn(type);
      default:
        return type;
    }
  }

  private taskOf(e: TaskjetEvent): string {
    if (e.type === "RunCreated") {
      for (const t of e.data.tasks) this.taskNames.set(t.taskRunId, t.taskName);
      return e.data.workflowName;
    }
    if (!("taskRunId" in e)) return "-"; // run-level events
    return `${this.taskNames.get(e.taskRunId) ?? e.taskRunId}/${e.data.attempt}`;
  }

  private workerOf(e: TaskjetEvent): string {
    if (!("workerId" in e.data)) return "-"; // facts the engine appends
    if (e.type === "TaskStarted") this.workerNames.set(e.data.workerId, e.data.workerName);
    return this.workerNames.get(e.data.workerId) ?? e.data.workerId;
  }

  private details(e: TaskjetEvent): string {
    switch (e.type) {
      case "RunCreated": {
        const meta = Object.entries(e.data.additionalMetadata).map(([k, v]) => `${k}=${v}`);
        const at = e.data.scheduledAt ? [`starts ${e.data.scheduledAt}`] : [];
        return [`input ${formatBytes(jsonSize(e.data.input))}`, `trigger ${e.data.trigger.kind}`, ...at, ...meta].join(
          ", ",
        );
      }
      case "TaskStarted": {
        const waited = msBetween(e.data.assignedAt, e.at);
        return waited === undefined ? "" : `assigned ${waited}ms before`;
      }
      case "TaskCompleted":
        return `output ${formatBytes(jsonSize(e.data.output))}`;
      case "TaskFailed":
        return short(
          `${e.data.error.name}: ${e.data.error.message}${e.data.nonRetryable ? " (not retryable)" : ""}`,
          100,
        );
      case "TaskRetryScheduled":
        return `attempt ${e.data.attempt} at ${e.data.at} (in ${e.data.delayMs}ms)`;
      case "TaskQueued":
        return `attempt ${e.data.attempt} queued`;
      case "TaskWaiting":
        return short(`${e.data.reason}: ${e.data.detail}`, 100);
      case "DurableCheckpoint":
        return `checkpoint ${e.data.index}: now ${e.data.value}`;
      case "DurableSleeping":
        return `checkpoint ${e.data.index}: sleeping until ${e.data.until}`;
      case "DurableWoke":
        return `checkpoint ${e.data.index}: woke, attempt ${e.data.attempt} queued`;
      case "DurableWaitingForEvent":
        return `checkpoint ${e.data.index}: waiting for event ${e.data.key}${e.data.filter ? ` (${e.data.filter})` : ""}`;
      case "DurableEventReceived":
        return `checkpoint ${e.data.index}: event ${e.data.event.id} came, attempt ${e.data.attempt} queued`;
      case "ChildrenSpawned":
        return short(`${e.data.children.length} child run(s): ${e.data.children.map((c) => c.runId).join(" ")}`, 100);
      case "TaskRateLimited":
        return short(`rate limited${e.data.keys ? ` on ${e.data.keys.join(", ")}` : ""} until ${e.data.until}`, 100);
      case "TaskTimedOut":
        return `execution timeout (deadline ${e.data.timeoutAt})`;
      case "TaskTimeoutRefreshed":
        return `deadline moved to ${e.data.timeoutAt}`;
      case "RunCancelled":
        return short(`cancelled: ${e.data.reason}`, 100);
      case "RunRescheduled":
        return `now starts ${e.data.scheduledAt}`;
      case "RunDue":
        return `scheduled for ${e.data.scheduledAt}: queued`;
      case "RunReplayed":
        return short(
          `replayed${e.data.from ? ` from ${e.data.from}` : ""}${e.data.reason ? `: ${e.data.reason}` : ""}`,
          100,
        );
      case "TaskSlotReleased":
        return "slot released early";
      case "TaskCancelled":
        return `cancelled: ${e.data.reason}`;
      case "TaskReassigned":
        return short(`from worker ${e.data.fromWorkerId}: ${e.data.reason}`, 100);
      case "ReportIgnored":
        return short(`${e.data.report} report ignored: ${e.data.reason}`, 100);
      case "EventRejected":
        return short(`seq ${e.data.rejectedSeq} rejected: ${e.data.reason}`, 100);
    }
  }
}

/** `--at`: digits are a sequence, anything else an ISO time. */
function parseAt(value: string): { seq: number } | { time: Date } {
  if (/^\d+$/.test(value)) {
    const seq = Number(value);
    if (!Number.isSafeInteger(seq) || seq < 1) {
      throw new InvalidArgumentError(
        `--at must be a sequence number from 1 (as runs history shows) or an ISO date-time, got "${value}"`,
      );
    }
    return { seq };
  }
  const time = parseIsoTime(value);
  if (time === undefined) {
    throw new InvalidArgumentError(
      `--at must be a sequence number or an ISO date-time such as 2026-11-28T10:00:00Z, got "${value}"`,
    );
  }
  return { time };
}
