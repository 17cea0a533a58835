// The programming profile in the lab, end to end on the kernel: for every dataplane at a small step,
// one run of Service changes through its control plane, probed from the client namespace (a lab of
// this test's own: namespaces it creates and removes, benchmarking addresses only). Each probed
// change is seen by the probe, after the write began and no later than shortly after it ended, with
// no attempt seeing the old state afterwards; the cold starts are timed; and the step holds what it
// held before the run.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LabBackend, labProblem } from "../../backends/lab.js";
import { PROGRAMMING_CHANGES, type ProgrammingSettings } from "../../measure/types.js";
import { DATAPLANES } from "../../scenario/schema.js";

const hostProblem = labProblem();
const SERVICES = 30;
const SETTINGS: ProgrammingSettings = { probesPerSecond: 1000, addMany: 100, confirmMs: 50, timeoutS: 120, coldStart: true };

describe.skipIf(hostProblem !== undefined)(`programming runs in the lab${hostProblem ? ` (skipped: ${hostProblem})` : ""}`, () => {
  let backend: LabBackend;
  const held: Record<string, Record<string, number>> = {};

  beforeAll(async () => {
    backend = await LabBackend.start({
      linkMbps: 0,
      hops: false,
      onPrepared: async (step) => void (held[step.dataplane] = await step.module.counts()),
    });
  }, 120_000);
  afterAll(() => backend?.teardown());

  it.each(DATAPLANES)("%s: every change reaches the packets, cold starts timed, the step as it was", async (dataplane) => {
    await backend.prepare({ dataplane, services: SERVICES });
    const before = held[dataplane]!;
    for (const family of ["ipv4", "ipv6"] as const) {
      const changes = await backend.programming.runChanges({ dataplane, family, profile: "programming", services: SERVICES, repetition: 0 }, SETTINGS);
      expect(new Set(changes.map((c) => c.change))).toEqual(new Set([...PROGRAMMING_CHANGES, "cold-start", ...(dataplane === "nftables" ? ["cold-start-split"] : [])]));
      for (const c of changes) {
        expect(c.commitS, `${family} ${c.change}`).toBeGreaterThan(0);
        expect(c.syncS, `${family} ${c.change}`).toBeGreaterThanOrEqual(c.commitS!);
        if (!(PROGRAMMING_CHANGES as readonly string[]).includes(c.change)) {
          expect(c.programmedS).toBeUndefined();
          continue;
        }
        // Seen once written: after the write began, at most a probe interval and a busy host's delay after it ended.
        expect(c.programmedS!, `${family} ${c.change}`).toBeGreaterThan(0);
        expect(c.programmedS!, `${family} ${c.change}`).toBeLessThan(c.syncS! + 1);
        expect(c.probes!.flaps, `${family} ${c.change}`).toBe(0);
        expect(c.probes!.sent).toBeGreaterThan(10);
      }
      expect(changes.find((c) => c.change === "add-100")!.services).toBe(SERVICES + 99);
      expect(changes.filter((c) => c.change === "remove-one").every((c) => c.services === SERVICES - 1)).toBe(true);
    }
    expect(backend.step).toEqual({ dataplane, services: SERVICES });
    // What the kernel holds is the step's again: counted when the step is resumed.
    await backend.prepare({ dataplane: DATAPLANES.find((d) => d !== dataplane)!, services: SERVICES });
    await backend.prepare({ dataplane, services: SERVICES });
    expect(held[dataplane]).toEqual(before);
  });

  it("refuses a run for a step the lab does not hold, naming both", async () => {
    await backend.prepare({ dataplane: "iptables", services: SERVICES });
    await expect(backend.programming.runChanges({ dataplane: "ebpf", family: "ipv4", profile: "programming", services: SERVICES, repetition: 0 }, SETTINGS)).rejects.toThrow(
      /programming run ebpf\/30 asked for, but the lab holds iptables with 30 Services/,
    );
  });
});
