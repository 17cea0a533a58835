import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { DOMParser } from "@xmldom/xmldom";
import { parse } from "csv-parse/sync";
import { afterAll, describe, expect, it } from "vitest";
import { loadPaperReference, PaperReferenceError, parsePaperTable } from "../../measure/paper-reference.js";
import { buildReport, writeReport, type Report, type ReportOptions } from "../../measure/report.js";
import { renderSvg } from "../../measure/report-figures.js";
import { holmAdjust } from "../../measure/statistics.js";
import type { PrimaryComparisons } from "../../measure/campaign-plan.js";
import type { RunResult } from "../../measure/types.js";
import { syntheticRuns, type FixtureSpec } from "./report-fixtures.js";

const paper = loadPaperReference();
const options: ReportOptions = { seed: 2025, resamples: 1000, paper };

type Row = Record<string, string>;

/** The cells of report.md's Summary table, one array per row, the header and rule left out. */
function summaryRows(markdown: string): string[][] {
  const section = markdown.split("## Summary")[1]!.split("\n## ")[0]!;
  const lines = section.split("\n").filter((l) => l.startsWith("| "));
  expect(lines[0]).toBe("| metric | statistic | family | dataplane against baseline | steps lower | steps higher | significant steps (Holm, alpha 0.05) | paper's ratio inside our interval |");
  return lines.slice(2).map((l) => l.slice(2, -2).split(" | "));
}
const table = (report: Report, file: string): Row[] =>
  parse(report.tables.find((t) => t.file === file)!.csv, { columns: true }) as Row[];

/** Throughput runs where eBPF varies far less than iptables at `quietStep` only. */
function throughputSpec(quietStep: number | undefined, extra: Partial<FixtureSpec> = {}): FixtureSpec {
  return {
    seed: 42,
    runs: 60,
    services: [1, 1000, 2000],
    families: ["ipv4", "ipv6"],
    profiles: ["throughput"],
    shape: (dataplane, _profile, services) => ({
      throughputMbps: { mean: 450, sd: dataplane === "ebpf" && services === quietStep ? 2 : 10 },
    }),
    ...extra,
  };
}

describe("paper reference", () => {
  it("holds the paper's three tables", () => {
    expect(paper).toHaveLength(11 * 2 + 11 * 2 * 2);
    // Values as printed in the paper: Table 1 row 1, Table 2 row 10000, Table 3 row 8000.
    const at = (table: string, family: string, statistic: string, services: number) =>
      paper.find((p) => p.table === table && p.family === family && p.statistic === statistic && p.services === services)?.ratio;
    expect(at("Table 1", "ipv4", "std", 1)).toBe(0.2);
    expect(at("Table 1", "ipv6", "std", 5000)).toBe(1.33);
    expect(at("Table 2", "ipv4", "std", 10000)).toBe(0.4);
    expect(at("Table 3", "ipv6", "max", 8000)).toBe(0.65);
  });
  it("names the file, row and column of a bad cell", () => {
    expect(() => parsePaperTable("# c\nservices,max_ratio\n1,abc\n", "t.csv", ["max_ratio"])).toThrow(
      /t\.csv: data row 1, column max_ratio is "abc"; accepted: a number/,
    );
    expect(() => parsePaperTable("services,other\n1,2\n", "t.csv", ["max_ratio"])).toThrow(PaperReferenceError);
    expect(() => loadPaperReference("/nonexistent")).toThrow(/Table 1 at \/nonexistent/);
  });
});

