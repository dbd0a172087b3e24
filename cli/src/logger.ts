import { type Logger, pino } from "pino";
import type { LogLevel } from "./config.js";
import { prettyLogLine } from "./output.js";

/** How `dev` and `engine` print their logs. */
export const LogFormats = ["pretty", "json"] as const;
export type LogFormat = (typeof LogFormats)[number];

/**
 * The one logger of a long-running command, made here and passed down. `json` is plain pino to stdout (for log
 * shippers); `pretty` is one short line per record for people.
 */
export function createLogger(level: LogLevel, format: LogFormat, write: (text: string) => void): Logger {
  if (format === "json") return pino({ level }, { write });
  return pino({ level }, { write: (line: string) => write(prettyLogLine(line.trimEnd())) });
}
