// Streaming decoder of D-ITG binary logs: ITGDec's summary (per flow and TOTAL) plus delay percentiles,
// in constant memory whatever the log's length.
//
// Record layout (D-ITG 2.8.1 `struct info`, 144 bytes, host byte order, written raw by ITGSend/ITGRecv):
//   u32 flowId @0, seqNum @4, srcPort @8, destPort @12, txHour @16, txMin @20, rxHour @24, rxMin @28, size @32,
//   char srcAddr[46] @36, char destAddr[46] @82, f64 txSec @128, f64 rxSec @136 (seconds of the minute, µs resolution).
//
// ITGDec semantics kept here (ITGDecod.cpp): a flow is (flowId, srcAddr, srcPort, destAddr, destPort) in order of
// first appearance; records whose hour > 24, minute > 59 or seconds outside [0, 59.999999] are "error lines" and
// ignored; duration is last minus first receive time; jitter is the mean |difference| of consecutive delays, per flow
// in that flow's record order and, for the TOTAL, across all records in file order; the standard deviation is the
// population sigma; loss and loss bursts follow ITGDec's sequence-number bookkeeping (first sequence number taken as 1),
// including its unsigned arithmetic.
//
// Deliberate differences from ITGDec:
// - Midnight UTC: D-ITG stores only the time of day. A delay below -12 h is taken as +24 h (and above +12 h as -24 h),
//   and receive times are unwrapped across midnight, so durations and rates stay right; ITGDec has no such handling.
// - Mean and sigma come from Welford accumulators (ITGDec subtracts squared sums, which loses digits when the mean
//   dwarfs the spread); both agree to ITGDec's six printed decimals otherwise.
// - An empty log gives zero counts and NaN (JSON null) for the statistics of delays, where ITGDec prints garbage.
//
// Delay histogram: HdrHistogram (hdr-histogram-js, 3 significant digits) of delays in whole MICROSECONDS, the log's own
// resolution. A negative one-way delay (sender and receiver clocks not synchronised, see `-m rttm`) cannot be recorded:
// it is counted in `negativeDelays` and recorded as 0, so percentiles of such a log are floored at zero and should not
// be trusted; min/max/mean/sigma keep the signed values.
import { open } from "node:fs/promises";
import { endianness } from "node:os";
import { build, decodeFromCompressedBase64, encodeIntoCompressedBase64, type Histogram } from "hdr-histogram-js";
import type { FlowSummary } from "./types.js";

export const RECORD_BYTES = 144;
/** The delay histograms count microseconds: this many units make a second. */
export const HISTOGRAM_UNITS_PER_S = 1_000_000;

const WORDS = RECORD_BYTES / 4;
const DOUBLES = RECORD_BYTES / 8;
const ADDRESS_BYTES = 46;
const SRC_ADDR = 36;
const DEST_ADDR = 82;
const DAY_S = 86_400;
const HALF_DAY_S = DAY_S / 2;
/** Records per read: about 9 MB, large enough that syscalls do not matter, small enough to stay constant. */
const RECORDS_PER_CHUNK = 65_536;
/**
 * Delays below this many µs are counted in a plain array and handed to the HDR histogram once at the end:
 * recording into hdr-histogram-js costs ~50 ns a value, an array increment ~1 ns. 64 KB per flow.
 */
const EXACT_COUNT_LIMIT_US = 16_384;

/** Summary fields shared by each flow and the total. */
export interface DelayReport extends FlowSummary {
  /** Packets dropped as a percentage of received plus dropped, as ITGDec prints it. */
  readonly droppedPercent: number;
  /** ITGDec's "Average loss-burst size" (dropped packets per loss event), 0 without loss. */
  readonly lossBurstSize: number;
  /** Records with a negative delay (unsynchronised clocks); recorded as 0 in the histogram. */
  readonly negativeDelays: number;
}

export interface FlowReport extends DelayReport {
  readonly flowId: number;
  readonly srcAddress: string;
  readonly srcPort: number;
  readonly destAddress: string;
  readonly destPort: number;
}

export interface TotalReport extends DelayReport {
  readonly flowCount: number;
  /** Records ITGDec rejects for out-of-range time fields. */
  readonly errorLines: number;
}

