// The eBPF model on the NodePort paths, in a small campaign on this kernel: nodeport-local and
// nodeport-remote (loadBalancer.mode snat, Cilium's default), iptables as the baseline, latency and
// setup in both families, each run through its own path (the remote one to the receiver on worker 2,
// SNATed by the model on worker 1), the results stored per path.
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { parse } from "csv-parse/sync";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { planCampaign, type CampaignDefinition } from "../../measure/campaign-plan.js";
import { labDefinition, LAB_PROFILES } from "../../lab/profiles.js";
import { findRunObjects, labHostProblem } from "../../lab/topology.js";
import { pathOf } from "../../measure/types.js";
import type { ServicePath } from "../../scenario/paths.js";
import { BUSY_HOST } from "./busy-host.js";
import { runPathsCampaign, type PathsCampaign } from "./paths-campaign.js";

const hostProblem = labHostProblem();
const PATHS: ServicePath[] = ["nodeport-local", "nodeport-remote"];

describe.skipIf(hostProblem !== undefined)(`the eBPF model on the NodePort paths${hostProblem ? ` (skipped: ${hostProblem})` : ""}`, () => {
  const smoke = labDefinition(LAB_PROFILES.smoke, { dataplanes: ["iptables", "ebpf"], baseline: "iptables", profiles: ["latency", "setup"] });
  const def: CampaignDefinition = { ...smoke, services: [1], runs: 1, flowSeconds: 2, primary: undefined, paths: PATHS };
  let run: PathsCampaign;

  beforeAll(async () => {
    run = await runPathsCampaign(def, { loadBalancerMode: "snat" });
  }, 900_000);
  afterAll(() => run && rmSync(run.dir, { recursive: true, force: true }));

  it("stores every eBPF run under its path, each ok or short only because a busy host's ITGSend fell behind", () => {
    const results = run.results;
    expect(results).toHaveLength(planCampaign(run.campaignId, def).length);
    for (const path of PATHS) {
      const of = results.filter((r) => pathOf(r) === path && r.dataplane === "ebpf");
      // 2 families x 2 profiles x 1 Service count.
      expect(of, path).toHaveLength(4);
      for (const r of of) expect(r.status === "ok" || BUSY_HOST.test(r.failure ?? ""), `${path} ${r.family} ${r.profile}: ${r.failure}`).toBe(true);
      // A path that does not work has no ok run at all; a busy host fails some of them, however many.
      expect(of.filter((r) => r.status === "ok").length, path).toBeGreaterThan(0);
    }
  });

  it("reports eBPF cells on nodeport-remote beside iptables'", () => {
    const cells = parse(readFileSync(join(run.dir, "report", "cells.csv"), "utf8"), { columns: true }) as Record<string, string>[];
    const remote = cells.filter((c) => c.path === "nodeport-remote");
    expect(new Set(remote.map((c) => c.dataplane))).toEqual(new Set(["iptables", "ebpf"]));
  });

  it("leaves no namespace, link or mount of the run behind", () => {
    expect(findRunObjects(run.prefix)).toEqual({ namespaces: [], links: [], mounts: [], dirs: [] });
  });
});
