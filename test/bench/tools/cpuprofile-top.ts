/**
 * Summarizes `.cpuprofile` files (Chrome/V8 format, from `--cpu-prof` or the inspector): self time aggregated by
 * function + url (+ line), top entries, and self time per package (node_modules/<pkg>, node: internals, our code).
 *
 *   node --import tsx bench/tools/cpuprofile-top.ts /tmp/tj-prof/engine.cpuprofile [--top 25] [--by url]
 */
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { parseArgs } from "node:util";
import { packageOf, shortUrl } from "./profile-names.js";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const { values, positionals } = parseArgs({
  options: {
    top: { type: "string", default: "25" },
    "by-package": { type: "boolean", default: true },
    /** Also list inclusive (self + callees) time of functions whose "name  location" matches this regex. */
    inclusive: { type: "string" },
  },
  allowPositionals: true,
});

for (const file of positionals) {
  const p = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i] as number;
    self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  const totalUs = p.endTime - p.startTime;
  let idleUs = 0;
  const byFn = new Map<string, number>();
  const byPkg = new Map<string, number>();
  for (const [id, us] of self) {
    const n = byId.get(id);
    if (!n) continue;
    const { functionName, url, lineNumber } = n.callFrame;
    if (functionName === "(idle)") {
      idleUs += us;
      continue;
    }
    const key = `${functionName || "(anonymous)"}  ${shortUrl(url)}${url ? `:${lineNumber + 1}` : ""}`;
    byFn.set(key, (byFn.get(key) ?? 0) + us);
    const pkg =
      functionName === "(garbage collector)" ? "(gc)" : functionName === "(program)" ? "(program)" : packageOf(url);
    byPkg.set(pkg, (byPkg.get(pkg) ?? 0) + us);
  }
  const busyUs = totalUs - idleUs;
  const pct = (us: number) => `${((us / busyUs) * 100).toFixed(1)} %`;
  console.log(
    `\n### ${basename(file)}: ${(totalUs / 1e6).toFixed(2)} s profiled, ${(busyUs / 1e6).toFixed(2)} s not idle`,
  );
  console.log("\n| self ms | % of busy | function  location |\n|---|---|---|");
  for (const [k, us] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) {
    console.log(`| ${(us / 1000).toFixed(0)} | ${pct(us)} | \`${k}\` |`);
  }
  if (values.inclusive) {
    // inclusive time: each sample counts once for every distinct matching function on its stack
    const parent = new Map<number, number>();
    for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    const keyOf = (n: ProfileNode) =>
      `${n.callFrame.functionName || "(anonymous)"}  ${shortUrl(n.callFrame.url)}${n.callFrame.url ? `:${n.callFrame.lineNumber + 1}` : ""}`;
    const re = new RegExp(values.inclusive);
    const incl = new Map<string, number>();
    for (const [id, us] of self) {
      const seen = new Set<string>();
      for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
        const n = byId.get(cur);
        if (!n) break;
        const k = keyOf(n);
        if (!seen.has(k) && re.test(k)) {
          seen.add(k);
          incl.set(k, (incl.get(k) ?? 0) + us);
        }
      }
    }
    console.log("\n| inclusive ms | % of busy | function  location |\n|---|---|---|");
    for (const [k, us] of [...incl].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) {
      console.log(`| ${(us / 1000).toFixed(0)} | ${pct(us)} | \`${k}\` |`);
    }
  }
  if (values["by-package"]) {
    console.log("\n| self ms | % of busy | package |\n|---|---|---|");
    for (const [k, us] of [...byPkg].sort((a, b) => b[1] - a[1]).slice(0, 15)) {
      console.log(`| ${(us / 1000).toFixed(0)} | ${pct(us)} | ${k} |`);
    }
  }
}
