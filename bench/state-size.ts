// How large one checkpoint of the ebpf stack's state is at N = 1000 and N = 10000 Services, with the
// Service manifest uploaded by hash (the program) and as a string asset (the baseline: what the
// state held before), from offline plans made in this run.
//
//   npx tsx bench/state-size.ts
//
// Printed: the estimated checkpoint size of each (infra/state-size.ts) and the ratio baseline / program.
import { planInChild } from "../cli/diff.js";
import type { PlannedResource } from "../infra/offline-engine.js";
import { checkpointBytes, withTextAssets } from "../infra/state-size.js";

const kib = (bytes: number) => `${(bytes / 1024).toFixed(0)} KiB`;
for (const services of [1000, 10000]) {
  const plan = (await planInChild("ebpf", [`services=${services}`])) as PlannedResource[];
  const byHash = checkpointBytes(plan);
  const asText = checkpointBytes(withTextAssets(plan));
  console.log(
    `ebpf, ${String(services).padStart(5)} Services: checkpoint ${kib(byHash)} with the manifest by hash, ${kib(asText)} as a string asset (baseline); ratio baseline / program ${(asText / byHash).toFixed(1)}x`,
  );
}
