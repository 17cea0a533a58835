import { campaignTraffic } from "../../measure/connection-setup.js";
import { describe, expect, it } from "vitest";
import {
  campaignIdFor,
  canonicalJson,
  planCampaign,
  runIdFor,
  type CampaignDefinition,
} from "../../measure/campaign-plan.js";
import { scenarioSchema } from "../../scenario/schema.js";

const traffic = campaignTraffic(scenarioSchema.shape.traffic.parse(undefined));

function definition(over: Partial<CampaignDefinition> = {}): CampaignDefinition {
  return {
    backend: "loopback",
    dataplanes: ["iptables", "ebpf"],
    families: ["ipv4", "ipv6"],
    profiles: ["throughput", "latency"],
    services: [1, 1000, 2000],
    runs: 4,
    flowSeconds: 30,
    linkMbps: 0,
    seed: 7,
    order: { randomize: false, interleave: 0 },
    traffic,
    ...over,
  };
}

const label = (k: { dataplane: string; family: string; profile: string; services: number; repetition: number }) =>
  `${k.dataplane}/${k.services}/${k.repetition}/${k.family}/${k.profile}`;

/** Number of maximal stretches of consecutive runs with the same (dataplane, services). */
function stepStretches(plan: ReturnType<typeof planCampaign>): number {
  return plan.filter((r, i) => i === 0 || r.key.dataplane !== plan[i - 1]!.key.dataplane || r.key.services !== plan[i - 1]!.key.services).length;
}

describe("planCampaign", () => {
  it("plans the programming profile on the paper's path alone, every other profile on every path", () => {
    const def = definition({ profiles: ["latency", "programming"], services: [1], runs: 1, paths: ["nodeport-local", "nodeport-remote", "clusterip"] });
    const cells = planCampaign("c", def).map((r) => `${r.key.path ?? "nodeport-local"}/${r.key.profile}/${r.key.family}/${r.key.dataplane}`);
    for (const dataplane of def.dataplanes) {
      for (const family of def.families) {
        expect(cells.filter((c) => c === `nodeport-local/programming/${family}/${dataplane}`)).toHaveLength(1);
        for (const path of ["nodeport-local", "nodeport-remote", "clusterip"]) expect(cells.filter((c) => c === `${path}/latency/${family}/${dataplane}`)).toHaveLength(1);
      }
    }
    expect(cells.filter((c) => c.includes("/programming/") && !c.startsWith("nodeport-local/"))).toEqual([]);
  });

  it("plans every cell of the sweep exactly once, with indices in order", () => {
    const plan = planCampaign("c", definition());
    expect(plan).toHaveLength(2 * 2 * 2 * 3 * 4);
    expect(new Set(plan.map((r) => label(r.key))).size).toBe(plan.length);
    expect(new Set(plan.map((r) => r.runId)).size).toBe(plan.length);
    expect(plan.map((r) => r.index)).toEqual(plan.map((_, i) => i));
  });

  it("without randomisation and interleaving runs dataplane by dataplane, step by step, repetition by repetition", () => {
    const plan = planCampaign("c", definition({ services: [1, 1000], runs: 2, families: ["ipv4"], profiles: ["throughput", "latency"] }));
    expect(plan.map((r) => label(r.key))).toEqual([
      "iptables/1/0/ipv4/throughput",
      "iptables/1/0/ipv4/latency",
      "iptables/1/1/ipv4/throughput",
      "iptables/1/1/ipv4/latency",
      "iptables/1000/0/ipv4/throughput",
      "iptables/1000/0/ipv4/latency",
      "iptables/1000/1/ipv4/throughput",
      "iptables/1000/1/ipv4/latency",
      "ebpf/1/0/ipv4/throughput",
      "ebpf/1/0/ipv4/latency",
      "ebpf/1/1/ipv4/throughput",
      "ebpf/1/1/ipv4/latency",
      "ebpf/1000/0/ipv4/throughput",
      "ebpf/1000/0/ipv4/latency",
      "ebpf/1000/1/ipv4/throughput",
      "ebpf/1000/1/ipv4/latency",
    ]);
  });

  it("interleaves dataplanes in blocks of repetitions, alternating A B | B A without randomisation", () => {
    const plan = planCampaign(
      "c",
      definition({ services: [1], runs: 5, families: ["ipv4"], profiles: ["latency"], order: { randomize: false, interleave: 2 } }),
    );
    expect(plan.map((r) => `${r.key.dataplane}${r.key.repetition}`)).toEqual([
      "iptables0", "iptables1", "ebpf0", "ebpf1",
      "ebpf2", "ebpf3", "iptables2", "iptables3",
      "iptables4", "ebpf4",
    ]);
  });

  it("randomises reproducibly from the seed, keeping each step's runs together", () => {
    const def = definition({ order: { randomize: true, interleave: 0 }, services: [1, 1000, 2000, 3000, 4000] });
    const a = planCampaign("c", def);
    const b = planCampaign("c", def);
    expect(a).toEqual(b);
    const other = planCampaign("c", { ...def, seed: 8 });
    expect(other.map((r) => label(r.key))).not.toEqual(a.map((r) => label(r.key)));
    // Same runs, same ids: ids do not depend on the order.
    expect(new Set(other.map((r) => r.runId))).toEqual(new Set(a.map((r) => r.runId)));
    // One prepare per (dataplane, Service count): the shuffle never splits a step.
    expect(stepStretches(a)).toBe(2 * 5);
    // The step order is shuffled, and shared by both dataplanes.
    const stepOrder = (dp: string) => [...new Set(a.filter((r) => r.key.dataplane === dp).map((r) => r.key.services))];
    expect(stepOrder("iptables")).toEqual(stepOrder("ebpf"));
    expect([...stepOrder("iptables")].sort((x, y) => x - y)).toEqual([1, 1000, 2000, 3000, 4000]);
    const orders = new Set(
      [1, 2, 3, 4, 5, 6].map((seed) => planCampaign("c", { ...def, seed }).filter((r) => r.key.dataplane === "iptables").map((r) => r.key.services).join()),
    );
    expect(orders.size).toBeGreaterThan(1);
    // Cells inside a repetition are shuffled too.
    const firstCells = new Set(
      [1, 2, 3, 4, 5, 6].map((seed) => label(planCampaign("c", { ...def, seed })[0]!.key).split("/").slice(3).join("/")),
    );
    expect(firstCells.size).toBeGreaterThan(1);
  });

  it("with randomised interleaving still visits every (step, block, dataplane) once", () => {
    const def = definition({ runs: 6, order: { randomize: true, interleave: 3 } });
    const plan = planCampaign("c", def);
    expect(plan).toHaveLength(2 * 2 * 2 * 3 * 6);
    // Each (step, block of 3 repetitions, dataplane) is one contiguous stretch of 3 x 4 runs.
    const groups = new Map<string, number[]>();
    for (const r of plan) {
      const g = `${r.key.services}/${Math.floor(r.key.repetition / 3)}/${r.key.dataplane}`;
      groups.set(g, [...(groups.get(g) ?? []), r.index]);
    }
    expect(groups.size).toBe(3 * 2 * 2);
    for (const indices of groups.values()) {
      expect(indices).toHaveLength(12);
      expect(indices.at(-1)! - indices[0]!).toBe(11);
    }
    // Blocks of one step do not all start with the same dataplane for every seed.
    const firsts = new Set(
      [1, 2, 3, 4, 5, 6].map((seed) => planCampaign("c", { ...def, seed }).filter((r) => r.key.repetition === 3)[0]!.key.dataplane),
    );
    expect(firsts.size).toBe(2);
  });
});

