import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { jetstream } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { ErrorCodes, PermissionDeniedError, type Taskjet } from "@taskjet/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI_BIN, runCli } from "../harness/cli.js";
import { connectClient, eventually, historyTypes, startEngine } from "../harness/fixtures.js";
import { runWithLostStartAck } from "../harness/lost-ack.js";
import { type NatsServer, startNatsServer } from "../harness/nats-server.js";

/**
 * The permissions template of `deploy/` itself, rendered for namespaces `a` and `b` and loaded into a nats-server with
 * an unrestricted engine user: `a`'s worker runs `a`'s tasks; `a`'s credentials cannot trigger, read or wait in `b`.
 */

const TEMPLATE = fileURLToPath(new URL("../../deploy/nats/permissions-namespace.conf", import.meta.url));
const users = { engine: "engine-pw", a: "a-pw-0123", b: "b-pw-4567" };

let server: NatsServer;
let cwd: string;
beforeAll(async () => {
  if (!existsSync(CLI_BIN)) throw new Error(`${CLI_BIN} is missing: build first (npx turbo run build)`);
  cwd = await mkdtemp(join(tmpdir(), "tj-isolation-"));
  const template = readFileSync(TEMPLATE, "utf8");
  server = await startNatsServer({
    config: async (dir) => {
      for (const ns of ["a", "b"])
        await writeFile(join(dir, `permissions-${ns}.conf`), template.replaceAll("__NS__", ns));
      return [
        "include ./permissions-a.conf",
        "include ./permissions-b.conf",
        "authorization { users: [",
        `  { user: engine, password: ${users.engine} }`,
        `  { user: a, password: ${users.a}, permissions: $TASKJET_NS_a }`,
        `  { user: b, password: ${users.b}, permissions: $TASKJET_NS_b }`,
        "] }",
      ].join("\n");
    },
  });
});
afterAll(async () => {
  await server?.stop();
  await rm(cwd, { recursive: true, force: true });
});

const as = (user: "a" | "b") => ({ auth: { user, password: users[user] } });

/** A task that logs a line and streams a chunk, registered by a worker of `tj`'s namespace. */
async function worker(tj: Taskjet) {
  const hello = tj.task({
    name: "hello",
    fn: async (input: { n: number }, ctx) => {
      ctx.logger.info("working", { n: input.n });
      await ctx.putStream("chunk");
      return { ns: tj.namespace, n: input.n };
    },
  });
  const w = await tj.worker("w", { workflows: [hello] });
  await w.start();
  return { hello, w };
}

async function denied(promise: Promise<unknown>): Promise<PermissionDeniedError> {
  const err = await promise.then(
    () => new Error("allowed, but should have been denied"),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PermissionDeniedError);
  expect(err).toMatchObject({ code: ErrorCodes.permissionDenied });
  return err as PermissionDeniedError;
}

/** A raw nats.js connection with `a`'s credentials, replies on its own inboxes: the attacker's view. */
async function raw(): Promise<NatsConnection> {
  return connect({ servers: server.url, user: "a", pass: users.a, inboxPrefix: "_INBOX.a" });
}

