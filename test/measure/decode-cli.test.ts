// `testbed decode` as a user runs it: the whole command, its output on stdout and its errors and exit code.
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeLogFile, timeOfDay, type LogRecord } from "../../measure/ditg-log.js";
import { decodePairedLogs } from "../../measure/ditg-pairing.js";
import { writeLog } from "./decode-itgdec.js";
import { craftedPackets, craftedRttmLogs, expectDelaysOf, independentRoundTrips } from "./round-trips.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

function testbed(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, ["--import", "tsx", "cli/main.ts", ...args], { cwd: ROOT, maxBuffer: 16 << 20 }, (err, stdout, stderr) =>
      done({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const REQUIRED = ["packets", "bytes", "durationS", "delayMinS", "delayMaxS", "delayMeanS", "delayStdS", "jitterS", "bitrateKbps", "packetRate", "dropped", "p50S", "p90S", "p99S", "p999S"];

let dir: string;
let udp: string;
let twoFlows: string;
/** An rttm flow whose receiver stalled 30 ms across a second boundary: its sender log has B15's signature records. */
let rttm: { senderLog: string; receiverLog: string };

function records(flowId: number, srcPort: number, n: number, delayUs: (i: number) => number, missing: number[] = []): LogRecord[] {
  const t0 = Date.UTC(2026, 4, 1, 8) * 1000;
  return Array.from({ length: n }, (_, i) => i + 1)
    .filter((seq) => !missing.includes(seq))
    .map((seq) => ({
      flowId,
      seqNum: seq,
      srcAddress: "198.18.0.10",
      srcPort,
      destAddress: "0.0.0.0",
      destPort: 31000,
      tx: timeOfDay(t0 + seq * 1000),
      rx: timeOfDay(t0 + seq * 1000 + delayUs(seq)),
      size: 512,
    }));
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "decode-cli-"));
  udp = join(dir, "udp.rlog");
  twoFlows = join(dir, "two.rlog");
  await writeLog(udp, records(1, 40000, 1000, (s) => 100 + (s % 50), [10, 11, 12]));
  await writeLog(twoFlows, [...records(1, 40000, 300, () => 80), ...records(2, 40001, 200, (s) => 60 + s)]);
  const t0 = Date.UTC(2026, 4, 1, 8) * 1000;
  const crafted = craftedRttmLogs(craftedPackets(2000, t0 + 100, 1000, { atUs: t0 + 990_000, stallUs: 30_000 }), { spacingUs: 1000 });
  rttm = { senderLog: join(dir, "rtt.slog"), receiverLog: join(dir, "rtt.rlog") };
  await writeLog(rttm.senderLog, crafted.sender);
  await writeLog(rttm.receiverLog, crafted.receiver);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("testbed decode", () => {
  it("--json prints one object per log and line with the contract's fields, equal to the decoder's", async () => {
    const r = await testbed("decode", udp, twoFlows, "--json");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(2);
    const [first, second] = lines.map((l) => JSON.parse(l));
    for (const obj of [first, second]) {
      expect(Object.keys(obj)).toEqual(expect.arrayContaining(["file", "flows", "total"]));
      for (const summary of [obj.total, ...obj.flows]) {
        for (const key of REQUIRED) expect(typeof summary[key], `${obj.file} ${key}`).toBe("number");
      }
    }
    expect(first.file).toBe(udp);
    expect(first.total.dropped).toBe(3);
    expect(second.flows).toHaveLength(2);
    expect(second.total.packets).toBe(500);
    expect(first).toEqual(JSON.parse(JSON.stringify(await decodeLogFile(udp))));
  });

  it("without --json prints ITGDec's layout per flow and TOTAL, plus the percentiles", async () => {
    const r = await testbed("decode", twoFlows);
    expect(r.code).toBe(0);
    expect(r.stdout.match(/^Flow number: \d+$/gm)).toEqual(["Flow number: 1", "Flow number: 2"]);
    expect(r.stdout).toContain("From 198.18.0.10:40001\nTo    0.0.0.0:31000");
    expect(r.stdout).toMatch(/TOTAL RESULTS[\s\S]*Number of flows {10}= {13}2/);
    expect(r.stdout).toMatch(/^Total packets {12}= {11}500$/m);
    expect(r.stdout).toMatch(/^Delay p99\.9 {14}= +0\.\d{6} s$/m);
    expect(r.stdout).toMatch(/^Error lines {14}= {13}0$/m);
  });

  it("a missing file, a directory and a truncated log: errors naming each file, non-zero exit, nothing on stdout", async () => {
    const truncated = join(dir, "cut.rlog");
    await writeFile(truncated, Buffer.alloc(144 * 2 + 50));
    const sub = join(dir, "sub");
    await mkdir(sub);
    const missing = join(dir, "nope.rlog");
    const r = await testbed("decode", udp, missing, sub, truncated, "--json");
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("3 of 4 log(s) cannot be decoded");
    expect(r.stderr).toContain(`${missing}: cannot be read (ENOENT)`);
    expect(r.stderr).toContain(`${sub}: is not a regular file`);
    expect(r.stderr).toContain(`${truncated}: is 338 bytes, not a whole number of 144-byte D-ITG records (2 records and 50 bytes)`);
  });

  it("--receiver-log: exact round trips in JSON (delaySource paired), equal to the independent pairing of the two logs", async () => {
    const r = await testbed("decode", rttm.senderLog, "--receiver-log", rttm.receiverLog, "--json");
    expect([r.code, r.stderr]).toEqual([0, ""]);
    const out = JSON.parse(r.stdout);
    expect(out).toEqual(JSON.parse(JSON.stringify(await decodePairedLogs(rttm.senderLog, rttm.receiverLog))));
    expect([out.file, out.receiverLog]).toEqual([rttm.senderLog, rttm.receiverLog]);
    for (const summary of [out.total, ...out.flows]) expect([summary.delaySource, summary.excludedRecords]).toEqual(["paired", 0]);
    const truth = await independentRoundTrips(rttm.senderLog, rttm.receiverLog);
    expectDelaysOf(out.total, truth.paired, "decode --receiver-log");
    const text = await testbed("decode", rttm.senderLog, "--receiver-log", rttm.receiverLog);
    expect(text.stdout).toContain(`Delays: exact round trips, receive times of ${rttm.senderLog} minus send stamps of ${rttm.receiverLog}`);
    expect(text.stdout).toMatch(/^Excluded records {9}= {13}0 \(no partner in the receiver log/m);
  });

  it("the sender log alone: signature records left out and counted (delaySource sender); --itgdec keeps them all", async () => {
    const truth = await independentRoundTrips(rttm.senderLog, rttm.receiverLog);
    const signature = truth.logged.filter((d) => d >= 500_000).length;
    expect(signature).toBeGreaterThan(5);
    const alone = JSON.parse((await testbed("decode", rttm.senderLog, "--json")).stdout);
    expect([alone.total.delaySource, alone.total.excludedRecords, alone.flows[0].excludedRecords]).toEqual(["sender", signature, signature]);
    expect(alone.total.packets).toBe(2000);
    expectDelaysOf(alone.total, truth.logged.filter((d) => d < 500_000), "decode alone");
    const text = (await testbed("decode", rttm.senderLog)).stdout;
    expect(text).toMatch(new RegExp(`^Excluded records {9}= +${signature} \\(round trip of 0\\.5 s or more, D-ITG B15's signature`, "m"));
    expect(text).toContain("Exact round trips: --receiver-log");
    const itgdec = JSON.parse((await testbed("decode", rttm.senderLog, "--itgdec", "--json")).stdout);
    expect(itgdec).toEqual(JSON.parse(JSON.stringify(await decodeLogFile(rttm.senderLog, { views: ["logged"] }))));
    expect([itgdec.total.delaySource, itgdec.total.excludedRecords]).toEqual(["sender", 0]);
    expect(itgdec.total.delayMaxS).toBeGreaterThan(1);
    expect((await testbed("decode", rttm.senderLog, "--itgdec")).stdout).not.toContain("Excluded records");
  });

  it("--receiver-log refuses two sender logs, --itgdec beside it, and an unreadable receiver log, before printing anything", async () => {
    const two = await testbed("decode", rttm.senderLog, udp, "--receiver-log", rttm.receiverLog);
    expect([two.code !== 0, two.stdout]).toEqual([true, ""]);
    expect(two.stderr).toContain("--receiver-log pairs one sender log with it, 2 logs were given; accepted: SENDER_LOG --receiver-log RECEIVER_LOG");
    const both = await testbed("decode", rttm.senderLog, "--receiver-log", rttm.receiverLog, "--itgdec");
    expect(both.stderr).toContain("--itgdec reads a log as ITGDec does and takes no --receiver-log");
    const missing = join(dir, "none.rlog");
    const gone = await testbed("decode", rttm.senderLog, "--receiver-log", missing, "--json");
    expect([gone.code !== 0, gone.stdout]).toEqual([true, ""]);
    expect(gone.stderr).toContain(`${missing}: cannot be read (ENOENT)`);
  });

  it("says what wrote each log, and keeps a one-way log's delays of 0.5 s or more", async () => {
    const slow = join(dir, "slow.rlog");
    await writeLog(slow, records(1, 40000, 2000, (s) => (s > 500 && s <= 700 ? 700_000 : 100)).sort((a, b) => a.rx.second - b.rx.second + 60 * (a.rx.minute - b.rx.minute)));
    const text = await testbed("decode", slow);
    expect([text.code, text.stderr]).toEqual([0, ""]);
    expect(text.stdout).toContain("Log kind: one-way delays: a receiver's log (ITGRecv -l, or ITGSend -x) (its destination is 0.0.0.0");
    expect(text.stdout).toContain("Delays: every record as logged");
    expect(text.stdout).not.toContain("Excluded records");
    const json = JSON.parse((await testbed("decode", slow, "--json")).stdout);
    expect([json.content.kind, json.total.packets, json.total.excludedRecords]).toEqual(["one-way", 2000, 0]);
    expect(json.total.delayMaxS).toBeCloseTo(0.7, 6);
    const sender = await testbed("decode", rttm.senderLog);
    expect(sender.stdout).toContain("Log kind: round trips: ITGSend's log of a round-trip flow (-m rttm -l) (send stamps run backwards");
  });

  it("what is not a D-ITG log, and pairs that are not a flow's two logs: refused, naming the file and what is wrong, nothing on stdout", async () => {
    const empty = join(dir, "empty.log");
    await writeFile(empty, "");
    const random = join(dir, "random.log");
    await writeFile(random, Buffer.from(Array.from({ length: 144 * 100 }, (_, i) => (Math.imul(i + 1, 2654435761) >>> 13) & 255)));
    const nonsense = join(dir, "nonsense.log");
    await writeLog(nonsense, records(1, 40000, 100, () => 100).map((r) => ({ ...r, rx: { ...r.rx, hour: 31 } })));
    const bad = await testbed("decode", udp, empty, random, nonsense);
    expect([bad.code, bad.stdout]).toEqual([1, ""]);
    expect(bad.stderr).toContain("decode: 3 of 4 log(s) cannot be decoded:");
    expect(bad.stderr).toContain(`${empty}: holds no record (0 bytes)`);
    expect(bad.stderr).toContain(`${random}: 100 of 100 records have time fields a D-ITG log cannot hold`);
    expect(bad.stderr).toContain(`${nonsense}: 100 of 100 records have time fields a D-ITG log cannot hold (hour above 24`);

    const cases: [string[], string][] = [
      [[rttm.senderLog, "--receiver-log", rttm.senderLog], `${rttm.senderLog}: is the same file as the sender log ${rttm.senderLog}`],
      [[rttm.receiverLog, "--receiver-log", rttm.senderLog], `${rttm.receiverLog}: is a receiver's log, not ITGSend's round-trip log (its destination is 0.0.0.0`],
      [[udp, "--receiver-log", rttm.receiverLog], `${udp}: is a receiver's log, not ITGSend's round-trip log`],
    ];
    for (const [args, message] of cases) {
      const r = await testbed("decode", ...args);
      expect([r.code, r.stdout], args.join(" ")).toEqual([1, ""]);
      expect(r.stderr, args.join(" ")).toContain(message);
    }
  });

  it("without a log it says what is missing and exits non-zero", async () => {
    const r = await testbed("decode");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/missing required argument 'log'/);
  });
});
