import type { JetStreamClient } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  type ApiErrorSchema,
  CancelledRunSchema,
  CancelRunBodySchema,
  CronsQuerySchema,
  CronsSchema,
  describeValue,
  ErrorCodes,
  isTerminal,
  ListRunsQuerySchema,
  NamespaceParamsSchema,
  type NatsAccess,
  NoQuerySchema,
  NotFoundError,
  newId,
  PayloadTooLargeError,
  parseIsoTime,
  type Queues,
  QueuesQuerySchema,
  QueuesSchema,
  ReplayedRunSchema,
  ReplayRefusedError,
  ReplayRunBodySchema,
  RunFinishedError,
  RunHistorySchema,
  RunLogsSchema,
  RunParamsSchema,
  RunStateSchema,
  RunStatuses,
  RunsPageSchema,
  ScheduledQuerySchema,
  ScheduledSchema,
  TaskjetError,
  TRACEPARENT,
  TriggeredRunSchema,
  TriggerRunBodySchema,
  ValidationError,
  WorkersSchema,
  zodIssues,
} from "@taskjet/schemas";
import { Taskjet } from "@taskjet/sdk";
import type { FastifyError, FastifyInstance, FastifyRequest } from "fastify";
import type { Logger } from "pino";
import { z } from "zod";
import type { EngineMetrics } from "../metrics/metrics.js";
import { RunIndex } from "../projector/run-index.js";
import { askLeaderQueues, summarizeQueues } from "../scheduler/inspect.js";
import { type ApiTokens, registerProtectedRoutes } from "./api.js";
import type { ApiRouteSpec, OpenApiDocs } from "./openapi.js";

/** What a handler is given: the request's parts, validated. */
interface Parsed<P, Q, B> {
  params: P;
  query: Q;
  body: B;
  req: FastifyRequest;
}

/** What a handler answers: a status and a JSON body (or text, for `/metrics`). */
interface Answer {
  status: number;
  body: unknown;
  contentType?: string;
  headers?: Record<string, string>;
}

type Out<S> = S extends z.ZodType ? z.output<S> : undefined;

/**
 * Registers a route whose params, query and body are validated with its spec's zod schemas (a failure is 400
 * `INVALID_ARGUMENT` naming each field and the value found) and whose spec documents it (`OpenApiDocs`).
 */
export function apiRoute<S extends ApiRouteSpec>(
  scope: FastifyInstance,
  method: "GET" | "POST",
  url: string,
  spec: S,
  handler: (input: Parsed<Out<S["params"]>, Out<S["query"]>, Out<S["body"]>>) => Promise<Answer>,
): void {
  scope.route({
    method,
    url,
    config: { openapi: spec },
    handler: async (req, reply) => {
      const parse = <T extends z.ZodType | undefined>(schema: T, value: unknown, root: string) => {
        if (!schema) return undefined as Out<T>;
        const r = schema.safeParse(value, { reportInput: true });
        if (r.success) return r.data as Out<T>;
        // A value the raw request does not hold at the issue's path (a comma-separated list, split before checking)
        // is named from what the schema saw.
        const issues = zodIssues(r.error, value, root).map((issue, i) => {
          const input = r.error.issues[i]?.input;
          if (issue.message.includes(", got ") || input === undefined) return issue;
          return { ...issue, message: `${issue.message}, got ${describeValue(input)}` };
        });
        throw new ValidationError(issues);
      };
      const input = {
        params: parse(spec.params, req.params, ""),
        query: parse(spec.query, req.query ?? {}, "query"),
        body: parse(spec.body, req.body, "body"),
        req,
      } as Parsed<Out<S["params"]>, Out<S["query"]>, Out<S["body"]>>;
      const answer = await handler(input);
      for (const [k, v] of Object.entries(answer.headers ?? {})) void reply.header(k, v);
      if (answer.contentType) void reply.type(answer.contentType);
      return reply.status(answer.status).send(answer.body);
    },
  });
}

