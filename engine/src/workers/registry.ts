import type { JetStreamClient } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { Buckets, keys, type WorkerRegistration, WorkerRegistrationSchema } from "@taskjet/schemas";
import type { Logger } from "pino";
import { scan } from "../log/scan.js";

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

const decoder = new TextDecoder();

/** The namespace's live workers, from `TJ_WORKERS`: registrations, heartbeats, departures and silent deaths. */
export class WorkerRegistry {
  private readonly lastSeen = new Map<string, number>();
  private sweeper: NodeJS.Timeout | undefined;
  private stopWatch: (() => void) | undefined;

  constructor(private readonly o: RegistryOptions) {}

  /** Loads the current workers, then follows changes from the revision after them. */
  async start(): Promise<void> {
    const { js, kv, ns } = this.o;
    let revision = 0;
    await scan(js, `KV_${Buckets.workers}`, `$KV.${Buckets.workers}.${keys.workersOf(ns)}`, "lastPerSubject", (m) => {
      revision = Math.max(revision, m.seq);
      if (m.data.length > 0) this.put(m.subject, decoder.decode(m.data));
    });
    // From the revision after the scan, so no change between the two is missed; with nothing found, from the start.
    const watcher = await kv.watch({
      key: keys.workersOf(ns),
      ...(revision > 0 ? { resumeFromRevision: revision + 1 } : {}),
    });
    this.stopWatch = () => watcher.stop();
    (async () => {
      for await (const e of watcher) {
        if (e.operation === "PUT") this.put(e.key, e.string());
        else this.down(e.key.slice(ns.length + 1), "left");
      }
    })().catch((err) => this.o.log.error({ err }, "worker watch ended"));
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
