// Exact round trips from the two logs of one D-ITG flow (D-ITG B15, see the top of ditg-log.ts). ITGSend's rttm log
// (-l) gives each echo's receive time; ITGRecv's log (-x) gives each packet's send stamp as the payload carried it
// (payload bytes 8-15: seconds and microseconds of the send, network order, written at ITGSend.cpp L3147-3160). Both
// are on the sender's clock, so the round trip of sequence number q is the sender log's receive time of q minus the
// receiver log's send stamp of q. Records pair by (flow id, sequence number): addresses and ports may differ between
// the two ends behind a NAT, the payload's flow id and sequence number do not.
//
// Streaming in bounded memory. Both logs are written in arrival order, the receiver's as packets arrive and the
// sender's as their echoes return, so both run in sequence order up to reordering on the path. The receiver log is
// read only as far as the sender log needs, into a window of the last PAIRING_WINDOW sequence numbers of each flow:
// until it holds the sender record's sequence number q or a later one, and when q is not among them (q arrived late,
// or never), on until q turns up or the log reaches q + PAIRING_WINDOW / 2, which keeps q inside the window. A sender
// record finds its partner unless the two logs' orders differ by more than half the window; such records, and those
// the receiver never logged, count as unpaired and are never guessed.
//
// StampWindow and LogStamps are not tied to round trips: any per-packet time stamps keyed by flow id and sequence
// number (a log's send or receive times, kernel time stamps) pair the same way.
import { closeSync, fstatSync, openSync, read, readSync, statSync, type Stats } from "node:fs";
import {
  checkLogSize,
  decodeLogFile,
  delayAcrossMidnight,
  LogFormatError,
  RECORD_BYTES,
  recordBlock,
  type DecodedLog,
  type DecodedView,
  type DelayView,
  type RecordBlock,
  type SendStamps,
} from "./ditg-log.js";
import type { HopCapture, RunHops } from "./hops.js";

/**
 * Sequence numbers held per flow: a power of two (the slot is the sequence number's low bits), 12 bytes each, so
 * 192 KB per flow. Pairing tolerates the two logs' orders differing by half of it (see the top of this file): 8 s of
 * packets at the paper's 1000 pkt/s, 68 ms at the 120 kpps this project's 2-core host logs at most (notes 2.8).
 * Reordering on a NodePort path is far below a millisecond, and a stalled receiver delays its log without
 * reordering it.
 */
export const PAIRING_WINDOW = 16_384;

/** Records per read of the stamped log: about 2.4 MB. */
const RECORDS_PER_READ = 16_384;
/** Chunks read ahead: more than one chunk of the sender log (ditg-log.ts reads 65,536 records at a time) needs. */
const READ_AHEAD = 8;
const WORDS = RECORD_BYTES / 4;
const DOUBLES = RECORD_BYTES / 8;
/** Half of D-ITG's resolution: two stamps closer than this are the same microsecond. */
const HALF_US = 0.5e-6;
/** Records compared at the start of two logs to tell one log given twice. */
const SAME_LOG_RECORDS = 64;

/** The stamps of one flow's most recent sequence numbers, in slots indexed by the sequence number's low bits. */
export class FlowStamps {
  readonly seqs: Uint32Array;
  readonly stamps: Float64Array;
  /** Highest sequence number put so far, -1 before the first. */
  newest = -1;

  constructor(
    size: number,
    /** Source and destination port of the flow's first record: a second flow under the same flow id is refused. */
    readonly srcPort: number,
    readonly destPort: number,
  ) {
    this.seqs = new Uint32Array(size);
    this.stamps = new Float64Array(size).fill(NaN);
  }
}

/** Time stamps keyed by (flow id, sequence number), the last `size` sequence numbers of each flow. */
export class StampWindow {
  private readonly flows = new Map<number, FlowStamps>();
  private readonly mask: number;
  /** The flow looked up last: records of one flow come in long runs. */
  private lastId = -1;
  private last: FlowStamps | undefined;

  constructor(readonly size = PAIRING_WINDOW) {
    if (!Number.isInteger(Math.log2(size)) || size < 2) throw new RangeError(`window size ${size}; accepted: a power of two of at least 2`);
    this.mask = size - 1;
  }

  /** The flow's stamps, or undefined before its first record. */
  find(flowId: number): FlowStamps | undefined {
    if (flowId === this.lastId) return this.last;
    const f = this.flows.get(flowId);
    if (f !== undefined) {
      this.lastId = flowId;
      this.last = f;
    }
    return f;
  }

