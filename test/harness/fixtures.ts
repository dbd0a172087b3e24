import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { createEngine, type Engine, type EngineConfigInput } from "@taskjet/engine";
import {
  Buckets,
  expandEvent,
  isPageKey,
  keys,
  type RunState,
  statesOfEntry,
  type TaskjetEvent,
} from "@taskjet/schemas";
import { type ClientOptions, Taskjet } from "@taskjet/sdk";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll } from "vitest";
import { type NatsServer, startNatsServer } from "./nats-server.js";

/** Every engine and client a test opened, so a leak fails the test that made it. */
const open = new Map<object, { what: string; close: () => Promise<void> }>();

/** Log lines of the running test, printed only if it fails. */
const logLines: string[] = [];

afterEach(async (ctx) => {
  if (ctx.task.result?.state === "fail" && logLines.length > 0) {
    process.stderr.write(`--- last log lines of "${ctx.task.name}" ---\n${logLines.slice(-300).join("")}\n`);
  }
  logLines.length = 0;
  const leaked = [...open.values()];
  open.clear();
  await Promise.allSettled(leaked.map((l) => l.close()));
  if (leaked.length > 0) throw new Error(`test leaked ${leaked.map((l) => l.what).join(", ")}: close them in the test`);
});

/** A nats-server for the tests of one file: started before them, stopped after. */
export function useNatsServer(): { readonly server: NatsServer; readonly url: string } {
  let server: NatsServer | undefined;
  beforeAll(async () => {
    server = await startNatsServer();
  });
  afterAll(async () => {
    await server?.stop();
  });
  return {
    get server() {
      if (!server) throw new Error("server not started");
      return server;
    },
    get url() {
      if (!server) throw new Error("server not started");
      return server.url;
    },
  };
}

/** A unique namespace per test, so tests sharing a server never see each other's runs. */
export function uniqueNamespace(prefix = "t"): string {
  return `${prefix}${Math.random().toString(36).slice(2, 10)}`;
}

/** Test logger: kept in memory and printed when the test fails (level TASKJET_TEST_LOG, default debug). */
export function testLogger() {
  return pino(
    { level: process.env.TASKJET_TEST_LOG ?? "debug" },
    {
      write(line: string) {
        logLines.push(line);
        if (logLines.length > 5000) logLines.splice(0, 1000);
      },
    },
  );
}

/** Starts an engine; the test must stop it. */
export async function startEngine(url: string, config: EngineConfigInput = {}): Promise<Engine> {
  // No HTTP server unless a test asks for one: tests run in parallel and 8080 may be anyone's.
  const engine = createEngine({ servers: [url], logLevel: "silent", http: "off", ...config }, { logger: testLogger() });
  await engine.start();
  const stop = engine.stop.bind(engine);
  open.set(engine, { what: "an engine", close: stop });
  engine.stop = async () => {
    open.delete(engine);
    await stop();
  };
  return engine;
}

/** An engine and a client on a fresh namespace; the test must stop and close them. */
export async function startNamespace(url: string): Promise<{ engine: Engine; tj: Taskjet; namespace: string }> {
  const namespace = uniqueNamespace();
  const engine = await startEngine(url, { namespaces: [namespace] });
  const tj = await connectClient(url, { namespace });
  return { engine, tj, namespace };
}

/** Connects a client; the test must close it. */
export async function connectClient(url: string, options: ClientOptions = {}): Promise<Taskjet> {
  const tj = await Taskjet.connect({ servers: url, logger: testLogger(), ...options });
  const close = tj.close.bind(tj);
  open.set(tj, { what: "a client", close });
  tj.close = async () => {
    open.delete(tj);
    await close();
  };
  return tj;
}

/**
 * A run's history as event types (`"rejected"` for a message the model refuses), each followed by its attempt with
 * `{ attempts: true }` (e.g. `"TaskStarted1"`). The stored events as they are: a short attempt's result carries its
 * start (`data.started`) instead of a `TaskStarted` before it. With `{ expand: true }`, the facts they stand for
 * (`expandEvent`): such a result reads as its `TaskStarted`, then itself.
 */
export async function historyTypes(
  tj: Taskjet,
  runId: string,
  options: { attempts?: boolean; expand?: boolean } = {},
): Promise<string[]> {
  const out: string[] = [];
  for await (const e of tj.runs.history(runId)) {
    for (const event of e.event && options.expand ? expandEvent(e.event) : [e.event]) {
      const data = event?.data as { attempt?: number } | undefined;
      out.push(`${event?.type ?? "rejected"}${options.attempts ? (data?.attempt ?? "") : ""}`);
    }
  }
  return out;
}

/** A run's stored events (the messages the model refuses left out). */
export async function historyEvents(tj: Taskjet, runId: string): Promise<TaskjetEvent[]> {
  const out: TaskjetEvent[] = [];
  for await (const e of tj.runs.history(runId)) if (e.event) out.push(e.event);
  return out;
}

/** The start a result carries (a short attempt's, recorded with its result instead of a `TaskStarted`). */
export function startOf(event: TaskjetEvent | undefined): { at: string; workerName: string } | undefined {
  return (event?.data as { started?: { at: string; workerName: string } } | undefined)?.started;
}

/**
 * A namespace's `TJ_RUNS` entries: run keys with their state, and pages with the runs they hold, in write order.
 */
export async function projectionEntries(url: string, ns: string) {
  const nc = await connect({ servers: url });
  try {
    const kv = await new Kvm(nc).open(Buckets.runs);
    const keyed = new Map<string, RunState>();
    const pages: { revision: number; runs: RunState[] }[] = [];
    for await (const key of await kv.keys(keys.runsOf(ns))) {
      const entry = await kv.get(key);
      if (entry?.operation !== "PUT") continue;
      const states = statesOfEntry(key, entry.string());
      if (isPageKey(key)) pages.push({ revision: entry.revision, runs: states });
      else keyed.set(states[0]?.runId as string, states[0] as RunState);
    }
    return { keyed, pages: pages.sort((a, b) => a.revision - b.revision) };
  } finally {
    await nc.close();
  }
}

/** Polls `check` until it returns a value other than undefined, or fails after `ms`. */
export async function eventually<T>(
  check: () => Promise<T | undefined> | T | undefined,
  ms = 10_000,
  what = "condition",
): Promise<T> {
  const deadline = Date.now() + ms;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${what} not reached within ${ms} ms${lastError ? `: ${String(lastError)}` : ""}`);
}
