// The stack's `measurement` output from the two commands' stdout: the runs' blocks and the pairing's
// decoded logs, judged by the campaign's rules. On recorded real runs (infra/fixtures) and on
// synthetic output whose decoded logs come from the real decoder on written D-ITG logs.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FAMILIES } from "../../scenario/schema.js";
import { timeOfDay, type LogRecord } from "../../measure/ditg-log.js";
import {
  acrossRuns,
  MeasurementOutputError,
  measurementSummary,
  OUTPUT_HEADER,
  PAIRING_HEADER,
  parseMeasurementOutput,
  parsePairingOutput,
  type MeasurementIdentity,
} from "../../infra/measurement.js";
import { decodeRunLogs, type CompactDecodedLog } from "../../infra/measurement-decode.js";
import { fixturePath, PROFILES } from "../../scripts/record-measurement-fixture.js";
import { writeLog } from "../measure/decode-itgdec.js";

const work = fs.mkdtempSync(path.join(os.tmpdir(), "measurement-output-"));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

const FINISHED = ["ITGSend version 2.8.1 (r1023)", "Started sending packets of flow ID: 1", "Finished sending packets of flow ID: 1"];

/**
 * The two logs of an rttm flow of n packets: the sender's with the echo times, the receiver's with the
 * send stamps it logged (`lost` sequence numbers never reached it). Round trips: roundTripUs each.
 */
async function rttmLogs(name: string, n: number, roundTripUs: number, lost: readonly number[] = []): Promise<{ sender: string; receiver: string }> {
  const start = Date.UTC(2025, 2, 1, 10, 0, 0) * 1000;
  const record = (i: number, tx: number, rx: number): LogRecord => ({
    flowId: 1, seqNum: i + 1, srcAddress: "198.18.0.10", srcPort: 40000, destAddress: "198.18.1.21", destPort: 31000, tx: timeOfDay(tx), rx: timeOfDay(rx), size: 512,
  });
  const sender = path.join(work, `${name}.slog`);
  const receiver = path.join(work, `${name}.rlog`);
  // The sender's records carry B15's send time (here: off by a second); the pairing ignores it.
  await writeLog(sender, Array.from({ length: n }, (_, i) => record(i, start + i * 1000 - 1_000_000, start + i * 1000 + roundTripUs)));
  await writeLog(receiver, Array.from({ length: n }, (_, i) => i).filter((i) => !lost.includes(i + 1)).map((i) => record(i, start + i * 1000, start + i * 1000 + roundTripUs / 2)));
  return { sender, receiver };
}

const runsHeader = (runs: number) => `${OUTPUT_HEADER} runId=r1 profile=latency family=ipv4 runs=${runs} target=198.18.1.21`;
const runBlock = (run: number, records: number, said: readonly string[] = FINISHED) =>
  [`=== run ${run}`, `records=${records}`, `senderLog=/var/tmp/testbed-measurement/r1-${run}.slog`, `receiverLog=/var/lib/dataplane-testbed/ditg-logs/r1-${run}.rlog`, ...said.map((l) => `itgsend> ${l}`), `=== end run ${run}`].join("\n");
const pairingText = (blocks: readonly (CompactDecodedLog | string)[]) =>
  [`${PAIRING_HEADER} profile=latency family=ipv4 runs=${blocks.length}`, ...blocks.flatMap((b, i) => [`=== run ${i + 1}`, typeof b === "string" ? `failed ${b}` : `decoded ${JSON.stringify(b)}`, `=== end run ${i + 1}`]), ""].join("\n");

/** 1000 packets a run: 950 needed (MIN_RECORD_SHARE). */
const id: MeasurementIdentity = {
  measure: { profile: "latency", family: "ipv4", runs: 4, runId: "r1" },
  dataplane: "ebpf",
  services: 1000,
  expected: { records: 1000, minShare: 0.95, durationS: 1 },
};

