import { z } from "zod";

/**
 * A W3C trace context `traceparent` header value: version, trace id, parent span id, flags (lower-case hex). Version
 * ff and all-zero ids are invalid; later versions may append fields.
 */
export const TRACEPARENT = /^(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}(-[0-9a-f-]*)?$/;

/** Per-run options of `run`, `runNoWait` and `taskjet trigger`. */
export const RunOptionsSchema = z
  .object({
    /** A client-made run id: sending the same id twice makes one run. */
    runId: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,64}$/, "must be 1-64 letters, digits, _ or -")
      .optional(),
    /** String key/value pairs kept with the run, for filtering. */
    additionalMetadata: z.record(z.string(), z.string()).optional(),
    /** 1 (low) to 3 (high). */
    priority: z.number().int().min(1).max(3).optional(),
    /**
     * A second trigger of the same task with the same key, within the task's idempotency ttl (default 24 h), returns
     * the first run instead of creating one.
     */
    idempotencyKey: z.string().min(1).max(256).optional(),
    /**
     * W3C `traceparent` the run's tasks join (`00-<trace id>-<span id>-<flags>`). Default: the caller's active
     * OpenTelemetry span, when `@opentelemetry/api` is installed and a span is active.
     */
    traceparent: z
      .string()
      .regex(TRACEPARENT, "must be a W3C traceparent: 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>")
      .optional(),
    /** W3C `tracestate` that goes with `traceparent` (vendor key=value pairs). */
    tracestate: z.string().max(512).optional(),
  })
  .strict();
export type RunOptions = z.input<typeof RunOptionsSchema>;

/** What a child run may set of its own (its id derives from its parent, its trace is the parent task's). */
export const ChildRunOptionsSchema = RunOptionsSchema.pick({ priority: true, additionalMetadata: true });
