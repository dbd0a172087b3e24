import {
  checkTaskName,
  checkToken,
  parseDuration as parseDurationValue,
  parseIsoTime,
  parseWith,
  RUN_STATUS_VALUES,
  RunOptionsSchema,
  type RunStatus,
  ValidationError,
} from "@taskjet/schemas";
import { InvalidArgumentError } from "commander";

/**
 * Flag value parsers for commander. Each throws `InvalidArgumentError`, which commander reports as
 * `error: option '--flag <x>' argument 'value' is invalid. <why>` and the CLI exits 2.
 */

/**
 * `--input`, `--payload`: a JSON object. Shared by several flags, so its messages name none: commander's own
 * `option '-p, --payload <json>' argument '[1]' is invalid.` before them names the one used.
 */
export function parseJsonObject(value: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch (err) {
    throw new InvalidArgumentError(
      `must be a JSON object like '{"name":"world"}', got text that is not JSON (${(err as Error).message})`,
    );
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    const got = Array.isArray(parsed) ? "an array" : parsed === null ? "null" : `a ${typeof parsed}`;
    throw new InvalidArgumentError(`must be a JSON object like '{"name":"world"}', got ${got}`);
  }
  return parsed as Record<string, unknown>;
}

/** `--metadata k=v`, repeatable: collects into one record. */
export function collectKeyValue(value: string, previous: Record<string, string>): Record<string, string> {
  const eq = value.indexOf("=");
  if (eq <= 0) throw new InvalidArgumentError("--metadata takes key=value with a non-empty key");
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}

/** `--status QUEUED,RUNNING`, case-insensitive, repeatable. */
export function collectStatuses(value: string, previous: RunStatus[] | undefined): RunStatus[] {
  const out = [...(previous ?? [])];
  for (const raw of value.split(",")) {
    const s = raw.trim().toUpperCase();
    if (s === "") continue;
    if (!(RUN_STATUS_VALUES as string[]).includes(s)) {
      throw new InvalidArgumentError(`allowed statuses: ${RUN_STATUS_VALUES.join(", ")}`);
    }
    if (!out.includes(s as RunStatus)) out.push(s as RunStatus);
  }
  if (out.length === 0) throw new InvalidArgumentError(`--status must list one of ${RUN_STATUS_VALUES.join(", ")}`);
  return out;
}

/** An integer in [min, max]. */
export function intIn(flag: string, min: number, max: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${flag} must be an integer from ${min} to ${max}`);
    }
    return n;
  };
}

/** The SDK's durations (`500ms`, `1h30m`, `1d`), or a bare number of milliseconds: one grammar at every edge. */
export function parseDuration(flag: string): (value: string) => number {
  return (value) => {
    const v = value.trim();
    try {
      return parseDurationValue(/^\d+$/.test(v) ? Number(v) : v, flag);
    } catch (err) {
      if (err instanceof ValidationError) throw new InvalidArgumentError(err.message);
      throw err;
    }
  };
}

/** A point in time: an ISO date-time, or a duration ago (`1d`, `90m`). */
export function parseTimeOrAgo(flag: string): (value: string) => Date {
  const ago = parseDuration(flag);
  return (value) => {
    if (/^\d+(ms|s|m|h|d)/.test(value.trim())) return new Date(Date.now() - ago(value));
    const time = parseIsoTime(value);
    if (time === undefined) {
      throw new InvalidArgumentError(
        `${flag} must be an ISO date-time or a duration ago like 1d or 90m, got "${value}"`,
      );
    }
    return time;
  };
}

/** `--run-id`: the SDK's rule, checked before connecting. */
export function parseRunId(value: string): string {
  return usage(() => `${parseWith(RunOptionsSchema.shape.runId, value)}`, "--run-id ");
}

/** A task name argument. */
export function parseTaskName(value: string): string {
  return usage(() => checkTaskName(value, ""));
}

/** A run id argument. */
export function parseRunIdArgument(value: string): string {
  return usage(() => checkToken(value, ""));
}

/** Runs a schemas check, turning its ValidationError into commander's usage error. */
function usage<T>(check: () => T, prefix = ""): T {
  try {
    return check();
  } catch (err) {
    if (err instanceof ValidationError) throw new InvalidArgumentError(`${prefix}${err.message}`);
    throw err;
  }
}
