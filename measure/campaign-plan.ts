// What a campaign is (its definition) and the ordered list of runs it performs (its plan).
// Planning is pure: the same definition always gives the same plan, so a resumed campaign
// walks the runs in the order it started with, and run ids never depend on that order.
import { createHash } from "node:crypto";
import { unsafeUniformIntDistribution, xoroshiro128plus, type RandomGenerator } from "pure-rand";
import type { Family } from "../scenario/cidr.js";
import { DATAPLANES, type Dataplane, type PodRouting } from "../scenario/schema.js";
import { DEFAULT_PATH, DEFAULT_PATHS, SERVICE_PATHS, type ServicePath } from "../scenario/paths.js";
import { pathField, pathOf, type CampaignTraffic, type ProgrammingSettings, type RunKey, type RunProfile } from "./types.js";

/** How the runs of a campaign are ordered. */
export interface PlanOrder {
  /**
   * Shuffle the order of Service-count steps, the dataplane order inside each interleaved block,
   * and the (family, profile) cells inside each repetition, from `seed`.
   */
  readonly randomize: boolean;
  /**
   * 0: every run of one dataplane, then the next dataplane ("dataplane-major").
   * n > 0: within each Service count, alternate dataplanes every n repetitions.
   */
  readonly interleave: number;
}

/**
 * The comparisons a campaign is sized to answer, declared before it runs: at one profile and step,
 * every other dataplane against the baseline, in every family, on one ratio statistic. Their cells
 * get the runs the tests need (`runs`, from `design`); the report tests them apart from everything
 * else, with a multiplicity correction over them alone, and calls every other test exploratory.
 */
export interface PrimaryComparisons {
  readonly profile: RunProfile;
  readonly services: number;
  /** The ratio statistic whose rank test answers them (report.ts RATIO_DEFINITIONS), e.g. "mean". */
  readonly statistic: string;
  readonly baseline: Dataplane;
  /** Repetitions of each cell of the profile at the step (every dataplane and family); at least the campaign's runs. */
  readonly runs: number;
  /** What `runs` was computed for (statistics.ts runsForPower). */
  readonly design: {
    readonly alpha: number;
    readonly power: number;
    readonly minimumEffect: number;
    readonly runCv: number;
  };
}

/** Prefix of a deployed stack's backend name ("stack:<name>"). */
export const STACK_BACKEND_PREFIX = "stack:";

/**
 * What kind of place a campaign ran in, as a report names it: "cloud" for a deployed stack (the real
 * dataplanes, or the rehearsal of that path), otherwise the backend's own name ("lab", "loopback").
 */
export function backendKind(backend: string): string {
  return backend.startsWith(STACK_BACKEND_PREFIX) ? "cloud" : backend;
}

/** Everything that decides which runs a campaign makes and in what order; stored with the campaign. */
export interface CampaignDefinition {
  /** "loopback", or "stack:<name>" for a deployed Pulumi stack. */
  readonly backend: string;
  readonly dataplanes: readonly Dataplane[];
  readonly families: readonly Family[];
  readonly profiles: readonly RunProfile[];
  readonly services: readonly number[];
  /**
   * The Service paths measured (scenario/paths.ts), each in every cell; absent: the paper's path
   * alone. A campaign of the paper's path alone leaves it out, so its definition, id and run ids are
   * those it had before paths existed.
   */
  readonly paths?: readonly ServicePath[];
  /** Repetitions per (dataplane, family, profile, Service count) cell; the primary comparisons' cells may have more. */
  readonly runs: number;
  /** The comparisons the campaign is sized to answer; absent: every test is exploratory. */
  readonly primary?: PrimaryComparisons;
  readonly flowSeconds: number;
  /** Link cap of the measured path in Mbit/s (0: none); sets how many records a complete flow logs. */
  readonly linkMbps: number;
  readonly seed: number;
  readonly order: PlanOrder;
  /** The traffic of every profile, as the runs use it: the scenario's D-ITG profiles (plus "setup" in the lab). */
  readonly traffic: CampaignTraffic;
  /** What each run of the programming profile does; present when the campaign plans that profile. */
  readonly programming?: ProgrammingSettings;
  /**
   * The eBPF dataplane's loadBalancer.mode for remote NodePort backends where it is not Cilium's
   * default (snat): DSR runs are another campaign, never resumed into a SNAT one. Absent: snat.
   */
  readonly loadBalancerMode?: "dsr";
  /**
   * How pod traffic crossed between the nodes (testbed:podRouting), for a deployed stack's campaign
   * of paths that cross them: a tunnel and native routing are two campaigns, never resumed into one
   * another. Absent: no path crosses nodes, or the lab (native routing).
   */
  readonly podRouting?: PodRouting;
}

