// Figures of a report as Vega-Lite specs, in the spirit of the paper's Figures 10-13 (a metric
// against the Service count, one series per dataplane, per family), plus the ratio figures that set
// each dataplane's ratios against the baseline and their intervals beside the paper's eBPF/iptables
// ones. Rendered to SVG without a canvas.
import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import { DATAPLANES, FAMILIES } from "../scenario/schema.js";
import type { CellStatistics, RatioRow } from "./report.js";
import { PACKET_DELAY_METRIC, profileKind } from "./report.js";

export interface FigureSpec {
  /** File name of the rendered SVG. */
  readonly file: string;
  readonly title: string;
  readonly spec: TopLevelSpec;
}

/**
 * One colour per dataplane, in the registry's order: the paper's iptables red, then blue, then the
 * paper's eBPF green, then more of Vega's category10 for dataplanes still to come.
 */
const PALETTE = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];
if (PALETTE.length < DATAPLANES.length) throw new Error(`report figures: ${DATAPLANES.length} dataplanes, ${PALETTE.length} colours`);

/** Colour by dataplane: the legend lists the dataplanes a figure shows, each in its own colour in every figure. */
function dataplaneColor(shown: readonly string[]) {
  const domain = DATAPLANES.filter((d) => shown.includes(d));
  return { field: "dataplane", type: "nominal", title: "dataplane", scale: { domain, range: domain.map((d) => PALETTE[DATAPLANES.indexOf(d)]!) } } as const;
}

const SERVICES_AXIS = { field: "services", type: "quantitative", title: "Kubernetes Services" } as const;

const SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json";

/** JSON-safe number: NaN and infinities become null, which Vega-Lite leaves out of marks. */
const finite = (x: number) => (Number.isFinite(x) ? x : null);

type LayeredSpec = Extract<TopLevelSpec, { layer: unknown }>;

/** The frame of a metric-against-Service-count figure for one profile and family. */
function cellFigure(
  profile: string,
  family: string,
  shows: { title: string; subtitle: string },
  body: Pick<LayeredSpec, "data" | "encoding" | "layer">,
): FigureSpec {
  return {
    file: `${profile}-${family}.svg`,
    title: `${profile}, ${family}: ${shows.title}`,
    spec: { $schema: SCHEMA, title: { text: `${profile}, ${family}`, subtitle: shows.subtitle }, width: 520, height: 280, ...body },
  };
}

function throughputFigure(profile: string, family: string, rows: CellStatistics[]): FigureSpec {
  const values = rows.map((c) => ({
    dataplane: c.dataplane,
    services: c.services,
    mean: finite(c.mean),
    min: finite(c.min),
    max: finite(c.max),
    p25: finite(c.p25),
    p75: finite(c.p75),
  }));
  const unit = rows[0]?.unit ?? "";
  const shows = "mean of runs (line), interquartile range (dark band), min-max (light band)";
  return cellFigure(profile, family, { title: shows, subtitle: shows }, {
    data: { values },
    encoding: { x: SERVICES_AXIS, color: dataplaneColor(rows.map((r) => r.dataplane)) },
    layer: [
      { mark: { type: "area", opacity: 0.12 }, encoding: { y: { field: "min", type: "quantitative" }, y2: { field: "max" } } },
      { mark: { type: "area", opacity: 0.3 }, encoding: { y: { field: "p25", type: "quantitative" }, y2: { field: "p75" } } },
      {
        mark: { type: "line", point: true },
        encoding: { y: { field: "mean", type: "quantitative", title: `throughput (${unit})`, scale: { zero: false } } },
      },
    ],
  });
}

function delayFigure(profile: string, family: string, rows: CellStatistics[]): FigureSpec {
  const values = rows.flatMap((c) =>
    (["mean", "p99", "max"] as const)
      .filter((stat) => Number.isFinite(c[stat]) && c[stat] > 0)
      .map((stat) => ({ dataplane: c.dataplane, services: c.services, statistic: stat, delay: c[stat] })),
  );
  const shows = { title: "per-packet delay over all runs (mean, p99, max)", subtitle: "per-packet delay over all packets of all runs: mean, p99, max" };
  return cellFigure(profile, family, shows, {
    data: { values },
    encoding: {
      x: SERVICES_AXIS,
      y: { field: "delay", type: "quantitative", title: "delay (ms, log scale)", scale: { type: "log" } },
      color: dataplaneColor(rows.map((r) => r.dataplane)),
      detail: { field: "statistic" },
    },
    layer: [
      {
        mark: { type: "line" },
        encoding: {
          strokeDash: {
            field: "statistic",
            type: "nominal",
            title: "statistic",
            scale: { domain: ["mean", "p99", "max"] },
            legend: { symbolType: "stroke", symbolStrokeWidth: 2 },
          },
        },
      },
      { mark: { type: "point", filled: true } },
    ],
  });
}

