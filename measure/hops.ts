// Where the delay comes from: one run's packets cut into the sections of the measured path, from the
// hop probes' kernel stamps (hops/hop-probe.c) and D-ITG's own stamps.
//
// On the paper's path a round-trip packet crosses 15 boundaries, all on one clock once D-ITG's are
// moved onto the probes':
//
//   tx      ITGSend's send stamp (the payload's, as the receiver log keeps it)
//   P0..P5  client egress, router in, router out, worker uplink in (before the Service dataplane),
//           worker's pod veth (after its DNAT), pod ingress
//   rxR     ITGRecv's receive stamp (receiver log)
//   P6..P11 pod egress, worker's pod veth, worker uplink out (after the reverse NAT), router in,
//           router out, client ingress
//   rxS     ITGSend's receive stamp of the echo (sender log)
//
// Forward sections run from tx to rxR (their sum is the exact one-way delay of the receiver log),
// return sections from rxR to rxS (their sum with the forward ones is the exact round trip, D-ITG
// B15's fix of ditg-pairing.ts). ITGRecv stamps a packet when it reads it, so a receiver that is not
// running holds packets in "pod-delivery" (pod ingress to its receive stamp); "turnaround" runs from
// that stamp to the echo leaving the pod.
//
// Clocks: the probes stamp CLOCK_MONOTONIC, D-ITG CLOCK_REALTIME as a UTC time of day. The reader
// reads their offset at the run's start and end (hops/hop-reader.c); every stamp is moved with the
// start offset, and a run whose offset moved (the clock was stepped) fails the check.
//
// Sampled D-ITG packets. The probes stamp 1 in sampleEvery D-ITG packets (the reader's summary gives
// the rate, hops/hop-maps.h HOP_SAMPLE_EVERY), chosen by a hash of the flow id and sequence number,
// the same at every point (hopSampled, the probes' hop_sampled): a sampled packet crosses every point
// stamped, an unsampled one unstamped. A run's sections are the statistics of its sampled round
// trips (each section's `packets` says how many), its other packets are in the campaign's delays
// only. Per packet the sections add up to the end-to-end delays by construction (consecutive
// boundaries); what the check tests is everything around that: every sampled paired packet has
// every stamp, no unsampled packet has any, no stamp was dropped or left unread, the boundaries are
// in path order, and the sections' means add up to the exact delays of the same sampled packets
// (receiver log's send stamp to its receive stamp, and to the sender log's receive stamp of the
// echo, as ditg-pairing.ts pairs them), to within HOP_SUM_TOLERANCE_S: a sampled packet the
// sections lack moves them apart.
//
// The setup profile's TCP handshakes carry no D-ITG stamps: their sections are the kernel's only
// (P0..P11, "turnaround" from the SYN's pod ingress to the SYN-ACK's pod egress). A handshake is keyed
// by its SYN's sequence number, which no NAT rewrites.
//
// The paths beyond the paper's (scenario/paths.ts) cross other points (PATH_HOPS): every namespace of
// the lab shares this host's clock, so the sections between worker 1 and worker 2 are timed too.
//
//   nodeport-remote  tx | client-stack | P0 | access-link | P1 | router | P2 | datacenter-link | P3
//                    | service-dataplane-snat | P12 worker 1 uplink out | node-to-node | P13 worker 2
//                    uplink in | endpoint-node | P14 | pod-link | P15 | pod-delivery | rxR; and back
//                    rxR | turnaround | P16 | pod-link | P17 | endpoint-node | P18 | node-to-node | P19
//                    worker 1 uplink in | service-dataplane-snat | P8 | ... as the paper's ... | rxS
//   clusterip        tx | client-pod-stack | P20 client pod out | client-pod-link | P21 its host veth on
//                    worker 1 | service-dataplane | P12 | node-to-node | P13 | endpoint-node | P14 |
//                    pod-link | P15 | pod-delivery | rxR; and back rxR | turnaround | P16 | pod-link |
//                    P17 | endpoint-node | P18 | node-to-node | P19 | service-dataplane | P22 | client-
//                    pod-link | P23 | client-pod-stack | rxS
//
// service-dataplane-snat: on nodeport-remote worker 1's netfilter translates the destination (DNAT,
// PREROUTING) and masquerades the source (SNAT, POSTROUTING) between the same two tc hooks of its
// uplink: no tc point lies between them, so the section holds both (and the forwarding between
// them); back, it holds the reverse SNAT and reverse DNAT, which conntrack applies in one step.
// node-to-node: worker 1's uplink to worker 2's, through the router; endpoint-node: worker 2 routing
// the packet to its pod (no Service dataplane on worker 2 in the lab).
//
// A worker of a deployed stack is probed alone (scope "worker"): P3..P8 on its own host, where
// ITGRecv's receive stamp is on the same clock, cut the worker's part of each round trip:
//
//   P3 uplink-in | service-dataplane | P4 pod-veth-out | pod-link | P5 pod-in | pod-delivery | rxR
//   rxR | turnaround | P6 pod-out | pod-link | P7 pod-veth-in | service-dataplane | P8 uplink-out
//
// The sections between the client and the worker (client-stack, access-link, router,
// datacenter-link) would need the client's and the worker's clocks synchronised: a worker capture
// leaves them out (WORKER_UNTIMED). Its check covers what the worker sees: every sampled paired
// packet has every worker stamp, no unsampled one has any, nothing was dropped or left unread, no clock step, the boundaries are in path
// order, each packet's time in the worker (P3 to P8) is shorter than its exact round trip (both are
// durations on their own hosts' clocks), and the sections' means add up, direction by direction,
// to the worker's span read from the outer boundaries alone (uplink-in to the receive stamp, the
// receive stamp to uplink-out), within HOP_SUM_TOLERANCE_S. Where a kernel skips the host side of
// the pod's veth on the way in (bpf_redirect_peer: Cilium's BPF host routing, 5.10+), P4 stamps
// nothing and the forward service-dataplane runs from P3 to P5, with no forward pod-link.
import { closeSync, openSync, readFileSync, readSync, writeFileSync } from "node:fs";
import { encodeIntoCompressedBase64, type Histogram } from "hdr-histogram-js";
import { decodeDelayHistogram, delayAcrossMidnight, LogFormatError, newHistogram, RECORD_BYTES, recordBlock } from "./ditg-log.js";
import { LogStamps, StampWindow } from "./ditg-pairing.js";
import { poolMoments } from "./statistics.js";
import type { RunProfile } from "./types.js";
import { DEFAULT_PATH, type ServicePath } from "../scenario/paths.js";

/** The probes' points, by their number in hop-maps.h (enum hop_point): the paper's path's twelve, then the other paths'. */
export const HOP_POINTS = [
  "client-out", "router-in", "router-out", "uplink-in", "pod-veth-out", "pod-in",
  "pod-out", "pod-veth-in", "uplink-out", "router-in-return", "router-out-return", "client-in",
  "uplink-out-forward", "node2-uplink-in", "pod2-veth-out", "pod2-in",
  "pod2-out", "pod2-veth-in", "node2-uplink-out", "uplink-in-return",
  "client-pod-out", "client-pod-veth-in", "client-pod-veth-out", "client-pod-in",
  "connect-call", "connect-done",
] as const;
export type HopPoint = (typeof HOP_POINTS)[number];

export const HOP_DIRECTIONS = ["forward", "return"] as const;
export type HopDirection = (typeof HOP_DIRECTIONS)[number];

