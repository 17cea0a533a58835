// Campaign overhead: how much wall time the campaign machinery (receiver checks, store commits,
// decoding, progress) adds to the flows themselves, on loopback or in the local lab.
//
//   npx tsx bench/campaign-overhead.ts [--backend loopback|lab] [--flow-seconds 5] [--runs 1]
//
// One backend serves both parts. Baseline first: the plan's flows run back to back through it with
// nothing else (prepare once per dataplane, then runFlow and collectLog; no store, no decoding). Then
// the campaign: every dataplane x 2 families x 2 profiles (throughput, latency) x runs on one Service
// count (1, so installing the dataplane is short and the same every time), 5-second flows, through
// runCampaign with the real store and the worker-thread decoder. The lab (root, Linux) runs with the
// scenario's link cap and runJudge. Printed: the campaign's wall time, the sum of its flow durations
// and their ratio (aim <= 1.10), the campaign's wall time against the baseline's, and how much of
// each wall was dataplane preparation (prepare()), which the runner cannot overlap with flows, and
// the backend's teardown at the campaign's end; then why each failed run failed, and where the
// campaign's time went (the runner's phases and the backend's, as `testbed lab` prints them).
import { campaignTraffic } from "../measure/connection-setup.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { labProblem, LabBackend } from "../backends/lab.js";
import { runJudge } from "../measure/campaign.js";
import { WorkerLogDecoder } from "../measure/campaign-decode.js";
import { campaignIdFor, planCampaign, sameStep, stepOf, type CampaignDefinition, type PlannedRun } from "../measure/campaign-plan.js";
import { runCampaign, type FlowJudge } from "../measure/campaign.js";
import { describeTimings, type PhaseTime } from "../measure/phase-times.js";
import { LoopbackBackend } from "../backends/loopback.js";
import { ResultStore } from "../measure/store.js";
import type { Backend } from "../measure/types.js";
import { DATAPLANES, scenarioSchema } from "../scenario/schema.js";

/** What differs between the backends the benchmark runs on. */
interface BenchBackend {
  /** Why it cannot run here, or undefined. */
  readonly problem: () => string | undefined;
  readonly linkMbps: number;
  readonly judge?: FlowJudge;
  readonly start: (workDir: string, linkMbps: number) => Promise<Backend>;
}

const BACKENDS: Record<string, BenchBackend> = {
  loopback: { problem: () => undefined, linkMbps: 0, start: (workDir) => LoopbackBackend.start({ workDir }) },
  lab: {
    problem: labProblem,
    linkMbps: scenarioSchema.shape.linkMbps.parse(undefined),
    judge: runJudge,
    start: (_workDir, linkMbps) => LabBackend.start({ linkMbps }),
  },
};

const { values } = parseArgs({
  options: { backend: { type: "string", default: "loopback" }, "flow-seconds": { type: "string", default: "5" }, runs: { type: "string", default: "1" } },
});
const flowSeconds = Number(values["flow-seconds"]);
const runs = Number(values.runs);
if (!(flowSeconds >= 1) || !(Number.isInteger(runs) && runs >= 1)) {
  throw new Error(`--flow-seconds ${values["flow-seconds"]} --runs ${values.runs}: accepted: seconds >= 1 and a whole number of runs >= 1`);
}
const bench = Object.hasOwn(BACKENDS, values.backend) ? BACKENDS[values.backend]! : undefined;
if (!bench) throw new Error(`--backend ${JSON.stringify(values.backend)} is not accepted; accepted: ${Object.keys(BACKENDS).join(", ")}`);
const problem = bench.problem();
if (problem) throw new Error(`--backend ${values.backend}: ${problem}; nothing was run`);

/** Adds up the time the backend spends in one of its methods; the runner's own calls go through it too. */
function timeCalls<M extends "prepare" | "teardown">(backend: Backend, method: M): { readonly ms: number } {
  const timing = { ms: 0 };
  const original = backend[method].bind(backend) as (...args: Parameters<Backend[M]>) => Promise<void>;
  backend[method] = (async (...args: Parameters<Backend[M]>) => {
    const t0 = performance.now();
    try {
      await original(...args);
    } finally {
      timing.ms += performance.now() - t0;
    }
  }) as Backend[M];
  return timing;
}