/** The ratio of one statistic of every dataplane against the baseline, over the Service count, one series per dataplane, with the paper's. */
function ratioFigure(profile: string, statistic: string, rows: RatioRow[]): FigureSpec {
  const baseline = rows[0]!.baseline;
  const measured = rows.map((r) => ({
    family: r.family,
    services: r.services,
    dataplane: r.dataplane,
    source: "measured (95% CI)",
    ratio: finite(r.ratio.estimate),
    low: finite(r.ratio.low),
    high: finite(r.ratio.high),
  }));
  // The paper's ratios are of its one comparison; they show as crosses in that dataplane's colour.
  const published = rows
    .filter((r) => r.paper)
    .map((r) => ({ family: r.family, services: r.services, dataplane: r.dataplane, source: "paper", ratio: r.paper!.ratio, low: null, high: null }));
  const values = [...measured, ...published];
  const positive = values.every((v) => [v.ratio, v.low, v.high].every((x) => x === null || x > 0));
  const title = `${profile}: ratio of the ${statistic} against ${baseline}, each dataplane measured with its interval, and the paper's`;
  const heading = { text: `${profile}: ratio of the ${statistic}, dataplane/${baseline}`, subtitle: "measured with its 95% bootstrap interval (one series per dataplane), and the paper's eBPF/iptables" };
  const scale: { type: "log" } | { zero: false } = positive ? { type: "log" } : { zero: false };
  const y = { type: "quantitative", title: `${statistic} ratio against ${baseline}`, scale } as const;
  const color = dataplaneColor(rows.map((r) => r.dataplane));
  return {
    file: `ratio-${profile}-${statistic}.svg`,
    title,
    spec: {
      $schema: SCHEMA,
      title: heading,
      data: { values },
      facet: { column: { field: "family", type: "nominal", title: null, sort: [...FAMILIES] } },
      spec: {
        width: 300,
        height: 240,
        layer: [
          { mark: { type: "rule", strokeDash: [4, 4], color: "#888" }, encoding: { y: { datum: 1, ...y } } },
          {
            transform: [{ filter: "datum.low != null && datum.high != null" }],
            mark: { type: "errorbar", ticks: true },
            encoding: { x: SERVICES_AXIS, y: { field: "low", ...y }, y2: { field: "high" }, color },
          },
          {
            mark: { type: "point", filled: true, size: 50 },
            encoding: {
              x: SERVICES_AXIS,
              y: { field: "ratio", ...y },
              color,
              shape: { field: "source", type: "nominal", title: "source", scale: { domain: ["measured (95% CI)", "paper"], range: ["circle", "cross"] } },
            },
          },
        ],
      },
    },
  };
}

/** One figure per profile and family, and one ratio figure per profile and ratio statistic. */
export function figureSpecs(cells: readonly CellStatistics[], ratios: readonly RatioRow[]): FigureSpec[] {
  const figures: FigureSpec[] = [];
  const profiles = [...new Set(cells.map((c) => c.profile))];
  for (const profile of profiles) {
    const kind = profileKind(profile);
    const metric = kind === "throughput" ? "throughputMbps" : PACKET_DELAY_METRIC;
    for (const family of FAMILIES) {
      const rows = cells.filter((c) => c.profile === profile && c.family === family && c.metric === metric);
      if (rows.length === 0) continue;
      figures.push(kind === "throughput" ? throughputFigure(profile, family, rows) : delayFigure(profile, family, rows));
    }
    for (const statistic of [...new Set(ratios.filter((r) => r.profile === profile).map((r) => r.statistic))]) {
      figures.push(ratioFigure(profile, statistic, ratios.filter((r) => r.profile === profile && r.statistic === statistic)));
    }
  }
  return figures;
}

/** Compiles a Vega-Lite spec to Vega and renders it headless (no canvas) to SVG text. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
