/**
 * Runs one scenario's process: its output goes to a log file and, as it comes, to our stderr (a full run is quiet
 * for minutes otherwise). It runs in a process group of its own, so a timeout or Ctrl-C ends its servers and workers
 * too, by the group's id and nothing broader.
 */
import { spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import type { Invocation } from "./scenarios.js";

export interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  wallS: number;
  timedOut: boolean;
  /** Ctrl-C reached the suite while this ran: the suite stops after it. */
  interrupted: boolean;
}

export async function runLogged(inv: Invocation, cwd: string, logFile: string, timeoutMs: number): Promise<Outcome> {
  const log = createWriteStream(logFile);
  log.write(`$ ${inv.cmd} ${inv.args.join(" ")}\n`);
  const t0 = performance.now();
  const child = spawn(inv.cmd, inv.args, {
    cwd,
    env: { ...process.env, ...inv.env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  for (const stream of [child.stdout, child.stderr]) {
    stream.on("data", (d: Buffer) => {
      log.write(d);
      process.stderr.write(d);
    });
  }
  const killGroup = (signal: NodeJS.Signals) => {
    try {
      if (child.pid) process.kill(-child.pid, signal);
    } catch {
      // already gone
    }
  };
  let timedOut = false;
  let hardKill: NodeJS.Timeout | undefined;
  const timer = setTimeout(() => {
    timedOut = true;
    process.stderr.write(`[suite] timed out after ${timeoutMs / 60_000} min: stopping process group ${child.pid}\n`);
    killGroup("SIGTERM");
    hardKill = setTimeout(() => killGroup("SIGKILL"), 15_000);
  }, timeoutMs);
  let interrupted = false;
  const onInterrupt = () => {
    interrupted = true;
    killGroup("SIGTERM");
  };
  process.once("SIGINT", onInterrupt);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.once("close", (c, s) => resolve([c, s])),
  );
  clearTimeout(timer);
  clearTimeout(hardKill);
  process.off("SIGINT", onInterrupt);
  await new Promise<void>((r) => log.end(r));
  return { code, signal, wallS: (performance.now() - t0) / 1000, timedOut, interrupted };
}
