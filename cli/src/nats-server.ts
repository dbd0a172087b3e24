import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";

/** A nats-server child process started by `taskjet dev`. */
export interface DevNatsServer {
  url: string;
  port: number;
  pid: number;
  configFile: string;
  logFile: string;
  storeDir: string;
  /** Resolves when the process exits, for whatever reason. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, SIGKILL after `graceMs`; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILL without waiting. */
  kill(): void;
}

/** Options of {@link startDevNatsServer}. */
export interface DevNatsServerOptions {
  bin: string;
  /** State directory: the config, the log and the JetStream store (`<dir>/nats`) go here. */
  dir: string;
  /** The port, or "any" for one the OS picks. */
  port: number | "any";
  /** @default "2MB" so the SDK's 1 MiB input limit is the one that binds. */
  maxPayload?: string;
}

const READY_TIMEOUT_MS = 15_000;

/**
 * Starts a single-node nats-server with JetStream on 127.0.0.1 and resolves once it accepts connections. It runs in
 * its own process group, so a Ctrl-C in the terminal reaches only `taskjet dev`, which stops the engine first and
 * then this server.
 */
export async function startDevNatsServer(options: DevNatsServerOptions): Promise<DevNatsServer> {
  const storeDir = join(options.dir, "nats");
  const configFile = join(options.dir, "nats-server.conf");
  const logFile = join(options.dir, "nats-server.log");
  await mkdir(storeDir, { recursive: true });
  for (const f of await readdir(options.dir)) if (f.endsWith(".ports")) await rm(join(options.dir, f), { force: true });
  await writeFile(
    configFile,
    [
      "# Written by `taskjet dev`: a single local node for development.",
      `listen: "127.0.0.1:${options.port === "any" ? -1 : options.port}"`,
      `max_payload: ${options.maxPayload ?? "2MB"}`,
      `jetstream { store_dir: ${JSON.stringify(storeDir)} }`,
      `log_file: ${JSON.stringify(logFile)}`,
      "",
    ].join("\n"),
  );
  const child = spawn(options.bin, ["-c", configFile, "--ports_file_dir", options.dir], {
    stdio: ["ignore", "ignore", "pipe"],
    detached: true,
  });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });
  const spawnError = new Promise<Error>((resolve) => child.once("error", resolve));
  let port: number;
  try {
    port = await readPort(options.dir, child, exited, spawnError);
  } catch (err) {
    const log = await readFile(logFile, "utf8").catch(() => "");
    await stopChild(child, exited, 2000);
    const tail = `${stderr}${log}`.trim().split("\n").slice(-5).join("\n");
    throw new Error(`${(err as Error).message}${tail ? `\n${tail}` : ""}`, { cause: err });
  }
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    pid: child.pid as number,
    configFile,
    logFile,
    storeDir,
    exited,
    stop: (graceMs = 10_000) => stopChild(child, exited, graceMs),
    kill: () => {
      child.kill("SIGKILL");
    },
  };
}

/** Reads the port from the ports file nats-server writes once it listens. */
async function readPort(
  dir: string,
  child: ChildProcess,
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>,
  spawnError: Promise<Error>,
): Promise<number> {
  let failure: Error | undefined;
  exited.then(
    ({ code, signal }) => {
      failure ??= new Error(`nats-server exited during start (${signal ?? `code ${code}`})`);
    },
    () => undefined,
  );
  spawnError.then(
    (err) => {
      failure ??= new Error(`cannot start nats-server: ${err.message}`);
    },
    () => undefined,
  );
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (failure) throw failure;
    const file = (await readdir(dir)).find((f) => f === `nats-server_${child.pid}.ports`);
    if (file) {
      try {
        const ports = JSON.parse(await readFile(join(dir, file), "utf8")) as { nats?: string[] };
        const url = ports.nats?.[0];
        if (url) return Number(new URL(url).port);
      } catch {
        // written but not complete yet: read again
      }
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`nats-server did not start listening within ${READY_TIMEOUT_MS / 1000} s`);
}

async function stopChild(child: ChildProcess, exited: Promise<unknown>, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}

/** True when nothing listens on 127.0.0.1:`port`. */
export function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen({ port, host: "127.0.0.1", exclusive: true }, () => server.close(() => resolve(true)));
  });
}
