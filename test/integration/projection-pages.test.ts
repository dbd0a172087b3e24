import { connect } from "@nats-io/transport-node";
import { verifyProjection } from "@taskjet/engine";
import { describe, expect, it } from "vitest";
import {
  connectClient,
  eventually,
  projectionEntries,
  startEngine,
  uniqueNamespace,
  useNatsServer,
} from "../harness/fixtures.js";

const nats = useNatsServer();

const entries = (ns: string) => projectionEntries(nats.url, ns);

async function restList(address: string, ns: string, token: string): Promise<{ runId: string; status: string }[]> {
  const res = await fetch(`http://${address}/api/v1/namespaces/${ns}/runs?limit=500`, {
    headers: { authorization: `Bearer ${token}` },
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { runs: { runId: string; status: string }[] }).runs;
}

describe("projection pages", () => {
  it("pages - short runs are projected many to a message; get, list, the REST list, verify, replay and a restart all find them", async () => {
    const namespace = uniqueNamespace();
    let engine = await startEngine(nats.url, { namespaces: [namespace], http: "127.0.0.1:0" });
    const tj = await connectClient(nats.url, { namespace });
    const failedOnce = new Set<number>();
    const short = tj.task({
      name: "short",
      fn: async (input: { i: number }) => {
        if (input.i % 50 === 0 && !failedOnce.has(input.i)) {
          failedOnce.add(input.i);
          throw new Error(`first try of ${input.i}`);
        }
        return { i: input.i };
      },
    });
    // Runs longer than the projection's active delay (1 s): written under its key while running.
    const long = tj.task({
      name: "long",
      fn: async () => {
        await new Promise((r) => setTimeout(r, 1500));
        return { long: true };
      },
    });
    const worker = await tj.worker("w", { workflows: [short, long], slots: 50 });
    await worker.start();
    const longRef = await long.runNoWait({});
    const refs = await tj.runManyNoWait<{ i: number }>(
      "short",
      Array.from({ length: 300 }, (_, i) => ({ input: { i } })),
    );
    const ids = refs.map((r) => {
      if (r instanceof Error) throw r;
      return r.runId;
    });
    const outcomes = await Promise.allSettled(refs.map((r) => (r instanceof Error ? r : r.result())));
    expect(outcomes.filter((o) => o.status === "rejected")).toHaveLength(6);
    expect(await tj.ref(longRef.runId).result()).toEqual({ long: true });

    // Each short run is in a page, none under a key of its own; the long run's key has its final state.
    const stored = await eventually(async () => {
      const e = await entries(namespace);
      const paged = new Set(e.pages.flatMap((p) => p.runs.map((s) => s.runId)));
      return ids.every((id) => paged.has(id)) && e.keyed.get(longRef.runId)?.status === "COMPLETED" ? e : undefined;
    });
    expect(ids.filter((id) => stored.keyed.has(id))).toEqual([]);
    expect(stored.pages.length).toBeLessThan(ids.length / 5);
    expect(stored.pages.flatMap((p) => p.runs.map((s) => s.runId))).not.toContain(longRef.runId);

    // Read back through every reader.
    const failed = ids.filter((_, i) => i % 50 === 0);
    expect(await tj.runs.get(ids[7] as string)).toMatchObject({
      status: "COMPLETED",
      output: { i: 7 },
      input: { i: 7 },
    });
    expect(await tj.runs.get(failed[1] as string)).toMatchObject({ status: "FAILED" });
    const listed = await tj.runs.list({ taskName: "short", limit: 1000 });
    expect(listed.map((s) => s.runId).sort()).toEqual([...ids].sort());
    expect(
      listed
        .filter((s) => s.status === "FAILED")
        .map((s) => s.runId)
        .sort(),
    ).toEqual([...failed].sort());
    const { token } = await tj.apiTokens.create({ name: "pages" });
    const rest = await eventually(async () => {
      const runs = await restList(engine.httpAddress() as string, namespace, token);
      return runs.length === ids.length + 1 ? runs : undefined;
    });
    expect(rest.filter((r) => r.status === "COMPLETED")).toHaveLength(ids.length + 1 - failed.length);
    const nc = await connect({ servers: nats.url });
    expect((await verifyProjection(nc, namespace)).differing).toEqual([]);

    // Replayed, a paged run finishes again (the engine, holding it no more, folds its history to apply the replay):
    // every reader shows its latest state, once.
    const replay = await tj.runs.replay({ ids: failed });
    expect(replay.replayed.sort()).toEqual([...failed].sort());
    for (const id of failed) expect(await tj.ref(id).result()).toEqual({ i: ids.indexOf(id) });
    await eventually(async () => {
      const runs = await tj.runs.list({ taskName: "short", statuses: ["FAILED"], limit: 1000 });
      return runs.length === 0 ? true : undefined;
    });
    const again = await tj.runs.list({ taskName: "short", limit: 1000 });
    expect(again).toHaveLength(ids.length);
    expect(
      again.filter((s) => failed.includes(s.runId)).every((s) => s.status === "COMPLETED" && s.replays === 1),
    ).toBe(true);

    // A new engine loads the index from the pages and keys alone, later entries over earlier ones.
    await worker.stop();
    await engine.stop();
    engine = await startEngine(nats.url, { namespaces: [namespace], http: "127.0.0.1:0" });
    const after = await eventually(async () => {
      const runs = await restList(engine.httpAddress() as string, namespace, token);
      return runs.length === ids.length + 1 ? runs : undefined;
    });
    expect(after.filter((r) => r.status !== "COMPLETED")).toEqual([]);
    expect(await tj.runs.get(failed[2] as string)).toMatchObject({ status: "COMPLETED", replays: 1 });
    expect((await verifyProjection(nc, namespace)).differing).toEqual([]);
    await nc.close();
    await tj.close();
    await engine.stop();
  });
});
