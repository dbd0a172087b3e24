import { ValidationError } from "./errors.js";
import { describeValue } from "./validation.js";

const UNIT_MS = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1000, ms: 1 } as const;
const DURATION = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$/;

/** A duration as users write it: `"1d12h"`, `"1h30m5s"`, `"15s"`, `"500ms"`, or a number of milliseconds. */
export type Duration = string | number;

/**
 * Milliseconds of a duration.
 * @throws ValidationError naming `field` and the value, e.g. `executionTimeout: must be a positive duration ...`
 */
export function parseDuration(value: unknown, field: string, options: { allowZero?: boolean } = {}): number {
  const fail = (): never => {
    throw new ValidationError([
      {
        path: field,
        message: `must be a ${options.allowZero ? "non-negative" : "positive"} duration such as "1d", "1h30m5s", "15s", "500ms" or a number of milliseconds, got ${describeValue(value)}`,
      },
    ]);
  };
  let ms: number;
  if (typeof value === "number") {
    if (!Number.isFinite(value) || !Number.isInteger(value)) fail();
    ms = value;
  } else if (typeof value === "string" && value.length > 0) {
    const match = DURATION.exec(value.trim());
    if (!match || match.slice(1).every((g) => g === undefined)) fail();
    const [, d, h, m, s, milli] = match as RegExpExecArray;
    ms =
      Number(d ?? 0) * UNIT_MS.d +
      Number(h ?? 0) * UNIT_MS.h +
      Number(m ?? 0) * UNIT_MS.m +
      Number(s ?? 0) * UNIT_MS.s +
      Number(milli ?? 0) * UNIT_MS.ms;
  } else {
    ms = fail();
  }
  if (ms < 0 || (ms === 0 && !options.allowZero) || ms > 366 * 24 * UNIT_MS.h) fail();
  return ms;
}
