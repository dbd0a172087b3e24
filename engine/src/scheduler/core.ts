/**
 * The scheduler's memory and decisions, pure: no I/O, no clock (time is passed in). The shell feeds it facts (tasks
 * queued, workers joining and leaving, attempts started and finished) and asks it which queued tasks go to which
 * worker now.
 *
 * Queued attempts live in lanes: one lane per task and flow key (the values of its concurrency expressions and
 * dynamic rate-limit keys, and its HARD-sticky worker), so a blocked key never holds up another. A task serves its
 * lanes round robin within a priority. A lane whose head is held back by a concurrency group or a rate limit is
 * parked on that blocker and comes back when the blocker clears, so placement never scans what cannot move.
 */
import { type DesiredLabel, type LimitStrategy, labelMatches, type StickyMode } from "@taskjet/schemas";
import { MinHeap } from "./min-heap.js";
import { type RateLimiter, RateLimiter as RateLimiterImpl, type RateUse } from "./rate-limiter.js";
import { RunTimes } from "./run-times.js";

/** How long a worker that gave back attempts it could not start takes no more than its slots. */
export const PREFETCH_HOLD_OFF_MS = 10_000;

/** What `SchedulerCore.snapshot` shows. */
export interface CoreSnapshot {
  /** Tasks with queued attempts: how many, in how many lanes, and lanes parked on a blocker by kind. */
  tasks: {
    taskName: string;
    queued: number;
    lanes: number;
    parked: { concurrency: number; rateLimit: number; worker: number };
  }[];
  /**
   * Known workers: capacity, slots in use, attempts held (placed or running) in all and by task, and how many of
   * those wait there for a slot (`queuedOnWorker`, attempts of short tasks placed beyond its slots).
   */
  workers: {
    workerId: string;
    slots: number;
    usedSlots: number;
    queuedOnWorker: number;
    durableSlots: number;
    usedDurableSlots: number;
    running: number;
    byTask: Record<string, number>;
    /** The tasks it takes (those with a definition). */
    tasks: string[];
  }[];
  groups: { id: string; maxRuns: number; running: number; members: number; waitingLanes: number }[];
}

/** A concurrency group an attempt belongs to: one rule's value. */
export interface GroupRef {
  id: string;
  maxRuns: number;
  strategy: LimitStrategy;
}

/** Everything flow control needs to know about one attempt, resolved by the shell from the task's definition. */
export interface Flow {
  /** The lane within the task: attempts with equal keys share one. */
  lane: string;
  groups: readonly GroupRef[];
  rates: readonly RateUse[];
  labels: readonly { key: string; desired: DesiredLabel }[];
  slotCost: number;
  sticky?: { mode: StickyMode; workerId: string } | undefined;
  /** A durable task: it takes the worker's durable slots, not its slots. */
  durable?: boolean;
}

/** No flow control: one lane, one slot, any worker. */
export const NO_FLOW: Flow = { lane: "", groups: [], rates: [], labels: [], slotCost: 1 };

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
  /** @default NO_FLOW */
  flow?: Flow;
}

/** A worker's capacity as the scheduler sees it. */
export interface WorkerSlots {
  workerId: string;
  tasks: readonly string[];
  slots: number;
  /** Slots for durable tasks. @default 0 */
  durableSlots?: number;
  labels?: Readonly<Record<string, string | number>>;
}

/** One decision: run this attempt on that worker. */
export interface Placement {
  task: QueuedTask;
  workerId: string;
}

/** An attempt a concurrency strategy cancels, and why. */
export interface Cancellation {
  task: QueuedTask;
  reason: string;
}

/** Why an attempt waits, reported once per attempt. */
export interface Wait {
  task: QueuedTask;
  reason: "CONCURRENCY" | "RATE_LIMIT" | "NO_WORKER";
  detail: string;
}

interface WorkerState {
  workerId: string;
  tasks: Set<string>;
  slots: number;
  used: number;
  durableSlots: number;
  durableUsed: number;
  labels: Readonly<Record<string, string | number>>;
  /** Attempts placed on this worker and not finished, by attempt key. */
  held: Map<string, QueuedTask>;
  /** Attempts it freed the slot of (`slotFreed`) whose outcome is not folded yet. */
  freed: Map<string, QueuedTask>;
  /** Until then (epoch ms) it takes no attempts beyond its slots: it gave some back (`returned`). */
  noQueueUntil: number;
}

interface Group {
  id: string;
  maxRuns: number;
  /** Queued and running attempts not being cancelled: what strategies count. */
  members: Map<string, QueuedTask>;
  /** Attempts placed and not finished: what admission counts. */
  held: Set<string>;
  waiters: Set<Lane>;
}

type Park =
  | { kind: "group"; group: Group }
  | { kind: "time"; at: number }
  | { kind: "key"; key: string }
  | { kind: "worker"; workerId: string };

interface Lane {
  key: string;
  task: TaskEntry;
  queues: [TaskQueue, TaskQueue, TaskQueue];
  inRing: [boolean, boolean, boolean];
  parked: Park | undefined;
  /** When an attempt of it was last placed (the core's count of placements): 0 for never. */
  served: number;
}

interface TaskEntry {
  name: string;
  lanes: Map<string, Lane>;
  /** Per priority, lanes with attempts at that priority, served round robin. */
  rings: [Deque<Lane>, Deque<Lane>, Deque<Lane>];
  size: number;
}

