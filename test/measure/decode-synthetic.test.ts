// The decoder on logs written record by record: ITGDec's numbers on loss, reordering, duplicates and
// interleaved flows; our own on what ITGDec gets wrong (midnight, cancellation); errors on broken files.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  decodeDelayHistogram,
  decodeLogFile,
  decodeRecord,
  encodeRecord,
  LogDecoder,
  LogFormatError,
  RECORD_BYTES,
  recordBlock,
  summarizeDelayHistogram,
  timeOfDay,
  type LogRecord,
} from "../../measure/ditg-log.js";
import { expectSameAsItgDec, runItgDec, writeLog } from "./decode-itgdec.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "decode-synthetic-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** 2026-03-02 10:00:00 UTC in µs: any day works, the log keeps only the time of day. */
const T0_US = Date.UTC(2026, 2, 2, 10, 0, 0) * 1000;

interface Flow {
  flowId: number;
  src: string;
  srcPort: number;
  dst: string;
  dstPort: number;
}
const flowA: Flow = { flowId: 1, src: "198.18.0.10", srcPort: 40000, dst: "198.18.1.20", dstPort: 31000 };
const flowB: Flow = { flowId: 2, src: "2001:2:0:10::10", srcPort: 40001, dst: "2001:2:0:20::20", dstPort: 31000 };
// Same flow id and addresses as A, another source port: ITGDec keeps it apart.
const flowC: Flow = { ...flowA, srcPort: 40002 };

function record(f: Flow, seq: number, txUs: number, delayUs: number, size = 512): LogRecord {
  return {
    flowId: f.flowId,
    seqNum: seq,
    srcAddress: f.src,
    srcPort: f.srcPort,
    destAddress: f.dst,
    destPort: f.dstPort,
    tx: timeOfDay(txUs),
    rx: timeOfDay(txUs + delayUs),
    size,
  };
}

/** Deterministic delays in µs with a tail: 20..220, every 97th packet 1.5-3 ms, every 1000th 25 ms (past the exact-count range). */
function delayUs(i: number): number {
  if (i % 1000 === 999) return 25_000 + i;
  if (i % 97 === 13) return 1500 + ((i * 37) % 1500);
  return 20 + ((i * 7919) % 200);
}

async function logOf(name: string, records: LogRecord[]): Promise<string> {
  const path = join(dir, name);
  await writeLog(path, records);
  return path;
}

/** Nearest-rank percentile of plain numbers: the smallest value with at least ceil(q*n) values at or below it. */
function nearestRank(sorted: number[], q: number): number {
  // The small subtraction keeps 0.999 * 20000 from rounding up to 19981.
  return sorted[Math.max(1, Math.ceil((q * sorted.length) / 100 - 1e-9)) - 1]!;
}

