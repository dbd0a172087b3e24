import { createHash } from "node:crypto";
import { z } from "zod";

/**
 * Pushed events (`tj.events.push`, webhooks): stored in `TJ_EVENTS` on `tj.<ns>.event.<key>` whatever is listening,
 * then routed by the engine to every task whose `onEvents` matches (one run per event and task).
 */

/** An event key: letters, digits and `_ - : .`; `*` in a task's `onEvents` pattern matches any run of characters. */
export const EVENT_KEY = /^[A-Za-z0-9_:-]{1,128}(\.[A-Za-z0-9_:-]{1,128})*$/;
const EVENT_PATTERN = /^[A-Za-z0-9_:*-]{1,128}(\.[A-Za-z0-9_:*-]{1,128})*$/;

export const PushedEventSchema = z
  .object({
    v: z.literal(1),
    id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
    key: z.string().regex(EVENT_KEY, "must be letters, digits, _, -, : and inner dots"),
    payload: z.record(z.string(), z.unknown()),
    additionalMetadata: z.record(z.string(), z.string()).default({}),
    priority: z.number().int().min(1).max(3).optional(),
    at: z.iso.datetime(),
    /** Where it came from: `push`, or `webhook:<name>`. */
    source: z.string().max(200).default("push"),
  })
  .strict();
export type PushedEvent = z.output<typeof PushedEventSchema>;

/** One `onEvents` entry as stored in a task definition. */
export const EventTriggerSchema = z
  .object({
    key: z.string().regex(EVENT_PATTERN, "must be an event key, where * matches any characters"),
    /** CEL over `payload` and `additional_metadata`: the event starts a run only when it is true. */
    filter: z.string().min(1).max(1000).optional(),
  })
  .strict();
export type EventTrigger = z.output<typeof EventTriggerSchema>;

/** Whether an event key matches an `onEvents` pattern (`*` matches any run of characters, dots included). */
export function eventKeyMatches(pattern: string, key: string): boolean {
  if (!pattern.includes("*")) return pattern === key;
  const re = new RegExp(
    `^${pattern
      .split("*")
      .map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
      .join(".*")}$`,
  );
  return re.test(key);
}

/** The run an event starts for a task: the same id on every delivery, so an event makes one run per task. */
export function eventRunId(eventId: string, taskName: string): string {
  return `e${createHash("sha256").update(`${eventId}\n${taskName}`).digest("base64url").slice(0, 31)}`;
}
