// From stored runs to the paper's tables: per-cell statistics, each dataplane's ratios against a
// baseline (iptables by default) with bootstrap intervals and corrected rank tests, the paper's
// ratios beside ours, figure specs and a summary. buildReport is pure (results in, report out);
// writeReport renders the figures and writes files.
//
// Tests: the campaign's primary comparisons (campaign-plan.ts PrimaryComparisons, declared before
// it ran and sized to be powered) are one family under Holm's correction; every other rank test is
// exploratory, a second family with its own Holm correction.
//
// Unit of analysis (also stated in every report):
// - Throughput: the run. One value per run, the receiver's average bitrate over the flow (ITGDec's
//   "Average bitrate" of the decoded log); the paper's statistics are taken over the runs of a cell.
// - Latency and every other delay profile: the paper's maximum and standard deviation of latency are
//   read as per-packet statistics, as ITGDec prints them, over all packets of all runs of a cell: the
//   worst packet, and the pooled per-packet standard deviation. Packets of one run are not independent,
//   so the uncertainty still comes from runs: the bootstrap resamples whole runs and the rank test
//   compares per-run values. Per-run values (each run's mean, max, p99, ...) are reported as well.
// - Round trips are exact where a run paired its sender log with the receiver's (D-ITG B15): every
//   delay statistic then comes from the exact round trips, and the validity rows set the meter's own
//   readings of the same runs beside them (report-validity.ts). Where both ends shared one clock, the
//   receiver's one-way delays are a third view (ONE_WAY_DELAY_METRIC rows).
import path from "node:path";
import { stringify } from "csv-stringify/sync";
import { stepsReport } from "./report-steps.js";
import { DATAPLANES, DEFAULT_BASELINE, FAMILIES, type Dataplane } from "../scenario/schema.js";
import { runsOfCell, type PrimaryComparisons } from "./campaign-plan.js";
import type { Family } from "../scenario/cidr.js";
import { decodeDelayHistogram, delayPercentiles, HISTOGRAM_UNITS_PER_S } from "./ditg-log.js";
import { pathField, pathOf, type FlowSummary, type RunProfile, type RunResult, type StepRecord } from "./types.js";
import { DEFAULT_PATH, SERVICE_PATHS, type ServicePath } from "../scenario/paths.js";
import { PAPER_COMPARISON, paperRatioFor, type PaperRatio } from "./paper-reference.js";
import {
  absoluteDeviationsFromMedian,
  bootstrapRatio,
  describe,
  holmAdjust,
  iqr,
  mannWhitneyU,
  maxOf,
  medianOf,
  poolMoments,
  sampleStd,
  seedFor,
  type Description,
  type RatioInterval,
} from "./statistics.js";
import { figureSpecs, renderSvg, type FigureSpec } from "./report-figures.js";
import { hopReport } from "./report-hops.js";
import { programmingReport } from "./report-programming.js";
import { fmt, renderMarkdown } from "./report-markdown.js";
import { checkReportFolder, REPORT_MANIFEST, writeReportFolder, type ReportFile } from "./report-output.js";
import { validityRows, type ValidityRow } from "./report-validity.js";
import { cellsText, countOf, servicesText } from "./report-words.js";

/** What a profile measures. The throughput profile measures what a TCP flow carries; every other
 *  profile (latency, connection setup, ...) measures the delays of its packets. */
export type ProfileKind = "throughput" | "delay";

export function profileKind(profile: string): ProfileKind {
  return profile === "throughput" ? "throughput" : "delay";
}

/** A value taken from each run. */
export interface RunMetric {
  readonly id: string;
  readonly label: string;
  readonly unit: string;
  readonly kind: ProfileKind;
  readonly of: (s: FlowSummary) => number;
}

export const RUN_METRICS: readonly RunMetric[] = [
  { id: "throughputMbps", label: "throughput (receiver's average bitrate)", unit: "Mbit/s", kind: "throughput", of: (s) => s.bitrateKbps / 1000 },
  { id: "delayMeanMs", label: "mean delay of the run", unit: "ms", kind: "delay", of: (s) => s.delayMeanS * 1e3 },
  { id: "delayStdMs", label: "per-packet delay std of the run (population)", unit: "ms", kind: "delay", of: (s) => s.delayStdS * 1e3 },
  { id: "delayP99Ms", label: "p99 delay of the run", unit: "ms", kind: "delay", of: (s) => s.p99S * 1e3 },
  { id: "delayMaxMs", label: "max delay of the run", unit: "ms", kind: "delay", of: (s) => s.delayMaxS * 1e3 },
  { id: "jitterMs", label: "jitter of the run (mean |consecutive difference|)", unit: "ms", kind: "delay", of: (s) => s.jitterS * 1e3 },
  {
    id: "lossPercent",
    label: "packets lost in the run",
    unit: "%",
    kind: "delay",
    of: (s) => (s.packets + s.dropped > 0 ? (100 * s.dropped) / (s.packets + s.dropped) : Number.NaN),
  },
];

/** Name of the pooled per-packet delay row of a delay cell. */
export const PACKET_DELAY_METRIC = "packetDelayMs";
/** Name of the pooled one-way delay row of a delay cell whose runs kept the receiver's one-way delays. */
export const ONE_WAY_DELAY_METRIC = "oneWayDelayMs";

/** One group of runs: a step (Service count) of one profile, family and dataplane, on one Service path. */
export interface CellKey {
  readonly profile: string;
  readonly family: Family;
  readonly services: number;
  readonly dataplane: Dataplane;
  /** The Service path (RunKey.path); absent: the paper's, nodeport-local. */
  readonly path?: ServicePath;
}

/** Whether a report's cells go beyond the paper's path: its CSVs then carry a `path` column and its words name the path. */
export function hasPaths(keys: readonly { readonly path?: ServicePath }[]): boolean {
  return keys.some((k) => pathOf(k) !== DEFAULT_PATH);
}

/** The paths cells hold, in the order of SERVICE_PATHS. */
export function pathsOf(keys: readonly { readonly path?: ServicePath }[]): ServicePath[] {
  return SERVICE_PATHS.filter((p) => keys.some((k) => pathOf(k) === p));
}