/** An attempt the core knows that is not waiting in a queue: placed on or held by a worker, or being cancelled. */
interface Known {
  task: QueuedTask;
  workerId?: string;
  cancelling?: boolean;
}

/** A known attempt: a queued one is kept as its own record (its lane follows from its flow), any other as `Known`. */
type KnownEntry = QueuedTask | Known;

function isQueuedRecord(entry: KnownEntry): entry is QueuedTask {
  return (entry as Known).task === undefined;
}

function recordOf(entry: KnownEntry): QueuedTask {
  return isQueuedRecord(entry) ? entry : entry.task;
}

/**
 * The attempts the core knows, by task-run id. A million may be queued: keyed by the task-run id string their records
 * already hold, and a queued one stored as its record, they cost a map slot each, not also a key string made per
 * attempt and an entry object (~90 bytes). A task-run has one known attempt as a rule; another known at once (an
 * attempt still held while the next is queued) is kept by attempt key beside.
 */
class KnownAttempts {
  private readonly byTaskRun = new Map<string, KnownEntry>();
  private readonly others = new Map<string, KnownEntry>();

  get(task: Pick<QueuedTask, "taskRunId" | "attempt">): KnownEntry | undefined {
    const entry = this.byTaskRun.get(task.taskRunId);
    if (entry !== undefined && recordOf(entry).attempt === task.attempt) return entry;
    return this.others.size === 0 ? undefined : this.others.get(attemptKey(task));
  }

  has(task: Pick<QueuedTask, "taskRunId" | "attempt">): boolean {
    return this.get(task) !== undefined;
  }

  set(task: Pick<QueuedTask, "taskRunId" | "attempt">, entry: KnownEntry): void {
    const current = this.byTaskRun.get(task.taskRunId);
    if (current === undefined || recordOf(current).attempt === task.attempt) {
      // Keyed by the record's own string: the caller's may be a copy.
      this.byTaskRun.set(recordOf(entry).taskRunId, entry);
      if (this.others.size > 0) this.others.delete(attemptKey(task));
    } else this.others.set(attemptKey(task), entry);
  }

  get size(): number {
    return this.byTaskRun.size + this.others.size;
  }

  delete(task: Pick<QueuedTask, "taskRunId" | "attempt">): void {
    const current = this.byTaskRun.get(task.taskRunId);
    if (current !== undefined && recordOf(current).attempt === task.attempt) this.byTaskRun.delete(task.taskRunId);
    else if (this.others.size > 0) this.others.delete(attemptKey(task));
  }
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

  remove(record: QueuedTask): boolean {
    for (let i = this.head; i < this.items.length; i++) {
      const task = this.items[i];
      if (task === record) {
        this.items[i] = undefined;
        this.size--;
        return true;
      }
    }
    return false;
  }

  *values(): IterableIterator<QueuedTask> {
    for (let i = this.head; i < this.items.length; i++) {
      const task = this.items[i];
      if (task) yield task;
    }
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

/** A FIFO of lanes. */
class Deque<T> {
  private items: (T | undefined)[] = [];
  private head = 0;

  push(value: T): void {
    this.items.push(value);
  }

  peek(): T | undefined {
    return this.items[this.head];
  }

  shift(): T | undefined {
    const value = this.items[this.head];
    if (value === undefined) return undefined;
    this.items[this.head++] = undefined;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return value;
  }
}

/** Takes (`sign` 1) or gives back (-1) an attempt's slots in the pool it uses. */
function take(worker: WorkerState, flow: Flow, sign: 1 | -1): void {
  if (flow.durable) worker.durableUsed += sign * flow.slotCost;
  else worker.used += sign * flow.slotCost;
}

/** Lexicographic: the first element that differs decides; any rank is above the empty one. */
function ranksAbove(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 0; i < a.length; i++) {
    const other = b[i];
    if (other === undefined || (a[i] as number) > other) return true;
    if ((a[i] as number) < other) return false;
  }
  return false;
}

/** Whether `a` is placed before `b`: higher priority, then older. */
function before(a: QueuedTask, b: QueuedTask): boolean {
  const pa = a.priority ?? 1;
  const pb = b.priority ?? 1;
  return pa !== pb ? pa > pb : a.order < b.order;
}

function priorityIndex(task: QueuedTask): 0 | 1 | 2 {
  return (Math.min(3, Math.max(1, task.priority ?? 1)) - 1) as 0 | 1 | 2;
}

/** Identity of one attempt of one task-run. */
export function attemptKey(task: { taskRunId: string; attempt: number }): string {
  return `${task.taskRunId}:${task.attempt}`;
}

/** The key that pauses a whole task (`ctx.rateLimited()` in a task without rate limits). */
export function taskPauseKey(taskName: string): string {
  return `task:${taskName}`;
}

export class SchedulerCore {
  readonly rates: RateLimiter = new RateLimiterImpl();
  private readonly tasks = new Map<string, TaskEntry>();
  private readonly workers = new Map<string, WorkerState>();
  private readonly known = new KnownAttempts();
  private readonly groups = new Map<string, Group>();
  private readonly timeParked = new MinHeap<Lane>();
  /** Lanes waiting for a static rate limit to be defined, or for reserved units to start. */
  private readonly keyParked = new Map<string, Set<Lane>>();
  /** HARD-sticky lanes waiting for their worker to have room (or the labels they need). */
  private readonly workerParked = new Map<string, Set<Lane>>();
  private waits: Wait[] = [];
  /** The latest time the shell passed in: when a finish without a clock settles rate units. */
  private lastNow = 0;
  private placedCount = 0;
  private readonly waitReported = new Set<string>();
  private readonly runTimes = new RunTimes();
  /**
   * Schedule deadlines of queued attempts: a number and a reference per attempt in the heap's arrays, no object and no
   * map entry (a million queued attempts have a million deadlines). An entry is live while the core
   * still knows its record (queued, placed or held); the others are dropped when they surface, or all at once when
   * they outnumber the known attempts.
   */
  private readonly deadlines = new MinHeap<QueuedTask>();
  /**
   * Failed attempts whose task retries after a backoff, by task-run id, still members of their cancelling groups
   * (`awaitRetry`).
   */
  private readonly retrying = new Map<string, QueuedTask>();

