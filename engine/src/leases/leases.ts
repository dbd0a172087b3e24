import { hostname } from "node:os";
import { JetStreamApiError } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { type NatsConnection, RequestError, type Subscription } from "@nats-io/transport-node";
import { enginePing, keys } from "@taskjet/schemas";
import type { Logger } from "pino";
import { Fence } from "./fence.js";
import { planLeases } from "./plan.js";

export interface LeasesOptions {
  kv: KV;
  nc: NatsConnection;
  engineId: string;
  namespaces: readonly string[];
  log: Logger;
  /** How often leases and presence are renewed (well under the bucket's TTL). */
  renewMs: number;
  /** The lease bucket's TTL: a replica not seen for this long is gone. */
  ttlMs: number;
  /** This replica now leads `ns`: start serving it, acting only while `fence` says the lease is still held. */
  lead(ns: string, fence: Fence): Promise<void>;
  /** This replica no longer leads `ns`: stop at once; `graceful` when it gave the lease up itself. */
  follow(ns: string, graceful: boolean): Promise<void>;
}

interface LeaseValue {
  engineId: string;
  host: string;
  pid: number;
  since: string;
}

/**
 * One scheduling leader per namespace (DESIGN: KV lease, CAS on revision, bucket TTL). Each replica renews its
 * presence and leases every `renewMs`, takes free leases up to its fair share (`planLeases`) and hands surplus ones
 * over. A replica that crashed is noticed at once rather than after the TTL: its ping subject has no responders, so its
 * leases are deleted (CAS on their revision) and taken. A replica whose renewal is refused lost the lease and stops
 * serving the namespace at once. Its appends are CAS-fenced (invariant 2); what is not (assignments, timers, projection
 * writes) waits on the namespace's `Fence` whenever the lease was not confirmed within the TTL.
 */
