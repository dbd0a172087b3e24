import { readFileSync, statSync } from "node:fs";
import { z } from "zod";
import { ValidationError, type ValidationIssue } from "./errors.js";

/**
 * How the engine, workers, clients and the CLI authenticate to NATS and secure the connection: one of user/password,
 * token, nkey seed file or `.creds` file, plus optional TLS (CA, client certificate and key). Settings come from
 * options (SDK, engine config, CLI flags) or the environment; files are read once, when the configuration is resolved,
 * so a missing or unreadable file fails at the edge with the option that named it. Nothing here imports `@nats-io/*`:
 * the engine and the SDK turn the resolved value into their connection options.
 */

/** TLS settings: PEM files. A `tls://` server URL, or any of these, makes TLS required. */
export interface NatsTlsOptions {
  /** CA certificate(s) to verify the server with. @default env TASKJET_NATS_TLS_CA, else the system's CAs */
  caFile?: string | undefined;
  /** Client certificate, for servers that verify clients (with `keyFile`). @default env TASKJET_NATS_TLS_CERT */
  certFile?: string | undefined;
  /** The client certificate's private key. @default env TASKJET_NATS_TLS_KEY */
  keyFile?: string | undefined;
}

/** Authentication settings: give one way (user and password, token, nkey seed file or creds file), or none. */
export interface NatsAuthOptions {
  /** User name, with `password`. @default env TASKJET_NATS_USER */
  user?: string | undefined;
  /** Password of `user`. @default env TASKJET_NATS_PASSWORD */
  password?: string | undefined;
  /** Authentication token. @default env TASKJET_NATS_TOKEN */
  token?: string | undefined;
  /** Path of an nkey user seed file (one line starting with `SU`). @default env TASKJET_NATS_NKEY */
  nkeyFile?: string | undefined;
  /** Path of a `.creds` file (user JWT and seed, as `nsc` makes them). @default env TASKJET_NATS_CREDS */
  credsFile?: string | undefined;
}

/** The environment variables read for NATS authentication and TLS. */
export const NatsAuthEnv = {
  user: "TASKJET_NATS_USER",
  password: "TASKJET_NATS_PASSWORD",
  token: "TASKJET_NATS_TOKEN",
  nkeyFile: "TASKJET_NATS_NKEY",
  credsFile: "TASKJET_NATS_CREDS",
  caFile: "TASKJET_NATS_TLS_CA",
  certFile: "TASKJET_NATS_TLS_CERT",
  keyFile: "TASKJET_NATS_TLS_KEY",
} as const;
export type NatsAuthField = keyof typeof NatsAuthEnv;

const optionalText = z.string().min(1).optional();

/** The option shapes, for configuration schemas. */
export const NatsAuthOptionsSchema = z
  .object({
    user: optionalText,
    password: optionalText,
    token: optionalText,
    nkeyFile: optionalText,
    credsFile: optionalText,
  })
  .strict();
export const NatsTlsOptionsSchema = z
  .object({ caFile: optionalText, certFile: optionalText, keyFile: optionalText })
  .strict();

/** How the connection authenticates. */
export type NatsAuthMethod = "none" | "userPassword" | "token" | "nkey" | "creds";

const AUTH_FIELDS = ["user", "password", "token", "nkeyFile", "credsFile"] as const;
const TLS_FIELDS = ["caFile", "certFile", "keyFile"] as const;

/**
 * Resolved authentication and TLS: secrets and file contents, ready for a NATS connection. Never printed: its JSON
 * form (what loggers write) says only which method and where it came from.
 */
export class NatsAccess {
  constructor(
    readonly method: NatsAuthMethod,
    /** Where the method came from, for error messages: `"token (TASKJET_NATS_TOKEN)"`. */
    readonly describe: string,
    readonly secrets: {
      user?: string;
      password?: string;
      token?: string;
      /** The seed's text as bytes (what nats.js signs with). */
      nkeySeed?: Uint8Array;
      /** The `.creds` file's content. */
      creds?: Uint8Array;
    },
    /** PEM texts; undefined: no TLS unless a URL says `tls://` or the server requires it. */
    readonly tls: { ca?: string; cert?: string; key?: string } | undefined,
    /** The server URLs without credentials: what to connect to and what may be printed. */
    readonly servers: string[],
    /** True when a URL asked for TLS with `tls://`. */
    readonly tlsRequired: boolean,
  ) {}

