// The report's "programming latency" section: what a Service change costs each dataplane. Per
// dataplane, family, Service count and change, over the programming runs' changes: the time until the
// packets saw it (the probe), the kernel's commit of the write and the control plane's whole sync, as
// p50, p90, p99, mean and max; how full-sync grows with the Service count (the exponent of a power law
// fitted on a log-log scale); and where a cold start was split into several transactions (nftables,
// kubernetes issue #139328), whether that removes the super-linear growth. programming.csv holds the
// programming latency, programming-commit.csv the commit and sync times. Where the changes were read
// with the control plane's own histograms (the cloud: kube-proxy's or the Cilium agent's metrics),
// what they counted over each cell's changes, with quantiles estimated from the buckets as
// Prometheus' histogram_quantile does, in programming-metrics.csv. Generic over dataplanes.
import type { TopLevelSpec } from "vega-lite";
import { DATAPLANES, FAMILIES } from "../scenario/schema.js";
import { addHistograms, histogramQuantile, type MetricHistogram } from "./control-plane-metrics.js";
import { maxOf, quantile } from "./statistics.js";
import { COLD_START_CHANGES, PROGRAMMING_CHANGES, type ChangeMeasurement, type MeasuredChange, type RunResult } from "./types.js";

export const PROGRAMMING_CSV_HEADER = ["dataplane", "family", "services", "change", "statistic", "valueS"] as const;
export const PROGRAMMING_STATISTICS = ["p50", "p90", "p99", "mean", "max"] as const;
export type ProgrammingStatistic = (typeof PROGRAMMING_STATISTICS)[number];
/** The measures of a change: until the packets see it, the kernel's commit, the control plane's sync. */
export const CHANGE_MEASURES = ["programmedS", "commitS", "syncS"] as const;
export type ChangeMeasure = (typeof CHANGE_MEASURES)[number];
/** An exponent above this reads as super-linear growth. */
export const SUPER_LINEAR_EXPONENT = 1.15;
/** Service counts at or above this carry the fit when two or more of them were measured (below, fixed costs dominate). */
export const FIT_FROM_SERVICES = 100;

export interface ChangeCell {
  readonly dataplane: string;
  readonly family: string;
  readonly services: number;
  readonly change: MeasuredChange;
  /** Changes measured (a run makes remove-one twice). */
  readonly n: number;
  readonly statistics: Readonly<Record<ChangeMeasure, Readonly<Record<ProgrammingStatistic, number>> | undefined>>;
  readonly probes: { readonly sent: number; readonly flaps: number; readonly timeouts: number };
}

/** A power law t = a * N^exponent fitted by least squares on log t against log N. */
export interface GrowthFit {
  readonly dataplane: string;
  readonly family: string;
  readonly change: MeasuredChange;
  readonly measure: ChangeMeasure;
  readonly exponent: number;
  /** The Service counts the fit used (their medians). */
  readonly services: readonly number[];
}

export interface ProgrammingReport {
  readonly cells: readonly ChangeCell[];
  readonly growth: readonly GrowthFit[];
  readonly tables: readonly { file: string; title: string; csv: string }[];
  readonly figures: readonly { file: string; title: string; spec: TopLevelSpec }[];
  readonly markdown: readonly string[];
}

const CHANGE_ORDER: readonly MeasuredChange[] = [...PROGRAMMING_CHANGES, ...COLD_START_CHANGES];
const dataplaneRank = (d: string) => ((DATAPLANES as readonly string[]).includes(d) ? (DATAPLANES as readonly string[]).indexOf(d) : DATAPLANES.length);

function statisticsOf(values: readonly number[]): Record<ProgrammingStatistic, number> | undefined {
  if (values.length === 0) return undefined;
  return {
    p50: quantile(values, 0.5),
    p90: quantile(values, 0.9),
    p99: quantile(values, 0.99),
    mean: values.reduce((a, b) => a + b, 0) / values.length,
    max: maxOf(values),
  };
}

