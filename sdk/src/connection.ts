import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { jserrors } from "@nats-io/jetstream/internal";
import { type KV, Kvm } from "@nats-io/kv";
import {
  type ConnectionOptions,
  connect,
  credsAuthenticator,
  type NatsConnection,
  nkeyAuthenticator,
} from "@nats-io/transport-node";
import {
  ConnectionError,
  type NatsAccess,
  NatsAuthenticationError,
  NotProvisionedError,
  PermissionDeniedError,
  Streams,
  type TaskjetError,
} from "@taskjet/schemas";
import { StreamPublisher } from "./publisher.js";

/** Room left in a message for the envelope around an input or output. */
export const ENVELOPE_BYTES = 8 * 1024;

/** One NATS connection with its JetStream handles. */
export interface Connection {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** Publishes to streams on the hot path (appends): `js.publish`, at a third of its CPU. */
  publisher: StreamPublisher;
  /** Largest input or output that fits a message on this server. */
  payloadLimit: number;
  /** Largest message this server takes (`max_payload`): subject, headers and body. */
  messageLimit: number;
  /**
   * The credentials may not read streams by request body (`$JS.API.STREAM.MSG.GET`), as under the namespace
   * permissions template: reads then go through subject-scoped direct gets and filtered consumers instead.
   */
  scoped: boolean;
}

/**
 * Connects with no async stack traces (nats.js otherwise builds an Error per request) and endless reconnects.
 * Replies come to `inboxPrefix` (per namespace, so permissions can keep one namespace from reading another's).
 * @throws ConnectionError naming the servers; NatsAuthenticationError when the server refuses the credentials
 */
export async function openConnection(
  access: NatsAccess,
  name: string,
  maxPayloadBytes: number,
  inboxPrefix: string,
): Promise<Connection> {
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers: access.servers,
      name,
      noAsyncTraces: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      inboxPrefix,
      ...natsAccessOptions(access),
    });
  } catch (err) {
    throw connectionError(access, err);
  }
  return wrapConnection(nc, maxPayloadBytes);
}

/** The JetStream handles and limits of a connection opened elsewhere (or here). */
export async function wrapConnection(nc: NatsConnection, maxPayloadBytes: number): Promise<Connection> {
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  const serverMax = nc.info?.max_payload ?? maxPayloadBytes + ENVELOPE_BYTES;
  const scoped = await readsScoped(nc);
  const publisher = new StreamPublisher(nc, inboxPrefixOf(nc));
  const payloadLimit = Math.min(maxPayloadBytes, serverMax - ENVELOPE_BYTES);
  return { nc, js, jsm, publisher, payloadLimit, messageLimit: serverMax, scoped };
}

/** The reply prefix a connection was opened with (nats.js keeps its options on the connection object). */
export function inboxPrefixOf(nc: NatsConnection): string {
  return (nc as NatsConnection & { options?: { inboxPrefix?: string } }).options?.inboxPrefix || "_INBOX";
}

/** nats.js options for the resolved authentication and TLS settings. */
export function natsAccessOptions(access: NatsAccess): Partial<ConnectionOptions> {
  const { secrets } = access;
  const options: Partial<ConnectionOptions> = {};
  if (access.method === "userPassword") Object.assign(options, { user: secrets.user, pass: secrets.password });
  if (access.method === "token") options.token = secrets.token;
  if (access.method === "nkey" && secrets.nkeySeed) options.authenticator = nkeyAuthenticator(secrets.nkeySeed);
  if (access.method === "creds" && secrets.creds) options.authenticator = credsAuthenticator(secrets.creds);
  if (access.tls || access.tlsRequired) options.tls = { ...access.tls };
  return options;
}

/** A failed connect as a typed error: refused credentials apart from an unreachable server. */
export function connectionError(access: NatsAccess, err: unknown): TaskjetError {
  const message = err instanceof Error ? err.message : String(err);
  if ((err instanceof Error && err.name === "AuthorizationError") || /authori[sz]ation violation/i.test(message)) {
    return new NatsAuthenticationError(access.servers, access.describe, { cause: err });
  }
  return new ConnectionError(access.servers, { cause: err });
}

