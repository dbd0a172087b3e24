import { createHmac } from "node:crypto";
import type { JetStreamClient } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import {
  Buckets,
  compileWebhookKey,
  describeValue,
  ErrorCodes,
  EVENT_KEY,
  jsonTooDeep,
  keys,
  MAX_JSON_DEPTH,
  newId,
  type PushedEvent,
  sameSecret,
  sha256Hex,
  subjects,
  type WebhookDefinition,
  WebhookDefinitionSchema,
} from "@taskjet/schemas";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Logger } from "pino";
import { followKv } from "../log/follow-kv.js";
import { webhookRouteDoc } from "./openapi.js";
import { natsFailureAnswer } from "./rest.js";

/** Room for an event's headers (`Nats-Msg-Id`) in its message. */
const HEADERS_BYTES = 128;

interface Hook {
  def: WebhookDefinition;
  key: (body: unknown, headers: Record<string, unknown>) => unknown;
}

/**
 * `POST /api/v1/namespaces/:ns/webhooks/:name`: authenticates the request against the webhook's definition
 * (`TJ_WEBHOOKS`), then stores its JSON body as a pushed event and answers `202 { eventId }`. Nothing is recorded for
 * a request that fails: 404 unknown webhook, 401 bad credentials, 400 not a JSON object or no valid event key, 413 too
 * large.
 */
export class Webhooks {
  private readonly hooks = new Map<string, Map<string, Hook>>();
  private readonly stops: (() => void)[] = [];

  constructor(
    private readonly o: {
      js: JetStreamClient;
      kv: KV;
      namespaces: readonly string[];
      log: Logger;
      /** The largest message the server takes (`max_payload`), once connected. */
      maxPayload: () => number | undefined;
    },
  ) {}

  async start(): Promise<void> {
    for (const ns of this.o.namespaces) {
      const byName = new Map<string, Hook>();
      this.hooks.set(ns, byName);
      this.stops.push(
        await followKv(this.o.js, this.o.kv, Buckets.webhooks, keys.webhooksOf(ns), {
          put: (key, json) => this.put(byName, key, json),
          remove: (key) => byName.delete(key.slice(ns.length + 1)),
          log: this.o.log,
        }),
      );
    }
  }

  stop(): void {
    for (const stop of this.stops.splice(0)) stop();
  }

  routes(app: FastifyInstance): void {
    void app.register(async (scope) => {
      // The raw body: a signature is over the bytes as sent.
      scope.removeAllContentTypeParsers();
      scope.addContentTypeParser("*", { parseAs: "buffer" }, (_req, body, done) => done(null, body));
      scope.post<{ Params: { ns: string; name: string } }>(
        "/api/v1/namespaces/:ns/webhooks/:name",
        { config: { openapi: webhookRouteDoc } },
        (req, reply) => this.receive(req, reply),
      );
    });
  }

  private put(byName: Map<string, Hook>, key: string, json: string): void {
    try {
      const def = WebhookDefinitionSchema.parse(JSON.parse(json));
      const compiled = def.eventKeyExpression
        ? compileWebhookKey(def.eventKeyExpression, "eventKeyExpression")
        : undefined;
      byName.set(def.name, {
        def,
        key: compiled ? (body, headers) => compiled({ body, headers }) : () => def.eventKey,
      });
    } catch (err) {
      this.o.log.error({ key, err }, "ignoring an invalid webhook");
    }
  }