/** Pure: the cells of the campaign's ok programming runs; empty when there are none. */
export function changeCells(results: readonly RunResult[]): ChangeCell[] {
  const groups = new Map<string, { key: Omit<ChangeCell, "n" | "statistics" | "probes">; changes: ChangeMeasurement[] }>();
  for (const r of results) {
    if (r.status !== "ok" || !r.changes) continue;
    for (const c of r.changes) {
      const id = `${r.dataplane}/${r.family}/${r.services}/${c.change}`;
      const g = groups.get(id) ?? { key: { dataplane: r.dataplane, family: r.family, services: r.services, change: c.change }, changes: [] };
      g.changes.push(c);
      groups.set(id, g);
    }
  }
  const cells = [...groups.values()].map(({ key, changes }): ChangeCell => {
    const of = (m: ChangeMeasure) => statisticsOf(changes.map((c) => c[m]).filter((x): x is number => typeof x === "number" && Number.isFinite(x)));
    return {
      ...key,
      n: changes.length,
      statistics: { programmedS: of("programmedS"), commitS: of("commitS"), syncS: of("syncS") },
      probes: {
        sent: changes.reduce((s, c) => s + (c.probes?.sent ?? 0), 0),
        flaps: changes.reduce((s, c) => s + (c.probes?.flaps ?? 0), 0),
        timeouts: changes.reduce((s, c) => s + (c.probes?.timeouts ?? 0), 0),
      },
    };
  });
  return cells.sort(
    (a, b) =>
      FAMILIES.indexOf(a.family as never) - FAMILIES.indexOf(b.family as never) ||
      a.services - b.services ||
      CHANGE_ORDER.indexOf(a.change) - CHANGE_ORDER.indexOf(b.change) ||
      dataplaneRank(a.dataplane) - dataplaneRank(b.dataplane),
  );
}

/** Pure: the exponent of a power law through (n, t) points by least squares on logs; NaN with fewer than two distinct n. */
export function powerLawExponent(points: readonly { n: number; t: number }[]): number {
  const usable = points.filter((p) => p.n > 0 && p.t > 0);
  if (new Set(usable.map((p) => p.n)).size < 2) return Number.NaN;
  const xs = usable.map((p) => Math.log(p.n));
  const ys = usable.map((p) => Math.log(p.t));
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  let sxy = 0;
  let sxx = 0;
  xs.forEach((x, i) => {
    sxy += (x - mx) * (ys[i]! - my);
    sxx += (x - mx) ** 2;
  });
  return sxy / sxx;
}

/** Pure: the growth of a change's median with the Service count, per dataplane and family. */
export function growthFits(cells: readonly ChangeCell[], change: MeasuredChange, measure: ChangeMeasure): GrowthFit[] {
  const fits: GrowthFit[] = [];
  const series = new Map<string, ChangeCell[]>();
  for (const c of cells) {
    if (c.change !== change || !c.statistics[measure]) continue;
    const id = `${c.dataplane}/${c.family}`;
    series.set(id, [...(series.get(id) ?? []), c]);
  }
  for (const list of series.values()) {
    const large = list.filter((c) => c.services >= FIT_FROM_SERVICES);
    const used = large.length >= 2 ? large : list;
    const exponent = powerLawExponent(used.map((c) => ({ n: c.services, t: c.statistics[measure]!.p50 })));
    if (Number.isNaN(exponent)) continue;
    fits.push({ dataplane: list[0]!.dataplane, family: list[0]!.family, change, measure, exponent, services: used.map((c) => c.services) });
  }
  return fits.sort((a, b) => FAMILIES.indexOf(a.family as never) - FAMILIES.indexOf(b.family as never) || dataplaneRank(a.dataplane) - dataplaneRank(b.dataplane));
}

/** Pure: programming.csv (the programming latency of the four changes) or programming-commit.csv (commit and sync of every change). */
export function programmingCsv(cells: readonly ChangeCell[], measure: ChangeMeasure, formatNumber: (x: number) => string): string {
  const lines = [PROGRAMMING_CSV_HEADER.join(",")];
  for (const c of cells) {
    const s = c.statistics[measure];
    if (!s || (measure === "programmedS" && !(PROGRAMMING_CHANGES as readonly string[]).includes(c.change))) continue;
    for (const statistic of PROGRAMMING_STATISTICS) lines.push([c.dataplane, c.family, c.services, c.change, statistic, formatNumber(s[statistic])].join(","));
  }
  return `${lines.join("\n")}\n`;
}

