import { defineConfig } from "vitest/config";

/** Suites that talk to a real Neutron API server: one server per run, started only when they run. */
const NEUTRON_SUITES = "test/neutron/**/*.test.ts";

export default defineConfig({
  test: {
    // Pulumi mocks keep global state: one process per file keeps stacks apart.
    pool: "forks",
    // Two cores: real D-ITG flows and kernel tests must not starve each other.
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    projects: [
      { extends: true, test: { name: "default", include: ["test/*.test.ts", "test/!(neutron)/**/*.test.ts"] } },
      // The server answers one request at a time: on a busy machine a whole plan's replay takes a while.
      { extends: true, test: { name: "neutron", include: [NEUTRON_SUITES], globalSetup: ["test/neutron/local-neutron.setup.ts"], testTimeout: 300_000 } },
    ],
  },
});
