import type { RecordedError } from "./errors.js";
import { type RunState, RunStatuses, type TaskRunState } from "./run-state.js";
import type { Assignment } from "./wire.js";

/**
 * What a worker needs to run `task`'s current attempt, from its run's state: the engine sends it, `taskjet debug`
 * rebuilds it from history.
 */
export function assignmentOf(
  state: RunState,
  task: TaskRunState,
  at: { expectedSeq: number; assignedAt: string },
): Assignment {
  return {
    v: 1,
    runId: state.runId,
    taskRunId: task.taskRunId,
    taskName: task.taskName,
    attempt: task.attempt,
    input: state.input,
    additionalMetadata: state.additionalMetadata,
    expectedSeq: at.expectedSeq,
    assignedAt: at.assignedAt,
    ...(state.priority > 1 ? { priority: state.priority } : {}),
    ...(task.requeues ? { retry: task.attempt - task.requeues } : {}),
    ...(state.trigger.kind === "run" ? {} : { trigger: state.trigger }),
    ...(state.tasks.length > 1 ? workflowContext(state, task) : {}),
    ...(task.checkpoints?.length ? { checkpoints: task.checkpoints } : {}),
    ...(task.replays ? { replays: task.replays } : {}),
    ...(state.traceparent ? { traceparent: state.traceparent } : {}),
    ...(state.tracestate ? { tracestate: state.tracestate } : {}),
  };
}

/** An assignment without what can make it larger than a message (`Assignment.slim`): its worker reads those. */
export function slimAssignment(a: Assignment): Assignment {
  const { parentOutputs: _p, taskErrors: _e, checkpoints: _c, ...rest } = a;
  return { ...rest, input: {}, slim: true };
}

/** What a workflow task needs from its run: its ref, its parents' outputs, and (for handlers) the errors. */
function workflowContext(state: RunState, task: TaskRunState): Partial<Assignment> {
  const byRef = new Map(state.tasks.map((t) => [t.ref ?? t.taskName, t]));
  const parentOutputs = Object.fromEntries(
    (task.parents ?? []).map((p) => [p, byRef.get(p)?.output ?? {}] as [string, Record<string, unknown>]),
  );
  const out: Partial<Assignment> = { ...(task.ref ? { ref: task.ref } : {}), parentOutputs };
  if (task.role) {
    // Failed, or cancelled for a reason of its own (a schedule timeout); not those left unrun because a parent failed.
    const failed = state.tasks.filter(
      (t) =>
        t.role === undefined &&
        t.error &&
        (t.status === RunStatuses.failed || (t.status === RunStatuses.cancelled && t.error.name !== "ParentFailed")),
    );
    out.taskErrors = Object.fromEntries(failed.map((t) => [t.ref ?? t.taskName, t.error as RecordedError]));
    // A handler sees every task's output, as its "parents".
    out.parentOutputs = Object.fromEntries(
      state.tasks.filter((t) => t.output).map((t) => [t.ref ?? t.taskName, t.output as Record<string, unknown>]),
    );
  }
  return out;
}
