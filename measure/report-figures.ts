// Figures of a report as Vega-Lite specs, in the spirit of the paper's Figures 10-13 (a metric
// against the Service count, one series per dataplane, per family), plus the ratio figures that set
// each dataplane's ratios against the baseline and their intervals beside the paper's eBPF/iptables
// ones. Rendered to SVG without a canvas.
//
// What the axes may not do: crowd a sweep's small counts (1 beside 10000 on a linear axis), hide one
// dataplane's point behind another's, stretch a ratio axis over decades the data do not reach, or
// blow a 0.06% throughput difference up to the whole height of the plot.
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

/** How far apart, as a share of one step's width, the points of neighbouring dataplanes sit at one step. */
const DODGE_SHARE = 0.5;
/** Width a plot gives each point of a step, in pixels, so that dodged points stand clear of each other. */
const POINT_WIDTH_PX = 16;

/**
 * The Service counts as evenly spaced steps (a sweep of 1 and 1000 to 10000 would crowd its small counts on a
 * linear axis, and a log axis squeezes 1000 to 10000 into its last quarter), each dataplane's marks set a little
 * to the side of the others' at every step, in the registry's order, so that equal values do not hide each
 * other. `x` is the datum's field "step", `position` gives it; `width` leaves each point room.
 */
export function stepAxis(services: readonly number[], dataplanes: readonly string[], minWidth: number) {
  const steps = [...new Set(services)].sort((a, b) => a - b);
  const shown = DATAPLANES.filter((d) => dataplanes.includes(d));
  const spacing = DODGE_SHARE / Math.max(shown.length, 1);
  const position = (count: number, dataplane: string) => steps.indexOf(count) + (shown.indexOf(dataplane as (typeof shown)[number]) - (shown.length - 1) / 2) * spacing;
  const x = {
    field: "step",
    type: "quantitative" as const,
    title: "Kubernetes Services (one step each)",
    scale: { domain: [-0.5, steps.length - 0.5], nice: false, zero: false },
    axis: {
      values: steps.map((_, i) => i),
      labelExpr: `${JSON.stringify(steps.map(String))}[datum.value]`,
      grid: false,
      // Its ARIA label would give the step positions (-0.5 to n - 0.5), not the counts.
      description: `X-axis: Kubernetes Services, one step each: ${steps.join(", ")}`,
    },
  };
  return { x, position, width: Math.max(minWidth, steps.length * shown.length * POINT_WIDTH_PX) };
}

/** What a datum is, for its marks' ARIA labels (the SVG's description of each point). */
const describes = (services: number, dataplane: string) => `Kubernetes Services: ${services}; dataplane: ${dataplane}`;
/** A value in an ARIA label: four significant digits. */
const labelNumber = (x: number) => String(Number(x.toPrecision(4)));

const SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json";

/** JSON-safe number: NaN and infinities become null, which Vega-Lite leaves out of marks. */
const finite = (x: number) => (Number.isFinite(x) ? x : null);

type LayeredSpec = Extract<TopLevelSpec, { layer: unknown }>;

/** The frame of a metric-against-Service-count figure for one profile and family. */
function cellFigure(
  profile: string,
  family: string,
  shows: { title: string; subtitle: string },
  width: number,
  body: Pick<LayeredSpec, "data" | "encoding" | "layer">,
): FigureSpec {
  return {
    file: `${profile}-${family}.svg`,
    title: `${profile}, ${family}: ${shows.title}`,
    spec: { $schema: SCHEMA, title: { text: `${profile}, ${family}`, subtitle: shows.subtitle }, width, height: 280, ...body },
  };
}

function throughputFigure(profile: string, family: string, rows: CellStatistics[]): FigureSpec {
  const axis = stepAxis(rows.map((r) => r.services), rows.map((r) => r.dataplane), 520);
  const values = rows.map((c) => ({
    dataplane: c.dataplane,
    services: c.services,
    step: axis.position(c.services, c.dataplane),
    description: describes(c.services, c.dataplane),
    mean: finite(c.mean),
    min: finite(c.min),
    max: finite(c.max),
    p25: finite(c.p25),
    p75: finite(c.p75),
  }));
  const unit = rows[0]?.unit ?? "";
  const shows = "mean of runs (line), interquartile range (dark band), min-max (light band)";
  // From zero: a throughput is a quantity, and an axis fitted to 450.0-450.3 Mbit/s would draw a 0.06% difference
  // as the plot's whole height. The ratio figures show the differences, with their intervals.
  const y = { type: "quantitative", title: `throughput (${unit})`, scale: { zero: true } } as const;
  return cellFigure(profile, family, { title: shows, subtitle: shows }, axis.width, {
    data: { values },
    encoding: { x: axis.x, color: dataplaneColor(rows.map((r) => r.dataplane)), description: { field: "description" } },
    layer: [
      { mark: { type: "area", opacity: 0.12 }, encoding: { y: { field: "min", ...y }, y2: { field: "max" } } },
      { mark: { type: "area", opacity: 0.3 }, encoding: { y: { field: "p25", ...y }, y2: { field: "p75" } } },
      { mark: { type: "line", point: true }, encoding: { y: { field: "mean", ...y } } },
    ],
  });
}

