import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Kvm } from "@nats-io/kv";
import { EXAMPLES } from "@taskjet/cli";
import type { Taskjet } from "@taskjet/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI_BIN, type CliResult, childEnv, collectOutput, runCli } from "../harness/cli.js";
import { sleep } from "../harness/concurrency-probe.js";
import { connectClient, eventually, startEngine, uniqueNamespace, useNatsServer } from "../harness/fixtures.js";
import { startNatsServer } from "../harness/nats-server.js";

const nats = useNatsServer();

/** A scratch working directory, so no `.taskjet/dev.json` of a developer's `taskjet dev` is ever found. */
let cwd: string;
beforeAll(async () => {
  if (!existsSync(CLI_BIN))
    throw new Error(`${CLI_BIN} is missing: build the CLI first (npx tsc -p cli/tsconfig.build.json)`);
  cwd = await mkdtemp(join(tmpdir(), "tj-cli-"));
});
afterAll(async () => {
  await rm(cwd, { recursive: true, force: true });
});

/** Runs `taskjet <args>` to completion in the scratch directory. */
function taskjet(
  args: string[],
  options: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<CliResult> {
  return runCli(args, { cwd, ...options });
}

/** `--nats <harness url> --namespace <ns>`: the CLI never falls back to 127.0.0.1:4222 here. */
function at(namespace: string): string[] {
  return ["--nats", nats.url, "--namespace", namespace];
}

/** A worker with `hello` (greets) and `boom` (throws); the caller closes `tj`. */
async function helloWorker(namespace: string): Promise<Taskjet> {
  const tj = await connectClient(nats.url, { namespace });
  const hello = tj.task({
    name: "hello",
    fn: async (input: { name?: string }) => ({ greeting: `hello ${input.name ?? "nobody"}` }),
  });
  const boom = tj.task({
    name: "boom",
    fn: async () => {
      throw new RangeError("out of range: 42");
    },
  });
  const worker = await tj.worker("cli-test", { workflows: [hello, boom] });
  await worker.start();
  return tj;
}

async function runState(namespace: string, runId: string): Promise<{ status: string; runId: string }> {
  const res = await taskjet(["runs", "get", runId, "--json", ...at(namespace)]);
  expect(res.stderr).toBe("");
  expect(res.code).toBe(0);
  return JSON.parse(res.stdout) as { status: string; runId: string };
}

describe("cli", () => {
  it("trigger - --wait prints the task's output", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await helloWorker(namespace);
    try {
      const res = await taskjet(["trigger", "hello", "--input", '{"name":"cli"}', "--wait", ...at(namespace)]);
      expect(res.stderr).toBe("");
      expect(res.code).toBe(0);
      expect(JSON.parse(res.stdout)).toEqual({ greeting: "hello cli" });

      const json = await taskjet(["trigger", "hello", "--wait", "--json", ...at(namespace)]);
      expect(json.code).toBe(0);
      const parsed = JSON.parse(json.stdout) as { runId: string; status: string; output: unknown };
      expect(parsed.status).toBe("COMPLETED");
      expect(parsed.output).toEqual({ greeting: "hello nobody" });
      expect(parsed.runId).toMatch(/^[0-9A-Z]{26}$/);
    } finally {
      await tj.close();
      await engine.stop();
    }
  });

  it("trigger - --wait on a failing task prints its error and exits 1", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await helloWorker(namespace);
    try {
      const res = await taskjet(["trigger", "boom", "--wait", ...at(namespace)]);
      expect(res.code).toBe(1);
      expect(res.stdout).toBe("");
      expect(res.stderr).toMatch(/^error: task boom \(run [0-9A-Z]+\) failed: RangeError: out of range: 42/);
      expect(res.stderr).toContain("cli.test.ts"); // the task's own stack
    } finally {
      await tj.close();
      await engine.stop();
    }
  });

  it("trigger - without --wait prints the run id, and runs get shows the run", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await helloWorker(namespace);
    try {
      const res = await taskjet(["trigger", "hello", "-i", '{"name":"later"}', "-m", "team=infra", ...at(namespace)]);
      expect(res.code).toBe(0);
      const runId = res.stdout.trim();
      expect(runId).toMatch(/^[0-9A-Z]{26}$/);

      await eventually(async () => ((await runState(namespace, runId)).status === "COMPLETED" ? true : undefined));
      const human = await taskjet(["runs", "get", runId, ...at(namespace)]);
      expect(human.code).toBe(0);
      expect(human.stdout).toMatch(new RegExp(`^Run\\s+${runId}$`, "m"));
      expect(human.stdout).toMatch(/^Task\s+hello$/m);
      expect(human.stdout).toMatch(/^Status\s+COMPLETED$/m);
      expect(human.stdout).toMatch(/^Metadata\s+team=infra$/m);
      expect(human.stdout).toContain('"greeting": "hello later"');
      expect(human.stdout).toMatch(/^Duration\s+\d/m);

      const json = await taskjet(["trigger", "hello", "--json", "--run-id", "my-run-1", ...at(namespace)]);
      expect(json.code).toBe(0);
      expect(JSON.parse(json.stdout)).toEqual({ runId: "my-run-1", task: "hello", namespace, existing: false });
      // The same run id again: that run, which the output says.
      const again = await taskjet(["trigger", "hello", "--json", "--run-id", "my-run-1", ...at(namespace)]);
      expect(JSON.parse(again.stdout)).toEqual({ runId: "my-run-1", task: "hello", namespace, existing: true });
    } finally {
      await tj.close();
      await engine.stop();
    }
  });

  it("trigger - a task no worker has is accepted and stays QUEUED", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    try {
      const res = await taskjet(["trigger", "nobody-runs-this", ...at(namespace)]);
      expect(res.code).toBe(0);
      const runId = res.stdout.trim();
      expect((await runState(namespace, runId)).status).toBe("QUEUED");
      const human = await taskjet(["runs", "get", runId, ...at(namespace)]);
      expect(human.stdout).toMatch(/^Status\s+QUEUED$/m);

      const waited = await taskjet(["trigger", "nobody-runs-this", "--wait", "--timeout", "300ms", ...at(namespace)]);
      expect(waited.code).toBe(1);
      expect(waited.stderr).toMatch(/is still QUEUED after 300 ms/);
    } finally {
      await engine.stop();
    }
  });

  it("runs get - a run waiting out a retry backoff says which attempt comes when, and after what error", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    try {
      const flaky = tj.task({
        name: "flaky",
        retries: 1,
        backoff: { factor: 30, maxSeconds: 60 }, // the retry waits 30 s: the CLI reads the run meanwhile
        fn: async () => {
          throw new Error("upstream down");
        },
      });
      await (await tj.worker("w", { workflows: [flaky] })).start();
      const ref = await flaky.runNoWait({});
      await eventually(async () => ((await tj.runs.get(ref.runId)).tasks[0]?.retry?.at ? true : undefined));
      const human = await taskjet(["runs", "get", ref.runId, ...at(namespace)]);
      expect(human.stdout).toMatch(/^Retry\s+attempt 1 at \S+ after Error: upstream down$/m);
    } finally {
      await tj.close();
      await engine.stop();
    }
  });

  it("runs cancel - cancels by id and by --filter; without either it is a usage error", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, {
      namespaces: [namespace],
      projectionActiveDelayMs: 0,
      projectionQueuedDelayMs: 0,
    });
    try {
      const ids: string[] = [];
      for (const task of ["a", "a", "b"]) ids.push((await taskjet(["trigger", task, ...at(namespace)])).stdout.trim());
      const byId = await taskjet(["runs", "cancel", ids[0] as string, ...at(namespace)]);
      expect(byId.code).toBe(0);
      expect(byId.stdout).toContain(`cancelled ${ids[0]}`);
      expect((await runState(namespace, ids[0] as string)).status).toBe("CANCELLED");
      const again = await taskjet(["runs", "cancel", ids[0] as string, ...at(namespace)]);
      expect(again.stdout).toContain(`already finished ${ids[0]}`);
      await eventually(async () =>
        (await runState(namespace, ids[1] as string)).status === "QUEUED" ? true : undefined,
      );
      const filtered = await taskjet(["runs", "cancel", "--filter", "--task", "a", "--json", ...at(namespace)]);
      expect(JSON.parse(filtered.stdout)).toEqual({ cancelled: [ids[1]], alreadyFinished: [], notFound: [] });
      expect((await runState(namespace, ids[2] as string)).status).toBe("QUEUED");
      // An id naming no run is an error (exit 1), and the others are cancelled all the same.
      const mixed = await taskjet(["runs", "cancel", "no-such-run", ids[2] as string, "--json", ...at(namespace)]);
      expect(mixed.code).toBe(1);
      expect(JSON.parse(mixed.stdout)).toEqual({ cancelled: [ids[2]], alreadyFinished: [], notFound: ["no-such-run"] });
      const usage = await taskjet(["runs", "cancel", ...at(namespace)]);
      expect(usage.code).toBe(2);
    } finally {
      await engine.stop();
    }
  });

  it("runs list - --status filters runs", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await helloWorker(namespace);
    try {
      const done = JSON.parse((await taskjet(["trigger", "hello", "--wait", "--json", ...at(namespace)])).stdout) as {
        runId: string;
      };
      const queued = (await taskjet(["trigger", "nobody-runs-this", ...at(namespace)])).stdout.trim();
      const ids = async (...flags: string[]) => {
        const res = await taskjet(["runs", "list", "--json", ...flags, ...at(namespace)]);
        expect(res.code).toBe(0);
        return (JSON.parse(res.stdout) as { runId: string }[]).map((r) => r.runId);
      };
      // The list reads the projection, which trails the log by a flush window.
      await eventually(async () => ((await ids()).length === 2 ? true : undefined));
      expect(await ids("--status", "COMPLETED")).toEqual([done.runId]);
      expect(await ids("--status", "queued")).toEqual([queued]);
      expect((await ids("--status", "QUEUED,COMPLETED")).sort()).toEqual([done.runId, queued].sort());
      expect(await ids("--status", "FAILED")).toEqual([]);
      expect(await ids("--task", "hello")).toEqual([done.runId]);

      const table = await taskjet(["runs", "list", "--status", "COMPLETED", ...at(namespace)]);
      expect(table.code).toBe(0);
      const lines = table.stdout.trim().split("\n");
      expect(lines[0]).toMatch(/^RUN ID\s+TASK\s+STATUS\s+CREATED\s+DURATION$/);
      expect(lines.slice(1)).toHaveLength(1);
      expect(lines[1]).toMatch(new RegExp(`^${done.runId}\\s+hello\\s+COMPLETED\\s+(just now|\\d+ s ago)\\s`));
    } finally {
      await tj.close();
      await engine.stop();
    }
  });

  it("runs list - a bad --status is a usage error listing the allowed ones", async () => {
    const res = await taskjet(["runs", "list", "--status", "DONE", ...at("unused")]);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain("'DONE'");
    expect(res.stderr).toContain("QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED");
  });

  it("runs history - shows RunCreated, TaskStarted, TaskCompleted in order, and --json lines parse", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await helloWorker(namespace);
    try {
      const { runId } = JSON.parse(
        (await taskjet(["trigger", "hello", "--wait", "--json", "-i", '{"name":"h"}', ...at(namespace)])).stdout,
      ) as { runId: string };

      const res = await taskjet(["runs", "history", runId, ...at(namespace)]);
      expect(res.code).toBe(0);
      const [header, ...rows] = res.stdout.trim().split("\n");
      expect(header).toMatch(/^SEQ\s+TIME \(UTC\)\s+DELTA\s+EVENT\s+TASK\/ATTEMPT\s+WORKER\s+DETAILS$/);
      const cells = rows.map((r) => r.split(/\s{2,}/));
      // A short attempt's result carries its start: the table shows that start as its own row, with the result's seq.
      expect(cells.map((c) => c[3])).toEqual(["RunCreated", "TaskStarted", "TaskCompleted"]);
      const seqs = cells.map((c) => Number(c[0]));
      expect(seqs.every((s) => Number.isInteger(s))).toBe(true);
      expect(seqs[1]).toBeGreaterThan(seqs[0] as number);
      expect(seqs[2]).toBe(seqs[1]);
      for (const c of cells) expect(c[1]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      expect(cells.map((c) => c[2]?.startsWith("+"))).toEqual([true, true, true]);
      expect(cells[1]?.[4]).toBe("hello/0");
      expect(cells[1]?.[5]).toBe("cli-test");
      expect(cells[2]?.[6]).toMatch(/^output \d+ B$/);

      // --json: the stored events as they are, the start inside the result.
      const json = await taskjet(["runs", "history", runId, "--json", ...at(namespace)]);
      expect(json.code).toBe(0);
      const entries = json.stdout
        .trim()
        .split("\n")
        .map(
          (l) =>
            JSON.parse(l) as {
              seq: number;
              time: string;
              event: { type: string; runId: string; data: { started?: { at: string; workerName: string } } };
            },
        );
      expect(entries.map((e) => e.event.type)).toEqual(["RunCreated", "TaskCompleted"]);
      expect(entries.map((e) => e.seq)).toEqual([...new Set(seqs)]);
      expect(entries.every((e) => e.event.runId === runId && !Number.isNaN(Date.parse(e.time)))).toBe(true);
      const started = entries[1]?.event.data.started;
      expect(started).toMatchObject({ workerName: "cli-test" });
      // The table's start row is at the start's own time.
      expect(cells[1]?.[1]).toBe(started?.at);
    } finally {
      await tj.close();
      await engine.stop();
    }
  });

  it("trigger - invalid --input JSON exits 2 naming the flag and the value", async () => {
    const res = await taskjet(["trigger", "hello", "--input", "{not json", ...at("unused")]);
    expect(res.code).toBe(2);
    expect(res.stdout).toBe("");
    expect(res.stderr).toContain("--input");
    expect(res.stderr).toContain("{not json");

    const array = await taskjet(["trigger", "hello", "--input", "[1,2]", ...at("unused")]);
    expect(array.code).toBe(2);
    expect(array.stderr).toContain("JSON object");
  });

  it("cli - a value the SDK or the engine refuses exits 2 naming the flag (or variable) typed, not the field it filled", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    try {
      const cases: [string[], Record<string, string>, RegExp][] = [
        [["trigger", "hello", "--at", "2099-01-01T00:00:00Z"], {}, /^error: --at: must be within 30 days/],
        [["webhooks", "create", "k1", "--event-key", "a:b", "--auth", "apiKey", "--key", "s3"], {}, /^error: --key: /],
        [["webhooks", "create", "k2", "--auth", "hmac", "--secret", "s3cret-s3cret"], {}, /^error: --event-key /],
        [["engine", "--http", "127.0.0.1:99999"], {}, /^error: --http: must have a port of at most 65535/],
        [["engine"], { TASKJET_HTTP: "bad" }, /^error: TASKJET_HTTP: must be host:port/],
        // Flags that would be ignored are refused.
        [["trigger", "hello", "--timeout", "1s"], {}, /^error: --timeout goes with --wait/],
        [["trigger", "hello", "--batch-id", "b2"], {}, /^error: --batch-id goes with --bulk/],
        [["runs", "cancel", "some-run", "--status", "FAILED"], {}, /^error: --status go with --filter/],
        [["trigger", "hello", "--delay", "800h"], {}, /^error: --delay: must be within 30 days/],
        // The SDK's durations: compound units, no fractions.
        [
          ["trigger", "hello", "--delay", "1.5h"],
          {},
          /argument '1.5h' is invalid\. --delay: must be a positive duration such as "1d", .*, got "1.5h"/,
        ],
        [
          ["trigger", "hello", "--bulk", "lines.jsonl", "--input", '{"a":1}'],
          {},
          /^error: --bulk does not go with --input/,
        ],
        [
          [
            "webhooks",
            "create",
            "w",
            "--event-key",
            "a:b",
            "--auth",
            "basic",
            "--username",
            "u",
            "--password",
            "p4ssword",
            "--key",
            "k",
          ],
          {},
          /^error: --auth basic does not take --key/,
        ],
      ];
      for (const [args, env, message] of cases) {
        const res = await taskjet([...args, ...at(namespace)], { env });
        expect(res.code, args.join(" ")).toBe(2);
        expect(res.stderr, args.join(" ")).toMatch(message);
      }
      // `taskjet dev` refuses the engine's address before its nats-server starts.
      const dir = join(tmpdir(), `tj-dev-${namespace}`);
      for (const [args, env, message] of [
        [["--http", "nope"], {}, /^error: --http: must be host:port/],
        [[], { TASKJET_HTTP: "nope" }, /^error: TASKJET_HTTP: must be host:port/],
      ] as const) {
        const res = await taskjet(["dev", "--port", "1", "--dir", dir, ...args], { env });
        expect(res.code).toBe(2);
        expect(res.stderr).toMatch(message);
        expect(res.stdout).not.toContain("nats-server");
      }
      expect(existsSync(dir)).toBe(false);
    } finally {
      await engine.stop();
    }
  });

  it("cli - an unknown flag or command exits 2", async () => {
    const flag = await taskjet(["runs", "list", "--no-such-flag", ...at("unused")]);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain("unknown option '--no-such-flag'");
    const command = await taskjet(["no-such-command"]);
    expect(command.code).toBe(2);
    const help = await taskjet(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("trigger");
  });

  it("help examples - the --help examples that schedule are accepted as written (a fixed date fell into the past or beyond 30 days)", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    try {
      const trigger = EXAMPLES.trigger?.find((e) => e.includes("--at")) as string;
      const created = await taskjet([...trigger.split(" ").slice(1), "--json", ...at(namespace)]);
      expect(created.code, created.stderr).toBe(0);
      const runId = (JSON.parse(created.stdout) as { runId: string }).runId;
      expect(await tj.runs.get(runId)).toMatchObject({ status: "SCHEDULED" });
      const update = String(EXAMPLES["scheduled update"]?.[0]).replace("01JD5X...", runId);
      const updated = await taskjet([...update.split(" ").slice(1), ...at(namespace)]);
      expect(updated.code, updated.stderr).toBe(0);
    } finally {
      await tj.close();
      await engine.stop();
    }
  });

  it("time flags - --at/--since/--until take ISO 8601 date-times only: legacy Date forms (12, -1, 1.5, 5) exit 2 naming the flag, nothing done", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    try {
      const queued = await tj.runNoWait("nobody-runs-this", {}); // QUEUED: no worker has it
      for (const [args, message] of [
        [["runs", "state", queued.runId, "--at", "-1"], "--at must be a sequence number or an ISO date-time"],
        [["runs", "state", queued.runId, "--at", "1.5"], "--at must be a sequence number or an ISO date-time"],
        [["trigger", "echo", "--at", "12"], "--at must be an ISO date-time"],
        [["trigger", "echo", "--at", "2026-02-31T09:00:00Z"], "--at must be an ISO date-time"],
        [["scheduled", "update", queued.runId, "--at", "12"], "--at must be an ISO date-time"],
        [["runs", "cancel", "--filter", "--since", "5"], "--since must be an ISO date-time or a duration ago"],
        [["runs", "cancel", "--filter", "--until", "1.5"], "--until must be an ISO date-time or a duration ago"],
        [["runs", "replay", "--filter", "--since", "-1"], "--since must be an ISO date-time or a duration ago"],
      ] as const) {
        const res = await taskjet([...args, ...at(namespace)]);
        const value = args[args.length - 1] as string;
        expect(res.code, args.join(" ")).toBe(2);
        expect(res.stdout).toBe("");
        expect(res.stderr).toContain(`${message}`);
        expect(res.stderr).toContain(`got "${value}"`);
      }
      // Nothing was done: the queued run is still queued (not cancelled "since 2001"), no echo run was created.
      expect((await tj.runs.list()).map((r) => [r.runId, r.status])).toEqual([[queued.runId, "QUEUED"]]);
      // ISO forms still work: a date, a date-time with an offset, a duration ago.
      const since = await taskjet([
        "runs",
        "cancel",
        "--filter",
        "--since",
        "2000-01-01",
        "--until",
        "1d",
        ...at(namespace),
      ]);
      expect(since.code).toBe(0);
      expect(await queued.status()).toBe("QUEUED"); // created after --until
      const state = await taskjet([
        "runs",
        "state",
        queued.runId,
        "--at",
        "2999-01-01T00:00:00+01:00",
        ...at(namespace),
      ]);
      expect(state.code).toBe(0);
      expect(state.stdout).toMatch(/Status\s+QUEUED/);
    } finally {
      await tj.close();
      await engine.stop();
    }
  });

  it("events push - a --payload that is no JSON object exits 2 naming --payload (not --input) and the value", async () => {
    for (const payload of ["[1]", "not json", "null"]) {
      const res = await taskjet(["events", "push", "k", "--payload", payload, ...at("unused")]);
      expect(res.code, payload).toBe(2);
      expect(res.stderr).toContain(`--payload <json>' argument '${payload}' is invalid`);
      expect(res.stderr).toContain("must be a JSON object");
      expect(res.stderr).not.toContain("--input");
    }
    const input = await taskjet(["trigger", "hello", "--input", "[1]", ...at("unused")]);
    expect(input.code).toBe(2);
    expect(input.stderr).toContain("--input <json>' argument '[1]' is invalid");
    expect(input.stderr).not.toContain("--payload");
  });

  it("runs get - an unknown id exits 1 with not found", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    try {
      const res = await taskjet(["runs", "get", "no-such-run", ...at(namespace)]);
      expect(res.code).toBe(1);
      expect(res.stderr).toBe("error: run no-such-run not found\n");
      const history = await taskjet(["runs", "history", "no-such-run", ...at(namespace)]);
      expect(history.code).toBe(1);
      expect(history.stderr).toContain("not found");
    } finally {
      await engine.stop();
    }
  });

  it("trigger --bulk - one run per line, each run once even when the file is sent twice; a bad line exits 2", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    try {
      const seen = new Map<number, number>();
      const count = tj.task({
        name: "count",
        fn: async (input: { n: number }) => {
          seen.set(input.n, (seen.get(input.n) ?? 0) + 1);
          return {};
        },
      });
      const worker = await tj.worker("w", { workflows: [count], slots: 50 });
      await worker.start();
      const file = join(cwd, "runs.jsonl");
      await writeFile(file, `${Array.from({ length: 3000 }, (_, n) => JSON.stringify({ n })).join("\n")}\n\n`);
      const first = await taskjet(["trigger", "count", "--bulk", file, ...at(namespace)], { timeoutMs: 60_000 });
      expect(first.stderr).toBe("");
      expect(first.stdout).toBe(`3000 runs of count accepted from ${file}\n`);
      const again = await taskjet(["trigger", "count", "--bulk", file, "--json", ...at(namespace)], {
        timeoutMs: 60_000,
      });
      const lines = again.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as { line: number; runId: string });
      expect(lines).toHaveLength(3000);
      expect(lines[0]?.line).toBe(1);
      await eventually(() => (seen.size === 3000 ? true : undefined), 30_000);
      await sleep(500);
      expect([...seen.values()].every((c) => c === 1)).toBe(true);
      // A new batch id: the same file as new runs.
      await taskjet(["trigger", "count", "--bulk", file, "--batch-id", "second", ...at(namespace)], {
        timeoutMs: 60_000,
      });
      await eventually(() => ([...seen.values()].every((c) => c === 2) ? true : undefined), 30_000);
      await writeFile(file, '{"n": 1}\n[1, 2]\n');
      const bad = await taskjet(["trigger", "count", "--bulk", file, ...at(namespace)]);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain("line 2: must be a JSON object");
    } finally {
      await tj.close();
      await engine.stop();
    }
  });

  it("scheduled - trigger --delay/--at creates SCHEDULED runs; scheduled list/get/update/delete manage them", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await helloWorker(namespace);
    try {
      const delayed = await taskjet(["trigger", "hello", "--delay", "1s", "-i", '{"name":"later"}', ...at(namespace)]);
      expect(delayed.code).toBe(0);
      const runId = delayed.stdout.trim();
      const far = new Date(Date.now() + 3_600_000).toISOString();
      const farRun = (await taskjet(["trigger", "hello", "--at", far, ...at(namespace)])).stdout.trim();
      const got = await taskjet(["scheduled", "get", farRun, "--json", ...at(namespace)]);
      expect(JSON.parse(got.stdout)).toMatchObject({ status: "SCHEDULED", scheduledAt: far });
      const listed = await eventually(async () => {
        const res = await taskjet(["scheduled", "list", ...at(namespace)]);
        return res.stdout.includes(farRun) ? res.stdout : undefined;
      });
      expect(listed).toMatch(/RUN\s+TASK\s+STARTS/);
      expect(await tj.ref(runId).result()).toEqual({ greeting: "hello later" });
      const soon = new Date(Date.now() + 500).toISOString();
      const moved = await taskjet(["scheduled", "update", farRun, "--at", soon, ...at(namespace)]);
      expect(moved.stdout).toContain(`now starts ${soon}`);
      expect(await tj.ref(farRun).result()).toEqual({ greeting: "hello nobody" });
      const third = (await taskjet(["trigger", "hello", "--delay", "1h10m", ...at(namespace)])).stdout.trim();
      const inMinutes = (Date.parse((await tj.runs.get(third)).scheduledAt as string) - Date.now()) / 60_000;
      expect(inMinutes).toBeGreaterThan(69);
      expect(inMinutes).toBeLessThanOrEqual(70);
      expect((await taskjet(["scheduled", "delete", third, ...at(namespace)])).stdout).toBe(`${third} deleted\n`);
      const late = await taskjet(["scheduled", "update", third, "--at", soon, ...at(namespace)]);
      expect(late.code).toBe(1);
      expect(late.stderr).toContain("is not scheduled: it is CANCELLED");
      const keyed = ["trigger", "hello", "--idempotency-key", "greet-1", ...at(namespace)];
      const k1 = (await taskjet(keyed)).stdout.trim();
      expect((await taskjet(keyed)).stdout.trim()).toBe(k1);
      const both = await taskjet(["trigger", "hello", "--delay", "1s", "--at", soon, ...at(namespace)]);
      expect(both.code).toBe(2);
      const badAt = await taskjet(["trigger", "hello", "--at", "tomorrow", ...at(namespace)]);
      expect(badAt.code).toBe(2);
      expect(badAt.stderr).toContain("--at must be an ISO date-time");
    } finally {
      await tj.close();
      await engine.stop();
    }
  });

  it("crons - list shows a task's crons, get prints one, delete removes it; an unknown name exits 1", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    try {
      const report = tj.task({ name: "report", fn: async () => ({}) });
      await report.cron("nightly", "0 2 * * *", { kind: "daily" }, { timezone: "Europe/Paris" });
      const list = await taskjet(["crons", "list", ...at(namespace)]);
      expect(list.stdout).toMatch(
        /NAME\s+TASK\s+EXPRESSION\s+ZONE\s+CATCH-UP\s+FROM\s+NEXT TICK\nnightly\s+report\s+0 2 \* \* \*\s+Europe\/Paris\s+none\s+api\s+in \d+ (min|h)/,
      );
      const got = await taskjet(["crons", "get", "nightly", "--json", ...at(namespace)]);
      expect(JSON.parse(got.stdout)).toMatchObject({ input: { kind: "daily" }, timezone: "Europe/Paris" });
      const human = await taskjet(["crons", "get", "nightly", ...at(namespace)]);
      expect(human.stdout).toMatch(
        /Expression\s+0 2 \* \* \* \(Europe\/Paris\)\nNext tick\s+\d{4}-.*Z \(in \d+ (min|h)\)/,
      );
      expect((await taskjet(["crons", "delete", "nightly", ...at(namespace)])).stdout).toBe("nightly deleted\n");
      const missing = await taskjet(["crons", "get", "nightly", ...at(namespace)]);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toBe("error: cron nightly not found\n");
    } finally {
      await tj.close();
      await engine.stop();
    }
  });

  it("events - push starts the matching task's run; list shows the event and the run it started", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    try {
      const got: unknown[] = [];
      const welcome = tj.task({
        name: "welcome",
        onEvents: ["user:created"],
        fn: async (input) => {
          got.push(input);
          return {};
        },
      });
      const worker = await tj.worker("w", { workflows: [welcome] });
      await worker.start();
      const push = await taskjet([
        "events",
        "push",
        "user:created",
        "--payload",
        '{"id":"u1"}',
        "-m",
        "src=cli",
        ...at(namespace),
      ]);
      expect(push.code).toBe(0);
      const eventId = push.stdout.trim();
      await eventually(() => (got.length === 1 ? true : undefined));
      expect(got[0]).toEqual({ id: "u1" });
      const list = await taskjet(["events", "list", "--json", ...at(namespace)]);
      const [event] = list.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
      expect(event).toMatchObject({ id: eventId, key: "user:created", additionalMetadata: { src: "cli" } });
      expect(event.runs).toEqual([{ taskName: "welcome", runId: expect.any(String) }]);
      const bad = await taskjet(["events", "push", "user:created", "--payload", "[1]", ...at(namespace)]);
      expect(bad.code).toBe(2);
    } finally {
      await tj.close();
      await engine.stop();
    }
  });

  it("webhooks - create prints the path; a POST with the key starts the task's run; list and delete", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace], http: "127.0.0.1:0" });
    const tj = await connectClient(nats.url, { namespace });
    try {
      const got: unknown[] = [];
      const paid = tj.task({
        name: "paid",
        onEvents: ["shop:paid"],
        fn: async (input) => {
          got.push(input);
          return {};
        },
      });
      const worker = await tj.worker("w", { workflows: [paid] });
      await worker.start();
      const created = await taskjet([
        "webhooks",
        "create",
        "shop",
        "--event-key",
        "shop:paid",
        "--auth",
        "apiKey",
        "--key",
        "k_0123456789",
        ...at(namespace),
      ]);
      expect(created.stderr).toBe("");
      const path = created.stdout.trim();
      expect(path).toBe(`/api/v1/namespaces/${namespace}/webhooks/shop`);
      await eventually(async () => {
        const res = await fetch(`http://${engine.httpAddress()}${path}`, {
          method: "POST",
          body: JSON.stringify({ order: 9 }),
          headers: { "content-type": "application/json", "x-api-key": "k_0123456789" },
        });
        return res.status === 202 ? true : undefined;
      });
      await eventually(() => (got.length === 1 ? true : undefined));
      expect(got[0]).toEqual({ order: 9 });
      const list = await taskjet(["webhooks", "list", ...at(namespace)]);
      expect(list.stdout).toMatch(/NAME\s+EVENT KEY\s+AUTH\s+PATH\nshop\s+shop:paid\s+apiKey/);
      expect(list.stdout).not.toContain("k_0123456789");
      const missing = await taskjet([
        "webhooks",
        "create",
        "x",
        "--event-key",
        "k",
        "--auth",
        "hmac",
        ...at(namespace),
      ]);
      expect(missing.code).toBe(2);
      expect(missing.stderr).toContain("--auth hmac needs --secret");
      expect((await taskjet(["webhooks", "delete", "shop", ...at(namespace)])).stdout).toBe("shop deleted\n");
    } finally {
      await tj.close();
      await engine.stop();
    }
  });

  it("runs state --at - the state after any event of the history (time travel)", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await helloWorker(namespace);
    try {
      // Held until its start is recorded (TaskStarted), so the history has a RUNNING point.
      let release: () => void = () => {};
      const gate = new Promise<void>((r) => {
        release = r;
      });
      const held = tj.task({
        name: "held",
        fn: async (input: { name: string }) => {
          await gate;
          return { greeting: `hello ${input.name}` };
        },
      });
      const heldWorker = await tj.worker("held-worker", { workflows: [held] });
      await heldWorker.start();
      const ref = await held.runNoWait({ name: "tt" });
      await eventually(async () => ((await tj.runs.get(ref.runId)).status === "RUNNING" ? true : undefined));
      release();
      await ref.result();
      const seqs: number[] = [];
      for await (const e of tj.runs.history(ref.runId)) seqs.push(e.seq);
      expect(seqs).toHaveLength(3);
      const conn = at(namespace);
      const stateAt = async (runId: string, point: string) =>
        JSON.parse((await taskjet(["runs", "state", runId, "--at", point, "--json", ...conn])).stdout);
      expect((await stateAt(ref.runId, String(seqs[0]))).status).toBe("QUEUED");
      expect((await stateAt(ref.runId, String(seqs[1]))).status).toBe("RUNNING");
      expect((await stateAt(ref.runId, String(seqs[2]))).output).toEqual({ greeting: "hello tt" });
      // A short attempt: its result carries its start, so the state goes from QUEUED to COMPLETED (started, by whom).
      const quick = await tj.runNoWait("hello", { name: "quick" });
      await quick.result();
      const quickSeqs: number[] = [];
      for await (const e of tj.runs.history(quick.runId)) quickSeqs.push(e.seq);
      expect(quickSeqs).toHaveLength(2);
      expect((await stateAt(quick.runId, String(quickSeqs[0]))).status).toBe("QUEUED");
      const quickDone = await stateAt(quick.runId, String(quickSeqs[1]));
      expect(quickDone).toMatchObject({ status: "COMPLETED", output: { greeting: "hello quick" } });
      expect(quickDone.tasks[0]).toMatchObject({ workerName: "cli-test", startedAt: expect.any(String) });
      const now = await taskjet(["runs", "state", ref.runId, ...conn]);
      expect(now.stdout).toMatch(/Status\s+COMPLETED/);
      expect(now.stdout).toContain(`as of sequence ${seqs[2]}`);
      const before = await taskjet(["runs", "state", ref.runId, "--at", "2000-01-01T00:00:00Z", ...conn]);
      // A bad value for this run, caught by the SDK (ValidationError): a usage error, named as ISO.
      expect(before.code).toBe(2);
      expect(before.stderr).toContain("has no event at or before 2000-01-01T00:00:00.000Z");
      const bad = await taskjet(["runs", "state", ref.runId, "--at", "yesterday", ...conn]);
      expect(bad.code).toBe(2);
    } finally {
      await tj.close();
      await engine.stop();
    }
  });

  it("admin verify/rebuild - a projection that differs from the log is reported (exit 1), rebuilt, then verified", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await helloWorker(namespace);
    try {
      const refs = await Promise.all([1, 2, 3].map((i) => tj.runNoWait("hello", { name: `n${i}` })));
      await Promise.all(refs.map((r) => r.result()));
      await eventually(async () => ((await tj.runs.list()).length === 3 ? true : undefined));
      // Refused while an engine leads the namespace: it writes the projection meanwhile.
      const live = await taskjet(["admin", "rebuild", ...at(namespace)]);
      expect(live.code).toBe(1);
      expect(live.stderr).toMatch(/^error: engine \S+ \(.*\) leads namespace \S+: stop the engines first/);
      await engine.stop();
      const ok = await taskjet(["admin", "verify", ...at(namespace)]);
      // Short attempts: RunCreated, then TaskCompleted carrying its start.
      expect(ok.stdout).toBe("3 runs, 6 events: 0 differing\n");
      expect(ok.code).toBe(0);
      // Corrupt one projection behind the engine's back: a state under the run's key, written after the page that has
      // the run (the later entry of a run is its projection).
      const kv = await new Kvm(tj.connection.nc).open("TJ_RUNS");
      // A state an engine before `queuedSeq` wrote: no difference.
      const older = await tj.runs.get(refs[0]?.runId as string);
      const tasks = older.tasks.map(({ queuedSeq: _q, ...t }) => t);
      await kv.put(`${namespace}.${older.runId}`, JSON.stringify({ ...older, tasks }));
      expect((await taskjet(["admin", "verify", ...at(namespace)])).stdout).toBe("3 runs, 6 events: 0 differing\n");
      const victim = refs[1]?.runId as string;
      await kv.put(`${namespace}.${victim}`, JSON.stringify({ ...(await tj.runs.get(victim)), status: "FAILED" }));
      const bad = await taskjet(["admin", "verify", ...at(namespace)]);
      expect(bad.code).toBe(1);
      expect(bad.stdout).toContain(`${victim}: projection differs in status (status FAILED, log says COMPLETED)`);
      const rebuilt = await taskjet(["admin", "rebuild", ...at(namespace)]);
      expect(rebuilt.stdout).toMatch(
        /^rebuilt 3 runs from 6 events \(0 rejected\) in \d+ ms: \d+ events\/s \(read and fold \d+ ms\)\n$/,
      );
      expect((await taskjet(["admin", "verify", ...at(namespace)])).code).toBe(0);
    } finally {
      await tj.close();
      await engine.stop();
    }
  });

  it("runs logs - a task's ctx.logger lines are stored with its run, every attempt's, and shown in order", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    try {
      const chatty = tj.task({
        name: "chatty",
        retries: 1,
        fn: async (_input, ctx) => {
          ctx.logger.info("starting", { attempt: ctx.retryCount() });
          if (ctx.retryCount() === 0) {
            ctx.logger.error("giving up this attempt");
            throw new Error("first fails");
          }
          ctx.logger.warn("second time lucky");
          return {};
        },
      });
      const worker = await tj.worker("w", { workflows: [chatty] });
      await worker.start();
      const ref = await chatty.runNoWait({});
      await ref.result();
      const lines = await eventually(async () => {
        const l = await tj.logs.list(ref.runId);
        return l.length === 4 ? l : undefined;
      });
      expect(lines.map((l) => [l.attempt, l.level, l.message])).toEqual([
        [0, "info", "starting"],
        [0, "error", "giving up this attempt"],
        [1, "info", "starting"],
        [1, "warn", "second time lucky"],
      ]);
      const out = await taskjet(["runs", "logs", ref.runId, ...at(namespace)]);
      expect(out.stdout.trim().split("\n")).toHaveLength(4);
      expect(out.stdout).toMatch(/INFO {2}attempt 0 starting \{"attempt":0\}/);
      expect(out.stdout).toMatch(/WARN {2}attempt 1 second time lucky/);
    } finally {
      await tj.close();
      await engine.stop();
    }
  });

  it("runs logs --follow - prints each line as the running task logs it and exits when the run ends", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    let release: () => void = () => {};
    const released = new Promise<void>((r) => {
      release = r;
    });
    try {
      const gated = tj.task({
        name: "gated",
        fn: async (_input, ctx) => {
          ctx.logger.info("before the gate");
          await released;
          ctx.logger.info("after the gate", { n: 2 });
          return {};
        },
      });
      const worker = await tj.worker("w", { workflows: [gated] });
      await worker.start();
      const ref = await gated.runNoWait({});
      const child = spawn(process.execPath, [CLI_BIN, "runs", "logs", ref.runId, "--follow", ...at(namespace)], {
        cwd,
        env: childEnv(),
        stdio: "pipe",
      });
      let live = "";
      child.stdout?.on("data", (d: Buffer) => {
        live += d.toString();
      });
      const exit = collectOutput(child, 20_000, ["runs", "logs", "--follow"]);
      // The first line shows while the task is still held at the gate.
      await eventually(() => (live.includes("before the gate") ? true : undefined));
      // Held at the gate: its start gets recorded (an attempt records it once it has run a while).
      await eventually(async () => ((await ref.status()) === "RUNNING" ? true : undefined));
      expect(child.exitCode).toBeNull();
      expect(live).not.toContain("after the gate");
      release();
      const out = await exit;
      expect(out.code).toBe(0);
      expect(out.stderr).toBe("");
      expect(out.stdout.trim().split("\n")).toHaveLength(2);
      expect(out.stdout).toMatch(/INFO {2}attempt 0 before the gate\n.*INFO {2}attempt 0 after the gate \{"n":2\}\n$/);
      expect(await ref.status()).toBe("COMPLETED");
      const unknown = await taskjet(["runs", "logs", "no-such-run", "--follow", ...at(namespace)]);
      expect(unknown.code).toBe(1);
    } finally {
      release();
      await tj.close();
      await engine.stop();
    }
  });

  it("ratelimits - set creates and changes a static limit, list shows it; a bad key or limit is refused", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    try {
      const set = await taskjet([
        "ratelimits",
        "set",
        "openai",
        "--limit",
        "60",
        "--duration",
        "MINUTE",
        ...at(namespace),
      ]);
      expect(set.stderr).toBe("");
      expect(set.stdout).toBe("openai: 60 per MINUTE\n");
      await taskjet(["ratelimits", "set", "openai", "--limit", "30", "--duration", "SECOND", ...at(namespace)]);
      await taskjet(["ratelimits", "set", "mail", "--limit", "5", "--duration", "DAY", ...at(namespace)]);
      const list = await taskjet(["ratelimits", "list", "--json", ...at(namespace)]);
      expect(
        list.stdout
          .trim()
          .split("\n")
          .map((l) => JSON.parse(l)),
      ).toEqual([
        { key: "mail", limit: 5, duration: "DAY" },
        { key: "openai", limit: 30, duration: "SECOND" },
      ]);
      const table = await taskjet(["ratelimits", "list", ...at(namespace)]);
      expect(table.stdout).toMatch(/KEY\s+LIMIT\s+PER\nmail\s+5\s+DAY\nopenai\s+30\s+SECOND/);
      const badKey = await taskjet([
        "ratelimits",
        "set",
        "no spaces",
        "--limit",
        "1",
        "--duration",
        "DAY",
        ...at(namespace),
      ]);
      // A bad argument value the SDK caught: a usage error (2), as commander's own.
      expect(badKey.code).toBe(2);
      expect(badKey.stderr).toMatch(/ratelimit\.key.*"no spaces"/);
      const badDuration = await taskjet([
        "ratelimits",
        "set",
        "k",
        "--limit",
        "1",
        "--duration",
        "WEEK",
        ...at(namespace),
      ]);
      expect(badDuration.code).toBe(2);
      expect(badDuration.stderr).toMatch(/WEEK/);
    } finally {
      await engine.stop();
    }
  });

  it("cli - TASKJET_NATS_URL and TASKJET_NAMESPACE are used without flags", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    try {
      const env = { TASKJET_NATS_URL: nats.url, TASKJET_NAMESPACE: namespace };
      const res = await taskjet(["trigger", "nobody-runs-this", "--json"], { env });
      expect(res.code).toBe(0);
      expect((JSON.parse(res.stdout) as { namespace: string }).namespace).toBe(namespace);
      const bad = await taskjet(["runs", "list"], { env: { ...env, TASKJET_NAMESPACE: "bad ns" } });
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain("TASKJET_NAMESPACE");
    } finally {
      await engine.stop();
    }
  });
});

