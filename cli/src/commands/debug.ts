import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { assignmentOf, NatsAuthEnv, type NatsAuthField } from "@taskjet/schemas";
import {
  type DebugOutcome,
  DebugReadOnlyError,
  type DebugTask,
  enterDebugMode,
  type RunState,
  type Taskjet,
  type TaskRunState,
} from "@taskjet/sdk";
import { Argument, type Command } from "commander";
import type { ConnectionConfig, ConnectionFlags, NatsAuthFlags } from "../config.js";
import { ExitCodes, UsageError } from "../errors.js";
import { formatFields, jsonLine, prettyJson } from "../output.js";
import { parseRunIdArgument } from "../parse.js";
import { type CliContext, connectionOptions, withClient } from "./common.js";

/** `taskjet debug <runId> --worker <module>`. */
export function registerDebug(program: Command, ctx: CliContext): void {
  const debug = program
    .command("debug")
    .description(
      "run a recorded task again in this process, with its recorded input, parent outputs and durable checkpoints; nothing is written to the cluster",
    )
    .addArgument(new Argument("<runId>", "the run to debug").argParser(parseRunIdArgument))
    .requiredOption("-w, --worker <module>", "the worker module (.ts or .js) that declares the task")
    .option("-t, --task <name>", "a workflow's task (name or ref); default: the one that failed")
    .option("--json", "print {recorded, now, changed, ...} as JSON")
    .addHelpText(
      "after",
      [
        "",
        "The module is imported as it is (workers it starts do not start); set breakpoints in the task function and run",
        "under the inspector (the last example) to stop in it.",
        "",
        "Examples:",
        "  taskjet debug 01JD5X... --worker ./src/worker.ts",
        "  taskjet debug 01JD5X... --worker ./dist/worker.js --task transform --json",
        "  node --inspect-brk $(which taskjet) debug 01JD5X... --worker ./src/worker.ts",
      ].join("\n"),
    );
  connectionOptions(debug).action(
    async (runId: string, flags: ConnectionFlags & { worker: string; task?: string; json?: boolean }) => {
      ctx.exitCode = await withClient(flags, ctx, async (tj, conn) => {
        const state = await tj.runs.get(runId);
        const task = pickTask(state, flags.task);
        // Run without a parent's output, the task would read nothing where the run gave it something: not a replay.
        const missing = (task.parents ?? []).filter(
          (ref) => state.tasks.find((t) => (t.ref ?? t.taskName) === ref)?.status !== "COMPLETED",
        );
        if (missing.length > 0) {
          const label = (ref: string) => `${ref} (${state.tasks.find((t) => (t.ref ?? t.taskName) === ref)?.status})`;
          throw new UsageError(
            `task ${task.ref ?? task.taskName} cannot run as recorded: its parents ${missing.map(label).join(", ")} have no output; debug them instead`,
          );
        }
        const tasks = await loadWorkerModule(resolve(ctx.cwd, flags.worker), conn, flags);
        const declared = tasks.get(task.taskName);
        if (!declared) {
          const names = [...tasks.keys()];
          throw new UsageError(
            `${flags.worker} declares no task ${task.taskName}${names.length ? ` (it declares ${names.join(", ")})` : " (it declares none)"}`,
          );
        }
        const assignment = assignmentOf(state, task, {
          expectedSeq: state.lastSeq,
          assignedAt: new Date().toISOString(),
        });
        const logs: { level: string; message: string; fields?: Record<string, unknown> }[] = [];
        let chunks = 0;
        const { outcome, effects } = await declared.run(assignment, {
          log: (level, message, fields) => {
            logs.push({ level, message, ...(fields ? { fields } : {}) });
            if (!flags.json)
              ctx.io.err(`[task] ${level.toUpperCase()} ${message}${fields ? ` ${JSON.stringify(fields)}` : ""}\n`);
          },
          chunk: () => {
            chunks++;
          },
          children: (specs) => recordedChildren(tj, specs),
        });
        const recorded = recordedOutcome(task);
        const changed = !sameOutcome(recorded, outcome);
        if (flags.json) {
          ctx.io.out(
            jsonLine({
              runId,
              taskRunId: task.taskRunId,
              taskName: task.taskName,
              attempt: task.attempt,
              recorded,
              now: outcome,
              changed,
              newCheckpoints: effects.newCheckpoints,
              logs,
              chunks,
            }),
          );
        } else {
          ctx.io.out(
            `${view(state, task, declared, recorded, outcome, changed, chunks, effects.newCheckpoints.length)}\n`,
          );
        }
        return outcome.kind === "failed" ? ExitCodes.failure : ExitCodes.ok;
      });
    },
  );
}

/** The task named (by name or ref), else the only task, else the one that failed. */
function pickTask(state: RunState, name: string | undefined): TaskRunState {
  const label = (t: TaskRunState) => `${t.ref ?? t.taskName} (${t.status})`;
  if (name !== undefined) {
    const found = state.tasks.find((t) => t.taskName === name || t.ref === name);
    if (!found) throw new UsageError(`run ${state.runId} has no task ${name}: ${state.tasks.map(label).join(", ")}`);
    return found;
  }
  if (state.tasks.length === 1) return state.tasks[0] as TaskRunState;
  const failed = state.tasks.filter((t) => t.status === "FAILED" && t.role === undefined);
  if (failed.length === 1) return failed[0] as TaskRunState;
  throw new UsageError(
    `run ${state.runId} has several tasks: pick one with --task (${state.tasks.map(label).join(", ")})`,
  );
}

