// The legacy tables' jumps into KUBE-* chains read from the kernel's blobs (xt-jumps.c) against the
// same question asked of iptables-legacy-save (kubeProxyJumps), in a lab of this test's own
// (namespaces it creates and removes, benchmarking addresses only): kube-proxy's rules on the packet
// path, parked, and removed, both families; and rules the lab never writes but a crashed or foreign
// run could leave: a goto from a built-in chain, a jump from another user chain, and beside them a
// rule without a target and a jump out of a KUBE-* chain, which put nothing on the path. And the
// iptables-nft side of the check: listed only where an iptables-nft table exists.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LAB_DATAPLANES, type LabDataplane } from "../../lab/dataplanes/index.js";
import { kubeProxyJumps, nftXtablesPresent } from "../../lab/dataplanes/iptables/kernel.js";
import { LegacyJumpReader, parseJumpLines } from "../../lab/dataplanes/iptables/jump-reader.js";
import { labScenario, serviceEndpoints } from "../../lab/lab-scenario.js";
import { createTopology, labHostProblem, type LabTopology } from "../../lab/topology.js";
import { buildServiceSet } from "../../workloads/service-set.js";

const FAMILIES = ["ipv4", "ipv6"] as const;
const hostProblem = labHostProblem();

describe("parseJumpLines", () => {
  it("groups the reader's lines by table, in order", () => {
    expect(parseJumpLines("nat PREROUTING -j KUBE-SERVICES\nfilter INPUT -g KUBE-X\nnat OUTPUT -j KUBE-SERVICES\n")).toEqual([
      { table: "nat", jumps: ["PREROUTING -j KUBE-SERVICES", "OUTPUT -j KUBE-SERVICES"] },
      { table: "filter", jumps: ["INPUT -g KUBE-X"] },
    ]);
    expect(parseJumpLines("")).toEqual([]);
  });

  it("refuses a line it does not know, naming it", () => {
    expect(() => parseJumpLines("nat PREROUTING KUBE-SERVICES\n")).toThrow(/unexpected line "nat PREROUTING KUBE-SERVICES"; accepted: TABLE CHAIN -j\|-g TARGET/);
  });
});

describe.skipIf(hostProblem !== undefined)(`the legacy tables' jumps from the kernel's blobs${hostProblem ? ` (skipped: ${hostProblem})` : ""}`, () => {
  let topology: LabTopology;
  let dataplane: LabDataplane;
  let reader: LegacyJumpReader;

  beforeAll(async () => {
    topology = createTopology({ linkMbps: 0 });
    const scenario = labScenario(topology);
    dataplane = LAB_DATAPLANES.iptables.create({ topology, scenario, iptablesBackend: "legacy" });
    const set = buildServiceSet(scenario, 300);
    await dataplane.setUp({ services: 300, serviceSet: set, endpoints: serviceEndpoints(set, topology.addresses.pod) });
    reader = new LegacyJumpReader(topology.runDir);
  });
  afterAll(async () => {
    await dataplane?.remove();
    topology?.destroy();
  });

  /** Both reads of one family, as `TABLE CHAIN -j TARGET` sets: the reader's, and iptables-legacy-save's rules cut to the same words. */
  async function both(family: (typeof FAMILIES)[number]): Promise<{ reader: string[]; save: string[] }> {
    const worker = topology.namespace("worker");
    const fromReader = reader.jumps(worker, family).flatMap((t) => t.jumps.map((j) => `${t.table} ${j}`));
    const fromSave = (await kubeProxyJumps(worker, family, "legacy")).flatMap((t) =>
      t.jumps.map((rule) => `${t.table} ${rule.split(" ")[1]} ${/ (-[jg]) (KUBE-\S+)/.exec(rule)!.slice(1).join(" ")}`),
    );
    return { reader: fromReader.sort(), save: fromSave.sort() };
  }

  it.each(FAMILIES)("%s: on the packet path, parked, and back", async (family) => {
    const active = await both(family);
    expect(active.reader.length).toBeGreaterThan(0);
    expect(active.reader).toContain("nat PREROUTING -j KUBE-SERVICES");
    expect(active.reader).toEqual(active.save);
    await dataplane.stepAside();
    expect(await both(family)).toEqual({ reader: [], save: [] });
    const set = buildServiceSet(labScenario(topology), 300);
    await dataplane.setUp({ services: 300, serviceSet: set, endpoints: serviceEndpoints(set, topology.addresses.pod) });
    expect((await both(family)).reader).toEqual(active.reader);
  });

  it.each(FAMILIES)("%s: a goto from a built-in chain and a jump from another user chain count; a rule without a target and a KUBE-* chain's own jump do not", async (family) => {
    const iptables = family === "ipv4" ? "iptables-legacy" : "ip6tables-legacy";
    const cmd = (...args: string[]) => topology.run("worker", [iptables, "-w", "60", ...args]);
    await dataplane.stepAside();
    try {
      cmd("-t", "mangle", "-N", "KUBE-LEFT");
      cmd("-t", "mangle", "-A", "PREROUTING", "-p", "tcp", "-g", "KUBE-LEFT");
      cmd("-t", "mangle", "-N", "SOMEONE-ELSE");
      cmd("-t", "mangle", "-A", "SOMEONE-ELSE", "-j", "KUBE-LEFT");
      cmd("-t", "mangle", "-A", "SOMEONE-ELSE", "-p", "udp");
      cmd("-t", "mangle", "-N", "OTHER");
      cmd("-t", "mangle", "-A", "KUBE-LEFT", "-j", "OTHER");
      const { reader: found } = await both(family);
      expect(found).toEqual(["mangle PREROUTING -g KUBE-LEFT", "mangle SOMEONE-ELSE -j KUBE-LEFT"]);
    } finally {
      for (const args of [["-F", "PREROUTING"], ["-F", "KUBE-LEFT"], ["-F", "SOMEONE-ELSE"], ["-F", "OTHER"], ["-X", "KUBE-LEFT"], ["-X", "SOMEONE-ELSE"], ["-X", "OTHER"]]) {
        topology.exec("worker", [iptables, "-w", "60", "-t", "mangle", ...args]);
      }
    }
    expect(reader.jumps(topology.namespace("worker"), family)).toEqual([]);
  });

  it("reads nothing where no legacy table exists", () => {
    // The client namespace has no iptables rules of the lab's: at most empty tables, never a jump.
    for (const family of FAMILIES) expect(reader.jumps(topology.namespace("client"), family)).toEqual([]);
  });

  it("finds kube-proxy's iptables-nft rules where there are iptables-nft tables, and knows when there are none", async () => {
    const client = topology.namespace("client");
    for (const family of FAMILIES) expect(nftXtablesPresent(client, family)).toBe(false);
    const worker = topology.namespace("worker");
    const nftDataplane = LAB_DATAPLANES.iptables.create({ topology, scenario: labScenario(topology), iptablesBackend: "nft" });
    await dataplane.stepAside();
    try {
      const set = buildServiceSet(labScenario(topology), 20);
      await nftDataplane.setUp({ services: 20, serviceSet: set, endpoints: serviceEndpoints(set, topology.addresses.pod) });
      for (const family of FAMILIES) expect(nftXtablesPresent(worker, family)).toBe(true);
      const traces = await nftDataplane.activeTraces();
      expect(traces.filter((t) => t.includes("(nft, ")).length).toBe(4);
      expect(traces.filter((t) => t.includes("(legacy, "))).toEqual([]);
      await nftDataplane.stepAside();
      expect(await nftDataplane.activeTraces()).toEqual([]);
    } finally {
      await nftDataplane.remove();
    }
  });
});
