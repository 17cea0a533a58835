// Measurement validity: how far D-ITG's round-trip meter is from the exact round trips (D-ITG B15, measure/ditg-log.ts).
// A round-trip run keeps its exact delays (the summary, from the paired logs) and the meter's own readings of the same
// packets: "itgdec", what ITGDec prints from the sender log (what the paper's Tables 2 and 3 were read from), and
// "sender", the sender log without the records of B15's signature. Per cell (profile, family, Service count,
// dataplane), each reading's maximum, standard deviation and mean is divided by the exact one, with a bootstrap
// interval that resamples runs and reads both statistics from the same drawn runs. Pure functions.
import type { DelayViewName, FlowSummary, RunResult } from "./types.js";
import { bootstrapPairedRatio, seedFor, type RatioInterval } from "./statistics.js";
import type { CellKey, RatioDefinition } from "./report.js";

/** The meter's readings of a round trip, as the validity section compares them with the exact one. */
export const METER_READINGS = ["itgdec", "sender"] as const satisfies readonly DelayViewName[];
export type MeterReading = (typeof METER_READINGS)[number];

export const METER_READING_NAME: Record<MeterReading, string> = {
  itgdec: "the meter as ITGDec reads it",
  sender: "the meter without B15's signature records",
};

/** One cell's comparison of one meter reading with the exact round trips, for one statistic. */
export interface ValidityRow extends CellKey {
  readonly reading: MeterReading;
  readonly statistic: RatioDefinition["statistic"];
  /** Runs compared (every ok run of the cell that kept the meter's readings). */
  readonly runs: number;
  /** Round trips of those runs. */
  readonly records: number;
  /** Records with B15's signature (round trip of 0.5 s or more as the meter logged it). */
  readonly signatureRecords: number;
  readonly runsWithSignature: number;
  readonly exactMs: number;
  readonly meterMs: number;
  /** meter / exact. */
  readonly ratio: RatioInterval;
}

/** A cell as the report groups runs: its key and its ok runs with a summary. */
export interface ReportCell {
  readonly key: CellKey;
  readonly runs: readonly RunResult[];
}

/**
 * A summary whose packet count is the number of delays it holds: records left out of a reading's delays (B15's
 * signature) must not weigh in when runs are pooled.
 */
function delaySample(summary: FlowSummary, excludedRecords: number): FlowSummary {
  return excludedRecords === 0 ? summary : { ...summary, packets: summary.packets - excludedRecords };
}

// The paper's path keeps the names (and seeds) it had before paths.
const cellName = (k: CellKey) => [k.profile, k.family, k.services, k.dataplane, ...(k.path ? [k.path] : [])].join("/");

/**
 * Validity rows of every cell whose ok runs all kept the meter's readings, for the delay statistics of the report's
 * ratio definitions (mean, max, std), each reading against the exact round trips.
 */
export function validityRows(
  cells: readonly ReportCell[],
  definitions: readonly RatioDefinition[],
  settings: { seed: number; resamples: number; confidence: number },
): ValidityRow[] {
  const rows: ValidityRow[] = [];
  const delayDefinitions = definitions.filter((d) => d.kind === "delay");
  for (const cell of cells) {
    if (cell.runs.length === 0 || !cell.runs.every((r) => r.delaySource === "paired" && METER_READINGS.every((m) => r.delayViews?.[m]))) continue;
    const exact = (runs: RunResult[]) => runs.map((r) => delaySample(r.summary!, r.excludedRecords ?? 0));
    const signatureRecords = cell.runs.reduce((s, r) => s + r.delayViews!.sender!.excludedRecords, 0);
    const runsWithSignature = cell.runs.filter((r) => r.delayViews!.sender!.excludedRecords > 0).length;
    const records = cell.runs.reduce((s, r) => s + r.summary!.packets - (r.excludedRecords ?? 0), 0);
    for (const reading of METER_READINGS) {
      const meter = (runs: RunResult[]): FlowSummary[] => runs.map((r) => delaySample(r.delayViews![reading]!.summary, r.delayViews![reading]!.excludedRecords));
      for (const def of delayDefinitions) {
        const ratio = bootstrapPairedRatio(cell.runs, (s) => def.value(meter(s)), (s) => def.value(exact(s)), {
          resamples: settings.resamples,
          confidence: settings.confidence,
          seed: seedFor(settings.seed, `validity/${cellName(cell.key)}/${reading}/${def.statistic}`),
        });
        rows.push({
          ...cell.key,
          reading,
          statistic: def.statistic,
          runs: cell.runs.length,
          records,
          signatureRecords,
          runsWithSignature,
          exactMs: def.value(exact([...cell.runs])),
          meterMs: def.value(meter([...cell.runs])),
          ratio,
        });
      }
    }
  }
  return rows;
}

