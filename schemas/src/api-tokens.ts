import { randomBytes } from "node:crypto";
import { z } from "zod";
import { sha256Hex } from "./webhooks.js";

/**
 * Bearer tokens of the engine's HTTP API (REST, dashboard; webhooks keep their own authentication). A token belongs to
 * one namespace and opens that namespace's routes. Only its SHA-256 is stored (`TJ_API_TOKENS`, key `<ns>.<name>`):
 * tokens are 256 random bits, so a fast hash is enough (a slow one like scrypt protects guessable secrets, and would
 * cost every request).
 */

/** What token names may be: the last token of a KV key. */
export const API_TOKEN_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** The prefix of every token: recognisable by secret scanners and by people. */
export const API_TOKEN_PREFIX = "tjt_";

export const ApiTokenRecordSchema = z
  .object({
    v: z.literal(1),
    name: z.string().regex(API_TOKEN_NAME, "must be 1-64 letters, digits, _ or -"),
    namespace: z.string(),
    /** SHA-256 of the token, hex. */
    hash: z.string().regex(/^[0-9a-f]{64}$/),
    createdAt: z.iso.datetime(),
  })
  .strict();
export type ApiTokenRecord = z.output<typeof ApiTokenRecordSchema>;

/** A new token: the prefix and 32 random bytes, base64url. */
export function newApiToken(): string {
  return `${API_TOKEN_PREFIX}${randomBytes(32).toString("base64url")}`;
}

/** What is stored of a token. */
export function apiTokenHash(token: string): string {
  return sha256Hex(token);
}
