/** A task of a workflow as the graph needs it. */
export interface DagTask {
  ref: string;
  taskName: string;
  parents?: string[];
  role?: string;
  status: string;
}

export interface DagNode extends DagTask {
  layer: number;
  x: number;
  y: number;
}

export interface DagEdge {
  from: string;
  to: string;
  /** SVG path from the parent's right side to the child's left side. */
  path: string;
  /** To a handler (onFailure/onSuccess): drawn dashed, from every task with no children. */
  handler: boolean;
}

export const NODE_WIDTH = 160;
export const NODE_HEIGHT = 40;
const GAP_X = 70;
const GAP_Y = 22;
const MARGIN = 12;

/**
 * A layered left-to-right layout: a task's layer is one more than its deepest parent's (parents are declared before
 * their children, so there is no cycle); handlers go in a last layer. Within a layer, tasks are ordered by the mean
 * position of their parents (one barycentre pass), which removes most crossings of small DAGs.
 */
export function layoutDag(tasks: DagTask[]): { nodes: DagNode[]; edges: DagEdge[]; width: number; height: number } {
  const byRef = new Map(tasks.map((t) => [t.ref, t]));
  const layerOf = new Map<string, number>();
  const depth = (ref: string, seen: Set<string>): number => {
    const known = layerOf.get(ref);
    if (known !== undefined) return known;
    const t = byRef.get(ref);
    if (!t || seen.has(ref)) return 0;
    seen.add(ref);
    const parents = (t.parents ?? []).filter((p) => byRef.has(p));
    const layer = parents.length ? 1 + Math.max(...parents.map((p) => depth(p, seen))) : 0;
    layerOf.set(ref, layer);
    return layer;
  };
  const main = tasks.filter((t) => !t.role);
  const handlers = tasks.filter((t) => t.role);
  for (const t of main) depth(t.ref, new Set());
  const lastMain = Math.max(-1, ...main.map((t) => layerOf.get(t.ref) ?? 0));
  for (const h of handlers) layerOf.set(h.ref, lastMain + 1);

  const layers: DagTask[][] = [];
  for (const t of tasks) {
    const l = layerOf.get(t.ref) ?? 0;
    const layer = layers[l] ?? [];
    layer.push(t);
    layers[l] = layer;
  }
  const index = new Map<string, number>();
  for (const layer of layers) {
    if (!layer) continue;
    const score = (t: DagTask) => {
      const ps = (t.parents ?? []).map((p) => index.get(p)).filter((i): i is number => i !== undefined);
      return ps.length ? ps.reduce((a, b) => a + b, 0) / ps.length : Number.POSITIVE_INFINITY;
    };
    const order = layer.map((t, i) => ({ t, s: score(t), i })).sort((a, b) => a.s - b.s || a.i - b.i);
    order.forEach(({ t }, i) => {
      index.set(t.ref, i);
    });
    layer.splice(0, layer.length, ...order.map((o) => o.t));
  }
  const tallest = Math.max(1, ...layers.map((l) => l?.length ?? 0));
  const height = MARGIN * 2 + tallest * NODE_HEIGHT + (tallest - 1) * GAP_Y;
  const nodes: DagNode[] = [];
  layers.forEach((layer, l) => {
    if (!layer) return;
    const span = layer.length * NODE_HEIGHT + (layer.length - 1) * GAP_Y;
    const top = (height - span) / 2;
    layer.forEach((t, i) => {
      nodes.push({ ...t, layer: l, x: MARGIN + l * (NODE_WIDTH + GAP_X), y: top + i * (NODE_HEIGHT + GAP_Y) });
    });
  });
  const at = new Map(nodes.map((n) => [n.ref, n]));
  const edges: DagEdge[] = [];
  const link = (from: DagNode, to: DagNode, handler: boolean) => {
    const x1 = from.x + NODE_WIDTH;
    const y1 = from.y + NODE_HEIGHT / 2;
    const x2 = to.x;
    const y2 = to.y + NODE_HEIGHT / 2;
    const mid = (x1 + x2) / 2;
    edges.push({ from: from.ref, to: to.ref, handler, path: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}` });
  };
  for (const n of nodes) {
    for (const p of n.parents ?? []) {
      const parent = at.get(p);
      if (parent) link(parent, n, false);
    }
  }
  const hasChildren = new Set(main.flatMap((t) => t.parents ?? []));
  for (const h of handlers) {
    const node = at.get(h.ref);
    if (!node) continue;
    for (const leaf of main) if (!hasChildren.has(leaf.ref)) link(at.get(leaf.ref) as DagNode, node, true);
  }
  const width = MARGIN * 2 + layers.length * NODE_WIDTH + Math.max(0, layers.length - 1) * GAP_X;
  return { nodes, edges, width, height };
}
