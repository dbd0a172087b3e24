import type { JetStreamClient } from "@nats-io/jetstream";
import type { Kvm } from "@nats-io/kv";
import { ApiTokenRecordSchema, apiTokenHash, Buckets, keys } from "@taskjet/schemas";
import type { FastifyInstance, FastifyReply } from "fastify";
import type { Logger } from "pino";
import { followKv } from "../log/follow-kv.js";

/** Who a request's bearer token is. */
export interface ApiCaller {
  namespace: string;
  tokenName: string;
}

/** Checks bearer tokens against `TJ_API_TOKENS` (hashes only), followed live: a revoked token fails at once. */
export class ApiTokens {
  private readonly byHash = new Map<string, ApiCaller>();
  private readonly byKey = new Map<string, string>();
  private readonly stops: (() => void)[] = [];

  constructor(private readonly o: { js: JetStreamClient; kvm: Kvm; namespaces: readonly string[]; log: Logger }) {}

  async start(): Promise<void> {
    const kv = await this.o.kvm.open(Buckets.apiTokens);
    for (const ns of this.o.namespaces) {
      this.stops.push(
        await followKv(this.o.js, kv, Buckets.apiTokens, keys.apiTokensOf(ns), {
          put: (key, json) => this.put(key, json),
          remove: (key) => this.remove(key),
          log: this.o.log,
        }),
      );
    }
  }

  stop(): void {
    for (const stop of this.stops.splice(0)) stop();
  }

  /** The caller a token stands for, or undefined for an unknown or revoked one. */
  caller(token: string): ApiCaller | undefined {
    return this.byHash.get(apiTokenHash(token));
  }

  private put(key: string, json: string): void {
    this.remove(key);
    try {
      const record = ApiTokenRecordSchema.parse(JSON.parse(json));
      this.byHash.set(record.hash, { namespace: key.slice(0, key.indexOf(".")), tokenName: record.name });
      this.byKey.set(key, record.hash);
    } catch (err) {
      this.o.log.error({ key, err }, "ignoring an invalid API token record");
    }
  }

  private remove(key: string): void {
    const hash = this.byKey.get(key);
    if (hash !== undefined) this.byHash.delete(hash);
    this.byKey.delete(key);
  }
}

declare module "fastify" {
  interface FastifyRequest {
    /** Set on routes registered with `registerProtectedRoutes`: whose token the request carried. */
    apiCaller?: ApiCaller;
  }
}

/**
 * Registers `routes` in a scope where every request needs `Authorization: Bearer <token>` with a token of the route's
 * `:ns` (or of any namespace, on a route without one). Checked on `onRequest`, before the body is read: a request
 * without a valid token costs no parsing. 401 for a missing, unknown or revoked token, 403 for another namespace's.
 * Every REST, dashboard and admin route goes here; webhooks (their own authentication) and `/healthz` stay outside.
 *
 * @example
 * registerProtectedRoutes(app, tokens, (scope) => scope.get("/api/v1/namespaces/:ns/things", handler));
 */
export function registerProtectedRoutes(
  app: FastifyInstance,
  tokens: Pick<ApiTokens, "caller">,
  routes: (scope: FastifyInstance) => void | Promise<void>,
): void {
  void app.register(async (scope) => {
    scope.addHook("onRequest", async (req, reply) => {
      const m = /^Bearer[ \t]+([!-~]{1,512})$/i.exec(req.headers.authorization ?? "");
      if (!m) {
        void reply.header("www-authenticate", 'Bearer realm="taskjet"');
        return fail(
          reply,
          401,
          "UNAUTHENTICATED",
          "missing bearer token: send Authorization: Bearer <token> (taskjet tokens create)",
        );
      }
      const caller = tokens.caller(m[1] as string);
      if (!caller) {
        void reply.header("www-authenticate", 'Bearer realm="taskjet", error="invalid_token"');
        return fail(reply, 401, "UNAUTHENTICATED", "unknown or revoked token");
      }
      const ns = (req.params as { ns?: unknown } | undefined)?.ns;
      if (ns !== undefined && ns !== caller.namespace) {
        return fail(
          reply,
          403,
          "FORBIDDEN",
          `token ${caller.tokenName} is for namespace ${caller.namespace}, not ${String(ns)}`,
        );
      }
      req.apiCaller = caller;
    });
    await routes(scope);
  });
}

/**
 * The API's bearer tokens, followed live. The REST routes themselves are `RestApi`'s (`rest.ts`), registered through
 * `registerProtectedRoutes` with these tokens.
 */
export class HttpApi {
  readonly tokens: ApiTokens;

  constructor(o: { js: JetStreamClient; kvm: Kvm; namespaces: readonly string[]; log: Logger }) {
    this.tokens = new ApiTokens(o);
  }

  async start(): Promise<void> {
    await this.tokens.start();
  }

  stop(): void {
    this.tokens.stop();
  }
}

function fail(reply: FastifyReply, status: number, code: string, message: string) {
  return reply.status(status).send({ error: { code, message } });
}
