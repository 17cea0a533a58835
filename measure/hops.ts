// Where the delay comes from: one run's packets cut into the sections of the measured path, from the
// hop probes' kernel stamps (lab/hops/hop-probe.c) and D-ITG's own stamps.
//
// A round-trip packet crosses 15 boundaries, all on one clock once D-ITG's are moved onto the probes':
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
// reads their offset at the run's start and end (lab/hops/hop-reader.c); every stamp is moved with the
// start offset, and a run whose offset moved (the clock was stepped) fails the check. Per packet the
// sections add up to the end-to-end delays by construction (consecutive boundaries); what the check
// tests is everything around that: every D-ITG packet has every stamp, no stamp was dropped or left
// unread, the boundaries are in path order, and the sections' means add up to the exact delays the
// campaign's own decoder read from the logs (ditg-pairing.ts), to within HOP_SUM_TOLERANCE_S.
//
// The setup profile's TCP handshakes carry no D-ITG stamps: their sections are the kernel's only
// (P0..P11, "turnaround" from the SYN's pod ingress to the SYN-ACK's pod egress).
import { closeSync, openSync, readFileSync, readSync } from "node:fs";
import { encodeIntoCompressedBase64, type Histogram } from "hdr-histogram-js";
import { decodeDelayHistogram, delayAcrossMidnight, LogFormatError, newHistogram, RECORD_BYTES, recordBlock } from "./ditg-log.js";
import { LogStamps, StampWindow, type DecodedFlow } from "./ditg-pairing.js";
import { poolMoments } from "./statistics.js";

/** The probes' points, by their number in hop-maps.h (enum hop_point). */
export const HOP_POINTS = [
  "client-out", "router-in", "router-out", "uplink-in", "pod-veth-out", "pod-in",
  "pod-out", "pod-veth-in", "uplink-out", "router-in-return", "router-out-return", "client-in",
] as const;
export type HopPoint = (typeof HOP_POINTS)[number];

export const HOP_DIRECTIONS = ["forward", "return"] as const;
export type HopDirection = (typeof HOP_DIRECTIONS)[number];

/** The sections of each direction, in path order. */
export const HOP_SECTIONS: Readonly<Record<HopDirection, readonly string[]>> = {
  forward: ["client-stack", "access-link", "router", "datacenter-link", "service-dataplane", "pod-link", "pod-delivery"],
  return: ["turnaround", "pod-link", "service-dataplane", "datacenter-link", "router", "access-link", "client-stack"],
};
/** The sections of a TCP handshake (the setup profile): kernel stamps only, client egress to client ingress. */
export const HANDSHAKE_SECTIONS: Readonly<Record<HopDirection, readonly string[]>> = {
  forward: HOP_SECTIONS.forward.slice(1, -1),
  return: HOP_SECTIONS.return.slice(0, -1),
};
export const END_TO_END = "end-to-end";

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

/** What the lab hands the decoder of one run's stamps (the reader's file and its summary line). */
export interface HopCapture {
  readonly recordsFile: string;
  /** Which packets the run sent: D-ITG's (keyed by flow id and sequence number) or TCP handshakes (keyed by port). */
  readonly keying: HopKeying;
  /** CLOCK_REALTIME - CLOCK_MONOTONIC at the run's start and end, ns (decimal strings: beyond 2^53). */
  readonly offsetStartNs: string;
  readonly offsetEndNs: string;
  readonly offsetUncertaintyNs: number;
  /** Records the reader wrote. */
  readonly records: number;
  /** Per point: packets the kernel stamped into the ring, and those it counted as dropped (ring full). */
  readonly stamped: readonly number[];
  readonly dropped: readonly number[];
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
  /** Packets to decompose: paired D-ITG packets, or handshakes stamped at the client. */
  readonly packets: number;
  readonly decomposed: number;
  /** Packets missing at least one stamp. */
  readonly incomplete: number;
  /** Packets with a boundary out of path order (left out). */
  readonly outOfOrder: number;
  /** Stamps the kernel could not write (ring full), and stamps written but not read. */
  readonly droppedStamps: number;
  readonly unreadStamps: number;
  readonly clockStepNs: number;
  readonly offsetUncertaintyNs: number;
  /** Sum of the forward sections' means minus the exact one-way mean of the receiver log, s. */
  readonly residualForwardS?: number;
  /** Sum of all sections' means minus the exact round-trip mean of the paired logs, s. */
  readonly residualRoundTripS?: number;
  /** Every packet decomposed, nothing dropped or unread, no clock step, residuals within HOP_SUM_TOLERANCE_S. */
  readonly addsUp: boolean;
}

export interface RunHops {
  readonly sections: readonly HopSectionSummary[];
  readonly check: HopCheck;
}

