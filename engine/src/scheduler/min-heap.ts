/** A binary min-heap ordered by a numeric key; callers delete lazily (skip entries that no longer apply). */
export class MinHeap<T> {
  private items: { at: number; value: T }[] = [];

  get size(): number {
    return this.items.length;
  }

  push(at: number, value: T): void {
    const items = this.items;
    items.push({ at, value });
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if ((items[parent] as { at: number }).at <= at) break;
      [items[i], items[parent]] = [items[parent] as { at: number; value: T }, items[i] as { at: number; value: T }];
      i = parent;
    }
  }

  peek(): { at: number; value: T } | undefined {
    return this.items[0];
  }

  pop(): { at: number; value: T } | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (top === undefined || last === undefined || items.length === 0) return top;
    items[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < items.length && (items[l] as { at: number }).at < (items[m] as { at: number }).at) m = l;
      if (r < items.length && (items[r] as { at: number }).at < (items[m] as { at: number }).at) m = r;
      if (m === i) return top;
      [items[i], items[m]] = [items[m] as { at: number; value: T }, items[i] as { at: number; value: T }];
      i = m;
    }
  }
}
