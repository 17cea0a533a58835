// `testbed rehearse`'s flags: checked whole before anything starts, and the campaign each stack runs
// derived exactly as `testbed campaign --stack` derives it (so a complete one is not deployed again).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { describeRehearsal, parseRehearseFlags, rehearsalCampaign, type RehearseOptions } from "../../cli/rehearse.js";
import { planCampaign } from "../../measure/campaign-plan.js";
import { ResultStore } from "../../measure/store.js";
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

  it("takes as the baseline a stack not rehearsed this time only when the store already holds its campaign (the report covers the whole store)", () => {
    const out = mkdtempSync(path.join(tmpdir(), "rehearse-flags-"));
    try {
      const nftables = { ...base, out, dataplanes: "nftables" };
      const message = `--baseline: "iptables" is not accepted; accepted: one of the dataplanes rehearsed (nftables), or one whose stack's campaign ${path.join(out, "results.db")} holds already`;
      expect(() => parseRehearseFlags(nftables)).toThrow(message);
      // A store with another stack's campaign only: still refused.
      const store = ResultStore.open(path.join(out, "results.db"));
      const ebpf = rehearsalCampaign(parseRehearseFlags({ ...base, out }), "ebpf");
      store.ensureCampaign(ebpf.id, ebpf.definition, planCampaign(ebpf.id, ebpf.definition));
      expect(() => parseRehearseFlags(nftables)).toThrow(message);
      const iptables = rehearsalCampaign(parseRehearseFlags({ ...base, out }), "iptables");
      store.ensureCampaign(iptables.id, iptables.definition, planCampaign(iptables.id, iptables.definition));
      store.close();
      expect(parseRehearseFlags(nftables)).toMatchObject({ dataplanes: ["nftables"], baseline: "iptables" });
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
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