export interface DecodedLog {
  readonly file: string;
  readonly flows: FlowReport[];
  readonly total: TotalReport;
  /** HDR histogram of every delay in the log, in µs (HISTOGRAM_UNITS_PER_S), hdr-histogram-js compressed base64. */
  readonly histogram: string;
}

/** A log that is not a whole number of D-ITG records, or that cannot be read. */
export class LogFormatError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(`${file}: ${message}`);
    this.name = "LogFormatError";
  }
}

export interface DelayPercentiles {
  readonly p50S: number;
  readonly p90S: number;
  readonly p99S: number;
  readonly p999S: number;
}

function newHistogram(): Histogram {
  return build({ numberOfSignificantValueDigits: 3, bitBucketSize: 32, autoResize: true, lowestDiscernibleValue: 1 });
}

/**
 * Nearest-rank percentiles of a delay histogram in seconds (the HDR bucket's highest equivalent value: exact below
 * 2048 µs, within 0.1% above). NaN when the histogram is empty.
 */
export function delayPercentiles(histogram: Histogram): DelayPercentiles {
  if (histogram.totalCount === 0) return { p50S: NaN, p90S: NaN, p99S: NaN, p999S: NaN };
  const at = (q: number) => histogram.getValueAtPercentile(q) / HISTOGRAM_UNITS_PER_S;
  return { p50S: at(50), p90S: at(90), p99S: at(99), p999S: at(99.9) };
}

/** Decodes a `histogram` string of a DecodedLog (or of the results store) for merging or further percentiles. */
export function decodeDelayHistogram(base64: string): Histogram {
  const histogram = decodeFromCompressedBase64(base64, 32, false);
  // Decoded histograms do not resize by default: merging a run with a longer tail would throw.
  histogram.autoResize = true;
  return histogram;
}

/** Percentiles and count of a stored histogram string. */
export function summarizeDelayHistogram(base64: string): DelayPercentiles & { packets: number; delayMaxS: number } {
  const h = decodeDelayHistogram(base64);
  return { ...delayPercentiles(h), packets: h.totalCount, delayMaxS: h.totalCount ? h.maxValue / HISTOGRAM_UNITS_PER_S : NaN };
}

/** Delay counts of one flow: exact per-µs counts for small delays, the HDR histogram for the rest. */
class DelayRecorder {
  private readonly exact = new Uint32Array(EXACT_COUNT_LIMIT_US);
  readonly histogram = newHistogram();
  negatives = 0;

  record(delayS: number): void {
    let us = Math.round(delayS * HISTOGRAM_UNITS_PER_S);
    if (!(us >= 0)) {
      this.negatives++;
      us = 0;
    }
    if (us < EXACT_COUNT_LIMIT_US) this.exact[us]++;
    else this.histogram.recordValue(us);
  }

  /** Moves the exact counts into the HDR histogram and returns it. */
  flush(): Histogram {
    const exact = this.exact;
    for (let us = 0; us < exact.length; us++) {
      if (exact[us] !== 0) this.histogram.recordValueWithCount(us, exact[us]!);
    }
    exact.fill(0);
    return this.histogram;
  }
}

/** Running statistics of one flow, updated per record in O(1). */
class FlowAccumulator {
  packets = 0;
  bytes = 0;
  firstRx = Infinity;
  lastRx = -Infinity;
  delayMin = Infinity;
  delayMax = -Infinity;
  delayMean = 0;
  /** Welford's sum of squared deviations. */
  delayM2 = 0;
  lastDelay = 0;
  jitterSum = 0;
  // ITGDec's loss bookkeeping (unsigned int fields in ITGDecod.cpp; minSeq is always 1).
  maxSeq = 0;
  duplicates = 0;
  dropped = 0;
  lossEvents = 0;
  readonly delays = new DelayRecorder();

  constructor(
    readonly flowId: number,
    readonly srcAddress: string,
    readonly srcPort: number,
    readonly destAddress: string,
    readonly destPort: number,
    /** flowId, srcPort, destPort and both raw address fields of the record that created it: the fast match. */
    readonly signature: Uint32Array,
  ) {}

  matches(words: Uint32Array, w: number): boolean {
    const s = this.signature;
    if (s[0] !== words[w] || s[1] !== words[w + 2] || s[2] !== words[w + 3]) return false;
    for (let k = 3; k < s.length; k++) if (s[k] !== words[w + 6 + k]) return false;
    return true;
  }

