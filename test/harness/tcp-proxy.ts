import { createServer, type Server, type Socket, connect as tcpConnect } from "node:net";

/** One client's connection through the proxy. */
interface Pair {
  client: Socket;
  upstream: Socket;
  /** Bytes from the client are read and dropped, as a server that died before reading them. */
  swallowing: boolean;
  /** Bytes from the server are dropped, as replies lost on the way (the server acted on what it was sent). */
  deaf: boolean;
}

/**
 * A loopback TCP proxy in front of a nats-server, for faults a real server cannot be made to show on cue: `swallow`
 * drops what the current clients send (the server never sees it, their sockets stay up), `deafen` drops what the
 * server sends them (it acts on their messages, its replies are lost), `cut` then closes their connections; clients
 * that reconnect pass through untouched.
 */
export interface TcpProxy {
  readonly url: string;
  swallow(): void;
  deafen(): void;
  cut(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const pairs = new Set<Pair>();
  const server: Server = createServer((client) => {
    const upstream = tcpConnect(target.port, target.host);
    const pair: Pair = { client, upstream, swallowing: false, deaf: false };
    pairs.add(pair);
    client.on("data", (chunk) => {
      if (!pair.swallowing) upstream.write(chunk);
    });
    upstream.on("data", (chunk) => {
      if (!pair.deaf) client.write(chunk);
    });
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.on("close", end);
      s.on("error", end);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("proxy has no TCP address");
  const cut = () => {
    for (const p of [...pairs]) {
      p.client.destroy();
      p.upstream.destroy();
    }
  };
  return {
    url: `nats://127.0.0.1:${address.port}`,
    swallow() {
      for (const p of pairs) p.swallowing = true;
    },
    deafen() {
      for (const p of pairs) p.deaf = true;
    },
    cut,
    async close() {
      cut();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
