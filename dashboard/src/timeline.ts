import type { RunState } from "@taskjet/schemas";
import type { HistoryItem } from "./api.ts";

const RESULTS = new Set(["TaskCompleted", "TaskFailed", "TaskRateLimited"]);

/** What a task-run was doing over a stretch of time. */
export type SegmentKind =
  | "scheduled"
  | "pending"
  | "queued"
  | "waiting"
  | "running"
  | "backoff"
  | "rate-limited"
  | "sleeping"
  | "event-wait";

/** One bar of the Gantt: a task-run in one state from `start` to `end` (ms since epoch). */
export interface Segment {
  kind: SegmentKind;
  start: number;
  end: number;
  /** Still going at `end` (the time the timeline was built). */
  open: boolean;
  attempt?: number;
  /** What the bar says on hover: the state and why. */
  label: string;
  /** How a running bar ended. */
  outcome?: "completed" | "failed" | "timed out" | "cancelled" | "rate limited" | "reassigned" | "suspended";
}

/** A moment of note on a task-run (a child spawned, a timeout refreshed, a report ignored). */
export interface Mark {
  at: number;
  label: string;
}

export interface TimelineRow {
  taskRunId: string;
  name: string;
  segments: Segment[];
  marks: Mark[];
}

export interface Timeline {
  rows: TimelineRow[];
  start: number;
  end: number;
}

const WAIT_LABELS: Record<string, string> = {
  CONCURRENCY: "concurrency-limited",
  RATE_LIMIT: "rate-limited",
  NO_WORKER: "no worker",
};

interface TaskInfo {
  taskRunId: string;
  ref: string;
  parents: string[];
  role?: string;
}

type Data = Record<string, unknown>;

/**
 * The Gantt of a run from its history: per task-run, the stretches it was scheduled, pending (parents not done),
 * queued, held back (TaskWaiting: concurrency, rate limit, no worker), running (per attempt, with the worker),
 * backing off before a retry, paused by an upstream rate limit, or suspended (durable sleeps and event waits).
 * Workflow children leave `pending` when their parents completed, as the reducer decides (no event says so).
 * `state` closes what the history leaves open on finished tasks (descendants cancelled without an event of their own).
 */
