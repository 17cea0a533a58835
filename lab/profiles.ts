// How much of the experiment `testbed lab` runs: the Service sweep, repetitions and flow length of
// each profile, and the campaign definition they give. Pure data and pure functions.
import type { Family } from "../scenario/cidr.js";
import { DATAPLANES, DEFAULT_BASELINE, PAPER_SWEEP, scenarioSchema, type Dataplane } from "../scenario/schema.js";
import type { CampaignDefinition } from "../measure/campaign-plan.js";
import { primaryComparisons, SETUP_PRIMARY_DESIGN, type PrimaryDesign } from "../measure/primary-design.js";
import type { ProgrammingSettings, RunProfile } from "../measure/types.js";
import { campaignTraffic } from "../measure/connection-setup.js";

export const LAB_PROFILE_NAMES = ["smoke", "default", "paper"] as const;
export type LabProfileName = (typeof LAB_PROFILE_NAMES)[number];

/** The run profiles the lab measures by default: the paper's two, and connection setup. */
export const LAB_RUN_PROFILES = ["throughput", "latency", "setup"] as const satisfies readonly RunProfile[];
/** Every run profile the lab offers: the default ones and programming (Service changes, timed), which runs when asked for. */
export const LAB_PROFILE_CHOICES = [...LAB_RUN_PROFILES, "programming"] as const satisfies readonly RunProfile[];

/**
 * What each programming run does in the lab: a probe every millisecond, 100 Services at once for
 * add-100, 50 ms of probes after the first that saw a change (to count flaps), a change that does not
 * reach the packets within 15 minutes fails the run (kube-proxy's nftables full sync after a restart at 10000 Services
 * takes minutes per family on a busy host), and the cold starts timed as well (in each cell's first run).
 */
export const LAB_PROGRAMMING: ProgrammingSettings = { probesPerSecond: 1000, addMany: 100, confirmMs: 50, timeoutS: 900, coldStart: true };
export const LAB_FAMILIES = ["ipv4", "ipv6"] as const satisfies readonly Family[];

export interface LabProfile {
  readonly name: LabProfileName;
  readonly description: string;
  /** Service counts of the sweep. */
  readonly services: readonly number[];
  /** Repetitions per (dataplane, family, profile, Service count) cell. */
  readonly runs: number;
  readonly flowSeconds: number;
  /** Dataplanes alternate every this many repetitions within a Service count. */
  readonly interleave: number;
  /** New connections per second of the setup profile. */
  readonly setupConnectionsPerSecond: number;
  /** Lighter traffic than the paper's, for a profile that checks the pipeline rather than measures; undefined: the paper's rates. */
  readonly reducedRates?: ReducedRates;
  /** The wall time it is sized for on a 2-core host (lab/wall-estimate.ts estimates it), or undefined when it takes days. */
  readonly budgetMinutes?: number;
  /** The comparisons it is sized to answer, at its largest step; undefined: every test is exploratory. */
  readonly primary?: PrimaryDesign;
}

/**
 * Lighter traffic for a check of the pipeline: a cap that a busy 2-core host fills beside other work,
 * fewer packets to pace. The throughput flow keeps the paper's offered load (2000 messages of 64000
 * bytes per second): it stays above the lower cap, and a sender blocked on the full TCP socket costs
 * less CPU than one pacing below it.
 */
export interface ReducedRates {
  /** Cap of the access and datacenter links, Mbit/s (the paper: 500). */
  readonly linkMbps: number;
  /** Packets per second of the latency flow (the paper: 1000). */
  readonly latencyPacketsPerSecond: number;
}

