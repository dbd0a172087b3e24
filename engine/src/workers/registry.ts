import type { JetStreamClient } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { Buckets, keys, type WorkerRegistration, WorkerRegistrationSchema } from "@taskjet/schemas";
import type { Logger } from "pino";
import { followKv } from "../log/follow-kv.js";

export interface RegistryOptions {
  js: JetStreamClient;
  kv: KV;
  ns: string;
  /** A worker not heard from for this long is gone: bucket TTL expiry makes no watch event. */
  ttlMs: number;
  log: Logger;
  onUp: (worker: WorkerRegistration) => void;
  onDown: (workerId: string, reason: "left" | "expired") => void;
}

/** The namespace's live workers, from `TJ_WORKERS`: registrations, heartbeats, departures and silent deaths. */
export class WorkerRegistry {
  private readonly lastSeen = new Map<string, number>();
  private sweeper: NodeJS.Timeout | undefined;
  private stopWatch: (() => void) | undefined;

  constructor(private readonly o: RegistryOptions) {}

  /** Loads the current workers, then follows changes. */
  async start(): Promise<void> {
    const { js, kv, ns } = this.o;
    this.stopWatch = await followKv(js, kv, Buckets.workers, keys.workersOf(ns), {
      put: (key, json) => this.put(key, json),
      remove: (key) => this.down(key.slice(ns.length + 1), "left"),
      log: this.o.log,
    });
    // Often enough that a silent worker is declared gone within a second of its TTL.
    const every = Math.max(100, Math.min(1000, Math.floor(this.o.ttlMs / 3)));
    this.sweeper = setInterval(() => this.sweep(), every);
    this.sweeper.unref();
  }

  stop(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.stopWatch?.();
  }

  private put(key: string, json: string): void {
    let registration: WorkerRegistration;
    try {
      registration = WorkerRegistrationSchema.parse(JSON.parse(json));
    } catch (err) {
      this.o.log.warn({ key, err }, "ignoring a malformed worker registration");
      return;
    }
    const known = this.lastSeen.has(registration.workerId);
    this.lastSeen.set(registration.workerId, Date.now());
    if (!known) this.o.log.info({ workerId: registration.workerId, name: registration.name }, "worker joined");
    this.o.onUp(registration);
  }

  private down(workerId: string, reason: "left" | "expired"): void {
    if (!this.lastSeen.delete(workerId)) return;
    this.o.log.info({ workerId, reason }, "worker gone");
    this.o.onDown(workerId, reason);
  }

  private sweep(): void {
    const deadline = Date.now() - this.o.ttlMs;
    for (const [workerId, seen] of this.lastSeen) if (seen < deadline) this.down(workerId, "expired");
  }
}
