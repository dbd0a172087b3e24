/**
 * The scheduler's memory and decisions, pure: no I/O, no clock. The shell feeds it facts (tasks queued, workers
 * joining and leaving, attempts started and finished) and asks it which queued tasks go to which worker now.
 */

/** A task-run attempt waiting for a slot. */
export interface QueuedTask {
  runId: string;
  taskRunId: string;
  taskName: string;
  attempt: number;
  /** Global FIFO position: the stream sequence at which the attempt was queued. */
  order: number;
  /** 1 (low) to 3 (high): higher is placed first, FIFO within a priority. @default 1 */
  priority?: number;
}

/** A worker's capacity as the scheduler sees it. */
export interface WorkerSlots {
  workerId: string;
  tasks: readonly string[];
  slots: number;
}

/** One decision: run this attempt on that worker. */
export interface Placement {
  task: QueuedTask;
  workerId: string;
}

interface WorkerState {
  workerId: string;
  tasks: Set<string>;
  slots: number;
  /** Attempts placed on this worker and not finished, by attempt key. */
  held: Map<string, QueuedTask>;
}

/** Queue ordered by `order`: O(1) for the usual append at the tail and shift at the head. */
class TaskQueue {
  private items: (QueuedTask | undefined)[] = [];
  private head = 0;
  size = 0;

  insert(task: QueuedTask): void {
    this.size++;
    let i = this.items.length;
    // Only a re-queued or recovered attempt lands before the tail: walk back to its place.
    while (i > this.head) {
      const prev = this.items[i - 1];
      if (prev !== undefined && prev.order <= task.order) break;
      i--;
    }
    if (i === this.items.length) this.items.push(task);
    else if (this.items[i] === undefined)
      this.items[i] = task; // a hole left by a removal
    else if (i === this.head && this.head > 0) this.items[--this.head] = task;
    else this.items.splice(i, 0, task);
  }

  peek(): QueuedTask | undefined {
    this.skipHoles();
    return this.items[this.head];
  }

  shift(): QueuedTask | undefined {
    this.skipHoles();
    const task = this.items[this.head];
    if (task) {
      this.items[this.head++] = undefined;
      this.size--;
      this.compact();
    }
    return task;
  }

  remove(key: string): boolean {
    for (let i = this.head; i < this.items.length; i++) {
      const task = this.items[i];
      if (task && attemptKey(task) === key) {
        this.items[i] = undefined;
        this.size--;
        return true;
      }
    }
    return false;
  }

  private skipHoles(): void {
    while (this.head < this.items.length && this.items[this.head] === undefined) this.head++;
  }

  private compact(): void {
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }
}

/** Whether `a` is placed before `b`: higher priority, then older. */
function before(a: QueuedTask, b: QueuedTask): boolean {
  const pa = a.priority ?? 1;
  const pb = b.priority ?? 1;
  return pa !== pb ? pa > pb : a.order < b.order;
}

/** Identity of one attempt of one task-run. */
export function attemptKey(task: { taskRunId: string; attempt: number }): string {
  return `${task.taskRunId}:${task.attempt}`;
}

export class SchedulerCore {
  /** Per task, one FIFO queue per priority (index 0 = priority 1). */
  private readonly queues = new Map<string, TaskQueue[]>();
  private readonly workers = new Map<string, WorkerState>();
  /** Where each placed attempt is held, by attempt key. */
  private readonly placedOn = new Map<string, string>();
  /** Every attempt the core knows (queued or placed), so duplicates are ignored. */
  private readonly known = new Set<string>();

  /** Queues an attempt; an attempt already queued or placed is ignored. */
  enqueue(task: QueuedTask): void {
    const key = attemptKey(task);
    if (this.known.has(key)) return;
    this.known.add(key);
    this.queueOf(task).insert(task);
  }

  /** Adds a worker or updates its tasks and slots. */
  upsertWorker(worker: WorkerSlots): void {
    const existing = this.workers.get(worker.workerId);
    if (existing) {
      existing.tasks = new Set(worker.tasks);
      existing.slots = worker.slots;
      return;
    }
    this.workers.set(worker.workerId, {
      workerId: worker.workerId,
      tasks: new Set(worker.tasks),
      slots: worker.slots,
      held: new Map(),
    });
  }

