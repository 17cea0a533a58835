// The stack's measurement script, run for real: real ITGSend against a real ITGRecv on loopback in a
// private network namespace, real ITGDec, exactly as scripts/record-measurement-fixture.ts records the
// offline engine's stdout. The fresh output must parse, and the committed recording must parse to
// the same shape, so the fixture cannot drift from what the script prints.
import * as fs from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import { measurementSummary, type MeasurementSummary } from "../../infra/measurement.js";
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

describe.skipIf(unavailable !== undefined)(`measurement script on loopback${unavailable ? ` (skipped: ${unavailable})` : ""}`, () => {
  const fresh = new Map<string, { stdout: string; summary: MeasurementSummary }>();
  const idOf = (m: LoopbackMeasurement) => ({ measure: m, dataplane: "ebpf" as const, services: 1 });

  beforeAll(async () => {
    // One after the other: two -poll senders at once would compete for the two cores.
    for (const m of CASES) {
      const stdout = await runMeasurementOnLoopback(m);
      fresh.set(`${m.profile}-${m.family}`, { stdout, summary: measurementSummary(stdout, idOf(m))! });
    }
  }, 120_000);

  it.each(CASES)("$profile over $family: the parser accepts the fresh output; every run sent and logged traffic", (m) => {
    const { stdout, summary } = fresh.get(`${m.profile}-${m.family}`)!;
    expect(stdout).toContain(`target=${m.family === "ipv4" ? "127.0.0.1" : "::1"}`);
    expect(summary.runs.map((r) => r.run)).toEqual([1, 2]);
    for (const r of summary.runs) {
      // The verdict may be "failed" on a loaded host (too few records in 2 s); the traffic is real either way.
      expect(r.packets, r.reason).toBeGreaterThan(0);
      expect(r.records).toBe(r.packets);
      expect(r.bytes).toBe(r.packets! * (m.profile === "latency" ? 512 : 64000));
    }
    if (m.profile === "latency") expect(summary.runs.every((r) => r.delayMeanS! > 0)).toBe(true);
  });

  it.each(CASES)("$profile over $family: the recorded fixture parses to the same shape", (m) => {
    const { summary } = fresh.get(`${m.profile}-${m.family}`)!;
    const recorded = measurementSummary(fs.readFileSync(fixturePath(m.profile, m.family), "utf8"), idOf(m))!;
    // On a loaded host a fresh run may fail: it then carries a reason, and the figures across runs may be
    // null. Its decoded figures are there all the same, so the runs compare without the reason, and the
    // figures across runs by their keys.
    const runsOf = (s: MeasurementSummary) => s.runs.map(({ reason: _reason, ...r }) => r);
    expect(shape(runsOf(recorded))).toEqual(shape(runsOf(summary)));
    expect(Object.keys(recorded)).toEqual(Object.keys(summary));
    expect(Object.keys(recorded.acrossRuns)).toEqual(Object.keys(summary.acrossRuns));
    expect(recorded.acrossRuns.metric).toBe(summary.acrossRuns.metric);
  });
});
