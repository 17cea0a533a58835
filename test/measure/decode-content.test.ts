// What wrote a D-ITG log, told from its records alone, and what is not a D-ITG log at all: crafted logs of each
// kind (a round-trip flow written as ITGSend 2.8.1 writes it, D-ITG B15 included; its receiver's log; ITGSend's own
// log of a one-way flow), one-way delays longer than the B15 signature, files that are no logs, and pairs of logs
// that are not a flow's sender and receiver logs. Real D-ITG logs of each kind: ditg-commands-loopback.test.ts.
import { copyFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkDitgLog, decodeLogAlone, decodeLogFile, LogFormatError, RECORD_BYTES, timeOfDay, type LogRecord } from "../../measure/ditg-log.js";
import { decodePairedLogs, echoesFirst } from "../../measure/ditg-pairing.js";
import { writeLog } from "./decode-itgdec.js";
import { craftedPackets, craftedRttmLogs } from "./round-trips.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "decode-content-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const T0_US = Date.UTC(2026, 4, 1, 8) * 1000;
const SENDER = "198.18.0.10";
const RECEIVER = "198.18.1.20";

async function logOf(name: string, records: LogRecord[]): Promise<string> {
  const file = join(dir, name);
  await writeLog(file, records);
  return file;
}

/** A receiver's log of `n` packets at 1000 pkt/s, in arrival order; `delayUs(seq)` is each packet's one-way delay. */
function oneWayRecords(n: number, delayUs: (seq: number) => number, destAddress = RECEIVER): LogRecord[] {
  const arrival = (r: LogRecord) => r.rx.hour * 3600 + r.rx.minute * 60 + r.rx.second;
  return Array.from({ length: n }, (_, i) => {
    const seq = i + 1;
    const tx = T0_US + seq * 1000 + (seq % 7);
    return { flowId: 1, seqNum: seq, srcAddress: SENDER, srcPort: 40000, destAddress, destPort: 31000, tx: timeOfDay(tx), rx: timeOfDay(tx + delayUs(seq)), size: 512 };
  }).sort((a, b) => arrival(a) - arrival(b));
}

/** The two logs of an rttm flow whose receiver stalled 80 ms across a second boundary (B15 certain), the receiver bound to its own address. */
function stalledPair() {
  const crafted = craftedRttmLogs(craftedPackets(3000, T0_US + 100, 1000, { atUs: T0_US + 960_000, stallUs: 80_000 }), { spacingUs: 1000 });
  return { sender: crafted.sender, receiver: crafted.receiver.map((r) => ({ ...r, destAddress: RECEIVER })) };
}

describe("what wrote a log, from its records", () => {
  it("ITGSend's round-trip log with B15's mis-stamps is a round-trip log; its receiver's log, one-way", async () => {
    const pair = stalledPair();
    const sender = await decodeLogFile(await logOf("stall.slog", pair.sender));
    expect(sender.content).toMatchObject({ kind: "round-trip", because: expect.stringMatching(/send stamps run backwards \d+ time/) });
    // The receiver's own address as destination: told by the packets that left while the previous one was on its way.
    const receiver = await decodeLogFile(await logOf("stall.rlog", pair.receiver));
    expect(receiver.content).toMatchObject({ kind: "one-way", because: expect.stringMatching(/^\d+ packet\(s\) left more than 10 ms before the previous one arrived/) });
    // Bound to every address (ITGRecv -a 0.0.0.0, the lab's and a NodePort's receiver): told by the destination too.
    const wildcard = await decodeLogFile(await logOf("wildcard.rlog", pair.receiver.map((r) => ({ ...r, destAddress: "0.0.0.0" }))));
    expect(wildcard.content).toMatchObject({ kind: "one-way", because: expect.stringContaining("its destination is 0.0.0.0") });
  });

  it("ITGSend's own log of a one-way flow (receive time = send time) is told apart", async () => {
    const records = oneWayRecords(500, () => 0);
    const log = await decodeLogFile(await logOf("owdm.slog", records));
    expect(log.content?.kind).toBe("sender-one-way");
  });

  it("a round-trip log whose echoes all came back before the next packet left does not show what wrote it", async () => {
    const crafted = craftedRttmLogs(craftedPackets(2000, T0_US, 1000), { spacingUs: 1000 });
    const sender = await decodeLogFile(await logOf("quick.slog", crafted.sender));
    expect(sender.content?.kind).toBe("unknown");
    expect(sender.content?.longRecords).toBe(0);
  });

  it("records far apart in the log still compare: a packet held 0.7 s is logged after hundreds of later ones", async () => {
    const log = await decodeLogFile(await logOf("held.rlog", oneWayRecords(3000, (seq) => (seq > 1000 && seq <= 1200 ? 700_000 : 120))));
    expect(log.content).toMatchObject({ kind: "one-way", longRecords: 200 });
  });
});