/** The spread of one reading's ratio for one statistic over every cell: smallest and largest estimate. */
export function ratioRange(rows: readonly ValidityRow[], reading: MeterReading, statistic: string): { low: number; high: number; cells: number } | undefined {
  const chosen = rows.filter((r) => r.reading === reading && r.statistic === statistic && Number.isFinite(r.ratio.estimate));
  if (chosen.length === 0) return undefined;
  const estimates = chosen.map((r) => r.ratio.estimate);
  return { low: Math.min(...estimates), high: Math.max(...estimates), cells: chosen.length };
}

// ---------------------------------------------------------------------------------------------
// The report's words and tables (report.md)

/** The report's number format (report-markdown.ts's fmt). */
type Format = (x: number | undefined) => string;

/** The meter's eBPF-style comparison ratios beside the exact ones: how many steps read differently through the meter. */
export interface MeterComparison {
  /** Delay ratio rows (one per step, dataplane pair and statistic) that carry the meter's ratio. */
  readonly rows: readonly { statistic: string; ratio: RatioInterval; meterRatio?: number }[];
}

/**
 * The section "Measurement validity": the bug in one paragraph, a table per profile and family, and what it means for
 * the paper's Tables 2 and 3. Empty when no run kept the meter's readings.
 */
export function validityMarkdown(rows: readonly ValidityRow[], comparison: MeterComparison, fmt: Format, confidence: number): string[] {
  if (rows.length === 0) return [];
  const pct = Math.round(confidence * 100);
  const ci = (r: RatioInterval) => `${fmt(r.estimate)} [${fmt(r.low)}, ${fmt(r.high)}]`;
  const out = [
    "## Measurement validity: D-ITG's round-trip meter against exact round trips",
    "",
    "ITGSend's round-trip meter (`-m rttm`, D-ITG 2.8.1) logs each echo with the seconds of the echoed packet's send time but the microseconds of the newest packet sent (ITGSend.cpp: `timeUsec` set on every send at L3147, the seconds read from the echo at L3408, the record written with `timeUsec` at L3417). Every echo that returns after the next packet left gets a wrong send time: at least 1 s too long when a second boundary lies between the two sends (the signature: a round trip of 0.5 s or more), silently too short otherwise. The latency statistics of this report are exact: each round trip is the sender log's receive time minus the send stamp the receiver logged (`-x`) for the same packet, both on the sender's clock.",
    "",
    `Below, the meter's own readings of the same runs divided by the exact values: **ITGDec** (every record as ITGDec reads the sender log, as the paper's latency tables were read) and **without signature** (the sender log with the signature records left out, what can be done without the receiver's log). ${pct}% bootstrap intervals resample runs and take both readings from the same drawn runs (a maximum's interval is unreliable, see the method); every interval is in validity.csv.`,
    "",
  ];
  const groups = [...new Set(rows.map((r) => `${r.profile}/${r.family}/${r.path ?? ""}`))];
  for (const group of groups) {
    const [profile, family, path] = group.split("/");
    const inGroup = rows.filter((r) => r.profile === profile && r.family === family && (r.path ?? "") === path);
    out.push(
      `### ${path ? `${path}: ` : ""}${profile}, ${family}`,
      "",
      "| Services | dataplane | runs | signature records (runs) | exact max / std / mean (ms) | ITGDec/exact max | ITGDec/exact std | ITGDec/exact mean | without signature/exact max, std, mean |",
      "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    );
    const cells = [...new Set(inGroup.map((r) => `${r.services}/${r.dataplane}`))];
    for (const cell of cells) {
      const of = inGroup.filter((r) => `${r.services}/${r.dataplane}` === cell);
      const at = (reading: MeterReading, statistic: string) => of.find((r) => r.reading === reading && r.statistic === statistic)!;
      const first = of[0]!;
      out.push(
        `| ${first.services} | ${first.dataplane} | ${first.runs} | ${first.signatureRecords} of ${first.records} (${first.runsWithSignature}) | ${fmt(at("itgdec", "max").exactMs)} / ${fmt(at("itgdec", "std").exactMs)} / ${fmt(at("itgdec", "mean").exactMs)} | ${ci(at("itgdec", "max").ratio)} | ${ci(at("itgdec", "std").ratio)} | ${ci(at("itgdec", "mean").ratio)} | ${fmt(at("sender", "max").ratio.estimate)}, ${fmt(at("sender", "std").ratio.estimate)}, ${fmt(at("sender", "mean").ratio.estimate)} |`,
      );
    }
    out.push("");
  }
  out.push(tablesTwoAndThree(rows, comparison, fmt), "");
  return out;
}

/** One paragraph: what the meter's error measured here means for the paper's latency tables. */
function tablesTwoAndThree(rows: readonly ValidityRow[], comparison: MeterComparison, fmt: Format): string {
  const cells = new Map(rows.map((r) => [cellName(r), r]));
  const signature = [...cells.values()].reduce((s, r) => s + r.signatureRecords, 0);
  const records = [...cells.values()].reduce((s, r) => s + r.records, 0);
  const withSignature = [...cells.values()].filter((r) => r.signatureRecords > 0).length;
  const range = (statistic: string) => {
    const r = ratioRange(rows, "itgdec", statistic);
    return r ? (fmt(r.low) === fmt(r.high) ? `${fmt(r.low)} times` : `${fmt(r.low)} to ${fmt(r.high)} times`) : "not estimable";
  };
  const compared = comparison.rows.filter((r) => (r.statistic === "max" || r.statistic === "std") && r.meterRatio !== undefined && Number.isFinite(r.ratio.estimate));
  const outside = compared.filter((r) => !(r.meterRatio! >= r.ratio.low && r.meterRatio! <= r.ratio.high));
  const factor = compared.reduce((m, r) => Math.max(m, Math.abs(Math.log(r.meterRatio! / r.ratio.estimate))), 0);
  const ratios =
    compared.length === 0
      ? "No step had both dataplanes' runs with the meter's readings, so the meter's own dataplane ratios could not be set beside the exact ones."
      : `Read through the meter, the dataplane ratios of the maximum and the standard deviation (the tables' columns) differed from the exact ones by up to a factor ${fmt(Math.exp(factor))}, and fell outside the exact ratio's interval at ${outside.length} of ${compared.length} ${compared.length === 1 ? "step" : "steps"}.`;
  return [
    "**What this means for the paper's Tables 2 and 3.**",
    "The paper's latency tables are ratios of the maximum and of the standard deviation of per-packet round trips, read with this meter (ITGDec over ITGSend's rttm log), between the cells of two dataplanes.",
    `In this campaign the meter's maximum was ${range("max")} the exact one, its standard deviation ${range("std")} and its mean ${range("mean")}; ${withSignature} of ${cells.size} ${cells.size === 1 ? "cell" : "cells"} had records with the signature (${signature} of ${records} records).`,
    "A table entry divides one cell's statistic by another's, so the meter's error cancels only where both cells suffer it alike, and it depends on chance: whether an echo late by more than the packet spacing happens to straddle a second boundary.",
    ratios,
    "The maximum is the most exposed (one such echo reads about 1 s), the standard deviation follows (one such record dominates a run's spread), the mean moves least; and since the short-read records carry no sign, leaving out the signature records does not repair a statistic either.",
    "The paper's Tables 2 and 3 therefore mix the meter's error into the comparison of the dataplanes, by an amount its logs cannot recover; the tables of this report use exact round trips.",
  ].join(" ");
}

/**
 * The section of one-way delays (sender -> receiver on one clock): per profile and family, every cell's pooled
 * one-way statistics beside its round-trip median. Empty when no cell has them.
 */
export function oneWayMarkdown(
  cells: readonly { path?: string; profile: string; family: string; services: number; dataplane: string; metric: string; n: number; mean: number; median: number; p99: number; max: number; std: number }[],
  metrics: { oneWay: string; roundTrip: string },
  fmt: Format,
): string[] {
  const oneWay = cells.filter((c) => c.metric === metrics.oneWay);
  if (oneWay.length === 0) return [];
  const withPaths = cells.some((c) => c.path !== undefined);
  const out = [
    "## One-way delays, sender -> receiver (one shared clock)",
    "",
    "Sender and receiver read one clock here (namespaces of one host), so the receiver's log also gives each packet's one-way delay from the client to the pod: its arrival minus the send stamp it carried. The paper's tools could not measure this between two VMs without synchronised clocks; it is a third view beside the exact round trips (the round trip adds the pod's echo and the way back). All packets of all runs of a cell, ms:",
    "",
    `|${withPaths ? " path |" : ""} profile | family | Services | dataplane | packets | mean | median | p99 | max | std | round-trip median |`,
    `|${withPaths ? " --- |" : ""} --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |`,
  ];
  for (const c of oneWay) {
    const rt = cells.find((r) => r.metric === metrics.roundTrip && r.path === c.path && r.profile === c.profile && r.family === c.family && r.services === c.services && r.dataplane === c.dataplane);
    out.push(`|${withPaths ? ` ${c.path ?? "nodeport-local"} |` : ""} ${c.profile} | ${c.family} | ${c.services} | ${c.dataplane} | ${c.n} | ${fmt(c.mean)} | ${fmt(c.median)} | ${fmt(c.p99)} | ${fmt(c.max)} | ${fmt(c.std)} | ${fmt(rt?.median)} |`);
  }
  out.push("");
  return out;
}
