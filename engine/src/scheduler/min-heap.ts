/**
 * A binary min-heap ordered by a numeric key; callers delete lazily (skip entries that no longer apply). Keys and
 * values sit in two parallel arrays, no object per entry: the schedule deadlines of a million queued attempts live here.
 */
export class MinHeap<T> {
  private ats: number[] = [];
  private values: T[] = [];

  get size(): number {
    return this.ats.length;
  }

  /** The smallest key, if any. */
  topAt(): number | undefined {
    return this.ats[0];
  }

  /** The value with the smallest key, if any. */
  top(): T | undefined {
    return this.values[0];
  }

  push(at: number, value: T): void {
    const { ats, values } = this;
    let i = ats.length;
    ats.push(at);
    values.push(value);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if ((ats[parent] as number) <= at) break;
      ats[i] = ats[parent] as number;
      values[i] = values[parent] as T;
      i = parent;
    }
    ats[i] = at;
    values[i] = value;
  }

  /** Removes the entry with the smallest key. */
  pop(): void {
    const { ats, values } = this;
    const lastAt = ats.pop();
    const last = values.pop() as T;
    if (lastAt === undefined || ats.length === 0) return;
    const n = ats.length;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && (ats[r] as number) < (ats[l] as number) ? r : l;
      if ((ats[c] as number) >= lastAt) break;
      ats[i] = ats[c] as number;
      values[i] = values[c] as T;
      i = c;
    }
    ats[i] = lastAt;
    values[i] = last;
  }

  /** Drops every entry whose value `keep` refuses, at once (when lazily deleted ones pile up). */
  retain(keep: (value: T) => boolean): void {
    const { ats, values } = this;
    this.ats = [];
    this.values = [];
    for (let i = 0; i < ats.length; i++) if (keep(values[i] as T)) this.push(ats[i] as number, values[i] as T);
  }
}
