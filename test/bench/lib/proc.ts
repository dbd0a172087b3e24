/**
 * The orchestrator side: starts a benchmark process (`node --import tsx <entry>`) with an IPC channel and sends it
 * requests. Node flags per process make `--max-semi-space-size` and `--cpu-prof` easy to apply to one role only.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const testDir = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

export class Proc {
  private seq = 0;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  readonly exited: Promise<number | null>;
  readonly ready: Promise<void>;

  private constructor(
    readonly role: string,
    private readonly child: ChildProcess,
  ) {
    let onReady: () => void = () => undefined;
    this.ready = new Promise<void>((r) => {
      onReady = r;
    });
    child.on("message", (m: { ready?: boolean; id?: number; ok?: boolean; result?: unknown; error?: string }) => {
      if (m.ready) return onReady();
      const p = this.pending.get(m.id as number);
      if (!p) return;
      this.pending.delete(m.id as number);
      if (m.ok) p.resolve(m.result);
      else p.reject(new Error(`${role}: ${m.error}`));
    });
    this.exited = new Promise((resolve) =>
      child.on("exit", (code) => {
        for (const p of this.pending.values()) p.reject(new Error(`${role} exited with ${code}`));
        this.pending.clear();
        resolve(code);
      }),
    );
  }

  /** Starts `bench/procs/<role>.ts`; `nodeFlags` go before `--import tsx`. */
  static async start(role: string, nodeFlags: string[], env: Record<string, string> = {}): Promise<Proc> {
    const entry = join(testDir, "bench", "procs", `${role}.ts`);
    const child = spawn(process.execPath, [...nodeFlags, "--import", "tsx", entry], {
      cwd: testDir,
      env: { ...process.env, ...env },
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    const proc = new Proc(role, child);
    const failed = proc.exited.then((code) => {
      throw new Error(`${role} exited with ${code} before it was ready`);
    });
    await Promise.race([proc.ready, failed]);
    failed.catch(() => undefined);
    return proc;
  }

  get pid(): number {
    return this.child.pid as number;
  }

  request<T = unknown>(cmd: string, args: Record<string, unknown> = {}, timeoutMs = 600_000): Promise<T> {
    // Sending on the channel of a process that is gone throws an unhandled 'error' event.
    if (!this.child.connected) return Promise.reject(new Error(`${this.role}: not running`));
    const id = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.role}: ${cmd} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.child.send({ id, cmd, args });
    });
  }

  /** Sends `signal` and waits for the exit: SIGKILL is a crash, nothing flushed, no lease given up. */
  async kill(signal: NodeJS.Signals): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill(signal);
    await this.exited;
  }

  /** Asks it to exit; kills it (by its pid) if it does not within `ms`. */
  async exit(ms = 20_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    await this.request("exit", {}, ms).catch(() => undefined);
    const timer = setTimeout(() => this.child.kill("SIGKILL"), ms);
    await this.exited;
    clearTimeout(timer);
  }
}
