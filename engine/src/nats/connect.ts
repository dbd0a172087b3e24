import { connect, type NatsConnection } from "@nats-io/transport-node";
import { DEFAULT_MAX_PAYLOAD_BYTES, type NatsAccess, natsOptionNames, resolveNatsAccess } from "@taskjet/schemas";
import { connectionError, natsAccessOptions } from "@taskjet/sdk";

/**
 * Connects with the settings the hot path needs: no async stack traces (nats.js otherwise builds an Error per
 * request) and endless reconnects (a cluster failover must not end the engine).
 * `access` carries the authentication and TLS settings (`resolveNatsAccess`); without it, only what the URLs carry.
 * @throws ConnectionError naming the servers; NatsAuthenticationError when the server refuses the credentials
 */
export async function connectNats(
  servers: string[],
  name: string,
  access: NatsAccess = resolveNatsAccess(servers, { names: natsOptionNames("auth.", "tls.") }, {}),
): Promise<NatsConnection> {
  try {
    return await connect({
      servers: access.servers,
      name,
      noAsyncTraces: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      ...natsAccessOptions(access),
    });
  } catch (err) {
    throw connectionError(access, err);
  }
}

/** The largest message the server takes (its `max_payload`). */
export function maxPayloadOf(nc: NatsConnection): number {
  return nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD_BYTES;
}

/** Whether `json` is more bytes than `max` (UTF-8 takes at most 3 bytes per UTF-16 unit: most need no count). */
export function exceeds(json: string, max: number): boolean {
  return json.length * 3 > max && Buffer.byteLength(json) > max;
}
