import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import type { Taskjet } from "@taskjet/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI_BIN, childEnv, collectOutput, runCli } from "../harness/cli.js";
import { sleep } from "../harness/concurrency-probe.js";
import { connectClient, eventually, startEngine, uniqueNamespace, useNatsServer } from "../harness/fixtures.js";
import { kill } from "../harness/processes.js";

const nats = useNatsServer();
const FIXTURE = fileURLToPath(new URL("../fixtures/debug/worker.ts", import.meta.url));
const INSPECTOR = fileURLToPath(new URL("../harness/inspector-client.mjs", import.meta.url));
/** Copies of the fixture live beside the tests, so `@taskjet/sdk` resolves from them as from a user's project. */
const SCRATCH = fileURLToPath(new URL("../.debug-scratch/", import.meta.url));
const cwd = fileURLToPath(new URL("..", import.meta.url));

beforeAll(async () => {
  await mkdir(SCRATCH, { recursive: true });
});
afterAll(async () => {
  await rm(SCRATCH, { recursive: true, force: true });
});

/** The fixture module run as a real worker process; resolves once its worker is registered. */
async function startFixtureWorker(namespace: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", FIXTURE], {
    cwd,
    env: childEnv({ TASKJET_NATS_URL: nats.url, TASKJET_NAMESPACE: namespace }),
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  child.stderr?.on("data", (d: Buffer) => {
    err += d.toString();
  });
  await eventually(() => (err.includes("ready ") ? true : undefined), 20_000, `fixture worker ready (${err})`);
  return child;
}

/** A copy of the fixture with `edit` applied: the task code as a developer changed it. */
async function changedFixture(name: string, edit: (source: string) => string): Promise<string> {
  const path = `${SCRATCH}${name}.ts`;
  const source = await readFile(FIXTURE, "utf8");
  const changed = edit(source);
  expect(changed).not.toBe(source);
  await writeFile(path, changed);
  return path;
}

/** Messages stored in every stream but the workers' heartbeats: debugging must not change them. */
async function streamCounts(): Promise<Record<string, number>> {
  const nc = await connect({ servers: nats.url });
  try {
    const jsm = await jetstreamManager(nc);
    const out: Record<string, number> = {};
    for await (const s of jsm.streams.list()) {
      if (s.config.name !== "KV_TJ_WORKERS") out[s.config.name] = s.state.messages;
    }
    return out;
  } finally {
    await nc.close();
  }
}

