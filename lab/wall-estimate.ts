// The wall time of a lab campaign, estimated before it starts from what its parts cost on this kind
// of host: the plan walked run by run (measure/campaign-plan.ts) as the runner walks it, each run its
// flow and what a run costs beyond it, each change of step what prepare() does then (the dataplane
// before it parked, this one installed, moved or resumed, the packet path checked, the Services
// counted, conntrack flushed), each with the costs measured for it. Pure: the constants are
// measured, named and sourced below and in each dataplane's module (StepCosts); nothing of the
// total is written down anywhere.
//
// Where the constants come from (on the project's 2-core host, shared with other work, load 5 to 9):
// - the runs' costs: `npx tsx bench/run-costs.ts DB` on the store of
//   `npm run testbed -- lab --profile smoke --services 1,1000,2000 --out DIR` (medians of every run's
//   time beyond its flow and of the gaps between runs by their profiles, README "Benchmarks");
// - the step changes: `npx tsx bench/step-change.ts 1,1000,2000,500 3` and
//   `npx tsx bench/step-change.ts 1,10000,1000,5000 3 iptables,ebpf` (README "Benchmarks"); nftables
//   is measured up to 2000 Services only (a larger `nft -f` holds a CPU for minutes on a shared
//   host), and its install extrapolated with the square of the count: 107 s for both families at
//   10000, between the 2 x 43 s of kernel time and the 146 s of whole installs the earlier
//   `bench/lab-install.ts` measured there.
import { DATAPLANES, type Dataplane } from "../scenario/schema.js";
import { planCampaign, sameStep, type CampaignDefinition } from "../measure/campaign-plan.js";
import type { ProgrammingSettings, RunProfile } from "../measure/types.js";
import { LAB_DATAPLANES, type ServiceCost, type StepCosts, type StepSync } from "./dataplanes/index.js";

/** What a run costs beyond its planned flow, seconds. */
export interface RunCosts {
  /** A run's own time beyond its flow, by profile: from ITGSend's (or the setup probe's) start to its data in (run_result started_at to ended_at). */
  readonly beyondS: Readonly<Partial<Record<RunProfile, number>>>;
  /**
   * From a run's end to the next run's start within a step, by their profiles ("latency>setup"):
   * ITGRecv's close of a D-ITG flow when the next run waits for it (every D-ITG flow does, a setup
   * run only on the flow's protocol), the receiver check, the last decode, the store's commit, hop
   * probes stopped after a run and attached before the next.
   */
  readonly gapS: Readonly<Record<string, number>>;
  /** Between runs of a pair gapS does not list. */
  readonly otherGapS: number;
  /** Between runs when nothing waits for a close: the receiver check, the last decode, the store's commit. */
  readonly betweenRunsS: number;
  /** ITGRecv's close of a D-ITG flow before a change of step (prepare() waits for it first). */
  readonly closeWaitS: number;
  /** What hop probes add to a latency or setup run (attached before it, read after it): the gaps hold it, taken off when they are off. */
  readonly hopProbesS: number;
  /** A probed change of a programming run beyond its write: the probe's start, the state before, the 50 ms after. */
  readonly probedChangeS: number;
}

/** Pure: the key of RunCosts.gapS for a run followed by another. */
export const gapKey = (before: RunProfile, after: RunProfile): string => `${before}>${after}`;

/**
 * `npx tsx bench/run-costs.ts DB` on the store of a smoke campaign over 1,1000,2000 Services
 * (108 runs of 1 s, hop probes on; load 5 to 7), medians. "latency>latency" never follows in a
 * plan that alternates protocols: otherGapS stands for it, a close; betweenRunsS is what the gaps
 * without a close hold ("latency>setup", "setup>latency").
 */
