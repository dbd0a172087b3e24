/** Process exit codes of `taskjet`. */
export const ExitCodes = {
  ok: 0,
  /** The command ran and failed: a run failed, a server was unreachable, a run was not found. */
  failure: 1,
  /** The command line was wrong: unknown command or flag, bad flag value. */
  usage: 2,
} as const;
export type ExitCode = (typeof ExitCodes)[keyof typeof ExitCodes];

/** A bad command line found after commander parsed it (a bad value from the environment, a bad task name). */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}
