// Exact round trips from crafted log pairs: a sender log written the way ITGSend 2.8.1's rttm meter writes it
// (D-ITG B15: the echo's send seconds with the newest packet's microseconds), the receiver log with the true send
// stamps; the three readings (paired, sender, logged) against an independent computation, across midnight, with
// loss, reordering and a window overrun; and the errors for logs that do not belong together.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeLogFile, RTTM_SIGNATURE_S, type LogRecord } from "../../measure/ditg-log.js";
import { decodeFlow, decodePairedLogs, LogStamps, PAIRING_WINDOW, StampWindow } from "../../measure/ditg-pairing.js";
import { expectSameAsItgDec, runItgDec, writeLog } from "./decode-itgdec.js";
import { craftedPackets as packetsOf, craftedRttmLogs as flowLogs, expectDelaysOf, independentRoundTrips, loggedDelays } from "./round-trips.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "decode-paired-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function writePair(name: string, logs: { sender: LogRecord[]; receiver: LogRecord[] }) {
  const senderLog = join(dir, `${name}.slog`);
  const receiverLog = join(dir, `${name}.rlog`);
  await writeLog(senderLog, logs.sender);
  await writeLog(receiverLog, logs.receiver);
  return { senderLog, receiverLog };
}

const T0_US = Date.UTC(2026, 4, 5, 10, 0, 0) * 1000;

describe("paired decoding of a stalled flow (B15 certain)", () => {
  // 3000 packets at 1000 pkt/s; the receiver stalls 40 ms across the second boundary at T0 + 2 s.
  const packets = packetsOf(3000, T0_US + 400, 1000, { atUs: T0_US + 1_980_000, stallUs: 40_000 });
  let logs: { senderLog: string; receiverLog: string };
  beforeAll(async () => {
    logs = await writePair("stall", flowLogs(packets, { spacingUs: 1000 }));
  });

  it("the crafted sender log shows the bug: records of a second or more, and the meter's numbers are ITGDec's", async () => {
    const logged = await loggedDelays(logs.senderLog);
    expect(logged.filter((d) => d >= 1e6).length).toBeGreaterThan(10);
    const meter = await decodeLogFile(logs.senderLog, { views: ["logged"] });
    expectSameAsItgDec(meter, await runItgDec(logs.senderLog));
    expect(meter.total.delayMaxS).toBeGreaterThan(1);
  });

  it("the paired decode equals the independent pairing of the two logs, to the microsecond", async () => {
    const truth = await independentRoundTrips(logs.senderLog, logs.receiverLog);
    expect(truth.unpaired).toBe(0);
    // The independent pairing recovers the round trips the logs were made from.
    expect([...truth.paired].sort((a, b) => a - b)).toEqual(packets.map((p) => p.rttUs).sort((a, b) => a - b));
    const paired = await decodePairedLogs(logs.senderLog, logs.receiverLog);
    expect(paired.total.delaySource).toBe("paired");
    expect([paired.total.packets, paired.total.excludedRecords]).toEqual([3000, 0]);
    expectDelaysOf(paired.total, truth.paired, "paired total");
    expectDelaysOf(paired.flows[0]!, truth.paired, "paired flow");
    expect(paired.total.delayMaxS).toBeLessThan(0.05);
  });

  it("the sender log alone leaves out every record of 0.5 s or more, and only those", async () => {
    const logged = await loggedDelays(logs.senderLog);
    const kept = logged.filter((d) => d < RTTM_SIGNATURE_S * 1e6);
    const sender = await decodeLogFile(logs.senderLog, { views: ["sender"] });
    expect(sender.total.delaySource).toBe("sender");
    expect(sender.total.excludedRecords).toBe(logged.length - kept.length);
    expect(sender.flows[0]!.excludedRecords).toBe(logged.length - kept.length);
    // Packets, bytes and rates still count every record.
    expect(sender.total.packets).toBe(3000);
    expectDelaysOf(sender.total, kept, "sender");
    expect(sender.total.delayMaxS).toBeLessThan(RTTM_SIGNATURE_S);
  });

  it("one pass gives all three readings, each equal to its own decode", async () => {
    const all = await decodePairedLogs(logs.senderLog, logs.receiverLog, ["sender", "logged"]);
    const { flows, total, histogram } = await decodeLogFile(logs.senderLog, { views: ["sender"] });
    expect(all.views?.sender).toEqual({ flows, total, histogram });
    expect(all.views?.logged?.total).toEqual((await decodeLogFile(logs.senderLog)).total);
    expect(all.views?.paired?.total).toEqual(all.total);
    const flow = await decodeFlow({ log: logs.senderLog, receiverLog: logs.receiverLog, oneWay: true });
    expect(flow.total).toEqual(all.total);
    expect(flow.oneWay?.total).toEqual((await decodeLogFile(logs.receiverLog)).total);
    expectDelaysOf(flow.oneWay!.total, await loggedDelays(logs.receiverLog), "one-way");
  });
});