/** Typed errors as HTTP answers: the status a caller can act on, the stable code, the message, the issues. */
export function errorAnswer(err: unknown): { status: number; body: z.output<typeof ApiErrorSchema> } | undefined {
  const fastify = err as FastifyError;
  if (err instanceof ValidationError) {
    return { status: 400, body: { error: { code: err.code, message: err.message, issues: err.issues } } };
  }
  if (err instanceof TaskjetError) {
    const status: Record<string, number> = {
      [ErrorCodes.payloadTooLarge]: 413,
      [ErrorCodes.runNotFound]: 404,
      [ErrorCodes.notFound]: 404,
      [ErrorCodes.runFinished]: 409,
      [ErrorCodes.replayRefused]: 409,
      [ErrorCodes.notScheduled]: 409,
      [ErrorCodes.runIdTaken]: 409,
      [ErrorCodes.notProvisioned]: 503,
    };
    const s = status[err.code];
    if (s !== undefined) return { status: s, body: { error: { code: err.code, message: err.message } } };
  }
  // Fastify's own refusals of a body (too large, not JSON, wrong media type), in our codes.
  if (typeof fastify?.code === "string" && fastify.code.startsWith("FST_ERR_CTP_") && fastify.statusCode) {
    const code = fastify.statusCode === 413 ? ErrorCodes.payloadTooLarge : ErrorCodes.invalidArgument;
    return { status: fastify.statusCode, body: { error: { code, message: `body: ${fastify.message}` } } };
  }
  return natsFailureAnswer(err);
}

/** JetStream's "system temporarily unavailable" (a leader being elected) and "message size exceeds maximum". */
const JS_UNAVAILABLE = 10008;
const JS_MESSAGE_TOO_LARGE = 10054;

/**
 * A NATS failure as the status a caller can act on: a message over the server's `max_payload` (or the stream's
 * maximum message size) is 413 `PAYLOAD_TOO_LARGE`; NATS unreachable, closed, without a stream answering or without
 * a leader is 503 `UNAVAILABLE` (try again). Matched by name: nats.js sets one per error class.
 */
export function natsFailureAnswer(err: unknown): { status: number; body: z.output<typeof ApiErrorSchema> } | undefined {
  if (!(err instanceof Error)) return undefined;
  const api = err as Error & { code?: unknown; status?: unknown };
  if (
    (err.name === "InvalidArgumentError" && /max_payload/.test(err.message)) ||
    (err.name === "JetStreamApiError" && api.code === JS_MESSAGE_TOO_LARGE)
  ) {
    return {
      status: 413,
      body: { error: { code: ErrorCodes.payloadTooLarge, message: `too large for a NATS message: ${err.message}` } },
    };
  }
  const unavailable =
    ["ClosedConnectionError", "DrainingConnectionError", "ConnectionError", "NoResponders", "TimeoutError"].includes(
      err.name,
    ) ||
    err.name === "JetStreamNotEnabled" ||
    (err.name === "JetStreamApiError" && (api.code === JS_UNAVAILABLE || api.status === 503)) ||
    (err instanceof TaskjetError &&
      (err.code === ErrorCodes.connectionFailed ||
        err.code === ErrorCodes.timeout ||
        err.code === ErrorCodes.closed ||
        err.code === ErrorCodes.unavailable));
  if (unavailable) {
    return {
      status: 503,
      body: { error: { code: "UNAVAILABLE", message: `NATS is unavailable, try again: ${err.message}` } },
    };
  }
  return undefined;
}

const err = (description: string) => ({ description });
const ns = NamespaceParamsSchema;
const run = RunParamsSchema;
const tags = { runs: ["runs"], ops: ["operations"] };

/**
 * The REST API (`/api/v1/namespaces/:ns/...`), behind bearer tokens, and `GET /metrics`.
 *
 * Every engine replica serves it for its namespaces, leader or standby: reads go to NATS (the projection, the log,
 * the KV buckets) through the SDK's clients over the engine's connection, so they answer as `tj.runs.get`,
 * `tj.workers.list`, ... do, and triggers are validated exactly as the SDK validates them. Lists page over an
 * in-memory `RunIndex` per namespace. Queues are asked of the namespace's leader (its scheduler's memory, with
 * concurrency and rate-limit state), falling back to the projection when no leader answers.
 */
export class RestApi {
  private readonly clients = new Map<string, Promise<Taskjet>>();
  private readonly indexes = new Map<string, RunIndex>();

  constructor(
    private readonly o: {
      nc: NatsConnection;
      js: JetStreamClient;
      runsKv: KV;
      namespaces: readonly string[];
      access: NatsAccess;
      tokens: Pick<ApiTokens, "caller">;
      metrics: EngineMetrics;
      docs: OpenApiDocs;
      log: Logger;
    },
  ) {
    for (const n of o.namespaces) {
      this.indexes.set(n, new RunIndex({ js: o.js, kv: o.runsKv, ns: n, log: o.log.child({ ns: n }) }));
    }
  }