/**
 * One path's decomposition: the points its packets cross per direction (numbers of HOP_POINTS, in
 * path order) and the sections between its boundaries, [tx, ...forward, rxR] and [rxR, ...return,
 * rxS]: one more section than points per direction.
 */
export interface PathHops {
  readonly points: Readonly<Record<HopDirection, readonly number[]>>;
  readonly sections: Readonly<Record<HopDirection, readonly string[]>>;
  /** The forward section that holds the Service dataplane's translation: a new connection's first packet is read there (setup runs). */
  readonly serviceSection: string;
  /**
   * Boundaries a handshake crosses before its first packet exists, before points.forward: the
   * connect call's stamps (hops/hop-connect.c), with the section from each to the next (the last
   * ends at the first forward point). D-ITG packets never cross them.
   */
  readonly handshakeLead?: { readonly points: readonly number[]; readonly sections: readonly string[] };
}

/**
 * The section of a handshake between the connect call's two stamps (clusterip): the socket hooks of
 * the node, where Cilium's socket load balancer translates the ClusterIP before any packet exists.
 * kube-proxy attaches nothing there, so on its dataplanes the section is the hooks' own cost, and
 * its translation is in service-dataplane.
 */
export const SOCKET_LB_SECTION = "socket-lb";
/** The section of a handshake from the connect call's last hook to its SYN at the client pod's egress: the kernel builds and sends the SYN through the pod's stack. */
export const SYN_SEND_SECTION = "syn-send";

/** Per path, its points and sections (see the top of this file). */
export const PATH_HOPS: Readonly<Record<ServicePath, PathHops>> = {
  "nodeport-local": {
    points: { forward: [0, 1, 2, 3, 4, 5], return: [6, 7, 8, 9, 10, 11] },
    sections: {
      forward: ["client-stack", "access-link", "router", "datacenter-link", "service-dataplane", "pod-link", "pod-delivery"],
      return: ["turnaround", "pod-link", "service-dataplane", "datacenter-link", "router", "access-link", "client-stack"],
    },
    serviceSection: "service-dataplane",
  },
  "nodeport-remote": {
    points: { forward: [0, 1, 2, 3, 12, 13, 14, 15], return: [16, 17, 18, 19, 8, 9, 10, 11] },
    sections: {
      forward: ["client-stack", "access-link", "router", "datacenter-link", "service-dataplane-snat", "node-to-node", "endpoint-node", "pod-link", "pod-delivery"],
      return: ["turnaround", "pod-link", "endpoint-node", "node-to-node", "service-dataplane-snat", "datacenter-link", "router", "access-link", "client-stack"],
    },
    serviceSection: "service-dataplane-snat",
  },
  clusterip: {
    points: { forward: [20, 21, 12, 13, 14, 15], return: [16, 17, 18, 19, 22, 23] },
    sections: {
      forward: ["client-pod-stack", "client-pod-link", "service-dataplane", "node-to-node", "endpoint-node", "pod-link", "pod-delivery"],
      return: ["turnaround", "pod-link", "endpoint-node", "node-to-node", "service-dataplane", "client-pod-link", "client-pod-stack"],
    },
    serviceSection: "service-dataplane",
    // The connect call: its hooks (Cilium's socket load balancer translates there), then the SYN built and sent through the pod's stack.
    handshakeLead: { points: [24, 25], sections: [SOCKET_LB_SECTION, SYN_SEND_SECTION] },
  },
};

/**
 * The decomposition of a run on a path. The one place that chooses it: a dataplane whose path has
 * another boundary (the eBPF model's socket load balancing on clusterip, timed from the connect call
 * before the first packet exists) gives its own PathHops here, with that section in its list.
 */
export function pathHops(path: ServicePath = DEFAULT_PATH): PathHops {
  const hops = PATH_HOPS[path];
  if (hops === undefined) throw new Error(`path: "${String(path)}" has no hop points; accepted: ${Object.keys(PATH_HOPS).join(", ")}`);
  return hops;
}

/** Pure: a path's handshake sections: its kernel points only (no D-ITG stamp), from the connect call where the path stamps it, turnaround from the SYN's pod ingress to the SYN-ACK's pod egress. */
export function handshakeSections(hops: PathHops): Readonly<Record<HopDirection, readonly string[]>> {
  return { forward: [...(hops.handshakeLead?.sections ?? []), ...hops.sections.forward.slice(1, -1)], return: hops.sections.return.slice(0, -1) };
}

/** Pure: a handshake's boundaries in path order: the connect call's where the path has them, then every kernel point both ways. */
export function handshakePoints(hops: PathHops): number[] {
  return [...(hops.handshakeLead?.points ?? []), ...hops.points.forward, ...hops.points.return];
}

/** The sections of the paper's path, per direction, in path order. */
export const HOP_SECTIONS: Readonly<Record<HopDirection, readonly string[]>> = PATH_HOPS["nodeport-local"].sections;
/** The sections of a TCP handshake on the paper's path (the setup profile): kernel stamps only, client egress to client ingress. */
export const HANDSHAKE_SECTIONS: Readonly<Record<HopDirection, readonly string[]>> = handshakeSections(PATH_HOPS["nodeport-local"]);
export const END_TO_END = "end-to-end";

/** What a capture probed: every boundary of the path (the lab), or a worker's own host alone (a deployed stack). */
export const HOP_SCOPES = ["path", "worker"] as const;
export type HopScope = (typeof HOP_SCOPES)[number];
/** The points a worker probes on the paper's path (P3..P8), by number. */
export const WORKER_POINTS: readonly number[] = [3, 4, 5, 6, 7, 8];
/** The worker's sections on the paper's path, in path order (both directions' pod-delivery and turnaround anchored on ITGRecv's receive stamp). */
export const WORKER_SECTIONS: Readonly<Record<HopDirection, readonly string[]>> = {
  forward: ["service-dataplane", "pod-link", "pod-delivery"],
  return: ["turnaround", "pod-link", "service-dataplane"],
};
/**
 * Per direction, the workers' whole part: the sections a deployed stack's workers time, summed (on
 * the paper's path uplink-in to the pod, ITGRecv's receive stamp or for a handshake the SYN's pod
 * ingress, and from there to uplink-out). Every worker run has both rows.
 */
export const WORKER_SPAN = "worker-span";
/** Pure: the sections of a path that a deployed stack's workers cannot time (they need two hosts' clocks synchronised), per direction. */
export function workerUntimed(path: ServicePath = DEFAULT_PATH): Readonly<Record<HopDirection, readonly string[]>> {
  const timed = workerPlan(path, "ditg").runs.flatMap((r) => r.sections);
  const untimed = (direction: HopDirection) => pathHops(path).sections[direction].filter((s) => !timed.some((t) => t.direction === direction && t.section === s));
  return { forward: untimed("forward"), return: untimed("return") };
}
/** The sections a worker capture cannot time on the paper's path. */
export const WORKER_UNTIMED: Readonly<Record<HopDirection, readonly string[]>> = {
  forward: HOP_SECTIONS.forward.filter((s) => !WORKER_SECTIONS.forward.includes(s)),
  return: HOP_SECTIONS.return.filter((s) => !WORKER_SECTIONS.return.includes(s)),
};

/** The profiles the probes stamp, and how their packets are keyed; throughput runs go unprobed. */
export const HOP_KEYING: Partial<Record<RunProfile, HopKeying>> = { latency: "ditg", setup: "handshake" };

/** Record layout of hop-maps.h (struct hop_record), as the reader writes it: host order (little-endian here). */
export const HOP_RECORD_BYTES = 24;
const HOP_HANDSHAKE_FLOW = 0xffffffff;
const KIND = { ditg: 0, handshake: 1 } as const;
export type HopKeying = keyof typeof KIND;

