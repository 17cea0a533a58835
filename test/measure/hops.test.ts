// The hop decomposition on crafted inputs: D-ITG logs and probe records written byte by byte in their
// documented layouts, with known sections, so that every expected number is computed here, not read
// back from the code. Real traffic through the lab is test/lab/hops.test.ts.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { DOMParser } from "@xmldom/xmldom";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { campaignIdFor, planCampaign, type CampaignDefinition } from "../../measure/campaign-plan.js";
import { encodeRecord, recordBlock, timeOfDay } from "../../measure/ditg-log.js";
import { decodeFlow } from "../../measure/ditg-pairing.js";
import {
  decomposeRun,
  END_TO_END,
  HOP_DIRECTIONS,
  HOP_POINTS,
  HOP_RECORD_BYTES,
  HOP_SECTIONS,
  HOP_SUM_TOLERANCE_S,
  handshakePoints,
  handshakeSections,
  SOCKET_LB_SECTION,
  SYN_SEND_SECTION,
  hopSampled,
  PATH_HOPS,
  parseReaderSummary,
  poolSections,
  readPointStamps,
  summarize,
  mergeWorkerCaptures,
  NODE_TO_NODE_BOTH_WAYS,
  WORKER_POINTS,
  WORKER_SPAN,
  WORKER_UNTIMED,
  workerPoints,
  workerUntimed,
  type HopCapture,
  type RunHops,
} from "../../measure/hops.js";
import { buildReport, formatNumber } from "../../measure/report.js";
import { renderSvg } from "../../measure/report-figures.js";
import { FIRST_PACKET_SECTION, HOPS_CSV_HEADER, hopReport } from "../../measure/report-hops.js";
import { fmt } from "../../measure/report-markdown.js";
import { ResultStore } from "../../measure/store.js";
import type { FlowSummary, RunResult } from "../../measure/types.js";
import { scenarioSchema } from "../../scenario/schema.js";
import type { ServicePath } from "../../scenario/paths.js";

/** CLOCK_REALTIME - CLOCK_MONOTONIC of the crafted runs, ns. */
const OFFSET_NS = 1_796_012_280_234_406_783n;
/** First packet's send time, µs since the epoch (a whole microsecond, as D-ITG logs it). */
const T0_US = 1_796_019_600_000_000;
/** Nanoseconds spent in each of the 14 sections by packet i (forward then return). */
const SECTION_NS = (i: number) => [12_000 + (i % 7) * 1000, 3_000, 4_000, 5_000, 7_000 + (i % 3) * 1000, 2_000, 30_000, 25_000, 2_000, 8_000, 5_000, 4_000, 3_000, 15_000];
/** Nanoseconds in each of `count` sections by packet i, on a path other than the paper's: each section its own time, whole microseconds as D-ITG stamps. */
const otherSectionNs = (count: number) => (i: number) => Array.from({ length: count }, (_, j) => 2_000 + j * 1_000 + ((i + j) % 5) * 1_000);

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "hops-test-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

interface Crafted {
  capture: HopCapture;
  logs: { log: string; receiverLog: string };
  /** Boundary times of every packet, ns since the epoch. */
  boundaries: bigint[][];
}

/**
 * A round-trip run of `n` packets: receiver log (tx, rxR), sender log (rxS) and the probes' records
 * (12 points, monotonic ns), all from the same boundary times. `edit` may change the records.
 */
function craft(
  n: number,
  edit: (records: { point: number; seq: number; stampNs: bigint }[]) => typeof records = (r) => r,
  capture: Partial<HopCapture> = {},
  route: ServicePath = "nodeport-local",
  sectionNs = route === "nodeport-local" ? SECTION_NS : otherSectionNs(PATH_HOPS[route].points.forward.length + PATH_HOPS[route].points.return.length + 2),
  /** How far the receiver's clock is ahead of the sender's (ITGRecv's receive stamps), ns. */
  receiverClockNs = 0n,
): Crafted {
  const { points: crossed } = PATH_HOPS[route];
  const points = [...crossed.forward, ...crossed.return];
  const nF = crossed.forward.length;
  const boundaries: bigint[][] = [];
  for (let i = 0; i < n; i++) {
    const b = [BigInt(T0_US + i * 1000) * 1000n];
    for (const ns of sectionNs(i)) b.push(b[b.length - 1]! + BigInt(ns));
    boundaries.push(b);
  }
  const receiver = recordBlock(n);
  const sender = recordBlock(n);
  const us = (ns: bigint) => Number(ns / 1000n);
  boundaries.forEach((b, i) => {
    const common = { flowId: 1, seqNum: i + 1, srcAddress: "198.18.0.2", srcPort: 40000, destAddress: "198.18.1.2", destPort: 31000, size: 512 };
    encodeRecord(receiver, i, { ...common, tx: timeOfDay(us(b[0]!)), rx: timeOfDay(us(b[nF + 1]! + receiverClockNs)) });
    encodeRecord(sender, i, { ...common, tx: timeOfDay(us(b[0]!)), rx: timeOfDay(us(b[points.length + 2]!)) });
  });
  let records = boundaries.flatMap((b, i) => points.map((point, j) => ({ point, seq: i + 1, stampNs: b[j < nF ? j + 1 : j + 2]! - OFFSET_NS })));
  records = edit(records);
  const bytes = Buffer.alloc(records.length * HOP_RECORD_BYTES);
  records.forEach((r, k) => {
    const at = k * HOP_RECORD_BYTES;
    bytes.writeBigUInt64LE(r.stampNs, at);
    bytes.writeUInt32LE(1, at + 8);
    bytes.writeUInt32LE(r.seq, at + 12);
    bytes.writeUInt8(r.point, at + 16);
  });
  const paths = { log: path.join(dir, "s.log"), receiverLog: path.join(dir, "r.log"), records: path.join(dir, "run.hops") };
  writeFileSync(paths.log, sender.bytes);
  writeFileSync(paths.receiverLog, receiver.bytes);
  writeFileSync(paths.records, bytes);
  const perPoint = HOP_POINTS.map((_, p) => records.filter((r) => r.point === p).length);
  return {
    boundaries,
    logs: { log: paths.log, receiverLog: paths.receiverLog },
    capture: {
      recordsFile: paths.records,
      keying: "ditg",
      offsetStartNs: String(OFFSET_NS),
      offsetEndNs: String(OFFSET_NS),
      offsetUncertaintyNs: 30,
      records: records.length,
      stamped: perPoint,
      dropped: HOP_POINTS.map(() => 0),
      ...(route !== "nodeport-local" ? { path: route } : {}),
      ...capture,
    },
  };
}

async function decompose(c: Crafted): Promise<RunHops> {
  return decomposeRun(c.capture, c.logs);
}

/**
 * Handshake records of `n` connections (client port 2000 + i) stamped at `points` in order, each
 * `gaps(i)[j]` ns after the one before; written to setup.hops, whose path is returned.
 */
function writeHandshakes(points: readonly number[], n: number, gaps: (i: number) => number[], key: (i: number) => number = (i) => 2000 + i): string {
  const bytes = Buffer.alloc(n * points.length * HOP_RECORD_BYTES);
  let k = 0;
  for (let i = 0; i < n; i++) {
    let t = 1_000_000_000n + BigInt(i) * 10_000_000n;
    points.forEach((point, j) => {
      if (j > 0) t += BigInt(gaps(i)[j - 1]!);
      const at = k++ * HOP_RECORD_BYTES;
      bytes.writeBigUInt64LE(t, at);
      bytes.writeUInt32LE(0xffffffff, at + 8);
      bytes.writeUInt32LE(key(i), at + 12);
      bytes.writeUInt8(point, at + 16);
      bytes.writeUInt8(1, at + 17);
    });
  }
  const recordsFile = path.join(dir, "setup.hops");
  writeFileSync(recordsFile, bytes);
  return recordsFile;
}

const sectionOf = (hops: RunHops, direction: "forward" | "return", name: string) => hops.sections.find((s) => s.direction === direction && s.section === name)!;
const relative = (x: number, expected: number) => Math.abs(x - expected) / expected;
const meanOf = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

