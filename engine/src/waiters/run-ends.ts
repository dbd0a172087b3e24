import type { NatsConnection } from "@nats-io/transport-node";
import { type RunState, runEnd, subjects } from "@taskjet/schemas";
import type { Logger } from "pino";
import { exceeds, maxPayloadOf } from "../nats/connect.js";

/**
 * How long an end is kept for `again` (to twice this): a dying server is noticed when its socket closes, and the
 * connection reconnects every 250 ms (`connectNats`), so the ends at risk are those of the last second or so.
 */
const KEPT_MS = 3000;
/**
 * Ends kept per generation at most: beyond, the generation turns early (the latest are the ones at risk). Bounds what
 * `again` sends at once, synchronously, to 40,000 short messages.
 */
const MAX_KEPT = 20_000;

interface Announced {
  subject: string;
  json: string;
}

/**
 * Tells whoever waits for a run (`run()`, `result()`) how it ended: a `RunEnd` on `tj.<ns>.ended.<runId>`, core NATS.
 *
 * A lost announcement is made up for by whoever lost it. With the waiter's dropped connection: the waiter reads the run
 * on its reconnect. With a crashed engine: the next leader folds the same event again and announces it (the checkpoint
 * passes the event only after this connection wrote the run's state, behind the announcement). With the engine's
 * server, which took it but died before passing it on to the waiter's server: this engine, once reconnected, announces
 * the ends of the last few seconds again; a waiter that already has its run ignores the copy.
 */
export class RunEnds {
  private recent: Announced[] = [];
  private older: Announced[] = [];
  private readonly turn: NodeJS.Timeout;

  constructor(private readonly o: { nc: NatsConnection; ns: string; log: Logger; keptMs?: number }) {
    this.turn = setInterval(() => this.age(), o.keptMs ?? KEPT_MS);
    this.turn.unref();
  }

  announce(state: RunState): void {
    const end = runEnd(state);
    let json = JSON.stringify(end);
    // An output too large for one message: the waiter reads the run.
    if (exceeds(json, maxPayloadOf(this.o.nc))) json = JSON.stringify({ ...end, output: undefined, slim: true });
    const subject = subjects.ended(this.o.ns, state.runId);
    if (this.recent.length >= MAX_KEPT) this.age();
    this.recent.push({ subject, json });
    this.publish(subject, json);
  }

  /** After this engine's connection came back: the server it had written to may not have passed the last ends on. */
  again(): void {
    const all = [...this.older, ...this.recent];
    if (all.length === 0) return;
    this.o.log.info({ ends: all.length }, "reconnected: announcing the latest run ends again");
    for (const { subject, json } of all) this.publish(subject, json);
  }

  stop(): void {
    clearInterval(this.turn);
    this.recent = [];
    this.older = [];
  }

  private age(): void {
    this.older = this.recent;
    this.recent = [];
  }

  private publish(subject: string, json: string): void {
    try {
      this.o.nc.publish(subject, json);
    } catch (err) {
      this.o.log.debug({ err, subject }, "could not announce a run's end");
    }
  }
}
