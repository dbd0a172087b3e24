import { type JetStreamManager, RetentionPolicy, StorageType, type StreamConfig } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { nanos } from "@nats-io/transport-node";
import { Buckets, RetiredStreams, StreamSubjects, Streams } from "@taskjet/schemas";
import { isStreamNotFound, isTransient } from "@taskjet/sdk";
import type { Logger } from "pino";

/** What the engine asks of the streams and buckets it creates. */
export interface StorageSettings {
  replicas: number;
  historyMaxAgeMs: number;
  eventsMaxAgeMs: number;
  workerTtlMs: number;
}

const DEDUP_WINDOW_MS = 120_000;
/** How long provisioning retries a cluster that is busy: a leader election, or engines starting together. */
const PROVISION_RETRY_MS = 30_000;
/** A namespace lease (and a replica's presence) lapses this long after its last renewal: a hung replica's leases free up. */
export const LEASE_TTL_MS = 5000;
/** How often replicas renew: a few renewals may be missed (a GC pause, a NATS reconnect) before the TTL. */
export const LEASE_RENEW_MS = 1000;
const IDEMPOTENCY_RETENTION_MS = 31 * 24 * 3600 * 1000;

function streamConfigs(s: StorageSettings): (Partial<StreamConfig> & { name: string })[] {
  const common = {
    storage: StorageType.File,
    num_replicas: s.replicas,
    duplicate_window: nanos(DEDUP_WINDOW_MS),
    max_age: 0,
  };
  return [
    {
      ...common,
      name: Streams.commands,
      subjects: [...StreamSubjects[Streams.commands]],
      retention: RetentionPolicy.Workqueue,
    },
    {
      ...common,
      name: Streams.history,
      subjects: [...StreamSubjects[Streams.history]],
      retention: RetentionPolicy.Limits,
      max_age: nanos(s.historyMaxAgeMs),
      allow_direct: true,
    },
    {
      ...common,
      name: Streams.events,
      subjects: [...StreamSubjects[Streams.events]],
      retention: RetentionPolicy.Limits,
      max_age: nanos(s.eventsMaxAgeMs),
    },
    {
      ...common,
      name: Streams.logs,
      subjects: [...StreamSubjects[Streams.logs]],
      retention: RetentionPolicy.Limits,
      max_age: nanos(s.eventsMaxAgeMs),
    },
  ];
}

/** Fields whose value on the server must equal what we asked for. */
/** How long a rate-limit key's admissions are kept once it admits nothing more: its longest window, a day, and more. */
const RATE_USE_RETENTION_MS = 25 * 3600 * 1000;

const CHECKED = ["subjects", "retention", "storage", "num_replicas", "max_age", "duplicate_window"] as const;

/**
 * Creates the streams and buckets, or updates them to the requested settings. Safe to run from every engine at
 * every start. Fails when the server silently keeps a different setting (nats-server 2.9 drops fields it does not
 * know instead of refusing them).
 */
export async function provision(
  nc: NatsConnection,
  jsm: JetStreamManager,
  s: StorageSettings,
  log: Logger,
): Promise<void> {
  const deadline = Date.now() + PROVISION_RETRY_MS;
  for (let attempt = 0; ; attempt++) {
    try {
      return await provisionOnce(nc, jsm, s, log);
    } catch (err) {
      // Two engines starting on a fresh R3 cluster: a stream the other just created has no leader for a moment, and
      // its info answers "no responders". Provisioning is idempotent, so all of it runs again.
      if (!isTransient(err) || Date.now() > deadline) throw err;
      log.info({ err: (err as Error).message }, "cluster busy while provisioning; retrying");
      await new Promise((r) => setTimeout(r, Math.min(2000, 200 * 2 ** attempt)));
    }
  }
}

async function provisionOnce(
  nc: NatsConnection,
  jsm: JetStreamManager,
  s: StorageSettings,
  log: Logger,
): Promise<void> {
  for (const wanted of streamConfigs(s)) {
    const { name } = wanted;
    let config: StreamConfig;
    try {
      const info = await jsm.streams.info(name);
      if (info.config.republish) {
        // An earlier Taskjet had waiters listen there; the engine now tells them.
        log.warn(
          { stream: name, republish: info.config.republish },
          "stream republishes every message it stores, for waiters of an earlier Taskjet: nothing listens now, it " +
            "only costs server CPU, and nats-server 2.9 cannot remove it from an existing stream",
        );
      }
      const differs = CHECKED.some((k) => JSON.stringify(info.config[k]) !== JSON.stringify(wanted[k]));
      config = differs ? (await jsm.streams.update(name, { ...info.config, ...wanted })).config : info.config;
      if (differs) log.info({ stream: name }, "stream updated");
    } catch (err) {
      if (!isStreamNotFound(err)) throw err;
      config = (await jsm.streams.add(wanted)).config;
      log.info({ stream: name }, "stream created");
    }
    for (const k of CHECKED) {
      if (JSON.stringify(config[k]) !== JSON.stringify(wanted[k])) {
        throw new Error(
          `stream ${name}: server kept ${k}=${JSON.stringify(config[k])}, wanted ${JSON.stringify(wanted[k])}`,
        );
      }
    }
  }
  for (const name of RetiredStreams) {
    await jsm.streams.delete(name).then(
      () => log.info({ stream: name }, "retired stream deleted"),
      (err) => {
        if (!isStreamNotFound(err)) throw err;
      },
    );
  }
  const kvm = new Kvm(nc);
  const buckets: { name: string; ttl?: number; history: number }[] = [
    { name: Buckets.runs, history: 1 },
    { name: Buckets.workers, history: 1, ttl: s.workerTtlMs },
    { name: Buckets.defs, history: 1 },
    { name: Buckets.rateLimits, history: 1 },
    { name: Buckets.crons, history: 1 },
    { name: Buckets.webhooks, history: 1 },
    { name: Buckets.apiTokens, history: 1 },
    // Entries say when they expire; the bucket's age limit only clears old ones away.
    { name: Buckets.idempotency, history: 1, ttl: IDEMPOTENCY_RETENTION_MS },
    // The longest rate-limit window (a day) and its guard: older admissions count for nothing.
    { name: Buckets.rateUse, history: 1, ttl: RATE_USE_RETENTION_MS },
    { name: Buckets.leases, history: 1, ttl: LEASE_TTL_MS },
  ];
  for (const b of buckets) {
    await kvm.create(b.name, { history: b.history, replicas: s.replicas, ...(b.ttl ? { ttl: b.ttl } : {}) });
    const streamName = `KV_${b.name}`;
    const info = await jsm.streams.info(streamName);
    const maxAge = b.ttl ? nanos(b.ttl) : 0;
    if (info.config.num_replicas !== s.replicas || info.config.max_age !== maxAge) {
      // The server refuses a dedup window longer than the age limit (a bucket TTL shortened).
      const window = maxAge > 0 ? Math.min(info.config.duplicate_window, maxAge) : info.config.duplicate_window;
      await jsm.streams.update(streamName, {
        ...info.config,
        num_replicas: s.replicas,
        max_age: maxAge,
        duplicate_window: window,
      });
      log.info({ bucket: b.name }, "bucket updated");
    }
  }
}
