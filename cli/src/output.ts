import { stripVTControlCharacters } from "node:util";
import pc from "picocolors";

/** Where a command prints: stdout for results, stderr for errors, hints and progress. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
  /** True when stdout is a terminal (hints are printed only to people). */
  readonly interactive: boolean;
}

/**
 * A reader that closes the pipe early (`taskjet runs list | head -1`) is no failure: the process leaves quietly with
 * exit 0 on EPIPE of stdout or stderr. Any other write error is rethrown, an uncaught exception as without a handler.
 */
export function exitQuietlyOnBrokenPipe(streams: NodeJS.WriteStream[] = [process.stdout, process.stderr]): void {
  for (const stream of streams) {
    if (stream.listeners("error").includes(onStreamError)) continue;
    stream.on("error", onStreamError);
  }
}

function onStreamError(err: NodeJS.ErrnoException): void {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
}

/** The process's own streams. */
export function processIo(): Io {
  exitQuietlyOnBrokenPipe();
  return {
    out: (text) => process.stdout.write(text),
    err: (text) => process.stderr.write(text),
    interactive: process.stdout.isTTY === true,
  };
}

/**
 * What the CLI prints comes partly from others (worker names, errors, log lines, metadata): their control characters
 * are shown escaped (`\u001b`), so that no stored text moves the cursor, clears or retitles the terminal, or rings it.
 * Kept: newlines, tabs and, with `colour`, colour codes (SGR, `ESC[...m`, the CLI's own; in stored text they can only
 * colour it); without colour they are escaped too. Bidirectional overrides are escaped (they reorder what is shown).
 */
export function terminalSafe(text: string, colour = true): string {
  return text.replace(UNSAFE, (c) => {
    if (c === "\n" || c === "\t" || (colour && c.length > 1)) return c;
    // A colour code (ESC[...m) is its escape character and plain text after it.
    return `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}${c.slice(1)}`;
  });
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it finds
const UNSAFE = /\x1b\[[0-9;]*m|[\p{Cc}\u202a-\u202e\u2066-\u2069]/gu;

/** An `Io` whose output goes through `terminalSafe`, colour codes kept while `colour()` says so. */
export function safeIo(io: Io, colour: () => boolean): Io {
  return {
    out: (text) => io.out(terminalSafe(text, colour())),
    err: (text) => io.err(terminalSafe(text, colour())),
    interactive: io.interactive,
  };
}

/** One line of text. */
export function println(write: (text: string) => void, line = ""): void {
  write(`${line}\n`);
}

/** One JSON document per line (JSON Lines). */
export function jsonLine(value: unknown): string {
  return `${JSON.stringify(value)}\n`;
}

/** Indented JSON for people. */
export function prettyJson(value: unknown): string {
  return JSON.stringify(value, null, 2);
}

/** Left-aligned columns separated by two spaces; the last column is not padded. Colour codes take no width. */
export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => visibleLength(r[i] ?? ""))));
  return [headers, ...rows].map((row) => padRow(row, widths)).join("\n");
}

/** One row padded to `widths`. */
export function padRow(row: string[], widths: number[]): string {
  return row
    .map((cell, i) =>
      i === row.length - 1 ? cell : cell + " ".repeat(Math.max(0, (widths[i] ?? 0) - visibleLength(cell))),
    )
    .join("  ")
    .trimEnd();
}

/** A cell's width on the terminal: without its colour codes. */
function visibleLength(text: string): number {
  return stripVTControlCharacters(text).length;
}

/**
 * `just now`, `3 s ago`, `2 min ago`, `5 h ago`, `3 d ago`; a time ahead reads `in 3 s`. Units are floored, so a
 * value never claims more time than passed.
 */
export function formatAgo(time: Date | string | undefined, now: number = Date.now()): string {
  if (time === undefined) return "-";
  const at = typeof time === "string" ? Date.parse(time) : time.getTime();
  if (Number.isNaN(at)) return String(time);
  const ms = now - at;
  const abs = Math.abs(ms);
  if (abs < 1000) return "just now";
  const span =
    abs < 60_000
      ? `${Math.floor(abs / 1000)} s`
      : abs < 3_600_000
        ? `${Math.floor(abs / 60_000)} min`
        : abs < 48 * 3_600_000
          ? `${Math.floor(abs / 3_600_000)} h`
          : `${Math.floor(abs / 86_400_000)} d`;
  return ms > 0 ? `${span} ago` : `in ${span}`;
}

/** What the CLI colours; every function returns its text unchanged when colour is off. */
export interface Style {
  readonly enabled: boolean;
  /** A run or task status: COMPLETED green, FAILED red, RUNNING yellow, QUEUED cyan, CANCELLED grey. */
  status(status: string): string;
  /** Good news (alive, completed events). */
  good(text: string): string;
  /** Bad news (failures, timeouts). */
  bad(text: string): string;
  /** Worth a look (waiting, draining, stale heartbeats). */
  warn(text: string): string;
  /** Secondary detail. */
  dim(text: string): string;
}

/** Whether to colour stdout. */
export interface ColorChoice {
  /** `--color` (true) or `--no-color` (false), if given. */
  flag: boolean | undefined;
  env: { NO_COLOR?: string | undefined; FORCE_COLOR?: string | undefined; TERM?: string | undefined };
  /** stdout is a terminal. */
  interactive: boolean;
}

