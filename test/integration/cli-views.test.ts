import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildProgram, type CliContext, createStyle, EXAMPLES, ExitCodes } from "@taskjet/cli";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI_BIN, type CliResult, childEnv, collectOutput, runCli } from "../harness/cli.js";
import { connectClient, eventually, startEngine, uniqueNamespace, useNatsServer } from "../harness/fixtures.js";

const nats = useNatsServer();

/** Short, so heartbeats (every third of it) carry a worker's load within half a second. */
const WORKER_TTL_MS = 1500;

let cwd: string;
beforeAll(async () => {
  if (!existsSync(CLI_BIN)) throw new Error(`${CLI_BIN} is missing: build first (npx turbo run build)`);
  cwd = await mkdtemp(join(tmpdir(), "tj-cli-views-"));
});
afterAll(async () => {
  await rm(cwd, { recursive: true, force: true });
});

function taskjet(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return runCli(args, { cwd, env });
}

/** `--nats <harness url> --namespace <ns>`: never the machine's own NATS. */
function at(namespace: string): string[] {
  return ["--nats", nats.url, "--namespace", namespace];
}

/** JSON Lines output, parsed. */
function lines<T>(res: CliResult): T[] {
  expect(res.stderr).toBe("");
  expect(res.code).toBe(0);
  return res.stdout
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as T);
}

/**
 * Runs the CLI with exactly these colour variables: the harness passes the test process's environment on, which
 * may have FORCE_COLOR or NO_COLOR of its own.
 */
function withColourEnv(args: string[], env: Record<string, string>): Promise<CliResult> {
  const base = childEnv();
  delete base.NO_COLOR;
  delete base.FORCE_COLOR;
  delete base.TERM;
  const child = spawn(process.execPath, [CLI_BIN, ...args], { cwd, env: { ...base, ...env }, stdio: "pipe" });
  return collectOutput(child, 20_000, args);
}

const ESC = "\x1b[";

type Command = ReturnType<typeof buildProgram>;

/** Every command of the program, in-process (no server needed), with its path. */
function commands(): { path: string; cmd: Command; help: () => string }[] {
  let out = "";
  const ctx: CliContext = {
    io: {
      out: (t) => {
        out += t;
      },
      err: (t) => {
        out += t;
      },
      interactive: false,
    },
    env: {},
    cwd,
    exitCode: ExitCodes.ok,
    style: createStyle(false),
  };
  const program = buildProgram(ctx);
  const all: { path: string; cmd: Command; help: () => string }[] = [];
  const visit = (cmd: Command, path: string) => {
    all.push({
      path,
      cmd,
      help: () => {
        out = "";
        cmd.outputHelp();
        return out;
      },
    });
    for (const c of cmd.commands) visit(c, path ? `${path} ${c.name()}` : c.name());
  };
  visit(program, "");
  return all;
}

