import { Environment } from "@marcbachmann/cel-js";
import { z } from "zod";
import { ValidationError } from "./errors.js";
import { describeValue } from "./validation.js";

/**
 * Flow-control options of a task (concurrency, rate limits, routing, slot cost) as workers register them in
 * `TJ_DEFS`, and the CEL expressions they contain. Shared by the SDK (checked at declaration and registration) and
 * the engine (checked again when it reads a definition).
 */

/**
 * A CEL environment over the named map variables: `compile(expression, field)` checks an expression and returns it
 * ready to evaluate, or throws a ValidationError naming `field` with the parser's message.
 */
export function celCompiler<V extends string>(...variables: V[]) {
  let env = new Environment({ limits: { maxAstNodes: 500, maxDepth: 32 } });
  for (const v of variables) env = env.registerVariable(v, "map");
  return (expression: string, field: string): ((vars: Record<V, unknown>) => unknown) => {
    const checked = env.check(expression);
    if (!checked.valid) {
      const reason = (checked.error?.message ?? "invalid expression").split("\n")[0];
      throw new ValidationError([
        { path: field, message: `is not a valid CEL expression: ${reason}, got ${describeValue(expression)}` },
      ]);
    }
    const evaluate = env.parse(expression) as (vars: Record<V, unknown>) => unknown;
    return (vars) => {
      try {
        return evaluate(vars);
      } catch (err) {
        // cel-js tells a JS object's type by its `constructor` property, so a JSON object with a "constructor" key
        // (a form field, say) is an "Unsupported type". As Maps, every key is only a key. Rare: only then converted.
        if (!(err instanceof Error) || !err.message.startsWith("Unsupported type")) throw err;
        return evaluate(asMaps(vars) as Record<V, unknown>);
      }
    };
  };
}

/** JSON with every object as a Map. */
function asMaps(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(asMaps);
  if (typeof value !== "object" || value === null) return value;
  return new Map(Object.entries(value).map(([k, v]) => [k, asMaps(v)]));
}

/** A compiled CEL expression: evaluates to a group or rate-limit key. */
export type KeyExpression = (vars: { input: unknown; additional_metadata: unknown }) => unknown;

/** A compiled event filter: true when the event should start a run. */
export type EventFilter = (vars: { payload: unknown; additional_metadata: unknown }) => unknown;

/** Compiles a concurrency expression or dynamic rate-limit key: CEL over `input` and `additional_metadata`. */
export const compileKeyExpression: (expression: string, field: string) => KeyExpression = celCompiler(
  "input",
  "additional_metadata",
);

/** Compiles an `onEvents` filter: CEL over `payload` and `additional_metadata`. */
export const compileEventFilter: (expression: string, field: string) => EventFilter = celCompiler(
  "payload",
  "additional_metadata",
);

/** Evaluates a key expression against a run: a string, or a number or boolean rendered as one. */
export function evaluateKey(
  fn: KeyExpression,
  input: Record<string, unknown>,
  metadata: Record<string, string>,
): string {
  const value = fn({ input, additional_metadata: metadata });
  if (typeof value === "string") {
    if (value.length === 0 || value.length > 256) throw new Error(`key must be 1-256 characters, got "${value}"`);
    return value;
  }
  if (typeof value === "number" || typeof value === "bigint" || typeof value === "boolean") return String(value);
  throw new Error(`key must evaluate to a string or number, got ${describeValue(value)}`);
}

const celString = z.string().min(1).max(1000);
/** A static rate-limit key or a shared concurrency key: a name, dot-separated. */
const keyName = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,128}(\.[A-Za-z0-9_-]{1,128})*$/, "must be letters, digits, _, - and inner dots");

export const LimitStrategies = ["GROUP_ROUND_ROBIN", "CANCEL_IN_PROGRESS", "CANCEL_NEWEST"] as const;
export type LimitStrategy = (typeof LimitStrategies)[number];

/** At most `maxRuns` runs per value of `expression` at once; `key` shares the groups with other tasks. */
export const ConcurrencyRuleSchema = z
  .object({
    expression: celString,
    maxRuns: z.number().int().min(1).max(100_000).default(1),
    limitStrategy: z.enum(LimitStrategies).default("GROUP_ROUND_ROBIN"),
    key: keyName.optional(),
  })
  .strict();
export type ConcurrencyRule = z.output<typeof ConcurrencyRuleSchema>;

/** Rate-limit windows. */
export const RateLimitDurations = { SECOND: 1000, MINUTE: 60_000, HOUR: 3_600_000, DAY: 86_400_000 } as const;
export type RateLimitDuration = keyof typeof RateLimitDurations;
const duration = z.enum(Object.keys(RateLimitDurations) as [RateLimitDuration, ...RateLimitDuration[]]);
const units = z.number().int().min(1).max(1_000_000).default(1);

