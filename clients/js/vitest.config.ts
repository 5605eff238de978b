import { defineConfig } from "vitest/config";

// Unit tests of the core and the pure parts of the React bindings; no browser, no network.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    environment: "node",
  },
});
