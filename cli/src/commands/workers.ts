import type { WorkerRegistration } from "@taskjet/sdk";
import type { Command } from "commander";
import type { ConnectionFlags } from "../config.js";
import { ExitCodes } from "../errors.js";
import { formatAgo, formatTable, jsonLine, type Style } from "../output.js";
import { type CliContext, connectionOptions, withClient } from "./common.js";

/** A worker as `workers list --json` prints it: its registration, and how old its last heartbeat is. */
export type ListedWorker = WorkerRegistration & { heartbeatAgeMs: number };

/** `taskjet workers list`: the live workers of a namespace, from their registrations in `TJ_WORKERS`. */
export function registerWorkers(program: Command, ctx: CliContext): void {
  const cmd = program.command("workers").description("live workers: slots, labels, heartbeats, what they run");

  const list = cmd
    .command("list")
    .description("the namespace's live workers, as of each one's last heartbeat")
    .option("--json", "one JSON object per line (the registration, plus heartbeatAgeMs)");
  connectionOptions(list).action(async (flags: ConnectionFlags & { json?: boolean }) => {
    ctx.exitCode = await withClient(flags, ctx, async (tj, conn) => {
      const now = Date.now();
      const workers: ListedWorker[] = (await tj.workers.list()).map((w) => ({
        ...w,
        heartbeatAgeMs: Math.max(0, now - Date.parse(w.heartbeatAt)),
      }));
      if (flags.json) for (const w of workers) ctx.io.out(jsonLine(w));
      else if (workers.length === 0) ctx.io.out(`no live workers in namespace ${conn.namespace}\n`);
      else ctx.io.out(`${workersTable(workers, ctx.style, now)}\n`);
      return ExitCodes.ok;
    });
  });
}

/** Heartbeats come every third of the TTL: one older than this missed two or more. */
const STALE_HEARTBEAT_MS = 10_000;

function workersTable(workers: ListedWorker[], style: Style, now: number): string {
  return formatTable(
    ["NAME", "ID", "SLOTS", "DURABLE", "HEARTBEAT", "RUNNING", "LABELS"],
    workers.map((w) => {
      const heartbeat = formatAgo(w.heartbeatAt, now);
      return [
        w.draining ? `${w.name} ${style.warn("(draining)")}` : w.name,
        w.workerId,
        slotsCell(w.usedSlots, w.slots, style),
        w.durableSlots > 0 ? slotsCell(w.usedDurableSlots, w.durableSlots, style) : "-",
        w.heartbeatAgeMs > STALE_HEARTBEAT_MS ? style.warn(heartbeat) : heartbeat,
        runningCell(w.runningTasks, style),
        Object.entries(w.labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(" ") || "-",
      ];
    }),
  );
}

/** `3/10`, yellow when full. */
function slotsCell(used: number, total: number, style: Style): string {
  const text = `${used}/${total}`;
  return used >= total ? style.warn(text) : text;
}

/** `charge (2), hello (1)`, busiest first, or `idle`. */
function runningCell(running: Record<string, number>, style: Style): string {
  const entries = Object.entries(running).sort(([a, x], [b, y]) => y - x || a.localeCompare(b));
  if (entries.length === 0) return style.dim("idle");
  return entries.map(([task, n]) => `${task} (${n})`).join(", ");
}
