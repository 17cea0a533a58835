// Steps move the way a running cluster moves (partial syncs), and the table a step is measured on is
// the one a full sync of the same Services writes. Two labs of this test's own (namespaces it creates
// and removes, benchmarking addresses only): one moves every dataplane through a sequence of Service
// counts by partial syncs, the other installs each count by a full sync; after every move, what the
// kernels hold is compared in their own listings: iptables-save (KUBE-* chains, their rules, the jumps
// into them), `nft -j list table` (chains, rules, sets and maps with their elements) and `bpftool map
// dump` of the service, backend and reverse-NAT maps (ids resolved: they record the history of
// changes, as Cilium's allocators do). The sequence goes up, crosses kube-proxy's large-cluster
// threshold, and comes down, so chains are added, rewritten and deleted; every other move starts
// from the parked dataplane (stepped aside for another), as most moves of a campaign do.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LAB_DATAPLANES, type LabDataplane, type LabStep } from "../../lab/dataplanes/index.js";
import { ebpfLoadBalancer } from "../../lab/dataplanes/ebpf/module.js";
import { LB_MAPS } from "../../lab/dataplanes/ebpf/service-maps.js";
import { nftablesHostProblem } from "../../lab/dataplanes/nftables/kernel.js";
import { ebpfHostProblem } from "../../lab/dataplanes/ebpf/kernel.js";
import { labScenario, serviceEndpoints } from "../../lab/lab-scenario.js";
import { run } from "../../lab/netns.js";
import { createTopology, labHostProblem, type LabTopology } from "../../lab/topology.js";
import { DATAPLANES, type Dataplane } from "../../scenario/schema.js";
import { buildServiceSet } from "../../workloads/service-set.js";

const hostProblem = labHostProblem() ?? nftablesHostProblem() ?? ebpfHostProblem();
const FAMILIES = ["ipv4", "ipv6"] as const;
/** Up across the large-cluster threshold (more than 1000 endpoints), down within it, down below it, up again. */
const SEQUENCE = [40, 1200, 1100, 300, 900];

/** iptables-save of both families: each KUBE-* chain with its rules in order, and the built-in chains' jumps into them. */
function iptablesListing(topology: LabTopology): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const save of ["iptables-legacy-save", "ip6tables-legacy-save"]) {
    let table = "";
    for (const line of topology.run("worker", [save]).split("\n")) {
      if (line.startsWith("*")) table = line.slice(1);
      else if (line.startsWith(":KUBE-")) out[`${save} ${table} ${line.split(" ")[0]}`] ??= [];
      else if (line.startsWith("-A ")) {
        const chain = line.split(" ")[1]!;
        if (chain.startsWith("KUBE-") || / -j KUBE-/.test(line)) (out[`${save} ${table} :${chain}`] ??= []).push(line);
      }
    }
  }
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** Drops the kernel's handles, which number objects in the order they were made. */
function withoutHandles(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutHandles);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).filter(([k]) => k !== "handle").map(([k, v]) => [k, withoutHandles(v)]));
  }
  return value;
}

