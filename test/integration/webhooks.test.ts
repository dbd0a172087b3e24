import { createHmac } from "node:crypto";
import { ValidationError } from "@taskjet/sdk";
import { describe, expect, it } from "vitest";
import { sleep } from "../harness/concurrency-probe.js";
import { connectClient, eventually, startEngine, uniqueNamespace, useNatsServer } from "../harness/fixtures.js";

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
});