/**
 * Imports the user's module in debug mode (TypeScript through tsx), pointing its `Taskjet.connect()` defaults at the
 * cluster the run is on. Its workers do not start; the tasks it declares are collected.
 */
async function loadWorkerModule(
  path: string,
  conn: ConnectionConfig,
  flags: NatsAuthFlags,
): Promise<ReadonlyMap<string, DebugTask>> {
  const tasks = enterDebugMode();
  process.env.TASKJET_NATS_URL = conn.servers.join(",");
  process.env.TASKJET_NAMESPACE = conn.namespace;
  // The module connects with the defaults: the credentials this command was given, flags included.
  const fromFlags: [NatsAuthField, string | undefined][] = [
    ["user", flags.natsUser],
    ["password", flags.natsPassword],
    ["token", flags.natsToken],
    ["nkeyFile", flags.natsNkey],
    ["credsFile", flags.natsCreds],
    ["caFile", flags.natsTlsCa],
    ["certFile", flags.natsTlsCert],
    ["keyFile", flags.natsTlsKey],
  ];
  if (fromFlags.some(([field, v]) => v !== undefined && !["caFile", "certFile", "keyFile"].includes(field))) {
    for (const name of [
      NatsAuthEnv.user,
      NatsAuthEnv.password,
      NatsAuthEnv.token,
      NatsAuthEnv.nkeyFile,
      NatsAuthEnv.credsFile,
    ]) {
      delete process.env[name];
    }
  }
  for (const [field, value] of fromFlags) if (value !== undefined) process.env[NatsAuthEnv[field]] = value;
  // Both loaders, as `node --import tsx` registers them: `.ts` beside no package.json or a CommonJS one is loaded
  // as CommonJS (unless it has ESM syntax), through require, which only the CommonJS loader teaches TypeScript.
  const [esm, cjs] = await Promise.all([import("tsx/esm/api"), import("tsx/cjs/api")]);
  esm.register();
  cjs.register();
  try {
    await import(pathToFileURL(isAbsolute(path) ? path : resolve(path)).href);
  } catch (err) {
    if (err instanceof DebugReadOnlyError) throw err;
    const reason = err instanceof Error ? err.message : String(err);
    throw new UsageError(`could not load worker module ${path}: ${reason}`);
  }
  return tasks;
}

/** Child runs the task starts are the recorded ones (same ids); debugging creates none. */
async function recordedChildren(tj: Taskjet, specs: { runId: string; taskName: string }[]) {
  const refs = [];
  for (const s of specs) {
    const exists = await tj.runs.get(s.runId).then(
      () => true,
      () => false,
    );
    if (!exists) throw new DebugReadOnlyError(`starting a child run of ${s.taskName} that history does not record`);
    refs.push(tj.ref(s.runId));
  }
  return refs;
}

type Recorded = { status: string; output?: unknown; error?: { name: string; message: string; stack?: string } };

function recordedOutcome(task: TaskRunState): Recorded {
  return {
    status: task.status,
    ...(task.output !== undefined ? { output: task.output } : {}),
    ...(task.error ? { error: task.error } : {}),
  };
}

function sameOutcome(recorded: Recorded, now: DebugOutcome): boolean {
  if (now.kind === "completed") {
    return (
      recorded.status === "COMPLETED" && JSON.stringify(recorded.output ?? {}) === JSON.stringify(now.output ?? {})
    );
  }
  if (now.kind === "failed") {
    return (
      recorded.status === "FAILED" &&
      recorded.error?.name === now.error.name &&
      recorded.error.message === now.error.message
    );
  }
  return recorded.status === "PENDING";
}

function view(
  state: RunState,
  task: TaskRunState,
  declared: DebugTask,
  recorded: Recorded,
  now: DebugOutcome,
  changed: boolean,
  chunks: number,
  newCheckpoints: number,
): string {
  const recordedText =
    recorded.status === "COMPLETED"
      ? `COMPLETED ${prettyJson(recorded.output ?? {})}`
      : `${recorded.status}${recorded.error ? ` ${recorded.error.name}: ${recorded.error.message}` : ""}`;
  const nowText =
    now.kind === "completed"
      ? `COMPLETED ${prettyJson(now.output ?? {})}`
      : now.kind === "failed"
        ? `FAILED ${now.error.stack ?? `${now.error.name}: ${now.error.message}`}`
        : `SUSPENDED at ${now.at}`;
  const fields: [string, string][] = [
    ["Run", `${state.runId} (${state.workflowName}, ${state.status})`],
    [
      "Task",
      `${task.taskName}${task.ref && state.tasks.length > 1 ? ` (ref ${task.ref})` : ""}, attempt ${task.attempt}`,
    ],
    ["Input", prettyJson(state.input)],
  ];
  if (task.parents?.length) fields.push(["Parents", task.parents.join(", ")]);
  if (declared.durable) {
    const replayed = task.checkpoints?.length ?? 0;
    fields.push(["Checkpoints", `${replayed} replayed from history, ${newCheckpoints} new (not recorded)`]);
  }
  if (chunks > 0) fields.push(["Stream", `${chunks} chunk(s) (not stored)`]);
  fields.push(["Recorded", recordedText], ["Now", nowText], ["Outcome", changed ? "CHANGED" : "same as recorded"]);
  return formatFields(fields);
}