export interface CellCount extends CellKey {
  /** Runs with status ok and a decoded summary: the ones analysed. */
  readonly ok: number;
  readonly failed: number;
  /** Runs marked ok but without a summary, left out. */
  readonly withoutSummary: number;
}

/** One row of the full statistics table. */
export interface CellStatistics extends CellKey, Description {
  readonly metric: string;
  readonly label: string;
  readonly unit: string;
  /** What one observation is: a run, or a packet (pooled over the cell's runs). */
  readonly observation: "run" | "packet";
  /** How the standard deviation divides: "sample" (n - 1) or "population" (n). */
  readonly stdKind: "sample" | "population";
  /** Runs analysed in this cell (for packet rows, the runs whose packets are pooled). */
  readonly runs: number;
}

/** The ratios computed for each pair of cells that differ only in the dataplane. */
export interface RatioDefinition {
  readonly statistic: "mean" | "std" | "max";
  readonly kind: ProfileKind;
  /**
   * Whether the percentile bootstrap interval can be trusted. Not for a maximum: a resampled
   * maximum can never exceed the sample's, so the interval hugs the estimate and covers the true
   * ratio far less often than stated; the reading then comes from the robust companion.
   */
  readonly intervalReliable: boolean;
  /** What the statistic is, in words for the report. */
  readonly describes: string;
  /** The unit of `value` and of the robust companion's. */
  readonly unit: "ms" | "Mbit/s";
  readonly value: (runs: FlowSummary[]) => number;
  readonly robust: { readonly name: string; readonly describes: string; readonly value: (runs: FlowSummary[]) => number };
  /** The per-run values the rank test compares, and what a positive effect means. */
  readonly test: { readonly describes: string; readonly values: (runs: FlowSummary[]) => number[] };
}

const throughput = (runs: FlowSummary[]) => runs.map((s) => s.bitrateKbps / 1000);
const ms = (seconds: number) => seconds * 1e3;

export const RATIO_DEFINITIONS: readonly RatioDefinition[] = [
  // Not one of the paper's ratios: the typical cost itself. For the connection-setup profile this is
  // where a linear walk of the nat rules shows as the Service count grows.
  {
    statistic: "mean",
    kind: "delay",
    intervalReliable: true,
    describes: "mean per-packet delay pooled over all packets of all runs",
    unit: "ms",
    value: (runs) => ms(poolMoments(runs.map((s) => ({ n: s.packets, mean: s.delayMeanS, std: s.delayStdS }))).mean),
    robust: {
      name: "median run median",
      describes: "median over runs of each run's median per-packet delay",
      value: (runs) => ms(medianOf(runs.map((s) => s.p50S))),
    },
    test: { describes: "each run's mean per-packet delay", values: (runs) => runs.map((s) => ms(s.delayMeanS)) },
  },
  {
    statistic: "std",
    kind: "throughput",
    intervalReliable: true,
    describes: "sample standard deviation of the per-run throughput across runs",
    unit: "Mbit/s",
    value: (runs) => sampleStd(throughput(runs)),
    robust: { name: "IQR", describes: "interquartile range of the per-run throughput", value: (runs) => iqr(throughput(runs)) },
    test: {
      describes: "absolute deviations of each run's throughput from its group's median (a rank test of spread)",
      values: (runs) => absoluteDeviationsFromMedian(throughput(runs)),
    },
  },
  {
    statistic: "max",
    kind: "delay",
    intervalReliable: false,
    describes: "maximum per-packet delay over all packets of all runs (the worst packet)",
    unit: "ms",
    value: (runs) => ms(maxOf(runs.map((s) => s.delayMaxS))),
    robust: {
      name: "median run p99",
      describes: "median over runs of each run's per-packet p99 delay",
      value: (runs) => ms(medianOf(runs.map((s) => s.p99S))),
    },
    test: { describes: "each run's maximum per-packet delay", values: (runs) => runs.map((s) => ms(s.delayMaxS)) },
  },
  {
    statistic: "std",
    kind: "delay",
    intervalReliable: true,
    describes: "per-packet delay standard deviation pooled over all packets of all runs (population)",
    unit: "ms",
    value: (runs) => ms(poolMoments(runs.map((s) => ({ n: s.packets, mean: s.delayMeanS, std: s.delayStdS }))).std),
    robust: {
      name: "median run std",
      describes: "median over runs of each run's per-packet delay standard deviation",
      value: (runs) => ms(medianOf(runs.map((s) => s.delayStdS))),
    },
    test: { describes: "each run's per-packet delay standard deviation", values: (runs) => runs.map((s) => ms(s.delayStdS)) },
  },
];

/** What an interval says of a dataplane against the baseline: lower or higher than the baseline. */
export type Verdict = "lower" | "higher" | "no difference shown" | "not estimable";

/** Whether a test is one of the campaign's declared primary comparisons, or exploratory. */
export type TestRole = "primary" | "exploratory";
export const TEST_ROLES: readonly TestRole[] = ["primary", "exploratory"];

/** One dataplane against the baseline, for one statistic of one step: dataplane/baseline. */
export interface RatioRow {
  /** The Service path (RunKey.path); absent: the paper's, nodeport-local. */
  readonly path?: ServicePath;
  readonly profile: string;
  readonly family: Family;
  readonly services: number;
  readonly statistic: RatioDefinition["statistic"];
  readonly describes: string;
  /** The numerator. */
  readonly dataplane: Dataplane;
  /** The denominator. */
  readonly baseline: Dataplane;
  /** Runs analysed of the dataplane and of the baseline. */
  readonly n: number;
  readonly nBaseline: number;
  /** The statistic of the dataplane's cell and of the baseline's, whose quotient the ratio estimates, in `unit`. */
  readonly value: number;
  readonly baselineValue: number;
  readonly unit: string;
  readonly ratio: RatioInterval;
  /** From the CI: "no difference shown" when it contains 1; "lower" when the dataplane's value is below the baseline's. */
  readonly verdict: Verdict;
  /** False for the maximum (see RatioDefinition.intervalReliable): read robustVerdict instead. */
  readonly intervalReliable: boolean;
  readonly robustName: string;
  readonly robust: RatioInterval;
  readonly robustVerdict: Verdict;
  readonly testDescribes: string;
  readonly u: number;
  readonly pValue: number;
  /** Primary: one of the comparisons the campaign declared and sized; exploratory: every other test. */
  readonly role: TestRole;
  /** Holm-adjusted over every test of the same role. */
  readonly pHolm: number;
  readonly testMethod: "exact" | "normal";
  /** Cliff's delta of the dataplane against the baseline on the tested values: > 0 means the dataplane tends higher. */
  readonly cliffsDelta: number;
  readonly significant: boolean;
  readonly paper?: PaperRatio;
  /**
   * The same ratio read from the round-trip meter's own delays (what ITGDec prints from the sender
   * log, as the paper read them), when every run of both cells kept them (D-ITG B15).
   */
  readonly meterRatio?: number;
}