function delayFigure(profile: string, family: string, rows: CellStatistics[]): FigureSpec {
  const axis = stepAxis(rows.map((r) => r.services), rows.map((r) => r.dataplane), 520);
  const values = rows.flatMap((c) =>
    (["mean", "p99", "max"] as const)
      .filter((stat) => Number.isFinite(c[stat]) && c[stat] > 0)
      .map((stat) => ({
        dataplane: c.dataplane,
        services: c.services,
        step: axis.position(c.services, c.dataplane),
        description: `${describes(c.services, c.dataplane)}; ${stat}: ${labelNumber(c[stat])}`,
        statistic: stat,
        delay: c[stat],
      })),
  );
  const shows = { title: "per-packet delay over all runs (mean, p99, max)", subtitle: "per-packet delay over all packets of all runs: mean, p99, max" };
  return cellFigure(profile, family, shows, axis.width, {
    data: { values },
    encoding: {
      x: axis.x,
      description: { field: "description" },
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

/**
 * A ratio axis fitted to what the figure draws (estimates, interval ends, the paper's ratios) and to 1, the line of no
 * difference: a log scale when every drawn value is positive, with a little room beyond the extremes, never rounded
 * out to whole decades. Interval ends the axis cannot show (0 on a log scale, an unbounded end) are drawn at its edge.
 */
export function ratioScale(
  estimates: readonly (number | null)[],
  ends: readonly number[],
): { scale: { type: "log"; domain: [number, number]; nice: false } | { type: "linear"; domain: [number, number]; nice: false; zero: false }; edge: (x: number) => number } {
  const drawn = [...estimates.filter((x): x is number => x !== null && Number.isFinite(x)), 1];
  const log = drawn.every((x) => x > 0);
  const shown = [...drawn, ...ends.filter((x) => Number.isFinite(x) && (!log || x > 0))];
  const [low, high] = [Math.min(...shown), Math.max(...shown)];
  const domain: [number, number] = log ? [low / 1.1, high * 1.1] : [low - 0.05 * (high - low || 1), high + 0.05 * (high - low || 1)];
  return {
    scale: log ? { type: "log", domain, nice: false } : { type: "linear", domain, nice: false, zero: false },
    edge: (x) => (Number.isNaN(x) ? x : Math.min(Math.max(x, domain[0]), domain[1])),
  };
}

/** The ratio of one statistic of every dataplane against the baseline, over the Service count, one series per dataplane, with the paper's where it has the statistic. */
function ratioFigure(profile: string, statistic: string, rows: RatioRow[]): FigureSpec {
  const baseline = rows[0]!.baseline;
  const axis = stepAxis(rows.map((r) => r.services), rows.map((r) => r.dataplane), 300);
  const fit = ratioScale(
    [...rows.map((r) => finite(r.ratio.estimate)), ...rows.map((r) => r.paper?.ratio ?? null)],
    rows.flatMap((r) => [r.ratio.low, r.ratio.high]),
  );
  const at = (r: RatioRow) => ({ family: r.family, services: r.services, dataplane: r.dataplane, step: axis.position(r.services, r.dataplane) });
  const measured = rows.map((r) => ({
    ...at(r),
    description: `${describes(r.services, r.dataplane)}; ${r.family}; ratio: ${labelNumber(r.ratio.estimate)} [${labelNumber(r.ratio.low)}, ${labelNumber(r.ratio.high)}]`,
    source: "measured (95% CI)",
    ratio: finite(r.ratio.estimate),
    low: finite(fit.edge(r.ratio.low)),
    high: finite(fit.edge(r.ratio.high)),
  }));
  // The paper's ratios are of its one comparison; they show as crosses in that dataplane's colour, at its place.
  const published = rows
    .filter((r) => r.paper)
    .map((r) => ({ ...at(r), description: `${describes(r.services, r.dataplane)}; ${r.family}; paper's ratio: ${labelNumber(r.paper!.ratio)}`, source: "paper", ratio: r.paper!.ratio, low: null, high: null }));
  const values = [...measured, ...published];
  const paper = published.length > 0;
  const title = `${profile}: ratio of the ${statistic} against ${baseline}, each dataplane measured with its interval${paper ? ", and the paper's" : ""}`;
  const heading = {
    text: `${profile}: ratio of the ${statistic}, dataplane/${baseline}`,
    subtitle: `measured with its 95% bootstrap interval (one series per dataplane)${paper ? ", and the paper's eBPF/iptables" : ""}`,
  };
  const y = { type: "quantitative", title: `${statistic} ratio against ${baseline}`, scale: fit.scale } as const;
  const color = dataplaneColor(rows.map((r) => r.dataplane));
  const shape = paper
    ? { shape: { field: "source", type: "nominal", title: "source", scale: { domain: ["measured (95% CI)", "paper"], range: ["circle", "cross"] } } as const }
    : {};
  return {
    file: `ratio-${profile}-${statistic}.svg`,
    title,
    spec: {
      $schema: SCHEMA,
      title: heading,
      data: { values },
      facet: { column: { field: "family", type: "nominal", title: null, sort: [...FAMILIES] } },
      spec: {
        width: axis.width,
        height: 240,
        layer: [
          { mark: { type: "rule", strokeDash: [4, 4], color: "#888" }, encoding: { y: { datum: 1, ...y } } },
          {
            transform: [{ filter: "datum.low != null && datum.high != null" }],
            mark: { type: "errorbar", ticks: true },
            encoding: { x: axis.x, y: { field: "low", ...y }, y2: { field: "high" }, color },
          },
          {
            mark: { type: "point", filled: true, size: 50 },
            encoding: { x: axis.x, y: { field: "ratio", ...y }, color, description: { field: "description" }, ...shape },
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