/** A task consumes `units` of a static limit (`tj.ratelimits.upsert`) or of a limit per value of a CEL key. */
export const TaskRateLimitSchema = z.union([
  z.object({ staticKey: keyName, units }).strict(),
  z
    .object({
      dynamicKey: celString,
      units,
      limit: z.number().int().min(1).max(1_000_000_000),
      duration,
    })
    .strict()
    .refine((r) => r.units <= r.limit, { message: "units must not exceed limit", path: ["units"] }),
]);
export type TaskRateLimit = z.output<typeof TaskRateLimitSchema>;

/** A static rate limit as stored in `TJ_RATELIMITS`. */
export const RateLimitDefinitionSchema = z
  .object({
    v: z.literal(1),
    key: keyName,
    limit: z.number().int().min(1).max(1_000_000_000),
    duration,
    updatedAt: z.iso.datetime(),
  })
  .strict();
export type RateLimitDefinition = z.output<typeof RateLimitDefinitionSchema>;

/** A rate-limit key's admissions within its window, as the namespace's leader wrote them to `TJ_RATEUSE`. */
export const RateUseRecordSchema = z
  .object({
    v: z.literal(1),
    key: z.string(),
    limit: z.number().int().min(1),
    /** The window the cap counts in (the duration plus its guard), in ms. */
    windowMs: z.number().int().positive(),
    /** Admissions, merged: `[first, last, units]`, epoch ms. */
    log: z.array(z.tuple([z.number(), z.number(), z.number().int().positive()])),
  })
  .strict();
export type RateUseRecord = z.output<typeof RateUseRecordSchema>;

export const LabelComparators = [
  "EQUAL",
  "NOT_EQUAL",
  "GREATER_THAN",
  "GREATER_THAN_OR_EQUAL",
  "LESS_THAN",
  "LESS_THAN_OR_EQUAL",
] as const;
export type LabelComparator = (typeof LabelComparators)[number];

export const WorkerLabelsSchema = z.record(keyName, z.union([z.string().max(256), z.number().finite()]));
export type WorkerLabels = z.output<typeof WorkerLabelsSchema>;

/** What a task wants of a worker's label: `required` filters workers, `weight` ranks them. */
export const DesiredLabelSchema = z
  .object({
    value: z.union([z.string().max(256), z.number().finite()]),
    required: z.boolean().default(false),
    comparator: z.enum(LabelComparators).default("EQUAL"),
    weight: z.number().int().min(0).max(1_000_000).default(100),
  })
  .strict()
  .refine((d) => typeof d.value === "number" || d.comparator === "EQUAL" || d.comparator === "NOT_EQUAL", {
    message: "ordering comparators need a numeric value",
    path: ["comparator"],
  });
export type DesiredLabel = z.output<typeof DesiredLabelSchema>;

export const StickyModes = ["SOFT", "HARD"] as const;
export type StickyMode = (typeof StickyModes)[number];

/** The flow-control part of a task definition. */
export const FlowOptionsSchema = z
  .object({
    concurrency: z.array(ConcurrencyRuleSchema).max(8).optional(),
    rateLimits: z.array(TaskRateLimitSchema).max(8).optional(),
    desiredWorkerLabels: z.record(keyName, DesiredLabelSchema).optional(),
    sticky: z.enum(StickyModes).optional(),
    slotCost: z.number().int().min(1).max(10_000).optional(),
    /** A durable task: runs in the worker's durable slots; sleeps free them. */
    durable: z.boolean().optional(),
  })
  .strict();
export type FlowOptions = z.output<typeof FlowOptionsSchema>;
export type FlowOptionsInput = z.input<typeof FlowOptionsSchema>;

/**
 * Checks what the schema cannot: every CEL expression compiles. Returns the compiled expressions in rule order.
 * @throws ValidationError naming the field, e.g. `concurrency[0].expression`
 */
export function compileFlow(
  flow: FlowOptions,
  root = "",
): { concurrency: KeyExpression[]; rateKeys: (KeyExpression | undefined)[] } {
  const concurrency = (flow.concurrency ?? []).map((rule, i) =>
    compileKeyExpression(rule.expression, `${root}concurrency[${i}].expression`),
  );
  const rateKeys = (flow.rateLimits ?? []).map((limit, i) =>
    "dynamicKey" in limit ? compileKeyExpression(limit.dynamicKey, `${root}rateLimits[${i}].dynamicKey`) : undefined,
  );
  return { concurrency, rateKeys };
}

/** Whether a worker's label satisfies a desired label. */
export function labelMatches(actual: string | number | undefined, desired: DesiredLabel): boolean {
  if (actual === undefined) return false;
  const want = desired.value;
  switch (desired.comparator) {
    case "EQUAL":
      return actual === want || String(actual) === String(want);
    case "NOT_EQUAL":
      return String(actual) !== String(want);
    default: {
      const a = typeof actual === "number" ? actual : Number(actual);
      const w = Number(want);
      if (Number.isNaN(a)) return false;
      if (desired.comparator === "GREATER_THAN") return a > w;
      if (desired.comparator === "GREATER_THAN_OR_EQUAL") return a >= w;
      if (desired.comparator === "LESS_THAN") return a < w;
      return a <= w;
    }
  }
}