describe("debug", () => {
  let namespace: string;
  let tj: Taskjet;
  const debug = (args: string[]) =>
    runCli(["debug", ...args, "--nats", nats.url, "--namespace", namespace], { cwd, timeoutMs: 30_000 });

  /** An engine, the fixture module as a worker process, and a client, for one test. */
  async function withFixture(test: () => Promise<void>): Promise<void> {
    namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const worker = await startFixtureWorker(namespace);
    tj = await connectClient(nats.url, { namespace });
    try {
      await test();
    } finally {
      await kill(worker, "SIGTERM");
      await tj.close();
      await engine.stop();
    }
  }

  it("debug - reproduces a recorded failure locally, writing nothing, then reports the changed output of fixed code", async () => {
    await withFixture(async () => {
      const ref = await tj.runNoWait("parse", { text: "forty-two" });
      await expect(ref.result()).rejects.toThrow("not a number: forty-two");
      // Once the projection has written the run, nothing else changes the streams.
      await eventually(async () => ((await tj.runs.list({ statuses: ["FAILED"] })).length === 1 ? true : undefined));
      await sleep(300);
      const before = await streamCounts();

      const same = await debug([ref.runId, "--worker", FIXTURE]);
      expect(same.code).toBe(1); // the task still fails
      expect(same.stderr).toContain('[task] INFO parsing {"length":9}');
      expect(same.stdout).toMatch(/Recorded\s+FAILED TypeError: not a number: forty-two/);
      expect(same.stdout).toMatch(/Now\s+FAILED TypeError: not a number: forty-two\n\s+at /);
      expect(same.stdout).toMatch(/Outcome\s+same as recorded/);

      const fixed = await changedFixture("fixed", (s) =>
        s.replace("const n = Number(input.text);", 'const n = input.text === "forty-two" ? 42 : Number(input.text);'),
      );
      const json = await debug([ref.runId, "--worker", fixed, "--json"]);
      expect(json.stderr).not.toContain("[task]"); // with --json, the lines are in the report
      expect(json.code).toBe(0);
      const report = JSON.parse(json.stdout);
      expect(report).toMatchObject({
        runId: ref.runId,
        taskName: "parse",
        attempt: 0,
        recorded: { status: "FAILED", error: { name: "TypeError", message: "not a number: forty-two" } },
        now: { kind: "completed", output: { n: 42 } },
        changed: true,
        logs: [{ level: "info", message: "parsing", fields: { length: 9 } }],
      });
      // Nothing was written: no event, no log line, no run.
      expect(await streamCounts()).toEqual(before);
      expect((await tj.runs.get(ref.runId)).status).toBe("FAILED");
    });
  });

  it("debug - a workflow task gets its recorded parent outputs; --task picks it, and the failed one is the default", async () => {
    await withFixture(async () => {
      const ref = await tj.runNoWait("pipeline", { base: 1 });
      await expect(ref.result()).rejects.toThrow("too many rows: 3");
      const res = await debug([ref.runId, "--worker", FIXTURE, "--json"]);
      expect(JSON.parse(res.stdout)).toMatchObject({
        taskName: "pipeline.sum",
        recorded: { status: "FAILED" },
        now: { kind: "failed", error: { name: "RangeError", message: "too many rows: 3" } },
        changed: false,
      });
      const fixed = await changedFixture("sum-fixed", (s) => s.replace("rows.length > 2", "rows.length > 3"));
      const now = JSON.parse((await debug([ref.runId, "--worker", fixed, "--json"])).stdout);
      expect(now.now).toEqual({ kind: "completed", output: { sum: 6 } }); // 1 + 2 + 3: the recorded fetch output
      const first = JSON.parse((await debug([ref.runId, "--worker", fixed, "--task", "fetch", "--json"])).stdout);
      expect(first).toMatchObject({ taskName: "pipeline.fetch", now: { output: { rows: [1, 2, 3] } }, changed: false });
      const unknown = await debug([ref.runId, "--worker", FIXTURE, "--task", "nope"]);
      expect(unknown.code).toBe(2);
      expect(unknown.stderr).toContain("has no task nope: fetch (COMPLETED), sum (FAILED)");
      // A task whose parent failed never ran: without the parent's output it cannot run as recorded.
      const failedFetch = await tj.runNoWait("pipeline", { base: -1 });
      await expect(failedFetch.result()).rejects.toThrow("negative base: -1");
      const orphan = await debug([failedFetch.runId, "--worker", FIXTURE, "--task", "sum"]);
      expect(orphan.code).toBe(2);
      expect(orphan.stderr).toContain("task sum cannot run as recorded: its parents fetch (FAILED) have no output");
      const missing = await debug([ref.runId, "--worker", `${SCRATCH}absent.ts`]);
      expect(missing.code).toBe(2);
      expect(missing.stderr).toContain("could not load worker module");
    });
  });

  it("debug - loads TypeScript beside no package.json and in a CommonJS package, as `node --import tsx` does", async () => {
    await withFixture(async () => {
      const ref = await tj.runNoWait("parse", { text: "x" });
      await expect(ref.result()).rejects.toThrow();
      const dir = await mkdtemp(join(tmpdir(), "tj-debug-layout-"));
      try {
        // No package.json above it (tmpdir): tsx loads a .ts as CommonJS.
        await mkdir(join(dir, "plain"));
        await writeFile(join(dir, "plain", "plain.ts"), "const x: number = 1;\nexport { x };\n");
        // A CommonJS package: a module written with import/export, importing another TypeScript module.
        await mkdir(join(dir, "cjs"));
        await writeFile(join(dir, "cjs", "package.json"), '{"type":"commonjs"}\n');
        await writeFile(join(dir, "cjs", "helper.ts"), "export function helper(): number {\n  return 1;\n}\n");
        await writeFile(
          join(dir, "cjs", "esm.ts"),
          'import { helper } from "./helper.ts";\nconst n: number = helper();\nexport { n };\n',
        );
        for (const worker of [join(dir, "plain", "plain.ts"), join(dir, "cjs", "esm.ts")]) {
          const res = await debug([ref.runId, "--worker", worker]);
          // Loaded: it only declares no task.
          expect(res.stderr, worker).not.toContain("could not load worker module");
          expect(res.stderr, worker).toContain("declares no task parse (it declares none)");
          expect(res.code).toBe(2);
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  });

  it("debug - a durable task replays its recorded checkpoints: now() returns the recorded time", async () => {
    await withFixture(async () => {
      const ref = await tj.runNoWait("stamp", {});
      const out = (await ref.result()) as { first: string };
      const res = JSON.parse((await debug([ref.runId, "--worker", FIXTURE, "--json"])).stdout);
      expect(res).toMatchObject({ now: { kind: "completed", output: { first: out.first } }, changed: false });
      expect(res.newCheckpoints).toEqual([]);
      // A task changed to take a checkpoint history does not have stops there: the run would suspend.
      const longer = await changedFixture("stamp-longer", (s) =>
        s.replace('await ctx.sleepFor("50ms");', 'await ctx.sleepFor("50ms");\n    await ctx.sleepFor("1h");'),
      );
      const suspended = JSON.parse((await debug([ref.runId, "--worker", longer, "--json"])).stdout);
      expect(suspended.now).toEqual({ kind: "suspended", at: expect.stringMatching(/^checkpoint 2: sleep until /) });
      expect(suspended.changed).toBe(true);
    });
  });

  it("debug - under node --inspect-brk, the debugger stops in the task function with the recorded input", async () => {
    await withFixture(async () => {
      const ref = await tj.runNoWait("parse", { text: "seven" });
      await expect(ref.result()).rejects.toThrow();
      const cli = spawn(
        process.execPath,
        [
          "--inspect-brk=127.0.0.1:0",
          CLI_BIN,
          "debug",
          ref.runId,
          "--worker",
          FIXTURE,
          "--nats",
          nats.url,
          "--namespace",
          namespace,
        ],
        { cwd, env: childEnv(), stdio: "pipe" },
      );
      const result = collectOutput(cli, 30_000, ["debug", "--inspect-brk"]);
      let stderr = "";
      cli.stderr?.on("data", (d: Buffer) => {
        stderr += d.toString();
      });
      const wsUrl = await eventually(() => /Debugger listening on (ws:\/\/\S+)/.exec(stderr)?.[1], 10_000, "inspector");
      const client = spawn(
        process.execPath,
        ["--experimental-websocket", INSPECTOR, wsUrl, "fixtures/debug/worker.ts"],
        {
          stdio: "pipe",
        },
      );
      const attached = await collectOutput(client, 30_000, ["inspector-client"]);
      const done = await result;
      expect(JSON.parse(attached.stdout.trim().split("\n")[0] as string)).toMatchObject({
        hit: true,
        url: expect.stringContaining("fixtures/debug/worker.ts"),
        input: { text: "seven" },
      });
      expect(done.stdout).toMatch(/Now\s+FAILED TypeError: not a number: seven/);
    });
  });
});