  async stop(): Promise<void> {
    for (const index of this.indexes.values()) index.stop();
    const clients = await Promise.allSettled(this.clients.values());
    for (const c of clients) if (c.status === "fulfilled") await c.value.close();
  }

  routes(app: FastifyInstance): void {
    app.get("/api/v1/openapi.json", { config: { openapi: OPENAPI_DOC } }, async (_req, reply) =>
      reply.send(this.o.docs.document()),
    );
    registerProtectedRoutes(app, this.o.tokens, (scope) => {
      // Fastify's JSON parser, saying what it refuses: its error for a valid JSON body with a `__proto__` key (or a
      // `constructor` holding a `prototype`) is "Body is not valid JSON".
      const json = scope.getDefaultJsonParser("error", "error");
      scope.removeContentTypeParser(["application/json", "text/plain"]);
      // Plain text is read as JSON too: `fetch` sends a string body as text/plain unless told otherwise. An empty body
      // is no body (`POST runs/:id/cancel` with a JSON content type and nothing to say).
      scope.addContentTypeParser(["application/json", "text/plain"], { parseAs: "string" }, (req, body, done) =>
        body === ""
          ? done(null, undefined)
          : json(req, body as string, (e, parsed) => {
              if (!e || (e as FastifyError).code !== "FST_ERR_CTP_INVALID_JSON_BODY") return done(e, parsed);
              let why = "keys named __proto__, or constructor with a prototype, are refused";
              try {
                JSON.parse(body as string);
              } catch (notJson) {
                why = `not valid JSON: ${(notJson as Error).message}`;
              }
              done(new ValidationError([{ path: "body", message: why }]), undefined);
            }),
      );
      scope.setErrorHandler((e: FastifyError, _req, reply) => {
        const answer = errorAnswer(e);
        if (answer) return reply.status(answer.status).send(answer.body);
        this.o.log.error({ err: e }, "REST request failed");
        return reply.status(500).send({ error: { code: "INTERNAL", message: e.message } });
      });
      this.register(scope);
    });
  }