  /**
   * Queues an attempt; an attempt already queued or placed is ignored. Returns what its concurrency strategies
   * cancel: the attempt itself (CANCEL_NEWEST) or older members of its groups (CANCEL_IN_PROGRESS).
   */
  enqueue(task: QueuedTask, deadline?: number): Cancellation[] {
    if (this.known.has(task)) return [];
    // A retry takes back the place its failed attempt kept.
    if (this.retrying.size > 0) this.dropRetry(task.taskRunId);
    const flow = task.flow ?? NO_FLOW;
    // Every rule must admit the run: one that refuses it (CANCEL_NEWEST) is decided before any other evicts for it.
    for (const ref of flow.groups) {
      if (ref.strategy !== "CANCEL_NEWEST" || this.groupOf(ref).members.size < ref.maxRuns) continue;
      // Known but nowhere: the cancellation's event finishes it.
      this.known.set(task, { task, cancelling: true });
      return [{ task, reason: `CONCURRENCY_CANCEL_NEWEST: group ${ref.id} already has ${ref.maxRuns} run(s)` }];
    }
    const cancellations: Cancellation[] = [];
    for (const ref of flow.groups) {
      const group = this.groupOf(ref);
      if (ref.strategy !== "CANCEL_IN_PROGRESS" || group.members.size < ref.maxRuns) continue;
      const victims = [...group.members.values()].sort((a, b) => a.order - b.order);
      for (const victim of victims.slice(0, group.members.size - ref.maxRuns + 1)) {
        this.cancel(victim);
        cancellations.push({
          task: victim,
          reason: `CONCURRENCY_CANCEL_IN_PROGRESS: group ${ref.id} admits newer run ${task.runId}`,
        });
      }
    }
    const lane = this.laneOf(task, flow);
    this.known.set(task, task);
    if (flow.groups.length > 0) {
      const key = attemptKey(task);
      for (const ref of flow.groups) this.groupOf(ref).members.set(key, task);
    }
    const p = priorityIndex(task);
    lane.queues[p].insert(task);
    lane.task.size++;
    if (!lane.parked && !lane.inRing[p]) {
      lane.inRing[p] = true;
      lane.task.rings[p].push(lane);
    }
    if (deadline !== undefined) this.pushDeadline(deadline, task);
    return cancellations;
  }

  /** Adds a worker or updates its tasks, slots and labels. */
  upsertWorker(worker: WorkerSlots): void {
    const existing = this.workers.get(worker.workerId);
    if (existing) {
      existing.tasks = new Set(worker.tasks);
      existing.slots = worker.slots;
      existing.durableSlots = worker.durableSlots ?? 0;
      existing.labels = worker.labels ?? {};
      this.wakeAll(this.workerParked, worker.workerId);
      return;
    }
    this.wakeAll(this.workerParked, worker.workerId);
    this.workers.set(worker.workerId, {
      workerId: worker.workerId,
      tasks: new Set(worker.tasks),
      slots: worker.slots,
      used: 0,
      durableSlots: worker.durableSlots ?? 0,
      durableUsed: 0,
      labels: worker.labels ?? {},
      held: new Map(),
      freed: new Map(),
      noQueueUntil: 0,
    });
  }

  /**
   * Removes a worker. Returns the attempts it held; the caller re-queues those it knows were never started.
   */
  removeWorker(workerId: string): QueuedTask[] {
    const worker = this.workers.get(workerId);
    if (!worker) return [];
    this.workers.delete(workerId);
    const held = [...worker.held.values(), ...worker.freed.values()];
    for (const task of held) this.forget(task);
    return held;
  }

  /** Records that an attempt is held by a worker (placed by a previous engine, or started elsewhere than placed). */
  hold(task: QueuedTask, workerId: string): void {
    const known = this.known.get(task);
    const queued = known !== undefined && isQueuedRecord(known) ? known : undefined;
    const other = known !== undefined && !isQueuedRecord(known) ? known : undefined;
    if (other?.workerId === workerId) return;
    const worker = this.workers.get(workerId);
    if (!worker) {
      // A worker we do not know: track nothing, so the attempt can be queued again if it is reassigned.
      if (known) this.forget(task);
      return;
    }
    const record = known ? recordOf(known) : task;
    const flow = record.flow ?? NO_FLOW;
    if (other?.workerId !== undefined) this.release(other, false);
    else if (queued) this.unqueue(queued);
    const entry: Known = { task: record, workerId, cancelling: other?.cancelling };
    this.known.set(task, entry);
    const key = attemptKey(record);
    worker.held.set(key, entry.task);
    take(worker, flow, 1);
    for (const ref of flow.groups) {
      const group = this.groupOf(ref);
      group.held.add(key);
      if (!entry.cancelling) group.members.set(key, entry.task);
    }
  }

