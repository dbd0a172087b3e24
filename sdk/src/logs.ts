import type { JsMsg } from "@nats-io/jetstream";
import { checkToken, RunNotFoundError, Streams, subjects, type TaskLogLine, TaskLogLineSchema } from "@taskjet/schemas";
import { type Connection, withProvisioningHint } from "./connection.js";
import { readStream } from "./read-stream.js";
import { lastHistoryMessage } from "./run-reader.js";
import { followRunSide } from "./run-tail.js";

/** Task log lines (`ctx.logger.*`), stored per run in `TJ_LOGS`. */
export class LogsClient {
  constructor(
    private readonly conn: Connection,
    private readonly ns: string,
  ) {}

  /**
   * A run's log lines so far, in order (every attempt's, each saying which).
   * @throws RunNotFoundError when the run has no history (as `follow` and REST `GET runs/:id/logs`)
   */
  async list(runId: string): Promise<TaskLogLine[]> {
    checkToken(runId, "runId");
    const lines: TaskLogLine[] = [];
    const read = readStream(this.conn.js, Streams.logs, subjects.log(this.ns, runId), { startSeq: 1 });
    try {
      for await (const m of read) {
        const line = toLine(m);
        if (line) lines.push(line);
      }
    } catch (err) {
      withProvisioningHint(this.conn, Streams.logs)(err);
    }
    // No line: a run that logged nothing, or no run at all (its history says which).
    if (lines.length === 0 && !(await lastHistoryMessage(this.conn, this.ns, runId))) throw new RunNotFoundError(runId);
    return lines;
  }

  /**
   * A run's log lines from the first, then live as the task logs them, until the run is terminal and every line
   * stored by then has been delivered (`taskjet runs logs --follow`). Breaking out of the loop stops reading.
   * @example
   * for await (const line of tj.logs.follow(ref.runId)) lines.push(`${line.attempt} ${line.level} ${line.message}`);
   * @throws RunNotFoundError when the run has no history
   */
  async *follow(runId: string): AsyncGenerator<TaskLogLine> {
    for await (const m of followRunSide(this.conn, this.ns, runId, subjects.log(this.ns, runId))) {
      const line = toLine(m);
      if (line) yield line;
    }
  }
}

/** The line a message carries; undefined for one that is not a log line of this version. */
function toLine(m: JsMsg): TaskLogLine | undefined {
  try {
    const parsed = TaskLogLineSchema.safeParse(m.json());
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}