  add(seq: number, size: number, rx: number, delay: number): void {
    const n = ++this.packets;
    this.bytes += size;
    if (rx < this.firstRx) this.firstRx = rx;
    if (rx > this.lastRx) this.lastRx = rx;
    if (delay < this.delayMin) this.delayMin = delay;
    if (delay > this.delayMax) this.delayMax = delay;
    const dev = delay - this.delayMean;
    this.delayMean += dev / n;
    this.delayM2 += dev * (delay - this.delayMean);
    this.delays.record(delay);
    if (n === 1) {
      this.maxSeq = seq;
      this.lastDelay = delay;
      return;
    }
    this.jitterSum += Math.abs(this.lastDelay - delay);
    this.lastDelay = delay;
    if (seq > this.maxSeq) this.maxSeq = seq;
    if (seq > this.dropped + n) this.lossEvents = (this.lossEvents + 1) >>> 0;
    // (maxSeq - minSeq + 1) with minSeq = 1 is maxSeq, also under ITGDec's 32-bit wrap.
    if (this.maxSeq < n - this.duplicates) {
      this.duplicates = (n - this.maxSeq) >>> 0;
      this.dropped = 0;
    } else {
      const dropped = this.maxSeq - n + this.duplicates;
      if (dropped < this.dropped) this.lossEvents = (this.lossEvents - 1) >>> 0;
      this.dropped = dropped;
    }
  }
}

interface Totals {
  packets: number;
  bytes: number;
  dropped: number;
  lossEvents: number;
  negatives: number;
  firstRx: number;
  lastRx: number;
  delayMin: number;
  delayMax: number;
  mean: number;
  m2: number;
}

function rates(bytes: number, packets: number, durationS: number): { bitrateKbps: number; packetRate: number } {
  // Same operation order as ITGDec: bytes * 8 / 1000 / seconds.
  return durationS > 0 ? { bitrateKbps: (bytes * 8) / 1000 / durationS, packetRate: packets / durationS } : { bitrateKbps: 0, packetRate: 0 };
}

function lossFields(dropped: number, packets: number, lossEvents: number, droppedPercent: number) {
  if (packets > 0 && dropped > 0) return { dropped, droppedPercent, lossBurstSize: dropped / lossEvents };
  return { dropped: 0, droppedPercent: 0, lossBurstSize: 0 };
}

function delayFields(packets: number, min: number, max: number, mean: number, m2: number) {
  if (packets === 0) return { delayMinS: NaN, delayMaxS: NaN, delayMeanS: NaN, delayStdS: NaN };
  return { delayMinS: min, delayMaxS: max, delayMeanS: mean, delayStdS: Math.sqrt(m2 / packets) };
}

/**
 * Incremental decoder: feed it bytes of a log in any chunking (write) or whole aligned record blocks (addRecords),
 * then call result(). Memory is a fixed staging buffer plus under 100 KB per flow (exact counts and HDR).
 */
export class LogDecoder {
  private readonly flows: FlowAccumulator[] = [];
  private readonly flowsByKey = new Map<string, FlowAccumulator>();
  private lastFlow: FlowAccumulator | undefined;
  private errorLines = 0;
  private records = 0;
  /** ITGDec's TOTAL jitter: |delay difference| of consecutive records in file order, whatever their flow. */
  private totalJitterSum = 0;
  private totalLastDelay = NaN;
  /** Receive time of the previous record on a continuous axis (seconds since the first record's midnight). */
  private prevRx = NaN;
  private rxDayOffset = 0;
  private staging: RecordBlock | undefined;
  private stagedBytes = 0;

  constructor(readonly file: string) {
    if (endianness() !== "LE") {
      throw new LogFormatError(file, "this decoder reads D-ITG logs written on little-endian hosts and must run on one");
    }
  }

