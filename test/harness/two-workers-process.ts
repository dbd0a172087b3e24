/**
 * Two workers in one process, both handling signals (the default), for the SIGTERM test:
 *   node --import tsx harness/two-workers-process.ts <natsUrl> <namespace> <taskMs>
 * Worker "idle" runs task `idle`, worker "busy" runs `long`, which sleeps `taskMs`. Prints "ready", and "done" when
 * `long` returns.
 */
import { Taskjet } from "@taskjet/sdk";

const [url, namespace, taskMs] = process.argv.slice(2);
const tj = await Taskjet.connect({ servers: url as string, namespace: namespace as string });
const idle = tj.task({ name: "idle", fn: async () => ({}) });
const long = tj.task({
  name: "long",
  fn: async () => {
    await new Promise((r) => setTimeout(r, Number(taskMs)));
    process.stdout.write("done\n");
    return { pid: process.pid };
  },
});
await (await tj.worker("idle", { workflows: [idle] })).start();
await (await tj.worker("busy", { workflows: [long] })).start();
process.stdout.write("ready\n");