  /** An attempt reached a final state (or will never run): frees its slot and groups, or drops it from its queue. */
  finish(task: Pick<QueuedTask, "taskRunId" | "attempt">): void {
    this.forget(task);
    if (this.retrying.size > 0 && this.retrying.get(task.taskRunId)?.attempt === task.attempt) {
      this.dropRetry(task.taskRunId);
    }
  }

  /**
   * A failed attempt (finished) whose task will retry after a backoff: in groups whose strategy cancels, the run keeps
   * its place through the backoff, so a run arriving meanwhile is the newer one: under CANCEL_NEWEST it is cancelled,
   * under CANCEL_IN_PROGRESS it cancels this run. Were the place freed, the retry would arrive as the newest and the
   * strategies would turn on the wrong run. Under GROUP_ROUND_ROBIN the place is free meanwhile: the retry queues.
   * The place goes with the retry's `enqueue`, or `finish` of this attempt, or `dropRetry`.
   */
  awaitRetry(failed: QueuedTask): void {
    const groups = (failed.flow ?? NO_FLOW).groups.filter((ref) => ref.strategy !== "GROUP_ROUND_ROBIN");
    if (groups.length === 0) return;
    this.dropRetry(failed.taskRunId);
    this.retrying.set(failed.taskRunId, failed);
    const key = attemptKey(failed);
    for (const ref of groups) this.groupOf(ref).members.set(key, failed);
  }

  /** The task-run waits for no retry any more (its run ended): its kept places are free. */
  dropRetry(taskRunId: string): void {
    const failed = this.retrying.get(taskRunId);
    if (!failed) return;
    this.retrying.delete(taskRunId);
    const key = attemptKey(failed);
    for (const ref of failed.flow?.groups ?? []) {
      const group = this.groups.get(ref.id);
      if (group?.members.get(key) !== failed) continue;
      group.members.delete(key);
      this.maybeDropGroup(group);
    }
  }

  /** Whether some failed attempt keeps its places for a retry (`awaitRetry`). */
  awaitsRetries(): boolean {
    return this.retrying.size > 0;
  }

  /**
   * The worker says it freed an attempt's slot, before its outcome is folded: the slot takes new work now. The attempt
   * keeps its concurrency places until `finish`. Returns whether anything was freed (not for an attempt placed
   * elsewhere, unknown, or freed already).
   */
  slotFreed(task: Pick<QueuedTask, "taskRunId" | "attempt">, workerId: string): boolean {
    const known = this.known.get(task);
    if (known === undefined || isQueuedRecord(known) || known.workerId !== workerId) return false;
    const worker = this.workers.get(workerId);
    // Its `held` entry is the slot: once gone, `release` leaves the slot count alone.
    const key = attemptKey(known.task);
    if (!worker?.held.delete(key)) return false;
    worker.freed.set(key, known.task);
    take(worker, known.task.flow ?? NO_FLOW, -1);
    this.wakeAll(this.workerParked, workerId);
    return true;
  }

  /** An attempt of `taskName` ran `ms` from its start to its outcome: short tasks may wait on busy workers. */
  ran(taskName: string, ms: number): void {
    this.runTimes.observe(taskName, ms);
  }

  /**
   * The worker gave back an attempt placed on it that it had not started (it waited there too long for a slot): the
   * attempt goes back to its queue, and the worker takes no attempts beyond its slots for `PREFETCH_HOLD_OFF_MS`.
   * Returns whether the attempt was placed there.
   */
  returned(task: Pick<QueuedTask, "taskRunId" | "attempt">, workerId: string, now: number): boolean {
    this.lastNow = Math.max(this.lastNow, now);
    const known = this.known.get(task);
    if (known === undefined || isQueuedRecord(known) || known.workerId !== workerId) return false;
    const worker = this.workers.get(workerId);
    if (worker) worker.noQueueUntil = now + PREFETCH_HOLD_OFF_MS;
    this.unplace(known.task);
    return true;
  }

  /** Undo a placement whose assignment could not be delivered: the attempt goes back to its queue. */
  unplace(task: QueuedTask): void {
    const known = this.known.get(task);
    if (known === undefined || isQueuedRecord(known) || known.workerId === undefined) return;
    this.forget(task);
    this.enqueue(known.task);
  }

  /** Removes the queued (not placed) attempts of a task, so the caller can queue them again with a new flow. */
  takeQueued(taskName: string): QueuedTask[] {
    const entry = this.tasks.get(taskName);
    if (!entry) return [];
    const out: QueuedTask[] = [];
    for (const lane of [...entry.lanes.values()]) {
      // Not push(...values()): a spread of a million attempts overflows the call stack.
      for (const q of lane.queues) for (const task of q.values()) out.push(task);
      // The lanes go whole: taking attempts out one by one searches the queue for each (quadratic for a backlog).
      lane.queues = [new TaskQueue(), new TaskQueue(), new TaskQueue()];
      this.dropLane(lane);
    }
    entry.size = 0;
    for (const task of out) this.forget(task, false);
    return out;
  }

