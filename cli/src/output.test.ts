import { stripVTControlCharacters } from "node:util";
import { describe, expect, it } from "vitest";
import {
  createStyle,
  formatAgo,
  formatBytes,
  formatDuration,
  formatFields,
  formatTable,
  prettyLogLine,
  terminalSafe,
  useColor,
} from "./output.js";

describe("output", () => {
  it("terminal - stored text cannot drive the terminal: its control characters print escaped, colour codes stay", () => {
    const colour = createStyle(true);
    const hostile = "evil\u001b[2J\u001b]0;title\u0007\r\u009b1A\u202eright";
    expect(terminalSafe(`${colour.bad("FAILED")}\t${hostile}\n`)).toBe(
      `${colour.bad("FAILED")}\tevil\\u001b[2J\\u001b]0;title\\u0007\\u000d\\u009b1A\\u202eright\n`,
    );
    expect(terminalSafe("plain: ünïcödé ✓ 🚀")).toBe("plain: ünïcödé ✓ 🚀");
    // Not colouring (NO_COLOR, --no-color, a pipe): no colour code passes, stored or not.
    expect(terminalSafe("boom\u001b[31mred", false)).toBe("boom\\u001b[31mred");
  });

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

  it("relative times - floored to the largest unit, past and future", () => {
    const now = Date.parse("2026-01-01T12:00:00Z");
    const at = (ms: number) => new Date(now - ms);
    expect(formatAgo(at(400), now)).toBe("just now");
    expect(formatAgo(at(-400), now)).toBe("just now");
    expect(formatAgo(at(3_900), now)).toBe("3 s ago");
    expect(formatAgo(at(59_999), now)).toBe("59 s ago");
    expect(formatAgo(at(60_000), now)).toBe("1 min ago");
    expect(formatAgo(at(150_000), now)).toBe("2 min ago");
    expect(formatAgo(at(5 * 3_600_000 + 59 * 60_000), now)).toBe("5 h ago");
    expect(formatAgo(at(47 * 3_600_000), now)).toBe("47 h ago");
    expect(formatAgo(at(3 * 86_400_000), now)).toBe("3 d ago");
    expect(formatAgo(at(-10_500), now)).toBe("in 10 s");
    expect(formatAgo(at(-2 * 3_600_000), now)).toBe("in 2 h");
    expect(formatAgo("2026-01-01T11:58:00.000Z", now)).toBe("2 min ago");
    expect(formatAgo(undefined, now)).toBe("-");
    expect(formatAgo("not a time", now)).toBe("not a time");
  });

  it("colour - only on a terminal or when forced; --no-color and NO_COLOR always win", () => {
    const none = {};
    expect(useColor({ flag: undefined, env: none, interactive: true })).toBe(true);
    expect(useColor({ flag: undefined, env: none, interactive: false })).toBe(false);
    expect(useColor({ flag: true, env: none, interactive: false })).toBe(true);
    expect(useColor({ flag: undefined, env: { FORCE_COLOR: "1" }, interactive: false })).toBe(true);
    expect(useColor({ flag: undefined, env: { FORCE_COLOR: "" }, interactive: false })).toBe(true);
    expect(useColor({ flag: undefined, env: { FORCE_COLOR: "0" }, interactive: true })).toBe(false);
    expect(useColor({ flag: false, env: { FORCE_COLOR: "1" }, interactive: true })).toBe(false);
    expect(useColor({ flag: true, env: { NO_COLOR: "1" }, interactive: true })).toBe(false);
    expect(useColor({ flag: undefined, env: { NO_COLOR: "1", FORCE_COLOR: "1" }, interactive: true })).toBe(false);
    // An empty NO_COLOR is unset (no-color.org).
    expect(useColor({ flag: undefined, env: { NO_COLOR: "" }, interactive: true })).toBe(true);
    expect(useColor({ flag: undefined, env: { TERM: "dumb" }, interactive: true })).toBe(false);
  });

  it("colour - statuses get their colour; off, the text is unchanged", () => {
    const on = createStyle(true);
    expect(on.status("COMPLETED")).toBe("\x1b[32mCOMPLETED\x1b[39m");
    expect(on.status("FAILED")).toBe("\x1b[31mFAILED\x1b[39m");
    expect(on.status("NEW")).toBe("NEW");
    const off = createStyle(false);
    for (const s of ["COMPLETED", "FAILED", "RUNNING", "QUEUED", "CANCELLED"]) expect(off.status(s)).toBe(s);
  });

  it("table - colour codes take no width", () => {
    const on = createStyle(true);
    const table = formatTable(
      ["ID", "STATUS", "AGE"],
      [
        ["a", on.status("COMPLETED"), "1 s ago"],
        ["b", "FAILED", "2 s ago"],
      ],
    );
    const plain = stripVTControlCharacters(table);
    expect(plain).toBe("ID  STATUS     AGE\na   COMPLETED  1 s ago\nb   FAILED     2 s ago");
  });
});
