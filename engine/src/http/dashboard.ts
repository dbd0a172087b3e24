import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { extname, join, relative, sep } from "node:path";
import {
  type ConsumerMessages,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from "@nats-io/jetstream";
import { assetsDir as builtAssetsDir } from "@taskjet/dashboard";
import { ChunkHeaders, ErrorCodes, runIdFromHistorySubject, Streams, subjects } from "@taskjet/schemas";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Logger } from "pino";
import { z } from "zod";
import { subjectMessages } from "../log/scan.js";
import { type ApiTokens, registerProtectedRoutes } from "./api.js";
import type { ApiRouteSpec } from "./openapi.js";

/** One history event as the dashboard's live feed pushes it: enough to know which rows to refresh. */
export interface FeedEvent {
  runId: string;
  type: string;
  /** The event's sequence in `TJ_HISTORY`. */
  seq: number;
  taskRunId?: string;
}

/** Events pushed to one browser at most this often: bursts go out as one write. */
const FLUSH_MS = 150;
/** More events than this in one flush: the browser is told to reload what it shows (`reset`) instead. */
const MAX_BATCH = 500;
/** A comment line this often keeps proxies from closing an idle stream and notices a browser gone. */
const KEEPALIVE_MS = 15_000;
/** A browser that lets this much pile up unread is disconnected (it reconnects and reloads). */
const MAX_BUFFERED = 1024 * 1024;
/** A namespace's feed stays open this long after its last listener left: page changes reconnect at once. */
const LINGER_MS = 5_000;

const token = z.string().regex(/^[A-Za-z0-9_-]{1,128}$/, "must be letters, digits, _ and - (at most 128)");
const ChunksQuerySchema = z.object({
  after: z.coerce.number().int().min(0).default(0).describe("a TJ_LOGS sequence: chunks stored after it"),
  limit: z.coerce.number().int().min(1).max(2000).default(500).describe("at most this many chunks"),
});
const NsParamsSchema = z.object({ ns: token.describe("namespace") });
const RunParamsSchema = z.object({ ns: token.describe("namespace"), id: token.describe("run id") });
const ChunksSchema = z.object({
  chunks: z.array(
    z.object({
      seq: z.number().int(),
      taskRunId: z.string(),
      attempt: z.number().int(),
      index: z.number().int(),
      at: z.string(),
      text: z.string(),
    }),
  ),
  /** Ask again with `after` this for the chunks stored since. */
  lastSeq: z.number().int(),
});
const errors = {
  401: { description: "UNAUTHENTICATED" },
  403: { description: "FORBIDDEN: another namespace's token" },
};

/** How the dashboard's routes under `/api/` appear in the engine's OpenAPI document. */
const SPECS = {
  session: {
    summary: "Whose token this is: its namespace and name (the dashboard signs in with it)",
    description: "Accepts a token of any namespace.",
    tags: ["dashboard"],
    responses: {
      200: {
        description: "the token's namespace and name",
        schema: z.object({ namespace: z.string(), tokenName: z.string() }),
      },
      ...errors,
    },
  },
  events: {
    summary: "The namespace's history as it is appended, as server-sent events (the dashboard's live updates)",
    description:
      "`event: ready` once reading; then per event appended `event: history`, `id: <seq>`, data " +
      "`{ runId, type, seq, taskRunId? }`; `event: reset` when more came at once than are worth sending (reload). " +
      "Nothing is replayed on reconnect. Read from the log (an ordered consumer on `tj.<ns>.hist.*` from its end), " +
      "one per namespace for all listeners.",
    tags: ["dashboard"],
    params: NsParamsSchema,
    responses: { 200: { description: "an event stream", contentType: "text/event-stream" }, ...errors },
  },
  chunks: {
    summary: "A run's stream chunks (ctx.putStream), every attempt's, in order, from a sequence",
    tags: ["dashboard"],
    params: RunParamsSchema,
    query: ChunksQuerySchema,
    responses: {
      200: { description: "the chunks", schema: ChunksSchema },
      400: { description: "INVALID_ARGUMENT" },
      ...errors,
    },
  },
} satisfies Record<string, ApiRouteSpec>;

/**
 * The namespace's history as it is appended, read once for every browser watching it: an ordered consumer on
 * `tj.<ns>.hist.*` from the log's current end (nothing is replayed), started with the first listener and stopped
 * after the last one left. Events are batched per `FLUSH_MS`.
 */
