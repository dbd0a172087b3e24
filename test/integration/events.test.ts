import { ValidationError } from "@taskjet/sdk";
import { describe, expect, it } from "vitest";
import { sleep } from "../harness/concurrency-probe.js";
import { connectClient, eventually, startNamespace, uniqueNamespace, useNatsServer } from "../harness/fixtures.js";
import { kill, startEngineProcess } from "../harness/processes.js";

const nats = useNatsServer();

describe("events", () => {
  it("events - an event starts one run of each matching task (key, wildcard, filter), which knows its event", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const seen: { task: string; event: unknown; meta: Record<string, string>; input: unknown }[] = [];
    const record = (task: string) => async (input: Record<string, unknown>, ctx: import("@taskjet/sdk").Context) => {
      seen.push({ task, event: ctx.triggeringEvent(), meta: ctx.additionalMetadata(), input });
      return {};
    };
    const exact = tj.task({ name: "welcome", onEvents: ["user:created"], fn: record("welcome") });
    const wild = tj.task({ name: "audit", onEvents: ["user:*", "order:*"], fn: record("audit") });
    const big = tj.task({
      name: "vip",
      onEvents: [{ key: "user:created", filter: "payload.plan == 'pro' && additional_metadata.source == 'web'" }],
      fn: record("vip"),
    });
    const small = tj.task({
      name: "tiny",
      onEvents: [{ key: "user:created", filter: "payload.plan == 'free'" }],
      fn: record("tiny"),
    });
    const other = tj.task({ name: "orders", onEvents: ["order:paid"], fn: record("orders") });
    const worker = await tj.worker("w", { workflows: [exact, wild, big, small, other], slots: 10 });
    await worker.start();
    const { eventId } = await tj.events.push(
      "user:created",
      { userId: "u1", plan: "pro" },
      {
        additionalMetadata: { source: "web" },
      },
    );
    await eventually(() => (seen.length >= 3 ? true : undefined));
    await sleep(500);
    expect(seen.map((s) => s.task).sort()).toEqual(["audit", "vip", "welcome"]);
    for (const s of seen) {
      expect(s.event).toEqual({ id: eventId, key: "user:created", payload: { userId: "u1", plan: "pro" } });
      expect(s.meta).toEqual({ source: "web" });
      expect(s.input).toEqual({ userId: "u1", plan: "pro" });
    }
    const [listed] = await tj.events.list({ key: "user:created" });
    expect(listed?.id).toBe(eventId);
    expect(listed?.runs.map((r) => r.taskName).sort()).toEqual(["audit", "vip", "welcome"]);
    const state = await tj.runs.get(listed?.runs[0]?.runId as string);
    expect(state.trigger).toEqual({ kind: "event", eventId, key: "user:created" });
    // bulkPush: one run per event.
    seen.length = 0;
    const ids = await tj.events.bulkPush(
      "order:paid",
      Array.from({ length: 50 }, (_, i) => ({ payload: { i } })),
    );
    expect(ids).toHaveLength(50);
    await eventually(() => (seen.filter((s) => s.task === "orders").length === 50 ? true : undefined), 10_000);
    await sleep(300);
    expect(seen.filter((s) => s.task === "audit")).toHaveLength(50);
    expect(seen).toHaveLength(100);
    await tj.close();
    await engine.stop();
  });

  it("idempotency expression - events with the same key within the ttl start one run of the task", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const fulfilled: unknown[] = [];
    const fulfil = tj.task({
      name: "fulfil",
      onEvents: ["order:paid"],
      idempotency: { expression: "input.orderId", ttl: "1h" },
      fn: async (input) => {
        fulfilled.push(input);
        return {};
      },
    });
    const worker = await tj.worker("w", { workflows: [fulfil] });
    await worker.start();
    await tj.events.bulkPush("order:paid", [
      { payload: { orderId: "o1", n: 1 } },
      { payload: { orderId: "o1", n: 2 } },
      { payload: { orderId: "o2", n: 3 } },
    ]);
    await tj.events.push("order:paid", { orderId: "o1", n: 4 });
    await eventually(() => (fulfilled.length === 2 ? true : undefined));
    await sleep(800);
    expect(fulfilled).toHaveLength(2);
    expect(fulfilled.map((f) => (f as { orderId: string }).orderId).sort()).toEqual(["o1", "o2"]);
    const bad = tj.task({ name: "bad", idempotency: { expression: "input.(" }, fn: async () => ({}) });
    const w2 = await tj.worker("w2", { workflows: [bad] });
    await expect(w2.start()).rejects.toThrow(/bad\.idempotency\.expression: is not a valid CEL expression/);
    await tj.close();
    await engine.stop();
  });

  it("events - stored whatever is listening; bad keys, payloads and filters are refused at the edge", async () => {
    const { engine, tj } = await startNamespace(nats.url);
    const { eventId } = await tj.events.push("nobody:listens", { x: 1 });
    const [listed] = await tj.events.list();
    expect(listed).toMatchObject({ id: eventId, key: "nobody:listens", payload: { x: 1 }, runs: [] });
    await expect(tj.events.push("bad key", {})).rejects.toThrow(/key: must be an event key/);
    await expect(tj.events.push("a.*", {})).rejects.toThrow(ValidationError);
    await expect(tj.events.push("k", [1] as unknown as Record<string, unknown>)).rejects.toThrow(
      /payload: must be a JSON object/,
    );
    await expect(
      tj.events.bulkPush("k", [{ payload: {} }, { payload: "x" as unknown as Record<string, unknown> }]),
    ).rejects.toThrow(/\[1\]\.payload/);
    expect(() => tj.task({ name: "t", onEvents: ["has space"], fn: async () => ({}) })).toThrow(/onEvents\[0\]\.key/);
    const badFilter = tj.task({ name: "t", onEvents: [{ key: "k", filter: "payload.(" }], fn: async () => ({}) });
    const w = await tj.worker("w", { workflows: [badFilter] });
    await expect(w.start()).rejects.toThrow(/t\.onEvents\[0\]\.filter: is not a valid CEL expression/);
    await tj.close();
    await engine.stop();
  });

  it("events - 200 events matching 3 tasks make exactly 600 runs even when the engine is killed mid-routing", async () => {
    const namespace = uniqueNamespace();
    const first = await startEngineProcess(nats.url, namespace);
    const tj = await connectClient(nats.url, { namespace });
    const executions = new Map<string, number>();
    const tasks = ["a", "b", "c"].map((name) =>
      tj.task({
        name,
        onEvents: ["tick"],
        fn: async (_input, ctx) => {
          const key = `${name}:${ctx.triggeringEvent()?.id}`;
          executions.set(key, (executions.get(key) ?? 0) + 1);
          return {};
        },
      }),
    );
    const worker = await tj.worker("w", { workflows: tasks, slots: 50 });
    await worker.start();
    await tj.events.bulkPush(
      "tick",
      Array.from({ length: 200 }, (_, i) => ({ payload: { i } })),
    );
    await eventually(() => (executions.size > 20 ? true : undefined), 10_000);
    await kill(first.child, "SIGKILL"); // routing under way, not finished
    expect(executions.size).toBeLessThan(600);
    const second = await startEngineProcess(nats.url, namespace);
    await eventually(() => (executions.size === 600 ? true : undefined), 30_000, "600 runs");
    await sleep(1000);
    expect(executions.size).toBe(600);
    expect([...executions.values()].every((n) => n === 1)).toBe(true);
    await tj.close();
    await kill(second.child, "SIGTERM");
  }, 60_000);
});
