// The report's "where the delay comes from" section: per dataplane, family and Service count, the
// sections of the measured path pooled over the latency runs (measure/hops.ts), the first packets of
// the setup runs' connections through the Service dataplane, whether the sections add up to the exact
// delays, the stacked shares of the mean and the p99, and hops.csv. Generic over dataplanes and
// backends: a deployed stack's runs carry the worker's sections only (scope "worker"), and the
// report says which sections they cannot time and what their check covers.
import type { TopLevelSpec } from "vega-lite";
import { DATAPLANES, FAMILIES } from "../scenario/schema.js";
import {
  END_TO_END,
  HOP_DIRECTIONS,
  HOP_SECTIONS,
  pathHops,
  HOP_SUM_TOLERANCE_S,
  poolSections,
  WORKER_SECTIONS,
  WORKER_SPAN,
  NODE_TO_NODE_BOTH_WAYS,
  workerUntimed,
  type HopDirection,
  type HopScope,
  type PooledSection,
} from "./hops.js";
import { pathField, pathOf, type RunResult } from "./types.js";
import { DEFAULT_PATH, SERVICE_PATHS, type ServicePath } from "../scenario/paths.js";
import { servicesText } from "./report-words.js";

/** The row of hops.csv that holds the setup profile's first packets through the Service dataplane. */
export const FIRST_PACKET_SECTION = "service-dataplane-first-packet";
export const HOP_STATISTICS = ["mean", "std", "p50", "p99", "p999", "max"] as const;
export const HOPS_CSV_HEADER = ["dataplane", "family", "services", "direction", "section", "statistic", "valueS"] as const;

const FIELD: Record<(typeof HOP_STATISTICS)[number], keyof PooledSection> = {
  mean: "meanS", std: "stdS", p50: "p50S", p99: "p99S", p999: "p999S", max: "maxS",
};

export interface HopCell {
  /** The Service path (RunKey.path); absent: the paper's, nodeport-local. */
  readonly path?: ServicePath;
  readonly dataplane: string;
  readonly family: string;
  readonly services: number;
  /** What the runs probed: the whole path (the lab) or the worker alone (a deployed stack). */
  readonly scope: HopScope;
  /** Runs whose sections went into the cell, and of them those whose check passed. */
  readonly runs: number;
  readonly runsAddingUp: number;
  /** The latency runs' sections in path order, then each direction's end-to-end (worker: its worker-span). */
  readonly sections: readonly PooledSection[];
  /** The setup runs' first packets through the Service dataplane. */
  readonly firstPacket?: PooledSection;
  /** The setup runs' connect call, where the path times it (PathHops.handshakeLead: socket-lb, syn-send), in path order. */
  readonly connect: readonly PooledSection[];
  readonly firstPacketRuns: number;
  /** Largest |residual| of a run (forward one-way, round trip), s. */
  readonly maxResidualS: number;
  readonly incompletePackets: number;
  readonly droppedStamps: number;
  /** Stamps of D-ITG packets outside the runs' samples. */
  readonly unsampledStamps: number;
  /** The latency runs' D-ITG samples: 1 in N packets stamped, each N once, ascending. */
  readonly sampleEvery: readonly number[];
}

export interface HopReport {
  readonly cells: readonly HopCell[];
  readonly csv: string;
  readonly figures: readonly { file: string; title: string; spec: TopLevelSpec }[];
  readonly markdown: readonly string[];
}

/** What the sections of the paths beyond the paper's time, beyond the paper's own (measure/hops.ts). */
const PATH_SECTION_TEXT: Readonly<Partial<Record<ServicePath, string>>> = {
  "nodeport-remote":
    "*service-dataplane-snat* runs from worker 1's uplink ingress to its egress toward worker 2: the DNAT and the masquerade (SNAT) lie between the same two tc hooks, so the section holds both; back, it holds the reverse SNAT and reverse DNAT. *node-to-node* runs from worker 1's uplink to worker 2's, through the router; *endpoint-node* from worker 2's uplink to its pod's veth.",
  clusterip:
    "*client-pod-stack* runs from ITGSend's send stamp in the client pod to the pod's egress (and back from its ingress to the receive stamp), *client-pod-link* across the pod's veth to worker 1; *service-dataplane* from that veth's ingress on worker 1 (before kube-proxy's DNAT) to worker 1's uplink toward worker 2, and back; *node-to-node* and *endpoint-node* as on nodeport-remote. A setup run's handshake starts at its connect call: *socket-lb* runs from the client container's cgroup connect hook to the hook after the node's socket hooks, where Cilium's socket load balancer translates the ClusterIP before any packet exists (on kube-proxy nothing translates there: its DNAT is in *service-dataplane*), then *syn-send* to the SYN at the pod's egress; both rows are the setup runs'.",
};