/** One run of the plan: its key, its deterministic id and its position in the plan. */
export interface PlannedRun {
  readonly runId: string;
  readonly index: number;
  readonly key: RunKey;
}

/** Stable JSON: keys sorted at every level, so equal definitions give equal text and equal hashes. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

function digest(text: string, hexChars: number): string {
  return createHash("sha256").update(text).digest("hex").slice(0, hexChars);
}

/**
 * The default campaign id: the backend plus a hash of the definition. Running the same command
 * again therefore finds the same campaign and resumes it; changing any planned quantity starts a new one.
 */
export function campaignIdFor(def: CampaignDefinition): string {
  const label = def.backend.replace(/[^A-Za-z0-9._-]+/g, "-");
  return `${label}-${digest(canonicalJson(def), 12)}`;
}

/**
 * A run's id: a hash of the campaign id and the RunKey fields, nothing else (not its position). The
 * path counts only when it is not the paper's, so a run of nodeport-local keeps the id it had
 * before runs had paths.
 */
export function runIdFor(campaignId: string, key: RunKey): string {
  const fields = [campaignId, key.dataplane, key.family, key.profile, String(key.services), String(key.repetition), ...(key.path !== undefined && key.path !== DEFAULT_PATH ? [key.path] : [])];
  return digest(fields.join("\n"), 24);
}

/** The paths a campaign measures: its own list, or the paper's path alone. */
export function campaignPaths(def: Pick<CampaignDefinition, "paths">): readonly ServicePath[] {
  return def.paths ?? DEFAULT_PATHS;
}

/** Repetitions of one (profile, Service count) cell of every dataplane and family: the primary comparisons' cells have their own. */
export function runsOfCell(def: Pick<CampaignDefinition, "runs" | "primary">, profile: RunProfile, services: number): number {
  const p = def.primary;
  return p && p.profile === profile && p.services === services ? Math.max(def.runs, p.runs) : def.runs;
}

/** Throws unless the primary comparisons name a profile, step and baseline the campaign runs. */
function checkPrimary(def: CampaignDefinition): void {
  const p = def.primary;
  if (!p) return;
  const bad = (key: string, value: unknown, accepted: string) => {
    throw new Error(`primary.${key}: ${JSON.stringify(value)} is not accepted; accepted: ${accepted}`);
  };
  if (!def.profiles.includes(p.profile)) bad("profile", p.profile, `one of the campaign's profiles (${def.profiles.join(", ")})`);
  if (!def.services.includes(p.services)) bad("services", p.services, `one of the campaign's Service counts (${def.services.join(", ")})`);
  // A campaign of one dataplane (a stack) shares its primary comparisons with the other stacks' campaigns.
  if (def.dataplanes.length > 1 ? !def.dataplanes.includes(p.baseline) : !DATAPLANES.includes(p.baseline)) {
    bad("baseline", p.baseline, `one of the campaign's dataplanes (${(def.dataplanes.length > 1 ? def.dataplanes : DATAPLANES).join(", ")})`);
  }
  if (!Number.isInteger(p.runs) || p.runs < 1) bad("runs", p.runs, "a whole number of runs, at least 1");
}

/** Throws unless the campaign's paths are known, listed once each, and at least one. */
function checkPaths(def: CampaignDefinition): void {
  if (def.paths === undefined) return;
  const unknown = def.paths.filter((p) => !SERVICE_PATHS.includes(p));
  if (def.paths.length === 0 || unknown.length > 0 || new Set(def.paths).size !== def.paths.length) {
    throw new Error(`paths: ${JSON.stringify(def.paths)} is not accepted; accepted: a list of distinct paths, each one of ${SERVICE_PATHS.join(", ")}`);
  }
}

/**
 * Reorders shuffled cells so that consecutive ones use different transport protocols wherever the
 * cells left allow it: at each turn the first cell, in the shuffled order, of the protocol with the
 * most cells left among those other than the previous cell's. A backend may start a run while the
 * previous one is still closing when they do not share the receiver's data socket (the lab: ITGRecv
 * holds a finished flow's socket for a second, backends/ditg-close-wait.ts).
 */
function alternatingProtocols<T>(cells: readonly T[], protocolOf: (cell: T) => string): T[] {
  const left = [...cells];
  const out: T[] = [];
  while (left.length > 0) {
    const previous = out.length > 0 ? protocolOf(out[out.length - 1]!) : undefined;
    const remaining = new Map<string, number>();
    for (const c of left) remaining.set(protocolOf(c), (remaining.get(protocolOf(c)) ?? 0) + 1);
    const candidates = [...remaining].filter(([p]) => p !== previous);
    const protocol = candidates.length > 0 ? candidates.reduce((a, b) => (b[1] > a[1] ? b : a))[0] : previous;
    const i = left.findIndex((c) => protocolOf(c) === protocol);
    out.push(left.splice(i, 1)[0]!);
  }
  return out;
}

