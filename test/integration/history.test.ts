import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI_BIN, childEnv, collectOutput, runCli } from "../harness/cli.js";
import { sleep } from "../harness/concurrency-probe.js";
import { connectClient, eventually, startEngine, uniqueNamespace, useNatsServer } from "../harness/fixtures.js";
import { kill, startWorkerProcess } from "../harness/processes.js";

const nats = useNatsServer();
let cwd: string;
beforeAll(async () => {
  cwd = await mkdtemp(join(tmpdir(), "tj-history-"));
});
afterAll(async () => {
  await rm(cwd, { recursive: true, force: true });
});

/** `taskjet runs history <id>` as table rows: [seq, time, delta, event, task/attempt, worker, details]. */
async function timeline(namespace: string, runId: string): Promise<string[][]> {
  const res = await runCli(["runs", "history", runId, "--nats", nats.url, "--namespace", namespace], { cwd });
  expect(res.code).toBe(0);
  return res.stdout
    .trim()
    .split("\n")
    .slice(1)
    .map((r) => r.split(/\s{2,}/));
}

describe("history", () => {
  it("runs history - a run that failed, timed out and retried shows each attempt, the error and the timeout kind", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    let lateReturned = false;
    const flaky = tj.task({
      name: "flaky",
      retries: 2,
      executionTimeout: "400ms",
      fn: async (_input, ctx) => {
        if (ctx.retryCount() === 0) throw new Error("first try breaks");
        if (ctx.retryCount() === 1) {
          await sleep(2000); // past the execution timeout, ignoring the abort signal
          lateReturned = true;
        }
        return { ok: true };
      },
    });
    const worker = await tj.worker("hw", { workflows: [flaky] });
    await worker.start();
    const ref = await flaky.runNoWait({});
    expect(await ref.result()).toEqual({ ok: true });
    // The timed-out attempt returns late: its result is recorded as ReportIgnored (invariant 4), before or after the
    // retry's, depending on the machine's speed.
    await eventually(() => (lateReturned ? true : undefined));
    let all: string[][] = [];
    await eventually(async () => {
      all = await timeline(namespace, ref.runId);
      return all.some((r) => r[3] === "ReportIgnored") ? true : undefined;
    });
    expect(all.filter((r) => r[3] === "ReportIgnored").map((r) => r[4])).toEqual(["flaky/1"]);
    const rows = all.filter((r) => r[3] !== "ReportIgnored");
    const events = rows.map((r) => [r[3], r[4], r[6] ?? ""]);
    expect(events.map((e) => e[0])).toEqual([
      "RunCreated",
      "TaskStarted",
      "TaskFailed",
      "TaskRetryScheduled",
      "TaskQueued",
      "TaskStarted",
      "TaskTimedOut",
      "TaskRetryScheduled",
      "TaskQueued",
      "TaskStarted",
      "TaskCompleted",
    ]);
    expect(events[2]).toEqual(["TaskFailed", "flaky/0", "Error: first try breaks"]);
    expect(events[6]?.[1]).toBe("flaky/1");
    expect(events[6]?.[2]).toMatch(/^execution timeout \(deadline \d{4}-/);
    expect(events[9]?.[1]).toBe("flaky/2");
    expect(rows[9]?.[5]).toBe("hw");
    // The state after the timeout, folded from the log (time travel).
    const atTimeout = await tj.runs.stateAt(ref.runId, { seq: Number(rows[6]?.[0]) });
    expect(atTimeout.tasks[0]).toMatchObject({ status: "QUEUED", retry: { attempt: 2 } });
    expect(atTimeout.tasks[0]?.error?.message).toMatch(/^execution timeout: attempt 1 still running/);
    await tj.close();
    await engine.stop();
  });

  it("runs history - a reassigned attempt names the lost worker and the reason; a cancelled run says why", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace], workerTtlMs: 1500 });
    const tj = await connectClient(nats.url, { namespace });
    const lost = await startWorkerProcess(nats.url, namespace, "job", 1, 60_000);
    const ref = await tj.runNoWait("job", { n: 1 });
    await eventually(async () => ((await tj.runs.get(ref.runId)).status === "RUNNING" ? true : undefined));
    await kill(lost.child, "SIGKILL");
    const survivor = await startWorkerProcess(nats.url, namespace, "job", 1, 30_000);
    const reassigned = await eventually(
      async () => {
        const rows = await timeline(namespace, ref.runId);
        return rows.some((r) => r[3] === "TaskStarted" && r[5] === `proc-${survivor.child.pid}`) ? rows : undefined;
      },
      20_000,
      "the attempt restarted on the survivor",
    );
    const moved = reassigned.find((r) => r[3] === "TaskReassigned");
    expect(moved?.[4]).toBe("job/0");
    expect(moved?.[6]).toMatch(new RegExp(`^from worker ${lost.workerId}: worker `));

    expect(await ref.cancel("no longer needed")).toBe(true);
    await expect(ref.result()).rejects.toThrow("no longer needed");
    const rows = await timeline(namespace, ref.runId);
    expect(rows.find((r) => r[3] === "RunCancelled")?.[6]).toBe("cancelled: no longer needed");
    await kill(survivor.child, "SIGTERM");
    await tj.close();
    await engine.stop();
  });

  it("runs history --follow - prints events as they happen and exits when the run ends", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const gated = tj.task({ name: "gated", fn: async () => gate.then(() => ({ done: true })) });
    const worker = await tj.worker("fw", { workflows: [gated] });
    await worker.start();
    const ref = await gated.runNoWait({});
    const child = spawn(
      process.execPath,
      [CLI_BIN, "runs", "history", ref.runId, "--follow", "--nats", nats.url, "--namespace", namespace],
      { cwd, env: childEnv(), stdio: "pipe" },
    );
    let seen = "";
    child.stdout?.on("data", (d: Buffer) => {
      seen += d.toString();
    });
    const exit = collectOutput(child, 20_000, ["runs", "history", "--follow"]);
    await eventually(() => (seen.includes("TaskStarted") ? true : undefined), 10_000, "TaskStarted printed live");
    expect(seen).not.toContain("TaskCompleted");
    expect((await tj.runs.get(ref.runId)).status).toBe("RUNNING");
    release();
    const done = await exit;
    expect(done.code).toBe(0);
    const events = done.stdout
      .trim()
      .split("\n")
      .slice(1)
      .map((r) => r.split(/\s+/)[3]);
    expect(events).toEqual(["RunCreated", "TaskStarted", "TaskCompleted"]);
    await tj.close();
    await engine.stop();
  });
});