describe("synthetic runs, decoded by the real pairing", () => {
  let fast: CompactDecodedLog;
  let slow: CompactDecodedLog;
  let gappy: CompactDecodedLog;
  beforeAll(async () => {
    const a = await rttmLogs("fast", 1000, 400);
    const b = await rttmLogs("slow", 1000, 600);
    const c = await rttmLogs("gappy", 1000, 500, [10, 20, 30]);
    fast = await decodeRunLogs(a.sender, a.receiver);
    slow = await decodeRunLogs(b.sender, b.receiver);
    gappy = await decodeRunLogs(c.sender, c.receiver);
  });

  const runs = () =>
    [
      runsHeader(4),
      runBlock(1, 1000),
      runBlock(2, 1000, ["Error on bind to receiver side", ...FINISHED]),
      runBlock(3, 1000),
      runBlock(4, 1000),
      "",
    ].join("\n");

  it("takes the figures from the paired logs: exact round trips, not the sender log's send times (B15)", () => {
    const summary = measurementSummary(runs(), pairingText([fast, fast, slow, "fetching worker:/x failed: scp: Connection closed"]), id)!;
    expect(summary.runs[0]).toMatchObject({ run: 1, ok: true, records: 1000, packets: 1000, bytes: 512_000, delaySource: "paired", excludedRecords: 0 });
    expect(summary.runs[0]!.delayMeanS).toBeCloseTo(0.0004, 9);
    expect(summary.runs[0]!.delayMaxS).toBeCloseTo(0.0004, 9);
    expect(summary.runs[0]!.p99S).toBeCloseTo(0.0004, 5);
    expect("reason" in summary.runs[0]!).toBe(false);
  });

  it("judges each run by the campaign's rules: ITGSend's own error fails a run whose logs decoded", () => {
    const summary = measurementSummary(runs(), pairingText([fast, fast, slow, "fetching worker:/x failed: scp: Connection closed"]), id)!;
    expect(summary.runs[1]).toMatchObject({ ok: false, reason: "ITGSend reported an error: Error on bind to receiver side", packets: 1000 });
    expect(summary.runs[3]).toMatchObject({ ok: false, reason: "fetching worker:/x failed: scp: Connection closed", packets: null, delaySource: null });
    expect(summary).toMatchObject({ runId: "r1", profile: "latency", family: "ipv4", dataplane: "ebpf", services: 1000 });
    expect(summary.acrossRuns).toMatchObject({ metric: "delayMeanS", okRuns: 2 });
    expect(summary.acrossRuns.min).toBeCloseTo(0.0004, 9);
    expect(summary.acrossRuns.max).toBeCloseTo(0.0006, 9);
  });

  it("a round trip without its partner in the receiver log fails the run (a cut receiver log)", () => {
    const summary = measurementSummary([runsHeader(1), runBlock(1, 1000), ""].join("\n"), pairingText([gappy]), { ...id, measure: { ...id.measure, runs: 1 } })!;
    expect(summary.runs[0]).toMatchObject({ ok: false, excludedRecords: 3 });
    expect(summary.runs[0]!.reason).toMatch(/3 of 1000 round trips have no partner in the receiver log/);
  });

  it("too few records fail the run, with the counts", () => {
    const summary = measurementSummary(runs(), pairingText([fast, fast, slow, slow]), { ...id, expected: { records: 2000, minShare: 0.95, durationS: 2 } })!;
    expect(summary.runs[0]!.ok).toBe(false);
    expect(summary.runs[0]!.reason).toMatch(/has 1000 records, expected at least 1900/);
  });

  it("the metric across runs: bitrate for throughput; one passing run has no standard deviation; none gives nulls", () => {
    const summary = measurementSummary(runs(), pairingText([fast, fast, slow, slow]), id)!;
    expect(acrossRuns("throughput", summary.runs)).toMatchObject({ metric: "bitrateKbps", okRuns: 3 });
    expect(acrossRuns("latency", summary.runs.slice(0, 1))).toMatchObject({ okRuns: 1, std: null });
    expect(acrossRuns("latency", summary.runs.slice(1, 2))).toEqual({ metric: "delayMeanS", okRuns: 0, min: null, max: null, mean: null, median: null, std: null });
  });

  it("output not known yet (a first preview) gives no summary instead of an error", () => {
    expect(measurementSummary(undefined, undefined, id)).toBeUndefined();
    expect(measurementSummary(runs(), "", id)).toBeUndefined();
  });
});