describe("namespace isolation", () => {
  it("namespace isolation - a's credentials run a's tasks but cannot trigger, read or wait in b", async () => {
    const engine = await startEngine(server.url, {
      namespaces: ["a", "b"],
      auth: { user: "engine", password: users.engine },
    });
    const tjA = await connectClient(server.url, { namespace: "a", ...as("a") });
    const tjB = await connectClient(server.url, { namespace: "b", ...as("b") });
    const a = await worker(tjA);
    const b = await worker(tjB);

    // Everything a worker and a client of `a` do, with `a`'s credentials.
    expect(await a.hello.run({ n: 1 })).toEqual({ ns: "a", n: 1 });
    const refA = await a.hello.runNoWait({ n: 2 });
    expect(await refA.result()).toEqual({ ns: "a", n: 2 });
    expect(await tjA.runs.get(refA.runId)).toMatchObject({ status: "COMPLETED" });
    expect(await historyTypes(tjA, refA.runId)).toContain("TaskCompleted");
    expect((await tjA.logs.list(refA.runId)).map((l) => l.message)).toEqual(["working"]);
    // The projection is written off the hot path: a finished run shows in the list shortly.
    await eventually(async () => ((await tjA.runs.list({ taskName: "hello" })).length >= 2 ? true : undefined));
    await tjA.events.push("order:paid", { id: 1 });
    await tjA.ratelimits.upsert({ key: "api", limit: 10, duration: "SECOND" });
    const refB = await b.hello.runNoWait({ n: 3 });
    expect(await refB.result()).toEqual({ ns: "b", n: 3 });

    // `a`'s credentials pointed at `b` (replies on `a`'s inboxes, so the refusal is about `b` itself).
    const intruder = await connectClient(server.url, { namespace: "b", inboxPrefix: "_INBOX.a", ...as("a") });
    const trigger = await denied(intruder.runNoWait("hello", { n: 4 }));
    expect(trigger).toMatchObject({ operation: "publish", subject: expect.stringMatching(/^tj\.b\.hist\./) });
    expect(trigger.message).toMatch(/NATS denied publishing to tj\.b\.hist\./);
    await denied(intruder.runs.get(refB.runId));
    await denied(historyTypes(intruder, refB.runId));
    await denied(intruder.logs.list(refB.runId));
    await denied(intruder.events.push("order:paid", { id: 2 }));
    await denied(intruder.runs.cancel({ ids: [refB.runId] }));
    await intruder.close();
    // With the SDK's default inbox (`_INBOX.b`), refused as well.
    const naive = await connectClient(server.url, { namespace: "b", ...as("a") });
    await denied(naive.runNoWait("hello", { n: 5 }));
    await naive.close();

    // The CLI says so too (its replies come to `b`'s inbox, the first thing refused).
    const cli = await runCli(["trigger", "hello", "--nats", server.url, "--namespace", "b", "--nats-user", "a"], {
      cwd,
      env: { TASKJET_NATS_PASSWORD: users.a },
    });
    expect(cli.code).toBe(1);
    expect(cli.stderr).toMatch(/^error: NATS denied (publishing to tj\.b\.hist\.|subscribing to _INBOX\.b\.)/);

    // The attacker's own requests, by hand: every way to reach `b`'s data is refused.
    const nc = await raw();
    try {
      const js = jetstream(nc);
      const refused = async (what: string, request: () => Promise<unknown>) => {
        const err = await request().then(
          () => undefined,
          (e: unknown) => e as Error,
        );
        expect(err?.message, what).toMatch(/Permissions Violation/);
      };
      const msgGet = (subject: string, body: object) => nc.request(subject, JSON.stringify(body), { timeout: 2000 });
      const runB = `tj.b.hist.${refB.runId}`;
      await refused("publish into b", () => js.publish(runB, "{}"));
      await refused("read b's history by body", () =>
        msgGet("$JS.API.STREAM.MSG.GET.TJ_HISTORY", { last_by_subj: runB }),
      );
      await refused("direct get by body", () => msgGet("$JS.API.DIRECT.GET.TJ_HISTORY", { last_by_subj: runB }));
      await refused("direct get of b's subject", () => msgGet(`$JS.API.DIRECT.GET.TJ_HISTORY.${runB}`, {}));
      await refused("b's run state", () => msgGet(`$JS.API.DIRECT.GET.KV_TJ_RUNS.$KV.TJ_RUNS.b.${refB.runId}`, {}));
      await refused("a consumer on b", () => js.consumers.get("TJ_HISTORY", { filter_subjects: "tj.b.hist.*" }));
      await refused("a consumer on every namespace", () =>
        js.consumers.get("TJ_HISTORY", { filter_subjects: "tj.*.hist.*" }),
      );
      const config = { filter_subject: runB, ack_policy: "none", deliver_policy: "all" };
      await refused("legacy ephemeral create", () =>
        msgGet("$JS.API.CONSUMER.CREATE.TJ_HISTORY", { stream_name: "TJ_HISTORY", config }),
      );
      await refused("legacy durable create", () =>
        msgGet("$JS.API.CONSUMER.DURABLE.CREATE.TJ_HISTORY.x", {
          stream_name: "TJ_HISTORY",
          config: { ...config, durable_name: "x" },
        }),
      );
      // Allowed by the permissions (the subject names `a`), refused by the server: the body's filter must be the one
      // in the subject.
      const sneaky = await msgGet("$JS.API.CONSUMER.CREATE.TJ_HISTORY.sneaky.tj.a.hist.x", {
        stream_name: "TJ_HISTORY",
        config: { ...config, name: "sneaky" },
      });
      const reply = JSON.parse(new TextDecoder().decode(sneaky.data)) as { error?: { description: string } };
      expect(reply.error?.description).toMatch(/did not match/i); // "...did not match filtered subject from API"
      await refused("list consumers (their names)", () => msgGet("$JS.API.CONSUMER.NAMES.TJ_HISTORY", {}));
      await refused("b's pushed events, from the engine's consumer", () =>
        msgGet("$JS.API.CONSUMER.MSG.NEXT.TJ_EVENTS.tj_b_event_router", { batch: 1 }),
      );
      await refused("create a stream", () => msgGet("$JS.API.STREAM.CREATE.X", { name: "X", subjects: ["tj.b.>"] }));
      await refused("write b's KV", () => js.publish("$KV.TJ_DEFS.b.hello", "{}"));
      // Subscriptions: b's waiters' subject, b's workers' assignments and control, and everyone's inboxes.
      for (const subject of [`tj.b.ended.${refB.runId}`, "tj.b.assign.*", "tj.b.ctl.*", "_INBOX.>", "tj.>"]) {
        const sub = nc.subscribe(subject);
        const ended = await (async () => {
          for await (const _ of sub);
        })().then(
          () => undefined,
          (e: unknown) => e as Error,
        );
        expect(String(ended?.message), subject).toMatch(/Permissions Violation for Subscription/);
      }
    } finally {
      await nc.close();
    }

    // `b` is untouched and still works.
    expect(await tjB.runs.get(refB.runId)).toMatchObject({ status: "COMPLETED", output: { ns: "b", n: 3 } });
    expect(await b.hello.run({ n: 6 })).toEqual({ ns: "b", n: 6 });

    await a.w.stop();
    await b.w.stop();
    await tjA.close();
    await tjB.close();
    await engine.stop();
  });

  it("namespace isolation - a's worker whose start was stored but whose ack was lost finds it with a's credentials: the task runs once", async () => {
    const engine = await startEngine(server.url, {
      namespaces: ["a"],
      auth: { user: "engine", password: users.engine },
    });
    const tjA = await connectClient(server.url, { namespace: "a", ...as("a") });
    // a's credentials cannot read the stream by request body: the retry reads its subject through a filtered consumer.
    await runWithLostStartAck(tjA, server.port, as("a"));
    await tjA.close();
    await engine.stop();
  }, 40_000);
});
