// The report's view of D-ITG B15: exact round trips in every latency table, the meter's own readings
// of the same runs set against them per cell (validity), the meter's dataplane ratios beside the
// exact ones, and the one-way delays where both ends share a clock.
import { parse } from "csv-parse/sync";
import { describe, expect, it } from "vitest";
import { loadPaperReference } from "../../measure/paper-reference.js";
import { buildReport, ONE_WAY_DELAY_METRIC, type Report } from "../../measure/report.js";
import { syntheticRuns, type FixtureSpec } from "./report-fixtures.js";

const paper = loadPaperReference();
type Row = Record<string, string>;
const table = (report: Report, file: string): Row[] => parse(report.tables.find((t) => t.file === file)!.csv, { columns: true }) as Row[];

/** Population statistics of the union of several runs' delays (what pooling over packets must give). */
function pooled(runs: number[][]): { max: number; mean: number; std: number } {
  const all = runs.flat();
  const mean = all.reduce((s, d) => s + d, 0) / all.length;
  return { max: Math.max(...all), mean, std: Math.sqrt(all.reduce((s, d) => s + (d - mean) ** 2, 0) / all.length) };
}

const exact = new Map<string, number[]>();
const meter = new Map<string, number[]>();
/** iptables at 1000 Services: every other run has two echoes across a second boundary; every run has short reads. */
const spec: FixtureSpec = {
  seed: 9,
  runs: 8,
  services: [1, 1000],
  families: ["ipv4", "ipv6"],
  profiles: ["latency"],
  packets: 200,
  shape: () => ({ delay: { baseMs: 0.3, jitterMs: 0.1 } }),
  meter: (k) => ({ signature: k.dataplane === "iptables" && k.services === 1000 && k.repetition % 2 === 0 ? 2 : 0, short: 15 }),
  oneWay: true,
  delaysSink: exact,
  meterSink: meter,
};
const results = syntheticRuns(spec);
const report = buildReport(results, { seed: 2025, resamples: 500, paper });

const runsOf = (dataplane: string, family: string, services: number) =>
  results.filter((r) => r.dataplane === dataplane && r.family === family && r.services === services).map((r) => r.runId);