  private register(scope: FastifyInstance): void {
    const base = "/api/v1/namespaces/:ns";
    apiRoute(
      scope,
      "GET",
      `${base}/runs`,
      {
        summary: "List runs, newest first, with filters and a cursor",
        description:
          "From an in-memory index of the projection kept by every engine replica: a page costs a binary search and a " +
          "walk to `limit` matches, whatever its depth. Trails the log like the projection (a run active for less " +
          "than about a second may be missing).",
        tags: tags.runs,
        params: ns,
        query: ListRunsQuerySchema,
        responses: { 200: { description: "one page", schema: RunsPageSchema }, 400: err("INVALID_ARGUMENT") },
      },
      async ({ params, query }) => {
        const index = await this.index(params.ns);
        const metadata = (query.metadata ?? []).map((pair) => {
          const i = pair.indexOf("=");
          return [pair.slice(0, i), pair.slice(i + 1)] as [string, string];
        });
        const page = index.page(
          {
            statuses: query.status,
            taskName: query.task,
            since: query.since === undefined ? undefined : timeOf(query.since, "query.since"),
            until: query.until === undefined ? undefined : timeOf(query.until, "query.until"),
            metadata,
          },
          query.limit,
          query.cursor,
          query.counts === "true",
        );
        return { status: 200, body: page };
      },
    );
    apiRoute(
      scope,
      "POST",
      `${base}/runs`,
      {
        summary: "Trigger a run of a task or workflow",
        description:
          "Validated as the SDK's `runNoWait` validates (same schemas): `input` a JSON object of at most 1 MiB, " +
          "`idempotencyKey` returns the earlier run of the key (200), as does a `runId` naming a run of the same " +
          "task (409 `RUN_ID_TAKEN` for another task's), `scheduleAt` creates a SCHEDULED run. A " +
          "`traceparent` request header (W3C) links the run to the caller's trace unless the body names one.",
        tags: tags.runs,
        params: ns,
        body: TriggerRunBodySchema,
        responses: {
          201: { description: "created", schema: TriggeredRunSchema },
          200: { description: "the idempotency key's or the run id's earlier run", schema: TriggeredRunSchema },
          400: err("INVALID_ARGUMENT"),
          409: err("RUN_ID_TAKEN: `runId` names a run of another task"),
          413: err("PAYLOAD_TOO_LARGE"),
        },
      },
      async ({ params, body, req }) => {
        const tj = await this.client(params.ns);
        const { task, input, scheduleAt, ...given } = body;
        const runId = given.runId ?? newId();
        const header = firstHeader(req.headers.traceparent);
        const trace =
          given.traceparent === undefined && header && TRACEPARENT.test(header)
            ? {
                traceparent: header,
                ...(req.headers.tracestate ? { tracestate: firstHeader(req.headers.tracestate) } : {}),
              }
            : {};
        const options = { ...given, ...trace, runId };
        const location = (id: string) => ({ location: `/api/v1/namespaces/${params.ns}/runs/${id}` });
        let ref: { runId: string; existing: boolean };
        try {
          ref = scheduleAt
            ? await tj.schedule(task, scheduleAt, input, options)
            : await tj.runNoWait(task, input, options);
        } catch (e) {
          // The SDK names the time it schedules at `at`: here it is the body's scheduleAt.
          if (e instanceof ValidationError && e.issues.some((i) => i.path === "at")) {
            throw new ValidationError(e.issues.map((i) => (i.path === "at" ? { ...i, path: "body.scheduleAt" } : i)));
          }
          const answer = natsFailureAnswer(e);
          if (answer?.status === 503) {
            // A timeout does not say the append was not stored: the retry the answer asks for must not make a second.
            const again = given.runId === undefined ? `; send it again with "runId": "${runId}" to have one run` : "";
            const message = `${answer.body.error.message} (the run may have been recorded${again})`;
            return { status: 503, body: { error: { ...answer.body.error, message } } };
          }
          if (!(e instanceof PayloadTooLargeError) && answer?.status !== 413) throw e;
          const size = (v: unknown) => Buffer.byteLength(JSON.stringify(v ?? {}), "utf8");
          const limit = this.o.nc.info?.max_payload;
          return {
            status: 413,
            body: {
              error: {
                code: ErrorCodes.payloadTooLarge,
                message:
                  `body: the run's RunCreated event (input ${size(input)} bytes, additionalMetadata ` +
                  `${size(given.additionalMetadata)} bytes, and its envelope) is over the NATS message limit` +
                  `${limit ? ` (max_payload ${limit} bytes)` : ""}: send a smaller input or additionalMetadata`,
              },
            },
          };
        }
        // A run id given again, or an idempotency key's earlier run: that run (as the SDK answers), unless it is of
        // another task (RunIdTakenError, 409). Decided by the append itself, so of simultaneous requests one creates.
        const { existing } = ref;
        return { status: existing ? 200 : 201, body: { runId: ref.runId, existing }, headers: location(ref.runId) };
      },
    );
    apiRoute(
      scope,
      "GET",
      `${base}/runs/:id`,
      {
        summary: "A run's state",
        description: "As `tj.runs.get`: the projection with the log's tail folded on it, so it never lags.",
        tags: tags.runs,
        params: run,
        responses: {
          200: { description: "the run", schema: RunStateSchema },
          400: err("INVALID_ARGUMENT"),
          404: err("RUN_NOT_FOUND"),
        },
      },
      async ({ params }) => ({ status: 200, body: await (await this.client(params.ns)).runs.get(params.id) }),
    );
    apiRoute(
      scope,
      "GET",
      `${base}/runs/:id/history`,
      {
        summary: "A run's history: every event, in order",
        description:
          "Messages the model refuses are listed with the reason (`rejected`), as `taskjet runs history` shows.",
        tags: tags.runs,
        params: run,
        responses: {
          200: { description: "the events", schema: RunHistorySchema },
          400: err("INVALID_ARGUMENT"),
          404: err("RUN_NOT_FOUND"),
        },
      },
      async ({ params }) => {
        const tj = await this.client(params.ns);
        const events = [];
        for await (const e of tj.runs.history(params.id)) {
          events.push({
            seq: e.seq,
            time: e.time.toISOString(),
            ...(e.event ? { event: e.event } : { rejected: e.rejected }),
          });
        }
        return { status: 200, body: { runId: params.id, events } };
      },
    );
    apiRoute(
      scope,
      "GET",
      `${base}/runs/:id/logs`,
      {
        summary: "A run's task log lines (ctx.logger), every attempt's, in order",
        tags: tags.runs,
        params: run,
        responses: {
          200: { description: "the lines", schema: RunLogsSchema },
          400: err("INVALID_ARGUMENT"),
          404: err("RUN_NOT_FOUND"),
        },
      },
      async ({ params }) => {
        const tj = await this.client(params.ns);
        await tj.runs.get(params.id); // 404 for a run that does not exist, rather than an empty list
        return { status: 200, body: { runId: params.id, lines: await tj.logs.list(params.id) } };
      },
    );
    apiRoute(
      scope,
      "POST",
      `${base}/runs/:id/cancel`,
      {
        summary: "Cancel a run (queued: leaves the queue; running: its worker aborts it)",
        tags: tags.runs,
        params: run,
        body: CancelRunBodySchema,
        responses: {
          200: { description: "cancelled", schema: CancelledRunSchema },
          400: err("INVALID_ARGUMENT"),
          404: err("RUN_NOT_FOUND"),
          409: err("RUN_FINISHED: it had already finished"),
        },
      },
      async ({ params, body }) => {
        const tj = await this.client(params.ns);
        const before = await tj.runs.get(params.id);
        if (isTerminal(before.status)) throw new RunFinishedError(params.id, before.status);
        if (!(await tj.runs.cancelOne(params.id, body.reason ?? "cancelled through the REST API"))) {
          const now = await tj.runs.get(params.id);
          throw new RunFinishedError(params.id, now.status);
        }
        return { status: 200, body: { runId: params.id, cancelled: true } };
      },
    );
    apiRoute(
      scope,
      "POST",
      `${base}/runs/:id/replay`,
      {
        summary: "Replay a finished run with its recorded input (new attempts in the same history)",
        description: "`from`: a workflow's task to re-run with its descendants, keeping the other outputs.",
        tags: tags.runs,
        params: run,
        body: ReplayRunBodySchema,
        responses: {
          200: { description: "replayed", schema: ReplayedRunSchema },
          400: err("INVALID_ARGUMENT"),
          404: err("RUN_NOT_FOUND"),
          409: err("REPLAY_REFUSED: not finished, or `from` whose parents did not complete"),
        },
      },
      async ({ params, body }) => {
        const tj = await this.client(params.ns);
        await tj.runs.get(params.id);
        const { refused } = await tj.runs.replay({ ids: [params.id], ...body });
        if (refused[0]) throw new ReplayRefusedError(params.id, refused[0].reason);
        return { status: 200, body: { runId: params.id, replayed: true } };
      },
    );
    apiRoute(
      scope,
      "GET",
      `${base}/workers`,
      {
        summary: "Live workers: slots used and total, running attempts by task, labels, heartbeat age",
        description: "Registrations in `TJ_WORKERS` as of each worker's last heartbeat.",
        tags: tags.ops,
        params: ns,
        query: NoQuerySchema,
        responses: { 200: { description: "the workers", schema: WorkersSchema }, 400: err("INVALID_ARGUMENT") },
      },
      async ({ params }) => {
        const now = Date.now();
        const workers = await (await this.client(params.ns)).workers.list();
        return {
          status: 200,
          body: {
            workers: workers.map((w) => ({ ...w, heartbeatAgeMs: Math.max(0, now - Date.parse(w.heartbeatAt)) })),
          },
        };
      },
    );
    apiRoute(
      scope,
      "GET",
      `${base}/queues`,
      {
        summary: "Per task: queued depth, oldest queued age, running, retrying; concurrency groups and rate limits",
        description:
          "Asked of the engine replica leading the namespace (`source: leader`: its scheduler's memory, live). When " +
          "no leader answers within 2 s, computed from the projection (`source: projection`, without limiter state).",
        tags: tags.ops,
        params: ns,
        query: QueuesQuerySchema,
        responses: { 200: { description: "the queues", schema: QueuesSchema }, 400: err("INVALID_ARGUMENT") },
      },
      async ({ params, query }) => {
        const all = await this.queues(params.ns);
        return {
          status: 200,
          body: query.task ? { ...all, queues: all.queues.filter((q) => q.taskName === query.task) } : all,
        };
      },
    );
    apiRoute(
      scope,
      "GET",
      `${base}/crons`,
      {
        summary: "Cron schedules",
        tags: tags.ops,
        params: ns,
        query: CronsQuerySchema,
        responses: { 200: { description: "the crons", schema: CronsSchema }, 400: err("INVALID_ARGUMENT") },
      },
      async ({ params, query }) => {
        const crons = await (await this.client(params.ns)).crons.list(query.task ? { taskName: query.task } : {});
        return { status: 200, body: { crons } };
      },
    );
    apiRoute(
      scope,
      "GET",
      `${base}/scheduled`,
      {
        summary: "Scheduled runs (SCHEDULED: created to start later), soonest first",
        tags: tags.ops,
        params: ns,
        query: ScheduledQuerySchema,
        responses: { 200: { description: "the runs", schema: ScheduledSchema }, 400: err("INVALID_ARGUMENT") },
      },
      async ({ params, query }) => {
        const runs = (await this.index(params.ns)).withStatus([RunStatuses.scheduled], query.task);
        runs.sort((a, b) => (a.scheduledAt ?? "").localeCompare(b.scheduledAt ?? ""));
        return { status: 200, body: { runs: runs.slice(0, query.limit) } };
      },
    );
    apiRoute(
      scope,
      "GET",
      "/metrics",
      {
        summary: "Prometheus metrics of the token's namespace (and of the engine process)",
        tags: tags.ops,
        responses: { 200: { description: "Prometheus text format 0.0.4", contentType: "text/plain" } },
      },
      async ({ req }) => {
        const caller = req.apiCaller?.namespace as string;
        const rendered = await this.o.metrics.render(caller);
        if (!rendered) throw new NotFoundError(`namespace ${caller} is not served by this engine`);
        return { status: 200, body: rendered.body, contentType: rendered.contentType };
      },
    );
  }