describe("midnight UTC", () => {
  // 1000 packets from 0.6 s before midnight; echoes stalled 30 ms across midnight itself.
  const midnight = Date.UTC(2026, 0, 1) * 1000;
  const packets = packetsOf(1000, midnight - 600_000, 1000, { atUs: midnight - 20_000, stallUs: 30_000 });

  it("every reading comes out right across 00:00:00 UTC", async () => {
    const crafted = flowLogs(packets, { spacingUs: 1000 });
    expect(crafted.sender.some((r) => r.tx.hour === 23 && r.rx.hour === 0)).toBe(true);
    const logs = await writePair("midnight", crafted);
    const truth = await independentRoundTrips(logs.senderLog, logs.receiverLog);
    const all = await decodePairedLogs(logs.senderLog, logs.receiverLog, ["sender", "logged"]);
    expectDelaysOf(all.total, truth.paired, "paired across midnight");
    expect(all.total.delayMaxS).toBeLessThan(0.04);
    // The meter's records across midnight read about +1 s (not -86399 s): the signature, left out alone.
    const logged = truth.logged;
    expect(logged.some((d) => d >= 1e6)).toBe(true);
    expect(Math.min(...logged)).toBeGreaterThan(0);
    expectDelaysOf(all.views!.logged!.total, logged, "logged across midnight");
    expect(all.views!.sender!.total.excludedRecords).toBe(logged.filter((d) => d >= 500_000).length);
    expectDelaysOf(all.views!.sender!.total, logged.filter((d) => d < 500_000), "sender across midnight");
    // Duration and rates on receive times unwrapped across midnight.
    expect(all.total.durationS).toBeGreaterThan(0.99);
    expect(all.total.durationS).toBeLessThan(1.05);
    const oneWay = await decodeLogFile(logs.receiverLog);
    expect(oneWay.total.delayMinS).toBeGreaterThan(0);
    expect(oneWay.total.delayMaxS).toBeLessThan(0.04);
  });
});

