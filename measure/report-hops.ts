// The report's "where the delay comes from" section: per dataplane, family and Service count, the
// sections of the measured path pooled over the latency runs (measure/hops.ts), the first packets of
// the setup runs' connections through the Service dataplane, whether the sections add up to the exact
// delays, the stacked shares of the mean and the p99, and hops.csv. Generic over dataplanes.
import type { TopLevelSpec } from "vega-lite";
import { DATAPLANES, FAMILIES } from "../scenario/schema.js";
import {
  END_TO_END,
  HOP_DIRECTIONS,
  HOP_SECTIONS,
  HOP_SUM_TOLERANCE_S,
  poolSections,
  type HopDirection,
  type PooledSection,
} from "./hops.js";
import type { RunResult } from "./types.js";

/** The row of hops.csv that holds the setup profile's first packets through the Service dataplane. */
export const FIRST_PACKET_SECTION = "service-dataplane-first-packet";
export const HOP_STATISTICS = ["mean", "std", "p50", "p99", "p999", "max"] as const;
export const HOPS_CSV_HEADER = ["dataplane", "family", "services", "direction", "section", "statistic", "valueS"] as const;

const FIELD: Record<(typeof HOP_STATISTICS)[number], keyof PooledSection> = {
  mean: "meanS", std: "stdS", p50: "p50S", p99: "p99S", p999: "p999S", max: "maxS",
};

export interface HopCell {
  readonly dataplane: string;
  readonly family: string;
  readonly services: number;
  /** Runs whose sections went into the cell, and of them those whose check passed. */
  readonly runs: number;
  readonly runsAddingUp: number;
  /** The latency runs' sections in path order, then each direction's end-to-end. */
  readonly sections: readonly PooledSection[];
  /** The setup runs' first packets through the Service dataplane. */
  readonly firstPacket?: PooledSection;
  readonly firstPacketRuns: number;
  /** Largest |residual| of a run (forward one-way, round trip), s. */
  readonly maxResidualS: number;
  readonly incompletePackets: number;
  readonly droppedStamps: number;
}

export interface HopReport {
  readonly cells: readonly HopCell[];
  readonly csv: string;
  readonly figures: readonly { file: string; title: string; spec: TopLevelSpec }[];
  readonly markdown: readonly string[];
}

const pathOrder = (direction: HopDirection, section: string) =>
  HOP_DIRECTIONS.indexOf(direction) * 100 + (section === END_TO_END ? 99 : HOP_SECTIONS[direction].indexOf(section));

const dataplaneOrder = (a: string, b: string) => {
  const rank = (d: string) => ((DATAPLANES as readonly string[]).includes(d) ? (DATAPLANES as readonly string[]).indexOf(d) : DATAPLANES.length);
  return rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0);
};

/** Pure: the hop cells of a campaign's ok runs; empty when no run carries hops. */
export function hopCells(results: readonly RunResult[]): HopCell[] {
  const groups = new Map<string, { latency: RunResult[]; setup: RunResult[]; key: { dataplane: string; family: string; services: number } }>();
  for (const r of results) {
    if (r.status !== "ok" || !r.hops) continue;
    const id = `${r.dataplane}/${r.family}/${r.services}`;
    const g = groups.get(id) ?? { latency: [], setup: [], key: { dataplane: r.dataplane, family: r.family, services: r.services } };
    (r.hops.check.keying === "handshake" ? g.setup : g.latency).push(r);
    groups.set(id, g);
  }
  const cells = [...groups.values()].map(({ key, latency, setup }): HopCell => {
    const sections = poolSections(latency.map((r) => r.hops!.sections)).sort((a, b) => pathOrder(a.direction, a.section) - pathOrder(b.direction, b.section));
    const first = poolSections(setup.map((r) => r.hops!.sections.filter((s) => s.direction === "forward" && s.section === "service-dataplane")))[0];
    const residuals = latency.flatMap((r) => [r.hops!.check.residualForwardS, r.hops!.check.residualRoundTripS]).filter((x): x is number => x !== undefined);
    return {
      ...key,
      runs: latency.length,
      runsAddingUp: latency.filter((r) => r.hops!.check.addsUp).length,
      sections,
      ...(first ? { firstPacket: { ...first, section: FIRST_PACKET_SECTION } } : {}),
      firstPacketRuns: setup.length,
      maxResidualS: residuals.length > 0 ? Math.max(...residuals.map(Math.abs)) : NaN,
      incompletePackets: [...latency, ...setup].reduce((s, r) => s + r.hops!.check.incomplete + r.hops!.check.outOfOrder, 0),
      droppedStamps: [...latency, ...setup].reduce((s, r) => s + r.hops!.check.droppedStamps + r.hops!.check.unreadStamps, 0),
    };
  });
  return cells.sort(
    (a, b) => FAMILIES.indexOf(a.family as never) - FAMILIES.indexOf(b.family as never) || a.services - b.services || dataplaneOrder(a.dataplane, b.dataplane),
  );
}

