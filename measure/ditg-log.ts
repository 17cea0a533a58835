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
// Which delays (D-ITG B15). ITGSend's round-trip meter (-m rttm) logs each echo with the send time's SECONDS taken
// from the echoed packet but its MICROSECONDS from the newest packet sent (ITGSend.cpp 2.8.1: `timeUsec =
// Ticker.lastTime.tv_usec` at L3147 on every send, `time1` read from the echo at L3408, `writeInBufferStandard(...,
// time1, time2, timeUsec, ...)` at L3417; the end-of-flow drain loop, L3535-3546, takes the echo's own microseconds).
// Every echo that returns after the next packet left gets a wrong send time: at least 1 s too long when a second
// boundary lies between the two sends (the "1.000 s" records), silently too short otherwise. So a decoder reads
// delays in one of three views:
// - "paired": exact round trips, the sender log's receive time minus the send stamp the receiver logged (-x) for the
//   same (flow id, sequence number), both on the sender's clock (ditg-pairing.ts). Sender records without a partner
//   are counted in `excludedRecords` and left out of the delay statistics, never guessed.
// - "sender": an rttm sender log read alone. Records with B15's signature, a round trip of RTTM_SIGNATURE_S or more,
//   are counted in `excludedRecords` and left out of the delay statistics; the short-by-less-than-a-spacing records
//   cannot be told from true ones and stay.
// - "logged": every record as logged, ITGDec's numbers (one-way logs, parity checks).
// Packets, bytes, duration, rates and loss count every record in every view: they use receive times only.
//
// What wrote a log (LogContent: ITGSend's round-trip log, a receiver's one-way log, ITGSend's own log of a one-way
// flow) is told from its records in the same pass (logContent), and a log read alone (decodeLogAlone) leaves out
// B15's signature only from a round-trip log. checkDitgLog refuses what decodes but is not a D-ITG log.
//
// Deliberate differences from ITGDec, in every view:
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
import { open, type FileHandle } from "node:fs/promises";
import { isIP } from "node:net";
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
/** Half of D-ITG's resolution: two stamps closer than this are the same microsecond. */
const HALF_US = 0.5e-6;
/**
 * How long before the previous packet's arrival a packet must have left to count as sent while that one was on its
 * way. ITGSend's round-trip meter updates the stamp it logs for echoes a few microseconds after it stamps a send,
 * so an echo read in between keeps its own stamp although the next packet left; a sending thread preempted there
 * stretches that window. Ten milliseconds is far beyond both; a one-way delay that long is seen at any rate above
 * 100 packets per second.
 */
const OVERLAP_MARGIN_S = 0.01;
/** Overlapping packets that make a log one-way: a preempted meter may give one or two, a delayed flow hundreds. */
const OVERLAP_EVIDENCE = 10;
/** Records per flow held to compare a packet with the sequence numbers next to its own: reordering up to this many. */
const NEIGHBOUR_RING = 1024;
const NEIGHBOUR_MASK = NEIGHBOUR_RING - 1;
const HALF_DAY_S = DAY_S / 2;
/** Records per read: about 9 MB, large enough that syscalls do not matter, small enough to stay constant. */
const RECORDS_PER_CHUNK = 65_536;
/**
 * Delays below this many µs are counted in a plain array and handed to the HDR histogram once at the end:
 * recording into hdr-histogram-js costs ~50 ns a value, an array increment ~1 ns. 64 KB per flow.
 */
const EXACT_COUNT_LIMIT_US = 16_384;

/** How a decoder reads a log's delays (see the top of this file). */
export type DelayView = "paired" | "sender" | "logged";

/** Where the send times of a view's delays come from: the receiver log's stamps, or the log's own. */
export type DelaySource = "paired" | "sender";