describe("decomposeRoundTrips", () => {
  it("cuts every packet into the sections it spent, and they add up to the logs' exact delays", async () => {
    const n = 400;
    const c = craft(n);
    const hops = await decompose(c);
    expect(hops.check).toMatchObject({ keying: "ditg", packets: n, decomposed: n, incomplete: 0, outOfOrder: 0, droppedStamps: 0, unreadStamps: 0, clockStepNs: 0, addsUp: true });
    const names = [...HOP_SECTIONS.forward.map((s) => ["forward", s] as const), ...HOP_SECTIONS.return.map((s) => ["return", s] as const)];
    names.forEach(([direction, name], k) => {
      const expected = Array.from({ length: n }, (_, i) => SECTION_NS(i)[k]! / 1e9);
      const s = sectionOf(hops, direction, name);
      expect(s.packets, `${direction} ${name}`).toBe(n);
      // D-ITG's stamps are whole microseconds; every crafted boundary is too.
      expect(s.meanS, `${direction} ${name}`).toBeCloseTo(meanOf(expected), 10);
      expect(s.maxS, `${direction} ${name}`).toBeCloseTo(Math.max(...expected), 10);
      // Percentiles come from the HDR histogram: within 0.1% (3 significant digits).
      expect(relative(s.p50S, [...expected].sort((a, b) => a - b)[Math.ceil(0.5 * n) - 1]!), `${direction} ${name}`).toBeLessThanOrEqual(1e-3);
    });
    const forward = Array.from({ length: n }, (_, i) => SECTION_NS(i).slice(0, 7).reduce((a, b) => a + b, 0) / 1e9);
    const back = Array.from({ length: n }, (_, i) => SECTION_NS(i).slice(7).reduce((a, b) => a + b, 0) / 1e9);
    expect(sectionOf(hops, "forward", END_TO_END).meanS).toBeCloseTo(meanOf(forward), 10);
    expect(sectionOf(hops, "return", END_TO_END).meanS).toBeCloseTo(meanOf(back), 10);
    expect(Math.abs(hops.check.residualForwardS!)).toBeLessThan(1e-9);
    expect(Math.abs(hops.check.residualRoundTripS!)).toBeLessThan(1e-9);
  });

  it("a missing stamp leaves its packet out, counted, and the run does not add up", async () => {
    const hops = await decompose(craft(100, (r) => r.filter((x) => !(x.point === 4 && x.seq === 50))));
    expect(hops.check).toMatchObject({ packets: 100, decomposed: 99, incomplete: 1, addsUp: false });
    expect(sectionOf(hops, "forward", "service-dataplane").packets).toBe(99);
    // The decoder's exact means cover the packet the sections lack.
    expect(Math.abs(hops.check.residualRoundTripS!)).toBeGreaterThan(0);
  });

  it("stamps dropped in the kernel or left unread fail the check", async () => {
    const dropped = await decompose(craft(50, undefined, { dropped: HOP_POINTS.map((_, p) => (p === 3 ? 2 : 0)) }));
    expect(dropped.check).toMatchObject({ droppedStamps: 2, decomposed: 50, addsUp: false });
    const unread = await decompose(craft(50, undefined, { stamped: HOP_POINTS.map((_, p) => (p === 9 ? 51 : p < 12 ? 50 : 0)) }));
    expect(unread.check).toMatchObject({ unreadStamps: 1, addsUp: false });
  });

  it("a stepped clock fails the check; a wrong offset puts boundaries out of path order", async () => {
    const stepped = await decompose(craft(50, undefined, { offsetEndNs: String(OFFSET_NS + 5000n) }));
    expect(stepped.check).toMatchObject({ clockStepNs: 5000, addsUp: false });
    const shifted = await decompose(craft(50, undefined, { offsetStartNs: String(OFFSET_NS + 20_000n), offsetEndNs: String(OFFSET_NS + 20_000n) }));
    // 20 µs late: the client stack (at most 18 µs here) turns negative for every packet.
    expect(shifted.check).toMatchObject({ outOfOrder: 50, decomposed: 0, addsUp: false });
  });

  it("two points swapped are out of path order", async () => {
    const hops = await decompose(craft(30, (r) => r.map((x) => (x.point === 3 ? { ...x, point: 4 } : x.point === 4 ? { ...x, point: 3 } : x))));
    expect(hops.check).toMatchObject({ outOfOrder: 30, addsUp: false });
  });

  it("the residuals are the sections' means against the logs' exact delays of the packets to decompose: one the sections lack moves them by its share", async () => {
    const n = 60;
    // Packet 30 (sequence number 31) 200 µs slower in the client's stack both ways; its stamps go missing.
    const slow = (i: number) => SECTION_NS(i).map((ns, k) => (i === 30 && (k === 0 || k === 13) ? ns + 200_000 : ns));
    const c = craft(n, (r) => r.filter((x) => x.seq !== 31), {}, "nodeport-local", slow);
    const hops = await decompose(c);
    expect(hops.check).toMatchObject({ packets: n, decomposed: n - 1, incomplete: 1, addsUp: false });
    const delay = (i: number, ks: number[]) => ks.reduce((a, k) => a + slow(i)[k]!, 0) / 1e9;
    const forward = [0, 1, 2, 3, 4, 5, 6];
    const all = [...forward, 7, 8, 9, 10, 11, 12, 13];
    const without = (ks: number[]) => meanOf(Array.from({ length: n }, (_, i) => i).filter((i) => i !== 30).map((i) => delay(i, ks)));
    const every = (ks: number[]) => meanOf(Array.from({ length: n }, (_, i) => delay(i, ks)));
    expect(hops.check.residualForwardS).toBeCloseTo(without(forward) - every(forward), 12);
    expect(hops.check.residualRoundTripS).toBeCloseTo(without(all) - every(all), 12);
    expect(Math.abs(hops.check.residualRoundTripS!)).toBeGreaterThan(HOP_SUM_TOLERANCE_S);
  });

  it("refuses a D-ITG run without its receiver log", async () => {
    const c = craft(5);
    expect(() => decomposeRun(c.capture, { log: c.logs.log })).toThrow(/needs its round trip's two logs/);
  });
});

/** The sample of the crafted sampled runs: 1 in 8, as the probes stamp (hops/hop-maps.h). */
const EVERY = 8;
/** The probes' records of a sampled run: those of flow 1's sampled sequence numbers. */
const sampledOnly = (r: { point: number; seq: number; stampNs: bigint }[]) => r.filter((x) => hopSampled(1, x.seq, EVERY));

describe("sampled runs: 1 in sampleEvery D-ITG packets stamped", () => {
  const sampledSeqs = (n: number) => Array.from({ length: n }, (_, i) => i + 1).filter((seq) => hopSampled(1, seq, EVERY));

  it("picks 1 in N by a hash of flow id and sequence number, the same at every rate below, and not by a packet's place in the flow", () => {
    const seqs = Array.from({ length: 80_000 }, (_, i) => i + 1);
    const picked = seqs.filter((q) => hopSampled(1, q, EVERY));
    // Binomial: 10000 expected, standard deviation 94.
    expect(picked.length).toBeGreaterThan(9_600);
    expect(picked.length).toBeLessThan(10_400);
    // Spread over every phase of a period (a 4 ms tick at 1000 pkt/s), where every 8th packet would sit at one.
    for (let phase = 0; phase < 4; phase++) {
      const atPhase = picked.filter((q) => q % 4 === phase).length;
      expect(atPhase, `phase ${phase}`).toBeGreaterThan(2_200);
      expect(atPhase, `phase ${phase}`).toBeLessThan(2_800);
    }
    // Another flow, other packets.
    const other = new Set(seqs.filter((q) => hopSampled(2, q, EVERY)));
    expect(picked.filter((q) => other.has(q)).length).toBeLessThan(picked.length / 4);
    // Every packet at 1; a sparser sample is part of a denser one.
    expect(seqs.slice(0, 1000).every((q) => hopSampled(7, q, 1))).toBe(true);
    expect(seqs.filter((q) => hopSampled(1, q, 4 * EVERY)).every((q) => hopSampled(1, q, EVERY))).toBe(true);
  });

  it("every sampled packet has every stamp and the others none: the sections are the sampled packets', adding up to their exact delays", async () => {
    const n = 400;
    const seqs = sampledSeqs(n);
    const hops = await decompose(craft(n, sampledOnly, { sampleEvery: EVERY }));
    expect(hops.check).toMatchObject({ keying: "ditg", sampleEvery: EVERY, packets: seqs.length, decomposed: seqs.length, incomplete: 0, unsampledStamps: 0, outOfOrder: 0, addsUp: true });
    HOP_SECTIONS.forward.forEach((name, k) => {
      const s = sectionOf(hops, "forward", name);
      expect(s.packets, name).toBe(seqs.length);
      expect(s.meanS, name).toBeCloseTo(meanOf(seqs.map((q) => SECTION_NS(q - 1)[k]! / 1e9)), 10);
    });
    expect(Math.abs(hops.check.residualForwardS!)).toBeLessThan(1e-9);
    expect(Math.abs(hops.check.residualRoundTripS!)).toBeLessThan(1e-9);
  });

  it("a sampled packet missing a stamp still fails the check", async () => {
    const [, second] = sampledSeqs(200);
    const hops = await decompose(craft(200, (r) => sampledOnly(r).filter((x) => !(x.seq === second && x.point === 9)), { sampleEvery: EVERY }));
    expect(hops.check).toMatchObject({ incomplete: 1, unsampledStamps: 0, addsUp: false });
    expect(hops.check.decomposed).toBe(hops.check.packets - 1);
  });

  it("stamps of packets outside the sample fail the check (the probes and the decoder disagree on the rule), and stay out of the sections", async () => {
    const n = 200;
    const seqs = sampledSeqs(n);
    // Every packet stamped, read as a 1 in 8 sample.
    const all = await decompose(craft(n, undefined, { sampleEvery: EVERY }));
    expect(all.check).toMatchObject({ packets: seqs.length, decomposed: seqs.length, unsampledStamps: (n - seqs.length) * 12, addsUp: false });
    expect(sectionOf(all, "forward", "router").packets).toBe(seqs.length);
    // One stray stamp is enough.
    const stray = await decompose(craft(n, (r) => [...sampledOnly(r), ...r.filter((x) => x.seq === 2 && x.point === 5 && !hopSampled(1, 2, EVERY))], { sampleEvery: EVERY }));
    expect(hopSampled(1, 2, EVERY)).toBe(false);
    expect(stray.check).toMatchObject({ unsampledStamps: 1, incomplete: 0, addsUp: false });
  });

  it("compares the sections with the same sampled packets' exact delays, not the whole flow's", async () => {
    const n = 400;
    // The packets outside the sample 30 µs slower in the router: the whole flow's mean moves, the sample's does not.
    const slowOthers = (i: number) => SECTION_NS(i).map((ns, k) => (k === 2 && !hopSampled(1, i + 1, EVERY) ? ns + 30_000 : ns));
    const c = craft(n, sampledOnly, { sampleEvery: EVERY }, "nodeport-local", slowOthers);
    const hops = await decompose(c);
    expect(hops.check.addsUp).toBe(true);
    expect(Math.abs(hops.check.residualRoundTripS!)).toBeLessThan(1e-9);
    const whole = await decodeFlow({ ...c.logs, oneWay: true });
    expect(Math.abs(sectionOf(hops, "forward", END_TO_END).meanS - whole.oneWay!.total.delayMeanS)).toBeGreaterThan(10 * HOP_SUM_TOLERANCE_S);
  });

  it("a worker's sampled run: its sections are the sampled packets', and a stamp outside the sample fails its check", async () => {
    const n = 300;
    const seqs = sampledSeqs(n);
    const worker = (r: { point: number; seq: number; stampNs: bigint }[]) => r.filter((x) => WORKER_POINTS.includes(x.point));
    const hops = await decompose(craft(n, (r) => sampledOnly(worker(r)), { scope: "worker", sampleEvery: EVERY }));
    expect(hops.check).toMatchObject({ scope: "worker", sampleEvery: EVERY, packets: seqs.length, decomposed: seqs.length, unsampledStamps: 0, addsUp: true });
    expect(sectionOf(hops, "forward", WORKER_SPAN).packets).toBe(seqs.length);
    const stray = await decompose(craft(n, (r) => worker(r), { scope: "worker", sampleEvery: EVERY }));
    expect(stray.check).toMatchObject({ unsampledStamps: (n - seqs.length) * WORKER_POINTS.length, addsUp: false });
  });

  it("handshakes are all stamped: their check names no sample", () => {
    const paper = [...PATH_HOPS["nodeport-local"].points.forward, ...PATH_HOPS["nodeport-local"].points.return];
    const recordsFile = writeHandshakes(paper, 20, () => paper.slice(1).map(() => 1_000));
    const counts = HOP_POINTS.map((_, p) => (paper.includes(p) ? 20 : 0));
    const hops = decomposeRun(
      { recordsFile, keying: "handshake", sampleEvery: EVERY, offsetStartNs: "0", offsetEndNs: "0", offsetUncertaintyNs: 0, records: 240, stamped: counts, dropped: counts.map(() => 0) },
      { log: "unused.log" },
    );
    expect(hops.check).toMatchObject({ packets: 20, decomposed: 20, sampleEvery: 1, unsampledStamps: 0, addsUp: true });
  });
});

describe("the paths beyond the paper's (PATH_HOPS)", () => {
  it("keeps the paper's path as it was: its twelve points and fourteen sections, and a capture without a path is the paper's", async () => {
    expect(PATH_HOPS["nodeport-local"].points).toEqual({ forward: [0, 1, 2, 3, 4, 5], return: [6, 7, 8, 9, 10, 11] });
    expect(HOP_POINTS.slice(0, 12)).toEqual([
      "client-out", "router-in", "router-out", "uplink-in", "pod-veth-out", "pod-in",
      "pod-out", "pod-veth-in", "uplink-out", "router-in-return", "router-out-return", "client-in",
    ]);
    expect(HOP_SECTIONS).toEqual({
      forward: ["client-stack", "access-link", "router", "datacenter-link", "service-dataplane", "pod-link", "pod-delivery"],
      return: ["turnaround", "pod-link", "service-dataplane", "datacenter-link", "router", "access-link", "client-stack"],
    });
    const c = craft(100);
    const unnamed = await decompose(c);
    const named = await decompose({ ...c, capture: { ...c.capture, path: "nodeport-local" } });
    expect(named).toEqual(unnamed);
  });

  it.each(["nodeport-remote", "clusterip"] as const)("%s: every packet is cut into the path's sections, in path order, adding up to the exact delays", async (route) => {
    const n = 300;
    const { points, sections } = PATH_HOPS[route];
    // One more section than points per direction: [tx, ...forward, rxR] and [rxR, ...return, rxS].
    expect(sections.forward).toHaveLength(points.forward.length + 1);
    expect(sections.return).toHaveLength(points.return.length + 1);
    const c = craft(n, undefined, {}, route);
    const hops = await decompose(c);
    expect(hops.check).toMatchObject({ keying: "ditg", packets: n, decomposed: n, incomplete: 0, outOfOrder: 0, droppedStamps: 0, unreadStamps: 0, addsUp: true });
    expect(hops.sections.map((s) => `${s.direction} ${s.section}`)).toEqual([
      ...sections.forward.map((x) => `forward ${x}`), `forward ${END_TO_END}`, ...sections.return.map((x) => `return ${x}`), `return ${END_TO_END}`,
    ]);
    const sectionNs = otherSectionNs(points.forward.length + points.return.length + 2);
    const cut = [...sections.forward.map((x) => ["forward", x] as const), ...sections.return.map((x) => ["return", x] as const)];
    cut.forEach(([direction, name], k) => {
      const expected = Array.from({ length: n }, (_, i) => sectionNs(i)[k]! / 1e9);
      expect(sectionOf(hops, direction, name).meanS, `${direction} ${name}`).toBeCloseTo(meanOf(expected), 10);
      expect(sectionOf(hops, direction, name).maxS, `${direction} ${name}`).toBeCloseTo(Math.max(...expected), 10);
    });
    expect(Math.abs(hops.check.residualForwardS!)).toBeLessThanOrEqual(HOP_SUM_TOLERANCE_S);
    expect(Math.abs(hops.check.residualRoundTripS!)).toBeLessThanOrEqual(HOP_SUM_TOLERANCE_S);
    // The same records read as the paper's path: its points (4, 5, 6, 7) were never stamped.
    const asPaper = await decompose({ ...c, capture: { ...c.capture, path: "nodeport-local" } });
    expect(asPaper.check).toMatchObject({ decomposed: 0, addsUp: false });
  });

  it("the remote paths have the sections the paper's lacks: worker 1 to worker 2, SNAT with the DNAT, the client pod's stack", () => {
    const all = (route: keyof typeof PATH_HOPS) => new Set([...PATH_HOPS[route].sections.forward, ...PATH_HOPS[route].sections.return]);
    const local = all("nodeport-local");
    expect([...all("nodeport-remote")].filter((x) => !local.has(x))).toEqual(["service-dataplane-snat", "node-to-node", "endpoint-node"]);
    expect([...all("clusterip")].filter((x) => !local.has(x))).toEqual(["client-pod-stack", "client-pod-link", "node-to-node", "endpoint-node"]);
    expect(PATH_HOPS["nodeport-remote"].serviceSection).toBe("service-dataplane-snat");
    expect(PATH_HOPS.clusterip.serviceSection).toBe("service-dataplane");
  });

  it("a stamp of the second crossing of worker 1's uplink missing, or taken at the wrong point, fails the check", async () => {
    const missing = await decompose(craft(50, (r) => r.filter((x) => !(x.point === 12 && x.seq === 7)), {}, "nodeport-remote"));
    expect(missing.check).toMatchObject({ packets: 50, decomposed: 49, incomplete: 1, addsUp: false });
    // node-to-node's two ends swapped: out of path order.
    const swapped = await decompose(craft(50, (r) => r.map((x) => (x.point === 12 ? { ...x, point: 13 } : x.point === 13 ? { ...x, point: 12 } : x)), {}, "clusterip"));
    expect(swapped.check).toMatchObject({ outOfOrder: 50, addsUp: false });
  });

  it.each(["nodeport-remote", "clusterip"] as const)("%s: a setup run's handshakes, keyed by the SYN's sequence number, cut into the path's kernel sections", (route) => {
    const order = handshakePoints(PATH_HOPS[route]);
    const gaps = (i: number) => order.slice(1).map((_, j) => 1_000 + j * 250 + (i % 4) * 100);
    const n = 30;
    // Sequence numbers spread over 32 bits, as SYNs' are: no window holds them.
    const recordsFile = writeHandshakes(order, n, gaps, (i) => (0x9e3779b1 * (i + 1)) >>> 0);
    const counts = HOP_POINTS.map((_, p) => (order.includes(p) ? n : 0));
    const hops = decomposeRun(
      { recordsFile, keying: "handshake", path: route, offsetStartNs: "0", offsetEndNs: "0", offsetUncertaintyNs: 0, records: n * order.length, stamped: counts, dropped: counts.map(() => 0) },
      { log: "unused.log" },
    );
    expect(hops.check).toMatchObject({ keying: "handshake", packets: n, decomposed: n, incomplete: 0, outOfOrder: 0, addsUp: true });
    const names = handshakeSections(PATH_HOPS[route]);
    expect(hops.sections.map((s) => `${s.direction} ${s.section}`)).toEqual([...names.forward.map((x) => `forward ${x}`), ...names.return.map((x) => `return ${x}`)]);
    hops.sections.forEach((s, j) => expect(s.meanS, `${s.direction} ${s.section}`).toBeCloseTo(meanOf(Array.from({ length: n }, (_, i) => gaps(i)[j]! / 1e9)), 12));
  });

  it("clusterip: a handshake is timed from its connect call, and one without the call's stamps does not add up", () => {
    const order = handshakePoints(PATH_HOPS.clusterip);
    expect(order.slice(0, 3)).toEqual([HOP_POINTS.indexOf("connect-call"), HOP_POINTS.indexOf("connect-done"), HOP_POINTS.indexOf("client-pod-out")]);
    expect(handshakeSections(PATH_HOPS.clusterip).forward.slice(0, 2)).toEqual([SOCKET_LB_SECTION, SYN_SEND_SECTION]);
    // The SYN's records only: the connect hooks were not attached, or their socket was not the SYN's.
    const n = 20;
    const kernel = order.slice(2);
    const recordsFile = writeHandshakes(kernel, n, () => kernel.slice(1).map(() => 1_000));
    const counts = HOP_POINTS.map((_, p) => (kernel.includes(p) ? n : 0));
    const hops = decomposeRun(
      { recordsFile, keying: "handshake", path: "clusterip", offsetStartNs: "0", offsetEndNs: "0", offsetUncertaintyNs: 0, records: n * kernel.length, stamped: counts, dropped: counts.map(() => 0) },
      { log: "unused.log" },
    );
    // Every SYN was seen (its first packet point), none has the call's stamps.
    expect(hops.check).toMatchObject({ packets: n, decomposed: 0, incomplete: n, addsUp: false });
  });
});

describe("decomposeWorkerRoundTrips (a worker probed alone)", () => {
  /** Only the worker's points (P3..P8) stamped, as on a deployed stack's worker. */
  const onWorker = (records: { point: number; seq: number; stampNs: bigint }[]) => records.filter((r) => WORKER_POINTS.includes(r.point));
  const craftWorker = (n: number, edit: (r: ReturnType<typeof onWorker>) => ReturnType<typeof onWorker> = (r) => r, capture: Partial<HopCapture> = {}) =>
    craft(n, (r) => edit(onWorker(r)), { scope: "worker", ...capture });
  /** SECTION_NS indexes of the worker's sections: service-dataplane .. service-dataplane (boundaries P3, P4, P5, rxR, P6, P7, P8). */
  const WORKER_K = [4, 5, 6, 7, 8, 9];

  it("cuts every paired packet into the worker's sections only, which add up to the worker's spans", async () => {
    const n = 300;
    const hops = await decompose(craftWorker(n));
    expect(hops.check).toMatchObject({ scope: "worker", keying: "ditg", packets: n, decomposed: n, incomplete: 0, outOfOrder: 0, droppedStamps: 0, unreadStamps: 0, addsUp: true });
    expect(hops.check.bypassed).toBeUndefined();
    expect(hops.sections.map((s) => `${s.direction} ${s.section}`)).toEqual([
      "forward service-dataplane", "forward pod-link", "forward pod-delivery",
      "return turnaround", "return pod-link", "return service-dataplane",
      `forward ${WORKER_SPAN}`, `return ${WORKER_SPAN}`,
    ]);
    hops.sections.slice(0, 6).forEach((s, j) => {
      expect(s.meanS, `${s.direction} ${s.section}`).toBeCloseTo(meanOf(Array.from({ length: n }, (_, i) => SECTION_NS(i)[WORKER_K[j]!]! / 1e9)), 10);
    });
    // The spans: uplink in to ITGRecv's receive stamp, and from it to uplink out.
    const span = (ks: number[]) => meanOf(Array.from({ length: n }, (_, i) => ks.reduce((a, k) => a + SECTION_NS(i)[k]!, 0) / 1e9));
    expect(sectionOf(hops, "forward", WORKER_SPAN).meanS).toBeCloseTo(span([4, 5, 6]), 10);
    expect(sectionOf(hops, "return", WORKER_SPAN).meanS).toBeCloseTo(span([7, 8, 9]), 10);
    expect(Math.abs(hops.check.residualForwardS!)).toBeLessThan(1e-9);
    expect(Math.abs(hops.check.residualRoundTripS!)).toBeLessThan(1e-9);
    // What a worker cannot time is not there.
    for (const d of ["forward", "return"] as const) for (const name of WORKER_UNTIMED[d]) expect(hops.sections.some((s) => s.direction === d && s.section === name)).toBe(false);
    expect(hops.sections.some((s) => s.section === END_TO_END)).toBe(false);
  });

  it("a pod veth the packets never crossed (bpf_redirect_peer) merges into the forward service-dataplane", async () => {
    const n = 100;
    const hops = await decompose(craftWorker(n, (r) => r.filter((x) => x.point !== 4)));
    expect(hops.check).toMatchObject({ decomposed: n, bypassed: ["pod-veth-out"], addsUp: true });
    expect(hops.sections.filter((s) => s.direction === "forward").map((s) => s.section)).toEqual(["service-dataplane", "pod-delivery", WORKER_SPAN]);
    expect(sectionOf(hops, "forward", "service-dataplane").meanS).toBeCloseTo(meanOf(Array.from({ length: n }, (_, i) => (SECTION_NS(i)[4]! + SECTION_NS(i)[5]!) / 1e9)), 10);
  });

  it("the check fails for a missing stamp, a packet longer in the worker than its round trip, and dropped stamps", async () => {
    const missing = await decompose(craftWorker(50, (r) => r.filter((x) => !(x.point === 7 && x.seq === 9))));
    expect(missing.check).toMatchObject({ packets: 50, decomposed: 49, incomplete: 1, addsUp: false });
    // Packet 5 leaves the worker a second later: after its echo reached the client, which no real packet does.
    const late = await decompose(craftWorker(50, (r) => r.map((x) => (x.point === 8 && x.seq === 5 ? { ...x, stampNs: x.stampNs + 1_000_000_000n } : x))));
    expect(late.check).toMatchObject({ packets: 50, decomposed: 49, outOfOrder: 1, addsUp: false });
    const dropped = await decompose(craftWorker(50, undefined, { dropped: HOP_POINTS.map((_, p) => (p === 5 ? 3 : 0)) }));
    expect(dropped.check).toMatchObject({ droppedStamps: 3, addsUp: false });
  });

  it("two worker points swapped are out of path order", async () => {
    // P5 stamped where P6 should be: pod-delivery and turnaround change sign.
    const swapped = await decompose(craftWorker(40, (r) => r.map((x) => (x.point === 5 ? { ...x, point: 6 } : x.point === 6 ? { ...x, point: 5 } : x))));
    expect(swapped.check).toMatchObject({ outOfOrder: 40, addsUp: false });
  });

  it("a worker's setup run: each SYN and its SYN-ACK through the worker's points, with spans divided at the SYN's arrival in the pod", () => {
    const gaps = (i: number) => [60_000 + i * 100, 1_000, 9_000, 1_500, 3_000];
    const n = 40;
    const recordsFile = writeHandshakes(WORKER_POINTS, n, gaps);
    const counts = HOP_POINTS.map((_, p) => (WORKER_POINTS.includes(p) ? n : 0));
    const hops = decomposeRun(
      { recordsFile, keying: "handshake", scope: "worker", offsetStartNs: "0", offsetEndNs: "0", offsetUncertaintyNs: 0, records: n * 6, stamped: counts, dropped: counts.map(() => 0) },
      { log: "unused.log" },
    );
    expect(hops.check).toMatchObject({ scope: "worker", keying: "handshake", packets: n, decomposed: n, addsUp: true });
    expect(hops.sections.map((s) => `${s.direction} ${s.section}`)).toEqual([
      "forward service-dataplane", "forward pod-link", "return turnaround", "return pod-link", "return service-dataplane", `forward ${WORKER_SPAN}`, `return ${WORKER_SPAN}`,
    ]);
    hops.sections.slice(0, 5).forEach((s, j) => expect(s.meanS).toBeCloseTo(meanOf(Array.from({ length: n }, (_, i) => gaps(i)[j]! / 1e9)), 12));
    expect(sectionOf(hops, "forward", WORKER_SPAN).meanS).toBeCloseTo(meanOf(Array.from({ length: n }, (_, i) => (gaps(i)[0]! + gaps(i)[1]!) / 1e9)), 12);
  });
});

describe("a path across two workers of a deployed stack (worker captures merged)", () => {
  /** Worker 2's clock: its CLOCK_REALTIME this far ahead of worker 1's, its monotonic clock from another boot. */
  const W2_CLOCK_AHEAD_NS = 3_250_000n;
  const W2_OFFSET_NS = 1_796_000_000_000_000_000n;

  /** The crafted run's records split into the two workers' captures, each on its own clocks; merged as the cloud backend merges them. */
  function twoWorkers(route: ServicePath, n: number, edit: (r: { point: number; seq: number; stampNs: bigint }[]) => typeof r = (r) => r) {
    const onWorkers = (records: { point: number; seq: number; stampNs: bigint }[]) =>
      edit(records.filter((r) => workerPoints(route, 1).includes(r.point) || workerPoints(route, 2).includes(r.point)));
    const c = craft(n, onWorkers, {}, route, undefined, W2_CLOCK_AHEAD_NS);
    const bytes = readFileSync(c.capture.recordsFile);
    const host = (h: 1 | 2): HopCapture => {
      const keep: Buffer[] = [];
      for (let at = 0; at < bytes.length; at += HOP_RECORD_BYTES) {
        const record = Buffer.from(bytes.subarray(at, at + HOP_RECORD_BYTES));
        if (!workerPoints(route, h).includes(record.readUInt8(16))) continue;
        // Worker 2: the same instant on its monotonic clock, which its offset maps onto its (ahead) realtime clock.
        if (h === 2) record.writeBigUInt64LE(record.readBigUInt64LE(0) + OFFSET_NS - W2_OFFSET_NS, 0);
        keep.push(record);
      }
      const file = path.join(dir, `worker${h}.hops`);
      writeFileSync(file, Buffer.concat(keep));
      const offset = h === 1 ? OFFSET_NS : W2_OFFSET_NS + W2_CLOCK_AHEAD_NS;
      const counts = HOP_POINTS.map((_, p) => (workerPoints(route, h).includes(p) ? c.capture.stamped[p]! : 0));
      return { ...c.capture, recordsFile: file, scope: "worker", offsetStartNs: String(offset), offsetEndNs: String(offset + (h === 2 ? 400n : 0n)), records: keep.length, stamped: counts };
    };
    const merged = mergeWorkerCaptures([host(1), host(2)], path.join(dir, "merged.hops"), route);
    return { c, merged };
  }

  for (const route of ["nodeport-remote", "clusterip"] as const) {
    it(`${route}: each worker's sections on its own clock, and the node-to-node crossing both ways from two durations`, async () => {
      const n = 200;
      const { c, merged } = twoWorkers(route, n);
      expect(merged).toMatchObject({ scope: "worker", path: route, offsetStartNs: "0", offsetEndNs: "400", records: c.capture.records });
      const hops = decomposeRun(merged, c.logs);
      expect(hops.check).toMatchObject({ scope: "worker", packets: n, decomposed: n, incomplete: 0, outOfOrder: 0, addsUp: true });
      const all = [...PATH_HOPS[route].sections.forward.map((s) => ["forward", s]), ...PATH_HOPS[route].sections.return.map((s) => ["return", s])];
      const untimed = workerUntimed(route);
      const timed = all.map(([d, s], k) => ({ d: d as "forward" | "return", s: s!, k })).filter(({ d, s }) => !untimed[d].includes(s));
      expect(hops.sections.map((s) => `${s.direction} ${s.section}`)).toEqual([
        ...timed.map(({ d, s }) => `${d} ${s}`),
        `return ${NODE_TO_NODE_BOTH_WAYS}`,
        `forward ${WORKER_SPAN}`,
        `return ${WORKER_SPAN}`,
      ]);
      // The truth: the crafted sections, whatever the workers' clocks read.
      const truth = (ks: number[]) => meanOf(Array.from({ length: n }, (_, i) => ks.reduce((a, k) => a + otherSectionNs(all.length)(i)[k]!, 0) / 1e9));
      timed.forEach(({ d, s, k }, j) => expect(hops.sections[j]!.meanS, `${d} ${s}`).toBeCloseTo(truth([k]), 10));
      const crossings = all.flatMap(([, s], k) => (s === "node-to-node" ? [k] : []));
      expect(crossings).toHaveLength(2);
      expect(sectionOf(hops, "return", NODE_TO_NODE_BOTH_WAYS).meanS).toBeCloseTo(truth(crossings), 10);
      expect(untimed.forward).toContain("node-to-node");
      expect(Math.abs(hops.check.residualRoundTripS!)).toBeLessThan(1e-9);
      expect(hops.check.clockStepNs).toBe(400);
    });
  }

  it("the check fails when a worker 2 stamp is missing, and a crossing below zero is out of order", async () => {
    const missing = twoWorkers("nodeport-remote", 50, (r) => r.filter((x) => !(x.point === 16 && x.seq === 7)));
    expect(decomposeRun(missing.merged, missing.c.logs).check).toMatchObject({ decomposed: 49, incomplete: 1, addsUp: false });
    // Worker 2 holds packet 3 longer than worker 1 waited for it: no real packet does.
    const long = twoWorkers("nodeport-remote", 50, (r) => r.map((x) => (x.point === 18 && x.seq === 3 ? { ...x, stampNs: x.stampNs + 5_000_000n } : x)));
    expect(decomposeRun(long.merged, long.c.logs).check).toMatchObject({ decomposed: 49, outOfOrder: 1, addsUp: false });
  });

  it("worker 2's pod veth skipped (bpf_redirect_peer) merges into endpoint-node", async () => {
    const { c, merged } = twoWorkers("nodeport-remote", 60, (r) => r.filter((x) => x.point !== 14));
    const hops = decomposeRun(merged, c.logs);
    expect(hops.check).toMatchObject({ decomposed: 60, bypassed: ["pod2-veth-out"], addsUp: true });
    expect(hops.sections.filter((s) => s.direction === "forward").map((s) => s.section)).toEqual(["service-dataplane-snat", "endpoint-node", "pod-delivery", WORKER_SPAN]);
  });

  it("handshakes across two workers: the SYN's and the SYN-ACK's sections, and the crossing both ways", () => {
    const route = "clusterip";
    const points = [...workerPoints(route, 1).slice(0, 5), ...workerPoints(route, 2), ...workerPoints(route, 1).slice(5)];
    // P24 P25 P20 P21 P12 | P13 P14 P15 P16 P17 P18 | P19 P22 P23: 13 gaps, the 5th and 11th the crossings.
    const gaps = (i: number) => [300, 4_000, 2_000, 3_000 + i, 40_000, 5_000, 6_000, 9_000, 1_500, 3_000, 38_000, 2_500, 1_800];
    const n = 30;
    const recordsFile = writeHandshakes(points, n, gaps);
    const counts = HOP_POINTS.map((_, p) => (points.includes(p) ? n : 0));
    const hops = decomposeRun(
      { recordsFile, keying: "handshake", scope: "worker", path: route, offsetStartNs: "0", offsetEndNs: "0", offsetUncertaintyNs: 0, records: n * points.length, stamped: counts, dropped: counts.map(() => 0) },
      { log: "unused.log" },
    );
    expect(hops.check).toMatchObject({ keying: "handshake", packets: n, decomposed: n, addsUp: true });
    expect(hops.sections.map((s) => `${s.direction} ${s.section}`)).toEqual([
      `forward ${SOCKET_LB_SECTION}`, `forward ${SYN_SEND_SECTION}`, "forward client-pod-link", "forward service-dataplane", "forward endpoint-node", "forward pod-link",
      "return turnaround", "return pod-link", "return endpoint-node", "return service-dataplane", "return client-pod-link",
      `return ${NODE_TO_NODE_BOTH_WAYS}`, `forward ${WORKER_SPAN}`, `return ${WORKER_SPAN}`,
    ]);
    expect(sectionOf(hops, "return", NODE_TO_NODE_BOTH_WAYS).meanS).toBeCloseTo((40_000 + 38_000) / 1e9, 12);
    expect(sectionOf(hops, "forward", "endpoint-node").meanS).toBeCloseTo(5_000 / 1e9, 12);
    expect(sectionOf(hops, "forward", SOCKET_LB_SECTION).meanS).toBeCloseTo(300 / 1e9, 12);
  });
});

describe("decomposeHandshakes", () => {
  it("cuts each SYN and its SYN-ACK into the kernel's sections, from the client's egress to its ingress", () => {
    // Handshake i from port 2000 + i: 11 sections between its 12 stamps.
    const gaps = (i: number) => [4_000, 3_000, 2_000, 60_000 + i * 100, 1_000, 9_000, 1_500, 3_000, 1_200, 900, 1_100];
    const n = 50;
    const paper = [...PATH_HOPS["nodeport-local"].points.forward, ...PATH_HOPS["nodeport-local"].points.return];
    const recordsFile = writeHandshakes(paper, n, gaps);
    const counts = HOP_POINTS.map((_, p) => (paper.includes(p) ? n : 0));
    const hops = decomposeRun(
      { recordsFile, keying: "handshake", offsetStartNs: "0", offsetEndNs: "0", offsetUncertaintyNs: 0, records: n * 12, stamped: counts, dropped: counts.map(() => 0) },
      { log: "unused.log" },
    );
    expect(hops.check).toMatchObject({ keying: "handshake", packets: n, decomposed: n, addsUp: true });
    expect(hops.sections.map((s) => `${s.direction} ${s.section}`)).toEqual([
      "forward access-link", "forward router", "forward datacenter-link", "forward service-dataplane", "forward pod-link",
      "return turnaround", "return pod-link", "return service-dataplane", "return datacenter-link", "return router", "return access-link",
    ]);
    hops.sections.forEach((s, j) => expect(s.meanS, `${s.direction} ${s.section}`).toBeCloseTo(meanOf(Array.from({ length: n }, (_, i) => gaps(i)[j]! / 1e9)), 12));
  });
});

describe("readPointStamps and the reader's summary", () => {
  it("keeps the first stamp of a key and moves stamps onto D-ITG's time of day", () => {
    const bytes = Buffer.alloc(2 * HOP_RECORD_BYTES);
    for (const [k, stamp] of [[0, 5_000_000_000n], [1, 9_000_000_000n]] as const) {
      bytes.writeBigUInt64LE(stamp, k * HOP_RECORD_BYTES);
      bytes.writeUInt32LE(0xffffffff, k * HOP_RECORD_BYTES + 8);
      bytes.writeUInt32LE(1234, k * HOP_RECORD_BYTES + 12);
      bytes.writeUInt8(1, k * HOP_RECORD_BYTES + 17);
    }
    const stamps = readPointStamps(bytes, "handshake", 86_400n * 1_000_000_000n * 3n + 1_500_000_000n);
    expect(stamps.points[0]!.get(0xffffffff, 1234)).toBeCloseTo(6.5, 9);
    expect(stamps.firstPoint).toEqual([{ flowId: 0xffffffff, seq: 1234 }]);
    expect(readPointStamps(bytes, "ditg", 0n).perPoint.every((n) => n === 0)).toBe(true);
  });

  it("keeps the earliest stamp of a key wherever it sits in the file (perf rings hand records over CPU by CPU)", () => {
    const bytes = Buffer.alloc(3 * HOP_RECORD_BYTES);
    for (const [k, stamp] of [[0, 9_000_000_000n], [1, 5_000_000_000n], [2, 7_000_000_000n]] as const) {
      bytes.writeBigUInt64LE(stamp, k * HOP_RECORD_BYTES);
      bytes.writeUInt32LE(0xffffffff, k * HOP_RECORD_BYTES + 8);
      bytes.writeUInt32LE(99, k * HOP_RECORD_BYTES + 12);
      bytes.writeUInt8(3, k * HOP_RECORD_BYTES + 16);
      bytes.writeUInt8(1, k * HOP_RECORD_BYTES + 17);
    }
    const stamps = readPointStamps(bytes, "handshake", 0n, "x.hops", 3);
    expect(stamps.points[3]!.get(0xffffffff, 99)).toBeCloseTo(5, 9);
    expect(stamps.firstPoint).toEqual([{ flowId: 0xffffffff, seq: 99 }]);
  });

  it("refuses a truncated file and an unknown point", () => {
    expect(() => readPointStamps(Buffer.alloc(30), "ditg", 0n, "x.hops")).toThrow("x.hops: 30 bytes is not a whole number of 24-byte hop records");
    const bad = Buffer.alloc(HOP_RECORD_BYTES);
    bad.writeUInt8(HOP_POINTS.length, 16);
    expect(() => readPointStamps(bad, "ditg", 0n, "x.hops")).toThrow(`x.hops: record 0 names point ${HOP_POINTS.length}; accepted: 0-${HOP_POINTS.length - 1}`);
  });

  it("reads the reader's summary line and refuses anything else", () => {
    const line = `{"records":4,"offsetStartNs":"-12","offsetEndNs":"7","offsetUncertaintyNs":20,"stamped":[${HOP_POINTS.map(() => 1)}],"dropped":[${HOP_POINTS.map(() => 0)}]}`;
    expect(parseReaderSummary(line)).toMatchObject({ records: 4, offsetStartNs: "-12", offsetEndNs: "7", offsetUncertaintyNs: 20 });
    expect(() => parseReaderSummary("ready")).toThrow(/not its summary line/);
    expect(() => parseReaderSummary(line.replace('"stamped":[1,', '"stamped":['))).toThrow(new RegExp(`stamped is not 12 or 24 or ${HOP_POINTS.length} counts`));
    // A reader built for the paper's twelve points: the other points stamped nothing.
    const twelve = line.replace(/\[1(,1)*\]/, `[${Array(12).fill(1)}]`).replace(/\[0(,0)*\]/, `[${Array(12).fill(0)}]`);
    expect(parseReaderSummary(twelve).stamped).toEqual([...Array(12).fill(1), ...Array(HOP_POINTS.length - 12).fill(0)]);
    expect(() => parseReaderSummary(line.replace('"-12"', "-12"))).toThrow(/offsetStartNs is not an integer string/);
    // The perf reader's extra fields: its rings' own loss count is kept.
    const perf = line.replace(/}$/, ',"lost":3,"output":"perf","expired":false}');
    expect(parseReaderSummary(perf)).toMatchObject({ lost: 3 });
    expect(() => parseReaderSummary(line.replace(/}$/, ',"lost":-1}'))).toThrow(/lost is not a count/);
    // The sample's rate; a reader built before sampling names none (its probes stamped every packet).
    expect(parseReaderSummary(line.replace(/}$/, ',"sampleEvery":8}'))).toMatchObject({ sampleEvery: 8 });
    expect(parseReaderSummary(line).sampleEvery).toBeUndefined();
    for (const bad of ["0", "6", '"8"', "1.5"]) {
      expect(() => parseReaderSummary(line.replace(/}$/, `,"sampleEvery":${bad}}`)), bad).toThrow(/sampleEvery is .*; accepted: a power of two from 1/);
    }
  });
});

