import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { ConnectionError, NotProvisionedError } from "@taskjet/schemas";

/** Room left in a message for the envelope around an input or output. */
export const ENVELOPE_BYTES = 8 * 1024;

/** One NATS connection with its JetStream handles. */
export interface Connection {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** Largest input or output that fits a message on this server. */
  payloadLimit: number;
}

/**
 * Connects with no async stack traces (nats.js otherwise builds an Error per request) and endless reconnects.
 * @throws ConnectionError naming the servers
 */
export async function openConnection(servers: string[], name: string, maxPayloadBytes: number): Promise<Connection> {
  let nc: NatsConnection;
  try {
    nc = await connect({ servers, name, noAsyncTraces: true, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  } catch (err) {
    throw new ConnectionError(servers, { cause: err });
  }
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  const serverMax = nc.info?.max_payload ?? maxPayloadBytes + ENVELOPE_BYTES;
  return { nc, js, jsm, payloadLimit: Math.min(maxPayloadBytes, serverMax - ENVELOPE_BYTES) };
}

/** Turns the server's "stream not found" into NotProvisionedError (no engine has started against this NATS). */
export function withProvisioningHint(conn: Connection, stream: string): (err: unknown) => never {
  return (err) => {
    if (err instanceof Error && /stream not found/i.test(err.message)) {
      throw new NotProvisionedError(stream, [conn.nc.getServer()]);
    }
    throw err;
  };
}