describe("cli dev", () => {
  it("dev - serves the example worker until SIGINT, then stops nats-server and exits 0", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tj-dev-"));
    const port = await freePort();
    const child = spawn(process.execPath, [CLI_BIN, "dev", "--port", String(port), "--dir", dir, "--example"], {
      cwd,
      env: childEnv(),
      stdio: "pipe",
    });
    const exit = collectOutput(child, 45_000, ["dev"]);
    try {
      const devFile = join(dir, "dev.json");
      const info = await eventually(
        async () => {
          if (child.exitCode !== null) throw new Error(`taskjet dev exited with ${child.exitCode}`);
          return existsSync(devFile)
            ? (JSON.parse(await readFile(devFile, "utf8")) as {
                url: string;
                pid: number;
                namespace: string;
                http?: string;
              })
            : undefined;
        },
        20_000,
        "dev.json",
      );
      expect(info.url).toBe(`nats://127.0.0.1:${port}`);
      expect(info.namespace).toBe("default");
      expect(isAlive(info.pid)).toBe(true);
      // Where the dashboard is, for scripts (npm run up prints it from here).
      expect((await fetch(`http://${info.http}/healthz`)).status).toBe(200);

      const res = await taskjet(["trigger", "hello", "--input", '{"name":"dev"}', "--wait", "--nats", info.url]);
      expect(res.stderr).toBe("");
      expect(res.code).toBe(0);
      expect(JSON.parse(res.stdout)).toEqual({ greeting: "hello, dev!" });

      child.kill("SIGINT");
      const result = await exit;
      expect(result.stderr).toBe("");
      expect(result.code).toBe(0);
      expect(result.stdout).toContain("taskjet dev is ready");
      expect(isAlive(info.pid)).toBe(false);
      expect(existsSync(devFile)).toBe(false);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exit.catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("dev - without --port, a second start listens where the first did (4222, or the free port picked when it is taken)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tj-dev-port-"));
    const once = async (): Promise<string> => {
      const child = spawn(process.execPath, [CLI_BIN, "dev", "--dir", dir, "--http", "off"], {
        cwd,
        env: childEnv(),
        stdio: "pipe",
      });
      const exit = collectOutput(child, 45_000, ["dev"]);
      try {
        const devFile = join(dir, "dev.json");
        const info = await eventually(
          async () =>
            existsSync(devFile) ? (JSON.parse(await readFile(devFile, "utf8")) as { url: string }) : undefined,
          20_000,
          "dev.json",
        );
        child.kill("SIGINT");
        expect((await exit).code).toBe(0);
        return info.url;
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
        await exit.catch(() => undefined);
      }
    };
    try {
      const first = await once();
      expect(await once()).toBe(first);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("dev - without nats-server exits 1 and says how to install it", async () => {
    const res = await taskjet(["dev", "--dir", join(cwd, "no-server")], {
      env: { TASKJET_NATS_SERVER_BIN: join(cwd, "no-such-nats-server") },
    });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain("nats-server not found");
    expect(res.stderr).toContain("sudo apt-get install -y nats-server");
    expect(res.stderr).toContain("https://github.com/nats-io/nats-server/releases");
  });
});

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** A loopback port nothing listens on right now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

describe("cli - fixes", () => {
  it("output - a reader that closes the pipe early ends the CLI quietly with exit 0, no EPIPE stack", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    try {
      for (let i = 0; i < 3; i++) await taskjet(["trigger", "hello", ...at(namespace)]);
      const runId = (await taskjet(["trigger", "hello", ...at(namespace)])).stdout.trim();
      for (const args of [
        ["completion", "--help"],
        ["completion", "bash"],
        ["runs", "list", ...at(namespace)],
        ["runs", "history", runId, "--json", ...at(namespace)],
      ]) {
        const child = spawn(process.execPath, [CLI_BIN, ...args], { cwd, env: childEnv(), stdio: "pipe" });
        // The reader goes away before the CLI writes a byte: its first write fails with EPIPE.
        child.stdout.destroy();
        const res = await collectOutput(child, 20_000, args);
        expect(res.stderr, args.join(" ")).not.toContain("EPIPE");
        expect(res.stderr, args.join(" ")).toBe("");
        expect(res.code, args.join(" ")).toBe(0);
      }
      // Through a shell, as people do it.
      const shell = spawn("sh", ["-c", `"${process.execPath}" "${CLI_BIN}" completion bash | head -1`], {
        cwd,
        env: childEnv(),
        stdio: "pipe",
      });
      const piped = await collectOutput(shell, 20_000, ["completion bash | head -1"]);
      expect(piped.stdout).toMatch(/^# taskjet completion for bash/);
      expect(piped.stderr).toBe("");
    } finally {
      await engine.stop();
    }
  });

  it("trigger --bulk - refuses --at, --delay and --idempotency-key (exit 2) and names every bad line of the file", async () => {
    const namespace = uniqueNamespace();
    const file = join(cwd, "fixes-bulk.jsonl");
    await writeFile(file, '{"name":"a"}\n');
    for (const [flags, named] of [
      [["--at", new Date(Date.now() + 60_000).toISOString()], "--at"],
      [["--delay", "10m"], "--delay"],
      [["--idempotency-key", "k"], "--idempotency-key"],
    ] as const) {
      const res = await taskjet(["trigger", "hello", "--bulk", file, ...flags, ...at(namespace)]);
      expect(res.code, named).toBe(2);
      expect(res.stderr).toContain(`--bulk does not go with ${named}`);
      expect(res.stdout).toBe("");
    }
    await writeFile(file, '{"name":"a"}\nnot json\n[1]\n');
    const bad = await taskjet(["trigger", "hello", "--bulk", file, ...at(namespace)]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("line 2: not JSON");
    expect(bad.stderr).toContain("line 3: must be a JSON object");
    // Many bad lines: the first 20 are named, the rest counted.
    await writeFile(file, `${Array.from({ length: 25 }, (_, i) => `bad ${i}`).join("\n")}\n`);
    const many = await taskjet(["trigger", "hello", "--bulk", file, ...at(namespace)]);
    expect(many.code).toBe(2);
    expect(many.stderr).toContain("25 bad lines");
    expect(many.stderr).toContain("line 20: not JSON");
    expect(many.stderr).not.toContain("line 21:");
    expect(many.stderr).toContain("and 5 more bad lines");
  });

  it("status, workers list, crons list, admin verify - on a NATS no engine ran against: none running, or the hint", async () => {
    const fresh = await startNatsServer();
    try {
      const on = ["--nats", fresh.url];
      const status = await taskjet(["status", ...on]);
      expect(status.stderr).toBe("");
      expect(status.code).toBe(0);
      expect(status.stdout).toContain(`NATS     ${fresh.url.replace("nats://", "")}`);
      expect(status.stdout).toContain("Engines  none running");
      const json = await taskjet(["status", "--json", ...on]);
      expect(json.code).toBe(0);
      expect(JSON.parse(json.stdout)).toMatchObject({ replicas: [], leases: {}, streams: [] });
      for (const args of [
        ["workers", "list"],
        ["crons", "list"],
        ["crons", "get", "nightly"],
        ["admin", "verify"],
        ["admin", "rebuild"],
      ]) {
        const res = await taskjet([...args, ...on]);
        expect(res.code, args.join(" ")).toBe(1);
        expect(res.stderr, args.join(" ")).toContain("start an engine against this NATS first");
      }
    } finally {
      await fresh.stop();
    }
  });

  it("bad argument values the SDK catches exit 2 (usage), and runs state --at says what it takes", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    try {
      const runId = (await taskjet(["trigger", "hello", ...at(namespace)])).stdout.trim();
      for (const args of [
        ["events", "push", "bad key!"],
        ["ratelimits", "set", "bad key", "--limit", "5", "--duration", "DAY"],
        ["webhooks", "create", "x", "--event-key", "k", "--auth", "basic", "--username", "u", "--password", "p"],
        ["trigger", "hello", "--at", "2099-01-01T00:00:00Z"],
        ["runs", "state", runId, "--at", "0"],
      ]) {
        const res = await taskjet([...args, ...at(namespace)]);
        expect(res.code, `${args.join(" ")}: ${res.stderr}`).toBe(2);
        expect(res.stderr).toMatch(/^error: /);
      }
      const zero = await taskjet(["runs", "state", runId, "--at", "0", ...at(namespace)]);
      expect(zero.stderr).not.toContain("{ seq }");
      expect(zero.stderr).toContain("--at must be a sequence number from 1");
      // A time before the run began: named as ISO, not as Date.toString().
      const before = await taskjet(["runs", "state", runId, "--at", "2026-01-02T03:04:05Z", ...at(namespace)]);
      expect(before.stderr).toContain("no event at or before 2026-01-02T03:04:05.000Z");
      expect(before.stderr).not.toContain("GMT");
    } finally {
      await engine.stop();
    }
  });

  it("help - every webhooks create example of --help is accepted", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    try {
      const help = await taskjet(["webhooks", "create", "--help"]);
      const examples = help.stdout
        .slice(help.stdout.indexOf("Examples:"))
        .split("\n")
        .map((l) => l.trim())
        .filter((l) => l.startsWith("taskjet "));
      expect(examples.length).toBeGreaterThanOrEqual(3);
      for (const example of examples) {
        const line = `"${process.execPath}" "${CLI_BIN}" ${example.slice("taskjet ".length)} --nats ${nats.url} --namespace ${namespace}`;
        const res = await collectOutput(spawn("bash", ["-c", line], { cwd, env: childEnv(), stdio: "pipe" }), 20_000, [
          example,
        ]);
        expect(res.code, `${example}: ${res.stderr}`).toBe(0);
      }
    } finally {
      await engine.stop();
    }
  });

  it("runs logs of a run that does not exist is not found (exit 1); history --follow prints only the error", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    try {
      const logs = await taskjet(["runs", "logs", "nonexistent", ...at(namespace)]);
      expect(logs.code).toBe(1);
      expect(logs.stderr).toContain("run nonexistent not found");
      // A run that logged nothing is no error.
      const runId = (await taskjet(["trigger", "hello", ...at(namespace)])).stdout.trim();
      const none = await taskjet(["runs", "logs", runId, ...at(namespace)]);
      expect(none.stderr).toBe("");
      expect(none.code).toBe(0);
      const follow = await taskjet(["runs", "history", "--follow", "nonexistent", ...at(namespace)]);
      expect(follow.code).toBe(1);
      expect(follow.stderr).toContain("not found");
      expect(follow.stdout).toBe("");
    } finally {
      await engine.stop();
    }
  });

  it("trigger --wait --json prints a JSON line for a cancelled run too (exit 1)", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    try {
      const runId = `cancelme${Math.random().toString(36).slice(2, 10)}`;
      // No worker runs `idle`: the run waits QUEUED until cancelled.
      const waiting = taskjet(["trigger", "idle", "--run-id", runId, "--wait", "--json", ...at(namespace)]);
      await eventually(async () => ((await tj.runs.get(runId).catch(() => undefined)) ? true : undefined));
      await tj.ref(runId).cancel("not today");
      const res = await waiting;
      expect(res.code).toBe(1);
      expect(JSON.parse(res.stdout)).toEqual({ runId, status: "CANCELLED", reason: "not today" });
      expect(res.stderr).toContain("was cancelled");
    } finally {
      await tj.close();
      await engine.stop();
    }
  });

  it("scheduled get of a run that is no longer scheduled says so (exit 1), as delete does", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await helloWorker(namespace);
    try {
      const run = await taskjet(["trigger", "hello", "--wait", "--json", ...at(namespace)]);
      const { runId } = JSON.parse(run.stdout) as { runId: string };
      for (const args of [
        ["scheduled", "get", runId],
        ["scheduled", "get", runId, "--json"],
        ["scheduled", "delete", runId],
      ]) {
        const res = await taskjet([...args, ...at(namespace)]);
        expect(res.code, args.join(" ")).toBe(1);
        expect(res.stderr).toContain(`run ${runId} is not scheduled: it is COMPLETED`);
        expect(res.stdout).toBe("");
      }
    } finally {
      await tj.close();
      await engine.stop();
    }
  });

  it("completion - bash, zsh and fish complete the values of runs list --status", async () => {
    const values = "SCHEDULED PENDING QUEUED RUNNING COMPLETED FAILED CANCELLED";
    const bash = await taskjet(["completion", "bash"]);
    expect(bash.stdout).toContain(`'taskjet runs list|--status') echo '${values}' ;;`);
    expect(bash.stdout).toContain(`'taskjet runs cancel|--status') echo '${values}' ;;`);
    const zsh = await taskjet(["completion", "zsh"]);
    expect(zsh.stdout).toContain(`'taskjet runs list|--status' "${values}"`);
    const fish = await taskjet(["completion", "fish"]);
    expect(fish.stdout).toContain(`-s s -l status -x -a '${values}'`);
  });
});
