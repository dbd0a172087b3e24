import { z } from "zod";

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
  })
  .strict();
export type RunOptions = z.input<typeof RunOptionsSchema>;
