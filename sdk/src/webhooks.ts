import type { KV } from "@nats-io/kv";
import {
  Buckets,
  compileWebhookKey,
  keys,
  parseWith,
  storedAuth,
  ValidationError,
  type WebhookAuth,
  WebhookAuthSchema,
  type WebhookDefinition,
  WebhookDefinitionSchema,
} from "@taskjet/schemas";
import { type Connection, onBucket, openBucket } from "./connection.js";
import { assertWritable } from "./debug.js";
import { kvNames } from "./kv-names.js";

/** What `webhooks.create` takes. */
export interface WebhookSpec {
  /** 1-64 letters, digits, `_` or `-`: the last part of its URL. */
  name: string;
  /** The key of the events it makes... */
  eventKey?: string;
  /** ...or a CEL expression over the JSON `body` and lower-cased `headers` that computes it. */
  eventKeyExpression?: string;
  /**
   * How senders prove who they are: `{ type: "hmac", secret, header?, encoding?, prefix? }` (a signature of the raw
   * body), `{ type: "apiKey", header?, key }` or `{ type: "basic", username, password }`.
   */
  auth: WebhookAuth;
}

/** A webhook as listed: no secrets. */
export interface WebhookInfo {
  name: string;
  eventKey?: string | undefined;
  eventKeyExpression?: string | undefined;
  auth: { type: string; header?: string; username?: string };
  /** Path to POST to on the engine's HTTP server. */
  path: string;
  createdAt: string;
}

/** Webhooks (`TJ_WEBHOOKS`): HTTP endpoints on the engine that turn authenticated requests into pushed events. */
export class WebhooksClient {
  private kv: Promise<KV> | undefined;

  constructor(
    private readonly conn: Connection,
    private readonly ns: string,
  ) {}

  /**
   * Creates or replaces a webhook; the engine serves it at once on `POST /api/v1/namespaces/<ns>/webhooks/<name>`.
   * API keys and passwords are stored hashed.
   * @throws ValidationError naming the field
   */
  async create(spec: WebhookSpec): Promise<WebhookInfo> {
    if (typeof spec !== "object" || spec === null) {
      throw new ValidationError([
        { path: "webhook", message: "must be { name, eventKey | eventKeyExpression, auth }" },
      ]);
    }
    const auth = parseWith(WebhookAuthSchema, spec.auth, "auth");
    if (spec.eventKeyExpression !== undefined) compileWebhookKey(spec.eventKeyExpression, "eventKeyExpression");
    const def = parseWith(WebhookDefinitionSchema, {
      v: 1,
      name: spec.name,
      ...(spec.eventKey === undefined ? {} : { eventKey: spec.eventKey }),
      ...(spec.eventKeyExpression === undefined ? {} : { eventKeyExpression: spec.eventKeyExpression }),
      auth: storedAuth(auth),
      createdAt: new Date().toISOString(),
    });
    assertWritable(`creating webhook ${def.name}`);
    await this.on((kv) => kv.put(keys.webhook(this.ns, def.name), JSON.stringify(def)));
    return this.info(def);
  }

  async list(): Promise<WebhookInfo[]> {
    const names = await this.on((kv) => kvNames(kv, this.ns, keys.webhooksOf(this.ns)));
    const hooks = await Promise.all(names.map((n) => this.get(n)));
    return hooks.filter((h): h is WebhookInfo => h !== undefined);
  }

  async get(name: string): Promise<WebhookInfo | undefined> {
    parseWith(WebhookDefinitionSchema.shape.name, name, "name");
    const entry = await this.on((kv) => kv.get(keys.webhook(this.ns, name)));
    if (entry?.operation !== "PUT" || entry.length === 0) return undefined;
    return this.info(WebhookDefinitionSchema.parse(entry.json()));
  }

  /** Deletes a webhook: its URL answers 404 from then on. `false` when there was none. */
  async delete(name: string): Promise<boolean> {
    if (!(await this.get(name))) return false;
    assertWritable(`deleting webhook ${name}`);
    await this.on((kv) => kv.delete(keys.webhook(this.ns, name)));
    return true;
  }

  private info(def: WebhookDefinition): WebhookInfo {
    const a = def.auth;
    return {
      name: def.name,
      eventKey: def.eventKey,
      eventKeyExpression: def.eventKeyExpression,
      auth: a.type === "basic" ? { type: a.type, username: a.username } : { type: a.type, header: a.header },
      path: `/api/v1/namespaces/${this.ns}/webhooks/${def.name}`,
      createdAt: def.createdAt,
    };
  }

  private on<T>(op: (kv: KV) => Promise<T>): Promise<T> {
    this.kv ??= openBucket(this.conn, Buckets.webhooks);
    return onBucket(this.conn, Buckets.webhooks, this.kv, op);
  }
}
