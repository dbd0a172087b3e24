import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { connectClient, eventually, uniqueNamespace, useNatsServer } from "../harness/fixtures.js";

const BIN = fileURLToPath(new URL("../../cli/dist/bin.js", import.meta.url));
const nats = useNatsServer();

/** `taskjet engine` as its own process, so it can be killed for real. */
async function engineProcess(namespace: string): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [BIN, "engine", "--nats", nats.url, "--namespace", namespace, "--log-format", "json"],
    {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, TASKJET_NATS_URL: "", TASKJET_NAMESPACE: "" },
    },
  );
  let out = "";
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  await eventually(() => (out.includes("engine started") ? true : undefined), 15_000, "engine start");
  return child;
}

function kill(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.kill(signal);
  });
}

describe("engine crash", () => {
  it("recovery - an engine killed with SIGKILL under load is replaced; every run completes and is recorded once", async () => {
    const namespace = uniqueNamespace();
    let engine = await engineProcess(namespace);
    const tj = await connectClient(nats.url, { namespace });
    let calls = 0;
    const t = tj.task({
      name: "work",
      fn: async (input: { i: number }) => {
        calls++;
        await new Promise((r) => setTimeout(r, 2));
        return { i: input.i };
      },
    });
    const worker = await tj.worker("w", { workflows: [t], slots: 20 });
    await worker.start();
    const refs = await Promise.all(Array.from({ length: 600 }, (_, i) => t.runNoWait({ i })));
    const results = Promise.all(refs.map((r) => r.result()));
    await eventually(() => (calls >= 150 ? true : undefined), 20_000, "some progress");
    await kill(engine, "SIGKILL");
    const atKill = calls;
    engine = await engineProcess(namespace);
    const outputs = await results;
    expect(outputs.map((o) => o.i)).toEqual(Array.from({ length: 600 }, (_, i) => i));
    expect(atKill).toBeLessThan(600);
    // Exactly one recorded result per run, whatever ran twice.
    for (const ref of refs) {
      let results = 0;
      for await (const e of tj.runs.history(ref.runId)) {
        if (e.event?.type === "TaskCompleted" || e.event?.type === "TaskFailed") results++;
      }
      expect(results).toBe(1);
    }
    expect(calls).toBeGreaterThanOrEqual(600);
    await tj.close();
    await kill(engine, "SIGTERM");
  });
});
