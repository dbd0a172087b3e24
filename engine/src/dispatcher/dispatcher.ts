import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { type Assignment, assignmentOf, type ControlMessage, type RunState, Streams, subjects } from "@taskjet/schemas";
import type { Logger } from "pino";
import { attemptKey, type Placement } from "../scheduler/core.js";

export interface DispatcherOptions {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  ns: string;
  log: Logger;
  /** Called for a placement whose assignment could not be published. */
  onUndelivered: (placement: Placement) => void;
}

/** Publishes placements to the workers' assignment subjects, pipelined. */
export class Dispatcher {
  constructor(private readonly o: DispatcherOptions) {}

  send(placements: Placement[], stateOf: (runId: string) => RunState | undefined): void {
    const now = new Date().toISOString();
    for (const placement of placements) {
      const { task, workerId } = placement;
      const state = stateOf(task.runId);
      if (!state) {
        this.o.onUndelivered(placement);
        continue;
      }
      const current = state.tasks.find((t) => t.taskRunId === task.taskRunId);
      if (!current) {
        this.o.onUndelivered(placement);
        continue;
      }
      const assignment: Assignment = {
        ...assignmentOf(state, current, { expectedSeq: state.lastSeq, assignedAt: now }),
        // The placed attempt: the state may already be past it, and the worker's CAS then refuses it.
        attempt: task.attempt,
      };
      // The worker id is part of the dedup id: the same attempt placed again on another worker is a new message.
      this.o.js
        .publish(subjects.assign(this.o.ns, workerId), JSON.stringify(assignment), {
          msgID: `${attemptKey(task)}:${workerId}`,
        })
        .catch((err) => {
          this.o.log.warn({ err, runId: task.runId, workerId }, "assignment not delivered");
          this.o.onUndelivered(placement);
        });
    }
  }

  /** Tells a worker to stop an attempt (core NATS: a worker that misses it is fenced by CAS anyway). */
  control(workerId: string, message: ControlMessage): void {
    this.o.nc.publish(subjects.control(this.o.ns, workerId), JSON.stringify(message));
  }

  /** Drops a departed worker's undelivered assignments; the scheduler places them again. */
  async purge(workerId: string): Promise<void> {
    await this.o.jsm.streams.purge(Streams.assign, { filter: subjects.assign(this.o.ns, workerId) });
  }
}