/** Pure: what the report says of the workers' sections on the paths across two workers (their cells only). */
function workerPathLines(cells: readonly HopCell[]): string[] {
  const paths = SERVICE_PATHS.filter((p) => p !== DEFAULT_PATH && cells.some((c) => pathOf(c) === p && c.scope === "worker"));
  return paths.map((p) => {
    const timed = pathHops(p).sections;
    const untimed = workerUntimed(p);
    const list = (d: HopDirection) => timed[d].filter((s) => !untimed[d].includes(s)).join(", ");
    return (
      `- **${p}** (two workers, each on its own clock): forward ${list("forward")}; return ${list("return")}, and **${NODE_TO_NODE_BOTH_WAYS}**: ` +
      "worker 1's time from the packet leaving it toward worker 2 to the echo's return, minus worker 2's time between the packet's arrival and the echo's departure, two durations on their own clocks (each direction alone would need the two clocks synchronised). " +
      "It is the pod traffic's crossing between the nodes both ways: through the stack's tunnel (its VXLAN device, where the probes then sit) or natively routed (the data NIC), as the stack output `podRouting` says." +
      (p === "clusterip" ? " On clusterip ITGSend runs in the client pod on worker 1, so client-pod-stack is timed too." : "")
    );
  });
}

/** The rows that sum a direction rather than cut it: the end-to-end delay, or the worker's span. */
const isTotal = (section: string) => section === END_TO_END || section === WORKER_SPAN;

/**
 * A section's place on its path: by direction, then in path order (a worker's sections are the
 * path's; the node-to-node crossing both ways, which workers time, where the return node-to-node is).
 */
const pathOrder = (direction: HopDirection, section: string, path: ServicePath = DEFAULT_PATH) =>
  HOP_DIRECTIONS.indexOf(direction) * 100 +
  (isTotal(section) ? 99 : pathHops(path).sections[direction].indexOf(section === NODE_TO_NODE_BOTH_WAYS ? "node-to-node" : section));

const untimedText = (path: ServicePath = DEFAULT_PATH) => {
  const untimed = workerUntimed(path);
  return HOP_DIRECTIONS.map((d) => `${d} ${untimed[d].join(", ")}`).join("; ") + `; ${END_TO_END}`;
};

const dataplaneOrder = (a: string, b: string) => {
  const rank = (d: string) => ((DATAPLANES as readonly string[]).includes(d) ? (DATAPLANES as readonly string[]).indexOf(d) : DATAPLANES.length);
  return rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0);
};

/** Which D-ITG packets runs stamped, from their samples' rates (1 in N; 1: every packet); `why` adds how they were chosen. */
function sampleText(every: readonly number[], why = false): string {
  const rates = [...new Set(every)].sort((a, b) => a - b);
  if (rates.length === 0) return "no D-ITG packet";
  const one = (n: number) => (n === 1 ? "every D-ITG packet" : `1 in ${n} D-ITG packets`);
  const text = rates.length === 1 ? one(rates[0]!) : `${rates.slice(0, -1).map(one).join(", ")} or ${one(rates[rates.length - 1]!)}, by run`;
  return why && rates.some((n) => n > 1) ? `${text} (the same packets at every point, chosen by a hash of flow id and sequence number)` : text;
}

