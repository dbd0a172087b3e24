import { Buckets, type ClaimStore, claimIdempotencyKey, idempotencyDigest, keys, kvClaimStore } from "@taskjet/schemas";
import { type Connection, openBucket, withProvisioningHint } from "./connection.js";

/** Default time a trigger's idempotency key keeps returning the run it made. */
export const DEFAULT_IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000;

/**
 * Idempotency keys (`TJ_IDEMPOTENCY`): the claim outlives JetStream's 2-minute dedup window. A claim whose run was
 * never created (the client died in between) is completed by the next trigger with the key, which creates the run.
 */
export class IdempotencyKeys {
  private store: Promise<ClaimStore> | undefined;

  constructor(
    private readonly conn: Connection,
    private readonly ns: string,
  ) {}

  /** The run id for `key`: the claimed one while it lasts, else `proposed`, now claimed for `ttlMs`. */
  async claim(taskName: string, key: string, ttlMs: number, proposed: string): Promise<string> {
    this.store ??= openBucket(this.conn, Buckets.idempotency)
      .then(kvClaimStore)
      .catch(withProvisioningHint(this.conn, `KV_${Buckets.idempotency}`));
    const storeKey = keys.idempotency(this.ns, idempotencyDigest(taskName, key));
    return claimIdempotencyKey(await this.store, storeKey, ttlMs, proposed);
  }
}
