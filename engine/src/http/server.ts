import { maxHeaderSize, STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import { ErrorCodes } from "@taskjet/schemas";
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from "fastify";
import type { Logger } from "pino";
import { errorAnswer } from "./rest.js";

/** Where the HTTP server listens when the configuration does not say. */
export const DEFAULT_HTTP = "127.0.0.1:8080";

/** The engine's HTTP server (webhooks now; REST, dashboard and metrics later). */
export interface HttpServer {
  /** `host:port` it listens on. */
  readonly address: string;
  stop(): Promise<void>;
}

/** What `GET /healthz` answers: 200 when `ok`, else 503. */
export interface Health {
  ok: boolean;
  /** The namespaces this engine serves. */
  namespaces: string[];
  /** Those it leads now (schedules); the others it stands by for. */
  leading: string[];
}

/**
 * What Node's HTTP parser refuses before any route sees the request (headers over its limit, a request that
 * timed out, a malformed one), answered in Taskjet's `{ error: { code, message } }` like every other refusal.
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === "ECONNRESET" || socket.destroyed) return;
  const [status, code, message] =
    err.code === "HPE_HEADER_OVERFLOW"
      ? [431, ErrorCodes.payloadTooLarge, `request headers: over the server's limit of ${maxHeaderSize} bytes`]
      : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? [408, ErrorCodes.timeout, "request: not received in time"]
        : [400, ErrorCodes.invalidArgument, `request: not valid HTTP (${err.code ?? err.message})`];
  const body = JSON.stringify({ error: { code, message } });
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
        `Content-Type: application/json; charset=utf-8\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(err);
}

/** The router's refusals (a path segment over 100 characters: 414; one that does not decode: 400), in our shape. */
function answerRouterError(err: FastifyError, _req: FastifyRequest, reply: FastifyReply): void {
  void reply
    .status(err.statusCode ?? 400)
    .send({ error: { code: ErrorCodes.invalidArgument, message: `url: ${err.message}` } });
}

/** Parses `host:port` (or `:port`). */
export function parseListen(value: string): { host: string; port: number } {
  const i = value.lastIndexOf(":");
  // An IPv6 address comes in brackets, which the listener does not take.
  const host = i > 0 ? value.slice(0, i).replace(/^\[(.*)\]$/, "$1") : "127.0.0.1";
  const port = Number(value.slice(i + 1));
  if (i < 0 || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`http: must be host:port or off, got "${value}"`);
  }
  return { host, port };
}

/**
 * Starts the HTTP server with `routes`, and `GET /healthz` when given `health`. `listen` undefined means the default
 * address, or a free port when something else holds it (logged); an address given explicitly that is taken fails the
 * start.
 */
export async function startHttpServer(
  listen: string | undefined,
  log: Logger,
  routes: (app: FastifyInstance) => Promise<void> | void,
  health?: () => Health,
): Promise<HttpServer> {
  const app: FastifyInstance = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    // No line per request: webhooks log what they record.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1024 * 1024,
    clientErrorHandler: answerClientError,
    frameworkErrors: answerRouterError,
  });
  // Every error as JSON `{ error: { code, message } }`: typed, Fastify's body refusals (413 PAYLOAD_TOO_LARGE for a
  // body too large) and NATS failures (503 UNAVAILABLE) in Taskjet's codes, else the status from the error.
  app.setErrorHandler((err: FastifyError, _req, reply) => {
    const answer = errorAnswer(err);
    if (answer) return reply.status(answer.status).send(answer.body);
    const status = err.statusCode ?? 500;
    if (status >= 500) log.error({ err }, "HTTP request failed");
    void reply.status(status).send({ error: { code: err.code ?? "INTERNAL", message: err.message } });
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.status(404).send({ error: { code: "NOT_FOUND", message: `no route ${req.method} ${req.url}` } });
  });
  if (health) {
    // Outside the token-protected scopes: probes and load balancers carry no token.
    app.get("/healthz", async (_req, reply) => {
      const h = health();
      return reply.status(h.ok ? 200 : 503).send(h);
    });
  }
  await routes(app);
  const { host, port } = parseListen(listen ?? DEFAULT_HTTP);
  try {
    await app.listen({ host, port });
  } catch (err) {
    if (listen !== undefined || (err as NodeJS.ErrnoException).code !== "EADDRINUSE") {
      await app.close();
      throw new Error(
        `http: cannot listen on ${host}:${port}: ${(err as Error).message} (set --http host:port or off)`,
      );
    }
    log.warn({ wanted: `${host}:${port}` }, "default HTTP address in use: listening on a free port instead");
    await app.listen({ host, port: 0 });
  }
  const bound = app.server.address();
  const address = typeof bound === "object" && bound ? `${host}:${bound.port}` : `${host}:${port}`;
  log.info({ address }, "HTTP server listening");
  return { address, stop: () => app.close() };
}
