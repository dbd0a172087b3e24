import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import {
  engineInspect,
  type Queue,
  type Queues,
  QueuesSchema,
  type RunState,
  type RunStatus,
  RunStatuses,
} from "@taskjet/schemas";
import type { Logger } from "pino";
import type { CoreSnapshot } from "./core.js";
import type { RateKeySnapshot } from "./rate-limiter.js";

/** One task-run as the queue summary needs it: from a live run state or from a projected run summary alike. */
export interface QueueFact {
  taskName: string;
  status: RunStatus | string;
  /** A failed attempt waiting out its retry backoff (not queued yet). */
  retrying: boolean;
  queuedAt?: string | undefined;
  waiting?: { reason: string; detail: string; since: string } | undefined;
}

/** The task-runs of a run state, as queue facts. */
export function* factsOfState(state: RunState): Iterable<QueueFact> {
  for (const t of state.tasks) {
    yield {
      taskName: t.taskName,
      status: t.status,
      retrying: t.retry !== undefined,
      queuedAt: t.queuedAt ?? state.createdAt,
      waiting: t.waiting,
    };
  }
}

/**
 * Per task: queued depth, oldest queued, running, retrying, why the oldest waits, and how many live workers take it
 * (`workerTasks`: each worker's task names). Tasks sorted by name. `cold`: per task, queued attempts not among the
 * facts (runs the leader holds only in the store), and when the oldest of them was queued.
 */
export function summarizeQueues(
  facts: Iterable<QueueFact>,
  workerTasks: readonly (readonly string[])[],
  now: number,
  cold: ReadonlyMap<string, { queued: number; oldestQueuedAt?: string | undefined }> = new Map(),
) {
  const byTask = new Map<string, Queue>();
  const queueOf = (taskName: string): Queue => {
    let q = byTask.get(taskName);
    if (!q) {
      q = {
        taskName,
        queued: 0,
        oldestQueuedAt: null,
        oldestAgeMs: null,
        running: 0,
        retrying: 0,
        waiting: null,
        workers: workerTasks.filter((tasks) => tasks.includes(taskName)).length,
      };
      byTask.set(taskName, q);
    }
    return q;
  };
  for (const f of facts) {
    if (f.status === RunStatuses.running) queueOf(f.taskName).running++;
    else if (f.status === RunStatuses.queued && f.retrying) queueOf(f.taskName).retrying++;
    else if (f.status === RunStatuses.queued) {
      const q = queueOf(f.taskName);
      q.queued++;
      const since = f.queuedAt;
      if (since && (q.oldestQueuedAt === null || since < q.oldestQueuedAt)) {
        q.oldestQueuedAt = since;
        q.oldestAgeMs = Math.max(0, now - Date.parse(since));
        q.waiting = f.waiting ?? null;
      }
    }
  }
  for (const [taskName, c] of cold) {
    const q = queueOf(taskName);
    q.queued += c.queued;
    const since = c.oldestQueuedAt;
    if (since && (q.oldestQueuedAt === null || since < q.oldestQueuedAt)) {
      q.oldestQueuedAt = since;
      q.oldestAgeMs = Math.max(0, now - Date.parse(since));
      q.waiting = null; // a run whose wait was recorded stays in memory
    }
  }
  return [...byTask.values()].sort((a, b) => a.taskName.localeCompare(b.taskName));
}

/** The concurrency groups and rate-limit keys of a scheduler snapshot, as `GET queues` shows them. */
export function limiterState(core: CoreSnapshot, rates: RateKeySnapshot[]): Pick<Queues, "concurrency" | "rateLimits"> {
  return {
    concurrency: core.groups
      .map((g) => ({
        group: g.id,
        maxRuns: g.maxRuns,
        running: g.running,
        members: g.members,
        waitingLanes: g.waitingLanes,
      }))
      .sort((a, b) => a.group.localeCompare(b.group)),
    rateLimits: rates
      .map((r) => ({
        key: r.key,
        limit: r.limit,
        windowMs: Math.round(r.windowMs),
        used: r.used,
        reserved: r.reserved,
        pausedUntil: r.pausedUntil === undefined ? null : new Date(r.pausedUntil).toISOString(),
      }))
      .sort((a, b) => a.key.localeCompare(b.key)),
  };
}

/** How long a REST request waits for the leader before answering from the projection. */
export const INSPECT_TIMEOUT_MS = 2000;

/**
 * Answers `engineInspect(ns, "queues")` from the leading runtime's memory. Only the leader subscribes (started with
 * its runtime, stopped with it), so whichever replica serves a REST request reaches the scheduler that decides.
 */
export function serveQueues(
  nc: NatsConnection,
  ns: string,
  answer: () => Queues | Promise<Queues>,
  log: Logger,
): () => void {
  const sub: Subscription = nc.subscribe(engineInspect(ns, "queues"), {
    callback: (err, msg) => {
      if (err) return log.warn({ err }, "queue inspection subscription failed");
      Promise.resolve()
        .then(answer)
        .then((queues) => msg.respond(JSON.stringify(queues)))
        .catch((e: unknown) => log.warn({ err: e }, "could not answer a queue inspection"));
    },
  });
  return () => sub.unsubscribe();
}

/**
 * Asks the namespace's leader for its queues; undefined when none answers in time (no engine leads it now, or the
 * answer does not parse), so the caller falls back to the projection.
 */
export async function askLeaderQueues(nc: NatsConnection, ns: string): Promise<Queues | undefined> {
  try {
    const reply = await nc.request(engineInspect(ns, "queues"), "", { timeout: INSPECT_TIMEOUT_MS });
    const parsed = QueuesSchema.safeParse(reply.json());
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}
