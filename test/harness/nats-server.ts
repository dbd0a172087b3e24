import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** The nats-server binary: Debian's package, or one on PATH. */
export const NATS_SERVER =
  process.env.NATS_SERVER_BIN ?? (existsSync("/usr/sbin/nats-server") ? "/usr/sbin/nats-server" : "nats-server");

/** A nats-server process started for a test. */
export interface NatsServer {
  url: string;
  port: number;
  pid: number;
  storeDir: string;
  /** Stops it (SIGTERM, then SIGKILL) and waits for the process to exit. */
  stop(): Promise<void>;
  /** Sends a signal and waits for the exit. */
  kill(signal: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same port and store (after `kill`). */
  restart(): Promise<void>;
}

/** What is running and not stopped yet: single servers and clusters (`nats-cluster.ts`) alike. */
export const running = new Set<{ stop(): Promise<void> }>();

/**
 * Starts a single nats-server with JetStream on a random loopback port and a temporary store. `max_payload` is raised
 * to 2 MiB so the default 1 MiB input limit is what binds. `config` adds lines to the server's configuration (an
 * `authorization` or `tls` block, an `include`); it is given the server's own temporary directory, where it may write
 * the files those lines name (certificates, included permission files), removed with the server.
 */
export async function startNatsServer(
  options: { maxPayload?: string; config?: (dir: string) => string | Promise<string> } = {},
): Promise<NatsServer> {
  const dir = await mkdtemp(join(tmpdir(), "tj-nats-"));
  const storeDir = join(dir, "js");
  await mkdir(storeDir);
  let port = -1;
  const configFile = join(dir, "server.conf");
  const extra = options.config ? await options.config(dir) : "";
  const writeConfig = () =>
    writeFile(
      configFile,
      [
        `listen: "127.0.0.1:${port}"`,
        `max_payload: ${options.maxPayload ?? "2MB"}`,
        `jetstream { store_dir: "${storeDir}" }`,
        extra,
      ].join("\n"),
    );
  await writeConfig();
  let child = await launch(configFile, dir);
  port = await readPort(dir, child);
  await writeConfig(); // restarts reuse the port
  const server: NatsServer = {
    url: `nats://127.0.0.1:${port}`,
    port,
    get pid() {
      return child.pid as number;
    },
    storeDir,
    async stop() {
      running.delete(server);
      await stopProcess(child, "SIGTERM");
      await rm(dir, { recursive: true, force: true });
    },
    async kill(signal) {
      await stopProcess(child, signal);
    },
    async restart() {
      child = await launch(configFile, dir);
      await readPort(dir, child);
    },
  };
  running.add(server);
  return server;
}

/** Stops every server still running (a safety net for crashed tests). */
export async function stopAllNatsServers(): Promise<void> {
  await Promise.all([...running].map((s) => s.stop()));
}

/** Every nats-server process alive: killed when the test process exits, whatever a test left behind. */
const children = new Set<ChildProcess>();
process.once("exit", () => {
  for (const c of children) c.kill("SIGKILL");
});

/** Starts nats-server on `configFile`, its ports file in `dir`; `env` is added to ours (for `$VAR`s in the config). */
export async function launch(configFile: string, dir: string, env?: Record<string, string>): Promise<ChildProcess> {
  for (const f of await readdir(dir)) if (f.endsWith(".ports")) await rm(join(dir, f));
  const child = spawn(NATS_SERVER, ["-c", configFile, "--ports_file_dir", dir], {
    stdio: ["ignore", "ignore", "pipe"],
    ...(env ? { env: { ...process.env, ...env } } : {}),
  });
  children.add(child);
  child.once("exit", () => children.delete(child));
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
    if (stderr.length > 20_000) stderr = stderr.slice(-10_000);
  });
  child.once("exit", (code) => {
    if (code && code !== 0) (child as ChildProcess & { lastStderr?: string }).lastStderr = stderr;
  });
  return child;
}

/** The ports file's content, or undefined while nats-server is still writing it (seen empty once in CI). */
function parsePorts(text: string): { nats?: string[] } | undefined {
  try {
    return JSON.parse(text) as { nats?: string[] };
  } catch {
    return undefined;
  }
}

/** Waits for the ports file nats-server writes once it listens; its client port. */
export async function readPort(dir: string, child: ChildProcess): Promise<number> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      const stderr = (child as ChildProcess & { lastStderr?: string }).lastStderr ?? "";
      throw new Error(`nats-server exited with ${child.exitCode}${stderr ? `: ${stderr.trim().slice(-2000)}` : ""}`);
    }
    const file = (await readdir(dir)).find((f) => f.endsWith(".ports"));
    if (file) {
      const url = parsePorts(await readFile(join(dir, file), "utf8"))?.nats?.[0];
      if (url) return Number(new URL(url).port);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error("nats-server did not report its port within 10 s");
}

/** Sends `signal` (SIGKILL after 5 s) and waits for the exit. */
export async function stopProcess(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(timer);
}
