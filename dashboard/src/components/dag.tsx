import { type DagTask, layoutDag, NODE_HEIGHT, NODE_WIDTH } from "../dag.ts";

/** A workflow's tasks as a left-to-right graph, coloured by status. */
export function Dag({ tasks }: { tasks: DagTask[] }) {
  const { nodes, edges, width, height } = layoutDag(tasks);
  return (
    <div class="dag-wrap">
      <svg
        class="dag"
        data-testid="dag"
        width={width}
        height={height}
        viewBox={`0 0 ${width} ${height}`}
        role="img"
        aria-label="workflow graph"
      >
        <defs>
          <marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto">
            <path d="M0,0 L10,5 L0,10 z" class="arrow" />
          </marker>
        </defs>
        {edges.map((e) => (
          <path
            key={`${e.from}>${e.to}`}
            d={e.path}
            class={e.handler ? "edge handler" : "edge"}
            marker-end="url(#arrow)"
          />
        ))}
        {nodes.map((n) => (
          <g
            key={n.ref}
            transform={`translate(${n.x},${n.y})`}
            class={`node s-${n.status.toLowerCase()}`}
            data-ref={n.ref}
          >
            <title>{`${n.ref} (${n.taskName}): ${n.status}${n.role ? `, ${n.role} handler` : ""}`}</title>
            <rect width={NODE_WIDTH} height={NODE_HEIGHT} rx="6" />
            <text x="10" y="17" class="node-name">
              {n.ref.length > 20 ? `${n.ref.slice(0, 19)}…` : n.ref}
            </text>
            <text x="10" y="32" class="node-status">
              {n.role ? `${n.role} · ` : ""}
              {n.status}
            </text>
          </g>
        ))}
      </svg>
    </div>
  );
}
