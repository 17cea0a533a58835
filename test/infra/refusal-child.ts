// Runs the program of the ebpf stack once, offline, with `--config`-style overrides from argv, and
// prints how many resources it declared and what it refused (one process per run: Pulumi's runtime
// state is per process). Used by refusals.test.ts.
import { applyConfigOverrides, PROJECT_DIR } from "../../cli/plan.js";
import * as fs from "node:fs";
import { readStackConfig, runOffline } from "../../infra/offline-engine.js";

const { values, secretKeys } = readStackConfig(PROJECT_DIR, "ebpf", (p) => fs.readFileSync(p, "utf8"));
try {
  const run = await runOffline({ stack: "ebpf", config: applyConfigOverrides(values, process.argv.slice(2)), secretKeys });
  console.log(JSON.stringify({ declared: run.resources.length, message: "" }));
} catch (err) {
  console.log(JSON.stringify({ declared: (err as { declared?: number }).declared ?? -1, message: (err as Error).message }));
}