export interface ReportSettings {
  readonly seed: number;
  readonly resamples: number;
  readonly confidence: number;
  readonly alpha: number;
  /** Runs per cell below which the report warns. */
  readonly minRuns: number;
  /** Runs each cell should have (from the campaign plan), for the completeness check. */
  readonly plannedRunsPerCell?: number;
  readonly campaignId?: string;
  readonly backend?: string;
  /** Every other dataplane is compared with this one. */
  readonly baseline: Dataplane;
  /** The campaign's declared primary comparisons. */
  readonly primary?: PrimaryComparisons;
}

export type ReportOptions = Pick<ReportSettings, "seed" | "resamples"> &
  Partial<Omit<ReportSettings, "seed" | "resamples">> & {
    /** The paper's published ratios (loadPaperReference()); none means no paper column. */
    readonly paper?: readonly PaperRatio[];
    /** When each prepared step became measurable (the store's step records). */
    readonly steps?: readonly StepRecord[];
  };

export interface DelaySourceCount {
  readonly profile: string;
  readonly paired: number;
  readonly sender: number;
  readonly unrecorded: number;
}

export interface ReportTable {
  readonly file: string;
  readonly title: string;
  readonly csv: string;
}

export interface Report {
  readonly settings: ReportSettings;
  readonly counts: readonly CellCount[];
  readonly cells: readonly CellStatistics[];
  readonly ratios: readonly RatioRow[];
  /** The round-trip meter's readings against the exact round trips, per cell (report-validity.ts). */
  readonly validity: readonly ValidityRow[];
  /** Per delay profile: how many analysed runs have exact (paired) delays, the log's own, or none recorded (schema 1). */
  readonly delaySources: readonly DelaySourceCount[];
  /** Rank tests each Holm correction counts: the primary comparisons, and every other (exploratory) test. */
  readonly tests: Readonly<Record<TestRole, number>>;
  readonly warnings: readonly string[];
  readonly tables: readonly ReportTable[];
  readonly figures: readonly FigureSpec[];
  /** "Where the delay comes from" (report-hops.ts): its lines of report.md, when runs carry hop probes. */
  readonly hops?: readonly string[];
  /** "Programming latency" (report-programming.ts): its lines of report.md, when the campaign made Service changes. */
  readonly programming?: readonly string[];
  /** "When each step became measurable" (report-steps.ts): its lines of report.md, when steps were recorded. */
  readonly steps?: readonly string[];
  readonly markdown: string;
}

export class ReportError extends Error {
  override name = "ReportError";
}

// ---------------------------------------------------------------------------------------------

const cellId = (k: Omit<CellKey, "dataplane"> & { dataplane?: Dataplane }) =>
  [k.profile, k.family, k.services, k.dataplane ?? "", pathOf(k)].join("/");

/** Throughput first, then latency, then other profiles by name. */
function profileOrder(a: string, b: string): number {
  const rank = (p: string) => (p === "throughput" ? 0 : p === "latency" ? 1 : 2);
  return rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0);
}

function compareKeys(a: CellKey, b: CellKey): number {
  return (
    SERVICE_PATHS.indexOf(pathOf(a)) - SERVICE_PATHS.indexOf(pathOf(b)) ||
    profileOrder(a.profile, b.profile) ||
    FAMILIES.indexOf(a.family) - FAMILIES.indexOf(b.family) ||
    a.services - b.services ||
    DATAPLANES.indexOf(a.dataplane) - DATAPLANES.indexOf(b.dataplane)
  );
}

interface Cell {
  readonly key: CellKey;
  readonly runs: RunResult[];
  failed: number;
  withoutSummary: number;
}

function groupCells(results: readonly RunResult[]): Cell[] {
  const cells = new Map<string, Cell>();
  for (const r of results) {
    const key: CellKey = { profile: r.profile, family: r.family, services: r.services, dataplane: r.dataplane, ...pathField(pathOf(r)) };
    const id = cellId(key);
    let cell = cells.get(id);
    if (!cell) {
      cell = { key, runs: [], failed: 0, withoutSummary: 0 };
      cells.set(id, cell);
    }
    if (r.status !== "ok") cell.failed++;
    else if (!r.summary) cell.withoutSummary++;
    else cell.runs.push(r);
  }
  // Runs in repetition order, so the bootstrap draws the same runs whatever order the store returns.
  for (const cell of cells.values()) cell.runs.sort((a, b) => a.repetition - b.repetition || (a.runId < b.runId ? -1 : a.runId > b.runId ? 1 : 0));
  return [...cells.values()].sort((a, b) => compareKeys(a.key, b.key));
}

const summaries = (cell: Cell | undefined) => (cell ? cell.runs.map((r) => r.summary!) : []);