  /** The flow's stamps, created with the ports of its first record. */
  flow(flowId: number, srcPort: number, destPort: number): FlowStamps {
    let f = this.find(flowId);
    if (f === undefined) {
      f = new FlowStamps(this.size, srcPort, destPort);
      this.flows.set(flowId, f);
    }
    return f;
  }

  /** Highest sequence number held for the flow, -1 when none. */
  newest(flowId: number): number {
    return this.find(flowId)?.newest ?? -1;
  }

  /** Keeps a stamp; one a whole window older than the flow's newest is dropped (it would evict a newer one). */
  put(f: FlowStamps, seq: number, stamp: number): void {
    if (seq + this.size <= f.newest) return;
    const slot = seq & this.mask;
    f.seqs[slot] = seq;
    f.stamps[slot] = stamp;
    if (seq > f.newest) f.newest = seq;
  }

  /** The stamp of a sequence number of the flow, NaN when not held. */
  stampOf(f: FlowStamps, seq: number): number {
    const slot = seq & this.mask;
    return f.seqs[slot] === seq ? f.stamps[slot]! : NaN;
  }

  /** The stamp of (flow id, sequence number), NaN when not held. */
  get(flowId: number, seq: number): number {
    const f = this.find(flowId);
    return f === undefined ? NaN : this.stampOf(f, seq);
  }
}

/** Which time of a record a LogStamps reads. */
export type StampField = "tx" | "rx";

/** A chunk of the stamped log: read ahead on libuv's thread pool, or dropped when needed before it arrived. */
interface Chunk {
  readonly position: number;
  readonly length: number;
  readonly block: RecordBlock;
  state: "reading" | "ready" | "dropped" | "failed";
  /** Settles when the read has ended, whatever its outcome. */
  readonly settled: Promise<void>;
}

/**
 * One time field of a D-ITG log's records, by (flow id, sequence number), read from the file only as far as the
 * questions need: the log must run in sequence order up to less than the window's reordering (see the top of this
 * file). The receiver log's "tx" is each packet's send stamp on the sender's clock, its "rx" the arrival at the
 * receiver on the receiver's clock. Records with out-of-range time fields (ITGDec's error lines) are skipped.
 *
 * The file is read ahead, READ_AHEAD chunks at a time, on libuv's thread pool, so that the copying happens while the
 * caller decodes; a chunk needed before its read has come back is read again synchronously (questions are answered
 * synchronously, inside the decoder's loop). Memory: the window plus at most READ_AHEAD + 2 chunks of 2.4 MB.
 */
export class LogStamps implements SendStamps {
  readonly window: StampWindow;
  private fd: number;
  private readonly size: number;
  /** Chunks asked for, in file order. */
  private readonly ahead: Chunk[] = [];
  private readonly spare: RecordBlock[] = [];
  /** Next byte of the file not yet asked for. */
  private nextPosition = 0;
  private current: { block: RecordBlock; records: number } | undefined;
  private cursor = 0;
  private done = false;
  private closed = false;
  /** Where the field's hour (u32 index) and seconds (f64 index) sit in a record. */
  private readonly hourWord: number;
  private readonly secondDouble: number;
  /** Records read so far. */
  records = 0;
  /** Consecutive sequence numbers whose stamps run backwards: D-ITG B15 in ITGSend's round-trip log, never in a receiver's. */
  stampInversions = 0;
  /** Records whose receive time is their send time: ITGSend's own log of a one-way flow. */
  echoless = 0;