  /** Decodes `count` whole records at the start of an aligned block. */
  addRecords(block: RecordBlock, count: number): void {
    const words = block.words;
    const doubles = block.doubles;
    for (let r = 0; r < count; r++) {
      const w = r * WORDS;
      const txHour = words[w + 4]!;
      const txMin = words[w + 5]!;
      const rxHour = words[w + 6]!;
      const rxMin = words[w + 7]!;
      const txSec = doubles[r * DOUBLES + 16]!;
      const rxSec = doubles[r * DOUBLES + 17]!;
      // ITGDec's range checks, NaN passing as it does in C.
      if (txHour > 24 || txMin > 59 || txSec > 59.999999 || txSec < 0 || rxHour > 24 || rxMin > 59 || rxSec > 59.999999 || rxSec < 0) {
        this.errorLines++;
        continue;
      }
      const tx = txHour * 3600 + txMin * 60 + txSec;
      const rxOfDay = rxHour * 3600 + rxMin * 60 + rxSec;
      let delay = rxOfDay - tx;
      if (delay < -HALF_DAY_S) delay += DAY_S;
      else if (delay > HALF_DAY_S) delay -= DAY_S;

      let rx = rxOfDay + this.rxDayOffset;
      const step = rx - this.prevRx;
      if (step < -HALF_DAY_S || step > HALF_DAY_S) {
        this.rxDayOffset += DAY_S * Math.round(-step / DAY_S);
        rx = rxOfDay + this.rxDayOffset;
      }
      this.prevRx = rx;

      let flow = this.lastFlow;
      if (flow === undefined || !flow.matches(words, w)) flow = this.lastFlow = this.flowOf(block, r);
      flow.add(words[w + 1]!, words[w + 8]!, rx, delay);

      if (this.records++ > 0) this.totalJitterSum += Math.abs(this.totalLastDelay - delay);
      this.totalLastDelay = delay;
    }
  }

  /** Decodes arbitrary bytes of a log, carrying a partial record over to the next call. */
  write(chunk: Uint8Array): void {
    const block = (this.staging ??= recordBlock(RECORDS_PER_CHUNK));
    let offset = 0;
    while (offset < chunk.length) {
      const n = Math.min(chunk.length - offset, block.bytes.length - this.stagedBytes);
      block.bytes.set(chunk.subarray(offset, offset + n), this.stagedBytes);
      this.stagedBytes += n;
      offset += n;
      // The staging buffer holds a whole number of records.
      if (this.stagedBytes === block.bytes.length) {
        this.addRecords(block, RECORDS_PER_CHUNK);
        this.stagedBytes = 0;
      }
    }
  }

  /** The summary so far; throws if a partial record is pending. */
  result(): DecodedLog {
    if (this.staging && this.stagedBytes > 0) {
      const whole = Math.floor(this.stagedBytes / RECORD_BYTES);
      this.addRecords(this.staging, whole);
      const rest = this.stagedBytes - whole * RECORD_BYTES;
      this.staging.bytes.copyWithin(0, whole * RECORD_BYTES, this.stagedBytes);
      this.stagedBytes = rest;
      if (rest > 0) {
        throw new LogFormatError(this.file, `ends with a partial record of ${rest} bytes (records are ${RECORD_BYTES} bytes); the log is truncated or not a D-ITG binary log`);
      }
    }
    const totalHistogram = newHistogram();
    const flows: FlowReport[] = [];
    const t: Totals = {
      packets: 0, bytes: 0, dropped: 0, lossEvents: 0, negatives: 0,
      firstRx: Infinity, lastRx: -Infinity, delayMin: Infinity, delayMax: -Infinity, mean: 0, m2: 0,
    };
    for (const f of this.flows) {
      const histogram = f.delays.flush();
      totalHistogram.add(histogram);
      const durationS = f.lastRx - f.firstRx;
      flows.push({
        flowId: f.flowId,
        srcAddress: f.srcAddress,
        srcPort: f.srcPort,
        destAddress: f.destAddress,
        destPort: f.destPort,
        packets: f.packets,
        bytes: f.bytes,
        durationS,
        ...delayFields(f.packets, f.delayMin, f.delayMax, f.delayMean, f.delayM2),
        jitterS: f.packets > 1 ? f.jitterSum / (f.packets - 1) : 0,
        ...rates(f.bytes, f.packets, durationS),
        ...lossFields(f.dropped, f.packets, f.lossEvents, (100 * f.dropped) / (f.packets + f.dropped)),
        negativeDelays: f.delays.negatives,
        ...delayPercentiles(histogram),
      });
      // Chan et al.'s merge of Welford accumulators.
      const n = t.packets + f.packets;
      const d = f.delayMean - t.mean;
      t.m2 += f.delayM2 + (d * d * t.packets * f.packets) / n;
      t.mean += (d * f.packets) / n;
      t.packets = n;
      t.bytes += f.bytes;
      // ITGDec sums these in unsigned int.
      t.dropped = (t.dropped + f.dropped) >>> 0;
      t.lossEvents = (t.lossEvents + f.lossEvents) >>> 0;
      t.negatives += f.delays.negatives;
      t.firstRx = Math.min(t.firstRx, f.firstRx);
      t.lastRx = Math.max(t.lastRx, f.lastRx);
      t.delayMin = Math.min(t.delayMin, f.delayMin);
      t.delayMax = Math.max(t.delayMax, f.delayMax);
    }
    const durationS = t.packets > 0 ? t.lastRx - t.firstRx : 0;
    const total: TotalReport = {
      flowCount: flows.length,
      errorLines: this.errorLines,
      packets: t.packets,
      bytes: t.bytes,
      durationS,
      ...delayFields(t.packets, t.delayMin, t.delayMax, t.mean, t.m2),
      jitterS: t.packets > 1 ? this.totalJitterSum / (t.packets - 1) : 0,
      ...rates(t.bytes, t.packets, durationS),
      // ITGDec multiplies in unsigned int before dividing for the TOTAL percentage.
      ...lossFields(t.dropped, t.packets, t.lossEvents, (Math.imul(100, t.dropped) >>> 0) / (t.packets + t.dropped)),
      negativeDelays: t.negatives,
      ...delayPercentiles(totalHistogram),
    };
    return { file: this.file, flows, total, histogram: encodeIntoCompressedBase64(totalHistogram) };
  }

