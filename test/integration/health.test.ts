import { describe, expect, it } from "vitest";
import { eventually, startEngine, uniqueNamespace, useNatsServer } from "../harness/fixtures.js";
import { startTcpProxy } from "../harness/tcp-proxy.js";

const nats = useNatsServer();

describe("health", () => {
  it("healthz - GET /healthz answers 200 with the namespaces served and led, without a token (for probes)", async () => {
    const namespaces = [uniqueNamespace(), uniqueNamespace()];
    const engine = await startEngine(nats.url, { namespaces, http: "127.0.0.1:0" });
    try {
      const res = await fetch(`http://${engine.httpAddress()}/healthz`);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toMatch(/application\/json/);
      const body = (await res.json()) as { ok: boolean; namespaces: string[]; leading: string[] };
      expect(body).toEqual({ ok: true, namespaces, leading: expect.any(Array) });
      // A lone engine leads every namespace it serves.
      expect([...body.leading].sort()).toEqual([...namespaces].sort());
      // Only GET: the probe path is no way into the API.
      expect((await fetch(`http://${engine.httpAddress()}/healthz`, { method: "POST" })).status).toBe(404);
    } finally {
      await engine.stop();
    }
  });

  it("healthz - a replica cut off from NATS claims no namespace, while the one that took over does: never two", async () => {
    const namespace = uniqueNamespace();
    const proxy = await startTcpProxy({ host: "127.0.0.1", port: nats.server.port });
    const cutOff = await startEngine(proxy.url, { namespaces: [namespace], http: "127.0.0.1:0" });
    const other = await startEngine(nats.url, { namespaces: [namespace], http: "127.0.0.1:0" });
    const leading = async (engine: typeof other) =>
      ((await (await fetch(`http://${engine.httpAddress()}/healthz`)).json()) as { leading: string[] }).leading;
    try {
      expect(await leading(cutOff)).toEqual([namespace]);
      expect(await leading(other)).toEqual([]);
      await proxy.close();
      await eventually(async () => ((await leading(other)).length === 1 ? true : undefined), 20_000, "takeover");
      expect(await leading(cutOff)).toEqual([]);
      expect(cutOff.leading()).toEqual([]);
    } finally {
      await other.stop();
      await cutOff.stop();
    }
  }, 60_000);
});