function cellStatistics(cell: Cell): CellStatistics[] {
  const kind = profileKind(cell.key.profile);
  const runs = summaries(cell);
  if (runs.length === 0) return [];
  const rows: CellStatistics[] = [];
  for (const metric of RUN_METRICS.filter((m) => m.kind === kind)) {
    const values = runs.map(metric.of).filter((v) => !Number.isNaN(v));
    if (values.length === 0) continue;
    rows.push({
      ...cell.key,
      metric: metric.id,
      label: metric.label,
      unit: metric.unit,
      observation: "run",
      stdKind: "sample",
      runs: runs.length,
      ...describe(values),
    });
  }
  if (kind === "delay") {
    rows.push(packetDelayStatistics(cell.key, cell.runs.map((r) => ({ summary: r.summary!, ...(r.histogram ? { histogram: r.histogram } : {}) })), PACKET_DELAY_METRIC, "per-packet delay, all packets of all runs"));
    const oneWay = cell.runs.map((r) => r.delayViews?.oneWay);
    if (oneWay.every((v) => v !== undefined)) {
      rows.push(packetDelayStatistics(cell.key, oneWay, ONE_WAY_DELAY_METRIC, "one-way delay sender -> receiver (one shared clock), all packets of all runs"));
    }
  }
  return rows;
}

/** One run's delays in one reading: its summary and histogram. */
interface DelaySample {
  readonly summary: FlowSummary;
  readonly histogram?: string;
}

/**
 * Per-packet delay over all packets of the cell's runs, in one reading (the runs' summaries, or their
 * one-way delays). Count, min, max, mean and std are exact (from each run's summary); median,
 * quartiles and tail percentiles come from the merged HDR histograms (nearest rank, within 0.1%), and
 * are NaN unless every run carries a histogram.
 */
function packetDelayStatistics(key: CellKey, samples: readonly DelaySample[], metric: string, label: string): CellStatistics {
  const runs = samples.map((s) => s.summary);
  const pooled = poolMoments(runs.map((s) => ({ n: s.packets, mean: s.delayMeanS, std: s.delayStdS })));
  let quantiles = { p25: Number.NaN, p50: Number.NaN, p75: Number.NaN, p99: Number.NaN, p999: Number.NaN };
  if (samples.every((r) => r.histogram !== undefined)) {
    const merged = decodeDelayHistogram(samples[0]!.histogram!);
    for (const r of samples.slice(1)) merged.add(decodeDelayHistogram(r.histogram!));
    if (merged.totalCount > 0) {
      const p = delayPercentiles(merged);
      const at = (q: number) => (merged.getValueAtPercentile(q) / HISTOGRAM_UNITS_PER_S) * 1e3;
      quantiles = { p25: at(25), p50: p.p50S * 1e3, p75: at(75), p99: p.p99S * 1e3, p999: p.p999S * 1e3 };
    }
  }
  return {
    ...key,
    metric,
    label,
    unit: "ms",
    observation: "packet",
    stdKind: "population",
    runs: runs.length,
    n: pooled.n,
    min: ms(Math.min(...runs.map((s) => s.delayMinS))),
    max: ms(Math.max(...runs.map((s) => s.delayMaxS))),
    mean: ms(pooled.mean),
    median: quantiles.p50,
    std: ms(pooled.std),
    p25: quantiles.p25,
    p75: quantiles.p75,
    p99: quantiles.p99,
    p999: quantiles.p999,
  };
}

function verdictOf(ci: RatioInterval): Verdict {
  if (Number.isNaN(ci.low) || Number.isNaN(ci.high)) return "not estimable";
  if (ci.low > 1) return "higher";
  if (ci.high < 1) return "lower";
  return "no difference shown";
}

type RatioDraft = Omit<RatioRow, "pHolm" | "significant">;

/** Whether a comparison is one the campaign declared primary. */
export function isPrimary(
  row: Pick<RatioRow, "profile" | "services" | "statistic" | "baseline">,
  primary: Pick<PrimaryComparisons, "profile" | "services" | "statistic" | "baseline"> | undefined,
): boolean {
  return primary !== undefined && row.profile === primary.profile && row.services === primary.services && row.statistic === primary.statistic && row.baseline === primary.baseline;
}

/** A delay ratio as the round-trip meter reads it (ITGDec's reading of each run), when every run of both cells kept it. */
function meterRatioOf(def: RatioDefinition, numerator: Cell, denominator: Cell): number | undefined {
  if (def.kind !== "delay") return undefined;
  const meter = (cell: Cell) => cell.runs.map((r) => r.delayViews?.itgdec?.summary);
  const a = meter(numerator);
  const b = meter(denominator);
  if (!a.every((s) => s !== undefined) || !b.every((s) => s !== undefined)) return undefined;
  return def.value(a as FlowSummary[]) / def.value(b as FlowSummary[]);
}

function ratioRows(cells: Cell[], settings: ReportSettings, paper: readonly PaperRatio[], warnings: string[]): RatioDraft[] {
  const byId = new Map(cells.map((c) => [cellId(c.key), c]));
  const steps = new Map<string, Omit<CellKey, "dataplane">>();
  for (const c of cells) steps.set(cellId({ ...c.key, dataplane: undefined }), { ...c.key });
  const { baseline } = settings;
  // Every dataplane the results hold is compared at every step; a missing cell is named in a warning.
  const compared = DATAPLANES.filter((d) => d !== baseline && cells.some((c) => c.key.dataplane === d));
  const rows: RatioDraft[] = [];
  /** The cells with no ratio against the baseline: one warning names them all. */
  const missing: CellKey[] = [];
  for (const step of steps.values()) {
    const baseCell = byId.get(cellId({ ...step, dataplane: baseline }));
    const base = summaries(baseCell);
    for (const dataplane of compared) {
      const cell = byId.get(cellId({ ...step, dataplane }));
      const runs = summaries(cell);
      if (runs.length < 2 || base.length < 2) {
        missing.push({ ...step, dataplane });
        continue;
      }
      for (const def of RATIO_DEFINITIONS.filter((d) => d.kind === profileKind(step.profile))) {
        // The paper's path keeps the seed it had before paths, so its intervals do not move.
        const key = `${step.profile}/${step.family}/${step.services}/${def.statistic}/${dataplane}/${baseline}${step.path ? `/${step.path}` : ""}`;
        const boot = { resamples: settings.resamples, confidence: settings.confidence };
        const ratio = bootstrapRatio(runs, base, def.value, { ...boot, seed: seedFor(settings.seed, key) });
        const robust = bootstrapRatio(runs, base, def.robust.value, { ...boot, seed: seedFor(settings.seed, `${key}/robust`) });
        const test = mannWhitneyU(def.test.values(runs), def.test.values(base));
        // The paper measured its own path alone: no published ratio beside another path's.
        const published = pathOf(step) === DEFAULT_PATH ? paperRatioFor(paper, { ...step, statistic: def.statistic, dataplane, baseline }) : undefined;
        const meterRatio = meterRatioOf(def, cell!, baseCell!);
        const comparison = { ...step, statistic: def.statistic, dataplane, baseline };
        rows.push({
          ...comparison,
          describes: def.describes,
          n: runs.length,
          nBaseline: base.length,
          value: def.value(runs),
          baselineValue: def.value(base),
          unit: def.unit,
          ratio,
          verdict: verdictOf(ratio),
          intervalReliable: def.intervalReliable,
          robustName: def.robust.name,
          robust,
          robustVerdict: verdictOf(robust),
          testDescribes: def.test.describes,
          u: test.u,
          pValue: test.pValue,
          role: isPrimary(comparison, settings.primary) ? "primary" : "exploratory",
          testMethod: test.method,
          cliffsDelta: test.cliffsDelta,
          ...(published ? { paper: published } : {}),
          ...(meterRatio !== undefined ? { meterRatio } : {}),
        });
      }
    }
  }
  if (missing.length > 0) {
    warnings.push(
      `no ratio against ${baseline} for ${countOf(missing.length, "group")}: a ratio needs at least 2 analysed runs of the group and of ${baseline} at its step, and these or ${baseline} have fewer (Runs analysed per group counts them): ${cellsText(missing)}`,
    );
  }
  return rows;
}

