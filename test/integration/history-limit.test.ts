import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createEngine } from "@taskjet/engine";
import { HISTORY_WARN_EVENTS } from "@taskjet/sdk";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { runCli } from "../harness/cli.js";
import { connectClient, eventually, uniqueNamespace, useNatsServer } from "../harness/fixtures.js";

const nats = useNatsServer();

describe("history limit", () => {
  it("history limit - a run past 10,000 events is warned about once by the engine (with its id) and by runs history", async () => {
    const namespace = uniqueNamespace();
    const lines: { msg: string; runId?: string; events?: number }[] = [];
    const logger = pino({ level: "warn" }, { write: (line: string) => lines.push(JSON.parse(line)) });
    const engine = createEngine({ servers: [nats.url], namespaces: [namespace], http: "off" }, { logger });
    await engine.start();
    const tj = await connectClient(nats.url, { namespace });
    const cwd = await mkdtemp(join(tmpdir(), "tj-cli-"));
    try {
      const chatty = tj.durableTask({
        name: "chatty",
        executionTimeout: "5m",
        fn: async (input: { n: number }, ctx) => {
          for (let i = 0; i < input.n; i++) await ctx.now();
          return {};
        },
      });
      const worker = await tj.worker("w", { workflows: [chatty], durableSlots: 1 });
      await worker.start();
      // RunCreated, TaskStarted, the checkpoints, TaskCompleted: 50 events past the limit.
      const total = HISTORY_WARN_EVENTS + 50;
      const ref = await chatty.runNoWait({ n: total - 3 });
      await ref.result({ timeoutMs: 120_000 });
      expect((await tj.runs.get(ref.runId)).eventCount).toBe(total);
      const long = () => lines.filter((l) => l.msg.startsWith("run history is long"));
      // The projection shows the run finished once the projector has folded every event, the 50 after the limit too.
      await eventually(async () =>
        (await tj.runs.list({ statuses: ["COMPLETED"] })).some((s) => s.runId === ref.runId) ? true : undefined,
      );
      expect(long()).toEqual([expect.objectContaining({ runId: ref.runId, events: HISTORY_WARN_EVENTS })]);
      await worker.stop();

      const history = await runCli(
        ["runs", "history", ref.runId, "--json", "--nats", nats.url, "--namespace", namespace],
        {
          cwd,
          timeoutMs: 60_000,
        },
      );
      expect(history.code).toBe(0);
      expect(history.stdout.trim().split("\n")).toHaveLength(total);
      expect(history.stderr).toBe(
        `warning: run ${ref.runId} has 10,000 events or more in its history; reading and folding it slows down as it ` +
          "grows (README: History limits)\n",
      );
    } finally {
      await rm(cwd, { recursive: true, force: true });
      await tj.close();
      await engine.stop();
    }
  });
});