/** Pure: the hop cells of a campaign's ok runs; empty when no run carries hops. */
export function hopCells(results: readonly RunResult[]): HopCell[] {
  const groups = new Map<string, { latency: RunResult[]; setup: RunResult[]; key: { path?: ServicePath; dataplane: string; family: string; services: number; scope: HopScope } }>();
  for (const r of results) {
    if (r.status !== "ok" || !r.hops) continue;
    const scope = r.hops.check.scope;
    const id = `${pathOf(r)}/${r.dataplane}/${r.family}/${r.services}/${scope}`;
    const g = groups.get(id) ?? { latency: [], setup: [], key: { ...pathField(pathOf(r)), dataplane: r.dataplane, family: r.family, services: r.services, scope } };
    (r.hops.check.keying === "handshake" ? g.setup : g.latency).push(r);
    groups.set(id, g);
  }
  const cells = [...groups.values()].map(({ key, latency, setup }): HopCell => {
    const path = pathOf(key);
    const sections = poolSections(latency.map((r) => r.hops!.sections)).sort((a, b) => pathOrder(a.direction, a.section, path) - pathOrder(b.direction, b.section, path));
    const serviceSection = pathHops(path).serviceSection;
    const first = poolSections(setup.map((r) => r.hops!.sections.filter((s) => s.direction === "forward" && s.section === serviceSection)))[0];
    const lead = pathHops(path).handshakeLead?.sections ?? [];
    const connect = poolSections(setup.map((r) => r.hops!.sections.filter((s) => s.direction === "forward" && lead.includes(s.section)))).sort((a, b) => lead.indexOf(a.section) - lead.indexOf(b.section));
    const residuals = latency.flatMap((r) => [r.hops!.check.residualForwardS, r.hops!.check.residualRoundTripS]).filter((x): x is number => x !== undefined);
    return {
      ...key,
      runs: latency.length,
      runsAddingUp: latency.filter((r) => r.hops!.check.addsUp).length,
      sections,
      ...(first ? { firstPacket: { ...first, section: FIRST_PACKET_SECTION } } : {}),
      firstPacketRuns: setup.length,
      connect,
      maxResidualS: residuals.length > 0 ? Math.max(...residuals.map(Math.abs)) : NaN,
      incompletePackets: [...latency, ...setup].reduce((s, r) => s + r.hops!.check.incomplete + r.hops!.check.outOfOrder, 0),
      droppedStamps: [...latency, ...setup].reduce((s, r) => s + r.hops!.check.droppedStamps + r.hops!.check.unreadStamps, 0),
      unsampledStamps: latency.reduce((s, r) => s + r.hops!.check.unsampledStamps, 0),
      sampleEvery: [...new Set(latency.map((r) => r.hops!.check.sampleEvery))].sort((a, b) => a - b),
    };
  });
  return cells.sort(
    (a, b) =>
      SERVICE_PATHS.indexOf(pathOf(a)) - SERVICE_PATHS.indexOf(pathOf(b)) ||
      FAMILIES.indexOf(a.family as never) - FAMILIES.indexOf(b.family as never) || a.services - b.services || dataplaneOrder(a.dataplane, b.dataplane),
  );
}

/**
 * Pure: hops.csv, one row per (dataplane, family, services, direction, section, statistic); with a `path`
 * column first in a report whose runs go beyond the paper's path (default: where the cells do), so that
 * a report of that path alone keeps HOPS_CSV_HEADER.
 */
export function hopsCsv(cells: readonly HopCell[], formatNumber: (x: number) => string, withPath = cells.some((c) => pathOf(c) !== DEFAULT_PATH)): string {
  const lines = [(withPath ? ["path", ...HOPS_CSV_HEADER] : HOPS_CSV_HEADER).join(",")];
  for (const c of cells) {
    const rows = [...c.sections, ...(c.firstPacket ? [c.firstPacket] : []), ...c.connect];
    for (const s of rows) {
      for (const statistic of HOP_STATISTICS) {
        lines.push([...(withPath ? [pathOf(c)] : []), c.dataplane, c.family, c.services, s.direction, s.section, statistic, formatNumber(s[FIELD[statistic]] as number)].join(","));
      }
    }
  }
  return `${lines.join("\n")}\n`;
}

const us = (s: number | undefined, fmt: (x: number | undefined) => string) => (s === undefined || Number.isNaN(s) ? "n/a" : fmt(s * 1e6));