  /** The namespace's queues: from its leader, else from the projection. */
  private async queues(namespace: string): Promise<Queues> {
    this.served(namespace);
    const fromLeader = await askLeaderQueues(this.o.nc, namespace);
    if (fromLeader) return fromLeader;
    const [index, tj] = await Promise.all([this.index(namespace), this.client(namespace)]);
    const workers = await tj.workers.list();
    const now = Date.now();
    const facts = index.active().flatMap((r) =>
      r.tasks.map((t) => ({
        taskName: t.taskName,
        status: t.status,
        retrying: t.retrying === true,
        queuedAt: t.queuedAt ?? r.createdAt,
        waiting: t.waiting,
      })),
    );
    return {
      source: "projection",
      at: new Date(now).toISOString(),
      queues: summarizeQueues(
        facts,
        workers.map((w) => w.tasks),
        now,
      ),
      concurrency: [],
      rateLimits: [],
    };
  }

  private served(namespace: string): void {
    if (!this.o.namespaces.includes(namespace)) {
      throw new NotFoundError(`namespace ${namespace} is not served by this engine`);
    }
  }

  private async index(namespace: string): Promise<RunIndex> {
    this.served(namespace);
    const index = this.indexes.get(namespace) as RunIndex;
    await index.start();
    return index;
  }