describe("a log read alone", () => {
  it("one-way delays of 0.5 s or more are kept: the B15 exclusion is for round trips only", async () => {
    const file = await logOf("slow.rlog", oneWayRecords(3000, (seq) => (seq > 1000 && seq <= 1200 ? 700_000 : 120)));
    const { log, view } = await decodeLogAlone(file);
    expect(view).toBe("logged");
    expect([log.total.packets, log.total.excludedRecords]).toEqual([3000, 0]);
    expect(log.total.delayMaxS).toBeCloseTo(0.7, 6);
    expect(log.total.p99S).toBeCloseTo(0.7, 3);
  });

  it("ITGSend's round-trip log leaves out the records of B15's signature, and only those", async () => {
    const file = await logOf("alone.slog", stalledPair().sender);
    const { log, view } = await decodeLogAlone(file);
    const logged = await decodeLogFile(file);
    expect(view).toBe("sender");
    expect(log.total.excludedRecords).toBe(logged.content!.longRecords);
    expect(log.total.excludedRecords).toBeGreaterThan(5);
    expect(log.total.delayMaxS).toBeLessThan(0.5);
  });
});

describe("what is not a D-ITG log", () => {
  const refusal = async (file: string) => {
    try {
      checkDitgLog(await decodeLogFile(file));
    } catch (err) {
      expect(err).toBeInstanceOf(LogFormatError);
      return (err as Error).message;
    }
    return "accepted";
  };

  it("an empty file, random bytes, out-of-range and NaN time fields, zeros: refused, naming the file and what is wrong", async () => {
    const empty = join(dir, "empty.log");
    await writeFile(empty, "");
    expect(await refusal(empty)).toBe(`${empty}: holds no record (0 bytes); accepted: a D-ITG binary log with records (ITGSend/ITGRecv -l or -x)`);

    const random = join(dir, "random.log");
    await writeFile(random, Buffer.from(Array.from({ length: 100 * RECORD_BYTES }, (_, i) => (Math.imul(i + 1, 2654435761) >>> 13) & 255)));
    expect(await refusal(random)).toMatch(/random\.log: 100 of 100 records have time fields a D-ITG log cannot hold .* the first at record 1 \(byte 0\): not a D-ITG binary log/);

    const good = oneWayRecords(100, () => 120);
    const hours = await logOf("hours.log", good.map((r, i) => (i >= 40 ? { ...r, tx: { ...r.tx, hour: 99 } } : r)));
    expect(await refusal(hours)).toMatch(/hours\.log: 60 of 100 records have time fields .* the first at record 41 \(byte 5760\)/);

    const nan = await logOf("nan.log", good.map((r, i) => (i === 7 ? { ...r, rx: { ...r.rx, second: NaN } } : r)));
    expect(await refusal(nan)).toMatch(/nan\.log: 1 of 100 records .* the first at record 8 /);

    const zeros = join(dir, "zeros.log");
    await writeFile(zeros, Buffer.alloc(10 * RECORD_BYTES));
    expect(await refusal(zeros)).toBe(`${zeros}: flow 0: its source address "" is not an IP address: not a D-ITG binary log, or a corrupt one`);

    expect(await refusal(await logOf("fine.log", good))).toBe("accepted");
    expect(await refusal(await logOf("scoped.log", good.map((r) => ({ ...r, srcAddress: "fe80::1%tb-dc", destAddress: "fe80::2" }))))).toBe("accepted");
  });
});

