import { defineConfig } from "vitest/config";

// Browser tests: real Chromium, the real sidecar binary and the real demo app. One file at a time
// (the machine has two cores), generous timeouts for process start-up.
export default defineConfig({
  test: {
    include: ["e2e/**/*.e2e.ts"],
    environment: "node",
    testTimeout: 120_000,
    hookTimeout: 90_000,
    fileParallelism: false,
    pool: "forks",
  },
});
