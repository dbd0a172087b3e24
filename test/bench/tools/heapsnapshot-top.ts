/**
 * Where a heap's bytes are, from a `.heapsnapshot` (V8 format: `scale.ts --heap-snapshot`, `--heapsnapshot-signal`):
 * self size aggregated by what the thing is. Plain objects are told apart by their properties (a run state, a task's
 * state and a timer entry are all `Object` to V8), strings and arrays by the property or constructor that holds them,
 * so the table reads as per-structure costs. With `--per N`, bytes are also divided by N (runs in the heap).
 *
 *   node --import tsx bench/tools/heapsnapshot-top.ts engine.heapsnapshot [--top 40] [--per 20000]
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

interface Snapshot {
  snapshot: {
    meta: { node_fields: string[]; node_types: [string[]]; edge_fields: string[]; edge_types: [string[]] };
  };
  nodes: number[];
  edges: number[];
  strings: string[];
}

const { values, positionals } = parseArgs({
  options: { top: { type: "string", default: "40" }, per: { type: "string" } },
  allowPositionals: true,
});
const file = positionals[0];
if (!file) throw new Error("usage: heapsnapshot-top.ts <file.heapsnapshot> [--top 40] [--per N]");

const snap = JSON.parse(readFileSync(file, "utf8")) as Snapshot;
const { meta } = snap.snapshot;
const NF = meta.node_fields.length;
const EF = meta.edge_fields.length;
const nType = meta.node_fields.indexOf("type");
const nName = meta.node_fields.indexOf("name");
const nSize = meta.node_fields.indexOf("self_size");
const nEdges = meta.node_fields.indexOf("edge_count");
const eType = meta.edge_fields.indexOf("type");
const eName = meta.edge_fields.indexOf("name_or_index");
const eTo = meta.edge_fields.indexOf("to_node");
const nodeTypes = meta.node_types[0];
const edgeTypes = meta.edge_types[0];
const { nodes, edges, strings } = snap;
const count = nodes.length / NF;

const typeOf = (i: number) => nodeTypes[nodes[i * NF + nType] as number] as string;
const nameOf = (i: number) => strings[nodes[i * NF + nName] as number] as string;
const edgeName = (e: number) => {
  const t = edgeTypes[edges[e + eType] as number];
  const v = edges[e + eName] as number;
  return t === "element" || t === "hidden" ? `[${t}]` : (strings[v] as string);
};

// First edge of each node, and for each node the first edge that retains it (its holder, as people would say).
const firstEdge = new Uint32Array(count + 1);
for (let i = 0, e = 0; i < count; i++) {
  firstEdge[i] = e;
  e += (nodes[i * NF + nEdges] as number) * EF;
}
firstEdge[count] = edges.length;
const holderEdge = new Int32Array(count).fill(-1);
const holderNode = new Int32Array(count).fill(-1);
for (let i = 0; i < count; i++) {
  for (let e = firstEdge[i] as number; e < (firstEdge[i + 1] as number); e += EF) {
    const t = edgeTypes[edges[e + eType] as number];
    if (t === "weak" || t === "shortcut") continue;
    const to = (edges[e + eTo] as number) / NF;
    if (holderEdge[to] === -1) {
      holderEdge[to] = e;
      holderNode[to] = i;
    }
  }
}

/** Property names of an object, in order: its shape. */
function shape(i: number): string {
  const props: string[] = [];
  for (let e = firstEdge[i] as number; e < (firstEdge[i + 1] as number) && props.length < 8; e += EF) {
    if (edgeTypes[edges[e + eType] as number] === "property") props.push(edgeName(e));
  }
  return props.join(",");
}

function holder(i: number): string {
  const e = holderEdge[i] as number;
  if (e < 0) return "?";
  const h = holderNode[i] as number;
  const hName = typeOf(h) === "object" ? nameOf(h) : typeOf(h);
  return `${hName}.${edgeName(e)}`;
}

function groupOf(i: number): string {
  const type = typeOf(i);
  const name = nameOf(i);
  if (type === "object" && name.startsWith("system /")) return `${name} ← ${holder(i)}`;
  if (type === "object") return name === "Object" ? `Object{${shape(i)}}` : `${name}{${shape(i)}}`;
  if (type === "string" || type === "concatenated string" || type === "sliced string") return `${type} ← ${holder(i)}`;
  if (type === "array" || type === "hidden" || type === "code") return `${type} ${name} ← ${holder(i)}`;
  if (type === "closure") return `closure ${name}`;
  return `${type} ${name}`;
}

const groups = new Map<string, { bytes: number; count: number }>();
let total = 0;
for (let i = 0; i < count; i++) {
  const size = nodes[i * NF + nSize] as number;
  total += size;
  const key = groupOf(i);
  const g = groups.get(key) ?? { bytes: 0, count: 0 };
  g.bytes += size;
  g.count++;
  groups.set(key, g);
}

const per = values.per ? Number(values.per) : undefined;
const MiB = 1024 * 1024;
console.log(
  `${file}: ${(total / MiB).toFixed(1)} MiB in ${count} nodes${per ? `, ${(total / per).toFixed(0)} B per run` : ""}`,
);
console.log(`| MiB | count | ${per ? "B per run | " : ""}what |`);
console.log(`|---|---|${per ? "---|" : ""}---|`);
const top = [...groups].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, Number(values.top));
for (const [key, g] of top) {
  const perRun = per ? `${(g.bytes / per).toFixed(1)} | ` : "";
  console.log(`| ${(g.bytes / MiB).toFixed(2)} | ${g.count} | ${perRun}${key.replaceAll("|", "\\|").slice(0, 160)} |`);
}
