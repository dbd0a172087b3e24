import { FLOW_KEYS } from "./flow.js";

/**
 * Monotonic milliseconds from `process.hrtime` (CLOCK_MONOTONIC on Linux, shared by every process on the host), so a
 * timestamp taken in the client and one taken in the worker are directly comparable (as in the peers' driver).
 */
export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/**
 * ~100-byte JSON input, the same shape the peers' driver uses, plus `k`, the key of `--flow`'s concurrency rule (there
 * in every mode, so that modes differ in their flow options only).
 */
export function benchInput(
  i: number,
  measured: boolean,
  t = 0,
): { i: number; m: number; t: number; [k: string]: unknown } {
  return {
    i,
    m: measured ? 1 : 0,
    t,
    k: `k${i % FLOW_KEYS}`,
    user: "user-000042",
    kind: "bench.noop",
    pad: "xxxxxxxxxxxxxxx",
  };
}

export interface Percentiles {
  n: number;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  max: number | null;
  mean: number | null;
}

/** Nearest-rank percentiles over the finite values (the driver's definition). */
export function percentiles(values: ArrayLike<number>): Percentiles {
  const s = Array.from(values)
    .filter((x) => Number.isFinite(x))
    .sort((a, b) => a - b);
  const at = (p: number) =>
    s.length ? (s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? null) : null;
  const r3 = (x: number | null) => (x === null ? null : Math.round(x * 1000) / 1000);
  return {
    n: s.length,
    p50: r3(at(50)),
    p95: r3(at(95)),
    p99: r3(at(99)),
    max: r3(s.length ? (s[s.length - 1] ?? null) : null),
    mean: r3(s.length ? s.reduce((a, b) => a + b, 0) / s.length : null),
  };
}