/**
 * Round trips of this many seconds or more in an rttm sender log carry D-ITG B15's signature. A record whose echo
 * returned after a second boundary and after the next packet left reads at least 1 s (its logged send time takes the
 * earlier second and the later packet's microseconds); any true round trip this long is itself longer than the packet
 * spacing at more than 2 pkt/s, so its record is mis-stamped too. Half a second sits between the milliseconds of a
 * healthy round trip and the second of a corrupted one.
 */
export const RTTM_SIGNATURE_S = 0.5;

/** Send stamps by (flow id, sequence number), for the paired view (ditg-pairing.ts reads them from a receiver log). */
export interface SendStamps {
  /** The send stamp of the packet as a UTC time of day in seconds, or NaN when there is none. */
  sendStampOf(flowId: number, seq: number): number;
  /** Called before each chunk of the log is decoded: a chance to read ahead while it is. */
  prefetch?(): void;
}

export interface DecodeOptions {
  /**
   * The views to compute; the first one gives the result's flows, total and histogram, and with more than one the
   * result's `views` holds each. Default: ["logged"].
   */
  readonly views?: readonly DelayView[];
  /** The send stamps of the paired view; required when it is asked for. */
  readonly stamps?: SendStamps;
}

const DELAY_SOURCE: Record<DelayView, DelaySource> = { paired: "paired", sender: "sender", logged: "sender" };