class HistoryFeed {
  private readonly listeners = new Set<(batch: FeedEvent[] | "reset") => void>();
  private messages: ConsumerMessages | undefined;
  private starting: Promise<void> | undefined;
  private pending: FeedEvent[] = [];
  private overflow = false;
  private flushTimer: NodeJS.Timeout | undefined;
  private lingerTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly js: JetStreamClient,
    private readonly ns: string,
    private readonly log: Logger,
  ) {}

  /** Adds a listener; resolves once the consumer reads (events appended from then on reach it). */
  async listen(listener: (batch: FeedEvent[] | "reset") => void): Promise<() => void> {
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    this.listeners.add(listener);
    this.starting ??= this.open().catch((err) => {
      this.starting = undefined;
      throw err;
    });
    try {
      await this.starting;
    } catch (err) {
      this.listeners.delete(listener);
      throw err;
    }
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0 && !this.lingerTimer) {
        this.lingerTimer = setTimeout(() => {
          this.lingerTimer = undefined;
          if (this.listeners.size === 0) this.close();
        }, LINGER_MS);
        this.lingerTimer.unref();
      }
    };
  }

  close(): void {
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.lingerTimer = undefined;
    this.flushTimer = undefined;
    this.pending = [];
    this.overflow = false;
    const messages = this.messages;
    this.messages = undefined;
    this.starting = undefined;
    void messages?.close().catch(() => undefined);
  }

  private async open(): Promise<void> {
    // Ordered: no durable state on the server, recreated by the client on a gap; New: from the current end.
    const consumer = await this.js.consumers.get(Streams.history, {
      filter_subjects: subjects.historyAll(this.ns),
      deliver_policy: DeliverPolicy.New,
    });
    this.messages = await consumer.consume({
      callback: (m) => this.receive(m),
      max_messages: 1000,
      expires: 5000,
      idle_heartbeat: 1000,
    });
    this.log.debug({ ns: this.ns }, "dashboard feed reading the log");
  }

  private receive(m: JsMsg): void {
    if (this.overflow) return;
    if (this.pending.length >= MAX_BATCH) {
      this.overflow = true;
      this.pending = [];
    } else {
      this.pending.push(toFeedEvent(m));
    }
    this.flushTimer ??= setTimeout(() => this.flush(), FLUSH_MS);
  }

  private flush(): void {
    this.flushTimer = undefined;
    const batch: FeedEvent[] | "reset" = this.overflow ? "reset" : this.pending;
    this.pending = [];
    this.overflow = false;
    for (const listener of this.listeners) listener(batch);
  }
}

/** The compact form of a history message: its run from the subject, type and task-run from the JSON. */
function toFeedEvent(m: JsMsg): FeedEvent {
  const event: FeedEvent = { runId: runIdFromHistorySubject(m.subject), type: "unknown", seq: m.seq };
  try {
    const raw = m.json<{ type?: unknown; taskRunId?: unknown }>();
    if (typeof raw.type === "string") event.type = raw.type.slice(0, 64);
    if (typeof raw.taskRunId === "string") event.taskRunId = raw.taskRunId.slice(0, 128);
  } catch {
    // Not JSON: the engine records it as rejected; the browser still learns the run changed.
  }
  return event;
}

/** A built file, held in memory (the dashboard is a few hundred KiB). */
interface Asset {
  body: Buffer;
  type: string;
  immutable: boolean;
}

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".map": "application/json; charset=utf-8",
};

/** No script but ours, no framing, data only from this origin: the token in sessionStorage stays in this page. */
const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
};

/** Reads every file under `dir` (no symlinks followed out of it). */
function loadAssets(dir: string): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  const walk = (at: string) => {
    for (const name of readdirSync(at)) {
      const path = join(at, name);
      const stat = statSync(path);
      if (stat.isDirectory()) walk(path);
      else if (stat.isFile()) {
        const rel = relative(dir, path).split(sep).join("/");
        assets.set(rel, {
          body: readFileSync(path),
          type: CONTENT_TYPES[extname(name)] ?? "application/octet-stream",
          // Vite names what it builds under assets/ by content hash: it never changes under a name.
          immutable: rel.startsWith("assets/"),
        });
      }
    }
  };
  walk(dir);
  return assets;
}

