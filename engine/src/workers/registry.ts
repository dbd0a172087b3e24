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

/** When a worker's registration was last heard from, and its revision then. */
interface Seen {
  at: number;
  revision: number;
}

/**
 * The namespace's live workers, from `TJ_WORKERS`: registrations, heartbeats, departures and silent deaths. A worker
 * not heard from within the TTL is declared gone only once the bucket confirms it: a watch stalls while the cluster
 * loses a node (heartbeats are stored, not delivered), and taking live workers for gone would run their attempts twice.
 */
export class WorkerRegistry {
  private readonly lastSeen = new Map<string, Seen>();
  /** Workers whose registration is being read to confirm they are gone. */
  private readonly confirming = new Set<string>();
  /**
   * Since when the bucket answered every read (epoch ms): a worker had no chance to heartbeat while it did not. Set
   * by the first read answered after one failed, not by the failure: a failed read tells when NATS was still down,
   * not when it came back, and a worker it kept from heartbeating gets a whole TTL from then.
   */
  private readableSince = Date.now();
  private unreadable = false;
  private sweeper: NodeJS.Timeout | undefined;
  private stopWatch: (() => void) | undefined;

  constructor(private readonly o: RegistryOptions) {}

  /** Loads the current workers, then follows changes. */
  async start(): Promise<void> {
    const { js, kv, ns } = this.o;
    this.stopWatch = await followKv(js, kv, Buckets.workers, keys.workersOf(ns), {
      put: (key, json, revision) => this.put(key, json, revision),
      remove: (key) => this.down(key.slice(ns.length + 1), "left"),
      log: this.o.log,
    });
    // Often enough that a silent worker is declared gone within a second of its TTL.
    const every = Math.max(100, Math.min(1000, Math.floor(this.o.ttlMs / 3)));
    this.sweeper = setInterval(() => this.sweep(), every);
    this.sweeper.unref();
  }

  /**
   * A worker that running attempts name but that is not registered: its registration may have lapsed while no engine
   * watched (NATS was down for longer than the TTL). It gets a TTL to heartbeat before it is declared gone.
   */
  expect(workerId: string): void {
    if (!this.lastSeen.has(workerId)) this.lastSeen.set(workerId, { at: Date.now(), revision: 0 });
  }

  /** The engine's connection came back: what it missed, heartbeats included, gets a TTL to show. */
  reconnected(): void {
    this.readableSince = Date.now();
  }

  stop(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.stopWatch?.();
  }

  private put(key: string, json: string, revision: number): void {
    let registration: WorkerRegistration;
    try {
      registration = WorkerRegistrationSchema.parse(JSON.parse(json));
    } catch (err) {
      this.o.log.warn({ key, err }, "ignoring a malformed worker registration");
      return;
    }
    const known = this.lastSeen.get(registration.workerId);
    if (known && known.revision > revision) return; // an older one, read while the watch delivered a newer
    this.lastSeen.set(registration.workerId, { at: Date.now(), revision });
    if (!known?.revision)
      this.o.log.info({ workerId: registration.workerId, name: registration.name }, "worker joined");
    this.o.onUp(registration);
  }

  private down(workerId: string, reason: "left" | "expired"): void {
    if (!this.lastSeen.delete(workerId)) return;
    this.o.log.info({ workerId, reason }, "worker gone");
    this.o.onDown(workerId, reason);
  }

  private sweep(): void {
    const deadline = Date.now() - this.o.ttlMs;
    for (const [workerId, seen] of this.lastSeen) {
      if (seen.at < deadline && !this.confirming.has(workerId)) this.confirmGone(workerId, seen.revision);
    }
  }

  /**
   * Reads the worker's registration from the stream leader: a newer revision than the last one heard is a heartbeat
   * the watch has not delivered (the worker lives); none, the same one or a deletion, and the worker is gone, once
   * the bucket has answered for a whole TTL (after an outage, which kept workers from writing too, each gets a TTL to
   * heartbeat again). When the read fails (NATS unavailable), nothing is decided: the next sweep asks again.
   */
  private confirmGone(workerId: string, revision: number): void {
    const key = keys.worker(this.o.ns, workerId);
    this.confirming.add(workerId);
    this.o.kv
      .get(key)
      .then(
        (entry) => {
          if (this.unreadable) {
            this.unreadable = false;
            this.readableSince = Date.now();
          }
          if (entry?.operation === "PUT" && entry.revision > revision) this.put(key, entry.string(), entry.revision);
          else if (Date.now() - this.readableSince < this.o.ttlMs) return;
          else if (this.lastSeen.get(workerId)?.revision === revision) this.down(workerId, "expired");
        },
        (err: unknown) => {
          this.unreadable = true;
          this.o.log.debug({ err, workerId }, "cannot tell whether a silent worker is gone yet");
        },
      )
      .finally(() => this.confirming.delete(workerId));
  }
}
