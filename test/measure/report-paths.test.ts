// The report of a campaign over several Service paths: the path is one more dimension of every cell, the paper's
// path reads exactly as it did alone, and the summary says per path which dataplane is faster.
import { parse } from "csv-parse/sync";
import { describe, expect, it } from "vitest";
import { loadPaperReference } from "../../measure/paper-reference.js";
import { buildReport, type Report, type ReportOptions } from "../../measure/report.js";
import { hopsCsv, HOPS_CSV_HEADER, type HopCell } from "../../measure/report-hops.js";
import type { PrimaryComparisons } from "../../measure/campaign-plan.js";
import type { RunResult } from "../../measure/types.js";
import type { PooledSection } from "../../measure/hops.js";
import type { ServicePath } from "../../scenario/paths.js";
import type { Dataplane } from "../../scenario/schema.js";
import { syntheticRuns, type FixtureSpec } from "./report-fixtures.js";

const paper = loadPaperReference();
const options: ReportOptions = { seed: 2025, resamples: 500, paper };
type Row = Record<string, string>;
const table = (report: Report, file: string): Row[] => parse(report.tables.find((t) => t.file === file)!.csv, { columns: true }) as Row[];
const header = (report: Report, file: string) => report.tables.find((t) => t.file === file)!.csv.split("\n")[0]!;

/** Latency runs of one path: the base delay of each dataplane on it (ms). */
function pathRuns(path: ServicePath, baseMs: Record<Dataplane, number>, seed: number): RunResult[] {
  const spec: FixtureSpec = {
    seed,
    runs: 8,
    dataplanes: ["iptables", "nftables", "ebpf"],
    services: [1, 1000],
    families: ["ipv4", "ipv6"],
    profiles: ["latency"],
    packets: 60,
    shape: (dataplane) => ({ delay: { baseMs: baseMs[dataplane], jitterMs: 0.01 } }),
  };
  return syntheticRuns(spec).map((r) => (path === "nodeport-local" ? r : { ...r, path, runId: `${r.runId}-${path}` }));
}

const local = pathRuns("nodeport-local", { iptables: 0.3, nftables: 0.3, ebpf: 0.25 }, 7);
// The remote NodePort: iptables faster than eBPF's SNAT model; the ClusterIP: eBPF's socket LB well ahead.
const remote = pathRuns("nodeport-remote", { iptables: 0.4, nftables: 0.42, ebpf: 0.5 }, 8);
const clusterip = pathRuns("clusterip", { iptables: 0.4, nftables: 0.39, ebpf: 0.2 }, 9);

