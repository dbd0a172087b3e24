import type { KV } from "@nats-io/kv";
import {
  AlreadyExistsError,
  API_TOKEN_NAME,
  type ApiTokenRecord,
  ApiTokenRecordSchema,
  apiTokenHash,
  Buckets,
  describeValue,
  keys,
  NotProvisionedError,
  newApiToken,
  ValidationError,
} from "@taskjet/schemas";
import { type Connection, isStreamNotFound, openBucket } from "./connection.js";
import { assertWritable } from "./debug.js";
import { kvNames } from "./kv-names.js";

/** A token as listed: never the token itself (only its hash is stored). */
export interface ApiTokenInfo {
  name: string;
  namespace: string;
  createdAt: string;
}

/**
 * Bearer tokens of the engine's HTTP API for this namespace (`Authorization: Bearer <token>`). Only a token's SHA-256
 * is stored: `create` is the only time the token is seen.
 *
 * @example
 * const { token } = await tj.apiTokens.create({ name: "dashboard" });
 * await fetch(`http://127.0.0.1:8080/api/v1/namespaces/default/runs/${runId}`, { headers: { authorization: `Bearer ${token}` } });
 */
export class ApiTokensClient {
  private kv: Promise<KV> | undefined;

  constructor(
    private readonly conn: Connection,
    private readonly ns: string,
  ) {}

  /**
   * Makes a token. `name` (default a random one) identifies it in `list` and `revoke`.
   * @throws ValidationError for a bad name or a name in use
   */
  async create(options: { name?: string } = {}): Promise<ApiTokenInfo & { token: string }> {
    const name =
      options.name ??
      `token-${newApiToken()
        .slice(-8)
        .replace(/[^A-Za-z0-9]/g, "x")}`;
    if (typeof name !== "string" || !API_TOKEN_NAME.test(name)) {
      throw new ValidationError([
        { path: "name", message: `must be 1-64 letters, digits, _ or -, got ${describeValue(name)}` },
      ]);
    }
    assertWritable(`creating API token ${name}`);
    const token = newApiToken();
    const record: ApiTokenRecord = {
      v: 1,
      name,
      namespace: this.ns,
      hash: apiTokenHash(token),
      createdAt: new Date().toISOString(),
    };
    const kv = await this.bucket();
    try {
      await kv.create(keys.apiToken(this.ns, name), JSON.stringify(record));
    } catch (err) {
      if (/wrong last sequence|key exists/i.test((err as Error).message)) {
        throw new AlreadyExistsError(`token ${name} exists: revoke it first, or pick another name`);
      }
      throw this.provisioningHint(err);
    }
    return { name, namespace: this.ns, createdAt: record.createdAt, token };
  }

  /** The namespace's tokens, by name. */
  async list(): Promise<ApiTokenInfo[]> {
    const kv = await this.bucket();
    const names = await kvNames(kv, this.ns, keys.apiTokensOf(this.ns)).catch((err) => {
      throw this.provisioningHint(err);
    });
    const out: ApiTokenInfo[] = [];
    for (const name of names) {
      const entry = await kv.get(keys.apiToken(this.ns, name));
      if (entry?.operation !== "PUT" || entry.length === 0) continue;
      const parsed = ApiTokenRecordSchema.safeParse(entry.json());
      if (parsed.success) out.push({ name, namespace: this.ns, createdAt: parsed.data.createdAt });
    }
    return out;
  }

  /** Revokes a token: the engine refuses it from then on. `false` when there was none by that name. */
  async revoke(name: string): Promise<boolean> {
    if (typeof name !== "string" || !API_TOKEN_NAME.test(name)) {
      throw new ValidationError([
        { path: "name", message: `must be 1-64 letters, digits, _ or -, got ${describeValue(name)}` },
      ]);
    }
    const kv = await this.bucket();
    const entry = await kv.get(keys.apiToken(this.ns, name)).catch((err) => {
      throw this.provisioningHint(err);
    });
    if (entry?.operation !== "PUT" || entry.length === 0) return false;
    assertWritable(`revoking API token ${name}`);
    await kv.delete(keys.apiToken(this.ns, name));
    return true;
  }

  /** An engine older than the tokens bucket never made it. */
  private provisioningHint(err: unknown): unknown {
    if (isStreamNotFound(err) || (err instanceof Error && /no responders/i.test(err.message))) {
      return new NotProvisionedError(`KV_${Buckets.apiTokens}`, [this.conn.nc.getServer()]);
    }
    return err;
  }

  private bucket(): Promise<KV> {
    this.kv ??= openBucket(this.conn, Buckets.apiTokens);
    return this.kv;
  }
}