describe("two logs that are not one flow's sender and receiver logs", () => {
  let sender: string;
  let receiver: string;
  beforeAll(async () => {
    const pair = stalledPair();
    sender = await logOf("pair.slog", pair.sender);
    receiver = await logOf("pair.rlog", pair.receiver);
  });

  it("the right pair decodes", async () => {
    const paired = await decodePairedLogs(sender, receiver);
    expect([paired.total.packets, paired.total.excludedRecords, paired.total.negativeDelays]).toEqual([3000, 0, 0]);
  });

  it("the same file twice, or a copy of it: refused, naming the second", async () => {
    await expect(decodePairedLogs(sender, sender)).rejects.toThrow(`${sender}: is the same file as the sender log ${sender}`);
    const copy = join(dir, "copy.slog");
    await copyFile(sender, copy);
    await expect(decodePairedLogs(sender, copy)).rejects.toThrow(`${copy}: holds the same records as the sender log ${sender} (its first 64)`);
  });

  it("swapped, of a flow whose records cannot tell the two logs apart: refused on one clock by the packets' arrival order, flagged otherwise", async () => {
    // Echoes back long before the next packet leaves: no B15 stamps in ITGSend's log, the two logs alike record by record.
    const clean = craftedRttmLogs(craftedPackets(400, T0_US + 100, 5000), { spacingUs: 5000 });
    const [s, r] = [await logOf("clean.slog", clean.sender), await logOf("clean.rlog", clean.receiver.map((x) => ({ ...x, destAddress: RECEIVER })))];
    const right = await decodePairedLogs(s, r, [], { sameClock: true });
    expect(right.arrivalOrder).toEqual({ compared: 400, echoFirst: 0 });
    const swapped = await decodePairedLogs(r, s);
    expect(swapped.arrivalOrder).toEqual({ compared: 400, echoFirst: 400 });
    expect(echoesFirst(swapped.arrivalOrder)).toBe(true);
    await expect(decodePairedLogs(r, s, [], { sameClock: true })).rejects.toThrow(
      `${r}: is the receiver's log and ${s} ITGSend's: on one clock, each of the 400 packets compared reached ${r} before its echo was back in ${s}`,
    );
  });

  it("swapped: the receiver's log is named in the sender's place", async () => {
    await expect(decodePairedLogs(receiver, sender)).rejects.toThrow(`${receiver}: is a receiver's log, not ITGSend's round-trip log`);
  });

  it("ITGSend's round-trip log in the receiver's place is named by its B15 stamps, whatever the first log is", async () => {
    // A second round-trip log of the same flow in the sender's place: the pair is refused for the receiver-side one.
    const other = await logOf("other.slog", stalledPair().sender.map((r) => ({ ...r, rx: { ...r.rx, second: Math.max(0, r.rx.second - 5e-6) } })));
    await expect(decodePairedLogs(other, sender)).rejects.toThrow(`${sender}: is ITGSend's round-trip log, not the receiver's (its send stamps run backwards`);
  });

  it("ITGSend's log of a one-way flow in either place, and round trips that come out negative: refused", async () => {
    const owdm = await logOf("pair-owdm.slog", oneWayRecords(500, () => 0));
    const owdmReceiver = await logOf("pair-owdm.rlog", oneWayRecords(500, () => 90));
    await expect(decodePairedLogs(owdm, owdmReceiver)).rejects.toThrow(`${owdm}: is ITGSend's log of a one-way flow (every record's receive time is its send time): it holds no round trips`);
    await expect(decodePairedLogs(sender, owdm)).rejects.toThrow(`${owdm}: is ITGSend's log of a one-way flow (every record's receive time is its send time), not a receiver's log`);
    // A receiver log whose send stamps are a second later than the echoes came back: not this flow's.
    const late = await logOf("late.rlog", stalledPair().receiver.map((r) => ({ ...r, tx: { ...r.tx, second: (r.tx.second + 1) % 60, minute: r.tx.minute + (r.tx.second + 1 >= 60 ? 1 : 0) } })));
    await expect(decodePairedLogs(sender, late)).rejects.toThrow(/round trip\(s\) come out negative .*: the two logs are swapped, or not of one flow/);
  });
});