/** `nft -j list table` of both families: chains, each chain's rules in order, sets and maps with their elements sorted. */
function nftablesListing(topology: LabTopology): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const family of ["ip", "ip6"]) {
    const objects = (JSON.parse(topology.run("worker", ["nft", "-j", "list", "table", family, "kube-proxy"])) as { nftables: Record<string, unknown>[] }).nftables;
    for (const o of objects) {
      const [kind, body] = Object.entries(o)[0] as [string, Record<string, unknown>];
      if (kind === "metainfo") continue;
      if (kind === "rule") ((out[`${family} rules ${body.chain as string}`] ??= []) as unknown[]).push(withoutHandles(body.expr));
      else if (kind === "set" || kind === "map") {
        const elem = ((body.elem as unknown[] | undefined) ?? []).map((e) => JSON.stringify(e)).sort();
        out[`${family} ${kind} ${body.name as string}`] = { ...(withoutHandles(body) as object), elem };
      } else out[`${family} ${kind} ${(body.name as string | undefined) ?? ""}`] = withoutHandles(body);
    }
  }
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** Every frontend of the service maps with its count, flags, reverse-NAT entry and backends, ids resolved; plus the ids nothing uses. */
function ebpfListing(dataplane: LabDataplane): { frontends: string[]; unusedBackends: number; unusedReverseNat: number } {
  const lb = ebpfLoadBalancer(dataplane)!;
  const dump = (name: string) =>
    (JSON.parse(run(["bpftool", "-j", "map", "dump", "pinned", lb.mapPath(name)])) as { key: string[]; value: string[] }[]).map((e) => ({
      key: Buffer.from(e.key.map((b) => Number.parseInt(b, 16))),
      value: Buffer.from(e.value.map((b) => Number.parseInt(b, 16))),
    }));
  const frontends: string[] = [];
  let unusedBackends = 0;
  let unusedReverseNat = 0;
  for (const family of FAMILIES) {
    const addr = family === "ipv4" ? 4 : 16;
    const backends = new Map(dump(LB_MAPS.backends[family]).map((e) => [e.key.readUInt32LE(0), e.value.subarray(0, addr + 3).toString("hex")]));
    const revNat = new Map(dump(LB_MAPS.reverseNat[family]).map((e) => [e.key.readUInt16LE(0), e.value.toString("hex")]));
    const services = dump(LB_MAPS.services[family]);
    const usedBackends = new Set<number>();
    const usedRevNat = new Set<number>();
    const byFrontend = new Map<string, { master?: string; slots: string[] }>();
    for (const { key, value } of services) {
      const frontend = Buffer.concat([key.subarray(0, addr + 2), key.subarray(addr + 4)]).toString("hex");
      const slot = key.readUInt16LE(addr + 2);
      const entry = byFrontend.get(frontend) ?? { slots: [] };
      const id = value.readUInt16LE(6);
      usedRevNat.add(id);
      if (slot === 0) entry.master = `count ${value.readUInt16LE(4)} flags ${value[8]} revnat ${revNat.get(id)}`;
      else {
        usedBackends.add(value.readUInt32LE(0));
        entry.slots[slot] = `${backends.get(value.readUInt32LE(0))} revnat ${revNat.get(id)}`;
      }
      byFrontend.set(frontend, entry);
    }
    for (const [f, e] of byFrontend) frontends.push(`${family} ${f}: ${e.master ?? "no master"}; ${e.slots.join(", ")}`);
    unusedBackends += [...backends.keys()].filter((id) => !usedBackends.has(id)).length;
    unusedReverseNat += [...revNat.keys()].filter((id) => !usedRevNat.has(id)).length;
  }
  return { frontends: frontends.sort(), unusedBackends, unusedReverseNat };
}

const LISTINGS: Record<Dataplane, (topology: LabTopology, dataplane: LabDataplane) => unknown> = {
  iptables: (topology) => iptablesListing(topology),
  nftables: (topology) => nftablesListing(topology),
  ebpf: (_, dataplane) => ebpfListing(dataplane),
};

describe.skipIf(hostProblem !== undefined)(`steps by partial syncs hold what a full sync writes${hostProblem ? ` (skipped: ${hostProblem})` : ""}`, () => {
  let moving: LabTopology;
  let installing: LabTopology;

  beforeAll(() => {
    moving = createTopology({ linkMbps: 0 });
    installing = createTopology({ linkMbps: 0 });
  });
  afterAll(() => {
    moving?.destroy();
    installing?.destroy();
  });

  const stepOf = (topology: LabTopology, services: number): LabStep => {
    const set = buildServiceSet(labScenario(topology), services);
    return { services, serviceSet: set, endpoints: serviceEndpoints(set, topology.addresses.pod) };
  };

  it.each(DATAPLANES)("%s", async (name) => {
    const context = (topology: LabTopology, stepSync: "partial" | "full") => ({ topology, scenario: labScenario(topology), iptablesBackend: "legacy" as const, stepSync });
    const partial = LAB_DATAPLANES[name].create(context(moving, "partial"));
    const full = LAB_DATAPLANES[name].create(context(installing, "full"));
    try {
      for (const [i, services] of SEQUENCE.entries()) {
        // In a campaign a dataplane is mostly parked when its turn at a new count comes: every other move starts parked.
        if (i % 2 === 1) await partial.stepAside();
        expect((await partial.setUp(stepOf(moving, services))).sync).toBe(i === 0 ? "full" : "partial");
        expect((await full.setUp(stepOf(installing, services))).sync).toBe("full");
        const moved = LISTINGS[name](moving, partial);
        expect(moved, `${name} after moving to ${services} Services`).toEqual(LISTINGS[name](installing, full));
        if (name === "ebpf") expect(moved).toMatchObject({ unusedBackends: 0, unusedReverseNat: 0 });
      }
    } finally {
      await partial.remove();
      await full.remove();
    }
  });
});