  /** The SDK's client for a namespace, over the engine's connection (borrowed: never closed by it). */
  private client(namespace: string): Promise<Taskjet> {
    this.served(namespace);
    let client = this.clients.get(namespace);
    if (!client) {
      client = Taskjet.fromConnection(this.o.nc, {
        namespace,
        auth: this.o.access,
        logger: this.o.log.child({ ns: namespace }),
      });
      client.catch(() => this.clients.delete(namespace));
      this.clients.set(namespace, client);
    }
    return client;
  }
}

const OPENAPI_DOC: ApiRouteSpec = {
  summary: "This OpenAPI 3.1 document, generated from the API's zod schemas",
  tags: ["operations"],
  responses: { 200: { description: "the document", schema: z.record(z.string(), z.unknown()) } },
  security: "none",
};

/** Milliseconds in each unit a `since`/`until` duration may have. */
const AGO_UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** An ISO time, or a duration before now (`15m`, `2h`, `7d`), as an ISO time. */
function timeOf(value: string, field: string): string {
  const ago = /^(\d+)(ms|s|m|h|d)$/.exec(value);
  // A duration reaching before 1970 (`99999999d`) means since the start: clamped, where toISOString would throw.
  const t = ago
    ? Math.max(0, Date.now() - Number(ago[1]) * (AGO_UNIT_MS[ago[2] as string] as number))
    : (parseIsoTime(value)?.getTime() ?? Number.NaN);
  if (Number.isNaN(t)) {
    throw new ValidationError([
      {
        path: field,
        message: `must be an ISO time (2026-01-31T12:00:00Z) or a duration ago such as 90s, 15m, 2h or 7d, got ${describeValue(value)}`,
      },
    ]);
  }
  return new Date(t).toISOString();
}

function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
