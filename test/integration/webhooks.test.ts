import { createHmac } from "node:crypto";
import { ValidationError } from "@taskjet/sdk";
import { describe, expect, it, onTestFinished } from "vitest";
import { sleep } from "../harness/concurrency-probe.js";
import { connectClient, eventually, startEngine, uniqueNamespace, useNatsServer } from "../harness/fixtures.js";
import { startNatsServer } from "../harness/nats-server.js";
import { startTcpProxy } from "../harness/tcp-proxy.js";

const nats = useNatsServer();

async function post(url: string, body: string | Buffer, headers: Record<string, string> = {}) {
  const res = await fetch(url, { method: "POST", body, headers: { "content-type": "application/json", ...headers } });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

describe("webhooks", () => {
  it("webhooks - authenticated requests become events that start runs; every refusal records nothing", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace], http: "127.0.0.1:0" });
    const base = `http://${engine.httpAddress()}/api/v1/namespaces/${namespace}/webhooks`;
    const tj = await connectClient(nats.url, { namespace });
    const got: { key: string | undefined; input: unknown; meta: Record<string, string> }[] = [];
    const handle = tj.task({
      name: "handle",
      onEvents: ["stripe:*", "github:*", "form:submitted"],
      fn: async (input, ctx) => {
        got.push({ key: ctx.triggeringEvent()?.key, input, meta: ctx.additionalMetadata() });
        return {};
      },
    });
    const worker = await tj.worker("w", { workflows: [handle] });
    await worker.start();

    const secret = "whsec_0123456789";
    const hmac = await tj.webhooks.create({
      name: "github",
      eventKeyExpression: "'github:' + headers['x-github-event']",
      auth: { type: "hmac", secret, header: "X-Hub-Signature-256", prefix: "sha256=" },
    });
    expect(hmac.path).toBe(`/api/v1/namespaces/${namespace}/webhooks/github`);
    await tj.webhooks.create({
      name: "stripe",
      eventKey: "stripe:charge",
      auth: { type: "apiKey", key: "sk_live_abcdefgh" },
    });
    await tj.webhooks.create({
      name: "form",
      eventKey: "form:submitted",
      auth: { type: "basic", username: "forms", password: "correct horse" },
    });
    expect((await tj.webhooks.list()).map((w) => [w.name, w.auth.type])).toEqual([
      ["form", "basic"],
      ["github", "hmac"],
      ["stripe", "apiKey"],
    ]);
    expect(JSON.stringify(await tj.webhooks.list())).not.toContain("sk_live"); // no secrets back out

    // The engine follows TJ_WEBHOOKS: wait until it serves the three.
    const body = JSON.stringify({ action: "opened", number: 7 });
    const sign = (b: string) => `sha256=${createHmac("sha256", secret).update(b).digest("hex")}`;
    const ok = await eventually(async () => {
      const res = await post(`${base}/github`, body, {
        "x-hub-signature-256": sign(body),
        "x-github-event": "pull_request",
      });
      return res.status === 202 ? res : undefined;
    });
    expect(ok.body.eventId).toEqual(expect.any(String));
    const stripe = await post(`${base}/stripe`, JSON.stringify({ amount: 100 }), { "x-api-key": "sk_live_abcdefgh" });
    expect(stripe.status).toBe(202);
    const basic = Buffer.from("forms:correct horse").toString("base64");
    expect(
      (await post(`${base}/form`, JSON.stringify({ email: "a@b.c" }), { authorization: `Basic ${basic}` })).status,
    ).toBe(202);
    await eventually(() => (got.length === 3 ? true : undefined));
    expect(got.map((g) => g.key).sort()).toEqual(["form:submitted", "github:pull_request", "stripe:charge"]);
    expect(got.find((g) => g.key === "stripe:charge")).toMatchObject({
      input: { amount: 100 },
      meta: { webhook: "stripe" },
    });

    // Refusals: each a JSON error, none recorded as an event.
    const before = (await tj.events.list({ limit: 100 })).length;
    const refusals: [Promise<{ status: number; body: Record<string, unknown> }>, number][] = [
      [post(`${base}/github`, body, { "x-hub-signature-256": sign("{}"), "x-github-event": "push" }), 401],
      [post(`${base}/github`, body, { "x-github-event": "push" }), 401],
      [post(`${base}/stripe`, "{}", { "x-api-key": "sk_live_wrongwrong" }), 401],
      [post(`${base}/form`, "{}", { authorization: `Basic ${Buffer.from("forms:nope").toString("base64")}` }), 401],
      [post(`${base}/nope`, "{}", { "x-api-key": "sk_live_abcdefgh" }), 404],
      [post(`${base}/stripe`, "not json", { "x-api-key": "sk_live_abcdefgh" }), 400],
      [post(`${base}/stripe`, "[1,2]", { "x-api-key": "sk_live_abcdefgh" }), 400],
      [post(`${base}/stripe`, Buffer.alloc(2 * 1024 * 1024, 32), { "x-api-key": "sk_live_abcdefgh" }), 413],
      [post(`http://${engine.httpAddress()}/api/v1/namespaces/other/webhooks/stripe`, "{}"), 404],
    ];
    for (const [request, status] of refusals) {
      const res = await request;
      expect(res.status).toBe(status);
      expect(res.body.error).toEqual({ code: expect.any(String), message: expect.any(String) });
    }
    const unsigned = await post(`${base}/form`, "{}");
    expect(unsigned.status).toBe(401);
    await sleep(300);
    expect((await tj.events.list({ limit: 100 })).length).toBe(before);
    expect(got).toHaveLength(3);

    // A CEL int is a bigint: the refusal names it (rendering it as JSON would throw, a 500).
    await tj.webhooks.create({
      name: "counter",
      eventKeyExpression: "int(body.n)",
      auth: { type: "apiKey", key: "12345678" },
    });
    const counted = await eventually(async () => {
      const res = await post(`${base}/counter`, JSON.stringify({ n: 7 }), { "x-api-key": "12345678" });
      return res.status === 404 ? undefined : res;
    });
    expect(counted.status).toBe(400);
    expect(counted.body.error).toEqual({
      code: "INVALID_ARGUMENT",
      message: "eventKeyExpression: must give an event key, got 7n",
    });

    await expect(
      tj.webhooks.create({ name: "x", eventKey: "k", auth: { type: "hmac", secret: "short" } }),
    ).rejects.toThrow(/auth\.secret/);
    await expect(
      tj.webhooks.create({ name: "x", eventKeyExpression: "body.(", auth: { type: "apiKey", key: "12345678" } }),
    ).rejects.toThrow(ValidationError);
    await expect(tj.webhooks.create({ name: "x", auth: { type: "apiKey", key: "12345678" } })).rejects.toThrow(
      /exactly one of eventKey and eventKeyExpression/,
    );
    expect(await tj.webhooks.delete("stripe")).toBe(true);
    await eventually(async () =>
      (await post(`${base}/stripe`, "{}", { "x-api-key": "sk_live_abcdefgh" })).status === 404 ? true : undefined,
    );
    await tj.close();
    await engine.stop();
  });

  it("webhooks - a body within 1 MiB whose event would not fit a NATS message, and a body over 1 MiB, are 413 PAYLOAD_TOO_LARGE; nothing recorded", async () => {
    // The production default max_payload (1 MiB), where the harness raises it to 2 MiB.
    const small = await startNatsServer({ maxPayload: "1048576" });
    onTestFinished(() => small.stop());
    const namespace = uniqueNamespace();
    const engine = await startEngine(small.url, { namespaces: [namespace], http: "127.0.0.1:0" });
    const base = `http://${engine.httpAddress()}/api/v1/namespaces/${namespace}/webhooks`;
    const tj = await connectClient(small.url, { namespace });
    const secret = "whsec_0123456789";
    await tj.webhooks.create({ name: "stripe", eventKey: "stripe:charge", auth: { type: "hmac", secret } });
    const signed = (b: string | Buffer) => ({
      "x-signature": createHmac("sha256", secret).update(b).digest("hex"),
    });
    await eventually(async () =>
      (await post(`${base}/stripe`, "{}", signed("{}"))).status === 202 ? true : undefined,
    );
    const before = (await tj.events.list({ limit: 100 })).length;

    // Under the HTTP limit, but the event (body plus its envelope) is over the server's max_payload (1 MiB).
    const near = JSON.stringify({ s: "x".repeat(1_048_500) });
    expect(Buffer.byteLength(near)).toBeLessThan(1024 * 1024);
    const nearRes = await post(`${base}/stripe`, near, signed(near));
    expect(nearRes.status).toBe(413);
    expect(nearRes.body).toEqual({
      error: { code: "PAYLOAD_TOO_LARGE", message: expect.stringMatching(/\d+ bytes.*max_payload of 1048576 bytes/) },
    });

    // One byte over the HTTP limit: Fastify's refusal, in Taskjet's code and shape.
    const over = Buffer.alloc(1024 * 1024 + 1, 32);
    const overRes = await post(`${base}/stripe`, over, signed(over));
    expect(overRes.status).toBe(413);
    expect(overRes.body).toEqual({ error: { code: "PAYLOAD_TOO_LARGE", message: expect.any(String) } });

    // What fits is still taken.
    const fits = JSON.stringify({ s: "x".repeat(1_000_000) });
    expect((await post(`${base}/stripe`, fits, signed(fits))).status).toBe(202);
    await eventually(async () => ((await tj.events.list({ limit: 100 })).length === before + 1 ? true : undefined));
    await sleep(200);
    expect((await tj.events.list({ limit: 100 })).length).toBe(before + 1);
    await tj.close();
    await engine.stop();
  });

  it("webhooks - a body nested as deep as the edge takes (256 levels) starts its run, which completes; one level more is 400", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace], http: "127.0.0.1:0" });
    const base = `http://${engine.httpAddress()}/api/v1/namespaces/${namespace}/webhooks`;
    const tj = await connectClient(nats.url, { namespace });
    const handle = tj.task({ name: "handle-deep", onEvents: ["deep:*"], fn: async (input) => input });
    await (await tj.worker("w", { workflows: [handle] })).start();
    await tj.webhooks.create({
      name: "deep",
      eventKeyExpression: "body.type",
      auth: { type: "apiKey", key: "k-0123456789" },
    });
    // `levels` objects, one inside the other, the outermost carrying the event key.
    const nested = (levels: number) => {
      let v: Record<string, unknown> = {};
      for (let i = 2; i < levels; i++) v = { v };
      return JSON.stringify({ type: "deep:x", v });
    };
    const send = (body: string) => post(`${base}/deep`, body, { "x-api-key": "k-0123456789" });
    await eventually(async () => ((await send("{}")).status === 400 ? true : undefined)); // served: no key in {}
    expect((await send(nested(257))).status).toBe(400);
    expect((await send(nested(256))).status).toBe(202);
    const run = await eventually(async () => {
      const [listed] = await tj.runs.list({ taskName: "handle-deep" });
      return listed?.status === "COMPLETED" ? listed : undefined;
    });
    expect((await tj.runs.get(run.runId)).output).toEqual(JSON.parse(nested(256)));
    await tj.close();
    await engine.stop();
  });

  it("webhooks - NATS not answering the event's publish is 503 UNAVAILABLE, not 500", async () => {
    // The engine alone talks through the proxy; the client talks to the server directly.
    const proxy = await startTcpProxy({ host: "127.0.0.1", port: nats.server.port });
    onTestFinished(() => proxy.close());
    const namespace = uniqueNamespace();
    const engine = await startEngine(proxy.url, { namespaces: [namespace], http: "127.0.0.1:0" });
    const base = `http://${engine.httpAddress()}/api/v1/namespaces/${namespace}/webhooks`;
    const tj = await connectClient(nats.url, { namespace });
    await tj.webhooks.create({
      name: "stripe",
      eventKey: "stripe:charge",
      auth: { type: "apiKey", key: "sk_12345678" },
    });
    const key = { "x-api-key": "sk_12345678" };
    await eventually(async () => ((await post(`${base}/stripe`, "{}", key)).status === 202 ? true : undefined));
    const before = (await tj.events.list({ limit: 100 })).length;
    // From here the server never reads what the engine writes: the publish gets no ack.
    proxy.swallow();
    const res = await post(`${base}/stripe`, JSON.stringify({ amount: 1 }), key);
    expect(res.status).toBe(503);
    expect(res.body).toEqual({
      error: { code: "UNAVAILABLE", message: expect.stringMatching(/NATS.*may have been recorded as \w+/) },
    });
    expect((await tj.events.list({ limit: 100 })).length).toBe(before);
    // The engine's connection drops; it reconnects (through the proxy, which passes everything now).
    proxy.cut();
    await eventually(async () => ((await post(`${base}/stripe`, "{}", key)).status === 202 ? true : undefined));
    await tj.close();
    await engine.stop();
  });
});
