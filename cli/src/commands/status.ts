import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { type NatsConnection, RequestError } from "@nats-io/transport-node";
import { Buckets, enginePing, keys } from "@taskjet/schemas";
import { isStreamNotFound } from "@taskjet/sdk";
import type { Command } from "commander";
import type { ConnectionFlags } from "../config.js";
import { ExitCodes } from "../errors.js";
import { formatBytes, formatDuration, formatTable, jsonLine } from "../output.js";
import { type CliContext, connectionOptions, withClient } from "./common.js";

interface Replica {
  engineId: string;
  host: string;
  pid: number;
  since: string;
  alive: boolean;
  leads: string[];
}

/** `taskjet status`: the NATS server or cluster, engine replicas and their leases, stream sizes. */
export function registerStatus(program: Command, ctx: CliContext): void {
  const status = program
    .command("status")
    .description("the NATS server or cluster, engine replicas and the namespaces each leads, stream sizes")
    .option("--json", "print the status as JSON")
    .addHelpText(
      "after",
      "\nExamples:\n  taskjet status\n  taskjet status --nats nats://n1:4222,nats://n2:4222 --json",
    );
  connectionOptions(status).action(async (flags: ConnectionFlags & { json?: boolean }) => {
    ctx.exitCode = await withClient(flags, ctx, async (tj) => {
      const report = await readStatus(tj.connection.nc);
      if (flags.json) ctx.io.out(jsonLine(report));
      else ctx.io.out(`${view(report)}\n`);
      return ExitCodes.ok;
    });
  });
}

async function readStatus(nc: NatsConnection) {
  const info = nc.info;
  const jsm = await jetstreamManager(nc);
  const streams = [];
  for await (const s of jsm.streams.list()) {
    streams.push({
      name: s.config.name,
      messages: s.state.messages,
      bytes: s.state.bytes,
      replicas: s.config.num_replicas,
      leader: s.cluster?.leader ?? info?.server_name ?? "",
      lagging: (s.cluster?.replicas ?? []).filter((r) => !r.current).map((r) => r.name),
    });
  }
  streams.sort((a, b) => a.name.localeCompare(b.name));
  const { replicas, leases } = await readLeases(nc);
  return {
    server: {
      url: nc.getServer(),
      name: info?.server_name ?? "",
      version: info?.version ?? "",
      cluster: info?.cluster ?? null,
      connectUrls: info?.connect_urls ?? [],
    },
    replicas,
    leases,
    streams,
  };
}

/** Engine replicas (their presence in `TJ_LEASES`, alive if they answer a ping) and who leads each namespace. */
export async function readLeases(nc: NatsConnection): Promise<{ replicas: Replica[]; leases: Record<string, string> }> {
  const none = { replicas: [], leases: {} };
  const kv = await new Kvm(nc).open(Buckets.leases).catch(() => undefined);
  if (!kv) return none;
  // Opening succeeds without the bucket's stream; listing its keys does not: no engine has run against this NATS.
  const names = await kv.keys().catch((err: unknown) => {
    if (isStreamNotFound(err)) return undefined;
    throw err;
  });
  if (!names) return none;
  const replicas = new Map<string, Replica>();
  const leases: Record<string, string> = {};
  for await (const key of names) {
    const e = await kv.get(key);
    if (e?.operation !== "PUT" || e.length === 0) continue;
    const v = e.json() as Omit<Replica, "alive" | "leads">;
    if (key.startsWith(keys.engine(""))) replicas.set(v.engineId, { ...v, alive: false, leads: [] });
    else leases[key] = v.engineId;
  }
  await Promise.all(
    [...replicas.values()].map(async (r) => {
      try {
        await nc.request(enginePing(r.engineId), undefined, { timeout: 1000 });
        r.alive = true;
      } catch (err) {
        r.alive = !(err instanceof RequestError && err.isNoResponders());
      }
    }),
  );
  for (const [ns, engineId] of Object.entries(leases)) replicas.get(engineId)?.leads.push(ns);
  return { replicas: [...replicas.values()].sort((a, b) => a.since.localeCompare(b.since)), leases };
}

function view(s: Awaited<ReturnType<typeof readStatus>>): string {
  const out: string[] = [];
  const cluster = s.server.cluster
    ? `cluster ${s.server.cluster} (${s.server.connectUrls.length} routes known)`
    : "no cluster";
  out.push(`NATS     ${s.server.url}: ${s.server.name} v${s.server.version}, ${cluster}`);
  out.push("");
  if (s.replicas.length === 0) out.push("Engines  none running");
  else {
    out.push(
      formatTable(
        ["ENGINE", "HOST", "PID", "UP", "STATE", "LEADS"],
        s.replicas.map((r) => [
          r.engineId,
          r.host,
          String(r.pid),
          formatDuration(Date.now() - Date.parse(r.since)),
          r.alive ? "alive" : "gone (its presence expires)",
          r.leads.length > 0 ? r.leads.join(", ") : "standby",
        ]),
      ),
    );
  }
  out.push("");
  if (s.streams.length === 0) {
    out.push("Streams  none (no engine has run against this NATS yet)");
    return out.join("\n");
  }
  out.push(
    formatTable(
      ["STREAM", "MESSAGES", "SIZE", "R", "LEADER", "LAGGING"],
      s.streams.map((st) => [
        st.name,
        String(st.messages),
        formatBytes(st.bytes),
        String(st.replicas),
        st.leader,
        st.lagging.join(", ") || "-",
      ]),
    ),
  );
  return out.join("\n");
}
