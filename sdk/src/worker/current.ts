import { AsyncLocalStorage } from "node:async_hooks";
import type { Context } from "./context.js";

/**
 * The task running in this async context, if any: a trigger made from inside a task (`child.run(input)`) becomes a
 * child run of it.
 */
export const currentTask = new AsyncLocalStorage<Context>();