  constructor(
    readonly file: string,
    field: StampField = "tx",
    windowSize = PAIRING_WINDOW,
  ) {
    this.window = new StampWindow(windowSize);
    this.hourWord = field === "tx" ? 4 : 6;
    this.secondDouble = field === "tx" ? 16 : 17;
    try {
      this.fd = openSync(file, "r");
    } catch (err) {
      throw new LogFormatError(file, `cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
    try {
      const stat = fstatSync(this.fd);
      if (!stat.isFile()) throw new LogFormatError(file, "is not a regular file; accepted: a D-ITG binary log (ITGSend/ITGRecv -l or -x)");
      checkLogSize(file, stat.size);
      this.size = stat.size;
    } catch (err) {
      closeSync(this.fd);
      throw err;
    }
    this.prefetch();
  }

  sendStampOf(flowId: number, seq: number): number {
    const window = this.window;
    let f = window.find(flowId);
    while (!this.done && (f === undefined || f.newest < seq)) {
      this.readRecord();
      f ??= window.find(flowId);
    }
    if (f === undefined) return NaN;
    let stamp = window.stampOf(f, seq);
    // Reordered on the way (logged after later packets), or never logged: look up to half a window further.
    const horizon = seq + window.size / 2;
    while (stamp !== stamp && !this.done && f.newest < horizon) {
      this.readRecord();
      stamp = window.stampOf(f, seq);
    }
    return stamp;
  }

  /** Asks for chunks up to READ_AHEAD beyond what has been consumed. */
  prefetch(): void {
    while (!this.closed && this.ahead.length < READ_AHEAD && this.nextPosition < this.size) {
      const block = this.spare.pop() ?? recordBlock(RECORDS_PER_READ);
      const position = this.nextPosition;
      const length = Math.min(block.bytes.length, this.size - position);
      this.nextPosition += length;
      let chunk: Chunk;
      const settled = new Promise<void>((resolve) =>
        read(this.fd, block.bytes, 0, length, position, (err, bytes) => {
          if (chunk.state === "dropped") this.spare.push(block);
          else chunk.state = err || bytes !== length ? "failed" : "ready";
          resolve();
        }),
      );
      chunk = { position, length, block, state: "reading", settled };
      this.ahead.push(chunk);
    }
  }

  /** Waits for reads in flight, then closes the file; safe to call twice. */
  async close(): Promise<void> {
    this.done = true;
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.ahead.map((c) => c.settled));
    closeSync(this.fd);
  }

  /** Makes the next chunk current: the one read ahead if it is in, otherwise the same bytes read now. */
  private nextChunk(): boolean {
    if (this.current) this.spare.push(this.current.block);
    this.current = undefined;
    const chunk = this.ahead.shift();
    let block: RecordBlock;
    let length: number;
    if (chunk?.state === "ready") {
      ({ block, length } = chunk);
    } else {
      // Still on its way (its block stays with the read), failed, or not asked for: these bytes are read here.
      if (chunk?.state === "reading") chunk.state = "dropped";
      const position = chunk?.position ?? this.nextPosition;
      if (position >= this.size) return false;
      length = chunk?.length ?? Math.min(RECORDS_PER_READ * RECORD_BYTES, this.size - position);
      if (chunk === undefined) this.nextPosition += length;
      block = this.spare.pop() ?? recordBlock(RECORDS_PER_READ);
      const bytes = readSync(this.fd, block.bytes, 0, length, position);
      if (bytes !== length) throw new LogFormatError(this.file, `ends ${length - bytes} bytes short of the size it had when opened; the log changed while it was read`);
    }
    this.current = { block, records: length / RECORD_BYTES };
    this.cursor = 0;
    this.prefetch();
    return true;
  }

  private readRecord(): void {
    if (this.current === undefined || this.cursor === this.current.records) {
      if (!this.nextChunk()) {
        this.done = true;
        return;
      }
    }
    const r = this.cursor++;
    this.records++;
    const { words, doubles } = this.current!.block;
    const w = r * WORDS;
    const hour = words[w + this.hourWord]!;
    const minute = words[w + this.hourWord + 1]!;
    const second = doubles[r * DOUBLES + this.secondDouble]!;
    if (hour > 24 || minute > 59 || !(second >= 0 && second <= 59.999999)) return;
    const flowId = words[w]!;
    const srcPort = words[w + 2]!;
    const destPort = words[w + 3]!;
    const f = this.window.flow(flowId, srcPort, destPort);
    if (f.srcPort !== srcPort || f.destPort !== destPort) {
      throw new LogFormatError(
        this.file,
        `holds two flows with flow id ${flowId} (ports ${f.srcPort}->${f.destPort} and ${srcPort}->${destPort}); pairing by flow id and sequence number needs one flow per id: use the -x log of this sender's flow`,
      );
    }
    const seq = words[w + 1]!;
    const stamp = hour * 3600 + minute * 60 + second;
    // A packet stamped before the sequence number ahead of it (compared either way round, in arrival order).
    const before = this.window.stampOf(f, (seq - 1) >>> 0);
    const after = this.window.stampOf(f, (seq + 1) >>> 0);
    if (delayAcrossMidnight(stamp, before) < -HALF_US || delayAcrossMidnight(after, stamp) < -HALF_US) this.stampInversions++;
    if (words[w + 4] === words[w + 6] && words[w + 5] === words[w + 7] && doubles[r * DOUBLES + 16] === doubles[r * DOUBLES + 17]) this.echoless++;
    this.window.put(f, seq, stamp);
  }
}

