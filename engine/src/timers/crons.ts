import type { JetStreamClient } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import {
  AppendConflictError,
  Buckets,
  type CronDefinition,
  CronDefinitionSchema,
  cronRunId,
  keys,
  newRunCreated,
  parseCron,
  type TaskjetEventInput,
} from "@taskjet/schemas";
import type { Cron } from "croner";
import type { Logger } from "pino";
import type { IdempotentRuns } from "../events/idempotent-runs.js";
import { followKv } from "../log/follow-kv.js";
import type { CompiledDefinition } from "../scheduler/flow.js";
import { retryUnlessConflict } from "./retry-append.js";
import type { Timers } from "./timers.js";

export interface CronsOptions {
  js: JetStreamClient;
  kv: KV;
  ns: string;
  timers: Timers;
  log: Logger;
  /** Appends with CAS on `expectedSeq`. */
  append: (event: TaskjetEventInput, expectedSeq: number) => Promise<number>;
  /** The task's definition (for its idempotency key), if registered. */
  definition: (taskName: string) => CompiledDefinition | undefined;
  idempotent: IdempotentRuns;
  now?: () => number;
}

/**
 * Cron schedules from `TJ_CRONS`: one engine timer per cron at its next tick. A tick creates its run with a run id
 * derived from the cron and the tick (`cronRunId`) and CAS on sequence 0, so every engine replica may fire it and
 * exactly one run exists. Ticks missed while no engine ran are not fired, except the latest with `catchUp: "latest"`.
 */
export class Crons {
  private readonly crons = new Map<string, { def: CronDefinition; cron: Cron }>();
  private stopWatch: (() => void) | undefined;
  private readonly now: () => number;

  constructor(private readonly o: CronsOptions) {
    this.now = o.now ?? Date.now;
  }

  async start(): Promise<void> {
    const { js, kv, ns, log } = this.o;
    this.stopWatch = await followKv(js, kv, Buckets.crons, keys.cronsOf(ns), {
      put: (key, json) => this.put(key, json),
      remove: (key) => this.remove(key.slice(ns.length + 1)),
      log,
    });
  }

  stop(): void {
    this.stopWatch?.();
    for (const name of this.crons.keys()) this.o.timers.cancel(timerKey(name));
  }

  private put(key: string, json: string): void {
    let def: CronDefinition;
    let cron: Cron;
    try {
      def = CronDefinitionSchema.parse(JSON.parse(json));
      cron = parseCron(def.expression, def.timezone, "expression");
    } catch (err) {
      this.o.log.error({ key, err }, "ignoring an invalid cron");
      return;
    }
    const known = this.crons.get(def.name);
    this.crons.set(def.name, { def, cron });
    if (!known && def.catchUp === "latest") {
      // The latest tick before now, if the cron existed then: fired again it is the same run (CAS), so no harm.
      const [last] = cron.previousRuns(1, new Date(this.now()));
      if (last && last.getTime() >= Date.parse(def.createdAt)) this.fire(def.name, last, false);
    }
    this.arm(def.name, new Date(this.now()));
  }

  private remove(name: string): void {
    this.crons.delete(name);
    this.o.timers.cancel(timerKey(name));
  }

  /** Sets the timer for the cron's first tick after `after`. */
  private arm(name: string, after: Date): void {
    const entry = this.crons.get(name);
    const next = entry?.cron.nextRun(after);
    if (!entry || !next) {
      this.o.timers.cancel(timerKey(name));
      return;
    }
    this.o.timers.set(timerKey(name), next.getTime(), () => this.fire(name, next, true));
  }

  private fire(name: string, tick: Date, armNext: boolean): void {
    const entry = this.crons.get(name);
    if (!entry) return;
    this.record(name, entry.def, tick, 0);
    // Not backfilled: a tick that came while the engine was busy or down is skipped, not queued up.
    if (armNext) this.arm(name, new Date(Math.max(this.now(), tick.getTime())));
  }

  /**
   * Creates the tick's run. One that could not be recorded (NATS unavailable) is tried again until the cron's next
   * tick is due, unless the cron changed meanwhile: the same tick is the same run, so a late success is still one.
   */
  private record(name: string, def: CronDefinition, tick: Date, tries: number): void {
    void this.create(def, tick).catch((err) => {
      const entry = this.crons.get(name);
      const next = entry?.cron.nextRun(tick);
      if (entry?.def !== def || !next || next.getTime() <= this.now()) {
        this.o.log.warn({ err, cron: name, tick }, "cron tick not recorded");
        return;
      }
      const again = (t: number) => this.record(name, def, tick, t);
      retryUnlessConflict(this.o, `cron-tick:${name}`, tries, again, "cron tick not recorded")(err);
    });
  }

  private async create(def: CronDefinition, tick: Date): Promise<void> {
    const { name } = def;
    const proposed = cronRunId(this.o.ns, name, tick);
    const taskDef = this.o.definition(def.taskName);
    const runId = await this.o.idempotent.claim(taskDef, def.input, def.additionalMetadata, proposed);
    if (!runId) return; // an earlier run holds the task's idempotency key
    const event = newRunCreated({
      runId,
      taskName: def.taskName,
      input: def.input,
      trigger: { kind: "cron", cron: name, tick: tick.toISOString() },
      additionalMetadata: def.additionalMetadata,
      priority: def.priority ?? taskDef?.defaultPriority ?? 1,
      scheduleTimeoutMs: taskDef?.scheduleTimeoutMs,
      workflow: taskDef?.workflow,
    });
    try {
      await this.o.append(event, 0);
    } catch (err) {
      // Another replica fired this tick first: the one run exists.
      if (!(err instanceof AppendConflictError)) throw err;
    }
  }
}

function timerKey(name: string): string {
  return `cron:${name}`;
}