/** How far the means of the sections may miss the exact delays of the logs: D-ITG's 1 µs resolution. */
export const HOP_SUM_TOLERANCE_S = 1e-6;
/** A section anchored on a D-ITG stamp may read this much below zero (its microsecond truncation). */
const DITG_STAMP_SLACK_S = 1e-6;
/** The clock offset may move this much over a run before the run counts as stepped. */
const CLOCK_STEP_LIMIT_NS = 1000;
const NS_PER_S = 1e9;
const DAY_NS = 86_400n * 1_000_000_000n;

/** What a backend hands the decoder of one run's stamps (the reader's file and its summary line). */
export interface HopCapture {
  readonly recordsFile: string;
  /** The path the run's packets took (PATH_HOPS); default the paper's. */
  readonly path?: ServicePath;
  /** Which packets the run sent: D-ITG's (keyed by flow id and sequence number) or TCP handshakes (keyed by port). */
  readonly keying: HopKeying;
  /** What was probed; default "path" (every point). */
  readonly scope?: HopScope;
  /** CLOCK_REALTIME - CLOCK_MONOTONIC at the run's start and end, ns (decimal strings: beyond 2^53). */
  readonly offsetStartNs: string;
  readonly offsetEndNs: string;
  readonly offsetUncertaintyNs: number;
  /** Records the reader wrote. */
  readonly records: number;
  /** Per point: packets the kernel stamped into the ring, and those it counted as dropped (ring full). */
  readonly stamped: readonly number[];
  readonly dropped: readonly number[];
  /** Stamps the perf rings reported lost (PERF_RECORD_LOST; also counted in dropped), where the reader read perf rings. */
  readonly lost?: number;
  /** The probes stamped 1 in this many D-ITG packets (hopSampled); absent: every packet, as a reader built before sampling. */
  readonly sampleEvery?: number;
}

/**
 * Pure: whether the probes stamp a D-ITG packet, 1 in `sampleEvery` (a power of two) by a hash of
 * its flow id and sequence number: hops/hop-maps.h hop_sampled, bit for bit (test/hops/ compares them).
 */
export function hopSampled(flowId: number, seq: number, sampleEvery: number): boolean {
  let h = (seq ^ Math.imul(flowId, 0x9e3779b1)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h & (sampleEvery - 1)) === 0;
}

/** One section's statistics over a run's packets. */
export interface HopSectionSummary {
  readonly direction: HopDirection;
  readonly section: string;
  readonly packets: number;
  readonly meanS: number;
  /** Population standard deviation. */
  readonly stdS: number;
  readonly p50S: number;
  readonly p99S: number;
  readonly p999S: number;
  readonly maxS: number;
  /** HDR histogram of the section in ns (hdr-histogram-js compressed base64), for pooling runs. */
  readonly histogram: string;
}

/** Whether a run's decomposition is whole and adds up. */
export interface HopCheck {
  readonly keying: HopKeying;
  /** What was probed: the whole path, or the worker alone (then the residuals compare with the worker's span; see the top of this file). */
  readonly scope: HopScope;
  /** Packets to decompose: the sampled paired D-ITG packets, or handshakes stamped at the client. */
  readonly packets: number;
  readonly decomposed: number;
  /** Packets to decompose missing at least one stamp. */
  readonly incomplete: number;
  /** D-ITG packets stamped 1 in this many (hopSampled); 1 for handshakes, all stamped. */
  readonly sampleEvery: number;
  /** Stamps of D-ITG packets outside the sample: the probes and this decoder disagree on the rule. */
  readonly unsampledStamps: number;
  /** Packets with a boundary out of path order, or (worker) longer in the worker than their whole round trip (left out). */
  readonly outOfOrder: number;
  /** Stamps the kernel could not write (ring full), and stamps written but not read. */
  readonly droppedStamps: number;
  readonly unreadStamps: number;
  readonly clockStepNs: number;
  readonly offsetUncertaintyNs: number;
  /** Sum of the forward sections' means minus the exact one-way mean of the same packets, receiver log's send stamp to its receive stamp (worker: minus the forward worker span's mean), s. */
  readonly residualForwardS?: number;
  /** Sum of all sections' means minus the exact round-trip mean of the same packets, paired as ditg-pairing.ts does (worker: minus the mean time in the worker, uplink in to out), s. */
  readonly residualRoundTripS?: number;
  /** Worker captures: points the packets never crossed (a kernel redirect skipped them); their sections are merged into the next. */
  readonly bypassed?: readonly HopPoint[];
  /** Every packet to decompose decomposed, no stamp outside the sample, nothing dropped or unread, no clock step, residuals within HOP_SUM_TOLERANCE_S. */
  readonly addsUp: boolean;
}

export interface RunHops {
  readonly sections: readonly HopSectionSummary[];
  readonly check: HopCheck;
}

/** Pure: what a run's sections cover, read off them (only a worker's carry worker-span rows); how the store gives scope back. */
export function scopeOfSections(sections: readonly Pick<HopSectionSummary, "section">[]): HopScope {
  return sections.some((s) => s.section === WORKER_SPAN) ? "worker" : "path";
}

/** How many points a reader's counts may cover: the paper's path's twelve or the paths' 24 (a reader built before the others), or every point. */
const READER_POINT_COUNTS = [12, 24, HOP_POINTS.length];

