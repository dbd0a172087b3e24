import type { JetStreamClient } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { Buckets, keys, RateUseRecordSchema } from "@taskjet/schemas";
import type { Logger } from "pino";
import { scan } from "../log/scan.js";
import type { RateLimiter } from "./rate-limiter.js";

/** How often the leader writes the keys that admitted more: what a crash loses at most. */
const FLUSH_MS = 200;

const decoder = new TextDecoder();

/**
 * The rate limiter's admissions in `TJ_RATEUSE`: the namespace's leader writes each key that admitted more (one write
 * per key per flush, not per run), and a leader taking over counts on from them before it admits anything, so a limit
 * holds across a restart or a failover (a crash loses at most the last flush's worth).
 */
export class RateUseStore {
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly o: {
      js: JetStreamClient;
      kv: KV;
      ns: string;
      rates: RateLimiter;
      log: Logger;
      now?: () => number;
    },
  ) {}

  /** Counts what earlier leaders admitted, then writes what this one admits. */
  async start(): Promise<void> {
    const now = (this.o.now ?? Date.now)();
    const prefix = `$KV.${Buckets.rateUse}.`;
    let restored = 0;
    await scan(this.o.js, `KV_${Buckets.rateUse}`, prefix + keys.rateUsesOf(this.o.ns), "lastPerSubject", (m) => {
      if (m.data.length === 0) return;
      let json: unknown;
      try {
        json = JSON.parse(decoder.decode(m.data));
      } catch {
        json = undefined;
      }
      const parsed = RateUseRecordSchema.safeParse(json);
      if (!parsed.success) {
        this.o.log.warn({ key: m.subject.slice(prefix.length) }, "unreadable rate-limit admissions skipped");
        return;
      }
      this.o.rates.restore(parsed.data, now);
      restored++;
    });
    if (restored > 0) this.o.log.debug({ keys: restored }, "rate-limit admissions restored");
    this.timer = setInterval(() => void this.flush(), FLUSH_MS);
    this.timer.unref();
  }

  /** `flush`: write what was admitted since the last flush (not when the lease was lost: the new leader leads). */
  async stop(flush: boolean): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (flush) await this.flush();
    else await this.flushing;
  }

  private flush(): Promise<void> {
    this.flushing = this.flushing.then(async () => {
      const records = this.o.rates.takeChanged((this.o.now ?? Date.now)());
      await Promise.all(
        records.map((r) =>
          this.o.kv.put(keys.rateUse(this.o.ns, r.key), JSON.stringify(r)).catch((err) => {
            this.o.log.warn({ err, key: r.key }, "rate-limit admissions not written: again at the next flush");
            this.o.rates.markChanged(r.key);
          }),
        ),
      );
    });
    return this.flushing;
  }
}