  /** A static rate limit was defined or changed: lanes waiting for it may move. */
  setRateLimit(key: string, limit: number, durationMs: number): void {
    this.rates.setLimit(key, limit, durationMs);
    this.wakeAll(this.keyParked, key);
  }

  /** The attempt started at `now`: its rate-limit units count from now, and lanes waiting on them learn when. */
  started(task: Pick<QueuedTask, "taskRunId" | "attempt">, now: number): void {
    this.lastNow = Math.max(this.lastNow, now);
    this.settle(attemptKey(task), now);
  }

  /** Pauses a rate-limit key until `until` (epoch ms). */
  pauseKey(key: string, until: number): void {
    this.rates.pause(key, until);
  }

  /**
   * Places as many queued attempts as flow control and free slots allow: highest priority first, oldest first within
   * a priority across tasks, lanes of a task in turn. Each attempt goes to the best eligible worker (`bestWorker`).
   * At most `max` in one call.
   */
  place(now: number, max = Number.POSITIVE_INFINITY): Placement[] {
    this.lastNow = Math.max(this.lastNow, now);
    this.wake(now);
    const placements: Placement[] = [];
    const blocked = new Set<TaskEntry>();
    while (placements.length < max) {
      let best: { lane: Lane; task: QueuedTask; p: 0 | 1 | 2 } | undefined;
      for (const entry of this.tasks.values()) {
        if (entry.size === 0 || blocked.has(entry)) continue;
        const candidate = this.candidate(entry);
        if (candidate && (!best || before(candidate.task, best.task))) best = candidate;
      }
      if (!best) return placements;
      const { lane, task, p } = best;
      const flow = task.flow ?? NO_FLOW;
      if (this.heldBack(lane, task, flow, now)) continue;
      const worker = this.bestWorker(task.taskName, flow);
      if (!worker) {
        this.noWorker(task, flow);
        // A HARD-sticky lane waits for its own worker; any other lane of the task would find none either.
        if (flow.sticky?.mode === "HARD")
          this.parkOn(this.workerParked, flow.sticky.workerId, lane, {
            kind: "worker",
            workerId: flow.sticky.workerId,
          });
        else blocked.add(lane.task);
        continue;
      }
      lane.task.rings[p].shift();
      lane.queues[p].shift();
      lane.task.size--;
      lane.served = ++this.placedCount;
      if (lane.queues[p].size > 0) lane.task.rings[p].push(lane);
      else lane.inRing[p] = false;
      if (lane.queues.every((q) => q.size === 0)) this.dropLane(lane);
      const key = attemptKey(task);
      this.waitReported.delete(key);
      this.rates.consume(flow.rates, now, key);
      for (const ref of flow.groups) this.groupOf(ref).held.add(key);
      this.known.set(task, { task, workerId: worker.workerId });
      worker.held.set(key, task);
      take(worker, flow, 1);
      placements.push({ task, workerId: worker.workerId });
    }
    return placements;
  }

  /**
   * Attempts whose schedule deadline (given to `enqueue`) is `now` or earlier and which the core still holds, queued or
   * placed: the caller cancels those its run's state still shows waiting for a worker. Each is returned once.
   */
  expired(now: number): QueuedTask[] {
    const out: QueuedTask[] = [];
    for (let at = this.nextDeadline(); at !== undefined && at <= now; at = this.nextDeadline()) {
      out.push(this.deadlines.top() as QueuedTask);
      this.deadlines.pop();
    }
    return out;
  }

  /** The earliest live schedule deadline, if any. */
  nextDeadline(): number | undefined {
    for (;;) {
      const task = this.deadlines.top();
      if (task === undefined) return undefined;
      if (this.holds(task)) return this.deadlines.topAt();
      this.deadlines.pop();
    }
  }

  /** When a parked lane is next due to be looked at again, if any. */
  nextWakeAt(): number | undefined {
    for (;;) {
      const lane = this.timeParked.top();
      const at = this.timeParked.topAt();
      if (lane === undefined || at === undefined) return undefined;
      if (lane.parked?.kind === "time" && lane.parked.at === at) return at;
      this.timeParked.pop(); // stale: the lane moved on
    }
  }

  /** Why attempts started waiting since the last call (each attempt reported once). */
  drainWaits(): Wait[] {
    const waits = this.waits;
    this.waits = [];
    return waits;
  }

  /** Queued attempts per task name. */
  depths(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [name, entry] of this.tasks) if (entry.size > 0) out.set(name, entry.size);
    return out;
  }