describe("cli views", () => {
  it("workers list - a running worker shows its slots used, what it runs, labels and heartbeat age", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace], workerTtlMs: WORKER_TTL_MS });
    const tj = await connectClient(nats.url, { namespace });
    let release!: () => void;
    const released = new Promise<void>((r) => {
      release = r;
    });
    try {
      const hold = tj.task({
        name: "hold",
        fn: async () => {
          await released;
          return { ok: true };
        },
      });
      const worker = await tj.worker("viewer", { workflows: [hold], slots: 3, labels: { region: "eu" } });
      await worker.start();
      const ref = await hold.runNoWait({});
      await eventually(async () => ((await tj.runs.get(ref.runId)).status === "RUNNING" ? true : undefined));

      type Listed = {
        workerId: string;
        name: string;
        slots: number;
        usedSlots: number;
        runningTasks: Record<string, number>;
        labels: Record<string, unknown>;
        tasks: string[];
        heartbeatAgeMs: number;
        draining: boolean;
      };
      // The registration carries the load as of the next heartbeat.
      const listed = await eventually(async () => {
        const all = lines<Listed>(await taskjet(["workers", "list", "--json", ...at(namespace)]));
        return all.length === 1 && all[0]?.usedSlots === 1 ? all[0] : undefined;
      });
      expect(listed).toMatchObject({
        workerId: worker.id,
        name: "viewer",
        slots: 3,
        usedSlots: 1,
        runningTasks: { hold: 1 },
        labels: { region: "eu" },
        tasks: ["hold"],
        draining: false,
      });
      expect(listed.heartbeatAgeMs).toBeGreaterThanOrEqual(0);
      expect(listed.heartbeatAgeMs).toBeLessThan(WORKER_TTL_MS);

      const table = await taskjet(["workers", "list", ...at(namespace)]);
      expect(table.code).toBe(0);
      const [header, row] = table.stdout.trim().split("\n");
      expect(header).toMatch(/^NAME\s+ID\s+SLOTS\s+DURABLE\s+HEARTBEAT\s+RUNNING\s+LABELS$/);
      expect(row).toMatch(
        new RegExp(`^viewer\\s+${worker.id}\\s+1/3\\s+-\\s+(just now|\\d+ s ago)\\s+hold \\(1\\)\\s+region=eu$`),
      );

      release();
      await ref.result();
      await eventually(async () => {
        const all = lines<Listed>(await taskjet(["workers", "list", "--json", ...at(namespace)]));
        return all[0]?.usedSlots === 0 && Object.keys(all[0].runningTasks).length === 0 ? true : undefined;
      });
      await worker.stop();
      const gone = await taskjet(["workers", "list", ...at(namespace)]);
      expect(gone.stdout).toBe(`no live workers in namespace ${namespace}\n`);
    } finally {
      release();
      await tj.close();
      await engine.stop();
    }
  });

  it("terminal - stored text that would drive the terminal (a worker named with escape sequences) prints escaped", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    try {
      const noop = tj.task({ name: "noop", fn: async () => ({}) });
      const worker = await tj.worker("evil\u001b[2J\u001b]0;pwned\u0007\u001b[31mred", { workflows: [noop] });
      await worker.start();
      const table = await taskjet(["workers", "list", ...at(namespace)]);
      // Not colouring (not a terminal): a colour code in it is escaped too.
      expect(table.stdout).toContain("evil\\u001b[2J\\u001b]0;pwned\\u0007\\u001b[31mred");
      expect(table.stdout).not.toContain("\u001b");
      // JSON keeps the name as it is (JSON escapes it).
      expect(lines<{ name: string }>(await taskjet(["workers", "list", "--json", ...at(namespace)]))[0]?.name).toBe(
        "evil\u001b[2J\u001b]0;pwned\u0007\u001b[31mred",
      );
      await worker.stop();
    } finally {
      await tj.close();
      await engine.stop();
    }
  });

  it("queues - a task nobody runs shows its depth, the oldest wait and that no worker has it", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace], workerTtlMs: WORKER_TTL_MS });
    const tj = await connectClient(nats.url, { namespace });
    try {
      const before = Date.now();
      const first = await tj.runNoWait("nobody", { n: 1 });
      for (const n of [2, 3]) await tj.runNoWait("nobody", { n });
      type Queue = {
        taskName: string;
        queued: number;
        oldestQueuedAt: string;
        oldestAgeMs: number;
        running: number;
        retrying: number;
        waiting: unknown;
        workers: number;
      };
      // At once: `queues` reads runs as `runs.list` does, the projection and the log after its checkpoint (the
      // projection itself writes a queued run only after 10 s).
      const all = lines<Queue>(await taskjet(["queues", "--json", ...at(namespace)]));
      expect(all).toHaveLength(1);
      const queue = all[0] as Queue;
      const created = (await tj.runs.get(first.runId)).createdAt;
      expect(queue).toMatchObject({ taskName: "nobody", queued: 3, running: 0, retrying: 0, workers: 0 });
      expect(queue.oldestQueuedAt).toBe(created);
      expect(queue.oldestAgeMs).toBeGreaterThanOrEqual(0);
      expect(queue.oldestAgeMs).toBeLessThanOrEqual(Date.now() - before + 1000);

      const tableFrom = Date.now();
      const table = await taskjet(["queues", ...at(namespace)]);
      const tableTo = Date.now();
      expect(table.code).toBe(0);
      const [header, row] = table.stdout.trim().split("\n");
      expect(header).toMatch(/^TASK\s+QUEUED\s+OLDEST\s+RUNNING\s+RETRYING\s+WORKERS\s+OLDEST WAITS ON$/);
      const oldest = /^nobody\s+3\s+(just now|\d+ s ago)\s+0\s+0\s+0\s+no live worker has registered this task$/.exec(
        row ?? "",
      )?.[1];
      expect(oldest, row).toBeDefined();
      // The oldest run's age when the CLI read it: under a second reads "just now", older "N s ago".
      if (oldest === "just now") expect(tableFrom - Date.parse(created)).toBeLessThan(1000);
      else expect(tableTo - Date.parse(created)).toBeGreaterThanOrEqual(1000);

      const other = await taskjet(["queues", "--task", "someone-else", "--json", ...at(namespace)]);
      expect(lines(other)).toEqual([]);
    } finally {
      await tj.close();
      await engine.stop();
    }
  });

  it("colour - status colours only when forced (FORCE_COLOR, --color), never with NO_COLOR or --no-color", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace], workerTtlMs: WORKER_TTL_MS });
    const tj = await connectClient(nats.url, { namespace });
    try {
      const hello = tj.task({ name: "hello", fn: async () => ({ hi: true }) });
      const worker = await tj.worker("colours", { workflows: [hello] });
      await worker.start();
      const { runId } = await hello.runNoWait({});
      await tj.ref(runId).result();
      const list = ["runs", "list", ...at(namespace)];
      await eventually(async () => ((await taskjet(list)).stdout.includes(runId) ? true : undefined));

      const green = `${ESC}32mCOMPLETED${ESC}39m`;
      // Not a terminal, nothing forced: plain.
      const plain = await withColourEnv(list, {});
      expect(plain.code).toBe(0);
      expect(plain.stdout).toContain("COMPLETED");
      expect(plain.stdout).not.toContain(ESC);
      // The age column is relative.
      expect(plain.stdout).toMatch(new RegExp(`${runId}\\s+hello\\s+COMPLETED\\s+(just now|\\d+ s ago)`));

      expect((await withColourEnv(list, { FORCE_COLOR: "1" })).stdout).toContain(green);
      expect((await withColourEnv([...list, "--color"], {})).stdout).toContain(green);
      expect((await withColourEnv(["--color", ...list], {})).stdout).toContain(green);
      expect((await withColourEnv(["runs", "get", runId, "--color", ...at(namespace)], {})).stdout).toContain(green);

      for (const [args, env] of [
        [list, { NO_COLOR: "1" }],
        [list, { NO_COLOR: "1", FORCE_COLOR: "1" }],
        [[...list, "--color"], { NO_COLOR: "1" }],
        [[...list, "--no-color"], { FORCE_COLOR: "1" }],
        [["runs", "history", runId, ...at(namespace)], { NO_COLOR: "1", FORCE_COLOR: "1" }],
      ] as [string[], Record<string, string>][]) {
        const res = await withColourEnv(args, env);
        expect(res.code).toBe(0);
        expect(res.stdout, `${args.join(" ")} with ${JSON.stringify(env)}`).not.toContain(ESC);
      }
      // JSON is never coloured.
      const json = await withColourEnv([...list, "--json", "--color"], {});
      expect(json.stdout).not.toContain(ESC);
      expect(JSON.parse(json.stdout)).toHaveLength(1);
      await worker.stop();
    } finally {
      await tj.close();
      await engine.stop();
    }
  });

  it("help - every command's --help has examples, and every command that prints results takes --json", async () => {
    const all = commands();
    expect(all.map((c) => c.path)).toEqual(expect.arrayContaining(["workers list", "queues", "completion"]));
    for (const { path, cmd, help } of all) {
      expect(help(), `taskjet ${path} --help`).toMatch(/\nExamples:\n {2}\S/);
      // Leaves print something; groups only list their subcommands.
      if (cmd.commands.length === 0) {
        expect(
          cmd.options.some((o) => o.long === "--json"),
          `taskjet ${path} has no --json`,
        ).toBe(true);
      }
    }
    // Every example names a command that exists.
    const paths = new Set(all.map((c) => c.path || "taskjet"));
    for (const path of Object.keys(EXAMPLES)) expect(paths, path).toContain(path);
    // And through the binary, as a person types it.
    const res = await taskjet(["queues", "--help"]);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain("Examples:\n  taskjet queues");
  });

  it("completion - bash, zsh and fish scripts name the subcommands and options; bash parses", async () => {
    const bash = await taskjet(["completion", "bash"]);
    expect(bash.code).toBe(0);
    expect(bash.stdout).toContain("complete -o default -F _taskjet taskjet");
    expect(bash.stdout).toContain("'taskjet runs') echo 'list get cancel replay state logs history' ;;");
    expect(bash.stdout).toMatch(/'taskjet'\) echo '[^']*\bworkers\b[^']*\bqueues\b[^']*\bcompletion\b/);
    expect(bash.stdout).toContain("'taskjet workers list') echo '--json --nats --namespace");
    expect(bash.stdout).toContain("'taskjet dev|--log-format') echo 'pretty json' ;;");
    expect(spawnSync("bash", ["-n"], { input: bash.stdout }).status).toBe(0);

    // A completion as bash asks for it: `taskjet runs l<Tab>`.
    const probe = `${bash.stdout}\nCOMP_WORDS=(taskjet runs l); COMP_CWORD=2; _taskjet; echo "\${COMPREPLY[*]}"`;
    expect(spawnSync("bash", ["-c", probe], { encoding: "utf8" }).stdout.trim()).toBe("list logs");

    const zsh = await taskjet(["completion", "zsh"]);
    expect(zsh.stdout.startsWith("#compdef taskjet\n")).toBe(true);
    expect(zsh.stdout).toContain("workers:live workers");
    const fish = await taskjet(["completion", "fish"]);
    expect(fish.stdout).toContain("complete -c taskjet -f -n '__taskjet_at \\'taskjet\\'' -a 'queues'");

    const tree = lines<{ key: string }>(await taskjet(["completion", "--json"]));
    expect(tree.map((n) => n.key)).toContain("taskjet workers list");
    const none = await taskjet(["completion"]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain("name the shell: bash, zsh, fish");
    expect((await taskjet(["completion", "tcsh"])).code).toBe(2);
  });
});