export function buildTimeline(history: HistoryItem[], state: RunState | undefined, now: number): Timeline {
  const rows = new Map<string, TimelineRow>();
  const tasks = new Map<string, TaskInfo>();
  const open = new Map<string, Segment>();
  const completedRefs = new Set<string>();
  const finalRefs = new Set<string>();
  const failedRefs = new Set<string>();
  // Attempts followed by a retry: their failure was not final.
  const retried = new Set<string>();
  for (const h of history) {
    const e = h.event;
    if (e?.type === "TaskRetryScheduled" && e.taskRunId) {
      retried.add(`${e.taskRunId}:${Number((e.data as Data).attempt) - 1}`);
    }
  }
  let start = Number.POSITIVE_INFINITY;
  let last = 0;

  const close = (id: string, at: number, outcome?: Segment["outcome"]) => {
    const seg = open.get(id);
    if (!seg) return;
    seg.end = Math.max(seg.start, at);
    seg.open = false;
    if (outcome) seg.outcome = outcome;
    open.delete(id);
  };
  const begin = (id: string, at: number, kind: SegmentKind, label: string, attempt?: number) => {
    close(id, at);
    const row = rows.get(id);
    if (!row) return;
    const seg: Segment = { kind, start: at, end: at, open: true, label, ...(attempt === undefined ? {} : { attempt }) };
    row.segments.push(seg);
    open.set(id, seg);
  };
  const byRef = (ref: string) => [...tasks.values()].find((t) => t.ref === ref);
  /** A task reached a final state: queue ready children, drop doomed ones, release the handlers. */
  const settle = (id: string, at: number, ok: boolean) => {
    const task = tasks.get(id);
    if (!task) return;
    finalRefs.add(task.ref);
    if (ok) completedRefs.add(task.ref);
    else failedRefs.add(task.ref);
    for (const t of tasks.values()) {
      if (t.role || open.get(t.taskRunId)?.kind !== "pending") continue;
      if (ok && t.parents.every((p) => completedRefs.has(p))) begin(t.taskRunId, at, "queued", "queued", 0);
      else if (!ok && dependsOn(t, task.ref, byRef)) {
        close(t.taskRunId, at, "cancelled");
        finalRefs.add(t.ref);
      }
    }
    const main = [...tasks.values()].filter((t) => !t.role);
    if (main.every((t) => finalRefs.has(t.ref))) {
      const failed = main.some((t) => !completedRefs.has(t.ref));
      for (const t of tasks.values()) {
        if (!t.role || open.get(t.taskRunId)?.kind !== "pending") continue;
        if ((t.role === "onFailure") === failed) begin(t.taskRunId, at, "queued", "queued", 0);
        else close(t.taskRunId, at, "cancelled");
      }
    }
  };
  const queueRoots = (at: number, only?: Set<string>) => {
    for (const t of tasks.values()) {
      if (only && !only.has(t.ref)) continue;
      const waits = t.role !== undefined || t.parents.some((p) => !only || only.has(p));
      begin(t.taskRunId, at, waits ? "pending" : "queued", waits ? "pending: waiting for its parents" : "queued");
    }
  };

  for (const h of history) {
    const e = h.event;
    if (!e) continue;
    const at = Date.parse(e.at);
    if (Number.isNaN(at)) continue;
    start = Math.min(start, at);
    last = Math.max(last, at);
    const d = e.data as Data;
    const id = e.taskRunId;
    const attempt = typeof d.attempt === "number" ? d.attempt : undefined;
    // A result that carries its attempt's start (a short attempt): it ran from then, as after a `TaskStarted`.
    const started = d.started as { at?: string; workerName?: string } | undefined;
    if (id && started?.at && RESULTS.has(e.type)) {
      begin(
        id,
        Date.parse(started.at),
        "running",
        `attempt ${attempt} on ${started.workerName ?? d.workerId}`,
        attempt,
      );
    }
    switch (e.type) {
      case "RunCreated": {
        for (const t of (d.tasks as {
          taskRunId: string;
          taskName: string;
          ref?: string;
          parents?: string[];
          role?: string;
        }[]) ?? []) {
          const ref = t.ref ?? t.taskName;
          tasks.set(t.taskRunId, {
            taskRunId: t.taskRunId,
            ref,
            parents: t.parents ?? [],
            ...(t.role ? { role: t.role } : {}),
          });
          rows.set(t.taskRunId, {
            taskRunId: t.taskRunId,
            name: t.role ? `${ref} (${t.role})` : ref,
            segments: [],
            marks: [],
          });
        }
        if (d.scheduledAt) {
          for (const t of tasks.values()) begin(t.taskRunId, at, "scheduled", `scheduled for ${d.scheduledAt}`);
        } else queueRoots(at);
        break;
      }
      case "RunDue":
        queueRoots(at);
        break;
      case "RunReplayed": {
        completedRefs.clear();
        finalRefs.clear();
        failedRefs.clear();
        const from = typeof d.from === "string" ? d.from : undefined;
        let only: Set<string> | undefined;
        if (from) {
          only = new Set([from]);
          for (const t of tasks.values()) if (!t.role && dependsOn(t, from, byRef)) only.add(t.ref);
          for (const t of tasks.values()) if (t.role) only.add(t.ref);
          for (const t of tasks.values()) {
            if (only.has(t.ref)) continue;
            completedRefs.add(t.ref);
            finalRefs.add(t.ref);
          }
        }
        queueRoots(at, only);
        break;
      }
      case "TaskWaiting":
        if (id) {
          const reason = WAIT_LABELS[String(d.reason)] ?? String(d.reason).toLowerCase();
          begin(id, at, "waiting", `${reason}${d.detail ? `: ${d.detail}` : ""}`, attempt);
        }
        break;
      case "TaskStarted":
        if (id) begin(id, at, "running", `attempt ${attempt} on ${d.workerName ?? d.workerId}`, attempt);
        break;
      case "TaskCompleted":
        if (id) {
          close(id, at, "completed");
          settle(id, at, true);
        }
        break;
      case "TaskFailed":
      case "TaskTimedOut":
        if (id) {
          const seg = open.get(id);
          if (seg && e.type === "TaskFailed") {
            const err = d.error as { name?: string; message?: string } | undefined;
            seg.label += ` – ${err?.name ?? "Error"}: ${err?.message ?? ""}`;
          }
          close(id, at, e.type === "TaskFailed" ? "failed" : "timed out");
          if (!retried.has(`${id}:${attempt}`)) settle(id, at, false);
        }
        break;
      case "TaskRetryScheduled":
        if (id) {
          begin(id, at, "backoff", `retry backoff: attempt ${attempt} at ${d.at}`, attempt);
        }
        break;
      case "TaskQueued":
        if (id) begin(id, at, "queued", `queued (attempt ${attempt})`, attempt);
        break;
      case "TaskRateLimited":
        if (id) {
          close(id, at, "rate limited");
          const keys = Array.isArray(d.keys) ? ` (${(d.keys as string[]).join(", ")})` : "";
          begin(id, at, "rate-limited", `rate-limited upstream${keys} until ${d.until}`, (attempt ?? 0) + 1);
        }
        break;
      case "TaskReassigned":
        if (id) {
          close(id, at, "reassigned");
          begin(id, at, "queued", `reassigned: ${d.reason}`, attempt);
        }
        break;
      case "DurableSleeping":
        if (id) {
          close(id, at, "suspended");
          begin(id, at, "sleeping", `sleeping until ${d.until}`);
        }
        break;
      case "DurableWaitingForEvent":
        if (id) {
          close(id, at, "suspended");
          begin(id, at, "event-wait", `waiting for event ${d.key}${d.filter ? ` where ${d.filter}` : ""}`);
        }
        break;
      case "DurableWoke":
      case "DurableEventReceived":
        if (id) begin(id, at, "queued", `queued (attempt ${attempt}, resumed)`, attempt);
        break;
      case "TaskCancelled":
        if (id) {
          close(id, at, "cancelled");
          settle(id, at, false);
        }
        break;
      case "RunCancelled":
        for (const tid of [...open.keys()]) close(tid, at, "cancelled");
        break;
      case "ChildrenSpawned":
        if (id)
          rows.get(id)?.marks.push({ at, label: `spawned ${(d.children as unknown[])?.length ?? 0} child run(s)` });
        break;
      case "TaskTimeoutRefreshed":
        if (id) rows.get(id)?.marks.push({ at, label: `timeout refreshed to ${d.timeoutAt}` });
        break;
      case "TaskSlotReleased":
        if (id) rows.get(id)?.marks.push({ at, label: "slot released" });
        break;
      case "ReportIgnored":
        if (id) rows.get(id)?.marks.push({ at, label: `report ignored (${d.report}): ${d.reason}` });
        break;
      default:
        break;
    }
  }

  // What the history leaves open: still going, unless the run's state says the task is done.
  const finished = state?.finishedAt ? Date.parse(state.finishedAt) : undefined;
  for (const [tid, seg] of open) {
    const task = state?.tasks.find((t) => t.taskRunId === tid);
    const done = task && ["COMPLETED", "FAILED", "CANCELLED"].includes(task.status);
    if (done) {
      const at = task.finishedAt ? Date.parse(task.finishedAt) : (finished ?? last);
      seg.end = Math.max(seg.start, at);
      seg.open = false;
      if (task.status === "CANCELLED") seg.outcome = "cancelled";
    } else {
      seg.end = Math.max(seg.start, now);
    }
  }
  const end = Math.max(
    last,
    ...[...rows.values()].flatMap((r) => r.segments.map((s) => s.end)),
    Number.isFinite(start) ? start + 1 : 1,
  );
  return { rows: [...rows.values()], start: Number.isFinite(start) ? start : now, end };
}

/** Whether `task` is downstream of the task with ref `ref`. */
function dependsOn(task: TaskInfo, ref: string, byRef: (ref: string) => TaskInfo | undefined): boolean {
  const seen = new Set<string>();
  const stack = [...task.parents];
  while (stack.length) {
    const p = stack.pop() as string;
    if (p === ref) return true;
    if (seen.has(p)) continue;
    seen.add(p);
    stack.push(...(byRef(p)?.parents ?? []));
  }
  return false;
}
