// The sample worker of deploy/docker-compose.yml: connects with the TASKJET_* environment (all three NATS URLs,
// credentials) and serves `hello`. Run a task from any shell: `taskjet trigger hello --input '{"name":"compose"}'`.
import { hostname } from "node:os";
import { Taskjet } from "@taskjet/sdk";

const tj = await Taskjet.connect({ name: "example-worker" });
const hello = tj.task({
  name: "hello",
  retries: 2,
  fn: async (input, ctx) => {
    ctx.logger.info("saying hello", { name: input.name });
    return { greeting: `hello, ${input.name ?? "world"}!`, from: hostname() };
  },
});
const worker = await tj.worker("example", { workflows: [hello], slots: 20 });
// On SIGTERM (docker stop, a rollout) the SDK drains the worker, running tasks finish within the grace, and exits.
await worker.start();