describe("buildReport on throughput runs", () => {
  const results = syntheticRuns(throughputSpec(1000, { fail: (k) => k.dataplane === "ebpf" && k.services === 2000 && k.repetition < 2 }));
  const report = buildReport(results, options);

  it("gives the paper's statistics per cell, over runs, with the sample standard deviation", () => {
    const values = results
      .filter((r) => r.dataplane === "iptables" && r.family === "ipv4" && r.services === 1)
      .map((r) => r.summary!.bitrateKbps / 1000);
    const mean = values.reduce((s, v) => s + v, 0) / values.length;
    const std = Math.sqrt(values.reduce((s, v) => s + (v - mean) ** 2, 0) / (values.length - 1));
    const row = table(report, "cells.csv").find(
      (r) => r.profile === "throughput" && r.family === "ipv4" && r.services === "1" && r.dataplane === "iptables",
    )!;
    expect(row.metric).toBe("throughputMbps");
    expect(row.observation).toBe("run");
    expect(row.std_kind).toBe("sample");
    expect(Number(row.n)).toBe(60);
    expect(Number(row.mean)).toBeCloseTo(mean, 2);
    expect(Number(row.std)).toBeCloseTo(std, 3);
    expect(Number(row.min)).toBeCloseTo(Math.min(...values), 2);
    expect(Number(row.max)).toBeCloseTo(Math.max(...values), 2);
  });

  it("finds the step where eBPF varies less and no difference elsewhere", () => {
    const t1 = table(report, "table1-throughput-std-ratio.csv");
    expect(t1.map((r) => r.services)).toEqual(["1", "1000", "2000", "3000", "4000", "5000", "6000", "7000", "8000", "9000", "10000"]);
    const quiet = t1.find((r) => r.services === "1000")!;
    expect(Number(quiet.ipv4_ratio)).toBeLessThan(0.4);
    expect(Number(quiet.ipv4_ci_high)).toBeLessThan(1);
    expect(Number(quiet.ipv4_p_holm)).toBeLessThan(0.05);
    expect(quiet.ipv4_paper).toBe("1.01");
    const ratios = table(report, "ratios.csv");
    for (const r of ratios) {
      expect(r.verdict).toBe(r.services === "1000" ? "lower" : "no difference shown");
      expect([r.dataplane, r.baseline, r.role]).toEqual(["ebpf", "iptables", "exploratory"]);
      expect(Number(r.p_holm)).toBeGreaterThanOrEqual(Number(r.p_value));
    }
    // Paper-only steps keep the paper's value and leave ours empty.
    expect(t1.find((r) => r.services === "5000")).toMatchObject({ ipv4_paper: "3.05", ipv4_ratio: "" });
  });

  it("says in words what is and is not shown, with n per group and the excluded runs", () => {
    const md = report.markdown;
    expect(summaryRows(md)).toContainEqual(["throughput", "standard deviation", "ipv4", "ebpf / iptables", "1 of 3: 1000 Services", "none of 3", "1 of 3: 1000 Services", "1 of 3"]);
    expect(md).toMatch(/Holm over 0 primary and, separately, 6 exploratory rank tests/);
    // One dataplane beside the baseline: said in the singular, and no "(s)" or "1 Services" anywhere.
    expect(md).toContain("ebpf is compared with the baseline, iptables.");
    expect(md).not.toMatch(/Each of|\(s\)|\b1 Services\b|\b1 runs\b|\b1 steps\b|\b1 groups\b/);
    expect(md).toMatch(/The campaign declared no primary comparisons: every test below is exploratory/);
    expect(md).toMatch(/\| throughput \| ipv4 \| 2000 \| 60 \| 58 \(2\) \|/);
    expect(report.warnings).toContain("4 failed runs excluded: 2 in each of 2 groups (throughput, ipv4 and ipv6: ebpf at 2000 Services)");
    expect(md).toMatch(/sample standard deviation \(divisor n - 1\)/);
    expect(md).toMatch(/percentile bootstrap/);
    expect(md).toMatch(/\| 1000 \| ebpf \| 1.01 \| 0.\d+ \| \[0.\d+, 0.\d+\] \| ebpf lower \| exploratory \|/);
    expect(report.warnings.some((w) => /1000 bootstrap resamples/.test(w))).toBe(true);
  });

  it("changes its words when the data change", () => {
    const md = buildReport(syntheticRuns(throughputSpec(undefined)), options).markdown;
    const rows = summaryRows(md);
    expect(rows).toContainEqual(["throughput", "standard deviation", "ipv4", "ebpf / iptables", "none of 3", "none of 3", "none of 3", expect.stringMatching(/^[0-3] of 3$/)]);
    expect(rows.every((r) => r[4] === "none of 3" && r[5] === "none of 3")).toBe(true);
  });

  it("is reproducible with a seed, independent of input order, and moves its intervals with the seed", () => {
    const again = buildReport([...results].reverse(), options);
    expect(again.ratios).toEqual(report.ratios);
    const other = buildReport(results, { ...options, seed: 7 });
    expect(other.ratios.map((r) => r.ratio.estimate)).toEqual(report.ratios.map((r) => r.ratio.estimate));
    expect(other.ratios.map((r) => r.ratio.low)).not.toEqual(report.ratios.map((r) => r.ratio.low));
  });

  it("warns about too few runs and refuses nothing to report", () => {
    const few = buildReport(syntheticRuns({ ...throughputSpec(undefined), runs: 5 }), options);
    expect(few.warnings.filter((w) => w.startsWith("too few runs"))).toEqual([
      `too few runs: 12 groups with 5 analysed runs, below the 20 stable spreads, tails and intervals need (throughput, ipv4 and ipv6: iptables and ebpf at 1, 1000 and 2000 Services)`,
    ]);
    // Groups of different sizes: one warning, its parts by run count, each naming exactly the groups it holds.
    const uneven = buildReport(syntheticRuns({ ...throughputSpec(undefined), runs: 5, fail: (k) => k.dataplane === "ebpf" && k.services === 2000 && k.repetition < 2 }), options);
    expect(uneven.warnings.filter((w) => w.startsWith("too few runs"))).toEqual([
      "too few runs: 12 groups below the 20 stable spreads, tails and intervals need: 2 groups with 3 analysed runs (throughput, ipv4 and ipv6: ebpf at 2000 Services); 10 groups with 5 (throughput, ipv4 and ipv6: iptables at 1, 1000 and 2000 Services, ebpf at 1 and 1000 Services)",
    ]);
    expect(() => buildReport([], options)).toThrow(/no runs/);
    expect(() => buildReport(results, { ...options, resamples: 0 })).toThrow(/resamples 0/);
  });

  it("reports a campaign whose runs all failed without a ratio, saying so", () => {
    const failed = buildReport(syntheticRuns({ ...throughputSpec(undefined), runs: 3, fail: () => true }), options);
    expect(failed.ratios).toEqual([]);
    expect(failed.cells).toEqual([]);
    expect(failed.warnings[0]).toBe("36 failed runs excluded: 3 in each of 12 groups (throughput, ipv4 and ipv6: iptables and ebpf at 1, 1000 and 2000 Services)");
    expect(failed.markdown).toMatch(/No step has runs of iptables and another dataplane/);
  });

  it("reports a step with one dataplane only as having no ratio", () => {
    const onlyIptables = results.filter((r) => !(r.services === 1 && r.dataplane === "ebpf"));
    const r = buildReport(onlyIptables, options);
    expect(r.ratios.some((x) => x.services === 1)).toBe(false);
    expect(r.warnings).toContain(
      "no ratio against iptables for 2 groups: a ratio needs at least 2 analysed runs of the group and of iptables at its step, and these or iptables have fewer (Runs analysed per group counts them): throughput, ipv4 and ipv6: ebpf at 1 Service",
    );
  });
});