describe("measurement validity", () => {
  it("divides each meter reading by the exact round trips of the same runs, cell by cell, and counts the signature records", () => {
    expect(report.validity).toHaveLength(2 * 2 * 2 * 2 * 3);
    for (const family of ["ipv4", "ipv6"]) {
      for (const services of [1, 1000]) {
        for (const dataplane of ["iptables", "ebpf"]) {
          const ids = runsOf(dataplane, family, services);
          const truth = pooled(ids.map((id) => exact.get(id)!));
          const itgdec = pooled(ids.map((id) => meter.get(id)!));
          const sender = pooled(ids.map((id) => meter.get(id)!.filter((d) => d < 0.5)));
          const signature = ids.reduce((s, id) => s + meter.get(id)!.filter((d) => d >= 0.5).length, 0);
          const rows = report.validity.filter((v) => v.family === family && v.services === services && v.dataplane === dataplane);
          const at = (reading: string, statistic: string) => rows.find((v) => v.reading === reading && v.statistic === statistic)!;
          for (const statistic of ["max", "mean", "std"] as const) {
            expect(at("itgdec", statistic).exactMs, `${family} ${services} ${dataplane} exact ${statistic}`).toBeCloseTo(truth[statistic] * 1e3, 9);
            expect(at("itgdec", statistic).meterMs).toBeCloseTo(itgdec[statistic] * 1e3, 9);
            expect(at("itgdec", statistic).ratio.estimate).toBeCloseTo(itgdec[statistic] / truth[statistic], 9);
            expect(at("sender", statistic).ratio.estimate, `${family} ${services} ${dataplane} sender ${statistic}`).toBeCloseTo(sender[statistic] / truth[statistic], 9);
          }
          expect(rows.every((v) => v.signatureRecords === signature && v.runs === 8 && v.records === 8 * 200)).toBe(true);
          expect(rows[0]!.runsWithSignature).toBe(dataplane === "iptables" && services === 1000 ? 4 : 0);
        }
      }
    }
    // The second-boundary records: about 1 s against a millisecond, through ITGDec; gone without them.
    const hit = report.validity.find((v) => v.dataplane === "iptables" && v.services === 1000 && v.reading === "itgdec" && v.statistic === "max")!;
    expect(hit.ratio.estimate).toBeGreaterThan(500);
    expect(hit.signatureRecords).toBe(8);
    // The mean's interval is reliable: it holds its estimate and is tight with 8 runs of 200 packets.
    for (const v of report.validity.filter((r) => r.statistic === "mean")) expect([v.ratio.low <= v.ratio.estimate, v.ratio.estimate <= v.ratio.high]).toEqual([true, true]);
  });

  it("sets the meter's dataplane ratio beside the exact one in the latency tables", () => {
    for (const family of ["ipv4", "ipv6"]) {
      const max = report.ratios.find((r) => r.profile === "latency" && r.family === family && r.services === 1000 && r.statistic === "max")!;
      const meterMax = (dataplane: string) => pooled(runsOf(dataplane, family, 1000).map((id) => meter.get(id)!)).max;
      expect(max.meterRatio).toBeCloseTo(meterMax("ebpf") / meterMax("iptables"), 9);
      const exactMax = (dataplane: string) => pooled(runsOf(dataplane, family, 1000).map((id) => exact.get(id)!)).max;
      expect(max.ratio.estimate).toBeCloseTo(exactMax("ebpf") / exactMax("iptables"), 9);
      const row = table(report, `table${family === "ipv4" ? 2 : 3}-latency-${family}.csv`).find((r) => r.services === "1000")!;
      expect(Number(row.max_meter_ratio)).toBeCloseTo(max.meterRatio!, 4);
      expect(Number(row.max_ratio)).toBeCloseTo(max.ratio.estimate, 4);
    }
    expect(table(report, "validity.csv")).toHaveLength(report.validity.length);
  });

  it("writes the validity section: a row per cell and dataplane, and what the meter's error means for Tables 2 and 3", () => {
    const md = report.markdown;
    expect(md).toContain("## Measurement validity: D-ITG's round-trip meter against exact round trips");
    expect(md).toContain("L3147");
    for (const family of ["ipv4", "ipv6"]) {
      const section = md.slice(md.indexOf(`### latency, ${family}`));
      for (const services of [1, 1000]) for (const dataplane of ["iptables", "ebpf"]) expect(section).toMatch(new RegExp(`\\n\\| ${services} \\| ${dataplane} \\| 8 \\| `));
      expect(section).toMatch(/\n\| 1000 \| iptables \| 8 \| 8 of 1600 \(4\) \| /);
    }
    const paragraph = md.slice(md.indexOf("**What this means for the paper's Tables 2 and 3.**"));
    expect(paragraph).toMatch(/2 of 8 cells had records with the signature \(16 of 12800 records\)/);
    const compared = report.ratios.filter((r) => r.statistic !== "mean" && r.meterRatio !== undefined);
    const outside = compared.filter((r) => !(r.meterRatio! >= r.ratio.low && r.meterRatio! <= r.ratio.high));
    expect(compared).toHaveLength(8);
    expect(outside.length).toBeGreaterThan(0);
    expect(paragraph).toContain(`fell outside the exact ratio's interval at ${outside.length} of ${compared.length} steps`);
    expect(md).toMatch(/- \*\*Delays:\*\* latency: 64 exact round trips from the paired sender and receiver logs \(of 64 runs\)/);
    // The latency tables show the meter's ratio beside the exact one.
    expect(md).toMatch(/\| n \/ n iptables \| meter's ratio \(ITGDec\) \|/);
  });

  it("reports one-way delays as a third view where the runs kept them, beside the round-trip median", () => {
    const oneWay = report.cells.filter((c) => c.metric === ONE_WAY_DELAY_METRIC);
    expect(oneWay).toHaveLength(8);
    for (const c of oneWay) {
      const ids = runsOf(c.dataplane, c.family, c.services);
      const truth = pooled(ids.map((id) => exact.get(id)!.map((d) => d / 2)));
      expect([c.n, c.observation]).toEqual([1600, "packet"]);
      expect(c.mean).toBeCloseTo(truth.mean * 1e3, 9);
      expect(c.max).toBeCloseTo(truth.max * 1e3, 9);
    }
    expect(report.markdown).toContain("## One-way delays, sender -> receiver (one shared clock)");
    expect(report.markdown).toMatch(/\| latency \| ipv6 \| 1000 \| ebpf \| 1600 \| /);
  });

  it("without the meter's readings: no validity section, no one-way view, and runs with no delay source are named", () => {
    const plain = buildReport(syntheticRuns({ ...spec, meter: undefined, oneWay: false, delaysSink: undefined, meterSink: undefined }), { seed: 2025, resamples: 500, paper });
    expect(plain.validity).toEqual([]);
    expect(plain.tables.some((t) => t.file === "validity.csv")).toBe(false);
    expect(plain.markdown).not.toContain("## Measurement validity");
    expect(plain.markdown).not.toContain("## One-way delays");
    expect(plain.markdown).toContain("- **Delays:** latency: 64 stored before exact round trips (the meter's own) (of 64 runs).");
    expect(plain.cells.some((c) => c.metric === ONE_WAY_DELAY_METRIC)).toBe(false);
    expect(plain.ratios.every((r) => r.meterRatio === undefined)).toBe(true);
    expect(plain.warnings).toContain(
      "64 delay runs were stored before the store kept where their delays come from (results store schema 1): their round trips are the meter's own, as ITGDec reads ITGSend's log, not exact (D-ITG B15); no validity rows for them",
    );
    expect(report.warnings.some((w) => w.includes("schema 1"))).toBe(false);
  });
});
