import { EventTypes, type RunState, type TaskRunState } from "@taskjet/schemas";
import { Counter, collectDefaultMetrics, Gauge, Registry } from "prom-client";
import type { RunChange } from "../projector/projector.js";
import type { CoreSnapshot } from "../scheduler/core.js";
import type { ColdQueue } from "../scheduler/scheduler.js";
import { FoldCounter, FoldHistogram } from "./fold-metrics.js";

/**
 * Prometheus metrics (`GET /metrics`), one registry per namespace so a namespace's token sees only its own series.
 *
 * Counters and histograms are fed by the events the leading runtime's projector folds (`observe`, from its
 * `onChange`), never by reading KV: each event is counted once, by the replica leading the namespace when it was
 * folded (a replica that takes a lease counts from the events it folds live; the catch-up before is not counted).
 * Sum them over replicas. Gauges (queue depth, worker slots) are read from the leader's scheduler memory at scrape
 * time, and are absent on standbys.
 */

/** What the leading runtime shows at scrape time. */
export interface LiveView {
  core: CoreSnapshot;
  /** The run states the runtime holds in memory (active runs, except cold ones). */
  states: Iterable<RunState>;
  /** How many run states it holds in memory. */
  runsInMemory: number;
  /** What its queues hold of cold runs (read from the store for the oldest). */
  coldQueues: () => Promise<ReadonlyMap<string, ColdQueue>>;
  workerName: (workerId: string) => string | undefined;
  now: number;
}

/** Seconds from queued to assigned: most are milliseconds; minutes mean starved queues. */
const QUEUE_WAIT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
/** Seconds an attempt ran: from no-op tasks to hour-long ones. */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];

let processRegistry: Registry | undefined;

/** Process metrics (CPU, memory, event loop, GC): one collector per process, however many engines it runs. */
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/** One namespace's series. */
export class NamespaceMetrics {
  readonly registry = new Registry();
  private live: (() => LiveView) | undefined;
  /** Events folded, by type. */
  private readonly events: FoldCounter;
  /** Runs finished, by `workflow\0status`. */
  private readonly finished: FoldCounter;
  /** By task. */
  private readonly queueWait: FoldHistogram;
  /** By `task\0outcome`. */
  private readonly duration: FoldHistogram;
  private readonly retries: Counter<"namespace" | "task">;
  private readonly timeouts: Counter<"namespace" | "task">;
  private readonly reassignments: Counter<"namespace" | "task">;

