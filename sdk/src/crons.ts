import { createHash } from "node:crypto";
import type { KV } from "@nats-io/kv";
import {
  Buckets,
  type CronDefinition,
  CronDefinitionSchema,
  checkKnownKeys,
  checkTaskName,
  DEFAULT_MAX_PAYLOAD_BYTES,
  describeValue,
  encodeJsonObject,
  keys,
  parseCron,
  parseWith,
  RunOptionsSchema,
  ValidationError,
} from "@taskjet/schemas";
import { type Connection, onBucket, openBucket } from "./connection.js";
import { assertWritable, inDebugMode } from "./debug.js";
import { kvNames } from "./kv-names.js";
import type { JsonObject } from "./task.js";

/** A cron as a task declares it in `onCrons`. */
export type CronSpec =
  | string
  | { expression: string; timezone?: string; input?: JsonObject; catchUp?: "none" | "latest" };

/** Options of `task.cron()`. */
export interface CronOptions {
  /** IANA time zone the expression is read in. @default UTC */
  timezone?: string;
  additionalMetadata?: Record<string, string>;
  priority?: 1 | 2 | 3;
  /** Ticks missed while no engine ran: none fire, or the latest one does. @default "none" */
  catchUp?: "none" | "latest";
}

const CRON_OPTION_KEYS = ["timezone", "additionalMetadata", "priority", "catchUp"];

/** What declarations need to make a cron (`task.cron`, `wf.cron`). */
export interface CronCreator {
  create(
    name: string,
    taskName: string,
    expression: string,
    input?: JsonObject,
    options?: CronOptions,
  ): Promise<CronDefinition>;
}

/** Cron schedules (`TJ_CRONS`): made by `task.cron()` or declared with `onCrons`, fired by the engine. */
export class CronsClient implements CronCreator {
  private kv: Promise<KV> | undefined;

  constructor(
    private readonly conn: Connection,
    private readonly ns: string,
  ) {}

  /**
   * Creates or replaces the cron `name`: every tick of `expression` runs `taskName` with `input`.
   * @throws ValidationError naming the field, with the cron parser's message for a bad expression
   */
  async create(
    name: string,
    taskName: string,
    expression: string,
    input: JsonObject = {},
    options: CronOptions = {},
  ): Promise<CronDefinition> {
    checkTaskName(taskName, "taskName");
    checkKnownKeys(options, CRON_OPTION_KEYS, "options", "a cron option");
    parseCron(expression, options.timezone, "expression", "options.timezone");
    encodeJsonObject(input, "input", this.conn.payloadLimit);
    const opts = parseWith(
      RunOptionsSchema.pick({ additionalMetadata: true, priority: true }).extend({
        catchUp: CronDefinitionSchema.shape.catchUp,
      }),
      { additionalMetadata: options.additionalMetadata, priority: options.priority, catchUp: options.catchUp },
      "options",
    );
    const def = parseWith(CronDefinitionSchema, {
      v: 1,
      name,
      taskName,
      expression,
      ...(options.timezone ? { timezone: options.timezone } : {}),
      input,
      additionalMetadata: opts.additionalMetadata ?? {},
      ...(opts.priority ? { priority: opts.priority } : {}),
      catchUp: opts.catchUp,
      source: "api",
      createdAt: new Date().toISOString(),
    });
    await this.put(def);
    return def;
  }

  /** Every cron of the namespace (optionally of one task), by name. */
  async list(options: { taskName?: string } = {}): Promise<CronDefinition[]> {
    if (options.taskName !== undefined) checkTaskName(options.taskName, "taskName");
    const names = await this.on((kv) => kvNames(kv, this.ns, keys.cronsOf(this.ns)));
    const crons = (await Promise.all(names.map((n) => this.get(n)))).filter(
      (c): c is CronDefinition => c !== undefined,
    );
    return options.taskName !== undefined ? crons.filter((c) => c.taskName === options.taskName) : crons;
  }

  /** One cron, if it exists. */
  async get(name: string): Promise<CronDefinition | undefined> {
    parseWith(CronDefinitionSchema.shape.name, name, "name");
    const entry = await this.on((kv) => kv.get(keys.cron(this.ns, name)));
    if (entry?.operation !== "PUT" || entry.length === 0) return undefined;
    return CronDefinitionSchema.parse(entry.json());
  }

