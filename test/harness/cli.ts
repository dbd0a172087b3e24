import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

/** The built CLI the tests run (`npx turbo run build` first). */
export const CLI_BIN = fileURLToPath(new URL("../../cli/dist/bin.js", import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The child's environment: no TASKJET_* of the developer's shell, plus `env`. */
export function childEnv(env: Record<string, string> = {}): NodeJS.ProcessEnv {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("TASKJET_")));
  return { ...clean, ...env };
}

/** Runs `taskjet <args>` in `cwd` to completion, killing it after `timeoutMs`. */
export function runCli(
  args: string[],
  options: { cwd: string; env?: Record<string, string>; timeoutMs?: number; nodeArgs?: string[] },
): Promise<CliResult> {
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), CLI_BIN, ...args], {
    cwd: options.cwd,
    env: childEnv(options.env),
    stdio: "pipe",
  });
  return collectOutput(child, options.timeoutMs ?? 20_000, args);
}

/** Collects a child's output until it exits; kills it and rejects after `timeoutMs`. */
export function collectOutput(child: ChildProcess, timeoutMs: number, args: string[]): Promise<CliResult> {
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`taskjet ${args.join(" ")} did not exit within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.once("error", reject);
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}