  /**
   * What the core holds, for people (`GET queues`) and metrics: queued attempts and parked lanes per task, slots per
   * worker, concurrency groups. Read-only; costs one pass over tasks, workers and groups (not over queued attempts).
   */
  snapshot(): CoreSnapshot {
    const tasks: CoreSnapshot["tasks"] = [];
    for (const [taskName, entry] of this.tasks) {
      if (entry.size === 0) continue;
      const parked = { concurrency: 0, rateLimit: 0, worker: 0 };
      for (const lane of entry.lanes.values()) {
        if (lane.parked?.kind === "group") parked.concurrency++;
        else if (lane.parked?.kind === "time" || lane.parked?.kind === "key") parked.rateLimit++;
        else if (lane.parked?.kind === "worker") parked.worker++;
      }
      tasks.push({ taskName, queued: entry.size, lanes: entry.lanes.size, parked });
    }
    const workers: CoreSnapshot["workers"] = [];
    for (const w of this.workers.values()) {
      const byTask: Record<string, number> = {};
      for (const task of w.held.values()) byTask[task.taskName] = (byTask[task.taskName] ?? 0) + 1;
      workers.push({
        workerId: w.workerId,
        slots: w.slots,
        usedSlots: Math.min(w.used, w.slots),
        queuedOnWorker: Math.max(0, w.used - w.slots),
        durableSlots: w.durableSlots,
        usedDurableSlots: w.durableUsed,
        running: w.held.size,
        byTask,
        tasks: [...w.tasks],
      });
    }
    const groups = [...this.groups.values()].map((g) => ({
      id: g.id,
      maxRuns: g.maxRuns,
      running: g.held.size,
      members: g.members.size,
      waitingLanes: g.waiters.size,
    }));
    return { tasks, workers, groups };
  }

  /**
   * Per task, its oldest queued attempt (the lowest order among its lanes' heads, any priority): what the queue's age
   * is measured by. One pass over lanes, not over attempts.
   */
  oldestQueued(): Map<string, QueuedTask> {
    const out = new Map<string, QueuedTask>();
    for (const [name, entry] of this.tasks) {
      if (entry.size === 0) continue;
      let oldest: QueuedTask | undefined;
      for (const lane of entry.lanes.values()) {
        for (const q of lane.queues) {
          const head = q.peek();
          if (head && (!oldest || head.order < oldest.order)) oldest = head;
        }
      }
      if (oldest) out.set(name, oldest);
    }
    return out;
  }

  /** Whether an attempt waits in a queue (not placed, not being cancelled). */
  isQueued(task: Pick<QueuedTask, "taskRunId" | "attempt">): boolean {
    const known = this.known.get(task);
    return known !== undefined && isQueuedRecord(known);
  }

  /** Whether the core tracks an attempt (queued, placed or being cancelled). */
  knows(task: Pick<QueuedTask, "taskRunId" | "attempt">): boolean {
    return this.known.has(task);
  }

  /** The worker an attempt is placed on or held by, if any. */
  workerOf(task: Pick<QueuedTask, "taskRunId" | "attempt">): string | undefined {
    const known = this.known.get(task);
    return known === undefined || isQueuedRecord(known) ? undefined : known.workerId;
  }

  /** Every attempt placed on or held by a worker, with that worker. */
  placements(): Placement[] {
    const out: Placement[] = [];
    for (const w of this.workers.values()) for (const task of w.held.values()) out.push({ task, workerId: w.workerId });
    return out;
  }

  /** Whether a worker is known (registered and not gone). */
  hasWorker(workerId: string): boolean {
    return this.workers.has(workerId);
  }

  /** Slots in use on a worker. */
  usage(workerId: string): number {
    return this.workers.get(workerId)?.used ?? 0;
  }

  /** Attempts held (placed or running) in a concurrency group. */
  groupUsage(groupId: string): number {
    return this.groups.get(groupId)?.held.size ?? 0;
  }

  /** Whether the core still knows this very record (not only its attempt: a re-queued attempt has a new one). */
  private holds(task: QueuedTask): boolean {
    const known = this.known.get(task);
    return known !== undefined && recordOf(known) === task;
  }

  private pushDeadline(at: number, task: QueuedTask): void {
    // Entries of forgotten attempts stay until they surface: dropped at once when they outnumber the attempts known.
    if (this.deadlines.size > 2 * this.known.size + 1024) this.deadlines.retain((t) => this.holds(t));
    this.deadlines.push(at, task);
  }

  /** The lane and priority a task serves next, skipping lanes that were parked or emptied. */
  private candidate(entry: TaskEntry): { lane: Lane; task: QueuedTask; p: 0 | 1 | 2 } | undefined {
    for (let p = 2 as 0 | 1 | 2; p >= 0; p--) {
      const ring = entry.rings[p];
      for (;;) {
        const lane = ring.peek();
        if (!lane) break;
        const head = lane.parked ? undefined : lane.queues[p].peek();
        if (head) return { lane, task: head, p };
        ring.shift();
        lane.inRing[p] = false;
      }
      if (p === 0) break;
    }
    return undefined;
  }

  /** Parks the lane when a concurrency group or rate limit holds its head back. */
  private heldBack(lane: Lane, task: QueuedTask, flow: Flow, now: number): boolean {
    for (const ref of flow.groups) {
      const group = this.groupOf(ref);
      if (group.held.size < ref.maxRuns) continue;
      this.reportWait(task, "CONCURRENCY", `group ${ref.id} is running ${group.held.size} of ${ref.maxRuns}`);
      group.waiters.add(lane);
      this.park(lane, { kind: "group", group });
      return true;
    }
    const paused = this.rates.hasPauses() ? this.rates.pausedUntil(taskPauseKey(task.taskName), now) : undefined;
    const block =
      paused !== undefined
        ? ({ kind: "until", at: paused, detail: `task paused until ${new Date(paused).toISOString()}` } as const)
        : flow.rates.length > 0
          ? this.rates.check(flow.rates, now)
          : undefined;
    if (!block) return false;
    this.reportWait(task, "RATE_LIMIT", block.detail);
    if (block.kind === "until") this.park(lane, { kind: "time", at: block.at });
    else if (block.kind === "undefined" || block.kind === "reserved") {
      this.parkOn(this.keyParked, block.key, lane, { kind: "key", key: block.key });
    } else this.park(lane, { kind: "time", at: now + 60_000 }); // units above the limit: look again after a change
    return true;
  }

