// The parser of the measurement script's output: on the recorded real runs (infra/fixtures) and on
// synthetic text with failed runs, odd ITGDec values and broken output.
import * as fs from "node:fs";
import { describe, expect, it } from "vitest";
import { FAMILIES } from "../../scenario/schema.js";
import { ItgDecFormatError, itgDecTotals, parseItgDec } from "../../measure/itgdec-summary.js";
import {
  acrossRuns,
  MeasurementOutputError,
  measurementSummary,
  OUTPUT_HEADER,
  parseMeasurementOutput,
  type MeasuredRun,
} from "../../infra/measurement.js";
import { fixturePath, PROFILES } from "../../scripts/record-measurement-fixture.js";

/** ITGDec's TOTAL block as it prints it, with chosen figures. */
function itgDecText(t: { packets: number; bytes: number; durationS: string; delayMeanS: string; bitrateKbps: string; dropped?: string }): string {
  return `ITGDec version 2.8.1 (r1023)
Compile-time options: sctp dccp bursty multiport
----------------------------------------------------------
Flow number: 1
From 198.18.0.10:40000
To    198.18.1.21:31000
----------------------------------------------------------
Total time               =      ${t.durationS} s
Total packets            =          ${t.packets}
----------------------------------------------------------

__________________________________________________________
****************  TOTAL RESULTS   ******************
__________________________________________________________
Number of flows          =             1
Total time               =      ${t.durationS} s
Total packets            =          ${t.packets}
Minimum delay            =      0.000100 s
Maximum delay            =      0.004000 s
Average delay            =      ${t.delayMeanS} s
Average jitter           =      0.000050 s
Delay standard deviation =      0.000300 s
Bytes received           =     ${t.bytes}
Average bitrate          =   ${t.bitrateKbps} Kbit/s
Average packet rate      =    999.000000 pkt/s
Packets dropped          =             ${t.dropped ?? "0 (0.00 %)"}
Average loss-burst size  =             0 pkt
Error lines              =             0
----------------------------------------------------------`;
}

function block(run: number, facts: string[], itgdec: string): string {
  return [`=== run ${run}`, ...facts, "itgsend> Finished sending packets of flow ID: 1", "--- itgdec", ...(itgdec ? [itgdec] : []), `=== end run ${run}`].join("\n");
}

const header = (runs: number) => `${OUTPUT_HEADER} runId=r1 profile=latency family=ipv4 runs=${runs} target=198.18.1.21`;

const synthetic = [
  header(3),
  block(1, ["status=ok", "records=30000", "log=/var/tmp/testbed-measurement/r1-1.slog"], itgDecText({ packets: 30000, bytes: 15360000, durationS: "29.999000", delayMeanS: "0.000400", bitrateKbps: "4096.136538" })),
  block(2, ["status=failed", "reason=ITGSend reported an error: Connect error in createTransportChan(): Connection refused", "records=0", "log=/x"], ""),
  block(3, ["status=ok", "records=30000", "log=/x"], itgDecText({ packets: 30000, bytes: 15360000, durationS: "29.998000", delayMeanS: "0.000600", bitrateKbps: "4096.273085", dropped: "12 (0.04 %)" })),
  "",
].join("\n");

const id = { measure: { profile: "latency", family: "ipv4", runs: 3, runId: "r1" }, dataplane: "ebpf", services: 1000 } as const;

describe("synthetic output with a failed run", () => {
  const runs = parseMeasurementOutput(synthetic);

  it("reads each run's verdict and ITGDec's TOTAL figures", () => {
    expect(runs).toHaveLength(3);
    expect(runs[0]).toEqual({
      run: 1, ok: true, records: 30000, packets: 30000, bytes: 15360000, durationS: 29.999,
      delayMinS: 0.0001, delayMaxS: 0.004, delayMeanS: 0.0004, delayStdS: 0.0003, jitterS: 0.00005,
      bitrateKbps: 4096.136538, packetRate: 999, dropped: 0,
    } satisfies MeasuredRun);
    expect(runs[2]!.dropped).toBe(12);
  });

  it("a failed run keeps its reason and has no figures", () => {
    expect(runs[1]).toMatchObject({ run: 2, ok: false, records: 0, packets: null, delayMeanS: null, bitrateKbps: null });
    expect(runs[1]!.reason).toBe("ITGSend reported an error: Connect error in createTransportChan(): Connection refused");
    expect("reason" in runs[0]!).toBe(false);
  });

  it("the summary: identity from the stack, the metric across the runs that passed only", () => {
    const s = measurementSummary(synthetic, id)!;
    expect(s).toMatchObject({ runId: "r1", profile: "latency", family: "ipv4", dataplane: "ebpf", services: 1000 });
    expect(s.acrossRuns).toEqual({ metric: "delayMeanS", okRuns: 2, min: 0.0004, max: 0.0006, mean: 0.0005, median: 0.0005, std: expect.closeTo(Math.SQRT2 * 0.0001, 12) });
  });

  it("throughput's metric is the bitrate; one passing run has no standard deviation; none gives nulls", () => {
    expect(acrossRuns("throughput", runs)).toMatchObject({ metric: "bitrateKbps", okRuns: 2, min: 4096.136538, max: 4096.273085 });
    expect(acrossRuns("throughput", runs.slice(0, 2))).toMatchObject({ okRuns: 1, mean: 4096.136538, median: 4096.136538, std: null });
    expect(acrossRuns("latency", runs.slice(1, 2))).toEqual({ metric: "delayMeanS", okRuns: 0, min: null, max: null, mean: null, median: null, std: null });
  });

  it("stdout not known yet (a first preview) gives no summary instead of an error", () => {
    expect(measurementSummary(undefined, id)).toBeUndefined();
    expect(measurementSummary("", id)).toBeUndefined();
  });
});

