import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  type Assignment,
  type ControlMessage,
  type RecordedError,
  type RunState,
  RunStatuses,
  Streams,
  subjects,
} from "@taskjet/schemas";
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
      const assignment: Assignment = {
        v: 1,
        runId: task.runId,
        taskRunId: task.taskRunId,
        taskName: task.taskName,
        attempt: task.attempt,
        input: state.input,
        additionalMetadata: state.additionalMetadata,
        expectedSeq: state.lastSeq,
        assignedAt: now,
        ...(state.trigger.kind === "run" ? {} : { trigger: state.trigger }),
        ...(state.tasks.length > 1 ? workflowContext(state, task.taskRunId) : {}),
        ...checkpointsOf(state, task.taskRunId),
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

/** What a workflow task needs from its run: its ref, its parents' outputs, and (for handlers) the errors. */
function workflowContext(state: RunState, taskRunId: string): Partial<Assignment> {
  const task = state.tasks.find((t) => t.taskRunId === taskRunId);
  if (!task) return {};
  const byRef = new Map(state.tasks.map((t) => [t.ref ?? t.taskName, t]));
  const parentOutputs = Object.fromEntries(
    (task.parents ?? []).map((p) => [p, byRef.get(p)?.output ?? {}] as [string, Record<string, unknown>]),
  );
  const out: Partial<Assignment> = { ...(task.ref ? { ref: task.ref } : {}), parentOutputs };
  if (task.role) {
    const failed = state.tasks.filter((t) => t.role === undefined && t.status === RunStatuses.failed && t.error);
    out.taskErrors = Object.fromEntries(failed.map((t) => [t.ref ?? t.taskName, t.error as RecordedError]));
    // A handler sees every task's output, as its "parents".
    out.parentOutputs = Object.fromEntries(
      state.tasks.filter((t) => t.output).map((t) => [t.ref ?? t.taskName, t.output as Record<string, unknown>]),
    );
  }
  return out;
}

/** Durable tasks: the checkpoints to replay. */
function checkpointsOf(state: RunState, taskRunId: string): Partial<Assignment> {
  const checkpoints = state.tasks.find((t) => t.taskRunId === taskRunId)?.checkpoints;
  return checkpoints?.length ? { checkpoints } : {};
}