  private flowOf(block: RecordBlock, r: number): FlowAccumulator {
    const w = r * WORDS;
    for (const f of this.flows) if (f.matches(block.words, w)) return f;
    const base = r * RECORD_BYTES;
    const srcAddress = cString(block.bytes, base + SRC_ADDR);
    const destAddress = cString(block.bytes, base + DEST_ADDR);
    const flowId = block.words[w]!;
    const srcPort = block.words[w + 2]!;
    const destPort = block.words[w + 3]!;
    const key = `${flowId} ${srcAddress} ${srcPort} ${destAddress} ${destPort}`;
    let flow = this.flowsByKey.get(key);
    if (flow === undefined) {
      // The same flow may carry different bytes after an address's NUL; only the first such record's bytes give the
      // fast match, later variants take this slower path, still to the right flow.
      const signature = new Uint32Array(3 + (DEST_ADDR + ADDRESS_BYTES - SRC_ADDR) / 4);
      signature[0] = flowId;
      signature[1] = srcPort;
      signature[2] = destPort;
      signature.set(block.words.subarray(w + SRC_ADDR / 4, w + (DEST_ADDR + ADDRESS_BYTES) / 4), 3);
      flow = new FlowAccumulator(flowId, srcAddress, srcPort, destAddress, destPort, signature);
      this.flowsByKey.set(key, flow);
      this.flows.push(flow);
    }
    return flow;
  }
}

/** A buffer of whole records with 32-bit and 64-bit views (the record layout is 8-byte aligned). */
export interface RecordBlock {
  readonly bytes: Uint8Array;
  readonly words: Uint32Array;
  readonly doubles: Float64Array;
}

export function recordBlock(records: number): RecordBlock {
  const buffer = new ArrayBuffer(records * RECORD_BYTES);
  return { bytes: new Uint8Array(buffer), words: new Uint32Array(buffer), doubles: new Float64Array(buffer) };
}

/** One record's fields; times are D-ITG's UTC time of day split as it stores them. */
export interface LogRecord {
  readonly flowId: number;
  readonly seqNum: number;
  readonly srcAddress: string;
  readonly srcPort: number;
  readonly destAddress: string;
  readonly destPort: number;
  readonly tx: TimeOfDay;
  readonly rx: TimeOfDay;
  readonly size: number;
}

export interface TimeOfDay {
  readonly hour: number;
  readonly minute: number;
  /** Seconds within the minute, with the microseconds as a fraction. */
  readonly second: number;
}

/** A time stamp as D-ITG splits it (`tv_sec % 86400`, then `sec % 60 + usec / 1e6`). */
export function timeOfDay(epochMicros: number): TimeOfDay {
  const sec = Math.floor(epochMicros / 1e6);
  const usec = epochMicros - sec * 1e6;
  const ofDay = sec % DAY_S;
  return { hour: Math.floor(ofDay / 3600), minute: Math.floor((ofDay % 3600) / 60), second: (ofDay % 60) + usec / 1e6 };
}