/**
 * The runs a cell needs before the report trusts its spreads, tails and intervals: the campaign's power analysis's
 * count for a primary comparison's cell (its test was sized for that many), the general threshold for every other.
 */
function runsNeeded(c: CellKey, settings: ReportSettings): { runs: number; why: string } {
  const p = settings.primary;
  return p !== undefined && c.profile === p.profile && c.services === p.services
    ? { runs: p.runs, why: "the power analysis sized these primary cells for" }
    : { runs: settings.minRuns, why: "stable spreads, tails and intervals need" };
}

/** Cells grouped by a count, one group per distinct value in ascending order. */
function byCount<C extends CellKey>(cells: readonly C[], count: (c: C) => number): { n: number; cells: C[] }[] {
  return [...new Set(cells.map(count))].sort((a, b) => a - b).map((n) => ({ n, cells: cells.filter((c) => count(c) === n) }));
}

function countWarnings(counts: CellCount[], settings: ReportSettings): string[] {
  const warnings: string[] = [];
  const failed = counts.reduce((s, c) => s + c.failed, 0);
  if (failed > 0) {
    const where = byCount(counts.filter((c) => c.failed > 0), (c) => c.failed).map(
      (g) => `${g.n} in ${g.cells.length === 1 ? "1 group" : `each of ${g.cells.length} groups`} (${cellsText(g.cells)})`,
    );
    warnings.push(`${countOf(failed, "failed run")} excluded: ${where.join("; ")}`);
  }
  const unsummarised = counts.reduce((s, c) => s + c.withoutSummary, 0);
  if (unsummarised > 0) {
    warnings.push(`${countOf(unsummarised, "run")} marked ok but without a decoded summary excluded (${cellsText(counts.filter((c) => c.withoutSummary > 0))})`);
  }
  // One line per threshold and run count, the cells named by what they span: a short profile makes every group small.
  const few = counts.map((c) => ({ ...c, needed: runsNeeded(c, settings) })).filter((c) => c.ok < c.needed.runs);
  for (const why of [...new Set(few.map((c) => c.needed.why))]) {
    for (const threshold of byCount(few.filter((c) => c.needed.why === why), (c) => c.needed.runs)) {
      const groups = byCount(threshold.cells, (c) => c.ok);
      const part = (g: (typeof groups)[number], first: boolean) =>
        `${countOf(g.cells.length, "group")} with ${first ? countOf(g.n, "analysed run") : g.n} (${cellsText(g.cells)})`;
      warnings.push(
        groups.length === 1
          ? `too few runs: ${countOf(groups[0]!.cells.length, "group")} with ${countOf(groups[0]!.n, "analysed run")}, below the ${threshold.n} ${why} (${cellsText(groups[0]!.cells)})`
          : `too few runs: ${countOf(threshold.cells.length, "group")} below the ${threshold.n} ${why}: ${groups.map((g, i) => part(g, i === 0)).join("; ")}`,
      );
    }
  }
  const incomplete = counts
    .map((c) => ({
      ...c,
      has: c.ok + c.failed + c.withoutSummary,
      planned:
        settings.plannedRunsPerCell === undefined
          ? Infinity
          : runsOfCell({ runs: settings.plannedRunsPerCell, ...(settings.primary ? { primary: settings.primary } : {}) }, c.profile as RunProfile, c.services),
    }))
    .filter((c) => c.has < c.planned);
  for (const planned of byCount(incomplete, (c) => c.planned)) {
    for (const g of byCount(planned.cells, (c) => c.has)) {
      warnings.push(`incomplete: ${countOf(g.cells.length, "group")} with results for ${g.n} of ${countOf(planned.n, "planned run")} (${cellsText(g.cells)})`);
    }
  }
  return warnings;
}

/** The declared primary comparisons this report cannot test as declared. */
function primaryWarnings(drafts: readonly RatioDraft[], settings: ReportSettings, measured: readonly Dataplane[]): string[] {
  const p = settings.primary;
  if (!p) return [];
  if (p.baseline !== settings.baseline) {
    return [`the campaign declared its primary comparisons against ${p.baseline}; this report compares against ${settings.baseline}, so every test here is exploratory`];
  }
  const tested = drafts.filter((r) => r.role === "primary");
  // Declared per path: every path the report holds has its own primary comparisons.
  const paths = pathsOf(drafts);
  const expected = measured.filter((d) => d !== p.baseline).length * FAMILIES.filter((f) => drafts.some((r) => r.family === f)).length * Math.max(1, paths.length);
  return tested.length < expected
    ? [`only ${tested.length} of ${expected} primary comparisons (${p.profile} at ${servicesText(p.services)}, ${p.statistic}, each dataplane against ${p.baseline}, per family${paths.length > 1 ? " and path" : ""}) could be tested: a cell lacks runs`]
    : [];
}