/** Pure: the reader's summary line (lab/hops/hop-reader.c); throws on anything else. */
export function parseReaderSummary(line: string): Omit<HopCapture, "recordsFile" | "keying"> {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new Error(`hop reader printed ${JSON.stringify(line.slice(0, 200))}, not its summary line`);
  }
  const v = value as Record<string, unknown>;
  const counts = (k: string) => {
    const a = v[k];
    if (!Array.isArray(a) || a.length !== HOP_POINTS.length || !a.every((x) => Number.isSafeInteger(x) && x >= 0)) {
      throw new Error(`hop reader summary: ${k} is not ${HOP_POINTS.length} counts: ${JSON.stringify(a)}`);
    }
    return a as number[];
  };
  for (const k of ["offsetStartNs", "offsetEndNs"]) {
    if (typeof v[k] !== "string" || !/^-?\d+$/.test(v[k] as string)) throw new Error(`hop reader summary: ${k} is not an integer string: ${JSON.stringify(v[k])}`);
  }
  if (!Number.isSafeInteger(v.records) || !Number.isSafeInteger(v.offsetUncertaintyNs)) throw new Error(`hop reader summary: bad records or offsetUncertaintyNs in ${line}`);
  return {
    offsetStartNs: v.offsetStartNs as string,
    offsetEndNs: v.offsetEndNs as string,
    offsetUncertaintyNs: v.offsetUncertaintyNs as number,
    records: v.records as number,
    stamped: counts("stamped"),
    dropped: counts("dropped"),
  };
}

// ---------------------------------------------------------------------------------------------
// The probes' stamps.

/** The kernel stamps of one run, per point, keyed by (flow id, sequence number), as UTC times of day in seconds. */
export interface PointStamps {
  readonly points: readonly StampWindow[];
  /** Records read per point (of the run's keying). */
  readonly perPoint: readonly number[];
  /** Keys stamped at the first point, in stamp order (handshakes: what the run tried). */
  readonly firstPoint: readonly { flowId: number; seq: number }[];
}