  toJSON(): Record<string, unknown> {
    return { method: this.method, from: this.describe, tls: this.tls !== undefined || this.tlsRequired };
  }

  /** No authentication, no TLS settings. */
  static none(servers: string[]): NatsAccess {
    return new NatsAccess("none", "none", {}, undefined, servers.map(stripCredentials), servers.some(isTlsUrl));
  }
}

/** What a source calls each setting, for messages: `--nats-token`, `auth.token`, `TASKJET_NATS_TOKEN`. */
export type NatsAuthNames = Record<NatsAuthField, string>;

/** Names of the SDK's and the engine's options. */
export const natsOptionNames = (authPrefix: string, tlsPrefix: string): NatsAuthNames => ({
  user: `${authPrefix}user`,
  password: `${authPrefix}password`,
  token: `${authPrefix}token`,
  nkeyFile: `${authPrefix}nkeyFile`,
  credsFile: `${authPrefix}credsFile`,
  caFile: `${tlsPrefix}caFile`,
  certFile: `${tlsPrefix}certFile`,
  keyFile: `${tlsPrefix}keyFile`,
});

/**
 * Resolves the authentication and TLS settings of a connection to `servers`. An explicit method (options or flags)
 * replaces the environment's (a user given explicitly still takes `TASKJET_NATS_PASSWORD`); TLS files are taken one by
 * one, options over environment. Credentials in server URLs
 * (`nats://user:pass@host`, `nats://token@host`) are taken out of the URLs (nats.js would drop them silently) and count
 * as a method of their own.
 * @throws ValidationError naming the option or variable: two methods at once, a user without password, a certificate
 *   without key, a file that cannot be read or does not hold what it should
 */
export function resolveNatsAccess(
  servers: string[],
  explicit: { auth?: NatsAuthOptions | undefined; tls?: NatsTlsOptions | undefined; names: NatsAuthNames },
  env: Record<string, string | undefined>,
): NatsAccess {
  const issues: ValidationIssue[] = [];
  const fromUrls = credentialsInUrls(servers, issues);
  const cleanServers = servers.map(stripCredentials);
  const envValues: Partial<Record<NatsAuthField, string>> = {};
  for (const field of [...AUTH_FIELDS, ...TLS_FIELDS]) {
    const value = env[NatsAuthEnv[field]];
    if (value !== undefined && value !== "") envValues[field] = value;
  }
  const explicitAuth = pick(explicit.auth, AUTH_FIELDS, explicit.names, issues);
  const envAuth = pick(envValues, AUTH_FIELDS, NatsAuthEnv, issues);
  // One layer decides the method: explicit settings, else the URLs, else the environment.
  let layer: { values: Partial<Record<NatsAuthField, string>>; names: Record<NatsAuthField, string> };
  if (Object.keys(explicitAuth).length > 0) {
    layer = { values: explicitAuth, names: { ...explicit.names } };
    // A user named explicitly may take its password from the environment (where secrets belong).
    if (explicitAuth.user !== undefined && explicitAuth.password === undefined && envAuth.password !== undefined) {
      layer.values = { ...explicitAuth, password: envAuth.password };
      layer.names.password = NatsAuthEnv.password;
    }
    if (fromUrls) {
      issues.push({
        path: "servers",
        message: `a server URL carries credentials and ${Object.keys(explicitAuth)
          .map((f) => explicit.names[f as NatsAuthField])
          .join(" and ")} is set too: give credentials one way`,
      });
    }
  } else if (fromUrls) {
    layer = { values: fromUrls, names: { ...NatsAuthEnv, user: "servers", password: "servers", token: "servers" } };
  } else {
    layer = { values: envAuth, names: NatsAuthEnv };
  }
  const { method, secrets, describe } = authMethod(layer.values, layer.names, issues);
  const tlsValues = { ...pick(envValues, TLS_FIELDS, NatsAuthEnv, issues) };
  const tlsNames: Record<string, string> = { ...NatsAuthEnv };
  for (const [field, value] of Object.entries(pick(explicit.tls, TLS_FIELDS, explicit.names, issues))) {
    tlsValues[field as NatsAuthField] = value;
    tlsNames[field] = explicit.names[field as NatsAuthField];
  }
  const explicitTls = Object.keys(pick(explicit.tls, TLS_FIELDS, explicit.names, [])).length > 0;
  const tls = readTls(tlsValues, tlsNames, explicitTls ? explicit.names : NatsAuthEnv, issues);
  if (issues.length > 0) throw new ValidationError(issues);
  return new NatsAccess(method, describe, secrets, tls, cleanServers, servers.some(isTlsUrl));
}