/**
 * Which log got each packet last, over the first ARRIVAL_ORDER_RECORDS records of each: a packet reaches the
 * receiver before its echo is back at ITGSend, so, read on one clock, ITGSend's round-trip log receives every
 * packet after the receiver's log does. Two hosts' clocks can hide that (a receiver's clock ahead by more than
 * the way back), so the order refuses a pair only when the caller knows both logs share one clock.
 */
export interface ArrivalOrder {
  /** Packets (flow id, sequence number) found in the head of both logs. */
  readonly compared: number;
  /** Of those, the ones the sender-place log received before the receiver-place log did. */
  readonly echoFirst: number;
}

/** A sender log decoded against its receiver log. */
export interface PairedLog extends DecodedLog {
  readonly receiverLog: string;
  readonly arrivalOrder: ArrivalOrder;
}

const ARRIVAL_ORDER_RECORDS = 1024;

/** Every packet compared got to the sender-place log first: the pair is swapped, if both logs read one clock. */
export function echoesFirst(order: ArrivalOrder): boolean {
  return order.compared > 0 && order.echoFirst === order.compared;
}

/** The arrival order of the packets in the heads of both logs (ArrivalOrder). */
export function arrivalOrder(senderLog: string, receiverLog: string): ArrivalOrder {
  /** Arrival time of day per packet in the log's head; empty when it cannot be read (decoding it says why, with its name). */
  const head = (file: string) => {
    const arrivals = new Map<string, number>();
    let fd: number | undefined;
    try {
      fd = openSync(file, "r");
      const buf = Buffer.alloc(Math.min(fstatSync(fd).size, ARRIVAL_ORDER_RECORDS * RECORD_BYTES));
      const n = readSync(fd, buf, 0, buf.length, 0);
      for (let at = 0; at + RECORD_BYTES <= n; at += RECORD_BYTES) {
        const [hour, minute, second] = [buf.readUInt32LE(at + 24), buf.readUInt32LE(at + 28), buf.readDoubleLE(at + 136)];
        if (hour > 24 || minute > 59 || !(second >= 0 && second <= 59.999999)) continue;
        arrivals.set(`${buf.readUInt32LE(at)}/${buf.readUInt32LE(at + 4)}`, hour * 3600 + minute * 60 + second);
      }
    } catch {
      arrivals.clear();
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
    return arrivals;
  };
  const atReceiver = head(receiverLog);
  let compared = 0;
  let echoFirst = 0;
  for (const [packet, echoed] of head(senderLog)) {
    const arrived = atReceiver.get(packet);
    if (arrived === undefined) continue;
    compared++;
    if (delayAcrossMidnight(echoed, arrived) < 0) echoFirst++;
  }
  return { compared, echoFirst };
}

/** How to give the two logs, for the messages that refuse a pair. */
const PAIR_HINT = "accepted: ITGSend's log of a round-trip flow (-m rttm -l) first, and the receiver's log of the same flow (ITGSend -x, written by ITGRecv) as --receiver-log";

/** Refuses one log given as both: the same file, or two files that start with the same records. */
function refuseSameLog(senderLog: string, receiverLog: string): void {
  let a: Stats;
  let b: Stats;
  try {
    a = statSync(senderLog);
    b = statSync(receiverLog);
  } catch {
    return; // reading them says why, with the file's name
  }
  if (!a.isFile() || !b.isFile()) return;
  if (a.dev === b.dev && a.ino === b.ino) {
    throw new LogFormatError(receiverLog, `is the same file as the sender log ${senderLog}: the two logs of a flow are two files; ${PAIR_HINT}`);
  }
  const bytes = Math.min(a.size, b.size, SAME_LOG_RECORDS * RECORD_BYTES);
  if (bytes === 0) return;
  const head = (file: string) => {
    const fd = openSync(file, "r");
    try {
      const buf = Buffer.alloc(bytes);
      readSync(fd, buf, 0, bytes, 0);
      return buf;
    } finally {
      closeSync(fd);
    }
  };
  if (head(senderLog).equals(head(receiverLog))) {
    throw new LogFormatError(
      receiverLog,
      `holds the same records as the sender log ${senderLog} (its first ${bytes / RECORD_BYTES}): one log given twice, whose receive times are not the echoes'; ${PAIR_HINT}`,
    );
  }
}

/** Refuses a pair whose records show that a log is in the other's place, or that they are not the two logs of one rttm flow. */
function refuseMisplaced(decoded: DecodedLog, senderLog: string, receiverLog: string, stamps: LogStamps): void {
  const content = decoded.content;
  if (content?.kind === "one-way") {
    throw new LogFormatError(senderLog, `is a receiver's log, not ITGSend's round-trip log (${content.because}); swap the two, or give ITGSend's -l log first; ${PAIR_HINT}`);
  }
  if (content?.kind === "sender-one-way") {
    throw new LogFormatError(senderLog, `is ITGSend's log of a one-way flow (${content.because}): it holds no round trips; \`testbed decode RECEIVER_LOG\` gives the flow's one-way delays`);
  }
  if (stamps.stampInversions > 0) {
    throw new LogFormatError(
      receiverLog,
      `is ITGSend's round-trip log, not the receiver's (its send stamps run backwards ${stamps.stampInversions} time(s) between consecutive packets: D-ITG B15, which a receiver's log never shows); swap the two; ${PAIR_HINT}`,
    );
  }
  if (stamps.records > 0 && stamps.echoless === stamps.records) {
    throw new LogFormatError(receiverLog, `is ITGSend's log of a one-way flow (every record's receive time is its send time), not a receiver's log; ${PAIR_HINT}`);
  }
  const negative = decoded.total.negativeDelays;
  if (negative > 0) {
    throw new LogFormatError(
      senderLog,
      `paired with ${receiverLog}, ${negative} round trip(s) come out negative (a send stamp after its echo's arrival, both on the sender's clock): the two logs are swapped, or not of one flow; ${PAIR_HINT}`,
    );
  }
}

/**
 * Decodes an rttm sender log with exact round trips from its receiver log: the paired view first, then any other
 * views asked for (the meter's own: "sender", "logged") in the same pass. Refuses one log given twice, two logs in
 * each other's place (by what their records show, LogContent), and two logs that share no record.
 */
export async function decodePairedLogs(
  senderLog: string,
  receiverLog: string,
  otherViews: readonly DelayView[] = [],
  options: { sameClock?: boolean } = {},
): Promise<PairedLog> {
  refuseSameLog(senderLog, receiverLog);
  const order = arrivalOrder(senderLog, receiverLog);
  if (options.sameClock && echoesFirst(order)) {
    throw new LogFormatError(
      senderLog,
      `is the receiver's log and ${receiverLog} ITGSend's: on one clock, each of the ${order.compared} packets compared reached ${senderLog} before its echo was back in ${receiverLog}, and a packet reaches the receiver first; swap the two; ${PAIR_HINT}`,
    );
  }
  const stamps = new LogStamps(receiverLog, "tx");
  try {
    const decoded = await decodeLogFile(senderLog, { views: ["paired", ...otherViews.filter((v) => v !== "paired")], stamps });
    refuseMisplaced(decoded, senderLog, receiverLog, stamps);
    const { packets, excludedRecords } = decoded.total;
    if (packets > 0 && excludedRecords === packets) {
      throw new LogFormatError(
        senderLog,
        `no record pairs with a record of ${receiverLog} (${stamps.records} records read) by flow id and sequence number; accepted: the sender log (-l) and the receiver log (-x) of the same flow`,
      );
    }
    return { ...decoded, receiverLog, arrivalOrder: order };
  } finally {
    await stamps.close();
  }
}

/** What the campaign decodes of one flow (Backend.collectLog's files). */
export interface FlowLogFiles {
  /** The measured log: the sender's for a round-trip flow, the receiver's for a one-way flow. */
  readonly log: string;
  /** Round-trip flows: the receiver's log of the same flow, for exact round trips. */
  readonly receiverLog?: string;
  /** With receiverLog: also read it alone, one-way delays sender -> receiver (valid when both ends share one clock). */
  readonly oneWay?: boolean;
  /** The hop probes' stamps of the flow: cut it into sections too (measure/hops.ts). */
  readonly hops?: HopCapture;
}

/** One flow's summary: exact round trips with the meter's own views when paired, the log as logged otherwise. */
export interface DecodedFlow extends DecodedLog {
  readonly receiverLog?: string;
  /** The receiver log read alone (FlowLogFiles.oneWay). */
  readonly oneWay?: DecodedView;
  /** The flow cut into sections (FlowLogFiles.hops). */
  readonly hops?: RunHops;
}

export async function decodeFlow(files: FlowLogFiles): Promise<DecodedFlow> {
  if (files.receiverLog === undefined) return decodeLogFile(files.log);
  const paired = await decodePairedLogs(files.log, files.receiverLog, ["sender", "logged"], { sameClock: files.oneWay === true });
  if (!files.oneWay) return paired;
  const { flows, total, histogram } = await decodeLogFile(files.receiverLog);
  return { ...paired, oneWay: { flows, total, histogram } };
}