/** Summary fields shared by each flow and the total. */
export interface DelayReport extends FlowSummary {
  /** Packets dropped as a percentage of received plus dropped, as ITGDec prints it. */
  readonly droppedPercent: number;
  /** ITGDec's "Average loss-burst size" (dropped packets per loss event), 0 without loss. */
  readonly lossBurstSize: number;
  /** Records with a negative delay (unsynchronised clocks); recorded as 0 in the histogram. */
  readonly negativeDelays: number;
  /**
   * Records counted in `packets` but left out of the delay statistics: without a partner in the receiver log
   * (paired view), or with B15's signature (sender view); always 0 when every record is read as logged.
   */
  readonly excludedRecords: number;
  readonly delaySource: DelaySource;
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

/** One view's summary of a log. */
export interface DecodedView {
  readonly flows: FlowReport[];
  readonly total: TotalReport;
  /** HDR histogram of every delay of the view, in µs (HISTOGRAM_UNITS_PER_S), hdr-histogram-js compressed base64. */
  readonly histogram: string;
}

/**
 * What wrote a log, told from its records (a D-ITG binary log has no header):
 * - "round-trip": ITGSend's log of a round-trip flow (-m rttm -l): its delays are round trips;
 * - "one-way": a receiver's log (ITGRecv -l, or what ITGSend -x asks it to write): one-way delays;
 * - "sender-one-way": ITGSend's own log of a one-way flow (-l without -m rttm): every receive time is the send time;
 * - "unknown": nothing in the records tells the first two apart (no packet left while another was on its way).
 */
export type LogKind = "round-trip" | "one-way" | "sender-one-way" | "unknown";

export interface LogContent {
  readonly kind: LogKind;
  /** What in the records tells, in words. */
  readonly because: string;
  /** Records whose logged delay is RTTM_SIGNATURE_S or more. */
  readonly longRecords: number;
  /** Position (from 0) of the first record with out-of-range time fields (an error line), -1 when none. */
  readonly firstErrorRecord: number;
}

/** A log's summary in its first view, and every view when several were asked for. */
export interface DecodedLog extends DecodedView {
  readonly file: string;
  readonly views?: Partial<Record<DelayView, DecodedView>>;
  /** What wrote it (every log the decoder reads has it; summaries built elsewhere may not). */
  readonly content?: LogContent;
}

/** Addresses a receiver bound to every local address logs as the destination: ITGSend always logs a real one. */
const UNSPECIFIED_ADDRESSES: ReadonlySet<string> = new Set(["0.0.0.0", "::"]);

/**
 * Tells what wrote a log from its flows' records. ITGSend's round-trip meter stamps an echo's send time with the
 * microseconds of the newest packet sent when the echo is read (D-ITG B15, see the top of this file): its send stamps
 * do not step past an earlier echo's receive time (but for the few microseconds in which a send is stamped and not
 * yet recorded, OVERLAP_MARGIN_S), and they run backwards between consecutive packets where B15 moved one across a
 * second. A receiver logs each packet's own send stamp: the stamps rise with the sequence number, never backwards,
 * and at a spacing shorter than the delay packets leave while the previous one is on its way. A receiver bound to
 * every address (`ITGRecv -a 0.0.0.0`, as behind a NodePort) logs that address as the destination.
 */
function logContent(flows: readonly FlowAccumulator[], longRecords: number, firstErrorRecord: number): LogContent {
  const packets = flows.reduce((n, f) => n + f.packets, 0);
  const of = (kind: LogKind, because: string): LogContent => ({ kind, because, longRecords, firstErrorRecord });
  if (packets === 0) return of("unknown", "no record");
  if (flows.every((f) => f.echoless === f.packets)) {
    return of("sender-one-way", "every record's receive time is its send time");
  }
  const unspecified = flows.find((f) => UNSPECIFIED_ADDRESSES.has(f.destAddress));
  if (unspecified) {
    return of("one-way", `its destination is ${unspecified.destAddress}, the address a receiver bound with -a ${unspecified.destAddress} logs; ITGSend logs the address it sent to`);
  }
  const overlaps = flows.reduce((n, f) => n + f.overlaps, 0);
  const oneWay = flows.reduce((n, f) => n + f.overlapsWhileSending(), 0) >= OVERLAP_EVIDENCE;
  const inversions = flows.reduce((n, f) => n + f.stampInversions, 0);
  const left = `${overlaps} packet(s) left more than ${OVERLAP_MARGIN_S * 1000} ms before the previous one arrived`;
  if (oneWay && inversions > 0) {
    return of("unknown", `its records show both: ${left} (one-way delays) and ${inversions} send stamp(s) run backwards (round trips)`);
  }
  if (oneWay) {
    return of("one-way", `${left}, each with its own send stamp, which ITGSend's round-trip meter does not log`);
  }
  if (inversions > 0) {
    return of("round-trip", `send stamps run backwards ${inversions} time(s) between consecutive packets: D-ITG B15's mis-stamping, which only ITGSend's round-trip meter (-m rttm) writes`);
  }
  return of("unknown", "no packet left long before the previous one arrived, so round trips and one-way delays look alike");
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

/** An empty delay histogram (3 significant digits, any integer unit: µs here, ns for the hop sections). */
export function newHistogram(): Histogram {
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

/** Running delay statistics of one flow in one view, updated per record in O(1). */
class DelayAccumulator {
  count = 0;
  excluded = 0;
  min = Infinity;
  max = -Infinity;
  mean = 0;
  /** Welford's sum of squared deviations. */
  m2 = 0;
  last = 0;
  jitterSum = 0;
  readonly recorder = new DelayRecorder();

  add(delay: number): void {
    const n = ++this.count;
    if (delay < this.min) this.min = delay;
    if (delay > this.max) this.max = delay;
    const dev = delay - this.mean;
    this.mean += dev / n;
    this.m2 += dev * (delay - this.mean);
    this.recorder.record(delay);
    if (n > 1) this.jitterSum += Math.abs(this.last - delay);
    this.last = delay;
  }
}

/** Running counts of one flow (every record, whatever the view), updated per record in O(1). */
class FlowAccumulator {
  packets = 0;
  bytes = 0;
  firstRx = Infinity;
  lastRx = -Infinity;
  // ITGDec's loss bookkeeping (unsigned int fields in ITGDecod.cpp; minSeq is always 1).
  maxSeq = 0;
  duplicates = 0;
  dropped = 0;
  lossEvents = 0;
  /** One per view, in the decoder's view order. */
  readonly delays: DelayAccumulator[];
  // What wrote the log (logContent): each record against the records of the sequence numbers next to its own, held
  // in a ring indexed by the sequence number's low bits (the log is in arrival order, not in sequence order).
  private readonly nearSeq = new Uint32Array(NEIGHBOUR_RING);
  private readonly nearTx = new Float64Array(NEIGHBOUR_RING).fill(NaN);
  private readonly nearRx = new Float64Array(NEIGHBOUR_RING);
  private readonly nearDelay = new Float64Array(NEIGHBOUR_RING);
  /** Latest send stamp so far. */
  maxTx = -Infinity;
  /** Packets whose send stamp is earlier than the previous sequence number's. */
  stampInversions = 0;
  /** Packets sent more than OVERLAP_MARGIN_S before the previous one arrived, both stamps their own. */
  overlaps = 0;
  /** The earliest arrivals of such previous packets: those before the flow's last send were not an rttm drain's. */
  private readonly overlapArrivals = new Float64Array(OVERLAP_EVIDENCE).fill(Infinity);
  /** Records whose receive time is their send time. */
  echoless = 0;

  constructor(
    readonly flowId: number,
    readonly srcAddress: string,
    readonly srcPort: number,
    readonly destAddress: string,
    readonly destPort: number,
    /** The fast match: which words of a record (matchAt) must hold which values (matchWords). */
    private readonly matchAt: Uint8Array,
    private readonly matchWords: Uint32Array,
    views: number,
  ) {
    this.delays = Array.from({ length: views }, () => new DelayAccumulator());
  }

  /**
   * Compares a record with those of the sequence numbers before and after it (see LogContent): `rx` on the decoder's
   * continuous receive-time axis, `delay` the record's own (receive minus send time), so its send time is rx - delay.
   */
  observe(seq: number, rx: number, delay: number): void {
    const tx = rx - delay;
    if (delay === 0) this.echoless++;
    if (tx > this.maxTx) this.maxTx = tx;
    const before = (seq - 1) & NEIGHBOUR_MASK;
    const after = (seq + 1) & NEIGHBOUR_MASK;
    const txs = this.nearTx;
    if (this.nearSeq[before] === (seq - 1) >>> 0 && txs[before] === txs[before]) {
      this.compare(txs[before]!, this.nearRx[before]!, this.nearDelay[before]!, tx, delay);
    }
    if (this.nearSeq[after] === (seq + 1) >>> 0 && txs[after] === txs[after]) {
      this.compare(tx, rx, delay, txs[after]!, this.nearDelay[after]!);
    }
    const slot = seq & NEIGHBOUR_MASK;
    this.nearSeq[slot] = seq;
    txs[slot] = tx;
    this.nearRx[slot] = rx;
    this.nearDelay[slot] = delay;
  }

  /** Two packets of consecutive sequence numbers: `a` the earlier one, `b` the next. */
  private compare(aTx: number, aRx: number, aDelay: number, bTx: number, bDelay: number): void {
    if (bTx < aTx - HALF_US) {
      this.stampInversions++;
    } else if (bTx > aTx + HALF_US && bTx < aRx - OVERLAP_MARGIN_S && aDelay >= 0 && aDelay < 1 && bDelay >= 0 && bDelay < 1) {
      this.overlaps++;
      const arrivals = this.overlapArrivals;
      let latest = 0;
      for (let i = 1; i < arrivals.length; i++) if (arrivals[i]! > arrivals[latest]!) latest = i;
      if (aRx < arrivals[latest]!) arrivals[latest] = aRx;
    }
  }

  /**
   * Overlapping packets (up to OVERLAP_EVIDENCE) whose previous packet arrived while the flow still sent: the packets
   * ITGSend's round-trip meter logs after its last send (its drain loop) keep their own stamps and may overlap.
   */
  overlapsWhileSending(): number {
    return this.overlapArrivals.reduce((n, at) => (at < this.maxTx + HALF_US ? n + 1 : n), 0);
  }

  matches(words: Uint32Array, w: number): boolean {
    const at = this.matchAt;
    const values = this.matchWords;
    for (let k = 0; k < at.length; k++) if (words[w + at[k]!] !== values[k]) return false;
    return true;
  }

  add(seq: number, size: number, rx: number): void {
    const n = ++this.packets;
    this.bytes += size;
    if (rx < this.firstRx) this.firstRx = rx;
    if (rx > this.lastRx) this.lastRx = rx;
    if (n === 1) {
      this.maxSeq = seq;
      return;
    }
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

/** ITGDec's TOTAL jitter of one view: |delay difference| of consecutive records in file order, whatever their flow. */
interface TotalJitter {
  sum: number;
  last: number;
  count: number;
}

function rates(bytes: number, packets: number, durationS: number): { bitrateKbps: number; packetRate: number } {
  // Same operation order as ITGDec: bytes * 8 / 1000 / seconds.
  return durationS > 0 ? { bitrateKbps: (bytes * 8) / 1000 / durationS, packetRate: packets / durationS } : { bitrateKbps: 0, packetRate: 0 };
}

function lossFields(dropped: number, packets: number, lossEvents: number, droppedPercent: number) {
  if (packets > 0 && dropped > 0) return { dropped, droppedPercent, lossBurstSize: dropped / lossEvents };
  return { dropped: 0, droppedPercent: 0, lossBurstSize: 0 };
}

function delayFields(count: number, min: number, max: number, mean: number, m2: number) {
  if (count === 0) return { delayMinS: NaN, delayMaxS: NaN, delayMeanS: NaN, delayStdS: NaN };
  return { delayMinS: min, delayMaxS: max, delayMeanS: mean, delayStdS: Math.sqrt(m2 / count) };
}

/** A delay in seconds between two UTC times of day, taken across midnight when it is more than 12 h off. */
export function delayAcrossMidnight(rxOfDay: number, txOfDay: number): number {
  const delay = rxOfDay - txOfDay;
  if (delay < -HALF_DAY_S) return delay + DAY_S;
  if (delay > HALF_DAY_S) return delay - DAY_S;
  return delay;
}

/**
 * Incremental decoder: feed it bytes of a log in any chunking (write) or whole aligned record blocks (addRecords),
 * then call result(). Memory is a fixed staging buffer plus under 100 KB per flow and view (exact counts and HDR).
 */
export class LogDecoder {
  private readonly views: readonly DelayView[];
  /** Per view: 0 logged, 1 sender (signature excluded), 2 paired. */
  private readonly kinds: Uint8Array;
  private readonly stamps: SendStamps | undefined;
  private readonly flows: FlowAccumulator[] = [];
  private readonly flowsByKey = new Map<string, FlowAccumulator>();
  private lastFlow: FlowAccumulator | undefined;
  private errorLines = 0;
  /** Records whose logged delay is RTTM_SIGNATURE_S or more. */
  private longRecords = 0;
  private firstErrorRecord = -1;
  /** Records of earlier addRecords calls. */
  private recordsBefore = 0;
  private readonly totalJitter: TotalJitter[];
  /** Receive time of the previous record on a continuous axis (seconds since the first record's midnight). */
  private prevRx = NaN;
  private rxDayOffset = 0;
  private staging: RecordBlock | undefined;
  private stagedBytes = 0;

  constructor(
    readonly file: string,
    options: DecodeOptions = {},
  ) {
    if (endianness() !== "LE") {
      throw new LogFormatError(file, "this decoder reads D-ITG logs written on little-endian hosts and must run on one");
    }
    const views = options.views ?? ["logged"];
    if (views.length === 0 || new Set(views).size !== views.length) {
      throw new RangeError(`views: ${JSON.stringify(views)}; accepted: one or more distinct views of paired, sender, logged`);
    }
    if (views.includes("paired") && options.stamps === undefined) throw new RangeError("the paired view needs the receiver log's send stamps");
    this.views = views;
    this.kinds = Uint8Array.from(views, (v) => (v === "logged" ? 0 : v === "sender" ? 1 : 2));
    this.stamps = options.stamps;
    this.totalJitter = views.map(() => ({ sum: 0, last: NaN, count: 0 }));
  }

  /** Decodes `count` whole records at the start of an aligned block. */
  addRecords(block: RecordBlock, count: number): void {
    const words = block.words;
    const doubles = block.doubles;
    const kinds = this.kinds;
    const stamps = this.stamps;
    for (let r = 0; r < count; r++) {
      const w = r * WORDS;
      const txHour = words[w + 4]!;
      const txMin = words[w + 5]!;
      const rxHour = words[w + 6]!;
      const rxMin = words[w + 7]!;
      const txSec = doubles[r * DOUBLES + 16]!;
      const rxSec = doubles[r * DOUBLES + 17]!;
      // ITGDec's range checks; seconds that are not a number (which ITGDec lets through) are error lines too.
      if (txHour > 24 || txMin > 59 || !(txSec <= 59.999999 && txSec >= 0) || rxHour > 24 || rxMin > 59 || !(rxSec <= 59.999999 && rxSec >= 0)) {
        if (this.errorLines++ === 0) this.firstErrorRecord = this.recordsBefore + r;
        continue;
      }
      const rxOfDay = rxHour * 3600 + rxMin * 60 + rxSec;
      const logged = delayAcrossMidnight(rxOfDay, txHour * 3600 + txMin * 60 + txSec);

      let rx = rxOfDay + this.rxDayOffset;
      const step = rx - this.prevRx;
      if (step < -HALF_DAY_S || step > HALF_DAY_S) {
        this.rxDayOffset += DAY_S * Math.round(-step / DAY_S);
        rx = rxOfDay + this.rxDayOffset;
      }
      this.prevRx = rx;

      let flow = this.lastFlow;
      if (flow === undefined || !flow.matches(words, w)) flow = this.lastFlow = this.flowOf(block, r);
      const seq = words[w + 1]!;
      flow.add(seq, words[w + 8]!, rx);
      flow.observe(seq, rx, logged);
      if (logged >= RTTM_SIGNATURE_S) this.longRecords++;

      for (let v = 0; v < kinds.length; v++) {
        const kind = kinds[v]!;
        const stats = flow.delays[v]!;
        let delay = logged;
        if (kind === 2) {
          const stamp = stamps!.sendStampOf(words[w]!, seq);
          // NaN: no partner in the receiver log.
          if (stamp !== stamp) {
            stats.excluded++;
            continue;
          }
          delay = delayAcrossMidnight(rxOfDay, stamp);
        } else if (kind === 1 && logged >= RTTM_SIGNATURE_S) {
          stats.excluded++;
          continue;
        }
        stats.add(delay);
        const total = this.totalJitter[v]!;
        if (total.count++ > 0) total.sum += Math.abs(total.last - delay);
        total.last = delay;
      }
    }
    this.recordsBefore += count;
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
    const decoded = this.views.map((view, v) => this.viewResult(view, v));
    const [first] = decoded;
    return {
      file: this.file,
      ...first!,
      ...(decoded.length > 1 ? { views: Object.fromEntries(this.views.map((view, v) => [view, decoded[v]!])) } : {}),
      content: logContent(this.flows, this.longRecords, this.firstErrorRecord),
    };
  }

  private viewResult(view: DelayView, v: number): DecodedView {
    const delaySource = DELAY_SOURCE[view];
    const totalHistogram = newHistogram();
    const flows: FlowReport[] = [];
    const t = {
      packets: 0, bytes: 0, dropped: 0, lossEvents: 0, negatives: 0, excluded: 0, count: 0,
      firstRx: Infinity, lastRx: -Infinity, delayMin: Infinity, delayMax: -Infinity, mean: 0, m2: 0,
    };
    for (const f of this.flows) {
      const d = f.delays[v]!;
      const histogram = d.recorder.flush();
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
        ...delayFields(d.count, d.min, d.max, d.mean, d.m2),
        jitterS: d.count > 1 ? d.jitterSum / (d.count - 1) : 0,
        ...rates(f.bytes, f.packets, durationS),
        ...lossFields(f.dropped, f.packets, f.lossEvents, (100 * f.dropped) / (f.packets + f.dropped)),
        negativeDelays: d.recorder.negatives,
        excludedRecords: d.excluded,
        delaySource,
        ...delayPercentiles(histogram),
      });
      // Chan et al.'s merge of Welford accumulators.
      const n = t.count + d.count;
      if (n > 0) {
        const dev = d.mean - t.mean;
        t.m2 += d.m2 + (dev * dev * t.count * d.count) / n;
        t.mean += (dev * d.count) / n;
      }
      t.count = n;
      t.packets += f.packets;
      t.bytes += f.bytes;
      // ITGDec sums these in unsigned int.
      t.dropped = (t.dropped + f.dropped) >>> 0;
      t.lossEvents = (t.lossEvents + f.lossEvents) >>> 0;
      t.negatives += d.recorder.negatives;
      t.excluded += d.excluded;
      t.firstRx = Math.min(t.firstRx, f.firstRx);
      t.lastRx = Math.max(t.lastRx, f.lastRx);
      t.delayMin = Math.min(t.delayMin, d.min);
      t.delayMax = Math.max(t.delayMax, d.max);
    }
    const durationS = t.packets > 0 ? t.lastRx - t.firstRx : 0;
    const jitter = this.totalJitter[v]!;
    const total: TotalReport = {
      flowCount: flows.length,
      errorLines: this.errorLines,
      packets: t.packets,
      bytes: t.bytes,
      durationS,
      ...delayFields(t.count, t.delayMin, t.delayMax, t.mean, t.m2),
      jitterS: jitter.count > 1 ? jitter.sum / (jitter.count - 1) : 0,
      ...rates(t.bytes, t.packets, durationS),
      // ITGDec multiplies in unsigned int before dividing for the TOTAL percentage.
      ...lossFields(t.dropped, t.packets, t.lossEvents, (Math.imul(100, t.dropped) >>> 0) / (t.packets + t.dropped)),
      negativeDelays: t.negatives,
      excludedRecords: t.excluded,
      delaySource,
      ...delayPercentiles(totalHistogram),
    };
    return { flows, total, histogram: encodeIntoCompressedBase64(totalHistogram) };
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
      // The fast match: flow id, ports, and each address's words up to the one holding its NUL (the same bytes up to
      // the NUL are the same string). The destination field is not word-aligned, so its first word also holds the
      // source field's last two bytes: a record with other bytes there takes this slower path, still to the right flow.
      const through = (field: number, text: string) => Math.floor((field + Math.min(text.length, ADDRESS_BYTES - 1)) / 4);
      const at = new Set([0, 2, 3]);
      for (let k = SRC_ADDR / 4; k <= through(SRC_ADDR, srcAddress); k++) at.add(k);
      for (let k = Math.floor(DEST_ADDR / 4); k <= through(DEST_ADDR, destAddress); k++) at.add(k);
      const matchAt = Uint8Array.from(at);
      const matchWords = Uint32Array.from(matchAt, (k) => block.words[w + k]!);
      flow = new FlowAccumulator(flowId, srcAddress, srcPort, destAddress, destPort, matchAt, matchWords, this.views.length);
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

/**
 * Decodes one D-ITG binary log file in fixed-size chunks, double-buffered: the next chunk is read (on libuv's thread
 * pool) while the current one is decoded.
 */
export async function decodeLogFile(path: string, options: DecodeOptions = {}): Promise<DecodedLog> {
  let handle: FileHandle;
  try {
    handle = await open(path, "r");
  } catch (err) {
    throw new LogFormatError(path, `cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new LogFormatError(path, "is not a regular file; accepted: a D-ITG binary log (ITGSend/ITGRecv -l or -x)");
    checkLogSize(path, stat.size);
    const decoder = new LogDecoder(path, options);
    const blocks = [recordBlock(RECORDS_PER_CHUNK), recordBlock(RECORDS_PER_CHUNK)] as const;
    /** Fills a block from the file's current position; resolves to the bytes read (less than its size at the end). */
    const fill = async (block: RecordBlock): Promise<number> => {
      let filled = 0;
      for (;;) {
        const { bytesRead } = await handle.read(block.bytes, filled, block.bytes.length - filled, null);
        filled += bytesRead;
        if (bytesRead === 0 || filled === block.bytes.length) return filled;
      }
    };
    let current = 0;
    let reading = fill(blocks[0]);
    for (;;) {
      const filled = await reading;
      if (filled === 0) break;
      // A full block may be followed by more: read on while this one is decoded.
      reading = filled === blocks[current]!.bytes.length ? fill(blocks[1 - current]!) : Promise.resolve(0);
      const whole = Math.floor(filled / RECORD_BYTES);
      options.stamps?.prefetch?.();
      decoder.addRecords(blocks[current]!, whole);
      if (whole * RECORD_BYTES !== filled) {
        await reading;
        throw new LogFormatError(path, `ends with a partial record of ${filled - whole * RECORD_BYTES} bytes; the log is truncated`);
      }
      current = 1 - current;
    }
    return decoder.result();
  } catch (err) {
    if (err instanceof LogFormatError) throw err;
    throw new LogFormatError(path, `cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  } finally {
    await handle.close();
  }
}

/**
 * Refuses what decodes but is not a D-ITG binary log (ITGDec would print NaN or "Error lines" and succeed): a file
 * without records, records whose time fields are out of range or not numbers, addresses that are not addresses.
 */
export function checkDitgLog(log: DecodedLog): void {
  const { packets, errorLines } = log.total;
  if (packets + errorLines === 0) throw new LogFormatError(log.file, "holds no record (0 bytes); accepted: a D-ITG binary log with records (ITGSend/ITGRecv -l or -x)");
  if (errorLines > 0) {
    const first = log.content?.firstErrorRecord ?? -1;
    throw new LogFormatError(
      log.file,
      `${errorLines} of ${packets + errorLines} records have time fields a D-ITG log cannot hold (hour above 24, minute above 59, or seconds not from 0 to 59.999999)${first >= 0 ? `, the first at record ${first + 1} (byte ${first * RECORD_BYTES})` : ""}: not a D-ITG binary log, or a corrupt one`,
    );
  }
  for (const f of log.flows) {
    for (const [end, address] of [["source", f.srcAddress], ["destination", f.destAddress]] as const) {
      if (isIP(address.replace(/%[^%]*$/, "")) === 0) {
        throw new LogFormatError(log.file, `flow ${f.flowId}: its ${end} address ${JSON.stringify(address.slice(0, 46))} is not an IP address: not a D-ITG binary log, or a corrupt one`);
      }
    }
  }
}

/** A log read alone: its summary, and how its delays were read (see decodeLogAlone). */
export interface LogAlone {
  readonly log: DecodedLog;
  readonly view: Exclude<DelayView, "paired">;
}

/**
 * Decodes a log read alone the way its records say (LogContent): every record as logged, except ITGSend's round-trip
 * log, whose records of RTTM_SIGNATURE_S or more (D-ITG B15's signature) are left out of the delays ("sender").
 * One-way delays and logs whose kind does not show keep every record. A second pass reads the log again only when it
 * is a round-trip log with such records. Refuses what is not a D-ITG log (checkDitgLog).
 */
export async function decodeLogAlone(path: string): Promise<LogAlone> {
  const logged = await decodeLogFile(path, { views: ["logged"] });
  checkDitgLog(logged);
  if (logged.content?.kind !== "round-trip" || logged.content.longRecords === 0) return { log: logged, view: "logged" };
  return { log: await decodeLogFile(path, { views: ["sender"] }), view: "sender" };
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