function dataWarnings(cells: Cell[]): string[] {
  const warnings: string[] = [];
  const undated = cells.filter((c) => profileKind(c.key.profile) === "delay").flatMap((c) => c.runs.filter((r) => r.delaySource === undefined));
  if (undated.length > 0) {
    warnings.push(
      `${countOf(undated.length, "delay run")} ${undated.length === 1 ? "was" : "were"} stored before the store kept where their delays come from (results store schema 1): their round trips are the meter's own, as ITGDec reads ITGSend's log, not exact (D-ITG B15); no validity rows for them`,
    );
  }
  const delayCells = cells.filter((c) => profileKind(c.key.profile) === "delay" && c.runs.length > 0);
  const noHistogram = delayCells.filter((c) => c.runs.some((r) => r.histogram === undefined));
  if (noHistogram.length > 0) {
    const runs = noHistogram.reduce((n, c) => n + c.runs.filter((r) => r.histogram === undefined).length, 0);
    warnings.push(`${countOf(runs, "run")} without a delay histogram, in ${countOf(noHistogram.length, "group")} (${cellsText(noHistogram.map((c) => c.key))}): their pooled per-packet percentiles are left out`);
  }
  const negative = delayCells.filter((c) => c.runs.some((r) => r.summary!.delayMinS < 0));
  if (negative.length > 0) {
    warnings.push(`negative one-way delays in ${countOf(negative.length, "group")} (${cellsText(negative.map((c) => c.key))}): sender and receiver clocks are not synchronised; use the rttm meter`);
  }
  return warnings;
}

function delaySourceCounts(cells: Cell[]): DelaySourceCount[] {
  const counts = new Map<string, DelaySourceCount>();
  for (const c of cells) {
    if (profileKind(c.key.profile) !== "delay") continue;
    const n = counts.get(c.key.profile) ?? { profile: c.key.profile, paired: 0, sender: 0, unrecorded: 0 };
    counts.set(c.key.profile, {
      ...n,
      paired: n.paired + c.runs.filter((r) => r.delaySource === "paired").length,
      sender: n.sender + c.runs.filter((r) => r.delaySource === "sender").length,
      unrecorded: n.unrecorded + c.runs.filter((r) => r.delaySource === undefined).length,
    });
  }
  return [...counts.values()];
}

export function buildReport(results: readonly RunResult[], options: ReportOptions): Report {
  const settings: ReportSettings = {
    seed: options.seed,
    resamples: options.resamples,
    confidence: options.confidence ?? 0.95,
    alpha: options.alpha ?? 0.05,
    minRuns: options.minRuns ?? 20,
    ...(options.plannedRunsPerCell !== undefined ? { plannedRunsPerCell: options.plannedRunsPerCell } : {}),
    ...(options.campaignId !== undefined ? { campaignId: options.campaignId } : {}),
    ...(options.backend !== undefined ? { backend: options.backend } : {}),
    baseline: options.baseline ?? DEFAULT_BASELINE,
    ...(options.primary !== undefined ? { primary: options.primary } : {}),
  };
  if (!Number.isInteger(settings.resamples) || settings.resamples < 1) {
    throw new ReportError(`resamples ${settings.resamples}; accepted: a positive integer (2000 or more for a stable 95% interval)`);
  }
  if (!Number.isInteger(settings.seed)) throw new ReportError(`seed ${settings.seed}; accepted: an integer`);
  if (results.length === 0) throw new ReportError("no runs to report");
  const measured = DATAPLANES.filter((d) => results.some((r) => r.dataplane === d));
  if (!measured.includes(settings.baseline)) {
    throw new ReportError(`baseline ${JSON.stringify(settings.baseline)} has no run in these results; accepted: a dataplane they measured (${measured.join(", ")})`);
  }

  // Programming runs have no flow to describe: report-programming.ts reports their changes.
  const cells = groupCells(results.filter((r) => r.profile !== "programming"));
  const counts: CellCount[] = cells.map((c) => ({ ...c.key, ok: c.runs.length, failed: c.failed, withoutSummary: c.withoutSummary }));
  const warnings = countWarnings(counts, settings);
  if (settings.resamples < 2000) warnings.push(`${settings.resamples} bootstrap resamples; intervals from fewer than 2000 are imprecise`);
  warnings.push(...dataWarnings(cells));

  const statistics = cells.flatMap(cellStatistics);
  const drafts = ratioRows(cells, settings, options.paper ?? [], warnings);
  warnings.push(...primaryWarnings(drafts, settings, measured));
  // Holm within each role: the primary comparisons alone, and every exploratory test together.
  const pHolm = new Map<RatioDraft, number>();
  for (const role of TEST_ROLES) {
    const family = drafts.filter((r) => r.role === role);
    holmAdjust(family.map((r) => r.pValue)).forEach((p, i) => pHolm.set(family[i]!, p));
  }
  const ratios: RatioRow[] = drafts.map((r) => ({ ...r, pHolm: pHolm.get(r)!, significant: pHolm.get(r)! < settings.alpha }));
  const tests = Object.fromEntries(TEST_ROLES.map((role) => [role, ratios.filter((r) => r.role === role && !Number.isNaN(r.pValue)).length])) as Record<TestRole, number>;

  const validity = validityRows(cells, RATIO_DEFINITIONS, settings);
  const tables = reportTables(statistics, ratios, validity, options.paper ?? []);
  // One set of figures per path; the paper's path keeps its files' names.
  const figures = pathsOf(statistics).flatMap((p) =>
    figureSpecs(statistics.filter((c) => pathOf(c) === p), ratios.filter((r) => pathOf(r) === p)).map((f) =>
      p === DEFAULT_PATH ? f : { ...f, file: `${p}-${f.file}`, title: `${p}: ${f.title}` },
    ),
  );
  const hops = hopReport(results, { fmt, number: formatNumber });
  if (hops) {
    tables.push({ file: "hops.csv", title: `Where the delay comes from: each section of the path per ${hasPaths(results) ? "Service path, " : ""}dataplane, family and Service count (seconds)`, csv: hops.csv });
    figures.push(...hops.figures);
  }
  const programming = programmingReport(results, { fmt, number: formatNumber });
  if (programming) {
    tables.push(...programming.tables);
    figures.push(...programming.figures);
  }
  const steps = stepsReport(options.steps ?? []);
  if (steps) tables.push({ file: "steps.csv", title: "When each step became measurable, and the Services its dataplane held per family", csv: steps.csv });
  const partial = {
    settings, counts, cells: statistics, ratios, validity, delaySources: delaySourceCounts(cells), tests, warnings, tables, figures,
    ...(hops ? { hops: hops.markdown } : {}),
    ...(programming ? { programming: programming.markdown } : {}),
    ...(steps ? { steps: steps.markdown } : {}),
  };
  return { ...partial, markdown: renderMarkdown(partial) };
}

