import { defineConfig } from "vitest/config";

/** Suites that talk to a real Neutron API server: one server per run, started only when they run. */
const NEUTRON_SUITES = "test/neutron/**/*.test.ts";

/**
 * scripts/test.sh runs the kernel suites one file at a time with TESTBED_ONE_FILE_AT_A_TIME=1. A
 * `--maxWorkers 1` on the command line does not do it: the projects take this file's settings.
 */
const oneFileAtATime = process.env.TESTBED_ONE_FILE_AT_A_TIME === "1";

export default defineConfig({
  test: {
    // Pulumi mocks keep global state: one process per file keeps stacks apart.
    pool: "forks",
    // Two cores: real D-ITG flows and kernel tests must not starve each other.
    maxWorkers: oneFileAtATime ? 1 : 2,
    fileParallelism: !oneFileAtATime,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    projects: [
      { extends: true, test: { name: "default", include: ["test/*.test.ts", "test/!(neutron)/**/*.test.ts"] } },
      // The server answers one request at a time: on a busy machine a whole plan's replay takes a while (up to
      // 300 s with two busy loops beside the other suites on 2 cores), so the limit only guards a hang.
      { extends: true, test: { name: "neutron", include: [NEUTRON_SUITES], globalSetup: ["test/neutron/local-neutron.setup.ts"], testTimeout: 900_000, hookTimeout: 900_000 } },
    ],
  },
});
