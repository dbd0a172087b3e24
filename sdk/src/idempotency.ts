import { createHash } from "node:crypto";
import { type KV, Kvm } from "@nats-io/kv";
import { Buckets, keys } from "@taskjet/schemas";
import { type Connection, withProvisioningHint } from "./connection.js";

/** Default time a trigger's idempotency key keeps returning the run it made. */
export const DEFAULT_IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000;

interface Claim {
  runId: string;
  expiresAt: string;
}

/**
 * Idempotency keys (`TJ_IDEMPOTENCY`): the first trigger with a key claims it for its run (KV create, CAS); later
 * ones within the ttl get that run. The claim outlives JetStream's 2-minute dedup window. A claim whose run was never
 * created (the client died in between) is completed by the next trigger with the key, which creates the run.
 */
export class IdempotencyKeys {
  private kv: Promise<KV> | undefined;

  constructor(
    private readonly conn: Connection,
    private readonly ns: string,
  ) {}

  /** The run id for `key`: the claimed one while it lasts, else `proposed`, now claimed for `ttlMs`. */
  async claim(taskName: string, key: string, ttlMs: number, proposed: string): Promise<string> {
    const kv = await this.bucket();
    const digest = createHash("sha256").update(`${taskName}\n${key}`).digest("base64url");
    const k = keys.idempotency(this.ns, digest);
    const fresh = () => JSON.stringify({ runId: proposed, expiresAt: new Date(Date.now() + ttlMs).toISOString() });
    for (let tries = 0; ; tries++) {
      const entry = await kv.get(k);
      try {
        if (entry?.operation === "PUT" && entry.length > 0) {
          const claim = entry.json<Claim>();
          if (Date.parse(claim.expiresAt) > Date.now()) return claim.runId;
          await kv.update(k, fresh(), entry.revision);
        } else {
          await kv.create(k, fresh());
        }
        return proposed;
      } catch (err) {
        // Another trigger claimed it between our read and write: read its claim.
        if (tries >= 5) throw err;
      }
    }
  }

  private bucket(): Promise<KV> {
    this.kv ??= new Kvm(this.conn.nc)
      .open(Buckets.idempotency)
      .catch(withProvisioningHint(this.conn, `KV_${Buckets.idempotency}`));
    return this.kv;
  }
}