export const LAB_RUN_COSTS: RunCosts = {
  beyondS: { throughput: 0.05, latency: 0.02, setup: 0.02 },
  // A D-ITG flow's close is ITGRecv's one-second wait (backends/ditg-close-wait.ts); a setup run
  // starts beside a closing UDP flow, and a TCP flow after a setup run waits for the rest of it.
  gapS: {
    "latency>setup": 0.04,
    "latency>throughput": 1.0,
    "setup>latency": 0.04,
    "setup>setup": 0.05,
    "setup>throughput": 0.51,
    "throughput>latency": 1.0,
    "throughput>setup": 1.0,
    "throughput>throughput": 1.0,
  },
  otherGapS: 1.0,
  betweenRunsS: 0.04,
  closeWaitS: 1.0,
  hopProbesS: 0.02,
  // Not re-measured: the programming profile is in neither the default nor the paper profile.
  probedChangeS: 0.3,
};

/** What every change of step costs besides the dataplanes' own work. */
export interface StepChangeCosts {
  /** Reading every dataplane's view of the packet path from the kernel (LabBackend's check), by the step's Service count. */
  readonly check: ServiceCost;
  /** Flushing conntrack in the worker, and the eBPF load balancer's own connection maps. */
  readonly flushS: number;
}

/** `npx tsx bench/step-change.ts` (see the top of this file): the check's medians per count, the flush's median. */
export const LAB_STEP_CHANGE_COSTS: StepChangeCosts = {
  check: { fixedS: 0.1, perServiceS: 0.025e-3 },
  flushS: 0.05,
};

/** Every constant the estimate reads; the dataplanes' step costs from their modules unless given. */
export interface LabCosts {
  readonly runs: RunCosts;
  readonly stepChanges: StepChangeCosts;
  readonly dataplanes: Readonly<Record<Dataplane, StepCosts>>;
}

export const LAB_COSTS: LabCosts = {
  runs: LAB_RUN_COSTS,
  stepChanges: LAB_STEP_CHANGE_COSTS,
  dataplanes: Object.fromEntries(DATAPLANES.map((d) => [d, LAB_DATAPLANES[d].stepCosts])) as Record<Dataplane, StepCosts>,
};

/** Pure: a ServiceCost at n Services, seconds. */
export function costAt(cost: ServiceCost, services: number): number {
  return cost.fixedS + cost.perServiceS * services + (cost.perServiceSquaredS ?? 0) * services * services;
}

/** Pure: a partial sync from `from` to `to` Services, seconds (StepCosts.move). */
export function moveSeconds(move: StepCosts["move"], from: number, to: number): number {
  if (to >= from) return move.fixedS + move.perServiceS * (to - from) + (move.perServiceSquaredS ?? 0) * (to * to - from * from);
  return move.fixedS + move.removedPerServiceS * (from - to);
}

/** Where the estimated wall time goes, seconds. */
export interface WallEstimate {
  /** The flows' planned length: every run's flowSeconds (programming runs have none). */
  readonly flowsS: number;
  /** The runs beyond their flows: starts, drains, closes, the runner between runs, hop probes. */
  readonly runsS: number;
  /** The programming profile's runs. */
  readonly programmingS: number;
  /** Changes of step: parking, installs, moves, resumes, checks, counts, flushes. */
  readonly stepChangesS: number;
  /** The step changes' part that installs or moves Service sets (full and partial syncs). */
  readonly syncsS: number;
  readonly totalS: number;
  readonly runs: number;
  readonly stepChanges: number;
}

export interface EstimateOptions {
  /** Hop probes on latency and setup runs (testbed lab's default). */
  readonly hops?: boolean;
  /** How steps change (LabBackendOptions.stepSync); default partial. */
  readonly stepSync?: StepSync;
  readonly costs?: LabCosts;
}

/**
 * Pure: one programming run, seconds: five probed changes and an untimed one, one of them a restart
 * (a full sync of one family), and in a cell's first run the cold starts (each a full sync of one
 * family, two for a dataplane that also splits it).
 */
