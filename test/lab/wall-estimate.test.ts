// The plan's estimate of a lab campaign's wall time (lab/wall-estimate.ts), without a kernel: the
// arithmetic of its cost terms, a small campaign added up by hand with costs of its own, what the
// estimate follows (runs, steps, hop probes, full-sync steps), and the profiles' figures.
import { describe, expect, it } from "vitest";
import { describeEstimate } from "../../cli/lab.js";
import { planCampaign, type CampaignDefinition } from "../../measure/campaign-plan.js";
import { labDefinition, LAB_PROFILES } from "../../lab/profiles.js";
import { LAB_DATAPLANES, type StepCosts } from "../../lab/dataplanes/index.js";
import { costAt, estimateLabWall, gapKey, LAB_COSTS, moveSeconds, programmingRunSeconds, type LabCosts } from "../../lab/wall-estimate.js";

describe("cost terms", () => {
  it("adds a fixed part, a part per Service and one per Service squared", () => {
    expect(costAt({ fixedS: 1, perServiceS: 0.5 }, 4)).toBe(3);
    expect(costAt({ fixedS: 1, perServiceS: 0.5, perServiceSquaredS: 0.25 }, 4)).toBe(7);
  });

  it("moves up by the install's growth between the two counts, and down by the Services removed", () => {
    const move: StepCosts["move"] = { fixedS: 1, perServiceS: 0.5, perServiceSquaredS: 0.25, removedPerServiceS: 0.125 };
    expect(moveSeconds(move, 2, 4)).toBe(1 + 0.5 * 2 + 0.25 * (16 - 4));
    expect(moveSeconds(move, 4, 2)).toBe(1 + 0.125 * 2);
    // Adding to a larger table costs more than the same Services on a smaller one.
    expect(moveSeconds(LAB_DATAPLANES.nftables.stepCosts.move, 5000, 6000)).toBeGreaterThan(moveSeconds(LAB_DATAPLANES.nftables.stepCosts.move, 1, 1001));
  });
});

/** Costs with round numbers, every dataplane alike unless overridden. */
function costs(over: Partial<StepCosts> = {}): LabCosts {
  const steps: StepCosts = {
    install: { fixedS: 10, perServiceS: 0.01 },
    move: { fixedS: 5, perServiceS: 0.001, removedPerServiceS: 0.002 },
    resume: { fixedS: 1, perServiceS: 0 },
    park: { fixedS: 2, perServiceS: 0 },
    count: { fixedS: 0.5, perServiceS: 0 },
    ...over,
  };
  return {
    runs: {
      beyondS: { throughput: 0.25, setup: 0.125, latency: 0.25 },
      gapS: { [gapKey("throughput", "setup")]: 1, [gapKey("setup", "throughput")]: 0.5 },
      otherGapS: 0.75,
      betweenRunsS: 0.0625,
      closeWaitS: 3,
      hopProbesS: 0.5,
      probedChangeS: 0.3,
    },
    stepChanges: { check: { fixedS: 0.25, perServiceS: 0 }, flushS: 0.125 },
    dataplanes: { iptables: steps, nftables: steps, ebpf: steps },
  };
}

/** Two dataplanes, two counts, one family, throughput then setup in each step, in the order given. */
const small: CampaignDefinition = {
  ...labDefinition(LAB_PROFILES.smoke, { dataplanes: ["iptables", "ebpf"], families: ["ipv4"], profiles: ["throughput", "setup"], services: [100, 300], runs: 1, flowSeconds: 2 }),
  order: { randomize: false, interleave: 1 },
};

