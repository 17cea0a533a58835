// The lab verb without a kernel: profiles, the campaign they define, flags and their refusals,
// the lab's Service order for kube-proxy, and the judge that picks D-ITG's or the probe's verdict.
import { describe, expect, it } from "vitest";
import { campaignIdFor } from "../../measure/campaign-plan.js";
import { describePlan, labCommand, parseLabFlags, setupSummary, type LabOptions } from "../../cli/lab.js";
import type { RunResult } from "../../measure/types.js";
import { runJudge } from "../../measure/campaign.js";
import { labKubeProxyRules } from "../../lab/dataplanes/iptables/kernel.js";
import { labScenario, serviceEndpoints } from "../../lab/lab-scenario.js";
import { plannedConnections } from "../../measure/connection-setup.js";
import { labDefinition, labProfile, LAB_PROFILES } from "../../lab/profiles.js";
import { estimateWallSeconds } from "../../lab/wall-estimate.js";
import { runsForPower } from "../../measure/statistics.js";
import { planTopology } from "../../lab/topology.js";
import type { DecodedLog } from "../../measure/ditg-log.js";
import { PAPER_SWEEP } from "../../scenario/schema.js";
import { buildServiceSet } from "../../workloads/service-set.js";

const options = (over: Partial<LabOptions> = {}): LabOptions => ({ profile: "default", out: "/tmp/lab-flags", cap: true, retries: "2", iptables: "legacy", ...over });

