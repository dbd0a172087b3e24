/**
 * Summarizes sampling heap profiles (`.heapprofile`, from `throughput.ts --alloc-prof`, which samples collected
 * objects too): bytes allocated by function + location (self), and by package. Divide by the tasks run in the
 * profiled rep for bytes per task.
 *
 *   node --import tsx bench/tools/heapprofile-top.ts /tmp/tj-prof/worker.heapprofile [--top 30] [--tasks 40000]
 */
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { parseArgs } from "node:util";
import { packageOf, shortUrl } from "./profile-names.js";

interface HeapNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: HeapNode[];
}

const { values, positionals } = parseArgs({
  options: { top: { type: "string", default: "30" }, tasks: { type: "string" } },
  allowPositionals: true,
});

for (const file of positionals) {
  const { head } = JSON.parse(readFileSync(file, "utf8")) as { head: HeapNode };
  const byFn = new Map<string, number>();
  const byPkg = new Map<string, number>();
  let total = 0;
  const visit = (n: HeapNode) => {
    if (n.selfSize > 0) {
      const { functionName, url, lineNumber } = n.callFrame;
      const key = `${functionName || "(anonymous)"}  ${shortUrl(url)}${url ? `:${lineNumber + 1}` : ""}`;
      byFn.set(key, (byFn.get(key) ?? 0) + n.selfSize);
      const pkg = packageOf(url);
      byPkg.set(pkg, (byPkg.get(pkg) ?? 0) + n.selfSize);
      total += n.selfSize;
    }
    for (const c of n.children) visit(c);
  };
  visit(head);
  const tasks = values.tasks ? Number(values.tasks) : undefined;
  const size = (b: number) => (tasks ? `${(b / tasks).toFixed(0)} B/task` : `${(b / 1024 / 1024).toFixed(1)} MiB`);
  const pct = (b: number) => `${((b / total) * 100).toFixed(1)} %`;
  console.log(`\n### ${basename(file)}: ${size(total)} allocated (sampled)`);
  console.log("\n| allocated | share | function  location |\n|---|---|---|");
  for (const [k, b] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) {
    console.log(`| ${size(b)} | ${pct(b)} | \`${k}\` |`);
  }
  console.log("\n| allocated | share | package |\n|---|---|---|");
  for (const [k, b] of [...byPkg].sort((a, b) => b[1] - a[1])) console.log(`| ${size(b)} | ${pct(b)} | ${k} |`);
}
