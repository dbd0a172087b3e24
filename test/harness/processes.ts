import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { eventually } from "./fixtures.js";

const BIN = fileURLToPath(new URL("../../cli/dist/bin.js", import.meta.url));
const WORKER = fileURLToPath(new URL("./worker-process.ts", import.meta.url));

/** A worker (`worker-process.ts`) in a child process, so it can be killed for real; resolves once registered. */
export async function startWorkerProcess(
  url: string,
  namespace: string,
  task: string,
  slots: number,
  taskMs: number,
  mode?: "release" | "durable" | "child",
): Promise<{ child: ChildProcess; workerId: string; output: () => string }> {
  const args = [WORKER, url, namespace, task, String(slots), String(taskMs), ...(mode ? [mode] : [])];
  const child = spawn(process.execPath, ["--import", "tsx", ...args], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const workerId = await eventually(() => /ready (\S+)/.exec(out)?.[1], 20_000, "worker ready");
  return { child, workerId, output: () => out };
}

/** `taskjet engine` as its own process, so it can be killed for real. */
export async function startEngineProcess(
  url: string,
  namespace: string,
): Promise<{ child: ChildProcess; startedIn: number; output: () => string }> {
  const t0 = Date.now();
  const child = spawn(
    process.execPath,
    [BIN, "engine", "--nats", url, "--namespace", namespace, "--log-format", "json"],
    {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, TASKJET_NATS_URL: "", TASKJET_NAMESPACE: "", TASKJET_HTTP: "off" },
    },
  );
  let out = "";
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  await eventually(() => (out.includes("engine started") ? true : undefined), 30_000, "engine start");
  return { child, startedIn: Date.now() - t0, output: () => out };
}

export function kill(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.kill(signal);
  });
}
