import { ApiErrorSchema } from "@taskjet/schemas";
import type { FastifyInstance, RouteOptions } from "fastify";
import { z } from "zod";

/**
 * How a route is documented in the OpenAPI document: the zod schemas it validates with and those it answers with.
 * Put on a route as `config: { openapi: spec }` (see `apiRoute` in `rest.ts`); `OpenApiDocs` reads it from every route
 * as it is added, so the document cannot leave out a route the server serves.
 */
export interface ApiRouteSpec {
  summary: string;
  description?: string;
  tags?: string[];
  params?: z.ZodObject;
  query?: z.ZodObject;
  body?: z.ZodType;
  /** By status code. */
  responses: Record<number, { description: string; schema?: z.ZodType; contentType?: string }>;
  /** `bearer` (the default): behind `registerProtectedRoutes`. */
  security?: "bearer" | "none";
}

declare module "fastify" {
  interface FastifyContextConfig {
    /** The route's OpenAPI description. */
    openapi?: ApiRouteSpec;
  }
}

type JsonSchema = Record<string, unknown>;

/** A zod schema as JSON Schema 2020-12 (OpenAPI 3.1's dialect): requests as they are sent, answers as they come. */
function jsonSchema(schema: z.ZodType, io: "input" | "output"): JsonSchema {
  const { $schema: _s, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: "any", target: "draft-2020-12" });
  return rest as JsonSchema;
}

const errorResponse = (description: string) => ({
  description,
  content: { "application/json": { schema: { $ref: "#/components/schemas/ApiError" } } },
});

/** One route as collected: what the document needs to know of it. */
interface CollectedRoute {
  method: string;
  url: string;
  spec: ApiRouteSpec | undefined;
}

/**
 * Collects every route under `/api/` and `/metrics` as it is registered (an `onRoute` hook: attach it before the
 * routes), and builds the OpenAPI 3.1 document from their specs. A route registered without a spec still appears,
 * with its path parameters only, marked `x-taskjet-undocumented` (the OpenAPI test fails on it).
 */
export class OpenApiDocs {
  private readonly routes: CollectedRoute[] = [];
  private cached: JsonSchema | undefined;

  constructor(private readonly info: { title: string; version: string }) {}

  /** Starts collecting routes: call before registering any. */
  attach(app: FastifyInstance): void {
    app.addHook("onRoute", (route: RouteOptions) => {
      if (!route.url.startsWith("/api/") && route.url !== "/metrics") return;
      const methods = (Array.isArray(route.method) ? route.method : [route.method]).filter((m) => m !== "HEAD");
      for (const method of methods) {
        this.routes.push({ method: method.toLowerCase(), url: route.url, spec: route.config?.openapi });
      }
      this.cached = undefined;
    });
  }

  /** The document (built once, after the routes are in). */
  document(): JsonSchema {
    this.cached ??= this.build();
    return this.cached;
  }

  private build(): JsonSchema {
    const paths: Record<string, Record<string, JsonSchema>> = {};
    for (const r of this.routes) {
      const path = r.url.replace(/:([A-Za-z0-9_]+)/g, "{$1}");
      paths[path] ??= {};
      (paths[path] as Record<string, JsonSchema>)[r.method] = r.spec ? operation(r.spec) : undocumented(r.url);
    }
    return {
      openapi: "3.1.0",
      info: {
        ...this.info,
        description:
          "Taskjet's REST API: runs, history, logs, workers, queues, crons and scheduled runs of a namespace. Every " +
          "route but this document wants `Authorization: Bearer <token>` with a token of the route's namespace " +
          "(`taskjet tokens create`). Errors are `{ error: { code, message, issues? } }`.",
      },
      components: {
        securitySchemes: { bearer: { type: "http", scheme: "bearer", description: "taskjet tokens create" } },
        schemas: { ApiError: jsonSchema(ApiErrorSchema, "output") },
      },
      paths,
    };
  }
}

function operation(spec: ApiRouteSpec): JsonSchema {
  const parameters: JsonSchema[] = [];
  for (const [where, schema] of [
    ["path", spec.params],
    ["query", spec.query],
  ] as const) {
    if (!schema) continue;
    for (const [name, field] of Object.entries(schema.shape as Record<string, z.ZodType>)) {
      parameters.push({
        name,
        in: where,
        required: where === "path" || !field.safeParse(undefined).success,
        ...(field.description ? { description: field.description } : {}),
        schema: jsonSchema(field, "input"),
      });
    }
  }
  const responses: Record<string, JsonSchema> = {};
  for (const [status, r] of Object.entries(spec.responses)) {
    responses[status] = r.schema
      ? {
          description: r.description,
          content: { [r.contentType ?? "application/json"]: { schema: jsonSchema(r.schema, "output") } },
        }
      : Number(status) >= 400
        ? errorResponse(r.description)
        : { description: r.description, ...(r.contentType ? { content: { [r.contentType]: {} } } : {}) };
  }
  const secured = spec.security !== "none";
  if (secured) {
    responses["401"] ??= errorResponse("UNAUTHENTICATED: no token, or an unknown or revoked one");
    responses["403"] ??= errorResponse("FORBIDDEN: a token of another namespace");
  }
  return {
    summary: spec.summary,
    ...(spec.description ? { description: spec.description } : {}),
    ...(spec.tags ? { tags: spec.tags } : {}),
    ...(parameters.length > 0 ? { parameters } : {}),
    ...(spec.body
      ? {
          requestBody: {
            // Required unless the schema takes no body at all (`{ reason? }` defaults to `{}`).
            required: !spec.body.safeParse(undefined).success,
            content: { "application/json": { schema: jsonSchema(spec.body, "input") } },
          },
        }
      : {}),
    responses,
    ...(secured ? { security: [{ bearer: [] }] } : { security: [] }),
  };
}

function undocumented(url: string): JsonSchema {
  const names = [...url.matchAll(/:([A-Za-z0-9_]+)/g)].map((m) => m[1] as string);
  return {
    summary: `${url} (no schema given)`,
    "x-taskjet-undocumented": true,
    parameters: names.map((name) => ({ name, in: "path", required: true, schema: { type: "string" } })),
    responses: { default: { description: "not documented" } },
    security: [{ bearer: [] }],
  };
}

/** The webhook receiver (`webhooks.ts`): authenticated by the webhook's own scheme, not by bearer tokens. */
export const webhookRouteDoc: ApiRouteSpec = {
  summary: "Receive a webhook: its body becomes a pushed event (runs of the tasks listening to its key)",
  description:
    "Authenticated as the webhook was created (`tj.webhooks.create`): HMAC-SHA256 signature, API key or basic auth. " +
    "The body must be a JSON object of at most 1 MiB.",
  tags: ["webhooks"],
  params: z.object({ ns: z.string().describe("namespace"), name: z.string().describe("webhook name") }),
  body: z.record(z.string(), z.unknown()),
  responses: {
    202: { description: "recorded as a pushed event", schema: z.object({ eventId: z.string() }) },
    400: { description: "INVALID_ARGUMENT: not JSON, not an object, nested too deep" },
    401: { description: "bad credentials for this webhook" },
    404: { description: "no such webhook" },
    413: { description: "body over 1 MiB" },
  },
  security: "none",
};
