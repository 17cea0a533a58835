import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Pulumi mocks keep global state: one process per file keeps stacks apart.
    pool: "forks",
    // Two cores: real D-ITG flows and kernel tests must not starve each other.
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
