// Campaign overhead on loopback: how much wall time the campaign machinery (receiver checks, store
// commits, decoding, progress) adds to the flows themselves.
//
//   npx tsx bench/campaign-overhead.ts [--flow-seconds 5] [--runs 1]
//
// Baseline, in the same command: the same flows run back to back through the same backend with
// nothing else (no store, no decoding). Then the campaign: 2 dataplanes x 2 families x 2 profiles x
// runs, 5-second flows, through runCampaign with the real store and the worker-thread decoder.
// Printed: the campaign's wall time, the sum of its flow durations and their ratio (aim <= 1.10),
// and the campaign's wall time against the baseline's.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { WorkerLogDecoder } from "../measure/campaign-decode.js";
import { campaignIdFor, planCampaign, type CampaignDefinition } from "../measure/campaign-plan.js";
import { runCampaign } from "../measure/campaign.js";
import { LoopbackBackend } from "../measure/loopback-backend.js";
import { ResultStore } from "../measure/store.js";
import { scenarioSchema } from "../scenario/schema.js";

const { values } = parseArgs({ options: { "flow-seconds": { type: "string", default: "5" }, runs: { type: "string", default: "1" } } });
const flowSeconds = Number(values["flow-seconds"]);
const runs = Number(values.runs);
if (!(flowSeconds >= 1) || !(Number.isInteger(runs) && runs >= 1)) {
  throw new Error(`--flow-seconds ${values["flow-seconds"]} --runs ${values.runs}: accepted: seconds >= 1 and a whole number of runs >= 1`);
}

const dir = mkdtempSync(path.join(tmpdir(), "bench-campaign-"));
const def: CampaignDefinition = {
  backend: "loopback",
  dataplanes: ["iptables", "ebpf"],
  families: ["ipv4", "ipv6"],
  profiles: ["throughput", "latency"],
  services: [1],
  runs,
  flowSeconds,
  linkMbps: 0,
  seed: 2025,
  order: { randomize: true, interleave: 0 },
  traffic: scenarioSchema.shape.traffic.parse(undefined),
};
const id = campaignIdFor(def);
const plan = planCampaign(id, def);
const seconds = (ms: number) => (ms / 1000).toFixed(2);

try {
  // Baseline: the plan's flows back to back, nothing around them.
  const baseline = await LoopbackBackend.start({ workDir: path.join(dir, "baseline") });
  const b0 = performance.now();
  let baselineFlows = 0;
  for (const run of plan) {
    const o = await baseline.runFlow(run.key, { logName: `b-${run.runId}`, durationS: flowSeconds, traffic: def.traffic[run.key.profile] });
    baselineFlows += o.endedAt.getTime() - o.startedAt.getTime();
  }
  const baselineWall = performance.now() - b0;
  await baseline.teardown();

  // The campaign, from an empty store to the last commit and teardown.
  const c0 = performance.now();
  const store = ResultStore.open(path.join(dir, "results.db"));
  store.ensureCampaign(id, def, plan);
  const decoder = new WorkerLogDecoder();
  const backend = await LoopbackBackend.start({ workDir: path.join(dir, "campaign") });
  const summary = await runCampaign({ store, campaignId: id, backend, decoder, retries: 0 });
  const wall = performance.now() - c0;
  await decoder.close();

  const results = store.results(id);
  const attempts = results.flatMap((r) => store.attempts(r.runId));
  const flows =
    results.reduce((s, r) => s + Date.parse(r.endedAt) - Date.parse(r.startedAt), 0) +
    attempts.reduce((s, a) => s + Date.parse(a.endedAt) - Date.parse(a.startedAt), 0);
  store.close();

  console.log(`runs: ${summary.done}/${summary.total} (${results.filter((r) => r.status === "ok").length} ok), ${flowSeconds} s flows`);
  console.log(`baseline (flows back to back, no store, no decoding): wall ${seconds(baselineWall)} s, flows ${seconds(baselineFlows)} s`);
  console.log(`campaign: wall ${seconds(wall)} s, sum of flow durations ${seconds(flows)} s`);
  console.log(`campaign wall / sum of flow durations: ${(wall / flows).toFixed(3)} (aim <= 1.10)`);
  console.log(`campaign wall / baseline wall: ${(wall / baselineWall).toFixed(3)}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