describe("estimateLabWall", () => {
  it("adds up a small campaign run by run and step by step", () => {
    // The plan: iptables/100 (throughput, setup), ebpf/100, iptables/300, ebpf/300: reversed order every other block.
    expect(planCampaign("x", small).map((r) => `${r.key.dataplane}/${r.key.services} ${r.key.profile}`)).toEqual([
      "iptables/100 throughput",
      "iptables/100 setup",
      "ebpf/100 throughput",
      "ebpf/100 setup",
      "iptables/300 throughput",
      "iptables/300 setup",
      "ebpf/300 throughput",
      "ebpf/300 setup",
    ]);
    const e = estimateLabWall(small, { costs: costs() });
    expect(e.flowsS).toBe(8 * 2);
    // Each step: throughput 0.25 + its gap to setup 1; setup 0.125 + before the next step 0.0625, no close to wait for (hop probes are in the gaps).
    expect(e.runsS).toBeCloseTo(4 * (0.25 + 1 + 0.125 + 0.0625), 9);
    const check = 0.25 + 0.125;
    const install = (n: number) => 10 + 0.01 * n;
    const move = 5 + 0.001 * 200;
    // iptables installs 100; ebpf parks iptables, installs 100; iptables parks ebpf, moves; ebpf parks iptables, moves.
    expect(e.stepChangesS).toBeCloseTo(install(100) + 0.5 + check + (2 + install(100) + 0.5 + check) + 2 * (2 + move + 0.5 + check), 9);
    expect(e.syncsS).toBeCloseTo(2 * install(100) + 2 * move, 9);
    expect(e.totalS).toBeCloseTo(e.flowsS + e.runsS + e.stepChangesS, 9);
    expect([e.runs, e.stepChanges]).toEqual([8, 4]);
  });

  it("follows the plan: more runs, more flows and gaps; full-sync steps install where partial ones move; no hop probes, less", () => {
    const c = costs();
    const base = estimateLabWall(small, { costs: c });
    const twice = estimateLabWall({ ...small, runs: 2 }, { costs: c });
    expect(twice.flowsS).toBe(2 * base.flowsS);
    expect(twice.runsS).toBeGreaterThan(base.runsS);
    const full = estimateLabWall(small, { costs: c, stepSync: "full" });
    expect(full.syncsS).toBeCloseTo(2 * (10 + 0.01 * 100) + 2 * (10 + 0.01 * 300), 9);
    expect(estimateLabWall(small, { costs: c, hops: false }).runsS).toBeCloseTo(base.runsS - 4 * 0.5, 9);
    // Two blocks at one count, iptables ebpf | ebpf iptables: three changes, the last one a resume.
    const again = estimateLabWall({ ...small, services: [100], runs: 2 }, { costs: c });
    expect(again.stepChanges).toBe(3);
    expect(again.syncsS).toBeCloseTo(2 * (10 + 0.01 * 100), 9);
    expect(again.stepChangesS - again.syncsS).toBeCloseTo(3 * (0.25 + 0.125) + 2 * 0.5 + 2 * 2 + 1, 9);
  });

  it("waits for ITGRecv's close of a D-ITG flow before a change of step, not after a setup run", () => {
    const c = costs();
    const throughputOnly = estimateLabWall({ ...small, profiles: ["throughput"] }, { costs: c });
    expect(throughputOnly.runsS).toBeCloseTo(4 * (0.25 + 3), 9);
  });

  it("prices kube-proxy's nftables transaction by the square of the Services it adds", () => {
    const nft = LAB_DATAPLANES.nftables.stepCosts;
    // About 107 s at 10000 Services, both families: between the 86 s of kernel time and the 146 s of whole installs measured there earlier.
    expect(costAt(nft.install, 10000)).toBeGreaterThan(86);
    expect(costAt(nft.install, 10000)).toBeLessThan(146);
    expect(costAt(nft.install, 10000) / costAt(nft.install, 1000)).toBeGreaterThan(30);
    // A partial move adding the same Services costs what the install's growth does.
    expect(moveSeconds(nft.move, 1000, 5000)).toBeCloseTo(nft.move.fixedS + costAt(nft.install, 5000) - costAt(nft.install, 1000), 9);
  });

  it("prices a programming run by one-family full syncs", () => {
    const settings = { probesPerSecond: 1000, addMany: 100, confirmMs: 50, timeoutS: 900, coldStart: true };
    const half = costAt(LAB_COSTS.dataplanes.nftables.install, 2000) / 2;
    expect(programmingRunSeconds("nftables", 2000, 1, settings)).toBeCloseTo(6 * LAB_COSTS.runs.probedChangeS + half, 9);
    // The first run of a cell adds the cold starts: nftables splits one too.
    expect(programmingRunSeconds("nftables", 2000, 0, settings)).toBeCloseTo(6 * LAB_COSTS.runs.probedChangeS + 3 * half, 9);
  });
});

describe("the profiles' estimates", () => {
  const estimate = (name: keyof typeof LAB_PROFILES) => estimateLabWall(labDefinition(LAB_PROFILES[name]));

  it("are the flows plus what the runs and steps cost, none of it written down", () => {
    for (const name of ["smoke", "default", "paper"] as const) {
      const def = labDefinition(LAB_PROFILES[name]);
      const e = estimate(name);
      expect(e.flowsS, name).toBe(planCampaign("x", def).length * def.flowSeconds);
      expect(e.runsS).toBeGreaterThan(0);
      expect(e.stepChangesS).toBeGreaterThan(e.syncsS);
    }
  });

  it("the paper profile: 11 steps x 100 runs of 30 s, three dataplanes, both families, three profiles: 19800 runs, about a week", () => {
    const e = estimate("paper");
    expect(e.runs).toBe(11 * 100 * 3 * 2 * 3);
    expect(e.flowsS).toBe(19800 * 30);
    expect(e.totalS / 86400).toBeGreaterThan(6.9);
    expect(e.totalS / 86400).toBeLessThan(7.5);
  });

  it("says in one line what the estimate is made of", () => {
    const line = describeEstimate(estimate("default"));
    expect(line).toMatch(/^about \d+m\d\ds on a busy 2-core host \(lab\/wall-estimate\.ts\): the flows 9m36s \(\d+ %\), the runs beyond their flows .*, 65 changes of step .*, .* of them installing and moving Services$/);
    expect(describeEstimate(estimate("paper"))).toMatch(/^about 16\dh\d\dm \(7\.\d days\)/);
  });
});
