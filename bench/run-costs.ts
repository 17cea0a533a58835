// Benchmark: what a lab run costs beyond its flow, read off a finished campaign's store, and how well
// the plan's estimate (lab/wall-estimate.ts) foretold the campaign's wall time.
//
// Every run that passed on its first attempt gives its own time beyond the flow: from ITGSend's (or
// the setup probe's) start to its data in (run_result started_at to ended_at) less the planned flow;
// every pair of such runs next to each other in one step gives the gap from the first one's end to
// the second one's start (ITGRecv's close when the second waits for it, the runner's work between
// runs, hop probes). Printed: the medians by profile and by pair of profiles, as lab/wall-estimate.ts's
// RunCosts holds them; with a second store of the same campaign run with --no-hops, what hop probes
// add to a probed run (the gaps' difference, per probed run beside the gap). Then the campaign's wall
// (its start event to its end event) against the estimate of its definition, with these run costs
// and with lab/wall-estimate.ts's own: their ratios.
//
// Run: npx tsx bench/run-costs.ts DB [DB_WITHOUT_HOPS]   (stores of `testbed lab`, one campaign each)
import { sameStep } from "../measure/campaign-plan.js";
import { ResultStore } from "../measure/store.js";
import { medianOf } from "../measure/statistics.js";
import type { RunProfile, RunResult } from "../measure/types.js";
import { estimateLabWall, gapKey, LAB_COSTS, type RunCosts } from "../lab/wall-estimate.js";

const [file, withoutHops] = process.argv.slice(2);
if (!file) {
  console.error("usage: npx tsx bench/run-costs.ts DB [DB_WITHOUT_HOPS]");
  process.exit(2);
}

interface Read {
  readonly id: string;
  readonly definition: NonNullable<ReturnType<ResultStore["campaign"]>>["definition"];
  readonly beyond: Map<RunProfile, number[]>;
  readonly gaps: Map<string, number[]>;
  /** The campaign's wall, s, when it ran in one session to its end. */
  readonly wallS: number | undefined;
  readonly runs: number;
}

function read(path: string): Read {
  const store = ResultStore.openReadOnly(path);
  try {
    const ids = store.campaignIds();
    if (ids.length !== 1) throw new Error(`bench/run-costs: ${path} holds ${ids.length} campaigns (${ids.join(", ")}); accepted: a store of one`);
    const campaign = store.campaign(ids[0]!)!;
    const def = campaign.definition;
    const results = new Map(store.results(campaign.id).map((r) => [r.runId, r] as const));
    const seconds = (iso: string) => Date.parse(iso) / 1000;
    const clean = (r: RunResult | undefined): r is RunResult => r !== undefined && r.status === "ok" && r.retries === 0 && r.profile !== "programming";
    const push = <K>(m: Map<K, number[]>, k: K, x: number) => m.set(k, [...(m.get(k) ?? []), x]);
    const beyond = new Map<RunProfile, number[]>();
    const gaps = new Map<string, number[]>();
    for (const r of results.values()) if (clean(r)) push(beyond, r.profile, seconds(r.endedAt) - seconds(r.startedAt) - def.flowSeconds);
    campaign.plan.forEach((run, i) => {
      const next = campaign.plan[i + 1];
      const [a, b] = [results.get(run.runId), next && results.get(next.runId)];
      if (next && sameStep(run.key, next.key) && clean(a) && clean(b)) push(gaps, gapKey(a.profile, b.profile), seconds(b.startedAt) - seconds(a.endedAt));
    });
    const events = store.events(campaign.id);
    const start = events.find((e) => e.kind === "start");
    const end = [...events].reverse().find((e) => e.kind === "end");
    const sessions = events.filter((e) => e.kind === "start" || e.kind === "resume").length;
    const wallS = start && end && sessions === 1 ? seconds(end.at) - seconds(start.at) : undefined;
    return { id: campaign.id, definition: def, beyond, gaps, wallS, runs: results.size };
  } finally {
    store.close();
  }
}

const probed = (p: string) => p === "latency" || p === "setup";
const med = (xs: readonly number[]) => medianOf([...xs]);
const f = (x: number) => `${x.toFixed(3)} s`;
const fixed = (x: number) => Number(x.toFixed(2));

const main = read(file);
const def = main.definition;
console.log(`campaign ${main.id} (${file}): ${main.runs} runs of ${def.flowSeconds} s over ${def.services.join(", ")} Services`);
const beyondS = Object.fromEntries([...main.beyond].map(([p, xs]) => [p, fixed(med(xs))]));
const gapS = Object.fromEntries([...main.gaps].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, xs]) => [k, fixed(med(xs))]));
for (const [p, xs] of main.beyond) console.log(`  beyond the flow, ${p}: ${f(med(xs))} (median of ${xs.length})`);
for (const [k, xs] of [...main.gaps].sort(([a], [b]) => (a < b ? -1 : 1))) console.log(`  gap ${k}: ${f(med(xs))} (median of ${xs.length}; ${xs.map((x) => x.toFixed(2)).join(" ")})`);
// Before a change of step prepare() waits for a closing D-ITG flow as the next D-ITG flow does.
const closes = [...main.gaps].filter(([k]) => !k.includes("setup")).flatMap(([, xs]) => xs);

let hopProbesS = LAB_COSTS.runs.hopProbesS;
if (withoutHops) {
  const other = read(withoutHops);
  const perSide: number[] = [];
  for (const [k, xs] of main.gaps) {
    const [a, b] = k.split(">") as [string, string];
    const sides = (probed(a) ? 1 : 0) + (probed(b) ? 1 : 0);
    const ys = other.gaps.get(k);
    if (sides > 0 && ys) perSide.push((med(xs) - med(ys)) / sides);
  }
  hopProbesS = 2 * med(perSide);
  console.log(`  hop probes, against ${withoutHops} (--no-hops): ${f(hopProbesS)} per probed run (twice the median per side of ${perSide.length} pairs)`);
}

// Gaps no close sits in: after a setup run, before one beside a closing flow of the other protocol.
const open = [...main.gaps].filter(([k]) => k === gapKey("latency", "setup") || k === gapKey("setup", "latency")).flatMap(([, xs]) => xs);
const measured: RunCosts = {
  ...LAB_COSTS.runs,
  beyondS,
  gapS,
  closeWaitS: fixed(med(closes)),
  ...(open.length > 0 ? { betweenRunsS: fixed(med(open)) } : {}),
  hopProbesS: fixed(hopProbesS),
};
console.log(`as RunCosts: ${JSON.stringify({ beyondS, gapS, closeWaitS: measured.closeWaitS, betweenRunsS: measured.betweenRunsS, hopProbesS: measured.hopProbesS })}`);

const hops = [...main.gaps.keys()].some((k) => k.split(">").some(probed));
const expected = estimateLabWall(def, { hops, costs: { ...LAB_COSTS, runs: measured } });
const listed = estimateLabWall(def, { hops });
console.log(
  `estimate of the campaign: ${f(expected.totalS)} with these run costs (flows ${f(expected.flowsS)}, beyond them ${f(expected.runsS)}, step changes ${f(expected.stepChangesS)}); ${f(listed.totalS)} with lab/wall-estimate.ts's own`,
);
if (main.wallS !== undefined) {
  console.log(`its wall: ${f(main.wallS)}; over the estimate with these run costs ${(main.wallS / expected.totalS).toFixed(3)}, with lab/wall-estimate.ts's own ${(main.wallS / listed.totalS).toFixed(3)}`);
} else {
  console.log("it ran in more than one session or did not end: no wall to compare");
}
