// Synthetic RunResult sets, generated with a seeded PRNG, for the report suites.
import { build, encodeIntoCompressedBase64 } from "hdr-histogram-js";
import { HISTOGRAM_UNITS_PER_S } from "../../measure/ditg-log.js";
import type { FlowSummary, Profile, RunResult } from "../../measure/types.js";
import type { Dataplane } from "../../scenario/schema.js";
import type { Family } from "../../scenario/cidr.js";
import { Synthetic } from "./statistics-fixtures.js";

export interface GroupShape {
  /** Throughput profile: mean and sd of the per-run bitrate, Mbit/s. */
  readonly throughputMbps?: { mean: number; sd: number };
  /** Delay profiles: per-packet delay = base + |Normal(0, jitterMs)|, ms. */
  readonly delay?: { baseMs: number; jitterMs: number };
}

export interface FixtureSpec {
  readonly seed: number;
  /** The dataplanes measured; default iptables and ebpf. */
  readonly dataplanes?: readonly Dataplane[];
  readonly runs: number;
  readonly services: readonly number[];
  readonly families: readonly Family[];
  readonly profiles: readonly string[];
  /** Shape of each dataplane's values; may depend on the step. */
  readonly shape: (dataplane: Dataplane, profile: string, services: number) => GroupShape;
  /** Packets per delay run (kept small: the summary is computed from them exactly). */
  readonly packets?: number;
  /** Runs to mark failed, by predicate. */
  readonly fail?: (key: { dataplane: Dataplane; family: Family; profile: string; services: number; repetition: number }) => boolean;
  /** Receives each delay run's per-packet delays (seconds), by run id. */
  readonly delaysSink?: Map<string, number[]>;
  /**
   * Round-trip runs: delays are exact (paired) and each run keeps the meter's readings, in which
   * `signature` records read 1 s too long (D-ITG B15 across a second boundary) and `short` records
   * read at a third of their true value (B15 within a second). With `oneWay`, also one-way delays
   * (half the round trip).
   */
  readonly meter?: (key: { dataplane: Dataplane; family: Family; profile: string; services: number; repetition: number }) => {
    signature: number;
    short: number;
  };
  readonly oneWay?: boolean;
  /** Receives each round-trip run's meter reading as ITGDec reads it (seconds), by run id. */
  readonly meterSink?: Map<string, number[]>;
}

function histogramOf(delaysS: readonly number[]): string {
  const histogram = build({ numberOfSignificantValueDigits: 3, bitBucketSize: 32, autoResize: true, lowestDiscernibleValue: 1 });
  for (const s of delaysS) histogram.recordValue(Math.round(s * HISTOGRAM_UNITS_PER_S));
  return encodeIntoCompressedBase64(histogram);
}

/** The round trips as the meter logs them (see FixtureSpec.meter). */
function meterReading(delays: readonly number[], corrupt: { signature: number; short: number }): number[] {
  return delays.map((d, i) => (i < corrupt.signature ? d + 1 : i < corrupt.signature + corrupt.short ? d / 3 : d));
}

/** The meter's readings of a round-trip run whose exact delays are `delays`, and its one-way delays. */
function meterViews(delays: readonly number[], logged: number[], durationS: number, oneWay: boolean): NonNullable<RunResult["delayViews"]> {
  const kept = logged.filter((d) => d < 0.5);
  const sender = { ...delaySummary(kept, durationS), packets: delays.length };
  return {
    itgdec: { summary: delaySummary(logged, durationS), excludedRecords: 0, histogram: histogramOf(logged) },
    sender: { summary: sender, excludedRecords: logged.length - kept.length, histogram: histogramOf(kept) },
    ...(oneWay ? { oneWay: { summary: delaySummary(delays.map((d) => d / 2), durationS), excludedRecords: 0, histogram: histogramOf(delays.map((d) => d / 2)) } } : {}),
  };
}