function stripCredentials(url: string): string {
  return url.replace(/^((?:[a-z][a-z0-9+.-]*:\/\/)?)[^/@\s]+@/i, "$1");
}

function isTlsUrl(url: string): boolean {
  return /^tls:\/\//i.test(url.trim());
}

/** `user:password@` or `token@` from the URLs; all URLs that carry some must carry the same. */
function credentialsInUrls(
  servers: string[],
  issues: ValidationIssue[],
): Partial<Record<NatsAuthField, string>> | undefined {
  let found: { user?: string; password?: string; token?: string } | undefined;
  let foundIn = "";
  for (const [i, server] of servers.entries()) {
    const m = /^(?:[a-z][a-z0-9+.-]*:\/\/)?([^/@\s]+)@/i.exec(server);
    if (!m) continue;
    const info = m[1] as string;
    const colon = info.indexOf(":");
    const creds =
      colon < 0
        ? { token: safeDecode(info) }
        : { user: safeDecode(info.slice(0, colon)), password: safeDecode(info.slice(colon + 1)) };
    if (found && JSON.stringify(found) !== JSON.stringify(creds)) {
      issues.push({ path: `servers[${i}]`, message: `carries other credentials than ${foundIn}: give one set` });
      continue;
    }
    found = creds;
    foundIn = `servers[${i}]`;
  }
  return found;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** The set fields of `values` among `fields`, each checked to be a non-empty string. */
function pick<F extends NatsAuthField>(
  values: Partial<Record<F, unknown>> | undefined,
  fields: readonly F[],
  names: Record<NatsAuthField, string>,
  issues: ValidationIssue[],
): Partial<Record<NatsAuthField, string>> {
  const out: Partial<Record<NatsAuthField, string>> = {};
  if (values === undefined || values === null) return out;
  if (typeof values !== "object") {
    issues.push({ path: names[fields[0] as F].replace(/\.[^.]*$/, ""), message: "must be an object" });
    return out;
  }
  for (const field of fields) {
    const value = values[field];
    if (value === undefined) continue;
    if (typeof value !== "string" || value === "") {
      issues.push({ path: names[field], message: "must be a non-empty string" });
      continue;
    }
    out[field] = value;
  }
  return out;
}

function authMethod(
  values: Partial<Record<NatsAuthField, string>>,
  names: Record<NatsAuthField, string>,
  issues: ValidationIssue[],
): { method: NatsAuthMethod; secrets: NatsAccess["secrets"]; describe: string } {
  const methods: [NatsAuthMethod, NatsAuthField][] = [];
  if (values.user !== undefined || values.password !== undefined) methods.push(["userPassword", "user"]);
  if (values.token !== undefined) methods.push(["token", "token"]);
  if (values.nkeyFile !== undefined) methods.push(["nkey", "nkeyFile"]);
  if (values.credsFile !== undefined) methods.push(["creds", "credsFile"]);
  if (methods.length > 1) {
    const named = methods.map(([, f]) => names[f]);
    issues.push({
      path: named[0] as string,
      message: `conflicts with ${named.slice(1).join(" and ")}: use one way to authenticate (user and password, token, nkey or creds)`,
    });
    return { method: "none", secrets: {}, describe: "none" };
  }
  const [only] = methods;
  if (!only) return { method: "none", secrets: {}, describe: "none" };
  const [method, field] = only;
  const describe = `${method === "userPassword" ? "user and password" : method} (${names[field]})`;
  switch (method) {
    case "userPassword":
      if (values.user === undefined) issues.push({ path: names.user, message: `is required with ${names.password}` });
      if (values.password === undefined) {
        issues.push({ path: names.password, message: `is required with ${names.user}` });
      }
      return { method, describe, secrets: { user: values.user ?? "", password: values.password ?? "" } };
    case "token":
      return { method, describe, secrets: { token: values.token as string } };
    case "nkey": {
      const text = readText(values.nkeyFile as string, names.nkeyFile, issues)?.trim();
      if (text !== undefined && !/^SU[A-Z2-7]{56}$/.test(text)) {
        issues.push({
          path: names.nkeyFile,
          message: `${values.nkeyFile} is not an nkey user seed (one line of 58 characters starting with "SU")`,
        });
      }
      return { method, describe, secrets: { nkeySeed: new TextEncoder().encode(text ?? "") } };
    }
    case "creds": {
      const text = readText(values.credsFile as string, names.credsFile, issues);
      if (
        text !== undefined &&
        !(/-----BEGIN NATS USER JWT-----/.test(text) && /-----BEGIN USER NKEY SEED-----/.test(text))
      ) {
        issues.push({
          path: names.credsFile,
          message: `${values.credsFile} is not a .creds file (it needs a NATS USER JWT and a USER NKEY SEED block)`,
        });
      }
      return { method, describe, secrets: { creds: new TextEncoder().encode(text ?? "") } };
    }
    default:
      return { method: "none", secrets: {}, describe: "none" };
  }
}

function readTls(
  values: Partial<Record<NatsAuthField, string>>,
  names: Record<string, string>,
  pairNames: Record<NatsAuthField, string>,
  issues: ValidationIssue[],
): NatsAccess["tls"] {
  const { caFile, certFile, keyFile } = values;
  if (caFile === undefined && certFile === undefined && keyFile === undefined) return undefined;
  if ((certFile === undefined) !== (keyFile === undefined)) {
    const [given, missing] = certFile === undefined ? ["keyFile", "certFile"] : ["certFile", "keyFile"];
    // Named as the source that gave one half would name the other.
    issues.push({
      path: pairNames[missing as NatsAuthField],
      message: `is required with ${names[given]}`,
    });
  }
  const tls: { ca?: string; cert?: string; key?: string } = {};
  const pem = (file: string | undefined, field: string, kind: RegExp, what: string) => {
    if (file === undefined) return undefined;
    const text = readText(file, names[field] as string, issues);
    if (text !== undefined && !kind.test(text)) {
      issues.push({ path: names[field] as string, message: `${file} holds no PEM ${what}` });
    }
    return text;
  };
  const ca = pem(caFile, "caFile", /-----BEGIN CERTIFICATE-----/, "certificate");
  const cert = pem(certFile, "certFile", /-----BEGIN CERTIFICATE-----/, "certificate");
  const key = pem(keyFile, "keyFile", /-----BEGIN [A-Z ]*PRIVATE KEY-----/, "private key");
  if (ca !== undefined) tls.ca = ca;
  if (cert !== undefined) tls.cert = cert;
  if (key !== undefined) tls.key = key;
  return tls;
}

/** Files of secrets are small; a bigger one is a wrong path (a log, a device). */
const MAX_SECRET_FILE_BYTES = 1024 * 1024;

function readText(file: string, name: string, issues: ValidationIssue[]): string | undefined {
  try {
    // Checked before reading: a device or a huge file would hang or fill memory.
    const stat = statSync(file);
    if (!stat.isFile()) {
      issues.push({ path: name, message: `${file} is not a regular file` });
      return undefined;
    }
    if (stat.size > MAX_SECRET_FILE_BYTES) {
      issues.push({ path: name, message: `${file} is ${stat.size} bytes: not a key, certificate or creds file` });
      return undefined;
    }
    return readFileSync(file, "utf8");
  } catch (err) {
    issues.push({ path: name, message: `cannot read ${file}: ${(err as Error).message}` });
    return undefined;
  }
}
