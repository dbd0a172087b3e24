import type { NatsConnection } from "@nats-io/transport-node";
import { type Assignment, assignmentOf, type ControlMessage, type RunState, subjects } from "@taskjet/schemas";
import type { Logger } from "pino";
import type { Placement } from "../scheduler/core.js";

export interface DispatcherOptions {
  nc: NatsConnection;
  ns: string;
  log: Logger;
  /** Called for a placement whose assignment could not be published. */
  onUndelivered: (placement: Placement) => void;
  /**
   * Placements sent between one and two `resendAfterMs` ago, every `resendAfterMs`: the scheduler sends again those
   * whose attempt is still placed there and not started.
   */
  onUnconfirmed: (placements: Placement[]) => void;
  resendAfterMs: number;
}

/**
 * Publishes placements to the workers' assignment subjects over core NATS.
 *
 * An assignment is not stored: it is derived from the run's history, and the attempt stays QUEUED there until its
 * worker records the start or the result. Storing it in a work-queue stream cost a replicated write, a delivery, an
 * ack and a delete per task on the hot path. What the stream gave, redelivery, is kept
 * where it matters: a core message is lost only when a connection drops (a reconnect, a node lost, a slow consumer
 * cut off), so every assignment sent is looked at again a period later, and sent again if its attempt is still
 * placed and not started. The worker ignores a copy of an attempt it runs or has run.
 */
export class Dispatcher {
  private sent: Placement[] = [];
  private sentBefore: Placement[] = [];
  private readonly sweep: NodeJS.Timeout;

  constructor(private readonly o: DispatcherOptions) {
    this.sweep = setInterval(() => {
      // Two generations: what was sent in the period before last is at least one period old now.
      const due = this.sentBefore;
      this.sentBefore = this.sent;
      this.sent = [];
      if (due.length > 0) this.o.onUnconfirmed(due);
    }, o.resendAfterMs);
    this.sweep.unref();
  }

  send(placements: Placement[], stateOf: (runId: string) => RunState | undefined): void {
    const now = new Date().toISOString();
    for (const placement of placements) {
      const { task, workerId } = placement;
      const state = stateOf(task.runId);
      const current = state?.tasks.find((t) => t.taskRunId === task.taskRunId);
      if (!state || !current) {
        this.o.onUndelivered(placement);
        continue;
      }
      const assignment: Assignment = {
        ...assignmentOf(state, current, { expectedSeq: state.lastSeq, assignedAt: now }),
        // The placed attempt: the state may already be past it, and the worker's CAS then refuses it.
        attempt: task.attempt,
      };
      try {
        this.o.nc.publish(subjects.assign(this.o.ns, workerId), JSON.stringify(assignment));
      } catch (err) {
        // Closed connection, or an assignment over the server's payload limit.
        this.o.log.warn({ err, runId: task.runId, workerId }, "assignment not delivered");
        this.o.onUndelivered(placement);
        continue;
      }
      this.sent.push(placement);
    }
  }

  /** Tells a worker to stop an attempt (core NATS: a worker that misses it is fenced by CAS anyway). */
  control(workerId: string, message: ControlMessage): void {
    this.o.nc.publish(subjects.control(this.o.ns, workerId), JSON.stringify(message));
  }

  stop(): void {
    clearInterval(this.sweep);
    this.sent = [];
    this.sentBefore = [];
  }
}