// ---------------------------------------------------------------------------------------------
// CSV tables

/** Six significant digits; empty for a missing or undefined value. */
export function formatNumber(x: number | undefined): string {
  if (x === undefined || Number.isNaN(x)) return "";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  return String(Number(x.toPrecision(6)));
}

const csvOf = (header: string[], rows: (string | number | undefined)[][]) =>
  stringify([header, ...rows.map((r) => r.map((v) => (typeof v === "number" ? formatNumber(v) : (v ?? ""))))]);

function reportTables(cells: CellStatistics[], ratios: RatioRow[], validity: readonly ValidityRow[], paper: readonly PaperRatio[]): ReportTable[] {
  // A `path` column first where the cells go beyond the paper's path; a report of that path alone keeps its columns.
  const withPath = hasPaths(cells);
  const csv = (header: string[], rows: (string | number | undefined)[][], paths: readonly { path?: ServicePath }[]) =>
    withPath ? csvOf(["path", ...header], rows.map((r, i) => [pathOf(paths[i]!), ...r])) : csvOf(header, rows);
  const tables: ReportTable[] = [
    {
      file: "cells.csv",
      title: `Statistics of every cell (${withPath ? "path, " : ""}profile, family, Service count, dataplane) and metric`,
      csv: csv(
        ["profile", "family", "services", "dataplane", "metric", "unit", "observation", "runs", "n", "min", "max", "mean", "median", "std", "std_kind", "p25", "p75", "p99", "p999"],
        cells.map((c) => [c.profile, c.family, c.services, c.dataplane, c.metric, c.unit, c.observation, c.runs, c.n, c.min, c.max, c.mean, c.median, c.std, c.stdKind, c.p25, c.p75, c.p99, c.p999]),
        cells,
      ),
    },
    {
      file: "ratios.csv",
      title: "Each dataplane's ratios against the baseline with bootstrap intervals, rank tests (primary or exploratory, Holm-adjusted within each) and the paper's ratio",
      csv: csv(
        [
          "profile", "family", "services", "statistic", "dataplane", "baseline", "n", "n_baseline", "ratio", "ci_low", "ci_high", "verdict", "interval_reliable",
          "robust_statistic", "robust_ratio", "robust_ci_low", "robust_ci_high", "robust_verdict",
          "u", "p_value", "role", "p_holm", "test_method", "cliffs_delta", "significant", "paper_table", "paper_ratio", "paper_in_ci", "meter_ratio",
        ],
        ratios.map((r) => [
          r.profile, r.family, r.services, r.statistic, r.dataplane, r.baseline, r.n, r.nBaseline, r.ratio.estimate, r.ratio.low, r.ratio.high, r.verdict, String(r.intervalReliable),
          r.robustName, r.robust.estimate, r.robust.low, r.robust.high, r.robustVerdict,
          r.u, r.pValue, r.role, r.pHolm, r.testMethod, r.cliffsDelta, String(r.significant), r.paper?.table, r.paper?.ratio,
          r.paper ? String(r.paper.ratio >= r.ratio.low && r.paper.ratio <= r.ratio.high) : undefined, r.meterRatio,
        ]),
        ratios,
      ),
    },
  ];
  if (validity.length > 0) {
    tables.push({
      file: "validity.csv",
      title: "The round-trip meter's readings (ITGDec's, and without B15's signature records) against the exact round trips, per cell",
      csv: csv(
        ["profile", "family", "services", "dataplane", "reading", "statistic", "runs", "records", "signature_records", "runs_with_signature", "exact_ms", "meter_ms", "ratio", "ci_low", "ci_high"],
        validity.map((v) => [
          v.profile, v.family, v.services, v.dataplane, v.reading, v.statistic, v.runs, v.records, v.signatureRecords, v.runsWithSignature, v.exactMs, v.meterMs, v.ratio.estimate, v.ratio.low, v.ratio.high,
        ]),
        validity,
      ),
    });
  }
  // The paper's tables hold its own path alone.
  const paperPath = ratios.filter((r) => pathOf(r) === DEFAULT_PATH);
  tables.push(paperTable1(paperPath, paper), ...FAMILIES.map((f, i) => paperLatencyTable(paperPath, paper, f, i + 2)));
  return tables;
}

function servicesOf(ratios: RatioRow[], paper: readonly PaperRatio[], profile: string): number[] {
  const all = new Set([...ratios.filter((r) => r.profile === profile).map((r) => r.services), ...paper.filter((p) => p.profile === profile).map((p) => p.services)]);
  return [...all].sort((a, b) => a - b);
}

/** Our ratio of the paper's comparison (eBPF/iptables) for one entry of its tables. */
const find = (ratios: RatioRow[], profile: string, family: Family, statistic: string, services: number) =>
  ratios.find(
    (r) =>
      r.profile === profile &&
      r.family === family &&
      r.statistic === statistic &&
      r.services === services &&
      r.dataplane === PAPER_COMPARISON.dataplane &&
      r.baseline === PAPER_COMPARISON.baseline,
  );

