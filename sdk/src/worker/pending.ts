import type { Assignment } from "@taskjet/schemas";

/** An assignment waiting on this worker for a slot. */
export class Pending {
  constructor(
    readonly assignment: Assignment,
    /** `taskRunId:attempt` */
    readonly key: string,
    /** When it arrived (epoch ms). */
    readonly since: number,
  ) {}
}

/**
 * Assignments waiting for a slot: the highest priority first, in arrival order within a priority. The engine places a
 * short task's attempts on busy workers as they come, so a run of priority 3 placed after runs of priority 1 must
 * still start before them. One queue per priority (1 to 3): taking the next, and giving back the longest waiting, stay
 * cheap whatever waits.
 */
export class PendingAttempts {
  private readonly lanes: Pending[][] = [[], [], []];
  /** A copy sent again is spotted without walking hundreds of waiting assignments. */
  private readonly keys = new Set<string>();

  get size(): number {
    return this.keys.size;
  }

  has(key: string): boolean {
    return this.keys.has(key);
  }

  push(p: Pending): void {
    (this.lanes[laneOf(p.assignment)] as Pending[]).push(p);
    this.keys.add(p.key);
  }

  /** The next to start. */
  peek(): Pending | undefined {
    for (let i = this.lanes.length - 1; i >= 0; i--) {
      const head = (this.lanes[i] as Pending[])[0];
      if (head) return head;
    }
    return undefined;
  }

  /** Takes the next to start. */
  shift(): Pending | undefined {
    const next = this.peek();
    if (next) this.take(next);
    return next;
  }

  /** The one waiting longest, whatever its priority. */
  oldest(): Pending | undefined {
    let oldest: Pending | undefined;
    for (const lane of this.lanes) {
      const head = lane[0];
      if (head && (!oldest || head.since < oldest.since)) oldest = head;
    }
    return oldest;
  }

  /** Takes those that arrived at or before `due`. */
  takeArrivedBy(due: number): Pending[] {
    const taken: Pending[] = [];
    for (const lane of this.lanes) {
      while (lane.length > 0 && (lane[0] as Pending).since <= due) {
        const p = lane.shift() as Pending;
        this.keys.delete(p.key);
        taken.push(p);
      }
    }
    return taken;
  }

  /** Takes the one of `key`; false when none waits. */
  remove(key: string): boolean {
    if (!this.keys.has(key)) return false;
    for (const lane of this.lanes) {
      const i = lane.findIndex((p) => p.key === key);
      if (i >= 0) {
        lane.splice(i, 1);
        break;
      }
    }
    return this.keys.delete(key);
  }

  /** Takes them all. */
  drain(): Pending[] {
    this.keys.clear();
    return this.lanes.flatMap((lane) => lane.splice(0));
  }

  private take(p: Pending): void {
    (this.lanes[laneOf(p.assignment)] as Pending[]).shift();
    this.keys.delete(p.key);
  }
}

function laneOf(a: Assignment): number {
  return Math.min(3, Math.max(1, a.priority ?? 1)) - 1;
}
