import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI_BIN, runCli } from "../harness/cli.js";
import { connectClient, eventually, startEngine, uniqueNamespace, useNatsServer } from "../harness/fixtures.js";

const nats = useNatsServer();

let cwd: string;
beforeAll(async () => {
  if (!existsSync(CLI_BIN)) throw new Error(`${CLI_BIN} is missing: build first (npx turbo run build)`);
  cwd = await mkdtemp(join(tmpdir(), "tj-tokens-"));
});
afterAll(async () => {
  await rm(cwd, { recursive: true, force: true });
});

async function get(url: string, token?: string) {
  const res = await fetch(url, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

describe("api tokens", () => {
  it("api tokens - the REST API wants a bearer token of the route's namespace; tokens are stored hashed and revocable", async () => {
    const namespace = uniqueNamespace();
    const other = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace, other], http: "127.0.0.1:0" });
    const base = `http://${engine.httpAddress()}/api/v1/namespaces`;
    const tj = await connectClient(nats.url, { namespace });
    const hello = tj.task({ name: "hello", fn: async (input: { n: number }) => ({ twice: input.n * 2 }) });
    const worker = await tj.worker("w", { workflows: [hello] });
    await worker.start();
    const ref = await hello.runNoWait({ n: 21 });
    await ref.result();
    const runUrl = `${base}/${namespace}/runs/${ref.runId}`;

    // No token, a malformed header, a token nobody made: 401 with a JSON error, nothing about the run.
    const missing = await get(runUrl);
    expect(missing.status).toBe(401);
    expect(missing.body).toEqual({
      error: { code: "UNAUTHENTICATED", message: expect.stringContaining("bearer token") },
    });
    expect(missing.headers.get("www-authenticate")).toContain("Bearer");
    const basic = await fetch(runUrl, { headers: { authorization: "Basic dXNlcjpwYXNz" } });
    expect(basic.status).toBe(401);
    expect((await get(runUrl, "tjt_made-up")).status).toBe(401);

    // `taskjet tokens create` prints the token once; list shows names only.
    const at = ["--nats", nats.url, "--namespace", namespace];
    const created = await runCli(["tokens", "create", "--name", "dash", ...at], { cwd });
    expect(created.code).toBe(0);
    const token = created.stdout.trim();
    expect(token).toMatch(/^tjt_[A-Za-z0-9_-]{43}$/);
    expect(created.stderr).toContain("shown once");
    const listed = await runCli(["tokens", "list", "--json", ...at], { cwd });
    expect(
      listed.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l)),
    ).toEqual([{ name: "dash", namespace, createdAt: expect.any(String) }]);
    expect(listed.stdout).not.toContain(token);
    const again = await runCli(["tokens", "create", "--name", "dash", ...at], { cwd });
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("token dash exists");

    // Stored as its SHA-256, never as itself.
    const nc = await connect({ servers: nats.url });
    try {
      const kv = await new Kvm(nc).open("TJ_API_TOKENS");
      const stored = (await kv.get(`${namespace}.dash`))?.string() ?? "";
      expect(stored).not.toContain(token);
      expect(JSON.parse(stored).hash).toBe(createHash("sha256").update(token).digest("hex"));
    } finally {
      await nc.close();
    }

    // The engine follows the bucket: the token works as soon as it sees it.
    const ok = await eventually(async () => {
      const r = await get(runUrl, token);
      return r.status === 200 ? r : undefined;
    });
    expect(ok.body).toMatchObject({ runId: ref.runId, status: "COMPLETED", output: { twice: 42 } });
    expect(ok.body).toEqual(await tj.runs.get(ref.runId));

    // Typed JSON errors behind the token: unknown run, bad id; another namespace's routes are closed to it.
    expect(await get(`${base}/${namespace}/runs/nope`, token)).toMatchObject({
      status: 404,
      body: { error: { code: "RUN_NOT_FOUND" } },
    });
    expect(await get(`${base}/${namespace}/runs/a%24b`, token)).toMatchObject({
      status: 400,
      body: { error: { code: "INVALID_ARGUMENT", message: expect.stringContaining("id") } },
    });
    expect(await get(`${base}/${other}/runs/${ref.runId}`, token)).toMatchObject({
      status: 403,
      body: { error: { code: "FORBIDDEN" } },
    });

    // Webhook endpoints keep their own authentication: no bearer token asked (404: no such webhook).
    const hook = await fetch(`${base}/${namespace}/webhooks/none`, { method: "POST", body: "{}" });
    expect(hook.status).toBe(404);

    // Revoked: refused from then on.
    const revoked = await runCli(["tokens", "revoke", "dash", ...at], { cwd });
    expect(revoked.code).toBe(0);
    await eventually(async () => ((await get(runUrl, token)).status === 401 ? true : undefined));
    expect((await runCli(["tokens", "revoke", "dash", ...at], { cwd })).code).toBe(1);

    await worker.stop();
    await tj.close();
    await engine.stop();
  });
});
