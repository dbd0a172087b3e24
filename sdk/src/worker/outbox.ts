import type { JetStreamClient } from "@nats-io/jetstream";
import { headers } from "@nats-io/transport-node";
import { ChunkHeaders, type Logger, subjects, type TaskLogLine } from "@taskjet/schemas";

/** Publishes awaiting their ack beyond which `putStream` makes the task wait (memory stays bounded). */
const MAX_IN_FLIGHT = 1000;

/**
 * One attempt's log lines and stream chunks on their way to `TJ_LOGS`. Each is published at once without waiting for
 * its ack (publishes leave in call order on one connection, so the stream stores them in order); the worker awaits
 * `settled()` before reporting the attempt's outcome, so a reader that sees the run end knows all of them are stored.
 * A publish the stream refuses is logged, never thrown into the task.
 */
export class Outbox {
  private readonly inFlight = new Set<Promise<void>>();
  private chunks = 0;

  constructor(
    private readonly js: JetStreamClient,
    private readonly ns: string,
    private readonly attempt: { runId: string; taskRunId: string; attempt: number },
    private readonly log: Logger,
  ) {}

  /** Publishes a `ctx.logger` line. */
  line(line: TaskLogLine): void {
    this.track(
      this.js.publish(subjects.log(this.ns, this.attempt.runId), JSON.stringify(line)),
      "debug",
      "log line not stored",
    );
  }

  /** Publishes a `ctx.putStream` chunk; resolves at once unless too many chunks await their ack. */
  async chunk(data: Uint8Array): Promise<void> {
    const h = headers();
    h.set(ChunkHeaders.version, "1");
    h.set(ChunkHeaders.taskRunId, this.attempt.taskRunId);
    h.set(ChunkHeaders.attempt, String(this.attempt.attempt));
    h.set(ChunkHeaders.index, String(this.chunks++));
    this.track(
      this.js.publish(subjects.chunk(this.ns, this.attempt.runId), data, { headers: h }),
      "warn",
      "stream chunk not stored",
    );
    while (this.inFlight.size > MAX_IN_FLIGHT) await Promise.race(this.inFlight);
  }

  /** Resolves once every publish made so far was acknowledged or failed (later ones are not waited for). */
  async settled(): Promise<void> {
    await Promise.all([...this.inFlight]);
  }

  private track(publish: Promise<unknown>, level: "debug" | "warn", failed: string): void {
    const p: Promise<void> = publish.then(
      () => {
        this.inFlight.delete(p);
      },
      (err: unknown) => {
        this.inFlight.delete(p);
        this.log[level]({ err }, failed);
      },
    );
    this.inFlight.add(p);
  }
}