  private noWorker(task: QueuedTask, flow: Flow): void {
    const key = attemptKey(task);
    if (this.waitReported.has(key)) return;
    // Worth a history event only when routing is the cause: workers run the task, but none could take this attempt
    // even with free slots (labels, HARD sticky, slot cost). No worker at all is the ordinary wait for one to start.
    let runsTask = false;
    for (const worker of this.workers.values()) {
      if (!worker.tasks.has(task.taskName)) continue;
      runsTask = true;
      if (this.eligible(worker, task.taskName, flow)) return;
    }
    if (!runsTask && flow.sticky?.mode !== "HARD") return;
    const wants = flow.labels
      .filter((l) => l.desired.required)
      .map((l) => `${l.key} ${l.desired.comparator} ${l.desired.value}`);
    const sticky = flow.sticky?.mode === "HARD" ? `its HARD-sticky worker ${flow.sticky.workerId}` : undefined;
    const detail = sticky
      ? `waiting for ${sticky}`
      : `no live worker running ${task.taskName} has${wants.length ? ` ${wants.join(", ")}` : ""}${flow.slotCost > 1 ? ` ${flow.slotCost} slots` : ""}`;
    this.reportWait(task, "NO_WORKER", detail);
  }

  private reportWait(task: QueuedTask, reason: Wait["reason"], detail: string): void {
    const key = attemptKey(task);
    if (this.waitReported.has(key)) return;
    this.waitReported.add(key);
    this.waits.push({ task, reason, detail });
  }

  private park(lane: Lane, park: Park): void {
    lane.parked = park;
    if (park.kind === "time") this.timeParked.push(park.at, lane);
  }

  private unpark(lane: Lane): void {
    if (!lane.parked) return;
    lane.parked = undefined;
    for (const p of [0, 1, 2] as const) {
      if (lane.queues[p].size > 0 && !lane.inRing[p]) {
        lane.inRing[p] = true;
        lane.task.rings[p].push(lane);
      }
    }
  }

  /** Lanes whose time came (rate limit window, pause, sticky worker check). */
  private wake(now: number): void {
    for (;;) {
      const lane = this.timeParked.top();
      const at = this.timeParked.topAt();
      if (lane === undefined || at === undefined || at > now) return;
      this.timeParked.pop();
      if (lane.parked?.kind === "time" && lane.parked.at === at) this.unpark(lane);
    }
  }

  /** The attempt is cancelled by a strategy: it stops counting as a member, and a queued one is never placed. */
  private cancel(victim: QueuedTask): void {
    if (this.retrying.get(victim.taskRunId) === victim) {
      this.dropRetry(victim.taskRunId);
      return;
    }
    const known = this.known.get(victim);
    if (!known) return;
    const key = attemptKey(victim);
    for (const ref of victim.flow?.groups ?? []) this.groups.get(ref.id)?.members.delete(key);
    if (isQueuedRecord(known)) {
      this.unqueue(known);
      this.known.set(victim, { task: known, cancelling: true });
    } else known.cancelling = true;
  }

  private settle(key: string, now: number): void {
    for (const use of this.rates.settle(key, now)) this.wakeAll(this.keyParked, use.key);
  }

  private parkOn(index: Map<string, Set<Lane>>, id: string, lane: Lane, park: Park): void {
    const lanes = index.get(id) ?? new Set<Lane>();
    index.set(id, lanes);
    lanes.add(lane);
    this.park(lane, park);
  }

  private wakeAll(index: Map<string, Set<Lane>>, id: string): void {
    const lanes = index.get(id);
    if (!lanes) return;
    index.delete(id);
    for (const lane of lanes) this.unpark(lane);
  }

  /** Drops an attempt from everything; `unqueue` false: its lane was already emptied whole (`takeQueued`). */
  private forget(task: Pick<QueuedTask, "taskRunId" | "attempt">, unqueue = true): void {
    const known = this.known.get(task);
    if (!known) return;
    this.known.delete(task);
    const key = attemptKey(task);
    this.settle(key, this.lastNow);
    this.waitReported.delete(key);
    if (isQueuedRecord(known)) {
      if (unqueue) this.unqueue(known);
    } else if (known.workerId !== undefined) this.release(known, true);
    for (const ref of recordOf(known).flow?.groups ?? []) {
      const group = this.groups.get(ref.id);
      if (!group) continue;
      group.members.delete(key);
      this.maybeDropGroup(group);
    }
  }