/** The section that carries most of a statistic (end-to-end rows aside). */
function largest(sections: readonly PooledSection[], field: "stdS" | "p99S" | "meanS"): PooledSection | undefined {
  return sections.filter((s) => !isTotal(s.section)).reduce<PooledSection | undefined>((best, s) => (best === undefined || s[field] > best[field] ? s : best), undefined);
}

function figure(family: string, statistic: "mean" | "p99", cells: readonly HopCell[], path: ServicePath): { file: string; title: string; spec: TopLevelSpec } {
  const named = path === DEFAULT_PATH ? { file: "", title: "" } : { file: `${path}-`, title: `${path}, ` };
  const values = cells
    .filter((c) => c.family === family)
    .flatMap((c) =>
      c.sections
        .filter((s) => !isTotal(s.section))
        .map((s) => ({
          dataplane: c.dataplane,
          services: c.services,
          part: `${s.direction} ${s.section}`,
          order: pathOrder(s.direction, s.section, path),
          value: Number.isFinite(s[FIELD[statistic]] as number) ? Math.max(0, s[FIELD[statistic]] as number) * 1e6 : null,
        })),
    );
  const workerOnly = cells.filter((c) => c.family === family).every((c) => c.scope === "worker");
  const whole = workerOnly ? "the mean time in the worker" : "the mean round trip";
  const what =
    (statistic === "mean" ? `share of ${whole} (the sections' means add up to it)` : "share of the sum of the sections' p99 (tails do not add; the shares compare them)") +
    (workerOnly ? `; worker only, not timed: ${untimedText(path)}` : "");
  return {
    file: `${named.file}hops-${statistic}-${family}.svg`,
    title: `where the delay comes from, ${named.title}${family}: each section's ${what}`,
    spec: {
      $schema: "https://vega.github.io/schema/vega-lite/v6.json",
      title: { text: `where the delay comes from, ${named.title}${family}`, subtitle: `each section's ${what}` },
      data: { values },
      facet: { column: { field: "dataplane", type: "nominal", title: "dataplane", sort: [...DATAPLANES] } },
      spec: {
        width: 220,
        height: 260,
        mark: "bar",
        encoding: {
          x: { field: "services", type: "ordinal", title: "Kubernetes Services" },
          y: { field: "value", type: "quantitative", stack: "normalize", title: `share of ${statistic}`, axis: { format: "%" } },
          // labelLimit 0: whole section names ("return service-dataplane"), which Vega would cut at 160 px.
          color: { field: "part", type: "nominal", title: "section", scale: { scheme: "tableau20" }, sort: { field: "order" }, legend: { labelLimit: 0 } },
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
  const of = (scope: HopScope) => {
    const scoped = cells.filter((c) => c.scope === scope);
    return {
      cells: scoped.length,
      runs: scoped.reduce((s, c) => s + c.runs, 0),
      adding: scoped.reduce((s, c) => s + c.runsAddingUp, 0),
      residual: Math.max(...scoped.map((c) => c.maxResidualS).filter(Number.isFinite), 0),
      lost: scoped.reduce((s, c) => s + c.droppedStamps, 0),
      incomplete: scoped.reduce((s, c) => s + c.incompletePackets, 0),
      unsampled: scoped.reduce((s, c) => s + c.unsampledStamps, 0),
      sample: sampleText(scoped.flatMap((c) => c.sampleEvery), true),
    };
  };
  const path = of("path");
  const worker = of("worker");
  const md: string[] = ["## Where the delay comes from", ""];
  if (path.cells > 0) {
    md.push(
      `The lab's hop probes (tc programs at every boundary of the path, hops/hop-probe.c) stamp ${path.sample} of the latency runs, keyed by D-ITG's flow id and sequence number, and each connection's first packet (the SYN) and its SYN-ACK in the setup runs. With D-ITG's own send and receive stamps they cut every stamped packet's round trip into sections, all on one clock (µs; statistics over the stamped packets of every run of the cell, the *packets* column of each table below, pooled as the delays above: exact mean and standard deviation, percentiles from merged histograms; the delays above are of every packet).`,
      "",
      `- **forward** (client to pod; adds up to the exact one-way delay of the receiver log): ${HOP_SECTIONS.forward.join(", ")}. **return** (the echo; adds up to the round trip minus the one-way delay): ${HOP_SECTIONS.return.join(", ")}. *service-dataplane* runs from the worker's uplink (before the dataplane) to the pod's veth (after its DNAT), and back from the pod's veth to the uplink (after its reverse NAT); *pod-delivery* from the pod's ingress to ITGRecv's receive stamp, *turnaround* from there to the echo leaving the pod; *client-stack* from ITGSend's send stamp to the client's egress, and back from the client's ingress to ITGSend's receive stamp.`,
      `- **${FIRST_PACKET_SECTION}** (setup runs): the Service dataplane's time for each new connection's first packet, where kube-proxy's rule walk costs.`,
      `- **Check:** ${path.adding} of ${path.runs} latency runs add up: every sampled paired packet has every stamp, no other packet has any, no stamp was dropped or left unread, no clock step, and the sections' means add up to the exact one-way and round-trip means of the same packets in the logs within ${fmt(HOP_SUM_TOLERANCE_S * 1e6)} µs. Largest residual of a run: ${fmt(path.residual * 1e6)} µs. Packets without every stamp or out of path order: ${path.incomplete}. Stamps outside the sample: ${path.unsampled}. Stamps dropped or unread: ${path.lost}.`,
      "",
    );
  }
  const probedPaths = SERVICE_PATHS.filter((p) => p !== DEFAULT_PATH && cells.some((c) => pathOf(c) === p && c.scope === "path"));
  if (probedPaths.length > 0) md.push(`The paths beyond the paper's (${DEFAULT_PATH}, above) cross other points, on the same clock (every namespace of the lab shares this host's):`, "");
  for (const p of probedPaths) {
    const { sections, serviceSection } = pathHops(p);
    md.push(`- **${p}**: forward ${sections.forward.join(", ")}; return ${sections.return.join(", ")}. ${PATH_SECTION_TEXT[p] ?? ""} Its first packets are read in *${serviceSection}*.`);
  }
  if (probedPaths.length > 0) md.push("");
  if (worker.cells > 0) {
    md.push(
      `**Worker only** (a deployed stack): the hop probes sit on the worker alone (its data NIC before the Service dataplane and after its reverse NAT, the host side of the receiver pod's veth, the pod's interface), where ITGRecv's receive stamp is on the same clock. They time the worker's part of the round trip of ${worker.sample} (µs, pooled as above):`,
      "",
      `- **forward**: ${WORKER_SECTIONS.forward.join(", ")}; **return**: ${WORKER_SECTIONS.return.join(", ")}; per direction a **${WORKER_SPAN}** row (the data NIC to ITGRecv's receive stamp, and from it back to the data NIC; for a handshake the SYN's arrival in the pod divides them). *service-dataplane* runs from the data NIC's tc ingress (before Cilium's or kube-proxy's NodePort handling) to the pod veth's egress (after the DNAT), and from the veth's ingress (before Cilium's reverse NAT) to the data NIC's egress.`,
      `- **Not timed on a deployed stack:** ${untimedText()} (the paper's path; the paths across two workers below). These sections lie between the client and the worker and would need their clocks synchronised; the round trips and their percentiles above still come from D-ITG's exact pairing.`,
      `- **${FIRST_PACKET_SECTION}** (setup runs): as in the lab, each new connection's SYN through the worker's Service dataplane.`,
      ...workerPathLines(cells),
      `- **Check (worker):** ${worker.adding} of ${worker.runs} latency runs add up: every sampled paired packet has every worker stamp, no other packet has any, no stamp was dropped or left unread, no clock step, the boundaries are in path order, each packet spent less time in the worker than its exact round trip, and the sections' means add up to the worker's spans, read from the outer boundaries alone, within ${fmt(HOP_SUM_TOLERANCE_S * 1e6)} µs. Largest residual of a run: ${fmt(worker.residual * 1e6)} µs. Packets without every stamp or out of order: ${worker.incomplete}. Stamps outside the sample: ${worker.unsampled}. Stamps dropped or unread: ${worker.lost}.`,
      "",
    );
  }
  const unprobed = SERVICE_PATHS.filter((p) => results.some((r) => pathOf(r) === p) && !cells.some((c) => pathOf(c) === p));
  if (unprobed.length > 0) {
    md.push(`Runs of ${unprobed.join(" and ")} carry no sections: they ran without the hop probes.`, "");
  }
  const services = [...new Set(cells.map((c) => c.services))].sort((a, b) => a - b);
  const paths = SERVICE_PATHS.filter((p) => cells.some((c) => pathOf(c) === p));
  const withPaths = paths.some((p) => p !== DEFAULT_PATH);
  const dataplanes = [...new Set(cells.map((c) => c.dataplane))].sort(dataplaneOrder);
  md.push(
    "Which section carries the volatility (largest standard deviation and largest p99 of a section, both directions), and the Service dataplane's own cost:",
    "",
    `|${withPaths ? " path |" : ""} family | Services | dataplane | largest std (µs) | largest p99 (µs) | service-dataplane forward mean / p99 (µs) | first packet p50 / p99 (µs) |`,
    `|${withPaths ? " --- |" : ""} --- | ---: | --- | --- | --- | ---: | ---: |`,
  );
  for (const path of paths) {
  for (const family of FAMILIES) {
    for (const n of services) {
      for (const d of dataplanes) {
        for (const c of cells.filter((x) => pathOf(x) === path && x.family === family && x.services === n && x.dataplane === d)) {
          const std = largest(c.sections, "stdS");
          const p99 = largest(c.sections, "p99S");
          const dp = c.sections.find((s) => s.direction === "forward" && s.section === pathHops(path).serviceSection);
          md.push(
            `|${withPaths ? ` ${path} |` : ""} ${family} | ${n} | ${d}${c.scope === "worker" ? " (worker only)" : ""} | ${std ? `${std.direction} ${std.section} (${us(std.stdS, fmt)})` : "n/a"} | ${p99 ? `${p99.direction} ${p99.section} (${us(p99.p99S, fmt)})` : "n/a"} | ${us(dp?.meanS, fmt)} / ${us(dp?.p99S, fmt)} | ${us(c.firstPacket?.p50S, fmt)} / ${us(c.firstPacket?.p99S, fmt)} |`,
          );
        }
      }
    }
  }
  }
  md.push("");
  for (const c of cells) {
    md.push(
      `### ${withPaths ? `${pathOf(c)}: ` : ""}${c.dataplane}, ${c.family}, ${servicesText(c.services)}${c.scope === "worker" ? " (worker only)" : ""}`,
      "",
      `${c.runs} latency runs (${c.runsAddingUp} add up; ${sampleText(c.sampleEvery)} stamped), ${c.firstPacketRuns} setup runs.${c.scope === "worker" ? ` Not timed: ${untimedText(pathOf(c))}.` : ""}`,
      "",
      "| direction | section | packets | mean | std | p50 | p99 | p99.9 | max |",
      "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    );
    for (const s of [...c.sections, ...(c.firstPacket ? [c.firstPacket] : []), ...c.connect]) {
      const name = isTotal(s.section) ? `**${s.section}**` : s.section;
      md.push(`| ${s.direction} | ${name} | ${s.packets} | ${us(s.meanS, fmt)} | ${us(s.stdS, fmt)} | ${us(s.p50S, fmt)} | ${us(s.p99S, fmt)} | ${us(s.p999S, fmt)} | ${us(s.maxS, fmt)} |`);
    }
    md.push("");
  }
  const figures = paths.flatMap((p) => {
    const of = cells.filter((c) => pathOf(c) === p);
    return FAMILIES.filter((f) => of.some((c) => c.family === f && c.sections.length > 0)).flatMap((f) => [figure(f, "mean", of, p), figure(f, "p99", of, p)]);
  });
  // The report's runs decide the column: other paths' runs may carry no sections, the CSV still names the path.
  const reportHasPaths = results.some((r) => pathOf(r) !== DEFAULT_PATH);
  return { cells, csv: hopsCsv(cells, format.number, reportHasPaths), figures, markdown: md };
}
