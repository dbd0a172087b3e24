import { connect, type NatsConnection } from "@nats-io/transport-node";
import { ConnectionError } from "@taskjet/schemas";

/**
 * Connects with the settings the hot path needs: no async stack traces (nats.js otherwise builds an Error per
 * request) and endless reconnects (a cluster failover must not end the engine).
 * @throws ConnectionError naming the servers
 */
export async function connectNats(servers: string[], name: string): Promise<NatsConnection> {
  try {
    return await connect({
      servers,
      name,
      noAsyncTraces: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
    });
  } catch (err) {
    throw new ConnectionError(servers, { cause: err });
  }
}
