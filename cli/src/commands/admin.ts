import { rebuildProjection, verifyProjection } from "@taskjet/engine";
import { Buckets, keys, Streams } from "@taskjet/schemas";
import { isStreamNotFound, NotProvisionedError, type Taskjet } from "@taskjet/sdk";
import { SingleBar } from "cli-progress";
import type { Command } from "commander";
import type { ConnectionFlags } from "../config.js";
import { ExitCodes } from "../errors.js";
import { jsonLine } from "../output.js";
import { type CliContext, connectionOptions, withClient } from "./common.js";
import { readLeases } from "./status.js";

/** `taskjet admin rebuild|verify`: the projection against the log (invariant 1). */
export function registerAdmin(program: Command, ctx: CliContext): void {
  const cmd = program.command("admin").description("integrity tools: the run projection against the log");

  const rebuild = cmd
    .command("rebuild")
    .description("rebuild every run's projection (TJ_RUNS) from the log; stop the engines first")
    .option("--force", "rebuild though an engine leads the namespace (it writes the projection meanwhile)")
    .option("--json", "print the report as JSON");
  connectionOptions(rebuild).action(async (flags: ConnectionFlags & { json?: boolean; force?: boolean }) => {
    ctx.exitCode = await withClient(flags, ctx, async (tj, conn) => {
      await requireStreams(tj);
      const { replicas, leases } = await readLeases(tj.connection.nc);
      const leader = replicas.find((r) => r.alive && r.engineId === leases[keys.lease(conn.namespace)]);
      if (leader && !flags.force) {
        ctx.io.err(
          `error: engine ${leader.engineId} (${leader.host}, pid ${leader.pid}) leads namespace ${conn.namespace}: ` +
            "stop the engines first (or --force)\n",
        );
        return ExitCodes.failure;
      }
      const bar = ctx.io.interactive
        ? new SingleBar({ format: "{phase} {bar} {percentage}%  {eta_formatted} left", hideCursor: true })
        : undefined;
      let shown: string | undefined;
      let report: Awaited<ReturnType<typeof rebuildProjection>>;
      try {
        report = await rebuildProjection(tj.connection.nc, conn.namespace, {
          onProgress: (phase, done, total) => {
            const label = phase === "read" ? "reading the log " : "writing states  ";
            if (shown !== phase) {
              bar?.stop();
              bar?.start(Math.max(total, 1), 0, { phase: label });
              shown = phase;
            }
            bar?.update(done, { phase: label });
          },
        });
      } finally {
        bar?.stop();
      }
      ctx.io.out(
        flags.json
          ? jsonLine(report)
          : `rebuilt ${report.runs} runs from ${report.events} events (${report.rejected} rejected) in ` +
              `${Math.round(report.ms)} ms: ${Math.round(report.eventsPerSecond)} events/s ` +
              `(read and fold ${Math.round(report.foldMs)} ms)\n`,
      );
      return ExitCodes.ok;
    });
  });

  const verify = cmd
    .command("verify")
    .description("fold the log and report every run whose projection differs (exit 1 if any); run with engines idle")
    .option("--json", "print the report as JSON");
  connectionOptions(verify).action(async (flags: ConnectionFlags & { json?: boolean }) => {
    ctx.exitCode = await withClient(flags, ctx, async (tj, conn) => {
      await requireStreams(tj);
      const report = await verifyProjection(tj.connection.nc, conn.namespace);
      if (flags.json) ctx.io.out(jsonLine(report));
      else {
        for (const d of report.differing) ctx.io.out(`${d.runId}: ${d.reason}\n`);
        ctx.io.out(`${report.runs} runs, ${report.events} events: ${report.differing.length} differing\n`);
      }
      return report.differing.length > 0 ? ExitCodes.failure : ExitCodes.ok;
    });
  });
}

/**
 * The log and the projection exist, else NotProvisionedError (start an engine first), as the SDK says it: the engine's
 * rebuild and verify would fail on the server's bare "stream not found".
 */
async function requireStreams(tj: Taskjet): Promise<void> {
  const { nc, jsm } = tj.connection;
  for (const stream of [Streams.history, `KV_${Buckets.runs}`]) {
    await jsm.streams.info(stream).catch((err: unknown) => {
      if (isStreamNotFound(err)) {
        throw new NotProvisionedError(stream, [nc.getServer()]);
      }
      // Anything else (credentials that may not ask for stream info): the command itself says what goes wrong.
    });
  }
}