function flagError(over: Partial<LabOptions>): string {
  try {
    parseLabFlags(options(over));
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error("flags were accepted");
}

describe("lab profiles", () => {
  it("smoke has a step of at least 2000 Services and fits its 4 minutes on 2 cores", () => {
    const def = labDefinition(LAB_PROFILES.smoke);
    expect(Math.max(...def.services)).toBeGreaterThanOrEqual(2000);
    expect(estimateWallSeconds(def)).toBeLessThanOrEqual(LAB_PROFILES.smoke.budgetMinutes! * 60);
  });

  it("default sweeps 1 to 10000 Services within its 16 minutes", () => {
    const def = labDefinition(LAB_PROFILES.default);
    expect(def.services).toEqual([1, 1000, 5000, 10000]);
    expect(estimateWallSeconds(def)).toBeLessThanOrEqual(LAB_PROFILES.default.budgetMinutes! * 60);
  });

  it("paper is the paper's method: 11 steps, 100 runs of 30 s", () => {
    const def = labDefinition(LAB_PROFILES.paper);
    expect(def.services).toEqual(PAPER_SWEEP);
    expect(def.services).toHaveLength(11);
    expect([def.runs, def.flowSeconds]).toEqual([100, 30]);
    // More than three days: the plan says so before it starts.
    expect(estimateWallSeconds(def)).toBeGreaterThan(3 * 86400);
  });

  it("defines every dataplane interleaved in a random order, both families, the D-ITG profiles and setup", () => {
    const def = labDefinition(LAB_PROFILES.default);
    expect(def.backend).toBe("lab");
    expect(def.dataplanes).toEqual(["iptables", "nftables", "ebpf"]);
    expect(def.families).toEqual(["ipv4", "ipv6"]);
    expect(def.profiles).toEqual(["throughput", "latency", "setup"]);
    expect(def.order).toEqual({ randomize: true, interleave: 1 });
    expect(def.traffic.setup).toEqual({ protocol: "TCP", meter: "rttm", payloadBytes: 0, packetsPerSecond: 200 });
    expect(def.traffic.latency).toMatchObject({ protocol: "UDP", meter: "rttm" });
    expect(def.linkMbps).toBe(500);
  });

  it("smoke checks the pipeline at rates a busy host sustains; default and paper measure at the paper's", () => {
    const smoke = labDefinition(LAB_PROFILES.smoke);
    expect(smoke.linkMbps).toBe(100);
    expect(smoke.traffic.latency).toEqual({ protocol: "UDP", meter: "rttm", payloadBytes: 512, packetsPerSecond: 200 });
    expect(smoke.traffic.setup.packetsPerSecond).toBe(100);
    // The throughput flow still offers more than the cap lets through: the cap sets its rate.
    expect(smoke.traffic.throughput).toEqual({ protocol: "TCP", meter: "owdm", payloadBytes: 64000, packetsPerSecond: 2000 });
    expect((smoke.traffic.throughput.packetsPerSecond * smoke.traffic.throughput.payloadBytes * 8) / 1e6).toBeGreaterThan(2 * smoke.linkMbps);
    for (const profile of [LAB_PROFILES.default, LAB_PROFILES.paper]) {
      const def = labDefinition(profile);
      expect(def.linkMbps, profile.name).toBe(500);
      expect(def.traffic.latency.packetsPerSecond).toBe(1000);
      expect(def.traffic.throughput.packetsPerSecond).toBe(2000);
      expect(def.traffic.setup.packetsPerSecond).toBe(200);
    }
    // A flag still wins over the profile's cap.
    expect(parseLabFlags(options({ profile: "smoke", cap: false })).definition.linkMbps).toBe(0);
  });

  it("declares connection setup at the largest step, each dataplane against iptables per family, as the default profile's primary comparisons, with the runs they need", () => {
    const def = labDefinition(LAB_PROFILES.default);
    const design = LAB_PROFILES.default.primary!;
    expect(def.primary).toEqual({
      profile: "setup",
      services: 10000,
      statistic: "mean",
      baseline: "iptables",
      runs: runsForPower({ ...design, tests: 2 * 2 }),
      design: { alpha: design.alpha, power: design.power, minimumEffect: design.minimumEffect, runCv: design.runCv },
    });
    expect(def.primary!.runs).toBeGreaterThan(def.runs);
    // Fewer comparisons need fewer runs; none without a second dataplane, without the profile, or at the smoke test.
    const two = labDefinition(LAB_PROFILES.default, { dataplanes: ["iptables", "ebpf"], families: ["ipv4"] });
    expect(two.primary!.runs).toBe(runsForPower({ ...design, tests: 1 }));
    expect(two.primary!.runs).toBeLessThan(def.primary!.runs);
    expect(labDefinition(LAB_PROFILES.default, { dataplanes: ["ebpf"], baseline: "ebpf" }).primary).toBeUndefined();
    expect(labDefinition(LAB_PROFILES.default, { profiles: ["latency"] }).primary).toBeUndefined();
    expect(labDefinition(LAB_PROFILES.smoke).primary).toBeUndefined();
    // At the largest step of a narrowed sweep, against another baseline when asked.
    expect(labDefinition(LAB_PROFILES.default, { services: [1, 3000], baseline: "nftables" }).primary).toMatchObject({ services: 3000, baseline: "nftables" });
  });

  it("refuses an unknown profile, naming the accepted ones", () => {
    expect(() => labProfile("huge")).toThrow('--profile: "huge" is not accepted; accepted: smoke, default, paper');
  });
});

describe("lab flags", () => {
  it("the same flags give the same campaign (so a second run resumes), other flags another", () => {
    const a = parseLabFlags(options());
    const b = parseLabFlags(options());
    const c = parseLabFlags(options({ runs: "6" }));
    expect(campaignIdFor(a.definition)).toBe(campaignIdFor(b.definition));
    expect(campaignIdFor(c.definition)).not.toBe(campaignIdFor(a.definition));
  });

  it("makes the eBPF model's DSR runs another campaign than its SNAT ones, and leaves the definition alone where DSR changes nothing", () => {
    const snat = parseLabFlags(options({ paths: "nodeport-local,nodeport-remote" }));
    const dsr = parseLabFlags(options({ paths: "nodeport-local,nodeport-remote", lbMode: "dsr" }));
    expect(snat.definition.loadBalancerMode).toBeUndefined();
    expect(dsr.definition.loadBalancerMode).toBe("dsr");
    expect(campaignIdFor(dsr.definition)).not.toBe(campaignIdFor(snat.definition));
    // Without nodeport-remote, or without the eBPF dataplane, the mode is not used: the same campaign.
    expect(campaignIdFor(parseLabFlags(options({ lbMode: "dsr" })).definition)).toBe(campaignIdFor(parseLabFlags(options()).definition));
    const kubeProxy = { paths: "nodeport-remote", dataplanes: "iptables,nftables" };
    expect(campaignIdFor(parseLabFlags(options({ ...kubeProxy, lbMode: "dsr" })).definition)).toBe(campaignIdFor(parseLabFlags(options(kubeProxy)).definition));
  });

  it("runs every dataplane against iptables by default, and the ones named against the one named", () => {
    expect(parseLabFlags(options()).definition.dataplanes).toEqual(["iptables", "nftables", "ebpf"]);
    expect(parseLabFlags(options()).baseline).toBe("iptables");
    const f = parseLabFlags(options({ dataplanes: "ebpf,nftables", baseline: "nftables" }));
    expect(f.definition.dataplanes).toEqual(["ebpf", "nftables"]);
    expect(f.baseline).toBe("nftables");
    expect(f.definition.primary?.baseline).toBe("nftables");
    expect(describePlan(f, 10)).toMatch(/ebpf, nftables \(baseline\) interleaved/);
  });

  it("has the hop probes on unless --no-hops, and says so in the plan", async () => {
    expect(parseLabFlags(options()).hops).toBe(true);
    expect(describePlan(parseLabFlags(options()), 24)).toContain("hop probes: on for latency and setup runs (--no-hops turns them off)");
    const off = parseLabFlags(options({ hops: false }));
    expect(off.hops).toBe(false);
    expect(describePlan(off, 24)).toContain("hop probes: off");
    // commander turns the flag into hops: false, and its absence into true.
    const seen: LabOptions[] = [];
    for (const argv of [["--no-hops"], []]) {
      const command = (await labCommand()).exitOverride().action((o: LabOptions) => void seen.push(o));
      await command.parseAsync(argv, { from: "user" });
    }
    expect(seen.map((o) => parseLabFlags(o).hops)).toEqual([false, true]);
  });

  it("measures the paper's path alone by default, in the campaign it was before paths; other paths on the dataplanes that serve them", () => {
    const paper = parseLabFlags(options());
    expect(paper.definition).not.toHaveProperty("paths");
    expect(parseLabFlags(options({ paths: "nodeport-local" })).definition).toEqual(paper.definition);
    const f = parseLabFlags(options({ profile: "smoke", paths: "nodeport-local,nodeport-remote,clusterip", dataplanes: "iptables,nftables", profiles: "latency,setup" }));
    expect(f.definition.paths).toEqual(["nodeport-local", "nodeport-remote", "clusterip"]);
    expect(describePlan(f, 24)).toContain("paths: nodeport-local, nodeport-remote, clusterip");
  });

  it("narrows the profile's campaign and places the store in --out", () => {
    const f = parseLabFlags(options({ profile: "smoke", families: "ipv6", profiles: "setup,latency", services: "1,3000", runs: "3", flowSeconds: "1.5", seed: "7", cap: false }));
    expect(f.definition).toMatchObject({ families: ["ipv6"], profiles: ["setup", "latency"], services: [1, 3000], runs: 3, flowSeconds: 1.5, seed: 7, linkMbps: 0 });
    expect(f.db).toBe("/tmp/lab-flags/results.db");
    expect(describePlan(f, 24)).toMatch(/Services 1, 3000; setup, latency; ipv6; iptables \(baseline\), nftables, ebpf interleaved; iptables rules through iptables-legacy\n(.*\n)?.*24 runs of 1.5 s, link cap off/);
  });

  it.each([
    [{ families: "ipv4,ipx" }, '--families: "ipv4,ipx" is not accepted; accepted: a comma-separated list of ipv4, ipv6, each at most once'],
    [{ profiles: "latency,latency" }, "--profiles: \"latency,latency\" is not accepted; accepted: a comma-separated list of throughput, latency, setup, programming, each at most once"],
    [{ services: "1,x" }, '--services: "1,x" is not accepted; accepted: a comma-separated list of distinct whole numbers of Services'],
    [{ services: "1,40000" }, "--services: \"1,40000\" is not accepted; accepted: counts up to 29991"],
    [{ runs: "0" }, '--runs: "0" is not accepted; accepted: a whole number from 1 to 100000'],
    [{ flowSeconds: "0.5" }, '--flow-seconds: "0.5" is not accepted; accepted: seconds from 1 to 3600'],
    [{ retries: "-1" }, '--retries: "-1" is not accepted; accepted: a whole number from 0 to 20'],
    [{ iptables: "ebtables" }, '--iptables: "ebtables" is not accepted; accepted: legacy or nft'],
    [{ profile: "fast" }, '--profile: "fast" is not accepted; accepted: smoke, default, paper'],
    [{ dataplanes: "iptables,ipvs" }, '--dataplanes: "iptables,ipvs" is not accepted; accepted: a comma-separated list of iptables, nftables, ebpf, each at most once'],
    [{ dataplanes: "nftables,ebpf" }, '--baseline: "iptables" is not accepted; accepted: one of the dataplanes the campaign runs (nftables, ebpf); with --dataplanes leaving out iptables, name another baseline'],
    [{ dataplanes: "iptables,ebpf", baseline: "nftables" }, '--baseline: "nftables" is not accepted; accepted: one of the dataplanes the campaign runs (iptables, ebpf)'],
    [{ paths: "nodeport-local,pod" }, '--paths: "nodeport-local,pod" is not accepted; accepted: a comma-separated list of nodeport-local, nodeport-remote, clusterip, each at most once'],
    [{ lbMode: "tunnel" }, '--lb-mode: "tunnel" is not accepted; accepted: snat or dsr'],
  ] as const)("refuses %j", (over, message) => {
    expect(flagError(over)).toContain(message);
  });
});

describe("the lab's kube-proxy input", () => {
  const plan = planTopology("dptb0000");
  const scenario = labScenario({ plan });

  it("puts the receiver in the middle of the NodePort Services and every endpoint on the receiver pod", () => {
    const set = buildServiceSet(scenario, 10);
    const services = serviceEndpoints(set, plan.addresses.pod);
    expect(services.map((s) => s.service.name)).toEqual([
      "svc-00001", "svc-00002", "svc-00003", "svc-00004", "svc-00005", "ditg-receiver",
      "svc-00006", "svc-00007", "svc-00008", "svc-00009", "svc-00010",
    ]);
    expect(new Set(services.flatMap((s) => s.endpoints.map((e) => `${e.ip}/${e.local}`)))).toEqual(
      new Set([`${plan.addresses.pod.ipv4}/true`, `${plan.addresses.pod.ipv6}/true`]),
    );
  });

  it("writes kube-proxy's nat rule count for N (11 per NodePort Service, 5 per ClusterIP Service, 66 for the receiver's six ports, 5 fixed)", () => {
    // cilium-and-kube-proxy notes §2.7: ETP=Local NodePort with one local endpoint and the local-traffic detector.
    for (const n of [1, 2000, 10000]) {
      const set = buildServiceSet(scenario, n);
      const expected = 11 * set.counts.nodePort + 5 * set.counts.clusterIp + 6 * 11 + 5;
      for (const rules of labKubeProxyRules(serviceEndpoints(set, plan.addresses.pod), plan)) expect(rules.ruleCounts.nat, `${n} ${rules.family}`).toBe(expected);
    }
  });

  it("keeps ClusterIPs in the benchmarking ranges and NodePorts in the scenario's range", () => {
    const set = buildServiceSet(scenario, 3000);
    expect(set.counts).toEqual({ nodePort: 2764, clusterIp: 236 });
    expect(set.scaled[2999]!.clusterIPs.ipv4).toMatch(/^198\.19\./);
    expect(set.scaled[0]!.clusterIPs.ipv6).toMatch(/^2001:2:0:ff::/);
  });
});

describe("lab judge", () => {
  const decoded = (packets: number): DecodedLog => {
    const total = {
      packets, bytes: 0, durationS: 1, delayMinS: 1e-4, delayMaxS: 1e-3, delayMeanS: 2e-4, delayStdS: 1e-4, jitterS: 0, bitrateKbps: 0,
      packetRate: packets, dropped: 0, p50S: 2e-4, p90S: 3e-4, p99S: 5e-4, p999S: 1e-3, droppedPercent: 0, lossBurstSize: 0, negativeDelays: 0,
      excludedRecords: 0, delaySource: "sender" as const,
    };
    return {
      file: "run.slog",
      flows: [{ ...total, flowId: 1, srcAddress: "198.18.0.2", srcPort: 0, destAddress: "198.18.1.2", destPort: 31000 }],
      total: { ...total, flowCount: 1, errorLines: 0 },
      histogram: "",
    };
  };
  const setup = labDefinition(LAB_PROFILES.default).traffic.setup!;

  it("judges setup runs by the connections they set up, not by D-ITG's output", () => {
    const planned = plannedConnections(setup, 2);
    const probeSaid = `connection setup: ${planned} connections, ${planned} established, 0 failed`;
    expect(runJudge(probeSaid, decoded(planned), { profile: "setup", traffic: setup, durationS: 2, linkMbps: 500 })).toEqual({ ok: true });
    expect(runJudge(probeSaid, decoded(planned - 40), { profile: "setup", traffic: setup, durationS: 2, linkMbps: 500 })).toMatchObject({
      ok: false,
      reason: expect.stringContaining(`${planned - 40} of ${planned} connections were set up, expected at least 380`),
    });
  });

  it("judges D-ITG runs with D-ITG's verdict", () => {
    const latency = labDefinition(LAB_PROFILES.smoke).traffic.latency;
    // The probe's wording is not ITGSend's: a latency run with it fails.
    expect(runJudge("connection setup: 1000 connections", decoded(1000), { profile: "latency", traffic: latency, durationS: 1, linkMbps: 500 })).toMatchObject({
      ok: false,
      reason: expect.stringContaining("Finished sending"),
    });
    expect(runJudge("Finished sending packets of flow ID: 1", decoded(1000), { profile: "latency", traffic: latency, durationS: 1, linkMbps: 500 })).toEqual({ ok: true });
  });
});

describe("setup summary at the end of a lab run", () => {
  const run = (over: Partial<RunResult> & Pick<RunResult, "dataplane" | "family" | "services">, p50Us: number): RunResult => ({
    profile: "setup", repetition: 0, runId: `${over.dataplane}${over.family}${over.services}${p50Us}`, status: "ok", retries: 0,
    startedAt: "", endedAt: "",
    summary: {
      packets: 400, bytes: 0, durationS: 2, delayMinS: 1e-4, delayMaxS: 1e-3, delayMeanS: p50Us * 1e-6, delayStdS: 1e-5, jitterS: 0,
      bitrateKbps: 0, packetRate: 200, dropped: 0, p50S: p50Us * 1e-6, p90S: 2 * p50Us * 1e-6, p99S: 3 * p50Us * 1e-6, p999S: 4 * p50Us * 1e-6,
    },
    ...over,
  });

  it("shows the median of the runs' median handshake of every dataplane and each one over the baseline, skipping failed runs and other profiles", () => {
    const results = [
      run({ dataplane: "iptables", family: "ipv4", services: 10000 }, 560),
      run({ dataplane: "iptables", family: "ipv4", services: 10000 }, 580),
      run({ dataplane: "iptables", family: "ipv4", services: 10000 }, 540),
      run({ dataplane: "ebpf", family: "ipv4", services: 10000 }, 400),
      run({ dataplane: "ebpf", family: "ipv4", services: 10000, status: "failed" }, 9000),
      run({ dataplane: "nftables", family: "ipv4", services: 10000 }, 420),
      run({ dataplane: "nftables", family: "ipv4", services: 10000 }, 448),
      run({ dataplane: "iptables", family: "ipv4", services: 1 }, 340),
      run({ dataplane: "ebpf", family: "ipv4", services: 1 }, 340),
      run({ dataplane: "nftables", family: "ipv4", services: 1 }, 357),
      run({ dataplane: "ebpf", family: "ipv6", services: 1 }, 300),
      run({ dataplane: "ebpf", family: "ipv6", services: 1, profile: "latency" }, 90),
    ];
    expect(setupSummary(results, "iptables")).toEqual([
      "connection setup through the NodePort, median handshake (µs; median over runs), and each dataplane over the baseline:",
      "family    Services  iptables  nftables      ebpf  nftables/iptables  ebpf/iptables",
      "ipv4             1       340       357       340               1.05           1.00",
      "ipv4         10000       560       434       400               0.78           0.71",
      "ipv6             1         -         -       300                  -              -",
    ]);
    // Another baseline: its column stays, the ratios are over it.
    expect(setupSummary(results, "ebpf")[1]).toBe("family    Services  iptables  nftables      ebpf  iptables/ebpf  nftables/ebpf");
    expect(setupSummary(results, "ebpf")[3]).toBe("ipv4         10000       560       434       400           1.40           1.09");
    expect(setupSummary(results.filter((r) => r.family === "ipv6" && r.profile === "latency"), "iptables")).toEqual([]);
    // Beyond the paper's path, one table per path, named by it.
    const remote = results.map((r) => ({ ...r, path: "nodeport-remote" as const, runId: `${r.runId}-remote` }));
    const both = setupSummary([...results, ...remote], "iptables");
    expect(both.filter((l) => l.startsWith("connection setup"))).toEqual([
      "connection setup on nodeport-local (external client -> NodePort of worker 1 (externalTrafficPolicy Local) -> endpoint on worker 1), median handshake (µs; median over runs), and each dataplane over the baseline:",
      "connection setup on nodeport-remote (external client -> NodePort of worker 1 (externalTrafficPolicy Cluster) -> endpoint on worker 2), median handshake (µs; median over runs), and each dataplane over the baseline:",
    ]);
    expect(both.slice(1, setupSummary(results, "iptables").length)).toEqual(setupSummary(results, "iptables").slice(1));
  });
});
