import { createHash, timingSafeEqual } from "node:crypto";
import { z } from "zod";
import { celCompiler } from "./flow.js";
import { EVENT_KEY } from "./pushed-events.js";

/**
 * Webhooks: `POST /api/v1/namespaces/:ns/webhooks/:name` on the engine's HTTP server turns an authenticated request
 * into a pushed event (then `onEvents` applies). Definitions live in `TJ_WEBHOOKS`; API keys and passwords are stored
 * as SHA-256 hashes, HMAC secrets as given (verifying a signature needs them).
 */

const name = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "must be 1-64 letters, digits, _ or -");
const header = z
  .string()
  .regex(/^[A-Za-z0-9-]{1,100}$/, "must be an HTTP header name")
  .transform((h) => h.toLowerCase());

/** Authentication as users give it to `tj.webhooks.create`. */
export const WebhookAuthSchema = z.discriminatedUnion("type", [
  z
    .object({
      type: z.literal("hmac"),
      /** Shared secret the sender signs the raw body with (HMAC-SHA256). */
      secret: z.string().min(8).max(256),
      header: header.default("x-signature"),
      encoding: z.enum(["hex", "base64"]).default("hex"),
      /** Text before the signature in the header, e.g. `sha256=` (GitHub). */
      prefix: z.string().max(32).default(""),
    })
    .strict(),
  z
    .object({ type: z.literal("apiKey"), header: header.default("x-api-key"), key: z.string().min(8).max(256) })
    .strict(),
  z
    .object({ type: z.literal("basic"), username: z.string().min(1).max(128), password: z.string().min(8).max(256) })
    .strict(),
]);
export type WebhookAuth = z.input<typeof WebhookAuthSchema>;

/** Authentication as stored: no clear API keys or passwords. */
const StoredAuthSchema = z.discriminatedUnion("type", [
  z
    .object({
      type: z.literal("hmac"),
      secret: z.string(),
      header: z.string(),
      encoding: z.enum(["hex", "base64"]),
      prefix: z.string(),
    })
    .strict(),
  z.object({ type: z.literal("apiKey"), header: z.string(), keyHash: z.string() }).strict(),
  z.object({ type: z.literal("basic"), username: z.string(), passwordHash: z.string() }).strict(),
]);

export const WebhookDefinitionSchema = z
  .object({
    v: z.literal(1),
    name,
    /** The key of the events it makes, or a CEL expression over `body` and `headers` computing it. */
    eventKey: z.string().regex(EVENT_KEY, "must be an event key").optional(),
    eventKeyExpression: z.string().min(1).max(1000).optional(),
    auth: StoredAuthSchema,
    createdAt: z.iso.datetime(),
  })
  .strict()
  .refine((w) => (w.eventKey === undefined) !== (w.eventKeyExpression === undefined), {
    message: "needs exactly one of eventKey and eventKeyExpression",
    path: ["eventKey"],
  });
export type WebhookDefinition = z.output<typeof WebhookDefinitionSchema>;

/** Compiles an `eventKeyExpression`: CEL over the request's JSON `body` and its lower-cased `headers`. */
export const compileWebhookKey = celCompiler("body", "headers");

export function sha256Hex(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/** The stored form of a webhook's authentication. */
export function storedAuth(auth: z.output<typeof WebhookAuthSchema>): WebhookDefinition["auth"] {
  if (auth.type === "apiKey") return { type: "apiKey", header: auth.header, keyHash: sha256Hex(auth.key) };
  if (auth.type === "basic") return { type: "basic", username: auth.username, passwordHash: sha256Hex(auth.password) };
  return auth;
}

/** Constant-time comparison of two strings (through their SHA-256, so lengths do not leak either). */
export function sameSecret(a: string, b: string): boolean {
  return timingSafeEqual(createHash("sha256").update(a).digest(), createHash("sha256").update(b).digest());
}
