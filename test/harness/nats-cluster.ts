import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { launch, readPort, running, stopProcess } from "./nats-server.js";

/** The production cluster configuration the tests run (deploy/README.md). */
export const DEPLOY_NATS_DIR = fileURLToPath(new URL("../../deploy/nats/", import.meta.url));

/** One node of a test cluster. */
export interface NatsNode {
  /** `server_name` from its deploy file (`nats-1` ...): what stream infos name as leader and replicas. */
  readonly name: string;
  readonly url: string;
  readonly port: number;
  /** Monitoring port (`/jsz`, `/healthz`). */
  readonly monitorPort: number;
  readonly pid: number;
  readonly storeDir: string;
  /** False between `kill` and `restart`. */
  readonly up: boolean;
  /** Sends a signal and waits for the exit. */
  kill(signal: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same ports and store; resolves once it is back in the cluster. */
  restart(): Promise<void>;
}

/** Three nats-server processes started from `deploy/nats/`. */
export interface NatsCluster {
  readonly nodes: readonly NatsNode[];
  /** Every node's client URL, for clients that must survive the loss of any one node. */
  readonly urls: string[];
  /** Values given to the `$VAR`s of the configuration (passwords), by name. */
  readonly env: Readonly<Record<string, string>>;
  /** The node with this `server_name`. */
  node(name: string): NatsNode;
  /** Stops every node (SIGTERM, then SIGKILL) and removes the stores. */
  stop(): Promise<void>;
}

export interface NatsClusterOptions {
  /** Where the node files (`nats-<n>.conf`) and their includes are. @default deploy/nats */
  configDir?: string;
  /**
   * Clients without credentials connect as this user (`no_auth_user`), the one thing added to the deploy files; false
   * to require credentials as in production. @default "taskjet"
   */
  noAuthUser?: string | false;
  /** Values for the configuration's `$VAR`s; any other one gets a random value. */
  env?: Record<string, string>;
}

const NODE_FILE = /^nats-(\d+)\.conf$/;
const READY_TIMEOUT_MS = 20_000;

/**
 * Starts the three nodes of `deploy/nats/` on loopback with fresh ports and stores, and resolves once the routes are
 * up and JetStream has a meta leader that every node knows. The files are only rewritten where a test cannot use the
 * production value (addresses, ports, store_dir), and the rewrite fails loudly when a file no longer has the expected
 * shape, so the tests cannot drift from what is deployed.
 */
export async function startNatsCluster(options: NatsClusterOptions = {}): Promise<NatsCluster> {
  const configDir = options.configDir ?? DEPLOY_NATS_DIR;
  const files = (await readdir(configDir)).sort();
  const nodeFiles = files.filter((f) => NODE_FILE.test(f));
  if (nodeFiles.length !== 3) throw new Error(`${configDir}: expected nats-1.conf .. nats-3.conf, found ${nodeFiles}`);
  const includes = files.filter((f) => f.endsWith(".conf") && !NODE_FILE.test(f));
  const texts = await Promise.all(nodeFiles.map((f) => readFile(join(configDir, f), "utf8")));
  const includeTexts = await Promise.all(includes.map((f) => readFile(join(configDir, f), "utf8")));

  // nats-server parses a variable's value as a config value: "1e3x" fails and "12k" becomes a number, so the values
  // made here start with a letter.
  const env: Record<string, string> = {};
  for (const text of [...texts, ...includeTexts]) {
    for (const name of configVariables(text)) env[name] = options.env?.[name] ?? `p${randomBytes(12).toString("hex")}`;
  }
  const names = texts.map((t, i) => {
    const name = /^server_name:\s*(\S+)\s*$/m.exec(t)?.[1];
    if (!name) throw new Error(`${nodeFiles[i]}: no server_name line`);
    return name;
  });
  const ports = await freePorts(9);
  const root = await mkdtemp(join(tmpdir(), "tj-nats-cluster-"));
  const routePorts = new Map(names.map((n, i) => [n, ports[i * 3 + 2] as number]));

  const nodes: ClusterNode[] = [];
  for (const [i, text] of texts.entries()) {
    const dir = join(root, names[i] as string);
    const storeDir = join(dir, "data");
    await mkdir(storeDir, { recursive: true });
    for (const [j, inc] of includes.entries()) await writeFile(join(dir, inc), includeTexts[j] as string);
    const port = ports[i * 3] as number;
    const monitorPort = ports[i * 3 + 1] as number;
    let config = rewriteNodeConfig(text, nodeFiles[i] as string, {
      port,
      monitorPort,
      routePort: routePorts.get(names[i] as string) as number,
      routePorts,
      storeDir,
    });
    if (options.noAuthUser !== false) config += `\nno_auth_user: ${options.noAuthUser ?? "taskjet"}\n`;
    const configFile = join(dir, nodeFiles[i] as string);
    await writeFile(configFile, config);
    nodes.push(new ClusterNode(names[i] as string, dir, configFile, storeDir, port, monitorPort, env));
  }

  const cluster: NatsCluster = {
    nodes,
    urls: nodes.map((n) => n.url),
    env,
    node(name) {
      const n = nodes.find((x) => x.name === name);
      if (!n) throw new Error(`no node ${name} (nodes: ${names.join(", ")})`);
      return n;
    },
    async stop() {
      running.delete(cluster);
      await Promise.all(nodes.map((n) => n.kill("SIGTERM")));
      await rm(root, { recursive: true, force: true });
    },
  };
  running.add(cluster);
  try {
    await Promise.all(nodes.map((n) => n.start()));
    await Promise.all(nodes.map((n) => n.waitInCluster(nodes.length)));
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}

/** The names of the `$VAR` references of a NATS configuration (comments and quoted strings, like "$KV.>", ignored). */
export function configVariables(text: string): string[] {
  const out = new Set<string>();
  for (const line of text.split("\n")) {
    const code = line.replace(/"[^"]*"|'[^']*'/g, "").replace(/(^|\s)(#|\/\/).*$/, "");
    for (const m of code.matchAll(/\$([A-Za-z_][A-Za-z0-9_]*)/g)) out.add(m[1] as string);
  }
  return [...out];
}

/**
 * A deploy node file with test addresses: client, monitoring and route listeners on 127.0.0.1 with the given ports,
 * each route `nats-route://<server_name>:<port>` to that node's test route port, `store_dir` to `storeDir`.
 * @throws when a line the rewrite expects is missing or repeated (the deploy file changed shape)
 */
export function rewriteNodeConfig(
  text: string,
  file: string,
  p: { port: number; monitorPort: number; routePort: number; routePorts: Map<string, number>; storeDir: string },
): string {
  const replaceOnce = (input: string, pattern: RegExp, by: string, what: string) => {
    const matches = input.match(new RegExp(pattern.source, `${pattern.flags.replace("g", "")}g`));
    if (matches?.length !== 1) {
      throw new Error(
        `${file}: expected one ${what}, found ${matches?.length ?? 0} (update test/harness/nats-cluster.ts)`,
      );
    }
    return input.replace(pattern, by);
  };
  let out = replaceOnce(text, /^listen:.*$/m, `listen: "127.0.0.1:${p.port}"`, "top-level `listen:` line");
  out = replaceOnce(out, /^http:.*$/m, `http: "127.0.0.1:${p.monitorPort}"`, "top-level `http:` line");
  out = replaceOnce(out, /^(\s+)store_dir:.*$/m, `$1store_dir: ${JSON.stringify(p.storeDir)}`, "`store_dir:` line");
  out = replaceOnce(out, /^(\s+)listen:.*$/m, `$1listen: "127.0.0.1:${p.routePort}"`, "`listen:` line in `cluster`");
  let routes = 0;
  out = out.replace(/nats-route:\/\/([A-Za-z0-9_.-]+):\d+/g, (_all, host: string) => {
    const port = p.routePorts.get(host);
    if (port === undefined) throw new Error(`${file}: route to ${host}, which is no node's server_name`);
    routes++;
    return `nats-route://127.0.0.1:${port}`;
  });
  if (routes !== p.routePorts.size) throw new Error(`${file}: expected ${p.routePorts.size} routes, found ${routes}`);
  return out;
}

class ClusterNode implements NatsNode {
  readonly url: string;
  private child: ChildProcess | undefined;

  constructor(
    readonly name: string,
    private readonly dir: string,
    private readonly configFile: string,
    readonly storeDir: string,
    readonly port: number,
    readonly monitorPort: number,
    private readonly env: Record<string, string>,
  ) {
    this.url = `nats://127.0.0.1:${port}`;
  }

  get pid(): number {
    return this.child?.pid ?? -1;
  }

  get up(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  async start(): Promise<void> {
    this.child = await launch(this.configFile, this.dir, this.env);
    await readPort(this.dir, this.child);
  }

  async kill(signal: NodeJS.Signals): Promise<void> {
    if (this.child) await stopProcess(this.child, signal);
  }

  async restart(): Promise<void> {
    if (this.up) throw new Error(`${this.name} is still running (pid ${this.pid})`);
    await this.start();
    await this.waitInCluster(3);
  }

  /** Until this node routes to the others and knows the JetStream meta leader. */
  async waitInCluster(size: number): Promise<void> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    let last = "";
    while (Date.now() < deadline) {
      if (!this.up) throw new Error(`${this.name} exited while joining the cluster`);
      try {
        const [routez, jsz] = await Promise.all([this.monitor("routez"), this.monitor("jsz")]);
        const routes = (routez as { num_routes?: number }).num_routes ?? 0;
        const meta = (jsz as { meta_cluster?: { leader?: string; cluster_size?: number } }).meta_cluster;
        last = `routes ${routes}, meta leader ${meta?.leader || "none"}, cluster size ${meta?.cluster_size ?? 0}`;
        if (routes >= size - 1 && meta?.leader && (meta.cluster_size ?? 0) >= size) return;
      } catch (err) {
        last = String(err);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`${this.name} did not join a cluster of ${size} within ${READY_TIMEOUT_MS} ms (${last})`);
  }

  private async monitor(endpoint: string): Promise<unknown> {
    const res = await fetch(`http://127.0.0.1:${this.monitorPort}/${endpoint}`, { signal: AbortSignal.timeout(2000) });
    return res.json();
  }
}

/** Ports the OS reports free now (all held at once, so they differ); a small race with other processes remains. */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const s = createServer();
          s.once("error", reject);
          s.listen(0, "127.0.0.1", () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}