  /**
   * Removes a worker. Returns the attempts it held; the caller re-queues those it knows were never started.
   */
  removeWorker(workerId: string): QueuedTask[] {
    const worker = this.workers.get(workerId);
    if (!worker) return [];
    this.workers.delete(workerId);
    const held = [...worker.held.values()];
    for (const task of held) {
      const key = attemptKey(task);
      this.placedOn.delete(key);
      this.known.delete(key);
    }
    return held;
  }

  /** Records that an attempt is held by a worker (placed by a previous engine, or started elsewhere than placed). */
  hold(task: QueuedTask, workerId: string): void {
    const key = attemptKey(task);
    const current = this.placedOn.get(key);
    if (current === workerId) return;
    if (current !== undefined) this.workers.get(current)?.held.delete(key);
    else this.queueOf(task).remove(key);
    const worker = this.workers.get(workerId);
    if (!worker) {
      // A worker we do not know: track nothing, so the attempt can be queued again if it is reassigned.
      this.placedOn.delete(key);
      this.known.delete(key);
      return;
    }
    this.known.add(key);
    worker.held.set(key, task);
    this.placedOn.set(key, workerId);
  }

  /** An attempt reached a final state (or will never run): frees its slot or drops it from its queue. */
  finish(task: { taskRunId: string; attempt: number; taskName: string; priority?: number }): void {
    const key = attemptKey(task);
    if (!this.known.delete(key)) return;
    const workerId = this.placedOn.get(key);
    if (workerId !== undefined) {
      this.placedOn.delete(key);
      this.workers.get(workerId)?.held.delete(key);
    } else {
      for (const queue of this.queues.get(task.taskName) ?? []) if (queue.remove(key)) break;
    }
  }

  /** Undo a placement whose assignment could not be delivered: the attempt goes back to its queue. */
  unplace(task: QueuedTask): void {
    const key = attemptKey(task);
    const workerId = this.placedOn.get(key);
    if (workerId === undefined) return;
    this.placedOn.delete(key);
    this.workers.get(workerId)?.held.delete(key);
    this.known.delete(key);
    this.enqueue(task);
  }

  /**
   * Places as many queued attempts as free slots allow: highest priority first, oldest first within a priority,
   * across tasks. Each attempt goes to the eligible worker with the most free slots, so load spreads across workers.
   */
  place(): Placement[] {
    const placements: Placement[] = [];
    for (;;) {
      let best: { queue: TaskQueue; task: QueuedTask; worker: WorkerState } | undefined;
      for (const [taskName, byPriority] of this.queues) {
        let queue: TaskQueue | undefined;
        let head: QueuedTask | undefined;
        for (let p = byPriority.length - 1; p >= 0 && !head; p--) {
          queue = byPriority[p];
          head = queue?.peek();
        }
        if (!head || !queue || (best && !before(head, best.task))) continue;
        const worker = this.roomiestWorker(taskName);
        if (worker) best = { queue, task: head, worker };
      }
      if (!best) return placements;
      best.queue.shift();
      const key = attemptKey(best.task);
      best.worker.held.set(key, best.task);
      this.placedOn.set(key, best.worker.workerId);
      placements.push({ task: best.task, workerId: best.worker.workerId });
    }
  }

  /** Queued attempts per task name. */
  depths(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [name, queues] of this.queues) {
      const size = queues.reduce((n, q) => n + q.size, 0);
      if (size > 0) out.set(name, size);
    }
    return out;
  }

  private queueOf(task: QueuedTask): TaskQueue {
    let byPriority = this.queues.get(task.taskName);
    if (!byPriority) {
      byPriority = [new TaskQueue(), new TaskQueue(), new TaskQueue()];
      this.queues.set(task.taskName, byPriority);
    }
    return byPriority[Math.min(3, Math.max(1, task.priority ?? 1)) - 1] as TaskQueue;
  }

  /** Whether a worker is known (registered and not gone). */
  hasWorker(workerId: string): boolean {
    return this.workers.has(workerId);
  }

  /** Slots in use per worker. */
  usage(workerId: string): number {
    return this.workers.get(workerId)?.held.size ?? 0;
  }

  private roomiestWorker(taskName: string): WorkerState | undefined {
    let best: WorkerState | undefined;
    let bestFree = 0;
    for (const worker of this.workers.values()) {
      const free = worker.slots - worker.held.size;
      if (free > bestFree && worker.tasks.has(taskName)) {
        best = worker;
        bestFree = free;
      }
    }
    return best;
  }
}