describe("ITGDec values that are not plain numbers", () => {
  it("inf and nan (a one-record log) become null in the output; a run judged ok without a summary is not ok", () => {
    const text = [
      header(2),
      block(1, ["status=ok", "records=1", "log=/x"], itgDecText({ packets: 1, bytes: 512, durationS: "0.000000", delayMeanS: "0.000100", bitrateKbps: "inf" }).replace("0.000050 s", "-nan s")),
      block(2, ["status=ok", "records=5", "log=/x"], ""),
    ].join("\n");
    const [one, missing] = parseMeasurementOutput(text);
    expect(one).toMatchObject({ ok: true, packets: 1, bitrateKbps: null, jitterS: null, durationS: 0 });
    expect(missing).toMatchObject({ ok: false, reason: "the script judged the run ok but printed no ITGDec summary" });
    expect(JSON.parse(JSON.stringify(one))).toEqual(one);
  });

  it("a TOTAL block with a field missing or garbled fails that run, naming the field", () => {
    const garbled = itgDecText({ packets: 3, bytes: 3, durationS: "1.0", delayMeanS: "oops", bitrateKbps: "1" });
    const [r] = parseMeasurementOutput([header(1), block(1, ["status=ok", "records=3"], garbled)].join("\n"));
    expect(r).toMatchObject({ ok: false, packets: null });
    expect(r!.reason).toContain('"Average delay" reads "oops"');
    expect(() => itgDecTotals(parseItgDec(garbled.replace(/^Error lines.*$/m, "")))).toThrow(ItgDecFormatError);
    expect(() => itgDecTotals(parseItgDec(garbled.replace(/^Error lines.*$/m, "")))).toThrow('TOTAL block has no "Error lines"');
  });
});

describe("broken output is refused with what is wrong", () => {
  const ok = block(1, ["status=ok", "records=1"], "");
  it.each([
    ["no header", ok, /no line starting "testbed-measurement format=1"/],
    ["a cut-off run", `${header(1)}\n=== run 1\nstatus=ok\n--- itgdec\nITGDec version`, /run 1 has no "=== end run 1" line/],
    ["fewer runs than announced", `${header(2)}\n${ok}`, /the header announces 2 runs, the output holds 1/],
    ["an unknown status", `${header(1)}\n${block(1, ["status=maybe"], "")}`, /run 1: status "maybe", accepted: ok or failed/],
    ["no itgdec separator", `${header(1)}\n=== run 1\nstatus=ok\n=== end run 1`, /run 1 has no "--- itgdec" line/],
  ])("%s", (_name, text, message) => {
    expect(() => parseMeasurementOutput(text)).toThrow(MeasurementOutputError);
    expect(() => parseMeasurementOutput(text)).toThrow(message);
  });
});

describe("the recorded real runs (infra/fixtures)", () => {
  const cases = PROFILES.flatMap((profile) => FAMILIES.map((family) => [profile, family] as const));

  it.each(cases)("%s over %s: two decoded runs whose figures agree with each other", (profile, family) => {
    const text = fs.readFileSync(fixturePath(profile, family), "utf8");
    expect(text.split("\n")[0]).toContain(`profile=${profile} family=${family} runs=2 target=${family === "ipv4" ? "127.0.0.1" : "::1"}`);
    const summary = measurementSummary(text, { measure: { profile, family, runs: 2, runId: "recorded" }, dataplane: "ebpf", services: 1 })!;
    expect(summary.runs).toHaveLength(2);
    for (const r of summary.runs) {
      expect(r.ok, r.reason).toBe(true);
      expect(r.packets).toBe(r.records);
      // ITGDec's bitrate is its bytes over its duration, to the printed digits of the duration.
      expect(Math.abs(r.bitrateKbps! / ((r.bytes! * 8) / r.durationS! / 1000) - 1)).toBeLessThan(1e-5);
      expect(r.durationS!).toBeGreaterThan(1.5);
      expect(r.durationS!).toBeLessThan(2.5);
      if (profile === "latency") {
        // Round trips on loopback: positive, well under a second.
        expect(r.delayMinS!).toBeGreaterThan(0);
        expect(r.delayMaxS!).toBeLessThan(1);
        expect(r.bytes).toBe(r.packets! * 512);
      } else {
        // The sender's TCP log: one record per 64000-byte message, no delay of its own.
        expect(r.bytes).toBe(r.packets! * 64000);
        expect(r.delayMaxS).toBe(0);
      }
    }
    const metric = profile === "latency" ? "delayMeanS" : "bitrateKbps";
    const values = summary.runs.map((r) => r[metric]!);
    expect(summary.acrossRuns).toMatchObject({ metric, okRuns: 2, min: Math.min(...values), max: Math.max(...values) });
  });
});