describe("a report over several Service paths", () => {
  const alone = buildReport(local, options);
  const all = buildReport([...clusterip, ...local, ...remote], options);

  it("keeps the paper's path alone as it was: no path column, no path in its words", () => {
    expect(header(alone, "cells.csv").startsWith("profile,family,services,dataplane,")).toBe(true);
    expect(header(alone, "ratios.csv").startsWith("profile,family,")).toBe(true);
    expect(alone.cells.every((c) => !("path" in c))).toBe(true);
    expect(alone.markdown).not.toContain("nodeport-local");
    expect(alone.markdown).not.toContain("per path");
  });

  it("gives cells.csv and ratios.csv a path column, with the paper's path's rows, numbers and intervals unchanged", () => {
    expect(header(all, "cells.csv").startsWith("path,profile,family,services,dataplane,")).toBe(true);
    expect(header(all, "ratios.csv").startsWith("path,profile,family,")).toBe(true);
    const cells = table(all, "cells.csv");
    expect(new Set(cells.map((r) => r.path))).toEqual(new Set(["nodeport-local", "nodeport-remote", "clusterip"]));
    // Adding paths moves none of the paper's path's numbers, its bootstrap intervals included (their seeds are its own);
    // only Holm's correction counts the other paths' exploratory tests too.
    const strip = (rows: Row[]) => rows.filter((r) => r.path === "nodeport-local").map(({ path: _, p_holm: _p, significant: _s, ...rest }) => rest);
    expect(strip(cells)).toEqual(table(alone, "cells.csv"));
    expect(strip(table(all, "ratios.csv"))).toEqual(strip(table(alone, "ratios.csv").map((r) => ({ ...r, path: "nodeport-local" }))));
    const holm = (rows: Row[]) => rows.filter((r) => (r.path ?? "nodeport-local") === "nodeport-local").map((r) => Number(r.p_holm));
    holm(table(all, "ratios.csv")).forEach((p, i) => expect(p).toBeGreaterThanOrEqual(holm(table(alone, "ratios.csv"))[i]!));
    // The paper measured its own path: its ratios stand beside that path's rows alone.
    const ratios = table(all, "ratios.csv");
    expect(ratios.filter((r) => r.paper_ratio !== "").every((r) => r.path === "nodeport-local")).toBe(true);
    expect(ratios.filter((r) => r.path === "nodeport-local" && r.paper_ratio !== "").length).toBeGreaterThan(0);
    const unholm = (rows: Row[]) => rows.map(({ max_p_holm: _m, std_p_holm: _s, ...rest }) => rest);
    expect(unholm(table(all, "table2-latency-ipv4.csv"))).toEqual(unholm(table(alone, "table2-latency-ipv4.csv")));
  });

  it("says per path which dataplane is faster, by how much against the baseline", () => {
    const section = all.markdown.split("## Which dataplane is faster, per path")[1]!.split("\n## ")[0]!;
    const rowsOf = (path: string) =>
      section
        .split(`### ${path}\n`)[1]!
        .split("\n### ")[0]!
        .split("\n")
        .filter((l) => l.startsWith("| latency"))
        .map((l) => l.slice(2, -2).split(" | "));
    expect(rowsOf("nodeport-local").map((r) => r[3])).toEqual(Array(4).fill("**ebpf**"));
    expect(rowsOf("nodeport-remote").map((r) => r[3])).toEqual(Array(4).fill("**iptables**"));
    expect(rowsOf("clusterip").map((r) => r[3])).toEqual(Array(4).fill("**ebpf**"));
    // By how much: eBPF at about half of iptables' mean on the ClusterIP path, its interval below 1.
    const [ipv4At1] = rowsOf("clusterip");
    expect(ipv4At1![5]).toMatch(/ebpf 0\.5\d*x \[0\.\d+, 0\.\d+\], ebpf lower/);
    // The summary table and the ratio sections are per path too.
    expect(all.markdown).toMatch(/\| clusterip \| latency \| mean \| ipv4 \| ebpf \/ iptables \|/);
    expect(all.markdown).toContain("## nodeport-remote: latency, ipv4: ratio of the mean");
  });

  it("declares the primary comparisons per path: each path has its own, corrected together", () => {
    const primary: PrimaryComparisons = {
      profile: "latency", services: 1000, statistic: "mean", baseline: "iptables", runs: 8,
      design: { alpha: 0.05, power: 0.9, minimumEffect: 0.15, runCv: 0.1 },
    };
    const report = buildReport([...local, ...remote, ...clusterip], { ...options, primary });
    const rows = report.ratios.filter((r) => r.role === "primary");
    // 3 paths x 2 families x 2 dataplanes against iptables.
    expect(rows).toHaveLength(12);
    expect(new Set(rows.map((r) => r.path ?? "nodeport-local"))).toEqual(new Set(["nodeport-local", "nodeport-remote", "clusterip"]));
    expect(report.tests.primary).toBe(12);
    expect(report.warnings.filter((w) => w.includes("primary comparisons"))).toEqual([]);
    // A path whose primary cells lack runs is counted as missing.
    const short = buildReport([...local, ...remote, ...clusterip.filter((r) => r.services !== 1000)], { ...options, primary });
    expect(short.warnings.some((w) => w.startsWith("only 8 of 12 primary comparisons") && w.includes("per family and path"))).toBe(true);
  });

  it("names the path of the cells a warning counts", () => {
    const failed = buildReport([...local, ...clusterip.map((r) => (r.dataplane === "ebpf" && r.repetition === 0 ? { ...r, status: "failed" as const, failure: "x" } : r))], options);
    expect(failed.warnings.find((w) => w.includes("failed run"))).toMatch(/clusterip: latency, ipv4 and ipv6: ebpf at 1 and 1000 Services/);
  });
});

describe("hops.csv over several paths", () => {
  const section = (name: string, meanS: number): PooledSection =>
    ({ direction: "forward", section: name, packets: 10, runs: 1, meanS, stdS: 0, p50S: meanS, p99S: meanS, p999S: meanS, maxS: meanS, minS: meanS }) as unknown as PooledSection;
  const cell = (path: ServicePath | undefined, sections: PooledSection[]): HopCell => ({
    ...(path ? { path } : {}), dataplane: "iptables", family: "ipv4", services: 1, scope: "path", runs: 1, runsAddingUp: 1, sections, firstPacketRuns: 0, connect: [], maxResidualS: 0, incompletePackets: 0, droppedStamps: 0, unsampledStamps: 0, sampleEvery: [8],
  });
  const fmt = (x: number) => String(x);

  it("keeps the contract's header for the paper's path alone, and puts the path first when there are others", () => {
    expect(hopsCsv([cell(undefined, [section("service-dataplane", 1e-5)])], fmt).split("\n")[0]).toBe(HOPS_CSV_HEADER.join(","));
    const csv = hopsCsv([cell(undefined, [section("service-dataplane", 1e-5)]), cell("nodeport-remote", [section("worker-to-worker", 2e-5)])], fmt);
    const rows = parse(csv, { columns: true }) as Row[];
    expect(Object.keys(rows[0]!)).toEqual(["path", ...HOPS_CSV_HEADER]);
    // Sections of the paper's path alone, in a report whose runs go beyond it: the column is there all the same.
    expect(hopsCsv([cell(undefined, [section("service-dataplane", 1e-5)])], fmt, true).split("\n")[0]).toBe(`path,${HOPS_CSV_HEADER.join(",")}`);
    expect(rows.filter((r) => r.statistic === "mean").map((r) => [r.path, r.section, r.valueS])).toEqual([
      ["nodeport-local", "service-dataplane", "0.00001"],
      ["nodeport-remote", "worker-to-worker", "0.00002"],
    ]);
  });
});
