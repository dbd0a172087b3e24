import type { NatsConnection } from "@nats-io/transport-node";
import {
  type Assignment,
  assignmentOf,
  type ControlMessage,
  type RunState,
  slimAssignment,
  subjects,
} from "@taskjet/schemas";
import type { Logger } from "pino";
import type { Gate } from "../leases/fence.js";
import { maxPayloadOf } from "../nats/connect.js";
import type { Placement } from "../scheduler/core.js";

export interface DispatcherOptions {
  nc: NatsConnection;
  ns: string;
  log: Logger;
  /** Called for a placement whose assignment could not be published. */
  onUndelivered: (placement: Placement) => void;
  /** Whether the worker takes its assignments in arrays (`WorkerRegistration.assignmentBatches`). */
  takesBatches: (workerId: string) => boolean;
  /** Whether the worker reads what a slim assignment leaves out (`WorkerRegistration.slimAssignments`). */
  takesSlim: (workerId: string) => boolean;
  /** Assignments wait while the lease is not confirmed: a deposed leader's would run a task a second time. */
  fence?: Gate;
}

/** Assignments for one worker, to go in one message. */
interface Batch {
  placements: Placement[];
  json: string[];
  bytes: number;
}

/**
 * Publishes placements to the workers' assignment subjects over core NATS.
 *
 * An assignment is not stored: it is derived from the run's history, and the attempt stays QUEUED there until its
 * worker records the start or the result. Storing it in a work-queue stream cost a replicated write, a delivery, an
 * ack and a delete per task on the hot path. What the stream gave, redelivery, is kept
 * where it matters: a core message is lost only when a connection drops (a reconnect, a node lost, a slow consumer
 * cut off), so the scheduler sends again the assignments of attempts that stay placed and not started
 * (`Scheduler.resendUnstarted`). The worker ignores a copy of an attempt it runs or has run.
 *
 * The assignments a turn places on one worker go in one message (up to the payload limit), for workers that take
 * arrays: a message costs each process it crosses more than the JSON it carries.
 */
export class Dispatcher {
  private held: [Placement[], (runId: string) => RunState | undefined][] = [];
  private readonly sendHeld = () => {
    const held = this.held;
    this.held = [];
    for (const [placements, stateOf] of held) this.send(placements, stateOf);
  };

  constructor(private readonly o: DispatcherOptions) {}

  send(placements: Placement[], stateOf: (runId: string) => RunState | undefined): void {
    const { fence } = this.o;
    if (fence && !fence.ok) {
      this.held.push([placements, stateOf]);
      fence.whenOk(this.sendHeld);
      return;
    }
    const now = new Date().toISOString();
    const max = maxPayloadOf(this.o.nc);
    const batches = new Map<string, Batch>();
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
      let json = JSON.stringify(assignment);
      // Its input and its parents' outputs, each within a message, may not be within one together.
      if (json.length * 3 > max && Buffer.byteLength(json) > max && this.o.takesSlim(workerId)) {
        json = JSON.stringify(slimAssignment(assignment));
      }
      if (!this.o.takesBatches(workerId)) {
        this.publish(workerId, json, [placement]);
        continue;
      }
      const bytes = Buffer.byteLength(json) + 1;
      let batch = batches.get(workerId);
      if (batch && batch.bytes + bytes > max) {
        this.publishBatch(workerId, batch);
        batch = undefined;
      }
      if (!batch) {
        batch = { placements: [], json: [], bytes: 1 };
        batches.set(workerId, batch);
      }
      batch.placements.push(placement);
      batch.json.push(json);
      batch.bytes += bytes;
    }
    for (const [workerId, batch] of batches) this.publishBatch(workerId, batch);
  }

  private publishBatch(workerId: string, batch: Batch): void {
    this.publish(workerId, `[${batch.json.join(",")}]`, batch.placements);
  }

  private publish(workerId: string, payload: string, placements: Placement[]): void {
    try {
      this.o.nc.publish(subjects.assign(this.o.ns, workerId), payload);
    } catch (err) {
      // Closed connection, or an assignment over the server's payload limit.
      this.o.log.warn({ err, runIds: placements.map((p) => p.task.runId), workerId }, "assignment not delivered");
      for (const placement of placements) this.o.onUndelivered(placement);
    }
  }

  /** Tells a worker to stop an attempt (core NATS: a worker that misses it is fenced by CAS anyway). */
  control(workerId: string, message: ControlMessage): void {
    this.o.nc.publish(subjects.control(this.o.ns, workerId), JSON.stringify(message));
  }
}
