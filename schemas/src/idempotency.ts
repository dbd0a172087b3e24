import { createHash } from "node:crypto";

/**
 * Idempotency keys of triggers: the first trigger with a key claims it for its run in `TJ_IDEMPOTENCY` (create, CAS);
 * later ones within the ttl get that run. Shared by the SDK (run option `idempotencyKey`) and the engine (task option
 * `idempotency.expression` on event and cron triggers), over any store with these three operations.
 */
export interface ClaimStore {
  get(key: string): Promise<{ json: string; revision: number } | undefined>;
  /** Fails when the key exists. */
  create(key: string, json: string): Promise<void>;
  /** Fails when the key's revision is no longer `revision`. */
  update(key: string, json: string, revision: number): Promise<void>;
}

/** What `kvClaimStore` needs of a JetStream KV bucket (structural: this package imports no NATS code). */
interface KvLike {
  get(key: string): Promise<{ operation: string; length: number; revision: number; string(): string } | null>;
  create(key: string, value: string): Promise<number>;
  update(key: string, value: string, revision: number): Promise<number>;
}

/** A `TJ_IDEMPOTENCY` bucket as a claim store. */
export function kvClaimStore(kv: KvLike): ClaimStore {
  return {
    async get(key) {
      const e = await kv.get(key);
      return e?.operation === "PUT" && e.length > 0 ? { json: e.string(), revision: e.revision } : undefined;
    },
    async create(key, json) {
      await kv.create(key, json);
    },
    async update(key, json, revision) {
      await kv.update(key, json, revision);
    },
  };
}

/** The store key of a task's idempotency key (hashed: any text may be a key). */
export function idempotencyDigest(taskName: string, key: string): string {
  return createHash("sha256").update(`${taskName}\n${key}`).digest("base64url");
}

/** The run id for a key: the claimed one while it lasts, else `proposed`, now claimed for `ttlMs`. */
export async function claimIdempotencyKey(
  store: ClaimStore,
  storeKey: string,
  ttlMs: number,
  proposed: string,
): Promise<string> {
  const fresh = () => JSON.stringify({ runId: proposed, expiresAt: new Date(Date.now() + ttlMs).toISOString() });
  for (let tries = 0; ; tries++) {
    const entry = await store.get(storeKey);
    try {
      if (entry) {
        const claim = JSON.parse(entry.json) as { runId: string; expiresAt: string };
        if (Date.parse(claim.expiresAt) > Date.now()) return claim.runId;
        await store.update(storeKey, fresh(), entry.revision);
      } else {
        await store.create(storeKey, fresh());
      }
      return proposed;
    } catch (err) {
      // Another trigger claimed it between our read and our write: read its claim.
      if (tries >= 5) throw err;
    }
  }
}
