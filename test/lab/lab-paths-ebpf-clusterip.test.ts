// The eBPF model on the clusterip path, in a small campaign on this kernel: the client pod's D-ITG
// flows and setup probes go to the ClusterIP through the socket load balancer (the pod's cgroup
// hooks), beside kube-proxy's iptables mode on the same path, both families, latency and setup.
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { parse } from "csv-parse/sync";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PreparedStep } from "../../backends/lab.js";
import { planCampaign, type CampaignDefinition } from "../../measure/campaign-plan.js";
import { SOCK_LB_HOOKS } from "../../lab/dataplanes/ebpf/sock-lb.js";
import { SOCKET_LB_SECTION } from "../../measure/hops.js";
import { labDefinition, LAB_PROFILES } from "../../lab/profiles.js";
import { run } from "../../lab/netns.js";
import { findRunObjects, labHostProblem } from "../../lab/topology.js";
import { BUSY_HOST } from "./busy-host.js";
import { runPathsCampaign, type PathsCampaign } from "./paths-campaign.js";

const hostProblem = labHostProblem();

describe.skipIf(hostProblem !== undefined)(`the eBPF model on the clusterip path${hostProblem ? ` (skipped: ${hostProblem})` : ""}`, () => {
  const smoke = labDefinition(LAB_PROFILES.smoke, { dataplanes: ["iptables", "ebpf"], baseline: "iptables", profiles: ["latency", "setup"] });
  const def: CampaignDefinition = { ...smoke, services: [1, 100], runs: 1, flowSeconds: 2, primary: undefined, paths: ["clusterip"] };
  let campaign: PathsCampaign;
  /** What each eBPF step had on the client pod's cgroup when it was prepared. */
  const ebpfHooks: string[][] = [];
  /** What each iptables step left on it: nothing, or kube-proxy's rules would not be what is measured. */
  const iptablesHooks: string[][] = [];

  beforeAll(async () => {
    // The kernel's view of the client pod's cgroup, whichever dataplane holds the step.
    const onPrepared = (step: PreparedStep) => {
      const shown = run(["bpftool", "-j", "cgroup", "show", step.topology.plan.clientPod!.cgroup]).trim();
      const hooks = (JSON.parse(shown || "[]") as { name: string }[]).map((h) => h.name).sort();
      (step.dataplane === "ebpf" ? ebpfHooks : iptablesHooks).push(hooks);
    };
    campaign = await runPathsCampaign(def, { onPrepared });
  }, 900_000);
  afterAll(() => campaign && rmSync(campaign.dir, { recursive: true, force: true }));

  it("attaches the socket hooks for the eBPF steps and takes them off for the iptables steps", () => {
    expect(ebpfHooks.length).toBeGreaterThan(0);
    for (const hooks of ebpfHooks) expect(hooks).toEqual(Object.keys(SOCK_LB_HOOKS).sort());
    expect(iptablesHooks.length).toBeGreaterThan(0);
    for (const hooks of iptablesHooks) expect(hooks).toEqual([]);
  });

  it("measures every cell of both dataplanes on clusterip: ok, or short only because a busy host's ITGSend fell behind", () => {
    const results = campaign.results;
    expect(results).toHaveLength(planCampaign(campaign.campaignId, def).length);
    for (const dataplane of ["iptables", "ebpf"]) {
      const of = results.filter((r) => r.dataplane === dataplane);
      expect(of, dataplane).toHaveLength(2 * 2 * 2);
      for (const r of of) expect(r.status === "ok" || BUSY_HOST.test(r.failure ?? ""), `${r.dataplane} ${r.family} ${r.profile} ${r.services}: ${r.failure}`).toBe(true);
      // A path that does not work has no ok run at all; a busy host fails some of them, however many.
      expect(of.filter((r) => r.status === "ok").length, dataplane).toBeGreaterThan(0);
    }
  });

  it("reports the eBPF model against iptables on the clusterip path", () => {
    const cells = parse(readFileSync(join(campaign.dir, "report", "cells.csv"), "utf8"), { columns: true }) as Record<string, string>[];
    expect(new Set(cells.map((c) => c.path))).toEqual(new Set(["clusterip"]));
    expect(new Set(cells.map((c) => c.dataplane))).toEqual(new Set(["iptables", "ebpf"]));
  });

  it("times each handshake from its connect call: the socket load balancing is a section of its own, longer where the eBPF model translates in it", () => {
    const rows = parse(readFileSync(join(campaign.dir, "report", "hops.csv"), "utf8"), { columns: true }) as Record<string, string>[];
    const median = (dataplane: string) =>
      rows.filter((r) => r.dataplane === dataplane && r.direction === "forward" && r.section === SOCKET_LB_SECTION && r.statistic === "p50").map((r) => Number(r.valueS));
    const ebpf = median("ebpf");
    const iptables = median("iptables");
    // Every cell of setup runs (both families, both Service counts) that has ok runs carries the section.
    expect(ebpf.length).toBeGreaterThan(0);
    expect(iptables.length).toBeGreaterThan(0);
    // The eBPF model's connect hooks look the Service up and write the reverse translation between the
    // two stamps; kube-proxy's dataplane runs nothing there.
    expect(Math.min(...ebpf)).toBeGreaterThan(Math.max(...iptables));
  });

  it("leaves nothing of the run behind, its cgroup included", () => {
    expect(findRunObjects(campaign.prefix)).toEqual({ namespaces: [], links: [], mounts: [], dirs: [] });
  });
});
