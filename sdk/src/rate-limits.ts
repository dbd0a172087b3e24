import type { KV } from "@nats-io/kv";
import {
  Buckets,
  keys,
  parseWith,
  type RateLimitDefinition,
  RateLimitDefinitionSchema,
  type RateLimitDuration,
} from "@taskjet/schemas";
import { type Connection, onBucket, openBucket } from "./connection.js";
import { inDebugMode } from "./debug.js";
import { kvNames } from "./kv-names.js";

/** A static rate limit as users write it. */
export interface RateLimitSpec {
  /** The name tasks use as `rateLimits: [{ staticKey }]`. */
  key: string;
  /** Units allowed per `duration`. */
  limit: number;
  duration: RateLimitDuration;
}

const SpecSchema = RateLimitDefinitionSchema.omit({ v: true, updatedAt: true });

/** Static rate limits (`tj.ratelimits`), stored in `TJ_RATELIMITS` and enforced by the engine's scheduler. */
export class RateLimitsClient {
  private kv: Promise<KV> | undefined;

  constructor(
    private readonly conn: Connection,
    private readonly ns: string,
  ) {}

  /**
   * Creates or changes a static limit; tasks waiting on it move as soon as the engine sees it.
   * @throws ValidationError naming the field and value
   * @example await tj.ratelimits.upsert({ key: "openai", limit: 60, duration: "MINUTE" })
   */
  async upsert(spec: RateLimitSpec): Promise<void> {
    const { key, limit, duration } = parseWith(SpecSchema, spec, "ratelimit");
    const def: RateLimitDefinition = { v: 1, key, limit, duration, updatedAt: new Date().toISOString() };
    if (inDebugMode()) return; // a worker module's set-up, skipped by `taskjet debug`
    await this.on((kv) => kv.put(keys.rateLimit(this.ns, key), JSON.stringify(def)));
  }

  /** A static limit, if defined. */
  async get(key: string): Promise<RateLimitSpec | undefined> {
    parseWith(RateLimitDefinitionSchema.shape.key, key, "key");
    const entry = await this.on((kv) => kv.get(keys.rateLimit(this.ns, key)));
    if (entry?.operation !== "PUT" || entry.length === 0) return undefined;
    const { limit, duration } = RateLimitDefinitionSchema.parse(entry.json());
    return { key, limit, duration };
  }

  /** Every static limit of the namespace, by key. */
  async list(): Promise<RateLimitSpec[]> {
    const names = await this.on((kv) => kvNames(kv, this.ns, keys.rateLimitsOf(this.ns)));
    const limits = await Promise.all(names.map((key) => this.get(key)));
    return limits.filter((l): l is RateLimitSpec => l !== undefined);
  }

  private on<T>(op: (kv: KV) => Promise<T>): Promise<T> {
    this.kv ??= openBucket(this.conn, Buckets.rateLimits);
    return onBucket(this.conn, Buckets.rateLimits, this.kv, op);
  }
}
