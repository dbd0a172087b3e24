/**
 * A worker in its own process, for tests that kill workers for real (by PID):
 *   node --import tsx harness/worker-process.ts <natsUrl> <namespace> <taskName> <slots> <taskMs> [release|durable|child]
 * The task sleeps `taskMs` (aborting early on its signal) and returns where it ran. Prints "ready <workerId>", and
 * "done <runId>" as each task returns. `durable`: a durable task that records `ctx.now()`, then `ctx.sleepFor(taskMs)`.
 * `child`: a durable task that waits for a child (`ctx.spawnChild`, task `<taskName>-child`), then sleeps `taskMs`.
 */
import { Taskjet } from "@taskjet/sdk";

const [url, namespace, taskName, slots, taskMs, release] = process.argv.slice(2);
const tj = await Taskjet.connect({ servers: url as string, namespace: namespace as string });
const child = tj.task({ name: `${taskName}-child`, fn: async () => ({ child: process.pid }) });
const task =
  release === "durable"
    ? durableTask()
    : release === "child"
      ? childThenWork()
      : tj.task({
          name: taskName as string,
          executionTimeout: "5m",
          fn: async (input: Record<string, unknown>, ctx) => {
            if (release === "release") await ctx.releaseSlot();
            await new Promise((resolve) => {
              const t = setTimeout(resolve, Number(taskMs));
              ctx.abortController.signal.addEventListener("abort", () => {
                clearTimeout(t);
                resolve(undefined);
              });
            });
            process.stdout.write(`done ${ctx.workflowRunId()}\n`);
            return { ...input, worker: ctx.worker.id(), pid: process.pid };
          },
        });
const workflows = release === "child" ? [task, child] : [task];
const worker = await tj.worker(`proc-${process.pid}`, { workflows, slots: Number(slots) });
await worker.start();
process.stdout.write(`ready ${worker.id}\n`);
// SIGTERM/SIGINT: the SDK drains the worker and exits (handleSignals defaults to true).

/** The durable variant: the same steps as `durableSteps` in the tests. */
function durableTask() {
  return tj.durableTask({
    name: taskName as string,
    fn: async (input: Record<string, unknown>, ctx) => {
      const before = await ctx.now();
      await ctx.sleepFor(Number(taskMs));
      return { ...input, before: before.toISOString(), worker: ctx.worker.id(), pid: process.pid };
    },
  });
}

/** The `child` variant: a durable task whose attempt waits for a child, then works on without a slot of its own. */
function childThenWork() {
  return tj.durableTask({
    name: taskName as string,
    fn: async (input: Record<string, unknown>, ctx) => {
      const out = await ctx.spawnChild(child, {});
      await new Promise((resolve) => setTimeout(resolve, Number(taskMs)));
      return { ...input, ...out, worker: ctx.worker.id(), pid: process.pid };
    },
  });
}