const paperValue = (paper: readonly PaperRatio[], profile: string, family: Family, statistic: string, services: number) =>
  paperRatioFor(paper, { profile, family, statistic, services, ...PAPER_COMPARISON })?.ratio;

const ratioColumns = (prefix: string) => [`${prefix}paper`, `${prefix}ratio`, `${prefix}ci_low`, `${prefix}ci_high`, `${prefix}p_holm`, `${prefix}cliffs_delta`];

function ratioCells(r: RatioRow | undefined, published: number | undefined) {
  return [published, r?.ratio.estimate, r?.ratio.low, r?.ratio.high, r?.pHolm, r?.cliffsDelta];
}

function paperTable1(ratios: RatioRow[], paper: readonly PaperRatio[]): ReportTable {
  const csv = csvOf;
  const services = servicesOf(ratios, paper, "throughput");
  return {
    file: "table1-throughput-std-ratio.csv",
    title: "Table 1: eBPF/iptables ratio of the standard deviation of throughput, paper beside ours",
    csv: csv(
      ["services", ...FAMILIES.flatMap((f) => [...ratioColumns(`${f}_`), `${f}_iqr_ratio`])],
      services.map((n) => [
        n,
        ...FAMILIES.flatMap((f) => {
          const r = find(ratios, "throughput", f, "std", n);
          return [...ratioCells(r, paperValue(paper, "throughput", f, "std", n)), r?.robust.estimate];
        }),
      ]),
    ),
  };
}

function paperLatencyTable(ratios: RatioRow[], paper: readonly PaperRatio[], family: Family, number: number): ReportTable {
  const csv = csvOf;
  const services = servicesOf(ratios, paper, "latency");
  return {
    file: `table${number}-latency-${family}.csv`,
    title: `Table ${number}: eBPF/iptables ratios of the maximum and standard deviation of latency, ${family}, paper beside ours (exact round trips; meter_ratio: as the paper's meter reads the same runs)`,
    csv: csv(
      ["services", ...ratioColumns("max_"), "max_robust_ratio", "max_meter_ratio", ...ratioColumns("std_"), "std_robust_ratio", "std_meter_ratio"],
      services.map((n) => {
        const max = find(ratios, "latency", family, "max", n);
        const std = find(ratios, "latency", family, "std", n);
        return [
          n,
          ...ratioCells(max, paperValue(paper, "latency", family, "max", n)),
          max?.robust.estimate,
          max?.meterRatio,
          ...ratioCells(std, paperValue(paper, "latency", family, "std", n)),
          std?.robust.estimate,
          std?.meterRatio,
        ];
      }),
    ),
  };
}

// ---------------------------------------------------------------------------------------------

/**
 * Every file of a report: report.md, each table and each figure rendered to SVG. A section that adds a table or a
 * figure to the Report adds a file here, so writeReport takes it into the folder it writes whole.
 */
export async function reportFiles(report: Report): Promise<ReportFile[]> {
  const files: ReportFile[] = [{ name: "report.md", content: report.markdown }];
  for (const t of report.tables) files.push({ name: t.file, content: t.csv });
  for (const f of report.figures) files.push({ name: f.file, content: await renderSvg(f.spec) });
  return files;
}

/** The report in a few numbers (report.json, and what `report --json` prints). */
export interface ReportSummary {
  readonly campaign?: string;
  readonly backend?: string;
  readonly baseline: Dataplane;
  readonly runs: { readonly total: number; readonly analysed: number; readonly failed: number };
  readonly tests: Readonly<Record<TestRole, number>>;
  readonly primary: readonly {
    /** The Service path, where it is not the paper's. */
    readonly path?: ServicePath;
    readonly profile: string;
    readonly family: Family;
    readonly services: number;
    readonly statistic: string;
    readonly dataplane: Dataplane;
    readonly baseline: Dataplane;
    readonly ratio: number;
    readonly ciLow: number | null;
    readonly ciHigh: number | null;
    readonly pHolm: number | null;
    readonly significant: boolean;
  }[];
  readonly warnings: readonly string[];
  /** The files of the report folder, report.json last. */
  readonly files: readonly string[];
}

const jsonNumber = (x: number) => (Number.isFinite(x) ? x : null);

export function reportSummary(report: Report, files: readonly string[]): ReportSummary {
  const s = report.settings;
  return {
    ...(s.campaignId !== undefined ? { campaign: s.campaignId } : {}),
    ...(s.backend !== undefined ? { backend: s.backend } : {}),
    baseline: s.baseline,
    runs: {
      total: report.counts.reduce((n, c) => n + c.ok + c.failed + c.withoutSummary, 0),
      analysed: report.counts.reduce((n, c) => n + c.ok, 0),
      failed: report.counts.reduce((n, c) => n + c.failed, 0),
    },
    tests: report.tests,
    primary: report.ratios
      .filter((r) => r.role === "primary")
      .map((r) => ({
        ...pathField(pathOf(r)), profile: r.profile, family: r.family, services: r.services, statistic: r.statistic, dataplane: r.dataplane, baseline: r.baseline,
        ratio: r.ratio.estimate, ciLow: jsonNumber(r.ratio.low), ciHigh: jsonNumber(r.ratio.high), pHolm: jsonNumber(r.pHolm), significant: r.significant,
      })),
    warnings: report.warnings,
    files: [...files, REPORT_MANIFEST],
  };
}

/**
 * Writes the report into `dir` whole, with its manifest (report-output.ts): refused before anything is rendered when
 * the folder cannot take it (another campaign's report without `force`, files that are not a report's, a pseudo file
 * system). Returns the path of report.md and the summary written as report.json.
 */
export async function writeReport(report: Report, dir: string, opts: { force?: boolean } = {}): Promise<{ markdown: string; summary: ReportSummary }> {
  checkReportFolder(dir, report.settings.campaignId ?? "", opts);
  const files = await reportFiles(report);
  const summary = reportSummary(report, files.map((f) => f.name));
  writeReportFolder(dir, [...files, { name: REPORT_MANIFEST, content: `${JSON.stringify(summary, null, 2)}\n` }]);
  return { markdown: path.join(path.resolve(dir), "report.md"), summary };
}
