// Test helpers: the two logs of an rttm flow crafted as D-ITG 2.8.1 writes them (B15 included), round
// trips computed from a sender log and a receiver log without the decoder (a plain map of every
// receiver record, whole microseconds, the binary layout read field by field), and a check that a
// decoded report holds the same statistics to the microsecond.
import { readFile } from "node:fs/promises";
import { expect } from "vitest";
import { timeOfDay, type DelayReport, type LogRecord } from "../../measure/ditg-log.js";

export interface Packet {
  readonly seq: number;
  /** Send time, µs since the epoch. */
  readonly sentUs: number;
  /** One-way delay to the receiver and round trip, µs. */
  readonly forwardUs: number;
  readonly rttUs: number;
}

const ends = { sender: "198.18.0.10", receiver: "198.18.1.20" };

/**
 * The two logs of one rttm flow as D-ITG 2.8.1 writes them. ITGRecv logs each packet as it arrives, with the send
 * stamp its payload carried. ITGSend logs each echo as it returns: while it is still sending (before the last packet
 * plus one spacing) with the echo's send seconds and the microseconds of the newest packet sent by then (B15,
 * ITGSend.cpp L3147/L3408/L3417); afterwards, in the drain loop, with the echo's own microseconds.
 */
export function craftedRttmLogs(packets: readonly Packet[], opts: { flowId?: number; spacingUs: number; lostEchoes?: ReadonlySet<number> }) {
  const flowId = opts.flowId ?? 1;
  const base = { flowId, srcAddress: ends.sender, srcPort: 40000, destPort: 31000, size: 512 };
  const receiver: LogRecord[] = [...packets]
    .sort((a, b) => a.sentUs + a.forwardUs - (b.sentUs + b.forwardUs))
    .map((p) => ({ ...base, seqNum: p.seq, destAddress: "0.0.0.0", tx: timeOfDay(p.sentUs), rx: timeOfDay(p.sentUs + p.forwardUs) }));
  const sends = packets.map((p) => p.sentUs).sort((a, b) => a - b);
  const lastSend = sends[sends.length - 1]!;
  /** The newest send at or before a time (binary search over the sorted sends). */
  const newestAt = (us: number) => {
    let lo = 0;
    let hi = sends.length - 1;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (sends[mid]! <= us) lo = mid;
      else hi = mid - 1;
    }
    return sends[lo]!;
  };
  const sender: LogRecord[] = [...packets]
    .filter((p) => !opts.lostEchoes?.has(p.seq))
    .sort((a, b) => a.sentUs + a.rttUs - (b.sentUs + b.rttUs))
    .map((p) => {
      const echoUs = p.sentUs + p.rttUs;
      const newest = newestAt(echoUs);
      const draining = echoUs > lastSend + opts.spacingUs;
      const seconds = Math.floor(p.sentUs / 1e6) * 1e6;
      const stampUs = draining ? p.sentUs : seconds + (newest % 1e6);
      return { ...base, seqNum: p.seq, destAddress: ends.receiver, tx: timeOfDay(stampUs), rx: timeOfDay(echoUs) };
    });
  return { sender, receiver };
}

/** Packets every `spacingUs` from `startUs`; round trips of 150-400 µs, and a stall of `stallUs` on the echoes around `stallAtUs`. */
export function craftedPackets(n: number, startUs: number, spacingUs: number, stall?: { atUs: number; stallUs: number }): Packet[] {
  return Array.from({ length: n }, (_, i) => {
    const sentUs = startUs + i * spacingUs + ((i * 7) % 13);
    let rttUs = 150 + ((i * 7919) % 250);
    // The receiver sleeps from stall.atUs for stall.stallUs: whatever arrives meanwhile is answered when it wakes.
    if (stall && sentUs + rttUs / 2 >= stall.atUs && sentUs < stall.atUs + stall.stallUs) rttUs = stall.atUs + stall.stallUs - sentUs + 60 + (i % 5);
    return { seq: i + 1, sentUs, forwardUs: Math.round(rttUs / 2), rttUs };
  });
}


const RECORD = 144;
const DAY_US = 86_400_000_000;

interface RawRecord {
  readonly flowId: number;
  readonly seq: number;
  /** Times of day in whole µs. */
  readonly txUs: number;
  readonly rxUs: number;
}

