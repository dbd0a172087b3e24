import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { eventually } from "./fixtures.js";

const BIN = fileURLToPath(new URL("../../cli/dist/bin.js", import.meta.url));

/** `taskjet engine` as its own process, so it can be killed for real. */
export async function startEngineProcess(
  url: string,
  namespace: string,
): Promise<{ child: ChildProcess; startedIn: number }> {
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
  return { child, startedIn: Date.now() - t0 };
}

export function kill(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.kill(signal);
  });
}
