/**
 * Which namespace leases an engine replica takes or gives up, from what it sees: pure, so the spreading rule is tested
 * without a server. Each replica aims at its fair share, ceil(namespaces / live replicas): a replica under it takes
 * free leases (no holder, or a holder that is gone), one over it releases the surplus for the others to take.
 */
export interface LeaseView {
  /** This replica's id. */
  self: string;
  /** The namespaces every replica serves. */
  namespaces: readonly string[];
  /** The holder of each namespace's lease, if any. */
  holders: ReadonlyMap<string, string>;
  /** Replicas alive now (this one included). */
  live: ReadonlySet<string>;
}

export interface LeasePlan {
  acquire: string[];
  release: string[];
}

export function planLeases(view: LeaseView): LeasePlan {
  const live = new Set(view.live).add(view.self);
  const share = Math.ceil(view.namespaces.length / live.size);
  const held = view.namespaces.filter((ns) => view.holders.get(ns) === view.self);
  if (held.length > share) return { acquire: [], release: held.slice(share) };
  const free = view.namespaces.filter((ns) => {
    const holder = view.holders.get(ns);
    return holder === undefined || !live.has(holder);
  });
  return { acquire: free.slice(0, share - held.length), release: [] };
}
