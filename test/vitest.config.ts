import { defineConfig } from "vitest/config";

/**
 * Files that load the machine (three-node clusters, engine processes under load, a browser, the fuzzer): they run
 * after the others, one at a time, so they neither disturb the timing bounds of the rest (rate limits, concurrency)
 * nor each other's.
 */
const HEAVY = [
  "integration/cluster.test.ts",
  "integration/dashboard.test.ts",
  "integration/deploy.test.ts",
  "integration/fuzz.test.ts",
  "integration/ha.test.ts",
];

const shared = { testTimeout: 60_000, hookTimeout: 30_000, teardownTimeout: 10_000 };

export default defineConfig({
  test: {
    // Each file starts its own nats-server; two at a time suits the 2-core machines this runs on.
    maxWorkers: 2,
    projects: [
      {
        test: {
          ...shared,
          name: "integration",
          include: ["integration/**/*.test.ts", "harness/**/*.test.ts"],
          exclude: HEAVY,
          sequence: { groupOrder: 0 },
        },
      },
      { test: { ...shared, name: "heavy", include: HEAVY, fileParallelism: false, sequence: { groupOrder: 1 } } },
    ],
  },
});
