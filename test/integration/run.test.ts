import { RunStatuses, TaskRunError } from "@taskjet/sdk";
import { describe, expect, it } from "vitest";
import { connectClient, eventually, startEngine, uniqueNamespace, useNatsServer } from "../harness/fixtures.js";

const nats = useNatsServer();

describe("run", () => {
  it("run - waits for the task's output", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const hello = tj.task({
      name: "hello",
      fn: async (input: { name: string }, ctx) => ({ greeting: `hi ${input.name}`, runId: ctx.workflowRunId() }),
    });
    const worker = await tj.worker("w1", { workflows: [hello], slots: 5 });
    await worker.start();
    const out = await hello.run({ name: "x" });
    expect(out.greeting).toBe("hi x");
    const state = await tj.runs.get(out.runId as string);
    expect(state.status).toBe(RunStatuses.completed);
    expect(state.output).toEqual(out);
    await tj.close();
    await engine.stop();
  });

  it("run - a throwing task ends FAILED with its message and stack", async () => {
    const namespace = uniqueNamespace();
    const engine = await startEngine(nats.url, { namespaces: [namespace] });
    const tj = await connectClient(nats.url, { namespace });
    const boom = tj.task({
      name: "boom",
      fn: async () => {
        throw new RangeError("out of range: 42");
      },
    });
    const worker = await tj.worker("w1", { workflows: [boom] });
    await worker.start();
    const ref = await boom.runNoWait({});
    const err = await ref.result().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TaskRunError);
    const taskErr = (err as TaskRunError).taskError;
    expect(taskErr.name).toBe("RangeError");
    expect(taskErr.message).toBe("out of range: 42");
    expect(taskErr.stack).toContain("run.test.ts");
    expect((err as TaskRunError).code).toBe("TASK_FAILED");
    await eventually(async () => ((await tj.runs.get(ref.runId)).status === RunStatuses.failed ? true : undefined));
    await tj.close();
    await engine.stop();
  });
});