/** What the dashboard page says when the engine was built without it. */
const NOT_BUILT = `<!doctype html><meta charset="utf-8"><title>Taskjet</title>
<p>The dashboard's assets are not built: run <code>npx turbo run build</code> (or <code>npm run build -w @taskjet/dashboard</code>) and restart the engine.</p>`;

/**
 * The web dashboard: its static page at `/dashboard/` (no token needed to load it), and what it needs beside the REST
 * API, behind bearer tokens: whose token it holds (`GET /api/v1/dashboard/session` → `{ namespace, tokenName }`), a
 * live feed of the namespace's history (`GET /api/v1/namespaces/:ns/events/stream`, server-sent events) and a run's
 * stream chunks (`GET /api/v1/namespaces/:ns/runs/:id/chunks`).
 */
export class Dashboard {
  private readonly feeds = new Map<string, HistoryFeed>();
  private readonly streams = new Set<() => void>();
  private assets: Map<string, Asset> | undefined;
  private tokens: Pick<ApiTokens, "caller"> | undefined;

  constructor(
    private readonly o: {
      js: JetStreamClient;
      jsm: JetStreamManager;
      namespaces: readonly string[];
      log: Logger;
      /** Where the built page is. @default the `dist/` of `@taskjet/dashboard` */
      assetsDir?: string;
    },
  ) {}

  routes(app: FastifyInstance, tokens: Pick<ApiTokens, "caller">): void {
    this.tokens = tokens;
    const dir = this.o.assetsDir ?? builtAssetsDir;
    if (existsSync(join(dir, "index.html"))) this.assets = loadAssets(dir);
    else this.o.log.warn({ dir }, "dashboard assets not built: /dashboard/ explains how to build them");

    app.get("/", (_req, reply) => reply.redirect("/dashboard/"));
    app.get("/dashboard", (_req, reply) => reply.redirect("/dashboard/"));
    app.get("/dashboard/*", (req, reply) => this.serveAsset(req, reply));
    // Open event streams would hold the server's close until they end.
    app.addHook("preClose", async () => this.stop());

    registerProtectedRoutes(app, tokens, (scope) => {
      // Any namespace's token: the page learns which namespace it watches from its token.
      scope.get("/api/v1/dashboard/session", { config: { openapi: SPECS.session } }, async (req) => ({
        namespace: req.apiCaller?.namespace,
        tokenName: req.apiCaller?.tokenName,
      }));
      scope.get("/api/v1/namespaces/:ns/events/stream", { config: { openapi: SPECS.events } }, (req, reply) =>
        this.eventStream(req, reply),
      );
      scope.get("/api/v1/namespaces/:ns/runs/:id/chunks", { config: { openapi: SPECS.chunks } }, (req, reply) =>
        this.chunks(req, reply),
      );
    });
  }

  /** Ends every event stream and stops reading the log. */
  stop(): void {
    for (const end of [...this.streams]) end();
    for (const feed of this.feeds.values()) feed.close();
    this.feeds.clear();
  }

  private serveAsset(req: FastifyRequest, reply: FastifyReply) {
    void reply.headers(SECURITY_HEADERS);
    const path = (req.params as { "*": string })["*"] || "index.html";
    if (!this.assets) return reply.status(503).type("text/html; charset=utf-8").send(NOT_BUILT);
    const asset = this.assets.get(path);
    if (!asset) {
      return reply
        .status(404)
        .send({ error: { code: "NOT_FOUND", message: `no dashboard file ${path.slice(0, 200)}` } });
    }
    return reply
      .header("cache-control", asset.immutable ? "public, max-age=31536000, immutable" : "no-cache")
      .type(asset.type)
      .send(asset.body);
  }

  private nsOf(req: FastifyRequest, reply: FastifyReply): string | undefined {
    const ns = (req.params as { ns: string }).ns;
    if (this.o.namespaces.includes(ns)) return ns;
    void fail(reply, 404, "NOT_FOUND", `namespace ${ns} is not served here`);
    return undefined;
  }

