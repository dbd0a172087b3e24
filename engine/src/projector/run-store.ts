import type { JetStreamClient } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { Buckets, isTerminal, keys, type RunState } from "@taskjet/schemas";
import type { Publisher } from "../log/append.js";
import { scan } from "../log/scan.js";

const decoder = new TextDecoder();

/** The `TJ_RUNS` projection of one namespace: run states plus the projector's checkpoint. */
export class RunStore {
  constructor(
    private readonly js: JetStreamClient,
    private readonly kv: KV,
    private readonly ns: string,
    /** The engine's `StreamPublisher` (`js` serves a one-off rebuild). */
    private readonly publisher: Publisher,
  ) {}

  async get(runId: string): Promise<RunState | undefined> {
    const entry = await this.kv.get(keys.run(this.ns, runId));
    if (entry?.operation !== "PUT" || entry.length === 0) return undefined;
    return entry.json<RunState>();
  }

  /** Writes many states, pipelined (a KV put is a publish to the key's subject). */
  async putMany(states: RunState[]): Promise<void> {
    const prefix = `$KV.${Buckets.runs}.`;
    await Promise.all(
      states.map((s) => this.publisher.publish(prefix + keys.run(this.ns, s.runId), JSON.stringify(s))),
    );
  }

  /** Every run state of the namespace, optionally only those not finished. */
  async all(options: { activeOnly: boolean }): Promise<RunState[]> {
    const out: RunState[] = [];
    await scan(this.js, `KV_${Buckets.runs}`, `$KV.${Buckets.runs}.${keys.runsOf(this.ns)}`, "lastPerSubject", (m) => {
      if (m.data.length === 0) return; // delete marker
      const state = JSON.parse(decoder.decode(m.data)) as RunState;
      if (!options.activeOnly || !isTerminal(state.status)) out.push(state);
    });
    return out;
  }

  /** The history stream sequence up to which every event is reflected in this store. */
  async checkpoint(): Promise<number> {
    const entry = await this.kv.get(this.checkpointKey());
    return entry && entry.operation === "PUT" && entry.length > 0 ? Number(entry.string()) : 0;
  }

  async saveCheckpoint(seq: number): Promise<void> {
    await this.kv.put(this.checkpointKey(), String(seq));
  }

  /** A three-token key, so run scans (`<ns>.*`) never see it. */
  private checkpointKey(): string {
    return `${this.ns}._projector.checkpoint`;
  }
}
