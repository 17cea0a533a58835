// The report's figures, read back from the SVG they render to: where each point sits, what each axis spans, what
// each legend says.
import { DOMParser, type Document, type Element } from "@xmldom/xmldom";
import { describe, expect, it } from "vitest";
import { figureSpecs, ratioScale, renderSvg } from "../../measure/report-figures.js";
import type { CellStatistics, RatioRow } from "../../measure/report.js";
import { PACKET_DELAY_METRIC } from "../../measure/report.js";
import type { Dataplane } from "../../scenario/schema.js";

interface Point {
  readonly label: string;
  readonly x: number;
  readonly y: number;
}

/** The SVG of the named figure; a ratio figure is drawn for a profile the cells have, so ratios bring a cell of theirs. */
async function svgOf(cells: CellStatistics[], ratios: RatioRow[], file: string): Promise<Document> {
  const figure = figureSpecs([...cells, ...ratios.map((r) => delayCell(r.dataplane, r.services, 0.3))], ratios).find((f) => f.file === file);
  if (!figure) throw new Error(`no figure ${file}`);
  return new DOMParser().parseFromString(await renderSvg(figure.spec), "image/svg+xml");
}

/** Every symbol (a point of a series) with its ARIA label and its place within its plot. */
function points(doc: Document): Point[] {
  return Array.from(doc.getElementsByTagName("path"))
    .filter((p) => (p.parentNode as Element | null)?.getAttribute("class")?.includes("mark-symbol"))
    .map((p) => {
      const [x, y] = /translate\(([^,]+),([^)]+)\)/.exec(p.getAttribute("transform") ?? "")!.slice(1).map(Number) as [number, number];
      return { label: p.getAttribute("aria-label") ?? "", x, y };
    });
}

const pointOf = (doc: Document, label: string) => {
  const found = points(doc).filter((p) => p.label.startsWith(label));
  expect(found, label).toHaveLength(1);
  return found[0]!;
};

const texts = (doc: Document) => Array.from(doc.getElementsByTagName("text")).map((t) => t.textContent ?? "");

/** The domain an axis states in its ARIA label: "Y-axis titled '...' for a log scale with values from 0.55 to 1.2". */
function axisDomain(doc: Document, axis: "X" | "Y"): { scale: string; from: number; to: number } {
  const label = Array.from(doc.getElementsByTagName("g"))
    .map((g) => g.getAttribute("aria-label") ?? "")
    .find((l) => l.startsWith(`${axis}-axis`))!;
  const m = /for a (\w+) scale with values from (\S+) to (\S+)$/.exec(label)!;
  const num = (s: string) => Number(s.replace("−", "-").replace(/,/g, ""));
  return { scale: m[1]!, from: num(m[2]!), to: num(m[3]!) };
}

const description = { n: 10, min: 0, max: 0, mean: 0, median: 0, std: 0, p25: 0, p75: 0, p99: 0, p999: 0 };

function throughputCell(dataplane: Dataplane, services: number, mbps: number): CellStatistics {
  const spread = { min: mbps - 0.5, max: mbps + 0.5, mean: mbps, median: mbps, std: 0.2, p25: mbps - 0.1, p75: mbps + 0.1, p99: mbps + 0.4, p999: mbps + 0.5 };
  return { profile: "throughput", family: "ipv4", services, dataplane, metric: "throughputMbps", label: "", unit: "Mbit/s", observation: "run", stdKind: "sample", runs: 10, ...description, ...spread };
}

function delayCell(dataplane: Dataplane, services: number, meanMs: number): CellStatistics {
  const values = { min: meanMs / 2, max: meanMs * 10, mean: meanMs, median: meanMs, std: meanMs / 5, p25: meanMs * 0.9, p75: meanMs * 1.1, p99: meanMs * 3, p999: meanMs * 5 };
  return { profile: "latency", family: "ipv4", services, dataplane, metric: PACKET_DELAY_METRIC, label: "", unit: "ms", observation: "packet", stdKind: "population", runs: 10, ...description, ...values };
}

