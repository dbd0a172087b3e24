import { isTerminal, type RunState, RunStatuses, type TaskRunState } from "./run-state.js";

const refOf = (t: TaskRunState) => t.ref ?? t.taskName;

/**
 * Which tasks a replay re-runs (by ref): all of them, or `from` and its descendants (and the handlers, which judge the
 * new outcome). A refusal says why in words a user can act on.
 */
export function replayPlan(state: RunState, from?: string): { rerun: Set<string> } | { refused: string } {
  if (!isTerminal(state.status)) return { refused: `run ${state.runId} is ${state.status}: only finished runs replay` };
  if (state.tasks.length === 0) return { refused: `run ${state.runId} was never accepted (${state.error?.message})` };
  if (from === undefined) return { rerun: new Set(state.tasks.map(refOf)) };
  const start = state.tasks.find((t) => refOf(t) === from && t.role === undefined);
  if (!start) {
    const known = state.tasks.filter((t) => t.role === undefined).map(refOf);
    return { refused: `run ${state.runId} has no task ${JSON.stringify(from)} (tasks: ${known.join(", ")})` };
  }
  const byRef = new Map(state.tasks.map((t) => [refOf(t), t]));
  const unfinishedParent = (start.parents ?? []).find((p) => byRef.get(p)?.status !== RunStatuses.completed);
  if (unfinishedParent !== undefined) {
    return {
      refused: `task ${from} of run ${state.runId} needs ${unfinishedParent}, which did not complete: replay from ${unfinishedParent}`,
    };
  }
  const rerun = new Set([from]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const t of state.tasks) {
      if (!rerun.has(refOf(t)) && (t.role !== undefined || t.parents?.some((p) => rerun.has(p)))) {
        rerun.add(refOf(t));
        grew = true;
      }
    }
  }
  // A task re-run whose other parent is neither re-run nor completed (it failed, or was cancelled for a failure
  // upstream) would wait for it forever, and the run with it.
  for (const t of state.tasks) {
    if (!rerun.has(refOf(t)) || t.role !== undefined) continue;
    const stuck = (t.parents ?? []).find((p) => !rerun.has(p) && byRef.get(p)?.status !== RunStatuses.completed);
    if (stuck !== undefined) {
      return {
        refused: `task ${refOf(t)} of run ${state.runId} also needs ${stuck}, which did not complete and a replay from ${from} does not re-run: replay the whole run, or from a task both depend on`,
      };
    }
  }
  return { rerun };
}

/**
 * The tasks of a replayed run: each re-run task gets its next attempt with a fresh retry budget and no recorded
 * result, queued when its parents' outputs are there (kept or not re-run), else pending.
 */
export function replayTasks(tasks: TaskRunState[], rerun: Set<string>, at: string): TaskRunState[] {
  const reset = tasks.map((t): TaskRunState => {
    if (!rerun.has(refOf(t))) return t;
    const {
      workerId: _wi,
      workerName: _wn,
      startedAt: _s,
      finishedAt: _f,
      output: _o,
      error: _e,
      timeoutAt: _t,
      slotReleased: _sr,
      waiting: _w,
      rateLimited: _rl,
      checkpoints: _c,
      retry: _r,
      queuedAt: _q,
      ...kept
    } = t;
    const attempt = t.attempt + 1;
    // Earlier attempts do not count against the replay's retries.
    return { ...kept, status: RunStatuses.pending, attempt, requeues: attempt, replays: (t.replays ?? 0) + 1 };
  });
  const completed = new Set(reset.filter((t) => t.status === RunStatuses.completed).map(refOf));
  return reset.map((t) =>
    t.status === RunStatuses.pending && t.role === undefined && (t.parents ?? []).every((p) => completed.has(p))
      ? { ...t, status: RunStatuses.queued, queuedAt: at }
      : t,
  );
}