export function programmingRunSeconds(
  dataplane: Dataplane,
  services: number,
  repetition: number,
  settings: ProgrammingSettings,
  costs: LabCosts = LAB_COSTS,
): number {
  const fullSyncOneFamily = costAt(costs.dataplanes[dataplane].install, services) / 2;
  const colds = settings.coldStart && repetition === 0 ? (LAB_DATAPLANES[dataplane].syncKinds.includes("cold-split") ? 2 : 1) : 0;
  return 6 * costs.runs.probedChangeS + (1 + colds) * fullSyncOneFamily;
}

/**
 * Pure: the wall time of a lab campaign, walked run by run in its plan's order. A change of step
 * (the next run's dataplane or Service count differs) costs: the dataplane on the packet path
 * parked, the next one installed (its first step), moved by a partial sync (another count; with
 * stepSync "full" everything removed and installed again) or resumed (the count it holds), the
 * packet path checked, the Services counted after a sync, conntrack flushed. A run costs its flow,
 * what it takes beyond it, and the gap to the next run of its step (RunCosts.gapS, by the two runs'
 * profiles), or before a change of step ITGRecv's close of a D-ITG flow.
 */
export function estimateLabWall(def: CampaignDefinition, options: EstimateOptions = {}): WallEstimate {
  const costs = options.costs ?? LAB_COSTS;
  const hops = options.hops ?? true;
  const stepSync = options.stepSync ?? "partial";
  const plan = planCampaign("estimate", def);
  const held = new Map<Dataplane, number>();
  /** The Service count of the last step (with full-sync steps a new one removes what every dataplane held). */
  let lastServices: number | undefined;
  let active: Dataplane | undefined;
  let flowsS = 0;
  let runsS = 0;
  let programmingS = 0;
  let stepChangesS = 0;
  let syncsS = 0;
  let stepChanges = 0;
  plan.forEach((run, i) => {
    const { dataplane, services, profile } = run.key;
    if (i === 0 || !sameStep(plan[i - 1]!.key, run.key)) {
      stepChanges++;
      const steps = costs.dataplanes[dataplane];
      let change = 0;
      if (active !== undefined && active !== dataplane) change += costAt(costs.dataplanes[active].park, held.get(active)!);
      if (stepSync === "full" && lastServices !== services) held.clear();
      lastServices = services;
      const from = held.get(dataplane);
      let sync = 0;
      if (from === undefined) sync = costAt(steps.install, services);
      else if (from !== services) sync = moveSeconds(steps.move, from, services);
      else change += costAt(steps.resume, services);
      if (from !== services) change += costAt(steps.count, services);
      held.set(dataplane, services);
      active = dataplane;
      change += sync + costAt(costs.stepChanges.check, services) + costs.stepChanges.flushS;
      stepChangesS += change;
      syncsS += sync;
    }
    if (profile === "programming") {
      programmingS += programmingRunSeconds(dataplane, services, run.key.repetition, def.programming!, costs);
      return;
    }
    flowsS += def.flowSeconds;
    let beyond = costs.runs.beyondS[profile] ?? 0;
    // The gaps were measured with hop probes on latency and setup runs.
    if (!hops && (profile === "latency" || profile === "setup")) beyond -= costs.runs.hopProbesS;
    const next = plan[i + 1];
    if (next !== undefined && sameStep(next.key, run.key)) {
      beyond += costs.runs.gapS[gapKey(profile, next.key.profile)] ?? costs.runs.otherGapS;
    } else {
      beyond += profile === "setup" ? costs.runs.betweenRunsS : costs.runs.closeWaitS;
    }
    runsS += beyond;
  });
  return {
    flowsS,
    runsS,
    programmingS,
    stepChangesS,
    syncsS,
    totalS: flowsS + runsS + programmingS + stepChangesS,
    runs: plan.length,
    stepChanges,
  };
}

/** Pure: the estimate's total, seconds. */
export function estimateWallSeconds(def: CampaignDefinition, options: EstimateOptions = {}): number {
  return estimateLabWall(def, options).totalS;
}