/** Pure: hops.csv, one row per (dataplane, family, services, direction, section, statistic). */
export function hopsCsv(cells: readonly HopCell[], formatNumber: (x: number) => string): string {
  const lines = [HOPS_CSV_HEADER.join(",")];
  for (const c of cells) {
    const rows = [...c.sections, ...(c.firstPacket ? [c.firstPacket] : [])];
    for (const s of rows) {
      for (const statistic of HOP_STATISTICS) {
        lines.push([c.dataplane, c.family, c.services, s.direction, s.section, statistic, formatNumber(s[FIELD[statistic]] as number)].join(","));
      }
    }
  }
  return `${lines.join("\n")}\n`;
}

const us = (s: number | undefined, fmt: (x: number | undefined) => string) => (s === undefined || Number.isNaN(s) ? "n/a" : fmt(s * 1e6));

/** The section that carries most of a statistic (end-to-end rows aside). */
function largest(sections: readonly PooledSection[], field: "stdS" | "p99S" | "meanS"): PooledSection | undefined {
  return sections.filter((s) => s.section !== END_TO_END).reduce<PooledSection | undefined>((best, s) => (best === undefined || s[field] > best[field] ? s : best), undefined);
}

function figure(family: string, statistic: "mean" | "p99", cells: readonly HopCell[]): { file: string; title: string; spec: TopLevelSpec } {
  const values = cells
    .filter((c) => c.family === family)
    .flatMap((c) =>
      c.sections
        .filter((s) => s.section !== END_TO_END)
        .map((s) => ({
          dataplane: c.dataplane,
          services: c.services,
          part: `${s.direction} ${s.section}`,
          order: pathOrder(s.direction, s.section),
          value: Number.isFinite(s[FIELD[statistic]] as number) ? Math.max(0, s[FIELD[statistic]] as number) * 1e6 : null,
        })),
    );
  const what = statistic === "mean" ? "share of the mean round trip (the sections' means add up to it)" : "share of the sum of the sections' p99 (tails do not add; the shares compare them)";
  return {
    file: `hops-${statistic}-${family}.svg`,
    title: `where the delay comes from, ${family}: each section's ${what}`,
    spec: {
      $schema: "https://vega.github.io/schema/vega-lite/v6.json",
      title: { text: `where the delay comes from, ${family}`, subtitle: `each section's ${what}` },
      data: { values },
      facet: { column: { field: "dataplane", type: "nominal", title: "dataplane", sort: [...DATAPLANES] } },
      spec: {
        width: 220,
        height: 260,
        mark: "bar",
        encoding: {
          x: { field: "services", type: "ordinal", title: "Kubernetes Services" },
          y: { field: "value", type: "quantitative", stack: "normalize", title: `share of ${statistic}`, axis: { format: "%" } },
          color: { field: "part", type: "nominal", title: "section", scale: { scheme: "tableau20" }, sort: { field: "order" } },
          order: { field: "order", type: "quantitative" },
          tooltip: [{ field: "part" }, { field: "value", title: `${statistic} (µs)`, format: ".1f" }],
        },
      },
    },
  };
}

