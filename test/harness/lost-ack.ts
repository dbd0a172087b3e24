import type { ClientOptions, Taskjet } from "@taskjet/sdk";
import { expect } from "vitest";
import { connectClient, eventually, historyTypes } from "./fixtures.js";
import { startTcpProxy } from "./tcp-proxy.js";

/**
 * Runs a task on a worker whose acks are lost once its attempt is running: its `TaskStarted` is stored but never
 * acknowledged, the worker reconnects and its append is retried on the old tail. Expects the retry to find the start
 * stored (the attempt goes on, its signal not aborted) and the run to complete once. `tj` (talking to the server
 * directly) triggers and reads; the worker connects to the server at `port` with `options`. Returns the run id.
 */
export async function runWithLostStartAck(tj: Taskjet, port: number, options: ClientOptions): Promise<string> {
  const proxy = await startTcpProxy({ host: "127.0.0.1", port });
  const tjWorker = await connectClient(proxy.url, { namespace: tj.namespace, ...options });
  try {
    let calls = 0;
    let open: () => void = () => undefined;
    const gate = new Promise<void>((r) => {
      open = r;
    });
    const slow = tjWorker.task({
      name: "slow-start",
      fn: async (_input, ctx) => {
        calls++;
        // From here the server's replies to the worker are lost: the start it appends after 20 ms is stored, unacked.
        proxy.deafen();
        await gate;
        // Taken for another worker's start, the retry would have aborted this attempt's signal.
        return { done: true, aborted: ctx.cancelled };
      },
    });
    await (await tjWorker.worker("deaf-worker", { workflows: [slow] })).start();
    const ref = await tj.runNoWait("slow-start", {});
    await eventually(
      async () => (await historyTypes(tj, ref.runId)).includes("TaskStarted") || undefined,
      10_000,
      "the worker's start stored",
    );
    // The worker reconnects; its append times out (5 s) and is retried on the old tail: a CAS conflict about its own
    // message.
    proxy.cut();
    await new Promise((r) => setTimeout(r, 6000));
    open();
    expect(await ref.result({ timeoutMs: 15_000 })).toEqual({ done: true, aborted: false });
    expect(calls).toBe(1);
    expect(await historyTypes(tj, ref.runId, { attempts: true })).toEqual([
      "RunCreated",
      "TaskStarted0",
      "TaskCompleted0",
    ]);
    return ref.runId;
  } finally {
    await tjWorker.close();
    await proxy.close();
  }
}
