import { createHash } from "node:crypto";
import { Cron } from "croner";
import { z } from "zod";
import { ValidationError } from "./errors.js";
import { describeValue } from "./validation.js";

/**
 * Cron schedules: a task runs on every tick of a cron expression (5 fields, or 6 with seconds first), in UTC or an
 * IANA time zone. Stored in `TJ_CRONS` (by workers for `onCrons`, by clients for `task.cron`) and fired by the engine.
 */

const name = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,128}(\.[A-Za-z0-9_-]{1,128})*$/, "must be letters, digits, _, - and inner dots");

export const CatchUpModes = ["none", "latest"] as const;

export const CronDefinitionSchema = z
  .object({
    v: z.literal(1),
    /** Unique in the namespace. */
    name,
    taskName: z.string().min(1).max(128),
    expression: z.string().min(1).max(200),
    timezone: z.string().min(1).max(64).optional(),
    input: z.record(z.string(), z.unknown()).default({}),
    additionalMetadata: z.record(z.string(), z.string()).default({}),
    priority: z.number().int().min(1).max(3).optional(),
    /** Ticks missed while no engine ran: none fire (default), or the latest one does. */
    catchUp: z.enum(CatchUpModes).default("none"),
    /** `worker`: declared with `onCrons` (replaced when the worker registers); `api`: made by `task.cron`. */
    source: z.enum(["worker", "api"]),
    createdAt: z.iso.datetime(),
  })
  .strict();
export type CronDefinition = z.output<typeof CronDefinitionSchema>;

/**
 * Parses a cron expression (and time zone) the way the engine will fire it.
 * @throws ValidationError naming `field`, with the parser's message
 */
export function parseCron(
  expression: unknown,
  timezone: unknown,
  field: string,
  timezoneField = `${field}.timezone`,
): Cron {
  const fail = (message: string): never => {
    throw new ValidationError([{ path: field, message: `${message}, got ${describeValue(expression)}` }]);
  };
  if (typeof expression !== "string") return fail("must be a cron expression string");
  const fields = expression.trim().split(/\s+/).length;
  if (fields !== 5 && fields !== 6) fail(`must have 5 fields (6 with seconds first), not ${fields}`);
  if (timezone !== undefined) {
    try {
      new Intl.DateTimeFormat("en-US", { timeZone: timezone as string });
    } catch {
      throw new ValidationError([
        {
          path: timezoneField,
          message: `must be an IANA time zone such as Europe/Berlin, got ${describeValue(timezone)}`,
        },
      ]);
    }
  }
  let cron: Cron;
  try {
    cron = new Cron(expression, { paused: true, ...(timezone ? { timezone: timezone as string } : {}) });
  } catch (err) {
    return fail(`is not a valid cron expression (${err instanceof Error ? err.message : String(err)})`);
  }
  // Valid field by field, yet no date has them all (30 February): a schedule that would be listed and never fire.
  if (!cron.nextRun()) fail("never fires: no date matches it");
  return cron;
}

/** The run id of one tick: the same for every engine and restart, so a tick makes one run (CAS on sequence 0). */
export function cronRunId(ns: string, cronName: string, tick: Date): string {
  return `c${createHash("sha256").update(`${ns}\n${cronName}\n${tick.toISOString()}`).digest("base64url").slice(0, 31)}`;
}
