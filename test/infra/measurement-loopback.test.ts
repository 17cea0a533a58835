// The stack's measurement, run for real: real ITGSend against a real ITGRecv on loopback in private
// network and mount namespaces, then the real pairing: scp through ProxyJump to a real sshd (standing
// for the bastion, the client and the worker) and the project's decoder, exactly as
// scripts/record-measurement-fixture.ts records the offline engine's stdout. The fresh output must
// give paired round trips, and the committed recording must give the same shape, so the fixtures
// cannot drift from what the scripts print.
import * as fs from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import { parseScenario, PLACEHOLDERS } from "../../scenario/schema.js";
import { measuredFlow, measurementPlan, measurementSummary, type MeasurementSummary } from "../../infra/measurement.js";
import { fixturePath, loopbackUnavailable, runMeasurementOnLoopback, type LoopbackMeasurement } from "../../scripts/record-measurement-fixture.js";

const unavailable = await loopbackUnavailable();

/** Every key path with the JavaScript type of its value: what "the same shape" means. */
function shape(value: unknown, at = ""): string[] {
  if (Array.isArray(value)) return [`${at}: array[${value.length}]`, ...value.flatMap((v, i) => shape(v, `${at}[${i}]`))];
  if (value !== null && typeof value === "object") return Object.entries(value).flatMap(([k, v]) => shape(v, `${at}.${k}`));
  return [`${at}: ${value === null ? "null" : typeof value}`];
}

const CASES: LoopbackMeasurement[] = [
  { profile: "latency", family: "ipv4", runs: 2, flowSeconds: 2, runId: "fresh" },
  { profile: "throughput", family: "ipv6", runs: 2, flowSeconds: 2, runId: "fresh" },
];

/** The identity the program gives the output, with the expectation of the case's own flow. */
function idOf(m: LoopbackMeasurement) {
  const s = parseScenario({ dataplane: "ebpf", ...PLACEHOLDERS, measure: { profile: m.profile, family: m.family, runs: m.runs, runId: m.runId }, sweep: { flowSeconds: m.flowSeconds } });
  const plan = measurementPlan(s, s.measure!, { address: m.family === "ipv4" ? "127.0.0.1" : "::1", signalingPort: 30900, dataPort: 31000, protocols: ["TCP", "UDP"] });
  return { measure: s.measure!, dataplane: "ebpf" as const, services: 1, expected: measuredFlow(plan).expected };
}

describe.skipIf(unavailable !== undefined)(`measurement on loopback, paired through a real sshd${unavailable ? ` (skipped: ${unavailable})` : ""}`, () => {
  const fresh = new Map<string, MeasurementSummary>();

  beforeAll(async () => {
    // One after the other: two -poll senders at once would compete for the two cores.
    for (const m of CASES) {
      const recorded = await runMeasurementOnLoopback(m);
      fresh.set(`${m.profile}-${m.family}`, measurementSummary(recorded.runs, recorded.pairing, idOf(m))!);
    }
  }, 180_000);

  it.each(CASES)("$profile over $family: every run's logs came over scp and decoded; round trips are paired", (m) => {
    const summary = fresh.get(`${m.profile}-${m.family}`)!;
    expect(summary.runs.map((r) => r.run)).toEqual([1, 2]);
    for (const r of summary.runs) {
      // The verdict may be "failed" on a loaded host (too few records in 2 s); the traffic and the pairing are real either way.
      expect(r.packets, r.reason).toBeGreaterThan(0);
      expect(r.bytes).toBe(r.packets! * (m.profile === "latency" ? 512 : 64000));
      if (m.profile === "latency") {
        expect(r).toMatchObject({ delaySource: "paired", excludedRecords: 0 });
        expect(r.packets).toBe(r.records);
        expect(r.delayMeanS!).toBeGreaterThan(0);
        expect(r.delayMaxS!).toBeLessThan(1);
      } else {
        expect(r.delaySource).toBe("sender");
      }
    }
  });

  it.each(CASES)("$profile over $family: the recorded fixtures give the same shape", (m) => {
    const summary = fresh.get(`${m.profile}-${m.family}`)!;
    const recorded = measurementSummary(fs.readFileSync(fixturePath(m.profile, m.family, "runs"), "utf8"), fs.readFileSync(fixturePath(m.profile, m.family, "pairing"), "utf8"), idOf(m))!;
    // On a loaded host a run may fail: it then carries a reason, and the figures across runs may be
    // null. Its decoded figures are there all the same, so the runs compare without the reason, and
    // the figures across runs by their keys.
    const runsOf = (s: MeasurementSummary) => s.runs.map(({ reason: _reason, ok: _ok, ...r }) => r);
    expect(shape(runsOf(recorded))).toEqual(shape(runsOf(summary)));
    expect(Object.keys(recorded)).toEqual(Object.keys(summary));
    expect(Object.keys(recorded.acrossRuns)).toEqual(Object.keys(summary.acrossRuns));
    expect(recorded.acrossRuns.metric).toBe(summary.acrossRuns.metric);
  });
});
