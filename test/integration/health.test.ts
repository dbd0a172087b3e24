import { describe, expect, it } from "vitest";
import { startEngine, uniqueNamespace, useNatsServer } from "../harness/fixtures.js";

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
});