describe("broken output is refused with what is wrong", () => {
  it.each([
    ["no header", parseMeasurementOutput, runBlock(1, 1), /no line starting "testbed-measurement format=2"/],
    ["a cut-off run", parseMeasurementOutput, `${runsHeader(1)}\n=== run 1\nrecords=1`, /run 1 has no "=== end run 1" line/],
    ["fewer runs than announced", parseMeasurementOutput, `${runsHeader(2)}\n${runBlock(1, 1)}`, /announces 2 runs, the output holds 1/],
    ["a run without its record count", parseMeasurementOutput, `${runsHeader(1)}\n=== run 1\nsenderLog=/x\n=== end run 1`, /run 1 has no records= line/],
    ["a pairing block that says nothing", parsePairingOutput, `${PAIRING_HEADER} runs=1\n=== run 1\n=== end run 1`, /pairing of run 1 says neither "decoded" nor "failed"/],
    ["a decoded log that is not JSON", parsePairingOutput, `${PAIRING_HEADER} runs=1\n=== run 1\ndecoded {oops\n=== end run 1`, /pairing of run 1: its decoded log is not JSON/],
    ["a pairing of the old format", parsePairingOutput, "testbed-measurement format=1 runs=0\n", /no line starting "testbed-measurement-pairing format=1"/],
  ] as const)("%s", (_name, parse, text, message) => {
    expect(() => (parse as (t: string) => unknown)(text)).toThrow(MeasurementOutputError);
    expect(() => (parse as (t: string) => unknown)(text)).toThrow(message);
  });
});

describe("the recorded real runs (infra/fixtures: real ITGSend and ITGRecv, real sshd and scp, the real pairing)", () => {
  const cases = PROFILES.flatMap((profile) => FAMILIES.map((family) => [profile, family] as const));

  it.each(cases)("%s over %s: two runs, each paired or decoded from the log the campaign measures", (profile, family) => {
    const runs = fs.readFileSync(fixturePath(profile, family, "runs"), "utf8");
    const pairing = fs.readFileSync(fixturePath(profile, family, "pairing"), "utf8");
    expect(runs.split("\n")[0]).toContain(`profile=${profile} family=${family} runs=2 target=${family === "ipv4" ? "127.0.0.1" : "::1"}`);
    const expected = profile === "latency" ? { records: 30000, minShare: 0.95, durationS: 30 } : { records: 29296, minShare: 0.9, linkMbps: 500, durationS: 30 };
    const summary = measurementSummary(runs, pairing, { measure: { profile, family, runs: 2, runId: "recorded" }, dataplane: "ebpf", services: 1, expected })!;
    expect(summary.runs).toHaveLength(2);
    for (const r of summary.runs) {
      // Recorded with the stack's 30 s flows; a run the recording host was too busy for says so.
      if (!r.ok) expect(r.reason).toMatch(/could not hold its rate|records, expected at least/);
      expect(r.packets!).toBeGreaterThan(0);
      expect(r.durationS!).toBeGreaterThan(25);
      expect(r.durationS!).toBeLessThan(35);
      if (profile === "latency") {
        // The sender's round trips, each paired with the receiver's send stamp: every one found.
        expect(r).toMatchObject({ delaySource: "paired", excludedRecords: 0 });
        expect(r.packets).toBe(r.records);
        expect(r.delayMinS!).toBeGreaterThan(0);
        expect(r.delayMaxS!).toBeLessThan(1);
        expect(r.bytes).toBe(r.packets! * 512);
      } else {
        // The receiver's TCP log: what arrived, one record per 64000-byte message.
        expect(r.delaySource).toBe("sender");
        expect(r.bytes).toBe(r.packets! * 64000);
        expect(r.packets!).toBeLessThanOrEqual(r.records);
        expect(Math.abs(r.bitrateKbps! / ((r.bytes! * 8) / r.durationS! / 1000) - 1)).toBeLessThan(1e-6);
      }
    }
  });
});
