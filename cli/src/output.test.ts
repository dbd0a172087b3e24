import { describe, expect, it } from "vitest";
import { formatBytes, formatDuration, formatFields, formatTable, prettyLogLine } from "./output.js";

describe("output", () => {
  it("table - pads every column but the last", () => {
    expect(
      formatTable(
        ["A", "LONG"],
        [
          ["xyz", "1"],
          ["w", "22"],
        ],
      ),
    ).toBe("A    LONG\nxyz  1\nw    22");
  });

  it("durations and sizes read naturally", () => {
    expect(formatDuration(850)).toBe("850 ms");
    expect(formatDuration(1234)).toBe("1.23 s");
    expect(formatDuration(65_000)).toBe("1m 05s");
    expect(formatDuration(7_380_000)).toBe("2h 03m");
    expect(formatDuration(undefined)).toBe("-");
    expect(formatBytes(312)).toBe("312 B");
    expect(formatBytes(4200)).toBe("4.1 KiB");
  });

  it("fields - multi-line values stay under their column", () => {
    expect(
      formatFields([
        ["Run", "r1"],
        ["Input", '{\n  "a": 1\n}'],
      ]),
    ).toBe('Run    r1\nInput  {\n         "a": 1\n       }');
  });

  it("log lines - pino JSON becomes one short line; other text passes through", () => {
    const line = JSON.stringify({
      level: 30,
      time: Date.UTC(2025, 0, 2, 3, 4, 5, 6),
      pid: 1,
      module: "engine",
      ns: "a",
      msg: "started",
    });
    expect(prettyLogLine(line)).toBe("03:04:05.006 INFO  [engine] started ns=a\n");
    expect(prettyLogLine("plain")).toBe("plain\n");
  });
});