function figure(family: string, measure: "programmedS" | "commitS", cells: readonly ChangeCell[]): { file: string; title: string; spec: TopLevelSpec } {
  const what = measure === "programmedS" ? "from the change to the first connection that saw it" : "the kernel's commit of the write";
  const values = cells
    .filter((c) => c.family === family && c.statistics[measure] && (measure === "commitS" || (PROGRAMMING_CHANGES as readonly string[]).includes(c.change)))
    .flatMap((c) =>
      (["p50", "p99"] as const).map((statistic) => ({
        dataplane: c.dataplane,
        services: c.services,
        change: c.change,
        statistic,
        ms: Math.max(c.statistics[measure]![statistic] * 1000, 0.001),
      })),
    );
  const shown = DATAPLANES.filter((d) => values.some((v) => v.dataplane === d));
  const palette = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];
  return {
    file: `programming-${measure === "programmedS" ? "latency" : "commit"}-${family}.svg`,
    title: `programming, ${family}: p50 and p99 of the time ${what}, against the Service count, per change and dataplane`,
    spec: {
      $schema: "https://vega.github.io/schema/vega-lite/v6.json",
      title: { text: `programming, ${family}`, subtitle: `p50 (solid) and p99 (dashed) of the time ${what}` },
      data: { values },
      facet: { column: { field: "change", type: "nominal", title: "change", sort: CHANGE_ORDER.filter((c) => values.some((v) => v.change === c)) } },
      spec: {
        width: 170,
        height: 220,
        mark: { type: "line", point: true },
        encoding: {
          x: { field: "services", type: "quantitative", title: "Kubernetes Services", scale: { type: "symlog" } },
          y: { field: "ms", type: "quantitative", title: "ms", scale: { type: "log" } },
          color: { field: "dataplane", type: "nominal", title: "dataplane", scale: { domain: shown, range: shown.map((d) => palette[DATAPLANES.indexOf(d)]!) } },
          strokeDash: { field: "statistic", type: "nominal", title: "statistic", sort: ["p50", "p99"] },
          detail: { field: "statistic", type: "nominal" },
          tooltip: [{ field: "dataplane" }, { field: "services" }, { field: "statistic" }, { field: "ms", format: ".2f" }],
        },
      },
    },
  };
}

export const METRICS_CSV_HEADER = ["dataplane", "family", "services", "change", "metric", "statistic", "value"] as const;
/** What the metrics table gives per histogram: observations, mean and estimated quantiles (seconds). */
export const METRIC_STATISTICS = ["count", "mean", "p50", "p90", "p99"] as const;

/** The control plane's histogram summed over a cell's changes. */
export interface MetricCell {
  readonly dataplane: string;
  readonly family: string;
  readonly services: number;
  readonly change: MeasuredChange;
  readonly metric: string;
  /** Changes it was read over. */
  readonly changes: number;
  readonly histogram: MetricHistogram;
  readonly statistics: Readonly<Record<(typeof METRIC_STATISTICS)[number], number>>;
}

/** Pure: per dataplane, family, Service count, change and histogram, what the control plane counted over the ok runs' changes. */
export function metricCells(results: readonly RunResult[]): MetricCell[] {
  const groups = new Map<string, { key: Omit<MetricCell, "changes" | "histogram" | "statistics">; list: MetricHistogram[] }>();
  for (const r of results) {
    if (r.status !== "ok" || !r.changes) continue;
    for (const c of r.changes) {
      for (const h of c.metrics ?? []) {
        const id = `${r.dataplane}/${r.family}/${r.services}/${c.change}/${h.name}`;
        const g = groups.get(id) ?? { key: { dataplane: r.dataplane, family: r.family, services: r.services, change: c.change, metric: h.name }, list: [] };
        g.list.push(h);
        groups.set(id, g);
      }
    }
  }
  const cells = [...groups.values()].map(({ key, list }): MetricCell => {
    // Every change counts, also one over which nothing was observed.
    const histogram = addHistograms(list)!;
    return {
      ...key,
      changes: list.length,
      histogram,
      statistics: {
        count: histogram.count,
        mean: histogram.count > 0 ? histogram.sumS / histogram.count : Number.NaN,
        p50: histogramQuantile(histogram, 0.5),
        p90: histogramQuantile(histogram, 0.9),
        p99: histogramQuantile(histogram, 0.99),
      },
    };
  });
  return cells.sort(
    (a, b) =>
      FAMILIES.indexOf(a.family as never) - FAMILIES.indexOf(b.family as never) ||
      a.services - b.services ||
      CHANGE_ORDER.indexOf(a.change) - CHANGE_ORDER.indexOf(b.change) ||
      dataplaneRank(a.dataplane) - dataplaneRank(b.dataplane) ||
      a.metric.localeCompare(b.metric),
  );
}