/** Pure: the report's section, hops.csv and figures; undefined when no run carries hops. */
export function hopReport(results: readonly RunResult[], format: { fmt: (x: number | undefined) => string; number: (x: number) => string }): HopReport | undefined {
  const cells = hopCells(results);
  if (cells.length === 0) return undefined;
  const { fmt } = format;
  const runs = cells.reduce((s, c) => s + c.runs, 0);
  const adding = cells.reduce((s, c) => s + c.runsAddingUp, 0);
  const residual = Math.max(...cells.map((c) => c.maxResidualS).filter(Number.isFinite), 0);
  const lost = cells.reduce((s, c) => s + c.droppedStamps, 0);
  const incomplete = cells.reduce((s, c) => s + c.incompletePackets, 0);
  const md: string[] = [
    "## Where the delay comes from",
    "",
    "The lab's hop probes (tc programs at every boundary of the path, lab/hops/hop-probe.c) stamp each packet of the latency runs, keyed by D-ITG's flow id and sequence number, and each connection's first packet (the SYN) and its SYN-ACK in the setup runs. With D-ITG's own send and receive stamps they cut every packet's round trip into sections, all on one clock (µs; statistics over every packet of every run of the cell, pooled as the delays above: exact mean and standard deviation, percentiles from merged histograms).",
    "",
    `- **forward** (client to pod; adds up to the exact one-way delay of the receiver log): ${HOP_SECTIONS.forward.join(", ")}. **return** (the echo; adds up to the round trip minus the one-way delay): ${HOP_SECTIONS.return.join(", ")}. *service-dataplane* runs from the worker's uplink (before the dataplane) to the pod's veth (after its DNAT), and back from the pod's veth to the uplink (after its reverse NAT); *pod-delivery* from the pod's ingress to ITGRecv's receive stamp, *turnaround* from there to the echo leaving the pod; *client-stack* from ITGSend's send stamp to the client's egress, and back from the client's ingress to ITGSend's receive stamp.`,
    `- **${FIRST_PACKET_SECTION}** (setup runs): the Service dataplane's time for each new connection's first packet, where kube-proxy's rule walk costs.`,
    `- **Check:** ${adding} of ${runs} latency runs add up: every paired packet has every stamp, no stamp was dropped or left unread, no clock step, and the sections' means add up to the exact one-way and round-trip means of the logs within ${fmt(HOP_SUM_TOLERANCE_S * 1e6)} µs. Largest residual of a run: ${fmt(residual * 1e6)} µs. Packets without every stamp or out of path order: ${incomplete}. Stamps dropped or unread: ${lost}.`,
    "",
  ];
  const services = [...new Set(cells.map((c) => c.services))].sort((a, b) => a - b);
  const dataplanes = [...new Set(cells.map((c) => c.dataplane))].sort(dataplaneOrder);
  md.push(
    "Which section carries the volatility (largest standard deviation and largest p99 of a section, both directions), and the Service dataplane's own cost:",
    "",
    "| family | Services | dataplane | largest std (µs) | largest p99 (µs) | service-dataplane forward mean / p99 (µs) | first packet p50 / p99 (µs) |",
    "| --- | ---: | --- | --- | --- | ---: | ---: |",
  );
  for (const family of FAMILIES) {
    for (const n of services) {
      for (const d of dataplanes) {
        const c = cells.find((x) => x.family === family && x.services === n && x.dataplane === d);
        if (!c) continue;
        const std = largest(c.sections, "stdS");
        const p99 = largest(c.sections, "p99S");
        const dp = c.sections.find((s) => s.direction === "forward" && s.section === "service-dataplane");
        md.push(
          `| ${family} | ${n} | ${d} | ${std ? `${std.direction} ${std.section} (${us(std.stdS, fmt)})` : "n/a"} | ${p99 ? `${p99.direction} ${p99.section} (${us(p99.p99S, fmt)})` : "n/a"} | ${us(dp?.meanS, fmt)} / ${us(dp?.p99S, fmt)} | ${us(c.firstPacket?.p50S, fmt)} / ${us(c.firstPacket?.p99S, fmt)} |`,
        );
      }
    }
  }
  md.push("");
  for (const c of cells) {
    md.push(
      `### ${c.dataplane}, ${c.family}, ${c.services} Services`,
      "",
      `${c.runs} latency runs (${c.runsAddingUp} add up), ${c.firstPacketRuns} setup runs.`,
      "",
      "| direction | section | packets | mean | std | p50 | p99 | p99.9 | max |",
      "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    );
    for (const s of [...c.sections, ...(c.firstPacket ? [c.firstPacket] : [])]) {
      const name = s.section === END_TO_END ? `**${END_TO_END}**` : s.section;
      md.push(`| ${s.direction} | ${name} | ${s.packets} | ${us(s.meanS, fmt)} | ${us(s.stdS, fmt)} | ${us(s.p50S, fmt)} | ${us(s.p99S, fmt)} | ${us(s.p999S, fmt)} | ${us(s.maxS, fmt)} |`);
    }
    md.push("");
  }
  const figures = FAMILIES.filter((f) => cells.some((c) => c.family === f && c.sections.length > 0)).flatMap((f) => [figure(f, "mean", cells), figure(f, "p99", cells)]);
  return { cells, csv: hopsCsv(cells, format.number), figures, markdown: md };
}
