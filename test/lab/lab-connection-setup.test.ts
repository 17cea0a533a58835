// The connection-setup probe through each of the lab's dataplanes (as root), where every connection
// must be a new conntrack entry; its output and log: test/measure/connection-setup.test.ts.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LabBackend } from "../../backends/lab.js";
import { runJudge } from "../../measure/campaign.js";
import { judgeSetup, plannedConnections, setupTraffic } from "../../measure/connection-setup.js";
import { ebpfLoadBalancer } from "../../lab/dataplanes/ebpf/module.js";
import type { EbpfDataplane } from "../../lab/dataplanes/ebpf/kernel.js";
import { LB_MAPS } from "../../lab/dataplanes/ebpf/service-maps.js";
import { run } from "../../lab/netns.js";
import { labHostProblem } from "../../lab/topology.js";
import { decodeLogFile } from "../../measure/ditg-log.js";
import type { RunKey } from "../../measure/types.js";

const hostProblem = labHostProblem();

describe.skipIf(hostProblem !== undefined)(`connection setup through the lab's dataplanes${hostProblem ? ` (skipped: ${hostProblem})` : ""}`, () => {
  let backend: LabBackend;
  let ebpf: EbpfDataplane | undefined;
  const traffic = setupTraffic(200);
  const key = (dataplane: RunKey["dataplane"], family: RunKey["family"], repetition: number): RunKey => ({
    dataplane, family, profile: "setup", services: 1, repetition,
  });
  const trackedInWorker = (family: "ipv4" | "ipv6") =>
    backend.topology.run("worker", ["conntrack", "-L", "-f", family], { timeoutMs: 30_000 }).split("\n").filter((l) => l.trim() !== "").length;

  beforeAll(async () => {
    backend = await LabBackend.start({ linkMbps: 0, onPrepared: (step) => void (ebpf = ebpfLoadBalancer(step.module)) });
  });
  afterAll(() => backend?.teardown());

  it.each(["iptables", "nftables"] as const)("%s: every connection of two runs is a new conntrack entry, none is refused", async (dataplane) => {
    await backend.prepare({ dataplane, services: 1 });
    const planned = plannedConnections(traffic, 1);
    for (const family of ["ipv4", "ipv6"] as const) {
      for (const repetition of [0, 1]) {
        const outcome = await backend.runFlow(key(dataplane, family, repetition), { logName: `${dataplane}-${family}-${repetition}`, durationS: 1, traffic });
        const decoded = await decodeLogFile((await backend.collectLog(outcome)).log);
        expect(outcome.senderOutput).toBe(`connection setup: ${planned} connections, ${planned} established, 0 failed`);
        expect(runJudge(outcome.senderOutput, decoded, { profile: "setup", traffic, durationS: 1, linkMbps: 0 })).toEqual({ ok: true });
        expect(decoded.total.delayMinS).toBeGreaterThan(0);
      }
      // The prepare flushed conntrack; two runs later it holds one entry per connection: no 5-tuple came twice.
      expect(trackedInWorker(family)).toBe(2 * planned);
    }
  });

  it("ebpf: every connection adds its two CT map entries; a flush empties the maps and nf_conntrack", async () => {
    await backend.prepare({ dataplane: "ebpf", services: 1 });
    const planned = plannedConnections(traffic, 1);
    const ctEntries = (family: "ipv4" | "ipv6") =>
      (JSON.parse(run(["bpftool", "-j", "map", "dump", "pinned", ebpf!.mapPath(LB_MAPS.conntrack[family])])) as unknown[]).length;
    for (const family of ["ipv4", "ipv6"] as const) {
      const outcome = await backend.runFlow(key("ebpf", family, 0), { logName: `ebpf-${family}`, durationS: 1, traffic });
      const decoded = await decodeLogFile((await backend.collectLog(outcome)).log);
      expect(judgeSetup(outcome.senderOutput, decoded, planned)).toEqual({ ok: true });
      // Request and reply entry per connection (the maps were new at prepare()).
      expect(ctEntries(family)).toBe(2 * planned);
      // The node still tracks them too: the same netfilter base in both modes.
      expect(trackedInWorker(family)).toBe(planned);
    }
    backend.flushConntrack();
    for (const family of ["ipv4", "ipv6"] as const) {
      expect(ctEntries(family)).toBe(0);
      expect(trackedInWorker(family)).toBe(0);
    }
  });
});