/**
 * Colour only for people: on a terminal, or when forced by `--color` or `FORCE_COLOR`. `--no-color` and a non-empty
 * `NO_COLOR` (no-color.org) always win, even over `--color`: a user who set NO_COLOR never wants escape codes.
 * `FORCE_COLOR=0` or `false` turns colour off, as in Node.
 */
export function useColor({ flag, env, interactive }: ColorChoice): boolean {
  if (flag === false) return false;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== "") return false;
  if (flag === true) return true;
  if (env.FORCE_COLOR !== undefined) return env.FORCE_COLOR !== "0" && env.FORCE_COLOR !== "false";
  if (env.TERM === "dumb") return false;
  return interactive;
}

/** The colours of the CLI, or none. */
export function createStyle(enabled: boolean): Style {
  const c = pc.createColors(enabled);
  const byStatus: Record<string, (text: string) => string> = {
    COMPLETED: c.green,
    FAILED: c.red,
    RUNNING: c.yellow,
    QUEUED: c.cyan,
    CANCELLED: c.gray,
    SCHEDULED: c.blue,
    PENDING: c.magenta,
  };
  return {
    enabled,
    status: (status) => (byStatus[status] ?? String)(status),
    good: c.green,
    bad: c.red,
    warn: c.yellow,
    dim: c.dim,
  };
}

/** `2025-01-02T03:04:05.678Z`: every time the CLI prints is UTC. */
export function isoUtc(time: Date | string | undefined): string {
  if (time === undefined) return "-";
  const date = typeof time === "string" ? new Date(time) : time;
  return Number.isNaN(date.getTime()) ? String(time) : date.toISOString();
}

/** Milliseconds between two times, or undefined when either is missing. */
export function msBetween(from: string | Date | undefined, to: string | Date | undefined): number | undefined {
  if (from === undefined || to === undefined) return undefined;
  const ms = new Date(to).getTime() - new Date(from).getTime();
  return Number.isNaN(ms) ? undefined : ms;
}

/** `850 ms`, `12.3 s`, `4m 05s`, `2h 03m`. */
export function formatDuration(ms: number | undefined): string {
  if (ms === undefined) return "-";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  const totalSeconds = Math.floor(ms / 1000);
  if (totalSeconds < 3600) {
    return `${Math.floor(totalSeconds / 60)}m ${String(totalSeconds % 60).padStart(2, "0")}s`;
  }
  const totalMinutes = Math.floor(totalSeconds / 60);
  return `${Math.floor(totalMinutes / 60)}h ${String(totalMinutes % 60).padStart(2, "0")}m`;
}

/** `312 B`, `4.1 KiB`, `1.0 MiB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/** Size of a value as JSON, in UTF-8 bytes. */
export function jsonSize(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value) ?? "", "utf8");
}

/** The first line of a text, cut to `max` characters. */
export function short(text: string, max = 80): string {
  const line = text.split("\n", 1)[0] ?? "";
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** Indents every line of a block. */
export function indent(text: string, by = "  "): string {
  return text
    .split("\n")
    .map((l) => (l === "" ? l : by + l))
    .join("\n");
}

/** `key: value` lines with aligned values; multi-line values continue indented under the value column. */
export function formatFields(fields: [string, string][]): string {
  const width = Math.max(...fields.map(([k]) => k.length)) + 2;
  return fields
    .map(([k, v]) => {
      const [first, ...rest] = v.split("\n");
      const pad = " ".repeat(width);
      return [`${k.padEnd(width)}${first ?? ""}`, ...rest.map((l) => (l === "" ? "" : pad + l))].join("\n");
    })
    .join("\n");
}

const LEVELS: Record<number, string> = {
  10: "TRACE",
  20: "DEBUG",
  30: "INFO ",
  40: "WARN ",
  50: "ERROR",
  60: "FATAL",
};
const HIDDEN_KEYS = new Set(["level", "time", "msg", "pid", "hostname", "module", "err"]);

/**
 * Turns one pino JSON line into `HH:MM:SS.mmm LEVEL [module] message key=value ...` for people; an error's stack
 * follows, indented. Lines that are not pino JSON pass through unchanged.
 */
export function prettyLogLine(line: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.endsWith("\n") ? line : `${line}\n`;
  }
  const time = typeof rec.time === "number" ? new Date(rec.time).toISOString().slice(11, 23) : "";
  const level = LEVELS[rec.level as number] ?? String(rec.level);
  const module = typeof rec.module === "string" ? `[${rec.module}] ` : "";
  const fields = Object.entries(rec)
    .filter(([k]) => !HIDDEN_KEYS.has(k))
    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join(" ");
  const err = rec.err as { type?: string; message?: string; stack?: string } | undefined;
  const errText = err ? ` err=${err.type ?? "Error"}: ${err.message ?? ""}` : "";
  const stack = err?.stack && (rec.level as number) >= 50 ? `\n${indent(err.stack, "    ")}` : "";
  return `${time} ${level} ${module}${String(rec.msg ?? "")}${fields ? ` ${fields}` : ""}${errText}${stack}\n`;
}
