import { describeValue, parseIsoTime, ValidationError } from "@taskjet/schemas";

/** How far ahead a run may be scheduled: within the history stream's default retention, so its events outlive it. */
export const MAX_SCHEDULE_AHEAD_MS = 30 * 24 * 3600 * 1000;

/**
 * A schedule time as an ISO string.
 * @throws ValidationError naming `field` for an invalid date or one too far ahead
 */
export function scheduleTime(at: Date | string, field: string): string {
  const date = at instanceof Date ? at : typeof at === "string" ? parseIsoTime(at) : undefined;
  if (date === undefined || Number.isNaN(date.getTime())) {
    throw new ValidationError([
      { path: field, message: `must be a Date or an ISO date-time, got ${describeValue(at)}` },
    ]);
  }
  if (date.getTime() - Date.now() > MAX_SCHEDULE_AHEAD_MS) {
    throw new ValidationError([
      {
        path: field,
        message: `must be within 30 days (the history's default retention), got ${date.toISOString()}`,
      },
    ]);
  }
  return date.toISOString();
}
