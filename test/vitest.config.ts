import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["integration/**/*.test.ts", "harness/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 30_000,
    // Each file starts its own nats-server; two at a time suits the 2-core machines this runs on.
    maxWorkers: 2,
    teardownTimeout: 10_000,
  },
});