export const LAB_PROFILES: Readonly<Record<LabProfileName, LabProfile>> = {
  smoke: {
    name: "smoke",
    description:
      "a quick end-to-end check of the pipeline at reduced rates (100 Mbit/s cap, 200 latency packets/s, 100 new connections/s): 1 and 2000 Services, 2 runs of 1 s per cell",
    services: [1, 2000],
    runs: 2,
    flowSeconds: 1,
    interleave: 1,
    setupConnectionsPerSecond: 100,
    reducedRates: { linkMbps: 100, latencyPacketsPerSecond: 200 },
    budgetMinutes: 4,
  },
  default: {
    name: "default",
    description:
      "the sweep's shape: 1, 1000, 5000 and 10000 Services, 3 runs of 2 s per cell, and the runs the primary comparisons need (connection setup at 10000 Services)",
    services: [1, 1000, 5000, 10000],
    runs: 3,
    flowSeconds: 2,
    interleave: 1,
    setupConnectionsPerSecond: 200,
    // lab/wall-estimate.ts: 9 min 36 s of flows, a second of ITGRecv's close after most D-ITG flows,
    // and kube-proxy's nftables transaction growing from 1 to 10000 Services (about 107 s).
    budgetMinutes: 16,
    primary: SETUP_PRIMARY_DESIGN,
  },
  paper: {
    name: "paper",
    description: "the paper's method: 11 Service counts (1, 1000, ..., 10000), 100 runs of 30 s per cell",
    services: PAPER_SWEEP,
    runs: 100,
    flowSeconds: 30,
    interleave: 10,
    setupConnectionsPerSecond: 200,
    primary: SETUP_PRIMARY_DESIGN,
  },
};

export function labProfile(name: string): LabProfile {
  if (!(LAB_PROFILE_NAMES as readonly string[]).includes(name)) {
    throw new Error(`--profile: ${JSON.stringify(name)} is not accepted; accepted: ${LAB_PROFILE_NAMES.join(", ")}`);
  }
  return LAB_PROFILES[name as LabProfileName];
}

/** What a lab campaign may narrow or change from its profile. */
export interface LabCampaignChoices {
  readonly dataplanes?: readonly Dataplane[];
  /** Every other dataplane is compared with this one (the primary comparisons too). Default iptables. */
  readonly baseline?: Dataplane;
  readonly families?: readonly Family[];
  readonly profiles?: readonly RunProfile[];
  readonly services?: readonly number[];
  readonly runs?: number;
  readonly flowSeconds?: number;
  /** Cap of the access and datacenter links, Mbit/s (0: none). Default: the scenario's. */
  readonly linkMbps?: number;
  readonly seed?: number;
}

/** The lab's campaign: every dataplane interleaved in a seeded random order, the scenario's D-ITG traffic plus setup, the profile's primary comparisons. */
export function labDefinition(profile: LabProfile, choices: LabCampaignChoices = {}): CampaignDefinition {
  const defaults = scenarioSchema.shape.sweep.parse(undefined);
  const traffic = scenarioSchema.shape.traffic.parse(undefined);
  const cells = {
    dataplanes: [...(choices.dataplanes ?? DATAPLANES)],
    families: [...(choices.families ?? LAB_FAMILIES)],
    profiles: [...(choices.profiles ?? LAB_RUN_PROFILES)],
    services: [...(choices.services ?? profile.services)],
  };
  const primary = primaryComparisons(profile.primary, cells, choices.baseline ?? DEFAULT_BASELINE);
  return {
    backend: "lab",
    ...cells,
    runs: choices.runs ?? profile.runs,
    ...(primary ? { primary } : {}),
    flowSeconds: choices.flowSeconds ?? profile.flowSeconds,
    linkMbps: choices.linkMbps ?? profile.reducedRates?.linkMbps ?? scenarioSchema.shape.linkMbps.parse(undefined),
    seed: choices.seed ?? defaults.seed,
    order: { randomize: true, interleave: Math.min(profile.interleave, choices.runs ?? profile.runs) },
    traffic: {
      ...campaignTraffic(traffic, profile.setupConnectionsPerSecond),
      ...(profile.reducedRates ? { latency: { ...traffic.latency, packetsPerSecond: profile.reducedRates.latencyPacketsPerSecond } } : {}),
    },
    ...(cells.profiles.includes("programming") ? { programming: LAB_PROGRAMMING } : {}),
  };
}
