/**
 * Where nats-server spends its CPU: samples running nats-server processes with Linux `perf` and names Go functions
 * from the binary's own `.gopclntab` (Debian's nats-server is stripped of ELF symbols, so `perf report` alone shows
 * bare addresses). Prints self and inclusive shares, like `cpuprofile-top.ts` does for the Node processes.
 *
 *   node --import tsx bench/tools/nats-server-perf.ts --pids 1234,1235,1236 --seconds 10 [--top 40]
 *   node --import tsx bench/tools/nats-server-perf.ts --port 14222 --seconds 10     # the server on that client port
 *   ... --callers 'Debugf' [--depth 3]           # also: which functions call the matching ones (innermost match)
 *
 * Start it while a bench runs (e.g. `throughput.ts --n 100000`, or `--cluster` with every node's pid). Needs `perf`
 * (Debian's linux-perf) and root or kernel.perf_event_paranoid ≤ 1. Go keeps frame pointers, so stacks are whole.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    pids: { type: "string" },
    port: { type: "string" },
    seconds: { type: "string", default: "10" },
    top: { type: "string", default: "40" },
    freq: { type: "string", default: "999" },
    /** Also list who calls the functions whose name matches this regex (the frame above each match). */
    callers: { type: "string" },
    /** How many frames above each match `--callers` lists (outermost first). */
    depth: { type: "string", default: "1" },
  },
});

/** Function entry addresses (ascending) and names, read from a Go 1.18+ binary's `.gopclntab`. */
function goSymbols(binary: string): { addrs: number[]; names: string[]; loadBias: number } {
  const b = readFileSync(binary);
  const shoff = Number(b.readBigUInt64LE(0x28));
  const shentsize = b.readUInt16LE(0x3a);
  const shnum = b.readUInt16LE(0x3c);
  const shstrndx = b.readUInt16LE(0x3e);
  const section = (i: number) => {
    const at = shoff + i * shentsize;
    return {
      name: b.readUInt32LE(at),
      offset: Number(b.readBigUInt64LE(at + 24)),
      size: Number(b.readBigUInt64LE(at + 32)),
    };
  };
  const strtab = section(shstrndx).offset;
  const cstr = (buf: Buffer, at: number) => buf.toString("latin1", at, buf.indexOf(0, at));
  let pcln: Buffer | undefined;
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    if (cstr(b, strtab + s.name) === ".gopclntab") pcln = b.subarray(s.offset, s.offset + s.size);
  }
  if (!pcln) throw new Error(`${binary} has no .gopclntab: not a Go binary`);
  const magic = pcln.readUInt32LE(0);
  if (magic !== 0xfffffff0 && magic !== 0xfffffff1) throw new Error(`unknown pclntab magic ${magic.toString(16)}`);
  const word = (i: number) => Number(pcln.readBigUInt64LE(8 + i * 8));
  const nfunc = word(0);
  const textStart = word(2);
  const funcnameOff = word(3);
  const functab = pcln.subarray(word(7));
  const entries: [number, string][] = [];
  for (let i = 0; i < nfunc; i++) {
    const entry = functab.readUInt32LE(i * 8);
    const funcOff = functab.readUInt32LE(i * 8 + 4);
    const nameOff = functab.readInt32LE(funcOff + 4);
    entries.push([textStart + entry, cstr(pcln, funcnameOff + nameOff)]);
  }
  entries.sort((x, y) => x[0] - y[0]);
  // perf prints a user-space address relative to the mapped file: add the first PT_LOAD's vaddr - offset back.
  const phoff = Number(b.readBigUInt64LE(0x20));
  const phentsize = b.readUInt16LE(0x36);
  const phnum = b.readUInt16LE(0x38);
  let loadBias = 0;
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (b.readUInt32LE(at) !== 1) continue; // PT_LOAD
    loadBias = Number(b.readBigUInt64LE(at + 16)) - Number(b.readBigUInt64LE(at + 8));
    break;
  }
  return { addrs: entries.map((e) => e[0]), names: entries.map((e) => e[1]), loadBias };
}

function pidsOnPort(port: string): number[] {
  const out = execFileSync("ss", ["-ltnpH", `sport = :${port}`], { encoding: "utf8" });
  return [...out.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
}

const pids = values.pids ? values.pids.split(",").map(Number) : values.port ? pidsOnPort(values.port) : [];
if (pids.length === 0) throw new Error("give --pids or --port of a running nats-server");
const binary = readlinkSync(`/proc/${pids[0]}/exe`);
const syms = goSymbols(binary);
const dir = mkdtempSync(join(tmpdir(), "tj-nats-perf-"));
const data = join(dir, "perf.data");
try {
  execFileSync(
    "perf",
    ["record", "-F", values.freq, "-g", "-p", pids.join(","), "-o", data, "--", "sleep", values.seconds],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  const script = execFileSync("perf", ["script", "-i", data, "-F", "ip,sym"], {
    encoding: "utf8",
    maxBuffer: 1 << 30,
    stdio: ["ignore", "pipe", "ignore"],
  });
  report(script);
} finally {
  rmSync(dir, { recursive: true, force: true });
}

function nameOf(ip: string, kernelSym: string): string {
  const a = Number.parseInt(ip, 16);
  if (a >= 2 ** 63) return `[kernel] ${kernelSym}`;
  const at = a + syms.loadBias;
  let lo = 0;
  let hi = syms.addrs.length - 1;
  if (at < (syms.addrs[0] ?? 0)) return "?";
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((syms.addrs[mid] as number) <= at) lo = mid;
    else hi = mid - 1;
  }
  return (syms.names[lo] as string).replace(/^github.com\/nats-io\/nats-server\/(v2\/)?server\./, "");
}

function report(script: string): void {
  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  const callers = new Map<string, number>();
  const calleeRe = values.callers ? new RegExp(values.callers) : undefined;
  let samples = 0;
  for (const block of script.split("\n\n")) {
    const frames = block
      .split("\n")
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f[0] && /^[0-9a-f]+$/.test(f[0]))
      .map((f) => nameOf(f[0] as string, f[1] ?? "?"));
    if (frames.length === 0) continue;
    samples++;
    self.set(frames[0] as string, (self.get(frames[0] as string) ?? 0) + 1);
    for (const f of new Set(frames)) incl.set(f, (incl.get(f) ?? 0) + 1);
    const at = calleeRe ? frames.findIndex((f) => calleeRe.test(f)) : -1;
    if (at >= 0) {
      const above = frames.slice(at + 1, at + 1 + Number(values.depth)).reverse();
      const k = `${above.length > 0 ? above.join(" → ") : "(top)"} → ${frames[at]}`;
      callers.set(k, (callers.get(k) ?? 0) + 1);
    }
  }
  const top = Number(values.top);
  const table = (title: string, m: Map<string, number>) => {
    console.log(`\n| ${title} | function |\n|---|---|`);
    for (const [k, n] of [...m].sort((x, y) => y[1] - x[1]).slice(0, top)) {
      console.log(`| ${((n / samples) * 100).toFixed(1)} % | \`${k}\` |`);
    }
  };
  console.log(`### nats-server ${pids.join(",")} (${binary}): ${samples} samples over ${values.seconds} s`);
  table("self", self);
  table("inclusive", incl);
  if (calleeRe) table("caller → callee", callers);
}