  /**
   * Server-sent events: `event: ready` once reading (data `{ ns }`), then one `event: history` per history event
   * appended (`id` its sequence, data `{ runId, type, seq, taskRunId? }`), or `event: reset` when more came at once than
   * are worth sending one by one (reload what you show). No replay on reconnect: a browser reloads what it shows then.
   */
  private async eventStream(req: FastifyRequest, reply: FastifyReply) {
    const ns = this.nsOf(req, reply);
    if (ns === undefined) return reply;
    let feed = this.feeds.get(ns);
    if (!feed) {
      feed = new HistoryFeed(this.o.js, ns, this.o.log);
      this.feeds.set(ns, feed);
    }
    const res = reply.raw;
    let ended = false;
    let unlisten = () => {};
    let keepalive: NodeJS.Timeout | undefined;
    const end = () => {
      if (ended) return;
      ended = true;
      if (keepalive) clearInterval(keepalive);
      unlisten();
      this.streams.delete(end);
      if (!res.writableEnded) res.end();
    };
    // A token revoked while its stream is open ends the stream (checked on each write: a map lookup).
    const bearer = /^Bearer[ \t]+(\S+)$/i.exec(req.headers.authorization ?? "")?.[1] ?? "";
    const write = (text: string) => {
      if (ended) return;
      if (!this.tokens?.caller(bearer)) {
        end();
        return;
      }
      if (res.writableLength > MAX_BUFFERED) {
        this.o.log.warn({ ns }, "dashboard event stream not read: disconnecting it");
        end();
        return;
      }
      res.write(text);
    };
    try {
      unlisten = await feed.listen((batch) => {
        if (batch === "reset") write("event: reset\ndata: {}\n\n");
        else write(batch.map((e) => `event: history\nid: ${e.seq}\ndata: ${JSON.stringify(e)}\n\n`).join(""));
      });
    } catch (err) {
      this.o.log.error({ ns, err }, "dashboard feed cannot read the log");
      return fail(reply, 503, "UNAVAILABLE", `cannot read the history of ${ns}: ${(err as Error).message}`);
    }
    reply.hijack();
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache, no-transform",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    this.streams.add(end);
    req.raw.on("close", end);
    res.on("error", end);
    // Gone while the feed was starting: its close event has passed.
    if (req.raw.destroyed || res.destroyed) {
      end();
      return reply;
    }
    keepalive = setInterval(() => write(": keepalive\n\n"), KEEPALIVE_MS);
    keepalive.unref();
    write(`retry: 2000\nevent: ready\ndata: ${JSON.stringify({ ns })}\n\n`);
    return reply;
  }

  /**
   * A run's stream chunks (`ctx.putStream`) after `after` (a `TJ_LOGS` sequence), at most `limit`, in order:
   * `{ chunks: [{ seq, taskRunId, attempt, index, at, text }], lastSeq }`; ask again with `after: lastSeq` for more.
   */
  private async chunks(req: FastifyRequest, reply: FastifyReply) {
    const id = token.safeParse((req.params as { id?: unknown }).id);
    if (!id.success) return fail(reply, 400, ErrorCodes.invalidArgument, `id: ${id.error.issues[0]?.message}`);
    const query = ChunksQuerySchema.safeParse(req.query ?? {});
    if (!query.success) {
      const issue = query.error.issues[0];
      return fail(reply, 400, ErrorCodes.invalidArgument, `${issue?.path.join(".")}: ${issue?.message}`);
    }
    const ns = this.nsOf(req, reply);
    if (ns === undefined) return reply;
    const subject = subjects.chunk(ns, id.data);
    const chunks: z.output<typeof ChunksSchema>["chunks"] = [];
    let position = query.data.after;
    const decoder = new TextDecoder();
    const read = subjectMessages(this.o.jsm, Streams.logs, subject, position);
    while (chunks.length < query.data.limit) {
      const m = (await read.next().catch(() => undefined))?.value;
      if (!m) break;
      position = m.seq;
      const h = m.header;
      if (h?.get(ChunkHeaders.version) !== "1") continue;
      chunks.push({
        seq: m.seq,
        taskRunId: h.get(ChunkHeaders.taskRunId),
        attempt: Number(h.get(ChunkHeaders.attempt)),
        index: Number(h.get(ChunkHeaders.index)),
        at: m.time.toISOString(),
        text: decoder.decode(m.data),
      });
    }
    return reply.send({ chunks, lastSeq: position });
  }
}

function fail(reply: FastifyReply, status: number, code: string, message: string) {
  return reply.status(status).send({ error: { code, message } });
}
