// `testbed rehearse`'s flags: checked whole before anything starts, and the campaign each stack runs
// derived exactly as `testbed campaign --stack` derives it (so a complete one is not deployed again).
import { describe, expect, it } from "vitest";
import { parseRehearseFlags, rehearsalCampaign, type RehearseOptions } from "../../cli/rehearse.js";
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
});