  private async receive(req: FastifyRequest<{ Params: { ns: string; name: string } }>, reply: FastifyReply) {
    const { ns, name } = req.params;
    const hook = this.hooks.get(ns)?.get(name);
    if (!hook) return fail(reply, 404, "NOT_FOUND", `webhook ${name} not found in namespace ${ns}`);
    const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    if (!authenticated(hook.def.auth, req.headers, raw)) {
      if (hook.def.auth.type === "basic")
        void reply.header("www-authenticate", `Basic realm="taskjet webhook ${name}"`);
      return fail(reply, 401, "UNAUTHENTICATED", `webhook ${name}: missing or wrong credentials`);
    }
    let body: unknown;
    try {
      body = JSON.parse(raw.toString("utf8"));
    } catch {
      return fail(reply, 400, "INVALID_ARGUMENT", "body: must be JSON");
    }
    if (typeof body !== "object" || body === null || Array.isArray(body)) {
      return fail(reply, 400, "INVALID_ARGUMENT", "body: must be a JSON object");
    }
    if (jsonTooDeep(body)) {
      return fail(reply, 400, "INVALID_ARGUMENT", `body: nests deeper than ${MAX_JSON_DEPTH} levels`);
    }
    let key: unknown;
    try {
      key = hook.key(body, req.headers as Record<string, unknown>);
    } catch (err) {
      return fail(
        reply,
        400,
        "INVALID_ARGUMENT",
        `eventKeyExpression failed: ${(err as Error).message.split("\n")[0]}`,
      );
    }
    if (typeof key !== "string" || !EVENT_KEY.test(key)) {
      return fail(
        reply,
        400,
        "INVALID_ARGUMENT",
        `eventKeyExpression: must give an event key, got ${describeValue(key)}`,
      );
    }
    const event: PushedEvent = {
      v: 1,
      id: newId(),
      key,
      payload: body as Record<string, unknown>,
      additionalMetadata: { webhook: name },
      at: new Date().toISOString(),
      source: `webhook:${name}`,
    };
    const data = JSON.stringify(event);
    // The event is the body in an envelope: a body within the HTTP limit can make a message over the server's.
    const limit = this.o.maxPayload();
    const size = Buffer.byteLength(data, "utf8") + HEADERS_BYTES;
    if (limit !== undefined && size > limit) {
      return fail(
        reply,
        413,
        ErrorCodes.payloadTooLarge,
        `body: its event would be a message of about ${size} bytes (the body is ${raw.length}), over the NATS ` +
          `max_payload of ${limit} bytes: send a smaller body`,
      );
    }
    try {
      await this.o.js.publish(subjects.event(ns, key), data, { msgID: event.id });
    } catch (err) {
      let answer = natsFailureAnswer(err);
      if (!answer) throw err;
      if (answer.status === 503) {
        // Not stored, or stored without the ack arriving: the sender's retry may make a second event.
        const message = `${answer.body.error.message} (the event may have been recorded as ${event.id})`;
        answer = { status: 503, body: { error: { ...answer.body.error, message } } };
      }
      if (answer.status >= 500) this.o.log.warn({ err, webhook: name, ns }, "webhook event not recorded");
      return reply.status(answer.status).send(answer.body);
    }
    return reply.status(202).send({ eventId: event.id });
  }
}

function fail(reply: FastifyReply, status: number, code: string, message: string) {
  return reply.status(status).send({ error: { code, message } });
}

function authenticated(auth: WebhookDefinition["auth"], headers: FastifyRequest["headers"], raw: Buffer): boolean {
  const header = (h: string) => {
    const v = headers[h];
    return typeof v === "string" ? v : undefined;
  };
  switch (auth.type) {
    case "hmac": {
      const sent = header(auth.header);
      if (!sent?.startsWith(auth.prefix)) return false;
      const expected = createHmac("sha256", auth.secret).update(raw).digest(auth.encoding);
      return sameSecret(sent.slice(auth.prefix.length), expected);
    }
    case "apiKey": {
      const sent = header(auth.header);
      return sent !== undefined && sameSecret(sha256Hex(sent), auth.keyHash);
    }
    case "basic": {
      const m = /^Basic\s+(.+)$/i.exec(header("authorization") ?? "");
      if (!m) return false;
      const decoded = Buffer.from(m[1] as string, "base64").toString("utf8");
      const i = decoded.indexOf(":");
      if (i < 0) return false;
      const okUser = sameSecret(decoded.slice(0, i), auth.username);
      const okPass = sameSecret(sha256Hex(decoded.slice(i + 1)), auth.passwordHash);
      return okUser && okPass;
    }
  }
}