describe("buildReport on delay profiles", () => {
  const delays = new Map<string, number[]>();
  const spec: FixtureSpec = {
    seed: 9,
    runs: 25,
    services: [1, 1000],
    families: ["ipv4"],
    profiles: ["latency", "setup"],
    packets: 200,
    delaysSink: delays,
    // eBPF has half the jitter of iptables in latency, and the same in setup.
    shape: (dataplane, profile) => ({ delay: { baseMs: 0.3, jitterMs: profile === "latency" && dataplane === "ebpf" ? 0.05 : 0.1 } }),
  };
  const results = syntheticRuns(spec);
  const report = buildReport(results, options);
  const cellRuns = (r: RunResult[], profile: string, dataplane: string, services: number) =>
    r.filter((x) => x.profile === profile && x.dataplane === dataplane && x.services === services);

  it("pools per-packet delays over runs: exact moments, histogram percentiles", () => {
    const runs = cellRuns(results, "latency", "iptables", 1000);
    const all = runs.flatMap((r) => delays.get(r.runId)!).map((s) => s * 1e3);
    const mean = all.reduce((s, v) => s + v, 0) / all.length;
    const std = Math.sqrt(all.reduce((s, v) => s + (v - mean) ** 2, 0) / all.length);
    const sorted = [...all].sort((a, b) => a - b);
    const p99 = sorted[Math.ceil(0.99 * sorted.length) - 1]!;
    const row = table(report, "cells.csv").find(
      (r) => r.profile === "latency" && r.services === "1000" && r.dataplane === "iptables" && r.metric === "packetDelayMs",
    )!;
    expect(row.observation).toBe("packet");
    expect(row.std_kind).toBe("population");
    expect(Number(row.n)).toBe(all.length);
    expect(Number(row.runs)).toBe(25);
    expect(Number(row.mean)).toBeCloseTo(mean, 4);
    expect(Number(row.std)).toBeCloseTo(std, 4);
    expect(Number(row.max)).toBeCloseTo(sorted.at(-1)!, 4);
    // HDR histogram of whole microseconds: within 1 µs plus 0.1%.
    expect(Math.abs(Number(row.p99) - p99)).toBeLessThan(0.001 + p99 * 0.001);
  });

  it("gives the ratio of the pooled mean delay, eBPF over iptables", () => {
    const pooledMean = (dataplane: string) => {
      const all = cellRuns(results, "latency", dataplane, 1000).flatMap((r) => delays.get(r.runId)!);
      return all.reduce((s, v) => s + v, 0) / all.length;
    };
    const row = report.ratios.find((r) => r.profile === "latency" && r.family === "ipv4" && r.services === 1000 && r.statistic === "mean")!;
    expect(row.ratio.estimate).toBeCloseTo(pooledMean("ebpf") / pooledMean("iptables"), 4);
    expect(row.ratio.low).toBeLessThanOrEqual(row.ratio.estimate);
    expect(row.ratio.high).toBeGreaterThanOrEqual(row.ratio.estimate);
  });

  it("compares latency max and std with the paper's Tables 2 and 3 and an extra profile without code for it", () => {
    const t2 = table(report, "table2-latency-ipv4.csv");
    const one = t2.find((r) => r.services === "1")!;
    expect(one.max_paper).toBe("1.1");
    expect(one.std_paper).toBe("1.82");
    expect(Number(one.std_ratio)).toBeCloseTo(0.5, 1);
    expect(Number(one.std_ci_high)).toBeLessThan(1);
    const setup = report.ratios.filter((r) => r.profile === "setup");
    expect(setup.map((r) => `${r.services}/${r.statistic}`)).toEqual(["1/mean", "1/max", "1/std", "1000/mean", "1000/max", "1000/std"]);
    expect(setup.every((r) => r.paper === undefined)).toBe(true);
    expect(setup.filter((r) => r.statistic === "std").every((r) => r.verdict === "no difference shown")).toBe(true);
    expect(report.markdown).toMatch(/## setup, ipv4: ratio of the standard deviation against iptables\n/);
    // The typical cost itself, which the paper does not tabulate, is compared too.
    expect(report.markdown).toMatch(/## setup, ipv4: ratio of the mean against iptables\n/);
    const rows = summaryRows(report.markdown);
    expect(rows).toContainEqual(["setup", "standard deviation", "ipv4", "ebpf / iptables", "none of 2", "none of 2", expect.any(String), ""]);
    expect(rows).toContainEqual(["latency", "standard deviation", "ipv4", "ebpf / iptables", "2 of 2: 1 and 1000 Services", "none of 2", expect.any(String), expect.stringMatching(/^[0-2] of 2$/)]);
    // The maximum is read by its robust companion; the paper's ratio is not held against its unreliable interval.
    expect(rows).toContainEqual(["latency", "maximum (read by the median run p99)", "ipv4", "ebpf / iptables", expect.any(String), expect.any(String), expect.any(String), "(interval unreliable)"]);
    expect(report.markdown).toMatch(/The maximum is unstable/);
    expect(report.figures.map((f) => f.file)).toEqual(
      expect.arrayContaining(["latency-ipv4.svg", "setup-ipv4.svg", "ratio-latency-max.svg", "ratio-setup-std.svg"]),
    );
  });

  it("renders figures as SVG that parse as XML and carry each dataplane's series", async () => {
    const figure = report.figures.find((f) => f.file === "latency-ipv4.svg")!;
    const svg = await renderSvg(figure.spec);
    const errors: string[] = [];
    const doc = new DOMParser({ onError: (level, msg) => void (level !== "warning" && errors.push(msg)) }).parseFromString(svg, "image/svg+xml");
    expect(errors).toEqual([]);
    expect(doc.documentElement!.nodeName).toBe("svg");
    const labels = Array.from(doc.getElementsByTagName("path"))
      .map((p) => p.getAttribute("aria-label") ?? "")
      .filter((l) => l.includes("dataplane:"));
    for (const dataplane of ["iptables", "ebpf"]) {
      for (const services of ["1", "1000"]) {
        expect(labels.some((l) => l.includes(`dataplane: ${dataplane}`) && l.startsWith(`Kubernetes Services: ${services};`))).toBe(true);
      }
    }
    const texts = Array.from(doc.getElementsByTagName("text")).map((t) => t.textContent);
    expect(texts).toEqual(expect.arrayContaining(["iptables", "ebpf", "mean", "p99", "max"]));

    const ratioSvg = await renderSvg(report.figures.find((f) => f.file === "ratio-latency-std.svg")!.spec);
    const ratioTexts = Array.from(new DOMParser().parseFromString(ratioSvg, "image/svg+xml").getElementsByTagName("text")).map((t) => t.textContent);
    expect(ratioTexts).toEqual(expect.arrayContaining(["paper", "measured (95% CI)", "ebpf"]));
  });
});

describe("buildReport on three dataplanes against a baseline", () => {
  // Connection setup: iptables pays per Service at 2000, nftables a little, eBPF nothing; at 1 Service all alike.
  const baseMs = { iptables: { 1: 0.3, 2000: 0.5 }, nftables: { 1: 0.3, 2000: 0.33 }, ebpf: { 1: 0.3, 2000: 0.3 } } as const;
  const spec: FixtureSpec = {
    seed: 5,
    runs: 12,
    dataplanes: ["iptables", "nftables", "ebpf"],
    services: [1, 2000],
    families: ["ipv4", "ipv6"],
    profiles: ["setup"],
    packets: 100,
    shape: (dataplane, _profile, services) => ({ delay: { baseMs: baseMs[dataplane][services as 1 | 2000], jitterMs: 0.02 } }),
  };
  const primary: PrimaryComparisons = {
    profile: "setup",
    services: 2000,
    statistic: "mean",
    baseline: "iptables",
    runs: 12,
    design: { alpha: 0.05, power: 0.9, minimumEffect: 0.15, runCv: 0.1 },
  };
  const results = syntheticRuns(spec);
  const report = buildReport(results, { ...options, primary, plannedRunsPerCell: 12 });

  it("compares each other dataplane with the baseline at every step and statistic, and the baseline with nothing", () => {
    const pairs = new Set(report.ratios.map((r) => `${r.dataplane}/${r.baseline}`));
    expect(pairs).toEqual(new Set(["nftables/iptables", "ebpf/iptables"]));
    expect(report.ratios).toHaveLength(2 * 2 * 2 * 3);
    const at = (dataplane: string, services: number) => report.ratios.find((r) => r.dataplane === dataplane && r.services === services && r.family === "ipv4" && r.statistic === "mean")!;
    expect(at("nftables", 2000).ratio.estimate).toBeCloseTo(0.66, 1);
    expect(at("ebpf", 2000).ratio.estimate).toBeCloseTo(0.6, 1);
    expect(at("nftables", 1).verdict).toBe("no difference shown");
    expect([at("nftables", 2000).verdict, at("ebpf", 2000).verdict]).toEqual(["lower", "lower"]);
  });

  it("tests the declared primary comparisons as their own family and everything else as exploratory", () => {
    const primaryRows = report.ratios.filter((r) => r.role === "primary");
    expect(primaryRows.map((r) => `${r.family} ${r.dataplane}`).sort()).toEqual(["ipv4 ebpf", "ipv4 nftables", "ipv6 ebpf", "ipv6 nftables"]);
    expect(primaryRows.every((r) => r.profile === "setup" && r.services === 2000 && r.statistic === "mean")).toBe(true);
    expect(report.tests).toEqual({ primary: 4, exploratory: 20 });
    // Holm within each family: the primary p-values are corrected over the four of them alone.
    expect(primaryRows.map((r) => r.pHolm)).toEqual(holmAdjust(primaryRows.map((r) => r.pValue)));
    const exploratory = report.ratios.filter((r) => r.role === "exploratory");
    expect(exploratory.map((r) => r.pHolm)).toEqual(holmAdjust(exploratory.map((r) => r.pValue)));
    // 12 runs against 12, fully separated: 2/C(24,12) = 7.4e-7, times 4 in the primary family, times 20 among the exploratory ones.
    expect(primaryRows.every((r) => r.significant)).toBe(true);
    const csv = table(report, "ratios.csv");
    expect(csv.filter((r) => r.role === "primary")).toHaveLength(4);
    expect(csv[0]).toMatchObject({ dataplane: "nftables", baseline: "iptables", n: "12", n_baseline: "12" });
  });

  it("says which tests are primary and which exploratory, and counts every dataplane's runs", () => {
    const md = report.markdown;
    expect(md).toMatch(/^# Service dataplanes against iptables: measurement report/);
    expect(md).toMatch(/Holm over 4 primary and, separately, 20 exploratory rank tests/);
    expect(md).toMatch(/## Primary comparisons\n\nThe campaign declared, before it ran, setup at 2000 Services, the mean of each dataplane against iptables, per family, as its primary comparisons, and gave each of their cells 12 runs/);
    // Each primary comparison gives both cells' values in µs beside their ratio.
    const nft = report.ratios.find((r) => r.role === "primary" && r.family === "ipv4" && r.dataplane === "nftables")!;
    const us = (ms: number) => String(Number((ms * 1000).toPrecision(3)));
    expect(nft.unit).toBe("ms");
    expect(nft.value / nft.baselineValue).toBeCloseTo(nft.ratio.estimate, 9);
    const cellMean = (dataplane: string) =>
      Number(table(report, "cells.csv").find((r) => r.profile === "setup" && r.family === "ipv4" && r.services === "2000" && r.dataplane === dataplane && r.metric === "packetDelayMs")!.mean);
    expect(nft.value).toBeCloseTo(cellMean("nftables"), 6);
    expect(nft.baselineValue).toBeCloseTo(cellMean("iptables"), 6);
    expect(md).toContain(
      `- **ipv4, nftables/iptables:** mean ${us(nft.value)} µs (nftables) against ${us(nft.baselineValue)} µs (iptables): ratio ${String(Number(nft.ratio.estimate.toPrecision(3)))} [`,
    );
    expect(md).toMatch(/- \*\*ipv4, nftables\/iptables:\*\* mean \d+ µs \(nftables\) against \d+ µs \(iptables\): ratio 0\.\d+ \[0\.\d+, 0\.\d+\], nftables lower; rank test on each run's mean per-packet delay: p = .*after Holm over the primary tests, \*\*significant\*\*/);
    // What "setup" measures is said before the word is first used.
    const setupDefined = md.indexOf("**setup**, connection setup:");
    expect(setupDefined).toBeGreaterThan(0);
    expect(md.slice(0, setupDefined)).not.toMatch(/setup/i);
    expect(md).toMatch(/nftables and ebpf are each compared with the baseline, iptables\./);
    expect(md).not.toMatch(/Each of|\(s\)|\b1 Services|\b1 runs\b|\b1 steps\b|\b1 groups\b/);
    expect(summaryRows(md)).toContainEqual(["setup", "mean", "ipv4", "ebpf / iptables", "1 of 2: 2000 Services (primary)", "none of 2", "1 of 2: 2000 Services (primary)", ""]);
    expect(summaryRows(md)).toContainEqual(["setup", "standard deviation", "ipv6", "nftables / iptables", "none of 2", "none of 2", "none of 2", ""]);
    expect(md).toMatch(/\| setup \| ipv4 \| 2000 \| 12 \| 12 \| 12 \|/);
    expect(md).toMatch(/\| 2000 \| nftables \|  \| 0\.\d+ \| \[0\.\d+, 0\.\d+\] \| nftables lower \| primary \|/);
    expect(md).toMatch(/\| 2000 \| ebpf \|  \| 0\.\d+ \| \[0\.\d+, 0\.\d+\] \| ebpf lower \| primary \|/);
    expect(md).toMatch(/\| 1 \| ebpf \|  \| [01]\.\d+ \| \[0\.\d+, 1\.\d+\] \| no difference shown \| exploratory \|/);
    expect(md).toMatch(/over the 4 \*\*primary\*\* comparisons/);
    expect(report.warnings.filter((w) => /primary|incomplete/.test(w))).toEqual([]);
  });

  it("compares with another baseline on request; the declared primary comparisons then turn exploratory, saying so", () => {
    const other = buildReport(results, { ...options, primary, baseline: "ebpf" });
    expect(new Set(other.ratios.map((r) => `${r.dataplane}/${r.baseline}`))).toEqual(new Set(["iptables/ebpf", "nftables/ebpf"]));
    expect(other.tests.primary).toBe(0);
    expect(other.warnings).toContain("the campaign declared its primary comparisons against iptables; this report compares against ebpf, so every test here is exploratory");
    const at2000 = other.ratios.find((r) => r.dataplane === "iptables" && r.services === 2000 && r.family === "ipv4" && r.statistic === "mean")!;
    expect(at2000.verdict).toBe("higher");
    expect(() => buildReport(results.filter((r) => r.dataplane !== "nftables"), { ...options, baseline: "nftables" })).toThrow(
      'baseline "nftables" has no run in these results; accepted: a dataplane they measured (iptables, ebpf)',
    );
  });

  it("warns when a primary cell lacks runs, and plans the primary cells' runs for the completeness check", () => {
    const short = buildReport(
      results.filter((r) => !(r.dataplane === "nftables" && r.family === "ipv6" && r.services === 2000)),
      { ...options, primary: { ...primary, runs: 20 }, plannedRunsPerCell: 12 },
    );
    expect(short.warnings).toContain(
      "only 3 of 4 primary comparisons (setup at 2000 Services, mean, each dataplane against iptables, per family) could be tested: a cell lacks runs",
    );
    expect(short.warnings).toContain(
      "incomplete: 5 groups with results for 12 of 20 planned runs (setup ipv4: iptables, nftables and ebpf at 2000 Services; setup ipv6: iptables and ebpf at 2000 Services)",
    );
    expect(short.warnings.filter((w) => w.startsWith("incomplete"))).toHaveLength(1);
    // The power analysis sized the primary cells for 20 runs: 12 are too few for it, whatever the general threshold.
    expect(short.warnings).toContain(
      "too few runs: 5 groups with 12 analysed runs, below the 20 the power analysis sized these primary cells for (setup ipv4: iptables, nftables and ebpf at 2000 Services; setup ipv6: iptables and ebpf at 2000 Services)",
    );
  });

  it("does not flag a cell the power analysis sized as having too few runs, and groups the others' warning", () => {
    // 12 runs per cell, below the general threshold of 20; the primary cells at 2000 Services were sized for 12.
    expect(report.warnings.filter((w) => w.startsWith("too few runs"))).toEqual([
      "too few runs: 6 groups with 12 analysed runs, below the 20 stable spreads, tails and intervals need (setup, ipv4 and ipv6: iptables, nftables and ebpf at 1 Service)",
    ]);
    const undeclared = buildReport(results, { ...options, plannedRunsPerCell: 12 });
    expect(undeclared.warnings.filter((w) => w.startsWith("too few runs"))).toEqual([
      "too few runs: 12 groups with 12 analysed runs, below the 20 stable spreads, tails and intervals need (setup, ipv4 and ipv6: iptables, nftables and ebpf at 1 and 2000 Services)",
    ]);
  });

  it("draws one series per dataplane in the cell figures and one per compared dataplane in the ratio figures", async () => {
    const texts = async (file: string) => {
      const svg = await renderSvg(report.figures.find((f) => f.file === file)!.spec);
      return Array.from(new DOMParser().parseFromString(svg, "image/svg+xml").getElementsByTagName("text")).map((t) => t.textContent);
    };
    expect(await texts("setup-ipv4.svg")).toEqual(expect.arrayContaining(["iptables", "nftables", "ebpf"]));
    const ratio = await texts("ratio-setup-mean.svg");
    expect(ratio).toEqual(expect.arrayContaining(["nftables", "ebpf"]));
    expect(ratio).not.toContain("iptables");
  });

  it("keeps the paper's tables to the paper's comparison, eBPF over iptables", () => {
    const latency = buildReport(syntheticRuns({ ...spec, profiles: ["latency"] }), options);
    const t2 = table(latency, "table2-latency-ipv4.csv").find((r) => r.services === "2000")!;
    const ebpf = latency.ratios.find((r) => r.profile === "latency" && r.family === "ipv4" && r.services === 2000 && r.statistic === "std" && r.dataplane === "ebpf")!;
    expect(t2.std_paper).not.toBe("");
    expect(Number(t2.std_ratio)).toBeCloseTo(ebpf.ratio.estimate, 4);
    expect(latency.ratios.filter((r) => r.paper).every((r) => r.dataplane === "ebpf" && r.baseline === "iptables")).toBe(true);
  });
});

describe("writeReport", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "report-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("writes report.md, every CSV table and every SVG figure, and the manifest naming each", async () => {
    const report = buildReport(syntheticRuns({ ...throughputSpec(1000), runs: 20 }), options);
    const { markdown: summary, summary: manifest } = await writeReport(report, dir);
    expect(summary).toBe(path.join(dir, "report.md"));
    const files = readdirSync(dir).sort();
    expect(files).toEqual(
      [
        "cells.csv",
        "ratio-throughput-std.svg",
        "ratios.csv",
        "report.md",
        "report.json",
        "table1-throughput-std-ratio.csv",
        "table2-latency-ipv4.csv",
        "table3-latency-ipv6.csv",
        "throughput-ipv4.svg",
        "throughput-ipv6.svg",
      ].sort(),
    );
    expect([...manifest.files].sort()).toEqual(files);
    expect(JSON.parse(readFileSync(path.join(dir, "report.json"), "utf8"))).toEqual(JSON.parse(JSON.stringify(manifest)));
    expect(readFileSync(summary, "utf8")).toBe(report.markdown);
    expect(readFileSync(path.join(dir, "throughput-ipv4.svg"), "utf8")).toMatch(/^<svg /);
  });
});