  constructor(
    readonly ns: string,
    engineId: string,
    leading: () => boolean,
  ) {
    const registers = [this.registry];
    const labels = { namespace: ns };
    this.events = new FoldCounter(
      "taskjet_history_events_total",
      "History events folded by the namespace's leader, by type (rate() = events appended per second)",
      this.registry,
      (type) => ({ namespace: ns, type }),
    );
    this.queueWait = new FoldHistogram(
      "taskjet_queue_wait_seconds",
      "Time from an attempt queued to its assignment to a worker",
      QUEUE_WAIT_BUCKETS,
      this.registry,
      (task) => ({ namespace: ns, task }),
    );
    this.duration = new FoldHistogram(
      "taskjet_task_duration_seconds",
      "Time an attempt ran, from its start to its outcome (completed, failed, timed_out)",
      DURATION_BUCKETS,
      this.registry,
      pairLabels(ns, "task", "outcome"),
    );
    const perTask = (name: string, help: string) =>
      new Counter({ name, help, labelNames: ["namespace", "task"], registers });
    this.retries = perTask("taskjet_task_retries_total", "Failed attempts scheduled for a retry (TaskRetryScheduled)");
    this.timeouts = perTask("taskjet_task_timeouts_total", "Attempts timed out by the engine (TaskTimedOut)");
    this.reassignments = perTask(
      "taskjet_task_reassignments_total",
      "Running attempts moved off a lost worker (TaskReassigned)",
    );
    this.finished = new FoldCounter(
      "taskjet_runs_finished_total",
      "Runs that reached a final status",
      this.registry,
      pairLabels(ns, "workflow", "status"),
    );
    const view = () => (leading() ? this.live?.() : undefined);
    new Gauge({
      name: "taskjet_lease_held",
      help: "1 when this engine replica leads (schedules) the namespace, else 0",
      labelNames: ["namespace", "engine_id"],
      registers,
      collect() {
        this.set({ namespace: ns, engine_id: engineId }, leading() ? 1 : 0);
      },
    });
    new Gauge({
      name: "taskjet_queue_depth",
      help: "Attempts queued for a worker slot, per task (leader only)",
      labelNames: ["namespace", "task"],
      registers,
      collect() {
        this.reset();
        for (const t of view()?.core.tasks ?? []) this.set({ ...labels, task: t.taskName }, t.queued);
      },
    });
    new Gauge({
      name: "taskjet_queue_oldest_age_seconds",
      help: "Age of the oldest queued attempt, per task (leader only)",
      labelNames: ["namespace", "task"],
      registers,
      async collect() {
        const v = view();
        if (!v) {
          this.reset();
          return;
        }
        const oldest = new Map<string, number>();
        const earliest = (taskName: string, queuedAt: string) => {
          const at = Date.parse(queuedAt);
          if (at < (oldest.get(taskName) ?? Number.POSITIVE_INFINITY)) oldest.set(taskName, at);
        };
        for (const state of v.states) {
          for (const t of state.tasks)
            if (t.status === "QUEUED" && !t.retry && t.queuedAt) earliest(t.taskName, t.queuedAt);
        }
        // A task whose oldest attempts are cold: those runs are not among the states in memory.
        for (const [taskName, cold] of await v.coldQueues())
          if (cold.oldestQueuedAt) earliest(taskName, cold.oldestQueuedAt);
        this.reset();
        for (const [task, at] of oldest) this.set({ ...labels, task }, Math.max(0, (v.now - at) / 1000));
      },
    });
    new Gauge({
      name: "taskjet_runs_in_memory",
      help: "Unfinished runs whose state the leader holds in memory; queued runs beyond its hot limit are read from TJ_RUNS when needed (leader only)",
      labelNames: ["namespace"],
      registers,
      collect() {
        this.reset();
        const v = view();
        if (v) this.set(labels, v.runsInMemory);
      },
    });
    const perWorker = (name: string, help: string, pick: (w: CoreSnapshot["workers"][number]) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ["namespace", "worker_id", "worker"],
        registers,
        collect() {
          // Reset first: a worker that left must not keep its last value.
          this.reset();
          const v = view();
          for (const w of v?.core.workers ?? []) {
            this.set({ ...labels, worker_id: w.workerId, worker: v?.workerName(w.workerId) ?? "" }, pick(w));
          }
        },
      });
    perWorker(
      "taskjet_worker_running_tasks",
      "Attempts placed on or running on a worker (leader only)",
      (w) => w.running,
    );
    perWorker("taskjet_worker_used_slots", "Slots in use on a worker (leader only)", (w) => w.usedSlots);
    perWorker(
      "taskjet_worker_queued_attempts",
      "Attempts of short tasks placed on a worker beyond its slots, waiting there for one (leader only)",
      (w) => w.queuedOnWorker,
    );
    perWorker("taskjet_worker_slots", "Slots a worker offers (leader only)", (w) => w.slots);
    perWorker(
      "taskjet_worker_used_durable_slots",
      "Durable slots in use on a worker (leader only)",
      (w) => w.usedDurableSlots,
    );
  }

  /** The leading runtime's memory, read at scrape time; undefined when it stops leading. */
  setLive(live: (() => LiveView) | undefined): void {
    this.live = live;
  }

  /** Counts one folded event (the projector's `onChange`). */
  observe({ event, state }: RunChange): void {
    const ns = this.ns;
    this.events.inc(event.type);
    const task = "taskRunId" in event && event.taskRunId ? taskOf(state, event.taskRunId) : undefined;
    // A start, recorded alone or carried by the result it preceded.
    const start =
      event.type === EventTypes.TaskStarted ? event.data : "started" in event.data ? event.data.started : undefined;
    // queuedAt stays on the started task; assignedAt is the engine's time of the placement.
    if (start && task?.queuedAt) {
      const waited = (Date.parse(start.assignedAt) - Date.parse(task.queuedAt)) / 1000;
      this.queueWait.observe(task.taskName, Math.max(0, waited));
    }
    switch (event.type) {
      case EventTypes.TaskCompleted:
        this.attemptEnded(task, event.at, "completed");
        break;
      case EventTypes.TaskFailed:
        this.attemptEnded(task, event.at, "failed");
        break;
      case EventTypes.TaskTimedOut:
        this.attemptEnded(task, event.at, "timed_out");
        if (task) this.timeouts.inc({ namespace: ns, task: task.taskName });
        break;
      case EventTypes.TaskRetryScheduled:
        if (task) this.retries.inc({ namespace: ns, task: task.taskName });
        break;
      case EventTypes.TaskReassigned:
        if (task) this.reassignments.inc({ namespace: ns, task: task.taskName });
        break;
      default:
        break;
    }
    // The event that made the run final (its finishedAt is this event's time): counted once per finish, replays too.
    if (
      state.finishedAt === event.at &&
      (state.status === "COMPLETED" || state.status === "FAILED" || state.status === "CANCELLED")
    ) {
      this.finished.inc(`${state.workflowName}\0${state.status}`);
    }
  }

  private attemptEnded(task: TaskRunState | undefined, at: string, outcome: string): void {
    if (!task?.startedAt) return; // an engine failure of an attempt that never started (flow key errors)
    const seconds = (Date.parse(at) - Date.parse(task.startedAt)) / 1000;
    this.duration.observe(`${task.taskName}\0${outcome}`, Math.max(0, seconds));
  }
}

/** Labels of a series keyed `first\0second` (`FoldMetric`): the namespace and the key's two parts. */
function pairLabels(ns: string, first: string, second: string): (key: string) => Record<string, string> {
  return (key) => {
    const [a = "", b = ""] = key.split("\0");
    return { namespace: ns, [first]: a, [second]: b };
  };
}

function taskOf(state: RunState, taskRunId: string): TaskRunState | undefined {
  return state.tasks.length === 1 ? state.tasks[0] : state.tasks.find((t) => t.taskRunId === taskRunId);
}

/** The engine's metrics: one `NamespaceMetrics` per namespace it serves, leader or not. */
export class EngineMetrics {
  private readonly byNs = new Map<string, NamespaceMetrics>();

  constructor(engineId: string, namespaces: readonly string[], leading: () => readonly string[]) {
    // Now, not at the first scrape: the process's CPU and GC counters count from their collector's creation.
    processMetrics();
    for (const ns of namespaces) this.byNs.set(ns, new NamespaceMetrics(ns, engineId, () => leading().includes(ns)));
  }

  /** The namespace's metrics; undefined for a namespace this engine does not serve. */
  of(ns: string): NamespaceMetrics | undefined {
    return this.byNs.get(ns);
  }

  /** The Prometheus text of a namespace's series and the process's. */
  async render(ns: string): Promise<{ contentType: string; body: string } | undefined> {
    const m = this.byNs.get(ns);
    if (!m) return undefined;
    const registry = Registry.merge([m.registry, processMetrics()]);
    return { contentType: registry.contentType, body: await registry.metrics() };
  }
}
