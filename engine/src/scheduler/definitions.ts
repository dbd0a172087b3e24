import type { JetStreamClient } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import {
  Buckets,
  keys,
  type RateLimitDefinition,
  RateLimitDefinitionSchema,
  RateLimitDurations,
  TaskDefinitionSchema,
} from "@taskjet/schemas";
import type { Logger } from "pino";
import { followKv } from "../log/follow-kv.js";
import { type CompiledDefinition, compileDefinition } from "./flow.js";

export interface DefinitionsOptions {
  js: JetStreamClient;
  defsKv: KV;
  rateLimitsKv: KV;
  ns: string;
  log: Logger;
  /** A task's definition arrived or changed its flow options. */
  onDefinition: (def: CompiledDefinition) => void;
  /** A static rate limit was defined or changed. */
  onRateLimit: (key: string, limit: number, durationMs: number) => void;
}

/**
 * The namespace's task definitions (`TJ_DEFS`, written by workers) and static rate limits (`TJ_RATELIMITS`), checked
 * again here: an entry that does not validate is logged and ignored.
 */
export class Definitions {
  private readonly defs = new Map<string, CompiledDefinition>();
  private readonly stops: (() => void)[] = [];

  constructor(private readonly o: DefinitionsOptions) {}

  async start(): Promise<void> {
    const { js, ns, log } = this.o;
    this.stops.push(
      await followKv(js, this.o.defsKv, Buckets.defs, keys.defsOf(ns), {
        put: (key, json) => this.putDefinition(key, json),
        remove: () => undefined, // a definition stays in force until replaced
        log,
      }),
      await followKv(js, this.o.rateLimitsKv, Buckets.rateLimits, keys.rateLimitsOf(ns), {
        put: (key, json) => this.putRateLimit(key, json),
        remove: () => undefined,
        log,
      }),
    );
  }

  stop(): void {
    for (const stop of this.stops.splice(0)) stop();
  }

  get(taskName: string): CompiledDefinition | undefined {
    return this.defs.get(taskName);
  }

  /** Every definition, for the event router. */
  all(): IterableIterator<CompiledDefinition> {
    return this.defs.values();
  }

  private putDefinition(key: string, json: string): void {
    let compiled: CompiledDefinition;
    try {
      compiled = compileDefinition(TaskDefinitionSchema.parse(JSON.parse(json)));
    } catch (err) {
      this.o.log.error({ key, err }, "ignoring an invalid task definition");
      return;
    }
    const previous = this.defs.get(compiled.name);
    this.defs.set(compiled.name, compiled);
    if (previous?.fingerprint !== compiled.fingerprint) this.o.onDefinition(compiled);
  }

  private putRateLimit(key: string, json: string): void {
    let def: RateLimitDefinition;
    try {
      def = RateLimitDefinitionSchema.parse(JSON.parse(json));
    } catch (err) {
      this.o.log.error({ key, err }, "ignoring an invalid rate limit");
      return;
    }
    this.o.onRateLimit(def.key, def.limit, RateLimitDurations[def.duration]);
  }
}