/** The plan's flows back to back through the backend, nothing around them; returns the sum of their durations, ms. */
async function runBare(backend: Backend, plan: readonly PlannedRun[], def: CampaignDefinition): Promise<number> {
  let flows = 0;
  let prepared: PlannedRun | undefined;
  for (const run of plan) {
    if (!prepared || !sameStep(prepared.key, run.key)) await backend.prepare(stepOf(run.key));
    prepared = run;
    const o = await backend.runFlow(run.key, { logName: `b-${run.runId}`, durationS: def.flowSeconds, traffic: def.traffic[run.key.profile] });
    const logs = await backend.collectLog(o);
    for (const file of [logs.log, logs.receiverLog]) if (file !== undefined) rmSync(file, { force: true });
    flows += o.endedAt.getTime() - o.startedAt.getTime();
  }
  return flows;
}

const dir = mkdtempSync(path.join(tmpdir(), "bench-campaign-"));
const def: CampaignDefinition = {
  backend: values.backend,
  dataplanes: [...DATAPLANES],
  families: ["ipv4", "ipv6"],
  profiles: ["throughput", "latency"],
  services: [1],
  runs,
  flowSeconds,
  linkMbps: bench.linkMbps,
  seed: 2025,
  order: { randomize: true, interleave: 0 },
  traffic: campaignTraffic(scenarioSchema.shape.traffic.parse(undefined)),
};
const id = campaignIdFor(def);
const plan = planCampaign(id, def);
const seconds = (ms: number) => (ms / 1000).toFixed(2);

const backend = await bench.start(path.join(dir, "flows"), def.linkMbps);
try {
  const prepare = timeCalls(backend, "prepare");
  const teardown = timeCalls(backend, "teardown");
  const b0 = performance.now();
  const baselineFlows = await runBare(backend, plan, def);
  const baselineWall = performance.now() - b0;
  const baselinePrepare = prepare.ms;
  const backendPhases = () => (backend instanceof LabBackend ? backend.phases.entries() : []);
  const baselinePhases = backendPhases();

  // The campaign, from an empty store to the last commit and the backend's teardown.
  const c0 = performance.now();
  const store = ResultStore.open(path.join(dir, "results.db"));
  store.ensureCampaign(id, def, plan);
  const decoder = new WorkerLogDecoder();
  const summary = await runCampaign({ store, campaignId: id, backend, decoder, retries: 0, ...(bench.judge ? { judge: bench.judge } : {}) });
  const wall = performance.now() - c0;
  const campaignPrepare = prepare.ms - baselinePrepare;
  await decoder.close();

  const results = store.results(id);
  const attempts = results.flatMap((r) => store.attempts(r.runId));
  const flows =
    results.reduce((s, r) => s + Date.parse(r.endedAt) - Date.parse(r.startedAt), 0) +
    attempts.reduce((s, a) => s + Date.parse(a.endedAt) - Date.parse(a.startedAt), 0);
  store.close();
  const share = (part: number, whole: number) => `${seconds(part)} s (${((100 * part) / whole).toFixed(1)} %)`;

  console.log(`backend ${backend.name}: runs ${summary.done}/${summary.total} (${results.filter((r) => r.status === "ok").length} ok), ${flowSeconds} s flows, 1 Service, link cap ${def.linkMbps ? `${def.linkMbps} Mbit/s` : "none"}`);
  console.log(`baseline (flows back to back, no store, no decoding): wall ${seconds(baselineWall)} s, flows ${seconds(baselineFlows)} s, prepare() ${share(baselinePrepare, baselineWall)}`);
  console.log(`campaign: wall ${seconds(wall)} s, sum of flow durations ${seconds(flows)} s, prepare() ${share(campaignPrepare, wall)}, teardown ${share(teardown.ms, wall)}`);
  console.log(`campaign wall / sum of flow durations: ${(wall / flows).toFixed(3)} (aim <= 1.10)`);
  console.log(`campaign wall / baseline wall: ${(wall / baselineWall).toFixed(3)}`);
  for (const r of results.filter((r) => r.status !== "ok")) console.log(`failed ${r.runId}: ${r.failure}`);
  // The backend's own phases in the campaign alone: what it spent since the baseline.
  const campaignPhases = backendPhases().map(([name, p]): [string, PhaseTime] => {
    const before = baselinePhases.find(([n]) => n === name)?.[1];
    return [name, { ms: p.ms - (before?.ms ?? 0), count: p.count - (before?.count ?? 0) }];
  });
  console.log(describeTimings(summary.timings, campaignPhases.filter(([, p]) => p.count > 0)).join("\n"));
} finally {
  await backend.teardown();
  rmSync(dir, { recursive: true, force: true });
}