function delaySummary(delaysS: number[], durationS: number): FlowSummary {
  const n = delaysS.length;
  const mean = delaysS.reduce((s, d) => s + d, 0) / n;
  const std = Math.sqrt(delaysS.reduce((s, d) => s + (d - mean) ** 2, 0) / n);
  const sorted = [...delaysS].sort((a, b) => a - b);
  const rank = (q: number) => sorted[Math.min(n - 1, Math.ceil(q * n) - 1)]!;
  let jitter = 0;
  for (let i = 1; i < n; i++) jitter += Math.abs(delaysS[i]! - delaysS[i - 1]!);
  return {
    packets: n,
    bytes: n * 512,
    durationS,
    delayMinS: sorted[0]!,
    delayMaxS: sorted[n - 1]!,
    delayMeanS: mean,
    delayStdS: std,
    jitterS: jitter / (n - 1),
    bitrateKbps: (n * 512 * 8) / durationS / 1000,
    packetRate: n / durationS,
    dropped: 0,
    p50S: rank(0.5),
    p90S: rank(0.9),
    p99S: rank(0.99),
    p999S: rank(0.999),
  };
}

function throughputSummary(mbps: number, durationS: number): FlowSummary {
  const bytes = (mbps * 1e6 * durationS) / 8;
  return {
    packets: Math.round(bytes / 64000),
    bytes,
    durationS,
    delayMinS: 0.001,
    delayMaxS: 0.02,
    delayMeanS: 0.005,
    delayStdS: 0.002,
    jitterS: 0.001,
    bitrateKbps: mbps * 1000,
    packetRate: bytes / 64000 / durationS,
    dropped: 0,
    p50S: 0.005,
    p90S: 0.008,
    p99S: 0.012,
    p999S: 0.018,
  };
}

/** Every run of the spec, in a fixed order, all with status ok unless `fail` says otherwise. */
export function syntheticRuns(spec: FixtureSpec): RunResult[] {
  const g = new Synthetic(spec.seed);
  const results: RunResult[] = [];
  const durationS = 30;
  for (const profile of spec.profiles) {
    for (const family of spec.families) {
      for (const services of spec.services) {
        for (const dataplane of spec.dataplanes ?? (["iptables", "ebpf"] as const)) {
          const shape = spec.shape(dataplane, profile, services);
          for (let repetition = 0; repetition < spec.runs; repetition++) {
            const key = { dataplane, family, profile: profile as Profile, services, repetition };
            const base = {
              ...key,
              runId: `${profile}-${family}-${services}-${dataplane}-${repetition}`,
              retries: 0,
              startedAt: new Date(Date.UTC(2025, 0, 1, 0, 0, results.length * 30)).toISOString(),
              endedAt: new Date(Date.UTC(2025, 0, 1, 0, 0, results.length * 30 + durationS)).toISOString(),
            };
            if (spec.fail?.(key)) {
              results.push({ ...base, status: "failed", failure: "ITGSend reported an error" });
              continue;
            }
            if (profile === "throughput") {
              const t = shape.throughputMbps!;
              const mbps = g.normal(t.mean, t.sd);
              results.push({ ...base, status: "ok", summary: throughputSummary(mbps, durationS), achievedKbps: mbps * 1000 });
            } else {
              const d = shape.delay!;
              const delays = Array.from({ length: spec.packets ?? 300 }, () => (d.baseMs + Math.abs(g.normal(0, d.jitterMs))) / 1e3);
              spec.delaysSink?.set(base.runId, delays);
              const corrupt = spec.meter?.(key);
              const logged = corrupt && meterReading(delays, corrupt);
              const delayViews = logged && meterViews(delays, logged, durationS, spec.oneWay === true);
              if (logged) spec.meterSink?.set(base.runId, logged);
              results.push({
                ...base,
                status: "ok",
                summary: delaySummary(delays, durationS),
                histogram: histogramOf(delays),
                ...(delayViews ? { delaySource: "paired" as const, excludedRecords: 0, delayViews } : {}),
              });
            }
          }
        }
      }
    }
  }
  return results;
}