describe("run and campaign ids", () => {
  const key = { dataplane: "ebpf", family: "ipv6", profile: "latency", services: 1000, repetition: 3 } as const;

  it("derive a run id from the campaign id and the RunKey only", () => {
    expect(runIdFor("c1", key)).toBe(runIdFor("c1", { ...key }));
    expect(runIdFor("c1", key)).toMatch(/^[0-9a-f]{24}$/);
    expect(runIdFor("c2", key)).not.toBe(runIdFor("c1", key));
    expect(runIdFor("c1", { ...key, repetition: 4 })).not.toBe(runIdFor("c1", key));
    expect(runIdFor("c1", { ...key, services: 100 })).not.toBe(runIdFor("c1", { ...key, services: 10 }));
  });

  it("derive the default campaign id from the definition, independent of key order", () => {
    const def = definition();
    const reordered = Object.fromEntries(Object.entries(def).reverse()) as unknown as CampaignDefinition;
    expect(canonicalJson(reordered)).toBe(canonicalJson(def));
    expect(campaignIdFor(reordered)).toBe(campaignIdFor(def));
    expect(campaignIdFor(def)).toMatch(/^loopback-[0-9a-f]{12}$/);
    expect(campaignIdFor({ ...def, runs: 5 })).not.toBe(campaignIdFor(def));
    expect(campaignIdFor({ ...def, backend: "stack:ebpf" })).toMatch(/^stack-ebpf-/);
  });
});