describe("pairing: loss, reordering, the window, and logs that do not belong together", () => {
  it("lost packets, lost echoes and reordering: echoes pair, sender records without a receiver record are counted", async () => {
    // Every 50th packet is held 3 ms on the way out: both logs have it after the next 15.
    const packets = packetsOf(5000, T0_US, 200).map((p) => (p.seq % 50 === 7 ? { ...p, forwardUs: p.forwardUs + 3000, rttUs: p.rttUs + 3000 } : p));
    const crafted = flowLogs(packets, { spacingUs: 200, lostEchoes: new Set([10, 11, 4000]) });
    // The receiver lost 300 and 301 (no echo either), and its log misses 900 (cut): that echo is unpaired.
    const receiver = crafted.receiver.filter((r) => r.seqNum !== 900 && r.seqNum !== 300 && r.seqNum !== 301);
    const sender = crafted.sender.filter((r) => r.seqNum !== 300 && r.seqNum !== 301);
    const logs = await writePair("loss", { sender, receiver });
    const truth = await independentRoundTrips(logs.senderLog, logs.receiverLog);
    expect(truth.unpaired).toBe(1);
    const paired = await decodePairedLogs(logs.senderLog, logs.receiverLog);
    expect([paired.total.packets, paired.total.excludedRecords, paired.flows[0]!.excludedRecords]).toEqual([sender.length, 1, 1]);
    expectDelaysOf(paired.total, truth.paired, "paired with loss");
  });

  it("a receiver log running more than the window ahead leaves the overrun records unpaired, never mismatched", () => {
    const window = new StampWindow(8);
    const f = window.flow(1, 1, 2);
    for (let seq = 1; seq <= 20; seq++) window.put(f, seq, seq / 10);
    expect(window.get(1, 12)).toBeNaN();
    expect(window.get(1, 13)).toBeCloseTo(1.3, 12);
    expect(window.get(1, 20)).toBeCloseTo(2, 12);
    // A straggler a whole window late does not evict a newer stamp in its slot.
    window.put(f, 4, 99);
    expect(window.get(1, 4)).toBeNaN();
    expect(window.get(1, 12 + 0)).toBeNaN();
    expect(window.get(1, 20)).toBeCloseTo(2, 12);
    expect(window.get(2, 20)).toBeNaN();
    expect(() => new StampWindow(12)).toThrow(/power of two/);
    expect(PAIRING_WINDOW & (PAIRING_WINDOW - 1)).toBe(0);
  });

  it("reads the receiver log only as far as asked, whatever its length: the window, not the log, bounds memory", async () => {
    const packets = packetsOf(4 * PAIRING_WINDOW, T0_US, 100);
    const logs = await writePair("long", flowLogs(packets, { spacingUs: 100 }));
    const stamps = new LogStamps(logs.receiverLog);
    try {
      expect(stamps.sendStampOf(1, 10)).toBeGreaterThan(0);
      expect(stamps.records).toBeLessThan(20);
      expect(stamps.sendStampOf(1, 3 * PAIRING_WINDOW)).toBeGreaterThan(0);
      expect(stamps.records).toBeLessThan(3 * PAIRING_WINDOW + 20);
      // An old sequence number has left the window: not guessed.
      expect(stamps.sendStampOf(1, 10)).toBeNaN();
      expect(stamps.sendStampOf(7, 1)).toBeNaN();
      expect(stamps.records).toBe(4 * PAIRING_WINDOW);
    } finally {
      await stamps.close();
    }
  });

  it("refuses a receiver log with two flows under one flow id, and two logs that share no record", async () => {
    const a = flowLogs(packetsOf(100, T0_US, 1000), { spacingUs: 1000 });
    const other = flowLogs(packetsOf(100, T0_US, 1000), { spacingUs: 1000 }).receiver.map((r) => ({ ...r, srcPort: 40001, seqNum: r.seqNum + 100 }));
    const mixed = await writePair("mixed", { sender: a.sender, receiver: [...other.slice(0, 10), ...a.receiver] });
    await expect(decodePairedLogs(mixed.senderLog, mixed.receiverLog)).rejects.toThrow(
      `${mixed.receiverLog}: holds two flows with flow id 1 (ports 40001->31000 and 40000->31000)`,
    );
    const b = flowLogs(packetsOf(100, T0_US, 1000), { spacingUs: 1000, flowId: 2 });
    const strangers = await writePair("strangers", { sender: a.sender, receiver: b.receiver });
    await expect(decodePairedLogs(strangers.senderLog, strangers.receiverLog)).rejects.toThrow(
      `${strangers.senderLog}: no record pairs with a record of ${strangers.receiverLog} (100 records read)`,
    );
    await expect(decodePairedLogs(strangers.senderLog, join(dir, "absent.rlog"))).rejects.toThrow(/absent\.rlog: cannot be read \(ENOENT\)/);
  });
});
