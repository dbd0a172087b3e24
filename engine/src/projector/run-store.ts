import type { JetStreamClient } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { Buckets, isTerminal, keys, type RunState, slimState, subjects } from "@taskjet/schemas";
import type { Publisher } from "../log/append.js";
import { foldHistory } from "../log/fold.js";
import { scan } from "../log/scan.js";
import { exceeds } from "../nats/connect.js";

const decoder = new TextDecoder();

/** The `TJ_RUNS` projection of one namespace: run states plus the projector's checkpoint. */
export class RunStore {
  constructor(
    private readonly js: JetStreamClient,
    private readonly kv: KV,
    private readonly ns: string,
    /** The engine's `StreamPublisher` (`js` serves a one-off rebuild). */
    private readonly publisher: Publisher,
    /** The server's largest message: a state beyond it cannot be stored. */
    private readonly maxPayload: () => number,
  ) {}

  async get(runId: string): Promise<RunState | undefined> {
    const entry = await this.kv.get(keys.run(this.ns, runId));
    if (entry?.operation !== "PUT" || entry.length === 0) return undefined;
    const state = entry.json<RunState>();
    return state.slim ? this.fromLog(runId) : state;
  }

  /**
   * Writes many states, pipelined (a KV put is a publish to the key's subject). A state larger than the server takes
   * (input and outputs near the limit each) is written slim (`slimState`); returns the runs too large even so, not
   * written.
   */
  async putMany(states: RunState[]): Promise<string[]> {
    const prefix = `$KV.${Buckets.runs}.`;
    const max = this.maxPayload();
    const unwritten: string[] = [];
    await Promise.all(
      states.map((s) => {
        let json = JSON.stringify(s);
        if (exceeds(json, max)) json = JSON.stringify(slimState(s));
        if (exceeds(json, max)) {
          unwritten.push(s.runId);
          return undefined;
        }
        return this.publisher.publish(prefix + keys.run(this.ns, s.runId), json);
      }),
    );
    return unwritten;
  }

  /** A run's state folded from its whole history (for a run stored slim). */
  private async fromLog(runId: string): Promise<RunState | undefined> {
    return (await foldHistory(this.js, subjects.history(this.ns, runId))).states.get(runId);
  }

  /** Every run state of the namespace, optionally only those not finished. */
  async all(options: { activeOnly: boolean }): Promise<RunState[]> {
    const out: RunState[] = [];
    const slim: string[] = [];
    await scan(this.js, `KV_${Buckets.runs}`, `$KV.${Buckets.runs}.${keys.runsOf(this.ns)}`, "lastPerSubject", (m) => {
      if (m.data.length === 0) return; // delete marker
      const state = JSON.parse(decoder.decode(m.data)) as RunState;
      if (options.activeOnly && isTerminal(state.status)) return;
      if (state.slim) slim.push(state.runId);
      else out.push(state);
    });
    for (const runId of slim) {
      const state = await this.fromLog(runId);
      if (state) out.push(state);
    }
    return out;
  }

  /** The history stream sequence up to which every event is reflected in this store. */
  async checkpoint(): Promise<number> {
    const entry = await this.kv.get(keys.projectorCheckpoint(this.ns));
    return entry && entry.operation === "PUT" && entry.length > 0 ? Number(entry.string()) : 0;
  }

  async saveCheckpoint(seq: number): Promise<void> {
    await this.kv.put(keys.projectorCheckpoint(this.ns), String(seq));
  }
}
