import {
  compileEventFilter,
  compileFlow,
  compileKeyExpression,
  type EventFilter,
  evaluateKey,
  type FlowOptions,
  type KeyExpression,
  RateLimitDurations,
  type RunState,
  type TaskDefinition,
} from "@taskjet/schemas";
import { type Flow, NO_FLOW } from "./core.js";

/**
 * Turns a task's registered definition into what the scheduler core needs per attempt: its concurrency groups, rate
 * uses, label wishes, slot cost and sticky worker. Pure.
 */

/** A definition with its CEL expressions compiled once. */
export interface CompiledDefinition {
  name: string;
  flow: FlowOptions;
  /** Idempotency of the runs the engine starts (events, crons): the compiled key expression and its ttl. */
  idempotencyKey?: KeyExpression | undefined;
  idempotencyTtlMs?: number | undefined;
  /** A workflow's tasks, when the definition is a workflow. */
  workflow?: TaskDefinition["workflow"];
  /** What the runs the engine makes of it (events, crons) get unless their trigger says otherwise. */
  defaultPriority?: number | undefined;
  scheduleTimeoutMs?: number | undefined;
  /** `onEvents` with their filters compiled. */
  onEvents: { key: string; filter: EventFilter | undefined }[];
  concurrency: KeyExpression[];
  rateKeys: (KeyExpression | undefined)[];
  /** Equal fingerprints: the same flow, nothing to re-resolve. */
  fingerprint: string;
}

/**
 * Compiles a definition's flow options.
 * @throws ValidationError naming the expression that does not compile
 */
export function compileDefinition(def: TaskDefinition): CompiledDefinition {
  const flow = def.flow ?? {};
  const { concurrency, rateKeys } = compileFlow(flow, "flow.");
  const onEvents = (def.onEvents ?? []).map((t, i) => ({
    key: t.key,
    filter: t.filter === undefined ? undefined : compileEventFilter(t.filter, `onEvents[${i}].filter`),
  }));
  const expression = def.idempotency?.expression;
  return {
    name: def.name,
    flow,
    onEvents,
    idempotencyKey: expression ? compileKeyExpression(expression, "idempotency.expression") : undefined,
    idempotencyTtlMs: def.idempotency?.ttlMs,
    workflow: def.workflow,
    defaultPriority: def.defaultPriority,
    scheduleTimeoutMs: def.scheduleTimeoutMs,
    concurrency,
    rateKeys,
    fingerprint: JSON.stringify(flow),
  };
}

/** A run's key expression could not be evaluated (e.g. a missing input field): the attempt cannot be scheduled. */
export class FlowKeyError extends Error {
  constructor(field: string, expression: string, cause: unknown) {
    super(
      `${field} ${JSON.stringify(expression)} failed: ${cause instanceof Error ? cause.message.split("\n")[0] : String(cause)}`,
    );
    this.name = "FlowKeyError";
  }
}

/**
 * The flow of one attempt of `taskName` in `state`.
 * @throws FlowKeyError when a key expression fails on this run's input or metadata
 */
export function resolveFlow(def: CompiledDefinition | undefined, state: RunState, taskName: string): Flow {
  const flow = def?.flow;
  if (
    !flow ||
    (!flow.concurrency && !flow.rateLimits && !flow.desiredWorkerLabels && !flow.slotCost && !flow.durable)
  ) {
    return state.sticky ? { ...NO_FLOW, sticky: state.sticky, lane: laneOfSticky(state) } : NO_FLOW;
  }
  const compiled = def as CompiledDefinition;
  const laneParts: string[] = [];
  const groups = (flow.concurrency ?? []).map((rule, i) => {
    const value = evaluate(
      compiled.concurrency[i] as KeyExpression,
      state,
      `concurrency[${i}].expression`,
      rule.expression,
    );
    laneParts.push(value);
    return { id: `${rule.key ?? `${taskName}[${i}]`}=${value}`, maxRuns: rule.maxRuns, strategy: rule.limitStrategy };
  });
  const rates = (flow.rateLimits ?? []).map((limit, i) => {
    if ("staticKey" in limit) return { key: limit.staticKey, units: limit.units };
    const value = evaluate(
      compiled.rateKeys[i] as KeyExpression,
      state,
      `rateLimits[${i}].dynamicKey`,
      limit.dynamicKey,
    );
    // Per value and per declared limit: tasks declaring the same limit share a value's budget, another limit (or a
    // static limit named like the value: static names hold no "@") is another budget.
    const key = `${value}@${limit.limit}/${limit.duration}`;
    laneParts.push(key);
    return { key, units: limit.units, limit: limit.limit, durationMs: RateLimitDurations[limit.duration] };
  });
  const labels = Object.entries(flow.desiredWorkerLabels ?? {}).map(([key, desired]) => ({ key, desired }));
  if (state.sticky?.mode === "HARD") laneParts.push(`@${state.sticky.workerId}`);
  return {
    lane: laneParts.join("\u0000"),
    groups,
    rates,
    labels,
    slotCost: flow.slotCost ?? 1,
    sticky: state.sticky,
    ...(flow.durable ? { durable: true } : {}),
  };
}

function laneOfSticky(state: RunState): string {
  return state.sticky?.mode === "HARD" ? `@${state.sticky.workerId}` : "";
}

function evaluate(fn: KeyExpression, state: RunState, field: string, expression: string): string {
  try {
    return evaluateKey(fn, state.input, state.additionalMetadata);
  } catch (err) {
    throw new FlowKeyError(field, expression, err);
  }
}
