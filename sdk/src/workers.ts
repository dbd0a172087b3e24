import type { KV } from "@nats-io/kv";
import { Buckets, keys, type WorkerRegistration, WorkerRegistrationSchema } from "@taskjet/schemas";
import { type Connection, openBucket, withProvisioningHint } from "./connection.js";
import { kvNames } from "./kv-names.js";

/**
 * The namespace's live workers, as they registered in `TJ_WORKERS` on their last heartbeat (every third of the
 * bucket's TTL): slots used and running attempts are as of `heartbeatAt`. A worker that stopped heartbeating vanishes
 * once the TTL expires.
 *
 * @example
 * const load = (await tj.workers.list()).map((w) => ({ name: w.name, used: `${w.usedSlots}/${w.slots}` }));
 */
export class WorkersClient {
  private kv: Promise<KV> | undefined;

  constructor(
    private readonly conn: Connection,
    private readonly ns: string,
  ) {}

  /** Every registered worker of the namespace, by name then id. Registrations that do not parse are left out. */
  async list(): Promise<WorkerRegistration[]> {
    const kv = await this.bucket();
    // Opening the bucket succeeds without its stream; listing it is where a NATS no engine ran against shows.
    const ids = await kvNames(kv, this.ns, keys.workersOf(this.ns)).catch(
      withProvisioningHint(this.conn, `KV_${Buckets.workers}`),
    );
    const entries = await Promise.all(ids.map((id) => kv.get(keys.worker(this.ns, id))));
    const workers: WorkerRegistration[] = [];
    for (const entry of entries) {
      // Deleted or expired between the listing and the read.
      if (entry?.operation !== "PUT" || entry.length === 0) continue;
      let json: unknown;
      try {
        json = entry.json();
      } catch {
        continue;
      }
      const parsed = WorkerRegistrationSchema.safeParse(json);
      if (parsed.success) workers.push(parsed.data);
    }
    return workers.sort((a, b) => a.name.localeCompare(b.name) || a.workerId.localeCompare(b.workerId));
  }

  private bucket(): Promise<KV> {
    this.kv ??= openBucket(this.conn, Buckets.workers).catch(withProvisioningHint(this.conn, `KV_${Buckets.workers}`));
    return this.kv;
  }
}