/** Writes a record at `index` of a block in D-ITG's layout (zero-filled address fields), e.g. to build test logs. */
export function encodeRecord(block: RecordBlock, index: number, r: LogRecord): void {
  const w = index * WORDS;
  const base = index * RECORD_BYTES;
  block.bytes.fill(0, base, base + RECORD_BYTES);
  const fields = [r.flowId, r.seqNum, r.srcPort, r.destPort, r.tx.hour, r.tx.minute, r.rx.hour, r.rx.minute, r.size];
  fields.forEach((v, k) => (block.words[w + k] = v));
  for (const [address, at] of [[r.srcAddress, SRC_ADDR], [r.destAddress, DEST_ADDR]] as const) {
    if (address.length >= ADDRESS_BYTES) throw new RangeError(`address ${address} does not fit D-ITG's ${ADDRESS_BYTES}-byte field`);
    block.bytes.set(Buffer.from(address, "latin1"), base + at);
  }
  block.doubles[index * DOUBLES + 16] = r.tx.second;
  block.doubles[index * DOUBLES + 17] = r.rx.second;
}

/** Reads the record at `index` of a block (the inverse of encodeRecord). */
export function decodeRecord(block: RecordBlock, index: number): LogRecord {
  const w = index * WORDS;
  const base = index * RECORD_BYTES;
  const words = block.words;
  return {
    flowId: words[w]!,
    seqNum: words[w + 1]!,
    srcPort: words[w + 2]!,
    destPort: words[w + 3]!,
    tx: { hour: words[w + 4]!, minute: words[w + 5]!, second: block.doubles[index * DOUBLES + 16]! },
    rx: { hour: words[w + 6]!, minute: words[w + 7]!, second: block.doubles[index * DOUBLES + 17]! },
    size: words[w + 8]!,
    srcAddress: cString(block.bytes, base + SRC_ADDR),
    destAddress: cString(block.bytes, base + DEST_ADDR),
  };
}

function cString(bytes: Uint8Array, start: number): string {
  let end = start;
  while (end < start + ADDRESS_BYTES && bytes[end] !== 0) end++;
  return Buffer.from(bytes.buffer, bytes.byteOffset + start, end - start).toString("latin1");
}

/** Decodes one D-ITG binary log file, reading it in fixed-size chunks. */
export async function decodeLogFile(path: string): Promise<DecodedLog> {
  let handle;
  try {
    handle = await open(path, "r");
  } catch (err) {
    throw new LogFormatError(path, `cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new LogFormatError(path, "is not a regular file; accepted: a D-ITG binary log (ITGSend/ITGRecv -l or -x)");
    checkLogSize(path, stat.size);
    const decoder = new LogDecoder(path);
    const block = recordBlock(RECORDS_PER_CHUNK);
    let filled = 0;
    for (;;) {
      const { bytesRead } = await handle.read(block.bytes, filled, block.bytes.length - filled, null);
      filled += bytesRead;
      const whole = Math.floor(filled / RECORD_BYTES);
      if (bytesRead === 0 || filled === block.bytes.length) {
        decoder.addRecords(block, whole);
        const rest = filled - whole * RECORD_BYTES;
        block.bytes.copyWithin(0, whole * RECORD_BYTES, filled);
        filled = rest;
        if (bytesRead === 0) {
          if (rest > 0) throw new LogFormatError(path, `ends with a partial record of ${rest} bytes; the log is truncated`);
          break;
        }
      }
    }
    return decoder.result();
  } catch (err) {
    if (err instanceof LogFormatError) throw err;
    throw new LogFormatError(path, `cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  } finally {
    await handle.close();
  }
}

/** Throws unless a file of `size` bytes is a whole number of records. */
export function checkLogSize(path: string, size: number): void {
  const rest = size % RECORD_BYTES;
  if (rest !== 0) {
    throw new LogFormatError(
      path,
      `is ${size} bytes, not a whole number of ${RECORD_BYTES}-byte D-ITG records (${Math.floor(size / RECORD_BYTES)} records and ${rest} bytes); accepted: an untruncated binary log from ITGSend/ITGRecv -l or -x`,
    );
  }
}