export class Leases {
  /** Namespaces led, with the lease entry's revision. */
  private readonly held = new Map<string, number>();
  /** Namespaces led: whether the lease was confirmed lately enough to act. */
  private readonly fences = new Map<string, Fence>();
  /** Namespaces being started: renewals go on meanwhile (a start can take seconds, the TTL is short). */
  private readonly starting = new Map<string, Promise<void>>();
  /** Replicas by id: when their presence was last written. */
  private readonly seen = new Map<string, number>();
  private readonly since = new Date().toISOString();
  private sub: Subscription | undefined;
  private stopWatch: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private cycling: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly o: LeasesOptions) {}

  /**
   * Namespaces this replica leads now: held, and its fence open. One cut off from NATS acts for none (its fences lapse),
   * and another replica takes them: it must not claim them too (`/healthz`, `taskjet_lease_held`).
   */
  leading(): string[] {
    return [...this.held.keys()].filter((ns) => this.fences.get(ns)?.ok ?? true);
  }

  /** Starts answering pings and watching replicas, then takes the leases it should (resolves once those are served). */
  async start(): Promise<void> {
    const { nc, kv } = this.o;
    this.sub = nc.subscribe(enginePing(this.o.engineId), {
      callback: (_err, m) => {
        m.respond();
      },
    });
    await nc.flush();
    const watch = await retryTransient(() => kv.watch({ key: keys.engines }), this.o.log);
    this.stopWatch = () => watch.stop();
    (async () => {
      for await (const e of watch) {
        const id = e.key.slice(e.key.indexOf(".") + 1);
        if (e.operation === "PUT") this.seen.set(id, Math.min(Date.now(), e.created.getTime()));
        else this.seen.delete(id);
      }
    })().catch((err) => this.o.log.warn({ err }, "replica watch ended"));
    await retryTransient(() => this.cycle(), this.o.log);
    await Promise.all(this.starting.values());
    this.timer = setInterval(() => this.renew(), this.o.renewMs);
  }

  /** The connection dropped: no namespace is acted for until a renewal gets through again. */
  disconnected(): void {
    for (const fence of this.fences.values()) fence.lapse();
  }

  private renew(): void {
    if (this.stopped) return;
    this.cycling ??= this.cycle()
      .catch((err) => this.o.log.warn({ err }, "lease cycle failed"))
      .finally(() => {
        this.cycling = undefined;
      });
  }

  /** Stops serving every namespace, then gives the leases up so another replica takes them at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.cycling;
    for (const [ns, revision] of [...this.held]) {
      this.unheld(ns);
      await this.followed(ns, true);
      await this.o.kv.delete(keys.lease(ns), { previousSeq: revision }).catch(() => undefined);
    }
    await this.o.kv.delete(keys.engine(this.o.engineId)).catch(() => undefined);
    this.stopWatch?.();
    this.sub?.unsubscribe();
  }

  private value(): string {
    const v: LeaseValue = { engineId: this.o.engineId, host: hostname(), pid: process.pid, since: this.since };
    return JSON.stringify(v);
  }

  private async cycle(): Promise<void> {
    const { kv, log, engineId } = this.o;
    await kv.put(keys.engine(engineId), this.value());
    for (const [ns, revision] of [...this.held]) {
      const sentAt = performance.now();
      try {
        this.held.set(ns, await kv.update(keys.lease(ns), this.value(), revision));
        this.fences.get(ns)?.confirm(sentAt);
      } catch (err) {
        // Only a newer revision means another replica took it. While the bucket's stream is between leaders (5-8 s
        // after a node dies) renewals fail too: serving goes on (past the TTL, only what is CAS-fenced acts), where
        // stopping would cost a restart of the namespace for nothing.
        if (!isTakenOver(err)) {
          log.warn({ ns, err }, "lease renewal failed; still leading, trying again");
          continue;
        }
        if (this.stopped || !this.held.has(ns)) continue;
        // The bucket's age limit may have expired the lease while its stream had no leader (a NATS node died): if
        // nobody took it since, take it again and go on leading, rather than restarting the namespace.
        const retakenAt = performance.now();
        const retaken = await this.retake(ns);
        if (retaken !== undefined) {
          this.held.set(ns, retaken);
          this.fences.get(ns)?.confirm(retakenAt);
          log.info({ ns }, "lease had expired during an outage; taken again, still leading");
          continue;
        }
        this.unheld(ns);
        log.warn({ ns, err }, "lease lost: no longer leading this namespace");
        await this.followed(ns, false);
      }
    }
    if (this.stopped) return;
    const holders = new Map<string, string>();
    const revisions = new Map<string, number>();
    for (const ns of this.o.namespaces) {
      if (this.held.has(ns)) {
        holders.set(ns, engineId);
        continue;
      }
      const entry = await kv.get(keys.lease(ns));
      if (entry?.operation !== "PUT" || entry.length === 0) continue;
      holders.set(ns, (entry.json() as LeaseValue).engineId);
      revisions.set(ns, entry.revision);
    }
    // A replica counts only if it answers: one that crashed must neither keep its leases nor shrink the others' share.
    const now = Date.now();
    const fresh = [...this.seen].filter(([, at]) => now - at < this.o.ttlMs).map(([id]) => id);
    const others = [...new Set([...fresh, ...holders.values()])].filter((id) => id !== engineId);
    const answered = await Promise.all(others.map((id) => this.answers(id)));
    const live = new Set(others.filter((_, i) => answered[i]));
    const plan = planLeases({ self: engineId, namespaces: this.o.namespaces, holders, live });
    for (const ns of plan.release) {
      const revision = this.held.get(ns) as number;
      this.unheld(ns);
      log.info({ ns }, "handing the lease over to spread namespaces across replicas");
      await this.followed(ns, true);
      await kv.delete(keys.lease(ns), { previousSeq: revision }).catch(() => undefined);
    }
    for (const ns of plan.acquire) await this.acquire(ns, holders.get(ns), revisions.get(ns));
  }

  /** Takes a free lease (deleting a gone holder's first), then serves the namespace. */
  private async acquire(ns: string, goneHolder: string | undefined, revision: number | undefined): Promise<void> {
    const { kv, log } = this.o;
    // No other replica can take the lease within the TTL of its last write: a second less, for the time an action
    // takes to reach the workers and for the bucket's expiry to be seen by the others.
    const fence = new Fence(this.o.ttlMs - 1000, () => this.renew());
    try {
      if (revision !== undefined) await kv.delete(keys.lease(ns), { previousSeq: revision });
      const sentAt = performance.now();
      this.held.set(ns, await kv.create(keys.lease(ns), this.value()));
      fence.confirm(sentAt);
    } catch {
      return; // another replica was first
    }
    this.fences.set(ns, fence);
    log.info({ ns, ...(goneHolder ? { from: goneHolder } : {}) }, "lease acquired: leading this namespace");
    const started = this.o.lead(ns, fence).catch(async (err) => {
      log.error({ ns, err }, "could not start serving the namespace; giving the lease up");
      const held = this.held.get(ns);
      this.unheld(ns);
      await this.o.follow(ns, false).catch(() => undefined);
      if (held !== undefined) await kv.delete(keys.lease(ns), { previousSeq: held }).catch(() => undefined);
    });
    this.starting.set(ns, started);
    void started.finally(() => this.starting.delete(ns));
  }

  /** The new revision when the lease is free and this replica created it again; undefined when another has it. */
  private async retake(ns: string): Promise<number | undefined> {
    try {
      const entry = await this.o.kv.get(keys.lease(ns));
      if (entry?.operation === "PUT" && entry.length > 0) return undefined;
      return await this.o.kv.create(keys.lease(ns), this.value());
    } catch {
      return undefined;
    }
  }

  private unheld(ns: string): void {
    this.held.delete(ns);
    this.fences.get(ns)?.drop();
    this.fences.delete(ns);
  }

  /** Stops serving `ns`, once its start (if still going) has settled. */
  private async followed(ns: string, graceful: boolean): Promise<void> {
    await this.starting.get(ns);
    await this.o.follow(ns, graceful);
  }

  /** False only when nobody subscribes to the replica's ping subject (it is gone); a slow answer counts as alive. */
  private async answers(engineId: string): Promise<boolean> {
    try {
      await this.o.nc.request(enginePing(engineId), undefined, { timeout: 1000 });
      return true;
    } catch (err) {
      return !(err instanceof RequestError && err.isNoResponders());
    }
  }
}

/** A renewal refused because the lease has a newer revision: another replica holds it now. */
function isTakenOver(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === WRONG_LAST_SEQUENCE;
}

const WRONG_LAST_SEQUENCE = 10071;
/** How long starting replicas wait out a cluster that is still electing leaders (fresh, or a node just lost). */
const START_RETRY_MS = 30_000;

async function retryTransient<T>(work: () => Promise<T>, log: Logger): Promise<T> {
  const deadline = Date.now() + START_RETRY_MS;
  for (let attempt = 0; ; attempt++) {
    try {
      return await work();
    } catch (err) {
      if (isTakenOver(err) || Date.now() > deadline) throw err;
      log.warn({ err, attempt }, "lease bucket not available yet; trying again");
      await new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** attempt)));
    }
  }
}