/** Reads the reader's file: every record of the keying, moved to D-ITG's clock with the offset. */
export function readPointStamps(bytes: Uint8Array, keying: HopKeying, offsetNs: bigint, file = "hop records"): PointStamps {
  if (bytes.length % HOP_RECORD_BYTES !== 0) {
    throw new Error(`${file}: ${bytes.length} bytes is not a whole number of ${HOP_RECORD_BYTES}-byte hop records; the file is truncated`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = bytes.length / HOP_RECORD_BYTES;
  const perPoint = new Array<number>(HOP_POINTS.length).fill(0);
  const kind = KIND[keying];
  for (let i = 0; i < count; i++) {
    const at = i * HOP_RECORD_BYTES;
    const point = view.getUint8(at + 16);
    if (point >= HOP_POINTS.length) throw new Error(`${file}: record ${i} names point ${point}; accepted: 0-${HOP_POINTS.length - 1}`);
    if (view.getUint8(at + 17) === kind) perPoint[point]!++;
  }
  let size = 2;
  while (size < Math.max(...perPoint)) size *= 2;
  const points = HOP_POINTS.map(() => new StampWindow(size));
  const firstPoint: { flowId: number; seq: number }[] = [];
  for (let i = 0; i < count; i++) {
    const at = i * HOP_RECORD_BYTES;
    if (view.getUint8(at + 17) !== kind) continue;
    const flowId = view.getUint32(at + 8, true);
    const seq = view.getUint32(at + 12, true);
    const point = view.getUint8(at + 16);
    const window = points[point]!;
    const flow = window.flow(flowId, 0, 0);
    // The first stamp wins: a retransmitted SYN must not move its connection's first packet.
    if (!Number.isNaN(window.stampOf(flow, seq))) continue;
    const ofDay = (((view.getBigUint64(at, true) + offsetNs) % DAY_NS) + DAY_NS) % DAY_NS;
    window.put(flow, seq, Number(ofDay) / NS_PER_S);
    if (point === 0) firstPoint.push({ flowId, seq });
  }
  return { points, perPoint, firstPoint };
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

/** The check's counts; addsUp here: every packet decomposed, no stamp dropped or unread. */
function checkCounts(
  capture: HopCapture,
  bytes: Uint8Array,
  keying: HopKeying,
  counts: Pick<HopCheck, "packets" | "decomposed" | "incomplete" | "outOfOrder">,
): HopCheck {
  const losses = captureLosses(capture, recordsPerPoint(bytes));
  return {
    keying,
    ...counts,
    droppedStamps: losses.dropped,
    unreadStamps: losses.unread,
    clockStepNs: Number(BigInt(capture.offsetEndNs) - BigInt(capture.offsetStartNs)),
    offsetUncertaintyNs: capture.offsetUncertaintyNs,
    addsUp: counts.packets > 0 && counts.decomposed === counts.packets && losses.dropped === 0 && losses.unread === 0,
  };
}

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
 * One D-ITG round-trip run cut into sections: every sender-log record whose receiver-log record and
 * kernel stamps are all there. `decoded` (the campaign's decode of the same logs) gives the exact
 * means the sections must add up to.
 */
export function decomposeRoundTrips(capture: HopCapture, logs: { senderLog: string; receiverLog: string }, decoded?: DecodedFlow): RunHops {
  const offset = BigInt(capture.offsetStartNs);
  const bytes = readFileSync(capture.recordsFile);
  const stamps = readPointStamps(bytes, "ditg", offset, capture.recordsFile);
  const names = namesOf(HOP_SECTIONS, true);
  const values = new SectionValues(names, Math.max(...stamps.perPoint, 1));
  const sendStamps = new LogStamps(logs.receiverLog, "tx");
  const receiveStamps = new LogStamps(logs.receiverLog, "rx");
  const boundaries = new Float64Array(15);
  const row = new Float64Array(names.length);
  const forward = HOP_SECTIONS.forward.length;
  let packets = 0;
  let incomplete = 0;
  let outOfOrder = 0;
  try {
    forEachReceive(logs.senderLog, (flowId, seq, rxS) => {
      const tx = sendStamps.sendStampOf(flowId, seq);
      if (tx !== tx) return; // unpaired: not a round trip the campaign counts either
      packets++;
      boundaries[0] = tx;
      for (let p = 0; p < 6; p++) boundaries[1 + p] = stamps.points[p]!.get(flowId, seq);
      boundaries[7] = receiveStamps.sendStampOf(flowId, seq);
      for (let p = 6; p < 12; p++) boundaries[2 + p] = stamps.points[p]!.get(flowId, seq);
      boundaries[14] = rxS;
      for (const b of boundaries) {
        if (b !== b) {
          incomplete++;
          return;
        }
      }
      // Sections: consecutive boundaries; then one end-to-end per direction.
      let k = 0;
      let ordered = true;
      for (let b = 0; b < 14; b++) {
        const section = delayAcrossMidnight(boundaries[b + 1]!, boundaries[b]!);
        // Kernel to kernel on one clock: never negative. A D-ITG stamp is truncated to the microsecond.
        const anchored = b === 0 || b === 6 || b === 7 || b === 13;
        if (section < (anchored ? -DITG_STAMP_SLACK_S : 0)) ordered = false;
        row[k++] = section;
        if (b === forward - 1) row[k++] = delayAcrossMidnight(boundaries[7]!, boundaries[0]!);
      }
      row[k] = delayAcrossMidnight(boundaries[14]!, boundaries[7]!);
      if (!ordered) {
        outOfOrder++;
        return;
      }
      values.add(row);
    });
  } finally {
    void sendStamps.close();
    void receiveStamps.close();
  }
  const sections = values.summaries();
  const mean = (direction: HopDirection) =>
    sections.filter((s) => s.direction === direction && s.section !== END_TO_END).reduce((sum, s) => sum + s.meanS, 0);
  const oneWay = decoded?.oneWay?.total.delayMeanS;
  const roundTrip = decoded?.total.delaySource === "paired" ? decoded.total.delayMeanS : undefined;
  const residualForwardS = oneWay !== undefined && values.n > 0 ? mean("forward") - oneWay : undefined;
  const residualRoundTripS = roundTrip !== undefined && values.n > 0 ? mean("forward") + mean("return") - roundTrip : undefined;
  const base = checkCounts(capture, bytes, "ditg", { packets, decomposed: values.n, incomplete, outOfOrder });
  const check: HopCheck = {
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
  return { sections, check };
}

/** One setup run's TCP handshakes cut into the kernel's sections: every SYN the client sent whose SYN-ACK came back through every point. */
export function decomposeHandshakes(capture: HopCapture): RunHops {
  const bytes = readFileSync(capture.recordsFile);
  const stamps = readPointStamps(bytes, "handshake", BigInt(capture.offsetStartNs), capture.recordsFile);
  const names = namesOf(HANDSHAKE_SECTIONS, false);
  const values = new SectionValues(names, stamps.firstPoint.length);
  const row = new Float64Array(names.length);
  let incomplete = 0;
  let outOfOrder = 0;
  for (const { flowId, seq } of stamps.firstPoint) {
    if (flowId !== HOP_HANDSHAKE_FLOW) continue;
    const t = stamps.points.map((w) => w.get(flowId, seq));
    if (t.some((x) => x !== x)) {
      incomplete++;
      continue;
    }
    let ordered = true;
    for (let p = 0; p < 11; p++) {
      row[p] = delayAcrossMidnight(t[p + 1]!, t[p]!);
      if (row[p]! < 0) ordered = false;
    }
    if (!ordered) outOfOrder++;
    else values.add(row);
  }
  // Kernel stamps only: the clock offset does not enter a handshake's sections.
  return {
    sections: values.summaries(),
    check: checkCounts(capture, bytes, "handshake", { packets: stamps.firstPoint.length, decomposed: values.n, incomplete, outOfOrder }),
  };
}

/** A run's decomposition, by how its packets are keyed. */
export function decomposeRun(capture: HopCapture, logs: { log: string; receiverLog?: string }, decoded?: DecodedFlow): RunHops {
  if (capture.keying === "handshake") return decomposeHandshakes(capture);
  if (logs.receiverLog === undefined) {
    throw new Error(`hop decomposition of ${logs.log}: a D-ITG run needs its round trip's two logs (sender -l and receiver -x); accepted: an rttm flow`);
  }
  return decomposeRoundTrips(capture, { senderLog: logs.log, receiverLog: logs.receiverLog }, decoded);
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