describe("poolSections", () => {
  it("pools runs exactly (mean, population std, max) and their percentiles from merged histograms", () => {
    const a = Float64Array.from({ length: 300 }, (_, i) => (10 + (i % 17)) * 1e-6);
    const b = Float64Array.from({ length: 700 }, (_, i) => (40 + (i % 29)) * 1e-6);
    const all = [...a, ...b];
    const pooled = poolSections([[summarize("forward", "router", a)], [summarize("forward", "router", b)]])[0]!;
    const mean = meanOf(all);
    expect(pooled).toMatchObject({ runs: 2, packets: 1000 });
    expect(pooled.meanS).toBeCloseTo(mean, 12);
    expect(pooled.stdS).toBeCloseTo(Math.sqrt(meanOf(all.map((x) => (x - mean) ** 2))), 12);
    expect(pooled.maxS).toBeCloseTo(Math.max(...all), 12);
    const sorted = [...all].sort((x, y) => x - y);
    expect(relative(pooled.p99S, sorted[Math.ceil(0.99 * 1000) - 1]!)).toBeLessThanOrEqual(1e-3);
    expect(relative(pooled.p50S, sorted[Math.ceil(0.5 * 1000) - 1]!)).toBeLessThanOrEqual(1e-3);
    // The p99 of the pool is not either run's: a, alone, never reaches 40 µs.
    expect(pooled.p99S).toBeGreaterThan(60e-6);
  });
});