async function rawRecords(path: string): Promise<RawRecord[]> {
  const bytes = await readFile(path);
  const out: RawRecord[] = [];
  for (let at = 0; at + RECORD <= bytes.length; at += RECORD) {
    const time = (hourAt: number, secAt: number) =>
      Math.round((bytes.readUInt32LE(at + hourAt) * 3600 + bytes.readUInt32LE(at + hourAt + 4) * 60 + bytes.readDoubleLE(at + secAt)) * 1e6);
    out.push({ flowId: bytes.readUInt32LE(at), seq: bytes.readUInt32LE(at + 4), txUs: time(16, 128), rxUs: time(24, 136) });
  }
  return out;
}

/** A difference of two times of day, across midnight when it is more than half a day off. */
const wrap = (us: number) => (us < -DAY_US / 2 ? us + DAY_US : us > DAY_US / 2 ? us - DAY_US : us);

export interface IndependentRoundTrips {
  /** Exact round trips in the sender log's order, µs. */
  readonly paired: number[];
  /** Sender records without a receiver record of the same flow id and sequence number. */
  readonly unpaired: number;
  /** The round trips as the sender log holds them, µs, in its order. */
  readonly logged: number[];
}

export async function independentRoundTrips(senderLog: string, receiverLog: string): Promise<IndependentRoundTrips> {
  const sent = new Map<string, number>();
  for (const r of await rawRecords(receiverLog)) sent.set(`${r.flowId}/${r.seq}`, r.txUs);
  const paired: number[] = [];
  const logged: number[] = [];
  let unpaired = 0;
  for (const r of await rawRecords(senderLog)) {
    logged.push(wrap(r.rxUs - r.txUs));
    const tx = sent.get(`${r.flowId}/${r.seq}`);
    if (tx === undefined) unpaired++;
    else paired.push(wrap(r.rxUs - tx));
  }
  return { paired, unpaired, logged };
}

/** The one-way delays of a log as it holds them, µs. */
export async function loggedDelays(path: string): Promise<number[]> {
  return (await rawRecords(path)).map((r) => wrap(r.rxUs - r.txUs));
}

/** Nearest-rank percentile of values. */
function nearestRank(sorted: readonly number[], q: number): number {
  return sorted[Math.max(1, Math.ceil((q * sorted.length) / 100 - 1e-9)) - 1]!;
}

/**
 * The decoded delay statistics equal those of `delaysUs` (in order, for the jitter) to the microsecond:
 * min, max, mean, population std and jitter to a thousandth of a µs, percentiles exact below 2048 µs
 * (the histogram's exact range) and within 0.1% above.
 */
export function expectDelaysOf(report: DelayReport, delaysUs: readonly number[], what: string): void {
  const n = delaysUs.length;
  const mean = delaysUs.reduce((s, d) => s + d, 0) / n;
  const std = Math.sqrt(delaysUs.reduce((s, d) => s + (d - mean) ** 2, 0) / n);
  let jitter = 0;
  for (let i = 1; i < n; i++) jitter += Math.abs(delaysUs[i]! - delaysUs[i - 1]!);
  const sorted = [...delaysUs].sort((a, b) => a - b);
  const us = (s: number) => s * 1e6;
  expect(us(report.delayMinS), `${what}: min`).toBeCloseTo(sorted[0]!, 3);
  expect(us(report.delayMaxS), `${what}: max`).toBeCloseTo(sorted[n - 1]!, 3);
  expect(us(report.delayMeanS), `${what}: mean`).toBeCloseTo(mean, 3);
  expect(us(report.delayStdS), `${what}: std`).toBeCloseTo(std, 3);
  expect(us(report.jitterS), `${what}: jitter`).toBeCloseTo(n > 1 ? jitter / (n - 1) : 0, 3);
  for (const [key, q] of [["p50S", 50], ["p90S", 90], ["p99S", 99], ["p999S", 99.9]] as const) {
    const exact = nearestRank(sorted, q);
    const got = Math.round(us(report[key]));
    if (exact < 2048) expect(got, `${what}: ${key}`).toBe(exact);
    else expect([got >= exact, got <= exact * 1.001], `${what}: ${key} ${got} µs against ${exact} µs`).toEqual([true, true]);
  }
}