/**
 * Whether these credentials may read a stream by request body. Any answer but a permissions violation (an error
 * reply, no responders, a timeout) means they may, or that it does not matter yet.
 */
async function readsScoped(nc: NatsConnection): Promise<boolean> {
  try {
    await nc.request(`$JS.API.STREAM.MSG.GET.${Streams.history}`, JSON.stringify({ seq: 0 }), { timeout: 2000 });
    return false;
  } catch (err) {
    return permissionDenied(err) !== undefined;
  }
}

/** The PermissionDeniedError inside a nats.js error (a RequestError wraps it), if that is what it is. */
export function permissionDenied(err: unknown): PermissionDeniedError | undefined {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (e instanceof PermissionDeniedError) return e;
    if (e.name === "PermissionViolationError") {
      const { operation, subject } = e as Error & { operation?: string; subject?: string };
      return new PermissionDeniedError(operation === "subscription" ? "subscription" : "publish", subject ?? "?", {
        cause: err,
      });
    }
  }
  const message = err instanceof Error ? err.message : "";
  const m = /Permissions Violation for (Publish|Subscription) to "([^"]+)"/.exec(message);
  if (m)
    return new PermissionDeniedError(m[1] === "Publish" ? "publish" : "subscription", m[2] as string, { cause: err });
  return undefined;
}

/** Rethrows a permissions violation as PermissionDeniedError, anything else as it is. */
export function rethrowDenied(err: unknown): never {
  throw permissionDenied(err) ?? err;
}

/**
 * Opens a KV bucket. With scoped credentials, gets are direct gets with the key in the request subject, which
 * permissions can allow per namespace (a get by request body cannot be told apart); Taskjet's buckets allow them.
 */
export function openBucket(conn: Connection, bucket: string): Promise<KV> {
  return new Kvm(conn.nc).open(bucket, conn.scoped ? { allow_direct: true } : {});
}

/** The server's answer for a stream (or bucket) that does not exist: no engine has provisioned it here. */
export function isStreamNotFound(err: unknown): boolean {
  return err instanceof Error && /stream not found/i.test(err.message);
}

/**
 * Why a publish to `stream` failed: one to a subject no stream captures fails as "no responders"
 * (JetStreamNotEnabled), as one to a stream between leaders does; when the stream is not there, NotProvisionedError.
 */
export async function whyPublishFailed(conn: Connection, stream: string, err: unknown): Promise<unknown> {
  if (!(err instanceof jserrors.JetStreamNotEnabled)) return err;
  try {
    await conn.jsm.streams.info(stream);
  } catch (infoErr) {
    if (isStreamNotFound(infoErr)) return new NotProvisionedError(stream, [conn.nc.getServer()]);
  }
  return err;
}

/**
 * Turns the server's "stream not found" into NotProvisionedError (no engine has started against this NATS), and a
 * permissions violation into PermissionDeniedError.
 */
export function withProvisioningHint(conn: Connection, stream: string): (err: unknown) => never {
  return (err) => {
    const denied = permissionDenied(err);
    if (denied) throw denied;
    if (isStreamNotFound(err)) {
      throw new NotProvisionedError(stream, [conn.nc.getServer()]);
    }
    throw err;
  };
}

/**
 * Runs `op` on a bucket. Opening one succeeds without its stream, so its reads and writes are where a NATS no engine
 * ran against shows: a read as "stream not found", a write as "no responders" (JetStreamNotEnabled, though JetStream
 * is on). Both become NotProvisionedError, a permissions violation PermissionDeniedError.
 */
export async function onBucket<T>(
  conn: Connection,
  bucket: string,
  kv: Promise<KV>,
  op: (kv: KV) => Promise<T>,
): Promise<T> {
  const stream = `KV_${bucket}`;
  try {
    return await op(await kv);
  } catch (err) {
    return withProvisioningHint(conn, stream)(await whyPublishFailed(conn, stream, err));
  }
}
