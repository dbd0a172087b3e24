import { type ClaimStore, claimIdempotencyKey, evaluateKey, idempotencyDigest, keys } from "@taskjet/schemas";
import type { Logger } from "pino";
import type { CompiledDefinition } from "../scheduler/flow.js";

/** Default time an idempotency key of an event or cron trigger holds. */
const DEFAULT_TTL_MS = 24 * 3600 * 1000;

/**
 * Task option `idempotency.expression` for the runs the engine starts (events, crons): the key the expression gives
 * for the run's input and metadata is claimed in `TJ_IDEMPOTENCY`; while the claim lasts, triggers with the same key
 * make no new run.
 */
export class IdempotentRuns {
  constructor(
    private readonly store: ClaimStore,
    private readonly ns: string,
    private readonly log: Logger,
  ) {}

  /**
   * The run a trigger should create: `proposed`, or undefined when an earlier run holds the key (that run stands for
   * this trigger).
   */
  async claim(
    def: CompiledDefinition | undefined,
    input: Record<string, unknown>,
    metadata: Record<string, string>,
    proposed: string,
  ): Promise<string | undefined> {
    const expression = def?.idempotencyKey;
    if (!def || !expression) return proposed;
    let key: string;
    try {
      key = evaluateKey(expression, input, metadata);
    } catch (err) {
      // No key for this input: nothing to dedupe on, the trigger makes its run.
      // One line: the CEL error's own message draws the expression under it.
      const reason = (err instanceof Error ? err.message : String(err)).split("\n")[0];
      this.log.warn({ reason, task: def.name }, "idempotency expression failed: run created without a key");
      return proposed;
    }
    const storeKey = keys.idempotency(this.ns, idempotencyDigest(def.name, key));
    const runId = await claimIdempotencyKey(this.store, storeKey, def.idempotencyTtlMs ?? DEFAULT_TTL_MS, proposed);
    return runId === proposed ? proposed : undefined;
  }
}
