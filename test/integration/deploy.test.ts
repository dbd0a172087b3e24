import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI_BIN, childEnv, runCli } from "../harness/cli.js";
import { eventually } from "../harness/fixtures.js";
import { type NatsCluster, startNatsCluster } from "../harness/nats-cluster.js";
import { kill } from "../harness/processes.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const WORKER = fileURLToPath(new URL("../../deploy/worker/example-worker.mjs", import.meta.url));
const PASSWORD = "pDeployTest1";

let cluster: NatsCluster;
beforeAll(async () => {
  // As deployed: no anonymous user, so every process below authenticates with what deploy/README.md tells it to set.
  cluster = await startNatsCluster({ noAuthUser: false, env: { TASKJET_NATS_PASSWORD: PASSWORD } });
});
afterAll(async () => {
  await cluster?.stop();
});

/** A long-running process configured like deploy/systemd/engine.env.example, its output kept. */
function start(args: string[], env: Record<string, string>): { child: ChildProcess; output: () => string } {
  const child = spawn(process.execPath, args, { cwd: ROOT, env: childEnv(env), stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  return { child, output: () => out };
}

describe("deploy", () => {
  it("deploy - two `taskjet engine` replicas, the sample worker and the CLI, configured by environment only, on the deploy/nats cluster with its accounts", async () => {
    const env = {
      TASKJET_NATS_URL: cluster.urls.join(","),
      TASKJET_NAMESPACE: "demo",
      TASKJET_NATS_USER: "taskjet",
      TASKJET_NATS_PASSWORD: PASSWORD,
    };
    const engineEnv = { ...env, TASKJET_REPLICAS: "3", TASKJET_HTTP: "127.0.0.1:0" };
    const procs: { child: ChildProcess; output: () => string }[] = [];
    try {
      // One after the other: the first provisions the R3 streams, the second finds them.
      const addresses: string[] = [];
      for (let k = 0; k < 2; k++) {
        const p = start([CLI_BIN, "engine", "--log-format", "json"], engineEnv);
        procs.push(p);
        await eventually(() => (p.output().includes("engine started") ? true : undefined), 30_000, "engine started");
        addresses.push(/"address":"([^"]+)","msg":"HTTP server listening"/.exec(p.output())?.[1] ?? "");
      }
      const health = await Promise.all(addresses.map(async (a) => (await fetch(`http://${a}/healthz`)).json()));
      expect(health).toEqual([
        { ok: true, namespaces: ["demo"], leading: expect.any(Array) },
        { ok: true, namespaces: ["demo"], leading: expect.any(Array) },
      ]);
      // One leader for the namespace among the two.
      expect(health.flatMap((h) => (h as { leading: string[] }).leading)).toEqual(["demo"]);

      const worker = start([WORKER], env);
      procs.push(worker);
      const res = await runCli(["trigger", "hello", "--input", '{"name":"compose"}', "--wait", "--timeout", "20s"], {
        cwd: ROOT,
        env,
        timeoutMs: 30_000,
      });
      expect(res.stderr).toBe("");
      expect(JSON.parse(res.stdout)).toMatchObject({ greeting: "hello, compose!" });

      const refused = await runCli(["trigger", "hello"], {
        cwd: ROOT,
        env: { ...env, TASKJET_NATS_PASSWORD: "pWrong" },
      });
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toMatch(/Authorization Violation/);
    } finally {
      await Promise.all(procs.map((p) => kill(p.child, "SIGTERM")));
    }
  }, 90_000);
});