describe("planCampaign with primary comparisons", () => {
  const primary = {
    profile: "latency" as const,
    services: 2000,
    statistic: "mean",
    baseline: "iptables" as const,
    runs: 7,
    design: { alpha: 0.05, power: 0.9, minimumEffect: 0.15, runCv: 0.1 },
  };
  const three = definition({ dataplanes: ["iptables", "nftables", "ebpf"], primary, order: { randomize: true, interleave: 1 } });

  it("gives the primary cells their runs and every other cell the campaign's", () => {
    const plan = planCampaign("c", three);
    const count = new Map<string, number>();
    for (const r of plan) count.set(`${r.key.dataplane}/${r.key.family}/${r.key.profile}/${r.key.services}`, (count.get(`${r.key.dataplane}/${r.key.family}/${r.key.profile}/${r.key.services}`) ?? 0) + 1);
    for (const [cell, n] of count) expect(n, cell).toBe(cell.endsWith("/latency/2000") ? 7 : 4);
    expect(count.size).toBe(3 * 2 * 2 * 3);
    expect(plan).toHaveLength(3 * 2 * 2 * 3 * 4 + 3 * 2 * 3);
    expect(new Set(plan.map((r) => r.runId)).size).toBe(plan.length);
  });

  it("interleaves the extra repetitions too: every dataplane in every block, only the primary profile", () => {
    const plan = planCampaign("c", three).filter((r) => r.key.services === 2000 && r.key.repetition >= 4);
    for (let repetition = 4; repetition < 7; repetition++) {
      const block = plan.filter((r) => r.key.repetition === repetition);
      expect(new Set(block.map((r) => r.key.dataplane))).toEqual(new Set(["iptables", "nftables", "ebpf"]));
      expect(new Set(block.map((r) => r.key.profile))).toEqual(new Set(["latency"]));
      // One dataplane at a time within the block.
      expect(stepStretches(block)).toBe(3);
    }
    // The blocks follow one another in repetition order.
    expect(plan.map((r) => r.key.repetition)).toEqual([...plan.map((r) => r.key.repetition)].sort((a, b) => a - b));
  });

  it("keeps a campaign without primary comparisons as it was planned before", () => {
    const plain = definition({ dataplanes: ["iptables", "ebpf"], order: { randomize: true, interleave: 1 } });
    expect(planCampaign("c", plain).map((r) => label(r.key))).toEqual(planCampaign("c", { ...plain, primary: { ...primary, runs: 4 } }).map((r) => label(r.key)));
  });

  it("refuses primary comparisons the campaign does not run, naming the key", () => {
    expect(() => planCampaign("c", { ...three, primary: { ...primary, services: 3000 } })).toThrow(
      "primary.services: 3000 is not accepted; accepted: one of the campaign's Service counts (1, 1000, 2000)",
    );
    expect(() => planCampaign("c", { ...three, primary: { ...primary, profile: "setup" } })).toThrow(/^primary.profile: "setup" is not accepted/);
    expect(() => planCampaign("c", { ...three, dataplanes: ["nftables", "ebpf"] })).toThrow(
      'primary.baseline: "iptables" is not accepted; accepted: one of the campaign\'s dataplanes (nftables, ebpf)',
    );
  });
});

describe("planCampaign's order within a repetition", () => {
  it("alternates transport protocols as far as the cells allow, and keeps every cell", () => {
    const setup = { protocol: "TCP", meter: "rttm", payloadBytes: 0, packetsPerSecond: 200 } as const;
    const def = definition({
      dataplanes: ["iptables", "nftables", "ebpf"],
      profiles: ["throughput", "latency", "setup"],
      order: { randomize: true, interleave: 1 },
      traffic: { ...traffic, setup },
    });
    const plan = planCampaign("c", def);
    const protocol = (profile: string) => (profile === "latency" ? "UDP" : "TCP");
    const blocks = new Map<string, string[]>();
    for (const r of plan) {
      const id = `${r.key.dataplane}/${r.key.services}/${r.key.repetition}`;
      blocks.set(id, [...(blocks.get(id) ?? []), `${r.key.family}/${r.key.profile}`]);
    }
    const orders = new Set<string>();
    for (const cells of blocks.values()) {
      expect(cells).toHaveLength(6);
      // Four TCP cells and two UDP ones: the UDP ones always sit between TCP ones, one TCP pair is left.
      const same = cells.filter((c, i) => i > 0 && protocol(c.split("/")[1]!) === protocol(cells[i - 1]!.split("/")[1]!)).length;
      expect(same, cells.join(" ")).toBe(1);
      orders.add(cells.join(" "));
    }
    // Still shuffled: many different orders.
    expect(orders.size).toBeGreaterThan(10);
  });
});