  /** Deletes a cron: no tick fires after this. `false` when there was none. */
  async delete(name: string): Promise<boolean> {
    if (!(await this.get(name))) return false;
    assertWritable(`deleting cron ${name}`);
    await this.on((kv) => kv.delete(keys.cron(this.ns, name)));
    return true;
  }

  /**
   * @internal A worker's `onCrons`, by task (or workflow) name: puts each new or changed one, and deletes the crons
   * these tasks declared before and no longer do. The existing crons are listed once.
   */
  async declare(byTask: ReadonlyMap<string, readonly CronSpec[]>): Promise<void> {
    const now = new Date().toISOString();
    const existing = (await this.list()).filter((c) => c.source === "worker" && byTask.has(c.taskName));
    const wanted = [...byTask].flatMap(([taskName, specs]) => specs.map((spec) => workerCron(taskName, spec, now)));
    for (const def of wanted) {
      const same = existing.find((c) => c.name === def.name);
      // Unchanged: keep it as it is (its createdAt decides what `catchUp` may fire).
      const unchanged =
        same?.expression === def.expression &&
        JSON.stringify(same.input) === JSON.stringify(def.input) &&
        same.catchUp === def.catchUp;
      if (!unchanged) await this.put(def);
    }
    for (const old of existing) if (!wanted.some((w) => w.name === old.name)) await this.delete(old.name);
  }

  private async put(def: CronDefinition): Promise<void> {
    if (inDebugMode()) return; // a worker module's set-up, skipped by `taskjet debug`
    await this.on((kv) => kv.put(keys.cron(this.ns, def.name), JSON.stringify(def)));
  }

  private on<T>(op: (kv: KV) => Promise<T>): Promise<T> {
    this.kv ??= openBucket(this.conn, Buckets.crons);
    return onBucket(this.conn, Buckets.crons, this.kv, op);
  }
}

/** A cron declared in `onCrons`, named after its task and a digest of its expression and zone. */
function workerCron(taskName: string, spec: CronSpec, now: string): CronDefinition {
  const s = typeof spec === "string" ? { expression: spec } : spec;
  const digest = createHash("sha256")
    .update(`${s.expression}\n${s.timezone ?? ""}`)
    .digest("hex")
    .slice(0, 10);
  return parseWith(CronDefinitionSchema, {
    v: 1,
    name: `${taskName}.cron-${digest}`,
    taskName,
    expression: s.expression,
    ...(s.timezone ? { timezone: s.timezone } : {}),
    input: s.input ?? {},
    additionalMetadata: {},
    catchUp: s.catchUp ?? "none",
    source: "worker",
    createdAt: now,
  });
}

/** The fields of a `CronSpec` object, checked as the cron they make will be. */
const CronSpecSchema = CronDefinitionSchema.pick({ expression: true, timezone: true, input: true, catchUp: true });

/**
 * Checks `onCrons` as a task or workflow declares it, and again as a worker registers it: each entry is a cron
 * expression or `{ expression, timezone?, input?, catchUp? }` whose expression and time zone parse.
 * @throws ValidationError naming `<task>.onCrons[i]` (and the field) with the value or the parser's message
 */
export function checkCronSpecs(
  taskName: string,
  specs: readonly CronSpec[] | undefined,
  maxPayloadBytes = DEFAULT_MAX_PAYLOAD_BYTES,
): void {
  if (specs === undefined) return;
  if (!Array.isArray(specs)) {
    throw new ValidationError([
      {
        path: `${taskName}.onCrons`,
        message: `must be an array of cron expressions or { expression, timezone?, input?, catchUp? }, got ${describeValue(specs)}`,
      },
    ]);
  }
  for (const [i, spec] of specs.entries()) {
    const path = `${taskName}.onCrons[${i}]`;
    if (typeof spec === "string") {
      parseWith(CronSpecSchema, { expression: spec }, path);
      parseCron(spec, undefined, path);
      continue;
    }
    if (typeof spec !== "object" || spec === null || Array.isArray(spec)) {
      throw new ValidationError([
        {
          path,
          message: `must be a cron expression or { expression, timezone?, input?, catchUp? }, got ${describeValue(spec)}`,
        },
      ]);
    }
    if (spec.input !== undefined) encodeJsonObject(spec.input, `${path}.input`, maxPayloadBytes);
    parseWith(CronSpecSchema, spec, path);
    parseCron(spec.expression, spec.timezone, path);
  }
}