/** Pure: programming-metrics.csv. */
export function metricsCsv(cells: readonly MetricCell[], formatNumber: (x: number) => string): string {
  const lines = [METRICS_CSV_HEADER.join(",")];
  for (const c of cells) {
    for (const statistic of METRIC_STATISTICS) lines.push([c.dataplane, c.family, c.services, c.change, c.metric, statistic, formatNumber(c.statistics[statistic])].join(","));
  }
  return `${lines.join("\n")}\n`;
}

const ms = (s: number | undefined, fmt: (x: number | undefined) => string) => (s === undefined || Number.isNaN(s) ? "n/a" : fmt(s * 1000));

/** Pure: the section, its tables and figures; undefined when no run made changes. */
export function programmingReport(results: readonly RunResult[], format: { fmt: (x: number | undefined) => string; number: (x: number) => string }): ProgrammingReport | undefined {
  const cells = changeCells(results);
  if (cells.length === 0) return undefined;
  const { fmt } = format;
  const growth = [
    ...growthFits(cells, "full-sync", "commitS"),
    ...growthFits(cells, "full-sync", "programmedS"),
    ...growthFits(cells, "cold-start", "commitS"),
    ...growthFits(cells, "cold-start-split", "commitS"),
  ];
  const runs = results.filter((r) => r.profile === "programming");
  const md: string[] = [
    "## Programming latency",
    "",
    `What a Service change costs each dataplane (${runs.filter((r) => r.status === "ok").length} of ${runs.length} programming runs analysed). Each run, at its step and family, makes the changes through the dataplane's control plane: **remove-one** (the step's last NodePort Service deleted; twice per run), **add-one** (it is created again, with a ready endpoint), **add-100** (it and the sweep's next 99 Services created at once), **full-sync** (the control plane restarts while that Service was created: kube-proxy's first sync after a restart, the Cilium agent restoring its maps), and, where measured, **cold-start** (everything written from nothing, as on a new node) and **cold-start-split** (the same split into transactions of at most 1000 operations: endpoint chains first, then the Service chains and maps, kubernetes issue #139328). For each: **programmed**, from the start of the change to the first new connection through the Service's NodePort that saw it (answered for an addition, refused for a removal; a probe every millisecond or faster, each attempt from its own source port and judged by its first SYN alone, so neither a retransmission nor an earlier conntrack entry can move the reading); **commit**, the kernel's part (iptables-restore, every nft -f, the bpf(2) map calls); **sync**, the control plane's whole sync of the change's family (reading the kernel, computing, writing: what kube-proxy's sync_proxy_rules_duration_seconds measures). Times in ms over the cell's changes.`,
    "",
    "| family | Services | change | dataplane | n | programmed p50 / p90 / p99 | commit p50 / p99 | sync p50 | probes: flaps / timeouts |",
    "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const c of cells) {
    const p = c.statistics.programmedS;
    const k = c.statistics.commitS;
    md.push(
      `| ${c.family} | ${c.services} | ${c.change} | ${c.dataplane} | ${c.n} | ${p ? `${ms(p.p50, fmt)} / ${ms(p.p90, fmt)} / ${ms(p.p99, fmt)}` : "not probed"} | ${k ? `${ms(k.p50, fmt)} / ${ms(k.p99, fmt)}` : "n/a"} | ${ms(c.statistics.syncS?.p50, fmt)} | ${p ? `${c.probes.flaps} / ${c.probes.timeouts}` : ""} |`,
    );
  }
  md.push("", "**How full-sync grows with the Service count** (a power law t = a N^k fitted to the medians on a log-log scale; k near 1 is linear, above 1.15 super-linear):", "");
  const fitLine = (f: GrowthFit) => `${f.dataplane} ${f.family}: k = ${fmt(f.exponent)} (${f.measure === "commitS" ? "commit" : "programmed"}, over ${f.services.join(", ")} Services)`;
  const fullSync = growth.filter((g) => g.change === "full-sync");
  md.push(fullSync.length ? fullSync.map((f) => `- ${fitLine(f)}`).join("\n") : "- Fewer than two Service counts: no exponent.");
  const split = growth.filter((g) => g.change === "cold-start-split");
  if (split.length > 0) {
    md.push("", "**Cold start in one transaction or split (kubernetes issue #139328)**, commit:", "");
    for (const s of split) {
      const whole = growth.find((g) => g.change === "cold-start" && g.measure === "commitS" && g.dataplane === s.dataplane && g.family === s.family);
      const wholeCells = cells.filter((c) => c.change === "cold-start" && c.dataplane === s.dataplane && c.family === s.family);
      const largest = Math.max(...wholeCells.map((c) => c.services));
      const at = (change: MeasuredChange) => cells.find((c) => c.change === change && c.dataplane === s.dataplane && c.family === s.family && c.services === largest)?.statistics.commitS?.p50;
      const removes = whole !== undefined && whole.exponent > SUPER_LINEAR_EXPONENT && s.exponent <= SUPER_LINEAR_EXPONENT;
      md.push(
        `- ${s.dataplane} ${s.family}: one transaction k = ${whole ? fmt(whole.exponent) : "n/a"}, split k = ${fmt(s.exponent)} (over ${s.services.join(", ")} Services); at ${largest} Services ${ms(at("cold-start"), fmt)} against ${ms(at("cold-start-split"), fmt)} ms. ${
          whole === undefined
            ? "No exponent for the single transaction."
            : whole.exponent <= SUPER_LINEAR_EXPONENT
              ? "The single transaction does not grow super-linearly here: there is nothing for the split to remove."
              : removes
                ? "**The split removes the super-linear growth on this kernel.**"
                : "**The split does not remove the super-linear growth on this kernel.**"
        }`,
      );
    }
  }
  // At the largest step, what a full sync costs against one new Service, per dataplane.
  const largest = Math.max(...cells.map((c) => c.services));
  const atLargest = cells.filter((c) => c.services === largest && c.change === "full-sync");
  if (atLargest.length > 0) {
    md.push("", `**At ${largest} Services**, full-sync against add-one (commit p50):`, "");
    for (const f of atLargest) {
      const add = cells.find((c) => c.services === largest && c.change === "add-one" && c.dataplane === f.dataplane && c.family === f.family);
      const ratio = add?.statistics.commitS && f.statistics.commitS ? f.statistics.commitS.p50 / add.statistics.commitS.p50 : Number.NaN;
      md.push(`- ${f.dataplane} ${f.family}: ${ms(f.statistics.commitS?.p50, fmt)} against ${ms(add?.statistics.commitS?.p50, fmt)} ms (${fmt(ratio)} times)`);
    }
  }
  const metrics = metricCells(results);
  if (metrics.length > 0) {
    md.push(
      "",
      "**What the control plane counted** over the same changes, from its own metrics endpoint read before and after each change (kube-proxy: kubeproxy_sync_proxy_rules_duration_seconds, one observation per sync, and kubeproxy_network_programming_duration_seconds, from the endpoint change's trigger time to the rules synced; the Cilium agent: cilium_service_implementation_delay, from the Service or pod change to its maps written, and cilium_bpf_syscall_duration_seconds, one per bpf(2) call). Summed over the cell's changes; quantiles estimated from the histogram's buckets as Prometheus' histogram_quantile does; kube-proxy without an ip_family label counts both families' syncs. Times in ms.",
      "",
      "| family | Services | change | dataplane | metric | changes | observations | mean | p50 / p90 / p99 |",
      "| --- | ---: | --- | --- | --- | ---: | ---: | ---: | ---: |",
    );
    for (const m of metrics) {
      const st = m.statistics;
      md.push(`| ${m.family} | ${m.services} | ${m.change} | ${m.dataplane} | ${m.metric} | ${m.changes} | ${st.count} | ${ms(st.mean, fmt)} | ${ms(st.p50, fmt)} / ${ms(st.p90, fmt)} / ${ms(st.p99, fmt)} |`);
    }
  }
  md.push("");
  const families = FAMILIES.filter((f) => cells.some((c) => c.family === f));
  return {
    cells,
    growth,
    tables: [
      { file: "programming.csv", title: "Programming latency: from a Service change to the first connection that saw it, per dataplane, family, Service count and change (seconds)", csv: programmingCsv(cells, "programmedS", format.number) },
      { file: "programming-commit.csv", title: "The kernel's commit of each change's write, per dataplane, family, Service count and change, cold starts included (seconds)", csv: programmingCsv(cells, "commitS", format.number) },
      ...(metrics.length > 0
        ? [{ file: "programming-metrics.csv", title: "The control plane's own histograms over each cell's changes: observations, mean and estimated quantiles, per dataplane, family, Service count, change and metric (seconds)", csv: metricsCsv(metrics, format.number) }]
        : []),
    ],
    figures: families.flatMap((f) => [figure(f, "programmedS", cells), figure(f, "commitS", cells)]),
    markdown: md,
  };
}