/** Pure: the reader's summary line (lab/hops/hop-reader.c); throws on anything else. */
export function parseReaderSummary(line: string): Omit<HopCapture, "recordsFile" | "keying"> {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new Error(`hop reader printed ${JSON.stringify(line.slice(0, 200))}, not its summary line`);
  }
  const v = value as Record<string, unknown>;
  // A reader built before the other paths' points (a stack's worker) counts the paper's twelve: the rest stamped nothing.
  const counts = (k: string) => {
    const a = v[k];
    if (!Array.isArray(a) || !READER_POINT_COUNTS.includes(a.length) || !a.every((x) => Number.isSafeInteger(x) && x >= 0)) {
      throw new Error(`hop reader summary: ${k} is not ${READER_POINT_COUNTS.join(" or ")} counts: ${JSON.stringify(a)}`);
    }
    return [...(a as number[]), ...new Array<number>(HOP_POINTS.length - a.length).fill(0)];
  };
  for (const k of ["offsetStartNs", "offsetEndNs"]) {
    if (typeof v[k] !== "string" || !/^-?\d+$/.test(v[k] as string)) throw new Error(`hop reader summary: ${k} is not an integer string: ${JSON.stringify(v[k])}`);
  }
  if (!Number.isSafeInteger(v.records) || !Number.isSafeInteger(v.offsetUncertaintyNs)) throw new Error(`hop reader summary: bad records or offsetUncertaintyNs in ${line}`);
  if (v.lost !== undefined && !(Number.isSafeInteger(v.lost) && (v.lost as number) >= 0)) throw new Error(`hop reader summary: lost is not a count: ${JSON.stringify(v.lost)}`);
  // A reader built before sampling names no rate: its probes stamped every packet.
  const every = v.sampleEvery;
  if (every !== undefined && !(Number.isSafeInteger(every) && (every as number) >= 1 && ((every as number) & ((every as number) - 1)) === 0)) {
    throw new Error(`hop reader summary: sampleEvery is ${JSON.stringify(every)}; accepted: a power of two from 1`);
  }
  return {
    offsetStartNs: v.offsetStartNs as string,
    offsetEndNs: v.offsetEndNs as string,
    offsetUncertaintyNs: v.offsetUncertaintyNs as number,
    records: v.records as number,
    stamped: counts("stamped"),
    dropped: counts("dropped"),
    ...(v.lost !== undefined ? { lost: v.lost as number } : {}),
    ...(every !== undefined ? { sampleEvery: every as number } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// The probes' stamps.

/** The kernel stamps of one run, per point, keyed by (flow id, sequence number), as UTC times of day in seconds. */
export interface PointStamps {
  /** Per point: the stamp of (flow id, sequence number), NaN when not held. */
  readonly points: readonly { get(flowId: number, seq: number): number }[];
  /** Records read per point (of the run's keying). */
  readonly perPoint: readonly number[];
  /** Keys stamped at the first point, in file order (handshakes: what the run tried). */
  readonly firstPoint: readonly { flowId: number; seq: number }[];
  /** Records of D-ITG packets outside the sample (hopSampled at `sampleEvery`), at any point; left out of `points`. */
  readonly unsampled: number;
}

/** The stamps of handshakes at one point, by SYN sequence number: spread over 32 bits, no window holds them. */
class HandshakeStamps {
  private readonly stamps = new Map<number, number>();
  get(flowId: number, seq: number): number {
    return flowId === HOP_HANDSHAKE_FLOW ? (this.stamps.get(seq) ?? NaN) : NaN;
  }
  put(seq: number, stamp: number): void {
    this.stamps.set(seq, stamp);
  }
}

/**
 * Reads the reader's file: every record of the keying, moved to D-ITG's clock with the offset. A key
 * stamped twice at a point (a retransmitted SYN) keeps its earliest stamp: perf rings, one per CPU,
 * do not hand records over in time order. `firstPoint`: the first point the capture's packets cross;
 * `sampleEvery`: the D-ITG sample's rate, whose outsiders are counted, not kept.
 */
export function readPointStamps(bytes: Uint8Array, keying: HopKeying, offsetNs: bigint, file = "hop records", firstPoint = 0, sampleEvery = 1): PointStamps {
  if (bytes.length % HOP_RECORD_BYTES !== 0) {
    throw new Error(`${file}: ${bytes.length} bytes is not a whole number of ${HOP_RECORD_BYTES}-byte hop records; the file is truncated`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = bytes.length / HOP_RECORD_BYTES;
  const perPoint = new Array<number>(HOP_POINTS.length).fill(0);
  const kind = KIND[keying];
  // Per D-ITG flow, its lowest and highest sequence number stamped: a window holds the whole span.
  const spans = new Map<number, { low: number; high: number }>();
  for (let i = 0; i < count; i++) {
    const at = i * HOP_RECORD_BYTES;
    const point = view.getUint8(at + 16);
    if (point >= HOP_POINTS.length) throw new Error(`${file}: record ${i} names point ${point}; accepted: 0-${HOP_POINTS.length - 1}`);
    if (view.getUint8(at + 17) !== kind) continue;
    perPoint[point]!++;
    if (keying === "ditg") {
      const flowId = view.getUint32(at + 8, true);
      const seq = view.getUint32(at + 12, true);
      const span = spans.get(flowId);
      if (span === undefined) spans.set(flowId, { low: seq, high: seq });
      else if (seq < span.low) span.low = seq;
      else if (seq > span.high) span.high = seq;
    }
  }
  // A sample's stamps spread over about sampleEvery times their number of sequence numbers. A span
  // beyond twice that (a stray record) is not held whole: stamps it evicts count as missing, never
  // as another packet's.
  const widest = Math.max(1, ...[...spans.values()].map((s) => s.high - s.low + 1));
  const bound = 2 * Math.max(...perPoint) * sampleEvery + 1024;
  let size = 2;
  while (size < Math.max(...perPoint) || size < Math.min(widest, bound)) size *= 2;
  const windows = keying === "ditg" ? HOP_POINTS.map(() => new StampWindow(size)) : undefined;
  const handshakes = keying === "handshake" ? HOP_POINTS.map(() => new HandshakeStamps()) : undefined;
  const first: { flowId: number; seq: number }[] = [];
  let unsampled = 0;
  for (let i = 0; i < count; i++) {
    const at = i * HOP_RECORD_BYTES;
    if (view.getUint8(at + 17) !== kind) continue;
    const flowId = view.getUint32(at + 8, true);
    const seq = view.getUint32(at + 12, true);
    if (windows && !hopSampled(flowId, seq, sampleEvery)) {
      unsampled++;
      continue;
    }
    const point = view.getUint8(at + 16);
    const ofDay = Number((((view.getBigUint64(at, true) + offsetNs) % DAY_NS) + DAY_NS) % DAY_NS) / NS_PER_S;
    if (keying === "handshake" && flowId !== HOP_HANDSHAKE_FLOW) continue;
    if (windows) {
      const window = windows[point]!;
      const flow = window.flow(flowId, 0, 0);
      const held = window.stampOf(flow, seq);
      if (!Number.isNaN(held)) {
        if (delayAcrossMidnight(ofDay, held) < 0) window.put(flow, seq, ofDay);
        continue;
      }
      window.put(flow, seq, ofDay);
    } else {
      const stamps = handshakes![point]!;
      const held = stamps.get(flowId, seq);
      // The earliest stamp wins: a retransmitted SYN must not move its connection's first packet.
      if (!Number.isNaN(held)) {
        if (delayAcrossMidnight(ofDay, held) < 0) stamps.put(seq, ofDay);
        continue;
      }
      stamps.put(seq, ofDay);
    }
    if (point === firstPoint) first.push({ flowId, seq });
  }
  return { points: windows ?? handshakes!, perPoint, firstPoint: first, unsampled };
}

// ---------------------------------------------------------------------------------------------
// Sections of one run.

/** Per-packet values of every section, filled packet by packet. */
class SectionValues {
  readonly values: Float64Array[];
  n = 0;

  constructor(
    readonly names: readonly { direction: HopDirection; section: string }[],
    capacity: number,
  ) {
    this.values = names.map(() => new Float64Array(Math.max(1, capacity)));
  }

  add(row: Float64Array): void {
    for (let s = 0; s < row.length; s++) this.values[s]![this.n] = row[s]!;
    this.n++;
  }

  summaries(): HopSectionSummary[] {
    return this.names.map((name, s) => summarize(name.direction, name.section, this.values[s]!.subarray(0, this.n)));
  }
}

/** Pure: the statistics of one section's per-packet values (seconds). */
export function summarize(direction: HopDirection, section: string, values: Float64Array): HopSectionSummary {
  const histogram = newHistogram();
  let sum = 0;
  let max = -Infinity;
  for (const v of values) {
    sum += v;
    if (v > max) max = v;
    histogram.recordValue(Math.max(0, Math.round(v * NS_PER_S)));
  }
  const n = values.length;
  const mean = n > 0 ? sum / n : NaN;
  let m2 = 0;
  for (const v of values) m2 += (v - mean) ** 2;
  const encoded = encodeIntoCompressedBase64(histogram);
  const percentiles = histogramPercentiles(histogram);
  histogram.destroy();
  return { direction, section, packets: n, meanS: mean, stdS: n > 0 ? Math.sqrt(m2 / n) : NaN, ...percentiles, maxS: n > 0 ? max : NaN, histogram: encoded };
}

function histogramPercentiles(h: Histogram): { p50S: number; p99S: number; p999S: number } {
  if (h.totalCount === 0) return { p50S: NaN, p99S: NaN, p999S: NaN };
  const at = (q: number) => h.getValueAtPercentile(q) / NS_PER_S;
  return { p50S: at(50), p99S: at(99), p999S: at(99.9) };
}

const namesOf = (sections: Readonly<Record<HopDirection, readonly string[]>>, withEndToEnd: boolean) =>
  HOP_DIRECTIONS.flatMap((direction) => [
    ...sections[direction].map((section) => ({ direction, section })),
    ...(withEndToEnd ? [{ direction, section: END_TO_END }] : []),
  ]);

/** The check's counts; addsUp here: every packet decomposed, no stamp outside the sample, none dropped or unread. */
function checkCounts(
  capture: HopCapture,
  bytes: Uint8Array,
  keying: HopKeying,
  counts: Pick<HopCheck, "packets" | "decomposed" | "incomplete" | "outOfOrder" | "unsampledStamps">,
): HopCheck {
  const losses = captureLosses(capture, recordsPerPoint(bytes));
  return {
    keying,
    scope: capture.scope ?? "path",
    ...counts,
    sampleEvery: keying === "ditg" ? sampleEveryOf(capture) : 1,
    droppedStamps: losses.dropped,
    unreadStamps: losses.unread,
    clockStepNs: Number(BigInt(capture.offsetEndNs) - BigInt(capture.offsetStartNs)),
    offsetUncertaintyNs: capture.offsetUncertaintyNs,
    addsUp: counts.packets > 0 && counts.decomposed === counts.packets && counts.unsampledStamps === 0 && losses.dropped === 0 && losses.unread === 0,
  };
}

/** The capture's D-ITG sample rate: every packet when its reader names none. */
const sampleEveryOf = (capture: HopCapture) => capture.sampleEvery ?? 1;

/** Counts of the capture itself: stamps dropped in the kernel, and stamps written but never read. */
function captureLosses(capture: HopCapture, readPerPoint: readonly number[]): { dropped: number; unread: number } {
  const dropped = capture.dropped.reduce((a, b) => a + b, 0);
  const unread = capture.stamped.reduce((s, stamped, p) => s + Math.max(0, stamped - readPerPoint[p]!), 0);
  return { dropped, unread };
}

function recordsPerPoint(bytes: Uint8Array): number[] {
  const perPoint = new Array<number>(HOP_POINTS.length).fill(0);
  for (let at = 16; at < bytes.length; at += HOP_RECORD_BYTES) perPoint[bytes[at]!]!++;
  return perPoint;
}

/** Calls fn for every record of a D-ITG log with a valid receive time: flow id, sequence number, receive time of day. */
function forEachReceive(file: string, fn: (flowId: number, seq: number, rxOfDay: number) => void): number {
  const block = recordBlock(16_384);
  const fd = openSync(file, "r");
  let records = 0;
  try {
    for (let position = 0; ; ) {
      const bytes = readSync(fd, block.bytes, 0, block.bytes.length, position);
      if (bytes === 0) break;
      if (bytes % RECORD_BYTES !== 0) throw new LogFormatError(file, "ends with a partial record; the log is truncated");
      position += bytes;
      for (let r = 0; r < bytes / RECORD_BYTES; r++) {
        const w = r * (RECORD_BYTES / 4);
        const hour = block.words[w + 6]!;
        const minute = block.words[w + 7]!;
        const second = block.doubles[r * (RECORD_BYTES / 8) + 17]!;
        if (hour > 24 || minute > 59 || !(second >= 0 && second <= 59.999999)) continue;
        records++;
        fn(block.words[w]!, block.words[w + 1]!, hour * 3600 + minute * 60 + second);
      }
    }
  } finally {
    closeSync(fd);
  }
  return records;
}

/**
 * Calls fn for every sender-log record paired with its receiver-log record (the round trips the
 * campaign counts; an unpaired one is not a round trip it counts either): the payload's send stamp,
 * ITGRecv's receive stamp (NaN when the receiver log has none) and ITGSend's receive stamp of the
 * echo, as times of day.
 */
function forEachPairedPacket(logs: { senderLog: string; receiverLog: string }, fn: (flowId: number, seq: number, tx: number, rxR: number, rxS: number) => void): void {
  const sendStamps = new LogStamps(logs.receiverLog, "tx");
  const receiveStamps = new LogStamps(logs.receiverLog, "rx");
  try {
    forEachReceive(logs.senderLog, (flowId, seq, rxS) => {
      const tx = sendStamps.sendStampOf(flowId, seq);
      if (tx !== tx) return;
      fn(flowId, seq, tx, receiveStamps.sendStampOf(flowId, seq), rxS);
    });
  } finally {
    void sendStamps.close();
    void receiveStamps.close();
  }
}

/**
 * One D-ITG round-trip run cut into sections: every sampled sender-log record whose receiver-log
 * record and kernel stamps are all there. The sections' means must add up to the exact delays of
 * the same sampled packets.
 */
export function decomposeRoundTrips(capture: HopCapture, logs: { senderLog: string; receiverLog: string }): RunHops {
  const offset = BigInt(capture.offsetStartNs);
  const bytes = readFileSync(capture.recordsFile);
  const path = pathHops(capture.path);
  const forwardPoints = path.points.forward;
  const returnPoints = path.points.return;
  const every = sampleEveryOf(capture);
  const stamps = readPointStamps(bytes, "ditg", offset, capture.recordsFile, forwardPoints[0], every);
  const names = namesOf(path.sections, true);
  const values = new SectionValues(names, Math.max(...stamps.perPoint, 1));
  // [tx, ...forward points, rxR, ...return points, rxS]
  const nF = forwardPoints.length;
  const rxAt = nF + 1;
  const last = rxAt + returnPoints.length + 1;
  const boundaries = new Float64Array(last + 1);
  const row = new Float64Array(names.length);
  const forward = path.sections.forward.length;
  let incomplete = 0;
  let outOfOrder = 0;
  // The sampled packets and their exact delays (one-way: those the receiver logged a receive time for).
  let sampled = 0;
  const exact = { oneWay: 0, oneWayPackets: 0, roundTrip: 0 };
  forEachPairedPacket(logs, (flowId, seq, tx, rxR, rxS) => {
    if (!hopSampled(flowId, seq, every)) return;
    sampled++;
    exact.roundTrip += delayAcrossMidnight(rxS, tx);
    if (rxR === rxR) {
      exact.oneWay += delayAcrossMidnight(rxR, tx);
      exact.oneWayPackets++;
    }
    boundaries[0] = tx;
    for (let p = 0; p < nF; p++) boundaries[1 + p] = stamps.points[forwardPoints[p]!]!.get(flowId, seq);
    boundaries[rxAt] = rxR;
    for (let p = 0; p < returnPoints.length; p++) boundaries[rxAt + 1 + p] = stamps.points[returnPoints[p]!]!.get(flowId, seq);
    boundaries[last] = rxS;
    for (const b of boundaries) {
      if (b !== b) {
        incomplete++;
        return;
      }
    }
    // Sections: consecutive boundaries; then one end-to-end per direction.
    let k = 0;
    let ordered = true;
    for (let b = 0; b < last; b++) {
      const section = delayAcrossMidnight(boundaries[b + 1]!, boundaries[b]!);
      // Kernel to kernel on one clock: never negative. A D-ITG stamp is truncated to the microsecond.
      const anchored = b === 0 || b === rxAt - 1 || b === rxAt || b === last - 1;
      if (section < (anchored ? -DITG_STAMP_SLACK_S : 0)) ordered = false;
      row[k++] = section;
      if (b === forward - 1) row[k++] = delayAcrossMidnight(boundaries[rxAt]!, boundaries[0]!);
    }
    row[k] = delayAcrossMidnight(boundaries[last]!, boundaries[rxAt]!);
    if (!ordered) {
      outOfOrder++;
      return;
    }
    values.add(row);
  });
  const sections = values.summaries();
  const mean = (direction: HopDirection) =>
    sections.filter((s) => s.direction === direction && s.section !== END_TO_END).reduce((sum, s) => sum + s.meanS, 0);
  const residualForwardS = exact.oneWayPackets > 0 && values.n > 0 ? mean("forward") - exact.oneWay / exact.oneWayPackets : undefined;
  const residualRoundTripS = sampled > 0 && values.n > 0 ? mean("forward") + mean("return") - exact.roundTrip / sampled : undefined;
  const base = checkCounts(capture, bytes, "ditg", { packets: sampled, decomposed: values.n, incomplete, outOfOrder, unsampledStamps: stamps.unsampled });
  return { sections, check: withResiduals(base, residualForwardS, residualRoundTripS) };
}

/** The check with its residuals: it adds up when the counts do, the clock held and both residuals are within HOP_SUM_TOLERANCE_S. */
function withResiduals(base: HopCheck, residualForwardS: number | undefined, residualRoundTripS: number | undefined): HopCheck {
  return {
    ...base,
    ...(residualForwardS !== undefined ? { residualForwardS } : {}),
    ...(residualRoundTripS !== undefined ? { residualRoundTripS } : {}),
    addsUp:
      base.addsUp &&
      Math.abs(base.clockStepNs) <= CLOCK_STEP_LIMIT_NS &&
      residualForwardS !== undefined &&
      residualRoundTripS !== undefined &&
      Math.abs(residualForwardS) <= HOP_SUM_TOLERANCE_S &&
      Math.abs(residualRoundTripS) <= HOP_SUM_TOLERANCE_S,
  };
}

/** One setup run's TCP handshakes cut into the kernel's sections: every SYN the client sent whose SYN-ACK came back through every point of the path. */
export function decomposeHandshakes(capture: HopCapture): RunHops {
  const bytes = readFileSync(capture.recordsFile);
  const path = pathHops(capture.path);
  const order = handshakePoints(path);
  // The SYNs the client sent are those its first packet point saw: one without the connect call's stamps is incomplete.
  const stamps = readPointStamps(bytes, "handshake", BigInt(capture.offsetStartNs), capture.recordsFile, path.points.forward[0]);
  const names = namesOf(handshakeSections(path), false);
  const values = new SectionValues(names, stamps.firstPoint.length);
  const row = new Float64Array(names.length);
  let incomplete = 0;
  let outOfOrder = 0;
  for (const { flowId, seq } of stamps.firstPoint) {
    if (flowId !== HOP_HANDSHAKE_FLOW) continue;
    const t = order.map((p) => stamps.points[p]!.get(flowId, seq));
    if (t.some((x) => x !== x)) {
      incomplete++;
      continue;
    }
    let ordered = true;
    for (let p = 0; p < order.length - 1; p++) {
      row[p] = delayAcrossMidnight(t[p + 1]!, t[p]!);
      if (row[p]! < 0) ordered = false;
    }
    if (!ordered) outOfOrder++;
    else values.add(row);
  }
  // Kernel stamps only: the clock offset does not enter a handshake's sections.
  return {
    sections: values.summaries(),
    check: checkCounts(capture, bytes, "handshake", { packets: stamps.firstPoint.length, decomposed: values.n, incomplete, outOfOrder, unsampledStamps: 0 }),
  };
}

// ---------------------------------------------------------------------------------------------
// A worker's part of each round trip (scope "worker").

/**
 * A boundary of a worker capture: a kernel point, or one of D-ITG's stamps taken on a probed host:
 * ITGRecv's receive stamp ("rx"), and on clusterip the client pod's send stamp and its receive stamp
 * of the echo ("tx", "rxS"), which ITGSend takes on worker 1.
 */
export type WorkerBoundary = number | "tx" | "rx" | "rxS";

/**
 * Per path, what the workers of a deployed stack time: runs of consecutive boundaries on one
 * host's clock, in path order (host 1 is worker 1, host 2 worker 2). Sections lie within a run;
 * between runs on two hosts nothing is timed one way, but where the path leaves worker 1 and comes
 * back to it, worker 1's time between the two minus worker 2's time between its first and last
 * boundary is the node-to-node crossing both ways (NODE_TO_NODE_BOTH_WAYS): two durations, each on
 * its own host's clock, as D-ITG's round trip is.
 */
export const WORKER_PATH_RUNS: Readonly<Record<ServicePath, readonly { host: 1 | 2; boundaries: readonly WorkerBoundary[] }[]>> = {
  "nodeport-local": [{ host: 1, boundaries: [3, 4, 5, "rx", 6, 7, 8] }],
  "nodeport-remote": [
    { host: 1, boundaries: [3, 12] },
    { host: 2, boundaries: [13, 14, 15, "rx", 16, 17, 18] },
    { host: 1, boundaries: [19, 8] },
  ],
  clusterip: [
    { host: 1, boundaries: ["tx", 24, 25, 20, 21, 12] },
    { host: 2, boundaries: [13, 14, 15, "rx", 16, 17, 18] },
    { host: 1, boundaries: [19, 22, 23, "rxS"] },
  ],
};
/** The node-to-node sections of both directions together, as a deployed stack's two workers time them (listed with the return sections, where it ends). */
export const NODE_TO_NODE_BOTH_WAYS = "node-to-node-both-ways";

/** The points a worker probes on a path, per host (1: worker 1, 2: worker 2). */
export function workerPoints(path: ServicePath, host: 1 | 2): number[] {
  return workerRuns(path).filter((r) => r.host === host).flatMap((r) => r.boundaries.filter((b): b is number => typeof b === "number"));
}

function workerRuns(path: ServicePath = DEFAULT_PATH) {
  const runs = WORKER_PATH_RUNS[path];
  if (runs === undefined) throw new Error(`path: "${String(path)}" has no worker points; accepted: ${Object.keys(WORKER_PATH_RUNS).join(", ")}`);
  return runs;
}

/** A worker's first point that packets cross (the connect call's stamps come before it on a handshake, with no packet yet). */
function firstPacketPoint(path: ServicePath): number {
  const lead = pathHops(path).handshakeLead?.points ?? [];
  return workerPoints(path, 1).find((p) => !lead.includes(p))!;
}

/** The points a kernel may skip on the way in (bpf_redirect_peer into the pod), each with the point before it: a pod veth's egress on the host side. */
const BYPASSABLE: readonly { point: number; after: number }[] = [
  { point: 4, after: 3 },
  { point: 14, after: 13 },
];

/** Pure: the points a worker capture's packets never crossed: a pod veth's egress when no packet was stamped there but some reached the point before it. */
export function bypassedPoints(perPoint: readonly number[], path: ServicePath = DEFAULT_PATH): number[] {
  const points = [1, 2].flatMap((h) => workerPoints(path, h as 1 | 2));
  return BYPASSABLE.filter((b) => points.includes(b.point) && perPoint[b.point] === 0 && (perPoint[b.after] ?? 0) > 0).map((b) => b.point);
}

/** A worker plan: the runs of boundaries with the sections between consecutive ones (one fewer than boundaries per run), and whether the node-to-node crossing is timed both ways. */
interface WorkerPlan {
  readonly runs: readonly { host: 1 | 2; boundaries: readonly WorkerBoundary[]; sections: readonly { direction: HopDirection; section: string }[] }[];
  readonly bothWays: boolean;
  /** The boundary that divides the directions (ITGRecv's stamp; for a handshake, the SYN's arrival in the pod), as [run, index]. */
  readonly pod: readonly [number, number];
}

/**
 * Pure: the worker plan of a path for D-ITG packets or handshakes. Each section between consecutive
 * boundaries is the path's own section between them (PATH_HOPS: the lab's names); a bypassed point
 * merges the section before it with the one after (the forward pod-link goes).
 */
export function workerPlan(path: ServicePath, keying: HopKeying, bypassed: readonly number[] = []): WorkerPlan {
  const hops = pathHops(path);
  // The whole path's boundaries and the section after each, as the lab decomposes it.
  const full: WorkerBoundary[] = keying === "ditg" ? ["tx", ...hops.points.forward, "rx", ...hops.points.return, "rxS"] : handshakePoints(hops);
  const lead = hops.handshakeLead?.points ?? [];
  const names = keying === "ditg" ? hops.sections : handshakeSections(hops);
  const after = new Map<WorkerBoundary, { direction: HopDirection; section: string }>();
  const sectionList = [...names.forward.map((section) => ({ direction: "forward" as const, section })), ...names.return.map((section) => ({ direction: "return" as const, section }))];
  full.slice(0, -1).forEach((b, i) => after.set(b, sectionList[i]!));
  const runs = workerRuns(path).map((run) => {
    // D-ITG packets cross neither the connect call (handshakes only) nor, as kernel stamps, tx, rx and rxS.
    const boundaries = run.boundaries.filter((b) => (keying === "ditg" ? !lead.includes(b as number) : typeof b === "number")).filter((b) => !bypassed.includes(b as number));
    return { host: run.host, boundaries, sections: boundaries.slice(0, -1).map((b) => after.get(b)!) };
  });
  const podAt = keying === "ditg" ? "rx" : hops.points.forward.at(-1)!;
  const podRun = runs.findIndex((r) => r.boundaries.includes(podAt));
  return { runs, bothWays: runs.length === 3, pod: [podRun, runs[podRun]!.boundaries.indexOf(podAt)] };
}

/** The worker's part of a packet: the sections between its boundaries, the node-to-node crossing both ways, then its two spans. */
class WorkerRows {
  readonly names: { direction: HopDirection; section: string }[];
  readonly values: SectionValues;
  private readonly row: Float64Array;
  residenceSum = 0;

  constructor(
    readonly plan: WorkerPlan,
    capacity: number,
  ) {
    this.names = [
      ...plan.runs.flatMap((r) => r.sections),
      ...(plan.bothWays ? [{ direction: "return" as const, section: NODE_TO_NODE_BOTH_WAYS }] : []),
      { direction: "forward", section: WORKER_SPAN },
      { direction: "return", section: WORKER_SPAN },
    ];
    this.values = new SectionValues(this.names, capacity);
    this.row = new Float64Array(this.names.length);
  }

  /**
   * Adds a packet's boundaries, run by run (t[r][b]); false when they are out of order (a kernel
   * section below zero, a section at a D-ITG stamp below its truncation, a negative crossing), or
   * when the packet spent longer from entering worker 1 to leaving it than `roundTrip` (if given).
   */
  add(t: readonly Float64Array[], roundTrip?: number): boolean {
    const { row, plan } = this;
    let k = 0;
    let forwardSpan = 0;
    let returnSpan = 0;
    for (let r = 0; r < plan.runs.length; r++) {
      const bounds = plan.runs[r]!.boundaries;
      const times = t[r]!;
      for (let b = 0; b < bounds.length - 1; b++) {
        const value = delayAcrossMidnight(times[b + 1]!, times[b]!);
        const anchored = typeof bounds[b] === "string" || typeof bounds[b + 1] === "string";
        if (value < (anchored ? -DITG_STAMP_SLACK_S : 0)) return false;
        row[k++] = value;
        const forward = r < plan.pod[0] || (r === plan.pod[0] && b < plan.pod[1]);
        if (forward) forwardSpan += value;
        else returnSpan += value;
      }
    }
    let residence: number;
    const first = t[0]!;
    const lastRun = t[plan.runs.length - 1]!;
    if (plan.bothWays) {
      const away = delayAcrossMidnight(lastRun[0]!, first[first.length - 1]!);
      const middle = t[1]!;
      const crossing = away - delayAcrossMidnight(middle[middle.length - 1]!, middle[0]!);
      if (crossing < 0) return false;
      row[k++] = crossing;
      returnSpan += crossing;
    }
    // On worker 1 (or the one worker): from the packet's first boundary there to its last, two stamps on one clock.
    residence = delayAcrossMidnight(lastRun[lastRun.length - 1]!, first[0]!);
    row[k++] = forwardSpan;
    row[k] = returnSpan;
    // Durations on the two hosts' own clocks: comparable without synchronising them.
    if (roundTrip !== undefined && residence > roundTrip + DITG_STAMP_SLACK_S) return false;
    this.residenceSum += residence;
    this.values.add(row);
    return true;
  }

  /** The sections, and the check's residuals and verdict over `base`. */
  result(base: HopCheck, bypassed: readonly number[]): RunHops {
    const sections = this.values.summaries();
    const n = this.values.n;
    const meanOf = (direction: HopDirection, span: boolean) =>
      sections.filter((s) => s.direction === direction && (s.section === WORKER_SPAN) === span).reduce((sum, s) => sum + s.meanS, 0);
    const residualForwardS = n > 0 ? meanOf("forward", false) - meanOf("forward", true) : undefined;
    const residualRoundTripS = n > 0 ? meanOf("forward", false) + meanOf("return", false) - this.residenceSum / n : undefined;
    const bypassing = bypassed.length > 0 ? { bypassed: bypassed.map((p) => HOP_POINTS[p]!) } : {};
    return { sections, check: withResiduals({ ...base, ...bypassing }, residualForwardS, residualRoundTripS) };
  }
}

/** The boundaries' times of one packet, run by run; false as soon as one is missing. */
function fillWorkerTimes(plan: WorkerPlan, t: Float64Array[], at: (b: WorkerBoundary) => number): boolean {
  for (let r = 0; r < plan.runs.length; r++) {
    const bounds = plan.runs[r]!.boundaries;
    for (let b = 0; b < bounds.length; b++) {
      const v = at(bounds[b]!);
      if (v !== v) return false;
      t[r]![b] = v;
    }
  }
  return true;
}

/**
 * One D-ITG round-trip run of a worker capture cut into the workers' sections: every sampled
 * sender-log record paired with its receiver-log record (as the campaign counts them) whose worker
 * stamps are all there. The check is the worker's (see the top of this file).
 */
export function decomposeWorkerRoundTrips(capture: HopCapture, logs: { senderLog: string; receiverLog: string }): RunHops {
  const bytes = readFileSync(capture.recordsFile);
  const path = capture.path ?? DEFAULT_PATH;
  const every = sampleEveryOf(capture);
  const stamps = readPointStamps(bytes, "ditg", BigInt(capture.offsetStartNs), capture.recordsFile, firstPacketPoint(path), every);
  const bypassed = bypassedPoints(stamps.perPoint, path);
  const plan = workerPlan(path, "ditg", bypassed);
  const rows = new WorkerRows(plan, Math.max(...stamps.perPoint, 1));
  const t = plan.runs.map((r) => new Float64Array(r.boundaries.length));
  let incomplete = 0;
  let outOfOrder = 0;
  let sampled = 0;
  forEachPairedPacket(logs, (flowId, seq, tx, rxR, rxS) => {
    if (!hopSampled(flowId, seq, every)) return;
    sampled++;
    const whole = fillWorkerTimes(plan, t, (b) => (b === "tx" ? tx : b === "rx" ? rxR : b === "rxS" ? rxS : stamps.points[b]!.get(flowId, seq)));
    if (!whole) incomplete++;
    else if (!rows.add(t, delayAcrossMidnight(rxS, tx))) outOfOrder++;
  });
  return rows.result(checkCounts(capture, bytes, "ditg", { packets: sampled, decomposed: rows.values.n, incomplete, outOfOrder, unsampledStamps: stamps.unsampled }), bypassed);
}

/** One setup run's TCP handshakes through the workers: every SYN that entered worker 1 whose SYN-ACK left it through every worker point. */
export function decomposeWorkerHandshakes(capture: HopCapture): RunHops {
  const bytes = readFileSync(capture.recordsFile);
  const path = capture.path ?? DEFAULT_PATH;
  const stamps = readPointStamps(bytes, "handshake", BigInt(capture.offsetStartNs), capture.recordsFile, firstPacketPoint(path));
  const bypassed = bypassedPoints(stamps.perPoint, path);
  const plan = workerPlan(path, "handshake", bypassed);
  const rows = new WorkerRows(plan, stamps.firstPoint.length);
  const t = plan.runs.map((r) => new Float64Array(r.boundaries.length));
  let incomplete = 0;
  let outOfOrder = 0;
  for (const { flowId, seq } of stamps.firstPoint) {
    if (flowId !== HOP_HANDSHAKE_FLOW) continue;
    if (!fillWorkerTimes(plan, t, (b) => stamps.points[b as number]!.get(flowId, seq))) incomplete++;
    else if (!rows.add(t)) outOfOrder++;
  }
  return rows.result(checkCounts(capture, bytes, "handshake", { packets: stamps.firstPoint.length, decomposed: rows.values.n, incomplete, outOfOrder, unsampledStamps: 0 }), bypassed);
}

/**
 * The captures of one run's workers (a path across two of them) as one capture: every record's stamp
 * moved onto its own host's CLOCK_REALTIME with that host's offset at the run's start, so that each
 * host's stamps line up with the D-ITG stamps taken on that host; the merged offset is 0. Sections
 * are only cut between stamps of one host (WORKER_PATH_RUNS), so the hosts' clocks need not agree.
 * The merged clock step is the largest of the hosts', the uncertainty the largest, the counts summed
 * (each point is stamped on one host only).
 */
export function mergeWorkerCaptures(captures: readonly HopCapture[], recordsFile: string, path: ServicePath): HopCapture {
  if (captures.length === 0) throw new Error("mergeWorkerCaptures: no capture");
  const keying = captures[0]!.keying;
  if (captures.some((c) => c.keying !== keying)) throw new Error(`mergeWorkerCaptures: captures keyed ${captures.map((c) => c.keying).join(", ")}; accepted: one keying`);
  const parts = captures.map((c) => {
    const bytes = readFileSync(c.recordsFile);
    if (bytes.length % HOP_RECORD_BYTES !== 0) throw new Error(`${c.recordsFile}: ${bytes.length} bytes is not a whole number of ${HOP_RECORD_BYTES}-byte hop records; the file is truncated`);
    const offset = BigInt(c.offsetStartNs);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let at = 0; at < bytes.length; at += HOP_RECORD_BYTES) view.setBigUint64(at, BigInt.asUintN(64, view.getBigUint64(at, true) + offset), true);
    return bytes;
  });
  writeFileSync(recordsFile, Buffer.concat(parts));
  const steps = captures.map((c) => BigInt(c.offsetEndNs) - BigInt(c.offsetStartNs));
  const step = steps.reduce((a, b) => ((b < 0n ? -b : b) > (a < 0n ? -a : a) ? b : a), 0n);
  const sum = (k: "stamped" | "dropped") => HOP_POINTS.map((_, p) => captures.reduce((s, c) => s + (c[k][p] ?? 0), 0));
  const lost = captures.some((c) => c.lost !== undefined) ? { lost: captures.reduce((s, c) => s + (c.lost ?? 0), 0) } : {};
  // Every host's probes are built from the same sources: one sample.
  const every = new Set(captures.map((c) => c.sampleEvery ?? 1));
  if (every.size > 1) throw new Error(`mergeWorkerCaptures: the hosts' probes sample 1 in ${[...every].join(", 1 in ")}; accepted: one sample on every host`);
  const sample = captures[0]!.sampleEvery !== undefined ? { sampleEvery: captures[0]!.sampleEvery } : {};
  return {
    ...sample,
    recordsFile,
    keying,
    scope: "worker",
    ...(path !== DEFAULT_PATH ? { path } : {}),
    offsetStartNs: "0",
    offsetEndNs: String(step),
    offsetUncertaintyNs: Math.max(...captures.map((c) => c.offsetUncertaintyNs)),
    records: captures.reduce((s, c) => s + c.records, 0),
    stamped: sum("stamped"),
    dropped: sum("dropped"),
    ...lost,
  };
}

/** A run's decomposition, by what was probed and how its packets are keyed. */
export function decomposeRun(capture: HopCapture, logs: { log: string; receiverLog?: string }): RunHops {
  const worker = capture.scope === "worker";
  if (capture.keying === "handshake") return worker ? decomposeWorkerHandshakes(capture) : decomposeHandshakes(capture);
  if (logs.receiverLog === undefined) {
    throw new Error(`hop decomposition of ${logs.log}: a D-ITG run needs its round trip's two logs (sender -l and receiver -x); accepted: an rttm flow`);
  }
  const pair = { senderLog: logs.log, receiverLog: logs.receiverLog };
  return worker ? decomposeWorkerRoundTrips(capture, pair) : decomposeRoundTrips(capture, pair);
}

// ---------------------------------------------------------------------------------------------
// Pooling runs into a cell.

/** One section over the packets of several runs (its statistics as a run's, without the histogram). */
export interface PooledSection extends Omit<HopSectionSummary, "histogram"> {
  readonly runs: number;
}

/**
 * Pure: per (direction, section), the pooled statistics of the runs' packets: mean and population
 * standard deviation exactly from each run's count, mean and deviation; the maximum of maxima; the
 * percentiles from the merged histograms (within 0.1%).
 */
export function poolSections(runs: readonly (readonly HopSectionSummary[])[]): PooledSection[] {
  const groups = new Map<string, HopSectionSummary[]>();
  for (const sections of runs) {
    for (const s of sections) {
      const id = `${s.direction}\u0000${s.section}`;
      groups.set(id, [...(groups.get(id) ?? []), s]);
    }
  }
  return [...groups.values()].map((parts) => {
    const moments = poolMoments(parts.map((p) => ({ n: p.packets, mean: p.meanS, std: p.stdS })));
    const merged = newHistogram();
    for (const p of parts) {
      if (p.packets === 0) continue;
      const h = decodeDelayHistogram(p.histogram);
      merged.add(h);
      h.destroy();
    }
    const percentiles = histogramPercentiles(merged);
    merged.destroy();
    const used = parts.filter((p) => p.packets > 0);
    return {
      direction: parts[0]!.direction,
      section: parts[0]!.section,
      runs: used.length,
      packets: moments.n,
      meanS: moments.mean,
      stdS: moments.std,
      ...percentiles,
      maxS: used.length > 0 ? Math.max(...used.map((p) => p.maxS)) : NaN,
    };
  });
}