/** Fisher-Yates with a pure-rand generator; returns a shuffled copy. */
function shuffled<T>(items: readonly T[], rng: RandomGenerator): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = unsafeUniformIntDistribution(0, i, rng);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/**
 * The ordered runs of a campaign.
 *
 * Why randomise: repetitions are autocorrelated in time (cloud neighbours, caches, conntrack
 * state, thermal drift). Sweeping Service counts in ascending order would confound the Service
 * count with the time of measurement, so a slow drift would look like a scaling effect. Shuffling
 * the steps, the dataplane order of each block and the (family, profile) order of each repetition
 * spreads drift over all cells; the seed makes the order reproducible.
 *
 * Resulting order:
 * - Service-count steps: the given order, or shuffled once (one order shared by all dataplanes,
 *   so each dataplane sees the same sequence of scale changes).
 * - interleave 0: dataplane by dataplane; within each, step by step; within each step repetition
 *   0, 1, 2, ...; within each repetition every (family, profile) cell (shuffled, then ordered to
 *   alternate transport protocols where they allow it: alternatingProtocols).
 * - interleave n: step by step; each step cut into blocks of n repetitions; each block runs every
 *   dataplane in turn. Without randomisation the dataplane order alternates A B | B A | A B ...
 *   (balanced against linear drift); with it, each block's order is drawn from the seed.
 * Only the (dataplane, Service count) pair needs a backend prepare(); families and profiles
 * change freely between consecutive runs.
 * The primary comparisons' cells have more repetitions than the others (runsOfCell): at their step
 * the repetitions beyond the campaign's runs hold those cells only, interleaved the same way.
 */
export function planCampaign(campaignId: string, def: CampaignDefinition): PlannedRun[] {
  checkPrimary(def);
  checkPaths(def);
  const rng = xoroshiro128plus(def.seed);
  const steps = def.order.randomize ? shuffled(def.services, rng) : [...def.services];
  // The path is one more dimension of the cells: every path is measured at each (dataplane, step),
  // interleaved with the families and profiles, so a drift spreads over the paths as over them.
  // Service changes are probed through the paper's NodePort (ProgrammingBackend): the programming
  // profile is one cell per family, on the paper's path, whatever other paths the campaign measures.
  const cells = campaignPaths(def).flatMap((path) =>
    def.families.flatMap((family) => def.profiles.filter((profile) => profile !== "programming" || path === DEFAULT_PATH).map((profile) => ({ family, profile, ...pathField(path) }))),
  );
  const repetitionsOf = (services: number) => Math.max(...def.profiles.map((p) => runsOfCell(def, p, services)));
  const keys: RunKey[] = [];
  const emit = (dataplane: Dataplane, services: number, repetition: number) => {
    const due = repetition < def.runs ? cells : cells.filter((c) => repetition < runsOfCell(def, c.profile, services));
    const protocolOf = (cell: { profile: RunProfile }) => def.traffic[cell.profile]?.protocol ?? "";
    for (const cell of def.order.randomize ? alternatingProtocols(shuffled(due, rng), protocolOf) : due) {
      keys.push({ dataplane, family: cell.family, profile: cell.profile, services, repetition, ...pathField(pathOf(cell)) });
    }
  };

  if (def.order.interleave === 0) {
    for (const dataplane of def.dataplanes) {
      for (const services of steps) {
        for (let r = 0; r < repetitionsOf(services); r++) emit(dataplane, services, r);
      }
    }
  } else {
    const block = def.order.interleave;
    for (const services of steps) {
      const repetitions = repetitionsOf(services);
      for (let start = 0, b = 0; start < repetitions; start += block, b++) {
        const dataplanes = def.order.randomize
          ? shuffled(def.dataplanes, rng)
          : b % 2 === 0
            ? [...def.dataplanes]
            : [...def.dataplanes].reverse();
        for (const dataplane of dataplanes) {
          for (let r = start; r < Math.min(start + block, repetitions); r++) emit(dataplane, services, r);
        }
      }
    }
  }
  return keys.map((key, index) => ({ runId: runIdFor(campaignId, key), index, key }));
}

/** The (dataplane, Service count) pair a backend must be prepared for. */
export function stepOf(key: RunKey): { dataplane: Dataplane; services: number } {
  return { dataplane: key.dataplane, services: key.services };
}

export function sameStep(a: RunKey, b: RunKey): boolean {
  return a.dataplane === b.dataplane && a.services === b.services;
}
