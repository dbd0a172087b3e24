/**
 * What a benchmark ran on and against: the git state, the machine, the versions of everything measured, and how the
 * servers were configured. Numbers without these cannot be compared, so every report carries them.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { cpus, loadavg, release, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { NATS_SERVER } from "../../harness/nats-server.js";
import { benchInput } from "./clock.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

/** The 1, 5 and 15 minute load averages, as `uptime` prints them. */
export function load(): string {
  return loadavg()
    .map((x) => x.toFixed(2))
    .join(" ");
}

/** HEAD and the uncommitted changes under `paths` (the whole tree when none): others edit it concurrently. */
export function gitState(paths: string[] = []): { head: string; dirty: string[] } {
  const git = (...args: string[]) => execFileSync("git", args, { cwd: root, encoding: "utf8" }).trim();
  try {
    return {
      head: git("rev-parse", "--short", "HEAD"),
      dirty: git("status", "--porcelain", "--", ...paths)
        .split("\n")
        .map((l) => l.trim())
        .filter(Boolean),
    };
  } catch {
    return { head: "unknown", dirty: [] };
  }
}

/** The first line a command prints, or why it could not run (a missing peer server is a condition too). */
function version(cmd: string, args: string[]): string {
  try {
    return (
      execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })
        .split("\n")[0]
        ?.trim() ?? ""
    );
  } catch (err) {
    return `unavailable (${(err as Error).message.split("\n")[0]})`;
  }
}

function postgresVersion(): string {
  const base = "/usr/lib/postgresql";
  const versions = existsSync(base) ? readdirSync(base).sort() : [];
  const latest = versions[versions.length - 1];
  return latest ? version(join(base, latest, "bin", "postgres"), ["--version"]) : "not installed";
}

/**
 * JetStream's fsync interval: no configuration the benches use sets `sync_interval`, so nats-server's default holds
 * (writes reach the page cache at once, the disk every 2 minutes). Checked rather than assumed, so a file that starts
 * setting it changes the report.
 */
function syncInterval(): string {
  const files = [join(root, "test", "harness", "nats-server.ts"), join(root, "deploy", "nats", "nats-1.conf")];
  const setting = files.find((f) => existsSync(f) && /sync_interval/.test(readFileSync(f, "utf8")));
  return setting
    ? `set in ${setting.slice(root.length + 1)}`
    : "nats-server default: fsync every 2 min (not set by harness/nats-server.ts, deploy/nats/, or the peers' run-all.sh)";
}

/** Newest modification time under `dir` (files only), in ms; 0 when absent. */
function newest(dir: string): number {
  if (!existsSync(dir)) return 0;
  let max = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) max = Math.max(max, statSync(join(entry.parentPath, entry.name)).mtimeMs);
  }
  return max;
}

export interface Conditions {
  date: string;
  git: { head: string; dirty: string[] };
  /** Packages whose sources changed after their `dist` was built: the benches run `dist`, not the sources. */
  staleDist: string[];
  node: string;
  natsServer: string;
  redis: string;
  postgres: string;
  machine: { cpus: number; cpuModel: string; memGiB: number; kernel: string };
  syncInterval: string;
  payloadBytes: number;
  loadAtStart: string;
}

export function conditions(): Conditions {
  const cpuModel = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "unknown";
  return {
    date: new Date().toISOString(),
    git: gitState(),
    staleDist: ["schemas", "engine", "sdk"].filter((p) => newest(join(root, p, "src")) > newest(join(root, p, "dist"))),
    node: process.version,
    natsServer: version(NATS_SERVER, ["--version"]).replace(/^nats-server:\s*/, ""),
    // "Redis server v=7.0.15 sha=... malloc=..." says more than a reader needs
    redis: version("redis-server", ["--version"]).replace(/^Redis server v=(\S+).*$/, "$1"),
    postgres: postgresVersion(),
    machine: {
      cpus: cpus().length,
      cpuModel,
      memGiB: Math.round(totalmem() / 2 ** 30),
      kernel: release(),
    },
    syncInterval: syncInterval(),
    payloadBytes: Buffer.byteLength(JSON.stringify(benchInput(12345, true, 123456789.123))),
    loadAtStart: load(),
  };
}