function ratioRow(dataplane: Dataplane, services: number, statistic: RatioRow["statistic"], ratio: [number, number, number], paper?: number): RatioRow {
  const interval = { estimate: ratio[0], low: ratio[1], high: ratio[2], confidence: 0.95, resamples: 100, undefinedResamples: 0 };
  return {
    profile: "latency", family: "ipv4", services, statistic, describes: "", dataplane, baseline: "iptables", n: 10, nBaseline: 10, value: 1, baselineValue: 1, unit: "ms",
    ratio: interval, verdict: "no difference shown", intervalReliable: true, robustName: "", robust: interval, robustVerdict: "no difference shown", testDescribes: "",
    u: 0, pValue: 1, role: "exploratory", pHolm: 1, testMethod: "exact", cliffsDelta: 0, significant: false,
    ...(paper !== undefined ? { paper: { table: "Table 2", dataplane, baseline: "iptables", profile: "latency", family: "ipv4", statistic: "std", services, ratio: paper } } : {}),
  } as RatioRow;
}

describe("report figures", () => {
  const sweep = [1, 1000, 10000];

  it("sets Service counts on evenly spaced steps, so 1 and 1000 do not crowd each other", async () => {
    const cells = sweep.flatMap((n) => (["iptables", "ebpf"] as const).map((d) => delayCell(d, n, 0.3 + n / 1e5)));
    const doc = await svgOf(cells, [], "latency-ipv4.svg");
    const x = (n: number) => pointOf(doc, `Kubernetes Services: ${n}; dataplane: iptables; mean`).x;
    // On a linear axis 1 -> 1000 would be a ninth of 1000 -> 10000; on a log axis three times it.
    expect(x(1000) - x(1)).toBeCloseTo(x(10000) - x(1000), 6);
    expect(x(1000) - x(1)).toBeGreaterThan(100);
    expect(texts(doc)).toEqual(expect.arrayContaining(["1", "1000", "10000"]));
    expect(Array.from(doc.getElementsByTagName("g")).map((g) => g.getAttribute("aria-label"))).toContain("X-axis: Kubernetes Services, one step each: 1, 1000, 10000");
    expect(axisDomain(doc, "Y").scale).toBe("log");
  });

  it("dodges the points of dataplanes that would overlap, in every kind of figure", async () => {
    const same = (["iptables", "nftables", "ebpf"] as const).flatMap((d) => [1, 1000].map((n) => delayCell(d, n, 0.3)));
    const delay = await svgOf(same, [], "latency-ipv4.svg");
    const at = (doc: Document, label: (d: string) => string) => (["iptables", "nftables", "ebpf"] as const).map((d) => pointOf(doc, label(d)));
    for (const n of [1, 1000]) {
      const [ipt, nft, ebpf] = at(delay, (d) => `Kubernetes Services: ${n}; dataplane: ${d}; mean`);
      // Equal values, side by side in the registry's order, each clear of its neighbour (symbols are about 6 px wide).
      expect(new Set([ipt!.y, nft!.y, ebpf!.y]).size).toBe(1);
      expect(nft!.x - ipt!.x).toBeGreaterThanOrEqual(8);
      expect(ebpf!.x - nft!.x).toBeCloseTo(nft!.x - ipt!.x, 6);
    }
    const throughput = await svgOf((["iptables", "nftables", "ebpf"] as const).map((d) => throughputCell(d, 1, 450)), [], "throughput-ipv4.svg");
    const [a, b] = at(throughput, (d) => `Kubernetes Services: 1; dataplane: ${d}`);
    expect(b!.x - a!.x).toBeGreaterThanOrEqual(8);
    const ratios = await svgOf([], [ratioRow("nftables", 1, "mean", [1, 0.9, 1.1]), ratioRow("ebpf", 1, "mean", [1, 0.9, 1.1])], "ratio-latency-mean.svg");
    const nft = pointOf(ratios, "Kubernetes Services: 1; dataplane: nftables");
    const ebpf = pointOf(ratios, "Kubernetes Services: 1; dataplane: ebpf");
    expect(nft.y).toBe(ebpf.y);
    expect(ebpf.x - nft.x).toBeGreaterThanOrEqual(8);
  });

  it("keeps eleven steps of three dataplanes apart", async () => {
    const steps = [1, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000];
    const doc = await svgOf(steps.flatMap((n) => (["iptables", "nftables", "ebpf"] as const).map((d) => delayCell(d, n, 0.3))), [], "latency-ipv4.svg");
    const xs = points(doc).filter((p) => p.label.endsWith("; mean: 0.3")).map((p) => p.x).sort((a, b) => a - b);
    expect(xs).toHaveLength(33);
    expect(Math.min(...xs.slice(1).map((x, i) => x - xs[i]!))).toBeGreaterThan(7.9);
  });

  it("fits a ratio axis to the data and to 1, not to whole decades", async () => {
    const rows = [ratioRow("ebpf", 1, "mean", [0.7, 0.62, 0.8]), ratioRow("ebpf", 1000, "mean", [0.95, 0.9, 1.02])];
    const doc = await svgOf([], rows, "ratio-latency-mean.svg");
    const y = axisDomain(doc, "Y");
    expect(y.scale).toBe("log");
    expect(y.from).toBeGreaterThan(0.5);
    expect(y.from).toBeLessThan(0.62);
    expect(y.to).toBeGreaterThan(1.02);
    expect(y.to).toBeLessThan(1.2);
    // The points use the height: 0.7 and 0.95 lie far apart, not squeezed into a fifth of a 0.1-10 axis.
    const dy = pointOf(doc, "Kubernetes Services: 1; dataplane: ebpf").y - pointOf(doc, "Kubernetes Services: 1000; dataplane: ebpf").y;
    expect(dy).toBeGreaterThan(240 * 0.4);
  });

  it("fits the axis without an end it cannot show, and draws such an end at the axis' edge", () => {
    const fit = ratioScale([0.4, 2], [0, Infinity, 0.3, 2.5]);
    expect(fit.scale).toEqual({ type: "log", domain: [0.3 / 1.1, 2.5 * 1.1], nice: false });
    expect([fit.edge(0), fit.edge(Infinity), fit.edge(1.5)]).toEqual([0.3 / 1.1, 2.5 * 1.1, 1.5]);
    // A ratio of 0 (a dataplane without spread) has no place on a log axis: linear, fitted, with 1 in it.
    const zero = ratioScale([0, 0.5], [0, 0.8]);
    expect(zero.scale).toEqual({ type: "linear", domain: [-0.05, 1.05], nice: false, zero: false });
  });

  it("names the paper in a ratio figure only where the paper has the statistic", async () => {
    const mean = await svgOf([], [ratioRow("ebpf", 1, "mean", [0.9, 0.8, 1])], "ratio-latency-mean.svg");
    expect(texts(mean)).not.toContain("paper");
    expect(texts(mean).join(" ")).not.toMatch(/paper/);
    const std = await svgOf([], [ratioRow("ebpf", 1, "std", [0.9, 0.8, 1], 1.82)], "ratio-latency-std.svg");
    expect(texts(std)).toEqual(expect.arrayContaining(["paper", "measured (95% CI)"]));
    // The paper's cross sits where its dataplane's point does, on the fitted axis.
    expect(pointOf(std, "Kubernetes Services: 1; dataplane: ebpf; ipv4; paper's ratio").x).toBe(pointOf(std, "Kubernetes Services: 1; dataplane: ebpf; ipv4; ratio").x);
    expect(axisDomain(std, "Y").to).toBeGreaterThan(1.82);
    const titles = figureSpecs([delayCell("ebpf", 1, 0.3)], [ratioRow("ebpf", 1, "mean", [0.9, 0.8, 1]), ratioRow("ebpf", 1, "std", [0.9, 0.8, 1], 1.82)]).map((f) => f.title);
    expect(titles.find((t) => t.startsWith("latency: ratio of the mean"))).not.toMatch(/paper/);
    expect(titles.find((t) => t.startsWith("latency: ratio of the std"))).toMatch(/and the paper's$/);
  });

  it("draws throughput from zero, so a 0.06% difference stays a hair's breadth", async () => {
    const doc = await svgOf([throughputCell("iptables", 1, 450), throughputCell("ebpf", 1, 450 * 1.0006)], [], "throughput-ipv4.svg");
    const y = axisDomain(doc, "Y");
    expect(y.from).toBe(0);
    const dy = Math.abs(pointOf(doc, "Kubernetes Services: 1; dataplane: iptables").y - pointOf(doc, "Kubernetes Services: 1; dataplane: ebpf").y);
    expect(dy).toBeLessThan(0.01 * 280);
  });
});