describe("decodeLogFile against ITGDec on synthetic logs", () => {
  it("three interleaved flows with gaps, reordering and a duplicate: every printed field matches", async () => {
    const records: LogRecord[] = [];
    // Flow A: seq 1..300 with 4,5 and 100 missing, 50 and 51 swapped, 200 sent twice.
    const seqA = Array.from({ length: 300 }, (_, i) => i + 1).filter((s) => s !== 4 && s !== 5 && s !== 100);
    [seqA[45], seqA[46]] = [seqA[46]!, seqA[45]!];
    seqA.splice(seqA.indexOf(200) + 1, 0, 200);
    // Flow B starts at seq 3 (ITGDec counts 1 and 2 as lost); flow C is complete.
    const seqB = Array.from({ length: 200 }, (_, i) => i + 3);
    const seqC = Array.from({ length: 150 }, (_, i) => i + 1);
    let t = T0_US;
    let i = 0;
    const queues: [Flow, number[]][] = [
      [flowA, seqA],
      [flowB, seqB],
      [flowC, seqC],
    ];
    while (queues.some(([, q]) => q.length > 0)) {
      for (const [f, q] of queues) {
        const seq = q.shift();
        if (seq === undefined) continue;
        records.push(record(f, seq, t, delayUs(i++), f === flowB ? 64 : 512));
        t += 997;
      }
    }
    const path = await logOf("interleaved.log", records);
    const ours = await decodeLogFile(path);
    expectSameAsItgDec(ours, await runItgDec(path));

    expect(ours.flows.map((f) => [f.flowId, f.srcPort, f.packets])).toEqual([
      [1, 40000, 298],
      [2, 40001, 200],
      [1, 40002, 150],
    ]);
    // ITGDec nets duplicates against gaps: A lost 3 and repeated 1, so it reports 2.
    expect(ours.flows.map((f) => f.dropped)).toEqual([2, 2, 0]);
    expect(ours.total.dropped).toBe(4);
    expect(ours.total.packets).toBe(648);
  });

  it("a log longer than one read chunk matches ITGDec, and byte-wise streaming gives the same result", async () => {
    const records: LogRecord[] = [];
    for (let i = 0; i < 70_000; i++) records.push(record(flowA, i + 1 + Math.floor(i / 10_000), T0_US + i * 50, delayUs(i)));
    const path = await logOf("long.log", records);
    const ours = await decodeLogFile(path);
    expectSameAsItgDec(ours, await runItgDec(path));
    expect(ours.total.dropped).toBe(6);

    const streamed = new LogDecoder(path);
    const bytes = await readFile(path);
    for (let off = 0; off < bytes.length; off += 1000) streamed.write(bytes.subarray(off, off + 1000));
    expect(streamed.result()).toEqual(ours);
  });

  it("a flow is its addresses as strings: bytes after the NUL do not split it, an address that extends another is another flow", async () => {
    const shorter: Flow = { ...flowA, src: "198.18.0.1" };
    const records = Array.from({ length: 400 }, (_, i) => record(i % 3 === 2 ? shorter : flowA, i + 1, T0_US + i * 1000, delayUs(i)));
    const path = await logOf("address-bytes.log", records);
    // Bytes after each address's NUL vary from record to record, as whatever was in D-ITG's buffer.
    const bytes = await readFile(path);
    for (let r = 0; r < 400; r++) {
      for (const [field, text] of [[36, records[r]!.srcAddress], [82, records[r]!.destAddress]] as const) {
        for (let b = text.length + 1; b < 46; b++) bytes[r * RECORD_BYTES + field + b] = (r * 31 + b * 7) & 0xff;
      }
    }
    await writeFile(path, bytes);
    const ours = await decodeLogFile(path);
    expectSameAsItgDec(ours, await runItgDec(path));
    expect(ours.flows.map((f) => [f.srcAddress, f.packets])).toEqual([
      ["198.18.0.10", 267],
      ["198.18.0.1", 133],
    ]);
  });

  it("records with out-of-range time fields are error lines, as in ITGDec", async () => {
    const good = Array.from({ length: 20 }, (_, i) => record(flowA, i + 1, T0_US + i * 1000, 100));
    const bad = { ...good[5]!, rx: { hour: 25, minute: 0, second: 1 } };
    const badSec = { ...good[6]!, tx: { hour: 10, minute: 0, second: 60.5 } };
    const path = await logOf("errors.log", [...good.slice(0, 5), bad, badSec, ...good.slice(7)]);
    const ours = await decodeLogFile(path);
    expectSameAsItgDec(ours, await runItgDec(path));
    expect(ours.total.errorLines).toBe(2);
    expect(ours.total.packets).toBe(18);
  });
});