// ---------------------------------------------------------------------------------------------
// Store and report.

const def: CampaignDefinition = {
  backend: "lab",
  dataplanes: ["iptables", "ebpf"],
  families: ["ipv4"],
  profiles: ["latency", "setup"],
  services: [1],
  runs: 1,
  flowSeconds: 1,
  linkMbps: 0,
  seed: 1,
  order: { randomize: false, interleave: 0 },
  traffic: { ...scenarioSchema.shape.traffic.parse(undefined), setup: { protocol: "TCP", meter: "rttm", payloadBytes: 0, packetsPerSecond: 10 } },
};
const summary: FlowSummary = {
  packets: 400, bytes: 204800, durationS: 0.4, delayMinS: 1e-4, delayMaxS: 2e-4, delayMeanS: 1.5e-4, delayStdS: 1e-5, jitterS: 1e-6,
  bitrateKbps: 4096, packetRate: 1000, dropped: 0, p50S: 1.5e-4, p90S: 1.6e-4, p99S: 1.9e-4, p999S: 2e-4,
};

describe("the store and the report", () => {
  async function results(): Promise<RunResult[]> {
    const latency = await decompose(craft(400, sampledOnly, { sampleEvery: EVERY }));
    expect(latency.check).toMatchObject({ sampleEvery: EVERY, addsUp: true });
    const handshake: RunHops = {
      sections: [summarize("forward", "service-dataplane", Float64Array.from([20e-6, 30e-6, 40e-6]))],
      check: { ...latency.check, keying: "handshake", packets: 3, decomposed: 3 },
    };
    return planCampaign(campaignIdFor(def), def).map((run) => ({
      ...run.key,
      runId: run.runId,
      status: "ok",
      summary,
      hops: run.key.profile === "latency" ? latency : handshake,
      retries: 0,
      startedAt: "2026-01-01T00:00:00.000Z",
      endedAt: "2026-01-01T00:00:01.000Z",
    }));
  }

  it("keeps a run's sections and check", async () => {
    const store = ResultStore.open(path.join(dir, "results.db"));
    try {
      const id = campaignIdFor(def);
      store.ensureCampaign(id, def, planCampaign(id, def));
      const runs = await results();
      for (const r of runs) store.commitRun(id, r);
      const back = store.results(id);
      for (const r of runs) expect(back.find((b) => b.runId === r.runId)!.hops).toEqual(r.hops);
      // A check stored before sampling (the columns schema 7 added are empty) reads as every packet stamped.
      const raw = (store as unknown as { db: { exec(sql: string): void } }).db;
      raw.exec("UPDATE run_hop_check SET sample_every = NULL, unsampled_stamps = NULL");
      for (const r of store.results(id)) expect(r.hops!.check).toMatchObject({ sampleEvery: 1, unsampledStamps: 0 });
    } finally {
      store.close();
    }
  });

  it("writes hops.csv with one row per (dataplane, family, services, direction, section, statistic), and the report's section and figures", async () => {
    const runs = await results();
    const report = buildReport(runs, { seed: 1, resamples: 10 });
    const table = report.tables.find((t) => t.file === "hops.csv")!;
    const [header, ...rows] = table.csv.trim().split("\n");
    expect(header).toBe(HOPS_CSV_HEADER.join(","));
    expect(header).toBe("dataplane,family,services,direction,section,statistic,valueS");
    // Per dataplane: 14 sections + 2 end-to-end + the first packet, 6 statistics each.
    expect(rows).toHaveLength(2 * 17 * 6);
    const latency = runs.find((r) => r.profile === "latency" && r.dataplane === "ebpf")!.hops!;
    const row = (section: string, direction: string, statistic: string) => rows.find((r) => r.startsWith(`ebpf,ipv4,1,${direction},${section},${statistic},`));
    expect(row("service-dataplane", "forward", "mean")!.split(",")[6]).toBe(formatNumber(sectionOf(latency, "forward", "service-dataplane").meanS));
    expect(row(END_TO_END, "return", "p999")).toBeDefined();
    expect(row(FIRST_PACKET_SECTION, "forward", "max")!.split(",")[6]).toBe(formatNumber(40e-6));
    expect(new Set(rows.map((r) => r.split(",")[5]))).toEqual(new Set(["mean", "std", "p50", "p99", "p999", "max"]));
    expect(new Set(rows.map((r) => r.split(",")[3]))).toEqual(new Set(["forward", "return"]));
    expect(report.markdown).toContain("## Where the delay comes from");
    expect(report.markdown).toContain("2 of 2 latency runs add up");
    expect(report.markdown).toContain("### ebpf, ipv4, 1 Service\n");
    // Which packets the sections are of, and how many: the sample, and each section's packets.
    expect(report.markdown).toContain("stamp 1 in 8 D-ITG packets (the same packets at every point, chosen by a hash of flow id and sequence number) of the latency runs");
    expect(report.markdown).toContain("1 latency runs (1 add up; 1 in 8 D-ITG packets stamped), 1 setup runs.");
    expect(report.markdown).toContain(`| forward | service-dataplane | ${latency.check.packets} |`);
    expect(report.markdown).toContain("Stamps outside the sample: 0.");
    const figures = report.figures.filter((f) => f.file.startsWith("hops-"));
    expect(figures.map((f) => f.file)).toEqual(["hops-mean-ipv4.svg", "hops-p99-ipv4.svg"]);
    const svg = await renderSvg(figures[0]!.spec);
    expect(svg).toMatch(/^<svg/);
    // The legend names every section whole: "return service-dataplane", not "return service-dat…".
    const legend = Array.from(new DOMParser().parseFromString(svg, "image/svg+xml").getElementsByTagName("text")).map((t) => t.textContent ?? "");
    for (const direction of HOP_DIRECTIONS) for (const section of HOP_SECTIONS[direction]) expect(legend).toContain(`${direction} ${section}`);
    expect(legend.filter((t) => t.includes("…"))).toEqual([]);
  });

  it("reports each path's sections in its own order, hops.csv with a path column, the remote path's first packets in service-dataplane-snat", async () => {
    const paper = await results();
    const remoteLatency = await decompose(craft(200, undefined, {}, "nodeport-remote"));
    const remoteSetup: RunHops = {
      sections: [summarize("forward", "service-dataplane-snat", Float64Array.from([50e-6, 70e-6]))],
      check: { ...remoteLatency.check, keying: "handshake", packets: 2, decomposed: 2 },
    };
    const remote = paper.map((r) => ({ ...r, runId: `${r.runId}-remote`, path: "nodeport-remote" as const, hops: r.profile === "latency" ? remoteLatency : remoteSetup }));
    const report = buildReport([...paper, ...remote], { seed: 1, resamples: 10 });
    const [header, ...rows] = report.tables.find((t) => t.file === "hops.csv")!.csv.trim().split("\n");
    expect(header).toBe("path,dataplane,family,services,direction,section,statistic,valueS");
    const meanRows = (p: string) => rows.filter((r) => r.startsWith(`${p},iptables,`) && r.split(",")[6] === "mean").map((r) => r.split(",").slice(4, 6).join(" "));
    const { sections } = PATH_HOPS["nodeport-remote"];
    expect(meanRows("nodeport-remote")).toEqual([
      ...sections.forward.map((x) => `forward ${x}`), `forward ${END_TO_END}`, ...sections.return.map((x) => `return ${x}`), `return ${END_TO_END}`, `forward ${FIRST_PACKET_SECTION}`,
    ]);
    const first = rows.find((r) => r.startsWith(`nodeport-remote,iptables,ipv4,1,forward,${FIRST_PACKET_SECTION},max,`))!;
    expect(first.split(",")[7]).toBe(formatNumber(70e-6));
    // The paper's path's rows are those of a report of it alone, behind the path column.
    const alone = buildReport(paper, { seed: 1, resamples: 10 }).tables.find((t) => t.file === "hops.csv")!.csv.trim().split("\n").slice(1);
    expect(rows.filter((r) => r.startsWith("nodeport-local,")).map((r) => r.slice("nodeport-local,".length))).toEqual(alone);
    expect(report.markdown).toContain("- **nodeport-remote**: forward client-stack, access-link, router, datacenter-link, service-dataplane-snat, node-to-node, endpoint-node, pod-link, pod-delivery;");
    expect(report.markdown).not.toContain("ran without the hop probes");
  });

  it("keeps a worker run (scope and a bypassed point read back off its sections) and reports what a worker cannot time", async () => {
    const onWorker = (r: { point: number; seq: number; stampNs: bigint }[]) => r.filter((x) => WORKER_POINTS.includes(x.point));
    const whole = await decompose(craft(200, onWorker, { scope: "worker" }));
    const bypassed = await decompose(craft(200, (r) => onWorker(r).filter((x) => x.point !== 4), { scope: "worker" }));
    const handshake: RunHops = {
      sections: [
        summarize("forward", "service-dataplane", Float64Array.from([20e-6, 30e-6])),
        summarize("forward", "pod-link", Float64Array.from([2e-6, 3e-6])),
        summarize("forward", WORKER_SPAN, Float64Array.from([40e-6, 50e-6])),
      ],
      check: { ...whole.check, keying: "handshake", packets: 2, decomposed: 2 },
    };
    const runs: RunResult[] = planCampaign(campaignIdFor(def), def).map((run) => ({
      ...run.key,
      runId: run.runId,
      status: "ok",
      summary,
      hops: run.key.profile === "setup" ? handshake : run.key.dataplane === "ebpf" ? bypassed : whole,
      retries: 0,
      startedAt: "2026-01-01T00:00:00.000Z",
      endedAt: "2026-01-01T00:00:01.000Z",
    }));
    const store = ResultStore.open(path.join(dir, "worker.db"));
    try {
      const id = campaignIdFor(def);
      store.ensureCampaign(id, def, planCampaign(id, def));
      for (const r of runs) store.commitRun(id, r);
      const back = store.results(id);
      for (const r of runs) expect(back.find((b) => b.runId === r.runId)!.hops).toEqual(r.hops);
      expect(back.find((b) => b.dataplane === "ebpf" && b.profile === "latency")!.hops!.check).toMatchObject({ scope: "worker", bypassed: ["pod-veth-out"] });
    } finally {
      store.close();
    }
    const report = buildReport(runs, { seed: 1, resamples: 10 });
    const rows = report.tables.find((t) => t.file === "hops.csv")!.csv.trim().split("\n").slice(1);
    const sectionsOf = (d: string) => new Set(rows.filter((r) => r.startsWith(`${d},`)).map((r) => r.split(",").slice(3, 5).join(" ")));
    expect(sectionsOf("iptables")).toEqual(new Set([
      "forward service-dataplane", "forward pod-link", "forward pod-delivery", `forward ${WORKER_SPAN}`,
      "return turnaround", "return pod-link", "return service-dataplane", `return ${WORKER_SPAN}`, `forward ${FIRST_PACKET_SECTION}`,
    ]));
    expect(sectionsOf("ebpf").has("forward pod-link")).toBe(false);
    expect(report.markdown).toContain("**Worker only**");
    expect(report.markdown).toContain("**Not timed on a deployed stack:** forward client-stack, access-link, router, datacenter-link; return datacenter-link, router, access-link, client-stack; end-to-end");
    expect(report.markdown).toContain("2 of 2 latency runs add up");
    expect(report.markdown).toContain("### ebpf, ipv4, 1 Service (worker only)\n");
    expect(report.markdown).not.toContain("The lab's hop probes");
    const figure = report.figures.find((f) => f.file === "hops-mean-ipv4.svg")!;
    expect(figure.title).toContain("the mean time in the worker");
    expect(figure.title).toContain("not timed: forward client-stack");
  });

  it("has no section without hops", () => {
    expect(hopReport([], { fmt, number: formatNumber })).toBeUndefined();
  });
});
