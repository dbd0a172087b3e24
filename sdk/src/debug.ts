import { type Assignment, childRunId, DebugReadOnlyError, silentLogger } from "@taskjet/schemas";
import type { RunRef } from "./run-ref.js";
import type { JsonObject, TaskDeclaration } from "./task.js";
import { Context } from "./worker/context.js";
import { currentTask } from "./worker/current.js";

/**
 * `taskjet debug` runs a recorded attempt in its own process. The registry lives on `globalThis` under a registered
 * symbol, so the CLI finds the tasks a user's module declares even when that module loaded its own copy of the SDK.
 */
const REGISTRY = Symbol.for("taskjet.debug.tasks");

/** How a task ended when run again locally. */
export type DebugOutcome =
  | { kind: "completed"; output: unknown }
  | { kind: "failed"; error: { name: string; message: string; stack?: string } }
  /** It reached a sleep or an event wait history does not record as over: the run would suspend here. */
  | { kind: "suspended"; at: string };

/** What the task did instead of writing it to the cluster. */
export interface DebugEffects {
  /** Durable checkpoints taken past the recorded ones (`ctx.now()`). */
  newCheckpoints: { index: number; value: string }[];
}

/** Where a locally run task's logs, stream chunks and child runs go. */
export interface DebugHooks {
  log(level: string, message: string, fields: Record<string, unknown> | undefined): void;
  chunk(data: Uint8Array): void;
  /** Handles on the recorded child runs the task starts; debugging creates no run, so unrecorded ones throw. */
  children(specs: { runId: string; taskName: string; key: string }[]): Promise<RunRef<Record<string, unknown>>[]>;
}

/** A declared task, runnable against a recorded assignment. */
export interface DebugTask {
  name: string;
  durable: boolean;
  run(assignment: Assignment, hooks: DebugHooks): Promise<{ outcome: DebugOutcome; effects: DebugEffects }>;
}

type Registry = Map<string, DebugTask>;
const registry = () => (globalThis as { [REGISTRY]?: Registry })[REGISTRY];

/** Turns debug mode on for this process: declared tasks are collected, workers do not start, nothing is written. */
export function enterDebugMode(): ReadonlyMap<string, DebugTask> {
  const g = globalThis as { [REGISTRY]?: Registry };
  g[REGISTRY] ??= new Map();
  return g[REGISTRY];
}

export function inDebugMode(): boolean {
  return registry() !== undefined;
}

/** @throws DebugReadOnlyError in debug mode */
export function assertWritable(what: string): void {
  if (inDebugMode()) throw new DebugReadOnlyError(what);
}

/** @internal Collects a declaration when debugging. */
export function registerForDebug(declaration: TaskDeclaration<JsonObject, JsonObject | void>, durable: boolean): void {
  registry()?.set(declaration.name, {
    name: declaration.name,
    durable,
    run: (assignment, hooks) => runLocally(declaration, durable, assignment, hooks),
  });
}

async function runLocally(
  declaration: TaskDeclaration<JsonObject, JsonObject | void>,
  durable: boolean,
  a: Assignment,
  hooks: DebugHooks,
): Promise<{ outcome: DebugOutcome; effects: DebugEffects }> {
  const effects: DebugEffects = { newCheckpoints: [] };
  let childIndex = 0;
  let suspend: (at: string) => void = () => {};
  const suspended = new Promise<DebugOutcome>((resolve) => {
    suspend = (at) => resolve({ kind: "suspended", at });
  });
  const ctx = new Context(
    a,
    { id: "debug", name: "taskjet debug" },
    silentLogger,
    {
      refresh: async () => {},
      releaseSlot: async () => {},
      spawn: (children) =>
        hooks.children(
          children.map((c) => {
            const key = c.key ?? `#${childIndex++}`;
            return { runId: childRunId(a.taskRunId, key, a.replays), taskName: c.taskName, key };
          }),
        ),
      checkpoint: async (index, value) => {
        effects.newCheckpoints.push({ index, value });
      },
      sleep: async (index, until) => suspend(`checkpoint ${index}: sleep until ${until}`),
      waitEvent: async (index, key, filter) =>
        suspend(`checkpoint ${index}: waitForEvent(${key}${filter ? `, ${filter}` : ""})`),
      log: (level, message, fields) => hooks.log(level, message, fields),
      putStream: async (data) => hooks.chunk(data),
    },
    durable,
  );
  const run = async (): Promise<DebugOutcome> => {
    try {
      return { kind: "completed", output: await currentTask.run(ctx, () => declaration.fn(a.input, ctx)) };
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      return { kind: "failed", error: { name: e.name, message: e.message, ...(e.stack ? { stack: e.stack } : {}) } };
    }
  };
  return { outcome: await Promise.race([run(), suspended]), effects };
}