  /** Frees the slot and group places of a placed attempt. */
  private release(known: Known, wakeGroups: boolean): void {
    const key = attemptKey(known.task);
    const worker = known.workerId === undefined ? undefined : this.workers.get(known.workerId);
    if (worker?.held.delete(key)) {
      take(worker, known.task.flow ?? NO_FLOW, -1);
      if (wakeGroups) this.wakeAll(this.workerParked, worker.workerId);
    }
    worker?.freed.delete(key);
    known.workerId = undefined;
    // Made only when a group had waiters: most releases (tasks without concurrency rules) wake nobody.
    let woken: Lane[] | undefined;
    let groupsWoken = 0;
    for (const ref of known.task.flow?.groups ?? []) {
      const group = this.groups.get(ref.id);
      if (!group?.held.delete(key) || !wakeGroups || group.waiters.size === 0) continue;
      groupsWoken++;
      if (!woken) woken = [];
      for (const lane of group.waiters)
        if (lane.parked?.kind === "group" && lane.parked.group === group) woken.push(lane);
      group.waiters.clear();
    }
    if (!woken) return;
    // Back into their rings least recently served first. Woken group by group, in the order of the rules, a lane
    // parked on its own key's group would come back ahead of those parked on a shared one every time, and starve them.
    if (groupsWoken > 1) woken.sort((a, b) => a.served - b.served);
    for (const lane of woken) this.unpark(lane);
  }

  /** Takes a queued attempt out of its lane: the lane its flow names (a lane is dropped only once empty). */
  private unqueue(record: QueuedTask): void {
    const lane = this.tasks.get(record.taskName)?.lanes.get((record.flow ?? NO_FLOW).lane);
    if (!lane) return;
    if (lane.queues[priorityIndex(record)].remove(record)) lane.task.size--;
    if (lane.queues.every((q) => q.size === 0)) this.dropLane(lane);
  }

  private dropLane(lane: Lane): void {
    // Ring entries and heap entries of a dropped lane are skipped when they surface (its queues are empty).
    if (lane.task.lanes.get(lane.key) === lane) lane.task.lanes.delete(lane.key);
    if (lane.parked?.kind === "group") lane.parked.group.waiters.delete(lane);
    if (lane.parked?.kind === "key") this.keyParked.get(lane.parked.key)?.delete(lane);
    if (lane.parked?.kind === "worker") this.workerParked.get(lane.parked.workerId)?.delete(lane);
    lane.parked = undefined;
  }

  private laneOf(task: QueuedTask, flow: Flow): Lane {
    let entry = this.tasks.get(task.taskName);
    if (!entry) {
      entry = { name: task.taskName, lanes: new Map(), rings: [new Deque(), new Deque(), new Deque()], size: 0 };
      this.tasks.set(task.taskName, entry);
    }
    let lane = entry.lanes.get(flow.lane);
    if (!lane) {
      lane = {
        key: flow.lane,
        task: entry,
        queues: [new TaskQueue(), new TaskQueue(), new TaskQueue()],
        inRing: [false, false, false],
        parked: undefined,
        served: 0,
      };
      entry.lanes.set(flow.lane, lane);
    }
    return lane;
  }

  private groupOf(ref: GroupRef): Group {
    let group = this.groups.get(ref.id);
    if (!group) {
      group = { id: ref.id, maxRuns: ref.maxRuns, members: new Map(), held: new Set(), waiters: new Set() };
      this.groups.set(ref.id, group);
    }
    return group;
  }

  private maybeDropGroup(group: Group): void {
    if (group.members.size === 0 && group.held.size === 0 && group.waiters.size === 0) this.groups.delete(group.id);
  }

  private eligible(worker: WorkerState, taskName: string, flow: Flow): boolean {
    if (!worker.tasks.has(taskName) || (flow.durable ? worker.durableSlots : worker.slots) < flow.slotCost)
      return false;
    if (flow.sticky?.mode === "HARD" && worker.workerId !== flow.sticky.workerId) return false;
    for (const { key, desired } of flow.labels) {
      if (desired.required && !labelMatches(worker.labels[key], desired)) return false;
    }
    return true;
  }

  /**
   * The worker an attempt goes to: one with a free slot if any, then its sticky worker, then the best label match,
   * then the most free slots.
   *
   * An attempt of a short task (`RunTimes`) may also go to a worker whose slots are all taken, up to
   * `RunTimes.queuedPerSlot` per slot: it waits there and starts the moment a slot frees, without the round trip
   * through the engine that refilling a freed slot costs otherwise (with 50 slots and no-op tasks, that round trip
   * bounded throughput). The worker never runs more than its slots (invariant 6), and gives back an attempt that
   * waited too long.
   */
  private bestWorker(taskName: string, flow: Flow): WorkerState | undefined {
    const perSlot = flow.durable ? 0 : this.runTimes.queuedPerSlot(taskName);
    let best: WorkerState | undefined;
    let bestRank: number[] = [];
    for (const worker of this.workers.values()) {
      const free = flow.durable ? worker.durableSlots - worker.durableUsed : worker.slots - worker.used;
      const room = this.lastNow >= worker.noQueueUntil ? free + perSlot * worker.slots : free;
      if (room < flow.slotCost || !this.eligible(worker, taskName, flow)) continue;
      let score = 0;
      for (const { key, desired } of flow.labels) {
        if (!desired.required && labelMatches(worker.labels[key], desired)) score += desired.weight;
      }
      const rank = [free >= flow.slotCost ? 1 : 0, flow.sticky?.workerId === worker.workerId ? 1 : 0, score, free];
      if (ranksAbove(rank, bestRank)) {
        best = worker;
        bestRank = rank;
      }
    }
    return best;
  }
}