describe("decodeLogFile: statistics ITGDec does not give", () => {
  it("percentiles are the nearest-rank values of the delays, to the µs below 2048 µs and within 0.1% above", async () => {
    const n = 20_000;
    const delays = Array.from({ length: n }, (_, i) => delayUs(i * 31));
    const path = await logOf("percentiles.log", delays.map((d, i) => record(flowA, i + 1, T0_US + i * 1000, d)));
    const ours = await decodeLogFile(path);
    const sorted = [...delays].sort((a, b) => a - b);
    for (const [key, q] of [["p50S", 50], ["p90S", 90], ["p99S", 99], ["p999S", 99.9]] as const) {
      const exact = nearestRank(sorted, q);
      const got = ours.total[key] * 1e6;
      if (exact < 2048) expect(got, key).toBeCloseTo(exact, 6);
      else {
        expect(got, key).toBeGreaterThanOrEqual(exact);
        expect(got, key).toBeLessThanOrEqual(exact * 1.001);
      }
    }
    const stored = summarizeDelayHistogram(ours.histogram);
    expect(stored.packets).toBe(n);
    expect(stored.p99S).toBe(ours.total.p99S);
    expect(decodeDelayHistogram(ours.histogram).maxValue).toBeGreaterThanOrEqual(sorted[n - 1]!);
  });

  it("a flow across midnight UTC keeps its delays and duration (ITGDec sees a negative delay)", async () => {
    const midnight = Date.UTC(2026, 2, 3) * 1000;
    // 1000 packets from 0.5 s before midnight to 0.5 s after, 300 µs each way; the 500th leaves before and arrives after.
    const records = Array.from({ length: 1000 }, (_, i) => record(flowA, i + 1, midnight - 500_000 + i * 1000 + 800, 300));
    expect(records[499]!.tx.hour).toBe(23);
    expect(records[499]!.rx.hour).toBe(0);
    const path = await logOf("midnight.log", records);
    const ours = await decodeLogFile(path);
    expect(ours.total.delayMinS).toBeCloseTo(300e-6, 9);
    expect(ours.total.delayMaxS).toBeCloseTo(300e-6, 9);
    expect(ours.total.jitterS).toBeCloseTo(0, 9);
    expect(ours.total.durationS).toBeCloseTo(0.999, 9);
    expect(ours.total.packetRate).toBeCloseTo(1000 / 0.999, 6);
    expect(ours.total.negativeDelays).toBe(0);
    const itg = (await runItgDec(path)).find((b) => b.heading === "TOTAL")!;
    expect(Number(itg.fields.get("Minimum delay"))).toBeLessThan(-86_000);
  });

  it("sigma stays exact when a clock offset dwarfs the spread (ITGDec's squared sums lose it)", async () => {
    // One-way delays of 1000 s (unsynchronised clocks) ± 1 µs: population sigma is exactly 1 µs.
    const records = Array.from({ length: 10_000 }, (_, i) => record(flowA, i + 1, T0_US + i * 1000, 1_000_000_000 + (i % 2 ? 1 : -1)));
    const path = await logOf("offset.log", records);
    const ours = await decodeLogFile(path);
    expect(ours.total.delayMeanS).toBeCloseTo(1000, 9);
    expect(ours.total.delayStdS).toBeCloseTo(1e-6, 10);
    const itg = (await runItgDec(path)).find((b) => b.heading === "TOTAL")!;
    expect(itg.fields.get("Delay standard deviation")).not.toBe(ours.total.delayStdS.toFixed(6));
  });

  it("negative one-way delays are kept in min/mean and counted, and recorded as 0 in the histogram", async () => {
    const records = Array.from({ length: 100 }, (_, i) => record(flowA, i + 1, T0_US + i * 1000, i < 10 ? -50 : 100));
    const ours = await decodeLogFile(await logOf("negative.log", records));
    expect(ours.total.negativeDelays).toBe(10);
    expect(ours.flows[0]!.negativeDelays).toBe(10);
    expect(ours.total.delayMinS).toBeCloseTo(-50e-6, 9);
    expect(ours.total.delayMeanS).toBeCloseTo((10 * -50 + 90 * 100) / 100 / 1e6, 12);
    expect(ours.total.p50S).toBeCloseTo(100e-6, 9);
    expect(summarizeDelayHistogram(ours.histogram).packets).toBe(100);
    expect(decodeDelayHistogram(ours.histogram).getValueAtPercentile(5)).toBe(0);
  });

  it("an empty log has zero counts and undefined delay statistics", async () => {
    const path = join(dir, "empty.log");
    await writeFile(path, "");
    const ours = await decodeLogFile(path);
    expect(ours.flows).toEqual([]);
    expect(ours.total.packets).toBe(0);
    expect(ours.total.durationS).toBe(0);
    expect(ours.total.delayMeanS).toBeNaN();
    expect(ours.total.p99S).toBeNaN();
    expect(JSON.parse(JSON.stringify(ours.total)).delayMeanS).toBeNull();
  });
});

describe("record layout", () => {
  it("decodeRecord reads back what encodeRecord wrote, and timeOfDay splits as D-ITG does", () => {
    const r = record(flowB, 4_000_000_000, Date.UTC(2026, 2, 2, 23, 59, 59) * 1000 + 123_456, 789, 64000);
    expect(r.tx).toEqual({ hour: 23, minute: 59, second: 59.123456 });
    const block = recordBlock(2);
    encodeRecord(block, 1, r);
    expect(decodeRecord(block, 1)).toEqual(r);
    expect(() => encodeRecord(block, 0, { ...r, srcAddress: "x".repeat(46) })).toThrow(/does not fit/);
  });
});

describe("decodeLogFile: broken input", () => {
  it("rejects a truncated log, naming the file, its size and the record size", async () => {
    const path = await logOf("truncated.log", [record(flowA, 1, T0_US, 100), record(flowA, 2, T0_US + 1000, 100)]);
    const bytes = await readFile(path);
    await writeFile(path, bytes.subarray(0, RECORD_BYTES + 100));
    const err = await decodeLogFile(path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LogFormatError);
    expect((err as Error).message).toContain(path);
    expect((err as Error).message).toContain(`${RECORD_BYTES + 100} bytes`);
    expect((err as Error).message).toContain(`${RECORD_BYTES}-byte`);
  });

  it("rejects a streamed log that ends inside a record", () => {
    const decoder = new LogDecoder("stream");
    decoder.write(new Uint8Array(RECORD_BYTES * 3 + 7));
    expect(() => decoder.result()).toThrow(/partial record of 7 bytes/);
  });

  it("rejects a missing file and a directory by name", async () => {
    await expect(decodeLogFile(join(dir, "absent.log"))).rejects.toThrow(/absent\.log: cannot be read \(ENOENT\)/);
    await expect(decodeLogFile(dir)).rejects.toThrow(/is not a regular file/);
  });
});
