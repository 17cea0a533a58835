// `testbed rehearse`'s flags: checked whole before anything starts, and the campaign each stack runs
// derived exactly as `testbed campaign --stack` derives it (so a complete one is not deployed again).
import { describe, expect, it } from "vitest";
import { describeRehearsal, parseRehearseFlags, rehearsalCampaign, type RehearseOptions } from "../../cli/rehearse.js";
import { CLOUD_PROFILES } from "../../backends/cloud.js";

const base: RehearseOptions = { profile: "smoke", out: "/tmp/rehearsal-flags", dataplanes: "iptables,nftables,ebpf", baseline: "iptables", retries: "2" };

describe("testbed rehearse flags", () => {
  it("measures every profile of the cloud path unless --profiles names fewer, and the campaign follows", () => {
    const all = parseRehearseFlags(base);
    expect(all.profiles).toEqual(CLOUD_PROFILES);
    const some = parseRehearseFlags({ ...base, profiles: "latency, setup" });
    expect(some.profiles).toEqual(["latency", "setup"]);
    expect(rehearsalCampaign(some, "ebpf").definition.profiles).toEqual(["latency", "setup"]);
    expect(rehearsalCampaign(all, "ebpf").definition.profiles).toEqual([...CLOUD_PROFILES]);
    expect(rehearsalCampaign(some, "ebpf").id).not.toBe(rehearsalCampaign(all, "ebpf").id);
  });

  it("refuses a profile the cloud path does not measure, or one named twice, naming the flag and what is accepted", () => {
    expect(() => parseRehearseFlags({ ...base, profiles: "latency,hops" })).toThrow(
      '--profiles: "latency,hops" is not accepted; accepted: a comma-separated list of throughput, latency, setup, programming, each at most once',
    );
    expect(() => parseRehearseFlags({ ...base, profiles: "setup,setup" })).toThrow(/^--profiles: "setup,setup" is not accepted/);
    expect(() => parseRehearseFlags({ ...base, retries: "x" })).toThrow('--retries: "x" is not accepted');
  });

  it("rehearses the paper's path alone unless --paths names more; then the campaign measures every path the stack serves", () => {
    const paper = parseRehearseFlags(base);
    expect(paper.paths).toEqual(["nodeport-local"]);
    // The paper's path alone: the campaign is the one it was before paths.
    expect(rehearsalCampaign(paper, "iptables").definition.paths).toBeUndefined();
    const three = parseRehearseFlags({ ...base, paths: "nodeport-local,nodeport-remote,clusterip" });
    expect(rehearsalCampaign(three, "iptables").definition.paths).toEqual(["nodeport-local", "nodeport-remote", "clusterip"]);
    expect(rehearsalCampaign(three, "iptables").id).not.toBe(rehearsalCampaign(paper, "iptables").id);
    expect(describeRehearsal({ ...three, profiles: ["latency"] })).toMatch(/paths: nodeport-local, nodeport-remote, clusterip \(testbed:workers 2/);
    expect(() => parseRehearseFlags({ ...base, paths: "nodeport-local,pod-to-pod" })).toThrow(
      '--paths: "nodeport-local,pod-to-pod" is not accepted; accepted: a comma-separated list of nodeport-local, nodeport-remote, clusterip, each at most once',
    );
  });
});
