import { describe, expect, it } from "vitest";
import { parseDuration } from "./durations.js";
import { ValidationError } from "./errors.js";

describe("durations", () => {
  it("durations - hours, minutes, seconds and milliseconds combine; numbers are milliseconds", () => {
    expect(parseDuration("1h30m5s", "t")).toBe(5_405_000);
    expect(parseDuration("15s", "t")).toBe(15_000);
    expect(parseDuration("500ms", "t")).toBe(500);
    expect(parseDuration("2m", "t")).toBe(120_000);
    expect(parseDuration("1m500ms", "t")).toBe(60_500);
    expect(parseDuration("1d", "t")).toBe(86_400_000);
    expect(parseDuration("2d12h", "t")).toBe(216_000_000);
    expect(parseDuration(250, "t")).toBe(250);
    expect(parseDuration(0, "t", { allowZero: true })).toBe(0);
  });

  it("durations - anything else is a ValidationError naming the option and the value", () => {
    for (const bad of [
      "",
      "-5s",
      "5",
      "1.5s",
      "5 s",
      "1h1d",
      "d",
      "s",
      "ms",
      -1,
      0,
      1.5,
      Number.NaN,
      null,
      {},
      "5ms1s",
    ]) {
      let err: unknown;
      try {
        parseDuration(bad, "executionTimeout");
      } catch (e) {
        err = e;
      }
      expect(err, String(bad)).toBeInstanceOf(ValidationError);
      expect((err as ValidationError).field).toBe("executionTimeout");
    }
    expect(() => parseDuration("-5s", "executionTimeout")).toThrow(
      /executionTimeout: must be a positive duration.*got "-5s"/,
    );
  });
});
