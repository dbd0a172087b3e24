import { describe, expect, it } from "vitest";
import { formatDuration, parseJsonObject } from "./format.ts";

describe("format", () => {
  it("format - durations read as people say them", () => {
    expect(formatDuration(450)).toBe("450 ms");
    expect(formatDuration(4200)).toBe("4.2 s");
    expect(formatDuration(185_000)).toBe("3 min 5 s");
    // Rounded before it is split: never "60 s" or "1 min 60 s".
    expect(formatDuration(59_600)).toBe("1 min");
    expect(formatDuration(119_600)).toBe("2 min");
    expect(formatDuration(3_599_600)).toBe("1 h");
    expect(formatDuration(2 * 3600_000 + 600_000)).toBe("2 h 10 min");
  });

  it("format - JSON input must be an object; a syntax error names line and column", () => {
    expect(parseJsonObject('{ "a": 1 }', "input")).toEqual({ value: { a: 1 } });
    expect(parseJsonObject("", "input")).toEqual({ value: {} });
    expect(parseJsonObject("[1]", "input")).toEqual({ error: "input: must be a JSON object ({ ... }), got an array" });
    expect(parseJsonObject("null", "input")).toMatchObject({ error: expect.stringContaining("must be a JSON object") });
    const bad = parseJsonObject('{\n  "a": ,\n}', "input");
    expect(bad).toMatchObject({ error: expect.stringMatching(/^input: not valid JSON/) });
  });
});
