import { checkToken, Streams, subjects, type TaskLogLine, TaskLogLineSchema } from "@taskjet/schemas";
import { type Connection, withProvisioningHint } from "./connection.js";
import { readStream } from "./read-stream.js";

/** Task log lines (`ctx.logger.*`), stored per run in `TJ_LOGS`. */
export class LogsClient {
  constructor(
    private readonly conn: Connection,
    private readonly ns: string,
  ) {}

  /** A run's log lines so far, in order (every attempt's, each saying which). */
  async list(runId: string): Promise<TaskLogLine[]> {
    checkToken(runId, "runId");
    const lines: TaskLogLine[] = [];
    const read = readStream(this.conn.js, Streams.logs, subjects.log(this.ns, runId), { startSeq: 1 });
    try {
      for await (const m of read) {
        const parsed = TaskLogLineSchema.safeParse(m.json());
        if (parsed.success) lines.push(parsed.data);
      }
    } catch (err) {
      withProvisioningHint(this.conn, Streams.logs)(err);
    }
    return lines;
  }
}
